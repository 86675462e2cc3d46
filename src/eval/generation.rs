//! Generating answers for evaluation: a model directory loaded with its tokenizer and chat
//! template, prompts rendered with the template, batched generation with a progress bar.
//!
//! # Template choice (when none is given)
//! 1. The `template` of a `mixprobe train` run's `run.json` in the model directory or its
//!    parent (a `stage-N/` or `final/` directory of a run);
//! 2. else `chatml` when the tokenizer has an `<|im_start|>` token (SmolLM2, Qwen);
//! 3. else `vicuna_v1.1` (the paper's template).
//!
//! # Stopping
//! Generation stops at the model's eos ids and at the template's end-of-turn token when the
//! tokenizer has it as one token; the decoded text is also cut at the first end-of-turn marker
//! in text form (a tokenizer without such a token spells `</s>` as several pieces).
use crate::data::Turn;
use crate::data::template::ChatTemplate;
use crate::data::tokenize::ChatTokenizer;
use crate::error::{Error, Result};
use crate::model::{GenerateConfig, Llama, generate, load_hf_dir};
use crate::util::rng;
use burn::tensor::backend::Backend;
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng as _;
use std::path::Path;

/// A model ready to answer prompts.
pub struct Generator<B: Backend> {
    pub model: Llama<B>,
    pub tokenizer: ChatTokenizer,
    /// Token ids that end a generation.
    pub stop_tokens: Vec<u32>,
    /// Where the template choice came from (`--template`, `run.json`, `tokenizer`, `default`).
    pub template_source: String,
}

/// How to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub max_new_tokens: usize,
    /// Prompts per generation batch.
    pub batch_size: usize,
    /// 0 = greedy.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    /// Draw a progress bar (rate and ETA) on stderr.
    pub progress: bool,
}

impl<B: Backend> Generator<B> {
    /// Load `dir` (config.json, model.safetensors, tokenizer.json) with `template`, or the
    /// template chosen as the module docs say.
    pub fn load(dir: &Path, template: Option<ChatTemplate>, device: &B::Device) -> Result<Self> {
        let loaded = load_hf_dir::<B>(dir, device)?;
        let tok_path = loaded.tokenizer.clone().ok_or_else(|| {
            Error::file(
                dir,
                "the model directory has no tokenizer.json (needed to evaluate)",
            )
        })?;
        let (template, template_source) = match template {
            Some(t) => (t, "--template".to_string()),
            None => detect_template(dir, &tok_path)?,
        };
        let tokenizer = ChatTokenizer::from_file(&tok_path, template)?;
        let mut stop_tokens = loaded.eos_token_ids.clone();
        if let Some(id) = tokenizer.end_of_turn_id()
            && !stop_tokens.contains(&id)
        {
            stop_tokens.push(id);
        }
        Ok(Generator {
            model: loaded.model,
            tokenizer,
            stop_tokens,
            template_source,
        })
    }

    /// The chat template prompts are rendered with.
    pub fn template(&self) -> ChatTemplate {
        self.tokenizer.template()
    }

    /// One answer per conversation (each normally ending with a user turn), in input order.
    /// Prompts are sorted by length and generated `batch_size` at a time.
    pub fn answer(
        &self,
        label: &str,
        prompts: &[Vec<Turn>],
        opts: &GenOptions,
    ) -> Result<Vec<String>> {
        let ids: Vec<Vec<u32>> = prompts
            .iter()
            .map(|turns| self.tokenizer.encode_prompt(turns))
            .collect::<Result<_>>()?;
        let max_pos = self.model.config().max_position_embeddings;
        if let Some((i, p)) = ids
            .iter()
            .enumerate()
            .find(|(_, p)| p.len() + opts.max_new_tokens > max_pos)
        {
            return Err(Error::invalid(
                "prompt",
                format!(
                    "{label} prompt {i} has {} tokens; with {} new tokens it exceeds the model's \
                     {max_pos} positions (lower --max-new-tokens)",
                    p.len(),
                    opts.max_new_tokens
                ),
            ));
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| (ids[i].len(), i));
        let bar = progress_bar(label, "generate", ids.len(), opts.progress);
        let cfg = GenerateConfig {
            max_new_tokens: opts.max_new_tokens,
            temperature: opts.temperature,
            top_p: opts.top_p,
            seed: opts.seed,
            stop_tokens: self.stop_tokens.clone(),
        };
        let mut out = vec![String::new(); ids.len()];
        for chunk in order.chunks(opts.batch_size.max(1)) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            // Sampling: the batch draws from a stream named after its first prompt, so a run
            // is reproducible for a given seed and batch size.
            let seed = if cfg.temperature == 0.0 {
                cfg.seed
            } else {
                rng(opts.seed, &format!("eval/{label}/{}", chunk[0])).random::<u64>()
            };
            let generated = generate(
                &self.model,
                &batch,
                &GenerateConfig {
                    seed,
                    ..cfg.clone()
                },
            )?;
            for (&i, toks) in chunk.iter().zip(generated) {
                out[i] = self.decode(&toks)?;
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(out)
    }

    /// Decode generated ids and cut at the first end-of-turn marker.
    fn decode(&self, ids: &[u32]) -> Result<String> {
        let text = self.tokenizer.decode(ids, true)?;
        let eot = self.template().end_of_turn();
        Ok(match text.find(eot) {
            Some(i) => text[..i].to_string(),
            None => text,
        })
    }
}

/// A progress bar with rate and ETA (hidden when `show` is false).
pub fn progress_bar(label: &str, what: &str, len: usize, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {pos}/{len} {per_sec} elapsed {elapsed} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("{label} {what}"));
    bar
}

/// The template for a model directory without `--template` (see the module docs).
fn detect_template(dir: &Path, tokenizer: &Path) -> Result<(ChatTemplate, String)> {
    for run_json in [dir.join("run.json"), dir.join("..").join("run.json")] {
        if !run_json.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&run_json).map_err(|e| Error::io(&run_json, e))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::file(&run_json, format!("not valid JSON: {e}")))?;
        if let Some(name) = value.get("template").and_then(|v| v.as_str()) {
            return Ok((ChatTemplate::from_name(name)?, "run.json".into()));
        }
    }
    let tok = tokenizers::Tokenizer::from_file(tokenizer)
        .map_err(|e| Error::Tokenizer(format!("{}: cannot load: {e}", tokenizer.display())))?;
    if tok.token_to_id("<|im_start|>").is_some() {
        return Ok((ChatTemplate::ChatMl, "tokenizer".into()));
    }
    Ok((ChatTemplate::VicunaV11, "default".into()))
}
