//! How much of a source a stage takes: an exact fraction of the available pool or a count.
//!
//! Rules (also stated in `mixprobe compose --help`):
//! - a fraction `f = p/q` of `N` available examples is `round(f·N)`, rounding half away from
//!   zero (`1/2` of 3 is 2), and at least 1 when `N > 0`;
//! - fractions are exact rationals: `"1/256"`, `"0.25"`, `"1"` (strings) or a TOML float
//!   (`0.25`); they must satisfy `0 < f ≤ 1`;
//! - a TOML integer is a count of examples (`500`), at least 1; compose checks it against the
//!   available pool and refuses a count larger than the pool.
use std::fmt;

/// An exact fraction `num/den` in lowest terms with `0 < num ≤ den`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fraction {
    num: u64,
    den: u64,
}

impl Fraction {
    /// The whole pool.
    pub const ONE: Fraction = Fraction { num: 1, den: 1 };

    /// `num/den` reduced to lowest terms; an error unless `0 < num/den ≤ 1`.
    pub fn new(num: u64, den: u64) -> Result<Fraction, String> {
        if den == 0 {
            return Err(format!("{num}/{den} divides by zero"));
        }
        if num == 0 {
            return Err(format!("{num}/{den} is 0; a fraction must be > 0"));
        }
        if num > den {
            return Err(format!(
                "{num}/{den} is greater than 1; a fraction must be ≤ 1"
            ));
        }
        let g = gcd(num, den);
        Ok(Fraction {
            num: num / g,
            den: den / g,
        })
    }

    /// Parse `"p/q"`, a decimal (`"0.25"`) or an integer (`"1"`) into an exact fraction.
    pub fn parse(text: &str) -> Result<Fraction, String> {
        let s = text.trim();
        let bad = || {
            format!(
                "{text:?} is not a fraction: expected \"p/q\" (e.g. \"1/256\"), a decimal (\"0.25\") \
                 or \"1\""
            )
        };
        if s.starts_with('-') {
            return Err(format!("{text:?} is negative; a fraction must be > 0"));
        }
        if let Some((p, q)) = s.split_once('/') {
            let num = parse_digits(p.trim()).ok_or_else(bad)?;
            let den = parse_digits(q.trim()).ok_or_else(bad)?;
            return Fraction::new(num, den);
        }
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.len() > 18 {
            return Err(bad());
        }
        let whole = if whole.is_empty() {
            0
        } else {
            parse_digits(whole).ok_or_else(bad)?
        };
        let frac_digits = frac.trim_end_matches('0');
        let den = 10u64.pow(frac_digits.len() as u32);
        let frac_num = if frac_digits.is_empty() {
            0
        } else {
            parse_digits(frac_digits).ok_or_else(bad)?
        };
        let num = whole
            .checked_mul(den)
            .and_then(|w| w.checked_add(frac_num))
            .ok_or_else(|| format!("{text:?} is greater than 1; a fraction must be ≤ 1"))?;
        Fraction::new(num, den)
    }

    /// Numerator (lowest terms).
    pub fn num(&self) -> u64 {
        self.num
    }

    /// Denominator (lowest terms).
    pub fn den(&self) -> u64 {
        self.den
    }

    /// The fraction as a float (exact for the study's powers of two).
    pub fn as_f64(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// `round(f·n)`, half away from zero, at least 1 when `n > 0` (0 when `n == 0`).
    pub fn of(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // round(p·n/q) = floor((2·p·n + q) / (2·q)) for non-negative values.
        let (p, q, n) = (self.num as u128, self.den as u128, n as u128);
        let rounded = (2 * p * n + q) / (2 * q);
        (rounded as usize).max(1)
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// How much of one source a stage takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Amount {
    /// A fraction of the source's available pool.
    Fraction(Fraction),
    /// An exact number of examples.
    Count(usize),
}

impl Amount {
    /// Everything available.
    pub const ALL: Amount = Amount::Fraction(Fraction::ONE);

    /// Read an amount from a recipe value: a string or float is a fraction, an integer a count.
    pub fn from_toml(value: &toml::Value) -> Result<Amount, String> {
        match value {
            toml::Value::String(s) => Fraction::parse(s).map(Amount::Fraction),
            toml::Value::Integer(n) if *n >= 1 => Ok(Amount::Count(*n as usize)),
            toml::Value::Integer(n) => Err(format!(
                "count {n} must be at least 1 (write a fraction as a string, e.g. \"1/4\")"
            )),
            toml::Value::Float(x) if x.is_finite() => {
                // The shortest round-trip decimal is what the user wrote; parse it exactly.
                Fraction::parse(&format!("{x}")).map(Amount::Fraction)
            }
            other => Err(format!(
                "expected a fraction string like \"1/256\" or an integer count, found {} {other}",
                other.type_str()
            )),
        }
    }

    /// How many of `available` examples this amount takes (see the module rules); an error when
    /// a count exceeds the pool.
    pub fn count_of(&self, available: usize) -> Result<usize, String> {
        match *self {
            Amount::Fraction(f) => Ok(f.of(available)),
            Amount::Count(n) if n <= available => Ok(n),
            Amount::Count(n) => Err(format!(
                "count {n} is more than the {available} available examples"
            )),
        }
    }

    /// The fraction, when the amount is one.
    pub fn fraction(&self) -> Option<Fraction> {
        match *self {
            Amount::Fraction(f) => Some(f),
            Amount::Count(_) => None,
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Fraction(x) => x.fmt(f),
            Amount::Count(n) => write!(f, "{n} examples"),
        }
    }
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Fraction {
        Fraction::parse(s).unwrap()
    }

    #[test]
    fn parses_and_reduces() {
        assert_eq!(f("1/256"), Fraction::new(1, 256).unwrap());
        assert_eq!(f("2/8").to_string(), "1/4");
        assert_eq!(f("0.25").to_string(), "1/4");
        assert_eq!(f(".5").to_string(), "1/2");
        assert_eq!(f("1").to_string(), "1");
        assert_eq!(f("1.000").to_string(), "1");
        assert_eq!(f(" 1 / 64 ").to_string(), "1/64");
        assert_eq!(f("1/256").as_f64(), 0.00390625);
    }

    #[test]
    fn rejects_out_of_range_and_garbage() {
        for bad in [
            "1/0", "0", "0/5", "0.0", "3/2", "1.5", "2", "-1/4", "abc", "1/", "/4", "", ".",
            "1e-3", "0.2x",
        ] {
            assert!(Fraction::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Fraction::parse("1/0").unwrap_err().contains("zero"));
        assert!(
            Fraction::parse("3/2")
                .unwrap_err()
                .contains("greater than 1")
        );
        assert!(Fraction::parse("0").unwrap_err().contains("> 0"));
    }

    #[test]
    fn rounds_half_away_from_zero_with_floor_of_one() {
        // Hand-computed: 7473/256 = 29.19 → 29; 20022/256 = 78.21 → 78; 10000/256 = 39.06 → 39.
        assert_eq!(f("1/256").of(7473), 29);
        assert_eq!(f("1/256").of(20022), 78);
        assert_eq!(f("1/4").of(7273), 1818); // 1818.25
        assert_eq!(f("1/4").of(10), 3); // 2.5 → 3 (half away from zero)
        assert_eq!(f("1/4").of(6), 2); // 1.5 → 2
        assert_eq!(f("1/2").of(3), 2); // 1.5 → 2
        assert_eq!(f("1/16").of(24), 2); // 1.5 → 2
        assert_eq!(f("1/16").of(23), 1); // 1.4375 → 1
        assert_eq!(f("1/256").of(100), 1); // 0.39 → 0 → at least 1
        assert_eq!(f("1/256").of(0), 0);
        assert_eq!(f("1").of(12345), 12345);
        assert_eq!(f("0.1").of(15), 2); // exact 1.5, not 1.4999… as a float might give
    }

    #[test]
    fn amounts_from_toml() {
        let v = |s: &str| -> toml::Value {
            toml::from_str::<toml::Table>(&format!("a = {s}")).unwrap()["a"].clone()
        };
        assert_eq!(
            Amount::from_toml(&v("\"1/4\"")).unwrap(),
            Amount::Fraction(f("1/4"))
        );
        assert_eq!(
            Amount::from_toml(&v("0.25")).unwrap(),
            Amount::Fraction(f("1/4"))
        );
        assert_eq!(Amount::from_toml(&v("500")).unwrap(), Amount::Count(500));
        assert!(Amount::from_toml(&v("0")).is_err());
        assert!(Amount::from_toml(&v("-3")).is_err());
        assert!(Amount::from_toml(&v("1.5")).is_err());
        assert!(Amount::from_toml(&v("true")).is_err());
        assert_eq!(Amount::Count(5).count_of(5), Ok(5));
        assert!(
            Amount::Count(6)
                .count_of(5)
                .unwrap_err()
                .contains("5 available")
        );
        assert_eq!(Amount::ALL.count_of(9), Ok(9));
    }
}
