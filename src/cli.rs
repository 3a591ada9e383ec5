//! Command-line interface: argument definitions and dispatch. Each command lives in its own
//! module under `commands/`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::commands;
use crate::error::Failure;

const AFTER_HELP: &str = "\
Examples:
  loopspy dump --pid 4242              what is the event loop of process 4242 doing right now?
  loopspy dump --pid 4242 --json       the same, as one JSON document
  loopspy dump -- python3 app.py       start app.py, wait for its loop, dump it, stop it

Exit codes: 0 ok, 2 usage, 3 no such process, 4 permission denied, 5 not Python,
6 unsupported Python, 7 no event loop, 8 target exited, 9 could not start the command,
10 could not write output, 11 target changed too fast to read, 130 interrupted.
Docs: docs/cli.md";

/// See what a running Python process's asyncio event loop is doing, from outside, without
/// stopping it.
#[derive(Debug, Parser)]
#[command(name = "loopspy", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the state of every asyncio event loop in a Python process, once.
    #[command(after_help = DUMP_HELP)]
    Dump(DumpArgs),
}

const DUMP_HELP: &str = "\
For each thread that runs an event loop: the thread, the loop class, whether the loop is idle
in selector.select or running a callback (which one, in which task), the ready queue, the
timers (the earliest live one: due in, or overdue by = loop lag), the file descriptors it
watches, and the thread's Python stack. Never shows variable values.

Examples:
  loopspy dump --pid 4242
  loopspy dump --pid 4242 --json | jq '.loops[].lag_ms'
  loopspy dump --timeout 30 -- uv run server.py
  loopspy dump --keep -- python3 app.py      leave app.py running afterwards";

/// Which process to look at: a running one, or a program to start.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// PID of a running Python process.
    #[arg(short, long, value_name = "PID", value_parser = parse_pid)]
    pub pid: Option<i32>,

    /// A program to start and look at (after `--`), e.g. `-- python3 app.py`. Wrappers such as
    /// a pyenv shim, a shell script or `uv run` are followed to the Python process.
    #[arg(last = true, value_name = "COMMAND", num_args = 1..)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SpawnArgs {
    /// With a command: seconds to wait for its event loop to start.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub timeout: f64,

    /// With a command: leave it running when loopspy is done (it is stopped by default, as
    /// py-spy does, so nothing is left behind).
    #[arg(long, conflicts_with = "kill")]
    pub keep: bool,

    /// With a command: stop it when loopspy is done (the default).
    #[arg(long)]
    pub kill: bool,
}

impl SpawnArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }
}

#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub spawn: SpawnArgs,

    /// Print one JSON document (schema: docs/json-schema.md).
    #[arg(long)]
    pub json: bool,

    /// Pause the target while reading it (ptrace). Off by default: loopspy reads a running
    /// process without stopping it.
    #[arg(long)]
    pub blocking: bool,
}

fn parse_pid(s: &str) -> Result<i32, String> {
    match s.parse::<i64>() {
        Ok(p) if p > 0 && p <= i32::MAX as i64 => Ok(p as i32),
        Ok(p) => Err(format!("{p} is not a valid PID (PIDs are positive)")),
        Err(_) => Err(format!("`{s}` is not a PID (a positive number, e.g. from `pgrep -f python`)")),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        Ok(v) => Err(format!("{v} is not a usable number of seconds (0 < SECS <= 86400)")),
        Err(_) => Err(format!("`{s}` is not a number of seconds")),
    }
}

impl Cli {
    /// Does the command want machine-readable output (errors included)?
    pub fn wants_json(&self) -> bool {
        match &self.command {
            Command::Dump(args) => args.json,
        }
    }
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Dump(args) => commands::dump::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn pid_and_seconds_are_validated() {
        assert_eq!(parse_pid("42"), Ok(42));
        assert!(parse_pid("0").is_err());
        assert!(parse_pid("-3").is_err());
        assert!(parse_pid("abc").is_err());
        assert!(parse_pid("99999999999").is_err());
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("nan").is_err());
        assert_eq!(parse_seconds("2.5"), Ok(2.5));
    }

    #[test]
    fn dump_needs_exactly_one_target() {
        assert!(Cli::try_parse_from(["loopspy", "dump"]).is_err());
        assert!(Cli::try_parse_from(["loopspy", "dump", "--pid", "1", "--", "python3"]).is_err());
        let cli = Cli::try_parse_from(["loopspy", "dump", "--json", "--", "python3", "app.py", "--port", "1"]).unwrap();
        let Command::Dump(args) = cli.command;
        assert_eq!(args.target.command, ["python3", "app.py", "--port", "1"]);
        assert!(args.json);
    }
}
