//! The CPU inference fast path: the decoder's forward pass and incremental decoding written
//! directly over the f32 weights of a model on burn's ndarray backend ([`Cpu`]).
//!
//! [`Llama::forward`] and [`crate::model::generate`] switch to it by themselves when the model
//! lives on [`Cpu`] (inference only: the autodiff backend keeps burn's graph), and
//! [`Llama::pooled_hidden_states`] (used by probe extraction) pools hidden states on the host
//! without building a tensor per layer. It computes the same function as the generic path in
//! `llama.rs` (same rotary tables, causal attention, RMSNorm and SwiGLU formulas, f32
//! throughout) and passes the same parity tests; only the summation order inside matrix
//! products differs.
//!
//! How a batch runs: the sequences are packed into one ragged `[Σ len, d]` matrix (no padding
//! is ever computed), so every linear layer, norm and MLP is one big product over real tokens;
//! only attention is per sequence (causal, one (head, sequence) task each, two matrix products
//! over the sequence's own keys). Each linear layer splits its output columns among the worker
//! threads, every thread running one single-threaded `gemm` over all rows (a small product per
//! thread would waste the micro-kernel's 64-row tiles, and the weight is packed once, not once
//! per thread); norms, rotary and the SwiGLU product run in row blocks. Each output element's
//! reduction runs in the same order whatever the split, so results do not depend on the thread
//! count or on which other sequences share the batch. Buffers are allocated once per call and
//! reused by every layer. Incremental decoding (one new token per sequence) keeps one growing
//! KV cache per sequence and uses `gemm`'s own threading.
//!
//! [`Llama::prepare`] packs the linear weights once into the column panels of our own AVX-512
//! kernel (`model::packed`): the returned [`PreparedLlama`] runs the same forward pass and
//! pooling with every linear layer and the causal attention on that kernel: no per-call operand
//! packing, which dominates `gemm` on short sequences (one-by-one forward); on long calls (more
//! than 256 rows) `gemm` stays as fast or faster (BENCHMARKS.md), so those run unprepared.
//! [`Llama::prepare_with`] at `MatmulPrecision::High` splits the weights into bf16 tiles for
//! the AMX kernel instead (`model::amx`, bf16x3, every call whatever its length).
//! Prepared results are as deterministic (the same bits across thread counts and batch mates)
//! and differ from the unprepared ones only by rounding.
use super::amx::{self, AmxLinear, Split};
use super::config::LlamaConfig;
use super::host::HostTensor;
use super::kernels::{dot, matmul};
use super::llama::{ForwardOptions, ForwardOutput, HiddenSelect, Llama, LogitRows, TokenBatch};
use super::packed::{self, Blocked, PackedLinear, Weights};
use super::precision::MatmulPrecision;
use super::vector::{add_into, rms_norm_into, silu_mul, softmax_scaled};
use crate::error::{Error, Result};
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

/// A matrix inside a slice: element `(i, j)` is `data[i · rs + j · cs]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `[rows, cols]` matrix.
    fn dense(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst = a · b` on the calling thread, `dst` row-major with row stride `dst_rs` (only the
/// first `b.cols` values of each of its `a.rows` rows are written).
///
/// # Panics
/// When a shape or stride reaches outside its slice (a caller bug, never user input).
fn gemm_st(dst: &mut [f32], dst_rs: usize, a: Mat<'_>, b: Mat<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k
            && a.in_bounds()
            && b.in_bounds()
            && n <= dst_rs
            && (m == 0 || (m - 1) * dst_rs + n <= dst.len()),
        "gemm_st shapes: {m}×{k}×{n}, dst {} (stride {dst_rs})",
        dst.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for row in dst.chunks_mut(dst_rs).take(m) {
            row[..n].fill(0.0);
        }
        return;
    }
    // SAFETY: `a`'s and `b`'s elements (i, j) at i·rs + j·cs all lie inside their slices and
    // dst's (i, j) at i·dst_rs + j (j < n <= dst_rs) inside `dst` (all checked above); `dst` is
    // borrowed mutably, so it aliases neither input, and with read_dst = false its old contents
    // are never read. Parallelism::None: the product runs on this thread only.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Which copy of its weights a linear layer keeps besides the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pack {
    /// None: products on `gemm`.
    None,
    /// Column panels for the AVX-512 f32 kernel ([`packed`]).
    Avx512,
    /// bf16 hi/lo tiles for the AMX kernel ([`amx`], `MatmulPrecision::High`).
    Amx,
}

impl Pack {
    /// The copy for a prepared model at `precision` on this CPU.
    fn prepared(precision: MatmulPrecision) -> Pack {
        match precision.effective() {
            MatmulPrecision::High => Pack::Amx,
            MatmulPrecision::Highest if packed::has_avx512() => Pack::Avx512,
            MatmulPrecision::Highest => Pack::None,
        }
    }

    /// A linear input prepared for this kernel (filled by the caller).
    fn input<'a>(self, xb: &'a Blocked, xs: &'a Split) -> Input<'a> {
        match self {
            Pack::Avx512 => Input::Blocked(xb),
            Pack::Amx => Input::Split(xs),
            Pack::None => Input::Plain,
        }
    }
}

/// The input of a linear layer as its kernel reads it.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// Row-major, as computed (`gemm`).
    Plain,
    /// Row-blocked for the AVX-512 kernel.
    Blocked(&'a Blocked),
    /// Split into bf16 hi and lo for the AMX kernel.
    Split(&'a Split),
}

/// Rows of a packed model's call up to which its linear layers run on the packed kernel.
const PACKED_MAX_ROWS: usize = 256;

/// `x W (+ b)` with `W` stored `[in, out]`, optionally packed in column panels.
struct Linear {
    w: Weight,
    packed: Option<PackedLinear>,
    /// The weight split into bf16 hi and lo tiles for the AMX kernel (`Pack::Amx`).
    amx: Option<AmxLinear>,
    b: Option<Weight>,
    inp: usize,
    out: usize,
}

impl Linear {
    /// The projection's weight as stored, plus the copy `pack` asks for.
    fn of(p: &super::llama::Proj<Cpu>, pack: Pack) -> Linear {
        let [inp, out] = p.weight.val().dims();
        let w = Weight::of(&p.weight);
        let packed = (pack == Pack::Avx512).then(|| PackedLinear::new(w.get(), inp, out));
        let amx = (pack == Pack::Amx).then(|| AmxLinear::new(w.get(), inp, out));
        Linear {
            w,
            packed,
            amx,
            b: p.bias.as_ref().map(Weight::of),
            inp,
            out,
        }
    }

    /// `[n, in]` → `[n, out]` (threads from `gemm` without a packed copy: decoding).
    fn apply(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut y = vec![0f32; n * self.out];
        match self.packed.as_ref().filter(|_| n <= PACKED_MAX_ROWS) {
            Some(p) => packed::linear(&mut y, x, Weights::packed(p), self.bias()),
            None => {
                matmul(&mut y, x, self.w.get(), n, self.inp, self.out, false);
                self.add_bias(&mut y);
            }
        }
        y
    }

    /// The bias, if any.
    fn bias(&self) -> Option<&[f32]> {
        self.b.as_ref().map(Weight::get)
    }

    /// `dst = x W (+ b)` for `x` `[rows, in]` on the calling thread.
    fn apply_st(&self, dst: &mut [f32], x: &[f32]) {
        let rows = x.len() / self.inp;
        gemm_st(
            dst,
            self.out,
            Mat::dense(x, rows, self.inp),
            Mat::dense(self.w.get(), self.inp, self.out),
        );
        self.add_bias(dst);
    }
    /// `dst = x W (+ b)` for `x` `[rows, in]`, the output columns split among the worker
    /// threads: with a packed copy and `xb` (which must hold `x` blocked), the AVX-512 kernel
    /// ([`packed::linear_blocked`]); otherwise each thread runs one single-threaded `gemm` over
    /// every row of `x` (the packed kernel reading the weight where it is stored would be
    /// slower than `gemm`, which copies its operands sequentially).
    fn apply_cols(&self, dst: &mut [f32], x: &[f32], input: Input<'_>) {
        match (input, &self.packed, &self.amx) {
            (Input::Blocked(xb), Some(p), _) => {
                return packed::linear_blocked(dst, xb, Weights::packed(p), self.bias());
            }
            (Input::Split(xs), _, Some(w)) => return amx::linear(dst, xs, w, self.bias()),
            _ => {}
        }
        let (k, n) = (self.inp, self.out);
        let rows = x.len() / k;
        let parts = rayon::current_num_threads().min(n / 32).max(1);
        if parts == 1 {
            return self.apply_st(dst, x);
        }
        assert!(
            dst.len() == rows * n && x.len() == rows * k,
            "apply_cols shapes"
        );
        let width = n.div_ceil(parts).next_multiple_of(16);
        let w = self.w.get();
        let base = dst.as_mut_ptr().expose_provenance();
        (0..parts).into_par_iter().for_each(|j| {
            let (c0, c1) = ((j * width).min(n), ((j + 1) * width).min(n));
            if c0 == c1 {
                return;
            }
            // SAFETY: `dst` is `[rows, n]` row-major (checked above) and borrowed mutably for
            // the whole parallel loop; task `j` writes only columns c0..c1 of each row
            // (element (i, c) at i·n + c), and the tasks' column ranges are disjoint, so no two
            // threads write the same element and nothing else reads `dst` meanwhile. `x`
            // (`[rows, k]`) and `w` (`[k, n]`, read from column c0 with row stride n, c1 <= n)
            // are read in bounds. read_dst = false: old values are never read.
            #[allow(unsafe_code)]
            unsafe {
                let out = std::ptr::with_exposed_provenance_mut::<f32>(base).add(c0);
                gemm::gemm(
                    rows,
                    c1 - c0,
                    k,
                    out,
                    1,
                    n as isize,
                    false,
                    x.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr().add(c0),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
        self.add_bias(dst);
    }

    fn add_bias(&self, y: &mut [f32]) {
        if let Some(b) = &self.b {
            let b = b.get();
            for row in y.chunks_mut(self.out) {
                add_into(row, b);
            }
        }
    }
}

/// `dst_i = x W_i (+ b_i)` for linear layers that take the same input `x`: with packed copies
/// and a blocked `x`, one parallel pass of the AVX-512 kernel over all their panels
/// ([`packed::linear_blocked_many`]; `next` names the layers of the caller's next call, whose
/// first panels each thread prefetches); otherwise [`Linear::apply_cols`] for each.
fn apply_group(group: &mut [(&Linear, &mut [f32])], x: &[f32], input: Input<'_>, next: &[&Linear]) {
    if let Input::Blocked(xb) = input {
        let count = group.len();
        let mut products: Vec<packed::Product<'_, '_>> = group
            .iter_mut()
            .filter_map(|(l, dst)| {
                let w = Weights::packed(l.packed.as_ref()?);
                Some(packed::Product {
                    dst,
                    w,
                    bias: l.bias(),
                })
            })
            .collect();
        if products.len() == count {
            let next: Vec<Weights<'_>> = next
                .iter()
                .filter_map(|l| l.packed.as_ref().map(Weights::packed))
                .collect();
            return packed::linear_blocked_many(&mut products, xb, &next);
        }
    }
    for (l, dst) in group.iter_mut() {
        l.apply_cols(dst, x, input);
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

/// The weights of a [`Cpu`] model, borrowed (shared) from its tensors, with the linear layers
/// optionally packed.
pub(crate) struct CpuLlama {
    cfg: LlamaConfig,
    embed: Weight,
    layers: Vec<Layer>,
    norm: Weight,
    /// `None` when tied to the embedding.
    head: Option<Linear>,
    /// The copy the linear layers keep: with one, attention runs on the AVX-512 kernel
    /// (`packed::causal_attention`), otherwise on `gemm`.
    pack: Pack,
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

/// Sequences packed one after the other: sequence `s` is rows `starts[s]..starts[s + 1]`.
struct Packed {
    ids: Vec<u32>,
    starts: Vec<usize>,
}

impl Packed {
    fn new<'a>(seqs: impl IntoIterator<Item = &'a [u32]>) -> Packed {
        let mut ids = Vec::new();
        let mut starts = vec![0];
        for s in seqs {
            ids.extend_from_slice(s);
            starts.push(ids.len());
        }
        Packed { ids, starts }
    }

    fn n_seqs(&self) -> usize {
        self.starts.len() - 1
    }

    fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Rows of sequence `s`.
    fn range(&self, s: usize) -> std::ops::Range<usize> {
        self.starts[s]..self.starts[s + 1]
    }
}

/// The buffers of one packed forward pass (`m` rows), reused by every layer.
struct Work {
    h: Vec<f32>,
    o: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention output per head: `[heads, m, head_dim]`.
    heads: Vec<f32>,
    ctx: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// The current linear input blocked for the packed kernel (`Pack::Avx512` only).
    xb: Blocked,
    /// The current linear input split for the AMX kernel (`Pack::Amx` only).
    xs: Split,
}

impl Work {
    fn new(cfg: &LlamaConfig, m: usize) -> Work {
        let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
        let qd = cfg.num_attention_heads * cfg.head_dim;
        let kvd = cfg.num_key_value_heads * cfg.head_dim;
        Work {
            h: vec![0.0; m * d],
            o: vec![0.0; m * d],
            q: vec![0.0; m * qd],
            k: vec![0.0; m * kvd],
            v: vec![0.0; m * kvd],
            heads: vec![0.0; m * qd],
            ctx: vec![0.0; m * qd],
            gate: vec![0.0; m * f],
            up: vec![0.0; m * f],
            xb: Blocked::default(),
            xs: Split::default(),
        }
    }
}

/// Rows per parallel block for `m` rows: one block per worker thread, at least 16 rows each.
fn block_rows(m: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let blocks = threads.min(m.div_ceil(16)).max(1);
    m.div_ceil(blocks).max(1)
}

impl CpuLlama {
    /// The model's weights, every linear layer with the copy `pack` asks for.
    fn new(m: &Llama<Cpu>, pack: Pack) -> CpuLlama {
        CpuLlama {
            cfg: m.config().clone(),
            embed: Weight::of(&m.embed_tokens),
            layers: m
                .layers
                .iter()
                .map(|l| Layer {
                    ln1: Weight::of(&l.input_layernorm),
                    q: Linear::of(&l.q_proj, pack),
                    k: Linear::of(&l.k_proj, pack),
                    v: Linear::of(&l.v_proj, pack),
                    o: Linear::of(&l.o_proj, pack),
                    ln2: Weight::of(&l.post_attention_layernorm),
                    gate: Linear::of(&l.gate_proj, pack),
                    up: Linear::of(&l.up_proj, pack),
                    down: Linear::of(&l.down_proj, pack),
                })
                .collect(),
            norm: Weight::of(&m.norm),
            head: m.lm_head.as_ref().map(|h| Linear::of(h, pack)),
            pack,
        }
    }

    /// Bytes of the packed copies.
    fn packed_bytes(&self) -> usize {
        let linear = |l: &Linear| {
            l.packed.as_ref().map_or(0, PackedLinear::bytes)
                + l.amx.as_ref().map_or(0, AmxLinear::bytes)
        };
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]
                    .map(linear)
                    .iter()
                    .sum::<usize>()
            })
            .sum();
        layers + self.head.as_ref().map_or(0, linear)
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
        let d = self.cfg.hidden_size;
        let mut y = vec![0f32; x.len()];
        let rows = block_rows(x.len() / d.max(1)) * d;
        y.par_chunks_mut(rows.max(1))
            .zip(x.par_chunks(rows.max(1)))
            .for_each(|(y, x)| rms_norm_into(y, x, self.norm.get(), d, self.cfg.rms_norm_eps));
        y
    }

    /// Run the packed sequences through the first `upto` blocks. `visit(i, x)` sees
    /// `hidden[i]` (`[rows, d]` packed) for `i` in `0..=upto`; with `save`, each sequence's
    /// keys and values are appended to its cache. Returns `hidden[upto]`.
    fn run_packed(
        &self,
        p: &Packed,
        upto: usize,
        mut save: Option<&mut [SeqCache]>,
        mut visit: impl FnMut(usize, &[f32]),
    ) -> Vec<f32> {
        let m = p.rows();
        let mut pos = Vec::with_capacity(m);
        for s in 0..p.n_seqs() {
            pos.extend(0..p.range(s).len());
        }
        let rope = RopeTable::new(&self.cfg, &pos);
        let mut ws = Work::new(&self.cfg, m);
        let mut x = self.embed(&p.ids);
        visit(0, &x);
        for l in 0..upto {
            self.packed_block(l, &mut x, p, &rope, &mut ws, save.as_deref_mut());
            visit(l + 1, &x);
        }
        x
    }

    /// Block `l` on the packed states `x` (`[rows, d]`, updated in place).
    fn packed_block(
        &self,
        l: usize,
        x: &mut [f32],
        p: &Packed,
        rope: &RopeTable,
        ws: &mut Work,
        save: Option<&mut [SeqCache]>,
    ) {
        let cfg = &self.cfg;
        let (d, m, f) = (cfg.hidden_size, p.rows(), cfg.intermediate_size);
        let (heads, kv_heads, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let (qd, kvd) = (heads * hd, kv_heads * hd);
        let eps = cfg.rms_norm_eps;
        let w = &self.layers[l];
        if m == 0 {
            return;
        }
        let c = block_rows(m);
        let (ln1, ln2) = (w.ln1.get(), w.ln2.get());

        // Norm, q/k/v and rotary.
        ws.h.par_chunks_mut(c * d)
            .zip(x.par_chunks(c * d))
            .for_each(|(h, x)| rms_norm_into(h, x, ln1, d, eps));
        // The packed kernel (linear layers and attention) wins on short calls, where `gemm`
        // re-packs every weight for few rows; on long ones (batches) `gemm` measured as fast or
        // a little faster (BENCHMARKS.md), so those run exactly the unprepared path.
        // The AMX kernel wins at every size, so it runs every call (and a sequence gets the
        // same bits alone or in a batch).
        let kernel = match self.pack {
            Pack::Avx512 if m <= PACKED_MAX_ROWS => Pack::Avx512,
            Pack::Amx => Pack::Amx,
            _ => Pack::None,
        };
        let packed = kernel != Pack::None;
        let prep = |x: &[f32], k: usize, xb: &mut Blocked, xs: &mut Split| match kernel {
            Pack::Avx512 => xb.fill(x, k),
            Pack::Amx => xs.fill(x, k),
            Pack::None => {}
        };
        prep(&ws.h, d, &mut ws.xb, &mut ws.xs);
        apply_group(
            &mut [(&w.q, &mut ws.q), (&w.k, &mut ws.k), (&w.v, &mut ws.v)],
            &ws.h,
            kernel.input(&ws.xb, &ws.xs),
            &[&w.o],
        );
        ws.q.par_chunks_mut(c * qd)
            .zip(ws.k.par_chunks_mut(c * kvd))
            .enumerate()
            .for_each(|(i, (q, k))| {
                rope.apply(q, i * c, heads, hd);
                rope.apply(k, i * c, kv_heads, hd);
            });
        if let Some(caches) = save {
            for (s, c) in caches.iter_mut().enumerate() {
                let rows = p.range(s);
                c.k[l].extend_from_slice(&ws.k[rows.start * kvd..rows.end * kvd]);
                c.v[l].extend_from_slice(&ws.v[rows.start * kvd..rows.end * kvd]);
            }
        }

        // Causal attention, one task per (head, sequence), into the head-major buffer.
        let mut tasks = Vec::with_capacity(heads * p.n_seqs());
        for (h, block) in ws.heads.chunks_mut(m * hd).enumerate() {
            let mut rest = block;
            for s in 0..p.n_seqs() {
                let (out, tail) = std::mem::take(&mut rest).split_at_mut(p.range(s).len() * hd);
                tasks.push((h, p.range(s), out));
                rest = tail;
            }
        }
        let (q, k, v) = (&ws.q[..], &ws.k[..], &ws.v[..]);
        let groups = heads / kv_heads;
        tasks.into_par_iter().for_each(|(h, rows, out)| {
            attend(q, k, v, (qd, kvd, hd), (h, h / groups), rows, out, packed);
        });

        // Head-major → row-major, then output projection, norm and MLP.
        let heads_buf = &ws.heads[..];
        let unhead = |ctx: &mut [f32], r0: usize| {
            for (r, row) in ctx.chunks_mut(qd).enumerate() {
                for (head, dst) in row.chunks_mut(hd).enumerate() {
                    let src = (head * m + r0 + r) * hd;
                    dst.copy_from_slice(&heads_buf[src..src + hd]);
                }
            }
        };
        ws.ctx
            .par_chunks_mut(c * qd)
            .enumerate()
            .for_each(|(i, ctx)| unhead(ctx, i * c));
        prep(&ws.ctx, qd, &mut ws.xb, &mut ws.xs);
        apply_group(
            &mut [(&w.o, &mut ws.o)],
            &ws.ctx,
            kernel.input(&ws.xb, &ws.xs),
            &[&w.gate, &w.up],
        );
        x.par_chunks_mut(c * d)
            .zip(ws.o.par_chunks(c * d))
            .zip(ws.h.par_chunks_mut(c * d))
            .for_each(|((x, o), h)| {
                add_into(x, o);
                rms_norm_into(h, x, ln2, d, eps);
            });
        prep(&ws.h, d, &mut ws.xb, &mut ws.xs);
        apply_group(
            &mut [(&w.gate, &mut ws.gate), (&w.up, &mut ws.up)],
            &ws.h,
            kernel.input(&ws.xb, &ws.xs),
            &[&w.down],
        );
        ws.gate
            .par_chunks_mut(c * f)
            .zip(ws.up.par_chunks(c * f))
            .for_each(|(g, u)| silu_mul(g, u));
        prep(&ws.gate, f, &mut ws.xb, &mut ws.xs);
        let following = self.layers.get(l + 1).map(|n| [&n.q, &n.k, &n.v]);
        apply_group(
            &mut [(&w.down, &mut ws.o)],
            &ws.gate,
            kernel.input(&ws.xb, &ws.xs),
            following.as_ref().map_or(&[][..], |f| &f[..]),
        );
        x.par_chunks_mut(c * d)
            .zip(ws.o.par_chunks(c * d))
            .for_each(|(x, o)| add_into(x, o));
    }

    /// Block `l` for one new token per sequence (`x` `[n, d]`, updated in place) at rotary
    /// positions `pos`, attending to each sequence's cache (extended here) plus itself.
    fn decode_block(&self, l: usize, x: &mut [f32], rope: &RopeTable, caches: &mut [SeqCache]) {
        let cfg = &self.cfg;
        let (d, n) = (cfg.hidden_size, caches.len());
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
        rope.apply(&mut q, 0, heads, hd);
        rope.apply(&mut k, 0, kv_heads, hd);
        for (r, c) in caches.iter_mut().enumerate() {
            c.k[l].extend_from_slice(&k[r * kvd..(r + 1) * kvd]);
            c.v[l].extend_from_slice(&v[r * kvd..(r + 1) * kvd]);
        }
        let caches: &[SeqCache] = caches;
        let ctx = attention_one(cfg, &q, n, &|r| {
            let c = &caches[r];
            (&c.k[l][..], &c.v[l][..], c.k[l].len() / kvd)
        });
        let o = w.o.apply(&ctx, n);
        add_into(x, &o);
        let h = rms_norm(x, w.ln2.get(), d, cfg.rms_norm_eps);
        let mut gate = w.gate.apply(&h, n);
        let up = w.up.apply(&h, n);
        silu_mul(&mut gate, &up);
        let down = w.down.apply(&gate, n);
        add_into(x, &down);
    }
}

/// Causal attention of one head over one sequence: `q`, `k`, `v` are the packed `[rows, qd]` /
/// `[rows, kvd]` projections, `rows` the sequence's rows, `out` its `[len, head_dim]` output for
/// query head `h` (key/value head `kvh`). With `kernel`, on the AVX-512 kernel when the CPU has
/// it, else two `gemm` products.
#[allow(clippy::too_many_arguments)]
fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (qd, kvd, hd): (usize, usize, usize),
    (h, kvh): (usize, usize),
    rows: std::ops::Range<usize>,
    out: &mut [f32],
    kernel: bool,
) {
    let (start, len) = (rows.start, rows.len());
    let scale = (1.0 / (hd as f64).sqrt()) as f32;
    let (q0, kv0) = (start * qd + h * hd, start * kvd + kvh * hd);
    if kernel
        && packed::causal_attention(
            (&q[q0..], qd),
            (&k[kv0..], &v[kv0..], kvd),
            len,
            hd,
            scale,
            out,
        )
    {
        return;
    }
    let mut scores = vec![0f32; len * len];
    let qm = Mat {
        data: &q[start * qd + h * hd..],
        rows: len,
        cols: hd,
        rs: qd,
        cs: 1,
    };
    let kt = Mat {
        data: &k[start * kvd + kvh * hd..],
        rows: hd,
        cols: len,
        rs: 1,
        cs: kvd,
    };
    gemm_st(&mut scores, len, qm, kt);
    for (i, row) in scores.chunks_mut(len).enumerate() {
        let (seen, future) = row.split_at_mut(i + 1);
        softmax_scaled(seen, scale);
        future.fill(0.0);
    }
    let vm = Mat {
        data: &v[start * kvd + kvh * hd..],
        rows: len,
        cols: hd,
        rs: kvd,
        cs: 1,
    };
    gemm_st(out, hd, Mat::dense(&scores, len, len), vm);
}

/// The sequences of a right-padded batch (`ids` `[batch, t]`), packed.
fn unpad(ids: &[u32], t: usize, lengths: &[usize]) -> Packed {
    Packed::new(
        lengths
            .iter()
            .enumerate()
            .map(|(b, &len)| &ids[b * t..b * t + len]),
    )
}

/// Packed rows `[Σ len, width]` as a right-padded `[batch, t, width]` buffer (zeros at padding).
fn pad(x: &[f32], p: &Packed, t: usize, width: usize) -> Vec<f32> {
    let mut y = vec![0f32; p.n_seqs() * t * width];
    for s in 0..p.n_seqs() {
        let r = p.range(s);
        y[s * t * width..(s * t + r.len()) * width]
            .copy_from_slice(&x[r.start * width..r.end * width]);
    }
    y
}

/// The forward pass of [`Llama::forward`] on [`Cpu`] (ids already checked). Padded positions
/// are never computed: their hidden states, final norm and logits are zeros.
#[allow(clippy::too_many_arguments)]
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
    let w = CpuLlama::new(m, Pack::None);
    let shape = (batch, t, lengths);
    forward_on(&w, &m.device(), ids, shape, hidden, final_norm, logits)
}

/// [`forward`] on prepared weights; `shape` is (batch, padded length, lengths).
fn forward_on(
    w: &CpuLlama,
    device: &burn_ndarray::NdArrayDevice,
    ids: &[u32],
    (batch, t, lengths): (usize, usize, &[usize]),
    hidden: &HiddenSelect,
    final_norm: bool,
    logits: LogitRows,
) -> ForwardOutput<Cpu> {
    let cfg = &w.cfg;
    let d = cfg.hidden_size;
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
        Tensor::from_data(TensorData::new(data, [batch, rows, width]), device)
    };
    let mut out = ForwardOutput {
        hidden: Vec::new(),
        final_norm: None,
        logits: None,
    };
    let p = unpad(ids, t, lengths);
    let x = w.run_packed(&p, last_layer, None, |i, x| {
        if wanted(i) {
            out.hidden.push((i, to_tensor(pad(x, &p, t, d), t, d)));
        }
    });
    if !need_top {
        return out;
    }
    // Packed row of (sequence, position), None at padding.
    let row_of = |s: usize, pos: usize| (pos < lengths[s]).then(|| p.starts[s] + pos);
    let picked = |x: &[f32], rows: &[usize]| -> Vec<f32> {
        let mut y = vec![0f32; rows.len() * d];
        for (s, &pos) in rows.iter().enumerate() {
            if let Some(r) = row_of(s, pos) {
                y[s * d..(s + 1) * d].copy_from_slice(&x[r * d..(r + 1) * d]);
            }
        }
        y
    };
    let v = cfg.vocab_size;
    match (&logits, final_norm) {
        (LogitRows::Positions(pos), false) => {
            let top = w.final_norm(&picked(&x, pos));
            out.logits = Some(to_tensor(w.logits(&top, batch), 1, v));
        }
        _ => {
            let top = w.final_norm(&x);
            out.logits = match &logits {
                LogitRows::None => None,
                LogitRows::All => {
                    let all = w.logits(&top, p.rows());
                    Some(to_tensor(pad(&all, &p, t, v), t, v))
                }
                LogitRows::Positions(pos) => {
                    Some(to_tensor(w.logits(&picked(&top, pos), batch), 1, v))
                }
            };
            if final_norm {
                out.final_norm = Some(to_tensor(pad(&top, &p, t, d), t, d));
            }
        }
    }
    out
}

impl Llama<Cpu> {
    /// Weighted sums of hidden states per sequence, computed on the CPU fast path without
    /// building a tensor per layer (probe extraction's pooling).
    ///
    /// `weights[s]` holds one weight per token of `seqs[s]`; the result has one `[n_seqs,
    /// hidden]` row-major matrix per entry of `layers` (hidden-state indices in `0..=L`, see
    /// [`crate::model::llama`]), whose row `s` is `Σ_p weights[s][p] · hidden[layer][s, p]`.
    /// The sequences run as one packed batch (no padding); the forward pass stops after the
    /// deepest requested layer.
    pub fn pooled_hidden_states(
        &self,
        seqs: &[Vec<u32>],
        layers: &[usize],
        weights: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>> {
        check_pooling(self, seqs, layers, weights)?;
        Ok(pool(
            &CpuLlama::new(self, Pack::None),
            seqs,
            layers,
            weights,
        ))
    }

    /// This model prepared for repeated inference on the CPU fast path: every linear layer's
    /// weight packed once into the AVX-512 kernel's column panels (a copy the size of the
    /// linear weights; without AVX-512 nothing is packed). Keep it across calls: packing costs
    /// a pass over the weights.
    pub fn prepare(&self) -> PreparedLlama<'_> {
        self.prepare_with(MatmulPrecision::Highest)
    }

    /// [`Llama::prepare`] at a matrix-product precision: `High` splits every linear weight
    /// into bf16 hi/lo tiles for the AMX kernel instead (where the CPU has AMX; elsewhere it
    /// prepares for `Highest`, see [`PreparedLlama::matmul_precision`]).
    pub fn prepare_with(&self, precision: MatmulPrecision) -> PreparedLlama<'_> {
        PreparedLlama {
            model: self,
            w: CpuLlama::new(self, Pack::prepared(precision)),
        }
    }
}

/// Errors unless `layers`, `weights` and `seqs` make a valid pooling request for `m`.
fn check_pooling(
    m: &Llama<Cpu>,
    seqs: &[Vec<u32>],
    layers: &[usize],
    weights: &[Vec<f32>],
) -> Result<()> {
    let n_layers = m.config().num_hidden_layers;
    if let Some(bad) = layers.iter().find(|&&l| l > n_layers) {
        return Err(Error::invalid(
            "hidden layer",
            format!("{bad} is out of range; this model has hidden states 0..={n_layers}"),
        ));
    }
    if weights.len() != seqs.len() {
        return Err(Error::invalid(
            "pooling weights",
            format!("{} weight rows for {} sequences", weights.len(), seqs.len()),
        ));
    }
    for (i, (s, wt)) in seqs.iter().zip(weights).enumerate() {
        if s.is_empty() || wt.len() != s.len() {
            return Err(Error::invalid(
                "pooling weights",
                format!(
                    "sequence {i} has {} tokens and {} weights (needs at least one token \
                         and one weight per token)",
                    s.len(),
                    wt.len()
                ),
            ));
        }
        m.check_ids(s)?;
    }
    Ok(())
}

/// [`Llama::pooled_hidden_states`] on `w` (request already checked).
fn pool(w: &CpuLlama, seqs: &[Vec<u32>], layers: &[usize], weights: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let d = w.cfg.hidden_size;
    let p = Packed::new(seqs.iter().map(Vec::as_slice));
    let mut pooled = vec![vec![0f32; seqs.len() * d]; layers.len()];
    let upto = layers.iter().copied().max().unwrap_or(0);
    w.run_packed(&p, upto, None, |i, x| {
        for (slot, _) in layers.iter().enumerate().filter(|&(_, &l)| l == i) {
            for (s, (row, wt)) in pooled[slot].chunks_mut(d).zip(weights).enumerate() {
                for (r, &c) in p.range(s).zip(wt) {
                    if c != 0.0 {
                        for (a, &b) in row.iter_mut().zip(&x[r * d..(r + 1) * d]) {
                            *a += c * b;
                        }
                    }
                }
            }
        }
    });
    pooled
}

/// A [`Llama`] on [`Cpu`] prepared for repeated inference ([`Llama::prepare`]): the fast path
/// on weights packed once. It computes exactly what the unprepared calls compute (the same
/// bits: the kernel reads packed and stored weights in the same order).
pub struct PreparedLlama<'m> {
    model: &'m Llama<Cpu>,
    w: CpuLlama,
}

impl PreparedLlama<'_> {
    /// The model it was prepared from.
    pub fn model(&self) -> &Llama<Cpu> {
        self.model
    }

    /// Bytes of the packed weights held besides the model's own.
    pub fn packed_bytes(&self) -> usize {
        self.w.packed_bytes()
    }

    /// The precision its products run at (`High` only where AMX was available).
    pub fn matmul_precision(&self) -> MatmulPrecision {
        match self.w.pack {
            Pack::Amx => MatmulPrecision::High,
            Pack::Avx512 | Pack::None => MatmulPrecision::Highest,
        }
    }

    /// [`Llama::forward`] on the packed weights (the same checks and outputs).
    pub fn forward(&self, batch: &TokenBatch, opts: &ForwardOptions) -> Result<ForwardOutput<Cpu>> {
        let m = self.model;
        let logits = m.check_forward(batch, opts)?;
        let shape = (batch.batch_size(), batch.seq_len(), batch.lengths());
        Ok(forward_on(
            &self.w,
            &m.device(),
            batch.ids(),
            shape,
            &opts.hidden,
            opts.final_norm,
            logits,
        ))
    }

    /// [`Llama::pooled_hidden_states`] on the packed weights (the same checks and result).
    pub fn pooled_hidden_states(
        &self,
        seqs: &[Vec<u32>],
        layers: &[usize],
        weights: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>> {
        check_pooling(self.model, seqs, layers, weights)?;
        Ok(pool(&self.w, seqs, layers, weights))
    }
}

/// Incremental decoding state of [`crate::model::generate`] on [`Cpu`]: one cache per sequence.
pub(crate) struct Decoder {
    w: CpuLlama,
    caches: Vec<SeqCache>,
}

impl Decoder {
    /// Run the prompts (packed, no padding) and return each one's last-position logits
    /// `[B · vocab]`.
    pub(crate) fn prefill(m: &Llama<Cpu>, prompts: &[Vec<u32>]) -> (Decoder, Vec<f32>) {
        let w = CpuLlama::new(m, Pack::None);
        let d = w.cfg.hidden_size;
        let p = Packed::new(prompts.iter().map(Vec::as_slice));
        let mut caches: Vec<SeqCache> = (0..prompts.len())
            .map(|_| SeqCache::new(w.layers.len()))
            .collect();
        let x = w.run_packed(&p, w.layers.len(), Some(&mut caches), |_, _| {});
        let mut last = vec![0f32; prompts.len() * d];
        for (s, c) in caches.iter_mut().enumerate() {
            let rows = p.range(s);
            c.len = rows.len();
            if let Some(r) = rows.last() {
                last[s * d..(s + 1) * d].copy_from_slice(&x[r * d..(r + 1) * d]);
            }
        }
        let logits = w.logits(&w.final_norm(&last), prompts.len());
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
        for l in 0..self.w.layers.len() {
            self.w.decode_block(l, &mut x, &rope, &mut self.caches);
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

    /// Rotate every head of `x` (`[rows, heads · head_dim]`, the table's rows from `first`)
    /// in place (half-split layout).
    fn apply(&self, x: &mut [f32], first: usize, heads: usize, hd: usize) {
        let half = self.half;
        for (i, row) in x.chunks_mut(heads * hd).enumerate() {
            let r = first + i;
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
        }
    }
}

/// Scaled dot-product attention of one query row per sequence over grouped KV heads: row `r` of
/// `q` (`[n, heads · hd]`) attends to the `s` key/value rows `keys(r)` returns
/// (`[s, kv_heads · hd]` each).
fn attention_one<'k>(
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
            for (j, sc) in scores.iter_mut().enumerate() {
                *sc = dot(qh, &ks[j * kvd + off..j * kvd + off + hd]);
            }
            softmax_scaled(&mut scores, scale);
            let oh = &mut o[h * hd..(h + 1) * hd];
            for (j, &p) in scores.iter().enumerate() {
                let vr = &vs[j * kvd + off..j * kvd + off + hd];
                for (a, &b) in oh.iter_mut().zip(vr) {
                    *a += p * b;
                }
            }
        }
    });
    out
}

/// [`rms_norm_into`] into a new buffer.
fn rms_norm(x: &[f32], w: &[f32], d: usize, eps: f64) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    rms_norm_into(&mut y, x, w, d, eps);
    y
}
