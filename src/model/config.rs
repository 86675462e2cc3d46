//! Model configuration: parsing and validating a Hugging Face `config.json` for the LLaMA family
//! (LLaMA, Mistral, SmolLM, Qwen2), writing it back, and the from-scratch presets.
//!
//! Anything the decoder does not implement (rope scaling, sliding windows, biases other than
//! Qwen2's q/k/v, other activations, quantized weights) is rejected with an error naming the key,
//! never silently computed differently.
use crate::error::{Error, Result};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// The architecture family, from `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `llama` (also SmolLM, TinyLlama …): no biases.
    Llama,
    /// `mistral` without a sliding window: same computation as LLaMA.
    Mistral,
    /// `qwen2`: biases on the q/k/v projections.
    Qwen2,
}

impl Arch {
    /// The Hugging Face `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
        }
    }

    /// The Hugging Face class name written to `architectures`.
    pub fn hf_class(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Mistral => "MistralForCausalLM",
            Arch::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    fn from_model_type(s: &str) -> Option<Arch> {
        match s {
            "llama" => Some(Arch::Llama),
            "mistral" => Some(Arch::Mistral),
            "qwen2" => Some(Arch::Qwen2),
            _ => None,
        }
    }
}

/// A validated decoder configuration.
///
/// `extra` keeps every other key of the original `config.json` (token ids, `transformers_version`,
/// …) so that saving writes them back unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    /// The lm head shares the token embedding matrix.
    pub tie_word_embeddings: bool,
    /// Biases on the q/k/v projections (Qwen2).
    pub qkv_bias: bool,
    /// Every key of the source `config.json` this struct does not model, in file order.
    pub extra: Map<String, Value>,
}

/// Built-in sizes for models trained from scratch (all LLaMA layout, tied embeddings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// d 128, 4 layers, 4 heads (2 KV), MLP 352: ≈ 0.75M parameters plus 128 × vocab
    /// (≈ 1.8M at vocab 8192).
    Tiny,
    /// d 384, 10 layers, 6 heads (2 KV), MLP 1024: ≈ 15.7M parameters plus 384 × vocab
    /// (≈ 18.9M at vocab 8192).
    Small,
}

impl Preset {
    /// Parse a preset name (`tiny`, `small`).
    pub fn from_name(name: &str) -> Result<Preset> {
        match name {
            "tiny" => Ok(Preset::Tiny),
            "small" => Ok(Preset::Small),
            _ => Err(Error::invalid(
                "model preset",
                format!("unknown preset {name:?}; expected one of: tiny, small"),
            )),
        }
    }
}

impl LlamaConfig {
    /// The configuration of a from-scratch preset for a tokenizer of `vocab_size` tokens.
    pub fn preset(preset: Preset, vocab_size: usize) -> LlamaConfig {
        let (hidden, layers, heads, kv, inter) = match preset {
            Preset::Tiny => (128, 4, 4, 2, 352),
            Preset::Small => (384, 10, 6, 2, 1024),
        };
        LlamaConfig {
            arch: Arch::Llama,
            vocab_size,
            hidden_size: hidden,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim: hidden / heads,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            max_position_embeddings: 2048,
            tie_word_embeddings: true,
            qkv_bias: false,
            extra: Map::new(),
        }
    }

    /// Read and validate `path` (a `config.json`).
    pub fn from_file(path: &Path) -> Result<LlamaConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::config(path, format!("not valid JSON: {e}")))?;
        LlamaConfig::from_json(&value, path)
    }

    /// Validate a parsed `config.json`; `path` only names the source in errors.
    pub fn from_json(value: &Value, path: &Path) -> Result<LlamaConfig> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::config(path, "expected a JSON object"))?;
        Parser {
            path: path.to_path_buf(),
            obj,
        }
        .parse()
    }

    /// The Hugging Face `config.json` for this configuration (the modelled keys, then `extra`).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("architectures".into(), json!([self.arch.hf_class()]));
        m.insert("model_type".into(), json!(self.arch.model_type()));
        m.insert("vocab_size".into(), json!(self.vocab_size));
        m.insert("hidden_size".into(), json!(self.hidden_size));
        m.insert("intermediate_size".into(), json!(self.intermediate_size));
        m.insert("num_hidden_layers".into(), json!(self.num_hidden_layers));
        m.insert(
            "num_attention_heads".into(),
            json!(self.num_attention_heads),
        );
        m.insert(
            "num_key_value_heads".into(),
            json!(self.num_key_value_heads),
        );
        m.insert("head_dim".into(), json!(self.head_dim));
        m.insert("hidden_act".into(), json!("silu"));
        m.insert("rms_norm_eps".into(), json!(self.rms_norm_eps));
        m.insert("rope_theta".into(), json!(self.rope_theta));
        m.insert(
            "rope_parameters".into(),
            json!({"rope_type": "default", "rope_theta": self.rope_theta}),
        );
        m.insert(
            "max_position_embeddings".into(),
            json!(self.max_position_embeddings),
        );
        m.insert(
            "tie_word_embeddings".into(),
            json!(self.tie_word_embeddings),
        );
        if self.arch != Arch::Qwen2 {
            m.insert("attention_bias".into(), json!(false));
            m.insert("mlp_bias".into(), json!(false));
        }
        if self.arch == Arch::Qwen2 {
            m.insert("use_sliding_window".into(), json!(false));
        }
        m.insert("torch_dtype".into(), json!("float32"));
        for (k, v) in &self.extra {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(m)
    }

    /// Query heads per key/value head.
    pub fn groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// The end-of-sequence token ids named by `eos_token_id` (a number or a list), if any.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        match self.extra.get("eos_token_id") {
            Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_u64())
                .map(|x| x as u32)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Number of parameters (embeddings counted once when tied).
    pub fn num_params(&self) -> usize {
        let d = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let bias = if self.qkv_bias { q + 2 * kv } else { 0 };
        let attn = d * q + 2 * d * kv + q * d + bias;
        let mlp = 3 * d * self.intermediate_size;
        let layer = attn + mlp + 2 * d;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * d
        };
        self.vocab_size * d + self.num_hidden_layers * layer + d + head
    }
}

/// Field-by-field reader of a config object that records which keys it consumed.
struct Parser<'a> {
    path: PathBuf,
    obj: &'a Map<String, Value>,
}

/// Keys the decoder reads itself (not kept in `extra`).
const MODELLED: &[&str] = &[
    "architectures",
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "rms_norm_eps",
    "rope_theta",
    "rope_parameters",
    "rope_scaling",
    "max_position_embeddings",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
    "use_sliding_window",
    "sliding_window",
    "max_window_layers",
    "layer_types",
    "partial_rotary_factor",
    "quantization_config",
    "torch_dtype",
    "dtype",
];

impl Parser<'_> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::config(&self.path, msg)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(n as usize)),
                _ => Err(self.err(format!("{key}: expected a positive integer, got {v}"))),
            },
        }
    }

    fn required(&self, key: &str) -> Result<usize> {
        self.usize(key)?
            .ok_or_else(|| self.err(format!("missing required key {key:?}")))
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(format!("{key}: expected true or false, got {v}"))),
        }
    }

    fn float(&self, v: &Value, key: &str) -> Result<f64> {
        v.as_f64()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| self.err(format!("{key}: expected a positive number, got {v}")))
    }

    fn unsupported(&self, key: &str, what: &str) -> Error {
        self.err(format!("unsupported option {key}: {what}"))
    }

    fn parse(&self) -> Result<LlamaConfig> {
        let model_type = self
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| self.err("missing \"model_type\""))?;
        let arch = Arch::from_model_type(model_type).ok_or_else(|| {
            self.err(format!(
                "unsupported model_type {model_type:?}; supported: llama, mistral, qwen2"
            ))
        })?;
        if let Some(archs) = self.get("architectures") {
            let list = archs
                .as_array()
                .ok_or_else(|| self.err(format!("architectures: expected a list, got {archs}")))?;
            for a in list {
                if a.as_str() != Some(arch.hf_class()) {
                    return Err(self.err(format!(
                        "unsupported architecture {a} for model_type {model_type:?}; expected {:?}",
                        arch.hf_class()
                    )));
                }
            }
        }
        if let Some(act) = self.get("hidden_act")
            && act.as_str() != Some("silu")
        {
            return Err(self.unsupported("hidden_act", &format!("{act} (only \"silu\")")));
        }
        self.check_rope_scaling()?;
        self.check_attention_window(arch)?;
        if let Some(f) = self.get("partial_rotary_factor")
            && f.as_f64() != Some(1.0)
        {
            return Err(self.unsupported("partial_rotary_factor", &format!("{f} (only 1.0)")));
        }
        if let Some(q) = self.get("quantization_config") {
            // A GGUF-sourced config records where the weights came from; the safetensors next to
            // it are plain floats (checked when loading). Any other method means quantized weights.
            let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("?");
            if method != "gguf" {
                return Err(self.unsupported(
                    "quantization_config",
                    &format!("quant_method {method:?} (only float checkpoints are supported)"),
                ));
            }
        }
        let qkv_bias = match arch {
            Arch::Qwen2 => true,
            Arch::Llama | Arch::Mistral => {
                if self.bool("attention_bias")? == Some(true) {
                    return Err(self.unsupported("attention_bias", "true (LLaMA attention biases)"));
                }
                false
            }
        };
        if self.bool("mlp_bias")? == Some(true) {
            return Err(self.unsupported("mlp_bias", "true"));
        }

        let hidden_size = self.required("hidden_size")?;
        let num_attention_heads = self.required("num_attention_heads")?;
        let num_key_value_heads = self
            .usize("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        let head_dim = match self.usize("head_dim")? {
            Some(h) => h,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(self.err(format!(
                        "hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}"
                    )));
                }
                hidden_size / num_attention_heads
            }
        };
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(self.err(format!(
                "num_attention_heads {num_attention_heads} is not a multiple of num_key_value_heads {num_key_value_heads}"
            )));
        }
        if head_dim % 2 != 0 {
            return Err(self.err(format!(
                "head_dim {head_dim} must be even for rotary embeddings"
            )));
        }
        let rms_norm_eps = match self.get("rms_norm_eps") {
            Some(v) => self.float(v, "rms_norm_eps")?,
            None => 1e-6,
        };
        let rope_theta = self.rope_theta()?;
        let extra = self
            .obj
            .iter()
            .filter(|(k, _)| !MODELLED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(LlamaConfig {
            arch,
            vocab_size: self.required("vocab_size")?,
            hidden_size,
            intermediate_size: self.required("intermediate_size")?,
            num_hidden_layers: self.required("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            max_position_embeddings: self.usize("max_position_embeddings")?.unwrap_or(2048),
            tie_word_embeddings: self.bool("tie_word_embeddings")?.unwrap_or(false),
            qkv_bias,
            extra,
        })
    }

    /// `rope_theta` at the top level, else under `rope_parameters` (transformers 5), else 10000.
    fn rope_theta(&self) -> Result<f64> {
        if let Some(v) = self.get("rope_theta") {
            return self.float(v, "rope_theta");
        }
        if let Some(v) = self
            .get("rope_parameters")
            .and_then(|p| p.get("rope_theta"))
        {
            return self.float(v, "rope_parameters.rope_theta");
        }
        Ok(10000.0)
    }

    /// Only plain rotary embeddings: `rope_scaling` null and `rope_parameters.rope_type` default.
    fn check_rope_scaling(&self) -> Result<()> {
        if let Some(s) = self.get("rope_scaling") {
            let kind = s
                .get("rope_type")
                .or_else(|| s.get("type"))
                .and_then(Value::as_str);
            if kind != Some("default") {
                return Err(self.unsupported("rope_scaling", &format!("{s} (only plain RoPE)")));
            }
        }
        if let Some(p) = self.get("rope_parameters") {
            let obj = p
                .as_object()
                .ok_or_else(|| self.err(format!("rope_parameters: expected an object, got {p}")))?;
            if let Some(kind) = obj.get("rope_type").filter(|v| !v.is_null())
                && kind.as_str() != Some("default")
            {
                return Err(self.unsupported(
                    "rope_parameters.rope_type",
                    &format!("{kind} (only \"default\", plain RoPE)"),
                ));
            }
            for key in obj.keys() {
                if key != "rope_type" && key != "rope_theta" {
                    return Err(self.unsupported(
                        &format!("rope_parameters.{key}"),
                        "rope scaling is not implemented",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every layer must use full causal attention.
    fn check_attention_window(&self, arch: Arch) -> Result<()> {
        match arch {
            Arch::Qwen2 => {
                if self.bool("use_sliding_window")? == Some(true) {
                    return Err(
                        self.unsupported("use_sliding_window", "true (sliding-window attention)")
                    );
                }
            }
            Arch::Mistral | Arch::Llama => {
                if let Some(w) = self.get("sliding_window") {
                    return Err(self.unsupported(
                        "sliding_window",
                        &format!("{w} (sliding-window attention is not implemented)"),
                    ));
                }
            }
        }
        if let Some(types) = self.get("layer_types") {
            let list = types
                .as_array()
                .ok_or_else(|| self.err(format!("layer_types: expected a list, got {types}")))?;
            if let Some(t) = list.iter().find(|t| t.as_str() != Some("full_attention")) {
                return Err(
                    self.unsupported("layer_types", &format!("{t} (only \"full_attention\")"))
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<LlamaConfig> {
        LlamaConfig::from_json(&v, Path::new("config.json"))
    }

    fn base() -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 320,
            "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 3,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
            "bos_token_id": 1, "eos_token_id": 2
        })
    }

    #[test]
    fn reads_rope_theta_at_top_level_or_nested() {
        let c = parse(base()).unwrap();
        assert_eq!(c.rope_theta, 10000.0);
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.eos_token_ids(), vec![2]);
        let mut v = base();
        v.as_object_mut().unwrap().remove("rope_parameters");
        v["rope_theta"] = json!(500000.0);
        assert_eq!(parse(v).unwrap().rope_theta, 500000.0);
    }

    #[test]
    fn rejects_unsupported_options_naming_them() {
        let cases = [
            (
                "rope_scaling",
                json!({"rope_type": "llama3", "factor": 8.0}),
            ),
            ("sliding_window", json!(4096)),
            ("hidden_act", json!("gelu")),
            ("attention_bias", json!(true)),
        ];
        for (key, val) in cases {
            let mut v = base();
            v[key] = val;
            let e = parse(v).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        let mut v = base();
        v["rope_parameters"]["rope_type"] = json!("yarn");
        assert!(parse(v).unwrap_err().to_string().contains("rope_type"));
        let mut v = base();
        v["model_type"] = json!("gpt2");
        assert!(parse(v).unwrap_err().to_string().contains("gpt2"));
    }

    #[test]
    fn qwen2_accepts_disabled_sliding_window_only() {
        let mut v = base();
        v["model_type"] = json!("qwen2");
        v["architectures"] = json!(["Qwen2ForCausalLM"]);
        v["use_sliding_window"] = json!(false);
        v["sliding_window"] = json!(4096);
        assert!(parse(v.clone()).unwrap().qkv_bias);
        v["use_sliding_window"] = json!(true);
        assert!(
            parse(v)
                .unwrap_err()
                .to_string()
                .contains("use_sliding_window")
        );
    }

    #[test]
    fn json_round_trip_keeps_extra_keys() {
        let c = parse(base()).unwrap();
        let again = parse(c.to_json()).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn preset_sizes() {
        let tiny = LlamaConfig::preset(Preset::Tiny, 8192).num_params();
        let small = LlamaConfig::preset(Preset::Small, 8192).num_params();
        assert!((1_000_000..5_000_000).contains(&tiny), "{tiny}");
        assert!((15_000_000..25_000_000).contains(&small), "{small}");
    }
}
