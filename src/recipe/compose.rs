//! Materialize a recipe: read each source once, hold out a slice, take each stage's prefixes,
//! shuffle the stage, and describe everything in a manifest.
//!
//! Per source, in this order: read (with `--skip-invalid` if asked) → ablate (if the recipe
//! says so) → cap at `--limit-examples` (the first N) → one seeded permutation
//! (`util::rng(seed, source_name)`, Fisher–Yates) → the LAST `holdout` positions of the
//! permutation are held out → the rest is the pool, of size `available`. A stage takes the
//! first `round(f·available)` (or the count) positions of the pool, so subsets are nested and
//! a DMT replay lies inside stage 1's pool. Each stage's examples are then shuffled with
//! `util::rng(seed, "stage-<name>")`.
use crate::data::Example;
use crate::data::ablate::{Detector, ablate};
use crate::data::ablate_learned::LearnedDetector;
use crate::data::read::{Loaded, ReadOptions, Skipped, read_file};
use crate::error::{Error, Result};
use crate::recipe::sample::{permutation, shuffle};
use crate::recipe::spec::Recipe;
use crate::util::{rng, sha256_bytes, sha256_file, write_atomic, write_json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How to compose (the command-line knobs).
#[derive(Debug, Clone, Default)]
pub struct ComposeOptions {
    /// Directory the recipe's source paths are relative to.
    pub data_dir: PathBuf,
    /// Overrides the recipe's seed.
    pub seed: Option<u64>,
    /// Passed to the readers: skip (and count) malformed records instead of failing.
    pub skip_invalid: bool,
    /// Cap each source's pool at its first N examples (after ablation), for smoke runs.
    pub limit_examples: Option<usize>,
    /// Overrides every source's held-out count.
    pub holdout: Option<usize>,
    /// A Hugging Face `tokenizer.json` to count tokens with (otherwise only chars and words).
    pub tokenizer: Option<PathBuf>,
}

/// Text size totals. `tokens` counts each turn's content with the tokenizer (no chat template,
/// no special tokens) and is present only when a tokenizer was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    pub chars: u64,
    pub words: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

impl Size {
    fn add(&mut self, other: Size) {
        self.chars += other.chars;
        self.words += other.words;
        self.tokens = match (self.tokens, other.tokens) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
}

/// Records left out, with the first few reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub count: usize,
    /// Up to five `location: reason` lines.
    pub first: Vec<String>,
}

impl Dropped {
    fn from(items: &[Skipped]) -> Dropped {
        Dropped {
            count: items.len(),
            first: items
                .iter()
                .take(5)
                .map(|s| format!("{}: {}", s.location, s.reason))
                .collect(),
        }
    }
}

/// The manifest written next to the composed data (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub mixprobe_version: String,
    pub recipe: RecipeInfo,
    /// The seed used (the recipe's, or `--seed`).
    pub seed: u64,
    pub data_dir: String,
    pub skip_invalid: bool,
    /// `--limit-examples`, when given.
    pub limit_examples: Option<usize>,
    pub sources: BTreeMap<String, SourceInfo>,
    pub stages: Vec<StageInfo>,
}

/// Which recipe produced the composition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipeInfo {
    pub name: String,
    pub path: String,
    pub sha256: String,
    pub description: Option<String>,
    /// The strategy shortcut, e.g. `dmt (k = 1/256)`, or null for explicit stages.
    pub strategy: Option<String>,
    /// The recipe file's full text.
    pub text: String,
}

/// One source: where it came from, what was removed, held out and left available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The path as the recipe names it (relative to the data directory).
    pub path: String,
    /// The file that was read.
    pub file: String,
    pub format: String,
    pub sha256: String,
    /// Examples the reader produced.
    pub examples_read: usize,
    /// Malformed records skipped under `--skip-invalid`.
    pub skipped: Dropped,
    /// Records a format rule does not turn into examples (e.g. no assistant turn).
    pub excluded: Dropped,
    /// The ablation, when the recipe asks for one.
    pub ablation: Option<AblationInfo>,
    /// Examples after ablation and `--limit-examples`: the set that is permuted.
    pub pool: usize,
    pub heldout: HeldOut,
    /// `pool − heldout`: the N in `round(f·N)`.
    pub available: usize,
}

/// What the ablation detector removed from a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AblationInfo {
    pub detector: String,
    /// Categories asked for.
    pub remove: Vec<String>,
    /// Removed examples per category.
    pub removed: BTreeMap<String, usize>,
    pub kept: usize,
    /// Examples the detector could not classify (neither kept nor removed; 0 for the rules and
    /// the learned detector).
    pub failed: usize,
}

/// The held-out slice of a source (the end of its permutation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldOut {
    pub count: usize,
    /// Relative to the output directory.
    pub file: String,
    pub ids: Vec<String>,
}

/// One stage of the composition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageInfo {
    pub name: String,
    /// 1-based position in training order.
    pub index: usize,
    pub epochs: u32,
    /// The stage's JSONL, relative to the output directory.
    pub file: String,
    pub examples: usize,
    pub size: Size,
    pub sources: BTreeMap<String, StageSource>,
}

/// One source's share of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSource {
    /// As requested: `"1/256"`, `"1"` or `"500 examples"`.
    pub amount: String,
    /// The requested fraction as a number, or null for a count.
    pub fraction: Option<f64>,
    pub available: usize,
    pub taken: usize,
    pub size: Size,
    /// Ids taken, in permutation order (a prefix of the source's pool).
    pub ids: Vec<String>,
}

/// A composed recipe: the manifest plus the data it describes.
#[derive(Debug, Clone)]
pub struct Composition {
    pub manifest: Manifest,
    /// Per stage (same order as `manifest.stages`), its examples in training order.
    pub stages: Vec<Vec<Example>>,
    /// Per source, its held-out examples.
    pub heldout: BTreeMap<String, Vec<Example>>,
}

/// One source after reading, ablation, limiting and permutation.
struct Prepared {
    info: SourceInfo,
    /// The available pool in permutation order.
    pool: Vec<Example>,
    heldout: Vec<Example>,
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Compose `recipe`; nothing is written (see [`Composition::write`]).
pub fn compose(recipe: &Recipe, opts: &ComposeOptions) -> Result<Composition> {
    let seed = opts.seed.unwrap_or(recipe.seed);
    let cfg = |msg: String| Error::config(&recipe.path, msg);
    let tokenizer = match &opts.tokenizer {
        None => None,
        Some(p) => Some(
            tokenizers::Tokenizer::from_file(p)
                .map_err(|e| Error::Tokenizer(format!("{}: {e}", p.display())))?,
        ),
    };
    let size_of = |ex: &Example| -> Result<Size> {
        let mut s = Size {
            tokens: tokenizer.as_ref().map(|_| 0),
            ..Size::default()
        };
        for turn in &ex.turns {
            s.chars += turn.content.chars().count() as u64;
            s.words += turn.content.split_whitespace().count() as u64;
            if let Some(t) = &tokenizer {
                let enc = t
                    .encode(turn.content.as_str(), false)
                    .map_err(|e| Error::Tokenizer(format!("encoding example {}: {e}", ex.id)))?;
                s.tokens = s.tokens.map(|n| n + enc.len() as u64);
            }
        }
        Ok(s)
    };

    let mut prepared: BTreeMap<String, Prepared> = BTreeMap::new();
    for (name, spec) in &recipe.sources {
        let file = opts.data_dir.join(&spec.path);
        if !file.is_file() {
            return Err(cfg(format!(
                "sources.{name}.path: {} does not exist (source paths are relative to --data-dir {})",
                file.display(),
                opts.data_dir.display()
            )));
        }
        let Loaded {
            format,
            examples,
            skipped,
            excluded,
            ..
        } = read_file(
            &file,
            spec.format,
            &ReadOptions {
                skip_invalid: opts.skip_invalid,
            },
        )?;
        let examples_read = examples.len();
        let (mut examples, ablation) = if spec.ablate.is_empty() {
            (examples, None)
        } else {
            // The same default detector as `mixprobe data ablate`: the shipped learned one.
            let detector = LearnedDetector::shipped()?;
            let result = ablate(examples, &spec.ablate, &detector);
            let mut removed: BTreeMap<String, usize> = spec
                .ablate
                .iter()
                .map(|c| (c.as_str().to_string(), 0))
                .collect();
            for (_, c) in &result.removed {
                *removed.entry(c.as_str().to_string()).or_default() += 1;
            }
            let info = AblationInfo {
                detector: detector.name(),
                remove: spec.ablate.iter().map(|c| c.as_str().to_string()).collect(),
                removed,
                kept: result.kept.len(),
                failed: result.failed.len(),
            };
            (result.kept, Some(info))
        };
        if let Some(limit) = opts.limit_examples {
            examples.truncate(limit);
        }
        let pool_size = examples.len();
        let holdout = opts.holdout.unwrap_or(spec.holdout);
        if holdout >= pool_size {
            return Err(cfg(format!(
                "sources.{name}: holding out {holdout} of {pool_size} examples leaves none to train on; \
                 lower `holdout` (or pass --holdout){}",
                if opts.limit_examples.is_some() {
                    " or raise --limit-examples"
                } else {
                    ""
                }
            )));
        }
        let order = permutation(pool_size, &mut rng(seed, name));
        let mut slots: Vec<Option<Example>> = examples.into_iter().map(Some).collect();
        let mut permuted: Vec<Example> = order.iter().filter_map(|&i| slots[i].take()).collect();
        let heldout = permuted.split_off(pool_size - holdout);
        let info = SourceInfo {
            path: display(&spec.path),
            file: display(&file),
            format: format.name().to_string(),
            sha256: sha256_file(&file)?,
            examples_read,
            skipped: Dropped::from(&skipped),
            excluded: Dropped::from(&excluded),
            ablation,
            pool: pool_size,
            heldout: HeldOut {
                count: heldout.len(),
                file: format!("heldout/{name}.jsonl"),
                ids: heldout.iter().map(|e| e.id.clone()).collect(),
            },
            available: permuted.len(),
        };
        prepared.insert(
            name.clone(),
            Prepared {
                info,
                pool: permuted,
                heldout,
            },
        );
    }

    let mut stage_infos = Vec::with_capacity(recipe.stages.len());
    let mut stage_data = Vec::with_capacity(recipe.stages.len());
    for (i, stage) in recipe.stages.iter().enumerate() {
        let mut sources = BTreeMap::new();
        let mut examples = Vec::new();
        let mut stage_size = Size {
            tokens: tokenizer.as_ref().map(|_| 0),
            ..Size::default()
        };
        for (src, amount) in &stage.mix {
            let p = prepared.get(src).ok_or_else(|| {
                Error::Internal(format!(
                    "stage {} names undeclared source {src}",
                    stage.name
                ))
            })?;
            let available = p.pool.len();
            let taken = amount.count_of(available).map_err(|e| {
                cfg(format!(
                    "stages[{i}] ({:?}).mix.{src}: {e} ({} in the pool, {} held out)",
                    stage.name, p.info.pool, p.info.heldout.count
                ))
            })?;
            let chosen = &p.pool[..taken];
            let mut size = Size {
                tokens: tokenizer.as_ref().map(|_| 0),
                ..Size::default()
            };
            for ex in chosen {
                size.add(size_of(ex)?);
            }
            stage_size.add(size);
            examples.extend(chosen.iter().cloned());
            sources.insert(
                src.clone(),
                StageSource {
                    amount: amount.to_string(),
                    fraction: amount.fraction().map(|f| f.as_f64()),
                    available,
                    taken,
                    size,
                    ids: chosen.iter().map(|e| e.id.clone()).collect(),
                },
            );
        }
        shuffle(
            &mut examples,
            &mut rng(seed, &format!("stage-{}", stage.name)),
        );
        stage_infos.push(StageInfo {
            name: stage.name.clone(),
            index: i + 1,
            epochs: stage.epochs,
            file: format!("stages/{:02}-{}.jsonl", i + 1, stage.name),
            examples: examples.len(),
            size: stage_size,
            sources,
        });
        stage_data.push(examples);
    }

    let mut sources = BTreeMap::new();
    let mut heldout = BTreeMap::new();
    for (name, p) in prepared {
        sources.insert(name.clone(), p.info);
        heldout.insert(name, p.heldout);
    }
    let manifest = Manifest {
        mixprobe_version: env!("CARGO_PKG_VERSION").to_string(),
        recipe: RecipeInfo {
            name: recipe.name.clone(),
            path: display(&recipe.path),
            sha256: sha256_bytes(recipe.text.as_bytes()),
            description: recipe.description.clone(),
            strategy: recipe.strategy.as_ref().map(|s| s.describe()),
            text: recipe.text.clone(),
        },
        seed,
        data_dir: display(&opts.data_dir),
        skip_invalid: opts.skip_invalid,
        limit_examples: opts.limit_examples,
        sources,
        stages: stage_infos,
    };
    Ok(Composition {
        manifest,
        stages: stage_data,
        heldout,
    })
}

/// Examples as JSON Lines.
pub fn to_jsonl(examples: &[Example]) -> Result<String> {
    let mut out = String::new();
    for ex in examples {
        let line = serde_json::to_string(ex)
            .map_err(|e| Error::Internal(format!("serializing {}: {e}", ex.id)))?;
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Delete `*.jsonl` files left in `dir` by an earlier run (the directory is compose's own).
fn clear_jsonl(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "jsonl") && path.is_file() {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

impl Composition {
    /// Write `out/stages/NN-<stage>.jsonl`, `out/heldout/<source>.jsonl` and, last,
    /// `out/manifest.json`. Stale `.jsonl` files in `out/stages` and `out/heldout` are removed.
    pub fn write(&self, out: &Path) -> Result<()> {
        clear_jsonl(&out.join("stages"))?;
        clear_jsonl(&out.join("heldout"))?;
        for (info, examples) in self.manifest.stages.iter().zip(&self.stages) {
            write_atomic(&out.join(&info.file), to_jsonl(examples)?.as_bytes())?;
        }
        for (name, examples) in &self.heldout {
            let info = &self.manifest.sources[name];
            write_atomic(
                &out.join(&info.heldout.file),
                to_jsonl(examples)?.as_bytes(),
            )?;
        }
        write_json(&out.join("manifest.json"), &self.manifest)
    }
}
