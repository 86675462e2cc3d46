//! `mixprobe score humaneval|gsm8k` end to end: RESULTS.json contents, missing problems, pass@k,
//! code extraction, and user errors (exit code 2).
mod common;

use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn is_root() -> bool {
    let root = std::fs::metadata("/proc/self").expect("procfs").uid() == 0;
    if !root {
        eprintln!("SKIP: the code sandbox needs root");
    }
    root
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_jsonl(path: &Path, records: &[Value]) {
    let lines: Vec<String> = records.iter().map(|r| r.to_string()).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn humaneval_canonical_all_pass() {
    let shared = require_shared!();
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("RESULTS.json");
    common::bin()
        .args(["score", "humaneval", "--canonical", "--data-dir"])
        .arg(shared.join("data"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicates::str::contains("pass@1 = 1.0000"));
    let r = read_json(&out);
    assert_eq!(r["pass@1"], 1.0);
    assert_eq!(r["n_problems"], 164);
    assert_eq!(r["n_missing"], 0);
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 164);
    assert!(
        results
            .iter()
            .all(|x| x["passed"] == true && x["status"] == "passed")
    );
    assert_eq!(results[0]["task_id"], "HumanEval/0");
    assert!(r["sandbox"]["enforced"].as_array().unwrap().len() >= 5);
}

#[test]
fn humaneval_samples_with_missing_tasks_and_pass_at_k() {
    let shared = require_shared!();
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("samples.jsonl");
    let out = dir.path().join("RESULTS.json");
    let s = |id: &str, c: &str| serde_json::json!({"task_id": id, "completion": c});
    write_jsonl(
        &samples,
        &[
            s("HumanEval/53", "    return x + y\n"),
            s("HumanEval/53", "    return x - y\n"),
            s("HumanEval/2", "    while True:\n        pass\n"),
            s("HumanEval/2", "    return number % 1.0\n"),
            // A chat-style answer: prose and a fenced block redefining the whole function.
            s(
                "HumanEval/4",
                "Here you go:\n```python\nfrom typing import List\n\ndef mean_absolute_deviation(numbers: List[float]) -> float:\n    m = sum(numbers) / len(numbers)\n    return sum(abs(x - m) for x in numbers) / len(numbers)\n```\n",
            ),
            s("HumanEval/4", "    return 0.0\n"),
        ],
    );
    common::bin()
        .args([
            "score",
            "humaneval",
            "--timeout",
            "2",
            "--extract-code",
            "--k",
            "1,2,10",
        ])
        .arg("--data-dir")
        .arg(shared.join("data"))
        .arg("--samples")
        .arg(&samples)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let r = read_json(&out);
    assert_eq!(r["n_problems"], 3);
    assert_eq!(r["n_samples"], 6);
    assert_eq!(r["n_missing"], 161);
    assert_eq!(r["missing"].as_array().unwrap().len(), 161);
    // Each task has 2 samples, 1 correct: pass@1 = 0.5, pass@2 = 1; pass@10 needs 10 samples.
    assert_eq!(r["pass@1"], 0.5);
    assert_eq!(r["pass@2"], 1.0);
    assert!(r.get("pass@10").is_none());
    let statuses: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["passed", "failed", "timeout", "passed", "passed", "failed"]
    );
    assert_eq!(r["results"][1]["completion_id"], 1);
    assert_eq!(r["status_counts"]["passed"], 3);

    // Without --extract-code the chat answer is appended to the prompt as a function body.
    common::bin()
        .args(["score", "humaneval", "--timeout", "2", "--data-dir"])
        .arg(shared.join("data"))
        .arg("--samples")
        .arg(&samples)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    assert_eq!(read_json(&out)["results"][4]["status"], "error");
}

#[test]
fn humaneval_bad_samples_are_user_errors() {
    let shared = require_shared!();
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("samples.jsonl");
    let out = dir.path().join("RESULTS.json");
    for (text, want) in [
        (
            "{\"task_id\": \"HumanEval/999\", \"completion\": \"\"}\n",
            "line 1: unknown task_id",
        ),
        (
            "{\"task_id\": \"HumanEval/1\"}\n",
            "missing field \"completion\"",
        ),
        (
            "{\"task_id\": \"HumanEval/1\", \"completion\": \"\"}\n[1]\n",
            "line 2",
        ),
    ] {
        std::fs::write(&samples, text).unwrap();
        common::bin()
            .args(["score", "humaneval", "--data-dir"])
            .arg(shared.join("data"))
            .arg("--samples")
            .arg(&samples)
            .arg("--out")
            .arg(&out)
            .assert()
            .code(2)
            .stderr(predicates::str::contains(want));
    }
    // Neither --samples nor --canonical.
    common::bin()
        .args(["score", "humaneval", "--out"])
        .arg(&out)
        .assert()
        .code(2);
    assert!(!out.exists());
}

#[test]
fn gsm8k_both_accuracies() {
    let shared = require_shared!();
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("samples.jsonl");
    let out = dir.path().join("RESULTS.json");
    // References of the first test questions: 18, 3, 70000, 540.
    write_jsonl(
        &samples,
        &[
            serde_json::json!({"idx": 0, "completion": "16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\n#### 18"}),
            serde_json::json!({"idx": 1, "completion": "It takes 2 + 1 = 3 bolts, so the answer is 3."}),
            serde_json::json!({"id": "gsm8k-test-2", "completion": "The profit is $70,000\n#### 70,000"}),
            serde_json::json!({"idx": 3, "completion": "#### 500\nWait, 3 * 3 * 60 = 540"}),
        ],
    );
    common::bin()
        .args(["score", "gsm8k", "--data-dir"])
        .arg(shared.join("data"))
        .arg("--samples")
        .arg(&samples)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicates::str::contains("strict accuracy 0.5000 (2/4)"));
    let r = read_json(&out);
    assert_eq!(r["n_problems"], 4);
    assert_eq!(r["n_missing"], 1319 - 4);
    assert_eq!(r["accuracy_strict"], 0.5);
    assert_eq!(r["accuracy_flexible"], 1.0);
    let res = r["results"].as_array().unwrap();
    assert_eq!(res[2]["strict"], "70,000");
    assert_eq!(res[3]["strict"], "500");
    assert_eq!(res[3]["flexible"], "540");

    std::fs::write(&samples, "{\"idx\": 5000, \"completion\": \"1\"}\n").unwrap();
    common::bin()
        .args(["score", "gsm8k", "--data-dir"])
        .arg(shared.join("data"))
        .arg("--samples")
        .arg(&samples)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "line 1: question 5000 is not in the test file",
        ));
}
