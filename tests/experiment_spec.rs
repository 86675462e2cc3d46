//! Experiment files: every error names the file and the field; the shipped experiments parse
//! and expand to the grids their research questions need.
use mixprobe::experiment::{Experiment, ModelSource};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Write `text` as `exp.toml` in `dir` (with a recipe `r.toml` beside it) and parse it.
fn parse(dir: &Path, text: &str) -> Result<Experiment, String> {
    std::fs::write(
        dir.join("r.toml"),
        "[strategy]\nkind = \"single\"\nsource = \"math\"\namount = \"1/4\"\n\
         [sources.math]\npath = \"gsm8k/train.jsonl\"\n",
    )
    .unwrap();
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    Experiment::load(&path).map_err(|e| e.to_string())
}

const OK: &str = "[[models]]\nname = \"tiny\"\npreset = \"tiny\"\n\
                  [train]\npreset = \"tiny\"\nmax_steps = 3\nlimit_examples = 50\n\
                  [[grid]]\ngroup = \"rq1\"\nrecipes = [\"r.toml\"]\n";

#[test]
fn a_valid_experiment_expands_to_cells() {
    let dir = tempfile::tempdir().unwrap();
    let e = parse(dir.path(), OK).unwrap();
    assert_eq!(e.name, "exp");
    assert_eq!(e.seeds, vec![42]);
    assert_eq!(e.cells.len(), 1);
    assert_eq!(e.cells[0].id, "tiny/r");
    assert_eq!(e.cells[0].dir_name, "tiny__r");
    assert_eq!(e.cells[0].group, "rq1");
    assert_eq!(e.models[0].hparams.max_steps, Some(3));
    assert_eq!(e.models[0].hparams.lr, 3e-3, "tiny preset's lr");
    assert_eq!(e.run.limit_examples, Some(50));
    // Two seeds: one cell each, the seed in the id.
    let e = parse(dir.path(), &format!("seeds = [1, 2]\n{OK}")).unwrap();
    let ids: Vec<&str> = e.cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["tiny/r/s1", "tiny/r/s2"]);
}

#[test]
fn errors_name_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        (&format!("colour = 1\n{OK}"), &["exp.toml", "colour"]),
        (
            &OK.replace(
                "preset = \"tiny\"\n[train]",
                "preset = \"tiny\"\nhf = \"x\"\n[train]",
            ),
            &["models[0]", "exactly one of preset, hf, gguf"],
        ),
        (
            &OK.replace(
                "name = \"tiny\"\npreset = \"tiny\"",
                "name = \"tiny\"\npreset = \"huge\"",
            ),
            &["models[0]", "preset", "huge"],
        ),
        (
            &OK.replace("max_steps = 3", "learning_rate = 3"),
            &["train", "learning_rate"],
        ),
        (&OK.replace("max_steps = 3", "lr = -1.0"), &["train", "lr"]),
        (
            &OK.replace("limit_examples = 50", "limit_examples = 0"),
            &["train.limit_examples"],
        ),
        (
            &format!("benches = [\"gsm9k\"]\n{OK}"),
            &["benches", "gsm9k"],
        ),
        (
            &OK.replace("r.toml", "nope-*.toml"),
            &["grid[0]", "nope-*.toml", "matches no recipe"],
        ),
        (
            &format!("{OK}[[grid]]\ngroup = \"rq2\"\nrecipes = [\"r.toml\"]\n"),
            &["grid[1]", "already in group \"rq1\""],
        ),
        (
            &OK.replace("[[models]]\nname = \"tiny\"\npreset = \"tiny\"\n", ""),
            &["models"],
        ),
        (
            &format!("{OK}[probe]\nspec = \"missing.toml\"\n"),
            &["probe.spec", "missing.toml"],
        ),
        (&format!("seeds = []\n{OK}"), &["seeds"]),
    ];
    for (text, needles) in cases {
        let e = parse(dir.path(), text).expect_err(text);
        for n in *needles {
            assert!(e.contains(n), "error {e:?} should mention {n:?}");
        }
        assert!(e.contains("exp.toml"), "error {e:?} should name the file");
    }
    // A bad recipe is reported with the recipe's own file name.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[strategy]\nkind = \"zigzag\"\n",
    )
    .unwrap();
    let e = parse(dir.path(), &OK.replace("r.toml", "bad.toml")).unwrap_err();
    assert!(e.contains("bad.toml"), "{e}");
}

#[test]
fn shipped_experiments_cover_every_research_question() {
    let dir = repo().join("experiments");
    let load = |name: &str| Experiment::load(&dir.join(name)).unwrap();
    let groups = |e: &Experiment, g: &str| e.cells.iter().filter(|c| c.group == g).count();
    let rq1 = load("rq1.toml");
    assert_eq!(
        groups(&rq1, "rq1") / rq1.models.len(),
        15,
        "3 sources x 5 fractions"
    );
    let rq2 = load("rq2.toml");
    assert_eq!(groups(&rq2, "rq2") / rq2.models.len(), 5);
    let rq3 = load("rq3.toml");
    assert_eq!(
        groups(&rq3, "rq3") / rq3.models.len(),
        15,
        "3 settings x 5 fractions"
    );
    let rq4 = load("rq4.toml");
    assert_eq!(groups(&rq4, "rq4") / rq4.models.len(), 4);
    let dmt = load("dmt_k.toml");
    assert_eq!(groups(&dmt, "dmt_k") / dmt.models.len(), 5);
    let abl = load("ablation.toml");
    assert_eq!(groups(&abl, "ablation") / abl.models.len(), 5);
    let paper = load("paper.toml");
    for (g, n) in [
        ("rq1", 15),
        ("rq2", 5),
        ("rq3", 15),
        ("rq4", 4),
        ("dmt_k", 5),
        ("ablation", 5),
    ] {
        assert_eq!(
            groups(&paper, g) / paper.models.len(),
            n,
            "paper.toml group {g}"
        );
    }
    // The paper's model-size axis: more than one model in paper.toml.
    assert!(paper.models.len() >= 2);
    for e in [&rq1, &rq2, &rq3, &rq4, &dmt, &abl, &paper] {
        assert!(!e.benches.is_empty(), "{} lists benchmarks", e.name);
        assert!(e.probe.is_some(), "{} has a probe", e.name);
    }
    let demo = load("demo.toml");
    assert!(matches!(demo.models[0].source, ModelSource::Preset(_)));
    assert_eq!(groups(&demo, "rq4"), 4);
    assert_eq!(groups(&demo, "dmt_k"), 2);
    assert!(groups(&demo, "ablation") >= 1);
    assert!(demo.benches.contains(&"synth".to_string()));
}
