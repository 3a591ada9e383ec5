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
    /// Stopped by Ctrl-C / SIGINT (128 + 2, the shell convention).
    pub const INTERRUPTED: i32 = 130;
}

/// A Python thread seen while looking for event loops (for the "no event loop" message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadBrief {
    pub native_id: Option<i32>,
    pub name: Option<String>,
    /// Innermost Python function, when known.
    pub top_frame: Option<String>,
}

/// A failure the user can act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    NoSuchProcess { pid: i32 },
    PermissionDenied { pid: i32, detail: String },
    NotPython { pid: i32, exe: Option<String>, detail: String },
    UnsupportedPython { pid: i32, version: String, detail: String },
    NoEventLoop { pid: i32, threads: Vec<ThreadBrief> },
    TargetExited { pid: i32 },
    SpawnFailed { program: String, detail: String },
    OutputFailed { path: String, detail: String },
    Unreadable { pid: i32, detail: String },
    UnsupportedLoop { pid: i32, class: String },
    Interrupted,
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::NoSuchProcess { .. } => exit::NO_SUCH_PROCESS,
            Failure::PermissionDenied { .. } => exit::PERMISSION_DENIED,
            Failure::NotPython { .. } => exit::NOT_PYTHON,
            Failure::UnsupportedPython { .. } => exit::UNSUPPORTED_PYTHON,
            Failure::NoEventLoop { .. } => exit::NO_EVENT_LOOP,
            Failure::TargetExited { .. } => exit::TARGET_EXITED,
            Failure::SpawnFailed { .. } => exit::SPAWN_FAILED,
            Failure::OutputFailed { .. } => exit::OUTPUT_FAILED,
            Failure::Unreadable { .. } => exit::UNREADABLE,
            Failure::UnsupportedLoop { .. } => exit::UNSUPPORTED_LOOP,
            Failure::Interrupted => exit::INTERRUPTED,
        }
    }

    /// A short machine-readable name (used in `--json` error output).
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::NoSuchProcess { .. } => "no_such_process",
            Failure::PermissionDenied { .. } => "permission_denied",
            Failure::NotPython { .. } => "not_python",
            Failure::UnsupportedPython { .. } => "unsupported_python",
            Failure::NoEventLoop { .. } => "no_event_loop",
            Failure::TargetExited { .. } => "target_exited",
            Failure::SpawnFailed { .. } => "spawn_failed",
            Failure::OutputFailed { .. } => "output_failed",
            Failure::Unreadable { .. } => "unreadable",
            Failure::UnsupportedLoop { .. } => "unsupported_loop",
            Failure::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Details, names and paths may come from the target (or the user): shown escaped.
        let e = |s: &str| crate::escape::terminal(s).into_owned();
        match self {
            Failure::NoSuchProcess { pid } => write!(
                f,
                "no process with PID {pid}.\n  Check the PID (`pgrep -af python`). Inside a container, use the PID as \
                 the container sees it, and run loopspy in the same PID namespace (`kubectl exec` into the pod, or \
                 `kubectl debug --target=<container>`)."
            ),
            Failure::PermissionDenied { pid, detail } => write!(
                f,
                "permission denied reading process {pid} ({}).\n  loopspy reads the target's memory, which \
                 needs the same access as a debugger (ptrace):\n  - run loopspy as the same user as the target (or \
                 as root);\n  - if /proc/sys/kernel/yama/ptrace_scope is 1, only parents may read their children: run \
                 as root, grant CAP_SYS_PTRACE (`sudo setcap cap_sys_ptrace+ep $(which loopspy)`), or set \
                 ptrace_scope to 0;\n  - in a container, add the SYS_PTRACE capability; on Kubernetes use an \
                 ephemeral debug container: `kubectl debug -it <pod> --image=<image-with-loopspy> \
                 --target=<container> --profile=general`.",
                e(detail)
            ),
            Failure::NotPython { pid, exe, detail } => write!(
                f,
                "process {pid}{} does not look like a CPython interpreter ({}).\n  Point loopspy at the Python \
                 process itself, not at a shell or launcher: `pgrep -af python`, or let loopspy start it: `loopspy dump \
                 -- python3 app.py`.",
                exe.as_ref().map(|x| format!(" ({})", e(x))).unwrap_or_default(),
                e(detail)
            ),
            Failure::UnsupportedPython { pid, version, detail } => write!(
                f,
                "process {pid} runs Python {}, which loopspy cannot read: {}.\n  Supported: CPython \
                 {} to {}, standard (GIL) builds, x86_64 Linux.",
                e(version),
                e(detail),
                crate::layout::SUPPORTED[0],
                crate::layout::SUPPORTED[crate::layout::SUPPORTED.len() - 1],
            ),
            Failure::NoEventLoop { pid, threads } => {
                write!(f, "process {pid} has no running asyncio event loop (in {} Python thread(s)):", threads.len())?;
                for t in threads {
                    write!(
                        f,
                        "\n  - thread {} {}: {}",
                        t.native_id.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                        t.name.as_deref().map(|n| format!("\"{}\"", e(n))).unwrap_or_else(|| "(unnamed)".into()),
                        t.top_frame.as_deref().map(e).unwrap_or_else(|| "no Python frames".into()),
                    )?;
                }
                write!(
                    f,
                    "\n  A loop counts once `asyncio.run()`, `loop.run_forever()` or `run_until_complete()` is running \
                     in some thread. If the program is still starting, try again in a moment."
                )
            }
            Failure::TargetExited { pid } => write!(f, "process {pid} exited while loopspy was reading it."),
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
            Failure::Interrupted => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_a_distinct_exit_code_and_kind() {
        let all = [
            Failure::NoSuchProcess { pid: 1 },
            Failure::PermissionDenied { pid: 1, detail: String::new() },
            Failure::NotPython { pid: 1, exe: None, detail: String::new() },
            Failure::UnsupportedPython { pid: 1, version: "3.7".into(), detail: String::new() },
            Failure::NoEventLoop { pid: 1, threads: vec![] },
            Failure::TargetExited { pid: 1 },
            Failure::SpawnFailed { program: "x".into(), detail: String::new() },
            Failure::OutputFailed { path: "x".into(), detail: String::new() },
            Failure::Unreadable { pid: 1, detail: String::new() },
            Failure::UnsupportedLoop { pid: 1, class: "QEventLoop".into() },
            Failure::Interrupted,
        ];
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
        let text = Failure::PermissionDenied { pid: 7, detail: "EPERM".into() }.to_string();
        for needle in ["ptrace_scope", "CAP_SYS_PTRACE", "same user", "kubectl debug", "--profile=general"] {
            assert!(text.contains(needle), "missing {needle}: {text}");
        }
    }
}
