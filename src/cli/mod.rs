//! Subcommand definitions and glue; each file owns one command family.
use clap::Subcommand;

pub mod ablate;
pub mod bench;
pub mod compose;
pub mod demo;
pub mod eval;
pub mod export;
pub mod fetch;
pub mod gguf;
pub mod model;
pub mod probe;
pub mod report;
pub mod run;
pub mod score;
pub mod stats;
pub mod synth;
pub mod tokenizer;
pub mod train;

/// Install a Ctrl-C handler and return the flag it sets: the first Ctrl-C prints `first` and asks
/// the running job to checkpoint and stop; a second one exits at once (code 130).
pub fn interrupt_flag(
    first: &'static str,
) -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("\n{first}");
    })
    .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))?;
    Ok(stop)
}

/// An error the binary reports as the user's (exit code 2) without a library error behind it,
/// e.g. a flag combination clap cannot express.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

#[derive(Subcommand)]
pub enum DataCmd {
    /// Per-file record counts, turns, and token-length percentiles.
    Stats(stats::Args),
    /// Download a public dataset from its canonical URL, verifying its sha256.
    Fetch(fetch::Args),
    /// Remove code- and/or math-flavoured conversations from ShareGPT (the paper's ablation).
    Ablate(ablate::Args),
    /// Train and cross-validate the learned ablation detector on hand labels.
    AblateTrain(ablate::TrainArgs),
    /// Score an ablation detector (rules, learned, an LLM tagger) against hand labels.
    AblateScore(ablate::ScoreArgs),
    /// Generate the synthetic ability suite (math, code, general) in the real formats.
    Synth(synth::Args),
}

#[derive(Subcommand)]
pub enum TokenizerCmd {
    /// Train a byte-level BPE tokenizer on a recipe's data (or files) and write tokenizer.json.
    Train(tokenizer::TrainArgs),
}

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Print architecture, parameter count, dtype and memory estimate of a model directory.
    Info(model::InfoArgs),
    /// Run one sequence and write every layer's hidden states and the logits (safetensors).
    Forward(model::ForwardArgs),
    /// Import a llama.cpp GGUF (LLaMA architecture) into a Hugging Face model directory.
    ImportGguf(gguf::Args),
}

pub fn run_data(cmd: DataCmd) -> anyhow::Result<()> {
    match cmd {
        DataCmd::Stats(a) => stats::run(a),
        DataCmd::Fetch(a) => fetch::run(a),
        DataCmd::Ablate(a) => ablate::run(a),
        DataCmd::AblateTrain(a) => ablate::run_train(a),
        DataCmd::AblateScore(a) => ablate::run_score(a),
        DataCmd::Synth(a) => synth::run(a),
    }
}

pub fn run_tokenizer(cmd: TokenizerCmd) -> anyhow::Result<()> {
    match cmd {
        TokenizerCmd::Train(a) => tokenizer::run_train(a),
    }
}

pub fn run_model(cmd: ModelCmd) -> anyhow::Result<()> {
    match cmd {
        ModelCmd::Info(a) => model::run_info(a),
        ModelCmd::Forward(a) => model::run_forward(a),
        ModelCmd::ImportGguf(a) => gguf::run(a),
    }
}
