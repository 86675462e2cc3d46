//! `mixprobe eval`: generate with a model, score every requested benchmark, and (for a training
//! run) build the stage × ability matrix.
//!
//! # Score keys (`EvalResults::scores`, flat, lowercase)
//! | key | bench | what | range |
//! |---|---|---|---|
//! | `gsm8k.strict`, `gsm8k.flexible` | gsm8k | accuracy, `#### N` / last number (lm-evaluation-harness) | [0,1] |
//! | `humaneval.pass@1` (`pass@k` when n ≥ k) | humaneval | unbiased pass@k, sandboxed | [0,1] |
//! | `mtbench.score`, `mtbench.turn1`, `mtbench.turn2` | mtbench + judge | mean judge rating | 1–10 (the judge's scale) |
//! | `mtbench.proxy` | mtbench, no judge | token-F1 vs GPT-4's answers — NOT an MT-Bench score | [0,1] |
//! | `nll.math`, `nll.code`, `nll.general` | nll | mean NLL (nats) per answer token | ≥ 0 |
//! | `synth.math`, `synth.code`, `synth.general` | synth | strict accuracy / pass@1 / rule score (1–10 mapped to (s−1)/9) | [0,1] |
//!
//! Missing scores are absent keys, never zeros.
//!
//! # Data (`--data-dir`, the `../shared/data` layout)
//! - gsm8k: `gsm8k/test.jsonl`; humaneval: `humaneval/HumanEval.jsonl.gz`, the model sees
//!   `Complete the following Python function.\n\n<prompt>` as the user turn (the Code Alpaca
//!   phrasing the synthetic suite also trains on) and its code is extracted
//!   ([`super::humaneval::extract_code`]);
//! - mtbench: `mt_bench/question.jsonl`, `judge_prompts.jsonl`, `reference_answer/gpt-4.jsonl`,
//!   `model_answer/gpt-4.jsonl` (proxy);
//! - nll: math = the GSM8K test questions with their worked answers, code = each HumanEval
//!   prompt (as above) answered by the prompt plus its canonical solution (the copied prompt
//!   makes `nll.code` low in absolute terms; compare it across checkpoints), general = the
//!   synthetic suite's `sharegpt/eval.jsonl` conversations or, on real data, the MT-Bench
//!   questions with GPT-4's answers. An ability whose files are missing is left out and named
//!   in `details.nll.missing`.
//! - synth: a directory written by `mixprobe data synth` (it has `SYNTH.json`): math
//!   `gsm8k/test.jsonl`, code `humaneval/HumanEval.jsonl.gz` (pass@1, greedy), general
//!   `sharegpt/eval.jsonl` scored by [`crate::data::synth::score_general`].
//!
//! `--limit N` keeps the first N items of every benchmark. Generation is greedy except for
//! HumanEval with n > 1 samples per problem (then `temperature`, top-p 0.95).
use super::generation::{GenOptions, Generator, progress_bar};
use super::judge::{Judge, JudgeConfig};
use super::mtbench;
use super::nll::heldout_nll;
use super::sandbox::{Sandbox, SandboxConfig};
use super::{gsm8k, humaneval};
use crate::data::read::alpaca_prompt;
use crate::data::synth::{self, load_general_eval, score_general};
use crate::data::template::ChatTemplate;
use crate::data::{Ability, Example, Meta, Turn};
use crate::error::{Error, Result};
use crate::model::CpuBackend;
use crate::model::device::{self, DeviceKind};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

/// A benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bench {
    Gsm8k,
    HumanEval,
    MtBench,
    Nll,
    Synth,
}

impl Bench {
    pub const ALL: [Bench; 5] = [
        Bench::Gsm8k,
        Bench::HumanEval,
        Bench::MtBench,
        Bench::Nll,
        Bench::Synth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bench::Gsm8k => "gsm8k",
            Bench::HumanEval => "humaneval",
            Bench::MtBench => "mtbench",
            Bench::Nll => "nll",
            Bench::Synth => "synth",
        }
    }

    /// Parse a comma-separated list (`gsm8k,humaneval,mtbench,nll,synth`); duplicates removed.
    pub fn parse_list(s: &str) -> Result<Vec<Bench>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let b: Bench = part.parse()?;
            if !out.contains(&b) {
                out.push(b);
            }
        }
        if out.is_empty() {
            return Err(Error::invalid("--bench", "no benchmark named"));
        }
        Ok(out)
    }
}

impl fmt::Display for Bench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Bench {
    type Err = Error;
    fn from_str(s: &str) -> Result<Bench> {
        let s = s.trim().to_ascii_lowercase();
        Bench::ALL
            .into_iter()
            .find(|b| b.name() == s || (s == "mt_bench" && *b == Bench::MtBench))
            .ok_or_else(|| {
                Error::invalid(
                    "--bench",
                    format!(
                        "unknown benchmark {s:?} (expected gsm8k, humaneval, mtbench, nll or synth)"
                    ),
                )
            })
    }
}

/// What to evaluate and how.
#[derive(Debug, Clone)]
pub struct EvalSpec {
    pub data_dir: PathBuf,
    pub benches: Vec<Bench>,
    /// Keep the first N items of every benchmark.
    pub limit: Option<usize>,
    pub max_new_tokens: usize,
    /// Prompts per generation batch (and sequences per NLL batch).
    pub batch_size: usize,
    /// MT-Bench judge; None = the offline proxy.
    pub judge: Option<JudgeConfig>,
    pub device: DeviceKind,
    /// Draw progress bars on stderr.
    pub progress: bool,
    pub seed: u64,
    /// Chat template; None = detect (see [`super::generation`]).
    pub template: Option<ChatTemplate>,
    /// HumanEval samples per problem (n of pass@k); more than 1 samples at `temperature`.
    pub humaneval_samples: usize,
    pub temperature: f32,
    /// Longest sequence scored by `nll` (capped by the model's positions).
    pub max_len: usize,
    pub sandbox: SandboxConfig,
}

impl EvalSpec {
    /// Defaults: no limit, 256 new tokens, batch 8, no judge, CPU, progress on, seed 0, detected
    /// template, 1 HumanEval sample (temperature 0.8 if raised), NLL up to 2048 tokens, default
    /// sandbox.
    pub fn new(data_dir: impl Into<PathBuf>, benches: Vec<Bench>) -> EvalSpec {
        EvalSpec {
            data_dir: data_dir.into(),
            benches,
            limit: None,
            max_new_tokens: 256,
            batch_size: 8,
            judge: None,
            device: DeviceKind::Cpu,
            progress: true,
            seed: 0,
            template: None,
            humaneval_samples: 1,
            temperature: 0.8,
            max_len: 2048,
            sandbox: SandboxConfig::default(),
        }
    }
}

/// One model's scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalResults {
    /// The model directory.
    pub model: String,
    pub template: String,
    pub device: String,
    pub wall_s: f64,
    /// Flat score keys (see the module docs).
    pub scores: BTreeMap<String, f64>,
    /// Per bench: counts, failures, per-category numbers, timings.
    pub details: Value,
    /// The generations per file name (`gsm8k`, `humaneval`, `mtbench`, `synth.math`, …), one
    /// JSON object per line in the format `mixprobe score` reads; written by the caller.
    #[serde(skip)]
    pub samples: BTreeMap<String, Vec<Value>>,
}

impl EvalResults {
    /// Write each bench's generations as `<stem>[.<stage>].<bench>.jsonl` in the directory of
    /// `results` (whose file stem is `<stem>`); returns the files written.
    pub fn write_samples(&self, results: &Path, stage: Option<&str>) -> Result<Vec<PathBuf>> {
        let stem = results
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "results".into());
        let dir = results.parent().unwrap_or(Path::new("."));
        let mut written = Vec::new();
        for (bench, lines) in &self.samples {
            let name = match stage {
                Some(s) => format!("{stem}.{s}.{bench}.jsonl"),
                None => format!("{stem}.{bench}.jsonl"),
            };
            let mut text = String::new();
            for l in lines {
                text.push_str(&serde_json::to_string(l).map_err(internal)?);
                text.push('\n');
            }
            let path = dir.join(name);
            crate::util::write_atomic(&path, text.as_bytes())?;
            written.push(path);
        }
        Ok(written)
    }
}

/// The stage × ability matrix of a run: `metrics[key][stage][ability]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgettingMatrix {
    pub stages: Vec<String>,
    pub abilities: Vec<String>,
    /// Metric → rows (stages) × columns (abilities). `nll` and `synth` fill all three columns;
    /// a benchmark key (`gsm8k.strict`, `humaneval.pass@1`, `mtbench.score`, …) fills its
    /// ability's column; `heldout_nll` is the run's own `forgetting.json` (held-out split of the
    /// training sources). Absent values are null.
    pub metrics: BTreeMap<String, Vec<Vec<Option<f64>>>>,
}

impl ForgettingMatrix {
    /// The matrix of evaluated stages.
    pub fn from_stages(stages: &[(String, EvalResults)]) -> ForgettingMatrix {
        let abilities: Vec<String> = Ability::ALL.iter().map(|a| a.to_string()).collect();
        let mut metrics: BTreeMap<String, Vec<Vec<Option<f64>>>> = BTreeMap::new();
        for (row, (_, res)) in stages.iter().enumerate() {
            for (key, &value) in &res.scores {
                let Some((metric, ability)) = metric_of(key) else {
                    continue;
                };
                let col = Ability::ALL.iter().position(|a| *a == ability).unwrap_or(0);
                let m = metrics
                    .entry(metric)
                    .or_insert_with(|| vec![vec![None; abilities.len()]; stages.len()]);
                m[row][col] = Some(value);
            }
        }
        ForgettingMatrix {
            stages: stages.iter().map(|(s, _)| s.clone()).collect(),
            abilities,
            metrics,
        }
    }
}

/// The matrix metric and ability column of a score key.
fn metric_of(key: &str) -> Option<(String, Ability)> {
    let (prefix, rest) = key.split_once('.')?;
    match prefix {
        "nll" | "synth" => Some((prefix.to_string(), rest.parse().ok()?)),
        "gsm8k" => Some((key.to_string(), Ability::Math)),
        "humaneval" => Some((key.to_string(), Ability::Code)),
        "mtbench" => Some((key.to_string(), Ability::General)),
        _ => None,
    }
}

/// Every stage of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunEval {
    pub stages: Vec<(String, EvalResults)>,
    pub forgetting: ForgettingMatrix,
}

/// Evaluate one Hugging Face model directory.
pub fn evaluate_model(model_dir: &Path, spec: &EvalSpec) -> Result<EvalResults> {
    let (kind, warning) = device::resolve(spec.device);
    let mut res = match kind {
        DeviceKind::Cpu => evaluate_on::<CpuBackend>(model_dir, spec, &Default::default())?,
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            evaluate_on::<device::CudaBackend>(model_dir, spec, &Default::default())?
        }
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => {
            return Err(Error::Internal("CUDA chosen in a build without it".into()));
        }
    };
    res.device = kind.as_str().into();
    if let (Some(w), Value::Object(m)) = (warning, &mut res.details) {
        m.insert("device_warning".into(), json!(w));
    }
    Ok(res)
}

/// Every stage checkpoint (stage-1/ … and final/) of a `mixprobe train` run dir, plus the
/// stage × ability matrix; writes nothing itself. A checkpoint with the same weights as an
/// earlier one (final/ normally equals the last stage) reuses its results.
pub fn evaluate_run_dir(run_dir: &Path, spec: &EvalSpec) -> Result<RunEval> {
    let dirs = stage_dirs(run_dir)?;
    let mut stages: Vec<(String, EvalResults)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (name, dir) in &dirs {
        let weights = dir.join(crate::model::checkpoint::WEIGHTS_FILE);
        let digest = if weights.is_file() {
            Some(crate::util::sha256_file(&weights)?)
        } else {
            None
        };
        let res = match digest.as_ref().and_then(|d| seen.get(d)) {
            Some(&i) => {
                let mut r = stages[i].1.clone();
                r.model = dir.to_string_lossy().into_owned();
                if let Value::Object(m) = &mut r.details {
                    m.insert("same_weights_as".into(), json!(stages[i].0));
                }
                r
            }
            None => {
                if spec.progress {
                    eprintln!("evaluating {name} ({})", dir.display());
                }
                evaluate_model(dir, spec)?
            }
        };
        if let Some(d) = digest {
            seen.entry(d).or_insert(stages.len());
        }
        stages.push((name.clone(), res));
    }
    let mut forgetting = ForgettingMatrix::from_stages(&stages);
    if let Some(m) = heldout_matrix(run_dir, &stages)? {
        forgetting.metrics.insert("heldout_nll".into(), m);
    }
    Ok(RunEval { stages, forgetting })
}

/// `stage-N/` in numeric order, then `final/`; each must hold a config.json.
fn stage_dirs(run_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    if !run_dir.join("run.json").is_file() {
        return Err(Error::file(
            run_dir,
            "not a training run directory (no run.json)",
        ));
    }
    let mut stages: Vec<(usize, String, PathBuf)> = Vec::new();
    let entries = std::fs::read_dir(run_dir).map_err(|e| Error::io(run_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(run_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("stage-")
            .and_then(|n| n.parse::<usize>().ok())
            && entry.path().join("config.json").is_file()
        {
            stages.push((n, name, entry.path()));
        }
    }
    stages.sort();
    let mut out: Vec<(String, PathBuf)> = stages.into_iter().map(|(_, n, p)| (n, p)).collect();
    let fin = run_dir.join("final");
    if fin.join("config.json").is_file() {
        out.push(("final".into(), fin));
    }
    if out.is_empty() {
        return Err(Error::file(
            run_dir,
            "the run has no finished checkpoint (no stage-N/ or final/ with a config.json)",
        ));
    }
    Ok(out)
}

/// The run's `forgetting.json` rows aligned with the evaluated stages (final = the last row).
fn heldout_matrix(
    run_dir: &Path,
    stages: &[(String, EvalResults)],
) -> Result<Option<Vec<Vec<Option<f64>>>>> {
    let path = run_dir.join("forgetting.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let f: crate::train::log::Forgetting = serde_json::from_str(&text)
        .map_err(|e| Error::file(&path, format!("not a forgetting.json: {e}")))?;
    let last = f.rows.iter().map(|r| r.stage).max();
    let rows = stages
        .iter()
        .map(|(name, _)| {
            let stage = match name.strip_prefix("stage-") {
                Some(n) => n.parse().ok(),
                None => last,
            };
            Ability::ALL
                .iter()
                .map(|a| stage.and_then(|s| f.nll(s, a.as_str())))
                .collect()
        })
        .collect();
    Ok(Some(rows))
}

/// One ability's examples for the nll bench.
type NllSet = (Ability, Vec<Example>);

/// Everything one evaluation keeps while running the benches.
struct Ctx<'a, B: Backend> {
    spec: &'a EvalSpec,
    generator: Generator<B>,
    sandbox: Option<Sandbox>,
    /// Greedy generations already made, by prompt set.
    memo: HashMap<&'static str, Vec<String>>,
    scores: BTreeMap<String, f64>,
    details: Map<String, Value>,
    samples: BTreeMap<String, Vec<Value>>,
}

fn evaluate_on<B: Backend>(
    model_dir: &Path,
    spec: &EvalSpec,
    device: &B::Device,
) -> Result<EvalResults> {
    let start = Instant::now();
    if spec.benches.is_empty() {
        return Err(Error::invalid("--bench", "no benchmark named"));
    }
    if !spec.data_dir.is_dir() {
        return Err(Error::file(&spec.data_dir, "data directory not found"));
    }
    let generator = Generator::<B>::load(model_dir, spec.template, device)?;
    let mut ctx = Ctx {
        spec,
        generator,
        sandbox: None,
        memo: HashMap::new(),
        scores: BTreeMap::new(),
        details: Map::new(),
        samples: BTreeMap::new(),
    };
    ctx.details.insert(
        "template_source".into(),
        json!(ctx.generator.template_source),
    );
    for &bench in &spec.benches {
        let t = Instant::now();
        let mut detail = match bench {
            Bench::Gsm8k => ctx.gsm8k()?,
            Bench::HumanEval => ctx.humaneval()?,
            Bench::MtBench => ctx.mtbench()?,
            Bench::Nll => ctx.nll()?,
            Bench::Synth => ctx.synth()?,
        };
        if let Value::Object(m) = &mut detail {
            m.insert("wall_s".into(), json!(t.elapsed().as_secs_f64()));
        }
        ctx.details.insert(bench.name().into(), detail);
    }
    Ok(EvalResults {
        model: model_dir.to_string_lossy().into_owned(),
        template: ctx.generator.template().name().into(),
        device: "cpu".into(),
        wall_s: start.elapsed().as_secs_f64(),
        scores: ctx.scores,
        details: Value::Object(ctx.details),
        samples: ctx.samples,
    })
}

/// The user turn a HumanEval problem is asked with.
pub fn code_prompt(problem: &humaneval::Problem) -> String {
    alpaca_prompt("Complete the following Python function.", &problem.prompt)
}

impl<B: Backend> Ctx<'_, B> {
    fn path(&self, rel: &str) -> PathBuf {
        self.spec.data_dir.join(rel)
    }

    fn limited<T>(&self, mut v: Vec<T>) -> Vec<T> {
        if let Some(n) = self.spec.limit {
            v.truncate(n);
        }
        v
    }

    fn greedy(&self) -> GenOptions {
        GenOptions {
            max_new_tokens: self.spec.max_new_tokens,
            batch_size: self.spec.batch_size,
            temperature: 0.0,
            top_p: 1.0,
            seed: self.spec.seed,
            progress: self.spec.progress,
        }
    }

    /// Greedy answers to `prompts`, shared between benches that ask the same prompt set.
    fn answers(&mut self, key: &'static str, prompts: &[Vec<Turn>]) -> Result<Vec<String>> {
        if let Some(v) = self.memo.get(key) {
            return Ok(v.clone());
        }
        let v = self.generator.answer(key, prompts, &self.greedy())?;
        self.memo.insert(key, v.clone());
        Ok(v)
    }

    fn sandbox(&mut self) -> Result<&Sandbox> {
        if self.sandbox.is_none() {
            self.sandbox = Some(Sandbox::new(self.spec.sandbox.clone())?);
        }
        self.sandbox
            .as_ref()
            .ok_or_else(|| Error::Internal("sandbox not created".into()))
    }

    /// Generate for the GSM8K-format test file and score it.
    fn math(&mut self) -> Result<(gsm8k::Report, Vec<Value>)> {
        let questions = gsm8k::Questions::load(&self.path("gsm8k/test.jsonl"))?;
        let items: Vec<(usize, Example)> = self.limited(
            questions
                .ordered()
                .into_iter()
                .map(|(i, e)| (i, e.clone()))
                .collect(),
        );
        let prompts: Vec<Vec<Turn>> = items
            .iter()
            .map(|(_, e)| e.turns.iter().take(1).cloned().collect())
            .collect();
        let completions = self.answers("math", &prompts)?;
        let samples: Vec<gsm8k::Sample> = items
            .iter()
            .zip(&completions)
            .map(|((idx, _), c)| gsm8k::Sample {
                idx: *idx,
                completion: c.clone(),
            })
            .collect();
        let report = gsm8k::score(&questions, &samples)?;
        let lines = samples
            .iter()
            .map(|s| json!({"idx": s.idx, "completion": s.completion}))
            .collect();
        Ok((report, lines))
    }

    fn gsm8k(&mut self) -> Result<Value> {
        let (r, lines) = self.math()?;
        self.scores.insert("gsm8k.strict".into(), r.accuracy_strict);
        self.scores
            .insert("gsm8k.flexible".into(), r.accuracy_flexible);
        self.samples.insert("gsm8k".into(), lines);
        Ok(math_detail(&r))
    }

    /// Generate `n` completions per HumanEval-format problem and score them in the sandbox.
    fn code(&mut self, n: usize) -> Result<(humaneval::Report, Vec<Value>)> {
        let problems = self.limited(humaneval::load_problems(
            &self.path("humaneval/HumanEval.jsonl.gz"),
        )?);
        let prompts: Vec<Vec<Turn>> = problems
            .iter()
            .map(|p| vec![Turn::user(code_prompt(p))])
            .collect();
        let completions: Vec<(usize, String)> = if n <= 1 {
            self.answers("code", &prompts)?
                .into_iter()
                .enumerate()
                .collect()
        } else {
            let mut many = Vec::with_capacity(prompts.len() * n);
            let mut owner = Vec::with_capacity(prompts.len() * n);
            for (i, p) in prompts.iter().enumerate() {
                for _ in 0..n {
                    many.push(p.clone());
                    owner.push(i);
                }
            }
            let opts = GenOptions {
                temperature: self.spec.temperature,
                top_p: 0.95,
                ..self.greedy()
            };
            let v = self.generator.answer("code", &many, &opts)?;
            owner.into_iter().zip(v).collect()
        };
        let samples: Vec<humaneval::Sample> = completions
            .iter()
            .map(|(i, c)| humaneval::Sample {
                task_id: problems[*i].task_id.clone(),
                completion: c.clone(),
            })
            .collect();
        let progress = self.spec.progress;
        let sandbox = self.sandbox()?;
        let bar = progress_bar("code", "sandbox", samples.len(), progress);
        let opts = humaneval::ScoreOptions {
            ks: vec![1, 10, 100],
            extract_code: true,
        };
        let report = humaneval::score(&problems, &samples, sandbox, &opts, || bar.inc(1))?;
        bar.finish_and_clear();
        let lines = samples
            .iter()
            .map(|s| json!({"task_id": s.task_id, "completion": s.completion}))
            .collect();
        Ok((report, lines))
    }

    fn humaneval(&mut self) -> Result<Value> {
        let (r, lines) = self.code(self.spec.humaneval_samples.max(1))?;
        for (k, v) in &r.pass_at_k {
            self.scores.insert(format!("humaneval.pass@{k}"), *v);
        }
        self.samples.insert("humaneval".into(), lines);
        Ok(code_detail(&r))
    }

    fn mtbench(&mut self) -> Result<Value> {
        let questions = self.limited(mtbench::load_questions(
            &self.path("mt_bench/question.jsonl"),
        )?);
        let first: Vec<Vec<Turn>> = questions
            .iter()
            .map(|q| vec![Turn::user(q.turns[0].clone())])
            .collect();
        let a1 = self
            .generator
            .answer("mtbench turn 1", &first, &self.greedy())?;
        let second_idx: Vec<usize> = (0..questions.len())
            .filter(|&i| questions[i].turns.len() > 1)
            .collect();
        let second: Vec<Vec<Turn>> = second_idx
            .iter()
            .map(|&i| {
                vec![
                    Turn::user(questions[i].turns[0].clone()),
                    Turn::assistant(a1[i].clone()),
                    Turn::user(questions[i].turns[1].clone()),
                ]
            })
            .collect();
        let a2 = self
            .generator
            .answer("mtbench turn 2", &second, &self.greedy())?;
        let mut answers: Vec<Vec<String>> = a1.into_iter().map(|a| vec![a]).collect();
        for (i, a) in second_idx.into_iter().zip(a2) {
            answers[i].push(a);
        }
        self.samples.insert(
            "mtbench".into(),
            questions
                .iter()
                .zip(&answers)
                .map(|(q, a)| json!({"question_id": q.question_id, "category": q.category, "turns": a}))
                .collect(),
        );
        match &self.spec.judge {
            Some(cfg) => {
                let prompts =
                    mtbench::load_judge_prompts(&self.path("mt_bench/judge_prompts.jsonl"))?;
                let refs =
                    mtbench::load_answers(&self.path("mt_bench/reference_answer/gpt-4.jsonl"))?;
                let judge = Judge::new(cfg.clone());
                let n: usize = questions.iter().map(|q| q.turns.len().min(2)).sum();
                let bar = progress_bar("mtbench", "judge", n, self.spec.progress);
                let r =
                    mtbench::judge_answers(&judge, &prompts, &questions, &answers, &refs, || {
                        bar.inc(1)
                    })?;
                bar.finish_and_clear();
                for (k, v) in [("score", r.score), ("turn1", r.turn1), ("turn2", r.turn2)] {
                    if let Some(v) = v {
                        self.scores.insert(format!("mtbench.{k}"), v);
                    }
                }
                let mut d = serde_json::to_value(&r).map_err(internal)?;
                if let Value::Object(m) = &mut d {
                    m.insert("scale".into(), json!("1-10 (judge rating)"));
                }
                Ok(d)
            }
            None => {
                let gpt4 = mtbench::load_answers(&self.path("mt_bench/model_answer/gpt-4.jsonl"))?;
                let r = mtbench::proxy(&questions, &answers, &gpt4);
                if let Some(p) = r.proxy {
                    self.scores.insert("mtbench.proxy".into(), p);
                }
                serde_json::to_value(&r).map_err(internal)
            }
        }
    }

    /// The NLL sets available in the data directory (see the module docs).
    fn nll_sets(&self) -> Result<(Vec<NllSet>, Vec<String>)> {
        let mut sets = Vec::new();
        let mut missing = Vec::new();
        let math = self.path("gsm8k/test.jsonl");
        if math.is_file() {
            let q = gsm8k::Questions::load(&math)?;
            let v = q.ordered().into_iter().map(|(_, e)| e.clone()).collect();
            sets.push((Ability::Math, self.limited(v)));
        } else {
            missing.push("gsm8k/test.jsonl".to_string());
        }
        let code = self.path("humaneval/HumanEval.jsonl.gz");
        if code.is_file() {
            let v = humaneval::load_problems(&code)?
                .into_iter()
                .map(|p| Example {
                    id: p.task_id.clone(),
                    ability: Ability::Code,
                    turns: vec![
                        Turn::user(code_prompt(&p)),
                        Turn::assistant(format!("{}{}", p.prompt, p.canonical_solution.trim_end())),
                    ],
                    meta: Meta::default(),
                })
                .collect();
            sets.push((Ability::Code, self.limited(v)));
        } else {
            missing.push("humaneval/HumanEval.jsonl.gz".to_string());
        }
        let synth_general = self.path(synth::GENERAL_EVAL);
        let mt_q = self.path("mt_bench/question.jsonl");
        let mt_a = self.path("mt_bench/model_answer/gpt-4.jsonl");
        if synth_general.is_file() {
            let v = load_general_eval(&synth_general)?
                .iter()
                .map(|i| i.to_example())
                .collect();
            sets.push((Ability::General, self.limited(v)));
        } else if mt_q.is_file() && mt_a.is_file() {
            let answers = mtbench::load_answers(&mt_a)?;
            let mut v = Vec::new();
            for q in mtbench::load_questions(&mt_q)? {
                let Some(a) = answers.get(&q.question_id) else {
                    continue;
                };
                let turns = q
                    .turns
                    .iter()
                    .zip(a)
                    .flat_map(|(u, r)| [Turn::user(u.clone()), Turn::assistant(r.clone())])
                    .collect();
                v.push(Example {
                    id: format!("mt_bench-{}", q.question_id),
                    ability: Ability::General,
                    turns,
                    meta: Meta {
                        category: Some(q.category),
                        ..Meta::default()
                    },
                });
            }
            sets.push((Ability::General, self.limited(v)));
        } else {
            missing.push(format!(
                "{} (or mt_bench/question.jsonl + model_answer/gpt-4.jsonl)",
                synth::GENERAL_EVAL
            ));
        }
        Ok((sets, missing))
    }

    fn nll(&mut self) -> Result<Value> {
        let (sets, missing) = self.nll_sets()?;
        if sets.is_empty() {
            return Err(Error::file(
                &self.spec.data_dir,
                format!("no NLL evaluation files: {}", missing.join(", ")),
            ));
        }
        let max_len = self
            .spec
            .max_len
            .min(self.generator.model.config().max_position_embeddings);
        let rows = heldout_nll(
            &self.generator.model,
            &self.generator.tokenizer,
            &sets,
            max_len,
            self.spec.batch_size,
        )?;
        for r in &rows {
            if let Some(v) = r.nll {
                self.scores.insert(format!("nll.{}", r.ability), v);
            }
        }
        Ok(
            json!({"abilities": rows, "missing": missing, "max_len": max_len,
                  "what": "mean NLL (nats) per answer token; examples with no answer token within max_len are dropped and counted"}),
        )
    }

    fn synth(&mut self) -> Result<Value> {
        if !self.path(synth::MANIFEST).is_file() {
            return Err(Error::file(
                &self.spec.data_dir,
                format!(
                    "bench synth needs a synthetic suite (made by `mixprobe data synth`, with {})",
                    synth::MANIFEST
                ),
            ));
        }
        let (m, math_lines) = self.math()?;
        self.scores.insert("synth.math".into(), m.accuracy_strict);
        self.samples.insert("synth.math".into(), math_lines);
        let (c, code_lines) = self.code(1)?;
        if let Some(p) = c.pass_at_k.get(&1) {
            self.scores.insert("synth.code".into(), *p);
        }
        self.samples.insert("synth.code".into(), code_lines);
        let items = self.limited(load_general_eval(&self.path(synth::GENERAL_EVAL))?);
        let prompts: Vec<Vec<Turn>> = items.iter().map(|i| i.prompt_turns()).collect();
        let replies = self.answers("general", &prompts)?;
        let mut total = 0.0;
        let mut by_task: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        let mut lines = Vec::with_capacity(items.len());
        for (item, reply) in items.iter().zip(&replies) {
            let s = score_general(item, reply);
            let unit = general_unit(s);
            total += unit;
            let t = by_task.entry(item.task.clone()).or_default();
            t.0 += unit;
            t.1 += 1;
            lines.push(json!({"id": item.id, "completion": reply, "score": s}));
        }
        if !items.is_empty() {
            self.scores
                .insert("synth.general".into(), total / items.len() as f64);
        }
        self.samples.insert("synth.general".into(), lines);
        let by_task: BTreeMap<String, f64> = by_task
            .into_iter()
            .map(|(k, (s, n))| (k, s / n as f64))
            .collect();
        Ok(json!({
            "math": math_detail(&m),
            "code": code_detail(&c),
            "general": {"n": items.len(), "score": self.scores.get("synth.general"),
                        "by_task": by_task, "scale": "rule score 1-10 mapped to (s-1)/9"},
            "note": "synthetic suite: a laptop-scale testbed, not comparable to GSM8K, HumanEval or MT-Bench",
        }))
    }
}

/// A general rule score (1–10) on [0,1]: (s − 1) / 9.
pub fn general_unit(score: u8) -> f64 {
    (f64::from(score.clamp(1, 10)) - 1.0) / 9.0
}

fn math_detail(r: &gsm8k::Report) -> Value {
    json!({"n": r.n_problems, "correct_strict": r.correct_strict,
           "correct_flexible": r.correct_flexible, "accuracy_strict": r.accuracy_strict,
           "accuracy_flexible": r.accuracy_flexible, "tolerance": r.tolerance})
}

fn code_detail(r: &humaneval::Report) -> Value {
    let pass: BTreeMap<String, f64> = r
        .pass_at_k
        .iter()
        .map(|(k, v)| (format!("pass@{k}"), *v))
        .collect();
    json!({"n_problems": r.n_problems, "n_samples": r.n_samples, "n_passed": r.n_passed,
           "pass": pass, "status_counts": r.status_counts, "sandbox_s": r.seconds,
           "sandbox": r.sandbox})
}

fn internal(e: serde_json::Error) -> Error {
    Error::Internal(format!("serializing results: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(scores: &[(&str, f64)]) -> EvalResults {
        EvalResults {
            model: "m".into(),
            template: "plain".into(),
            device: "cpu".into(),
            wall_s: 0.0,
            scores: scores.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            details: Value::Null,
            samples: BTreeMap::new(),
        }
    }

    #[test]
    fn bench_lists_parse_and_reject_unknown_names() {
        assert_eq!(
            Bench::parse_list("gsm8k, HumanEval,mt_bench,gsm8k").unwrap(),
            [Bench::Gsm8k, Bench::HumanEval, Bench::MtBench]
        );
        assert!(
            Bench::parse_list("nll,chess")
                .unwrap_err()
                .to_string()
                .contains("chess")
        );
        assert!(Bench::parse_list(" , ").is_err());
    }

    #[test]
    fn matrix_places_each_key_in_its_ability_column() {
        let stages = vec![
            (
                "stage-1".to_string(),
                results(&[("nll.math", 2.0), ("gsm8k.strict", 0.5), ("x.y", 1.0)]),
            ),
            (
                "final".to_string(),
                results(&[
                    ("nll.general", 3.0),
                    ("humaneval.pass@1", 0.25),
                    ("mtbench.proxy", 0.1),
                ]),
            ),
        ];
        let m = ForgettingMatrix::from_stages(&stages);
        assert_eq!(m.stages, ["stage-1", "final"]);
        assert_eq!(m.abilities, ["math", "code", "general"]);
        assert_eq!(
            m.metrics["nll"],
            [[Some(2.0), None, None], [None, None, Some(3.0)]]
        );
        assert_eq!(
            m.metrics["gsm8k.strict"],
            [[Some(0.5), None, None], [None, None, None]]
        );
        assert_eq!(m.metrics["humaneval.pass@1"][1], [None, Some(0.25), None]);
        assert_eq!(m.metrics["mtbench.proxy"][1], [None, None, Some(0.1)]);
        assert!(!m.metrics.contains_key("x.y"));
    }
}
