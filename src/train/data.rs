//! From a composition to training samples: the tokenizer (given, from the model directory, or
//! a byte-level BPE trained on the recipe's stages), each stage's samples labelled with their
//! source, and the held-out samples grouped by ability.
use super::batch::Sample;
use crate::data::bpe::train_bpe;
use crate::data::template::ChatTemplate;
use crate::data::tokenize::{ChatTokenizer, TokenizeStats, Tokenized};
use crate::data::{Ability, Example};
use crate::error::{Error, Result};
use crate::recipe::Composition;
use serde::Serialize;
use std::collections::HashMap;

/// One stage's training samples.
#[derive(Debug, Clone)]
pub struct StageData {
    pub name: String,
    /// Epochs from the recipe.
    pub epochs: u32,
    pub samples: Vec<Sample>,
    pub stats: TokenizeStats,
}

/// Held-out samples, grouped by ability.
#[derive(Debug, Clone)]
pub struct HeldOutData {
    /// The abilities present, in `Ability::ALL` order; a sample's `group` indexes this list.
    pub abilities: Vec<Ability>,
    pub samples: Vec<Sample>,
    /// Per ability: examples evaluated and their target tokens.
    pub counts: Vec<HeldOutCount>,
}

/// Size of one ability's held-out set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HeldOutCount {
    pub examples: usize,
    pub targets: usize,
}

/// Everything a run trains and evaluates on.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The recipe's sources; a training sample's `group` indexes this list.
    pub sources: Vec<String>,
    pub stages: Vec<StageData>,
    pub heldout: HeldOutData,
}

/// Train a byte-level BPE tokenizer of `vocab_size` tokens on every stage's examples rendered
/// with `template` (its special tokens first).
pub fn train_tokenizer(
    comp: &Composition,
    template: ChatTemplate,
    vocab_size: usize,
) -> Result<tokenizers::Tokenizer> {
    let texts = comp
        .stages
        .iter()
        .flatten()
        .map(|e| template.render_text(&e.turns));
    train_bpe(texts, vocab_size, template.special_tokens())
}

/// Tokenize the composition: stage samples (truncated to `max_len`, labelled by source) and
/// held-out samples (at most `eval_limit` per ability, in held-out order).
pub fn prepare(
    comp: &Composition,
    tok: &ChatTokenizer,
    max_len: usize,
    eval_limit: Option<usize>,
) -> Result<RunData> {
    let sources: Vec<String> = comp.manifest.sources.keys().cloned().collect();
    let index: HashMap<&str, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut stages = Vec::with_capacity(comp.stages.len());
    for (info, examples) in comp.manifest.stages.iter().zip(&comp.stages) {
        // Which source each example id came from (with multiplicity, should two sources share ids).
        let mut owner: HashMap<&str, Vec<usize>> = HashMap::new();
        for (src, part) in &info.sources {
            let g = *index.get(src.as_str()).ok_or_else(|| {
                Error::Internal(format!("stage {} names undeclared source {src}", info.name))
            })?;
            for id in &part.ids {
                owner.entry(id.as_str()).or_default().push(g);
            }
        }
        let (tokenized, stats) = tok.encode_examples(examples, max_len)?;
        let mut samples = Vec::with_capacity(tokenized.len());
        for t in tokenized {
            let group = owner
                .get_mut(t.id.as_str())
                .and_then(Vec::pop)
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "example {} of stage {} is in no source's id list",
                        t.id, info.name
                    ))
                })?;
            samples.push(to_sample(t, group));
        }
        samples.retain(|s| s.targets() > 0);
        if samples.is_empty() {
            return Err(Error::invalid(
                format!("stage {} ({})", info.index, info.name),
                format!(
                    "no trainable example left after tokenizing its {} examples at max length {max_len} \
                     ({} without an assistant turn, {} with no assistant token inside the first {max_len} tokens)",
                    stats.examples, stats.dropped_no_assistant, stats.dropped_truncated
                ),
            ));
        }
        stages.push(StageData {
            name: info.name.clone(),
            epochs: info.epochs,
            samples,
            stats,
        });
    }
    let heldout = prepare_heldout(comp, tok, max_len, eval_limit)?;
    Ok(RunData {
        sources,
        stages,
        heldout,
    })
}

fn prepare_heldout(
    comp: &Composition,
    tok: &ChatTokenizer,
    max_len: usize,
    eval_limit: Option<usize>,
) -> Result<HeldOutData> {
    let mut by_ability: Vec<(Ability, Vec<Example>)> =
        Ability::ALL.iter().map(|&a| (a, Vec::new())).collect();
    for examples in comp.heldout.values() {
        for ex in examples {
            if let Some((_, list)) = by_ability.iter_mut().find(|(a, _)| *a == ex.ability) {
                list.push(ex.clone());
            }
        }
    }
    let mut abilities = Vec::new();
    let mut samples = Vec::new();
    let mut counts = Vec::new();
    for (ability, mut examples) in by_ability {
        if let Some(limit) = eval_limit {
            examples.truncate(limit);
        }
        let (tokenized, _) = tok.encode_examples(&examples, max_len)?;
        let group = abilities.len();
        let kept: Vec<Sample> = tokenized
            .into_iter()
            .map(|t| to_sample(t, group))
            .filter(|s| s.targets() > 0)
            .collect();
        if kept.is_empty() {
            continue;
        }
        counts.push(HeldOutCount {
            examples: kept.len(),
            targets: kept.iter().map(Sample::targets).sum(),
        });
        abilities.push(ability);
        samples.extend(kept);
    }
    Ok(HeldOutData {
        abilities,
        samples,
        counts,
    })
}

fn to_sample(t: Tokenized, group: usize) -> Sample {
    Sample {
        ids: t.input_ids,
        mask: t.loss_mask,
        group,
    }
}
