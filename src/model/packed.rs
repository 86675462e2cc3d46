//! The CPU fast path's linear layers: `y[rows, out] = x[rows, in] · W (+ b)` with `W` stored
//! `[in, out]`, on an AVX-512 register-blocked micro-kernel of our own.
//!
//! The output columns are cut into panels of [`PANEL`] columns. For each panel and each block of
//! up to [`ROWS`] rows, the kernel keeps the `rows × 32` outputs in zmm registers and walks `k`
//! from 0 to `in - 1`: two vector loads of the panel's row `k`, one broadcast of `x[r, k]` and two
//! fused multiply-adds per row. The weight is read where it is (`W`'s row `k` of the panel is 32
//! contiguous floats), or from a [`PackedLinear`] copy whose panels are contiguous (`k · 32`
//! floats each, zero-padded), which streams better (the hardware prefetcher follows it; the
//! kernel also prefetches the panel a few `k` steps ahead into L1, and the thread's next packed
//! panel into L2 while it computes the current one). `x` is read from a [`Blocked`] copy (rows
//! in blocks of 12, `k`-major), so the broadcasts walk one stream. Threads split the panels
//! (contiguous ranges), every thread running all rows, in chunks of about 1 MiB of `x` so
//! that the chunk stays in L2 while the thread's panels pass over it. Weights that take the
//! same input (a layer's q, k and v; gate and up) run as one call over all their panels
//! ([`linear_blocked_many`]), and a thread prefetches the first panel of its next call.
//!
//! Every output element is one accumulator that sums `x[r, k] · W[k, c]` for `k` in `0..in`,
//! in that order, with a fused multiply-add, then adds the bias: the result does not depend on
//! the row blocking, the panel split among threads, the weight layout (packed or not) or the
//! other rows of the batch. Without AVX-512 the `gemm` crate computes the product (same values
//! up to rounding; still independent of the thread count).
use super::kernels::matmul;
use super::vector::softmax_scaled;
use rayon::prelude::*;

/// Output columns per panel (two zmm registers).
pub(crate) const PANEL: usize = 32;
/// Rows per register block (2 · 12 = 24 accumulators of the 32 zmm registers).
pub(crate) const ROWS: usize = 12;
/// Floats of `x` per row chunk of [`linear`] (1 MiB, half an L2).
const CHUNK_FLOATS: usize = 1 << 18;

/// Whether this CPU runs the AVX-512 kernel.
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A `[in, out]` weight re-laid out once in column panels: panel `p` holds `W[k, 32p .. 32p +
/// 32]` for `k` in `0..in`, one after the other (zeros past `out`).
#[derive(Debug, Clone)]
pub(crate) struct PackedLinear {
    panels: Vec<f32>,
    inp: usize,
    out: usize,
}

impl PackedLinear {
    /// Pack the row-major `[inp, out]` weight `w`.
    ///
    /// # Panics
    /// When `w.len() != inp · out` (a caller bug).
    pub(crate) fn new(w: &[f32], inp: usize, out: usize) -> PackedLinear {
        assert_eq!(w.len(), inp * out, "PackedLinear::new: weight shape");
        let n_panels = out.div_ceil(PANEL);
        let mut panels = vec![0f32; n_panels * inp * PANEL];
        panels
            .par_chunks_mut((inp * PANEL).max(1))
            .enumerate()
            .for_each(|(p, panel)| {
                let (c0, c1) = (p * PANEL, ((p + 1) * PANEL).min(out));
                for (k, dst) in panel.chunks_mut(PANEL).enumerate() {
                    dst[..c1 - c0].copy_from_slice(&w[k * out + c0..k * out + c1]);
                }
            });
        PackedLinear { panels, inp, out }
    }

    /// Bytes held by the packed copy.
    pub(crate) fn bytes(&self) -> usize {
        self.panels.len() * std::mem::size_of::<f32>()
    }
}

/// A weight as the kernel reads it: element `(k, c)` of panel `p = c / 32` at
/// `p · panel_stride + k · k_stride + c % 32`.
#[derive(Clone, Copy)]
pub(crate) struct Weights<'a> {
    data: &'a [f32],
    inp: usize,
    out: usize,
    k_stride: usize,
    panel_stride: usize,
    /// The row-major `[in, out]` weight, when that is what `data` is (for the fallback).
    row_major: bool,
}

impl<'a> Weights<'a> {
    /// A row-major `[inp, out]` weight as stored.
    ///
    /// # Panics
    /// When `w.len() != inp · out` (a caller bug).
    pub(crate) fn row_major(w: &'a [f32], inp: usize, out: usize) -> Weights<'a> {
        assert_eq!(w.len(), inp * out, "Weights::row_major: weight shape");
        Weights {
            data: w,
            inp,
            out,
            k_stride: out,
            panel_stride: PANEL,
            row_major: true,
        }
    }

    /// A packed weight.
    pub(crate) fn packed(p: &'a PackedLinear) -> Weights<'a> {
        Weights {
            data: &p.panels,
            inp: p.inp,
            out: p.out,
            k_stride: PANEL,
            panel_stride: p.inp * PANEL,
            row_major: false,
        }
    }

    /// Whether each panel is `in · 32` contiguous floats (a [`PackedLinear`]), which the
    /// kernel can prefetch as one run of cache lines.
    fn contiguous_panels(&self) -> bool {
        self.k_stride == PANEL && self.panel_stride == self.inp * PANEL
    }

    /// The weight as a row-major `[in, out]` matrix (the fallback's operand).
    fn to_row_major(self) -> std::borrow::Cow<'a, [f32]> {
        if self.row_major {
            return std::borrow::Cow::Borrowed(self.data);
        }
        let mut w = vec![0f32; self.inp * self.out];
        for (k, row) in w.chunks_mut(self.out.max(1)).enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = self.data[(c / PANEL) * self.panel_stride + k * self.k_stride + c % PANEL];
            }
        }
        std::borrow::Cow::Owned(w)
    }
}

/// `dst = x · W (+ bias)` for `x` `[rows, in]` row-major, `dst` `[rows, out]`; the panels are
/// split among the current rayon pool's threads. On AVX-512, `x` is first copied into row
/// blocks ([`Blocked`]) and the product runs as [`linear_blocked`]; otherwise on `gemm`.
///
/// # Panics
/// When a length does not match the weight's shape (a caller bug, never user input).
pub(crate) fn linear(dst: &mut [f32], x: &[f32], w: Weights<'_>, bias: Option<&[f32]>) {
    let (k, n) = (w.inp, w.out);
    let rows = x.len().checked_div(k).unwrap_or(dst.len() / n.max(1));
    assert!(
        x.len() == rows * k && dst.len() == rows * n && bias.is_none_or(|b| b.len() == n),
        "packed::linear shapes: x {} dst {} for {k}→{n}",
        x.len(),
        dst.len()
    );
    if rows == 0 || n == 0 {
        return;
    }
    if !has_avx512() || k == 0 {
        return fallback(dst, x, w, bias, rows);
    }
    // The blocked copy of `x` lives in a per-thread buffer reused across calls (a fresh one
    // when the buffer is in use further up this thread's stack, e.g. a nested rayon job).
    BLOCKED_X.with(|cell| match cell.try_borrow_mut() {
        Ok(mut xb) => {
            xb.fill(x, k);
            linear_blocked(dst, &xb, w, bias);
        }
        Err(_) => {
            let mut xb = Blocked::default();
            xb.fill(x, k);
            linear_blocked(dst, &xb, w, bias);
        }
    });
}

thread_local! {
    /// [`linear`]'s buffer for the row-blocked copy of `x`.
    static BLOCKED_X: std::cell::RefCell<Blocked> = std::cell::RefCell::new(Blocked::default());
}

/// A row-major `x` `[rows, in]` copied into the kernel's row blocks of [`ROWS`] rows laid out
/// `k`-major (block `b` holds `x[12b + r, kk]` at `b · 12k + kk · 12 + r`), so the kernel's
/// broadcasts read one sequential stream instead of twelve strided ones. Fill it once and
/// multiply it by every weight that takes the same input ([`linear_blocked`]).
#[derive(Debug, Default)]
pub(crate) struct Blocked {
    data: Vec<f32>,
    rows: usize,
    inp: usize,
}

impl Blocked {
    /// Copy `x` (`[rows, inp]` row-major) in, reusing the buffer.
    pub(crate) fn fill(&mut self, x: &[f32], inp: usize) {
        let rows = x.len() / inp.max(1);
        let need = rows.div_ceil(ROWS) * ROWS * inp;
        if self.data.len() < need {
            self.data.resize(need, 0.0);
        }
        (self.rows, self.inp) = (rows, inp);
        if inp == 0 {
            return;
        }
        // Lanes of a last, partial block past its rows are never read, so they need no zeros.
        self.data[..need]
            .par_chunks_mut(ROWS * inp)
            .zip(x.par_chunks(ROWS * inp))
            .for_each(|(block, src)| {
                for (r, row) in src.chunks(inp).enumerate() {
                    for (kk, &v) in row.iter().enumerate() {
                        block[kk * ROWS + r] = v;
                    }
                }
            });
    }
}

/// One product `dst = x · w (+ bias)` of a [`linear_blocked_many`] call.
pub(crate) struct Product<'a, 'b> {
    pub(crate) dst: &'b mut [f32],
    pub(crate) w: Weights<'a>,
    pub(crate) bias: Option<&'a [f32]>,
}

/// [`linear`] of an `x` already blocked ([`Blocked::fill`]); see [`linear_blocked_many`].
///
/// # Panics
/// As [`linear_blocked_many`].
pub(crate) fn linear_blocked(dst: &mut [f32], xb: &Blocked, w: Weights<'_>, bias: Option<&[f32]>) {
    linear_blocked_many(&mut [Product { dst, w, bias }], xb, &[]);
}

/// Several products of the same blocked `x` ([`Blocked::fill`]) in one parallel pass: the
/// panels of all the weights, one after the other, are split among the worker threads in
/// contiguous ranges (one fork and join for, e.g., a layer's q, k and v projections instead of
/// three). While a thread computes one packed panel it prefetches its next panel into L2,
/// spread over the row blocks, so that a panel's first row block does not wait on memory (one
/// sequence's forward pass streams every weight from DRAM once). `next` names the weights of
/// the caller's next call (same split): during its last panel a thread prefetches the first
/// panel it will compute there.
///
/// # Panics
/// When a length does not match a weight's shape, or without AVX-512 (caller bugs: only the
/// AVX-512 path blocks its input).
pub(crate) fn linear_blocked_many(
    products: &mut [Product<'_, '_>],
    xb: &Blocked,
    next: &[Weights<'_>],
) {
    let rows = xb.rows;
    for p in products.iter() {
        let (k, n) = (p.w.inp, p.w.out);
        assert!(
            xb.inp == k && p.dst.len() == rows * n && p.bias.is_none_or(|b| b.len() == n),
            "packed::linear_blocked shapes: x [{rows}, {}] dst {} for {k}→{n}",
            xb.inp,
            p.dst.len()
        );
    }
    assert!(has_avx512(), "packed::linear_blocked without AVX-512");
    let k = xb.inp;
    if rows == 0 || k == 0 {
        for p in products.iter_mut() {
            p.dst.fill(0.0);
            if let Some(b) = p.bias {
                for row in p.dst.chunks_mut(p.w.out.max(1)) {
                    row.copy_from_slice(b);
                }
            }
        }
        return;
    }
    // (first global panel, weights, dst address, bias) of each product, then the total.
    let mut segs = Vec::with_capacity(products.len());
    let mut total = 0;
    for p in products.iter_mut() {
        let address = p.dst.as_mut_ptr().expose_provenance();
        segs.push((total, p.w, address, p.bias));
        total += p.w.out.div_ceil(PANEL);
    }
    if total == 0 {
        return;
    }
    let parts = rayon::current_num_threads().clamp(1, total);
    let per = total.div_ceil(parts);
    // Rows per chunk: about 1 MiB of `x`, which stays in L2 while every panel passes over it.
    let chunk = (CHUNK_FLOATS / k).max(1).next_multiple_of(ROWS);
    let xp = xb.data.as_ptr().expose_provenance();
    (0..parts).into_par_iter().for_each(|j| {
        let range = (j * per).min(total)..((j + 1) * per).min(total);
        // This thread's pieces: (product, its local panel range).
        let pieces: Vec<(usize, std::ops::Range<usize>)> = segs
            .iter()
            .enumerate()
            .filter_map(|(i, &(first, w, _, _))| {
                let end = first + w.out.div_ceil(PANEL);
                let (a, b) = (range.start.max(first), range.end.min(end));
                (a < b).then(|| (i, a - first..b - first))
            })
            .collect();
        let after_call = first_panel(next, j);
        for (at, (i, panels)) in pieces.iter().enumerate() {
            let (_, w, address, bias) = segs[*i];
            let n = w.out;
            let after = match pieces.get(at + 1) {
                Some((i2, p2)) => panel_start(segs[*i2].1, p2.start),
                None => after_call,
            };
            for r0 in (0..rows).step_by(chunk) {
                let r = chunk.min(rows - r0);
                let last = r0 + r == rows;
                // SAFETY: each product's `dst` is `[rows, n]` (checked above) and borrowed
                // mutably for the whole parallel loop; task `j` writes only the columns of its
                // own panels of it (disjoint from every other task's) and nothing else reads
                // it meanwhile. `xb` holds rows.div_ceil(ROWS) blocks of ROWS · k floats
                // (filled for these rows and this k), so the blocks of rows r0..r0 + r (r0 a
                // multiple of ROWS) exist; the weight view addresses only elements inside its
                // slice for k < in, c < out (see `Weights`), and `bias` has `n` values;
                // prefetches never fault. AVX-512F was detected above.
                #[allow(unsafe_code)]
                unsafe {
                    let out = std::ptr::with_exposed_provenance_mut::<f32>(address).add(r0 * n);
                    let x = std::ptr::with_exposed_provenance::<f32>(xp).add(r0 * k);
                    avx512::panels(
                        (out, n),
                        avx512::Rows::Blocked(x),
                        r,
                        w,
                        bias,
                        panels.clone(),
                        after.filter(|_| last),
                    );
                }
            }
        }
    });
}

/// (address, cache lines) of panel `p` of a packed weight, to prefetch; `None` for a weight
/// read where it is stored.
fn panel_start(w: Weights<'_>, p: usize) -> Option<(usize, usize)> {
    w.contiguous_panels().then(|| {
        let at = w.data.as_ptr().wrapping_add(p * w.panel_stride);
        (at.expose_provenance(), 2 * w.inp)
    })
}

/// The first panel task `j` computes in a [`linear_blocked_many`] call of `ws` (same pool).
fn first_panel(ws: &[Weights<'_>], j: usize) -> Option<(usize, usize)> {
    let total: usize = ws.iter().map(|w| w.out.div_ceil(PANEL)).sum();
    if total == 0 {
        return None;
    }
    let g = j * total.div_ceil(rayon::current_num_threads().clamp(1, total));
    let mut first = 0;
    for &w in ws {
        let n = w.out.div_ceil(PANEL);
        if g < first + n {
            return panel_start(w, g - first);
        }
        first += n;
    }
    None
}

/// Causal attention of one head over one sequence of `len` positions on the AVX-512 kernel:
/// query `i` is `q[i · q_stride ..][..hd]`, key and value `j` are `k[j · kv_stride ..][..hd]`
/// and `v[j · kv_stride ..][..hd]`, and row `i` of `out` (`[len, hd]` row-major) becomes
/// `softmax(q_i · k_jᵀ · scale over j <= i) · v`. Rows run in blocks of [`ROWS`]: a block's
/// scores (only the keys it can see) and its output are computed before the next block, so the
/// scores never exceed `ROWS × len`. Returns `false` (computing nothing) without AVX-512.
///
/// # Panics
/// When a slice is too short for its shape (a caller bug, never user input).
#[allow(clippy::too_many_arguments)]
pub(crate) fn causal_attention(
    (q, q_stride): (&[f32], usize),
    (k, v, kv_stride): (&[f32], &[f32], usize),
    len: usize,
    hd: usize,
    scale: f32,
    out: &mut [f32],
) -> bool {
    if !has_avx512() {
        return false;
    }
    let reach = |stride: usize| (len.max(1) - 1) * stride + hd;
    assert!(
        len == 0
            || (q.len() >= reach(q_stride)
                && k.len() >= reach(kv_stride)
                && v.len() >= reach(kv_stride)
                && out.len() == len * hd
                && hd <= q_stride.min(kv_stride)),
        "causal_attention shapes"
    );
    if len == 0 || hd == 0 {
        return true;
    }
    let mut kt = vec![0f32; hd * len];
    for j in 0..len {
        for (d, &x) in k[j * kv_stride..j * kv_stride + hd].iter().enumerate() {
            kt[d * len + j] = x;
        }
    }
    let keys = Weights::row_major(&kt, hd, len);
    let mut scores = vec![0f32; ROWS * len];
    for i0 in (0..len).step_by(ROWS) {
        let r = ROWS.min(len - i0);
        let seen = i0 + r;
        // SAFETY: AVX-512F was detected. Scores: rows i0..i0 + r of `q` (stride q_stride, hd
        // values each, checked above) times the `[hd, len]` transposed keys into `scores`
        // (`ROWS` rows of `len`, r <= ROWS), panels below seen.div_ceil(PANEL) only (their
        // columns are < len). Output: those rows of `scores` (stride len) times the first
        // `seen` <= len values `v[j · kv_stride ..][..hd]` (in bounds, checked above) into
        // rows i0..i0 + r of `out` (`[len, hd]`).
        #[allow(unsafe_code)]
        unsafe {
            avx512::panels(
                (scores.as_mut_ptr(), len),
                avx512::Rows::Strided(q.as_ptr().add(i0 * q_stride), q_stride),
                r,
                keys,
                None,
                0..seen.div_ceil(PANEL),
                None,
            );
            for (ii, row) in scores.chunks_mut(len).take(r).enumerate() {
                let (past, future) = row[..seen].split_at_mut(i0 + ii + 1);
                softmax_scaled(past, scale);
                future.fill(0.0);
            }
            let values = Weights {
                data: v,
                inp: seen,
                out: hd,
                k_stride: kv_stride,
                panel_stride: PANEL,
                row_major: false,
            };
            avx512::panels(
                (out.as_mut_ptr().add(i0 * hd), hd),
                avx512::Rows::Strided(scores.as_ptr(), len),
                r,
                values,
                None,
                0..hd.div_ceil(PANEL),
                None,
            );
        }
    }
    true
}

/// [`linear`] without AVX-512: the `gemm` crate's product, then the bias.
fn fallback(dst: &mut [f32], x: &[f32], w: Weights<'_>, bias: Option<&[f32]>, rows: usize) {
    let (k, n) = (w.inp, w.out);
    matmul(dst, x, &w.to_row_major(), rows, k, n, false);
    if let Some(b) = bias {
        for row in dst.chunks_mut(n) {
            for (y, &b) in row.iter_mut().zip(b) {
                *y += b;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use super::{PANEL, ROWS, Weights};
    use std::arch::x86_64::*;

    /// How many `k` steps ahead the current panel is prefetched into L1.
    const PREFETCH: usize = 24;

    /// Where the kernel reads the rows of `x`.
    #[derive(Clone, Copy)]
    pub(super) enum Rows {
        /// Row-major with this row stride: `x[r, kk]` at `r · stride + kk`.
        Strided(*const f32, usize),
        /// In blocks of [`ROWS`] rows, `k`-major: `x[r, kk]` at `(r / 12) · 12k + kk · 12 + r % 12`
        /// (see `super::linear`).
        Blocked(*const f32),
    }

    /// The panels `panels` of `dst[rows, out] = x[rows, in] · W (+ bias)`, `dst` given as
    /// (pointer, row stride).
    ///
    /// # Safety
    /// AVX-512F is available; `dst` points to `rows` rows of at least `out` writable floats no
    /// one else touches in these panels' columns, `x` to `rows` rows of at least `in` floats
    /// in its layout, `bias` (if any) holds `out` values. `after` (address, cache lines) is
    /// prefetched into L2 during the last panel (only prefetched: any address will do).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn panels(
        (dst, ds): (*mut f32, usize),
        x: Rows,
        rows: usize,
        w: Weights<'_>,
        bias: Option<&[f32]>,
        panels: std::ops::Range<usize>,
        after: Option<(usize, usize)>,
    ) {
        let (k, n) = (w.inp, w.out);
        let n_blocks = rows.div_ceil(ROWS);
        // A packed panel is 2k cache lines; the next one (or `after`) is prefetched, spread
        // over the blocks.
        let contiguous = w.contiguous_panels();
        for p in panels.clone() {
            let c0 = p * PANEL;
            let width = (n - c0).min(PANEL);
            let mask = if width == PANEL {
                u32::MAX
            } else {
                (1u32 << width) - 1
            };
            let masks = [mask as u16, (mask >> 16) as u16];
            let wp = w.data.as_ptr().wrapping_add(p * w.panel_stride);
            let (next, lines) = if contiguous && p + 1 < panels.end {
                (wp.wrapping_add(w.panel_stride).cast::<i8>(), 2 * k)
            } else if p + 1 == panels.end
                && let Some((at, lines)) = after
            {
                (std::ptr::with_exposed_provenance::<i8>(at), lines)
            } else {
                (std::ptr::null(), 0)
            };
            let lines_per_block = lines.div_ceil(n_blocks);
            let bp = bias.map(|b| b.as_ptr().wrapping_add(c0));
            for blk in 0..n_blocks {
                let r0 = blk * ROWS;
                let r = (rows - r0).min(ROWS);
                let first = (blk * lines_per_block).min(lines);
                let pf = (
                    next.wrapping_add(first * 64),
                    ((blk + 1) * lines_per_block).min(lines) - first,
                );
                // SAFETY: rows r0..r0 + r of `x` and `dst` exist (r0 + r <= rows); the
                // panel's columns c0..c0 + width lie inside `dst`'s rows and the weight's
                // panel; masked lanes past `width` are never accessed; prefetches never fault.
                unsafe {
                    let dp = dst.add(r0 * ds + c0);
                    let (xp, xs, blocked) = match x {
                        Rows::Strided(xp, xs) => (xp.add(r0 * xs), xs, false),
                        Rows::Blocked(xp) => (xp.add(r0 * k), ROWS, true),
                    };
                    let s = (xp, xs, k, wp, w.k_stride, dp, ds, masks, bp, pf);
                    if blocked {
                        dispatch::<true>(r, s)
                    } else {
                        dispatch::<false>(r, s)
                    }
                }
            }
        }
    }

    /// (x, x stride, in, panel, k stride, dst, dst row stride, lane masks, bias of the panel,
    /// (first line to prefetch into L2, how many)). The x stride is the row stride of a strided
    /// `x`, the `k`-step stride (12) of a blocked one.
    type Block = (
        *const f32,
        usize,
        usize,
        *const f32,
        usize,
        *mut f32,
        usize,
        [u16; 2],
        Option<*const f32>,
        (*const i8, usize),
    );

    /// [`block`] for `r` (1..=12) rows.
    ///
    /// # Safety
    /// As [`block`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn dispatch<const BLOCKED: bool>(r: usize, s: Block) {
        // SAFETY: forwarded.
        unsafe {
            match r {
                12 => block::<12, BLOCKED>(s),
                11 => block::<11, BLOCKED>(s),
                10 => block::<10, BLOCKED>(s),
                9 => block::<9, BLOCKED>(s),
                8 => block::<8, BLOCKED>(s),
                7 => block::<7, BLOCKED>(s),
                6 => block::<6, BLOCKED>(s),
                5 => block::<5, BLOCKED>(s),
                4 => block::<4, BLOCKED>(s),
                3 => block::<3, BLOCKED>(s),
                2 => block::<2, BLOCKED>(s),
                _ => block::<1, BLOCKED>(s),
            }
        }
    }

    /// `R` rows × one panel: `R × 2` zmm accumulators over the whole `k` range; meanwhile
    /// `lines` cache lines from `pf` on are prefetched into L2, evenly over the `k` steps.
    ///
    /// # Safety
    /// As [`panels`]: `x` has `R` rows of `k` floats (in the layout `BLOCKED` says), the panel
    /// `k` rows of the masked lanes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block<const R: usize, const BLOCKED: bool>(
        (x, xs, k, w, ks, dst, ds, m, bias, (mut pf, lines)): Block,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let mut due = 0usize;
        let mut left = lines;
        for kk in 0..k {
            // SAFETY: row kk < k of the panel, only the masked lanes are read; x[r, kk] with
            // r < R, kk < k is inside x (blocked: at kk · 12 + r; strided: r · xs + kk).
            unsafe {
                let wr = w.wrapping_add(kk * ks);
                // Prefetching never faults: the address may lie past the panel.
                let ahead = wr.wrapping_add(PREFETCH * ks).cast::<i8>();
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                due += lines;
                while due >= k && left > 0 {
                    due -= k;
                    left -= 1;
                    _mm_prefetch::<_MM_HINT_T1>(pf);
                    pf = pf.wrapping_add(64);
                }
                let b0 = _mm512_maskz_loadu_ps(m[0], wr);
                let b1 = _mm512_maskz_loadu_ps(m[1], wr.wrapping_add(16));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let at = if BLOCKED { kk * xs + r } else { r * xs + kk };
                    let a = _mm512_set1_ps(*x.add(at));
                    acc[0] = _mm512_fmadd_ps(a, b0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(a, b1, acc[1]);
                }
            }
        }
        // SAFETY: the bias holds the panel's masked lanes; dst row r < R, masked lanes only.
        unsafe {
            let (bias0, bias1) = match bias {
                Some(b) => (
                    _mm512_maskz_loadu_ps(m[0], b),
                    _mm512_maskz_loadu_ps(m[1], b.wrapping_add(16)),
                ),
                None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
            };
            for (r, acc) in acc.iter().enumerate() {
                let d = dst.add(r * ds);
                let (y0, y1) = match bias {
                    Some(_) => (_mm512_add_ps(acc[0], bias0), _mm512_add_ps(acc[1], bias1)),
                    None => (acc[0], acc[1]),
                };
                _mm512_mask_storeu_ps(d, m[0], y0);
                _mm512_mask_storeu_ps(d.wrapping_add(16), m[1], y1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: f64) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as f64 * 0.7548 + seed).sin() * 1.3) as f32)
            .collect()
    }

    /// The product in f64, naive triple loop.
    fn naive(x: &[f32], w: &[f32], b: Option<&[f32]>, rows: usize, k: usize, n: usize) -> Vec<f64> {
        let mut y = vec![0f64; rows * n];
        for r in 0..rows {
            for c in 0..n {
                let s: f64 = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[i * n + c] as f64)
                    .sum();
                y[r * n + c] = s + b.map_or(0.0, |b| b[c] as f64);
            }
        }
        y
    }

    fn assert_close(what: &str, got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-5 * scale,
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    fn run(threads: usize, dst: &mut [f32], x: &[f32], w: Weights<'_>, b: Option<&[f32]>) {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| linear(dst, x, w, b));
    }

    /// Odd shapes (rows 1..100, widths not multiples of 16 or 32), with and without bias, packed
    /// and as stored, 1 and 3 threads: the naive f64 product within 1e-5; packed, stored and
    /// every thread count give the same bits.
    #[test]
    fn products_match_the_naive_product_on_odd_shapes() {
        for (rows, k, n) in [
            (1, 7, 5),
            (5, 33, 47),
            (13, 64, 100),
            (64, 100, 33),
            (100, 19, 70),
        ] {
            let x = data(rows * k, 0.1);
            let w = data(k * n, 2.0);
            let b = data(n, 5.0);
            let packed = PackedLinear::new(&w, k, n);
            for bias in [None, Some(&b[..])] {
                let want = naive(&x, &w, bias, rows, k, n);
                let mut first = vec![f32::NAN; rows * n];
                run(1, &mut first, &x, Weights::row_major(&w, k, n), bias);
                let what = format!("{rows}x{k}x{n} bias {}", bias.is_some());
                assert_close(&what, &first, &want);
                for threads in [1, 3] {
                    let mut got = vec![f32::NAN; rows * n];
                    run(threads, &mut got, &x, Weights::packed(&packed), bias);
                    assert_eq!(got, first, "{what}: packed, {threads} threads");
                    run(threads, &mut got, &x, Weights::row_major(&w, k, n), bias);
                    assert_eq!(got, first, "{what}: stored, {threads} threads");
                }
            }
        }
    }

    /// Several products in one call (panels split across the products' boundaries among 1, 2
    /// and 3 threads, with next-call prefetch hints, and a row count past one row chunk) give
    /// the bits of separate single-threaded calls, which match the naive f64 product.
    #[test]
    fn grouped_products_equal_separate_calls() {
        if !has_avx512() {
            eprintln!("skipped: grouped products need the AVX-512 kernel (this CPU lacks it)");
            return;
        }
        for (rows, k) in [(1, 9), (37, 64), (460, 600)] {
            let shapes = [(k, 100), (k, 33), (k, 64), (k, 5)];
            let x = data(rows * k, 0.4);
            let mut xb = Blocked::default();
            xb.fill(&x, k);
            let ws: Vec<Vec<f32>> = shapes
                .iter()
                .enumerate()
                .map(|(i, &(k, n))| data(k * n, 1.0 + i as f64))
                .collect();
            let bias = data(100, 3.0);
            let packs: Vec<PackedLinear> = ws
                .iter()
                .zip(shapes)
                .map(|(w, (k, n))| PackedLinear::new(w, k, n))
                .collect();
            let biases = [Some(&bias[..]), None, None, Some(&bias[..5])];
            let alone: Vec<Vec<f32>> = (0..shapes.len())
                .map(|i| {
                    let mut y = vec![f32::NAN; rows * shapes[i].1];
                    run(1, &mut y, &x, Weights::packed(&packs[i]), biases[i]);
                    let want = naive(&x, &ws[i], biases[i], rows, k, shapes[i].1);
                    assert_close(&format!("{rows}x{k} product {i}"), &y, &want);
                    y
                })
                .collect();
            let next = [Weights::packed(&packs[2]), Weights::packed(&packs[0])];
            for threads in [1, 2, 3] {
                let mut outs: Vec<Vec<f32>> = shapes
                    .iter()
                    .map(|&(_, n)| vec![f32::NAN; rows * n])
                    .collect();
                let mut products: Vec<Product<'_, '_>> = outs
                    .iter_mut()
                    .zip(&packs)
                    .zip(biases)
                    .map(|((dst, p), bias)| Product {
                        dst,
                        w: Weights::packed(p),
                        bias,
                    })
                    .collect();
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| linear_blocked_many(&mut products, &xb, &next));
                assert_eq!(outs, alone, "{rows}x{k}, {threads} threads");
            }
        }
    }

    /// A row's result does not depend on the other rows of the call.
    #[test]
    fn rows_do_not_depend_on_their_batch_mates() {
        let (rows, k, n) = (29, 70, 65);
        let x = data(rows * k, 0.3);
        let w = data(k * n, 1.1);
        let mut all = vec![0f32; rows * n];
        run(2, &mut all, &x, Weights::row_major(&w, k, n), None);
        for r in [0, 12, 13, 28] {
            let mut one = vec![0f32; n];
            run(
                2,
                &mut one,
                &x[r * k..(r + 1) * k],
                Weights::row_major(&w, k, n),
                None,
            );
            assert_eq!(one[..], all[r * n..(r + 1) * n], "row {r}");
        }
    }

    /// Blocked causal attention equals softmax attention computed naively in f64, for lengths
    /// around the row block and panel sizes, with strided queries, keys and values.
    #[test]
    fn causal_attention_matches_the_naive_formula() {
        if !has_avx512() {
            return;
        }
        let (hd, qs, kvs) = (20, 50, 45);
        for len in [1, 5, 12, 13, 33, 70] {
            let q = data(len * qs, 0.2);
            let k = data(len * kvs, 1.7);
            let v = data(len * kvs, 4.1);
            let scale = 0.3f32;
            let mut got = vec![f32::NAN; len * hd];
            assert!(causal_attention(
                (&q, qs),
                (&k, &v, kvs),
                len,
                hd,
                scale,
                &mut got
            ));
            for i in 0..len {
                let s: Vec<f64> = (0..=i)
                    .map(|j| {
                        let dot: f64 = (0..hd)
                            .map(|d| q[i * qs + d] as f64 * k[j * kvs + d] as f64)
                            .sum();
                        dot * scale as f64
                    })
                    .collect();
                let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let z: f64 = e.iter().sum();
                let want: Vec<f64> = (0..hd)
                    .map(|d| (0..=i).map(|j| e[j] / z * v[j * kvs + d] as f64).sum())
                    .collect();
                assert_close(
                    &format!("len {len} row {i}"),
                    &got[i * hd..(i + 1) * hd],
                    &want,
                );
            }
        }
    }

    /// The `gemm` fallback (used without AVX-512) agrees with the kernel within 1e-5, from both
    /// weight layouts.
    #[test]
    fn fallback_agrees_with_the_kernel() {
        let (rows, k, n) = (13, 45, 77);
        let x = data(rows * k, 0.9);
        let w = data(k * n, 0.4);
        let b = data(n, 3.3);
        let want = naive(&x, &w, Some(&b), rows, k, n);
        let packed = PackedLinear::new(&w, k, n);
        for weights in [Weights::row_major(&w, k, n), Weights::packed(&packed)] {
            let mut got = vec![f32::NAN; rows * n];
            fallback(&mut got, &x, weights, Some(&b), rows);
            assert_close("fallback", &got, &want);
            let mut kernel = vec![f32::NAN; rows * n];
            linear(&mut kernel, &x, weights, Some(&b));
            for (a, b) in got.iter().zip(&kernel) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }
}
