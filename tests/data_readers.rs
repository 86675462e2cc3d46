//! The readers on the real shared data: exact record counts from data/SOURCES.md, exclusions
//! recomputed independently (Python over the raw file, documented per test), and spot checks.
mod common;

use mixprobe::Location;
use mixprobe::data::read::{Format, ReadOptions, read_file};
use mixprobe::data::{Ability, Role, Turn};
use std::path::Path;

fn read(path: &Path, format: Option<Format>) -> mixprobe::data::read::Loaded {
    read_file(path, format, &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn gsm8k_train_and_test() {
    let shared = require_shared!();
    let train = read(&shared.join("data/gsm8k/train.jsonl"), None);
    assert_eq!(train.format, Format::Gsm8k);
    assert_eq!(
        (
            train.examples.len(),
            train.skipped.len(),
            train.excluded.len()
        ),
        (7473, 0, 0)
    );
    let first = &train.examples[0];
    assert_eq!(first.id, "gsm8k-train-0");
    assert_eq!(first.ability, Ability::Math);
    assert!(
        first.turns[0]
            .content
            .starts_with("Natalia sold clips to 48 of her friends in April")
    );
    assert_eq!(first.turns[0].role, Role::User);
    assert_eq!(first.turns[1].role, Role::Assistant);
    assert!(first.turns[1].content.ends_with("#### 72"));
    assert_eq!(first.meta.reference.as_deref(), Some("72"));
    let second = &train.examples[1];
    assert_eq!(second.meta.reference.as_deref(), Some("10"));
    assert_eq!(second.id, "gsm8k-train-1");

    let test = read(&shared.join("data/gsm8k/test.jsonl"), Some(Format::Gsm8k));
    assert_eq!(test.examples.len(), 1319);
    assert!(test.examples.iter().all(|e| e.meta.reference.is_some()));
    // Commas are kept as written: 79 train answers end in a number with a thousands separator.
    let with_comma = train
        .examples
        .iter()
        .filter(|e| e.meta.reference.as_deref().is_some_and(|r| r.contains(',')))
        .count();
    assert_eq!(with_comma, 79);
}

#[test]
fn code_alpaca_joins_input_and_excludes_empty_outputs() {
    let shared = require_shared!();
    let l = read(&shared.join("data/codealpaca/code_alpaca_20k.json"), None);
    assert_eq!(l.format, Format::CodeAlpaca);
    assert_eq!(l.records(), 20_022);
    // 6 records have an empty output (records 1016, 9984, 12005, 14016, 15132, 16859).
    assert_eq!(l.excluded.len(), 6);
    assert_eq!(l.excluded[0].location, Location::Index(1016));
    assert_eq!(l.excluded[0].reason, "empty output");
    assert_eq!(l.examples.len(), 20_016);
    let e0 = &l.examples[0];
    assert_eq!(e0.id, "code_alpaca-code_alpaca_20k-0");
    assert_eq!(e0.ability, Ability::Code);
    assert_eq!(
        e0.turns[0].content,
        "Read the code below and edit it to make the output for the given input.\n\n\
         def sum_two(a, b):\n     return a + b\n\nInput: a = 5, b = 10"
    );
    // Record 2 has an empty input: the prompt is the instruction alone.
    assert_eq!(
        l.examples[2].turns[0].content,
        "Create generic functions for a for-each loop in JavaScript."
    );
    // Record 5308 has the input "< noinput >", which means empty.
    let e = l
        .examples
        .iter()
        .find(|e| e.id == "code_alpaca-code_alpaca_20k-5308")
        .unwrap();
    assert_eq!(
        e.turns[0].content,
        "Write a function to generate the nth Fibonacci number."
    );
}

#[test]
fn sharegpt_subset_counts_and_leading_gpt_drop() {
    let shared = require_shared!();
    let path = shared.join("data/sharegpt/sharegpt_v3_subset_10k.jsonl.gz");
    let start = std::time::Instant::now();
    let l = read(&path, None);
    eprintln!("sharegpt 10k read in {:?}", start.elapsed());
    assert_eq!(l.format, Format::ShareGpt);
    assert_eq!(l.records(), 10_000);
    assert!(l.skipped.is_empty());
    // Recomputed in Python from the raw file with the documented rules: 37 conversations have
    // consecutive same-role turns (after dropping leading gpt turns); 19 more have an empty turn.
    assert_eq!(
        l.excluded_by_reason(),
        vec![
            ("consecutive turns with the same role".to_string(), 37),
            ("empty turn text".to_string(), 19)
        ]
    );
    assert_eq!(l.examples.len(), 9_944);
    assert!(
        l.examples
            .iter()
            .all(|e| e.ability == Ability::General && e.assistant_turns() > 0)
    );
    // Every example starts with a user (or system) turn: the 3,615 leading gpt turns are dropped.
    assert!(
        l.examples
            .iter()
            .all(|e| e.turns[0].role != Role::Assistant)
    );
    // Line 4, "hRPPgZT_11": 7 turns, the first from gpt ("Lo and behold! …"); 6 remain.
    let e = l.examples.iter().find(|e| e.id == "hRPPgZT_11").unwrap();
    assert_eq!(e.turns.len(), 6);
    assert_eq!(e.turns[0], Turn::user("More verbose and details"));
    assert!(
        !e.turns
            .iter()
            .any(|t| t.content.starts_with("Lo and behold!"))
    );
    // The 12 TypingMind conversations keep their leading system turn.
    let sys = l
        .examples
        .iter()
        .filter(|e| e.turns[0].role == Role::System)
        .count();
    assert_eq!(sys, 12);
    let first = &l.examples[0];
    assert_eq!(first.id, "QWJhYvA_0");
    assert!(
        first.turns[0]
            .content
            .starts_with("Summarize the main ideas of Jeff Walker's Product Launch Formula")
    );
}

#[test]
fn sharegpt_smoke_is_a_prefix_of_the_subset() {
    let shared = require_shared!();
    let smoke = read(
        &shared.join("data/sharegpt/smoke_256.jsonl"),
        Some(Format::ShareGpt),
    );
    assert_eq!(smoke.records(), 256);
    let full = read(
        &shared.join("data/sharegpt/sharegpt_v3_subset_10k.jsonl.gz"),
        None,
    );
    let n = smoke.examples.len();
    assert_eq!(smoke.examples[..], full.examples[..n]);
}

#[test]
fn humaneval() {
    let shared = require_shared!();
    let l = read(&shared.join("data/humaneval/HumanEval.jsonl.gz"), None);
    assert_eq!(l.format, Format::HumanEval);
    assert_eq!(l.examples.len(), 164);
    let e = &l.examples[0];
    assert_eq!(e.id, "HumanEval/0");
    assert_eq!(e.ability, Ability::Code);
    assert!(
        e.turns[0]
            .content
            .starts_with("from typing import List\n\n\ndef has_close_elements(")
    );
    assert_eq!(e.meta.entry_point.as_deref(), Some("has_close_elements"));
    assert!(
        e.meta
            .tests
            .as_deref()
            .unwrap()
            .contains("def check(candidate)")
    );
    assert_eq!(e.turns[1].role, Role::Assistant);
    assert_eq!(l.examples[163].id, "HumanEval/163");
}

#[test]
fn mt_bench_questions_and_references() {
    let shared = require_shared!();
    let q = read(&shared.join("data/mt_bench/question.jsonl"), None);
    assert_eq!(q.format, Format::MtBench);
    assert_eq!(q.examples.len(), 80);
    let e = &q.examples[0];
    assert_eq!(e.id, "mt_bench-81");
    assert_eq!(e.meta.category.as_deref(), Some("writing"));
    assert_eq!(e.turns.len(), 2);
    assert!(e.turns.iter().all(|t| t.role == Role::User));
    assert!(
        e.turns[1]
            .content
            .starts_with("Rewrite your previous response. Start every sentence with the letter A.")
    );
    assert_eq!(
        q.examples
            .iter()
            .filter(|e| e.meta.reference.is_some())
            .count(),
        39
    );
    let q95 = q.examples.iter().find(|e| e.id == "mt_bench-95").unwrap();
    assert_eq!(q95.meta.category.as_deref(), Some("roleplay"));
    assert!(
        q95.meta
            .reference
            .as_deref()
            .unwrap()
            .contains("\n\nIt means \"I don’t understand anything\".")
    );

    let r = read(
        &shared.join("data/mt_bench/reference_answer/gpt-4.jsonl"),
        None,
    );
    assert_eq!(r.format, Format::MtBenchReference);
    assert_eq!(r.examples.len(), 30);
    let e = &r.examples[0];
    assert_eq!(e.id, "mt_bench-101");
    assert_eq!(e.turns.len(), 2);
    assert!(e.turns[0].content.starts_with(
        "If you have just overtaken the second person, your current position is now second place."
    ));
    // Every reference joins a question by id.
    assert!(
        r.examples
            .iter()
            .all(|a| q.examples.iter().any(|q| q.id == a.id))
    );

    // Model answers share the reference format.
    let m = read(
        &shared.join("data/mt_bench/model_answer/vicuna-7b-v1.3.jsonl"),
        None,
    );
    assert_eq!((m.format, m.examples.len()), (Format::MtBenchReference, 80));
}

#[test]
fn infer_matches_read() {
    let shared = require_shared!();
    for (rel, f) in [
        ("data/gsm8k/smoke_train_256.jsonl", Format::Gsm8k),
        ("data/codealpaca/smoke_256.json", Format::CodeAlpaca),
        ("data/sharegpt/smoke_256.jsonl", Format::ShareGpt),
        ("data/humaneval/HumanEval.jsonl.gz", Format::HumanEval),
        ("data/mt_bench/question.jsonl", Format::MtBench),
        (
            "data/mt_bench/reference_answer/gpt-4.jsonl",
            Format::MtBenchReference,
        ),
    ] {
        assert_eq!(Format::infer(&shared.join(rel)).unwrap(), f, "{rel}");
    }
    // The judge prompts are not a data format: inference says so.
    let err = Format::infer(&shared.join("data/mt_bench/judge_prompts.jsonl")).unwrap_err();
    assert!(err.to_string().contains("cannot infer the format"), "{err}");
}

#[test]
fn rft_format() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rft.jsonl");
    std::fs::write(
        &p,
        "{\"query\": \"What is 2+3?\", \"response\": \"2+3 = <<2+3=5>>5\\n#### 5\"}\n\n\
         {\"query\": \"What is 2*3?\", \"response\": \"2*3 = 6\\n#### 6\"}\n",
    )
    .unwrap();
    let l = read(&p, None);
    assert_eq!(l.format, Format::Rft);
    let ids: Vec<_> = l.examples.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["rft-rft-0", "rft-rft-2"]);
    assert_eq!(l.examples[1].meta.reference.as_deref(), Some("6"));
    assert_eq!(l.examples[0].ability, Ability::Math);
}

#[test]
fn sharegpt_json_list_container() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("conv.json");
    std::fs::write(
        &p,
        r#"[
  {"id": "a", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
  {"id": "b", "conversations": [{"from": "human", "value": "only a question"}]},
  {"id": "c", "conversations": [{"from": "user", "value": "q"}, {"from": "chatgpt", "value": "r"}]}
]"#,
    )
    .unwrap();
    let l = read(&p, None);
    assert_eq!(l.examples.len(), 2);
    assert_eq!(l.excluded.len(), 1);
    assert_eq!(l.excluded[0].location, Location::Index(1));
    assert_eq!(l.excluded[0].reason, "no assistant turn");
    assert_eq!(
        l.examples[1].turns,
        vec![Turn::user("q"), Turn::assistant("r")]
    );
}
