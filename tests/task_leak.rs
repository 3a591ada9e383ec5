//! Task leaks, against tests/targets/task_leak.py (about 300 tasks a second of
//! `handle_request`, all waiting on one asyncio.Semaphore; 40 `consume` tasks on one Queue),
//! which logs every 100 ms how many tasks wait on each, counted from their own waiter lists.
//!
//! `dump` groups the pending tasks: the coroutine, the line where it is suspended, what it
//! waits on and that it is the one semaphore (and the one queue) by address, with counts
//! between the target's counts just before and just after the look (stock loop and uvloop).
//! On the stock loop, `record` diagnoses the leak (the right coroutine and awaitable, its
//! groups within the truth), while a healthy target recorded at the same time (as many tasks
//! a second, each finishing within a few ms) gets no diagnosis; `render` of the saved capture
//! gives the same groups and diagnosis without the process.

mod common;

use common::*;
use serde_json::Value;

/// Entries `(loop.time(), created, pending, on the semaphore, on the queue)`.
fn log_of(truth: &Value) -> Vec<[f64; 5]> {
    truth["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let a = e.as_array().unwrap();
            [0, 1, 2, 3, 4].map(|i| a[i].as_f64().unwrap())
        })
        .collect()
}

/// The target's counts in `column` just before `from` and just after `to`: what loopspy read
/// in between must lie within (the leak only grows).
fn bracket(log: &[[f64; 5]], column: usize, from: f64, to: f64) -> Option<(f64, f64)> {
    let lo = log.iter().rev().find(|e| e[0] <= from)?[column];
    let hi = log.iter().find(|e| e[0] >= to)?[column];
    Some((lo, hi))
}

fn reread(scenario: &Scenario) -> Value {
    let text = std::fs::read_to_string(scenario.dir.path().join("truth.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn group<'a>(groups: &'a Value, function: &str) -> &'a Value {
    groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["function"].as_str().unwrap().ends_with(function))
        .unwrap_or_else(|| panic!("no group of {function}: {groups:#}"))
}

/// Check the groups of one pass (read between `from` and `to`, target clock) against the truth.
fn check_groups(groups: &Value, truth: &Value, from: f64, to: f64, ctx: &str) {
    let leak = group(groups, "handle_request");
    assert_eq!(leak["waits_on"], "semaphore", "{ctx}: {leak}");
    assert_eq!(leak["object"], truth["semaphore"], "{ctx}: one semaphore, by address: {leak}");
    assert_eq!(leak["object_type"], "Semaphore", "{ctx}");
    assert_eq!(leak["line"], truth["leak_line"], "{ctx}: where it is suspended");
    assert!(leak["file"].as_str().unwrap().ends_with("task_leak.py"), "{ctx}: {leak}");
    // The largest group first.
    assert_eq!(groups["groups"][0]["function"], leak["function"], "{ctx}: {groups:#}");
    let (pending, examined) = (groups["pending"].as_f64().unwrap(), groups["examined"].as_f64().unwrap());
    // Sampled: the binomial error of a share (4 sigma) and the sampling stride.
    let slack = |share: f64| {
        if groups["sampled"] == true {
            4.0 * (share * (1.0 - share) / examined).sqrt() * pending + pending / examined
        } else {
            0.0
        }
    };
    let log = log_of(truth);
    let Some((lo, hi)) = bracket(&log, 3, from, to) else { panic!("{ctx}: no truth around {from}..{to}") };
    let n = leak["estimated"].as_f64().unwrap();
    let s = slack(n / pending);
    assert!(lo - s <= n && n <= hi + s, "{ctx}: {n} tasks of handle_request, the target counted {lo} then {hi} (± {s:.0})");
    // The 40 queue consumers: in the groups unless a small sample may miss them.
    let consumers = truth["queue_waiters"].as_f64().unwrap();
    let found = groups["groups"].as_array().unwrap().iter().find(|g| g["function"].as_str().unwrap().ends_with("consume"));
    let Some(queue) = found else {
        assert!(consumers / pending * examined < 5.0, "{ctx}: no group of consume: {groups:#}");
        return;
    };
    assert_eq!(queue["waits_on"], "queue_get", "{ctx}: {queue}");
    assert_eq!(queue["object"], truth["queue"], "{ctx}: one queue, by address: {queue}");
    let n = queue["estimated"].as_f64().unwrap();
    let s = slack(consumers / pending);
    assert!((n - consumers).abs() <= s, "{ctx}: {n} consumers, the target has {consumers} (± {s:.0})");
}

/// Task counts a recording must hold, and the time they span (seconds): more than the
/// diagnosis needs (`task_leak::MIN_COUNTS`, `MIN_SPAN_S`).
const COUNTS: usize = 5;
const SPAN_S: f64 = 4.0;

/// `record` a process until its capture file holds [`COUNTS`] task counts over [`SPAN_S`]
/// (about 5 s; longer on a loaded machine, where counting backs off), then stop it (SIGINT)
/// and return its JSON report.
fn record_until_counted(pid: i32, path: &std::path::Path) -> Value {
    let child = std::process::Command::new(loopspy_bin())
        .args(["record", "--duration", "60", "-o"])
        .arg(path)
        .arg("--save")
        .arg(path.with_extension("lsrec"))
        .args(["--pid", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let capture = path.with_extension("lsrec");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(50);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let counts: Vec<f64> = loopspy::capture::capture_file::read(&capture)
            .map(|c| c.recording.task_counts.iter().filter(|c| c.loop_index == 0).map(|c| c.t).collect())
            .unwrap_or_default();
        if counts.len() >= COUNTS && counts[counts.len() - 1] - counts[0] >= SPAN_S {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{} task counts in 50 s", counts.len());
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    // 130: interrupted, after writing what was recorded.
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `dump` groups the leak (every flavor); on the stock loop `record` diagnoses it and stays
/// silent on a healthy target recorded at the same time.
fn leak(version: &str, flavor: &str) {
    let test = "task_leak/groups_and_diagnosis";
    let Some(interp) = require(version, test) else { return };
    if flavor == "uvloop" && interp.uvloop.is_none() {
        record(test, version, flavor, "skipped (no uvloop wheel)");
        return;
    }
    record(test, version, flavor, "FAIL");
    let ctx = format!("Python {version} [{flavor}]");
    let uv: &[&str] = if flavor == "uvloop" { &["--uvloop"] } else { &[] };
    let scenario = Scenario::start(interp, "task_leak.py", uv);
    let healthy = (flavor == "stock").then(|| Scenario::start(interp, "task_leak.py", &["--healthy"]));

    // The healthy target's recording runs beside the checks of the leaking one.
    let dir = tempfile::tempdir().unwrap();
    let healthy_run = healthy.as_ref().map(|h| {
        let (pid, path) = (h.pid(), dir.path().join("healthy.json"));
        std::thread::spawn(move || record_until_counted(pid, &path))
    });

    let (out, before, after) = loopspy(&["dump", "--json", "--max-tasks", "1", "--pid", &scenario.pid().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let groups = json_of(&out)["loops"][0]["tasks"]["groups"].clone();
    std::thread::sleep(std::time::Duration::from_millis(600));
    check_groups(&groups, &reread(&scenario), before, after, &format!("{ctx} dump"));

    if flavor == "stock" {
        let r = record_until_counted(scenario.pid(), &dir.path().join("leak.json"));
        std::thread::sleep(std::time::Duration::from_millis(600));
        let truth = reread(&scenario);
        let l = &r["loops"][0];
        let g = &l["task_groups"];
        let at = r["recording"]["start"].as_f64().unwrap() + g["at_s"].as_f64().unwrap();
        // The pass grouped the tasks counted just before it (counting takes well under 0.3 s).
        check_groups(g, &truth, at, at + g["cost_ms"].as_f64().unwrap() / 1e3 + 0.3, &format!("{ctx} record"));
        let diagnoses = l["diagnoses"].as_array().unwrap();
        let d = diagnoses.iter().find(|d| d["kind"] == "task_leak").unwrap_or_else(|| panic!("{ctx}: no task leak in {l:#}"));
        let title = d["title"].as_str().unwrap();
        assert!(title.contains("handle_request") && title.contains("one asyncio.Semaphore"), "{ctx}: {title}");
        let evidence: Vec<String> = d["evidence"].as_array().unwrap().iter().map(|e| e["value"].as_str().unwrap().to_string()).collect();
        assert!(evidence.iter().any(|e| e.contains(truth["semaphore"].as_str().unwrap())), "{ctx}: {evidence:?}");
        assert!(d["next_step"].as_str().unwrap().contains("semaphore"), "{ctx}: {d}");
        // Rendered again from the saved capture, without the process: the same groups and diagnosis.
        let again = dir.path().join("again.json");
        let (out, _, _) = loopspy(&["render", dir.path().join("leak.lsrec").to_str().unwrap(), "-o", again.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let again: Value = serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
        assert_eq!(again["loops"][0]["task_groups"], *g, "{ctx}: render");
        assert_eq!(again["loops"][0]["diagnoses"], l["diagnoses"], "{ctx}: render");
        // The growth it reports is the target's own, within the noise of a 5 s fit.
        let per_s = truth["per_s"].as_f64().unwrap();
        let trend = l["tasks"]["pending_trend_per_s"].as_f64().unwrap();
        let log = log_of(&truth);
        let (a, b) = (log.first().unwrap(), log.last().unwrap());
        let achieved = (b[2] - a[2]) / (b[0] - a[0]);
        assert!(
            achieved <= per_s * 1.05 && (0.6 * achieved..=1.4 * achieved).contains(&trend),
            "{ctx}: trend {trend}/s, target {achieved}/s"
        );
    }
    if let (Some(run), Some(h)) = (healthy_run, healthy.as_ref()) {
        let r = run.join().unwrap();
        let l = &r["loops"][0];
        // The rule was evaluated: enough counts over enough time, and tasks came and went.
        assert!(l["task_series"].as_array().unwrap().len() >= COUNTS, "{ctx} healthy: {}", l["task_series"]);
        let created = log_of(&reread(h));
        assert!(created.last().unwrap()[1] - created.first().unwrap()[1] > 500.0, "{ctx} healthy: tasks were created");
        assert!(l["diagnoses"].as_array().unwrap().iter().all(|d| d["kind"] != "task_leak"), "{ctx} healthy: {:#}", l["diagnoses"]);
        let g = &l["task_groups"];
        let consume = group(g, "consume")["estimated"].as_f64().unwrap();
        let (pending, examined) = (g["pending"].as_f64().unwrap(), g["examined"].as_f64().unwrap());
        let p = 40.0 / pending;
        let slack = if g["sampled"] == true { 4.0 * (p * (1.0 - p) / examined).sqrt() * pending + pending / examined } else { 0.0 };
        assert!((consume - 40.0).abs() <= slack, "{ctx} healthy: {consume} consumers (± {slack:.0}): {g:#}");
    }
    record(test, version, flavor, "pass");
}

flavor_tests!(leak);
