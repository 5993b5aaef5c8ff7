//! Basis points to ALB target group weights (0–999).
//!
//! An ALB forwards to each target group in proportion to its weight among
//! the weights of the action, so only ratios matter. The mapping:
//!
//! 1. divide every weight by the gcd of the non-zero ones; if the largest
//!    is then at most 999, those are the ALB weights, and every share is
//!    *exact* (any split in whole percent, or in multiples of 0.1%, is);
//! 2. otherwise scale so the largest is 999 and round to nearest, with
//!    every non-zero entry at least 1.
//!
//! Either way a zero stays zero (no traffic), a non-zero stays non-zero
//! (some traffic), the order of weights is kept, and in case 2 each
//! revision's share moves by less than `(n + 1) / 999` of all traffic for
//! `n` routed revisions (tested below over generated splits).

/// The largest weight an ALB target group takes.
pub const MAX_ALB_WEIGHT: u32 = 999;

/// ALB weights for `bps`, entry by entry (see the module doc).
pub fn alb_weights(bps: &[u32]) -> Vec<u32> {
    let divisor = bps.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if divisor == 0 {
        return vec![0; bps.len()];
    }
    let reduced: Vec<u32> = bps.iter().map(|w| w / divisor).collect();
    let largest = reduced.iter().copied().max().unwrap_or(0);
    if largest <= MAX_ALB_WEIGHT {
        return reduced;
    }
    reduced
        .iter()
        .map(|&w| {
            if w == 0 {
                0
            } else {
                let scaled = (u64::from(w) * u64::from(MAX_ALB_WEIGHT) + u64::from(largest) / 2) / u64::from(largest);
                (scaled as u32).max(1)
            }
        })
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits summing to 10000 bps, from a seeded generator (splitmix64).
    fn splits(count: usize) -> Vec<Vec<u32>> {
        let mut state: u64 = 0x0005_eed0_fa1b;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        (0..count)
            .map(|_| {
                let n = 1 + (next() % 5) as usize;
                let mut cuts: Vec<u32> = (0..n - 1).map(|_| (next() % 10_001) as u32).collect();
                cuts.sort_unstable();
                let mut weights = Vec::new();
                let mut last = 0;
                for cut in cuts.into_iter().chain([10_000]) {
                    weights.push(cut - last);
                    last = cut;
                }
                weights
            })
            .collect()
    }

    fn shares(weights: &[u32]) -> Vec<f64> {
        let total: u32 = weights.iter().sum();
        weights.iter().map(|w| f64::from(*w) / f64::from(total)).collect()
    }

    #[test]
    fn whole_percent_splits_are_exact() {
        assert_eq!(alb_weights(&[9000, 1000]), vec![9, 1]);
        assert_eq!(alb_weights(&[10_000, 0]), vec![1, 0]);
        assert_eq!(alb_weights(&[3300, 3300, 3400]), vec![33, 33, 34]);
        assert_eq!(alb_weights(&[1, 9999]), vec![1, 999]);
        assert_eq!(alb_weights(&[0, 0]), vec![0, 0]);
    }

    #[test]
    fn the_mapping_keeps_the_split_meaning() {
        for bps in splits(20_000) {
            let alb = alb_weights(&bps);
            assert_eq!(alb.len(), bps.len());
            assert!(alb.iter().all(|w| *w <= MAX_ALB_WEIGHT), "{bps:?} -> {alb:?}");
            for (b, a) in bps.iter().zip(&alb) {
                assert_eq!(*b == 0, *a == 0, "zero must map to zero only: {bps:?} -> {alb:?}");
            }
            for i in 0..bps.len() {
                for j in 0..bps.len() {
                    if bps[i] <= bps[j] {
                        assert!(alb[i] <= alb[j], "order lost: {bps:?} -> {alb:?}");
                    }
                }
            }
            let routed = bps.iter().filter(|w| **w > 0).count() as f64;
            let bound = (routed + 1.0) / 999.0;
            for (want, got) in shares(&bps).iter().zip(shares(&alb)) {
                assert!((want - got).abs() < bound, "{bps:?} -> {alb:?}: {want} vs {got}");
            }
        }
    }
}
