//! One module per subcommand, plus what they share: getting hold of the target.

pub mod demo;
pub mod dump;
pub mod record;
pub mod render;
pub mod top;

use crate::base::error::Failure;
use crate::cli::{SpawnArgs, TargetArgs};
use crate::process::signals::Stop;
use crate::process::spawn::Spawned;
use crate::python::target::{AttachOptions, Target};

/// A flag raised by Ctrl-C (SIGINT), SIGTERM or SIGHUP.
pub fn stop_flag() -> Stop {
    Stop::on_signals()
}

/// Attach to `--pid`, or start the program and wait for its loop.
pub fn acquire(target: &TargetArgs, spawn: &SpawnArgs, options: AttachOptions, stop: &Stop) -> Result<(Target, Option<Spawned>), Failure> {
    match target.pid {
        Some(pid) => Ok((Target::attach(pid, options)?, None)),
        None => {
            let mut child = Spawned::start(&target.command, spawn.keep)?;
            let t = child.wait_for_loop(spawn.timeout(), options, stop)?;
            if spawn.keep {
                child.keep_running();
            }
            Ok((t, Some(child)))
        }
    }
}
