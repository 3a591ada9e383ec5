//! The forms loopspy ships in, tested as a user gets them: the static binary
//! (scripts/build-static.sh) run from an empty root, and the wheel carrying it
//! (scripts/build-wheel.sh) installed by pip into a fresh venv of another Python than the
//! target's. Both are built once by scripts/test.sh before the tests run, into
//! `target/artifacts/`; the reports are held to the target's own truth (common::truth), as
//! tests/dump_scenarios.rs holds the development build.
//!
//! Under CI=true a missing, stale or unusable artifact fails the tests; elsewhere they are
//! skipped loudly (run scripts/build-wheel.sh first).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use common::truth::*;
use common::*;
use serde_json::Value;

fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("artifacts")
}

/// Newest modification time of the files the binary is built from.
fn newest_source() -> SystemTime {
    fn walk(dir: &Path, newest: &mut SystemTime) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                *newest = (*newest).max(t);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut newest = SystemTime::UNIX_EPOCH;
    walk(&root.join("src"), &mut newest);
    for f in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(t) = fs::metadata(root.join(f)).and_then(|m| m.modified()) {
            newest = newest.max(t);
        }
    }
    newest
}

/// The artifact whose file name starts with `prefix` and ends with `suffix`, built after the
/// last change to the sources; `None` after recording a skip (a failure under CI).
fn artifact(prefix: &str, suffix: &str, test: &str, version: &str, variant: &str) -> Option<PathBuf> {
    let dir = artifacts_dir();
    let found = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix)));
    let problem = match &found {
        None => format!("no {prefix}*{suffix} in {}", dir.display()),
        Some(p) if fs::metadata(p).and_then(|m| m.modified()).is_ok_and(|t| t < newest_source()) => {
            format!("{} is older than the sources", p.display())
        }
        Some(_) => return found,
    };
    if in_ci() {
        panic!("CI=true but {problem}: scripts/build-wheel.sh (run by scripts/test.sh) must build it");
    }
    eprintln!("SKIPPED {test}: {problem} (run scripts/build-wheel.sh)");
    record(test, version, variant, &format!("skipped ({problem}; run scripts/build-wheel.sh)"));
    None
}

fn static_binary(test: &str, version: &str, variant: &str) -> Option<PathBuf> {
    artifact("loopspy", "loopspy", test, version, variant)
}

fn wheel(test: &str, version: &str, variant: &str) -> Option<PathBuf> {
    artifact("loopspy-", ".whl", test, version, variant)
}

/// `ldd` calls the shipped binary static, and it is the same version as the tested one.
#[test]
fn binary_is_static() {
    let Some(bin) = static_binary("dist/static", "-", "-") else { return };
    let ldd = Command::new("ldd").arg(&bin).env("LC_ALL", "C").output().expect("run ldd");
    let says = format!("{}{}", String::from_utf8_lossy(&ldd.stdout), String::from_utf8_lossy(&ldd.stderr));
    assert!(says.contains("not a dynamic executable") || says.contains("statically linked"), "ldd {}: {says}", bin.display());
    let version = |b: &Path| String::from_utf8(Command::new(b).arg("--version").output().unwrap().stdout).unwrap();
    assert_eq!(version(&bin), version(&loopspy_bin()));
}

/// Dump `scenario` with `run` (a command that ends with loopspy's arguments to come) and hold
/// the one loop reported to the target's truth.
fn dump_matches_truth(mut run: Command, scenario: &Scenario, version: &str, ctx: &str) {
    // Let the target settle into the state it recorded.
    std::thread::sleep(std::time::Duration::from_millis(150));
    let before = monotonic();
    let out = run.args(["dump", "--json", "--pid", &scenario.pid().to_string()]).stdin(Stdio::null()).output().unwrap();
    let after = monotonic();
    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
    let report = json_of(&out);
    assert_eq!(report["pid"], scenario.pid(), "{ctx}");
    assert_eq!(report["loop_count"], 1, "{ctx}\n{report:#}");
    assert!(report["python"]["version"].as_str().unwrap_or_default().starts_with(&format!("{version}.")), "{ctx}\n{report:#}");
    check_layout_source(version, &report, ctx);
    check_loop(&report["loops"][0], &scenario.truth, before, after, version, ctx);
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The static binary alone in a root directory (nothing else there but a mounted /proc: no
/// libc, no loader, no /etc, no Python), in a private mount namespace, chrooted, reads a
/// target that runs outside it, as from a debug container holding only loopspy. The target's
/// files are reached through /proc/PID/root.
fn empty_root(version: &str, flavor: &str) {
    let test = "dist/empty_root";
    let Some(interp) = require_flavor(version, test, flavor) else { return };
    let Some(bin) = static_binary(test, version, flavor) else { return };
    if !is_root() {
        if in_ci() {
            panic!("CI=true but not root: the empty-root test needs unshare --mount and chroot");
        }
        eprintln!("SKIPPED {test}: needs root (unshare --mount, chroot)");
        record(test, version, flavor, "skipped (not root)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    fs::copy(&bin, root.path().join("loopspy")).unwrap();
    fs::create_dir(root.path().join("proc")).unwrap();
    let extra: &[&str] = if flavor == "uvloop" { &["--uvloop"] } else { &[] };
    let scenario = Scenario::start(interp, "blocked_task.py", extra);
    // proc is mounted in a mount namespace of this command's own, so nothing outlives it.
    let mut run = Command::new("unshare");
    run.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        r#"mount -t proc proc "$0/proc" && exec chroot "$0" /loopspy "$@""#,
    ])
    .arg(root.path())
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    dump_matches_truth(run, &scenario, version, &format!("static binary in an empty root, Python {version} [{flavor}]"));
    let left: Vec<_> = fs::read_dir(root.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 2, "the root held more than loopspy and proc: {left:?}");
    record(test, version, flavor, "pass");
}

flavor_tests!(empty_root);

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", describe(&out));
    out
}

/// `pip install loopspy-….whl` into a fresh venv of Python `venv_version` puts the static
/// binary on the venv's PATH, and that `loopspy` reads a Python `target_version` target
/// right; `pip uninstall` takes it away again (the wheel's RECORD is right).
fn pip_wheel(venv_version: &str, target_version: &str) {
    let test = "dist/pip_wheel";
    let variant = format!("venv{venv_version}");
    let (Some(venv_python), Some(target)) = (require(venv_version, test), require(target_version, test)) else { return };
    let Some(wheel) = wheel(test, target_version, &variant) else { return };
    let Some(bin) = static_binary(test, target_version, &variant) else { return };
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    run_ok(Command::new(&venv_python.path).args(["-m", "venv"]).arg(&venv), &format!("python{venv_version} -m venv"));
    let pip = |args: &[&str]| {
        let mut cmd = Command::new(venv.join("bin/python"));
        cmd.args(["-m", "pip", "--disable-pip-version-check", "--no-input"]).args(args).env("PIP_NO_INDEX", "1");
        cmd
    };
    let pip_version = String::from_utf8_lossy(&run_ok(&mut pip(&["--version"]), "pip --version").stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or("?")
        .to_string();
    run_ok(pip(&["install", "--no-deps"]).arg(&wheel), &format!("pip {pip_version} (Python {venv_version}) install {}", wheel.display()));
    let installed = venv.join("bin/loopspy");
    assert_eq!(fs::read(&installed).unwrap(), fs::read(&bin).unwrap(), "the venv's bin/loopspy is not the static binary");

    let scenario = Scenario::start(target, "blocked_callback.py", &[]);
    let ctx = format!("loopspy from a Python {venv_version} venv (pip {pip_version}), target Python {target_version}");
    // As a user runs it: the venv's bin first on PATH, nothing else from our environment.
    let mut run = Command::new("loopspy");
    run.env_clear().env("PATH", format!("{}:/usr/bin:/bin", venv.join("bin").display()));
    dump_matches_truth(run, &scenario, target_version, &ctx);

    run_ok(&mut pip(&["uninstall", "--yes", "loopspy"]), "pip uninstall loopspy");
    assert!(!installed.exists(), "pip uninstall left {}", installed.display());
    record(test, target_version, &variant, &format!("pass (pip {pip_version} on Python {venv_version})"));
}

/// The oldest pip that ships with a supported Python (3.9's) installing for a newer target.
#[test]
fn pip_wheel_venv3_9_target3_13() {
    pip_wheel("3.9", "3.13");
}

/// A newer pip, and a target without a shared libpython (Debian's static 3.14).
#[test]
fn pip_wheel_venv3_13_target3_14() {
    pip_wheel("3.13", "3.14");
}

/// The wheel's tags: any Python 3, no ABI, the platform tags of a static x86_64 binary; the
/// binary is the only file outside the metadata.
#[test]
fn wheel_name_and_contents() {
    let Some(wheel) = wheel("dist/wheel_contents", "-", "-") else { return };
    let name = wheel.file_name().unwrap().to_str().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(name, format!("loopspy-{version}-py3-none-manylinux_2_5_x86_64.manylinux1_x86_64.musllinux_1_1_x86_64.whl"));
    // The zip's listing, by Python's own zipfile (the reader pip uses).
    let out = run_ok(
        Command::new("python3").args(["-c", "import json,sys,zipfile; print(json.dumps({i.filename: i.external_attr >> 16 for i in zipfile.ZipFile(sys.argv[1]).infolist()}))"]).arg(&wheel),
        "list the wheel",
    );
    let listing: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<_> = listing.as_object().unwrap().keys().cloned().collect();
    names.sort();
    let d = format!("loopspy-{version}");
    assert_eq!(
        names,
        [
            format!("{d}.data/scripts/loopspy"),
            format!("{d}.dist-info/LICENSE"),
            format!("{d}.dist-info/METADATA"),
            format!("{d}.dist-info/RECORD"),
            format!("{d}.dist-info/WHEEL"),
        ]
    );
    assert_eq!(listing[format!("{d}.data/scripts/loopspy")].as_u64().unwrap() & 0o777, 0o755, "the binary is executable");
}
