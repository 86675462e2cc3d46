//! The held-out general evaluation items and their rule-based scorer.
//!
//! Each item is one line of `sharegpt/eval.jsonl`: a ShareGPT record (`id`, `conversations`) whose
//! last `gpt` turn is the reference answer to the scored (last) `human` turn, plus `flavour`,
//! `task` and the checking `rule`. The rule is data, so scoring never depends on regenerating.
//!
//! # Rubric (1 = empty or unrelated, 10 = fully correct)
//! Every rule first normalizes the reply: trimmed, wrapping quotes/backticks removed, runs of
//! whitespace (newlines included) collapsed to one space.
//! - `exact` (`expected`, `case_sensitive`): 10 if the reply equals `expected` (a trailing `.`
//!   ignored); 9 if `expected` appears in it as a whole-token span; otherwise 1 + round(7·F), where
//!   F is the F1 of the longest common token subsequence of reply and `expected` (order matters,
//!   so an unreversed or unsorted echo scores low); case-folded unless `case_sensitive`.
//! - `number` (`expected`): integers are read from the reply (thousands commas allowed). 10 if
//!   the last one equals `expected`; 6 if an earlier one does; 3 if the last is within 10% (at
//!   least ±1); 2 for another number; 1 for no number.
//! - `choice` (`expected`, `options`): the options named in the reply (case-insensitive, whole
//!   words). 10 if only `expected`; 5 if `expected` and others (hedging); 2 if only wrong ones;
//!   1 if none.
//! - `list` (`count`, `allowed`): items are the bullet lines (`-`, `*`, `1.`) or else the comma
//!   separated parts. 10 if exactly `count` distinct allowed items; otherwise
//!   1 + round(7·f) with f = min(distinct allowed, count)/count, minus 1 if the item count is
//!   wrong, within 1..=9.
//! - `words` (`count`, `topic`): 10, minus 4 if the topic word (or its plural) is missing, minus
//!   2 per word away from `count` (at most 5); an empty reply is 1.
use crate::data::example::{Ability, Example, Meta, Turn};
use crate::error::{Error, Location, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// Whether a general conversation is code-flavoured, math-flavoured or neither (the ground truth
/// for the ShareGPT code/math ablation detector).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// Neither code nor math (serialized as `"none"`).
    #[serde(rename = "none")]
    Plain,
    Code,
    Math,
}

impl Flavour {
    pub const ALL: [Flavour; 3] = [Flavour::Plain, Flavour::Code, Flavour::Math];
    /// The label written to `labels.json` and the eval file.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Plain => "none",
            Flavour::Code => "code",
            Flavour::Math => "math",
        }
    }
}

/// How a reply to a general evaluation item is checked (see the module docs for the rubric).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// A transformation with one right answer.
    Exact {
        expected: String,
        case_sensitive: bool,
    },
    /// An integer answer (the last number in the reply).
    Number { expected: i64 },
    /// One of a closed set of answers.
    Choice {
        expected: String,
        options: Vec<String>,
    },
    /// `count` distinct items from `allowed`.
    List { count: usize, allowed: Vec<String> },
    /// A sentence of exactly `count` words mentioning `topic`.
    Words { count: usize, topic: String },
}

/// One ShareGPT message: `from` is `human` or `gpt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: String,
    pub value: String,
}

impl Message {
    pub fn human(value: impl Into<String>) -> Self {
        Message {
            from: "human".into(),
            value: value.into(),
        }
    }
    pub fn gpt(value: impl Into<String>) -> Self {
        Message {
            from: "gpt".into(),
            value: value.into(),
        }
    }
}

/// A held-out general evaluation item (one line of `sharegpt/eval.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneralEvalItem {
    pub id: String,
    /// Alternating human/gpt turns; the last `gpt` turn is the reference answer to the scored turn.
    pub conversations: Vec<Message>,
    pub flavour: Flavour,
    /// The task family (e.g. `uppercase`, `world_lookup`, `arithmetic`).
    pub task: String,
    pub rule: Rule,
}

impl GeneralEvalItem {
    /// The turns a model sees before its reply: every turn but the final reference.
    pub fn prompt_turns(&self) -> Vec<Turn> {
        let n = self.conversations.len().saturating_sub(1);
        self.conversations[..n].iter().map(to_turn).collect()
    }

    /// The reference answer (the final `gpt` turn).
    pub fn reference(&self) -> &str {
        self.conversations
            .last()
            .map(|m| m.value.as_str())
            .unwrap_or("")
    }

    /// The item as a general [`Example`] (reference as the last assistant turn, the task as
    /// category, the flavour as label).
    pub fn to_example(&self) -> Example {
        Example {
            id: self.id.clone(),
            ability: Ability::General,
            turns: self.conversations.iter().map(to_turn).collect(),
            meta: Meta {
                reference: Some(self.reference().to_string()),
                category: Some(self.task.clone()),
                labels: vec![self.flavour.as_str().to_string()],
                ..Meta::default()
            },
        }
    }

    /// Why the item is unusable, if it is.
    fn problem(&self) -> Option<String> {
        if self.id.trim().is_empty() {
            return Some("empty id".into());
        }
        let n = self.conversations.len();
        if n < 2 || !n.is_multiple_of(2) {
            return Some(format!(
                "expected alternating human/gpt turns ending with gpt, got {n} turn(s)"
            ));
        }
        for (i, m) in self.conversations.iter().enumerate() {
            let want = if i % 2 == 0 { "human" } else { "gpt" };
            if m.from != want {
                return Some(format!(
                    "turn {i}: expected from={want:?}, got {:?}",
                    m.from
                ));
            }
        }
        match &self.rule {
            Rule::Exact { expected, .. } if norm(expected).is_empty() => {
                Some("exact rule with empty expected".into())
            }
            Rule::Choice { expected, options }
                if !options.iter().any(|o| o.eq_ignore_ascii_case(expected)) =>
            {
                Some(format!(
                    "choice rule: expected {expected:?} is not among the options"
                ))
            }
            Rule::List { count, allowed } if *count == 0 || allowed.len() < *count => {
                Some(format!(
                    "list rule: count {count} with {} allowed item(s)",
                    allowed.len()
                ))
            }
            Rule::Words { count, topic } if *count == 0 || topic.trim().is_empty() => {
                Some("words rule needs a positive count and a topic".into())
            }
            _ => None,
        }
    }
}

fn to_turn(m: &Message) -> Turn {
    if m.from == "human" {
        Turn::user(m.value.clone())
    } else {
        Turn::assistant(m.value.clone())
    }
}

/// Score a model reply to a general evaluation item, 1..=10 (rubric in the module docs).
pub fn score_general(item: &GeneralEvalItem, reply: &str) -> u8 {
    item.rule.score(reply)
}

impl Rule {
    /// Score a reply under this rule, 1..=10.
    pub fn score(&self, reply: &str) -> u8 {
        let r = norm(reply);
        if r.is_empty() {
            return 1;
        }
        match self {
            Rule::Exact {
                expected,
                case_sensitive,
            } => score_exact(&r, expected, *case_sensitive),
            Rule::Number { expected } => score_number(&r, *expected),
            Rule::Choice { expected, options } => score_choice(&r, expected, options),
            Rule::List { count, allowed } => score_list(reply, *count, allowed),
            Rule::Words { count, topic } => score_words(&r, *count, topic),
        }
    }
}

/// Trim, drop wrapping quotes/backticks, collapse whitespace.
fn norm(s: &str) -> String {
    let mut t = s.trim();
    loop {
        let stripped = ['"', '\'', '`']
            .iter()
            .find_map(|&q| t.strip_prefix(q).and_then(|x| x.strip_suffix(q)))
            .map(str::trim);
        match stripped {
            Some(x) if x.len() < t.len() => t = x,
            _ => break,
        }
    }
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn fold(s: &str, case_sensitive: bool) -> String {
    if case_sensitive {
        s.to_string()
    } else {
        s.to_lowercase()
    }
}

fn score_exact(reply: &str, expected: &str, case_sensitive: bool) -> u8 {
    let r = fold(reply, case_sensitive);
    let e = fold(&norm(expected), case_sensitive);
    if r == e || r.strip_suffix('.').is_some_and(|x| x.trim_end() == e) {
        return 10;
    }
    let rt: Vec<&str> = r.split(' ').map(trim_punct).collect();
    let et: Vec<&str> = e.split(' ').map(trim_punct).collect();
    if et.len() <= rt.len() && rt.windows(et.len()).any(|w| w == et.as_slice()) {
        return 9;
    }
    let lcs = lcs_len(&rt, &et) as f64;
    let f1 = if lcs == 0.0 {
        0.0
    } else {
        2.0 * lcs / (rt.len() + et.len()) as f64
    };
    1 + (7.0 * f1).round() as u8
}

/// Strip sentence punctuation around a token (keeps inner punctuation like `-n` or `a.txt`).
fn trim_punct(t: &str) -> &str {
    t.trim_end_matches(['.', ',', '!', '?', ':', ';'])
}

fn lcs_len(a: &[&str], b: &[&str]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    for x in a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Integers in a text, in order (`1,234` reads as 1234; a `-` directly before a digit is a sign).
fn numbers(s: &str) -> Vec<i64> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let neg = i > 0 && b[i - 1] == b'-' && (i < 2 || !b[i - 2].is_ascii_alphanumeric());
            let mut v: i64 = 0;
            while i < b.len() {
                if b[i].is_ascii_digit() {
                    v = v.saturating_mul(10).saturating_add(i64::from(b[i] - b'0'));
                } else if !(b[i] == b',' && is_thousands_group(&b[i + 1..])) {
                    break;
                }
                i += 1;
            }
            out.push(if neg { -v } else { v });
        } else {
            i += 1;
        }
    }
    out
}

/// Whether `rest` (the bytes after a comma) starts with exactly three digits.
fn is_thousands_group(rest: &[u8]) -> bool {
    rest.len() >= 3
        && rest[..3].iter().all(u8::is_ascii_digit)
        && rest.get(3).is_none_or(|c| !c.is_ascii_digit())
}

fn score_number(reply: &str, expected: i64) -> u8 {
    let nums = numbers(reply);
    let Some(&last) = nums.last() else { return 1 };
    if last == expected {
        10
    } else if nums.contains(&expected) {
        6
    } else if (last - expected).abs() <= (expected.abs() / 10).max(1) {
        3
    } else {
        2
    }
}

/// Whether `word` occurs in `text` as a whole word (case-insensitive; both already lowercase).
fn has_word(text: &str, word: &str) -> bool {
    let tb = text.as_bytes();
    let mut from = 0;
    while let Some(p) = text[from..].find(word) {
        let s = from + p;
        let e = s + word.len();
        let left = s == 0 || !tb[s - 1].is_ascii_alphanumeric();
        let right = e == tb.len() || !tb[e].is_ascii_alphanumeric();
        if left && right {
            return true;
        }
        from = s + 1;
    }
    false
}

fn score_choice(reply: &str, expected: &str, options: &[String]) -> u8 {
    let r = reply.to_lowercase();
    let named: HashSet<String> = options
        .iter()
        .map(|o| o.to_lowercase())
        .filter(|o| has_word(&r, o))
        .collect();
    let exp = expected.to_lowercase();
    match (named.contains(&exp), named.len()) {
        (true, 1) => 10,
        (true, _) => 5,
        (false, 0) => 1,
        (false, _) => 2,
    }
}

/// The items of a list reply: bullet lines if there are any, else comma-separated parts.
fn list_items(reply: &str) -> Vec<String> {
    let clean = |s: &str| trim_punct(s.trim()).trim().to_lowercase();
    let bullets: Vec<String> = reply
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            l.strip_prefix("- ")
                .or_else(|| l.strip_prefix("* "))
                .or_else(|| {
                    let d = l.find(|c: char| !c.is_ascii_digit())?;
                    if d > 0 {
                        l[d..].strip_prefix(". ")
                    } else {
                        None
                    }
                })
        })
        .map(clean)
        .collect();
    if !bullets.is_empty() {
        return bullets;
    }
    reply
        .split([',', '\n'])
        .flat_map(|p| p.split(" and "))
        .map(clean)
        .filter(|s| !s.is_empty())
        .collect()
}

fn score_list(reply: &str, count: usize, allowed: &[String]) -> u8 {
    let items = list_items(reply);
    let allowed: HashSet<String> = allowed.iter().map(|a| a.to_lowercase()).collect();
    let good: HashSet<&String> = items.iter().filter(|i| allowed.contains(*i)).collect();
    let count_ok = items.len() == count;
    if count_ok && good.len() == count {
        return 10;
    }
    let f = good.len().min(count) as f64 / count as f64;
    let s = 1 + (7.0 * f).round() as i32 - i32::from(!count_ok);
    s.clamp(1, 9) as u8
}

fn score_words(reply: &str, count: usize, topic: &str) -> u8 {
    let words: Vec<String> = reply
        .split(' ')
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return 1;
    }
    let t = topic.to_lowercase();
    let plural = format!("{t}s");
    let mut s = 10i32;
    if !words.iter().any(|w| *w == t || *w == plural) {
        s -= 4;
    }
    s -= (2 * words.len().abs_diff(count)).min(5) as i32;
    s.clamp(1, 10) as u8
}

/// Read a general evaluation file (JSON Lines of [`GeneralEvalItem`]). Every malformed line is
/// reported (count and first) and the file fails; ids must be unique.
pub fn load_general_eval(path: &Path) -> Result<Vec<GeneralEvalItem>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut items = Vec::new();
    let mut bad: Vec<Error> = Vec::new();
    let mut ids = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let loc = Location::Line(i + 1);
        match serde_json::from_str::<GeneralEvalItem>(line) {
            Err(e) => bad.push(Error::record(
                path,
                loc,
                format!("not a general eval item: {e}"),
            )),
            Ok(item) => {
                if let Some(p) = item.problem() {
                    bad.push(Error::record(path, loc, p));
                } else if !ids.insert(item.id.clone()) {
                    bad.push(Error::record(
                        path,
                        loc,
                        format!("duplicate id {:?}", item.id),
                    ));
                } else {
                    items.push(item);
                }
            }
        }
    }
    match bad.len() {
        0 if items.is_empty() => Err(Error::file(path, "no general eval items")),
        0 => Ok(items),
        1 => Err(bad.remove(0)),
        count => Err(Error::Records {
            path: path.to_path_buf(),
            count,
            first: bad[0].to_string(),
            skippable: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn exact_rubric() {
        let r = Rule::Exact {
            expected: "fox red the".into(),
            case_sensitive: false,
        };
        assert_eq!(r.score("fox red the"), 10);
        assert_eq!(r.score("`Fox red the.`"), 10);
        assert_eq!(r.score("Reversed: fox red the."), 9);
        // LCS of the unreversed echo is 1 token: F1 = 2/6, 1 + round(7/3) = 3.
        assert_eq!(r.score("the red fox"), 3);
        assert_eq!(r.score("banana"), 1);
        assert_eq!(r.score("   "), 1);
        let cs = Rule::Exact {
            expected: "HELLO WORLD".into(),
            case_sensitive: true,
        };
        assert_eq!(cs.score("hello world"), 1);
        assert_eq!(cs.score("HELLO WORLD"), 10);
    }

    #[test]
    fn number_rubric() {
        let r = Rule::Number { expected: 1234 };
        assert_eq!(r.score("The answer is 1,234."), 10);
        assert_eq!(r.score("1234 is 12 more than 1222"), 6);
        assert_eq!(r.score("about 1200"), 3);
        assert_eq!(r.score("7"), 2);
        assert_eq!(r.score("no idea"), 1);
        assert_eq!(
            numbers("x-3 and -4, 1,2,3 5,000"),
            vec![3, -4, 1, 2, 3, 5000]
        );
    }

    #[test]
    fn choice_list_words_rubric() {
        let c = Rule::Choice {
            expected: "even".into(),
            options: s(&["even", "odd"]),
        };
        assert_eq!(c.score("14 is even."), 10);
        assert_eq!(c.score("even or odd"), 5);
        assert_eq!(c.score("It is odd"), 2);
        assert_eq!(c.score("eventually"), 1);
        let l = Rule::List {
            count: 3,
            allowed: s(&["apple", "pear", "fig", "plum"]),
        };
        assert_eq!(l.score("- apple\n- fig\n- pear"), 10);
        assert_eq!(l.score("apple, fig and pear."), 10);
        assert_eq!(l.score("- apple\n- apple\n- pear"), 6);
        assert_eq!(l.score("- apple"), 2);
        assert_eq!(l.score("hello"), 1);
        let w = Rule::Words {
            count: 5,
            topic: "cat".into(),
        };
        assert_eq!(w.score("The small cat is quiet."), 10);
        assert_eq!(w.score("The small cats are very quiet."), 8);
        assert_eq!(w.score("The small dog is quiet."), 6);
        assert_eq!(w.score("no"), 1);
    }
}
