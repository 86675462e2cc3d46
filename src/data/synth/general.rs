//! Multi-turn instruction-following conversations whose answers a rule can check: format
//! (bullets, casing), length (a sentence of N words), transformation (reverse, sort, spell
//! backwards), lookup in the prompt, and lookup in a generated world (people, their cities, jobs
//! and pets, known only from the training conversations).
//!
//! An eighth of the conversations are code-flavoured (what a Python line prints, a shell command,
//! a Python idiom, snake_case) and an eighth math-flavoured (small arithmetic, comparisons,
//! parity, rounding), with one flavoured exchange each; the rest have none. Follow-up turns
//! ("Now do the same for: …") reuse the previous exchange's task on a new input.
use super::held_out;
use super::rules::{Flavour, Message, Rule};
use super::vocab::{
    ADJECTIVES, CATEGORIES, CITY_SUFFIXES, COLORS, DIRS, FILES, IDENT_PARTS, JOBS, LIST_VARS,
    OBJECTS, OPPOSITES, PEOPLE, PETS, STR_VARS, SYLLABLES, THINGS, TOPICS, WORDS,
};
use crate::error::{Error, Result};
use crate::util::Rng;
use rand::Rng as _;
use rand::seq::{IndexedRandom, SliceRandom};
use std::collections::HashSet;

/// One question and its checked answer.
#[derive(Debug, Clone)]
pub(super) struct Exchange {
    task: usize,
    pub flavour: Flavour,
    pub prompt: String,
    pub reply: String,
    pub rule: Rule,
    /// The variable part of the prompt, for a "do the same for" follow-up.
    input: Option<String>,
    /// The full question (the follow-up's underlying question): the train/held-out split key.
    pub key: String,
}

impl Exchange {
    pub fn task_name(&self) -> &'static str {
        TASKS[self.task].0
    }
}

/// A training conversation.
pub(super) struct Conversation {
    pub id: String,
    pub flavour: Flavour,
    pub messages: Vec<Message>,
}

/// A held-out item: context exchanges then the scored one.
pub(super) struct EvalConversation {
    pub id: String,
    pub flavour: Flavour,
    pub context: Vec<Exchange>,
    pub scored: Exchange,
}

struct Person {
    name: String,
    city: String,
    job: &'static str,
    pet: &'static str,
}

/// The generated world and the generator's state.
pub(super) struct World {
    people: Vec<Person>,
    cities: Vec<String>,
    /// Facts (person, attribute) not yet stated in training, in the order they will be.
    pending: Vec<(usize, usize)>,
    /// Facts stated in training (the only ones evaluation asks about).
    stated: HashSet<(usize, usize)>,
}

const WORLD_PEOPLE: usize = 24;
const WORLD_CITIES: usize = 8;

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn pick<'a>(r: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs.choose(r).copied().unwrap_or("")
}

fn article(w: &str) -> &'static str {
    if w.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

impl World {
    pub fn new(r: &mut Rng) -> World {
        let mut cities = Vec::new();
        while cities.len() < WORLD_CITIES {
            let c = cap(&format!("{}{}", pick(r, SYLLABLES), pick(r, CITY_SUFFIXES)));
            if !cities.contains(&c) {
                cities.push(c);
            }
        }
        let mut names: Vec<String> = Vec::new();
        while names.len() < WORLD_PEOPLE {
            let n = cap(&format!("{}{}", pick(r, SYLLABLES), pick(r, SYLLABLES)));
            let taken = names.contains(&n) || PEOPLE.iter().any(|p| p.0 == n);
            if !taken {
                names.push(n);
            }
        }
        let people = names
            .into_iter()
            .map(|name| Person {
                name,
                city: cities.choose(r).cloned().unwrap_or_default(),
                job: pick(r, JOBS),
                pet: pick(r, PETS),
            })
            .collect();
        let mut pending: Vec<(usize, usize)> = (0..WORLD_PEOPLE)
            .flat_map(|p| (0..3).map(move |a| (p, a)))
            .collect();
        pending.shuffle(r);
        World {
            people,
            cities,
            pending,
            stated: HashSet::new(),
        }
    }
}

/// Train or held-out drawing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Train,
    Eval,
}

type TaskFn = fn(&mut Rng, &mut World, Mode) -> Option<Exchange>;

/// (name, flavour, weight, generator).
const TASKS: &[(&str, Flavour, u32, TaskFn)] = &[
    ("uppercase", Flavour::Plain, 2, uppercase),
    ("lowercase", Flavour::Plain, 2, lowercase),
    ("reverse_words", Flavour::Plain, 2, reverse_words),
    ("sort_words", Flavour::Plain, 2, sort_words),
    ("acronym", Flavour::Plain, 2, acronym),
    ("repeat_word", Flavour::Plain, 2, repeat_word),
    ("spell_backwards", Flavour::Plain, 2, spell_backwards),
    ("word_count", Flavour::Plain, 2, word_count),
    ("list_items", Flavour::Plain, 2, list_items),
    ("write_sentence", Flavour::Plain, 2, write_sentence),
    ("context_lookup", Flavour::Plain, 2, context_lookup),
    ("world_lookup", Flavour::Plain, 4, world_lookup),
    ("yes_no", Flavour::Plain, 2, yes_no),
    ("opposite", Flavour::Plain, 2, opposite),
    ("bullets", Flavour::Plain, 2, bullets),
    ("code_output", Flavour::Code, 3, code_output),
    ("shell_command", Flavour::Code, 2, shell_command),
    ("snake_case", Flavour::Code, 1, snake_case),
    ("python_howto", Flavour::Code, 2, python_howto),
    ("arithmetic", Flavour::Math, 3, arithmetic),
    ("compare", Flavour::Math, 1, compare),
    ("parity", Flavour::Math, 1, parity),
    ("round", Flavour::Math, 1, round_ten),
    ("story_problem", Flavour::Math, 2, story_problem),
];

fn ex(prompt: String, reply: String, rule: Rule, input: Option<String>) -> Option<Exchange> {
    Some(Exchange {
        task: 0,
        flavour: Flavour::Plain,
        key: prompt.clone(),
        prompt,
        reply,
        rule,
        input,
    })
}

fn exact(expected: &str, case_sensitive: bool) -> Rule {
    Rule::Exact {
        expected: expected.to_string(),
        case_sensitive,
    }
}

fn words(r: &mut Rng, lo: usize, hi: usize) -> Vec<&'static str> {
    let n = r.random_range(lo..=hi);
    let mut w: Vec<&str> = WORDS.choose_multiple(r, n).copied().collect();
    w.shuffle(r);
    w
}

fn uppercase(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let p = words(r, 2, 4).join(" ");
    let q = pick(
        r,
        &["Write this in capital letters:", "Convert to uppercase:"],
    );
    let up = p.to_uppercase();
    ex(format!("{q} {p}"), up.clone(), exact(&up, true), Some(p))
}

fn lowercase(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let ws = words(r, 2, 4);
    let mixed: Vec<String> = ws
        .iter()
        .map(|w| {
            if r.random_bool(0.5) {
                w.to_uppercase()
            } else {
                cap(w)
            }
        })
        .collect();
    let p = mixed.join(" ");
    let low = ws.join(" ");
    let q = pick(r, &["Rewrite this in lowercase:", "Make this lowercase:"]);
    ex(format!("{q} {p}"), low.clone(), exact(&low, true), Some(p))
}

fn reverse_words(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let ws = words(r, 3, 5);
    let p = ws.join(" ");
    let rev: Vec<&str> = ws.iter().rev().copied().collect();
    let a = rev.join(" ");
    ex(
        format!("Reverse the order of these words: {p}"),
        a.clone(),
        exact(&a, false),
        Some(p),
    )
}

fn sort_words(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let ws = words(r, 3, 5);
    let p = ws.join(", ");
    let mut s = ws.clone();
    s.sort_unstable();
    let a = s.join(", ");
    ex(
        format!("Sort these words alphabetically: {p}"),
        a.clone(),
        exact(&a, false),
        Some(p),
    )
}

fn acronym(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let ws = words(r, 2, 4);
    let p: Vec<String> = ws.iter().map(|w| cap(w)).collect();
    let p = p.join(" ");
    let a: String = ws
        .iter()
        .filter_map(|w| w.chars().next())
        .collect::<String>()
        .to_uppercase();
    ex(
        format!("What is the acronym of \"{p}\"?"),
        a.clone(),
        exact(&a, true),
        Some(format!("\"{p}\"")),
    )
}

fn repeat_word(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let w = pick(r, WORDS);
    let n = r.random_range(2..=5);
    let a = vec![w; n].join(" ");
    ex(
        format!("Say \"{w}\" {n} times, separated by spaces."),
        a.clone(),
        exact(&a, false),
        None,
    )
}

fn spell_backwards(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let w = pick(r, WORDS);
    let a: String = w.chars().rev().collect();
    ex(
        format!("Spell \"{w}\" backwards."),
        a.clone(),
        exact(&a, false),
        Some(format!("\"{w}\"")),
    )
}

fn word_count(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let ws = words(r, 3, 8);
    let s = ws.join(" ");
    let n = ws.len();
    ex(
        format!("How many words are in this sentence: {s}"),
        format!("There are {n} words."),
        Rule::Number { expected: n as i64 },
        Some(s),
    )
}

fn list_items(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let &(plural, _, members) = CATEGORIES.choose(r)?;
    let n = r.random_range(2..=4);
    let items: Vec<&str> = members.choose_multiple(r, n).copied().collect();
    let q = if r.random_bool(0.5) {
        format!("Name {n} {plural}.")
    } else {
        format!("List {n} {plural}, one per line.")
    };
    let a = items
        .iter()
        .map(|i| format!("- {i}"))
        .collect::<Vec<_>>()
        .join("\n");
    let allowed = members.iter().map(|m| m.to_string()).collect();
    ex(q, a, Rule::List { count: n, allowed }, None)
}

fn write_sentence(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let t = pick(r, TOPICS);
    let n = r.random_range(4..=8);
    let adj: Vec<&str> = ADJECTIVES.choose_multiple(r, 2).copied().collect();
    let (a1, a2) = (adj[0], adj[1]);
    let s = match n {
        4 => format!("The {t} is {a1}."),
        5 => format!("The {a1} {t} is {a2}."),
        6 => format!("The {a1} {t} is very {a2}."),
        7 => format!("The {a1} {t} is very {a2} today."),
        _ => format!("I think the {a1} {t} is very {a2}."),
    };
    ex(
        format!(
            "Write {} {n}-word sentence that uses the word \"{t}\".",
            if n == 8 { "an" } else { "a" }
        ),
        s,
        Rule::Words {
            count: n,
            topic: t.to_string(),
        },
        None,
    )
}

fn context_lookup(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let k = r.random_range(2..=3);
    let people: Vec<&str> = PEOPLE.choose_multiple(r, k).map(|p| p.0).collect();
    let colors: Vec<&str> = COLORS.choose_multiple(r, k).copied().collect();
    let objects: Vec<&str> = OBJECTS.choose_multiple(r, k).copied().collect();
    let facts: Vec<String> = (0..k)
        .map(|i| format!("{} has a {} {}.", people[i], colors[i], objects[i]))
        .collect();
    let j = r.random_range(0..k);
    let q = format!(
        "{} What color is {}'s {}?",
        facts.join(" "),
        people[j],
        objects[j]
    );
    let options = COLORS.iter().map(|c| c.to_string()).collect();
    ex(
        q,
        format!("{}'s {} is {}.", people[j], objects[j], colors[j]),
        Rule::Choice {
            expected: colors[j].into(),
            options,
        },
        None,
    )
}

/// Questions about the world: per attribute (city, job, pet) three phrasings.
const WORLD_QUESTIONS: [[&str; 3]; 3] = [
    [
        "Where does {p} live?",
        "Which city does {p} live in?",
        "What town is {p} from?",
    ],
    [
        "What does {p} do for a living?",
        "What is {p}'s job?",
        "What work does {p} do?",
    ],
    [
        "What pet does {p} have?",
        "Which animal does {p} keep as a pet?",
        "What is {p}'s pet?",
    ],
];

fn world_lookup(r: &mut Rng, w: &mut World, mode: Mode) -> Option<Exchange> {
    let question = |w: &World, (p, a): (usize, usize), k: usize| {
        WORLD_QUESTIONS[a][k].replace("{p}", &w.people[p].name)
    };
    let (fact, phrasing) = match mode {
        Mode::Train => loop {
            // State every fact once first (with a phrasing that is not held out), then repeat.
            let fact = match w.pending.pop() {
                Some(f) => f,
                None => (r.random_range(0..w.people.len()), r.random_range(0..3)),
            };
            let ok: Vec<usize> = (0..3)
                .filter(|&k| !held_out(&question(w, fact, k)))
                .collect();
            if let Some(&k) = ok.choose(r) {
                break (fact, k);
            }
        },
        Mode::Eval => {
            let mut stated: Vec<(usize, usize)> = w.stated.iter().copied().collect();
            stated.sort_unstable();
            (*stated.choose(r)?, r.random_range(0..3))
        }
    };
    let (p, a) = fact;
    let person = &w.people[p];
    let (reply, expected, options): (String, String, Vec<String>) = match a {
        0 => (
            format!("{} lives in {}.", person.name, person.city),
            person.city.clone(),
            w.cities.clone(),
        ),
        1 => (
            format!("{} is {} {}.", person.name, article(person.job), person.job),
            person.job.into(),
            JOBS.iter().map(|j| j.to_string()).collect(),
        ),
        _ => (
            format!(
                "{} has {} {}.",
                person.name,
                article(person.pet),
                person.pet
            ),
            person.pet.into(),
            PETS.iter().map(|j| j.to_string()).collect(),
        ),
    };
    if mode == Mode::Train {
        w.stated.insert(fact);
    }
    ex(
        question(w, fact, phrasing),
        reply,
        Rule::Choice { expected, options },
        None,
    )
}

fn yes_no(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let i = r.random_range(0..CATEGORIES.len());
    let (_, sing_i, members) = CATEGORIES[i];
    let item = pick(r, members);
    let j = if r.random_bool(0.5) {
        i
    } else {
        r.random_range(0..CATEGORIES.len())
    };
    let sing_j = CATEGORIES[j].1;
    let yes = CATEGORIES[j].2.contains(&item);
    let (ai, aj) = (article(item), article(sing_j));
    let reply = if yes {
        format!("Yes, {ai} {item} is {aj} {sing_j}.")
    } else {
        format!("No, {ai} {item} is {} {sing_i}.", article(sing_i))
    };
    let options = vec!["yes".to_string(), "no".to_string()];
    let expected = if yes { "yes" } else { "no" };
    ex(
        format!("Is {ai} {item} {aj} {sing_j}?"),
        reply,
        Rule::Choice {
            expected: expected.into(),
            options,
        },
        None,
    )
}

fn opposite(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let &(a, b) = OPPOSITES.choose(r)?;
    let (w, o) = if r.random_bool(0.5) { (a, b) } else { (b, a) };
    let options = OPPOSITES
        .iter()
        .flat_map(|(x, y)| [*x, *y])
        .filter(|x| *x != w)
        .map(String::from)
        .collect();
    let q = pick(
        r,
        &[
            "What is the opposite of \"{w}\"?",
            "Give the opposite of the word \"{w}\".",
        ],
    )
    .replace("{w}", w);
    ex(
        q,
        format!("The opposite of {w} is {o}."),
        Rule::Choice {
            expected: o.into(),
            options,
        },
        None,
    )
}

fn bullets(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let ws = words(r, 3, 4);
    let p = ws.join(", ");
    let a = ws
        .iter()
        .map(|w| format!("- {w}"))
        .collect::<Vec<_>>()
        .join("\n");
    ex(
        format!("Put each of these on its own line with a dash: {p}"),
        a.clone(),
        exact(&a, false),
        Some(p),
    )
}

fn code_output(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let w = pick(r, WORDS);
    let (code, out, rule): (String, String, Rule) = match r.random_range(0..8) {
        0 => (
            format!("print('{w}'.upper())"),
            w.to_uppercase(),
            exact(&w.to_uppercase(), true),
        ),
        1 => (
            format!("print(len('{w}'))"),
            w.len().to_string(),
            Rule::Number {
                expected: w.len() as i64,
            },
        ),
        2 => {
            let v = pick(r, WORDS);
            let o = format!("{w}{v}");
            (format!("print('{w}' + '{v}')"), o.clone(), exact(&o, true))
        }
        3 => {
            let o: String = w.chars().rev().collect();
            (format!("print('{w}'[::-1])"), o.clone(), exact(&o, true))
        }
        4 => {
            let sep = pick(r, &["-", "+", "/", ":"]);
            let ws = words(r, 2, 3);
            let list = ws
                .iter()
                .map(|x| format!("'{x}'"))
                .collect::<Vec<_>>()
                .join(", ");
            let o = ws.join(sep);
            (
                format!("print('{sep}'.join([{list}]))"),
                o.clone(),
                exact(&o, true),
            )
        }
        5 => {
            let (a, b) = (r.random_range(2..=12), r.random_range(2..=12));
            (
                format!("print({a} * {b})"),
                (a * b).to_string(),
                Rule::Number { expected: a * b },
            )
        }
        6 => {
            let mut v: Vec<i64> = (0..3).map(|_| r.random_range(0..=20)).collect();
            let src = format!(
                "[{}]",
                v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            );
            v.sort_unstable();
            let o = format!(
                "[{}]",
                v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            );
            (format!("print(sorted({src}))"), o.clone(), exact(&o, true))
        }
        _ => {
            let p = words(r, 2, 3).join(" ");
            let c = pick(r, &["a", "e", "o", "r", "t"]);
            let n = p.matches(c).count() as i64;
            (
                format!("print('{p}'.count('{c}'))"),
                n.to_string(),
                Rule::Number { expected: n },
            )
        }
    };
    let q = if r.random_bool(0.5) {
        format!("What does this Python code print?\n{code}")
    } else {
        format!("What is the output of `{code}` in Python?")
    };
    ex(q, out, rule, None)
}

fn shell_command(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let (d, f, w) = (pick(r, DIRS), pick(r, FILES), pick(r, WORDS));
    let n = r.random_range(2..=20);
    let (task, cmd) = match r.random_range(0..10) {
        0 => (
            format!("list the files in the {d} folder"),
            format!("ls {d}"),
        ),
        1 => (format!("count the lines in {f}"), format!("wc -l {f}")),
        2 => (format!("create a folder named {d}"), format!("mkdir {d}")),
        3 => (format!("delete the file {f}"), format!("rm {f}")),
        4 => (
            format!("show the first {n} lines of {f}"),
            format!("head -n {n} {f}"),
        ),
        5 => (
            format!("show the last {n} lines of {f}"),
            format!("tail -n {n} {f}"),
        ),
        6 => (
            format!("search for the word {w} in {f}"),
            format!("grep {w} {f}"),
        ),
        7 => (
            format!("copy {f} into the {d} folder"),
            format!("cp {f} {d}/"),
        ),
        8 => (format!("print the contents of {f}"), format!("cat {f}")),
        _ => (
            format!("move {f} into the {d} folder"),
            format!("mv {f} {d}/"),
        ),
    };
    ex(
        format!("Write a shell command to {task}."),
        cmd.clone(),
        exact(&cmd, true),
        None,
    )
}

fn snake_case(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let n = r.random_range(2..=3);
    let parts: Vec<&str> = IDENT_PARTS.choose_multiple(r, n).copied().collect();
    let camel: String = parts
        .iter()
        .enumerate()
        .map(|(i, p)| if i == 0 { p.to_string() } else { cap(p) })
        .collect();
    let snake = parts.join("_");
    ex(
        format!("Convert the variable name {camel} to snake_case."),
        snake.clone(),
        exact(&snake, true),
        Some(camel),
    )
}

fn python_howto(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let (v, s) = (pick(r, LIST_VARS), pick(r, STR_VARS));
    let x = r.random_range(0..=99);
    let (task, code) = match r.random_range(0..8) {
        0 => (
            format!("get the length of the list {v}"),
            format!("len({v})"),
        ),
        1 => (
            format!("add {x} to the end of the list {v}"),
            format!("{v}.append({x})"),
        ),
        2 => (
            format!("make the string {s} uppercase"),
            format!("{s}.upper()"),
        ),
        3 => (format!("sort the list {v}"), format!("{v}.sort()")),
        4 => (
            format!("split the string {s} into words"),
            format!("{s}.split()"),
        ),
        5 => (
            format!("remove the spaces at both ends of the string {s}"),
            format!("{s}.strip()"),
        ),
        6 => (
            format!("get the last element of the list {v}"),
            format!("{v}[-1]"),
        ),
        _ => (
            format!("check whether {x} is in the list {v}"),
            format!("{x} in {v}"),
        ),
    };
    ex(
        format!("In Python, how do I {task}?"),
        code.clone(),
        exact(&code, true),
        None,
    )
}

fn arithmetic(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let (a, op, b, c) = match r.random_range(0..3) {
        0 => {
            let (a, b) = (r.random_range(1..=99), r.random_range(1..=99));
            (a, "plus", b, a + b)
        }
        1 => {
            let a = r.random_range(2..=99);
            let b = r.random_range(1..a);
            (a, "minus", b, a - b)
        }
        _ => {
            let (a, b) = (r.random_range(2..=12), r.random_range(2..=12));
            (a, "times", b, a * b)
        }
    };
    let q = pick(r, &["What is {a} {op} {b}?", "Compute {a} {op} {b}."])
        .replace("{a}", &a.to_string())
        .replace("{op}", op)
        .replace("{b}", &b.to_string());
    ex(
        q,
        format!("{a} {op} {b} is {c}."),
        Rule::Number { expected: c },
        None,
    )
}

fn compare(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let a: i64 = r.random_range(1..=999);
    let b: i64 = r.random_range(1..=999);
    if a == b {
        return None;
    }
    let options = vec![a.to_string(), b.to_string()];
    ex(
        format!("Which is larger, {a} or {b}?"),
        format!("{} is larger.", a.max(b)),
        Rule::Choice {
            expected: a.max(b).to_string(),
            options,
        },
        None,
    )
}

fn parity(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let n: i64 = r.random_range(1..=999);
    let p = if n % 2 == 0 { "even" } else { "odd" };
    let options = vec!["even".to_string(), "odd".to_string()];
    ex(
        format!("Is {n} even or odd?"),
        format!("{n} is {p}."),
        Rule::Choice {
            expected: p.into(),
            options,
        },
        None,
    )
}

fn round_ten(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let n: i64 = r.random_range(11..=999);
    if n % 10 == 0 {
        return None;
    }
    let t = (n + 5) / 10 * 10;
    ex(
        format!("Round {n} to the nearest ten."),
        format!("{n} rounded to the nearest ten is {t}."),
        Rule::Number { expected: t },
        None,
    )
}

fn story_problem(r: &mut Rng, _: &mut World, _: Mode) -> Option<Exchange> {
    let &(plural, _, _) = THINGS.choose(r)?;
    let a: i64 = r.random_range(3..=50);
    let (q, c) = if r.random_bool(0.5) {
        let b = r.random_range(1..a);
        (
            format!("If I have {a} {plural} and give away {b}, how many are left?"),
            a - b,
        )
    } else {
        let b = r.random_range(1..=30);
        (
            format!("If I have {a} {plural} and get {b} more, how many do I have?"),
            a + b,
        )
    };
    ex(
        q,
        format!("You have {c} {plural}."),
        Rule::Number { expected: c },
        None,
    )
}

/// Draw an exchange of a random task with the wanted flavour.
fn draw_task(r: &mut Rng, w: &mut World, mode: Mode, want: Flavour) -> Option<Exchange> {
    let idx: Vec<usize> = (0..TASKS.len()).filter(|&i| TASKS[i].1 == want).collect();
    let total: u32 = idx.iter().map(|&i| TASKS[i].2).sum();
    let mut roll = r.random_range(0..total);
    let task = idx.into_iter().find(|&i| {
        let hit = roll < TASKS[i].2;
        roll = roll.saturating_sub(TASKS[i].2);
        hit
    })?;
    let mut e = (TASKS[task].3)(r, w, mode)?;
    e.task = task;
    e.flavour = TASKS[task].1;
    Some(e)
}

/// "Now do the same for: …": the previous task on a new input (None if the task has no input).
fn follow_up(prev: &Exchange, r: &mut Rng, w: &mut World, mode: Mode) -> Option<Exchange> {
    prev.input.as_ref()?;
    let mut e = (TASKS[prev.task].3)(r, w, mode)?;
    e.task = prev.task;
    e.flavour = prev.flavour;
    e.prompt = format!("Now do the same for: {}", e.input.as_deref()?);
    Some(e)
}

const ATTEMPTS: usize = 10_000;

/// Draw until `accept` holds (bounded; running out means the vocabulary is too small for the
/// requested size, a generator bug).
fn draw_until(
    mut draw: impl FnMut() -> Option<Exchange>,
    accept: impl Fn(&Exchange) -> bool,
    what: &str,
) -> Result<Exchange> {
    for _ in 0..ATTEMPTS {
        if let Some(e) = draw().filter(|e| accept(e)) {
            return Ok(e);
        }
    }
    Err(Error::Internal(format!(
        "synth: could not draw a new {what} in {ATTEMPTS} attempts"
    )))
}

/// Flavours for `n` conversations: an eighth code, an eighth math (rounded), shuffled.
fn flavour_quota(r: &mut Rng, n: usize) -> Vec<Flavour> {
    let k = (n + 4) / 8;
    let mut v: Vec<Flavour> = (0..n)
        .map(|i| {
            if i < k {
                Flavour::Code
            } else if i < 2 * k {
                Flavour::Math
            } else {
                Flavour::Plain
            }
        })
        .collect();
    v.shuffle(r);
    v
}

/// The training conversations (1–3 exchanges each).
pub(super) fn train(r: &mut Rng, w: &mut World, n: usize) -> Result<Vec<Conversation>> {
    let flavours = flavour_quota(r, n);
    let mut out = Vec::with_capacity(n);
    for (i, flavour) in flavours.into_iter().enumerate() {
        let turns = [1, 1, 2, 2, 3].choose(r).copied().unwrap_or(1);
        let at = r.random_range(0..turns);
        let mut messages = Vec::new();
        let mut prev: Option<Exchange> = None;
        for j in 0..turns {
            let want = if j == at { flavour } else { Flavour::Plain };
            let follow = want == Flavour::Plain
                && prev.as_ref().is_some_and(|p| p.input.is_some())
                && r.random_bool(0.4);
            let e = draw_until(
                || match (&prev, follow) {
                    (Some(p), true) => follow_up(p, r, w, Mode::Train),
                    _ => draw_task(r, w, Mode::Train, want),
                },
                |e| !held_out(&e.key),
                "training exchange",
            )?;
            messages.push(Message::human(e.prompt.clone()));
            messages.push(Message::gpt(e.reply.clone()));
            prev = Some(e);
        }
        out.push(Conversation {
            id: format!("synth-{i:05}"),
            flavour,
            messages,
        });
    }
    Ok(out)
}

/// The held-out items: a third have a context exchange before the scored one. Every exchange's
/// key is held out, every human turn is new to training, and no key repeats.
pub(super) fn eval(
    r: &mut Rng,
    w: &mut World,
    n: usize,
    train_humans: &HashSet<String>,
) -> Result<Vec<EvalConversation>> {
    let flavours = flavour_quota(r, n);
    let mut used: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(n);
    for (i, flavour) in flavours.into_iter().enumerate() {
        let mut context = Vec::new();
        let fresh = |e: &Exchange, used: &HashSet<String>| {
            held_out(&e.key) && !used.contains(&e.key) && !train_humans.contains(&e.prompt)
        };
        if r.random_bool(1.0 / 3.0) {
            let c = draw_until(
                || draw_task(r, w, Mode::Eval, Flavour::Plain),
                |e| fresh(e, &used),
                "eval context",
            )?;
            used.insert(c.key.clone());
            context.push(c);
        }
        let follow = flavour == Flavour::Plain
            && context.first().is_some_and(|c| c.input.is_some())
            && r.random_bool(0.5);
        let scored = draw_until(
            || match (context.first(), follow) {
                (Some(c), true) => follow_up(c, r, w, Mode::Eval),
                _ => draw_task(r, w, Mode::Eval, flavour),
            },
            |e| fresh(e, &used),
            "eval item",
        )?;
        used.insert(scored.key.clone());
        out.push(EvalConversation {
            id: format!("synth-eval-{i:04}"),
            flavour,
            context,
            scored,
        });
    }
    Ok(out)
}
