//! What one sample costs, loopspy beside py-spy on the same live target, and what rendering a
//! long recording costs.
//!
//!     cargo bench --bench sampling -- [--python 3.15|PATH] [--uvloop] [--iterations N]
//!                                      [--pause-us US] [--samples N] [--json FILE]
//!                                      [--only per-sample|loopspy|flamegraph]
//!     cargo bench --bench sampling -- --check N [--python all|3.15|PATH] [--uvloop]
//!
//! Per sample: starts `benches/targets/throughput.py` (a busy asyncio loop, ~20-frame stacks
//! that change between samples), attaches four samplers to it and times, round-robin so that
//! all see the same machine load, N calls of each:
//!
//! - loopspy `Sampler::sample` (non-blocking: what `loopspy record` does per tick);
//! - loopspy `Sampler::sample` with `--blocking` (pauses the target with ptrace);
//! - py-spy 0.4 `get_stack_traces()` non-blocking (`py-spy record --nonblocking`);
//! - py-spy 0.4 `get_stack_traces()` with `LockingStrategy::Lock` (py-spy's default).
//!
//! A pause (default 1 ms) between rounds lets the target run on, so that each sample sees a
//! new stack as it would at 1000 Hz. Prints median and p90 in µs.
//!
//! Flame graph: synthesizes a recording of N samples (default 1,000,000: 1000 s at 1000 Hz)
//! over a few hundred distinct stacks 10–30 frames deep, with busy runs, idle gaps and
//! blocking episodes, and times `metrics::analyze`, `flamegraph::fold`, the collapsed text
//! and the SVG. This is a benchmark: it asserts nothing about time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use loopspy::analysis::metrics::{self, Options};
use loopspy::asyncio::eventloop::LoopKind;
use loopspy::asyncio::loopstate::LoopState;
use loopspy::capture::recording::{LoopMeta, Recording, Sample, ThreadActivity};
use loopspy::capture::sampler::{SampleError, Sampler, SamplerOptions};
use loopspy::output::flamegraph::{self, Header};
use loopspy::python::frames::StackFrame;
use loopspy::python::target::{AttachOptions, Target};
use py_spy::config::LockingStrategy;
use py_spy::{Config, PythonSpy};
use serde_json::{json, Value};

struct Args {
    python: Option<String>,
    uvloop: bool,
    iterations: usize,
    pause_us: u64,
    samples: usize,
    json: Option<PathBuf>,
    only: Option<String>,
    check: usize,
}

fn args() -> Args {
    let mut a =
        Args { python: None, uvloop: false, iterations: 2000, pause_us: 1000, samples: 1_000_000, json: None, only: None, check: 0 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--python" => a.python = Some(value()),
            "--uvloop" => a.uvloop = true,
            "--iterations" => a.iterations = value().parse().expect("--iterations N"),
            "--pause-us" => a.pause_us = value().parse().expect("--pause-us US"),
            "--samples" => a.samples = value().parse().expect("--samples N"),
            "--json" => a.json = Some(PathBuf::from(value())),
            "--only" => a.only = Some(value()),
            "--check" => a.check = value().parse().expect("--check N"),
            "--bench" => {} // added by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The interpreter to run the target with: a `major.minor` from the test manifest, a path, or
/// the newest supported one present.
fn interpreter(choice: Option<&str>) -> common::Interp {
    let all = common::interpreters();
    match choice {
        Some(c) if all.contains_key(c) => all[c].clone(),
        Some(c) => common::Interp { version: c.to_string(), path: PathBuf::from(c), uvloop: None },
        None => loopspy::python::layout::SUPPORTED
            .iter()
            .rev()
            .find_map(|v| all.get(&v.to_string()))
            .cloned()
            .expect("no supported Python found (see tests/common/mod.rs)"),
    }
}

struct Timing {
    name: &'static str,
    micros: Vec<f64>,
    failed: usize,
}

/// Attaching to a busy target can fail on a torn read (py-spy's interpreter search, for one):
/// try again, as a user would.
fn retry<T, E: std::fmt::Debug>(what: &str, mut f: impl FnMut() -> Result<T, E>) -> T {
    let mut last = None;
    for _ in 0..50 {
        match f() {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} failed 50 times; last: {last:?}")
}

fn sampler(pid: i32, blocking: bool) -> (Sampler, Recording) {
    let (sampler, metas) = retry("loopspy attach", || {
        let target = Target::attach(pid, AttachOptions { blocking })?;
        Sampler::start(target, SamplerOptions::default())
    });
    let rec = Recording::new(1000.0, metas, sampler.now());
    (sampler, rec)
}

fn per_sample(a: &Args, interp: &common::Interp) -> Value {
    let target = common::Throughput::start(interp, a.uvloop);
    let pid = target.pid();
    std::thread::sleep(Duration::from_millis(300));
    let (mut ours, mut rec) = sampler(pid, false);
    let version = ours.target.version_text.clone();
    let (mut ours_b, mut rec_b) = sampler(pid, true);
    let spy_config = |blocking| Config { blocking, ..Config::default() };
    let mut spy_nb = retry("py-spy attach", || PythonSpy::new(pid, &spy_config(LockingStrategy::NonBlocking)));
    let mut spy_lock = retry("py-spy attach", || PythonSpy::new(pid, &spy_config(LockingStrategy::Lock)));

    let mut timings = [
        Timing { name: "loopspy Sampler::sample", micros: Vec::new(), failed: 0 },
        Timing { name: "loopspy Sampler::sample --blocking", micros: Vec::new(), failed: 0 },
        Timing { name: "py-spy get_stack_traces (nonblocking)", micros: Vec::new(), failed: 0 },
        Timing { name: "py-spy get_stack_traces (Lock)", micros: Vec::new(), failed: 0 },
    ];
    let mut depth_sum = 0usize;
    let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
    let mut note = |e: &str| {
        let words: Vec<&str> = e.split_whitespace().filter(|w| !w.starts_with("0x")).collect();
        *errors.entry(words.join(" ")).or_insert(0) += 1;
    };
    let warmup = 200.min(a.iterations / 2);
    for i in 0..warmup + a.iterations {
        for k in 0..4 {
            let which = (i + k) % 4;
            if a.only.as_deref() == Some("loopspy") && which != 0 {
                continue;
            }
            let t = Instant::now();
            let ok = match which {
                0 => {
                    let before = rec.samples.len();
                    // One attempt per call: retries would hide the cost of a failed look.
                    let r = ours.sample(&mut rec, 0.0);
                    if let Some(s) = rec.samples.get(before) {
                        depth_sum += rec.stacks.get(s.stack).len();
                    }
                    match r {
                        Ok(()) => true,
                        Err(SampleError::Exited | SampleError::Exec) => panic!("target exited"),
                        Err(SampleError::Failed) => {
                            note(&failure(&rec));
                            false
                        }
                    }
                }
                1 => match ours_b.sample(&mut rec_b, 0.0) {
                    Ok(()) => true,
                    Err(SampleError::Exited | SampleError::Exec) => panic!("target exited"),
                    Err(SampleError::Failed) => {
                        note(&format!("blocking: {}", failure(&rec_b)));
                        false
                    }
                },
                2 => spy_nb.get_stack_traces().is_ok(),
                _ => spy_lock.get_stack_traces().is_ok(),
            };
            let us = t.elapsed().as_secs_f64() * 1e6;
            if i >= warmup {
                let timing = &mut timings[which];
                if ok {
                    timing.micros.push(us);
                } else {
                    timing.failed += 1;
                }
            }
            std::thread::sleep(Duration::from_micros(a.pause_us / 4));
        }
    }
    if std::env::var_os("LOOPSPY_BENCH_ERRORS").is_some() {
        for (e, n) in &errors {
            eprintln!("{n:6}  {e}");
        }
    }
    let mean_depth = depth_sum as f64 / rec.samples.len().max(1) as f64;
    println!(
        "\nPer sample, Python {version}{}, throughput.py (busy loop, mean stack depth {mean_depth:.1}), {} rounds, {} µs pause per round:\n",
        if a.uvloop { " uvloop" } else { "" },
        a.iterations,
        a.pause_us
    );
    println!("| sampler | median µs | p90 µs | p99 µs | failed |");
    println!("|---|---|---|---|---|");
    let mut out = serde_json::Map::new();
    for t in &mut timings {
        t.micros.sort_by(f64::total_cmp);
        let (m, p90, p99) = (percentile(&t.micros, 0.5), percentile(&t.micros, 0.9), percentile(&t.micros, 0.99));
        println!("| {} | {m:.1} | {p90:.1} | {p99:.1} | {} |", t.name, t.failed);
        out.insert(t.name.to_string(), json!({"median_us": m, "p90_us": p90, "p99_us": p99, "n": t.micros.len(), "failed": t.failed}));
    }
    let ratio = percentile(&timings[0].micros, 0.5) / percentile(&timings[2].micros, 0.5);
    println!("\nloopspy / py-spy non-blocking (medians): {ratio:.2}x");
    json!({"python": version, "uvloop": a.uvloop, "mean_stack_depth": mean_depth, "iterations": a.iterations, "samplers": out, "ratio_nonblocking": ratio})
}

// ---- flame graph of a synthetic recording -----------------------------------------------

/// A small deterministic generator (no extra dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

fn frame(function: &str, file: &str, line: i32) -> StackFrame {
    StackFrame { function: function.into(), file: file.into(), line }
}

/// A recording of `n` samples at 1000 Hz over a few hundred stacks 10–30 frames deep.
fn synthesize(n: usize) -> (Recording, usize) {
    let mut rng = Rng(0x5eed);
    let lib = "/usr/lib/python3.12";
    let files: Vec<String> = (0..12)
        .map(|i| format!("/srv/app/service/module_{i}.py"))
        .chain((0..8).map(|i| format!("/venv/lib/python3.12/site-packages/pkg{i}/core.py")))
        .chain(["json/decoder.py", "json/encoder.py", "re/__init__.py", "ssl.py", "socket.py"].iter().map(|f| format!("{lib}/{f}")))
        .collect();
    let functions: Vec<StackFrame> = (0..150)
        .map(|i| {
            let file = &files[rng.below(files.len() as u64) as usize];
            frame(&format!("Handler{}.method_{i}", i % 17), file, rng.range(10, 900) as i32)
        })
        .collect();
    let base = [
        frame("BaseEventLoop._run_once", &format!("{lib}/asyncio/base_events.py"), 1971),
        frame("BaseEventLoop.run_forever", &format!("{lib}/asyncio/base_events.py"), 641),
        frame("BaseEventLoop.run_until_complete", &format!("{lib}/asyncio/base_events.py"), 672),
        frame("Runner.run", &format!("{lib}/asyncio/runners.py"), 118),
        frame("run", &format!("{lib}/asyncio/runners.py"), 194),
        frame("<module>", "/srv/app/main.py", 40),
    ];
    let meta = LoopMeta {
        native_id: Some(4242),
        thread_name: Some("MainThread".into()),
        loop_class: "_UnixSelectorEventLoop".into(),
        loop_kind: LoopKind::Selector,
        selector: Some("EpollSelector".into()),
        found: None,
    };
    let mut rec = Recording::new(1000.0, vec![meta], 1000.0);
    let mut idle = Vec::new();
    for line in [468, 469, 470] {
        let mut s = vec![frame("EpollSelector.select", &format!("{lib}/selectors.py"), line)];
        s.extend_from_slice(&base);
        idle.push(rec.intern_stack(&s));
    }
    let mut busy = Vec::new();
    for _ in 0..300 {
        let depth = rng.range(10, 30) as usize;
        let mut s: Vec<StackFrame> =
            (0..depth - base.len() - 1).map(|_| functions[rng.below(functions.len() as u64) as usize].clone()).collect();
        s.push(frame("Handle._run", &format!("{lib}/asyncio/events.py"), 84));
        s.extend_from_slice(&base);
        busy.push(rec.intern_stack(&s));
    }
    let tasks: Vec<u32> = (0..50).map(|i| rec.tasks.intern(format!("Task-{i}"))).collect();
    let mut t = 1000.0;
    let mut callback = 0u64;
    while rec.samples.len() < n {
        // An idle gap, then one callback's run.
        for _ in 0..rng.range(1, 40) {
            let stack = idle[rng.below(idle.len() as u64) as usize];
            let lateness = Some(-(rng.range(1, 50) as f32) / 1e3);
            rec.samples.push(Sample {
                t,
                loop_index: 0,
                state: LoopState::Idle,
                activity: ThreadActivity::Waiting(232),
                ready: 0,
                lateness,
                stack,
                callback: None,
                task: None,
                busy_for: None,
                gc: loopspy::python::gc::GcAt::Unknown,
                loop_frames: 2,
            });
            t += 1e-3;
        }
        callback += 1;
        // Most callbacks are short; about one in 300 blocks the loop for 100-600 ms.
        let len = if rng.below(300) == 0 { rng.range(100, 600) } else { rng.range(1, 20) };
        let stacks: Vec<u32> = (0..rng.range(1, 3)).map(|_| busy[rng.below(busy.len() as u64) as usize]).collect();
        let task = (rng.below(3) > 0).then(|| tasks[rng.below(tasks.len() as u64) as usize]);
        let sleeping = rng.below(10) == 0;
        for k in 0..len {
            rec.samples.push(Sample {
                t,
                loop_index: 0,
                state: if k == 0 && rng.below(4) == 0 { LoopState::Loop } else { LoopState::Callback },
                activity: if sleeping { ThreadActivity::Waiting(230) } else { ThreadActivity::OnCpu },
                ready: rng.range(0, 30) as u32,
                lateness: Some(k as f32 / 1e3),
                stack: stacks[rng.below(stacks.len() as u64) as usize],
                callback: Some(0x7f00_0000 + callback * 64),
                task,
                busy_for: None,
                gc: loopspy::python::gc::GcAt::Unknown,
                loop_frames: 2,
            });
            t += 1e-3;
        }
    }
    rec.samples.truncate(n);
    rec.ended = t;
    rec.end = loopspy::capture::recording::EndReason::Duration;
    let distinct = rec.stacks.len();
    (rec, distinct)
}

fn flame(a: &Args) -> Value {
    let t = Instant::now();
    let (rec, distinct) = synthesize(a.samples);
    let synth_s = t.elapsed().as_secs_f64();
    let opts = Options::default();

    let t = Instant::now();
    let analysis = metrics::analyze(&rec, &opts);
    let analyze_s = t.elapsed().as_secs_f64();
    let episodes = analysis.loops[0].episodes.len();

    let t = Instant::now();
    let folded = flamegraph::fold(&rec, &analysis, Some("/srv/app"), false);
    let fold_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let collapsed = folded.collapsed().join("\n");
    let collapsed_s = t.elapsed().as_secs_f64();

    let header = Header { title: "loopspy: synthetic".into(), subtitle: "1000 s at 1000 Hz".into() };
    let t = Instant::now();
    let mut svg = Vec::new();
    flamegraph::svg(&folded, &header, analysis.threshold_ms, &mut svg).expect("svg");
    let svg_s = t.elapsed().as_secs_f64();

    let total = analyze_s + fold_s + svg_s;
    println!(
        "\nFlame graph of {} synthetic samples ({distinct} distinct stacks, depth 10-30, {episodes} blocking episodes; built in {synth_s:.2} s):\n",
        rec.samples.len()
    );
    println!("| step | seconds |");
    println!("|---|---|");
    println!("| metrics::analyze | {analyze_s:.3} |");
    println!("| flamegraph::fold | {fold_s:.3} |");
    println!("| collapsed text ({} lines, {} KB) | {collapsed_s:.3} |", folded.stacks.len(), collapsed.len() / 1024);
    println!("| flamegraph::svg ({} KB) | {svg_s:.3} |", svg.len() / 1024);
    println!("| analyze + fold + svg | {total:.3} |");
    json!({
        "samples": rec.samples.len(), "distinct_stacks": distinct, "episodes": episodes,
        "analyze_s": analyze_s, "fold_s": fold_s, "collapsed_s": collapsed_s, "svg_s": svg_s,
        "analyze_fold_svg_s": total, "svg_bytes": svg.len(),
    })
}

/// With the target paused, the sampler's stack walk (which reads where the previous walk's
/// frames were, in one call) must give exactly the frames of the plain walk and of py-spy,
/// sample after sample, as the target's stack changes between pauses.
fn check(a: &Args, interp: &common::Interp) {
    use loopspy::python::frames::{self, StackReader};
    let target = common::Throughput::start(interp, a.uvloop);
    let pid = target.pid();
    std::thread::sleep(Duration::from_millis(300));
    let mut t = retry("loopspy attach", || Target::attach(pid, AttachOptions::default()));
    let tids = loopspy::process::procfs::task_ids(pid).unwrap();
    let threads = loopspy::python::interp::threads(&t.reader, t.interp, &tids).unwrap();
    let (mut fast, mut plain) = (StackReader::new(), StackReader::new());
    let (mut refs, mut stack) = (Vec::new(), Vec::new());
    let mut rng = Rng(7);
    let mut depths = std::collections::BTreeSet::new();
    let (mut spy_failed, mut spy_lines) = (0, 0);
    for i in 0..a.check {
        {
            let _lock = t.process.lock().expect("pause the target");
            // py-spy now and then fails on a paused target too (3.12): those rounds are
            // compared with the plain walk only, and counted.
            let theirs = t.spy.as_mut().expect("py-spy attached").get_stack_traces().unwrap_or_else(|_| {
                spy_failed += 1;
                Vec::new()
            });
            for th in &threads {
                let r = &t.reader;
                fast.sample_stack(r, th.tstate, &mut refs, &mut stack).expect("sampled walk");
                // The plain walk keeps interpreter plumbing (shim code objects), which stacks
                // do not show.
                let mut walked = frames::walk(r, th.tstate).expect("walk");
                let plumbing = |file: &str| frames::SHIM_FILES.contains(&file);
                walked.retain(|f| !plumbing(&plain.frame(r, f).expect("frame").file));
                let expected: Vec<_> = walked.iter().map(|f| plain.frame(r, f).expect("frame")).collect();
                assert_eq!(refs, walked, "Python {} round {i}: frame refs", interp.version);
                assert_eq!(stack, expected, "Python {} round {i}: frames", interp.version);
                let Some(trace) = theirs.iter().find(|tr| tr.thread_id == th.ident) else {
                    continue;
                };
                let spy: Vec<(String, String, i32)> =
                    trace.frames.iter().filter(|f| !plumbing(&f.filename)).map(|f| (f.name.clone(), f.filename.clone(), f.line)).collect();
                let ours: Vec<(String, String, i32)> = stack.iter().map(|f| (f.function.to_string(), f.file.to_string(), f.line)).collect();
                let names = |v: &[(String, String, i32)]| v.iter().map(|(f, file, _)| (f.clone(), file.clone())).collect::<Vec<_>>();
                assert_eq!(names(&ours), names(&spy), "Python {} round {i}: py-spy's frames", interp.version);
                if ours != spy {
                    // py-spy 0.4 on 3.10 gives the next line for the last instruction of a line
                    // (tests/lines.rs checks ours against the interpreter's co_lines()).
                    assert_eq!(interp.version, "3.10", "Python {} round {i}: py-spy's lines: {ours:?} != {spy:?}", interp.version);
                    spy_lines += 1;
                }
                depths.insert(stack.len());
            }
        }
        std::thread::sleep(Duration::from_micros(rng.range(0, 3000)));
    }
    println!(
        "Python {}: {} paused samples, sampled walk == plain walk == py-spy (py-spy failed {spy_failed}, gave another line {spy_lines}; stack depths seen: {depths:?})",
        interp.version, a.check
    );
}

fn main() {
    let a = args();
    if a.check > 0 {
        let all = common::interpreters();
        let chosen: Vec<common::Interp> = match a.python.as_deref() {
            Some("all") => loopspy::python::layout::SUPPORTED.iter().filter_map(|v| all.get(&v.to_string()).cloned()).collect(),
            other => vec![interpreter(other)],
        };
        for interp in &chosen {
            check(&a, interp);
        }
        return;
    }
    let mut result = serde_json::Map::new();
    if a.only.as_deref() != Some("flamegraph") {
        let interp = interpreter(a.python.as_deref());
        result.insert("per_sample".into(), per_sample(&a, &interp));
    }
    if a.only.is_none() || a.only.as_deref() == Some("flamegraph") {
        result.insert("flamegraph".into(), flame(&a));
    }
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_vec_pretty(&Value::Object(result)).unwrap()).expect("write --json");
    }
}

/// Why the last failed sample of `rec` failed.
fn failure(rec: &Recording) -> String {
    rec.failures.last().map_or_else(|| "no reason recorded".to_string(), |f| format!("{:?}", f.reason))
}
