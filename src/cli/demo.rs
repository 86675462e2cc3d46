//! `mixprobe demo`: the embedded default. Runs on a fresh clone with nothing but the binary (and
//! python3 for the code sandbox): generates the synthetic ability suite, runs the embedded
//! experiments/demo.toml over it (a tiny from-scratch model trained with every RQ4 strategy, the
//! DMT k sweep and the ablation variant; evaluated; probed) and writes the report.
use anyhow::Context;
use mixprobe::data::synth::{self, Scale, SynthConfig};
use mixprobe::experiment::{Experiment, Results, RunOptions, run_experiment};
use mixprobe::model::device::{self, DeviceKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The demo experiment and what it reads, embedded so the demo needs nothing but the binary.
/// Written out under `DIR/inputs/` in the repository's layout, so relative paths resolve.
const INPUTS: &[(&str, &str)] = &[
    (
        "experiments/demo.toml",
        include_str!("../../experiments/demo.toml"),
    ),
    ("probes/demo.toml", include_str!("../../probes/demo.toml")),
    (
        "recipes/rq4-multitask.toml",
        include_str!("../../recipes/rq4-multitask.toml"),
    ),
    (
        "recipes/rq4-sequential.toml",
        include_str!("../../recipes/rq4-sequential.toml"),
    ),
    (
        "recipes/rq4-mixed-sequential.toml",
        include_str!("../../recipes/rq4-mixed-sequential.toml"),
    ),
    (
        "recipes/rq4-dmt.toml",
        include_str!("../../recipes/rq4-dmt.toml"),
    ),
    (
        "recipes/dmt-k1.toml",
        include_str!("../../recipes/dmt-k1.toml"),
    ),
    (
        "recipes/dmt-k16.toml",
        include_str!("../../recipes/dmt-k16.toml"),
    ),
    (
        "recipes/ablation-dmt-k256-no-code-math.toml",
        include_str!("../../recipes/ablation-dmt-k256-no-code-math.toml"),
    ),
];

const AFTER_HELP: &str = "\
DIR holds data/ (the synthetic suite), inputs/ (the embedded experiments/demo.toml, its recipes and \
probe spec), experiment/ (the `mixprobe run` output: results.json, cells/, probe/) and report/ \
(index.html, summary.md, figures/). Re-running the same command reuses finished cells. The same \
by hand: mixprobe data synth --out DIR/data; mixprobe run experiments/demo.toml --data-dir DIR/data \
--out DIR/experiment; mixprobe report DIR/experiment --out DIR/report.

--quick shrinks every cell to a few optimizer steps and the evaluations to a few items (a smoke \
test of the whole pipeline in about a minute; its numbers mean nothing).";

/// The embedded default: synthetic suite → every RQ4 strategy, DMT k sweep and the ablation on a
/// tiny model → evaluation → probe → report (DIR/report/index.html).
#[derive(clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct Args {
    /// Output directory (see below).
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Seed of the synthetic suite.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Size of the synthetic suite: small (the default) or medium (about 4x the training data).
    #[arg(long, default_value = "small")]
    pub scale: Scale,
    /// Where to train and evaluate; cuda falls back to the CPU with a warning when unavailable.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Smoke test: a few optimizer steps per cell and a few evaluation items (see below).
    #[arg(long, hide = true)]
    pub quick: bool,
    /// No training progress bars (one line per step of the demo and per cell is still printed).
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let data = args.out.join("data");
    eprintln!(
        "[1/3] generating the synthetic ability suite (seed {}, {}) in {}",
        args.seed,
        args.scale,
        data.display()
    );
    let summary = synth::generate(
        &data,
        &SynthConfig {
            seed: args.seed,
            scale: args.scale,
        },
    )?;
    for f in &summary.files {
        eprintln!("      {:<45} {:>6} records", f.path, f.records);
    }

    let inputs = args.out.join("inputs");
    for (rel, text) in INPUTS {
        let path = inputs.join(rel);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = if args.quick && rel.starts_with("experiments/") {
            quick(text)?
        } else {
            text.to_string()
        };
        mixprobe::util::write_atomic(&path, text.as_bytes())?;
    }
    let exp = Experiment::load(&inputs.join("experiments/demo.toml"))?;
    let exp_out = args.out.join("experiment");
    eprintln!(
        "[2/3] running {} cells (train, evaluate, probe) into {}",
        exp.cells.len(),
        exp_out.display()
    );
    let (kind, warning) = device::resolve(args.device);
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: checkpointing the current cell (Ctrl-C again to exit at once)");
    })
    .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))?;
    let report = run_experiment(
        &exp,
        &RunOptions {
            data_dir: data.clone(),
            out: exp_out.clone(),
            device: kind,
            precision: None,
            only: Vec::new(),
            retry_failed: true,
            stop: Some(stop),
            stop_after: None,
            progress: !args.quiet,
            command: std::env::args().collect(),
        },
    )?;
    if report.interrupted {
        anyhow::bail!("interrupted; run the same command again to resume");
    }
    let report_dir = args.out.join("report");
    eprintln!("[3/3] writing the report in {}", report_dir.display());
    let written = mixprobe::report::write_report(&exp_out, &report_dir)?;
    print_findings(&report.results);
    let failed = report.failed();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} cell(s) failed ({}); the report at {} shows the rest",
            failed.len(),
            failed
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            written.index.display()
        );
    }
    println!(
        "demo finished in {}; report: {}",
        mixprobe::experiment::runner::format_secs(t0.elapsed().as_secs_f64()),
        written.index.display()
    );
    Ok(())
}

/// The demo experiment at smoke size: 3 steps per stage, tiny evaluations.
fn quick(text: &str) -> anyhow::Result<String> {
    let mut t: toml::Table = toml::from_str(text).context("the embedded demo.toml")?;
    let set = |t: &mut toml::Table, table: &str, key: &str, v: i64| {
        if let Some(toml::Value::Table(tab)) = t.get_mut(table) {
            tab.insert(key.into(), toml::Value::Integer(v));
        }
    };
    for (k, v) in [
        ("max_steps", 3),
        ("limit_examples", 60),
        ("holdout", 10),
        ("eval_limit", 10),
        ("batch_size", 4),
        ("max_len", 128),
    ] {
        set(&mut t, "train", k, v);
    }
    for (k, v) in [("limit", 3), ("max_new_tokens", 12)] {
        set(&mut t, "eval", k, v);
    }
    Ok(toml::to_string(&t)?)
}

/// The demo's question, answered from its own measurements: did sequential training forget
/// math relative to multi-task, and did DMT recover it? Judged on held-out math NLL (lower is
/// better), which moves at the demo's scale where the tiny model's answer accuracy may not.
fn print_findings(results: &Results) {
    let fmt = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.3}"));
    println!(
        "\n{:<38} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}",
        "cell", "nll.math", "nll.code", "nll.gen", "synth.math", "synth.code", "synth.gen"
    );
    for c in &results.cells {
        let g = |k: &str| fmt(c.scores.get(k).copied());
        println!(
            "{:<38} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}",
            c.id,
            g("nll.math"),
            g("nll.code"),
            g("nll.general"),
            g("synth.math"),
            g("synth.code"),
            g("synth.general")
        );
    }
    let math = |recipe: &str| {
        results
            .cells
            .iter()
            .find(|c| c.recipe == recipe && c.status == "done")
            .and_then(|c| c.scores.get("nll.math").copied())
    };
    let (Some(multi), Some(seq)) = (math("rq4-multitask"), math("rq4-sequential")) else {
        return;
    };
    println!(
        "held-out math NLL: multi-task {multi:.3}, sequential {seq:.3}: {}",
        if seq > multi {
            "sequential training forgot math relative to multi-task"
        } else {
            "no forgetting of math measured"
        }
    );
    let mut dmt: Vec<(f64, f64)> = results
        .cells
        .iter()
        .filter(|c| c.strategy == "dmt" && c.ablation.is_none() && c.status == "done")
        .filter_map(|c| Some((c.k?, c.scores.get("nll.math").copied()?)))
        .collect();
    dmt.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (k, v) in dmt {
        println!(
            "  DMT k = 1/{:.0}: {v:.3} ({} of the gap to multi-task recovered)",
            1.0 / k,
            if seq > multi {
                format!("{:.0}%", 100.0 * (seq - v) / (seq - multi))
            } else {
                "none".into()
            }
        );
    }
}
