//! Elementwise f32 loops of the CPU fast paths, written so that they vectorize and run
//! compiled for AVX-512 when the CPU has it ([`vectorized`]; the crate's baseline build is
//! SSE2): a branch-free `exp`, lane-wise reductions, and the inference path's RMSNorm,
//! SwiGLU, residual add and softmax.
//!
//! Reductions use 16 explicit lanes in a fixed order, so a result does not depend on whether
//! the loop ran vectorized.

/// Run `f` compiled with AVX-512 enabled when the CPU has it (detected at run time; the crate's
/// baseline build is SSE2), else as built. The f32 operations are the same either way (no FMA
/// contraction; reductions use explicit lanes), so the results are too.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        #[target_feature(enable = "avx512f")]
        fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU supports AVX-512F (checked just above), the only requirement of a
        // `target_feature` function.
        #[allow(unsafe_code)]
        return unsafe { run(f) };
    }
    f()
}

/// The largest element, over 16 lanes.
#[inline(always)]
pub(crate) fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let c = x.chunks_exact(16);
    let tail = c
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for x in c {
        for i in 0..16 {
            acc[i] = if x[i] > acc[i] { x[i] } else { acc[i] };
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}

/// `exp(x)` for f32 by Cody–Waite range reduction and a degree-6 polynomial (relative error
/// below 2e-7 on the clamped range), branch-free so that loops over it vectorize. Arguments
/// are clamped to `[-87.3, 88]` (results stay finite and normal).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer (|x·log2 e| < 2²²) without
    // a libm call, so the loop vectorizes.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    let bits = ((n as i32 + 127) as u32) << 23;
    p * f32::from_bits(bits)
}

/// The sum, over 16 lanes (then the lanes and the tail in order).
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let c = x.chunks_exact(16);
    let tail: f32 = c.remainder().iter().sum();
    for x in c {
        for i in 0..16 {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The sum of squares, over 16 lanes like [`sum`].
#[inline(always)]
fn sum_sq(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let c = x.chunks_exact(16);
    let tail: f32 = c.remainder().iter().map(|v| v * v).sum();
    for x in c {
        for i in 0..16 {
            acc[i] += x[i] * x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y = x / sqrt(mean(x²) + eps) * w` per row of `[n, d]`.
pub(crate) fn rms_norm_into(y: &mut [f32], x: &[f32], w: &[f32], d: usize, eps: f64) {
    let eps = eps as f32;
    vectorized(|| {
        for (y, x) in y.chunks_mut(d).zip(x.chunks(d)) {
            let inv = 1.0 / (sum_sq(x) / d as f32 + eps).sqrt();
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                *y = x * inv * w;
            }
        }
    })
}

/// `gate ← silu(gate) · up`.
pub(crate) fn silu_mul(gate: &mut [f32], up: &[f32]) {
    vectorized(|| {
        for (g, &u) in gate.iter_mut().zip(up) {
            let sig = 1.0 / (1.0 + exp(-*g));
            *g = *g * sig * u;
        }
    })
}

/// `x ← x + y`.
pub(crate) fn add_into(x: &mut [f32], y: &[f32]) {
    vectorized(|| {
        for (a, b) in x.iter_mut().zip(y) {
            *a += b;
        }
    })
}

/// `x ← softmax(x · scale)` in place.
pub(crate) fn softmax_scaled(x: &mut [f32], scale: f32) {
    vectorized(|| {
        for s in x.iter_mut() {
            *s *= scale;
        }
        let top = max(x);
        for s in x.iter_mut() {
            *s = exp(*s - top);
        }
        let inv = 1.0 / sum(x);
        for s in x.iter_mut() {
            *s *= inv;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_a_few_ulps() {
        let mut worst = 0f32;
        for i in 0..200_000 {
            let x = -87.0 + i as f32 * (175.0 / 200_000.0);
            let (a, b) = (exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert!((0.0..1e-37).contains(&exp(-1000.0)));
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
    }

    #[test]
    fn lane_reductions_and_softmax_match_the_plain_formulas() {
        let x: Vec<f32> = (0..37).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
        let plain: f64 = x.iter().map(|&v| v as f64).sum();
        assert!((sum(&x) as f64 - plain).abs() < 1e-5);
        assert_eq!(max(&x), x.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        let mut s = x.clone();
        softmax_scaled(&mut s, 0.5);
        let m = x
            .iter()
            .map(|&v| v as f64 * 0.5)
            .fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = x.iter().map(|&v| (v as f64 * 0.5 - m).exp()).sum();
        for (&got, &v) in s.iter().zip(&x) {
            assert!((got as f64 - (v as f64 * 0.5 - m).exp() / z).abs() < 1e-6);
        }
        let mut g = vec![-2.0f32, 0.0, 1.5];
        silu_mul(&mut g, &[1.0, 2.0, -1.0]);
        let silu = |v: f64| v / (1.0 + (-v).exp());
        for (got, want) in g.iter().zip([silu(-2.0), 0.0, -silu(1.5)]) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        let mut y = vec![0f32; 37];
        rms_norm_into(&mut y, &x, &[2.0; 37], 37, 1e-5);
        let rms = (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / 37.0 + 1e-5).sqrt();
        for (&got, &v) in y.iter().zip(&x) {
            assert!((got as f64 - v as f64 / rms * 2.0).abs() < 1e-5);
        }
    }
}
