//! Ability evaluation: GSM8K, HumanEval (sandboxed), MT-Bench (LLM judge or offline proxy),
//! held-out NLL and the synthetic suite.
//!
//! - [`run`]: `mixprobe eval` — [`evaluate_model`], [`evaluate_run_dir`] and the score keys.
//! - [`generation`]: a model with its tokenizer and chat template answering prompts in batches.
//! - [`sandbox`]: runs untrusted Python programs contained (namespaces, unprivileged uids, rlimits).
//! - [`humaneval`]: HumanEval programs, code extraction from chat completions, scoring in the sandbox.
//! - [`passk`]: the unbiased pass@k estimator.
//! - [`gsm8k`]: GSM8K answer extraction (strict and flexible, as lm-evaluation-harness) and scoring.
//! - [`mtbench`], [`judge`]: FastChat single-answer grading over an OpenAI-compatible API.
//! - [`nll`]: held-out NLL per ability (the trainer's computation).
//! - [`samples`]: reading externally generated completions (JSON Lines).
pub mod generation;
pub mod gsm8k;
pub mod humaneval;
pub mod judge;
pub mod mtbench;
pub mod nll;
pub mod passk;
pub mod run;
pub mod samples;
pub mod sandbox;

pub use judge::JudgeConfig;
pub use run::{
    Bench, EvalResults, EvalSpec, ForgettingMatrix, RunEval, evaluate_model, evaluate_run_dir,
};
