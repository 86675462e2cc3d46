//! Hugging Face model directories: `config.json`, `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`) and `tokenizer.json`.
//!
//! Loading converts F16 and BF16 to f32 and checks the tensor set exactly: a missing, unexpected
//! or mis-shaped tensor is an error naming it. Saving writes f32 in the same layout (the
//! transformers names and `[out, in]` linear weights), so the directory opens in transformers and
//! load → save → load is bit-exact.
use super::config::LlamaConfig;
use super::host::HostTensor;
use super::llama::Llama;
use crate::error::{Error, Result};
use burn::tensor::backend::Backend;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// A model read from a directory.
#[derive(Debug)]
pub struct LoadedModel<B: Backend> {
    pub model: Llama<B>,
    /// The stored dtype(s) of the weights, e.g. `F32` or `BF16` (`+`-joined when mixed).
    pub source_dtype: String,
    /// The directory's `tokenizer.json`, if it has one.
    pub tokenizer: Option<PathBuf>,
    /// End-of-sequence ids: `eos_token_id` of `config.json` and of `generation_config.json`
    /// (each a number or a list), deduplicated, in that order.
    pub eos_token_ids: Vec<u32>,
}

/// File names in a model directory.
pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// Load a Hugging Face model directory onto `device`.
pub fn load_hf_dir<B: Backend>(dir: &Path, device: &B::Device) -> Result<LoadedModel<B>> {
    if !dir.is_dir() {
        return Err(Error::file(dir, "not a model directory"));
    }
    let config = LlamaConfig::from_file(&dir.join(CONFIG_FILE))?;
    let files = weight_files(dir)?;
    let buffers = files
        .iter()
        .map(|f| std::fs::read(f).map_err(|e| Error::io(f, e)))
        .collect::<Result<Vec<_>>>()?;
    let mut store = TensorStore::default();
    for (path, bytes) in files.iter().zip(&buffers) {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::file(path, format!("not a valid safetensors file: {e}")))?;
        for (name, view) in st.tensors() {
            if let Some((other, _)) = store.tensors.get(&name) {
                return Err(Error::file(
                    path,
                    format!("tensor {name} also appears in {}", other.display()),
                ));
            }
            store.tensors.insert(name, (path.clone(), view));
        }
    }
    let model = Llama::build(&config, device, |name, shape, _| {
        store.take(dir, name, shape)
    })?;
    store.check_leftovers(dir, &config)?;
    let source_dtype = store.dtypes.iter().cloned().collect::<Vec<_>>().join("+");
    let tok = dir.join(TOKENIZER_FILE);
    let mut eos_token_ids = config.eos_token_ids();
    for id in generation_eos(&dir.join(GENERATION_CONFIG_FILE))? {
        if !eos_token_ids.contains(&id) {
            eos_token_ids.push(id);
        }
    }
    Ok(LoadedModel {
        model,
        source_dtype,
        tokenizer: tok.is_file().then_some(tok),
        eos_token_ids,
    })
}

/// Write `model` to `dir` as `config.json` + `model.safetensors` (f32), and copy `tokenizer`
/// (a `tokenizer.json`) there when given.
pub fn save_hf_dir<B: Backend>(
    model: &Llama<B>,
    dir: &Path,
    tokenizer: Option<&Path>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tensors: Vec<(String, HostTensor)> = model
        .named_params()
        .into_iter()
        .map(|(name, p)| (name, p.to_host()))
        .collect();
    write_tensors(&dir.join(WEIGHTS_FILE), &tensors)?;
    crate::util::write_json(&dir.join(CONFIG_FILE), &model.config().to_json())?;
    if let Some(src) = tokenizer {
        let dst = dir.join(TOKENIZER_FILE);
        let same = match (src.canonicalize(), dst.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
            crate::util::write_atomic(&dst, &bytes)?;
        }
    }
    Ok(())
}

/// Write named f32 tensors to a safetensors file (metadata `format: pt`, as transformers expects).
pub fn write_tensors(path: &Path, tensors: &[(String, HostTensor)]) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, &[usize])> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.to_le_bytes(), t.shape.as_slice()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, b, shape)| {
            TensorView::new(Dtype::F32, shape.to_vec(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Internal(format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let out = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Internal(format!("serializing {}: {e}", path.display())))?;
    crate::util::write_atomic(path, &out)
}

/// Read every floating-point tensor of a safetensors file as f32 (F32, F16, BF16), in name order.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, HostTensor)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::file(path, format!("not a valid safetensors file: {e}")))?;
    let mut out: Vec<(String, HostTensor)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data =
                to_f32(&view).map_err(|m| Error::file(path, format!("tensor {name}: {m}")))?;
            Ok((
                name,
                HostTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            ))
        })
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `eos_token_id` of a `generation_config.json` (none when the file is absent).
fn generation_eos(path: &Path) -> Result<Vec<u32>> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(path, format!("not valid JSON: {e}")))?;
    let ids: Option<Vec<u64>> = match value.get("eos_token_id") {
        None | Some(serde_json::Value::Null) => Some(Vec::new()),
        Some(serde_json::Value::Array(a)) => a.iter().map(serde_json::Value::as_u64).collect(),
        Some(v) => v.as_u64().map(|x| vec![x]),
    };
    let ids =
        ids.ok_or_else(|| Error::file(path, "eos_token_id: expected a token id or a list of ids"))?;
    Ok(ids.into_iter().map(|x| x as u32).collect())
}

/// The weight files of a directory: `model.safetensors`, else the shards of the index.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(INDEX_FILE);
    if !index.is_file() {
        return Err(Error::file(
            dir,
            format!("no {WEIGHTS_FILE} or {INDEX_FILE} in the model directory"),
        ));
    }
    let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(&index, format!("not valid JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::file(&index, "missing the \"weight_map\" object"))?;
    let mut files = BTreeSet::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .filter(|f| !f.contains('/') && !f.contains('\\') && !f.is_empty())
            .ok_or_else(|| {
                Error::file(
                    &index,
                    format!("weight_map[{name:?}]: expected a file name, got {file}"),
                )
            })?;
        files.insert(file.to_string());
    }
    if files.is_empty() {
        return Err(Error::file(&index, "weight_map is empty"));
    }
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// The tensors of all weight files, consumed as the model takes them.
#[derive(Default)]
struct TensorStore<'a> {
    tensors: BTreeMap<String, (PathBuf, TensorView<'a>)>,
    dtypes: BTreeSet<String>,
    embedding: Option<HostTensor>,
}

impl TensorStore<'_> {
    fn take(&mut self, dir: &Path, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let (path, view) = self
            .tensors
            .remove(name)
            .ok_or_else(|| Error::file(dir, format!("missing tensor {name} (shape {shape:?})")))?;
        if view.shape() != shape {
            return Err(Error::file(
                &path,
                format!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    view.shape()
                ),
            ));
        }
        let data = to_f32(&view).map_err(|m| Error::file(&path, format!("tensor {name}: {m}")))?;
        self.dtypes.insert(format!("{:?}", view.dtype()));
        let t = HostTensor {
            shape: shape.to_vec(),
            data,
        };
        if name == "model.embed_tokens.weight" {
            self.embedding = Some(t.clone());
        }
        Ok(t)
    }

    /// Anything left over is an error, except rotary `inv_freq` buffers (recomputed from the
    /// config) and, for tied models, an `lm_head.weight` equal to the embedding.
    fn check_leftovers(&mut self, dir: &Path, config: &LlamaConfig) -> Result<()> {
        if config.tie_word_embeddings
            && let Some((path, view)) = self.tensors.remove("lm_head.weight")
        {
            let data = to_f32(&view)
                .map_err(|m| Error::file(&path, format!("tensor lm_head.weight: {m}")))?;
            if self.embedding.as_ref().map(|e| &e.data) != Some(&data) {
                return Err(Error::file(
                    &path,
                    "tie_word_embeddings is true but lm_head.weight differs from model.embed_tokens.weight",
                ));
            }
        }
        self.tensors
            .retain(|name, _| !name.ends_with(".rotary_emb.inv_freq"));
        if self.tensors.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = self.tensors.keys().map(String::as_str).take(5).collect();
        let more = self.tensors.len().saturating_sub(names.len());
        let suffix = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        Err(Error::file(
            dir,
            format!(
                "unexpected tensor(s) for a {} model with {} layers: {}{suffix}",
                config.arch.model_type(),
                config.num_hidden_layers,
                names.join(", ")
            ),
        ))
    }
}

/// Convert a tensor's little-endian bytes to f32 (F32, F16 and BF16 only).
fn to_f32(view: &TensorView<'_>) -> std::result::Result<Vec<f32>, String> {
    let b = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(format!(
                "unsupported dtype {other:?} (expected F32, F16 or BF16)"
            ));
        }
    })
}
