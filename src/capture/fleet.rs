//! The Python processes of a tree that run event loops (`--subprocesses`, and the program a
//! `-- PROGRAM` command starts): a parent (a gunicorn or uvicorn master, a multiprocessing
//! pool's parent, a shell or `uv run` in between) and its descendants, found in `/proc` and
//! attached one by one.
//!
//! A [`Fleet`] remembers what it found about each process (by PID and start time, so a PID
//! reused by a new process is a new process): attached and waiting for a loop (looked at again
//! at every scan, cheaply), not a Python it can read (tried again only if its executable
//! changes: a shim or a shell that execs the interpreter), or handed out to the caller, which
//! lets it go when it ends. Processes that appear later (a respawned worker) are found by the
//! next scan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::base::error::{Failure, ProcessBrief};
use crate::process::procfs::{self, Identity};
use crate::python::interp;
use crate::python::target::{AttachOptions, Target};

/// At most this many processes of a tree are looked at (a fork bomb is not a fleet).
pub const MAX_PROCESSES: usize = 1024;

/// A process of the tree that runs an event loop, attached.
pub struct Found {
    pub target: Target,
    pub id: Identity,
    pub parent_pid: Option<i32>,
}

enum State {
    /// A Python process without a running loop (yet): looked at again at every scan.
    Waiting(Box<Target>),
    /// Not a Python process loopspy can read, with the executable it had then.
    Refused { exe: Option<PathBuf>, failure: Failure, permanent: bool },
    /// Handed out by [`Fleet::scan`]: the caller looks at its loops.
    Taken,
}

struct Known {
    parent_pid: Option<i32>,
    /// When it was first seen.
    since: std::time::Instant,
    /// Order of discovery (reports list processes in it).
    seen: usize,
    state: State,
}

/// The processes of one tree, as far as they have been looked at.
pub struct Fleet {
    /// The parent: the PID given, or the program started.
    pub root: i32,
    options: AttachOptions,
    known: HashMap<Identity, Known>,
    seen: usize,
    /// The last reason a process could not be attached (for a program that never shows a loop).
    last_failure: Option<Failure>,
}

impl Fleet {
    pub fn new(root: i32, options: AttachOptions) -> Fleet {
        Fleet { root, options, known: HashMap::new(), seen: 0, last_failure: None }
    }

    /// The root and its descendants that are alive now, root first: `(identity, parent)`.
    fn tree(&self, include_root: bool) -> Vec<(Identity, Option<i32>)> {
        let mut pids = Vec::new();
        if include_root {
            pids.push(self.root);
        }
        pids.extend(procfs::descendants(self.root));
        pids.truncate(MAX_PROCESSES);
        pids.into_iter()
            .filter_map(|pid| {
                let info = procfs::stat_info(pid).ok()?;
                (!matches!(info.state, 'Z' | 'X')).then_some((Identity { pid, start: info.start }, Some(info.ppid)))
            })
            .collect()
    }

    /// Look at the tree: attach to the processes not seen before, look for a running loop in
    /// the Python processes that had none. Returns the processes whose loop runs now, each
    /// once (until [`Fleet::release`]d), the root first, then in order of discovery.
    pub fn scan(&mut self) -> Vec<Found> {
        self.scan_tree(true)
    }

    /// As [`Fleet::scan`], without the root (its descendants only).
    pub fn scan_descendants(&mut self) -> Vec<Found> {
        self.scan_tree(false)
    }

    fn scan_tree(&mut self, include_root: bool) -> Vec<Found> {
        let tree = self.tree(include_root);
        // Forget what left the tree (and was not handed out: the caller lets those go).
        self.known.retain(|id, k| matches!(k.state, State::Taken) || tree.iter().any(|(t, _)| t == id));
        let mut found: Vec<(usize, Found)> = Vec::new();
        for (id, parent_pid) in tree {
            let exe = procfs::exe(id.pid).ok();
            let retry = match self.known.get(&id) {
                None => true,
                Some(Known { state: State::Refused { exe: was, permanent, .. }, .. }) => !permanent || *was != exe,
                // A Python process that replaced its program: attached again.
                Some(Known { state: State::Waiting(t), .. }) => t.exec_happened(),
                Some(Known { state: State::Taken, .. }) => false,
            };
            if retry {
                let (seen, since) = match self.known.get(&id) {
                    Some(k) => (k.seen, k.since),
                    None => {
                        self.seen += 1;
                        (self.seen, std::time::Instant::now())
                    }
                };
                let state = match Target::attach(id.pid, self.options) {
                    Ok(t) => State::Waiting(Box::new(t)),
                    Err(failure) => {
                        // A process that is still starting (not an interpreter yet) or that
                        // execs one later is tried again; one that will never be readable
                        // is not.
                        let permanent = match &failure {
                            Failure::PermissionDenied { .. } | Failure::UnsupportedPython { .. } => true,
                            Failure::NoSuchProcess { .. } | Failure::TargetExited { .. } => true,
                            _ => procfs::exe(id.pid).ok() == exe && !exe.as_deref().is_some_and(is_python_name),
                        };
                        self.last_failure = Some(failure.clone());
                        State::Refused { exe: exe.clone(), failure, permanent }
                    }
                };
                self.known.insert(id, Known { parent_pid, since, seen, state });
            }
            let Some(k) = self.known.get_mut(&id) else { continue };
            if matches!(&k.state, State::Waiting(target) if has_running_loop(target)) {
                let State::Waiting(target) = std::mem::replace(&mut k.state, State::Taken) else { unreachable!() };
                found.push((k.seen, Found { target: *target, id, parent_pid: k.parent_pid }));
            }
        }
        let root = self.root;
        found.sort_by_key(|(seen, f)| (f.id.pid != root, *seen));
        found.into_iter().map(|(_, f)| f).collect()
    }

    /// A process handed out has ended, or its caller could not use it: forget it (a process
    /// still there, e.g. after `exec()`, is attached again at the next scan).
    pub fn release(&mut self, id: Identity) {
        self.known.remove(&id);
    }

    /// Is a descendant seen less than `within` ago still starting: not an interpreter yet, or
    /// one that runs no loop yet? (Workers import their application before their loop runs.)
    pub fn starting(&self, within: std::time::Duration) -> bool {
        self.known.iter().any(|(id, k)| {
            id.pid != self.root
                && k.since.elapsed() < within
                && matches!(k.state, State::Waiting(_) | State::Refused { permanent: false, .. })
        })
    }

    /// Is anything of the tree left: the root, or a descendant?
    pub fn alive(&self) -> bool {
        tree_alive(self.root)
    }

    /// The first Python process attached that runs no loop (in order of discovery).
    pub fn first_waiting(&mut self) -> Option<&mut Target> {
        self.known
            .values_mut()
            .filter_map(|k| match &mut k.state {
                State::Waiting(t) => Some((k.seen, t)),
                _ => None,
            })
            .min_by_key(|(seen, _)| *seen)
            .map(|(_, t)| t.as_mut())
    }

    /// Why the last process that could not be attached could not.
    pub fn last_failure(&self) -> Option<&Failure> {
        self.last_failure.as_ref()
    }

    /// The processes looked at and not handed out, in order of discovery, with why each is
    /// not shown (`command` turns an argv into what may be shown).
    pub fn others(&self, command: &dyn Fn(&[String]) -> Vec<String>) -> Vec<ProcessBrief> {
        let mut out: Vec<(usize, ProcessBrief)> = self
            .known
            .iter()
            .filter_map(|(id, k)| {
                let why = match &k.state {
                    State::Taken => return None,
                    State::Waiting(_) => "Python, no running event loop".to_string(),
                    State::Refused { failure, .. } => refusal(failure),
                };
                let argv = procfs::cmdline(id.pid).unwrap_or_default();
                Some((k.seen, ProcessBrief { pid: id.pid, parent_pid: k.parent_pid, command: command(&argv), why }))
            })
            .collect();
        out.sort_by_key(|(seen, b)| (b.pid != self.root, *seen));
        out.into_iter().map(|(_, b)| b).collect()
    }
}

/// Why a process could not be attached, in a few words.
fn refusal(f: &Failure) -> String {
    match f {
        Failure::NotPython { .. } => "not a Python process".into(),
        Failure::PermissionDenied { .. } => "permission denied (loopspy may not read its memory)".into(),
        Failure::UnsupportedPython { version, .. } => format!("Python {version}, which loopspy cannot read"),
        Failure::TargetExited { .. } | Failure::NoSuchProcess { .. } => "exited".into(),
        other => other.kind().replace('_', " "),
    }
}

/// Is anything of the tree of `root` left: the root, or a descendant?
pub fn tree_alive(root: i32) -> bool {
    !procfs::is_dead(root) || !procfs::descendants(root).is_empty()
}

pub fn is_python_name(exe: &Path) -> bool {
    exe.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python"))
}

/// Does a thread of the process run an event loop now? Only threads the process has count:
/// right after a `fork()`, a child's thread list still holds copies of its parent's threads.
pub fn has_running_loop(target: &Target) -> bool {
    let Ok(tasks) = procfs::task_ids(target.pid) else { return false };
    // A list read while a thread came or went is read again (it settles within microseconds).
    for _ in 0..3 {
        if let Ok(ts) = interp::threads(&target.reader, target.interp, &tasks) {
            return ts.iter().any(|t| t.running_loop.is_some() && t.native_id.is_none_or(|n| tasks.iter().any(|k| k.ns_tid == n)));
        }
    }
    false
}

/// Descendants of `pid` that run an event loop now, for a hint that `--subprocesses` would
/// show them: looked at for at most `budget` (attaching costs a few milliseconds each).
pub fn descendants_with_loops(pid: i32, options: AttachOptions, budget: std::time::Duration) -> Vec<i32> {
    let deadline = std::time::Instant::now() + budget;
    let mut out = Vec::new();
    for child in procfs::descendants(pid).into_iter().take(MAX_PROCESSES) {
        if std::time::Instant::now() >= deadline {
            break;
        }
        if procfs::is_dead(child) {
            continue;
        }
        if let Ok(t) = Target::attach(child, options) {
            if has_running_loop(&t) {
                out.push(child);
            }
        }
    }
    out
}
