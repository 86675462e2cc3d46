//! Learning-rate schedule of a stage: linear warmup, then cosine decay.
use serde::{Deserialize, Serialize};

/// Linear warmup over `warmup` steps to `peak`, then cosine decay to `min_ratio × peak` at the
/// last step. Steps are 0-based: step `s < warmup` uses `peak · (s + 1) / warmup` (so the first
/// step already moves the weights), step `s ≥ warmup` uses
/// `min + (peak − min) · ½ (1 + cos(π (s − warmup) / (total − warmup)))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub peak: f64,
    pub min_ratio: f64,
    pub warmup: usize,
    pub total: usize,
}

impl LrSchedule {
    /// A schedule of `total` steps whose warmup is `ceil(warmup_ratio · total)` steps.
    pub fn new(peak: f64, warmup_ratio: f64, min_ratio: f64, total: usize) -> LrSchedule {
        let warmup = ((warmup_ratio * total as f64).ceil() as usize).min(total);
        LrSchedule {
            peak,
            min_ratio,
            warmup,
            total,
        }
    }

    /// The learning rate of 0-based step `s`.
    pub fn lr(&self, s: usize) -> f64 {
        if s < self.warmup {
            return self.peak * (s + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((s - self.warmup) as f64 / span as f64).min(1.0);
        let min = self.peak * self.min_ratio;
        min + (self.peak - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = LrSchedule::new(1.0, 0.03, 0.0, 100);
        assert_eq!(s.warmup, 3);
        assert!((s.lr(0) - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.lr(2) - 1.0).abs() < 1e-12);
        assert!((s.lr(3) - 1.0).abs() < 1e-12);
        // Halfway through the decay the cosine is at half the peak.
        let mid = 3 + 97 / 2;
        let expect = 0.5 * (1.0 + (std::f64::consts::PI * (mid - 3) as f64 / 97.0).cos());
        assert!((s.lr(mid) - expect).abs() < 1e-12);
        assert!(s.lr(99) > 0.0 && s.lr(99) < 0.01);
        let floor = LrSchedule::new(1.0, 0.0, 0.1, 10);
        assert_eq!(floor.warmup, 0);
        assert!((floor.lr(0) - 1.0).abs() < 1e-12);
        assert!(floor.lr(9) > 0.1);
    }
}
