//! Permission errors that diagnose, for real: loopspy run as `nobody` (`setpriv`) against a
//! root-owned target, a target of its own user, and one of its own user that made itself not
//! dumpable (`prctl(PR_SET_DUMPABLE, 0)`). Each diagnosis is checked line for line against the
//! facts this test knows or reads itself: the ids it gave the target (confirmed by the
//! target), `kernel.yama.ptrace_scope`, whether it runs under a seccomp filter.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use serde_json::Value;

const NOBODY: u32 = 65534;

/// Root is needed to run loopspy and the targets as other users; `setpriv` (util-linux) to
/// switch. Outside CI a missing piece is a loud skip.
fn can_run(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let setpriv = Command::new("setpriv").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if root && setpriv {
        return true;
    }
    if in_ci() {
        panic!("CI=true but {test} needs root and setpriv (root: {root}, setpriv: {setpriv})");
    }
    eprintln!("SKIPPED {test}: needs root and setpriv (root: {root}, setpriv: {setpriv})");
    record(test, "-", "-", "skipped (needs root and setpriv)");
    false
}

/// The loopspy binary where `nobody` may run it: in place when every directory above it lets
/// others through, else a copy in a directory of its own.
fn loopspy_for_nobody() -> PathBuf {
    static PATH: OnceLock<(PathBuf, Option<tempfile::TempDir>)> = OnceLock::new();
    let (path, _) = PATH.get_or_init(|| {
        let bin = loopspy_bin();
        let open = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
        if bin.ancestors().all(open) {
            return (bin, None);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.path().join("loopspy");
        std::fs::copy(&bin, &copy).unwrap();
        (copy, Some(dir))
    });
    path.clone()
}

/// `loopspy dump --json --pid PID` as nobody (uid and gid 65534, no groups).
fn dump_as_nobody(pid: i32) -> Output {
    Command::new("setpriv")
        .args([format!("--reuid={NOBODY}"), format!("--regid={NOBODY}"), "--clear-groups".into(), "--".into()])
        .arg(loopspy_for_nobody())
        .args(["dump", "--json", "--pid", &pid.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ptrace_scope() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok().and_then(|s| s.trim().parse().ok())
}

fn cap_sys_ptrace() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|h| u64::from_str_radix(h.trim(), 16).ok());
    caps.is_some_and(|c| c & (1 << 19) != 0)
}

/// `Seccomp: 2` in our status: loopspy, started by us, inherits the filter.
fn seccomp_filter() -> bool {
    std::fs::read_to_string("/proc/self/status").unwrap().lines().any(|l| l.strip_prefix("Seccomp:").is_some_and(|v| v.trim() == "2"))
}

/// The two lines after the first of the message: the facts and the cure.
fn diagnosis(out: &Output, pid: i32) -> (String, String) {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.starts_with(&format!("loopspy: permission denied reading process {pid} (")), "{}", describe(out));
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 3, "{}", describe(out));
    (lines[1].trim().to_string(), lines[2].trim().to_string())
}

/// The facts line loopspy (as nobody) must print for a target of `uid`/`gid`.
fn facts(pid: i32, uid: u32, gid: u32, not_dumpable: bool) -> String {
    let scope = ptrace_scope().map(|s| format!(", kernel.yama.ptrace_scope is {s}")).unwrap_or_default();
    let dumpable = if not_dumpable { format!(", process {pid} is not dumpable") } else { String::new() };
    let seccomp = if seccomp_filter() { ", loopspy runs under a seccomp filter" } else { "" };
    format!("process {pid} runs as uid {uid} gid {gid}, loopspy runs as uid {NOBODY} gid {NOBODY} without CAP_SYS_PTRACE{scope}{dumpable}{seccomp}.")
}

const SCOPE_3: &str = "ptrace_scope 3 forbids reading any other process until the machine reboots: nothing loopspy can do.";

/// tests/targets/drop_privileges.py: started as root, it becomes `nobody` and sets its
/// dumpable flag. Its truth says what the kernel made of that.
fn nobody_target(interp: &Interp, dumpable: bool) -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    // The target writes its truth after it stopped being root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let truth_path = dir.path().join("truth.json");
    let mut child = Command::new(&interp.path)
        .arg(targets_dir().join("drop_privileges.py"))
        .arg(&truth_path)
        .args([NOBODY.to_string(), NOBODY.to_string(), u8::from(dumpable).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let truth = wait_for_json(&truth_path, &mut child, Duration::from_secs(30));
    assert_eq!(truth["uids"], serde_json::json!([NOBODY, NOBODY, NOBODY]), "{truth}");
    assert_eq!(truth["gids"], serde_json::json!([NOBODY, NOBODY, NOBODY]), "{truth}");
    assert_eq!(truth["dumpable"], u8::from(dumpable), "{truth}");
    Scenario { child, truth, dir }
}

/// A root-owned target: another user's, and root's.
#[test]
fn root_owned_target() {
    let test = "permissions/root_owned";
    if !can_run(test) {
        return;
    }
    let Some(interp) = require("3.12", test) else { return };
    let target = Scenario::start(interp, "idle.py", &[]);
    let pid = target.pid();
    let out = dump_as_nobody(pid);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let (facts_line, cure) = diagnosis(&out, pid);
    assert_eq!(facts_line, facts(pid, 0, 0, false));
    let want = if ptrace_scope() == Some(3) { SCOPE_3 } else { "Run loopspy as the target's user, root: `sudo loopspy ...`." };
    assert_eq!(cure, want);
    // The same diagnosis in the JSON error.
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["kind"], "permission_denied");
    assert!(err["error"]["message"].as_str().unwrap().contains(&facts_line), "{err}");
    record(test, "3.12", "stock", "ok");
}

/// A target of loopspy's own user: read when Yama allows it (no Yama, or ptrace_scope 0);
/// refused with the scope named when it does not (1: only descendants, 2: only
/// CAP_SYS_PTRACE, 3: nobody). Its interpreter's files are under /root, where nobody may not
/// look: 3.12's shared libpython is found from the target's memory alone; 3.15's executable is
/// read through /proc/PID/exe.
fn same_user(version: &str) {
    let test = "permissions/same_user";
    if !can_run(test) {
        return;
    }
    let Some(interp) = require(version, test) else { return };
    let target = nobody_target(interp, true);
    let pid = target.pid();
    std::thread::sleep(Duration::from_millis(100));
    let out = dump_as_nobody(pid);
    let cure = match ptrace_scope() {
        None | Some(0) => None,
        Some(1) => Some("ptrace_scope 1 lets a process read only its descendants"),
        Some(2) => Some("ptrace_scope 2 lets only CAP_SYS_PTRACE read other processes"),
        Some(_) => Some(SCOPE_3),
    };
    match cure {
        None if seccomp_filter() && out.status.code() == Some(4) => {
            // A seccomp filter may refuse process_vm_readv: then it must say so.
            let (facts_line, cure) = diagnosis(&out, pid);
            assert_eq!(facts_line, facts(pid, NOBODY, NOBODY, false));
            assert!(cure.starts_with("The seccomp filter loopspy runs under may refuse process_vm_readv"), "{cure}");
        }
        None => {
            assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
            let report = json_of(&out);
            let thread = &report["loops"][0]["thread"];
            assert_eq!(thread["native_id"], target.truth["thread_native_id"], "{report:#}");
            assert_eq!(report["loops"][0]["state"]["state"], "idle", "{report:#}");
            assert!(report["python"]["version"].as_str().unwrap().starts_with(&format!("{version}.")), "{report:#}");
        }
        Some(want) => {
            assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
            let (facts_line, cure) = diagnosis(&out, pid);
            assert_eq!(facts_line, facts(pid, NOBODY, NOBODY, false));
            assert!(cure.starts_with(want), "{cure}");
        }
    }
    record(test, version, "stock", "ok");
}

mod same_user {
    #[test]
    fn py3_12() {
        super::same_user("3.12")
    }
    #[test]
    fn py3_15() {
        super::same_user("3.15")
    }
}

/// A target of loopspy's own user that called prctl(PR_SET_DUMPABLE, 0): only root or
/// CAP_SYS_PTRACE may read it, and the message says it is not dumpable.
#[test]
fn not_dumpable_target() {
    let test = "permissions/not_dumpable";
    if !can_run(test) {
        return;
    }
    let Some(interp) = require("3.12", test) else { return };
    let target = nobody_target(interp, false);
    let pid = target.pid();
    let out = dump_as_nobody(pid);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let (facts_line, cure) = diagnosis(&out, pid);
    assert_eq!(facts_line, facts(pid, NOBODY, NOBODY, true));
    let want = if ptrace_scope() == Some(3) {
        SCOPE_3
    } else {
        "The target is not dumpable (it changed its uid, or called prctl(PR_SET_DUMPABLE, 0)): only root or CAP_SYS_PTRACE may \
         read it: `sudo loopspy ...`."
    };
    assert_eq!(cure, want);
    // Root with CAP_SYS_PTRACE reads it.
    if cap_sys_ptrace() {
        let (out, _, _) = loopspy(&["dump", "--json", "--pid", &pid.to_string()]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert_eq!(json_of(&out)["loops"][0]["thread"]["native_id"], target.truth["thread_native_id"]);
    }
    record(test, "3.12", "stock", "ok");
}
