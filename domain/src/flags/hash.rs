//! Unleash's normalized hash: `murmur3_x86_32(group + ":" + id, seed) % n + 1`.
//!
//! Every Unleash SDK buckets users with this function, so the same user lands in the same
//! rollout bucket and variant here as in any SDK. Rollouts use seed 0 and n = 100; variants use
//! seed 86028157 and n = the sum of the variant weights.

use std::cell::RefCell;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The seed rollouts hash with.
pub(super) const ROLLOUT_SEED: u32 = 0;
/// The seed variants hash with, so that a user's variant does not follow their rollout bucket.
pub(super) const VARIANT_SEED: u32 = 86_028_157;

/// A hashing group (a strategy's `groupId`, or the flag name), kept as the bytes `group:` that
/// prefix every id hashed in it.
#[derive(Debug, Clone)]
pub(super) struct GroupKey(Box<[u8]>);

impl GroupKey {
    pub(super) fn new(group: &str) -> Self {
        let mut prefix = Vec::with_capacity(group.len() + 1);
        prefix.extend_from_slice(group.as_bytes());
        prefix.push(b':');
        GroupKey(prefix.into_boxed_slice())
    }

    /// `norm(id, group, n, seed)`, a bucket in 1..=n; `n` must be positive.
    pub(super) fn bucket(&self, id: &str, n: u32, seed: u32) -> u32 {
        murmur3(&self.0, id.as_bytes(), seed) % n + 1
    }
}

/// murmur3 x86_32 of `prefix` followed by `rest`, read in place without joining them.
fn murmur3(prefix: &[u8], rest: &[u8], seed: u32) -> u32 {
    use std::io::Read;
    let mut input = prefix.chain(rest);
    // Reading from byte slices cannot fail; the fallback is never taken.
    murmur3::murmur3_32(&mut input, seed).unwrap_or_default()
}

thread_local! {
    /// A fast, non-cryptographic generator per thread, seeded from the OS-seeded thread RNG.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// A uniformly random bucket in 1..=n (used when a context has no stickiness id); `n` > 0.
pub(super) fn random_bucket(n: u32) -> u32 {
    RNG.with_borrow_mut(|rng| rng.random_range(1..=n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_vector() {
        assert_eq!(murmur3(b"hello", b"", 0), 613_153_351);
        assert_eq!(murmur3(b"he", b"llo", 0), 613_153_351);
    }

    #[test]
    fn the_rollout_bucket_matches_the_unleash_vector() {
        let group = GroupKey::new("Feature.flexibleRollout.100");
        assert_eq!(group.bucket("123", 100, ROLLOUT_SEED), 17);
    }

    #[test]
    fn splitting_the_input_anywhere_gives_the_same_hash() {
        let whole = b"some-group:a-longer-user-identifier";
        for split in 0..=whole.len() {
            let (prefix, rest) = whole.split_at(split);
            assert_eq!(
                murmur3(prefix, rest, VARIANT_SEED),
                murmur3(whole, b"", VARIANT_SEED)
            );
        }
    }

    #[test]
    fn random_buckets_stay_in_range() {
        for _ in 0..1000 {
            let bucket = random_bucket(3);
            assert!((1..=3).contains(&bucket));
        }
    }
}
