//! A bounded memory of results already worked out (verified tokens, signed
//! headers), shared by every worker: a map under a std `Mutex`, held only
//! for a lookup or an insert, and forgotten whole when it is full, so it
//! never outgrows its bound and needs no bookkeeping per entry.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;

#[derive(Debug)]
pub struct Memo<K, V, S = RandomState> {
    map: Mutex<HashMap<K, V, S>>,
    bound: usize,
}

impl<K: Hash + Eq, V, S: BuildHasher + Default> Memo<K, V, S> {
    /// Remembers at most `bound` entries.
    pub fn new(bound: usize) -> Memo<K, V, S> {
        Memo {
            map: Mutex::new(HashMap::default()),
            bound,
        }
    }

    /// What `read` makes of the entry for `key`, if there is one.
    pub fn find<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> Option<R>) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).and_then(read)
    }

    pub fn insert(&self, key: K, value: V) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.bound {
            *map = HashMap::default();
        }
        map.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A hasher for keys made by antre itself from what only it can make: a
/// signed token's text, which ends in its MAC, and numbers taken from a
/// verified pass. Text is hashed by its last [`TAIL`] bytes and its
/// length, numbers whole; each is folded into a state seeded at random per
/// process by one wide multiplication. A key nobody without the signing
/// key can choose spreads as well as under SipHash at a small part of its
/// cost (a token is a hundred and more bytes). Lookups with made-up
/// tokens may land anywhere but add no entries (only genuine tokens are
/// remembered), and equal hashes still compare whole.
#[derive(Debug, Clone)]
pub struct OwnKeys(u64);

/// Bytes of text [`OwnKeys`] hashes: 48 bits of a MAC in base64.
const TAIL: usize = 8;

/// An odd constant with its bits well spread (from the fractional part of
/// pi), so a fold mixes every input bit into the result's.
const SPREAD: u64 = 0x243f_6a88_85a3_08d3;

impl Default for OwnKeys {
    fn default() -> Self {
        OwnKeys(RandomState::new().hash_one(SPREAD))
    }
}

impl BuildHasher for OwnKeys {
    type Hasher = OwnKeyHasher;

    fn build_hasher(&self) -> OwnKeyHasher {
        OwnKeyHasher(self.0)
    }
}

pub struct OwnKeyHasher(u64);

/// `x` times [`SPREAD`], its high half folded onto its low.
fn spread(x: u64) -> u64 {
    let wide = u128::from(x) * u128::from(SPREAD);
    (wide as u64) ^ ((wide >> 64) as u64)
}

impl OwnKeyHasher {
    fn fold(&mut self, word: u64) {
        self.0 = spread(self.0 ^ word);
    }
}

impl Hasher for OwnKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let tail = &bytes[bytes.len().saturating_sub(TAIL)..];
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        self.fold(u64::from_le_bytes(word));
        self.fold(bytes.len() as u64);
    }

    fn write_u8(&mut self, n: u8) {
        self.fold(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.fold(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.fold(n as u64);
    }

    fn finish(&self) -> u64 {
        // Spread once more, so the high bits (the map's tag) depend on
        // every input bit too.
        spread(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_its_bound_it_forgets_and_starts_again() {
        let memo: Memo<String, u32> = Memo::new(3);
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            memo.insert((*key).to_owned(), i as u32);
        }
        assert_eq!(memo.find("b", |v| Some(*v)), Some(1));
        assert_eq!(memo.find("b", |v| (*v > 5).then_some(*v)), None);
        memo.insert("d".to_owned(), 9);
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.find("a", |v| Some(*v)), None);
        assert_eq!(memo.find("d", |v| Some(*v)), Some(9));
    }

    #[test]
    fn keys_hashed_by_their_tail_are_still_told_apart_whole() {
        let memo: Memo<Box<str>, u32, OwnKeys> = Memo::new(100);
        let tail = "x".repeat(TAIL);
        memo.insert(format!("a.{tail}").into(), 1);
        memo.insert(format!("b.{tail}").into(), 2);
        assert_eq!(
            memo.find(format!("a.{tail}").as_str(), |v| Some(*v)),
            Some(1)
        );
        assert_eq!(
            memo.find(format!("b.{tail}").as_str(), |v| Some(*v)),
            Some(2)
        );
        assert_eq!(memo.find(format!("c.{tail}").as_str(), |v| Some(*v)), None);
        assert_eq!(memo.find("short", |v| Some(*v)), None);
        memo.insert("short".into(), 3);
        assert_eq!(memo.find("short", |v| Some(*v)), Some(3));
        assert_eq!(memo.find(tail.as_str(), |v| Some(*v)), None);
    }

    #[test]
    fn numbers_are_hashed_whole_and_tails_spread() {
        let state = OwnKeys::default();
        let keys: Vec<(usize, u64, u64)> = (0..1000).map(|i| (0, i, 7)).collect();
        let hashes: std::collections::HashSet<u64> =
            keys.iter().map(|k| state.hash_one(k)).collect();
        assert_eq!(hashes.len(), keys.len());
        // Tokens that differ only in their last characters land apart, in
        // the high bits (the map's tag) as in the low (its bucket).
        let tops: std::collections::HashSet<u64> = (0..64)
            .map(|i| state.hash_one(format!("1.bench.1.2.3.abc{i:02}")) >> 57)
            .collect();
        assert!(tops.len() > 32, "{}", tops.len());
    }
}
