//! Our own frame walker (used by the sampler) must give exactly the stacks py-spy gives —
//! function, file and line of every frame of every thread — on every interpreter.

mod common;

use common::*;
use loopspy::python::frames::StackReader;
use loopspy::python::interp;
use loopspy::python::target::{AttachOptions, Target};

fn same_stacks(version: &str, flavor: &str, script: &str, extra: &[&str]) {
    let test = format!("stacks/{}", script.trim_end_matches(".py"));
    let Some(interp_) = require(version, &test) else { return };
    if !loopspy::python::layout::SUPPORTED.iter().any(|v| v.to_string() == version) {
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
    let theirs = target.spy.as_mut().expect("py-spy attached").get_stack_traces().unwrap();
    let tids = loopspy::process::procfs::task_ids(scenario.pid()).unwrap();
    let threads = interp::threads(&target.reader, target.interp, &tids).unwrap();
    let mut reader = StackReader::new();
    assert_eq!(threads.len(), theirs.len(), "Python {version}: thread count");
    for t in &threads {
        let ours = reader.stack(&target.reader, t.tstate).unwrap();
        let trace = theirs.iter().find(|tr| tr.thread_id == t.ident).expect("py-spy has the thread");
        let ours: Vec<(String, String, i32)> = ours.iter().map(|f| (f.function.to_string(), f.file.to_string(), f.line)).collect();
        let expected: Vec<(String, String, i32)> = trace.frames.iter().map(|f| (f.name.clone(), f.filename.clone(), f.line)).collect();
        assert_eq!(ours, expected, "Python {version} [{flavor}] {script}, thread {:#x}", t.ident);
        assert!(!ours.is_empty(), "Python {version}: empty stack");
        assert!(ours.iter().all(|f| f.2 > 0), "Python {version}: every frame has a line: {ours:?}");
    }
    record(&test, version, flavor, "pass");
}

/// The sampler's walk reads where the previous walk's frames were, all in one call, and
/// follows the chain in those bytes (`frames/sampled.rs`). With the target paused between
/// rounds and its stack changing in between (a busy loop, stacks 4–18 deep), that walk must
/// give exactly the frames of the plain walk, round after round, and py-spy's functions.
fn sampled_walk_follows_a_changing_stack(version: &str, flavor: &str) {
    let test = "stacks/sampled_walk";
    let Some(interp_) = require(version, test) else { return };
    if flavor == "uvloop" && interp_.uvloop.is_none() {
        record(test, version, flavor, "skipped (no uvloop wheel)");
        return;
    }
    let busy = Throughput::start(interp_, flavor == "uvloop");
    let pid = busy.pid();
    let mut target = Target::attach(pid, AttachOptions::default()).unwrap();
    let tids = loopspy::process::procfs::task_ids(pid).unwrap();
    let threads = interp::threads(&target.reader, target.interp, &tids).unwrap();
    let (mut sampled, mut plain) = (StackReader::new(), StackReader::new());
    let (mut refs, mut stack) = (Vec::new(), Vec::new());
    let mut depths = std::collections::BTreeSet::new();
    let mut torn = Vec::new();
    let plumbing = |file: &str| loopspy::python::frames::SHIM_FILES.contains(&file);
    for round in 0..150u64 {
        {
            let _paused = target.process.lock().expect("pause the target");
            let theirs = target.spy.as_mut().expect("py-spy attached").get_stack_traces().unwrap_or_default();
            for t in &threads {
                let r = &target.reader;
                // Stopped between two stores of a frame push or pop, the chain may be caught
                // half-linked (the sampler counts such a look as failed): both walks, reading
                // the same still memory, must then say so.
                let mut walked =
                    match (sampled.sample_stack(r, t.tstate, &mut refs, &mut stack), loopspy::python::frames::walk(r, t.tstate)) {
                        (Ok(()), Ok(walked)) => walked,
                        (Err(a), Err(b)) => {
                            torn.push(format!("round {round}: {a:?} / {b:?}"));
                            continue;
                        }
                        (a, b) => panic!(
                            "Python {version} [{flavor}] round {round}: the walks disagree: sampled {a:?}, plain {:?}",
                            b.map(|w| w.len())
                        ),
                    };
                walked.retain(|f| !plumbing(&plain.frame(r, f).unwrap().file));
                let expected: Vec<_> = walked.iter().map(|f| plain.frame(r, f).unwrap()).collect();
                assert_eq!(refs, walked, "Python {version} [{flavor}] round {round}: frames");
                assert_eq!(stack, expected, "Python {version} [{flavor}] round {round}: stack");
                if let Some(trace) = theirs.iter().find(|tr| tr.thread_id == t.ident) {
                    let spy: Vec<(String, String)> =
                        trace.frames.iter().filter(|f| !plumbing(&f.filename)).map(|f| (f.name.clone(), f.filename.clone())).collect();
                    let ours: Vec<(String, String)> = stack.iter().map(|f| (f.function.to_string(), f.file.to_string())).collect();
                    assert_eq!(ours, spy, "Python {version} [{flavor}] round {round}: py-spy's functions");
                }
                depths.insert(stack.len());
            }
        }
        // Let the target run on for 0–3 ms: a new stack each round, as at 1000 Hz.
        std::thread::sleep(std::time::Duration::from_micros(round * 7919 % 3000));
    }
    assert!(depths.len() >= 3, "Python {version} [{flavor}]: the stack did not change: depths {depths:?}");
    assert!(torn.len() <= 5, "Python {version} [{flavor}]: {} of 150 rounds caught a half-linked chain: {torn:#?}", torn.len());
    if !torn.is_empty() {
        log(&format!("stacks/sampled_walk: Python {version} [{flavor}]: both walks failed alike in {torn:?}"));
    }
    record(test, version, flavor, "pass");
}

fn check(version: &str) {
    sampled_walk_follows_a_changing_stack(version, "stock");
    sampled_walk_follows_a_changing_stack(version, "uvloop");
    same_stacks(version, "stock", "blocked_callback.py", &[]);
    same_stacks(version, "stock", "blocked_task.py", &[]);
    same_stacks(version, "stock", "idle.py", &[]);
    same_stacks(version, "stock", "two_loops.py", &[]);
    same_stacks(version, "uvloop", "blocked_task.py", &[]);
}

version_tests!(check);
