//! The tables users read agree with the tables in the code: exit codes (docs/cli.md and
//! `loopspy --help`), `top`'s keys (docs/dashboard.md and `loopspy top --help`).

mod common;

use std::path::PathBuf;

use common::loopspy;
use loopspy::base::error::{exit_codes_line, EXIT_CODES};
use loopspy::output::tui::keys::{help_lines, KEYS};

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of the first markdown table after `heading`, as cells.
fn table_after(text: &str, heading: &str) -> Vec<Vec<String>> {
    let start = text.find(heading).unwrap_or_else(|| panic!("no {heading:?}"));
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect())
        .collect()
}

#[test]
fn exit_codes_in_the_docs_are_the_codes_in_the_code() {
    let rows = table_after(&doc("cli.md"), "## Exit codes");
    let documented: Vec<(i32, String, String)> =
        rows.iter().map(|r| (r[0].parse().unwrap_or(-1), r[1].clone(), r.get(2).cloned().unwrap_or_default())).collect();
    let code: Vec<(i32, String, String)> =
        EXIT_CODES.iter().map(|(c, _, meaning, todo)| (*c, meaning.to_string(), todo.to_string())).collect();
    assert_eq!(documented, code, "docs/cli.md's exit codes differ from base::error::EXIT_CODES");
}

#[test]
fn help_lists_every_exit_code() {
    let (out, _, _) = loopspy(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains(&exit_codes_line()), "{help}");
    for (code, short, _, _) in EXIT_CODES {
        assert!(help.contains(&format!("{code} {short}")), "{code} missing from --help");
    }
}

#[test]
fn top_keys_in_the_docs_are_the_keys_in_the_code() {
    let rows = table_after(&doc("dashboard.md"), "## Keys");
    let documented: Vec<(String, String)> = rows.iter().map(|r| (r[0].trim_matches('`').to_string(), r[1].clone())).collect();
    let code: Vec<(String, String)> = KEYS.iter().map(|(k, _, what)| (k.to_string(), what.to_string())).collect();
    assert_eq!(documented, code, "docs/dashboard.md's keys differ from output::tui::keys::KEYS");
}

#[test]
fn top_help_lists_every_key() {
    let (out, _, _) = loopspy(&["top", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for line in help_lines() {
        assert!(help.contains(&line), "{line:?} missing from top --help:\n{help}");
    }
}
