//! `mixprobe data ablate`: remove code- and/or math-flavoured conversations from a ShareGPT file,
//! writing the kept original records and a report.
use crate::cli::UserError;
use mixprobe::data::ablate::{self, Category, Detector, HttpTagger, Report, RuleDetector, Source};
use mixprobe::data::read::{Format, ReadOptions, read_file};
use mixprobe::util;
use std::path::PathBuf;
use std::time::Duration;

/// Which detector decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DetectorKind {
    /// The built-in transparent rules (`rules-v2`, see the module docs of `data::ablate`).
    Rules,
    /// An LLM tagger behind an OpenAI-compatible chat-completions endpoint (InsTag prompt).
    Http,
}

#[derive(clap::Args)]
pub struct Args {
    /// ShareGPT file to filter (JSON Lines or a JSON list, optionally gzip-compressed).
    #[arg(long)]
    pub input: PathBuf,
    /// Categories to remove, comma-separated, in precedence order: a conversation detected as
    /// several is counted once, under the first listed.
    #[arg(long, value_delimiter = ',', default_value = "code,math")]
    pub remove: Vec<Category>,
    /// Where to write the kept conversations: the original ShareGPT records, one per line
    /// (gzip-compressed if the name ends in .gz).
    #[arg(long)]
    pub out: PathBuf,
    /// Where to write the JSON report (counts per category, excluded/skipped, rule counts,
    /// example decisions).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write every conversation's verdict (id, categories, rules that fired) as JSON Lines,
    /// for auditing the detector.
    #[arg(long)]
    pub decisions: Option<PathBuf>,
    /// Skip malformed records (counted in the report) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Which detector decides.
    #[arg(long, value_enum, default_value_t = DetectorKind::Rules)]
    pub detector: DetectorKind,
    /// Base URL of the OpenAI-compatible API, up to and including `/v1` (`--detector http`).
    #[arg(long, default_value = "https://api.openai.com/v1")]
    pub api_base: String,
    /// Model name sent to the API (required with `--detector http`).
    #[arg(long)]
    pub api_model: Option<String>,
    /// Environment variable holding the API key, sent as a Bearer token when set.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,
    /// Seconds to wait for one tagger response.
    #[arg(long, default_value_t = 120)]
    pub api_timeout: u64,
    /// Example decisions shown in the report per category (and for kept conversations).
    #[arg(long, default_value_t = 5)]
    pub examples: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut remove: Vec<Category> = Vec::new();
    for c in &args.remove {
        if remove.contains(c) {
            return Err(UserError(format!("--remove lists {c} twice")).into());
        }
        remove.push(*c);
    }
    if same_file(&args.input, &args.out) {
        return Err(UserError(format!(
            "--out {} would overwrite --input",
            args.out.display()
        ))
        .into());
    }
    let detector: Box<dyn Detector> = match args.detector {
        DetectorKind::Rules => Box::new(RuleDetector::default()),
        DetectorKind::Http => {
            let model = args
                .api_model
                .as_deref()
                .ok_or_else(|| UserError("--detector http needs --api-model".into()))?;
            let key = std::env::var(&args.api_key_env)
                .ok()
                .filter(|k| !k.is_empty());
            if key.is_none() {
                eprintln!(
                    "note: ${} is not set; calling {} without an API key",
                    args.api_key_env, args.api_base
                );
            }
            Box::new(HttpTagger::new(
                &args.api_base,
                model,
                key,
                Duration::from_secs(args.api_timeout),
            ))
        }
    };

    let loaded = read_file(
        &args.input,
        Some(Format::ShareGpt),
        &ReadOptions {
            skip_invalid: args.skip_invalid,
        },
    )?;
    let raw = ablate::raw_records(&args.input)?;
    let name = detector.name();
    let result = ablate::ablate(loaded.examples, &remove, detector.as_ref());
    if let Some((ex, err)) = result.failed.first() {
        return Err(UserError(format!(
            "{} of {} conversations could not be classified by {name}; first: {}: {err}",
            result.failed.len(),
            result.verdicts.len(),
            ex.id
        ))
        .into());
    }
    ablate::write_kept(&args.out, &result.kept, &raw)?;
    let source = Source {
        input: &args.input,
        output: &args.out,
        excluded: &loaded.excluded,
        skipped: &loaded.skipped,
    };
    let report = Report::new(&source, &remove, &name, &result, args.examples);
    if let Some(path) = &args.report {
        util::write_json(path, &report)?;
    }
    if let Some(path) = &args.decisions {
        let mut text = String::new();
        for v in &result.verdicts {
            text.push_str(&ablate::verdict_json(v).to_string());
            text.push('\n');
        }
        util::write_atomic(path, text.as_bytes())?;
    }
    let per: Vec<String> = remove
        .iter()
        .map(|c| {
            format!(
                "{c} {}",
                report
                    .removed
                    .get(c.as_str())
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0)
            )
        })
        .collect();
    eprintln!(
        "ablate [{name}]: {} records, {} conversations ({} excluded, {} skipped); removed {} ({:.1}%: {}); kept {} -> {}",
        report.input,
        report.conversations,
        report.excluded,
        report.skipped,
        report.removed_total,
        100.0 * report.removed_fraction,
        per.join(", "),
        report.kept,
        args.out.display()
    );
    Ok(())
}

/// True when both paths name the same existing file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
