//! Export a composition for an external trainer: LLaMA-Factory (ShareGPT-format JSON,
//! `dataset_info.json`, one training YAML per stage, a README), or plain Alpaca / ShareGPT JSON.
//!
//! The composition itself (native JSONL plus `manifest.json`) is written under `composed/` in
//! the export directory, so evaluation and probing can come back to the exact ids.
//!
//! LLaMA-Factory and Alpaca need strictly alternating `human`/`gpt` turns. Conversations are
//! normalized, and every change is counted in `export.json` and the README:
//! system turns move to the `system` field (joined by a blank line); consecutive turns of the
//! same speaker are joined by a blank line; leading assistant turns and a trailing user turn
//! are dropped; a conversation with no user→assistant pair left is dropped (its id is listed).
//! The plain `sharegpt` format writes turns unchanged.
use crate::data::{Example, Role};
use crate::error::Result;
use crate::recipe::compose::Composition;
use crate::util::{write_atomic, write_json};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::Path;

/// Placeholder base model written when `--base-model` is not given.
pub const PLACEHOLDER_MODEL: &str = "EDIT-ME/base-model-path-or-hub-id";

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// LLaMA-Factory: ShareGPT JSON + dataset_info.json + per-stage YAML + README.
    LlamaFactory,
    /// Plain Alpaca JSON (`instruction`, `input`, `output`, `system`, `history`).
    Alpaca,
    /// Plain ShareGPT JSON (`id`, `conversations` of `from`/`value`), turns unchanged.
    ShareGpt,
}

impl ExportFormat {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::LlamaFactory => "llamafactory",
            ExportFormat::Alpaca => "alpaca",
            ExportFormat::ShareGpt => "sharegpt",
        }
    }
}

/// Training settings written into the LLaMA-Factory YAML files.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSettings {
    /// Stage 1's `model_name_or_path`.
    pub base_model: String,
    /// LLaMA-Factory chat template name.
    pub template: String,
    pub cutoff_len: usize,
    pub learning_rate: f64,
    pub per_device_train_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    /// Directory under which each stage's `output_dir` is created (default `saves/<recipe>`).
    pub output_root: Option<String>,
}

impl Default for TrainSettings {
    /// The paper's settings (lr 2e-5, cosine, warmup 3%) with the vicuna template.
    fn default() -> Self {
        TrainSettings {
            base_model: PLACEHOLDER_MODEL.to_string(),
            template: "vicuna".to_string(),
            cutoff_len: 2048,
            learning_rate: 2e-5,
            per_device_train_batch_size: 4,
            gradient_accumulation_steps: 4,
            output_root: None,
        }
    }
}

/// What normalization did to one dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Normalization {
    pub examples_in: usize,
    pub examples_out: usize,
    pub system_turns_moved: usize,
    pub turns_merged: usize,
    pub leading_assistant_dropped: usize,
    pub trailing_user_dropped: usize,
    /// Ids of conversations dropped because no user→assistant pair remained.
    pub dropped_ids: Vec<String>,
}

/// One exported dataset file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportedDataset {
    /// Dataset name (the key in dataset_info.json).
    pub name: String,
    /// File name inside the export directory.
    pub file: String,
    /// `stage` or `heldout`.
    pub role: String,
    /// The stage or source it holds.
    pub of: String,
    pub normalization: Normalization,
}

/// What an export wrote (also saved as `export.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportReport {
    pub format: String,
    pub recipe: String,
    pub datasets: Vec<ExportedDataset>,
    /// Training YAML files in the order to run them (LLaMA-Factory only).
    pub configs: Vec<String>,
}

/// A conversation as strictly alternating (user, assistant) pairs plus a system prompt.
struct Pairs {
    system: Option<String>,
    pairs: Vec<(String, String)>,
}

fn normalize(ex: &Example, stats: &mut Normalization) -> Option<Pairs> {
    let mut system: Vec<&str> = Vec::new();
    let mut turns: Vec<(Role, String)> = Vec::new();
    for t in &ex.turns {
        match (t.role, turns.last_mut()) {
            (Role::System, _) => {
                system.push(&t.content);
                stats.system_turns_moved += 1;
            }
            (role, Some((last, text))) if *last == role => {
                text.push_str("\n\n");
                text.push_str(&t.content);
                stats.turns_merged += 1;
            }
            (role, _) => turns.push((role, t.content.clone())),
        }
    }
    if turns.first().is_some_and(|(r, _)| *r == Role::Assistant) {
        turns.remove(0);
        stats.leading_assistant_dropped += 1;
    }
    if turns.last().is_some_and(|(r, _)| *r == Role::User) {
        turns.pop();
        stats.trailing_user_dropped += 1;
    }
    let mut pairs = Vec::with_capacity(turns.len() / 2);
    let mut it = turns.into_iter();
    while let (Some((_, user)), Some((_, assistant))) = (it.next(), it.next()) {
        pairs.push((user, assistant));
    }
    if pairs.is_empty() {
        stats.dropped_ids.push(ex.id.clone());
        return None;
    }
    let system = if system.is_empty() {
        None
    } else {
        Some(system.join("\n\n"))
    };
    Some(Pairs { system, pairs })
}

fn record(ex: &Example, format: ExportFormat, stats: &mut Normalization) -> Option<Value> {
    match format {
        ExportFormat::ShareGpt => {
            let conversations: Vec<Value> = ex
                .turns
                .iter()
                .map(|t| {
                    let from = match t.role {
                        Role::System => "system",
                        Role::User => "human",
                        Role::Assistant => "gpt",
                    };
                    json!({"from": from, "value": t.content})
                })
                .collect();
            Some(json!({"id": ex.id, "conversations": conversations}))
        }
        ExportFormat::LlamaFactory => {
            let p = normalize(ex, stats)?;
            let mut conversations = Vec::with_capacity(2 * p.pairs.len());
            for (u, a) in p.pairs {
                conversations.push(json!({"from": "human", "value": u}));
                conversations.push(json!({"from": "gpt", "value": a}));
            }
            let mut obj = json!({"conversations": conversations});
            if let Some(s) = p.system {
                obj["system"] = Value::String(s);
            }
            Some(obj)
        }
        ExportFormat::Alpaca => {
            let mut p = normalize(ex, stats)?;
            let (instruction, output) = p.pairs.pop()?;
            let mut obj = json!({"instruction": instruction, "input": "", "output": output});
            if let Some(s) = p.system {
                obj["system"] = Value::String(s);
            }
            if !p.pairs.is_empty() {
                obj["history"] = json!(p.pairs.iter().map(|(u, a)| [u, a]).collect::<Vec<_>>());
            }
            Some(obj)
        }
    }
}

/// A JSON array with one record per line.
fn json_array(records: &[Value]) -> String {
    let mut s = String::from("[\n");
    for (i, r) in records.iter().enumerate() {
        s.push_str(&r.to_string());
        s.push_str(if i + 1 < records.len() { ",\n" } else { "\n" });
    }
    s.push_str("]\n");
    s
}

/// A YAML double-quoted scalar (a JSON string is one).
fn yq(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A float YAML 1.1 loaders read as a float (`2.0e-5`, not `2e-5`).
fn yaml_float(x: f64) -> String {
    let e = format!("{x:e}");
    match e.split_once('e') {
        Some((m, exp)) => {
            let m = if m.contains('.') {
                m.to_string()
            } else {
                format!("{m}.0")
            };
            let exp = if exp.starts_with('-') {
                exp.to_string()
            } else {
                format!("+{exp}")
            };
            format!("{m}e{exp}")
        }
        None => e,
    }
}

/// Export `comp` into `out` in `format`; see the module docs for the layout.
pub fn export(
    comp: &Composition,
    format: ExportFormat,
    settings: &TrainSettings,
    out: &Path,
) -> Result<ExportReport> {
    let m = &comp.manifest;
    comp.write(&out.join("composed"))?;
    let mut datasets = Vec::new();
    let mut write_dataset =
        |name: String, role: &str, of: &str, examples: &[Example]| -> Result<()> {
            let mut stats = Normalization {
                examples_in: examples.len(),
                ..Normalization::default()
            };
            let records: Vec<Value> = examples
                .iter()
                .filter_map(|ex| record(ex, format, &mut stats))
                .collect();
            stats.examples_out = records.len();
            let file = format!("{name}.json");
            write_atomic(&out.join(&file), json_array(&records).as_bytes())?;
            datasets.push(ExportedDataset {
                name,
                file,
                role: role.into(),
                of: of.into(),
                normalization: stats,
            });
            Ok(())
        };
    for (info, examples) in m.stages.iter().zip(&comp.stages) {
        write_dataset(
            format!("{}_stage{}_{}", m.recipe.name, info.index, info.name),
            "stage",
            &info.name,
            examples,
        )?;
    }
    for (source, examples) in &comp.heldout {
        write_dataset(
            format!("{}_heldout_{source}", m.recipe.name),
            "heldout",
            source,
            examples,
        )?;
    }

    let mut configs = Vec::new();
    if format == ExportFormat::LlamaFactory {
        let mut info = serde_json::Map::new();
        for d in &datasets {
            info.insert(
                d.name.clone(),
                json!({"file_name": d.file, "formatting": "sharegpt",
                       "columns": {"messages": "conversations", "system": "system"}}),
            );
        }
        write_json(&out.join("dataset_info.json"), &Value::Object(info))?;
        let root = settings
            .output_root
            .clone()
            .unwrap_or_else(|| format!("saves/{}", m.recipe.name));
        let mut previous: Option<String> = None;
        for (stage, d) in m
            .stages
            .iter()
            .zip(datasets.iter().filter(|d| d.role == "stage"))
        {
            let output_dir = format!("{root}/stage{}_{}", stage.index, stage.name);
            let file = format!("stage{}_{}.yaml", stage.index, stage.name);
            let yaml = stage_yaml(
                comp,
                stage.index,
                &d.name,
                &file,
                previous.as_deref(),
                &output_dir,
                settings,
            );
            write_atomic(&out.join(&file), yaml.as_bytes())?;
            configs.push(file);
            previous = Some(output_dir);
        }
    }
    let report = ExportReport {
        format: format.name().to_string(),
        recipe: m.recipe.name.clone(),
        datasets,
        configs,
    };
    write_atomic(
        &out.join("README.md"),
        readme(comp, &report, settings).as_bytes(),
    )?;
    write_json(&out.join("export.json"), &report)?;
    Ok(report)
}

fn stage_yaml(
    comp: &Composition,
    index: usize,
    dataset: &str,
    file: &str,
    previous_output: Option<&str>,
    output_dir: &str,
    s: &TrainSettings,
) -> String {
    let m = &comp.manifest;
    let stage = &m.stages[index - 1];
    let total = m.stages.len();
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# mixprobe export of recipe {:?}: stage {index} of {total} ({:?}).",
        m.recipe.name, stage.name
    );
    let _ = writeln!(
        y,
        "# Run from the export directory: llamafactory-cli train {file}"
    );
    if index > 1 {
        let _ = writeln!(
            y,
            "# Run it after stage {} has finished (see README.md for the order).",
            index - 1
        );
    }
    let _ = writeln!(
        y,
        "# The paper trained with lr 2e-5, a cosine schedule, warmup ratio 0.03 and 3 epochs per stage."
    );
    let _ = writeln!(y, "\n### model");
    match previous_output {
        None => {
            if s.base_model == PLACEHOLDER_MODEL {
                let _ = writeln!(
                    y,
                    "# EDIT THIS: the base model (a local path or a Hugging Face id), or re-export with --base-model."
                );
            }
            let _ = writeln!(y, "model_name_or_path: {}", yq(&s.base_model));
        }
        Some(prev) => {
            let _ = writeln!(y, "# Continues from stage {}'s output.", index - 1);
            let _ = writeln!(y, "model_name_or_path: {}", yq(prev));
        }
    }
    let _ = writeln!(y, "\n### method");
    let _ = writeln!(y, "stage: sft\ndo_train: true\nfinetuning_type: full");
    let _ = writeln!(
        y,
        "# For multi-GPU full fine-tuning of 7B+ models, uncomment (path inside a LLaMA-Factory checkout):"
    );
    let _ = writeln!(y, "# deepspeed: examples/deepspeed/ds_z3_config.json");
    let _ = writeln!(y, "\n### dataset");
    let _ = writeln!(y, "dataset: {}", yq(dataset));
    let _ = writeln!(y, "dataset_dir: {}", yq("."));
    let _ = writeln!(y, "template: {}", yq(&s.template));
    let _ = writeln!(y, "cutoff_len: {}", s.cutoff_len);
    let _ = writeln!(y, "overwrite_cache: true");
    let _ = writeln!(y, "\n### output");
    let _ = writeln!(y, "output_dir: {}", yq(output_dir));
    let _ = writeln!(y, "logging_steps: 10");
    let _ = writeln!(
        y,
        "# The final model is saved to output_dir when training ends."
    );
    let _ = writeln!(y, "save_strategy: {}", yq("no"));
    let _ = writeln!(
        y,
        "plot_loss: true\noverwrite_output_dir: true\nreport_to: {}",
        yq("none")
    );
    let _ = writeln!(y, "\n### train");
    let _ = writeln!(
        y,
        "# Effective batch = GPUs × per_device_train_batch_size × gradient_accumulation_steps."
    );
    let _ = writeln!(
        y,
        "per_device_train_batch_size: {}",
        s.per_device_train_batch_size
    );
    let _ = writeln!(
        y,
        "gradient_accumulation_steps: {}",
        s.gradient_accumulation_steps
    );
    let _ = writeln!(y, "learning_rate: {}", yaml_float(s.learning_rate));
    let _ = writeln!(y, "num_train_epochs: {}.0", stage.epochs);
    let _ = writeln!(y, "lr_scheduler_type: {}", yq("cosine"));
    let _ = writeln!(y, "warmup_ratio: 0.03");
    let _ = writeln!(y, "bf16: true");
    let _ = writeln!(y, "seed: {}", m.seed);
    y
}

fn readme(comp: &Composition, report: &ExportReport, s: &TrainSettings) -> String {
    let m = &comp.manifest;
    let mut r = String::new();
    let _ = writeln!(
        r,
        "# Export of recipe `{}` ({} format)\n",
        m.recipe.name, report.format
    );
    if let Some(d) = &m.recipe.description {
        let _ = writeln!(r, "{d}\n");
    }
    let _ = writeln!(
        r,
        "Composed by mixprobe {} from `{}` with seed {}{}. The composition (native JSONL per stage, held-out \
         sets and `manifest.json` with every example id and input sha256) is in `composed/`; bring the \
         trained models back to mixprobe for evaluation and probing against it.\n",
        m.mixprobe_version,
        m.recipe.path,
        m.seed,
        m.limit_examples
            .map(|n| format!(" and --limit-examples {n} (a smoke export)"))
            .unwrap_or_default()
    );
    let _ = writeln!(r, "## Stages (train in this order)\n");
    let _ = writeln!(
        r,
        "| # | stage | epochs | examples | sources (taken / available) |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|");
    for st in &m.stages {
        let srcs: Vec<String> = st
            .sources
            .iter()
            .map(|(n, x)| format!("{n} {} = {} / {}", x.amount, x.taken, x.available))
            .collect();
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {} |",
            st.index,
            st.name,
            st.epochs,
            st.examples,
            srcs.join("; ")
        );
    }
    let _ = writeln!(r, "\n## Files\n");
    for d in &report.datasets {
        let n = &d.normalization;
        let _ = writeln!(
            r,
            "- `{}`: {} `{}`, {} of {} examples",
            d.file, d.role, d.of, n.examples_out, n.examples_in
        );
    }
    if report.format != ExportFormat::ShareGpt.name() {
        let _ = writeln!(r, "\n## Conversation normalization\n");
        let _ = writeln!(
            r,
            "Turns must alternate user/assistant. System turns moved to `system`; consecutive same-speaker \
             turns joined by a blank line; a leading assistant turn and a trailing user turn dropped; \
             conversations left with no pair dropped (ids in `export.json`).\n"
        );
        let _ = writeln!(
            r,
            "| dataset | system moved | merged | leading assistant dropped | trailing user dropped | conversations dropped |"
        );
        let _ = writeln!(r, "|---|---|---|---|---|---|");
        for d in &report.datasets {
            let n = &d.normalization;
            let _ = writeln!(
                r,
                "| {} | {} | {} | {} | {} | {} |",
                d.name,
                n.system_turns_moved,
                n.turns_merged,
                n.leading_assistant_dropped,
                n.trailing_user_dropped,
                n.dropped_ids.len()
            );
        }
    }
    if !report.configs.is_empty() {
        let _ = writeln!(r, "\n## Running with LLaMA-Factory\n");
        if s.base_model == PLACEHOLDER_MODEL {
            let _ = writeln!(
                r,
                "First edit `model_name_or_path` in `{}` (it holds the placeholder `{PLACEHOLDER_MODEL}`), \
                 or re-export with `--base-model`.\n",
                report.configs[0]
            );
        }
        let _ = writeln!(
            r,
            "Run from this directory (`dataset_dir` and `output_dir` are relative to it). Each stage starts \
             from the previous stage's `output_dir`, so run them in order, each after the previous finishes:\n"
        );
        let _ = writeln!(r, "```sh");
        for c in &report.configs {
            let _ = writeln!(r, "llamafactory-cli train {c}");
        }
        let _ = writeln!(r, "```\n");
        let _ = writeln!(
            r,
            "Settings: template `{}`, cutoff_len {}, lr {}, cosine schedule, warmup ratio 0.03, bf16, full \
             fine-tuning, epochs per stage as in the table. For several GPUs use `FORCE_TORCHRUN=1 \
             llamafactory-cli train …` and uncomment the `deepspeed` line. The held-out datasets are \
             registered in `dataset_info.json` too (use them as `eval_dataset`).",
            s.template,
            s.cutoff_len,
            yaml_float(s.learning_rate)
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Ability, Meta, Turn};

    fn ex(turns: Vec<Turn>) -> Example {
        Example {
            id: "x".into(),
            ability: Ability::General,
            turns,
            meta: Meta::default(),
        }
    }

    #[test]
    fn normalization_makes_turns_alternate_and_counts_changes() {
        let mut st = Normalization::default();
        let e = ex(vec![
            Turn::system("be brief"),
            Turn::assistant("hello!"),
            Turn::user("a"),
            Turn::user("b"),
            Turn::assistant("c"),
            Turn::user("d"),
            Turn::assistant("e"),
            Turn::user("dangling"),
        ]);
        let p = normalize(&e, &mut st).unwrap();
        assert_eq!(p.system.as_deref(), Some("be brief"));
        assert_eq!(
            p.pairs,
            vec![("a\n\nb".into(), "c".into()), ("d".into(), "e".into())]
        );
        assert_eq!(
            (
                st.system_turns_moved,
                st.turns_merged,
                st.leading_assistant_dropped,
                st.trailing_user_dropped
            ),
            (1, 1, 1, 1)
        );
        assert!(normalize(&ex(vec![Turn::assistant("only")]), &mut st).is_none());
        assert_eq!(st.dropped_ids, vec!["x".to_string()]);
    }

    #[test]
    fn alpaca_records_put_earlier_pairs_in_history() {
        let mut st = Normalization::default();
        let e = ex(vec![
            Turn::user("q1"),
            Turn::assistant("a1"),
            Turn::user("q2"),
            Turn::assistant("a2"),
        ]);
        let r = record(&e, ExportFormat::Alpaca, &mut st).unwrap();
        assert_eq!(
            r,
            json!({"instruction": "q2", "input": "", "output": "a2", "history": [["q1", "a1"]]})
        );
        let r = record(&e, ExportFormat::LlamaFactory, &mut st).unwrap();
        assert_eq!(r["conversations"][3], json!({"from": "gpt", "value": "a2"}));
        assert!(r.get("system").is_none());
    }

    #[test]
    fn yaml_scalars() {
        assert_eq!(yaml_float(2e-5), "2.0e-5");
        assert_eq!(yaml_float(1.5e-4), "1.5e-4");
        assert_eq!(yaml_float(3.0), "3.0e+0");
        assert_eq!(yq("no"), "\"no\"");
        assert_eq!(yq("a\"b"), "\"a\\\"b\"");
    }
}
