//! The embedded default runs with no downloads and composes every embedded recipe over the suite.
mod common;

#[test]
fn demo_generates_the_suite_and_composes_every_strategy() {
    let out = tempfile::tempdir().unwrap();
    common::bin()
        .args(["demo", "--out"])
        .arg(out.path())
        .assert()
        .success();
    let data = out.path().join("data");
    for rel in [
        "gsm8k/train.jsonl",
        "codealpaca/code_alpaca_20k.json",
        "sharegpt/sharegpt_v3_subset_10k.jsonl.gz",
        "humaneval/HumanEval.jsonl.gz",
    ] {
        assert!(data.join(rel).is_file(), "{rel}");
    }
    let manifest = |name: &str| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(out.path().join("compose").join(name).join("manifest.json")).unwrap(),
        )
        .unwrap()
    };
    // Sequential: three stages in the paper's order code → math → general.
    let seq = manifest("rq4-sequential");
    let names: Vec<Vec<String>> = seq["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sources"].as_object().unwrap().keys().cloned().collect())
        .collect();
    assert_eq!(
        names,
        vec![
            vec!["code".to_string()],
            vec!["math".to_string()],
            vec!["general".to_string()]
        ]
    );
    // DMT k = 1/256: stage 2 replays round(N/256) (at least 1) of math and code.
    let dmt = manifest("dmt-k256");
    let s2 = &dmt["stages"][1]["sources"];
    for src in ["math", "code"] {
        let n = s2[src]["available"].as_u64().unwrap() as f64;
        let expected = ((n / 256.0).round() as u64).max(1);
        assert_eq!(s2[src]["taken"].as_u64().unwrap(), expected, "{src}");
    }
}
