//! An LLM judge behind an OpenAI-compatible chat-completions endpoint, and FastChat's rating
//! parser.
//!
//! One request per judgment: `POST {base_url}/chat/completions` with `{"model", "messages":
//! [system, user], "temperature": 0, "max_tokens": 2048}` (FastChat's judge settings) and, when a
//! key is given, `Authorization: Bearer <key>`. Transport errors, HTTP 429 and 5xx and replies
//! that are not chat-completion JSON are retried with exponential backoff; after the last attempt
//! the judgment is a counted HTTP failure (never dropped silently). Other 4xx statuses fail at
//! once (a wrong model name or key does not improve by retrying).
use regex::Regex;
use serde_json::{Value, json};
use std::sync::LazyLock;
use std::time::Duration;

/// Where and how to reach the judge.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    /// API root, e.g. `https://api.openai.com/v1` (`/chat/completions` is appended).
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    /// Attempts per judgment (at least 1).
    pub attempts: u32,
    /// Wait before the first retry; doubled after each.
    pub backoff: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// `max_tokens` of each request.
    pub max_tokens: usize,
}

impl JudgeConfig {
    /// A judge with FastChat's settings: 4 attempts from 1 s backoff, 120 s timeout, 2048 tokens.
    pub fn new(base_url: &str, model: &str, api_key: Option<String>) -> JudgeConfig {
        JudgeConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key,
            attempts: 4,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(120),
            max_tokens: 2048,
        }
    }
}

/// Why a judgment has no reply text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFailure {
    pub attempts: u32,
    /// The last attempt's error.
    pub message: String,
}

/// A client for one judge.
pub struct Judge {
    config: JudgeConfig,
    agent: ureq::Agent,
}

impl Judge {
    pub fn new(config: JudgeConfig) -> Judge {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Judge { config, agent }
    }

    pub fn config(&self) -> &JudgeConfig {
        &self.config
    }

    /// The judge's reply to one system + user prompt, with retries (see the module docs).
    pub fn complete(&self, system: &str, user: &str) -> Result<String, HttpFailure> {
        let url = format!("{}/chat/completions", self.config.base_url);
        let body = json!({
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": 0,
            "max_tokens": self.config.max_tokens,
        })
        .to_string();
        let attempts = self.config.attempts.max(1);
        let mut wait = self.config.backoff;
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.attempt(&url, &body) {
                Ok(text) => return Ok(text),
                Err((message, retry)) => {
                    last = message;
                    if !retry {
                        return Err(HttpFailure {
                            attempts: attempt,
                            message: last,
                        });
                    }
                }
            }
            if attempt < attempts {
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
            }
        }
        Err(HttpFailure {
            attempts,
            message: last,
        })
    }

    /// One request: the reply content, or an error message and whether to retry.
    fn attempt(&self, url: &str, body: &str) -> Result<String, (String, bool)> {
        let mut request = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        if let Some(key) = &self.config.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let mut response = request
            .send(body)
            .map_err(|e| (format!("request failed: {e}"), true))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| (format!("reading the response: {e}"), true))?;
        if !(200..300).contains(&status) {
            let retry = status == 429 || status >= 500;
            return Err((format!("HTTP {status}: {}", excerpt(&text)), retry));
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            (
                format!("response is not JSON ({e}): {}", excerpt(&text)),
                true,
            )
        })?;
        value
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                (
                    format!(
                        "response has no choices[0].message.content: {}",
                        excerpt(&text)
                    ),
                    true,
                )
            })
    }
}

fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(120).collect();
    if t.len() < text.len() { t + "…" } else { t }
}

static RATING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[\[(\d+\.?\d*)\]\]").expect("valid regex"));
static RATING_BACKUP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[(\d+\.?\d*)\]").expect("valid regex"));

/// FastChat's rating: the first `[[x]]`, else the first `[x]`; None when there is neither or
/// the number is outside 0–10.
pub fn parse_rating(judgment: &str) -> Option<f64> {
    let caps = RATING
        .captures(judgment)
        .or_else(|| RATING_BACKUP.captures(judgment))?;
    let x: f64 = caps.get(1)?.as_str().parse().ok()?;
    (0.0..=10.0).contains(&x).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fastchat_ratings() {
        assert_eq!(parse_rating("Good answer. Rating: [[8]]"), Some(8.0));
        assert_eq!(parse_rating("Rating: [[7.5]] and [[3]]"), Some(7.5));
        assert_eq!(parse_rating("rating [6]"), Some(6.0));
        assert_eq!(parse_rating("I give it an 8/10."), None);
        assert_eq!(parse_rating("[[42]]"), None);
    }
}
