//! What one `dump` look costs, beside py-spy's own `get_stack_traces()` on the same target.
//!
//!     cargo bench --bench dump_cost [-- ITERATIONS]
//!
//! For every interpreter present, starts the `blocked_callback` and `idle` ground-truth
//! targets, attaches once (non-blocking), then times many `Looker::look` calls (which include
//! a py-spy stack read of every thread) and many bare `get_stack_traces()` calls,
//! interleaved so that both see the same machine load. Prints medians and p90s in µs.
//! This is a benchmark, not a test: it asserts nothing about time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{interpreters, Scenario};
use loopspy::capture::snapshot::Looker;
use loopspy::python::target::{AttachOptions, Target};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let iterations: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    println!("| Python | target | loopspy look median (p90) µs | py-spy get_stack_traces median (p90) µs | ratio |");
    println!("|---|---|---|---|---|");
    for v in loopspy::python::layout::SUPPORTED {
        let Some(interp) = interpreters().get(&v.to_string()) else {
            eprintln!("skipped {v}: not installed");
            continue;
        };
        for script in ["blocked_callback.py", "idle.py"] {
            let scenario = Scenario::start(interp, script, &[]);
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut target = Target::attach(scenario.pid(), AttachOptions::default()).expect("attach");
            let mut looker = Looker::new();
            for _ in 0..50 {
                looker.look(&mut target).expect("look");
                target.spy.as_mut().expect("py-spy attached").get_stack_traces().expect("stacks");
            }
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for _ in 0..iterations {
                let t = Instant::now();
                let view = looker.look(&mut target).expect("look");
                ours.push(t.elapsed().as_secs_f64() * 1e6);
                assert_eq!(view.loops.len(), 1);
                let t = Instant::now();
                target.spy.as_mut().expect("py-spy attached").get_stack_traces().expect("stacks");
                theirs.push(t.elapsed().as_secs_f64() * 1e6);
            }
            ours.sort_by(f64::total_cmp);
            theirs.sort_by(f64::total_cmp);
            let (m1, m2) = (percentile(&ours, 0.5), percentile(&theirs, 0.5));
            println!(
                "| {v} | {} | {m1:.0} ({:.0}) | {m2:.0} ({:.0}) | {:.2}x |",
                script.trim_end_matches(".py"),
                percentile(&ours, 0.9),
                percentile(&theirs, 0.9),
                m1 / m2
            );
        }
    }
}
