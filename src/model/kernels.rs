//! Dense f32 kernels on host slices shared by the CPU fast paths (inference in `fast`, training
//! in `crate::train`): matrix products on the `gemm` crate (AVX-512/AVX2 micro-kernels, threads
//! from the current rayon pool). The reduction over `k` runs in one fixed order per output
//! element whatever the thread count splits, so results are deterministic run to run.

/// How an operand of [`gemm`] is laid out in its row-major slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// The matrix as stored.
    Plain,
    /// The transpose of the stored matrix (e.g. `[n, k]` stored, `[k, n]` used).
    Transposed,
}

/// `dst[m, n] (+)= A[m, k] · B[k, n]`, all row-major. `A` is `a` (`[m, k]`) or, with
/// [`Layout::Transposed`], the transpose of `a` stored `[k, m]`; likewise `B` is `b` (`[k, n]`)
/// or the transpose of `b` stored `[n, k]`. With `accumulate`, the product is added to `dst`;
/// otherwise `dst` is overwritten (its old contents are never read).
///
/// # Panics
/// When a slice's length does not match its shape (a caller bug, never user input).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    dst: &mut [f32],
    a: &[f32],
    a_layout: Layout,
    b: &[f32],
    b_layout: Layout,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) {
    assert!(
        dst.len() == m * n && a.len() == m * k && b.len() == k * n,
        "gemm shapes: dst {} a {} b {} for {m}×{k}×{n}",
        dst.len(),
        a.len(),
        b.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    // (column stride, row stride) of each operand.
    let (a_cs, a_rs) = match a_layout {
        Layout::Plain => (1, k as isize),
        Layout::Transposed => (m as isize, 1),
    };
    let (b_cs, b_rs) = match b_layout {
        Layout::Plain => (1, n as isize),
        Layout::Transposed => (k as isize, 1),
    };
    // SAFETY: the three slices hold exactly m·n, m·k and k·n elements (checked above), and the
    // strides address element (i, j) of each matrix inside its slice: dst row-major [m, n]; `a`
    // row-major [m, k] or, transposed, row-major [k, m]; `b` row-major [k, n] or, transposed,
    // row-major [n, k]. `dst` is borrowed mutably, so it aliases neither input. dst's contents
    // are read only when `accumulate` (alpha = 1), and they are initialized f32 values.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// `dst[m, n] = a[m, k] · B`, all row-major, where `B` is `b` (`[k, n]`) or, when `b_t`, the
/// transpose of `b` (`[n, k]`).
pub(crate) fn matmul(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    b_t: bool,
) {
    let layout = if b_t {
        Layout::Transposed
    } else {
        Layout::Plain
    };
    gemm(dst, a, Layout::Plain, b, layout, m, k, n, false);
}

/// `Σ a·b` over 16 lanes (a fixed summation order that vectorizes), for the fast paths'
/// reductions.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive reference: element (i, j) of a row-major matrix or of its stored transpose.
    fn at(x: &[f32], layout: Layout, rows: usize, cols: usize, i: usize, j: usize) -> f32 {
        match layout {
            Layout::Plain => x[i * cols + j],
            Layout::Transposed => x[j * rows + i],
        }
    }

    #[test]
    fn every_layout_matches_the_naive_product_and_accumulates() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.91).cos()).collect();
        for al in [Layout::Plain, Layout::Transposed] {
            for bl in [Layout::Plain, Layout::Transposed] {
                let mut want = vec![0f32; m * n];
                for i in 0..m {
                    for j in 0..n {
                        want[i * n + j] = (0..k)
                            .map(|p| at(&a, al, m, k, i, p) * at(&b, bl, k, n, p, j))
                            .sum();
                    }
                }
                let mut got = vec![f32::NAN; m * n];
                gemm(&mut got, &a, al, &b, bl, m, k, n, false);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5, "{al:?} {bl:?}: {g} vs {w}");
                }
                gemm(&mut got, &a, al, &b, bl, m, k, n, true);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - 2.0 * w).abs() < 2e-5, "accumulate {al:?} {bl:?}");
                }
            }
        }
    }
}
