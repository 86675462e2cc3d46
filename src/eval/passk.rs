//! The unbiased pass@k estimator of Chen et al. (2021), computed as OpenAI's human-eval does.

/// pass@k of one problem with `n` samples of which `c` passed: `1 - C(n-c, k) / C(n, k)`,
/// computed stably as `1 - prod_{i=n-c+1}^{n} (1 - k/i)`. `None` when `k == 0`, `k > n` or
/// `c > n` (human-eval only reports pass@k when every problem has at least k samples).
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    let prod: f64 = (n - c + 1..=n).map(|i| 1.0 - k as f64 / i as f64).product();
    Some(1.0 - prod)
}

/// Mean pass@k over problems given as `(n, c)` pairs; `None` when there are no problems or some
/// problem has fewer than `k` samples.
pub fn mean_pass_at_k(counts: &[(usize, usize)], k: usize) -> Option<f64> {
    if counts.is_empty() {
        return None;
    }
    let mut sum = 0.0;
    for &(n, c) in counts {
        sum += pass_at_k(n, c, k)?;
    }
    Some(sum / counts.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C(n, k) exactly, for the reference formula.
    fn binom(n: usize, k: usize) -> f64 {
        if k > n {
            return 0.0;
        }
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    }

    #[test]
    fn matches_the_combinatorial_definition() {
        for n in 1..=20 {
            for c in 0..=n {
                for k in 1..=n {
                    let exact = 1.0 - binom(n - c, k) / binom(n, k);
                    let got = pass_at_k(n, c, k).unwrap();
                    assert!(
                        (got - exact).abs() < 1e-9,
                        "n={n} c={c} k={k}: {got} vs {exact}"
                    );
                }
            }
        }
    }

    #[test]
    fn hand_computed_values() {
        // pass@1 is the fraction correct.
        assert!((pass_at_k(10, 3, 1).unwrap() - 0.3).abs() < 1e-12);
        // n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10.
        assert!((pass_at_k(5, 2, 2).unwrap() - 0.7).abs() < 1e-12);
        assert_eq!(pass_at_k(5, 0, 2), Some(0.0));
        assert_eq!(pass_at_k(5, 4, 2), Some(1.0));
        assert_eq!(pass_at_k(1, 1, 1), Some(1.0));
        assert_eq!(pass_at_k(3, 1, 4), None);
        assert_eq!(pass_at_k(3, 1, 0), None);
        // Large n stays finite and in [0, 1] (the product form avoids huge binomials).
        let v = pass_at_k(1000, 7, 100).unwrap();
        assert!(v > 0.5 && v < 1.0);
    }

    #[test]
    fn mean_over_problems() {
        assert_eq!(
            mean_pass_at_k(&[(1, 1), (1, 0), (1, 1), (1, 1)], 1),
            Some(0.75)
        );
        assert_eq!(mean_pass_at_k(&[(10, 1), (1, 1)], 2), None);
        assert_eq!(mean_pass_at_k(&[], 1), None);
    }
}
