//! Every shipped recipe in recipes/ parses, is documented, and composes (on a small data
//! directory built from the shared smoke files, with --limit-examples), so none rots.
mod common;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

fn recipes_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recipes")
}

/// A data directory laid out like ../shared/data, holding the 256-record smoke files.
fn smoke_data(shared: &Path, root: &Path) -> PathBuf {
    let data = root.join("data");
    for d in ["gsm8k", "codealpaca", "sharegpt"] {
        std::fs::create_dir_all(data.join(d)).unwrap();
    }
    let src = shared.join("data");
    std::fs::copy(
        src.join("gsm8k/smoke_train_256.jsonl"),
        data.join("gsm8k/train.jsonl"),
    )
    .unwrap();
    std::fs::copy(
        src.join("codealpaca/smoke_256.json"),
        data.join("codealpaca/code_alpaca_20k.json"),
    )
    .unwrap();
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&std::fs::read(src.join("sharegpt/smoke_256.jsonl")).unwrap())
        .unwrap();
    std::fs::write(
        data.join("sharegpt/sharegpt_v3_subset_10k.jsonl.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    data
}

/// The recipes the study needs (RQ1–RQ4, the DMT k sweep, the ablations).
fn expected_names() -> Vec<String> {
    let fr = ["1", "4", "16", "64", "256"];
    let mut v = Vec::new();
    for f in fr {
        for s in ["math", "code", "general"] {
            v.push(format!("single-{s}-f{f}"));
        }
        v.push(format!("mixed-f{f}"));
        v.push(format!("rq3-general-full-spec-f{f}"));
        v.push(format!("rq3-spec-full-general-f{f}"));
        v.push(format!("rq3-general-f64-spec-f{f}"));
        v.push(format!("dmt-k{f}"));
    }
    for n in [
        "rq4-multitask",
        "rq4-sequential",
        "rq4-mixed-sequential",
        "rq4-dmt",
    ] {
        v.push(n.into());
    }
    for n in [
        "general-no-code",
        "general-no-math",
        "general-no-code-math",
        "mixed-no-code-math",
        "dmt-k256-no-code-math",
    ] {
        v.push(format!("ablation-{n}"));
    }
    v
}

fn shipped() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(recipes_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn the_study_recipes_are_all_shipped_and_documented() {
    let names: Vec<String> = shipped()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in expected_names() {
        assert!(names.contains(&want), "recipes/{want}.toml is missing");
    }
    for p in shipped() {
        let text = std::fs::read_to_string(&p).unwrap();
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        assert!(
            header.len() >= 2,
            "{stem}: needs a comment header explaining it"
        );
        assert!(
            text.contains(&format!("name = \"{stem}\"")),
            "{stem}: name must match the file"
        );
    }
}

#[test]
fn every_shipped_recipe_composes() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let data = smoke_data(&shared, tmp.path());
    let recipes = shipped();
    assert!(recipes.len() >= expected_names().len());
    for recipe in recipes {
        let stem = recipe.file_stem().unwrap().to_string_lossy().into_owned();
        let out = tmp.path().join("out").join(&stem);
        common::bin()
            .arg("compose")
            .arg(&recipe)
            .arg("--data-dir")
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(["--limit-examples", "150", "--holdout", "30"])
            .assert()
            .success();
        let m: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(m["recipe"]["name"], stem.as_str());
        assert_eq!(m["limit_examples"], 150);
        for st in m["stages"].as_array().unwrap() {
            let examples = st["examples"].as_u64().unwrap();
            assert!(examples > 0, "{stem}: empty stage");
            let lines = std::fs::read_to_string(out.join(st["file"].as_str().unwrap()))
                .unwrap()
                .lines()
                .count();
            assert_eq!(lines as u64, examples, "{stem}: stage file length");
            for (name, s) in st["sources"].as_object().unwrap() {
                let n = s["available"].as_u64().unwrap() as f64;
                let f = s["fraction"].as_f64().unwrap();
                assert_eq!(
                    s["taken"].as_u64().unwrap(),
                    ((f * n).round() as u64).max(1),
                    "{stem} {name}"
                );
            }
        }
        if stem.starts_with("ablation-") {
            assert!(
                m["sources"]["general"]["ablation"]["removed"].is_object(),
                "{stem}: ablation recorded"
            );
        }
    }
}
