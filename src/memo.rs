//! A bounded memory of results already worked out (verified tokens, signed
//! headers), shared by every worker: a map under a std `Mutex`, held only
//! for a lookup or an insert, and forgotten whole when it is full, so it
//! never outgrows its bound and needs no bookkeeping per entry.

use std::borrow::Borrow;
use std::collections::hash_map::{DefaultHasher, RandomState};
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

/// Hashes text by its last [`TAIL`] bytes and its length only, keyed as
/// the standard hasher is (a secret per process). For signed tokens: their
/// text ends in the MAC, which nobody without the key can choose for a
/// token that was remembered, so entries spread as well as under the full
/// hash, at a fraction of its cost for a token of a hundred and more bytes.
/// Equal tails still compare whole.
#[derive(Debug, Clone, Default)]
pub struct ByTail(RandomState);

/// Bytes of text [`ByTail`] hashes: 96 bits of a MAC in base64.
pub const TAIL: usize = 16;

impl BuildHasher for ByTail {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

pub struct TailHasher(DefaultHasher);

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(&bytes[bytes.len().saturating_sub(TAIL)..]);
        self.0.write_usize(bytes.len());
    }

    fn finish(&self) -> u64 {
        self.0.finish()
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
        let memo: Memo<Box<str>, u32, ByTail> = Memo::new(100);
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
}
