//! Per-file dataset statistics: record / example / skipped / excluded counts, turns, and length
//! percentiles of the rendered examples (tokens with a tokenizer, else whitespace-separated words).
use crate::data::read::{Loaded, Skipped};
use crate::data::template::ChatTemplate;
use crate::data::tokenize::ChatTokenizer;
use crate::error::Result;
use serde::Serialize;

/// How many malformed records [`FileStats::skipped_first`] lists.
pub const SKIPPED_SHOWN: usize = 5;

/// What a length counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthUnit {
    /// Tokens of the rendered example (BOS included when the tokenizer adds one).
    Tokens,
    /// Whitespace-separated words of the rendered example (no tokenizer given).
    Words,
}

impl LengthUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            LengthUnit::Tokens => "tokens",
            LengthUnit::Words => "words",
        }
    }
}

/// Nearest-rank percentiles: the p-th percentile of n sorted values is the value at rank
/// ceil(p/100 · n) (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub p50: usize,
    pub p90: usize,
    pub p99: usize,
    pub max: usize,
}

impl Percentiles {
    /// Percentiles of `values` (sorted in place); None when empty.
    pub fn of(values: &mut [usize]) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let n = values.len();
        let rank = |p: usize| values[(p * n).div_ceil(100).clamp(1, n) - 1];
        Some(Percentiles {
            p50: rank(50),
            p90: rank(90),
            p99: rank(99),
            max: values[n - 1],
        })
    }
}

/// Turn counts over a file's examples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TurnStats {
    pub total: usize,
    pub mean: f64,
    pub max: usize,
}

/// A reason and how many records it applied to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    pub reason: String,
    pub count: usize,
}

/// Statistics of one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileStats {
    pub path: String,
    pub format: String,
    /// Records in the file (examples + skipped + excluded).
    pub records: usize,
    pub examples: usize,
    /// Malformed records skipped (only with skip_invalid; otherwise reading fails).
    pub skipped: usize,
    /// The first few skipped records, where and why.
    pub skipped_first: Vec<Skipped>,
    /// Records a format rule did not turn into examples.
    pub excluded: usize,
    /// Excluded records by reason, most frequent first.
    pub excluded_reasons: Vec<ReasonCount>,
    pub turns: TurnStats,
    /// The chat template the lengths were measured on.
    pub template: String,
    pub length_unit: LengthUnit,
    /// Length percentiles of the rendered examples; None when the file has no example.
    pub lengths: Option<Percentiles>,
}

/// Compute a file's statistics; lengths are of each example rendered with `template` (the
/// tokenizer's template when one is given).
pub fn file_stats(
    loaded: &Loaded,
    template: ChatTemplate,
    tokenizer: Option<&ChatTokenizer>,
) -> Result<FileStats> {
    let examples = &loaded.examples;
    let turn_counts: Vec<usize> = examples.iter().map(|e| e.turns.len()).collect();
    let total: usize = turn_counts.iter().sum();
    let turns = TurnStats {
        total,
        mean: if examples.is_empty() {
            0.0
        } else {
            total as f64 / examples.len() as f64
        },
        max: turn_counts.iter().copied().max().unwrap_or(0),
    };
    let (template, length_unit, mut lengths): (_, _, Vec<usize>) = match tokenizer {
        Some(tok) => {
            let lens = tok
                .encode_many(examples)?
                .iter()
                .map(|t| t.input_ids.len())
                .collect();
            (tok.template(), LengthUnit::Tokens, lens)
        }
        None => {
            let lens = examples
                .iter()
                .map(|e| template.render_text(&e.turns).split_whitespace().count())
                .collect();
            (template, LengthUnit::Words, lens)
        }
    };
    Ok(FileStats {
        path: loaded.path.display().to_string(),
        format: loaded.format.name().to_string(),
        records: loaded.records(),
        examples: examples.len(),
        skipped: loaded.skipped.len(),
        skipped_first: loaded.skipped.iter().take(SKIPPED_SHOWN).cloned().collect(),
        excluded: loaded.excluded.len(),
        excluded_reasons: loaded
            .excluded_by_reason()
            .into_iter()
            .map(|(reason, count)| ReasonCount { reason, count })
            .collect(),
        turns,
        template: template.name().to_string(),
        length_unit,
        lengths: Percentiles::of(&mut lengths),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<usize> = (1..=100).rev().collect();
        assert_eq!(
            Percentiles::of(&mut v),
            Some(Percentiles {
                p50: 50,
                p90: 90,
                p99: 99,
                max: 100
            })
        );
        let mut v = vec![7, 3];
        assert_eq!(
            Percentiles::of(&mut v),
            Some(Percentiles {
                p50: 3,
                p90: 7,
                p99: 7,
                max: 7
            })
        );
        assert_eq!(Percentiles::of(&mut []), None);
    }
}
