//! A training run: compose the recipe, set up tokenizer and model, train every stage in order,
//! evaluate held-out loss after each stage, checkpoint, and resume.
//!
//! # The run directory
//! - `recipe.toml` (the recipe's text), `manifest.json` (the composition), `tokenizer.json`;
//! - `run.json`: versions, git revision, seed, device, hyperparameters, stage sizes, and a
//!   fingerprint a resumed run must match; one entry per session (start or resume);
//! - `metrics.jsonl`: one JSON object per logged optimizer step — `step` (run-wide, 1-based),
//!   `stage` (1-based), `stage_name`, `stage_step`, `stage_steps`, `epoch` (1-based), `lr`,
//!   `loss` and `loss_by_source` (mean NLL per target token), `targets`, `tokens`,
//!   `tokens_per_s` (real input tokens per second of the step), `grad_norm` (before clipping),
//!   `elapsed_s`;
//! - `forgetting.json`: held-out loss per ability before training and after each stage;
//! - `stage-1/`, `stage-2/`, …, `final/`: Hugging Face directories (config.json,
//!   model.safetensors, tokenizer.json) after each stage and at the end;
//! - `checkpoint/`: the latest resumable checkpoint (see [`super::state`]).
//!
//! # Stages
//! Stage n starts from stage n−1's weights with a fresh AdamW and a fresh schedule (as the
//! paper's separate runs did), unless `carry_optimizer` keeps the AdamW moments and step count.
//!
//! # Resume
//! A resumed run rebuilds everything from the same arguments, checks the fingerprint in
//! `run.json`, restores weights, optimizer, position, `metrics.jsonl` (cut to its length at the
//! checkpoint) and `forgetting.json` from the latest checkpoint, and continues. On the CPU the
//! result is bit-identical to an uninterrupted run.
use super::batch::{Geometry, MicroBatch, Sample, plan_epoch, steps_per_epoch};
use super::config::TrainConfig;
use super::data::{RunData, prepare, train_tokenizer};
use super::log::{Forgetting, ForgettingRow, MetricsLog};
use super::optim::{AdamW, AdamWConfig, clip_scale, global_grad_norm};
use super::schedule::LrSchedule;
use super::state::{self, CheckpointMeta, Position};
use super::step::{accumulate, evaluate};
use crate::data::bpe::to_json;
use crate::data::template::ChatTemplate;
use crate::data::tokenize::ChatTokenizer;
use crate::error::{Error, Result};
use crate::model::{Llama, LlamaConfig, Precision, Preset, load_hf_dir, save_hf_dir};
use crate::recipe::spec::DEFAULT_HOLDOUT;
use crate::recipe::{ComposeOptions, Recipe, compose};
use crate::util::{sha256_bytes, sha256_file, write_atomic, write_json};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Where the starting weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// A Hugging Face model directory.
    Model(PathBuf),
    /// A from-scratch preset, initialized with the run's seed.
    Preset(Preset),
}

/// Everything that defines a run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub recipe: PathBuf,
    /// Directory the recipe's source paths are relative to.
    pub data_dir: PathBuf,
    pub start: Start,
    /// A `tokenizer.json` to use instead of the model directory's (or, for a preset, instead
    /// of training one).
    pub tokenizer: Option<PathBuf>,
    /// Vocabulary size of the BPE trained for a preset.
    pub vocab_size: usize,
    pub template: ChatTemplate,
    pub out: PathBuf,
    pub hparams: TrainConfig,
    /// Where the hyperparameters came from (preset name or file, plus overrides), for run.json.
    pub hparams_source: String,
    /// Overrides the recipe's seed.
    pub seed: Option<u64>,
    /// Cap each source at its first N examples (smoke runs).
    pub limit_examples: Option<usize>,
    /// Held-out examples per source; with `limit_examples` and no value, `min(200, N/5)`.
    pub holdout: Option<usize>,
    /// Skip (and count) malformed records while reading the sources.
    pub skip_invalid: bool,
    /// Continue the run in `out` from its latest checkpoint.
    pub resume: bool,
    /// The device, as recorded in run.json.
    pub device: String,
    /// The precision of the matrix products; `None` picks bf16 where the backend computes in
    /// it (CUDA) and fp32 elsewhere (see [`crate::model::precision`]).
    pub precision: Option<Precision>,
    /// The command line, as recorded in run.json.
    pub command: Vec<String>,
}

/// How a run is watched and stopped from outside.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    /// When set (e.g. by a Ctrl-C handler), write a checkpoint after the current step and stop.
    pub stop: Option<Arc<AtomicBool>>,
    /// Write a checkpoint and stop after this many optimizer steps of this invocation.
    pub stop_after: Option<u64>,
    /// Show progress bars (only drawn on a terminal; otherwise a line per 10% of a stage).
    pub progress: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every stage trained; `final/` written.
    Finished,
    /// Stopped on request; continue with `resume`.
    Stopped { checkpoint: PathBuf },
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub outcome: Outcome,
    /// Optimizer steps taken in the whole run.
    pub global_step: u64,
    /// Optimizer steps taken by this invocation.
    pub session_steps: u64,
    pub stages: Vec<StageSummary>,
    pub forgetting: Forgetting,
}

/// One stage of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSummary {
    pub name: String,
    pub examples: usize,
    pub epochs: u32,
    pub steps: usize,
    /// The stage's Hugging Face directory once it is finished.
    pub dir: Option<PathBuf>,
}

/// Train `spec` on backend `B` (see the module docs).
pub fn run<B: AutodiffBackend>(
    spec: &RunSpec,
    controls: &Controls,
    device: &B::Device,
) -> Result<Summary> {
    let hp = &spec.hparams;
    hp.validate()?;
    let precision = Precision::resolve::<B>(spec.precision, device, "--precision")?;
    let out = spec.out.as_path();
    let run_json = out.join("run.json");
    if run_json.exists() && !spec.resume {
        return Err(Error::invalid(
            "--out",
            format!(
                "{} already holds a run (run.json); pass --resume to continue it or choose another directory",
                out.display()
            ),
        ));
    }
    if spec.resume && !run_json.exists() {
        return Err(Error::invalid(
            "--resume",
            format!("{} holds no run to resume (no run.json)", out.display()),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let recipe = Recipe::load(&spec.recipe)?;
    // The first write into the run directory: an unwritable directory fails here, before any work.
    write_atomic(&out.join("recipe.toml"), recipe.text.as_bytes())?;
    let holdout = spec.holdout.or_else(|| {
        let most = recipe
            .sources
            .values()
            .map(|s| s.holdout)
            .max()
            .unwrap_or(DEFAULT_HOLDOUT);
        spec.limit_examples.map(|n| (n / 5).max(1).min(most))
    });
    let comp = compose(
        &recipe,
        &ComposeOptions {
            data_dir: spec.data_dir.clone(),
            seed: spec.seed,
            skip_invalid: spec.skip_invalid,
            limit_examples: spec.limit_examples,
            holdout,
            tokenizer: None,
        },
    )?;
    write_json(&out.join("manifest.json"), &comp.manifest)?;
    let seed = comp.manifest.seed;

    let tok_path = out.join("tokenizer.json");
    let tokenizer_trained = setup_tokenizer(spec, &comp, &tok_path)?;
    let tok = ChatTokenizer::from_file(&tok_path, spec.template)?;
    let (model, start) = initial_model::<B>(spec, tok.vocab_size(), seed, device)?;
    let model = model.with_precision(precision)?;
    check_fit(spec, model.config(), tok.vocab_size(), &tok_path)?;
    let data = prepare(&comp, &tok, hp.max_len, hp.eval_limit)?;

    let geo = Geometry {
        batch_size: hp.batch_size,
        grad_accum: hp.grad_accum,
        bucket_steps: hp.bucket_steps,
    };
    let plans: Vec<StagePlan> = data
        .stages
        .iter()
        .map(|s| {
            let epochs = hp.epochs.unwrap_or(s.epochs);
            let per_epoch = steps_per_epoch(s.samples.len(), geo);
            let full = per_epoch * epochs as usize;
            StagePlan {
                epochs,
                per_epoch,
                total: hp.max_steps.map_or(full, |m| m.min(full)),
            }
        })
        .collect();
    let fingerprint = json!({
        "recipe_sha256": comp.manifest.recipe.sha256,
        "manifest_sha256": sha256_bytes(&serde_json::to_vec(&comp.manifest).map_err(|e| Error::Internal(e.to_string()))?),
        "start": start,
        "tokenizer_sha256": sha256_file(&tok_path)?,
        "template": spec.template.name(),
        "hyperparameters": hp,
    });
    let info = RunInfo {
        spec,
        precision,
        seed,
        data: &data,
        plans: &plans,
        fingerprint: &fingerprint,
        tokenizer_trained,
    };
    let resumed = if spec.resume {
        state::latest(out)?
    } else {
        None
    };
    record_session(
        &run_json,
        &info,
        resumed.as_ref().map(|(_, m)| m.global_step),
    )?;

    let adam = AdamWConfig {
        beta1: hp.beta1,
        beta2: hp.beta2,
        eps: hp.eps,
        weight_decay: hp.weight_decay,
    };
    let mut t = Trainer::<B> {
        spec,
        controls,
        data: &data,
        tok_path,
        geo,
        seed,
        adam,
        model,
        opt: None,
        pos: Position::stage_start(0),
        global_step: 0,
        session_steps: 0,
        seq: 0,
        forgetting: Forgetting::new(Vec::new(), Map::new()),
        metrics: MetricsLog::open(
            &out.join("metrics.jsonl"),
            resumed.as_ref().map_or(0, |(_, m)| m.metrics_bytes),
        )?,
        last_checkpoint: None,
    };
    match resumed {
        Some((dir, meta)) => t.restore(&dir, meta, device)?,
        None => {
            t.forgetting = new_forgetting(&data);
            t.evaluate_row(0, "initial")?;
        }
    }
    let mut stages: Vec<StageSummary> = data
        .stages
        .iter()
        .zip(&plans)
        .enumerate()
        .map(|(i, (s, p))| StageSummary {
            name: s.name.clone(),
            examples: s.samples.len(),
            epochs: p.epochs,
            steps: p.total,
            dir: (i < t.pos.stage).then(|| out.join(format!("stage-{}", i + 1))),
        })
        .collect();
    while t.pos.stage < data.stages.len() {
        let si = t.pos.stage;
        if let Some(checkpoint) = t.train_stage(si, plans[si])? {
            return Ok(t.summary(Outcome::Stopped { checkpoint }, stages));
        }
        stages[si].dir = Some(t.finish_stage(si)?);
        if si + 1 < data.stages.len() && t.stop_requested() {
            let checkpoint = t.last_checkpoint.clone().unwrap_or_default();
            return Ok(t.summary(Outcome::Stopped { checkpoint }, stages));
        }
    }
    save_hf_dir(&t.model, &out.join("final"), Some(&t.tok_path))?;
    mark_finished(&run_json, t.global_step)?;
    Ok(t.summary(Outcome::Finished, stages))
}

/// Steps of one stage.
#[derive(Debug, Clone, Copy)]
struct StagePlan {
    epochs: u32,
    per_epoch: usize,
    total: usize,
}

/// Put the run's `tokenizer.json` in place; true when it was trained here.
fn setup_tokenizer(spec: &RunSpec, comp: &crate::recipe::Composition, dst: &Path) -> Result<bool> {
    let copy = |src: &Path| -> Result<()> {
        if !src.is_file() {
            return Err(Error::file(
                src,
                "tokenizer file not found (expected a tokenizer.json)",
            ));
        }
        let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
        write_atomic(dst, &bytes)
    };
    match (&spec.tokenizer, &spec.start) {
        (Some(file), _) => copy(file).map(|_| false),
        (None, Start::Model(dir)) => {
            let file = dir.join("tokenizer.json");
            if !file.is_file() {
                return Err(Error::file(
                    dir,
                    "the model directory has no tokenizer.json; pass --tokenizer FILE",
                ));
            }
            copy(&file).map(|_| false)
        }
        (None, Start::Preset(_)) => {
            if spec.resume && dst.is_file() {
                return Ok(true);
            }
            let tokenizer = train_tokenizer(comp, spec.template, spec.vocab_size)?;
            write_atomic(dst, to_json(&tokenizer)?.as_bytes())?;
            Ok(true)
        }
    }
}

/// The starting model and its description for run.json.
fn initial_model<B: AutodiffBackend>(
    spec: &RunSpec,
    vocab: usize,
    seed: u64,
    device: &B::Device,
) -> Result<(Llama<B>, Value)> {
    match &spec.start {
        Start::Model(dir) => {
            let loaded = load_hf_dir::<B>(dir, device)?;
            let desc = json!({"model_dir": dir.to_string_lossy(), "dtype": loaded.source_dtype});
            Ok((loaded.model, desc))
        }
        Start::Preset(p) => {
            let config = LlamaConfig::preset(*p, vocab);
            let desc = json!({"preset": format!("{p:?}").to_lowercase(), "seed": seed, "config": config.to_json()});
            Ok((Llama::init(&config, seed, device), desc))
        }
    }
}

/// The tokenizer must fit the model's vocabulary, and `max_len` its positions.
fn check_fit(
    spec: &RunSpec,
    config: &LlamaConfig,
    tok_vocab: usize,
    tok_path: &Path,
) -> Result<()> {
    if tok_vocab > config.vocab_size {
        let what = match &spec.start {
            Start::Model(dir) => format!("the model directory {}", dir.display()),
            Start::Preset(_) => "the preset model".to_string(),
        };
        return Err(Error::model(format!(
            "{what} does not match the tokenizer {}: the tokenizer has {tok_vocab} tokens but the model's \
             vocabulary has {} (use the model's own tokenizer.json)",
            spec.tokenizer.as_deref().unwrap_or(tok_path).display(),
            config.vocab_size
        )));
    }
    if spec.hparams.max_len > config.max_position_embeddings {
        return Err(Error::invalid(
            "--max-len",
            format!(
                "{} does not fit the model, whose max_position_embeddings is {}",
                spec.hparams.max_len, config.max_position_embeddings
            ),
        ));
    }
    Ok(())
}

fn new_forgetting(data: &RunData) -> Forgetting {
    let h = &data.heldout;
    let heldout: Map<String, Value> = h
        .abilities
        .iter()
        .zip(&h.counts)
        .map(|(a, c)| {
            (
                a.to_string(),
                json!({"examples": c.examples, "targets": c.targets}),
            )
        })
        .collect();
    Forgetting::new(h.abilities.iter().map(|a| a.to_string()).collect(), heldout)
}

/// What run.json records about a run.
struct RunInfo<'a> {
    spec: &'a RunSpec,
    precision: Precision,
    seed: u64,
    data: &'a RunData,
    plans: &'a [StagePlan],
    fingerprint: &'a Value,
    tokenizer_trained: bool,
}

/// Write run.json (a new run) or check it and add a session (a resumed run).
fn record_session(path: &Path, info: &RunInfo<'_>, from_step: Option<u64>) -> Result<()> {
    let session = json!({
        "started_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "resumed_from_step": from_step,
        "command": info.spec.command,
        "device": info.spec.device,
        "precision": info.precision.as_str(),
        "threads": rayon::current_num_threads(),
    });
    if info.spec.resume {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::file(path, format!("not valid JSON: {e}")))?;
        let stored = value.get("fingerprint").cloned().unwrap_or(Value::Null);
        if &stored != info.fingerprint {
            let keys: Vec<String> = info
                .fingerprint
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, v)| stored.get(k.as_str()) != Some(v))
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            return Err(Error::invalid(
                "--resume",
                format!(
                    "the arguments do not match the run in {} (differs: {}); resume with the same recipe, \
                     data, model and hyperparameters",
                    path.parent().unwrap_or(Path::new(".")).display(),
                    keys.join(", ")
                ),
            ));
        }
        if let Some(list) = value.get_mut("sessions").and_then(Value::as_array_mut) {
            list.push(session);
        }
        return write_json(path, &value);
    }
    let spec = info.spec;
    let (git_revision, git_dirty) = git_state();
    let stages: Vec<Value> = info
        .data
        .stages
        .iter()
        .zip(info.plans)
        .map(|(s, p)| {
            json!({
                "name": s.name, "samples": s.samples.len(), "epochs": p.epochs,
                "steps_per_epoch": p.per_epoch, "steps": p.total, "tokenize": s.stats,
            })
        })
        .collect();
    let value = json!({
        "mixprobe_version": env!("CARGO_PKG_VERSION"),
        "burn_version": "0.21.0",
        "git_revision": git_revision,
        "git_dirty": git_dirty,
        "seed": info.seed,
        "device": spec.device,
        "precision": info.precision.as_str(),
        "recipe": {"path": spec.recipe.to_string_lossy(), "sha256": info.fingerprint["recipe_sha256"]},
        "data_dir": spec.data_dir.to_string_lossy(),
        "limit_examples": spec.limit_examples,
        "start": info.fingerprint["start"],
        "tokenizer": {"file": "tokenizer.json", "trained": info.tokenizer_trained,
                      "sha256": info.fingerprint["tokenizer_sha256"]},
        "template": spec.template.name(),
        "hyperparameters": spec.hparams,
        "hyperparameters_source": spec.hparams_source,
        "sources": info.data.sources,
        "stages": stages,
        "fingerprint": info.fingerprint,
        "sessions": [session],
        "finished": false,
        "global_step": 0,
    });
    write_json(path, &value)
}

fn mark_finished(path: &Path, global_step: u64) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(path, format!("not valid JSON: {e}")))?;
    value["finished"] = json!(true);
    value["global_step"] = json!(global_step);
    write_json(path, &value)
}

/// The git revision of the working directory and whether it has uncommitted changes.
fn git_state() -> (Option<String>, Option<bool>) {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = git(&["rev-parse", "HEAD"]);
    let dirty = rev
        .as_ref()
        .and_then(|_| git(&["status", "--porcelain"]))
        .map(|s| !s.is_empty());
    (rev, dirty)
}

/// The training loop's state.
struct Trainer<'a, B: AutodiffBackend> {
    spec: &'a RunSpec,
    controls: &'a Controls,
    data: &'a RunData,
    tok_path: PathBuf,
    geo: Geometry,
    seed: u64,
    adam: AdamWConfig,
    model: Llama<B>,
    /// The optimizer to continue with (mid-stage, or carried across a stage boundary).
    opt: Option<AdamW<B::InnerBackend>>,
    pos: Position,
    global_step: u64,
    session_steps: u64,
    /// Checkpoints written so far in the run.
    seq: u64,
    forgetting: Forgetting,
    metrics: MetricsLog,
    last_checkpoint: Option<PathBuf>,
}

impl<B: AutodiffBackend> Trainer<'_, B> {
    /// Continue from a checkpoint directory.
    fn restore(&mut self, dir: &Path, meta: CheckpointMeta, device: &B::Device) -> Result<()> {
        let loaded = load_hf_dir::<B>(dir, device)?;
        if loaded.model.config() != self.model.config() {
            return Err(Error::file(
                dir,
                "the checkpoint's model configuration differs from the run's model",
            ));
        }
        self.model = loaded.model.with_precision(self.model.precision())?;
        self.opt = match meta.optimizer_step {
            Some(step) => {
                let state = state::read_optimizer(dir, step)?;
                Some(AdamW::from_host(self.adam, &state, &self.model)?)
            }
            None => None,
        };
        self.pos = meta.position;
        self.global_step = meta.global_step;
        self.seq = meta.seq + 1;
        self.forgetting = serde_json::from_value(meta.forgetting)
            .map_err(|e| Error::file(dir, format!("state.json: bad forgetting record: {e}")))?;
        write_json(&self.spec.out.join("forgetting.json"), &self.forgetting)?;
        self.last_checkpoint = Some(dir.to_path_buf());
        Ok(())
    }

    fn stop_requested(&self) -> bool {
        self.controls
            .stop
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
            || self
                .controls
                .stop_after
                .is_some_and(|n| self.session_steps >= n)
    }

    /// Train stage `si` from the current position to its last step; returns the checkpoint
    /// written when a stop was requested.
    fn train_stage(&mut self, si: usize, plan: StagePlan) -> Result<Option<PathBuf>> {
        let hp = &self.spec.hparams;
        let stage = &self.data.stages[si];
        let n_stages = self.data.stages.len();
        let schedule = LrSchedule::new(hp.lr, hp.warmup_ratio, hp.min_lr_ratio, plan.total);
        let mut opt = self.opt.take().unwrap_or_else(|| AdamW::new(self.adam));
        let lengths: Vec<usize> = stage.samples.iter().map(|s| s.ids.len()).collect();
        let bar = self.progress_bar(si, plan.total);
        let mut last_report = self.pos.stage_step;
        let started = Instant::now();
        while self.pos.stage_step < plan.total {
            let steps = plan_epoch(&lengths, self.geo, self.seed, si + 1, self.pos.epoch);
            let Some(step) = steps.get(self.pos.step_in_epoch) else {
                self.pos.epoch += 1;
                self.pos.step_in_epoch = 0;
                continue;
            };
            let micro = step
                .micro
                .iter()
                .map(|m| {
                    MicroBatch::new(
                        &m.iter()
                            .map(|&i| &stage.samples[i])
                            .collect::<Vec<&Sample>>(),
                        0,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let t0 = Instant::now();
            let (grads, stats) = accumulate(&self.model, &micro, self.data.sources.len())?;
            let norm = global_grad_norm(&self.model, &grads);
            if !stats.loss.is_finite() || !norm.is_finite() {
                return Err(self.non_finite(si, stats.loss, norm));
            }
            let lr = schedule.lr(self.pos.stage_step);
            self.model = opt.step(self.model.clone(), grads, lr, clip_scale(norm, hp.clip));
            let secs = t0.elapsed().as_secs_f64();
            let epoch = self.pos.epoch + 1;
            self.pos.stage_step += 1;
            self.pos.step_in_epoch += 1;
            if self.pos.step_in_epoch == steps.len() {
                self.pos.epoch += 1;
                self.pos.step_in_epoch = 0;
            }
            self.global_step += 1;
            self.session_steps += 1;
            let tokens_per_s = stats.tokens as f64 / secs.max(1e-9);
            if self.pos.stage_step.is_multiple_of(hp.log_every) || self.pos.stage_step == plan.total
            {
                let by_source: Map<String, Value> = stats
                    .by_group
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, n))| *n > 0)
                    .map(|(g, (sum, n))| (self.data.sources[g].clone(), json!(sum / *n as f64)))
                    .collect();
                self.metrics.append(&json!({
                    "step": self.global_step,
                    "stage": si + 1,
                    "stage_name": stage.name,
                    "stage_step": self.pos.stage_step,
                    "stage_steps": plan.total,
                    "epoch": epoch,
                    "lr": lr,
                    "loss": stats.loss,
                    "loss_by_source": by_source,
                    "targets": stats.targets,
                    "tokens": stats.tokens,
                    "tokens_per_s": tokens_per_s,
                    "grad_norm": norm,
                    "elapsed_s": started.elapsed().as_secs_f64(),
                }))?;
            }
            bar.set_position(self.pos.stage_step as u64);
            bar.set_message(format!(
                "loss {:.4} | {:.0} tok/s",
                stats.loss, tokens_per_s
            ));
            if bar.is_hidden()
                && self.controls.progress
                && self.pos.stage_step >= last_report + plan.total.div_ceil(10)
            {
                last_report = self.pos.stage_step;
                eprintln!(
                    "stage {}/{n_stages} {}: step {}/{} loss {:.4} ({:.0} tok/s)",
                    si + 1,
                    stage.name,
                    self.pos.stage_step,
                    plan.total,
                    stats.loss,
                    tokens_per_s
                );
            }
            if self.pos.stage_step == plan.total {
                break;
            }
            let periodic =
                hp.checkpoint_every > 0 && self.pos.stage_step.is_multiple_of(hp.checkpoint_every);
            let stop = self.stop_requested();
            if periodic || stop {
                let state = opt.to_host(&self.model);
                let dir = self.checkpoint(Some(&state))?;
                if stop {
                    bar.abandon();
                    return Ok(Some(dir));
                }
            }
        }
        bar.finish_and_clear();
        if hp.carry_optimizer {
            self.opt = Some(opt);
        }
        Ok(None)
    }

    /// Evaluate, save `stage-<n>/` and checkpoint the stage boundary; returns the stage directory.
    fn finish_stage(&mut self, si: usize) -> Result<PathBuf> {
        let name = self.data.stages[si].name.clone();
        self.evaluate_row(si + 1, &name)?;
        let dir = self.spec.out.join(format!("stage-{}", si + 1));
        save_hf_dir(&self.model, &dir, Some(&self.tok_path))?;
        self.pos = Position::stage_start(si + 1);
        let state = self.opt.as_ref().map(|o| o.to_host(&self.model));
        self.checkpoint(state.as_ref())?;
        Ok(dir)
    }

    /// Held-out loss per ability, appended to forgetting.json.
    fn evaluate_row(&mut self, stage: usize, name: &str) -> Result<()> {
        let h = &self.data.heldout;
        let valid = self.model.valid();
        let sums = evaluate(
            &valid,
            &h.samples,
            self.spec.hparams.batch_size,
            h.abilities.len(),
        )?;
        let nll: Map<String, Value> = h
            .abilities
            .iter()
            .zip(&sums)
            .map(|(a, (sum, n))| (a.to_string(), json!(sum / (*n).max(1) as f64)))
            .collect();
        self.forgetting.rows.push(ForgettingRow {
            stage,
            name: name.to_string(),
            step: self.global_step,
            nll,
        });
        write_json(&self.spec.out.join("forgetting.json"), &self.forgetting)
    }

    /// Write a checkpoint at the current position.
    fn checkpoint(&mut self, optimizer: Option<&super::optim::OptimizerState>) -> Result<PathBuf> {
        let meta = CheckpointMeta {
            seq: self.seq,
            global_step: self.global_step,
            position: self.pos,
            optimizer_step: optimizer.map(|o| o.step),
            metrics_bytes: self.metrics.sync()?,
            forgetting: serde_json::to_value(&self.forgetting)
                .map_err(|e| Error::Internal(e.to_string()))?,
        };
        let dir = state::save(
            &self.spec.out,
            &self.model,
            &self.tok_path,
            optimizer,
            &meta,
        )?;
        self.seq += 1;
        self.last_checkpoint = Some(dir.clone());
        Ok(dir)
    }

    fn non_finite(&self, si: usize, loss: f64, norm: f64) -> Error {
        let last = match &self.last_checkpoint {
            Some(d) => format!("the last good checkpoint is {}", d.display()),
            None => "no checkpoint was written yet".to_string(),
        };
        Error::invalid(
            "training",
            format!(
                "stage {} ({}) step {}: the loss is {loss} and the gradient norm {norm}; stopped without \
                 applying this update ({last}). Lower the learning rate (--lr), keep gradient clipping on \
                 (--clip), or check the data",
                si + 1,
                self.data.stages[si].name,
                self.pos.stage_step + 1
            ),
        )
    }

    fn progress_bar(&self, si: usize, total: usize) -> ProgressBar {
        if !self.controls.progress || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total as u64);
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} (ETA {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        bar.set_prefix(format!(
            "stage {}/{} {}",
            si + 1,
            self.data.stages.len(),
            self.data.stages[si].name
        ));
        bar.set_position(self.pos.stage_step as u64);
        bar
    }

    fn summary(&self, outcome: Outcome, stages: Vec<StageSummary>) -> Summary {
        Summary {
            outcome,
            global_step: self.global_step,
            session_steps: self.session_steps,
            stages,
            forgetting: self.forgetting.clone(),
        }
    }
}
