//! The MT-Bench judge flow against a local OpenAI-compatible server (tests/eval_support/server.rs):
//! FastChat's single-answer prompts are sent for both turns, ratings are parsed, per-turn /
//! per-category / overall means match hand-computed values, and unparseable replies and failed
//! requests are counted (never dropped).
mod common;
#[path = "eval_support/server.rs"]
mod server;

use mixprobe::eval::judge::{Judge, JudgeConfig};
use mixprobe::eval::mtbench::{self, JudgmentStatus, Question};
use std::collections::HashMap;
use std::time::Duration;

fn q(id: u64, category: &str) -> Question {
    Question {
        question_id: id,
        category: category.into(),
        turns: vec![
            format!("first question {id}"),
            format!("second question {id}"),
        ],
    }
}

fn answers(a: &str, b: &str) -> Vec<String> {
    vec![a.to_string(), b.to_string()]
}

fn config(url: &str) -> JudgeConfig {
    let mut c = JudgeConfig::new(url, "judge-model", Some("sk-test".into()));
    c.attempts = 3;
    c.backoff = Duration::from_millis(10);
    c.timeout = Duration::from_secs(10);
    c
}

#[test]
fn judge_flow_scores_categories_and_counts_failures() {
    let shared = require_shared!();
    let mt = shared.join("data/mt_bench");
    let prompts = mtbench::load_judge_prompts(&mt.join("judge_prompts.jsonl")).unwrap();
    let refs = mtbench::load_answers(&mt.join("reference_answer/gpt-4.jsonl")).unwrap();
    let server = server::JudgeServer::start();
    let judge = Judge::new(config(&server.url));

    let questions = vec![
        q(1, "writing"),
        q(2, "writing"),
        q(101, "reasoning"),
        q(111, "math"),
    ];
    let ans = vec![
        answers("<<rate:8>>", "<<rate:6>>"),
        answers("<<rate:4>>", "<<garbage>>"),
        answers("<<rate:9>>", "<<fail>>"),
        answers("<<flaky:3>>", "<<rate:7>>"),
    ];
    let done = std::sync::atomic::AtomicUsize::new(0);
    let r = mtbench::judge_answers(&judge, &prompts, &questions, &ans, &refs, || {
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();

    assert_eq!(done.into_inner(), 8);
    assert_eq!(r.n_judgments, 8);
    assert_eq!(r.n_rated, 6);
    assert_eq!(r.n_parse_failures, 1);
    assert_eq!(r.n_http_failures, 1);
    assert!((r.parse_failure_rate - 1.0 / 7.0).abs() < 1e-12);
    let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
    // Turn 1: 8, 4, 9, 3; turn 2: 6, 7 (one parse failure, one HTTP failure left out).
    assert!(close(r.turn1, 6.0));
    assert!(close(r.turn2, 6.5));
    assert!(close(r.score, 37.0 / 6.0));
    assert_eq!(r.categories.len(), 3);
    assert!(close(r.categories.get("writing").copied(), 6.0));
    assert!(close(r.categories.get("reasoning").copied(), 9.0));
    assert!(close(r.categories.get("math").copied(), 5.0));

    let status = |qid: u64, turn: usize| {
        r.judgments
            .iter()
            .find(|j| j.question_id == qid && j.turn == turn)
            .unwrap()
    };
    assert_eq!(status(2, 2).status, JudgmentStatus::ParseFailure);
    assert_eq!(status(101, 2).status, JudgmentStatus::HttpFailure);
    assert!(
        status(101, 2).text.contains("after 3 attempt(s)"),
        "{}",
        status(101, 2).text
    );
    assert_eq!(status(111, 1).status, JudgmentStatus::Rated);
    // The prompts FastChat uses for each case.
    assert_eq!(status(1, 1).judge_prompt, "single-v1");
    assert_eq!(status(1, 2).judge_prompt, "single-v1-multi-turn");
    assert_eq!(status(101, 1).judge_prompt, "single-math-v1");
    assert_eq!(status(111, 2).judge_prompt, "single-math-v1-multi-turn");

    // 8 judgments + 2 retries of the failing one + 1 retry of the flaky one.
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 11);
    for body in &requests {
        assert_eq!(body["model"], "judge-model");
        assert_eq!(body["temperature"], 0);
        assert_eq!(body["messages"][0]["role"], "system");
    }
    let user_of = |needle: &str| {
        requests
            .iter()
            .map(|b| b["messages"][1]["content"].as_str().unwrap().to_string())
            .find(|u| u.contains(needle))
            .unwrap()
    };
    // Turn 1 of a reasoning question carries GPT-4's reference answer for question 101.
    let t1 = user_of("<<rate:9>>");
    assert!(t1.contains("[The Start of Reference Answer]"));
    assert!(t1.contains(&refs[&101][0]));
    assert!(t1.contains("first question 101"));
    // Turn 2 shows the whole conversation.
    let t2 = user_of("<<rate:6>>");
    assert!(t2.contains("first question 1") && t2.contains("second question 1"));
    assert!(t2.contains("<<rate:8>>"));
}

#[test]
fn unreachable_judge_counts_every_judgment_as_an_http_failure() {
    let shared = require_shared!();
    let mt = shared.join("data/mt_bench");
    let prompts = mtbench::load_judge_prompts(&mt.join("judge_prompts.jsonl")).unwrap();
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config(&format!("http://127.0.0.1:{port}/v1"));
    cfg.attempts = 2;
    let judge = Judge::new(cfg);
    let r = mtbench::judge_answers(
        &judge,
        &prompts,
        &[q(1, "writing")],
        &[answers("a", "b")],
        &HashMap::new(),
        || {},
    )
    .unwrap();
    assert_eq!(r.n_judgments, 2);
    assert_eq!(r.n_http_failures, 2);
    assert_eq!(r.n_rated, 0);
    assert_eq!(r.score, None);
    assert_eq!(r.parse_failure_rate, 0.0);
}
