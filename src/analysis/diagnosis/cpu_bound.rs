//! CPU-bound callbacks: the loop computed for long in one callback (on a CPU in most of the
//! episode's samples). Grouped by what computed, read from the episode's stack: json, regular
//! expressions, hashing, compression, a comprehension or generator, else plain Python code
//! of the blamed function.

use super::{
    episode_evidence, episode_frames, ms_text, short_name, view_blamed, view_frames, Diagnosis, Evidence, Grouping, Inputs, Kind,
    SnapshotInputs,
};
use crate::python::frames::StackFrame;

/// A kind of computation, as its files show on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    /// As shown: `json`, `regular expressions`.
    pub name: &'static str,
    /// The fix, `{f}` standing for the blamed function.
    fix: &'static str,
}

const POOL: &str = "move it off the loop: `await loop.run_in_executor(process_pool, {f}, ...)` with a concurrent.futures.ProcessPoolExecutor (a thread does not help pure-Python code: it holds the GIL), or split the work into chunks with `await asyncio.sleep(0)` between them";

/// Path fragments of known computations, matched against a frame's file.
const WORK: &[(&str, Work)] = &[
    ("/json/", Work { name: "json", fix: "use orjson or msgspec (several times faster than json); for large documents decode in a process pool: `await loop.run_in_executor(process_pool, {f}, ...)`" }),
    ("/simplejson/", Work { name: "json (simplejson)", fix: "use orjson or msgspec; for large documents decode in a process pool: `await loop.run_in_executor(process_pool, {f}, ...)`" }),
    ("/re/", Work { name: "regular expressions", fix: "compile the pattern once and check it for catastrophic backtracking (nested quantifiers); for large inputs run it in a process pool: `await loop.run_in_executor(process_pool, {f}, ...)`" }),
    ("/re.py", Work { name: "regular expressions", fix: "compile the pattern once and check it for catastrophic backtracking (nested quantifiers); for large inputs run it in a process pool: `await loop.run_in_executor(process_pool, {f}, ...)`" }),
    ("/sre_", Work { name: "regular expressions (compiling)", fix: "compile patterns once, at import, not per call" }),
    ("/hashlib.py", Work { name: "hashing", fix: "hashlib releases the GIL on large inputs: `await asyncio.to_thread({f}, ...)` frees the loop" }),
    ("/hmac.py", Work { name: "hashing (hmac)", fix: "`await asyncio.to_thread({f}, ...)` frees the loop (hashlib releases the GIL)" }),
    ("/bcrypt/", Work { name: "password hashing (bcrypt)", fix: "bcrypt releases the GIL: `await asyncio.to_thread({f}, ...)`" }),
    ("/passlib/", Work { name: "password hashing (passlib)", fix: "`await asyncio.to_thread({f}, ...)` or a process pool" }),
    ("/argon2/", Work { name: "password hashing (argon2)", fix: "argon2-cffi releases the GIL: `await asyncio.to_thread({f}, ...)`" }),
    ("/gzip.py", Work { name: "compression (gzip)", fix: "zlib releases the GIL: `await asyncio.to_thread({f}, ...)`" }),
    ("/bz2.py", Work { name: "compression (bz2)", fix: "`await asyncio.to_thread({f}, ...)` (bz2 releases the GIL)" }),
    ("/lzma.py", Work { name: "compression (lzma)", fix: "`await asyncio.to_thread({f}, ...)` (lzma releases the GIL)" }),
    ("/zipfile", Work { name: "compression (zipfile)", fix: "`await asyncio.to_thread({f}, ...)`" }),
    ("/pickle.py", Work { name: "pickle", fix: POOL }),
    ("/copy.py", Work { name: "copy.deepcopy", fix: "avoid deep copies of large structures on the loop; else move it off the loop with a process pool (`loop.run_in_executor`)" }),
    ("/xml/", Work { name: "XML parsing", fix: "use lxml (faster) and parse large documents in a process pool: `await loop.run_in_executor(process_pool, {f}, ...)`" }),
    ("/lxml/", Work { name: "XML parsing (lxml)", fix: "lxml releases the GIL while parsing: `await asyncio.to_thread({f}, ...)`" }),
    ("/yaml/", Work { name: "YAML", fix: "use the C loader (yaml.CSafeLoader) and move large documents off the loop: `await loop.run_in_executor(process_pool, {f}, ...)`" }),
    ("/jinja2/", Work { name: "template rendering (jinja2)", fix: "cache rendered output or render in a process pool; for big templates `enable_async=True` with `await template.render_async(...)` yields between chunks" }),
    ("/pydantic", Work { name: "validation (pydantic)", fix: "validate large payloads in a process pool (`loop.run_in_executor`), or validate less (TypeAdapter once, `model_construct` for trusted data)" }),
    ("/csv.py", Work { name: "csv", fix: POOL }),
    ("/decimal.py", Work { name: "decimal arithmetic", fix: POOL }),
    ("/PIL/", Work { name: "image processing (Pillow)", fix: "Pillow releases the GIL in most operations: `await asyncio.to_thread({f}, ...)`" }),
    ("/numpy/", Work { name: "numpy", fix: "numpy releases the GIL in most operations: `await asyncio.to_thread({f}, ...)`" }),
    ("/pandas/", Work { name: "pandas", fix: POOL }),
];

/// Helper frames of comprehensions and generators.
fn is_comprehension(function: &str) -> bool {
    matches!(short_name(function), "<genexpr>" | "<listcomp>" | "<setcomp>" | "<dictcomp>")
}

/// What computed in the callback's `frames` (innermost first): the outermost known library
/// (what the callback called), else a comprehension, else `None` (plain Python code).
pub fn work_of(frames: &[&StackFrame]) -> Option<Work> {
    if let Some(w) = frames.iter().rev().find_map(|f| WORK.iter().find(|(frag, _)| f.file.contains(frag)).map(|(_, w)| *w)) {
        return Some(w);
    }
    if frames.iter().any(|f| is_comprehension(&f.function)) {
        return Some(Work { name: "a comprehension or generator", fix: POOL });
    }
    None
}

/// The next step for `work` (if known) blamed on `function`.
pub fn fix(work: Option<Work>, function: &str) -> String {
    let f = if function.is_empty() || function.starts_with('<') { "the_function" } else { short_name(function) };
    work.map_or(POOL, |w| w.fix).replace("{f}", f)
}

/// On-CPU episodes, grouped by what computed, the group with the most blocked time first.
pub fn diagnose(i: &Inputs) -> Option<Diagnosis> {
    let s = i.summary;
    let mut grouping: Grouping<Option<&'static str>, Option<Work>> = Grouping::default();
    // A collection is on a CPU too, but it is the GC pauses diagnosis's.
    // Worked out once per stack and blamed frame (a live view redraws over thousands of
    // episodes of a few stacks).
    let mut known: std::collections::HashMap<(u32, &str, &str), Option<Work>> = Default::default();
    for e in s.episodes.iter().filter(|e| e.on_cpu && e.function != crate::analysis::metrics::GC_FUNCTION) {
        let work = *known.entry((e.stack, &e.function, &e.file)).or_insert_with(|| work_of(&episode_frames(i.rec, e)));
        grouping.add(work.map(|w| w.name), work, e);
    }
    let (all, groups) = grouping.material(i.recorded_s)?;
    let (_, work, top) = &groups[0];
    let (blamed, function) = top.blamed().unwrap_or_default();
    let what = |w: &Option<Work>, function: &str| match w {
        Some(w) => w.name.to_string(),
        None => format!("Python code in {}", short_name(function)),
    };
    let main = what(work, &function);
    let mostly = if groups.len() > 1 {
        format!(", mostly {main} ({} in {})", ms_text(top.blocked_ms), top.episodes.len())
    } else {
        format!(": {main}")
    };
    let title = format!(
        "CPU-bound callbacks: {} on CPU in {} episode{}{mostly}",
        ms_text(all.blocked_ms),
        all.episodes.len(),
        if all.episodes.len() == 1 { "" } else { "s" }
    );
    let mut evidence = episode_evidence(&all, i.recorded_s);
    evidence.push(Evidence::new("computing", main.clone()));
    if let Some(e) = top.longest() {
        evidence.push(Evidence::new("innermost frame", super::frame_text(&e.innermost.function, &e.innermost.file, e.innermost.line)));
    }
    evidence.push(Evidence::new("blamed frame", blamed));
    for (_, w, g) in groups.iter().skip(1).take(3) {
        let (_, f) = g.blamed().unwrap_or_default();
        evidence.push(Evidence::new(
            "also",
            format!(
                "{}: {} in {} episode{}",
                what(w, &f),
                ms_text(g.blocked_ms),
                g.episodes.len(),
                if g.episodes.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    Some(Diagnosis { kind: Kind::CpuBound, loop_index: s.loop_index, title, evidence, next_step: fix(*work, &function) })
}

/// One look: the loop is in a callback that has computed (on a CPU now) for at least the
/// threshold.
pub fn now(i: &SnapshotInputs) -> Option<Diagnosis> {
    let v = i.view;
    let ms = super::busy_now_ms(v).filter(|ms| *ms >= i.threshold * 1e3)?;
    // Collecting garbage now: `dump` says so on its own line, it is not the code's computing.
    if v.syscall != Some(crate::process::procfs::Syscall::Running) || v.gc.collecting() {
        return None;
    }
    let frames = view_frames(v);
    let work = work_of(&frames);
    let blamed = view_blamed(&frames).map(|k| frames[k]);
    let function = blamed.map(|f| f.function.to_string()).unwrap_or_default();
    let main = match work {
        Some(w) => w.name.to_string(),
        None => format!("Python code in {}", short_name(&function)),
    };
    let how = if v.busy_for.is_some() { "" } else { "at least " };
    let mut evidence = vec![
        Evidence::new("blocked for", format!("{how}{} (in one callback, now)", ms_text(ms))),
        Evidence::new("computing", main.clone()),
        Evidence::new(
            "blamed frame",
            blamed.map(|f| super::frame_text(&f.function, &f.file, f.line)).unwrap_or_else(|| "<no Python frame>".into()),
        ),
    ];
    if let Some(cb) = &v.callback {
        evidence.push(Evidence::new("callback", cb.qualname.clone()));
    }
    Some(Diagnosis {
        kind: Kind::CpuBound,
        loop_index: 0,
        title: format!("blocked right now: {how}{} on CPU ({main})", ms_text(ms)),
        evidence,
        next_step: fix(work, &function),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::metrics::{analyze, tests::script, Options};

    fn f(function: &str, file: &str) -> StackFrame {
        StackFrame { function: function.into(), file: file.into(), line: 1 }
    }

    #[test]
    fn what_computed() {
        let app = f("handle", "/srv/app.py");
        let dec = f("JSONDecoder.raw_decode", "/usr/lib/python3.12/json/decoder.py");
        let loads = f("loads", "/usr/lib/python3.12/json/__init__.py");
        assert_eq!(work_of(&[&dec, &loads, &app]).unwrap().name, "json");
        assert!(fix(work_of(&[&dec, &app]), "Api.handle").contains("orjson"));
        let re = f("sub", "/usr/lib/python3.12/re/__init__.py");
        assert_eq!(work_of(&[&re, &app]).unwrap().name, "regular expressions");
        let re38 = f("findall", "/usr/lib/python3.8/re.py");
        assert_eq!(work_of(&[&re38, &app]).unwrap().name, "regular expressions");
        let gen = f("handle.<locals>.<genexpr>", "/srv/app.py");
        assert_eq!(work_of(&[&gen, &app]).unwrap().name, "a comprehension or generator");
        assert_eq!(work_of(&[&app]), None);
        assert!(fix(None, "Api.handle").contains("run_in_executor(process_pool, handle, ...)"));
        assert!(fix(None, "Api.handle").contains("asyncio.sleep(0)"));
    }

    #[test]
    fn recorded_json_decoding_is_diagnosed() {
        // 100 Hz: four 250 ms json decodes (`b`) and short pure-Python callbacks (`a`).
        let s = format!("{}{}{}", ".".repeat(20), "b".repeat(25), "..a.".repeat(5)).repeat(4);
        let a = analyze(&script(100.0, &s), &Options::default());
        let d = a.diagnoses.iter().find(|d| d.kind == Kind::CpuBound).expect("diagnosed");
        assert!(d.title.contains("4 episodes: json"), "{d:?}");
        assert!(d.next_step.contains("orjson"), "{d:?}");
        assert!(!a.diagnoses.iter().any(|d| d.kind == Kind::SyncIo), "{:?}", a.diagnoses);
    }
}
