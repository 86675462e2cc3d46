//! The CPU training fast path: the loss and every parameter gradient of one optimizer step,
//! computed by a hand-written forward and backward pass over the f32 weights of a model on
//! [`CpuAutodiff`] (burn's ndarray backend under autodiff).
//!
//! [`super::step::accumulate`] switches to it by itself on that backend (set
//! `MIXPROBE_TRAIN_GENERIC=1` to force burn's autodiff graph, the reference). It computes the same
//! function as the generic path: same loss scaling (`Σ nll / total targets of the step`), lm
//! head only at the target positions, same rotary tables, masking, RMSNorm and SwiGLU formulas,
//! f32 throughout; only summation orders differ. What it saves: burn's graph copies both operands
//! of every matmul and materializes each reshape, transpose and `[targets × vocab]` buffer
//! (logits, log-probabilities and their gradients), while here the weights are read in place,
//! matrix products run on `gemm` (AVX-512 kernels, threads from the current rayon pool), and
//! the lm head, log-softmax and NLL are fused over row chunks of the targets, so that only one
//! `[256 × vocab]` buffer exists. Everything is deterministic run to run: gemm reduces in a
//! fixed order and every other kernel splits work by rows.
//!
//! The gradients come back as a [`GradientsParams`] holding tensors of the inner backend under
//! each parameter's id, so the optimizer, clipping and checkpoints work unchanged.
use super::batch::MicroBatch;
use super::fast_ops::{
    AttnShape, Head, Rope, attention, attention_backward, from_heads, head_loss, linear,
    linear_backward, rms_norm, rms_norm_backward, swiglu, swiglu_backward, to_heads,
};
use super::step::StepStats;
use crate::error::{Error, Result};
use crate::model::llama::Proj;
use crate::model::{CpuAutodiff, CpuBackend, HostTensor, Llama, LlamaConfig};
use burn::module::{Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_ndarray::{NdArrayTensor, SharedArray};

/// A parameter's values as a contiguous row-major slice: the tensor's own memory when it is
/// contiguous, else a host copy.
enum Values {
    Shared(SharedArray<f32>),
    Owned(Vec<f32>),
}

impl Values {
    fn get(&self) -> &[f32] {
        match self {
            // Checked contiguous at construction.
            Values::Shared(a) => a.as_slice().unwrap_or(&[]),
            Values::Owned(v) => v,
        }
    }
}

/// One parameter: its id, shape, values and gradient buffer (same layout as the values).
struct HostParam {
    id: ParamId,
    shape: Vec<usize>,
    val: Values,
    grad: Vec<f32>,
}

impl HostParam {
    fn of<const D: usize>(p: &Param<Tensor<CpuAutodiff, D>>) -> HostParam {
        let t = p.val().inner();
        let shape = t.dims().to_vec();
        let n: usize = shape.iter().product();
        let mut val = None;
        if let TensorPrimitive::Float(NdArrayTensor::F32(storage)) = t.clone().into_primitive() {
            let a = storage.into_owned();
            if a.as_slice().is_some_and(|s| s.len() == n) {
                val = Some(Values::Shared(a));
            }
        }
        let val = val.unwrap_or_else(|| Values::Owned(HostTensor::from_tensor(t).data));
        HostParam {
            id: p.id,
            shape,
            val,
            grad: vec![0.0; n],
        }
    }

    /// Hand the gradient over as a tensor of the inner backend.
    fn register(self, out: &mut GradientsParams) -> Result<()> {
        let shape = self.shape.clone();
        let array = SharedArray::<f32>::from_shape_vec(shape.clone(), self.grad)
            .map_err(|e| Error::Internal(format!("gradient of shape {shape:?}: {e}")))?;
        let prim = TensorPrimitive::Float(NdArrayTensor::from(array));
        match shape.len() {
            1 => out.register::<CpuBackend, 1>(self.id, Tensor::from_primitive(prim)),
            2 => out.register::<CpuBackend, 2>(self.id, Tensor::from_primitive(prim)),
            r => return Err(Error::Internal(format!("parameter of rank {r}"))),
        }
        Ok(())
    }
}

/// A linear projection `x W (+ b)`, `W` stored `[inp, out]`.
struct HostLinear {
    w: HostParam,
    b: Option<HostParam>,
    inp: usize,
    out: usize,
}

impl HostLinear {
    fn of(p: &Proj<CpuAutodiff>) -> HostLinear {
        let w = HostParam::of(&p.weight);
        let (inp, out) = (w.shape[0], w.shape[1]);
        HostLinear {
            w,
            b: p.bias.as_ref().map(HostParam::of),
            inp,
            out,
        }
    }

    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let bias = self.b.as_ref().map(|b| b.val.get());
        linear(x, self.w.val.get(), bias, self.inp, self.out)
    }

    /// Accumulate the weight (and bias) gradients of `dy` and write (or add) `dy · Wᵀ` to `dx`.
    fn backward(&mut self, dy: &[f32], x: &[f32], dx: &mut [f32], accumulate_dx: bool) {
        linear_backward(
            dy,
            x,
            self.w.val.get(),
            self.inp,
            self.out,
            &mut self.w.grad,
            self.b.as_mut().map(|b| &mut b.grad[..]),
            dx,
            accumulate_dx,
        );
    }

    fn params(self) -> impl Iterator<Item = HostParam> {
        std::iter::once(self.w).chain(self.b)
    }
}

struct HostLayer {
    ln1: HostParam,
    q: HostLinear,
    k: HostLinear,
    v: HostLinear,
    o: HostLinear,
    ln2: HostParam,
    gate: HostLinear,
    up: HostLinear,
    down: HostLinear,
}

/// The model's parameters on the host with their gradient buffers.
struct HostModel {
    cfg: LlamaConfig,
    embed: HostParam,
    layers: Vec<HostLayer>,
    norm: HostParam,
    /// `None` when tied to the embedding.
    head: Option<HostLinear>,
}

/// What one block's forward pass keeps for its backward pass.
struct Saved {
    x_in: Vec<f32>,
    inv1: Vec<f32>,
    h1: Vec<f32>,
    /// Head-major, after rotation.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    probs: Vec<f32>,
    ctx: Vec<f32>,
    x_mid: Vec<f32>,
    inv2: Vec<f32>,
    h2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
}

impl HostModel {
    fn new(m: &Llama<CpuAutodiff>) -> HostModel {
        HostModel {
            cfg: m.config().clone(),
            embed: HostParam::of(&m.embed_tokens),
            layers: m
                .layers
                .iter()
                .map(|l| HostLayer {
                    ln1: HostParam::of(&l.input_layernorm),
                    q: HostLinear::of(&l.q_proj),
                    k: HostLinear::of(&l.k_proj),
                    v: HostLinear::of(&l.v_proj),
                    o: HostLinear::of(&l.o_proj),
                    ln2: HostParam::of(&l.post_attention_layernorm),
                    gate: HostLinear::of(&l.gate_proj),
                    up: HostLinear::of(&l.up_proj),
                    down: HostLinear::of(&l.down_proj),
                })
                .collect(),
            norm: HostParam::of(&m.norm),
            head: m.lm_head.as_ref().map(HostLinear::of),
        }
    }

    fn attn_shape(&self, t: usize) -> AttnShape {
        AttnShape {
            t,
            heads: self.cfg.num_attention_heads,
            kv_heads: self.cfg.num_key_value_heads,
            hd: self.cfg.head_dim,
        }
    }

    /// Forward block `l` on `x` (`[b·t, d]`, `b = lengths.len()`), returning its output and
    /// what backward needs.
    fn block_forward(
        &self,
        l: usize,
        x: Vec<f32>,
        lengths: &[usize],
        rope: &Rope,
    ) -> (Vec<f32>, Saved) {
        let cfg = &self.cfg;
        let (d, eps) = (cfg.hidden_size, cfg.rms_norm_eps as f32);
        let s = self.attn_shape(x.len() / d / lengths.len());
        let w = &self.layers[l];
        let (h1, inv1) = rms_norm(&x, w.ln1.val.get(), d, eps);
        let mut q = to_heads(&w.q.forward(&h1), s.t, s.heads, s.hd);
        let mut k = to_heads(&w.k.forward(&h1), s.t, s.kv_heads, s.hd);
        let v = to_heads(&w.v.forward(&h1), s.t, s.kv_heads, s.hd);
        rope.apply(&mut q, s.t, false);
        rope.apply(&mut k, s.t, false);
        let (out, probs) = attention(&q, &k, &v, lengths, s);
        let ctx = from_heads(&out, s.t, s.heads, s.hd);
        let mut x_mid = w.o.forward(&ctx);
        add_into(&mut x_mid, &x);
        let (h2, inv2) = rms_norm(&x_mid, w.ln2.val.get(), d, eps);
        let gate = w.gate.forward(&h2);
        let up = w.up.forward(&h2);
        let act = swiglu(&gate, &up);
        let mut x_out = w.down.forward(&act);
        add_into(&mut x_out, &x_mid);
        let saved = Saved {
            x_in: x,
            inv1,
            h1,
            q,
            k,
            v,
            probs,
            ctx,
            x_mid,
            inv2,
            h2,
            gate,
            up,
            act,
        };
        (x_out, saved)
    }

    /// Backward of block `l`: `dx` holds `∂L/∂output` and becomes `∂L/∂input`; weight
    /// gradients are added to the parameters' buffers.
    fn block_backward(&mut self, l: usize, dx: &mut [f32], saved: Saved, rope: &Rope, t: usize) {
        let d = self.cfg.hidden_size;
        let s = self.attn_shape(t);
        let w = &mut self.layers[l];
        let Saved {
            x_in,
            inv1,
            h1,
            q,
            k,
            v,
            probs,
            ctx,
            x_mid,
            inv2,
            h2,
            mut gate,
            mut up,
            act,
        } = saved;
        let n = x_in.len() / d;
        // MLP: x_out = x_mid + down(silu(gate) ∘ up).
        let mut da = vec![0f32; n * w.down.inp];
        w.down.backward(dx, &act, &mut da, false);
        drop(act);
        swiglu_backward(&da, &mut gate, &mut up);
        let mut dh = vec![0f32; n * d];
        w.gate.backward(&gate, &h2, &mut dh, false);
        w.up.backward(&up, &h2, &mut dh, true);
        rms_norm_backward(&dh, &x_mid, &inv2, w.ln2.val.get(), d, dx, &mut w.ln2.grad);
        // Attention: x_mid = x_in + o(attn(q, k, v)).
        let mut dctx = vec![0f32; ctx.len()];
        w.o.backward(dx, &ctx, &mut dctx, false);
        let d_out = to_heads(&dctx, s.t, s.heads, s.hd);
        let (mut dq, mut dk, dv) = attention_backward(&d_out, &q, &k, &v, &probs, s);
        rope.apply(&mut dq, s.t, true);
        rope.apply(&mut dk, s.t, true);
        let dq = from_heads(&dq, s.t, s.heads, s.hd);
        let dk = from_heads(&dk, s.t, s.kv_heads, s.hd);
        let dv = from_heads(&dv, s.t, s.kv_heads, s.hd);
        w.q.backward(&dq, &h1, &mut dh, false);
        w.k.backward(&dk, &h1, &mut dh, true);
        w.v.backward(&dv, &h1, &mut dh, true);
        rms_norm_backward(&dh, &x_in, &inv1, w.ln1.val.get(), d, dx, &mut w.ln1.grad);
    }

    /// Forward and backward of one micro-batch: adds the gradients of
    /// `Σ nll / total` to the buffers and returns each target's NLL.
    fn micro_batch(&mut self, mb: &MicroBatch, total: usize) -> Vec<f32> {
        let cfg = self.cfg.clone();
        let d = cfg.hidden_size;
        let (b, t) = (mb.batch.batch_size(), mb.batch.seq_len());
        let ids = mb.batch.ids();
        let lengths = mb.batch.lengths();
        let rope = Rope::new(cfg.head_dim, cfg.rope_theta, t);
        let mut x = Vec::with_capacity(b * t * d);
        {
            let e = self.embed.val.get();
            for &id in ids {
                let id = id as usize;
                x.extend_from_slice(&e[id * d..(id + 1) * d]);
            }
        }
        let mut saved = Vec::with_capacity(self.layers.len());
        for l in 0..self.layers.len() {
            let (next, s) = self.block_forward(l, x, lengths, &rope);
            saved.push(s);
            x = next;
        }
        // Final norm and the fused head + loss at the target positions only.
        let mut top = Vec::with_capacity(mb.positions.len() * d);
        for &p in &mb.positions {
            top.extend_from_slice(&x[p * d..(p + 1) * d]);
        }
        drop(x);
        let eps = cfg.rms_norm_eps as f32;
        let (hf, invf) = rms_norm(&top, self.norm.val.get(), d, eps);
        let inv_total = 1.0 / total as f32;
        let (nll, dhf) = match &mut self.head {
            Some(h) => head_loss(
                &hf,
                &mb.targets,
                &Head {
                    w: h.w.val.get(),
                    tied: false,
                    vocab: cfg.vocab_size,
                    d,
                },
                inv_total,
                &mut h.w.grad,
            ),
            None => head_loss(
                &hf,
                &mb.targets,
                &Head {
                    w: self.embed.val.get(),
                    tied: true,
                    vocab: cfg.vocab_size,
                    d,
                },
                inv_total,
                &mut self.embed.grad,
            ),
        };
        let mut dtop = vec![0f32; top.len()];
        rms_norm_backward(
            &dhf,
            &top,
            &invf,
            self.norm.val.get(),
            d,
            &mut dtop,
            &mut self.norm.grad,
        );
        let mut dx = vec![0f32; b * t * d];
        for (&p, g) in mb.positions.iter().zip(dtop.chunks(d)) {
            add_into(&mut dx[p * d..(p + 1) * d], g);
        }
        for l in (0..self.layers.len()).rev() {
            let s = saved
                .pop()
                .unwrap_or_else(|| unreachable!("one saved state per layer"));
            self.block_backward(l, &mut dx, s, &rope, t);
        }
        for (&id, g) in ids.iter().zip(dx.chunks(d)) {
            let id = id as usize;
            add_into(&mut self.embed.grad[id * d..(id + 1) * d], g);
        }
        nll
    }

    /// Every parameter's gradient as a [`GradientsParams`].
    fn into_grads(self) -> Result<GradientsParams> {
        let mut out = GradientsParams::new();
        self.embed.register(&mut out)?;
        for l in self.layers {
            for p in [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]
                .into_iter()
                .flat_map(HostLinear::params)
                .chain([l.ln1, l.ln2])
            {
                p.register(&mut out)?;
            }
        }
        self.norm.register(&mut out)?;
        for p in self.head.into_iter().flat_map(HostLinear::params) {
            p.register(&mut out)?;
        }
        Ok(out)
    }
}

/// [`super::step::accumulate`] on [`CpuAutodiff`]: forward and backward over the micro-batches
/// of one optimizer step by hand; returns the summed gradients of the per-token mean loss and
/// the step's statistics (the same values as the generic path up to summation order).
pub fn accumulate(
    model: &Llama<CpuAutodiff>,
    micro: &[MicroBatch],
    n_groups: usize,
) -> Result<(GradientsParams, StepStats)> {
    let mut stats = StepStats::start(micro, n_groups)?;
    let total = stats.targets;
    let mut host = HostModel::new(model);
    for mb in micro {
        stats.tokens += mb.tokens;
        if mb.positions.is_empty() {
            continue;
        }
        model.check_ids(mb.batch.ids())?;
        if let Some(&bad) = mb
            .targets
            .iter()
            .find(|&&x| x as usize >= host.cfg.vocab_size)
        {
            return Err(Error::invalid(
                "token id",
                format!(
                    "{bad} is outside the vocabulary (size {})",
                    host.cfg.vocab_size
                ),
            ));
        }
        let values = host.micro_batch(mb, total);
        stats.add(&mb.groups, &values)?;
    }
    Ok((host.into_grads()?, stats.finish()))
}

fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
