//! Byte-level BPE training for from-scratch models (the `tokenizers` crate's `BpeTrainer`).
//!
//! The tokenizer has no normalizer (text is kept exactly), a byte-level pre-tokenizer without an
//! added prefix space (like SmolLM2's, so segment-by-segment encoding in
//! [`crate::data::tokenize`] adds nothing), a byte-level decoder and no post-processor (no BOS).
//! The special tokens take the first ids, in the order given, followed by the 256 byte symbols
//! and the merges. Special-token text inside the training texts is cut out before counting, so
//! no merge learns pieces of it. Training is deterministic: the same texts give the same file.
use crate::error::{Error, Result};
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// Default vocabulary size for tiny from-scratch models.
pub const DEFAULT_VOCAB_SIZE: usize = 4096;

/// Train a byte-level BPE tokenizer of `vocab_size` tokens (special tokens included) on `texts`.
pub fn train_bpe(
    texts: impl Iterator<Item = String>,
    vocab_size: usize,
    special_tokens: &[&str],
) -> Result<Tokenizer> {
    let min = 256 + special_tokens.len();
    if vocab_size < min {
        return Err(Error::invalid(
            "vocab size",
            format!(
                "{vocab_size} is too small: a byte-level BPE needs at least {min} \
                 (256 bytes + {} special tokens)",
                special_tokens.len()
            ),
        ));
    }
    if let Some(t) = special_tokens.iter().find(|t| t.is_empty()) {
        return Err(Error::invalid("special token", format!("{t:?} is empty")));
    }
    let pieces: Vec<String> = texts
        .flat_map(|text| split_specials(&text, special_tokens))
        .collect();
    if pieces.is_empty() {
        return Err(Error::invalid(
            "training texts",
            "no text to train a tokenizer on",
        ));
    }
    let specials: Vec<AddedToken> = special_tokens
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(0)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_decoder(Some(ByteLevel::new(false, true, true)));
    tokenizer
        .train(&mut trainer, pieces.into_iter())
        .map_err(|e| Error::Tokenizer(format!("BPE training failed: {e}")))?;
    Ok(tokenizer)
}

/// The tokenizer as pretty JSON (the `tokenizer.json` format).
pub fn to_json(tokenizer: &Tokenizer) -> Result<String> {
    tokenizer
        .to_string(true)
        .map_err(|e| Error::Tokenizer(format!("serializing: {e}")))
}

/// `text` without any occurrence of the special tokens, as the pieces between them.
fn split_specials(text: &str, specials: &[&str]) -> Vec<String> {
    let mut pieces = vec![text.to_string()];
    for s in specials {
        pieces = pieces
            .iter()
            .flat_map(|p| p.split(s))
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_out_special_text() {
        assert_eq!(
            split_specials("a</s>b<s>c</s>", &["</s>", "<s>"]),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn rejects_tiny_vocab() {
        let err = train_bpe(["hi".to_string()].into_iter(), 100, &["</s>"]).unwrap_err();
        assert!(err.to_string().contains("at least 257"), "{err}");
    }
}
