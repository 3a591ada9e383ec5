//! The architecture, checked: one folder per layer under `src/`, each using only the layers
//! below it; no command using another command; and the map in docs/internals.md (and lib.rs)
//! naming exactly the modules there are.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom up. A module may use its own layer and those before it.
const LAYERS: &[&str] = &["base", "process", "python", "asyncio", "capture", "analysis", "output", "cli", "commands"];

/// Files allowed at the top of `src/`.
const TOP_LEVEL: &[&str] = &["lib.rs", "main.rs", "fuzz_tests.rs"];

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::LAYER` references in code (comments skipped), with their line numbers.
fn crate_refs(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `crate::` as part of a longer path (`loopspy_crate::`) is not ours.
            let before = &rest[..at];
            if !before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                out.push((i + 1, name));
            }
            rest = after;
        }
    }
    out
}

#[test]
fn every_module_uses_only_its_own_layer_and_those_below() {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut errors = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_str().unwrap().to_string();
        if rel.components().count() == 1 {
            if !TOP_LEVEL.contains(&first.as_str()) {
                errors.push(format!("src/{first}: a module outside the layer folders"));
            }
            continue;
        }
        let Some(layer) = LAYERS.iter().position(|l| *l == first) else {
            errors.push(format!("src/{}: folder {first} is not a layer", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, name) in crate_refs(&text) {
            match LAYERS.iter().position(|l| *l == name) {
                Some(used) if used > layer => {
                    errors.push(format!("src/{}:{line}: {} uses {} (a layer above)", rel.display(), LAYERS[layer], name))
                }
                Some(_) => {}
                None => errors.push(format!("src/{}:{line}: crate::{name} is not a layer", rel.display())),
            }
        }
    }
    assert!(errors.is_empty(), "layering broken:\n  {}", errors.join("\n  "));
}

#[test]
fn no_command_uses_another() {
    let dir = src().join("commands");
    let commands: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(String::from))
        .filter(|n| n != "mod")
        .collect();
    let mut errors = Vec::new();
    for c in &commands {
        let text = std::fs::read_to_string(dir.join(format!("{c}.rs"))).unwrap();
        for other in commands.iter().filter(|o| *o != c) {
            for pattern in [format!("super::{other}::"), format!("commands::{other}::")] {
                if text.contains(&pattern) {
                    errors.push(format!("commands/{c}.rs uses {pattern}"));
                }
            }
        }
    }
    // `demo` runs `top` on the app it started: the one allowed use, through top's entry point.
    errors.retain(|e| e != "commands/demo.rs uses super::top::");
    assert!(errors.is_empty(), "commands must share code through lower layers:\n  {}", errors.join("\n  "));
}

/// `(layer, module)` for every module file under a layer folder (a folder module counts once).
fn modules_on_disk() -> BTreeSet<(String, String)> {
    let root = src();
    let mut out = BTreeSet::new();
    for layer in LAYERS {
        for entry in std::fs::read_dir(root.join(layer)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            if name != "mod" && (path.is_dir() || path.extension().is_some_and(|e| e == "rs")) {
                out.insert((layer.to_string(), name));
            }
        }
    }
    out
}

#[test]
fn the_map_in_internals_md_names_every_module() {
    let doc = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/internals.md")).unwrap();
    let mut in_doc = BTreeSet::new();
    let mut order = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(layer) = cells.get(1).and_then(|c| c.strip_prefix('`')).and_then(|c| c.strip_suffix("/`")) else { continue };
        order.push(layer.to_string());
        for m in cells.get(2).unwrap_or(&"").split(',') {
            in_doc.insert((layer.to_string(), m.trim().trim_matches('`').to_string()));
        }
    }
    assert_eq!(order, LAYERS, "docs/internals.md lists the layers in another order");
    let on_disk = modules_on_disk();
    let missing: Vec<_> = on_disk.difference(&in_doc).collect();
    let stale: Vec<_> = in_doc.difference(&on_disk).collect();
    assert!(missing.is_empty() && stale.is_empty(), "docs/internals.md: not described {missing:?}; described but absent {stale:?}");
}

#[test]
fn lib_rs_declares_the_layers_in_order() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: Vec<&str> = lib.lines().filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';')).collect();
    assert_eq!(declared, LAYERS);
    for layer in LAYERS {
        assert!(lib.contains(&format!("[`{layer}`]")), "lib.rs's map does not describe {layer}");
    }
}

#[test]
fn the_checker_sees_a_use_that_points_up() {
    // The parser itself: a use in code counts, one in a comment does not.
    let refs = crate_refs("use crate::capture::probe;\n// see crate::commands\nlet x = crate::output::dump::report(); loopspy_crate::y");
    let names: Vec<&str> = refs.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["capture", "output"]);
}
