//! Numeric precision of the model's matrix products: fp32, or bf16 mixed precision.
//!
//! Mixed precision here follows PyTorch's `autocast(dtype=torch.bfloat16)` for the operations a
//! LLaMA block has: the matrix products (every linear layer, the attention scores and the
//! attention-weighted values, the lm head) take bf16 inputs — activations and a bf16 copy of the
//! weights made for that product — and their outputs are cast back to f32. Everything else stays
//! f32: the master weights (the parameters and what the optimizer updates and checkpoints hold),
//! the residual stream, RMSNorm, rotary embeddings, softmax, SwiGLU, the loss and the optimizer
//! state. Gradients flow back through the casts, so the weight gradients arrive in f32.
//!
//! bf16 needs a backend that computes in it: burn's CUDA backend does, burn's ndarray backend (the
//! CPU default) does not, and asking for bf16 there is an error rather than a silent fp32 run.
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The precision of the matrix products (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Every operation in f32.
    #[default]
    Fp32,
    /// Matrix products in bf16, everything else (and the master weights) in f32.
    Bf16,
}

impl Precision {
    /// The lowercase name (`fp32`, `bf16`), as run.json records it.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The precision a request resolves to on backend `B`: `None` (automatic) is bf16 where
    /// the backend computes in bf16 and fp32 elsewhere; an explicit bf16 on a backend without
    /// it is an error naming `flag`.
    pub fn resolve<B: Backend>(
        requested: Option<Precision>,
        device: &B::Device,
        flag: &str,
    ) -> Result<Precision> {
        let bf16 = bf16_supported::<B>(device);
        match requested {
            None => Ok(if bf16 {
                Precision::Bf16
            } else {
                Precision::Fp32
            }),
            Some(Precision::Bf16) if !bf16 => Err(Error::invalid(
                flag,
                "bf16 needs a backend that computes in bf16 (CUDA: `--device cuda` in a build \
                 with the `cuda` feature); this one (the CPU's ndarray backend) has no bf16, use fp32",
            )),
            Some(p) => Ok(p),
        }
    }

    /// A matrix-product operand in this precision (a no-op for fp32).
    pub(crate) fn operand<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Precision::Fp32 => x,
            Precision::Bf16 => x.cast(FloatDType::BF16),
        }
    }

    /// A matrix-product result back in f32 (a no-op for fp32).
    pub(crate) fn result<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Precision::Fp32 => x,
            Precision::Bf16 => x.cast(FloatDType::F32),
        }
    }
}

/// Whether backend `B` computes in bf16 on `device`.
pub fn bf16_supported<B: Backend>(device: &B::Device) -> bool {
    B::supports_dtype(device, DType::BF16)
}

/// Precision of the f32 matrix products on the CPU fast path (inference: forward passes and
/// probe extraction on prepared weights, [`crate::model::Llama::prepare_with`]). The names
/// follow PyTorch's `torch.set_float32_matmul_precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    /// IEEE f32 products: each output one f32 fused multiply-add chain (AVX-512 or `gemm`).
    #[default]
    Highest,
    /// Each f32 operand split into two bf16 parts and the product taken as three bf16
    /// products accumulated in f32 (bf16x3) on Intel AMX tiles: about 2⁻¹⁶ relative error
    /// per term instead of f32's 2⁻²⁴. Runs as `highest` on a CPU or OS without AMX.
    High,
}

impl MatmulPrecision {
    /// The lowercase name (`highest`, `high`).
    pub fn as_str(self) -> &'static str {
        match self {
            MatmulPrecision::Highest => "highest",
            MatmulPrecision::High => "high",
        }
    }

    /// What `self` runs as on this machine: `High` only where the AMX kernel is available.
    pub fn effective(self) -> MatmulPrecision {
        match self {
            MatmulPrecision::High if super::amx::available() => MatmulPrecision::High,
            _ => MatmulPrecision::Highest,
        }
    }
}
