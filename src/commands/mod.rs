//! One module per subcommand, plus what they share: getting hold of the target.

pub mod demo;
pub mod dump;
pub mod record;
pub mod render;
pub mod serve;
pub mod top;

use crate::base::error::Failure;
use crate::cli::config::TargetSpec;
use crate::process::signals::Stop;
use crate::process::spawn::Spawned;
use crate::python::target::{AttachOptions, Target};

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
