//! Composition recipes: which sources, how much of each, in which stages.
//!
//! - [`amount`]: exact fractions and counts, and the rounding rule `round(f·N)`;
//! - [`sample`]: seeded Fisher–Yates permutations whose prefixes give nested subsets;
//! - [`spec`]: the recipe TOML, its validation and the strategy shortcuts;
//! - [`compose`]: materializing a recipe into per-stage datasets and a manifest;
//! - [`export`]: writing a composition for LLaMA-Factory or as plain Alpaca / ShareGPT JSON.
pub mod amount;
pub mod compose;
pub mod export;
pub mod sample;
pub mod spec;

pub use amount::{Amount, Fraction};
pub use compose::{ComposeOptions, Composition, Manifest, compose};
pub use export::{ExportFormat, TrainSettings, export};
pub use spec::{Recipe, Stage, Strategy};
