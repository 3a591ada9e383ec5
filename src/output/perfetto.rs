//! A recording as a Perfetto trace (`.pftrace`: protobuf `perfetto.protos.Trace`), which
//! ui.perfetto.dev and Perfetto's trace_processor load: the loop's time axis in a viewer
//! people already use.
//!
//! What the trace holds (one packet sequence, `trusted_packet_sequence_id` 1):
//! - a first packet that clears the sequence's incremental state
//!   (`SEQ_INCREMENTAL_STATE_CLEARED`, `first_packet_on_sequence`) and sets the sequence's
//!   clock: every timestamp is the recording's own `CLOCK_MONOTONIC` in nanoseconds
//!   (`timestamp_clock_id` = `BUILTIN_CLOCK_MONOTONIC` in `trace_packet_defaults`); the next
//!   packet's clock snapshot makes that clock the trace's (`primary_trace_clock`);
//! - a process track per process (pid, command line) and a thread track per loop thread
//!   (tid, named `thread (loop class)`);
//! - each blocking episode as a slice on its loop's thread track (`TYPE_SLICE_BEGIN` /
//!   `TYPE_SLICE_END`), named after the blamed function, category `blocking`, with debug
//!   annotations: location, duration and its error, samples, task, on CPU or the syscall
//!   waited in, the innermost frame, ongoing;
//! - counter tracks under each loop's thread track, one value per second of the per-second
//!   series (`lag p99 (ms)`, `ready queue max`, `busy (%)`) and per task count
//!   (`pending tasks`);
//! - every sample held as a `PerfSample` (pid, tid, interned callstack of Python frames,
//!   outermost first): the UI shows them as the thread's samples and draws a flame graph of
//!   any selected stretch.
//!
//! Busy stretches and loop iterations are not slices: a callback shorter than the sampling
//! interval is seen in one sample or none, so its start and end are unknown; iterations are
//! not observed at all. The busy share counter and the samples show them as they were seen.
//!
//! Names (event names, categories, annotation names, functions, frames, callstacks) are
//! interned: defined in the `interned_data` of the first packet that uses them, on a packet
//! that sets `SEQ_NEEDS_INCREMENTAL_STATE`. Strings from the target are escaped as for a
//! terminal (control and bidi characters made visible); being Rust strings, they are valid
//! UTF-8.

use std::collections::HashMap;

use super::protobuf::Message;
use crate::analysis::metrics::{Analysis, Episode};
use crate::base::escape;
use crate::capture::recording::Recording;
use crate::python::frames::StackFrame;

/// The one sequence all packets are on.
const SEQUENCE: u64 = 1;
/// `BuiltinClock.BUILTIN_CLOCK_MONOTONIC`.
const CLOCK_MONOTONIC: u64 = 3;

/// Field numbers of `perfetto.protos` messages (perfetto_trace.proto).
mod f {
    pub const TRACE_PACKET: u32 = 1;

    // TracePacket
    pub const TIMESTAMP: u32 = 8;
    pub const CLOCK_SNAPSHOT: u32 = 6;
    pub const TRUSTED_PACKET_SEQUENCE_ID: u32 = 10;
    pub const TRACK_EVENT: u32 = 11;
    pub const INTERNED_DATA: u32 = 12;
    pub const SEQUENCE_FLAGS: u32 = 13;
    pub const TRACE_PACKET_DEFAULTS: u32 = 59;
    pub const TRACK_DESCRIPTOR: u32 = 60;
    pub const PERF_SAMPLE: u32 = 66;
    pub const FIRST_PACKET_ON_SEQUENCE: u32 = 87;

    // ClockSnapshot / ClockSnapshot.Clock
    pub const SNAPSHOT_CLOCKS: u32 = 1;
    pub const SNAPSHOT_PRIMARY_TRACE_CLOCK: u32 = 2;
    pub const CLOCK_ID: u32 = 1;
    pub const CLOCK_TIMESTAMP: u32 = 2;

    // TracePacketDefaults
    pub const DEFAULTS_TIMESTAMP_CLOCK_ID: u32 = 58;

    // TrackDescriptor
    pub const TRACK_UUID: u32 = 1;
    pub const TRACK_NAME: u32 = 2;
    pub const TRACK_PROCESS: u32 = 3;
    pub const TRACK_THREAD: u32 = 4;
    pub const TRACK_PARENT_UUID: u32 = 5;
    pub const TRACK_COUNTER: u32 = 8;

    // ProcessDescriptor
    pub const PROCESS_PID: u32 = 1;
    pub const PROCESS_CMDLINE: u32 = 2;
    pub const PROCESS_NAME: u32 = 6;

    // ThreadDescriptor
    pub const THREAD_PID: u32 = 1;
    pub const THREAD_TID: u32 = 2;
    pub const THREAD_NAME: u32 = 5;

    // CounterDescriptor
    pub const COUNTER_UNIT: u32 = 3;
    pub const COUNTER_UNIT_NAME: u32 = 6;

    // TrackEvent
    pub const EVENT_CATEGORY_IIDS: u32 = 3;
    pub const EVENT_DEBUG_ANNOTATIONS: u32 = 4;
    pub const EVENT_TYPE: u32 = 9;
    pub const EVENT_NAME_IID: u32 = 10;
    pub const EVENT_TRACK_UUID: u32 = 11;
    pub const EVENT_DOUBLE_COUNTER_VALUE: u32 = 44;

    // DebugAnnotation
    pub const ANNOTATION_NAME_IID: u32 = 1;
    pub const ANNOTATION_BOOL: u32 = 2;
    pub const ANNOTATION_UINT: u32 = 3;
    pub const ANNOTATION_DOUBLE: u32 = 5;
    pub const ANNOTATION_STRING: u32 = 6;

    // InternedData
    pub const INTERNED_CATEGORIES: u32 = 1;
    pub const INTERNED_EVENT_NAMES: u32 = 2;
    pub const INTERNED_ANNOTATION_NAMES: u32 = 3;
    pub const INTERNED_FUNCTION_NAMES: u32 = 5;
    pub const INTERNED_FRAMES: u32 = 6;
    pub const INTERNED_CALLSTACKS: u32 = 7;
    pub const INTERNED_MAPPING_PATHS: u32 = 17;
    pub const INTERNED_MAPPINGS: u32 = 19;
    // EventName, EventCategory, DebugAnnotationName, InternedString: iid 1, name/str 2.
    pub const IID: u32 = 1;
    pub const NAME: u32 = 2;

    // Frame
    pub const FRAME_FUNCTION_NAME_ID: u32 = 2;
    pub const FRAME_MAPPING_ID: u32 = 3;
    pub const FRAME_REL_PC: u32 = 4;
    // Callstack
    pub const CALLSTACK_FRAME_IDS: u32 = 2;
    // Mapping
    pub const MAPPING_PATH_STRING_IDS: u32 = 7;

    // PerfSample
    pub const SAMPLE_PID: u32 = 2;
    pub const SAMPLE_TID: u32 = 3;
    pub const SAMPLE_CALLSTACK_IID: u32 = 4;
}

/// `TracePacket.SequenceFlags`.
const SEQ_INCREMENTAL_STATE_CLEARED: u64 = 1;
const SEQ_NEEDS_INCREMENTAL_STATE: u64 = 2;
/// `TrackEvent.Type`.
const TYPE_SLICE_BEGIN: u64 = 1;
const TYPE_SLICE_END: u64 = 2;
const TYPE_COUNTER: u64 = 4;
/// `CounterDescriptor.Unit.UNIT_COUNT`.
const UNIT_COUNT: u64 = 2;

/// The mapping every Python frame is put in (a sample's frames need one).
const PYTHON_MAPPING: u64 = 1;

/// What the trace is made from.
pub struct Source<'a> {
    /// The recording: its loops and processes, and the samples drawn as stacks (every one
    /// when it holds them all).
    pub rec: &'a Recording,
    pub analysis: &'a Analysis,
    /// The target (of a recording of one process) and its command line as shown.
    pub pid: i32,
    pub command: &'a [String],
}

/// Names interned so far on the sequence, by kind.
#[derive(Default)]
struct Interned {
    categories: HashMap<String, u64>,
    event_names: HashMap<String, u64>,
    annotation_names: HashMap<&'static str, u64>,
    function_names: HashMap<String, u64>,
    /// By frame id in the recording.
    frames: HashMap<u32, u64>,
    /// By stack id in the recording.
    callstacks: HashMap<u32, u64>,
    mapping: bool,
}

/// One named thing interned: `{iid: 1, name: 2}` (EventName, EventCategory,
/// DebugAnnotationName, InternedString all share that shape).
fn named(iid: u64, name: &str) -> Message {
    let mut m = Message::new();
    m.uint(f::IID, iid).string(f::NAME, name);
    m
}

/// Look up `key` among what is interned, else intern it: the new entry goes into the
/// `field` of the packet's `InternedData` being built.
fn intern<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u64>, key: K, name: &str, data: &mut Message, field: u32) -> u64 {
    if let Some(iid) = map.get(&key) {
        return *iid;
    }
    let iid = map.len() as u64 + 1;
    map.insert(key, iid);
    data.message(field, &named(iid, name));
    iid
}

impl Interned {
    fn category(&mut self, name: &str, data: &mut Message) -> u64 {
        intern(&mut self.categories, name.to_string(), name, data, f::INTERNED_CATEGORIES)
    }

    fn event_name(&mut self, name: &str, data: &mut Message) -> u64 {
        intern(&mut self.event_names, name.to_string(), name, data, f::INTERNED_EVENT_NAMES)
    }

    fn annotation_name(&mut self, name: &'static str, data: &mut Message) -> u64 {
        intern(&mut self.annotation_names, name, name, data, f::INTERNED_ANNOTATION_NAMES)
    }

    fn function_name(&mut self, name: &str, data: &mut Message) -> u64 {
        intern(&mut self.function_names, name.to_string(), name, data, f::INTERNED_FUNCTION_NAMES)
    }

    /// The callstack of a recording's stack, outermost frame first, interned with its frames
    /// (and the Python mapping they all sit in).
    fn callstack(&mut self, rec: &Recording, stack: u32, data: &mut Message) -> u64 {
        if let Some(iid) = self.callstacks.get(&stack) {
            return *iid;
        }
        if !self.mapping {
            self.mapping = true;
            data.message(f::INTERNED_MAPPING_PATHS, &named(1, "python"));
            data.with(f::INTERNED_MAPPINGS, |m| {
                m.uint(f::IID, PYTHON_MAPPING).uint(f::MAPPING_PATH_STRING_IDS, 1);
            });
        }
        let mut frame_iids = Vec::new();
        for &frame in rec.stacks.get(stack).iter().rev() {
            let iid = match self.frames.get(&frame) {
                Some(iid) => *iid,
                None => {
                    let name = frame_label(rec.frames.get(frame));
                    let name_iid = self.function_name(&name, data);
                    let iid = self.frames.len() as u64 + 1;
                    self.frames.insert(frame, iid);
                    data.with(f::INTERNED_FRAMES, |m| {
                        // rel_pc: the frame's own number, so that no two frames are merged.
                        m.uint(f::IID, iid)
                            .uint(f::FRAME_FUNCTION_NAME_ID, name_iid)
                            .uint(f::FRAME_MAPPING_ID, PYTHON_MAPPING)
                            .uint(f::FRAME_REL_PC, iid);
                    });
                    iid
                }
            };
            frame_iids.push(iid);
        }
        let iid = self.callstacks.len() as u64 + 1;
        self.callstacks.insert(stack, iid);
        data.with(f::INTERNED_CALLSTACKS, |m| {
            m.uint(f::IID, iid);
            for id in &frame_iids {
                m.uint(f::CALLSTACK_FRAME_IDS, *id);
            }
        });
        iid
    }
}

/// `function (file:line)`, shown safely.
fn frame_label(fr: &StackFrame) -> String {
    let (function, file) = (escape::terminal(&fr.function), escape::terminal(&fr.file));
    if fr.line > 0 {
        format!("{function} ({file}:{})", fr.line)
    } else if file.is_empty() {
        function.into_owned()
    } else {
        format!("{function} ({file})")
    }
}

/// Seconds of the target's `CLOCK_MONOTONIC` as nanoseconds (0 for a time before boot, which
/// a sane recording never has).
fn ns(t: f64) -> u64 {
    if t.is_finite() && t > 0.0 {
        (t * 1e9).round() as u64
    } else {
        0
    }
}

/// What happens at one moment, in the order events at the same moment are written: a slice
/// ends before the next one begins.
enum Event<'a> {
    End { track: u64 },
    Counter { track: u64, value: f64 },
    Sample { pid: i32, tid: i32, stack: u32 },
    Begin { track: u64, episode: &'a Episode },
}

impl Event<'_> {
    fn rank(&self) -> u8 {
        match self {
            Event::End { .. } => 0,
            Event::Counter { .. } => 1,
            Event::Sample { .. } => 2,
            Event::Begin { .. } => 3,
        }
    }
}

/// The tracks of one loop.
struct LoopTracks {
    thread: u64,
    lag: u64,
    ready: u64,
    busy: u64,
    pending: u64,
    pid: i32,
    tid: Option<i32>,
}

/// The trace's bytes.
pub fn trace(src: &Source) -> Vec<u8> {
    let rec = src.rec;
    let mut out = Message::new();
    let mut packet = |p: &Message| {
        out.message(f::TRACE_PACKET, p);
    };

    // The sequence starts clean, on the recording's clock.
    let mut first = Message::new();
    first
        .uint(f::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE)
        .uint(f::SEQUENCE_FLAGS, SEQ_INCREMENTAL_STATE_CLEARED)
        .bool(f::FIRST_PACKET_ON_SEQUENCE, true)
        .with(f::TRACE_PACKET_DEFAULTS, |d| {
            d.uint(f::DEFAULTS_TIMESTAMP_CLOCK_ID, CLOCK_MONOTONIC);
        });
    packet(&first);
    // The trace's clock is that clock (a packet of its own: a loader reads nothing else in a
    // packet that holds a clock snapshot).
    let mut clock = Message::new();
    clock.uint(f::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE).with(f::CLOCK_SNAPSHOT, |s| {
        s.with(f::SNAPSHOT_CLOCKS, |c| {
            c.uint(f::CLOCK_ID, CLOCK_MONOTONIC).uint(f::CLOCK_TIMESTAMP, ns(rec.started));
        })
        .uint(f::SNAPSHOT_PRIMARY_TRACE_CLOCK, CLOCK_MONOTONIC);
    });
    packet(&clock);

    // Processes: one of a plain recording, each of a recording with --subprocesses.
    let processes: Vec<(i32, Vec<String>)> = if rec.is_fleet() {
        rec.processes.iter().map(|p| (p.pid, p.command.clone())).collect()
    } else {
        vec![(src.pid, src.command.to_vec())]
    };
    let mut next_uuid = 0u64;
    let mut uuid = || {
        next_uuid += 1;
        next_uuid
    };
    let mut process_uuid = Vec::new();
    for (pid, command) in &processes {
        let id = uuid();
        process_uuid.push(id);
        let shown: Vec<String> = command.iter().map(|a| escape::terminal(a).into_owned()).collect();
        let name = shown.iter().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).take(2).collect::<Vec<_>>().join(" ");
        let mut p = Message::new();
        p.uint(f::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE).with(f::TRACK_DESCRIPTOR, |t| {
            t.uint(f::TRACK_UUID, id).with(f::TRACK_PROCESS, |d| {
                d.int(f::PROCESS_PID, i64::from(*pid));
                for a in &shown {
                    d.string(f::PROCESS_CMDLINE, a);
                }
                if !name.is_empty() {
                    d.string(f::PROCESS_NAME, &name);
                }
            });
        });
        packet(&p);
    }

    // A thread track per loop, its counters under it.
    let mut tracks = Vec::new();
    for (i, meta) in rec.loops.iter().enumerate() {
        let process = if rec.is_fleet() { rec.process_of_loop(i as u16).map(usize::from) } else { Some(0) };
        let Some(process) = process else {
            tracks.push(None);
            continue;
        };
        let (pid, parent) = (processes[process].0, process_uuid[process]);
        let lt = LoopTracks { thread: uuid(), lag: uuid(), ready: uuid(), busy: uuid(), pending: uuid(), pid, tid: meta.native_id };
        let thread = meta.thread_name.as_deref().map(escape::terminal).map(|n| n.into_owned()).unwrap_or_else(|| match meta.native_id {
            Some(tid) => format!("thread {tid}"),
            None => format!("loop {i}"),
        });
        let name = format!("{thread} ({})", escape::terminal(&meta.loop_class));
        let mut p = Message::new();
        p.uint(f::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE).with(f::TRACK_DESCRIPTOR, |t| {
            t.uint(f::TRACK_UUID, lt.thread);
            match meta.native_id {
                Some(tid) => {
                    t.with(f::TRACK_THREAD, |d| {
                        d.int(f::THREAD_PID, i64::from(pid)).int(f::THREAD_TID, i64::from(tid)).string(f::THREAD_NAME, &name);
                    });
                }
                // A loop whose thread id is unknown: a plain track of its process.
                None => {
                    t.uint(f::TRACK_PARENT_UUID, parent).string(f::TRACK_NAME, &name);
                }
            }
        });
        packet(&p);
        for (id, counter, unit) in [
            (lt.lag, "lag p99 (ms)", Some("ms")),
            (lt.ready, "ready queue max", None),
            (lt.busy, "busy (%)", Some("%")),
            (lt.pending, "pending tasks", None),
        ] {
            let mut p = Message::new();
            p.uint(f::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE).with(f::TRACK_DESCRIPTOR, |t| {
                t.uint(f::TRACK_UUID, id).uint(f::TRACK_PARENT_UUID, lt.thread).string(f::TRACK_NAME, counter).with(
                    f::TRACK_COUNTER,
                    |c| {
                        match unit {
                            Some(u) => c.string(f::COUNTER_UNIT_NAME, u),
                            None => c.uint(f::COUNTER_UNIT, UNIT_COUNT),
                        };
                    },
                );
            });
            packet(&p);
        }
        tracks.push(Some(lt));
    }

    // Everything that happens, in time order.
    let mut events: Vec<(u64, Event)> = Vec::new();
    for l in &src.analysis.loops {
        let Some(Some(lt)) = tracks.get(l.loop_index as usize) else { continue };
        for e in &l.episodes {
            events.push((ns(e.start), Event::Begin { track: lt.thread, episode: e }));
            events.push((ns(e.end).max(ns(e.start) + 1), Event::End { track: lt.thread }));
        }
        // The per-second series: one value a second, at the second's start (origin: the
        // recording's start, as the analysis counts them).
        for w in l.windows.iter().filter(|w| w.samples > 0) {
            let t = ns(rec.started + w.start_s);
            events.push((t, Event::Counter { track: lt.lag, value: w.lag_p99_ms }));
            events.push((t, Event::Counter { track: lt.ready, value: f64::from(w.ready_max) }));
            events.push((t, Event::Counter { track: lt.busy, value: w.busy_pct }));
        }
        for p in &l.task_series {
            events.push((ns(rec.started + p.t_s), Event::Counter { track: lt.pending, value: p.pending as f64 }));
        }
    }
    for s in &rec.samples {
        let Some(Some(lt)) = tracks.get(s.loop_index as usize) else { continue };
        // A sample without a frame has no stack to show (and an empty callstack is no callsite).
        if let Some(tid) = lt.tid.filter(|_| !rec.stacks.get(s.stack).is_empty()) {
            events.push((ns(s.t), Event::Sample { pid: lt.pid, tid, stack: s.stack }));
        }
    }
    events.sort_by_key(|(t, e)| (*t, e.rank()));

    let mut interned = Interned::default();
    for (t, e) in &events {
        let mut data = Message::new();
        let mut p = Message::new();
        p.uint(f::TIMESTAMP, *t);
        match e {
            Event::Begin { track, episode } => {
                let event = slice_begin(*track, episode, &mut interned, &mut data);
                p.message(f::TRACK_EVENT, &event);
            }
            Event::End { track } => {
                p.with(f::TRACK_EVENT, |ev| {
                    ev.uint(f::EVENT_TYPE, TYPE_SLICE_END).uint(f::EVENT_TRACK_UUID, *track);
                });
            }
            Event::Counter { track, value } => {
                p.with(f::TRACK_EVENT, |ev| {
                    ev.uint(f::EVENT_TYPE, TYPE_COUNTER).uint(f::EVENT_TRACK_UUID, *track).double(f::EVENT_DOUBLE_COUNTER_VALUE, *value);
                });
            }
            Event::Sample { pid, tid, stack } => {
                let iid = interned.callstack(rec, *stack, &mut data);
                p.with(f::PERF_SAMPLE, |s| {
                    s.uint(f::SAMPLE_PID, *pid as u32 as u64).uint(f::SAMPLE_TID, *tid as u32 as u64).uint(f::SAMPLE_CALLSTACK_IID, iid);
                });
            }
        }
        if !data.is_empty() {
            p.message(f::INTERNED_DATA, &data);
        }
        p.uint(f::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE).uint(f::SEQUENCE_FLAGS, SEQ_NEEDS_INCREMENTAL_STATE);
        packet(&p);
    }
    out.into_bytes()
}

/// The `TYPE_SLICE_BEGIN` event of an episode, its names interned into `data`.
fn slice_begin(track: u64, e: &Episode, interned: &mut Interned, data: &mut Message) -> Message {
    let category = interned.category("blocking", data);
    let name = interned.event_name(&escape::terminal(&e.function), data);
    let mut ev = Message::new();
    ev.uint(f::EVENT_TYPE, TYPE_SLICE_BEGIN)
        .uint(f::EVENT_TRACK_UUID, track)
        .uint(f::EVENT_CATEGORY_IIDS, category)
        .uint(f::EVENT_NAME_IID, name);
    let mut annotate = |key: &'static str, value: &dyn Fn(&mut Message)| {
        let iid = interned.annotation_name(key, data);
        ev.with(f::EVENT_DEBUG_ANNOTATIONS, |a| {
            a.uint(f::ANNOTATION_NAME_IID, iid);
            value(a);
        });
    };
    let location = format!("{}:{}", escape::terminal(&e.file), e.line);
    annotate("location", &|a| {
        a.string(f::ANNOTATION_STRING, &location);
    });
    annotate("duration_ms", &|a| {
        a.double(f::ANNOTATION_DOUBLE, e.duration_ms);
    });
    annotate("duration_error_ms", &|a| {
        a.double(f::ANNOTATION_DOUBLE, e.duration_error_ms);
    });
    annotate("samples", &|a| {
        a.uint(f::ANNOTATION_UINT, u64::from(e.samples));
    });
    if let Some(task) = &e.task {
        annotate("task", &|a| {
            a.string(f::ANNOTATION_STRING, &escape::terminal(task));
        });
    }
    annotate("on_cpu", &|a| {
        a.bool(f::ANNOTATION_BOOL, e.on_cpu);
    });
    if let Some(w) = &e.waiting_in {
        annotate("waiting_in", &|a| {
            a.string(f::ANNOTATION_STRING, w);
        });
    }
    let innermost = frame_label(&StackFrame {
        function: e.innermost.function.as_str().into(),
        file: e.innermost.file.as_str().into(),
        line: e.innermost.line,
    });
    annotate("innermost", &|a| {
        a.string(f::ANNOTATION_STRING, &innermost);
    });
    annotate("ongoing", &|a| {
        a.bool(f::ANNOTATION_BOOL, e.ongoing);
    });
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::metrics::{analyze, tests::script, Options};

    /// A field of a message: number, wire type, varint value, bytes.
    type Field = (u32, u8, u64, Vec<u8>);

    /// The fields of a message.
    fn fields(mut b: &[u8]) -> Vec<Field> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            for i in 0.. {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << (7 * i);
                if byte & 0x80 == 0 {
                    break;
                }
            }
            v
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let tag = varint(&mut b);
            let (field, wire) = ((tag >> 3) as u32, (tag & 7) as u8);
            match wire {
                0 => out.push((field, wire, varint(&mut b), Vec::new())),
                1 => {
                    out.push((field, wire, 0, b[..8].to_vec()));
                    b = &b[8..];
                }
                2 => {
                    let n = varint(&mut b) as usize;
                    out.push((field, wire, 0, b[..n].to_vec()));
                    b = &b[n..];
                }
                _ => panic!("wire type {wire}"),
            }
        }
        out
    }

    fn packets(rec: &Recording) -> Vec<Vec<Field>> {
        let analysis = analyze(rec, &Options::default());
        let bytes = trace(&Source { rec, analysis: &analysis, pid: 42, command: &["python3".into(), "app.py".into()] });
        fields(&bytes)
            .into_iter()
            .map(|(n, w, _, b)| {
                assert_eq!((n, w), (f::TRACE_PACKET, 2));
                fields(&b)
            })
            .collect()
    }

    fn get(p: &[Field], field: u32) -> Option<u64> {
        p.iter().find(|x| x.0 == field).map(|x| x.2)
    }

    /// The sequence starts clean on the monotonic clock; every packet is on it; timestamps
    /// never go back; a slice ends before the next begins.
    #[test]
    fn one_clean_sequence_in_time_order() {
        let rec = script(100.0, "..aaaaaaaaaaaa..ssssssssssssss..");
        let ps = packets(&rec);
        assert_eq!(get(&ps[0], f::SEQUENCE_FLAGS), Some(SEQ_INCREMENTAL_STATE_CLEARED));
        assert_eq!(get(&ps[0], f::FIRST_PACKET_ON_SEQUENCE), Some(1));
        assert!(ps.iter().all(|p| get(p, f::TRUSTED_PACKET_SEQUENCE_ID) == Some(SEQUENCE)));
        let times: Vec<u64> = ps.iter().filter_map(|p| get(p, f::TIMESTAMP)).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert_eq!(times[0], ns(rec.started));
        // Slices: two episodes, begin/end alternating.
        let kinds: Vec<u64> = ps
            .iter()
            .filter_map(|p| p.iter().find(|x| x.0 == f::TRACK_EVENT))
            .filter_map(|e| get(&fields(&e.3), f::EVENT_TYPE))
            .filter(|t| *t != TYPE_COUNTER)
            .collect();
        assert_eq!(kinds, [TYPE_SLICE_BEGIN, TYPE_SLICE_END, TYPE_SLICE_BEGIN, TYPE_SLICE_END]);
        // A PerfSample per sample.
        assert_eq!(ps.iter().filter(|p| p.iter().any(|x| x.0 == f::PERF_SAMPLE)).count(), rec.samples.len());
    }

    /// Nothing recorded, or stacks with no frame: still a trace, with its tracks (and no sample
    /// without a frame).
    #[test]
    fn empty_recordings_and_empty_stacks() {
        let rec = script(100.0, "");
        let ps = packets(&rec);
        assert_eq!(ps.iter().filter(|p| p.iter().any(|x| x.0 == f::TRACK_DESCRIPTOR)).count(), 1 + 1 + 4);
        let mut rec = script(100.0, "..");
        let empty = rec.stacks.intern(Vec::new());
        for s in &mut rec.samples {
            s.stack = empty;
        }
        assert_eq!(packets(&rec).iter().filter(|p| p.iter().any(|x| x.0 == f::PERF_SAMPLE)).count(), 0, "no empty callstack");
    }
}
