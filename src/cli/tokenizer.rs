//! `mixprobe tokenizer train FILE... --out tokenizer.json`: train a byte-level BPE tokenizer on
//! the rendered examples of data files.
use mixprobe::data::bpe::{DEFAULT_VOCAB_SIZE, to_json, train_bpe};
use mixprobe::data::read::{Format, ReadOptions, read_file};
use mixprobe::data::template::ChatTemplate;
use mixprobe::util::write_atomic;
use std::path::PathBuf;

/// Train a byte-level BPE tokenizer (deterministic) on data files rendered with a chat template.
#[derive(clap::Args)]
#[command(after_help = "\
Each file's examples are rendered with the chat template (the same text training sees) and fed \
to the BPE trainer. The template's special tokens (vicuna_v1.1 / plain: <s> </s> <unk> <pad>; \
chatml: <|endoftext|> <|im_start|> <|im_end|> <pad>) get the first ids. The same files and flags \
always give the same tokenizer.json.")]
pub struct TrainArgs {
    /// Data files (GSM8K, Code Alpaca, ShareGPT, … JSON / JSON Lines, optionally gzipped).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Format of every file (gsm8k, rft, code_alpaca, sharegpt, humaneval, mt_bench,
    /// mt_bench_reference); inferred per file from its first record when omitted.
    #[arg(long, value_parser = Format::from_name)]
    pub format: Option<Format>,
    /// Vocabulary size, special tokens included.
    #[arg(long, default_value_t = DEFAULT_VOCAB_SIZE)]
    pub vocab_size: usize,
    /// Chat template used to render the examples (vicuna_v1.1, chatml, plain); it also decides
    /// the special tokens.
    #[arg(long, default_value = "vicuna_v1.1", value_parser = ChatTemplate::from_name)]
    pub template: ChatTemplate,
    /// Skip malformed records instead of failing (they are counted on stderr).
    #[arg(long)]
    pub skip_invalid: bool,
    /// Where to write tokenizer.json.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let opts = ReadOptions {
        skip_invalid: args.skip_invalid,
    };
    let mut texts = Vec::new();
    for path in &args.files {
        let loaded = read_file(path, args.format, &opts)?;
        if !loaded.skipped.is_empty() {
            eprintln!(
                "{}: skipped {} malformed record(s); first: {}: {}",
                path.display(),
                loaded.skipped.len(),
                loaded.skipped[0].location,
                loaded.skipped[0].reason
            );
        }
        for (reason, n) in loaded.excluded_by_reason() {
            eprintln!("{}: excluded {n} record(s): {reason}", path.display());
        }
        eprintln!(
            "{}: {} examples ({})",
            path.display(),
            loaded.examples.len(),
            loaded.format
        );
        texts.extend(
            loaded
                .examples
                .iter()
                .map(|e| args.template.render_text(&e.turns)),
        );
    }
    let n_texts = texts.len();
    let tokenizer = train_bpe(
        texts.into_iter(),
        args.vocab_size,
        args.template.special_tokens(),
    )?;
    write_atomic(&args.out, to_json(&tokenizer)?.as_bytes())?;
    println!(
        "trained byte-level BPE: vocab {} (requested {}), {} examples rendered with {}, \
         special tokens {}; wrote {}",
        tokenizer.get_vocab_size(true),
        args.vocab_size,
        n_texts,
        args.template,
        args.template.special_tokens().join(" "),
        args.out.display()
    );
    Ok(())
}
