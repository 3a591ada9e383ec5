//! One module per subcommand, plus what they share: getting hold of the target.

pub mod demo;
pub mod dump;
pub mod record;
pub mod render;
pub mod serve;
pub mod top;

use std::time::Duration;

use crate::base::error::Failure;
use crate::capture::fleet::{self, Fleet, Found};
use crate::cli::config::TargetSpec;
use crate::process::procfs;
use crate::process::signals::Stop;
use crate::process::spawn::Spawned;
use crate::python::target::{AttachOptions, Target};

/// How long a command without `--subprocesses` spends looking for loops in descendants, for
/// its hint.
const HINT_BUDGET: Duration = Duration::from_secs(1);

/// A flag raised by Ctrl-C (SIGINT), SIGTERM or SIGHUP.
pub fn stop_flag() -> Stop {
    Stop::on_signals()
}

/// Attach to a PID, or start the program and wait for its loop.
pub fn acquire(target: &TargetSpec, options: AttachOptions, stop: &Stop) -> Result<(Target, Option<Spawned>), Failure> {
    match target {
        TargetSpec::Pid(pid) => Ok((Target::attach(*pid, options)?, None)),
        TargetSpec::Spawn { argv, timeout, keep } => {
            let mut child = Spawned::start(argv, *keep)?;
            let t = crate::capture::launch::wait_for_loop(&mut child, *timeout, options, stop)?;
            if *keep {
                child.keep_running();
            }
            Ok((t, Some(child)))
        }
    }
}

/// `--subprocesses`: the tree of a PID, or of a program started (waiting until a loop runs in
/// it, then `settle` for its other processes), and its processes that run a loop (at least one).
pub fn acquire_fleet(
    target: &TargetSpec,
    options: AttachOptions,
    stop: &Stop,
    settle: Option<Duration>,
    full_argv: bool,
) -> Result<(Fleet, Vec<Found>, Option<Spawned>), Failure> {
    match target {
        TargetSpec::Pid(pid) => {
            if !procfs::exists(*pid) {
                return Err(Failure::NoSuchProcess { pid: *pid });
            }
            if procfs::is_dead(*pid) {
                return Err(Failure::TargetExited { pid: *pid });
            }
            let mut fleet = Fleet::new(*pid, options);
            let found = fleet.scan();
            if found.is_empty() {
                return Err(no_loop_in_tree(&mut fleet, full_argv));
            }
            Ok((fleet, found, None))
        }
        TargetSpec::Spawn { argv, timeout, keep } => {
            let mut child = Spawned::start(argv, *keep)?;
            let (fleet, found) = crate::capture::launch::wait_for_loops(&mut child, *timeout, options, stop, settle)?;
            if *keep {
                child.keep_running();
            }
            Ok((fleet, found, Some(child)))
        }
    }
}

/// Why a tree shows no loop: a lone process's own failure, or what each process of it is.
fn no_loop_in_tree(fleet: &mut Fleet, full_argv: bool) -> Failure {
    let root = fleet.root;
    let others = fleet.others(&|a| crate::output::argv::shown_list(a, full_argv));
    if others.iter().all(|o| o.pid == root) {
        // Only the process itself: as without --subprocesses.
        if let Some(t) = fleet.first_waiting() {
            return match crate::capture::snapshot::Looker::new().look(t) {
                Ok(view) => Failure::NoEventLoop { pid: root, threads: view.threads, below: Vec::new() },
                Err(f) => f,
            };
        }
        if let Some(f) = fleet.last_failure() {
            return f.clone();
        }
    }
    Failure::NoEventLoopInTree { pid: root, processes: others }
}

/// Processes of the tree of `root` other than `shown` that run a loop now (for the hint that
/// `--subprocesses` would show them); spends at most a second looking.
pub fn loops_elsewhere(root: i32, shown: i32) -> Vec<i32> {
    let mut pids = fleet::descendants_with_loops(root, AttachOptions::default(), HINT_BUDGET);
    pids.retain(|p| *p != shown);
    pids
}

/// A "no event loop" failure says which descendants do run one.
pub fn with_descendants_hint(f: Failure) -> Failure {
    match f {
        Failure::NoEventLoop { pid, threads, below } if below.is_empty() => {
            Failure::NoEventLoop { pid, threads, below: loops_elsewhere(pid, pid) }
        }
        other => other,
    }
}

/// The hint printed when processes of the tree other than the one looked at run loops.
pub fn hint_text(shown: i32, others: &[i32]) -> Option<String> {
    if others.is_empty() {
        return None;
    }
    let list = others.iter().take(10).map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
    let more = if others.len() > 10 { format!(" and {} more", others.len() - 10) } else { String::new() };
    Some(format!(
        "loopspy: {} other process{} of this tree {} event loops too (PID {list}{more}); only PID {shown} is shown: \
         --subprocesses shows every one (a gunicorn or uvicorn master and its workers, a multiprocessing pool)",
        others.len(),
        if others.len() == 1 { "" } else { "es" },
        if others.len() == 1 { "runs" } else { "run" },
    ))
}
