//! What one `top` redraw costs after it has run for a while: is it the same after an hour as
//! after a minute?
//!
//!     cargo bench --bench redraw_cost [-- RATE_HZ MINUTES]     (default: 100 Hz, 60 minutes)
//!
//! Feeds `top`'s own state (a [`Recording`] held with `top::hold`, the stream of
//! `model::live_stream`) with a synthetic service sampled at RATE_HZ: the loop blocks three
//! times a second for 130 ms in one of three functions, each time in a task with a new name
//! (asyncio's `Task-N`), and one sample in five lands in a short request callback, also in
//! a task with a new name; the rest is idle in select. At 1, 5, 10, 20, 30, 45 and 60
//! minutes of target time it times 30 redraws (`model::build`, what the screen and the
//! `--plain` line are made from) and prints the median and p90 in ms, the samples and names
//! held, and the episodes the model lists and counts.
//! This is a benchmark, not a test: it asserts nothing about time.

use std::time::Instant;

use loopspy::asyncio::eventloop::LoopKind;
use loopspy::asyncio::loopstate::LoopState;
use loopspy::capture::recording::{LoopMeta, Recording, Sample, ThreadActivity};
use loopspy::commands::top;
use loopspy::output::tui::model::{self, TargetInfo, UiState};
use loopspy::python::frames::StackFrame;

fn frame(function: &str, file: &str, line: i32) -> StackFrame {
    StackFrame { function: function.into(), file: file.into(), line }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let rate: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100.0);
    let minutes: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60.0);
    let meta = LoopMeta {
        native_id: Some(1),
        thread_name: Some("MainThread".into()),
        loop_class: "_UnixSelectorEventLoop".into(),
        loop_kind: LoopKind::Selector,
        selector: Some("EpollSelector".into()),
        found: None,
    };
    let start = 1000.0;
    let mut rec = Recording::new(rate, vec![meta], start);
    let base = [
        frame("Handle._run", "/usr/lib/python3.12/asyncio/events.py", 84),
        frame("_run_once", "/usr/lib/python3.12/asyncio/base_events.py", 1986),
        frame("run_forever", "/usr/lib/python3.12/asyncio/base_events.py", 641),
        frame("<module>", "/srv/app/main.py", 50),
    ];
    let with = |top: &[StackFrame]| -> Vec<StackFrame> { top.iter().cloned().chain(base.iter().cloned()).collect() };
    let idle = rec.intern_stack(&[
        frame("EpollSelector.select", "/usr/lib/python3.12/selectors.py", 468),
        base[1].clone(),
        base[2].clone(),
        base[3].clone(),
    ]);
    let blocks: Vec<u32> = (0..3)
        .map(|i| rec.intern_stack(&with(&[frame("blocking_lookup", "/srv/app/db.py", 17 + i), frame("request", "/srv/app/web.py", 24)])))
        .collect();
    let short = rec.intern_stack(&with(&[frame("request", "/srv/app/web.py", 22)]));
    let mut stream = model::live_stream(&rec, 0.1);
    let target = TargetInfo { pid: 4242, command: "python3 main.py".into(), python: "3.12.1".into(), cwd: Some("/srv/app".into()) };
    let ui = UiState::new(0.1, false);

    let interval = 1.0 / rate;
    let block_len = (0.13 * rate).round() as usize;
    let period = (rate / 3.0).round() as usize;
    let total = (minutes * 60.0 * rate) as usize;
    let marks = [1.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0];
    let mut next_mark = 0;
    let mut task_no = 0u64;
    let mut block_task = None;
    println!("rate {rate} Hz, {minutes} minutes of target time; 30 redraws at each mark");
    println!("| minutes | redraw median (p90) ms | samples held | task names held | episodes listed / counted |");
    println!("|---:|---:|---:|---:|---:|");
    for k in 0..total {
        let t = start + k as f64 * interval;
        let in_period = k % period;
        let blocking = in_period < block_len;
        let (state, stack, task, activity, callback) = if blocking {
            if in_period == 0 {
                task_no += 1;
                block_task = Some(rec.tasks.intern_at(format!("Task-{task_no}"), t));
            }
            let id = block_task.unwrap();
            rec.tasks.touch(id, t);
            (LoopState::Callback, blocks[(k / period) % 3], Some(id), ThreadActivity::Waiting(230), Some(k as u64 / period as u64))
        } else if k % 5 == 0 {
            task_no += 1;
            let id = rec.tasks.intern_at(format!("Task-{task_no}"), t);
            (LoopState::Callback, short, Some(id), ThreadActivity::OnCpu, Some(1_000_000 + k as u64))
        } else {
            (LoopState::Idle, idle, None, ThreadActivity::Waiting(232), None)
        };
        let s = Sample {
            t,
            loop_index: 0,
            state,
            activity,
            ready: if blocking { 12 } else { 0 },
            lateness: Some(if blocking { (in_period as f64 * interval) as f32 } else { -0.004 }),
            stack,
            loop_frames: 3,
            callback,
            task,
            busy_for: None,
            gc: loopspy::python::gc::GcAt::Unknown,
        };
        rec.samples.push(s);
        rec.ended = t + interval;
        stream.push(&rec, &s);
        if k % 100 == 0 {
            top::hold(&mut rec);
        }
        let elapsed_min = (k + 1) as f64 * interval / 60.0;
        if next_mark < marks.len() && elapsed_min >= marks[next_mark] {
            let mut times: Vec<f64> = Vec::new();
            let mut m = None;
            for _ in 0..30 {
                let t0 = Instant::now();
                m = Some(model::build(&rec, &stream, &target, &ui, rate, None));
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            let m = m.unwrap();
            println!(
                "| {} | {:.2} ({:.2}) | {} | {} | {} / {} |",
                marks[next_mark],
                times[times.len() / 2],
                times[times.len() * 9 / 10],
                rec.samples.len(),
                rec.tasks.held(),
                m.episodes.len(),
                m.episodes_total
            );
            next_mark += 1;
        }
    }
}
