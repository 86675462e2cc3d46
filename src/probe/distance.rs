//! Euclidean distances between the rows of a matrix, computed in blocks of rows (matrix products
//! in f64, in parallel), and exact k-nearest neighbours.
use ndarray::{Array2, ArrayView1, ArrayView2, s};
use rayon::prelude::*;

/// Rows per block: a block of distances is `BLOCK × n` f64.
const BLOCK: usize = 128;

/// A matrix's rows in f64 with their squared norms.
pub(crate) struct Points {
    x: Array2<f64>,
    norms: Vec<f64>,
}

/// Exact k nearest neighbours of every row (the row itself excluded), nearest first; ties are
/// broken by the lower row index.
pub(crate) struct Knn {
    /// Neighbours per row.
    pub k: usize,
    /// Row-major `[n, k]` neighbour indices.
    pub indices: Vec<usize>,
    /// Row-major `[n, k]` squared distances, recomputed exactly (not via the norm expansion).
    pub sq_dists: Vec<f64>,
}

impl Knn {
    /// The neighbours of row `i`.
    pub fn of(&self, i: usize) -> &[usize] {
        &self.indices[i * self.k..(i + 1) * self.k]
    }
}

impl Points {
    pub fn new(x: ArrayView2<'_, f32>) -> Self {
        let x = x.mapv(f64::from);
        let norms = x.rows().into_iter().map(|r| r.dot(&r)).collect();
        Self { x, norms }
    }

    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Squared distances from rows `start..end` to every row, `[end - start, n]`, via
    /// `|a|² + |b|² - 2 a·b` (clamped at 0; a row's distance to itself is exactly 0).
    fn sq_dist_block(&self, start: usize, end: usize) -> Array2<f64> {
        let mut g = self.x.slice(s![start..end, ..]).dot(&self.x.t());
        for (r, mut row) in g.rows_mut().into_iter().enumerate() {
            let ni = self.norms[start + r];
            for (v, nj) in row.iter_mut().zip(&self.norms) {
                *v = (ni + nj - 2.0 * *v).max(0.0);
            }
            row[start + r] = 0.0;
        }
        g
    }

    /// `f(i, squared distances from row i to every row)` for every row, in parallel, in row order.
    pub fn map_rows<T: Send>(&self, f: impl Fn(usize, ArrayView1<'_, f64>) -> T + Sync) -> Vec<T> {
        let n = self.len();
        (0..n.div_ceil(BLOCK))
            .into_par_iter()
            .flat_map_iter(|b| {
                let (start, end) = (b * BLOCK, ((b + 1) * BLOCK).min(n));
                let d = self.sq_dist_block(start, end);
                (start..end)
                    .map(|i| f(i, d.row(i - start)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Exact squared distance between rows `i` and `j` (direct differences).
    pub fn sq_dist(&self, i: usize, j: usize) -> f64 {
        self.x
            .row(i)
            .iter()
            .zip(self.x.row(j))
            .map(|(a, b)| (a - b) * (a - b))
            .sum()
    }

    /// The `k` nearest neighbours of every row (`1 <= k < n`, checked by the callers).
    pub fn knn(&self, k: usize) -> Knn {
        let rows = self.map_rows(|i, d| {
            let mut cand: Vec<(f64, usize)> = d
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, &v)| (v, j))
                .collect();
            let order =
                |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            if cand.len() > k {
                cand.select_nth_unstable_by(k - 1, order);
                cand.truncate(k);
            }
            for c in &mut cand {
                c.0 = self.sq_dist(i, c.1);
            }
            cand.sort_unstable_by(order);
            cand
        });
        let mut indices = Vec::with_capacity(rows.len() * k);
        let mut sq_dists = Vec::with_capacity(rows.len() * k);
        for row in rows {
            for (d, j) in row {
                indices.push(j);
                sq_dists.push(d);
            }
        }
        Knn {
            k,
            indices,
            sq_dists,
        }
    }
}
