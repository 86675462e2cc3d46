//! Ability evaluation: GSM8K, HumanEval (sandboxed), scorers.
//!
//! - [`sandbox`]: runs untrusted Python programs contained (namespaces, unprivileged uids, rlimits).
//! - [`humaneval`]: HumanEval programs, code extraction from chat completions, scoring in the sandbox.
//! - [`passk`]: the unbiased pass@k estimator.
//! - [`gsm8k`]: GSM8K answer extraction (strict and flexible, as lm-evaluation-harness) and scoring.
//! - [`samples`]: reading externally generated completions (JSON Lines).
pub mod gsm8k;
pub mod humaneval;
pub mod passk;
pub mod samples;
pub mod sandbox;
