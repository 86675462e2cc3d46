//! `mixprobe run`: cells train and evaluate on a generated synthetic suite; a re-run reuses
//! finished cells; a changed recipe re-runs only its cells; a failing cell is recorded while the
//! others finish; an interrupted grid (the shipped RQ4 recipes) resumes without redoing
//! finished cells.
mod common;

use mixprobe::data::synth::{self, Scale, SynthConfig};
use mixprobe::experiment::{CellRecord, Experiment, Results, RunOptions, run_experiment};
use mixprobe::model::device::DeviceKind;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A synthetic suite in `dir/data` (shared by the cells of one test).
fn suite(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    synth::generate(
        &data,
        &SynthConfig {
            seed: 3,
            scale: Scale::Small,
        },
    )
    .unwrap();
    data
}

/// Tiny settings: a 512-token BPE, 2 optimizer steps of 4 short examples per stage.
const TINY: &str = "[[models]]\nname = \"tiny\"\npreset = \"tiny\"\nvocab_size = 512\n\n\
    [train]\npreset = \"tiny\"\nmax_steps = 2\nbatch_size = 4\nmax_len = 192\nepochs = 1\n\
    limit_examples = 40\nholdout = 6\neval_limit = 6\ncheckpoint_every = 1\n";

const MIXED: &str = "[strategy]\nkind = \"mixed\"\namount = \"1/2\"\n\
    [sources.math]\npath = \"gsm8k/train.jsonl\"\n[sources.code]\npath = \"codealpaca/code_alpaca_20k.json\"\n";
const SINGLE: &str = "[strategy]\nkind = \"single\"\nsource = \"math\"\namount = 1.0\n\
    [sources.math]\npath = \"gsm8k/train.jsonl\"\n";
const MISSING: &str = "[strategy]\nkind = \"single\"\nsource = \"math\"\namount = 1.0\n\
    [sources.math]\npath = \"gsm8k/no-such-file.jsonl\"\n";

fn options(data: &Path, out: &Path) -> RunOptions {
    RunOptions {
        data_dir: data.to_path_buf(),
        out: out.to_path_buf(),
        device: DeviceKind::Cpu,
        precision: None,
        only: Vec::new(),
        retry_failed: false,
        stop: None,
        stop_after: None,
        progress: false,
        command: vec!["test".into()],
    }
}

fn record(out: &Path, dir: &str) -> CellRecord {
    CellRecord::read(&out.join("cells").join(dir).join("cell.json")).expect(dir)
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn cells_run_cache_invalidate_and_fail_independently() {
    let tmp = tempfile::tempdir().unwrap();
    let data = suite(tmp.path());
    let exp_dir = tmp.path().join("exp");
    std::fs::create_dir_all(exp_dir.join("recipes")).unwrap();
    std::fs::write(exp_dir.join("recipes/mixed.toml"), MIXED).unwrap();
    std::fs::write(exp_dir.join("recipes/single.toml"), SINGLE).unwrap();
    std::fs::write(exp_dir.join("recipes/missing.toml"), MISSING).unwrap();
    let exp_path = exp_dir.join("exp.toml");
    std::fs::write(
        &exp_path,
        format!(
            "benches = [\"nll\", \"synth\"]\n{TINY}\n[eval]\nlimit = 2\nmax_new_tokens = 8\n\
             [[grid]]\ngroup = \"rq2\"\nrecipes = [\"recipes/mixed.toml\"]\n\
             [[grid]]\ngroup = \"rq1\"\nrecipes = [\"recipes/single.toml\", \"recipes/missing.toml\"]\n"
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let exp = Experiment::load(&exp_path).unwrap();
    let opts = options(&data, &out);

    // First run: two cells train and evaluate, the third fails and is recorded.
    let report = run_experiment(&exp, &opts).unwrap();
    let c = &report.results.meta.counts;
    assert_eq!((c.ran, c.cached, c.failed), (2, 0, 1), "{c:?}");
    let results = Results::read(&out.join("results.json")).unwrap();
    let by_id = |r: &Results, id: &str| r.cells.iter().find(|c| c.id == id).unwrap().clone();
    let mixed = by_id(&results, "tiny/mixed");
    assert_eq!(mixed.status, "done");
    assert_eq!(mixed.group, "rq2");
    assert_eq!(mixed.strategy, "mixed");
    assert_eq!(mixed.fractions["math"], Value::from(0.5));
    assert_eq!(mixed.scores_from.as_deref(), Some("eval"));
    for key in ["nll.math", "nll.code", "synth.math"] {
        assert!(
            mixed.scores.contains_key(key),
            "{key} in {:?}",
            mixed.scores
        );
    }
    assert!(mixed.final_loss.is_some_and(|l| l.is_finite()));
    assert_eq!(mixed.train_tokens.map(|t| t > 0), Some(true));
    let f = mixed.forgetting.as_ref().expect("forgetting matrix");
    assert_eq!(f.stages.last().map(String::as_str), Some("final"));
    let failed = by_id(&results, "tiny/missing");
    assert_eq!(failed.status, "failed");
    assert!(
        failed
            .error
            .as_deref()
            .unwrap_or("")
            .contains("no-such-file"),
        "{:?}",
        failed.error
    );
    assert!(failed.scores.is_empty(), "a failed cell has no scores");
    assert_eq!(results.base.len(), 1);
    assert!(results.base[0].scores.contains_key("synth.math"));
    assert!(out.join("cells/tiny__mixed/eval.json").is_file());
    assert!(
        out.join("cells/tiny__single/run/final/config.json")
            .is_file()
    );
    assert_eq!(bytes(&out.join("experiment.toml")), bytes(&exp_path));
    let mixed_json = bytes(&out.join("cells/tiny__mixed/cell.json"));
    let single_json = bytes(&out.join("cells/tiny__single/cell.json"));
    assert_eq!(record(&out, "tiny__mixed").attempts, 1);

    // Second run: both finished cells come from the cache, untouched; the failure is kept.
    let report = run_experiment(&exp, &opts).unwrap();
    let c = &report.results.meta.counts;
    assert_eq!((c.ran, c.cached, c.failed), (0, 2, 1), "{c:?}");
    assert_eq!(bytes(&out.join("cells/tiny__mixed/cell.json")), mixed_json);
    assert_eq!(
        bytes(&out.join("cells/tiny__single/cell.json")),
        single_json
    );
    assert_eq!(report.failed().len(), 1);

    // Editing one recipe re-runs that cell only.
    std::fs::write(
        exp_dir.join("recipes/single.toml"),
        SINGLE.replace("amount = 1.0", "amount = \"1/2\""),
    )
    .unwrap();
    let exp = Experiment::load(&exp_path).unwrap();
    let report = run_experiment(&exp, &opts).unwrap();
    let c = &report.results.meta.counts;
    assert_eq!((c.ran, c.cached, c.failed), (1, 1, 1), "{c:?}");
    assert_eq!(bytes(&out.join("cells/tiny__mixed/cell.json")), mixed_json);
    assert_ne!(
        bytes(&out.join("cells/tiny__single/cell.json")),
        single_json
    );
    let single = by_id(&report.results, "tiny/single");
    assert_eq!(single.fractions["math"], Value::from(0.5));
    assert_eq!(single.status, "done");
}

#[test]
fn interrupted_rq4_grid_resumes_without_redoing_finished_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let data = suite(tmp.path());
    let recipes = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recipes");
    let exp_path = tmp.path().join("rq4-small.toml");
    // The shipped RQ4 recipes, on the synthetic suite, at smoke size.
    std::fs::write(
        &exp_path,
        format!(
            "name = \"rq4\"\n{TINY}\n[[grid]]\ngroup = \"rq4\"\nrecipes = [\"{}/rq4-{{multitask,sequential,mixed-sequential,dmt}}.toml\"]\n",
            recipes.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    // Steps per cell: multitask 2, sequential 6, mixed-sequential 4, dmt 4 (2 per stage).
    // Stopping each cell after 5 steps finishes multitask and stops sequential mid-way.
    let first = common::bin()
        .args(["run", "--quiet", "--stop-after", "5", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .arg(&exp_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(!first.status.success(), "an interrupted run exits non-zero");
    assert!(stderr.contains("re-run"), "{stderr}");
    assert_eq!(record(&out, "tiny__rq4-multitask").status, "done");
    let seq = record(&out, "tiny__rq4-sequential");
    assert_eq!(seq.status, "pending");
    let results = Results::read(&out.join("results.json")).unwrap();
    let status: Vec<(&str, &str)> = results
        .cells
        .iter()
        .map(|c| (c.recipe.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        status,
        [
            ("rq4-multitask", "done"),
            ("rq4-sequential", "pending"),
            ("rq4-mixed-sequential", "pending"),
            ("rq4-dmt", "pending")
        ]
    );
    let multitask_json = bytes(&out.join("cells/tiny__rq4-multitask/cell.json"));

    let second = common::bin()
        .args(["run", "--quiet", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .arg(&exp_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(
        stderr.contains("tiny/rq4-multitask (rq4): cached"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tiny/rq4-sequential (rq4): resuming"),
        "{stderr}"
    );
    assert_eq!(
        bytes(&out.join("cells/tiny__rq4-multitask/cell.json")),
        multitask_json
    );
    let seq = record(&out, "tiny__rq4-sequential");
    assert_eq!((seq.status.as_str(), seq.attempts), ("done", 2));
    // The resumed run continued from step 5: every step logged once, two sessions.
    let run = out.join("cells/tiny__rq4-sequential/run");
    let steps: Vec<u64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6]);
    let run_json: Value = serde_json::from_slice(&bytes(&run.join("run.json"))).unwrap();
    assert_eq!(run_json["sessions"].as_array().map(Vec::len), Some(2));
    let results = Results::read(&out.join("results.json")).unwrap();
    assert!(results.cells.iter().all(|c| c.status == "done"));
    let dmt = results
        .cells
        .iter()
        .find(|c| c.recipe == "rq4-dmt")
        .unwrap();
    assert_eq!(dmt.k, Some(1.0 / 256.0));
    assert_eq!(dmt.strategy, "dmt");
    // Held-out NLL before training and after each of the three stages.
    let seq = results
        .cells
        .iter()
        .find(|c| c.recipe == "rq4-sequential")
        .unwrap();
    let f = seq.forgetting.as_ref().unwrap();
    assert_eq!(f.stages, ["initial", "stage-1", "stage-2", "stage-3"]);
    assert_eq!(results.meta.counts.cached, 1);
    assert_eq!(results.meta.counts.ran, 3);
}
