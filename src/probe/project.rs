//! `mixprobe project`: each (model, layer) matrix of a probe directory to 2-D (t-SNE after PCA,
//! or PCA), with k-means clusters (k = number of sources) of the full-dimensional states.
//!
//! Writes `DIR/projection/<model>/layer-<i>.<tsne|pca>.csv` (columns `id,source,x,y,cluster`,
//! rows in index order) and a `.json` beside it ([`ProjectionFile`]: the same points plus the
//! method's parameters and quality numbers).
use super::cluster::kmeans;
use super::extract::{ExtractIndex, ModelEntry, load_layer};
use super::pca::pca;
use super::spec::Method;
use super::tsne::{TsneParams, tsne};
use crate::error::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Subdirectory of a probe directory that holds the maps.
pub const PROJECTION_DIR: &str = "projection";

/// Projection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectConfig {
    /// t-SNE or PCA.
    pub method: Method,
    /// t-SNE perplexity (at most (n - 1) / 3).
    pub perplexity: f64,
    /// Seed of t-SNE's initial jitter and of k-means.
    pub seed: u64,
    /// t-SNE input: the states are first reduced to this many principal components (when they
    /// have more columns and rows than that).
    pub pca_dims: usize,
    /// Only these layers (each must be kept by at least one model); all when None.
    pub layers: Option<Vec<usize>>,
    /// Worker threads for t-SNE (0 = the current rayon pool).
    pub threads: usize,
    /// Show a progress bar (stderr).
    pub progress: bool,
}

impl Default for ProjectConfig {
    fn default() -> Self {
        ProjectConfig {
            method: Method::Tsne,
            perplexity: 30.0,
            seed: 0,
            pca_dims: 50,
            layers: None,
            threads: 0,
            progress: false,
        }
    }
}

/// One point of a map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub id: String,
    pub source: String,
    pub x: f32,
    pub y: f32,
    /// k-means cluster of the full-dimensional state.
    pub cluster: usize,
}

/// The `.json` of one map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectionFile {
    pub model: String,
    pub layer: usize,
    pub method: Method,
    /// t-SNE perplexity (t-SNE only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
    /// Principal components fed to t-SNE (t-SNE only; None = the raw states).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pca_dims: Option<usize>,
    pub seed: u64,
    /// Final exact KL divergence (t-SNE only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_divergence: Option<f64>,
    /// Variance share of the two axes (PCA only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explained_variance_ratio: Option<Vec<f64>>,
    /// Number of k-means clusters (the number of sources).
    pub k: usize,
    pub points: Vec<Point>,
}

impl ProjectionFile {
    /// Read a map's `.json`.
    pub fn load(path: &Path) -> Result<ProjectionFile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::file(path, format!("not a map: {e}")))
    }

    /// The `[n, 2]` coordinates.
    pub fn coords(&self) -> Array2<f32> {
        Array2::from_shape_fn((self.points.len(), 2), |(i, a)| {
            if a == 0 {
                self.points[i].x
            } else {
                self.points[i].y
            }
        })
    }
}

/// Path of the map of `model` at `layer` made by `method` (`.json`; the `.csv` is beside it).
pub fn projection_path(dir: &Path, model: &str, layer: usize, method: Method) -> PathBuf {
    dir.join(PROJECTION_DIR)
        .join(model)
        .join(format!("layer-{layer}.{}.json", method.as_str()))
}

/// Project every (model, layer) of the probe directory `dir` (see the module docs).
pub fn project(dir: &Path, cfg: &ProjectConfig) -> Result<()> {
    let index = ExtractIndex::load(dir)?;
    let jobs = jobs(&index, cfg.layers.as_deref())?;
    let k = index.sources().len();
    let bar = if cfg.progress {
        let b = ProgressBar::new(jobs.len() as u64);
        b.set_style(
            ProgressStyle::with_template("project [{bar:30}] {pos}/{len} maps (ETA {eta}) {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    for (model, layer) in jobs {
        bar.set_message(format!("{} layer {layer}", model.name));
        let x = load_layer(dir, model, layer)?;
        if x.nrows() != index.examples.len() {
            return Err(Error::file(
                dir.join(&model.file),
                format!(
                    "layer.{layer} has {} rows but index.json lists {} examples",
                    x.nrows(),
                    index.examples.len()
                ),
            ));
        }
        let mut file = map(x.view(), cfg, k)?;
        file.model = model.name.clone();
        file.layer = layer;
        file.points = index
            .examples
            .iter()
            .zip(file.points)
            .map(|(e, p)| Point {
                id: e.id.clone(),
                source: e.source.clone(),
                ..p
            })
            .collect();
        write(dir, &file)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The (model, layer) pairs to project.
fn jobs<'a>(
    index: &'a ExtractIndex,
    layers: Option<&[usize]>,
) -> Result<Vec<(&'a ModelEntry, usize)>> {
    if let Some(wanted) = layers {
        for l in wanted {
            if !index.models.iter().any(|m| m.layers.contains(l)) {
                return Err(Error::invalid(
                    "layers",
                    format!("no model in the probe directory kept layer {l}"),
                ));
            }
        }
    }
    Ok(index
        .models
        .iter()
        .flat_map(|m| {
            m.layers
                .iter()
                .filter(|l| layers.is_none_or(|w| w.contains(l)))
                .map(move |&l| (m, l))
        })
        .collect())
}

/// Map one matrix: coordinates, clusters, parameters (model, layer, ids and sources left empty).
fn map(x: ArrayView2<'_, f32>, cfg: &ProjectConfig, k: usize) -> Result<ProjectionFile> {
    let clusters = kmeans(x, k, cfg.seed)?;
    let mut file = ProjectionFile {
        model: String::new(),
        layer: 0,
        method: cfg.method,
        perplexity: None,
        pca_dims: None,
        seed: cfg.seed,
        kl_divergence: None,
        explained_variance_ratio: None,
        k,
        points: Vec::new(),
    };
    let coords = match cfg.method {
        Method::Pca => {
            let p = pca(x, 2)?;
            file.explained_variance_ratio = Some(p.explained_variance_ratio);
            p.coords
        }
        Method::Tsne => {
            let (n, d) = x.dim();
            let reduced = if cfg.pca_dims >= 1 && d > cfg.pca_dims && n > cfg.pca_dims {
                file.pca_dims = Some(cfg.pca_dims);
                Some(pca(x, cfg.pca_dims)?.coords)
            } else {
                None
            };
            let params = TsneParams {
                perplexity: cfg.perplexity,
                seed: cfg.seed,
                threads: cfg.threads,
                ..TsneParams::default()
            };
            let out = match &reduced {
                Some(r) => tsne(r.view(), &params)?,
                None => tsne(x, &params)?,
            };
            file.perplexity = Some(cfg.perplexity);
            file.kl_divergence = Some(out.kl_divergence);
            out.embedding
        }
    };
    file.points = coords
        .rows()
        .into_iter()
        .zip(clusters)
        .map(|(r, cluster)| Point {
            id: String::new(),
            source: String::new(),
            x: r[0],
            y: r[1],
            cluster,
        })
        .collect();
    Ok(file)
}

/// Write the `.json` and `.csv` of a map.
fn write(dir: &Path, file: &ProjectionFile) -> Result<()> {
    let json = projection_path(dir, &file.model, file.layer, file.method);
    if let Some(parent) = json.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    crate::util::write_json(&json, file)?;
    let mut csv = String::from("id,source,x,y,cluster\n");
    for p in &file.points {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            csv_field(&p.id),
            csv_field(&p.source),
            p.x,
            p.y,
            p.cluster
        ));
    }
    crate::util::write_atomic(&json.with_extension("csv"), csv.as_bytes())
}

/// A CSV field, quoted (RFC 4180) when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
