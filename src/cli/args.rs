//! The command line as clap parses it (ripgrep's "low-level arguments"): every flag, its help
//! and its validation. [`super::config`] resolves it into what the commands run with.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use crate::output::format::RecordFormat;

const EXAMPLES: &str = "\
Examples:
  loopspy dump --pid 4242              what is the event loop of process 4242 doing right now?
  loopspy dump --pid 4242 --json       the same, as one JSON document
  loopspy dump --subprocesses --pid 4200   a gunicorn/uvicorn master and every worker
  loopspy dump -- python3 app.py       start app.py, wait for its loop, dump it, stop it
  loopspy record --pid 4242 -d 30      30 s of samples: a flame graph of what blocked the loop
  loopspy top --pid 4242               watch it live
  loopspy serve --pid 4242             Prometheus metrics at http://127.0.0.1:9464/metrics
  loopspy demo                         see it all on a bundled demo app";

/// The root help's tail: examples, and the exit codes from their table.
fn after_help() -> String {
    format!("{EXAMPLES}\n\nExit codes: {}.\nDocs: docs/cli.md", crate::base::error::exit_codes_line())
}

/// See what a running Python process's asyncio event loop is doing, from outside, without
/// stopping it.
#[derive(Debug, Parser)]
#[command(name = "loopspy", version, about, after_help = after_help(), propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the state of every asyncio event loop in a Python process, once.
    #[command(after_help = DUMP_HELP)]
    Dump(DumpArgs),
    /// Sample the event loop continuously; write a flame graph (or collapsed stacks, or JSON)
    /// in which what blocked the loop stands out.
    #[command(after_help = RECORD_HELP)]
    Record(RecordArgs),
    /// A live dashboard of the event loop: is it blocked right now, by what, lag, ready
    /// queue, busy %, top blocking frames. One plain line per second when not on a terminal.
    #[command(after_help = top_help())]
    Top(TopArgs),
    /// Start the bundled demo app (an asyncio service that now and then blocks its loop) and
    /// open `top` on it.
    Demo(DemoArgs),
    /// Render a saved recording (`record --save FILE`, or the capture a stopped `record` left)
    /// again: another threshold, another format, without the process.
    #[command(after_help = RENDER_HELP)]
    Render(RenderArgs),
    /// Sample one or more processes continuously and serve their loops' figures over HTTP in
    /// the Prometheus text format (lag histogram, busy ratio, blocking episodes by function,
    /// pending tasks).
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
}

const SERVE_HELP: &str = "\
Metrics are served at http://LISTEN/metrics; what each one means: docs/serve.md. A target
that exits is reported as loopspy_up 0 and loopspy keeps serving; with --pid-file or --match
the process is looked for again every few seconds, so a restarted service is picked up.
Binds 127.0.0.1 by default: the metrics carry function names from the target's code and
the endpoint has no authentication (see docs/serve.md before binding wider).

Examples:
  loopspy serve --pid 4242
  loopspy serve --pid-file /run/app.pid --listen 0.0.0.0:9464
  loopspy serve --match 'gunicorn: worker' --rate 50
  loopspy serve --subprocesses --pid-file /run/gunicorn.pid   (the master's workers, as they come and go)
  curl -s localhost:9464/metrics | grep event_loop_lag";

/// The processes `serve` samples: at least one, in any mix.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = true)]
pub struct ServeTargetArgs {
    /// PID of a running Python process; repeat for several.
    #[arg(short, long, value_name = "PID", value_parser = parse_pid)]
    pub pid: Vec<i32>,

    /// A file holding the PID of the process (read again every few seconds: a restarted
    /// service is picked up); repeat for several.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Vec<std::path::PathBuf>,

    /// Every process whose command line contains PATTERN (looked for again every few
    /// seconds); repeat for several. A pattern that starts with `-`: `--match=-m app`.
    #[arg(long = "match", id = "matching", value_name = "PATTERN", value_parser = parse_pattern)]
    pub matching: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub targets: ServeTargetArgs,

    /// Address and port to serve the metrics on.
    #[arg(short, long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9464", value_parser = parse_listen)]
    pub listen: std::net::SocketAddr,

    /// Samples per second, per loop.
    #[arg(short, long, value_name = "HZ", default_value_t = 20.0, value_parser = parse_rate)]
    pub rate: f64,

    /// A callback that keeps the loop busy this long is a blocking episode (ms).
    #[arg(short, long, value_name = "MS", default_value_t = 100.0, value_parser = parse_threshold)]
    pub threshold: f64,

    /// Each process found (by --pid, --pid-file or --match) and every descendant that runs
    /// an event loop: a gunicorn or uvicorn master and its workers. Workers that start later
    /// are picked up within seconds; one that exits leaves the metrics.
    #[arg(long)]
    pub subprocesses: bool,
}

fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| format!("`{s}` is not an address and port (e.g. 127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464)"))
}

fn parse_pattern(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("an empty pattern would match every process".into())
    } else {
        Ok(s.to_string())
    }
}

const RENDER_HELP: &str = "\
Examples:
  loopspy record --pid 4242 -d 60 --save incident.lsrec -o incident.svg
  loopspy render incident.lsrec --threshold 50 -o incident-50ms.svg -o incident.json
  loopspy render loopspy-4242-20261201T101500Z.lsrec     (what a killed record left)";

#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// The capture file.
    #[arg(value_name = "CAPTURE")]
    pub capture: std::path::PathBuf,

    /// Output file; repeat for several. The format follows the extension, else --format; `-`
    /// is standard output [default: the capture's name with .svg].
    #[arg(short, long, value_name = "FILE")]
    pub output: Vec<std::path::PathBuf>,

    /// Format for outputs whose extension does not say [default: svg].
    #[arg(short, long, value_enum)]
    pub format: Option<RecordFormat>,

    /// A callback that keeps the loop busy this long is a blocking episode (ms).
    #[arg(short, long, value_name = "MS", default_value_t = 100.0, value_parser = parse_threshold)]
    pub threshold: f64,

    /// Show the target's command line whole (see record --full-argv).
    #[arg(long)]
    pub full_argv: bool,
    /// Flame graph: stacks start at the callback (the loop's own frames below it, from
    /// `<module>` to `Handle._run`, folded away). For the SVG and collapsed outputs; the
    /// HTML page has both views and opens on this one.
    #[arg(long)]
    pub focus: bool,

    /// Flame graph: leave out idle time (in select), so that widths are the loop's
    /// non-idle time. For the SVG and collapsed outputs; the HTML page opens with idle hidden.
    #[arg(long)]
    pub hide_idle: bool,
}

const TOP_EXAMPLES: &str = "\
Colours follow NO_COLOR. On a pipe (kubectl exec without -t) it prints one line per second.
With several loops it shows the worst one now (l switches). With --subprocesses it opens on
an overview of the workers (one row each: lag, busy, blocked now); w or Enter focuses one.

Examples:
  loopspy top --pid 4242
  loopspy top --pid 4242 --threshold 50
  kubectl exec POD -- loopspy top --pid 1 | tee top.log
  loopspy top -- python3 app.py
  loopspy top --subprocesses --pid 4200     a gunicorn/uvicorn master: one row per worker";

/// `top --help`'s tail: its keys, from their table, then notes and examples.
fn top_help() -> String {
    let keys: Vec<String> = crate::output::tui::keys::help_lines().into_iter().map(|l| format!("  {l}")).collect();
    format!("Keys:\n{}\n\n{TOP_EXAMPLES}", keys.join("\n"))
}

#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub spawn: SpawnArgs,

    /// Samples per second.
    #[arg(short, long, value_name = "HZ", default_value_t = 100.0, value_parser = parse_rate)]
    pub rate: f64,

    /// A callback that keeps the loop busy this long is a blocking episode (ms).
    #[arg(short, long, value_name = "MS", default_value_t = 100.0, value_parser = parse_threshold)]
    pub threshold: f64,

    /// Pause the target while taking each sample (ptrace). Off by default.
    #[arg(long)]
    pub blocking: bool,

    /// Stop after this many seconds.
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    pub duration: Option<f64>,

    /// Print one line per second instead of drawing, even on a terminal.
    #[arg(long)]
    pub plain: bool,

    /// Show the target's command line whole (see record --full-argv).
    #[arg(long)]
    pub full_argv: bool,

    /// Watch the process and every descendant that runs an event loop (a gunicorn or uvicorn
    /// master and its workers, a multiprocessing pool): an overview with one row per worker
    /// (lag, busy, blocked now), and each worker's dashboard on a key. Workers that start or
    /// exit while watching are added or marked gone.
    #[arg(long)]
    pub subprocesses: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The Python to run the demo app with.
    #[arg(long, value_name = "PYTHON", default_value = "python3")]
    pub python: String,

    /// Run the demo app on uvloop (it must be installed for that Python).
    #[arg(long)]
    pub uvloop: bool,

    /// Samples per second.
    #[arg(short, long, value_name = "HZ", default_value_t = 100.0, value_parser = parse_rate)]
    pub rate: f64,

    /// Blocking threshold (ms).
    #[arg(short, long, value_name = "MS", default_value_t = 100.0, value_parser = parse_threshold)]
    pub threshold: f64,

    /// Stop after this many seconds.
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    pub duration: Option<f64>,

    /// Print one line per second instead of drawing.
    #[arg(long)]
    pub plain: bool,
}

const RECORD_HELP: &str = "\
Samples the loop thread (its Python stack, ready queue, earliest-timer lateness, and whether
it waits in select) at --rate per second without pausing the target, until --duration
elapses, you press Ctrl-C, or the target exits. Then it writes the output file and prints a
summary: busy vs idle in select, loop lag, ready-queue depth, and blocking episodes (a
callback that kept the loop busy for at least --threshold) with the frame, task and syscall
that blocked it. Every sample taken is kept, however recording stops.

Examples:
  loopspy record --pid 4242 --duration 30 -o incident.svg
  loopspy record --pid 4242 -o incident.svg -o incident.json    (both from one recording)
  loopspy record --pid 4242 -d 60 -o incident.html    (lag, queue, busy, tasks over time + flame graph)
  loopspy record --pid 4242 -o stacks.txt                       (collapsed: flamegraph.pl, speedscope)
  loopspy record --pid 4242 -d 10 -f json -o - | jq .blocking_frames
  loopspy record --pid 4242 -f jsonl -o - | jq -c 'select(.type == \"episode\")'   (lines as they happen)
  loopspy record --rate 1000 --threshold 50 -- python3 app.py
  loopspy record --subprocesses --pid 4200 -d 60 -o fleet.svg -o fleet.json   (master + workers)";

#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub spawn: SpawnArgs,

    /// Output file; repeat for several (`-o incident.svg -o incident.json`). The format
    /// follows the extension (.svg, .html, .json, .jsonl, .txt/.folded/.collapsed, .pftrace), else --format; `-` is
    /// standard output [default: loopspy-PID-TIME.svg in the current directory].
    #[arg(short, long, value_name = "FILE")]
    pub output: Vec<std::path::PathBuf>,

    /// Format for outputs whose extension does not say [default: svg].
    #[arg(short, long, value_enum)]
    pub format: Option<RecordFormat>,

    /// Samples per second.
    #[arg(short, long, value_name = "HZ", default_value_t = 100.0, value_parser = parse_rate)]
    pub rate: f64,

    /// Stop after this many seconds [default: until Ctrl-C or the target exits].
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    pub duration: Option<f64>,

    /// A callback that keeps the loop busy this long is a blocking episode (ms).
    #[arg(short, long, value_name = "MS", default_value_t = 100.0, value_parser = parse_threshold)]
    pub threshold: f64,

    /// Pause the target while taking each sample (ptrace). Off by default.
    #[arg(long)]
    pub blocking: bool,

    /// Also sample threads that run no event loop (executor workers...), under their own roots.
    #[arg(long)]
    pub all_threads: bool,

    /// Record the process and every descendant that runs an event loop (a gunicorn or uvicorn
    /// master and its workers, a multiprocessing pool): one recording, grouped by process;
    /// workers that start or exit while recording join or leave it.
    #[arg(long)]
    pub subprocesses: bool,

    /// Keep the recording itself in FILE (a capture: `loopspy render FILE` renders it again,
    /// with another threshold or format). Without it the capture written while recording is
    /// removed once the outputs are written.
    #[arg(long, value_name = "FILE")]
    pub save: Option<std::path::PathBuf>,

    /// Show the target's command line whole in the outputs (by default it is cut at 200
    /// characters and values that look secret are replaced by ***).
    #[arg(long)]
    pub full_argv: bool,
    /// Flame graph: stacks start at the callback (the loop's own frames below it, from
    /// `<module>` to `Handle._run`, folded away). For the SVG and collapsed outputs; the
    /// HTML page has both views and opens on this one.
    #[arg(long)]
    pub focus: bool,

    /// Flame graph: leave out idle time (in select), so that widths are the loop's
    /// non-idle time. For the SVG and collapsed outputs; the HTML page opens with idle hidden.
    #[arg(long)]
    pub hide_idle: bool,
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
  loopspy dump --keep -- python3 app.py      leave app.py running afterwards
  loopspy dump --subprocesses --pid 4200     a master (gunicorn, uvicorn --workers) and its workers
  loopspy dump --subprocesses -- uvicorn app:app --workers 3";

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

    /// Also print each loop's await tree (which task awaits which).
    #[arg(long)]
    pub tree: bool,

    /// Look at the process and every descendant that runs an event loop (a gunicorn or
    /// uvicorn master and its workers, a multiprocessing pool), each reported on its own.
    #[arg(long)]
    pub subprocesses: bool,

    /// Describe at most this many tasks per loop (all are counted); 0 skips tasks.
    #[arg(long, value_name = "N", default_value_t = crate::capture::snapshot::DEFAULT_MAX_TASKS)]
    pub max_tasks: usize,

    /// Show the target's command line whole (by default it is cut at 200 characters and
    /// values that look secret are replaced by ***).
    #[arg(long)]
    pub full_argv: bool,
}

fn parse_pid(s: &str) -> Result<i32, String> {
    match s.parse::<i64>() {
        Ok(p) if p > 0 && p <= i32::MAX as i64 => Ok(p as i32),
        Ok(p) => Err(format!("{p} is not a valid PID (PIDs are positive)")),
        Err(_) => Err(format!("`{s}` is not a PID (a positive number, e.g. from `pgrep -f python`)")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (1.0..=10_000.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} samples per second is not usable (1 to 10000)")),
        Err(_) => Err(format!("`{s}` is not a number of samples per second")),
    }
}

fn parse_threshold(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3_600_000.0 => Ok(v),
        Ok(v) => Err(format!("{v} ms is not a usable threshold (0 < MS <= 3600000)")),
        Err(_) => Err(format!("`{s}` is not a number of milliseconds")),
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
            Command::Record(args) => args.format == Some(RecordFormat::Json) && args.output.iter().any(|o| o.as_os_str() == "-"),
            Command::Render(args) => args.format == Some(RecordFormat::Json) && args.output.iter().any(|o| o.as_os_str() == "-"),
            Command::Top(_) | Command::Demo(_) | Command::Serve(_) => false,
        }
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
    fn record_options_are_validated() {
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("100000").is_err());
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        assert!(parse_threshold("0").is_err());
        assert!(parse_threshold("-5").is_err());
        assert!(Cli::try_parse_from(["loopspy", "record", "--pid", "1", "--format", "png"]).is_err());
        assert!(Cli::try_parse_from(["loopspy", "record", "--pid", "1", "--duration", "-1"]).is_err());
        let cli = Cli::try_parse_from(["loopspy", "record", "--pid", "1", "-f", "json", "-o", "-"]).unwrap();
        assert!(cli.wants_json());
        let cli = Cli::try_parse_from(["loopspy", "record", "--subprocesses", "--", "uvicorn", "app:app", "--workers", "3"]).unwrap();
        let Command::Record(args) = cli.command else { panic!() };
        assert!(args.subprocesses);
        assert_eq!(args.target.command, ["uvicorn", "app:app", "--workers", "3"]);
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
        let Command::Dump(args) = cli.command else { panic!() };
        assert_eq!(args.target.command, ["python3", "app.py", "--port", "1"]);
        assert!(args.json);
    }
}
