//! End-to-end training on CPU with a tiny from-scratch preset on small real data (../shared/data):
//! every strategy lowers the training loss and writes every checkpoint; sequential training's
//! forgetting matrix; a stopped-and-resumed run ends bit-identical to an uninterrupted one.
mod common;

use mixprobe::data::template::ChatTemplate;
use mixprobe::model::{CpuAutodiff, Preset};
use mixprobe::train::config::TrainConfig;
use mixprobe::train::log::Forgetting;
use mixprobe::train::run::{Controls, Outcome, RunSpec, Start, Summary, run};
use std::path::{Path, PathBuf};

const SOURCES: &str = r#"
[sources.math]
path = "gsm8k/smoke_train_256.jsonl"
format = "gsm8k"

[sources.code]
path = "codealpaca/smoke_256.json"
format = "code_alpaca"

[sources.general]
path = "sharegpt/smoke_256.jsonl"
format = "sharegpt"
"#;

fn write_recipe(dir: &Path, name: &str, strategy: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("name = \"{name}\"\nseed = 7\n\n[strategy]\n{strategy}\n{SOURCES}"),
    )
    .unwrap();
    path
}

fn hparams() -> TrainConfig {
    TrainConfig {
        lr: 4e-3,
        epochs: Some(1),
        batch_size: 8,
        max_len: 128,
        checkpoint_every: 0,
        eval_limit: Some(16),
        ..TrainConfig::tiny()
    }
}

fn spec(shared: &Path, recipe: PathBuf, out: PathBuf, hp: TrainConfig, limit: usize) -> RunSpec {
    RunSpec {
        recipe,
        data_dir: shared.join("data"),
        start: Start::Preset(Preset::Tiny),
        tokenizer: None,
        vocab_size: 1024,
        template: ChatTemplate::Plain,
        out,
        hparams: hp,
        hparams_source: "test".into(),
        seed: None,
        limit_examples: Some(limit),
        holdout: Some(24),
        skip_invalid: false,
        resume: false,
        device: "cpu".into(),
        precision: None,
        command: vec!["test".into()],
    }
}

fn train(spec: &RunSpec, controls: &Controls) -> Summary {
    run::<CpuAutodiff>(spec, controls, &Default::default()).unwrap()
}

/// Every metrics line of a run.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn forgetting(run: &Path) -> Forgetting {
    serde_json::from_str(&std::fs::read_to_string(run.join("forgetting.json")).unwrap()).unwrap()
}

fn assert_hf_dir(dir: &Path) {
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(dir.join(f).is_file(), "{} lacks {f}", dir.display());
    }
}

/// Mean loss of the first and of the last `k` logged steps of a stage.
fn first_last(lines: &[serde_json::Value], stage: u64, k: usize) -> (f64, f64) {
    let losses: Vec<f64> = lines
        .iter()
        .filter(|l| l["stage"] == stage)
        .map(|l| l["loss"].as_f64().unwrap())
        .collect();
    assert!(
        losses.len() >= 2 * k,
        "stage {stage}: only {} steps",
        losses.len()
    );
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    (mean(&losses[..k]), mean(&losses[losses.len() - k..]))
}

#[test]
fn every_strategy_trains_writes_checkpoints_and_lowers_the_loss() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let strategies = [
        (
            "single",
            "kind = \"single\"\nsource = \"math\"",
            vec!["math"],
        ),
        ("mixed", "kind = \"mixed\"", vec!["mixed"]),
        (
            "mixed_sequential",
            "kind = \"mixed_sequential\"",
            vec!["code-math", "general"],
        ),
        (
            "dmt",
            "kind = \"dmt\"\nk = \"1/256\"",
            vec!["specialized", "general-replay"],
        ),
    ];
    for (name, strategy, stage_names) in strategies {
        let recipe = write_recipe(tmp.path(), name, strategy);
        let out = tmp.path().join(name);
        let s = train(
            &spec(&shared, recipe, out.clone(), hparams(), 112),
            &Controls::default(),
        );
        assert_eq!(s.outcome, Outcome::Finished, "{name}");
        let names: Vec<&str> = s.stages.iter().map(|st| st.name.as_str()).collect();
        assert_eq!(names, stage_names, "{name}");
        let lines = metrics(&out);
        assert_eq!(
            lines.len() as u64,
            s.global_step,
            "{name}: one metrics line per step"
        );
        for (i, st) in s.stages.iter().enumerate() {
            assert_hf_dir(&out.join(format!("stage-{}", i + 1)));
            let stage = i as u64 + 1;
            let (first, last) = first_last(&lines, stage, 3);
            eprintln!(
                "{name} stage {stage} {}: {} steps, loss {first:.3} -> {last:.3}",
                st.name, st.steps
            );
            if i == 0 {
                assert!(
                    last < first - 0.5,
                    "{name} stage {stage}: loss {first} -> {last} did not drop"
                );
            } else {
                assert!(
                    last < first,
                    "{name} stage {stage}: loss {first} -> {last} did not drop"
                );
            }
        }
        assert_hf_dir(&out.join("final"));
        for f in ["run.json", "manifest.json", "recipe.toml", "tokenizer.json"] {
            assert!(out.join(f).is_file(), "{name}: no {f}");
        }
        let first = &lines[0];
        for key in [
            "stage",
            "step",
            "loss",
            "loss_by_source",
            "lr",
            "grad_norm",
            "tokens_per_s",
        ] {
            assert!(!first[key].is_null(), "{name}: metrics lack {key}");
        }
        let f = forgetting(&out);
        assert_eq!(
            f.rows.len(),
            s.stages.len() + 1,
            "{name}: initial row + one per stage"
        );
        // Training lowers the held-out loss of the abilities it trains on.
        let (before, after) = (
            f.nll(0, "math").unwrap(),
            f.nll(s.stages.len(), "math").unwrap(),
        );
        assert!(
            after < before - 0.3,
            "{name}: held-out math NLL {before} -> {after}"
        );
        let run_json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
        assert_eq!(run_json["finished"], true);
        assert_eq!(run_json["seed"], 7);
    }
}

#[test]
fn sequential_training_forgets_math_during_the_general_stage() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = write_recipe(tmp.path(), "sequential", "kind = \"sequential\"");
    let out = tmp.path().join("run");
    let hp = TrainConfig {
        epochs: Some(2),
        ..hparams()
    };
    let s = train(
        &spec(&shared, recipe, out.clone(), hp, 128),
        &Controls::default(),
    );
    let names: Vec<&str> = s.stages.iter().map(|st| st.name.as_str()).collect();
    assert_eq!(names, ["code", "math", "general"]);
    let f = forgetting(&out);
    eprintln!("forgetting matrix (held-out NLL per token):");
    for r in &f.rows {
        eprintln!(
            "  {} {:<8} {}",
            r.stage,
            r.name,
            serde_json::Value::Object(r.nll.clone())
        );
    }
    let math = |stage| f.nll(stage, "math").unwrap();
    let general = |stage| f.nll(stage, "general").unwrap();
    // The math stage teaches math, then the general stage makes it worse again (forgetting)
    // while it improves general.
    assert!(
        math(2) < math(1),
        "math stage lowers math NLL: {} -> {}",
        math(1),
        math(2)
    );
    assert!(
        math(3) > math(2),
        "general stage raises math NLL: {} -> {}",
        math(2),
        math(3)
    );
    assert!(general(3) < general(2), "general stage lowers general NLL");
}

#[test]
fn a_stopped_and_resumed_run_ends_bit_identical() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = write_recipe(tmp.path(), "ms", "kind = \"mixed_sequential\"");
    let hp = TrainConfig {
        checkpoint_every: 3,
        max_steps: Some(7),
        grad_accum: 2,
        batch_size: 4,
        ..hparams()
    };
    let whole = tmp.path().join("whole");
    let uninterrupted = train(
        &spec(&shared, recipe.clone(), whole.clone(), hp.clone(), 64),
        &Controls::default(),
    );

    let parts = tmp.path().join("parts");
    let first = spec(&shared, recipe, parts.clone(), hp, 64);
    // Stop mid-stage 1 (after a periodic checkpoint and one more step), then at the stage
    // boundary, then mid-stage 2, then finish.
    let mut done = Vec::new();
    for (i, stop_after) in [Some(4), Some(3), Some(2), None].into_iter().enumerate() {
        let s = RunSpec {
            resume: i > 0,
            ..first.clone()
        };
        let summary = train(
            &s,
            &Controls {
                stop_after,
                ..Controls::default()
            },
        );
        done.push(summary.global_step);
        assert_eq!(
            matches!(summary.outcome, Outcome::Finished),
            stop_after.is_none()
        );
    }
    // Stage 1 has 7 steps, so the second session stops exactly at the stage boundary.
    assert_eq!(done[..3], [4, 7, 9]);
    assert_eq!(done[3], uninterrupted.global_step);
    for dir in ["stage-1", "stage-2", "final"] {
        let a = std::fs::read(whole.join(dir).join("model.safetensors")).unwrap();
        let b = std::fs::read(parts.join(dir).join("model.safetensors")).unwrap();
        assert!(
            a == b,
            "{dir}: weights differ between the uninterrupted and the resumed run"
        );
    }
    // The logged losses are the same too (timings aside), one line per step.
    let strip = |lines: Vec<serde_json::Value>| -> Vec<(f64, f64, serde_json::Value)> {
        lines
            .into_iter()
            .map(|l| {
                (
                    l["loss"].as_f64().unwrap(),
                    l["grad_norm"].as_f64().unwrap(),
                    l["step"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(strip(metrics(&whole)), strip(metrics(&parts)));
    assert_eq!(forgetting(&whole), forgetting(&parts));
}
