//! `mixprobe eval`: generate with a model (or every checkpoint of a training run), score the
//! requested benchmarks, write the results, the generations and (for a run) the forgetting
//! matrix.
use mixprobe::data::template::ChatTemplate;
use mixprobe::eval::sandbox::{Limits, SandboxConfig};
use mixprobe::eval::{Bench, EvalResults, EvalSpec, JudgeConfig, evaluate_model, evaluate_run_dir};
use mixprobe::model::device::DeviceKind;
use mixprobe::util::write_json;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
#[command(after_help = "\
Score keys (results.json \"scores\"): gsm8k.strict, gsm8k.flexible (accuracy); humaneval.pass@1 \
(pass@k with --samples-per-task n >= k); mtbench.score, mtbench.turn1, mtbench.turn2 (judge rating \
1-10, only with --judge-url); mtbench.proxy (without a judge: token-F1 against GPT-4's answers, NOT an \
MT-Bench score); nll.math, nll.code, nll.general (mean NLL in nats per answer token); synth.math, \
synth.code, synth.general (synthetic suite: strict accuracy, pass@1, rule score mapped to [0,1]).

For a run directory (it has run.json) every stage-N/ and final/ is evaluated; results.json then holds \
{\"run_dir\", \"stages\": [...], \"forgetting\": ...} and the stage x ability matrix is also written to \
forgetting-eval.json next to it. Generations go next to results.json as <stem>[.<stage>].<bench>.jsonl, \
in the formats `mixprobe score gsm8k|humaneval --samples` read.")]
pub struct Args {
    /// A Hugging Face model directory (config.json, model.safetensors, tokenizer.json) or a
    /// `mixprobe train` run directory (run.json, stage-N/, final/).
    #[arg(value_name = "MODEL_OR_RUN_DIR")]
    pub target: PathBuf,
    /// Data directory in the ../shared/data layout (gsm8k/, humaneval/, mt_bench/) or a synthetic
    /// suite made by `mixprobe data synth`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Benchmarks, comma-separated: gsm8k, humaneval, mtbench, nll, synth.
    #[arg(long, value_name = "LIST", default_value = "gsm8k,humaneval,nll")]
    pub bench: String,
    /// Evaluate only the first N items of every benchmark.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// At most this many generated tokens per answer.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Prompts generated together in one batch (and sequences per NLL batch).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub batch_size: usize,
    /// Chat template for the prompts (vicuna_v1.1, chatml, plain); default: the run's run.json,
    /// else chatml when the tokenizer has <|im_start|>, else vicuna_v1.1.
    #[arg(long, value_name = "NAME")]
    pub template: Option<ChatTemplate>,
    /// HumanEval completions per problem (n of pass@k); above 1 they are sampled at
    /// --temperature with top-p 0.95.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub samples_per_task: usize,
    /// Sampling temperature for HumanEval when --samples-per-task is above 1.
    #[arg(long, value_name = "T", default_value_t = 0.8)]
    pub temperature: f32,
    /// Longest sequence (tokens) scored by the nll bench; longer ones keep their head.
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub max_len: usize,
    /// MT-Bench judge: base URL of an OpenAI-compatible API (e.g. https://api.openai.com/v1).
    /// Without it, mtbench reports only the offline proxy `mtbench.proxy`.
    #[arg(long, value_name = "URL", requires = "judge_model")]
    pub judge_url: Option<String>,
    /// Judge model name (e.g. gpt-4).
    #[arg(long, value_name = "MODEL", requires = "judge_url")]
    pub judge_model: Option<String>,
    /// Judge API key (default: $MIXPROBE_JUDGE_KEY, else $OPENAI_API_KEY; none is sent if unset).
    #[arg(long, value_name = "KEY")]
    pub judge_key: Option<String>,
    /// Attempts per judgment before it counts as an HTTP failure (backoff 1 s, doubling).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub judge_attempts: u32,
    /// Timeout per judge request, in seconds.
    #[arg(long, value_name = "S", default_value_t = 120.0)]
    pub judge_timeout: f64,
    /// Device: cpu, or cuda (falls back to the CPU with a warning when unavailable).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Seed for sampled generation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Wall-clock limit per sandboxed program, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub timeout: f64,
    /// Sandboxed programs run at once (default: the core count, capped by memory).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Do not draw progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Where to write the results (JSON).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let spec = spec(&args)?;
    let is_run = args.target.join("run.json").is_file();
    if is_run {
        let r = evaluate_run_dir(&args.target, &spec)?;
        let forgetting_path = sibling(&args.out, "forgetting-eval.json");
        for (stage, res) in &r.stages {
            res.write_samples(&args.out, Some(stage))?;
            print_scores(stage, res);
        }
        let mut stages = Vec::with_capacity(r.stages.len());
        for (s, res) in &r.stages {
            let mut v = serde_json::to_value(res)?;
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("stage".into(), json!(s));
            }
            stages.push(v);
        }
        write_json(
            &args.out,
            &json!({"run_dir": args.target, "benches": spec.benches, "limit": spec.limit,
                    "wall_s": start.elapsed().as_secs_f64(), "stages": stages,
                    "forgetting": r.forgetting}),
        )?;
        write_json(&forgetting_path, &r.forgetting)?;
        println!(
            "{} checkpoints in {:.1} s -> {} (matrix: {})",
            r.stages.len(),
            start.elapsed().as_secs_f64(),
            args.out.display(),
            forgetting_path.display()
        );
    } else {
        let res = evaluate_model(&args.target, &spec)?;
        res.write_samples(&args.out, None)?;
        write_json(&args.out, &res)?;
        print_scores("model", &res);
        println!(
            "done in {:.1} s -> {}",
            start.elapsed().as_secs_f64(),
            args.out.display()
        );
    }
    Ok(())
}

fn user(msg: String) -> anyhow::Error {
    crate::cli::UserError(msg).into()
}

fn spec(args: &Args) -> anyhow::Result<EvalSpec> {
    let benches = Bench::parse_list(&args.bench)?;
    if args.batch_size == 0 {
        return Err(user("--batch-size must be at least 1".into()));
    }
    if args.samples_per_task == 0 {
        return Err(user("--samples-per-task must be at least 1".into()));
    }
    let secs = |v: f64, flag: &str| {
        Duration::try_from_secs_f64(v)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| user(format!("{flag} {v} must be a positive number of seconds")))
    };
    let judge = match (&args.judge_url, &args.judge_model) {
        (Some(url), Some(model)) => {
            let key = args
                .judge_key
                .clone()
                .or_else(|| std::env::var("MIXPROBE_JUDGE_KEY").ok())
                .or_else(|| std::env::var("OPENAI_API_KEY").ok())
                .filter(|k| !k.is_empty());
            let mut cfg = JudgeConfig::new(url, model, key);
            cfg.attempts = args.judge_attempts.max(1);
            cfg.timeout = secs(args.judge_timeout, "--judge-timeout")?;
            Some(cfg)
        }
        _ => None,
    };
    let mut spec = EvalSpec::new(args.data_dir.clone(), benches);
    spec.limit = args.limit;
    spec.max_new_tokens = args.max_new_tokens;
    spec.batch_size = args.batch_size;
    spec.judge = judge;
    spec.device = args.device;
    spec.progress = !args.no_progress;
    spec.seed = args.seed;
    spec.template = args.template;
    spec.humaneval_samples = args.samples_per_task;
    spec.temperature = args.temperature;
    spec.max_len = args.max_len;
    spec.sandbox = SandboxConfig {
        limits: Limits {
            timeout: secs(args.timeout, "--timeout")?,
            ..Limits::default()
        },
        python: None,
        jobs: args.jobs,
    };
    Ok(spec)
}

/// `dir/of/out/<name>`.
fn sibling(out: &Path, name: &str) -> PathBuf {
    out.parent()
        .map(|p| p.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn print_scores(label: &str, res: &EvalResults) {
    let s: Vec<String> = res
        .scores
        .iter()
        .map(|(k, v)| format!("{k} = {v:.4}"))
        .collect();
    println!(
        "{label}: {} (template {}, {:.1} s)",
        s.join(", "),
        res.template,
        res.wall_s
    );
}
