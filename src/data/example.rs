//! The one data model every reader produces and every later layer consumes.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The ability a source trains or a benchmark judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ability {
    Math,
    Code,
    General,
}

impl Ability {
    pub const ALL: [Ability; 3] = [Ability::Math, Ability::Code, Ability::General];
    pub fn as_str(self) -> &'static str {
        match self {
            Ability::Math => "math",
            Ability::Code => "code",
            Ability::General => "general",
        }
    }
}

impl fmt::Display for Ability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Ability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "math" => Ok(Ability::Math),
            "code" => Ok(Ability::Code),
            "general" => Ok(Ability::General),
            other => Err(format!(
                "unknown ability {other:?} (expected math, code or general)"
            )),
        }
    }
}

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

impl Turn {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Turn {
            role,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Turn::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Turn::new(Role::Assistant, content)
    }
    pub fn system(content: impl Into<String>) -> Self {
        Turn::new(Role::System, content)
    }
}

/// Optional per-example metadata used by evaluation and probes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Reference answer: the GSM8K number after `####`, an MT-Bench reference, a canonical solution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Test code (HumanEval `test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<String>,
    /// HumanEval entry point (function name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<String>,
    /// Benchmark category (MT-Bench `category`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Free-form labels (e.g. a synthetic general conversation flagged "code" or "math").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// One training or evaluation example: an id, its ability, the turns, and metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// Stable id, unique within its source file (e.g. `gsm8k-train-12`, a ShareGPT id).
    pub id: String,
    pub ability: Ability,
    pub turns: Vec<Turn>,
    #[serde(default)]
    pub meta: Meta,
}

impl Example {
    /// The first user turn (the "query" the paper's probes encode).
    pub fn first_user(&self) -> Option<&str> {
        self.turns
            .iter()
            .find(|t| t.role == Role::User)
            .map(|t| t.content.as_str())
    }
    /// Number of assistant turns.
    pub fn assistant_turns(&self) -> usize {
        self.turns
            .iter()
            .filter(|t| t.role == Role::Assistant)
            .count()
    }
}
