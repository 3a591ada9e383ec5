//! Our own frame walker (used by the sampler) must give exactly the stacks py-spy gives —
//! function, file and line of every frame of every thread — on every interpreter.

mod common;

use common::*;
use loopspy::frames::StackReader;
use loopspy::interp;
use loopspy::target::{AttachOptions, Target};

fn same_stacks(version: &str, flavor: &str, script: &str, extra: &[&str]) {
    let test = format!("stacks/{}", script.trim_end_matches(".py"));
    let Some(interp_) = require(version, &test) else { return };
    if !loopspy::layout::SUPPORTED.iter().any(|v| v.to_string() == version) {
        return;
    }
    if flavor == "uvloop" && interp_.uvloop.is_none() {
        record(&test, version, flavor, "skipped (no uvloop wheel)");
        return;
    }
    let mut args: Vec<&str> = extra.to_vec();
    if flavor == "uvloop" {
        args.push("--uvloop");
    }
    let scenario = Scenario::start(interp_, script, &args);
    std::thread::sleep(std::time::Duration::from_millis(150));
    let mut target = Target::attach(scenario.pid(), AttachOptions::default()).unwrap();
    let theirs = target.spy.get_stack_traces().unwrap();
    let tids = loopspy::procfs::tids(scenario.pid()).unwrap();
    let threads = interp::threads(&target.reader, target.interp, &tids).unwrap();
    let mut reader = StackReader::new();
    assert_eq!(threads.len(), theirs.len(), "Python {version}: thread count");
    for t in &threads {
        let ours = reader.stack(&target.reader, t.tstate).unwrap();
        let trace = theirs.iter().find(|tr| tr.thread_id == t.ident).expect("py-spy has the thread");
        let ours: Vec<(String, String, i32)> =
            ours.iter().map(|f| (f.function.to_string(), f.file.to_string(), f.line)).collect();
        let expected: Vec<(String, String, i32)> =
            trace.frames.iter().map(|f| (f.name.clone(), f.filename.clone(), f.line)).collect();
        assert_eq!(ours, expected, "Python {version} [{flavor}] {script}, thread {:#x}", t.ident);
        assert!(!ours.is_empty(), "Python {version}: empty stack");
        assert!(ours.iter().all(|f| f.2 > 0), "Python {version}: every frame has a line: {ours:?}");
    }
    record(&test, version, flavor, "pass");
}

fn check(version: &str) {
    same_stacks(version, "stock", "blocked_callback.py", &[]);
    same_stacks(version, "stock", "blocked_task.py", &[]);
    same_stacks(version, "stock", "idle.py", &[]);
    same_stacks(version, "stock", "two_loops.py", &[]);
    same_stacks(version, "uvloop", "blocked_task.py", &[]);
}

#[test] fn py3_8() { check("3.8") }
#[test] fn py3_9() { check("3.9") }
#[test] fn py3_10() { check("3.10") }
#[test] fn py3_11() { check("3.11") }
#[test] fn py3_12() { check("3.12") }
#[test] fn py3_13() { check("3.13") }
#[test] fn py3_14() { check("3.14") }
#[test] fn py3_15() { check("3.15") }
