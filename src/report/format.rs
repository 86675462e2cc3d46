//! How numbers, fractions and score keys are written in figures, tables and text.

/// The three abilities, in the paper's order.
pub const ABILITIES: [&str; 3] = ["math", "code", "general"];

/// Score keys that measure `ability`, most meaningful first: a real benchmark, then the
/// synthetic suite, then held-out NLL (see the eval interface for the key names).
pub fn ability_keys(ability: &str) -> &'static [&'static str] {
    match ability {
        "math" => &["gsm8k.strict", "gsm8k.flexible", "synth.math", "nll.math"],
        "code" => &["humaneval.pass@1", "synth.code", "nll.code"],
        "general" => &[
            "mtbench.score",
            "mtbench.proxy",
            "synth.general",
            "nll.general",
        ],
        _ => &[],
    }
}

/// True when a smaller value of `key` is better (held-out NLL or loss, e.g. `nll.math`,
/// `heldout_nll`).
pub fn lower_is_better(key: &str) -> bool {
    key.contains("nll") || key.contains("loss")
}

/// A human label for a score key, saying which direction is better where it is not obvious.
pub fn key_label(key: &str) -> String {
    let known = match key {
        "gsm8k.strict" => Some("GSM8K accuracy (strict)"),
        "gsm8k.flexible" => Some("GSM8K accuracy (flexible)"),
        "humaneval.pass@1" => Some("HumanEval pass@1"),
        "mtbench.score" => Some("MT-Bench score (1-10)"),
        "mtbench.turn1" => Some("MT-Bench turn 1"),
        "mtbench.turn2" => Some("MT-Bench turn 2"),
        "mtbench.proxy" => Some("MT-Bench proxy (not an MT-Bench score)"),
        "synth.math" => Some("synthetic math accuracy"),
        "synth.code" => Some("synthetic code pass@1"),
        "synth.general" => Some("synthetic general rule score"),
        _ => None,
    };
    match (known, key.strip_prefix("nll.")) {
        (Some(l), _) => l.to_string(),
        (None, Some(source)) => format!("held-out NLL, {source} (lower is better)"),
        (None, None) => key.to_string(),
    }
}

/// A data fraction as written in the paper: `1`, `1/4`, `1/256`, else 3 significant digits.
pub fn fraction(f: f64) -> String {
    if f >= 1.0 && (f - f.round()).abs() < 1e-9 {
        return format!("{}", f.round() as i64);
    }
    if f > 0.0 {
        let inv = 1.0 / f;
        if (inv - inv.round()).abs() < 1e-6 * inv.max(1.0) {
            return format!("1/{}", inv.round() as i64);
        }
    }
    num(f)
}

/// A score or loss with 3 significant digits (no exponent for the usual ranges).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.001 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// Seconds as `12.3 s`, `4 min 05 s` or `1 h 02 min`.
pub fn duration(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{} h {:02} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_read_like_the_paper() {
        assert_eq!(fraction(1.0), "1");
        assert_eq!(fraction(0.25), "1/4");
        assert_eq!(fraction(0.00390625), "1/256");
        assert_eq!(fraction(0.3), "0.300");
        assert_eq!(fraction(2.0), "2");
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(num(0.12345), "0.123");
        assert_eq!(num(2.3456), "2.35");
        assert_eq!(num(45.67), "45.7");
        assert_eq!(duration(75.0), "1 min 15 s");
        assert_eq!(duration(3725.0), "1 h 02 min");
        assert!(lower_is_better("nll.math") && lower_is_better("heldout_nll"));
        assert!(!lower_is_better("synth.math"));
        assert_eq!(
            key_label("nll.code"),
            "held-out NLL, code (lower is better)"
        );
    }
}
