//! Data layer: the `Example` model, readers for the real formats, chat templates, tokenization
//! with loss masks, dataset statistics and the ShareGPT code/math ablation.
pub mod ablate;
pub mod ablate_learned;
pub mod bpe;
pub mod example;
pub mod fetch;
pub mod read;
pub mod stats;
pub mod synth;
pub mod template;
pub mod tokenize;

pub use example::{Ability, Example, Meta, Role, Turn};
