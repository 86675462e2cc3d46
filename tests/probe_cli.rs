//! `mixprobe probe → project → metrics` end to end on a tiny model over a generated synthetic
//! suite, with probes/demo.toml.
mod common;

use mixprobe::data::bpe::{to_json, train_bpe};
use mixprobe::data::read::{ReadOptions, read_file};
use mixprobe::data::synth;
use mixprobe::data::template::ChatTemplate;
use mixprobe::model::{CpuBackend, Llama, LlamaConfig, MatmulPrecision, Preset, save_hf_dir};
use predicates::prelude::*;
use std::path::Path;

fn demo_spec() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/demo.toml")
}

#[test]
fn probe_project_metrics_on_the_synthetic_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::bin()
        .args(["data", "synth", "--scale", "small", "--out"])
        .arg(&data)
        .assert()
        .success();
    let texts: Vec<String> = [synth::MATH_TRAIN, synth::CODE_TRAIN, synth::GENERAL_TRAIN]
        .iter()
        .flat_map(|f| {
            read_file(&data.join(f), None, &ReadOptions::default())
                .unwrap()
                .examples
                .into_iter()
                .take(200)
                .filter_map(|e| e.first_user().map(str::to_string))
        })
        .collect();
    let tok = train_bpe(texts.into_iter(), 600, ChatTemplate::Plain.special_tokens()).unwrap();
    let tok_path = tmp.path().join("tokenizer.json");
    std::fs::write(&tok_path, to_json(&tok).unwrap()).unwrap();
    let config = LlamaConfig::preset(Preset::Tiny, tok.get_vocab_size(true));
    let base = tmp.path().join("base");
    let tuned = tmp.path().join("run/final");
    for (dir, seed) in [(&base, 1), (&tuned, 2)] {
        let model = Llama::<CpuBackend>::init(&config, seed, &Default::default());
        save_hf_dir(&model, dir, Some(&tok_path)).unwrap();
    }
    let out = tmp.path().join("probe");
    common::bin()
        .arg("probe")
        .arg("--spec")
        .arg(demo_spec())
        .arg("--data-dir")
        .arg(&data)
        .arg("--model")
        .arg(&base)
        .arg("--model")
        .arg(&tuned)
        .arg("--out")
        .arg(&out)
        .args(["--batch-size", "16", "--quiet"])
        .assert()
        .success()
        .stdout(predicate::str::contains("model base"))
        .stdout(predicate::str::contains("model run-final"))
        .stdout(predicate::str::contains("40 sampled"))
        // The default precision (high) never prints a note, with or without AMX.
        .stderr(predicate::str::contains("--matmul-precision").not());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["models"][1]["name"], "run-final");
    // `probe` defaults to high: bf16x3 on AMX tiles where this CPU has them, IEEE f32 elsewhere.
    assert_eq!(
        index["models"][0]["matmul_precision"],
        MatmulPrecision::High.effective().as_str()
    );
    assert_eq!(
        index["models"][0]["layers"],
        serde_json::json!([0, 1, 2, 3, 4])
    );
    assert_eq!(index["examples"].as_array().unwrap().len(), 120);
    assert!(out.join("base.safetensors").is_file());

    common::bin()
        .arg("project")
        .arg(&out)
        .args(["--layers", "2,4", "--quiet"])
        .assert()
        .success()
        .stdout(predicate::str::contains("wrote 4 tsne maps"));
    common::bin()
        .arg("project")
        .arg(&out)
        .args(["--method", "pca", "--quiet"])
        .assert()
        .success()
        .stdout(predicate::str::contains("wrote 10 pca maps"));
    let csv = out.join("projection/run-final/layer-4.tsne.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("id,source,x,y,cluster\n"));
    assert_eq!(text.lines().count(), 121);

    let metrics = tmp.path().join("m.json");
    common::bin()
        .arg("metrics")
        .arg(&out)
        .arg("--out")
        .arg(&metrics)
        .assert()
        .success()
        .stdout(predicate::str::contains("math|general"));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&metrics).unwrap()).unwrap();
    for layer in ["0", "2", "4"] {
        let e = &m["models"]["run-final"][layer];
        assert!(e["silhouette"].is_number(), "{e}");
        assert!(e["ari"].is_number(), "{e}");
        assert!(e["cka_to_first_model"].is_number(), "{e}");
        assert!(e["knn_overlap"]["code|general"].is_number(), "{e}");
        assert!(e["trustworthiness"].is_number(), "{e}");
    }
    assert_eq!(m["models"]["run-final"]["4"]["trustworthiness_map"], "tsne");
    assert_eq!(m["models"]["run-final"]["1"]["trustworthiness_map"], "pca");
    let self_cka = m["models"]["base"]["0"]["cka_to_first_model"]
        .as_f64()
        .unwrap();
    assert!((self_cka - 1.0).abs() < 1e-9, "{self_cka}");
}

#[test]
fn user_errors_exit_2_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("bad.toml");
    std::fs::write(&spec, "layers = 3\npooling = \"max\"\n").unwrap();
    common::bin()
        .arg("probe")
        .arg("--spec")
        .arg(&spec)
        .args(["--data-dir", "x", "--model", "m", "--out"])
        .arg(tmp.path().join("o"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.toml"))
        .stderr(predicate::str::contains("pooling"));
    common::bin()
        .arg("probe")
        .arg("--spec")
        .arg(demo_spec())
        .args([
            "--data-dir",
            "x",
            "--model",
            "a",
            "--model",
            "b",
            "--name",
            "one",
            "--out",
        ])
        .arg(tmp.path().join("o"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--name"));
    common::bin()
        .arg("metrics")
        .arg(tmp.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("index.json"));
}
