//! `mixprobe export`: LLaMA-Factory files (ShareGPT JSON, dataset_info.json, per-stage YAML,
//! README) and the plain Alpaca / ShareGPT formats, composed exactly as `mixprobe compose` does.
mod common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn recipe(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("recipes")
        .join(format!("{name}.toml"))
}

const LIMIT: [&str; 2] = ["--limit-examples", "400"];

fn export(data: &Path, out: &Path, extra: &[&str]) {
    common::bin()
        .arg("export")
        .arg(recipe("dmt-k16"))
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(LIMIT)
        .args(extra)
        .assert()
        .success();
}

fn json(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The top-level `key: value` lines of a YAML file we wrote (values are JSON-style scalars).
fn yaml(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once(": ")
                .unwrap_or_else(|| panic!("not a key: value line: {l:?}"));
            let v = v.trim();
            let v = if v.starts_with('"') {
                serde_json::from_str::<String>(v).unwrap()
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect()
}

#[test]
fn llamafactory_export_is_valid_and_chains_stages() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lf");
    export(&shared.join("data"), &out, &[]);

    let info = json(&out.join("dataset_info.json"));
    let report = json(&out.join("export.json"));
    let manifest = json(&out.join("composed/manifest.json"));
    let stages = manifest["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    for (i, st) in stages.iter().enumerate() {
        let name = format!("dmt-k16_stage{}_{}", i + 1, st["name"].as_str().unwrap());
        let entry = &info[&name];
        assert_eq!(entry["formatting"], "sharegpt", "{name} registered");
        assert_eq!(entry["columns"]["messages"], "conversations");
        assert_eq!(entry["columns"]["system"], "system");
        let file = out.join(entry["file_name"].as_str().unwrap());
        let text = std::fs::read_to_string(&file).unwrap();
        let data: Value = serde_json::from_str(&text).unwrap();
        // Round trip: what we parse re-serializes to the same value.
        let again: Value = serde_json::from_str(&serde_json::to_string(&data).unwrap()).unwrap();
        assert_eq!(data, again);
        let records = data.as_array().unwrap();
        let d = report["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name.as_str())
            .unwrap();
        let dropped = d["normalization"]["dropped_ids"].as_array().unwrap().len();
        assert_eq!(
            records.len() + dropped,
            st["examples"].as_u64().unwrap() as usize
        );
        for r in records {
            let conv = r["conversations"].as_array().unwrap();
            assert!(!conv.is_empty() && conv.len() % 2 == 0);
            for (j, turn) in conv.iter().enumerate() {
                assert_eq!(turn["from"], if j % 2 == 0 { "human" } else { "gpt" });
                assert!(turn["value"].is_string());
            }
            assert!(r.get("system").is_none_or(Value::is_string));
        }
    }
    for src in ["math", "code", "general"] {
        assert!(
            info.get(format!("dmt-k16_heldout_{src}")).is_some(),
            "held-out {src} registered"
        );
    }

    // Stage 2 starts from stage 1's output; both carry the paper's hyperparameters.
    let y1 = yaml(&out.join("stage1_specialized.yaml"));
    let y2 = yaml(&out.join("stage2_general-replay.yaml"));
    assert_eq!(y2["model_name_or_path"], y1["output_dir"]);
    assert_ne!(y1["output_dir"], y2["output_dir"]);
    assert_eq!(
        y1["model_name_or_path"],
        mixprobe::recipe::export::PLACEHOLDER_MODEL
    );
    assert!(
        std::fs::read_to_string(out.join("stage1_specialized.yaml"))
            .unwrap()
            .contains("# EDIT THIS")
    );
    for y in [&y1, &y2] {
        for (k, v) in [
            ("stage", "sft"),
            ("do_train", "true"),
            ("finetuning_type", "full"),
            ("template", "vicuna"),
            ("dataset_dir", "."),
            ("learning_rate", "2.0e-5"),
            ("num_train_epochs", "3.0"),
            ("lr_scheduler_type", "cosine"),
            ("warmup_ratio", "0.03"),
            ("bf16", "true"),
            ("cutoff_len", "2048"),
            ("seed", "42"),
        ] {
            assert_eq!(y[k], v, "{k}");
        }
    }
    assert_eq!(y1["dataset"], "dmt-k16_stage1_specialized");
    assert_eq!(y2["dataset"], "dmt-k16_stage2_general-replay");

    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    let a = readme
        .find("llamafactory-cli train stage1_specialized.yaml")
        .expect("stage 1 command");
    let b = readme
        .find("llamafactory-cli train stage2_general-replay.yaml")
        .expect("stage 2 command");
    assert!(a < b, "README runs the stages in order");

    // One path: export composes exactly as compose does.
    let composed = tmp.path().join("composed");
    common::bin()
        .arg("compose")
        .arg(recipe("dmt-k16"))
        .arg("--data-dir")
        .arg(shared.join("data"))
        .arg("--out")
        .arg(&composed)
        .args(LIMIT)
        .assert()
        .success();
    assert_eq!(json(&composed.join("manifest.json")), manifest);
}

#[test]
fn base_model_flag_and_plain_formats() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let lf = tmp.path().join("lf");
    export(
        &shared.join("data"),
        &lf,
        &[
            "--base-model",
            "meta-llama/Llama-2-7b-hf",
            "--template",
            "llama2",
        ],
    );
    let y1 = yaml(&lf.join("stage1_specialized.yaml"));
    assert_eq!(y1["model_name_or_path"], "meta-llama/Llama-2-7b-hf");
    assert_eq!(y1["template"], "llama2");

    let alpaca = tmp.path().join("alpaca");
    export(&shared.join("data"), &alpaca, &["--format", "alpaca"]);
    assert!(
        !alpaca.join("dataset_info.json").exists()
            && !alpaca.join("stage1_specialized.yaml").exists()
    );
    let recs = json(&alpaca.join("dmt-k16_stage1_specialized.json"));
    for r in recs.as_array().unwrap() {
        assert!(r["instruction"].is_string() && r["output"].is_string() && r["input"] == "");
    }
    // Math examples (GSM8K) keep their question and full worked answer.
    assert!(
        recs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["output"].as_str().unwrap().contains("####"))
    );

    let sg = tmp.path().join("sharegpt");
    export(&shared.join("data"), &sg, &["--format", "sharegpt"]);
    let recs = json(&sg.join("dmt-k16_stage2_general-replay.json"));
    let manifest = json(&sg.join("composed/manifest.json"));
    let st = &manifest["stages"][1];
    assert_eq!(
        recs.as_array().unwrap().len() as u64,
        st["examples"].as_u64().unwrap(),
        "plain ShareGPT drops nothing"
    );
    let mut exported: Vec<String> = recs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let mut wanted: Vec<String> = st["sources"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|s| {
            s["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_string())
        })
        .collect();
    exported.sort();
    wanted.sort();
    assert_eq!(exported, wanted);
    for r in recs.as_array().unwrap() {
        for t in r["conversations"].as_array().unwrap() {
            assert!(["system", "human", "gpt"].contains(&t["from"].as_str().unwrap()));
        }
    }
}
