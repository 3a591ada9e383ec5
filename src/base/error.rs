//! The ways a loopspy command can fail, each with its own exit code and a message that says
//! what happened and what to do about it.

use std::fmt;

use serde::Serialize;

/// Exit codes. Documented in `docs/cli.md`; tested in `tests/cli_errors.rs`.
pub mod exit {
    pub const OK: i32 = 0;
    /// An unexpected internal error (a bug: please report it).
    pub const INTERNAL: i32 = 1;
    /// Bad command-line usage (clap's own code).
    pub const USAGE: i32 = 2;
    pub const NO_SUCH_PROCESS: i32 = 3;
    pub const PERMISSION_DENIED: i32 = 4;
    pub const NOT_PYTHON: i32 = 5;
    pub const UNSUPPORTED_PYTHON: i32 = 6;
    pub const NO_EVENT_LOOP: i32 = 7;
    pub const TARGET_EXITED: i32 = 8;
    pub const SPAWN_FAILED: i32 = 9;
    pub const OUTPUT_FAILED: i32 = 10;
    pub const UNREADABLE: i32 = 11;
    pub const UNSUPPORTED_LOOP: i32 = 12;
    pub const TARGET_STOPPED: i32 = 13;
    pub const LISTEN_FAILED: i32 = 14;
    /// Stopped by a signal: 128 + its number, the shell convention (what was recorded is
    /// written first).
    pub const HUNG_UP: i32 = 128 + 1;
    pub const INTERRUPTED: i32 = 128 + 2;
    pub const TERMINATED: i32 = 128 + 15;
}

/// What decides whether we may read another process's memory (ptrace access mode), as far
/// as `/proc` tells: for a permission error that names its cause.
///
/// The kernel (`__ptrace_may_access`, in the `ATTACH_REALCREDS` mode `process_vm_readv`
/// uses) lets us read a process when our *real* uid equals its real, effective and saved uids
/// and our real gid its three gids, or we hold CAP_SYS_PTRACE; and then only when it is
/// dumpable (or we hold the capability), Yama's `ptrace_scope` agrees, and no seccomp filter
/// or LSM says no.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    /// Our real uid and gid.
    pub our_uid: u32,
    pub our_gid: u32,
    /// The target's real, effective and saved uids (`Uid:` in its `status`).
    pub target_uids: Option<[u32; 3]>,
    /// The target's real, effective and saved gids (`Gid:`).
    pub target_gids: Option<[u32; 3]>,
    /// `/proc/sys/kernel/yama/ptrace_scope` (absent without Yama).
    pub ptrace_scope: Option<u8>,
    /// We hold CAP_SYS_PTRACE (effective).
    pub cap_sys_ptrace: bool,
    /// The target's `/proc` files belong to root although it runs as another user: it is not
    /// dumpable (it changed uid, or called `prctl(PR_SET_DUMPABLE, 0)`).
    pub target_not_dumpable: bool,
    /// loopspy runs under a seccomp filter (`Seccomp: 2` in its own `status`), which may refuse
    /// `process_vm_readv` (Docker's default profile does, without SYS_PTRACE).
    pub seccomp_filter: bool,
}

impl Access {
    /// The target's real uid.
    pub fn target_uid(&self) -> Option<u32> {
        self.target_uids.map(|u| u[0])
    }

    /// Do the target's uids all equal our real uid (and likewise its gids our gid)?
    fn same_uids(&self) -> Option<bool> {
        self.target_uids.map(|u| u.iter().all(|x| *x == self.our_uid))
    }

    fn same_gids(&self) -> Option<bool> {
        self.target_gids.map(|g| g.iter().all(|x| *x == self.our_gid))
    }
}

/// Every exit code: `(code, short name for --help, meaning, what to do)`. The one table that
/// `loopspy --help` and docs/cli.md show (a test checks the docs against it).
pub const EXIT_CODES: &[(i32, &str, &str, &str)] = &[
    (exit::OK, "ok", "success", ""),
    (exit::INTERNAL, "internal error", "internal error (a bug)", "please report it with the message"),
    (exit::USAGE, "usage", "bad command line", "see `loopspy <command> --help`"),
    (exit::NO_SUCH_PROCESS, "no such process", "no process with that PID", "check the PID; in a container use the PID the container sees"),
    (
        exit::PERMISSION_DENIED,
        "permission denied",
        "permission denied",
        "the message says which of uid, `ptrace_scope`, `CAP_SYS_PTRACE` or a non-dumpable target stops it, and the fix; see [containers.md](containers.md)",
    ),
    (exit::NOT_PYTHON, "not Python", "not a CPython process", "point at the Python process, not a shell or launcher"),
    (
        exit::UNSUPPORTED_PYTHON,
        "unsupported Python",
        "a Python loopspy cannot read",
        "the message names the version; supported: CPython 3.8–3.15, GIL builds, x86_64 Linux",
    ),
    (exit::NO_EVENT_LOOP, "no event loop", "no running asyncio event loop", "the message lists the Python threads seen and where each one is"),
    (exit::TARGET_EXITED, "target exited", "the target exited", ""),
    (
        exit::SPAWN_FAILED,
        "could not start the command",
        "the program given after `--` could not be started, or exited before its loop started",
        "",
    ),
    (exit::OUTPUT_FAILED, "could not write output", "output could not be written", ""),
    (
        exit::UNREADABLE,
        "target changed too fast to read",
        "the target changed too fast to read consistently (after 5 attempts)",
        "try again, or `--blocking`",
    ),
    (
        exit::UNSUPPORTED_LOOP,
        "unsupported loop class",
        "the event loop is of a class loopspy cannot read",
        "the message names the class; supported: asyncio's own loops and uvloop",
    ),
    (
        exit::TARGET_STOPPED,
        "target stopped (--blocking)",
        "`--blocking` asked for a stopped target (SIGSTOP, Ctrl-Z, a debugger)",
        "`kill -CONT PID`, or leave out `--blocking`",
    ),
    (
        exit::LISTEN_FAILED,
        "could not listen",
        "`serve` could not listen on the address asked (in use, not this machine's, or a port below 1024 without privilege)",
        "pick another `--listen` address or port",
    ),
    (exit::HUNG_UP, "stopped by SIGHUP", "the terminal hung up (SIGHUP)", "what was recorded was written first"),
    (exit::INTERRUPTED, "stopped by SIGINT", "interrupted (Ctrl-C, SIGINT)", "what was recorded was written first"),
    (exit::TERMINATED, "stopped by SIGTERM", "terminated (SIGTERM)", "what was recorded was written first"),
];

/// `0 ok, 1 internal error, 2 usage, ...`: the exit codes for `--help`.
pub fn exit_codes_line() -> String {
    EXIT_CODES.iter().map(|(code, short, _, _)| format!("{code} {short}")).collect::<Vec<_>>().join(", ")
}

/// A Python thread seen while looking for event loops (for the "no event loop" message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadBrief {
    /// The thread's id as the target sees it (`threading.get_native_id()`).
    pub native_id: Option<i32>,
    /// Its id in loopspy's PID namespace (equal unless the target has a PID namespace of its own).
    pub host_tid: Option<i32>,
    pub name: Option<String>,
    /// Innermost Python function, when known.
    pub top_frame: Option<String>,
}

/// A process of a tree looked at with `--subprocesses` that is not shown, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessBrief {
    pub pid: i32,
    pub parent_pid: Option<i32>,
    /// Its command line as shown (shortened, secrets redacted).
    pub command: Vec<String>,
    /// `no event loop`, `not Python`, `permission denied`, ...
    pub why: String,
}

/// A failure the user can act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    NoSuchProcess {
        pid: i32,
    },
    PermissionDenied {
        pid: i32,
        detail: String,
        access: Option<Access>,
    },
    NotPython {
        pid: i32,
        exe: Option<String>,
        detail: String,
    },
    UnsupportedPython {
        pid: i32,
        version: String,
        detail: String,
        /// The versions loopspy reads, e.g. "3.8 to 3.15".
        supported: String,
    },
    NoEventLoop {
        pid: i32,
        threads: Vec<ThreadBrief>,
        /// Descendants of the process that do run a loop (`--subprocesses` would show them).
        below: Vec<i32>,
    },
    /// `--subprocesses`: neither the process nor any of its descendants runs a loop.
    NoEventLoopInTree {
        pid: i32,
        /// Every process looked at, the parent first.
        processes: Vec<ProcessBrief>,
    },
    TargetExited {
        pid: i32,
    },
    SpawnFailed {
        program: String,
        detail: String,
    },
    OutputFailed {
        path: String,
        detail: String,
    },
    Unreadable {
        pid: i32,
        detail: String,
    },
    UnsupportedLoop {
        pid: i32,
        class: String,
    },
    /// The target is stopped (SIGSTOP, Ctrl-Z, a debugger) and --blocking cannot pause it.
    TargetStopped {
        pid: i32,
    },
    /// Stopped by a signal: SIGINT (Ctrl-C), SIGTERM or SIGHUP (its number).
    Signal {
        signal: i32,
    },
    /// `serve` could not listen on its address.
    ListenFailed {
        addr: String,
        detail: String,
    },
    /// A command line that cannot work (beyond what the argument parser checks).
    Usage {
        detail: String,
    },
    /// A failure already explained on standard error: only its exit code is left to give
    /// (and `what`, for `--json`).
    Reported {
        code: i32,
        what: String,
    },
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::NoSuchProcess { .. } => exit::NO_SUCH_PROCESS,
            Failure::PermissionDenied { .. } => exit::PERMISSION_DENIED,
            Failure::NotPython { .. } => exit::NOT_PYTHON,
            Failure::UnsupportedPython { .. } => exit::UNSUPPORTED_PYTHON,
            Failure::NoEventLoop { .. } | Failure::NoEventLoopInTree { .. } => exit::NO_EVENT_LOOP,
            Failure::TargetExited { .. } => exit::TARGET_EXITED,
            Failure::SpawnFailed { .. } => exit::SPAWN_FAILED,
            Failure::OutputFailed { .. } => exit::OUTPUT_FAILED,
            Failure::Unreadable { .. } => exit::UNREADABLE,
            Failure::UnsupportedLoop { .. } => exit::UNSUPPORTED_LOOP,
            Failure::TargetStopped { .. } => exit::TARGET_STOPPED,
            Failure::Signal { signal } => 128 + signal,
            Failure::Usage { .. } => exit::USAGE,
            Failure::ListenFailed { .. } => exit::LISTEN_FAILED,
            Failure::Reported { code, .. } => *code,
        }
    }

    /// A short machine-readable name (used in `--json` error output).
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::NoSuchProcess { .. } => "no_such_process",
            Failure::PermissionDenied { .. } => "permission_denied",
            Failure::NotPython { .. } => "not_python",
            Failure::UnsupportedPython { .. } => "unsupported_python",
            Failure::NoEventLoop { .. } | Failure::NoEventLoopInTree { .. } => "no_event_loop",
            Failure::TargetExited { .. } => "target_exited",
            Failure::SpawnFailed { .. } => "spawn_failed",
            Failure::OutputFailed { .. } => "output_failed",
            Failure::Unreadable { .. } => "unreadable",
            Failure::UnsupportedLoop { .. } => "unsupported_loop",
            Failure::TargetStopped { .. } => "target_stopped",
            Failure::Signal { .. } => "interrupted",
            Failure::Usage { .. } => "usage",
            Failure::ListenFailed { .. } => "listen_failed",
            Failure::Reported { code, .. } if *code == exit::OUTPUT_FAILED => "output_failed",
            Failure::Reported { .. } => "failed",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Details, names and paths may come from the target (or the user): shown escaped.
        let e = |s: &str| crate::base::escape::terminal(s).into_owned();
        match self {
            Failure::NoSuchProcess { pid } => write!(
                f,
                "no process with PID {pid}.\n  Check the PID (`pgrep -af python`). Inside a container, use the PID as \
                 the container sees it, and run loopspy in the same PID namespace (`kubectl exec` into the pod, or \
                 `kubectl debug --target=<container>`)."
            ),
            Failure::PermissionDenied { pid, detail, access } => {
                write!(f, "permission denied reading process {pid} ({}).", e(detail))?;
                match access {
                    Some(a) => write!(f, "\n  {}", permission_advice(*pid, a)),
                    None => write!(
                        f,
                        "\n  loopspy reads the target's memory, which needs the same access as a debugger (ptrace): run it \
                         as the target's user or as root, with CAP_SYS_PTRACE where kernel.yama.ptrace_scope asks for it; \
                         in a container add SYS_PTRACE (`kubectl debug --profile=general`). See docs/containers.md."
                    ),
                }
            }
            Failure::NotPython { pid, exe, detail } => write!(
                f,
                "process {pid}{} does not look like a CPython interpreter ({}).\n  Point loopspy at the Python \
                 process itself, not at a shell or launcher: `pgrep -af python`, or let loopspy start it: `loopspy dump \
                 -- python3 app.py`.",
                exe.as_ref().map(|x| format!(" ({})", e(x))).unwrap_or_default(),
                e(detail)
            ),
            Failure::UnsupportedPython { pid, version, detail, supported } => write!(
                f,
                "process {pid} runs Python {}, which loopspy cannot read: {}.\n  Supported: CPython \
                 {supported}, standard (GIL) builds, x86_64 Linux.",
                e(version),
                e(detail),
            ),
            Failure::NoEventLoop { pid, threads, below } => {
                write!(f, "process {pid} has no running asyncio event loop (in {} Python thread(s)):", threads.len())?;
                for t in threads {
                    write!(
                        f,
                        "\n  - thread {}{} {}: {}",
                        t.native_id.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                        match (t.native_id, t.host_tid) {
                            (Some(n), Some(h)) if n != h => format!(" (host tid {h})"),
                            _ => String::new(),
                        },
                        t.name.as_deref().map(|n| format!("\"{}\"", e(n))).unwrap_or_else(|| "(unnamed)".into()),
                        t.top_frame.as_deref().map(e).unwrap_or_else(|| "no Python frames".into()),
                    )?;
                }
                if !below.is_empty() {
                    return write!(
                        f,
                        "\n  {} of its descendants {} event loops (PID {}): `--subprocesses` looks at the process and \
                         all its descendants (a gunicorn or uvicorn master and its workers, a multiprocessing pool).",
                        below.len(),
                        if below.len() == 1 { "runs" } else { "run" },
                        below.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                    );
                }
                write!(
                    f,
                    "\n  A loop counts once `asyncio.run()`, `loop.run_forever()` or `run_until_complete()` is running \
                     in some thread. If the program is still starting, try again in a moment."
                )
            }
            Failure::NoEventLoopInTree { pid, processes } => {
                write!(
                    f,
                    "no running asyncio event loop in process {pid} or its descendants ({} process{} looked at):",
                    processes.len(),
                    if processes.len() == 1 { "" } else { "es" }
                )?;
                for p in processes.iter().take(20) {
                    write!(f, "\n  - PID {} ({}): {}", p.pid, e(&p.command.join(" ")), e(&p.why))?;
                }
                if processes.len() > 20 {
                    write!(f, "\n  - ... {} more", processes.len() - 20)?;
                }
                write!(
                    f,
                    "\n  A loop counts once `asyncio.run()`, `loop.run_forever()` or `run_until_complete()` is running \
                     in some thread. If the workers are still starting, try again in a moment."
                )
            }
            Failure::TargetExited { pid } => write!(
                f,
                "process {pid} has exited (it ended, or it is a zombie whose parent has not collected its exit status): \
                 nothing is left to read."
            ),
            Failure::SpawnFailed { program, detail } => write!(f, "could not run `{}`: {}", e(program), e(detail)),
            Failure::OutputFailed { path, detail } => write!(f, "could not write {}: {}", e(path), e(detail)),
            Failure::Unreadable { pid, detail } => write!(
                f,
                "could not get a consistent read of process {pid}: {}.\n  The target changed faster than it \
                 could be read; try again, or use --blocking to pause it briefly while reading.",
                e(detail)
            ),
            Failure::UnsupportedLoop { pid, class } => write!(
                f,
                "process {pid} runs an event loop of class {}, which loopspy cannot read.\n  Supported: \
                 asyncio's own loops (BaseEventLoop and subclasses) and uvloop.Loop.",
                e(class)
            ),
            Failure::TargetStopped { pid } => write!(
                f,
                "process {pid} is stopped (state T: SIGSTOP, Ctrl-Z, or a debugger holds it); --blocking would wait \
                 for it to run again, forever.\n  Resume it (`kill -CONT {pid}`), or leave out --blocking to look at it \
                 as it is (loopspy shows it as stopped)."
            ),
            Failure::Signal { signal } => match *signal {
                1 => write!(f, "the terminal hung up (SIGHUP)"),
                2 => write!(f, "interrupted (Ctrl-C)"),
                15 => write!(f, "terminated (SIGTERM)"),
                n => write!(f, "stopped by signal {n}"),
            },
            // Several lines (clap's message): each escaped, the breaks kept.
            Failure::Usage { detail } => write!(f, "{}", detail.lines().map(e).collect::<Vec<_>>().join("\n")),
            Failure::ListenFailed { addr, detail } => write!(
                f,
                "could not listen on {addr}: {}.\n  Pick another address or port with --listen (port 0 lets the system choose).",
                e(detail)
            ),
            Failure::Reported { what, .. } => write!(f, "{}", e(what)),
        }
    }
}

impl std::error::Error for Failure {}

/// Why reading `pid` was refused, and the one thing that fixes it: the facts on one line, the
/// fix on the next.
pub fn permission_advice(pid: i32, a: &Access) -> String {
    let ids = |kind: &str, ids: [u32; 3]| {
        if ids.iter().all(|x| *x == ids[0]) {
            format!("{kind} {}", ids[0])
        } else {
            format!("{kind} {} (effective {}, saved {})", ids[0], ids[1], ids[2])
        }
    };
    let them = match (a.target_uids, a.target_gids) {
        (Some(u), Some(g)) => format!("process {pid} runs as {} {}", ids("uid", u), ids("gid", g)),
        (Some(u), None) => format!("process {pid} runs as {}", ids("uid", u)),
        _ => format!("process {pid}'s owner is unknown"),
    };
    let us =
        format!("loopspy runs as uid {} gid {} {} CAP_SYS_PTRACE", a.our_uid, a.our_gid, if a.cap_sys_ptrace { "with" } else { "without" });
    let scope = a.ptrace_scope.map(|s| format!(", kernel.yama.ptrace_scope is {s}")).unwrap_or_default();
    let dumpable = if a.target_not_dumpable { format!(", process {pid} is not dumpable") } else { String::new() };
    let seccomp = if a.seccomp_filter { ", loopspy runs under a seccomp filter" } else { "" };
    let facts = format!("{them}, {us}{scope}{dumpable}{seccomp}.");
    let other_user = a.same_uids() == Some(false);
    let other_group = a.same_gids() == Some(false);
    let cure = if a.ptrace_scope == Some(3) {
        "ptrace_scope 3 forbids reading any other process until the machine reboots: nothing loopspy can do.".to_string()
    } else if a.our_uid == 0 && !a.cap_sys_ptrace {
        "Root without CAP_SYS_PTRACE is a container's default: add the SYS_PTRACE capability (`docker run --cap-add \
         SYS_PTRACE`, `securityContext.capabilities.add: [SYS_PTRACE]`, or `kubectl debug -it POD --target=CONTAINER \
         --profile=general`); see docs/containers.md."
            .to_string()
    } else if other_user && !a.cap_sys_ptrace {
        match a.target_uid() {
            Some(0) => "Run loopspy as the target's user, root: `sudo loopspy ...`.".to_string(),
            u => format!("Run loopspy as the target's user (`sudo -u '#{}' loopspy ...`) or as root.", u.unwrap_or(0)),
        }
    } else if other_group && !a.cap_sys_ptrace {
        format!(
            "Its group is not loopspy's: run loopspy with the target's user and group (`sudo -u '#{}' -g '#{}' loopspy \
             ...`) or as root.",
            a.target_uid().unwrap_or(a.our_uid),
            a.target_gids.map(|g| g[0]).unwrap_or(a.our_gid)
        )
    } else if a.target_not_dumpable && !a.cap_sys_ptrace {
        "The target is not dumpable (it changed its uid, or called prctl(PR_SET_DUMPABLE, 0)): only root or \
         CAP_SYS_PTRACE may read it: `sudo loopspy ...`."
            .to_string()
    } else if a.ptrace_scope == Some(2) && !a.cap_sys_ptrace {
        "ptrace_scope 2 lets only CAP_SYS_PTRACE read other processes: `sudo loopspy ...`, or `sudo setcap \
         cap_sys_ptrace+ep $(which loopspy)`."
            .to_string()
    } else if a.ptrace_scope == Some(1) && !a.cap_sys_ptrace {
        format!(
            "ptrace_scope 1 lets a process read only its descendants: start the program through loopspy (`loopspy \
             record -- python3 app.py`), or grant CAP_SYS_PTRACE (`sudo setcap cap_sys_ptrace+ep $(which loopspy)`), \
             or run as root; `sudo sysctl kernel.yama.ptrace_scope=0` lifts it for every process of the same user \
             (not {pid} only)."
        )
    } else if a.seccomp_filter {
        "The seccomp filter loopspy runs under may refuse process_vm_readv (Docker's default profile does unless the \
         container has SYS_PTRACE: `docker run --cap-add SYS_PTRACE`, or `kubectl debug --profile=general`); run \
         loopspy where that call is allowed; see docs/containers.md."
            .to_string()
    } else {
        "Something else refused it (an LSM such as AppArmor or SELinux, or the target's user namespace): run loopspy \
         where the target's own debuggers may run; see docs/containers.md."
            .to_string()
    };
    format!("{facts}\n  {cure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_a_distinct_exit_code_and_kind() {
        let all = [
            Failure::NoSuchProcess { pid: 1 },
            Failure::PermissionDenied { pid: 1, detail: String::new(), access: None },
            Failure::NotPython { pid: 1, exe: None, detail: String::new() },
            Failure::UnsupportedPython { pid: 1, version: "3.7".into(), detail: String::new(), supported: "3.8 to 3.15".into() },
            Failure::NoEventLoop { pid: 1, threads: vec![], below: vec![] },
            Failure::TargetExited { pid: 1 },
            Failure::SpawnFailed { program: "x".into(), detail: String::new() },
            Failure::OutputFailed { path: "x".into(), detail: String::new() },
            Failure::Unreadable { pid: 1, detail: String::new() },
            Failure::UnsupportedLoop { pid: 1, class: "QEventLoop".into() },
            Failure::TargetStopped { pid: 1 },
            Failure::Signal { signal: 2 },
        ];
        assert_eq!(Failure::Usage { detail: String::new() }.exit_code(), exit::USAGE);
        let mut codes: Vec<i32> = all.iter().map(|f| f.exit_code()).collect();
        let mut kinds: Vec<&str> = all.iter().map(|f| f.kind()).collect();
        codes.sort();
        codes.dedup();
        kinds.sort();
        kinds.dedup();
        assert_eq!(codes.len(), all.len());
        assert_eq!(kinds.len(), all.len());
        assert!(!codes.contains(&exit::OK) && !codes.contains(&exit::USAGE) && !codes.contains(&exit::INTERNAL));
    }

    #[test]
    fn permission_message_explains_the_ways_out() {
        let text = Failure::PermissionDenied { pid: 7, detail: "EPERM".into(), access: None }.to_string();
        for needle in ["ptrace_scope", "CAP_SYS_PTRACE", "target's user", "kubectl debug", "--profile=general"] {
            assert!(text.contains(needle), "missing {needle}: {text}");
        }
        let base = Access {
            our_uid: 1000,
            our_gid: 1000,
            target_uids: Some([1000; 3]),
            target_gids: Some([1000; 3]),
            ptrace_scope: Some(1),
            cap_sys_ptrace: false,
            target_not_dumpable: false,
            seccomp_filter: false,
        };
        let cure = |a: Access| permission_advice(7, &a).lines().nth(1).unwrap_or("").trim().to_string();
        assert!(cure(base.clone()).starts_with("ptrace_scope 1 lets a process read only its descendants"));
        assert_eq!(
            cure(Access { target_uids: Some([0; 3]), ..base.clone() }),
            "Run loopspy as the target's user, root: `sudo loopspy ...`."
        );
        assert_eq!(
            cure(Access { target_uids: Some([33, 33, 33]), ..base.clone() }),
            "Run loopspy as the target's user (`sudo -u '#33' loopspy ...`) or as root."
        );
        // A set-uid target: its effective uid is not ours.
        assert!(cure(Access { target_uids: Some([1000, 0, 0]), ..base.clone() }).starts_with("Run loopspy as the target's user"));
        assert!(cure(Access { target_gids: Some([1000, 5, 5]), ..base.clone() }).contains("-g '#1000'"));
        assert!(cure(Access { our_uid: 0, target_uids: Some([0; 3]), ..base.clone() }).contains("SYS_PTRACE capability"));
        assert!(cure(Access { target_not_dumpable: true, ptrace_scope: Some(0), ..base.clone() }).starts_with("The target is not dumpable"));
        assert!(cure(Access { ptrace_scope: Some(3), ..base.clone() }).contains("reboots"));
        assert!(cure(Access { ptrace_scope: Some(2), ..base.clone() }).starts_with("ptrace_scope 2"));
        assert!(cure(Access { ptrace_scope: None, seccomp_filter: true, ..base.clone() }).starts_with("The seccomp filter"));
        assert!(cure(Access { ptrace_scope: None, ..base.clone() }).starts_with("Something else refused it"));
        // With CAP_SYS_PTRACE, another user is no reason.
        assert!(cure(Access { cap_sys_ptrace: true, target_uids: Some([0; 3]), ptrace_scope: None, ..base.clone() })
            .starts_with("Something else"));
        let text = permission_advice(7, &Access { target_uids: Some([1000, 0, 0]), target_not_dumpable: true, ..base });
        assert_eq!(
            text.lines().next().unwrap(),
            "process 7 runs as uid 1000 (effective 0, saved 0) gid 1000, loopspy runs as uid 1000 gid 1000 without \
             CAP_SYS_PTRACE, kernel.yama.ptrace_scope is 1, process 7 is not dumpable."
        );
    }
}
