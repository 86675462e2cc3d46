//! Readers for the real data formats: GSM8K, GSM8K-RFT, Code Alpaca, ShareGPT, HumanEval,
//! MT-Bench questions and MT-Bench reference answers, all producing [`Example`]s.
//!
//! # Container
//! Every format may come as JSON Lines (one object per line) or as one JSON list of objects,
//! optionally gzip-compressed (detected by the gzip magic bytes, so `.gz` is not required). The
//! container is sniffed from the first non-blank character: `[` is a JSON list, `{` is JSON Lines.
//! Blank lines in JSON Lines are ignored (they hold no record). A UTF-8 byte-order mark is ignored.
//!
//! # Bad input
//! A *malformed* record (bad JSON, missing field, wrong type, unknown role, empty conversation,
//! invalid UTF-8 in a JSON Lines line, duplicate id) is reported with its [`Location`] (1-based
//! line for JSON Lines, 0-based index for a JSON list) and what was wrong. By default a file with
//! any malformed record fails with [`Error::Records`] after the whole file was scanned (so the count
//! is right); with [`ReadOptions::skip_invalid`] they are returned in [`Loaded::skipped`]. A syntax
//! error inside a JSON list cannot be skipped (the parser cannot resynchronize): it fails the file.
//!
//! A well-formed record that a format rule does not turn into an example (a ShareGPT conversation
//! with no assistant turn, an empty text, …) goes to [`Loaded::excluded`] with a short reason that
//! is the same for every record excluded by that rule, so callers can summarize by reason.
//! Empty text (empty or whitespace-only) in a required field is such a rule: the real Code Alpaca
//! file has 6 empty outputs and the ShareGPT subset has conversations with empty turns, which are
//! well-formed records with nothing to learn from.
//!
//! # Example ids
//! Unique within a file and stable: GSM8K `gsm8k-<stem>-<n>`, RFT `rft-<stem>-<n>`, Code Alpaca
//! `code_alpaca-<stem>-<n>`, where `<stem>` is the file name without extensions and `<n>` the
//! 0-based record position (line − 1 for JSON Lines, the index for a JSON list); ShareGPT the
//! record's `id`; HumanEval the `task_id`; MT-Bench questions and reference answers
//! `mt_bench-<question_id>` (the same id in both files, so they join on it).
use crate::data::example::{Ability, Example, Meta, Role, Turn};
use crate::error::{Error, Location, Result};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Format {
    /// GSM8K `{"question","answer"}`; the answer ends in `#### <number>`.
    #[serde(rename = "gsm8k")]
    Gsm8k,
    /// GSM8K rejection-sampling data `{"query","response"}`; the response ends in `#### <number>`.
    #[serde(rename = "rft")]
    Rft,
    /// Code Alpaca `{"instruction","input","output"}`.
    #[serde(rename = "code_alpaca")]
    CodeAlpaca,
    /// ShareGPT `{"id","conversations":[{"from","value"}]}`.
    #[serde(rename = "sharegpt")]
    ShareGpt,
    /// HumanEval `{"task_id","prompt","entry_point","canonical_solution","test"}`.
    #[serde(rename = "humaneval")]
    HumanEval,
    /// MT-Bench questions `{"question_id","category","turns",("reference")}`.
    #[serde(rename = "mt_bench")]
    MtBench,
    /// MT-Bench answers in FastChat's format `{"question_id","model_id","choices":[{"turns"}]}`.
    #[serde(rename = "mt_bench_reference")]
    MtBenchReference,
}

impl Format {
    /// Every format, in documentation order.
    pub const ALL: [Format; 7] = [
        Format::Gsm8k,
        Format::Rft,
        Format::CodeAlpaca,
        Format::ShareGpt,
        Format::HumanEval,
        Format::MtBench,
        Format::MtBenchReference,
    ];

    /// Parse a format name (`gsm8k`, `rft`, `code_alpaca`, `sharegpt`, `humaneval`, `mt_bench`,
    /// `mt_bench_reference`; case-insensitive, `-` accepted for `_`).
    pub fn from_name(s: &str) -> Result<Format> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Format::ALL
            .into_iter()
            .find(|f| f.name() == norm)
            .ok_or_else(|| {
                Error::invalid(
                    "format",
                    format!("unknown format {s:?} (expected one of {})", Format::names()),
                )
            })
    }

    /// The canonical name (what [`Format::from_name`] accepts).
    pub fn name(&self) -> &'static str {
        match self {
            Format::Gsm8k => "gsm8k",
            Format::Rft => "rft",
            Format::CodeAlpaca => "code_alpaca",
            Format::ShareGpt => "sharegpt",
            Format::HumanEval => "humaneval",
            Format::MtBench => "mt_bench",
            Format::MtBenchReference => "mt_bench_reference",
        }
    }

    /// All names, comma-separated (for messages).
    pub fn names() -> String {
        Format::ALL.map(|f| f.name()).join(", ")
    }

    /// The ability a source of this format trains or judges.
    pub fn ability(&self) -> Ability {
        match self {
            Format::Gsm8k | Format::Rft => Ability::Math,
            Format::CodeAlpaca | Format::HumanEval => Ability::Code,
            Format::ShareGpt | Format::MtBench | Format::MtBenchReference => Ability::General,
        }
    }

    /// The keys a record of this format must have (used in messages and format sniffing).
    pub fn required_keys(&self) -> &'static [&'static str] {
        match self {
            Format::Gsm8k => &["question", "answer"],
            Format::Rft => &["query", "response"],
            Format::CodeAlpaca => &["instruction", "output"],
            Format::ShareGpt => &["id", "conversations"],
            Format::HumanEval => &[
                "task_id",
                "prompt",
                "entry_point",
                "canonical_solution",
                "test",
            ],
            Format::MtBench => &["question_id", "category", "turns"],
            Format::MtBenchReference => &["question_id", "choices"],
        }
    }

    /// Infer the format of a file by sniffing its first record's keys (after gzip decompression
    /// and JSON list / JSON Lines detection). Fails with a clear error when it cannot tell.
    /// This reads (and decompresses) the file; [`read_file`] with `None` infers without reading twice.
    pub fn infer(path: &Path) -> Result<Format> {
        let text = load_text(path)?;
        let first = first_record(path, &text)?;
        infer_from_record(path, &first)
    }

    /// The format whose distinctive keys a record has, if any.
    fn from_keys(map: &Map<String, Value>) -> Option<Format> {
        let has = |k: &str| map.contains_key(k);
        if has("conversations") {
            Some(Format::ShareGpt)
        } else if has("question_id") && has("choices") {
            Some(Format::MtBenchReference)
        } else if has("question_id") && has("turns") {
            Some(Format::MtBench)
        } else if has("task_id") && (has("canonical_solution") || has("entry_point")) {
            Some(Format::HumanEval)
        } else if has("instruction") && has("output") {
            Some(Format::CodeAlpaca)
        } else if has("question") && has("answer") {
            Some(Format::Gsm8k)
        } else if has("query") && has("response") {
            Some(Format::Rft)
        } else {
            None
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} records (JSON Lines or a JSON list of objects with keys {})",
            self.name(),
            self.required_keys().join(", ")
        )
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Format> {
        Format::from_name(s)
    }
}

/// How to treat malformed records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Skip malformed records (returned in [`Loaded::skipped`]) instead of failing the file.
    pub skip_invalid: bool,
}

/// A record that did not become an example, where it is and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub location: Location,
    pub reason: String,
}

/// The result of reading one file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub format: Format,
    pub examples: Vec<Example>,
    /// Malformed records skipped under [`ReadOptions::skip_invalid`] (empty otherwise).
    pub skipped: Vec<Skipped>,
    /// Records intentionally not turned into examples by a format rule (e.g. ShareGPT with no
    /// assistant turn), counted with reasons.
    pub excluded: Vec<Skipped>,
}

impl Loaded {
    /// Records in the file: examples + skipped + excluded.
    pub fn records(&self) -> usize {
        self.examples.len() + self.skipped.len() + self.excluded.len()
    }

    /// Excluded records grouped by reason, most frequent first (ties by reason).
    pub fn excluded_by_reason(&self) -> Vec<(String, usize)> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for s in &self.excluded {
            *counts.entry(s.reason.as_str()).or_default() += 1;
        }
        let mut v: Vec<(String, usize)> = counts
            .into_iter()
            .map(|(r, n)| (r.to_string(), n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

/// Read one data file into examples. `format: None` infers it from the first record.
pub fn read_file(path: &Path, format: Option<Format>, opts: &ReadOptions) -> Result<Loaded> {
    let text = load_text(path)?;
    let first = first_record(path, &text)?;
    let format = match format {
        Some(f) => {
            check_format_matches(path, f, &first)?;
            f
        }
        None => infer_from_record(path, &first)?,
    };
    drop(first);
    let stem = file_stem(path);
    let mut loaded = Loaded {
        path: path.to_path_buf(),
        format,
        examples: Vec::new(),
        skipped: Vec::new(),
        excluded: Vec::new(),
    };
    let mut seen: HashMap<String, Location> = HashMap::new();
    let mut handle = |location: Location, n: usize, record: std::result::Result<Value, String>| {
        let outcome = record.and_then(|v| convert(format, v, &stem, n));
        match outcome {
            Ok(Outcome::Example(ex)) => {
                if let Some(prev) = seen.get(&ex.id) {
                    loaded.skipped.push(Skipped {
                        location,
                        reason: format!("duplicate id {:?} (first at {prev})", ex.id),
                    });
                } else {
                    seen.insert(ex.id.clone(), location);
                    loaded.examples.push(ex);
                }
            }
            Ok(Outcome::Excluded(reason)) => loaded.excluded.push(Skipped {
                location,
                reason: reason.to_string(),
            }),
            Err(reason) => loaded.skipped.push(Skipped { location, reason }),
        }
    };
    match container(path, &text)? {
        Container::List(body) => {
            for_each_list_record(path, body, |i, v| handle(Location::Index(i), i, Ok(v)))?
        }
        Container::Lines(body) => for_each_line(body, |line, rec| {
            handle(Location::Line(line), line - 1, rec)
        }),
    }
    if !opts.skip_invalid && !loaded.skipped.is_empty() {
        let first = &loaded.skipped[0];
        return Err(Error::Records {
            path: path.to_path_buf(),
            count: loaded.skipped.len(),
            first: format!("{}: {}", first.location, first.reason),
            skippable: true,
        });
    }
    Ok(loaded)
}

/// The file's bytes, gunzipped when they start with the gzip magic, without a UTF-8 BOM.
/// UTF-8 is validated later (per line for JSON Lines, whole for a JSON list).
fn load_text(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::file(path, "is a directory, expected a data file"));
    }
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len().saturating_mul(4));
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::file(path, format!("gzip stream is truncated or corrupt ({e})")))?;
        out
    } else {
        raw
    };
    if bytes.starts_with(&[0xef, 0xbb, 0xbf]) {
        bytes.drain(..3);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::file(
            path,
            "empty file, expected JSON Lines or a JSON list of records",
        ));
    }
    Ok(bytes)
}

enum Container<'a> {
    List(&'a [u8]),
    Lines(&'a [u8]),
}

/// Sniff JSON list vs JSON Lines from the first non-blank byte.
fn container<'a>(path: &Path, text: &'a [u8]) -> Result<Container<'a>> {
    let pos = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    match text.get(pos) {
        Some(b'[') => Ok(Container::List(text)),
        Some(b'{') => Ok(Container::Lines(text)),
        other => {
            let line = 1 + text[..pos].iter().filter(|&&b| b == b'\n').count();
            let found = match other {
                Some(b) if b.is_ascii_graphic() => format!("{:?}", *b as char),
                Some(b) => format!("byte 0x{b:02x}"),
                None => "nothing".into(),
            };
            Err(Error::file(
                path,
                format!(
                    "not JSON: expected a JSON list (`[`) or JSON Lines (`{{` per line), found {found} at line {line}"
                ),
            ))
        }
    }
}

/// Iterate JSON Lines: call `f(line_number_1_based, parsed_or_error)` for each non-blank line.
fn for_each_line(text: &[u8], mut f: impl FnMut(usize, std::result::Result<Value, String>)) {
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = match std::str::from_utf8(line) {
            Err(e) => Err(format!(
                "invalid UTF-8 at byte offset {} of the line",
                e.valid_up_to()
            )),
            Ok(s) => serde_json::from_str::<Value>(s).map_err(|e| format!("bad JSON: {e}")),
        };
        f(i + 1, parsed);
    }
}

/// The text as UTF-8, or an error naming the line and byte offset of the first invalid byte.
fn utf8<'a>(path: &Path, text: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(text).map_err(|e| {
        let off = e.valid_up_to();
        let line = 1 + text[..off].iter().filter(|&&b| b == b'\n').count();
        Error::file(
            path,
            format!("invalid UTF-8 at line {line} (byte offset {off})"),
        )
    })
}

/// Iterate a JSON list, parsing one element at a time; a syntax error fails the file.
fn for_each_list_record(path: &Path, text: &[u8], f: impl FnMut(usize, Value)) -> Result<()> {
    let s = utf8(path, text)?;
    struct ListVisitor<'i, F> {
        f: F,
        index: &'i Cell<usize>,
    }
    impl<'de, F: FnMut(usize, Value)> Visitor<'de> for ListVisitor<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON list of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> std::result::Result<(), A::Error> {
            while let Some(v) = seq.next_element::<Value>()? {
                (self.f)(self.index.get(), v);
                self.index.set(self.index.get() + 1);
            }
            Ok(())
        }
    }
    let index = Cell::new(0usize);
    let mut de = serde_json::Deserializer::from_str(s);
    let visitor = ListVisitor { f, index: &index };
    serde::Deserializer::deserialize_seq(&mut de, visitor)
        .and_then(|()| de.end())
        .map_err(|e| Error::file(path, format!("bad JSON in record {}: {e}", index.get())))
}

/// The first record of the file (for format sniffing and checks), as a JSON object.
fn first_record(path: &Path, text: &[u8]) -> Result<Map<String, Value>> {
    let value = match container(path, text)? {
        Container::List(body) => {
            let s = utf8(path, body)?;
            // Parse just the first element: `[` ws value.
            let start = body.iter().position(|&b| b == b'[').unwrap_or(0) + 1;
            let mut stream =
                serde_json::Deserializer::from_slice(&body[start..]).into_iter::<Value>();
            match stream.next() {
                Some(Ok(v)) => v,
                Some(Err(_)) | None => {
                    // Let the full parse produce the precise error (or find an empty list).
                    let parsed: std::result::Result<Vec<serde::de::IgnoredAny>, _> =
                        serde_json::from_str(s);
                    return match parsed {
                        Ok(v) if v.is_empty() => Err(Error::file(
                            path,
                            "empty JSON list, expected at least one record",
                        )),
                        Ok(_) => Err(Error::file(path, "cannot parse the first record")),
                        Err(e) => Err(Error::file(path, format!("bad JSON in record 0: {e}"))),
                    };
                }
            }
        }
        Container::Lines(body) => {
            let mut first_error = None;
            let parsed = body
                .split(|&b| b == b'\n')
                .enumerate()
                .find_map(|(i, line)| {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    match serde_json::from_slice::<Value>(line) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            first_error
                                .get_or_insert_with(|| format!("line {}: bad JSON: {e}", i + 1));
                            None
                        }
                    }
                });
            match parsed {
                Some(v) => v,
                None if serde_json::from_slice::<Value>(body).is_ok_and(|v| v.is_object()) => {
                    return Err(Error::file(
                        path,
                        "the file is one JSON object spanning several lines; expected a JSON \
                         list of records (`[{...}, ...]`) or JSON Lines (one object per line)",
                    ));
                }
                None => {
                    return Err(Error::file(
                        path,
                        format!(
                            "no line is a valid JSON record; first: {}",
                            first_error.unwrap_or_default()
                        ),
                    ));
                }
            }
        }
    };
    match value {
        Value::Object(m) => Ok(m),
        other => Err(Error::file(
            path,
            format!(
                "expected records to be JSON objects, but the first record is {}",
                kind(&other)
            ),
        )),
    }
}

fn infer_from_record(path: &Path, first: &Map<String, Value>) -> Result<Format> {
    Format::from_keys(first).ok_or_else(|| {
        Error::file(
            path,
            format!(
                "cannot infer the format from the first record (keys: {}); pass --format (one of {})",
                keys_of(first),
                Format::names()
            ),
        )
    })
}

/// With an explicit format, fail early (not per record) when the first record has none of the
/// format's keys: the file is another format or not a data file at all.
fn check_format_matches(path: &Path, format: Format, first: &Map<String, Value>) -> Result<()> {
    if format
        .required_keys()
        .iter()
        .any(|k| first.contains_key(*k))
    {
        return Ok(());
    }
    let looks = match Format::from_keys(first) {
        Some(other) => format!("; it looks like {other}"),
        None => String::new(),
    };
    Err(Error::file(
        path,
        format!(
            "not a {} file: the first record has keys {}, expected {}{looks}",
            format.name(),
            keys_of(first),
            format.describe()
        ),
    ))
}

fn keys_of(map: &Map<String, Value>) -> String {
    if map.is_empty() {
        return "(none)".into();
    }
    map.keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The file name without any extensions (`train.jsonl.gz` → `train`).
fn file_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.split_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => name,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// What one well-formed record becomes.
enum Outcome {
    Example(Example),
    Excluded(&'static str),
}

type Conv<T> = std::result::Result<T, String>;

fn take(map: &mut Map<String, Value>, key: &str) -> Conv<Value> {
    map.remove(key)
        .ok_or_else(|| format!("missing field {key:?}"))
}

fn take_str(map: &mut Map<String, Value>, key: &str) -> Conv<String> {
    match take(map, key)? {
        Value::String(s) => Ok(s),
        other => Err(format!(
            "field {key:?} has wrong type (expected string, found {})",
            kind(&other)
        )),
    }
}

fn take_opt_str(map: &mut Map<String, Value>, key: &str) -> Conv<Option<String>> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!(
            "field {key:?} has wrong type (expected string, found {})",
            kind(&other)
        )),
    }
}

/// An id field: a string or an integer.
fn take_id(map: &mut Map<String, Value>, key: &str) -> Conv<String> {
    match take(map, key)? {
        Value::String(s) if !s.trim().is_empty() => Ok(s),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        other => Err(format!(
            "field {key:?} has wrong type (expected non-empty string or integer, found {})",
            if other.as_str().is_some() {
                "an empty string"
            } else {
                kind(&other)
            }
        )),
    }
}

fn take_str_list(map: &mut Map<String, Value>, key: &str) -> Conv<Vec<String>> {
    str_list(take(map, key)?, key)
}

fn str_list(v: Value, key: &str) -> Conv<Vec<String>> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                other => Err(format!(
                    "field {key:?}[{i}] has wrong type (expected string, found {})",
                    kind(&other)
                )),
            })
            .collect(),
        other => Err(format!(
            "field {key:?} has wrong type (expected list of strings, found {})",
            kind(&other)
        )),
    }
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Turn one parsed record into an example (or an exclusion, or a malformed-record message).
fn convert(format: Format, value: Value, stem: &str, n: usize) -> Conv<Outcome> {
    let mut map = match value {
        Value::Object(m) => m,
        other => return Err(format!("expected a JSON object, found {}", kind(&other))),
    };
    let m = &mut map;
    let ability = format.ability();
    let example = |id: String, turns: Vec<Turn>, meta: Meta| {
        Outcome::Example(Example {
            id,
            ability,
            turns,
            meta,
        })
    };
    Ok(match format {
        Format::Gsm8k | Format::Rft => {
            let (qk, ak, prefix) = match format {
                Format::Gsm8k => ("question", "answer", "gsm8k"),
                _ => ("query", "response", "rft"),
            };
            let question = take_str(m, qk)?;
            let answer = take_str(m, ak)?;
            if blank(&question) {
                return Ok(Outcome::Excluded("empty question"));
            }
            let reference = gsm8k_reference(&answer)
                .ok_or_else(|| format!("field {ak:?} has no final \"#### <number>\" line"))?;
            example(
                format!("{prefix}-{stem}-{n}"),
                vec![Turn::user(question), Turn::assistant(answer)],
                Meta {
                    reference: Some(reference),
                    ..Meta::default()
                },
            )
        }
        Format::CodeAlpaca => {
            let instruction = take_str(m, "instruction")?;
            let input = take_opt_str(m, "input")?.unwrap_or_default();
            let output = take_str(m, "output")?;
            if blank(&instruction) {
                return Ok(Outcome::Excluded("empty instruction"));
            }
            if blank(&output) {
                return Ok(Outcome::Excluded("empty output"));
            }
            example(
                format!("code_alpaca-{stem}-{n}"),
                vec![
                    Turn::user(alpaca_prompt(&instruction, &input)),
                    Turn::assistant(output),
                ],
                Meta::default(),
            )
        }
        Format::ShareGpt => {
            let id = take_id(m, "id")?;
            match sharegpt_turns(take(m, "conversations")?)? {
                Ok(turns) => example(id, turns, Meta::default()),
                Err(reason) => Outcome::Excluded(reason),
            }
        }
        Format::HumanEval => {
            let id = take_id(m, "task_id")?;
            let prompt = take_str(m, "prompt")?;
            let entry_point = take_str(m, "entry_point")?;
            let solution = take_str(m, "canonical_solution")?;
            let test = take_str(m, "test")?;
            if blank(&prompt) {
                return Ok(Outcome::Excluded("empty prompt"));
            }
            example(
                id,
                vec![Turn::user(prompt), Turn::assistant(solution)],
                Meta {
                    tests: Some(test),
                    entry_point: Some(entry_point),
                    ..Meta::default()
                },
            )
        }
        Format::MtBench => {
            let qid = take_id(m, "question_id")?;
            let category = take_str(m, "category")?;
            let turns = take_str_list(m, "turns")?;
            let reference = match m.remove("reference") {
                None | Some(Value::Null) => None,
                Some(v) => Some(str_list(v, "reference")?.join("\n\n")),
            };
            if turns.is_empty() {
                return Err("field \"turns\" is an empty list".into());
            }
            if turns.iter().any(|t| blank(t)) {
                return Ok(Outcome::Excluded("empty turn text"));
            }
            example(
                format!("mt_bench-{qid}"),
                turns.into_iter().map(Turn::user).collect(),
                Meta {
                    reference,
                    category: Some(category),
                    ..Meta::default()
                },
            )
        }
        Format::MtBenchReference => {
            let qid = take_id(m, "question_id")?;
            let choices = match take(m, "choices")? {
                Value::Array(c) => c,
                other => {
                    return Err(format!(
                        "field \"choices\" has wrong type (expected list, found {})",
                        kind(&other)
                    ));
                }
            };
            let Some(first) = choices.into_iter().next() else {
                return Err("field \"choices\" is an empty list".into());
            };
            let mut choice = match first {
                Value::Object(c) => c,
                other => {
                    return Err(format!(
                        "field \"choices\"[0] has wrong type (expected object, found {})",
                        kind(&other)
                    ));
                }
            };
            let turns =
                take_str_list(&mut choice, "turns").map_err(|e| format!("choices[0]: {e}"))?;
            if turns.is_empty() {
                return Err("field \"choices\"[0].\"turns\" is an empty list".into());
            }
            let reference = turns.join("\n\n");
            example(
                format!("mt_bench-{qid}"),
                turns.into_iter().map(Turn::assistant).collect(),
                Meta {
                    reference: Some(reference),
                    ..Meta::default()
                },
            )
        }
    })
}

/// The GSM8K final answer: the text after the last `####`, trimmed (kept as written, commas
/// included, e.g. `1,000`). None when there is no `####` or nothing after it.
pub fn gsm8k_reference(answer: &str) -> Option<String> {
    let (_, tail) = answer.rsplit_once("####")?;
    let tail = tail.trim();
    (!tail.is_empty()).then(|| tail.to_string())
}

/// The user turn of a Code Alpaca record, joined the way the Alpaca prompt does: the instruction,
/// then (when the input is not empty) a blank line and the input, both as written.
///
/// The real data marks "no input" in many spellings (`<noinput>`, `< noinput >`, `[noinput]`,
/// `No input.`, …): an input that is only such a marker (ignoring case, spaces and punctuation,
/// the letters are exactly "noinput") counts as empty.
pub fn alpaca_prompt(instruction: &str, input: &str) -> String {
    if blank(input) || is_noinput_marker(input) {
        instruction.to_string()
    } else {
        format!("{instruction}\n\n{input}")
    }
}

fn is_noinput_marker(input: &str) -> bool {
    let letters: String = input
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    letters == "noinput"
}

/// Map a ShareGPT `from` value to a role (case-insensitive).
pub fn sharegpt_role(from: &str) -> Option<Role> {
    match from.to_ascii_lowercase().as_str() {
        "human" | "user" => Some(Role::User),
        "gpt" | "chatgpt" | "assistant" | "bard" | "bing" => Some(Role::Assistant),
        "system" => Some(Role::System),
        _ => None,
    }
}

/// Parse and normalize a ShareGPT conversation. Outer error: malformed record; inner error: the
/// reason the (well-formed) conversation is excluded.
///
/// Rules, in order (FastChat's preprocessing, made explicit):
/// 1. An empty `conversations` list is malformed; so is an unknown `from` role.
/// 2. A `system` turn is kept only as the first turn; one later in the conversation excludes it
///    ("system turn after the start").
/// 3. Leading assistant turns (after an optional system turn) are dropped, as FastChat does: the
///    V3 "split" release cuts long chats into chunks, many of which start with `gpt`.
/// 4. No assistant turn left: excluded ("no assistant turn").
/// 5. Two consecutive turns with the same role (FastChat skips such conversations): excluded
///    ("consecutive turns with the same role").
/// 6. A turn with empty (whitespace-only) text: excluded ("empty turn text").
///
/// A trailing user turn is kept (it is context only; the loss mask never covers it).
fn sharegpt_turns(conv: Value) -> Conv<std::result::Result<Vec<Turn>, &'static str>> {
    let items = match conv {
        Value::Array(items) => items,
        other => {
            return Err(format!(
                "field \"conversations\" has wrong type (expected list, found {})",
                kind(&other)
            ));
        }
    };
    if items.is_empty() {
        return Err("empty conversation (field \"conversations\" is an empty list)".into());
    }
    let mut turns = Vec::with_capacity(items.len());
    for (k, item) in items.into_iter().enumerate() {
        let mut t = match item {
            Value::Object(t) => t,
            other => {
                return Err(format!(
                    "conversations[{k}] has wrong type (expected object with \"from\" and \"value\", found {})",
                    kind(&other)
                ));
            }
        };
        let from = take_str(&mut t, "from").map_err(|e| format!("conversations[{k}]: {e}"))?;
        let value = take_str(&mut t, "value").map_err(|e| format!("conversations[{k}]: {e}"))?;
        let role = sharegpt_role(&from).ok_or_else(|| {
            format!(
                "conversations[{k}]: unknown role {from:?} (expected human, user, gpt, chatgpt, assistant, bard, bing or system)"
            )
        })?;
        turns.push(Turn::new(role, value));
    }
    if turns.iter().skip(1).any(|t| t.role == Role::System) {
        return Ok(Err("system turn after the start"));
    }
    let body_start = usize::from(turns[0].role == Role::System);
    let lead = turns[body_start..]
        .iter()
        .take_while(|t| t.role == Role::Assistant)
        .count();
    turns.drain(body_start..body_start + lead);
    if !turns.iter().any(|t| t.role == Role::Assistant) {
        return Ok(Err("no assistant turn"));
    }
    if turns.windows(2).any(|w| w[0].role == w[1].role) {
        return Ok(Err("consecutive turns with the same role"));
    }
    if turns.iter().any(|t| blank(&t.content)) {
        return Ok(Err("empty turn text"));
    }
    Ok(Ok(turns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::from_name(f.name()).unwrap(), f);
        }
        assert_eq!(
            Format::from_name("Code-Alpaca").unwrap(),
            Format::CodeAlpaca
        );
        assert!(Format::from_name("csv").is_err());
    }

    #[test]
    fn noinput_markers_are_empty() {
        for m in [
            "<noinput>",
            "< noinput >",
            "No input.",
            "[noinput]",
            "<<noinput>>",
            "  ",
        ] {
            assert_eq!(alpaca_prompt("Do X.", m), "Do X.", "{m:?}");
        }
        assert_eq!(
            alpaca_prompt("Do X.", "x = <noinput>"),
            "Do X.\n\nx = <noinput>"
        );
    }

    #[test]
    fn gsm8k_reference_is_after_last_marker() {
        assert_eq!(gsm8k_reference("a\n#### 1,000 ").as_deref(), Some("1,000"));
        assert_eq!(gsm8k_reference("no marker"), None);
        assert_eq!(gsm8k_reference("#### "), None);
    }

    #[test]
    fn sharegpt_rules() {
        let conv = |pairs: &[(&str, &str)]| {
            Value::Array(
                pairs
                    .iter()
                    .map(|(f, v)| serde_json::json!({"from": f, "value": v}))
                    .collect(),
            )
        };
        let t = sharegpt_turns(conv(&[("gpt", "a"), ("human", "q"), ("gpt", "r")]))
            .unwrap()
            .unwrap();
        assert_eq!(t, vec![Turn::user("q"), Turn::assistant("r")]);
        let t = sharegpt_turns(conv(&[
            ("system", "s"),
            ("gpt", "a"),
            ("human", "q"),
            ("gpt", "r"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            t,
            vec![Turn::system("s"), Turn::user("q"), Turn::assistant("r")]
        );
        assert_eq!(
            sharegpt_turns(conv(&[("gpt", "a"), ("human", "q")])).unwrap(),
            Err("no assistant turn")
        );
        assert_eq!(
            sharegpt_turns(conv(&[("human", "a"), ("human", "q"), ("gpt", "r")])).unwrap(),
            Err("consecutive turns with the same role")
        );
        assert!(
            sharegpt_turns(conv(&[("robot", "a")]))
                .unwrap_err()
                .contains("unknown role \"robot\"")
        );
        assert!(
            sharegpt_turns(conv(&[]))
                .unwrap_err()
                .contains("empty conversation")
        );
    }
}
