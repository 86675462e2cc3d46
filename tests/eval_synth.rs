//! The synthetic suite's scorers: the reference answers score 100% on every scorer (GSM8K strict
//! and flexible, the sandbox, the general rules) and answers shuffled between items score near 0.
use mixprobe::data::Role;
use mixprobe::data::synth::{self, Scale, SynthConfig, load_general_eval, score_general};
use mixprobe::eval::gsm8k;
use mixprobe::eval::humaneval::{self, ScoreOptions};
use mixprobe::eval::run::general_unit;
use mixprobe::eval::sandbox::{Sandbox, SandboxConfig};

fn suite() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    synth::generate(
        dir.path(),
        &SynthConfig {
            seed: 3,
            scale: Scale::Small,
        },
    )
    .unwrap();
    dir
}

#[test]
fn math_references_score_all_and_shuffled_near_zero() {
    let dir = suite();
    let questions = gsm8k::Questions::load(&dir.path().join(synth::MATH_TEST)).unwrap();
    let items = questions.ordered();
    assert!(items.len() >= 100);
    let answer = |i: usize| {
        items[i]
            .1
            .turns
            .iter()
            .find(|t| t.role == Role::Assistant)
            .unwrap()
            .content
            .clone()
    };
    let reference: Vec<gsm8k::Sample> = (0..items.len())
        .map(|i| gsm8k::Sample {
            idx: items[i].0,
            completion: answer(i),
        })
        .collect();
    let r = gsm8k::score(&questions, &reference).unwrap();
    assert_eq!(r.accuracy_strict, 1.0);
    assert_eq!(r.accuracy_flexible, 1.0);
    let shuffled: Vec<gsm8k::Sample> = (0..items.len())
        .map(|i| gsm8k::Sample {
            idx: items[i].0,
            completion: answer((i + 1) % items.len()),
        })
        .collect();
    let r = gsm8k::score(&questions, &shuffled).unwrap();
    assert!(
        r.accuracy_strict < 0.1,
        "shuffled strict {}",
        r.accuracy_strict
    );
    assert!(
        r.accuracy_flexible < 0.1,
        "shuffled flexible {}",
        r.accuracy_flexible
    );
}

#[test]
fn code_references_pass_all_and_shuffled_near_zero() {
    let dir = suite();
    let problems = humaneval::load_problems(&dir.path().join(synth::CODE_EVAL)).unwrap();
    assert!(problems.len() >= 50);
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let opts = ScoreOptions {
        ks: vec![1],
        extract_code: false,
    };
    let canonical = humaneval::canonical_samples(&problems);
    let r = humaneval::score(&problems, &canonical, &sandbox, &opts, || {}).unwrap();
    assert_eq!(r.pass_at_k[&1], 1.0, "{:?}", r.status_counts);
    let shuffled: Vec<humaneval::Sample> = (0..problems.len())
        .map(|i| humaneval::Sample {
            task_id: problems[i].task_id.clone(),
            completion: canonical[(i + 1) % problems.len()].completion.clone(),
        })
        .collect();
    let r = humaneval::score(&problems, &shuffled, &sandbox, &opts, || {}).unwrap();
    assert!(r.pass_at_k[&1] < 0.1, "shuffled pass@1 {}", r.pass_at_k[&1]);
}

#[test]
fn general_references_score_ten_and_shuffled_near_zero() {
    let dir = suite();
    let items = load_general_eval(&dir.path().join(synth::GENERAL_EVAL)).unwrap();
    assert!(items.len() >= 100);
    for item in &items {
        assert_eq!(score_general(item, item.reference()), 10, "{}", item.id);
    }
    let mean = |f: &dyn Fn(usize) -> f64| (0..items.len()).map(f).sum::<f64>() / items.len() as f64;
    assert_eq!(
        mean(&|i| general_unit(score_general(&items[i], items[i].reference()))),
        1.0
    );
    let shuffled = mean(&|i| {
        general_unit(score_general(
            &items[i],
            items[(i + 1) % items.len()].reference(),
        ))
    });
    assert!(shuffled < 0.2, "shuffled general score {shuffled}");
    // The mapping of the 1–10 rubric onto [0,1].
    assert_eq!(general_unit(1), 0.0);
    assert_eq!(general_unit(10), 1.0);
}
