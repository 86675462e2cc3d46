//! Probe specifications (`probes/*.toml`): which examples are encoded, how, at which layers, and
//! how each example's token states are pooled into one vector.
//!
//! ```toml
//! description = "the paper's protocol"
//! seed = 0                  # seeds the sampling of every set
//! layers = ["15/32"]        # a list, or one entry: "all"
//! pooling = "mean"          # mean | mean_skip_first | last
//! projection = "tsne"       # the 2-D map the protocol looks at (default of `mixprobe project`)
//!
//! [text]
//! content = "query"         # query (first user turn) | conversation (every turn)
//! template = "raw"          # raw | vicuna_v1.1 | chatml | plain
//! max_tokens = 512          # longer texts keep their first max_tokens tokens (counted)
//!
//! [[set]]
//! name = "math"             # the source label (lowercase letters, digits, '_' or '-')
//! path = "gsm8k/train.jsonl"   # relative to --data-dir
//! format = "gsm8k"          # optional: inferred from the first record when absent
//! count = 100               # optional: every example when absent
//! ```
//!
//! # Layers
//! `hidden[0]` is the token embedding and `hidden[i]` the output of block `i` (before the final
//! norm), so a model with `L` blocks has layers `0..=L`. An entry is an index (`15`), `"all"`
//! (`0..=L`), `"first"` (0), `"middle"` (`L / 2`, rounded down), `"last"` (`L`), or a depth
//! fraction `"a/b"` (also written `"a/b of depth"`): layer `a` when the model has at least `b`
//! blocks, otherwise `round(a · L / b)` (halves round up). The paper probes layer 15 of
//! LLaMA-7B's 32 blocks, so `"15/32"` is layer 15 of a 32-block model, 14 of SmolLM2-135M's 30,
//! 2 of a 4-block tiny model. Indices beyond `L` are an error at extraction.
//!
//! # Pooling
//! `mean` averages the hidden states of every token of the encoded text (with `template = "raw"`
//! and `content = "query"` that is exactly the query's tokens); `last` takes the last token's
//! state. The paper does not say which it used. Mean pooling is the default: it is the usual
//! choice for sentence embeddings from a decoder that was not trained to summarise into its
//! last token, and the paper's "hidden states of a query" reads most naturally as all of them;
//! `last` (the state the next token is predicted from) is the alternative, shipped as a variant.
//! `mean_skip_first` leaves out the first position: in a sequence without BOS the first token
//! is the attention sink, whose residual state carries massive activations (norm ~10⁴ in a few
//! dimensions of SmolLM2-135M from block 2 on, against ~10² elsewhere), so a plain mean is
//! dominated by `sink / length` and its geometry mostly encodes the text's length.
//!
//! # Sampling
//! Every set reads its file (malformed records are skipped and counted), then draws `count`
//! examples without replacement with `util::rng(seed, "probe-set:<name>")`, kept in file order.
use crate::data::read::Format;
use crate::data::template::ChatTemplate;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A validated probe specification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seed of the sampling.
    #[serde(default)]
    pub seed: u64,
    /// Layers to keep.
    pub layers: Layers,
    /// How token states become one vector per example.
    #[serde(default)]
    pub pooling: Pooling,
    /// The 2-D map the protocol looks at.
    #[serde(default)]
    pub projection: Method,
    /// What text is encoded.
    #[serde(default)]
    pub text: TextSpec,
    /// The probe sets; their names are the source labels.
    #[serde(rename = "set")]
    pub sets: Vec<ProbeSet>,
}

/// One probe set: examples of one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSet {
    /// Source label (unique; lowercase letters, digits, `_`, `-`).
    pub name: String,
    /// Data file, relative to the data directory.
    pub path: PathBuf,
    /// Record format; inferred from the first record when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Examples to sample; every example when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
}

/// What is encoded for each example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    /// Query only or the full conversation.
    #[serde(default)]
    pub content: Content,
    /// Raw text or wrapped in a chat template.
    #[serde(default)]
    pub template: TextTemplate,
    /// Longer encodings keep their first `max_tokens` tokens (counted in the index).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
}

fn default_max_tokens() -> usize {
    512
}

impl Default for TextSpec {
    fn default() -> Self {
        TextSpec {
            content: Content::default(),
            template: TextTemplate::default(),
            max_tokens: default_max_tokens(),
        }
    }
}

/// Which turns are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// The first user turn (the paper's "query").
    #[default]
    Query,
    /// Every turn.
    Conversation,
}

/// How the text is wrapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TextTemplate {
    /// The text as written (a conversation's turns joined by blank lines).
    #[default]
    Raw,
    /// A chat template: a query becomes a generation prompt (ending in the assistant prefix), a
    /// conversation its training text.
    Chat(ChatTemplate),
}

impl TryFrom<String> for TextTemplate {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("raw") {
            return Ok(TextTemplate::Raw);
        }
        ChatTemplate::from_name(&s)
            .map(TextTemplate::Chat)
            .map_err(|_| {
                format!("unknown template {s:?} (expected raw, vicuna_v1.1, chatml or plain)")
            })
    }
}

impl From<TextTemplate> for String {
    fn from(t: TextTemplate) -> String {
        match t {
            TextTemplate::Raw => "raw".into(),
            TextTemplate::Chat(c) => c.name().into(),
        }
    }
}

/// How the states of an example's tokens become one vector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over every token of the encoded text.
    #[default]
    Mean,
    /// Mean over every token but the first (the first one alone for a one-token text).
    MeanSkipFirst,
    /// The last token's state.
    Last,
}

/// A 2-D projection method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Barnes–Hut t-SNE after PCA to `pca_dims` dimensions.
    #[default]
    Tsne,
    /// The first two principal components.
    Pca,
}

impl Method {
    /// The name used in file names (`tsne`, `pca`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Tsne => "tsne",
            Method::Pca => "pca",
        }
    }
}

/// A list of layer selectors (`layers = "all"` or `layers = [15, "middle"]` in TOML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "OneOrMany")]
pub struct Layers(pub Vec<LayerSel>);

/// The raw TOML value of `layers` (items are checked after, so errors name the bad item).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(LayerItem),
    Many(Vec<LayerItem>),
}

impl TryFrom<OneOrMany> for Layers {
    type Error = String;
    fn try_from(v: OneOrMany) -> std::result::Result<Layers, String> {
        let items = match v {
            OneOrMany::One(l) => vec![l],
            OneOrMany::Many(v) => v,
        };
        items
            .into_iter()
            .map(LayerSel::try_from)
            .collect::<std::result::Result<_, _>>()
            .map(Layers)
    }
}

impl Layers {
    /// The layer indices for a model with `n_layers` blocks, sorted and deduplicated; errors
    /// when an index is beyond `n_layers`.
    pub fn resolve(&self, n_layers: usize) -> Result<Vec<usize>> {
        let mut out = BTreeSet::new();
        for sel in &self.0 {
            out.extend(sel.resolve(n_layers)?);
        }
        Ok(out.into_iter().collect())
    }
}

impl FromStr for Layers {
    type Err = Error;
    /// Comma-separated selectors, e.g. `all` or `0,15,middle,15/32`.
    fn from_str(s: &str) -> Result<Layers> {
        let v = s
            .split(',')
            .map(|p| p.trim().parse())
            .collect::<Result<Vec<LayerSel>>>()?;
        if v.is_empty() {
            return Err(Error::invalid("layers", "no layer given"));
        }
        Ok(Layers(v))
    }
}

/// One layer selector (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LayerItem", into = "LayerItem")]
pub enum LayerSel {
    /// `hidden[i]`.
    Index(usize),
    /// Every layer `0..=L`.
    All,
    /// Layer 0 (the embeddings).
    First,
    /// `L / 2`.
    Middle,
    /// `L`.
    Last,
    /// `a/b`: `a` when `L >= b`, else `round(a · L / b)`.
    Depth { layer: usize, of: usize },
}

/// A TOML layer entry: an integer or a string.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum LayerItem {
    Int(i64),
    Str(String),
}

impl TryFrom<LayerItem> for LayerSel {
    type Error = String;
    fn try_from(v: LayerItem) -> std::result::Result<Self, String> {
        match v {
            LayerItem::Int(i) => usize::try_from(i)
                .map(LayerSel::Index)
                .map_err(|_| format!("layer {i} is negative")),
            LayerItem::Str(s) => s.parse().map_err(|e: Error| e.to_string()),
        }
    }
}

impl From<LayerSel> for LayerItem {
    fn from(l: LayerSel) -> LayerItem {
        match l {
            LayerSel::Index(i) => LayerItem::Int(i as i64),
            other => LayerItem::Str(other.to_string()),
        }
    }
}

impl FromStr for LayerSel {
    type Err = Error;
    fn from_str(s: &str) -> Result<LayerSel> {
        let t = s.trim().to_ascii_lowercase();
        let bad = || {
            Error::invalid(
                "layer",
                format!(
                    "{s:?} is not a layer (expected an index, \"all\", \"first\", \"middle\", \
                     \"last\" or a depth fraction like \"15/32\")"
                ),
            )
        };
        Ok(match t.as_str() {
            "all" => LayerSel::All,
            "first" => LayerSel::First,
            "middle" => LayerSel::Middle,
            "last" => LayerSel::Last,
            _ => {
                let t = t.strip_suffix("of depth").map(str::trim).unwrap_or(&t);
                if let Some((a, b)) = t.split_once('/') {
                    let a: usize = a.trim().parse().map_err(|_| bad())?;
                    let b: usize = b.trim().parse().map_err(|_| bad())?;
                    if b == 0 || a > b {
                        return Err(Error::invalid(
                            "layer",
                            format!("{s:?}: a depth fraction a/b needs 0 <= a <= b and b >= 1"),
                        ));
                    }
                    LayerSel::Depth { layer: a, of: b }
                } else {
                    LayerSel::Index(t.parse().map_err(|_| bad())?)
                }
            }
        })
    }
}

impl fmt::Display for LayerSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerSel::Index(i) => write!(f, "{i}"),
            LayerSel::All => f.write_str("all"),
            LayerSel::First => f.write_str("first"),
            LayerSel::Middle => f.write_str("middle"),
            LayerSel::Last => f.write_str("last"),
            LayerSel::Depth { layer, of } => write!(f, "{layer}/{of}"),
        }
    }
}

impl LayerSel {
    /// The indices this selector names for a model with `n_layers` blocks.
    pub fn resolve(&self, n_layers: usize) -> Result<Vec<usize>> {
        let l = n_layers;
        Ok(match *self {
            LayerSel::Index(i) if i > l => {
                return Err(Error::invalid(
                    "layer",
                    format!("{i} is out of range: this model has layers 0..={l}"),
                ));
            }
            LayerSel::Index(i) => vec![i],
            LayerSel::All => (0..=l).collect(),
            LayerSel::First => vec![0],
            LayerSel::Middle => vec![l / 2],
            LayerSel::Last => vec![l],
            LayerSel::Depth { layer, of } if l >= of => vec![layer],
            LayerSel::Depth { layer, of } => vec![(layer * l * 2 + of) / (2 * of)],
        })
    }
}

impl ProbeSpec {
    /// Read and check a spec file.
    pub fn load(path: &Path) -> Result<ProbeSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        ProbeSpec::from_toml_str(&text, &path.display().to_string())
    }

    /// Parse and check a spec; `origin` names it in errors (usually the file path).
    pub fn from_toml_str(s: &str, origin: &str) -> Result<ProbeSpec> {
        let spec: ProbeSpec =
            toml::from_str(s).map_err(|e| Error::config(origin, e.to_string()))?;
        spec.check()
            .map_err(|m| Error::config(origin, format!("invalid probe spec: {m}")))?;
        Ok(spec)
    }

    /// The source labels, in set order.
    pub fn sources(&self) -> Vec<String> {
        self.sets.iter().map(|s| s.name.clone()).collect()
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.sets.is_empty() {
            return Err("no probe set: add at least one [[set]] table".into());
        }
        let mut names = BTreeSet::new();
        for (i, set) in self.sets.iter().enumerate() {
            let at = format!("set {} ({:?})", i + 1, set.name);
            let ok = !set.name.is_empty()
                && set
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !ok {
                return Err(format!(
                    "{at}: field `name` must be non-empty lowercase letters, digits, '_' or '-'"
                ));
            }
            if !names.insert(set.name.as_str()) {
                return Err(format!("{at}: field `name` repeats an earlier set's name"));
            }
            if set.path.as_os_str().is_empty() {
                return Err(format!("{at}: field `path` is empty"));
            }
            if set.count == Some(0) {
                return Err(format!("{at}: field `count` must be at least 1"));
            }
        }
        if self.layers.0.is_empty() {
            return Err("field `layers` is empty: name at least one layer or \"all\"".into());
        }
        if self.text.max_tokens == 0 {
            return Err("field `text.max_tokens` must be at least 1".into());
        }
        Ok(())
    }
}
