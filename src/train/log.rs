//! What a run records as it goes: `metrics.jsonl` (one JSON object per logged step) and
//! `forgetting.json` (held-out loss per ability after each stage).
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// An append-only `metrics.jsonl` that knows its length (checkpoints record it).
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
    bytes: u64,
}

impl MetricsLog {
    /// Open `path`, cut to `keep` bytes (0 starts it empty); errors when it is shorter.
    pub fn open(path: &Path, keep: u64) -> Result<MetricsLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < keep {
            return Err(Error::file(
                path,
                format!(
                    "has {len} bytes but the checkpoint recorded {keep}; the run directory was modified"
                ),
            ));
        }
        file.set_len(keep).map_err(|e| Error::io(path, e))?;
        let mut log = MetricsLog {
            path: path.to_path_buf(),
            file,
            bytes: keep,
        };
        use std::io::Seek;
        log.file
            .seek(std::io::SeekFrom::Start(keep))
            .map_err(|e| Error::io(path, e))?;
        Ok(log)
    }

    /// Append one JSON line.
    pub fn append(&mut self, value: &serde_json::Value) -> Result<()> {
        let mut line = serde_json::to_string(value)
            .map_err(|e| Error::Internal(format!("metrics line: {e}")))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(&self.path, e))?;
        self.bytes += line.len() as u64;
        Ok(())
    }

    /// Flush to disk and return the length (what a checkpoint records).
    pub fn sync(&mut self) -> Result<u64> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(self.bytes)
    }
}

/// `forgetting.json`: the stage × ability matrix of held-out loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forgetting {
    /// What the numbers are.
    pub metric: String,
    /// Abilities with held-out examples, in column order.
    pub abilities: Vec<String>,
    /// Per ability: held-out examples and target tokens evaluated.
    pub heldout: serde_json::Map<String, serde_json::Value>,
    /// One row before training (stage 0, `initial`) and one after each stage.
    pub rows: Vec<ForgettingRow>,
}

/// One row of the matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgettingRow {
    /// 0 before training, else the 1-based stage just finished.
    pub stage: usize,
    pub name: String,
    /// Optimizer steps taken in the run so far.
    pub step: u64,
    /// Mean negative log-likelihood per held-out target token, per ability.
    pub nll: serde_json::Map<String, serde_json::Value>,
}

impl Forgetting {
    /// An empty matrix over `abilities`.
    pub fn new(
        abilities: Vec<String>,
        heldout: serde_json::Map<String, serde_json::Value>,
    ) -> Forgetting {
        Forgetting {
            metric: "mean negative log-likelihood (nats) per assistant token of held-out examples the recipe \
                     never trains on"
                .into(),
            abilities,
            heldout,
            rows: Vec::new(),
        }
    }

    /// The value at `stage` (row) for `ability`, if present.
    pub fn nll(&self, stage: usize, ability: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.stage == stage)?
            .nll
            .get(ability)?
            .as_f64()
    }
}
