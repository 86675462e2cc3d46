//! llama.cpp GGUF import: parse the container, de-quantize its tensors and write a Hugging
//! Face LLaMA directory (config, f32 safetensors with HF names, tokenizer) that the model layer
//! loads.
pub mod import;
pub mod permute;
pub mod quant;
pub mod reader;
pub mod tokenizer;
pub mod writer;

pub use import::{ImportReport, LlamaHparams, import_gguf};
pub use permute::{permute_qk, unpermute_qk};
pub use quant::{GgmlType, dequantize};
pub use reader::{GgufFile, Header, TensorInfo, Value};
