//! Seeded, exact sampling: one Fisher–Yates permutation per source, subsets taken as prefixes.
//!
//! Taking prefixes of a single permutation makes subsets nested by construction: the 1/256
//! subset of a source lies inside its 1/64 subset, and a DMT stage-2 replay of `k` of a source
//! lies inside the stage-1 pool it replays. The bounded draw is written out here (rejection
//! sampling on `next_u64`) so the permutation depends only on the ChaCha8 stream, not on a
//! `rand` version's range algorithm.
use crate::util::Rng;
use rand::RngCore;

/// A uniform integer in `0..bound` (`bound > 0`), by rejection sampling: unbiased and stable.
fn below(rng: &mut Rng, bound: u64) -> u64 {
    debug_assert!(bound > 0);
    // The largest multiple of `bound` that fits; draws at or above it are rejected.
    let limit = u64::MAX - u64::MAX % bound;
    loop {
        let x = rng.next_u64();
        if x < limit {
            return x % bound;
        }
    }
}

/// Shuffle `items` in place with the Fisher–Yates algorithm.
pub fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// A seeded permutation of `0..n`.
pub fn permutation(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::amount::Fraction;
    use crate::util::rng;
    use std::collections::HashSet;

    #[test]
    fn permutation_is_a_permutation_and_seeded() {
        let a = permutation(1000, &mut rng(7, "math"));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_eq!(
            a,
            permutation(1000, &mut rng(7, "math")),
            "same seed and stream, same order"
        );
        assert_ne!(
            a,
            permutation(1000, &mut rng(8, "math")),
            "another seed changes it"
        );
        assert_ne!(
            a,
            permutation(1000, &mut rng(7, "code")),
            "another stream changes it"
        );
        assert_ne!(a, (0..1000).collect::<Vec<_>>(), "it actually shuffles");
    }

    #[test]
    fn prefixes_nest_across_the_study_fractions() {
        let n = 7473;
        let perm = permutation(n, &mut rng(42, "math"));
        let fractions = ["1/256", "1/64", "1/16", "1/4", "1"].map(|s| Fraction::parse(s).unwrap());
        let subsets: Vec<HashSet<usize>> = fractions
            .iter()
            .map(|f| perm[..f.of(n)].iter().copied().collect())
            .collect();
        assert_eq!(
            subsets.iter().map(HashSet::len).collect::<Vec<_>>(),
            [29, 117, 467, 1868, 7473]
        );
        for pair in subsets.windows(2) {
            assert!(pair[0].is_subset(&pair[1]));
        }
    }

    #[test]
    fn draws_are_roughly_uniform() {
        // Position of element 0 after shuffling 4 items, over 4000 seeds: each slot ≈ 1000.
        let mut counts = [0usize; 4];
        for seed in 0..4000 {
            let p = permutation(4, &mut rng(seed, "uniformity"));
            counts[p.iter().position(|&x| x == 0).unwrap()] += 1;
        }
        for c in counts {
            assert!((850..1150).contains(&c), "{counts:?}");
        }
    }
}
