//! Training throughput on the benchmark shape (ignored by default; run in release):
//! `MATMUL_NUM_THREADS=2 RAYON_NUM_THREADS=2 cargo test --release --test train_bench -- --ignored --nocapture`
//!
//! A ~20M-parameter LLaMA (hidden 256, 4 layers, 4 heads, MLP 1024, vocab 32000, untied head),
//! batches of 8 × 128 random tokens, every next token a target, AdamW with clipping: the same
//! computation as bench/train/train_torch.py. Prints one JSON line with tokens/s and peak RSS.
use mixprobe::model::{CpuAutodiff, Llama, LlamaConfig, Preset};
use mixprobe::train::batch::{MicroBatch, Sample};
use mixprobe::train::optim::{AdamW, AdamWConfig, clip_scale, global_grad_norm};
use mixprobe::train::step::accumulate;
use rand::Rng;
use std::time::Instant;

/// The benchmark model: d 256, 4 layers, 4 heads (no GQA), MLP 1024, vocab 32000, untied head.
fn bench_config() -> LlamaConfig {
    LlamaConfig {
        hidden_size: 256,
        intermediate_size: 1024,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        num_key_value_heads: 4,
        head_dim: 64,
        tie_word_embeddings: false,
        max_position_embeddings: 128,
        ..LlamaConfig::preset(Preset::Tiny, 32000)
    }
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[test]
#[ignore]
fn train_tokens_per_second() {
    let steps: usize = std::env::var("BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let (batch, seq) = (8usize, 128usize);
    let config = bench_config();
    let mut model: Llama<CpuAutodiff> = Llama::init(&config, 0, &Default::default());
    let mut opt = AdamW::new(AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    });
    let mut rng = mixprobe::util::rng(0, "bench");
    let mut make_batch = || {
        let samples: Vec<Sample> = (0..batch)
            .map(|_| Sample {
                ids: (0..seq).map(|_| rng.random_range(0..32000u32)).collect(),
                mask: vec![true; seq],
                group: 0,
            })
            .collect();
        MicroBatch::new(&samples.iter().collect::<Vec<_>>(), 0).unwrap()
    };
    let mut times = Vec::new();
    for s in 0..=steps {
        let mb = make_batch();
        let t0 = Instant::now();
        let (grads, stats) = accumulate(&model, &[mb], 1).unwrap();
        let t_grads = t0.elapsed().as_secs_f64();
        let norm = global_grad_norm(&model, &grads);
        model = opt.step(model, grads, 1e-4, clip_scale(norm, 1.0));
        let el = t0.elapsed().as_secs_f64();
        eprintln!(
            "step {s}: loss {:.4} grad norm {norm:.4} {el:.3}s (forward+backward {t_grads:.3}s, clip+AdamW {:.3}s)",
            stats.loss,
            el - t_grads
        );
        if s > 0 {
            times.push(el);
        }
    }
    let total: f64 = times.iter().sum();
    let tokens = (steps * batch * seq) as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "mixprobe (burn 0.21 ndarray)",
            "params": config.num_params(),
            "batch": batch, "seq": seq, "steps": steps,
            "seconds": total,
            "tokens_per_s": tokens / total,
            "peak_rss_mib": peak_rss_mib(),
            "rayon_threads": rayon::current_num_threads(),
        })
    );
}
