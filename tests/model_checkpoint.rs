//! Hugging Face checkpoints: bit-exact round trips, F16/BF16 conversion, sharded indexes, and
//! clear errors for missing, extra or mis-shaped tensors and unsupported configs.
mod common;

use mixprobe::model::{
    CpuBackend, ForwardOptions, HostTensor, Llama, LlamaConfig, Preset, TokenBatch, load_hf_dir,
    save_hf_dir,
};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::BTreeMap;
use std::path::Path;

type Raw = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// The raw tensors of a safetensors file.
fn raw_tensors(path: &Path) -> Raw {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn write_raw(path: &Path, tensors: &Raw) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// A copy of a fixture directory's config with `tensors` as its weights.
fn checkpoint_dir(src: &Path, tensors: &Raw) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    write_raw(&dir.path().join("model.safetensors"), tensors);
    dir
}

fn load_err(dir: &Path) -> String {
    load_hf_dir::<CpuBackend>(dir, &Default::default())
        .unwrap_err()
        .to_string()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn load_save_load_is_bit_exact() {
    let shared = require_shared!();
    for name in ["tiny-llama", "tiny-qwen2"] {
        let src = shared.join("fixtures").join(name);
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let first = load_hf_dir::<CpuBackend>(&src, &Default::default()).unwrap();
        assert_eq!(first.source_dtype, "F32");
        let eos: &[u32] = if name == "tiny-llama" { &[2] } else { &[] };
        assert_eq!(first.eos_token_ids, eos, "{name}");
        save_hf_dir(&first.model, &a, None).unwrap();
        let second = load_hf_dir::<CpuBackend>(&a, &Default::default()).unwrap();
        save_hf_dir(&second.model, &b, None).unwrap();
        let (ra, rb) = (
            raw_tensors(&a.join("model.safetensors")),
            raw_tensors(&b.join("model.safetensors")),
        );
        assert_eq!(ra, rb, "{name}: tensors of two saves differ");
        // Also identical to the original fp32 checkpoint, name for name, byte for byte.
        assert_eq!(
            ra,
            raw_tensors(&src.join("model.safetensors")),
            "{name}: differs from the source"
        );
        assert_eq!(
            std::fs::read(a.join("config.json")).unwrap(),
            std::fs::read(b.join("config.json")).unwrap()
        );
        let original = LlamaConfig::from_file(&src.join("config.json")).unwrap();
        let saved = LlamaConfig::from_file(&a.join("config.json")).unwrap();
        assert_eq!(original.arch, saved.arch);
        assert_eq!(original.rope_theta, saved.rope_theta);
        assert_eq!(original.tie_word_embeddings, saved.tie_word_embeddings);
        assert_eq!(original.eos_token_ids(), saved.eos_token_ids());
    }
}

#[test]
fn tokenizer_is_copied_on_save() {
    let shared = require_shared!();
    let model = load_hf_dir::<CpuBackend>(&shared.join("fixtures/tiny-llama"), &Default::default())
        .unwrap()
        .model;
    let tok = shared.join("fixtures/smollm2-135m-instruct/tokenizer.json");
    let out = tempfile::tempdir().unwrap();
    save_hf_dir(&model, out.path(), Some(&tok)).unwrap();
    assert_eq!(
        std::fs::read(out.path().join("tokenizer.json")).unwrap(),
        std::fs::read(&tok).unwrap()
    );
    let again = load_hf_dir::<CpuBackend>(out.path(), &Default::default()).unwrap();
    assert_eq!(again.tokenizer, Some(out.path().join("tokenizer.json")));
}

/// Half-precision checkpoints convert exactly to the f32 values of their halves.
#[test]
fn f16_and_bf16_convert_on_load() {
    let shared = require_shared!();
    let src = shared.join("fixtures/tiny-llama");
    let original = raw_tensors(&src.join("model.safetensors"));
    let f32_model = load_hf_dir::<CpuBackend>(&src, &Default::default())
        .unwrap()
        .model;
    let batch = TokenBatch::new(&[vec![3, 14, 15, 92, 65, 35]], 0).unwrap();
    let ref_logits = HostTensor::from_tensor(
        f32_model
            .forward(&batch, &ForwardOptions::logits())
            .unwrap()
            .logits
            .unwrap(),
    );
    for (dtype, label) in [(Dtype::BF16, "BF16"), (Dtype::F16, "F16")] {
        let to_half = |x: f32| -> [u8; 2] {
            match dtype {
                Dtype::BF16 => half::bf16::from_f32(x).to_le_bytes(),
                _ => half::f16::from_f32(x).to_le_bytes(),
            }
        };
        let from_half = |b: [u8; 2]| -> f32 {
            match dtype {
                Dtype::BF16 => half::bf16::from_le_bytes(b).to_f32(),
                _ => half::f16::from_le_bytes(b).to_f32(),
            }
        };
        let halves: Raw = original
            .iter()
            .map(|(n, (_, s, b))| {
                (
                    n.clone(),
                    (
                        dtype,
                        s.clone(),
                        f32s(b).into_iter().flat_map(to_half).collect(),
                    ),
                )
            })
            .collect();
        let dir = checkpoint_dir(&src, &halves);
        let loaded = load_hf_dir::<CpuBackend>(dir.path(), &Default::default()).unwrap();
        assert_eq!(loaded.source_dtype, label);
        for (name, p) in loaded.model.named_params() {
            let expected: Vec<f32> = halves[&name]
                .2
                .chunks_exact(2)
                .map(|c| from_half([c[0], c[1]]))
                .collect();
            assert_eq!(p.to_host().data, expected, "{label} {name}");
        }
        let logits = HostTensor::from_tensor(
            loaded
                .model
                .forward(&batch, &ForwardOptions::logits())
                .unwrap()
                .logits
                .unwrap(),
        );
        let d = logits
            .data
            .iter()
            .zip(&ref_logits.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 0.05, "{label}: logits differ from f32 by {d}");
    }
}

#[test]
fn sharded_checkpoint_loads_like_a_single_file() {
    let shared = require_shared!();
    let src = shared.join("fixtures/tiny-qwen2");
    let all = raw_tensors(&src.join("model.safetensors"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let (first, second): (Raw, Raw) = all
        .clone()
        .into_iter()
        .partition(|(n, _)| n.contains("layers.0") || n.contains("embed"));
    write_raw(&dir.path().join("model-00001-of-00002.safetensors"), &first);
    write_raw(
        &dir.path().join("model-00002-of-00002.safetensors"),
        &second,
    );
    let map: serde_json::Map<String, serde_json::Value> = first
        .keys()
        .map(|n| (n.clone(), "model-00001-of-00002.safetensors".into()))
        .chain(
            second
                .keys()
                .map(|n| (n.clone(), "model-00002-of-00002.safetensors".into())),
        )
        .collect();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let sharded = load_hf_dir::<CpuBackend>(dir.path(), &Default::default())
        .unwrap()
        .model;
    let single = load_hf_dir::<CpuBackend>(&src, &Default::default())
        .unwrap()
        .model;
    for ((na, a), (nb, b)) in sharded
        .named_params()
        .iter()
        .zip(single.named_params().iter())
    {
        assert_eq!(na, nb);
        assert_eq!(a.to_host(), b.to_host(), "{na}");
    }
}

#[test]
fn missing_extra_and_misshaped_tensors_are_named() {
    let shared = require_shared!();
    let src = shared.join("fixtures/tiny-llama");
    let original = raw_tensors(&src.join("model.safetensors"));

    let mut missing = original.clone();
    missing.remove("model.layers.1.mlp.up_proj.weight");
    let e = load_err(checkpoint_dir(&src, &missing).path());
    assert!(
        e.contains("missing tensor model.layers.1.mlp.up_proj.weight"),
        "{e}"
    );

    let mut extra = original.clone();
    extra.insert(
        "model.layers.3.mlp.up_proj.weight".into(),
        (Dtype::F32, vec![2], vec![0; 8]),
    );
    let e = load_err(checkpoint_dir(&src, &extra).path());
    assert!(
        e.contains("unexpected tensor") && e.contains("model.layers.3.mlp.up_proj.weight"),
        "{e}"
    );

    let mut shaped = original.clone();
    let (_, _, bytes) = shaped["model.layers.0.self_attn.k_proj.weight"].clone();
    shaped.insert(
        "model.layers.0.self_attn.k_proj.weight".into(),
        (Dtype::F32, vec![64, 32], bytes),
    );
    let e = load_err(checkpoint_dir(&src, &shaped).path());
    assert!(
        e.contains("model.layers.0.self_attn.k_proj.weight")
            && e.contains("[64, 32]")
            && e.contains("[32, 64]"),
        "{e}"
    );

    let mut ints = original.clone();
    ints.insert(
        "model.norm.weight".into(),
        (Dtype::I32, vec![64], vec![0; 256]),
    );
    let e = load_err(checkpoint_dir(&src, &ints).path());
    assert!(e.contains("model.norm.weight") && e.contains("I32"), "{e}");

    let empty = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), empty.path().join("config.json")).unwrap();
    assert!(load_err(empty.path()).contains("model.safetensors"));
}

/// A tied checkpoint may carry lm_head.weight, but only as a copy of the embedding.
#[test]
fn tied_checkpoint_with_lm_head_copy() {
    let shared = require_shared!();
    let src = shared.join("fixtures/tiny-qwen2");
    let mut tensors = raw_tensors(&src.join("model.safetensors"));
    let embed = tensors["model.embed_tokens.weight"].clone();
    tensors.insert("lm_head.weight".into(), embed.clone());
    assert!(
        load_hf_dir::<CpuBackend>(checkpoint_dir(&src, &tensors).path(), &Default::default())
            .is_ok()
    );
    let mut changed = embed;
    changed.2[0] ^= 1;
    tensors.insert("lm_head.weight".into(), changed);
    let e = load_err(checkpoint_dir(&src, &tensors).path());
    assert!(e.contains("lm_head.weight differs"), "{e}");
}

#[test]
fn unsupported_configs_are_rejected_clearly() {
    let shared = require_shared!();
    let src = shared.join("fixtures/tiny-llama");
    let weights = raw_tensors(&src.join("model.safetensors"));
    let base: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    let cases: [(&str, serde_json::Value, &str); 4] = [
        (
            "rope_scaling",
            serde_json::json!({"rope_type": "linear", "factor": 2.0}),
            "rope_scaling",
        ),
        ("model_type", serde_json::json!("gpt2"), "gpt2"),
        ("sliding_window", serde_json::json!(4096), "sliding_window"),
        ("hidden_act", serde_json::json!("gelu"), "hidden_act"),
    ];
    for (key, value, needle) in cases {
        let mut cfg = base.clone();
        cfg[key] = value;
        let dir = checkpoint_dir(&src, &weights);
        std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
        let e = load_err(dir.path());
        assert!(
            e.contains(needle) && e.contains("config.json"),
            "{key}: {e}"
        );
    }
}

/// Presets: seeded init is reproducible, has the advertised size, and round-trips through disk.
#[test]
fn preset_init_is_seeded_and_round_trips() {
    let config = LlamaConfig::preset(Preset::Tiny, 512);
    let device = Default::default();
    let a = Llama::<CpuBackend>::init(&config, 7, &device);
    let b = Llama::<CpuBackend>::init(&config, 7, &device);
    let c = Llama::<CpuBackend>::init(&config, 8, &device);
    let host = |m: &Llama<CpuBackend>| {
        m.named_params()
            .into_iter()
            .map(|(n, p)| (n, p.to_host()))
            .collect::<Vec<_>>()
    };
    assert_eq!(host(&a), host(&b));
    assert_ne!(host(&a), host(&c));
    assert_eq!(burn::module::Module::num_params(&a), config.num_params());
    let q = &host(&a)[1].1.data;
    let std = (q.iter().map(|x| (x * x) as f64).sum::<f64>() / q.len() as f64).sqrt();
    assert!((std - 0.02).abs() < 0.002, "init std {std}");

    let dir = tempfile::tempdir().unwrap();
    save_hf_dir(&a, dir.path(), None).unwrap();
    let loaded = load_hf_dir::<CpuBackend>(dir.path(), &device)
        .unwrap()
        .model;
    assert_eq!(loaded.config().num_params(), config.num_params());
    assert_eq!(host(&loaded), host(&a));
}

/// End-of-sequence ids come from config.json and generation_config.json together.
#[test]
fn eos_ids_merge_config_and_generation_config() {
    let shared = require_shared!();
    let src = shared.join("fixtures/tiny-llama");
    let dir = checkpoint_dir(&src, &raw_tensors(&src.join("model.safetensors")));
    let gen_config = dir.path().join("generation_config.json");
    std::fs::write(&gen_config, r#"{"eos_token_id": [7, 2]}"#).unwrap();
    let loaded = load_hf_dir::<CpuBackend>(dir.path(), &Default::default()).unwrap();
    assert_eq!(loaded.eos_token_ids, vec![2, 7]);
    std::fs::write(&gen_config, r#"{"eos_token_id": "</s>"}"#).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("generation_config.json") && e.contains("eos_token_id"),
        "{e}"
    );
}
