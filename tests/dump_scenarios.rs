//! `loopspy dump --json` against ground-truth scenario targets, on every interpreter present.
//!
//! Each target measures its own loop in-process (len(), loop.time(), thread ids) and writes
//! that truth before it stops moving; every figure is compared: counts exactly, timer
//! lateness within 20 ms of the truth computed from the recorded `when`.

mod common;

use common::truth::*;
use common::*;
use serde_json::Value;

/// Which event loop the scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Stock,
    Uvloop,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::Stock => "stock",
            Flavor::Uvloop => "uvloop",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Flavor::Stock => &[],
            Flavor::Uvloop => &["--uvloop"],
        }
    }
}

fn supported(version: &str) -> bool {
    loopspy::python::layout::SUPPORTED.iter().any(|v| v.to_string() == version)
}

/// Run dump on a scenario; for a version loopspy does not support, check that it says so by
/// name instead of printing zeros, and return None.
fn dump(version: &str, test: &str, flavor: Flavor, script: &str, extra: &[&str]) -> Option<(Scenario, Value, f64, f64)> {
    // A missing uvloop is a failure under CI, a loud skip elsewhere.
    let interp = require_flavor(version, test, flavor.name())?;
    let args: Vec<&str> = extra.iter().chain(flavor.args()).copied().collect();
    let scenario = Scenario::start(interp, script, &args);
    // Let the target settle into the state it recorded (e.g. into select for idle loops).
    std::thread::sleep(std::time::Duration::from_millis(150));
    let pid = scenario.pid().to_string();
    let (out, before, after) = loopspy(&["dump", "--json", "--pid", &pid]);
    if !supported(version) {
        assert_eq!(out.status.code(), Some(6), "unsupported {version} must exit 6\n{}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(version), "{}", describe(&out));
        record(test, version, flavor.name(), "unsupported (reported by name)");
        return None;
    }
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_of(&out);
    Some((scenario, report, before, after))
}

fn single_loop_scenario(version: &str, test: &str, flavor: Flavor, script: &str, extra: &[&str]) -> Option<Value> {
    let (scenario, report, before, after) = dump(version, test, flavor, script, extra)?;
    let ctx = format!("Python {version} [{}], {script} {extra:?}", flavor.name());
    assert_eq!(report["pid"], scenario.pid(), "{ctx}");
    assert_eq!(report["loop_count"], 1, "{ctx}\n{report:#}");
    assert!(report["python"]["version"].as_str().unwrap().starts_with(&format!("{version}.")), "{ctx}");
    assert_eq!(report["loops"][0]["loop_kind"], flavor.name().replace("stock", "selector"), "{ctx}");
    check_layout_source(version, &report, &ctx);
    check_loop(&report["loops"][0], &scenario.truth, before, after, version, &ctx);
    record(test, version, flavor.name(), "pass");
    Some(report)
}

fn blocked_callback(version: &str, flavor: Flavor) {
    let Some(report) = single_loop_scenario(version, "dump/blocked_callback", flavor, "blocked_callback.py", &[]) else { return };
    // One look shows it: in a callback for longer than the threshold (uvloop keeps the
    // iteration's start; asyncio's loop has a timer overdue by 200 ms), waiting in time.sleep.
    let ctx = format!("Python {version} [{}], blocked_callback.py", flavor.name());
    let found = diagnosis::parse(&report["loops"][0]["diagnoses"]);
    let [d] = &found[..] else { panic!("{ctx}: one diagnosis expected: {found:?}") };
    let (kind, next_step) = (&d.kind, &d.next_step);
    assert_eq!(kind, "sync_io", "{ctx}");
    assert!(d.ev("syscall").ends_with("(sleep)"), "{ctx}: {d:?}");
    assert!(d.ev("blamed frame").starts_with("Blocker.block (") || d.ev("blamed frame").starts_with("block ("), "{ctx}: {d:?}");
    assert!(next_step.contains("asyncio.sleep"), "{ctx}: {next_step}");
}

fn blocked_task(version: &str, flavor: Flavor) {
    single_loop_scenario(version, "dump/blocked_task", flavor, "blocked_task.py", &[]);
}

fn blocked_unnamed_task(version: &str, flavor: Flavor) {
    single_loop_scenario(version, "dump/blocked_unnamed_task", flavor, "blocked_task.py", &["--unnamed"]);
}

/// A due timer waiting in the ready queue behind the blocking callback: the lag is its
/// lateness, though the timer heap's head is not due at all.
fn ready_timer(version: &str, flavor: Flavor) {
    let test = "dump/ready_timer";
    let Some((scenario, report, before, after)) = dump(version, test, flavor, "ready_timer.py", &[]) else { return };
    let ctx = format!("Python {version} [{}], ready_timer.py", flavor.name());
    let l = &report["loops"][0];
    check_loop(l, &scenario.truth, before, after, version, &ctx);
    let when = num(&scenario.truth["due_when"]);
    let (lo, hi) = ((before - when) * 1e3 - LATENESS_TOLERANCE_MS, (after - when) * 1e3 + LATENESS_TOLERANCE_MS);
    let lag = num(&l["lag_ms"]);
    // uvloop turns a timer whose time has passed into a plain callback (no timer is late:
    // `check_loop` compared its timers with the truth).
    if flavor == Flavor::Stock {
        assert!(lo <= lag && lag <= hi, "lag {lag} ms, the due timer is late by [{lo}, {hi}]; {ctx}\n{l:#}");
        let in_ready = &l["timers"]["earliest_in_ready"];
        assert!((num(&in_ready["when"]) - when).abs() < 1e-9, "the timer waiting in _ready; {ctx}\n{l:#}");
        assert!(num(&l["timers"]["earliest"]["due_in_ms"]) > 1000.0, "the heap's head is not due; {ctx}");
    }
    record(test, version, flavor.name(), &format!("pass (lag {lag:.0} ms)"));
}

fn idle(version: &str, flavor: Flavor) {
    let Some(report) = single_loop_scenario(version, "dump/idle", flavor, "idle.py", &[]) else { return };
    assert_eq!(
        diagnosis::parse(&report["loops"][0]["diagnoses"]),
        vec![],
        "Python {version} [{}]: an idle loop has no diagnosis",
        flavor.name()
    );
}

/// A program loopspy starts is attached before it imports asyncio (3.14+ publishes the
/// asyncio offsets in `_asyncio`, loaded by that import): the section is found once the loop
/// runs, by `dump` and by `record`, as when attaching by PID.
fn spawned_layout(version: &str, _: Flavor) {
    let test = "dump/spawned_layout";
    let Some(interp) = require(version, test) else { return };
    if !supported(version) {
        return;
    }
    record(test, version, "stock", "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let (truth, script) = (dir.path().join("t.json"), targets_dir().join("idle.py"));
    let spawn = ["--", interp.path.to_str().unwrap(), script.to_str().unwrap(), truth.to_str().unwrap()];
    let ctx = format!("Python {version}, dump -- idle.py");
    let (out, _, _) = loopspy(&[&["dump", "--json"][..], &spawn[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    check_layout_source(version, &json_of(&out), &ctx);
    let ctx = format!("Python {version}, record -- idle.py");
    let (out, _, _) = loopspy(&[&["record", "-d", "1", "-f", "json", "-o", "-"][..], &spawn[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    check_layout_source(version, &json_of(&out)["target"], &ctx);
    record(test, version, "stock", "pass");
}

fn two_loops(version: &str, flavor: Flavor) {
    let test = "dump/two_loops";
    let Some((scenario, report, before, after)) = dump(version, test, flavor, "two_loops.py", &[]) else { return };
    let ctx = format!("Python {version} [{}], two_loops.py", flavor.name());
    assert_eq!(report["loop_count"], 2, "{ctx}\n{report:#}");
    for name in ["loop-a", "loop-b"] {
        let l = report["loops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["thread"]["name"] == name)
            .unwrap_or_else(|| panic!("no loop in thread {name}; {ctx}\n{report:#}"));
        check_loop(l, &scenario.truth["loops"][name], before, after, version, &ctx);
    }
    record(test, version, flavor.name(), "pass");
}

fn no_loop(version: &str, _: Flavor) {
    let test = "dump/no_loop";
    let Some(interp) = require(version, test) else { return };
    let scenario = Scenario::start(interp, "no_loop.py", &[]);
    let pid = scenario.pid().to_string();
    let (out, _, _) = loopspy(&["dump", "--pid", &pid]);
    if !supported(version) {
        assert_eq!(out.status.code(), Some(6), "{}", describe(&out));
        return;
    }
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no running asyncio event loop"), "{err}");
    for name in ["MainThread", "worker"] {
        assert!(err.contains(&format!("\"{name}\"")), "thread {name} not listed: {err}");
    }
    // With --json the same failure is a JSON document on stdout.
    let (out, _, _) = loopspy(&["dump", "--json", "--pid", &pid]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(json_of(&out)["error"]["kind"], "no_event_loop");
    record(test, version, "stock", "pass");
}

/// Cross-check loop discovery against py-spy's `self` local of `_run_once`, the way an
/// in-frame reader would find the loop.
fn pyspy_cross_check(version: &str, flavor: Flavor) {
    let test = "dump/pyspy_cross_check";
    let Some((scenario, report, _, _)) = dump(version, test, flavor, "blocked_callback.py", &[]) else { return };
    let config = py_spy::Config { blocking: py_spy::config::LockingStrategy::NonBlocking, dump_locals: 1, ..py_spy::Config::default() };
    let mut spy = py_spy::PythonSpy::new(scenario.pid(), &config).unwrap();
    let traces = spy.get_stack_traces().unwrap();
    let self_of_run_once = traces
        .iter()
        .flat_map(|t| t.frames.iter())
        .find(|f| f.name.ends_with("_run_once"))
        .and_then(|f| f.locals.as_ref()?.iter().find(|l| l.name == "self").map(|l| l.addr))
        .expect("py-spy sees _run_once's self");
    assert_eq!(report["loops"][0]["loop_address"], format!("{self_of_run_once:#x}"), "Python {version}");
    record(test, version, "stock", "pass");
}

macro_rules! scenario {
    ($flavor:ident, $check:ident; $($name:ident: $v:literal),*) => {
        mod $check {
            use super::super::{Flavor::$flavor as F, $check as check};
            $(#[test] fn $name() { check($v, F) })*
        }
    };
}

macro_rules! for_each_version {
    ($flavor:ident: $($check:ident),* $(,)?) => {
        #[allow(non_snake_case)]
        mod $flavor {$(
            crate::versions!(scenario; $flavor, $check);
        )*}
    };
}

for_each_version!(Stock: blocked_callback, blocked_task, blocked_unnamed_task, ready_timer, idle, two_loops, no_loop, pyspy_cross_check, spawned_layout);
// py-spy's `_run_once` cross-check and the no-loop case have no uvloop counterpart.
for_each_version!(Uvloop: blocked_callback, blocked_task, blocked_unnamed_task, ready_timer, idle, two_loops);
