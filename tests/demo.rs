//! The embedded default, at smoke size (`--quick`: a few steps per cell): it generates the suite,
//! runs every embedded cell (train, evaluate, probe) and writes the report; a second run reuses
//! every cell.
mod common;

use mixprobe::experiment::Results;

#[test]
fn quick_demo_writes_every_output_and_the_report() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path();
    let run = || {
        common::bin()
            .args(["demo", "--quick", "--quiet", "--out"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let first = run();
    let stderr = String::from_utf8_lossy(&first.stderr);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stderr}\n{stdout}");
    assert!(
        stdout.contains(&format!(
            "report: {}",
            dir.join("report/index.html").display()
        )),
        "{stdout}"
    );
    for rel in [
        "data/gsm8k/train.jsonl",
        "data/codealpaca/code_alpaca_20k.json",
        "data/sharegpt/sharegpt_v3_subset_10k.jsonl.gz",
        "data/humaneval/HumanEval.jsonl.gz",
        "inputs/experiments/demo.toml",
        "inputs/probes/demo.toml",
        "inputs/recipes/rq4-dmt.toml",
        "experiment/experiment.toml",
        "experiment/results.json",
        "experiment/models/tiny/s42/config.json",
        "experiment/models/tiny/s42/tokenizer.json",
        "experiment/probe/index.json",
        "experiment/probe/metrics.json",
        "report/index.html",
        "report/summary.md",
    ] {
        assert!(dir.join(rel).is_file(), "{rel} missing");
    }
    let results = Results::read(&dir.join("experiment/results.json")).unwrap();
    let recipes: Vec<&str> = results.cells.iter().map(|c| c.recipe.as_str()).collect();
    for r in [
        "rq4-multitask",
        "rq4-sequential",
        "rq4-mixed-sequential",
        "rq4-dmt",
        "dmt-k1",
        "dmt-k16",
        "ablation-dmt-k256-no-code-math",
    ] {
        assert!(recipes.contains(&r), "{r} in {recipes:?}");
    }
    for c in &results.cells {
        assert_eq!(c.status, "done", "{}: {:?}", c.id, c.error);
        let cell = dir.join("experiment").join(&c.run_dir);
        assert!(cell.join("final/model.safetensors").is_file(), "{}", c.id);
        assert!(
            cell.parent().unwrap().join("eval.json").is_file(),
            "{}",
            c.id
        );
        for key in ["synth.math", "synth.code", "synth.general"] {
            let v = c.scores.get(key).copied();
            assert!(
                v.is_some_and(|v| (0.0..=1.0).contains(&v)),
                "{}: {key} = {v:?}",
                c.id
            );
        }
    }
    let groups = |g: &str| results.cells.iter().filter(|c| c.group == g).count();
    assert_eq!(
        (groups("rq4"), groups("dmt_k"), groups("ablation")),
        (4, 2, 1)
    );
    // Every probed model has a projection directory; the base model is probed too.
    let probe = results.probe.as_ref().expect("probe ran");
    assert_eq!(probe.error, None);
    assert!(probe.models.contains_key("tiny/base"));
    for name in probe.models.values() {
        assert!(
            dir.join("experiment/probe/projection").join(name).is_dir(),
            "projection of {name}"
        );
    }
    // Figures are written beside the page.
    let figures = std::fs::read_dir(dir.join("report/figures"))
        .unwrap()
        .count();
    assert!(figures > 0);

    // A second run reuses every cell.
    let second = run();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    let results = Results::read(&dir.join("experiment/results.json")).unwrap();
    assert_eq!(results.meta.counts.cached, results.cells.len(), "{stderr}");
    assert_eq!(results.meta.counts.ran, 0);
}
