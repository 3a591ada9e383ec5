//! A hostile target (tests/targets/hostile.py: names carrying terminal escapes, newlines,
//! NULs, lone surrogates, markup, bidi overrides, XML non-characters, 10 kB names, and a
//! callback 3,000 frames deep) through every output, on every interpreter: terminal text
//! shows every control character as a visible escape and emits none, the SVG is well-formed
//! XML, collapsed lines keep their shape, JSON keeps the names as they are (cut visibly when
//! huge), and the deep stack is a sample, cut visibly in the middle, never a failure.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Text written to a terminal: no control character but the line breaks we put there.
fn assert_terminal_safe(what: &str, text: &str) {
    if let Some(bad) = text.chars().find(|c| (c.is_control() && *c != '\n') || ('\u{202a}'..='\u{202e}').contains(c)) {
        let at = text.find(bad).unwrap();
        panic!("{what}: raw {bad:?} near {:?}", &text[at.saturating_sub(60)..(at + 20).min(text.len())]);
    }
}

/// The hostile name as loopspy decodes it (a lone surrogate cannot be UTF-8: U+FFFD).
fn decoded(name: &str) -> String {
    name.chars().collect()
}

fn hostile_dump(version: &str, flavor: &str) {
    let test = "hostile/dump_deep";
    let Some(interp) = require_flavor(version, test, flavor) else { return };
    record(test, version, flavor, "FAIL");
    let mut args = vec!["--hold", "deep"];
    if flavor == "uvloop" {
        args.push("--uvloop");
    }
    let scenario = Scenario::start(interp, "hostile.py", &args);
    std::thread::sleep(Duration::from_millis(200));
    let pid = scenario.pid().to_string();
    let ctx = format!("Python {version} [{flavor}]");
    let (out, _, _) = loopspy(&["dump", "--pid", &pid, "--max-tasks", "10"]);
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_terminal_safe(&format!("{ctx}: dump"), &text);
    assert!(text.contains("\\x1b]0;pwned\\x07\\x1b[2J"), "{ctx}: the escape shown visibly:\n{text}");
    assert!(!text.contains("\nPID 1: forged line"), "{ctx}: a forged line");
    assert!(text.contains("frames not shown"), "{ctx}: the deep stack cut visibly:\n{}", &text[..text.len().min(3000)]);
    assert!(text.contains("deep_callback"), "{ctx}: the callback under 3,000 frames");

    let (out, _, _) = loopspy(&["dump", "--pid", &pid, "--json", "--max-tasks", "10"]);
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    let report = json_of(&out);
    let l = &report["loops"][0];
    let hostile = decoded(scenario.truth["hostile"].as_str().unwrap());
    assert_eq!(l["thread"]["name"].as_str(), Some(hostile.as_str()), "{ctx}: JSON keeps the name as it is");
    let stack = l["stack"].as_array().unwrap();
    let marker = stack.iter().find(|f| f["function"].as_str().unwrap().contains("frames not shown"));
    assert!(marker.is_some(), "{ctx}: the cut is marked in the JSON stack");
    assert!(stack.len() < 400, "{ctx}: {} frames kept", stack.len());
    let names: Vec<&str> = l["tasks"]["list"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&hostile.as_str()), "{ctx}: the hostile task name: {names:?}");
    let long = names.iter().find(|n| n.starts_with("LLLL")).unwrap_or_else(|| panic!("{ctx}: the long task name: {names:?}"));
    assert_eq!(*long, format!("{}...[10240 chars]", "L".repeat(512)), "{ctx}: a long name cut visibly");
    record(test, version, flavor, "pass");
}

fn hostile_record(version: &str, flavor: &str) {
    let test = "hostile/record";
    let Some(interp) = require_flavor(version, test, flavor) else { return };
    record(test, version, flavor, "FAIL");
    let ctx = format!("Python {version} [{flavor}]");
    let dir = tempfile::tempdir().unwrap();
    let (svg, txt, json, truth) =
        (dir.path().join("r.svg"), dir.path().join("r.txt"), dir.path().join("r.json"), dir.path().join("t.json"));
    let mut cmd = Command::new(loopspy_bin());
    cmd.args(["record", "--rate", "100", "--duration", "4", "-o"]).arg(&svg).arg("-o").arg(&txt).arg("-o").arg(&json);
    cmd.arg("--").arg(&interp.path).arg(targets_dir().join("hostile.py")).arg(&truth);
    if flavor == "uvloop" {
        cmd.arg("--uvloop").env("PYTHONPATH", interp.uvloop.as_ref().unwrap());
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    assert_terminal_safe(&format!("{ctx}: record's summary"), &String::from_utf8_lossy(&out.stderr));

    let svg_text = std::fs::read_to_string(&svg).unwrap();
    let xml = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    if let Err(e) = roxmltree::Document::parse_with_options(&svg_text, xml) {
        panic!("{ctx}: the SVG is not XML: {e}");
    }
    for line in std::fs::read_to_string(&txt).unwrap().lines() {
        let (stack, weight) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{ctx}: collapsed line {line:?}"));
        assert!(weight.parse::<u64>().is_ok(), "{ctx}: collapsed weight in {line:?}");
        assert!(!stack.is_empty() && !stack.contains(";;"), "{ctx}: {line:?}");
        assert_terminal_safe(&format!("{ctx}: collapsed"), line);
    }
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&truth).unwrap()).unwrap();
    let hostile = decoded(t["hostile"].as_str().unwrap());
    let episodes = r["loops"][0]["episodes"].as_array().unwrap();
    let functions: Vec<&str> = episodes.iter().map(|e| e["function"].as_str().unwrap()).collect();
    let long = format!("{}...[10240 chars]", "L".repeat(512));
    for want in [hostile.as_str(), long.as_str(), "recurse"] {
        assert!(functions.contains(&want), "{ctx}: no episode blamed on {:?}: {functions:?}", &want[..want.len().min(40)]);
    }
    let failed = r["recording"]["failed_pct"].as_f64().unwrap();
    assert!(failed < 5.0, "{ctx}: {failed:.1} % failed ({})", r["recording"]["failed_by_reason"]);
    assert!(r["loops"][0]["thread_name"].as_str() == Some(hostile.as_str()), "{ctx}: JSON thread name");
    record(test, version, flavor, &format!("pass ({} episodes, {failed:.1} % failed)", episodes.len()));
}

fn hostile_top(version: &str, flavor: &str) {
    let test = "hostile/top_plain";
    let Some(interp) = require_flavor(version, test, flavor) else { return };
    record(test, version, flavor, "FAIL");
    let mut args = vec![];
    if flavor == "uvloop" {
        args.push("--uvloop");
    }
    let scenario = Scenario::start(interp, "hostile.py", &args);
    let pid = scenario.pid().to_string();
    let (out, _, _) = loopspy(&["top", "--pid", &pid, "--plain", "--duration", "2.5"]);
    let ctx = format!("Python {version} [{flavor}]");
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() >= 2, "{ctx}: {text}");
    assert_terminal_safe(&format!("{ctx}: top --plain"), &text);
    assert_terminal_safe(&format!("{ctx}: top's stderr"), &String::from_utf8_lossy(&out.stderr));
    record(test, version, flavor, "pass");
}

macro_rules! for_each_version {
    ($($name:ident: $version:literal),* $(,)?) => {$(
        mod $name {
            #[test] fn dump_stock() { super::hostile_dump($version, "stock") }
            #[test] fn dump_uvloop() { super::hostile_dump($version, "uvloop") }
            #[test] fn record_stock() { super::hostile_record($version, "stock") }
            #[test] fn record_uvloop() { super::hostile_record($version, "uvloop") }
            #[test] fn top_stock() { super::hostile_top($version, "stock") }
        }
    )*};
}

versions!(for_each_version);
