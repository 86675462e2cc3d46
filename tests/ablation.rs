//! The ShareGPT code/math ablation: precision/recall of the rule detector on the hand-labelled
//! sample (tests/fixtures/ablation_labels.tsv, texts read from ../shared), the full-subset run,
//! the CLI's counts and outputs on a small fixture, and the HTTP tagger against a local server.
mod common;

use mixprobe::data::ablate::{self, Category, Detector, HttpTagger, RuleDetector};
use mixprobe::data::ablate_learned::{self as learned, LearnedDetector};
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
        .args([
            "data",
            "ablate",
            "--detector",
            "rules",
            "--remove",
            "code,math",
        ])
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
        .args([
            "data",
            "ablate",
            "--detector",
            "rules",
            "--skip-invalid",
            "--remove",
            remove,
        ])
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

/// `data ablate-score` scores an LLM tagger against hand labels: only the labelled
/// conversations are sent, per section and pooled counts are hand-checkable, and labelled ids
/// the reader excludes or the file lacks are listed, not scored.
#[test]
fn ablate_score_measures_an_http_tagger_against_hand_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = fixture(dir.path());
    let labels = dir.path().join("labels.tsv");
    std::fs::write(
        &labels,
        "# section a\ncode\t1\t0\nmath\t0\t1\n# section b\nboth\t1\t1\nneither\t0\t0\nlonely\t0\t0\nghost\t1\t0\n",
    )
    .unwrap();
    let (base, server) = serve(4, tagger_reply);
    let report = dir.path().join("score.json");
    common::bin()
        .args([
            "data",
            "ablate-score",
            "--skip-invalid",
            "--quiet",
            "--detector",
            "http",
            "--api-model",
            "m",
        ])
        .arg("--api-base")
        .arg(&base)
        .arg("--input")
        .arg(&input)
        .arg("--labels")
        .arg(&labels)
        .arg("--report")
        .arg(&report)
        .assert()
        .success()
        .stderr(contains("2 labelled id(s) are not conversations"));
    assert_eq!(server.join().unwrap().len(), 4);
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["detector"], "http-tagger:m");
    assert_eq!(r["labels"], 6);
    assert_eq!(r["not_in_input"], serde_json::json!(["lonely", "ghost"]));
    // The canned tagger calls "both" math only (its question holds "15%"): code misses it.
    let want = [
        ("a", 2, (1, 0, 0), (1, 0, 0)),
        ("b", 2, (0, 0, 1), (1, 0, 0)),
        ("all", 4, (1, 0, 1), (2, 0, 0)),
    ];
    let got: Vec<&Value> = r["sections"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&r["pooled"]])
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, (name, scored, code, math)) in got.iter().zip(want) {
        assert_eq!(g["section"], name);
        assert_eq!(g["scored"], scored, "{name}");
        assert_eq!(json_counts(&g["code"]), code, "{name}");
        assert_eq!(json_counts(&g["math"]), math, "{name}");
    }
}

/// On the shared subset, `data ablate-score` gives the blind figures that the tests below pin
/// through their own scoring code: learned-v7 on held-out-9 and -10, math tp 31, fp 9, fn 6;
/// rules-v2 on held-out-9, code (178, 6, 14) and math (19, 9, 17).
#[test]
fn ablate_score_reproduces_the_pinned_blind_judgements() {
    let shared = require_shared!();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let run = |labels: &[&str], detector: &[&str]| -> Value {
        let report = dir.path().join("score.json");
        let list: Vec<String> = labels
            .iter()
            .map(|l| root.join(l).display().to_string())
            .collect();
        common::bin()
            .args(["data", "ablate-score", "--quiet"])
            .args(detector)
            .arg("--input")
            .arg(shared.join(SHAREGPT))
            .arg("--labels")
            .arg(list.join(","))
            .arg("--report")
            .arg(&report)
            .assert()
            .success();
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
    };
    let c = json_counts;
    let v7 = root.join(DETECTOR_V7).display().to_string();
    let r = run(&[LABELS_9, LABELS_10], &["--detector-file", &v7]);
    assert_eq!(r["detector"], "learned-v7");
    assert_eq!(c(&r["pooled"]["math"]), (31, 9, 6));
    let r = run(&[LABELS_9], &["--detector", "rules"]);
    assert_eq!(r["detector"], "rules-v2");
    assert_eq!(
        (c(&r["pooled"]["code"]), c(&r["pooled"]["math"])),
        ((178, 6, 14), (19, 9, 17))
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

// ---------------------------------------------------------------------------------------------
// The learned detector (learned-v8; learned-v7 for the blind samples it was judged on)
// ---------------------------------------------------------------------------------------------

/// The held-out-4 label file (session 4: 150 enriched + 150 random, labelled blind; training
/// data since learned-v4).
const LABELS_4: &str = "tests/fixtures/ablation_labels_blind4.tsv";
const LABELS_5: &str = "tests/fixtures/ablation_labels_blind5.tsv";
const LABELS_6: &str = "tests/fixtures/ablation_labels_blind6.tsv";
const LABELS_7: &str = "tests/fixtures/ablation_labels_blind7.tsv";
const LABELS_8: &str = "tests/fixtures/ablation_labels_blind8.tsv";
/// The held-out-9 label file (session 7): blind for learned-v7; training data since learned-v8.
const LABELS_9: &str = "tests/fixtures/ablation_labels_blind9.tsv";
/// The held-out-10 label file (session 9): blind for learned-v7; training data since learned-v8.
const LABELS_10: &str = "tests/fixtures/ablation_labels_blind10.tsv";
/// The active-learning labels (session 7): 400 conversations learned-v6 picked, in three
/// sections that are always in training and never a left-out fold.
const ACTIVE_1: &str = "tests/fixtures/ablation_labels_active1.tsv";

/// All hand labels (eight sampled files, twenty-two sections, and the active-1 file) with their
/// conversations' features, and the twenty-two sampled sections (the left-out folds of
/// learned-v7's procedure; learned-v8's folds are all twenty-five sections).
fn labelled(shared: &Path) -> (learned::Labelled, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut labels = Vec::new();
    for file in [
        LABELS, LABELS_4, LABELS_5, LABELS_6, LABELS_7, LABELS_8, LABELS_9, LABELS_10,
    ] {
        labels.extend(learned::read_labels(&root.join(file)).unwrap());
    }
    let mut folds: Vec<String> = Vec::new();
    for l in &labels {
        if !folds.contains(&l.section) {
            folds.push(l.section.clone());
        }
    }
    labels.extend(learned::read_labels(&root.join(ACTIVE_1)).unwrap());
    let loaded = read_file(
        &shared.join(SHAREGPT),
        Some(Format::ShareGpt),
        &ReadOptions::default(),
    )
    .unwrap();
    let (set, missing) = learned::Labelled::new(&RuleDetector::default(), labels, &loaded.examples);
    // The reader excludes 26 labelled conversations (an empty turn and the like; 9 of them in
    // held-out-8, none among the active-1 picks, which were scored conversations).
    assert!(
        missing.len() <= 26,
        "{} labelled ids missing",
        missing.len()
    );
    (set, folds)
}

/// The shipped file, checked section by section: for the shipped choice of each category (with
/// the configurations fitted together with it, as in training), every section (the active-1
/// picks are folds since learned-v8) is scored again by a model trained on everything else at
/// the threshold the stored table records for it, and must give the stored counts; the shipped
/// choice must be the best stored row; the nested estimate must agree with the table on every
/// fold section; the k-fold rows and the weights must be what this code produces. (The
/// thresholds themselves, chosen by leaving one section out within the other folds, take a
/// model per pair of sections, 300 per configuration group: `data ablate-train` computes them,
/// and `nested_estimate_never_reads_the_labels_it_judges` checks that machinery on a small
/// fixture.) The floors are what the shipped choices reach (see the book's ablation chapter).
#[test]
fn learned_detector_reproduces_the_shipped_tables_section_by_section_and_its_weights() {
    let shared = require_shared!();
    let shipped = LearnedDetector::shipped().unwrap();
    let file = shipped.file();
    let (set, sampled) = labelled(&shared);
    assert_eq!(sampled.len(), 22);
    // Since learned-v8, the active-1 picks are folds too.
    let sections = learned::sections(&set);
    assert_eq!(
        sections.len(),
        25,
        "twenty-two sampled sections and three active-1 sections"
    );
    assert!(!file.training.contains_key("train_only_sections"));
    let folds = file.training["folds"].as_u64().unwrap() as usize;
    let seeds: Vec<u64> = file.training["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(file.training["labelled"].as_u64(), Some(set.len() as u64));
    assert_eq!(
        file.training["sections"],
        serde_json::json!(sections),
        "every section is a fold"
    );
    println!(
        "{} labelled conversations, twenty-five sections left out in turn:",
        set.len()
    );
    for (cat, model) in [(Category::Code, &file.code), (Category::Math, &file.math)] {
        let rows: Vec<learned::LosoRow> = file
            .loso
            .iter()
            .filter(|r| r.category == cat)
            .cloned()
            .collect();
        let best = learned::select_loso(&rows).unwrap().clone();
        assert_eq!(
            best.choice(),
            model.choice,
            "{cat}: the shipped choice is the best row"
        );
        println!("  {}  <- shipped", best.line());
        // The shipped configuration with the grid's configurations that share its Gram matrix:
        // they are fitted together, as in training.
        let configs: Vec<learned::Config> = match model.choice.config {
            Some(shipped) => learned::Config::grid(cat)
                .into_iter()
                .filter(|c| c.same_groups(&shipped))
                .collect(),
            None => Vec::new(),
        };
        let at = configs.iter().position(|c| Some(*c) == model.choice.config);
        let mut pooled = learned::Counts::default();
        for stored in &best.sections {
            let probs: Vec<(usize, f64)> = match at {
                Some(c) => {
                    learned::left_out_probs(&set, cat, &configs, &stored.section).swap_remove(c)
                }
                None => (0..set.len())
                    .filter(|&i| set.labels[i].section == stored.section)
                    .map(|i| (i, 0.0))
                    .collect(),
            };
            let choice = learned::Choice {
                threshold: stored.threshold,
                ..model.choice
            };
            let mut c = learned::Counts::default();
            for (i, p) in probs {
                c.add(
                    learned::verdict(&set, i, cat, &choice, p),
                    set.labels[i].is(cat),
                );
            }
            assert_eq!(
                c, stored.counts,
                "{cat}: section {} re-scored differs from the stored table",
                stored.section
            );
            pooled.add_counts(&c);
        }
        assert_eq!(pooled, best.pooled);
        // Random sections (the subset's base rate) and enriched ones, pooled separately.
        let part = |random: bool| {
            let mut c = learned::Counts::default();
            for s in best.sections.iter().filter(|s| {
                let r = s.section.ends_with("-random")
                    || s.section == "tuned"
                    || s.section == "held-out-1";
                r == random
            }) {
                c.add_counts(&s.counts);
            }
            c
        };
        let (random, enriched) = (part(true), part(false));
        println!(
            "  {cat} shipped, left-out random sections P/R {:.3}/{:.3}, enriched {:.3}/{:.3}",
            random.precision(),
            random.recall(),
            enriched.precision(),
            enriched.recall()
        );
        let (code, math) = ((FLOOR_CODE_P, FLOOR_CODE_R), (FLOOR_MATH_P, FLOOR_MATH_R));
        above_floors(&best.pooled, cat, code, math, "left out");
        let nested = nested_agrees_with_the_table(file, cat, &sections, 25);
        assert_eq!(nested.pooled, nested.pooled_all, "every section is a fold");
        let (code, math) = (
            (NESTED_CODE_P, NESTED_CODE_R),
            (NESTED_MATH_P, NESTED_MATH_R),
        );
        above_floors(&nested.pooled, cat, code, math, "nested");
        // k-fold CV of the same choice, re-scored on the same folds.
        let cv = learned::cross_validate(&set, cat, &configs, folds, &seeds, &sections);
        for r in cv
            .iter()
            .filter(|r| r.choice == model.choice || r.choice.config.is_none())
        {
            let stored = file
                .cv
                .iter()
                .find(|s| s.category == cat && s.choice == r.choice)
                .expect("row in the shipped CV table");
            assert!(
                close(&stored.precision, &r.precision)
                    && close(&stored.recall, &r.recall)
                    && close(&stored.f1, &r.f1),
                "{cat}: stored CV row {} differs from the re-computed one {}",
                stored.line(),
                r.line()
            );
            println!("  k-fold {}", r.line());
        }
        // The shipped weights are what the training code produces from the labels.
        let retrained = learned::train(&set, cat, model.choice);
        assert_eq!(retrained.choice, model.choice);
        match (&retrained.weights, &model.weights) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                let dense = |w: &learned::Weights| w.dense.values().copied().collect::<Vec<_>>();
                let lexicon =
                    |w: &learned::Weights| w.lexicon.values().copied().collect::<Vec<_>>();
                assert!(
                    close(&[a.bias], &[b.bias])
                        && close(&dense(a), &dense(b))
                        && close(&lexicon(a), &lexicon(b))
                        && close(&a.user, &b.user)
                        && close(&a.assistant, &b.assistant)
                        && close(&a.window, &b.window),
                    "{cat}: retraining does not reproduce the shipped weights"
                );
            }
            _ => panic!("{cat}: retrained and shipped models differ in kind"),
        }
    }
}

/// Precision and recall of `c` reach the floors of `cat` (`code` or `math`: precision, recall).
fn above_floors(
    c: &learned::Counts,
    cat: Category,
    code: (f64, f64),
    math: (f64, f64),
    what: &str,
) {
    let (min_p, min_r) = match cat {
        Category::Code => code,
        Category::Math => math,
    };
    assert!(
        c.precision() >= min_p && c.recall() >= min_r,
        "{cat}, {what}: precision {:.3} recall {:.3} below {min_p}/{min_r}",
        c.precision(),
        c.recall()
    );
}

/// `{"tp", "fp", "fn"}` of a JSON report.
fn json_counts(v: &Value) -> (u64, u64, u64) {
    let n = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("no count {k:?} in {v}"))
    };
    (n("tp"), n("fp"), n("fn"))
}

/// The nested estimate stored in `file` for `cat` agrees with the stored table (see
/// [`nested_matches_rows`]) and judges `sections` sections in all.
fn nested_agrees_with_the_table(
    file: &learned::DetectorFile,
    cat: Category,
    folds: &[String],
    sections: usize,
) -> learned::Nested {
    let nested = file
        .nested
        .iter()
        .find(|n| n.category == cat)
        .expect("the file records the nested estimate")
        .clone();
    nested_matches_rows(&nested, &file.loso, folds);
    assert_eq!(nested.sections.len(), sections);
    for line in nested.lines().iter().take(3) {
        println!("  {line}");
    }
    nested
}

/// `nested` marks exactly the `folds` as folds, agrees with the leave-one-section-out `rows` on
/// every fold section (the chosen row's threshold and counts there), and its pooled counts are
/// the sums of its sections (fold sections, and all).
fn nested_matches_rows(nested: &learned::Nested, rows: &[learned::LosoRow], folds: &[String]) {
    let (mut folded, mut every) = (learned::Counts::default(), learned::Counts::default());
    for s in &nested.sections {
        every.add_counts(&s.counts);
        assert_eq!(s.fold, folds.contains(&s.section), "{}", s.section);
        if s.fold {
            folded.add_counts(&s.counts);
            let row = rows
                .iter()
                .find(|r| r.category == nested.category && r.name() == s.chosen)
                .expect("the chosen candidate is a row of the table");
            let there = row
                .sections
                .iter()
                .find(|t| t.section == s.section)
                .unwrap();
            assert_eq!((there.threshold, there.counts), (s.threshold, s.counts));
        }
    }
    assert_eq!((folded, every), (nested.pooled, nested.pooled_all));
}

/// Floors of the shipped choices' nested estimate (see [`learned::Nested`]) over every labelled
/// conversation (all twenty-five sections are folds), measured when learned-v8 shipped: code
/// 0.955 / 0.954 (tp 1510, fp 71, fn 72), math 0.797 / 0.793 (tp 295, fp 75, fn 77).
const NESTED_CODE_P: f64 = 0.95;
const NESTED_CODE_R: f64 = 0.95;
const NESTED_MATH_P: f64 = 0.79;
const NESTED_MATH_R: f64 = 0.79;

/// Floors of the shipped choices' pooled leave-one-section-out precision and recall.
/// Measured when learned-v8 shipped (4,224 labelled conversations: twenty-five sections left
/// out in turn, the 400 active-1 picks among them): code 0.955 / 0.956 (tp 1513, fp 72, fn
/// 69), math 0.793 / 0.801 (tp 298, fp 78, fn 74). These pool every labelled conversation, the
/// hardest picks included, so they are not comparable with the earlier detectors' figures over
/// sampled sections only (learned-v7 on its sixteen: code 0.960 / 0.959, math 0.864 / 0.868;
/// learned-v6 on its fourteen: math 0.856 / 0.861; learned-v5 on its ten: 0.851 / 0.851).
const FLOOR_CODE_P: f64 = 0.95;
const FLOOR_CODE_R: f64 = 0.95;
const FLOOR_MATH_P: f64 = 0.79;
const FLOOR_MATH_R: f64 = 0.80;

/// Equal up to the last bit or two: serde_json parses decimal floats to within one ulp
/// (its `float_roundtrip` feature is off), the file stores six significant digits.
fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1e-300))
}

fn learned_score<'a>(
    rows: impl Iterator<Item = (&'a learned::Label, &'a [Category])>,
) -> [Score; 2] {
    let mut s = [Score::default(); 2];
    for (l, cats) in rows {
        s[0].add(cats.contains(&Category::Code), l.code);
        s[1].add(cats.contains(&Category::Math), l.math);
    }
    s
}

#[test]
fn full_subset_ablation_with_the_learned_detector() {
    let shared = require_shared!();
    let input = shared.join(SHAREGPT);
    let dir = tempfile::tempdir().unwrap();
    let (out, report, decisions) = (
        dir.path().join("kept.jsonl.gz"),
        dir.path().join("report.json"),
        dir.path().join("decisions.jsonl"),
    );
    let start = Instant::now();
    common::bin()
        .args([
            "data",
            "ablate",
            "--detector",
            "learned",
            "--remove",
            "code,math",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .arg("--decisions")
        .arg(&decisions)
        .assert()
        .success()
        .stderr(contains("learned-v8"));
    let seconds = start.elapsed().as_secs_f64();
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let (code, math) = (
        r["removed"]["code"].as_u64().unwrap() as usize,
        r["removed"]["math"].as_u64().unwrap() as usize,
    );
    let conversations = count(&r, "conversations");
    assert_eq!(conversations, count(&r, "kept") + code + math);
    let fraction = (code + math) as f64 / conversations as f64;
    println!(
        "learned-v8 removed {code} code + {math} math of {conversations} conversations ({:.1}%) in {seconds:.1} s",
        100.0 * fraction
    );
    assert!(
        (0.10..=0.50).contains(&fraction),
        "removed fraction {fraction:.3} outside 10–50%"
    );
    assert_eq!(r["detector"].as_str(), Some("learned-v8"));
    // Every removal is explained (a model probability with its top features, or a rule).
    // Counted too: the conversations flagged as math that no label file holds (the census of
    // the book's ablation chapter: there, every other flag has an out-of-sample verdict).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut labelled_ids = HashSet::new();
    for file in [
        LABELS, LABELS_4, LABELS_5, LABELS_6, LABELS_7, LABELS_8, LABELS_9, LABELS_10, ACTIVE_1,
    ] {
        for l in learned::read_labels(&root.join(file)).unwrap() {
            labelled_ids.insert(l.id);
        }
    }
    let lines = std::fs::read_to_string(&decisions).unwrap();
    let (mut explained, mut unlabelled, mut unlabelled_math) = (0, 0, 0);
    for line in lines.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if !labelled_ids.contains(v["id"].as_str().unwrap()) {
            unlabelled += 1;
            let cats = v["categories"].as_array().unwrap();
            unlabelled_math += usize::from(cats.iter().any(|c| c == "math"));
        }
        if !v["removed_as"].is_null() {
            let rules = v["rules"].as_array().unwrap();
            assert!(!rules.is_empty(), "removal without evidence: {line}");
            explained += 1;
        }
    }
    assert_eq!(explained, code + math);
    println!(
        "flagged as math among the {unlabelled} conversations no label file holds: {unlabelled_math}"
    );
    assert!(unlabelled > 5000, "{unlabelled} unlabelled conversations");
}

/// A small labelled set for the training command: clear code, math and general conversations,
/// three sections in the label file and a fourth (`extra`) in a file of its own.
fn training_fixture(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut lines = Vec::new();
    let mut labels = String::from("# id\tcode\tmath\n");
    let mut extra = String::from("# section extra\n");
    for i in 0..16 {
        if i % 4 == 0 && i < 12 {
            labels.push_str(&format!("# section part{}\n", i / 4));
        }
        let labels = if i < 12 { &mut labels } else { &mut extra };
        lines.push(record(
            &format!("code{i}"),
            &[
                (
                    "human",
                    &format!("Write a Python function number {i} that reverses a list."),
                ),
                (
                    "gpt",
                    &format!("```python\ndef rev{i}(xs):\n    return xs[::-1]\n```"),
                ),
            ],
        ));
        labels.push_str(&format!("code{i}\t1\t0\n"));
        lines.push(record(
            &format!("math{i}"),
            &[
                (
                    "human",
                    &format!(
                        "If a shirt costs {} dollars and is 20% off, how much do I pay?",
                        10 + i
                    ),
                ),
                (
                    "gpt",
                    &format!(
                        "20% of {} is {}, so you pay {} - {} = {}.",
                        10 + i,
                        (10 + i) as f64 * 0.2,
                        10 + i,
                        (10 + i) as f64 * 0.2,
                        (10 + i) as f64 * 0.8
                    ),
                ),
            ],
        ));
        labels.push_str(&format!("math{i}\t0\t1\n"));
        lines.push(record(
            &format!("chat{i}"),
            &[
                ("human", &format!("Suggest a name for my cat, idea {i}.")),
                ("gpt", "How about Whiskers, Luna or Mochi?"),
            ],
        ));
        labels.push_str(&format!("chat{i}\t0\t0\n"));
    }
    let data = dir.join("small.jsonl");
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let label_file = dir.join("labels.tsv");
    std::fs::write(&label_file, labels).unwrap();
    let extra_file = dir.join("extra.tsv");
    std::fs::write(&extra_file, extra).unwrap();
    (data, label_file, extra_file)
}

/// The nested estimate judges each outer section with a choice, a threshold and weights made
/// without that section's labels. On the small training fixture with label noise (so that
/// candidates and thresholds differ between sections), inverting every math label of one outer
/// section at a time must leave that section's choice, threshold and verdicts unchanged: its
/// true and false positives swap, and its misses become the true negatives it had. Also: the
/// leave-one-section-out table does not depend on which sections only train, the nested pooled
/// counts are the sum of its sections, and on a fold section the nested verdicts are those that
/// the chosen candidate's table row reports for it.
#[test]
fn nested_estimate_never_reads_the_labels_it_judges() {
    let dir = tempfile::tempdir().unwrap();
    let (data, labels, extra) = training_fixture(dir.path());
    let loaded = read_file(&data, Some(Format::ShareGpt), &ReadOptions::default()).unwrap();
    let mut all = learned::read_labels(&labels).unwrap();
    all.extend(learned::read_labels(&extra).unwrap());
    // A category the rules cannot see (cat names count as "math" here, so that models beat the
    // rules), with noise unevenly over the sections (so that thresholds and choices vary).
    for l in &mut all {
        let n: usize =
            l.id.trim_start_matches(char::is_alphabetic)
                .parse()
                .unwrap();
        if l.id.starts_with("chat") {
            l.math = n % 5 != 1;
        } else if l.id.starts_with("math") && n % 7 == 3 {
            l.math = false;
        } else if l.id.starts_with("code") && n % 6 == 2 {
            l.math = true;
        }
    }
    let folds: Vec<String> = ["part0", "part1", "part2"].map(String::from).to_vec();
    let only = vec!["extra".to_string()];
    let grid = learned::Config::grid(Category::Math);
    let run = |labels: Vec<learned::Label>| {
        let (set, missing) =
            learned::Labelled::new(&RuleDetector::default(), labels, &loaded.examples);
        assert!(missing.is_empty());
        let (rows, nested) =
            learned::leave_section_out_nested(&set, Category::Math, &grid, &folds, &only);
        assert_eq!(
            rows,
            learned::leave_section_out(&set, Category::Math, &grid, &folds),
            "the table depends on the sections that only train"
        );
        (set, rows, nested)
    };
    let (set, rows, nested) = run(all.clone());
    let names: Vec<&str> = nested.sections.iter().map(|s| s.section.as_str()).collect();
    assert_eq!(names, ["part0", "part1", "part2", "extra"]);
    nested_matches_rows(&nested, &rows, &folds);
    for s in &nested.sections {
        let size = set.labels.iter().filter(|l| l.section == s.section).count();
        assert_eq!(size, 12, "{}", s.section);
    }
    for l in nested.lines() {
        println!("{l}");
    }

    for judged in &nested.sections {
        let mut flipped = all.clone();
        for l in flipped.iter_mut().filter(|l| l.section == judged.section) {
            l.math = !l.math;
        }
        let (_, _, again) = run(flipped);
        let s = again
            .sections
            .iter()
            .find(|s| s.section == judged.section)
            .unwrap();
        assert_eq!(
            (&s.chosen, s.threshold),
            (&judged.chosen, judged.threshold),
            "{}: the choice read the labels it judges",
            judged.section
        );
        let c = judged.counts;
        let negatives_kept = 12 - c.tp - c.fp - c.fn_;
        assert_eq!(
            (s.counts.tp, s.counts.fp, s.counts.fn_),
            (c.fp, c.tp, negatives_kept),
            "{}: the verdicts changed with the labels they judge",
            judged.section
        );
    }
}

#[test]
fn ablate_train_reproduces_its_file_byte_for_byte_and_the_file_drives_ablate() {
    let dir = tempfile::tempdir().unwrap();
    let (data, labels, extra) = training_fixture(dir.path());
    let train = |out: &Path| {
        common::bin()
            .args(["data", "ablate-train", "--cv", "3", "--seeds", "1,2"])
            .arg("--labels")
            .arg(&labels)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(out)
            .assert()
            .success()
            .stdout(contains("chosen:").and(contains("strict-or-model")));
    };
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    train(&a);
    train(&b);
    let (ta, tb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(ta, tb, "two trainings wrote different files");
    let file = learned::DetectorFile::parse(std::str::from_utf8(&ta).unwrap(), "a.json").unwrap();
    assert_eq!(file.training["labelled"].as_u64(), Some(36));
    assert_eq!(file.training["math_positives"].as_u64(), Some(12));
    // Per category: rules and strict rules, then its configurations × 5 modes (× 14
    // thresholds in the k-fold table).
    let configs =
        learned::Config::grid(Category::Code).len() + learned::Config::grid(Category::Math).len();
    assert_eq!((configs, learned::THRESHOLDS.len()), (4, 14));
    assert_eq!(file.loso.len(), 2 * 2 + configs * 5);
    assert_eq!(file.cv.len(), 2 * 2 + configs * 5 * 14);
    assert_eq!(file.training["sections"].as_array().map(Vec::len), Some(3));
    assert!(!file.training.contains_key("train_only_sections"));

    // A fourth section given with --train-only-labels trains every model but is never a fold.
    let c = dir.path().join("c.json");
    common::bin()
        .args(["data", "ablate-train", "--cv", "3", "--seeds", "1"])
        .arg("--labels")
        .arg(&labels)
        .arg("--train-only-labels")
        .arg(&extra)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&c)
        .assert()
        .success();
    let with_extra =
        learned::DetectorFile::parse(&std::fs::read_to_string(&c).unwrap(), "c.json").unwrap();
    assert_eq!(with_extra.training["labelled"].as_u64(), Some(48));
    assert_eq!(
        with_extra.training["train_only_sections"],
        serde_json::json!(["extra"])
    );
    assert_eq!(
        with_extra.training["sections"],
        serde_json::json!(["part0", "part1", "part2"])
    );
    for r in &with_extra.loso {
        let names: Vec<&str> = r.sections.iter().map(|s| s.section.as_str()).collect();
        assert_eq!(names, ["part0", "part1", "part2"], "{}", r.line());
        // Pooled over the three folds only: 12 math or code positives, 36 scored.
        let c = r.pooled;
        assert_eq!(c.tp + c.fn_, 12, "{}", r.line());
    }
    // The extra rows are training data (counted with the positives the models are fitted
    // on), not scored.
    assert_eq!(with_extra.training["math_positives"].as_u64(), Some(16));

    // The trained file drives `data ablate --detector learned --detector-file`.
    let (out, report) = (dir.path().join("kept.jsonl"), dir.path().join("r.json"));
    common::bin()
        .args(["data", "ablate", "--detector", "learned"])
        .arg("--detector-file")
        .arg(&a)
        .arg("--input")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .assert()
        .success();
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        (
            r["removed"]["code"].as_u64(),
            r["removed"]["math"].as_u64(),
            count(&r, "kept")
        ),
        // The data file holds the 16 conversations of each kind (the extra section's too).
        (Some(16), Some(16), 16),
        "{r}"
    );
}

#[test]
fn ablate_train_and_learned_flags_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (data, labels, extra) = training_fixture(dir.path());
    let out = dir.path().join("d.json");
    let train = || {
        let mut c = common::bin();
        c.args(["data", "ablate-train"])
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&out);
        c
    };
    train()
        .arg("--labels")
        .arg(&labels)
        .arg("--train-only-labels")
        .arg(&labels)
        .assert()
        .code(2)
        .stderr(contains("in both --labels and --train-only-labels"));
    train()
        .arg("--labels")
        .arg(&labels)
        .arg("--train-only-labels")
        .arg(&extra)
        .args(["--cv", "1"])
        .assert()
        .code(2)
        .stderr(contains("--cv 1"));
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "code0\t1\t0\nmath0\tyes\t1\n").unwrap();
    train()
        .arg("--labels")
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(contains("line 2").and(contains("expected 0 or 1")));
    train()
        .arg("--labels")
        .arg(dir.path().join("absent.tsv"))
        .assert()
        .code(2)
        .stderr(contains("absent.tsv"));
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"name\": 1}").unwrap();
    let ablate = || {
        let mut c = common::bin();
        c.args(["data", "ablate"])
            .arg("--input")
            .arg(&data)
            .arg("--out")
            .arg(dir.path().join("k.jsonl"));
        c
    };
    ablate()
        .args(["--detector", "learned", "--detector-file"])
        .arg(&junk)
        .assert()
        .code(2)
        .stderr(contains("junk.json").and(contains("not a detector file")));
    ablate()
        .args(["--detector", "rules", "--detector-file"])
        .arg(&junk)
        .assert()
        .code(2)
        .stderr(contains("--detector-file needs --detector learned"));
}

/// Asserts a pooled score's (tp, fp, fn) as first measured.
fn pin(s: Score, want: (usize, usize, usize), what: &str) {
    assert_eq!((s.tp, s.fp, s.fn_), want, "{what}: {}", s.line(""));
}

/// [`pin`] for one detector's pooled `[code, math]` scores on one sample (`what`, e.g.
/// "rules-v2 on held-out-8").
fn pin_both(
    [code, math]: [Score; 2],
    want_code: (usize, usize, usize),
    want_math: (usize, usize, usize),
    what: &str,
) {
    pin(code, want_code, &format!("{what}: code"));
    pin(math, want_math, &format!("{what}: math"));
}

/// A blind held-out sample: `held-out-N` in `file` (sections `held-out-N-enriched`,
/// `held-out-N-random` and, from held-out-9 on, others), `size` labelled ids, at most `excluded`
/// of which the reader excludes (an empty turn; counted, not dropped silently).
struct Blind {
    n: u8,
    file: &'static str,
    size: usize,
    excluded: usize,
}

/// learned-v7, shipped from session 7 to session 10 and kept in the repository as the detector
/// that held-out-9 and held-out-10 judged blind (and the one the held-out-4..8 in-sample lines
/// print).
fn learned_v7() -> LearnedDetector {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DETECTOR_V7);
    LearnedDetector::from_text(&std::fs::read_to_string(&path).unwrap(), DETECTOR_V7).unwrap()
}

/// learned-v7's file (data/ablation/detector-v7.json).
const DETECTOR_V7: &str = "data/ablation/detector-v7.json";

/// Rules-v2 and learned-v7 on the sections of one blind sample: prints each section's and the
/// pooled confusion counts, returns the pooled `[detector][code, math]`.
fn score_label_file(shared: &Path, sample: Blind) -> Pooled {
    let labels =
        learned::read_labels(&Path::new(env!("CARGO_MANIFEST_DIR")).join(sample.file)).unwrap();
    score_labels(shared, &labels, sample).0
}

/// Pooled confusion counts, `[detector (rules-v2, learned-v7)][category (code, math)]`.
type Pooled = [[Score; 2]; 2];

/// [`score_label_file`] on labels already read (`sample.file` names them in messages); also
/// returns how many labelled conversations the reader accepted.
fn score_labels(shared: &Path, labels: &[learned::Label], sample: Blind) -> (Pooled, usize) {
    let Blind {
        n,
        file,
        size: want,
        excluded,
    } = sample;
    assert_eq!(
        labels.len(),
        want,
        "{file}: the sample holds {want} conversations (enriched + random)"
    );
    let loaded = read_file(
        &shared.join(SHAREGPT),
        Some(Format::ShareGpt),
        &ReadOptions::default(),
    )
    .unwrap();
    let by_id: HashMap<&str, &Example> =
        loaded.examples.iter().map(|e| (e.id.as_str(), e)).collect();
    let rules = RuleDetector::default();
    let model = learned_v7();
    let rows: Vec<(&learned::Label, &Example)> = labels
        .iter()
        .filter_map(|l| by_id.get(l.id.as_str()).map(|e| (l, *e)))
        .collect();
    assert!(
        labels.len() - rows.len() <= excluded,
        "{} labelled ids not read",
        labels.len() - rows.len()
    );
    let mut sections: Vec<&str> = Vec::new();
    for l in labels {
        if !sections.contains(&l.section.as_str()) {
            sections.push(&l.section);
        }
    }
    assert!(
        sections
            .iter()
            .all(|s| s.starts_with(&format!("held-out-{n}-"))),
        "{file}: sections {sections:?}"
    );
    let mut pooled = [[Score::default(); 2]; 2];
    for section in sections {
        for (d, det) in [&rules as &dyn Detector, &model].into_iter().enumerate() {
            let verdicts: Vec<(&learned::Label, Vec<Category>)> = rows
                .iter()
                .filter(|(l, _)| l.section == section)
                .map(|(l, e)| (*l, det.classify(e)))
                .collect();
            let s = learned_score(verdicts.iter().map(|(l, c)| (*l, c.as_slice())));
            println!(
                "{section} {}: {} | {}",
                det.name(),
                s[0].line("code"),
                s[1].line("math")
            );
            for k in 0..2 {
                pooled[d][k].tp += s[k].tp;
                pooled[d][k].fp += s[k].fp;
                pooled[d][k].fn_ += s[k].fn_;
            }
        }
    }
    for (d, det) in [rules.name(), model.name()].iter().enumerate() {
        println!(
            "{file} pooled {det}: {} | {}",
            pooled[d][0].line("code"),
            pooled[d][1].line("math")
        );
    }
    (pooled, rows.len())
}

/// The held-out-4 sample (tests/fixtures/ablation_labels_blind4.tsv, session 4): labelled by a
/// reader who never saw either detector's output. It is still out of sample for rules-v2 (no
/// rule changed since), so this is a regression check of rules-v2 at what it measured when
/// first scored: code P/R 0.947/0.947, math 0.583/0.840 (tp 21, fp 15, fn 4). learned-v7 (like
/// every learned detector since v4) was trained on these labels: its scores here are in
/// sample, printed for comparison, not judged (its honest figures are the
/// leave-one-section-out ones above).
#[test]
fn rules_v2_on_held_out_4_and_learned_v7_in_sample() {
    let shared = require_shared!();
    let pooled = score_label_file(
        &shared,
        Blind {
            n: 4,
            file: LABELS_4,
            size: 300,
            excluded: 3,
        },
    );
    pin_both(
        pooled[0],
        (125, 7, 7),
        (21, 15, 4),
        "rules-v2 on held-out-4",
    );
}

/// The held-out-5 sample (session 5, tests/fixtures/ablation_labels_blind5.tsv): labelled blind
/// while learned-v4 was built, merged only after learned-v4 was frozen. Scored once, blind,
/// learned-v4 reached code 0.972 / 0.972 and math 0.957 / 0.786 (tp 22, fp 1, fn 6): math
/// recall below the goal of 0.85, which learned-v5 was built to lift. learned-v5, -v6 and -v7
/// are trained on these labels (two of their sections), so the shipped detector's scores here
/// are in sample, printed, not judged; its honest figures are the leave-one-section-out ones.
/// Still out of sample for rules-v2, which is pinned at what it measured when first scored:
/// math 0.923 / 0.857 (tp 24, fp 2, fn 4).
#[test]
fn rules_v2_on_held_out_5_and_learned_v7_in_sample() {
    let shared = require_shared!();
    let pooled = score_label_file(
        &shared,
        Blind {
            n: 5,
            file: LABELS_5,
            size: 300,
            excluded: 3,
        },
    );
    let math = pooled[0][1];
    pin(math, (24, 2, 4), "rules-v2 math changed on held-out-5");
}

/// The held-out-6 sample (session 5, tests/fixtures/ablation_labels_blind6.tsv; 200 enriched +
/// 100 random conversations): labelled blind while learned-v5 was built, merged only after
/// learned-v5 was frozen; nothing was tuned on it. learned-v5's honest judgement, measured once
/// when first scored: code 0.935 / 0.967 (tp 116, fp 8, fn 4), math 0.821 / 0.742 (tp 23, fp 5,
/// fn 8) - math below the 0.85 goal on both sides. The sample is training data of learned-v6
/// and learned-v7 (two of their left-out sections), so the shipped detector's scores are in sample, printed, not
/// judged. Still out of sample for rules-v2, pinned as first measured: code 0.951 / 0.967,
/// math 0.680 / 0.548.
#[test]
fn rules_v2_on_held_out_6_and_learned_v7_in_sample() {
    let shared = require_shared!();
    let pooled = score_label_file(
        &shared,
        Blind {
            n: 6,
            file: LABELS_6,
            size: 300,
            excluded: 3,
        },
    );
    pin_both(
        pooled[0],
        (116, 6, 4),
        (17, 8, 14),
        "rules-v2 on held-out-6",
    );
}

/// The held-out-7 sample (session 6, tests/fixtures/ablation_labels_blind7.tsv; 300 enriched +
/// 100 random conversations, 56 math positives, all in the enriched part): labelled blind by a
/// reader who never saw a detector, its code or its output, and merged only after scoring the
/// frozen learned-v5 on it once: code 0.939 / 0.945 (tp 155, fp 10, fn 9), math 0.917 / 0.786
/// (tp 44, fp 4, fn 12) - math recall below the 0.85 goal, as on held-out-5 (0.786) and
/// held-out-6 (0.742). The sample is training data of learned-v6 and -v7, so the shipped detector's
/// scores are in sample, printed, not judged. Still out of sample for rules-v2, pinned as first
/// measured: code 0.969 / 0.939, math 0.780 / 0.696.
#[test]
fn rules_v2_on_held_out_7_and_learned_v7_in_sample() {
    let shared = require_shared!();
    let pooled = score_label_file(
        &shared,
        Blind {
            n: 7,
            file: LABELS_7,
            size: 400,
            excluded: 4,
        },
    );
    pin_both(
        pooled[0],
        (154, 5, 10),
        (39, 11, 17),
        "rules-v2 on held-out-7",
    );
}

/// The held-out-8 sample (session 6, tests/fixtures/ablation_labels_blind8.tsv; 350 enriched +
/// 100 random conversations, 49 math positives; 9 ids the reader excludes for empty turns):
/// labelled blind while learned-v6 was built, by a reader who never saw a detector, its code or
/// its output, and merged only after learned-v6 was frozen. learned-v6's honest judgement,
/// measured once when first scored (history: v6 is no longer loadable): code 0.971 / 0.954 (tp
/// 165, fp 5, fn 8), meeting the goal, and math 0.796 / 0.796 (tp 39, fp 10, fn 10), below it
/// on both sides. The frozen learned-v5, scored on it once before learned-v6 existed: code
/// 0.932 / 0.948, math 0.729 / 0.714 (tp 35, fp 13, fn 14). The sample is training data of
/// learned-v7 (two of its sixteen left-out sections), so the shipped detector's scores here are
/// in sample, printed, not judged. Still out of sample for rules-v2, pinned as first measured:
/// code 0.953 / 0.936, math 0.739 / 0.694.
#[test]
fn rules_v2_on_held_out_8_and_learned_v7_in_sample() {
    let shared = require_shared!();
    let pooled = score_label_file(
        &shared,
        Blind {
            n: 8,
            file: LABELS_8,
            size: 450,
            excluded: 9,
        },
    );
    pin_both(
        pooled[0],
        (162, 8, 11),
        (34, 12, 15),
        "rules-v2 on held-out-8",
    );
}

/// The held-out-9 sample (session 7, tests/fixtures/ablation_labels_blind9.tsv; 500
/// conversations in three sections: `enriched` = all 200 conversations left in the OPS/WORDS
/// keyword pool, `random` = 150 drawn at random, `words2` = 150 drawn from a new, broader pool
/// of everyday-quantity words; 36 math positives, 2 ids the reader excludes): labelled blind
/// while learned-v7 was built, by a reader who never saw a detector, its code or its output,
/// and merged only after learned-v7 was frozen. Not training data of any detector.
///
/// Scored once each, blind: learned-v7 (shipped) code 0.933 / 0.948 (tp 182, fp 13, fn 10),
/// math 0.775 / 0.861 (tp 31, fp 9, fn 5) - math precision below the 0.85 goal; its enriched
/// section alone: math 0.857 / 0.909. learned-v6 (history, no longer loadable), on the same
/// sample: code 0.924 / 0.953, math 0.821 / 0.889 (tp 32, fp 7, fn 4); enriched alone 0.886 /
/// 0.939. Both miss the two math positives of `words2`. rules-v2 (out of sample): code 0.967 /
/// 0.927, math 0.679 / 0.528. Pinned: rules-v2 and learned-v7.
#[test]
fn learned_v7_on_the_blind_held_out_9_sample() {
    let shared = require_shared!();
    let pooled = score_label_file(
        &shared,
        Blind {
            n: 9,
            file: LABELS_9,
            size: 500,
            excluded: 2,
        },
    );
    pin_both(
        pooled[1],
        (182, 13, 10),
        (31, 9, 5),
        "learned-v7 on held-out-9",
    );
    pin_both(
        pooled[0],
        (178, 6, 14),
        (19, 9, 17),
        "rules-v2 on held-out-9",
    );
}

/// learned-v7's nested estimate (recomputed in session 11 by its retraining command, which
/// reproduced every other field of its file unchanged; see the book's ablation chapter), set
/// beside what held-out-9 and held-out-10 measured blind: over its sixteen fold sections math
/// 0.857 / 0.864 (tp 222, fp 37, fn 35), close to its table's 0.864 / 0.868, but over every
/// labelled conversation, the active-1 picks judged too, 0.768 / 0.818 (tp 274, fp 83, fn 61),
/// which is what the blind samples found (0.775 / 0.838, tp 31, fp 9, fn 6). Code: 0.958 /
/// 0.956 and 0.952 / 0.947. Pinned as measured.
#[test]
fn learned_v7_nested_estimate_over_every_labelled_conversation_matches_its_blind_judgement() {
    let v7 = learned_v7();
    let file = v7.file();
    let folds: Vec<String> = serde_json::from_value(file.training["sections"].clone()).unwrap();
    assert_eq!(folds.len(), 16);
    let counts = |c: &learned::Counts| (c.tp, c.fp, c.fn_);
    let code = nested_agrees_with_the_table(file, Category::Code, &folds, 19);
    let math = nested_agrees_with_the_table(file, Category::Math, &folds, 19);
    assert_eq!(
        (counts(&code.pooled), counts(&code.pooled_all)),
        ((1071, 47, 49), (1129, 57, 63))
    );
    assert_eq!(
        (counts(&math.pooled), counts(&math.pooled_all)),
        ((222, 37, 35), (274, 83, 61))
    );
}

/// The held-out-10 sample (session 9, tests/fixtures/ablation_labels_blind10.tsv; 500
/// conversations: `enriched` = 250 drawn from a third keyword pool (WORDS3: arithmetic and
/// math-object words, fractions, powers, LaTeX), `random` = 150, `words2` = 100 more from the
/// held-out-9 everyday-quantity pool): labelled blind by a reader who never saw a detector, its
/// code or its output. Every OPS/WORDS conversation was already labelled, and it shows: the
/// sample holds one math positive, so it measures math false positives, not recall. Not
/// training data of any detector. Scored once, blind, and pinned as first measured:
/// learned-v7 code 0.965 / 0.975 (tp 193, fp 7, fn 5), math tp 0, fp 0, fn 1 (no conversation
/// flagged as math; the one positive, "what is an isomorphism?", missed); rules-v2 code 0.984 /
/// 0.960, math tp 0, fp 3, fn 1.
#[test]
fn learned_v7_on_the_blind_held_out_10_sample() {
    let shared = require_shared!();
    let pooled = score_label_file(
        &shared,
        Blind {
            n: 10,
            file: LABELS_10,
            size: 500,
            excluded: 6,
        },
    );
    pin_both(
        pooled[1],
        (193, 7, 5),
        (0, 0, 1),
        "learned-v7 on held-out-10",
    );
    pin_both(pooled[0], (190, 3, 8), (0, 3, 1), "rules-v2 on held-out-10");
}

/// Two readers, one sample: held-out-6 labelled a second time (session 6,
/// tests/fixtures/ablation_labels_blind6_second_reader.tsv) by an engineer who followed the same
/// written rulebook (the headers of the earlier label files) without seeing the first labels.
/// How often they agree bounds what any detector can be held to: the goal's 0.85 is only
/// meaningful if two careful readers agree far more often than that. Pinned as first measured:
/// code 297 of 300 agree (Cohen's kappa 0.979), math 299 of 300 (kappa 0.982).
#[test]
fn two_readers_agree_on_held_out_6() {
    let (disagree, kappas, _) = two_readers(
        LABELS_6,
        "tests/fixtures/ablation_labels_blind6_second_reader.tsv",
    );
    assert_eq!(disagree, [3, 1], "the readers' disagreements changed");
    assert!(kappas.iter().all(|&k| k > 0.95), "kappa {kappas:?}");
}

/// Held-out-9, the sample on which learned-v7's blind math precision fell to 0.775, labelled a
/// second time (session 10, tests/fixtures/ablation_labels_blind9_second_reader.tsv) by a reader
/// who followed the rulebook the first reader had, without opening the first labels, any
/// detector, its code or its output. Pinned as first measured: code 497 of 500 agree (kappa
/// 0.987), math 495 of 500 (kappa 0.926; 36 and 37 positives). Scored against the second
/// reader's labels, learned-v7 stays where it was: code tp 185, fp 10, fn 10 (0.949 / 0.949),
/// math tp 30, fp 10, fn 7 (0.750 / 0.811) — against the first reader's (182, 13, 10) and
/// (31, 9, 5). Its math false positives are false positives to both readers: the gap to 0.85 is
/// the detector's, not label noise.
#[test]
fn two_readers_agree_on_held_out_9_and_v7_scores_the_same_under_both() {
    let shared = require_shared!();
    let (disagree, kappas, second) = two_readers(
        LABELS_9,
        "tests/fixtures/ablation_labels_blind9_second_reader.tsv",
    );
    assert_eq!(disagree, [3, 5], "the readers' disagreements changed");
    assert!(kappas.iter().all(|&k| k > 0.9), "kappa {kappas:?}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let relabelled: Vec<learned::Label> = learned::read_labels(&root.join(LABELS_9))
        .unwrap()
        .into_iter()
        .map(|l| {
            let (code, math) = second[&l.id];
            learned::Label { code, math, ..l }
        })
        .collect();
    let (pooled, read) = score_labels(
        &shared,
        &relabelled,
        Blind {
            n: 9,
            file: "tests/fixtures/ablation_labels_blind9_second_reader.tsv",
            size: 500,
            excluded: 2,
        },
    );
    // The two conversations the reader excludes (an empty turn; consecutive user turns).
    assert_eq!(read, 498);
    pin_both(
        pooled[1],
        (185, 10, 10),
        (30, 10, 7),
        "learned-v7 on held-out-9, second reader's labels",
    );
}

/// Per category (code, math): disagreements, Cohen's kappa; and the second reader's
/// `(code, math)` labels by id.
type TwoReaders = ([usize; 2], [f64; 2], HashMap<String, (bool, bool)>);

/// The first and second readers' labels of one sample (`first` in the 3-column format,
/// `second` with a 4th column, sure/unsure): per category (code, math) the number of
/// disagreements and Cohen's kappa, and the second reader's labels by id.
fn two_readers(first: &str, second: &str) -> TwoReaders {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let first = learned::read_labels(&root.join(first)).unwrap();
    let text = std::fs::read_to_string(root.join(second)).unwrap();
    let mut second: HashMap<String, (bool, bool)> = HashMap::new();
    let mut unsure = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "id, code, math, confidence: {line:?}");
        assert!(matches!(f[3], "sure" | "unsure"), "confidence: {line:?}");
        assert!(
            matches!(f[1], "0" | "1") && matches!(f[2], "0" | "1"),
            "bits: {line:?}"
        );
        unsure += usize::from(f[3] == "unsure");
        let fresh = second.insert(f[0].to_string(), (f[1] == "1", f[2] == "1"));
        assert!(fresh.is_none(), "duplicate id: {line:?}");
    }
    assert_eq!(second.len(), first.len(), "the same ids, once each");
    // Cohen's kappa from the 2x2 table of the two readers' bits.
    let kappa = |pairs: &[(bool, bool)]| {
        let n = pairs.len() as f64;
        let agree = pairs.iter().filter(|(a, b)| a == b).count() as f64 / n;
        let pa = pairs.iter().filter(|(a, _)| *a).count() as f64 / n;
        let pb = pairs.iter().filter(|(_, b)| *b).count() as f64 / n;
        let chance = pa * pb + (1.0 - pa) * (1.0 - pb);
        (agree - chance) / (1.0 - chance)
    };
    let mut disagree = [0usize; 2];
    let mut kappas = [0f64; 2];
    for (k, name) in ["code", "math"].into_iter().enumerate() {
        let pairs: Vec<(bool, bool)> = first
            .iter()
            .map(|l| {
                let s = second[&l.id];
                if k == 0 { (l.code, s.0) } else { (l.math, s.1) }
            })
            .collect();
        disagree[k] = pairs.iter().filter(|(a, b)| a != b).count();
        kappas[k] = kappa(&pairs);
        println!(
            "{name}: {} of {} disagree, Cohen's kappa {:.3}",
            disagree[k],
            pairs.len(),
            kappas[k]
        );
    }
    println!("second reader unsure on {unsure} of {}", first.len());
    (disagree, kappas, second)
}
