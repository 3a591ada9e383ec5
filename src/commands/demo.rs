//! `loopspy demo`: start the bundled demo app (an asyncio service that now and then blocks its
//! loop) with `python3` from PATH, and open `top` on it; the demo stops when you quit.

use std::time::Duration;

use crate::base::error::Failure;
use crate::cli::config::{DemoConfig, TargetSpec, TopConfig};
use crate::process::spawn::Spawned;
use crate::python::target::AttachOptions;

/// The demo app ships inside the binary, so `loopspy demo` works wherever loopspy is.
const DEMO_APP: &str = include_str!("../../examples/demo_app.py");

/// How long the demo app gets to start its loop (a cold Python on a slow machine).
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub fn run(args: &DemoConfig) -> Result<(), Failure> {
    // A directory of its own, created new (mkdtemp: never one that already existed, never
    // through a symlink), removed when the demo ends.
    let dir = nix::unistd::mkdtemp(&std::env::temp_dir().join("loopspy-demo-XXXXXX"))
        .map_err(|e| Failure::OutputFailed { path: std::env::temp_dir().display().to_string(), detail: e.to_string() })?;
    let script = dir.join("demo_app.py");
    let written =
        std::fs::write(&script, DEMO_APP).map_err(|e| Failure::OutputFailed { path: script.display().to_string(), detail: e.to_string() });
    let result = written.and_then(|_| run_in(args, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(args: &DemoConfig, dir: &std::path::Path) -> Result<(), Failure> {
    let mut command = vec![args.python.clone(), "demo_app.py".to_string()];
    if args.uvloop {
        command.push("--uvloop".into());
    }
    let stop = super::stop_flag();
    // Run it in its own directory, so its frames read `demo_app.py:42`.
    let mut child = Spawned::start_in(&command, Some(dir), false)?;
    let target = crate::capture::launch::wait_for_loop(&mut child, START_TIMEOUT, AttachOptions::default(), &stop)?;
    let top = TopConfig {
        target: TargetSpec::Spawn { argv: command, timeout: START_TIMEOUT, keep: false },
        rate_hz: args.rate_hz,
        threshold: args.threshold,
        blocking: false,
        duration: args.duration,
        plain: args.plain,
        full_argv: false,
        subprocesses: false,
    };
    let r = super::top::run_on(target, &top, &stop);
    drop(child); // stops the demo
    r
}
