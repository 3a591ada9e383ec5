//! Diagnoses (`analysis::diagnosis`) against targets that really have the problem
//! (tests/targets/diagnoses.py), on every interpreter present: synchronous I/O with its
//! library and syscall family, CPU-bound callbacks with what computed, overload; and silence
//! on the same target while it is healthy. Each is checked in record's JSON, its JSONL end
//! line and its summary on stderr.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// [`record_for`], once more if loopspy could not sample at half the rate asked (a machine
/// so loaded that a few looks a second stand for the whole recording: the figures the
/// diagnoses stand on are then too thin to check).
fn record_sampled(pid: i32, seconds: &str, dir: &Path, name: &str) -> (Value, Vec<Value>, String) {
    let first = record_for(pid, seconds, dir, name);
    if num(&first.0["recording"]["achieved_hz"]) >= 50.0 {
        return first;
    }
    log(&format!("diagnoses: {name} sampled at {} Hz, recording again", first.0["recording"]["achieved_hz"]));
    record_for(pid, seconds, dir, name)
}

/// `loopspy record --pid PID` for `seconds` into `dir`: the JSON document, the JSONL lines
/// and the summary on stderr.
fn record_for(pid: i32, seconds: &str, dir: &Path, name: &str) -> (Value, Vec<Value>, String) {
    let (json, jsonl) = (dir.join(format!("{name}.json")), dir.join(format!("{name}.jsonl")));
    let pid = pid.to_string();
    let (out, _, _) = loopspy(&[
        "record",
        "--pid",
        &pid,
        "--rate",
        "100",
        "--duration",
        seconds,
        "-o",
        json.to_str().unwrap(),
        "-o",
        jsonl.to_str().unwrap(),
        "--save",
        dir.join(format!("{name}.lsrec")).to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let lines = std::fs::read_to_string(&jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (r, lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The JSON document and the JSONL end line say the same.
fn same_in_jsonl(r: &Value, lines: &[Value], ctx: &str) {
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end", "{ctx}");
    let mut from_lines = end["diagnoses"].as_array().unwrap().clone();
    for d in &mut from_lines {
        assert_eq!(d["loop"], 0, "{ctx}: {d}");
        d.as_object_mut().unwrap().remove("loop");
    }
    assert_eq!(Value::Array(from_lines), r["loops"][0]["diagnoses"], "{ctx}");
}

/// urllib against a server that answers after 200 ms, json.loads of a document that takes
/// ~250 ms, and subprocess.run of `sleep 0.2`, in turn every 0.2 s: synchronous I/O (socket
/// I/O in urllib, a child process in subprocess) and CPU-bound json.
fn io(version: &str) {
    let test = "diagnoses/io";
    let Some(interp) = require(version, test) else { return };
    record(test, version, "stock", "FAIL");
    let ctx = format!("Python {version}, diagnoses.py io");
    let scenario = Scenario::start(interp, "diagnoses.py", &["io"]);
    let (r, lines, stderr) = record_sampled(scenario.pid(), "3", scenario.dir.path(), "io");
    let (start, end) = (num(&r["recording"]["start"]), num(&r["recording"]["end_time"]));
    // The truth, once it holds a call that started after the recording ended (every call
    // the recording saw is then logged).
    let calls_path = scenario.dir.path().join("truth.json.calls");
    let deadline = Instant::now() + Duration::from_secs(10);
    let calls = loop {
        let calls: Value = serde_json::from_str(&std::fs::read_to_string(&calls_path).unwrap()).unwrap();
        if calls.as_array().unwrap().iter().any(|c| num(&c["start"]) > end) {
            break calls;
        }
        assert!(Instant::now() < deadline, "{ctx}: the target logged no call after the recording");
        std::thread::sleep(Duration::from_millis(50));
    };
    // The calls the truth logged, inside the recording and clearly over the threshold
    // (a 10 ms margin for the sampling): each must be one episode of its diagnosis.
    let count = |function: &str, strict: bool| {
        calls
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["function"] == function)
            .filter(|c| {
                let (s, e) = (num(&c["start"]), num(&c["end"]));
                if strict {
                    s > start + 0.02 && e < end - 0.02 && e - s >= 0.11
                } else {
                    e > start && s < end
                }
            })
            .count()
    };
    let found = diagnosis::parse(&r["loops"][0]["diagnoses"]);
    let kinds: Vec<&str> = found.iter().map(|d| d.kind.as_str()).collect();
    // Decoding the document allocates enough to set off full collections, which the target
    // times: a collection of half the threshold or more that the recording saw may make its
    // episode a GC pause (most of its samples collecting); without one, none may be.
    let longest_gc = calls
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["function"] == "<gc>" && num(&c["end"]) > start && num(&c["start"]) < end)
        .map(|c| num(&c["end"]) - num(&c["start"]))
        .fold(0.0, f64::max);
    let gc = found.iter().find(|d| d.kind == "gc_pauses");
    if let Some(gc) = gc {
        assert!(longest_gc >= 0.05, "{ctx}: a GC pause, but the target's longest collection took {longest_gc:.3} s: {gc:#?}");
    }
    // The decodes a GC pause took are not CPU-bound episodes: with as many pauses as whole
    // decodes, none may be left.
    let pauses: usize = gc.map_or(0, |g| g.ev("pauses").split(' ').next().unwrap().parse().unwrap());
    let cpu_may_go = pauses >= count("parse_report", true);
    let expected: Vec<&str> = ["sync_io", "cpu_bound", "gc_pauses"]
        .into_iter()
        .filter(|k| match *k {
            "cpu_bound" => !cpu_may_go || kinds.contains(k),
            "gc_pauses" => gc.is_some(),
            _ => true,
        })
        .collect();
    assert_eq!(kinds, expected, "{ctx} (longest collection {longest_gc:.3} s): {found:#?}");

    // Two groups of waits, the larger first: the requests (socket I/O in urllib) and the
    // tool (a child process, in subprocess); both when the recording saw both whole. No
    // more episodes than calls the recording saw, unless a third group (a loaded machine
    // stalled the target elsewhere). (Each call as one episode, with its duration, is the
    // business of tests/record.rs; on a machine this loaded a call may be sampled too thinly
    // to be one.)
    let io = &found[0];
    let episodes: usize = io.ev("episodes").parse().unwrap();
    let also = io.all_ev("also");
    let (fetches, tools) = (count("fetch_prices", true), count("run_tool", true));
    let hi = count("fetch_prices", false) + count("run_tool", false);
    let most = if also.len() > 1 { usize::MAX } else { hi };
    assert!(
        (1..=most).contains(&episodes),
        "{ctx}: {episodes} episodes, the truth has {fetches} + {tools} whole calls, {hi} in all: {io:#?}"
    );
    let http = (io.ev("syscall").ends_with("(socket I/O)"), io.ev("module").starts_with("urllib ("));
    let tool = (io.ev("syscall").ends_with(" (waiting for a child process)"), io.ev("module").starts_with("subprocess ("));
    let both = fetches > 0 && tools > 0;
    if http == (true, true) {
        assert!(io.ev("blamed frame").contains("fetch_prices (") && io.ev("blamed frame").contains("diagnoses.py:"), "{ctx}: {io:#?}");
        assert!(io.next_step.contains("aiohttp") && io.next_step.contains("asyncio.to_thread(fetch_prices"), "{ctx}: {io:#?}");
        assert!(!both || also.iter().any(|a| a.starts_with("waiting for a child process in subprocess: ")), "{ctx}: {io:#?}");
    } else {
        assert_eq!(tool, (true, true), "{ctx}: neither the requests nor the tool first: {io:#?}");
        assert!(io.ev("blamed frame").contains("run_tool ("), "{ctx}: {io:#?}");
        assert!(io.next_step.contains("asyncio.create_subprocess_exec"), "{ctx}: {io:#?}");
        assert!(!both || also.iter().any(|a| a.starts_with("socket I/O in urllib: ")), "{ctx}: {io:#?}");
    }

    let Some(cpu) = found.iter().find(|d| d.kind == "cpu_bound") else {
        same_in_jsonl(&r, &lines, &ctx);
        record(test, version, "stock", "pass (every decode a GC pause)");
        return;
    };
    let episodes: usize = cpu.ev("episodes").parse().unwrap();
    let (lo, hi) = (count("parse_report", true), count("parse_report", false));
    let most = if cpu.all_ev("also").is_empty() { hi } else { usize::MAX };
    assert!((1..=most).contains(&episodes), "{ctx}: {episodes} episodes, the truth has {lo}..={hi} decodes: {cpu:#?}");
    // json, unless the decode's result being freed (on CPU, in parse_report itself, longer on
    // a loaded machine) made an episode of its own: then json is another group.
    assert!(cpu.ev("computing") == "json" || cpu.all_ev("also").iter().any(|a| a.starts_with("json: ")), "{ctx}: {cpu:#?}");
    assert!(cpu.ev("blamed frame").contains("parse_report ("), "{ctx}: {cpu:#?}");
    let fix = if cpu.ev("computing") == "json" { "orjson" } else { "run_in_executor(process_pool, parse_report" };
    assert!(cpu.next_step.contains(fix) && cpu.next_step.contains("parse_report"), "{ctx}: {cpu:#?}");

    same_in_jsonl(&r, &lines, &ctx);
    // Rendered again from the saved recording, without the process: the same diagnoses.
    let again = scenario.dir.path().join("again.json");
    let (out, _, _) = loopspy(&["render", scenario.dir.path().join("io.lsrec").to_str().unwrap(), "-o", again.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    let again: Value = serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    assert_eq!(again["loops"][0]["diagnoses"], r["loops"][0]["diagnoses"], "{ctx}: render");
    assert!(stderr.contains("DIAGNOSIS: synchronous I/O on the loop: "), "{ctx}: {stderr}");
    assert!(
        stderr.contains(&format!("DIAGNOSIS: {}\n", cpu.title)) && stderr.contains(&format!("next step: {}", cpu.next_step)),
        "{ctx}: {stderr}"
    );
    record(test, version, "stock", "pass");
}

/// The same loop healthy (two ticking tasks): no diagnosis; then sent a quarter more
/// requests than it can run, each a short callback: overload, and no I/O.
fn overload(version: &str) {
    let test = "diagnoses/overload";
    let Some(interp) = require(version, test) else { return };
    record(test, version, "stock", "FAIL");
    let ctx = format!("Python {version}, diagnoses.py overload");
    let scenario = Scenario::start(interp, "diagnoses.py", &["overload"]);
    let (r, lines, stderr) = record_for(scenario.pid(), "1", scenario.dir.path(), "healthy");
    assert_eq!(r["loops"][0]["diagnoses"], Value::Array(vec![]), "{ctx}: healthy");
    same_in_jsonl(&r, &lines, &ctx);
    assert!(!stderr.contains("DIAGNOSIS"), "{ctx}: {stderr}");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(scenario.pid()), nix::sys::signal::Signal::SIGUSR1).unwrap();
    let started = scenario.dir.path().join("truth.json.overload");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.exists() {
        assert!(Instant::now() < deadline, "{ctx}: the overload did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (r, lines, stderr) = record_sampled(scenario.pid(), "4", scenario.dir.path(), "overload");
    let found = diagnosis::parse(&r["loops"][0]["diagnoses"]);
    let kinds: Vec<&str> = found.iter().map(|d| d.kind.as_str()).collect();
    // No callback does I/O. On a machine so loaded that the target is kept off the CPU for
    // 100 ms in the middle of a 3 ms callback, that callback is rightly an on-CPU episode
    // (runnable is "on CPU" to the kernel's view), and one that waits for the GIL while the
    // producer thread holds it off the CPU waits in futex: CPU-bound, or waiting on a lock,
    // may come too; never socket, file or sleep.
    let io = found.iter().find(|d| d.kind == "sync_io");
    assert!(
        kinds.contains(&"overload") && io.is_none_or(|d| d.ev("syscall") == "futex (waiting on a lock or another thread)"),
        "{ctx}: {found:#?}\n{:#}",
        r["loops"][0]["series"]
    );
    let l = &r["loops"][0];
    assert!(num(&l["busy_pct"]) >= 80.0, "{ctx}: {l:#}");
    let o = found.iter().find(|d| d.kind == "overload").unwrap();
    assert!(o.title.contains("no single blocker"), "{ctx}: {found:?}");
    assert!(o.next_step.contains("workers") && o.next_step.contains("backpressure"), "{ctx}: {found:?}");
    same_in_jsonl(&r, &lines, &ctx);
    assert!(stderr.contains("DIAGNOSIS: overload: the ready queue grows"), "{ctx}: {stderr}");
    record(test, version, "stock", "pass");
}

version_tests!(mod io, io);
version_tests!(mod overload, overload);
