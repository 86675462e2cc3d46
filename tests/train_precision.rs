//! Mixed precision. `--precision bf16` is meant for CUDA, which CI does not have; burn's ndarray
//! backend (the CPU default) has no bf16. burn-flex's CPU backend computes in bf16 (its bf16 matrix
//! product rounds bf16 inputs, accumulates in f32 and rounds the result to bf16, as GPU tensor
//! cores do), so the very code path CUDA takes — the generic decoder with bf16 matrix products
//! and f32 everything else — runs here on it:
//! - fp32 on flex reproduces the transformers fixtures like ndarray does (one body, two backends);
//! - bf16 moves logits, loss and gradients by a bf16-sized amount (not zero: the casts happen;
//!   not more: nothing else is lost), master weights and their gradients stay f32;
//! - a training run in bf16 lowers the loss and writes f32 checkpoints; run.json records it;
//! - bf16 on ndarray is a clear error, and the automatic choice picks fp32 there.
mod common;

use burn::backend::Autodiff;
use burn::tensor::DType;
use burn_flex::Flex;
use mixprobe::data::template::ChatTemplate;
use mixprobe::model::{
    CpuAutodiff, CpuBackend, ForwardOptions, HostTensor, ParamView, Precision, Preset,
    causal_lm_loss, load_hf_dir,
};
use mixprobe::train::config::TrainConfig;
use mixprobe::train::run::{Controls, Outcome, RunSpec, Start, run};
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

type FlexAd = Autodiff<Flex<f32, i32>>;

fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// ‖a − b‖ / ‖b‖.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        num += ((x - y) as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    (num / den).sqrt()
}

const GRADS: [&str; 2] = [
    "model.layers.0.self_attn.q_proj.weight",
    "model.norm.weight",
];

/// Logits, loss and the fixture's two gradients of `fixture` on autodiff backend `B` in `p`.
struct Run {
    logits: HostTensor,
    loss: f32,
    grads: Vec<HostTensor>,
    /// dtype of every parameter and of the q_proj gradient (must stay f32).
    param_dtypes: Vec<DType>,
    grad_dtype: DType,
}

fn run_fixture<B: burn::tensor::backend::AutodiffBackend>(dir: &Path, p: Precision) -> Run {
    let reference = common::read_reference(&dir.join("reference.safetensors"));
    let model = load_hf_dir::<B>(dir, &Default::default())
        .unwrap()
        .model
        .with_precision(p)
        .unwrap();
    assert_eq!(model.precision(), p);
    let batch = common::fixture_batch(&reference);
    let out = model.forward(&batch, &ForwardOptions::logits()).unwrap();
    let logits = out.logits.unwrap();
    let loss = causal_lm_loss(logits.clone(), &batch, None).unwrap();
    let loss_value = HostTensor::from_tensor(loss.clone()).data[0];
    let grads = loss.backward();
    let params: HashMap<_, _> = model.named_params().into_iter().collect();
    let param_dtypes = params
        .values()
        .map(|v| match v {
            ParamView::Vector(t) => t.val().dtype(),
            ParamView::Embedding(t) | ParamView::Linear(t) => t.val().dtype(),
        })
        .collect();
    let grad_dtype = match &params[GRADS[0]] {
        ParamView::Linear(t) => t.val().grad(&grads).unwrap().dtype(),
        _ => unreachable!("q_proj is a linear weight"),
    };
    Run {
        logits: HostTensor::from_tensor(logits),
        loss: loss_value,
        grads: GRADS
            .iter()
            .map(|n| params[*n].grad_host(&grads).unwrap())
            .collect(),
        param_dtypes,
        grad_dtype,
    }
}

#[test]
fn flex_fp32_matches_transformers_like_ndarray() {
    let shared = require_shared!();
    for name in ["tiny-llama", "tiny-qwen2"] {
        let dir = shared.join("fixtures").join(name);
        let reference = common::read_reference(&dir.join("reference.safetensors"));
        let ours = run_fixture::<FlexAd>(&dir, Precision::Fp32);
        let d = common::max_diff(&ours.logits.data, &reference["logits"].1);
        assert!(d <= 1e-4, "{name} flex logits: max abs diff {d}");
        let d = (ours.loss - reference["loss"].1[0]).abs();
        assert!(d <= 1e-4, "{name} flex loss: diff {d}");
        for (g, n) in ours.grads.iter().zip(GRADS) {
            let d = common::max_diff(&g.data, &reference[&format!("grad.{n}")].1);
            assert!(d <= 1e-4, "{name} flex grad {n}: max abs diff {d}");
        }
    }
}

#[test]
fn bf16_mixed_precision_stays_within_bf16_error_of_fp32() {
    let shared = require_shared!();
    for name in ["tiny-llama", "tiny-qwen2"] {
        let dir = shared.join("fixtures").join(name);
        let fp32 = run_fixture::<FlexAd>(&dir, Precision::Fp32);
        let bf16 = run_fixture::<FlexAd>(&dir, Precision::Bf16);
        // bf16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2 %); through a few layers
        // the logits move by about a percent of their scale, never by nothing.
        let scale = max_abs(&fp32.logits.data);
        let d = common::max_diff(&bf16.logits.data, &fp32.logits.data);
        println!("{name}: logits max |bf16 − fp32| = {d:.3e} (scale {scale:.3})");
        assert!(
            d > 1e-5 * scale,
            "{name}: bf16 changed nothing; the casts did not happen"
        );
        assert!(
            d <= 5e-2 * scale,
            "{name}: bf16 logits off by {d} (scale {scale})"
        );
        let rel = ((bf16.loss - fp32.loss) / fp32.loss).abs();
        println!(
            "{name}: loss fp32 {} bf16 {} (rel {rel:.2e})",
            fp32.loss, bf16.loss
        );
        assert!(rel <= 1e-2, "{name}: bf16 loss off by {rel} relative");
        for ((a, b), n) in bf16.grads.iter().zip(&fp32.grads).zip(GRADS) {
            let r = rel_l2(&a.data, &b.data);
            println!("{name}: grad {n} relative L2 error {r:.3e}");
            assert!(
                r <= 5e-2,
                "{name}: bf16 gradient of {n} off by {r} (relative L2)"
            );
        }
        assert!(
            bf16.param_dtypes.iter().all(|d| *d == DType::F32),
            "{name}: master weights must stay f32: {:?}",
            bf16.param_dtypes
        );
        assert_eq!(
            bf16.grad_dtype,
            DType::F32,
            "{name}: weight gradients reach f32"
        );
    }
}

#[test]
fn bf16_is_refused_where_the_backend_has_none_and_auto_picks_it_where_it_has() {
    let device = Default::default();
    assert_eq!(
        Precision::resolve::<CpuAutodiff>(None, &device, "--precision").unwrap(),
        Precision::Fp32
    );
    let err = Precision::resolve::<CpuAutodiff>(Some(Precision::Bf16), &device, "--precision")
        .unwrap_err()
        .to_string();
    assert!(err.contains("--precision") && err.contains("bf16"), "{err}");
    assert_eq!(
        Precision::resolve::<FlexAd>(None, &Default::default(), "--precision").unwrap(),
        Precision::Bf16
    );
    let shared = require_shared!();
    let dir = shared.join("fixtures").join("tiny-llama");
    let model = load_hf_dir::<CpuBackend>(&dir, &device).unwrap().model;
    let err = model
        .with_precision(Precision::Bf16)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bf16"), "{err}");
    // fp32 is always accepted.
    let model = load_hf_dir::<CpuBackend>(&dir, &device).unwrap().model;
    assert!(model.with_precision(Precision::Fp32).is_ok());
}

/// A one-stage recipe over the GSM8K smoke file, written into `dir`.
fn math_recipe(dir: &Path, seed: u64) -> std::path::PathBuf {
    let recipe = dir.join("single.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"single\"\nseed = {seed}\n\n[strategy]\nkind = \"single\"\nsource = \"math\"\n\n\
             [sources.math]\npath = \"gsm8k/smoke_train_256.jsonl\"\nformat = \"gsm8k\"\n"
        ),
    )
    .unwrap();
    recipe
}

#[test]
fn a_bf16_training_run_lowers_the_loss_and_writes_f32_checkpoints() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = math_recipe(tmp.path(), 7);
    let out = tmp.path().join("run");
    let spec = RunSpec {
        recipe,
        data_dir: shared.join("data"),
        start: Start::Preset(Preset::Tiny),
        tokenizer: None,
        vocab_size: 512,
        template: ChatTemplate::Plain,
        out: out.clone(),
        hparams: TrainConfig {
            lr: 4e-3,
            epochs: Some(1),
            batch_size: 8,
            max_len: 256,
            checkpoint_every: 0,
            eval_limit: Some(8),
            max_steps: Some(10),
            log_every: 1,
            grad_accum: 1,
            ..TrainConfig::tiny()
        },
        hparams_source: "test".into(),
        seed: None,
        limit_examples: Some(120),
        holdout: Some(8),
        skip_invalid: false,
        resume: false,
        device: "flex-cpu".into(),
        precision: Some(Precision::Bf16),
        command: vec!["test".into()],
    };
    let summary = run::<FlexAd>(&spec, &Controls::default(), &Default::default()).unwrap();
    assert_eq!(summary.outcome, Outcome::Finished);
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["precision"], "bf16");
    let losses: Vec<f64> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert!(losses.len() >= 6, "only {} logged steps", losses.len());
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let (first, last) = (mean(&losses[..3]), mean(&losses[losses.len() - 3..]));
    println!("bf16 run: first-3 mean loss {first:.3}, last-3 {last:.3}");
    assert!(last < first - 0.1, "loss did not fall: {first} -> {last}");
    // The checkpoint holds the f32 master weights and reloads (on ndarray, in fp32).
    let bytes = std::fs::read(out.join("final").join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.tensors().iter().all(|(_, v)| v.dtype() == Dtype::F32));
    let reloaded = load_hf_dir::<CpuBackend>(&out.join("final"), &Default::default()).unwrap();
    assert_eq!(reloaded.model.precision(), Precision::Fp32);
}

#[test]
fn cli_refuses_bf16_on_the_cpu_with_exit_code_2() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = math_recipe(tmp.path(), 1);
    let out = common::bin()
        .args(["train"])
        .arg(&recipe)
        .arg("--data-dir")
        .arg(shared.join("data"))
        .args([
            "--preset",
            "tiny",
            "--max-steps",
            "1",
            "--limit-examples",
            "16",
        ])
        .args(["--precision", "bf16", "--quiet", "--out"])
        .arg(tmp.path().join("run"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("--precision") && stderr.contains("bf16"),
        "stderr: {stderr}"
    );
}
