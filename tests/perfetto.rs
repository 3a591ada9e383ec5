//! The Perfetto trace (`--format perfetto`, `.pftrace`) read by Perfetto's own compiled schema
//! (PyPI's `perfetto` package, provisioned by scripts/perfetto-schema.sh) through
//! tests/tools/check_pftrace.py, which also checks what a loader needs (tracks declared,
//! slices balanced and nested, timestamps in order, interned ids defined before use, counters
//! on counter tracks):
//! - the protobuf writer's output decodes to the values written, at their edges;
//! - the checker rejects broken traces (so that its passing means something);
//! - `record` of a target with a known schedule of blocks (tests/targets/schedule.py), on
//!   every interpreter: one slice per block on the loop's thread track, each as long as the
//!   block within the error the slice states, named after the blocked function, with its
//!   task and syscall; the same slices as the JSON's episodes; every sample as a stack; the
//!   counters present; and `render` of the saved capture gives the same bytes.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use loopspy::output::protobuf::Message;
use serde_json::Value;

const RATE: f64 = 100.0;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The counter track `name` under track `parent`, from the checker's account.
fn counter_of<'a>(v: &'a Value, name: &str, parent: &Value) -> Option<&'a Value> {
    v["counters"].as_array().unwrap().iter().find(|c| c["name"] == name && &c["parent"] == parent)
}

/// A trace of `packets`.
fn trace_of(packets: &[Message]) -> Vec<u8> {
    let mut t = Message::new();
    for p in packets {
        t.message(1, p);
    }
    t.into_bytes()
}

/// The trace as protobuf's own JSON mapping (`--dump`).
fn dump(schema: &(PathBuf, PathBuf), bytes: &[u8]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.pftrace");
    std::fs::write(&path, bytes).unwrap();
    let out = pftrace_checker(schema, &["--dump".as_ref(), path.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The first packet of a sequence, as loopspy writes it.
fn first_packet() -> Message {
    let mut p = Message::new();
    p.uint(10, 1).uint(13, 1).bool(87, true);
    p
}

#[test]
fn encoder_round_trips_through_perfettos_decoder() {
    let Some(schema) = perfetto_schema("perfetto/encoder", None) else { return };
    // Edge values in fields of each type: uint64 timestamp (8), uint32 sequence id (10),
    // int32 pid (negative: ten bytes), int64 tid, double counter value, strings with
    // multi-byte characters, repeated strings, nested messages two deep.
    let mut p = Message::new();
    p.uint(8, u64::MAX).uint(10, u32::MAX as u64).with(60, |t| {
        t.uint(1, 1u64 << 63).string(2, "é∂ 🐍 \u{7f}").with(3, |d| {
            d.int(1, -1).string(2, "").string(2, "a\u{0}b").string(6, &"x".repeat(300));
        });
    });
    let mut q = Message::new();
    q.uint(8, 0).uint(10, 1).uint(13, 2).with(11, |e| {
        e.uint(9, 4).uint(11, 127).double(44, -0.0).double(44, 1e308);
    });
    let mut r = Message::new();
    r.uint(8, 128).uint(10, 1).with(60, |t| {
        t.uint(1, 16_384).with(4, |d| {
            d.int(1, i32::MIN as i64).int(2, i64::MIN).string(5, "t");
        });
    });
    let v = dump(&schema, &trace_of(&[p, q, r]));
    let packets = v["packet"].as_array().unwrap();
    assert_eq!(packets.len(), 3, "{v}");
    // protobuf's JSON mapping gives 64-bit integers as strings.
    assert_eq!(packets[0]["timestamp"], u64::MAX.to_string());
    assert_eq!(packets[0]["trusted_packet_sequence_id"], u32::MAX);
    let t = &packets[0]["track_descriptor"];
    assert_eq!(t["uuid"], (1u64 << 63).to_string());
    assert_eq!(t["name"], "é∂ 🐍 \u{7f}");
    assert_eq!(t["process"]["pid"], -1);
    assert_eq!(t["process"]["cmdline"], serde_json::json!(["", "a\u{0}b"]));
    assert_eq!(t["process"]["process_name"], "x".repeat(300));
    let e = &packets[1]["track_event"];
    assert_eq!(e["type"], "TYPE_COUNTER");
    assert_eq!(e["track_uuid"], "127");
    // A repeated write of a singular field: the last one wins.
    assert_eq!(num(&e["double_counter_value"]), 1e308);
    assert_eq!(packets[1]["sequence_flags"], 2);
    let th = &packets[2]["track_descriptor"]["thread"];
    assert_eq!(th["pid"], i32::MIN);
    assert_eq!(th["tid"], i64::MIN.to_string());
    assert_eq!(packets[2]["track_descriptor"]["uuid"], "16384");
}

#[test]
fn checker_rejects_broken_traces() {
    let Some(schema) = perfetto_schema("perfetto/checker", None) else { return };
    let process = |uuid: u64| {
        let mut p = Message::new();
        p.uint(10, 1).with(60, |t| {
            t.uint(1, uuid).with(3, |d| {
                d.int(1, 42);
            });
        });
        p
    };
    let event = |ts: u64, kind: u64, track: u64| {
        let mut p = Message::new();
        p.uint(8, ts).uint(10, 1).uint(13, 2).with(11, |e| {
            e.uint(9, kind).uint(11, track);
        });
        p
    };
    // A field the schema does not know (TracePacket field 5000), and a known field of the
    // wrong wire type (timestamp as a string).
    let mut unknown = first_packet();
    unknown.uint(5000, 1);
    let mut ill_typed = first_packet();
    ill_typed.string(8, "yesterday");
    let mut named = Message::new();
    named.uint(8, 10).uint(10, 1).uint(13, 2).with(11, |e| {
        e.uint(9, 1).uint(11, 1).uint(10, 3);
    });
    // (name, trace, what the checker must say; "" for the valid one)
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("ok", trace_of(&[first_packet(), process(1), event(10, 1, 1), event(20, 2, 1)]), ""),
        ("unknown", trace_of(&[unknown]), "does not know"),
        ("ill_typed", trace_of(&[ill_typed]), "does not know or of the wrong type"),
        ("not_cleared", trace_of(&[process(1)]), "does not clear"),
        ("undeclared", trace_of(&[first_packet(), process(1), event(10, 1, 7), event(20, 2, 7)]), "undeclared track"),
        ("unbalanced", trace_of(&[first_packet(), process(1), event(10, 2, 1)]), "end without a begin"),
        ("open", trace_of(&[first_packet(), process(1), event(10, 1, 1)]), "never end"),
        ("backwards", trace_of(&[first_packet(), process(1), event(20, 1, 1), event(10, 2, 1)]), "goes back"),
        ("counter_on_slice_track", trace_of(&[first_packet(), process(1), event(10, 4, 1)]), "not a counter track"),
        ("name_not_interned", trace_of(&[first_packet(), process(1), named, event(20, 2, 1)]), "not interned"),
        ("garbage", vec![0x0a, 0x05, 0x01], "not a Perfetto trace"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<std::ffi::OsString> = vec!["--each".into()];
    for (name, bytes, _) in &cases {
        let path = dir.path().join(format!("{name}.pftrace"));
        std::fs::write(&path, bytes).unwrap();
        args.push(path.into_os_string());
    }
    let out = pftrace_checker(&schema, &args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    for ((name, _, why), r) in cases.iter().zip(results.as_array().unwrap()) {
        let errors = r["errors"].to_string();
        if why.is_empty() {
            assert_eq!(r["ok"], true, "{name}: {errors}");
        } else {
            assert_eq!(r["ok"], false, "{name}: accepted");
            assert!(errors.contains(why), "{name}: {errors}");
        }
    }
}

fn schedule(version: &str) {
    let test = "perfetto/schedule";
    let Some(interp) = require(version, test) else { return };
    let Some(schema) = perfetto_schema(test, Some(version)) else { return };
    record(test, version, "stock", "FAIL");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let out = Command::new(loopspy_bin())
        .args(["record", "--rate", "100", "--duration", "5.6", "-o"])
        .arg(p("r.pftrace"))
        .arg("-o")
        .arg(p("r.json"))
        .arg("--save")
        .arg(p("r.loopspy"))
        .arg("--")
        .arg(&interp.path)
        .arg(targets_dir().join("schedule.py"))
        .arg(p("truth.json"))
        .output()
        .unwrap();
    let ctx = format!("Python {version}");
    assert_eq!(out.status.code(), Some(0), "{ctx}\n{}", describe(&out));
    let t: Value = serde_json::from_str(&std::fs::read_to_string(p("truth.json")).expect("truth written")).unwrap();
    let r: Value = serde_json::from_str(&std::fs::read_to_string(p("r.json")).unwrap()).unwrap();
    let v = check_pftrace(&schema, &p("r.pftrace"));

    // The recording's clock, its process and its loop's thread.
    assert_eq!(v["clock_id"], 3, "{ctx}: BUILTIN_CLOCK_MONOTONIC");
    assert_eq!(v["primary_trace_clock"], 3, "{ctx}: the trace's clock");
    let pid = r["target"]["pid"].as_i64().unwrap();
    assert_eq!(v["processes"].as_array().unwrap().len(), 1, "{ctx}: {v}");
    assert_eq!(v["processes"][0]["pid"], pid, "{ctx}");
    assert!(v["processes"][0]["name"].as_str().unwrap().contains("schedule.py"), "{ctx}: {}", v["processes"][0]);
    let threads = v["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1, "{ctx}: {threads:?}");
    let l = &r["loops"][0];
    assert_eq!(threads[0]["tid"], l["native_id"], "{ctx}: {} vs {}", threads[0], l["native_id"]);
    assert!(threads[0]["name"].as_str().unwrap().contains("EventLoop"), "{ctx}: {}", threads[0]);

    // One slice per block of the truth, on the thread's track, as long as the block within
    // the error the slice states (or two intervals), named after the blocked function.
    let blocks = t["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 7, "{ctx}: the target ran its schedule");
    // Once its schedule is over, the target writes its truth (a JSON file of some 80 kB)
    // from the loop: on a loaded machine that blocks it past the threshold, a real episode
    // of its own, after the last block (and its gap) and not one of the schedule's.
    let schedule_end = blocks.iter().map(|b| num(&b["end"])).fold(f64::MIN, f64::max) + 0.15;
    let slices: Vec<&Value> = v["slices"].as_array().unwrap().iter().filter(|s| num(&s["begin"]) / 1e9 < schedule_end).collect();
    assert_eq!(slices.len(), blocks.len(), "{ctx}: slices {slices:#?}\nblocks {blocks:#?}");
    let interval = 1.0 / RATE;
    let sleep_syscall = if version == "3.8" || version == "3.9" || version == "3.10" { "pselect6" } else { "clock_nanosleep" };
    for b in blocks {
        let (bs, be) = (num(&b["start"]), num(&b["end"]));
        let s = slices
            .iter()
            .find(|s| num(&s["begin"]) / 1e9 < be && num(&s["end"]) / 1e9 > bs)
            .unwrap_or_else(|| panic!("{ctx}: no slice for block {b}"));
        assert_eq!(s["track"], threads[0]["uuid"], "{ctx}: {s}");
        assert_eq!(s["category"], serde_json::json!(["blocking"]), "{ctx}");
        assert_eq!(s["name"], b["function"], "{ctx}: {s}");
        let a = &s["args"];
        let (truth_ms, got_ms) = ((be - bs) * 1e3, (num(&s["end"]) - num(&s["begin"])) / 1e6);
        let allowed_ms = (2.0 * interval * 1e3).max(num(&a["duration_error_ms"]));
        assert!((got_ms - truth_ms).abs() <= allowed_ms, "{ctx}: {b} lasted {truth_ms:.1} ms, slice {got_ms:.1} ms (± {allowed_ms:.1})");
        assert!((num(&a["duration_ms"]) - got_ms).abs() < 1e-3, "{ctx}: {a}");
        assert_eq!(a["task"], "driver", "{ctx}: {a}");
        // The line seen most often: `time.sleep` (a C call) for a sleep; for the CPU loop,
        // any of its three lines (where the samples land differs by version and run). The
        // lines are found in the target's source.
        let line_of = |code: &str| -> u32 {
            let source = std::fs::read_to_string(targets_dir().join("schedule.py")).unwrap();
            source.lines().position(|l| l.trim() == code).map(|i| i as u32 + 1).unwrap_or_else(|| panic!("no `{code}` in schedule.py"))
        };
        let line: u32 = a["location"].as_str().unwrap().rsplit_once("schedule.py:").and_then(|(_, l)| l.parse().ok()).unwrap_or(0);
        let lines = if b["kind"] == "cpu" {
            line_of("while loop.time() - t0 < 0.40:")..=line_of("x += i * i")
        } else {
            line_of("time.sleep(0.25)")..=line_of("time.sleep(0.25)")
        };
        assert!(lines.contains(&line), "{ctx}: {a}");
        match b["kind"].as_str().unwrap() {
            "cpu" => assert_eq!(a["on_cpu"], true, "{ctx}: {a}"),
            _ => {
                assert_eq!(a["on_cpu"], false, "{ctx}: {a}");
                assert_eq!(a["waiting_in"], sleep_syscall, "{ctx}: {a}");
            }
        }
    }
    // The same episodes as the JSON report, to the nanosecond (all of them).
    let episodes = l["episodes"].as_array().unwrap();
    let all_slices = v["slices"].as_array().unwrap();
    assert_eq!(episodes.len(), all_slices.len(), "{ctx}");
    for (e, s) in episodes.iter().zip(all_slices) {
        assert!((num(&e["start"]) * 1e9 - num(&s["begin"])).abs() <= 1.0, "{ctx}: {e} vs {s}");
        assert!((num(&e["end"]) * 1e9 - num(&s["end"])).abs() <= 1.0, "{ctx}: {e} vs {s}");
    }

    // Counters: one value per second of the series (seconds with samples), pending tasks per
    // count; busy share as in the series.
    let series = l["series"].as_array().unwrap();
    let with_samples: Vec<&Value> = series.iter().filter(|w| num(&w["samples"]) > 0.0).collect();
    let counter = |name: &str| -> Vec<Value> {
        let c = counter_of(&v, name, &threads[0]["uuid"]).unwrap_or_else(|| panic!("{ctx}: no counter {name} under the loop's thread"));
        c["values"].as_array().unwrap().clone()
    };
    for name in ["lag p99 (ms)", "ready queue max", "busy (%)"] {
        assert_eq!(counter(name).len(), with_samples.len(), "{ctx}: {name}");
    }
    for (w, c) in with_samples.iter().zip(counter("busy (%)")) {
        assert!((num(&w["busy_pct"]) - num(&c[1])).abs() < 1e-9, "{ctx}: {w} vs {c}");
    }
    let burst = num(&t["ready_burst"]);
    assert!(counter("ready queue max").iter().any(|c| num(&c[1]) >= burst), "{ctx}: the burst");
    assert_eq!(counter("pending tasks").len(), l["task_series"].as_array().map(|a| a.len()).unwrap_or(0), "{ctx}");

    // Every sample as a stack of the loop's thread, outermost frame first; the blocked
    // functions on top of some.
    let samples = v["samples"].as_array().unwrap();
    assert_eq!(samples.len() as u64, l["samples"].as_u64().unwrap(), "{ctx}: every sample");
    assert!(samples.iter().all(|s| s["tid"] == threads[0]["tid"] && s["pid"] == pid), "{ctx}");
    for f in ["sleepy (", "cpu_burn ("] {
        let on_top = samples.iter().filter(|s| s["frames"].as_array().unwrap().last().unwrap().as_str().unwrap().starts_with(f)).count();
        assert!(on_top >= 10, "{ctx}: {on_top} samples in {f}");
    }
    let outermost = samples[0]["frames"][0].as_str().unwrap();
    assert!(outermost.starts_with("<module> ("), "{ctx}: outermost first: {outermost}");

    // The capture rendered again: the same trace, byte for byte.
    let out = Command::new(loopspy_bin()).arg("render").arg(p("r.loopspy")).arg("-o").arg(p("again.pftrace")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{ctx}\n{}", describe(&out));
    assert!(std::fs::read(p("r.pftrace")).unwrap() == std::fs::read(p("again.pftrace")).unwrap(), "{ctx}: render differs from record");
    record(test, version, "stock", "pass");
}

version_tests!(schedule);

/// A recording of several processes (`--subprocesses`), made by hand: a process track each,
/// each loop's thread under its own process, a loop whose thread id is unknown as a plain
/// track of its process (no samples: a sample needs a thread), names from the target shown
/// with their control and bidi characters made visible.
#[test]
fn subprocesses_get_a_process_track_each() {
    use loopspy::analysis::metrics::{analyze, Options};
    use loopspy::asyncio::eventloop::LoopKind;
    use loopspy::asyncio::loopstate::LoopState;
    use loopspy::capture::recording::{LoopMeta, ProcessMeta, Recording, Sample, ThreadActivity};
    use loopspy::python::frames::StackFrame;

    let Some(schema) = perfetto_schema("perfetto/subprocesses", None) else { return };
    let meta = |tid: Option<i32>| LoopMeta {
        native_id: tid,
        thread_name: Some("MainThread".into()),
        loop_class: "_UnixSelectorEventLoop".into(),
        loop_kind: LoopKind::Selector,
        selector: None,
        found: None,
    };
    let mut rec = Recording::new(100.0, vec![meta(Some(100)), meta(Some(201)), meta(None)], 1000.0);
    let process = |pid: i32, command: &[&str]| ProcessMeta {
        pid,
        parent_pid: None,
        command: command.iter().map(|s| s.to_string()).collect(),
        python: "3.12.1".into(),
        joined: 1000.0,
        left: None,
        end: None,
    };
    rec.processes = vec![process(100, &["/usr/bin/python3", "master.py"]), process(200, &["/usr/bin/python3", "worker.py"])];
    rec.loop_process = vec![0, 1, 1];
    let frame = |function: &str, line| StackFrame { function: function.into(), file: "/srv/app.py".into(), line };
    let idle = rec.intern_stack(&[frame("select", 1), frame("_run_once", 2)]);
    let busy = rec.intern_stack(&[frame("evil\u{202e}handler\n", 10), frame("_run_once", 2)]);
    for i in 0..100 {
        for loop_index in 0..3u16 {
            let blocking = loop_index == 1 && (40..60).contains(&i);
            rec.samples.push(Sample {
                t: 1000.0 + i as f64 * 0.01,
                loop_index,
                state: if blocking { LoopState::Callback } else { LoopState::Idle },
                activity: ThreadActivity::OnCpu,
                ready: 0,
                lateness: None,
                stack: if blocking { busy } else { idle },
                loop_frames: 1,
                callback: blocking.then_some(7),
                task: None,
                busy_for: None,
                gc: loopspy::python::gc::GcAt::Unknown,
            });
        }
    }
    rec.ended = 1001.0;
    let analysis = analyze(&rec, &Options::default());
    assert_eq!(analysis.loops[1].episodes.len(), 1, "the made-up block is an episode");
    let bytes =
        loopspy::output::perfetto::trace(&loopspy::output::perfetto::Source { rec: &rec, analysis: &analysis, pid: 100, command: &[] });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.pftrace");
    std::fs::write(&path, bytes).unwrap();
    let v = check_pftrace(&schema, &path);

    let pids: Vec<i64> = v["processes"].as_array().unwrap().iter().map(|p| p["pid"].as_i64().unwrap()).collect();
    assert_eq!(pids, [100, 200], "{v}");
    assert_eq!(v["processes"][1]["name"], "python3 worker.py");
    let threads: Vec<(i64, i64)> =
        v["threads"].as_array().unwrap().iter().map(|t| (t["pid"].as_i64().unwrap(), t["tid"].as_i64().unwrap())).collect();
    assert_eq!(threads, [(100, 100), (200, 201)], "{v}");
    // The loop without a thread id: a plain track under its process (uuid of process 200).
    let plain = v["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "MainThread (_UnixSelectorEventLoop)")
        .expect("a plain track for loop 2");
    assert_eq!(plain["parent"], v["processes"][1]["uuid"], "{v}");
    assert!(counter_of(&v, "busy (%)", &plain["uuid"]).is_some(), "loop 2's counters under its track");
    // The episode on the worker's loop thread, its name shown safely.
    let slices = v["slices"].as_array().unwrap();
    assert_eq!(slices.len(), 1, "{slices:?}");
    assert_eq!(slices[0]["track"], v["threads"][1]["uuid"]);
    assert_eq!(slices[0]["name"], "evil\\u{202e}handler\\n");
    // Samples of the two loops with a thread, each under its own pid.
    let samples = v["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 200);
    assert_eq!(samples.iter().filter(|s| s["pid"] == 200 && s["tid"] == 201).count(), 100);
    assert!(samples.iter().any(|s| s["frames"][1] == "evil\\u{202e}handler\\n (/srv/app.py:10)"), "innermost last");
}
