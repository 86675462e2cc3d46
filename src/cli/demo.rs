//! `mixprobe demo`: the embedded default. Runs on a fresh clone with no downloads: generates the
//! synthetic ability suite, then composes the paper's RQ4 strategies, the DMT k sweep and the
//! ShareGPT-style ablation over it with the shipped recipes (embedded in the binary), and prints
//! what each stage takes from each source. (Training, evaluation, probes and the report join this
//! command as those layers land.)
use anyhow::Context;
use mixprobe::data::synth::{self, Scale, SynthConfig};
use mixprobe::recipe::{ComposeOptions, Recipe, compose};
use std::path::PathBuf;

/// The recipes the demo composes, embedded so the demo needs nothing but the binary.
const RECIPES: &[(&str, &str)] = &[
    (
        "rq4-multitask",
        include_str!("../../recipes/rq4-multitask.toml"),
    ),
    (
        "rq4-sequential",
        include_str!("../../recipes/rq4-sequential.toml"),
    ),
    (
        "rq4-mixed-sequential",
        include_str!("../../recipes/rq4-mixed-sequential.toml"),
    ),
    ("rq4-dmt", include_str!("../../recipes/rq4-dmt.toml")),
    ("dmt-k1", include_str!("../../recipes/dmt-k1.toml")),
    ("dmt-k4", include_str!("../../recipes/dmt-k4.toml")),
    ("dmt-k16", include_str!("../../recipes/dmt-k16.toml")),
    ("dmt-k64", include_str!("../../recipes/dmt-k64.toml")),
    ("dmt-k256", include_str!("../../recipes/dmt-k256.toml")),
    (
        "ablation-dmt-k256-no-code-math",
        include_str!("../../recipes/ablation-dmt-k256-no-code-math.toml"),
    ),
];

#[derive(clap::Args)]
pub struct Args {
    /// Output directory: DIR/data (the synthetic suite), DIR/compose/<recipe>/ (stages + manifest.json).
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Seed of the synthetic suite and of every recipe's sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Size of the synthetic suite: small (the default, minutes on a laptop) or medium (about 4x).
    #[arg(long, default_value = "small")]
    pub scale: Scale,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let data = args.out.join("data");
    eprintln!(
        "[1/2] generating the synthetic ability suite (seed {}, {:?}) in {}",
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
    eprintln!(
        "[2/2] composing {} recipes (strategies, DMT k sweep, ablation)",
        RECIPES.len()
    );
    let bar = indicatif::ProgressBar::new(RECIPES.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("      {bar:30} {pos}/{len} {msg} ETA {eta}")
            .expect("static template"),
    );
    let mut rows = Vec::new();
    for (name, text) in RECIPES {
        bar.set_message(*name);
        let dir = args.out.join("compose").join(name);
        let recipe_path = dir.join("recipe.toml");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        mixprobe::util::write_atomic(&recipe_path, text.as_bytes())?;
        let recipe = Recipe::parse(text, &recipe_path)?;
        let opts = ComposeOptions {
            data_dir: data.clone(),
            seed: Some(args.seed),
            holdout: Some(50),
            ..Default::default()
        };
        let comp = compose(&recipe, &opts)?;
        comp.write(&dir)?;
        let stages: Vec<String> = comp
            .manifest
            .stages
            .iter()
            .map(|s| {
                let parts: Vec<String> = s
                    .sources
                    .iter()
                    .map(|(src, t)| format!("{src} {}", t.taken))
                    .collect();
                format!("{}[{}]", s.name, parts.join(", "))
            })
            .collect();
        rows.push(format!("{name:<32} {}", stages.join(" → ")));
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("recipe                           stages (examples taken per source)");
    for r in rows {
        println!("{r}");
    }
    println!(
        "\nwrote {} (synthetic suite) and {} (per recipe: stages/, heldout/, manifest.json)",
        data.display(),
        args.out.join("compose").display()
    );
    Ok(())
}
