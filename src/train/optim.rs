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
use crate::error::{Error, Result};
use crate::model::{HostTensor, Llama, ParamView};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use std::collections::HashMap;

/// AdamW hyperparameters (the learning rate is given per step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// First and second moments of one parameter, flattened.
#[derive(Debug, Clone)]
struct Moments<B: Backend> {
    m: Tensor<B, 1>,
    v: Tensor<B, 1>,
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
            decay: (1.0 - lr * c.weight_decay) as f32,
            scale: (grad_scale < 1.0).then_some(grad_scale as f32),
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            step_size: (lr / bias1) as f32,
            bias2_sqrt: bias2.sqrt() as f32,
            eps: c.eps as f32,
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
                let st = self.moments.get(&param_id(&view))?;
                let m = HostTensor::from_tensor(st.m.clone()).data;
                let v = HostTensor::from_tensor(st.v.clone()).data;
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
            moments.insert(*id, Moments { m: t(m), v: t(v) });
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
        let p = tensor.inner().reshape([n]);
        let mut g = grad.reshape([n]);
        if let Some(s) = self.scale {
            g = g.mul_scalar(s);
        }
        let Moments { m, v } = self.moments.remove(&id).unwrap_or_else(|| {
            let zeros = Tensor::zeros([n], &p.device());
            Moments {
                m: zeros.clone(),
                v: zeros,
            }
        });
        let m = m.clone() + (g.clone() - m).mul_scalar(self.one_minus_beta1);
        let v = v.mul_scalar(self.beta2) + (g.clone() * g).mul_scalar(self.one_minus_beta2);
        let p = p.mul_scalar(self.decay);
        let denom = v
            .clone()
            .sqrt()
            .div_scalar(self.bias2_sqrt)
            .add_scalar(self.eps);
        let p = p - (m.clone() / denom).mul_scalar(self.step_size);
        self.moments.insert(id, Moments { m, v });
        let mut updated = Tensor::from_inner(p.reshape(dims));
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}

/// The global L2 norm of the gradients of `model`'s parameters (`√(Σ ‖g‖²)`), read back once.
pub fn global_grad_norm<AB: AutodiffBackend>(model: &Llama<AB>, grads: &GradientsParams) -> f64 {
    let mut visitor = SquaredNorms::<AB::InnerBackend> {
        grads,
        parts: Vec::new(),
    };
    model.visit(&mut visitor);
    if visitor.parts.is_empty() {
        return 0.0;
    }
    let squares = Tensor::cat(visitor.parts, 0).into_data().convert::<f32>();
    let values = squares.into_vec::<f32>().unwrap_or_default();
    values.iter().map(|&x| x as f64).sum::<f64>().sqrt()
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
    parts: Vec<Tensor<B, 1>>,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for SquaredNorms<'_, AB::InnerBackend> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if let Some(g) = self.grads.get::<AB::InnerBackend, D>(param.id) {
            let n: usize = g.dims().iter().product();
            self.parts.push(g.reshape([n]).square().sum());
        }
    }
}
