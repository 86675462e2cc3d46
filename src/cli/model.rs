//! `mixprobe model info` and `mixprobe model forward`: inspect a Hugging Face model directory and
//! dump one sequence's hidden states and logits.
use anyhow::Context;
use burn::tensor::backend::Backend;
use mixprobe::model::device::{self, DeviceKind};
use mixprobe::model::{
    CpuBackend, ForwardOptions, HostTensor, Llama, MatmulPrecision, TokenBatch, checkpoint,
};
use std::path::PathBuf;

/// Arguments of `mixprobe model info`.
#[derive(clap::Args)]
pub struct InfoArgs {
    /// Model directory (config.json + model.safetensors or a sharded index; tokenizer.json optional).
    pub dir: PathBuf,
}

/// Arguments of `mixprobe model forward`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["ids", "text"])))]
pub struct ForwardArgs {
    /// Model directory (config.json + model.safetensors or a sharded index; tokenizer.json for --text).
    pub dir: PathBuf,
    /// Comma-separated token ids, e.g. `1,2,3`.
    #[arg(long, value_delimiter = ',')]
    pub ids: Option<Vec<u32>>,
    /// Text to encode with the directory's tokenizer.json.
    #[arg(long)]
    pub text: Option<String>,
    /// With --text: let the tokenizer add its special tokens (e.g. BOS); off by default.
    #[arg(long, requires = "text")]
    pub add_special_tokens: bool,
    /// Output safetensors file: hidden.0 … hidden.L (embeddings, then each block's output before
    /// the final norm), final_norm and logits, each [1, T, ·] f32.
    #[arg(long)]
    pub out: PathBuf,
    /// Where to run; cuda falls back to the CPU with a warning when unavailable.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Precision of the CPU's f32 matrix products: highest (IEEE f32) or high (each product
    /// as three bf16 products on AMX tiles, about 1e-5 relative error; runs as highest on a
    /// CPU without AMX, with a note on stderr).
    #[arg(long, value_enum, default_value_t = MatmulPrecision::Highest)]
    pub matmul_precision: MatmulPrecision,
}

/// Print architecture, parameter count, stored dtype and a memory estimate.
pub fn run_info(args: InfoArgs) -> anyhow::Result<()> {
    let loaded = checkpoint::load_hf_dir::<CpuBackend>(&args.dir, &Default::default())?;
    let c = loaded.model.config();
    let params = burn::module::Module::num_params(&loaded.model);
    let mb = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    let kv_per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 4;
    println!("directory: {}", args.dir.display());
    println!(
        "architecture: {} ({})",
        c.arch.model_type(),
        c.arch.hf_class()
    );
    println!(
        "layers: {}  hidden: {}  intermediate: {}  heads: {} (key/value heads: {}, head dim: {})",
        c.num_hidden_layers,
        c.hidden_size,
        c.intermediate_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim
    );
    println!(
        "vocab: {}  tied embeddings: {}  q/k/v bias: {}  rope theta: {}  rms eps: {:e}  max positions: {}",
        c.vocab_size,
        yes_no(c.tie_word_embeddings),
        yes_no(c.qkv_bias),
        c.rope_theta,
        c.rms_norm_eps,
        c.max_position_embeddings
    );
    println!("parameters: {params} ({:.2}M)", params as f64 / 1e6);
    println!("dtype: {} on disk, f32 in memory", loaded.source_dtype);
    println!(
        "memory: {:.1} MiB of f32 weights; KV cache {:.1} KiB per token per sequence",
        mb(params * 4),
        kv_per_token as f64 / 1024.0
    );
    match &loaded.tokenizer {
        Some(t) => println!("tokenizer: {}", t.display()),
        None => println!("tokenizer: none"),
    }
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Run one sequence and write its hidden states and logits.
pub fn run_forward(args: ForwardArgs) -> anyhow::Result<()> {
    let (kind, warning) = device::resolve(args.device);
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    match kind {
        DeviceKind::Cpu => forward_on::<CpuBackend>(&args, &Default::default()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => forward_on::<device::CudaBackend>(&args, &Default::default()),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => unreachable!("resolve() never picks CUDA without the cuda feature"),
    }
}

fn forward_on<B: Backend>(args: &ForwardArgs, device: &B::Device) -> anyhow::Result<()> {
    let loaded = checkpoint::load_hf_dir::<B>(&args.dir, device)?;
    let ids = match (&args.ids, &args.text) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => {
            let path = loaded.tokenizer.as_ref().ok_or_else(|| {
                crate::cli::UserError(format!(
                    "--text needs {}/tokenizer.json (or pass --ids)",
                    args.dir.display()
                ))
            })?;
            let tok = tokenizers::Tokenizer::from_file(path)
                .map_err(|e| mixprobe::Error::Tokenizer(format!("{}: {e}", path.display())))?;
            let enc = tok
                .encode(text.as_str(), args.add_special_tokens)
                .map_err(|e| mixprobe::Error::Tokenizer(e.to_string()))?;
            println!(
                "ids: {}",
                enc.get_ids()
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
            enc.get_ids().to_vec()
        }
        (None, None) => unreachable!("clap requires --ids or --text"),
    };
    if ids.is_empty() {
        return Err(crate::cli::UserError("the input has no tokens".into()).into());
    }
    let batch = TokenBatch::new(&[ids], 0)?;
    let opts = ForwardOptions::everything();
    let cpu = (&loaded.model as &dyn std::any::Any).downcast_ref::<Llama<CpuBackend>>();
    let tensors = match cpu {
        Some(cpu) if args.matmul_precision != MatmulPrecision::Highest => {
            let prepared = cpu.prepare_with(args.matmul_precision);
            note_precision(args.matmul_precision, prepared.matmul_precision());
            host_tensors(prepared.forward(&batch, &opts)?)
        }
        _ => host_tensors(loaded.model.forward(&batch, &opts)?),
    };
    checkpoint::write_tensors(&args.out, &tensors)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} tensors for {} tokens to {}",
        tensors.len(),
        batch.seq_len(),
        args.out.display()
    );
    Ok(())
}

/// Tell the user when a requested matmul precision runs as another one.
pub(crate) fn note_precision(requested: MatmulPrecision, effective: MatmulPrecision) {
    if requested != effective {
        eprintln!(
            "note: --matmul-precision {} needs AMX-BF16 tiles (Intel Sapphire Rapids or later, \
             Linux 5.16+); this machine runs {}",
            requested.as_str(),
            effective.as_str()
        );
    }
}

/// A forward output as named host tensors: hidden.i, final_norm, logits.
fn host_tensors<B: Backend>(out: mixprobe::model::ForwardOutput<B>) -> Vec<(String, HostTensor)> {
    let mut tensors: Vec<(String, HostTensor)> = out
        .hidden
        .into_iter()
        .map(|(i, t)| (format!("hidden.{i}"), HostTensor::from_tensor(t)))
        .collect();
    if let Some(t) = out.final_norm {
        tensors.push(("final_norm".into(), HostTensor::from_tensor(t)));
    }
    if let Some(t) = out.logits {
        tensors.push(("logits".into(), HostTensor::from_tensor(t)));
    }
    tensors
}
