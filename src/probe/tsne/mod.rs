//! Multithreaded Barnes–Hut t-SNE to 2-D, with openTSNE's defaults, reproducible for a seed
//! (also across thread counts), and its exact final KL divergence.
//!
//! Steps: exact k-nearest neighbours (k = ⌊3·perplexity⌋) → perplexity-calibrated sparse
//! affinities P ([`Affinities`]) → PCA initialisation scaled to standard deviation 1e-4 plus
//! seeded jitter → gradient descent with momentum and per-coordinate gains: an early-
//! exaggeration phase, then the main phase. Repulsive forces use a Barnes–Hut quadtree
//! (opening angle θ), attractive forces the sparse P, both in parallel with rayon. The gradient
//! omits the constant factor 4 and the "auto" learning rate is n / exaggeration, as openTSNE.
mod affinity;
mod quadtree;

pub use affinity::Affinities;

use super::distance::Points;
use super::input;
use super::pca::pca;
use crate::error::{Error, Result};
use crate::util::{Rng, rng};
use ndarray::{Array2, ArrayView2};
use quadtree::QuadTree;
use rand::Rng as _;
use rayon::prelude::*;

/// Minimal per-coordinate gain (added after the 0.8 decay, as openTSNE).
const MIN_GAIN: f64 = 0.01;
/// Standard deviation of the rescaled initial map, and relative size of the seeded jitter.
const INIT_STD: f64 = 1e-4;
const JITTER: f64 = 0.01;

/// How the map is initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsneInit {
    /// The first two principal components (needs at least 2 input columns).
    Pca,
    /// Gaussian noise.
    Random,
}

/// t-SNE hyperparameters; [`Default`] gives openTSNE 1.0's defaults. Checked by
/// [`TsneParams::check`] (called by [`tsne`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TsneParams {
    /// Effective number of neighbours (>= 1 and at most (n - 1) / 3). Default 30.
    pub perplexity: f64,
    /// Factor on P during the first phase (>= 1). Default 12.
    pub early_exaggeration: f64,
    /// Iterations of the early-exaggeration phase. Default 250.
    pub early_exaggeration_iterations: usize,
    /// Iterations of the main phase (exaggeration 1). Default 500.
    pub iterations: usize,
    /// Step size; `None` = n / exaggeration in each phase (openTSNE's "auto"). Default None.
    pub learning_rate: Option<f64>,
    /// Momentum of the early-exaggeration phase, in [0, 1). Default 0.8.
    pub initial_momentum: f64,
    /// Momentum of the main phase, in [0, 1). Default 0.8.
    pub final_momentum: f64,
    /// Barnes–Hut opening angle (>= 0; 0 = exact, O(n²) per iteration). Default 0.5.
    pub theta: f64,
    /// Largest step of one point per iteration (`None` = no limit). Default Some(5).
    pub max_step_norm: Option<f64>,
    /// Initialisation. Default PCA.
    pub init: TsneInit,
    /// Seed of the initial jitter / random initialisation. Default 0.
    pub seed: u64,
    /// Worker threads; 0 = the current rayon pool (`RAYON_NUM_THREADS` or all cores). The
    /// result does not depend on it. Default 0.
    pub threads: usize,
}

impl Default for TsneParams {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            early_exaggeration: 12.0,
            early_exaggeration_iterations: 250,
            iterations: 500,
            learning_rate: None,
            initial_momentum: 0.8,
            final_momentum: 0.8,
            theta: 0.5,
            max_step_norm: Some(5.0),
            init: TsneInit::Pca,
            seed: 0,
            threads: 0,
        }
    }
}

impl TsneParams {
    /// Check the parameters for an input of `n` examples with `d` features.
    pub fn check(&self, n: usize, d: usize) -> Result<()> {
        affinity::neighbours(self.perplexity, n)?;
        let positive = |what: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(
                    what,
                    format!("must be a positive number, got {v}"),
                ))
            }
        };
        if !(self.early_exaggeration.is_finite() && self.early_exaggeration >= 1.0) {
            return Err(Error::invalid(
                "early exaggeration",
                format!("must be a number >= 1, got {}", self.early_exaggeration),
            ));
        }
        if let Some(lr) = self.learning_rate {
            positive("learning rate", lr)?;
        }
        if let Some(s) = self.max_step_norm {
            positive("max step norm", s)?;
        }
        for (what, m) in [
            ("initial momentum", self.initial_momentum),
            ("final momentum", self.final_momentum),
        ] {
            if !(0.0..1.0).contains(&m) {
                return Err(Error::invalid(what, format!("must be in [0, 1), got {m}")));
            }
        }
        if !(self.theta.is_finite() && self.theta >= 0.0) {
            return Err(Error::invalid(
                "theta",
                format!("must be a number >= 0, got {}", self.theta),
            ));
        }
        if self.init == TsneInit::Pca && d < 2 {
            return Err(Error::invalid(
                "t-SNE init",
                "PCA initialisation needs at least 2 input columns; use random",
            ));
        }
        Ok(())
    }
}

/// A t-SNE map.
#[derive(Debug, Clone)]
pub struct TsneOutput {
    /// `[n, 2]` map coordinates, one row per example.
    pub embedding: Array2<f32>,
    /// Exact KL(P‖Q) of the final map (see [`Affinities::kl_divergence`]).
    pub kl_divergence: f64,
}

/// Embed the rows of `x` in 2-D with t-SNE.
pub fn tsne(x: ArrayView2<'_, f32>, params: &TsneParams) -> Result<TsneOutput> {
    input::matrix("t-SNE input", x, 2)?;
    params.check(x.nrows(), x.ncols())?;
    if params.threads == 0 {
        return run(x, params);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(params.threads)
        .build()
        .map_err(|e| Error::Internal(format!("starting {} t-SNE threads: {e}", params.threads)))?
        .install(|| run(x, params))
}

fn run(x: ArrayView2<'_, f32>, params: &TsneParams) -> Result<TsneOutput> {
    let n = x.nrows();
    let k = affinity::neighbours(params.perplexity, n)?;
    let p = Affinities::from_knn(&Points::new(x).knn(k), params.perplexity);
    let mut y = initial_map(x, params)?;
    let mut opt = Optimizer {
        update: vec![[0.0; 2]; n],
        gains: vec![[1.0; 2]; n],
    };
    let phases = [
        (
            params.early_exaggeration,
            params.early_exaggeration_iterations,
            params.initial_momentum,
        ),
        (1.0, params.iterations, params.final_momentum),
    ];
    for (exaggeration, iterations, momentum) in phases {
        let lr = params.learning_rate.unwrap_or(n as f64 / exaggeration);
        for _ in 0..iterations {
            let grad = gradient(&p, &y, exaggeration, params.theta);
            opt.step(&mut y, &grad, lr, momentum, params.max_step_norm);
        }
    }
    let kl_divergence = p.exact_kl(&y);
    let embedding = Array2::from_shape_fn((n, 2), |(i, a)| y[i][a] as f32);
    Ok(TsneOutput {
        embedding,
        kl_divergence,
    })
}

/// The starting map: PCA (rescaled so its first column has standard deviation 1e-4) plus
/// jitter of 1% of that, or Gaussian noise of standard deviation 1e-4.
fn initial_map(x: ArrayView2<'_, f32>, params: &TsneParams) -> Result<Vec<[f64; 2]>> {
    let mut r = rng(params.seed, "tsne-init");
    match params.init {
        TsneInit::Random => Ok((0..x.nrows())
            .map(|_| [INIT_STD * normal(&mut r), INIT_STD * normal(&mut r)])
            .collect()),
        TsneInit::Pca => {
            let proj = pca(x, 2)?.coords;
            let col0: Vec<f64> = proj.column(0).iter().map(|&v| f64::from(v)).collect();
            let mean = col0.iter().sum::<f64>() / col0.len() as f64;
            let std =
                (col0.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / col0.len() as f64).sqrt();
            if std == 0.0 {
                return Err(Error::invalid(
                    "t-SNE input",
                    "all rows are identical (zero variance)",
                ));
            }
            let scale = INIT_STD / std;
            Ok(proj
                .rows()
                .into_iter()
                .map(|row| {
                    [
                        f64::from(row[0]) * scale + JITTER * INIT_STD * normal(&mut r),
                        f64::from(row[1]) * scale + JITTER * INIT_STD * normal(&mut r),
                    ]
                })
                .collect())
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(r: &mut Rng) -> f64 {
    let u: f64 = 1.0 - r.random::<f64>();
    let v: f64 = r.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Gradient of KL(P‖Q) without the factor 4: `exaggeration · Σ_j p_ij w_ij (y_i - y_j)
/// - Σ_j w_ij² (y_i - y_j) / Z`, repulsion by Barnes–Hut.
fn gradient(p: &Affinities, y: &[[f64; 2]], exaggeration: f64, theta: f64) -> Vec<[f64; 2]> {
    let n = y.len();
    let repulsion = QuadTree::new(y, theta).repulsion();
    // each point's interaction with itself adds 1 to its sum: Z is over pairs i != j
    let z = repulsion.iter().map(|r| r.sum_w).sum::<f64>() - n as f64;
    let z = z.max(f64::MIN_POSITIVE);
    (0..n)
        .into_par_iter()
        .with_min_len(64)
        .map(|i| {
            let [ax, ay] = p.attraction(y, i);
            [
                exaggeration * ax - repulsion[i].fx / z,
                exaggeration * ay - repulsion[i].fy / z,
            ]
        })
        .collect()
}

/// Gradient descent with momentum and delta-bar-delta gains (as openTSNE).
struct Optimizer {
    update: Vec<[f64; 2]>,
    gains: Vec<[f64; 2]>,
}

impl Optimizer {
    fn step(
        &mut self,
        y: &mut [[f64; 2]],
        grad: &[[f64; 2]],
        lr: f64,
        momentum: f64,
        max_step: Option<f64>,
    ) {
        let sign = |v: f64| (v > 0.0) as i8 - (v < 0.0) as i8;
        let mut mean = [0.0; 2];
        for ((yi, gi), (ui, ki)) in y
            .iter_mut()
            .zip(grad)
            .zip(self.update.iter_mut().zip(self.gains.iter_mut()))
        {
            for a in 0..2 {
                ki[a] = if sign(ui[a]) != sign(gi[a]) {
                    ki[a] + 0.2
                } else {
                    ki[a] * 0.8 + MIN_GAIN
                };
                ui[a] = momentum * ui[a] - lr * ki[a] * gi[a];
            }
            if let Some(m) = max_step {
                let norm = (ui[0] * ui[0] + ui[1] * ui[1]).sqrt();
                if norm > m {
                    ui[0] *= m / norm;
                    ui[1] *= m / norm;
                }
            }
            for a in 0..2 {
                yi[a] += ui[a];
                mean[a] += yi[a];
            }
        }
        let len = y.len() as f64;
        for yi in y.iter_mut() {
            yi[0] -= mean[0] / len;
            yi[1] -= mean[1] / len;
        }
    }
}
