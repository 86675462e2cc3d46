//! k-means clustering via linfa-clustering, seeded and reproducible.
use super::input;
use crate::error::{Error, Result};
use linfa::DatasetBase;
use linfa::traits::{Fit, Predict};
use linfa_clustering::KMeans;
use ndarray::ArrayView2;
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;

/// Cluster the rows of `x` into `k` clusters with k-means (k-means++ initialisation, the best
/// of linfa's 10 runs by inertia) and return each row's cluster id in `0..k`. The same seed
/// gives the same labels. Needs `1 <= k <= n`.
pub fn kmeans(x: ArrayView2<'_, f32>, k: usize, seed: u64) -> Result<Vec<usize>> {
    input::matrix("k-means input", x, 1)?;
    let n = x.nrows();
    if k == 0 || k > n {
        return Err(Error::invalid(
            "k",
            format!("must be between 1 and the number of rows {n}, got {k}"),
        ));
    }
    let data = DatasetBase::from(x.mapv(f64::from));
    let model = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(seed))
        .fit(&data)
        .map_err(|e| Error::invalid("k-means input", format!("linfa k-means failed: {e}")))?;
    Ok(model.predict(data.records()).to_vec())
}
