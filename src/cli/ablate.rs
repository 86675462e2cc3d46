//! `mixprobe data ablate`: remove code- and/or math-flavoured conversations from a ShareGPT file,
//! writing the kept original records and a report; `mixprobe data ablate-train`: train and
//! cross-validate the learned detector on hand labels; `mixprobe data ablate-score`: score any
//! detector against hand labels.
use crate::cli::UserError;
use mixprobe::data::ablate::{self, Category, Detector, HttpTagger, Report, RuleDetector, Source};
use mixprobe::data::ablate_learned::{
    self as learned, BUCKETS, Config, DetectorFile, FEATURE_VERSION, ITERATIONS, Labelled,
    LearnedDetector, THRESHOLDS,
};
use mixprobe::data::read::{Format, ReadOptions, read_file};
use mixprobe::util;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which detector decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DetectorKind {
    /// The built-in transparent rules (`rules-v2`, see the module docs of `data::ablate`).
    Rules,
    /// The learned detector (`learned-v8`): logistic regression per category on hashed n-grams
    /// (math) or on n-grams and the rules' counts (code), trained on the hand labels (sampled
    /// sections and active-learning picks) and chosen by the smaller of precision and recall
    /// over left-out sections (`data ablate-train`); the shipped weights are built in,
    /// `--detector-file` loads others.
    Learned,
    /// An LLM tagger behind an OpenAI-compatible chat-completions endpoint (InsTag prompt).
    Http,
}

/// The flags that pick and configure a detector (shared by `data ablate` and
/// `data ablate-score`).
#[derive(clap::Args)]
pub struct DetectorArgs {
    /// Which detector decides (`learned` is the default: it beat the rules when judged on
    /// labelled sections it was not trained on, see the book's ablation chapter).
    #[arg(long, value_enum, default_value_t = DetectorKind::Learned)]
    pub detector: DetectorKind,
    /// A detector file written by `data ablate-train` to use with `--detector learned` instead
    /// of the built-in one (data/ablation/detector-v8.json).
    #[arg(long)]
    pub detector_file: Option<PathBuf>,
    /// Base URL of the OpenAI-compatible API, up to and including `/v1` (`--detector http`).
    #[arg(long, default_value = "https://api.openai.com/v1")]
    pub api_base: String,
    /// Model name sent to the API (required with `--detector http`).
    #[arg(long)]
    pub api_model: Option<String>,
    /// Environment variable holding the API key, sent as a Bearer token when set.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,
    /// Seconds to wait for one tagger response.
    #[arg(long, default_value_t = 120)]
    pub api_timeout: u64,
}

#[derive(clap::Args)]
pub struct Args {
    /// ShareGPT file to filter (JSON Lines or a JSON list, optionally gzip-compressed).
    #[arg(long)]
    pub input: PathBuf,
    /// Categories to remove, comma-separated, in precedence order: a conversation detected as
    /// several is counted once, under the first listed.
    #[arg(long, value_delimiter = ',', default_value = "code,math")]
    pub remove: Vec<Category>,
    /// Where to write the kept conversations: the original ShareGPT records, one per line
    /// (gzip-compressed if the name ends in .gz).
    #[arg(long)]
    pub out: PathBuf,
    /// Where to write the JSON report (counts per category, excluded/skipped, rule counts,
    /// example decisions).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write every conversation's verdict (id, categories, rules that fired) as JSON Lines,
    /// for auditing the detector.
    #[arg(long)]
    pub decisions: Option<PathBuf>,
    /// Skip malformed records (counted in the report) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    #[command(flatten)]
    pub det: DetectorArgs,
    /// Example decisions shown in the report per category (and for kept conversations).
    #[arg(long, default_value_t = 5)]
    pub examples: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut remove: Vec<Category> = Vec::new();
    for c in &args.remove {
        if remove.contains(c) {
            return Err(UserError(format!("--remove lists {c} twice")).into());
        }
        remove.push(*c);
    }
    if same_file(&args.input, &args.out) {
        return Err(UserError(format!(
            "--out {} would overwrite --input",
            args.out.display()
        ))
        .into());
    }
    let detector = build_detector(&args.det)?;
    let loaded = read_sharegpt(&args.input, args.skip_invalid)?;
    let raw = ablate::raw_records(&args.input)?;
    let name = detector.name();
    let result = ablate::ablate(loaded.examples, &remove, detector.as_ref());
    if let Some((ex, err)) = result.failed.first() {
        return Err(UserError(format!(
            "{} of {} conversations could not be classified by {name}; first: {}: {err}",
            result.failed.len(),
            result.verdicts.len(),
            ex.id
        ))
        .into());
    }
    ablate::write_kept(&args.out, &result.kept, &raw)?;
    let source = Source {
        input: &args.input,
        output: &args.out,
        excluded: &loaded.excluded,
        skipped: &loaded.skipped,
    };
    let report = Report::new(&source, &remove, &name, &result, args.examples);
    if let Some(path) = &args.report {
        util::write_json(path, &report)?;
    }
    if let Some(path) = &args.decisions {
        let mut text = String::new();
        for v in &result.verdicts {
            text.push_str(&ablate::verdict_json(v).to_string());
            text.push('\n');
        }
        util::write_atomic(path, text.as_bytes())?;
    }
    let per: Vec<String> = remove
        .iter()
        .map(|c| {
            format!(
                "{c} {}",
                report
                    .removed
                    .get(c.as_str())
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0)
            )
        })
        .collect();
    eprintln!(
        "ablate [{name}]: {} records, {} conversations ({} excluded, {} skipped); removed {} ({:.1}%: {}); kept {} -> {}",
        report.input,
        report.conversations,
        report.excluded,
        report.skipped,
        report.removed_total,
        100.0 * report.removed_fraction,
        per.join(", "),
        report.kept,
        args.out.display()
    );
    Ok(())
}

/// The detector the flags ask for.
fn build_detector(det: &DetectorArgs) -> anyhow::Result<Box<dyn Detector>> {
    if det.detector_file.is_some() && det.detector != DetectorKind::Learned {
        return Err(UserError("--detector-file needs --detector learned".into()).into());
    }
    Ok(match det.detector {
        DetectorKind::Rules => Box::new(RuleDetector::default()),
        DetectorKind::Learned => Box::new(match &det.detector_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| mixprobe::Error::io(path, e))?;
                LearnedDetector::from_text(&text, &path.display().to_string())?
            }
            None => LearnedDetector::shipped()?,
        }),
        DetectorKind::Http => {
            let model = det
                .api_model
                .as_deref()
                .ok_or_else(|| UserError("--detector http needs --api-model".into()))?;
            let key = std::env::var(&det.api_key_env)
                .ok()
                .filter(|k| !k.is_empty());
            if key.is_none() {
                eprintln!(
                    "note: ${} is not set; calling {} without an API key",
                    det.api_key_env, det.api_base
                );
            }
            Box::new(HttpTagger::new(
                &det.api_base,
                model,
                key,
                Duration::from_secs(det.api_timeout),
            ))
        }
    })
}

/// Read a ShareGPT file (malformed records fail, or are skipped and counted).
fn read_sharegpt(path: &Path, skip_invalid: bool) -> anyhow::Result<mixprobe::data::read::Loaded> {
    Ok(read_file(
        path,
        Some(Format::ShareGpt),
        &ReadOptions { skip_invalid },
    )?)
}

/// Append a label read from `path`, refusing an id an earlier label file already labels.
fn push_new_label(
    labels: &mut Vec<learned::Label>,
    seen: &mut HashSet<String>,
    path: &Path,
    label: learned::Label,
) -> anyhow::Result<()> {
    if !seen.insert(label.id.clone()) {
        return Err(UserError(format!(
            "{}: id {:?} is also labelled in an earlier --labels file",
            path.display(),
            label.id
        ))
        .into());
    }
    labels.push(label);
    Ok(())
}

/// True when both paths name the same existing file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[derive(clap::Args)]
pub struct ScoreArgs {
    /// The ShareGPT file the labelled ids come from (e.g.
    /// ../shared/data/sharegpt/sharegpt_v3_subset_10k.jsonl.gz).
    #[arg(long)]
    pub input: PathBuf,
    /// Hand-label files, comma-separated, as for `data ablate-train` (`id<TAB>code<TAB>math`,
    /// `# section NAME` headers, NAME one word; e.g. tests/fixtures/ablation_labels.tsv …
    /// ablation_labels_blind10.tsv, ablation_labels_active1.tsv). Only the labelled
    /// conversations are classified.
    #[arg(long, value_delimiter = ',', required = true)]
    pub labels: Vec<PathBuf>,
    /// Where to write the scores as JSON (per section and pooled: tp, fp, fn per category;
    /// labelled ids not in --input; conversations the detector failed on).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Skip malformed records of --input (counted) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub det: DetectorArgs,
}

/// `mixprobe data ablate-score`: a detector's precision and recall on hand labels.
pub fn run_score(args: ScoreArgs) -> anyhow::Result<()> {
    let detector = build_detector(&args.det)?;
    let (mut labels, mut seen): (Vec<learned::Label>, _) = (Vec::new(), HashSet::new());
    for path in &args.labels {
        for l in learned::read_labels(path)? {
            push_new_label(&mut labels, &mut seen, path, l)?;
        }
    }
    let loaded = read_sharegpt(&args.input, args.skip_invalid)?;
    let bar = mixprobe::eval::generation::progress_bar(
        "ablate-score",
        "labelled conversations",
        labels.len(),
        !args.quiet,
    );
    let score = learned::score_detector(detector.as_ref(), &labels, &loaded.examples, &mut || {
        bar.inc(1)
    });
    bar.finish_and_clear();
    let line = |c: &learned::SectionCounts| {
        let pr = |k: &learned::Counts| {
            format!(
                "P {:.3} R {:.3} (tp {} fp {} fn {})",
                k.precision(),
                k.recall(),
                k.tp,
                k.fp,
                k.fn_
            )
        };
        format!(
            "{:<24} {:>5}  code {}  math {}",
            c.section,
            c.scored,
            pr(&c.code),
            pr(&c.math)
        )
    };
    println!(
        "{}: {} labels, {} scored",
        score.detector, score.labels, score.pooled.scored
    );
    for s in &score.sections {
        println!("  {}", line(s));
    }
    println!("  {}", line(&score.pooled));
    if !score.not_in_input.is_empty() {
        eprintln!(
            "note: {} labelled id(s) are not conversations of {} (excluded by the reader or absent), not scored; first: {}",
            score.not_in_input.len(),
            args.input.display(),
            score.not_in_input[0]
        );
    }
    if let Some((id, err)) = score.failed.first() {
        eprintln!(
            "note: {} conversation(s) could not be classified by {}, not scored; first: {id}: {err}",
            score.failed.len(),
            score.detector
        );
    }
    if let Some(path) = &args.report {
        util::write_json(path, &score)?;
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Hand-label files, comma-separated: `id<TAB>code<TAB>math` lines (0/1), `#` comments,
    /// `# section NAME` headers, NAME one word (e.g. tests/fixtures/ablation_labels.tsv,
    /// tests/fixtures/ablation_labels_blind4.tsv … ablation_labels_blind10.tsv); their sections
    /// are the left-out folds, at least three, since selection leaves one section out and
    /// chooses thresholds by leaving one out of the rest.
    #[arg(long, value_delimiter = ',', required = true)]
    pub labels: Vec<PathBuf>,
    /// Further hand-label files, comma-separated, in the same format, whose sections are always
    /// in training and never a left-out fold: labels that are not a sample of anything, e.g.
    /// conversations a detector picked for labelling (active learning,
    /// tests/fixtures/ablation_labels_active1.tsv). The nested estimate judges them too, so
    /// that every labelled conversation gets an out-of-sample verdict.
    #[arg(long, value_delimiter = ',')]
    pub train_only_labels: Vec<PathBuf>,
    /// The ShareGPT file the labelled ids come from (e.g.
    /// ../shared/data/sharegpt/sharegpt_v3_subset_10k.jsonl.gz); labels whose id it lacks are
    /// counted and left out.
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the detector file (e.g. data/ablation/detector-v8.json, which the binary
    /// embeds): the choice per category, its weights retrained on all labels, both tables and
    /// the nested estimate (each section judged by a choice, threshold and weights made without
    /// it; printed too).
    #[arg(long)]
    pub out: PathBuf,
    /// Folds of the stratified cross-validation reported next to the leave-one-section-out
    /// selection (features, L2 strength, threshold and the combination with the rules are
    /// chosen by the highest min(precision, recall) pooled over left-out sections, then F1);
    /// only the rows of --labels are dealt into folds, --train-only-labels rows always train.
    #[arg(long, default_value_t = 10)]
    pub cv: usize,
    /// Seeds of the repeated cross-validation, comma-separated (each draws its own folds).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
    /// Skip malformed records of --data (counted) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
}

/// The file name of a path, for provenance that does not depend on where the files lie.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    if args.cv < 2 {
        return Err(UserError(format!("--cv {} must be at least 2", args.cv)).into());
    }
    if args.seeds.is_empty() {
        return Err(UserError("--seeds needs at least one seed".into()).into());
    }
    let (mut labels, mut seen): (Vec<learned::Label>, _) = (Vec::new(), HashSet::new());
    let mut train_only: Vec<String> = Vec::new();
    for (path, always) in args
        .labels
        .iter()
        .map(|p| (p, false))
        .chain(args.train_only_labels.iter().map(|p| (p, true)))
    {
        for l in learned::read_labels(path)? {
            if always != train_only.contains(&l.section)
                && labels.iter().any(|k| k.section == l.section)
            {
                return Err(UserError(format!(
                    "{}: section {:?} is in both --labels and --train-only-labels",
                    path.display(),
                    l.section
                ))
                .into());
            }
            if always && !train_only.contains(&l.section) {
                train_only.push(l.section.clone());
            }
            push_new_label(&mut labels, &mut seen, path, l)?;
        }
    }
    let loaded = read_sharegpt(&args.data, args.skip_invalid)?;
    let (set, missing) = Labelled::new(&RuleDetector::default(), labels, &loaded.examples);
    if !missing.is_empty() {
        eprintln!(
            "note: {} labelled id(s) are not conversations of {} (excluded by the reader or absent), left out; first: {}",
            missing.len(),
            args.data.display(),
            missing[0].id
        );
    }
    let sections: Vec<String> = learned::sections(&set)
        .into_iter()
        .filter(|s| !train_only.contains(s))
        .collect();
    if sections.len() < 3 {
        return Err(UserError(format!(
            "--labels: {} section(s) ({}); leaving one section out needs at least 3 (`# section NAME` lines)",
            sections.len(),
            sections.join(", ")
        ))
        .into());
    }
    let mut training: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let names: Vec<String> = args.labels.iter().map(|p| file_name(p)).collect();
    let mut hashes = Vec::new();
    for p in &args.labels {
        hashes.push(util::sha256_file(p)?);
    }
    training.insert("labels".into(), json!(names));
    training.insert("labels_sha256".into(), json!(hashes));
    training.insert("data".into(), json!(file_name(&args.data)));
    training.insert("data_sha256".into(), json!(util::sha256_file(&args.data)?));
    training.insert("labelled".into(), json!(set.len()));
    training.insert("labels_left_out".into(), json!(missing.len()));
    training.insert("sections".into(), json!(sections));
    if !args.train_only_labels.is_empty() {
        let mut hashes = Vec::new();
        for p in &args.train_only_labels {
            hashes.push(util::sha256_file(p)?);
        }
        let names: Vec<String> = args
            .train_only_labels
            .iter()
            .map(|p| file_name(p))
            .collect();
        training.insert("train_only_labels".into(), json!(names));
        training.insert("train_only_labels_sha256".into(), json!(hashes));
        training.insert("train_only_sections".into(), json!(train_only));
    }
    training.insert("folds".into(), json!(args.cv));
    training.insert("seeds".into(), json!(args.seeds));
    training.insert("iterations".into(), json!(ITERATIONS));
    training.insert("thresholds".into(), json!(THRESHOLDS));
    training.insert(
        "selection".into(),
        json!(
            "highest min(precision, recall) pooled over left-out sections, then F1 (thresholds chosen inside the other sections by the same criterion)"
        ),
    );
    let mut models = Vec::new();
    let (mut loso_table, mut cv_table, mut nested_table) = (Vec::new(), Vec::new(), Vec::new());
    for cat in Category::ALL {
        let positives = set.labels.iter().filter(|l| l.is(cat)).count();
        training.insert(format!("{cat}_positives"), json!(positives));
        if positives < args.cv {
            return Err(UserError(format!(
                "{cat}: {positives} positive label(s), fewer than --cv {} folds",
                args.cv
            ))
            .into());
        }
        let grid = Config::grid(cat);
        let start = std::time::Instant::now();
        let (loso, nested) =
            learned::leave_section_out_nested(&set, cat, &grid, &sections, &train_only);
        let cv = learned::cross_validate(&set, cat, &grid, args.cv, &args.seeds, &sections);
        eprintln!(
            "{cat}: {} configuration(s) scored in {:.0} s",
            grid.len(),
            start.elapsed().as_secs_f64()
        );
        let best = learned::select_loso(&loso)
            .ok_or_else(|| UserError("no leave-one-section-out rows".into()))?
            .clone();
        println!(
            "{cat} ({positives} positives of {}): leave one section out (pooled, per section; chosen by min(P, R), then F1) | {}-fold CV at the same threshold",
            set.len(),
            args.cv
        );
        for r in &loso {
            let k = cv
                .iter()
                .find(|c| c.choice == r.choice())
                .map(|c| {
                    format!(
                        "P {:.3} R {:.3} F1 {:.3}",
                        c.mean_precision(),
                        c.mean_recall(),
                        c.mean_f1()
                    )
                })
                .unwrap_or_default();
            println!("  {} | {k}", r.line());
        }
        println!("  chosen: {}", best.line());
        println!(
            "{cat}: nested estimate of the whole selection (each section left out of the choice, the threshold and the weights that judge it)"
        );
        for line in nested.lines() {
            println!("  {line}");
        }
        nested_table.push(nested);
        models.push(learned::train(&set, cat, best.choice()));
        loso_table.extend(loso);
        cv_table.extend(cv);
    }
    let math = models
        .pop()
        .ok_or_else(|| UserError("no math model".into()))?;
    let code = models
        .pop()
        .ok_or_else(|| UserError("no code model".into()))?;
    let file = DetectorFile {
        name: learned::NAME.into(),
        feature_version: FEATURE_VERSION,
        buckets: BUCKETS,
        training,
        code,
        math,
        loso: loso_table,
        cv: cv_table,
        nested: nested_table,
    };
    util::write_atomic(&args.out, file.to_text()?.as_bytes())?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
