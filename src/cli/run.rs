//! `mixprobe run EXPERIMENT --data-dir DIR --out OUT`: every cell of an experiment grid
//! trained, evaluated and recorded in OUT/results.json, cached and resumable.
use mixprobe::experiment::{Experiment, RunOptions, run_experiment};
use mixprobe::model::Precision;
use mixprobe::model::device::{self, DeviceKind};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
A cell is one (model, recipe, seed) of the experiment's grid; its id is model/recipe. For each cell \
the run trains (OUT/cells/<model>__<recipe>/run/, a `mixprobe train` run directory), evaluates, \
and rewrites OUT/results.json (the input of `mixprobe report OUT`).

Caching: a cell's key is the sha256 of its recipe file, model, hyperparameters, seed, data file \
hashes and the mixprobe version. Re-running skips finished cells with the same key; editing a \
recipe re-runs only its cells. Ctrl-C checkpoints the current cell; the same command resumes it. \
A failing cell is recorded (status failed, with its error) and the others still run; the exit code \
is non-zero when any cell failed or the run was interrupted.";

/// Run every cell of an experiment (train, evaluate, probe) into one results directory.
#[derive(clap::Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub struct Args {
    /// The experiment file (TOML); see experiments/.
    pub experiment: PathBuf,
    /// Directory the recipes' source paths are relative to (default: the experiment's
    /// `data_dir`, else data/).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The experiment directory (created; re-use it to resume and to skip finished cells).
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,
    /// Where to train and evaluate; cuda (needs the `cuda` build feature) falls back to the
    /// CPU with a warning when unavailable.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Precision of the matrix products in training (see `mixprobe train --help`). Default:
    /// bf16 mixed precision where the device computes in bf16 (CUDA), fp32 on the CPU.
    #[arg(long, value_enum, value_name = "PRECISION")]
    pub precision: Option<Precision>,
    /// Only run cells whose id (model/recipe) matches this glob (`*`, `?`); repeatable.
    #[arg(long, value_name = "GLOB")]
    pub only: Vec<String>,
    /// Run cells that failed in an earlier invocation again.
    #[arg(long)]
    pub retry_failed: bool,
    /// Checkpoint and stop a cell after N optimizer steps of this invocation, ending the run
    /// (to test resume).
    #[arg(long, value_name = "N", hide = true)]
    pub stop_after: Option<u64>,
    /// No training progress bars (one line per cell is still printed).
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let exp = Experiment::load(&args.experiment)?;
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| exp.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("data"));
    if !data_dir.is_dir() {
        return Err(crate::cli::UserError(format!(
            "--data-dir {}: not a directory",
            data_dir.display()
        ))
        .into());
    }
    let (kind, warning) = device::resolve(args.device);
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let stop = crate::cli::interrupt_flag(
        "interrupt: checkpointing the current cell (Ctrl-C again to exit at once)",
    )?;
    eprintln!(
        "experiment {}: {} cell(s), {} model(s), data {}",
        exp.name,
        exp.cells.len(),
        exp.models.len(),
        data_dir.display()
    );
    let opts = RunOptions {
        data_dir,
        out: args.out.clone(),
        device: kind,
        precision: args.precision,
        only: args.only.clone(),
        retry_failed: args.retry_failed,
        stop: Some(stop),
        stop_after: args.stop_after,
        progress: !args.quiet,
        command: std::env::args().collect(),
    };
    let report = run_experiment(&exp, &opts)?;
    print_summary(&report);
    let failed = report.failed();
    if report.interrupted {
        anyhow::bail!(
            "interrupted; run the same command again to resume (finished cells are kept)"
        );
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} cell(s) failed: {}",
            failed.len(),
            report.results.cells.len(),
            failed
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

fn print_summary(report: &mixprobe::experiment::RunReport) {
    let c = &report.results.meta.counts;
    println!(
        "{:<40} {:<10} {:<8} {:>9} {:>10}",
        "cell", "group", "status", "wall", "final loss"
    );
    for cell in &report.results.cells {
        println!(
            "{:<40} {:<10} {:<8} {:>9} {:>10}",
            cell.id,
            cell.group,
            cell.status,
            cell.wall_s
                .map_or("-".into(), mixprobe::experiment::runner::format_secs),
            cell.final_loss.map_or("-".into(), |l| format!("{l:.4}"))
        );
        if let Some(e) = &cell.error {
            println!("    error: {e}");
        }
    }
    println!(
        "ran {}, cached {}, failed {}, pending {}; results: {}",
        c.ran,
        c.cached,
        c.failed,
        c.pending,
        report.results_path.display()
    );
}
