//! The loss of a micro-batch and the gradients of one optimizer step.
//!
//! The loss is next-token cross-entropy on the target tokens only (the data layer's loss mask),
//! averaged per target token over the whole optimizer step: with micro-batches `k` and target
//! sets `T_k`, `loss = Σ_k Σ_{t∈T_k} nll_t / Σ_k |T_k|`; each micro-batch back-propagates its
//! share `Σ_{t∈T_k} nll_t / Σ_k |T_k|` and the gradients are summed.
//!
//! The lm head is applied only at the positions that predict a target (the rows are picked
//! from the final-normed states before the vocabulary projection), which gives the same loss
//! and gradients as full logits while skipping the prompt's and padding's share of the largest
//! matrix product.
use super::batch::{MicroBatch, Sample};
use crate::error::{Error, Result};
use crate::model::{CpuAutodiff, ForwardOptions, Llama, ParamView};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData, activation};
use std::any::Any;

/// What one optimizer step saw.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// Mean negative log-likelihood per target token.
    pub loss: f64,
    /// Target tokens.
    pub targets: usize,
    /// Real (unpadded) input tokens.
    pub tokens: usize,
    /// Per group (source): summed NLL and target count.
    pub by_group: Vec<(f64, usize)>,
}

impl StepStats {
    /// Empty statistics of an optimizer step over `micro` (`n_groups` bounds the samples'
    /// groups); an error when the step has no target tokens.
    pub(crate) fn start(micro: &[MicroBatch], n_groups: usize) -> Result<StepStats> {
        let targets: usize = micro.iter().map(|m| m.positions.len()).sum();
        if targets == 0 {
            return Err(Error::invalid(
                "batch",
                "the optimizer step has no target tokens",
            ));
        }
        Ok(StepStats {
            loss: 0.0,
            targets,
            tokens: 0,
            by_group: vec![(0.0, 0); n_groups],
        })
    }

    /// Add one micro-batch's per-target NLL (`values`, one per entry of `groups`); `loss` holds
    /// the running sum until [`StepStats::finish`].
    pub(crate) fn add(&mut self, groups: &[usize], values: &[f32]) -> Result<()> {
        let n_groups = self.by_group.len();
        for (&g, &x) in groups.iter().zip(values) {
            let slot = self
                .by_group
                .get_mut(g)
                .ok_or_else(|| Error::Internal(format!("sample group {g} ≥ {n_groups}")))?;
            slot.0 += x as f64;
            slot.1 += 1;
            self.loss += x as f64;
        }
        Ok(())
    }

    /// The statistics with `loss` as the mean NLL per target token.
    pub(crate) fn finish(mut self) -> StepStats {
        self.loss /= self.targets as f64;
        self
    }
}

/// Negative log-likelihood of every target of `mb`, in `mb.positions` order (`[N]`).
pub fn target_nll<B: Backend>(model: &Llama<B>, mb: &MicroBatch) -> Result<Tensor<B, 1>> {
    let n = mb.positions.len();
    if n == 0 {
        return Err(Error::invalid("batch", "it has no target tokens"));
    }
    let opts = ForwardOptions {
        final_norm: true,
        ..ForwardOptions::default()
    };
    let out = model.forward(&mb.batch, &opts)?;
    let top = out.final_norm.ok_or_else(|| {
        Error::Internal("the forward pass returned no final-normed states".into())
    })?;
    let [b, t, d] = top.dims();
    let device = top.device();
    let idx: Tensor<B, 1, Int> = Tensor::from_data(
        TensorData::new(mb.positions.iter().map(|&p| p as i64).collect(), [n]),
        &device,
    );
    let rows = top.reshape([b * t, d]).select(0, idx);
    let logits = head(model, rows)?;
    let targets: Tensor<B, 2, Int> = Tensor::from_data(
        TensorData::new(mb.targets.iter().map(|&x| x as i64).collect(), [n, 1]),
        &device,
    );
    let logp = activation::log_softmax(logits, 1);
    Ok(logp.gather(1, targets).reshape([n]).neg())
}

/// The vocabulary projection of `rows` (`[N, d]` → `[N, vocab]`): the lm head, or the token
/// embedding when tied.
fn head<B: Backend>(model: &Llama<B>, rows: Tensor<B, 2>) -> Result<Tensor<B, 2>> {
    let tied = model.config().tie_word_embeddings;
    let wanted = if tied {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    let view = model
        .named_params()
        .into_iter()
        .find_map(|(name, view)| (name == wanted).then_some(view))
        .ok_or_else(|| Error::Internal(format!("the model has no {wanted}")))?;
    match view {
        // [vocab, d]: rows · Eᵀ.
        ParamView::Embedding(e) => Ok(rows.matmul(e.val().transpose())),
        // Stored [d, vocab].
        ParamView::Linear(w) => Ok(rows.matmul(w.val())),
        ParamView::Vector(_) => Err(Error::Internal(format!("{wanted} is a vector"))),
    }
}

/// Set this environment variable (to anything) to make [`accumulate`] take burn's autodiff
/// graph ([`accumulate_generic`]) even where the CPU fast path applies.
pub const FORCE_GENERIC_ENV: &str = "MIXPROBE_TRAIN_GENERIC";

/// Forward and backward over the micro-batches of one optimizer step; returns the summed
/// gradients of the per-token mean loss and the step's statistics. `n_groups` bounds the
/// samples' `group` values.
///
/// On [`crate::model::CpuAutodiff`] this runs the CPU fast path ([`super::fast::accumulate`]),
/// which computes the same function by hand, unless [`FORCE_GENERIC_ENV`] is set; elsewhere it
/// runs [`accumulate_generic`].
pub fn accumulate<B: AutodiffBackend>(
    model: &Llama<B>,
    micro: &[MicroBatch],
    n_groups: usize,
) -> Result<(GradientsParams, StepStats)> {
    if std::env::var_os(FORCE_GENERIC_ENV).is_none()
        && let Some(cpu) = (model as &dyn Any).downcast_ref::<Llama<CpuAutodiff>>()
    {
        return super::fast::accumulate(cpu, micro, n_groups);
    }
    accumulate_generic(model, micro, n_groups)
}

/// [`accumulate`] through burn's autodiff graph on any backend (the reference for the fast path).
pub fn accumulate_generic<B: AutodiffBackend>(
    model: &Llama<B>,
    micro: &[MicroBatch],
    n_groups: usize,
) -> Result<(GradientsParams, StepStats)> {
    let mut stats = StepStats::start(micro, n_groups)?;
    let total = stats.targets;
    let mut acc = GradientsAccumulator::<Llama<B>>::new();
    for mb in micro {
        stats.tokens += mb.tokens;
        if mb.positions.is_empty() {
            continue;
        }
        let nll = target_nll(model, mb)?;
        let values = host_values(nll.clone().inner());
        stats.add(&mb.groups, &values)?;
        let loss = nll.sum().div_scalar(total as f64);
        let grads = loss.backward();
        acc.accumulate(model, GradientsParams::from_grads(grads, model));
    }
    Ok((acc.grads(), stats.finish()))
}

/// Summed NLL and target count per group of `samples` under `model` (no gradients), batched
/// `batch_size` at a time in length order.
pub fn evaluate<B: Backend>(
    model: &Llama<B>,
    samples: &[Sample],
    batch_size: usize,
    n_groups: usize,
) -> Result<Vec<(f64, usize)>> {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_by_key(|&i| (samples[i].ids.len(), i));
    let mut out = vec![(0.0f64, 0usize); n_groups];
    for chunk in order.chunks(batch_size.max(1)) {
        let picked: Vec<&Sample> = chunk.iter().map(|&i| &samples[i]).collect();
        let mb = MicroBatch::new(&picked, 0)?;
        if mb.positions.is_empty() {
            continue;
        }
        let values = host_values(target_nll(model, &mb)?);
        for (&g, &x) in mb.groups.iter().zip(&values) {
            let slot = out
                .get_mut(g)
                .ok_or_else(|| Error::Internal(format!("sample group {g} ≥ {n_groups}")))?;
            slot.0 += x as f64;
            slot.1 += 1;
        }
    }
    Ok(out)
}

fn host_values<B: Backend>(t: Tensor<B, 1>) -> Vec<f32> {
    crate::model::HostTensor::from_tensor(t).data
}
