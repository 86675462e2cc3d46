//! The `mixprobe` binary: a thin layer over the library. Errors caused by the user's input
//! (files, flags, recipes) exit with code 2; anything else with 1.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cli;

#[derive(Parser)]
#[command(
    name = "mixprobe",
    version,
    about = "How SFT data composition shapes LLM abilities: compose recipes, train, evaluate, probe, report",
    long_about = "mixprobe reproduces and extends Dong et al. (ACL 2024), \"How Abilities in Large Language \
Models are Affected by Supervised Fine-tuning Data Composition\": math (GSM8K), code (Code Alpaca / \
HumanEval) and general alignment (ShareGPT / MT-Bench). It composes data recipes (fractions, mixtures, \
ratios, multi-stage strategies such as DMT), reads and validates the real data formats, and exports \
recipes for external trainers.\n\nExit codes: 0 success, 2 bad input (file, record, flag, recipe), 1 \
other failures."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; boxing the largest variant would save nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Read, inspect, fetch and filter datasets.
    #[command(subcommand)]
    Data(cli::DataCmd),
    /// Train a byte-level BPE tokenizer for from-scratch models.
    #[command(subcommand)]
    Tokenizer(cli::TokenizerCmd),
    /// Materialize a recipe: per-stage datasets plus manifest.json.
    Compose(cli::compose::Args),
    /// Export a recipe's stages for an external trainer (LLaMA-Factory, Alpaca, ShareGPT).
    Export(cli::export::Args),
    /// Inspect, import and run LLaMA-family models.
    #[command(subcommand)]
    Model(cli::ModelCmd),
    /// Supervised fine-tuning of a composed recipe, every stage in order, with checkpoints.
    Train(cli::train::Args),
    /// Score externally generated completions (HumanEval in the sandbox, GSM8K answers).
    #[command(subcommand)]
    Score(cli::score::ScoreCmd),
    /// Evaluate a model or every stage of a run: GSM8K, HumanEval, MT-Bench, held-out NLL, synth.
    Eval(cli::eval::Args),
    /// Extract pooled hidden-state embeddings of probe sets from one or more models.
    Probe(cli::probe::ProbeArgs),
    /// Project probe embeddings to 2-D (t-SNE or PCA) and cluster them (k-means).
    Project(cli::probe::ProjectArgs),
    /// Interference metrics per model and layer (silhouette, kNN overlap, ARI, CKA, ...).
    Metrics(cli::probe::MetricsArgs),
    /// Run an experiment grid (train, evaluate, probe every cell), cached and resumable.
    Run(cli::run::Args),
    /// Write the HTML/Markdown report (with PNG and SVG figures) of an experiment directory.
    Report(cli::report::Args),
    /// Benchmarks (forward, generation, training throughput) to compare with other toolkits.
    #[command(subcommand)]
    Bench(cli::bench::BenchCmd),
    /// The embedded default: runs end to end on a fresh clone with no downloads.
    Demo(cli::demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(cmd) => cli::run_data(cmd),
        Command::Tokenizer(cmd) => cli::run_tokenizer(cmd),
        Command::Compose(args) => cli::compose::run(args),
        Command::Export(args) => cli::export::run(args),
        Command::Model(cmd) => cli::run_model(cmd),
        Command::Train(args) => cli::train::run(args),
        Command::Score(cmd) => cli::score::run(cmd),
        Command::Eval(args) => cli::eval::run(args),
        Command::Probe(args) => cli::probe::run_probe(args),
        Command::Project(args) => cli::probe::run_project(args),
        Command::Metrics(args) => cli::probe::run_metrics(args),
        Command::Run(args) => cli::run::run(args),
        Command::Report(args) => cli::report::run(args),
        Command::Bench(cmd) => cli::bench::run(cmd),
        Command::Demo(args) => cli::demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            let user = err
                .chain()
                .find_map(|e| e.downcast_ref::<mixprobe::Error>())
                .map(|e| e.is_user_error())
                .unwrap_or(false)
                || err
                    .chain()
                    .any(|e| e.downcast_ref::<cli::UserError>().is_some());
            ExitCode::from(if user { 2 } else { 1 })
        }
    }
}
