//! Executing an experiment: every cell trained, evaluated and recorded, with a cache keyed by
//! everything that defines a cell, resume of an interrupted cell, and failures recorded
//! without stopping the grid. See [`super`] for the output layout.
use super::results::{
    BaseResult, CellRecord, CellResult, Counts, DataInfo, ExperimentInfo, Forgetting, Meta,
    ProbeResult, Results, now_rfc3339,
};
use super::spec::{CellSpec, Experiment, ModelSource, ModelSpec, ProbeSettings, glob_match};
use crate::data::bpe::to_json;
use crate::data::tokenize::ChatTokenizer;
use crate::error::{Error, Result};
use crate::eval::run::{Bench, EvalSpec, evaluate_model, evaluate_run_dir};
use crate::model::Precision;
use crate::model::device::DeviceKind;
use crate::model::{CpuAutodiff, CpuBackend, Llama, LlamaConfig, save_hf_dir};
use crate::probe::{
    ExtractOptions, MetricsConfig, ModelRef, ProbeSpec, ProjectConfig, extract, metrics, project,
};
use crate::recipe::spec::{DEFAULT_HOLDOUT, Stage, Strategy};
use crate::recipe::{Amount, ComposeOptions, Recipe, compose};
use crate::train::data::train_tokenizer;
use crate::train::run::{Controls, Outcome, RunSpec, Start, Summary};
use crate::util::{sha256_bytes, sha256_file, write_atomic, write_json};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// How to run an experiment.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Directory the recipes' source paths are relative to.
    pub data_dir: PathBuf,
    /// The experiment directory (created).
    pub out: PathBuf,
    /// Where to train (already resolved: CUDA only when available).
    pub device: DeviceKind,
    /// Precision of the matrix products in training; `None`: bf16 where the device computes
    /// in it (CUDA), fp32 elsewhere.
    pub precision: Option<Precision>,
    /// Glob patterns over cell ids; empty runs every cell.
    pub only: Vec<String>,
    /// Run cells that failed before (with the same key) again instead of keeping the failure.
    pub retry_failed: bool,
    /// When set (Ctrl-C), the current cell writes a checkpoint and the run stops.
    pub stop: Option<Arc<AtomicBool>>,
    /// Stop a cell (checkpoint, then end the run) after this many optimizer steps of this
    /// invocation of it: to test resume.
    pub stop_after: Option<u64>,
    /// Training's progress bars.
    pub progress: bool,
    /// The command line, recorded in every run.json.
    pub command: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub results: Results,
    /// `OUT/results.json`.
    pub results_path: PathBuf,
    /// A cell was stopped mid-way (re-run the same command to resume it).
    pub interrupted: bool,
}

impl RunReport {
    /// The cells that failed (in this or an earlier invocation).
    pub fn failed(&self) -> Vec<&CellResult> {
        self.results
            .cells
            .iter()
            .filter(|c| c.status == "failed")
            .collect()
    }
}

/// The base model a cell starts from, ready to train.
#[derive(Debug, Clone)]
struct Prepared {
    /// A Hugging Face directory (for presets: the seeded initialization and shared tokenizer).
    dir: PathBuf,
    /// The tokenizer every cell of a preset shares.
    tokenizer: Option<PathBuf>,
}

/// Run every cell of `exp` (see the module docs); errors only for problems outside any cell
/// (unwritable output directory, unreadable data directory).
pub fn run_experiment(exp: &Experiment, opts: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let out = opts.out.as_path();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_atomic(&out.join("experiment.toml"), exp.text.as_bytes())?;
    let files = hash_data_files(exp, &opts.data_dir)?;

    let device = format!("{:?}", opts.device).to_lowercase();
    let mut results = Results {
        experiment: ExperimentInfo {
            name: exp.name.clone(),
            file: exp.path.display().to_string(),
            sha256: sha256_bytes(exp.text.as_bytes()),
            description: exp.description.clone(),
        },
        meta: Meta {
            mixprobe_version: env!("CARGO_PKG_VERSION").into(),
            git_rev: git_rev(),
            started: started_at,
            wall_s: 0.0,
            device: device.clone(),
            threads: rayon::current_num_threads(),
            data: DataInfo {
                dir: opts.data_dir.display().to_string(),
                files: files.clone(),
            },
            seeds: exp.seeds.clone(),
            counts: Counts::default(),
        },
        cells: exp
            .cells
            .iter()
            .map(|c| collect_cell(exp, c, out, "pending", None, None))
            .collect(),
        base: Vec::new(),
        probe: None,
    };
    let results_path = out.join("results.json");
    let selected: Vec<bool> = exp
        .cells
        .iter()
        .map(|c| opts.only.is_empty() || opts.only.iter().any(|p| glob_match(p, &c.id)))
        .collect();
    let n = exp.cells.len();
    let mut prepared: BTreeMap<(usize, u64), std::result::Result<Prepared, String>> =
        BTreeMap::new();
    let mut interrupted = false;
    let mut ran_walls: Vec<f64> = Vec::new();
    let mut counts = Counts::default();

    for (i, cell) in exp.cells.iter().enumerate() {
        let model = &exp.models[cell.model];
        let key = cell_key(exp, cell, model, &files);
        let ekey = eval_key(exp, &key);
        let cell_dir = out.join("cells").join(&cell.dir_name);
        let record_path = cell_dir.join("cell.json");
        let prev = CellRecord::read(&record_path).filter(|r| r.key_sha256 == key);
        let tag = format!("[{}/{n}] {} ({})", i + 1, cell.id, cell.group);
        let prev_status = prev.as_ref().map(|r| r.status.as_str());
        if prev_status == Some("done") && prev.as_ref().is_some_and(|r| r.eval_key_sha256 == ekey) {
            eprintln!("{tag}: cached (finished {})", finished_of(&prev));
            counts.cached += 1;
            results.cells[i] = collect_cell(exp, cell, out, "done", None, prev.as_ref());
            continue;
        }
        if prev_status == Some("failed") && !opts.retry_failed {
            let error = prev.as_ref().and_then(|r| r.error.clone());
            eprintln!(
                "{tag}: failed earlier, kept (pass --retry-failed to run it again): {}",
                error.as_deref().unwrap_or("")
            );
            counts.failed += 1;
            results.cells[i] = collect_cell(exp, cell, out, "failed", error, prev.as_ref());
            continue;
        }
        if !selected[i] || interrupted {
            counts.pending += 1;
            continue;
        }
        if prev.is_none() && cell_dir.exists() {
            // A different key (recipe, model, hyperparameters, data or version changed).
            std::fs::remove_dir_all(&cell_dir).map_err(|e| Error::io(&cell_dir, e))?;
        }
        let remaining = exp.cells[i..]
            .iter()
            .zip(&selected[i..])
            .filter(|(_, s)| **s)
            .count();
        let eta = if ran_walls.is_empty() {
            "ETA unknown".to_string()
        } else {
            let mean = ran_walls.iter().sum::<f64>() / ran_walls.len() as f64;
            format!("ETA {}", format_secs(mean * remaining as f64))
        };
        let resume = prev.is_some();
        eprintln!(
            "{tag}: {} ({eta})",
            if resume { "resuming" } else { "training" }
        );
        let t0 = Instant::now();
        let mut record = prev.clone().unwrap_or(CellRecord {
            id: cell.id.clone(),
            key_sha256: key.clone(),
            eval_key_sha256: None,
            status: "pending".into(),
            wall_s: 0.0,
            error: None,
            finished: None,
            attempts: 0,
        });
        record.status = "pending".into();
        record.error = None;
        record.attempts += 1;
        std::fs::create_dir_all(&cell_dir).map_err(|e| Error::io(&cell_dir, e))?;
        write_json(&record_path, &record)?;

        let prep = prepared
            .entry((cell.model, cell.seed))
            .or_insert_with(|| {
                prepare_model(exp, cell.model, cell.seed, opts).map_err(|e| e.to_string())
            })
            .clone();
        let outcome = match prep {
            Err(e) => Err(format!("preparing model {:?}: {e}", model.name)),
            Ok(prep) => {
                let failed_before = prev_status == Some("failed");
                let trained = train_cell(exp, cell, &prep, &cell_dir, failed_before, opts);
                match (trained, &ekey) {
                    (Ok(Outcome::Finished), Some(ek))
                        if record.eval_key_sha256.as_ref() != Some(ek)
                            || !cell_dir.join("eval.json").is_file() =>
                    {
                        eprintln!("{tag}: evaluating");
                        eval_cell(exp, cell, &cell_dir, opts)
                            .map(|()| {
                                record.eval_key_sha256 = Some(ek.clone());
                                Outcome::Finished
                            })
                            .map_err(|e| format!("evaluating: {e}"))
                    }
                    (other, _) => other,
                }
            }
        };
        let wall = t0.elapsed().as_secs_f64();
        record.wall_s += wall;
        match outcome {
            Ok(Outcome::Finished) => {
                record.status = "done".into();
                record.finished = Some(now_rfc3339());
                ran_walls.push(wall);
                counts.ran += 1;
                eprintln!("{tag}: done in {}", format_secs(wall));
            }
            Ok(Outcome::Stopped { .. }) => {
                interrupted = true;
                counts.pending += 1;
                eprintln!("{tag}: stopped after a checkpoint; re-run to resume it");
            }
            Err(e) => {
                record.status = "failed".into();
                record.error = Some(e.clone());
                counts.failed += 1;
                eprintln!("{tag}: FAILED: {e}");
            }
        }
        write_json(&record_path, &record)?;
        results.cells[i] = collect_cell(
            exp,
            cell,
            out,
            &record.status,
            record.error.clone(),
            Some(&record),
        );
        results.base = base_scores(exp, &results.cells, out);
        results.meta.counts = counts.clone();
        results.meta.wall_s = started.elapsed().as_secs_f64();
        write_json(&results_path, &results)?;
    }
    results.base = if exp.benches.is_empty() || interrupted {
        base_scores(exp, &results.cells, out)
    } else {
        base_evals(exp, &prepared, opts)
    };
    if let Some(probe) = &exp.probe
        && !interrupted
    {
        results.probe = Some(run_probe(exp, probe, &results.cells, &prepared, opts));
    }
    results.meta.counts = counts;
    results.meta.wall_s = started.elapsed().as_secs_f64();
    write_json(&results_path, &results)?;
    Ok(RunReport {
        results,
        results_path,
        interrupted,
    })
}

/// Train one cell in `cell_dir/run`: fresh, resumed, or already finished.
fn train_cell(
    exp: &Experiment,
    cell: &CellSpec,
    prep: &Prepared,
    cell_dir: &Path,
    failed_before: bool,
    opts: &RunOptions,
) -> std::result::Result<Outcome, String> {
    let run_dir = cell_dir.join("run");
    if run_finished(&run_dir) {
        return Ok(Outcome::Finished);
    }
    if failed_before && run_dir.exists() {
        // A failed run may have stopped anywhere; retry from scratch.
        std::fs::remove_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    }
    let model = &exp.models[cell.model];
    let start = match &model.source {
        ModelSource::Preset(p) => Start::Preset(*p),
        _ => Start::Model(prep.dir.clone()),
    };
    let spec = RunSpec {
        recipe: cell.recipe.path.clone(),
        data_dir: opts.data_dir.clone(),
        start,
        tokenizer: prep.tokenizer.clone(),
        vocab_size: model.vocab_size,
        template: model.template,
        out: run_dir.clone(),
        hparams: model.hparams.clone(),
        hparams_source: model.hparams_source.clone(),
        seed: Some(cell.seed),
        limit_examples: exp.run.limit_examples,
        holdout: exp.run.holdout,
        skip_invalid: exp.run.skip_invalid,
        resume: run_dir.join("run.json").is_file(),
        device: format!("{:?}", opts.device).to_lowercase(),
        precision: opts.precision,
        command: opts.command.clone(),
    };
    let controls = Controls {
        stop: opts.stop.clone(),
        stop_after: opts.stop_after,
        progress: opts.progress,
    };
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_on(opts.device, &spec, &controls)
    }));
    match caught {
        Ok(Ok(summary)) => Ok(summary.outcome),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!("training panicked: {}", panic_message(&panic))),
    }
}

/// The evaluation's key: the cell's key plus the benchmarks and evaluation settings; None
/// when the experiment lists no benchmarks.
fn eval_key(exp: &Experiment, cell_key: &str) -> Option<String> {
    if exp.benches.is_empty() {
        return None;
    }
    let value = json!({
        "cell": cell_key,
        "benches": exp.benches,
        "limit": exp.eval.limit,
        "max_new_tokens": exp.eval.max_new_tokens,
        "batch_size": exp.eval.batch_size,
    });
    Some(sha256_bytes(value.to_string().as_bytes()))
}

/// The eval layer's settings for a model of the experiment.
fn eval_spec(
    exp: &Experiment,
    model: &ModelSpec,
    seed: u64,
    opts: &RunOptions,
) -> Result<EvalSpec> {
    let benches = exp
        .benches
        .iter()
        .map(|b| b.parse::<Bench>())
        .collect::<Result<Vec<_>>>()?;
    let mut spec = EvalSpec::new(opts.data_dir.clone(), benches);
    spec.limit = exp.eval.limit;
    spec.max_new_tokens = exp.eval.max_new_tokens;
    spec.batch_size = exp.eval.batch_size;
    spec.device = opts.device;
    spec.progress = opts.progress;
    spec.seed = seed;
    spec.template = Some(model.template);
    Ok(spec)
}

/// Evaluate every checkpoint of the cell's run into `cell_dir/eval.json`.
fn eval_cell(exp: &Experiment, cell: &CellSpec, cell_dir: &Path, opts: &RunOptions) -> Result<()> {
    let spec = eval_spec(exp, &exp.models[cell.model], cell.seed, opts)?;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        evaluate_run_dir(&cell_dir.join("run"), &spec)
    }));
    let run_eval = match caught {
        Ok(r) => r?,
        Err(panic) => {
            return Err(Error::Internal(format!(
                "evaluation panicked: {}",
                panic_message(&panic)
            )));
        }
    };
    write_json(&cell_dir.join("eval.json"), &run_eval)
}

/// Every model's base scores from the eval layer (cached in `OUT/models/<model>/`); a model
/// whose preparation or evaluation failed carries the error.
fn base_evals(
    exp: &Experiment,
    prepared: &BTreeMap<(usize, u64), std::result::Result<Prepared, String>>,
    opts: &RunOptions,
) -> Vec<BaseResult> {
    let seed = exp.seeds[0];
    exp.models
        .iter()
        .enumerate()
        .filter_map(|(mi, m)| {
            let prep = prepared.get(&(mi, seed))?;
            let result = prep
                .clone()
                .and_then(|p| base_eval(exp, m, seed, &p, opts).map_err(|e| e.to_string()));
            Some(match result {
                Ok(scores) => BaseResult {
                    model: m.name.clone(),
                    scores,
                    scores_from: Some("eval".into()),
                    error: None,
                },
                Err(e) => {
                    eprintln!("base model {}: evaluation FAILED: {e}", m.name);
                    BaseResult {
                        model: m.name.clone(),
                        scores: BTreeMap::new(),
                        scores_from: None,
                        error: Some(e),
                    }
                }
            })
        })
        .collect()
}

fn base_eval(
    exp: &Experiment,
    model: &ModelSpec,
    seed: u64,
    prep: &Prepared,
    opts: &RunOptions,
) -> Result<BTreeMap<String, f64>> {
    let path = opts
        .out
        .join("models")
        .join(&model.name)
        .join(format!("eval-s{seed}.json"));
    let key = sha256_bytes(
        json!({
            "model": prep.dir.display().to_string(),
            "weights": sha256_file(&prep.dir.join(crate::model::checkpoint::WEIGHTS_FILE)).ok(),
            "eval": eval_key(exp, ""),
        })
        .to_string()
        .as_bytes(),
    );
    if let Some(v) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|v| v["key_sha256"] == json!(key))
    {
        return Ok(scores_of(&v["results"]));
    }
    eprintln!(
        "evaluating base model {} ({})",
        model.name,
        prep.dir.display()
    );
    let spec = eval_spec(exp, model, seed, opts)?;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        evaluate_model(&prep.dir, &spec)
    }));
    let res = match caught {
        Ok(r) => r?,
        Err(panic) => {
            return Err(Error::Internal(format!(
                "evaluation panicked: {}",
                panic_message(&panic)
            )));
        }
    };
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
        .map_err(|e| Error::io(&path, e))?;
    write_json(&path, &json!({"key_sha256": key, "results": res}))?;
    Ok(res.scores)
}

/// `scores` of a serialized `EvalResults`.
fn scores_of(v: &Value) -> BTreeMap<String, f64> {
    v["scores"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Hidden states of the base models and of every finished cell the probe names, their
/// projections and interference metrics, in `OUT/probe/` (redone only when its inputs change).
fn run_probe(
    exp: &Experiment,
    probe: &ProbeSettings,
    cells: &[CellResult],
    prepared: &BTreeMap<(usize, u64), std::result::Result<Prepared, String>>,
    opts: &RunOptions,
) -> ProbeResult {
    let dir = opts.out.join("probe");
    let mut names = BTreeMap::new();
    let mut models = Vec::new();
    let seed = exp.seeds[0];
    for (mi, m) in exp.models.iter().enumerate() {
        if let Some(Ok(p)) = prepared.get(&(mi, seed)) {
            let name = format!("{}__base", m.name);
            names.insert(format!("{}/base", m.name), name.clone());
            models.push(ModelRef {
                name,
                dir: p.dir.clone(),
            });
        }
    }
    for c in cells
        .iter()
        .filter(|c| c.status == "done" && probe.cells.iter().any(|p| glob_match(p, &c.id)))
    {
        let name = c.id.replace('/', "__");
        names.insert(c.id.clone(), name.clone());
        models.push(ModelRef {
            name,
            dir: opts.out.join(&c.run_dir).join("final"),
        });
    }
    let mut result = ProbeResult {
        dir: "probe".into(),
        metrics: None,
        models: names,
        error: None,
    };
    match probe_into(exp, probe, &models, &dir, opts) {
        Ok(()) => result.metrics = Some("probe/metrics.json".into()),
        Err(e) => {
            eprintln!("probe FAILED: {e}");
            result.error = Some(e.to_string());
        }
    }
    result
}

fn probe_into(
    exp: &Experiment,
    probe: &ProbeSettings,
    models: &[ModelRef],
    dir: &Path,
    opts: &RunOptions,
) -> Result<()> {
    let text = std::fs::read_to_string(&probe.spec).map_err(|e| Error::io(&probe.spec, e))?;
    let spec = ProbeSpec::from_toml_str(&text, &probe.spec.display().to_string())?;
    let weights: Vec<Value> = models
        .iter()
        .map(|m| {
            json!([
                m.name,
                sha256_file(&m.dir.join(crate::model::checkpoint::WEIGHTS_FILE)).ok()
            ])
        })
        .collect();
    let key = sha256_bytes(
        json!({"spec": text, "models": weights, "seed": exp.seeds[0], "data": opts.data_dir.display().to_string()})
            .to_string()
            .as_bytes(),
    );
    let key_path = dir.join("probe-key.json");
    let cached = std::fs::read(&key_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| v["key_sha256"] == json!(key))
        && dir.join("metrics.json").is_file();
    if cached {
        eprintln!("probe: cached ({} models)", models.len());
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    eprintln!("probe: extracting hidden states of {} models", models.len());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<()> {
        extract(
            &spec,
            &opts.data_dir,
            models,
            dir,
            &ExtractOptions {
                device: opts.device,
                progress: opts.progress,
                ..Default::default()
            },
        )?;
        eprintln!("probe: projecting");
        project(
            dir,
            &ProjectConfig {
                seed: exp.seeds[0],
                progress: opts.progress,
                ..Default::default()
            },
        )?;
        let m = metrics(dir, &MetricsConfig::default())?;
        write_json(&dir.join("metrics.json"), &m)
    }));
    match caught {
        Ok(r) => r?,
        Err(panic) => {
            return Err(Error::Internal(format!(
                "the probe panicked: {}",
                panic_message(&panic)
            )));
        }
    }
    write_json(&key_path, &json!({"key_sha256": key}))
}

/// Train on the requested backend.
fn train_on(kind: DeviceKind, spec: &RunSpec, controls: &Controls) -> Result<Summary> {
    match kind {
        DeviceKind::Cpu => {
            crate::train::run::run::<CpuAutodiff>(spec, controls, &Default::default())
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            type Cuda = burn::backend::Autodiff<crate::model::device::CudaBackend>;
            crate::train::run::run::<Cuda>(spec, controls, &Default::default())
        }
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => Err(Error::invalid(
            "--device",
            "cuda needs a build with the `cuda` feature",
        )),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

/// Whether `run.json` in `run_dir` says the run finished.
fn run_finished(run_dir: &Path) -> bool {
    std::fs::read(run_dir.join("run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| v["finished"] == json!(true))
        && run_dir.join("final").join("config.json").is_file()
}

/// The base model of `model` for `seed`: a Hugging Face directory, an imported GGUF, or (for a
/// preset) a BPE tokenizer trained on every source the model's cells read plus the seeded
/// initialization, shared by all its cells (cached under `OUT/models/`).
fn prepare_model(exp: &Experiment, mi: usize, seed: u64, opts: &RunOptions) -> Result<Prepared> {
    let model = &exp.models[mi];
    let root = opts.out.join("models").join(&model.name);
    match &model.source {
        ModelSource::Hf(dir) => {
            if !dir.join("config.json").is_file() {
                return Err(Error::file(
                    dir,
                    "not a Hugging Face model directory (no config.json)",
                ));
            }
            Ok(Prepared {
                dir: dir.clone(),
                tokenizer: None,
            })
        }
        ModelSource::Gguf(file) => {
            let dir = root.join("hf");
            if !dir.join("config.json").is_file() {
                eprintln!("importing {} into {}", file.display(), dir.display());
                crate::gguf::import::import_gguf(file, &dir, true)?;
            }
            Ok(Prepared {
                dir,
                tokenizer: None,
            })
        }
        ModelSource::Preset(preset) => {
            let dir = root.join(format!("s{seed}"));
            let recipe = tokenizer_recipe(exp, mi, seed, &root)?;
            let key = sha256_bytes(
                serde_json::to_vec(&json!({
                    "model": model.source.describe(),
                    "vocab_size": model.vocab_size,
                    "template": model.template.name(),
                    "recipe": recipe.text,
                    "data": hash_recipe_files(&recipe, &opts.data_dir),
                    "limit_examples": exp.run.limit_examples,
                    "holdout": holdout_for(&recipe, exp),
                    "version": env!("CARGO_PKG_VERSION"),
                }))
                .map_err(|e| Error::Internal(e.to_string()))?
                .as_slice(),
            );
            let tok_path = dir.join("tokenizer.json");
            let prep_path = dir.join("prep.json");
            let cached = std::fs::read(&prep_path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| v["key_sha256"] == json!(key));
            if !cached {
                eprintln!(
                    "preparing model {} (seed {seed}): training a {}-token BPE tokenizer on its sources",
                    model.name, model.vocab_size
                );
                let comp = compose(
                    &recipe,
                    &ComposeOptions {
                        data_dir: opts.data_dir.clone(),
                        seed: Some(seed),
                        skip_invalid: exp.run.skip_invalid,
                        limit_examples: exp.run.limit_examples,
                        holdout: holdout_for(&recipe, exp),
                        tokenizer: None,
                    },
                )?;
                let tokenizer = train_tokenizer(&comp, model.template, model.vocab_size)?;
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                write_atomic(&tok_path, to_json(&tokenizer)?.as_bytes())?;
                let vocab = ChatTokenizer::from_file(&tok_path, model.template)?.vocab_size();
                let config = LlamaConfig::preset(*preset, vocab);
                let base = Llama::<CpuBackend>::init(&config, seed, &Default::default());
                save_hf_dir(&base, &dir, Some(&tok_path))?;
                write_json(&prep_path, &json!({"key_sha256": key, "seed": seed}))?;
            }
            Ok(Prepared {
                dir,
                tokenizer: Some(tok_path),
            })
        }
    }
}

/// One mixed stage over every source the model's cells read (first definition of each name,
/// without ablation): what a preset's shared tokenizer is trained on.
fn tokenizer_recipe(exp: &Experiment, mi: usize, seed: u64, root: &Path) -> Result<Recipe> {
    let mut sources = BTreeMap::new();
    for c in exp.cells.iter().filter(|c| c.model == mi) {
        for (name, s) in &c.recipe.sources {
            sources.entry(name.clone()).or_insert_with(|| {
                let mut s = s.clone();
                s.ablate.clear();
                s
            });
        }
    }
    let text = serde_json::to_string(
        &sources
            .iter()
            .map(|(n, s)| (n.clone(), s.path.display().to_string()))
            .collect::<BTreeMap<_, _>>(),
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Recipe {
        path: root.join("tokenizer-sources"),
        text,
        name: "tokenizer".into(),
        description: None,
        seed,
        strategy: None,
        stages: vec![Stage {
            name: "all".into(),
            epochs: 1,
            mix: sources.keys().map(|k| (k.clone(), Amount::ALL)).collect(),
        }],
        sources,
    })
}

/// The held-out count training uses for `recipe` (see `RunSpec::holdout`).
fn holdout_for(recipe: &Recipe, exp: &Experiment) -> Option<usize> {
    exp.run.holdout.or_else(|| {
        let most = recipe
            .sources
            .values()
            .map(|s| s.holdout)
            .max()
            .unwrap_or(DEFAULT_HOLDOUT);
        exp.run.limit_examples.map(|n| (n / 5).max(1).min(most))
    })
}

/// sha256 of every data file any cell reads (absent files are left out).
fn hash_data_files(exp: &Experiment, data_dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for c in &exp.cells {
        for s in c.recipe.sources.values() {
            let rel = s.path.display().to_string();
            if files.contains_key(&rel) {
                continue;
            }
            let p = data_dir.join(&s.path);
            if p.is_file() {
                files.insert(rel, sha256_file(&p)?);
            }
        }
    }
    Ok(files)
}

/// Path → sha256 (or null when absent) of the files `recipe` reads.
fn hash_recipe_files(recipe: &Recipe, data_dir: &Path) -> BTreeMap<String, Option<String>> {
    recipe
        .sources
        .values()
        .map(|s| {
            (
                s.path.display().to_string(),
                sha256_file(&data_dir.join(&s.path)).ok(),
            )
        })
        .collect()
}

/// The cache key of a cell: sha256 over its recipe's bytes, the model, the hyperparameters and
/// run options, the seed, the hashes of the data files it reads, and the mixprobe version.
fn cell_key(
    exp: &Experiment,
    cell: &CellSpec,
    model: &ModelSpec,
    files: &BTreeMap<String, String>,
) -> String {
    let data: BTreeMap<String, Option<&String>> = cell
        .recipe
        .sources
        .values()
        .map(|s| {
            let rel = s.path.display().to_string();
            let h = files.get(&rel);
            (rel, h)
        })
        .collect();
    let value = json!({
        "recipe_sha256": sha256_bytes(cell.recipe.text.as_bytes()),
        "model": {
            "source": model.source.describe(),
            "template": model.template.name(),
            "vocab_size": model.vocab_size,
        },
        "hparams": model.hparams,
        "run": {
            "limit_examples": exp.run.limit_examples,
            "holdout": exp.run.holdout,
            "skip_invalid": exp.run.skip_invalid,
        },
        "seed": cell.seed,
        "data": data,
        "version": env!("CARGO_PKG_VERSION"),
    });
    sha256_bytes(value.to_string().as_bytes())
}

/// A cell's entry in results.json, read from its directory.
fn collect_cell(
    exp: &Experiment,
    cell: &CellSpec,
    out: &Path,
    status: &str,
    error: Option<String>,
    record: Option<&CellRecord>,
) -> CellResult {
    let model = &exp.models[cell.model];
    let run_rel = format!("cells/{}/run", cell.dir_name);
    let run_dir = out.join(&run_rel);
    let done = status == "done";
    let (train_tokens, final_loss) = if done {
        read_metrics(&run_dir.join("metrics.jsonl"), model.hparams.log_every == 1)
    } else {
        (None, None)
    };
    let eval = done
        .then(|| std::fs::read(out.join("cells").join(&cell.dir_name).join("eval.json")).ok())
        .flatten()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    if let Some(eval) = eval {
        let stages = eval["stages"].as_array();
        let scores = stages
            .and_then(|s| s.last())
            .map(|last| scores_of(&last[1]))
            .unwrap_or_default();
        let forgetting = serde_json::from_value::<Forgetting>(eval["forgetting"].clone()).ok();
        return cell_result(
            exp,
            cell,
            status,
            error,
            record,
            run_rel,
            (train_tokens, final_loss),
            scores,
            forgetting,
            "eval",
        );
    }
    let forgetting = done
        .then(|| read_forgetting(&run_dir.join("forgetting.json")))
        .flatten();
    let mut scores = BTreeMap::new();
    if let Some(f) = &forgetting
        && let (Some(last), Some(m)) = (f.stages.len().checked_sub(1), f.metrics.get("nll"))
    {
        for (a, v) in f.abilities.iter().zip(&m[last]) {
            if let Some(v) = v {
                scores.insert(format!("nll.{a}"), *v);
            }
        }
    }
    cell_result(
        exp,
        cell,
        status,
        error,
        record,
        run_rel,
        (train_tokens, final_loss),
        scores,
        forgetting,
        "train",
    )
}

#[allow(clippy::too_many_arguments)]
fn cell_result(
    exp: &Experiment,
    cell: &CellSpec,
    status: &str,
    error: Option<String>,
    record: Option<&CellRecord>,
    run_dir: String,
    (train_tokens, final_loss): (Option<u64>, Option<f64>),
    scores: BTreeMap<String, f64>,
    forgetting: Option<Forgetting>,
    scores_from: &str,
) -> CellResult {
    let d = describe_recipe(&cell.recipe);
    CellResult {
        id: cell.id.clone(),
        model: exp.models[cell.model].name.clone(),
        recipe: cell.recipe.name.clone(),
        group: cell.group.clone(),
        strategy: d.strategy,
        fractions: d.fractions,
        k: d.k,
        ablation: d.ablation,
        ratio: d.ratio,
        seed: cell.seed,
        status: status.to_string(),
        error,
        wall_s: record.map(|r| r.wall_s),
        run_dir,
        train_tokens,
        final_loss,
        scores_from: (!scores.is_empty()).then(|| scores_from.to_string()),
        scores,
        forgetting,
    }
}

/// The base model's held-out NLL per ability: row 0 (before training) of the first finished
/// cell of each model that evaluated that ability.
fn base_scores(exp: &Experiment, cells: &[CellResult], out: &Path) -> Vec<BaseResult> {
    let mut base = Vec::new();
    for m in &exp.models {
        let mut scores = BTreeMap::new();
        for c in cells
            .iter()
            .filter(|c| c.model == m.name && c.status == "done")
        {
            if c.ablation.is_some() {
                continue;
            }
            let Some(f) = read_forgetting(&out.join(&c.run_dir).join("forgetting.json")) else {
                continue;
            };
            if let Some(m0) = f.metrics.get("nll").and_then(|m| m.first()) {
                for (a, v) in f.abilities.iter().zip(m0) {
                    if let Some(v) = v {
                        scores.entry(format!("nll.{a}")).or_insert(*v);
                    }
                }
            }
        }
        base.push(BaseResult {
            model: m.name.clone(),
            scores_from: (!scores.is_empty()).then(|| "train".to_string()),
            scores,
            error: None,
        });
    }
    base
}

/// The training's stage × ability held-out NLL matrix (`initial`, `stage-1`, …).
fn read_forgetting(path: &Path) -> Option<Forgetting> {
    let bytes = std::fs::read(path).ok()?;
    let f: crate::train::log::Forgetting = serde_json::from_slice(&bytes).ok()?;
    let stages = f
        .rows
        .iter()
        .map(|r| {
            if r.stage == 0 {
                "initial".to_string()
            } else {
                format!("stage-{}", r.stage)
            }
        })
        .collect();
    let matrix = f
        .rows
        .iter()
        .map(|r| {
            f.abilities
                .iter()
                .map(|a| r.nll.get(a).and_then(|v| v.as_f64()))
                .collect()
        })
        .collect();
    Some(Forgetting {
        stages,
        abilities: f.abilities.clone(),
        metrics: BTreeMap::from([("nll".to_string(), matrix)]),
    })
}

/// (input tokens of every step when `every_step_logged`, loss of the last logged step).
fn read_metrics(path: &Path, every_step_logged: bool) -> (Option<u64>, Option<f64>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (None, None);
    };
    let mut tokens = 0u64;
    let mut last = None;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        tokens += v["tokens"].as_u64().unwrap_or(0);
        last = v["loss"].as_f64().or(last);
    }
    (every_step_logged.then_some(tokens), last)
}

/// What the report groups cells by, from the recipe.
struct RecipeDescription {
    strategy: String,
    fractions: BTreeMap<String, Value>,
    k: Option<f64>,
    ablation: Option<BTreeMap<String, Vec<String>>>,
    ratio: Option<BTreeMap<String, f64>>,
}

fn describe_recipe(r: &Recipe) -> RecipeDescription {
    let amount = |a: &Amount| -> Value {
        match a {
            Amount::Fraction(f) => json!(f.as_f64()),
            Amount::Count(n) => json!(n),
        }
    };
    let as_f = |a: &Amount| a.fraction().map(|f| f.as_f64());
    let mut fractions: BTreeMap<String, Value> = BTreeMap::new();
    let mut k = None;
    let mut ratio = None;
    match &r.strategy {
        Some(Strategy::Dmt { k: kk }) => {
            for s in r.sources.keys() {
                fractions.insert(s.clone(), json!(1.0));
            }
            k = as_f(kk);
        }
        Some(Strategy::Ratio {
            specialized,
            general,
        }) => {
            for s in ["math", "code"] {
                fractions.insert(s.into(), amount(specialized));
            }
            fractions.insert("general".into(), amount(general));
            if let (Some(s), Some(g)) = (as_f(specialized), as_f(general)) {
                ratio = Some(BTreeMap::from([
                    ("specialized".to_string(), s),
                    ("general".to_string(), g),
                ]));
            }
        }
        _ => {
            // The largest amount each source contributes to any stage.
            for st in &r.stages {
                for (s, a) in &st.mix {
                    let v = amount(a);
                    let bigger = match fractions.get(s) {
                        None => true,
                        Some(old) => v.as_f64() > old.as_f64(),
                    };
                    if bigger {
                        fractions.insert(s.clone(), v);
                    }
                }
            }
        }
    }
    let ablation: BTreeMap<String, Vec<String>> = r
        .sources
        .iter()
        .filter(|(_, s)| !s.ablate.is_empty())
        .map(|(n, s)| {
            (
                n.clone(),
                s.ablate.iter().map(|c| c.as_str().to_string()).collect(),
            )
        })
        .collect();
    RecipeDescription {
        strategy: r
            .strategy
            .as_ref()
            .map_or("stages".to_string(), |s| s.kind().to_string()),
        fractions,
        k,
        ablation: (!ablation.is_empty()).then_some(ablation),
        ratio,
    }
}

fn finished_of(r: &Option<CellRecord>) -> String {
    r.as_ref()
        .and_then(|r| r.finished.clone())
        .unwrap_or_else(|| "earlier".into())
}

/// `1h02m`, `4m05s`, `12.3s`.
pub fn format_secs(s: f64) -> String {
    let s = s.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, (s % 3600.0 / 60.0) as u64)
    }
}

/// `git rev-parse HEAD` of the working directory.
fn git_rev() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
