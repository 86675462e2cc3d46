//! `mixprobe export RECIPE --format llamafactory|alpaca|sharegpt --out DIR`: write a recipe's
//! stages for an external trainer, composed exactly as `mixprobe compose` does.
use crate::cli::compose::ComposeFlags;
use mixprobe::recipe::export::PLACEHOLDER_MODEL;
use mixprobe::recipe::{ExportFormat, TrainSettings, export};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Compose a recipe (same sampling as `mixprobe compose`, see its --help) and write it for an \
external trainer.

--format llamafactory (default) writes, per stage and per held-out source, a ShareGPT-format JSON \
file ([{\"conversations\": [{\"from\": \"human\", ...}, {\"from\": \"gpt\", ...}], \"system\": ...}]), \
dataset_info.json registering each, one LLaMA-Factory training YAML per stage (stage N starts \
from stage N-1's output_dir; lr 2e-5, cosine, warmup ratio 0.03, the stage's epochs, bf16, full \
fine-tuning) and a README.md saying how to run them in order. --format alpaca and --format \
sharegpt write the plain JSON files only. Every export also holds composed/ (the native JSONL and \
manifest.json with every example id) and export.json (files and conversation-normalization counts).";

/// Output format of `mixprobe export`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    /// ShareGPT JSON + dataset_info.json + per-stage training YAML + README for LLaMA-Factory.
    Llamafactory,
    /// Plain Alpaca JSON (instruction, input, output, system, history).
    Alpaca,
    /// Plain ShareGPT JSON (id, conversations), turns unchanged.
    Sharegpt,
}

/// Export a recipe's stages for an external trainer.
#[derive(clap::Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub struct Args {
    #[command(flatten)]
    pub compose: ComposeFlags,
    /// Export format.
    #[arg(long, value_enum, default_value = "llamafactory")]
    pub format: FormatArg,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Base model for stage 1 (local path or Hugging Face id); without it the YAML holds a
    /// placeholder you must edit.
    #[arg(long, default_value = PLACEHOLDER_MODEL)]
    pub base_model: String,
    /// LLaMA-Factory chat template.
    #[arg(long, default_value = "vicuna")]
    pub template: String,
    /// Maximum sequence length in tokens (LLaMA-Factory cutoff_len).
    #[arg(long, default_value_t = 2048)]
    pub cutoff_len: usize,
    /// Peak learning rate (the paper's 2e-5).
    #[arg(long, default_value_t = 2e-5)]
    pub learning_rate: f64,
    /// Per-device batch size.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Gradient accumulation steps (effective batch = GPUs × batch size × this).
    #[arg(long, default_value_t = 4)]
    pub grad_accum: usize,
    /// Directory for the stages' output_dir (default saves/<recipe name>), relative to where
    /// llamafactory-cli runs.
    #[arg(long)]
    pub output_root: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !(args.learning_rate.is_finite() && args.learning_rate > 0.0) {
        return Err(crate::cli::UserError(format!(
            "--learning-rate must be a positive number, got {}",
            args.learning_rate
        ))
        .into());
    }
    if args.batch_size == 0 || args.grad_accum == 0 || args.cutoff_len == 0 {
        return Err(crate::cli::UserError(
            "--batch-size, --grad-accum and --cutoff-len must be at least 1".into(),
        )
        .into());
    }
    let comp = args.compose.compose()?;
    let format = match args.format {
        FormatArg::Llamafactory => ExportFormat::LlamaFactory,
        FormatArg::Alpaca => ExportFormat::Alpaca,
        FormatArg::Sharegpt => ExportFormat::ShareGpt,
    };
    let settings = TrainSettings {
        base_model: args.base_model,
        template: args.template,
        cutoff_len: args.cutoff_len,
        learning_rate: args.learning_rate,
        per_device_train_batch_size: args.batch_size,
        gradient_accumulation_steps: args.grad_accum,
        output_root: args.output_root,
    };
    let report = export(&comp, format, &settings, &args.out)?;
    for d in &report.datasets {
        let n = &d.normalization;
        if !n.dropped_ids.is_empty() {
            eprintln!(
                "{}: dropped {} conversation(s) with no user→assistant pair (ids in export.json)",
                d.name,
                n.dropped_ids.len()
            );
        }
        println!("{}: {} examples", d.file, n.examples_out);
    }
    for c in &report.configs {
        println!("{c}");
    }
    if format == ExportFormat::LlamaFactory && settings.base_model == PLACEHOLDER_MODEL {
        eprintln!(
            "note: {} holds the placeholder base model {PLACEHOLDER_MODEL:?}; edit it or pass --base-model",
            report
                .configs
                .first()
                .map(String::as_str)
                .unwrap_or("the first stage's YAML")
        );
    }
    println!("wrote {} (see README.md there)", args.out.display());
    Ok(())
}
