//! Comparing a `loopspy dump --json` report with the truth a scenario target measured about
//! its own loop (tests/targets/truth.py): shared by tests/dump_scenarios.rs and the tests of
//! the shipped binaries (tests/dist.rs), so that every form of loopspy is held to the same
//! figures.

use serde_json::Value;

/// Allowed error of a due/overdue time, beyond the span of the loopspy run itself.
pub const LATENESS_TOLERANCE_MS: f64 = 20.0;

pub fn minor(version: &str) -> u32 {
    version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0)
}

/// 3.13+ publish their layout; loopspy must have read it and found our table in agreement.
pub fn check_layout_source(version: &str, report: &Value, ctx: &str) {
    let layout = &report["layout"];
    let source = layout["source"].as_str().unwrap_or_default();
    if minor(version) >= 13 {
        assert!(source.starts_with("_Py_DebugOffsets"), "layout source {source:?}; {ctx}");
        assert!(layout["checked"].as_u64().unwrap() >= 30, "{layout}; {ctx}");
        assert_eq!(layout["differences"], serde_json::json!([]), "table disagrees with the interpreter; {ctx}");
    }
    if minor(version) >= 14 {
        assert!(source.ends_with("AsyncioDebug"), "layout source {source:?}; {ctx}");
    }
    if minor(version) <= 12 {
        assert!(source.starts_with("table"), "layout source {source:?}; {ctx}");
    }
}

pub fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Compare one loop of the report with the truth the target recorded about it.
pub fn check_loop(l: &Value, t: &Value, before: f64, after: f64, version: &str, ctx: &str) {
    let ctx = format!("{ctx}\nreport: {l:#}\ntruth: {t:#}");
    if !t["thread_native_id"].is_null() {
        assert_eq!(l["thread"]["native_id"], t["thread_native_id"], "thread id; {ctx}");
    }
    assert_eq!(l["thread"]["name"], t["thread_name"], "thread name; {ctx}");
    assert_eq!(l["loop_class"], t["loop_class"], "loop class; {ctx}");
    assert_eq!(l["state"]["state"], t["state"], "state; {ctx}");
    assert_eq!(l["ready"], t["ready"], "ready depth; {ctx}");
    assert_eq!(l["timers"]["count"], t["timers"], "timer count; {ctx}");
    if !t["fds"].is_null() {
        assert_eq!(l["fds"], t["fds"], "fd count; {ctx}");
    }
    assert_eq!(l["selector"], t["selector"], "selector; {ctx}");
    match t["earliest_live_when"].as_f64() {
        None => assert!(l["timers"]["earliest"].is_null(), "no live timer expected; {ctx}"),
        Some(when) => {
            let due_in = num(&l["timers"]["earliest"]["due_in_ms"]);
            // loopspy read the clock somewhere between `before` and `after`.
            let lo = (when - after) * 1e3 - LATENESS_TOLERANCE_MS;
            let hi = (when - before) * 1e3 + LATENESS_TOLERANCE_MS;
            assert!(lo <= due_in && due_in <= hi, "due_in_ms {due_in} outside [{lo}, {hi}]; {ctx}");
            let lag = num(&l["lag_ms"]);
            // The lag is the most overdue timer's lateness, in the heap or waiting in _ready.
            let in_ready = l["timers"]["earliest_in_ready"]["due_in_ms"].as_f64().unwrap_or(f64::MAX);
            assert!((lag - (-due_in.min(in_ready)).max(0.0)).abs() < 1e-6, "lag_ms must be the overdue part; {ctx}");
        }
    }
    let uvloop = l["loop_kind"] == "uvloop";
    match &t["callback"] {
        Value::Null => assert!(l["callback"].is_null(), "no callback expected; {ctx}"),
        // uvloop calls plain callbacks from C; only 3.11+ frames say which frame C entered.
        _ if uvloop && minor(version) <= 10 && t["callback_kind"] == "function" => {
            assert!(l["callback"].is_null(), "uvloop on {version} cannot name a plain callback; {ctx}")
        }
        qualname => {
            let cb = &l["callback"];
            assert_eq!(&cb["qualname"], qualname, "callback; {ctx}");
            assert_eq!(cb["kind"], t["callback_kind"], "callback kind; {ctx}");
            match &t["task"] {
                Value::Null => assert!(cb["task"].is_null(), "no task expected; {ctx}"),
                name => {
                    assert_eq!(&cb["task"]["name"], name, "task name; {ctx}");
                    assert_eq!(cb["task"]["coro"], t["task_coro"], "task coroutine; {ctx}");
                }
            }
        }
    }
    if let Some(f) = t["blocking_function"].as_str() {
        let top = l["stack"][0]["function"].as_str().unwrap_or_default();
        assert!(top == f || top.ends_with(&format!(".{f}")), "top frame {top:?}, expected {f}; {ctx}");
    }
    if uvloop && t["state"] == "callback" {
        // libuv notes when the iteration started: the loop has been busy at least since the
        // target recorded its truth (just before blocking).
        let busy = num(&l["state"]["for_ms"]);
        assert!(busy >= 0.0, "busy for {busy} ms; {ctx}");
    }
}
