//! One module per subcommand, plus what they share: getting hold of the target.

pub mod demo;
pub mod dump;
pub mod record;
pub mod top;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::cli::{SpawnArgs, TargetArgs};
use crate::error::Failure;
use crate::spawn::Spawned;
use crate::target::{AttachOptions, Target};

/// A flag raised by Ctrl-C (SIGINT) or SIGTERM.
pub fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    stop
}

/// Attach to `--pid`, or start the program and wait for its loop.
pub fn acquire(
    target: &TargetArgs,
    spawn: &SpawnArgs,
    options: AttachOptions,
    stop: &AtomicBool,
) -> Result<(Target, Option<Spawned>), Failure> {
    match target.pid {
        Some(pid) => Ok((Target::attach(pid, options)?, None)),
        None => {
            let mut child = Spawned::start(&target.command)?;
            let t = child.wait_for_loop(spawn.timeout(), options, stop)?;
            if spawn.keep {
                child.keep_running();
            }
            Ok((t, Some(child)))
        }
    }
}
