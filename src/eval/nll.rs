//! Held-out negative log-likelihood per ability, computed exactly as the trainer computes
//! `forgetting.json` (the same tokenization, loss mask and [`crate::train::step::evaluate`]):
//! the mean NLL (nats) per assistant token of examples the model is scored on.
use crate::data::tokenize::ChatTokenizer;
use crate::data::{Ability, Example};
use crate::error::Result;
use crate::model::Llama;
use crate::train::batch::Sample;
use crate::train::step::evaluate;
use burn::tensor::backend::Backend;
use serde::Serialize;

/// The NLL of one ability's examples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbilityNll {
    pub ability: Ability,
    /// Mean NLL per target token (None when no example had a target token).
    pub nll: Option<f64>,
    /// Examples given.
    pub examples: usize,
    /// Examples scored (the others had no assistant token within `max_len`, counted here).
    pub scored: usize,
    pub dropped: usize,
    /// Target tokens scored.
    pub targets: usize,
}

/// Mean NLL per assistant token of each ability's examples (truncated to `max_len` tokens),
/// `batch_size` sequences at a time.
pub fn heldout_nll<B: Backend>(
    model: &Llama<B>,
    tokenizer: &ChatTokenizer,
    sets: &[(Ability, Vec<Example>)],
    max_len: usize,
    batch_size: usize,
) -> Result<Vec<AbilityNll>> {
    let mut samples = Vec::new();
    let mut counts = Vec::with_capacity(sets.len());
    for (group, (_, examples)) in sets.iter().enumerate() {
        let (tokenized, stats) = tokenizer.encode_examples(examples, max_len)?;
        let kept: Vec<Sample> = tokenized
            .into_iter()
            .map(|t| Sample {
                ids: t.input_ids,
                mask: t.loss_mask,
                group,
            })
            .filter(|s| s.targets() > 0)
            .collect();
        counts.push((stats.examples, kept.len()));
        samples.extend(kept);
    }
    let sums = if samples.is_empty() {
        vec![(0.0, 0); sets.len()]
    } else {
        evaluate(model, &samples, batch_size, sets.len())?
    };
    Ok(sets
        .iter()
        .zip(counts)
        .zip(sums)
        .map(
            |(((ability, _), (examples, scored)), (sum, n))| AbilityNll {
                ability: *ability,
                nll: (n > 0).then(|| sum / n as f64),
                examples,
                scored,
                dropped: examples - scored,
                targets: n,
            },
        )
        .collect())
}
