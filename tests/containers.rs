//! Attaching across namespaces and to interpreters whose files are not where `/proc/PID/maps`
//! says, with real targets, figures checked against what the target measured itself:
//!
//! - a target in its own PID and mount namespace (`unshare --pid --mount --fork
//!   --mount-proc`), attached by its host PID: thread ids as it sees them (`NSpid`), the
//!   system call its loop thread waits in (`dump`), and `waiting_in` of every episode
//!   (`record`);
//! - a shared libpython deleted, or replaced by another build, after the target loaded it (an
//!   in-place upgrade): the same report as before the file went;
//! - a target in a chroot inside a private mount namespace.
//!
//! Versions are chosen one per code path (not all eight: each case starts its own target):
//! thread ids from `struct pthread` (3.8–3.10) or from `native_thread_id` (3.11+, published
//! by 3.13+); the interpreter's version from a file name (≤ 3.10) or `Py_Version` (3.11+);
//! `interpreters.head` from the table (≤ 3.12) or the interpreter (3.13+); a pyenv shared
//! libpython or Debian's static executable; the stock loop and uvloop.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn minor(version: &str) -> u32 {
    version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0)
}

/// Is this machine able to run the case (root, `unshare`, `chroot`)? Outside CI a missing
/// piece is a loud skip; under CI a failure.
fn can_run(test: &str, version: &str, flavor: &str, tools: &[&str]) -> bool {
    let mut missing: Vec<String> = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".into());
    }
    for tool in tools {
        let found = Command::new(tool).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !found {
            missing.push((*tool).to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    if in_ci() {
        panic!("CI=true but {test} needs {missing:?}");
    }
    eprintln!("SKIPPED {test} {version} {flavor}: needs {missing:?}");
    record(test, version, flavor, &format!("skipped (needs {})", missing.join(", ")));
    false
}

/// A target started by a wrapper (`unshare`, a shell): the wrapper is the child we hold, the
/// Python process one of its descendants. Both are killed on drop (SIGKILL: a namespace's
/// init ignores other signals from outside).
struct Wrapped {
    wrapper: Child,
    /// The Python process's PID in our namespace.
    pid: i32,
    truth: Value,
    _dir: tempfile::TempDir,
}

impl Drop for Wrapped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGKILL);
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

/// The process under `wrapper` running `marker` in its command line.
fn python_under(wrapper: u32, marker: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = loopspy::process::procfs::descendants(wrapper as i32).into_iter().find(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains(marker)
        });
        if let Some(p) = found {
            return p;
        }
        assert!(Instant::now() < deadline, "no process running {marker} under {wrapper}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `script` (from tests/targets) under `interp` in a PID and mount namespace of its own.
fn in_pid_namespace(interp: &Interp, flavor: &str, script: &str) -> Wrapped {
    let dir = tempfile::tempdir().unwrap();
    let truth_path = dir.path().join("truth.json");
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--mount", "--fork", "--mount-proc", "--kill-child", "--"]);
    cmd.arg(&interp.path).arg(targets_dir().join(script)).arg(&truth_path);
    if flavor == "uvloop" {
        cmd.arg("--uvloop").env("PYTHONPATH", interp.uvloop.as_ref().expect("uvloop"));
    }
    let mut wrapper = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn().expect("unshare");
    let truth = wait_for_json(&truth_path, &mut wrapper, Duration::from_secs(30));
    let pid = python_under(wrapper.id(), script);
    Wrapped { wrapper, pid, truth, _dir: dir }
}

/// The system call thread `tid` of `pid` is blocked in, as the kernel tells us.
fn kernel_syscall(pid: i32, tid: i32) -> Option<&'static str> {
    match loopspy::process::procfs::thread_syscall(pid, tid).ok()? {
        loopspy::process::procfs::Syscall::In(nr) => loopspy::process::procfs::syscall_name(nr),
        _ => None,
    }
}

/// The sleep `time.sleep` is made of: `select()` up to 3.10, `clock_nanosleep` since.
fn sleep_syscall(version: &str) -> &'static str {
    if minor(version) <= 10 {
        "pselect6"
    } else {
        "clock_nanosleep"
    }
}

/// A target in its own PID namespace, attached by its host PID: `native_id` is the id it
/// measured itself (1, the namespace's init), `host_tid` ours; the syscall of its loop thread
/// and the `waiting_in` of every episode are those the kernel shows under our id.
fn pid_namespace(version: &str, flavor: &str) {
    let test = "containers/pid_namespace";
    let Some(interp) = require_flavor(version, test, flavor) else { return };
    if !can_run(test, version, flavor, &["unshare"]) {
        return;
    }
    record(test, version, flavor, "FAIL");
    let target = in_pid_namespace(interp, flavor, "periodic_block.py");
    let t = &target.truth;
    let ctx = format!("Python {version} [{flavor}], host PID {}, truth {t}", target.pid);
    assert_eq!(t["pid"], 1, "the target is its namespace's init; {ctx}");
    let host = target.pid.to_string();

    let (out, _, _) = loopspy(&["dump", "--json", "--pid", &host]);
    assert_eq!(out.status.code(), Some(0), "{ctx}\n{}", describe(&out));
    let report = json_of(&out);
    let l = &report["loops"][0];
    assert_eq!(l["thread"]["native_id"], t["thread_native_id"], "{ctx}\n{l:#}");
    assert_eq!(l["thread"]["host_tid"], target.pid, "{ctx}\n{l:#}");
    assert_eq!(l["thread"]["name"], t["thread_name"], "{ctx}");
    assert_eq!(l["loop_class"], t["loop_class"], "{ctx}");
    let brief = report["threads"].as_array().unwrap().iter().find(|b| b["native_id"] == t["thread_native_id"]).cloned();
    assert_eq!(brief.map(|b| b["host_tid"].clone()), Some(Value::from(target.pid)), "{ctx}\n{report:#}");
    // The kernel's view of the loop thread is there: on a CPU (a callback running), or
    // blocked: idle in epoll, or in `slow_query`'s sleep.
    let on_cpu = l["state"]["on_cpu"].as_bool().unwrap_or_else(|| panic!("state.on_cpu is null; {ctx}\n{l:#}"));
    // (Off a CPU and in no system call is a page fault: nothing to compare.)
    if let (false, Some(syscall)) = (on_cpu, l["state"]["syscall"].as_str()) {
        match l["state"]["state"].as_str() {
            Some("idle") => {
                assert!(syscall.starts_with("epoll_"), "idle in {syscall}; {ctx}");
                // Still idle in the same call a moment later, unless the loop woke up meanwhile.
                let now = kernel_syscall(target.pid, target.pid);
                assert!(now.is_none_or(|k| k == syscall || !k.starts_with("epoll_")), "{syscall} vs the kernel's {now:?}; {ctx}");
            }
            Some("callback") => assert_eq!(syscall, sleep_syscall(version), "{ctx}\n{l:#}"),
            _ => {}
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let (out, _, _) = loopspy(&["record", "--pid", &host, "--rate", "100", "--duration", "2.2", "-o", json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{ctx}\n{}", describe(&out));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let l = &r["loops"][0];
    assert_eq!(l["native_id"], t["thread_native_id"], "{ctx}");
    let episodes = l["episodes"].as_array().unwrap();
    // A 300 ms block about every second: at least one whole one in 2.2 s.
    let whole = episodes.iter().filter(|e| e["duration_ms"].as_f64().unwrap_or(0.0) >= 250.0).count();
    assert!(whole >= 1, "{ctx}\nepisodes {episodes:#?}");
    for e in episodes {
        assert_eq!(e["function"], "slow_query", "{ctx}\n{e}");
        assert_eq!(e["on_cpu"], false, "{ctx}\n{e}");
        assert_eq!(e["waiting_in"], sleep_syscall(version), "{ctx}\n{e}");
    }
    record(test, version, flavor, "ok");
}

mod pid_namespace {
    // struct pthread's tid (3.8–3.10), the thread state's field (3.11+), published (3.13+).
    #[test]
    fn py3_9_stock() {
        super::pid_namespace("3.9", "stock")
    }
    #[test]
    fn py3_12_uvloop() {
        super::pid_namespace("3.12", "uvloop")
    }
    #[test]
    fn py3_14_stock() {
        super::pid_namespace("3.14", "stock")
    }
}

/// What a dump says that must not depend on how the interpreter was found: everything but
/// the moment-to-moment figures (timer due times) and the addresses.
fn comparable(report: &Value) -> Value {
    let loops: Vec<Value> = report["loops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            serde_json::json!({
                "thread": l["thread"],
                "loop_class": l["loop_class"],
                "loop_kind": l["loop_kind"],
                "state": l["state"]["state"],
                "syscall": l["state"]["syscall"],
                "ready": l["ready"],
                "timers": l["timers"]["count"],
                "earliest_when": l["timers"]["earliest"]["when"],
                "fds": l["fds"],
                "selector": l["selector"],
                "stack": l["stack"],
                "tasks": l["tasks"]["counts"],
            })
        })
        .collect();
    serde_json::json!({"python": report["python"], "layout": report["layout"], "loops": loops, "threads": report["threads"]})
}

/// The loop of an idle.py report against the truth the target recorded.
fn check_idle(report: &Value, t: &Value, ctx: &str) {
    let l = &report["loops"][0];
    let ctx = format!("{ctx}\nreport: {l:#}\ntruth: {t:#}");
    assert_eq!(report["loop_count"], 1, "{ctx}");
    assert_eq!(l["thread"]["native_id"], t["thread_native_id"], "{ctx}");
    assert_eq!(l["thread"]["name"], t["thread_name"], "{ctx}");
    assert_eq!(l["loop_class"], t["loop_class"], "{ctx}");
    assert_eq!(l["state"]["state"], t["state"], "{ctx}");
    assert_eq!(l["ready"], t["ready"], "{ctx}");
    assert_eq!(l["timers"]["count"], t["timers"], "{ctx}");
    assert_eq!(l["selector"], t["selector"], "{ctx}");
    if !t["fds"].is_null() {
        assert_eq!(l["fds"], t["fds"], "{ctx}");
    }
    let when = l["timers"]["earliest"]["when"].as_f64().unwrap_or(f64::NAN);
    let truth_when = t["earliest_live_when"].as_f64().unwrap_or(f64::NAN);
    assert!((when - truth_when).abs() < 1e-6, "earliest timer {when} vs {truth_when}; {ctx}");
    assert!(l["state"]["syscall"].as_str().is_some_and(|s| s.starts_with("epoll_")), "{ctx}");
}

/// 3.13+ publish their layout: it must be read (from the file, or from memory) and agree.
fn check_layout(version: &str, report: &Value, ctx: &str) {
    let layout = &report["layout"];
    let source = layout["source"].as_str().unwrap_or_default();
    if minor(version) >= 13 {
        assert!(source.starts_with("_Py_DebugOffsets"), "layout {layout}; {ctx}");
        assert_eq!(layout["differences"], serde_json::json!([]), "{ctx}");
    } else {
        assert!(source.starts_with("table"), "layout {layout}; {ctx}");
    }
    if minor(version) >= 14 {
        assert!(source.ends_with("AsyncioDebug"), "layout {layout}; {ctx}");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    /// The library file is deleted.
    Delete,
    /// Deleted, and another build (another version's libpython) put under its name.
    Replace,
}

/// A pyenv interpreter's shared libpython, copied to a directory of its own and loaded from
/// there (`LD_LIBRARY_PATH`), then deleted or replaced while the target runs: the report is
/// the one loopspy gave before, and the truth's.
fn upgraded_library(version: &str, flavor: &str, how: Upgrade) {
    let test = "containers/upgraded_library";
    let Some(interp) = require_flavor(version, test, flavor) else { return };
    let lib_name = format!("libpython{version}.so.1.0");
    let lib = interp.path.parent().and_then(Path::parent).map(|p| p.join("lib").join(&lib_name)).filter(|p| p.exists());
    // Debian's 3.14/3.15 link libpython statically: nothing to delete there.
    let lib = lib.unwrap_or_else(|| panic!("{test} needs a shared libpython for {version} ({lib_name} next to {})", interp.path.display()));
    upgraded(test, version, flavor, how, &lib, |cmd, copy| {
        cmd.arg(targets_dir().join("idle.py")).env("LD_LIBRARY_PATH", copy.parent().unwrap());
    });
}

/// The same with the executable: Debian's static 3.14, copied and started from the copy
/// (`PYTHONHOME` where its library is), which is then deleted. py-spy reads it through
/// `/proc/PID/exe`; the interpreter's published offsets must be read too.
fn upgraded_executable(version: &str, flavor: &str) {
    let test = "containers/upgraded_executable";
    let Some(interp) = require_flavor(version, test, flavor) else { return };
    let home = interp.path.parent().and_then(Path::parent).unwrap().to_path_buf();
    upgraded(test, version, flavor, Upgrade::Delete, &interp.path.clone(), |cmd, copy| {
        *cmd = Command::new(copy);
        cmd.arg(targets_dir().join("idle.py")).env("PYTHONHOME", &home);
        if flavor == "uvloop" {
            cmd.env("PYTHONPATH", interp.uvloop.as_ref().unwrap());
        }
    });
}

/// Copy `file` to a directory of its own, start idle.py (`setup` makes the command, given the
/// copy's path) so that it maps the copy, dump, delete (or replace) the copy, dump again.
fn upgraded(test: &str, version: &str, flavor: &str, how: Upgrade, file: &Path, setup: impl FnOnce(&mut Command, &Path)) {
    let variant = format!("{flavor}, {how:?}");
    let interp = require_flavor(version, test, flavor).unwrap();
    record(test, version, &variant, "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let copy_dir = dir.path().join("copy");
    std::fs::create_dir(&copy_dir).unwrap();
    let copy = copy_dir.join(file.file_name().unwrap());
    std::fs::copy(file, &copy).unwrap();
    let truth_path = dir.path().join("truth.json");
    let mut cmd = python(interp, flavor);
    setup(&mut cmd, &copy);
    cmd.arg(&truth_path);
    if flavor == "uvloop" {
        cmd.arg("--uvloop");
    }
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
    let truth = wait_for_json(&truth_path, &mut child, Duration::from_secs(30));
    let target = Scenario { child, truth, dir };
    let pid = target.pid();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(maps.contains(copy.to_str().unwrap()), "the target maps the copy");
    let ctx = format!("Python {version} [{variant}], PID {pid}, {}", copy.display());
    std::thread::sleep(Duration::from_millis(150));

    let (out, _, _) = loopspy(&["dump", "--json", "--pid", &pid.to_string()]);
    assert_eq!(out.status.code(), Some(0), "before: {ctx}\n{}", describe(&out));
    let before = json_of(&out);

    std::fs::remove_file(&copy).unwrap();
    if how == Upgrade::Replace {
        let other = interpreters()
            .values()
            .filter(|i| i.version != version)
            .find_map(|i| {
                Some(i.path.parent()?.parent()?.join("lib").join(format!("libpython{}.so.1.0", i.version))).filter(|p| p.exists())
            })
            .expect("another shared libpython to replace it with");
        std::fs::copy(&other, &copy).unwrap();
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(maps.contains(&format!("{} (deleted)", copy.display())), "{ctx}: the mapped file is deleted");

    let (out, _, _) = loopspy(&["dump", "--json", "--pid", &pid.to_string()]);
    assert_eq!(out.status.code(), Some(0), "after: {ctx}\n{}", describe(&out));
    let after = json_of(&out);
    let mut expected = comparable(&before);
    if file == interp.path {
        // /proc/PID/exe says the executable was deleted.
        expected["python"]["executable"] = format!("{} (deleted)", copy.display()).into();
    }
    assert_eq!(comparable(&after), expected, "{ctx}");
    check_idle(&after, &target.truth, &ctx);
    check_layout(version, &after, &ctx);
    record(test, version, &variant, "ok");
}

mod upgraded_library {
    use super::Upgrade::*;
    // The version from the file name (≤ 3.10) / from Py_Version and interpreters.head
    // published (3.13); a replacement of another build must not be read for it.
    #[test]
    fn py3_9_stock_deleted() {
        super::upgraded_library("3.9", "stock", Delete)
    }
    #[test]
    fn py3_13_uvloop_replaced() {
        super::upgraded_library("3.13", "uvloop", Replace)
    }
    // Debian's executable holds the interpreter (there is no libpython to delete).
    #[test]
    fn py3_14_stock_executable_deleted() {
        super::upgraded_executable("3.14", "stock")
    }
}

/// Bind-mounts what the interpreter needs into an empty directory and runs it there with
/// `chroot`, in a private mount namespace: `$1` the new root, `$2` the interpreter, `$3`
/// tests/targets, `$4` the truth directory, `$5` the uvloop directory or `-`, then the
/// script's arguments.
const CHROOT_SCRIPT: &str = r#"set -eu
root=$1; py=$2; targets=$3; out=$4; uv=$5; shift 5
prefix=$(dirname "$(dirname "$py")")
for d in /usr /lib /lib64 /lib32 /libx32 /bin /sbin; do
    [ -e "$d" ] || continue
    if [ -L "$d" ]; then ln -s "$(readlink "$d")" "$root$d"; else mkdir -p "$root$d"; mount --bind "$d" "$root$d"; fi
done
for d in "$prefix" "$targets" "$out"; do mkdir -p "$root$d"; mount --bind "$d" "$root$d"; done
if [ "$uv" != - ]; then mkdir -p "$root$uv"; mount --bind "$uv" "$root$uv"; fi
mkdir -p "$root/proc"; mount -t proc proc "$root/proc"
exec chroot "$root" "$py" "$@"
"#;

/// idle.py in a chroot inside a private mount namespace: `/proc/PID/maps` names its files by
/// paths that exist only there.
fn chroot(version: &str, flavor: &str) {
    let test = "containers/chroot";
    let Some(interp) = require_flavor(version, test, flavor) else { return };
    if !can_run(test, version, flavor, &["unshare", "chroot"]) {
        return;
    }
    record(test, version, flavor, "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let (root, out_dir) = (dir.path().join("root"), dir.path().join("out"));
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&out_dir).unwrap();
    let truth_path = out_dir.join("truth.json");
    let uv = if flavor == "uvloop" { interp.uvloop.clone().expect("uvloop") } else { PathBuf::from("-") };
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--fork", "--kill-child", "--", "sh", "-c", CHROOT_SCRIPT, "sh"])
        .arg(&root)
        .arg(&interp.path)
        .arg(targets_dir())
        .arg(&out_dir)
        .arg(&uv)
        .arg(targets_dir().join("idle.py"))
        .arg(&truth_path);
    if flavor == "uvloop" {
        cmd.arg("--uvloop").env("PYTHONPATH", &uv);
    }
    let mut wrapper = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn().expect("unshare");
    let truth = wait_for_json(&truth_path, &mut wrapper, Duration::from_secs(30));
    let pid = python_under(wrapper.id(), "idle.py");
    let target = Wrapped { wrapper, pid, truth, _dir: dir };
    let ctx = format!("Python {version} [{flavor}] in a chroot, PID {pid}");
    // The paths in maps start with the chroot's own path, which does not exist for us.
    let root_link = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    assert_eq!(root_link, root, "{ctx}");
    std::thread::sleep(Duration::from_millis(150));

    let (out, _, _) = loopspy(&["dump", "--json", "--pid", &pid.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{ctx}\n{}", describe(&out));
    let report = json_of(&out);
    check_idle(&report, &target.truth, &ctx);
    check_layout(version, &report, &ctx);
    record(test, version, flavor, "ok");
}

mod chroot {
    // A pyenv shared libpython (found without py-spy), Debian's static executable (py-spy
    // through /proc/PID/exe, the published offsets through the mapped files).
    #[test]
    fn py3_12_stock() {
        super::chroot("3.12", "stock")
    }
    #[test]
    fn py3_15_uvloop() {
        super::chroot("3.15", "uvloop")
    }
}
