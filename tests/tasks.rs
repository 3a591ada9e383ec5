//! asyncio tasks from outside, against a target that records its own tasks through asyncio's
//! API (tests/targets/tasks.py): names, states, the running task, the coroutine chain where
//! each is suspended (function, file, line), who awaits whom, the await cycle; on every
//! interpreter present, stock loop and uvloop. On 3.14+ the task set must equal what the
//! interpreter's own `python -m asyncio ps PID` prints.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value;

fn minor(version: &str) -> u32 {
    version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0)
}

fn names(refs: &Value) -> BTreeSet<String> {
    refs.as_array().map(|a| a.iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

fn frames(v: &Value) -> Vec<(String, String, i64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| (f["function"].as_str().unwrap().to_string(), f["file"].as_str().unwrap().to_string(), f["line"].as_i64().unwrap()))
        .collect()
}

fn check(version: &str, flavor: &str) {
    let test = "tasks/known_tasks";
    let Some(interp) = require(version, test) else { return };
    if !loopspy::layout::SUPPORTED.iter().any(|v| v.to_string() == version) {
        return;
    }
    if flavor == "uvloop" && interp.uvloop.is_none() {
        record(test, version, flavor, "skipped (no uvloop wheel)");
        return;
    }
    record(test, version, flavor, "FAIL");
    let args: &[&str] = if flavor == "uvloop" { &["--uvloop"] } else { &[] };
    let scenario = Scenario::start(interp, "tasks.py", args);
    let pid = scenario.pid().to_string();
    let (out, _, _) = loopspy(&["dump", "--json", "--pid", &pid]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_of(&out);
    let ctx = format!("Python {version} [{flavor}]");
    let t = &scenario.truth;
    let tasks = &report["loops"][0]["tasks"];
    let list = tasks["list"].as_array().unwrap();
    let by_name: BTreeMap<&str, &Value> = list.iter().map(|d| (d["name"].as_str().unwrap(), d)).collect();

    // Which tasks are listed: every pending one; finished ones only where the interpreter
    // still lists them (3.14+ unlink a task when it finishes).
    let done_listed = t["done_listed"].as_bool().unwrap();
    let expected: BTreeSet<&str> = t["tasks"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, d)| done_listed || d["state"] == "pending")
        .map(|(n, _)| n.as_str())
        .collect();
    let got: BTreeSet<&str> = by_name.keys().copied().collect();
    assert_eq!(got, expected, "{ctx}: task names");
    let pending = expected.iter().filter(|n| t["tasks"][**n]["state"] == "pending").count();
    assert_eq!(tasks["counts"]["pending"], pending, "{ctx}");
    assert_eq!(tasks["counts"]["total"], expected.len(), "{ctx}");
    assert_eq!(tasks["not_shown"], 0, "{ctx}");

    for name in &expected {
        let truth = &t["tasks"][*name];
        let d = by_name[name];
        let c = format!("{ctx}: task {name}\nreport: {d:#}\ntruth: {truth:#}");
        assert_eq!(d["state"], truth["state"], "{c}");
        assert_eq!(d["running"], truth["running"], "{c}");
        if truth["state"] == "pending" && truth["running"] == false {
            assert_eq!(frames(&d["coroutines"]), frames(&truth["coroutines"]), "{c}");
        }
        // Who it awaits: the tasks behind its _fut_waiter (a task, or a gather's children).
        let awaits: BTreeSet<String> = match d["waiting"]["kind"].as_str() {
            Some("task") => [d["waiting"]["task"]["name"].as_str().unwrap().to_string()].into(),
            Some("gather") => names(&d["waiting"]["tasks"]),
            _ => BTreeSet::new(),
        };
        let truth_awaits: BTreeSet<String> =
            truth["awaits"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
        assert_eq!(awaits, truth_awaits, "{c}");
    }
    // Awaited-by is the reverse edge.
    assert_eq!(names(&by_name["sleeper"]["awaited_by"]), ["waiter".to_string()].into(), "{ctx}");
    assert_eq!(names(&by_name["worker-2"]["awaited_by"]), ["parent".to_string()].into(), "{ctx}");
    // The tree: parent over the three workers; the cycle reported as a cycle.
    let tree = tasks["tree"].as_array().unwrap();
    let parent = tree.iter().find(|n| n["name"] == "parent").expect("parent is a root");
    assert_eq!(names(&parent["awaits"]), ["worker-1", "worker-2", "worker-3"].map(String::from).into(), "{ctx}");
    let cycles = tasks["cycles"].as_array().unwrap();
    assert_eq!(cycles.len(), 1, "{ctx}: {cycles:?}");
    let members: BTreeSet<&str> = cycles[0].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(members, ["cycle-a", "cycle-b"].into(), "{ctx}");

    // 3.14+: the interpreter's own view of the same process.
    if minor(version) >= 14 && flavor == "stock" {
        let ps = std::process::Command::new(&interp.path).args(["-m", "asyncio", "ps", &pid]).output().unwrap();
        assert!(ps.status.success(), "{ctx}: python -m asyncio ps failed: {}", String::from_utf8_lossy(&ps.stderr));
        let text = String::from_utf8_lossy(&ps.stdout);
        let header = text.lines().next().unwrap();
        let col = |name: &str| header.find(name).unwrap_or_else(|| panic!("no column {name} in {header}"));
        let (id_at, name_at, stack_at, chain_at) = (col("task id"), col("task name"), col("coroutine stack"), col("awaiter chain"));
        let mut theirs = BTreeSet::new();
        let mut stacks = BTreeMap::new();
        for line in text.lines().skip(2).filter(|l| l.len() > chain_at) {
            let id = line[id_at..name_at].trim().to_string();
            let name = line[name_at..stack_at].trim().to_string();
            stacks.insert(name.clone(), line[stack_at..chain_at].trim().to_string());
            theirs.insert((id, name));
        }
        let ours: BTreeSet<(String, String)> =
            list.iter().map(|d| (d["address"].as_str().unwrap().to_string(), d["name"].as_str().unwrap().to_string())).collect();
        assert_eq!(ours, theirs, "{ctx}: loopspy's tasks vs `python -m asyncio ps`:\n{text}");
        for d in list.iter().filter(|d| d["running"] == false) {
            let chain: Vec<String> = frames(&d["coroutines"]).into_iter().map(|f| f.0).collect();
            assert_eq!(chain.join(" -> "), stacks[d["name"].as_str().unwrap()], "{ctx}: coroutine stack of {}", d["name"]);
        }
    }
    record(test, version, flavor, "pass");
}

macro_rules! for_each_version {
    ($($name:ident: $version:literal),* $(,)?) => {$(
        mod $name {
            #[test] fn stock() { super::check($version, "stock") }
            #[test] fn uvloop() { super::check($version, "uvloop") }
        }
    )*};
}

for_each_version!(py3_8: "3.8", py3_9: "3.9", py3_10: "3.10", py3_11: "3.11", py3_12: "3.12", py3_13: "3.13", py3_14: "3.14", py3_15: "3.15");

/// 50,000 pending tasks: the count is exact, the list is cut where asked and says so.
fn many(version: &str) {
    let test = "tasks/50k_count";
    let Some(interp) = require(version, test) else { return };
    if !loopspy::layout::SUPPORTED.iter().any(|v| v.to_string() == version) {
        return;
    }
    record(test, version, "stock", "FAIL");
    let scenario = Scenario::start(interp, "many_tasks.py", &[]);
    let (out, _, _) = loopspy(&["dump", "--json", "--max-tasks", "100", "--pid", &scenario.pid().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let tasks = &json_of(&out)["loops"][0]["tasks"];
    let pending = scenario.truth["pending"].as_u64().unwrap();
    assert!(pending >= 50_000, "{}", scenario.truth);
    assert_eq!(tasks["counts"]["pending"], pending, "Python {version}: {}", tasks["counts"]);
    assert_eq!(tasks["shown"], 100);
    assert_eq!(tasks["not_shown"].as_u64().unwrap(), tasks["counts"]["total"].as_u64().unwrap() - 100);
    assert_eq!(tasks["registry_truncated"], false);
    // The running task comes first, then pending ones.
    assert!(tasks["list"].as_array().unwrap().iter().all(|t| t["state"] == "pending"));
    record(test, version, "stock", "pass");
}

mod many_tasks {
    #[test] fn py3_8() { super::many("3.8") }
    #[test] fn py3_9() { super::many("3.9") }
    #[test] fn py3_10() { super::many("3.10") }
    #[test] fn py3_11() { super::many("3.11") }
    #[test] fn py3_12() { super::many("3.12") }
    #[test] fn py3_13() { super::many("3.13") }
    #[test] fn py3_14() { super::many("3.14") }
    #[test] fn py3_15() { super::many("3.15") }
}

/// `record` counts pending tasks about once a second; each count equals the target's own
/// count at that moment (it adds 10 tasks every 100 ms and logs how many are pending).
fn growing(version: &str) {
    let test = "tasks/record_pending_series";
    let Some(interp) = require(version, test) else { return };
    if !loopspy::layout::SUPPORTED.iter().any(|v| v.to_string() == version) {
        return;
    }
    record(test, version, "stock", "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let (truth_path, out_path) = (dir.path().join("t.json"), dir.path().join("r.json"));
    let out = std::process::Command::new(loopspy_bin())
        .args(["record", "--duration", "4.5", "-o"])
        .arg(&out_path)
        .arg("--")
        .arg(&interp.path)
        .arg(targets_dir().join("many_tasks.py"))
        .arg(&truth_path)
        .arg("--grow")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&truth_path).unwrap()).unwrap();
    let log: Vec<(f64, u64)> = t["log"].as_array().unwrap().iter().map(|e| (e[0].as_f64().unwrap(), e[1].as_u64().unwrap())).collect();
    let l = &r["loops"][0];
    let series = l["task_series"].as_array().unwrap();
    assert!(series.len() >= 3, "about one count a second: {series:?}");
    let start = r["recording"]["start"].as_f64().unwrap();
    let mut checked = 0;
    for p in series {
        let at = start + p["t_s"].as_f64().unwrap();
        // The target's counts just before and just after this moment bound ours (a batch may
        // be created while we count). `main` is pending too.
        let before = log.iter().filter(|(ts, _)| *ts <= at).map(|(_, n)| *n).last();
        let after = log.iter().find(|(ts, _)| *ts > at).map(|(_, n)| *n);
        let (Some(lo), Some(hi)) = (before, after) else { continue };
        let got = p["pending"].as_u64().unwrap();
        assert!(lo <= got && got <= hi, "Python {version}: {got} pending at {at}, target counted {lo} then {hi}");
        checked += 1;
    }
    assert!(checked >= 2, "{series:?} vs {log:?}");
    let trend = l["tasks"]["pending_trend_per_s"].as_f64().unwrap();
    assert!((60.0..=120.0).contains(&trend), "about 100 new tasks a second: {trend}");
    record(test, version, "stock", "pass");
}

mod record_series {
    #[test] fn py3_8() { super::growing("3.8") }
    #[test] fn py3_9() { super::growing("3.9") }
    #[test] fn py3_10() { super::growing("3.10") }
    #[test] fn py3_11() { super::growing("3.11") }
    #[test] fn py3_12() { super::growing("3.12") }
    #[test] fn py3_13() { super::growing("3.13") }
    #[test] fn py3_14() { super::growing("3.14") }
    #[test] fn py3_15() { super::growing("3.15") }
}
