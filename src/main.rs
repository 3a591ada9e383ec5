use clap::Parser;

use loopspy::cli::{self, Cli};
use loopspy::error::{exit, Failure};

fn main() {
    let cli = Cli::parse();
    let json = cli.wants_json();
    let code = match cli::run(cli) {
        Ok(()) => exit::OK,
        Err(failure) => {
            report_failure(&failure, json);
            failure.exit_code()
        }
    };
    std::process::exit(code);
}

fn report_failure(failure: &Failure, json: bool) {
    if matches!(failure, Failure::Interrupted) {
        eprintln!("loopspy: interrupted");
    } else {
        eprintln!("loopspy: {failure}");
    }
    if json {
        let doc = serde_json::json!({
            "error": {
                "kind": failure.kind(),
                "message": failure.to_string(),
                "exit_code": failure.exit_code(),
            }
        });
        println!("{doc}");
    }
}
