//! AdamW exactly as `torch.optim.AdamW` (single-tensor path) computes it, gradient clipping by
//! global norm as `torch.nn.utils.clip_grad_norm_`, and the optimizer state as host data that a
//! checkpoint stores and restores bit for bit.
//!
//! One update of a parameter `p` with gradient `g` at step `t` (1-based), learning rate `lr`:
//! ```text
//! p ← p · (1 − lr · wd)                       decoupled weight decay
//! m ← m + (g − m) · (1 − β1)                  (torch's lerp)
//! v ← v · β2 + (g · g) · (1 − β2)
//! p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
//! ```
//! Clipping: `total = √(Σ ‖g‖²)` over every parameter, and every gradient is scaled by
//! `clip / (total + 1e-6)` when that is below 1.
//!
//! On [`CpuBackend`] (the inner backend of [`crate::model::CpuAutodiff`]) the update runs as one
//! fused loop over host slices per parameter, split into fixed chunks over the rayon pool (the
//! same formulas in the same f32 operation order, without burn-ndarray's single-threaded
//! full-size temporaries), its moments stay in host memory, and the gradient norm is summed on
//! the host in f64; elsewhere the update runs as tensor operations on the device.
use crate::error::{Error, Result};
use crate::model::vector::vectorized;
use crate::model::{CpuBackend, HostTensor, Llama, ParamView};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_ndarray::{NdArrayTensor, SharedArray};
use rayon::prelude::*;
use std::any::{Any, TypeId};
use std::collections::HashMap;

/// AdamW hyperparameters (the learning rate is given per step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// First and second moments of one parameter, flattened: on the device, or in host memory on
/// [`CpuBackend`].
#[derive(Debug, Clone)]
enum Moments<B: Backend> {
    Device { m: Tensor<B, 1>, v: Tensor<B, 1> },
    Host { m: Vec<f32>, v: Vec<f32> },
}

/// Whether `B` is [`CpuBackend`] (where the host update applies).
fn on_cpu<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<CpuBackend>()
}

/// `x` as type `U` when `T` and `U` are the same type.
fn cast<T: 'static, U: 'static>(x: T) -> std::result::Result<U, T> {
    if TypeId::of::<T>() != TypeId::of::<U>() {
        return Err(x);
    }
    let boxed: Box<dyn Any> = Box::new(x);
    Ok(*boxed
        .downcast::<U>()
        .unwrap_or_else(|_| unreachable!("same type id")))
}

/// The f32 storage of a [`CpuBackend`] tensor, shared with it (no copy when contiguous).
fn cpu_array<const D: usize>(t: Tensor<CpuBackend, D>) -> SharedArray<f32> {
    let dims = t.dims();
    if let TensorPrimitive::Float(NdArrayTensor::F32(storage)) = t.clone().into_primitive() {
        let a = storage.into_owned();
        if a.as_slice().is_some() {
            return a;
        }
    }
    let data = HostTensor::from_tensor(t).data;
    SharedArray::<f32>::from_shape_vec(dims.to_vec(), data)
        .unwrap_or_else(|e| unreachable!("host copy has the tensor's size: {e}"))
}

/// The optimizer: its step count and the moments of every parameter that has had a gradient.
/// Moments live on the device (`B` is the inner, non-autodiff backend).
#[derive(Debug, Clone)]
pub struct AdamW<B: Backend> {
    config: AdamWConfig,
    step: u64,
    moments: HashMap<ParamId, Moments<B>>,
}

/// The optimizer state on the host: per parameter (Hugging Face name) its flattened moments,
/// in the model's in-memory element order (linear weights `[in, out]`).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    pub step: u64,
    /// `(name, m, v)`, in the model's parameter order.
    pub moments: Vec<(String, Vec<f32>, Vec<f32>)>,
}

impl<B: Backend> AdamW<B> {
    /// A fresh optimizer (step 0, no moments).
    pub fn new(config: AdamWConfig) -> AdamW<B> {
        AdamW {
            config,
            step: 0,
            moments: HashMap::new(),
        }
    }

    /// Optimizer steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Apply one update to every parameter of `model` that has a gradient in `grads`, scaling
    /// the gradients by `grad_scale` first (the clipping factor; 1 leaves them untouched).
    pub fn step<AB>(
        &mut self,
        model: Llama<AB>,
        mut grads: GradientsParams,
        lr: f64,
        grad_scale: f64,
    ) -> Llama<AB>
    where
        AB: AutodiffBackend<InnerBackend = B>,
    {
        self.step += 1;
        let t = self.step as i32;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        let mut mapper = Mapper {
            grads: &mut grads,
            moments: &mut self.moments,
            k: Coefficients {
                decay: (1.0 - lr * c.weight_decay) as f32,
                scale: (grad_scale < 1.0).then_some(grad_scale as f32),
                one_minus_beta1: (1.0 - c.beta1) as f32,
                beta2: c.beta2 as f32,
                one_minus_beta2: (1.0 - c.beta2) as f32,
                step_size: (lr / bias1) as f32,
                bias2_sqrt: bias2.sqrt() as f32,
                eps: c.eps as f32,
            },
        };
        model.map(&mut mapper)
    }

    /// Copy the state to the host, naming each parameter by its Hugging Face name.
    pub fn to_host<AB>(&self, model: &Llama<AB>) -> OptimizerState
    where
        AB: AutodiffBackend<InnerBackend = B>,
    {
        let moments = model
            .named_params()
            .into_iter()
            .filter_map(|(name, view)| {
                let (m, v) = match self.moments.get(&param_id(&view))? {
                    Moments::Device { m, v } => (
                        HostTensor::from_tensor(m.clone()).data,
                        HostTensor::from_tensor(v.clone()).data,
                    ),
                    Moments::Host { m, v } => (m.clone(), v.clone()),
                };
                Some((name, m, v))
            })
            .collect();
        OptimizerState {
            step: self.step,
            moments,
        }
    }

    /// Rebuild the optimizer from host state for `model` (matched by name; sizes checked).
    pub fn from_host<AB>(
        config: AdamWConfig,
        state: &OptimizerState,
        model: &Llama<AB>,
    ) -> Result<AdamW<B>>
    where
        AB: AutodiffBackend<InnerBackend = B>,
    {
        let params: HashMap<String, (ParamId, usize)> = model
            .named_params()
            .into_iter()
            .map(|(name, view)| {
                let n = view_len(&view);
                (name, (param_id(&view), n))
            })
            .collect();
        let device = model.device();
        let mut moments = HashMap::new();
        for (name, m, v) in &state.moments {
            let (id, n) = params.get(name).ok_or_else(|| {
                Error::model(format!("optimizer state names unknown parameter {name}"))
            })?;
            if m.len() != *n || v.len() != *n {
                return Err(Error::model(format!(
                    "optimizer state for {name} has {} / {} values, the parameter has {n}",
                    m.len(),
                    v.len()
                )));
            }
            let t = |x: &Vec<f32>| {
                Tensor::<AB, 1>::from_data(TensorData::new(x.clone(), [*n]), &device).inner()
            };
            let st = match on_cpu::<B>() {
                true => Moments::Host {
                    m: m.clone(),
                    v: v.clone(),
                },
                false => Moments::Device { m: t(m), v: t(v) },
            };
            moments.insert(*id, st);
        }
        Ok(AdamW {
            config,
            step: state.step,
            moments,
        })
    }
}

fn param_id<B: Backend>(view: &ParamView<B>) -> ParamId {
    match view {
        ParamView::Vector(p) => p.id,
        ParamView::Embedding(p) | ParamView::Linear(p) => p.id,
    }
}

fn view_len<B: Backend>(view: &ParamView<B>) -> usize {
    match view {
        ParamView::Vector(p) => p.val().dims().iter().product(),
        ParamView::Embedding(p) | ParamView::Linear(p) => p.val().dims().iter().product(),
    }
}

/// The per-parameter update, applied through burn's module mapping.
struct Mapper<'a, B: Backend> {
    grads: &'a mut GradientsParams,
    moments: &'a mut HashMap<ParamId, Moments<B>>,
    k: Coefficients,
}

/// The scalars of one update.
#[derive(Clone, Copy)]
struct Coefficients {
    decay: f32,
    scale: Option<f32>,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    step_size: f32,
    bias2_sqrt: f32,
    eps: f32,
}

impl<AB: AutodiffBackend> ModuleMapper<AB> for Mapper<'_, AB::InnerBackend> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<AB, D>>) -> Param<Tensor<AB, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<AB::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let inner = tensor.inner();
        let host = (
            cast::<_, Tensor<CpuBackend, D>>(inner),
            cast::<_, Tensor<CpuBackend, D>>(grad),
        );
        let (inner, grad) = match host {
            (Ok(p), Ok(g)) => {
                let p = cast::<_, Tensor<AB::InnerBackend, D>>(self.update_host(id, p, g))
                    .unwrap_or_else(|_| unreachable!("the inner backend is CpuBackend"));
                let mut updated = Tensor::from_inner(p);
                if require_grad {
                    updated = updated.require_grad();
                }
                return Param::from_mapped_value(id, updated, mapper);
            }
            (p, g) => (
                p.err()
                    .unwrap_or_else(|| unreachable!("both or neither cast")),
                g.err()
                    .unwrap_or_else(|| unreachable!("both or neither cast")),
            ),
        };
        let p = inner.reshape([n]);
        let mut g = grad.reshape([n]);
        if let Some(s) = self.k.scale {
            g = g.mul_scalar(s);
        }
        let (m, v) = match self.moments.remove(&id) {
            Some(Moments::Device { m, v }) => (m, v),
            Some(Moments::Host { m, v }) => {
                let t = |x: Vec<f32>| Tensor::from_data(TensorData::new(x, [n]), &p.device());
                (t(m), t(v))
            }
            None => {
                let zeros = Tensor::zeros([n], &p.device());
                (zeros.clone(), zeros)
            }
        };
        let m = m.clone() + (g.clone() - m).mul_scalar(self.k.one_minus_beta1);
        let v = v.mul_scalar(self.k.beta2) + (g.clone() * g).mul_scalar(self.k.one_minus_beta2);
        let p = p.mul_scalar(self.k.decay);
        let denom = v
            .clone()
            .sqrt()
            .div_scalar(self.k.bias2_sqrt)
            .add_scalar(self.k.eps);
        let p = p - (m.clone() / denom).mul_scalar(self.k.step_size);
        self.moments.insert(id, Moments::Device { m, v });
        let mut updated = Tensor::from_inner(p.reshape(dims));
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}

/// Elements per parallel task of the host update and norm (a fixed split: deterministic).
const HOST_CHUNK: usize = 1 << 16;

impl<B: Backend> Mapper<'_, B> {
    /// The update of one parameter on [`CpuBackend`]: one fused pass over host slices, the
    /// same f32 operations in the same order as the tensor version.
    fn update_host<const D: usize>(
        &mut self,
        id: ParamId,
        p: Tensor<CpuBackend, D>,
        g: Tensor<CpuBackend, D>,
    ) -> Tensor<CpuBackend, D> {
        let mut p = cpu_array(p);
        let g = cpu_array(g);
        let n = p.len();
        let (mut m, mut v) = match self.moments.remove(&id) {
            Some(Moments::Host { m, v }) => (m, v),
            Some(Moments::Device { m, v }) => (
                HostTensor::from_tensor(m).data,
                HostTensor::from_tensor(v).data,
            ),
            None => (vec![0f32; n], vec![0f32; n]),
        };
        let gs = g.as_slice().unwrap_or(&[]);
        let ps = p
            .as_slice_mut()
            .unwrap_or_else(|| unreachable!("contiguous (checked by cpu_array)"));
        let k = self.k;
        ps.par_chunks_mut(HOST_CHUNK)
            .zip(gs.par_chunks(HOST_CHUNK))
            .zip(
                m.par_chunks_mut(HOST_CHUNK)
                    .zip(v.par_chunks_mut(HOST_CHUNK)),
            )
            .for_each(|((ps, gs), (ms, vs))| {
                vectorized(|| {
                    for (((p, &g), m), v) in ps.iter_mut().zip(gs).zip(ms).zip(vs) {
                        let g = match k.scale {
                            Some(s) => g * s,
                            None => g,
                        };
                        *m += (g - *m) * k.one_minus_beta1;
                        *v = *v * k.beta2 + (g * g) * k.one_minus_beta2;
                        let denom = v.sqrt() / k.bias2_sqrt + k.eps;
                        *p = *p * k.decay - (*m / denom) * k.step_size;
                    }
                })
            });
        self.moments.insert(id, Moments::Host { m, v });
        Tensor::from_primitive(TensorPrimitive::Float(NdArrayTensor::from(p)))
    }
}

/// `Σ x²` in f64 over 8 lanes (a fixed order that vectorizes).
#[inline(always)]
fn squares(x: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let c = x.chunks_exact(8);
    let tail: f64 = c.remainder().iter().map(|&v| (v as f64) * (v as f64)).sum();
    for x in c {
        for i in 0..8 {
            acc[i] += (x[i] as f64) * (x[i] as f64);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// The global L2 norm of the gradients of `model`'s parameters (`√(Σ ‖g‖²)`), read back once.
pub fn global_grad_norm<AB: AutodiffBackend>(model: &Llama<AB>, grads: &GradientsParams) -> f64 {
    let mut visitor = SquaredNorms::<AB::InnerBackend> {
        grads,
        parts: Vec::new(),
        host: 0.0,
    };
    model.visit(&mut visitor);
    if visitor.parts.is_empty() {
        return visitor.host.sqrt();
    }
    let squares = Tensor::cat(visitor.parts, 0).into_data().convert::<f32>();
    let values = squares.into_vec::<f32>().unwrap_or_default();
    (visitor.host + values.iter().map(|&x| x as f64).sum::<f64>()).sqrt()
}

/// The factor that clips a gradient of norm `total` to `clip` (torch's `clip_grad_norm_`):
/// `min(1, clip / (total + 1e-6))`; 1 when clipping is off (`clip = 0`).
pub fn clip_scale(total: f64, clip: f64) -> f64 {
    if clip <= 0.0 {
        1.0
    } else {
        (clip / (total + 1e-6)).min(1.0)
    }
}

struct SquaredNorms<'a, B: Backend> {
    grads: &'a GradientsParams,
    /// Per-parameter `‖g‖²` on the device.
    parts: Vec<Tensor<B, 1>>,
    /// `Σ ‖g‖²` of the gradients summed on the host (on [`CpuBackend`]), in f64.
    host: f64,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for SquaredNorms<'_, AB::InnerBackend> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if let Some(g) = self.grads.get::<AB::InnerBackend, D>(param.id) {
            match cast::<_, Tensor<CpuBackend, D>>(g) {
                Ok(g) => {
                    let a = cpu_array(g);
                    let parts: Vec<f64> = a
                        .as_slice()
                        .unwrap_or(&[])
                        .par_chunks(HOST_CHUNK)
                        .map(|c| vectorized(|| squares(c)))
                        .collect();
                    self.host += parts.iter().sum::<f64>();
                }
                Err(g) => {
                    let n: usize = g.dims().iter().product();
                    self.parts.push(g.reshape([n]).square().sum());
                }
            }
        }
    }
}
