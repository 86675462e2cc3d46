//! The LLaMA-family decoder: token embedding, pre-norm blocks (RMSNorm, rotary grouped-query
//! attention, SwiGLU MLP), final RMSNorm and the lm head (tied to the embedding or separate).
//!
//! # Hidden-state numbering (used everywhere in the toolkit)
//! `hidden[0]` is the token embedding; `hidden[i]` (1 ≤ i ≤ L) is the residual stream after
//! blocks 1..=i, i.e. the output of the i-th block, *before* the final norm. The final-normed last
//! layer (transformers' `hidden_states[-1]`) is returned separately as `final_norm`.
//!
//! # Padding
//! Batches are right-padded ([`TokenBatch`]); positions count from 0 in every sequence, and padded
//! keys are masked, so a padded row gives the same values as running the sequence alone (values
//! at padded positions themselves are meaningless).
//!
//! # Layout
//! Linear weights are stored `[in, out]` (`y = x W`), the transpose of Hugging Face's
//! `[out, in]`; [`ParamView`] converts. Rotary embeddings use Hugging Face's half-split layout.
use super::config::LlamaConfig;
use super::host::HostTensor;
use super::precision::Precision;
use crate::error::{Error, Result};
use burn::module::{Module, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData, activation};
use rand::Rng;

/// A linear projection `y = x W (+ b)` with `W` stored `[in, out]`.
#[derive(Module, Debug)]
pub struct Proj<B: Backend> {
    pub(crate) weight: Param<Tensor<B, 2>>,
    pub(crate) bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Proj<B> {
    /// `x W (+ b)`, the product in precision `p` (the result in f32).
    fn forward(&self, x: Tensor<B, 3>, p: Precision) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let y = burn::tensor::module::linear(
            p.operand(x.reshape([b * t, d])),
            p.operand(self.weight.val()),
            self.bias.as_ref().map(|b| p.operand(b.val())),
        );
        let out = y.dims()[1];
        p.result(y).reshape([b, t, out])
    }
}

/// One decoder block.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub(crate) input_layernorm: Param<Tensor<B, 1>>,
    pub(crate) q_proj: Proj<B>,
    pub(crate) k_proj: Proj<B>,
    pub(crate) v_proj: Proj<B>,
    pub(crate) o_proj: Proj<B>,
    pub(crate) post_attention_layernorm: Param<Tensor<B, 1>>,
    pub(crate) gate_proj: Proj<B>,
    pub(crate) up_proj: Proj<B>,
    pub(crate) down_proj: Proj<B>,
}

/// The decoder. Build it with [`Llama::init`] (seeded, from scratch) or load it with
/// [`crate::model::load_hf_dir`].
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    pub(crate) embed_tokens: Param<Tensor<B, 2>>,
    pub(crate) layers: Vec<Block<B>>,
    pub(crate) norm: Param<Tensor<B, 1>>,
    /// `None` when tied to `embed_tokens`.
    pub(crate) lm_head: Option<Proj<B>>,
    #[module(skip)]
    config: LlamaConfig,
    /// The precision of the matrix products (fp32 unless set with [`Llama::with_precision`]).
    #[module(skip)]
    precision: Precision,
}

/// A parameter as the checkpoint sees it, under its Hugging Face name.
#[derive(Debug, Clone)]
pub enum ParamView<B: Backend> {
    /// A vector (norm weight, bias): same layout as Hugging Face.
    Vector(Param<Tensor<B, 1>>),
    /// The embedding matrix `[vocab, hidden]`: same layout as Hugging Face.
    Embedding(Param<Tensor<B, 2>>),
    /// A linear weight stored `[in, out]`: Hugging Face's `[out, in]` transposed.
    Linear(Param<Tensor<B, 2>>),
}

impl<B: Backend> ParamView<B> {
    /// The value in Hugging Face layout.
    pub fn to_host(&self) -> HostTensor {
        match self {
            ParamView::Vector(p) => HostTensor::from_tensor(p.val()),
            ParamView::Embedding(p) => HostTensor::from_tensor(p.val()),
            ParamView::Linear(p) => HostTensor::from_tensor(p.val()).transpose(),
        }
    }
}

impl<B: AutodiffBackend> ParamView<B> {
    /// The gradient in Hugging Face layout, if the parameter took part in the graph.
    pub fn grad_host(&self, grads: &B::Gradients) -> Option<HostTensor> {
        match self {
            ParamView::Vector(p) => p.val().grad(grads).map(HostTensor::from_tensor),
            ParamView::Embedding(p) => p.val().grad(grads).map(HostTensor::from_tensor),
            ParamView::Linear(p) => p
                .val()
                .grad(grads)
                .map(|g| HostTensor::from_tensor(g).transpose()),
        }
    }
}

/// Which residual-stream states to return (see the module docs for the numbering).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum HiddenSelect {
    /// None (the cheapest).
    #[default]
    None,
    /// `hidden[0..=L]`.
    All,
    /// Only these indices (each in `0..=L`); the forward pass stops after the last one needed.
    Layers(Vec<usize>),
}

/// Which logits to compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogitsSelect {
    /// No logits (and no lm head matmul).
    #[default]
    None,
    /// Every position: `[B, T, vocab]`.
    All,
    /// The last real (unpadded) position of each sequence: `[B, 1, vocab]`.
    Last,
}

/// What a forward pass returns.
#[derive(Debug, Clone, Default)]
pub struct ForwardOptions {
    pub hidden: HiddenSelect,
    /// Return the final-normed last layer.
    pub final_norm: bool,
    pub logits: LogitsSelect,
}

impl ForwardOptions {
    /// Logits at every position only.
    pub fn logits() -> ForwardOptions {
        ForwardOptions {
            logits: LogitsSelect::All,
            ..Default::default()
        }
    }

    /// Every hidden state, the final-normed output and all logits.
    pub fn everything() -> ForwardOptions {
        ForwardOptions {
            hidden: HiddenSelect::All,
            final_norm: true,
            logits: LogitsSelect::All,
        }
    }
}

/// The result of a forward pass; each tensor is `[B, T, ·]` (logits `[B, 1, V]` for `Last`).
#[derive(Debug, Clone)]
pub struct ForwardOutput<B: Backend> {
    /// `(index, state)` pairs in increasing index order, as selected.
    pub hidden: Vec<(usize, Tensor<B, 3>)>,
    pub final_norm: Option<Tensor<B, 3>>,
    pub logits: Option<Tensor<B, 3>>,
}

impl<B: Backend> ForwardOutput<B> {
    /// `hidden[i]`, if it was selected.
    pub fn hidden(&self, i: usize) -> Option<&Tensor<B, 3>> {
        self.hidden.iter().find(|(j, _)| *j == i).map(|(_, t)| t)
    }
}

/// A right-padded batch of token sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    ids: Vec<u32>,
    batch: usize,
    seq_len: usize,
    lengths: Vec<usize>,
}

impl TokenBatch {
    /// Right-pad `seqs` with `pad_id` to the longest one. Every sequence needs at least one token.
    pub fn new(seqs: &[Vec<u32>], pad_id: u32) -> Result<TokenBatch> {
        if seqs.is_empty() {
            return Err(Error::invalid("token batch", "no sequences"));
        }
        if let Some(i) = seqs.iter().position(Vec::is_empty) {
            return Err(Error::invalid(
                "token batch",
                format!("sequence {i} is empty"),
            ));
        }
        let seq_len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(seqs.len() * seq_len);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(pad_id, seq_len - s.len()));
        }
        let lengths = seqs.iter().map(Vec::len).collect();
        Ok(TokenBatch {
            ids,
            batch: seqs.len(),
            seq_len,
            lengths,
        })
    }

    /// A batch from padded ids `[batch, seq_len]` (row-major) and a Hugging Face style attention
    /// mask (1 = token, 0 = padding), which must be right padding: ones, then zeros, at least one 1.
    pub fn from_padded(
        ids: Vec<u32>,
        batch: usize,
        seq_len: usize,
        mask: &[u8],
    ) -> Result<TokenBatch> {
        let n = batch * seq_len;
        if batch == 0 || seq_len == 0 || ids.len() != n || mask.len() != n {
            return Err(Error::invalid(
                "token batch",
                format!(
                    "expected {batch} × {seq_len} ids and mask values, got {} ids and {} mask values",
                    ids.len(),
                    mask.len()
                ),
            ));
        }
        let mut lengths = Vec::with_capacity(batch);
        for (b, row) in mask.chunks(seq_len).enumerate() {
            let len = row.iter().take_while(|&&m| m == 1).count();
            if len == 0 || row[len..].iter().any(|&m| m != 0) {
                return Err(Error::invalid(
                    "attention mask",
                    format!("row {b} is not right padding (ones then zeros, at least one 1)"),
                ));
            }
            lengths.push(len);
        }
        Ok(TokenBatch {
            ids,
            batch,
            seq_len,
            lengths,
        })
    }

    /// Number of sequences.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Padded length T.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Real length of each sequence.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// Padded ids, row-major `[B, T]`.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

/// Additive attention bias value for masked keys (finite, so fully-masked math never makes NaN).
const MASKED: f32 = f32::MIN;

/// Cached keys and values of every layer (`[B, KV, S, head_dim]` each) for incremental decoding.
#[derive(Debug, Clone)]
pub(crate) struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
}

impl<B: Backend> KvCache<B> {
    pub(crate) fn new(num_layers: usize) -> KvCache<B> {
        KvCache {
            layers: vec![None; num_layers],
        }
    }

    /// Keep only the given batch rows, in this order.
    pub(crate) fn select_rows(&mut self, rows: &[usize], device: &B::Device) {
        let idx = int_tensor::<B, 1>(
            rows.iter().map(|&r| r as i64).collect(),
            [rows.len()],
            device,
        );
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.clone().select(0, idx.clone());
            *v = v.clone().select(0, idx.clone());
        }
    }
}

/// Rotary tables for a `[Bm, T]` grid of positions (Bm = 1 when every row shares them):
/// `cos` and `sin_signed` (−sin on the first half, +sin on the second), `[Bm, T, 1, head_dim]`.
pub(crate) struct Rope<B: Backend> {
    cos: Tensor<B, 4>,
    sin_signed: Tensor<B, 4>,
}

impl<B: Backend> Rope<B> {
    /// Tables for `positions` (row-major `[rows, t]`), computed like transformers does in f32:
    /// `inv_freq[i] = 1 / theta^(2i/d)`, `angle = pos · inv_freq`.
    pub(crate) fn new(
        cfg: &LlamaConfig,
        positions: &[usize],
        rows: usize,
        t: usize,
        device: &B::Device,
    ) -> Rope<B> {
        let hd = cfg.head_dim;
        let half = hd / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let exponent = (2 * i) as f32 / hd as f32;
                1.0 / (cfg.rope_theta as f32).powf(exponent)
            })
            .collect();
        let mut cos = Vec::with_capacity(positions.len() * hd);
        let mut sin = Vec::with_capacity(positions.len() * hd);
        for &p in positions {
            let angles: Vec<f32> = inv_freq.iter().map(|f| p as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| (*a as f64).cos() as f32));
            }
            sin.extend(angles.iter().map(|a| -((*a as f64).sin() as f32)));
            sin.extend(angles.iter().map(|a| (*a as f64).sin() as f32));
        }
        let shape = [rows, t, 1, hd];
        Rope {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin_signed: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Rotate `x` (`[B, T, heads, head_dim]`): `x cos + rotate_half(x) sin`.
    fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let hd = x.dims()[3];
        let half = hd / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let swapped = Tensor::cat(vec![x2, x1], 3);
        x * self.cos.clone() + swapped * self.sin_signed.clone()
    }
}

/// Additive attention bias `[Bm, 1, G·T, S]` for `t` new queries per row after `past` cached
/// slots: query slot `past + i` sees key slot `s` iff `s ≤ past + i` and `key_valid[row][s]`.
/// Rows repeat `G` times (the grouped-query layout of the scores). Bm = 1 when no key is masked.
pub(crate) fn attention_bias<B: Backend>(
    key_valid: &[Vec<bool>],
    past: usize,
    t: usize,
    groups: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let s = past + t;
    let rows: Vec<&Vec<bool>> = if key_valid.iter().all(|r| r.iter().all(|&v| v)) {
        key_valid.iter().take(1).collect()
    } else {
        key_valid.iter().collect()
    };
    let mut data = Vec::with_capacity(rows.len() * groups * t * s);
    for valid in &rows {
        for _ in 0..groups {
            for i in 0..t {
                data.extend((0..s).map(|j| {
                    if j <= past + i && valid[j] {
                        0.0
                    } else {
                        MASKED
                    }
                }));
            }
        }
    }
    let bm = rows.len();
    Tensor::from_data(TensorData::new(data, [bm, 1, groups * t, s]), device)
}

fn int_tensor<B: Backend, const D: usize>(
    data: Vec<i64>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Row `pos[r]` of each batch row `r` of `x` (`[B, T, d]` → `[B, 1, d]`).
fn pick_rows<B: Backend>(x: Tensor<B, 3>, pos: &[usize]) -> Tensor<B, 3> {
    let [b, t, d] = x.dims();
    let rows = pos
        .iter()
        .enumerate()
        .map(|(r, &p)| (r * t + p) as i64)
        .collect();
    let idx = int_tensor::<B, 1>(rows, [b], &x.device());
    x.reshape([b * t, d]).select(0, idx).reshape([b, 1, d])
}

/// `x / sqrt(mean(x²) + eps) * w` over the last dimension.
fn rms_norm<B: Backend>(x: Tensor<B, 3>, weight: &Param<Tensor<B, 1>>, eps: f64) -> Tensor<B, 3> {
    let inv = x
        .clone()
        .square()
        .mean_dim(2)
        .add_scalar(eps)
        .sqrt()
        .recip();
    x * inv * weight.val().unsqueeze::<3>()
}

impl<B: Backend> Block<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        cfg: &LlamaConfig,
        p: Precision,
        rope: &Rope<B>,
        bias: &Tensor<B, 4>,
        cache: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    ) -> Tensor<B, 3> {
        let normed = rms_norm(x.clone(), &self.input_layernorm, cfg.rms_norm_eps);
        let h = x + self.attention(normed, cfg, p, rope, bias, cache);
        let normed = rms_norm(h.clone(), &self.post_attention_layernorm, cfg.rms_norm_eps);
        let gate = activation::silu(self.gate_proj.forward(normed.clone(), p));
        h + self
            .down_proj
            .forward(gate * self.up_proj.forward(normed, p), p)
    }

    fn attention(
        &self,
        x: Tensor<B, 3>,
        cfg: &LlamaConfig,
        p: Precision,
        rope: &Rope<B>,
        bias: &Tensor<B, 4>,
        cache: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    ) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let (h, kv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let g = h / kv;
        let q = self.q_proj.forward(x.clone(), p).reshape([b, t, h, hd]);
        let k = self.k_proj.forward(x.clone(), p).reshape([b, t, kv, hd]);
        let v = self.v_proj.forward(x, p).reshape([b, t, kv, hd]);
        // Query head `j·g + i` uses key/value head `j`: group the g query heads of each KV head
        // into the rows of one matrix, so the scores are one batched matmul without repeating K/V.
        let q = rope.apply(q).swap_dims(1, 2).reshape([b, kv, g * t, hd]);
        let mut k = rope.apply(k).swap_dims(1, 2);
        let mut v = v.swap_dims(1, 2);
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.take() {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = p
            .result(p.operand(q).matmul(p.operand(k.swap_dims(2, 3))))
            .mul_scalar(scale)
            + bias.clone();
        let probs = activation::softmax(scores, 3);
        let out = p
            .result(p.operand(probs).matmul(p.operand(v)))
            .reshape([b, h, t, hd])
            .swap_dims(1, 2)
            .reshape([b, t, h * hd]);
        self.o_proj.forward(out, p)
    }
}

/// Rows to take logits from inside [`Llama::run`].
pub(crate) enum LogitRows {
    None,
    All,
    /// One position per batch row.
    Positions(Vec<usize>),
}

/// What kind of tensor a checkpoint entry is (decides its initialization).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpecKind {
    Matrix,
    Norm,
    Bias,
}

/// Builds parameters from tensors in Hugging Face layout, checking each shape.
struct Builder<'a, B: Backend, F> {
    get: F,
    device: &'a B::Device,
}

impl<B: Backend, F: FnMut(&str, &[usize], SpecKind) -> Result<HostTensor>> Builder<'_, B, F> {
    fn fetch(&mut self, name: &str, shape: &[usize], kind: SpecKind) -> Result<HostTensor> {
        let t = (self.get)(name, shape, kind)?;
        if t.shape != shape {
            return Err(Error::model(format!(
                "tensor {name} has shape {:?}, expected {shape:?}",
                t.shape
            )));
        }
        Ok(t)
    }

    fn vector(&mut self, name: &str, len: usize, kind: SpecKind) -> Result<Param<Tensor<B, 1>>> {
        let t = self.fetch(name, &[len], kind)?;
        Ok(Param::from_tensor(t.to_tensor(self.device)))
    }

    fn proj(&mut self, name: &str, out: usize, inp: usize, bias: bool) -> Result<Proj<B>> {
        let w = self.fetch(&format!("{name}.weight"), &[out, inp], SpecKind::Matrix)?;
        let weight = Param::from_tensor(w.transpose().to_tensor(self.device));
        let bias = match bias {
            true => Some(self.vector(&format!("{name}.bias"), out, SpecKind::Bias)?),
            false => None,
        };
        Ok(Proj { weight, bias })
    }
}

impl<B: Backend> Llama<B> {
    /// A model with seeded random weights (normal with std 0.02, transformers' default
    /// `initializer_range`; norms 1, biases 0). Each tensor draws from its own stream named after
    /// its Hugging Face name, so the init does not depend on construction order.
    pub fn init(config: &LlamaConfig, seed: u64, device: &B::Device) -> Llama<B> {
        let built = Llama::build(config, device, |name, shape, kind| {
            let n: usize = shape.iter().product();
            let data = match kind {
                SpecKind::Norm => vec![1.0; n],
                SpecKind::Bias => vec![0.0; n],
                SpecKind::Matrix => {
                    let mut rng = crate::util::rng(seed, &format!("model-init/{name}"));
                    (0..n).map(|_| 0.02 * standard_normal(&mut rng)).collect()
                }
            };
            Ok(HostTensor {
                shape: shape.to_vec(),
                data,
            })
        });
        built.unwrap_or_else(|e| unreachable!("generated tensors have the right shapes: {e}"))
    }

    /// Assemble a model from tensors in Hugging Face layout: `get(name, hf_shape, kind)` returns
    /// each one, in checkpoint order (embedding, layers, final norm, lm head unless tied).
    pub(crate) fn build(
        config: &LlamaConfig,
        device: &B::Device,
        get: impl FnMut(&str, &[usize], SpecKind) -> Result<HostTensor>,
    ) -> Result<Llama<B>> {
        let mut b = Builder { get, device };
        let d = config.hidden_size;
        let q = config.num_attention_heads * config.head_dim;
        let kv = config.num_key_value_heads * config.head_dim;
        let inter = config.intermediate_size;
        let vocab = config.vocab_size;
        let embed = b.fetch("model.embed_tokens.weight", &[vocab, d], SpecKind::Matrix)?;
        let embed_tokens = Param::from_tensor(embed.to_tensor(device));
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let qb = config.qkv_bias;
            layers.push(Block {
                q_proj: b.proj(&format!("{p}.self_attn.q_proj"), q, d, qb)?,
                k_proj: b.proj(&format!("{p}.self_attn.k_proj"), kv, d, qb)?,
                v_proj: b.proj(&format!("{p}.self_attn.v_proj"), kv, d, qb)?,
                o_proj: b.proj(&format!("{p}.self_attn.o_proj"), d, q, false)?,
                gate_proj: b.proj(&format!("{p}.mlp.gate_proj"), inter, d, false)?,
                up_proj: b.proj(&format!("{p}.mlp.up_proj"), inter, d, false)?,
                down_proj: b.proj(&format!("{p}.mlp.down_proj"), d, inter, false)?,
                input_layernorm: b.vector(
                    &format!("{p}.input_layernorm.weight"),
                    d,
                    SpecKind::Norm,
                )?,
                post_attention_layernorm: b.vector(
                    &format!("{p}.post_attention_layernorm.weight"),
                    d,
                    SpecKind::Norm,
                )?,
            });
        }
        let norm = b.vector("model.norm.weight", d, SpecKind::Norm)?;
        let lm_head = match config.tie_word_embeddings {
            true => None,
            false => Some(b.proj("lm_head", vocab, d, false)?),
        };
        Ok(Llama {
            embed_tokens,
            layers,
            norm,
            lm_head,
            config: config.clone(),
            precision: Precision::Fp32,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The precision of the matrix products ([`Precision::Fp32`] unless set).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The model computing its matrix products in `precision` (the weights stay f32). Errors
    /// when the backend cannot compute in bf16 (see [`crate::model::precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Result<Llama<B>> {
        if precision == Precision::Bf16 && !super::precision::bf16_supported::<B>(&self.device()) {
            return Err(Error::invalid(
                "precision",
                "bf16 needs a backend that computes in bf16 (this one has none); use fp32",
            ));
        }
        self.precision = precision;
        Ok(self)
    }

    /// The device holding the weights.
    pub fn device(&self) -> B::Device {
        self.embed_tokens.device()
    }

    /// Every parameter under its Hugging Face name, in checkpoint order. A tied lm head has no
    /// entry of its own (its gradient is part of `model.embed_tokens.weight`'s).
    pub fn named_params(&self) -> Vec<(String, ParamView<B>)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            ParamView::Embedding(self.embed_tokens.clone()),
        )];
        let proj = |out: &mut Vec<(String, ParamView<B>)>, name: String, p: &Proj<B>| {
            out.push((
                format!("{name}.weight"),
                ParamView::Linear(p.weight.clone()),
            ));
            if let Some(bias) = &p.bias {
                out.push((format!("{name}.bias"), ParamView::Vector(bias.clone())));
            }
        };
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            proj(&mut out, format!("{p}.self_attn.q_proj"), &l.q_proj);
            proj(&mut out, format!("{p}.self_attn.k_proj"), &l.k_proj);
            proj(&mut out, format!("{p}.self_attn.v_proj"), &l.v_proj);
            proj(&mut out, format!("{p}.self_attn.o_proj"), &l.o_proj);
            proj(&mut out, format!("{p}.mlp.gate_proj"), &l.gate_proj);
            proj(&mut out, format!("{p}.mlp.up_proj"), &l.up_proj);
            proj(&mut out, format!("{p}.mlp.down_proj"), &l.down_proj);
            out.push((
                format!("{p}.input_layernorm.weight"),
                ParamView::Vector(l.input_layernorm.clone()),
            ));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                ParamView::Vector(l.post_attention_layernorm.clone()),
            ));
        }
        out.push((
            "model.norm.weight".to_string(),
            ParamView::Vector(self.norm.clone()),
        ));
        if let Some(head) = &self.lm_head {
            proj(&mut out, "lm_head".to_string(), head);
        }
        out
    }

    /// Run a batch. See the module docs for the hidden-state numbering and padding. On
    /// [`crate::model::CpuBackend`] this runs the CPU fast path (`model::fast`), which computes
    /// the same function.
    pub fn forward(&self, batch: &TokenBatch, opts: &ForwardOptions) -> Result<ForwardOutput<B>> {
        let logits = self.check_forward(batch, opts)?;
        let (b, t) = (batch.batch_size(), batch.seq_len());
        if let Some(cpu) = super::fast::as_cpu(self) {
            let out = super::fast::forward(
                cpu,
                batch.ids(),
                b,
                t,
                batch.lengths(),
                &opts.hidden,
                opts.final_norm,
                logits,
            );
            return super::fast::cast_output(out)
                .ok_or_else(|| Error::Internal("fast path output type".into()));
        }
        let device = self.device();
        let positions: Vec<usize> = (0..t).collect();
        let rope = Rope::new(&self.config, &positions, 1, t, &device);
        let key_valid: Vec<Vec<bool>> = batch
            .lengths()
            .iter()
            .map(|&len| (0..t).map(|j| j < len).collect())
            .collect();
        let bias = attention_bias(&key_valid, 0, t, self.config.groups(), &device);
        let step = Step {
            ids: batch.ids(),
            batch: b,
            len: t,
            rope: &rope,
            bias: &bias,
        };
        Ok(self.run(step, None, &opts.hidden, opts.final_norm, logits))
    }

    /// Checks a forward request (token ids in the vocabulary, hidden layers in range) and
    /// returns the rows to take logits from. Shared by every forward entry point.
    pub(crate) fn check_forward(
        &self,
        batch: &TokenBatch,
        opts: &ForwardOptions,
    ) -> Result<LogitRows> {
        self.check_ids(batch.ids())?;
        if let HiddenSelect::Layers(idx) = &opts.hidden {
            let l = self.config.num_hidden_layers;
            if let Some(bad) = idx.iter().find(|&&i| i > l) {
                return Err(Error::invalid(
                    "hidden layer",
                    format!("{bad} is out of range; this model has hidden states 0..={l}"),
                ));
            }
        }
        Ok(match opts.logits {
            LogitsSelect::None => LogitRows::None,
            LogitsSelect::All => LogitRows::All,
            LogitsSelect::Last => {
                LogitRows::Positions(batch.lengths().iter().map(|l| l - 1).collect())
            }
        })
    }

    /// Errors when a token id is outside the vocabulary.
    pub(crate) fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let v = self.config.vocab_size;
        match ids.iter().find(|&&id| id as usize >= v) {
            Some(bad) => Err(Error::invalid(
                "token id",
                format!("{bad} is outside the vocabulary (size {v})"),
            )),
            None => Ok(()),
        }
    }

    /// The forward pass proper (ids already checked).
    pub(crate) fn run(
        &self,
        step: Step<'_, B>,
        mut cache: Option<&mut KvCache<B>>,
        hidden: &HiddenSelect,
        final_norm: bool,
        logits: LogitRows,
    ) -> ForwardOutput<B> {
        let device = self.device();
        let (b, t) = (step.batch, step.len);
        let n_layers = self.layers.len();
        let wanted = |i: usize| match hidden {
            HiddenSelect::None => false,
            HiddenSelect::All => true,
            HiddenSelect::Layers(idx) => idx.contains(&i),
        };
        let need_top = final_norm || !matches!(logits, LogitRows::None);
        let last_layer = match hidden {
            _ if need_top || cache.is_some() => n_layers,
            HiddenSelect::None => 0,
            HiddenSelect::All => n_layers,
            HiddenSelect::Layers(idx) => idx.iter().copied().max().unwrap_or(0),
        };
        let ids = int_tensor::<B, 2>(
            step.ids.iter().map(|&i| i as i64).collect(),
            [b, t],
            &device,
        );
        let mut x = burn::tensor::module::embedding(self.embed_tokens.val(), ids);
        let mut out = ForwardOutput {
            hidden: Vec::new(),
            final_norm: None,
            logits: None,
        };
        if wanted(0) {
            out.hidden.push((0, x.clone()));
        }
        for (i, layer) in self.layers.iter().enumerate().take(last_layer) {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = layer.forward(x, &self.config, self.precision, step.rope, step.bias, slot);
            if wanted(i + 1) {
                out.hidden.push((i + 1, x.clone()));
            }
        }
        if !need_top {
            return out;
        }
        let eps = self.config.rms_norm_eps;
        let top = match (&logits, final_norm) {
            (LogitRows::Positions(pos), false) => rms_norm(pick_rows(x, pos), &self.norm, eps),
            _ => rms_norm(x, &self.norm, eps),
        };
        if final_norm {
            out.final_norm = Some(top.clone());
        }
        let rows = match logits {
            LogitRows::None => return out,
            LogitRows::Positions(pos) if final_norm => pick_rows(top, &pos),
            LogitRows::All | LogitRows::Positions(_) => top,
        };
        out.logits = Some(self.lm_head(rows));
        out
    }

    /// Project `[B, T, d]` states to `[B, T, vocab]` logits.
    fn lm_head(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let p = self.precision;
        match &self.lm_head {
            Some(head) => head.forward(x, p),
            None => {
                // Tied: E x^T keeps the large [vocab, d] matrix in its stored layout (no copy).
                let [b, t, d] = x.dims();
                let v = self.config.vocab_size;
                let xt = x.reshape([b * t, d]).transpose();
                p.result(p.operand(self.embed_tokens.val()).matmul(p.operand(xt)))
                    .transpose()
                    .reshape([b, t, v])
            }
        }
    }
}

/// The inputs of one forward step: `batch × len` new ids, their rotary tables and attention bias.
pub(crate) struct Step<'a, B: Backend> {
    pub ids: &'a [u32],
    pub batch: usize,
    pub len: usize,
    pub rope: &'a Rope<B>,
    pub bias: &'a Tensor<B, 4>,
}

/// Mean next-token cross-entropy: position `t` predicts token `t + 1`. A token counts as a target
/// when it is real (not padding) and, if `target_mask` (`[B, T]` row-major) is given, marked true
/// there (so `target_mask[t]` refers to token `t`, predicted from position `t − 1`). With no mask
/// this equals transformers' loss with `labels = input_ids`.
pub fn causal_lm_loss<B: Backend>(
    logits: Tensor<B, 3>,
    batch: &TokenBatch,
    target_mask: Option<&[bool]>,
) -> Result<Tensor<B, 1>> {
    let [b, t, v] = logits.dims();
    if b != batch.batch_size() || t != batch.seq_len() {
        return Err(Error::invalid(
            "loss",
            format!(
                "logits are [{b}, {t}, {v}] but the batch is [{}, {}]",
                batch.batch_size(),
                batch.seq_len()
            ),
        ));
    }
    if let Some(m) = target_mask
        && m.len() != b * t
    {
        return Err(Error::invalid(
            "target mask",
            format!("expected {} values, got {}", b * t, m.len()),
        ));
    }
    if t < 2 {
        return Err(Error::invalid("loss", "sequences need at least 2 tokens"));
    }
    let mut targets = Vec::with_capacity(b * (t - 1));
    let mut weights = Vec::with_capacity(b * (t - 1));
    for r in 0..b {
        for j in 1..t {
            let i = r * t + j;
            targets.push(batch.ids()[i] as i64);
            let on = j < batch.lengths()[r] && target_mask.is_none_or(|m| m[i]);
            weights.push(if on { 1.0f32 } else { 0.0 });
        }
    }
    let count: f32 = weights.iter().sum();
    if count == 0.0 {
        return Err(Error::invalid("loss", "the batch has no target tokens"));
    }
    let device = logits.device();
    let targets = int_tensor::<B, 3>(targets, [b, t - 1, 1], &device);
    let weights: Tensor<B, 2> = Tensor::from_data(TensorData::new(weights, [b, t - 1]), &device);
    let logp = activation::log_softmax(logits.narrow(1, 0, t - 1), 2);
    let picked = logp.gather(2, targets).reshape([b, t - 1]);
    Ok((picked * weights).sum().neg().div_scalar(count))
}

/// One draw from N(0, 1) (Box–Muller from two uniforms).
fn standard_normal(rng: &mut crate::util::Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}
