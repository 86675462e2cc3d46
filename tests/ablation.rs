//! The ShareGPT code/math ablation: precision/recall of the rule detector on the hand-labelled
//! sample (tests/fixtures/ablation_labels.tsv, texts read from ../shared), the full-subset run,
//! the CLI's counts and outputs on a small fixture, and the HTTP tagger against a local server.
mod common;

use mixprobe::data::ablate::{self, Category, Detector, HttpTagger, RuleDetector};
use mixprobe::data::example::Example;
use mixprobe::data::read::{Format, ReadOptions, read_file};
use predicates::prelude::*;
use predicates::str::contains;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SHAREGPT: &str = "data/sharegpt/sharegpt_v3_subset_10k.jsonl.gz";
const LABELS: &str = "tests/fixtures/ablation_labels.tsv";
/// A line `# section NAME` of the label file starts a section; the sections, in file order:
/// `tuned` (the first sample, seen while writing and tuning the rules), `held-out-1` (labelled
/// after the detector froze in session 2), `held-out-2-random` and `held-out-2-enriched`
/// (session 3, labelled before the detector ran on them; the enriched part over-samples math),
/// `held-out-3-enriched` and `held-out-3-random` (session 3, labelled blind after rules-v2 froze:
/// no rule was tuned on them).
const SECTION_MARK: &str = "# section ";
const SECTIONS: [&str; 6] = [
    "tuned",
    "held-out-1",
    "held-out-2-random",
    "held-out-2-enriched",
    "held-out-3-enriched",
    "held-out-3-random",
];

// ---------------------------------------------------------------------------------------------
// Hand-labelled sample
// ---------------------------------------------------------------------------------------------

struct Label {
    id: String,
    code: bool,
    math: bool,
    section: &'static str,
}

fn labels() -> Vec<Label> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(LABELS);
    let text = std::fs::read_to_string(&path).expect("label file");
    let mut section: Option<&'static str> = None;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(name) = line.strip_prefix(SECTION_MARK) {
            section = Some(
                SECTIONS
                    .iter()
                    .copied()
                    .find(|s| *s == name.trim())
                    .unwrap_or_else(|| {
                        panic!("{}:{}: unknown section {name:?}", path.display(), n + 1)
                    }),
            );
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let bit = |s: &str| match s.trim() {
            "0" => false,
            "1" => true,
            other => panic!(
                "{}:{}: expected 0 or 1, found {other:?}",
                path.display(),
                n + 1
            ),
        };
        assert_eq!(
            f.len(),
            3,
            "{}:{}: expected id<TAB>code<TAB>math",
            path.display(),
            n + 1
        );
        out.push(Label {
            id: f[0].to_string(),
            code: bit(f[1]),
            math: bit(f[2]),
            section: section.unwrap_or_else(|| {
                panic!("{}:{}: label before any section", path.display(), n + 1)
            }),
        });
    }
    out
}

#[derive(Default, Clone, Copy)]
struct Score {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Score {
    fn add(&mut self, predicted: bool, truth: bool) {
        match (predicted, truth) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => {}
        }
    }
    fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }
    fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }
    fn line(&self, name: &str) -> String {
        format!(
            "{name:>8}: precision {:.3} recall {:.3} (tp {} fp {} fn {})",
            self.precision(),
            self.recall(),
            self.tp,
            self.fp,
            self.fn_
        )
    }
}

/// Scores for code, math and the combined "removed" decision.
fn score<'a>(rows: impl Iterator<Item = (&'a Label, &'a [Category])>) -> [Score; 3] {
    let mut s = [Score::default(); 3];
    for (l, cats) in rows {
        let (code, math) = (
            cats.contains(&Category::Code),
            cats.contains(&Category::Math),
        );
        s[0].add(code, l.code);
        s[1].add(math, l.math);
        s[2].add(code || math, l.code || l.math);
    }
    s
}

fn score_identity() {
    let mut s = Score::default();
    for (p, t) in [
        (true, true),
        (true, true),
        (true, false),
        (false, true),
        (false, false),
    ] {
        s.add(p, t);
    }
    assert_eq!((s.tp, s.fp, s.fn_), (2, 1, 1));
    assert!((s.precision() - 2.0 / 3.0).abs() < 1e-12 && (s.recall() - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn rule_detector_precision_and_recall_on_the_hand_labelled_sample() {
    score_identity();
    let labels = labels();
    assert!(labels.len() >= 250, "only {} labels", labels.len());
    let ids: HashSet<&str> = labels.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids.len(), labels.len(), "duplicate ids in the label file");
    let shared = require_shared!();
    let loaded = read_file(
        &shared.join(SHAREGPT),
        Some(Format::ShareGpt),
        &ReadOptions::default(),
    )
    .unwrap();
    let by_id: HashMap<&str, &Example> =
        loaded.examples.iter().map(|e| (e.id.as_str(), e)).collect();
    let det = RuleDetector::default();
    let mut rows: Vec<(&Label, Vec<Category>, &Example)> = Vec::new();
    for l in &labels {
        // Ids the reader excludes (consecutive same-role turns, empty turns) are ignored; any
        // other missing id means the label file and the data disagree.
        if let Some(ex) = by_id.get(l.id.as_str()) {
            rows.push((l, det.classify(ex), ex));
        }
    }
    let excluded = labels.len() - rows.len();
    assert!(
        excluded <= 8,
        "{excluded} labelled ids are not conversations of the subset"
    );
    assert!(
        rows.len() >= 250,
        "only {} labelled conversations usable",
        rows.len()
    );

    let all = score(rows.iter().map(|(l, c, _)| (*l, c.as_slice())));
    println!(
        "rule detector on {} hand-labelled conversations ({excluded} excluded by the reader):",
        rows.len()
    );
    for (s, name) in all.iter().zip(["code", "math", "removed"]) {
        println!("{}", s.line(name));
    }
    for section in SECTIONS {
        let part: Vec<_> = rows
            .iter()
            .filter(|(l, _, _)| l.section == section)
            .collect();
        println!("section {section}: {} conversations", part.len());
        for (s, name) in score(part.iter().map(|(l, c, _)| (*l, c.as_slice())))
            .iter()
            .zip(["code", "math", "removed"])
        {
            println!("  {}", s.line(name));
        }
    }
    // The disagreements, with the detector's evidence, so that every error can be read.
    for (cat, truth) in [
        (Category::Code, (|l: &Label| l.code) as fn(&Label) -> bool),
        (Category::Math, |l: &Label| l.math),
    ] {
        for (l, cats, ex) in &rows {
            let predicted = cats.contains(&cat);
            if predicted != truth(l) {
                let kind = if predicted { "fp" } else { "fn" };
                let why: Vec<String> = det
                    .explain(ex)
                    .into_iter()
                    .filter(|(c, _)| *c == cat)
                    .map(|(_, e)| e)
                    .collect();
                println!("  {cat} {kind} {} [{}] {}", l.id, l.section, why.join("; "));
            }
        }
    }
    // The issue asks for ≥ 0.85 for both categories. Code reaches it everywhere. Math does not
    // on data no rule was tuned on: rules-v2 (frozen) scored 0.650 / 0.684 on the blind
    // held-out-3 section (19 math conversations), 0.841 / 0.853 pooled over all 1,097 (68 math).
    // The math floors are regression floors just under the pooled figures, not the goal.
    let floors = [("code", 0.85, 0.85), ("math", 0.83, 0.84)];
    for (s, (name, min_p, min_r)) in all.iter().zip(floors) {
        assert!(
            s.precision() >= min_p,
            "{name} precision {:.3} < {min_p}",
            s.precision()
        );
        assert!(
            s.recall() >= min_r,
            "{name} recall {:.3} < {min_r}",
            s.recall()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Full subset through the CLI
// ---------------------------------------------------------------------------------------------

fn gunzip_lines(path: &Path) -> Vec<String> {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.lines().map(str::to_string).collect()
}

fn count(v: &Value, key: &str) -> usize {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("report has no count {key:?}: {v}")) as usize
}

#[test]
fn full_subset_ablation_removes_10_to_50_percent_and_counts_add_up() {
    let shared = require_shared!();
    let input = shared.join(SHAREGPT);
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = (
        dir.path().join("kept.jsonl.gz"),
        dir.path().join("report.json"),
    );
    common::bin()
        .args(["data", "ablate", "--remove", "code,math"])
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .assert()
        .success()
        .stderr(contains("removed").and(contains("rules-v2")));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let (code, math) = (
        r["removed"]["code"].as_u64().unwrap() as usize,
        r["removed"]["math"].as_u64().unwrap() as usize,
    );
    let (kept, conversations) = (count(&r, "kept"), count(&r, "conversations"));
    // shared/data/SOURCES.md: 10,000 records.
    assert_eq!(count(&r, "input"), 10_000);
    assert_eq!(
        count(&r, "input"),
        kept + code + math + count(&r, "excluded") + count(&r, "skipped") + count(&r, "failed")
    );
    assert_eq!(conversations, kept + code + math);
    assert_eq!(count(&r, "removed_total"), code + math);
    let fraction = (code + math) as f64 / conversations as f64;
    println!(
        "removed {code} code + {math} math of {conversations} conversations ({:.1}%)",
        100.0 * fraction
    );
    assert!(
        (0.10..=0.50).contains(&fraction),
        "removed fraction {fraction:.3} outside 10–50%"
    );
    // Code comes first: every code detection is removed as code; math ones only when not code.
    let detected = &r["detected"];
    assert_eq!(code, detected["code"].as_u64().unwrap() as usize);
    assert_eq!(
        math,
        (detected["math"].as_u64().unwrap() - detected["both"].as_u64().unwrap()) as usize
    );
    for (cat, rules) in [
        (
            "code",
            [
                "fenced-code",
                "pasted-code",
                "error-trace",
                "shell-command",
                "inline-code",
                "programming-terms",
            ]
            .as_slice(),
        ),
        (
            "math",
            [
                "worked-arithmetic",
                "latex-math",
                "algebra",
                "word-problem",
                "math-terms",
            ]
            .as_slice(),
        ),
    ] {
        let shown = r["decisions"][cat].as_array().unwrap();
        assert_eq!(shown.len(), 5);
        for d in shown {
            let rule = d["rule"].as_str().unwrap();
            assert!(
                rules.iter().any(|n| rule.starts_with(n)),
                "{cat} decision with rule {rule:?}"
            );
            assert!(!d["snippet"].as_str().unwrap().is_empty());
        }
    }

    // The kept file holds exactly the kept conversations, as the original lines.
    let kept_lines = gunzip_lines(&out);
    assert_eq!(kept_lines.len(), kept);
    let original: HashSet<String> = gunzip_lines(&input).into_iter().collect();
    assert!(
        kept_lines.iter().all(|l| original.contains(l)),
        "a kept line is not an original line"
    );
    let reread = read_file(&out, Some(Format::ShareGpt), &ReadOptions::default()).unwrap();
    assert_eq!((reread.examples.len(), reread.excluded.len()), (kept, 0));
}

// ---------------------------------------------------------------------------------------------
// CLI on a small fixture
// ---------------------------------------------------------------------------------------------

fn record(id: &str, turns: &[(&str, &str)]) -> String {
    let conv: Vec<Value> = turns
        .iter()
        .map(|(f, v)| serde_json::json!({"from": f, "value": v}))
        .collect();
    serde_json::json!({"id": id, "conversations": conv}).to_string()
}

/// A fixture: code, math, both, neither, one excluded (no assistant turn) and one malformed line.
fn fixture(dir: &Path) -> (PathBuf, Vec<String>) {
    let lines = vec![
        record(
            "code",
            &[
                ("human", "Read a CSV in Python?"),
                (
                    "gpt",
                    "```python\nimport csv\nrows = list(csv.reader(open('a.csv')))\n```",
                ),
            ],
        ),
        record(
            "math",
            &[
                ("human", "What is 15% of 240?"),
                ("gpt", "0.15 * 240 = 36, so 36."),
            ],
        ),
        record(
            "both",
            &[
                ("human", "What is 15% of 240? Then write it in Python."),
                ("gpt", "```python\nx = 0.15 * 240\nprint(x)\n```"),
            ],
        ),
        record(
            "neither",
            &[
                ("human", "How do I make pancake batter?"),
                ("gpt", "Whisk flour, an egg and milk."),
            ],
        ),
        record("lonely", &[("human", "Anyone there?")]),
        "{not json".to_string(),
    ];
    let path = dir.join("sharegpt.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, lines)
}

fn run_ablate(input: &Path, dir: &Path, remove: &str) -> (Value, Vec<String>) {
    let (out, report) = (
        dir.join(format!("kept-{remove}.jsonl")),
        dir.join(format!("report-{remove}.json")),
    );
    common::bin()
        .args(["data", "ablate", "--skip-invalid", "--remove", remove])
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .assert()
        .success();
    let r = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let kept = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    (r, kept)
}

#[test]
fn cli_counts_precedence_and_kept_records_on_a_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let (input, lines) = fixture(dir.path());

    // A malformed record fails the file unless --skip-invalid.
    common::bin()
        .args(["data", "ablate"])
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("x.jsonl"))
        .assert()
        .code(2)
        .stderr(contains("line 6").and(contains("--skip-invalid")));

    let (r, kept) = run_ablate(&input, dir.path(), "code,math");
    assert_eq!(
        (
            count(&r, "input"),
            count(&r, "conversations"),
            count(&r, "excluded"),
            count(&r, "skipped")
        ),
        (6, 4, 1, 1)
    );
    assert_eq!(
        (r["removed"]["code"].as_u64(), r["removed"]["math"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(count(&r, "kept"), 1);
    assert_eq!(
        kept,
        vec![lines[3].clone()],
        "the kept file holds the original record"
    );
    assert_eq!(r["detected"]["both"].as_u64(), Some(1));
    assert_eq!(
        r["excluded_by_reason"]["no assistant turn"].as_u64(),
        Some(1)
    );
    let code_ids: Vec<&str> = r["decisions"]["code"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(code_ids, ["code", "both"]);

    // The first category listed wins for a conversation that is both.
    let (r, _) = run_ablate(&input, dir.path(), "math,code");
    assert_eq!(
        (r["removed"]["math"].as_u64(), r["removed"]["code"].as_u64()),
        (Some(2), Some(1))
    );
    let (r, kept) = run_ablate(&input, dir.path(), "math");
    assert_eq!(r["removed"], serde_json::json!({"math": 2}));
    assert_eq!(kept, vec![lines[0].clone(), lines[3].clone()]);
}

#[test]
fn cli_rejects_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = fixture(dir.path());
    let base = || {
        let mut c = common::bin();
        c.args(["data", "ablate", "--skip-invalid"])
            .arg("--input")
            .arg(&input);
        c
    };
    base()
        .args(["--remove", "code,poetry", "--out"])
        .arg(dir.path().join("o.jsonl"))
        .assert()
        .code(2)
        .stderr(contains("poetry"));
    base()
        .args(["--remove", "code,code", "--out"])
        .arg(dir.path().join("o.jsonl"))
        .assert()
        .code(2)
        .stderr(contains("twice"));
    base()
        .arg("--out")
        .arg(&input)
        .assert()
        .code(2)
        .stderr(contains("overwrite"));
    base()
        .args(["--detector", "http", "--out"])
        .arg(dir.path().join("o.jsonl"))
        .assert()
        .code(2)
        .stderr(contains("--api-model"));
    common::bin()
        .args(["data", "ablate", "--input"])
        .arg(dir.path().join("missing.jsonl"))
        .arg("--out")
        .arg(dir.path().join("o.jsonl"))
        .assert()
        .code(2)
        .stderr(contains("missing.jsonl"));
}

// ---------------------------------------------------------------------------------------------
// HTTP tagger against a local server
// ---------------------------------------------------------------------------------------------

/// Serve at most `n` requests on 127.0.0.1 (one per connection) with `reply(body) -> (status,
/// content)`, giving up 30 s after the start; returns the base URL and the requests seen.
fn serve(n: usize, reply: fn(&str) -> (u16, String)) -> (String, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while seen.len() < n && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => seen.push(answer(stream, reply)),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        seen
    });
    (base, handle)
}

fn answer(stream: TcpStream, reply: fn(&str) -> (u16, String)) -> String {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    let body = String::from_utf8(body).unwrap();
    let (status, content) = reply(&body);
    let json = serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).to_string();
    let mut stream = reader.into_inner();
    write!(stream, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}", json.len()).unwrap();
    format!("{head}\r\n{body}")
}

/// Canned InsTag-style replies keyed on the query.
fn tagger_reply(body: &str) -> (u16, String) {
    let tags: &[&str] = if body.contains("15%") {
        &["arithmetic calculation", "percentage"]
    } else if body.contains("Python") {
        &["Python programming", "file handling"]
    } else {
        &["cooking", "recipe request"]
    };
    let items: Vec<Value> = tags
        .iter()
        .map(|t| serde_json::json!({"tag": t, "explanation": "…"}))
        .collect();
    (200, Value::Array(items).to_string())
}

#[test]
fn http_tagger_sends_instag_requests_and_maps_tags() {
    let (base, server) = serve(2, tagger_reply);
    let tagger = HttpTagger::new(
        &base,
        "tagger-model",
        Some("sk-test".into()),
        Duration::from_secs(10),
    );
    let ex = |q: &str| Example {
        id: "x".into(),
        ability: mixprobe::data::example::Ability::General,
        turns: vec![
            mixprobe::data::example::Turn::user(q),
            mixprobe::data::example::Turn::assistant("…"),
        ],
        meta: Default::default(),
    };
    let d = tagger.decide(&ex("What is 15% of 240?")).unwrap();
    assert_eq!(d.categories, vec![Category::Math]);
    assert!(d.evidence[0].1.contains("arithmetic calculation"));
    assert_eq!(
        tagger.classify(&ex("A pancake recipe?")),
        Vec::<Category>::new()
    );
    assert_eq!(tagger.name(), "http-tagger:tagger-model");
    let requests = server.join().unwrap();
    assert_eq!(requests.len(), 2);
    let (head, body) = requests[0].split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("POST /v1/chat/completions "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer sk-test"),
        "{head}"
    );
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["model"], "tagger-model");
    assert!(
        body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("tags of user intentions")
    );
    assert_eq!(body["messages"][1]["content"], "What is 15% of 240?");
}

#[test]
fn http_tagger_failures_are_reported_not_dropped() {
    let (base, server) = serve(1, |_| (500, "boom".into()));
    let tagger = HttpTagger::new(&base, "m", None, Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = fixture(dir.path());
    let loaded = read_file(
        &input,
        Some(Format::ShareGpt),
        &ReadOptions { skip_invalid: true },
    )
    .unwrap();
    let first = loaded.examples[..1].to_vec();
    let a = ablate::ablate(first, &[Category::Code], &tagger);
    assert_eq!((a.kept.len(), a.removed.len(), a.failed.len()), (0, 0, 1));
    assert!(a.failed[0].1.contains("500"), "{}", a.failed[0].1);
    assert_eq!(server.join().unwrap().len(), 1);
}

#[test]
fn cli_with_the_http_detector() {
    let dir = tempfile::tempdir().unwrap();
    let (input, lines) = fixture(dir.path());
    // Four conversations, one request each.
    let (base, server) = serve(4, tagger_reply);
    let (out, report) = (
        dir.path().join("kept.jsonl"),
        dir.path().join("report.json"),
    );
    common::bin()
        .env("ABLATE_TEST_KEY", "sk-cli")
        .args([
            "data",
            "ablate",
            "--skip-invalid",
            "--detector",
            "http",
            "--api-model",
            "m",
            "--api-key-env",
            "ABLATE_TEST_KEY",
        ])
        .arg("--api-base")
        .arg(&base)
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .assert()
        .success();
    let requests = server.join().unwrap();
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| {
        r.to_ascii_lowercase()
            .contains("authorization: bearer sk-cli")
    }));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["detector"], "http-tagger:m");
    // "code" and "both" mention Python, "math" and "both" 15%: the canned replies tag "both" as math.
    assert_eq!(r["removed"], serde_json::json!({"code": 1, "math": 2}));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{}\n", lines[3])
    );
}

#[test]
fn cli_fails_clearly_when_the_endpoint_is_down() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = fixture(dir.path());
    common::bin()
        .args([
            "data",
            "ablate",
            "--skip-invalid",
            "--detector",
            "http",
            "--api-model",
            "m",
            "--api-timeout",
            "5",
        ])
        .arg("--api-base")
        .arg(format!("http://127.0.0.1:{port}/v1"))
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("kept.jsonl"))
        .assert()
        .code(2)
        .stderr(contains("could not be classified"));
    assert!(
        !dir.path().join("kept.jsonl").exists(),
        "nothing is written when classification failed"
    );
}
