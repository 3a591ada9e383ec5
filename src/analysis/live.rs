//! Figures kept up to date as samples arrive, for live status lines (the final figures come
//! from [`super::metrics::analyze`]).

use super::metrics::is_busy;
use crate::capture::recording::Sample;

/// Counts blocking episodes as samples arrive, for the live status line (the final figures
/// come from [`super::metrics::analyze`]).
#[derive(Debug, Default)]
pub struct LiveEpisodes {
    threshold: f64,
    run: Option<(f64, Option<u64>, bool)>,
    last_t: Option<f64>,
    pub count: usize,
}

impl LiveEpisodes {
    pub fn new(threshold: f64) -> Self {
        LiveEpisodes { threshold, ..Default::default() }
    }

    pub fn feed(&mut self, s: &Sample) {
        if is_busy(s.state) {
            match &mut self.run {
                Some((start, key, counted)) if *key == s.callback => {
                    if !*counted && s.t - *start >= self.threshold {
                        *counted = true;
                        self.count += 1;
                    }
                }
                _ => {
                    let start = self.last_t.map(|l| (l + s.t) / 2.0).unwrap_or(s.t);
                    self.run = Some((start, s.callback, false));
                }
            }
        } else {
            self.run = None;
        }
        self.last_t = Some(s.t);
    }
}
