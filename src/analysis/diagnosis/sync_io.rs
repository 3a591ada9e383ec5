//! Synchronous I/O in a callback: the loop waited in a system call (a socket, a file, a DNS
//! lookup, a sleep, a lock) instead of in its selector. Episodes that waited are grouped by
//! the syscall's family and by the library the callback called, read from the episode's
//! stack (C calls such as `time.sleep` or sqlite3's `execute` have no Python frame: then
//! the syscall and the callback's own frame are all there is).

use super::{
    episode_evidence, episode_frames, ms_text, short_name, view_blamed, view_frames, Diagnosis, Evidence, Grouping, Inputs, Kind,
    SnapshotInputs,
};
use crate::python::frames::StackFrame;

/// What a blocking system call waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// A name lookup (a stack through `getaddrinfo`, `gethostbyname`...).
    Dns,
    /// A socket: receive, send, connect, accept, poll.
    Socket,
    /// A file: read, write, sync, open.
    File,
    /// A sleep (`time.sleep`; `select` with no socket on older Pythons).
    Sleep,
    /// A lock, a condition, another thread (`futex`): `Future.result()`, `queue.get()`.
    Lock,
    /// A child process (`wait4`): `subprocess.run`, `os.system`.
    Process,
    /// Any other system call.
    Other,
}

impl Family {
    pub fn label(self) -> &'static str {
        match self {
            Family::Dns => "DNS lookup",
            Family::Socket => "socket I/O",
            Family::File => "file I/O",
            Family::Sleep => "sleep",
            Family::Lock => "waiting on a lock or another thread",
            Family::Process => "waiting for a child process",
            Family::Other => "a system call",
        }
    }
}

/// A library known to do blocking I/O, as its files show on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module {
    /// As shown: `requests`, `http.client`, `sqlite3`.
    pub name: &'static str,
    /// Talks over the network (a `read`/`poll` in it is socket I/O).
    pub network: bool,
    /// The fix, `{f}` standing for the blamed function.
    fix: &'static str,
}

const HTTP_FIX: &str =
    "use an async HTTP client (aiohttp, or httpx.AsyncClient) instead; until then, move the call off the loop: `await asyncio.to_thread({f}, ...)`";

/// Path fragments of known libraries, matched against a frame's file.
const MODULES: &[(&str, Module)] = &[
    ("/requests/", Module { name: "requests", network: true, fix: HTTP_FIX }),
    ("/urllib3/", Module { name: "urllib3", network: true, fix: HTTP_FIX }),
    ("/httpx/", Module { name: "httpx (sync Client)", network: true, fix: "use httpx.AsyncClient (`await client.get(...)`) instead of httpx.Client / httpx.get; until then `await asyncio.to_thread({f}, ...)`" }),
    ("/httpcore/", Module { name: "httpcore (sync)", network: true, fix: "use httpx.AsyncClient instead of the sync client; until then `await asyncio.to_thread({f}, ...)`" }),
    ("/urllib/", Module { name: "urllib", network: true, fix: HTTP_FIX }),
    ("/http/client.py", Module { name: "http.client", network: true, fix: HTTP_FIX }),
    ("/xmlrpc/", Module { name: "xmlrpc", network: true, fix: "move the call off the loop: `await asyncio.to_thread({f}, ...)`" }),
    ("/smtplib.py", Module { name: "smtplib", network: true, fix: "use aiosmtplib, or `await asyncio.to_thread({f}, ...)`" }),
    ("/ftplib.py", Module { name: "ftplib", network: true, fix: "use aioftp, or `await asyncio.to_thread({f}, ...)`" }),
    ("/psycopg2/", Module { name: "psycopg2", network: true, fix: "use asyncpg or psycopg 3's AsyncConnection; until then `await asyncio.to_thread({f}, ...)`" }),
    ("/psycopg/", Module { name: "psycopg (sync connection)", network: true, fix: "use psycopg.AsyncConnection (`await conn.execute(...)`); until then `await asyncio.to_thread({f}, ...)`" }),
    ("/pymysql/", Module { name: "pymysql", network: true, fix: "use aiomysql (or asyncmy); until then `await asyncio.to_thread({f}, ...)`" }),
    ("/MySQLdb/", Module { name: "mysqlclient (MySQLdb)", network: true, fix: "use aiomysql (or asyncmy); until then `await asyncio.to_thread({f}, ...)`" }),
    ("/mysql/connector/", Module { name: "mysql-connector", network: true, fix: "use aiomysql or mysql.connector.aio; until then `await asyncio.to_thread({f}, ...)`" }),
    ("/sqlite3/", Module { name: "sqlite3", network: false, fix: "use aiosqlite, or `await asyncio.to_thread({f}, ...)`" }),
    ("/redis/", Module { name: "redis (sync client)", network: true, fix: "use redis.asyncio (`await r.get(...)`) instead of redis.Redis; until then `await asyncio.to_thread({f}, ...)`" }),
    ("/pymongo/", Module { name: "pymongo", network: true, fix: "use motor (or pymongo's AsyncMongoClient); until then `await asyncio.to_thread({f}, ...)`" }),
    ("/elasticsearch/", Module { name: "elasticsearch (sync)", network: true, fix: "use AsyncElasticsearch; until then `await asyncio.to_thread({f}, ...)`" }),
    ("/botocore/", Module { name: "boto3/botocore", network: true, fix: "use aiobotocore (or aioboto3), or `await asyncio.to_thread({f}, ...)`" }),
    ("/boto3/", Module { name: "boto3/botocore", network: true, fix: "use aiobotocore (or aioboto3), or `await asyncio.to_thread({f}, ...)`" }),
    ("/kafka/", Module { name: "kafka-python", network: true, fix: "use aiokafka; until then `await asyncio.to_thread({f}, ...)`" }),
    ("/pika/", Module { name: "pika", network: true, fix: "use aio-pika; until then `await asyncio.to_thread({f}, ...)`" }),
    ("/grpc/", Module { name: "grpc (sync stub)", network: true, fix: "use grpc.aio; until then `await asyncio.to_thread({f}, ...)`" }),
    ("/ssl.py", Module { name: "ssl", network: true, fix: "use the loop's streams (`await asyncio.open_connection(..., ssl=...)`) or an async client; until then `await asyncio.to_thread({f}, ...)`" }),
    ("/socket.py", Module { name: "socket", network: true, fix: "use the loop's streams (`await asyncio.open_connection(...)`) or `await loop.sock_recv(...)` on a non-blocking socket; until then `await asyncio.to_thread({f}, ...)`" }),
    ("/subprocess.py", Module { name: "subprocess", network: false, fix: "use `await asyncio.create_subprocess_exec(...)` (then `await proc.communicate()`) instead of subprocess.run / check_output" }),
    ("/logging/", Module { name: "logging", network: false, fix: "a logging handler writes on the loop: log through a logging.handlers.QueueHandler with a QueueListener thread doing the writing" }),
    ("/concurrent/futures/", Module { name: "concurrent.futures", network: false, fix: "`future.result()` blocks the loop: `await asyncio.wrap_future(future)` (or `await loop.run_in_executor(...)`)" }),
    ("/queue.py", Module { name: "queue", network: false, fix: "`queue.Queue.get()` blocks the loop: use asyncio.Queue, or `await asyncio.to_thread(q.get)`" }),
    ("/threading.py", Module { name: "threading", network: false, fix: "a threading lock, event or join blocks the loop: use asyncio.Lock / asyncio.Event, or `await asyncio.to_thread({f}, ...)`" }),
    ("/shutil.py", Module { name: "shutil", network: false, fix: "move the file work off the loop: `await asyncio.to_thread({f}, ...)`" }),
    ("/tempfile.py", Module { name: "tempfile", network: false, fix: "move the file work off the loop: `await asyncio.to_thread({f}, ...)`" }),
    ("/zipfile", Module { name: "zipfile", network: false, fix: "move the file work off the loop: `await asyncio.to_thread({f}, ...)`" }),
    ("/tarfile.py", Module { name: "tarfile", network: false, fix: "move the file work off the loop: `await asyncio.to_thread({f}, ...)`" }),
    ("/pathlib", Module { name: "pathlib", network: false, fix: "move the file work off the loop (`await asyncio.to_thread({f}, ...)`, or aiofiles)" }),
];

/// Functions that resolve names: a stack through one of them waits for DNS.
const DNS_FUNCTIONS: &[&str] = &["getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo", "getfqdn"];

/// The library a frame belongs to, if known.
pub fn module_of_file(file: &str) -> Option<Module> {
    MODULES.iter().find(|(fragment, _)| file.contains(fragment)).map(|(_, m)| *m)
}

/// The known library the callback called (the outermost of its frames in one), with the
/// frame: frames innermost first.
pub fn module_of(frames: &[&StackFrame]) -> Option<(Module, usize)> {
    frames.iter().enumerate().rev().find_map(|(i, f)| module_of_file(&f.file).map(|m| (m, i)))
}

/// The family of a wait in `syscall` with the callback's `frames` (innermost first).
pub fn family(syscall: &str, frames: &[&StackFrame]) -> Family {
    if frames.iter().any(|f| DNS_FUNCTIONS.contains(&short_name(&f.function))) {
        return Family::Dns;
    }
    let module = module_of(frames).map(|(m, _)| m);
    // Whatever subprocess waits in (the pipe that says the child ran exec, its output, wait4),
    // it waits for the child.
    if module.is_some_and(|m| m.name == "subprocess") {
        return Family::Process;
    }
    let network = module.is_some_and(|m| m.network);
    match syscall {
        "recvfrom" | "recvmsg" | "recvmmsg" | "sendto" | "sendmsg" | "sendmmsg" | "connect" | "accept" | "accept4" => Family::Socket,
        "poll" | "ppoll" | "epoll_wait" | "epoll_pwait" | "epoll_pwait2" => Family::Socket,
        // time.sleep waits in select() before 3.11; a socket with a timeout may select too.
        "select" | "pselect6" if network => Family::Socket,
        "select" | "pselect6" | "clock_nanosleep" | "nanosleep" | "pause" => Family::Sleep,
        "read" | "readv" | "write" | "writev" if network => Family::Socket,
        "read" | "readv" | "write" | "writev" | "pread64" | "pwrite64" | "preadv" | "pwritev" | "fsync" | "fdatasync" | "sync"
        | "syncfs" | "sync_file_range" | "openat" | "open" | "close" | "stat" | "fstat" | "lstat" | "newfstatat" | "statx" | "rename"
        | "renameat2" | "unlink" | "unlinkat" | "mkdir" | "rmdir" | "truncate" | "ftruncate" | "fallocate" | "copy_file_range"
        | "flock" | "fcntl" | "getrandom" => Family::File,
        "futex" => Family::Lock,
        // subprocess waits for the child in wait4; vfork suspends the parent until the
        // child execs (3.10+ spawns with vfork where it can).
        "wait4" | "waitid" | "vfork" | "clone" | "clone3" | "fork" => Family::Process,
        _ => Family::Other,
    }
}

/// The next step for a wait of `family` in `module` (if known), blamed on `function`.
pub fn fix(family: Family, module: Option<Module>, function: &str) -> String {
    let f = if function.is_empty() || function.starts_with('<') { "the_call" } else { short_name(function) };
    if let Some(m) = module {
        return m.fix.replace("{f}", f);
    }
    match family {
        Family::Dns => "resolve names without blocking: `await loop.getaddrinfo(host, port)` (it runs in the executor) or aiodns; async clients (aiohttp, httpx.AsyncClient) do so themselves".into(),
        Family::Socket => format!("use the loop's streams (`await asyncio.open_connection(...)`) or an async client library; until then `await asyncio.to_thread({f}, ...)`"),
        Family::File => format!("move the file or database work off the loop: `await asyncio.to_thread({f}, ...)` (or aiofiles; aiosqlite for sqlite3)"),
        Family::Sleep => format!("`time.sleep` blocks the loop: `await asyncio.sleep(...)` instead; if what sleeps in {f} is a C call (a DB driver waiting for a lock), `await asyncio.to_thread({f}, ...)`"),
        Family::Lock => format!("{f} waits for another thread on the loop: `await asyncio.wrap_future(...)` for a concurrent future, asyncio.Lock / asyncio.Queue for loop code, or `await asyncio.to_thread({f}, ...)`"),
        Family::Process => "use `await asyncio.create_subprocess_exec(...)` instead of subprocess.run / os.system".into(),
        Family::Other => format!("move the call off the loop: `await asyncio.to_thread({f}, ...)`"),
    }
}

/// `urllib (urllib/request.py)`, or what no library frame means.
fn module_text(module: Option<(Module, &StackFrame)>) -> String {
    match module {
        Some((m, f)) => format!("{} ({} in {})", m.name, f.function, tail(&f.file)),
        None => "no frame of a known library (a C call such as time.sleep, sqlite3 or psycopg2 has no Python frame)".into(),
    }
}

/// The last two components of a path: `http/client.py`.
fn tail(path: &str) -> &str {
    let mut cut = path.len();
    for _ in 0..2 {
        match path[..cut].rfind('/') {
            Some(i) => cut = i,
            None => return path,
        }
    }
    &path[cut + 1..]
}

/// `socket I/O in urllib`, `sleep`, `waiting in syscall 11`.
fn group_text(family: Family, module: Option<Module>, syscall: &str) -> String {
    let what = if family == Family::Other { format!("waiting in {syscall}") } else { family.label().to_string() };
    match module {
        Some(m) => format!("{what} in {}", m.name),
        None => what,
    }
}

/// Waiting episodes, grouped by family and module, the group with the most blocked time
/// first.
pub fn diagnose(i: &Inputs) -> Option<Diagnosis> {
    let s = i.summary;
    type Key = (Family, Option<&'static str>);
    let mut grouping: Grouping<Key, Option<Module>> = Grouping::default();
    // Episodes of one stack, blamed frame and call read the same: worked out once (a live
    // view redraws over thousands of episodes of a few stacks).
    type Seen<'e> = std::collections::HashMap<(u32, &'e str, &'e str, &'e str), (Family, Option<Module>)>;
    let mut known: Seen = Default::default();
    for e in &s.episodes {
        let Some(syscall) = e.waiting_in.as_deref() else { continue };
        if e.on_cpu || syscall.starts_with("blocked") || syscall == "unknown" {
            continue;
        }
        let (family, module) = *known.entry((e.stack, &e.function, &e.file, syscall)).or_insert_with(|| {
            let frames = episode_frames(i.rec, e);
            (family(syscall, &frames), module_of(&frames).map(|(m, _)| m))
        });
        grouping.add((family, module.map(|m| m.name)), module, e);
    }
    let (all, groups) = grouping.material(i.recorded_s)?;
    let ((family, _), module, top) = &groups[0];
    let syscall = crate::analysis::metrics::mode(top.episodes.iter().filter_map(|e| e.waiting_in.clone())).unwrap_or_default();
    let (blamed, function) = top.blamed().unwrap_or_default();
    let example = top.longest().map(|e| episode_frames(i.rec, e)).unwrap_or_default();
    let module_frame = module_of(&example).map(|(m, at)| (m, example[at]));
    let what = group_text(*family, *module, &syscall);
    let mostly = if groups.len() > 1 {
        format!(", mostly {what} ({} in {})", ms_text(top.blocked_ms), top.episodes.len())
    } else {
        format!(": {what}")
    };
    let title = format!(
        "synchronous I/O on the loop: {} blocked in {} episode{}{mostly}",
        ms_text(all.blocked_ms),
        all.episodes.len(),
        if all.episodes.len() == 1 { "" } else { "s" }
    );
    let mut evidence = episode_evidence(&all, i.recorded_s);
    evidence.push(Evidence::new("syscall", format!("{syscall} ({})", family.label())));
    let module_ev = match (module_frame, module) {
        (Some(mf), _) => module_text(Some(mf)),
        (None, Some(m)) => m.name.to_string(),
        (None, None) => module_text(None),
    };
    evidence.push(Evidence::new("module", module_ev));
    evidence.push(Evidence::new("blamed frame", blamed));
    for ((family, _), module, g) in groups.iter().skip(1).take(3) {
        let syscall = crate::analysis::metrics::mode(g.episodes.iter().filter_map(|e| e.waiting_in.clone())).unwrap_or_default();
        let what = group_text(*family, *module, &syscall);
        evidence.push(Evidence::new(
            "also",
            format!("{what}: {} in {} episode{}", ms_text(g.blocked_ms), g.episodes.len(), if g.episodes.len() == 1 { "" } else { "s" }),
        ));
    }
    Some(Diagnosis { kind: Kind::SyncIo, loop_index: s.loop_index, title, evidence, next_step: fix(*family, *module, &function) })
}

/// One look: the loop is in a callback that has waited in a system call for at least the
/// threshold.
pub fn now(i: &SnapshotInputs) -> Option<Diagnosis> {
    let v = i.view;
    let ms = super::busy_now_ms(v).filter(|ms| *ms >= i.threshold * 1e3)?;
    let Some(crate::process::procfs::Syscall::In(nr)) = v.syscall else { return None };
    let syscall = crate::process::procfs::syscall_name(nr).map(str::to_string).unwrap_or_else(|| format!("syscall {nr}"));
    let frames = view_frames(v);
    let family = family(&syscall, &frames);
    let module = module_of(&frames);
    let blamed = view_blamed(&frames).map(|k| frames[k]);
    let function = blamed.map(|f| f.function.to_string()).unwrap_or_default();
    let what = group_text(family, module.map(|(m, _)| m), &syscall);
    let how = if v.busy_for.is_some() { "" } else { "at least " };
    let mut evidence = vec![
        Evidence::new("blocked for", format!("{how}{} (in one callback, now)", ms_text(ms))),
        Evidence::new("syscall", format!("{syscall} ({})", family.label())),
        Evidence::new("module", module_text(module.map(|(m, at)| (m, frames[at])))),
        Evidence::new(
            "blamed frame",
            blamed.map(|f| super::frame_text(&f.function, &f.file, f.line)).unwrap_or_else(|| "<no Python frame>".into()),
        ),
    ];
    if let Some(cb) = &v.callback {
        evidence.push(Evidence::new("callback", cb.qualname.clone()));
    }
    Some(Diagnosis {
        kind: Kind::SyncIo,
        loop_index: 0,
        title: format!("blocked right now: {how}{} waiting in {syscall} ({what})", ms_text(ms)),
        evidence,
        next_step: fix(family, module.map(|(m, _)| m), &function),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(function: &str, file: &str) -> StackFrame {
        StackFrame { function: function.into(), file: file.into(), line: 1 }
    }

    #[test]
    fn families_and_modules() {
        let lib = "/usr/lib/python3.12";
        let app = f("fetch", "/srv/app.py");
        let sock = f("readinto", &format!("{lib}/socket.py"));
        let http = f("HTTPResponse.begin", &format!("{lib}/http/client.py"));
        let urlopen = f("urlopen", &format!("{lib}/urllib/request.py"));
        let stack = [&sock, &http, &urlopen, &app];
        assert_eq!(family("recvfrom", &stack), Family::Socket);
        assert_eq!(family("read", &stack), Family::Socket);
        // The library the app called: the outermost one.
        assert_eq!(module_of(&stack).map(|(m, at)| (m.name, at)), Some(("urllib", 2)));
        let requests = f("Session.request", "/venv/lib/python3.12/site-packages/requests/sessions.py");
        let urllib3 = f("HTTPConnectionPool.urlopen", "/venv/lib/python3.12/site-packages/urllib3/connectionpool.py");
        assert_eq!(module_of(&[&sock, &urllib3, &requests, &app]).unwrap().0.name, "requests");
        // DNS wins over the socket calls glibc makes while resolving.
        let gai = f("getaddrinfo", &format!("{lib}/socket.py"));
        assert_eq!(family("recvfrom", &[&gai, &urllib3, &app]), Family::Dns);
        assert_eq!(family("poll", &[&gai, &app]), Family::Dns);
        // time.sleep has no frame: the app's frame and the syscall.
        assert_eq!(family("clock_nanosleep", &[&app]), Family::Sleep);
        assert_eq!(family("pselect6", &[&app]), Family::Sleep);
        assert_eq!(family("pselect6", &[&sock, &app]), Family::Socket);
        assert_eq!(family("fdatasync", &[&app]), Family::File);
        assert_eq!(family("pread64", &[&app]), Family::File);
        assert_eq!(family("rename", &[&app]), Family::File);
        assert_eq!(family("futex", &[&app]), Family::Lock);
        assert_eq!(family("wait4", &[&f("run", &format!("{lib}/subprocess.py")), &app]), Family::Process);
        assert_eq!(family("vfork", &[&f("Popen._execute_child", &format!("{lib}/subprocess.py")), &app]), Family::Process);
        assert_eq!(family("read", &[&f("Popen._execute_child", &format!("{lib}/subprocess.py")), &app]), Family::Process);
        let pymysql = f("Connection._read_bytes", "/venv/lib/python3.11/site-packages/pymysql/connections.py");
        assert_eq!(module_of(&[&pymysql, &app]).unwrap().0.name, "pymysql");
        assert!(fix(Family::Socket, Some(module_of(&[&pymysql]).unwrap().0), "Repo.load").contains("aiomysql"));
        assert!(fix(Family::Socket, Some(module_of(&[&pymysql]).unwrap().0), "Repo.load").contains("asyncio.to_thread(load, ...)"));
        assert!(fix(Family::Sleep, None, "sleepy").contains("asyncio.sleep"));
        assert!(fix(Family::Dns, None, "x").contains("loop.getaddrinfo"));
        assert!(fix(Family::Socket, module_of(&stack).map(|m| m.0), "fetch").contains("aiohttp"));
        assert_eq!(tail("/usr/lib/python3.12/http/client.py"), "http/client.py");
        assert_eq!(tail("app.py"), "app.py");
    }

    #[test]
    fn recorded_sleeps_are_diagnosed_and_a_healthy_loop_is_not() {
        use crate::analysis::metrics::{analyze, tests::script, Options};
        // 100 Hz: three 300 ms sleeps in `sleeper` (clock_nanosleep) in 3 s.
        let s = format!("{}{}", ".".repeat(30), "s".repeat(30)).repeat(3) + &".".repeat(30);
        let rec = script(100.0, &s);
        let a = analyze(&rec, &Options::default());
        let d = a.diagnoses.iter().find(|d| d.kind == Kind::SyncIo).expect("diagnosed");
        assert!(d.title.contains("3 episodes"), "{d:?}");
        let ev = |w: &str| d.evidence.iter().find(|e| e.what == w).map(|e| e.value.clone()).unwrap_or_default();
        assert_eq!(ev("syscall"), "clock_nanosleep (sleep)");
        assert!(ev("blamed frame").starts_with("sleeper (/srv/app.py:30)"), "{d:?}");
        assert!(d.next_step.contains("asyncio.sleep"), "{d:?}");
        // A long run that lists one of them (record's longest, top's last) says what its
        // figures count.
        let one = crate::analysis::stream::StreamOptions {
            max_listed: Some(1),
            ..crate::analysis::stream::StreamOptions::for_recording(&rec, 0.1, 1.0)
        };
        let a = crate::analysis::metrics::analysis_of(&crate::analysis::stream::Stream::over(&rec, one), &rec, 0.1);
        let d = a.diagnoses.iter().find(|d| d.kind == Kind::SyncIo).expect("diagnosed");
        let counted = d.evidence.iter().find(|e| e.what == "counted").map(|e| e.value.as_str());
        assert_eq!(
            counted,
            Some("1 listed of 3 episodes: the other 2 (shorter or older) are in the blocking frames, not in these figures")
        );
        // Short callbacks only: nothing.
        let healthy = script(100.0, &"..a.b..s.".repeat(40));
        assert!(analyze(&healthy, &Options::default()).diagnoses.is_empty());
        // One 120 ms sleep in 10 s: 1.2 %, one episode, not long: not material.
        let once = script(100.0, &format!("{}{}{}", ".".repeat(500), "s".repeat(12), ".".repeat(488)));
        let a = analyze(&once, &Options::default());
        assert_eq!(a.loops[0].episodes.len(), 1);
        assert!(a.diagnoses.is_empty(), "{:?}", a.diagnoses);
    }
}
