//! The CPU training fast path (`train::fast`) against burn's autodiff graph
//! (`step::accumulate_generic`): same loss, statistics and gradients of every parameter on the
//! tiny LLaMA (untied head, grouped-query attention) and tiny Qwen2 (tied head, q/k/v biases)
//! fixtures, and on both with the other kind of head, over several right-padded micro-batches
//! with partial loss masks.
mod common;

use burn::optim::GradientsParams;
use mixprobe::model::{CpuAutodiff, CpuBackend, HostTensor, Llama, ParamView, load_hf_dir};
use mixprobe::train::batch::{MicroBatch, Sample};
use mixprobe::train::step::{accumulate, accumulate_generic};
use mixprobe::train::{fast, step::StepStats};
use rand::Rng;

/// Three micro-batches of different shapes: padding in the batch, prompts masked out, one
/// sample without any target.
fn micro_batches(vocab: u32) -> Vec<MicroBatch> {
    let mut rng = mixprobe::util::rng(11, "train-fast-test");
    let shapes: [&[(usize, usize)]; 3] = [
        &[(12, 4), (7, 2), (12, 0)],
        &[(5, 1), (9, 9)],
        &[(16, 3), (3, 1), (10, 6), (2, 2)],
    ];
    shapes
        .iter()
        .enumerate()
        .map(|(m, rows)| {
            let samples: Vec<Sample> = rows
                .iter()
                .enumerate()
                .map(|(i, &(len, prompt))| Sample {
                    ids: (0..len).map(|_| rng.random_range(0..vocab)).collect(),
                    // The sample of row 0 in batch 0 predicts nothing past its prompt of 4.
                    mask: (0..len)
                        .map(|j| j >= prompt && !(m == 0 && i == 0 && j >= 4))
                        .collect(),
                    group: (m + i) % 2,
                })
                .collect();
            let refs: Vec<&Sample> = samples.iter().collect();
            MicroBatch::new(&refs, 0).unwrap()
        })
        .collect()
}

/// Every parameter's gradient in the model's layout, by name.
fn gradients(model: &Llama<CpuAutodiff>, grads: &GradientsParams) -> Vec<(String, HostTensor)> {
    model
        .named_params()
        .into_iter()
        .map(|(name, view)| {
            let g = match &view {
                ParamView::Vector(p) => grads
                    .get::<CpuBackend, 1>(p.id)
                    .map(HostTensor::from_tensor),
                ParamView::Embedding(p) | ParamView::Linear(p) => grads
                    .get::<CpuBackend, 2>(p.id)
                    .map(HostTensor::from_tensor),
            };
            let g = g.unwrap_or_else(|| panic!("no gradient for {name}"));
            (name, g)
        })
        .collect()
}

fn compare(label: &str, model: &Llama<CpuAutodiff>) {
    let micro = micro_batches(model.config().vocab_size as u32);
    let (fg, fs): (GradientsParams, StepStats) = fast::accumulate(model, &micro, 2).unwrap();
    let (gg, gs) = accumulate_generic(model, &micro, 2).unwrap();
    assert_eq!((fs.targets, fs.tokens), (gs.targets, gs.tokens), "{label}");
    assert!(
        (fs.loss - gs.loss).abs() < 1e-5 * gs.loss.abs().max(1.0),
        "{label}: loss {} vs {}",
        fs.loss,
        gs.loss
    );
    for ((fa, fc), (ga, gc)) in fs.by_group.iter().zip(&gs.by_group) {
        assert_eq!(fc, gc, "{label}: group target counts");
        assert!(
            (fa - ga).abs() < 1e-4 * ga.abs().max(1.0),
            "{label}: {fa} vs {ga}"
        );
    }
    assert_eq!(
        fg.len(),
        model.named_params().len(),
        "{label}: one gradient per parameter"
    );
    let mut worst = (String::new(), 0f32);
    for ((name, f), (_, g)) in gradients(model, &fg).into_iter().zip(gradients(model, &gg)) {
        assert_eq!(f.shape, g.shape, "{label}: {name}");
        let scale = g.data.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(
            scale > 0.0,
            "{label}: {name} has an all-zero reference gradient"
        );
        let diff = f
            .data
            .iter()
            .zip(&g.data)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let rel = diff / scale;
        if rel > worst.1 {
            worst = (name.clone(), rel);
        }
        assert!(
            rel < 1e-4,
            "{label}: {name}: max |Δ| {diff:e} vs max |g| {scale:e}"
        );
    }
    eprintln!(
        "{label}: loss {:.6}, worst relative gradient error {:.2e} ({})",
        fs.loss, worst.1, worst.0
    );
    // The dispatching entry point takes the fast path, and it is bit-identical run to run.
    let (again, _) = accumulate(model, &micro, 2).unwrap();
    for ((name, a), (_, b)) in gradients(model, &fg)
        .into_iter()
        .zip(gradients(model, &again))
    {
        assert_eq!(a.data, b.data, "{label}: {name} differs between two runs");
    }
}

#[test]
fn tiny_llama_untied_gradients_match_autodiff() {
    let shared = require_shared!();
    let model: Llama<CpuAutodiff> =
        load_hf_dir(&shared.join("fixtures/tiny-llama"), &Default::default())
            .unwrap()
            .model;
    assert!(!model.config().tie_word_embeddings);
    compare("tiny-llama", &model);
}

#[test]
fn tiny_qwen2_tied_with_biases_gradients_match_autodiff() {
    let shared = require_shared!();
    let model: Llama<CpuAutodiff> =
        load_hf_dir(&shared.join("fixtures/tiny-qwen2"), &Default::default())
            .unwrap()
            .model;
    assert!(model.config().tie_word_embeddings && model.config().qkv_bias);
    compare("tiny-qwen2", &model);
}

#[test]
fn the_other_head_kind_matches_too() {
    let shared = require_shared!();
    for name in ["tiny-llama", "tiny-qwen2"] {
        let loaded: Llama<CpuAutodiff> =
            load_hf_dir(&shared.join("fixtures").join(name), &Default::default())
                .unwrap()
                .model;
        let mut cfg = loaded.config().clone();
        cfg.tie_word_embeddings = !cfg.tie_word_embeddings;
        let model = Llama::<CpuAutodiff>::init(&cfg, 5, &Default::default());
        compare(
            &format!("{name} (tie = {})", cfg.tie_word_embeddings),
            &model,
        );
    }
}
