//! `mixprobe data fetch` against a local HTTP mirror on 127.0.0.1 serving ../shared/data.
mod common;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// Serve files under `root` (plus overrides) on 127.0.0.1 for at most `max_requests` requests.
fn serve(root: PathBuf, overrides: Vec<(String, Vec<u8>)>, max_requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max_requests) {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let body = overrides
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, b)| b.clone())
                .or_else(|| std::fs::read(root.join(&path)).ok());
            let _ = match body {
                Some(b) => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        b.len()
                    );
                    stream.write_all(&b)
                }
                None => write!(
                    stream,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            };
        }
    });
    format!("http://{addr}")
}

fn sha(p: &Path) -> String {
    mixprobe::util::sha256_file(p).unwrap()
}

#[test]
fn fetch_verifies_pinned_checksums_from_a_local_mirror() {
    let shared = require_shared!();
    let base = serve(shared.join("data"), vec![], 20);
    let out = tempfile::tempdir().unwrap();
    for name in ["gsm8k", "humaneval", "mt_bench"] {
        common::bin()
            .args(["data", "fetch", name, "--base-url", &base, "--out"])
            .arg(out.path())
            .assert()
            .success();
    }
    for rel in [
        "gsm8k/train.jsonl",
        "gsm8k/test.jsonl",
        "humaneval/HumanEval.jsonl.gz",
        "mt_bench/question.jsonl",
    ] {
        assert_eq!(
            sha(&out.path().join(rel)),
            sha(&shared.join("data").join(rel)),
            "{rel}"
        );
    }
    let fetched: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("FETCHED.json")).unwrap()).unwrap();
    assert_eq!(fetched["gsm8k"]["files"][0]["verified"], true);
    // A second fetch finds the files up to date (the mirror is not needed: no request is made).
    common::bin()
        .args([
            "data",
            "fetch",
            "gsm8k",
            "--base-url",
            "http://127.0.0.1:9/",
            "--out",
        ])
        .arg(out.path())
        .assert()
        .success()
        .stderr(predicates::str::contains("up to date"));
}

#[test]
fn corrupted_download_is_rejected_and_nothing_is_written() {
    let shared = require_shared!();
    let mut bytes = std::fs::read(shared.join("data/gsm8k/test.jsonl")).unwrap();
    bytes[100] ^= 1;
    let base = serve(
        shared.join("data"),
        vec![("gsm8k/test.jsonl".into(), bytes)],
        4,
    );
    let out = tempfile::tempdir().unwrap();
    common::bin()
        .args(["data", "fetch", "gsm8k", "--base-url", &base, "--out"])
        .arg(out.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains("sha256 mismatch"));
    assert!(!out.path().join("gsm8k/test.jsonl").exists());
}

#[test]
fn missing_file_and_unknown_dataset_are_user_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(dir.path().to_path_buf(), vec![], 2);
    let out = tempfile::tempdir().unwrap();
    common::bin()
        .args(["data", "fetch", "humaneval", "--base-url", &base, "--out"])
        .arg(out.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains("404"));
    common::bin()
        .args(["data", "fetch", "imagenet", "--out"])
        .arg(out.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains("unknown dataset"));
}

#[test]
fn unpinned_dataset_records_checksum_and_sharegpt_subset_is_derived() {
    // A small ShareGPT V3-style JSON list, truncated mid-record like the PyPI copy.
    let mut list = String::from("[");
    for i in 0..30 {
        let turns = if i % 10 == 9 {
            r#"[{"from":"gpt","value":"only an answer"}]"#.to_string()
        } else {
            format!(r#"[{{"from":"human","value":"q{i}"}},{{"from":"gpt","value":"a{i}"}}]"#)
        };
        list.push_str(&format!(r#"{{"id":"c{i}","conversations":{turns}}},"#));
    }
    list.push_str(r#"{"id":"partial","conversations":[{"from":"hum"#);
    let dir = tempfile::tempdir().unwrap();
    let base = serve(
        dir.path().to_path_buf(),
        vec![(
            "sharegpt/ShareGPT_V3_unfiltered_cleaned_split.json".into(),
            list.clone().into_bytes(),
        )],
        2,
    );
    let out = tempfile::tempdir().unwrap();
    common::bin()
        .args([
            "data",
            "fetch",
            "sharegpt",
            "--subset-size",
            "10",
            "--seed",
            "3",
            "--base-url",
            &base,
            "--out",
        ])
        .arg(out.path())
        .assert()
        .success()
        .stderr(predicates::str::contains("NOT verified"))
        .stderr(predicates::str::contains("27 eligible"))
        .stderr(predicates::str::contains("partial last record was skipped"));
    let gz = std::fs::read(out.path().join("sharegpt/sharegpt_v3_subset_10k.jsonl.gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 10);
    // Written in file order, no ineligible (gpt-only) record, no duplicates.
    let idx: Vec<usize> = ids.iter().map(|s| s[1..].parse().unwrap()).collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "{idx:?}");
    assert!(idx.iter().all(|i| i % 10 != 9));
    let fetched: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("FETCHED.json")).unwrap()).unwrap();
    assert_eq!(fetched["sharegpt"]["files"][0]["verified"], false);
    assert_eq!(
        fetched["sharegpt"]["files"][0]["sha256"],
        mixprobe::util::sha256_bytes(list.as_bytes())
    );
}
