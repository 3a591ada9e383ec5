//! asyncio tasks from outside, against a target that records its own tasks through asyncio's
//! API (tests/targets/tasks.py): names, states, the running task, the coroutine chain where
//! each is suspended (function, file, line), who awaits whom, the await cycle; on every
//! interpreter present, stock loop and uvloop. On 3.14+ the task set must equal what the
//! interpreter's own `python -m asyncio ps PID` computes.
//!
//! Then (`graph::*`) the task graph of CPython's own remote-inspection tests, on every
//! interpreter where each scenario runs: see [`graph`] below.

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
    if !loopspy::python::layout::SUPPORTED.iter().any(|v| v.to_string() == version) {
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
    let expected: BTreeSet<&str> =
        t["tasks"].as_object().unwrap().iter().filter(|(_, d)| done_listed || d["state"] == "pending").map(|(n, _)| n.as_str()).collect();
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
        let truth_awaits: BTreeSet<String> = truth["awaits"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
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
        // The rows of `ps` as data (its columns are padded, not cut: text does not parse).
        let ps = std::process::Command::new(&interp.path).arg(targets_dir().join("graph/remote_table.py")).arg(&pid).output().unwrap();
        assert!(ps.status.success(), "{ctx}: remote_table.py failed: {}", describe(&ps));
        let rows: Value = serde_json::from_slice(&ps.stdout).unwrap();
        let mut theirs = BTreeSet::new();
        let mut stacks = BTreeMap::new();
        for row in rows["rows"].as_array().unwrap() {
            let cell = |i: usize| row[i].as_str().unwrap().to_string();
            stacks.insert(cell(2), cell(3));
            theirs.insert((cell(1), cell(2)));
        }
        let text = rows.to_string();
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

flavor_tests!(check);

/// 50,000 pending tasks: the count is exact, the list is cut where asked and says so.
fn many(version: &str) {
    let test = "tasks/50k_count";
    let Some(interp) = require(version, test) else { return };
    if !loopspy::python::layout::SUPPORTED.iter().any(|v| v.to_string() == version) {
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

version_tests!(mod many_tasks, many);

/// `record` counts pending tasks about once a second; each count equals the target's own
/// count at that moment (it adds 10 tasks every 100 ms and logs how many are pending).
fn growing(version: &str) {
    let test = "tasks/record_pending_series";
    let Some(interp) = require(version, test) else { return };
    if !loopspy::python::layout::SUPPORTED.iter().any(|v| v.to_string() == version) {
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
        let before = log.iter().rev().find(|(ts, _)| *ts <= at).map(|(_, n)| *n);
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

version_tests!(mod record_series, growing);

// ---------------------------------------------------------------------------------------------
// The task graph of CPython's own remote-inspection tests (test_external_inspection,
// test_asyncio/test_graph), ported to tests/targets/graph/ with their line numbers, on every
// interpreter where the scenario runs. Each target records its own truth at the moment the
// original test signals "ready" (tests/targets/graph/graph_truth.py): the pending tasks, the
// running task's stack (its thread's frames) and every other task's await chain, and who
// awaits whom, per source: on 3.14+ the interpreter's own record, on every version what the
// awaiting side's `_fut_waiter` and TaskGroup done-callbacks say. loopspy must find exactly
// that; the edges by name must be the ones CPython's tests (and the research note) state for
// the version; on 3.14+ the tasks, stacks and edges must equal what the interpreter's own
// `python -m asyncio ps` computes (asyncio.tools.build_task_table, run under the target's
// interpreter), and the running task's stack its get_async_stack_trace().

/// One scenario: its file, a variant argument, the first 3.x that can run it, the edges
/// (awaited, awaiter, first 3.x where loopspy's sources see it), the running task's chain
/// (function, line; 0: any line), and whether its loop runs in another thread than the main
/// one (3.14's own `ps` does not see those).
struct Graph {
    file: &'static str,
    variant: &'static str,
    since: u32,
    edges: &'static [(&'static str, &'static str, u32)],
    running: &'static [(&'static str, i64)],
    other_thread: bool,
}

const ANY: i64 = 0;

const T1_EDGES: &[(&str, &str, u32)] = &[
    ("c2_root", "Task-1", 11),
    ("c2_root", "sub_main_1", 11),
    ("c2_root", "sub_main_2", 11),
    ("sub_main_1", "Task-1", 11),
    ("sub_main_2", "Task-1", 11),
];
const T1_RUNNING: &[(&str, i64)] = &[("c5", 10), ("c4", 14), ("c3", 17), ("c2", 20)];

fn graph_scenario(name: &str) -> Graph {
    let g = |file, since, edges, running| Graph { file, variant: "", since, edges, running, other_thread: false };
    match name {
        "t1_taskgroup_c5_normal" => g("t1_taskgroup_c5.py", 11, T1_EDGES, T1_RUNNING),
        "t1_taskgroup_c5_eager" => Graph { variant: "eager", ..g("t1_taskgroup_c5.py", 12, T1_EDGES, T1_RUNNING) },
        "t2_asyncgen" => g("t2_asyncgen.py", 8, &[], &[("gen_nested_call", 10), ("gen", 16), ("main", 19)]),
        "t3_gather" => g("t3_gather.py", 8, &[("Task-2", "Task-1", 8)], &[("deep", 11), ("c1", 15)]),
        "t4_staggered" => g(
            "t4_staggered.py",
            8,
            &[("Task-2", "Task-1", 14), ("Task-3", "Task-1", 14)],
            &[("deep", 11), ("c1", 15), ("run_one_coro", ANY)],
        ),
        "t5_global_awaited_by" => g(
            "t5_global_awaited_by.py",
            11,
            // "*": every task the table does not name (the 100+ echo clients).
            &[("server task", "Task-1", 11), ("echo client spam", "Task-1", 11), ("*", "echo client spam", 11)],
            &[],
        ),
        "t6_tombstones" => g("t6_tombstones.py", 14, &[("victim", "remaining", 14)], &[("main", 32)]),
        "t7_nonmain_idle" => Graph { other_thread: true, ..g("t7_nonmain_idle.py", 8, &[("worker task", "Task-1", 8)], &[]) },
        "t8_nonmain_running" => Graph {
            other_thread: true,
            ..g("t8_nonmain_running.py", 8, &[("worker task", "Task-1", 8)], &[("blocking_call", 10), ("worker_task", 15)])
        },
        "g_shield" => g("g_shield.py", 8, &[("Task-2", "Task-1", 14)], &[("deep", 11), ("c1", 15)]),
        "g_timeout" => g("g_timeout.py", 11, &[("Task-2", "Task-1", 14)], &[("inner", 11), ("c1", 16)]),
        "g_wait" => g("g_wait.py", 11, &[("Task-2", "Task-1", 14), ("Task-3", "Task-1", 14)], &[("inner", 11), ("c1", 16)]),
        "g_as_completed" => g("g_as_completed.py", 8, &[("inner", "Task-1", 14)], &[("inner", 11)]),
        "g_as_completed_timeout" => g("g_as_completed_timeout.py", 11, &[], &[("test", 22)]),
        "g_task" => g("g_task.py", 8, &[("there there", "Task-1", 8)], &[("inner", 11), ("c1", 14)]),
        "g_future" => g("g_future.py", 11, &[("task A", "Task-1", 11), ("task B", "Task-1", 11)], &[("main", 27)]),
        "g_wait_for_zero" => g("g_wait_for_zero.py", 8, &[("Task-2", "probe", 14)], &[("block", 10), ("main", 27)]),
        "g_gather_survivor" => g("g_gather_survivor.py", 8, &[], &[("block", 10), ("main", 24)]),
        "g_finished" => g("g_finished.py", 8, &[], &[("main", 18)]),
        "x_direct_gather_waitfor_idle" => g(
            "x_direct_gather_waitfor_idle.py",
            8,
            &[
                ("worker-1", "parent", 8),
                ("worker-2", "parent", 8),
                ("worker-3", "parent", 8),
                ("sleeper", "waiter", 8),
                // wait_for awaits the task itself from 3.12 on (a waiter future before).
                ("sleeper-2", "timed", 12),
            ],
            &[],
        ),
        "x_nested_taskgroups_idle" => g(
            "x_nested_taskgroups_idle.py",
            11,
            &[("outer-child", "Task-1", 11), ("sibling", "Task-1", 11), ("leaf-1", "outer-child", 11), ("leaf-2", "outer-child", 11)],
            &[],
        ),
        "x_taskgroup_body_idle" => g("x_taskgroup_body_idle.py", 11, &[("child-1", "Task-1", 11), ("child-2", "Task-1", 11)], &[]),
        "x_eager_idle" => g("x_eager_idle.py", 12, &[("eager-child", "Task-1", 12), ("grandchild", "eager-child", 12)], &[]),
        "x_staggered_idle" => g("x_staggered_idle.py", 8, &[("Task-2", "Task-1", 14), ("Task-3", "Task-1", 14)], &[]),
        "x_cycle_idle" => g("x_cycle_idle.py", 8, &[("cycle-a", "cycle-b", 8), ("cycle-b", "cycle-a", 8)], &[]),
        "x_asyncgen_idle" => g("x_asyncgen_idle.py", 10, &[], &[]),
        "x_asyncgen_running" => g("x_asyncgen_running.py", 10, &[("anext", "Task-1", 8)], &[("block", 10), ("agen3", 14)]),
        other => panic!("no graph scenario {other}"),
    }
}

/// The loopspy binary under test (`LOOPSPY_GRAPH_BIN` runs these scenarios against another
/// build, e.g. an older one, to count what it passes).
fn graph_bin() -> std::path::PathBuf {
    std::env::var_os("LOOPSPY_GRAPH_BIN").map(Into::into).unwrap_or_else(loopspy_bin)
}

fn last_name(function: &str) -> &str {
    function.rsplit('.').next().unwrap_or(function)
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn graph(name: &str, version: &str) {
    let test = format!("tasks/graph_{name}");
    let Some(interp) = require(version, &test) else { return };
    let s = graph_scenario(name);
    let minor_v = minor(version);
    if minor_v < s.since {
        record(&test, version, "stock", &format!("n/a (needs 3.{})", s.since));
        return;
    }
    record(&test, version, "stock", "FAIL");
    let script = format!("graph/{}", s.file);
    let args: Vec<&str> = if s.variant.is_empty() { vec![] } else { vec![s.variant] };
    let scenario = Scenario::start(interp, &script, &args);
    let pid = scenario.pid().to_string();
    let t = &scenario.truth;
    let ctx = format!("Python {version}, {name}");
    let out = std::process::Command::new(graph_bin()).args(["dump", "--json", "--pid", &pid]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    let report = json_of(&out);

    // The loop of the thread that recorded the truth.
    let tid = t["thread_native_id"].as_i64().unwrap();
    let l = report["loops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["thread"]["native_id"].as_i64() == Some(tid))
        .unwrap_or_else(|| panic!("{ctx}: no loop in thread {tid}: {report:#}"));
    let tasks = &l["tasks"];
    let ours: Vec<&Value> = tasks["list"].as_array().unwrap().iter().filter(|d| d["state"] == "pending").collect();
    let truth: Vec<&Value> = t["tasks"].as_array().unwrap().iter().collect();
    let by_addr = |list: &[&Value]| -> BTreeMap<String, Value> { list.iter().map(|d| (str_of(&d["address"]), (*d).clone())).collect() };
    let (ours_by, truth_by) = (by_addr(&ours), by_addr(&truth));
    let name_of: BTreeMap<String, String> = truth_by.iter().map(|(a, d)| (a.clone(), str_of(&d["name"]))).collect();
    let pairs =
        |m: &BTreeMap<String, Value>| -> BTreeSet<(String, String)> { m.iter().map(|(a, d)| (a.clone(), str_of(&d["name"]))).collect() };
    assert_eq!(pairs(&ours_by), pairs(&truth_by), "{ctx}: pending tasks\n{:#}", tasks["list"]);

    let mut edges = BTreeSet::new();
    for (addr, want) in &truth_by {
        let d = &ours_by[addr];
        let c = format!("{ctx}: task {}\nloopspy: {d:#}\ntruth: {want:#}", name_of[addr]);
        assert_eq!(d["running"], want["running"], "{c}");
        let stack: Vec<(String, String, i64)> = frames(&d["coroutines"]);
        let want_stack: Vec<(String, String, i64)> =
            want["stack"].as_array().unwrap().iter().map(|f| (str_of(&f[0]), str_of(&f[1]), f[2].as_i64().unwrap())).collect();
        assert_eq!(stack, want_stack, "{c}: stack");
        // Who awaits it: every source together, and each source alone (when the report says).
        let awaiters: BTreeSet<String> = d["awaited_by"].as_array().unwrap().iter().map(|a| str_of(&a["address"])).collect();
        let set = |v: &Value| -> BTreeSet<String> { v.as_array().map(|a| a.iter().map(str_of).collect()).unwrap_or_default() };
        let (recorded, derived) = (set(&want["recorded_awaiters"]), set(&want["derived_awaiters"]));
        assert_eq!(awaiters, recorded.union(&derived).cloned().collect(), "{c}: awaited by");
        // (A report without `edges` is an older loopspy's, run through LOOPSPY_GRAPH_BIN.)
        if tasks.get("edges").is_some() {
            let by_source = |wanted: &[&str]| -> BTreeSet<String> {
                d["awaited_by"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|a| a["sources"].as_array().unwrap().iter().any(|s| wanted.contains(&s.as_str().unwrap())))
                    .map(|a| str_of(&a["address"]))
                    .collect()
            };
            assert_eq!(by_source(&["awaited_by"]), recorded, "{c}: the interpreter's record");
            assert_eq!(by_source(&["fut_waiter", "task_group"]), derived, "{c}: _fut_waiter and TaskGroup");
            if let Some(n) = want["recorded_others"].as_u64() {
                assert_eq!(d["awaited_by_others"].as_u64(), Some(n), "{c}: non-task awaiters");
            }
        }
        for a in &awaiters {
            edges.insert((name_of[addr].clone(), name_of.get(a).cloned().unwrap_or_else(|| a.clone())));
        }
    }
    // The edges CPython's tests state, by name, for this version.
    // 3.13.0's eager task factory names the tasks it creates "None" (passes name=None on).
    let rename = |n: &str| if minor_v == 13 && s.variant == "eager" && n == "Task-1" { "None".to_string() } else { n.to_string() };
    let named: BTreeSet<&str> = s.edges.iter().flat_map(|(a, b, _)| [*a, *b]).collect();
    let others: Vec<String> = name_of.values().filter(|n| !named.contains(n.as_str())).cloned().collect();
    let mut expected = BTreeSet::new();
    for (a, b, _) in s.edges.iter().filter(|e| minor_v >= e.2) {
        if *a == "*" {
            assert!(others.len() >= 100, "{ctx}: {} unnamed tasks", others.len());
            expected.extend(others.iter().map(|o| (o.clone(), rename(b))));
        } else {
            expected.insert((rename(a), rename(b)));
        }
    }
    assert_eq!(edges, expected, "{ctx}: edges (awaited, awaiter)");
    // The running task's chain, as the tests state it.
    let running: Vec<&&Value> = ours.iter().filter(|d| d["running"] == true).collect();
    assert_eq!(running.len(), usize::from(!s.running.is_empty()), "{ctx}: running tasks");
    if let Some(r) = running.first() {
        let got: Vec<(String, i64)> = frames(&r["coroutines"]).into_iter().map(|f| (last_name(&f.0).to_string(), f.2)).collect();
        let want: Vec<(String, i64)> = s.running.iter().map(|(f, l)| (last_name(f).to_string(), *l)).collect();
        let got_any: Vec<(String, i64)> =
            got.iter().zip(&want).map(|((f, l), (_, w))| (f.clone(), if *w == ANY { ANY } else { *l })).collect();
        assert_eq!((got.len(), got_any), (want.len(), want.clone()), "{ctx}: the running task's chain");
    }
    // Every edge of the report is in its tree (a task awaited by several appears under each).
    fn tree_edges(n: &Value, out: &mut BTreeSet<(String, String)>) {
        for c in n["awaits"].as_array().unwrap() {
            out.insert((str_of(&c["name"]), str_of(&n["name"])));
            tree_edges(c, out);
        }
    }
    let mut in_tree = BTreeSet::new();
    tasks["tree"].as_array().unwrap().iter().for_each(|n| tree_edges(n, &mut in_tree));
    let all_edges: BTreeSet<(String, String)> =
        ours.iter().flat_map(|d| d["awaited_by"].as_array().unwrap().iter().map(|a| (str_of(&d["name"]), str_of(&a["name"])))).collect();
    assert!(all_edges.is_subset(&in_tree), "{ctx}: edges missing from the tree\n{:#}", tasks["tree"]);

    // 3.14+: the interpreter's own `python -m asyncio ps` (3.14's misses loops of other threads).
    let mut detail = format!("{} tasks, {} edges", truth.len(), edges.len());
    if minor_v >= 14 && !(minor_v == 14 && s.other_thread) {
        let helper = targets_dir().join("graph/remote_table.py");
        let ps = std::process::Command::new(&interp.path).arg(helper).arg(&pid).output().unwrap();
        assert!(ps.status.success(), "{ctx}: remote_table.py: {}", describe(&ps));
        let theirs: Value = serde_json::from_slice(&ps.stdout).unwrap();
        let tid_s = tid.to_string();
        let mut their_rows: Vec<Vec<String>> = theirs["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(str_of).collect::<Vec<_>>())
            .filter(|r| r[0] == tid_s)
            .collect();
        // The same table from loopspy's report: a running task shows only its own coroutine's
        // frame there (get_all_awaited_by), the last frame of its chain.
        let ps_stack = |d: &Value| -> String {
            let f: Vec<String> = frames(&d["coroutines"]).into_iter().map(|f| f.0).collect();
            if d["running"] == true {
                f.last().cloned().unwrap_or_default()
            } else {
                f.join(" -> ")
            }
        };
        let mut our_rows = Vec::new();
        for d in &ours {
            let (addr, name, stack) = (str_of(&d["address"]), str_of(&d["name"]), ps_stack(d));
            let awaiters = d["awaited_by"].as_array().unwrap();
            if awaiters.is_empty() {
                our_rows.push(vec![tid_s.clone(), addr.clone(), name.clone(), stack.clone(), String::new(), String::new(), "0x0".into()]);
            }
            for a in awaiters {
                let w = ours_by.get(&str_of(&a["address"])).expect("an awaiter of the loop");
                our_rows.push(vec![
                    tid_s.clone(),
                    addr.clone(),
                    name.clone(),
                    stack.clone(),
                    ps_stack(w),
                    str_of(&w["name"]),
                    str_of(&w["address"]),
                ]);
            }
        }
        their_rows.sort();
        our_rows.sort();
        assert_eq!(our_rows, their_rows, "{ctx}: loopspy vs `python -m asyncio ps` (asyncio.tools.build_task_table)");
        // The running task's whole chain, as get_async_stack_trace sees it.
        for d in ours.iter().filter(|d| d["running"] == true) {
            let chain: Vec<String> = frames(&d["coroutines"]).into_iter().map(|f| f.0).collect();
            if let Some(t) = theirs["async_trace"].get(str_of(&d["address"])) {
                let t: Vec<String> = t.as_array().unwrap().iter().map(str_of).collect();
                assert_eq!(chain, t, "{ctx}: running chain vs get_async_stack_trace");
            }
        }
        detail.push_str(", = asyncio ps");
    }
    record(&test, version, "stock", &format!("pass ({detail})"));
}

macro_rules! graph_scenario {
    ($scenario:ident; $($name:ident: $v:literal),*) => {
        mod $scenario {
            fn run(version: &str) {
                super::super::graph(stringify!($scenario), version)
            }
            $(#[test] fn $name() { run($v) })*
        }
    };
}

macro_rules! graph_tests {
    ($($scenario:ident),* $(,)?) => {
        mod graph {$(
            crate::versions!(graph_scenario; $scenario);
        )*}
    };
}

graph_tests!(
    t1_taskgroup_c5_normal,
    t1_taskgroup_c5_eager,
    t2_asyncgen,
    t3_gather,
    t4_staggered,
    t5_global_awaited_by,
    t6_tombstones,
    t7_nonmain_idle,
    t8_nonmain_running,
    g_shield,
    g_timeout,
    g_wait,
    g_as_completed,
    g_as_completed_timeout,
    g_task,
    g_future,
    g_wait_for_zero,
    g_gather_survivor,
    g_finished,
    x_direct_gather_waitfor_idle,
    x_nested_taskgroups_idle,
    x_taskgroup_body_idle,
    x_eager_idle,
    x_staggered_idle,
    x_cycle_idle,
    x_asyncgen_idle,
    x_asyncgen_running,
);
