//! t-SNE input affinities P (perplexity-calibrated Gaussians on the exact k nearest neighbours,
//! symmetrised, summing to 1) and the exact KL divergence of a 2-D map against them.
use super::super::distance::{Knn, Points};
use super::super::input;
use crate::error::{Error, Result};
use ndarray::ArrayView2;
use rayon::prelude::*;

/// Binary-search tolerance on each row's entropy (nats) and iteration cap, as openTSNE.
const ENTROPY_TOL: f64 = 1e-8;
const MAX_SEARCH: usize = 200;

/// Symmetric sparse affinities `p_ij` between examples (CSR, each row's columns ascending), the
/// t-SNE target distribution: `p_ij = (p_j|i + p_i|j) / 2n`, where `p_j|i` is a Gaussian on the
/// squared distance whose width gives row `i` the requested perplexity, restricted to the
/// `min(n - 1, ⌊3·perplexity⌋)` exact nearest neighbours (as openTSNE and BH-SNE).
#[derive(Debug, Clone)]
pub struct Affinities {
    offsets: Vec<usize>,
    /// Column indices (u32 and f32 values halve the memory streamed per iteration).
    cols: Vec<u32>,
    vals: Vec<f32>,
}

impl Affinities {
    /// Affinities of the rows of `x` at `perplexity` (checked: `1 <= perplexity`,
    /// `3·perplexity <= n - 1`).
    pub fn new(x: ArrayView2<'_, f32>, perplexity: f64) -> Result<Self> {
        input::matrix("t-SNE input", x, 2)?;
        let k = neighbours(perplexity, x.nrows())?;
        Ok(Self::from_knn(&Points::new(x).knn(k), perplexity))
    }

    /// Affinities from precomputed neighbours (`perplexity` already checked).
    pub(super) fn from_knn(knn: &Knn, perplexity: f64) -> Self {
        let n = knn.indices.len() / knn.k;
        let cond: Vec<Vec<f64>> = (0..n)
            .into_par_iter()
            .map(|i| conditional(&knn.sq_dists[i * knn.k..(i + 1) * knn.k], perplexity))
            .collect();
        let mut rows: Vec<Vec<(u32, f64)>> = vec![Vec::with_capacity(2 * knn.k); n];
        for (i, p) in cond.iter().enumerate() {
            for (&j, &v) in knn.of(i).iter().zip(p) {
                // n <= u32::MAX is checked by `neighbours`
                rows[i].push((j as u32, v));
                rows[j].push((i as u32, v));
            }
        }
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        let (mut cols, mut vals) = (Vec::new(), Vec::new());
        for mut row in rows {
            row.sort_unstable_by_key(|e| e.0);
            for (j, v) in row {
                if cols.len() > *offsets.last().unwrap_or(&0) && cols.last() == Some(&j) {
                    if let Some(last) = vals.last_mut() {
                        *last += v;
                    }
                } else {
                    cols.push(j);
                    vals.push(v);
                }
            }
            offsets.push(cols.len());
        }
        let total: f64 = vals.iter().sum();
        let vals = vals.iter().map(|v| (v / total) as f32).collect();
        Self {
            offsets,
            cols,
            vals,
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Always false: affinities are built from at least two examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of stored (nonzero) `p_ij`.
    pub fn nnz(&self) -> usize {
        self.vals.len()
    }

    /// Row `i`: its neighbours' indices (ascending) and their `p_ij`; None when `i >= len()`.
    pub fn row(&self, i: usize) -> Option<(&[u32], &[f32])> {
        (i < self.len()).then(|| self.entries(i))
    }

    /// Row `i < len()`.
    pub(super) fn entries(&self, i: usize) -> (&[u32], &[f32]) {
        let r = self.offsets[i]..self.offsets[i + 1];
        (&self.cols[r.clone()], &self.vals[r])
    }

    /// The attraction on point `i` of the map `y`: `Σ_j p_ij (y_i - y_j) / (1 + |y_i - y_j|²)`,
    /// summed in `LANES` independent partial sums (so the arithmetic vectorises).
    pub(super) fn attraction(&self, y: &[[f64; 2]], i: usize) -> [f64; 2] {
        const LANES: usize = 4;
        let (cols, vals) = self.entries(i);
        let [xi, yi] = y[i];
        let (mut ax, mut ay) = ([0.0; LANES], [0.0; LANES]);
        let (mut dx, mut dy) = ([0.0; LANES], [0.0; LANES]);
        let (col_chunks, val_chunks) = (cols.chunks_exact(LANES), vals.chunks_exact(LANES));
        let rest = col_chunks.remainder().iter().zip(val_chunks.remainder());
        for (c, v) in col_chunks.zip(val_chunks) {
            for l in 0..LANES {
                let q = y[c[l] as usize];
                dx[l] = xi - q[0];
                dy[l] = yi - q[1];
            }
            for l in 0..LANES {
                let pw = f64::from(v[l]) / (1.0 + dx[l] * dx[l] + dy[l] * dy[l]);
                ax[l] += pw * dx[l];
                ay[l] += pw * dy[l];
            }
        }
        for (&j, &p) in rest {
            let (dx, dy) = (xi - y[j as usize][0], yi - y[j as usize][1]);
            let pw = f64::from(p) / (1.0 + dx * dx + dy * dy);
            ax[0] += pw * dx;
            ay[0] += pw * dy;
        }
        [ax.iter().sum(), ay.iter().sum()]
    }

    /// Exact KL(P‖Q) of a 2-D map `y` (one row per example, e.g. another tool's t-SNE output):
    /// `Σ p_ij ln(p_ij / q_ij)` with `q_ij = (1 + |y_i - y_j|²)⁻¹ / Z` normalised over all pairs
    /// `i ≠ j` (O(n²), no Barnes–Hut approximation).
    pub fn kl_divergence(&self, y: ArrayView2<'_, f32>) -> Result<f64> {
        input::matrix("t-SNE map", y, 2)?;
        input::same_rows("t-SNE map and affinities", y.nrows(), self.len())?;
        if y.ncols() != 2 {
            return Err(Error::invalid(
                "t-SNE map",
                format!("expected 2 columns, got {}", y.ncols()),
            ));
        }
        let pts: Vec<[f64; 2]> = y
            .rows()
            .into_iter()
            .map(|r| [f64::from(r[0]), f64::from(r[1])])
            .collect();
        Ok(self.exact_kl(&pts))
    }

    /// Exact KL divergence of the map `y` (see [`Affinities::kl_divergence`]); deterministic
    /// (per-row partial sums added in row order).
    pub(super) fn exact_kl(&self, y: &[[f64; 2]]) -> f64 {
        let w =
            |a: [f64; 2], b: [f64; 2]| 1.0 / (1.0 + (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2));
        let per_row: Vec<(f64, f64)> = (0..y.len())
            .into_par_iter()
            .map(|i| {
                let z: f64 = y[i + 1..].iter().map(|&b| w(y[i], b)).sum();
                let (cols, vals) = self.entries(i);
                let pl: f64 = cols
                    .iter()
                    .zip(vals)
                    // p ln p → 0 as p → 0: an affinity that underflowed to 0 (duplicate points
                    // push the bandwidth search to huge precisions) adds nothing, not 0·ln 0 = NaN.
                    .filter(|&(_, &p)| p > 0.0)
                    .map(|(&j, &p)| f64::from(p) * (f64::from(p) / w(y[i], y[j as usize])).ln())
                    .sum();
                (z, pl)
            })
            .collect();
        let z = 2.0 * per_row.iter().map(|r| r.0).sum::<f64>();
        per_row.iter().map(|r| r.1).sum::<f64>() + z.ln()
    }
}

/// Neighbours used for `perplexity` with `n` examples, or an error naming the limits.
pub(super) fn neighbours(perplexity: f64, n: usize) -> Result<usize> {
    if !perplexity.is_finite() || perplexity < 1.0 {
        return Err(Error::invalid(
            "perplexity",
            format!("must be a number >= 1, got {perplexity}"),
        ));
    }
    if u32::try_from(n).is_err() {
        return Err(Error::invalid(
            "t-SNE input",
            format!("{n} examples: at most {} supported", u32::MAX),
        ));
    }
    if 3.0 * perplexity > (n as f64 - 1.0) {
        return Err(Error::invalid(
            "perplexity",
            format!(
                "{perplexity} is too large for {n} examples: 3 × perplexity must be at most n - 1 (perplexity <= {:.2})",
                (n as f64 - 1.0) / 3.0
            ),
        ));
    }
    Ok(((3.0 * perplexity) as usize).min(n - 1))
}

/// `p_j|i` over one row's neighbours (squared distances ascending), by binary search on the
/// Gaussian precision until the entropy equals ln(perplexity).
fn conditional(sq: &[f64], perplexity: f64) -> Vec<f64> {
    let target = perplexity.ln();
    let d0 = sq.first().copied().unwrap_or(0.0);
    let mut p = vec![0.0; sq.len()];
    let (mut beta, mut lo, mut hi) = (1.0f64, 0.0f64, f64::INFINITY);
    let mut sum = 1.0;
    for _ in 0..MAX_SEARCH {
        sum = 0.0;
        let mut sum_dp = 0.0;
        for (pj, &d) in p.iter_mut().zip(sq) {
            *pj = (-(d - d0) * beta).exp();
            sum += *pj;
            sum_dp += *pj * (d - d0);
        }
        let entropy = sum.ln() + beta * sum_dp / sum;
        let diff = entropy - target;
        if diff.abs() <= ENTROPY_TOL {
            break;
        }
        if diff > 0.0 {
            lo = beta;
            beta = if hi.is_finite() {
                (beta + hi) / 2.0
            } else {
                beta * 2.0
            };
        } else {
            hi = beta;
            beta = (beta + lo) / 2.0;
        }
    }
    p.iter_mut().for_each(|v| *v /= sum);
    p
}
