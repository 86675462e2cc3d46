//! MT-Bench: FastChat's single-answer grading of two-turn answers by an LLM judge, and an
//! offline proxy for when no judge is available.
//!
//! # Judging (as FastChat's `gen_judgment.py --mode single`)
//! Each question gets two judgments. Turn 1 uses the `single-v1` prompt, or `single-math-v1`
//! with the reference answer for the categories that need one (math, reasoning, coding); turn 2
//! uses `single-v1-multi-turn` / `single-math-v1-multi-turn` with the whole conversation (and both
//! reference turns). Prompts come from `mt_bench/judge_prompts.jsonl`, references from
//! `mt_bench/reference_answer/gpt-4.jsonl`. The rating is parsed with FastChat's patterns
//! ([`super::judge::parse_rating`]). A judgment whose reply has no rating is a *parse failure*,
//! one whose request failed after the retries an *HTTP failure*; both are counted and left out
//! of the means (FastChat's `score != -1` filter). Scores are on the judge's 1–10 scale: per
//! turn, per category (both turns) and overall (all rated judgments).
//!
//! # Offline proxy (NOT an MT-Bench score)
//! Without a judge, `mtbench.proxy` is the mean token-level F1 (SQuAD-style: lowercase
//! alphanumeric tokens, multiset overlap) of each answer turn against GPT-4's answer to the same
//! turn in `mt_bench/model_answer/gpt-4.jsonl`, in [0,1]. It measures lexical overlap with one
//! strong model's answer, rewards length-matched on-topic text, and does not judge quality; use
//! it only to compare checkpoints of the same run.
use super::judge::{Judge, parse_rating};
use crate::data::read::{Format, ReadOptions, read_file};
use crate::error::{Error, Location, Result};
use regex::Regex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::LazyLock;

/// Categories whose judge prompt includes the reference answer (FastChat's `NEED_REF_CATS`).
pub const NEED_REF_CATS: [&str; 4] = ["math", "reasoning", "coding", "arena-hard-200"];

/// One MT-Bench question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Question {
    pub question_id: u64,
    pub category: String,
    pub turns: Vec<String>,
}

/// Read `question.jsonl` with the shared reader.
pub fn load_questions(path: &Path) -> Result<Vec<Question>> {
    let loaded = read_file(path, Some(Format::MtBench), &ReadOptions::default())?;
    if let Some(x) = loaded.excluded.first() {
        return Err(Error::record(path, x.location, x.reason.clone()));
    }
    loaded
        .examples
        .into_iter()
        .map(|ex| {
            Ok(Question {
                question_id: question_id(path, &ex.id)?,
                category: ex.meta.category.clone().unwrap_or_default(),
                turns: ex.turns.into_iter().map(|t| t.content).collect(),
            })
        })
        .collect()
}

/// Read answers in FastChat's format (`reference_answer/*.jsonl`, `model_answer/*.jsonl`):
/// question id → the turns of the first choice.
pub fn load_answers(path: &Path) -> Result<HashMap<u64, Vec<String>>> {
    let loaded = read_file(
        path,
        Some(Format::MtBenchReference),
        &ReadOptions::default(),
    )?;
    loaded
        .examples
        .into_iter()
        .map(|ex| {
            Ok((
                question_id(path, &ex.id)?,
                ex.turns.into_iter().map(|t| t.content).collect(),
            ))
        })
        .collect()
}

fn question_id(path: &Path, id: &str) -> Result<u64> {
    id.strip_prefix("mt_bench-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::file(path, format!("unexpected MT-Bench id {id:?}")))
}

/// One judge prompt of `judge_prompts.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgePrompt {
    pub name: String,
    pub system_prompt: String,
    pub prompt_template: String,
}

/// The four single-answer prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgePrompts {
    pub single: JudgePrompt,
    pub single_math: JudgePrompt,
    pub multi_turn: JudgePrompt,
    pub multi_turn_math: JudgePrompt,
}

/// Read FastChat's `judge_prompts.jsonl` and pick the single-answer prompts.
pub fn load_judge_prompts(path: &Path) -> Result<JudgePrompts> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut by_name = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            Error::record(path, Location::Line(i + 1), format!("not valid JSON: {e}"))
        })?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::record(
                        path,
                        Location::Line(i + 1),
                        format!("missing string field {k:?}"),
                    )
                })
        };
        let p = JudgePrompt {
            name: field("name")?,
            system_prompt: field("system_prompt")?,
            prompt_template: field("prompt_template")?,
        };
        by_name.insert(p.name.clone(), p);
    }
    let mut take = |name: &str| {
        by_name
            .remove(name)
            .ok_or_else(|| Error::file(path, format!("no judge prompt named {name:?}")))
    };
    Ok(JudgePrompts {
        single: take("single-v1")?,
        single_math: take("single-math-v1")?,
        multi_turn: take("single-v1-multi-turn")?,
        multi_turn_math: take("single-math-v1-multi-turn")?,
    })
}

static FIELD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{([A-Za-z_][A-Za-z0-9_]*)\}").expect("valid regex"));

/// Python's `str.format` for the named fields of a judge template (one pass, so braces inside
/// the inserted answers are left alone).
fn format_template(template: &str, fields: &[(&str, &str)]) -> Result<String> {
    let mut missing = None;
    let out = FIELD.replace_all(template, |c: &regex::Captures| {
        let name = &c[1];
        match fields.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => v.to_string(),
            None => {
                missing = Some(name.to_string());
                String::new()
            }
        }
    });
    match missing {
        Some(name) => Err(Error::invalid(
            "judge prompt",
            format!("template field {{{name}}} has no value"),
        )),
        None => Ok(out.into_owned()),
    }
}

/// The (system, user) messages judging `turn` (1 or 2) of `answer` to `q`.
pub fn judge_messages<'a>(
    prompts: &JudgePrompts,
    q: &'a Question,
    answer: &'a [String],
    reference: Option<&'a Vec<String>>,
    turn: usize,
) -> Result<(String, String)> {
    let need_ref = NEED_REF_CATS.contains(&q.category.as_str());
    fn pick<'a>(v: &'a [String], i: usize, what: &str, q: &Question) -> Result<&'a str> {
        v.get(i).map(String::as_str).ok_or_else(|| {
            Error::invalid(
                "MT-Bench",
                format!("question {} has no {what} {}", q.question_id, i + 1),
            )
        })
    }
    let get = |v: &'a [String], i: usize, what: &str| -> Result<&'a str> { pick(v, i, what, q) };
    let reference = match (need_ref, reference) {
        (true, Some(r)) => Some(r.as_slice()),
        (true, None) => {
            return Err(Error::invalid(
                "MT-Bench",
                format!(
                    "question {} ({}) needs a reference answer and has none",
                    q.question_id, q.category
                ),
            ));
        }
        (false, _) => None,
    };
    let (prompt, fields): (&JudgePrompt, Vec<(&str, &str)>) = match (turn, reference) {
        (1, None) => (
            &prompts.single,
            vec![
                ("question", get(&q.turns, 0, "turn")?),
                ("answer", get(answer, 0, "answer turn")?),
            ],
        ),
        (1, Some(r)) => (
            &prompts.single_math,
            vec![
                ("question", get(&q.turns, 0, "turn")?),
                ("answer", get(answer, 0, "answer turn")?),
                ("ref_answer_1", get(r, 0, "reference turn")?),
            ],
        ),
        (_, r) => {
            let mut f = vec![
                ("question_1", get(&q.turns, 0, "turn")?),
                ("question_2", get(&q.turns, 1, "turn")?),
                ("answer_1", get(answer, 0, "answer turn")?),
                ("answer_2", get(answer, 1, "answer turn")?),
            ];
            let p = match r {
                Some(r) => {
                    f.push(("ref_answer_1", get(r, 0, "reference turn")?));
                    f.push(("ref_answer_2", get(r, 1, "reference turn")?));
                    &prompts.multi_turn_math
                }
                None => &prompts.multi_turn,
            };
            (p, f)
        }
    };
    Ok((
        prompt.system_prompt.clone(),
        format_template(&prompt.prompt_template, &fields)?,
    ))
}

/// What happened to one judgment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgmentStatus {
    Rated,
    ParseFailure,
    HttpFailure,
}

/// One judgment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgment {
    pub question_id: u64,
    pub category: String,
    pub turn: usize,
    pub judge_prompt: String,
    pub status: JudgmentStatus,
    pub rating: Option<f64>,
    /// The judge's reply, or the HTTP error.
    pub text: String,
}

/// MT-Bench scores (1–10 judge scale).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MtBenchReport {
    /// Mean rating of all rated judgments.
    pub score: Option<f64>,
    pub turn1: Option<f64>,
    pub turn2: Option<f64>,
    /// Per category, both turns.
    pub categories: BTreeMap<String, f64>,
    pub judge_model: String,
    pub n_questions: usize,
    pub n_judgments: usize,
    pub n_rated: usize,
    pub n_parse_failures: usize,
    pub n_http_failures: usize,
    /// Parse failures per judgment that got a reply.
    pub parse_failure_rate: f64,
    pub judgments: Vec<Judgment>,
}

/// Judge every question's two answer turns (`answers[i]` answers `questions[i]`); `on_done`
/// is called after each judgment.
pub fn judge_answers<F: Fn()>(
    judge: &Judge,
    prompts: &JudgePrompts,
    questions: &[Question],
    answers: &[Vec<String>],
    references: &HashMap<u64, Vec<String>>,
    on_done: F,
) -> Result<MtBenchReport> {
    let mut judgments = Vec::with_capacity(questions.len() * 2);
    for (q, answer) in questions.iter().zip(answers) {
        for turn in 1..=q.turns.len().min(2) {
            let (system, user) =
                judge_messages(prompts, q, answer, references.get(&q.question_id), turn)?;
            let need_ref = NEED_REF_CATS.contains(&q.category.as_str());
            let judge_prompt = match (turn, need_ref) {
                (1, false) => &prompts.single.name,
                (1, true) => &prompts.single_math.name,
                (_, false) => &prompts.multi_turn.name,
                (_, true) => &prompts.multi_turn_math.name,
            };
            let (status, rating, text) = match judge.complete(&system, &user) {
                Ok(reply) => match parse_rating(&reply) {
                    Some(r) => (JudgmentStatus::Rated, Some(r), reply),
                    None => (JudgmentStatus::ParseFailure, None, reply),
                },
                Err(f) => (
                    JudgmentStatus::HttpFailure,
                    None,
                    format!("after {} attempt(s): {}", f.attempts, f.message),
                ),
            };
            judgments.push(Judgment {
                question_id: q.question_id,
                category: q.category.clone(),
                turn,
                judge_prompt: judge_prompt.clone(),
                status,
                rating,
                text,
            });
            on_done();
        }
    }
    Ok(aggregate(judgments, questions.len(), &judge.config().model))
}

/// Means per turn, per category and overall over the rated judgments; failures counted.
pub fn aggregate(judgments: Vec<Judgment>, n_questions: usize, judge_model: &str) -> MtBenchReport {
    let mean = |xs: Vec<f64>| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
    let rated = |pred: &dyn Fn(&Judgment) -> bool| -> Vec<f64> {
        judgments
            .iter()
            .filter(|j| pred(j))
            .filter_map(|j| j.rating)
            .collect()
    };
    let mut by_cat: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for j in &judgments {
        if let Some(r) = j.rating {
            by_cat.entry(j.category.clone()).or_default().push(r);
        }
    }
    let count = |s: JudgmentStatus| judgments.iter().filter(|j| j.status == s).count();
    let n_parse = count(JudgmentStatus::ParseFailure);
    let n_http = count(JudgmentStatus::HttpFailure);
    let n_rated = count(JudgmentStatus::Rated);
    let replied = n_rated + n_parse;
    MtBenchReport {
        score: mean(rated(&|_| true)),
        turn1: mean(rated(&|j| j.turn == 1)),
        turn2: mean(rated(&|j| j.turn == 2)),
        categories: by_cat
            .into_iter()
            .filter_map(|(c, v)| mean(v).map(|m| (c, m)))
            .collect(),
        judge_model: judge_model.to_string(),
        n_questions,
        n_judgments: judgments.len(),
        n_rated,
        n_parse_failures: n_parse,
        n_http_failures: n_http,
        parse_failure_rate: if replied == 0 {
            0.0
        } else {
            n_parse as f64 / replied as f64
        },
        judgments,
    }
}

/// The offline proxy (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyReport {
    pub what: &'static str,
    /// Mean token F1 over all answer turns that have a GPT-4 answer.
    pub proxy: Option<f64>,
    pub turn1: Option<f64>,
    pub turn2: Option<f64>,
    pub categories: BTreeMap<String, f64>,
    /// Answer turns without a GPT-4 answer to compare with (not scored).
    pub n_missing_reference: usize,
    pub n_scored: usize,
}

/// What `mtbench.proxy` is, in words (also written to the results).
pub const PROXY_DESCRIPTION: &str = "offline proxy, NOT an MT-Bench score: mean token-level F1 of \
each answer turn against GPT-4's answer (mt_bench/model_answer/gpt-4.jsonl); lexical overlap, \
not judged quality";

/// Token-F1 of the answers against `gpt4` answers (question id → turns).
pub fn proxy(
    questions: &[Question],
    answers: &[Vec<String>],
    gpt4: &HashMap<u64, Vec<String>>,
) -> ProxyReport {
    let mut all = Vec::new();
    let mut turns: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut by_cat: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut missing = 0;
    for (q, answer) in questions.iter().zip(answers) {
        for (t, a) in answer.iter().enumerate().take(2) {
            match gpt4.get(&q.question_id).and_then(|r| r.get(t)) {
                Some(r) => {
                    let f = token_f1(a, r);
                    all.push(f);
                    turns[t].push(f);
                    by_cat.entry(q.category.clone()).or_default().push(f);
                }
                None => missing += 1,
            }
        }
    }
    let mean = |xs: &[f64]| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
    ProxyReport {
        what: PROXY_DESCRIPTION,
        proxy: mean(&all),
        turn1: mean(&turns[0]),
        turn2: mean(&turns[1]),
        categories: by_cat
            .iter()
            .filter_map(|(c, v)| mean(v).map(|m| (c.clone(), m)))
            .collect(),
        n_missing_reference: missing,
        n_scored: all.len(),
    }
}

/// SQuAD-style token F1 of lowercase alphanumeric tokens (1 when both are empty).
pub fn token_f1(answer: &str, reference: &str) -> f64 {
    let toks = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let (a, r) = (toks(answer), toks(reference));
    if a.is_empty() || r.is_empty() {
        return if a.is_empty() && r.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &r {
        *counts.entry(t).or_default() += 1;
    }
    let mut common = 0usize;
    for t in &a {
        if let Some(c) = counts.get_mut(t.as_str())
            && *c > 0
        {
            *c -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let p = common as f64 / a.len() as f64;
    let rc = common as f64 / r.len() as f64;
    2.0 * p * rc / (p + rc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_f1_by_hand() {
        assert_eq!(token_f1("the cat sat", "the cat sat"), 1.0);
        // common 2 ("the", "cat"): p = 2/3, r = 2/4, F1 = 4/7.
        assert!((token_f1("The cat ran", "the cat sat down") - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!(token_f1("dog", "cat"), 0.0);
    }

    #[test]
    fn template_fields_fill_once() {
        let s = format_template(
            "Q {question} A {answer}",
            &[("question", "{answer}"), ("answer", "x")],
        )
        .unwrap();
        assert_eq!(s, "Q {answer} A x");
        assert!(format_template("{nope}", &[]).is_err());
    }
}
