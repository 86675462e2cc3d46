//! A Hugging Face `tokenizer.json` and `tokenizer_config.json` from a GGUF's embedded GPT-2
//! byte-level BPE vocabulary (`tokenizer.ggml.*`). The layout matches what `transformers`
//! produces from the same GGUF: BPE model, ByteLevel pre-tokenizer and decoder, a
//! TemplateProcessing post-processor adding BOS/EOS only where the GGUF asks for it.
use super::reader::Header;
use crate::error::{Error, Result};
use serde_json::{Map, Value as Json, json};

/// llama.cpp token types that become added tokens.
const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// `tokenizer.ggml.pre` values whose pre-tokenization is GPT-2's regex split (what the
/// ByteLevel pre-tokenizer does). "smollm" additionally splits digits one by one, which is the
/// same thing for a vocabulary where no token joins an ASCII digit with anything (checked).
const SUPPORTED_PRE: [&str; 2] = ["gpt-2", "smollm"];

/// Ids of the special tokens named in the GGUF metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
}

/// What was built, for the import report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenizerSummary {
    pub model: String,
    pub pre: String,
    pub vocab_size: usize,
    pub merges: usize,
    /// Added tokens marked special (CONTROL / UNKNOWN types and the bos/eos/unk/pad ids).
    pub special_tokens: usize,
    /// Added tokens of type USER_DEFINED (not special).
    pub user_defined_tokens: usize,
    /// Token strings that occur more than once; only the first id is reachable by encoding.
    pub duplicate_tokens: usize,
    pub add_bos_token: bool,
    pub add_eos_token: bool,
    pub special_ids: SpecialIds,
}

/// The tokenizer files of an imported model.
#[derive(Debug, Clone)]
pub struct GgufTokenizer {
    pub tokenizer_json: Json,
    pub tokenizer_config: Json,
    pub summary: TokenizerSummary,
}

/// Build the tokenizer files from a GGUF header. `model_max_length` goes to
/// tokenizer_config.json (the context length).
pub fn build_tokenizer(h: &Header, model_max_length: Option<u64>) -> Result<GgufTokenizer> {
    let err = |msg: String| Error::file(&h.path, msg);
    let model = h.str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(err(format!(
            "tokenizer.ggml.model is '{model}'; only 'gpt2' (byte-level BPE) tokenizers are supported"
        )));
    }
    let pre = h.opt_str("tokenizer.ggml.pre")?.unwrap_or("(missing)");
    if !SUPPORTED_PRE.contains(&pre) {
        return Err(err(format!(
            "tokenizer.ggml.pre is '{pre}'; supported pre-tokenizers: {}",
            SUPPORTED_PRE.join(", ")
        )));
    }
    let tokens = h
        .opt_array("tokenizer.ggml.tokens", "an array of strings", |v| {
            v.as_str()
        })?
        .ok_or_else(|| err("metadata 'tokenizer.ggml.tokens' is missing".into()))?;
    let merges = h
        .opt_array("tokenizer.ggml.merges", "an array of strings", |v| {
            v.as_str()
        })?
        .ok_or_else(|| err("metadata 'tokenizer.ggml.merges' is missing".into()))?;
    let types = h
        .opt_array("tokenizer.ggml.token_type", "an array of integers", |v| {
            v.as_f64().map(|x| x as i64)
        })?
        .unwrap_or_else(|| vec![1; tokens.len()]);
    if types.len() != tokens.len() {
        return Err(err(format!(
            "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}",
            types.len(),
            tokens.len()
        )));
    }
    if pre == "smollm"
        && let Some(t) = tokens
            .iter()
            .find(|t| t.chars().any(|c| c.is_ascii_digit()) && t.chars().count() > 1)
    {
        return Err(err(format!(
            "tokenizer.ggml.pre 'smollm' splits digits individually, but token '{t}' joins a digit \
             with other characters; this vocabulary is not supported"
        )));
    }

    let special_id = |key: &str| -> Result<Option<u32>> {
        match h.opt_u64(key)? {
            Some(id) if id < tokens.len() as u64 => Ok(Some(id as u32)),
            Some(id) => Err(err(format!(
                "metadata '{key}' is {id}, outside the vocabulary of {}",
                tokens.len()
            ))),
            None => Ok(None),
        }
    };
    let ids = SpecialIds {
        bos: special_id("tokenizer.ggml.bos_token_id")?,
        eos: special_id("tokenizer.ggml.eos_token_id")?,
        unk: special_id("tokenizer.ggml.unknown_token_id")?,
        pad: special_id("tokenizer.ggml.padding_token_id")?,
    };
    let add_bos = h.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false);
    let add_eos = h.opt_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    let add_prefix_space = h
        .opt_bool("tokenizer.ggml.add_space_prefix")?
        .unwrap_or(false);
    let token = |id: Option<u32>| id.map(|i| tokens[i as usize]);
    let (bos, eos) = (token(ids.bos), token(ids.eos));
    if add_bos && bos.is_none() {
        return Err(err(
            "tokenizer.ggml.add_bos_token is set but there is no bos_token_id".into(),
        ));
    }
    if add_eos && eos.is_none() {
        return Err(err(
            "tokenizer.ggml.add_eos_token is set but there is no eos_token_id".into(),
        ));
    }

    let mut vocab = Map::with_capacity(tokens.len());
    let mut duplicate_tokens = 0;
    for (id, t) in tokens.iter().enumerate() {
        if vocab.contains_key(*t) {
            duplicate_tokens += 1;
        } else {
            vocab.insert(t.to_string(), json!(id));
        }
    }
    let merge_pairs = merges
        .iter()
        .enumerate()
        .map(|(i, m)| match m.split_once(' ') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => Ok(json!([a, b])),
            _ => Err(err(format!(
                "tokenizer.ggml.merges[{i}] = {m:?} is not two tokens separated by one space"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;

    let named = [ids.bos, ids.eos, ids.unk, ids.pad];
    let (mut special_tokens, mut user_defined_tokens) = (0, 0);
    let mut added = Vec::new();
    for (id, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
        let special =
            ty == TOKEN_CONTROL || ty == TOKEN_UNKNOWN || named.contains(&Some(id as u32));
        if !special && ty != TOKEN_USER_DEFINED {
            continue;
        }
        if special {
            special_tokens += 1;
        } else {
            user_defined_tokens += 1;
        }
        added.push(json!({
            "id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": special,
        }));
    }

    let tokenizer_json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": true, "use_regex": true},
        "post_processor": post_processor(bos.filter(|_| add_bos), eos.filter(|_| add_eos), ids),
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merge_pairs,
        },
    });
    // Loading it is the check that merges and added tokens are consistent with the vocabulary.
    tokenizers::Tokenizer::from_bytes(tokenizer_json.to_string().as_bytes()).map_err(|e| {
        Error::Tokenizer(format!(
            "{}: the tokenizer built from the GGUF is invalid: {e}",
            h.path.display()
        ))
    })?;

    let mut config = Map::new();
    config.insert("add_bos_token".into(), json!(add_bos));
    config.insert("add_eos_token".into(), json!(add_eos));
    for (key, id) in [
        ("bos_token", ids.bos),
        ("eos_token", ids.eos),
        ("unk_token", ids.unk),
        ("pad_token", ids.pad),
    ] {
        if let Some(t) = token(id) {
            config.insert(key.into(), json!(t));
        }
    }
    if let Some(template) = h.opt_str("tokenizer.chat_template")? {
        config.insert("chat_template".into(), json!(template));
    }
    config.insert("clean_up_tokenization_spaces".into(), json!(false));
    if let Some(n) = model_max_length {
        config.insert("model_max_length".into(), json!(n));
    }
    config.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));

    Ok(GgufTokenizer {
        tokenizer_json,
        tokenizer_config: Json::Object(config),
        summary: TokenizerSummary {
            model: model.to_string(),
            pre: pre.to_string(),
            vocab_size: tokens.len(),
            merges: merges.len(),
            special_tokens,
            user_defined_tokens,
            duplicate_tokens,
            add_bos_token: add_bos,
            add_eos_token: add_eos,
            special_ids: ids,
        },
    })
}

/// TemplateProcessing that adds `bos` before and `eos` after each sequence when given.
fn post_processor(bos: Option<&str>, eos: Option<&str>, ids: SpecialIds) -> Json {
    let piece = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let template = |seq: &str, type_id: u32| {
        let mut p = Vec::new();
        p.extend(bos.map(|t| piece(t, type_id)));
        p.push(json!({"Sequence": {"id": seq, "type_id": type_id}}));
        p.extend(eos.map(|t| piece(t, type_id)));
        p
    };
    let single = template("A", 0);
    let mut pair = single.clone();
    pair.extend(template("B", 1));
    let mut special = Map::new();
    for (t, id) in [(bos, ids.bos), (eos, ids.eos)] {
        if let (Some(t), Some(id)) = (t, id) {
            special.insert(t.to_string(), json!({"id": t, "ids": [id], "tokens": [t]}));
        }
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special})
}
