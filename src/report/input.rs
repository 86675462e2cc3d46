//! Reading an experiment directory: `results.json` (the runner's summary), the probe output
//! (`index.json`, `metrics.json`, projection CSVs) and each cell's training log
//! (`metrics.jsonl`). Everything absent is `None`/empty (the report says so); everything present
//! but malformed is an error naming the file and, where it has one, the line.
use crate::error::{Error, Location, Result};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `results.json` as written by `mixprobe run`.
#[derive(Debug, Clone, Deserialize)]
pub struct Results {
    pub experiment: ExperimentInfo,
    #[serde(default)]
    pub meta: Option<RunMeta>,
    #[serde(default)]
    pub cells: Vec<Cell>,
    #[serde(default)]
    pub base: Vec<BaseScores>,
    #[serde(default)]
    pub probe: Option<ProbeRef>,
}

/// Which experiment file produced the results.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ExperimentInfo {
    pub name: String,
    pub file: Option<String>,
    pub sha256: Option<String>,
    pub description: Option<String>,
}

/// What a reader needs to reproduce the run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunMeta {
    pub mixprobe_version: Option<String>,
    pub git_rev: Option<String>,
    pub started: Option<String>,
    pub wall_s: Option<f64>,
    pub device: Option<String>,
    pub threads: Option<u64>,
    pub data: Option<DataMeta>,
    pub seeds: Vec<u64>,
}

/// The data directory and the sha256 of every file the experiment read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DataMeta {
    pub dir: Option<String>,
    pub files: BTreeMap<String, String>,
}

/// One cell of the experiment grid (model × recipe).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Cell {
    pub id: String,
    pub model: String,
    pub recipe: String,
    /// The research question: rq1, rq2, rq3, rq4, dmt_k, ablation.
    pub group: Option<String>,
    /// The recipe's strategy shortcut (single, mixed, sequential, mixed_sequential, dmt, ratio).
    pub strategy: Option<String>,
    /// Amount per source: a fraction of the source (≤ 1), or an example count (> 1); a JSON
    /// number or a string such as `"1/256"`.
    pub fractions: BTreeMap<String, serde_json::Value>,
    /// DMT's k (the fraction of specialized data replayed in stage 2).
    pub k: Option<f64>,
    /// Per source: the categories removed before sampling.
    pub ablation: Option<serde_json::Value>,
    /// RQ3: `{"specialized": f, "general": f}` (or a bare number).
    pub ratio: Option<serde_json::Value>,
    /// done | failed | pending.
    pub status: String,
    pub error: Option<String>,
    pub wall_s: Option<f64>,
    /// The cell's `mixprobe train` run dir, relative to the experiment dir.
    pub run_dir: Option<String>,
    pub train_tokens: Option<u64>,
    pub final_loss: Option<f64>,
    /// Final scores by flat key (`synth.math`, `nll.code`, `gsm8k.strict`, …).
    pub scores: BTreeMap<String, f64>,
    pub forgetting: Option<ForgettingMatrix>,
}

impl Cell {
    /// True for a finished cell (the only ones plotted).
    pub fn done(&self) -> bool {
        self.status == "done"
    }

    /// The amount of `source` as a number (fraction or count), if the cell names one.
    pub fn fraction(&self, source: &str) -> Option<f64> {
        amount(self.fractions.get(source)?)
    }

    /// The sources this cell trains on (amount > 0), in name order.
    pub fn sources(&self) -> Vec<&str> {
        self.fractions
            .keys()
            .filter(|s| self.fraction(s).is_some_and(|f| f > 0.0))
            .map(|s| s.as_str())
            .collect()
    }
}

/// An amount written as a JSON number or a string (`"0.25"`, `"1/256"`, `"1000"`).
pub fn amount(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => match s.split_once('/') {
            Some((a, b)) => Some(a.trim().parse::<f64>().ok()? / b.trim().parse::<f64>().ok()?),
            None => s.trim().parse().ok(),
        },
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// The stage × ability matrix of one cell, per metric.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ForgettingMatrix {
    pub stages: Vec<String>,
    pub abilities: Vec<String>,
    pub metrics: BTreeMap<String, Vec<Vec<Option<f64>>>>,
}

/// Scores of an untouched base model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BaseScores {
    pub model: String,
    pub scores: BTreeMap<String, f64>,
    /// Why the base model could not be scored, if it could not.
    pub error: Option<String>,
}

/// Where the probe output lives, relative to the experiment dir.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProbeRef {
    pub dir: Option<String>,
    pub metrics: Option<String>,
    /// Cell id (or `<model>/base`) → the probe's model name.
    pub models: BTreeMap<String, String>,
    /// Why the probe failed, if it did.
    pub error: Option<String>,
}

/// Read and parse a JSON file; a missing file is an error naming it.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::file(
            path,
            format!(
                "is not a valid {what} (line {}, column {}): {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

/// Load `DIR/results.json`.
pub fn load_results(experiment_dir: &Path) -> Result<Results> {
    let path = experiment_dir.join("results.json");
    if !path.is_file() {
        return Err(Error::file(
            &path,
            "not found: the report reads an experiment directory written by `mixprobe run` \
             (it must contain results.json)",
        ));
    }
    read_json(
        &path,
        "results.json (see `mixprobe run --help` for its layout)",
    )
}

/// The probe output dir's `index.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProbeIndex {
    pub models: Vec<ProbeModel>,
    #[serde(default)]
    pub examples: Vec<ProbeExample>,
}

/// One probed model.
#[derive(Debug, Clone, Deserialize)]
pub struct ProbeModel {
    pub name: String,
    #[serde(default)]
    pub layers: Vec<usize>,
}

/// One probe example.
#[derive(Debug, Clone, Deserialize)]
pub struct ProbeExample {
    pub id: String,
    pub source: String,
}

/// The probe's `metrics.json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProbeMetrics {
    /// model → layer (as a string) → metrics.
    pub models: BTreeMap<String, BTreeMap<String, LayerMetrics>>,
    pub k: Option<u64>,
    pub sources: Vec<String>,
}

/// Interference metrics of one model's layer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LayerMetrics {
    pub silhouette: Option<f64>,
    pub davies_bouldin: Option<f64>,
    /// `a|b` → fraction of each point's k nearest neighbours from the other source.
    pub knn_overlap: BTreeMap<String, Option<f64>>,
    pub ari: Option<f64>,
    pub trustworthiness: Option<f64>,
    pub cka_to_first_model: Option<f64>,
}

/// One row of a projection CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectedPoint {
    pub source: String,
    pub x: f64,
    pub y: f64,
}

/// A 2-D projection of one model's layer.
#[derive(Debug, Clone)]
pub struct Projection {
    /// `tsne` or `pca`.
    pub method: String,
    pub points: Vec<ProjectedPoint>,
}

/// Everything read from the probe dir.
#[derive(Debug, Clone)]
pub struct ProbeData {
    pub dir: PathBuf,
    pub index: ProbeIndex,
    pub metrics: Option<ProbeMetrics>,
    /// (model, layer) → projection (t-SNE preferred over PCA).
    pub projections: BTreeMap<(String, usize), Projection>,
}

/// Load the probe output named by `results.probe`, or say why there is none.
pub fn load_probe(
    experiment_dir: &Path,
    probe: Option<&ProbeRef>,
) -> Result<std::result::Result<ProbeData, String>> {
    let Some(probe) = probe else {
        return Ok(Err(
            "results.json has no `probe` entry: the experiment ran no probe".into(),
        ));
    };
    let dir = experiment_dir.join(probe.dir.as_deref().unwrap_or("probe"));
    let index_path = dir.join("index.json");
    if !index_path.is_file() {
        return Ok(Err(match &probe.error {
            Some(e) => format!("the probe failed: {e}"),
            None => format!(
                "the probe dir {} has no index.json (the probe has not run yet)",
                dir.display()
            ),
        }));
    }
    let index: ProbeIndex = read_json(&index_path, "probe index.json")?;
    let metrics_path = match &probe.metrics {
        Some(m) => experiment_dir.join(m),
        None => dir.join("metrics.json"),
    };
    let metrics = if metrics_path.is_file() {
        Some(read_json::<ProbeMetrics>(
            &metrics_path,
            "probe metrics.json",
        )?)
    } else {
        None
    };
    let mut projections = BTreeMap::new();
    for model in &index.models {
        for &layer in &model.layers {
            for method in ["tsne", "pca"] {
                let path = dir
                    .join("projection")
                    .join(&model.name)
                    .join(format!("layer-{layer}.{method}.csv"));
                if path.is_file() {
                    let points = read_projection_csv(&path)?;
                    projections.insert(
                        (model.name.clone(), layer),
                        Projection {
                            method: method.to_string(),
                            points,
                        },
                    );
                    break;
                }
            }
        }
    }
    Ok(Ok(ProbeData {
        dir,
        index,
        metrics,
        projections,
    }))
}

/// Split one CSV line into fields, honouring double-quoted fields with `""` escapes.
fn split_csv(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

/// Read a projection CSV (`id,source,x,y,cluster`, columns found by header name).
pub fn read_projection_csv(path: &Path) -> Result<Vec<ProjectedPoint>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Err(Error::file(
            path,
            "is empty (expected a header `id,source,x,y,cluster`)",
        ));
    };
    let header = split_csv(header).map_err(|m| Error::record(path, Location::Line(1), m))?;
    let col = |name: &str| {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| {
            Error::record(
                path,
                Location::Line(1),
                format!("header has no `{name}` column (expected `id,source,x,y,cluster`)"),
            )
        })
    };
    let (cs, cx, cy) = (col("source")?, col("x")?, col("y")?);
    let mut points = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let loc = Location::Line(i + 1);
        let fields = split_csv(line).map_err(|m| Error::record(path, loc, m))?;
        let get = |c: usize| {
            fields.get(c).ok_or_else(|| {
                Error::record(
                    path,
                    loc,
                    format!("has {} fields, expected {}", fields.len(), header.len()),
                )
            })
        };
        let num = |c: usize, name: &str| -> Result<f64> {
            let v = get(c)?;
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    Error::record(path, loc, format!("`{name}` is not a finite number: {v:?}"))
                })
        };
        points.push(ProjectedPoint {
            source: get(cs)?.clone(),
            x: num(cx, "x")?,
            y: num(cy, "y")?,
        });
    }
    Ok(points)
}

/// One logged optimizer step of a training run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogStep {
    pub step: u64,
    pub stage: u64,
    pub stage_name: String,
    pub loss: Option<f64>,
    pub loss_by_source: BTreeMap<String, Option<f64>>,
}

/// A cell's training log, with the lines that could not be parsed counted.
#[derive(Debug, Clone, Default)]
pub struct TrainLog {
    pub steps: Vec<LogStep>,
    /// Lines that are not a JSON step record (e.g. the torn last line of a killed run).
    pub malformed: usize,
    /// 1-based number of the first malformed line.
    pub first_malformed: Option<usize>,
}

/// Read `metrics.jsonl`; malformed lines are counted (the report shows the count), not fatal,
/// since an interrupted run may leave a torn last line.
pub fn read_train_log(path: &Path) -> Result<TrainLog> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut log = TrainLog::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<LogStep>(line) {
            Ok(step) => log.steps.push(step),
            Err(_) => {
                log.malformed += 1;
                log.first_malformed.get_or_insert(i + 1);
            }
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_numbers_and_fractions() {
        assert_eq!(amount(&serde_json::json!(0.25)), Some(0.25));
        assert_eq!(amount(&serde_json::json!(1000)), Some(1000.0));
        assert_eq!(amount(&serde_json::json!("1/256")), Some(1.0 / 256.0));
        assert_eq!(amount(&serde_json::json!("x")), None);
        assert_eq!(amount(&serde_json::json!(null)), None);
    }

    #[test]
    fn csv_fields_honour_quotes() {
        assert_eq!(
            split_csv(r#"a,"b,c",1.5,"say ""hi""""#).unwrap(),
            vec!["a", "b,c", "1.5", r#"say "hi""#]
        );
        assert!(split_csv(r#"a,"b"#).is_err());
    }

    #[test]
    fn projection_csv_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("layer-1.tsne.csv");
        std::fs::write(
            &p,
            "id,source,x,y,cluster\nm1,math,0.5,1,0\nm2,code,nan,2,1\n",
        )
        .unwrap();
        let err = read_projection_csv(&p).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("`x`"), "{err}");
        std::fs::write(&p, "id,source,x,y,cluster\nm1,math,0.5,1,0\n").unwrap();
        assert_eq!(
            read_projection_csv(&p).unwrap(),
            vec![ProjectedPoint {
                source: "math".into(),
                x: 0.5,
                y: 1.0
            }]
        );
    }
}
