//! Generation: the KV cache matches recomputing everything, batching does not change greedy
//! output, seeded sampling is reproducible, stop tokens and length caps work.
mod common;

use mixprobe::model::{
    CpuBackend, ForwardOptions, GenerateConfig, HostTensor, Llama, LlamaConfig, Preset, TokenBatch,
    generate, load_hf_dir,
};

fn fixture(name: &str) -> Option<Llama<CpuBackend>> {
    let shared = common::shared()?;
    Some(
        load_hf_dir::<CpuBackend>(&shared.join("fixtures").join(name), &Default::default())
            .unwrap()
            .model,
    )
}

fn greedy(n: usize) -> GenerateConfig {
    GenerateConfig {
        max_new_tokens: n,
        ..Default::default()
    }
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![12, 200, 7, 45, 3, 99, 150], vec![5], vec![300, 41, 8]]
}

/// Greedy decoding without a cache: run the whole sequence each step, take the last argmax.
fn greedy_without_cache(model: &Llama<CpuBackend>, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    for _ in 0..n {
        let batch = TokenBatch::new(&[seq.clone()], 0).unwrap();
        let logits = HostTensor::from_tensor(
            model
                .forward(&batch, &ForwardOptions::logits())
                .unwrap()
                .logits
                .unwrap(),
        );
        let v = logits.shape[2];
        let last = &logits.data[(seq.len() - 1) * v..];
        let mut best = 0;
        for (i, &x) in last.iter().enumerate() {
            if x > last[best] {
                best = i;
            }
        }
        seq.push(best as u32);
    }
    seq[prompt.len()..].to_vec()
}

#[test]
fn kv_cache_greedy_equals_recomputing_everything() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let Some(model) = fixture(name) else { return };
        for p in prompts() {
            let cached = generate(&model, std::slice::from_ref(&p), &greedy(6)).unwrap();
            assert_eq!(
                cached[0],
                greedy_without_cache(&model, &p, 6),
                "{name} prompt {p:?}"
            );
        }
    }
}

#[test]
fn greedy_is_stable_across_runs_and_batch_sizes() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let Some(model) = fixture(name) else { return };
        let batched = generate(&model, &prompts(), &greedy(10)).unwrap();
        assert_eq!(batched, generate(&model, &prompts(), &greedy(10)).unwrap());
        assert!(batched.iter().all(|o| o.len() == 10), "{batched:?}");
        for (p, out) in prompts().iter().zip(&batched) {
            let single = generate(&model, std::slice::from_ref(p), &greedy(10)).unwrap();
            assert_eq!(&single[0], out, "{name}: batch of 3 vs single for {p:?}");
        }
    }
}

#[test]
fn stop_tokens_end_a_sequence_early_and_others_continue() {
    let Some(model) = fixture("tiny-llama") else {
        return;
    };
    let free = generate(&model, &prompts(), &greedy(8)).unwrap();
    // Stop the first prompt at its third generated token; the others must be unaffected unless
    // they produce that token too.
    let stop = free[0][2];
    let cfg = GenerateConfig {
        stop_tokens: vec![stop],
        ..greedy(8)
    };
    let stopped = generate(&model, &prompts(), &cfg).unwrap();
    for (f, s) in free.iter().zip(&stopped) {
        let expected: Vec<u32> = f.iter().copied().take_while(|&t| t != stop).collect();
        assert_eq!(s, &expected);
    }
    assert!(stopped[0].len() <= 2);
    assert_eq!(
        generate(&model, &prompts(), &greedy(0)).unwrap(),
        vec![Vec::<u32>::new(); 3]
    );
}

#[test]
fn seeded_sampling_is_reproducible() {
    let config = LlamaConfig::preset(Preset::Tiny, 320);
    let model = Llama::<CpuBackend>::init(&config, 3, &Default::default());
    let cfg = |seed| GenerateConfig {
        max_new_tokens: 12,
        temperature: 1.0,
        top_p: 0.95,
        seed,
        stop_tokens: vec![],
    };
    let a = generate(&model, &prompts(), &cfg(11)).unwrap();
    assert_eq!(a, generate(&model, &prompts(), &cfg(11)).unwrap());
    // A near-uniform random model: another seed gives other samples.
    assert_ne!(a, generate(&model, &prompts(), &cfg(12)).unwrap());
    assert!(
        a.iter()
            .all(|o| o.len() == 12 && o.iter().all(|&t| t < 320))
    );
}

#[test]
fn bad_prompts_are_errors() {
    let config = LlamaConfig::preset(Preset::Tiny, 320);
    let model = Llama::<CpuBackend>::init(&config, 3, &Default::default());
    let e = generate(&model, &[vec![1, 2], vec![]], &greedy(3))
        .unwrap_err()
        .to_string();
    assert!(e.contains("prompt 1"), "{e}");
    let e = generate(&model, &[vec![1, 320]], &greedy(3))
        .unwrap_err()
        .to_string();
    assert!(e.contains("320"), "{e}");
}

/// The CPU fast path (taken on `CpuBackend`) decodes the same greedy tokens as burn's generic
/// path (taken on the autodiff backend), batched, with sequences finishing at different times.
#[test]
fn cpu_fast_path_generates_like_the_generic_path() {
    let Some(shared) = common::shared() else {
        return;
    };
    for name in ["tiny-llama", "tiny-qwen2"] {
        let dir = shared.join("fixtures").join(name);
        let fast = load_hf_dir::<CpuBackend>(&dir, &Default::default())
            .unwrap()
            .model;
        let generic = load_hf_dir::<mixprobe::model::CpuAutodiff>(&dir, &Default::default())
            .unwrap()
            .model;
        let a = generate(&fast, &prompts(), &greedy(12)).unwrap();
        let b = generate(&generic, &prompts(), &greedy(12)).unwrap();
        assert_eq!(a, b, "{name}");
        // A stop token that one row emits early makes rows leave the batch at different steps.
        let stop = GenerateConfig {
            stop_tokens: vec![a[0][3]],
            ..greedy(12)
        };
        let a = generate(&fast, &prompts(), &stop).unwrap();
        let b = generate(&generic, &prompts(), &stop).unwrap();
        assert_eq!(a, b, "{name} with stop token");
        assert!(a[0].len() < 12, "{a:?}");
    }
}
