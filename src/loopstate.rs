//! Is the loop idle in `selector.select`, running a callback, or in its own bookkeeping?
//!
//! A pure function of the loop thread's Python stack and the system call it sits in. Being
//! off-CPU does not mean idle: a callback blocked in `time.sleep`, a socket read or a lock
//! blocks the loop while its thread sleeps. So the top Python frame decides, and the syscall
//! confirms and explains.

use serde::Serialize;

use crate::eventloop::LoopKind;
use crate::procfs::{syscall_name, Syscall};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopState {
    /// Waiting for I/O or the next timer in `selector.select` (epoll): nothing to do.
    Idle,
    /// Running a callback or a task step: the loop cannot serve anything else meanwhile.
    Callback,
    /// In the loop's own code between callbacks (`_run_once` bookkeeping).
    Loop,
    /// Could not tell (no Python frames, unreadable stack).
    Unknown,
}

impl LoopState {
    pub fn describe(self, kind: LoopKind) -> &'static str {
        match self {
            LoopState::Idle if kind == LoopKind::Uvloop => "idle in epoll (libuv)",
            LoopState::Idle => "idle in selector.select",
            LoopState::Callback => "running a callback",
            LoopState::Loop => "in event-loop bookkeeping",
            LoopState::Unknown => "unknown",
        }
    }
}

/// A Python frame as the classifier needs it.
#[derive(Debug, Clone, Copy)]
pub struct FrameName<'a> {
    pub function: &'a str,
    pub file: &'a str,
}

fn base_name(function: &str) -> &str {
    function.rsplit('.').next().unwrap_or(function)
}

fn in_asyncio(file: &str, module: &str) -> bool {
    file.ends_with(&format!("asyncio/{module}"))
}

/// The top frame is the selector's `select` (py-spy's own idle test, made strict).
fn in_selector_select(f: &FrameName) -> bool {
    base_name(f.function) == "select" && f.file.ends_with("selectors.py")
}

fn is_handle_run(f: &FrameName) -> bool {
    base_name(f.function) == "_run" && in_asyncio(f.file, "events.py")
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

/// Classify a loop thread. `frames` are innermost first.
pub fn classify(kind: LoopKind, frames: &[FrameName], syscall: Option<Syscall>, selector: Option<&str>) -> LoopState {
    match kind {
        LoopKind::Selector => {
            let Some(top) = frames.first() else { return LoopState::Unknown };
            if in_selector_select(top) {
                return LoopState::Idle;
            }
            if frames.iter().any(is_handle_run) {
                return LoopState::Callback;
            }
            if in_asyncio(top.file, "base_events.py") || in_asyncio(top.file, "events.py") {
                return LoopState::Loop;
            }
            LoopState::Unknown
        }
        LoopKind::Uvloop => {
            // uvloop runs in C: no Python frame marks its select. The thread waiting in
            // epoll is idle; anything else is the loop running callbacks (uvloop's own work
            // between callbacks is too short to tell apart and is counted with them).
            match syscall {
                _ if in_selector_syscall(syscall, selector) => LoopState::Idle,
                None if frames.is_empty() => LoopState::Unknown,
                _ => LoopState::Callback,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f<'a>(function: &'a str, file: &'a str) -> FrameName<'a> {
        FrameName { function, file }
    }

    const EPOLL: Option<Syscall> = Some(Syscall::In(232));
    const SLEEP: Option<Syscall> = Some(Syscall::In(230));

    #[test]
    fn selector_loop_states() {
        let idle = [
            f("EpollSelector.select", "/usr/lib/python3.12/selectors.py"),
            f("BaseEventLoop._run_once", "/usr/lib/python3.12/asyncio/base_events.py"),
        ];
        assert_eq!(classify(LoopKind::Selector, &idle, EPOLL, Some("EpollSelector")), LoopState::Idle);
        let old = [f("select", "/x/lib/python3.8/selectors.py"), f("_run_once", "/x/lib/python3.8/asyncio/base_events.py")];
        assert_eq!(classify(LoopKind::Selector, &old, EPOLL, Some("EpollSelector")), LoopState::Idle);

        // Blocked in time.sleep inside a callback: asleep in the kernel, but busy for the loop.
        let blocked = [
            f("block", "/app/blocked.py"),
            f("Handle._run", "/usr/lib/python3.12/asyncio/events.py"),
            f("BaseEventLoop._run_once", "/usr/lib/python3.12/asyncio/base_events.py"),
        ];
        assert_eq!(classify(LoopKind::Selector, &blocked, SLEEP, Some("EpollSelector")), LoopState::Callback);
        // A callback that itself waits in epoll (a nested selector) is still a callback.
        assert_eq!(classify(LoopKind::Selector, &blocked, EPOLL, Some("EpollSelector")), LoopState::Callback);

        let bookkeeping = [f("BaseEventLoop._run_once", "/usr/lib/python3.12/asyncio/base_events.py")];
        assert_eq!(classify(LoopKind::Selector, &bookkeeping, Some(Syscall::Running), None), LoopState::Loop);
        assert_eq!(classify(LoopKind::Selector, &[], EPOLL, None), LoopState::Unknown);
    }

    #[test]
    fn uvloop_states() {
        let runner = f("Runner.run", "/usr/lib/python3.12/asyncio/runners.py");
        let idle = [runner, f("main", "/app/main.py")];
        assert_eq!(classify(LoopKind::Uvloop, &idle, Some(Syscall::In(281)), None), LoopState::Idle);
        let busy = [f("handler", "/app/main.py"), runner];
        assert_eq!(classify(LoopKind::Uvloop, &busy, SLEEP, None), LoopState::Callback);
        assert_eq!(classify(LoopKind::Uvloop, &busy, Some(Syscall::Running), None), LoopState::Callback);
        assert_eq!(classify(LoopKind::Uvloop, &[], None, None), LoopState::Unknown);
    }

    #[test]
    fn selector_syscall_families() {
        assert!(in_selector_syscall(EPOLL, Some("EpollSelector")));
        assert!(!in_selector_syscall(SLEEP, Some("EpollSelector")));
        assert!(!in_selector_syscall(Some(Syscall::In(7)), Some("EpollSelector")));
        assert!(in_selector_syscall(Some(Syscall::In(7)), Some("PollSelector")));
        assert!(!in_selector_syscall(Some(Syscall::Running), Some("EpollSelector")));
    }
}
