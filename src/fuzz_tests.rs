//! Property tests ("fuzzing") of everything that reads target memory or turns samples into
//! figures: random and adversarial memory (garbage, pointers that point back into the same
//! garbage, cycles, huge sizes, wrong type pointers) must give an error or a value, never a
//! panic, a hang or a huge allocation; random sample sequences must give consistent figures.
//!
//! CI runs a bounded campaign (`LOOPSPY_FUZZ_CASES`, default 500 per property); a longer one
//! by hand: `LOOPSPY_FUZZ_CASES=200000 cargo test --release --lib fuzz_tests` (see
//! docs/reliability.md for the campaigns run and their sizes).

use proptest::prelude::*;

use crate::analysis::metrics::{self, LoopSummary, Options};
use crate::analysis::stream::{Stream, StreamOptions, ThreadsFold};
use crate::asyncio::eventloop::{LoopKind, LoopReaders};
use crate::asyncio::loopstate::LoopState;
use crate::asyncio::{callback, tasks};
use crate::capture::recording::{LoopMeta, Recording, Sample, ThreadActivity};
use crate::process::memory::FakeMemory;
use crate::python::frames::{self, StackFrame, StackReader};
use crate::python::interp;
use crate::python::layout::{for_version, SUPPORTED};
use crate::python::reader::{plausible_pointer, ObjectReader};

fn cases() -> u32 {
    std::env::var("LOOPSPY_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500)
}

/// Memory made of one random blob, mapped at a base address and again at every address the
/// blob itself points to (so pointer chasing goes somewhere, and often back into itself).
fn adversarial_memory(blob: &[u8], extra: &[u64]) -> (FakeMemory, u64) {
    let mut mem = FakeMemory::new();
    let base = 0x7f00_0000_0000u64;
    mem.map(base, blob.to_vec());
    let mut seen = std::collections::HashSet::new();
    for p in blob.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).chain(extra.iter().copied()).take(64) {
        if plausible_pointer(p) && seen.insert(p) {
            mem.map(p, blob.to_vec());
        }
    }
    (mem, base)
}

/// A blob whose words are mostly pointers back into itself: chains and cycles everywhere.
fn self_referential(seed: &[u64], len_words: usize, base: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len_words * 8);
    for i in 0..len_words {
        let s = seed[i % seed.len().max(1)].wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i as u64);
        let word = match s % 5 {
            0 | 1 => base + (s >> 8) % (len_words as u64) * 8, // a pointer into the blob
            2 => s >> 3,                                       // a small number
            3 => u64::MAX - (s & 0xff),                        // a huge one
            _ => s,
        };
        out.extend_from_slice(&word.to_le_bytes());
    }
    out
}

fn exercise_everything(mem: &FakeMemory, row: usize, obj: u64) {
    let layout = for_version(SUPPORTED[row]).unwrap();
    let r = ObjectReader::new(mem, layout);
    let _ = frames::walk(&r, obj);
    let _ = StackReader::new().stack(&r, obj);
    let _ = frames::stack_top(&r, obj);
    let _ = frames::frame_at(&r, obj);
    let _ = tasks::coroutine_chain(&r, &mut StackReader::new(), obj);
    let _ = tasks::task_frame(&r, obj);
    let refs = frames::walk(&r, obj).unwrap_or_default();
    let _ = tasks::running_chain(&r, &mut StackReader::new(), obj, &refs);
    for running in [false, true] {
        let _ = tasks::describe(&r, &mut StackReader::new(), obj, tasks::TaskState::Pending, running, &refs);
    }
    let _ = tasks::wait_site(&r, &mut StackReader::new(), obj);
    let _ = crate::capture::task_groups::group(&r, &mut StackReader::new(), &[obj, obj + 8, obj + 16], 3, 0.0, 0, 0.0);
    let _ = r.set_keys(obj, 1000);
    let _ = tasks::enumerate(&r, obj, &[]);
    let tasks = [1, 2, 3].map(|t| crate::process::procfs::TaskId { tid: t + 100, ns_tid: t });
    let _ = interp::threads(&r, obj, &tasks);
    let _ = interp::running_loop(&r, obj);
    // An ELF object and a `_PyRuntime` that are anything at all (no such PID: table rows).
    let _ = crate::process::elf::exported_in_memory(mem, obj, "_PyRuntime");
    let packed = (3u32 << 24) | ((layout.version.minor as u32) << 16);
    let _ = crate::python::locate::interpreter_at(i32::MAX, mem, obj, Some(packed), None);
    let _ = interp::thread_names(&r, obj);
    let _ = callback::describe(&r, obj);
    let _ = callback::task_name(&r, obj);
    let _ = crate::asyncio::eventloop::kind_of(&r, obj);
    // A garbage executor (or loop holding one), and worker threads whose states are garbage.
    let mut executors = crate::asyncio::executor::ExecutorReader::new();
    let _ = executors.default_executor(&r, LoopKind::Selector, obj);
    let _ = executors.default_executor(&r, LoopKind::Uvloop, obj);
    let thread = interp::PyThread { tstate: obj, ident: obj, native_id: Some(1), host_tid: Some(1), running_loop: None };
    let _ = executors.read(&r, obj, &[thread], &mut StackReader::new());
    let _ = crate::asyncio::executor::queue_depth(&r, obj);
    let mut readers = LoopReaders::new();
    let _ = readers.figures(&r, LoopKind::Selector, obj);
    let _ = readers.figures(&r, LoopKind::Uvloop, obj);
    exercise_reader(&r, obj);
}

/// Every public reader method at `obj`.
fn exercise_reader(r: &ObjectReader<&FakeMemory>, obj: u64) {
    let _ = r.type_of(obj);
    let _ = r.type_info(obj);
    let _ = r.type_info_of(obj);
    let _ = r.type_name(obj);
    let _ = r.c_string(obj, 64);
    let _ = r.str(obj);
    let _ = r.str_equals(obj, "x");
    let _ = r.name(obj);
    let _ = r.int(obj);
    let _ = r.float(obj);
    let _ = r.var_len(obj);
    let _ = r.list_len(obj);
    let _ = r.list_items(obj, 16);
    let _ = r.tuple_items(obj, 16);
    let _ = r.pointer_array(obj, 4);
    let _ = r.deque_len(obj);
    let _ = r.set_keys(obj, 16);
    let _ = r.weakref_target(obj);
    let _ = r.is_subclass_by_name(obj, "Task");
    let _ = r.mro(obj);
    let _ = r.slot_offset(obj, "x");
    let _ = r.is_none(obj);
    let _ = r.dict_len(obj);
    let _ = r.dict_entries(obj, 16);
    let _ = r.dict_get_str(obj, "x");
    let _ = r.dict_get_identity(obj, obj);
    let _ = r.getattr(obj, "_ready");
    let _ = r.attr(obj, "_ready");
    let _ = r.ptr(obj);
    let _ = r.obj_ptr(obj);
    let _ = r.data_ptr(obj);
    let _ = r.bytes(obj, 64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), .. ProptestConfig::default() })]

    /// Per-loop spans counted as looks arrive (a live view asks at every redraw) equal a
    /// count from scratch, whatever the looks, the forgetting and the new loops in between.
    #[test]
    fn loop_spans_counted_as_they_come_equal_a_fresh_count(
        ops in proptest::collection::vec((0u8..6, 0u16..3, 0u32..40, any::<bool>()), 0..300),
    ) {
        let meta = |i: i32| LoopMeta::test(i);
        let mut rec = Recording::new(100.0, vec![meta(0)], 10.0);
        let mut t = 10.0;
        for (op, lp, n, look) in ops {
            match op {
                0 | 1 => {
                    for _ in 0..n {
                        t += 0.01;
                        let mut s = Sample {
                            t, loop_index: lp % rec.loops.len() as u16, state: LoopState::Idle, activity: ThreadActivity::OnCpu, ready: 0,
                            lateness: None, stack: 0, loop_frames: 0, callback: None, task: None, busy_for: None,
                            gc: crate::python::gc::GcAt::Unknown,
                        };
                        s.t = t;
                        rec.samples.push(s);
                    }
                }
                2 => {
                    t += 0.005;
                    rec.failures.push(crate::capture::recording::FailedSample { t, loop_index: lp % rec.loops.len() as u16, reason: crate::capture::probe::FailReason::TornStack });
                }
                3 => rec.forget_before(t - (n % 8) as f64 * 0.01, n % 2 == 0),
                4 if rec.loops.len() < 3 => rec.loops.push(meta(rec.loops.len() as i32)),
                5 if n == 0 => rec.clear(t),
                _ => {}
            }
            // Not after every change: a view looks now and then, several batches apart.
            if look {
                prop_assert_eq!(rec.loop_spans(), rec.clone().loop_spans());
            }
        }
        prop_assert_eq!(rec.loop_spans(), rec.clone().loop_spans());
    }

    /// Random bytes, read as threads, frames, coroutines, loops and tasks.
    #[test]
    fn random_memory_never_panics_in_the_walkers(
        row in 0..SUPPORTED.len(),
        blob in proptest::collection::vec(any::<u8>(), 0..4096),
        offset in 0u64..4096,
        extra in proptest::collection::vec(any::<u64>(), 0..8),
    ) {
        let (mem, base) = adversarial_memory(&blob, &extra);
        exercise_everything(&mem, row, base + (offset & !7));
    }

    /// Addresses at the top of the address space, and memory full of them: address
    /// arithmetic on a garbage pointer must not overflow (a panic in a debug build, a read
    /// of a wrapped address in a release one).
    #[test]
    fn addresses_near_the_top_never_overflow(
        row in 0..SUPPORTED.len(),
        below in prop_oneof![0u64..1024, 0u64..1 << 21],
        words in proptest::collection::vec(prop_oneof![0u64..1 << 21, Just(0x7f00_0000_0000u64)], 1..64),
        as_address: bool,
    ) {
        let base = 0x7f00_0000_0000u64;
        // Words near u64::MAX (u64::MAX minus a small offset) or pointers back to the base.
        let blob: Vec<u8> = words.iter().flat_map(|w| (if *w == base { base } else { u64::MAX - w }).to_le_bytes()).collect();
        let mut mem = FakeMemory::new();
        mem.map(base, blob);
        // The walkers start from addresses that were validated (read with `ptr`, or the
        // interpreter's, checked at attach); the reader's methods take any address.
        exercise_everything(&mem, row, base);
        if as_address {
            let layout = for_version(SUPPORTED[row]).unwrap();
            exercise_reader(&ObjectReader::new(&mem, layout), u64::MAX - below);
        }
    }

    /// Memory where most words point back into the same block: long chains and cycles.
    #[test]
    fn self_referential_memory_never_hangs(
        row in 0..SUPPORTED.len(),
        seed in proptest::collection::vec(any::<u64>(), 1..32),
        words in 16usize..2048,
        start in 0usize..2048,
    ) {
        let base = 0x5500_0000_0000u64;
        let blob = self_referential(&seed, words, base);
        let mut mem = FakeMemory::new();
        mem.map(base, blob);
        let started = std::time::Instant::now();
        exercise_everything(&mem, row, base + 8 * (start % words) as u64);
        prop_assert!(started.elapsed().as_secs() < 5, "bounded walks must finish quickly");
    }

    /// The streaming computation equals the sample-by-sample reference on random recordings
    /// (two loops, gaps, unknown and stopped samples, several frames and tasks): every figure
    /// exactly, but the whole-recording lag percentiles, read from a histogram, which may be
    /// above the exact value by at most the bucket ratio.
    #[test]
    fn the_stream_equals_the_reference(
        kinds in proptest::collection::vec((0u8..5, any::<u16>(), 0u32..50, -2000i32..3000), 0..700),
        rate in prop_oneof![Just(10.0), Just(100.0), Just(1000.0)],
        threshold_ms in 1.0f64..300.0,
        since_frac in prop_oneof![Just(None), (0.0f64..1.0).prop_map(Some)],
        window in prop_oneof![Just(1.0), Just(0.5), Just(0.0)],
    ) {
        let metas: Vec<LoopMeta> = (0..2)
            .map(LoopMeta::test)
            .collect();
        let mut rec = Recording::new(rate, metas, 10.0);
        let frames = |i: u16| -> Vec<StackFrame> {
            (0..(1 + i % 4))
                .map(|d| StackFrame {
                    function: ["handler", "<genexpr>", "json.loads", "_run_once"][((i + d) % 4) as usize].into(),
                    file: ["/app/x.py", "/usr/lib/python3.12/json/__init__.py", "/srv/venv/lib/python3.12/site-packages/m.py"][((i / 4 + d) % 3) as usize].into(),
                    line: (i % 5 + d) as i32,
                })
                .collect()
        };
        let stacks: Vec<u32> = (0..16).map(|i| rec.intern_stack(&frames(i))).collect();
        let tasks: Vec<u32> = (0..3).map(|i| rec.tasks.intern(format!("Task-{i}"))).collect();
        let mut t = [10.0f64; 2];
        for (state, bits, ready, late) in &kinds {
            let li = (bits & 1) as usize;
            let gap = if bits % 97 == 0 { 0.3 } else { (1.0 + ((bits >> 1) % 256) as f64 / 512.0 - 0.25) / rate };
            t[li] += gap;
            let state = [LoopState::Idle, LoopState::Callback, LoopState::Loop, LoopState::Unknown, LoopState::Stopped][*state as usize];
            let busy = metrics::is_busy(state);
            let s = Sample {
                t: t[li],
                loop_index: li as u16,
                state,
                activity: match bits % 3 { 0 => ThreadActivity::OnCpu, 1 => ThreadActivity::Waiting(230 + (bits % 2) as i64), _ => ThreadActivity::Blocked },
                ready: *ready,
                lateness: match bits % 7 {
                    0 => None,
                    1 if bits % 3 == 0 => Some(Sample::LAG_UNKNOWN),
                    _ => Some(*late as f32 / 1000.0),
                },
                stack: stacks[((bits >> 2) % 16) as usize],
                loop_frames: bits % 2,
                callback: busy.then_some(((bits >> 3) % 2) as u64),
                task: (busy && bits % 5 != 0).then_some(tasks[((bits >> 4) % 3) as usize]),
                busy_for: (busy && bits % 11 == 0).then_some(0.25),
                gc: crate::python::gc::GcAt::Unknown,
            };
            rec.samples.push(s);
        }
        // Samples in time order overall, as the sampler records them.
        rec.samples.sort_by(|a, b| a.t.total_cmp(&b.t));
        rec.ended = t[0].max(t[1]) + 1.0 / rate;
        let since = since_frac.map(|f| 10.0 + f * (rec.ended - 10.0));
        for (k, (_, bits, _, _)) in kinds.iter().enumerate().filter(|(k, _)| k % 5 == 0) {
            let thread = rec.threads.intern(format!("worker-{}", bits % 2));
            rec.other_threads.push(crate::capture::recording::ThreadSample {
                t: 10.0 + k as f64 / rate,
                thread,
                stack: stacks[((bits >> 3) % 16) as usize],
            });
        }
        let opts = Options { threshold: threshold_ms / 1e3, window, since };
        // Folded as the samples come, the flame graph's weights are those of the whole
        // recording, category by category.
        if since.is_none() {
            let whole = metrics::analyze(&rec, &opts);
            let mut stream = Stream::new(StreamOptions { fold: true, ..StreamOptions::for_recording(&rec, opts.threshold, window) });
            let mut threads = ThreadsFold::new(rec.interval());
            for s in &rec.samples {
                stream.push(&rec, s);
            }
            for s in &rec.other_threads {
                threads.push(s);
            }
            // A live view keeps the last few windows: they are the whole run's last few, and
            // every other figure is the same.
            if window > 0.0 {
                let capped = Stream::over(&rec, StreamOptions { max_windows: Some(3), ..StreamOptions::for_recording(&rec, opts.threshold, window) });
                let full = Stream::over(&rec, StreamOptions::for_recording(&rec, opts.threshold, window));
                for (c, f) in capped.summaries(&rec, opts.threshold).iter().zip(full.summaries(&rec, opts.threshold)) {
                    let tail = &f.windows[f.windows.len().saturating_sub(3)..];
                    prop_assert_eq!(&c.windows[..], tail);
                    prop_assert_eq!(LoopSummary { windows: Vec::new(), ..c.clone() }, LoopSummary { windows: Vec::new(), ..f.clone() });
                }
            }
            // A recording that lists at most 2 episodes per loop lists the longest 2; the
            // others still count in the windows and the blocking frames, and every one is
            // followed as it ends.
            {
                let listed = Stream::over(&rec, StreamOptions { max_listed: Some(2), ..StreamOptions::for_recording(&rec, opts.threshold, window) });
                let full = Stream::over(&rec, StreamOptions { max_listed: None, ..StreamOptions::for_recording(&rec, opts.threshold, window) });
                let (ls, fs) = (listed.summaries(&rec, opts.threshold), full.summaries(&rec, opts.threshold));
                for (i, (l, f)) in ls.iter().zip(&fs).enumerate() {
                    // The episodes that ended (the summary adds the run in progress to both).
                    let closed = |st: &Stream| -> Vec<f64> {
                        let mut d: Vec<f64> = st.loop_stream(i).map_or(Vec::new(), |s| s.episodes().iter().map(|e| e.duration_ms).collect());
                        d.sort_by(|a, b| b.total_cmp(a));
                        d
                    };
                    let (got, want) = (closed(&listed), closed(&full));
                    prop_assert_eq!(&got[..], &want[..want.len().min(2)]);
                    prop_assert_eq!(l.episodes_omitted as usize, want.len().saturating_sub(2));
                    prop_assert_eq!(l.episodes.len() + l.episodes_omitted as usize, f.episodes.len());
                    prop_assert_eq!(l.windows.iter().map(|w| w.episodes).collect::<Vec<_>>(), f.windows.iter().map(|w| w.episodes).collect::<Vec<_>>());
                    let ended = full.loop_stream(i).map_or(0, |s| s.ended_total());
                    prop_assert_eq!(listed.loop_stream(i).map_or(0, |s| s.ended_total()), ended);
                }
                let (lf, ff) = (metrics::blocking_frames_of(&ls), metrics::blocking_frames_of(&fs));
                prop_assert_eq!(lf.len(), ff.len());
                for (a, b) in lf.iter().zip(&ff) {
                    prop_assert!(a.function == b.function && a.file == b.file && a.episodes == b.episodes, "{a:?} {b:?}");
                    prop_assert!((a.blocked_ms - b.blocked_ms).abs() < 1e-6 && a.longest_ms == b.longest_ms, "{a:?} {b:?}");
                }
            }
            // A live view that keeps the last 2 episodes per loop (`max_episodes`), summing the
            // ones it drops at the thresholds it can show: at each of those, the same counts
            // and blocking frames as keeping every episode; the kept ones are the last.
            {
                let higher = opts.threshold * 2.0;
                let keep = StreamOptions { max_episodes: Some(2), ..StreamOptions::for_recording(&rec, opts.threshold, window) };
                let kept = Stream::over_keeping_dropped(&rec, keep, &[higher, opts.threshold]);
                let full = Stream::over(&rec, StreamOptions::for_recording(&rec, opts.threshold, window));
                for at in [opts.threshold, higher] {
                    let (ks, fs) = (kept.summaries(&rec, at), full.summaries(&rec, at));
                    for (i, (k, f)) in ks.iter().zip(&fs).enumerate() {
                        prop_assert_eq!(k.episodes.len() as u64 + k.episodes_omitted, f.episodes.len() as u64);
                        let last = |st: &Stream| -> Vec<f64> { st.loop_stream(i).map_or(Vec::new(), |s| s.episodes().iter().map(|e| e.start).collect()) };
                        let (got, want) = (last(&kept), last(&full));
                        prop_assert_eq!(&got[..], &want[want.len().saturating_sub(2)..]);
                    }
                    let (kf, ff) = (metrics::blocking_frames_of(&ks), metrics::blocking_frames_of(&fs));
                    prop_assert_eq!(kf.len(), ff.len());
                    for (a, b) in kf.iter().zip(&ff) {
                        prop_assert!(a.function == b.function && a.file == b.file && a.episodes == b.episodes, "{a:?} {b:?}");
                        prop_assert!((a.blocked_ms - b.blocked_ms).abs() < 1e-6 && a.longest_ms == b.longest_ms, "{a:?} {b:?}");
                    }
                }
            }
            let a = crate::output::flamegraph::fold(&rec, &whole, None, true);
            let b = crate::output::flamegraph::fold_stream(&rec, &stream, Some(&threads), whole.threshold_ms, None);
            prop_assert_eq!(a, b);
            // And in every view (focus, idle hidden).
            for view in crate::output::flamegraph::View::ALL {
                let a = crate::output::flamegraph::fold_view(&rec, &whole, None, true, view);
                let b = crate::output::flamegraph::fold_stream_view(&rec, &stream, Some(&threads), whole.threshold_ms, None, view);
                prop_assert_eq!(a, b, "{:?}", view);
            }
            // The HTML page of any recording: one span per episode, never a panic.
            let page = crate::output::html::page(&crate::output::html::Page {
                rec: &rec,
                analysis: &whole,
                cwd: None,
                title: "t",
                subtitle: "s",
                flames: Vec::new(),
                initial: crate::output::flamegraph::View::default(),
            });
            let episodes: usize = whole.loops.iter().map(|l| l.episodes.len()).sum();
            prop_assert_eq!(page.matches("<g class=\"episode\"").count(), episodes);
        }
        let got = metrics::analyze(&rec, &opts);
        for (i, g) in got.loops.iter().enumerate() {
            let r = crate::analysis::reference::summarize_loop(&rec, i as u16, &opts);
            prop_assert_eq!(g.samples, r.samples);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0);
            prop_assert!(close(g.wall_s, r.wall_s), "wall {} {}", g.wall_s, r.wall_s);
            for (a, b, what) in [(g.busy_pct, r.busy_pct, "busy"), (g.select_pct, r.select_pct, "select"), (g.unknown_pct, r.unknown_pct, "unknown"), (g.stopped_pct, r.stopped_pct, "stopped")] {
                prop_assert!(close(a, b), "{what} {a} {b}");
            }
            prop_assert_eq!(g.lag.max_ms, r.lag.max_ms);
            prop_assert_eq!(g.lag.unknown_samples, r.lag.unknown_samples);
            for (a, b) in [(g.lag.p50_ms, r.lag.p50_ms), (g.lag.p99_ms, r.lag.p99_ms)] {
                prop_assert!(a >= b - 1e-9 && a <= b * crate::analysis::stream::LAG_BUCKET_RATIO + 1e-6, "lag percentile {a} vs exact {b}");
            }
            prop_assert!(close(g.ready.mean, r.ready.mean) && g.ready.max == r.ready.max && g.ready.last == r.ready.last);
            prop_assert!(close(g.ready.trend_per_s, r.ready.trend_per_s), "trend {} {}", g.ready.trend_per_s, r.ready.trend_per_s);
            prop_assert_eq!(g.busy_now_ms, r.busy_now_ms);
            prop_assert!(close(g.longest_busy_ms, r.longest_busy_ms));
            prop_assert_eq!(g.windows.len(), r.windows.len());
            for (a, b) in g.windows.iter().zip(&r.windows) {
                prop_assert!(a.samples == b.samples && a.episodes == b.episodes && a.ready_max == b.ready_max, "{a:?} {b:?}");
                prop_assert!(close(a.busy_pct, b.busy_pct) && close(a.ready_mean, b.ready_mean) && close(a.start_s, b.start_s), "{a:?} {b:?}");
                prop_assert!(a.lag_p99_ms == b.lag_p99_ms && a.lag_max_ms == b.lag_max_ms, "{a:?} {b:?}");
            }
            prop_assert_eq!(&g.episodes, &r.episodes);
            prop_assert_eq!(&g.tasks, &r.tasks);
        }
    }

    /// Random sample sequences: the figures stay consistent.
    #[test]
    fn random_samples_give_consistent_figures(
        kinds in proptest::collection::vec((0u8..4, any::<u8>(), 0u32..50, -2000i32..2000), 0..600),
        rate in prop_oneof![Just(10.0), Just(100.0), Just(1000.0)],
        threshold_ms in 1.0f64..500.0,
    ) {
        let meta = LoopMeta::test(1);
        let mut rec = Recording::new(rate, vec![meta], 10.0);
        let stacks: Vec<u32> = (0..4)
            .map(|i| rec.intern_stack(&[StackFrame { function: format!("f{i}").into(), file: "/app/x.py".into(), line: i }]))
            .collect();
        let mut t = 10.0;
        for (state, jitter, ready, late) in &kinds {
            t += (1.0 + (*jitter as f64 - 128.0) / 512.0) / rate;
            let state = [LoopState::Idle, LoopState::Callback, LoopState::Loop, LoopState::Unknown][*state as usize];
            rec.samples.push(Sample {
                t,
                loop_index: 0,
                state,
                activity: if jitter % 2 == 0 { ThreadActivity::OnCpu } else { ThreadActivity::Waiting(230) },
                ready: *ready,
                lateness: (jitter % 7 != 0).then_some(*late as f32 / 1000.0),
                stack: stacks[(*jitter % 4) as usize],
                loop_frames: (*jitter % 2) as u16,
                callback: metrics::is_busy(state).then_some((*jitter % 3) as u64),
                task: None,
                busy_for: None,
                gc: crate::python::gc::GcAt::Unknown,
            });
        }
        rec.ended = t + 1.0 / rate;
        let a = metrics::analyze(&rec, &Options { threshold: threshold_ms / 1e3, ..Options::default() });
        let l = &a.loops[0];
        if !rec.samples.is_empty() {
            prop_assert!((l.busy_pct + l.select_pct + l.unknown_pct - 100.0).abs() < 1e-6);
        }
        prop_assert!(l.lag.p50_ms <= l.lag.p99_ms + 1e-9 && l.lag.p99_ms <= l.lag.max_ms + 1e-9);
        prop_assert!(l.lag.p50_ms >= 0.0);
        let mut last_end = f64::MIN;
        for e in &l.episodes {
            prop_assert!(e.duration_ms >= threshold_ms - 1e-6, "episode shorter than the threshold");
            prop_assert!(e.start >= last_end - 1e-9, "episodes overlap");
            prop_assert!(e.end >= e.start);
            last_end = e.end;
        }
        let blocked: f64 = a.blocking_frames.iter().map(|f| f.blocked_ms).sum();
        let total: f64 = l.episodes.iter().map(|e| e.duration_ms).sum();
        prop_assert!((blocked - total).abs() < 1e-6);
        prop_assert_eq!(l.windows.iter().map(|w| w.samples as usize).sum::<usize>(), rec.samples.len());
        // The flame graph folds every sample's time.
        let folded = crate::output::flamegraph::fold(&rec, &a, None, false);
        let weight: u64 = folded.stacks.values().sum();
        prop_assert!(weight as f64 <= (rec.ended - 10.0) * 1e6 * 2.0 + 1e6);
        // The fast fold and per-window figures equal the plain per-sample computations.
        prop_assert_eq!(&folded, &reference_fold(&rec, &a));
        let reference = reference_windows(&rec, l, 1.0);
        prop_assert_eq!(l.windows.len(), reference.len());
        for (w, (samples, busy, episodes)) in l.windows.iter().zip(&reference) {
            prop_assert_eq!(w.samples, *samples);
            prop_assert_eq!(w.episodes, *episodes);
            prop_assert!((w.busy_pct - busy).abs() < 1e-9);
        }
    }
}

/// The flame graph's fold as first written: every sample labelled and aggregated on its own.
fn reference_fold(rec: &Recording, a: &metrics::Analysis) -> crate::output::flamegraph::Folded {
    use crate::output::flamegraph::{frame_label, Category, Folded};
    let mut folded = Folded { roots: 1, ..Folded::default() };
    let interval = rec.interval();
    for (li, meta) in rec.loops.iter().enumerate() {
        let root = format!(
            "{} ({})",
            meta.thread_name.clone().unwrap_or_else(|| format!("thread {}", meta.native_id.unwrap_or(0))),
            meta.loop_class
        );
        let idx: Vec<usize> = (0..rec.samples.len()).filter(|i| rec.samples[*i].loop_index as usize == li).collect();
        for (k, i) in idx.iter().enumerate() {
            let s = &rec.samples[*i];
            let next = idx.get(k + 1).map(|j| rec.samples[*j].t);
            let weight = next.map(|n| (n - s.t).clamp(0.0, 2.0 * interval)).unwrap_or(interval);
            let cat = match s.state {
                LoopState::Idle => Category::Idle,
                LoopState::Unknown => Category::Unknown,
                state if metrics::is_busy(state) => {
                    if a.loops[li].episodes.iter().any(|e| s.t >= e.start && s.t <= e.end) {
                        Category::Blocked
                    } else {
                        Category::Busy
                    }
                }
                _ => Category::Unknown,
            };
            let mut frames = vec![root.clone(), cat.label(a.threshold_ms)];
            let mut stack: Vec<&StackFrame> = rec.stack(s.stack).collect();
            stack.reverse();
            frames.extend(stack.iter().map(|f| frame_label(f, None)));
            *folded.stacks.entry((frames, Some(cat))).or_insert(0) += (weight * 1e6).round() as u64;
        }
    }
    folded
}

/// Per window of `window` s from the start: (samples, busy % by time, episodes starting in it),
/// each window filtering all samples.
fn reference_windows(rec: &Recording, l: &metrics::LoopSummary, window: f64) -> Vec<(u32, f64, u32)> {
    let samples: Vec<&Sample> = rec.samples.iter().collect();
    let interval = rec.interval();
    let w: Vec<f64> = (0..samples.len())
        .map(|i| match samples.get(i + 1) {
            Some(n) => (n.t - samples[i].t).clamp(0.0, 2.0 * interval),
            None => interval,
        })
        .collect();
    if samples.is_empty() {
        return Vec::new();
    }
    let n = (((rec.ended - rec.started).max(0.0) / window).ceil() as usize).max(1);
    (0..n)
        .map(|k| {
            let (lo, hi) = (rec.started + k as f64 * window, rec.started + (k + 1) as f64 * window);
            let idx: Vec<usize> = (0..samples.len()).filter(|i| samples[*i].t >= lo && samples[*i].t < hi).collect();
            let ww: f64 = idx.iter().map(|i| w[*i]).sum();
            let busy: f64 = idx.iter().filter(|i| metrics::is_busy(samples[**i].state)).map(|i| w[*i]).sum();
            let episodes = l.episodes.iter().filter(|e| e.start >= lo && e.start < hi).count() as u32;
            (idx.len() as u32, if ww > 0.0 { 100.0 * busy / ww } else { 0.0 }, episodes)
        })
        .collect()
}

#[test]
fn a_frame_chain_that_loops_is_an_error_not_a_hang() {
    for version in SUPPORTED {
        let layout = for_version(*version).unwrap();
        // A "thread state" whose frame pointer points at a frame whose back pointer is itself.
        let base = 0x6000_0000_0000u64;
        let mut blob = vec![0u8; 4096];
        let frame = base + 1024;
        for w in blob.chunks_exact_mut(8) {
            w.copy_from_slice(&frame.to_le_bytes());
        }
        let mut mem = FakeMemory::new();
        mem.map(base, blob);
        let r = ObjectReader::new(&mem, layout);
        let started = std::time::Instant::now();
        assert!(frames::walk(&r, base).is_err(), "{}", layout.version);
        assert!(started.elapsed().as_secs() < 2);
    }
}
