//! loopspy's line-table decoder (`loopspy::python::lines`) must give, for every instruction of every
//! code object, the line the interpreter itself gives (`co_lines()` on 3.10+, the
//! `co_lnotab` walk on 3.8–3.9): hundreds of real code objects per version, from asyncio,
//! json, enum, inspect and dis, each offset checked.

mod common;

use std::process::Command;

use common::*;
use loopspy::python::layout::{for_version, PyVersion};
use serde_json::Value;

fn check(version: &str) {
    let test = "lines/every_offset";
    let Some(interp) = require(version, test) else { return };
    let out = Command::new(&interp.path).arg(targets_dir().join("line_tables.py")).output().unwrap();
    assert!(out.status.success(), "Python {version}: {}", String::from_utf8_lossy(&out.stderr));
    let codes: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let (major, minor) = version.split_once('.').unwrap();
    let layout = for_version(PyVersion::new(major.parse().unwrap(), minor.parse().unwrap())).unwrap();
    let (mut offsets, mut wrong) = (0usize, Vec::new());
    for code in &codes {
        let table: Vec<u8> = (0..code["table"].as_str().unwrap().len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&code["table"].as_str().unwrap()[i..i + 2], 16).unwrap())
            .collect();
        let first_line = code["first_line"].as_i64().unwrap() as i32;
        for pair in code["lines"].as_array().unwrap() {
            let (offset, line) = (pair[0].as_i64().unwrap(), pair[1].as_i64().unwrap() as i32);
            offsets += 1;
            let ours = loopspy::python::lines::line_at(layout.code.line_format, &table, first_line, offset);
            if ours != Some(line) {
                wrong.push(format!("{} at byte {offset}: interpreter {line}, loopspy {ours:?}", code["name"]));
            }
        }
    }
    assert!(codes.len() > 500 && offsets > 20_000, "Python {version}: only {} code objects, {offsets} offsets", codes.len());
    assert!(
        wrong.is_empty(),
        "Python {version}: {} of {offsets} offsets decode to another line, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    eprintln!("Python {version}: {} code objects, {offsets} offsets, every line as the interpreter says", codes.len());
    record(test, version, "stock", "pass");
}

version_tests!(check);
