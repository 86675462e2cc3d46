//! Batched autoregressive generation with a KV cache: greedy or temperature / top-p sampling,
//! stopping at a stop token (end of turn, eos) or a length cap.
//!
//! Prompts are right-padded into one batch; every sequence keeps its own positions (0-based) and
//! padded cache slots are masked, so a prompt generates the same tokens alone or in a batch.
//! Finished sequences leave the batch (their cache rows are dropped).
use super::fast::Decoder;
use super::llama::{HiddenSelect, KvCache, Llama, LogitRows, Rope, Step, attention_bias};
use crate::error::{Error, Result};
use crate::util::{Rng, rng};
use burn::tensor::backend::Backend;
use rand::Rng as _;

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    /// At most this many new tokens per prompt.
    pub max_new_tokens: usize,
    /// 0 = greedy (argmax, lowest id on ties); otherwise sample from softmax(logits / temperature).
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens whose probabilities first reach `top_p`
    /// (1 = no truncation). Ignored when greedy.
    pub top_p: f32,
    /// Seed of the sampler. Prompt `i` of a call draws from its own stream (`generate/i`), so
    /// results do not depend on which other prompts finish first.
    pub seed: u64,
    /// Generation stops after any of these (end of turn, eos); the stop token is not returned.
    pub stop_tokens: Vec<u32>,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_tokens: Vec::new(),
        }
    }
}

/// Generate a continuation for every prompt (token ids); returns the new tokens of each, without
/// the prompt and without the stop token. On [`crate::model::CpuBackend`] the CPU fast path
/// (`model::fast`) does the decoding.
pub fn generate<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    cfg: &GenerateConfig,
) -> Result<Vec<Vec<u32>>> {
    validate(cfg)?;
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(Error::invalid(
            "prompt",
            format!("prompt {i} has no tokens"),
        ));
    }
    for p in prompts {
        model.check_ids(p)?;
    }
    if prompts.is_empty() || cfg.max_new_tokens == 0 {
        return Ok(vec![Vec::new(); prompts.len()]);
    }
    let vocab = model.config().vocab_size;
    match super::fast::as_cpu(model) {
        Some(cpu) => {
            let (decoder, logits) = Decoder::prefill(cpu, prompts);
            decode(decoder, logits, vocab, prompts.len(), cfg)
        }
        None => {
            let (session, logits) = BurnSession::prefill(model, prompts)?;
            decode(session, logits, vocab, prompts.len(), cfg)
        }
    }
}

/// Incremental decoding state: rows are the unfinished sequences, in order.
trait Session {
    /// Keep only these rows, in this order.
    fn select_rows(&mut self, rows: &[usize]);
    /// Feed one token per row (each at its next position); the next logits `[rows · vocab]`.
    fn step(&mut self, next: &[u32]) -> Result<Vec<f32>>;
}

impl Session for Decoder {
    fn select_rows(&mut self, rows: &[usize]) {
        Decoder::select_rows(self, rows);
    }

    fn step(&mut self, next: &[u32]) -> Result<Vec<f32>> {
        Ok(Decoder::step(self, next))
    }
}

/// The sampling loop shared by both decoders, from the prefill's last-position logits.
fn decode(
    mut session: impl Session,
    mut values: Vec<f32>,
    vocab: usize,
    n_prompts: usize,
    cfg: &GenerateConfig,
) -> Result<Vec<Vec<u32>>> {
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); n_prompts];
    let mut rngs: Vec<Rng> = (0..n_prompts)
        .map(|i| rng(cfg.seed, &format!("generate/{i}")))
        .collect();
    // Prompt index of each active row.
    let mut active: Vec<usize> = (0..n_prompts).collect();
    loop {
        let mut keep = Vec::with_capacity(active.len());
        let mut next = Vec::with_capacity(active.len());
        for (row, &p) in active.iter().enumerate() {
            let row_logits = &values[row * vocab..(row + 1) * vocab];
            let tok = pick(row_logits, cfg, &mut rngs[p]);
            if cfg.stop_tokens.contains(&tok) {
                continue;
            }
            outputs[p].push(tok);
            if outputs[p].len() < cfg.max_new_tokens {
                keep.push(row);
                next.push(tok);
            }
        }
        if keep.is_empty() {
            return Ok(outputs);
        }
        if keep.len() < active.len() {
            session.select_rows(&keep);
            active = keep.iter().map(|&r| active[r]).collect();
        }
        values = session.step(&next)?;
    }
}

/// Decoding on any backend with burn tensors: a right-padded cache with masked slots.
struct BurnSession<'m, B: Backend> {
    model: &'m Llama<B>,
    cache: KvCache<B>,
    /// Per row: which cache slots hold real tokens.
    key_valid: Vec<Vec<bool>>,
    /// Per row: the position of its next token.
    positions: Vec<usize>,
    /// Cache slots used so far (the same for every row).
    slots: usize,
}

impl<'m, B: Backend> BurnSession<'m, B> {
    /// Run the right-padded prompts; the logits at each prompt's last token.
    fn prefill(model: &'m Llama<B>, prompts: &[Vec<u32>]) -> Result<(Self, Vec<f32>)> {
        let config = model.config();
        let device = model.device();
        let t0 = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(prompts.len() * t0);
        for p in prompts {
            ids.extend_from_slice(p);
            ids.extend(std::iter::repeat_n(0, t0 - p.len()));
        }
        let positions: Vec<usize> = (0..t0).collect();
        let rope = Rope::new(config, &positions, 1, t0, &device);
        let key_valid: Vec<Vec<bool>> = prompts
            .iter()
            .map(|p| (0..t0).map(|j| j < p.len()).collect())
            .collect();
        let bias = attention_bias(&key_valid, 0, t0, config.groups(), &device);
        let mut cache = KvCache::new(config.num_hidden_layers);
        let last = LogitRows::Positions(prompts.iter().map(|p| p.len() - 1).collect());
        let step = Step {
            ids: &ids,
            batch: prompts.len(),
            len: t0,
            rope: &rope,
            bias: &bias,
        };
        let logits = model
            .run(step, Some(&mut cache), &HiddenSelect::None, false, last)
            .logits;
        let session = BurnSession {
            model,
            cache,
            key_valid,
            positions: prompts.iter().map(Vec::len).collect(),
            slots: t0,
        };
        Ok((session, host_logits(logits)?))
    }
}

impl<B: Backend> Session for BurnSession<'_, B> {
    fn select_rows(&mut self, rows: &[usize]) {
        self.cache.select_rows(rows, &self.model.device());
        self.key_valid = rows
            .iter()
            .map(|&r| std::mem::take(&mut self.key_valid[r]))
            .collect();
        self.positions = rows.iter().map(|&r| self.positions[r]).collect();
    }

    fn step(&mut self, next: &[u32]) -> Result<Vec<f32>> {
        // Each row's new token sits in cache slot `slots` at its own position.
        let config = self.model.config();
        let device = self.model.device();
        for v in &mut self.key_valid {
            v.push(true);
        }
        let rows = next.len();
        let rope = Rope::new(config, &self.positions, rows, 1, &device);
        let bias = attention_bias(&self.key_valid, self.slots, 1, config.groups(), &device);
        let step = Step {
            ids: next,
            batch: rows,
            len: 1,
            rope: &rope,
            bias: &bias,
        };
        let logits = self
            .model
            .run(
                step,
                Some(&mut self.cache),
                &HiddenSelect::None,
                false,
                LogitRows::All,
            )
            .logits;
        self.slots += 1;
        for p in &mut self.positions {
            *p += 1;
        }
        host_logits(logits)
    }
}

fn host_logits<B: Backend>(logits: Option<burn::tensor::Tensor<B, 3>>) -> Result<Vec<f32>> {
    match logits {
        Some(l) => Ok(super::host::HostTensor::from_tensor(l).data),
        None => Err(Error::Internal("generation step returned no logits".into())),
    }
}

fn validate(cfg: &GenerateConfig) -> Result<()> {
    if !cfg.temperature.is_finite() || cfg.temperature < 0.0 {
        return Err(Error::invalid(
            "temperature",
            format!("{} (expected a number ≥ 0)", cfg.temperature),
        ));
    }
    if !(cfg.top_p > 0.0 && cfg.top_p <= 1.0) {
        return Err(Error::invalid(
            "top_p",
            format!("{} (expected 0 < top_p ≤ 1)", cfg.top_p),
        ));
    }
    Ok(())
}

/// Choose the next token from one row of logits.
fn pick(logits: &[f32], cfg: &GenerateConfig, rng: &mut Rng) -> u32 {
    if cfg.temperature == 0.0 {
        return argmax(logits);
    }
    let t = cfg.temperature as f64;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let weights: Vec<f64> = logits
        .iter()
        .map(|&x| ((x as f64 - max) / t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    let mut kept = 0.0;
    let mut cut = order.len();
    for (n, &i) in order.iter().enumerate() {
        kept += weights[i];
        if kept >= cfg.top_p as f64 * total {
            cut = n + 1;
            break;
        }
    }
    let mut u = rng.random::<f64>() * kept;
    for &i in &order[..cut] {
        u -= weights[i];
        if u < 0.0 {
            return i as u32;
        }
    }
    order[cut - 1] as u32
}

/// Index of the largest value (the lowest index on ties).
pub(crate) fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_p_keeps_the_nucleus_only() {
        // Probabilities ≈ [0.64, 0.24, 0.09, 0.03]: top_p 0.6 keeps only token 0.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let cfg = GenerateConfig {
            temperature: 1.0,
            top_p: 0.6,
            ..Default::default()
        };
        let mut r = rng(1, "t");
        assert!((0..200).all(|_| pick(&logits, &cfg, &mut r) == 0));
        let cfg = GenerateConfig {
            temperature: 1.0,
            top_p: 0.85,
            ..Default::default()
        };
        let seen: std::collections::BTreeSet<u32> =
            (0..500).map(|_| pick(&logits, &cfg, &mut r)).collect();
        assert_eq!(seen, [0, 1].into());
    }

    #[test]
    fn greedy_takes_first_maximum() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
        let cfg = GenerateConfig::default();
        assert_eq!(pick(&[0.5, -1.0, 3.0], &cfg, &mut rng(0, "t")), 2);
    }

    #[test]
    fn rejects_bad_sampling_settings() {
        let bad = GenerateConfig {
            top_p: 0.0,
            ..Default::default()
        };
        assert!(validate(&bad).unwrap_err().to_string().contains("top_p"));
        let bad = GenerateConfig {
            temperature: -1.0,
            ..Default::default()
        };
        assert!(
            validate(&bad)
                .unwrap_err()
                .to_string()
                .contains("temperature")
        );
    }
}
