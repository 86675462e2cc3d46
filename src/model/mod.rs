//! LLaMA-family decoder on burn: configuration ([`config`]), the model ([`llama`]), Hugging Face
//! checkpoints ([`checkpoint`]), generation ([`generate`]) and backend selection ([`device`]).
//!
//! Everything is generic over `B: Backend`; [`CpuBackend`] is the default and [`CpuAutodiff`]
//! the training backend.
mod amx;
pub mod checkpoint;
pub mod config;
pub mod device;
mod fast;
pub mod generate;
pub mod host;
pub(crate) mod kernels;
pub mod llama;
mod packed;
pub mod precision;
pub(crate) mod vector;

pub use checkpoint::{LoadedModel, load_hf_dir, save_hf_dir};
pub use config::{Arch, LlamaConfig, Preset};
pub use fast::PreparedLlama;
pub use generate::{GenerateConfig, generate};
pub use host::HostTensor;
pub use llama::{
    ForwardOptions, ForwardOutput, HiddenSelect, Llama, LogitsSelect, ParamView, TokenBatch,
    causal_lm_loss,
};
pub use precision::{MatmulPrecision, Precision};

/// The default CPU backend.
pub type CpuBackend = burn::backend::NdArray<f32>;
/// The CPU backend with autodiff (training).
pub type CpuAutodiff = burn::backend::Autodiff<CpuBackend>;
