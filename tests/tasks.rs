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
