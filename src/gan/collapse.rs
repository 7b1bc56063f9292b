//! Telling a collapsed run from one that learns, while it trains.
//!
//! A GAN has collapsed when D rejects every generated image (D(G(z)) near 0) and G draws the same
//! picture whatever z is. Both are watched at every loss row: D(G(z)) from the step, and the
//! *spread* of G's images for the trainer's fixed z (the per-pixel standard deviation across the
//! images, averaged over pixels) as a share of the same spread over real training images. A
//! collapse is a stretch of rows, spanning at least `min_steps`, where D(G(z)) stays under
//! `d_fake_below` and the spread under `spread_below` of the real one; it ends (a recovery) at
//! the first row where either is back above. The trainer logs both moments, and the run's summary
//! says whether the run ended collapsed.

use serde::Serialize;
use tch::{Kind, Tensor};

/// The thresholds (chosen on the digits demo's runs: docs/train.md#collapse).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CollapseCriteria {
    pub d_fake_below: f64,
    pub spread_below: f64,
    pub min_steps: u64,
}

impl Default for CollapseCriteria {
    fn default() -> Self {
        Self { d_fake_below: 0.05, spread_below: 0.25, min_steps: 200 }
    }
}

/// One stretch of collapse: from its first row's step to the step where it recovered (None: still
/// collapsed at the end of the run).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CollapseEpisode {
    pub from_step: u64,
    pub recovered_at_step: Option<u64>,
}

/// What summary.json says about collapse (`report.collapse`).
#[derive(Debug, Clone, Serialize)]
pub struct CollapseReport {
    /// The run ended inside a collapse: its samples are not to be trusted.
    pub collapsed_at_end: bool,
    /// Every collapse of this invocation (a resumed run starts watching afresh).
    pub episodes: Vec<CollapseEpisode>,
    /// The spread of G's fixed-z images as a share of the real images' at the last row.
    pub last_spread: Option<f64>,
    pub last_d_fake: Option<f64>,
    /// The real images' spread (pixels in [-1, 1]).
    pub real_spread: f64,
    pub criteria: CollapseCriteria,
    /// One line for people: what happened.
    pub verdict: String,
}

/// The per-pixel standard deviation across a batch (N x C x H x W), averaged over pixels.
pub fn spread(images: &Tensor) -> f64 {
    if images.size()[0] < 2 {
        return 0.0;
    }
    let std = images.to_kind(Kind::Float).std_dim([0i64].as_slice(), true, false);
    f64::try_from(std.mean(Kind::Float)).unwrap_or(f64::NAN)
}

/// Watches the loss rows of a run.
#[derive(Debug, Clone)]
pub struct CollapseMonitor {
    criteria: CollapseCriteria,
    real_spread: f64,
    /// First step of the current stretch of suspect rows, if in one.
    suspect_since: Option<u64>,
    episodes: Vec<CollapseEpisode>,
    last: Option<(f64, f64)>,
}

impl CollapseMonitor {
    /// `real`: a batch of training images as the networks take them.
    pub fn new(real: &Tensor, criteria: CollapseCriteria) -> Self {
        Self { criteria, real_spread: spread(real), suspect_since: None, episodes: Vec::new(), last: None }
    }

    fn in_collapse(&self) -> bool {
        self.episodes.last().is_some_and(|e| e.recovered_at_step.is_none())
    }

    /// One loss row: D(G(z)) at `step` and G's images for the fixed z. Returns a line for the log
    /// when a collapse is found or ends.
    pub fn observe(&mut self, step: u64, d_fake: f64, samples: &Tensor) -> Option<String> {
        let share = spread(samples) / self.real_spread.max(1e-12);
        self.last = Some((share, d_fake));
        let c = self.criteria;
        let suspect = d_fake < c.d_fake_below && share < c.spread_below;
        if !suspect {
            self.suspect_since = None;
            if self.in_collapse() {
                self.episodes.last_mut().expect("in one").recovered_at_step = Some(step);
                return Some(format!("collapse: recovered at step {step} (D(G(z)) {d_fake:.3}, samples spread {:.0}% of the real images')", 100.0 * share));
            }
            return None;
        }
        let since = *self.suspect_since.get_or_insert(step);
        if !self.in_collapse() && step - since >= c.min_steps {
            self.episodes.push(CollapseEpisode { from_step: since, recovered_at_step: None });
            return Some(format!(
                "warning: collapse: since step {since}, D(G(z)) < {} and G's samples spread {:.0}% of the real images' (below {:.0}%): every z gives much the same picture",
                c.d_fake_below,
                100.0 * share,
                100.0 * c.spread_below
            ));
        }
        None
    }

    pub fn report(&self) -> CollapseReport {
        let collapsed_at_end = self.in_collapse();
        let verdict = match (collapsed_at_end, self.episodes.len()) {
            (true, _) => format!(
                "COLLAPSED since step {}: D(G(z)) < {} and the samples barely change with z; do not trust them (try another preset, width or seed)",
                self.episodes.last().expect("in one").from_step,
                self.criteria.d_fake_below
            ),
            (false, 0) => "no collapse seen".to_string(),
            (false, n) => format!(
                "recovered from {n} collapse{} (the last from step {} to {})",
                if n == 1 { "" } else { "s" },
                self.episodes[n - 1].from_step,
                self.episodes[n - 1].recovered_at_step.unwrap_or(0)
            ),
        };
        CollapseReport {
            collapsed_at_end,
            episodes: self.episodes.clone(),
            last_spread: self.last.map(|l| l.0),
            last_d_fake: self.last.map(|l| l.1),
            real_spread: self.real_spread,
            criteria: self.criteria,
            verdict,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn varied(n: i64) -> Tensor {
        tch::manual_seed(1);
        Tensor::rand([n, 3, 8, 8], (Kind::Float, Device::Cpu)) * 2.0 - 1.0
    }

    fn same(n: i64) -> Tensor {
        varied(1).repeat([n, 1, 1, 1])
    }

    #[test]
    fn identical_samples_with_d_winning_for_long_are_a_collapse_and_its_end_a_recovery() {
        let mut m = CollapseMonitor::new(&varied(64), CollapseCriteria::default());
        assert!(m.observe(10, 0.01, &same(16)).is_none());
        assert!(m.observe(100, 0.01, &same(16)).is_none(), "not long enough yet");
        let line = m.observe(210, 0.01, &same(16)).expect("found");
        assert!(line.contains("since step 10"), "{line}");
        assert!(m.report().collapsed_at_end && m.report().verdict.starts_with("COLLAPSED"));
        assert!(m.observe(300, 0.2, &varied(16)).unwrap().contains("recovered at step 300"));
        let r = m.report();
        assert!(!r.collapsed_at_end);
        assert_eq!(r.episodes, vec![CollapseEpisode { from_step: 10, recovered_at_step: Some(300) }]);
    }

    #[test]
    fn d_winning_alone_or_similar_samples_alone_are_not_a_collapse() {
        let mut m = CollapseMonitor::new(&varied(64), CollapseCriteria::default());
        for step in (10..1000).step_by(10) {
            assert!(m.observe(step, 0.001, &varied(16)).is_none(), "varied samples");
        }
        let mut m = CollapseMonitor::new(&varied(64), CollapseCriteria::default());
        for step in (10..1000).step_by(10) {
            assert!(m.observe(step, 0.3, &same(16)).is_none(), "D fooled");
        }
        assert_eq!(m.report().verdict, "no collapse seen");
    }
}
