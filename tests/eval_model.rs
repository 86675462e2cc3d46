//! `evaluate_model` / `evaluate_run_dir` end to end on a tiny from-scratch model: a three-stage
//! sequential run on the synthetic suite (a few steps per stage), then every bench (MT-Bench
//! against a local judge server) on every checkpoint, the forgetting matrix, and the CLI.
mod common;
#[path = "eval_support/server.rs"]
mod server;

use mixprobe::data::synth::{self, Scale, SynthConfig};
use mixprobe::data::template::ChatTemplate;
use mixprobe::eval::{Bench, EvalSpec, JudgeConfig, evaluate_model, evaluate_run_dir};
use mixprobe::model::{CpuAutodiff, Preset};
use mixprobe::train::config::TrainConfig;
use mixprobe::train::log::Forgetting;
use mixprobe::train::run::{Controls, RunSpec, Start, run};
use std::path::{Path, PathBuf};
use std::time::Duration;

const RECIPE: &str = r#"
name = "seq"
seed = 5

[strategy]
kind = "sequential"

[sources.math]
path = "gsm8k/train.jsonl"
format = "gsm8k"

[sources.code]
path = "codealpaca/code_alpaca_20k.json"
format = "code_alpaca"

[sources.general]
path = "sharegpt/sharegpt_v3_subset_10k.jsonl.gz"
format = "sharegpt"
"#;

/// A synthetic suite with MT-Bench linked in, and a trained three-stage run.
fn setup(shared: &Path, tmp: &Path) -> (PathBuf, PathBuf) {
    let data = tmp.join("data");
    synth::generate(
        &data,
        &SynthConfig {
            seed: 1,
            scale: Scale::Small,
        },
    )
    .unwrap();
    std::os::unix::fs::symlink(shared.join("data/mt_bench"), data.join("mt_bench")).unwrap();
    let recipe = tmp.join("seq.toml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let out = tmp.join("run");
    let spec = RunSpec {
        recipe,
        data_dir: data.clone(),
        start: Start::Preset(Preset::Tiny),
        tokenizer: None,
        vocab_size: 1024,
        template: ChatTemplate::Plain,
        out: out.clone(),
        hparams: TrainConfig {
            lr: 4e-3,
            epochs: Some(1),
            max_steps: Some(2),
            batch_size: 8,
            max_len: 128,
            checkpoint_every: 0,
            eval_limit: Some(8),
            ..TrainConfig::tiny()
        },
        hparams_source: "test".into(),
        seed: None,
        limit_examples: Some(48),
        holdout: Some(8),
        skip_invalid: false,
        resume: false,
        device: "cpu".into(),
        precision: None,
        command: vec!["test".into()],
    };
    run::<CpuAutodiff>(&spec, &Controls::default(), &Default::default()).unwrap();
    (data, out)
}

fn spec(data: &Path, judge: Option<JudgeConfig>) -> EvalSpec {
    let mut s = EvalSpec::new(data, Bench::ALL.to_vec());
    s.limit = Some(3);
    s.max_new_tokens = 24;
    s.batch_size = 4;
    s.progress = false;
    s.judge = judge;
    s
}

const UNIT_KEYS: [&str; 6] = [
    "gsm8k.strict",
    "gsm8k.flexible",
    "humaneval.pass@1",
    "synth.math",
    "synth.code",
    "synth.general",
];

#[test]
fn every_bench_on_every_stage_and_the_matrix() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let (data, run_dir) = setup(&shared, tmp.path());
    let server = server::JudgeServer::start();
    let mut judge = JudgeConfig::new(&server.url, "judge", None);
    judge.backoff = Duration::from_millis(10);

    let r = evaluate_run_dir(&run_dir, &spec(&data, Some(judge))).unwrap();
    let names: Vec<&str> = r.stages.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["stage-1", "stage-2", "stage-3", "final"]);
    for (stage, res) in &r.stages {
        assert_eq!(res.template, "plain", "{stage}: the run's template");
        for k in UNIT_KEYS {
            let v = res.scores[k];
            assert!((0.0..=1.0).contains(&v), "{stage} {k} = {v}");
        }
        for a in ["math", "code", "general"] {
            let v = res.scores[&format!("nll.{a}")];
            assert!(v.is_finite() && v > 0.0, "{stage} nll.{a} = {v}");
        }
        // The server rates every judgment 5 (no marker in the tiny model's answers).
        for k in ["mtbench.score", "mtbench.turn1", "mtbench.turn2"] {
            assert_eq!(res.scores[k], 5.0, "{stage} {k}");
        }
        assert!(!res.scores.contains_key("mtbench.proxy"));
        assert_eq!(res.details["mtbench"]["n_judgments"], 6);
        for (file, n) in [
            ("gsm8k", 3),
            ("humaneval", 3),
            ("mtbench", 3),
            ("synth.math", 3),
            ("synth.code", 3),
            ("synth.general", 3),
        ] {
            assert_eq!(res.samples[file].len(), n, "{stage} {file}");
        }
        assert_eq!(res.details["humaneval"]["n_problems"], 3);
    }
    // final/ holds the weights of stage-3: evaluated once.
    assert_eq!(r.stages[3].1.details["same_weights_as"], "stage-3");
    assert_eq!(r.stages[3].1.scores, r.stages[2].1.scores);
    // Stages differ in weights, so their NLLs differ.
    assert_ne!(
        r.stages[0].1.scores["nll.math"],
        r.stages[2].1.scores["nll.math"]
    );

    let m = &r.forgetting;
    assert_eq!(m.stages, names);
    assert_eq!(m.abilities, ["math", "code", "general"]);
    for key in [
        "nll",
        "synth",
        "heldout_nll",
        "gsm8k.strict",
        "humaneval.pass@1",
        "mtbench.score",
    ] {
        let rows = &m.metrics[key];
        assert_eq!(rows.len(), 4, "{key}");
        assert!(rows.iter().all(|r| r.len() == 3), "{key}");
    }
    for (i, (_, res)) in r.stages.iter().enumerate() {
        assert_eq!(m.metrics["nll"][i][0], Some(res.scores["nll.math"]));
        assert_eq!(m.metrics["synth"][i][2], Some(res.scores["synth.general"]));
        assert_eq!(
            m.metrics["gsm8k.strict"][i],
            [Some(res.scores["gsm8k.strict"]), None, None]
        );
        assert_eq!(
            m.metrics["humaneval.pass@1"][i][1],
            Some(res.scores["humaneval.pass@1"])
        );
        assert_eq!(m.metrics["mtbench.score"][i][2], Some(5.0));
    }
    // heldout_nll is the run's own forgetting.json (final = its last row).
    let f: Forgetting =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("forgetting.json")).unwrap())
            .unwrap();
    for (i, stage) in [1, 2, 3, 3].into_iter().enumerate() {
        assert_eq!(m.metrics["heldout_nll"][i][0], f.nll(stage, "math"));
        assert!(m.metrics["heldout_nll"][i][0].is_some());
    }

    // Without a judge: only the proxy, in [0,1], never an MT-Bench score.
    let res = evaluate_model(&run_dir.join("final"), &spec(&data, None)).unwrap();
    let p = res.scores["mtbench.proxy"];
    assert!((0.0..=1.0).contains(&p), "proxy {p}");
    assert!(!res.scores.contains_key("mtbench.score"));
    assert!(
        res.details["mtbench"]["what"]
            .as_str()
            .unwrap()
            .contains("NOT an MT-Bench score")
    );
    // Greedy generation is deterministic: the same checkpoint scores the same.
    for k in UNIT_KEYS {
        assert_eq!(res.scores[k], r.stages[3].1.scores[k], "{k}");
    }

    // The CLI on the run: results, matrix and generations that `mixprobe score` rescores.
    let out = tmp.path().join("eval");
    std::fs::create_dir_all(&out).unwrap();
    common::bin()
        .args(["eval"])
        .arg(&run_dir)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--bench",
            "gsm8k,nll",
            "--limit",
            "3",
            "--max-new-tokens",
            "24",
            "--no-progress",
        ])
        .arg("--out")
        .arg(out.join("results.json"))
        .assert()
        .success();
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["stages"].as_array().unwrap().len(), 4);
    assert_eq!(results["stages"][0]["stage"], "stage-1");
    let matrix: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("forgetting-eval.json")).unwrap())
            .unwrap();
    assert_eq!(matrix["metrics"]["nll"].as_array().unwrap().len(), 4);
    let rescored = out.join("rescored.json");
    common::bin()
        .args(["score", "gsm8k", "--data-dir"])
        .arg(&data)
        .arg("--samples")
        .arg(out.join("results.stage-1.gsm8k.jsonl"))
        .arg("--out")
        .arg(&rescored)
        .assert()
        .success();
    let rescored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rescored).unwrap()).unwrap();
    assert_eq!(
        rescored["accuracy_strict"].as_f64().unwrap(),
        results["stages"][0]["scores"]["gsm8k.strict"]
            .as_f64()
            .unwrap()
    );
    assert_eq!(rescored["n_problems"], 3);
}

#[test]
fn bad_requests_are_user_errors() {
    let tmp = tempfile::tempdir().unwrap();
    common::bin()
        .args([
            "eval",
            "nowhere",
            "--data-dir",
            "nowhere",
            "--bench",
            "gsm8k,chess",
            "--out",
        ])
        .arg(tmp.path().join("r.json"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("chess"));
    // A run directory without checkpoints.
    std::fs::write(tmp.path().join("run.json"), "{}").unwrap();
    common::bin()
        .arg("eval")
        .arg(tmp.path())
        .args(["--data-dir"])
        .arg(tmp.path())
        .args(["--bench", "nll", "--out"])
        .arg(tmp.path().join("r.json"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no finished checkpoint"));
    // synth on a directory that is not a synthetic suite.
    let err = evaluate_model(
        Path::new("/nonexistent-model"),
        &EvalSpec::new(tmp.path(), vec![Bench::Synth]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("nonexistent-model"), "{err}");
}
