//! `mixprobe data stats FILE...`: per-file counts, turns and length percentiles.
use mixprobe::data::read::{Format, ReadOptions, read_file};
use mixprobe::data::stats::{FileStats, file_stats};
use mixprobe::data::template::ChatTemplate;
use mixprobe::data::tokenize::ChatTokenizer;
use std::path::PathBuf;

/// Per-file record counts, turns and length percentiles of the rendered examples.
#[derive(clap::Args)]
#[command(after_help = "\
Per file: format, records, examples, malformed records skipped (with --skip-invalid; otherwise a \
malformed record fails the file with exit code 2), records excluded by a format rule (by reason), \
turns (total, mean, max) and the length of each example rendered with the chat template: \
p50/p90/p99/max (nearest rank). Lengths are tokens with --tokenizer, otherwise \
whitespace-separated words.")]
pub struct Args {
    /// Data files (JSON or JSON Lines, optionally gzipped).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Format of every file (gsm8k, rft, code_alpaca, sharegpt, humaneval, mt_bench,
    /// mt_bench_reference); inferred per file from its first record when omitted.
    #[arg(long, value_parser = Format::from_name)]
    pub format: Option<Format>,
    /// A Hugging Face tokenizer.json: lengths are then tokens instead of words.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Chat template the examples are rendered with (vicuna_v1.1, chatml, plain).
    #[arg(long, default_value = "vicuna_v1.1", value_parser = ChatTemplate::from_name)]
    pub template: ChatTemplate,
    /// Skip malformed records instead of failing; they are counted and the first few listed.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Print machine-readable JSON (`{"files": [...]}`) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let tokenizer = args
        .tokenizer
        .as_deref()
        .map(|p| ChatTokenizer::from_file(p, args.template))
        .transpose()?;
    let opts = ReadOptions {
        skip_invalid: args.skip_invalid,
    };
    let mut all = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let loaded = read_file(path, args.format, &opts)?;
        all.push(file_stats(&loaded, args.template, tokenizer.as_ref())?);
    }
    let mut out = String::new();
    if args.json {
        out = serde_json::to_string_pretty(&serde_json::json!({ "files": all }))?;
        out.push('\n');
    } else {
        let unit = match &args.tokenizer {
            Some(p) => format!("tokens of {}", p.display()),
            None => "whitespace-separated words; pass --tokenizer for tokens".to_string(),
        };
        for (i, s) in all.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            write_file(&mut out, s, &unit)?;
        }
    }
    write_stdout(&out)
}

/// Print to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn write_file(out: &mut String, s: &FileStats, unit: &str) -> std::fmt::Result {
    use std::fmt::Write;
    writeln!(out, "{}", s.path)?;
    writeln!(out, "  format     {}", s.format)?;
    writeln!(out, "  records    {}", s.records)?;
    writeln!(out, "  examples   {}", s.examples)?;
    writeln!(out, "  skipped    {} malformed", s.skipped)?;
    for sk in &s.skipped_first {
        writeln!(out, "               {}: {}", sk.location, sk.reason)?;
    }
    if s.skipped > s.skipped_first.len() {
        writeln!(
            out,
            "               … and {} more",
            s.skipped - s.skipped_first.len()
        )?;
    }
    writeln!(out, "  excluded   {}", s.excluded)?;
    for r in &s.excluded_reasons {
        writeln!(out, "               {}: {}", r.reason, r.count)?;
    }
    let t = &s.turns;
    writeln!(
        out,
        "  turns      total {}, mean {:.2}, max {}",
        t.total, t.mean, t.max
    )?;
    let label = s.length_unit.as_str();
    match &s.lengths {
        Some(p) => writeln!(
            out,
            "  {label:<9}  p50 {}, p90 {}, p99 {}, max {}  ({unit}; {} template)",
            p.p50, p.p90, p.p99, p.max, s.template
        ),
        None => writeln!(out, "  {label:<9}  (no examples)"),
    }
}
