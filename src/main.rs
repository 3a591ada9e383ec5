use std::io::Write;

use clap::Parser;

use loopspy::base::error::{exit, Failure};
use loopspy::cli::{Cli, Invocation};
use loopspy::commands;

fn main() {
    // The watchdog of a spawned program (see spawn.rs): not a user command.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(loopspy::process::spawn::WATCHDOG) {
        let pgid = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(0);
        std::process::exit(loopspy::process::spawn::watchdog(pgid));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A usage error: as a JSON document too when JSON was asked for.
            let wants_json = args.iter().any(|a| a == "--json")
                || (args.windows(2).any(|w| matches!(w[0].as_str(), "-f" | "--format") && w[1] == "json")
                    && args.windows(2).any(|w| matches!(w[0].as_str(), "-o" | "--output") && w[1] == "-"));
            if wants_json && e.use_stderr() {
                let failure = Failure::Usage { detail: e.to_string().trim_end().to_string() };
                let _ = e.print();
                print_json_error(&failure);
                std::process::exit(exit::USAGE);
            }
            e.exit();
        }
    };
    let json = cli.wants_json();
    // A panic is a bug: said as such, with exit code 1 (the terminal is given back first,
    // as the stack unwinds).
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(
            std::io::stderr(),
            "loopspy: internal error (a bug): {info}\n  Please report it with this message. What was recorded so far is in the capture file named when recording started."
        );
    }));
    let code = match std::panic::catch_unwind(|| run(Invocation::from_cli(cli))) {
        Ok(Ok(())) => exit::OK,
        Ok(Err(failure)) => {
            report_failure(&failure, json);
            failure.exit_code()
        }
        Err(_) => exit::INTERNAL,
    };
    std::process::exit(code);
}

/// Run a resolved command line: the one place that knows every command.
fn run(invocation: Invocation) -> Result<(), Failure> {
    match invocation {
        Invocation::Dump(c) => commands::dump::run(&c),
        Invocation::Record(c) => commands::record::run(&c),
        Invocation::Top(c) => commands::top::run(&c),
        Invocation::Render(c) => commands::render::run(&c),
        Invocation::Demo(c) => commands::demo::run(&c),
        Invocation::Serve(c) => commands::serve::run(&c),
    }
}

fn report_failure(failure: &Failure, json: bool) {
    // stderr may be gone (a hung-up terminal): never panic on writing to it.
    if !matches!(failure, Failure::Reported { .. }) {
        let _ = writeln!(std::io::stderr(), "loopspy: {failure}");
    }
    if json {
        print_json_error(failure);
    }
}

fn print_json_error(failure: &Failure) {
    let doc = serde_json::json!({
        "error": {
            "kind": failure.kind(),
            "message": failure.to_string(),
            "exit_code": failure.exit_code(),
        }
    });
    let _ = writeln!(std::io::stdout(), "{doc}");
}
