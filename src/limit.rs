//! Keyed rate limits, bounded in memory: the budget of new tickets per
//! client network and room, and the request rate of each pass.
//!
//! Each key holds one number, its theoretical arrival time (`tat`), as in
//! the generic cell rate algorithm (GCRA): a request conforms when it comes
//! no earlier than `tat - tolerance`, and moves `tat` on by one `interval`.
//! `interval` is the steady rate (one request per interval), `tolerance`
//! the burst on top of it (`(burst - 1) * interval`). A key whose `tat` has
//! passed is the same as no key at all, so it may be forgotten: that keeps
//! memory to the keys active right now.
//!
//! Memory is bounded: the map is split into shards, each with a fixed
//! number of slots. A full shard first forgets keys that have gone quiet;
//! if every key is still active it drops one at random. An attacker who can
//! cycle through more addresses than there are slots can so reset one of
//! their own keys, which gains them nothing a fresh address would not.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::clock::{Micros, MICROS_PER_SECOND};

/// The unit an arrival budget counts by: an IPv4 address, or the /64 of an
/// IPv6 address (what one subscriber is given; privacy addresses rotate
/// within it). An IPv4 address mapped into IPv6 counts as the IPv4 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Network {
    V4(u32),
    V6(u64),
}

impl Network {
    pub fn of(ip: IpAddr) -> Network {
        match ip {
            IpAddr::V4(v4) => Network::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Network::V4(u32::from(v4)),
                None => Network::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }

    /// One number for the network, for signed challenges and the store:
    /// IPv4 addresses below 2^32, IPv6 prefixes with the top bit set (a
    /// prefix that already has it loses nothing that matters: the other
    /// 63 bits still tell networks apart).
    pub fn as_u64(self) -> u64 {
        match self {
            Network::V4(v4) => u64::from(v4),
            Network::V6(prefix) => prefix | (1 << 63),
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Network::V4(v4) => write!(f, "{}", std::net::Ipv4Addr::from(*v4)),
            Network::V6(prefix) => {
                let addr = std::net::Ipv6Addr::from(u128::from(*prefix) << 64);
                write!(f, "{addr}/64")
            }
        }
    }
}

/// A rate with a burst: its two GCRA parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time between requests at the steady rate.
    pub interval: Micros,
    /// How far ahead of now `tat` may run: `(burst - 1) * interval`.
    pub tolerance: Micros,
}

impl Rate {
    /// `per_second` requests a second (at least one a minute, no more than
    /// a million), with `burst` allowed at once (at least 1).
    pub fn per_second(per_second: f64, burst: u32) -> Rate {
        let per_second = per_second.clamp(1.0 / 60.0, 1_000_000.0);
        let interval = ((MICROS_PER_SECOND as f64) / per_second).ceil() as Micros;
        Rate::with_interval(interval.max(1), burst)
    }

    pub fn per_minute(per_minute: u32, burst: u32) -> Rate {
        let interval = (60 * MICROS_PER_SECOND).div_ceil(u64::from(per_minute.max(1)));
        Rate::with_interval(interval, burst)
    }

    fn with_interval(interval: Micros, burst: u32) -> Rate {
        Rate {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1) - 1)),
        }
    }
}

/// What one key remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slot<V> {
    /// Theoretical arrival time of the next request at the steady rate.
    pub tat: Micros,
    /// Requests counted since the key was last forgotten.
    pub count: u32,
    /// What the user of the limiter keeps beside the rate.
    pub extra: V,
}

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate and burst; it has been counted.
    Conforms,
    /// Too soon. `wait` is how long until a request would conform; `excess`
    /// how many requests beyond the burst the key has run ahead.
    Exceeds { wait: Micros, excess: u64 },
}

impl<V> Slot<V> {
    /// Counts a request at `now` if it conforms to `rate`.
    pub fn check(&mut self, rate: Rate, now: Micros) -> Verdict {
        let tat = self.tat.max(now);
        let allowed_from = tat.saturating_sub(rate.tolerance);
        if now < allowed_from {
            let ahead = tat - now - rate.tolerance;
            return Verdict::Exceeds {
                wait: allowed_from - now,
                excess: ahead.div_ceil(rate.interval.max(1)),
            };
        }
        self.tat = tat + rate.interval;
        self.count = self.count.saturating_add(1);
        Verdict::Conforms
    }

    /// Counts a request whatever the rate says (one that paid its way by
    /// other means); `tat` runs at most `cap` ahead of now. Returns how
    /// many requests beyond the burst the key is now ahead.
    pub fn force(&mut self, rate: Rate, now: Micros, cap: Micros) -> u64 {
        let tat = self.tat.max(now).saturating_add(rate.interval);
        self.tat = tat.min(now.saturating_add(cap));
        self.count = self.count.saturating_add(1);
        (self.tat - now)
            .saturating_sub(rate.tolerance)
            .div_ceil(rate.interval.max(1))
    }

    /// How many requests beyond the burst the key has run ahead at `now`.
    pub fn excess(&self, rate: Rate, now: Micros) -> u64 {
        self.tat
            .saturating_sub(now)
            .saturating_sub(rate.tolerance)
            .div_ceil(rate.interval.max(1))
    }
}

/// A key with its hash, worked out once (keyed SipHash, as the standard
/// map's own) both to pick the shard and to place the key in its map.
#[derive(Clone, Copy)]
struct Hashed<K> {
    hash: u64,
    key: K,
}

impl<K: Eq> PartialEq for Hashed<K> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl<K: Eq> Eq for Hashed<K> {}

impl<K> Hash for Hashed<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The map's hasher: a [`Hashed`] key's hash as it is.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else is still folded in.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Slots<K, V> = HashMap<Hashed<K>, Slot<V>, BuildHasherDefault<Prehashed>>;

struct Shard<K, V> {
    slots: Slots<K, V>,
    /// No quiet keys are looked for before this time, so that a shard full
    /// of active keys costs one sweep a second, not one per insert.
    next_sweep: Micros,
}

/// Slots keyed by `K`, at most `capacity` of them.
pub struct Limiter<K, V = ()> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    per_shard: usize,
    /// A key is forgotten once its `tat` is this far in the past.
    keep: Micros,
    hasher: std::collections::hash_map::RandomState,
}

const SHARDS: usize = 16;

impl<K: Hash + Eq + Copy, V: Default> Limiter<K, V> {
    /// Holds at most `capacity` keys (rounded up to a multiple of the shard
    /// count); a key is forgotten `keep` after its `tat` has passed.
    pub fn new(capacity: usize, keep: Micros) -> Limiter<K, V> {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Limiter {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        slots: HashMap::default(),
                        next_sweep: 0,
                    })
                })
                .collect(),
            per_shard,
            keep,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// `key` with its hash, and its shard. The shard is chosen by bits
    /// the map does not use for the bucket (the low ones) or the tag (the
    /// top seven).
    fn shard(&self, key: K) -> (Hashed<K>, &Mutex<Shard<K, V>>) {
        let hash = self.hasher.hash_one(key);
        let index = (hash >> 32) as usize % SHARDS;
        (Hashed { hash, key }, &self.shards[index])
    }

    /// Runs `f` on `key`'s slot (a new one if the key is not known), under
    /// the shard's lock: a std `Mutex`, held for a few instructions and
    /// never across an await. `forgotten` receives the counts of keys
    /// dropped to make room.
    pub fn with<R>(
        &self,
        key: K,
        now: Micros,
        forgotten: &mut Vec<u32>,
        f: impl FnOnce(&mut Slot<V>) -> R,
    ) -> R {
        let (key, shard) = self.shard(key);
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if shard.slots.len() >= self.per_shard && !shard.slots.contains_key(&key) {
            self.make_room(&mut shard, now, forgotten);
        }
        let slot = shard.slots.entry(key).or_default();
        f(slot)
    }

    /// Reads `key`'s slot without creating one.
    pub fn peek<R>(&self, key: &K, f: impl FnOnce(Option<&Slot<V>>) -> R) -> R {
        let (key, shard) = self.shard(*key);
        let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        f(shard.slots.get(&key))
    }

    fn make_room(&self, shard: &mut Shard<K, V>, now: Micros, forgotten: &mut Vec<u32>) {
        if now >= shard.next_sweep {
            shard.next_sweep = now + MICROS_PER_SECOND;
            let cutoff = now.saturating_sub(self.keep);
            shard.slots.retain(|_, slot| {
                let keep = slot.tat > cutoff;
                if !keep {
                    forgotten.push(slot.count);
                }
                keep
            });
        }
        if shard.slots.len() >= self.per_shard {
            // Every key is active: drop one. HashMap's order is random per
            // process, so nobody can pick which.
            if let Some(victim) = shard.slots.keys().next().copied() {
                if let Some(slot) = shard.slots.remove(&victim) {
                    forgotten.push(slot.count);
                }
            }
        }
    }

    /// Forgets every key that has gone quiet; returns their counts.
    pub fn sweep(&self, now: Micros) -> Vec<u32> {
        let cutoff = now.saturating_sub(self.keep);
        let mut forgotten = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.slots.retain(|_, slot| {
                let keep = slot.tat > cutoff;
                if !keep {
                    forgotten.push(slot.count);
                }
                keep
            });
        }
        forgotten
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).slots.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys it will hold.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Micros = MICROS_PER_SECOND;

    #[test]
    fn burst_then_steady_rate() {
        let rate = Rate::per_minute(60, 5);
        let mut slot = Slot::<()>::default();
        let now = 1_000 * S;
        for _ in 0..5 {
            assert_eq!(slot.check(rate, now), Verdict::Conforms);
        }
        assert_eq!(
            slot.check(rate, now),
            Verdict::Exceeds { wait: S, excess: 1 }
        );
        // One a second from then on.
        assert_eq!(slot.check(rate, now + S), Verdict::Conforms);
        assert!(matches!(slot.check(rate, now + S), Verdict::Exceeds { .. }));
        // Quiet for a while: the whole burst again, no more.
        let later = now + 100 * S;
        for _ in 0..5 {
            assert_eq!(slot.check(rate, later), Verdict::Conforms);
        }
        assert!(matches!(slot.check(rate, later), Verdict::Exceeds { .. }));
        assert_eq!(slot.count, 11);
    }

    #[test]
    fn forced_requests_run_the_key_ahead_up_to_a_cap() {
        let rate = Rate::per_minute(60, 2);
        let mut slot = Slot::<()>::default();
        let now = 50 * S;
        assert_eq!(slot.force(rate, now, 10 * S), 0);
        assert_eq!(slot.force(rate, now, 10 * S), 1);
        assert_eq!(slot.force(rate, now, 10 * S), 2);
        for _ in 0..100 {
            slot.force(rate, now, 10 * S);
        }
        assert_eq!(slot.tat, now + 10 * S);
        assert_eq!(slot.excess(rate, now), 9);
        assert_eq!(slot.excess(rate, now + 20 * S), 0);
    }

    #[test]
    fn networks_are_addresses_and_v6_slash_64s() {
        let a = Network::of("127.0.0.2".parse().unwrap());
        let b = Network::of("127.0.0.3".parse().unwrap());
        assert_ne!(a, b);
        assert_eq!(Network::of("::ffff:127.0.0.2".parse().unwrap()), a);
        let x = Network::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let y = Network::of("2001:db8:1:2:bbbb::9".parse().unwrap());
        let z = Network::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert_eq!(x.to_string(), "2001:db8:1:2::/64");
        assert_eq!(a.to_string(), "127.0.0.2");
        assert!(x.as_u64() >= 1 << 63 && a.as_u64() < 1 << 32);
    }

    #[test]
    fn memory_is_bounded_and_quiet_keys_go_first() {
        let limiter: Limiter<u64> = Limiter::new(160, 0);
        let rate = Rate::per_minute(60, 1);
        let mut forgotten = Vec::new();
        // A million addresses, all active at once.
        for key in 0..1_000_000u64 {
            limiter.with(key, 10 * S, &mut forgotten, |slot| slot.check(rate, 10 * S));
        }
        assert!(limiter.len() <= limiter.capacity());
        assert_eq!(forgotten.len() + limiter.len(), 1_000_000);
        // Later they have all gone quiet: a sweep forgets them all.
        assert_eq!(limiter.sweep(20 * S).len(), limiter.capacity());
        assert!(limiter.is_empty());
    }

    #[test]
    fn a_known_key_keeps_its_slot() {
        let limiter: Limiter<u64> = Limiter::new(16, 0);
        let rate = Rate::per_minute(60, 3);
        let mut forgotten = Vec::new();
        for _ in 0..3 {
            let v = limiter.with(7, S, &mut forgotten, |slot| slot.check(rate, S));
            assert_eq!(v, Verdict::Conforms);
        }
        let v = limiter.with(7, S, &mut forgotten, |slot| slot.check(rate, S));
        assert!(matches!(v, Verdict::Exceeds { .. }));
        assert_eq!(limiter.peek(&7, |s| s.map(|s| s.count)), Some(3));
    }

    proptest! {
        /// In any window, at most `burst + window / interval` requests
        /// conform, however they are spread.
        #[test]
        fn never_more_than_burst_plus_rate(
            per_minute in 1u32..600,
            burst in 1u32..50,
            gaps in proptest::collection::vec(0u64..2_000_000, 1..400),
        ) {
            let rate = Rate::per_minute(per_minute, burst);
            let mut slot = Slot::<()>::default();
            let start = 1_000 * S;
            let mut now = start;
            let mut conforming = 0u64;
            for gap in gaps {
                now += gap;
                if slot.check(rate, now) == Verdict::Conforms {
                    conforming += 1;
                }
            }
            let allowed = u64::from(burst) + (now - start) / rate.interval;
            prop_assert!(conforming <= allowed, "{conforming} > {allowed}");
        }
    }
}
