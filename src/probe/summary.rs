//! `mixprobe metrics`: interference metrics per model and layer of a probe directory.
//!
//! Every metric but trustworthiness is computed on the full-dimensional pooled states (see
//! [`super::metrics`] for the definitions): silhouette and Davies–Bouldin of the source labels,
//! the directed kNN source overlap for each ordered pair of sources (`"a|b"`: the mean share of
//! an `a` example's k nearest neighbours that are `b`), the adjusted Rand index of k-means
//! (k = number of sources) against the sources, and linear CKA to the first model at the same
//! layer (1 for the first model itself). Trustworthiness (with the same k) scores the 2-D map of
//! `mixprobe project` when one exists: the t-SNE map, else the PCA one; absent otherwise.
//!
//! With [`MetricsConfig::standardize`], each hidden dimension is z-scored over the examples
//! (mean 0, variance 1; constant dimensions become 0) before the distance-based metrics
//! (silhouette, Davies–Bouldin, kNN overlap, k-means/ARI). Pretrained LLaMA-family models carry a
//! few "massive activation" dimensions (SmolLM2-135M: values up to ~2·10⁴ against ~1 elsewhere)
//! that otherwise dominate every Euclidean distance. CKA and trustworthiness always use the raw
//! states (CKA compares models; the 2-D maps were made from the raw states).
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
    /// z-score every dimension before the distance-based metrics.
    pub standardize: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            k: 10,
            seed: 0,
            standardize: false,
        }
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
    /// Whether the distance-based metrics saw z-scored dimensions.
    #[serde(default)]
    pub standardized: bool,
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
            let z = if cfg.standardize {
                standardized(&x)
            } else {
                x.clone()
            };
            let overlap = knn_overlap(z.view(), &labels, cfg.k)?;
            let knn_overlap = overlap
                .into_iter()
                .map(|((a, b), v)| (format!("{}|{}", sources[a], sources[b]), v))
                .collect();
            let clusters = kmeans(z.view(), sources.len(), cfg.seed)?;
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
                    silhouette: silhouette(z.view(), &labels)?,
                    davies_bouldin: davies_bouldin(z.view(), &labels)?,
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
        standardized: cfg.standardize,
    })
}

/// `x` with every column z-scored over the rows (population variance, f64 sums); a constant
/// column becomes all zeros.
pub fn standardized(x: &ndarray::Array2<f32>) -> ndarray::Array2<f32> {
    let n = x.nrows().max(1) as f64;
    let mut z = x.clone();
    for mut col in z.columns_mut() {
        let mean = col.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = col.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let sd = var.sqrt();
        for v in col.iter_mut() {
            *v = if sd > 0.0 {
                ((*v as f64 - mean) / sd) as f32
            } else {
                0.0
            };
        }
    }
    z
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn standardized_columns_have_zero_mean_and_unit_variance() {
        let x = Array2::from_shape_fn((4, 3), |(i, j)| match j {
            0 => i as f32,               // 0 1 2 3: mean 1.5, var 1.25
            1 => 1e4 * (i as f32 - 1.0), // large scale
            _ => 7.0,                    // constant
        });
        let z = standardized(&x);
        let want0 = [-1.5f64, -0.5, 0.5, 1.5].map(|v| v / 1.25f64.sqrt());
        for (i, w) in want0.iter().enumerate() {
            assert!((z[[i, 0]] as f64 - w).abs() < 1e-6);
            // Column 1 is an affine image of column 0: same z-scores.
            assert!((z[[i, 1]] as f64 - w).abs() < 1e-6);
            assert_eq!(z[[i, 2]], 0.0);
        }
    }

    #[test]
    fn standardizing_uncovers_clusters_hidden_by_one_massive_dimension() {
        // Two sources separated by ±1 in 8 dimensions; dimension 0 is noise of scale 1e4 (a
        // "massive activation"), which swamps raw Euclidean distances.
        let (n, d) = (40, 9);
        let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
        let mut rng = crate::util::rng(3, "test");
        use rand::Rng;
        let x = Array2::from_shape_fn((n, d), |(i, j)| {
            let noise: f32 = rng.random_range(-0.3..0.3);
            if j == 0 {
                1e4 * rng.random_range(-1.0f32..1.0)
            } else if labels[i] == 0 {
                1.0 + noise
            } else {
                -1.0 + noise
            }
        });
        let raw = silhouette(x.view(), &labels).unwrap();
        let z = silhouette(standardized(&x).view(), &labels).unwrap();
        assert!(raw.abs() < 0.2, "raw silhouette {raw}");
        assert!(z > 0.5, "standardized silhouette {z}");
    }
}
