//! What a loop is doing, from the loop thread's Python stack, the system call it sits in and
//! its scheduler state: idle in `selector.select`, running a callback, in its own bookkeeping,
//! or stopped (SIGSTOP, a debugger).
//!
//! Being off-CPU does not mean idle: a callback blocked in `time.sleep`, a socket read or a
//! lock blocks the loop while its thread sleeps. So the frames decide, and the system call
//! confirms and explains.

use serde::Serialize;

use crate::asyncio::eventloop::LoopKind;
use crate::process::procfs::{syscall_name, Syscall};
use crate::python::frames::StackFrame;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopState {
    /// Waiting for I/O or the next timer in `selector.select` (epoll): nothing to do.
    Idle,
    /// Running a callback or a task step: the loop cannot serve anything else meanwhile.
    Callback,
    /// In the loop's own code between callbacks (`_run_once` bookkeeping, uvloop's C code).
    Loop,
    /// Could not tell.
    Unknown,
    /// The whole process is stopped (SIGSTOP, Ctrl-Z, a debugger): nothing runs.
    Stopped,
}

impl LoopState {
    /// Every state, in the order capture files number them.
    pub const ALL: [LoopState; 5] = [LoopState::Idle, LoopState::Callback, LoopState::Loop, LoopState::Unknown, LoopState::Stopped];

    pub fn describe(self, kind: LoopKind) -> &'static str {
        match self {
            LoopState::Idle if kind == LoopKind::Uvloop => "idle in epoll (libuv)",
            LoopState::Idle => "idle in selector.select",
            LoopState::Callback => "running a callback",
            LoopState::Loop => "in event-loop bookkeeping",
            LoopState::Unknown => "unknown",
            LoopState::Stopped => "stopped (the process is stopped: SIGSTOP, Ctrl-Z or a debugger)",
        }
    }
}

/// A scheduler state from `/proc/.../stat` that means the thread is stopped (not by us).
pub fn stopped(sched_state: Option<char>) -> bool {
    sched_state == Some('T')
}

/// System calls a loop waits in when it has nothing to do, by selector class.
pub fn selector_syscalls(selector: Option<&str>) -> &'static [&'static str] {
    match selector {
        Some("EpollSelector") => &["epoll_wait", "epoll_pwait", "epoll_pwait2"],
        Some("PollSelector") => &["poll", "ppoll"],
        Some("SelectSelector") => &["select", "pselect6"],
        Some("DevpollSelector") | Some("KqueueSelector") => &[],
        // uvloop (libuv) and unknown selectors on Linux: the epoll family.
        _ => &["epoll_wait", "epoll_pwait", "epoll_pwait2"],
    }
}

/// Is the thread blocked in one of the selector's own wait calls?
pub fn in_selector_syscall(syscall: Option<Syscall>, selector: Option<&str>) -> bool {
    match syscall {
        Some(Syscall::In(nr)) => syscall_name(nr).is_some_and(|n| selector_syscalls(selector).contains(&n)),
        _ => false,
    }
}

fn base_name(function: &str) -> &str {
    function.rsplit('.').next().unwrap_or(function)
}

fn in_asyncio(file: &str, module: &str) -> bool {
    file.ends_with(module) && file[..file.len() - module.len()].ends_with("asyncio/")
}

/// asyncio's loops: `Some((state, loop_at))` where `frames[loop_at..]` are the loop's own
/// frames: idle when the innermost frame is the selector's `select`; a callback when
/// `Handle._run` is on the stack (the frames above it are the callback's); the loop's own code
/// otherwise. `None` when the stack does not hold `_run_once` or `run_forever` (a stack cut
/// short, or not a loop's).
pub fn selector_state(frames: &[StackFrame]) -> Option<(LoopState, usize)> {
    let runs = frames.iter().rposition(|f| matches!(base_name(&f.function), "_run_once" | "run_forever"))?;
    let top = &frames[0];
    if base_name(&top.function) == "select" && top.file.ends_with("selectors.py") {
        return Some((LoopState::Idle, 0));
    }
    let handle_run = frames[..runs].iter().rposition(|f| base_name(&f.function) == "_run" && in_asyncio(&f.file, "events.py"));
    Some(match handle_run {
        Some(h) => (LoopState::Callback, h),
        // Between callbacks: every frame is the loop's own.
        None => (LoopState::Loop, 0),
    })
}

/// uvloop runs in C: `anchor` is the index of the Python frame that entered its run (`None`:
/// not known). Nothing above it and the thread in epoll: idle; nothing above it otherwise:
/// uvloop's own C code; frames above it: a callback.
pub fn uvloop_state(anchor: Option<usize>, idle_syscall: bool) -> LoopState {
    match anchor {
        Some(0) if idle_syscall => LoopState::Idle,
        Some(0) => LoopState::Loop,
        Some(_) => LoopState::Callback,
        None if idle_syscall => LoopState::Idle,
        None => LoopState::Callback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(function: &str, file: &str) -> StackFrame {
        StackFrame { function: function.into(), file: file.into(), line: 1 }
    }

    #[test]
    fn selector_states_from_frames() {
        let base = [
            f("BaseEventLoop._run_once", "/usr/lib/python3.12/asyncio/base_events.py"),
            f("BaseEventLoop.run_forever", "/usr/lib/python3.12/asyncio/base_events.py"),
            f("<module>", "/app/main.py"),
        ];
        let with = |top: &[StackFrame]| -> Vec<StackFrame> { top.iter().cloned().chain(base.iter().cloned()).collect() };
        let idle = with(&[f("EpollSelector.select", "/usr/lib/python3.12/selectors.py")]);
        assert_eq!(selector_state(&idle), Some((LoopState::Idle, 0)));
        let old = with(&[f("select", "/x/lib/python3.8/selectors.py")]);
        assert_eq!(selector_state(&old), Some((LoopState::Idle, 0)));
        // Blocked in time.sleep inside a callback: asleep in the kernel, but busy for the loop.
        let cb = with(&[f("block", "/app/main.py"), f("Handle._run", "/usr/lib/python3.12/asyncio/events.py")]);
        assert_eq!(selector_state(&cb), Some((LoopState::Callback, 1)));
        assert_eq!(selector_state(&with(&[])).map(|s| s.0), Some(LoopState::Loop));
        // A stack cut at a generator: no loop frames.
        assert_eq!(selector_state(&[f("cpu.<locals>.<genexpr>", "/app/main.py")]), None);
    }

    #[test]
    fn uvloop_states() {
        assert_eq!(uvloop_state(Some(0), true), LoopState::Idle);
        assert_eq!(uvloop_state(Some(0), false), LoopState::Loop);
        assert_eq!(uvloop_state(Some(2), true), LoopState::Callback, "a callback waiting in its own epoll");
        assert_eq!(uvloop_state(None, false), LoopState::Callback);
    }

    #[test]
    fn selector_syscall_families() {
        let epoll = Some(Syscall::In(232));
        assert!(in_selector_syscall(epoll, Some("EpollSelector")));
        assert!(!in_selector_syscall(Some(Syscall::In(230)), Some("EpollSelector")));
        assert!(!in_selector_syscall(Some(Syscall::In(7)), Some("EpollSelector")));
        assert!(in_selector_syscall(Some(Syscall::In(7)), Some("PollSelector")));
        assert!(!in_selector_syscall(Some(Syscall::Running), Some("EpollSelector")));
    }
}
