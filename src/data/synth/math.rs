//! Multi-step arithmetic word problems in GSM8K format: a question of 2–3 sentences and an answer
//! with one line per step, each with a `<<a op b=c>>` calculation, ending `#### N`.
//!
//! A problem is a start quantity followed by operations (buy more groups, receive, give away,
//! give half away, double) and a closing question (how many now, the money from selling all, the
//! equal share per friend); 2–4 calculations in all. The item's *key* is its structure and
//! numbers without names or things, so a held-out problem is a new combination, not a renaming.
use super::vocab::{PEOPLE, THINGS};
use crate::util::Rng;
use rand::Rng as _;
use rand::seq::IndexedRandom;

/// One GSM8K-format problem.
pub(super) struct MathItem {
    pub question: String,
    pub answer: String,
    /// Structure and numbers (no names), for the train/held-out split.
    pub key: String,
}

/// The person and things a problem is about.
struct Story {
    name: &'static str,
    subj: &'static str,
    poss: &'static str,
    friend: &'static str,
    plural: &'static str,
    single: &'static str,
    container: &'static str,
}

/// A calculation step `a op b = c` rendered as GSM8K working.
fn calc(a: i64, op: char, b: i64, c: i64) -> String {
    format!("{a} {op} {b} = <<{a}{op}{b}={c}>>{c}")
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// Draw one problem.
pub(super) fn draw(rng: &mut Rng) -> MathItem {
    let &(name, subj, poss) = PEOPLE.choose(rng).unwrap_or(&PEOPLE[0]);
    let friends: Vec<&str> = PEOPLE.iter().map(|p| p.0).filter(|f| *f != name).collect();
    let friend = friends.choose(rng).copied().unwrap_or("a friend");
    let &(plural, single, container) = THINGS.choose(rng).unwrap_or(&THINGS[0]);
    let st = Story {
        name,
        subj,
        poss,
        friend,
        plural,
        single,
        container,
    };
    let target = rng.random_range(2..=4);

    let mut key = Vec::new();
    let mut lines = Vec::new();
    let mut steps = 0;
    let mut v: i64;
    let intro = if rng.random_bool(0.5) {
        let (k, m) = (rng.random_range(2..=6), rng.random_range(3..=12));
        v = k * m;
        steps += 1;
        key.push(format!("g{k}x{m}"));
        lines.push(format!(
            "{} starts with {} {}.",
            st.name,
            calc(k, '*', m, v),
            st.plural
        ));
        format!(
            "{} buys {k} {} with {m} {} in each.",
            st.name, st.container, st.plural
        )
    } else {
        v = rng.random_range(6..=60);
        key.push(format!("s{v}"));
        format!("{} has {v} {}.", st.name, st.plural)
    };

    let mut clauses = Vec::new();
    let mut question = None;
    while steps < target {
        let left = target - steps;
        let mut ops: Vec<u8> = vec![1, 2];
        if left >= 2 {
            ops.push(0);
        }
        if v % 2 == 0 {
            ops.push(3);
        }
        if v <= 200 {
            ops.push(4);
        }
        if left == 1 {
            ops.extend([5, 6]);
        }
        let op = *ops.choose(rng).unwrap_or(&1);
        match op {
            0 => {
                let (k, m) = (rng.random_range(2..=5), rng.random_range(2..=10));
                let p = k * m;
                key.push(format!("+g{k}x{m}"));
                clauses.push(format!(
                    "buys {k} more {} with {m} {} in each",
                    st.container, st.plural
                ));
                lines.push(format!(
                    "The {} hold {} {}.",
                    st.container,
                    calc(k, '*', m, p),
                    st.plural
                ));
                lines.push(format!(
                    "Now {} has {} {}.",
                    st.subj,
                    calc(v, '+', p, v + p),
                    st.plural
                ));
                v += p;
                steps += 2;
            }
            1 => {
                let k = rng.random_range(2..=20);
                key.push(format!("+{k}"));
                clauses.push(format!("gets {k} more {} from {}", st.plural, st.friend));
                lines.push(format!(
                    "{} now has {} {}.",
                    st.name,
                    calc(v, '+', k, v + k),
                    st.plural
                ));
                v += k;
                steps += 1;
            }
            2 if v >= 3 => {
                let k = rng.random_range(2..v.min(30));
                key.push(format!("-{k}"));
                clauses.push(format!("gives {k} {} to {}", st.plural, st.friend));
                lines.push(format!(
                    "{} has {} {} left.",
                    st.name,
                    calc(v, '-', k, v - k),
                    st.plural
                ));
                v -= k;
                steps += 1;
            }
            3 => {
                key.push("h".into());
                clauses.push(format!(
                    "gives half of {} {} to {}",
                    st.poss, st.plural, st.friend
                ));
                lines.push(format!(
                    "{} keeps {} {}.",
                    st.name,
                    calc(v, '/', 2, v / 2),
                    st.plural
                ));
                v /= 2;
                steps += 1;
            }
            4 => {
                key.push("d".into());
                clauses.push(format!(
                    "doubles the number of {} {} has",
                    st.plural, st.subj
                ));
                lines.push(format!(
                    "{} now has {} {}.",
                    st.name,
                    calc(v, '*', 2, v * 2),
                    st.plural
                ));
                v *= 2;
                steps += 1;
            }
            5 => {
                let p = rng.random_range(2..=9);
                key.push(format!("${p}"));
                question = Some(format!(
                    "If {} sells each {} for ${p}, how much money does {} make?",
                    st.subj, st.single, st.subj
                ));
                lines.push(format!(
                    "{} makes {}.",
                    st.name,
                    calc(v, '*', p, v * p).replace("<<", "$<<")
                ));
                v *= p;
                steps += 1;
            }
            6 => {
                let ks: Vec<i64> = (2..=6).filter(|k| v % k == 0 && v > *k).collect();
                let Some(&k) = ks.choose(rng) else { continue };
                key.push(format!("/{k}"));
                question = Some(format!(
                    "If {} shares the {} equally among {k} friends, how many does each friend get?",
                    st.subj, st.plural
                ));
                lines.push(format!(
                    "Each friend gets {} {}.",
                    calc(v, '/', k, v / k),
                    st.plural
                ));
                v /= k;
                steps += 1;
            }
            _ => continue,
        }
    }
    let question =
        question.unwrap_or_else(|| format!("How many {} does {} have now?", st.plural, st.name));
    let mut q = vec![intro];
    if !clauses.is_empty() {
        q.push(format!("Then {} {}.", st.subj, clauses.join(", then ")));
    }
    q.push(cap(&question));
    lines.push(format!("#### {v}"));
    MathItem {
        question: q.join(" "),
        answer: lines.join("\n"),
        key: key.join("|"),
    }
}
