//! The learned ablation detector (`learned-v8`): an L2-regularised, class-weighted logistic
//! regression per category over deterministic text features, trained on the hand labels
//! (`tests/fixtures/ablation_labels.tsv` and `ablation_labels_blind4.tsv` …
//! `ablation_labels_blind10.tsv`, twenty-two sampled sections, and the three sections of
//! active-learning picks of `ablation_labels_active1.tsv`) and chosen by leaving one section out.
//!
//! # Features ([`Features`], version [`FEATURE_VERSION`])
//! - *Lexical*: the lowercased text is split into tokens — maximal runs of letters and digits, in
//!   which every run of digits becomes `0` (`2x` → `0x`, `3.14` → `0 . 0`), and every other
//!   non-space character on its own (`=`, `+`, `\`, `` ` ``). Unigrams and bigrams (within a
//!   turn) are hashed (FNV-1a, 64 bit, modulo [`BUCKETS`]) separately for the user side (user
//!   and system turns) and the assistant side; each bucket holds `ln(1 + count)` and each side is
//!   L2-normalised.
//! - *Dense* ([`DENSE_NAMES`]): the rule detector's measurements ([`RuleCounts`]) for code and
//!   math, whether `rules-v2` detects each category, digit–operator–digit, `= number`,
//!   percentage and number counts and the length (in hundreds of characters); and computation
//!   evidence read in prose (fenced blocks and inline code removed): whether the strict math
//!   rule fires, digit–operator–digit counts (total, largest per turn), equations with numbers
//!   on both sides, inline LaTeX math, the share of numeric tokens (×10), question words next
//!   to a number in user turns, and units combined by an operator. Each as `ln(1 + x)`.
//! - *Window* (per window: a user or system turn with the assistant turns that answer it): the
//!   window's unigrams and bigrams hashed like the lexical ones, without [`STOP_WORDS`] (a
//!   bigram only when both tokens are stop words), `ln(1 + count)`, user side then assistant
//!   side, L2-normalised over the window; per bucket the largest value over the windows, so
//!   one math exchange inside a long conversation keeps its weight instead of being diluted.
//! - *Math lexicon* ([`LEXICON_NAMES`], per window, the largest over windows, `ln(1 + x)`):
//!   geometry, probability/statistics, quantity (finance, health, games) and computation
//!   words, such words within 40 characters of a number, inline LaTeX, digit–operator–digit,
//!   equations, and question words next to a number in the user turns — read in prose.
//!
//! # Model
//! For one category, a configuration ([`Config`], per category from [`Config::grid`]) weights
//! the four feature groups (`lexical`, `dense`, `window`, `lexicon`; 0 leaves a group out)
//! and sets the L2 strength `lambda` and the positive class's share of the loss
//! (`positive_weight`, by default half). The objective is the class-weighted mean logistic loss
//! plus `lambda/2 · |w|²` (the bias is not penalised). It is
//! minimised by a fixed number ([`ITERATIONS`]) of Nesterov-accelerated gradient steps in the
//! span of the training rows (`w = Σ αᵢ xᵢ`, so every step costs one product with the Gram
//! matrix), with the step `1/L` from a power-iteration bound on the curvature: deterministic,
//! no randomness, no convergence test.
//!
//! A [`Choice`] adds how the probability is used ([`Mode`]): thresholded alone, or OR'ed or
//! AND'ed with the `rules-v2` verdict or with the strict rules (for math `strict-math`:
//! computation evidence only, not vocabulary or notation; for code `rules-v2`), or either rule
//! set alone.
//!
//! # Selection
//! The goal is precision *and* recall ≥ 0.85, so every choice maximises `min(precision,
//! recall)` ([`Counts::better`]; ties: the higher F1, then the earlier row or threshold).
//! [`leave_section_out`] scores every candidate (mode × configuration) on each labelled section
//! with a model trained on the other sections, at the threshold of [`THRESHOLDS`] that leaving
//! one section out *within* those other sections chooses by that criterion; the left-out
//! verdicts are pooled into one precision and recall ([`LosoRow`]). [`select_loso`] picks the
//! best pooled row; the shipped threshold is chosen the same way over all sections. Sections
//! that are not a sample (conversations a detector picked for labelling) can be kept out of the
//! folds: they are always in training and never scored. A model trained without sections `a`
//! and `b` serves both the inner fold of `b` when `a` is left out and that of `a` when `b` is,
//! so each pair of sections is fitted once; configurations that share a Gram matrix (they
//! differ only in λ or the class weights) are fitted together, one matrix read per step.
//! [`cross_validate`] runs stratified k-fold cross-validation repeated over seeds (folds drawn
//! with [`crate::util::rng`]) for comparison. [`leave_section_out_nested`] adds the nested
//! estimate of the whole procedure ([`Nested`]): each section, including those that only train,
//! judged by a choice, a threshold and weights made without its labels. The shipped file
//! ([`SHIPPED`], `data/ablation/detector-v8.json`) records the choices, the weights retrained on
//! all labels, both tables and the nested estimate.
use crate::data::ablate::{Category, Decision, Detector, RuleCounts, RuleDetector};
use crate::data::example::{Example, Role, Turn};
use crate::error::{Error, Location, Result};
use crate::model::kernels;
use rand::seq::SliceRandom;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

/// Hash buckets per side (user, assistant) of the lexical features.
pub const BUCKETS: usize = 4096;
/// Gradient steps of one fit.
pub const ITERATIONS: usize = 400;
/// Probability thresholds tried by selection: steps of 0.05 up to 0.5 (recall is the side
/// that falls short on math), then steps of 0.1.
pub const THRESHOLDS: [f64; 14] = [
    0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
];
/// The shipped detector file (`data/ablation/detector-v8.json`).
pub const SHIPPED: &str = include_str!("../../data/ablation/detector-v8.json");
/// The name `data ablate-train` gives the detectors it writes (the shipped one's).
pub const NAME: &str = "learned-v8";
/// The feature version recorded in model files; a file with another version is refused.
pub const FEATURE_VERSION: u32 = 3;

/// Names of the math-lexicon features (per window, the largest over windows), in order.
pub const LEXICON_NAMES: [&str; 9] = [
    "geometry-words",
    "probability-words",
    "quantity-words",
    "computation-words",
    "math-word-near-number",
    "latex-inline",
    "digit-op-digit",
    "equations",
    "question-near-number",
];
const LEXICON: usize = LEXICON_NAMES.len();

/// Tokens the window group leaves out: English function words and punctuation that carries no
/// mathematical meaning (operators, `$`, `%` and `\` stay). A bigram is left out when both of
/// its tokens are.
const STOP_WORDS: [&str; 96] = [
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "but", "by", "can", "could", "did", "do", "does", "for", "from", "had",
    "has", "have", "he", "her", "here", "him", "his", "how", "i", "if", "in", "into", "is", "it",
    "its", "just", "me", "more", "my", "no", "not", "of", "on", "one", "or", "other", "our", "out",
    "please", "she", "so", "some", "such", "than", "that", "the", "their", "them", "then", "there",
    "these", "they", "this", "to", "up", "us", "was", "we", "were", "what", "when", "which", "who",
    "will", "with", "would", "you", "your", ",", ".", "'", "\"", "!", "?", ":", ";", "(", ")", "’",
    "s", "t",
];

/// Names of the dense features, in order.
pub const DENSE_NAMES: [&str; 31] = [
    "fenced-lines",
    "fenced-blocks",
    "pasted-lines",
    "error-trace",
    "shell-command",
    "inline-spans",
    "strong-programming-terms",
    "weak-programming-terms",
    "rules-code",
    "worked-arithmetic",
    "latex",
    "formula-lines",
    "algebra",
    "word-problem",
    "math-request",
    "math-subject",
    "math-concepts",
    "rules-math",
    "digit-op-digit",
    "equals-number",
    "percentages",
    "numbers",
    "length",
    "strict-math",
    "prose-digit-op-digit",
    "prose-max-turn-digit-op-digit",
    "prose-equations",
    "latex-inline",
    "numeric-share",
    "question-near-number",
    "unit-arithmetic",
];
const DENSE: usize = DENSE_NAMES.len();

struct Patterns {
    op: Regex,
    equals: Regex,
    percent: Regex,
    number: Regex,
    fence: Regex,
    equation: Regex,
    latex_inline: Regex,
    question: Regex,
    unit_arithmetic: Regex,
    word: Regex,
    geometry: Regex,
    probability: Regex,
    quantity: Regex,
    computation: Regex,
    near_number: Regex,
}

/// The math lexicon: geometry, probability and statistics, quantities computed in finance,
/// health and games, and words asking for a computation.
const GEOMETRY: &str = r"circles?|triangles?|spheres?|cubes?|radius|radii|diameter|circumference|areas?|volumes?|perimeter|angles?|polygons?|hypotenuse|tangent|coordinates?|dimensional|rectangles?|squares?|centers?|centres?|vertices|vertex|parallelogram|cylinders?|cones?";
const PROBABILITY: &str = r"probability|probabilities|odds|expected value|dice|variance|standard deviation|mean|median|random|chance|distribution|percentile|likelihood";
const QUANTITY: &str = r"interest|rates?|roi|npv|noi|mortgage|loan|payments?|revenue|profit|margin|tdee|bmr|calories|tax|discount|budget|cash flow|income|expenses?|costs?|price|damage|salary|totals?|sum|average|percent|percentage|speed|distance";
const COMPUTATION: &str = r"calculate|calculating|calculation|calculations|compute|computing|formula|formulas|equation|equations|solve|solving|derive|prove|proof|estimate|multiply|divide|divided|plus|minus|times|squared|cubed";

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    Patterns {
    op: Regex::new(r"[0-9][0-9.,]*\s*[-+*/×÷^]\s*\(?[0-9]").expect("built-in pattern compiles"),
    equals: Regex::new(r"[=≈]\s*\$?-?[0-9]").expect("built-in pattern compiles"),
    percent: Regex::new(r"[0-9]\s*%").expect("built-in pattern compiles"),
    number: Regex::new(r"(?-u:\b)[0-9]+(?:[.,][0-9]+)*(?-u:\b)")
        .expect("built-in pattern compiles"),
    fence: Regex::new(r"(?s)```.*?(?:```|\z)|`[^`\n]*`").expect("built-in pattern compiles"),
    equation: Regex::new(
        r"[0-9][0-9.,]*\s*[-+*/×÷^x]\s*\(?\s*[0-9][0-9.,]*(?:\s*[-+*/×÷^x]\s*\(?\s*[0-9][0-9.,]*\)?)*\s*\)?\s*[=≈]\s*\$?-?[0-9]",
    )
    .expect("built-in pattern compiles"),
    latex_inline: Regex::new(r"\$[^$\n]{0,120}(?:\\[a-zA-Z]+|[=^_])[^$\n]{0,120}\$|\\\(|\\\[")
        .expect("built-in pattern compiles"),
    question: Regex::new(
        r"(?i)\b(?:calculate|compute|solve|how many|how much|what is|find|probability|average|total|percent(?:age)?)\b[^.?!\n]{0,60}[0-9]|[0-9][^.?!\n]{0,60}\b(?:calculate|compute|solve|how many|how much)\b",
    )
    .expect("built-in pattern compiles"),
    unit_arithmetic: Regex::new(
        r"(?i)(?:\$\s*[0-9][0-9.,]*|[0-9][0-9.,]*\s*(?:%|\$|dollars?|euros?|km|kg|m|cm|mm|g|l|hours?|minutes?|seconds?|days?|years?|months?|miles?|meters?|units?|items?|people|mph)\b)\s*[-+*/×÷x]\s*\(?\s*\$?[0-9]",
    )
    .expect("built-in pattern compiles"),
    word: Regex::new(r"[\p{L}\p{N}]+").expect("built-in pattern compiles"),
    geometry: words(GEOMETRY),
    probability: words(PROBABILITY),
    quantity: words(QUANTITY),
    computation: words(COMPUTATION),
    near_number: {
        let all = format!("{GEOMETRY}|{PROBABILITY}|{QUANTITY}|{COMPUTATION}");
        Regex::new(&format!(
            r"(?i)\b(?:{all})\b[^.?!\n]{{0,40}}[0-9]|[0-9][^.?!\n]{{0,40}}\b(?:{all})\b"
        ))
        .expect("built-in pattern compiles")
    },
}
});

/// A case-insensitive pattern of whole words from an alternation.
fn words(alternation: &str) -> Regex {
    Regex::new(&format!(r"(?i)\b(?:{alternation})\b")).expect("built-in pattern compiles")
}

/// The rules-v2 math rules that need computation evidence (`strict-math`): worked arithmetic,
/// or, in a conversation not detected as code, a word problem, a proof/formula request or a
/// fenced formula. Vocabulary (`math-terms`), notation (`algebra`) and `latex-math` alone do
/// not count.
const STRICT_MATH_RULES: [&str; 4] = [
    "worked-arithmetic",
    "word-problem",
    "math-request",
    "formula-block",
];

/// Whether the strict math rule fires on `rules-v2`'s evidence.
fn strict_math(evidence: &[(Category, String)]) -> bool {
    let code = evidence.iter().any(|(c, _)| *c == Category::Code);
    evidence.iter().any(|(c, e)| {
        *c == Category::Math
            && (e.starts_with(STRICT_MATH_RULES[0])
                || (!code && STRICT_MATH_RULES[1..].iter().any(|r| e.starts_with(r))))
    })
}

/// Which of the optional feature groups to compute ([`Features::with_groups`]): training
/// needs all of them; a detector only those its weights use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Groups {
    pub window: bool,
    pub lexicon: bool,
}

impl Groups {
    /// Every group.
    pub const ALL: Groups = Groups {
        window: true,
        lexicon: true,
    };
}

/// The features of one conversation (see the module docs).
#[derive(Debug, Clone)]
pub struct Features {
    /// Sorted `(bucket, value)` pairs of the user side, L2-normalised.
    pub user: Vec<(u32, f32)>,
    /// Sorted `(bucket, value)` pairs of the assistant side, L2-normalised.
    pub assistant: Vec<(u32, f32)>,
    /// The dense features, named by [`DENSE_NAMES`].
    pub dense: [f32; DENSE],
    /// Sorted `(index, value)` pairs of the window group: user-side buckets at `0..BUCKETS`,
    /// assistant-side ones at `BUCKETS..2·BUCKETS`; per bucket the largest value over windows.
    pub window: Vec<(u32, f32)>,
    /// The math-lexicon features, named by [`LEXICON_NAMES`].
    pub lexicon: [f32; LEXICON],
    /// The categories `rules-v2` detects.
    pub rules: Vec<Category>,
    /// The categories the strict rules detect: code as `rules-v2`, math by `strict-math`.
    pub strict: Vec<Category>,
    /// `rules-v2`'s evidence, for explanations.
    pub rule_evidence: Vec<(Category, String)>,
}

/// Tokens of a text (see the module docs).
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_digits = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if c.is_ascii_digit() {
                if !in_digits {
                    word.push('0');
                }
                in_digits = true;
            } else {
                word.push(c);
                in_digits = false;
            }
            continue;
        }
        in_digits = false;
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The bucket of a unigram or bigram: FNV-1a (64 bit) of its UTF-8 bytes modulo [`BUCKETS`].
fn bucket(parts: &[&str]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= u64::from(b' ');
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (h % BUCKETS as u64) as u32
}

/// Add the hashed unigrams and bigrams of `text` to `counts`.
fn count_ngrams(text: &str, counts: &mut BTreeMap<u32, f32>) {
    let toks = tokens(text);
    for (i, t) in toks.iter().enumerate() {
        *counts.entry(bucket(&[t])).or_default() += 1.0;
        if i + 1 < toks.len() {
            *counts.entry(bucket(&[t, &toks[i + 1]])).or_default() += 1.0;
        }
    }
}

/// Add the hashed unigrams and bigrams of `text` to `counts`, leaving out [`STOP_WORDS`]
/// (a bigram when both of its tokens are).
fn count_content_ngrams(text: &str, counts: &mut BTreeMap<u32, f32>) {
    let toks = tokens(text);
    let stop: Vec<bool> = toks
        .iter()
        .map(|t| STOP_WORDS.contains(&t.as_str()))
        .collect();
    for (i, t) in toks.iter().enumerate() {
        if !stop[i] {
            *counts.entry(bucket(&[t])).or_default() += 1.0;
        }
        if i + 1 < toks.len() && !(stop[i] && stop[i + 1]) {
            *counts.entry(bucket(&[t, &toks[i + 1]])).or_default() += 1.0;
        }
    }
}

/// The windows of a conversation, as turn indices: each user (or system) turn with the
/// assistant turns that answer it; consecutive user and system turns share a window.
fn windows(turns: &[Turn]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut answered = true;
    for (i, t) in turns.iter().enumerate() {
        let asks = t.role != Role::Assistant;
        if out.is_empty() || (asks && answered) {
            out.push(Vec::new());
        }
        answered = !asks;
        if let Some(w) = out.last_mut() {
            w.push(i);
        }
    }
    out
}

/// The window group (see the module docs): per window the `ln(1 + count)` of its content
/// n-grams, user side then assistant side, L2-normalised over the window; the largest value
/// per index over windows.
fn window_features(turns: &[Turn], windows: &[Vec<usize>]) -> Vec<(u32, f32)> {
    let mut pooled: BTreeMap<u32, f32> = BTreeMap::new();
    for w in windows {
        let (mut user, mut assistant) = (BTreeMap::new(), BTreeMap::new());
        for t in w.iter().map(|&i| &turns[i]) {
            match t.role {
                Role::Assistant => count_content_ngrams(&t.content, &mut assistant),
                Role::User | Role::System => count_content_ngrams(&t.content, &mut user),
            }
        }
        let v: Vec<(u32, f32)> = user
            .into_iter()
            .chain(assistant.into_iter().map(|(k, c)| (k + BUCKETS as u32, c)))
            .map(|(k, c)| (k, c.ln_1p()))
            .collect();
        let norm = v.iter().map(|(_, x)| x * x).sum::<f32>().sqrt();
        for (k, x) in v {
            let x = if norm > 0.0 { x / norm } else { x };
            let e = pooled.entry(k).or_default();
            *e = e.max(x);
        }
    }
    pooled.into_iter().collect()
}

/// The math-lexicon group (see the module docs): per window, counts read in its turns' prose
/// (`prose[i]`: turn `i` with fenced blocks and inline code removed); the largest per feature
/// over windows, as `ln(1 + x)`.
fn lexicon_features(
    turns: &[Turn],
    prose: &[Cow<'_, str>],
    windows: &[Vec<usize>],
) -> [f32; LEXICON] {
    let p = &*PATTERNS;
    let mut best = [0usize; LEXICON];
    for w in windows {
        let mut c = [0usize; LEXICON];
        for &i in w {
            let prose = &prose[i];
            c[0] += p.geometry.find_iter(prose).count();
            c[1] += p.probability.find_iter(prose).count();
            c[2] += p.quantity.find_iter(prose).count();
            c[3] += p.computation.find_iter(prose).count();
            c[4] += p.near_number.find_iter(prose).count();
            c[5] += p.latex_inline.find_iter(prose).count();
            c[6] += p.op.find_iter(prose).count();
            c[7] += p.equation.find_iter(prose).count();
            if turns[i].role != Role::Assistant {
                c[8] += p.question.find_iter(prose).count();
            }
        }
        for (b, x) in best.iter_mut().zip(c) {
            *b = (*b).max(x);
        }
    }
    best.map(|x| (x as f64).ln_1p() as f32)
}

/// `ln(1 + count)` per bucket, L2-normalised, in bucket order.
fn normalise(counts: BTreeMap<u32, f32>) -> Vec<(u32, f32)> {
    let v: Vec<(u32, f32)> = counts.into_iter().map(|(k, c)| (k, c.ln_1p())).collect();
    let norm = v.iter().map(|(_, x)| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return v;
    }
    v.into_iter().map(|(k, x)| (k, x / norm)).collect()
}

impl Features {
    /// Compute the features of `ex`, measuring the rules with `rules`.
    pub fn of(rules: &RuleDetector, ex: &Example) -> Features {
        Self::with_groups(rules, ex, Groups::ALL)
    }

    /// [`Features::of`] computing the window and lexicon groups only where `groups` asks
    /// (a group left out stays empty / zero: a detector whose weights leave it out reads the
    /// same scores).
    pub fn with_groups(rules: &RuleDetector, ex: &Example, groups: Groups) -> Features {
        let (mut user, mut assistant) = (BTreeMap::new(), BTreeMap::new());
        for t in &ex.turns {
            match t.role {
                Role::Assistant => count_ngrams(&t.content, &mut assistant),
                Role::User | Role::System => count_ngrams(&t.content, &mut user),
            }
        }
        let counts: RuleCounts = rules.measure(ex);
        let evidence = rules.explain_counts(&counts);
        let detected = |c: Category| evidence.iter().any(|(k, _)| *k == c);
        let p = &*PATTERNS;
        let (mut ops, mut equals, mut percent, mut numbers, mut chars) = (0, 0, 0, 0, 0);
        let (mut prose_ops, mut max_ops, mut equations, mut latex) = (0, 0, 0, 0);
        let (mut prose_numbers, mut prose_words, mut questions, mut units) = (0, 0, 0, 0);
        // Prose: each turn without fenced blocks and inline code spans.
        let prose: Vec<Cow<'_, str>> = ex
            .turns
            .iter()
            .map(|t| p.fence.replace_all(&t.content, " "))
            .collect();
        for (t, prose) in ex.turns.iter().zip(&prose) {
            ops += p.op.find_iter(&t.content).count();
            equals += p.equals.find_iter(&t.content).count();
            percent += p.percent.find_iter(&t.content).count();
            numbers += p.number.find_iter(&t.content).count();
            chars += t.content.chars().count();
            let turn_ops = p.op.find_iter(prose).count();
            prose_ops += turn_ops;
            max_ops = max_ops.max(turn_ops);
            equations += p.equation.find_iter(prose).count();
            latex += p.latex_inline.find_iter(prose).count();
            prose_numbers += p.number.find_iter(prose).count();
            prose_words += p.word.find_iter(prose).count();
            if t.role != Role::Assistant {
                questions += p.question.find_iter(prose).count();
            }
            units += p.unit_arithmetic.find_iter(prose).count();
        }
        let strict = strict_math(&evidence);
        let raw: [f64; DENSE] = [
            counts.fenced_lines as f64,
            counts.fenced_blocks as f64,
            counts.pasted_lines as f64,
            f64::from(u8::from(counts.error_trace)),
            f64::from(u8::from(counts.shell)),
            counts.inline_spans as f64,
            counts.strong_terms as f64,
            counts.weak_terms as f64,
            f64::from(u8::from(detected(Category::Code))),
            counts.arithmetic as f64,
            counts.latex as f64,
            counts.formula_lines as f64,
            counts.algebra as f64,
            f64::from(u8::from(counts.word_problem)),
            f64::from(u8::from(counts.math_request)),
            f64::from(u8::from(counts.math_subject)),
            counts.math_concepts as f64,
            f64::from(u8::from(detected(Category::Math))),
            ops as f64,
            equals as f64,
            percent as f64,
            numbers as f64,
            chars as f64 / 100.0,
            f64::from(u8::from(strict)),
            prose_ops as f64,
            max_ops as f64,
            equations as f64,
            latex as f64,
            10.0 * prose_numbers as f64 / prose_words.max(1) as f64,
            questions as f64,
            units as f64,
        ];
        let mut dense = [0f32; DENSE];
        for (d, x) in dense.iter_mut().zip(raw) {
            *d = x.ln_1p() as f32;
        }
        let windows = if groups.window || groups.lexicon {
            windows(&ex.turns)
        } else {
            Vec::new()
        };
        let mut rule_cats = Vec::new();
        for (c, _) in &evidence {
            if !rule_cats.contains(c) {
                rule_cats.push(*c);
            }
        }
        Features {
            user: normalise(user),
            assistant: normalise(assistant),
            dense,
            window: if groups.window {
                window_features(&ex.turns, &windows)
            } else {
                Vec::new()
            },
            lexicon: if groups.lexicon {
                lexicon_features(&ex.turns, &prose, &windows)
            } else {
                [0.0; LEXICON]
            },
            strict: rule_cats
                .iter()
                .copied()
                .filter(|c| *c == Category::Code || strict)
                .collect(),
            rules: rule_cats,
            rule_evidence: evidence,
        }
    }

    /// The lexical features as one dense row of `2 · BUCKETS` (user, then assistant).
    fn lexical_row(&self, row: &mut [f32]) {
        row.fill(0.0);
        for &(k, x) in &self.user {
            row[k as usize] = x;
        }
        for &(k, x) in &self.assistant {
            row[BUCKETS + k as usize] = x;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------------

/// One hand label: a conversation id, its code and math truth, and its section of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub id: String,
    pub code: bool,
    pub math: bool,
    pub section: String,
}

impl Label {
    /// The truth for `category`.
    pub fn is(&self, category: Category) -> bool {
        match category {
            Category::Code => self.code,
            Category::Math => self.math,
        }
    }
}

/// Read a label file: `id<TAB>code<TAB>math` lines with 0/1 bits; `#` lines are comments, and
/// `# section NAME` starts a section, NAME being one word (no spaces). A comment that merely
/// begins with "section" followed by several words (a wrapped sentence) is a comment, not a
/// header: it must not move the labels after it into a section named by prose.
pub fn read_labels(path: &Path) -> Result<Vec<Label>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut section = String::new();
    let mut out: Vec<Label> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = Location::Line(n + 1);
        if let Some(name) = line.strip_prefix("# section ") {
            let name = name.trim();
            if !name.is_empty() && !name.contains(char::is_whitespace) {
                section = name.to_string();
            }
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 3 {
            return Err(Error::record(
                path,
                at,
                format!("expected id<TAB>code<TAB>math, found {} field(s)", f.len()),
            ));
        }
        let bit = |s: &str, what: &str| match s.trim() {
            "0" => Ok(false),
            "1" => Ok(true),
            other => Err(Error::record(
                path,
                at,
                format!("{what}: expected 0 or 1, found {other:?}"),
            )),
        };
        let id = f[0].trim().to_string();
        if !seen.insert(id.clone()) {
            return Err(Error::record(path, at, format!("duplicate id {id:?}")));
        }
        out.push(Label {
            id,
            code: bit(f[1], "code")?,
            math: bit(f[2], "math")?,
            section: section.clone(),
        });
    }
    if out.is_empty() {
        return Err(Error::file(
            path,
            "no labels (expected id<TAB>code<TAB>math lines)",
        ));
    }
    Ok(out)
}

/// Counts of one labelled section (or of all): conversations scored, and the code and math
/// verdicts against the labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SectionCounts {
    pub section: String,
    pub scored: usize,
    pub code: Counts,
    pub math: Counts,
}

/// Any detector's verdicts scored against hand labels ([`score_detector`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    pub detector: String,
    /// Labels read.
    pub labels: usize,
    /// Labelled ids that are not conversations of the input (excluded by the reader or
    /// absent); not scored.
    pub not_in_input: Vec<String>,
    /// Conversations the detector could not classify (id, error); not scored.
    pub failed: Vec<(String, String)>,
    /// Per section, in order of first appearance.
    pub sections: Vec<SectionCounts>,
    /// Every scored conversation.
    pub pooled: SectionCounts,
}

/// Classify every labelled conversation of `examples` with `detector` and score its verdicts
/// against `labels`, per section and pooled. Labels without a conversation and conversations the
/// detector fails on are listed, not scored. `tick` is called once per labelled conversation
/// classified (for a progress bar).
pub fn score_detector(
    detector: &dyn Detector,
    labels: &[Label],
    examples: &[Example],
    tick: &mut dyn FnMut(),
) -> LabelScore {
    let by_id: std::collections::HashMap<&str, &Example> =
        examples.iter().map(|e| (e.id.as_str(), e)).collect();
    let counts = |section: &str| SectionCounts {
        section: section.to_string(),
        scored: 0,
        code: Counts::default(),
        math: Counts::default(),
    };
    let mut out = LabelScore {
        detector: detector.name(),
        labels: labels.len(),
        not_in_input: Vec::new(),
        failed: Vec::new(),
        sections: Vec::new(),
        pooled: counts("all"),
    };
    for l in labels {
        let Some(ex) = by_id.get(l.id.as_str()) else {
            out.not_in_input.push(l.id.clone());
            continue;
        };
        let decision = detector.decide(ex);
        tick();
        let cats = match decision {
            Ok(d) => d.categories,
            Err(e) => {
                out.failed.push((l.id.clone(), e.to_string()));
                continue;
            }
        };
        let at = match out.sections.iter().position(|s| s.section == l.section) {
            Some(at) => at,
            None => {
                out.sections.push(counts(&l.section));
                out.sections.len() - 1
            }
        };
        for c in [&mut out.sections[at], &mut out.pooled] {
            c.scored += 1;
            c.code.add(cats.contains(&Category::Code), l.code);
            c.math.add(cats.contains(&Category::Math), l.math);
        }
    }
    out
}

/// The labelled conversations with their features and Gram matrices.
pub struct Labelled {
    pub labels: Vec<Label>,
    pub features: Vec<Features>,
    /// `n × n` inner products of the lexical features.
    gram_lexical: Vec<f32>,
    /// `n × n` inner products of the dense features.
    gram_dense: Vec<f32>,
    /// `n × n` inner products of the window group.
    gram_window: Vec<f32>,
    /// `n × n` inner products of the math-lexicon features.
    gram_lexicon: Vec<f32>,
}

impl Labelled {
    /// Pair labels with their conversations (by id) and compute features and Gram matrices.
    /// Labels whose id is not among `examples` are returned as the second value (the reader
    /// excludes some conversations; the caller reports them).
    pub fn new(
        rules: &RuleDetector,
        labels: Vec<Label>,
        examples: &[Example],
    ) -> (Labelled, Vec<Label>) {
        let by_id: std::collections::HashMap<&str, &Example> =
            examples.iter().map(|e| (e.id.as_str(), e)).collect();
        let (mut kept, mut missing) = (Vec::new(), Vec::new());
        let mut features = Vec::new();
        for l in labels {
            match by_id.get(l.id.as_str()) {
                Some(ex) => {
                    features.push(Features::of(rules, ex));
                    kept.push(l);
                }
                None => missing.push(l),
            }
        }
        let n = kept.len();
        let width = 2 * BUCKETS;
        let mut rows = vec![0f32; n * width];
        for (f, row) in features.iter().zip(rows.chunks_mut(width)) {
            f.lexical_row(row);
        }
        let mut gram_lexical = vec![0f32; n * n];
        if n > 0 {
            kernels::matmul(&mut gram_lexical, &rows, &rows, n, width, n, true);
        }
        for (f, row) in features.iter().zip(rows.chunks_mut(width)) {
            row.fill(0.0);
            for &(k, x) in &f.window {
                row[k as usize] = x;
            }
        }
        let mut gram_window = vec![0f32; n * n];
        if n > 0 {
            kernels::matmul(&mut gram_window, &rows, &rows, n, width, n, true);
        }
        let (mut gram_dense, mut gram_lexicon) = (vec![0f32; n * n], vec![0f32; n * n]);
        for i in 0..n {
            for j in 0..n {
                gram_dense[i * n + j] = kernels::dot(&features[i].dense, &features[j].dense);
                gram_lexicon[i * n + j] = kernels::dot(&features[i].lexicon, &features[j].lexicon);
            }
        }
        (
            Labelled {
                labels: kept,
                features,
                gram_lexical,
                gram_dense,
                gram_window,
                gram_lexicon,
            },
            missing,
        )
    }

    /// Labelled conversations.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when no label matched a conversation.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The Gram matrix of `config` restricted to `rows × cols`.
    fn gram(&self, config: &Config, rows: &[usize], cols: &[usize]) -> Vec<f32> {
        let n = self.len();
        let sq = |w: f64| (w * w) as f32;
        let (a, b, c, d) = (
            sq(config.lexical),
            sq(config.dense),
            sq(config.window),
            sq(config.lexicon),
        );
        let mut out = Vec::with_capacity(rows.len() * cols.len());
        for &i in rows {
            for &j in cols {
                let k = i * n + j;
                out.push(
                    a * self.gram_lexical[k]
                        + b * self.gram_dense[k]
                        + c * self.gram_window[k]
                        + d * self.gram_lexicon[k],
                );
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------------

/// Feature-group weights and regularisation of one logistic regression.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Weight of the lexical features (0: left out).
    pub lexical: f64,
    /// Weight of the dense features (0: left out).
    pub dense: f64,
    /// Weight of the window group (0: left out).
    #[serde(default)]
    pub window: f64,
    /// Weight of the math-lexicon features (0: left out).
    #[serde(default)]
    pub lexicon: f64,
    /// L2 strength.
    pub lambda: f64,
    /// The share of the loss the positive class carries (the negatives carry the rest); 0.5
    /// weighs both classes equally, more leans the fit towards recall.
    #[serde(default = "equal_weight", skip_serializing_if = "is_equal_weight")]
    pub positive_weight: f64,
}

/// Both classes weigh half of the loss (the default of [`Config::positive_weight`]).
pub const EQUAL_WEIGHT: f64 = 0.5;

fn equal_weight() -> f64 {
    EQUAL_WEIGHT
}

fn is_equal_weight(w: &f64) -> bool {
    *w == EQUAL_WEIGHT
}

impl Config {
    /// The configurations selection tries for `category`, kept small so that training stays
    /// within minutes (every group of configurations sharing a Gram matrix costs one fit per
    /// section and per pair of sections; the configurations of a group are fitted together).
    /// Code: lexical + dense 0.5 at λ=1e-4 (learned-v4's and learned-v6's choice). Math, one
    /// group: lexical only at λ=1e-4 (learned-v5's and learned-v6's configuration), 3e-5 and
    /// 1e-5, both classes weighing half.
    pub fn grid(category: Category) -> Vec<Config> {
        let c = |lexical, dense, window, lexicon, lambda| Config {
            lexical,
            dense,
            window,
            lexicon,
            lambda,
            positive_weight: EQUAL_WEIGHT,
        };
        match category {
            Category::Code => vec![c(1.0, 0.5, 0.0, 0.0, 1e-4)],
            Category::Math => vec![
                c(1.0, 0.0, 0.0, 0.0, 1e-4),
                c(1.0, 0.0, 0.0, 0.0, 3e-5),
                c(1.0, 0.0, 0.0, 0.0, 1e-5),
            ],
        }
    }

    /// A short name, e.g. `lex+dense0.5 λ=0.001`: the groups used (`lex`, `win`, `dense`,
    /// `lexicon`), each with its weight where it is not 1.
    pub fn name(&self) -> String {
        let groups: Vec<String> = [
            ("lex", self.lexical),
            ("win", self.window),
            ("dense", self.dense),
            ("lexicon", self.lexicon),
        ]
        .into_iter()
        .filter(|(_, w)| *w > 0.0)
        .map(|(n, w)| {
            if w == 1.0 {
                n.to_string()
            } else {
                format!("{n}{w}")
            }
        })
        .collect();
        let weight = if self.positive_weight == EQUAL_WEIGHT {
            String::new()
        } else {
            format!(" w+={}", self.positive_weight)
        };
        format!("{} λ={}{weight}", groups.join("+"), self.lambda)
    }

    /// Whether `self` and `other` weight the feature groups alike, so that they share one
    /// Gram matrix (and are fitted together).
    pub fn same_groups(&self, other: &Config) -> bool {
        (self.lexical, self.dense, self.window, self.lexicon)
            == (other.lexical, other.dense, other.window, other.lexicon)
    }
}

/// How a category's verdict is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `rules-v2` alone.
    Rules,
    /// The model's probability ≥ threshold.
    Model,
    /// The rules or the model.
    RulesOrModel,
    /// The rules and the model.
    RulesAndModel,
    /// The strict rules alone (for math `strict-math`, for code `rules-v2`).
    Strict,
    /// The strict rules or the model.
    StrictOrModel,
    /// The strict rules and the model.
    StrictAndModel,
}

impl Mode {
    /// The name used in tables and files.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rules => "rules",
            Mode::Model => "model",
            Mode::RulesOrModel => "rules-or-model",
            Mode::RulesAndModel => "rules-and-model",
            Mode::Strict => "strict",
            Mode::StrictOrModel => "strict-or-model",
            Mode::StrictAndModel => "strict-and-model",
        }
    }

    /// The modes that use a model, in table order.
    pub const WITH_MODEL: [Mode; 5] = [
        Mode::Model,
        Mode::RulesOrModel,
        Mode::RulesAndModel,
        Mode::StrictOrModel,
        Mode::StrictAndModel,
    ];

    /// Whether the mode uses the model's probability.
    pub fn uses_model(self) -> bool {
        !matches!(self, Mode::Rules | Mode::Strict)
    }

    /// Whether the mode uses the strict rules instead of `rules-v2`.
    fn strict(self) -> bool {
        matches!(
            self,
            Mode::Strict | Mode::StrictOrModel | Mode::StrictAndModel
        )
    }

    /// The verdict given whether the rules (`rules-v2` or the strict ones, as the mode says)
    /// fire and the model's probability.
    fn verdict(self, rules: bool, probability: f64, threshold: f64) -> bool {
        let model = probability >= threshold;
        match self {
            Mode::Rules | Mode::Strict => rules,
            Mode::Model => model,
            Mode::RulesOrModel | Mode::StrictOrModel => rules || model,
            Mode::RulesAndModel | Mode::StrictAndModel => rules && model,
        }
    }

    /// The verdict for `category` on `f` (see [`Mode::verdict`]).
    fn decide(self, f: &Features, category: Category, probability: f64, threshold: f64) -> bool {
        let rules = if self.strict() { &f.strict } else { &f.rules };
        self.verdict(rules.contains(&category), probability, threshold)
    }
}

/// Models fitted together on one Gram matrix, in the span of its training rows: model `c` is
/// `f(x) = Σ αᵢc k(xᵢ, x) + bias_c`.
struct Fits {
    /// `n × models`, row-major: row `i` holds every model's `αᵢ`.
    alpha: Vec<f32>,
    bias: Vec<f64>,
}

impl Fits {
    /// How many models.
    fn models(&self) -> usize {
        self.bias.len()
    }
}

/// Fit one class-weighted L2 logistic regression per `(lambda, positive_weight)` of `penalties`
/// on the Gram matrix `gram` (`n × n`) with targets `y` (see the module docs). The models share
/// every product with the Gram matrix (one matrix read per step for all of them); model `c`'s
/// arithmetic does not depend on the others, except through the matrix-product kernel.
fn fit(gram: &[f32], y: &[bool], penalties: &[(f64, f64)]) -> Fits {
    let n = y.len();
    let k = penalties.len();
    let positives = y.iter().filter(|&&t| t).count();
    if n == 0 || positives == 0 || positives == n {
        // One class only: a constant model that predicts it.
        let bias = if positives == 0 { -10.0 } else { 10.0 };
        return Fits {
            alpha: vec![0.0; n * k],
            bias: vec![bias; k],
        };
    }
    // Per model, the positive class carries `positive_weight` of the mean loss, the negative
    // one the rest.
    let weight: Vec<Vec<f64>> = penalties
        .iter()
        .map(|&(_, share)| {
            y.iter()
                .map(|&t| {
                    let (share, count) = if t {
                        (share, positives)
                    } else {
                        (1.0 - share, n - positives)
                    };
                    share / count as f64
                })
                .collect()
        })
        .collect();
    // Curvature bound: max weight / 4 · λmax(K + 1·1ᵀ) (power iteration, with a margin) + λ.
    let mut v = vec![1f32; n];
    let mut top = 0f64;
    let mut kv = vec![0f32; n];
    for _ in 0..30 {
        kernels::matmul(&mut kv, gram, &v, n, n, 1, false);
        let s: f32 = v.iter().sum();
        for x in kv.iter_mut() {
            *x += s;
        }
        let norm = kv
            .iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            .sqrt();
        let vnorm = v
            .iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            .sqrt();
        top = norm / vnorm.max(1e-30);
        for (a, b) in v.iter_mut().zip(&kv) {
            *a = (f64::from(*b) / norm.max(1e-30)) as f32;
        }
    }
    let (mut step, mut momentum) = (Vec::with_capacity(k), Vec::with_capacity(k));
    for (&(lambda, _), w) in penalties.iter().zip(&weight) {
        let max_weight = w.iter().cloned().fold(0.0, f64::max);
        let curvature = 1.2 * max_weight / 4.0 * top + lambda;
        let q = (lambda / curvature).sqrt();
        step.push(1.0 / curvature);
        momentum.push(((1.0 - q) / (1.0 + q)) as f32);
    }

    let (mut alpha, mut bias) = (vec![0f32; n * k], vec![0f64; k]);
    let (mut prev_alpha, mut prev_bias) = (alpha.clone(), bias.clone());
    let mut look = vec![0f32; n * k];
    let mut look_bias = vec![0f64; k];
    let mut grad_bias = vec![0f64; k];
    let mut f = vec![0f32; n * k];
    for _ in 0..ITERATIONS {
        // Look-ahead point.
        for i in 0..n {
            for (c, &m) in momentum.iter().enumerate() {
                let j = i * k + c;
                look[j] = alpha[j] + m * (alpha[j] - prev_alpha[j]);
            }
        }
        for c in 0..k {
            look_bias[c] = bias[c] + f64::from(momentum[c]) * (bias[c] - prev_bias[c]);
        }
        kernels::matmul(&mut f, gram, &look, n, n, k, false);
        prev_alpha.copy_from_slice(&alpha);
        prev_bias.copy_from_slice(&bias);
        grad_bias.fill(0.0);
        for i in 0..n {
            for (c, &(lambda, _)) in penalties.iter().enumerate() {
                let j = i * k + c;
                let p = sigmoid(f64::from(f[j]) + look_bias[c]);
                let g = weight[c][i] * (p - f64::from(u8::from(y[i])));
                grad_bias[c] += g;
                alpha[j] =
                    (f64::from(look[j]) - step[c] * (g + lambda * f64::from(look[j]))) as f32;
            }
        }
        for c in 0..k {
            bias[c] = look_bias[c] - step[c] * grad_bias[c];
        }
    }
    Fits { alpha, bias }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Stratified fold of every row (positives and negatives each shuffled with
/// `util::rng(seed, "ablate-cv")` and dealt round-robin).
fn folds(y: &[bool], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = crate::util::rng(seed, "ablate-cv");
    let mut fold = vec![0; y.len()];
    let mut dealt = 0;
    for class in [true, false] {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        idx.shuffle(&mut rng);
        for i in idx {
            fold[i] = dealt % k;
            dealt += 1;
        }
    }
    fold
}

/// The configurations of `configs` grouped by their feature-group weights (one Gram matrix per
/// group), each group as indices into `configs`, in order of first appearance.
fn gram_groups(configs: &[Config]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (c, config) in configs.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|g| configs[g[0]].same_groups(config))
        {
            Some(g) => g.push(c),
            None => groups.push(vec![c]),
        }
    }
    groups
}

/// Probabilities on `test` of each of `configs` (which share their feature-group weights)
/// trained on `train`: one vector per configuration.
fn predict(
    set: &Labelled,
    y: &[bool],
    configs: &[Config],
    train: &[usize],
    test: &[usize],
) -> Vec<Vec<f64>> {
    let k = configs.len();
    if test.is_empty() || k == 0 {
        return vec![Vec::new(); k];
    }
    let ty: Vec<bool> = train.iter().map(|&i| y[i]).collect();
    let penalties: Vec<(f64, f64)> = configs
        .iter()
        .map(|c| (c.lambda, c.positive_weight))
        .collect();
    let model = fit(&set.gram(&configs[0], train, train), &ty, &penalties);
    let cross = set.gram(&configs[0], test, train);
    let mut scores = vec![0f32; test.len() * k];
    if !train.is_empty() {
        kernels::matmul(
            &mut scores,
            &cross,
            &model.alpha,
            test.len(),
            train.len(),
            k,
            false,
        );
    }
    (0..model.models())
        .map(|c| {
            (0..test.len())
                .map(|t| sigmoid(f64::from(scores[t * k + c]) + model.bias[c]))
                .collect()
        })
        .collect()
}

/// Out-of-fold probabilities of each of `configs` (sharing their feature-group weights) for
/// one seed: the rows of `scored` are dealt into `k` stratified folds, every other row is
/// always in training; rows outside `scored` get 0.
fn out_of_fold(
    set: &Labelled,
    y: &[bool],
    configs: &[Config],
    scored: &[usize],
    k: usize,
    seed: u64,
) -> Vec<Vec<f64>> {
    let sy: Vec<bool> = scored.iter().map(|&i| y[i]).collect();
    let fold = folds(&sy, k, seed);
    let mut in_fold = vec![None; y.len()];
    for (&i, &f) in scored.iter().zip(&fold) {
        in_fold[i] = Some(f);
    }
    let mut p = vec![vec![0.0; y.len()]; configs.len()];
    for f in 0..k {
        let train: Vec<usize> = (0..y.len()).filter(|&i| in_fold[i] != Some(f)).collect();
        let test: Vec<usize> = (0..y.len()).filter(|&i| in_fold[i] == Some(f)).collect();
        for (c, probs) in predict(set, y, configs, &train, &test)
            .into_iter()
            .enumerate()
        {
            for (&i, q) in test.iter().zip(probs) {
                p[c][i] = q;
            }
        }
    }
    p
}

/// Precision, recall and F1 of verdicts against the truth (0 when undefined).
fn prf(verdicts: impl Iterator<Item = (bool, bool)>) -> [f64; 3] {
    let mut c = Counts::default();
    for (v, t) in verdicts {
        c.add(v, t);
    }
    [c.precision(), c.recall(), c.f1()]
}

/// How a category's verdict is formed: the mode, and for modes with a model its configuration
/// and threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub config: Option<Config>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub threshold: Option<f64>,
}

/// One row of the cross-validation table: a choice and its pooled out-of-fold precision, recall
/// and F1, one value per seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvRow {
    pub category: Category,
    pub choice: Choice,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub f1: Vec<f64>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn spread(v: &[f64]) -> f64 {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() { 0.0 } else { (hi - lo) / 2.0 }
}

impl CvRow {
    /// A label: `rules`, or `MODE CONFIG t=THRESHOLD`.
    pub fn name(&self) -> String {
        match (self.choice.config, self.choice.threshold) {
            (Some(c), Some(t)) => format!("{} {} t={t}", self.choice.mode.as_str(), c.name()),
            _ => self.choice.mode.as_str().to_string(),
        }
    }

    /// `precision ± half-range, recall ± half-range, F1` over seeds, as a table line.
    pub fn line(&self) -> String {
        format!(
            "{:<5} {:<44} P {:.3} ± {:.3}  R {:.3} ± {:.3}  F1 {:.3}",
            self.category.as_str(),
            self.name(),
            mean(&self.precision),
            spread(&self.precision),
            mean(&self.recall),
            spread(&self.recall),
            mean(&self.f1)
        )
    }

    /// Mean F1 over seeds.
    pub fn mean_f1(&self) -> f64 {
        mean(&self.f1)
    }

    /// Mean precision over seeds.
    pub fn mean_precision(&self) -> f64 {
        mean(&self.precision)
    }

    /// Mean recall over seeds.
    pub fn mean_recall(&self) -> f64 {
        mean(&self.recall)
    }
}

/// The choices without a model: `rules-v2` and the strict rules.
const RULE_CHOICES: [Choice; 2] = [
    Choice {
        mode: Mode::Rules,
        config: None,
        threshold: None,
    },
    Choice {
        mode: Mode::Strict,
        config: None,
        threshold: None,
    },
];

/// The rows of `set` whose section is one of `sections`.
fn rows_in(set: &Labelled, sections: &[String]) -> Vec<usize> {
    (0..set.len())
        .filter(|&i| sections.contains(&set.labels[i].section))
        .collect()
}

/// Cross-validate `configs` for `category` with `k` stratified folds per seed: one row each for
/// the rules and the strict rules, then per configuration, per model mode and per threshold of
/// [`THRESHOLDS`]. Only the rows of the sections `test_sections` are dealt into folds and
/// scored; the rows of other sections are always in training.
pub fn cross_validate(
    set: &Labelled,
    category: Category,
    configs: &[Config],
    k: usize,
    seeds: &[u64],
    test_sections: &[String],
) -> Vec<CvRow> {
    let y: Vec<bool> = set.labels.iter().map(|l| l.is(category)).collect();
    let scored = rows_in(set, test_sections);
    let row = |choice: Choice, probs: &[Vec<f64>]| {
        let mut r = CvRow {
            category,
            choice,
            precision: Vec::new(),
            recall: Vec::new(),
            f1: Vec::new(),
        };
        for p in probs {
            let t = choice.threshold.unwrap_or(0.5);
            let [pr, re, f] = prf(scored.iter().map(|&i| {
                (
                    choice.mode.decide(&set.features[i], category, p[i], t),
                    y[i],
                )
            }));
            r.precision.push(pr);
            r.recall.push(re);
            r.f1.push(f);
        }
        r
    };
    let no_model = vec![vec![0.0; y.len()]; seeds.len()];
    let mut out: Vec<CvRow> = RULE_CHOICES.iter().map(|c| row(*c, &no_model)).collect();
    // Per configuration, per seed the out-of-fold probabilities.
    let mut probs: Vec<Vec<Vec<f64>>> = vec![Vec::new(); configs.len()];
    for group in gram_groups(configs) {
        let members: Vec<Config> = group.iter().map(|&c| configs[c]).collect();
        for &s in seeds {
            let per = out_of_fold(set, &y, &members, &scored, k, s);
            for (&c, p) in group.iter().zip(per) {
                probs[c].push(p);
            }
        }
    }
    for (config, probs) in configs.iter().zip(&probs) {
        for mode in Mode::WITH_MODEL {
            for t in THRESHOLDS {
                out.push(row(
                    Choice {
                        mode,
                        config: Some(*config),
                        threshold: Some(t),
                    },
                    probs,
                ));
            }
        }
    }
    out
}

/// The row with the highest `min(mean precision, mean recall)`, then the highest mean F1
/// (the earliest among equals).
pub fn select(rows: &[CvRow]) -> Option<&CvRow> {
    let key = |r: &CvRow| (r.mean_precision().min(r.mean_recall()), r.mean_f1());
    let mut best: Option<&CvRow> = None;
    for r in rows {
        if best.is_none_or(|b| key(r) > key(b)) {
            best = Some(r);
        }
    }
    best
}

// ---------------------------------------------------------------------------------------------
// Leave one section out
// ---------------------------------------------------------------------------------------------

/// Counts of verdicts against the truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Counts {
    /// Count one verdict against its truth.
    pub fn add(&mut self, verdict: bool, truth: bool) {
        match (verdict, truth) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => {}
        }
    }

    /// Add another set of counts.
    pub fn add_counts(&mut self, other: &Counts) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
    }

    /// `P … R … F1 … (tp … fp … fn …)`, as the tables print it.
    pub fn summary(&self) -> String {
        format!(
            "P {:.3} R {:.3} F1 {:.3} (tp {} fp {} fn {})",
            self.precision(),
            self.recall(),
            self.f1(),
            self.tp,
            self.fp,
            self.fn_
        )
    }

    /// Precision (0 when nothing was detected).
    pub fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }

    /// Recall (0 when there is nothing to find).
    pub fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }

    /// F1 (0 when precision and recall are).
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        }
    }

    /// The selection criterion: the smaller of precision and recall (the goal asks both to
    /// reach 0.85).
    pub fn min_pr(&self) -> f64 {
        self.precision().min(self.recall())
    }

    /// Whether these counts beat `other` by the selection criterion: a higher
    /// [`min_pr`](Counts::min_pr), or an equal one and a higher F1.
    pub fn better(&self, other: &Counts) -> bool {
        let (a, b) = (self.min_pr(), other.min_pr());
        a > b || (a == b && self.f1() > other.f1())
    }
}

/// One left-out section of a [`LosoRow`]: the threshold chosen without it and the counts on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionScore {
    pub section: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub threshold: Option<f64>,
    pub counts: Counts,
}

/// One candidate scored by leaving one section out: a mode and, for modes with a model, a
/// configuration; per section the threshold chosen inside the other sections and the counts on
/// the left-out one; the pooled counts; and the threshold that leave-one-section-out over all
/// sections chooses (what the shipped model uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LosoRow {
    pub category: Category,
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub config: Option<Config>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub threshold: Option<f64>,
    pub pooled: Counts,
    pub sections: Vec<SectionScore>,
}

impl LosoRow {
    /// A label: `MODE` or `MODE CONFIG`.
    pub fn name(&self) -> String {
        match self.config {
            Some(c) => format!("{} {}", self.mode.as_str(), c.name()),
            None => self.mode.as_str().to_string(),
        }
    }

    /// The choice this row ships: its mode, configuration and final threshold.
    pub fn choice(&self) -> Choice {
        Choice {
            mode: self.mode,
            config: self.config,
            threshold: self.threshold,
        }
    }

    /// Pooled precision, recall and F1, then per section `name P/R`, as a table line.
    pub fn line(&self) -> String {
        let t = self
            .threshold
            .map(|t| format!(" t={t}"))
            .unwrap_or_default();
        let parts: Vec<String> = self
            .sections
            .iter()
            .map(|s| {
                format!(
                    "{} {:.2}/{:.2}",
                    s.section,
                    s.counts.precision(),
                    s.counts.recall()
                )
            })
            .collect();
        format!(
            "{:<5} {:<44} {} | {}",
            self.category.as_str(),
            format!("{}{t}", self.name()),
            self.pooled.summary(),
            parts.join(", ")
        )
    }
}

/// The distinct sections of `set`, in order of first appearance.
pub fn sections(set: &Labelled) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in &set.labels {
        if !out.contains(&l.section) {
            out.push(l.section.clone());
        }
    }
    out
}

/// Per configuration of `configs` (sharing their feature-group weights), the probabilities of
/// the rows of the sections `names`, each from a model trained on the rows of `rows` outside
/// its section (leave one section out within `rows`; rows of other sections always train).
fn leave_section_out_probs(
    set: &Labelled,
    y: &[bool],
    configs: &[Config],
    rows: &[usize],
    names: &[String],
) -> Vec<Vec<(usize, f64)>> {
    let mut out = vec![Vec::new(); configs.len()];
    for name in names {
        let (test, train): (Vec<usize>, Vec<usize>) =
            rows.iter().partition(|&&i| set.labels[i].section == *name);
        for (o, probs) in out.iter_mut().zip(predict(set, y, configs, &train, &test)) {
            o.extend(test.iter().copied().zip(probs));
        }
    }
    out
}

/// Per configuration of `configs` (sharing their feature-group weights) and for each section
/// `k` of `names`, the probabilities of the rows of the other sections of `names`, each from a
/// model trained without `k` and without the row's own section (leave one section out within
/// the sections other than `k`; rows outside `names` always train). The model trained without
/// sections `a` and `b` scores `b`'s rows for `k = a` and `a`'s rows for `k = b`, so each pair
/// of sections is fitted once.
///
/// Only the first `folds` of `names` are folds of the selection: pairs of two later sections
/// (scored only by the nested estimate, see [`leave_section_out_nested`]) are not fitted, and
/// [`fold_rows_only`] keeps their rows out of a fold section's inner scores.
fn inner_probs(
    set: &Labelled,
    y: &[bool],
    configs: &[Config],
    names: &[String],
    folds: usize,
) -> Vec<Vec<Vec<(usize, f64)>>> {
    let section: Vec<usize> = set
        .labels
        .iter()
        .map(|l| {
            names
                .iter()
                .position(|s| *s == l.section)
                .unwrap_or(names.len())
        })
        .collect();
    let mut inner = vec![vec![Vec::new(); names.len()]; configs.len()];
    for a in 0..names.len().min(folds) {
        for b in a + 1..names.len() {
            let (test, train): (Vec<usize>, Vec<usize>) =
                (0..y.len()).partition(|&i| section[i] == a || section[i] == b);
            let probs = predict(set, y, configs, &train, &test);
            for (inner, probs) in inner.iter_mut().zip(probs) {
                for (&i, p) in test.iter().zip(probs) {
                    let k = if section[i] == a { b } else { a };
                    inner[k].push((i, p));
                }
            }
        }
    }
    inner
}

/// The threshold of [`THRESHOLDS`] whose verdicts of `mode` on `probs` are best by
/// [`Counts::better`] (the earliest among equals).
fn best_threshold(
    set: &Labelled,
    y: &[bool],
    category: Category,
    mode: Mode,
    probs: &[(usize, f64)],
) -> f64 {
    let mut best: Option<(f64, Counts)> = None;
    for t in THRESHOLDS {
        let mut c = Counts::default();
        for &(i, p) in probs {
            c.add(mode.decide(&set.features[i], category, p, t), y[i]);
        }
        if best.is_none_or(|(_, b)| c.better(&b)) {
            best = Some((t, c));
        }
    }
    best.map_or(THRESHOLDS[0], |(t, _)| t)
}

/// Score every candidate for `category` by leaving one section out: rows for the rules and the
/// strict rules, then per configuration and model mode one row. The sections `test_sections`
/// are the folds: each is scored by a model trained on all other rows, with the threshold that
/// leave-one-section-out *within* the other folds chooses by [`Counts::better`] (it never sees
/// the left-out section). Rows of sections outside `test_sections` (labels that are not a
/// sample of anything, e.g. conversations picked by a detector for labelling) are always in
/// training and never scored. Configurations that weight the feature groups alike are fitted
/// together. Needs at least three test sections.
pub fn leave_section_out(
    set: &Labelled,
    category: Category,
    configs: &[Config],
    test_sections: &[String],
) -> Vec<LosoRow> {
    leave_section_out_nested(set, category, configs, test_sections, &[]).0
}

/// Per configuration of `configs` (which must share their feature-group weights, as the grid
/// fits them together), the probabilities of the rows of `section`, from a model trained on
/// every other row: one left-out section of [`leave_section_out`], for checking a stored table
/// section by section without re-running the whole selection.
pub fn left_out_probs(
    set: &Labelled,
    category: Category,
    configs: &[Config],
    section: &str,
) -> Vec<Vec<(usize, f64)>> {
    let y: Vec<bool> = set.labels.iter().map(|l| l.is(category)).collect();
    let all: Vec<usize> = (0..y.len()).collect();
    leave_section_out_probs(set, &y, configs, &all, &[section.to_string()])
}

/// The verdict of `choice` for `category` on labelled row `i` with model probability `p`
/// (ignored by choices without a model); the threshold defaults to 0.5.
pub fn verdict(set: &Labelled, i: usize, category: Category, choice: &Choice, p: f64) -> bool {
    choice.mode.decide(
        &set.features[i],
        category,
        p,
        choice.threshold.unwrap_or(0.5),
    )
}

/// One outer section of a [`Nested`] estimate: the candidate that the selection, run without
/// this section, chose; its threshold; and its verdicts' counts on the section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NestedSection {
    pub section: String,
    /// The chosen row's name ([`LosoRow::name`]).
    pub chosen: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub threshold: Option<f64>,
    pub counts: Counts,
    /// Whether the section is a fold of the selection (`false`: a section that only trains,
    /// scored here so that every labelled conversation gets an out-of-sample verdict).
    pub fold: bool,
}

/// The nested leave-one-section-out estimate of the whole selection procedure: for each outer
/// section, the selection ([`select_loso`]'s criterion over the other fold sections) is re-run
/// without it, and the chosen candidate, trained without it, judges it. Unlike a
/// [`LosoRow`]'s pooled counts, this estimate does not reward the candidate for having been
/// chosen on the sections it reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nested {
    pub category: Category,
    /// Pooled over the fold sections.
    pub pooled: Counts,
    /// Pooled over every outer section (folds and sections that only train).
    pub pooled_all: Counts,
    pub sections: Vec<NestedSection>,
}

impl Nested {
    /// The pooled counts, then per section the choice, as table lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{:<5} nested, fold sections: {}",
            self.category.as_str(),
            self.pooled.summary()
        )];
        if self.pooled_all != self.pooled {
            out.push(format!(
                "{:<5} nested, every labelled section: {}",
                self.category.as_str(),
                self.pooled_all.summary()
            ));
        }
        for s in &self.sections {
            let t = s.threshold.map(|t| format!(" t={t}")).unwrap_or_default();
            out.push(format!(
                "    {}{}: {}{t} -> tp {} fp {} fn {}",
                s.section,
                if s.fold { "" } else { " (trains only)" },
                s.chosen,
                s.counts.tp,
                s.counts.fp,
                s.counts.fn_
            ));
        }
        out
    }
}

/// The rows of `probs` whose section is one of the first `folds` of `names`.
fn fold_rows_only(
    set: &Labelled,
    names: &[String],
    folds: usize,
    probs: &[(usize, f64)],
) -> Vec<(usize, f64)> {
    probs
        .iter()
        .filter(|&&(i, _)| names[..folds].contains(&set.labels[i].section))
        .copied()
        .collect()
}

/// [`leave_section_out`]'s table, and the [`Nested`] estimate of the selection procedure over
/// the same candidates: every section of `test_sections` and of `outer_only` (sections that
/// only train, e.g. detector-picked labels) is left out in turn, the selection is re-run on the
/// remaining fold sections, with each of their rows scored by a model trained without the outer
/// section and without the row's own section, and with one threshold per candidate chosen on
/// those pooled inner scores; the winner, trained without the outer section at that threshold,
/// judges it. The table is the same whatever `outer_only` holds; each `outer_only` section
/// costs one fit per fold section more.
pub fn leave_section_out_nested(
    set: &Labelled,
    category: Category,
    configs: &[Config],
    test_sections: &[String],
    outer_only: &[String],
) -> (Vec<LosoRow>, Nested) {
    let y: Vec<bool> = set.labels.iter().map(|l| l.is(category)).collect();
    let names = test_sections;
    let folds = names.len();
    let outer_names: Vec<String> = names
        .iter()
        .chain(outer_only.iter().filter(|s| !names.contains(s)))
        .cloned()
        .collect();
    let all: Vec<usize> = (0..y.len()).collect();
    let scored = rows_in(set, names);
    let score = |mode: Mode, config: Option<Config>, outer: &[f64], inner: &[Vec<(usize, f64)>]| {
        let mut pooled = Counts::default();
        let mut per = Vec::new();
        for (k, name) in names.iter().enumerate() {
            let threshold = config.map(|_| best_threshold(set, &y, category, mode, &inner[k]));
            let mut c = Counts::default();
            for i in scored.iter().filter(|&&i| set.labels[i].section == *name) {
                let v = mode.decide(
                    &set.features[*i],
                    category,
                    outer[*i],
                    threshold.unwrap_or(0.5),
                );
                c.add(v, y[*i]);
                pooled.add(v, y[*i]);
            }
            per.push(SectionScore {
                section: name.clone(),
                threshold,
                counts: c,
            });
        }
        let outer_pairs: Vec<(usize, f64)> = scored.iter().map(|&i| (i, outer[i])).collect();
        LosoRow {
            category,
            mode,
            config,
            threshold: config.map(|_| best_threshold(set, &y, category, mode, &outer_pairs)),
            pooled,
            sections: per,
        }
    };
    let zeros = vec![0.0; y.len()];
    let mut out: Vec<LosoRow> = RULE_CHOICES
        .iter()
        .map(|c| score(c.mode, None, &zeros, &[]))
        .collect();
    let mut outer = vec![vec![0.0; y.len()]; configs.len()];
    let mut inner = vec![Vec::new(); configs.len()];
    for group in gram_groups(configs) {
        let members: Vec<Config> = group.iter().map(|&c| configs[c]).collect();
        let probs = leave_section_out_probs(set, &y, &members, &all, &outer_names);
        for (&c, probs) in group.iter().zip(probs) {
            for (i, p) in probs {
                outer[c][i] = p;
            }
        }
        for (&c, probs) in group
            .iter()
            .zip(inner_probs(set, &y, &members, &outer_names, folds))
        {
            inner[c] = probs
                .iter()
                .map(|p| fold_rows_only(set, &outer_names, folds, p))
                .collect();
        }
    }
    for (c, config) in configs.iter().enumerate() {
        for mode in Mode::WITH_MODEL {
            out.push(score(mode, Some(*config), &outer[c], &inner[c]));
        }
    }

    // The nested estimate: per outer section, the selection re-run without it.
    let candidates: Vec<(Mode, Option<usize>)> = RULE_CHOICES
        .iter()
        .map(|c| (c.mode, None))
        .chain(
            (0..configs.len())
                .flat_map(|c| Mode::WITH_MODEL.into_iter().map(move |m| (m, Some(c)))),
        )
        .collect();
    let mut nested = Nested {
        category,
        pooled: Counts::default(),
        pooled_all: Counts::default(),
        sections: Vec::new(),
    };
    for (k, name) in outer_names.iter().enumerate() {
        let mut best: Option<(usize, Option<f64>, Counts)> = None;
        for (r, &(mode, config)) in candidates.iter().enumerate() {
            let (threshold, counts) = match config {
                None => {
                    let mut c = Counts::default();
                    for &i in scored.iter().filter(|&&i| set.labels[i].section != *name) {
                        c.add(mode.decide(&set.features[i], category, 0.0, 0.5), y[i]);
                    }
                    (None, c)
                }
                Some(c) => {
                    let t = best_threshold(set, &y, category, mode, &inner[c][k]);
                    let mut n = Counts::default();
                    for &(i, p) in &inner[c][k] {
                        n.add(mode.decide(&set.features[i], category, p, t), y[i]);
                    }
                    (Some(t), n)
                }
            };
            if best.is_none_or(|(_, _, b)| counts.better(&b)) {
                best = Some((r, threshold, counts));
            }
        }
        let Some((r, threshold, _)) = best else {
            continue;
        };
        let (mode, config) = candidates[r];
        let mut c = Counts::default();
        for i in (0..y.len()).filter(|&i| set.labels[i].section == *name) {
            let p = config.map_or(0.0, |c| outer[c][i]);
            c.add(
                mode.decide(&set.features[i], category, p, threshold.unwrap_or(0.5)),
                y[i],
            );
        }
        let fold = k < folds;
        if fold {
            nested.pooled.add_counts(&c);
        }
        nested.pooled_all.add_counts(&c);
        nested.sections.push(NestedSection {
            section: name.clone(),
            chosen: match config {
                Some(c) => format!("{} {}", mode.as_str(), configs[c].name()),
                None => mode.as_str().to_string(),
            },
            threshold,
            counts: c,
            fold,
        });
    }
    (out, nested)
}

/// The row whose pooled counts are best by [`Counts::better`] (the earliest among equals).
pub fn select_loso(rows: &[LosoRow]) -> Option<&LosoRow> {
    let mut best: Option<&LosoRow> = None;
    for r in rows {
        if best.is_none_or(|b| r.pooled.better(&b.pooled)) {
            best = Some(r);
        }
    }
    best
}

// ---------------------------------------------------------------------------------------------
// Shipped models
// ---------------------------------------------------------------------------------------------

/// One category's detector: the choice and, for modes with a model, its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryModel {
    pub choice: Choice,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub weights: Option<Weights>,
}

/// Weights of a logistic regression on the features: `f = bias + dense·x_dense + user·x_user +
/// assistant·x_assistant + window·x_window + lexicon·x_lexicon`, probability `σ(f)` (group
/// weights already folded in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub bias: f64,
    /// One weight per name of [`DENSE_NAMES`].
    pub dense: BTreeMap<String, f64>,
    /// [`BUCKETS`] weights of the user-side buckets.
    pub user: Vec<f64>,
    /// [`BUCKETS`] weights of the assistant-side buckets.
    pub assistant: Vec<f64>,
    /// `2 · BUCKETS` weights of the window group (user side, then assistant side), or none when
    /// the configuration leaves the group out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub window: Vec<f64>,
    /// One weight per name of [`LEXICON_NAMES`].
    pub lexicon: BTreeMap<String, f64>,
}

/// Six significant digits: what the file stores.
fn round(x: f64) -> f64 {
    format!("{x:.5e}").parse().unwrap_or(0.0)
}

/// Train `choice` for `category` on all of `set` (nothing to train for [`Mode::Rules`]).
pub fn train(set: &Labelled, category: Category, choice: Choice) -> CategoryModel {
    let Some(config) = choice.config else {
        return CategoryModel {
            choice,
            weights: None,
        };
    };
    let y: Vec<bool> = set.labels.iter().map(|l| l.is(category)).collect();
    let all: Vec<usize> = (0..y.len()).collect();
    let model = fit(
        &set.gram(&config, &all, &all),
        &y,
        &[(config.lambda, config.positive_weight)],
    );
    let (lex, den) = (config.lexical * config.lexical, config.dense * config.dense);
    let (win, lexi) = (
        config.window * config.window,
        config.lexicon * config.lexicon,
    );
    let mut user = vec![0f64; BUCKETS];
    let mut assistant = vec![0f64; BUCKETS];
    let mut window = vec![0f64; if win > 0.0 { 2 * BUCKETS } else { 0 }];
    let mut dense = [0f64; DENSE];
    let mut lexicon = [0f64; LEXICON];
    for (f, &a) in set.features.iter().zip(&model.alpha) {
        let a = f64::from(a);
        for &(k, x) in &f.user {
            user[k as usize] += lex * a * f64::from(x);
        }
        for &(k, x) in &f.assistant {
            assistant[k as usize] += lex * a * f64::from(x);
        }
        if win > 0.0 {
            for &(k, x) in &f.window {
                window[k as usize] += win * a * f64::from(x);
            }
        }
        for (d, x) in dense.iter_mut().zip(f.dense) {
            *d += den * a * f64::from(x);
        }
        for (d, x) in lexicon.iter_mut().zip(f.lexicon) {
            *d += lexi * a * f64::from(x);
        }
    }
    CategoryModel {
        choice,
        weights: Some(Weights {
            bias: round(model.bias[0]),
            dense: DENSE_NAMES
                .iter()
                .zip(dense)
                .map(|(n, w)| (n.to_string(), round(w)))
                .collect(),
            user: user.into_iter().map(round).collect(),
            assistant: assistant.into_iter().map(round).collect(),
            window: window.into_iter().map(round).collect(),
            lexicon: LEXICON_NAMES
                .iter()
                .zip(lexicon)
                .map(|(n, w)| (n.to_string(), round(w)))
                .collect(),
        }),
    }
}

/// A detector file: the feature version, how it was trained, one model per category, and the
/// cross-validation table behind the choices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorFile {
    pub name: String,
    pub feature_version: u32,
    pub buckets: usize,
    /// Provenance: label file, data file (names and sha256), counts, folds and seeds.
    pub training: BTreeMap<String, serde_json::Value>,
    pub code: CategoryModel,
    pub math: CategoryModel,
    /// The leave-one-section-out table (the selection).
    pub loso: Vec<LosoRow>,
    /// The stratified k-fold table.
    pub cv: Vec<CvRow>,
    /// Per category, the nested leave-one-section-out estimate of the selection (files before
    /// learned-v8 have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nested: Vec<Nested>,
}

impl DetectorFile {
    /// Parse and check a detector file's text (`what` names it in errors).
    pub fn parse(text: &str, what: &str) -> Result<DetectorFile> {
        let file: DetectorFile = serde_json::from_str(text)
            .map_err(|e| Error::invalid(what, format!("not a detector file: {e}")))?;
        if file.feature_version != FEATURE_VERSION || file.buckets != BUCKETS {
            return Err(Error::invalid(
                what,
                format!(
                    "feature version {} with {} buckets; this build computes version {FEATURE_VERSION} with {BUCKETS}",
                    file.feature_version, file.buckets
                ),
            ));
        }
        for (cat, m) in [("code", &file.code), ("math", &file.math)] {
            let ok = match (&m.weights, m.choice.mode) {
                (None, mode) => !mode.uses_model(),
                (Some(w), mode) => {
                    mode.uses_model()
                        && m.choice.threshold.is_some()
                        && w.user.len() == BUCKETS
                        && w.assistant.len() == BUCKETS
                        && DENSE_NAMES.iter().all(|n| w.dense.contains_key(*n))
                        && LEXICON_NAMES.iter().all(|n| w.lexicon.contains_key(*n))
                        && (w.window.is_empty() || w.window.len() == 2 * BUCKETS)
                }
            };
            if !ok {
                return Err(Error::invalid(
                    what,
                    format!("{cat}: weights missing, incomplete or inconsistent with its mode"),
                ));
            }
        }
        Ok(file)
    }

    /// The file's text as written: pretty JSON, one weight array per line.
    pub fn to_text(&self) -> Result<String> {
        let mut value = serde_json::to_value(self).map_err(|e| Error::Internal(e.to_string()))?;
        // Compact the long arrays so that the file stays small and diffable per field.
        let mut compacted = Vec::new();
        for cat in ["code", "math"] {
            for side in ["user", "assistant", "window"] {
                let ptr = format!("/{cat}/weights/{side}");
                if let Some(v) = value.pointer_mut(&ptr) {
                    let key = format!("@@{cat}.{side}@@");
                    compacted.push((format!("\"{key}\""), v.to_string()));
                    *v = serde_json::Value::String(key);
                }
            }
        }
        let mut text =
            serde_json::to_string_pretty(&value).map_err(|e| Error::Internal(e.to_string()))?;
        for (key, array) in compacted {
            text = text.replace(&key, &array);
        }
        text.push('\n');
        Ok(text)
    }

    fn model(&self, category: Category) -> &CategoryModel {
        match category {
            Category::Code => &self.code,
            Category::Math => &self.math,
        }
    }
}

/// The learned detector: a [`DetectorFile`] applied to [`Features`].
pub struct LearnedDetector {
    file: DetectorFile,
    rules: RuleDetector,
    /// The optional feature groups the file's weights use.
    groups: Groups,
}

/// A feature's contribution to a score, for explanations.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// `dense:NAME`, or `user:"ngram"` / `assistant:"ngram"` (an n-gram of the text in that
    /// bucket; a bucket may hold other n-grams too).
    pub feature: String,
    pub value: f64,
}

impl LearnedDetector {
    /// The detector shipped with the binary (`data/ablation/detector-v8.json`).
    pub fn shipped() -> Result<LearnedDetector> {
        Self::from_text(SHIPPED, "the embedded detector-v8.json")
    }

    /// A detector from a file's text (`what` names it in errors).
    pub fn from_text(text: &str, what: &str) -> Result<LearnedDetector> {
        let file = DetectorFile::parse(text, what)?;
        let weights = || {
            Category::ALL
                .into_iter()
                .filter_map(|c| file.model(c).weights.as_ref())
        };
        let groups = Groups {
            window: weights().any(|w| w.window.iter().any(|&x| x != 0.0)),
            lexicon: weights().any(|w| w.lexicon.values().any(|&x| x != 0.0)),
        };
        Ok(LearnedDetector {
            file,
            rules: RuleDetector::default(),
            groups,
        })
    }

    /// The features of `ex` this detector's weights read (the optional groups it leaves out
    /// are not computed).
    pub fn features(&self, ex: &Example) -> Features {
        Features::with_groups(&self.rules, ex, self.groups)
    }

    /// The parsed file.
    pub fn file(&self) -> &DetectorFile {
        &self.file
    }

    /// The model's probability for `category`, `None` for a rules-only category.
    pub fn probability(&self, f: &Features, category: Category) -> Option<f64> {
        let w = self.file.model(category).weights.as_ref()?;
        Some(sigmoid(score(w, f)))
    }

    /// The verdicts and, per detected category, the evidence: the rules that fired and the
    /// model's probability with its top contributions.
    pub fn decide_features(&self, ex: &Example, f: &Features) -> Decision {
        let mut d = Decision::default();
        for cat in Category::ALL {
            let m = self.file.model(cat);
            let p = self.probability(f, cat).unwrap_or(0.0);
            let mode = m.choice.mode;
            if !mode.decide(f, cat, p, m.choice.threshold.unwrap_or(0.5)) {
                continue;
            }
            d.categories.push(cat);
            let model_says = m.weights.is_some() && p >= m.choice.threshold.unwrap_or(0.5);
            if model_says && let Some(w) = &m.weights {
                let top: Vec<String> = contributions(w, f, ex)
                    .into_iter()
                    .take(5)
                    .map(|c| format!("{} {:+.2}", c.feature, c.value))
                    .collect();
                d.evidence.push((
                    cat,
                    format!("model: p={p:.2}; top features {}", top.join(", ")),
                ));
            }
            // The rules the mode reads, where they fired: all of rules-v2's, or for the strict
            // modes on math only the computation rules.
            let (rules_count, only_strict) = match mode {
                Mode::Model => (false, false),
                Mode::Rules | Mode::RulesOrModel | Mode::RulesAndModel => (true, false),
                Mode::Strict | Mode::StrictOrModel | Mode::StrictAndModel => {
                    (f.strict.contains(&cat), cat == Category::Math)
                }
            };
            for (c, e) in &f.rule_evidence {
                let shown = !only_strict || STRICT_MATH_RULES.iter().any(|r| e.starts_with(r));
                if *c == cat && rules_count && shown {
                    d.evidence.push((cat, e.clone()));
                }
            }
        }
        d
    }
}

fn score(w: &Weights, f: &Features) -> f64 {
    let mut s = w.bias;
    for (name, x) in DENSE_NAMES.iter().zip(f.dense) {
        s += w.dense.get(*name).copied().unwrap_or(0.0) * f64::from(x);
    }
    for &(k, x) in &f.user {
        s += w.user[k as usize] * f64::from(x);
    }
    for &(k, x) in &f.assistant {
        s += w.assistant[k as usize] * f64::from(x);
    }
    if !w.window.is_empty() {
        for &(k, x) in &f.window {
            s += w.window[k as usize] * f64::from(x);
        }
    }
    for (name, x) in LEXICON_NAMES.iter().zip(f.lexicon) {
        s += w.lexicon.get(*name).copied().unwrap_or(0.0) * f64::from(x);
    }
    s
}

/// The features of `f` by contribution to the score, largest positive first; hashed buckets
/// are named by the first n-gram of the text that falls in them.
pub fn contributions(w: &Weights, f: &Features, ex: &Example) -> Vec<Contribution> {
    let mut out: Vec<Contribution> = DENSE_NAMES
        .iter()
        .zip(f.dense)
        .map(|(name, x)| Contribution {
            feature: format!("dense:{name}"),
            value: w.dense.get(*name).copied().unwrap_or(0.0) * f64::from(x),
        })
        .chain(
            LEXICON_NAMES
                .iter()
                .zip(f.lexicon)
                .map(|(name, x)| Contribution {
                    feature: format!("lexicon:{name}"),
                    value: w.lexicon.get(*name).copied().unwrap_or(0.0) * f64::from(x),
                }),
        )
        .collect();
    let mut names: [BTreeMap<u32, String>; 2] = [BTreeMap::new(), BTreeMap::new()];
    for t in &ex.turns {
        let side = usize::from(t.role == Role::Assistant);
        let toks = tokens(&t.content);
        for (i, tok) in toks.iter().enumerate() {
            names[side]
                .entry(bucket(&[tok]))
                .or_insert_with(|| tok.clone());
            if i + 1 < toks.len() {
                names[side]
                    .entry(bucket(&[tok, &toks[i + 1]]))
                    .or_insert_with(|| format!("{tok} {}", toks[i + 1]));
            }
        }
    }
    for (side, (pairs, weights, label)) in [
        (&f.user, &w.user, "user"),
        (&f.assistant, &w.assistant, "assistant"),
    ]
    .into_iter()
    .enumerate()
    {
        for &(k, x) in pairs {
            let name = names[side].get(&k).cloned().unwrap_or_default();
            out.push(Contribution {
                feature: format!("{label}:{name:?}"),
                value: weights[k as usize] * f64::from(x),
            });
        }
    }
    if !w.window.is_empty() {
        for &(k, x) in &f.window {
            let (side, b) = if (k as usize) < BUCKETS {
                (0, k)
            } else {
                (1, k - BUCKETS as u32)
            };
            let name = names[side].get(&b).cloned().unwrap_or_default();
            out.push(Contribution {
                feature: format!("window-{}:{name:?}", ["user", "assistant"][side]),
                value: w.window[k as usize] * f64::from(x),
            });
        }
    }
    out.sort_by(|a, b| b.value.total_cmp(&a.value));
    out
}

impl Detector for LearnedDetector {
    fn classify(&self, ex: &Example) -> Vec<Category> {
        self.decide_features(ex, &self.features(ex)).categories
    }

    fn name(&self) -> String {
        self.file.name.clone()
    }

    fn decide(&self, ex: &Example) -> Result<Decision> {
        Ok(self.decide_features(ex, &self.features(ex)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_lowercase_collapse_digits_and_split_symbols() {
        assert_eq!(
            tokens("Solve 2x + 13 = 3.14, Déjà vu!"),
            [
                "solve", "0x", "+", "0", "=", "0", ".", "0", ",", "déjà", "vu", "!"
            ]
        );
        assert!(tokens("  \n ").is_empty());
    }

    #[test]
    fn buckets_are_fnv1a_of_the_ngram() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test vector).
        assert_eq!(
            bucket(&["a"]),
            (0xaf63_dc4c_8601_ec8c_u64 % BUCKETS as u64) as u32
        );
        // A bigram hashes as its two tokens joined by a space.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in "x y".bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(bucket(&["x", "y"]), (h % BUCKETS as u64) as u32);
    }

    #[test]
    fn sides_are_l2_normalised_log_counts() {
        let mut counts = BTreeMap::new();
        count_ngrams("b b", &mut counts);
        // Unigram "b" twice, bigram "b b" once.
        let v = normalise(counts);
        assert_eq!(v.len(), 2);
        let (x, y) = (2f32.ln_1p(), 1f32.ln_1p());
        let norm = (x * x + y * y).sqrt();
        let got: BTreeMap<u32, f32> = v.into_iter().collect();
        assert!((got[&bucket(&["b"])] - x / norm).abs() < 1e-6);
        assert!((got[&bucket(&["b", "b"])] - y / norm).abs() < 1e-6);
    }

    fn conversation(turns: &[(Role, &str)]) -> Example {
        Example {
            id: "x".into(),
            ability: crate::data::Ability::General,
            turns: turns
                .iter()
                .map(|(role, content)| Turn {
                    role: *role,
                    content: content.to_string(),
                })
                .collect(),
            meta: Default::default(),
        }
    }

    #[test]
    fn windows_pool_the_largest_value_and_leave_out_stop_words() {
        let ex = conversation(&[
            (Role::System, "b b"),
            (Role::User, "b b"),
            (Role::Assistant, "the cat"),
            (Role::User, "b"),
            (Role::Assistant, "of the"),
        ]);
        let w = windows(&ex.turns);
        assert_eq!(w, [vec![0, 1, 2], vec![3, 4]]);
        let got: BTreeMap<u32, f32> = window_features(&ex.turns, &w).into_iter().collect();
        // Window 1: user "b" 4 times, "b b" twice (the bigram does not cross turns);
        // assistant "cat" and "the cat" once ("the" alone is a stop word).
        let (b4, bb2, one) = (4f32.ln_1p(), 2f32.ln_1p(), 1f32.ln_1p());
        let norm = (b4 * b4 + bb2 * bb2 + 2.0 * one * one).sqrt();
        let a = BUCKETS as u32;
        // Window 2: user "b" once (norm 1); "of the" is all stop words.
        assert!((got[&bucket(&["b"])] - 1.0).abs() < 1e-6);
        assert!((got[&bucket(&["b", "b"])] - bb2 / norm).abs() < 1e-6);
        assert!((got[&(a + bucket(&["cat"]))] - one / norm).abs() < 1e-6);
        assert!((got[&(a + bucket(&["the", "cat"]))] - one / norm).abs() < 1e-6);
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn lexicon_features_take_the_largest_window() {
        let ex = conversation(&[
            (Role::User, "Tell me a story."),
            (Role::Assistant, "Once upon a time."),
            (
                Role::User,
                "Can you calculate the area of a circle with radius 3?",
            ),
            (
                Role::Assistant,
                "The area is 3.14 * 3 * 3 = 28.26 `x = 1 + 2`.",
            ),
        ]);
        let f = Features::of(&RuleDetector::default(), &ex).lexicon;
        let at = |name: &str| f[LEXICON_NAMES.iter().position(|n| *n == name).unwrap()];
        let ln = |x: f32| x.ln_1p();
        assert_eq!(at("geometry-words"), ln(4.0)); // area, circle, radius, area
        assert_eq!(at("computation-words"), ln(1.0));
        assert_eq!(at("probability-words"), 0.0);
        // "calculate … 3" in the question, "area is 3" in the answer.
        assert_eq!(at("math-word-near-number"), ln(2.0));
        // `3.14 * 3` (matches do not overlap; the inline code span is not read); one equation.
        assert_eq!(at("digit-op-digit"), ln(1.0));
        assert_eq!(at("equations"), ln(1.0));
        assert_eq!(at("question-near-number"), ln(1.0));
    }

    #[test]
    fn fit_separates_a_separable_problem_and_is_deterministic() {
        // One-dimensional points: positives at +1.., negatives at -1..; linear kernel.
        let x: Vec<f32> = vec![1.0, 2.0, 1.5, -1.0, -2.0, -0.5, -1.5, -3.0];
        let y: Vec<bool> = x.iter().map(|v| *v > 0.0).collect();
        let n = x.len();
        let gram: Vec<f32> = (0..n * n).map(|k| x[k / n] * x[k % n]).collect();
        let a = fit(&gram, &y, &[(1e-3, 0.5)]);
        let b = fit(&gram, &y, &[(1e-3, 0.5)]);
        assert_eq!(a.alpha, b.alpha);
        assert_eq!(a.bias, b.bias);
        let w: f64 = a.alpha.iter().zip(&x).map(|(a, x)| f64::from(a * x)).sum();
        assert!(w > 0.0);
        for (xi, yi) in x.iter().zip(&y) {
            let p = sigmoid(w * f64::from(*xi) + a.bias[0]);
            assert_eq!(p >= 0.5, *yi, "x = {xi}: p = {p}");
        }
        // One class only: a constant model that predicts it.
        let c = fit(&gram, &[false; 8], &[(1e-3, 0.5)]);
        assert!(sigmoid(c.bias[0]) < 1e-3 && c.alpha.iter().all(|a| *a == 0.0));
    }

    #[test]
    fn models_fitted_together_match_models_fitted_alone() {
        // Overlapping classes, so that the class weights matter.
        let x: Vec<f32> = vec![1.0, 2.0, 0.2, -0.3, -1.0, -2.0, 0.1, -1.5, -3.0, 0.4];
        let y = [
            true, true, true, true, false, false, false, false, false, false,
        ];
        let n = x.len();
        let gram: Vec<f32> = (0..n * n).map(|k| x[k / n] * x[k % n]).collect();
        let penalties = [(1e-3, 0.5), (1e-2, 0.5), (1e-3, 0.8)];
        let together = fit(&gram, &y, &penalties);
        assert_eq!(together.models(), 3);
        let mut mean_p = Vec::new();
        for (c, &p) in penalties.iter().enumerate() {
            let alone = fit(&gram, &y, &[p]);
            let col: Vec<f32> = (0..n).map(|i| together.alpha[i * 3 + c]).collect();
            for (a, b) in col.iter().zip(&alone.alpha) {
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                    "model {c}: {a} vs {b}"
                );
            }
            assert!((together.bias[c] - alone.bias[0]).abs() < 1e-5);
            let w: f64 = col.iter().zip(&x).map(|(a, x)| f64::from(a * x)).sum();
            let m: f64 = x
                .iter()
                .map(|xi| sigmoid(w * f64::from(*xi) + together.bias[c]))
                .sum::<f64>()
                / n as f64;
            mean_p.push(m);
        }
        // More weight on the positives raises the probabilities.
        assert!(mean_p[2] > mean_p[0], "{mean_p:?}");
    }

    #[test]
    fn folds_are_stratified_and_seeded() {
        let y: Vec<bool> = (0..50).map(|i| i % 5 == 0).collect();
        let f = folds(&y, 5, 1);
        for k in 0..5 {
            let pos = (0..50).filter(|&i| f[i] == k && y[i]).count();
            let all = (0..50).filter(|&i| f[i] == k).count();
            assert_eq!((pos, all), (2, 10));
        }
        assert_eq!(f, folds(&y, 5, 1));
        assert_ne!(f, folds(&y, 5, 2));
    }

    #[test]
    fn precision_recall_f1() {
        let [p, r, f] = prf([(true, true), (true, false), (false, true), (true, true)].into_iter());
        assert!((p - 2.0 / 3.0).abs() < 1e-12 && (r - 2.0 / 3.0).abs() < 1e-12);
        assert!((f - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(prf([(false, false)].into_iter()), [0.0, 0.0, 0.0]);
    }

    #[test]
    fn selection_maximises_the_smaller_of_precision_and_recall() {
        let c = |tp, fp, fn_| Counts { tp, fp, fn_ };
        // F1 prefers the first (P 1.0, R 0.7: F1 0.82) to the second (P 0.8, R 0.8: F1 0.80);
        // the criterion prefers the second.
        let (lopsided, balanced) = (c(7, 0, 3), c(8, 2, 2));
        assert!(lopsided.f1() > balanced.f1());
        assert!(balanced.better(&lopsided) && !lopsided.better(&balanced));
        // Equal min(P, R): the higher F1 wins; equal counts do not beat each other.
        assert!(c(8, 2, 1).better(&c(8, 2, 2)));
        assert!(!c(8, 2, 2).better(&c(8, 2, 2)));
        assert_eq!(c(0, 0, 0).min_pr(), 0.0);
    }

    #[test]
    fn pairs_of_sections_reproduce_the_inner_leave_section_out() {
        let rules = RuleDetector::default();
        let (mut examples, mut labels) = (Vec::new(), Vec::new());
        for i in 0..16 {
            let math = i % 2 == 0;
            let text = if math {
                format!("What is {i} + 7? It is {i} + 7 = {}.", i + 7)
            } else {
                format!("Tell me a story about a cat called number {i}.")
            };
            examples.push(Example {
                id: format!("c{i}"),
                ability: crate::data::Ability::General,
                turns: vec![Turn {
                    role: Role::User,
                    content: text,
                }],
                meta: Default::default(),
            });
            labels.push(Label {
                id: format!("c{i}"),
                code: false,
                math,
                section: format!("s{}", i / 4),
            });
        }
        let (set, missing) = Labelled::new(&rules, labels, &examples);
        assert!(missing.is_empty());
        let y: Vec<bool> = set.labels.iter().map(|l| l.math).collect();
        // s3 is always in training: the folds are s0, s1 and s2.
        let names: Vec<String> = sections(&set).into_iter().take(3).collect();
        let config = Config {
            lexical: 1.0,
            dense: 1.0,
            window: 1.0,
            lexicon: 1.0,
            lambda: 1e-3,
            positive_weight: EQUAL_WEIGHT,
        };
        let inner = inner_probs(&set, &y, &[config], &names, names.len()).remove(0);
        for (k, name) in names.iter().enumerate() {
            let rest: Vec<usize> = (0..y.len())
                .filter(|&i| set.labels[i].section != *name)
                .collect();
            let others: Vec<String> = names.iter().filter(|s| *s != name).cloned().collect();
            let mut want = leave_section_out_probs(&set, &y, &[config], &rest, &others).remove(0);
            let mut got = inner[k].clone();
            want.sort_by_key(|p| p.0);
            got.sort_by_key(|p| p.0);
            // The rows of the two other folds, none of the always-trained section.
            assert_eq!(got.len(), 8);
            assert!(got.iter().all(|(i, _)| set.labels[*i].section != "s3"));
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.0, w.0);
                assert!((g.1 - w.1).abs() < 1e-6, "{name}: {g:?} vs {w:?}");
            }
        }
        // With s3 judged too (the nested estimate): the folds' inner scores are unchanged once
        // s3's rows are dropped, and s3's are the folds' rows, each from a model trained
        // without s3 and without the row's own section.
        let outer: Vec<String> = sections(&set);
        assert_eq!(outer.len(), 4);
        let with_s3 = inner_probs(&set, &y, &[config], &outer, 3).remove(0);
        let sorted = |mut v: Vec<(usize, f64)>| {
            v.sort_by_key(|p| p.0);
            v
        };
        for k in 0..3 {
            let got = sorted(fold_rows_only(&set, &outer, 3, &with_s3[k]));
            assert_eq!(got, sorted(inner[k].clone()), "{}", names[k]);
        }
        let rest: Vec<usize> = (0..y.len())
            .filter(|&i| set.labels[i].section != "s3")
            .collect();
        let want = sorted(leave_section_out_probs(&set, &y, &[config], &rest, &names).remove(0));
        let got = sorted(with_s3[3].clone());
        assert_eq!(got.len(), 12);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.0, w.0);
            assert!((g.1 - w.1).abs() < 1e-6, "s3: {g:?} vs {w:?}");
        }
    }

    #[test]
    fn modes_combine_rules_and_model() {
        assert!(Mode::RulesOrModel.verdict(true, 0.1, 0.5));
        assert!(Mode::RulesOrModel.verdict(false, 0.6, 0.5));
        assert!(!Mode::RulesAndModel.verdict(true, 0.4, 0.5));
        assert!(Mode::RulesAndModel.verdict(true, 0.5, 0.5));
        assert!(!Mode::Model.verdict(true, 0.2, 0.5));
        assert!(Mode::Rules.verdict(true, 0.0, 0.5));
        assert!(Mode::StrictOrModel.verdict(false, 0.6, 0.5));
        assert!(!Mode::StrictAndModel.verdict(true, 0.4, 0.5));
        assert!(Mode::WITH_MODEL.iter().all(|m| m.uses_model()));
        assert!(!Mode::Strict.uses_model() && !Mode::Rules.uses_model());
    }

    #[test]
    fn strict_math_needs_computation_evidence() {
        let ev = |v: &[(Category, &str)]| -> Vec<(Category, String)> {
            v.iter().map(|(c, s)| (*c, s.to_string())).collect()
        };
        // Vocabulary, notation and LaTeX alone do not count.
        assert!(!strict_math(&ev(&[
            (Category::Math, "math-terms: 3 distinct"),
            (Category::Math, "algebra: 2 algebraic notations"),
            (Category::Math, "latex-math: 2 LaTeX math commands"),
        ])));
        assert!(strict_math(&ev(&[(
            Category::Math,
            "worked-arithmetic: 2 calculations"
        )])));
        assert!(strict_math(&ev(&[(
            Category::Math,
            "word-problem: \"how many\""
        )])));
        // Inside a code conversation only worked arithmetic counts.
        let code = (Category::Code, "fenced-code: 3 lines");
        assert!(!strict_math(&ev(&[
            code,
            (Category::Math, "word-problem: \"x\"")
        ])));
        assert!(strict_math(&ev(&[
            code,
            (Category::Math, "worked-arithmetic: 4")
        ])));
    }

    #[test]
    fn computation_features_read_prose_not_code() {
        let rules = RuleDetector::default();
        let ex = |text: &str| Example {
            id: "x".into(),
            ability: crate::data::Ability::General,
            turns: vec![
                Turn {
                    role: Role::User,
                    content: "How many apples are left if I have 12 and eat 5?".into(),
                },
                Turn {
                    role: Role::Assistant,
                    content: text.into(),
                },
            ],
            meta: Default::default(),
        };
        let at = |name: &str| DENSE_NAMES.iter().position(|n| *n == name).unwrap();
        let prose = Features::of(&rules, &ex("12 - 5 = 7 apples, and 7 * 2 = 14."));
        let code = Features::of(&rules, &ex("```\ny = 12 - 5 = 7\nz = 7 * 2 = 14\n```"));
        assert_eq!(prose.dense[at("prose-equations")], 2f32.ln_1p());
        assert_eq!(code.dense[at("prose-equations")], 0.0);
        assert_eq!(
            prose.dense[at("prose-max-turn-digit-op-digit")],
            2f32.ln_1p()
        );
        assert_eq!(prose.dense[at("question-near-number")], 1f32.ln_1p());
        // Both conversations have the same total digit-operator-digit count.
        assert_eq!(
            prose.dense[at("digit-op-digit")],
            code.dense[at("digit-op-digit")]
        );
    }

    #[test]
    fn label_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.tsv");
        // The last `#` line is a wrapped comment sentence, as in ablation_labels_blind6.tsv; it
        // must not rename the section of the label after it.
        std::fs::write(
            &p,
            "# c\n# section s1\na\t1\t0\n# section s2\n# section has an empty turn, or no id\nb\t0\t1\n",
        )
        .unwrap();
        let l = read_labels(&p).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].code, l[0].math, l[0].section.as_str()),
            (true, false, "s1")
        );
        assert_eq!(
            (l[1].code, l[1].math, l[1].section.as_str()),
            (false, true, "s2")
        );
        for (text, want) in [
            ("a\t1\n", "line 1"),
            ("a\t1\t2\n", "math: expected 0 or 1"),
            ("a\t1\t0\na\t0\t0\n", "duplicate id"),
            ("# only comments\n", "no labels"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = read_labels(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_shipped_file_parses_and_bad_files_are_refused() {
        let d = LearnedDetector::shipped().unwrap();
        assert_eq!(d.name(), NAME);
        let text = d.file().to_text().unwrap();
        assert_eq!(DetectorFile::parse(&text, "x").unwrap(), *d.file());
        let bad = SHIPPED.replacen("\"feature_version\": 3", "\"feature_version\": 99", 1);
        let e = DetectorFile::parse(&bad, "f.json").unwrap_err().to_string();
        assert!(
            e.contains("f.json") && e.contains("feature version 99"),
            "{e}"
        );
        assert!(DetectorFile::parse("{}", "f.json").is_err());
    }

    #[test]
    fn a_detector_computes_only_the_groups_its_weights_read() {
        let shipped = LearnedDetector::shipped().unwrap();
        // learned-v7's choices use neither optional group.
        assert_eq!(
            shipped.groups,
            Groups {
                window: false,
                lexicon: false
            }
        );
        let ex = Example {
            id: "x".into(),
            ability: crate::data::Ability::General,
            turns: vec![
                Turn {
                    role: Role::User,
                    content: "What is the area of a circle of radius 3? Then write it in Python."
                        .into(),
                },
                Turn {
                    role: Role::Assistant,
                    content: "Area = pi * 3^2 = 28.27.\n```python\nimport math\nprint(math.pi * 3 ** 2)\n```"
                        .into(),
                },
            ],
            meta: Default::default(),
        };
        let all = Features::of(&shipped.rules, &ex);
        let read = shipped.features(&ex);
        assert!(!all.window.is_empty() && all.lexicon.iter().any(|&x| x > 0.0));
        assert!(read.window.is_empty() && read.lexicon == [0.0; LEXICON]);
        assert_eq!(
            shipped.decide_features(&ex, &all),
            shipped.decide_features(&ex, &read)
        );
        // A file whose weights read the lexicon makes the detector compute it.
        let mut file = shipped.file().clone();
        if let Some(w) = file.math.weights.as_mut() {
            w.lexicon.insert("geometry-words".into(), 0.5);
        }
        let d = LearnedDetector::from_text(&file.to_text().unwrap(), "x").unwrap();
        assert_eq!(
            d.groups,
            Groups {
                window: false,
                lexicon: true
            }
        );
        assert_eq!(d.features(&ex).lexicon, all.lexicon);
    }
}
