//! Training samples and the per-epoch plan of optimizer steps and micro-batches.
//!
//! # Plan of an epoch (deterministic from seed, stage and epoch)
//! The stage's samples are permuted with `util::rng(seed, "train/stage-<s>/epoch-<e>")`. The
//! permutation is cut into windows of `bucket_steps × batch_size × grad_accum` samples; inside a
//! window the samples are sorted by length (ties by index) and cut into micro-batches of
//! `batch_size`, so a micro-batch holds similar lengths and little padding; the window's
//! micro-batches are then shuffled (same stream) and grouped `grad_accum` at a time into
//! optimizer steps. Every sample is used exactly once per epoch; the last micro-batch of a
//! window and the last step of an epoch may be smaller. A resumed run regenerates the same plan
//! and continues at the saved step index.
use crate::error::{Error, Result};
use crate::model::TokenBatch;
use crate::recipe::sample::{permutation, shuffle};

/// One tokenized training (or evaluation) sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub ids: Vec<u32>,
    /// True where token `t` is a target (predicted from position `t − 1`).
    pub mask: Vec<bool>,
    /// Index of the sample's source (or ability, for held-out sets) in the caller's list.
    pub group: usize,
}

impl Sample {
    /// Number of target tokens (masked tokens after the first position).
    pub fn targets(&self) -> usize {
        self.mask.iter().skip(1).filter(|&&m| m).count()
    }
}

/// The micro-batches (sample indices) of one optimizer step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlan {
    pub micro: Vec<Vec<usize>>,
}

/// Batch geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch_size: usize,
    pub grad_accum: usize,
    pub bucket_steps: usize,
}

/// The steps of one epoch over samples of the given `lengths` (see the module docs).
pub fn plan_epoch(
    lengths: &[usize],
    geo: Geometry,
    seed: u64,
    stage: usize,
    epoch: usize,
) -> Vec<StepPlan> {
    let mut rng = crate::util::rng(seed, &format!("train/stage-{stage}/epoch-{epoch}"));
    let order = permutation(lengths.len(), &mut rng);
    let window = geo.batch_size * geo.grad_accum * geo.bucket_steps;
    let mut steps = Vec::new();
    for chunk in order.chunks(window.max(1)) {
        let mut sorted = chunk.to_vec();
        sorted.sort_by_key(|&i| (lengths[i], i));
        let mut micro: Vec<Vec<usize>> = sorted
            .chunks(geo.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        shuffle(&mut micro, &mut rng);
        steps.extend(
            micro
                .chunks(geo.grad_accum)
                .map(|m| StepPlan { micro: m.to_vec() }),
        );
    }
    steps
}

/// Number of steps [`plan_epoch`] gives for `n` samples (without building the plan).
pub fn steps_per_epoch(n: usize, geo: Geometry) -> usize {
    let window = geo.batch_size * geo.grad_accum * geo.bucket_steps;
    let steps_of = |k: usize| k.div_ceil(geo.batch_size).div_ceil(geo.grad_accum);
    (n / window) * steps_of(window) + steps_of(n % window)
}

/// A right-padded micro-batch and its targets.
#[derive(Debug, Clone)]
pub struct MicroBatch {
    pub batch: TokenBatch,
    /// Flat positions `row · T + t − 1` whose logits predict a target token.
    pub positions: Vec<usize>,
    /// The target token ids, aligned with `positions`.
    pub targets: Vec<u32>,
    /// The group of each target (its sample's `group`), aligned with `positions`.
    pub groups: Vec<usize>,
    /// Real (unpadded) tokens in the batch.
    pub tokens: usize,
}

impl MicroBatch {
    /// Pad `samples` (padding id `pad`) and collect their targets.
    pub fn new(samples: &[&Sample], pad: u32) -> Result<MicroBatch> {
        let seqs: Vec<Vec<u32>> = samples.iter().map(|s| s.ids.clone()).collect();
        let batch = TokenBatch::new(&seqs, pad)?;
        let t = batch.seq_len();
        let (mut positions, mut targets, mut groups) = (Vec::new(), Vec::new(), Vec::new());
        for (r, s) in samples.iter().enumerate() {
            if s.mask.len() != s.ids.len() {
                return Err(Error::Internal(format!(
                    "sample has {} ids but {} mask values",
                    s.ids.len(),
                    s.mask.len()
                )));
            }
            for j in 1..s.ids.len() {
                if s.mask[j] {
                    positions.push(r * t + j - 1);
                    targets.push(s.ids[j]);
                    groups.push(s.group);
                }
            }
        }
        let tokens = samples.iter().map(|s| s.ids.len()).sum();
        Ok(MicroBatch {
            batch,
            positions,
            targets,
            groups,
            tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_every_sample_once_and_buckets_lengths() {
        let lengths: Vec<usize> = (0..103).map(|i| (i * 37) % 91 + 2).collect();
        let geo = Geometry {
            batch_size: 4,
            grad_accum: 2,
            bucket_steps: 3,
        };
        let plan = plan_epoch(&lengths, geo, 7, 1, 0);
        assert_eq!(plan.len(), steps_per_epoch(lengths.len(), geo));
        let mut seen: Vec<usize> = plan
            .iter()
            .flat_map(|s| s.micro.iter().flatten().copied())
            .collect();
        seen.sort();
        assert_eq!(seen, (0..103).collect::<Vec<_>>());
        assert!(
            plan.iter()
                .all(|s| s.micro.len() <= 2 && s.micro.iter().all(|m| m.len() <= 4))
        );
        // Same seed/stage/epoch → same plan; another epoch → another order.
        assert_eq!(plan, plan_epoch(&lengths, geo, 7, 1, 0));
        assert_ne!(plan, plan_epoch(&lengths, geo, 7, 1, 1));
        // Bucketing: padding is far below that of the unsorted permutation.
        let pad = |micro: &[usize]| {
            let max = micro.iter().map(|&i| lengths[i]).max().unwrap();
            micro.iter().map(|&i| max - lengths[i]).sum::<usize>()
        };
        let bucketed: usize = plan
            .iter()
            .flat_map(|s| s.micro.iter())
            .map(|m| pad(m))
            .sum();
        let plain = Geometry {
            bucket_steps: 1,
            grad_accum: 1,
            ..geo
        };
        let random: usize = permutation(103, &mut crate::util::rng(7, "x"))
            .chunks(4)
            .map(pad)
            .sum();
        assert!(
            bucketed * 3 < random,
            "bucketed {bucketed} vs random {random}"
        );
        assert_eq!(steps_per_epoch(103, plain), 26);
    }

    #[test]
    fn micro_batch_targets_follow_the_mask() {
        let a = Sample {
            ids: vec![5, 6, 7, 8],
            mask: vec![false, false, true, true],
            group: 0,
        };
        let b = Sample {
            ids: vec![9, 10],
            mask: vec![true, true],
            group: 1,
        };
        let mb = MicroBatch::new(&[&a, &b], 0).unwrap();
        assert_eq!(mb.positions, vec![1, 2, 4]);
        assert_eq!(mb.targets, vec![7, 8, 10]);
        assert_eq!(mb.groups, vec![0, 0, 1]);
        assert_eq!(mb.tokens, 6);
        assert_eq!(a.targets(), 2);
        assert_eq!(b.targets(), 1);
    }
}
