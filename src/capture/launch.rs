//! `loopspy <cmd> -- program args...`: find the Python process that runs an event loop among
//! the started program and its descendants (a pyenv shim, a shell script or `uv run` may sit
//! in between), and attach to it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::base::error::Failure;
use crate::process::procfs;
use crate::process::signals::Stop;
use crate::process::spawn::Spawned;
use crate::python::interp;
use crate::python::target::{AttachOptions, Target};

const POLL: Duration = Duration::from_millis(25);

/// Wait until a Python process in the program's tree runs an event loop, and attach to
/// it. Gives up after `timeout`, or when `stop` is raised (Ctrl-C).
pub fn wait_for_loop(spawned: &mut Spawned, timeout: Duration, options: AttachOptions, stop: &Stop) -> Result<Target, Failure> {
    let deadline = Instant::now() + timeout;
    // (pid, exe) pairs that are not Python: a shim execs the interpreter later under the
    // same pid, so a changed exe is tried again.
    let mut not_python: HashSet<(i32, PathBuf)> = HashSet::new();
    let mut attached: Vec<Target> = Vec::new();
    let mut last_failure: Option<Failure> = None;
    loop {
        if stop.is_set() {
            return Err(Failure::Signal { signal: stop.signal().unwrap_or(2) });
        }
        for target in &attached {
            if has_running_loop(target) {
                let pid = target.pid;
                let i = attached.iter().position(|t| t.pid == pid).expect("present");
                return Ok(attached.swap_remove(i));
            }
        }
        let mut candidates = vec![spawned.pid()];
        candidates.extend(procfs::descendants(spawned.pid()));
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
        if let Some(status) = spawned.exited() {
            if procfs::descendants(spawned.pid()).is_empty() && attached.is_empty() {
                return Err(Failure::SpawnFailed {
                    program: spawned.program().to_string(),
                    detail: format!("it exited ({status}) before an asyncio event loop started"),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(match attached.first_mut() {
                Some(t) => no_loop_failure(t),
                None => last_failure.unwrap_or_else(|| Failure::NotPython {
                    pid: spawned.pid(),
                    exe: None,
                    detail: format!("no Python process appeared under it within {timeout:?}"),
                }),
            });
        }
        std::thread::sleep(POLL);
    }
}

fn is_python_name(exe: &std::path::Path) -> bool {
    exe.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python"))
}

fn has_running_loop(target: &Target) -> bool {
    let Ok(tids) = procfs::task_ids(target.pid) else { return false };
    interp::threads(&target.reader, target.interp, &tids).map(|ts| ts.iter().any(|t| t.running_loop.is_some())).unwrap_or(false)
}

fn no_loop_failure(target: &mut Target) -> Failure {
    match super::snapshot::Looker::new().look(target) {
        Ok(view) => Failure::NoEventLoop { pid: target.pid, threads: view.threads },
        Err(f) => f,
    }
}
