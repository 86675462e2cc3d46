//! Chat templates: how an [`Example`]'s turns become one training sequence, as a list of text
//! segments flagged assistant / not assistant (the loss mask is built from the flags), and how a
//! generation prompt is rendered.
//!
//! - `vicuna_v1.1` (the default, FastChat's template used by the paper): sep_style ADD_COLON_TWO,
//!   sep `" "`, sep2 `"</s>"`:
//!   `SYSTEM USER: u1 ASSISTANT: a1</s>USER: u2 ASSISTANT: a2</s>`; a generation prompt ends with
//!   `ASSISTANT:`. An example's own system turn replaces the default system prompt.
//! - `chatml` (SmolLM2 / Qwen): `<|im_start|>role\ncontent<|im_end|>\n` per turn; when the first
//!   turn is not a system turn, SmolLM2's default system prompt comes first (exactly as its
//!   `chat_template.jinja`); generation prompt `<|im_start|>assistant\n`.
//! - `plain`: a minimal format for from-scratch models: every user (or system) turn is its text
//!   followed by `\n`, every assistant turn its text followed by `</s>`:
//!   `u1\na1</s>u2\na2</s>`; a generation prompt is the rendered turns (ending in `\n`).
//!
//! The assistant segment holds exactly what the model must learn to produce after the prompt:
//! for vicuna `" " + content + "</s>"` (the space after `ASSISTANT:` belongs to the answer, as
//! in FastChat, whose generation prompt ends with `ASSISTANT:` and whose masked targets start at
//! the answer's first word piece `▁word`), for chatml `content + "<|im_end|>"`, for plain
//! `content + "</s>"`.
use crate::data::example::{Example, Role, Turn};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// FastChat's vicuna_v1.1 system prompt.
pub const VICUNA_SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. \
The assistant gives helpful, detailed, and polite answers to the user's questions.";

/// SmolLM2's default ChatML system prompt (from its chat_template.jinja).
pub const CHATML_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// One piece of a rendered conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    /// True for the assistant's answer and its end-of-turn marker (the trained tokens).
    pub assistant: bool,
}

/// A chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ChatTemplate {
    /// FastChat `vicuna_v1.1` (the paper's template).
    #[default]
    #[serde(rename = "vicuna_v1.1")]
    VicunaV11,
    /// ChatML as in SmolLM2-Instruct.
    #[serde(rename = "chatml")]
    ChatMl,
    /// Minimal: `user\nassistant</s>`.
    #[serde(rename = "plain")]
    Plain,
}

impl ChatTemplate {
    /// Every template.
    pub const ALL: [ChatTemplate; 3] = [
        ChatTemplate::VicunaV11,
        ChatTemplate::ChatMl,
        ChatTemplate::Plain,
    ];

    /// Parse a template name: `vicuna_v1.1` (also `vicuna`), `chatml`, `plain`.
    pub fn from_name(s: &str) -> Result<ChatTemplate> {
        match s.trim().to_ascii_lowercase().as_str() {
            "vicuna_v1.1" | "vicuna" => Ok(ChatTemplate::VicunaV11),
            "chatml" => Ok(ChatTemplate::ChatMl),
            "plain" => Ok(ChatTemplate::Plain),
            _ => Err(Error::invalid(
                "template",
                format!("unknown chat template {s:?} (expected vicuna_v1.1, chatml or plain)"),
            )),
        }
    }

    /// The canonical name.
    pub fn name(&self) -> &'static str {
        match self {
            ChatTemplate::VicunaV11 => "vicuna_v1.1",
            ChatTemplate::ChatMl => "chatml",
            ChatTemplate::Plain => "plain",
        }
    }

    /// The text that ends an assistant turn (trained on, like the answer).
    pub fn end_of_turn(&self) -> &'static str {
        match self {
            ChatTemplate::VicunaV11 | ChatTemplate::Plain => "</s>",
            ChatTemplate::ChatMl => "<|im_end|>",
        }
    }

    /// The special tokens a tokenizer for this template needs (for BPE training).
    pub fn special_tokens(&self) -> &'static [&'static str] {
        match self {
            ChatTemplate::VicunaV11 | ChatTemplate::Plain => &["<s>", "</s>", "<unk>", "<pad>"],
            ChatTemplate::ChatMl => &["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"],
        }
    }

    /// Render turns as segments; concatenated they are the training text.
    pub fn render(&self, turns: &[Turn]) -> Vec<Segment> {
        let mut out = Renderer::default();
        match self {
            ChatTemplate::VicunaV11 => {
                let (system, rest) = split_system(turns);
                out.push(system.unwrap_or(VICUNA_SYSTEM), false);
                out.push(" ", false);
                for t in rest {
                    match t.role {
                        Role::Assistant => {
                            out.push("ASSISTANT:", false);
                            out.push(&format!(" {}</s>", t.content), true);
                        }
                        // A system turn after the start (not produced by the readers) is
                        // rendered like a user turn so nothing is lost.
                        Role::User | Role::System => {
                            out.push(&format!("USER: {} ", t.content), false);
                        }
                    }
                }
            }
            ChatTemplate::ChatMl => {
                if turns.first().is_none_or(|t| t.role != Role::System) {
                    out.push(
                        &format!("<|im_start|>system\n{CHATML_SYSTEM}<|im_end|>\n"),
                        false,
                    );
                }
                for t in turns {
                    let role = match t.role {
                        Role::System => "system",
                        Role::User => "user",
                        Role::Assistant => "assistant",
                    };
                    if t.role == Role::Assistant {
                        out.push("<|im_start|>assistant\n", false);
                        out.push(&format!("{}<|im_end|>", t.content), true);
                        out.push("\n", false);
                    } else {
                        out.push(
                            &format!("<|im_start|>{role}\n{}<|im_end|>\n", t.content),
                            false,
                        );
                    }
                }
            }
            ChatTemplate::Plain => {
                for t in turns {
                    if t.role == Role::Assistant {
                        out.push(&format!("{}</s>", t.content), true);
                    } else {
                        out.push(&format!("{}\n", t.content), false);
                    }
                }
            }
        }
        out.segments
    }

    /// Render an example (its turns) as segments.
    pub fn render_example(&self, example: &Example) -> Vec<Segment> {
        self.render(&example.turns)
    }

    /// The whole training text of some turns.
    pub fn render_text(&self, turns: &[Turn]) -> String {
        self.render(turns).into_iter().map(|s| s.text).collect()
    }

    /// A generation prompt: the turns (normally ending with a user turn) followed by the
    /// template's assistant prefix (`ASSISTANT:`, `<|im_start|>assistant\n`, or nothing for plain).
    pub fn render_prompt(&self, turns: &[Turn]) -> String {
        self.render_prompt_segments(turns)
            .into_iter()
            .map(|s| s.text)
            .collect()
    }

    /// [`ChatTemplate::render_prompt`] as segments: the prefix joins the last prompt segment,
    /// exactly as it does in a rendered training example.
    pub fn render_prompt_segments(&self, turns: &[Turn]) -> Vec<Segment> {
        let mut out = Renderer {
            segments: self.render(turns),
        };
        match self {
            ChatTemplate::VicunaV11 => out.push("ASSISTANT:", false),
            ChatTemplate::ChatMl => out.push("<|im_start|>assistant\n", false),
            ChatTemplate::Plain => {}
        }
        out.segments
    }
}

impl fmt::Display for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ChatTemplate {
    type Err = Error;
    fn from_str(s: &str) -> Result<ChatTemplate> {
        ChatTemplate::from_name(s)
    }
}

/// The leading system turn's text, if any, and the other turns.
fn split_system(turns: &[Turn]) -> (Option<&str>, &[Turn]) {
    match turns.split_first() {
        Some((t, rest)) if t.role == Role::System => (Some(t.content.as_str()), rest),
        _ => (None, turns),
    }
}

/// Builds segments, merging adjacent pieces with the same flag.
#[derive(Default)]
struct Renderer {
    segments: Vec<Segment>,
}

impl Renderer {
    fn push(&mut self, text: &str, assistant: bool) {
        match self.segments.last_mut() {
            Some(last) if last.assistant == assistant => last.text.push_str(text),
            _ => self.segments.push(Segment {
                text: text.to_string(),
                assistant,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_turns() -> Vec<Turn> {
        vec![
            Turn::user("u1"),
            Turn::assistant("a1"),
            Turn::user("u2"),
            Turn::assistant("a2"),
        ]
    }

    #[test]
    fn vicuna_matches_fastchat() {
        let t = ChatTemplate::VicunaV11;
        assert_eq!(
            t.render_text(&two_turns()),
            format!("{VICUNA_SYSTEM} USER: u1 ASSISTANT: a1</s>USER: u2 ASSISTANT: a2</s>")
        );
        let asst: Vec<_> = t
            .render(&two_turns())
            .into_iter()
            .filter(|s| s.assistant)
            .map(|s| s.text)
            .collect();
        assert_eq!(asst, [" a1</s>", " a2</s>"]);
        assert_eq!(
            t.render_prompt(&[Turn::system("S"), Turn::user("q")]),
            "S USER: q ASSISTANT:"
        );
    }

    #[test]
    fn chatml_matches_smollm2_jinja() {
        let t = ChatTemplate::ChatMl;
        assert_eq!(
            t.render_prompt(&[Turn::user("hi")]),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render_text(&[Turn::system("S"), Turn::user("q"), Turn::assistant("a")]),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n"
        );
        let asst: Vec<_> = t
            .render(&two_turns())
            .into_iter()
            .filter(|s| s.assistant)
            .map(|s| s.text)
            .collect();
        assert_eq!(asst, ["a1<|im_end|>", "a2<|im_end|>"]);
    }

    #[test]
    fn plain_format() {
        let t = ChatTemplate::Plain;
        assert_eq!(t.render_text(&two_turns()), "u1\na1</s>u2\na2</s>");
        assert_eq!(t.render_prompt(&[Turn::user("q")]), "q\n");
    }

    #[test]
    fn names() {
        for t in ChatTemplate::ALL {
            assert_eq!(ChatTemplate::from_name(t.name()).unwrap(), t);
        }
        assert!(ChatTemplate::from_name("llama2").is_err());
    }
}
