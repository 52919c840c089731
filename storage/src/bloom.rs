//! Bloom filters over user keys `(table, key)`, one per segment.
//!
//! Hashing is xxh3-64 of `table (4 bytes, big-endian) | key`; the `k` probe positions come from
//! double hashing (`h1 + i·h2`, Kirsch–Mitzenmacher) of that one hash. The filter never says
//! "absent" for a key that was added; it says "maybe present" for about 1 % of other keys at
//! 10 bits per key.

use xxhash_rust::xxh3::Xxh3;

/// Bits per key of the filters written by this build.
pub(crate) const BITS_PER_KEY: usize = 10;
/// Probes per key (≈ ln 2 · bits per key).
pub(crate) const PROBES: u32 = 7;

/// The hash of a user key that filters are built from and probed with.
pub(crate) fn key_hash(table: u32, key: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&table.to_be_bytes());
    h.update(key);
    h.digest()
}

/// A built filter: `probes` and a bit array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bloom {
    probes: u32,
    bits: Box<[u8]>,
}

impl Bloom {
    /// Builds a filter holding every hash in `hashes`.
    pub fn build(hashes: &[u64]) -> Bloom {
        let nbits = (hashes.len() * BITS_PER_KEY).max(64);
        let mut bits = vec![0u8; nbits.div_ceil(8)].into_boxed_slice();
        let m = (bits.len() * 8) as u64;
        for &h in hashes {
            for pos in positions(h, PROBES, m) {
                bits[(pos / 8) as usize] |= 1 << (pos % 8);
            }
        }
        Bloom {
            probes: PROBES,
            bits,
        }
    }

    /// A filter read back from a segment (`None` if the parameters are impossible).
    pub fn from_parts(probes: u32, bits: Box<[u8]>) -> Option<Bloom> {
        (probes > 0 && probes <= 32 && !bits.is_empty()).then_some(Bloom { probes, bits })
    }

    /// False only if the key with this hash was never added.
    pub fn may_contain(&self, hash: u64) -> bool {
        let m = (self.bits.len() * 8) as u64;
        positions(hash, self.probes, m)
            .all(|pos| self.bits[(pos / 8) as usize] & (1 << (pos % 8)) != 0)
    }

    /// The number of probes.
    pub fn probes(&self) -> u32 {
        self.probes
    }

    /// The bit array.
    pub fn bits(&self) -> &[u8] {
        &self.bits
    }
}

fn positions(hash: u64, probes: u32, m: u64) -> impl Iterator<Item = u64> {
    let h1 = hash;
    let h2 = hash.rotate_right(32) | 1;
    (0..u64::from(probes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_keys_are_always_found_and_others_mostly_not() {
        let hashes: Vec<u64> = (0..10_000u32)
            .map(|i| key_hash(1, &i.to_le_bytes()))
            .collect();
        let bloom = Bloom::build(&hashes);
        assert!(hashes.iter().all(|h| bloom.may_contain(*h)));
        let false_positives = (10_000..20_000u32)
            .filter(|i| bloom.may_contain(key_hash(1, &i.to_le_bytes())))
            .count();
        assert!(
            false_positives < 300,
            "{false_positives} false positives in 10,000 (expected about 1 %)"
        );
        assert_ne!(
            key_hash(1, b"k"),
            key_hash(2, b"k"),
            "the table is part of the hash"
        );
    }
}
