//! The recipe file (TOML): sources, and either explicit stages or a strategy shortcut.
//!
//! ```toml
//! name = "dmt-k256"            # optional; default: the file stem
//! description = "…"            # optional
//! seed = 42                    # optional; default 42 (`--seed` overrides)
//! holdout = 200                # optional; held-out examples per source (default 200)
//! epochs = 3                   # optional; epochs of every stage that names none (default 3)
//!
//! [sources.math]               # a source: its name is the table key
//! path = "gsm8k/train.jsonl"   # relative to --data-dir
//! format = "gsm8k"             # optional; inferred from the file otherwise
//! holdout = 200                # optional; overrides the recipe's holdout for this source
//! ablate = ["code", "math"]    # optional; drop conversations the detector flags (ShareGPT)
//!
//! [strategy]                   # EITHER a strategy shortcut …
//! kind = "dmt"
//! k = "1/256"
//!
//! [[stages]]                   # … OR explicit stages, in training order
//! name = "specialized"
//! epochs = 3
//! mix = { math = "1", code = "1/4", general = 500 }
//! ```
//!
//! Strategy shortcuts (sources named `math`, `code`, `general` where a strategy needs them):
//! - `single { source, amount = "1" }`: one stage with one source;
//! - `mixed { amount = "1" }` (alias `multi_task`): one stage with every source at `amount`;
//! - `sequential { amount = "1" }`: stages `code`, `math`, `general`;
//! - `mixed_sequential { amount = "1" }`: stages `code-math`, `general`;
//! - `dmt { k }`: stage `specialized` (all math + all code), then `general-replay` (all general
//!   plus `k` of math and of code, replayed from the same pool as stage 1);
//! - `ratio { specialized, general }` (RQ3): one stage `mixed` with math and code at
//!   `specialized` and general at `general`.
use crate::data::ablate::Category;
use crate::data::read::Format;
use crate::error::{Error, Result};
use crate::recipe::amount::Amount;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Default seed when a recipe names none.
pub const DEFAULT_SEED: u64 = 42;
/// Default number of held-out examples per source.
pub const DEFAULT_HOLDOUT: usize = 200;
/// Default epochs per stage (the paper's 3).
pub const DEFAULT_EPOCHS: u32 = 3;

/// A validated recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The file it was read from.
    pub path: PathBuf,
    /// The file's text (kept for the manifest).
    pub text: String,
    /// `name`, or the file stem.
    pub name: String,
    pub description: Option<String>,
    pub seed: u64,
    /// The strategy shortcut the stages came from, if any.
    pub strategy: Option<Strategy>,
    /// Sources by name.
    pub sources: BTreeMap<String, SourceSpec>,
    /// Stages in training order (at least one).
    pub stages: Vec<Stage>,
}

/// One source of a recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// Path relative to the data directory.
    pub path: PathBuf,
    /// The input format, or None to infer it.
    pub format: Option<Format>,
    /// Examples held out for evaluation (taken from the end of the permutation).
    pub holdout: usize,
    /// Categories the ablation detector removes before sampling.
    pub ablate: Vec<Category>,
}

/// One training stage: a mixture of sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub epochs: u32,
    /// Amount per source name.
    pub mix: BTreeMap<String, Amount>,
}

/// A strategy shortcut that expands to stages.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Single {
        source: String,
        amount: Amount,
    },
    Mixed {
        amount: Amount,
    },
    Sequential {
        amount: Amount,
    },
    MixedSequential {
        amount: Amount,
    },
    Dmt {
        k: Amount,
    },
    Ratio {
        specialized: Amount,
        general: Amount,
    },
}

impl Strategy {
    /// The shortcut's name as written in recipes.
    pub fn kind(&self) -> &'static str {
        match self {
            Strategy::Single { .. } => "single",
            Strategy::Mixed { .. } => "mixed",
            Strategy::Sequential { .. } => "sequential",
            Strategy::MixedSequential { .. } => "mixed_sequential",
            Strategy::Dmt { .. } => "dmt",
            Strategy::Ratio { .. } => "ratio",
        }
    }

    /// A one-line description, e.g. `dmt (k = 1/256)`.
    pub fn describe(&self) -> String {
        match self {
            Strategy::Single { source, amount } => format!("single ({source} at {amount})"),
            Strategy::Mixed { amount }
            | Strategy::Sequential { amount }
            | Strategy::MixedSequential { amount } => {
                format!("{} (each source at {amount})", self.kind())
            }
            Strategy::Dmt { k } => format!("dmt (k = {k})"),
            Strategy::Ratio {
                specialized,
                general,
            } => {
                format!("ratio (math and code at {specialized}, general at {general})")
            }
        }
    }

    /// Expand to stages over the recipe's `sources`; an error names a missing source.
    pub fn stages(&self, sources: &[&String], epochs: u32) -> Result<Vec<Stage>, String> {
        let known = sources;
        let need = |names: &[&str]| -> Result<(), String> {
            let missing: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| !known.iter().any(|k| k.as_str() == *n))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "kind = {:?} needs sources named {}; missing: {} (declared: {})",
                    self.kind(),
                    names.join(", "),
                    missing.join(", "),
                    join_or_none(known)
                ))
            }
        };
        let stage = |name: &str, mix: &[(&str, Amount)]| Stage {
            name: name.to_string(),
            epochs,
            mix: mix.iter().map(|(s, a)| (s.to_string(), *a)).collect(),
        };
        Ok(match self {
            Strategy::Single { source, amount } => {
                if !known.contains(&source) {
                    return Err(format!(
                        "source = {source:?} is not a declared source (declared: {})",
                        join_or_none(known)
                    ));
                }
                vec![stage(source, &[(source, *amount)])]
            }
            Strategy::Mixed { amount } => {
                if known.is_empty() {
                    return Err("kind = \"mixed\" needs at least one source".into());
                }
                let mix: Vec<(&str, Amount)> =
                    known.iter().map(|s| (s.as_str(), *amount)).collect();
                vec![stage("mixed", &mix)]
            }
            Strategy::Sequential { amount } => {
                need(&["code", "math", "general"])?;
                vec![
                    stage("code", &[("code", *amount)]),
                    stage("math", &[("math", *amount)]),
                    stage("general", &[("general", *amount)]),
                ]
            }
            Strategy::MixedSequential { amount } => {
                need(&["code", "math", "general"])?;
                vec![
                    stage("code-math", &[("code", *amount), ("math", *amount)]),
                    stage("general", &[("general", *amount)]),
                ]
            }
            Strategy::Dmt { k } => {
                need(&["math", "code", "general"])?;
                vec![
                    stage(
                        "specialized",
                        &[("math", Amount::ALL), ("code", Amount::ALL)],
                    ),
                    stage(
                        "general-replay",
                        &[("general", Amount::ALL), ("math", *k), ("code", *k)],
                    ),
                ]
            }
            Strategy::Ratio {
                specialized,
                general,
            } => {
                need(&["math", "code", "general"])?;
                vec![stage(
                    "mixed",
                    &[
                        ("math", *specialized),
                        ("code", *specialized),
                        ("general", *general),
                    ],
                )]
            }
        })
    }
}

fn join_or_none(names: &[&String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

// ---- the file as written -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    name: Option<String>,
    description: Option<String>,
    seed: Option<u64>,
    holdout: Option<usize>,
    epochs: Option<u32>,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
    strategy: Option<RawStrategy>,
    stages: Option<Vec<RawStage>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    path: PathBuf,
    format: Option<String>,
    holdout: Option<usize>,
    #[serde(default)]
    ablate: Vec<String>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawStrategy {
    Single {
        source: String,
        amount: Option<toml::Value>,
    },
    #[serde(alias = "multi_task", alias = "multitask")]
    Mixed {
        amount: Option<toml::Value>,
    },
    Sequential {
        amount: Option<toml::Value>,
    },
    MixedSequential {
        amount: Option<toml::Value>,
    },
    Dmt {
        k: toml::Value,
    },
    Ratio {
        specialized: toml::Value,
        general: toml::Value,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    epochs: Option<u32>,
    #[serde(default)]
    mix: BTreeMap<String, toml::Value>,
}

/// True for names usable in file names: ASCII letters, digits, `-`, `_`, `.`, `+`.
fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
}

impl Recipe {
    /// Read and validate a recipe file.
    pub fn load(path: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Recipe::parse(&text, path)
    }

    /// Validate recipe `text`; errors name `path` and the offending key.
    pub fn parse(text: &str, path: &Path) -> Result<Recipe> {
        let err = |msg: String| Error::config(path, msg);
        let raw: RawRecipe =
            toml::from_str(text).map_err(|e| err(format!("invalid recipe: {e}")))?;
        let holdout = raw.holdout.unwrap_or(DEFAULT_HOLDOUT);
        let epochs = raw.epochs.unwrap_or(DEFAULT_EPOCHS);
        if epochs == 0 {
            return Err(err("epochs: must be at least 1".into()));
        }
        if raw.sources.is_empty() {
            return Err(err("sources: no sources declared; add e.g. [sources.math] path = \"gsm8k/train.jsonl\"".into()));
        }
        let mut sources = BTreeMap::new();
        for (name, s) in raw.sources {
            let key = format!("sources.{name}");
            if !safe_name(&name) {
                return Err(err(format!(
                    "{key}: a source name may use only letters, digits, '-', '_', '.', '+'"
                )));
            }
            if s.path.as_os_str().is_empty() || s.path.is_absolute() {
                return Err(err(format!(
                    "{key}.path: must be a path relative to --data-dir"
                )));
            }
            let format = match &s.format {
                None => None,
                Some(f) => {
                    Some(Format::from_name(f).map_err(|e| err(format!("{key}.format: {e}")))?)
                }
            };
            let mut ablate = Vec::new();
            for c in &s.ablate {
                let cat: Category = c.parse().map_err(|e| {
                    err(format!(
                        "{key}.ablate: {c:?}: {e} (expected \"code\" or \"math\")"
                    ))
                })?;
                if !ablate.contains(&cat) {
                    ablate.push(cat);
                }
            }
            let spec = SourceSpec {
                path: s.path,
                format,
                holdout: s.holdout.unwrap_or(holdout),
                ablate,
            };
            sources.insert(name, spec);
        }
        let amount = |key: &str, v: Option<&toml::Value>| -> Result<Amount> {
            match v {
                None => Ok(Amount::ALL),
                Some(v) => Amount::from_toml(v).map_err(|e| err(format!("{key}: {e}"))),
            }
        };
        let strategy = match &raw.strategy {
            None => None,
            Some(s) => Some(match s {
                RawStrategy::Single { source, amount: a } => Strategy::Single {
                    source: source.clone(),
                    amount: amount("strategy.amount", a.as_ref())?,
                },
                RawStrategy::Mixed { amount: a } => Strategy::Mixed {
                    amount: amount("strategy.amount", a.as_ref())?,
                },
                RawStrategy::Sequential { amount: a } => Strategy::Sequential {
                    amount: amount("strategy.amount", a.as_ref())?,
                },
                RawStrategy::MixedSequential { amount: a } => Strategy::MixedSequential {
                    amount: amount("strategy.amount", a.as_ref())?,
                },
                RawStrategy::Dmt { k } => Strategy::Dmt {
                    k: amount("strategy.k", Some(k))?,
                },
                RawStrategy::Ratio {
                    specialized,
                    general,
                } => Strategy::Ratio {
                    specialized: amount("strategy.specialized", Some(specialized))?,
                    general: amount("strategy.general", Some(general))?,
                },
            }),
        };
        let stages = match (&strategy, raw.stages) {
            (Some(_), Some(_)) => {
                return Err(err("strategy and stages: give either a [strategy] shortcut or [[stages]], not both".into()));
            }
            (None, None) => {
                return Err(err(
                    "stages: no stages; add [[stages]] entries or a [strategy] shortcut".into(),
                ));
            }
            (None, Some(raw_stages)) if raw_stages.is_empty() => {
                return Err(err(
                    "stages: no stages; add [[stages]] entries or a [strategy] shortcut".into(),
                ));
            }
            (Some(s), None) => s
                .stages(&sources.keys().collect::<Vec<_>>(), epochs)
                .map_err(|e| err(format!("strategy: {e}")))?,
            (None, Some(raw_stages)) => {
                let mut stages = Vec::with_capacity(raw_stages.len());
                for (i, st) in raw_stages.into_iter().enumerate() {
                    let key = format!("stages[{i}] ({:?})", st.name);
                    if !safe_name(&st.name) {
                        return Err(err(format!(
                            "{key}.name: a stage name may use only letters, digits, '-', '_', '.', '+'"
                        )));
                    }
                    if st.mix.is_empty() {
                        return Err(err(format!("{key}.mix: empty; name at least one source")));
                    }
                    let stage_epochs = st.epochs.unwrap_or(epochs);
                    if stage_epochs == 0 {
                        return Err(err(format!("{key}.epochs: must be at least 1")));
                    }
                    let mut mix = BTreeMap::new();
                    for (src, v) in &st.mix {
                        if !sources.contains_key(src) {
                            return Err(err(format!(
                                "{key}.mix.{src}: unknown source (declared: {})",
                                sources.keys().cloned().collect::<Vec<_>>().join(", ")
                            )));
                        }
                        mix.insert(src.clone(), amount(&format!("{key}.mix.{src}"), Some(v))?);
                    }
                    stages.push(Stage {
                        name: st.name,
                        epochs: stage_epochs,
                        mix,
                    });
                }
                stages
            }
        };
        for (i, s) in stages.iter().enumerate() {
            if stages[..i].iter().any(|t| t.name == s.name) {
                return Err(err(format!(
                    "stages[{i}].name: duplicate stage name {:?}",
                    s.name
                )));
            }
        }
        let name = match raw.name {
            Some(n) if !safe_name(&n) => {
                return Err(err(
                    "name: may use only letters, digits, '-', '_', '.', '+'".into(),
                ));
            }
            Some(n) => n,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| safe_name(s))
                .unwrap_or_else(|| "recipe".into()),
        };
        Ok(Recipe {
            path: path.to_path_buf(),
            text: text.to_string(),
            name,
            description: raw.description,
            seed: raw.seed.unwrap_or(DEFAULT_SEED),
            strategy,
            sources,
            stages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::amount::Fraction;

    const SOURCES: &str = r#"
[sources.math]
path = "gsm8k/train.jsonl"
[sources.code]
path = "codealpaca/code_alpaca_20k.json"
[sources.general]
path = "sharegpt/sharegpt_v3_subset_10k.jsonl.gz"
"#;

    fn parse(body: &str) -> Result<Recipe> {
        Recipe::parse(&format!("{body}\n{SOURCES}"), Path::new("r.toml"))
    }

    fn plan(r: &Recipe) -> Vec<(String, Vec<(String, String)>)> {
        r.stages
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.mix
                        .iter()
                        .map(|(k, a)| (k.clone(), a.to_string()))
                        .collect(),
                )
            })
            .collect()
    }

    fn p(stages: &[(&str, &[(&str, &str)])]) -> Vec<(String, Vec<(String, String)>)> {
        stages
            .iter()
            .map(|(n, m)| {
                (
                    n.to_string(),
                    m.iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn strategies_expand_to_the_papers_stages() {
        let r = parse("[strategy]\nkind = \"sequential\"").unwrap();
        assert_eq!(
            plan(&r),
            p(&[
                ("code", &[("code", "1")]),
                ("math", &[("math", "1")]),
                ("general", &[("general", "1")])
            ])
        );
        let r = parse("[strategy]\nkind = \"mixed_sequential\"").unwrap();
        assert_eq!(
            plan(&r),
            p(&[
                ("code-math", &[("code", "1"), ("math", "1")]),
                ("general", &[("general", "1")])
            ])
        );
        let r = parse("[strategy]\nkind = \"dmt\"\nk = \"1/256\"").unwrap();
        assert_eq!(
            plan(&r),
            p(&[
                ("specialized", &[("code", "1"), ("math", "1")]),
                (
                    "general-replay",
                    &[("code", "1/256"), ("general", "1"), ("math", "1/256")]
                ),
            ])
        );
        let r = parse("[strategy]\nkind = \"multi_task\"\namount = \"1/4\"").unwrap();
        assert_eq!(
            plan(&r),
            p(&[(
                "mixed",
                &[("code", "1/4"), ("general", "1/4"), ("math", "1/4")]
            )])
        );
        let r =
            parse("[strategy]\nkind = \"single\"\nsource = \"code\"\namount = \"1/64\"").unwrap();
        assert_eq!(plan(&r), p(&[("code", &[("code", "1/64")])]));
        let r = parse("[strategy]\nkind = \"ratio\"\nspecialized = \"1/16\"\ngeneral = \"1/64\"")
            .unwrap();
        assert_eq!(
            plan(&r),
            p(&[(
                "mixed",
                &[("code", "1/16"), ("general", "1/64"), ("math", "1/16")]
            )])
        );
        assert!(r.stages.iter().all(|s| s.epochs == DEFAULT_EPOCHS));
        assert_eq!(r.seed, DEFAULT_SEED);
        assert_eq!(r.name, "r");
    }

    #[test]
    fn explicit_stages_with_counts_and_defaults() {
        let r = parse(
            "name = \"x\"\nseed = 7\nepochs = 2\nholdout = 10\n\
             [[stages]]\nname = \"a\"\nmix = { math = 500, code = 0.25 }\n\
             [[stages]]\nname = \"b\"\nepochs = 1\nmix = { general = \"1/2\" }",
        )
        .unwrap();
        assert_eq!((r.name.as_str(), r.seed), ("x", 7));
        assert_eq!(r.stages[0].mix["math"], Amount::Count(500));
        assert_eq!(
            r.stages[0].mix["code"],
            Amount::Fraction(Fraction::parse("1/4").unwrap())
        );
        assert_eq!((r.stages[0].epochs, r.stages[1].epochs), (2, 1));
        assert!(r.sources.values().all(|s| s.holdout == 10));
    }

    #[test]
    fn bad_recipes_name_the_key() {
        let cases = [
            ("[strategy]\nkind = \"dmt\"\nk = \"3/2\"", "strategy.k"),
            ("[strategy]\nkind = \"dmt\"\nk = \"1/0\"", "zero"),
            ("[strategy]\nkind = \"bogus\"", "bogus"),
            (
                "[[stages]]\nname = \"a\"\nmix = { nope = \"1\" }",
                "mix.nope",
            ),
            (
                "[[stages]]\nname = \"a\"\nmix = { math = \"0\" }",
                "mix.math",
            ),
            ("[[stages]]\nname = \"a\"\nmix = { math = 0 }", "mix.math"),
            ("[[stages]]\nname = \"a\"\nmix = {}", "mix"),
            (
                "[[stages]]\nname = \"a\"\nmix = { math = \"1\" }\n[[stages]]\nname = \"a\"\nmix = { code = \"1\" }",
                "duplicate",
            ),
            ("frobnicate = 1", "frobnicate"),
            ("", "no stages"),
            ("stages = []", "no stages"),
            (
                "[strategy]\nkind = \"dmt\"\nk = \"1\"\n[[stages]]\nname = \"a\"\nmix = { math = \"1\" }",
                "not both",
            ),
            (
                "[strategy]\nkind = \"single\"\nsource = \"poetry\"",
                "poetry",
            ),
            (
                "[strategy]\nkind = \"dmt\"\nk = \"1/4\"\nextra = 1",
                "extra",
            ),
        ];
        for (body, needle) in cases {
            let e = parse(body).expect_err(body).to_string();
            assert!(e.starts_with("r.toml: "), "{e}");
            assert!(
                e.contains(needle),
                "{body:?}: {e:?} should mention {needle:?}"
            );
        }
        let only_math = Recipe::parse(
            "[sources.math]\npath = \"m.jsonl\"\n[strategy]\nkind = \"dmt\"\nk = \"1\"",
            Path::new("r.toml"),
        );
        assert!(
            only_math
                .unwrap_err()
                .to_string()
                .contains("missing: code, general")
        );
        let none = Recipe::parse("[strategy]\nkind = \"mixed\"", Path::new("r.toml"));
        assert!(none.unwrap_err().to_string().contains("no sources"));
    }
}
