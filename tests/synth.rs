//! The synthetic ability suite: determinism, exact formats, arithmetic and code correctness
//! (checked independently: annotations recomputed here, solutions run by python3), rule scores,
//! proportions, and train/held-out disjointness.
mod common;

use flate2::read::GzDecoder;
use mixprobe::data::read::{Format, ReadOptions, read_file};
use mixprobe::data::synth::{
    self, Flavour, GeneralEvalItem, Scale, SynthConfig, SynthSummary, load_general_eval,
    load_labels, score_general,
};
use predicates::prelude::PredicateBooleanExt;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

fn gen_suite(seed: u64, scale: Scale) -> (tempfile::TempDir, SynthSummary) {
    let dir = tempfile::tempdir().unwrap();
    let s = synth::generate(dir.path(), &SynthConfig { seed, scale }).unwrap();
    (dir, s)
}

fn bytes(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        assert_eq!(&raw[..2], &[0x1f, 0x8b], "{} is not gzip", path.display());
        assert_eq!(&raw[4..8], &[0, 0, 0, 0], "gzip mtime must be 0");
        let mut out = Vec::new();
        GzDecoder::new(&raw[..]).read_to_end(&mut out).unwrap();
        out
    } else {
        raw
    }
}

fn text(path: &Path) -> String {
    String::from_utf8(bytes(path)).unwrap()
}

/// Parse JSON Lines, asserting Python `json.dumps` spacing (re-serializing gives the same line).
fn jsonl(path: &Path) -> Vec<Map<String, Value>> {
    text(path)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let compact = serde_json::to_string(&v).unwrap();
            assert!(
                l.starts_with("{\"") && l.contains("\": ") && l.len() > compact.len(),
                "not Python spacing: {l}"
            );
            v.as_object().unwrap().clone()
        })
        .collect()
}

fn keys(m: &Map<String, Value>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

fn s<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m[k].as_str()
        .unwrap_or_else(|| panic!("{k} is not a string in {m:?}"))
}

fn sha(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

const DATA_FILES: [&str; 7] = [
    synth::MATH_TRAIN,
    synth::MATH_TEST,
    synth::CODE_TRAIN,
    synth::CODE_EVAL,
    synth::GENERAL_TRAIN,
    synth::GENERAL_EVAL,
    synth::LABELS,
];

#[test]
fn same_seed_gives_identical_files_and_another_seed_differs() {
    let (a, sa) = gen_suite(7, Scale::Small);
    let (b, _) = gen_suite(7, Scale::Small);
    let (c, _) = gen_suite(8, Scale::Small);
    for f in DATA_FILES.iter().chain(&[synth::MANIFEST, "README.md"]) {
        assert_eq!(
            sha(&a.path().join(f)),
            sha(&b.path().join(f)),
            "{f} differs for the same seed"
        );
    }
    for f in DATA_FILES {
        assert_ne!(
            sha(&a.path().join(f)),
            sha(&c.path().join(f)),
            "{f} is the same for another seed"
        );
        // The manifest's hashes and sizes are those of the files.
        let entry = sa.file(f).unwrap();
        assert_eq!(entry.sha256, sha(&a.path().join(f)), "{f}");
        assert_eq!(
            entry.bytes,
            std::fs::metadata(a.path().join(f)).unwrap().len(),
            "{f}"
        );
    }
    let manifest: Value = serde_json::from_str(&text(&a.path().join(synth::MANIFEST))).unwrap();
    assert_eq!(manifest["seed"], 7);
    assert_eq!(manifest["scale"], "small");
    assert_eq!(manifest["version"], synth::GENERATOR_VERSION);
    assert!(
        manifest["description"]
            .as_str()
            .unwrap()
            .contains("NOT comparable")
    );
}

/// Evaluate `a op b` on integers, exact division only.
fn calc(a: i64, op: char, b: i64) -> Option<i64> {
    match op {
        '+' => Some(a + b),
        '-' => Some(a - b),
        '*' => Some(a * b),
        '/' if b != 0 && a % b == 0 => Some(a / b),
        _ => None,
    }
}

#[test]
fn gsm8k_files_have_the_real_format_and_correct_arithmetic() {
    let (d, _) = gen_suite(11, Scale::Small);
    let ann =
        regex::Regex::new(r"(\d+) ([-+*/]) (\d+) = \$?<<(\d+)([-+*/])(\d+)=(\d+)>>(\d+)").unwrap();
    let any_ann = regex::Regex::new(r"<<[^>]*>>").unwrap();
    for f in [synth::MATH_TRAIN, synth::MATH_TEST] {
        let recs = jsonl(&d.path().join(f));
        for r in &recs {
            assert_eq!(keys(r), ["question", "answer"]);
            let (q, a) = (s(r, "question"), s(r, "answer"));
            let sentences = q.matches(['.', '?']).count();
            assert!((2..=3).contains(&sentences), "{q}");
            let lines: Vec<&str> = a.lines().collect();
            let last = lines.last().unwrap();
            let n: i64 = last
                .strip_prefix("#### ")
                .unwrap_or_else(|| panic!("no #### in {a}"))
                .parse()
                .unwrap();
            let mut steps = 0;
            let mut result = None;
            for l in &lines[..lines.len() - 1] {
                for c in ann.captures_iter(l) {
                    let g = |i: usize| c[i].parse::<i64>().unwrap();
                    let op = c[2].chars().next().unwrap();
                    // The text before the annotation, the annotation and the number after agree.
                    assert_eq!((g(1), &c[2], g(3)), (g(4), &c[5], g(6)), "{l}");
                    let v = calc(g(4), op, g(6)).unwrap_or_else(|| panic!("inexact: {l}"));
                    assert_eq!(v, g(7), "wrong annotation in {l}");
                    assert_eq!(v, g(8), "wrong result after annotation in {l}");
                    steps += 1;
                    result = Some(v);
                }
                assert_eq!(
                    any_ann.find_iter(l).count(),
                    ann.find_iter(l).count(),
                    "unparsed annotation: {l}"
                );
            }
            assert!((2..=4).contains(&steps), "{steps} steps in {a}");
            assert_eq!(result, Some(n), "#### is not the last result: {a}");
        }
    }
}

#[test]
fn code_alpaca_and_humaneval_files_have_the_real_format() {
    let (d, _) = gen_suite(12, Scale::Small);
    let raw = text(&d.path().join(synth::CODE_TRAIN));
    assert!(
        raw.starts_with("[\n    {\n        \"instruction\": "),
        "not indent=4"
    );
    assert!(raw.ends_with("\n]\n"));
    let list: Vec<Map<String, Value>> = serde_json::from_str(&raw).unwrap();
    for r in &list {
        assert_eq!(keys(r), ["instruction", "input", "output"]);
        assert!(s(r, "output").starts_with("def "), "{r:?}");
        assert!(s(r, "output").lines().count() <= 14, "too long: {r:?}");
    }
    let he = jsonl(&d.path().join(synth::CODE_EVAL));
    for (i, r) in he.iter().enumerate() {
        assert_eq!(
            keys(r),
            [
                "task_id",
                "prompt",
                "entry_point",
                "canonical_solution",
                "test"
            ]
        );
        assert_eq!(s(r, "task_id"), format!("Synth/{i}"));
        assert!(s(r, "prompt").starts_with(&format!("def {}(", s(r, "entry_point"))));
        assert!(s(r, "prompt").contains("\"\"\"") && s(r, "prompt").contains(">>> "));
        assert!(
            s(r, "canonical_solution").starts_with("    ")
                && s(r, "canonical_solution").ends_with('\n')
        );
        let body_lines = s(r, "canonical_solution").lines().count();
        assert!((1..=6).contains(&body_lines), "{body_lines} lines");
        assert!(s(r, "test").starts_with("\n\ndef check(candidate):\n    assert candidate("));
    }
}

const PY_CHECK: &str = r#"
import contextlib, io, json, sys
data = json.load(sys.stdin)
res = {"pass": 0, "wrong_pass": 0, "doc_ok": 0, "train_ok": 0, "train_printed_ok": 0, "errors": []}
for p in data["eval"]:
    prog = p["prompt"] + p["canonical_solution"] + p["test"] + "\ncheck(" + p["entry_point"] + ")\n"
    try:
        exec(prog, {})
        res["pass"] += 1
    except Exception as e:
        res["errors"].append(p["task_id"] + ": " + repr(e))
    wrong = p["prompt"] + "    return None\n" + p["test"] + "\ncheck(" + p["entry_point"] + ")\n"
    try:
        exec(wrong, {})
        res["wrong_pass"] += 1
    except Exception:
        pass
    # The docstring example shows what the canonical solution returns.
    g = {}
    exec(p["prompt"] + p["canonical_solution"], g)
    lines = p["prompt"].splitlines()
    i = [k for k, l in enumerate(lines) if l.strip().startswith(">>> ")][0]
    call, shown = lines[i].strip()[4:], lines[i + 1].strip()
    if repr(eval(call, g)) == shown:
        res["doc_ok"] += 1
    else:
        res["errors"].append(p["task_id"] + ": docstring " + call + " shows " + shown)
for t in data["train"]:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(t["output"], {})
        res["train_ok"] += 1
    except Exception as e:
        res["errors"].append("train: " + repr(e) + " in " + t["output"])
    if "  # " in t["output"]:
        if out.getvalue() == t["output"].rsplit("  # ", 1)[1] + "\n":
            res["train_printed_ok"] += 1
        else:
            res["errors"].append("train print: " + out.getvalue() + " vs " + t["output"])
print(json.dumps(res))
"#;

#[test]
fn canonical_solutions_pass_their_checks_and_wrong_ones_fail() {
    let (d, _) = gen_suite(13, Scale::Small);
    let eval = jsonl(&d.path().join(synth::CODE_EVAL));
    let train: Vec<Value> = serde_json::from_str(&text(&d.path().join(synth::CODE_TRAIN))).unwrap();
    let printed = train
        .iter()
        .filter(|t| t["output"].as_str().unwrap().contains("  # "))
        .count();
    let input = serde_json::json!({"eval": eval, "train": train});
    let mut child = Command::new("python3")
        .args(["-c", PY_CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect(
            "python3 is required to check the generated Python (the sandbox scorer needs it too)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed");
    let res: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(res["errors"], serde_json::json!([]));
    assert_eq!(res["pass"], eval.len());
    assert_eq!(res["wrong_pass"], 0);
    assert_eq!(res["doc_ok"], eval.len());
    assert_eq!(res["train_ok"], train.len());
    assert!(printed > 100, "{printed} write-and-run training records");
    assert_eq!(res["train_printed_ok"], printed);
}

#[test]
fn sharegpt_eval_and_labels_have_the_expected_format() {
    let (d, summary) = gen_suite(14, Scale::Small);
    let convs = jsonl(&d.path().join(synth::GENERAL_TRAIN));
    let labels = load_labels(&d.path().join(synth::LABELS)).unwrap();
    let mut ids = HashSet::new();
    for c in &convs {
        assert_eq!(keys(c), ["id", "conversations"]);
        let id = s(c, "id");
        assert!(ids.insert(id.to_string()), "duplicate id {id}");
        assert!(labels.labels.contains_key(id), "{id} has no label");
        let turns = c["conversations"].as_array().unwrap();
        assert!(turns.len() >= 2 && turns.len() % 2 == 0 && turns.len() <= 6);
        for (i, t) in turns.iter().enumerate() {
            let t = t.as_object().unwrap();
            assert_eq!(keys(t), ["from", "value"]);
            assert_eq!(s(t, "from"), if i % 2 == 0 { "human" } else { "gpt" });
            assert!(!s(t, "value").trim().is_empty());
            if i % 2 == 1 {
                assert!(s(t, "value").lines().count() <= 4, "answer too long: {t:?}");
            }
        }
    }
    assert_eq!(labels.labels.len(), convs.len());
    assert_eq!(labels.counts.values().sum::<usize>(), convs.len());
    assert_eq!(labels.counts, summary.flavours);
    for l in jsonl(&d.path().join(synth::GENERAL_EVAL)) {
        assert_eq!(keys(&l), ["id", "conversations", "flavour", "task", "rule"]);
        assert!(l["rule"]["kind"].is_string());
    }
    let items = load_general_eval(&d.path().join(synth::GENERAL_EVAL)).unwrap();
    assert_eq!(labels.eval_labels.len(), items.len());
    for it in &items {
        assert_eq!(labels.eval_labels[&it.id], it.flavour);
        assert_eq!(it.prompt_turns().len() + 1, it.conversations.len());
    }
    // Every file is plain ASCII (what Python's json.dumps writes with ensure_ascii).
    for f in DATA_FILES {
        assert!(bytes(&d.path().join(f)).is_ascii(), "{f} is not ASCII");
    }
}

#[test]
fn references_score_ten_and_other_items_references_score_low() {
    let (d, _) = gen_suite(15, Scale::Small);
    let items = load_general_eval(&d.path().join(synth::GENERAL_EVAL)).unwrap();
    for it in &items {
        assert_eq!(score_general(it, it.reference()), 10, "{}: {:?}", it.id, it);
        assert_eq!(score_general(it, ""), 1);
    }
    let n = items.len();
    let shuffled: Vec<u8> = (0..n)
        .map(|i| score_general(&items[i], items[(i + n / 2) % n].reference()))
        .collect();
    let mean = shuffled.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    eprintln!("other items' references: mean score {mean:.2} over {n} items");
    assert!(mean <= 3.0, "mean score of other items' references {mean}");
    let tasks: HashSet<&str> = items.iter().map(|i| i.task.as_str()).collect();
    assert!(
        tasks.len() >= 18,
        "only {} tasks in the eval set",
        tasks.len()
    );
}

#[test]
fn proportions_follow_the_paper_and_a_quarter_of_general_is_flavoured() {
    for scale in [Scale::Small, Scale::Medium] {
        let (d, s) = gen_suite(16, scale);
        let rec = |p: &str| s.file(p).unwrap().records;
        let (m, g, c) = (
            rec(synth::MATH_TRAIN),
            rec(synth::GENERAL_TRAIN),
            rec(synth::CODE_TRAIN),
        );
        assert!(m > g && g > c, "{scale}: math {m}, general {g}, code {c}");
        let (me, ce, ge) = (
            rec(synth::MATH_TEST),
            rec(synth::CODE_EVAL),
            rec(synth::GENERAL_EVAL),
        );
        match scale {
            Scale::Small => assert_eq!((m, g, c, me, ce, ge), (3000, 2000, 1200, 200, 80, 150)),
            Scale::Medium => assert_eq!((m, g, c, me, ce, ge), (12000, 8000, 4800, 400, 160, 300)),
        }
        let labels = load_labels(&d.path().join(synth::LABELS)).unwrap();
        for (counts, total) in [(&labels.counts, g), (&labels.eval_counts, ge)] {
            let flavoured = counts[&Flavour::Code] + counts[&Flavour::Math];
            let frac = flavoured as f64 / total as f64;
            assert!(
                (0.20..=0.30).contains(&frac),
                "{scale}: flavoured fraction {frac}"
            );
            assert!(counts[&Flavour::Code] > 0 && counts[&Flavour::Math] > 0);
        }
    }
}

fn human_turns(convs: &[Map<String, Value>]) -> HashSet<String> {
    convs
        .iter()
        .flat_map(|c| c["conversations"].as_array().unwrap().clone())
        .filter(|t| t["from"] == "human")
        .map(|t| t["value"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn no_eval_item_appears_verbatim_in_training() {
    for scale in [Scale::Small, Scale::Medium] {
        let (d, _) = gen_suite(17, scale);
        let p = |f: &str| d.path().join(f);
        let train_q: HashSet<String> = jsonl(&p(synth::MATH_TRAIN))
            .iter()
            .map(|r| s(r, "question").to_string())
            .collect();
        let test_q: Vec<String> = jsonl(&p(synth::MATH_TEST))
            .iter()
            .map(|r| s(r, "question").to_string())
            .collect();
        assert!(test_q.iter().all(|q| !train_q.contains(q)));
        assert_eq!(
            test_q.iter().collect::<HashSet<_>>().len(),
            test_q.len(),
            "duplicate test questions"
        );

        let train: Vec<Map<String, Value>> =
            serde_json::from_str(&text(&p(synth::CODE_TRAIN))).unwrap();
        for e in jsonl(&p(synth::CODE_EVAL)) {
            let prompt = s(&e, "prompt");
            let def_line = prompt.lines().next().unwrap();
            let plain = format!("{def_line}\n{}", s(&e, "canonical_solution").trim_end());
            for t in &train {
                assert_ne!(s(t, "input"), prompt);
                assert!(!s(t, "instruction").contains(prompt));
                assert!(
                    !s(t, "output").contains(&plain),
                    "eval function {plain:?} is in training"
                );
                assert!(
                    !s(t, "output").contains(prompt.trim_end()),
                    "eval prompt is in training"
                );
            }
        }

        let humans = human_turns(&jsonl(&p(synth::GENERAL_TRAIN)));
        let items: Vec<GeneralEvalItem> = load_general_eval(&p(synth::GENERAL_EVAL)).unwrap();
        for it in &items {
            for m in it.conversations.iter().filter(|m| m.from == "human") {
                assert!(
                    !humans.contains(&m.value),
                    "{} asks a training question: {}",
                    it.id,
                    m.value
                );
            }
        }
    }
}

#[test]
fn the_readers_read_every_generated_file_without_skipping() {
    let (d, s) = gen_suite(18, Scale::Small);
    let opts = ReadOptions::default();
    for (f, format) in [
        (synth::MATH_TRAIN, Format::Gsm8k),
        (synth::MATH_TEST, Format::Gsm8k),
        (synth::CODE_TRAIN, Format::CodeAlpaca),
        (synth::CODE_EVAL, Format::HumanEval),
        (synth::GENERAL_TRAIN, Format::ShareGpt),
        (synth::GENERAL_EVAL, Format::ShareGpt),
    ] {
        let path = d.path().join(f);
        let loaded = read_file(&path, Some(format), &opts).unwrap();
        assert_eq!(Format::infer(&path).unwrap(), format, "{f}");
        assert!(
            loaded.skipped.is_empty() && loaded.excluded.is_empty(),
            "{f}: {:?}",
            loaded.excluded
        );
        assert_eq!(loaded.examples.len(), s.file(f).unwrap().records, "{f}");
    }
}

#[test]
fn load_general_eval_reports_bad_lines() {
    let (d, _) = gen_suite(19, Scale::Small);
    let good = text(&d.path().join(synth::GENERAL_EVAL));
    let mut lines: Vec<String> = good.lines().take(3).map(String::from).collect();
    lines[1] = lines[1].replace("\"gpt\"", "\"bot\"");
    let bad = d.path().join("bad.jsonl");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let e = load_general_eval(&bad).unwrap_err().to_string();
    assert!(
        e.contains("bad.jsonl") && e.contains("line 2") && e.contains("gpt"),
        "{e}"
    );
    std::fs::write(&bad, "").unwrap();
    assert!(
        load_general_eval(&bad)
            .unwrap_err()
            .to_string()
            .contains("no general eval items")
    );
}

#[test]
fn cli_writes_the_suite_and_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("suite");
    common::bin()
        .args([
            "data",
            "synth",
            "--out",
            out.to_str().unwrap(),
            "--seed",
            "3",
        ])
        .assert()
        .success()
        .stdout(
            predicates::str::contains("gsm8k/train.jsonl")
                .and(predicates::str::contains("code 250")),
        );
    let m: Value = serde_json::from_str(&text(&out.join(synth::MANIFEST))).unwrap();
    assert_eq!(
        (m["seed"].as_u64(), m["scale"].as_str()),
        (Some(3), Some("small"))
    );
    common::bin()
        .args([
            "data",
            "synth",
            "--out",
            out.to_str().unwrap(),
            "--scale",
            "huge",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("small or medium"));
    let file = dir.path().join("a_file");
    std::fs::write(&file, "x").unwrap();
    common::bin()
        .args(["data", "synth", "--out", file.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("not a directory"));
}
