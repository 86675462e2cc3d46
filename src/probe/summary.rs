//! `mixprobe metrics`: interference metrics per model and layer of a probe directory.
//!
//! Every metric but trustworthiness is computed on the full-dimensional pooled states (see
//! [`super::metrics`] for the definitions): silhouette and Davies–Bouldin of the source labels,
//! the directed kNN source overlap for each ordered pair of sources (`"a|b"`: the mean share of
//! an `a` example's k nearest neighbours that are `b`), the adjusted Rand index of k-means
//! (k = number of sources) against the sources, and linear CKA to the first model at the same
//! layer (1 for the first model itself). Trustworthiness (with the same k) scores the 2-D map of
//! `mixprobe project` when one exists: the t-SNE map, else the PCA one; absent otherwise.
use super::cluster::kmeans;
use super::extract::{ExtractIndex, load_layer};
use super::metrics::{
    adjusted_rand_index, davies_bouldin, knn_overlap, linear_cka, silhouette, trustworthiness,
};
use super::project::{ProjectionFile, projection_path};
use super::spec::Method;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Metric settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Neighbours for the kNN overlap and trustworthiness.
    pub k: usize,
    /// Seed of k-means.
    pub seed: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { k: 10, seed: 0 }
    }
}

/// The metrics of one (model, layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerMetrics {
    pub silhouette: f64,
    pub davies_bouldin: f64,
    /// `"a|b"` → share of an `a` example's k nearest neighbours that are `b`.
    pub knn_overlap: BTreeMap<String, f64>,
    /// Adjusted Rand index of k-means clusters against the sources.
    pub ari: f64,
    /// Trustworthiness of the 2-D map, when a map exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trustworthiness: Option<f64>,
    /// Which map `trustworthiness` scores (`tsne` or `pca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trustworthiness_map: Option<Method>,
    /// Linear CKA to the first model at this layer (absent when the first model lacks it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cka_to_first_model: Option<f64>,
}

/// `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    /// model → layer → metrics.
    pub models: BTreeMap<String, BTreeMap<usize, LayerMetrics>>,
    /// Neighbours used.
    pub k: usize,
    /// Source labels, in spec order.
    pub sources: Vec<String>,
    /// The models in probe order; CKA is measured against the first.
    pub model_order: Vec<String>,
    /// Rows (examples) per matrix.
    pub n_examples: usize,
}

impl MetricsFile {
    /// Read a `metrics.json`.
    pub fn load(path: &Path) -> Result<MetricsFile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::file(path, format!("not a metrics file: {e}")))
    }

    /// A plain-text table: one line per (model, layer).
    pub fn table(&self) -> String {
        let pairs: Vec<String> = self
            .models
            .values()
            .flat_map(|l| l.values())
            .next()
            .map(|m| m.knn_overlap.keys().cloned().collect())
            .unwrap_or_default();
        let mut s = format!(
            "{:<20} {:>5} {:>10} {:>8} {:>7} {:>7} {:>7}",
            "model", "layer", "silhouette", "DB", "ARI", "trust", "CKA"
        );
        for p in &pairs {
            s.push_str(&format!(" {p:>15}"));
        }
        s.push('\n');
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        for name in &self.model_order {
            let Some(layers) = self.models.get(name) else {
                continue;
            };
            for (layer, m) in layers {
                s.push_str(&format!(
                    "{:<20} {:>5} {:>10.3} {:>8.3} {:>7.3} {:>7} {:>7}",
                    name,
                    layer,
                    m.silhouette,
                    m.davies_bouldin,
                    m.ari,
                    opt(m.trustworthiness),
                    opt(m.cka_to_first_model)
                ));
                for p in &pairs {
                    s.push_str(&format!(" {:>15}", opt(m.knn_overlap.get(p).copied())));
                }
                s.push('\n');
            }
        }
        s
    }
}

/// Compute every metric for every (model, layer) of the probe directory `dir`.
pub fn metrics(dir: &Path, cfg: &MetricsConfig) -> Result<MetricsFile> {
    let index = ExtractIndex::load(dir)?;
    let sources = index.sources();
    let labels = index.labels();
    let n = index.examples.len();
    if sources.len() < 2 {
        return Err(Error::invalid(
            "probe sets",
            format!(
                "metrics compare sources: the probe has {} set(s), needs at least 2",
                sources.len()
            ),
        ));
    }
    let first = index
        .models
        .first()
        .ok_or_else(|| Error::file(dir.join("index.json"), "lists no model"))?;
    let mut models = BTreeMap::new();
    for model in &index.models {
        let mut per_layer = BTreeMap::new();
        for &layer in &model.layers {
            let x = load_layer(dir, model, layer)?;
            if x.nrows() != n {
                return Err(Error::file(
                    dir.join(&model.file),
                    format!(
                        "layer.{layer} has {} rows, index.json {n} examples",
                        x.nrows()
                    ),
                ));
            }
            let overlap = knn_overlap(x.view(), &labels, cfg.k)?;
            let knn_overlap = overlap
                .into_iter()
                .map(|((a, b), v)| (format!("{}|{}", sources[a], sources[b]), v))
                .collect();
            let clusters = kmeans(x.view(), sources.len(), cfg.seed)?;
            let (trust, map) = match trust_of(dir, &model.name, layer, x.view(), cfg.k)? {
                Some((t, m)) => (Some(t), Some(m)),
                None => (None, None),
            };
            let cka = if first.layers.contains(&layer) {
                let base = if first.name == model.name {
                    x.clone()
                } else {
                    load_layer(dir, first, layer)?
                };
                Some(linear_cka(base.view(), x.view())?)
            } else {
                None
            };
            per_layer.insert(
                layer,
                LayerMetrics {
                    silhouette: silhouette(x.view(), &labels)?,
                    davies_bouldin: davies_bouldin(x.view(), &labels)?,
                    knn_overlap,
                    ari: adjusted_rand_index(&labels, &clusters)?,
                    trustworthiness: trust,
                    trustworthiness_map: map,
                    cka_to_first_model: cka,
                },
            );
        }
        models.insert(model.name.clone(), per_layer);
    }
    Ok(MetricsFile {
        models,
        k: cfg.k,
        sources,
        model_order: index.models.iter().map(|m| m.name.clone()).collect(),
        n_examples: n,
    })
}

/// Trustworthiness of the t-SNE map of (model, layer), else of its PCA map; None without a map.
fn trust_of(
    dir: &Path,
    model: &str,
    layer: usize,
    x: ndarray::ArrayView2<'_, f32>,
    k: usize,
) -> Result<Option<(f64, Method)>> {
    for method in [Method::Tsne, Method::Pca] {
        let path = projection_path(dir, model, layer, method);
        if !path.is_file() {
            continue;
        }
        let map = ProjectionFile::load(&path)?;
        if map.points.len() != x.nrows() {
            return Err(Error::file(
                &path,
                format!(
                    "has {} points but the probe has {} examples: re-run `mixprobe project`",
                    map.points.len(),
                    x.nrows()
                ),
            ));
        }
        return Ok(Some((trustworthiness(x, map.coords().view(), k)?, method)));
    }
    Ok(None)
}
