//! What a command line resolves to (ripgrep's "high-level arguments"): one plain struct per
//! command, with the choices made (a PID or a program to start, durations as durations,
//! thresholds in seconds). Commands take these, never clap's structs.

use std::path::PathBuf;
use std::time::Duration;

use super::args::{Cli, Command, SpawnArgs, TargetArgs};
use crate::output::format::RecordFormat;

/// Which process to look at.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSpec {
    /// A running process.
    Pid(i32),
    /// A program to start; its event loop is waited for up to `timeout`. `keep`: leave it
    /// running when loopspy is done.
    Spawn { argv: Vec<String>, timeout: Duration, keep: bool },
}

impl TargetSpec {
    fn new(target: &TargetArgs, spawn: &SpawnArgs) -> TargetSpec {
        match target.pid {
            Some(pid) => TargetSpec::Pid(pid),
            None => TargetSpec::Spawn { argv: target.command.clone(), timeout: spawn.timeout(), keep: spawn.keep },
        }
    }

    /// A started program left running afterwards (`--keep`), as its command line.
    pub fn kept_program(&self) -> Option<String> {
        match self {
            TargetSpec::Spawn { argv, keep: true, .. } => Some(argv.join(" ")),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DumpConfig {
    pub target: TargetSpec,
    pub json: bool,
    pub blocking: bool,
    pub tree: bool,
    /// Tasks described per loop; `None`: tasks are not read.
    pub max_tasks: Option<usize>,
    pub full_argv: bool,
    /// The process and its descendants that run a loop.
    pub subprocesses: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordConfig {
    pub target: TargetSpec,
    /// As given; empty: the default name once the PID is known.
    pub outputs: Vec<PathBuf>,
    /// For outputs whose extension does not say.
    pub format: Option<RecordFormat>,
    pub rate_hz: f64,
    pub duration: Option<Duration>,
    /// Seconds.
    pub threshold: f64,
    pub blocking: bool,
    pub all_threads: bool,
    pub save: Option<PathBuf>,
    pub full_argv: bool,
    /// The process and its descendants that run a loop, in one recording.
    pub subprocesses: bool,
    /// The flame graph's view (`--focus`, `--hide-idle`).
    pub view: crate::output::flamegraph::View,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopConfig {
    pub target: TargetSpec,
    pub rate_hz: f64,
    /// Seconds.
    pub threshold: f64,
    pub blocking: bool,
    pub duration: Option<Duration>,
    /// One line per second even on a terminal.
    pub plain: bool,
    pub full_argv: bool,
    /// Every process of the tree that runs a loop (an overview of workers).
    pub subprocesses: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RenderConfig {
    pub capture: PathBuf,
    pub outputs: Vec<PathBuf>,
    pub format: Option<RecordFormat>,
    /// Seconds.
    pub threshold: f64,
    pub full_argv: bool,
    /// The flame graph's view (`--focus`, `--hide-idle`).
    pub view: crate::output::flamegraph::View,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    pub python: String,
    pub uvloop: bool,
    pub rate_hz: f64,
    /// Seconds.
    pub threshold: f64,
    pub duration: Option<Duration>,
    pub plain: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// The targets as given: PIDs, PID files, command-line patterns.
    pub targets: Vec<ServeTarget>,
    pub listen: std::net::SocketAddr,
    pub rate_hz: f64,
    /// Seconds.
    pub threshold: f64,
    /// Each process found and its descendants (`--subprocesses`).
    pub subprocesses: bool,
}

/// How `serve` finds a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeTarget {
    Pid(i32),
    /// The PID in this file, read again every few seconds.
    PidFile(PathBuf),
    /// Every process whose command line contains this, looked for again every few seconds.
    Match(String),
}

/// A resolved command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    Dump(DumpConfig),
    Record(RecordConfig),
    Top(TopConfig),
    Render(RenderConfig),
    Demo(DemoConfig),
    Serve(ServeConfig),
}

fn seconds(s: Option<f64>) -> Option<Duration> {
    s.map(Duration::from_secs_f64)
}

impl Invocation {
    pub fn from_cli(cli: Cli) -> Invocation {
        match cli.command {
            Command::Dump(a) => Invocation::Dump(DumpConfig {
                target: TargetSpec::new(&a.target, &a.spawn),
                json: a.json,
                blocking: a.blocking,
                tree: a.tree,
                max_tasks: (a.max_tasks > 0).then_some(a.max_tasks),
                full_argv: a.full_argv,
                subprocesses: a.subprocesses,
            }),
            Command::Record(a) => Invocation::Record(RecordConfig {
                target: TargetSpec::new(&a.target, &a.spawn),
                outputs: a.output,
                format: a.format,
                rate_hz: a.rate,
                duration: seconds(a.duration),
                threshold: a.threshold / 1e3,
                blocking: a.blocking,
                all_threads: a.all_threads,
                save: a.save,
                full_argv: a.full_argv,
                subprocesses: a.subprocesses,
                view: crate::output::flamegraph::View { focus: a.focus, hide_idle: a.hide_idle },
            }),
            Command::Top(a) => Invocation::Top(TopConfig {
                target: TargetSpec::new(&a.target, &a.spawn),
                rate_hz: a.rate,
                threshold: a.threshold / 1e3,
                blocking: a.blocking,
                duration: seconds(a.duration),
                plain: a.plain,
                full_argv: a.full_argv,
                subprocesses: a.subprocesses,
            }),
            Command::Render(a) => Invocation::Render(RenderConfig {
                capture: a.capture,
                outputs: a.output,
                format: a.format,
                threshold: a.threshold / 1e3,
                full_argv: a.full_argv,
                view: crate::output::flamegraph::View { focus: a.focus, hide_idle: a.hide_idle },
            }),
            Command::Serve(a) => Invocation::Serve(ServeConfig {
                targets: a
                    .targets
                    .pid
                    .into_iter()
                    .map(ServeTarget::Pid)
                    .chain(a.targets.pid_file.into_iter().map(ServeTarget::PidFile))
                    .chain(a.targets.matching.into_iter().map(ServeTarget::Match))
                    .collect(),
                listen: a.listen,
                rate_hz: a.rate,
                threshold: a.threshold / 1e3,
                subprocesses: a.subprocesses,
            }),
            Command::Demo(a) => Invocation::Demo(DemoConfig {
                python: a.python,
                uvloop: a.uvloop,
                rate_hz: a.rate,
                threshold: a.threshold / 1e3,
                duration: seconds(a.duration),
                plain: a.plain,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn resolve(args: &[&str]) -> Invocation {
        Invocation::from_cli(Cli::try_parse_from(args).unwrap())
    }

    #[test]
    fn a_pid_or_a_program_to_start() {
        let Invocation::Dump(d) = resolve(&["loopspy", "dump", "--pid", "42", "--max-tasks", "0"]) else { panic!() };
        assert_eq!(d.target, TargetSpec::Pid(42));
        assert_eq!(d.max_tasks, None);
        assert!(!d.subprocesses);
        let Invocation::Dump(d) = resolve(&["loopspy", "dump", "--subprocesses", "--pid", "42"]) else { panic!() };
        assert!(d.subprocesses);
        let Invocation::Top(t) = resolve(&["loopspy", "top", "--keep", "--timeout", "3", "-t", "50", "--", "python3", "app.py"]) else {
            panic!()
        };
        assert_eq!(
            t.target,
            TargetSpec::Spawn { argv: vec!["python3".into(), "app.py".into()], timeout: Duration::from_secs(3), keep: true }
        );
        assert_eq!(t.threshold, 0.05);
        assert_eq!(t.target.kept_program().as_deref(), Some("python3 app.py"));
    }

    #[test]
    fn serve_targets_in_order_and_defaults() {
        let Invocation::Serve(s) =
            resolve(&["loopspy", "serve", "--pid", "3", "--match", "app.py", "--pid", "4", "--pid-file", "/run/a.pid"])
        else {
            panic!()
        };
        assert_eq!(
            s.targets,
            [ServeTarget::Pid(3), ServeTarget::Pid(4), ServeTarget::PidFile("/run/a.pid".into()), ServeTarget::Match("app.py".into())]
        );
        assert_eq!(s.listen, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(s.rate_hz, 20.0);
        assert_eq!(s.threshold, 0.1);
        assert!(Cli::try_parse_from(["loopspy", "serve"]).is_err(), "a target is needed");
        assert!(Cli::try_parse_from(["loopspy", "serve", "--rate", "5"]).is_err(), "a target is needed");
        let Invocation::Serve(s) = resolve(&["loopspy", "serve", "--match=-m app"]) else { panic!() };
        assert_eq!(s.targets, [ServeTarget::Match("-m app".into())]);
        assert!(Cli::try_parse_from(["loopspy", "serve", "--match", ""]).is_err());
        assert!(Cli::try_parse_from(["loopspy", "serve", "--pid", "1", "--listen", "localhost"]).is_err());
    }

    #[test]
    fn record_durations_and_outputs() {
        let Invocation::Record(r) = resolve(&["loopspy", "record", "--pid", "1", "-d", "2.5", "-o", "a.svg", "-o", "b.json"]) else {
            panic!()
        };
        assert_eq!(r.duration, Some(Duration::from_millis(2500)));
        assert_eq!(r.outputs, [PathBuf::from("a.svg"), PathBuf::from("b.json")]);
        assert_eq!(r.threshold, 0.1);
    }
}
