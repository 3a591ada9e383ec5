//! Stopping on a signal: SIGINT (Ctrl-C), SIGTERM and SIGHUP (a dropped SSH connection, a
//! killed tmux session) all ask loopspy to stop cleanly: write what it has, then exit with
//! 128 + the signal's number.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Raised by the first stopping signal; says which.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicUsize>);

impl Stop {
    /// A flag that SIGINT, SIGTERM and SIGHUP raise (they no longer end the process).
    pub fn on_signals() -> Stop {
        let stop = Stop::default();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
            let _ = signal_hook::flag::register_usize(sig, stop.0.clone(), sig as usize);
        }
        stop
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }

    /// The signal that raised it.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n as i32),
        }
    }

    pub fn raise(&self, signal: i32) {
        self.0.store(signal as usize, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_raises_it_and_says_which() {
        let stop = Stop::on_signals();
        assert!(!stop.is_set());
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(stop.signal(), Some(1));
        assert!(stop.is_set());
    }
}
