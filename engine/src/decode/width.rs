//! [`AdaptiveWidth`]: how many draft tokens to verify in the next step.
//!
//! The model: a step that verifies `k` draft tokens costs
//! `c(k) = base + per_token * k` and emits `E(k) = 1 + α + α² + … + α^k =
//! (1 - α^(k+1)) / (1 - α)` tokens on average, if each draft token is
//! accepted with probability `α` once its predecessors were. The width is
//! the `k` that maximizes tokens per unit of time, `E(k) / c(k)`.
//!
//! - `α` comes from recent steps: decayed counts of accepted draft tokens
//!   and of rejections (a step whose draft was not accepted whole counts
//!   one), with one pseudo-count of each as a prior.
//! - `base` and `per_token` are a decayed least-squares fit of measured
//!   forward times against `k`, so the backend's real cost shape decides:
//!   flat up to large `k` on a GPU, growing on the CPU. Until two different
//!   widths have been measured the slope is assumed to be `base / 32` (a
//!   32-wide step costs two single-token steps).
//!
//! With a flat cost and a reference that keeps matching, `α` approaches 1
//! and the width grows to hundreds of tokens; after rejections it shrinks.

use std::time::Duration;

/// Default upper bound on the width.
pub const DEFAULT_MAX_WIDTH: usize = 512;

/// Weight of the previous steps' evidence at each new step.
const DECAY: f64 = 0.9;

/// Assumed `base / per_token` until the slope has been measured.
const PRIOR_RATIO: f64 = 32.0;

/// Chooses the draft width of each step from recent acceptance and the
/// measured cost of a step.
#[derive(Debug, Clone)]
pub struct AdaptiveWidth {
    max_width: usize,
    /// Decayed count of accepted draft tokens.
    accepted: f64,
    /// Decayed count of steps whose draft was cut by a rejection.
    rejected: f64,
    /// Decayed sums of the cost fit: weight, k, seconds, k², k·seconds.
    sw: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
}

impl AdaptiveWidth {
    /// A policy that never proposes more than `max_width` (at least 1)
    /// tokens.
    pub fn new(max_width: usize) -> Self {
        Self {
            max_width: max_width.max(1),
            accepted: 0.0,
            rejected: 0.0,
            sw: 0.0,
            sx: 0.0,
            sy: 0.0,
            sxx: 0.0,
            sxy: 0.0,
        }
    }

    pub fn max_width(&self) -> usize {
        self.max_width
    }

    /// Estimated probability that a draft token is accepted after its
    /// predecessors were.
    pub fn acceptance(&self) -> f64 {
        (self.accepted + 1.0) / (self.accepted + self.rejected + 2.0)
    }

    /// `(base, per_token)` of the cost model, in seconds (relative units
    /// before any measurement).
    pub fn cost_model(&self) -> (f64, f64) {
        if self.sw <= 0.0 {
            return (PRIOR_RATIO, 1.0);
        }
        let (mean_x, mean_y) = (self.sx / self.sw, self.sy / self.sw);
        let var_x = self.sxx / self.sw - mean_x * mean_x;
        let slope = if var_x >= 1.0 {
            ((self.sxy / self.sw - mean_x * mean_y) / var_x).max(0.0)
        } else {
            mean_y / (PRIOR_RATIO + mean_x)
        };
        let base = (mean_y - slope * mean_x).max(mean_y * 1e-3).max(f64::MIN_POSITIVE);
        (base, slope)
    }

    /// The width of the next step: the `k` in `1..=max_width` with the most
    /// expected tokens per unit of time.
    pub fn choose(&self) -> usize {
        let alpha = self.acceptance();
        let (base, per_token) = self.cost_model();
        let mut best = (1, 0.0);
        let mut k = 1usize;
        while k <= self.max_width {
            let expected = (1.0 - alpha.powi(k as i32 + 1)) / (1.0 - alpha);
            let rate = expected / (base + per_token * k as f64);
            if rate > best.1 {
                best = (k, rate);
            }
            // Candidates 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 18, ...: about 20% apart.
            k = (k + 1).max(k + k / 5);
        }
        best.0
    }

    /// Records a step that verified `drafted` tokens, accepted `accepted`
    /// of them and took `forward` in the forward pass.
    pub fn observe(&mut self, drafted: usize, accepted: usize, forward: Duration) {
        let (x, y) = (drafted as f64, forward.as_secs_f64());
        self.sw = DECAY * self.sw + 1.0;
        self.sx = DECAY * self.sx + x;
        self.sy = DECAY * self.sy + y;
        self.sxx = DECAY * self.sxx + x * x;
        self.sxy = DECAY * self.sxy + x * y;
        if drafted > 0 {
            self.accepted = DECAY * self.accepted + accepted as f64;
            self.rejected = DECAY * self.rejected + f64::from(u8::from(accepted < drafted));
        }
    }
}

impl Default for AdaptiveWidth {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_WIDTH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(width: &mut AdaptiveWidth, steps: usize, cost: impl Fn(usize) -> f64, accept: impl Fn(usize) -> usize) {
        for _ in 0..steps {
            let k = width.choose();
            width.observe(k, accept(k), Duration::from_secs_f64(cost(k)));
        }
    }

    #[test]
    fn grows_to_hundreds_when_every_draft_is_accepted_at_flat_cost() {
        let mut width = AdaptiveWidth::new(512);
        assert!(width.choose() <= 4, "cautious before any evidence");
        run(&mut width, 40, |k| 0.05 + 1e-5 * k as f64, |k| k);
        assert!(width.choose() >= 256, "width {}", width.choose());
    }

    #[test]
    fn stays_narrow_when_drafts_are_rejected() {
        let mut width = AdaptiveWidth::new(512);
        run(&mut width, 40, |k| 0.05 + 1e-3 * k as f64, |_| 0);
        assert!(width.choose() <= 2, "width {}", width.choose());
    }

    #[test]
    fn a_steep_cost_keeps_the_width_moderate() {
        // Each draft token costs as much as the step itself.
        let (mut flat, mut steep) = (AdaptiveWidth::new(512), AdaptiveWidth::new(512));
        run(&mut flat, 40, |k| 0.05 + 1e-5 * k as f64, |k| k * 9 / 10);
        run(&mut steep, 40, |k| 0.05 * (1 + k) as f64, |k| k * 9 / 10);
        assert!(steep.choose() < flat.choose(), "steep {} flat {}", steep.choose(), flat.choose());
        assert!(steep.choose() <= 4, "steep {}", steep.choose());
    }

    #[test]
    fn never_exceeds_the_maximum() {
        let mut width = AdaptiveWidth::new(7);
        run(&mut width, 40, |_| 0.05, |k| k);
        assert_eq!(width.choose(), 7);
    }
}
