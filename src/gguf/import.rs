//! GGUF (LLaMA architecture) → Hugging Face model directory: config.json, model.safetensors
//! (f32, HF tensor names, q/k rows un-permuted), tokenizer.json, tokenizer_config.json,
//! generation_config.json and import_report.json. Everything is validated before anything is
//! written, and the directory appears atomically (written to a temporary sibling, then renamed).
use super::permute::unpermute_qk;
use super::reader::{GgufFile, Header, TensorInfo};
use super::tokenizer::{GgufTokenizer, TokenizerSummary, build_tokenizer};
use super::writer::write_f32_safetensors;
use crate::error::{Error, Result};
use crate::util::{sha256_file, write_json};
use serde_json::{Map, Value as Json, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The files an import writes, in order.
pub const OUTPUT_FILES: [&str; 6] = [
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "import_report.json",
];

/// Metadata keys the importer reads; every other key is listed in the report as not used.
const USED_KEYS: &[&str] = &[
    "general.architecture",
    "general.name",
    "general.alignment",
    "general.file_type",
    "llama.block_count",
    "llama.context_length",
    "llama.embedding_length",
    "llama.feed_forward_length",
    "llama.expert_count",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.attention.key_length",
    "llama.attention.value_length",
    "llama.attention.layer_norm_rms_epsilon",
    "llama.rope.freq_base",
    "llama.rope.dimension_count",
    "llama.rope.scaling.type",
    "llama.vocab_size",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
    "tokenizer.ggml.add_space_prefix",
    "tokenizer.chat_template",
];

/// LLaMA hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LlamaHparams {
    pub num_hidden_layers: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: u64,
    /// Rows of the token embedding.
    pub vocab_size: usize,
    /// True when the GGUF has no separate `output.weight`.
    pub tie_word_embeddings: bool,
}

/// What an import did: written to `import_report.json` and summarized by the CLI.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    pub source: PathBuf,
    pub source_sha256: String,
    pub gguf_version: u32,
    pub architecture: String,
    pub model_name: Option<String>,
    /// llama.cpp's `general.file_type` (e.g. 3 = mostly Q4_1), when given.
    pub file_type: Option<u64>,
    pub hparams: LlamaHparams,
    /// GGUF tensors by ggml type name.
    pub tensors_by_type: BTreeMap<String, usize>,
    pub tensor_count: usize,
    pub parameters: u64,
    /// The Hugging Face tensors written, in file order.
    pub hf_tensors: Vec<String>,
    pub tokenizer: TokenizerSummary,
    /// Metadata keys present in the GGUF that the import does not use.
    pub metadata_not_used: Vec<String>,
    pub out_dir: PathBuf,
    pub files: Vec<String>,
}

/// How a GGUF tensor becomes an HF one.
struct Planned {
    src: TensorInfo,
    hf_name: String,
    /// The q/k un-permutation's head count, for attn_q / attn_k.
    unpermute_heads: Option<usize>,
}

/// Import the GGUF at `src` into a new Hugging Face directory `out`. An existing `out` is an
/// error unless `overwrite`, in which case it is replaced only once the new one is complete.
pub fn import_gguf(src: &Path, out: &Path, overwrite: bool) -> Result<ImportReport> {
    if out.exists() && !overwrite {
        return Err(Error::invalid(
            "output directory",
            format!(
                "{} already exists (pass --force to replace it)",
                out.display()
            ),
        ));
    }
    let mut gguf = GgufFile::open(src)?;
    let h = &gguf.header;
    let hp = read_hparams(h)?;
    let plan = plan_tensors(h, &hp)?;
    let tok = build_tokenizer(h, Some(hp.max_position_embeddings))?;
    if tok.summary.vocab_size > hp.vocab_size {
        return Err(Error::file(
            src,
            format!(
                "the tokenizer has {} tokens but token_embd.weight only {} rows",
                tok.summary.vocab_size, hp.vocab_size
            ),
        ));
    }

    let mut tensors_by_type = BTreeMap::new();
    for t in &h.tensors {
        *tensors_by_type.entry(t.ty.name().to_string()).or_insert(0) += 1;
    }
    let report = ImportReport {
        source: src.to_path_buf(),
        source_sha256: sha256_file(src)?,
        gguf_version: h.version,
        architecture: h.str("general.architecture")?.to_string(),
        model_name: h.opt_str("general.name")?.map(str::to_string),
        file_type: h.opt_u64("general.file_type")?,
        hparams: hp.clone(),
        tensors_by_type,
        tensor_count: h.tensors.len(),
        parameters: h.tensors.iter().map(|t| t.n_elements).sum(),
        hf_tensors: plan.iter().map(|p| p.hf_name.clone()).collect(),
        tokenizer: tok.summary.clone(),
        metadata_not_used: h
            .metadata()
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !USED_KEYS.contains(&k.as_str()))
            .cloned()
            .collect(),
        out_dir: out.to_path_buf(),
        files: OUTPUT_FILES.iter().map(|f| f.to_string()).collect(),
    };
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".mixprobe-import-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let dir = tmp.path();

    let entries: Vec<(String, Vec<usize>)> = plan
        .iter()
        .map(|p| (p.hf_name.clone(), p.src.hf_shape()))
        .collect();
    write_f32_safetensors(
        &dir.join("model.safetensors"),
        &entries,
        &[("format", "pt")],
        |i| {
            let p = &plan[i];
            let values = gguf.tensor_f32(&p.src)?;
            match p.unpermute_heads {
                // GGUF dims [ne0 = in, ne1 = out]: the rows to reorder are ne1.
                Some(heads) => {
                    let (cols, rows) = (p.src.dims[0] as usize, p.src.dims[1] as usize);
                    unpermute_qk(&values, rows, cols, heads)
                        .map_err(|e| Error::file(src, format!("tensor {}: {e}", p.src.name)))
                }
                None => Ok(values),
            }
        },
    )?;
    write_json(&dir.join("config.json"), &config_json(&hp, &tok))?;
    write_json(
        &dir.join("generation_config.json"),
        &generation_config(&tok),
    )?;
    write_json(&dir.join("tokenizer.json"), &tok.tokenizer_json)?;
    write_json(&dir.join("tokenizer_config.json"), &tok.tokenizer_config)?;
    write_json(&dir.join("import_report.json"), &report)?;

    if out.exists() {
        let removed = if out.is_dir() {
            std::fs::remove_dir_all(out)
        } else {
            std::fs::remove_file(out)
        };
        removed.map_err(|e| Error::io(out, e))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, out).map_err(|e| {
        let _ = std::fs::remove_dir_all(&kept);
        Error::io(out, e)
    })?;
    Ok(report)
}

/// Read and check the LLaMA hyper-parameters.
pub fn read_hparams(h: &Header) -> Result<LlamaHparams> {
    let err = |msg: String| Error::file(&h.path, msg);
    let arch = h.str("general.architecture")?;
    if arch != "llama" {
        return Err(err(format!(
            "architecture '{arch}' is not supported; only 'llama' GGUFs can be imported"
        )));
    }
    if let Some(n) = h.opt_u64("llama.expert_count")?.filter(|&n| n > 0) {
        return Err(err(format!(
            "mixture-of-experts LLaMA models ({n} experts) are not supported"
        )));
    }
    if let Some(t) = h
        .opt_str("llama.rope.scaling.type")?
        .filter(|t| *t != "none")
    {
        return Err(err(format!("rope scaling '{t}' is not supported")));
    }
    let dim = |key: &str| -> Result<usize> {
        match h.u64(key)? {
            0 => Err(err(format!("metadata '{key}' is 0"))),
            v => {
                usize::try_from(v).map_err(|_| err(format!("metadata '{key}' = {v} is too large")))
            }
        }
    };
    let n_head = dim("llama.attention.head_count")?;
    let n_head_kv = match h.get("llama.attention.head_count_kv") {
        Some(_) => dim("llama.attention.head_count_kv")?,
        None => n_head,
    };
    let hidden = dim("llama.embedding_length")?;
    if !n_head.is_multiple_of(n_head_kv) {
        return Err(err(format!(
            "{n_head} attention heads are not a multiple of {n_head_kv} key/value heads"
        )));
    }
    let head_dim = match h.get("llama.attention.key_length") {
        Some(_) => dim("llama.attention.key_length")?,
        None if hidden.is_multiple_of(n_head) => hidden / n_head,
        None => {
            return Err(err(format!(
                "embedding length {hidden} is not a multiple of {n_head} heads"
            )));
        }
    };
    if let Some(v) = h
        .opt_u64("llama.attention.value_length")?
        .filter(|&v| v != head_dim as u64)
    {
        return Err(err(format!(
            "value length {v} differs from key length {head_dim}; not a LLaMA layout"
        )));
    }
    if let Some(r) = h
        .opt_u64("llama.rope.dimension_count")?
        .filter(|&r| r != head_dim as u64)
    {
        return Err(err(format!(
            "rope covers {r} of {head_dim} head dimensions; partial rotary is not supported"
        )));
    }
    if !head_dim.is_multiple_of(2) {
        return Err(err(format!("head dimension {head_dim} is odd")));
    }
    let eps = h
        .opt_f64("llama.attention.layer_norm_rms_epsilon")?
        .ok_or_else(|| {
            err("metadata 'llama.attention.layer_norm_rms_epsilon' is missing".into())
        })?;
    let embed = h
        .tensor("token_embd.weight")
        .ok_or_else(|| err("tensor 'token_embd.weight' is missing".into()))?;
    let vocab_size = match embed.dims[..] {
        [d, v] if d == hidden as u64 => v as usize,
        _ => {
            return Err(err(format!(
                "token_embd.weight has dims {:?}, expected [{hidden}, vocab]",
                embed.dims
            )));
        }
    };
    if let Some(v) = h
        .opt_u64("llama.vocab_size")?
        .filter(|&v| v != vocab_size as u64)
    {
        return Err(err(format!(
            "llama.vocab_size is {v} but token_embd.weight has {vocab_size} rows"
        )));
    }
    Ok(LlamaHparams {
        num_hidden_layers: dim("llama.block_count")?,
        hidden_size: hidden,
        intermediate_size: dim("llama.feed_forward_length")?,
        num_attention_heads: n_head,
        num_key_value_heads: n_head_kv,
        head_dim,
        rms_norm_eps: eps,
        rope_theta: h.opt_f64("llama.rope.freq_base")?.unwrap_or(10000.0),
        max_position_embeddings: h.u64("llama.context_length")?,
        vocab_size,
        tie_word_embeddings: h.tensor("output.weight").is_none(),
    })
}

/// Map every GGUF tensor to its HF name, checking shapes; unknown or missing tensors are errors.
fn plan_tensors(h: &Header, hp: &LlamaHparams) -> Result<Vec<Planned>> {
    let (d, ff, v) = (hp.hidden_size, hp.intermediate_size, hp.vocab_size);
    let (q_rows, kv_rows) = (
        hp.num_attention_heads * hp.head_dim,
        hp.num_key_value_heads * hp.head_dim,
    );
    // (GGUF name, HF name, HF shape, un-permutation heads)
    let mut expected: Vec<(String, String, Vec<usize>, Option<usize>)> = vec![(
        "token_embd.weight".into(),
        "model.embed_tokens.weight".into(),
        vec![v, d],
        None,
    )];
    for i in 0..hp.num_hidden_layers {
        let layer: [(&str, &str, Vec<usize>, Option<usize>); 9] = [
            ("attn_norm", "input_layernorm", vec![d], None),
            (
                "attn_q",
                "self_attn.q_proj",
                vec![q_rows, d],
                Some(hp.num_attention_heads),
            ),
            (
                "attn_k",
                "self_attn.k_proj",
                vec![kv_rows, d],
                Some(hp.num_key_value_heads),
            ),
            ("attn_v", "self_attn.v_proj", vec![kv_rows, d], None),
            ("attn_output", "self_attn.o_proj", vec![d, q_rows], None),
            ("ffn_norm", "post_attention_layernorm", vec![d], None),
            ("ffn_gate", "mlp.gate_proj", vec![ff, d], None),
            ("ffn_up", "mlp.up_proj", vec![ff, d], None),
            ("ffn_down", "mlp.down_proj", vec![d, ff], None),
        ];
        for (g, hf, shape, heads) in layer {
            expected.push((
                format!("blk.{i}.{g}.weight"),
                format!("model.layers.{i}.{hf}.weight"),
                shape,
                heads,
            ));
        }
    }
    expected.push((
        "output_norm.weight".into(),
        "model.norm.weight".into(),
        vec![d],
        None,
    ));
    if !hp.tie_word_embeddings {
        expected.push((
            "output.weight".into(),
            "lm_head.weight".into(),
            vec![v, d],
            None,
        ));
    }

    let by_name: BTreeMap<&str, &TensorInfo> =
        h.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let missing: Vec<&str> = expected
        .iter()
        .map(|e| e.0.as_str())
        .filter(|n| !by_name.contains_key(n))
        .collect();
    if !missing.is_empty() {
        return Err(Error::file(
            &h.path,
            format!(
                "{} LLaMA tensor(s) missing, first: {}",
                missing.len(),
                missing[..missing.len().min(5)].join(", ")
            ),
        ));
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|e| e.0.as_str()).collect();
    let unknown: Vec<&str> = h
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| !known.contains(n))
        .collect();
    if !unknown.is_empty() {
        return Err(Error::file(
            &h.path,
            format!(
                "{} tensor(s) not part of a plain LLaMA model, first: {}",
                unknown.len(),
                unknown[..unknown.len().min(5)].join(", ")
            ),
        ));
    }
    expected
        .into_iter()
        .map(|(g, hf_name, shape, unpermute_heads)| {
            let src = by_name[g.as_str()];
            if src.hf_shape() != shape {
                return Err(Error::file(
                    &h.path,
                    format!(
                        "tensor '{g}' has shape {:?} (HF order), expected {shape:?}",
                        src.hf_shape()
                    ),
                ));
            }
            Ok(Planned {
                src: src.clone(),
                hf_name,
                unpermute_heads,
            })
        })
        .collect()
}

/// config.json for `LlamaForCausalLM`.
fn config_json(hp: &LlamaHparams, tok: &GgufTokenizer) -> Json {
    let mut c = Map::new();
    c.insert("architectures".into(), json!(["LlamaForCausalLM"]));
    c.insert("model_type".into(), json!("llama"));
    c.insert("hidden_size".into(), json!(hp.hidden_size));
    c.insert("intermediate_size".into(), json!(hp.intermediate_size));
    c.insert("num_hidden_layers".into(), json!(hp.num_hidden_layers));
    c.insert("num_attention_heads".into(), json!(hp.num_attention_heads));
    c.insert("num_key_value_heads".into(), json!(hp.num_key_value_heads));
    c.insert("head_dim".into(), json!(hp.head_dim));
    c.insert("hidden_act".into(), json!("silu"));
    c.insert("rms_norm_eps".into(), json!(hp.rms_norm_eps));
    c.insert("rope_theta".into(), json!(hp.rope_theta));
    c.insert(
        "max_position_embeddings".into(),
        json!(hp.max_position_embeddings),
    );
    c.insert("vocab_size".into(), json!(hp.vocab_size));
    c.insert("tie_word_embeddings".into(), json!(hp.tie_word_embeddings));
    c.insert("attention_bias".into(), json!(false));
    c.insert("mlp_bias".into(), json!(false));
    let ids = tok.summary.special_ids;
    for (key, id) in [
        ("bos_token_id", ids.bos),
        ("eos_token_id", ids.eos),
        ("pad_token_id", ids.pad),
    ] {
        if let Some(id) = id {
            c.insert(key.into(), json!(id));
        }
    }
    c.insert("torch_dtype".into(), json!("float32"));
    Json::Object(c)
}

/// generation_config.json: the special token ids.
fn generation_config(tok: &GgufTokenizer) -> Json {
    let ids = tok.summary.special_ids;
    let mut c = Map::new();
    for (key, id) in [
        ("bos_token_id", ids.bos),
        ("eos_token_id", ids.eos),
        ("pad_token_id", ids.pad),
    ] {
        if let Some(id) = id {
            c.insert(key.into(), json!(id));
        }
    }
    Json::Object(c)
}
