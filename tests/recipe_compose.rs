//! `mixprobe compose` on the real data in ../shared/data: exact counts, seeding, nesting,
//! hold-out, strategy expansion, ablation and --skip-invalid.
mod common;

use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run `mixprobe compose` and return the parsed manifest.
fn compose(recipe: &Path, data: &Path, out: &Path, extra: &[&str]) -> Value {
    common::bin()
        .arg("compose")
        .arg(recipe)
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
        .success();
    let text = std::fs::read_to_string(out.join("manifest.json")).expect("manifest written");
    serde_json::from_str(&text).expect("manifest is JSON")
}

fn shipped(name: &str) -> PathBuf {
    repo().join("recipes").join(format!("{name}.toml"))
}

/// Independent reference for the rounding rule: f64 `round` rounds half away from zero.
fn expected(fraction: f64, n: u64) -> u64 {
    ((fraction * n as f64).round() as u64).max(1)
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("ids array")
        .iter()
        .map(|x| x.as_str().expect("id string").to_string())
        .collect()
}

fn stage<'a>(m: &'a Value, name: &str) -> &'a Value {
    m["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stage {name}"))
}

/// Stage names and, per stage, its sources with their amounts.
fn plan(m: &Value) -> Vec<(String, Vec<(String, String)>)> {
    m["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let srcs = s["sources"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v["amount"].as_str().unwrap().to_string()))
                .collect();
            (s["name"].as_str().unwrap().to_string(), srcs)
        })
        .collect()
}

fn owned(stages: &[(&str, &[(&str, &str)])]) -> Vec<(String, Vec<(String, String)>)> {
    stages
        .iter()
        .map(|(n, m)| {
            (
                n.to_string(),
                m.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn dmt_k256_counts_are_exact_and_seeded() {
    let shared = require_shared!();
    let data = shared.join("data");
    let tmp = tempfile::tempdir().unwrap();
    let m = compose(&shipped("dmt-k256"), &data, &tmp.path().join("a"), &[]);
    assert_eq!(m["seed"], 42);

    // GSM8K train has 7,473 records (SOURCES.md), none excluded; 200 are held out.
    assert_eq!(m["sources"]["math"]["available"], 7273);
    let mut checked = 0;
    for st in m["stages"].as_array().unwrap() {
        for (name, s) in st["sources"].as_object().unwrap() {
            let n = s["available"].as_u64().unwrap();
            let src = &m["sources"][name];
            assert_eq!(
                n,
                src["pool"].as_u64().unwrap() - src["heldout"]["count"].as_u64().unwrap()
            );
            assert_eq!(src["heldout"]["count"], 200);
            let f = s["fraction"].as_f64().expect("fractions in dmt");
            assert_eq!(
                s["taken"].as_u64().unwrap(),
                expected(f, n),
                "{} {name}",
                st["name"]
            );
            assert_eq!(ids(&s["ids"]).len() as u64, expected(f, n));
            checked += 1;
        }
    }
    assert_eq!(checked, 5, "2 + 3 stage sources");
    let s2 = stage(&m, "general-replay");
    assert_eq!(s2["sources"]["math"]["amount"], "1/256");
    assert_eq!(s2["sources"]["math"]["fraction"], 0.00390625);
    assert_eq!(s2["sources"]["math"]["taken"], 28); // round(7273/256 = 28.41)

    // The stage files hold exactly the manifest's ids.
    let file = tmp.path().join("a").join(s2["file"].as_str().unwrap());
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, s2["examples"].as_u64().unwrap());
    let in_file: BTreeSet<String> = lines
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let in_manifest: BTreeSet<String> = ["general", "math", "code"]
        .iter()
        .flat_map(|s| ids(&s2["sources"][*s]["ids"]))
        .collect();
    assert_eq!(in_file, in_manifest);

    // Same seed: identical manifest and stage bytes. Another seed: same counts, other ids.
    let again = compose(&shipped("dmt-k256"), &data, &tmp.path().join("b"), &[]);
    assert_eq!(m["stages"], again["stages"]);
    assert_eq!(m["sources"], again["sources"]);
    let read =
        |d: &str| std::fs::read(tmp.path().join(d).join(s2["file"].as_str().unwrap())).unwrap();
    assert_eq!(read("a"), read("b"));
    let other = compose(
        &shipped("dmt-k256"),
        &data,
        &tmp.path().join("c"),
        &["--seed", "7"],
    );
    assert_eq!(other["seed"], 7);
    let so = stage(&other, "general-replay");
    for src in ["math", "code"] {
        assert_eq!(so["sources"][src]["taken"], s2["sources"][src]["taken"]);
        assert_ne!(
            so["sources"][src]["ids"], s2["sources"][src]["ids"],
            "{src}: another seed, other ids"
        );
    }
    assert_ne!(
        other["sources"]["math"]["heldout"]["ids"],
        m["sources"]["math"]["heldout"]["ids"]
    );
}

#[test]
fn replay_lies_in_stage_one_and_heldout_is_disjoint() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let m = compose(&shipped("dmt-k16"), &shared.join("data"), &out, &[]);
    let s1 = stage(&m, "specialized");
    let s2 = stage(&m, "general-replay");
    for src in ["math", "code"] {
        let one: HashSet<String> = ids(&s1["sources"][src]["ids"]).into_iter().collect();
        let replay = ids(&s2["sources"][src]["ids"]);
        assert!(replay.len() > 1);
        assert!(
            replay.iter().all(|id| one.contains(id)),
            "{src} replay ⊂ stage 1"
        );
    }
    for (name, src) in m["sources"].as_object().unwrap() {
        let held: HashSet<String> = ids(&src["heldout"]["ids"]).into_iter().collect();
        assert_eq!(held.len(), 200);
        for st in m["stages"].as_array().unwrap() {
            if let Some(s) = st["sources"].get(name) {
                assert!(
                    ids(&s["ids"]).iter().all(|id| !held.contains(id)),
                    "{name} held-out ids in a stage"
                );
            }
        }
        // The held-out file holds exactly those ids.
        let text =
            std::fs::read_to_string(out.join(src["heldout"]["file"].as_str().unwrap())).unwrap();
        let in_file: HashSet<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(in_file, held);
    }
}

#[test]
fn subsets_nest_across_fraction_recipes() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let mut previous: Option<HashSet<String>> = None;
    for (suffix, f) in [
        ("256", 1.0 / 256.0),
        ("64", 1.0 / 64.0),
        ("16", 1.0 / 16.0),
        ("4", 0.25),
        ("1", 1.0),
    ] {
        let m = compose(
            &shipped(&format!("single-math-f{suffix}")),
            &shared.join("data"),
            &tmp.path().join(suffix),
            &[],
        );
        let s = &m["stages"][0]["sources"]["math"];
        assert_eq!(s["taken"].as_u64().unwrap(), expected(f, 7273));
        let now: HashSet<String> = ids(&s["ids"]).into_iter().collect();
        if let Some(prev) = &previous {
            assert!(
                prev.is_subset(&now),
                "1/{suffix}: the smaller subset must lie inside"
            );
            assert!(prev.len() < now.len());
        }
        previous = Some(now);
    }
    // The mixture at 1/64 takes the same math examples as math alone at 1/64.
    let single = compose(
        &shipped("single-math-f64"),
        &shared.join("data"),
        &tmp.path().join("s"),
        &[],
    );
    let mixed = compose(
        &shipped("mixed-f64"),
        &shared.join("data"),
        &tmp.path().join("m"),
        &[],
    );
    assert_eq!(
        single["stages"][0]["sources"]["math"]["ids"],
        mixed["stages"][0]["sources"]["math"]["ids"]
    );
}

#[test]
fn strategies_expand_to_the_right_stages() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let limit = ["--limit-examples", "1000"];
    let run = |name: &str| {
        compose(
            &shipped(name),
            &shared.join("data"),
            &tmp.path().join(name),
            &limit,
        )
    };
    assert_eq!(
        plan(&run("rq4-sequential")),
        owned(&[
            ("code", &[("code", "1")]),
            ("math", &[("math", "1")]),
            ("general", &[("general", "1")])
        ])
    );
    assert_eq!(
        plan(&run("rq4-mixed-sequential")),
        owned(&[
            ("code-math", &[("code", "1"), ("math", "1")]),
            ("general", &[("general", "1")])
        ])
    );
    let dmt = run("dmt-k4");
    assert_eq!(
        plan(&dmt),
        owned(&[
            ("specialized", &[("code", "1"), ("math", "1")]),
            (
                "general-replay",
                &[("code", "1/4"), ("general", "1"), ("math", "1/4")]
            ),
        ])
    );
    assert_eq!(dmt["limit_examples"], 1000);
    assert_eq!(dmt["sources"]["math"]["pool"], 1000);
    assert_eq!(
        stage(&dmt, "general-replay")["sources"]["math"]["taken"],
        200
    ); // 800 / 4
    assert_eq!(
        plan(&run("rq4-multitask")),
        owned(&[("mixed", &[("code", "1"), ("general", "1"), ("math", "1")])])
    );
    assert_eq!(
        plan(&run("rq3-general-f64-spec-f16")),
        owned(&[(
            "mixed",
            &[("code", "1/16"), ("general", "1/64"), ("math", "1/16")]
        )])
    );
    assert_eq!(
        plan(&run("single-code-f4")),
        owned(&[("code", &[("code", "1/4")])])
    );
    let seq = run("rq4-sequential");
    assert_eq!(
        seq["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[test]
fn ablation_is_applied_before_sampling_and_counted() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let m = compose(
        &shipped("ablation-general-no-code-math"),
        &shared.join("data"),
        &tmp.path().join("o"),
        &["--limit-examples", "400"],
    );
    let g = &m["sources"]["general"];
    let a = &g["ablation"];
    // Recipes ablate with the same shipped detector as `mixprobe data ablate`, and say which.
    assert_eq!(a["detector"], "learned-v8", "{a}");
    let removed = a["removed"]["code"].as_u64().unwrap() + a["removed"]["math"].as_u64().unwrap();
    assert!(
        a["removed"]["code"].as_u64().unwrap() > 0,
        "ShareGPT has code conversations"
    );
    assert_eq!(
        a["kept"].as_u64().unwrap() + removed + a["failed"].as_u64().unwrap(),
        g["examples_read"].as_u64().unwrap()
    );
    assert_eq!(g["pool"], 400, "the limit applies after ablation");
    assert_eq!(m["stages"][0]["sources"]["general"]["taken"], 200);
}

#[test]
fn explicit_counts_skip_invalid_and_holdout_flags() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("gsm8k")).unwrap();
    let train = std::fs::read_to_string(shared.join("data/gsm8k/smoke_train_256.jsonl")).unwrap();
    let mut lines: Vec<&str> = train.lines().take(100).collect();
    lines.insert(10, "{\"question\": \"no answer here\"}");
    std::fs::write(data.join("gsm8k/train.jsonl"), lines.join("\n") + "\n").unwrap();
    let recipe = tmp.path().join("counts.toml");
    std::fs::write(
        &recipe,
        "seed = 3\n[sources.math]\npath = \"gsm8k/train.jsonl\"\n\
         [[stages]]\nname = \"warm\"\nepochs = 1\nmix = { math = 30 }\n\
         [[stages]]\nname = \"main\"\nmix = { math = \"0.5\" }\n",
    )
    .unwrap();
    // The malformed record fails the file without --skip-invalid (exit 2) …
    common::bin()
        .args(["compose"])
        .arg(&recipe)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("x"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("train.jsonl"));
    // … and is skipped and counted with it.
    let out = tmp.path().join("o");
    let assert = common::bin()
        .args(["compose"])
        .arg(&recipe)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(["--skip-invalid", "--holdout", "10"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(stderr.contains("1 malformed skipped"), "{stderr}");
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let src = &m["sources"]["math"];
    assert_eq!(
        (
            src["skipped"]["count"].as_u64(),
            src["examples_read"].as_u64()
        ),
        (Some(1), Some(100))
    );
    assert_eq!(
        (src["heldout"]["count"].as_u64(), src["available"].as_u64()),
        (Some(10), Some(90))
    );
    let warm = stage(&m, "warm");
    assert_eq!(warm["epochs"], 1);
    assert_eq!(warm["sources"]["math"]["taken"], 30);
    assert!(warm["sources"]["math"]["fraction"].is_null());
    let main = stage(&m, "main");
    assert_eq!(main["epochs"], 3);
    assert_eq!(main["sources"]["math"]["taken"], 45);
    // The 30-example warm-up is a prefix of the 45-example main stage.
    let main_ids: HashSet<String> = ids(&main["sources"]["math"]["ids"]).into_iter().collect();
    assert!(
        ids(&warm["sources"]["math"]["ids"])
            .iter()
            .all(|i| main_ids.contains(i))
    );
    assert_eq!(m["stages"][0]["file"], "stages/01-warm.jsonl");
}

#[test]
fn token_totals_use_the_given_tokenizer() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    // Reference token ids from tests fixtures (transformers): 14 and 11 tokens, no BOS.
    let prompts: Value = serde_json::from_str(
        &std::fs::read_to_string(shared.join("fixtures/smollm2-135m-instruct/prompts.json"))
            .unwrap(),
    )
    .unwrap();
    let (q, a) = (&prompts[1], &prompts[2]);
    let (q_text, a_text) = (q["text"].as_str().unwrap(), a["text"].as_str().unwrap());
    let tokens =
        q["input_ids"].as_array().unwrap().len() + a["input_ids"].as_array().unwrap().len();
    assert_eq!(tokens, 25);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let line = |id: &str| {
        serde_json::json!({"id": id, "conversations": [{"from": "human", "value": q_text}, {"from": "gpt", "value": a_text}]})
            .to_string()
    };
    std::fs::write(
        data.join("chat.jsonl"),
        [line("a"), line("b"), line("c")].join("\n") + "\n",
    )
    .unwrap();
    let recipe = tmp.path().join("chat.toml");
    std::fs::write(
        &recipe,
        "holdout = 1\n[sources.general]\npath = \"chat.jsonl\"\n[strategy]\nkind = \"mixed\"\n",
    )
    .unwrap();
    let tokenizer = shared.join("fixtures/smollm2-135m-instruct/tokenizer.json");
    let m = compose(
        &recipe,
        &data,
        &tmp.path().join("o"),
        &["--tokenizer", tokenizer.to_str().unwrap()],
    );
    let size = &m["stages"][0]["size"];
    let chars = (q_text.chars().count() + a_text.chars().count()) as u64;
    assert_eq!(size["tokens"], 2 * 25);
    assert_eq!(size["words"], 2 * 20); // 10 + 10 words per conversation
    assert_eq!(size["chars"], 2 * chars);
    assert_eq!(m["stages"][0]["sources"]["general"]["size"], *size);
    // Without a tokenizer only chars and words are reported.
    let m = compose(&recipe, &data, &tmp.path().join("p"), &[]);
    assert!(m["stages"][0]["size"].get("tokens").is_none());
}
