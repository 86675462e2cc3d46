//! Validation of the probes' inputs: matrices (rows = examples) and label vectors.
use crate::error::{Error, Result};
use ndarray::ArrayView2;

/// Check that `x` (named `what` in errors) has at least `min_rows` rows, at least one column
/// and only finite values.
pub(crate) fn matrix(what: &str, x: ArrayView2<'_, f32>, min_rows: usize) -> Result<()> {
    let (n, d) = x.dim();
    if n < min_rows {
        return Err(Error::invalid(
            what,
            format!("needs at least {min_rows} rows (examples), got {n}"),
        ));
    }
    if d == 0 {
        return Err(Error::invalid(what, "has no columns (features)"));
    }
    for ((r, c), v) in x.indexed_iter() {
        if !v.is_finite() {
            return Err(Error::invalid(
                what,
                format!("row {r}, column {c} is {v}, expected a finite number"),
            ));
        }
    }
    Ok(())
}

/// Check that `x` and `y` have the same number of rows.
pub(crate) fn same_rows(what: &str, x: usize, y: usize) -> Result<()> {
    if x != y {
        return Err(Error::invalid(
            what,
            format!("the two inputs must describe the same examples: {x} rows vs {y}"),
        ));
    }
    Ok(())
}

/// Labels mapped to dense ids `0..n_classes` (in increasing order of the original values).
pub(crate) struct Dense {
    /// Dense id of each example.
    pub ids: Vec<usize>,
    /// Original label value of each dense id.
    pub values: Vec<usize>,
}

impl Dense {
    /// Number of distinct labels.
    pub fn n_classes(&self) -> usize {
        self.values.len()
    }

    /// Number of examples per dense id.
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.n_classes()];
        for &i in &self.ids {
            c[i] += 1;
        }
        c
    }
}

/// Map `labels` (one per row of an `n`-row matrix, named `what` in errors) to dense ids.
pub(crate) fn labels(what: &str, labels: &[usize], n: usize) -> Result<Dense> {
    if labels.len() != n {
        return Err(Error::invalid(
            what,
            format!("expected one label per example ({n}), got {}", labels.len()),
        ));
    }
    let mut values = labels.to_vec();
    values.sort_unstable();
    values.dedup();
    let ids = labels
        .iter()
        .map(|l| values.binary_search(l).unwrap_or_default())
        .collect();
    Ok(Dense { ids, values })
}

/// Check the sklearn rule for cluster-quality scores: 2 <= number of labels <= n - 1.
pub(crate) fn cluster_count(what: &str, dense: &Dense, n: usize) -> Result<()> {
    let c = dense.n_classes();
    if c < 2 || c + 1 > n {
        return Err(Error::invalid(
            what,
            format!(
                "needs between 2 and n - 1 = {} distinct labels, got {c}",
                n.saturating_sub(1)
            ),
        ));
    }
    Ok(())
}
