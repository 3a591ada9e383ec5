//! `loopspy dump`: attach (or start the program), look once, print. With `--subprocesses`,
//! the same for the process and each descendant that runs an event loop.

use std::io::Write;
use std::time::Duration;

use crate::base::error::{Failure, ProcessBrief};
use crate::capture::snapshot::{LookOptions, Looker, ProcessView};
use crate::cli::config::{DumpConfig, TargetSpec};
use crate::output::dump::{self, ProcessFacts};
use crate::process::procfs;
use crate::python::target::{AttachOptions, Target};

/// With `--subprocesses -- PROGRAM`: once a loop runs, how long the program's tree must stay
/// unchanged before it is looked at (workers start side by side).
const SETTLE: Duration = Duration::from_secs(1);

pub fn run(args: &DumpConfig) -> Result<(), Failure> {
    if args.subprocesses {
        return run_tree(args);
    }
    let options = AttachOptions { blocking: args.blocking };
    let stop = super::stop_flag();
    let (mut target, spawned) = super::acquire(&args.target, options, &stop)?;

    let options = LookOptions { tasks: args.max_tasks };
    let view = Looker::with_options(options).look(&mut target)?;
    if view.loops.is_empty() {
        return Err(super::with_descendants_hint(Failure::NoEventLoop { pid: target.pid, threads: view.threads, below: Vec::new() }));
    }
    let report = dump::report(facts(&target, args.full_argv), &view);
    let text = if args.json {
        serde_json::to_string_pretty(&report).expect("report serialises") + "\n"
    } else {
        dump::render_text(&report, args.tree)
    };
    print(&text)?;
    // Workers the program (or the PID) has that run loops too: say so.
    let root = match (&spawned, &args.target) {
        (Some(s), _) => s.pid(),
        (None, TargetSpec::Pid(pid)) => *pid,
        (None, _) => target.pid,
    };
    if let Some(hint) = super::hint_text(target.pid, &super::loops_elsewhere(root, target.pid)) {
        eprintln_safe(&hint);
    }

    if let (Some(_), Some(program)) = (&spawned, args.target.kept_program()) {
        eprintln_safe(&format!("loopspy: left {program} running (PID {})", target.pid));
    }
    Ok(())
}

fn facts(target: &Target, full_argv: bool) -> ProcessFacts {
    ProcessFacts {
        pid: target.pid,
        command: crate::output::argv::shown_list(&procfs::cmdline(target.pid).unwrap_or_default(), full_argv),
        version: target.version_text.clone(),
        executable: procfs::exe(target.pid).ok().map(|p| p.display().to_string()),
        layout: target.layout_check.clone(),
    }
}

/// `--subprocesses`: every process of the tree that runs a loop, one after the other.
fn run_tree(args: &DumpConfig) -> Result<(), Failure> {
    let options = AttachOptions { blocking: args.blocking };
    let stop = super::stop_flag();
    let (fleet, found, spawned) = super::acquire_fleet(&args.target, options, &stop, Some(SETTLE), args.full_argv)?;
    let root = fleet.root;
    let show = |argv: &[String]| crate::output::argv::shown_list(argv, args.full_argv);
    let mut looked: Vec<(Option<i32>, ProcessFacts, ProcessView)> = Vec::new();
    let mut gone: Vec<ProcessBrief> = Vec::new();
    for mut f in found {
        let brief = |why: String| ProcessBrief {
            pid: f.id.pid,
            parent_pid: f.parent_pid,
            command: show(&procfs::cmdline(f.id.pid).unwrap_or_default()),
            why,
        };
        // One process that cannot be read (it exited, its loop ended) does not stop the others.
        match Looker::with_options(LookOptions { tasks: args.max_tasks }).look(&mut f.target) {
            Ok(view) if !view.loops.is_empty() => looked.push((f.parent_pid, facts(&f.target, args.full_argv), view)),
            Ok(_) => gone.push(brief("Python, its event loop ended while it was looked at".into())),
            Err(failure) => gone.push(brief(format!("could not be read: {}", failure.kind().replace('_', " ")))),
        }
    }
    let mut others = fleet.others(&show);
    others.extend(gone);
    if looked.is_empty() {
        return Err(Failure::NoEventLoopInTree { pid: root, processes: others });
    }
    let command = show(&procfs::cmdline(root).unwrap_or_default());
    let report = dump::fleet_report(root, command, looked.iter().map(|(p, facts, view)| (*p, facts.clone(), view)).collect(), others);
    let text = if args.json {
        serde_json::to_string_pretty(&report).expect("report serialises") + "\n"
    } else {
        dump::render_fleet_text(&report, args.tree)
    };
    print(&text)?;
    if let (Some(_), Some(program)) = (&spawned, args.target.kept_program()) {
        eprintln_safe(&format!("loopspy: left {program} running (PID {root})"));
    }
    Ok(())
}

fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .map_err(|e| Failure::OutputFailed { path: "standard output".into(), detail: e.to_string() })
}

/// A line on standard error; never fails.
fn eprintln_safe(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
