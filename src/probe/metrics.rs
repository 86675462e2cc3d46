//! Interference metrics on full-dimensional pooled states (row = example), each matching the
//! scikit-learn / numpy definition recorded in `shared/fixtures/metrics/metrics_reference.json`.
//! Distances are Euclidean and computed in f64.
use super::distance::Points;
use super::input;
use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Mean silhouette coefficient of `labels` on the rows of `x` (as
/// `sklearn.metrics.silhouette_score(x, labels)`): per example `(b - a) / max(a, b)` with `a`
/// the mean distance to the other members of its label and `b` the smallest mean distance to the
/// members of another label; 0 for an example alone in its label. Needs 2..=n-1 distinct labels.
pub fn silhouette(x: ArrayView2<'_, f32>, labels: &[usize]) -> Result<f64> {
    input::matrix("silhouette input", x, 2)?;
    let dense = input::labels("silhouette labels", labels, x.nrows())?;
    input::cluster_count("silhouette labels", &dense, x.nrows())?;
    let counts = dense.counts();
    let points = Points::new(x);
    let scores = points.map_rows(|i, d| {
        let mut sums = vec![0.0; counts.len()];
        for (j, v) in d.iter().enumerate() {
            sums[dense.ids[j]] += v.sqrt();
        }
        let own = dense.ids[i];
        if counts[own] == 1 {
            return 0.0;
        }
        let a = sums[own] / (counts[own] - 1) as f64;
        let b = (0..counts.len())
            .filter(|&c| c != own)
            .map(|c| sums[c] / counts[c] as f64)
            .fold(f64::INFINITY, f64::min);
        if a.max(b) > 0.0 {
            (b - a) / a.max(b)
        } else {
            0.0
        }
    });
    Ok(scores.iter().sum::<f64>() / scores.len() as f64)
}

/// Davies–Bouldin index (as `sklearn.metrics.davies_bouldin_score`): the mean over labels of
/// the largest `(s_a + s_b) / |c_a - c_b|`, with `c` the label's centroid and `s` its members'
/// mean distance to it. Lower is better separated. Needs 2..=n-1 distinct labels.
pub fn davies_bouldin(x: ArrayView2<'_, f32>, labels: &[usize]) -> Result<f64> {
    input::matrix("Davies-Bouldin input", x, 2)?;
    let dense = input::labels("Davies-Bouldin labels", labels, x.nrows())?;
    input::cluster_count("Davies-Bouldin labels", &dense, x.nrows())?;
    let counts = dense.counts();
    let c = counts.len();
    let x = x.mapv(f64::from);
    let mut centroids = Array2::<f64>::zeros((c, x.ncols()));
    for (row, &id) in x.rows().into_iter().zip(&dense.ids) {
        let mut cen = centroids.row_mut(id);
        cen += &row;
    }
    for (mut cen, &m) in centroids.rows_mut().into_iter().zip(&counts) {
        cen /= m as f64;
    }
    let dist = |a: ndarray::ArrayView1<'_, f64>, b: ndarray::ArrayView1<'_, f64>| {
        a.iter()
            .zip(b)
            .map(|(u, v)| (u - v) * (u - v))
            .sum::<f64>()
            .sqrt()
    };
    let mut spread = vec![0.0; c];
    for (row, &id) in x.rows().into_iter().zip(&dense.ids) {
        spread[id] += dist(row, centroids.row(id));
    }
    for (s, &m) in spread.iter_mut().zip(&counts) {
        *s /= m as f64;
    }
    let mut centroid_dist = Array2::<f64>::zeros((c, c));
    for a in 0..c {
        for b in 0..c {
            centroid_dist[[a, b]] = dist(centroids.row(a), centroids.row(b));
        }
    }
    if spread.iter().all(|&s| s == 0.0) || centroid_dist.iter().all(|&d| d == 0.0) {
        return Ok(0.0);
    }
    let total: f64 = (0..c)
        .map(|a| {
            (0..c)
                .filter(|&b| centroid_dist[[a, b]] > 0.0)
                .map(|b| (spread[a] + spread[b]) / centroid_dist[[a, b]])
                .fold(0.0, f64::max)
        })
        .sum();
    Ok(total / c as f64)
}

/// Directed k-nearest-neighbour source overlap: for every ordered pair of distinct labels
/// `(a, b)`, the mean over the examples labelled `a` of the fraction of their `k` nearest
/// neighbours (Euclidean, the example itself excluded) that are labelled `b`. Keys are
/// `(a, b)` in the caller's label values; 0 means the sources do not mix, and with `c` equally
/// sized, fully mixed sources each value approaches `1 / c`. Needs `1 <= k <= n - 1`.
pub fn knn_overlap(
    x: ArrayView2<'_, f32>,
    labels: &[usize],
    k: usize,
) -> Result<BTreeMap<(usize, usize), f64>> {
    input::matrix("kNN-overlap input", x, 2)?;
    let n = x.nrows();
    let dense = input::labels("kNN-overlap labels", labels, n)?;
    if k == 0 || k >= n {
        return Err(Error::invalid(
            "k",
            format!("must be between 1 and n - 1 = {}, got {k}", n - 1),
        ));
    }
    let c = dense.n_classes();
    let knn = Points::new(x).knn(k);
    // share[a][b] = sum over examples of a of the fraction of their neighbours labelled b
    let mut share = vec![vec![0.0; c]; c];
    for i in 0..n {
        let a = dense.ids[i];
        for &j in knn.of(i) {
            share[a][dense.ids[j]] += 1.0 / k as f64;
        }
    }
    let counts = dense.counts();
    let mut out = BTreeMap::new();
    for a in 0..c {
        for b in (0..c).filter(|&b| b != a) {
            out.insert(
                (dense.values[a], dense.values[b]),
                share[a][b] / counts[a] as f64,
            );
        }
    }
    Ok(out)
}

/// Adjusted Rand index between two labellings of the same examples (as
/// `sklearn.metrics.adjusted_rand_score`): 1 for identical partitions (label values do not
/// matter), about 0 for independent ones.
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> Result<f64> {
    if a.is_empty() {
        return Err(Error::invalid("adjusted Rand index labels", "no examples"));
    }
    let da = input::labels("adjusted Rand index labels", a, a.len())?;
    let db = input::labels("adjusted Rand index labels", b, a.len())?;
    let mut table = vec![vec![0u128; db.n_classes()]; da.n_classes()];
    for (&i, &j) in da.ids.iter().zip(&db.ids) {
        table[i][j] += 1;
    }
    let n = a.len() as u128;
    let rows: Vec<u128> = table.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<u128> = (0..db.n_classes())
        .map(|j| table.iter().map(|r| r[j]).sum())
        .collect();
    let sum_squares: u128 = table.iter().flatten().map(|v| v * v).sum();
    // pair confusion matrix (counts of ordered pairs), as sklearn's pair_confusion_matrix
    let tp = (sum_squares - n) as f64;
    let fp = (table
        .iter()
        .map(|r| r.iter().zip(&cols).map(|(v, c)| v * c).sum::<u128>())
        .sum::<u128>()
        - sum_squares) as f64;
    let fn_ = ((0..db.n_classes())
        .map(|j| table.iter().zip(&rows).map(|(r, s)| r[j] * s).sum::<u128>())
        .sum::<u128>()
        - sum_squares) as f64;
    let tn = (n * n) as f64 - fp - fn_ - sum_squares as f64;
    if fn_ == 0.0 && fp == 0.0 {
        return Ok(1.0);
    }
    Ok(2.0 * (tp * tn - fn_ * fp) / ((tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn)))
}

/// Trustworthiness of a low-dimensional map `x_low` of `x_high` (as
/// `sklearn.manifold.trustworthiness(x_high, x_low, n_neighbors=k)`): penalises examples that
/// are among an example's `k` nearest neighbours in the map but not in the original space, by
/// how far down the original ranking they sit. 1 = every map neighbourhood is faithful.
/// Needs `1 <= k < n / 2`.
pub fn trustworthiness(
    x_high: ArrayView2<'_, f32>,
    x_low: ArrayView2<'_, f32>,
    k: usize,
) -> Result<f64> {
    input::matrix("trustworthiness high-dimensional input", x_high, 3)?;
    input::matrix("trustworthiness map", x_low, 3)?;
    input::same_rows("trustworthiness inputs", x_high.nrows(), x_low.nrows())?;
    let n = x_high.nrows();
    if k == 0 || 2 * k >= n {
        return Err(Error::invalid(
            "k",
            format!(
                "must be at least 1 and below n / 2 = {}, got {k}",
                n as f64 / 2.0
            ),
        ));
    }
    let low = Points::new(x_low).knn(k);
    let penalties = Points::new(x_high).map_rows(|i, d| {
        low.of(i)
            .iter()
            .map(|&j| {
                // rank of j among i's neighbours in the original space (1 = nearest)
                let rank = 1 + d
                    .iter()
                    .enumerate()
                    .filter(|&(m, &v)| m != i && (v < d[j] || (v == d[j] && m < j)))
                    .count();
                rank.saturating_sub(k) as f64
            })
            .sum::<f64>()
    });
    let (nf, kf) = (n as f64, k as f64);
    Ok(1.0 - penalties.iter().sum::<f64>() * 2.0 / (nf * kf * (2.0 * nf - 3.0 * kf - 1.0)))
}

/// Linear centred kernel alignment between two representations of the same examples
/// (Kornblith et al. 2019): `|Bᵀ A|²_F / (|Aᵀ A|_F |Bᵀ B|_F)` with `A`, `B` the column-centred
/// inputs. 1 for identical inputs; invariant to orthogonal transforms and isotropic scaling.
/// The feature counts may differ.
pub fn linear_cka(x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>) -> Result<f64> {
    input::matrix("CKA first input", x, 2)?;
    input::matrix("CKA second input", y, 2)?;
    input::same_rows("CKA inputs", x.nrows(), y.nrows())?;
    let centred = |m: ArrayView2<'_, f32>| {
        let m = m.mapv(f64::from);
        let mean = m.mean_axis(Axis(0)).unwrap_or_default();
        m - &mean
    };
    let (a, b) = (centred(x), centred(y));
    let (n, da, db) = (a.nrows(), a.ncols(), b.ncols());
    let fro2 = |m: &Array2<f64>| m.par_iter().map(|v| v * v).sum::<f64>();
    // feature space (d×d products) or example space (n×n Gram matrices), whichever is cheaper
    let (cross, self_a, self_b) = if n * n * (da + db) < n * (da * db + da * da + db * db) {
        let (ga, gb) = (a.dot(&a.t()), b.dot(&b.t()));
        let cross = ga.iter().zip(&gb).map(|(u, v)| u * v).sum::<f64>();
        (cross, fro2(&ga).sqrt(), fro2(&gb).sqrt())
    } else {
        (
            fro2(&b.t().dot(&a)),
            fro2(&a.t().dot(&a)).sqrt(),
            fro2(&b.t().dot(&b)).sqrt(),
        )
    };
    if self_a == 0.0 || self_b == 0.0 {
        return Err(Error::invalid(
            "CKA inputs",
            "an input has identical rows (zero variance): CKA is undefined",
        ));
    }
    Ok(cross / (self_a * self_b))
}
