//! `loopspy dump`: attach (or start the program), look once, print.

use std::io::Write;

use crate::base::error::Failure;
use crate::capture::snapshot::{LookOptions, Looker};
use crate::cli::config::DumpConfig;
use crate::output::dump::{self, ProcessFacts};
use crate::process::procfs;
use crate::python::target::AttachOptions;

pub fn run(args: &DumpConfig) -> Result<(), Failure> {
    let options = AttachOptions { blocking: args.blocking };
    let stop = super::stop_flag();
    let (mut target, spawned) = super::acquire(&args.target, options, &stop)?;

    let options = LookOptions { tasks: args.max_tasks };
    let view = Looker::with_options(options).look(&mut target)?;
    if view.loops.is_empty() {
        return Err(Failure::NoEventLoop { pid: target.pid, threads: view.threads });
    }
    let facts = ProcessFacts {
        pid: target.pid,
        command: crate::output::argv::shown_list(&procfs::cmdline(target.pid).unwrap_or_default(), args.full_argv),
        version: target.version_text.clone(),
        executable: procfs::exe(target.pid).ok().map(|p| p.display().to_string()),
        layout: target.layout_check.clone(),
    };
    let report = dump::report(facts, &view);
    let text = if args.json {
        serde_json::to_string_pretty(&report).expect("report serialises") + "\n"
    } else {
        dump::render_text(&report, args.tree)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .map_err(|e| Failure::OutputFailed { path: "standard output".into(), detail: e.to_string() })?;

    if let (Some(_), Some(program)) = (&spawned, args.target.kept_program()) {
        eprintln!("loopspy: left {program} running (PID {})", target.pid);
    }
    Ok(())
}
