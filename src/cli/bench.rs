//! `mixprobe bench`: throughput of the model forward pass, generation and training, printed as
//! one JSON line each (tokens/s and peak memory) so that bench/model/run.sh and
//! bench/train/run.sh can set them beside PyTorch / transformers measured on the same work.
use anyhow::Context;
use burn::tensor::backend::{AutodiffBackend, Backend};
use mixprobe::model::device::{self, DeviceKind};
use mixprobe::model::{
    CpuAutodiff, CpuBackend, ForwardOptions, GenerateConfig, HiddenSelect, Llama, LlamaConfig,
    MatmulPrecision, Precision, Preset, TokenBatch, generate, load_hf_dir,
};
use mixprobe::train::batch::{MicroBatch, Sample};
use mixprobe::train::optim::{AdamW, AdamWConfig, clip_scale, global_grad_norm};
use mixprobe::train::step::accumulate;
use mixprobe::{Error, Location};
use rand::Rng;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// Forward passes returning every hidden state (and the final norm) over the prompts, on
    /// weights packed once (`Llama::prepare`; the packing time is counted; calls of more than
    /// 256 rows run on `gemm` as unprepared).
    Forward(ForwardArgs),
    /// Greedy generation of a fixed number of new tokens per prompt (no stop token).
    Generate(GenerateArgs),
    /// Training steps (forward, backward, clipping, AdamW) of a ~20M LLaMA on random tokens:
    /// hidden 256, 4 layers, 4 heads, MLP 1024, vocab 32000, untied head (bench/train's shape).
    Train(TrainArgs),
}

/// Where the prompts come from and how they are run.
#[derive(clap::Args)]
pub struct PromptArgs {
    /// A Hugging Face model directory (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// JSONL prompts: each line's "question" (GSM8K), "instruction" or "text" field, tokenized
    /// as is (no special tokens, no chat template).
    #[arg(long)]
    pub prompts: PathBuf,
    /// Use the first N prompts.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Sequences per call: 1 runs them one by one; N > 1 sorts them by length and runs
    /// right-padded batches of N (padding is masked and not counted as tokens).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Worker threads (the rayon pool that runs the matrix products).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Where to run: cpu (the fast path) or cuda (burn's CUDA backend, generic path; needs a
    /// build with the `cuda` feature; falls back to the CPU with a warning when unavailable).
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
}

#[derive(clap::Args)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub prompts: PromptArgs,
    /// Call `Llama::forward` on the weights as loaded instead of packing them once first
    /// (`Llama::prepare`), to measure what packing gains. (On cuda the model always runs as
    /// loaded.)
    #[arg(long)]
    pub unprepared: bool,
    /// Precision of the prepared weights' f32 matrix products: highest (IEEE f32) or high
    /// (three bf16 products on AMX tiles; runs as highest without AMX, with a note).
    #[arg(long, value_enum, default_value_t = MatmulPrecision::Highest, conflicts_with = "unprepared")]
    pub matmul_precision: MatmulPrecision,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub prompts: PromptArgs,
    /// New tokens per prompt (generation never stops earlier).
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Timed optimizer steps (one untimed warm-up step runs first).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Worker threads (the rayon pool that runs the training fast path's kernels).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Precision of the matrix products: fp32, or bf16 mixed precision (bf16 operands, f32
    /// weights and everything else, as `train --precision bf16`; needs a backend with bf16, i.e.
    /// cuda).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Where to run: cpu (the training fast path) or cuda (burn's CUDA backend with autodiff;
    /// needs a build with the `cuda` feature; falls back to the CPU with a warning when
    /// unavailable).
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    let threads = match &cmd {
        BenchCmd::Forward(a) => a.prompts.threads,
        BenchCmd::Generate(a) => a.prompts.threads,
        BenchCmd::Train(a) => a.threads,
    };
    if threads == 0 {
        return Err(crate::cli::UserError("--threads must be at least 1".into()).into());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the thread pool")?;
    let requested = match &cmd {
        BenchCmd::Forward(a) => a.prompts.device,
        BenchCmd::Generate(a) => a.prompts.device,
        BenchCmd::Train(a) => a.device,
    };
    let (kind, warning) = device::resolve(requested);
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let mut line = pool.install(|| match (cmd, kind) {
        (BenchCmd::Forward(a), DeviceKind::Cpu) => {
            forward(&a.prompts, a.unprepared, a.matmul_precision)
        }
        (BenchCmd::Generate(a), DeviceKind::Cpu) => {
            generation::<CpuBackend>(&a.prompts, a.max_new_tokens, &Default::default())
        }
        (BenchCmd::Train(a), DeviceKind::Cpu) => train::<CpuAutodiff>(&a, &Default::default()),
        #[cfg(feature = "cuda")]
        (BenchCmd::Forward(a), DeviceKind::Cuda) => {
            if a.matmul_precision != MatmulPrecision::Highest {
                eprintln!(
                    "note: --matmul-precision applies to the CPU only; on cuda burn multiplies \
                     f32 matrices on TF32 tensor cores"
                );
            }
            forward_generic::<device::CudaBackend>(&a.prompts, &Default::default())
        }
        #[cfg(feature = "cuda")]
        (BenchCmd::Generate(a), DeviceKind::Cuda) => {
            generation::<device::CudaBackend>(&a.prompts, a.max_new_tokens, &Default::default())
        }
        #[cfg(feature = "cuda")]
        (BenchCmd::Train(a), DeviceKind::Cuda) => {
            train::<burn::backend::Autodiff<device::CudaBackend>>(&a, &Default::default())
        }
        #[cfg(not(feature = "cuda"))]
        (_, DeviceKind::Cuda) => {
            unreachable!("resolve() never picks CUDA without the cuda feature")
        }
    })?;
    line["device"] = json!(kind.as_str());
    println!("{line}");
    Ok(())
}

/// The calls a benchmark makes: each a list of token-id sequences run together.
type Calls = Vec<Vec<Vec<u32>>>;

/// Load the model and the tokenized prompts, grouped into the calls to make.
fn setup<B: Backend>(a: &PromptArgs, device: &B::Device) -> anyhow::Result<(Llama<B>, Calls)> {
    if a.batch == 0 || a.limit == 0 {
        return Err(crate::cli::UserError("--batch and --limit must be at least 1".into()).into());
    }
    let loaded = load_hf_dir::<B>(&a.model, device)?;
    let tok_path = loaded
        .tokenizer
        .clone()
        .ok_or_else(|| Error::file(&a.model, "the model directory has no tokenizer.json"))?;
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
        .map_err(|e| Error::Tokenizer(format!("{}: cannot load: {e}", tok_path.display())))?;
    let mut seqs = Vec::new();
    for text in read_prompts(&a.prompts, a.limit)? {
        let enc = tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", a.prompts.display())))?;
        if !enc.get_ids().is_empty() {
            seqs.push(enc.get_ids().to_vec());
        }
    }
    if seqs.is_empty() {
        return Err(Error::file(&a.prompts, "no non-empty prompts").into());
    }
    let calls = if a.batch == 1 {
        seqs.into_iter().map(|s| vec![s]).collect()
    } else {
        seqs.sort_by_key(Vec::len);
        seqs.chunks(a.batch).map(<[_]>::to_vec).collect()
    };
    Ok((loaded.model, calls))
}

/// The first `limit` prompt texts of a JSONL file.
fn read_prompts(path: &Path, limit: usize) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if out.len() == limit {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let record = Location::Line(i + 1);
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::record(path, record, format!("invalid JSON: {e}")))?;
        let field = ["question", "instruction", "text"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|x| x.as_str()));
        match field {
            Some(s) => out.push(s.to_string()),
            None => {
                return Err(Error::record(
                    path,
                    record,
                    "expected a string field \"question\", \"instruction\" or \"text\"",
                )
                .into());
            }
        }
    }
    Ok(out)
}

fn forward(
    a: &PromptArgs,
    unprepared: bool,
    precision: MatmulPrecision,
) -> anyhow::Result<serde_json::Value> {
    let (model, calls) = setup::<CpuBackend>(a, &Default::default())?;
    let opts = forward_options();
    let pad = 0;
    // Packing the weights once is part of the timed work.
    let t0 = Instant::now();
    let prepared = (!unprepared).then(|| model.prepare_with(precision));
    let prepare_seconds = t0.elapsed().as_secs_f64();
    let effective = prepared
        .as_ref()
        .map_or(MatmulPrecision::Highest, |p| p.matmul_precision());
    if !unprepared {
        crate::cli::model::note_precision(precision, effective);
    }
    let run = |seqs: &[Vec<u32>]| -> anyhow::Result<_> {
        let batch = TokenBatch::new(seqs, pad)?;
        Ok(match &prepared {
            Some(p) => p.forward(&batch, &opts)?,
            None => model.forward(&batch, &opts)?,
        })
    };
    // Warm-up (allocator, thread pool) on the first call.
    run(&calls[0])?;
    let t0 = Instant::now();
    let mut tokens = 0;
    for seqs in &calls {
        let out = run(seqs)?;
        std::hint::black_box(out);
        tokens += seqs.iter().map(Vec::len).sum::<usize>();
    }
    let seconds = t0.elapsed().as_secs_f64() + prepare_seconds;
    Ok(json!({
        "impl": "mixprobe", "bench": "forward", "batch": a.batch,
        "prepared": !unprepared, "prepare_seconds": prepare_seconds,
        "matmul_precision": effective.as_str(),
        "sequences": calls.iter().map(Vec::len).sum::<usize>(), "tokens": tokens,
        "seconds": seconds, "tokens_per_s": tokens as f64 / seconds,
        "threads": rayon::current_num_threads(), "peak_rss_mib": peak_rss_mib(),
    }))
}

/// What `bench forward` asks for: every hidden state and the final norm, no logits.
fn forward_options() -> ForwardOptions {
    ForwardOptions {
        hidden: HiddenSelect::All,
        final_norm: true,
        ..Default::default()
    }
}

/// `bench forward` on another backend (CUDA): burn's generic forward on the weights as loaded;
/// each call ends when the device has finished it (`Backend::sync`), like transformers'
/// `.item()` after each call in bench/model/forward_transformers.py. A first, untimed pass over
/// every call compiles (and, with autotuning, tunes) the kernels for each shape; its time is
/// reported as `first_pass_seconds`.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn forward_generic<B: Backend>(
    a: &PromptArgs,
    device: &B::Device,
) -> anyhow::Result<serde_json::Value> {
    let (model, calls) = setup::<B>(a, device)?;
    let opts = forward_options();
    let sync = || B::sync(device).map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"));
    let run = |seqs: &[Vec<u32>]| -> anyhow::Result<()> {
        let out = model.forward(&TokenBatch::new(seqs, 0)?, &opts)?;
        std::hint::black_box(out);
        sync()
    };
    let t0 = Instant::now();
    for seqs in &calls {
        run(seqs)?;
    }
    let first_pass_seconds = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut tokens = 0;
    for seqs in &calls {
        run(seqs)?;
        tokens += seqs.iter().map(Vec::len).sum::<usize>();
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(json!({
        "impl": "mixprobe", "bench": "forward", "batch": a.batch, "prepared": false,
        "matmul_precision": "tf32", "first_pass_seconds": first_pass_seconds,
        "sequences": calls.iter().map(Vec::len).sum::<usize>(), "tokens": tokens,
        "seconds": seconds, "tokens_per_s": tokens as f64 / seconds,
        "threads": rayon::current_num_threads(), "peak_rss_mib": peak_rss_mib(),
    }))
}

fn generation<B: Backend>(
    a: &PromptArgs,
    max_new_tokens: usize,
    device: &B::Device,
) -> anyhow::Result<serde_json::Value> {
    let (model, calls) = setup::<B>(a, device)?;
    let cfg = GenerateConfig {
        max_new_tokens,
        ..Default::default()
    };
    let warm = GenerateConfig {
        max_new_tokens: 2,
        ..Default::default()
    };
    generate(&model, &calls[0], &warm)?;
    let t0 = Instant::now();
    let (mut new_tokens, mut prompt_tokens) = (0, 0);
    for prompts in &calls {
        let out = generate(&model, prompts, &cfg)?;
        new_tokens += out.iter().map(Vec::len).sum::<usize>();
        prompt_tokens += prompts.iter().map(Vec::len).sum::<usize>();
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(json!({
        "impl": "mixprobe", "bench": "generate", "batch": a.batch,
        "sequences": calls.iter().map(Vec::len).sum::<usize>(),
        "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
        "seconds": seconds, "new_tokens_per_s": new_tokens as f64 / seconds,
        "threads": rayon::current_num_threads(), "peak_rss_mib": peak_rss_mib(),
    }))
}

/// The training benchmark model (the same as bench/train/train_torch.py's).
fn train_config() -> LlamaConfig {
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

fn train<B: AutodiffBackend>(
    a: &TrainArgs,
    device: &B::Device,
) -> anyhow::Result<serde_json::Value> {
    if a.steps == 0 || a.batch == 0 || a.seq < 2 {
        return Err(crate::cli::UserError(
            "--steps and --batch must be at least 1 and --seq at least 2".into(),
        )
        .into());
    }
    let config = train_config();
    let vocab = config.vocab_size as u32;
    let mut model: Llama<B> = Llama::init(&config, 0, device).with_precision(a.precision)?;
    let mut opt = AdamW::new(AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    });
    let mut rng = mixprobe::util::rng(0, "bench");
    let mut seconds = 0.0;
    let mut last_loss = f64::NAN;
    for step in 0..=a.steps {
        let samples: Vec<Sample> = (0..a.batch)
            .map(|_| Sample {
                ids: (0..a.seq).map(|_| rng.random_range(0..vocab)).collect(),
                mask: vec![true; a.seq],
                group: 0,
            })
            .collect();
        let mb = MicroBatch::new(&samples.iter().collect::<Vec<_>>(), 0)?;
        let t0 = Instant::now();
        let (grads, stats) = accumulate(&model, &[mb], 1)?;
        let norm = global_grad_norm(&model, &grads);
        model = opt.step(model, grads, 1e-4, clip_scale(norm, 1.0));
        B::sync(device).map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))?;
        let el = t0.elapsed().as_secs_f64();
        eprintln!("step {step}: loss {:.4} {el:.3}s", stats.loss);
        last_loss = stats.loss;
        if step > 0 {
            seconds += el;
        }
    }
    let tokens = a.steps * a.batch * a.seq;
    Ok(json!({
        "impl": "mixprobe", "bench": "train", "params": config.num_params(),
        "precision": a.precision.as_str(),
        "batch": a.batch, "seq": a.seq, "steps": a.steps, "tokens": tokens,
        "seconds": seconds, "tokens_per_s": tokens as f64 / seconds, "last_loss": last_loss,
        "threads": rayon::current_num_threads(), "peak_rss_mib": peak_rss_mib(),
    }))
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
