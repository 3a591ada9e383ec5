//! `loopspy record` when things go wrong: Ctrl-C, the target dying, an output that cannot be
//! written, bad options. Every sample taken is kept and written.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

fn some_python() -> &'static Interp {
    loopspy::python::layout::SUPPORTED.iter().rev().find_map(|v| interpreters().get(&v.to_string())).expect("a supported Python")
}

/// The sample count loopspy reported on stderr.
fn reported_samples(stderr: &str) -> u64 {
    let at = stderr.find("): ").expect("summary line") + 3;
    stderr[at..].split_whitespace().next().unwrap().parse().unwrap()
}

fn start_record(pid: i32, out: &std::path::Path, extra: &[&str]) -> std::process::Child {
    Command::new(loopspy_bin())
        .args(["record", "--pid", &pid.to_string(), "-o"])
        .arg(out)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn ctrl_c_writes_every_sample() {
    let scenario = Scenario::start(some_python(), "idle.py", &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let child = start_record(scenario.pid(), &out, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    // Written first, then the shell's convention for Ctrl-C: 128 + SIGINT.
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(r["recording"]["end"], "interrupted");
    let samples = r["recording"]["samples"].as_u64().unwrap();
    assert!(samples >= 50, "{samples} samples in 1.5 s at 100 Hz");
    assert_eq!(samples, reported_samples(&stderr), "{stderr}");
    assert_eq!(r["loops"][0]["samples"].as_u64().unwrap(), samples);
    assert!(stderr.contains("stopped by you"), "{stderr}");
}

#[test]
fn target_death_writes_every_sample() {
    let mut scenario = Scenario::start(some_python(), "idle.py", &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.svg");
    let child = start_record(scenario.pid(), &out, &["-o", dir.path().join("r.json").to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1500));
    scenario.child.kill().unwrap();
    let _ = scenario.child.wait();
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("exited"), "{stderr}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(r["recording"]["end"], "target_exited");
    assert_eq!(r["recording"]["samples"].as_u64().unwrap(), reported_samples(&stderr));
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"), "valid SVG");
    assert!(svg.contains("idle in select"));
}

#[test]
fn unwritable_output_fails_before_recording() {
    let scenario = Scenario::start(some_python(), "idle.py", &[]);
    let (out, before, after) = loopspy(&["record", "--pid", &scenario.pid().to_string(), "-d", "5", "-o", "/nonexistent/dir/r.svg"]);
    assert_eq!(out.status.code(), Some(10), "{}", describe(&out));
    assert!(after - before < 3.0, "it must not record first");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir/r.svg"));
}

#[test]
fn output_lost_mid_recording_is_saved_elsewhere() {
    let scenario = Scenario::start(some_python(), "idle.py", &[]);
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("gone");
    std::fs::create_dir(&sub).unwrap();
    let out = sub.join("r.json");
    let child = start_record(scenario.pid(), &out, &["-d", "1.5"]);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::remove_dir_all(&sub).unwrap();
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(10), "{stderr}");
    let at = stderr.find("saved it as ").expect("says where it saved the recording") + 12;
    let fallback = stderr[at..].split_whitespace().next().unwrap();
    let r: Value = serde_json::from_str(&std::fs::read_to_string(fallback).unwrap()).unwrap();
    assert_eq!(r["recording"]["samples"].as_u64().unwrap(), reported_samples(&stderr));
    let _ = std::fs::remove_file(fallback);
}

#[test]
fn bad_options_exit_2() {
    for args in [
        vec!["record", "--pid", "1", "--rate", "0"],
        vec!["record", "--pid", "1", "--rate", "1000000"],
        vec!["record", "--pid", "1", "--duration", "-3"],
        vec!["record", "--pid", "1", "--duration", "0"],
        vec!["record", "--pid", "1", "--threshold", "0"],
        vec!["record", "--pid", "1", "--format", "png"],
        vec!["record"],
    ] {
        let (out, _, _) = loopspy(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
    }
}

#[test]
fn collapsed_output_reads_like_flamegraph_pl_input() {
    let scenario = Scenario::start(some_python(), "blocked_callback.py", &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stacks.txt");
    let (res, _, _) = loopspy(&["record", "--pid", &scenario.pid().to_string(), "-d", "1", "-o", out.to_str().unwrap()]);
    assert_eq!(res.status.code(), Some(0), "{}", describe(&res));
    let text = std::fs::read_to_string(&out).unwrap();
    let mut total = 0u64;
    for line in text.lines() {
        let (stack, weight) = line.rsplit_once(' ').expect("frame;frame weight");
        total += weight.parse::<u64>().expect("integer weight");
        assert!(stack.split(';').count() >= 3, "{line}");
        assert!(!stack.contains("_[k]"), "annotations stay out of collapsed output: {line}");
    }
    // Weights are microseconds of wall time: about the 1 s recorded.
    assert!((800_000..=1_300_000).contains(&total), "{total} µs");
    assert!(text.contains("BLOCKING the loop") && text.contains("Blocker.block") || text.contains(";block ("), "{text}");
}

/// `record -f jsonl -o -` streams: each line is whole JSON when it arrives, episodes arrive
/// while the recording runs (not all at the end), and the lines end with `end`.
#[test]
fn jsonl_lines_arrive_while_recording() {
    use std::io::BufRead;
    let scenario = Scenario::start(some_python(), "periodic_block.py", &[]);
    let started = std::time::Instant::now();
    let mut child = Command::new(loopspy_bin())
        .args(["record", "--pid", &scenario.pid().to_string(), "-d", "4", "-f", "jsonl", "-o", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut arrived: Vec<(f64, Value)> = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        arrived.push((started.elapsed().as_secs_f64(), v));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (end_at, end) = arrived.last().expect("lines").clone();
    assert_eq!(end["type"], "end", "{end}");
    let episodes: Vec<&(f64, Value)> = arrived.iter().filter(|(_, v)| v["type"] == "episode").collect();
    // The target blocks 300 ms in slow_query about once a second: 3 or 4 in 4 s.
    assert!(episodes.len() >= 3, "{arrived:#?}");
    assert!(episodes.iter().all(|(_, e)| e["function"] == "slow_query"), "{episodes:#?}");
    let (first_at, _) = episodes[0];
    assert!(end_at - first_at >= 1.5, "the first episode came {:.2} s before the end: not streamed", end_at - first_at);
    let seconds = arrived.iter().filter(|(_, v)| v["type"] == "second").count();
    assert!((4..=5).contains(&seconds), "{seconds} per-second lines in 4 s");
}

/// A recording longer than the samples it holds (16 s at 1000 Hz: more than 8,192 samples even
/// at half the rate on a loaded machine; the
/// older ones are let go of once written and folded) writes what a render of its capture,
/// which has every sample, writes: the same figures, episodes and flame graph stacks.
#[test]
fn a_recording_that_lets_samples_go_writes_what_its_capture_renders() {
    let scenario = Scenario::start(some_python(), "periodic_block.py", &[]);
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let out = Command::new(loopspy_bin())
        .args(["record", "--pid", &scenario.pid().to_string(), "-r", "1000", "-d", "16", "--save"])
        .arg(p("r.lsrec"))
        .args(["-o"])
        .arg(p("a.json"))
        .args(["-o"])
        .arg(p("a.txt"))
        .args(["-o"])
        .arg(p("a.pftrace"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(loopspy_bin())
        .arg("render")
        .arg(p("r.lsrec"))
        .arg("-o")
        .arg(p("b.json"))
        .arg("-o")
        .arg(p("b.txt"))
        .arg("-o")
        .arg(p("b.pftrace"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let a: Value = serde_json::from_str(&std::fs::read_to_string(p("a.json")).unwrap()).unwrap();
    let b: Value = serde_json::from_str(&std::fs::read_to_string(p("b.json")).unwrap()).unwrap();
    let samples = a["recording"]["samples"].as_u64().unwrap();
    assert!(samples > 2 * 4096, "{samples} samples: too few to have let any go");
    assert_eq!(a["recording"], b["recording"]);
    assert_eq!(a["loops"], b["loops"]);
    assert_eq!(a["blocking_frames"], b["blocking_frames"]);
    assert!(!a["loops"][0]["episodes"].as_array().unwrap().is_empty(), "the target blocks about once a second");
    assert_eq!(std::fs::read_to_string(p("a.txt")).unwrap(), std::fs::read_to_string(p("b.txt")).unwrap());
    // The Perfetto trace draws every sample: record reads back the ones it let go of.
    assert!(std::fs::read(p("a.pftrace")).unwrap() == std::fs::read(p("b.pftrace")).unwrap(), "record's trace differs from render's");
}
