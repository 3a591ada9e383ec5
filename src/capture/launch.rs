//! `loopspy <cmd> -- program args...`: find the Python process that runs an event loop among
//! the started program and its descendants (a pyenv shim, a shell script or `uv run` may sit
//! in between), and attach to it; with `--subprocesses`, every one that does.

use std::time::{Duration, Instant};

use crate::base::error::Failure;
use crate::capture::fleet::{Fleet, Found};
use crate::process::procfs;
use crate::process::signals::Stop;
use crate::process::spawn::Spawned;
use crate::python::target::{AttachOptions, Target};

const POLL: Duration = Duration::from_millis(25);

/// Wait until a Python process in the program's tree runs an event loop, and attach to
/// it. Gives up after `timeout`, or when `stop` is raised (Ctrl-C).
pub fn wait_for_loop(spawned: &mut Spawned, timeout: Duration, options: AttachOptions, stop: &Stop) -> Result<Target, Failure> {
    let (_, mut found) = wait_for_loops(spawned, timeout, options, stop, None)?;
    Ok(found.swap_remove(0).target)
}

/// A process of the tree seen less than this long ago that has no loop yet may be a worker
/// still importing its application: with `settle`, it is waited for.
const STARTING: Duration = Duration::from_secs(5);

/// Wait until Python processes in the program's tree run event loops: returns the tree as
/// looked at so far and the processes found (at least one). With `settle`, once a loop runs,
/// keep looking until the tree has not changed for that long and no process that appeared in
/// the last [`STARTING`] is still without a loop (workers starting side by side), within
/// `timeout`; without, return at the first loop.
pub fn wait_for_loops(
    spawned: &mut Spawned,
    timeout: Duration,
    options: AttachOptions,
    stop: &Stop,
    settle: Option<Duration>,
) -> Result<(Fleet, Vec<Found>), Failure> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut fleet = Fleet::new(spawned.pid(), options);
    let mut found: Vec<Found> = Vec::new();
    let mut tree_was = Vec::new();
    let mut changed = started;
    loop {
        if stop.is_set() {
            return Err(Failure::Signal { signal: stop.signal().unwrap_or(2) });
        }
        let new = fleet.scan();
        let mut tree = procfs::descendants(spawned.pid());
        tree.sort_unstable();
        if !new.is_empty() || tree != tree_was {
            changed = Instant::now();
            tree_was = tree;
        }
        found.extend(new);
        found.retain(|f| !procfs::is_dead(f.id.pid));
        if !found.is_empty() {
            match settle {
                None => return Ok((fleet, found)),
                Some(s) if (changed.elapsed() >= s && !fleet.starting(STARTING)) || Instant::now() >= deadline => {
                    return Ok((fleet, found))
                }
                Some(_) => {}
            }
        }
        if let Some(status) = spawned.exited() {
            if found.is_empty() && procfs::descendants(spawned.pid()).is_empty() {
                return Err(Failure::SpawnFailed {
                    program: spawned.program().to_string(),
                    detail: format!("it exited ({status}) before an asyncio event loop started"),
                });
            }
        }
        if found.is_empty() && Instant::now() >= deadline {
            let last = fleet.last_failure().cloned();
            return Err(match fleet.first_waiting() {
                Some(t) => no_loop_failure(t),
                None => last.unwrap_or_else(|| Failure::NotPython {
                    pid: spawned.pid(),
                    exe: None,
                    detail: format!("no Python process appeared under it within {timeout:?}"),
                }),
            });
        }
        std::thread::sleep(POLL);
    }
}

fn no_loop_failure(target: &mut Target) -> Failure {
    match super::snapshot::Looker::new().look(target) {
        Ok(view) => Failure::NoEventLoop { pid: target.pid, threads: view.threads, below: Vec::new() },
        Err(f) => f,
    }
}
