//! Recordings that survive what happens to loopspy and to its target: hang-ups, SIGTERM,
//! Ctrl-C, SIGKILL, a full disk, impossible outputs; a target that execs, that runs a new
//! event loop per job, that is stopped; secrets on a command line; a JSON caller's usage error.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

fn some_python() -> &'static Interp {
    loopspy::python::layout::SUPPORTED.iter().rev().find_map(|v| interpreters().get(&v.to_string())).expect("a supported Python")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn svg_is_xml(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let xml = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    roxmltree::Document::parse_with_options(&text, xml).unwrap_or_else(|e| panic!("{}: not XML: {e}", path.display()));
}

fn alive(pid: i32) -> bool {
    loopspy::process::procfs::exists(pid) && !loopspy::process::procfs::is_dead(pid)
}

/// `record` stopped by each stopping signal: everything written, no capture or temporary
/// file left, exit 128 + the signal.
#[test]
fn hangup_term_and_interrupt_write_everything() {
    let scenario = Scenario::start(some_python(), "idle.py", &[]);
    for (signal, code, end) in
        [(Signal::SIGHUP, 129, "hung_up"), (Signal::SIGTERM, 143, "terminated"), (Signal::SIGINT, 130, "interrupted")]
    {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(loopspy_bin())
            .args(["record", "--pid", &scenario.pid().to_string(), "-o"])
            .arg(dir.path().join("r.svg"))
            .arg("-o")
            .arg(dir.path().join("r.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{signal}: {err}");
        assert_eq!(files_in(dir.path()), ["r.json", "r.svg"], "{signal}: only the outputs are left");
        svg_is_xml(&dir.path().join("r.svg"));
        let r: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
        assert_eq!(r["recording"]["end"], end, "{signal}");
        assert!(r["recording"]["samples"].as_u64().unwrap() >= 50, "{signal}: {}", r["recording"]["samples"]);
    }
}

/// SIGKILL: no output file (none was created), the capture holds what was sampled and
/// renders; a program loopspy started dies with it.
#[test]
fn sigkill_leaves_a_capture_that_renders_and_no_orphan() {
    let py = some_python();
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("t.json");
    let child = Command::new(loopspy_bin())
        .args(["record", "-o"])
        .arg(dir.path().join("r.svg"))
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg(format!("exec {} {} {}", py.path.display(), targets_dir().join("schedule.py").display(), truth.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the target to be found and a few seconds recorded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let target = loop {
        let kids = loopspy::process::procfs::descendants(child.id() as i32);
        if let Some(p) =
            kids.iter().find(|p| loopspy::process::procfs::cmdline(**p).unwrap_or_default().iter().any(|a| a.ends_with("schedule.py")))
        {
            break *p;
        }
        assert!(Instant::now() < deadline, "the target did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(2500));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait_with_output();
    let capture = dir.path().join("r.svg.lsrec");
    assert_eq!(files_in(dir.path()), ["r.svg.lsrec"], "no empty output, the capture");
    // The started program does not outlive loopspy.
    let gone_by = Instant::now() + Duration::from_secs(5);
    while alive(target) && Instant::now() < gone_by {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(target), "the program loopspy started survived it (PID {target})");
    // The capture renders.
    let (out, _, _) = loopspy(&[
        "render",
        capture.to_str().unwrap(),
        "-o",
        dir.path().join("x.json").to_str().unwrap(),
        "-o",
        dir.path().join("x.svg").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped while recording"), "{}", describe(&out));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("x.json")).unwrap()).unwrap();
    assert_eq!(r["recording"]["end"], "cut");
    assert!(r["recording"]["samples"].as_u64().unwrap() >= 100, "{}", r["recording"]["samples"]);
    svg_is_xml(&dir.path().join("x.svg"));
}

/// A disk that fills while recording: the outputs are saved in the temp directory, complete,
/// and the message says where.
#[test]
fn a_full_disk_moves_the_outputs_and_says_where() {
    if !nix::unistd::geteuid().is_root() {
        if in_ci() {
            panic!("CI=true: this test needs root (a private tmpfs)");
        }
        eprintln!("SKIPPED a_full_disk_moves_the_outputs: not root");
        return;
    }
    let scenario = Scenario::start(some_python(), "idle.py", &[]);
    let mnt = tempfile::tempdir().unwrap();
    // A private mount namespace with a small tmpfs, nearly full: the capture fills it.
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs {m} && dd if=/dev/zero of={m}/filler bs=1k count=52 2>/dev/null; \
         exec {bin} record --pid {pid} -d 3 -o {m}/r.svg -o {m}/r.json",
        m = mnt.path().display(),
        bin = loopspy_bin().display(),
        pid = scenario.pid()
    );
    let out = Command::new("unshare").args(["-m", "sh", "-c", &script]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(10), "{err}");
    let saved: Vec<PathBuf> =
        err.match_indices("saved it as ").map(|(at, m)| PathBuf::from(err[at + m.len()..].split_whitespace().next().unwrap())).collect();
    assert_eq!(saved.len(), 2, "both outputs saved elsewhere: {err}");
    for p in &saved {
        if p.extension().is_some_and(|e| e == "svg") {
            svg_is_xml(p);
        } else {
            let r: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            assert!(r["recording"]["samples"].as_u64().unwrap() >= 150, "{p:?}");
        }
        let _ = std::fs::remove_file(p);
    }
}

/// An output that cannot be created fails at once, without creating the others.
#[test]
fn an_impossible_output_fails_before_creating_any() {
    let scenario = Scenario::start(some_python(), "idle.py", &[]);
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let (out, _, _) = loopspy(&["record", "--pid", &scenario.pid().to_string(), "-o", a.to_str().unwrap(), "-o", "/impossible/x.svg"]);
    assert_eq!(out.status.code(), Some(10), "{}", describe(&out));
    assert_eq!(files_in(dir.path()), Vec::<String>::new(), "no empty a.json");
}

/// `-o - -o -` is one document on standard output.
#[test]
fn the_same_output_twice_is_written_once() {
    let scenario = Scenario::start(some_python(), "idle.py", &[]);
    let (out, _, _) = loopspy(&["record", "--pid", &scenario.pid().to_string(), "-d", "0.5", "-o", "-", "-o", "-"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("<?xml").count(), 1, "one SVG document");
}

/// A target that exec()s another program ends the recording with a reason.
#[test]
fn exec_ends_the_recording_with_its_reason() {
    let py = some_python();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(loopspy_bin())
        .args(["record", "-d", "10", "-o"])
        .arg(dir.path().join("r.json"))
        .arg("--")
        .arg(&py.path)
        .arg(targets_dir().join("execs.py"))
        .arg(dir.path().join("t.json"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(r["recording"]["end"], "target_exec", "{err}");
    assert!(err.contains("exec()"), "{err}");
    assert!(r["recording"]["duration_s"].as_f64().unwrap() < 4.0, "ended at the exec, not at -d: {}", r["recording"]["duration_s"]);
}

/// A program that runs `asyncio.run()` per job: each new loop in the thread is picked up and
/// every job's block is one episode.
fn loop_per_job(version: &str, flavor: &str) {
    let test = "survive/loop_per_job";
    let Some(interp) = require_flavor(version, test, flavor) else { return };
    record(test, version, flavor, "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let (json, truth) = (dir.path().join("r.json"), dir.path().join("t.json"));
    let mut cmd = Command::new(loopspy_bin());
    cmd.args(["record", "--rate", "100", "-d", "30", "-o"])
        .arg(&json)
        .arg("--")
        .arg(&interp.path)
        .arg(targets_dir().join("jobs.py"))
        .arg(&truth);
    if flavor == "uvloop" {
        cmd.arg("--uvloop").env("PYTHONPATH", interp.uvloop.as_ref().unwrap());
    }
    let out = cmd.output().unwrap();
    let ctx = format!("Python {version} [{flavor}]");
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&truth).unwrap()).unwrap();
    let episodes: Vec<&Value> = r["loops"].as_array().unwrap().iter().flat_map(|l| l["episodes"].as_array().unwrap()).collect();
    let blocks = t["blocks"].as_array().unwrap();
    let mut found = 0;
    for b in blocks {
        let (bs, be) = (b["start"].as_f64().unwrap(), b["end"].as_f64().unwrap());
        let hits: Vec<&&Value> = episodes.iter().filter(|e| e["start"].as_f64().unwrap() < be && e["end"].as_f64().unwrap() > bs).collect();
        if hits.len() == 1 && hits[0]["function"] == "job_block" {
            found += 1;
        }
    }
    assert_eq!(found, blocks.len(), "{ctx}: {found} of {} jobs' blocks found; episodes {episodes:#?}", blocks.len());
    assert_eq!(episodes.len(), blocks.len(), "{ctx}: none invented");
    assert_eq!(r["loops"].as_array().unwrap().len(), 1, "{ctx}: one thread, one timeline of loops");
    record(test, version, flavor, &format!("pass ({found} of {} jobs' loops and blocks found)", blocks.len()));
}

macro_rules! for_each_version {
    ($($name:ident: $version:literal),* $(,)?) => {$(
        mod $name {
            #[test] fn loop_per_job_stock() { super::loop_per_job($version, "stock") }
            #[test] fn loop_per_job_uvloop() { super::loop_per_job($version, "uvloop") }
        }
    )*};
}

versions!(for_each_version);

/// A stopped target (SIGSTOP) is shown as stopped, and --blocking refuses it.
#[test]
fn a_stopped_target_is_shown_stopped() {
    let scenario = Scenario::start(some_python(), "idle.py", &[]);
    let pid = scenario.pid();
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let p = pid.to_string();
    let (dump, _, _) = loopspy(&["dump", "--pid", &p, "--json"]);
    let (blocking, _, _) = loopspy(&["record", "--pid", &p, "--blocking", "-d", "1", "-o", "-"]);
    let (top, _, _) = loopspy(&["top", "--pid", &p, "--plain", "-d", "1.5"]);
    kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap();
    assert_eq!(dump.status.code(), Some(0), "{}", describe(&dump));
    assert_eq!(json_of(&dump)["loops"][0]["state"]["state"], "stopped", "{}", describe(&dump));
    assert_eq!(blocking.status.code(), Some(13), "{}", describe(&blocking));
    assert!(String::from_utf8_lossy(&blocking.stderr).contains("kill -CONT"), "{}", describe(&blocking));
    assert!(String::from_utf8_lossy(&top.stdout).contains("STOPPED"), "{}", describe(&top));
}

/// Secrets on the target's command line stay out of every output unless asked for.
#[test]
fn secrets_in_argv_are_redacted() {
    let py = some_python();
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("t.json");
    let mut child = Command::new(&py.path)
        .arg(targets_dir().join("idle.py"))
        .arg(&truth)
        .args(["--password=hunter2", "--api-token", "tok-SECRET", "postgres://app:pw-SECRET@db/x"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _ = wait_for_json(&truth, &mut child, Duration::from_secs(30));
    let pid = child.id().to_string();
    let r = dir.path().join("r");
    let outputs: Vec<PathBuf> = ["svg", "json", "txt"].iter().map(|e| r.with_extension(e)).collect();
    let mut args = vec!["record".to_string(), "--pid".into(), pid.clone(), "-d".into(), "0.5".into()];
    for o in &outputs {
        args.push("-o".into());
        args.push(o.display().to_string());
    }
    let (rec, _, _) = loopspy(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (dump, _, _) = loopspy(&["dump", "--pid", &pid]);
    let (dump_json, _, _) = loopspy(&["dump", "--pid", &pid, "--json"]);
    let (full, _, _) = loopspy(&["dump", "--pid", &pid, "--json", "--full-argv"]);
    let _ = child.kill();
    let _ = child.wait();
    let mut seen: Vec<(String, String)> = outputs.iter().map(|o| (o.display().to_string(), std::fs::read_to_string(o).unwrap())).collect();
    for (name, out) in [("record stderr", &rec), ("dump", &dump), ("dump --json", &dump_json)] {
        seen.push((name.into(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))));
    }
    for (name, text) in &seen {
        for secret in ["hunter2", "tok-SECRET", "pw-SECRET"] {
            assert!(!text.contains(secret), "{secret} in {name}");
        }
    }
    assert!(String::from_utf8_lossy(&dump.stdout).contains("--password=***"));
    assert!(String::from_utf8_lossy(&full.stdout).contains("hunter2"), "--full-argv shows it whole");
}

/// A usage error of a caller that asked for JSON is a JSON document too.
#[test]
fn usage_errors_speak_json_when_asked() {
    let (out, _, _) = loopspy(&["dump", "--json", "--pid", "not-a-pid"]);
    assert_eq!(out.status.code(), Some(2));
    let doc = json_of(&out);
    assert_eq!(doc["error"]["kind"], "usage");
    assert_eq!(doc["error"]["exit_code"], 2);
}

/// A target with 2,000 threads: `--blocking` stops them all at every sample, which slows the
/// target; `--all-threads` reads them all, which slows the sampling. Both are said.
#[test]
fn slowing_down_is_reported() {
    let py = some_python();
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("t.json");
    let script = format!(
        "import asyncio, threading, sys\nsys.path.insert(0, {targets:?})\nimport truth\n\
         ev = threading.Event()\n\
         for i in range(2000): threading.Thread(target=ev.wait, daemon=True).start()\n\
         async def main():\n    truth.write_truth({{'threads': threading.active_count()}})\n    await asyncio.sleep(3600)\n\
         asyncio.run(main())\n",
        targets = targets_dir().display().to_string()
    );
    let mut child = Command::new(&py.path).arg("-c").arg(&script).arg(&truth).stdout(Stdio::null()).spawn().unwrap();
    let t = wait_for_json(&truth, &mut child, Duration::from_secs(60));
    assert!(t["threads"].as_u64().unwrap() > 2000);
    let pid = child.id().to_string();
    let mut checks = Vec::new();
    for (extra, what) in [("--blocking", "paused"), ("--all-threads", "rate")] {
        let (out, _, _) = loopspy(&["record", "--pid", &pid, "-r", "100", "-d", "2", extra, "-f", "json", "-o", "-"]);
        checks.push((what, out));
    }
    let _ = child.kill();
    let _ = child.wait();
    for (what, out) in checks {
        assert_eq!(out.status.code(), Some(0), "{what}: {}", describe(&out));
        let r = json_of(&out);
        let rec = &r["recording"];
        let warnings = rec["warnings"].to_string();
        let err = String::from_utf8_lossy(&out.stderr);
        let achieved = rec["achieved_hz"].as_f64().unwrap();
        let looks = rec["samples"].as_f64().unwrap() + rec["failed_samples"].as_f64().unwrap();
        assert!(
            (achieved - looks / rec["duration_s"].as_f64().unwrap()).abs() < 0.5,
            "{what}: achieved_hz {achieved} is not the real rate: {looks} looks in {} s",
            rec["duration_s"]
        );
        // Said in the JSON and in the summary whenever it happened.
        assert_eq!(achieved < 90.0, warnings.contains("Hz of the 100 Hz asked"), "{what}: {achieved} Hz, {warnings}");
        assert_eq!(achieved < 90.0, err.contains("Hz of the 100 Hz asked"), "{what}: {err}");
        if what == "paused" {
            let paused = rec["paused_pct"].as_f64().unwrap();
            assert!(paused > 2.0, "stopping 2,000 threads 100 times a second costs more than 2 %: {paused}");
            assert!(warnings.contains("held the target stopped") && err.contains("held the target stopped"), "{warnings}");
        }
    }
}
