//! `loopspy top` and `loopspy demo` end to end, in a real terminal (tmux, 80x24), on every
//! interpreter present: the blocking function shows up with a plausible blocked time, `s`
//! saves a valid SVG, `q` quits, the program loopspy started is stopped and the terminal is
//! restored. Plus `top` on a pipe printing one line per second.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, cwd: &Path, shell_command: &str) -> Tmux {
        let socket = format!("loopspy-test-{name}-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-s", "t", "-x", "80", "-y", "24", "-c"])
            .arg(cwd)
            .arg(shell_command)
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .status()
            .expect("tmux is needed for this test (.ci/run installs it)");
        assert!(status.success());
        // Keep the pane after the command ends, so its last output can be read.
        let _ = Command::new("tmux").args(["-L", &socket, "set-option", "-t", "t", "remain-on-exit", "on"]).status();
        Tmux { socket }
    }

    fn capture(&self) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p", "-t", "t"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn send(&self, keys: &str) {
        Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", "t", keys]).status().unwrap();
    }

    fn alternate_screen_on(&self) -> bool {
        let out = Command::new("tmux").args(["-L", &self.socket, "display-message", "-p", "-t", "t", "#{alternate_on}"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    /// Wait until the screen satisfies `pred`; return the screen.
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Run `loopspy <args>` in the pane; after it exits, the pane says whether the terminal
/// settings came back and what the exit code was.
fn wrapped(args: &str) -> String {
    format!(
        "before=$(stty -g); {} {args}; code=$?; after=$(stty -g); \
         [ \"$before\" = \"$after\" ] && echo TTY-RESTORED; echo LOOPSPY-EXIT=$code; sleep 60",
        shell_quote(loopspy_bin().to_str().unwrap())
    )
}

/// Is a Python process (argv[0] a python) with `marker` among its arguments still running?
/// (The shell in the tmux pane has the marker in its command line too; it does not count.)
fn python_running_with(marker: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().any(|e| {
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else { return false };
        let args: Vec<String> = raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let is_python = args.first().and_then(|a| a.rsplit('/').next()).is_some_and(|a| a.starts_with("python"));
        let alive = std::fs::read_to_string(e.path().join("stat"))
            .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
            .unwrap_or(false);
        is_python && alive && args.iter().any(|a| a.contains(marker))
    })
}

/// The blocked-time figure of a table row such as `slow_query  periodic_block.py:11  901ms 3 301ms`.
fn row_times(screen: &str, function: &str) -> Option<(f64, f64)> {
    let row = screen.lines().find(|l| l.contains(function) && l.contains(".py:"))?;
    let times: Vec<f64> = row
        .split_whitespace()
        .filter_map(|w| {
            if let Some(ms) = w.strip_suffix("ms") {
                ms.parse().ok()
            } else {
                w.strip_suffix('s').and_then(|s| s.parse::<f64>().ok()).map(|s| s * 1e3)
            }
        })
        .collect();
    (times.len() >= 2).then(|| (times[0], times[1]))
}

fn top_in_tmux(version: &str) {
    let test = "top/tmux";
    let Some(interp) = require(version, test) else { return };
    if !loopspy::python::layout::SUPPORTED.iter().any(|v| v.to_string() == version) {
        return;
    }
    record(test, version, "stock", "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker").display().to_string();
    let script = targets_dir().join("periodic_block.py");
    let cmd = wrapped(&format!(
        "top -- {} {} {}",
        shell_quote(interp.path.to_str().unwrap()),
        shell_quote(script.to_str().unwrap()),
        shell_quote(&marker)
    ));
    let tmux = Tmux::start(&format!("top{}", version.replace('.', "")), dir.path(), &cmd);

    // The blocking function, with a plausible blocked time (each block is 300 ms).
    let screen = tmux.wait_for("slow_query in the frames table", Duration::from_secs(20), |s| {
        row_times(s, "slow_query").is_some_and(|(total, _)| total >= 290.0)
    });
    let (total, longest) = row_times(&screen, "slow_query").unwrap();
    assert!((250.0..=400.0).contains(&longest), "Python {version}: longest {longest} ms\n{screen}");
    assert!(total >= longest, "{screen}");
    assert!(screen.contains("PID ") && screen.contains("100 Hz"), "{screen}");
    assert!(tmux.alternate_screen_on(), "the dashboard uses the alternate screen");
    // The diagnosis line: time.sleep in slow_query is synchronous I/O, a sleep.
    let screen = tmux.wait_for("the diagnosis line", Duration::from_secs(10), |s| s.contains("DIAGNOSIS: synchronous I/O on the loop"));
    let line = screen.lines().find(|l| l.contains("DIAGNOSIS: ")).unwrap();
    assert!(line.contains("episode") && screen.contains(": sleep"), "Python {version}: {line}\n{screen}");

    // s: an SVG of everything so far.
    tmux.send("s");
    let screen = tmux.wait_for("the saved message", Duration::from_secs(10), |s| s.contains("saved "));
    let line = screen.lines().find(|l| l.contains("saved ")).unwrap();
    let name = line.split("saved ").nth(1).unwrap().split_whitespace().next().unwrap();
    let path = dir.path().join(name);
    let svg = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}\n{screen}", path.display()));
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"), "valid SVG");
    assert!(svg.contains("slow_query"), "the blocking function is in the flame graph");

    // q: quit, the started program is stopped, the terminal is back.
    tmux.send("q");
    let screen = tmux.wait_for("loopspy to exit", Duration::from_secs(10), |s| s.contains("LOOPSPY-EXIT="));
    assert!(screen.contains("LOOPSPY-EXIT=0"), "{screen}");
    assert!(screen.contains("TTY-RESTORED"), "terminal settings not restored:\n{screen}");
    assert!(!tmux.alternate_screen_on(), "still on the alternate screen");
    assert!(screen.contains("loopspy top: PID"), "summary after exit:\n{screen}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while python_running_with(&marker) {
        assert!(Instant::now() < deadline, "the program loopspy started is still running");
        std::thread::sleep(Duration::from_millis(100));
    }
    record(test, version, "stock", "pass");
}

#[test]
fn demo_in_tmux() {
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("demo", dir.path(), &wrapped("demo"));
    let screen = tmux.wait_for("a blocking frame of the demo app", Duration::from_secs(30), |s| {
        ["fetch_user_sync", "parse_report", "write_audit_log"].iter().any(|f| row_times(s, f).is_some())
    });
    assert!(screen.contains("demo_app.py"), "{screen}");
    tmux.send("q");
    let screen = tmux.wait_for("loopspy to exit", Duration::from_secs(10), |s| s.contains("LOOPSPY-EXIT="));
    assert!(screen.contains("LOOPSPY-EXIT=0") && screen.contains("TTY-RESTORED"), "{screen}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while python_running_with("loopspy-demo-") {
        assert!(Instant::now() < deadline, "the demo app is still running");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// On a pipe, `top` prints one plain line per second with the headline figures.
#[test]
fn plain_lines_on_a_pipe() {
    let py = loopspy::python::layout::SUPPORTED.iter().rev().find_map(|v| interpreters().get(&v.to_string())).unwrap();
    let scenario = Scenario::start(py, "periodic_block.py", &[]);
    let (out, before, after) = loopspy(&["top", "--pid", &scenario.pid().to_string(), "--duration", "3.5"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!((3..=4).contains(&lines.len()), "one line per second for 3.5 s:\n{text}");
    assert!(after - before >= 3.5);
    for l in &lines {
        assert!(l.contains(" | busy ") && l.contains(" | lag now ") && l.contains(" | ready "), "{l}");
        assert!(!l.contains('\x1b'), "no escape codes on a pipe: {l:?}");
    }
    assert!(text.contains("slow_query"), "{text}");
    // By the last line, the 300 ms sleeps are diagnosed, with their next step.
    let last = lines.last().unwrap();
    assert!(last.contains(" | DIAGNOSIS: synchronous I/O on the loop: ") && last.contains("Next: `time.sleep` blocks the loop"), "{last}");
}

version_tests!(top_in_tmux);

/// The target dies under the dashboard: it says so, keeps the last figures, and `q` still
/// leaves a restored terminal.
#[test]
fn target_death_under_top() {
    let py = loopspy::python::layout::SUPPORTED.iter().rev().find_map(|v| interpreters().get(&v.to_string())).unwrap();
    let scenario = Scenario::start(py, "periodic_block.py", &[]);
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("death", dir.path(), &wrapped(&format!("top --pid {}", scenario.pid())));
    tmux.wait_for("the dashboard", Duration::from_secs(20), |s| row_times(s, "slow_query").is_some());
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(scenario.pid()), nix::sys::signal::Signal::SIGKILL);
    let screen = tmux.wait_for("the exit notice", Duration::from_secs(10), |s| s.contains("TARGET EXITED"));
    assert!(row_times(&screen, "slow_query").is_some(), "the last figures stay:\n{screen}");
    tmux.send("q");
    let screen = tmux.wait_for("loopspy to exit", Duration::from_secs(10), |s| s.contains("LOOPSPY-EXIT="));
    assert!(screen.contains("LOOPSPY-EXIT=0") && screen.contains("TTY-RESTORED"), "{screen}");
    assert!(screen.contains("the target exited"), "{screen}");
    drop(scenario);
}

/// `top --subprocesses` on `uvicorn --workers 3` (the framework venv of 3.13): the overview
/// has a row per worker; Down and Enter open the second one's dashboard; that worker killed,
/// its dashboard says it is gone; `w` goes back to the overview, where it is marked gone and
/// the worker uvicorn started in its place has a row.
#[test]
fn workers_in_tmux() {
    use std::collections::BTreeSet;
    use std::os::unix::process::CommandExt;
    let test = "top/workers";
    let Some(python) = framework_python("3.13", test, "uvloop") else { return };
    record(test, "3.13", "uvloop", "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth");
    std::fs::create_dir(&truth).unwrap();
    struct Group(std::process::Child);
    impl Drop for Group {
        fn drop(&mut self) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.0.id() as i32), nix::sys::signal::Signal::SIGKILL);
            let _ = self.0.wait();
        }
    }
    let server = Group(
        Command::new(&python)
            .args(["-m", "uvicorn", "workers_app:app", "--workers", "3", "--port", "0", "--log-level", "warning", "--app-dir"])
            .arg(targets_dir().join("apps"))
            .env("LOOPSPY_TRUTH_DIR", &truth)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let ready = || -> BTreeSet<i32> {
        std::fs::read_dir(&truth)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("ready-")?.parse().ok())
            .filter(|p: &i32| Path::new(&format!("/proc/{p}")).exists())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while ready().len() < 3 {
        assert!(Instant::now() < deadline, "uvicorn's workers did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let workers = ready();
    let tmux = Tmux::start("workers", dir.path(), &wrapped(&format!("top --subprocesses --pid {}", server.0.id())));
    // The rows, in the order shown: the worker PIDs at the start of a table line.
    let rows =
        |s: &str| -> Vec<i32> { s.lines().filter_map(|l| l.trim_start_matches('│').split_whitespace().next()?.parse().ok()).collect() };
    let screen = tmux.wait_for("a row per worker", Duration::from_secs(20), |s| workers.iter().all(|w| rows(s).contains(w)));
    assert!(screen.contains("Workers (") && screen.contains("w/Enter worker"), "{screen}");
    let chosen = rows(&screen).into_iter().filter(|p| workers.contains(p)).nth(1).unwrap();
    let at = rows(&screen).iter().position(|p| *p == chosen).unwrap();
    for _ in 0..at {
        tmux.send("Down");
    }
    tmux.send("Enter");
    tmux.wait_for("the worker's dashboard", Duration::from_secs(10), |s| s.contains(&format!("(w: all) PID {chosen} ")));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(chosen), nix::sys::signal::Signal::SIGKILL).unwrap();
    tmux.wait_for("the worker gone", Duration::from_secs(10), |s| s.contains(&format!("WORKER GONE: PID {chosen} exited")));
    tmux.send("w");
    let screen = tmux.wait_for("the overview with the new worker", Duration::from_secs(20), |s| {
        let now = ready();
        let shown = rows(s);
        now.iter().any(|p| !workers.contains(p) && shown.contains(p))
    });
    let gone = screen.lines().find(|l| l.contains(&chosen.to_string())).unwrap();
    assert!(gone.contains("gone (exited)"), "{screen}");
    tmux.send("q");
    let screen = tmux.wait_for("loopspy to exit", Duration::from_secs(10), |s| s.contains("LOOPSPY-EXIT="));
    assert!(screen.contains("LOOPSPY-EXIT=0") && screen.contains("TTY-RESTORED"), "{screen}");
    record(test, "3.13", "uvloop", "pass");
    drop(server);
}
