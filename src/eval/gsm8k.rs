//! GSM8K scoring: the final answer is extracted both ways lm-evaluation-harness does, and each
//! way gets its own accuracy.
//!
//! - **strict** (`strict-match`): the first match of `#### (\-?[0-9\.\,]+)`.
//! - **flexible** (`flexible-extract`): the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`.
//!
//! Both the extracted answer and the reference are normalized as the harness's
//! `regexes_to_ignore` do (commas and `$` removed, everything up to a last `#### ` removed, one
//! trailing `.` removed), then compared as numbers with an absolute tolerance of 1e-4 (so `2.50`
//! equals `2.5`), or as lowercase strings when either side is not a number.
//!
//! # Samples file
//! JSON Lines, one object per completion: `{"idx": <n>, "completion": "<text>"}`, where `n` is the
//! 0-based line index of the question in the GSM8K test file (`test.jsonl`); instead of `idx` a
//! record may give `"id": "gsm8k-test-<n>"` (the id `mixprobe data` readers give the question).
//! One completion per question; questions without one are counted as missing.
use crate::data::Example;
use crate::data::read::{Format, ReadOptions, read_file};
use crate::error::{Error, Result};
use crate::eval::samples::read_jsonl;
use regex::Regex;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

static STRICT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"#### (\-?[0-9\.\,]+)").expect("valid regex"));
static FLEXIBLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(-?[$0-9.,]{2,})|(-?[0-9]+)").expect("valid regex"));
static UP_TO_HASHES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s).*#### ").expect("valid regex"));

/// Absolute tolerance of the numeric comparison.
pub const TOLERANCE: f64 = 1e-4;

/// The strict answer: the first `#### N` (N of digits, `.`, `,`, optionally negative).
pub fn extract_strict(completion: &str) -> Option<String> {
    let m = STRICT.captures(completion)?.get(1)?;
    Some(m.as_str().trim().to_string())
}

/// The flexible answer: the last number-like token (at least two of `$0-9.,`, or an integer).
pub fn extract_flexible(completion: &str) -> Option<String> {
    let caps = FLEXIBLE.captures_iter(completion).last()?;
    let m = caps.get(1).or_else(|| caps.get(2))?;
    Some(m.as_str().trim().to_string())
}

/// The harness's normalization: drop commas and `$`, everything up to a last `#### `, one
/// trailing `.`, and lowercase.
pub fn normalize(answer: &str) -> String {
    let s = answer.replace([',', '$'], "");
    let s = UP_TO_HASHES.replace(&s, "");
    let s = s.strip_suffix('.').unwrap_or(&s);
    s.trim().to_lowercase()
}

/// Whether an extracted answer equals the reference (after [`normalize`]; numerically within
/// [`TOLERANCE`] when both are numbers).
pub fn same_answer(answer: &str, reference: &str) -> bool {
    let (a, r) = (normalize(answer), normalize(reference));
    match (a.parse::<f64>(), r.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => (x - y).abs() <= TOLERANCE,
        _ => !a.is_empty() && a == r,
    }
}

/// One completion to score: the question's index in the test file and the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub idx: usize,
    pub completion: String,
}

/// The score of one completion.
#[derive(Debug, Clone, Serialize)]
pub struct QuestionResult {
    pub idx: usize,
    pub id: String,
    pub reference: String,
    pub strict: Option<String>,
    pub flexible: Option<String>,
    pub correct_strict: bool,
    pub correct_flexible: bool,
}

/// RESULTS.json of `mixprobe score gsm8k`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub accuracy_strict: f64,
    pub accuracy_flexible: f64,
    /// Questions scored (those with a completion).
    pub n_problems: usize,
    pub correct_strict: usize,
    pub correct_flexible: usize,
    /// Questions in the test file without a completion (skipped).
    pub n_missing: usize,
    pub tolerance: f64,
    pub results: Vec<QuestionResult>,
}

/// The GSM8K questions of a test file, by 0-based record index.
pub struct Questions {
    by_idx: HashMap<usize, Example>,
}

impl Questions {
    /// Read a GSM8K file (`{"question","answer"}` lines) with the shared reader.
    pub fn load(path: &Path) -> Result<Questions> {
        let loaded = read_file(path, Some(Format::Gsm8k), &ReadOptions::default())?;
        let mut by_idx = HashMap::new();
        for ex in loaded.examples {
            let idx = ex
                .id
                .rsplit_once('-')
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    Error::Internal(format!("unexpected GSM8K example id {:?}", ex.id))
                })?;
            by_idx.insert(idx, ex);
        }
        Ok(Questions { by_idx })
    }

    pub fn len(&self) -> usize {
        self.by_idx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_idx.is_empty()
    }

    /// The questions in file order, with their 0-based record index.
    pub fn ordered(&self) -> Vec<(usize, &Example)> {
        let mut v: Vec<(usize, &Example)> = self.by_idx.iter().map(|(&i, e)| (i, e)).collect();
        v.sort_by_key(|(i, _)| *i);
        v
    }
}

/// Read a samples file (see the module docs) against the questions; unknown or repeated
/// questions are errors naming the line.
pub fn read_samples(path: &Path, questions: &Questions) -> Result<Vec<Sample>> {
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut out = Vec::new();
    for rec in read_jsonl(path)? {
        let completion = rec.string(path, "completion")?;
        let idx = match (rec.fields.get("idx"), rec.fields.get("id")) {
            (Some(v), _) => v.as_u64().map(|n| n as usize).ok_or_else(|| {
                rec.error(
                    path,
                    format!("field \"idx\" must be a non-negative integer, found {v}"),
                )
            })?,
            (None, Some(serde_json::Value::String(id))) => id
                .rsplit_once('-')
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    rec.error(
                        path,
                        format!("field \"id\" {id:?} is not like \"gsm8k-test-<n>\""),
                    )
                })?,
            _ => return Err(rec.error(path, "missing field \"idx\" (or \"id\")")),
        };
        if !questions.by_idx.contains_key(&idx) {
            return Err(rec.error(
                path,
                format!(
                    "question {idx} is not in the test file ({} questions)",
                    questions.len()
                ),
            ));
        }
        if let Some(first) = seen.insert(idx, rec.line) {
            return Err(rec.error(
                path,
                format!("question {idx} already has a completion on line {first}"),
            ));
        }
        out.push(Sample { idx, completion });
    }
    Ok(out)
}

/// Score completions against the references.
pub fn score(questions: &Questions, samples: &[Sample]) -> Result<Report> {
    let mut results = Vec::with_capacity(samples.len());
    for s in samples {
        let ex = questions.by_idx.get(&s.idx).ok_or_else(|| {
            Error::invalid(
                "sample",
                format!("question {} is not in the test file", s.idx),
            )
        })?;
        let reference = ex.meta.reference.clone().unwrap_or_default();
        let strict = extract_strict(&s.completion);
        let flexible = extract_flexible(&s.completion);
        results.push(QuestionResult {
            idx: s.idx,
            id: ex.id.clone(),
            correct_strict: strict
                .as_deref()
                .is_some_and(|a| same_answer(a, &reference)),
            correct_flexible: flexible
                .as_deref()
                .is_some_and(|a| same_answer(a, &reference)),
            reference,
            strict,
            flexible,
        });
    }
    results.sort_by_key(|r| r.idx);
    let n = results.len();
    let correct_strict = results.iter().filter(|r| r.correct_strict).count();
    let correct_flexible = results.iter().filter(|r| r.correct_flexible).count();
    let frac = |c: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
    Ok(Report {
        accuracy_strict: frac(correct_strict),
        accuracy_flexible: frac(correct_flexible),
        n_problems: n,
        correct_strict,
        correct_flexible,
        n_missing: questions.len() - n,
        tolerance: TOLERANCE,
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_takes_the_first_hash_answer() {
        assert_eq!(extract_strict("so 3 + 4 = 7\n#### 7").as_deref(), Some("7"));
        assert_eq!(extract_strict("#### 1,000").as_deref(), Some("1,000"));
        assert_eq!(extract_strict("#### -3").as_deref(), Some("-3"));
        // Multiple #### lines: the first wins (group_select 0 / take_first).
        assert_eq!(
            extract_strict("#### 12\nWait.\n#### 13").as_deref(),
            Some("12")
        );
        // `$` is not allowed after "#### " by the strict pattern.
        assert_eq!(extract_strict("#### $5"), None);
        // "####5" (no space) and no marker at all do not match.
        assert_eq!(extract_strict("####5"), None);
        assert_eq!(extract_strict("The answer is 5."), None);
    }

    #[test]
    fn flexible_takes_the_last_number() {
        assert_eq!(
            extract_flexible("She has 3 apples and buys 12 more: 15").as_deref(),
            Some("15")
        );
        assert_eq!(extract_flexible("It costs $5").as_deref(), Some("$5"));
        assert_eq!(
            extract_flexible("The total is 1,000 dollars.").as_deref(),
            Some("1,000")
        );
        // A sentence-final period is part of the token (removed by normalization).
        assert_eq!(
            extract_flexible("So the answer is 3.").as_deref(),
            Some("3.")
        );
        assert_eq!(
            extract_flexible("temperature fell to -3").as_deref(),
            Some("-3")
        );
        assert_eq!(extract_flexible("price 2.50 each").as_deref(), Some("2.50"));
        assert_eq!(extract_flexible("#### 7").as_deref(), Some("7"));
        assert_eq!(extract_flexible("no number at all"), None);
        // Single digits match through the second alternative.
        assert_eq!(extract_flexible("x 4 y").as_deref(), Some("4"));
    }

    #[test]
    fn normalization_and_comparison() {
        assert_eq!(normalize("1,000"), "1000");
        assert_eq!(normalize("$5"), "5");
        assert_eq!(normalize("3."), "3");
        assert_eq!(normalize("The answer\n#### 42"), "42");
        assert!(same_answer("1,000", "1000"));
        assert!(same_answer("$5", "5"));
        assert!(same_answer("3.", "3"));
        assert!(same_answer("2.50", "2.5"));
        assert!(same_answer("-3", "-3"));
        assert!(same_answer("0.33334", "0.33333"));
        assert!(!same_answer("0.3335", "0.3333"));
        assert!(!same_answer("3", "-3"));
        assert!(!same_answer("", ""));
        assert!(!same_answer("1.2.3", "123"));
    }

    fn questions(refs: &[&str]) -> Questions {
        let by_idx = refs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let ex = Example {
                    id: format!("gsm8k-test-{i}"),
                    ability: crate::data::Ability::Math,
                    turns: vec![],
                    meta: crate::data::Meta {
                        reference: Some(r.to_string()),
                        ..Default::default()
                    },
                };
                (i, ex)
            })
            .collect();
        Questions { by_idx }
    }

    #[test]
    fn scores_both_ways() {
        let q = questions(&["1000", "5", "-3", "2.5", "3", "8"]);
        let s = |idx: usize, c: &str| Sample {
            idx,
            completion: c.to_string(),
        };
        let samples = vec![
            s(0, "They sold 1,000 cups.\n#### 1,000"),
            s(1, "It costs $5"),
            s(2, "Reasoning...\n#### -3\nextra 7"),
            s(3, "Each is 2.50, so #### 2.50"),
            s(4, "So the answer is 3."),
        ];
        let r = score(&q, &samples).unwrap();
        assert_eq!(r.n_problems, 5);
        assert_eq!(r.n_missing, 1);
        let strict: Vec<bool> = r.results.iter().map(|x| x.correct_strict).collect();
        let flexible: Vec<bool> = r.results.iter().map(|x| x.correct_flexible).collect();
        assert_eq!(strict, [true, false, true, true, false]);
        // Sample 2's last number is 7, not -3.
        assert_eq!(flexible, [true, true, false, true, true]);
        assert_eq!(r.correct_strict, 3);
        assert!((r.accuracy_strict - 0.6).abs() < 1e-12);
        assert!((r.accuracy_flexible - 0.8).abs() < 1e-12);
    }

    #[test]
    fn samples_file_errors_name_the_line() {
        let q = questions(&["1", "2"]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        std::fs::write(&p, "{\"idx\": 0, \"completion\": \"1\"}\n{\"id\": \"gsm8k-test-1\", \"completion\": \"2\"}\n").unwrap();
        let s = read_samples(&p, &q).unwrap();
        assert_eq!(s.iter().map(|x| x.idx).collect::<Vec<_>>(), [0, 1]);
        for (text, want) in [
            (
                "{\"idx\": 5, \"completion\": \"1\"}\n",
                "line 1: question 5 is not in the test file",
            ),
            (
                "{\"idx\": 0, \"completion\": \"1\"}\n{\"idx\": 0, \"completion\": \"1\"}\n",
                "line 2: question 0 already has a completion on line 1",
            ),
            ("{\"completion\": \"1\"}\n", "missing field \"idx\""),
            (
                "{\"idx\": -1, \"completion\": \"1\"}\n",
                "non-negative integer",
            ),
            ("{\"idx\": 0}\n", "missing field \"completion\""),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = read_samples(&p, &q).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
