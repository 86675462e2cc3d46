//! mixprobe: how SFT data composition shapes LLM abilities.
//!
//! Layers, data flowing one way:
//! `data` (formats, templates, tokenization) → `recipe` (fractions, ratios, strategies,
//! ablations) → `model` (LLaMA-family decoder, HF IO) → `train` → `eval` → `probe` → `report`.
pub mod data;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod gguf;
pub mod model;
pub mod probe;
pub mod recipe;
pub mod report;
pub mod train;
pub mod util;

pub use error::{Error, Location, Result};
