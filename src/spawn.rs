//! `loopspy <cmd> -- program args...`: start a program, find the Python process that runs an
//! event loop among it and its descendants (a pyenv shim, a shell script or `uv run` may sit
//! in between), and stop it again when loopspy is done unless asked to keep it.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::Failure;
use crate::interp;
use crate::procfs;
use crate::target::{AttachOptions, Target};

/// How long the program gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(25);

/// A program loopspy started, in its own process group.
pub struct Spawned {
    child: Child,
    program: String,
    keep: bool,
}

impl Spawned {
    /// Start `argv`. Its stdout goes to our stderr so that loopspy's own output (a report,
    /// JSON) stays clean; its stdin is closed.
    pub fn start(argv: &[String]) -> Result<Spawned, Failure> {
        Self::start_in(argv, None)
    }

    /// [`start`](Self::start) in a given working directory.
    pub fn start_in(argv: &[String], cwd: Option<&std::path::Path>) -> Result<Spawned, Failure> {
        let program = argv.first().cloned().unwrap_or_default();
        let stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Failure::SpawnFailed { program: program.clone(), detail: e.to_string() })?;
        let mut command = Command::new(&program);
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        let child = command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::from(stderr))
            .process_group(0)
            .spawn()
            .map_err(|e| Failure::SpawnFailed { program: program.clone(), detail: e.to_string() })?;
        Ok(Spawned { child, program, keep: false })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Leave the program running when this value is dropped.
    pub fn keep_running(&mut self) {
        self.keep = true;
    }

    /// Wait until a Python process in the program's tree runs an event loop, and attach to
    /// it. Gives up after `timeout`, or when `stop` is raised (Ctrl-C).
    pub fn wait_for_loop(&mut self, timeout: Duration, options: AttachOptions, stop: &AtomicBool) -> Result<Target, Failure> {
        let deadline = Instant::now() + timeout;
        // (pid, exe) pairs that are not Python: a shim execs the interpreter later under the
        // same pid, so a changed exe is tried again.
        let mut not_python: HashSet<(i32, PathBuf)> = HashSet::new();
        let mut attached: Vec<Target> = Vec::new();
        let mut last_failure: Option<Failure> = None;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(Failure::Interrupted);
            }
            for target in &attached {
                if has_running_loop(target) {
                    let pid = target.pid;
                    let i = attached.iter().position(|t| t.pid == pid).expect("present");
                    return Ok(attached.swap_remove(i));
                }
            }
            let mut candidates = vec![self.pid()];
            candidates.extend(procfs::descendants(self.pid()));
            for pid in candidates {
                if attached.iter().any(|t| t.pid == pid) || procfs::is_dead(pid) {
                    continue;
                }
                let Ok(exe) = procfs::exe(pid) else { continue };
                if not_python.contains(&(pid, exe.clone())) {
                    continue;
                }
                match Target::attach(pid, options) {
                    Ok(t) => attached.push(t),
                    Err(f @ Failure::PermissionDenied { .. }) | Err(f @ Failure::UnsupportedPython { .. }) => {
                        last_failure = Some(f);
                        not_python.insert((pid, exe));
                    }
                    Err(f) => {
                        // Not (yet) a Python we can read: often a process that has not
                        // finished starting. Try again if its exe changes.
                        if procfs::exe(pid).ok().as_ref() == Some(&exe) && !is_python_name(&exe) {
                            not_python.insert((pid, exe));
                        }
                        last_failure = Some(f);
                    }
                }
            }
            attached.retain(|t| !procfs::is_dead(t.pid));
            if let Ok(Some(status)) = self.child.try_wait() {
                if procfs::descendants(self.pid()).is_empty() && attached.is_empty() {
                    return Err(Failure::SpawnFailed {
                        program: self.program.clone(),
                        detail: format!("it exited ({status}) before an asyncio event loop started"),
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(match attached.first_mut() {
                    Some(t) => no_loop_failure(t),
                    None => last_failure.unwrap_or_else(|| Failure::NotPython {
                        pid: self.pid(),
                        exe: None,
                        detail: format!("no Python process appeared under it within {timeout:?}"),
                    }),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stop the program's process group: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) {
        let pgid = Pid::from_raw(self.pid());
        if matches!(self.child.try_wait(), Ok(Some(_))) && procfs::descendants(self.pid()).is_empty() {
            return;
        }
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) && procfs::descendants(self.pid()).is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if !self.keep {
            self.stop();
        }
    }
}

fn is_python_name(exe: &std::path::Path) -> bool {
    exe.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python"))
}

fn has_running_loop(target: &Target) -> bool {
    let Ok(tids) = procfs::tids(target.pid) else { return false };
    interp::threads(&target.reader, target.interp, &tids)
        .map(|ts| ts.iter().any(|t| t.running_loop.is_some()))
        .unwrap_or(false)
}

fn no_loop_failure(target: &mut Target) -> Failure {
    match crate::snapshot::Looker::new().look(target) {
        Ok(view) => Failure::NoEventLoop { pid: target.pid, threads: view.threads },
        Err(f) => f,
    }
}
