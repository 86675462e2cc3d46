//! Malformed input through the CLI (`mixprobe data stats FILE`): every case exits with code 2,
//! names the file, the line or record where there is one, and what was wrong or expected, and
//! never panics. With --skip-invalid the files with bad records succeed and report the count.
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

const GOOD_GSM8K: &str = r#"{"question": "What is 1+1?", "answer": "1+1 = 2\n#### 2"}"#;
const GOOD_SHAREGPT: &str = r#"{"id": "a1", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}"#;

/// One bad input: the file's name and bytes, extra flags, and fragments stderr must contain.
struct Case {
    name: &'static str,
    file: &'static str,
    bytes: Vec<u8>,
    args: Vec<&'static str>,
    expect: Vec<&'static str>,
}

fn case(
    name: &'static str,
    file: &'static str,
    bytes: impl Into<Vec<u8>>,
    expect: &[&'static str],
) -> Case {
    Case {
        name,
        file,
        bytes: bytes.into(),
        args: vec![],
        expect: expect.to_vec(),
    }
}

fn lines(ls: &[&str]) -> Vec<u8> {
    let mut s = ls.join("\n");
    s.push('\n');
    s.into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn cases() -> Vec<Case> {
    let many_gsm8k: Vec<String> = (0..200)
        .map(|i| {
            format!(
                r#"{{"question": "What is {i}+1? {}", "answer": "It is {}\n#### {}"}}"#,
                "pad ".repeat(20),
                i + 1,
                i + 1
            )
        })
        .collect();
    let big = gzip(many_gsm8k.join("\n").as_bytes());
    let truncated = big[..big.len() / 2].to_vec();
    let mut bad_utf8 = lines(&[GOOD_GSM8K]);
    bad_utf8.extend_from_slice(b"{\"question\": \"caf\xe9?\", \"answer\": \"#### 1\"}\n");
    let mut bad_utf8_list = b"[\n  {\"instruction\": \"a\", \"input\": \"\", \"output\": \"b\"},\n  {\"instruction\": \"\xff\", \"input\": \"\", \"output\": \"b\"}\n]".to_vec();
    bad_utf8_list.push(b'\n');
    vec![
        case(
            "bad JSON line",
            "bad_json.jsonl",
            lines(&[
                GOOD_GSM8K,
                "{\"question\": \"q\", \"answer\": \"#### 1\"",
                GOOD_GSM8K,
            ]),
            &["line 2", "bad JSON", "EOF while parsing an object"],
        ),
        case(
            "missing field",
            "missing.jsonl",
            lines(&[GOOD_GSM8K, GOOD_GSM8K, r#"{"question": "q"}"#]),
            &["line 3", "missing field \"answer\""],
        ),
        case(
            "wrong type",
            "wrong_type.jsonl",
            lines(&["{\"question\": 5, \"answer\": \"#### 5\"}", GOOD_GSM8K]),
            &[
                "line 1",
                "field \"question\" has wrong type (expected string, found a number)",
            ],
        ),
        case(
            "empty file",
            "empty.jsonl",
            "",
            &["empty file", "expected JSON Lines or a JSON list"],
        ),
        case("blank file", "blank.json", "\n  \n\t\n", &["empty file"]),
        case(
            "empty JSON list",
            "empty_list.json",
            "[]\n",
            &["empty JSON list", "at least one record"],
        ),
        case(
            "truncated gzip",
            "truncated.jsonl.gz",
            truncated,
            &["gzip stream is truncated or corrupt"],
        ),
        case(
            "invalid UTF-8 line",
            "latin1.jsonl",
            bad_utf8,
            &["line 2", "invalid UTF-8 at byte offset 17"],
        ),
        case(
            "invalid UTF-8 in a JSON list",
            "latin1_list.json",
            bad_utf8_list,
            &["invalid UTF-8 at line 3", "byte offset"],
        ),
        case(
            "unknown role",
            "roles.jsonl",
            lines(&[
                GOOD_SHAREGPT,
                r#"{"id": "b", "conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "r"}]}"#,
            ]),
            &[
                "line 2",
                "conversations[1]",
                "unknown role \"robot\"",
                "expected human, user, gpt",
            ],
        ),
        case(
            "zero-length conversation",
            "empty_conv.jsonl",
            lines(&[GOOD_SHAREGPT, r#"{"id": "c", "conversations": []}"#]),
            &["line 2", "empty conversation"],
        ),
        case(
            "conversations of the wrong type",
            "conv_type.jsonl",
            lines(&[GOOD_SHAREGPT, r#"{"id": "d", "conversations": "hi"}"#]),
            &[
                "line 2",
                "field \"conversations\" has wrong type (expected list, found a string)",
            ],
        ),
        case(
            "turn without value",
            "turn_value.jsonl",
            lines(&[
                GOOD_SHAREGPT,
                r#"{"id": "e", "conversations": [{"from": "human"}]}"#,
            ]),
            &["line 2", "conversations[0]: missing field \"value\""],
        ),
        case(
            "duplicate id",
            "dup.jsonl",
            lines(&[GOOD_SHAREGPT, GOOD_SHAREGPT]),
            &["line 2", "duplicate id \"a1\" (first at line 1)"],
        ),
        case(
            "a JSON object instead of a list",
            "object.json",
            "{\n  \"instruction\": \"a\",\n  \"input\": \"\",\n  \"output\": \"b\"\n}\n",
            &[
                "one JSON object spanning several lines",
                "expected a JSON list",
            ],
        ),
        case(
            "syntax error inside a JSON list",
            "list.json",
            "[\n  {\"instruction\": \"a\", \"input\": \"\", \"output\": \"b\"},\n  {\"instruction\": \"a\" \"input\": \"\"}\n]\n",
            &["bad JSON in record 1", "line 3"],
        ),
        case(
            "record that is not an object",
            "not_object.jsonl",
            lines(&[GOOD_GSM8K, "[1, 2]"]),
            &["line 2", "expected a JSON object, found a list"],
        ),
        case(
            "GSM8K answer without a final number",
            "no_answer.jsonl",
            lines(&[
                GOOD_GSM8K,
                r#"{"question": "q", "answer": "no final line"}"#,
            ]),
            &[
                "line 2",
                "field \"answer\" has no final \"#### <number>\" line",
            ],
        ),
        case(
            "unknown keys",
            "unknown.jsonl",
            lines(&[r#"{"prompt": "p", "completion": "c"}"#]),
            &[
                "cannot infer the format",
                "keys: prompt, completion",
                "pass --format",
            ],
        ),
        case(
            "not JSON at all",
            "table.csv",
            "question,answer\n1,2\n",
            &["not JSON", "found 'q' at line 1"],
        ),
        Case {
            name: "format mismatch",
            file: "gsm8k_as_sharegpt.jsonl",
            bytes: lines(&[GOOD_GSM8K]),
            args: vec!["--format", "sharegpt"],
            expect: vec![
                "not a sharegpt file",
                "keys question, answer",
                "expected sharegpt records",
                "looks like gsm8k",
            ],
        },
        Case {
            name: "MT-Bench turns of the wrong type",
            file: "mtb.jsonl",
            bytes: lines(&[
                r#"{"question_id": 1, "category": "writing", "turns": ["a", "b"]}"#,
                r#"{"question_id": 2, "category": "writing", "turns": ["a", 3]}"#,
            ]),
            args: vec!["--format", "mt_bench"],
            expect: vec![
                "line 2",
                "field \"turns\"[1] has wrong type (expected string, found a number)",
            ],
        },
    ]
}

fn write(dir: &Path, c: &Case) -> PathBuf {
    let p = dir.join(c.file);
    std::fs::write(&p, &c.bytes).unwrap();
    p
}

/// Run `mixprobe data stats ARGS... FILE`, returning (exit code, stdout, stderr).
fn stats(args: &[&str], file: &Path) -> (i32, String, String) {
    let out = common::bin()
        .args(["data", "stats"])
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_malformed_case_exits_2_with_a_located_message() {
    let dir = tempfile::tempdir().unwrap();
    let all = cases();
    assert!(all.len() >= 16);
    let mut failures = Vec::new();
    for c in &all {
        let path = write(dir.path(), c);
        let (code, _, err) = stats(&c.args, &path);
        let mut problems = Vec::new();
        if code != 2 {
            problems.push(format!("exit code {code}"));
        }
        if err.contains("panicked") {
            problems.push("panicked".into());
        }
        if !err.contains(path.to_str().unwrap()) {
            problems.push("file not named".into());
        }
        for e in &c.expect {
            if !err.contains(e) {
                problems.push(format!("missing {e:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n  stderr: {}",
                c.name,
                problems.join("; "),
                err.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_file_with_bad_records_counts_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two_bad.jsonl");
    std::fs::write(
        &path,
        lines(&[
            GOOD_GSM8K,
            "{oops",
            GOOD_GSM8K,
            r#"{"question": "q"}"#,
            GOOD_GSM8K,
        ]),
    )
    .unwrap();
    let (code, _, err) = stats(&[], &path);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("2 malformed record(s); first: line 2: bad JSON"),
        "{err}"
    );
    assert!(err.contains("pass --skip-invalid"), "{err}");
}

#[test]
fn skip_invalid_succeeds_and_reports_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two_bad.jsonl");
    std::fs::write(
        &path,
        lines(&[
            GOOD_GSM8K,
            "{oops",
            GOOD_GSM8K,
            r#"{"question": "q"}"#,
            GOOD_GSM8K,
        ]),
    )
    .unwrap();
    let (code, out, err) = stats(&["--skip-invalid"], &path);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("records    5"), "{out}");
    assert!(out.contains("examples   3"), "{out}");
    assert!(out.contains("skipped    2 malformed"), "{out}");
    assert!(out.contains("line 4: missing field \"answer\""), "{out}");
    let (code, out, _) = stats(&["--skip-invalid", "--json"], &path);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["files"][0]["skipped"], 2);
    assert_eq!(
        v["files"][0]["skipped_first"][0]["location"],
        serde_json::json!({"line": 2})
    );

    // Every record-level case from the suite succeeds with --skip-invalid and counts its bad records.
    for c in cases()
        .iter()
        .filter(|c| c.expect.first().is_some_and(|e| e.starts_with("line ")))
    {
        let p = write(dir.path(), c);
        let mut args = c.args.clone();
        args.push("--skip-invalid");
        let (code, out, err) = stats(&args, &p);
        assert_eq!(code, 0, "{}: {err}", c.name);
        assert!(out.contains("skipped    1 malformed"), "{}: {out}", c.name);
    }
}

#[test]
fn missing_paths_and_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.jsonl");
    let (code, _, err) = stats(&[], &missing);
    assert_eq!(code, 2);
    assert!(
        err.contains("nope.jsonl") && err.contains("No such file"),
        "{err}"
    );
    assert!(!err.contains("panicked"));

    let (code, _, err) = stats(&[], dir.path());
    assert_eq!(code, 2);
    assert!(
        err.contains(dir.path().to_str().unwrap()) && err.contains("is a directory"),
        "{err}"
    );

    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, lines(&[GOOD_GSM8K])).unwrap();
    let (code, _, err) = stats(&["--format", "csv"], &good);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown format \"csv\"") && err.contains("gsm8k, rft, code_alpaca"),
        "{err}"
    );

    let (code, _, err) = stats(&["--template", "llama9"], &good);
    assert_eq!(code, 2);
    assert!(err.contains("unknown chat template \"llama9\""), "{err}");

    let tok = dir.path().join("missing_tokenizer.json");
    let (code, _, err) = stats(&["--tokenizer", tok.to_str().unwrap()], &good);
    assert_eq!(code, 2);
    assert!(
        err.contains("missing_tokenizer.json") && err.contains("tokenizer file not found"),
        "{err}"
    );

    let bad_tok = dir.path().join("bad_tokenizer.json");
    std::fs::write(&bad_tok, "{\"not\": \"a tokenizer\"}").unwrap();
    let (code, _, err) = stats(&["--tokenizer", bad_tok.to_str().unwrap()], &good);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad_tokenizer.json") && err.contains("cannot load"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}
