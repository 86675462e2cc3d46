//! t-SNE: reproducibility, separation of clusters, agreement with the linfa-tsne reference,
//! the exact KL divergence by hand, and parameter errors.
use linfa::traits::Transformer;
use mixprobe::probe::metrics::trustworthiness;
use mixprobe::probe::tsne::{Affinities, TsneInit, TsneParams, tsne};
use mixprobe::util::rng;
use ndarray::{Array2, ArrayView2, array};
use rand::Rng;
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;

/// `per` points per blob, 3 blobs in 10-D with centres 12 apart and unit-ish noise.
fn blobs(per: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut r = rng(seed, "tsne-test-blobs");
    let mut normal = move || {
        let (u, v): (f32, f32) = (1.0 - r.random::<f32>(), r.random());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let x = Array2::from_shape_fn((3 * per, 10), |(i, j)| {
        let blob = i / per;
        let centre = if j == blob { 12.0 } else { 0.0 };
        centre + normal()
    });
    (x, (0..3 * per).map(|i| i / per).collect())
}

/// Share of each point's k nearest map neighbours (itself excluded) with its own label.
fn knn_agreement(y: ArrayView2<'_, f32>, labels: &[usize], k: usize) -> f64 {
    let n = y.nrows();
    let mut same = 0usize;
    for i in 0..n {
        let mut d: Vec<(f32, usize)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| {
                (
                    (y[[i, 0]] - y[[j, 0]]).powi(2) + (y[[i, 1]] - y[[j, 1]]).powi(2),
                    j,
                )
            })
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        same += d[..k]
            .iter()
            .filter(|(_, j)| labels[*j] == labels[i])
            .count();
    }
    same as f64 / (n * k) as f64
}

#[test]
fn seeded_runs_are_identical_for_any_thread_count() {
    let (x, _) = blobs(40, 1);
    let params = TsneParams {
        perplexity: 10.0,
        seed: 7,
        threads: 1,
        ..TsneParams::default()
    };
    let a = tsne(x.view(), &params).unwrap();
    let b = tsne(x.view(), &params).unwrap();
    assert_eq!(a.embedding, b.embedding);
    assert_eq!(a.kl_divergence, b.kl_divergence);
    let c = tsne(
        x.view(),
        &TsneParams {
            threads: 2,
            ..params.clone()
        },
    )
    .unwrap();
    assert_eq!(a.embedding, c.embedding);
    let d = tsne(x.view(), &TsneParams { seed: 8, ..params }).unwrap();
    assert_ne!(a.embedding, d.embedding);
    assert_eq!(a.embedding.dim(), (120, 2));
    assert!(a.embedding.iter().all(|v| v.is_finite()));
}

#[test]
fn separates_blobs_and_agrees_with_linfa_tsne() {
    let (x, labels) = blobs(100, 2);
    let params = TsneParams {
        perplexity: 30.0,
        seed: 3,
        ..TsneParams::default()
    };
    let ours = tsne(x.view(), &params).unwrap();
    let reference =
        linfa_tsne::TSneParams::embedding_size_with_rng(2, Xoshiro256Plus::seed_from_u64(3))
            .perplexity(30.0)
            .approx_threshold(0.5)
            .max_iter(1000)
            .transform(x.mapv(f64::from))
            .unwrap()
            .mapv(|v| v as f32);

    let p = Affinities::new(x.view(), 30.0).unwrap();
    let kl_ours = p.kl_divergence(ours.embedding.view()).unwrap();
    let kl_linfa = p.kl_divergence(reference.view()).unwrap();
    assert!(
        (kl_ours - ours.kl_divergence).abs() < 1e-5,
        "{kl_ours} vs {}",
        ours.kl_divergence
    );

    let agree_ours = knn_agreement(ours.embedding.view(), &labels, 10);
    let agree_linfa = knn_agreement(reference.view(), &labels, 10);
    let trust_ours = trustworthiness(x.view(), ours.embedding.view(), 10).unwrap();
    let trust_linfa = trustworthiness(x.view(), reference.view(), 10).unwrap();
    eprintln!(
        "ours: kNN agreement {agree_ours:.4}, trustworthiness {trust_ours:.4}, KL {kl_ours:.4}; \
         linfa-tsne: {agree_linfa:.4}, {trust_linfa:.4}, {kl_linfa:.4}"
    );
    assert!(agree_ours >= 0.95 && agree_linfa >= 0.95);
    assert!((trust_ours - trust_linfa).abs() <= 0.02);
    assert!(kl_ours <= kl_linfa * 1.05);
}

#[test]
fn exact_kl_by_hand() {
    // 1-D points 0, 1, 3, 7 at perplexity 1: each point's conditional mass sits on its
    // nearest neighbour (0→1, 1→0, 3→1, 7→3), so p01 = 2/8 and p12 = p23 = 1/8 (each both ways)
    let x = array![[0.0f32], [1.0], [3.0], [7.0]];
    let p = Affinities::new(x.view(), 1.0).unwrap();
    let (cols, vals) = p.row(1).unwrap();
    assert_eq!(cols, &[0, 2, 3]);
    assert!((vals[0] - 0.25).abs() < 1e-6 && (vals[1] - 0.125).abs() < 1e-6 && vals[2] < 1e-6);
    assert!(p.row(4).is_none());

    let y = array![[0.0f32, 0.0], [1.0, 0.0], [1.0, 2.0], [-1.0, 3.0]];
    let w = |i: usize, j: usize| {
        1.0 / (1.0
            + f64::from(y[[i, 0]] - y[[j, 0]]).powi(2)
            + f64::from(y[[i, 1]] - y[[j, 1]]).powi(2))
    };
    let z: f64 = (0..4)
        .flat_map(|i| (0..4).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| w(i, j))
        .sum();
    let term = |pij: f64, i, j| 2.0 * pij * (pij / (w(i, j) / z)).ln();
    let want = term(0.25, 0, 1) + term(0.125, 1, 2) + term(0.125, 2, 3);
    let got = p.kl_divergence(y.view()).unwrap();
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
}

/// Regression: duplicated rows (identical prompts give identical embeddings; 54 of 5,000 in the
/// real benchmark input) made the exact KL NaN, because affinities that underflow to 0 gave
/// 0 · ln 0. The map itself and the KL must stay finite.
#[test]
fn duplicate_points_give_a_finite_kl() {
    let (mut x, _) = blobs(20, 5);
    // Eight copies of one point: more than the perplexity (5) of identical neighbours.
    let row = x.row(0).to_owned();
    for i in 1..8 {
        x.row_mut(i).assign(&row);
    }
    let p = Affinities::new(x.view(), 5.0).unwrap();
    let params = TsneParams {
        perplexity: 5.0,
        ..TsneParams::default()
    };
    let out = tsne(x.view(), &params).unwrap();
    assert!(out.embedding.iter().all(|v| v.is_finite()));
    let kl = p.kl_divergence(out.embedding.view()).unwrap();
    assert!(kl.is_finite() && kl >= 0.0, "KL {kl}");
}

#[test]
fn affinities_are_symmetric_and_sum_to_one() {
    let (x, _) = blobs(30, 4);
    let p = Affinities::new(x.view(), 5.0).unwrap();
    assert_eq!(p.len(), 90);
    let mut total = 0.0;
    for i in 0..p.len() {
        let (cols, vals) = p.row(i).unwrap();
        assert!(
            cols.len() >= 15 && cols.windows(2).all(|w| w[0] < w[1]) && !cols.contains(&(i as u32))
        );
        for (&j, &v) in cols.iter().zip(vals) {
            let (back_cols, back_vals) = p.row(j as usize).unwrap();
            let at = back_cols.binary_search(&(i as u32)).expect("symmetric");
            assert_eq!(back_vals[at], v);
            total += f64::from(v);
        }
    }
    assert!((total - 1.0).abs() < 1e-6);
}

#[test]
fn parameters_are_checked() {
    let (x, _) = blobs(10, 5);
    let err = |params: TsneParams, x: ArrayView2<'_, f32>, needle: &str| {
        let e = tsne(x, &params).expect_err("should fail").to_string();
        assert!(e.contains(needle), "{e:?} should mention {needle:?}");
    };
    let d = TsneParams::default;
    err(
        TsneParams {
            perplexity: 10.0,
            ..d()
        },
        x.view(),
        "3 × perplexity must be at most n - 1",
    );
    err(
        TsneParams {
            perplexity: 0.5,
            ..d()
        },
        x.view(),
        "perplexity",
    );
    err(
        TsneParams {
            perplexity: f64::NAN,
            ..d()
        },
        x.view(),
        "perplexity",
    );
    let p = |q: TsneParams| TsneParams {
        perplexity: 5.0,
        ..q
    };
    err(p(TsneParams { theta: -0.1, ..d() }), x.view(), "theta");
    err(
        p(TsneParams {
            learning_rate: Some(0.0),
            ..d()
        }),
        x.view(),
        "learning rate",
    );
    err(
        p(TsneParams {
            final_momentum: 1.0,
            ..d()
        }),
        x.view(),
        "final momentum",
    );
    err(
        p(TsneParams {
            early_exaggeration: 0.5,
            ..d()
        }),
        x.view(),
        "early exaggeration",
    );
    err(
        p(TsneParams {
            max_step_norm: Some(-1.0),
            ..d()
        }),
        x.view(),
        "max step norm",
    );
    let one_col = x.slice(ndarray::s![.., ..1]).to_owned();
    err(p(d()), one_col.view(), "PCA initialisation");
    assert!(
        tsne(
            one_col.view(),
            &p(TsneParams {
                init: TsneInit::Random,
                iterations: 50,
                ..d()
            })
        )
        .is_ok()
    );
    let mut nan = x.clone();
    nan[[2, 3]] = f32::INFINITY;
    err(p(d()), nan.view(), "row 2, column 3");
    let pa = Affinities::new(x.view(), 5.0).unwrap();
    assert!(pa.kl_divergence(x.view()).is_err());
    assert!(
        pa.kl_divergence(Array2::<f32>::zeros((29, 2)).view())
            .is_err()
    );
    assert!(Affinities::new(x.view(), 11.0).is_err());
}
