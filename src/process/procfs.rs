//! What the kernel says about a process and its threads, from `/proc`: existence, owner,
//! command line, threads, the syscall a thread is blocked in, its time namespace, its
//! children. Plain file reads; nothing here touches the target's memory.

pub use crate::base::error::Access;
use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;

fn proc_path(pid: i32, rest: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{rest}"))
}

fn task_path(pid: i32, tid: i32, rest: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/task/{tid}/{rest}"))
}

/// Read a small /proc file (they report a size of 0, so read to the end, bounded).
fn read_small(path: &PathBuf) -> io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    let mut buf = Vec::with_capacity(512);
    f.by_ref().take(1 << 20).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Does a process with this PID exist (in our PID namespace)?
pub fn exists(pid: i32) -> bool {
    pid > 0 && proc_path(pid, "").exists()
}

/// The one-letter scheduler state of a process or thread (`R`, `S`, `D`, `Z`, `T`, ...).
pub fn state(pid: i32) -> io::Result<char> {
    parse_stat_state(&read_small(&proc_path(pid, "stat"))?)
}

pub fn thread_state(pid: i32, tid: i32) -> io::Result<char> {
    parse_stat_state(&read_small(&task_path(pid, tid, "stat"))?)
}

/// The state field follows the `(comm)` field, which may itself contain spaces and ')'.
pub fn parse_stat_state(stat: &[u8]) -> io::Result<char> {
    let close = stat.iter().rposition(|b| *b == b')').ok_or_else(|| io::Error::other("bad stat"))?;
    stat.get(close + 2).map(|b| *b as char).ok_or_else(|| io::Error::other("bad stat"))
}

/// Who a process is: its PID with its start time, which together name one process for the
/// life of the machine (a PID is reused once its process is gone; the start time is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    pub pid: i32,
    /// Clock ticks after boot at which the process started (`stat` field 22).
    pub start: u64,
}

/// A process's parent and start, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatInfo {
    pub state: char,
    pub ppid: i32,
    pub start: u64,
}

pub fn stat_info(pid: i32) -> io::Result<StatInfo> {
    parse_stat_info(&read_small(&proc_path(pid, "stat"))?)
}

/// The process's [`Identity`], if it is there.
pub fn identity(pid: i32) -> io::Result<Identity> {
    stat_info(pid).map(|s| Identity { pid, start: s.start })
}

/// State, parent and start time from a `stat` line (fields after the `(comm)` one, which may
/// itself hold spaces and ')').
pub fn parse_stat_info(stat: &[u8]) -> io::Result<StatInfo> {
    let bad = || io::Error::other("bad stat");
    let close = stat.iter().rposition(|b| *b == b')').ok_or_else(bad)?;
    // After "(comm)": state(3) ppid(4) pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime(22).
    let fields: Vec<&[u8]> = stat[close + 1..].split(|b| *b == b' ').filter(|f| !f.is_empty()).collect();
    let text = |i: usize| fields.get(i).and_then(|f| std::str::from_utf8(f).ok()).ok_or_else(bad);
    let state = text(0)?.chars().next().ok_or_else(bad)?;
    let ppid = text(1)?.parse().map_err(|_| bad())?;
    let start = text(19)?.trim().parse().map_err(|_| bad())?;
    Ok(StatInfo { state, ppid, start })
}

/// A process that has exited but not been reaped, or is gone altogether.
pub fn is_dead(pid: i32) -> bool {
    !exists(pid) || matches!(state(pid), Ok('Z') | Ok('X') | Err(_))
}

/// `argv` of a process, joined with spaces (empty for kernel threads and zombies).
pub fn cmdline(pid: i32) -> io::Result<Vec<String>> {
    let raw = read_small(&proc_path(pid, "cmdline"))?;
    Ok(raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

/// The executable of a process.
pub fn exe(pid: i32) -> io::Result<PathBuf> {
    fs::read_link(proc_path(pid, "exe"))
}

/// `AT_RANDOM` from `/proc/PID/auxv`: where the kernel put 16 random bytes on the initial
/// stack at the process's last `exec()` (a new program gets new ones).
/// `Ok(None)` when the vector is empty (a process that is exiting has no memory left).
pub fn at_random(pid: i32) -> io::Result<Option<u64>> {
    const AT_RANDOM: u64 = 25;
    let raw = read_small(&proc_path(pid, "auxv"))?;
    Ok(raw.chunks_exact(16).find_map(|pair| {
        let key = u64::from_le_bytes(pair[..8].try_into().ok()?);
        let value = u64::from_le_bytes(pair[8..].try_into().ok()?);
        (key == AT_RANDOM).then_some(value)
    }))
}

/// Is the process on its way out (`PF_EXITING` in its main thread's flags: it called
/// `exit`, or was killed, and is tearing down)? False when it cannot be told.
pub fn exiting(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = read_small(&proc_path(pid, "stat")) else { return false };
    let Some(close) = stat.iter().rposition(|b| *b == b')') else { return false };
    // After "(comm)": state ppid pgrp session tty_nr tpgid flags ...
    let fields: Vec<&[u8]> = stat[close + 1..].split(|b| *b == b' ').filter(|f| !f.is_empty()).collect();
    let flags = fields.get(6).and_then(|f| std::str::from_utf8(f).ok()).and_then(|f| f.parse::<u64>().ok());
    flags.is_some_and(|f| f & PF_EXITING != 0)
}

/// The working directory of a process.
pub fn cwd(pid: i32) -> io::Result<PathBuf> {
    fs::read_link(proc_path(pid, "cwd"))
}

/// The thread ids of a process.
pub fn tids(pid: i32) -> io::Result<Vec<i32>> {
    let mut out: Vec<i32> = fs::read_dir(proc_path(pid, "task"))?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    out.sort_unstable();
    Ok(out)
}

/// A thread of a process under both of its ids: `tid` as loopspy's PID namespace sees it (the
/// name of its `/proc/PID/task/TID` directory), `ns_tid` as the process's own PID namespace
/// sees it (what `threading.get_native_id()` and the interpreter record there). The two are
/// equal unless the process runs in a PID namespace of its own (a container).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskId {
    pub tid: i32,
    pub ns_tid: i32,
}

/// The threads of a process with their ids in its own PID namespace (`NSpid` in each thread's
/// `status`: the ids from our namespace down to the process's, the last being its own). A
/// process in our namespace (one id in its `NSpid`, or a kernel without the line) costs one
/// read; threads that vanish while they are listed are left out.
pub fn task_ids(pid: i32) -> io::Result<Vec<TaskId>> {
    let tids = tids(pid)?;
    let nested = read_small(&proc_path(pid, "status")).map(|raw| parse_nspid(&raw).len() > 1).unwrap_or(false);
    if !nested {
        return Ok(tids.into_iter().map(|tid| TaskId { tid, ns_tid: tid }).collect());
    }
    Ok(tids
        .into_iter()
        .filter_map(|tid| {
            let raw = read_small(&task_path(pid, tid, "status")).ok()?;
            let ns_tid = *parse_nspid(&raw).last()?;
            Some(TaskId { tid, ns_tid })
        })
        .collect())
}

/// The ids of the `NSpid:` line of a `status` file, outermost (ours) first; empty without one.
pub fn parse_nspid(status: &[u8]) -> Vec<i32> {
    let text = String::from_utf8_lossy(status);
    text.lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|rest| rest.split_whitespace().map_while(|v| v.parse::<i32>().ok().filter(|v| *v > 0)).take(64).collect())
        .unwrap_or_default()
}

/// The real uid owning a process (from `/proc/PID/status`).
pub fn uid(pid: i32) -> io::Result<u32> {
    let raw = read_small(&proc_path(pid, "status"))?;
    let text = String::from_utf8_lossy(&raw);
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other("no Uid in status"))
}

/// Every process `/proc` lists now (bounded), in ascending order.
pub fn pids() -> Vec<i32> {
    let mut out: Vec<i32> = fs::read_dir("/proc")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()).take(1 << 20).collect())
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// Direct children of a process (all of its threads' children).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for tid in tids(pid).unwrap_or_default() {
        if let Ok(raw) = read_small(&task_path(pid, tid, "children")) {
            out.extend(String::from_utf8_lossy(&raw).split_whitespace().filter_map(|s| s.parse::<i32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Every descendant of a process, breadth first, bounded.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for c in children(p) {
            if !out.contains(&c) && out.len() < 4096 {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// The PID of a process in its own (innermost) PID namespace: the last `NSpid` entry of
/// `/proc/PID/status` (what its `getpid()` returns). `None` when the kernel does not say.
pub fn ns_pid(pid: i32) -> Option<i32> {
    status_field(&pid.to_string(), "NSpid:")?.split_whitespace().last()?.parse().ok()
}

/// Capability bit of CAP_SYS_PTRACE in `CapEff`.
const CAP_SYS_PTRACE: u32 = 19;

fn status_field(pid: &str, field: &str) -> Option<String> {
    let raw = read_small(&PathBuf::from(format!("/proc/{pid}/status"))).ok()?;
    let text = String::from_utf8_lossy(&raw);
    text.lines().find_map(|l| l.strip_prefix(field)).map(|v| v.trim().to_string())
}

/// The facts behind a permission error reading `pid`.
pub fn access(pid: i32) -> Access {
    use std::os::unix::fs::MetadataExt;
    let ids = |who: &str, field: &str| -> Option<[u32; 3]> {
        let line = status_field(who, field)?;
        let v: Vec<u32> = line.split_whitespace().take(3).filter_map(|x| x.parse().ok()).collect();
        v.try_into().ok()
    };
    let pid_s = pid.to_string();
    let target_uids = ids(&pid_s, "Uid:");
    let ptrace_scope = fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok().and_then(|s| s.trim().parse().ok());
    let cap_sys_ptrace = status_field("self", "CapEff:")
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_PTRACE) != 0);
    let files_owner = fs::metadata(proc_path(pid, "maps")).ok().map(|m| m.uid());
    let target_not_dumpable = matches!((files_owner, target_uids), (Some(0), Some([u, _, _])) if u != 0);
    Access {
        our_uid: nix::unistd::getuid().as_raw(),
        our_gid: nix::unistd::getgid().as_raw(),
        target_uids,
        target_gids: ids(&pid_s, "Gid:"),
        ptrace_scope,
        cap_sys_ptrace,
        target_not_dumpable,
        seccomp_filter: status_field("self", "Seccomp:").is_some_and(|m| m == "2"),
    }
}

/// What a thread is doing in the kernel, from `/proc/PID/task/TID/syscall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syscall {
    /// On a CPU (or runnable), in user space.
    Running,
    /// Blocked inside system call `nr`.
    In(i64),
    /// Blocked but not in a system call (e.g. a page fault).
    Blocked,
}

/// Should the syscall file be read again? The kernel says "running" whenever the thread
/// changed state while it read the file (it waits for the thread to be off a CPU, then checks
/// it did not wake), so a thread that sleeps briefly and often (fsync after fsync, small
/// reads) reads as running far more often than it runs. When the state read just after says
/// it sleeps, a second read names the call it sleeps in.
///
/// Measured on a thread doing write+fsync, blocked 74 % of the time (schedstat): "running" in
/// 48 % of reads, 35 % with the second read (the rest: it woke and slept again within a read).
pub fn worth_rereading(syscall: Option<Syscall>, state: Option<char>) -> bool {
    syscall == Some(Syscall::Running) && matches!(state, Some('S' | 'D'))
}

pub fn thread_syscall(pid: i32, tid: i32) -> io::Result<Syscall> {
    parse_syscall(&read_small(&task_path(pid, tid, "syscall"))?)
}

pub fn parse_syscall(raw: &[u8]) -> io::Result<Syscall> {
    let text = String::from_utf8_lossy(raw);
    let first = text.split_whitespace().next().ok_or_else(|| io::Error::other("empty syscall file"))?;
    match first {
        "running" => Ok(Syscall::Running),
        "-1" => Ok(Syscall::Blocked),
        n => n.parse().map(Syscall::In).map_err(|_| io::Error::other(format!("bad syscall file: {text}"))),
    }
}

/// Names of the x86_64 system calls a blocked event-loop thread is likely to sit in.
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    Some(match nr {
        0 => "read",
        1 => "write",
        2 => "open",
        3 => "close",
        4 => "stat",
        5 => "fstat",
        6 => "lstat",
        7 => "poll",
        17 => "pread64",
        18 => "pwrite64",
        19 => "readv",
        20 => "writev",
        23 => "select",
        34 => "pause",
        35 => "nanosleep",
        42 => "connect",
        43 => "accept",
        44 => "sendto",
        45 => "recvfrom",
        46 => "sendmsg",
        47 => "recvmsg",
        56 => "clone",
        57 => "fork",
        58 => "vfork",
        61 => "wait4",
        72 => "fcntl",
        73 => "flock",
        74 => "fsync",
        75 => "fdatasync",
        76 => "truncate",
        77 => "ftruncate",
        82 => "rename",
        83 => "mkdir",
        84 => "rmdir",
        87 => "unlink",
        162 => "sync",
        202 => "futex",
        230 => "clock_nanosleep",
        232 => "epoll_wait",
        247 => "waitid",
        257 => "openat",
        262 => "newfstatat",
        263 => "unlinkat",
        270 => "pselect6",
        271 => "ppoll",
        277 => "sync_file_range",
        281 => "epoll_pwait",
        285 => "fallocate",
        288 => "accept4",
        299 => "recvmmsg",
        306 => "syncfs",
        307 => "sendmmsg",
        316 => "renameat2",
        318 => "getrandom",
        326 => "copy_file_range",
        332 => "statx",
        435 => "clone3",
        441 => "epoll_pwait2",
        _ => return None,
    })
}

/// The `CLOCK_MONOTONIC` offset of a process's time namespace relative to ours, in seconds.
/// Zero when both share a namespace (the usual case) or when it cannot be read.
pub fn monotonic_offset(pid: i32) -> f64 {
    let same_ns = match (fs::read_link(proc_path(pid, "ns/time")), fs::read_link("/proc/self/ns/time")) {
        (Ok(a), Ok(b)) => a == b,
        _ => true,
    };
    if same_ns {
        return 0.0;
    }
    let theirs = timens_monotonic(&proc_path(pid, "timens_offsets")).unwrap_or(0.0);
    let ours = timens_monotonic(&PathBuf::from("/proc/self/timens_offsets")).unwrap_or(0.0);
    theirs - ours
}

fn timens_monotonic(path: &PathBuf) -> Option<f64> {
    let raw = read_small(path).ok()?;
    parse_timens_monotonic(&String::from_utf8_lossy(&raw))
}

/// `monotonic <secs> <nanos>` line of a `timens_offsets` file.
pub fn parse_timens_monotonic(text: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        if parts.next()? != "monotonic" {
            return None;
        }
        let secs: i64 = parts.next()?.parse().ok()?;
        let nanos: i64 = parts.next()?.parse().ok()?;
        Some(secs as f64 + nanos as f64 / 1e9)
    })
}

/// When a process started, in our `CLOCK_MONOTONIC` seconds. `/proc/PID/stat` gives its
/// start in clock ticks since boot, counting time suspended (as `CLOCK_BOOTTIME` does), so
/// the time this machine spent suspended is taken off.
pub fn started_monotonic(pid: i32) -> Option<f64> {
    let stat = read_small(&proc_path(pid, "stat")).ok()?;
    let close = stat.iter().rposition(|b| *b == b')')?;
    // After "(comm)": state is field 3; starttime is field 22.
    let text = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let ticks: f64 = text.split_whitespace().nth(19)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let boottime = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let monotonic = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    let to_s = |ts: nix::sys::time::TimeSpec| ts.tv_sec() as f64 + ts.tv_nsec() as f64 / 1e9;
    let suspended = (to_s(boottime) - to_s(monotonic)).max(0.0);
    Some(ticks / hz as f64 - suspended)
}

/// Our own `CLOCK_MONOTONIC`, in seconds (the clock asyncio's `loop.time()` uses).
pub fn monotonic_now() -> f64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as f64 + ts.tv_nsec() as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_state_survives_odd_comm_names() {
        assert_eq!(parse_stat_state(b"123 (a) b) S 1 2 3").unwrap(), 'S');
        assert_eq!(parse_stat_state(b"9 (python3) Z 1").unwrap(), 'Z');
        assert!(parse_stat_state(b"garbage").is_err());
    }

    #[test]
    fn stat_info_reads_parent_and_start() {
        let line = b"4242 (gunicorn: worker [a) b]) S 4200 4200 4200 0 -1 4194560 9 0 0 0 3 1 0 0 20 0 2 0 778899 0 0";
        assert_eq!(parse_stat_info(line).unwrap(), StatInfo { state: 'S', ppid: 4200, start: 778899 });
        assert!(parse_stat_info(b"1 (x) S 0").is_err());
        assert!(parse_stat_info(b"garbage").is_err());
        let me = std::process::id() as i32;
        let info = stat_info(me).unwrap();
        assert_eq!(info.ppid, nix::unistd::getppid().as_raw());
        assert_eq!(identity(me).unwrap(), identity(me).unwrap());
        assert!(info.start > 0);
        assert_eq!(ns_pid(me), Some(me), "the tests run in one PID namespace");
    }

    #[test]
    fn syscall_file_forms() {
        assert_eq!(parse_syscall(b"running\n").unwrap(), Syscall::Running);
        assert_eq!(parse_syscall(b"-1 0x7ffd 0x7f00\n").unwrap(), Syscall::Blocked);
        assert_eq!(parse_syscall(b"232 0x3 0x7f 0x1 0x0 0x0 0x0 0x7ffd 0x7f\n").unwrap(), Syscall::In(232));
        assert!(parse_syscall(b"").is_err());
        assert!(parse_syscall(b"what").is_err());
        // "running" while the state says asleep is read again; anything else stands.
        assert!(worth_rereading(Some(Syscall::Running), Some('D')));
        assert!(worth_rereading(Some(Syscall::Running), Some('S')));
        assert!(!worth_rereading(Some(Syscall::Running), Some('R')));
        assert!(!worth_rereading(Some(Syscall::Running), Some('t')));
        assert!(!worth_rereading(Some(Syscall::In(74)), Some('D')));
        assert!(!worth_rereading(None, Some('S')));
        assert_eq!(syscall_name(232), Some("epoll_wait"));
        assert_eq!(syscall_name(9999), None);
    }

    #[test]
    fn nspid_lines() {
        assert_eq!(parse_nspid(b"Name:\tpython3\nNSpid:\t24907\t1\nNSsid:\t1\n"), vec![24907, 1]);
        assert_eq!(parse_nspid(b"NSpid:\t4242\n"), vec![4242]);
        assert_eq!(parse_nspid(b"Name:\tx\n"), Vec::<i32>::new());
        assert_eq!(parse_nspid(b"NSpid:\t12\tjunk\t3\n"), vec![12]);
        let me = std::process::id() as i32;
        let ours = task_ids(me).unwrap();
        assert!(ours.iter().all(|t| t.tid == t.ns_tid) && ours.iter().any(|t| t.tid == me));
    }

    #[test]
    fn timens_offsets_monotonic_line() {
        let text = "monotonic  -5 250000000\nboottime 0 0\n";
        assert_eq!(parse_timens_monotonic(text), Some(-5.0 + 0.25));
        assert_eq!(parse_timens_monotonic("boottime 1 0\n"), None);
    }

    #[test]
    fn our_own_process_is_visible() {
        let me = std::process::id() as i32;
        assert!(exists(me));
        assert!(!is_dead(me));
        assert!(tids(me).unwrap().contains(&me));
        let (tx, rx) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
        });
        let tid = rx.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let Syscall::In(nr) = thread_syscall(me, tid).unwrap() else { panic!("sleeper not in a syscall") };
        assert!(matches!(syscall_name(nr), Some("nanosleep" | "clock_nanosleep")), "{nr}");
        sleeper.join().unwrap();
        assert_eq!(monotonic_offset(me), 0.0);
    }

    #[test]
    fn a_process_started_before_now_and_a_new_one_just_now() {
        let me = started_monotonic(std::process::id() as i32).unwrap();
        let now = monotonic_now();
        assert!(me <= now + 0.02, "{me} > {now}");
        let mut child = std::process::Command::new("sleep").arg("1").spawn().unwrap();
        let born = started_monotonic(child.id() as i32).unwrap();
        assert!((born - monotonic_now()).abs() < 1.0, "{born} vs {}", monotonic_now());
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn exiting_and_at_random() {
        let me = std::process::id() as i32;
        assert!(!exiting(me));
        assert!(at_random(me).unwrap().is_some_and(|a| a > 0x1000));
        // A zombie (exited, not reaped) keeps PF_EXITING and has no memory left.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        while state(pid).ok() != Some('Z') {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(exiting(pid));
        assert_eq!(at_random(pid).ok().flatten(), None);
        child.wait().unwrap();
        assert!(!exiting(pid));
    }
}
