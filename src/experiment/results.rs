//! What an experiment writes: `results.json` (the report's input) and each cell's `cell.json`.
//! The layout and schema are documented in [`super`]; missing scores are absent keys, never
//! zeros.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// `OUT/results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub experiment: ExperimentInfo,
    pub meta: Meta,
    pub cells: Vec<CellResult>,
    /// Scores of each model before fine-tuning.
    pub base: Vec<BaseResult>,
    /// The probe, once it ran.
    pub probe: Option<ProbeResult>,
}

/// Which experiment this is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentInfo {
    pub name: String,
    /// The experiment file as given on the command line.
    pub file: String,
    /// sha256 of the file's bytes.
    pub sha256: String,
    pub description: Option<String>,
}

/// How the results were produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub mixprobe_version: String,
    /// `git rev-parse HEAD` of the working directory, when it is a repository.
    pub git_rev: Option<String>,
    /// When this invocation started (RFC 3339, UTC).
    pub started: String,
    /// Seconds this invocation has run so far.
    pub wall_s: f64,
    pub device: String,
    /// Worker threads of the CPU backend.
    pub threads: usize,
    pub data: DataInfo,
    pub seeds: Vec<u64>,
    /// Cells this invocation ran, skipped (cached) and found failed.
    pub counts: Counts,
}

/// The data directory and the sha256 of every file a recipe reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataInfo {
    pub dir: String,
    /// Path relative to `dir` → sha256 (absent files are left out and fail their cells).
    pub files: BTreeMap<String, String>,
}

/// Cell counts of one invocation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    /// Cells trained (fully or resumed) by this invocation.
    pub ran: usize,
    /// Finished cells reused from the cache.
    pub cached: usize,
    pub failed: usize,
    /// Cells not (fully) run: interrupted, or outside `--only`.
    pub pending: usize,
}

/// One cell of the grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    pub id: String,
    pub model: String,
    pub recipe: String,
    pub group: String,
    /// The recipe's strategy (single, mixed, sequential, mixed_sequential, dmt, ratio) or
    /// `stages` for explicit stages.
    pub strategy: String,
    /// Per source: the largest amount any stage takes (a fraction, or an integer count).
    pub fractions: BTreeMap<String, Value>,
    /// DMT's replay fraction.
    pub k: Option<f64>,
    /// Per source: the categories removed before sampling (ShareGPT ablation).
    pub ablation: Option<BTreeMap<String, Vec<String>>>,
    /// RQ3: `{"specialized": f, "general": f}`.
    pub ratio: Option<BTreeMap<String, f64>>,
    pub seed: u64,
    /// done | failed | pending
    pub status: String,
    pub error: Option<String>,
    pub wall_s: Option<f64>,
    /// Relative to the experiment directory.
    pub run_dir: String,
    /// Input tokens of every optimizer step (when every step was logged).
    pub train_tokens: Option<u64>,
    /// Loss of the last logged step.
    pub final_loss: Option<f64>,
    pub scores: BTreeMap<String, f64>,
    pub forgetting: Option<Forgetting>,
    /// Where the scores came from: `eval` (the eval layer) or `train` (held-out NLL only).
    pub scores_from: Option<String>,
}

/// The stage × ability matrix of one cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Forgetting {
    pub stages: Vec<String>,
    pub abilities: Vec<String>,
    /// Score key → rows (stages) × columns (abilities).
    pub metrics: BTreeMap<String, Vec<Vec<Option<f64>>>>,
}

/// A model before fine-tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseResult {
    pub model: String,
    pub scores: BTreeMap<String, f64>,
    /// `eval` (the eval layer on the base model) or `train` (held-out NLL before training).
    pub scores_from: Option<String>,
    pub error: Option<String>,
}

/// The probe output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeResult {
    pub dir: String,
    pub metrics: Option<String>,
    /// Cell id (or `<model>/base`) → the probe's model name.
    pub models: BTreeMap<String, String>,
    pub error: Option<String>,
}

/// `OUT/cells/<dir>/cell.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellRecord {
    pub id: String,
    pub key_sha256: String,
    /// Key of the evaluation (benchmarks and settings) that `eval.json` holds, when evaluated.
    #[serde(default)]
    pub eval_key_sha256: Option<String>,
    /// done | failed | pending (running or interrupted)
    pub status: String,
    /// Seconds of work over every invocation.
    pub wall_s: f64,
    pub error: Option<String>,
    /// When the cell last finished (RFC 3339); unchanged while it is reused from the cache.
    pub finished: Option<String>,
    /// Invocations that trained (or resumed) this cell.
    pub attempts: u32,
}

impl CellRecord {
    /// Read `cell.json`, or None when it is absent or unreadable (the cell then runs afresh).
    pub fn read(path: &Path) -> Option<CellRecord> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

impl Results {
    /// Read a `results.json`.
    pub fn read(path: &Path) -> Result<Results> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::file(path, format!("not a results.json: {e}")))
    }
}

/// The current time as RFC 3339 UTC (`2026-11-21T19:12:31Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the Unix epoch as RFC 3339 UTC.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        // `date -u -d @1795000000`: 2026-11-18T11:06:40Z
        assert_eq!(super::rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
