//! The CPU inference fast path: the decoder's forward pass and incremental decoding written
//! directly over the f32 weights of a model on burn's ndarray backend ([`Cpu`]).
//!
//! [`Llama::forward`] and [`crate::model::generate`] switch to it by themselves when the model
//! lives on [`Cpu`] (inference only: the autodiff backend keeps burn's graph). It computes the same
//! function as the generic path in `llama.rs` (same rotary tables, masking, RMSNorm and SwiGLU
//! formulas, f32 throughout) and passes the same parity tests; only the summation order inside
//! matrix products differs. What it saves: burn-ndarray copies both operands of every matmul and
//! materializes each reshape/transpose/concat, while here the weights are read in place (shared
//! with the tensors, no copy), the matrix products go to `gemm` (AVX-512/AVX2 kernels, threads
//! from the current rayon pool), attention reads keys and values in place per (row, head), and
//! the KV cache of generation grows per sequence (no padding or re-concatenation per step).
use super::config::LlamaConfig;
use super::host::HostTensor;
use super::kernels::matmul;
use super::llama::{ForwardOutput, HiddenSelect, Llama, LogitRows};
use burn::module::Param;
use burn::tensor::{Tensor, TensorData, TensorPrimitive, backend::Backend};
use burn_ndarray::{NdArray, NdArrayTensor, SharedArray};
use rayon::prelude::*;
use std::any::Any;

/// The backend the fast path serves: burn's ndarray backend in f32 ([`crate::model::CpuBackend`]).
pub(crate) type Cpu = NdArray<f32>;

/// `model` as a model on [`Cpu`], when that is its backend.
pub(crate) fn as_cpu<B: Backend>(model: &Llama<B>) -> Option<&Llama<Cpu>> {
    (model as &dyn Any).downcast_ref::<Llama<Cpu>>()
}

/// A [`Cpu`] forward output as the caller's backend type (which is [`Cpu`] when this is called).
pub(crate) fn cast_output<B: Backend>(out: ForwardOutput<Cpu>) -> Option<ForwardOutput<B>> {
    (Box::new(out) as Box<dyn Any>)
        .downcast::<ForwardOutput<B>>()
        .ok()
        .map(|b| *b)
}

/// A weight as a contiguous row-major slice: the tensor's own memory when it is contiguous
/// f32, else a host copy.
enum Weight {
    Shared(SharedArray<f32>),
    Owned(Vec<f32>),
}

impl Weight {
    fn of<const D: usize>(p: &Param<Tensor<Cpu, D>>) -> Weight {
        let t = p.val();
        if let TensorPrimitive::Float(NdArrayTensor::F32(storage)) = t.clone().into_primitive() {
            let a = storage.into_owned();
            if a.as_slice().is_some() {
                return Weight::Shared(a);
            }
        }
        Weight::Owned(HostTensor::from_tensor(t).data)
    }

    fn get(&self) -> &[f32] {
        match self {
            // Checked contiguous at construction.
            Weight::Shared(a) => a.as_slice().unwrap_or(&[]),
            Weight::Owned(v) => v,
        }
    }
}

/// `x W (+ b)` with `W` stored `[in, out]`.
struct Linear {
    w: Weight,
    b: Option<Weight>,
    out: usize,
}

impl Linear {
    fn of(p: &super::llama::Proj<Cpu>) -> Linear {
        let out = p.weight.val().dims()[1];
        Linear {
            w: Weight::of(&p.weight),
            b: p.bias.as_ref().map(Weight::of),
            out,
        }
    }

    /// `[n, in]` → `[n, out]`.
    fn apply(&self, x: &[f32], n: usize) -> Vec<f32> {
        let k = if n == 0 { 0 } else { x.len() / n };
        let mut y = vec![0f32; n * self.out];
        matmul(&mut y, x, self.w.get(), n, k, self.out, false);
        if let Some(b) = &self.b {
            let b = b.get();
            for row in y.chunks_mut(self.out) {
                for (v, bv) in row.iter_mut().zip(b) {
                    *v += bv;
                }
            }
        }
        y
    }
}

struct Layer {
    ln1: Weight,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln2: Weight,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// The weights of a [`Cpu`] model, borrowed (shared) from its tensors.
pub(crate) struct CpuLlama {
    cfg: LlamaConfig,
    embed: Weight,
    layers: Vec<Layer>,
    norm: Weight,
    /// `None` when tied to the embedding.
    head: Option<Linear>,
}

/// Keys and values of one sequence, per layer (`[len, kv_heads · head_dim]` row-major each).
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

impl SeqCache {
    fn new(layers: usize) -> SeqCache {
        SeqCache {
            k: vec![Vec::new(); layers],
            v: vec![Vec::new(); layers],
            len: 0,
        }
    }

    /// Number of cached positions.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Where a layer's attention finds its keys.
enum Mode<'a> {
    /// Right-padded prompts `[B, t]` (rows `b·t + p`) attend within their own row to real keys
    /// `0..=min(p, len−1)`; with `save`, each sequence's real keys/values are appended there.
    Prompt {
        t: usize,
        lengths: &'a [usize],
        save: Option<&'a mut [SeqCache]>,
    },
    /// Row `n` is one new token of sequence `n`, which attends to its cache plus itself.
    Decode { caches: &'a mut [SeqCache] },
}

impl CpuLlama {
    pub(crate) fn new(m: &Llama<Cpu>) -> CpuLlama {
        CpuLlama {
            cfg: m.config().clone(),
            embed: Weight::of(&m.embed_tokens),
            layers: m
                .layers
                .iter()
                .map(|l| Layer {
                    ln1: Weight::of(&l.input_layernorm),
                    q: Linear::of(&l.q_proj),
                    k: Linear::of(&l.k_proj),
                    v: Linear::of(&l.v_proj),
                    o: Linear::of(&l.o_proj),
                    ln2: Weight::of(&l.post_attention_layernorm),
                    gate: Linear::of(&l.gate_proj),
                    up: Linear::of(&l.up_proj),
                    down: Linear::of(&l.down_proj),
                })
                .collect(),
            norm: Weight::of(&m.norm),
            head: m.lm_head.as_ref().map(Linear::of),
        }
    }

    /// Token embeddings `[ids.len(), d]`.
    fn embed(&self, ids: &[u32]) -> Vec<f32> {
        let d = self.cfg.hidden_size;
        let e = self.embed.get();
        let mut x = Vec::with_capacity(ids.len() * d);
        for &id in ids {
            let id = id as usize;
            x.extend_from_slice(&e[id * d..(id + 1) * d]);
        }
        x
    }

    /// Logits `[n, vocab]` of final-normed states `[n, d]`.
    fn logits(&self, top: &[f32], n: usize) -> Vec<f32> {
        match &self.head {
            Some(head) => head.apply(top, n),
            None => {
                let (d, v) = (self.cfg.hidden_size, self.cfg.vocab_size);
                let mut y = vec![0f32; n * v];
                matmul(&mut y, top, self.embed.get(), n, d, v, true);
                y
            }
        }
    }

    fn final_norm(&self, x: &[f32]) -> Vec<f32> {
        rms_norm(
            x,
            self.norm.get(),
            self.cfg.hidden_size,
            self.cfg.rms_norm_eps,
        )
    }

    /// Block `l` on states `x` (`[n, d]`, updated in place) at rotary positions `pos` (one per row).
    fn block(&self, l: usize, x: &mut [f32], pos: &[usize], rope: &RopeTable, mode: &mut Mode<'_>) {
        let cfg = &self.cfg;
        let (d, n) = (cfg.hidden_size, pos.len());
        let (heads, kv_heads, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let kvd = kv_heads * hd;
        let w = &self.layers[l];
        let h = rms_norm(x, w.ln1.get(), d, cfg.rms_norm_eps);
        let mut q = w.q.apply(&h, n);
        let mut k = w.k.apply(&h, n);
        let v = w.v.apply(&h, n);
        rope.apply(&mut q, heads, hd);
        rope.apply(&mut k, kv_heads, hd);
        let ctx = match mode {
            Mode::Prompt { t, lengths, save } => {
                let (t, lengths) = (*t, *lengths);
                if let Some(caches) = save {
                    for (b, c) in caches.iter_mut().enumerate() {
                        let rows = b * t * kvd..(b * t + lengths[b]) * kvd;
                        c.k[l].extend_from_slice(&k[rows.clone()]);
                        c.v[l].extend_from_slice(&v[rows]);
                    }
                }
                attention(cfg, &q, n, &|r| {
                    let (b, p) = (r / t, r % t);
                    let visible = p.min(lengths[b] - 1) + 1;
                    let rows = b * t * kvd..(b * t + visible) * kvd;
                    (&k[rows.clone()], &v[rows], visible)
                })
            }
            Mode::Decode { caches } => {
                for (r, c) in caches.iter_mut().enumerate() {
                    c.k[l].extend_from_slice(&k[r * kvd..(r + 1) * kvd]);
                    c.v[l].extend_from_slice(&v[r * kvd..(r + 1) * kvd]);
                }
                let caches: &[SeqCache] = &**caches;
                attention(cfg, &q, n, &|r| {
                    let c = &caches[r];
                    (&c.k[l][..], &c.v[l][..], c.k[l].len() / kvd)
                })
            }
        };
        let o = w.o.apply(&ctx, n);
        add_into(x, &o);
        let h = rms_norm(x, w.ln2.get(), d, cfg.rms_norm_eps);
        let mut gate = w.gate.apply(&h, n);
        let up = w.up.apply(&h, n);
        gate.par_chunks_mut(4096)
            .zip(up.par_chunks(4096))
            .for_each(|(g, u)| {
                for (g, &u) in g.iter_mut().zip(u) {
                    let sig = 1.0 / (1.0 + (-*g).exp());
                    *g = *g * sig * u;
                }
            });
        let down = w.down.apply(&gate, n);
        add_into(x, &down);
    }
}

/// The forward pass of [`Llama::forward`] on [`Cpu`] (ids already checked).
pub(crate) fn forward(
    m: &Llama<Cpu>,
    ids: &[u32],
    batch: usize,
    t: usize,
    lengths: &[usize],
    hidden: &HiddenSelect,
    final_norm: bool,
    logits: LogitRows,
) -> ForwardOutput<Cpu> {
    let w = CpuLlama::new(m);
    let cfg = &w.cfg;
    let d = cfg.hidden_size;
    let device = m.device();
    let n_layers = w.layers.len();
    let wanted = |i: usize| match hidden {
        HiddenSelect::None => false,
        HiddenSelect::All => true,
        HiddenSelect::Layers(idx) => idx.contains(&i),
    };
    let need_top = final_norm || !matches!(logits, LogitRows::None);
    let last_layer = match hidden {
        _ if need_top => n_layers,
        HiddenSelect::None => 0,
        HiddenSelect::All => n_layers,
        HiddenSelect::Layers(idx) => idx.iter().copied().max().unwrap_or(0),
    };
    let to_tensor = |data: Vec<f32>, rows: usize, width: usize| -> Tensor<Cpu, 3> {
        Tensor::from_data(TensorData::new(data, [batch, rows, width]), &device)
    };
    let mut out = ForwardOutput {
        hidden: Vec::new(),
        final_norm: None,
        logits: None,
    };
    let pos: Vec<usize> = (0..batch * t).map(|r| r % t).collect();
    let rope = RopeTable::new(cfg, &pos);
    let mut x = w.embed(ids);
    if wanted(0) {
        out.hidden.push((0, to_tensor(x.clone(), t, d)));
    }
    let mut mode = Mode::Prompt {
        t,
        lengths,
        save: None,
    };
    for l in 0..last_layer {
        w.block(l, &mut x, &pos, &rope, &mut mode);
        if wanted(l + 1) {
            out.hidden.push((l + 1, to_tensor(x.clone(), t, d)));
        }
    }
    if !need_top {
        return out;
    }
    let picked = |x: &[f32], rows: &[usize]| -> Vec<f32> {
        let mut y = Vec::with_capacity(rows.len() * d);
        for (b, &p) in rows.iter().enumerate() {
            let r = b * t + p;
            y.extend_from_slice(&x[r * d..(r + 1) * d]);
        }
        y
    };
    let (top, top_rows) = match (&logits, final_norm) {
        (LogitRows::Positions(p), false) => (w.final_norm(&picked(&x, p)), 1),
        _ => (w.final_norm(&x), t),
    };
    let rows = match &logits {
        LogitRows::None => None,
        LogitRows::Positions(p) if final_norm => Some((picked(&top, p), 1)),
        LogitRows::All | LogitRows::Positions(_) => Some((top.clone(), top_rows)),
    };
    if let Some((rows, per_batch)) = rows {
        let v = cfg.vocab_size;
        out.logits = Some(to_tensor(w.logits(&rows, batch * per_batch), per_batch, v));
    }
    if final_norm {
        out.final_norm = Some(to_tensor(top, top_rows, d));
    }
    out
}

/// Incremental decoding state of [`crate::model::generate`] on [`Cpu`]: one cache per sequence.
pub(crate) struct Decoder {
    w: CpuLlama,
    caches: Vec<SeqCache>,
}

impl Decoder {
    /// Run the right-padded `prompts` and return each one's last-position logits `[B · vocab]`.
    pub(crate) fn prefill(m: &Llama<Cpu>, prompts: &[Vec<u32>]) -> (Decoder, Vec<f32>) {
        let w = CpuLlama::new(m);
        let d = w.cfg.hidden_size;
        let b = prompts.len();
        let t = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
        let mut ids = Vec::with_capacity(b * t);
        for p in prompts {
            ids.extend_from_slice(p);
            ids.extend(std::iter::repeat_n(0, t - p.len()));
        }
        let mut caches: Vec<SeqCache> = (0..b).map(|_| SeqCache::new(w.layers.len())).collect();
        let pos: Vec<usize> = (0..b * t).map(|r| r % t).collect();
        let rope = RopeTable::new(&w.cfg, &pos);
        let mut x = w.embed(&ids);
        let mut mode = Mode::Prompt {
            t,
            lengths: &lengths,
            save: Some(&mut caches),
        };
        for l in 0..w.layers.len() {
            w.block(l, &mut x, &pos, &rope, &mut mode);
        }
        for (c, &len) in caches.iter_mut().zip(&lengths) {
            c.len = len;
        }
        let mut last = Vec::with_capacity(b * d);
        for (r, &len) in lengths.iter().enumerate() {
            let row = r * t + len - 1;
            last.extend_from_slice(&x[row * d..(row + 1) * d]);
        }
        let logits = w.logits(&w.final_norm(&last), b);
        (Decoder { w, caches }, logits)
    }

    /// Keep only the given sequences (rows), in this order.
    pub(crate) fn select_rows(&mut self, rows: &[usize]) {
        let mut old: Vec<Option<SeqCache>> = self.caches.drain(..).map(Some).collect();
        self.caches = rows.iter().filter_map(|&r| old[r].take()).collect();
    }

    /// Feed one token per remaining sequence (each at position = its cache length) and return
    /// the next logits `[rows · vocab]`.
    pub(crate) fn step(&mut self, next: &[u32]) -> Vec<f32> {
        let pos: Vec<usize> = self.caches.iter().map(SeqCache::len).collect();
        let rope = RopeTable::new(&self.w.cfg, &pos);
        let mut x = self.w.embed(next);
        let mut mode = Mode::Decode {
            caches: &mut self.caches,
        };
        for l in 0..self.w.layers.len() {
            self.w.block(l, &mut x, &pos, &rope, &mut mode);
        }
        for c in &mut self.caches {
            c.len += 1;
        }
        self.w.logits(&self.w.final_norm(&x), next.len())
    }
}

/// Rotary cos / sin per row (`[rows, head_dim / 2]` each), computed as `Rope::new` does.
struct RopeTable {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl RopeTable {
    fn new(cfg: &LlamaConfig, positions: &[usize]) -> RopeTable {
        let hd = cfg.head_dim;
        let half = hd / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / (cfg.rope_theta as f32).powf((2 * i) as f32 / hd as f32))
            .collect();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for f in &inv_freq {
                let a = p as f32 * f;
                cos.push((a as f64).cos() as f32);
                sin.push((a as f64).sin() as f32);
            }
        }
        RopeTable { cos, sin, half }
    }

    /// Rotate every head of `x` (`[rows, heads · head_dim]`) in place (half-split layout).
    fn apply(&self, x: &mut [f32], heads: usize, hd: usize) {
        let half = self.half;
        x.par_chunks_mut(heads * hd)
            .enumerate()
            .for_each(|(r, row)| {
                let c = &self.cos[r * half..(r + 1) * half];
                let s = &self.sin[r * half..(r + 1) * half];
                for head in row.chunks_mut(hd) {
                    let (x1, x2) = head.split_at_mut(half);
                    for i in 0..half {
                        let (a, b) = (x1[i], x2[i]);
                        x1[i] = a * c[i] + b * -s[i];
                        x2[i] = b * c[i] + a * s[i];
                    }
                }
            });
    }
}

/// Scaled dot-product attention over grouped KV heads: row `r` of `q` (`[n, heads · hd]`) attends
/// to the `s` key/value rows `keys(r)` returns (`[s, kv_heads · hd]` each).
fn attention<'k>(
    cfg: &LlamaConfig,
    q: &[f32],
    n: usize,
    keys: &(dyn Fn(usize) -> (&'k [f32], &'k [f32], usize) + Sync),
) -> Vec<f32> {
    let (heads, kv_heads, hd) = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
    );
    let (qd, kvd, groups) = (heads * hd, kv_heads * hd, heads / kv_heads);
    let scale = (1.0 / (hd as f64).sqrt()) as f32;
    let mut out = vec![0f32; n * qd];
    out.par_chunks_mut(qd).enumerate().for_each(|(r, o)| {
        let (ks, vs, s) = keys(r);
        let mut scores = vec![0f32; s];
        for h in 0..heads {
            let off = (h / groups) * hd;
            let qh = &q[r * qd + h * hd..r * qd + (h + 1) * hd];
            let mut max = f32::NEG_INFINITY;
            for (j, sc) in scores.iter_mut().enumerate() {
                *sc = dot(qh, &ks[j * kvd + off..j * kvd + off + hd]) * scale;
                max = max.max(*sc);
            }
            let mut sum = 0f32;
            for sc in scores.iter_mut() {
                *sc = (*sc - max).exp();
                sum += *sc;
            }
            let oh = &mut o[h * hd..(h + 1) * hd];
            for (j, &e) in scores.iter().enumerate() {
                let p = e / sum;
                let vr = &vs[j * kvd + off..j * kvd + off + hd];
                for (a, &b) in oh.iter_mut().zip(vr) {
                    *a += p * b;
                }
            }
        }
    });
    out
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
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

/// `x / sqrt(mean(x²) + eps) * w` per row of `[n, d]`.
fn rms_norm(x: &[f32], w: &[f32], d: usize, eps: f64) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    let eps = eps as f32;
    y.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(y, x)| {
        let ms = x.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
            *y = x * inv * w;
        }
    });
    y
}

fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
