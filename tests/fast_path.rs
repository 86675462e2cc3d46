//! The CPU inference fast path (packed ragged batches, host pooling) against burn's generic
//! path: the same model loaded on the autodiff backend runs `llama.rs`'s tensor graph, which the
//! parity tests prove equal to transformers.
mod common;

use mixprobe::model::{
    CpuAutodiff, CpuBackend, ForwardOptions, ForwardOutput, HiddenSelect, HostTensor, Llama,
    MatmulPrecision, TokenBatch, load_hf_dir,
};
use std::path::Path;

fn load(dir: &Path) -> (Llama<CpuBackend>, Llama<CpuAutodiff>) {
    let fast = load_hf_dir::<CpuBackend>(dir, &Default::default())
        .unwrap()
        .model;
    let generic = load_hf_dir::<CpuAutodiff>(dir, &Default::default())
        .unwrap()
        .model;
    (fast, generic)
}

/// Sequences of very different lengths (one token to most of the context), deterministic ids.
fn sequences(vocab: u32) -> Vec<Vec<u32>> {
    [9usize, 1, 120, 70, 33]
        .iter()
        .enumerate()
        .map(|(s, &len)| {
            (0..len)
                .map(|p| ((p * 37 + s * 101 + 11) as u32).wrapping_mul(2654435761) % vocab)
                .collect()
        })
        .collect()
}

/// `|a - b| <= tol · max(1, |b|)` everywhere (the residual stream carries large activations).
fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

fn host<B: burn::tensor::backend::Backend>(t: &burn::tensor::Tensor<B, 3>) -> HostTensor {
    HostTensor::from_tensor(t.clone())
}

/// Every tensor of a forward output in order: hidden states, final norm, logits.
fn tensors<B: burn::tensor::backend::Backend>(out: &ForwardOutput<B>) -> Vec<HostTensor> {
    out.hidden
        .iter()
        .map(|(_, t)| host(t))
        .chain(out.final_norm.iter().map(host))
        .chain(out.logits.iter().map(host))
        .collect()
}

/// A right-padded batch through the packed fast path equals the generic path at every real
/// position (hidden states, final norm, logits); padded positions are zeros. As loaded
/// (`gemm`), prepared (weights packed for the AVX-512 kernel; tiny-qwen2 has q/k/v biases) and
/// prepared at `MatmulPrecision::High` (bf16x3 on AMX where the CPU has it; 2⁻¹⁶-relative
/// terms, so a looser tolerance).
#[test]
fn packed_forward_matches_the_generic_path() {
    let shared = require_shared!();
    use MatmulPrecision::{High, Highest};
    for (name, prepared, tol) in [
        ("tiny-llama", None, 1e-4),
        ("tiny-qwen2", None, 1e-4),
        ("tiny-llama", Some(Highest), 1e-4),
        ("tiny-qwen2", Some(Highest), 1e-4),
        ("tiny-llama", Some(High), 5e-4),
        ("tiny-qwen2", Some(High), 5e-4),
    ] {
        let (fast, generic) = load(&shared.join("fixtures").join(name));
        let seqs = sequences(fast.config().vocab_size as u32);
        let batch = TokenBatch::new(&seqs, 3).unwrap();
        let t = batch.seq_len();
        let opts = ForwardOptions::everything();
        let ours = tensors(&match prepared {
            Some(p) => fast.prepare_with(p).forward(&batch, &opts).unwrap(),
            None => fast.forward(&batch, &opts).unwrap(),
        });
        let name = format!("{name} prepared {prepared:?}");
        let want = tensors(
            &generic
                .forward(&batch, &ForwardOptions::everything())
                .unwrap(),
        );
        assert_eq!(ours.len(), fast.config().num_hidden_layers + 3);
        for (i, (o, w)) in ours.iter().zip(&want).enumerate() {
            assert_eq!(o.shape, w.shape, "{name} tensor {i}");
            let width = o.shape[2];
            for (s, seq) in seqs.iter().enumerate() {
                let row = |x: &HostTensor| x.data[s * t * width..(s + 1) * t * width].to_vec();
                let (or, wr) = (row(o), row(w));
                let real = seq.len() * width;
                assert_close(
                    &format!("{name} tensor {i} seq {s}"),
                    &or[..real],
                    &wr[..real],
                    tol,
                );
                assert!(
                    or[real..].iter().all(|&v| v == 0.0),
                    "{name} tensor {i} seq {s}: padding is not zero"
                );
            }
        }
    }
}

/// Host pooling equals pooling the generic path's full hidden states (mean, last token and an
/// arbitrary weighting), for the requested layers in the requested order.
#[test]
fn pooled_hidden_states_equal_pooling_the_generic_hidden_states() {
    let shared = require_shared!();
    for name in ["tiny-llama", "tiny-qwen2"] {
        let (fast, generic) = load(&shared.join("fixtures").join(name));
        let n_layers = fast.config().num_hidden_layers;
        let d = fast.config().hidden_size;
        let seqs = sequences(fast.config().vocab_size as u32);
        let weights: Vec<Vec<f32>> = seqs
            .iter()
            .enumerate()
            .map(|(s, seq)| {
                let len = seq.len();
                match s % 3 {
                    0 => vec![1.0 / len as f32; len],
                    1 => (0..len).map(|p| (p + 1 == len) as u8 as f32).collect(),
                    _ => (0..len).map(|p| (p as f32 * 0.7).sin()).collect(),
                }
            })
            .collect();
        let layers = [n_layers, 0, 1];
        let pooled = fast.pooled_hidden_states(&seqs, &layers, &weights).unwrap();
        assert_eq!(pooled.len(), layers.len());
        let batch = TokenBatch::new(&seqs, 0).unwrap();
        let t = batch.seq_len();
        let opts = ForwardOptions {
            hidden: HiddenSelect::All,
            ..Default::default()
        };
        let out = generic.forward(&batch, &opts).unwrap();
        for (slot, &layer) in layers.iter().enumerate() {
            let h = host(out.hidden(layer).unwrap());
            let mut want = vec![0f32; seqs.len() * d];
            for (s, w) in weights.iter().enumerate() {
                for j in 0..d {
                    let sum: f64 = w
                        .iter()
                        .enumerate()
                        .map(|(p, &c)| c as f64 * h.data[(s * t + p) * d + j] as f64)
                        .sum();
                    want[s * d + j] = sum as f32;
                }
            }
            assert_close(
                &format!("{name} pooled layer {layer}"),
                &pooled[slot],
                &want,
                1e-4,
            );
        }
    }
}

/// The packed fast path gives the same bits whatever the thread count and whichever sequences
/// share the batch: as loaded, prepared, and prepared at `MatmulPrecision::High`.
#[test]
fn fast_path_ignores_thread_count_and_batch_mates() {
    let shared = require_shared!();
    let (fast, _) = load(&shared.join("fixtures").join("tiny-qwen2"));
    let prepared = [fast.prepare(), fast.prepare_with(MatmulPrecision::High)];
    for use_prepared in [None, Some(0), Some(1)] {
        let pool = |seqs: &[Vec<u32>], layers: &[usize], w: &[Vec<f32>]| match use_prepared {
            Some(i) => prepared[i].pooled_hidden_states(seqs, layers, w).unwrap(),
            None => fast.pooled_hidden_states(seqs, layers, w).unwrap(),
        };
        let what = use_prepared.map(|i| prepared[i].matmul_precision());
        same_bits_across_threads_and_batches(&fast, &pool, &format!("prepared {what:?}"));
    }
}

/// Pooled hidden states of `(sequences, layers, pooling weights)`, one row set per layer.
type PoolFn<'a> = dyn Fn(&[Vec<u32>], &[usize], &[Vec<f32>]) -> Vec<Vec<f32>> + Sync + 'a;

/// The determinism check of [`fast_path_ignores_thread_count_and_batch_mates`] on one way of
/// pooling.
fn same_bits_across_threads_and_batches(fast: &Llama<CpuBackend>, pool: &PoolFn, prepared: &str) {
    let seqs = sequences(fast.config().vocab_size as u32);
    let layers: Vec<usize> = (0..=fast.config().num_hidden_layers).collect();
    let mean = |seqs: &[Vec<u32>]| -> Vec<Vec<f32>> {
        seqs.iter()
            .map(|s| vec![1.0 / s.len() as f32; s.len()])
            .collect()
    };
    let run = |threads: usize, seqs: &[Vec<u32>]| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| pool(seqs, &layers, &mean(seqs)))
    };
    let one = run(1, &seqs);
    assert_eq!(run(2, &seqs), one, "{prepared}: 2 threads");
    assert_eq!(run(3, &seqs), one, "{prepared}: 3 threads");
    let d = fast.config().hidden_size;
    for (s, seq) in seqs.iter().enumerate() {
        let alone = run(2, std::slice::from_ref(seq));
        for (slot, rows) in alone.iter().enumerate() {
            assert_eq!(
                rows[..],
                one[slot][s * d..(s + 1) * d],
                "{prepared}: sequence {s} alone, layer slot {slot}"
            );
        }
    }
}

/// Bad pooling and forward requests are errors naming what is wrong (prepared or not).
#[test]
fn pooled_hidden_states_reject_bad_requests() {
    let shared = require_shared!();
    let (fast, _) = load(&shared.join("fixtures").join("tiny-llama"));
    let n_layers = fast.config().num_hidden_layers;
    let seqs = vec![vec![5, 6, 7]];
    let err = |r: mixprobe::Result<Vec<Vec<f32>>>| r.unwrap_err().to_string();
    let e = err(fast.pooled_hidden_states(&seqs, &[n_layers + 1], &[vec![1.0; 3]]));
    assert!(e.contains("out of range"), "{e}");
    let e = err(fast.pooled_hidden_states(&seqs, &[0], &[vec![1.0; 2]]));
    assert!(e.contains("3 tokens and 2 weights"), "{e}");
    let e = err(fast.pooled_hidden_states(&seqs, &[0], &[]));
    assert!(e.contains("0 weight rows for 1 sequences"), "{e}");
    let e = err(fast.pooled_hidden_states(&[vec![5, 100_000]], &[0], &[vec![1.0; 2]]));
    assert!(e.contains("outside the vocabulary"), "{e}");
    let prepared = fast.prepare();
    let e = err(prepared.pooled_hidden_states(&seqs, &[0], &[vec![1.0; 2]]));
    assert!(e.contains("3 tokens and 2 weights"), "{e}");
    let opts = ForwardOptions {
        hidden: HiddenSelect::Layers(vec![n_layers + 1]),
        ..Default::default()
    };
    let batch = TokenBatch::new(&seqs, 0).unwrap();
    let e = prepared.forward(&batch, &opts).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
    let batch = TokenBatch::new(&[vec![5, 100_000]], 0).unwrap();
    let e = prepared
        .forward(&batch, &ForwardOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the vocabulary"), "{e}");
}
