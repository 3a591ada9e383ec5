//! Shared harness for the integration tests: finding the interpreters to test against,
//! starting ground-truth scenario targets, running the loopspy binary.
//!
//! Interpreters come from the manifest written by `scripts/test-pythons.sh`
//! (`$LOOPSPY_PYTHONS`, default `~/.cache/loopspy/pythons.tsv`), or else from pyenv. Under
//! `CI=true` a supported version that is missing fails its tests; otherwise the test passes
//! and records the skip, which `scripts/test.sh` prints loudly at the end.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod diagnosis;
pub mod serve;
pub mod truth;

/// A Python interpreter the tests can run targets with.
#[derive(Debug, Clone)]
pub struct Interp {
    pub version: String,
    pub path: PathBuf,
    /// A directory to put on PYTHONPATH to import uvloop, when it is installed for this one.
    pub uvloop: Option<PathBuf>,
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"))
}

fn manifest_path() -> PathBuf {
    std::env::var_os("LOOPSPY_PYTHONS").map(PathBuf::from).unwrap_or_else(|| home().join(".cache/loopspy/pythons.tsv"))
}

fn from_manifest(path: &Path) -> Option<BTreeMap<String, Interp>> {
    let text = fs::read_to_string(path).ok()?;
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 2 {
            continue;
        }
        let path = PathBuf::from(cols[1]);
        if !path.exists() {
            continue;
        }
        let uvloop = cols.get(2).filter(|c| **c != "-" && !c.is_empty()).map(PathBuf::from);
        out.insert(cols[0].to_string(), Interp { version: cols[0].to_string(), path, uvloop });
    }
    Some(out)
}

fn from_pyenv() -> BTreeMap<String, Interp> {
    let root = std::env::var_os("PYENV_ROOT").map(PathBuf::from).unwrap_or_else(|| home().join(".pyenv"));
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir(root.join("versions")) else { return out };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let mut parts = name.split('.');
        let (Some(major), Some(minor)) = (parts.next(), parts.next()) else { continue };
        let version = format!("{major}.{minor}");
        let bin = e.path().join(format!("bin/python{version}"));
        if bin.exists() {
            out.insert(version.clone(), Interp { version, path: bin, uvloop: None });
        }
    }
    out
}

/// All interpreters found, by `major.minor`.
pub fn interpreters() -> &'static BTreeMap<String, Interp> {
    static ALL: OnceLock<BTreeMap<String, Interp>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = from_pyenv();
        if let Some(listed) = from_manifest(&manifest_path()) {
            all.extend(listed);
        }
        all
    })
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Where tests record what they ran and skipped, for the summary matrix.
fn results_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("matrix");
    let _ = fs::create_dir_all(&dir);
    dir
}

/// Record one cell of the test matrix: `(test, version, variant) → outcome`.
pub fn record(test: &str, version: &str, variant: &str, outcome: &str) {
    let file = results_dir().join(format!("{test}--{version}--{variant}.txt").replace('/', "_"));
    let _ = fs::write(file, outcome);
}

/// The interpreter for `version`, or `None` after recording a skip. Under CI a supported
/// version must be present: its absence fails the test.
pub fn require(version: &str, test: &str) -> Option<&'static Interp> {
    match interpreters().get(version) {
        Some(i) => Some(i),
        None if in_ci() => panic!(
            "CI=true but Python {version} is not available (looked in {} and pyenv); \
             run scripts/test-pythons.sh",
            manifest_path().display()
        ),
        None => {
            eprintln!("SKIPPED {test}: Python {version} is not installed here");
            record(test, version, "stock", "skipped (interpreter missing)");
            None
        }
    }
}

pub fn targets_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/targets")
}

pub fn loopspy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loopspy"))
}

/// A running scenario target that has written its truth file. Killed on drop.
pub struct Scenario {
    pub child: Child,
    pub truth: Value,
    pub dir: tempfile::TempDir,
}

impl Scenario {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Start `tests/targets/<script>` with `interp` and wait for its truth file.
    pub fn start(interp: &Interp, script: &str, extra: &[&str]) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let truth_path = dir.path().join("truth.json");
        let mut cmd = Command::new(&interp.path);
        cmd.arg(targets_dir().join(script)).arg(&truth_path).args(extra);
        if let Some(uv) = &interp.uvloop {
            cmd.env("PYTHONPATH", uv);
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
        let mut s = Scenario { child, truth: Value::Null, dir };
        s.truth = wait_for_json(&truth_path, &mut s.child, Duration::from_secs(30));
        s
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_for_json(path: &Path, child: &mut Child, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = fs::read_to_string(path) {
            return serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad truth file {}: {e}", path.display()));
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("target exited ({status}) before writing {}", path.display());
        }
        assert!(Instant::now() < deadline, "target did not write {} in {timeout:?}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Our CLOCK_MONOTONIC in seconds: the clock `loop.time()` uses.
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid, exclusive pointer to a timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Run loopspy with `args`; returns its output and the monotonic time just before and after.
pub fn loopspy(args: &[&str]) -> (Output, f64, f64) {
    let before = monotonic();
    let out = Command::new(loopspy_bin()).args(args).stdin(Stdio::null()).output().unwrap();
    let after = monotonic();
    (out, before, after)
}

pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); exit {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Append a line to a log under the target dir (for debugging flaky environments).
pub fn log(line: &str) {
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(results_dir().join("log.txt")) {
        let _ = writeln!(f, "{line}");
    }
}

/// `benches/targets/throughput.py` running (a busy loop whose stacks, 4–18 frames deep, change
/// all the time); killed on drop.
pub struct Throughput {
    pub child: Child,
    _dir: tempfile::TempDir,
}

impl Throughput {
    pub fn start(interp: &Interp, uvloop: bool) -> Throughput {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ops.txt");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/targets/throughput.py");
        let mut cmd = Command::new(&interp.path);
        cmd.arg(script).arg(&out);
        if uvloop {
            let dir = interp.uvloop.as_ref().expect("no uvloop for this Python in the manifest");
            cmd.env("PYTHONPATH", dir).arg("--uvloop");
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn().expect("start throughput.py");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = std::fs::read_to_string(&out).unwrap_or_default().lines().count();
            if lines >= 3 {
                break;
            }
            if let Ok(Some(s)) = child.try_wait() {
                panic!("throughput.py exited: {s}");
            }
            assert!(Instant::now() < deadline, "throughput.py did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Throughput { child, _dir: dir }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Throughput {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The supported versions, once: `versions!(gen)` expands to `gen!(py3_8: "3.8", ...)`, and
/// `versions!(gen; args...)` to `gen!(args...; py3_8: "3.8", ...)`, for per-version test
/// modules. `tests/layout_tables.rs` checks the list against
/// `loopspy::python::layout::SUPPORTED`, so a version added there fails until it is here.
#[macro_export]
macro_rules! versions {
    ($gen:ident) => {
        $gen!(py3_8: "3.8", py3_9: "3.9", py3_10: "3.10", py3_11: "3.11", py3_12: "3.12", py3_13: "3.13", py3_14: "3.14", py3_15: "3.15");
    };
    ($gen:ident; $($arg:tt)*) => {
        $gen!($($arg)*; py3_8: "3.8", py3_9: "3.9", py3_10: "3.10", py3_11: "3.11", py3_12: "3.12", py3_13: "3.13", py3_14: "3.14", py3_15: "3.15");
    };
}

/// The version list as data (for the check against `SUPPORTED`).
pub fn versions() -> Vec<&'static str> {
    let mut out = Vec::new();
    macro_rules! push {
        ($($name:ident: $v:literal),*) => {
            $(out.push($v);)*
        };
    }
    versions!(push);
    out
}

/// `#[test] fn py3_X() { f("3.X") }` for every version, in the current module; with
/// `mod m,` first, in a new module `m`.
#[macro_export]
macro_rules! version_tests {
    (mod $m:ident, $f:ident) => {
        mod $m {
            use $crate::__version_tests;
            $crate::versions!(__version_tests; super::$f);
        }
    };
    ($f:ident) => {
        $crate::versions!(__version_tests; $f);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __version_tests {
    ($f:path; $($name:ident: $v:literal),*) => {$(
        #[test]
        fn $name() {
            $f($v)
        }
    )*};
}

/// `mod py3_X { #[test] fn stock() { f("3.X", "stock") } #[test] fn uvloop() { ... } }` for
/// every version.
#[macro_export]
macro_rules! flavor_tests {
    ($f:ident) => {
        $crate::versions!(__flavor_tests; $f);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flavor_tests {
    ($f:ident; $($name:ident: $v:literal),*) => {$(
        mod $name {
            #[test]
            fn stock() {
                super::$f($v, "stock")
            }
            #[test]
            fn uvloop() {
                super::$f($v, "uvloop")
            }
        }
    )*};
}

/// The interpreter for `version` with the loop flavour asked for, or `None` after recording
/// why it was skipped (a missing uvloop is a failure under CI).
pub fn require_flavor(version: &str, test: &str, flavor: &str) -> Option<&'static Interp> {
    let interp = require(version, test)?;
    if flavor == "uvloop" && interp.uvloop.is_none() {
        if in_ci() {
            panic!("CI=true but uvloop is not installed for Python {version}; run scripts/test-pythons.sh");
        }
        record(test, version, flavor, "skipped (no uvloop)");
        return None;
    }
    Some(interp)
}

/// A command running `script` under `interp` (with uvloop on the path for that flavour).
pub fn python(interp: &Interp, flavor: &str) -> Command {
    let mut cmd = Command::new(&interp.path);
    if flavor == "uvloop" {
        if let Some(uv) = &interp.uvloop {
            cmd.env("PYTHONPATH", uv);
        }
    }
    cmd
}

/// The framework venv (aiohttp, FastAPI, uvicorn, gunicorn...) built for `version` by
/// `scripts/framework-venvs.sh`: its python. `None` after recording a skip; under CI a
/// missing venv fails the test.
pub fn framework_python(version: &str, test: &str, flavor: &str) -> Option<PathBuf> {
    require(version, test)?;
    let manifest =
        std::env::var_os("LOOPSPY_CACHE").map(PathBuf::from).unwrap_or_else(|| home().join(".cache/loopspy")).join("venvs/venvs.tsv");
    let found = fs::read_to_string(&manifest).ok().and_then(|text| {
        text.lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&version) && cols.len() >= 2)
            .map(|cols| PathBuf::from(cols[1]))
            .filter(|p| p.exists())
    });
    match found {
        Some(p) => Some(p),
        None if in_ci() => {
            panic!("CI=true but no framework venv for Python {version} in {}; run scripts/framework-venvs.sh", manifest.display())
        }
        None => {
            eprintln!("SKIPPED {test}: no framework venv for Python {version} ({})", manifest.display());
            record(test, version, flavor, "skipped (no framework venv)");
            None
        }
    }
}

/// A bounded HTTP/1.1 load on 127.0.0.1: `clients` keep-alive connections each asking for
/// `path` every `every`, until dropped.
pub struct HttpLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl HttpLoad {
    pub fn start(port: u16, path: &'static str, clients: usize, every: Duration) -> HttpLoad {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut done = 0;
                    let mut conn: Option<std::net::TcpStream> = None;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let c = match conn.take() {
                            Some(c) => c,
                            None => match std::net::TcpStream::connect(("127.0.0.1", port)) {
                                Ok(c) => c,
                                Err(_) => {
                                    std::thread::sleep(every);
                                    continue;
                                }
                            },
                        };
                        if let Ok(c) = http_exchange(c, path, true) {
                            done += 1;
                            conn = Some(c);
                        }
                        std::thread::sleep(every);
                    }
                    done
                })
            })
            .collect();
        HttpLoad { stop, threads }
    }

    /// Stop and say how many requests were answered.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.threads.drain(..).map(|t| t.join().unwrap_or(0)).sum()
    }
}

impl Drop for HttpLoad {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One GET on a connection (kept open with `keep_alive`); the connection back once the whole
/// response (Content-Length or chunked) was read.
pub fn http_exchange(mut c: std::net::TcpStream, path: &str, keep_alive: bool) -> std::io::Result<std::net::TcpStream> {
    use std::io::{BufRead, BufReader, Read};
    c.set_read_timeout(Some(Duration::from_secs(20)))?;
    let conn = if keep_alive { "keep-alive" } else { "close" };
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {conn}\r\n\r\n").as_bytes())?;
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("answer: {line:?}")));
    }
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
            let mut body = vec![0u8; n + 2];
            r.read_exact(&mut body)?;
            if n == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        let mut body = vec![0u8; n];
        r.read_exact(&mut body)?;
    }
    Ok(c)
}

/// GET `path` on a new connection, waiting for the whole answer.
pub fn http_get(port: u16, path: &str) -> std::io::Result<()> {
    let c = std::net::TcpStream::connect(("127.0.0.1", port))?;
    http_exchange(c, path, false).map(|_| ())
}

/// As in scripts/perfetto-schema.sh.
const PERFETTO_SCHEMA: &str = "0.59.1-7.36.2";

/// Perfetto's compiled trace schema (PyPI's perfetto + protobuf, installed by
/// scripts/perfetto-schema.sh): the Python it is for and the directory to put on PYTHONPATH.
/// `None` after a loud skip when it is missing outside CI (recorded in the matrix for a test
/// of one Python `version`); under CI a missing schema fails.
pub fn perfetto_schema(test: &str, version: Option<&str>) -> Option<(PathBuf, PathBuf)> {
    let cache = std::env::var_os("LOOPSPY_CACHE").map(PathBuf::from).unwrap_or_else(|| home().join(".cache/loopspy"));
    let dir = cache.join("perfetto").join(PERFETTO_SCHEMA);
    let python = fs::read_to_string(dir.join("python")).ok().map(|p| PathBuf::from(p.trim()));
    match python {
        Some(py) if py.exists() && dir.join("perfetto/protos/perfetto/trace/perfetto_trace_pb2.py").exists() => Some((py, dir)),
        _ if in_ci() => panic!("CI=true but Perfetto's schema is not in {}; run scripts/perfetto-schema.sh", dir.display()),
        _ => {
            eprintln!(
                "SKIPPED {test}: Perfetto's schema (PyPI perfetto + protobuf) is not in {}; run scripts/perfetto-schema.sh",
                dir.display()
            );
            if let Some(version) = version {
                record(test, version, "stock", "skipped (no perfetto schema)");
            }
            None
        }
    }
}

/// tests/tools/check_pftrace.py with `args`, under Perfetto's schema.
pub fn pftrace_checker(schema: &(PathBuf, PathBuf), args: &[&std::ffi::OsStr]) -> Output {
    Command::new(&schema.0)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tools/check_pftrace.py"))
        .args(args)
        .env("PYTHONPATH", &schema.1)
        .output()
        .unwrap()
}

/// The checker's account of a Perfetto trace (processes, threads, slices, counters, samples);
/// it must accept the trace.
pub fn check_pftrace(schema: &(PathBuf, PathBuf), trace: &Path) -> Value {
    let out = pftrace_checker(schema, &[trace.as_os_str()]);
    assert!(out.status.success(), "check_pftrace rejects {}:\n{}", trace.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
