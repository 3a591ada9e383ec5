//! `--subprocesses` against real worker fleets: `gunicorn -k uvicorn.workers.UvicornWorker -w 3`
//! and `uvicorn --workers 3` (from the framework venvs of `scripts/framework-venvs.sh`), on
//! one interpreter up to 3.10 and one from 3.13 (gunicorn's workers on uvloop, which uvicorn
//! picks when it is installed; uvicorn's on asyncio's own loop), serving
//! tests/targets/apps/workers_app.py,
//! whose workers each block their loop on a known schedule and write what they measured.
//!
//! Against that truth: `dump --subprocesses --json` reports every worker with its loop;
//! `record --subprocesses` finds each worker's blocks, each exactly once, blamed on
//! `blocking_step`, with durations within the episode's own error bound plus one sample
//! interval, and no episode the workers did not measure; a worker killed (SIGKILL) during the
//! recording keeps the samples taken before (its episodes are in the report, it is marked
//! exited), and the worker its master starts in its place joins the recording and is held to
//! the same truth; the same recording as a Perfetto trace has a process track per worker with
//! its episodes as slices on its loop's thread. `top --subprocesses --plain` prints one line
//! per worker every second. `serve --subprocesses` serves every worker (and not the master,
//! which runs no loop), counts each worker's blocks against its truth, drops a killed worker
//! and picks up its successor.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::Serve;
use common::*;
use serde_json::Value;

const WORKERS: usize = 3;
const RATE: f64 = 100.0;
const RECORD_S: f64 = 7.0;
/// When the test kills a worker, counted from the start of `record`.
const KILL_AFTER: Duration = Duration::from_millis(3000);

/// The server's process group, killed whole on drop (a failed assertion leaves nothing).
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn start(server: &str, python: &Path, dir: &Path) -> Server {
    let apps = targets_dir().join("apps");
    let mut cmd = Command::new(python);
    match server {
        "gunicorn" => cmd
            .args(["-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", &WORKERS.to_string(), "-b", "127.0.0.1:0"])
            .args(["--log-level", "warning", "--chdir"])
            .arg(&apps)
            .arg("workers_app:app"),
        "uvicorn" => cmd
            .args(["-m", "uvicorn", "workers_app:app", "--workers", &WORKERS.to_string(), "--port", "0", "--log-level", "warning"])
            // asyncio's own loop here, uvloop (uvicorn's pick when installed) under gunicorn.
            .args(["--loop", "asyncio"])
            .arg("--app-dir")
            .arg(&apps),
        other => panic!("no server {other}"),
    };
    cmd.env("LOOPSPY_TRUTH_DIR", dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    Server { child: cmd.spawn().unwrap() }
}

/// The workers whose loop runs (their `ready-PID` files), once there are `n` alive.
fn ready_workers(dir: &Path, n: usize, deadline: Instant) -> BTreeSet<i32> {
    loop {
        let alive: BTreeSet<i32> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("ready-")?.parse().ok())
            .filter(|p: &i32| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if alive.len() >= n {
            return alive;
        }
        assert!(Instant::now() < deadline, "{n} workers did not start (alive: {alive:?})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A worker's blocks as it measured them: `(start, end)` in CLOCK_MONOTONIC seconds.
fn blocks(dir: &Path, pid: i32) -> Vec<(f64, f64)> {
    std::fs::read_to_string(dir.join(format!("blocks-{pid}.jsonl")))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["start"].as_f64().unwrap(), v["end"].as_f64().unwrap())
        })
        .collect()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The PIDs `dump --subprocesses --json` shows with a loop, and their parents.
fn dumped(master: i32) -> BTreeMap<i32, Option<i64>> {
    let (out, _, _) = loopspy(&["dump", "--subprocesses", "--json", "--pid", &master.to_string()]);
    assert!(out.status.success(), "{}", describe(&out));
    let v = json_of(&out);
    assert_eq!(v["subprocesses"], true);
    let ps = v["processes"].as_array().unwrap();
    assert_eq!(v["process_count"].as_u64(), Some(ps.len() as u64));
    ps.iter()
        .filter(|p| !p["loops"].as_array().unwrap().is_empty())
        .map(|p| (p["pid"].as_i64().unwrap() as i32, p["parent_pid"].as_i64()))
        .collect()
}

/// Check one worker's episodes against its truth: every block measured inside the time it
/// was recorded is found once, blamed on `blocking_step`, its duration within the episode's
/// own error bound plus one sample interval; every finished episode is a measured block.
/// Returns the blocks matched.
fn check_worker(ctx: &str, p: &Value, truth: &[(f64, f64)], window: (f64, f64)) -> usize {
    let interval = 1.0 / RATE;
    let episodes: Vec<&Value> = p["loops"].as_array().unwrap().iter().flat_map(|l| l["episodes"].as_array().unwrap().iter()).collect();
    let last_measured = truth.last().map(|b| b.1).unwrap_or(f64::MIN);
    for e in &episodes {
        let (s, en) = (num(&e["start"]), num(&e["end"]));
        // The block the worker was in when it was killed, or at the end, is not written yet.
        if e["ongoing"] == true || s > last_measured {
            continue;
        }
        assert!(
            truth.iter().any(|(ts, te)| s < *te + interval && en > *ts - interval),
            "{ctx}: episode at {s:.3} ({:.0} ms) is no block the worker measured: {e}",
            num(&e["duration_ms"])
        );
    }
    let mut matched = 0;
    for (ts, te) in truth.iter().filter(|(ts, te)| *ts >= window.0 + 2.0 * interval && *te <= window.1 - 2.0 * interval) {
        let over: Vec<&&Value> = episodes.iter().filter(|e| num(&e["start"]) < *te && num(&e["end"]) > *ts).collect();
        assert_eq!(over.len(), 1, "{ctx}: block {ts:.3}..{te:.3} found {} times: {over:?}", over.len());
        let e = over[0];
        assert_eq!(e["function"], "blocking_step", "{ctx}: {e}");
        let truth_ms = (te - ts) * 1e3;
        let got = num(&e["duration_ms"]);
        let tolerance = num(&e["duration_error_ms"]) + interval * 1e3;
        assert!(
            (got - truth_ms).abs() <= tolerance,
            "{ctx}: block at {ts:.3}: {got:.1} ms measured, {truth_ms:.1} ms true (tolerance {tolerance:.1} ms)"
        );
        matched += 1;
    }
    matched
}

fn fleet(version: &str, server: &str) {
    let test = format!("subprocesses/{server}");
    let flavor = if server == "uvicorn" { "stock" } else { "uvloop" };
    let Some(python) = framework_python(version, &test, flavor) else { return };
    record(&test, version, flavor, "FAIL");
    let ctx = format!("Python {version} {server}");
    let dir = tempfile::tempdir().unwrap();
    let srv = start(server, &python, dir.path());
    let master = srv.child.id() as i32;
    let workers = ready_workers(dir.path(), WORKERS, Instant::now() + Duration::from_secs(40));

    // dump: every worker, with its loop, as a child of the master.
    let shown = dumped(master);
    for w in &workers {
        assert_eq!(shown.get(w), Some(&Some(master as i64)), "{ctx}: worker {w} not dumped with a loop under {master}: {shown:?}");
    }

    // record, killing a worker on the way.
    let out = dir.path().join("r.json");
    let mut rec = Command::new(loopspy_bin())
        .args(["record", "--subprocesses", "--rate", &RATE.to_string(), "--duration", &RECORD_S.to_string(), "--pid"])
        .arg(master.to_string())
        .arg("-o")
        .arg(&out)
        .arg("-o")
        .arg(dir.path().join("r.jsonl"))
        .arg("-o")
        .arg(dir.path().join("r.pftrace"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(KILL_AFTER);
    let victim = *workers.iter().next().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), nix::sys::signal::Signal::SIGKILL).unwrap();
    let killed_at = started.elapsed().as_secs_f64();
    let status = rec.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(rec.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{ctx}: record failed: {err}");
    let now = ready_workers(dir.path(), WORKERS, Instant::now() + Duration::from_secs(10));
    let respawned: Vec<i32> = now.difference(&workers).copied().collect();
    assert_eq!(respawned.len(), 1, "{ctx}: the master did not start one worker in place of {victim}: {now:?}");
    std::thread::sleep(Duration::from_millis(100)); // the last truth lines
    let r: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(r["subprocesses"], true, "{ctx}");
    let end_time = num(&r["recording"]["end_time"]);
    let start_time = num(&r["recording"]["start"]);
    let procs: BTreeMap<i32, &Value> = r["processes"].as_array().unwrap().iter().map(|p| (p["pid"].as_i64().unwrap() as i32, p)).collect();
    for w in workers.iter().chain(&respawned) {
        let p = procs.get(w).unwrap_or_else(|| panic!("{ctx}: worker {w} not in the recording: {:?}", procs.keys()));
        let joined = start_time + num(&p["joined_s"]);
        let left = p["left_s"].as_f64().map(|l| start_time + l);
        let kinds: BTreeSet<&str> = p["loops"].as_array().unwrap().iter().filter_map(|l| l["loop_kind"].as_str()).collect();
        let kind = if flavor == "uvloop" { "uvloop" } else { "selector" };
        assert_eq!(kinds, BTreeSet::from([kind]), "{ctx}: worker {w}'s loops");
        let truth = blocks(dir.path(), *w);
        let matched = check_worker(&format!("{ctx} worker {w}"), p, &truth, (joined, left.unwrap_or(end_time)));
        if *w == victim {
            // Killed: it left, as exited, and what was sampled before stays.
            assert_eq!(p["end"], "exited", "{ctx}: {p}");
            let left_s = num(&p["left_s"]);
            assert!(left_s <= killed_at + 1.0, "{ctx}: the killed worker left at {left_s:.2} s, killed at {killed_at:.2} s");
            assert!(matched >= 2, "{ctx}: {matched} blocks of the killed worker before it died");
        } else if respawned.contains(w) {
            // Its replacement joined after the kill.
            assert!(num(&p["joined_s"]) > 0.5, "{ctx}: {p}");
            assert!(matched >= 2, "{ctx}: {matched} blocks of the new worker {w}");
        } else {
            assert!(p["left_s"].is_null(), "{ctx}: worker {w} left: {p}");
            assert!(matched >= 6, "{ctx}: {matched} blocks of worker {w}");
        }
        log(&format!("{ctx}: worker {w}: {matched} blocks matched ({} measured)", truth.len()));
    }
    // The JSON lines say which process each loop runs in, and carry the same episodes.
    let lines: Vec<Value> =
        std::fs::read_to_string(dir.path().join("r.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let loop_pids: BTreeSet<i32> =
        lines.iter().filter(|l| l["type"] == "loop").filter_map(|l| l["pid"].as_i64()).map(|p| p as i32).collect();
    for w in workers.iter().chain(&respawned) {
        assert!(loop_pids.contains(w), "{ctx}: no loop line with pid {w}: {loop_pids:?}");
    }
    let json_episodes: usize =
        procs.values().flat_map(|p| p["loops"].as_array().unwrap()).map(|l| l["episodes"].as_array().unwrap().len()).sum();
    assert_eq!(lines.iter().filter(|l| l["type"] == "episode").count(), json_episodes, "{ctx}: episodes in JSON lines and JSON");
    // The Perfetto trace: a process track per process recorded, each worker's loop thread
    // under its own pid, and its episodes as slices there.
    if let Some(schema) = perfetto_schema(&test, None) {
        let v = check_pftrace(&schema, &dir.path().join("r.pftrace"));
        let traced: BTreeSet<i32> = v["processes"].as_array().unwrap().iter().map(|p| p["pid"].as_i64().unwrap() as i32).collect();
        assert_eq!(traced, procs.keys().copied().collect::<BTreeSet<i32>>(), "{ctx}: process tracks");
        for (pid, p) in &procs {
            let threads: Vec<&Value> = v["threads"].as_array().unwrap().iter().filter(|t| t["pid"] == *pid).collect();
            let loops = p["loops"].as_array().unwrap();
            assert_eq!(threads.len(), loops.len(), "{ctx}: worker {pid}'s loop threads");
            let episodes: usize = loops.iter().map(|l| l["episodes"].as_array().unwrap().len()).sum();
            let slices = v["slices"].as_array().unwrap().iter().filter(|s| threads.iter().any(|t| t["uuid"] == s["track"])).count();
            assert_eq!(slices, episodes, "{ctx}: worker {pid}'s slices");
        }
    }
    record(&test, version, flavor, "ok");
    drop(srv);
}

/// `top --subprocesses` on a pipe: one line per worker every second, each naming its PID;
/// a worker shown blocked is blocked in `blocking_step`.
fn top_plain(version: &str) {
    let test = "subprocesses/top";
    let Some(python) = framework_python(version, test, "stock") else { return };
    record(test, version, "stock", "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let srv = start("uvicorn", &python, dir.path());
    let master = srv.child.id() as i32;
    let workers = ready_workers(dir.path(), WORKERS, Instant::now() + Duration::from_secs(40));
    let (out, before, after) =
        loopspy(&["top", "--subprocesses", "--plain", "--duration", "4", "--threshold", "100", "--pid", &master.to_string()]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ticks: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    let mut last_count: BTreeMap<i32, usize> = BTreeMap::new();
    for line in text.lines() {
        let (clock, rest) = line.split_once(' ').unwrap();
        let pid: i32 =
            rest.strip_prefix("PID ").and_then(|r| r.split(' ').next()).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{line}"));
        ticks.entry(clock).or_default().push(pid);
        if line.contains("BLOCKED") {
            assert!(line.contains("in blocking_step (") && line.contains("workers_app.py:"), "{line}");
        }
        let episodes = line.rsplit(" | ").next().and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok());
        last_count.insert(pid, episodes.unwrap_or_else(|| panic!("no episode count: {line}")));
    }
    assert!(ticks.len() >= 3, "{text}");
    for (clock, pids) in &ticks {
        let set: BTreeSet<i32> = pids.iter().copied().collect();
        assert_eq!(set.len(), pids.len(), "{clock}: a worker twice: {text}");
        assert!(workers.is_subset(&set), "{clock}: {pids:?} lacks a worker of {workers:?}: {text}");
    }
    // The blocking episodes counted by the last line against the blocks each worker measured:
    // at least those surely inside the time watched (the 4 s count from when sampling starts,
    // so it started by `after - 4`; lines come every second, so the last one by `after - 1`),
    // at most those that overlap the whole run.
    for w in &workers {
        let truth = blocks(dir.path(), *w);
        let surely = truth.iter().filter(|(s, e)| *s >= after - 3.95 && *e <= after - 1.15).count();
        let at_most = truth.iter().filter(|(s, e)| *e >= before && *s <= after).count() + 1;
        let got = last_count[w];
        assert!(surely <= got && got <= at_most, "worker {w}: {got} episodes shown, {surely}..{at_most} measured: {text}");
        assert!(surely >= 1, "worker {w}: no block measured while watched");
    }
    record(test, version, "stock", "ok");
    drop(srv);
}

/// The value of `name` for the process `pid` (and `extra` label text, e.g. a function), if served.
fn value_of(s: &[(String, String, f64)], name: &str, pid: i32, extra: &str) -> Option<f64> {
    let pid = format!("pid=\"{pid}\"");
    s.iter().find(|(n, l, _)| n == name && l.split(',').any(|x| x == pid) && l.contains(extra)).map(|x| x.2)
}

/// `serve --subprocesses --pid MASTER` on `uvicorn --workers 3`.
fn serve_tree(version: &str) {
    let test = "subprocesses/serve";
    let Some(python) = framework_python(version, test, "stock") else { return };
    record(test, version, "stock", "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let srv = start("uvicorn", &python, dir.path());
    let master = srv.child.id() as i32;
    let workers = ready_workers(dir.path(), WORKERS, Instant::now() + Duration::from_secs(40));
    let serve = Serve::start(&["--subprocesses", "--rate", "50", "--pid", &master.to_string()]);

    // Every worker is served, up, as soon as it is sampled; the master (no loop) is not.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut up_at: BTreeMap<i32, f64> = BTreeMap::new();
    while up_at.len() < workers.len() {
        let s = serve.samples();
        for w in &workers {
            if value_of(&s, "loopspy_up", *w, "") == Some(1.0) {
                up_at.entry(*w).or_insert_with(monotonic);
            }
        }
        assert!(Instant::now() < deadline, "workers up: {up_at:?} of {workers:?}: {:?}", serve.said());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(4));
    let s = serve.samples();
    let at = monotonic();
    assert_eq!(value_of(&s, "loopspy_up", master, ""), None, "the master runs no loop: not a target that is down");
    for w in &workers {
        // Blocks wholly after the worker was first seen up and ended by 0.5 s before the
        // scrape (figures are published every 0.25 s) are surely counted; at most those that
        // overlap the whole time served.
        let truth = blocks(dir.path(), *w);
        let surely = truth.iter().filter(|(b, e)| *b >= up_at[w] && *e <= at - 0.5).count();
        let at_most = truth.iter().filter(|(_, e)| *e >= up_at[w] - 2.0).count();
        let got = value_of(&s, "event_loop_blocking_episodes_total", *w, "function=\"blocking_step\"").unwrap_or(0.0) as usize;
        assert!(surely >= 2 && surely <= got && got <= at_most, "worker {w}: {got} episodes served, {surely}..{at_most} measured");
        assert!(value_of(&s, "event_loop_lag_seconds_count", *w, "").is_some_and(|n| n > 0.0), "worker {w}: no lag");
    }

    // A worker killed leaves the metrics; the one its master starts in its place joins them.
    let victim = *workers.iter().next().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let successor = loop {
        let now = ready_workers(dir.path(), WORKERS, deadline);
        if let Some(s) = now.difference(&workers).next() {
            break *s;
        }
        assert!(Instant::now() < deadline, "no worker started in place of {victim}: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = serve.samples();
        if value_of(&s, "loopspy_up", successor, "") == Some(1.0) && value_of(&s, "loopspy_up", victim, "").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the successor {successor} of {victim} was not picked up: {:?}", serve.said());
        std::thread::sleep(Duration::from_millis(200));
    }
    record(test, version, "stock", "ok");
    drop(srv);
}

#[test]
fn serve_uvicorn_workers_py3_13() {
    serve_tree("3.13");
}

#[test]
fn gunicorn_uvicorn_workers_py3_10() {
    fleet("3.10", "gunicorn");
}

#[test]
fn gunicorn_uvicorn_workers_py3_13() {
    fleet("3.13", "gunicorn");
}

#[test]
fn uvicorn_workers_py3_10() {
    fleet("3.10", "uvicorn");
}

#[test]
fn uvicorn_workers_py3_13() {
    fleet("3.13", "uvicorn");
}

#[test]
fn top_plain_one_line_per_worker_py3_13() {
    top_plain("3.13");
}
