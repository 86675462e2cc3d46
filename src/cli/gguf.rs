//! `mixprobe model import-gguf`: a llama.cpp GGUF (LLaMA architecture) → Hugging Face directory.
use mixprobe::gguf::import_gguf;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The llama.cpp GGUF file to import (LLaMA architecture; F32, F16, BF16, Q8_0, Q4_0, Q4_1,
    /// Q4_K and Q6_K tensors).
    pub file: PathBuf,
    /// The Hugging Face model directory to create (config.json, model.safetensors in f32,
    /// tokenizer.json, tokenizer_config.json, generation_config.json, import_report.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out if it already exists (only once the new directory is complete).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let r = import_gguf(&args.file, &args.out, args.force)?;
    let hp = &r.hparams;
    println!("imported {} (GGUF v{})", r.source.display(), r.gguf_version);
    println!(
        "  architecture   {}{}",
        r.architecture,
        r.model_name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    println!(
        "  layers         {} (hidden {}, intermediate {}, heads {}/{} kv, head dim {})",
        hp.num_hidden_layers,
        hp.hidden_size,
        hp.intermediate_size,
        hp.num_attention_heads,
        hp.num_key_value_heads,
        hp.head_dim
    );
    println!(
        "  vocab          {} (tied embeddings: {}), rope theta {}, context {}",
        hp.vocab_size, hp.tie_word_embeddings, hp.rope_theta, hp.max_position_embeddings
    );
    let types: Vec<String> = r
        .tensors_by_type
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    println!(
        "  tensors        {} GGUF ({}) → {} HF f32",
        r.tensor_count,
        types.join(", "),
        r.hf_tensors.len()
    );
    println!(
        "  parameters     {} ({:.1}M)",
        r.parameters,
        r.parameters as f64 / 1e6
    );
    let t = &r.tokenizer;
    println!(
        "  tokenizer      {} BPE, pre '{}', {} tokens, {} merges, {} special, {} user-defined",
        t.model, t.pre, t.vocab_size, t.merges, t.special_tokens, t.user_defined_tokens
    );
    if t.duplicate_tokens > 0 {
        println!(
            "  warning        {} duplicate token string(s); only their first id encodes",
            t.duplicate_tokens
        );
    }
    if !r.metadata_not_used.is_empty() {
        println!(
            "  not used       {} metadata key(s), listed in import_report.json",
            r.metadata_not_used.len()
        );
    }
    println!(
        "  output         {} ({})",
        r.out_dir.display(),
        r.files.join(", ")
    );
    println!("  time           {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
