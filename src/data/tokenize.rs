//! Tokenization of rendered examples with a loss mask that is true exactly on the assistant's
//! tokens and their end-of-turn token (FastChat's training targets).
//!
//! # How a sequence is built
//! The example is rendered by its [`ChatTemplate`] into segments (prompt / assistant), and every
//! segment is encoded on its own, without the tokenizer's post-processor; the ids are concatenated.
//! The mask boundary is therefore exact by construction, and the prompt's tokens are the ones the
//! model sees at generation time, when the prompt (ending in `ASSISTANT:` or
//! `<|im_start|>assistant\n`) is encoded alone and the answer is generated after it. (This assumes
//! a tokenizer that adds nothing at the start of a piece — byte-level BPE such as SmolLM2's or the
//! ones [`crate::data::bpe`] trains; a SentencePiece tokenizer that prepends `▁` to every encoded
//! piece would insert extra spaces.)
//!
//! # Special text
//! Text that matches one of the tokenizer's added (special) tokens — `<|im_end|>` for ChatML,
//! `</s>` for vicuna when the tokenizer has such a token — is encoded as that single token, in
//! any segment; a tokenizer without such a token encodes the marker as ordinary text (e.g. `</s>`
//! becomes `</`, `s`, `>` with SmolLM2's tokenizer), and those tokens are masked like the answer.
//!
//! # BOS
//! A BOS token is put first exactly when the tokenizer's post-processor adds one before a single
//! sequence (a LLaMA-style `TemplateProcessing` with `<s> $A`): see [`ChatTokenizer::bos`].
//! SmolLM2's tokenizer adds none, nor do the tokenizers trained by [`crate::data::bpe`].
//!
//! # Truncation
//! A sequence longer than `max_len` keeps its head (the first `max_len` tokens) and loses the
//! tail. A truncated sequence with no assistant token left is dropped; both are counted in
//! [`TokenizeStats`]. An example that has no assistant token at all (e.g. an MT-Bench question)
//! is dropped and counted too.
use crate::data::example::{Example, Turn};
use crate::data::template::{ChatTemplate, Segment};
use crate::error::{Error, Result};
use serde::Serialize;
use std::path::Path;
use tokenizers::Tokenizer;

/// One tokenized example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tokenized {
    /// The example's id.
    pub id: String,
    pub input_ids: Vec<u32>,
    /// True on the tokens trained on (assistant text and its end-of-turn token).
    pub loss_mask: Vec<bool>,
}

impl Tokenized {
    /// Number of tokens with the loss mask set.
    pub fn assistant_tokens(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m).count()
    }

    /// Keep the first `max_len` tokens; true when something was cut.
    pub fn truncate(&mut self, max_len: usize) -> bool {
        let cut = self.input_ids.len() > max_len;
        self.input_ids.truncate(max_len);
        self.loss_mask.truncate(max_len);
        cut
    }
}

/// Counts from tokenizing a batch of examples (nothing is dropped silently).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenizeStats {
    /// Examples given.
    pub examples: usize,
    /// Examples kept (returned).
    pub kept: usize,
    /// Kept examples whose tail was cut at `max_len`.
    pub truncated: usize,
    /// Examples dropped because truncation left no assistant token.
    pub dropped_truncated: usize,
    /// Examples dropped because they have no assistant token at all.
    pub dropped_no_assistant: usize,
    /// Tokens in the kept examples.
    pub tokens: usize,
    /// Tokens with the loss mask set in the kept examples.
    pub assistant_tokens: usize,
}

/// A tokenizer bound to a chat template.
#[derive(Clone)]
pub struct ChatTokenizer {
    tokenizer: Tokenizer,
    template: ChatTemplate,
    bos: Option<u32>,
}

impl ChatTokenizer {
    /// Load a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path, template: ChatTemplate) -> Result<ChatTokenizer> {
        if !path.is_file() {
            return Err(Error::file(
                path,
                "tokenizer file not found (expected a tokenizer.json)",
            ));
        }
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: cannot load: {e}", path.display())))?;
        ChatTokenizer::new(tokenizer, template)
    }

    /// Wrap a tokenizer; detects whether its post-processor adds a BOS token. Truncation and
    /// padding configured in the tokenizer are turned off (truncation is ours, and counted).
    pub fn new(mut tokenizer: Tokenizer, template: ChatTemplate) -> Result<ChatTokenizer> {
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(format!("disabling truncation: {e}")))?
            .with_padding(None);
        let probe = "a";
        let plain = encode_err(tokenizer.encode(probe, false))?;
        let with = encode_err(tokenizer.encode(probe, true))?;
        let added = with.get_ids().len().saturating_sub(plain.get_ids().len());
        let bos = (added > 0
            && with.get_ids().ends_with(plain.get_ids())
            && with.get_special_tokens_mask().first() == Some(&1))
        .then(|| with.get_ids()[0]);
        Ok(ChatTokenizer {
            tokenizer,
            template,
            bos,
        })
    }

    /// The chat template.
    pub fn template(&self) -> ChatTemplate {
        self.template
    }

    /// The underlying tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The BOS id put first in every sequence, when the tokenizer's post-processor adds one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The id of the template's end-of-turn marker when the tokenizer has it as one token.
    pub fn end_of_turn_id(&self) -> Option<u32> {
        self.tokenizer.token_to_id(self.template.end_of_turn())
    }

    /// Encode text as is (added tokens recognized, no post-processor tokens).
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        Ok(encode_err(self.tokenizer.encode_fast(text, false))?
            .get_ids()
            .to_vec())
    }

    /// Decode ids to text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("decode: {e}")))
    }

    /// Encode rendered segments: (BOS,) then each segment, masked where it is the assistant's.
    pub fn encode_segments(&self, id: &str, segments: &[Segment]) -> Result<Tokenized> {
        let mut input_ids: Vec<u32> = self.bos.into_iter().collect();
        let mut loss_mask = vec![false; input_ids.len()];
        for seg in segments {
            let ids = self.encode_text(&seg.text)?;
            loss_mask.extend(std::iter::repeat_n(seg.assistant, ids.len()));
            input_ids.extend(ids);
        }
        Ok(Tokenized {
            id: id.to_string(),
            input_ids,
            loss_mask,
        })
    }

    /// Tokenize one example with its loss mask (no truncation).
    pub fn encode_example(&self, example: &Example) -> Result<Tokenized> {
        self.encode_segments(&example.id, &self.template.render(&example.turns))
    }

    /// Tokenize many examples (no truncation), the same as [`ChatTokenizer::encode_example`] on
    /// each, encoding the segments of a chunk of examples in parallel (the tokenizer's thread
    /// pool; `TOKENIZERS_PARALLELISM=false` turns it off).
    pub fn encode_many(&self, examples: &[Example]) -> Result<Vec<Tokenized>> {
        const CHUNK: usize = 512;
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(CHUNK) {
            let rendered: Vec<Vec<Segment>> = chunk
                .iter()
                .map(|e| self.template.render(&e.turns))
                .collect();
            let texts: Vec<&str> = rendered.iter().flatten().map(|s| s.text.as_str()).collect();
            let mut encodings =
                encode_err(self.tokenizer.encode_batch_fast(texts, false))?.into_iter();
            for (ex, segments) in chunk.iter().zip(&rendered) {
                let mut input_ids: Vec<u32> = self.bos.into_iter().collect();
                let mut loss_mask = vec![false; input_ids.len()];
                for seg in segments {
                    let enc = encodings
                        .next()
                        .ok_or_else(|| Error::Internal("encode_batch returned too few".into()))?;
                    loss_mask.extend(std::iter::repeat_n(seg.assistant, enc.get_ids().len()));
                    input_ids.extend_from_slice(enc.get_ids());
                }
                out.push(Tokenized {
                    id: ex.id.clone(),
                    input_ids,
                    loss_mask,
                });
            }
        }
        Ok(out)
    }

    /// Ids of a generation prompt for `turns` (the same pieces as in training, plus the
    /// template's assistant prefix).
    pub fn encode_prompt(&self, turns: &[Turn]) -> Result<Vec<u32>> {
        Ok(self
            .encode_segments("", &self.template.render_prompt_segments(turns))?
            .input_ids)
    }

    /// Tokenize examples, truncating to `max_len` (head kept) and dropping (counting) those
    /// left without an assistant token.
    pub fn encode_examples(
        &self,
        examples: &[Example],
        max_len: usize,
    ) -> Result<(Vec<Tokenized>, TokenizeStats)> {
        if max_len == 0 {
            return Err(Error::invalid("max length", "must be at least 1"));
        }
        let mut stats = TokenizeStats {
            examples: examples.len(),
            ..TokenizeStats::default()
        };
        let mut out = Vec::with_capacity(examples.len());
        for mut t in self.encode_many(examples)? {
            if t.assistant_tokens() == 0 {
                stats.dropped_no_assistant += 1;
                continue;
            }
            if t.truncate(max_len) {
                if t.assistant_tokens() == 0 {
                    stats.dropped_truncated += 1;
                    continue;
                }
                stats.truncated += 1;
            }
            stats.kept += 1;
            stats.tokens += t.input_ids.len();
            stats.assistant_tokens += t.assistant_tokens();
            out.push(t);
        }
        Ok((out, stats))
    }
}

fn encode_err<T>(r: tokenizers::Result<T>) -> Result<T> {
    r.map_err(|e| Error::Tokenizer(format!("encode: {e}")))
}
