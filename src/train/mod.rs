//! Supervised fine-tuning of the model layer on a composed recipe.
pub mod batch;
pub mod config;
pub mod data;
pub mod fast;
mod fast_ops;
pub mod log;
pub mod optim;
pub mod run;
pub mod schedule;
pub mod state;
pub mod step;
