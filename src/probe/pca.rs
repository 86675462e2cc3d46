//! Principal component analysis (f64 inside): an exact eigendecomposition (linfa-linalg) of the
//! smaller of the covariance and Gram matrices when that is at most [`EXACT_MAX`] wide or few
//! components are not few enough for LOBPCG; linfa-reduction's `Pca` (truncated SVD by LOBPCG)
//! for larger inputs.
//!
//! LOBPCG is fragile: with 5·n_components > min(n, d) linfa's solver can return unconverged
//! results without an error (2 components of 3 features: singular values 3.07, 1.44 instead of
//! 4.24, 2.83), and on real hidden states with a few huge outlier dimensions (SmolLM2's residual
//! stream) it panics on NaNs. A panic there falls back to the exact path.
use super::input;
use crate::error::{Error, Result};
use linfa::DatasetBase;
use linfa::traits::{Fit, Predict};
use linfa_linalg::eigh::{EigSort, Eigh};
use linfa_reduction::Pca;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, s};

/// Largest covariance / Gram matrix side decomposed exactly (a 2048² eigendecomposition takes
/// seconds); larger inputs go through LOBPCG.
pub const EXACT_MAX: usize = 2048;

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
    let k = n_components;
    if k == 0 || k > n.min(d) {
        return Err(Error::invalid(
            "PCA components",
            format!(
                "must be between 1 and min(rows, columns) = {}, got {k}",
                n.min(d)
            ),
        ));
    }
    let x = x.mapv(f64::from);
    let mean = x.mean_axis(Axis(0)).unwrap_or_default();
    let centred = &x - &mean;
    let total: f64 = centred.iter().map(|v| v * v).sum();
    if total == 0.0 {
        return Err(Error::invalid(
            "PCA input",
            "all rows are identical (zero variance)",
        ));
    }
    let (mut coords, variances, loadings) = if 5 * k <= n.min(d) && n.min(d) > EXACT_MAX {
        let solved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lobpcg(x, k)));
        match solved {
            Ok(Ok(parts)) => parts,
            Ok(Err(_)) | Err(_) => exact(&centred, k)?,
        }
    } else {
        exact(&centred, k)?
    };
    for (c, lead) in loadings.iter().enumerate() {
        if *lead < 0.0 {
            coords.column_mut(c).mapv_inplace(|v| -v);
        }
    }
    Ok(Projection {
        coords: coords.mapv(|v| v as f32),
        explained_variance_ratio: variances.iter().map(|v| v.max(0.0) / total).collect(),
    })
}

/// Coordinates, sums of squares along each component, and each component's largest-magnitude
/// loading (its sign decides the orientation).
type Parts = (Array2<f64>, Vec<f64>, Vec<f64>);

fn lobpcg(x: Array2<f64>, k: usize) -> Result<Parts> {
    let data = DatasetBase::from(x);
    let model = Pca::params(k)
        .fit(&data)
        .map_err(|e| Error::invalid("PCA input", format!("linfa PCA failed: {e}")))?;
    let coords = model.predict(data.records());
    let variances = model.singular_values().iter().map(|s| s * s).collect();
    let leads = model.components().rows().into_iter().map(largest).collect();
    Ok((coords, variances, leads))
}

fn exact(centred: &Array2<f64>, k: usize) -> Result<Parts> {
    let eig = |m: Array2<f64>| -> Result<(Array1<f64>, Array2<f64>)> {
        let (values, vectors) = m
            .eigh()
            .map_err(|e| Error::Internal(format!("PCA eigendecomposition failed: {e}")))?
            .sort_eig_desc();
        Ok((
            values.slice(s![..k]).to_owned(),
            vectors.slice(s![.., ..k]).to_owned(),
        ))
    };
    if centred.nrows() >= centred.ncols() {
        let (values, components) = eig(centred.t().dot(centred))?;
        let leads = components.columns().into_iter().map(largest).collect();
        Ok((centred.dot(&components), values.to_vec(), leads))
    } else {
        // Gram matrix: coordinates are u·√λ, loadings ∝ Xᵀu
        let (values, u) = eig(centred.dot(&centred.t()))?;
        let leads = centred
            .t()
            .dot(&u)
            .columns()
            .into_iter()
            .map(largest)
            .collect();
        let mut coords = u;
        for (mut col, v) in coords.columns_mut().into_iter().zip(&values) {
            col *= v.max(0.0).sqrt();
        }
        Ok((coords, values.to_vec(), leads))
    }
}

/// The entry of largest magnitude (0 for an empty or zero vector).
fn largest(v: ArrayView1<'_, f64>) -> f64 {
    v.iter()
        .fold(0.0, |m, &x| if x.abs() > m.abs() { x } else { m })
}
