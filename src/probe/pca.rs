//! Principal component analysis via linfa-reduction (f64 inside).
use super::input;
use crate::error::{Error, Result};
use linfa::DatasetBase;
use linfa::traits::{Fit, Predict};
use linfa_reduction::Pca;
use ndarray::{Array2, ArrayView2, Axis};

/// A projection onto the leading principal components.
#[derive(Debug, Clone)]
pub struct Projection {
    /// `[n, n_components]` coordinates of each example (row), centred.
    pub coords: Array2<f32>,
    /// Fraction of the total variance of the input carried by each component, largest first
    /// (as scikit-learn's `explained_variance_ratio_`; sums to 1 only when all components
    /// are kept).
    pub explained_variance_ratio: Vec<f64>,
}

/// Project the rows of `x` onto their `n_components` leading principal components. Each
/// component's sign is fixed so that its largest-magnitude loading is positive, so the result
/// does not depend on the solver's sign choice. Needs `1 <= n_components <= min(n, d)`.
pub fn pca(x: ArrayView2<'_, f32>, n_components: usize) -> Result<Projection> {
    input::matrix("PCA input", x, 2)?;
    let (n, d) = x.dim();
    if n_components == 0 || n_components > n.min(d) {
        return Err(Error::invalid(
            "PCA components",
            format!("must be between 1 and min(rows, columns) = {}, got {n_components}", n.min(d)),
        ));
    }
    let x = x.mapv(f64::from);
    let mean = x.mean_axis(Axis(0)).unwrap_or_default();
    let total_ss: f64 = (&x - &mean).iter().map(|v| v * v).sum();
    if total_ss == 0.0 {
        return Err(Error::invalid("PCA input", "all rows are identical (zero variance)"));
    }
    let data = DatasetBase::from(x);
    let model = Pca::params(n_components)
        .fit(&data)
        .map_err(|e| Error::invalid("PCA input", format!("linfa PCA failed: {e}")))?;
    let mut coords: Array2<f64> = model.predict(data.records());
    for (c, comp) in model.components().rows().into_iter().enumerate() {
        let lead = comp.iter().fold(0.0f64, |m, &v| if v.abs() > m.abs() { v } else { m });
        if lead < 0.0 {
            coords.column_mut(c).mapv_inplace(|v| -v);
        }
    }
    let explained_variance_ratio =
        model.singular_values().iter().map(|s| s * s / total_ss).collect();
    Ok(Projection { coords: coords.mapv(|v| v as f32), explained_variance_ratio })
}
