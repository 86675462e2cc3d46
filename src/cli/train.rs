//! `mixprobe train RECIPE (--model DIR | --preset NAME) --out RUN`: supervised fine-tuning of a
//! composed recipe, every stage of its strategy in order, with checkpoints and resume.
use mixprobe::data::bpe::DEFAULT_VOCAB_SIZE;
use mixprobe::data::template::ChatTemplate;
use mixprobe::model::device::{self, DeviceKind};
use mixprobe::model::{CpuAutodiff, Precision, Preset};
use mixprobe::train::config::TrainConfig;
use mixprobe::train::run::{Controls, Outcome, RunSpec, Start, Summary, run as train_run};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

const AFTER_HELP: &str = "\
Training: next-token cross-entropy on the assistant tokens only (the chat template's loss mask), \
averaged per token over each optimizer step; AdamW (torch.optim.AdamW semantics, decoupled weight \
decay); linear warmup then cosine decay; gradient clipping by global norm; gradient accumulation; \
micro-batches built by length bucketing. Each stage of the recipe is one such run over its mixture \
(shuffled per epoch from the seed); stage n starts from stage n-1's weights with a fresh optimizer \
and schedule unless --carry-optimizer.

Hyperparameters: --hparams picks a preset (paper: 3 epochs per stage from the recipe, lr 2e-5, 3% \
warmup, cosine to 0, batch 4 x 16 accumulation, max length 2048, no weight decay, clip 1.0; tiny: \
lr 3e-3, 5% warmup, cosine to 10%, batch 16, max length 256, 2 epochs, weight decay 0.01) or a TOML \
file of fields (lr, epochs, batch_size, grad_accum, max_len, warmup_ratio, min_lr_ratio, \
weight_decay, beta1, beta2, eps, clip, checkpoint_every, carry_optimizer, max_steps, bucket_steps, \
log_every, eval_limit; optional `preset = \"tiny\"` as the base). Flags override single fields. The \
default is tiny with --preset and paper with --model.

RUN holds recipe.toml, manifest.json, tokenizer.json, run.json (versions, git revision, seed, device, \
hyperparameters, stage sizes), metrics.jsonl (one JSON object per logged step: step, stage, \
stage_name, stage_step, epoch, lr, loss, loss_by_source, targets, tokens, tokens_per_s, grad_norm), \
forgetting.json (held-out NLL per ability before training and after each stage), stage-1/, stage-2/, \
..., final/ (Hugging Face directories: config.json, model.safetensors, tokenizer.json) and \
checkpoint/ (the latest resumable checkpoint: weights, AdamW state, data position; written \
atomically).

--resume continues RUN from its latest checkpoint with the same arguments; on the CPU the final \
weights are bit-identical to an uninterrupted run. Ctrl-C writes a checkpoint after the current step \
and exits (press it twice to exit at once). A NaN/inf loss stops the run with an error and keeps \
the last good checkpoint.";

/// Supervised fine-tuning of a composed recipe (every stage in order), with checkpoints.
#[derive(clap::Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
#[command(group(clap::ArgGroup::new("start").required(true).args(["model", "preset"])))]
pub struct Args {
    /// The recipe file (TOML); see recipes/.
    pub recipe: PathBuf,
    /// Directory the recipe's source paths are relative to (laid out like ../shared/data).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Start from this Hugging Face model directory (config.json, model.safetensors,
    /// tokenizer.json).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Start from scratch with this model preset (tiny, small), initialized from the seed;
    /// a byte-level BPE tokenizer is trained on the recipe's data unless --tokenizer is given.
    #[arg(long, value_name = "NAME", value_parser = Preset::from_name)]
    pub preset: Option<Preset>,
    /// A tokenizer.json to use instead of the model directory's (or of training one for --preset).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Vocabulary size of the BPE tokenizer trained for --preset.
    #[arg(long, default_value_t = DEFAULT_VOCAB_SIZE)]
    pub vocab_size: usize,
    /// Chat template that renders the examples (vicuna_v1.1, chatml, plain); the loss mask covers
    /// the assistant's text and its end-of-turn marker.
    #[arg(long, default_value = "vicuna_v1.1", value_parser = ChatTemplate::from_name)]
    pub template: ChatTemplate,
    /// The run directory (created); see below for its contents.
    #[arg(long, value_name = "RUN")]
    pub out: PathBuf,
    /// Where to train; cuda (needs the `cuda` build feature) falls back to the CPU with a
    /// warning when unavailable.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Precision of the matrix products. bf16 is mixed precision: every matrix product (linear
    /// layers, attention, lm head) in bf16, while the master weights, norms, softmax, loss,
    /// gradients reaching the optimizer and the optimizer state stay f32 (checkpoints are f32).
    /// Default: bf16 where the device computes in bf16 (CUDA), fp32 on the CPU, whose ndarray
    /// backend has no bf16 (asking for bf16 there is an error).
    #[arg(long, value_enum, value_name = "PRECISION")]
    pub precision: Option<Precision>,
    /// Continue the run in --out from its latest checkpoint (same arguments as the first time).
    #[arg(long)]
    pub resume: bool,
    /// Hyperparameters: `paper`, `tiny` or a TOML file (default: tiny with --preset, paper with
    /// --model).
    #[arg(long, value_name = "paper|tiny|FILE")]
    pub hparams: Option<String>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Epochs of every stage (default: each stage's `epochs` from the recipe for paper).
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Examples per micro-batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step (gradient accumulation).
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Tokens per sequence; longer examples keep their head and are counted as truncated.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Fraction of each stage's steps spent in linear warmup.
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    /// Final learning rate of the cosine decay as a fraction of the peak.
    #[arg(long)]
    pub min_lr_ratio: Option<f64>,
    /// AdamW decoupled weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// AdamW beta1.
    #[arg(long)]
    pub beta1: Option<f64>,
    /// AdamW beta2.
    #[arg(long)]
    pub beta2: Option<f64>,
    /// AdamW epsilon.
    #[arg(long)]
    pub eps: Option<f64>,
    /// Clip the global gradient norm to this value (0 disables clipping).
    #[arg(long)]
    pub clip: Option<f64>,
    /// Write a resumable checkpoint every N optimizer steps (0: only at stage ends).
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Keep the AdamW state across stages instead of starting each stage with a fresh one.
    #[arg(long)]
    pub carry_optimizer: bool,
    /// Cap the optimizer steps of every stage (smoke runs); the schedule spans the capped stage.
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,
    /// Write a metrics line every N optimizer steps (and at each stage's last step).
    #[arg(long, value_name = "N")]
    pub log_every: Option<usize>,
    /// Optimizer steps whose examples are length-sorted together into micro-batches.
    #[arg(long, value_name = "N")]
    pub bucket_steps: Option<usize>,
    /// Held-out examples per ability evaluated after each stage (default: all).
    #[arg(long, value_name = "N")]
    pub eval_limit: Option<usize>,
    /// Cap each source at its first N examples before sampling (smoke runs).
    #[arg(long, value_name = "N")]
    pub limit_examples: Option<usize>,
    /// Held-out examples per source (default: the recipe's, or min(200, N/5) with
    /// --limit-examples N).
    #[arg(long, value_name = "N")]
    pub holdout: Option<usize>,
    /// Override the recipe's seed (composition, data order and preset initialization).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip malformed records in the sources instead of failing (counted in manifest.json).
    #[arg(long)]
    pub skip_invalid: bool,
    /// Worker threads for CPU training (the rayon pool that runs the fast path's matrix
    /// products and kernels; default: RAYON_NUM_THREADS or all cores); keep it fixed for
    /// bit-identical resumes.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Write a checkpoint and stop after N optimizer steps of this invocation (to test resume).
    #[arg(long, value_name = "N")]
    pub stop_after: Option<u64>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

impl Args {
    /// The hyperparameters: preset or file, then single-field overrides.
    fn hparams(&self) -> anyhow::Result<(TrainConfig, String)> {
        let base = self.hparams.clone().unwrap_or_else(|| {
            if self.preset.is_some() {
                "tiny"
            } else {
                "paper"
            }
            .into()
        });
        let mut c = TrainConfig::from_spec(&base)?;
        let mut overrides = Vec::new();
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field {
                    c.$field = v;
                    overrides.push(stringify!($field));
                }
            )*};
        }
        set!(
            lr,
            batch_size,
            grad_accum,
            max_len,
            warmup_ratio,
            min_lr_ratio,
            weight_decay,
            beta1,
            beta2,
            eps,
            clip
        );
        set!(checkpoint_every, log_every, bucket_steps);
        macro_rules! set_some {
            ($($field:ident),*) => {$(
                if self.$field.is_some() {
                    c.$field = self.$field;
                    overrides.push(stringify!($field));
                }
            )*};
        }
        set_some!(epochs, max_steps, eval_limit);
        if self.carry_optimizer {
            c.carry_optimizer = true;
            overrides.push("carry_optimizer");
        }
        c.validate()?;
        let source = if overrides.is_empty() {
            base
        } else {
            format!("{base} with --{}", overrides.join(", --").replace('_', "-"))
        };
        Ok((c, source))
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| anyhow::anyhow!("cannot set up {n} worker threads: {e}"))?;
    }
    let (hparams, hparams_source) = args.hparams()?;
    let (kind, warning) = device::resolve(args.device);
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let start = match (&args.model, args.preset) {
        (Some(dir), _) => Start::Model(dir.clone()),
        (None, Some(p)) => Start::Preset(p),
        (None, None) => {
            return Err(crate::cli::UserError("pass --model DIR or --preset NAME".into()).into());
        }
    };
    let spec = RunSpec {
        recipe: args.recipe.clone(),
        data_dir: args.data_dir.clone(),
        start,
        tokenizer: args.tokenizer.clone(),
        vocab_size: args.vocab_size,
        template: args.template,
        out: args.out.clone(),
        hparams,
        hparams_source,
        seed: args.seed,
        limit_examples: args.limit_examples,
        holdout: args.holdout,
        skip_invalid: args.skip_invalid,
        resume: args.resume,
        device: format!("{kind:?}").to_lowercase(),
        precision: args.precision,
        command: std::env::args().collect(),
    };
    let stop = crate::cli::interrupt_flag(
        "interrupt: writing a checkpoint after the current step (Ctrl-C again to exit at once)",
    )?;
    let controls = Controls {
        stop: Some(stop.clone()),
        stop_after: args.stop_after,
        progress: !args.quiet,
    };
    let summary = match kind {
        DeviceKind::Cpu => train_run::<CpuAutodiff>(&spec, &controls, &Default::default())?,
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            type Cuda = burn::backend::Autodiff<device::CudaBackend>;
            train_run::<Cuda>(&spec, &controls, &Default::default())?
        }
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => {
            unreachable!("device::resolve never picks CUDA without the `cuda` feature")
        }
    };
    report(&args, &summary);
    match &summary.outcome {
        Outcome::Finished => Ok(()),
        Outcome::Stopped { checkpoint } if stop.load(Ordering::SeqCst) => anyhow::bail!(
            "interrupted after step {}; checkpoint written to {}; continue with the same command plus --resume",
            summary.global_step,
            checkpoint.display()
        ),
        Outcome::Stopped { checkpoint } => {
            println!(
                "stopped after {} step(s) of this invocation (step {} of the run); checkpoint {}; continue with --resume",
                summary.session_steps,
                summary.global_step,
                checkpoint.display()
            );
            Ok(())
        }
    }
}

fn report(args: &Args, s: &Summary) {
    for (i, st) in s.stages.iter().enumerate() {
        let dir = st
            .dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "not finished".into());
        println!(
            "stage {} {}: {} examples, {} epoch(s), {} step(s) -> {dir}",
            i + 1,
            st.name,
            st.examples,
            st.epochs,
            st.steps
        );
    }
    let f = &s.forgetting;
    if !f.rows.is_empty() {
        println!("held-out NLL per token (forgetting.json):");
        println!(
            "  {:<20} {}",
            "after",
            f.abilities
                .iter()
                .map(|a| format!("{a:>9}"))
                .collect::<String>()
        );
        for r in &f.rows {
            let cells: String = f
                .abilities
                .iter()
                .map(|a| {
                    r.nll
                        .get(a)
                        .and_then(|v| v.as_f64())
                        .map_or("        -".into(), |x| format!("{x:>9.4}"))
                })
                .collect();
            println!("  {:<20} {cells}", format!("{} {}", r.stage, r.name));
        }
    }
    if s.outcome == Outcome::Finished {
        println!(
            "trained {} step(s); final model: {}",
            s.global_step,
            args.out.join("final").display()
        );
    }
}
