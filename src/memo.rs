//! A bounded memory of results already worked out (verified tokens, signed
//! headers), shared by every worker: a map under a std `Mutex`, held only
//! for a lookup or an insert, and forgotten whole when it is full, so it
//! never outgrows its bound and needs no bookkeeping per entry.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

#[derive(Debug)]
pub struct Memo<K, V> {
    map: Mutex<HashMap<K, V>>,
    bound: usize,
}

impl<K: Hash + Eq, V> Memo<K, V> {
    /// Remembers at most `bound` entries.
    pub fn new(bound: usize) -> Memo<K, V> {
        Memo {
            map: Mutex::new(HashMap::new()),
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
            *map = HashMap::new();
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
}
