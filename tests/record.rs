//! `loopspy record` against a target that runs a known schedule of blocks and measures
//! itself (tests/targets/schedule.py), on every interpreter present, stock loop and uvloop:
//! every block found and none invented, durations within two sample intervals, the right
//! function, on-CPU vs waiting and the syscall, busy % within 5 points, lag max within 15 %
//! (or 10 ms), ready depth max the known burst (plus at most the timers due at its end); the SVG carries the colours, the
//! blocked functions and the same figures as the JSON.

mod common;

use common::*;
use serde_json::Value;

const RATE: f64 = 100.0;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn minor(version: &str) -> u32 {
    version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0)
}

/// Time covered by `intervals` inside [lo, hi].
fn covered(intervals: &[Value], lo: f64, hi: f64) -> f64 {
    intervals
        .iter()
        .map(|i| {
            let (a, b) = (num(&i[0]).max(lo), num(&i[1]).min(hi));
            (b - a).max(0.0)
        })
        .sum()
}

/// `rgb(r,g,b)` → (r, g, b).
fn rgb(fill: &str) -> (u32, u32, u32) {
    let inner = fill.trim_start_matches("rgb(").trim_end_matches(')');
    let v: Vec<u32> = inner.split(',').map(|x| x.trim().parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

/// Every frame group of a class: (title, fill).
fn frames_of_class(svg: &str, class: &str) -> Vec<(String, (u32, u32, u32))> {
    let mut out = Vec::new();
    let needle = format!("<g class=\"{class}\"><title>");
    let mut rest = svg;
    while let Some(at) = rest.find(&needle) {
        rest = &rest[at + needle.len()..];
        let title = rest[..rest.find("</title>").unwrap()].to_string();
        let fill_at = rest.find("fill=\"").unwrap() + 6;
        let fill = &rest[fill_at..fill_at + rest[fill_at..].find('"').unwrap()];
        out.push((title, rgb(fill)));
    }
    out
}

fn schedule(version: &str, flavor: &str) {
    let test = "record/schedule";
    let Some(interp) = require(version, test) else { return };
    if flavor == "uvloop" && interp.uvloop.is_none() {
        record(test, version, flavor, "skipped (no uvloop wheel)");
        return;
    }
    record(test, version, flavor, "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let (truth_path, json_path, svg_path) = (dir.path().join("truth.json"), dir.path().join("r.json"), dir.path().join("r.svg"));
    let jsonl_path = dir.path().join("r.jsonl");
    let mut cmd = std::process::Command::new(loopspy_bin());
    cmd.args(["record", "--rate", "100", "--duration", "6.5", "-o"])
        .arg(&json_path)
        .arg("-o")
        .arg(&svg_path)
        .arg("-o")
        .arg(&jsonl_path)
        .arg("--")
        .arg(&interp.path)
        .arg(targets_dir().join("schedule.py"))
        .arg(&truth_path);
    if flavor == "uvloop" {
        cmd.arg("--uvloop");
        cmd.env("PYTHONPATH", interp.uvloop.as_ref().unwrap());
    }
    let out = cmd.output().unwrap();
    let ctx = format!("Python {version} [{flavor}]");
    assert_eq!(out.status.code(), Some(0), "{ctx}\n{}", describe(&out));
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&truth_path).expect("truth written")).unwrap();
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let l = &r["loops"][0];
    let interval = 1.0 / RATE;

    // Every block found, none invented, each within two sample intervals.
    let blocks = t["blocks"].as_array().unwrap();
    let all_episodes = l["episodes"].as_array().unwrap();
    // The target measured itself until it wrote its truth (`written_at`, 0.3 s after the
    // last block); writing the file may block its loop past the threshold on a loaded
    // machine: a real episode, but of no block of the schedule.
    let written_at = num(&t["written_at"]);
    let episodes: Vec<Value> = all_episodes.iter().filter(|e| num(&e["start"]) < written_at - 0.1).cloned().collect();
    assert_eq!(blocks.len(), 7, "{ctx}: the target ran its schedule");
    // Sleeping and computing are not garbage collection: no episode is blamed on it and the
    // GC diagnosis stays silent.
    for e in &episodes {
        assert!(e["function"] != "<garbage collection>" && num(&e["gc_pct"]) < 50.0, "{ctx}: {e}");
    }
    assert!(!l["diagnoses"].as_array().unwrap().iter().any(|d| d["kind"] == "gc_pauses"), "{ctx}: {}", l["diagnoses"]);

    assert_eq!(episodes.len(), blocks.len(), "{ctx}: episodes {episodes:#?}\nblocks {blocks:#?}");
    let sleep_syscall = if minor(version) <= 10 { "pselect6" } else { "clock_nanosleep" };
    for b in blocks {
        let (bs, be) = (num(&b["start"]), num(&b["end"]));
        let e = episodes
            .iter()
            .find(|e| num(&e["start"]) < be && num(&e["end"]) > bs)
            .unwrap_or_else(|| panic!("{ctx}: no episode for block {b}"));
        let (truth_ms, got_ms) = ((be - bs) * 1e3, num(&e["duration_ms"]));
        // Two intervals at an even pace; when the sampler fell behind (a loaded machine), the
        // error the episode states (its gaps at both ends) is what it promises.
        let allowed_ms = (2.0 * interval * 1e3).max(num(&e["duration_error_ms"]));
        assert!(
            (got_ms - truth_ms).abs() <= allowed_ms,
            "{ctx}: {b} lasted {truth_ms:.1} ms, episode {got_ms:.1} ms (± {:.1} stated)",
            num(&e["duration_error_ms"])
        );
        assert!((num(&e["start"]) - bs).abs() <= 2.0 * interval, "{ctx}: start of {b} vs {e}");
        assert_eq!(e["function"], b["function"], "{ctx}: {e}");
        assert_eq!(e["task"], "driver", "{ctx}: {e}");
        match b["kind"].as_str().unwrap() {
            "cpu" => assert_eq!(e["on_cpu"], true, "{ctx}: {e}"),
            _ => {
                assert_eq!(e["on_cpu"], false, "{ctx}: {e}");
                assert_eq!(e["waiting_in"], sleep_syscall, "{ctx}: {e}");
            }
        }
    }

    // Diagnoses: the four sleeps are synchronous I/O (a sleep, blamed on `sleepy`), the three
    // CPU blocks CPU-bound (plain Python code in `cpu_burn`), each with every block of its
    // kind; the ready burst while blocked is no overload.
    let diagnosis =
        |kind: &str| diagnosis::of_kind(&l["diagnoses"], kind).unwrap_or_else(|| panic!("{ctx}: no {kind}: {:#}", l["diagnoses"]));
    let of_kind = |k: &str| blocks.iter().filter(|b| b["kind"] == k).count().to_string();
    let io = diagnosis("sync_io");
    assert_eq!(io.ev("episodes"), of_kind("sleep"), "{ctx}: {io:#?}");
    assert_eq!(io.ev("syscall"), format!("{sleep_syscall} (sleep)"), "{ctx}: {io:#?}");
    assert!(io.ev("blamed frame").starts_with("sleepy ("), "{ctx}: {io:#?}");
    let cpu = diagnosis("cpu_bound");
    assert_eq!(cpu.ev("episodes"), of_kind("cpu"), "{ctx}: {cpu:#?}");
    assert_eq!(cpu.ev("computing"), "Python code in cpu_burn", "{ctx}: {cpu:#?}");
    assert_eq!(l["diagnoses"].as_array().unwrap().len(), 2, "{ctx}: {:#}", l["diagnoses"]);

    // Busy share over the whole seconds of the per-second series that the truth covers (it
    // stopped measuring when it wrote the file).
    let start = num(&r["recording"]["start"]);
    let until = num(&t["written_at"]);
    let series: Vec<&Value> = l["series"].as_array().unwrap().iter().filter(|w| start + num(&w["start_s"]) + 1.0 <= until).collect();
    assert!(series.len() >= 4, "{ctx}: {} whole seconds covered", series.len());
    let (lo, hi) = (start + num(&series[0]["start_s"]), start + num(&series[series.len() - 1]["start_s"]) + 1.0);
    let truth_busy = if flavor == "uvloop" {
        100.0 * covered(t["callback_intervals"].as_array().unwrap(), lo, hi) / (hi - lo)
    } else {
        100.0 * (1.0 - covered(t["select_intervals"].as_array().unwrap(), lo, hi) / (hi - lo))
    };
    let busy_windows = series.iter().map(|w| num(&w["busy_pct"])).sum::<f64>() / series.len() as f64;
    // On uvloop (no Python frame to tell idle by), time the loop thread waited for a CPU is
    // busy for the sampler (not in epoll) and in no callback of the truth's: the target
    // measured it (schedstat), and it widens the tolerance on a loaded machine.
    let waited_pct = if flavor == "uvloop" { 100.0 * runqueue_wait(&t["runqueue"], lo, hi) / (hi - lo) } else { 0.0 };
    assert!(
        (busy_windows - truth_busy).abs() <= 5.0 + waited_pct,
        "{ctx}: busy {busy_windows:.1}% vs truth {truth_busy:.1}% over [{lo}, {hi}] (the loop thread waited for a CPU {waited_pct:.1}% of it)"
    );
    let busy = num(&l["busy_pct"]);

    // Loop lag max against the heartbeat's own lateness.
    let (lag, truth_lag) = (num(&l["lag"]["max_ms"]), num(&t["heartbeat_max_late"]) * 1e3);
    let tolerance = (0.15 * truth_lag).max(10.0);
    assert!((lag - truth_lag).abs() <= tolerance, "{ctx}: lag max {lag:.1} ms vs truth {truth_lag:.1} ms");

    // The burst sat in the ready queue while the loop was blocked. The timers that fell due
    // meanwhile may join it for the moment before the loop runs the queue (a sample can land
    // there: CI saw burst + 1 once on uvloop), so the max is the burst plus at most those.
    let (ready_max, burst, due) = (num(&l["ready"]["max"]), num(&t["ready_burst"]), num(&t["timers_due_after_burst"]));
    assert!(burst > 0.0 && due >= 0.0, "{ctx}: truth {t}");
    assert!(burst <= ready_max && ready_max <= burst + due, "{ctx}: ready max {ready_max} vs burst {burst} + {due} timers due");

    // JSON lines: the same episodes and seconds as the JSON document, every line whole.
    let text = std::fs::read_to_string(&jsonl_path).unwrap();
    assert!(text.ends_with('\n'), "{ctx}: jsonl ends with a newline");
    let lines: Vec<Value> =
        text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{ctx}: not JSON ({e}): {line}"))).collect();
    let of = |kind: &str| -> Vec<&Value> { lines.iter().filter(|v| v["type"] == kind).collect() };
    assert_eq!(lines[0]["type"], "start", "{ctx}");
    assert_eq!(lines[lines.len() - 1]["type"], "end", "{ctx}");
    assert_eq!(lines[lines.len() - 1]["episodes"], all_episodes.len(), "{ctx}");
    let line_episodes = of("episode");
    assert_eq!(line_episodes.len(), all_episodes.len(), "{ctx}: {line_episodes:#?}");
    for (a, b) in line_episodes.iter().zip(all_episodes) {
        assert_eq!(a["function"], b["function"], "{ctx}");
        assert!((num(&a["duration_ms"]) - num(&b["duration_ms"])).abs() < 1e-6, "{ctx}: {a} vs {b}");
    }
    let seconds = of("second");
    assert_eq!(seconds.len(), l["series"].as_array().unwrap().len(), "{ctx}: one line per second");
    for (a, b) in seconds.iter().zip(l["series"].as_array().unwrap()) {
        assert!((num(&a["busy_pct"]) - num(&b["busy_pct"])).abs() < 0.01, "{ctx}: {a} vs {b}");
        assert_eq!(a["samples"], b["samples"], "{ctx}");
    }

    // The SVG: colours by category, the blocking functions present, figures as in the JSON.
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let blocked = frames_of_class(&svg, "loopspy-blocked");
    assert!(!blocked.is_empty(), "{ctx}: no blocked frames");
    for (title, (r_, g, b)) in &blocked {
        let category_frame = title.starts_with("BLOCKING the loop");
        assert!(*r_ >= 200 && *g <= 90 && *b <= 90 || category_frame, "{ctx}: blocked frame {title} is rgb({r_},{g},{b})");
    }
    for f in ["sleepy (", "cpu_burn ("] {
        let frame = blocked.iter().find(|(t, _)| t.starts_with(f)).unwrap_or_else(|| panic!("{ctx}: no blocked frame {f}"));
        assert!(frame.0.contains("blocked the loop for"), "{ctx}: {}", frame.0);
    }
    let idle = frames_of_class(&svg, "loopspy-idle");
    assert!(!idle.is_empty(), "{ctx}: no idle frames");
    for (title, (r_, _, b)) in &idle {
        assert!(b > r_ && *b >= 200, "{ctx}: idle frame {title} is not grey-blue");
    }
    assert!(svg.contains("id=\"loopspy-legend\""), "{ctx}: legend");
    for class in ["legend-blocked", "legend-busy", "legend-idle"] {
        assert!(svg.contains(class), "{ctx}: legend entry {class}");
    }
    let sub_at = svg.find("id=\"subtitle\"").expect("subtitle");
    let subtitle = &svg[sub_at..sub_at + svg[sub_at..].find("</text>").unwrap()];
    let lag_text = |ms: f64| {
        if ms >= 1000.0 {
            format!("{:.2} s", ms / 1e3)
        } else if ms >= 10.0 {
            format!("{ms:.0} ms")
        } else {
            format!("{ms:.1} ms")
        }
    };
    for expected in [
        format!("busy {:.1}%", busy),
        format!("lag p99 {}", lag_text(num(&l["lag"]["p99_ms"]))),
        format!("max {}", lag_text(lag)),
        format!("{} blocking episodes", episodes.len()),
    ] {
        assert!(subtitle.contains(&expected), "{ctx}: subtitle lacks {expected:?}: {subtitle}");
    }
    record(test, version, flavor, "pass");
}

flavor_tests!(schedule);

/// Seconds the target's loop thread waited for a CPU within `[lo, hi]`, from its cumulative
/// runqueue readings (interpolated at the edges; 0 without readings).
fn runqueue_wait(readings: &Value, lo: f64, hi: f64) -> f64 {
    let points: Vec<(f64, f64)> = readings.as_array().map(|a| a.iter().map(|p| (num(&p[0]), num(&p[1]))).collect()).unwrap_or_default();
    let at = |t: f64| -> Option<f64> {
        let after = points.iter().position(|p| p.0 >= t)?;
        if after == 0 {
            return Some(points[0].1);
        }
        let (a, b) = (points[after - 1], points[after]);
        Some(a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0).max(1e-9))
    };
    match (at(lo), at(hi).or(points.last().map(|p| p.1))) {
        (Some(a), Some(b)) => (b - a).max(0.0),
        _ => 0.0,
    }
}

/// GC pauses: a loop stopped by collections of every generation (`gc_pauses.py`, which times
/// each collection itself through `gc.callbacks`, and ends when done: the recording ends with
/// it, `--duration` is only a cap). Every pause is one episode blamed on the
/// collector, as long as the truth within the error the episode states, naming the
/// generation; the callbacks that only allocate are not blamed on it; the diagnosis fires.
fn gc_pauses(version: &str) {
    let test = "record/gc_pauses";
    let Some(interp) = require(version, test) else { return };
    record(test, version, "stock", "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let (truth_path, json_path, svg_path) = (dir.path().join("truth.json"), dir.path().join("r.json"), dir.path().join("r.svg"));
    let capture = dir.path().join("r.lsrec");
    let out = std::process::Command::new(loopspy_bin())
        .args(["record", "--rate", "100", "--threshold", "30", "--duration", "15", "--save"])
        .arg(&capture)
        .arg("-o")
        .arg(&json_path)
        .arg("-o")
        .arg(&svg_path)
        .arg("--")
        .arg(&interp.path)
        .arg(targets_dir().join("gc_pauses.py"))
        .arg(&truth_path)
        .output()
        .unwrap();
    let ctx = format!("Python {version}");
    assert_eq!(out.status.code(), Some(0), "{ctx}\n{}", describe(&out));
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&truth_path).expect("truth written in time")).unwrap();
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let l = &r["loops"][0];
    let episodes = l["episodes"].as_array().unwrap();
    let pauses = t["pauses"].as_array().unwrap();
    assert_eq!(pauses.len(), 5, "{ctx}: the target ran its rounds: {pauses:#?}");
    let is_gc = |e: &Value| e["function"] == "<garbage collection>";
    let gc_episodes: Vec<&Value> = episodes.iter().filter(|e| is_gc(e)).collect();
    let interval = 1.0 / RATE;
    // None invented: each GC episode is a pause the target timed.
    for e in &gc_episodes {
        assert!(
            pauses.iter().any(|p| num(&e["start"]) < num(&p["end"]) && num(&e["end"]) > num(&p["start"])),
            "{ctx}: a GC episode without a collection: {e}\npauses {pauses:#?}"
        );
    }
    // Every pause of 50 ms or more found (a loaded machine makes some shorter
    // than planned), as long as the truth within the error the episode states.
    let long: Vec<&Value> = pauses.iter().filter(|p| (num(&p["end"]) - num(&p["start"])) >= 0.050).collect();
    assert!(long.len() >= 3, "{ctx}: the target's pauses were too short to test: {pauses:#?}");
    for p in long {
        let (ps, pe) = (num(&p["start"]), num(&p["end"]));
        let found: Vec<&&Value> = gc_episodes.iter().filter(|e| num(&e["start"]) < pe && num(&e["end"]) > ps).collect();
        assert_eq!(found.len(), 1, "{ctx}: one GC episode for pause {p}\n{episodes:#?}");
        let e = found[0];
        let (truth_ms, got_ms) = ((pe - ps) * 1e3, num(&e["duration_ms"]));
        let allowed_ms = (2.0 * interval * 1e3).max(num(&e["duration_error_ms"]));
        assert!(
            (got_ms - truth_ms).abs() <= allowed_ms,
            "{ctx}: pause {p} lasted {truth_ms:.1} ms, episode {got_ms:.1} ms (± {allowed_ms:.1})"
        );
        assert!(num(&e["gc_pct"]) >= 50.0, "{ctx}: {e}");
        assert_eq!(e["gc_generation"], p["generation"], "{ctx}: the generation of {p}: {e}");
        let interrupted = e["gc_interrupted"]["function"].as_str().unwrap_or_default();
        assert!(["collect_full", "collect_young"].contains(&interrupted), "{ctx}: the frame the collection interrupted: {e}");
    }
    // Allocating without collecting is not a GC pause: the episode of each build (one long
    // enough to be one) is not blamed on the collector, and none of its samples were
    // collecting.
    let builds = t["builds"].as_array().unwrap();
    let mut checked = 0;
    for b in builds {
        let mid = (num(&b["start"]) + num(&b["end"])) / 2.0;
        if let Some(e) = episodes.iter().find(|e| num(&e["start"]) < mid && num(&e["end"]) > mid) {
            assert!(!is_gc(e) && e["gc_pct"] == 0.0, "{ctx}: a build ({b}) blamed on the collector: {e}");
            checked += 1;
        }
    }
    assert!(checked >= 1, "{ctx}: no build was an episode: {builds:#?}\n{episodes:#?}");
    let diagnoses = l["diagnoses"].as_array().unwrap();
    let d = diagnoses.iter().find(|d| d["kind"] == "gc_pauses").unwrap_or_else(|| panic!("{ctx}: no GC diagnosis: {diagnoses:#?}"));
    assert!(d["title"].as_str().unwrap().contains(&format!("{} times", gc_episodes.len())), "{ctx}: {d}");
    // The flame graph shows the collector above the code it interrupted.
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.contains("&lt;garbage collection&gt;"), "{ctx}: no GC frame in the flame graph");
    // The capture file keeps each sample's GC state: rendered again, the same GC episodes.
    let rendered = dir.path().join("again.json");
    let (out, _, _) = loopspy(&["render", capture.to_str().unwrap(), "--threshold", "30", "-o", rendered.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{ctx}\n{}", describe(&out));
    let again: Value = serde_json::from_str(&std::fs::read_to_string(&rendered).unwrap()).unwrap();
    let gc_of = |v: &Value| -> Vec<(String, Value, Value)> {
        v["loops"][0]["episodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["function"].to_string(), e["gc_pct"].clone(), e["gc_generation"].clone()))
            .collect()
    };
    assert_eq!(gc_of(&again), gc_of(&r), "{ctx}: render of the capture");
    record(test, version, "stock", "pass");
}

version_tests!(mod gc_pauses_tests, gc_pauses);
