//! Forward and backward kernels of the CPU training fast path ([`super::fast`]) on host f32
//! slices: RMSNorm, rotary embeddings, causal grouped-query attention with right padding,
//! SwiGLU and the fused log-softmax + NLL over the vocabulary.
//!
//! Every kernel is deterministic: work is split by rows (each row written by one task) and
//! every reduction runs in a fixed order, whatever the thread count.
use crate::model::kernels::{Layout, dot, gemm};
use crate::model::vector::{exp, max, vectorized};
use rayon::prelude::*;

/// Rows per parallel task of the row-wise kernels.
const ROWS_PER_TASK: usize = 16;

/// `1 / (1 + exp(−x))`.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// RMSNorm forward per row of `x` (`[n, d]`): `y = x · inv · w` with
/// `inv = 1 / sqrt(mean(x²) + eps)`; returns `y` and `inv` (`[n]`).
pub(crate) fn rms_norm(x: &[f32], w: &[f32], d: usize, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let n = x.len() / d;
    let mut y = vec![0f32; x.len()];
    let mut inv = vec![0f32; n];
    y.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(inv.par_chunks_mut(ROWS_PER_TASK))
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .for_each(|((y, inv), x)| {
            vectorized(|| {
                for ((y, iv), x) in y.chunks_mut(d).zip(inv.iter_mut()).zip(x.chunks(d)) {
                    let ms = dot(x, x) / d as f32;
                    *iv = 1.0 / (ms + eps).sqrt();
                    for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                        *y = x * *iv * w;
                    }
                }
            })
        });
    (y, inv)
}

/// RMSNorm backward: adds `∂L/∂x` to `dx` and `∂L/∂w` to `dw`, given `dy`, the forward input `x`
/// and its `inv` (all `[n, d]` / `[n]`).
pub(crate) fn rms_norm_backward(
    dy: &[f32],
    x: &[f32],
    inv: &[f32],
    w: &[f32],
    d: usize,
    dx: &mut [f32],
    dw: &mut [f32],
) {
    dx.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(dy.par_chunks(d * ROWS_PER_TASK))
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .zip(inv.par_chunks(ROWS_PER_TASK))
        .for_each(|(((dx, dy), x), inv)| {
            vectorized(|| {
                let mut gw = vec![0f32; d];
                for (((dx, dy), x), &r) in
                    dx.chunks_mut(d).zip(dy.chunks(d)).zip(x.chunks(d)).zip(inv)
                {
                    // y = x·r·w, r = (mean(x²)+eps)^(-1/2): dx = r·(dy∘w) − x·r³·Σ(dy∘w∘x)/d.
                    for ((gw, &g), &w) in gw.iter_mut().zip(dy).zip(w) {
                        *gw = g * w;
                    }
                    let c = r * r * r * dot(&gw, x) / d as f32;
                    for ((dx, &gw), &x) in dx.iter_mut().zip(&gw).zip(x) {
                        *dx += r * gw - x * c;
                    }
                }
            })
        });
    // Weight gradient: rows in order (fixed summation order).
    vectorized(|| {
        for ((dy, x), &r) in dy.chunks(d).zip(x.chunks(d)).zip(inv) {
            for ((dw, &g), &x) in dw.iter_mut().zip(dy).zip(x) {
                *dw += g * x * r;
            }
        }
    });
}

/// Rotary cos / sin per position `0..t` (`[t, head_dim / 2]` each), computed as the model does.
pub(crate) struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl Rope {
    pub(crate) fn new(head_dim: usize, theta: f64, t: usize) -> Rope {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for p in 0..t {
            for f in &inv_freq {
                let a = p as f32 * f;
                cos.push((a as f64).cos() as f32);
                sin.push((a as f64).sin() as f32);
            }
        }
        Rope { cos, sin, half }
    }

    /// Rotate head `(t, hd)` blocks in place: `x` is head-major `[blocks, t, hd]`; with
    /// `inverse`, apply the transposed rotation (the backward pass).
    pub(crate) fn apply(&self, x: &mut [f32], t: usize, inverse: bool) {
        let half = self.half;
        let hd = 2 * half;
        let sign = if inverse { -1.0 } else { 1.0 };
        x.par_chunks_mut(t * hd).for_each(|block| {
            for (p, head) in block.chunks_mut(hd).enumerate() {
                let c = &self.cos[p * half..(p + 1) * half];
                let s = &self.sin[p * half..(p + 1) * half];
                let (x1, x2) = head.split_at_mut(half);
                for i in 0..half {
                    let (a, b) = (x1[i], x2[i]);
                    let si = sign * s[i];
                    x1[i] = a * c[i] + b * -si;
                    x2[i] = b * c[i] + a * si;
                }
            }
        });
    }
}

/// `[b, t, heads · hd]` rows → head-major `[b, heads, t, hd]`.
pub(crate) fn to_heads(x: &[f32], t: usize, heads: usize, hd: usize) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(t * hd).enumerate().for_each(|(bh, blk)| {
        let (bi, h) = (bh / heads, bh % heads);
        for (p, row) in blk.chunks_mut(hd).enumerate() {
            let at = (bi * t + p) * heads * hd + h * hd;
            row.copy_from_slice(&x[at..at + hd]);
        }
    });
    y
}

/// Head-major `[b, heads, t, hd]` → rows `[b, t, heads · hd]`.
pub(crate) fn from_heads(x: &[f32], t: usize, heads: usize, hd: usize) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    let width = heads * hd;
    y.par_chunks_mut(t * width)
        .enumerate()
        .for_each(|(bi, rows)| {
            for (p, row) in rows.chunks_mut(width).enumerate() {
                for h in 0..heads {
                    let at = ((bi * heads + h) * t + p) * hd;
                    row[h * hd..(h + 1) * hd].copy_from_slice(&x[at..at + hd]);
                }
            }
        });
    y
}

/// Shapes of one attention call.
#[derive(Clone, Copy)]
pub(crate) struct AttnShape {
    pub t: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub hd: usize,
}

/// Causal attention forward over head-major `q` (`[b, heads, t, hd]`), `k`, `v`
/// (`[b, kv_heads, t, hd]`): query `p` of sequence `b` sees keys `0..=min(p, len_b − 1)`.
/// Returns the output (head-major like `q`) and the probabilities `[b, heads, t, t]`.
pub(crate) fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    lengths: &[usize],
    s: AttnShape,
) -> (Vec<f32>, Vec<f32>) {
    let AttnShape {
        t,
        heads,
        kv_heads,
        hd,
    } = s;
    let groups = heads / kv_heads;
    let scale = (1.0 / (hd as f64).sqrt()) as f32;
    let mut out = vec![0f32; q.len()];
    let mut probs = vec![0f32; lengths.len() * heads * t * t];
    out.par_chunks_mut(t * hd)
        .zip(probs.par_chunks_mut(t * t))
        .enumerate()
        .for_each(|(bh, (o, p))| {
            let (bi, h) = (bh / heads, bh % heads);
            let kvb = (bi * kv_heads + h / groups) * t * hd;
            let (kb, vb) = (&k[kvb..kvb + t * hd], &v[kvb..kvb + t * hd]);
            gemm(
                p,
                &q[bh * t * hd..(bh + 1) * t * hd],
                Layout::Plain,
                kb,
                Layout::Transposed,
                t,
                hd,
                t,
                false,
            );
            let len = lengths[bi];
            for (i, row) in p.chunks_mut(t).enumerate() {
                let visible = i.min(len - 1) + 1;
                let (seen, hidden) = row.split_at_mut(visible);
                let mut max = f32::NEG_INFINITY;
                for x in seen.iter_mut() {
                    *x *= scale;
                    max = max.max(*x);
                }
                let mut sum = 0f32;
                for x in seen.iter_mut() {
                    *x = exp(*x - max);
                    sum += *x;
                }
                let r = 1.0 / sum;
                for x in seen.iter_mut() {
                    *x *= r;
                }
                hidden.fill(0.0);
            }
            gemm(o, p, Layout::Plain, vb, Layout::Plain, t, t, hd, false);
        });
    (out, probs)
}

/// Attention backward: given `d_out` (head-major like `q`), the forward inputs and the
/// probabilities, returns `(dq, dk, dv)` (head-major, rotated space). Key/value gradients of a
/// KV head sum its query heads in order.
pub(crate) fn attention_backward(
    d_out: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    s: AttnShape,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let AttnShape {
        t,
        heads,
        kv_heads,
        hd,
    } = s;
    let groups = heads / kv_heads;
    let scale = (1.0 / (hd as f64).sqrt()) as f32;
    let blk = t * hd;
    let mut dq = vec![0f32; q.len()];
    let mut dk = vec![0f32; k.len()];
    let mut dv = vec![0f32; v.len()];
    // One task per (sequence, KV head): it owns that KV head's dk/dv and its query heads' dq.
    dq.par_chunks_mut(groups * blk)
        .zip(dk.par_chunks_mut(blk))
        .zip(dv.par_chunks_mut(blk))
        .enumerate()
        .for_each(|(bk, ((dq, dk), dv))| {
            let kb = &k[bk * blk..(bk + 1) * blk];
            let vb = &v[bk * blk..(bk + 1) * blk];
            let mut ds = vec![0f32; t * t];
            for g in 0..groups {
                let bh = bk * groups + g;
                let p = &probs[bh * t * t..(bh + 1) * t * t];
                let dout = &d_out[bh * blk..(bh + 1) * blk];
                let qb = &q[bh * blk..(bh + 1) * blk];
                // dV += Pᵀ dO; dP = dO Vᵀ.
                gemm(
                    dv,
                    p,
                    Layout::Transposed,
                    dout,
                    Layout::Plain,
                    t,
                    t,
                    hd,
                    g > 0,
                );
                gemm(
                    &mut ds,
                    dout,
                    Layout::Plain,
                    vb,
                    Layout::Transposed,
                    t,
                    hd,
                    t,
                    false,
                );
                // dS = P ∘ (dP − Σ_j dP∘P) · scale (masked entries have P = 0).
                for (dsr, pr) in ds.chunks_mut(t).zip(p.chunks(t)) {
                    let row_dot = dot(dsr, pr);
                    for (x, &pv) in dsr.iter_mut().zip(pr) {
                        *x = pv * (*x - row_dot) * scale;
                    }
                }
                let dqh = &mut dq[g * blk..(g + 1) * blk];
                gemm(dqh, &ds, Layout::Plain, kb, Layout::Plain, t, t, hd, false);
                gemm(
                    dk,
                    &ds,
                    Layout::Transposed,
                    qb,
                    Layout::Plain,
                    t,
                    t,
                    hd,
                    g > 0,
                );
            }
        });
    (dq, dk, dv)
}

/// SwiGLU forward: `silu(g) ∘ u`.
pub(crate) fn swiglu(g: &[f32], u: &[f32]) -> Vec<f32> {
    let mut a = vec![0f32; g.len()];
    a.par_chunks_mut(4096)
        .zip(g.par_chunks(4096).zip(u.par_chunks(4096)))
        .for_each(|(a, (g, u))| {
            vectorized(|| {
                for ((a, &g), &u) in a.iter_mut().zip(g).zip(u) {
                    *a = g * sigmoid(g) * u;
                }
            })
        });
    a
}

/// SwiGLU backward in place: `g` becomes `∂L/∂g` and `u` becomes `∂L/∂u`, given `da`.
pub(crate) fn swiglu_backward(da: &[f32], g: &mut [f32], u: &mut [f32]) {
    g.par_chunks_mut(4096)
        .zip(u.par_chunks_mut(4096).zip(da.par_chunks(4096)))
        .for_each(|(g, (u, da))| {
            vectorized(|| {
                for ((g, u), &d) in g.iter_mut().zip(u.iter_mut()).zip(da) {
                    let s = sigmoid(*g);
                    let silu = *g * s;
                    let dg = d * *u * s * (1.0 + *g * (1.0 - s));
                    *u = d * silu;
                    *g = dg;
                }
            })
        });
}

/// The vocabulary projection of the fused loss: logits `h · Wᵀ` with `W` the tied embedding
/// (`[vocab, d]`), or `h · W` with an untied head stored `[d, vocab]`.
pub(crate) struct Head<'a> {
    pub w: &'a [f32],
    pub tied: bool,
    pub vocab: usize,
    pub d: usize,
}

/// Target rows per chunk of the fused loss (bounds the `[rows, vocab]` buffer).
const LOSS_ROWS: usize = 256;

/// Fused lm head + log-softmax + NLL over row chunks of the final-normed target states `h`
/// (`[n, d]`): returns each target's NLL and `∂L/∂h` for `L = Σ nll · inv_total`, and adds
/// `∂L/∂W` to `dw` (same layout as the head).
pub(crate) fn head_loss(
    h: &[f32],
    targets: &[u32],
    head: &Head<'_>,
    inv_total: f32,
    dw: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let (d, vocab) = (head.d, head.vocab);
    let n = targets.len();
    let mut nll = vec![0f32; n];
    let mut dh = vec![0f32; n * d];
    let mut buf = vec![0f32; LOSS_ROWS.min(n) * vocab];
    for ((hc, tc), (nc, dhc)) in h
        .chunks(LOSS_ROWS * d)
        .zip(targets.chunks(LOSS_ROWS))
        .zip(nll.chunks_mut(LOSS_ROWS).zip(dh.chunks_mut(LOSS_ROWS * d)))
    {
        let rows = tc.len();
        let z = &mut buf[..rows * vocab];
        let w_layout = if head.tied {
            Layout::Transposed
        } else {
            Layout::Plain
        };
        gemm(
            z,
            hc,
            Layout::Plain,
            head.w,
            w_layout,
            rows,
            d,
            vocab,
            false,
        );
        z.par_chunks_mut(vocab)
            .zip(nc.par_iter_mut())
            .zip(tc.par_iter())
            .for_each(|((row, nll), &tgt)| {
                vectorized(|| {
                    let top = max(row);
                    let picked = row[tgt as usize];
                    let mut acc = [0f32; 16];
                    for ch in row.chunks_mut(16) {
                        for (x, a) in ch.iter_mut().zip(acc.iter_mut()) {
                            *x = exp(*x - top);
                            *a += *x;
                        }
                    }
                    let sum: f32 = acc.iter().sum();
                    *nll = top + sum.ln() - picked;
                    let r = inv_total / sum;
                    for x in row.iter_mut() {
                        *x *= r;
                    }
                    row[tgt as usize] -= inv_total;
                })
            });
        if head.tied {
            // W [vocab, d]: dh = dz · W; dW += dzᵀ · h.
            gemm(
                dhc,
                z,
                Layout::Plain,
                head.w,
                Layout::Plain,
                rows,
                vocab,
                d,
                false,
            );
            gemm(
                dw,
                z,
                Layout::Transposed,
                hc,
                Layout::Plain,
                vocab,
                rows,
                d,
                true,
            );
        } else {
            // W [d, vocab]: dh = dz · Wᵀ; dW += hᵀ · dz.
            gemm(
                dhc,
                z,
                Layout::Plain,
                head.w,
                Layout::Transposed,
                rows,
                vocab,
                d,
                false,
            );
            gemm(
                dw,
                hc,
                Layout::Transposed,
                z,
                Layout::Plain,
                d,
                rows,
                vocab,
                true,
            );
        }
    }
    (nll, dh)
}

/// `dst[rows, n] = x[rows, k] · W[k, n] (+ bias)`.
pub(crate) fn linear(x: &[f32], w: &[f32], bias: Option<&[f32]>, k: usize, n: usize) -> Vec<f32> {
    let rows = x.len() / k;
    let mut y = vec![0f32; rows * n];
    gemm(
        &mut y,
        x,
        Layout::Plain,
        w,
        Layout::Plain,
        rows,
        k,
        n,
        false,
    );
    if let Some(b) = bias {
        y.par_chunks_mut(n * ROWS_PER_TASK).for_each(|ys| {
            for row in ys.chunks_mut(n) {
                for (y, &b) in row.iter_mut().zip(b) {
                    *y += b;
                }
            }
        });
    }
    y
}

/// Backward of [`linear`]: adds `xᵀ · dy` to `dw` (`[k, n]`), the column sums of `dy` to
/// `db`, and returns or accumulates `dy · Wᵀ` into `dx` (`[rows, k]`, overwritten unless
/// `accumulate_dx`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_backward(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    k: usize,
    n: usize,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dx: &mut [f32],
    accumulate_dx: bool,
) {
    let rows = dy.len() / n;
    gemm(
        dw,
        x,
        Layout::Transposed,
        dy,
        Layout::Plain,
        k,
        rows,
        n,
        true,
    );
    if let Some(db) = db {
        for row in dy.chunks(n) {
            for (b, &g) in db.iter_mut().zip(row) {
                *b += g;
            }
        }
    }
    gemm(
        dx,
        dy,
        Layout::Plain,
        w,
        Layout::Transposed,
        rows,
        n,
        k,
        accumulate_dx,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_backward_matches_finite_differences() {
        let d = 6;
        let x: Vec<f32> = (0..2 * d)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3)
            .collect();
        let w: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 * 0.1).collect();
        let dy: Vec<f32> = (0..2 * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let loss = |x: &[f32]| -> f64 {
            let (y, _) = rms_norm(x, &w, d, 1e-6);
            y.iter()
                .zip(&dy)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let (_, inv) = rms_norm(&x, &w, d, 1e-6);
        let mut dx = vec![0f32; x.len()];
        let mut dw = vec![0f32; d];
        rms_norm_backward(&dy, &x, &inv, &w, d, &mut dx, &mut dw);
        for i in 0..x.len() {
            let mut xp = x.clone();
            xp[i] += 1e-2;
            let mut xm = x.clone();
            xm[i] -= 1e-2;
            let fd = (loss(&xp) - loss(&xm)) / 2e-2;
            assert!(
                (fd - dx[i] as f64).abs() < 2e-3,
                "dx[{i}]: {fd} vs {}",
                dx[i]
            );
        }
    }
}
