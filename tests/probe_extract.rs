//! Extraction on a tiny from-scratch model over the synthetic suite: the stored vectors equal a
//! hand computation from `Llama::forward`, do not depend on the batch size, sampling is seeded,
//! and projection + metrics write the documented files and keys.
use mixprobe::data::bpe::{to_json, train_bpe};
use mixprobe::data::read::{ReadOptions, read_file};
use mixprobe::data::synth::{self, Scale, SynthConfig};
use mixprobe::data::template::ChatTemplate;
use mixprobe::model::{
    CpuBackend, ForwardOptions, HiddenSelect, HostTensor, Llama, LlamaConfig, MatmulPrecision,
    Preset, TokenBatch, save_hf_dir,
};
use mixprobe::probe::project::projection_path;
use mixprobe::probe::{
    ExtractIndex, ExtractOptions, Method, MetricsConfig, ModelRef, ProbeSpec, ProjectConfig,
    extract, load_layer, metrics, project,
};
use std::path::{Path, PathBuf};

struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    model: PathBuf,
    other: PathBuf,
    root: PathBuf,
}

/// The synthetic suite, a BPE tokenizer trained on its queries, and two tiny models (seeds 1, 2).
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let data = root.join("data");
    synth::generate(
        &data,
        &SynthConfig {
            seed: 0,
            scale: Scale::Small,
        },
    )
    .unwrap();
    let mut texts = Vec::new();
    for f in [synth::MATH_TRAIN, synth::CODE_TRAIN, synth::GENERAL_TRAIN] {
        let loaded = read_file(&data.join(f), None, &ReadOptions::default()).unwrap();
        texts.extend(
            loaded
                .examples
                .iter()
                .take(200)
                .filter_map(|e| e.first_user().map(str::to_string)),
        );
    }
    let tok = train_bpe(texts.into_iter(), 600, ChatTemplate::Plain.special_tokens()).unwrap();
    let tok_path = root.join("tokenizer.json");
    std::fs::write(&tok_path, to_json(&tok).unwrap()).unwrap();
    let config = LlamaConfig::preset(Preset::Tiny, tok.get_vocab_size(true));
    let mut dirs = Vec::new();
    for seed in [1, 2] {
        let dir = root.join(format!("model-{seed}"));
        let model = Llama::<CpuBackend>::init(&config, seed, &Default::default());
        save_hf_dir(&model, &dir, Some(&tok_path)).unwrap();
        dirs.push(dir);
    }
    Setup {
        data,
        model: dirs[0].clone(),
        other: dirs[1].clone(),
        root,
        _tmp: tmp,
    }
}

fn spec(count: usize, layers: &str, pooling: &str) -> ProbeSpec {
    ProbeSpec::from_toml_str(
        &format!(
            "seed = 3\nlayers = {layers}\npooling = \"{pooling}\"\n\
             [[set]]\nname = \"math\"\npath = \"gsm8k/train.jsonl\"\ncount = {count}\n\
             [[set]]\nname = \"code\"\npath = \"codealpaca/code_alpaca_20k.json\"\ncount = {count}\n\
             [[set]]\nname = \"general\"\npath = \"sharegpt/sharegpt_v3_subset_10k.jsonl.gz\"\ncount = {count}\n"
        ),
        "test.toml",
    )
    .unwrap()
}

/// IEEE f32 products, so the pooled states can be held to 1e-5 of the by-hand pooling (the
/// default, `High`, is bf16x3 on AMX tiles where the CPU has them; it has its own test below).
fn opts(batch_size: usize) -> ExtractOptions {
    ExtractOptions {
        batch_size,
        matmul_precision: MatmulPrecision::Highest,
        ..ExtractOptions::default()
    }
}

/// `hidden[layer]` of one sequence run alone, pooled in f64.
fn by_hand(model_dir: &Path, text: &str, layer: usize, pooling: &str) -> Vec<f64> {
    let tok = tokenizers::Tokenizer::from_file(model_dir.join("tokenizer.json")).unwrap();
    let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
    let loaded =
        mixprobe::model::load_hf_dir::<CpuBackend>(model_dir, &Default::default()).unwrap();
    let out = loaded
        .model
        .forward(
            &TokenBatch::new(std::slice::from_ref(&ids), 0).unwrap(),
            &ForwardOptions {
                hidden: HiddenSelect::All,
                ..Default::default()
            },
        )
        .unwrap();
    let h = HostTensor::from_tensor(out.hidden(layer).unwrap().clone());
    let (t, d) = (h.shape[1], h.shape[2]);
    assert_eq!(t, ids.len());
    let rows: Vec<usize> = match pooling {
        "last" => vec![t - 1],
        "mean_skip_first" if t > 1 => (1..t).collect(),
        _ => (0..t).collect(),
    };
    (0..d)
        .map(|j| {
            rows.iter()
                .map(|&r| f64::from(h.data[r * d + j]))
                .sum::<f64>()
                / rows.len() as f64
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn extraction_matches_forward_and_ignores_batch_size() {
    let s = setup();
    let models = [ModelRef::from_dir(&s.model)];
    for pooling in ["mean", "mean_skip_first", "last"] {
        let spec = spec(6, "[0, 2, \"last\"]", pooling);
        let out1 = s.root.join(format!("out-{pooling}-1"));
        let out5 = s.root.join(format!("out-{pooling}-5"));
        let index = extract(&spec, &s.data, &models, &out1, &opts(1)).unwrap();
        extract(&spec, &s.data, &models, &out5, &opts(5)).unwrap();
        assert_eq!(index.examples.len(), 18);
        let m = &index.models[0];
        assert_eq!(m.name, "model-1");
        assert_eq!(m.layers, [0, 2, 4]);
        assert_eq!(m.hidden_size, 128);
        assert_eq!(m.file, "model-1.safetensors");
        // every file is a valid safetensors file with the documented names and shapes
        let bytes = std::fs::read(out1.join(&m.file)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut names = st.names();
        names.sort();
        assert_eq!(names, ["layer.0", "layer.2", "layer.4"]);
        assert_eq!(st.tensor("layer.2").unwrap().shape(), [18, 128]);
        for layer in [0, 2, 4] {
            let a = load_layer(&out1, m, layer).unwrap();
            let b = load_layer(&out5, m, layer).unwrap();
            let diff = a
                .iter()
                .zip(b.iter())
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(
                diff <= 1e-5,
                "{pooling} layer {layer}: batch 1 vs 5 differ by {diff}"
            );
            // one example of each source, by hand
            for row in [0, 7, 17] {
                let ex = &index.examples[row];
                let want = by_hand(&s.model, &ex.text, layer, pooling);
                let got = b.row(row).to_vec();
                let err = max_abs_diff(&got, &want);
                assert!(
                    err <= 1e-5,
                    "{pooling} layer {layer} row {row}: off by {err}"
                );
            }
        }
    }
}

/// `matmul_precision = High` (bf16x3 on AMX tiles where the CPU has them) is the default, is
/// recorded in the index as what actually ran, and moves the pooled states by no more than its
/// 2⁻¹⁶-relative products allow (checked against the by-hand f64 pooling of the
/// highest-precision forward).
#[test]
fn high_matmul_precision_is_the_default_is_recorded_and_stays_close() {
    let s = setup();
    let models = [ModelRef::from_dir(&s.model)];
    let spec = spec(4, "[0, 2, \"last\"]", "mean");
    assert_eq!(
        ExtractOptions::default().matmul_precision,
        MatmulPrecision::High
    );
    let out = s.root.join("out-high");
    let high = ExtractOptions {
        batch_size: 3,
        ..ExtractOptions::default()
    };
    let index = extract(&spec, &s.data, &models, &out, &high).unwrap();
    let m = &index.models[0];
    assert_eq!(m.matmul_precision, MatmulPrecision::High.effective());
    let highest = extract(
        &spec,
        &s.data,
        &models,
        &s.root.join("out-highest"),
        &opts(3),
    )
    .unwrap();
    assert_eq!(highest.models[0].matmul_precision, MatmulPrecision::Highest);
    for layer in [0, 2, 4] {
        let got = load_layer(&out, m, layer).unwrap();
        for row in [0, 5, 11] {
            let want = by_hand(&s.model, &index.examples[row].text, layer, "mean");
            let largest = want.iter().fold(0f64, |a, b| a.max(b.abs()));
            let err = max_abs_diff(&got.row(row).to_vec(), &want);
            assert!(
                err <= 1e-5 + 1e-4 * largest,
                "layer {layer} row {row}: off by {err} (largest {largest})"
            );
        }
    }
}

#[test]
fn sampling_is_seeded_and_counted() {
    let s = setup();
    let models = [ModelRef::from_dir(&s.model)];
    let a = extract(
        &spec(5, "1", "mean"),
        &s.data,
        &models,
        &s.root.join("a"),
        &opts(4),
    )
    .unwrap();
    let b = extract(
        &spec(5, "1", "mean"),
        &s.data,
        &models,
        &s.root.join("b"),
        &opts(4),
    )
    .unwrap();
    assert_eq!(a.examples, b.examples);
    let mut other = spec(5, "1", "mean");
    other.seed = 4;
    let c = extract(&other, &s.data, &models, &s.root.join("c"), &opts(4)).unwrap();
    assert_ne!(a.examples, c.examples);
    let sources: Vec<&str> = a.examples.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(sources, [["math"; 5], ["code"; 5], ["general"; 5]].concat());
    // the texts are the files' queries (raw query text)
    let math = read_file(
        &s.data.join(synth::MATH_TRAIN),
        None,
        &ReadOptions::default(),
    )
    .unwrap();
    for e in &a.examples[..5] {
        let src = math.examples.iter().find(|x| x.id == e.id).unwrap();
        assert_eq!(src.first_user().unwrap(), e.text);
    }
    assert_eq!(a.sets[0].sampled, 5);
    assert_eq!(a.sets[0].available, math.examples.len());
    assert_eq!(a.sets[0].records, math.records());
    // the index round-trips from disk
    assert_eq!(ExtractIndex::load(&s.root.join("a")).unwrap(), a);
}

#[test]
fn bad_requests_are_clear_errors() {
    let s = setup();
    let models = [ModelRef::from_dir(&s.model)];
    let e = extract(
        &spec(100_000, "1", "mean"),
        &s.data,
        &models,
        &s.root.join("x"),
        &opts(4),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("\"math\"") && e.contains("count") && e.contains("usable"),
        "{e}"
    );
    let e = extract(
        &spec(3, "9", "mean"),
        &s.data,
        &models,
        &s.root.join("x"),
        &opts(4),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("9 is out of range") && e.contains("model-1"),
        "{e}"
    );
    let twice = [ModelRef::from_dir(&s.model), ModelRef::from_dir(&s.model)];
    let e = extract(
        &spec(3, "1", "mean"),
        &s.data,
        &twice,
        &s.root.join("x"),
        &opts(4),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("used twice"), "{e}");
    let e = extract(
        &spec(3, "1", "mean"),
        &s.root.join("nope"),
        &models,
        &s.root.join("x"),
        &opts(4),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("nope/gsm8k/train.jsonl"), "{e}");
    let e = project(&s.root.join("nope"), &ProjectConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("index.json"), "{e}");
}

#[test]
fn projection_and_metrics_write_the_documented_keys() {
    let s = setup();
    let models = [
        ModelRef {
            name: "base".into(),
            dir: s.model.clone(),
        },
        ModelRef {
            name: "other".into(),
            dir: s.other.clone(),
        },
    ];
    let out = s.root.join("probe");
    extract(
        &spec(12, "[1, 3]", "mean"),
        &s.data,
        &models,
        &out,
        &opts(8),
    )
    .unwrap();
    let tsne = ProjectConfig {
        perplexity: 5.0,
        layers: Some(vec![3]),
        ..ProjectConfig::default()
    };
    project(&out, &tsne).unwrap();
    project(
        &out,
        &ProjectConfig {
            method: Method::Pca,
            ..ProjectConfig::default()
        },
    )
    .unwrap();
    let csv = std::fs::read_to_string(
        projection_path(&out, "other", 3, Method::Tsne).with_extension("csv"),
    )
    .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,source,x,y,cluster");
    assert_eq!(lines.len(), 37);
    assert!(lines[1].contains(",math,"), "{}", lines[1]);
    assert!(projection_path(&out, "base", 1, Method::Pca).is_file());
    assert!(!projection_path(&out, "base", 1, Method::Tsne).is_file());

    let file = metrics(
        &out,
        &MetricsConfig {
            k: 5,
            ..MetricsConfig::default()
        },
    )
    .unwrap();
    let json = serde_json::to_value(&file).unwrap();
    assert_eq!(json["k"], 5);
    assert_eq!(
        json["sources"],
        serde_json::json!(["math", "code", "general"])
    );
    for model in ["base", "other"] {
        for layer in ["1", "3"] {
            let m = &json["models"][model][layer];
            for key in [
                "silhouette",
                "davies_bouldin",
                "ari",
                "trustworthiness",
                "cka_to_first_model",
            ] {
                assert!(m[key].is_number(), "{model} {layer} {key}: {m}");
            }
            let pairs: Vec<&String> = m["knn_overlap"].as_object().unwrap().keys().collect();
            assert_eq!(
                pairs,
                [
                    "code|general",
                    "code|math",
                    "general|code",
                    "general|math",
                    "math|code",
                    "math|general"
                ]
            );
            for v in m["knn_overlap"].as_object().unwrap().values() {
                let v = v.as_f64().unwrap();
                assert!((0.0..=1.0).contains(&v));
            }
        }
    }
    assert_eq!(json["models"]["base"]["3"]["trustworthiness_map"], "tsne");
    assert_eq!(json["models"]["base"]["1"]["trustworthiness_map"], "pca");
    let self_cka = json["models"]["base"]["1"]["cka_to_first_model"]
        .as_f64()
        .unwrap();
    assert!((self_cka - 1.0).abs() < 1e-9, "{self_cka}");
    let cka = json["models"]["other"]["3"]["cka_to_first_model"]
        .as_f64()
        .unwrap();
    assert!(cka < 0.999, "different random models should differ: {cka}");
    // the typed file reads back (JSON floats round-trip to within an ulp or so)
    let path = out.join("metrics.json");
    mixprobe::util::write_json(&path, &file).unwrap();
    let back = mixprobe::probe::MetricsFile::load(&path).unwrap();
    assert_eq!(back.model_order, file.model_order);
    let (a, b) = (&back.models["other"][&3], &file.models["other"][&3]);
    assert!((a.silhouette - b.silhouette).abs() < 1e-12);
    assert_eq!(a.knn_overlap.len(), b.knn_overlap.len());
    assert_eq!(a.trustworthiness_map, b.trustworthiness_map);
}
