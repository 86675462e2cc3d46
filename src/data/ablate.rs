//! The ShareGPT code/math ablation: the paper tagged ShareGPT with an LLM tagger (InsTag) and
//! removed the conversations whose tags mention code or math. This module replaces the tagger with
//! a transparent, deterministic rule detector ([`RuleDetector`]) behind a pluggable [`Detector`]
//! trait, so that an LLM tagger over an OpenAI-compatible endpoint ([`HttpTagger`]) can replace it.
//!
//! # The rule detector (`rules-v2`)
//! The detector reads every turn of a conversation (user, assistant and system). Fenced blocks
//! (```` ``` ```` … ```` ``` ````, an unclosed fence running to the end of its turn) are *code
//! blocks*; the rest of a turn is *prose*; *plain prose* is prose without inline `` `code` ``
//! spans and without pasted code lines (see `pasted-code`). ShareGPT's markdown escapes (`\*`,
//! `\_`) are undone first. A category is detected when at least one of its rules fires;
//! thresholds are the fields of [`RuleDetector`] (defaults in brackets).
//!
//! Code:
//! - `fenced-code`: code blocks hold ≥ [2] code-like lines, or one when a strong programming term
//!   (below) is present. A line is code-like when it starts like code (`def`, `import`,
//!   `const x =`, `SELECT`, `#include`, `if (`, an HTML tag, a shell command, a YAML `key: value`,
//!   a JSON `"key": value`, an S-expression `(define …` …), ends like code (`;`, `{`, `}`, `(`,
//!   `[`), is an assignment (`x = …`, `x <- …`) or calls something (`a.b(…)`, `f()`, `->`, `::`,
//!   `&&`, SQL keywords).
//!   Prose that ChatGPT wraps in a fence (tables, poems, lists) has no such lines.
//! - `pasted-code`: ≥ [3] prose lines that are unmistakably code (pasted without a fence): an
//!   import, a function or class header, a declaration, `SELECT … FROM`, or a call/assignment
//!   ending in `;` or `{`.
//! - `error-trace`: a stack trace or compiler/runtime error (`Traceback (most recent call last)`,
//!   `at f (file.js:3:7)`, `TypeError:`, `npm ERR!`, `error TS2304`, R's `Error in … :` …).
//! - `shell-command`: a line that runs a developer tool (`pip install x`, `git clone`,
//!   `docker run`, `sudo …`, `python x.py`, `npm install`, `kubectl …`).
//! - `inline-code`: ≥ [4] inline code spans of at most four words, together with at least one
//!   programming term (strong or weak, below).
//! - `programming-terms`: ≥ [6] distinct strong programming terms in prose (language and framework
//!   names that are not English words, `API`, `SQL`, `JSON`, `compiler`, `debugging`, …). Weak
//!   terms (`Python`, `function`, `string`, `script`, `React` …) never count here, so "Python" the
//!   snake or a film "script" do not make a conversation code.
//!
//! Math (read in plain prose, so `x = a + 1` inside code is not math; URLs are left out, so a
//! link slug such as `count-triangles` is not a math term):
//! - `worked-arithmetic`: ≥ [2] worked calculations: an arithmetic expression on numbers equal to
//!   a number (`0.15 × 240 = 36`; a number may carry one unit word: `$0.20/barrel * 100,000
//!   barrels = $20,000`), or a quantity set equal to one (`Gold = $10,000 * (1 - 0.025)`). In a
//!   conversation detected as code it takes twice as many: a few sums in a programming answer
//!   (octal permissions, `4+2+1 = 7`) are incidental.
//! - `latex-math`: ≥ [2] LaTeX math commands (`\frac`, `\sqrt`, `$$`, `\begin{cases}` …) in prose
//!   or in fenced blocks tagged `latex`/`tex`/`math`/`katex` (not in code: `$${price}` is a
//!   JavaScript template).
//! - `formula-block`: ≥ [2] lines of fenced blocks with an `=` and a Greek letter or a
//!   mathematical symbol (`R(t) = (1 - exp(-β t))`): ChatGPT often fences formulas as code.
//! - `algebra`: ≥ [2] algebraic notations (`x^2`, `(x - b)^2`, `2x + 3 =`, `x + y + z = 15`,
//!   `f(x) =`, a coefficient times a letter in a sum `4n + 6`, a power of a number `2^64` or
//!   `2 to the power of 64`, an equation between symbols `Fa + Fn = mg`, `√`, `∑`, `sin(x)` …).
//! - `word-problem`: a sentence of a user turn of ≤ [1500] characters that asks a quantitative
//!   question (`how many`, `what is the probability`, `calculate`, `solve` …) with ≥ 2 numbers,
//!   or with 1 number when the turn states ≥ 3 (the data sits in the sentences before the
//!   question); numbers are standalone (the digits of `web3` or `mp3` are not numbers); or a
//!   sentence that asks for a percentage of a number (`15% of 240`).
//! - `math-request`: a sentence of such a user turn that asks for a proof or a derivation
//!   (`prove that … divisible`, `show that … integer`, `derive the formula`) or for a formula
//!   or mathematical model (`formula to calculate …`, `math equation for …`; a sentence about a
//!   spreadsheet — Excel, cells, columns — is not one).
//! - `math-terms`: ≥ [3] distinct mathematical concepts (equation, derivative, theorem, standard
//!   deviation, net present value, …; words with everyday senses such as "matrix",
//!   "integration" or "differentiate" are not on the list), where the names of subjects (math,
//!   algebra, calculus, geometry, probability, statistics …) together count as one — a list of
//!   subjects is a curriculum, not mathematics — and markdown table rows are not read (a table
//!   of topics or resources names concepts without using them).
//!
//! # Removal and counts
//! [`ablate`] removes a conversation when a requested category is detected; one detected as
//! several counts once, under the first of them in the `remove` list. A conversation the detector
//! could not classify (an HTTP failure) is neither kept nor removed but listed in
//! [`Ablation::failed`]. For a file: `input = kept + removed + excluded + skipped + failed`, where
//! `excluded` and `skipped` are the reader's (see [`crate::data::read`]).
//!
//! # Kept output
//! [`raw_records`] re-reads the input and keys every record's original text by its id (ShareGPT
//! ids are unique), so the kept set is written as the original records ([`write_kept`]), one per
//! line, gzip-compressed when the file name ends in `.gz`: a drop-in replacement for the input.
use crate::data::example::{Example, Role};
use crate::data::read::Skipped;
use crate::error::{Error, Result};
use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

/// What a conversation can be removed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Code,
    Math,
}

impl Category {
    pub const ALL: [Category; 2] = [Category::Code, Category::Math];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Code => "code",
            Category::Math => "math",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "code" => Ok(Category::Code),
            "math" => Ok(Category::Math),
            other => Err(format!(
                "unknown category {other:?} (expected code or math)"
            )),
        }
    }
}

/// A detector's verdict on one conversation: the categories it detected, and for each the
/// evidence (a rule and what it saw, or the tags a tagger returned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub categories: Vec<Category>,
    pub evidence: Vec<(Category, String)>,
}

/// Decides which categories a conversation belongs to.
pub trait Detector {
    /// The categories detected in `ex` (each at most once).
    fn classify(&self, ex: &Example) -> Vec<Category>;

    /// Name and version, recorded in reports (e.g. `rules-v2`).
    fn name(&self) -> String;

    /// The categories with their evidence; an error when the detector could not decide (e.g. an
    /// HTTP failure). The default wraps [`Detector::classify`].
    fn decide(&self, ex: &Example) -> Result<Decision> {
        let categories = self.classify(ex);
        let evidence = categories
            .iter()
            .map(|&c| (c, format!("detected by {}", self.name())))
            .collect();
        Ok(Decision {
            categories,
            evidence,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The rule detector
// ---------------------------------------------------------------------------------------------

/// The transparent, deterministic detector documented at the top of this module. The fields are
/// its thresholds; [`Default`] gives the documented values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDetector {
    pub min_fenced_code_lines: usize,
    pub min_pasted_code_lines: usize,
    pub min_inline_code_spans: usize,
    pub min_programming_terms: usize,
    pub min_worked_arithmetic: usize,
    pub min_latex_commands: usize,
    pub min_algebra: usize,
    pub min_formula_lines: usize,
    pub max_word_problem_chars: usize,
    pub min_math_terms: usize,
}

impl Default for RuleDetector {
    fn default() -> Self {
        RuleDetector {
            min_fenced_code_lines: 2,
            min_pasted_code_lines: 3,
            min_inline_code_spans: 4,
            min_programming_terms: 6,
            min_worked_arithmetic: 2,
            min_latex_commands: 2,
            min_algebra: 2,
            min_formula_lines: 2,
            max_word_problem_chars: 1500,
            min_math_terms: 3,
        }
    }
}

/// Compile a built-in pattern with ASCII word boundaries: `\b` becomes `(?-u:\b)`, which keeps
/// the fast DFA engines usable on non-ASCII text (a Unicode `\b` forces the slow fallback).
fn re(pattern: &str) -> Regex {
    Regex::new(&ascii_boundaries(pattern)).expect("built-in pattern compiles")
}

fn re_set(patterns: &[&str]) -> RegexSet {
    RegexSet::new(
        patterns
            .iter()
            .map(|p| format!("(?i){}", ascii_boundaries(p))),
    )
    .expect("built-in patterns compile")
}

fn ascii_boundaries(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push_str("(?-u:\\b)"),
            Some(n) => {
                out.push('\\');
                out.push(n);
            }
            None => out.push('\\'),
        }
    }
    out
}

const CODE_START: &str = concat!(
    r#"^\s*(?:import\s+[\w.{*]|from\s+[\w.]+\s+import\b|def\s+\w+\s*\(|class\s+\w+|return\b|#include\b|#!/|using\s+[\w.]+;|"#,
    r#"namespace\s+\w|(?:public|private|protected|static|final|override|virtual)\s+\w|(?:const|let|var)\s+\w+\s*=|"#,
    r#"function\s*\w*\s*\(|(?:async|await)\s|package\s+[\w.]+|fn\s+\w+|impl\b|struct\s+\w+|func\s+\w+|"#,
    r#"(?:SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|CREATE\s+(?:TABLE|INDEX|VIEW|DATABASE)|DELETE\s+FROM|ALTER\s+TABLE|DROP\s+TABLE)\b|"#,
    r#"(?:if|elif|while|for|switch|catch)\s*\(|(?:if|elif|while)\s+.*(?:==|!=|<=|>=|\bnot\b|\bis\b|\bin\b|\(|\)).*:\s*$|"#,
    r#"for\s+\w+(?:,\s*\w+)*\s+in\s+.*:\s*$|else\s*[:{]|try\s*[:{]|except\b|"#,
    r#"print\s*\(|console\.\w+\(|System\.out\.|echo\s|sudo\s|pip3?\s+install|npm\s+(?:install|run|i)\b|yarn\s|git\s+\w|docker\s+\w|kubectl\s|"#,
    r#"cd\s+[\w./~]|mkdir\s|curl\s|wget\s|apt(?:-get)?\s+install|\$\s+\w|<\?php|</?[a-zA-Z][\w-]*(?:\s[^<>]*)?/?>|@\w+(?:\(|$)|\}\s*(?:else|catch|while)\b|"#,
    r#"-?\s*[\w.-]+:\s*(?:["'$\w./{\[-]\S*)?\s*$|"[^"]+"\s*:\s*\S|\(:?[\w-]{2,}[\s)])"#,
);
const CODE_END: &str = r"(?:;|\{|\}|\);|\)\s*\{|=>\s*\{?|\[|\()\s*$";
const CODE_ASSIGN: &str = r#"^\s*[\w.\[\]'"]+\s*(?:=|\+=|-=|:=|<-|==)\s*\S"#;
const CODE_CALL: &str = concat!(
    r#"\b\w+(?:\.\w+)+\([^)]*\)|\b\w+\([^()]*\)\s*;?\s*$|\w+\[['"\w]+\]|->|::|&&|\|\||!=|"#,
    r"\b(?:SELECT|FROM|WHERE|JOIN|GROUP BY|ORDER BY|VALUES)\b",
);
const PASTED_CODE: &str = concat!(
    r#"^\s*(?:import\s+[\w.]+|from\s+[\w.]+\s+import\b|def\s+\w+\s*\(.*\)\s*:|#include\s*[<"]|"#,
    r"(?:public|private|protected)\s+(?:static\s+)?\w+\s+\w+\s*\(|(?:const|let|var)\s+\w+\s*=|function\s+\w+\s*\(|",
    r"SELECT\s+.+\s+FROM\b|CREATE\s+TABLE\b|console\.log\(|System\.out\.println|\w+(?:\.\w+)+\(.*\);)",
    r"|^.*(?:\w\(|=).*[;{]\s*$",
);
const ERROR_TRACE: &str = concat!(
    r"(?m)Traceback \(most recent call last\)|^\s*at [\w$.<>]+ ?\(.*:\d+(?::\d+)?\)|Exception in thread|",
    r"\b(?:TypeError|SyntaxError|ReferenceError|ValueError|KeyError|AttributeError|IndexError|NameError|ImportError|",
    r"ModuleNotFoundError|NullPointerException|RuntimeError|ZeroDivisionError|IllegalArgumentException|",
    r"ClassNotFoundException|FileNotFoundError|UnboundLocalError):|",
    r"\berror (?:TS|CS|C)\d{3,5}\b|npm ERR!|Segmentation fault|undefined reference to|cannot find symbol|",
    r"Uncaught \w+Error|\bline \d+, in \w+|could not find function|^Error in \S.* : ",
);
const SHELL: &str = concat!(
    r"(?m)^\s*(?:\$\s+|>\s+)?(?:sudo\s+\S+|pip3?\s+install\s+\S+|npm\s+(?:install|i|run)\s+\S*|yarn\s+add\s+\S+|",
    r"git\s+(?:clone|commit|push|pull|checkout|add)\b|",
    r"docker(?:-compose)?\s+(?:run|build|exec|ps|pull|push|compose|images|rmi|tag)\b|kubectl\s+\w+|",
    r"apt(?:-get)?\s+install\s+\S+|brew\s+install\s+\S+|conda\s+(?:install|create|activate)\b|",
    r"python3?\s+[\w/.-]+\.py\b|node\s+[\w/.-]+\.js\b|chmod\s+[+\w]+|ssh\s+\w+@)",
);
/// Strong programming terms, one concept per pattern.
const STRONG_TERMS: &[&str] = &[
    r"\bjavascript\b",
    r"\btypescript\b",
    r"(?:^|\W)c\+\+",
    r"(?:^|\W)c#",
    r"\bgolang\b",
    r"\bkotlin\b",
    r"\bphp\b",
    r"\bnode\.?js\b",
    r"\b(?:reactjs|react\.js|react native)\b",
    r"\bdjango\b",
    r"\bflask\b",
    r"\bspring boot\b",
    r"\blaravel\b",
    r"\bjquery\b",
    r"\bnumpy\b",
    r"\bpandas\b",
    r"\bmatplotlib\b",
    r"\btensorflow\b",
    r"\bpytorch\b",
    r"\b(?:scikit-learn|sklearn)\b",
    r"\bsql\b",
    r"\bmysql\b",
    r"\bpostgres(?:ql)?\b",
    r"\bsqlite\b",
    r"\bmongodb\b",
    r"\bhtml\b",
    r"\bcss\b",
    r"\bjson\b",
    r"\byaml\b",
    r"\b(?:regex|regular expressions?)\b",
    r"\bapis?\b",
    r"\bendpoints?\b",
    r"\bsdk\b",
    r"\bgithub\b",
    r"\bgit\b",
    r"\bdockerfile\b",
    r"\bkubernetes\b",
    r"\bnpm\b",
    r"\bcompil(?:e|es|ed|ing|er|ers|ation)\b",
    r"\bdebug(?:ging|ger)?\b",
    r"\bstack ?trace\b",
    r"\bsyntax error\b",
    r"\bsource code\b",
    r"\bcodebase\b",
    r"\brefactor(?:ing)?\b",
    r"\bunit tests?\b",
    r"\bprogramming\b",
    r"\bprogrammers?\b",
    r"\bcoding\b",
    r"\blocalhost\b",
    r"\bruntime\b",
    r"\bcallbacks?\b",
    r"\bbash\b",
    r"\bpowershell\b",
    r"\bvba\b",
    r"\bmatlab\b",
    r"\barduino\b",
    r"\bboolean\b",
    r"\b(?:backend|back-end)\b",
    r"\b(?:frontend|front-end)\b",
    r"\bcommand[ -]line\b",
    r"\bide\b",
    r"\bstdout\b",
    r"\bhttp requests?\b",
    r"\bweb ?sockets?\b",
    r"\boauth\b",
    r"\bgraphql\b",
    r"\brest api\b",
    r"\blambda functions?\b",
];
/// Weak programming terms: common English words too, only supporting `inline-code`.
const WEAK_TERMS: &[&str] = &[
    r"\bpython\b",
    r"\bjava\b",
    r"\bruby\b",
    r"\bswift\b",
    r"\brust\b",
    r"\breact\b",
    r"\bangular\b",
    r"\bunity\b",
    r"\bshell\b",
    r"\bterminal\b",
    r"\bscripts?\b",
    r"\bfunctions?\b",
    r"\bmethods?\b",
    r"\bvariables?\b",
    r"\bstrings?\b",
    r"\barrays?\b",
    r"\bintegers?\b",
    r"\blibrar(?:y|ies)\b",
    r"\bframeworks?\b",
    r"\bexceptions?\b",
    r"\bclass(?:es)?\b",
    r"\bobjects?\b",
    r"\bloops?\b",
    r"\bdatabases?\b",
    r"\bservers?\b",
    r"\blinux\b",
    r"\bubuntu\b",
    r"\bdocker\b",
    r"\bcode\b",
    r"\bbugs?\b",
    r"\bsyntax\b",
    r"\bparameters?\b",
    r"\bdeploy(?:ment)?\b",
    r"\bquery\b",
];
const LATEX: &str = concat!(
    r"\$\$[^{]|\\frac|\\sqrt|\\sum|\\int|\\begin\{(?:cases|align|equation|pmatrix|bmatrix)|\\cdot|\\times|",
    r"\\leq?\b|\\geq?\b|\\pi\b|\\alpha|\\theta|\\infty|\\partial|\\lim\b",
);
const NUMBER: &str = r"\(?-?\$?\d[\d,]*(?:\.\d+)?%?\)?";
const ALGEBRA: &str = concat!(
    r"\b[a-zA-Z]\s*\^\s*\d|\)\s*\^\s*\d|\b[a-z]\s*[-+*/]\s*[a-z](?:\s*[-+*/]\s*[a-z])*\s*=\s*-?\d|\b\d*[a-z]\s*[-+]\s*\d+\s*=|\bf\s*\(\s*[a-z]\s*\)\s*=|\b[a-z]\s*=\s*-?\d+(?:\.\d+)?\s*[-+*/]\s*\d|",
    r"√|∫|∑|≤|≥|≠|π|(?:^|[^.\w])(?:sin|cos|tan|log|ln)\s*\(\s*[a-z\d]|",
    // A coefficient times a letter in a sum (`4n + 6`, `2k + 1`, `3x^2`), a power of a number
    // (`2^64`, `2^(n-1)`, `2 to the power of 64`), an equation between symbols (`Fa + Fn = mg`).
    r"\b\d+[a-z]\s+[-+]\s+\d+\b|\b\d+[a-z]\+\d+\b|\b\d+[a-z]\s*\^\s*\d|\b\d+\s*\^\s*[(\d]|\bto the power of\b|",
    r"\b[A-Za-z][a-z]?\s*[-+]\s*[A-Za-z][a-z]?\s*=\s*[A-Za-z][a-z]?\b",
);
/// A worked calculation: an arithmetic expression on numbers (a number may carry one unit word,
/// `$0.20/barrel * 100,000 barrels`) equal to a number, or a quantity set equal to one
/// (`Gold Investment = $10,000 * (1 - 0.025)`).
fn arithmetic_pattern() -> String {
    let num = format!(r"{NUMBER}(?:\s*/?\s*[a-zA-Z]{{1,12}}\b)?");
    let op = r"\s*[-+*/×÷^x]\s*\(*";
    format!(
        r"{num}(?:{op}{num})+\s*(?:=|≈)\s*\$?-?\$?\d|(?:=|≈)\s*\(*\$?-?{NUMBER}(?:{op}{NUMBER}\)*)+"
    )
}
/// A user asking to prove or derive something mathematical.
const PROOF_REQUEST: &str = concat!(
    r"(?i)\b(?:prove|show|demonstrate|verify)\b(?: that)?[^.?!\n]{0,80}\b(?:divisible|integers?|primes?|even|odd|",
    r"(?:ir)?rational|sum of|product of|equation|inequality|theorem|converges?|diverges?)\b|",
    r"\bderive (?:the |a |an )?(?:formula|equation|expression)\b",
);
/// A user asking for a formula or a mathematical model (a spreadsheet formula is not one).
const FORMULA_REQUEST: &str = concat!(
    r"(?i)\b(?:math(?:s|ematical)?|algebraic) (?:equations?|formulas?|formulae|models?|proofs?)\b|",
    r"\b(?:formulas?|formulae|equations?)\b[^.?!\n]{0,40}\b(?:to|for|of) (?:calculate|compute|determine|find|estimate|solve)\b|",
    r"\b(?:calculate|compute|determine)\b[^.?!\n]{0,40}\b(?:formula|equation)\b",
);
const SPREADSHEET: &str =
    r"(?i)\b(?:excel|spreadsheets?|google sheets|cells?|columns?|vlookup|xlookup)\b";
/// A formula line in a fenced block: an `=` with Greek letters or mathematical symbols
/// (ChatGPT often fences formulas as ```` ```css ````).
const FORMULA_LINE: &str = r"=.*[α-ωΑ-Ω∑∫√≤≥≠π∞∂]|[α-ωΑ-Ω∑∫√≤≥≠π∞∂].*=";
const URL: &str = r"https?://\S+|www\.\S+";
const QUESTION: &str = concat!(
    r"(?i)\b(?:how (?:many|much|long|far|fast|old)|",
    r"what (?:is|are|was|will be) the (?:probability|chance|odds|average|mean|sum|total|product|difference|value of|ratio|percentage|area|volume|perimeter)|",
    r"calculate|compute|solve|what percent(?:age)?|find the (?:value|sum|area|number|probability|derivative|integral|roots?))\b",
);
/// Names of mathematical subjects: together they count as ONE term, since a list of subjects
/// ("math, algebra, geometry, calculus") is a curriculum, not mathematics being done.
const MATH_SUBJECTS: &[&str] = &[
    r"\b(?:math|maths|mathematics|mathematical)\b",
    r"\balgebra(?:ic)?\b",
    r"\bcalculus\b",
    r"\bgeometry\b",
    r"\b(?:trigonometr\w*)\b",
    r"\barithmetic\b",
    r"\bprobabilit(?:y|ies)\b",
    r"\bstatistics\b",
    r"\btopology\b",
    r"\bcategory theory\b",
    r"\bset theory\b",
    r"\bcombinatorics\b",
    r"\bnumber theory\b",
];
/// Mathematical concepts, one per pattern.
const MATH_TERMS: &[&str] = &[
    r"\bequations?\b",
    r"\bpolynomials?\b",
    r"\bderivatives?\b",
    r"\bintegrals?\b",
    r"\btheorems?\b",
    r"\blemmas?\b",
    r"\beigen(?:value|vector)s?\b",
    r"\bvector spaces?\b",
    r"\blogarithms?\b",
    r"\bexponents?\b",
    r"\bquadratic\b",
    r"\bhypotenuse\b",
    r"\btriangles?\b",
    r"\bperimeter\b",
    r"\bcircumference\b",
    r"\b(?:denominator|numerator)s?\b",
    r"\bprime numbers?\b",
    r"\bfactorial\b",
    r"\bpermutations?\b",
    r"\bvariance\b",
    r"\bstandard deviation\b",
    r"\b(?:interquartile|percentiles?)\b",
    r"\b(?:net present value|npv)\b",
    r"\b(?:internal rate of return|irr)\b",
    r"\bcompound interest\b",
    r"\bmodulo\b",
    r"\breal numbers?\b",
    r"\bempty set\b",
    r"\bmonoids?\b",
    r"\b(?:endo)?functors?\b",
    r"\bdifferential equations?\b",
    r"\bfinite element\b",
    r"\b(?:sine|cosine)\b",
    r"\bsquare roots?\b",
    r"\bexpected value\b",
    r"\bbinomial\b",
    r"\bsolve for\b",
    r"\bmatri(?:x multiplication|ces)\b",
    r"\b(?:prove that|proof that|mathematical proof)\b",
];

struct Rules {
    fence: Regex,
    inline: Regex,
    code_start: Regex,
    code_end: Regex,
    code_assign: Regex,
    code_call: Regex,
    pasted_code: Regex,
    error_trace: Regex,
    shell: Regex,
    strong_terms: RegexSet,
    weak_terms: RegexSet,
    latex: Regex,
    arithmetic: Regex,
    algebra: Regex,
    question: Regex,
    percent_of: Regex,
    number: Regex,
    sentence_break: Regex,
    math_subjects: RegexSet,
    math_terms: RegexSet,
    proof_request: Regex,
    formula_request: Regex,
    spreadsheet: Regex,
    formula_line: Regex,
    url: Regex,
}

static RULES: LazyLock<Rules> = LazyLock::new(|| Rules {
    fence: re(r"(?s)```([^\n`]*)\n(.*?)(?:```|\z)"),
    inline: re(r"`([^`\n]{1,200})`"),
    code_start: re(CODE_START),
    code_end: re(CODE_END),
    code_assign: re(CODE_ASSIGN),
    code_call: re(CODE_CALL),
    pasted_code: re(PASTED_CODE),
    error_trace: re(ERROR_TRACE),
    shell: re(SHELL),
    strong_terms: re_set(STRONG_TERMS),
    weak_terms: re_set(WEAK_TERMS),
    latex: re(LATEX),
    arithmetic: re(&arithmetic_pattern()),
    algebra: re(ALGEBRA),
    question: re(QUESTION),
    percent_of: re(r"\d+(?:\.\d+)?\s*%\s*of\s*\$?\d"),
    number: re(r"\b\d+(?:[.,]\d+)*\b"),
    sentence_break: re(r"[.?!]\s+|\n"),
    math_subjects: re_set(MATH_SUBJECTS),
    math_terms: re_set(MATH_TERMS),
    proof_request: re(PROOF_REQUEST),
    formula_request: re(FORMULA_REQUEST),
    spreadsheet: re(SPREADSHEET),
    formula_line: re(FORMULA_LINE),
    url: re(URL),
});

/// One turn split into its fenced code blocks and its prose.
struct Split {
    role: Role,
    chars: usize,
    /// The turn with ShareGPT's markdown escapes (`\*`, `\_`) undone.
    text: String,
    /// The bodies of the fenced blocks.
    blocks: Vec<String>,
    /// The bodies of the fenced blocks tagged `latex`, `tex`, `math` or `katex`, joined.
    tex_blocks: String,
    prose: String,
    /// Prose without inline code spans, without code lines pasted outside fences and without
    /// URLs: where math is looked for.
    plain: String,
}

fn split_turn(role: Role, content: &str) -> Split {
    let r = &*RULES;
    let text = if content.contains('\\') {
        content.replace("\\*", "*").replace("\\_", "_")
    } else {
        content.to_string()
    };
    let mut blocks = Vec::new();
    let mut tex_blocks = String::new();
    for c in r.fence.captures_iter(&text) {
        let tag = c[1].trim().to_ascii_lowercase();
        if matches!(tag.as_str(), "latex" | "tex" | "math" | "katex") {
            tex_blocks.push_str(&c[2]);
            tex_blocks.push('\n');
        }
        blocks.push(c[2].to_string());
    }
    let prose = r.fence.replace_all(&text, "\n").into_owned();
    let no_spans = r.inline.replace_all(&prose, " ");
    let plain = r
        .url
        .replace_all(&no_spans, " ")
        .lines()
        .filter(|l| !r.pasted_code.is_match(l))
        .collect::<Vec<_>>()
        .join("\n");
    Split {
        role,
        chars: content.chars().count(),
        text,
        blocks,
        tex_blocks,
        prose,
        plain,
    }
}

fn code_like(line: &str) -> bool {
    let s = line.trim();
    if s.chars().count() < 2 {
        return false;
    }
    let r = &*RULES;
    r.code_start.is_match(s)
        || r.code_end.is_match(s)
        || r.code_assign.is_match(s)
        || r.code_call.is_match(s)
}

/// A short, single-line excerpt of a match for evidence strings.
fn excerpt(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    }
}

fn distinct_terms(set: &RegexSet, texts: &[&str]) -> Vec<usize> {
    let mut hit = vec![false; set.len()];
    for t in texts {
        for i in set.matches(t).iter() {
            hit[i] = true;
        }
    }
    hit.iter()
        .enumerate()
        .filter(|(_, h)| **h)
        .map(|(i, _)| i)
        .collect()
}

/// A readable name for a term pattern: the pattern without regex syntax.
fn term_name(pattern: &str) -> String {
    let p = pattern.replace(r"(?:^|\W)", "").replace(r"\b", "");
    let p = p.split('|').next().unwrap_or("").to_string();
    p.chars()
        .filter(|c| !matches!(c, '(' | ')' | '?' | ':' | '\\' | '^'))
        .collect()
}

/// What the rules measure in one conversation, before any threshold: the counts behind every
/// rule (the learned detector's dense features) and the first match of each, for evidence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleCounts {
    /// Code-like lines in fenced blocks (`fenced-code`).
    pub fenced_lines: usize,
    /// Fenced blocks.
    pub fenced_blocks: usize,
    /// Unmistakable code lines outside fences (`pasted-code`).
    pub pasted_lines: usize,
    /// Whether a stack trace or compiler/runtime error appears (`error-trace`).
    pub error_trace: bool,
    /// Whether a line runs a developer tool (`shell-command`).
    pub shell: bool,
    /// Inline code spans of at most four words (`inline-code`).
    pub inline_spans: usize,
    /// Distinct strong programming terms in prose (`programming-terms`).
    pub strong_terms: usize,
    /// Distinct weak programming terms in prose.
    pub weak_terms: usize,
    /// Worked calculations in plain prose (`worked-arithmetic`).
    pub arithmetic: usize,
    /// LaTeX math commands (`latex-math`).
    pub latex: usize,
    /// Formula lines in fenced blocks (`formula-block`).
    pub formula_lines: usize,
    /// Algebraic notations in plain prose (`algebra`).
    pub algebra: usize,
    /// Whether a short user turn asks a numeric question (`word-problem`).
    pub word_problem: bool,
    /// Whether a short user turn asks for a proof, derivation or formula (`math-request`).
    pub math_request: bool,
    /// Whether a mathematical subject is named outside tables.
    pub math_subject: bool,
    /// Distinct mathematical concepts outside tables.
    pub math_concepts: usize,
    /// First matches and names, for evidence strings.
    examples: Examples,
}

/// First matches of the rules, for evidence strings.
#[derive(Debug, Clone, Default, PartialEq)]
struct Examples {
    fenced: String,
    pasted: String,
    error_trace: String,
    shell: String,
    span: String,
    code_terms: Vec<String>,
    strong_terms: Vec<String>,
    arithmetic: String,
    formula: String,
    algebra: String,
    word_problem: String,
    math_request: String,
    math_terms: Vec<String>,
}

impl RuleCounts {
    /// Distinct mathematical concepts, with the subjects counted once (`math-terms`).
    pub fn math_terms(&self) -> usize {
        self.math_concepts + usize::from(self.math_subject)
    }
}

impl RuleDetector {
    /// Measure every rule on `ex` (see [`RuleCounts`]); [`RuleDetector::explain`] applies the
    /// thresholds.
    pub fn measure(&self, ex: &Example) -> RuleCounts {
        let r = &*RULES;
        let turns: Vec<Split> = ex
            .turns
            .iter()
            .map(|t| split_turn(t.role, &t.content))
            .collect();
        let mut c = RuleCounts::default();
        let first = |v: &[&str], max: usize| v.first().map(|s| excerpt(s, max)).unwrap_or_default();

        // --- code ---
        let prose: Vec<&str> = turns.iter().map(|t| t.prose.as_str()).collect();
        let strong = distinct_terms(&r.strong_terms, &prose);
        let weak = distinct_terms(&r.weak_terms, &prose);
        c.fenced_blocks = turns.iter().map(|t| t.blocks.len()).sum();
        let fenced: Vec<&str> = turns
            .iter()
            .flat_map(|t| t.blocks.iter())
            .flat_map(|b| b.lines())
            .filter(|l| code_like(l))
            .collect();
        c.fenced_lines = fenced.len();
        c.examples.fenced = first(&fenced, 50);
        let pasted: Vec<&str> = turns
            .iter()
            .flat_map(|t| t.prose.lines())
            .filter(|l| r.pasted_code.is_match(l))
            .collect();
        c.pasted_lines = pasted.len();
        c.examples.pasted = first(&pasted, 50);
        if let Some(m) = turns.iter().find_map(|t| r.error_trace.find(&t.text)) {
            c.error_trace = true;
            c.examples.error_trace = excerpt(m.as_str(), 50);
        }
        if let Some(m) = turns.iter().find_map(|t| r.shell.find(&t.text)) {
            c.shell = true;
            c.examples.shell = excerpt(m.as_str(), 50);
        }
        let spans: Vec<&str> = turns
            .iter()
            .flat_map(|t| r.inline.captures_iter(&t.text))
            .map(|c| c.get(1).map_or("", |m| m.as_str()))
            .filter(|s| s.split_whitespace().count() <= 4 && !s.trim().is_empty())
            .collect();
        c.inline_spans = spans.len();
        c.examples.span = first(&spans, 30);
        c.strong_terms = strong.len();
        c.weak_terms = weak.len();
        c.examples.code_terms = strong
            .iter()
            .map(|&i| term_name(STRONG_TERMS[i]))
            .chain(weak.iter().map(|&i| term_name(WEAK_TERMS[i])))
            .take(4)
            .collect();
        c.examples.strong_terms = strong
            .iter()
            .take(8)
            .map(|&i| term_name(STRONG_TERMS[i]))
            .collect();

        // --- math ---
        let plain: Vec<&str> = turns.iter().map(|t| t.plain.as_str()).collect();
        let arithmetic: Vec<&str> = plain
            .iter()
            .flat_map(|t| r.arithmetic.find_iter(t))
            .map(|m| m.as_str())
            .collect();
        c.arithmetic = arithmetic.len();
        c.examples.arithmetic = first(&arithmetic, 40);
        c.latex = turns
            .iter()
            .map(|t| r.latex.find_iter(&t.prose).count() + r.latex.find_iter(&t.tex_blocks).count())
            .sum::<usize>();
        let formulas: Vec<&str> = turns
            .iter()
            .flat_map(|t| t.blocks.iter())
            .flat_map(|b| b.lines())
            .filter(|l| r.formula_line.is_match(l))
            .collect();
        c.formula_lines = formulas.len();
        c.examples.formula = first(&formulas, 40);
        let algebra: Vec<&str> = plain
            .iter()
            .flat_map(|t| r.algebra.find_iter(t))
            .map(|m| m.as_str())
            .collect();
        c.algebra = algebra.len();
        c.examples.algebra = first(&algebra, 30);
        let short_user_turns = || {
            turns
                .iter()
                .filter(|t| t.role == Role::User && t.chars <= self.max_word_problem_chars)
        };
        if let Some(sentence) = short_user_turns().find_map(|t| {
            let in_turn = r.number.find_iter(&t.prose).count();
            r.sentence_break.split(&t.prose).find(|s| {
                let in_sentence = r.number.find_iter(s).count();
                r.percent_of.is_match(s)
                    || (r.question.is_match(s)
                        && (in_sentence >= 2 || (in_sentence >= 1 && in_turn >= 3)))
            })
        }) {
            c.word_problem = true;
            c.examples.word_problem = excerpt(sentence, 60);
        }
        if let Some(sentence) = short_user_turns()
            .flat_map(|t| r.sentence_break.split(&t.prose))
            .find(|s| {
                r.proof_request.is_match(s)
                    || (r.formula_request.is_match(s) && !r.spreadsheet.is_match(s))
            })
        {
            c.math_request = true;
            c.examples.math_request = excerpt(sentence, 60);
        }
        // Table rows are left out: a table of topics or resources names concepts without using
        // them (a table of worked numbers is caught by the rules above).
        let untabled: Vec<String> = plain
            .iter()
            .map(|t| {
                t.lines()
                    .filter(|l| !l.trim_start().starts_with('|'))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        let untabled: Vec<&str> = untabled.iter().map(String::as_str).collect();
        let subjects = distinct_terms(&r.math_subjects, &untabled);
        let concepts = distinct_terms(&r.math_terms, &untabled);
        c.math_subject = !subjects.is_empty();
        c.math_concepts = concepts.len();
        c.examples.math_terms = subjects
            .iter()
            .map(|&i| term_name(MATH_SUBJECTS[i]))
            .chain(concepts.iter().map(|&i| term_name(MATH_TERMS[i])))
            .take(8)
            .collect();
        c
    }

    /// Every rule that fires on `ex`, in the order documented above, with what it saw.
    pub fn explain(&self, ex: &Example) -> Vec<(Category, String)> {
        self.explain_counts(&self.measure(ex))
    }

    /// The rules that fire given the measured counts (see [`RuleDetector::explain`]).
    pub fn explain_counts(&self, c: &RuleCounts) -> Vec<(Category, String)> {
        let e = &c.examples;
        let mut out = Vec::new();
        let code = |out: &mut Vec<(Category, String)>, s: String| out.push((Category::Code, s));
        let math = |out: &mut Vec<(Category, String)>, s: String| out.push((Category::Math, s));

        if c.fenced_lines > 0
            && (c.fenced_lines >= self.min_fenced_code_lines || c.strong_terms > 0)
        {
            code(
                &mut out,
                format!(
                    "fenced-code: {} code-like lines in {} fenced block(s), e.g. {:?}",
                    c.fenced_lines, c.fenced_blocks, e.fenced
                ),
            );
        }
        if c.pasted_lines >= self.min_pasted_code_lines {
            code(
                &mut out,
                format!(
                    "pasted-code: {} code lines outside fences, e.g. {:?}",
                    c.pasted_lines, e.pasted
                ),
            );
        }
        if c.error_trace {
            code(&mut out, format!("error-trace: {:?}", e.error_trace));
        }
        if c.shell {
            code(&mut out, format!("shell-command: {:?}", e.shell));
        }
        if c.inline_spans >= self.min_inline_code_spans && c.strong_terms + c.weak_terms > 0 {
            code(
                &mut out,
                format!(
                    "inline-code: {} inline code spans, e.g. {:?}, with programming terms {}",
                    c.inline_spans,
                    e.span,
                    e.code_terms.join(", ")
                ),
            );
        }
        if c.strong_terms >= self.min_programming_terms {
            code(
                &mut out,
                format!(
                    "programming-terms: {} distinct ({})",
                    c.strong_terms,
                    e.strong_terms.join(", ")
                ),
            );
        }

        // In a conversation that is code, worked arithmetic needs twice the threshold: a few
        // sums in a programming answer (octal permissions, 4+2+1 = 7) are incidental.
        let code_found = !out.is_empty();
        let min_arithmetic = self.min_worked_arithmetic * if code_found { 2 } else { 1 };
        if c.arithmetic >= min_arithmetic {
            math(
                &mut out,
                format!(
                    "worked-arithmetic: {} calculations, e.g. {:?}",
                    c.arithmetic, e.arithmetic
                ),
            );
        }
        if c.latex >= self.min_latex_commands {
            math(
                &mut out,
                format!("latex-math: {} LaTeX math commands", c.latex),
            );
        }
        if c.formula_lines >= self.min_formula_lines {
            math(
                &mut out,
                format!(
                    "formula-block: {} formula lines in fenced blocks, e.g. {:?}",
                    c.formula_lines, e.formula
                ),
            );
        }
        if c.algebra >= self.min_algebra {
            math(
                &mut out,
                format!(
                    "algebra: {} algebraic notations, e.g. {:?}",
                    c.algebra, e.algebra
                ),
            );
        }
        if c.word_problem {
            math(&mut out, format!("word-problem: {:?}", e.word_problem));
        }
        if c.math_request {
            math(&mut out, format!("math-request: {:?}", e.math_request));
        }
        if c.math_terms() >= self.min_math_terms {
            math(
                &mut out,
                format!(
                    "math-terms: {} distinct, subjects counted once ({})",
                    c.math_terms(),
                    e.math_terms.join(", ")
                ),
            );
        }
        out
    }
}

impl Detector for RuleDetector {
    fn classify(&self, ex: &Example) -> Vec<Category> {
        categories_of(&self.explain(ex))
    }

    fn name(&self) -> String {
        "rules-v2".to_string()
    }

    fn decide(&self, ex: &Example) -> Result<Decision> {
        let evidence = self.explain(ex);
        Ok(Decision {
            categories: categories_of(&evidence),
            evidence,
        })
    }
}

/// The distinct categories of some evidence, in order of first appearance.
fn categories_of(evidence: &[(Category, String)]) -> Vec<Category> {
    let mut cats = Vec::new();
    for (c, _) in evidence {
        if !cats.contains(c) {
            cats.push(*c);
        }
    }
    cats
}

// ---------------------------------------------------------------------------------------------
// The HTTP tagger
// ---------------------------------------------------------------------------------------------

/// The InsTag prompt (Lu et al. 2023): open-ended intention tags for a user query.
const TAGGER_PROMPT: &str = "You are a helpful assistant. Please identify tags of user intentions in the following \
user query and provide an explanation for each tag. Please respond in the JSON format {\"tag\": str, \"explanation\": str}.";

/// Words (or word starts) that map a tag to a category.
const CODE_TAG_WORDS: &[&str] = &[
    "code",
    "coding",
    "program",
    "software",
    "debug",
    "sql",
    "python",
    "javascript",
    "java",
    "c++",
    "c#",
    "html",
    "css",
    "script",
    "api",
    "database",
    "algorithm",
    "web development",
    "regex",
    "shell",
    "command line",
    "git",
    "docker",
    "data structure",
    "compil",
];
const MATH_TAG_WORDS: &[&str] = &[
    "math",
    "arithmetic",
    "calculat",
    "algebra",
    "geometry",
    "equation",
    "probabilit",
    "statistic",
    "calculus",
    "number theory",
    "percentage",
    "word problem",
    "trigonometry",
    "proof",
];

/// An LLM tagger behind an OpenAI-compatible chat-completions endpoint: it sends the user turns
/// with the InsTag prompt, parses the returned tags and maps them to categories
/// ([`tags_to_categories`]). One request per conversation.
pub struct HttpTagger {
    base_url: String,
    model: String,
    api_key: Option<String>,
    agent: ureq::Agent,
    /// At most this many characters of user text are sent.
    pub max_chars: usize,
}

impl HttpTagger {
    /// `base_url` is the API root (e.g. `https://api.openai.com/v1`); `api_key`, when given, is
    /// sent as a Bearer token. Requests time out after `timeout`.
    pub fn new(base_url: &str, model: &str, api_key: Option<String>, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .build()
            .into();
        HttpTagger {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key,
            agent,
            max_chars: 4000,
        }
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    /// The tags the endpoint returns for `ex`.
    pub fn tags(&self, ex: &Example) -> Result<Vec<String>> {
        let url = self.url();
        let fail = |message: String| Error::Fetch {
            url: url.clone(),
            message,
        };
        let query: String = ex
            .turns
            .iter()
            .filter(|t| t.role == Role::User)
            .map(|t| t.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
            .chars()
            .take(self.max_chars)
            .collect();
        let body = json!({
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": TAGGER_PROMPT},
                {"role": "user", "content": query},
            ],
        });
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let text = request
            .send(body.to_string())
            .map_err(|e| fail(e.to_string()))?
            .body_mut()
            .read_to_string()
            .map_err(|e| fail(format!("reading response: {e}")))?;
        let response: Value = serde_json::from_str(&text).map_err(|e| {
            fail(format!(
                "response is not JSON ({e}): {}",
                excerpt(&text, 80)
            ))
        })?;
        let content = response
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                fail(format!(
                    "response has no choices[0].message.content: {}",
                    excerpt(&text, 80)
                ))
            })?;
        Ok(parse_tags(content))
    }
}

/// The tags in a tagger reply: the `tag` fields of the JSON objects in it (InsTag's format), or
/// the strings of a JSON list, or else its comma- or line-separated items.
pub fn parse_tags(content: &str) -> Vec<String> {
    let mut tags = Vec::new();
    let mut collect = |v: &Value| match v {
        Value::String(s) => tags.push(s.trim().to_string()),
        Value::Object(m) => {
            if let Some(t) = m.get("tag").and_then(Value::as_str) {
                tags.push(t.trim().to_string());
            }
        }
        _ => {}
    };
    let trimmed = content.trim();
    let list = trimmed
        .find('[')
        .zip(trimmed.rfind(']'))
        .and_then(|(a, b)| {
            (a < b)
                .then(|| serde_json::from_str::<Vec<Value>>(&trimmed[a..=b]).ok())
                .flatten()
        });
    if let Some(items) = list {
        items.iter().for_each(&mut collect);
    } else {
        // One object per line, or a single object.
        for line in trimmed.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line.trim().trim_end_matches(',')) {
                collect(&v);
            }
        }
        if tags.is_empty() {
            tags = trimmed
                .split([',', '\n'])
                .map(|s| {
                    s.trim()
                        .trim_matches(|c: char| c == '"' || c == '-' || c == '*')
                        .trim()
                        .to_string()
                })
                .filter(|s| !s.is_empty())
                .collect();
        }
    }
    tags
}

/// Map free-form tags to categories: a tag with a word starting like a code word (`program…`,
/// `python`, `sql`, `debug…`, `api` …) means code, one with a word starting like a math word
/// (`math…`, `calculat…`, `algebra…`, `probabilit…` …) means math.
pub fn tags_to_categories(tags: &[String]) -> Vec<Category> {
    let mut cats = Vec::new();
    for tag in tags {
        // Words separated by single spaces, with a leading space, so that " api" matches the word
        // "API" or "APIs" but not "capital", and " git" not "digital".
        let words: String = tag
            .to_lowercase()
            .split(|c: char| !(c.is_alphanumeric() || c == '+' || c == '#'))
            .filter(|w| !w.is_empty())
            .map(|w| format!(" {w}"))
            .collect();
        for (cat, starts) in [
            (Category::Code, CODE_TAG_WORDS),
            (Category::Math, MATH_TAG_WORDS),
        ] {
            if !cats.contains(&cat) && starts.iter().any(|w| words.contains(&format!(" {w}"))) {
                cats.push(cat);
            }
        }
    }
    cats.sort();
    cats
}

impl Detector for HttpTagger {
    /// The mapped categories; none when the request fails (use [`Detector::decide`], which
    /// [`ablate`] uses, to see the error).
    fn classify(&self, ex: &Example) -> Vec<Category> {
        self.decide(ex).map(|d| d.categories).unwrap_or_default()
    }

    fn name(&self) -> String {
        format!("http-tagger:{}", self.model)
    }

    fn decide(&self, ex: &Example) -> Result<Decision> {
        let tags = self.tags(ex)?;
        let categories = tags_to_categories(&tags);
        let evidence = categories
            .iter()
            .map(|&c| (c, format!("tags: {}", tags.join("; "))))
            .collect();
        Ok(Decision {
            categories,
            evidence,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The ablation
// ---------------------------------------------------------------------------------------------

/// One conversation's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub id: String,
    /// Everything the detector found (requested or not).
    pub decision: Decision,
    /// The first category of the `remove` list that was detected, if any.
    pub removed_as: Option<Category>,
    /// Why the detector could not decide (the conversation is then in [`Ablation::failed`]).
    pub error: Option<String>,
}

/// The result of [`ablate`], in input order.
#[derive(Debug, Clone)]
pub struct Ablation {
    pub kept: Vec<Example>,
    pub removed: Vec<(Example, Category)>,
    /// Conversations the detector could not classify, with the error.
    pub failed: Vec<(Example, String)>,
    /// One verdict per input conversation, in input order.
    pub verdicts: Vec<Verdict>,
}

/// Remove every conversation in which `detector` finds a category of `remove`; a conversation
/// found to be several counts under the first of them in `remove`.
pub fn ablate(examples: Vec<Example>, remove: &[Category], detector: &dyn Detector) -> Ablation {
    let mut out = Ablation {
        kept: Vec::new(),
        removed: Vec::new(),
        failed: Vec::new(),
        verdicts: Vec::new(),
    };
    for ex in examples {
        match detector.decide(&ex) {
            Ok(decision) => {
                let removed_as = remove
                    .iter()
                    .copied()
                    .find(|c| decision.categories.contains(c));
                out.verdicts.push(Verdict {
                    id: ex.id.clone(),
                    decision,
                    removed_as,
                    error: None,
                });
                match removed_as {
                    Some(c) => out.removed.push((ex, c)),
                    None => out.kept.push(ex),
                }
            }
            Err(e) => {
                let message = e.to_string();
                out.verdicts.push(Verdict {
                    id: ex.id.clone(),
                    decision: Decision::default(),
                    removed_as: None,
                    error: Some(message.clone()),
                });
                out.failed.push((ex, message));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/// Where the examples came from: the reader's accounting for the input file.
pub struct Source<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub excluded: &'a [Skipped],
    pub skipped: &'a [Skipped],
}

/// One decision shown in a report.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionExample {
    pub id: String,
    /// The rule (or tags) behind the decision; for kept conversations, what was detected but not
    /// requested (empty when nothing was).
    pub rule: String,
    /// The start of the first user turn.
    pub snippet: String,
}

/// The ablation report (`--report`). Counts satisfy
/// `input = kept + Σ removed + excluded + skipped + failed`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub input_file: String,
    pub output_file: String,
    pub detector: String,
    /// The requested categories, in precedence order.
    pub remove: Vec<Category>,
    /// Records in the input file.
    pub input: usize,
    /// Records the reader turned into conversations (the detector's input).
    pub conversations: usize,
    pub kept: usize,
    /// Removed conversations per requested category (each counted once, under its first category).
    pub removed: Map<String, Value>,
    pub removed_total: usize,
    /// `removed_total / conversations`.
    pub removed_fraction: f64,
    /// Records the reader excluded by a format rule, and why.
    pub excluded: usize,
    pub excluded_by_reason: Map<String, Value>,
    /// Malformed records skipped under `--skip-invalid`.
    pub skipped: usize,
    /// Conversations the detector could not classify (neither kept nor removed).
    pub failed: usize,
    /// Conversations in which each category was detected (requested or not); `both` = both.
    pub detected: Map<String, Value>,
    /// How often each rule fired, per category, over all conversations.
    pub rules: BTreeMap<Category, BTreeMap<String, usize>>,
    /// Example decisions: per removal category, and `kept`, in input order.
    pub decisions: Map<String, Value>,
}

fn snippet(ex: &Example) -> String {
    excerpt(ex.first_user().unwrap_or(""), 160)
}

/// The rule name of an evidence string (`fenced-code: …` → `fenced-code`).
fn rule_name(evidence: &str) -> String {
    evidence
        .split(':')
        .next()
        .unwrap_or(evidence)
        .trim()
        .to_string()
}

impl Report {
    /// Build the report, showing up to `per_decision` example decisions per outcome.
    pub fn new(
        source: &Source<'_>,
        remove: &[Category],
        detector: &str,
        ablation: &Ablation,
        per_decision: usize,
    ) -> Report {
        let conversations = ablation.verdicts.len();
        let mut removed = Map::new();
        for c in remove {
            let n = ablation.removed.iter().filter(|(_, r)| r == c).count();
            removed.insert(c.to_string(), json!(n));
        }
        let removed_total = ablation.removed.len();
        let mut excluded_by_reason = Map::new();
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for s in source.excluded {
            *reasons.entry(s.reason.as_str()).or_default() += 1;
        }
        for (reason, n) in reasons {
            excluded_by_reason.insert(reason.to_string(), json!(n));
        }
        let has = |v: &Verdict, c: Category| v.decision.categories.contains(&c);
        let mut detected = Map::new();
        for c in Category::ALL {
            detected.insert(
                c.to_string(),
                json!(ablation.verdicts.iter().filter(|v| has(v, c)).count()),
            );
        }
        let both = ablation
            .verdicts
            .iter()
            .filter(|v| Category::ALL.iter().all(|&c| has(v, c)))
            .count();
        detected.insert("both".to_string(), json!(both));
        let mut rules: BTreeMap<Category, BTreeMap<String, usize>> = BTreeMap::new();
        for v in &ablation.verdicts {
            for (c, e) in &v.decision.evidence {
                *rules
                    .entry(*c)
                    .or_default()
                    .entry(rule_name(e))
                    .or_default() += 1;
            }
        }
        let by_id: HashMap<&str, &Verdict> = ablation
            .verdicts
            .iter()
            .map(|v| (v.id.as_str(), v))
            .collect();
        let example = |ex: &Example, cat: Option<Category>| {
            let v = by_id.get(ex.id.as_str());
            let rule = v
                .map(|v| {
                    v.decision
                        .evidence
                        .iter()
                        .filter(|(c, _)| cat.is_none_or(|k| *c == k))
                        .map(|(c, e)| {
                            if cat.is_some() {
                                e.clone()
                            } else {
                                format!("{c} (not removed): {e}")
                            }
                        })
                        .next()
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            serde_json::to_value(DecisionExample {
                id: ex.id.clone(),
                rule,
                snippet: snippet(ex),
            })
            .unwrap_or(Value::Null)
        };
        let mut decisions = Map::new();
        for c in remove {
            let shown: Vec<Value> = ablation
                .removed
                .iter()
                .filter(|(_, r)| r == c)
                .take(per_decision)
                .map(|(ex, r)| example(ex, Some(*r)))
                .collect();
            decisions.insert(c.to_string(), Value::Array(shown));
        }
        let kept: Vec<Value> = ablation
            .kept
            .iter()
            .take(per_decision)
            .map(|ex| example(ex, None))
            .collect();
        decisions.insert("kept".to_string(), Value::Array(kept));
        Report {
            input_file: source.input.display().to_string(),
            output_file: source.output.display().to_string(),
            detector: detector.to_string(),
            remove: remove.to_vec(),
            input: conversations + source.excluded.len() + source.skipped.len(),
            conversations,
            kept: ablation.kept.len(),
            removed,
            removed_total,
            removed_fraction: if conversations == 0 {
                0.0
            } else {
                removed_total as f64 / conversations as f64
            },
            excluded: source.excluded.len(),
            excluded_by_reason,
            skipped: source.skipped.len(),
            failed: ablation.failed.len(),
            detected,
            rules,
            decisions,
        }
    }
}

/// One JSON line per verdict (`--decisions`): id, detected categories, removal, evidence.
pub fn verdict_json(v: &Verdict) -> Value {
    json!({
        "id": v.id,
        "categories": v.decision.categories,
        "removed_as": v.removed_as,
        "rules": v.decision.evidence.iter().map(|(c, e)| json!({"category": c, "rule": e})).collect::<Vec<_>>(),
        "error": v.error,
    })
}

// ---------------------------------------------------------------------------------------------
// Original records
// ---------------------------------------------------------------------------------------------

/// The original text of every record of a ShareGPT file, keyed by its `id` (a string, or an
/// integer written as digits, as the reader does). JSON Lines keep each line's exact bytes; a
/// JSON list's records are re-serialized compactly (same content and key order). Records without
/// a usable id (which the reader reports) are left out; the first of duplicate ids wins, as in
/// the reader.
pub fn raw_records(path: &Path) -> Result<HashMap<String, String>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len().saturating_mul(4));
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::file(path, format!("gzip stream is truncated or corrupt ({e})")))?;
        out
    } else {
        raw
    };
    let text = String::from_utf8_lossy(&bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let id_of = |v: Option<&Value>| match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    };
    let mut map = HashMap::new();
    if text.trim_start().starts_with('[') {
        let records: Vec<Value> = serde_json::from_str(text)
            .map_err(|e| Error::file(path, format!("not a JSON list of records ({e})")))?;
        for v in records {
            if let Some(id) = id_of(v.get("id")) {
                let line = serde_json::to_string(&v).map_err(|e| Error::Internal(e.to_string()))?;
                map.entry(id).or_insert(line);
            }
        }
    } else {
        #[derive(Deserialize)]
        struct IdOnly {
            id: Value,
        }
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            if let Ok(rec) = serde_json::from_str::<IdOnly>(line)
                && let Some(id) = id_of(Some(&rec.id))
            {
                map.entry(id).or_insert_with(|| line.to_string());
            }
        }
    }
    Ok(map)
}

/// Write the original records of `kept` to `out`, one per line, gzip-compressed when the name
/// ends in `.gz`. Fails if a kept id has no original record in `raw`.
pub fn write_kept(out: &Path, kept: &[Example], raw: &HashMap<String, String>) -> Result<()> {
    let mut text = String::new();
    for ex in kept {
        let line = raw.get(&ex.id).ok_or_else(|| {
            Error::Internal(format!(
                "conversation {:?} has no original record in the input",
                ex.id
            ))
        })?;
        text.push_str(line);
        text.push('\n');
    }
    let gz = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let bytes = if gz {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text.as_bytes())
            .map_err(|e| Error::io(out, e))?;
        enc.finish().map_err(|e| Error::io(out, e))?
    } else {
        text.into_bytes()
    };
    crate::util::write_atomic(out, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::example::{Ability, Meta, Turn};

    fn conv(turns: &[(&str, &str)]) -> Example {
        Example {
            id: "t".into(),
            ability: Ability::General,
            turns: turns
                .iter()
                .map(|(r, c)| {
                    if *r == "u" {
                        Turn::user(*c)
                    } else {
                        Turn::assistant(*c)
                    }
                })
                .collect(),
            meta: Meta::default(),
        }
    }

    fn rules(ex: &Example) -> Vec<String> {
        RuleDetector::default()
            .explain(ex)
            .into_iter()
            .map(|(_, e)| rule_name(&e))
            .collect()
    }

    fn cats(ex: &Example) -> Vec<Category> {
        RuleDetector::default().classify(ex)
    }

    #[test]
    fn category_parses_prints_and_serializes() {
        assert_eq!("code".parse::<Category>(), Ok(Category::Code));
        assert_eq!(" MATH ".parse::<Category>(), Ok(Category::Math));
        assert!(
            "general"
                .parse::<Category>()
                .unwrap_err()
                .contains("expected code or math")
        );
        assert_eq!(Category::Math.to_string(), "math");
        assert_eq!(serde_json::to_string(&Category::Code).unwrap(), "\"code\"");
        assert_eq!(
            serde_json::from_str::<Category>("\"math\"").unwrap(),
            Category::Math
        );
    }

    #[test]
    fn fenced_python_block_is_code() {
        let ex = conv(&[
            ("u", "How do I read a CSV file?"),
            (
                "a",
                "Like this:\n```python\nimport csv\nwith open('a.csv') as f:\n    rows = list(csv.reader(f))\n```",
            ),
        ]);
        assert_eq!(cats(&ex), vec![Category::Code]);
        assert_eq!(rules(&ex), vec!["fenced-code"]);
    }

    #[test]
    fn prose_inside_a_fence_is_not_code() {
        let ex = conv(&[
            ("u", "Give me the descriptions only"),
            (
                "a",
                "```vbnet\nInspecting and maintaining roofs and gutters.\nEnsuring the electrical system is safe.\n```",
            ),
        ]);
        assert!(cats(&ex).is_empty());
    }

    #[test]
    fn pasted_code_without_fences_is_code() {
        let ex = conv(&[
            (
                "u",
                "why does this fail?\nconst el = document.getElementById('x');\nel.addEventListener('click', go);\nfunction go(e) {\n  console.log(e);\n}",
            ),
            ("a", "You never call preventDefault."),
        ]);
        assert!(rules(&ex).contains(&"pasted-code".to_string()));
        assert_eq!(cats(&ex), vec![Category::Code]);
    }

    #[test]
    fn stack_traces_and_shell_commands_are_code() {
        let trace = conv(&[
            (
                "u",
                "Traceback (most recent call last):\n  File \"a.py\", line 3, in <module>\nKeyError: 'x'",
            ),
            ("a", "The key is missing."),
        ]);
        assert_eq!(rules(&trace), vec!["error-trace"]);
        let shell = conv(&[
            ("u", "How do I get requests?"),
            ("a", "Run\n\npip install requests\n\nand retry."),
        ]);
        assert_eq!(rules(&shell), vec!["shell-command"]);
    }

    #[test]
    fn inline_code_needs_a_programming_term() {
        let with_term = conv(&[
            ("u", "What does the function return?"),
            (
                "a",
                "`parse()` returns `None` when `strict` is off; check `result` first.",
            ),
        ]);
        assert_eq!(rules(&with_term), vec!["inline-code"]);
        let no_term = conv(&[
            ("u", "Name ideas?"),
            ("a", "`Sunrise`, `Dawn`, `Aurora`, `Glow` and `Ember`."),
        ]);
        assert!(cats(&no_term).is_empty());
    }

    #[test]
    fn many_programming_terms_are_code() {
        let ex = conv(&[
            ("u", "Which languages do I need for a forum website?"),
            (
                "a",
                "HTML and CSS for layout, JavaScript for interactivity, PHP on the backend, MySQL to store users, \
                   and Git for version control.",
            ),
        ]);
        assert_eq!(rules(&ex), vec!["programming-terms"]);
    }

    #[test]
    fn python_the_snake_is_neither() {
        let ex = conv(&[
            (
                "u",
                "How long can a python grow, and what does a python eat?",
            ),
            (
                "a",
                "Reticulated pythons can exceed six metres. They eat rodents, birds and sometimes deer.",
            ),
        ]);
        assert!(
            cats(&ex).is_empty(),
            "{:?}",
            RuleDetector::default().explain(&ex)
        );
    }

    #[test]
    fn recipe_question_is_neither() {
        let ex = conv(&[
            ("u", "How do I make a simple pancake batter?"),
            (
                "a",
                "Whisk 1 cup of flour, 1 egg, 1 cup of milk and a pinch of salt. Rest it 10 minutes, then fry.",
            ),
        ]);
        assert!(cats(&ex).is_empty());
    }

    #[test]
    fn percent_of_a_number_is_math() {
        let ex = conv(&[("u", "What is 15% of 240?"), ("a", "It is 36.")]);
        assert_eq!(cats(&ex), vec![Category::Math]);
        assert_eq!(rules(&ex), vec!["word-problem"]);
    }

    #[test]
    fn word_problem_needs_numbers_and_a_short_turn() {
        let ex = conv(&[
            (
                "u",
                "If a train travels 120 km in 2 hours, how fast is it going?",
            ),
            ("a", "60 km/h."),
        ]);
        assert_eq!(rules(&ex), vec!["word-problem"]);
        let no_numbers = conv(&[
            ("u", "How many friends should I invite?"),
            ("a", "As many as you like."),
        ]);
        assert!(cats(&no_numbers).is_empty());
        // Digits inside words (web2, mp3) are not numbers.
        let in_words = conv(&[
            ("u", "What is the difference between web2 and web3?"),
            ("a", "Decentralization."),
        ]);
        assert!(cats(&in_words).is_empty());
        let long = format!(
            "{} How many pages are 3 chapters of 20 pages?",
            "Here is my essay draft. ".repeat(80)
        );
        assert!(cats(&conv(&[("u", &long), ("a", "Noted.")])).is_empty());
    }

    #[test]
    fn worked_arithmetic_latex_algebra_and_terms_are_math() {
        let arith = conv(&[
            ("u", "Split the bill"),
            ("a", "Food: 3 * 12 = 36. Drinks: 4 * 5 = 20. Total 56."),
        ]);
        assert_eq!(rules(&arith), vec!["worked-arithmetic"]);
        let latex = conv(&[("u", "Typeset it"), ("a", "$$\\frac{a}{b} + \\sqrt{c}$$")]);
        assert!(rules(&latex).contains(&"latex-math".to_string()));
        let algebra = conv(&[
            ("u", "Solve it"),
            ("a", "We have x^2 - 4 = 0, so f(x) = 0 at x = ±2."),
        ]);
        assert!(rules(&algebra).contains(&"algebra".to_string()));
        let terms = conv(&[
            ("u", "Explain"),
            (
                "a",
                "A theorem about the derivative of a polynomial equation, with a probability aside.",
            ),
        ]);
        assert_eq!(rules(&terms), vec!["math-terms"]);
    }

    #[test]
    fn algebra_on_coefficients_powers_and_symbols() {
        let proof = conv(&[
            ("u", "Is the sum of four consecutive integers even?"),
            (
                "a",
                "Write them as n, n+1, n+2 and n+3. The sum is 4n + 6 = 2(2n + 3), and 2n + 3 is odd.",
            ),
        ]);
        assert!(
            rules(&proof).contains(&"algebra".to_string()),
            "{:?}",
            rules(&proof)
        );
        let powers = conv(&[
            ("u", "Rice on a chessboard"),
            (
                "a",
                "Square n holds 2^(n-1) grains, so the last holds 2 to the power of 63.",
            ),
        ]);
        assert!(rules(&powers).contains(&"algebra".to_string()));
        let physics = conv(&[
            ("u", "Is this right?"),
            (
                "a",
                "At equilibrium Fa + Fn = mg, and since Fn = mg we get Fa + mg = mg.",
            ),
        ]);
        assert!(rules(&physics).contains(&"algebra".to_string()));
        // Hex digits of an id are not a coefficient times a letter.
        let uuid = conv(&[
            ("u", "Which record is it?"),
            (
                "a",
                "It is c3a9493e-8491-4f2b and 77a1e-2231-9c, as logged.",
            ),
        ]);
        assert!(cats(&uuid).is_empty(), "{:?}", rules(&uuid));
    }

    #[test]
    fn worked_arithmetic_with_units_and_substituted_formulas() {
        let hedge = conv(&[
            ("u", "What is the profit?"),
            (
                "a",
                "A loss of $0.20/barrel * 100,000 barrels = $20,000, then revenue of $16.00/barrel * 100,000 barrels = $1,600,000.",
            ),
        ]);
        assert_eq!(rules(&hedge), vec!["worked-arithmetic"]);
        let substituted = conv(&[
            ("u", "Use real values"),
            (
                "a",
                "Gold Investment = (10% * $100,000) * (1 + (2.5% - 5%)/100)\n\nGold Investment = $10,000 * (1 - 0.025)",
            ),
        ]);
        assert_eq!(rules(&substituted), vec!["worked-arithmetic"]);
    }

    #[test]
    fn requests_for_proofs_and_formulas_are_math() {
        for ask in [
            "prove the sum of four consecutive integers is divisible by 4",
            "Show that the product of two odd numbers is odd.",
            "Now show me the formula to calculate it",
            "math equation for dynamic obstacle prediction in robotics",
        ] {
            let ex = conv(&[("u", ask), ("a", "Sure.")]);
            assert_eq!(rules(&ex), vec!["math-request"], "{ask}");
        }
        for not_math in [
            "I have to write a paper in which I prove the identity of an unknown substance",
            "Give me an Excel formula to calculate the total of column B",
            "Show that you care about the customer",
        ] {
            let ex = conv(&[("u", not_math), ("a", "Sure.")]);
            assert!(cats(&ex).is_empty(), "{not_math}: {:?}", rules(&ex));
        }
    }

    #[test]
    fn word_problem_data_may_precede_the_question() {
        let ex = conv(&[
            (
                "u",
                "A company supplies 750 computers. It will buy 200 more next month. If each unit costs $240, how much will it spend?",
            ),
            ("a", "$48,000."),
        ]);
        assert_eq!(rules(&ex), vec!["word-problem"]);
        let no_data = conv(&[
            (
                "u",
                "My flight is at 9. How long should I wait at the gate?",
            ),
            ("a", "About an hour."),
        ]);
        assert!(cats(&no_data).is_empty());
    }

    #[test]
    fn subject_lists_tables_links_and_code_latex_are_not_math() {
        let curriculum = conv(&[
            ("u", "What should a tutor cover?"),
            (
                "a",
                "Math: arithmetic, algebra, geometry, trigonometry, calculus, probability and statistics.",
            ),
        ]);
        assert!(cats(&curriculum).is_empty(), "{:?}", rules(&curriculum));
        let table = conv(&[
            ("u", "Projects to learn maths?"),
            (
                "a",
                "| Project | Idea |\n| --- | --- |\n| Tutorials | Teach matrix multiplication and prime numbers |\n| Geometry | Draw triangles and their perimeter |",
            ),
        ]);
        assert!(cats(&table).is_empty(), "{:?}", rules(&table));
        let links = conv(&[
            ("u", "My posts?"),
            (
                "a",
                "https://leetcode.com/discuss/count-triangles https://leetcode.com/discuss/factorial-trailing-zeros https://leetcode.com/discuss/quadratic-probing",
            ),
        ]);
        assert!(cats(&links).is_empty(), "{:?}", rules(&links));
        let template = conv(&[
            ("u", "Show the price"),
            (
                "a",
                "```javascript\nconst a = `<p>Value: $${price}</p>`;\nconst b = `<p>Tax: $${tax}</p>`;\n```",
            ),
        ]);
        assert_eq!(cats(&template), vec![Category::Code]);
        let concepts = conv(&[
            ("u", "Explain"),
            (
                "a",
                "In category theory a monad is a monoid in the category of endofunctors.",
            ),
        ]);
        assert_eq!(rules(&concepts), vec!["math-terms"]);
    }

    #[test]
    fn formulas_in_fenced_blocks_and_tagged_latex_are_math() {
        let fenced = conv(&[
            ("u", "Model the expansion"),
            (
                "a",
                "```css\nR(t) = (1 - exp(-β t)) / (1 + exp(-β t))\nc(t) = L * (0.5 + 0.16 * cos(ωt))\n```",
            ),
        ]);
        assert!(
            rules(&fenced).contains(&"formula-block".to_string()),
            "{:?}",
            rules(&fenced)
        );
        let tex = conv(&[
            ("u", "Typeset it"),
            ("a", "```latex\n\\frac{a}{b} = \\sqrt{c}\n```"),
        ]);
        assert!(
            rules(&tex).contains(&"latex-math".to_string()),
            "{:?}",
            rules(&tex)
        );
    }

    #[test]
    fn a_few_sums_in_a_code_conversation_are_not_math() {
        let chmod = conv(&[
            ("u", "What does chmod 754 mean?"),
            (
                "a",
                "Run\n\nchmod 754 file\n\nOwner: 4+2+1 = 7, group: 4+1 = 5, others: 4 = 4.",
            ),
        ]);
        assert_eq!(cats(&chmod), vec![Category::Code], "{:?}", rules(&chmod));
        let many = conv(&[
            ("u", "Average waiting time?"),
            (
                "a",
                "pip install simpy\n\nFCFS: (0+10+18)/3 = 9.33. SJF: (14+6+0)/3 = 6.67. RR: (8+4)/2 = 6. Priority: (1+2)/3 = 1.",
            ),
        ]);
        assert_eq!(cats(&many), vec![Category::Code, Category::Math]);
    }

    #[test]
    fn arithmetic_inside_code_is_not_math() {
        let ex = conv(&[
            ("u", "Sum two numbers in Python"),
            (
                "a",
                "```python\na = 2 + 3 = 5\nb = 4 * 6 = 24\nprint(a + b)\n```",
            ),
        ]);
        assert_eq!(cats(&ex), vec![Category::Code]);
    }

    #[test]
    fn word_boundaries_are_ascii_and_escaped_backslashes_survive() {
        assert_eq!(ascii_boundaries(r"\bx\b"), r"(?-u:\b)x(?-u:\b)");
        assert_eq!(ascii_boundaries(r"\\begin\d"), r"\\begin\d");
        assert_eq!(
            term_name(r"\b(?:reactjs|react\.js|react native)\b"),
            "reactjs"
        );
        assert_eq!(term_name(r"(?:^|\W)c\+\+"), "c++");
    }

    struct Fixed(Vec<Category>);
    impl Detector for Fixed {
        fn classify(&self, _: &Example) -> Vec<Category> {
            self.0.clone()
        }
        fn name(&self) -> String {
            "fixed".into()
        }
    }

    #[test]
    fn both_counts_once_under_the_first_requested() {
        let exs = vec![conv(&[("u", "q"), ("a", "r")])];
        let both = Fixed(vec![Category::Math, Category::Code]);
        let a = ablate(exs.clone(), &[Category::Code, Category::Math], &both);
        assert_eq!(
            a.removed.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
            vec![Category::Code]
        );
        let a = ablate(exs.clone(), &[Category::Math, Category::Code], &both);
        assert_eq!(a.removed[0].1, Category::Math);
        let a = ablate(exs, &[Category::Math], &Fixed(vec![Category::Code]));
        assert_eq!((a.kept.len(), a.removed.len()), (1, 0));
        assert_eq!(a.verdicts[0].decision.categories, vec![Category::Code]);
    }

    #[test]
    fn tags_parse_and_map_to_categories() {
        let instag = r#"[{"tag": "Python programming", "explanation": "x"}, {"tag": "debugging", "explanation": "y"}]"#;
        assert_eq!(parse_tags(instag), vec!["Python programming", "debugging"]);
        assert_eq!(
            parse_tags("Sure:\n[\"math\", \"word problem\"]"),
            vec!["math", "word problem"]
        );
        assert_eq!(
            parse_tags("{\"tag\": \"cooking\", \"explanation\": \"z\"}"),
            vec!["cooking"]
        );
        assert_eq!(parse_tags("recipe, cooking"), vec!["recipe", "cooking"]);
        let t =
            |v: &[&str]| tags_to_categories(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(t(&["Python programming"]), vec![Category::Code]);
        assert_eq!(
            t(&["Arithmetic calculation", "SQL query"]),
            vec![Category::Code, Category::Math]
        );
        assert!(
            t(&[
                "recipe",
                "travel planning",
                "capital city",
                "digital marketing",
                "job description"
            ])
            .is_empty()
        );
    }

    #[test]
    fn raw_records_key_original_lines_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let lines = [
            r#"{"id": "a", "conversations": [{"from": "human", "value": "hi"}]}"#,
            r#"{"id":7,"conversations":[]}"#,
            "not json",
            r#"{"id": "a", "conversations": "duplicate"}"#,
        ];
        let path = dir.path().join("s.jsonl.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(lines.join("\n").as_bytes()).unwrap();
        std::fs::write(&path, enc.finish().unwrap()).unwrap();
        let raw = raw_records(&path).unwrap();
        assert_eq!(raw.len(), 2);
        assert_eq!(raw["a"], lines[0]);
        assert_eq!(raw["7"], lines[1]);

        let list = dir.path().join("l.json");
        std::fs::write(&list, r#"[{"id": "x", "conversations": [], "z": 1}]"#).unwrap();
        assert_eq!(
            raw_records(&list).unwrap()["x"],
            r#"{"id":"x","conversations":[],"z":1}"#
        );

        let out = dir.path().join("kept.jsonl.gz");
        let mut kept = conv(&[("u", "q")]);
        kept.id = "a".into();
        write_kept(&out, &[kept.clone()], &raw).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, format!("{}\n", lines[0]));
        kept.id = "missing".into();
        assert!(write_kept(&out, &[kept], &raw).is_err());
    }
}
