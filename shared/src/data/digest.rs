//! Per-range digests for anti-entropy. The key-hash space is cut into
//! [`RANGES`] ranges by the hash's top bits; a range's digest combines a
//! hash of every entry (key, version) a replica holds in it, by XOR, so it
//! is kept up to date entry by entry and does not depend on the order
//! entries were written. Whether an entry is a tombstone is not hashed: the
//! console stamps each version for one put or one removal, so the version
//! says it, and the console's expectation of a node — which records only
//! the version each holder has — hashes the same way. A Merkle tree over the ranges lets two
//! replicas find the ranges they disagree on by exchanging a root and then
//! only the subtrees that differ; entries are listed for those ranges only.

use crate::data::{ObjectKey, ObjectMeta, Version};

/// Ranges of the key-hash space (a power of two).
pub const RANGES: usize = 256;
/// Bits of the key hash that pick the range.
const RANGE_BITS: u32 = RANGES.trailing_zeros();

/// The range a key falls in.
pub fn range_of(key: &ObjectKey) -> usize {
    usize::try_from(key.hash() >> (64 - RANGE_BITS)).unwrap_or(0)
}

/// An entry's contribution to its range's digest.
fn entry_hash(key: &ObjectKey, version: Version) -> u128 {
    let mut bytes = Vec::with_capacity(key.as_str().len() + 16);
    bytes.extend_from_slice(key.as_str().as_bytes());
    bytes.extend_from_slice(&version.term.to_be_bytes());
    bytes.extend_from_slice(&version.counter.to_be_bytes());
    xxhash_rust::xxh3::xxh3_128(&bytes)
}

/// The digests of one replica's holdings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    leaves: Vec<u128>,
}

impl Default for Digests {
    fn default() -> Self {
        Self { leaves: vec![0; RANGES] }
    }
}

impl Digests {
    /// The digests of `entries`.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a ObjectMeta>) -> Self {
        let mut digests = Self::default();
        for meta in entries {
            digests.add(meta);
        }
        digests
    }

    /// Takes an entry in.
    pub fn add(&mut self, meta: &ObjectMeta) {
        self.toggle(&meta.key, meta.version);
    }

    /// Takes an entry out (one that was added).
    pub fn remove(&mut self, meta: &ObjectMeta) {
        self.toggle(&meta.key, meta.version);
    }

    /// Takes `key` at `version` in, or out if it was in: XOR is its own
    /// inverse.
    pub fn toggle(&mut self, key: &ObjectKey, version: Version) {
        self.leaves[range_of(key)] ^= entry_hash(key, version);
    }

    /// Digests from their leaves (an agent's answer).
    pub fn from_leaves(leaves: Vec<u128>) -> Option<Self> {
        (leaves.len() == RANGES).then_some(Self { leaves })
    }

    /// Each range's digest.
    pub fn leaves(&self) -> &[u128] {
        &self.leaves
    }

    /// The Merkle tree over the ranges: level 0 is the root, the last
    /// level the ranges themselves.
    pub fn tree(&self) -> Vec<Vec<u128>> {
        let mut levels = vec![self.leaves.clone()];
        while levels.last().is_some_and(|level| level.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above = below.chunks(2).map(|pair| combine(pair[0], pair.get(1).copied().unwrap_or(0))).collect();
            levels.push(above);
        }
        levels.reverse();
        levels
    }

    /// The ranges where `self` and `other` differ, found top-down: a
    /// subtree whose digests agree is not looked into.
    pub fn differing_ranges(&self, other: &Self) -> Vec<usize> {
        let (ours, theirs) = (self.tree(), other.tree());
        let depth = ours.len();
        let mut suspects = vec![0usize];
        for (level, (our_level, their_level)) in ours.iter().zip(&theirs).enumerate() {
            suspects.retain(|&index| our_level.get(index) != their_level.get(index));
            if level + 1 < depth {
                suspects = suspects.iter().flat_map(|&index| [index * 2, index * 2 + 1]).collect();
            }
        }
        suspects
    }
}

/// A parent's digest from its children's.
fn combine(left: u128, right: u128) -> u128 {
    let mut bytes = [0; 32];
    bytes[..16].copy_from_slice(&left.to_be_bytes());
    bytes[16..].copy_from_slice(&right.to_be_bytes());
    xxhash_rust::xxh3::xxh3_128(&bytes)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn meta(key: &str, counter: u64, tombstone: bool) -> ObjectMeta {
        ObjectMeta {
            key: ObjectKey::parse(key).unwrap(),
            version: Version { term: 1, counter },
            size: 1,
            checksum: String::new(),
            tombstone,
        }
    }

    #[test]
    fn equal_holdings_have_equal_digests_whatever_the_order() {
        let entries: Vec<ObjectMeta> = (0..100).map(|i| meta(&format!("k{i}"), i, i % 7 == 0)).collect();
        let forward = Digests::of(&entries);
        let backward = Digests::of(entries.iter().rev());
        assert_eq!(forward, backward);
        assert!(forward.differing_ranges(&backward).is_empty());
    }

    #[test]
    fn a_removed_entry_leaves_no_trace() {
        let mut digests = Digests::of(&[meta("a", 1, false)]);
        let extra = meta("b", 2, false);
        digests.add(&extra);
        digests.remove(&extra);
        assert_eq!(digests, Digests::of(&[meta("a", 1, false)]));
    }

    proptest! {
        /// The ranges found top-down are exactly those whose holdings
        /// differ: a newer version (a put or a tombstone), a missing key.
        #[test]
        fn differing_ranges_are_exactly_the_ranges_whose_entries_differ(
            keys in proptest::collection::btree_set("[a-z0-9/]{1,12}", 1..60),
            changed in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let keys: Vec<String> = keys.into_iter().collect();
            let ours: Vec<ObjectMeta> = keys.iter().map(|key| meta(key, 1, false)).collect();
            let mut theirs = ours.clone();
            let mut expected = std::collections::BTreeSet::new();
            for (n, index) in changed.iter().enumerate() {
                let at = index.index(theirs.len());
                expected.insert(range_of(&theirs[at].key));
                match n % 2 {
                    0 => theirs[at].version.counter += 1,
                    _ => theirs[at].key = ObjectKey::parse(&format!("{}~moved", theirs[at].key)).unwrap(),
                }
                if n % 2 == 1 {
                    expected.insert(range_of(&theirs[at].key));
                }
            }
            let found: std::collections::BTreeSet<usize> =
                Digests::of(&ours).differing_ranges(&Digests::of(&theirs)).into_iter().collect();
            prop_assert!(found.is_subset(&expected), "found {:?} expected {:?}", found, expected);
            let recomputed: std::collections::BTreeSet<usize> = (0..RANGES)
                .filter(|&range| {
                    let mut a: Vec<_> = ours.iter().filter(|m| range_of(&m.key) == range).map(|m| (m.key.clone(), m.version)).collect();
                    let mut b: Vec<_> = theirs.iter().filter(|m| range_of(&m.key) == range).map(|m| (m.key.clone(), m.version)).collect();
                    a.sort();
                    b.sort();
                    a != b
                })
                .collect();
            prop_assert_eq!(found, recomputed);
        }
    }
}
