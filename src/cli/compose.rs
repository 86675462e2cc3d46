//! `mixprobe compose RECIPE --out DIR`: materialize a recipe into per-stage datasets + manifest.
use mixprobe::recipe::{ComposeOptions, Composition, Manifest, Recipe, compose};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Materialize a recipe: per stage a JSONL dataset (OUT/stages/NN-<stage>.jsonl), per source its \
held-out examples (OUT/heldout/<source>.jsonl), and OUT/manifest.json (recipe, seed, per-stage \
per-source requested amount, available pool size, count taken, example ids, sha256 of every \
input file, char/word/token totals, skipped and ablated counts).

Sampling rules (seeded and exact):
  - Each source is read once (ablated first if the recipe says `ablate = [...]`, then capped at \
--limit-examples), then permuted ONCE with a seeded Fisher-Yates shuffle (ChaCha8 keyed by the \
seed and the source name).
  - The last `holdout` examples of that permutation (default 200 per source) are held out for \
evaluation; they never appear in any stage. The rest is the source's pool; its size is the \
manifest's \"available\" N.
  - A fraction f of N examples is round(f*N), rounding half away from zero, and at least 1. \
Fractions are exact: \"1/256\", \"0.25\", \"1\". An integer amount is a count and must not exceed N.
  - A stage takes the FIRST round(f*N) examples of a source's pool, without replacement. Subsets \
are therefore nested (the 1/256 subset lies inside the 1/64 one, across recipes with the same \
seed), and DMT's stage-2 replay of k*math and k*code lies inside stage 1's data.
  - Each stage's examples are then shuffled with the seed (stream \"stage-<name>\").
Same recipe, data and seed give an identical manifest; another seed gives other subsets.

Recipe (TOML): [sources.<name>] path = \"…\" (relative to --data-dir), optional format, holdout, \
ablate = [\"code\", \"math\"]; then either [[stages]] name = \"…\", epochs = 3, mix = { math = \
\"1/4\", code = 500 } in training order, or a [strategy] shortcut (sources named math, code, \
general): kind = \"single\" (source, amount), \"mixed\"/\"multi_task\" (amount; one stage of all \
sources), \"sequential\" (code, math, general), \"mixed_sequential\" (code+math, general), \"dmt\" \
(k; stage 1 all math + all code, stage 2 all general + k of math and code), \"ratio\" \
(specialized, general; RQ3). See recipes/README.md.";

/// Flags shared by `compose` and `export` (both compose the recipe the same way).
#[derive(clap::Args, Debug, Clone)]
pub struct ComposeFlags {
    /// The recipe file (TOML); see recipes/ for the shipped ones.
    pub recipe: PathBuf,
    /// Directory the recipe's source paths are relative to, laid out like ../shared/data
    /// (gsm8k/train.jsonl, codealpaca/code_alpaca_20k.json, sharegpt/…).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Override the recipe's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip malformed records instead of failing (they are counted in the manifest and on stderr).
    #[arg(long)]
    pub skip_invalid: bool,
    /// Cap each source at its first N examples (after ablation) before sampling, for smoke runs;
    /// recorded in the manifest.
    #[arg(long, value_name = "N")]
    pub limit_examples: Option<usize>,
    /// Override every source's held-out count (the recipe's `holdout`, default 200).
    #[arg(long, value_name = "N")]
    pub holdout: Option<usize>,
    /// A Hugging Face tokenizer.json to count tokens with (chars and words are always counted).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
}

impl ComposeFlags {
    /// Load the recipe and compose it, reporting skipped/excluded/ablated counts on stderr.
    pub fn compose(&self) -> anyhow::Result<Composition> {
        let recipe = Recipe::load(&self.recipe)?;
        let opts = ComposeOptions {
            data_dir: self.data_dir.clone(),
            seed: self.seed,
            skip_invalid: self.skip_invalid,
            limit_examples: self.limit_examples,
            holdout: self.holdout,
            tokenizer: self.tokenizer.clone(),
        };
        let comp = compose(&recipe, &opts)?;
        report_sources(&comp.manifest);
        Ok(comp)
    }
}

/// Per-source notes on stderr: what was skipped, excluded, ablated and held out.
fn report_sources(m: &Manifest) {
    for (name, s) in &m.sources {
        let mut notes = vec![format!("{} read", s.examples_read)];
        if s.skipped.count > 0 {
            notes.push(format!(
                "{} malformed skipped (first: {})",
                s.skipped.count,
                s.skipped.first.first().map(String::as_str).unwrap_or("")
            ));
        }
        if s.excluded.count > 0 {
            notes.push(format!("{} excluded by format rules", s.excluded.count));
        }
        if let Some(a) = &s.ablation {
            let removed: Vec<String> = a.removed.iter().map(|(c, n)| format!("{n} {c}")).collect();
            notes.push(format!("ablation removed {}", removed.join(", ")));
        }
        notes.push(format!(
            "{} held out, {} available",
            s.heldout.count, s.available
        ));
        eprintln!("{name} ({}): {}", s.path, notes.join("; "));
    }
}

/// Materialize a recipe: per-stage datasets plus manifest.json.
#[derive(clap::Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub struct Args {
    #[command(flatten)]
    pub compose: ComposeFlags,
    /// Output directory (created; stale .jsonl files in its stages/ and heldout/ are replaced).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let comp = args.compose.compose()?;
    comp.write(&args.out)?;
    for st in &comp.manifest.stages {
        let parts: Vec<String> = st
            .sources
            .iter()
            .map(|(n, s)| format!("{n} {} → {}/{}", s.amount, s.taken, s.available))
            .collect();
        println!(
            "stage {} {}: {} examples, {} epochs ({})",
            st.index,
            st.name,
            st.examples,
            st.epochs,
            parts.join(", ")
        );
    }
    println!("wrote {}", args.out.join("manifest.json").display());
    Ok(())
}
