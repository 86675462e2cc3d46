//! `mixprobe model info` and `mixprobe model forward` against the fixtures.
mod common;

use mixprobe::model::checkpoint::read_tensors;
use mixprobe::model::{CpuBackend, Llama, LlamaConfig, Preset, save_hf_dir};
use predicates::prelude::*;
use safetensors::tensor::SafeTensors;
use std::collections::HashMap;

#[test]
fn forward_writes_reference_tensors() {
    let shared = require_shared!();
    let dir = shared.join("fixtures/tiny-llama");
    let refs = common::read_reference(&dir.join("reference.safetensors"));
    let (shape, ids) = &refs["input_ids"];
    let t = shape[1];
    let first_row: Vec<String> = ids[..t].iter().map(|&x| (x as i64).to_string()).collect();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fwd.safetensors");
    common::bin()
        .args(["model", "forward"])
        .arg(&dir)
        .args(["--ids", &first_row.join(","), "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("wrote 6 tensors for 11 tokens"));
    let ours: HashMap<String, _> = read_tensors(&out).unwrap().into_iter().collect();
    let mut names: Vec<&String> = ours.keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "final_norm",
            "hidden.0",
            "hidden.1",
            "hidden.2",
            "hidden.3",
            "logits"
        ]
    );
    let pairs = [
        ("hidden.0", "hidden.0"),
        ("hidden.1", "hidden.1"),
        ("hidden.2", "hidden.2"),
        ("hidden.3", "last_layer_prenorm"),
        ("final_norm", "hidden.3"),
        ("logits", "logits"),
    ];
    for (mine, theirs) in pairs {
        let (rshape, rdata) = &refs[theirs];
        let got = &ours[mine];
        assert_eq!(got.shape, vec![1, t, rshape[2]], "{mine}");
        let row = &rdata[..t * rshape[2]];
        let d = got
            .data
            .iter()
            .zip(row)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d <= 1e-4, "{mine} vs reference {theirs}: {d}");
    }
}

#[test]
fn info_prints_parameter_count() {
    let shared = require_shared!();
    for name in ["tiny-llama", "tiny-qwen2"] {
        let dir = shared.join("fixtures").join(name);
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let total: usize = st
            .tensors()
            .iter()
            .map(|(_, v)| v.shape().iter().product::<usize>())
            .sum();
        let arch = if name == "tiny-llama" {
            "llama (LlamaForCausalLM)"
        } else {
            "qwen2 (Qwen2ForCausalLM)"
        };
        common::bin()
            .args(["model", "info"])
            .arg(&dir)
            .assert()
            .success()
            .stdout(predicate::str::contains(format!("parameters: {total} ")))
            .stdout(predicate::str::contains(format!("architecture: {arch}")))
            .stdout(predicate::str::contains("dtype: F32"))
            .stdout(predicate::str::contains("MiB"));
    }
}

/// --text encodes with the directory's tokenizer (no special tokens unless asked).
#[test]
fn forward_with_text_uses_the_tokenizer() {
    let shared = require_shared!();
    let tok_path = shared.join("fixtures/smollm2-135m-instruct/tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path).unwrap();
    let text = "How many clips did Natalia sell?";
    let expected = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
    let config = LlamaConfig::preset(Preset::Tiny, tokenizer.get_vocab_size(true));
    let model = Llama::<CpuBackend>::init(&config, 1, &Default::default());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    save_hf_dir(&model, &dir, Some(&tok_path)).unwrap();
    let out = tmp.path().join("fwd.safetensors");
    let ids: Vec<String> = expected.iter().map(u32::to_string).collect();
    common::bin()
        .args(["model", "forward"])
        .arg(&dir)
        .args(["--text", text, "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "ids: {}\n",
            ids.join(",")
        )));
    let tensors: HashMap<String, _> = read_tensors(&out).unwrap().into_iter().collect();
    assert_eq!(tensors.len(), config.num_hidden_layers + 3);
    assert_eq!(
        tensors["logits"].shape,
        vec![1, expected.len(), config.vocab_size]
    );
}

#[test]
fn forward_input_errors_exit_with_code_2() {
    let shared = require_shared!();
    let dir = shared.join("fixtures/tiny-llama");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.safetensors");
    // No tokenizer.json in the fixture.
    common::bin()
        .args(["model", "forward"])
        .arg(&dir)
        .args(["--text", "hi", "--out"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("tokenizer.json"));
    // Token id outside the vocabulary.
    common::bin()
        .args(["model", "forward"])
        .arg(&dir)
        .args(["--ids", "1,320", "--out"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("320"));
    // Neither --ids nor --text.
    common::bin()
        .args(["model", "forward"])
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2);
    // Not a model directory.
    common::bin()
        .args(["model", "info"])
        .arg(tmp.path().join("nope"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope"));
    assert!(!out.exists());
}
