//! Extraction: run models over the probe sets and store one pooled hidden state per example and
//! layer.
//!
//! Output (`OUT/`): `index.json` ([`ExtractIndex`]: the models, the examples in row order with
//! their source and encoded text, per-set counts, the spec) and `<model>.safetensors` with one
//! tensor `layer.<i>` `[n_examples, hidden]` f32 per kept layer, rows in `index.json` order.
//!
//! Memory stays bounded: examples are tokenized, sorted by length and run in batches (length
//! buckets); each batch's hidden states are pooled (on the CPU, on the host while each layer is
//! computed; elsewhere on the device) and the pooled rows are appended to one temporary file
//! per layer; the safetensors file is assembled
//! from those files at the end, row by row. Only one batch's hidden states and the token ids are
//! ever held in memory.
use super::spec::{Content, Layers, Pooling, ProbeSpec, TextTemplate};
use crate::data::example::{Example, Turn};
use crate::data::read::{ReadOptions, read_file};
use crate::data::template::ChatTemplate;
use crate::data::tokenize::ChatTokenizer;
use crate::error::{Error, Result};
use crate::model::device::{self, DeviceKind};
use crate::model::{
    CpuBackend, ForwardOptions, HiddenSelect, HostTensor, Llama, MatmulPrecision, PreparedLlama,
    TokenBatch,
};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The index file of a probe output directory.
pub const INDEX_FILE: &str = "index.json";

/// A model to probe: its name (the output file stem and the key in every later file) and its
/// Hugging Face directory (with `tokenizer.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    pub dir: PathBuf,
}

impl ModelRef {
    /// A model named after its directory: the directory's name, or `<parent>-<name>` for a run's
    /// checkpoint directories `final` and `stage-N`.
    pub fn from_dir(dir: &Path) -> ModelRef {
        let base = |p: &Path| {
            p.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        };
        let name = base(dir);
        let name = match dir.parent() {
            Some(parent) if name == "final" || name.starts_with("stage-") => {
                format!("{}-{name}", base(parent))
            }
            _ => name,
        };
        ModelRef {
            name,
            dir: dir.to_path_buf(),
        }
    }
}

/// How to run the extraction.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Sequences per forward batch (>= 1).
    pub batch_size: usize,
    /// Where to run (CUDA falls back to the CPU with a warning on stderr).
    pub device: DeviceKind,
    /// Show progress bars (stderr).
    pub progress: bool,
    /// Replace the spec's layers (e.g. `all` for a per-layer study).
    pub layers: Option<Layers>,
    /// Precision of the CPU fast path's f32 matrix products. The default is `High`: bf16x3 on
    /// AMX tiles where the CPU has them (about 1e-5 relative error per product, and faster than
    /// IEEE f32 there: BENCHMARKS.md; see [`MatmulPrecision`]), IEEE f32 elsewhere. `Highest`
    /// asks for IEEE f32 everywhere.
    pub matmul_precision: MatmulPrecision,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            batch_size: 8,
            device: DeviceKind::Cpu,
            progress: false,
            layers: None,
            matmul_precision: MatmulPrecision::High,
        }
    }
}

/// `index.json`: everything needed to interpret the safetensors files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractIndex {
    /// The probed models, in the order given.
    pub models: Vec<ModelEntry>,
    /// The examples, in row order of every `layer.<i>` tensor.
    pub examples: Vec<ProbeExample>,
    /// Per probe set: what was read, skipped and sampled.
    pub sets: Vec<SetSummary>,
    /// The data directory the sets were read from.
    pub data_dir: PathBuf,
    /// The spec, with the layers actually requested.
    pub spec: ProbeSpec,
}

/// One probed model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    pub dir: PathBuf,
    /// The kept layers (tensors `layer.<i>`), increasing.
    pub layers: Vec<usize>,
    /// The safetensors file, relative to the output directory.
    pub file: String,
    /// Width of every stored vector.
    pub hidden_size: usize,
    /// Number of decoder blocks of the model.
    pub n_layers: usize,
    /// Tokens run through the model (after truncation).
    pub tokens: usize,
    /// Examples cut to `max_tokens`.
    pub truncated: usize,
    /// Seconds spent in forward passes and pooling (model loading and tokenization excluded).
    pub forward_seconds: f64,
    /// The precision the matrix products ran at (`highest` on backends other than the CPU's
    /// fast path; indexes written before this field read as `highest`).
    #[serde(default)]
    pub matmul_precision: MatmulPrecision,
}

impl ModelEntry {
    /// Tokens per second of the forward passes.
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.forward_seconds.max(1e-9)
    }
}

/// One example (one row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeExample {
    /// The id from the data file.
    pub id: String,
    /// The probe set (source) it belongs to.
    pub source: String,
    /// The text encoded (after the template).
    pub text: String,
}

/// What happened to one probe set's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSummary {
    pub name: String,
    pub path: PathBuf,
    pub format: String,
    /// Records in the file.
    pub records: usize,
    /// Malformed records skipped.
    pub skipped: usize,
    /// Records the reader excluded by a format rule.
    pub excluded: usize,
    /// Examples without text to encode (no user turn, or empty).
    pub no_text: usize,
    /// Examples that could be sampled.
    pub available: usize,
    /// Examples sampled (rows).
    pub sampled: usize,
}

impl ExtractIndex {
    /// Read `dir/index.json`.
    pub fn load(dir: &Path) -> Result<ExtractIndex> {
        let path = dir.join(INDEX_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::file(
                &path,
                format!("not a probe index (written by `mixprobe probe`): {e}"),
            )
        })
    }

    /// The source labels in spec order.
    pub fn sources(&self) -> Vec<String> {
        self.spec.sources()
    }

    /// Each example's source as an index into [`ExtractIndex::sources`].
    pub fn labels(&self) -> Vec<usize> {
        let sources = self.sources();
        self.examples
            .iter()
            .map(|e| {
                sources
                    .iter()
                    .position(|s| *s == e.source)
                    .unwrap_or(sources.len())
            })
            .collect()
    }

    /// The model called `name`.
    pub fn model(&self, name: &str) -> Result<&ModelEntry> {
        self.models.iter().find(|m| m.name == name).ok_or_else(|| {
            Error::invalid(
                "model",
                format!(
                    "{name:?} is not in the probe index (it has: {})",
                    self.models
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }
}

/// Load `layer.<layer>` of `model` from a probe directory as `[n_examples, hidden]`, reading
/// only that tensor's bytes.
pub fn load_layer(dir: &Path, model: &ModelEntry, layer: usize) -> Result<Array2<f32>> {
    let path = dir.join(&model.file);
    let mut f = File::open(&path).map_err(|e| Error::io(&path, e))?;
    let bad = |m: String| Error::file(&path, format!("not a probe safetensors file: {m}"));
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| Error::io(&path, e))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > 100_000_000 {
        return Err(bad(format!("header of {header_len} bytes")));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(|e| Error::io(&path, e))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    let name = format!("layer.{layer}");
    let entry = header.get(&name).ok_or_else(|| {
        Error::invalid(
            "layer",
            format!(
                "{} has no tensor {name} (kept layers: {:?})",
                path.display(),
                model.layers
            ),
        )
    })?;
    let dtype = entry.get("dtype").and_then(|v| v.as_str());
    let shape: Vec<usize> = entry
        .get("shape")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let offsets: Vec<u64> = entry
        .get("data_offsets")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    if dtype != Some("F32") || shape.len() != 2 || offsets.len() != 2 {
        return Err(bad(format!("{name} is not a 2-D F32 tensor")));
    }
    let (n, d) = (shape[0], shape[1]);
    if offsets[1] - offsets[0] != (n * d * 4) as u64 {
        return Err(bad(format!("{name}: offsets do not match its shape")));
    }
    f.seek(SeekFrom::Start(8 + header_len + offsets[0]))
        .map_err(|e| Error::io(&path, e))?;
    let mut bytes = vec![0u8; n * d * 4];
    f.read_exact(&mut bytes).map_err(|e| Error::io(&path, e))?;
    let data = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Array2::from_shape_vec((n, d), data).map_err(|e| bad(e.to_string()))
}

/// Run every model over the spec's probe sets and write `out/index.json` and
/// `out/<model>.safetensors` (see the module docs).
pub fn extract(
    spec: &ProbeSpec,
    data_dir: &Path,
    models: &[ModelRef],
    out: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractIndex> {
    check_models(models)?;
    if opts.batch_size == 0 {
        return Err(Error::invalid("batch size", "must be at least 1"));
    }
    let mut spec = spec.clone();
    if let Some(layers) = &opts.layers {
        spec.layers = layers.clone();
    }
    let (examples, sets) = sample_sets(&spec, data_dir)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let (kind, warning) = device::resolve(opts.device);
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let mut entries = Vec::with_capacity(models.len());
    for m in models {
        let entry = match kind {
            DeviceKind::Cpu => {
                extract_model::<CpuBackend>(&spec, &examples, m, out, opts, &Default::default())?
            }
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => extract_model::<device::CudaBackend>(
                &spec,
                &examples,
                m,
                out,
                opts,
                &Default::default(),
            )?,
            #[cfg(not(feature = "cuda"))]
            DeviceKind::Cuda => {
                return Err(Error::Internal(
                    "resolve() picked CUDA without the cuda feature".into(),
                ));
            }
        };
        entries.push(entry);
    }
    let index = ExtractIndex {
        models: entries,
        examples,
        sets,
        data_dir: data_dir.to_path_buf(),
        spec,
    };
    crate::util::write_json(&out.join(INDEX_FILE), &index)?;
    Ok(index)
}

fn check_models(models: &[ModelRef]) -> Result<()> {
    if models.is_empty() {
        return Err(Error::invalid("models", "no model to probe"));
    }
    let mut seen = HashSet::new();
    for m in models {
        let ok = !m.name.is_empty()
            && m.name != INDEX_FILE
            && !m.name.starts_with('.')
            && m.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(Error::invalid(
                "model name",
                format!(
                    "{:?} (for {}) must be non-empty ASCII letters, digits, '.', '_' or '-', \
                     not starting with '.'",
                    m.name,
                    m.dir.display()
                ),
            ));
        }
        if !seen.insert(m.name.as_str()) {
            return Err(Error::invalid(
                "model name",
                format!(
                    "{:?} is used twice; give each model its own name (--name)",
                    m.name
                ),
            ));
        }
    }
    Ok(())
}

/// Read every set, sample it, and build the text to encode for each sampled example.
fn sample_sets(spec: &ProbeSpec, data_dir: &Path) -> Result<(Vec<ProbeExample>, Vec<SetSummary>)> {
    let mut examples = Vec::new();
    let mut sets = Vec::new();
    for set in &spec.sets {
        let path = data_dir.join(&set.path);
        let loaded = read_file(&path, set.format, &ReadOptions { skip_invalid: true })?;
        let texts: Vec<(&Example, String)> = loaded
            .examples
            .iter()
            .filter_map(|ex| text_of(ex, spec).map(|t| (ex, t)))
            .filter(|(_, t)| !t.is_empty())
            .collect();
        let available = texts.len();
        let chosen: Vec<usize> = match set.count {
            None => (0..available).collect(),
            Some(c) if c > available => {
                return Err(Error::invalid(
                    format!("probe set {:?} (field `count`)", set.name),
                    format!(
                        "asks for {c} examples but {} has only {available} usable ones \
                         ({} records, {} malformed, {} excluded by the reader, {} without text)",
                        path.display(),
                        loaded.records(),
                        loaded.skipped.len(),
                        loaded.excluded.len(),
                        loaded.examples.len() - available
                    ),
                ));
            }
            Some(c) => {
                let mut r = crate::util::rng(spec.seed, &format!("probe-set:{}", set.name));
                let mut idx = rand::seq::index::sample(&mut r, available, c).into_vec();
                idx.sort_unstable();
                idx
            }
        };
        for &i in &chosen {
            let (ex, text) = &texts[i];
            examples.push(ProbeExample {
                id: ex.id.clone(),
                source: set.name.clone(),
                text: text.clone(),
            });
        }
        sets.push(SetSummary {
            name: set.name.clone(),
            path: set.path.clone(),
            format: loaded.format.name().to_string(),
            records: loaded.records(),
            skipped: loaded.skipped.len(),
            excluded: loaded.excluded.len(),
            no_text: loaded.examples.len() - available,
            available,
            sampled: chosen.len(),
        });
    }
    Ok((examples, sets))
}

/// The text encoded for an example, or None when it has no user turn (query mode).
fn text_of(ex: &Example, spec: &ProbeSpec) -> Option<String> {
    Some(match (spec.text.content, spec.text.template) {
        (Content::Query, TextTemplate::Raw) => ex.first_user()?.to_string(),
        (Content::Query, TextTemplate::Chat(t)) => t.render_prompt(&[Turn::user(ex.first_user()?)]),
        (Content::Conversation, TextTemplate::Raw) => ex
            .turns
            .iter()
            .map(|t| t.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n"),
        (Content::Conversation, TextTemplate::Chat(t)) => t.render_text(&ex.turns),
    })
}

/// Token ids of every example for one model's tokenizer: BOS when the tokenizer adds one, then
/// the text, cut to `max_tokens`. Returns the ids and the number of truncated examples.
pub(crate) fn tokenize(
    tokenizer: &Path,
    spec: &ProbeSpec,
    examples: &[ProbeExample],
) -> Result<(Vec<Vec<u32>>, usize)> {
    let template = match spec.text.template {
        TextTemplate::Chat(t) => t,
        TextTemplate::Raw => ChatTemplate::Plain,
    };
    let tok = ChatTokenizer::from_file(tokenizer, template)?;
    let mut truncated = 0;
    let mut out = Vec::with_capacity(examples.len());
    for ex in examples {
        let mut ids: Vec<u32> = tok.bos().into_iter().collect();
        ids.extend(tok.encode_text(&ex.text)?);
        if ids.is_empty() {
            return Err(Error::Tokenizer(format!(
                "{}: example {:?} ({}) encodes to no token",
                tokenizer.display(),
                ex.id,
                ex.source
            )));
        }
        if ids.len() > spec.text.max_tokens {
            ids.truncate(spec.text.max_tokens);
            truncated += 1;
        }
        out.push(ids);
    }
    Ok((out, truncated))
}

/// Weights `[b, 1, t]` that pool a `[b, t, d]` batch by a batched matmul: `1/len` on each real
/// token (mean), `1/(len - 1)` on each but the first (mean_skip_first) or 1 on the last real
/// token (last).
pub(crate) fn pool_weights(lengths: &[usize], t: usize, pooling: Pooling) -> Vec<f32> {
    let mut w = vec![0f32; lengths.len() * t];
    for (row, &len) in w.chunks_mut(t).zip(lengths) {
        match pooling {
            Pooling::Mean => row[..len].fill(1.0 / len as f32),
            Pooling::MeanSkipFirst if len == 1 => row[0] = 1.0,
            Pooling::MeanSkipFirst => row[1..len].fill(1.0 / (len - 1) as f32),
            Pooling::Last => row[len - 1] = 1.0,
        }
    }
    w
}

fn extract_model<B: Backend>(
    spec: &ProbeSpec,
    examples: &[ProbeExample],
    m: &ModelRef,
    out: &Path,
    opts: &ExtractOptions,
    device: &B::Device,
) -> Result<ModelEntry> {
    let loaded = crate::model::load_hf_dir::<B>(&m.dir, device)?;
    let tokenizer = loaded.tokenizer.clone().ok_or_else(|| {
        Error::file(
            &m.dir,
            "has no tokenizer.json: probing encodes text with the model's own tokenizer",
        )
    })?;
    let config = loaded.model.config().clone();
    let layers = spec.layers.resolve(config.num_hidden_layers).map_err(|e| {
        Error::invalid(
            "layers",
            format!("model {} ({}): {e}", m.name, m.dir.display()),
        )
    })?;
    let (seqs, truncated) = tokenize(&tokenizer, spec, examples)?;
    let tokens: usize = seqs.iter().map(Vec::len).sum();
    let bar = progress_bar(opts.progress, tokens as u64, &m.name);
    let mut sink = LayerSink::new(out, layers.len(), config.hidden_size)?;
    let start = Instant::now();
    let matmul_precision = run_batches(
        &loaded.model,
        &seqs,
        &layers,
        spec.pooling,
        opts.batch_size,
        opts.matmul_precision,
        |order, pooled| {
            for (slot, rows) in pooled.iter().enumerate() {
                sink.append(slot, rows)?;
            }
            sink.order.extend_from_slice(order);
            bar.inc(order.iter().map(|&i| seqs[i].len() as u64).sum());
            Ok(())
        },
    )?;
    let forward_seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let file = format!("{}.safetensors", m.name);
    sink.assemble(&out.join(&file), &layers, examples.len())?;
    Ok(ModelEntry {
        name: m.name.clone(),
        dir: m.dir.clone(),
        layers,
        file,
        hidden_size: config.hidden_size,
        n_layers: config.num_hidden_layers,
        tokens,
        truncated,
        forward_seconds,
        matmul_precision,
    })
}

/// Run `seqs` through `model` in length-sorted batches of `batch_size`, pooling the selected
/// `layers`; `emit(example indices of the batch, pooled rows per layer slot)` receives each
/// batch, rows in the order of the indices (row-major `[b, hidden]` per layer).
///
/// On [`CpuBackend`] the model is prepared once ([`Llama::prepare_with`] `precision`: weights
/// packed for the AVX-512 or AMX kernel) and the batches run on the CPU fast path, which packs
/// each batch without padding and pools every layer on the host while it is computed
/// ([`crate::model::PreparedLlama::pooled_hidden_states`]); other backends run
/// [`Llama::forward`] and pool each layer with a batched matmul on the device. Returns the
/// precision the products ran at.
pub fn run_batches<B: Backend>(
    model: &Llama<B>,
    seqs: &[Vec<u32>],
    layers: &[usize],
    pooling: Pooling,
    batch_size: usize,
    precision: MatmulPrecision,
    mut emit: impl FnMut(&[usize], &[Vec<f32>]) -> Result<()>,
) -> Result<MatmulPrecision> {
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    // longest first: the peak memory shows at once, and each batch has similar lengths
    order.sort_by(|&a, &b| seqs[b].len().cmp(&seqs[a].len()).then(a.cmp(&b)));
    let cpu = (model as &dyn Any)
        .downcast_ref::<Llama<CpuBackend>>()
        .map(|m| m.prepare_with(precision));
    let effective = cpu
        .as_ref()
        .map_or(MatmulPrecision::Highest, PreparedLlama::matmul_precision);
    for chunk in order.chunks(batch_size.max(1)) {
        let batch_seqs: Vec<Vec<u32>> = chunk.iter().map(|&i| seqs[i].clone()).collect();
        let pooled = match &cpu {
            Some(cpu) => pool_on_host(cpu, &batch_seqs, layers, pooling)?,
            None => pool_on_device(model, &batch_seqs, layers, pooling)?,
        };
        emit(chunk, &pooled)?;
    }
    Ok(effective)
}

/// One batch's pooled rows per layer slot on the CPU fast path.
fn pool_on_host(
    model: &PreparedLlama<'_>,
    seqs: &[Vec<u32>],
    layers: &[usize],
    pooling: Pooling,
) -> Result<Vec<Vec<f32>>> {
    let weights: Vec<Vec<f32>> = seqs
        .iter()
        .map(|s| pool_weights(&[s.len()], s.len(), pooling))
        .collect();
    model.pooled_hidden_states(seqs, layers, &weights)
}

/// One batch's pooled rows per layer slot through [`Llama::forward`] and a batched matmul.
fn pool_on_device<B: Backend>(
    model: &Llama<B>,
    seqs: &[Vec<u32>],
    layers: &[usize],
    pooling: Pooling,
) -> Result<Vec<Vec<f32>>> {
    let opts = ForwardOptions {
        hidden: HiddenSelect::Layers(layers.to_vec()),
        ..Default::default()
    };
    let batch = TokenBatch::new(seqs, 0)?;
    let (b, t) = (batch.batch_size(), batch.seq_len());
    let w: Tensor<B, 3> = Tensor::from_data(
        TensorData::new(pool_weights(batch.lengths(), t, pooling), [b, 1, t]),
        &model.device(),
    );
    let output = model.forward(&batch, &opts)?;
    let mut pooled = vec![Vec::new(); layers.len()];
    for (layer, h) in output.hidden {
        let slot = layers
            .iter()
            .position(|&l| l == layer)
            .ok_or_else(|| Error::Internal(format!("forward returned unasked layer {layer}")))?;
        pooled[slot] = HostTensor::from_tensor(w.clone().matmul(h)).data;
    }
    if let Some(slot) = pooled.iter().position(Vec::is_empty) {
        return Err(Error::Internal(format!(
            "forward did not return layer {}",
            layers[slot]
        )));
    }
    Ok(pooled)
}

fn progress_bar(show: bool, total: u64, name: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} tokens ({per_sec}, ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(name.to_string());
    bar
}

/// Pooled rows appended per layer to temporary files (in processing order), assembled into one
/// safetensors file in example order at the end.
struct LayerSink {
    dir: tempfile::TempDir,
    files: Vec<BufWriter<File>>,
    hidden: usize,
    /// Example index of each row written, in writing order.
    order: Vec<usize>,
}

impl LayerSink {
    fn new(out: &Path, n_layers: usize, hidden: usize) -> Result<LayerSink> {
        let dir = tempfile::Builder::new()
            .prefix(".probe-")
            .tempdir_in(out)
            .map_err(|e| Error::io(out, e))?;
        let files = (0..n_layers)
            .map(|i| {
                let p = dir.path().join(format!("{i}.f32"));
                File::create(&p)
                    .map(BufWriter::new)
                    .map_err(|e| Error::io(&p, e))
            })
            .collect::<Result<_>>()?;
        Ok(LayerSink {
            dir,
            files,
            hidden,
            order: Vec::new(),
        })
    }

    fn append(&mut self, slot: usize, rows: &[f32]) -> Result<()> {
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.files[slot]
            .write_all(&bytes)
            .map_err(|e| Error::io(self.dir.path(), e))
    }

    /// Write `path` (safetensors, tensors `layer.<i>` `[n, hidden]` F32) atomically.
    fn assemble(mut self, path: &Path, layers: &[usize], n: usize) -> Result<()> {
        for f in &mut self.files {
            f.flush().map_err(|e| Error::io(self.dir.path(), e))?;
        }
        if self.order.len() != n {
            return Err(Error::Internal(format!(
                "wrote {} rows for {n} examples",
                self.order.len()
            )));
        }
        // position of each example's row in the temporary files
        let mut pos = vec![0usize; n];
        for (p, &i) in self.order.iter().enumerate() {
            pos[i] = p;
        }
        let row_bytes = self.hidden * 4;
        let mut header = serde_json::Map::new();
        header.insert(
            "__metadata__".into(),
            serde_json::json!({"format": "pt", "writer": "mixprobe probe"}),
        );
        let mut names: Vec<(String, usize)> = layers
            .iter()
            .enumerate()
            .map(|(slot, l)| (format!("layer.{l}"), slot))
            .collect();
        names.sort();
        for (k, (name, _)) in names.iter().enumerate() {
            let (begin, end) = (k * n * row_bytes, (k + 1) * n * row_bytes);
            header.insert(
                name.clone(),
                serde_json::json!({"dtype": "F32", "shape": [n, self.hidden], "data_offsets": [begin, end]}),
            );
        }
        let mut header = serde_json::to_vec(&header)
            .map_err(|e| Error::Internal(format!("safetensors header: {e}")))?;
        while header.len() % 8 != 0 {
            header.push(b' ');
        }
        let tmp = self.dir.path().join("out.safetensors");
        let io = |e| Error::io(&tmp, e);
        let mut w = BufWriter::new(File::create(&tmp).map_err(io)?);
        w.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(&header).map_err(io)?;
        let mut row = vec![0u8; row_bytes];
        for (_, slot) in &names {
            let src = self.dir.path().join(format!("{slot}.f32"));
            let mut f = File::open(&src).map_err(|e| Error::io(&src, e))?;
            for &p in &pos {
                f.seek(SeekFrom::Start((p * row_bytes) as u64))
                    .map_err(|e| Error::io(&src, e))?;
                f.read_exact(&mut row).map_err(|e| Error::io(&src, e))?;
                w.write_all(&row).map_err(io)?;
            }
        }
        w.flush().map_err(io)?;
        drop(w);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }
}
