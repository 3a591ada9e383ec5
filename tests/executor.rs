//! A loop's default executor read from outside, against a target that starves it and measures
//! itself (tests/targets/executor_starved.py: every worker stuck in `render_export_sync`, work
//! queueing behind them through `asyncio.to_thread` and `run_in_executor`), and the same
//! service using its executor lightly (`--healthy`); on every interpreter, stock loop and
//! uvloop, side by side (each version's three targets at once).
//!
//! `dump`: `max_workers`, the workers (by name, with their native ids) and what they run are
//! the target's own; the queue depth lies within the depths the target logged around the
//! read. `record`: the executor-starvation diagnosis fires with the target's figures (and
//! `render` of the saved capture gives it again), stays silent on the healthy service, and
//! `--all-threads` names the workers' roots.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

const TEST: &str = "executor/starvation";

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The truth file as the target last wrote it.
fn truth_now(s: &Scenario) -> Value {
    serde_json::from_str(&std::fs::read_to_string(s.dir.path().join("truth.json")).unwrap()).unwrap()
}

/// Queue depths the target logged that a read between `before` and `after` may have seen:
/// the last one logged before `before`, and every one logged until `after`.
fn depths_between(truth: &Value, before: f64, after: f64) -> (u64, u64) {
    let history: Vec<(f64, u64)> = truth["history"].as_array().unwrap().iter().map(|h| (num(&h[0]), h[1].as_u64().unwrap())).collect();
    let start = history.iter().rposition(|(t, _)| *t <= before).unwrap_or(0);
    let seen: Vec<u64> = history[start..].iter().filter(|(t, _)| *t <= after).map(|(_, d)| *d).collect();
    assert!(!seen.is_empty(), "no depth logged before {after}: {history:?}");
    (*seen.iter().min().unwrap(), *seen.iter().max().unwrap())
}

fn names_of(truth: &Value) -> BTreeMap<String, Option<i64>> {
    truth["workers"].as_array().unwrap().iter().map(|w| (w["name"].as_str().unwrap().to_string(), w["native_id"].as_i64())).collect()
}

/// `dump` of the starved service: the executor's figures against the target's.
fn check_dump(s: &Scenario, ctx: &str) {
    let pid = s.pid().to_string();
    let (out, before, after) = loopspy(&["dump", "--json", "--max-tasks", "0", "--pid", &pid]);
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    std::thread::sleep(std::time::Duration::from_millis(50));
    let truth = truth_now(s);
    let dumped = json_of(&out);
    let x = &dumped["loops"][0]["executor"];
    let c = format!("{ctx}\nexecutor: {x:#}\ntruth: {truth:#}");
    // One look shows the starvation: the dump says so, naming the work.
    let d = starvation(dumped["loops"][0]["diagnoses"].as_array().unwrap())
        .unwrap_or_else(|| panic!("{c}: no diagnosis in the dump: {:#}", dumped["loops"][0]["diagnoses"]));
    assert!(d.to_string().contains("render_export_sync"), "{c}: {d:#}");
    assert_eq!(x["max_workers"], truth["max_workers"], "{c}");
    let max = truth["max_workers"].as_u64().unwrap();
    assert_eq!(x["workers"].as_u64(), Some(max), "{c}");
    assert_eq!(x["busy"].as_u64(), Some(max), "{c}: every worker is stuck in render_export_sync");
    assert_eq!(x["saturated"], true, "{c}");
    assert_eq!(x["shutdown"], false, "{c}");
    let (lo, hi) = depths_between(&truth, before, after);
    let queued = x["queued"].as_u64().unwrap();
    assert!((lo..=hi).contains(&queued), "{c}: queued {queued} outside [{lo}, {hi}] logged during the read");
    let names = names_of(&truth);
    let threads = x["threads"].as_array().unwrap();
    assert_eq!(threads.len(), names.len(), "{c}");
    for w in threads {
        let name = w["name"].as_str().unwrap();
        assert!(names.contains_key(name), "{c}: worker {name} is not the target's");
        if let Some(id) = names[name] {
            assert_eq!(w["native_id"].as_i64(), Some(id), "{c}: {name}");
        }
        assert_eq!(w["state"], "busy", "{c}");
        assert_eq!(w["work"]["function"], "render_export_sync", "{c}");
        assert!(w["work"]["file"].as_str().unwrap().ends_with("executor_starved.py"), "{c}");
    }
}

/// `record` (4.5 s: five reads of the executor a second apart); returns the loop's
/// diagnoses of its JSON, and (with `files`) the paths of its capture and collapsed stacks.
fn record_for(s: &Scenario, ctx: &str, files: bool) -> (Vec<Value>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (json, capture, folded) = (dir.path().join("r.json"), dir.path().join("r.lsrec"), dir.path().join("r.collapsed"));
    let pid = s.pid().to_string();
    let mut args = vec!["record", "--pid", &pid, "--duration", "4.5", "--rate", "20", "-o", json.to_str().unwrap()];
    if files {
        args.extend(["--save", capture.to_str().unwrap(), "-o", folded.to_str().unwrap(), "--all-threads"]);
    }
    let (out, _, _) = loopspy(&args);
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (report["loops"][0]["diagnoses"].as_array().cloned().unwrap_or_default(), dir)
}

fn starvation(d: &[Value]) -> Option<&Value> {
    d.iter().find(|d| d["kind"] == "executor_starvation")
}

fn starved(version: &str, flavor: &str) {
    let Some(interp) = require_flavor(version, TEST, flavor) else { return };
    record(TEST, version, flavor, "FAIL");
    let ctx = format!("Python {version} [{flavor}]");
    let args: &[&str] = if flavor == "uvloop" { &["--uvloop"] } else { &[] };
    let s = Scenario::start(interp, "executor_starved.py", args);
    check_dump(&s, &ctx);

    let stock = flavor == "stock";
    let before = monotonic();
    let (diagnoses, dir) = record_for(&s, &ctx, stock);
    let after = monotonic();
    let truth = truth_now(&s);
    let d = starvation(&diagnoses).unwrap_or_else(|| panic!("{ctx}: no executor starvation in {diagnoses:#?}"));
    let c = format!("{ctx}\ndiagnosis: {d:#}\ntruth: {truth:#}");
    let max = truth["max_workers"].as_u64().unwrap();
    assert!(d["title"].as_str().unwrap().contains(&format!("{max}/{max} workers busy in render_export_sync")), "{c}");
    let evidence: BTreeMap<&str, &str> =
        d["evidence"].as_array().unwrap().iter().map(|e| (e["what"].as_str().unwrap(), e["value"].as_str().unwrap())).collect();
    // "max N, last M": both among the depths the target logged while it was recorded.
    let (lo, hi) = depths_between(&truth, before, after);
    let figures: Vec<u64> =
        evidence["work items queued"].split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).map(|p| p.parse().unwrap()).collect();
    assert_eq!(figures.len(), 2, "{c}");
    assert!(figures.iter().all(|q| (lo..=hi).contains(q)), "{c}: queued {figures:?} outside [{lo}, {hi}]");
    assert!(evidence["workers busy"].starts_with(&format!("{max}/{max}")), "{c}");
    let names = names_of(&truth);
    let run = evidence["workers run"];
    assert!(run.starts_with("render_export_sync (executor_starved.py:"), "{c}");
    assert!(names.keys().take(6).filter(|n| run.contains(n.as_str())).count() >= names.len().min(6), "{c}: thread names");
    // Every submission is a pending task: at least those made before the recording.
    assert!(evidence["pending tasks"].parse::<u64>().unwrap() >= lo + max, "{c}");
    assert!(d["next_step"].as_str().unwrap().contains("set_default_executor"), "{c}");

    if stock {
        // The capture renders the same diagnosis without the process.
        let rendered = dir.path().join("again.json");
        let capture = dir.path().join("r.lsrec");
        let (out, _, _) = loopspy(&["render", capture.to_str().unwrap(), "-o", rendered.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
        let again: Value = serde_json::from_str(&std::fs::read_to_string(&rendered).unwrap()).unwrap();
        assert_eq!(starvation(again["loops"][0]["diagnoses"].as_array().unwrap()), Some(d), "{ctx}: render");
        // --all-threads: each worker's root carries its name.
        let folded = std::fs::read_to_string(dir.path().join("r.collapsed")).unwrap();
        for (name, id) in &names {
            let root = match id {
                Some(id) => format!("{name} (thread {id}) (no event loop);"),
                None => format!("{name} (thread "),
            };
            assert!(folded.lines().any(|l| l.starts_with(&root)), "{ctx}: no root {root:?} in\n{folded}");
        }
    }
    record(TEST, version, flavor, "ok");
}

/// The service using its executor lightly: read, and no diagnosis.
fn healthy(version: &str) {
    let test = "executor/healthy";
    let Some(interp) = require(version, test) else { return };
    record(test, version, "stock", "FAIL");
    let ctx = format!("Python {version} [healthy]");
    let s = Scenario::start(interp, "executor_starved.py", &["--healthy"]);
    let pid = s.pid().to_string();
    let (out, _, _) = loopspy(&["dump", "--json", "--max-tasks", "0", "--pid", &pid]);
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    let dumped = json_of(&out);
    let x = &dumped["loops"][0]["executor"];
    let truth = truth_now(&s);
    let c = format!("{ctx}\nexecutor: {x:#}\ntruth: {truth:#}");
    assert_eq!(x["max_workers"], truth["max_workers"], "{c}");
    assert_eq!(x["saturated"], false, "{c}");
    assert!(starvation(dumped["loops"][0]["diagnoses"].as_array().unwrap()).is_none(), "{c}");
    assert!(x["queued"].as_u64().unwrap() <= 1, "{c}");
    assert!(x["busy"].as_u64().unwrap() <= 1, "{c}");
    let names = names_of(&truth);
    for w in x["threads"].as_array().unwrap() {
        assert!(names.contains_key(w["name"].as_str().unwrap()), "{c}");
    }
    let (diagnoses, _dir) = record_for(&s, &ctx, false);
    assert!(starvation(&diagnoses).is_none(), "{ctx}: {diagnoses:#?}");
    record(test, version, "stock", "ok");
}

/// Each version's three targets side by side.
fn check(version: &str) {
    let runs: Vec<std::thread::JoinHandle<()>> = vec![
        std::thread::spawn({
            let v = version.to_string();
            move || starved(&v, "stock")
        }),
        std::thread::spawn({
            let v = version.to_string();
            move || starved(&v, "uvloop")
        }),
        std::thread::spawn({
            let v = version.to_string();
            move || healthy(&v)
        }),
    ];
    let failures: Vec<String> = runs
        .into_iter()
        .filter_map(|h| h.join().err())
        .map(|e| e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

version_tests!(check);
