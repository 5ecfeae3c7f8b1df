//! The ID key space: draws IDs with a Zipf-like (power-law) skew.
//!
//! Rank `r` (1 = most popular) is drawn from the continuous power law
//! `p(x) ∝ x^-s` on `[1, n+1)` by inverting its CDF (O(1) per draw, no table), then
//! scattered over `0..n` by a multiplication with a prime modulo `n`, so popular IDs are
//! not all small numbers. `s = 0` is uniform.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::profile::KeySpec;

/// A seeded sampler of IDs.
#[derive(Debug, Clone)]
pub struct KeySampler {
    n: u64,
    s: f64,
    rng: StdRng,
}

/// A large prime, used to scatter ranks over the key space.
const SCATTER: u64 = 2_654_435_761;

impl KeySampler {
    /// A sampler for `spec` (a count of 0 is treated as 1).
    pub fn new(spec: &KeySpec) -> Self {
        Self {
            n: spec.count.max(1),
            s: spec.zipf_exponent.max(0.0),
            rng: StdRng::seed_from_u64(spec.seed),
        }
    }

    /// The popularity rank of the next draw, in `1..=n`.
    pub fn next_rank(&mut self) -> u64 {
        let u: f64 = self.rng.random();
        let n1 = (self.n + 1) as f64;
        let x = if (self.s - 1.0).abs() < 1e-9 {
            n1.powf(u)
        } else {
            let e = 1.0 - self.s;
            (1.0 + u * (n1.powf(e) - 1.0)).powf(1.0 / e)
        };
        (x.floor() as u64).clamp(1, self.n)
    }

    /// The next ID, in `0..n`.
    pub fn next_id(&mut self) -> u64 {
        let rank = self.next_rank() - 1;
        if self.n % SCATTER == 0 {
            return rank;
        }
        ((u128::from(rank) * u128::from(SCATTER)) % u128::from(self.n)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_in_range_and_are_skewed() {
        let mut k = KeySampler::new(&KeySpec {
            count: 10_000_000,
            zipf_exponent: 1.0,
            seed: 1,
        });
        let mut top = 0;
        for _ in 0..10_000 {
            assert!(k.next_id() < 10_000_000);
            if k.next_rank() <= 100 {
                top += 1;
            }
        }
        // With s = 1 the top 100 of 10M ranks get ln(101)/ln(10M) ≈ 29% of draws.
        assert!((2_400..3_400).contains(&top), "top-100 share {top}");
    }

    #[test]
    fn zero_exponent_is_uniform() {
        let mut k = KeySampler::new(&KeySpec {
            count: 10,
            zipf_exponent: 0.0,
            seed: 7,
        });
        let mut counts = [0u32; 10];
        for _ in 0..10_000 {
            counts[k.next_id() as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn same_seed_same_ids() {
        let spec = KeySpec::default();
        let a: Vec<_> = {
            let mut k = KeySampler::new(&spec);
            (0..5).map(|_| k.next_id()).collect()
        };
        let mut k = KeySampler::new(&spec);
        let b: Vec<_> = (0..5).map(|_| k.next_id()).collect();
        assert_eq!(a, b);
    }
}
