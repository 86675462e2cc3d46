//! Experiment grids: one TOML file ([`spec`]) names models, recipes grouped by research
//! question, seeds, hyperparameters, benchmarks and a probe; [`runner`] trains, evaluates and
//! records every cell, cached and resumable; [`results`] is what it writes.
//!
//! # Output layout
//! ```text
//! OUT/experiment.toml           copy of the experiment file
//! OUT/results.json              the report's input (rewritten atomically after every cell)
//! OUT/models/<model>/…          prepared base models (presets: shared tokenizer + seeded init)
//! OUT/cells/<cell-dir>/run/     a `mixprobe train` run dir (run.json, metrics.jsonl,
//!                               forgetting.json, stage-*/, final/)
//! OUT/cells/<cell-dir>/cell.json  {id, key_sha256, status, wall_s, error, finished, attempts}
//! ```
//! A cell's directory is its id with `/` replaced by `__`.
//!
//! # Caching and resume
//! A cell's key is the sha256 of its recipe file's bytes, the model (source, template,
//! vocabulary), the hyperparameters and run options, the seed, the sha256 of every data file
//! its recipe reads, and the mixprobe version. A cell whose `cell.json` holds the same key and
//! status `done` is skipped; a different key discards the cell's directory and trains it
//! again; an interrupted cell (status `pending`, same key) resumes from its run directory's
//! latest checkpoint. A failed cell is recorded (`status: failed` plus the error) and the grid
//! goes on; it stays failed on later runs unless `--retry-failed`.
pub mod results;
pub mod runner;
pub mod spec;

pub use results::{CellRecord, CellResult, Results};
pub use runner::{RunOptions, RunReport, run_experiment};
pub use spec::{CellSpec, Experiment, ModelSource, ModelSpec};
