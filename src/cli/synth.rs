//! `mixprobe data synth`: write the synthetic ability suite (a laptop-scale testbed whose scores
//! are not comparable to the real benchmarks).
use mixprobe::data::synth::{self, Scale, SynthConfig};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
#[command(
    after_help = "Writes gsm8k/, codealpaca/, sharegpt/, humaneval/ in the layout and file names of the real \
    data (use the directory with --data-dir), plus labels.json (code/math/none flavour of every general \
    conversation), README.md and SYNTH.json (version, seed, scale, per-file counts and sha256). The same seed \
    and scale give byte-identical files. A laptop-scale testbed: its numbers are not comparable to GSM8K, \
    HumanEval or MT-Bench."
)]
pub struct Args {
    /// Output directory (created if missing; the suite's files in it are overwritten).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed of every random choice; equal seeds give byte-identical files.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Suite size: small (math 3,000 / general 2,000 / code 1,200 training examples; the demo's
    /// default) or medium (4x the training data, 2x the evaluation sets).
    #[arg(long, value_name = "SCALE", default_value = "small")]
    pub scale: Scale,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let summary = synth::generate(
        &args.out,
        &SynthConfig {
            seed: args.seed,
            scale: args.scale,
        },
    )?;
    println!(
        "synthetic suite (seed {}, scale {}, generator v{}) in {}:",
        summary.seed,
        summary.scale,
        summary.version,
        args.out.display()
    );
    for f in &summary.files {
        let ability = f.ability.map(|a| a.as_str()).unwrap_or("-");
        println!(
            "  {:<42} {:<8} {:>6} records {:>10} bytes",
            f.path, ability, f.records, f.bytes
        );
    }
    let flav: Vec<String> = summary
        .flavours
        .iter()
        .map(|(k, v)| format!("{} {v}", k.as_str()))
        .collect();
    println!("  general conversation flavours: {}", flav.join(", "));
    println!(
        "  done in {:.2} s; manifest {}",
        start.elapsed().as_secs_f64(),
        args.out.join(synth::MANIFEST).display()
    );
    Ok(())
}
