//! GC pauses: the loop stopped while the interpreter collected garbage.
//!
//! Every sample knows whether the interpreter was collecting (`Sample::gc`, read with the
//! loop's figures); an episode most of whose samples were taken while collecting is blamed on
//! the collector (`metrics::GC_FUNCTION`, with the frame it interrupted kept). This
//! diagnosis fires when at least one episode was: how many, how long in all and at most,
//! whether they grew over the recording, and which generation.

use super::{Diagnosis, Evidence, Inputs, Kind};
use crate::analysis::metrics::{Episode, GC_FUNCTION};

/// Pauses grow when the last third's mean is at least this many times the first third's.
const GROWTH: f64 = 1.5;

pub fn diagnose(i: &Inputs) -> Option<Diagnosis> {
    let pauses: Vec<&Episode> = i.summary.episodes.iter().filter(|e| e.function == GC_FUNCTION).collect();
    if pauses.is_empty() {
        return None;
    }
    let n = pauses.len();
    let total: f64 = pauses.iter().map(|e| e.duration_ms).sum();
    let longest = pauses.iter().max_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms)).expect("not empty");
    let mut gens = [0usize; 3];
    for g in pauses.iter().filter_map(|e| e.gc_generation) {
        gens[(g as usize).min(2)] += 1;
    }
    let named: usize = gens.iter().sum();
    let main_gen = (0..3).rev().max_by_key(|g| gens[*g]).filter(|g| gens[*g] > 0);
    let growth = growth(&pauses);

    let mut evidence = vec![
        Evidence::new("pauses", format!("{n} (each >= the episode threshold)")),
        Evidence::new("total", format!("{} ({:.1}% of the recording)", ms(total), 100.0 * total / 1e3 / i.summary.wall_s.max(1e-9))),
        Evidence::new(
            "longest",
            format!(
                "{} ± {} at {:.1} s ({:.0}% of its samples collecting)",
                ms(longest.duration_ms),
                ms(longest.duration_error_ms),
                longest.start_s,
                longest.gc_pct.unwrap_or(0.0)
            ),
        ),
    ];
    if let Some((first, last)) = growth {
        evidence.push(Evidence::new("growth", format!("{} in the first third, {} in the last", ms(first), ms(last))));
    }
    evidence.push(Evidence::new(
        "generation",
        if named == 0 {
            "not told by this interpreter".to_string()
        } else {
            (0..3)
                .rev()
                .filter(|g| gens[*g] > 0)
                .map(|g| format!("{g}: {} pause{}", gens[g], if gens[g] == 1 { "" } else { "s" }))
                .collect::<Vec<_>>()
                .join(", ")
        },
    ));
    if let Some(f) = most_interrupted(&pauses) {
        evidence.push(Evidence::new("interrupted", f));
    }

    let title = format!(
        "GC pauses: the garbage collector stopped the loop {n} time{} for {} in all (longest {}{})",
        if n == 1 { "" } else { "s" },
        ms(total),
        ms(longest.duration_ms),
        main_gen.map(|g| format!(", generation {g}")).unwrap_or_default()
    );
    let next_step = match main_gen {
        Some(0) | Some(1) => "collections of young generations take long: many short-lived objects in reference cycles. Break the cycles \
             (weakref, clearing references when done) or raise the first threshold (gc.set_threshold) so collections come less often"
            .to_string(),
        _ => format!(
            "full collections walk every long-lived container{}: call gc.freeze() once startup is done so that what lives for good \
             leaves the collector, raise gc.set_threshold for the older generations, and find what keeps creating long-lived \
             containers (tracemalloc, or counting gc.get_objects() by type)",
            if growth.is_some() { ", and there are more of them over time" } else { "" }
        ),
    };
    Some(Diagnosis { kind: Kind::GcPauses, loop_index: i.summary.loop_index, title, evidence, next_step })
}

/// The mean pause of the first and the last third, when the pauses grew.
fn growth(pauses: &[&Episode]) -> Option<(f64, f64)> {
    if pauses.len() < 3 {
        return None;
    }
    let third = pauses.len() / 3;
    let mean = |p: &[&Episode]| p.iter().map(|e| e.duration_ms).sum::<f64>() / p.len() as f64;
    let (first, last) = (mean(&pauses[..third]), mean(&pauses[pauses.len() - third..]));
    (last >= GROWTH * first).then_some((first, last))
}

/// The frame the collections interrupted most often (`function (file:line)`).
fn most_interrupted(pauses: &[&Episode]) -> Option<String> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for f in pauses.iter().filter_map(|e| e.gc_interrupted.as_ref()) {
        let key = if f.file.is_empty() { f.function.clone() } else { format!("{} ({}:{})", f.function, f.file, f.line) };
        match seen.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => *c += 1,
            None => seen.push((key, 1)),
        }
    }
    seen.into_iter().max_by_key(|(_, c)| *c).map(|(k, c)| format!("{k}, {c} of {}", pauses.len()))
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1e3)
    } else {
        format!("{v:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::metrics::FrameInfo;

    fn episode(start_s: f64, ms_: f64, gc_pct: Option<f64>, generation: Option<u8>) -> Episode {
        let blamed = gc_pct.is_some_and(|p| p >= 50.0);
        Episode {
            loop_index: 0,
            start: 100.0 + start_s,
            end: 100.0 + start_s + ms_ / 1e3,
            start_s,
            duration_ms: ms_,
            duration_error_ms: 10.0,
            ongoing: false,
            samples: (ms_ / 10.0) as u32,
            function: if blamed { GC_FUNCTION.into() } else { "run".into() },
            file: if blamed { String::new() } else { "app.py".into() },
            line: if blamed { 0 } else { 197 },
            innermost: FrameInfo { function: "run".into(), file: "app.py".into(), line: 197 },
            task: None,
            on_cpu: true,
            waiting_in: None,
            stack: 0,
            gc_pct,
            gc_generation: generation,
            gc_interrupted: blamed.then(|| FrameInfo { function: "run".into(), file: "app.py".into(), line: 197 }),
        }
    }

    fn diagnose_episodes(episodes: Vec<Episode>) -> Option<Diagnosis> {
        let rec = crate::capture::recording::Recording::new(100.0, Vec::new(), 100.0);
        let opts = crate::analysis::stream::StreamOptions::for_recording(&rec, 0.1, 1.0);
        let mut summary = crate::analysis::stream::LoopStream::new(0).summary(&rec, &opts, 0.1, 110.0);
        summary.wall_s = 10.0;
        summary.episodes = episodes;
        diagnose(&Inputs { summary: &summary, rec: &rec, recorded_s: summary.wall_s })
    }

    #[test]
    fn silent_without_gc_episodes() {
        assert!(diagnose_episodes(vec![]).is_none());
        assert!(diagnose_episodes(vec![episode(1.0, 300.0, Some(0.0), None), episode(2.0, 200.0, None, None)]).is_none());
        // A collection inside a long callback is not a GC pause.
        assert!(diagnose_episodes(vec![episode(1.0, 300.0, Some(30.0), Some(2))]).is_none());
    }

    #[test]
    fn growing_full_collections_are_named_with_their_generation() {
        let d = diagnose_episodes(vec![
            episode(1.0, 44.0, Some(100.0), Some(2)),
            episode(3.0, 90.0, Some(100.0), Some(2)),
            episode(5.0, 150.0, Some(90.0), Some(2)),
            episode(7.0, 231.0, Some(100.0), Some(2)),
            episode(8.0, 500.0, Some(0.0), None),
        ])
        .unwrap();
        assert_eq!(d.kind, Kind::GcPauses);
        assert!(d.title.contains("4 times") && d.title.contains("515 ms") && d.title.contains("generation 2"), "{}", d.title);
        let ev = |w: &str| d.evidence.iter().find(|e| e.what == w).map(|e| e.value.clone()).unwrap_or_default();
        assert_eq!(ev("growth"), "44 ms in the first third, 231 ms in the last");
        assert_eq!(ev("generation"), "2: 4 pauses");
        assert_eq!(ev("interrupted"), "run (app.py:197), 4 of 4");
        assert!(d.next_step.contains("gc.freeze()"), "{}", d.next_step);
    }

    #[test]
    fn young_generations_point_at_cycles() {
        let d = diagnose_episodes(vec![episode(1.0, 80.0, Some(100.0), Some(0)), episode(2.0, 70.0, Some(100.0), None)]).unwrap();
        assert!(d.next_step.contains("cycles"), "{}", d.next_step);
        let d = diagnose_episodes(vec![episode(1.0, 80.0, Some(100.0), None)]).unwrap();
        assert!(d.evidence.iter().any(|e| e.value == "not told by this interpreter"));
    }
}
