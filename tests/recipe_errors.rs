//! Bad recipes through the CLI: each exits with code 2 and a message naming the recipe file and
//! the offending key. Uses a tiny synthetic data directory, so it needs no shared data.
mod common;

use predicates::prelude::*;
use std::path::Path;

const MATH: &str = "[sources.math]\npath = \"gsm8k/train.jsonl\"\nformat = \"gsm8k\"\n";

/// A data directory with a 12-record GSM8K file.
fn data_dir(root: &Path) -> std::path::PathBuf {
    let data = root.join("data");
    std::fs::create_dir_all(data.join("gsm8k")).unwrap();
    let lines: String = (0..12)
        .map(|i| {
            format!(
                "{{\"question\": \"What is {i} + 1?\", \"answer\": \"{i} + 1 = {}\\n#### {}\"}}\n",
                i + 1,
                i + 1
            )
        })
        .collect();
    std::fs::write(data.join("gsm8k/train.jsonl"), lines).unwrap();
    data
}

/// Write `body` as `<file>.toml`, compose it, and check exit code 2 and that stderr names the
/// file and every `needles` entry.
fn fails(root: &Path, file: &str, body: &str, needles: &[&str]) {
    let data = data_dir(root);
    let recipe = root.join(format!("{file}.toml"));
    std::fs::write(&recipe, body).unwrap();
    let out = common::bin()
        .arg("compose")
        .arg(&recipe)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(root.join("out"))
        .args(["--holdout", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{file}: expected exit 2, stderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}.toml")),
        "{file}: message should name the file: {stderr}"
    );
    for n in needles {
        assert!(
            stderr.contains(n),
            "{file}: message should mention {n:?}: {stderr}"
        );
    }
    assert!(
        !root.join("out/manifest.json").exists(),
        "{file}: nothing written on error"
    );
}

#[test]
fn bad_toml_syntax() {
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "syntax",
        &format!("seed = 42\nname = \"unterminated\n{MATH}"),
        &["TOML parse error at line 2", "name = \"unterminated"],
    );
}

#[test]
fn fraction_above_one() {
    let t = tempfile::tempdir().unwrap();
    let body = format!("{MATH}[[stages]]\nname = \"a\"\nmix = {{ math = \"3/2\" }}\n");
    fails(
        t.path(),
        "above-one",
        &body,
        &["mix.math", "greater than 1"],
    );
}

#[test]
fn fraction_zero_or_negative() {
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "zero",
        &format!("{MATH}[strategy]\nkind = \"single\"\nsource = \"math\"\namount = \"0\"\n"),
        &["strategy.amount", "> 0"],
    );
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "negative",
        &format!("{MATH}[[stages]]\nname = \"a\"\nmix = {{ math = \"-1/4\" }}\n"),
        &["mix.math", "> 0"],
    );
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "negative-count",
        &format!("{MATH}[[stages]]\nname = \"a\"\nmix = {{ math = -5 }}\n"),
        &["mix.math", "at least 1"],
    );
}

#[test]
fn division_by_zero() {
    let t = tempfile::tempdir().unwrap();
    let body = format!(
        "{MATH}[sources.code]\npath = \"x.json\"\n[sources.general]\npath = \"y.jsonl\"\n[strategy]\nkind = \"dmt\"\nk = \"1/0\"\n"
    );
    fails(t.path(), "div-zero", &body, &["strategy.k", "zero"]);
}

#[test]
fn unknown_source_in_a_stage() {
    let t = tempfile::tempdir().unwrap();
    let body = format!("{MATH}[[stages]]\nname = \"a\"\nmix = {{ poetry = \"1\" }}\n");
    fails(
        t.path(),
        "unknown-source",
        &body,
        &["mix.poetry", "unknown source", "math"],
    );
}

#[test]
fn unknown_strategy() {
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "unknown-strategy",
        &format!("{MATH}[strategy]\nkind = \"curriculum\"\n"),
        &["kind", "curriculum", "dmt"],
    );
}

#[test]
fn missing_source_file() {
    let t = tempfile::tempdir().unwrap();
    let body = "[sources.math]\npath = \"gsm8k/nope.jsonl\"\n[strategy]\nkind = \"mixed\"\n";
    fails(
        t.path(),
        "missing-file",
        body,
        &["sources.math.path", "nope.jsonl", "does not exist"],
    );
}

#[test]
fn count_above_available() {
    // 12 records − 2 held out = 10 available.
    let t = tempfile::tempdir().unwrap();
    let body = format!("{MATH}[[stages]]\nname = \"big\"\nmix = {{ math = 11 }}\n");
    fails(
        t.path(),
        "too-many",
        &body,
        &["stages[0]", "big", "mix.math", "count 11", "10 available"],
    );
}

#[test]
fn unknown_keys() {
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "typo-top",
        &format!("sede = 1\n{MATH}[strategy]\nkind = \"mixed\"\n"),
        &["unknown field", "sede"],
    );
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "typo-strategy",
        &format!("{MATH}[strategy]\nkind = \"mixed\"\nfraction = \"1/4\"\n"),
        &["unknown field", "fraction"],
    );
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "typo-source",
        &format!("{MATH}pth = \"x\"\n[strategy]\nkind = \"mixed\"\n"),
        &["unknown field", "pth"],
    );
}

#[test]
fn no_stages() {
    let t = tempfile::tempdir().unwrap();
    fails(t.path(), "no-stages", MATH, &["stages", "no stages"]);
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "empty-stages",
        &format!("stages = []\n{MATH}"),
        &["no stages"],
    );
}

#[test]
fn other_invalid_values() {
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "bad-format",
        "[sources.math]\npath = \"gsm8k/train.jsonl\"\nformat = \"csv\"\n[strategy]\nkind = \"mixed\"\n",
        &["sources.math.format", "csv"],
    );
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "bad-ablate",
        &format!("{MATH}ablate = [\"poetry\"]\n[strategy]\nkind = \"mixed\"\n"),
        &["sources.math.ablate", "poetry"],
    );
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "dmt-missing",
        &format!("{MATH}[strategy]\nkind = \"dmt\"\nk = \"1/4\"\n"),
        &["strategy", "missing: code, general"],
    );
    let t = tempfile::tempdir().unwrap();
    fails(
        t.path(),
        "both",
        &format!(
            "{MATH}[strategy]\nkind = \"mixed\"\n[[stages]]\nname = \"a\"\nmix = {{ math = \"1\" }}\n"
        ),
        &["not both"],
    );
}

#[test]
fn holdout_leaving_nothing_and_missing_recipe() {
    let t = tempfile::tempdir().unwrap();
    let data = data_dir(t.path());
    let recipe = t.path().join("all-held.toml");
    std::fs::write(&recipe, format!("{MATH}[strategy]\nkind = \"mixed\"\n")).unwrap();
    common::bin()
        .arg("compose")
        .arg(&recipe)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(t.path().join("o"))
        .args(["--holdout", "12"])
        .assert()
        .code(2)
        .stderr(
            predicates::str::contains("all-held.toml").and(predicates::str::contains(
                "sources.math: holding out 12 of 12",
            )),
        );
    common::bin()
        .arg("compose")
        .arg(t.path().join("absent.toml"))
        .arg("--out")
        .arg(t.path().join("o"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("absent.toml"));
}
