//! `loopspy demo`: start the bundled demo app (an asyncio service that now and then blocks its
//! loop) with `python3` from PATH, and open `top` on it; the demo stops when you quit.

use crate::base::error::Failure;
use crate::cli::{DemoArgs, SpawnArgs, TargetArgs, TopArgs};
use crate::process::spawn::Spawned;
use crate::python::target::AttachOptions;

/// The demo app ships inside the binary, so `loopspy demo` works wherever loopspy is.
const DEMO_APP: &str = include_str!("../../examples/demo_app.py");

pub fn run(args: &DemoArgs) -> Result<(), Failure> {
    let dir = std::env::temp_dir().join(format!("loopspy-demo-{}", std::process::id()));
    let script = dir.join("demo_app.py");
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&script, DEMO_APP))
        .map_err(|e| Failure::OutputFailed { path: script.display().to_string(), detail: e.to_string() })?;
    let mut command = vec![args.python.clone(), "demo_app.py".to_string()];
    if args.uvloop {
        command.push("--uvloop".into());
    }
    let target_args = TargetArgs { pid: None, command: command.clone() };
    let spawn = SpawnArgs { timeout: 20.0, keep: false, kill: true };
    let stop = super::stop_flag();
    // Run it in its own directory, so its frames read `demo_app.py:42`.
    let started = Spawned::start_in(&command, Some(&dir), false).and_then(|mut child| {
        let target = child.wait_for_loop(spawn.timeout(), AttachOptions::default(), &stop)?;
        Ok((target, child))
    });
    let result = started.and_then(|(target, spawned)| {
        let top = TopArgs {
            target: target_args.clone(),
            spawn: spawn.clone(),
            rate: args.rate,
            threshold: args.threshold,
            blocking: false,
            duration: args.duration,
            plain: args.plain,
            full_argv: false,
        };
        let r = super::top::run_on(target, &top, &stop);
        drop(spawned); // stops the demo
        r
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}
