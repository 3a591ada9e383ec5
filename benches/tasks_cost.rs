//! What reading tasks costs, with 50,000 and 100,000 pending tasks, on every interpreter.
//!
//!     cargo bench --bench tasks_cost [-- RUNS]
//!
//! For each: the median time of counting every task (`tasks::enumerate`: registry walk plus
//! the batched state reads), and the wall time and peak memory (max RSS) of a whole
//! `loopspy dump --json` (which describes 1000 tasks and counts all), measured by the
//! kernel for the child process. A benchmark: it asserts nothing about time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{interpreters, loopspy_bin, Scenario};
use loopspy::python::target::{AttachOptions, Target};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Wall time (ms) and max RSS (MB) of a loopspy run.
fn run_measured(args: &[&str]) -> (f64, f64) {
    let t = Instant::now();
    // Reaped by wait4 below (for its rusage), not by Child::wait.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(loopspy_bin()).args(args).stdout(std::process::Stdio::null()).spawn().unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain wait4 on our own child with valid out-pointers.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    (t.elapsed().as_secs_f64() * 1e3, usage.ru_maxrss as f64 / 1024.0)
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(15);
    println!("| Python | tasks | count all (median ms) | dump --json (ms) | dump peak RSS (MB) |");
    println!("|---|---|---|---|---|");
    for v in loopspy::python::layout::SUPPORTED {
        let Some(interp) = interpreters().get(&v.to_string()) else {
            eprintln!("skipped {v}: not installed");
            continue;
        };
        for n in [50_000usize, 100_000] {
            let scenario = Scenario::start(interp, "many_tasks.py", &["--tasks", &n.to_string()]);
            let target = Target::attach(scenario.pid(), AttachOptions::default()).unwrap();
            let tids = loopspy::process::procfs::task_ids(scenario.pid()).unwrap();
            let threads = loopspy::python::interp::threads(&target.reader, target.interp, &tids).unwrap();
            let mut times = Vec::new();
            let mut counted = 0;
            for _ in 0..runs {
                let t = Instant::now();
                let set = loopspy::asyncio::tasks::enumerate(&target.reader, target.interp, &threads).unwrap();
                times.push(t.elapsed().as_secs_f64() * 1e3);
                counted = set.tasks.len();
            }
            assert!(counted >= n, "counted {counted} of {n}");
            let pid = scenario.pid().to_string();
            let (wall, rss) = run_measured(&["dump", "--json", "--pid", &pid]);
            println!("| {v} | {n} | {:.1} | {wall:.0} | {rss:.1} |", median(times));
        }
    }
}
