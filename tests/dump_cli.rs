//! `loopspy dump` as a user meets it: every error path with its exit code and message, the
//! spawn mode (`-- program`), wrappers, `--keep`, `--blocking`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The newest interpreter present that loopspy supports.
fn some_python() -> &'static Interp {
    loopspy::python::layout::SUPPORTED
        .iter()
        .rev()
        .find_map(|v| interpreters().get(&v.to_string()))
        .expect("no supported Python interpreter found at all")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit(')').next().unwrap_or("").trim_start().chars().next();
    !matches!(state, Some('Z') | Some('X') | None)
}

fn wait_gone(pid: i32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

#[test]
fn no_such_pid_exits_3() {
    let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    // PIDs are always below pid_max, so this one cannot exist.
    let (out, _, _) = loopspy(&["dump", "--pid", &pid_max.to_string()]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(stderr(&out).contains(&format!("no process with PID {pid_max}")), "{}", describe(&out));
}

#[test]
fn not_python_exits_5() {
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let (out, _, _) = loopspy(&["dump", "--pid", &child.id().to_string()]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    assert!(stderr(&out).contains("does not look like a CPython interpreter"), "{}", describe(&out));
    assert!(stderr(&out).contains("sleep"), "names the executable: {}", describe(&out));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["dump"],
        vec!["dump", "--pid", "0"],
        vec!["dump", "--pid", "-4"],
        vec!["dump", "--pid", "abc"],
        vec!["dump", "--pid", "1", "--", "python3"],
        vec!["dump", "--timeout", "0", "--", "python3"],
        vec!["dump", "--keep", "--kill", "--", "python3"],
        vec!["frobnicate"],
    ] {
        let (out, _, _) = loopspy(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
    }
}

#[test]
fn help_has_examples_and_exit_codes() {
    let (out, _, _) = loopspy(&["dump", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Examples:") && text.contains("loopspy dump --pid"), "{text}");
    let (out, _, _) = loopspy(&["--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Exit codes:"));
}

/// A target that has exited but is not reaped yet (a zombie): its memory is gone.
#[test]
fn exited_target_exits_8() {
    let py = some_python();
    let mut parent = Command::new(&py.path)
        .args([
            "-c",
            "import subprocess, sys, time\n\
             p = subprocess.Popen([sys.executable, '-c', 'pass'])\n\
             print(p.pid, flush=True)\n\
             time.sleep(60)\n",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(parent.stdout.take().unwrap()), &mut line).unwrap();
    let child: i32 = line.trim().parse().unwrap();
    assert!(wait_gone(child), "child did not exit");
    let (out, _, _) = loopspy(&["dump", "--pid", &child.to_string()]);
    let _ = parent.kill();
    let _ = parent.wait();
    assert_eq!(out.status.code(), Some(8), "{}", describe(&out));
    assert!(stderr(&out).contains("exited"), "{}", describe(&out));
}

/// Versions loopspy has no table for are named, never read as zeros.
#[test]
fn unsupported_python_exits_6_naming_the_version() {
    let Some(old) = ["3.7", "3.6"].iter().find_map(|v| interpreters().get(*v)) else {
        eprintln!("SKIPPED unsupported_python: no Python 3.6/3.7 installed to try");
        return;
    };
    let scenario = Scenario::start(old, "no_loop.py", &[]);
    let (out, _, _) = loopspy(&["dump", "--pid", &scenario.pid().to_string()]);
    assert_eq!(out.status.code(), Some(6), "{}", describe(&out));
    assert!(stderr(&out).contains(&format!("Python {}.", old.version)), "{}", describe(&out));
}

/// The report of a spawned program: it names the Python process that runs the script.
fn spawned_python(report: &serde_json::Value, script: &std::path::Path) -> i32 {
    let command: Vec<String> = serde_json::from_value(report["command"].clone()).unwrap();
    assert!(command.iter().any(|a| a == script.to_str().unwrap()), "{report:#}");
    assert!(report["python"]["version"].is_string());
    report["pid"].as_i64().unwrap() as i32
}

#[test]
fn spawned_program_is_dumped_then_stopped() {
    let py = some_python();
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("t.json");
    let script = targets_dir().join("blocked_callback.py");
    let (out, _, _) = loopspy(&["dump", "--json", "--", py.path.to_str().unwrap(), script.to_str().unwrap(), truth.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_of(&out);
    let pid = spawned_python(&report, &script);
    assert_eq!(report["loop_count"], 1);
    assert!(wait_gone(pid), "the spawned program must be stopped after the dump");
}

#[test]
fn keep_leaves_the_program_running() {
    let py = some_python();
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("t.json");
    let script = targets_dir().join("idle.py");
    // The kept program inherits loopspy's stderr: send it to a file, not a pipe we wait on.
    let err_path = dir.path().join("stderr.txt");
    let out = Command::new(loopspy_bin())
        .args(["dump", "--json", "--keep", "--", py.path.to_str().unwrap(), script.to_str().unwrap(), truth.to_str().unwrap()])
        .stderr(std::fs::File::create(&err_path).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let err = std::fs::read_to_string(&err_path).unwrap();
    let pid = spawned_python(&json_of(&out), &script);
    let still_there = alive(pid);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    assert!(still_there, "--keep must leave the program running");
    assert!(err.contains(&format!("PID {pid}")), "{err}");
}

/// A shell script that starts Python as a child (not exec): loopspy follows it down.
#[test]
fn wrapper_is_followed_to_the_python_child() {
    let py = some_python();
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("t.json");
    let script = targets_dir().join("blocked_task.py");
    let shell = format!("{} {} {}; :", py.path.display(), script.display(), truth.display());
    let out = Command::new(loopspy_bin()).args(["dump", "--json", "--", "bash", "-c", &shell]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_of(&out);
    // The report names the Python child (its command line is the script), not bash.
    let pid = spawned_python(&report, &script);
    let exe = report["python"]["executable"].as_str().unwrap();
    assert!(exe.contains("python"), "{exe}");
    assert!(wait_gone(pid), "the whole process group is stopped");
}

/// A pyenv shim (a bash script that execs pyenv, which execs the interpreter).
#[test]
fn pyenv_shim_is_followed() {
    let root = std::env::var("PYENV_ROOT").unwrap_or_else(|_| format!("{}/.pyenv", std::env::var("HOME").unwrap()));
    let Some(py) = ["3.12", "3.11", "3.13", "3.10"].iter().find_map(|v| interpreters().get(*v).filter(|i| i.path.starts_with(&root)))
    else {
        eprintln!("SKIPPED pyenv_shim_is_followed: no pyenv interpreter");
        return;
    };
    let shim = std::path::PathBuf::from(&root).join(format!("shims/python{}", py.version));
    if !shim.exists() {
        eprintln!("SKIPPED pyenv_shim_is_followed: no shim {}", shim.display());
        return;
    }
    let full = py.path.parent().unwrap().parent().unwrap().file_name().unwrap().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("t.json");
    let script = targets_dir().join("idle.py");
    let out = Command::new(loopspy_bin())
        .args(["dump", "--json", "--"])
        .arg(&shim)
        .arg(&script)
        .arg(&truth)
        .env("PYENV_VERSION", &full)
        .env("PATH", format!("{root}/bin:{}", std::env::var("PATH").unwrap_or_default()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_of(&out);
    assert!(report["python"]["version"].as_str().unwrap().starts_with(&py.version), "{report:#}");
    assert_eq!(report["loops"][0]["state"]["state"], "idle");
}

#[test]
fn spawn_failures_exit_9() {
    let (out, _, _) = loopspy(&["dump", "--", "/nonexistent/python3"]);
    assert_eq!(out.status.code(), Some(9), "{}", describe(&out));
    assert!(stderr(&out).contains("/nonexistent/python3"));

    let py = some_python();
    let (out, _, _) = loopspy(&["dump", "--", py.path.to_str().unwrap(), "-c", "pass"]);
    assert_eq!(out.status.code(), Some(9), "{}", describe(&out));
    assert!(stderr(&out).contains("before an asyncio event loop started"), "{}", describe(&out));
}

#[test]
fn spawned_program_without_a_loop_exits_7_after_the_timeout() {
    let py = some_python();
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("t.json");
    let script = targets_dir().join("no_loop.py");
    let (out, before, after) =
        loopspy(&["dump", "--timeout", "2", "--", py.path.to_str().unwrap(), script.to_str().unwrap(), truth.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert!(stderr(&out).contains("\"worker\""), "{}", describe(&out));
    assert!(after - before >= 2.0, "waited the full timeout");
}

/// `--blocking` pauses the target while reading and gives the same figures; the target is
/// running again afterwards.
#[test]
fn blocking_mode_reads_the_same_and_resumes_the_target() {
    let scenario = Scenario::start(some_python(), "blocked_callback.py", &[]);
    let pid = scenario.pid().to_string();
    let (out, _, _) = loopspy(&["dump", "--json", "--blocking", "--pid", &pid]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_of(&out);
    assert_eq!(report["loops"][0]["ready"], scenario.truth["ready"]);
    assert_eq!(report["loops"][0]["timers"]["count"], scenario.truth["timers"]);
    assert_eq!(report["loops"][0]["callback"]["qualname"], scenario.truth["callback"]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0"), "target still traced after --blocking:\n{status}");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat.rsplit(')').next().unwrap().trim_start().chars().next().unwrap();
    assert!(state != 'T' && state != 't', "target left stopped ({state})");
}

/// A loop of a class loopspy cannot read (a foreign loop registered as the running loop) is
/// named with exit 12 when it is the only one; beside an asyncio loop, the asyncio loop is
/// read and the foreign thread is listed without one.
#[test]
fn foreign_loops_are_named_or_passed_over() {
    // 3.12 keeps the running loop in the thread-state dict, 3.13+ in a field: both if present.
    for v in ["3.12", "3.15"] {
        let Some(interp) = require(v, "dump_cli/foreign_loops") else { continue };
        foreign_loops_on(interp);
    }
}

fn foreign_loops_on(interp: &Interp) {
    let alone = Scenario::start(interp, "foreign_loop.py", &[]);
    let (out, _, _) = loopspy(&["dump", "--pid", &alone.pid().to_string()]);
    assert_eq!(out.status.code(), Some(12), "{}", describe(&out));
    assert!(stderr(&out).contains("ForeignEventLoop"), "{}", describe(&out));
    let beside = Scenario::start(interp, "foreign_loop.py", &["--beside"]);
    let (out, _, _) = loopspy(&["dump", "--json", "--pid", &beside.pid().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_of(&out);
    assert_eq!(report["loop_count"], 1, "{report:#}");
    assert!(report["loops"][0]["loop_class"].as_str().unwrap().contains("EventLoop"), "{report:#}");
    assert!(report["threads"].as_array().unwrap().iter().any(|t| t["name"] == "foreign"), "{report:#}");
}

/// `dump` of a loop stopped by the garbage collector says so, with the generation: the target
/// (`gc_pauses.py --forever`) runs full collections back to back and measures the share of
/// time it spends collecting; a few looks must catch one.
fn dump_names_a_collection(version: &str) {
    let test = "dump/gc_collecting";
    let Some(interp) = require(version, test) else { return };
    record(test, version, "stock", "FAIL");
    let scenario = Scenario::start(interp, "gc_pauses.py", &["--forever"]);
    let share = scenario.truth["collecting_share"].as_f64().unwrap();
    assert!(share > 0.5, "Python {version}: the target collected only {share:.2} of the time");
    let pid = scenario.pid().to_string();
    let mut seen = None;
    for _ in 0..8 {
        let (out, _, _) = loopspy(&["dump", "--pid", &pid, "--json"]);
        let state = json_of(&out)["loops"][0]["state"].clone();
        assert!(state["gc_collecting"].is_boolean(), "Python {version}: the GC state was not read: {state}");
        if state["gc_collecting"] == true {
            seen = Some(state);
            break;
        }
    }
    let state = seen.unwrap_or_else(|| panic!("Python {version}: 8 looks, none while collecting ({share:.2} of the time)"));
    assert_eq!(state["gc_generation"], scenario.truth["generation"], "Python {version}: {state}");
    // The text says it too (one look: it may land between two collections).
    let (out, _, _) = loopspy(&["dump", "--pid", &pid]);
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("gc ") {
        assert!(text.contains("collecting now (generation 2)"), "Python {version}: {text}");
    }
    record(test, version, "stock", "pass");
}

version_tests!(mod gc_collecting, dump_names_a_collection);
