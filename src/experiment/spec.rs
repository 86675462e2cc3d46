//! The experiment file: models × a grid of recipes × seeds, the training hyperparameters, the
//! benchmarks and the probe. Parsed and checked up front; every error names the file and the
//! field.
//!
//! ```toml
//! name = "rq4"                              # optional (default: the file stem)
//! description = "RQ4: the four strategies"  # optional
//! data_dir = "../../shared/data"            # optional, relative to this file; --data-dir overrides
//! seeds = [42]                              # optional (default [42]); one cell per seed
//! benches = ["gsm8k", "humaneval", "mtbench", "nll"]
//!
//! [[models]]                                # one or more
//! name = "smollm2"
//! hf = "../../shared/models/SmolLM2-135M-Instruct"   # or gguf = "x.gguf" (imported on first use)
//! template = "chatml"                                # optional (default vicuna_v1.1)
//! # preset = "tiny"                                  # from scratch: tiny | small
//! # vocab_size = 2048                                # presets: the shared BPE's size
//! # train = { lr = 1e-5 }                            # per-model hyperparameter overrides
//!
//! [train]                     # TrainConfig: `preset` (paper | tiny) plus any field overrides,
//! preset = "paper"            # and the run options limit_examples, holdout, skip_invalid
//! epochs = 3
//!
//! [eval]                      # optional: limit, max_new_tokens, batch_size
//! limit = 200
//!
//! [probe]                     # optional
//! spec = "../probes/default.toml"   # a probe spec (relative to this file)
//! cells = ["*/rq4-*"]               # optional: which cells' final/ to probe (default: all)
//!
//! [[grid]]                    # one or more groups of recipes
//! group = "rq4"               # rq1 | rq2 | rq3 | rq4 | dmt_k | ablation | any name
//! recipes = ["../recipes/rq4-*.toml"]   # files, `*`/`?` globs and `{a,b}` alternatives
//! ```
//!
//! Recipe patterns are resolved relative to the experiment file, else to the working
//! directory. A cell is one (model, recipe, seed); its id is `model/recipe` (plus `/s<seed>`
//! when the experiment has several seeds).
use crate::data::bpe::DEFAULT_VOCAB_SIZE;
use crate::data::template::ChatTemplate;
use crate::error::{Error, Result};
use crate::model::Preset;
use crate::recipe::Recipe;
use crate::train::config::TrainConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The benchmark names an experiment may list (the eval layer's `Bench`).
pub const BENCHES: &[&str] = &["gsm8k", "humaneval", "mtbench", "nll", "synth"];

/// A validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The file it was read from.
    pub path: PathBuf,
    /// The file's text (copied into the output directory).
    pub text: String,
    pub name: String,
    pub description: Option<String>,
    /// The data directory named in the file (resolved against the file's directory).
    pub data_dir: Option<PathBuf>,
    pub seeds: Vec<u64>,
    pub models: Vec<ModelSpec>,
    /// Run options shared by every cell.
    pub run: RunSettings,
    pub eval: EvalSettings,
    pub benches: Vec<String>,
    pub probe: Option<ProbeSettings>,
    /// Every cell, in grid order (groups, then recipes, then models, then seeds).
    pub cells: Vec<CellSpec>,
}

/// One model of the experiment.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub source: ModelSource,
    pub template: ChatTemplate,
    /// Vocabulary of the BPE tokenizer trained for a preset.
    pub vocab_size: usize,
    /// The hyperparameters of this model's cells.
    pub hparams: TrainConfig,
    /// Where they came from, for run.json.
    pub hparams_source: String,
}

/// Where a model's starting weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// From scratch, initialized from the cell's seed.
    Preset(Preset),
    /// A Hugging Face directory.
    Hf(PathBuf),
    /// A GGUF file, imported into `OUT/models/<name>/hf` on first use.
    Gguf(PathBuf),
}

impl ModelSource {
    /// A stable description (part of every cell's cache key).
    pub fn describe(&self) -> String {
        match self {
            ModelSource::Preset(p) => format!("preset:{}", format!("{p:?}").to_lowercase()),
            ModelSource::Hf(d) => format!("hf:{}", d.display()),
            ModelSource::Gguf(f) => format!("gguf:{}", f.display()),
        }
    }
}

/// Options of every training run that are not hyperparameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSettings {
    /// Cap each source at its first N examples (smoke runs, the demo).
    pub limit_examples: Option<usize>,
    /// Held-out examples per source.
    pub holdout: Option<usize>,
    /// Skip (and count) malformed records.
    pub skip_invalid: bool,
}

/// Evaluation settings (the eval layer's `EvalSpec` without data dir, benches and device).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSettings {
    /// Examples per benchmark (default: all).
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
}

fn default_max_new_tokens() -> usize {
    512
}

fn default_eval_batch() -> usize {
    8
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            limit: None,
            max_new_tokens: default_max_new_tokens(),
            batch_size: default_eval_batch(),
        }
    }
}

/// The probe: a spec file and the cells whose final model it reads (with the base model).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    pub spec: PathBuf,
    /// Glob patterns over cell ids.
    pub cells: Vec<String>,
}

/// One (model, recipe, seed) of the grid.
#[derive(Debug, Clone)]
pub struct CellSpec {
    /// `model/recipe` (plus `/s<seed>` with several seeds).
    pub id: String,
    /// The id with `/` replaced by `__` (its directory under `cells/`).
    pub dir_name: String,
    /// Index into [`Experiment::models`].
    pub model: usize,
    pub recipe: Recipe,
    pub group: String,
    pub seed: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    name: Option<String>,
    description: Option<String>,
    data_dir: Option<PathBuf>,
    seeds: Option<Vec<u64>>,
    #[serde(default)]
    benches: Vec<String>,
    #[serde(default)]
    models: Vec<RawModel>,
    #[serde(default)]
    train: toml::Table,
    eval: Option<EvalSettings>,
    probe: Option<RawProbe>,
    #[serde(default)]
    grid: Vec<RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    preset: Option<String>,
    hf: Option<PathBuf>,
    gguf: Option<PathBuf>,
    template: Option<String>,
    vocab_size: Option<usize>,
    #[serde(default)]
    train: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    spec: PathBuf,
    cells: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    group: String,
    recipes: Vec<String>,
}

/// The keys of `[train]` that are run options rather than [`TrainConfig`] fields.
const RUN_KEYS: &[&str] = &["limit_examples", "holdout", "skip_invalid"];

impl Experiment {
    /// Read and check an experiment file (and every recipe it names).
    pub fn load(path: &Path) -> Result<Experiment> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Experiment::parse(&text, path)
    }

    /// Check experiment `text`; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Experiment> {
        let err = |msg: String| Error::config(path, msg);
        let raw: RawExperiment =
            toml::from_str(text).map_err(|e| err(format!("invalid experiment: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let name = match raw.name {
            Some(n) => n,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "experiment".into()),
        };
        if !safe_name(&name) {
            return Err(err(format!(
                "name: {name:?} must be letters, digits, '-', '_' or '.'"
            )));
        }
        let seeds = raw
            .seeds
            .unwrap_or_else(|| vec![crate::recipe::spec::DEFAULT_SEED]);
        if seeds.is_empty() {
            return Err(err(
                "seeds: list at least one seed (or omit it for [42])".into()
            ));
        }
        for (i, s) in seeds.iter().enumerate() {
            if seeds[..i].contains(s) {
                return Err(err(format!("seeds: {s} is listed twice")));
            }
        }
        for b in &raw.benches {
            if !BENCHES.contains(&b.as_str()) {
                return Err(err(format!(
                    "benches: unknown benchmark {b:?}; expected some of: {}",
                    BENCHES.join(", ")
                )));
            }
        }

        let (mut train, run) = split_train(raw.train).map_err(|m| err(format!("train.{m}")))?;
        let preset = match train.remove("preset") {
            None => "paper".to_string(),
            Some(toml::Value::String(s)) => s,
            Some(other) => {
                return Err(err(format!("train.preset: expected a string, got {other}")));
            }
        };
        let base_hp =
            TrainConfig::preset(&preset).map_err(|e| err(format!("train.preset: {e}")))?;
        let base_hp = merge(&base_hp, &train).map_err(|m| err(format!("train: {m}")))?;

        if raw.models.is_empty() {
            return Err(err(
                "models: add at least one [[models]] entry (name plus one of preset, hf, gguf)"
                    .into(),
            ));
        }
        let mut models = Vec::new();
        for (i, m) in raw.models.into_iter().enumerate() {
            let at = format!("models[{i}] ({:?})", m.name);
            if !safe_name(&m.name) {
                return Err(err(format!(
                    "{at}.name: must be letters, digits, '-', '_' or '.'"
                )));
            }
            if models.iter().any(|x: &ModelSpec| x.name == m.name) {
                return Err(err(format!("{at}.name: two models are named {:?}", m.name)));
            }
            let source = match (m.preset, m.hf, m.gguf) {
                (Some(p), None, None) => ModelSource::Preset(
                    Preset::from_name(&p).map_err(|e| err(format!("{at}.preset: {e}")))?,
                ),
                (None, Some(d), None) => ModelSource::Hf(base.join(d)),
                (None, None, Some(f)) => ModelSource::Gguf(base.join(f)),
                _ => {
                    return Err(err(format!("{at}: give exactly one of preset, hf, gguf")));
                }
            };
            if m.vocab_size.is_some() && !matches!(source, ModelSource::Preset(_)) {
                return Err(err(format!(
                    "{at}.vocab_size: only a preset trains its own tokenizer"
                )));
            }
            let template = match &m.template {
                None => ChatTemplate::VicunaV11,
                Some(t) => {
                    ChatTemplate::from_name(t).map_err(|e| err(format!("{at}.template: {e}")))?
                }
            };
            let vocab_size = m.vocab_size.unwrap_or(DEFAULT_VOCAB_SIZE);
            if vocab_size < 256 {
                return Err(err(format!(
                    "{at}.vocab_size: {vocab_size} is too small (at least 256: every byte is a token)"
                )));
            }
            let hparams = merge(&base_hp, &m.train).map_err(|e| err(format!("{at}.train: {e}")))?;
            let mut hparams_source =
                format!("experiment {} [train] preset {preset}", path.display());
            if !m.train.is_empty() {
                let keys: Vec<&str> = m.train.keys().map(|k| k.as_str()).collect();
                hparams_source.push_str(&format!(" with {at}.train {}", keys.join(", ")));
            }
            models.push(ModelSpec {
                name: m.name,
                source,
                template,
                vocab_size,
                hparams,
                hparams_source,
            });
        }

        let probe = match raw.probe {
            None => None,
            Some(p) => {
                let spec = base.join(&p.spec);
                if !spec.is_file() {
                    return Err(err(format!("probe.spec: {} is not a file", spec.display())));
                }
                Some(ProbeSettings {
                    spec,
                    cells: p.cells.unwrap_or_else(|| vec!["*".into()]),
                })
            }
        };

        if raw.grid.is_empty() {
            return Err(err(
                "grid: add at least one [[grid]] group (group = \"…\", recipes = [\"…\"])".into(),
            ));
        }
        let mut cells: Vec<CellSpec> = Vec::new();
        let mut seen: BTreeMap<PathBuf, String> = BTreeMap::new();
        for (gi, g) in raw.grid.iter().enumerate() {
            let at = format!("grid[{gi}] ({:?})", g.group);
            if !safe_name(&g.group) {
                return Err(err(format!(
                    "{at}.group: must be letters, digits, '-', '_' or '.'"
                )));
            }
            if g.recipes.is_empty() {
                return Err(err(format!("{at}.recipes: list at least one recipe")));
            }
            for pattern in &g.recipes {
                let files = resolve_pattern(pattern, &base)
                    .map_err(|m| err(format!("{at}.recipes: {m}")))?;
                for file in files {
                    let canon = file.canonicalize().unwrap_or_else(|_| file.clone());
                    if let Some(other) = seen.get(&canon) {
                        return Err(err(format!(
                            "{at}.recipes: {} is already in group {other:?} (a recipe belongs to one group)",
                            file.display()
                        )));
                    }
                    seen.insert(canon, g.group.clone());
                    let recipe = Recipe::load(&file)?;
                    for (mi, m) in models.iter().enumerate() {
                        for &seed in &seeds {
                            let mut id = format!("{}/{}", m.name, recipe.name);
                            if seeds.len() > 1 {
                                id.push_str(&format!("/s{seed}"));
                            }
                            if let Some(c) = cells.iter().find(|c| c.id == id) {
                                return Err(err(format!(
                                    "{at}.recipes: {} and {} are both named {:?}; cell ids must be unique",
                                    c.recipe.path.display(),
                                    file.display(),
                                    recipe.name
                                )));
                            }
                            cells.push(CellSpec {
                                dir_name: id.replace('/', "__"),
                                id,
                                model: mi,
                                recipe: recipe.clone(),
                                group: g.group.clone(),
                                seed,
                            });
                        }
                    }
                }
            }
        }

        Ok(Experiment {
            path: path.to_path_buf(),
            text: text.to_string(),
            name,
            description: raw.description,
            data_dir: raw.data_dir.map(|d| base.join(d)),
            seeds,
            models,
            run,
            eval: raw.eval.unwrap_or_default(),
            benches: raw.benches,
            probe,
            cells,
        })
    }
}

/// Take the run options out of `[train]`; the rest are hyperparameters.
fn split_train(mut t: toml::Table) -> std::result::Result<(toml::Table, RunSettings), String> {
    let count = |t: &mut toml::Table, key: &str| -> std::result::Result<Option<usize>, String> {
        match t.remove(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if n >= 1 => Ok(Some(n as usize)),
            Some(other) => Err(format!("{key}: expected a positive integer, got {other}")),
        }
    };
    let limit_examples = count(&mut t, RUN_KEYS[0])?;
    let holdout = count(&mut t, RUN_KEYS[1])?;
    let skip_invalid = match t.remove(RUN_KEYS[2]) {
        None => false,
        Some(toml::Value::Boolean(b)) => b,
        Some(other) => return Err(format!("skip_invalid: expected true or false, got {other}")),
    };
    Ok((
        t,
        RunSettings {
            limit_examples,
            holdout,
            skip_invalid,
        },
    ))
}

/// `base` with the fields of `overrides` replaced; unknown fields and bad values are errors.
fn merge(base: &TrainConfig, overrides: &toml::Table) -> std::result::Result<TrainConfig, String> {
    let mut merged = toml::Table::try_from(base).map_err(|e| format!("internal: {e}"))?;
    for (k, v) in overrides {
        if k == "preset" || RUN_KEYS.contains(&k.as_str()) {
            return Err(format!(
                "{k}: set it in the experiment's [train] table, not per model"
            ));
        }
        merged.insert(k.clone(), v.clone());
    }
    let c: TrainConfig = toml::Value::Table(merged)
        .try_into()
        .map_err(|e| format!("{e}"))?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// True for names usable in file names.
fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
}

/// The files a recipe pattern names, sorted: `{a,b}` alternatives expand first, then `*`/`?`
/// in the file name match within its directory. Relative patterns are looked up beside the
/// experiment (`base`), else in the working directory.
pub fn resolve_pattern(pattern: &str, base: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for alt in expand_braces(pattern)? {
        let p = Path::new(&alt);
        let candidates: Vec<PathBuf> = if p.is_absolute() {
            vec![p.to_path_buf()]
        } else {
            vec![base.join(p), p.to_path_buf()]
        };
        let mut found = None;
        for c in &candidates {
            let files = match_files(c)?;
            if !files.is_empty() {
                found = Some(files);
                break;
            }
        }
        match found {
            Some(files) => {
                for f in files {
                    if !out.contains(&f) {
                        out.push(f);
                    }
                }
            }
            None => {
                return Err(format!(
                    "{alt:?} matches no recipe file (looked in {})",
                    candidates
                        .iter()
                        .map(|c| c.parent().unwrap_or(Path::new(".")).display().to_string())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ));
            }
        }
    }
    Ok(out)
}

/// Files matching `path` whose last component may hold `*` and `?`.
fn match_files(path: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new(""));
    if dir.to_string_lossy().contains(['*', '?']) {
        return Err(format!(
            "{}: wildcards are allowed in the file name only",
            path.display()
        ));
    }
    if !name.contains(['*', '?']) {
        return Ok(if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let listing = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(listing) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter(|e| glob_match(&name, &e.file_name().to_string_lossy()))
        .map(|e| dir.join(e.file_name()))
        .collect();
    files.sort();
    Ok(files)
}

/// Expand `{a,b}` alternatives (not nested) into every combination, in order.
fn expand_braces(pattern: &str) -> std::result::Result<Vec<String>, String> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err(format!("{pattern:?}: '}}' without '{{'"));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find('}')
        .map(|i| open + i)
        .ok_or_else(|| format!("{pattern:?}: '{{' without '}}'"))?;
    let inner = &pattern[open + 1..close];
    if inner.contains('{') {
        return Err(format!("{pattern:?}: nested braces are not supported"));
    }
    let rests = expand_braces(&pattern[close + 1..])?;
    let mut out = Vec::new();
    for alt in inner.split(',') {
        for rest in &rests {
            out.push(format!("{}{alt}{rest}", &pattern[..open]));
        }
    }
    Ok(out)
}

/// Shell-style match of `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_braces() {
        assert!(glob_match("rq4-*.toml", "rq4-dmt.toml"));
        assert!(!glob_match("rq4-*.toml", "dmt-k1.toml"));
        assert!(glob_match("*/rq4-*", "tiny/rq4-dmt"));
        assert!(glob_match("dmt-k?.toml", "dmt-k4.toml"));
        assert!(!glob_match("dmt-k?.toml", "dmt-k16.toml"));
        assert_eq!(
            expand_braces("single-{math,code}-f{1,4}").unwrap(),
            vec![
                "single-math-f1",
                "single-math-f4",
                "single-code-f1",
                "single-code-f4"
            ]
        );
        assert!(expand_braces("a{b").is_err());
    }
}
