//! The dashboard drawn into ratatui's `TestBackend` from known samples, at 80x24 and 160x50:
//! what the screen says must follow from the samples.

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::model::{self, TargetInfo, UiState};
use super::view;
use crate::analysis::stream::{Stream, StreamOptions};
use crate::asyncio::eventloop::LoopKind;
use crate::asyncio::loopstate::LoopState;
use crate::capture::recording::{EndReason, LoopMeta, Recording, Sample, ThreadActivity};
use crate::python::frames::StackFrame;

fn frame(function: &str, file: &str, line: i32) -> StackFrame {
    StackFrame { function: function.into(), file: file.into(), line }
}

/// 100 Hz: `idle_s` of idle, then `block_s` blocked in `fetch_user` (recvfrom, task
/// "Task-17", 40 ready) and, if `ends_idle`, 0.2 s of idle again.
fn recording(idle_s: f64, block_s: f64, ends_idle: bool) -> Recording {
    let meta = LoopMeta {
        native_id: Some(42),
        thread_name: Some("MainThread".into()),
        loop_class: "_UnixSelectorEventLoop".into(),
        loop_kind: LoopKind::Selector,
        selector: Some("EpollSelector".into()),
        found: None,
    };
    let mut rec = Recording::new(100.0, vec![meta], 1000.0);
    let idle = rec.intern_stack(&[frame("EpollSelector.select", "/usr/lib/python3.12/selectors.py", 468)]);
    let blocked = rec.intern_stack(&[
        frame("fetch_user", "/srv/app/db.py", 42),
        frame("handler", "/srv/app/web.py", 10),
        frame("Handle._run", "/usr/lib/python3.12/asyncio/events.py", 84),
    ]);
    let task = rec.tasks.intern("Task-17".into());
    let mut t = 1000.0;
    let push = |rec: &mut Recording, t: f64, busy: bool| {
        rec.samples.push(Sample {
            t,
            loop_index: 0,
            state: if busy { LoopState::Callback } else { LoopState::Idle },
            activity: if busy { ThreadActivity::Waiting(45) } else { ThreadActivity::Waiting(232) },
            ready: if busy { 40 } else { 0 },
            lateness: Some(if busy { (t - 1000.0 - idle_s) as f32 } else { -0.005 }),
            stack: if busy { blocked } else { idle },
            loop_frames: 1,
            callback: busy.then_some(0xbeef),
            task: busy.then_some(task),
            busy_for: None,
            gc: crate::python::gc::GcAt::Unknown,
        });
    };
    for _ in 0..(idle_s * 100.0) as usize {
        push(&mut rec, t, false);
        t += 0.01;
    }
    for _ in 0..(block_s * 100.0) as usize {
        push(&mut rec, t, true);
        t += 0.01;
    }
    if ends_idle {
        for _ in 0..20 {
            push(&mut rec, t, false);
            t += 0.01;
        }
    }
    rec.ended = t;
    rec
}

/// The live figures of a recording, as `top` keeps them (every threshold's episodes kept).
fn stream(rec: &Recording) -> Stream {
    Stream::over(rec, StreamOptions::for_recording(rec, crate::output::tui::keys::THRESHOLDS[0], 1.0))
}

/// A long run: more episodes than `top` keeps (and of two functions, the older one blocking
/// longer), streamed as `top` streams it: the counts, the frames table and the headline
/// still cover every episode, at the threshold given and at those `+`/`-` reach; the list
/// holds the last ones.
#[test]
fn a_long_run_keeps_counting_what_it_no_longer_lists() {
    let mut rec = recording(0.1, 0.0, false);
    let old =
        rec.intern_stack(&[frame("old_handler", "/srv/app/old.py", 7), frame("Handle._run", "/usr/lib/python3.12/asyncio/events.py", 84)]);
    let new =
        rec.intern_stack(&[frame("new_handler", "/srv/app/new.py", 9), frame("Handle._run", "/usr/lib/python3.12/asyncio/events.py", 84)]);
    let idle = rec.samples[0].stack;
    let (n_old, n_new) = (model::EPISODES_KEPT + 300, model::EPISODES_KEPT / 2);
    let mut t = rec.ended;
    let mut push = |rec: &mut Recording, stack: u32, busy: bool, id: u64| {
        let mut s = rec.samples[0];
        (s.t, s.stack, s.state, s.callback) = (t, stack, if busy { LoopState::Callback } else { LoopState::Idle }, busy.then_some(id));
        s.activity = if busy { ThreadActivity::OnCpu } else { ThreadActivity::Waiting(232) };
        rec.samples.push(s);
        t += 0.01;
    };
    // 300 ms blocks of the old handler, then 150 ms blocks of the new one, 50 ms apart.
    for i in 0..n_old + n_new {
        let (stack, len) = if i < n_old { (old, 30) } else { (new, 15) };
        for _ in 0..len {
            push(&mut rec, stack, true, i as u64);
        }
        for _ in 0..5 {
            push(&mut rec, idle, false, 0);
        }
    }
    rec.ended = t;
    let mut live = model::live_stream(&rec, 0.1);
    for s in &rec.samples {
        live.push(&rec, s);
    }
    let target = TargetInfo::default();
    for (threshold, old_count, new_count) in [(0.1, n_old, n_new), (0.2, n_old, 0)] {
        let m = model::build(&rec, &live, &target, &UiState::new(threshold, false), 100.0, None);
        assert_eq!(m.episodes_total, (old_count + new_count) as u64, "at {threshold} s");
        assert!(m.episodes.len() <= model::EPISODES_KEPT, "{}", m.episodes.len());
        let row = |f: &str| m.frames.iter().find(|r| r.function == f).map(|r| (r.episodes, r.blocked_ms.round() as u64));
        assert_eq!(row("old_handler").map(|r| r.0), Some(old_count as u32), "at {threshold} s: {:?}", m.frames);
        assert_eq!(row("new_handler").map(|r| r.0), (new_count > 0).then_some(new_count as u32), "at {threshold} s");
        // The old handler blocked longest in all: first in the table, as in the headline.
        assert_eq!(m.frames[0].function, "old_handler");
        let line = model::plain_line(&m, "03:15:02Z");
        assert!(line.contains(&format!("{} blocking episodes", old_count + new_count)), "{line}");
        assert!(line.contains("top old_handler (") && line.contains(&format!("in {old_count} episodes)")), "{line}");
    }
    // The list holds the newest: the new handler's.
    let m = model::build(&rec, &live, &target, &UiState::new(0.1, false), 100.0, None);
    assert_eq!(m.episodes[0].function, "new_handler");
}

fn build(rec: &Recording, target: &TargetInfo, ui: &UiState, pane: Option<&crate::capture::task_pane::TaskPane>) -> model::TopModel {
    model::build(rec, &stream(rec), target, ui, 100.0, pane)
}

fn screen(rec: &Recording, ui: &UiState, width: u16, height: u16) -> String {
    let target = TargetInfo { pid: 4242, command: "python3 app.py".into(), python: "3.12.1".into(), cwd: Some("/srv/app".into()) };
    let m = build(rec, &target, ui, None);
    let mut term = Terminal::new(TestBackend::new(width, height)).unwrap();
    term.draw(|f| view::draw(f, &m, ui)).unwrap();
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..height {
        for x in 0..width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn blocked_now_at_80x24() {
    let rec = recording(2.0, 1.84, false);
    let ui = UiState::new(0.1, true);
    let s = screen(&rec, &ui, 80, 24);
    let state = s.lines().find(|l| l.contains("BLOCKED")).unwrap_or_else(|| panic!("no state line:\n{s}"));
    // Blocked since half-way between the last idle sample and the first busy one: 1.835 s
    // before the last sample.
    assert!(
        state.contains("BLOCKED 1.8") && state.contains(" s in fetch_user (db.py:42) task \"Task-17\", waiting in recvfrom"),
        "{state}"
    );
    assert!(s.contains("PID 4242"), "{s}");
    assert!(s.contains("fetch_user"), "{s}");
    assert!(s.contains("db.py:42"), "{s}");
    assert!(s.contains("ready 40"), "{s}");
    assert!(s.contains("(now)"), "the ongoing episode is marked:\n{s}");
    assert!(s.contains("q quit"), "{s}");
    assert_eq!(s.lines().count(), 24);
    // The one episode (over 1 s, waiting in recvfrom) is diagnosed, under the state line.
    let lines: Vec<&str> = s.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("DIAGNOSIS: synchronous I/O on the loop: 1.8"))
        .unwrap_or_else(|| panic!("no diagnosis:\n{s}"));
    assert!(lines[at - 1].contains("BLOCKED"), "{s}");
    assert!(lines[at].contains("socket I/O"), "{s}");
}

#[test]
fn idle_after_a_block_at_160x50() {
    let rec = recording(2.0, 0.5, true);
    let ui = UiState::new(0.1, false);
    let s = screen(&rec, &ui, 160, 50);
    let state = s.lines().find(|l| l.contains("idle in select")).unwrap_or_else(|| panic!("{s}"));
    assert!(state.contains("lag 0.0 ms, 0 ready"), "{state}");
    // The episode ended half-way to the first idle sample, 0.195 s before the last one.
    assert!(state.contains("last blocked 195 ms ago: fetch_user 500 ms"), "{state}");
    // The frames table: total, episode count and longest for fetch_user.
    let row = s.lines().find(|l| l.contains("fetch_user") && l.contains("db.py:42")).expect("table row");
    assert!(row.contains("500ms") && row.contains("recvfrom"), "{row}");
    // The selected episode's stack, innermost first.
    let stack_at = s.find("fetch_user (db.py:42)").expect("stack");
    assert!(s[stack_at..].contains("handler (web.py:10)"), "{s}");
    assert!(s.contains("PID 4242 python3 app.py | Py 3.12.1 MainThread _UnixSelectorEventLoop | 100 Hz"), "{s}");
}

#[test]
fn below_the_threshold_is_busy_not_blocked() {
    let rec = recording(1.0, 0.05, false);
    let ui = UiState::new(0.1, true);
    let s = screen(&rec, &ui, 80, 24);
    assert!(s.contains("busy 50 ms in fetch_user") || s.contains("busy 45 ms in fetch_user"), "{s}");
    assert!(!s.contains("BLOCKED"), "{s}");
}

#[test]
fn exited_and_paused_targets_say_so() {
    let mut rec = recording(1.0, 0.5, true);
    rec.end = EndReason::TargetExited;
    let s = screen(&rec, &UiState::new(0.1, true), 80, 24);
    assert!(s.contains("TARGET EXITED"), "{s}");
    assert!(s.contains("fetch_user"), "the last figures stay:\n{s}");
    let rec = recording(1.0, 0.5, true);
    let mut ui = UiState::new(0.1, true);
    ui.paused = true;
    assert!(screen(&rec, &ui, 80, 24).contains("PAUSED"));
}

#[test]
fn threshold_changes_what_counts_as_an_episode() {
    let rec = recording(1.0, 0.3, true);
    let s = screen(&rec, &UiState::new(0.1, true), 80, 24);
    assert!(s.contains("slow") || s.contains("fetch_user"), "{s}");
    let s = screen(&rec, &UiState::new(0.5, true), 80, 24);
    assert!(!s.lines().any(|l| l.contains("db.py:42") && l.contains("recvfrom") && l.contains("300ms")), "{s}");
    assert!(s.contains(">= 500 ms"), "{s}");
}

#[test]
fn help_overlay_and_no_colour() {
    let rec = recording(1.0, 0.3, true);
    let mut ui = UiState::new(0.1, false);
    ui.help = true;
    let target = TargetInfo::default();
    let m = build(&rec, &target, &ui, None);
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    term.draw(|f| view::draw(f, &m, &ui)).unwrap();
    let buf = term.backend().buffer().clone();
    let text: String = (0..24).flat_map(|y| (0..80).map(move |x| (x, y))).map(|p| buf[p].symbol().to_string()).collect();
    assert!(text.contains("save an SVG flame graph"), "{text}");
    // Every key fits at 80x24, the last one too.
    for (_, _, what) in crate::output::tui::keys::KEYS {
        assert!(text.contains(what), "{what} not (whole) on the help at 80x24:\n{text}");
    }
    // Without colour, nothing has a foreground or background colour.
    for y in 0..24 {
        for x in 0..80 {
            let c = &buf[(x, y)];
            assert_eq!(c.fg, ratatui::style::Color::Reset, "colour at {x},{y}");
            assert_eq!(c.bg, ratatui::style::Color::Reset, "colour at {x},{y}");
        }
    }
}

#[test]
fn plain_line_has_the_headline_figures() {
    let rec = recording(2.0, 1.84, false);
    let m = build(&rec, &TargetInfo::default(), &UiState::new(0.1, false), None);
    let line = model::plain_line(&m, "03:15:02Z");
    assert!(line.starts_with("03:15:02Z BLOCKED 1.8") && line.contains(" s in fetch_user"), "{line}");
    assert!(line.contains("ready 40") && line.contains("1 blocking episode"), "{line}");
    assert!(line.contains(" | DIAGNOSIS: synchronous I/O on the loop: ") && line.contains("Next: use the loop's streams"), "{line}");
    // One short block in 10 s: no diagnosis.
    let rec = recording(10.0, 0.15, true);
    let m = build(&rec, &TargetInfo::default(), &UiState::new(0.1, false), None);
    assert_eq!(m.diagnosis, None);
    assert!(!model::plain_line(&m, "03:15:02Z").contains("DIAGNOSIS"));
}

#[test]
fn task_pane_counts_rows_and_filter() {
    let rec = recording(1.0, 0.3, true);
    let mut ui = UiState::new(0.1, true);
    ui.pane = super::model::Pane::Tasks;
    ui.filter = "req".into();
    let pane = crate::capture::task_pane::TaskPane {
        counts: crate::asyncio::tasks::TaskCounts { total: 12_003, pending: 12_000, done: 2, cancelled: 1, unknown: 0 },
        rows: vec![
            crate::capture::task_pane::TaskRow {
                name: "request-17".into(),
                pending_for_s: 42.0,
                at: "Queue.get (asyncio/queues.py:158)".into(),
                running: false,
            },
            crate::capture::task_pane::TaskRow {
                name: "request-3".into(),
                pending_for_s: 0.0,
                at: "handler (web.py:10)".into(),
                running: true,
            },
        ],
        matching: 2,
        age_s: 0.4,
        groups: Some(crate::capture::task_groups::TaskGroupSample {
            t: 0.0,
            loop_index: 0,
            pending: 12_000,
            examined: 1000,
            sampled: true,
            unreadable: 0,
            groups: vec![crate::capture::task_groups::TaskGroup {
                function: "handle\u{1b}[31m".into(),
                file: "web.py".into(),
                line: 12,
                waits_on: crate::asyncio::tasks::WaitKind::Semaphore,
                via: None,
                examined: 990,
                estimated: 11_880,
                objects: 1,
                object: Some("0x7f00".into()),
                object_type: Some("Semaphore".into()),
                object_name: None,
            }],
            other_tasks: 10,
            cost_ms: 20.0,
        }),
    };
    let target = TargetInfo::default();
    let m = build(&rec, &target, &ui, Some(&pane));
    let mut term = Terminal::new(TestBackend::new(100, 30)).unwrap();
    term.draw(|f| view::draw(f, &m, &ui)).unwrap();
    let buf = term.backend().buffer().clone();
    let s: String = (0..30).map(|y| (0..100).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>() + "\n").collect();
    assert!(s.contains("12000 pending, 2 done, 1 cancelled, 2 matching \"req\""), "{s}");
    assert!(s.contains("request-17") && s.contains(">= 42.00 s") && s.contains("Queue.get (asyncio/queues.py:158)"), "{s}");
    assert!(s.contains("request-3") && s.contains("RUNNING"), "{s}");
    // The largest group above the list, its name from the target escaped.
    assert!(s.contains("(1000 of 12000 examined)") && s.contains("~ 11880 handle\\x1b[31m (web.py:12) waits on asyncio.Semaphore"), "{s}");
    assert!(model::plain_line(&m, "x").contains("12000 pending tasks"));
}

/// Three loops in three threads; the third blocks now. The headline follows it and names it;
/// `l` shows the others in turn.
#[test]
fn several_loops_the_worst_is_shown_and_named() {
    let meta = |i: usize| LoopMeta {
        native_id: Some(100 + i as i32),
        thread_name: Some(format!("loop-{i}")),
        loop_class: "_UnixSelectorEventLoop".into(),
        loop_kind: LoopKind::Selector,
        selector: None,
        found: None,
    };
    let mut rec = Recording::new(100.0, (0..3).map(meta).collect(), 1000.0);
    let idle = rec.intern_stack(&[frame("EpollSelector.select", "/usr/lib/python3.12/selectors.py", 468)]);
    let blocked =
        rec.intern_stack(&[frame("crunch", "/srv/app/jobs.py", 7), frame("Handle._run", "/usr/lib/python3.12/asyncio/events.py", 84)]);
    for k in 0..300 {
        let t = 1000.0 + k as f64 * 0.01;
        for li in 0..3u16 {
            let busy = li == 2 && k >= 100;
            rec.samples.push(Sample {
                t: t + li as f64 * 1e-4,
                loop_index: li,
                state: if busy { LoopState::Callback } else { LoopState::Idle },
                activity: if busy { ThreadActivity::OnCpu } else { ThreadActivity::Waiting(232) },
                ready: 0,
                lateness: None,
                stack: if busy { blocked } else { idle },
                loop_frames: 1,
                callback: busy.then_some(0xc0de),
                task: None,
                busy_for: None,
                gc: crate::python::gc::GcAt::Unknown,
            });
        }
    }
    rec.ended = 1003.0;
    let s = screen(&rec, &UiState::new(0.1, false), 120, 30);
    assert!(s.contains("loop 3/3 (worst now, l switches): loop-2 _UnixSelectorEventLoop"), "{s}");
    assert!(s.lines().any(|l| l.contains("BLOCKED 2.0") && l.contains("in crunch (jobs.py:7)")), "{s}");
    let mut ui = UiState::new(0.1, false);
    ui.loop_choice = model::LoopChoice::Fixed(0);
    let s = screen(&rec, &ui, 120, 30);
    assert!(s.contains("loop 1/3 (l switches): loop-0") && s.contains("idle in select"), "{s}");
    assert!(!s.contains("crunch"), "another loop's episodes are not this one's:\n{s}");
}

/// `--subprocesses`: three workers sampled at 100 Hz for 1.5 s. PID 101 is idle for 1 s,
/// then blocked in `fetch_user` to the end; PID 102 blocks 0.2 s at 0.3 s and is idle after;
/// PID 103 is idle and exits at 0.6 s.
fn fleet_recording() -> Recording {
    use crate::capture::recording::{ProcessEnd, ProcessMeta};
    let meta = |tid: i32| LoopMeta {
        native_id: Some(tid),
        thread_name: Some("MainThread".into()),
        loop_class: "_UnixSelectorEventLoop".into(),
        loop_kind: LoopKind::Selector,
        selector: Some("EpollSelector".into()),
        found: None,
    };
    let mut rec = Recording::new(100.0, vec![meta(101), meta(102), meta(103)], 1000.0);
    let process = |pid: i32, end: Option<ProcessEnd>| ProcessMeta {
        pid,
        parent_pid: Some(100),
        command: vec!["/venv/bin/python".into(), "-m".into(), "gunicorn".into(), "app:app".into()],
        python: "3.12.1".into(),
        joined: 1000.0,
        left: end.map(|_| 1000.6),
        end,
    };
    rec.processes = vec![process(101, None), process(102, None), process(103, Some(ProcessEnd::Exited))];
    rec.loop_process = vec![0, 1, 2];
    let idle = rec.intern_stack(&[frame("EpollSelector.select", "/usr/lib/python3.12/selectors.py", 468)]);
    let blocked = rec.intern_stack(&[frame("fetch_user", "/srv/app/db.py", 42), frame("handler", "/srv/app/web.py", 10)]);
    let sample = |loop_index: u16, t: f64, busy_since: Option<f64>| Sample {
        t,
        loop_index,
        state: if busy_since.is_some() { LoopState::Callback } else { LoopState::Idle },
        activity: if busy_since.is_some() { ThreadActivity::Waiting(45) } else { ThreadActivity::Waiting(232) },
        ready: 0,
        lateness: Some(busy_since.map(|b| (t - b) as f32).unwrap_or(-0.005)),
        stack: if busy_since.is_some() { blocked } else { idle },
        loop_frames: 1,
        callback: busy_since.map(|b| 0xbeef + (b * 10.0) as u64),
        task: None,
        busy_for: None,
        gc: crate::python::gc::GcAt::Unknown,
    };
    for i in 0..150 {
        let s = i as f64 / 100.0;
        let t = 1000.0 + s;
        rec.samples.push(sample(0, t, (s >= 1.0).then_some(1000.995)));
        rec.samples.push(sample(1, t, (0.3..0.5).contains(&s).then_some(1000.295)));
        if s < 0.6 {
            rec.samples.push(sample(2, t, None));
        }
        rec.ended = t;
    }
    rec
}

fn fleet_ui() -> UiState {
    let mut ui = UiState::new(0.1, false);
    ui.fleet = true;
    ui
}

fn master() -> TargetInfo {
    TargetInfo { pid: 100, command: "python -m gunicorn app:app".into(), python: "3.12.1".into(), cwd: Some("/srv/app".into()) }
}

#[test]
fn the_overview_has_a_row_per_worker_from_its_samples() {
    use model::WorkerNow;
    let rec = fleet_recording();
    let ov = model::overview(&rec, &stream(&rec), &master(), &fleet_ui(), 100.0);
    assert_eq!(ov.rows.iter().map(|r| r.pid).collect::<Vec<_>>(), [101, 102, 103]);
    assert!(ov.header.contains("PID 100 python -m gunicorn app:app and its workers | 2 running, 1 gone"), "{}", ov.header);
    // 101: blocked since half-way between its last idle sample and its first busy one.
    let r = &ov.rows[0];
    let WorkerNow::Blocked { ms, function, waiting_in } = &r.now else { panic!("{:?}", r.now) };
    assert!((ms - 495.0).abs() < 1.0, "{ms}");
    assert_eq!((function.as_str(), waiting_in.as_str()), ("fetch_user (db.py:42)", "waiting in recvfrom"));
    assert_eq!((r.episodes, r.busy_now_pct.round(), r.loops), (1, 100.0, 1));
    assert!((r.lag_now_ms.unwrap() - 495.0).abs() < 1.0, "{:?}", r.lag_now_ms);
    assert_eq!(r.command, "python -m gunicorn app:app");
    // 102: idle again after one 0.2 s episode; no lag now, not busy this second.
    let r = &ov.rows[1];
    assert_eq!((&r.now, r.episodes, r.busy_now_pct, r.lag_now_ms), (&WorkerNow::Idle, 1, 0.0, Some(0.0)));
    // 103: gone, its row kept.
    assert_eq!(ov.rows[2].now, WorkerNow::Gone(crate::capture::recording::ProcessEnd::Exited));
    assert_eq!(ov.rows[2].episodes, 0);
    // A higher threshold: 101's 495 ms is busy, not blocked; 102's 200 ms is no episode.
    let mut ui = fleet_ui();
    ui.threshold = 0.5;
    let ov = model::overview(&rec, &stream(&rec), &master(), &ui, 100.0);
    assert!(matches!(ov.rows[0].now, WorkerNow::Busy { .. }), "{:?}", ov.rows[0].now);
    assert_eq!(ov.rows[1].episodes, 0);
    // On a pipe: one line per worker.
    let lines = model::plain_overview(&ov, "09:00:00Z");
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0].starts_with("09:00:00Z PID 101 python -m gunicorn app:app | busy 495 ms in fetch_user (db.py:42) | busy 100%"),
        "{}",
        lines[0]
    );
    assert!(lines[2].contains("PID 103") && lines[2].contains("| gone (exited) |"), "{}", lines[2]);
}

#[test]
fn a_workers_dashboard_shows_its_loops_only() {
    let rec = fleet_recording();
    let st = stream(&rec);
    let mut ui = fleet_ui();
    ui.worker = Some(1);
    let m = model::build(&rec, &st, &master(), &ui, 100.0, None);
    assert!(m.header.starts_with("worker 2/3 (w: all) PID 102 python -m gunicorn app:app"), "{}", m.header);
    assert!(m.state.text.starts_with("idle in select"), "{}", m.state.text);
    assert_eq!(m.episodes.len(), 1);
    // The worst loop of all would be 101's; the worker's own is shown.
    assert!((m.episodes[0].duration_ms - 200.0).abs() <= 10.0, "{:?}", m.episodes[0]);
    ui.worker = Some(2);
    let m = model::build(&rec, &st, &master(), &ui, 100.0, None);
    assert!(m.state.text.starts_with("WORKER GONE: PID 103 exited"), "{}", m.state.text);
    assert!(m.episodes.is_empty());
    // The overview drawn: a row per worker, the blocked one saying where.
    let ui = fleet_ui();
    let ov = model::overview(&rec, &st, &master(), &ui, 100.0);
    let mut term = Terminal::new(TestBackend::new(100, 24)).unwrap();
    term.draw(|f| view::draw_overview(f, &ov, &ui)).unwrap();
    let buf = term.backend().buffer().clone();
    let s: String = (0..24).map(|y| (0..100).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>() + "\n").collect();
    let row = |pid: &str| s.lines().find(|l| l.contains(pid)).unwrap_or_else(|| panic!("no row for {pid}:\n{s}")).to_string();
    assert!(row("101").contains("BLOCKED 495 ms in fetch_user"), "{s}");
    assert!(row("102").contains("idle"), "{s}");
    assert!(row("103").contains("gone (exited)"), "{s}");
    assert!(s.contains("w/Enter worker"), "{s}");
}
