//! Python function tasks from 35 parameterised families (add a constant, filter a list, count a
//! letter, …), each a one-argument function of 1–5 lines. The Rust side evaluates every function
//! itself (with Python's semantics on the inputs it draws) to write the tests, so a problem's
//! `check` is independent of its canonical solution.
//!
//! A drawn [`Spec`] renders as a HumanEval problem (`prompt` = signature + docstring with one
//! example, `canonical_solution` = body, `test` = `def check(candidate):` with six asserts whose
//! expected values are not all equal, so a constant answer fails) and as Code Alpaca
//! instructions in three styles: describe-and-write, complete-this-prompt, and write-and-run on
//! an input. The key (family, name, argument, constants) drives the train/held-out split, so a
//! held-out problem is a function never seen in training.
use crate::util::Rng;
use rand::Rng as _;
use rand::seq::IndexedRandom;

/// A Python value of the kinds the families use.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Py {
    Int(i64),
    Bool(bool),
    Str(String),
    Ints(Vec<i64>),
    Strs(Vec<String>),
}

impl Py {
    /// Python `repr()`.
    fn repr(&self) -> String {
        match self {
            Py::Int(v) => v.to_string(),
            Py::Bool(b) => if *b { "True" } else { "False" }.into(),
            Py::Str(s) => format!("'{s}'"),
            Py::Ints(v) => format!(
                "[{}]",
                v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ),
            Py::Strs(v) => format!(
                "[{}]",
                v.iter()
                    .map(|s| format!("'{s}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    /// Python `str()` (what `print` shows).
    fn display(&self) -> String {
        match self {
            Py::Str(s) => s.clone(),
            other => other.repr(),
        }
    }
    fn int(&self) -> i64 {
        if let Py::Int(v) = self { *v } else { 0 }
    }
    fn ints(&self) -> &[i64] {
        if let Py::Ints(v) = self { v } else { &[] }
    }
    fn str(&self) -> &str {
        if let Py::Str(s) = self { s } else { "" }
    }
    fn strs(&self) -> &[String] {
        if let Py::Strs(v) = self { v } else { &[] }
    }
}

/// Argument / return types, as written in the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int,
    Bool,
    Str,
    Ints,
    Strs,
}

impl Ty {
    fn hint(self) -> &'static str {
        match self {
            Ty::Int => "int",
            Ty::Bool => "bool",
            Ty::Str => "str",
            Ty::Ints => "list[int]",
            Ty::Strs => "list[str]",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Ty::Int | Ty::Bool => "an integer",
            Ty::Str => "a string",
            Ty::Ints => "a list of integers",
            Ty::Strs => "a list of strings",
        }
    }
    fn arg_names(self) -> &'static [&'static str] {
        match self {
            Ty::Int | Ty::Bool => &["x", "n", "value", "num"],
            Ty::Str => &["s", "text", "word"],
            Ty::Ints => &["nums", "values", "items", "numbers"],
            Ty::Strs => &["words", "parts", "tokens"],
        }
    }
}

type Eval = Box<dyn Fn(&Py) -> Py>;
type Gen = Box<dyn Fn(&mut Rng) -> Py>;

/// One drawn function: what it is called, what it does, its body, and how to run it.
pub(super) struct Spec {
    name: String,
    arg: String,
    arg_ty: Ty,
    ret_ty: Ty,
    /// Third-person clause using the argument name ("returns x plus 7").
    desc: String,
    /// Body lines, relative to the function's indentation.
    body: Vec<String>,
    /// Family, name, argument and constants: the train/held-out split key.
    pub key: String,
    eval: Eval,
    input: Gen,
}

/// A rendered problem.
pub(super) struct Problem {
    /// Signature and docstring with one example (HumanEval `prompt`).
    pub prompt: String,
    /// The indented body (HumanEval `canonical_solution`).
    pub solution: String,
    /// `def check(candidate):` with the asserts (HumanEval `test`).
    pub test: String,
    pub entry_point: String,
    /// Signature without docstring plus body: the plain function.
    pub function: String,
    example_in: Py,
    example_out: Py,
}

fn int_in(lo: i64, hi: i64) -> Gen {
    Box::new(move |r: &mut Rng| Py::Int(r.random_range(lo..=hi)))
}

fn ints_in(lo: i64, hi: i64) -> Gen {
    Box::new(move |r: &mut Rng| {
        let n = r.random_range(3..=6);
        Py::Ints((0..n).map(|_| r.random_range(lo..=hi)).collect())
    })
}

fn word(r: &mut Rng) -> String {
    super::vocab::WORDS
        .choose(r)
        .copied()
        .unwrap_or("word")
        .to_string()
}

fn words(r: &mut Rng, lo: usize, hi: usize) -> Vec<String> {
    let n = r.random_range(lo..=hi);
    (0..n).map(|_| word(r)).collect()
}

fn str_word() -> Gen {
    Box::new(|r: &mut Rng| Py::Str(word(r)))
}

fn str_phrase() -> Gen {
    Box::new(|r: &mut Rng| Py::Str(words(r, 1, 4).join(" ")))
}

fn pick<'a>(r: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs.choose(r).copied().unwrap_or("x")
}

/// Everything a family decides; `spec` fills the argument name and the key.
struct Draft {
    family: &'static str,
    name: String,
    arg_ty: Ty,
    ret_ty: Ty,
    consts: String,
    /// Clause template; `{a}` is replaced by the argument name.
    desc: String,
    /// Body templates; `{a}` is replaced by the argument name.
    body: Vec<String>,
    eval: Eval,
    input: Gen,
}

const FAMILIES: usize = 35;

/// Draw a function from a random family.
pub(super) fn draw(r: &mut Rng) -> Spec {
    let family = r.random_range(0..FAMILIES);
    let d = draft(r, family);
    let arg = pick(r, d.arg_ty.arg_names()).to_string();
    let fill = |t: &str| t.replace("{a}", &arg);
    Spec {
        key: format!("{}|{}|{}|{}", d.family, d.name, arg, d.consts),
        desc: fill(&d.desc),
        body: d.body.iter().map(|l| fill(l)).collect(),
        name: d.name,
        arg,
        arg_ty: d.arg_ty,
        ret_ty: d.ret_ty,
        eval: d.eval,
        input: d.input,
    }
}

#[allow(clippy::too_many_lines)]
fn draft(r: &mut Rng, family: usize) -> Draft {
    use Ty::*;
    let d = |family,
             name: String,
             arg_ty,
             ret_ty,
             consts: String,
             desc: String,
             body: &[String],
             eval,
             input| {
        Draft {
            family,
            name,
            arg_ty,
            ret_ty,
            consts,
            desc,
            body: body.to_vec(),
            eval,
            input,
        }
    };
    match family {
        0 => {
            let k = r.random_range(2..=30);
            let name = format!("{}_{k}", pick(r, &["add", "plus", "increase_by"]));
            d(
                "add",
                name,
                Int,
                Int,
                format!("{k}"),
                format!("returns {{a}} plus {k}"),
                &[format!("return {{a}} + {k}")],
                Box::new(move |x: &Py| Py::Int(x.int() + k)),
                int_in(0, 60),
            )
        }
        1 => {
            let k = r.random_range(2..=12);
            let name = format!("{}_{k}", pick(r, &["times", "multiply_by", "scale_by"]));
            d(
                "mul",
                name,
                Int,
                Int,
                format!("{k}"),
                format!("returns {{a}} multiplied by {k}"),
                &[format!("return {{a}} * {k}")],
                Box::new(move |x: &Py| Py::Int(x.int() * k)),
                int_in(0, 30),
            )
        }
        2 => {
            let (m, b) = (r.random_range(2..=9), r.random_range(1..=20));
            let name = format!("{}_{m}_{b}", pick(r, &["linear", "affine"]));
            d(
                "affine",
                name,
                Int,
                Int,
                format!("{m},{b}"),
                format!("returns {m} times {{a}} plus {b}"),
                &[format!("return {m} * {{a}} + {b}")],
                Box::new(move |x: &Py| Py::Int(m * x.int() + b)),
                int_in(0, 20),
            )
        }
        3 => {
            let k = r.random_range(2..=4);
            let name = format!("{}_{k}", pick(r, &["power", "raise_to"]));
            d(
                "power",
                name,
                Int,
                Int,
                format!("{k}"),
                format!("returns {{a}} raised to the power of {k}"),
                &[format!("return {{a}} ** {k}")],
                Box::new(move |x: &Py| Py::Int(x.int().pow(k as u32))),
                int_in(0, 9),
            )
        }
        4 => {
            let k = r.random_range(2..=12);
            let name = format!("{}_{k}", pick(r, &["divisible_by", "is_multiple_of"]));
            d(
                "divisible",
                name,
                Int,
                Bool,
                format!("{k}"),
                format!("checks whether {{a}} is divisible by {k}"),
                &[format!("return {{a}} % {k} == 0")],
                Box::new(move |x: &Py| Py::Bool(x.int() % k == 0)),
                int_in(0, 60),
            )
        }
        5 => {
            let lo = r.random_range(0..=20);
            let hi = lo + r.random_range(3..=20);
            let name = format!("{}_{lo}_{hi}", pick(r, &["in_range", "between"]));
            d(
                "between",
                name,
                Int,
                Bool,
                format!("{lo},{hi}"),
                format!("checks whether {{a}} is between {lo} and {hi} inclusive"),
                &[format!("return {lo} <= {{a}} <= {hi}")],
                Box::new(move |x: &Py| Py::Bool((lo..=hi).contains(&x.int()))),
                int_in(0, 45),
            )
        }
        6 => {
            let lo = r.random_range(0..=20);
            let hi = lo + r.random_range(3..=20);
            let name = format!("{}_{lo}_{hi}", pick(r, &["clamp", "limit"]));
            d(
                "clamp",
                name,
                Int,
                Int,
                format!("{lo},{hi}"),
                format!("returns {{a}} limited to the range {lo} to {hi}"),
                &[format!("return max({lo}, min({hi}, {{a}}))")],
                Box::new(move |x: &Py| Py::Int(x.int().clamp(lo, hi))),
                int_in(0, 45),
            )
        }
        7 => {
            let t = r.random_range(5..=50);
            let &(hi, lo) = [
                ("big", "small"),
                ("high", "low"),
                ("hot", "cold"),
                ("yes", "no"),
            ]
            .choose(r)
            .unwrap_or(&("big", "small"));
            let name = format!("{}_{t}", pick(r, &["label", "classify"]));
            d(
                "threshold",
                name,
                Int,
                Str,
                format!("{t},{hi},{lo}"),
                format!("returns '{hi}' if {{a}} is greater than {t} and '{lo}' otherwise"),
                &[
                    format!("if {{a}} > {t}:"),
                    format!("    return '{hi}'"),
                    format!("return '{lo}'"),
                ],
                Box::new(move |x: &Py| Py::Str(if x.int() > t { hi } else { lo }.into())),
                int_in(0, 60),
            )
        }
        8 => {
            let k = r.random_range(2..=7);
            let w = pick(r, &["fizz", "buzz", "ping", "bang"]);
            let name = format!("{}_{k}", pick(r, &[w, "tag"]));
            d(
                "fizz",
                name,
                Int,
                Str,
                format!("{k},{w}"),
                format!(
                    "returns '{w}' if {{a}} is divisible by {k} and otherwise {{a}} as a string"
                ),
                &[
                    format!("if {{a}} % {k} == 0:"),
                    format!("    return '{w}'"),
                    "return str({a})".into(),
                ],
                Box::new(move |x: &Py| {
                    Py::Str(if x.int() % k == 0 {
                        w.to_string()
                    } else {
                        x.int().to_string()
                    })
                }),
                int_in(1, 40),
            )
        }
        9 => {
            let k = r.random_range(2..=7);
            let name = format!("{}_{k}", pick(r, &["sum_multiples_of", "add_multiples_of"]));
            d(
                "sum_to_n",
                name,
                Int,
                Int,
                format!("{k}"),
                format!("returns the sum of the multiples of {k} from 1 to {{a}}"),
                &[format!(
                    "return sum(i for i in range(1, {{a}} + 1) if i % {k} == 0)"
                )],
                Box::new(move |x: &Py| Py::Int((1..=x.int()).filter(|i| i % k == 0).sum())),
                int_in(0, 40),
            )
        }
        10 => {
            let k = r.random_range(1..=5);
            let name = format!("{}_{k}", pick(r, &["count_down_by", "countdown_step"]));
            d(
                "count_down",
                name,
                Int,
                Ints,
                format!("{k}"),
                format!(
                    "returns the list counting down from {{a}} in steps of {k}, stopping above 0"
                ),
                &[format!("return list(range({{a}}, 0, -{k}))")],
                Box::new(move |x: &Py| Py::Ints((1..=x.int()).rev().step_by(k as usize).collect())),
                int_in(1, 20),
            )
        }
        11 => {
            let k = r.random_range(1..=50);
            let name = format!("{}_{k}", pick(r, &["distance_from", "gap_to"]));
            d(
                "abs_diff",
                name,
                Int,
                Int,
                format!("{k}"),
                format!("returns the distance between {{a}} and {k}"),
                &[format!("return abs({{a}} - {k})")],
                Box::new(move |x: &Py| Py::Int((x.int() - k).abs())),
                int_in(0, 60),
            )
        }
        12 => {
            let t = r.random_range(0..=15);
            let name = format!("{}_{t}", pick(r, &["sum_above", "total_over"]));
            d(
                "sum_above",
                name,
                Ints,
                Int,
                format!("{t}"),
                format!("returns the sum of the numbers in {{a}} that are greater than {t}"),
                &[format!("return sum(x for x in {{a}} if x > {t})")],
                Box::new(move |x: &Py| Py::Int(x.ints().iter().filter(|v| **v > t).sum())),
                ints_in(0, 20),
            )
        }
        13 => {
            let t = r.random_range(0..=15);
            let name = format!("{}_{t}", pick(r, &["count_above", "how_many_over"]));
            d(
                "count_above",
                name,
                Ints,
                Int,
                format!("{t}"),
                format!("counts the numbers in {{a}} that are greater than {t}"),
                &[format!("return len([x for x in {{a}} if x > {t}])")],
                Box::new(move |x: &Py| Py::Int(x.ints().iter().filter(|v| **v > t).count() as i64)),
                ints_in(0, 20),
            )
        }
        14 => {
            let t = r.random_range(3..=18);
            let name = format!("{}_{t}", pick(r, &["keep_below", "filter_under"]));
            d(
                "filter_below",
                name,
                Ints,
                Ints,
                format!("{t}"),
                format!("keeps only the numbers in {{a}} that are less than {t}"),
                &[format!("return [x for x in {{a}} if x < {t}]")],
                Box::new(move |x: &Py| {
                    Py::Ints(x.ints().iter().copied().filter(|v| *v < t).collect())
                }),
                ints_in(0, 20),
            )
        }
        15 => {
            let k = r.random_range(2..=9);
            let name = format!("{}_{k}", pick(r, &["scale_list", "multiply_all"]));
            d(
                "scale_list",
                name,
                Ints,
                Ints,
                format!("{k}"),
                format!("returns {{a}} with every number multiplied by {k}"),
                &[format!("return [x * {k} for x in {{a}}]")],
                Box::new(move |x: &Py| Py::Ints(x.ints().iter().map(|v| v * k).collect())),
                ints_in(0, 20),
            )
        }
        16 => {
            let k = r.random_range(1..=20);
            let name = format!("{}_{k}", pick(r, &["shift_list", "add_to_all"]));
            d(
                "shift_list",
                name,
                Ints,
                Ints,
                format!("{k}"),
                format!("returns {{a}} with {k} added to every number"),
                &[format!("return [x + {k} for x in {{a}}]")],
                Box::new(move |x: &Py| Py::Ints(x.ints().iter().map(|v| v + k).collect())),
                ints_in(0, 20),
            )
        }
        17 => {
            let k = r.random_range(2..=9);
            let name = format!("{}_{k}", pick(r, &["remainders", "mod_all"]));
            d(
                "mod_list",
                name,
                Ints,
                Ints,
                format!("{k}"),
                format!("returns the remainder of every number in {{a}} divided by {k}"),
                &[format!("return [x % {k} for x in {{a}}]")],
                Box::new(move |x: &Py| Py::Ints(x.ints().iter().map(|v| v % k).collect())),
                ints_in(0, 30),
            )
        }
        18 => {
            let k = r.random_range(2..=4);
            let ord = ["", "", "second", "third", "fourth"][k as usize];
            let name = pick(r, &["every_", "take_every_"]).to_string() + ord;
            d(
                "every_nth",
                name,
                Ints,
                Ints,
                format!("{k}"),
                format!("returns every {ord} element of {{a}}, starting with the first"),
                &[format!("return {{a}}[::{k}]")],
                Box::new(move |x: &Py| {
                    Py::Ints(x.ints().iter().copied().step_by(k as usize).collect())
                }),
                ints_in(0, 20),
            )
        }
        19 => {
            let k = r.random_range(2..=6);
            let name = format!(
                "{}_{k}",
                pick(r, &["sum_divisible_by", "total_multiples_of"])
            );
            d(
                "sum_multiples_list",
                name,
                Ints,
                Int,
                format!("{k}"),
                format!("returns the sum of the numbers in {{a}} that are divisible by {k}"),
                &[
                    "total = 0".into(),
                    "for v in {a}:".into(),
                    format!("    if v % {k} == 0:"),
                    "        total += v".into(),
                    "return total".into(),
                ],
                Box::new(move |x: &Py| Py::Int(x.ints().iter().filter(|v| *v % k == 0).sum())),
                ints_in(0, 20),
            )
        }
        20 => {
            let k = r.random_range(1..=20);
            let name = format!("{}_{k}", pick(r, &["largest_plus", "max_plus"]));
            d(
                "max_plus",
                name,
                Ints,
                Int,
                format!("{k}"),
                format!("returns the largest number in {{a}} plus {k}"),
                &[format!("return max({{a}}) + {k}")],
                Box::new(move |x: &Py| Py::Int(x.ints().iter().copied().max().unwrap_or(0) + k)),
                ints_in(0, 30),
            )
        }
        21 => {
            let k = r.random_range(0..=9);
            let name = format!("{}_{k}", pick(r, &["count_value", "occurrences_of"]));
            d(
                "count_equal",
                name,
                Ints,
                Int,
                format!("{k}"),
                format!("counts how many times {k} appears in {{a}}"),
                &[format!("return {{a}}.count({k})")],
                Box::new(
                    move |x: &Py| Py::Int(x.ints().iter().filter(|v| **v == k).count() as i64),
                ),
                ints_in(0, 9),
            )
        }
        22 => {
            let t = r.random_range(3..=18);
            let name = format!("{}_{t}", pick(r, &["first_above", "first_over"]));
            d(
                "first_above",
                name,
                Ints,
                Int,
                format!("{t}"),
                format!(
                    "returns the first number in {{a}} greater than {t}, or -1 if there is none"
                ),
                &[
                    "for v in {a}:".into(),
                    format!("    if v > {t}:"),
                    "        return v".into(),
                    "return -1".into(),
                ],
                Box::new(move |x: &Py| {
                    Py::Int(x.ints().iter().copied().find(|v| *v > t).unwrap_or(-1))
                }),
                ints_in(0, 20),
            )
        }
        23 => {
            let k = r.random_range(2..=4);
            let name = format!("{}_{k}", pick(r, &["repeat", "copy_times"]));
            d(
                "repeat",
                name,
                Str,
                Str,
                format!("{k}"),
                format!("returns {{a}} repeated {k} times"),
                &[format!("return {{a}} * {k}")],
                Box::new(move |x: &Py| Py::Str(x.str().repeat(k as usize))),
                str_word(),
            )
        }
        24 => {
            let p = pick(
                r,
                &["pre", "un", "re", "sub", "over", "out", "mini", "mega"],
            );
            let name = format!("{}_{p}", pick(r, &["prefix", "add_prefix"]));
            d(
                "prefix",
                name,
                Str,
                Str,
                p.into(),
                format!("returns {{a}} with '{p}' added to the front"),
                &[format!("return '{p}' + {{a}}")],
                Box::new(move |x: &Py| Py::Str(format!("{p}{}", x.str()))),
                str_word(),
            )
        }
        25 => {
            let p = pick(r, &["ing", "ed", "er", "ly", "ness", "ful", "less", "able"]);
            let name = format!("{}_{p}", pick(r, &["suffix", "add_suffix"]));
            d(
                "suffix",
                name,
                Str,
                Str,
                p.into(),
                format!("returns {{a}} with '{p}' added to the end"),
                &[format!("return {{a}} + '{p}'")],
                Box::new(move |x: &Py| Py::Str(format!("{}{p}", x.str()))),
                str_word(),
            )
        }
        26 => {
            let c = pick(r, &["a", "e", "i", "o", "r", "s", "t", "n", "l", "d"]);
            let name = format!("{}_{c}", pick(r, &["count_letter", "number_of"]));
            d(
                "count_char",
                name,
                Str,
                Int,
                c.into(),
                format!("counts how many times the letter '{c}' appears in {{a}}"),
                &[format!("return {{a}}.count('{c}')")],
                Box::new(move |x: &Py| Py::Int(x.str().matches(c).count() as i64)),
                str_phrase(),
            )
        }
        27 => {
            let a = pick(r, &["a", "e", "o", "s", "t", "r"]);
            let b = pick(r, &["x", "z", "q", "_", "-", "*"]);
            let name = format!("{}_{}", pick(r, &["replace", "swap"]), a);
            d(
                "replace_char",
                name,
                Str,
                Str,
                format!("{a},{b}"),
                format!("returns {{a}} with every '{a}' replaced by '{b}'"),
                &[format!("return {{a}}.replace('{a}', '{b}')")],
                Box::new(move |x: &Py| Py::Str(x.str().replace(a, b))),
                str_phrase(),
            )
        }
        28 => {
            let p = pick(r, &["s", "b", "r", "t", "l", "g", "c", "d", "h", "w"]);
            let name = format!("{}_{p}", pick(r, &["starts_with", "begins_with"]));
            d(
                "starts_with",
                name,
                Str,
                Bool,
                p.into(),
                format!("checks whether {{a}} starts with '{p}'"),
                &[format!("return {{a}}.startswith('{p}')")],
                Box::new(move |x: &Py| Py::Bool(x.str().starts_with(p))),
                str_word(),
            )
        }
        29 => {
            let k = r.random_range(1..=5);
            let name = format!("{}_{k}", pick(r, &["first_chars", "head"]));
            d(
                "first_k",
                name,
                Str,
                Str,
                format!("{k}"),
                format!("returns the first {k} characters of {{a}}"),
                &[format!("return {{a}}[:{k}]")],
                Box::new(move |x: &Py| Py::Str(x.str().chars().take(k).collect())),
                str_phrase(),
            )
        }
        30 => {
            let k = r.random_range(1..=5);
            let name = format!("{}_{k}", pick(r, &["last_chars", "tail"]));
            d(
                "last_k",
                name,
                Str,
                Str,
                format!("{k}"),
                format!("returns the last {k} characters of {{a}}"),
                &[format!("return {{a}}[-{k}:]")],
                Box::new(move |x: &Py| {
                    let s = x.str();
                    Py::Str(s[s.len().saturating_sub(k)..].to_string())
                }),
                str_phrase(),
            )
        }
        31 => {
            let k = r.random_range(3..=6);
            let name = format!(
                "{}_{k}",
                pick(r, &["shout_if_longer_than", "upper_if_over"])
            );
            d(
                "upper_if_long",
                name,
                Str,
                Str,
                format!("{k}"),
                format!(
                    "returns {{a}} in uppercase if it is longer than {k} characters, otherwise unchanged"
                ),
                &[
                    format!("if len({{a}}) > {k}:"),
                    "    return {a}.upper()".into(),
                    "return {a}".into(),
                ],
                Box::new(move |x: &Py| {
                    let s = x.str();
                    Py::Str(if s.len() > k {
                        s.to_uppercase()
                    } else {
                        s.to_string()
                    })
                }),
                str_word(),
            )
        }
        32 => {
            let k = r.random_range(2..=5);
            let name = format!(
                "{}_{k}",
                pick(r, &["count_words_longer_than", "long_words"])
            );
            d(
                "count_long_words",
                name,
                Str,
                Int,
                format!("{k}"),
                format!("counts the words in {{a}} that are longer than {k} letters"),
                &[format!(
                    "return len([w for w in {{a}}.split() if len(w) > {k}])"
                )],
                Box::new(move |x: &Py| {
                    Py::Int(x.str().split_whitespace().filter(|w| w.len() > k).count() as i64)
                }),
                str_phrase(),
            )
        }
        33 => {
            let &(sep, sname) = [
                ("-", "dash"),
                ("_", "underscore"),
                ("+", "plus"),
                (", ", "comma"),
                (" ", "space"),
                ("/", "slash"),
            ]
            .choose(r)
            .unwrap_or(&("-", "dash"));
            let name = format!("{}_{sname}", pick(r, &["join_with", "glue_with"]));
            d(
                "join",
                name,
                Strs,
                Str,
                sname.into(),
                format!("joins the strings in {{a}} with '{sep}'"),
                &[format!("return '{sep}'.join({{a}})")],
                Box::new(move |x: &Py| Py::Str(x.strs().join(sep))),
                Box::new(|r: &mut Rng| Py::Strs(words(r, 1, 4))),
            )
        }
        _ => {
            let &(l, rr, wname) = [
                ("(", ")", "parens"),
                ("[", "]", "brackets"),
                ("<", ">", "angles"),
                ("*", "*", "stars"),
                ("_", "_", "underscores"),
            ]
            .choose(r)
            .unwrap_or(&("(", ")", "parens"));
            let name = format!("{}_{wname}", pick(r, &["wrap_in", "surround_with"]));
            d(
                "wrap",
                name,
                Str,
                Str,
                wname.into(),
                format!("returns {{a}} wrapped in '{l}' and '{rr}'"),
                &[format!("return '{l}' + {{a}} + '{rr}'")],
                Box::new(move |x: &Py| Py::Str(format!("{l}{}{rr}", x.str()))),
                str_word(),
            )
        }
    }
}

impl Spec {
    fn signature(&self) -> String {
        format!(
            "def {}({}: {}) -> {}:",
            self.name,
            self.arg,
            self.arg_ty.hint(),
            self.ret_ty.hint()
        )
    }

    fn body_text(&self) -> String {
        self.body.iter().map(|l| format!("    {l}\n")).collect()
    }

    /// Render the spec with six distinct test inputs whose outputs are not all equal; None if
    /// the input space cannot give that (the caller draws another spec).
    pub(super) fn render(&self, r: &mut Rng) -> Option<Problem> {
        let mut cases: Vec<(Py, Py)> = Vec::new();
        for _ in 0..200 {
            if cases.len() == 6 {
                break;
            }
            let x = (self.input)(r);
            if cases.iter().all(|(y, _)| *y != x) {
                let out = (self.eval)(&x);
                cases.push((x, out));
            }
        }
        let distinct_out = cases.iter().any(|(_, o)| *o != cases[0].1);
        if cases.len() < 6 || !distinct_out {
            return None;
        }
        // The docstring example: an output that is rare among the cases and differs from the
        // input, so it shows what the function does.
        let rank = |(x, o): &(Py, Py)| (cases.iter().filter(|(_, p)| p == o).count(), x == o);
        let (example_in, example_out) = cases
            .iter()
            .min_by_key(|c| rank(c))
            .unwrap_or(&cases[0])
            .clone();
        let mut doc = self.desc.clone();
        if let Some(rest) = doc.strip_prefix(|c: char| c.is_ascii_lowercase()) {
            let first = self.desc[..1].to_ascii_uppercase();
            // "returns …" → "Return …": the docstring is imperative, like HumanEval's.
            let verb_end = rest.find(' ').unwrap_or(rest.len());
            let verb = rest[..verb_end]
                .strip_suffix('s')
                .unwrap_or(&rest[..verb_end]);
            doc = format!("{first}{verb}{}", &rest[verb_end..]);
        }
        let prompt = format!(
            "{}\n    \"\"\" {doc}.\n    >>> {}({})\n    {}\n    \"\"\"\n",
            self.signature(),
            self.name,
            example_in.repr(),
            example_out.repr()
        );
        let asserts: String = cases
            .iter()
            .map(|(x, o)| format!("    assert candidate({}) == {}\n", x.repr(), o.repr()))
            .collect();
        Some(Problem {
            solution: self.body_text(),
            test: format!("\n\ndef check(candidate):\n{asserts}"),
            entry_point: self.name.clone(),
            function: format!("{}\n{}", self.signature(), self.body_text().trim_end()),
            prompt,
            example_in,
            example_out,
        })
    }

    /// A Code Alpaca `(instruction, input, output)` for this problem, in one of three styles.
    pub(super) fn alpaca(&self, p: &Problem, r: &mut Rng) -> (String, String, String) {
        let call = format!("{}({})", self.name, self.arg);
        match r.random_range(0..10) {
            0..=4 => {
                let instruction = match r.random_range(0..3) {
                    0 => format!("Write a Python function {call} that {}.", self.desc),
                    1 => format!(
                        "Create a function {} in Python that takes {} {} and {}.",
                        self.name,
                        self.arg_ty.noun(),
                        self.arg,
                        self.desc
                    ),
                    _ => format!("Implement {call} in Python. It {}.", self.desc),
                };
                (instruction, String::new(), p.function.clone())
            }
            5..=7 => {
                let instruction = *[
                    "Complete the following Python function.",
                    "Finish this Python function.",
                ]
                .choose(r)
                .unwrap_or(&"Complete the following Python function.");
                (
                    instruction.into(),
                    p.prompt.clone(),
                    format!("{}{}", p.prompt, p.solution.trim_end()),
                )
            }
            _ => (
                format!(
                    "Write a Python function {call} that {}, then call it on the given input.",
                    self.desc
                ),
                format!("{} = {}", self.arg, p.example_in.repr()),
                format!(
                    "{}\n\nprint({}({}))  # {}",
                    p.function,
                    self.name,
                    p.example_in.repr(),
                    p.example_out.display()
                ),
            ),
        }
    }
}
