//! `loopspy serve` against a real target that runs a known schedule of blocks and times them
//! itself (tests/targets/serve_schedule.py): the exposition is scraped over HTTP and parsed
//! by Prometheus' own Python parser (prometheus_client, provisioned by
//! scripts/prom-parser.sh); the counters must match the schedule; a killed target is served
//! as `loopspy_up 0`, and a restarted one (its new PID in the PID file) is picked up.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::Serve;
use common::{in_ci, monotonic, record, require, wait_for_json, Interp, Scenario};
use serde_json::Value;

const PROM_CLIENT: &str = "0.26.0";
const RATE: f64 = 20.0;

/// Where scripts/prom-parser.sh put prometheus_client; `None` after recording a skip.
fn parser_dir(version: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("LOOPSPY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/loopspy"));
    let dir = cache.join("promclient").join(PROM_CLIENT);
    if dir.join("prometheus_client/parser.py").exists() {
        return Some(dir);
    }
    if in_ci() {
        panic!("CI=true but prometheus_client is not in {}; run scripts/prom-parser.sh", dir.display());
    }
    eprintln!("SKIPPED serve: prometheus_client is not in {} (scripts/prom-parser.sh)", dir.display());
    record("serve", version, "stock", "skipped (no prometheus_client)");
    None
}

/// `promtool check metrics` (Debian's `prometheus` package): the Go parser Prometheus
/// itself uses, and its lint (help text, counter names). Outside CI, skipped loudly when
/// missing; under CI it is required (.ci/run installs it).
fn promtool_check(text: &str) {
    let child =
        Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if !in_ci() => {
            eprintln!("SKIPPED promtool check: promtool not found ({e}); apt-get install prometheus");
            return;
        }
        Err(e) => panic!("CI=true but promtool cannot run: {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One sample as the parser read it.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The exposition through prometheus_client's parser (which fails on a malformed one).
fn parse(interp: &Interp, parser: &PathBuf, text: &str) -> Vec<Sample> {
    let mut child = Command::new(&interp.path)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/common/prom_parse.py"))
        .env("PYTHONPATH", parser)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client rejects the exposition:\n{}\n{text}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap().to_string(),
            labels: s["labels"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

/// Samples of `name` whose labels include every `(key, value)` of `with`.
fn find<'a>(samples: &'a [Sample], name: &str, with: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name && with.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))).collect()
}

fn one(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    let found = find(samples, name, with);
    assert_eq!(found.len(), 1, "{name} {with:?}: {found:?}");
    found[0].value
}

/// Scrape (and parse) until `ok` holds, at most `timeout`.
fn scrape_until(
    serve: &Serve,
    interp: &Interp,
    parser: &PathBuf,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = serve.scrape();
        let samples = parse(interp, parser, &text);
        if ok(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "{what} not seen within {timeout:?}; last scrape:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn serve_schedule(version: &str) {
    let Some(interp) = require(version, "serve") else { return };
    let Some(parser) = parser_dir(version) else { return };
    let mut target = Scenario::start(interp, "serve_schedule.py", &[]);
    let pid = target.pid().to_string();
    let dir = target.dir.path().to_path_buf();
    let pid_file = dir.join("app.pid");
    std::fs::write(&pid_file, format!("{pid}\n")).unwrap();
    let serve = Serve::start(&["--pid-file", pid_file.to_str().unwrap()]);
    let target_label = format!("pid-file {}", pid_file.display());
    let me = [("pid", pid.as_str())];

    // Attached, sampling, nothing blocked yet.
    let before = scrape_until(&serve, interp, &parser, Duration::from_secs(15), "up 1", |s| {
        find(s, "loopspy_up", &me).first().is_some_and(|u| u.value == 1.0)
            && find(s, "loopspy_samples_total", &me).first().is_some_and(|u| u.value > 0.0)
    });
    let attached = monotonic();
    assert_eq!(one(&before, "loopspy_up", &[("target", &target_label), ("pid", &pid)]), 1.0);
    let thread = target.truth["thread_native_id"].to_string();
    let loop_class = target.truth["loop_class"].as_str().unwrap().to_string();
    let ids = [("pid", pid.as_str()), ("thread", thread.as_str()), ("loop", loop_class.as_str())];
    assert!(find(&before, "event_loop_blocking_episodes_total", &ids).is_empty(), "no episode before the schedule");
    let lag_count_before = one(&before, "event_loop_lag_seconds_count", &ids);

    // The schedule, then its truth.
    std::fs::write(dir.join("go"), "").unwrap();
    let done = wait_for_json(&dir.join("done.json"), &mut target.child, Duration::from_secs(20));
    // An episode is counted at the sample after it; the figures are published 4 times a second.
    std::thread::sleep(Duration::from_millis(700));
    let text = serve.scrape();
    let after = parse(interp, &parser, &text);
    promtool_check(&text);
    let now = monotonic();
    let interval = 1.0 / RATE;

    let blocks = done["blocks"].as_array().unwrap();
    let hostile = target.truth["functions"][1].as_str().unwrap().to_string();
    let mut blocked_total = 0.0;
    for function in ["slow_query", hostile.as_str()] {
        let mine: Vec<f64> = blocks
            .iter()
            .filter(|b| b["function"] == function)
            .map(|b| b["end"].as_f64().unwrap() - b["start"].as_f64().unwrap())
            .collect();
        blocked_total += mine.iter().sum::<f64>();
        // The label carries the name made visible (`\n` as two characters, `\` doubled).
        let label = loopspy::base::escape::terminal(function).into_owned();
        let with: Vec<(&str, &str)> = ids.iter().copied().chain([("function", label.as_str())]).collect();
        let episodes = one(&after, "event_loop_blocking_episodes_total", &with);
        assert_eq!(episodes, mine.len() as f64, "episodes of {function:?}:\n{text}");
        let seconds = one(&after, "event_loop_blocked_seconds_total", &with);
        let truth: f64 = mine.iter().sum();
        // Each episode's ends are known to one sampling interval each.
        let tolerance = mine.len() as f64 * 2.0 * interval;
        assert!((seconds - truth).abs() <= tolerance, "blocked seconds of {function:?}: {seconds} vs {truth} ± {tolerance}");
    }
    assert_eq!(find(&after, "event_loop_blocking_episodes_total", &ids).len(), 2, "only the two functions blocked:\n{text}");

    // Lag: a sample in a block of d seconds sees the ticker's timer overdue by up to d; those
    // over 100 ms are about (d - 0.1 - 0.01) s of each block.
    let over = |s: &[Sample]| {
        let inf = one(s, "event_loop_lag_seconds_bucket", &[ids[0], ids[1], ids[2], ("le", "+Inf")]);
        let le = one(s, "event_loop_lag_seconds_bucket", &[ids[0], ids[1], ids[2], ("le", "0.1")]);
        inf - le
    };
    let expected: f64 = blocks.iter().map(|b| (b["end"].as_f64().unwrap() - b["start"].as_f64().unwrap() - 0.11).max(0.0) * RATE).sum();
    let seen = over(&after) - over(&before);
    let slack = blocks.len() as f64 * 1.5;
    assert!(
        seen >= expected * 0.6 - slack && seen <= expected * 1.2 + slack,
        "samples lagging > 100 ms: {seen}, schedule says {expected:.1}"
    );
    let lag_count = one(&after, "event_loop_lag_seconds_count", &ids);
    let samples = one(&after, "loopspy_samples_total", &me);
    assert!(lag_count > lag_count_before && lag_count <= samples, "lag observations {lag_count_before} → {lag_count}, samples {samples}");
    let elapsed = now - serve.started;
    assert!(samples >= 0.5 * RATE * (now - attached) && samples <= RATE * elapsed + 2.0, "{samples} samples in {elapsed:.1} s");
    assert_eq!(one(&after, "loopspy_failed_samples_total", &me), 0.0, "failed looks at an easy target");

    // Busy share of the last 10 s: the blocks over the time watched (at most 10 s).
    let window = elapsed.min(10.0);
    let busy = one(&after, "event_loop_busy_ratio", &ids);
    let low = 0.7 * blocked_total / window;
    let high = (blocked_total + 0.1 * window) / (now - attached).min(10.0) * 1.3;
    assert!(busy >= low && busy <= high.min(1.0), "busy ratio {busy}, blocks {blocked_total:.2} s in a window of {window:.1} s");
    let select = one(&after, "event_loop_select_seconds_total", &ids);
    assert!(select <= elapsed && select >= 0.7 * ((now - attached) - blocked_total), "select {select:.2} s of {elapsed:.1} s");
    assert_eq!(one(&after, "asyncio_pending_tasks", &ids), done["pending_tasks"].as_f64().unwrap());

    // Killed: up 0, still served.
    let _ = target.child.kill();
    let _ = target.child.wait();
    let down = scrape_until(&serve, interp, &parser, Duration::from_secs(5), "up 0", |s| {
        find(s, "loopspy_up", &me).first().is_some_and(|u| u.value == 0.0)
    });
    assert!(find(&down, "event_loop_lag_seconds_count", &me).is_empty(), "no loop series for a process that exited");

    // Restarted: the new PID in the file is picked up, and replaces the old one.
    let again = Scenario::start(interp, "serve_schedule.py", &[]);
    let new_pid = again.pid().to_string();
    std::fs::write(&pid_file, format!("{new_pid}\n")).unwrap();
    let back = scrape_until(&serve, interp, &parser, Duration::from_secs(15), "the restarted target", |s| {
        find(s, "loopspy_up", &[("pid", &new_pid)]).first().is_some_and(|u| u.value == 1.0)
    });
    assert!(find(&back, "loopspy_up", &me).is_empty(), "the old PID's series are gone");
    assert_eq!(find(&back, "event_loop_lag_seconds_count", &[("pid", &new_pid)]).len(), 1);
    record("serve", version, "stock", "passed");
}

/// `--match`: the Python process whose command line holds a token is followed; the shell
/// that started it (its command line holds the token too, but it is not Python) is left out,
/// and so is loopspy itself; when the process is killed and another one with the token
/// starts, that one is picked up.
fn serve_match(version: &str) {
    let Some(interp) = require(version, "serve_match") else { return };
    let Some(parser) = parser_dir(version) else { return };
    let token = format!("serve-match-token-{}-{}", std::process::id(), monotonic().to_bits());
    let dir = tempfile::tempdir().unwrap();
    let script = common::targets_dir().join("serve_schedule.py");
    let start = |n: u32| {
        let truth = dir.path().join(format!("truth{n}.json"));
        // `; exit` keeps the shell from exec'ing Python: it stays, matching the pattern.
        let line = format!("'{}' '{}' '{}' {token}; exit", interp.path.display(), script.display(), truth.display());
        let mut child = Command::new("sh").args(["-c", &line]).stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
        let t = wait_for_json(&truth, &mut child, Duration::from_secs(30));
        (child, t["pid"].as_i64().unwrap().to_string())
    };
    /// Kills the Python processes when the test ends, passed or not.
    struct Kill(Vec<String>);
    impl Drop for Kill {
        fn drop(&mut self) {
            for pid in &self.0 {
                let _ = Command::new("kill").arg(pid).status();
            }
        }
    }
    let (mut shell, pid) = start(1);
    let mut kill = Kill(vec![pid.clone()]);
    let serve = Serve::start(&["--match", &token]);
    let label = format!("match {token}");
    let s = scrape_until(&serve, interp, &parser, Duration::from_secs(15), "the matched process", |s| {
        find(s, "loopspy_up", &[("pid", &pid)]).first().is_some_and(|u| u.value == 1.0)
    });
    let ups = find(&s, "loopspy_up", &[("target", &label)]);
    assert_eq!(ups.len(), 1, "only the Python process, not its shell nor loopspy: {ups:?}");
    assert_eq!(find(&s, "event_loop_lag_seconds_count", &[("pid", &pid)]).len(), 1);

    // The Python process dies (its shell exits after it); another one starts.
    let _ = Command::new("kill").arg(&pid).status();
    let _ = shell.wait();
    let (mut shell2, pid2) = start(2);
    kill.0.push(pid2.clone());
    scrape_until(&serve, interp, &parser, Duration::from_secs(15), "the new matched process", |s| {
        find(s, "loopspy_up", &[("pid", &pid2)]).first().is_some_and(|u| u.value == 1.0)
            && find(s, "loopspy_up", &[("pid", &pid)]).is_empty()
    });
    let _ = Command::new("kill").arg(&pid2).status();
    let _ = shell2.wait();
    record("serve_match", version, "stock", "passed");
}

#[test]
fn match_py3_13() {
    serve_match("3.13");
}

/// One interpreter before 3.11 (co_name, the thread-state dict) and one after 3.13 (the
/// published offsets, `co_qualname`).
#[test]
fn py3_10() {
    serve_schedule("3.10");
}

#[test]
fn py3_13() {
    serve_schedule("3.13");
}
