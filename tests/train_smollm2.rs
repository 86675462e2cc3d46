//! Fine-tuning a real pretrained model on CPU: SmolLM2-135M-Instruct imported from the shared
//! GGUF file, a few AdamW steps on real GSM8K examples with the ChatML template. The loss is
//! finite and moves, training changes the model's outputs, and the saved `final/` checkpoint
//! reloads to the same function (reload → save → reload is bit-exact).
mod common;

use mixprobe::data::template::ChatTemplate;
use mixprobe::model::{CpuAutodiff, CpuBackend, ForwardOptions, HostTensor, TokenBatch};
use mixprobe::model::{load_hf_dir, save_hf_dir};
use mixprobe::train::config::TrainConfig;
use mixprobe::train::run::{Controls, Outcome, RunSpec, Start, run};
use std::path::Path;

/// Logits and every hidden state of one fixed prompt, as host data.
fn outputs(dir: &Path) -> Vec<HostTensor> {
    let model = load_hf_dir::<CpuBackend>(dir, &Default::default())
        .unwrap()
        .model;
    let batch = TokenBatch::new(&[vec![1, 9690, 198, 2683, 314, 253, 1345, 30]], 0).unwrap();
    let out = model
        .forward(&batch, &ForwardOptions::everything())
        .unwrap();
    out.hidden
        .into_iter()
        .map(|(_, t)| HostTensor::from_tensor(t))
        .chain(out.logits.map(HostTensor::from_tensor))
        .collect()
}

#[test]
fn smollm2_fine_tunes_and_its_checkpoint_reloads() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("smollm2");
    common::bin()
        .args(["model", "import-gguf"])
        .arg(shared.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
        .arg("--out")
        .arg(&base)
        .assert()
        .success();
    let recipe = tmp.path().join("math.toml");
    std::fs::write(
        &recipe,
        "name = \"smollm2-math\"\nseed = 3\n\n[strategy]\nkind = \"single\"\nsource = \"math\"\n\n\
         [sources.math]\npath = \"gsm8k/smoke_train_256.jsonl\"\nformat = \"gsm8k\"\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let spec = RunSpec {
        recipe,
        data_dir: shared.join("data"),
        start: Start::Model(base.clone()),
        tokenizer: None,
        vocab_size: 0,
        template: ChatTemplate::ChatMl,
        out: out.clone(),
        hparams: TrainConfig {
            lr: 2e-4,
            epochs: Some(1),
            batch_size: 2,
            grad_accum: 1,
            max_len: 96,
            warmup_ratio: 0.0,
            checkpoint_every: 0,
            log_every: 1,
            eval_limit: Some(2),
            ..TrainConfig::tiny()
        },
        hparams_source: "test".into(),
        seed: None,
        limit_examples: Some(8),
        holdout: Some(2),
        skip_invalid: false,
        resume: false,
        device: "cpu".into(),
        precision: None,
        command: vec!["test".into()],
    };
    let summary = run::<CpuAutodiff>(&spec, &Controls::default(), &Default::default()).unwrap();
    assert_eq!(summary.outcome, Outcome::Finished);
    assert_eq!(
        summary.global_step, 3,
        "6 training examples in batches of 2"
    );

    let losses: Vec<f64> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v["loss"].as_f64())
        .collect();
    assert_eq!(losses.len(), 3, "{losses:?}");
    assert!(
        losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );
    // A pretrained instruct model already fits GSM8K answers moderately: well below ln(vocab).
    assert!(losses[0] < (49152f64).ln(), "{losses:?}");
    assert!(
        losses.windows(2).any(|w| w[0] != w[1]),
        "the loss never changed: {losses:?}"
    );

    let trained = out.join("final");
    let before = outputs(&base);
    let after = outputs(&trained);
    let moved = before
        .iter()
        .zip(&after)
        .map(|(a, b)| {
            a.data
                .iter()
                .zip(&b.data)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        })
        .fold(0f32, f32::max);
    assert!(
        moved > 1e-4,
        "training left the outputs unchanged ({moved})"
    );

    // Reload → save → reload gives bit-identical outputs.
    let model = load_hf_dir::<CpuBackend>(&trained, &Default::default())
        .unwrap()
        .model;
    let again = tmp.path().join("again");
    save_hf_dir(&model, &again, Some(&trained.join("tokenizer.json"))).unwrap();
    assert_eq!(outputs(&again), after);
}
