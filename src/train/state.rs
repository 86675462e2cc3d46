//! Resumable checkpoints inside a run directory.
//!
//! `RUN/checkpoint/ckpt-<seq>-step-<global>/` holds the weights as a Hugging Face directory
//! (`config.json`, `model.safetensors`, `tokenizer.json`), `optimizer.safetensors` (AdamW's
//! moments, when the optimizer has state to keep) and `state.json` (position in the data, step
//! counters, the metrics length and forgetting rows at that point). The directory is written
//! under a temporary name, every file fsynced, renamed, and only then `RUN/checkpoint/latest`
//! (the directory's name) is replaced atomically; older checkpoint directories are removed after
//! that. A run killed at any moment therefore always finds `latest` naming a complete
//! checkpoint (or no `latest` at all).
//!
//! The data position needs no RNG state: every epoch's order is a function of the seed, the
//! stage and the epoch (see [`super::batch`]).
use super::optim::OptimizerState;
use crate::error::{Error, Result};
use crate::model::checkpoint::{read_tensors, write_tensors};
use crate::model::{HostTensor, Llama, save_hf_dir};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where training continues: 0-based stage, epoch and step within the epoch, and the optimizer
/// steps already taken in the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub stage: usize,
    pub epoch: usize,
    pub step_in_epoch: usize,
    pub stage_step: usize,
}

impl Position {
    /// The start of stage `stage`.
    pub fn stage_start(stage: usize) -> Position {
        Position {
            stage,
            epoch: 0,
            step_in_epoch: 0,
            stage_step: 0,
        }
    }
}

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Sequence number of the checkpoint within the run (names its directory).
    pub seq: u64,
    /// Optimizer steps taken in the whole run.
    pub global_step: u64,
    pub position: Position,
    /// AdamW's step count when `optimizer.safetensors` holds the optimizer to continue with;
    /// `None` when the next stage starts with a fresh optimizer.
    pub optimizer_step: Option<u64>,
    /// Length of `metrics.jsonl` when the checkpoint was written (a resumed run cuts it there).
    pub metrics_bytes: u64,
    /// `forgetting.json` as it was when the checkpoint was written.
    pub forgetting: serde_json::Value,
}

/// File names inside a checkpoint directory.
const STATE_FILE: &str = "state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const LATEST_FILE: &str = "latest";

/// The checkpoint folder of a run.
pub fn checkpoint_root(run: &Path) -> PathBuf {
    run.join("checkpoint")
}

/// Write a checkpoint (see the module docs) and return its directory.
pub fn save<B: Backend>(
    run: &Path,
    model: &Llama<B>,
    tokenizer: &Path,
    optimizer: Option<&OptimizerState>,
    meta: &CheckpointMeta,
) -> Result<PathBuf> {
    let root = checkpoint_root(run);
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let name = format!("ckpt-{:05}-step-{:08}", meta.seq, meta.global_step);
    let tmp = root.join(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    save_hf_dir(model, &tmp, Some(tokenizer))?;
    if let Some(state) = optimizer {
        write_optimizer(&tmp.join(OPTIMIZER_FILE), state)?;
    }
    crate::util::write_json(&tmp.join(STATE_FILE), meta)?;
    sync_dir(&tmp)?;
    let dir = root.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
    sync_dir(&root)?;
    crate::util::write_atomic(&root.join(LATEST_FILE), name.as_bytes())?;
    // Only now are older checkpoints (and temporaries of crashed writes) redundant.
    for entry in std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))? {
        let path = entry.map_err(|e| Error::io(&root, e))?.path();
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let stale = file_name.starts_with("ckpt-") || file_name.starts_with(".tmp-ckpt-");
        if path.is_dir() && stale && file_name != name {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(dir)
}

/// The latest complete checkpoint of a run, if any: its directory and `state.json`.
pub fn latest(run: &Path) -> Result<Option<(PathBuf, CheckpointMeta)>> {
    let root = checkpoint_root(run);
    let pointer = root.join(LATEST_FILE);
    let name = match std::fs::read_to_string(&pointer) {
        Ok(s) => s.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&pointer, e)),
    };
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(Error::file(
            &pointer,
            format!("does not name a checkpoint directory: {name:?}"),
        ));
    }
    let dir = root.join(&name);
    let state = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state).map_err(|e| Error::io(&state, e))?;
    let meta: CheckpointMeta = serde_json::from_str(&text)
        .map_err(|e| Error::file(&state, format!("not a valid checkpoint state: {e}")))?;
    Ok(Some((dir, meta)))
}

/// Read the optimizer state of a checkpoint directory.
pub fn read_optimizer(dir: &Path, step: u64) -> Result<OptimizerState> {
    let path = dir.join(OPTIMIZER_FILE);
    let tensors = read_tensors(&path)?;
    let mut m = std::collections::BTreeMap::new();
    let mut v = std::collections::BTreeMap::new();
    for (name, t) in tensors {
        if let Some(p) = name.strip_prefix("exp_avg.") {
            m.insert(p.to_string(), t.data);
        } else if let Some(p) = name.strip_prefix("exp_avg_sq.") {
            v.insert(p.to_string(), t.data);
        } else {
            return Err(Error::file(&path, format!("unexpected tensor {name}")));
        }
    }
    let mut moments = Vec::with_capacity(m.len());
    for (name, mv) in m {
        let vv = v.remove(&name).ok_or_else(|| {
            Error::file(&path, format!("exp_avg.{name} has no exp_avg_sq.{name}"))
        })?;
        moments.push((name, mv, vv));
    }
    if let Some(name) = v.keys().next() {
        return Err(Error::file(
            &path,
            format!("exp_avg_sq.{name} has no exp_avg.{name}"),
        ));
    }
    Ok(OptimizerState { step, moments })
}

/// Moments as `exp_avg.<name>` / `exp_avg_sq.<name>` (flat f32, the model's element order).
fn write_optimizer(path: &Path, state: &OptimizerState) -> Result<()> {
    let mut tensors = Vec::with_capacity(2 * state.moments.len());
    for (name, m, v) in &state.moments {
        tensors.push((
            format!("exp_avg.{name}"),
            HostTensor::new(vec![m.len()], m.clone())?,
        ));
        tensors.push((
            format!("exp_avg_sq.{name}"),
            HostTensor::new(vec![v.len()], v.clone())?,
        ));
    }
    write_tensors(path, &tensors)
}

/// fsync a directory so renames inside it are durable.
fn sync_dir(dir: &Path) -> Result<()> {
    let f = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    f.sync_all().map_err(|e| Error::io(dir, e))
}
