//! The fair draw at a phase's opening: everyone who entered in the
//! pre-queue window is put in an order nobody could know or steer in
//! advance, and anyone can recompute it afterwards.
//!
//! The rules, precisely enough to reimplement (the Redis script follows
//! them too):
//!
//! - Each room has a secret, made at random once and kept by the store.
//!   The seed of the draw of the phase opening at `start` (microseconds
//!   since the Unix epoch, in decimal) is
//!   `seed = hex(SHA-1(secret ":" start))`, 40 lowercase hex digits.
//! - Before the phase opens antre publishes the commitment
//!   `hex(SHA-256(seed))`; once it has opened it reveals `seed`, and
//!   anyone can check the two agree.
//! - Each entry has an id: a random whole number from 1 to 2^53 - 1, given
//!   to the visitor when they enter. At the opening, the entries are
//!   sorted by `hex(SHA-1(seed ":" id))` (the id in decimal), as strings,
//!   ascending; equal keys by id. The first in that order gets the next
//!   ticket number after everyone already in line, the second the one
//!   after, and so on; visitors arriving after the opening are numbered
//!   behind the whole drawn group, in arrival order.
//!
//! SHA-1 serves here as a fixed, public shuffle that Redis's script can
//! compute: the ids are chosen by antre, not by visitors, and the seed is
//! unknown until the entries are closed, so nobody can aim for a place.

use ring::digest;

use crate::clock::Micros;
use crate::token::random_u64;

/// The largest entry id: ids stay exact in the Redis script's numbers.
pub const MAX_ENTRY: u64 = (1 << 53) - 1;

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn sha1_hex(text: &str) -> String {
    hex(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes()).as_ref())
}

/// The seed of the draw of the phase opening at `phase`.
pub fn seed(secret: &str, phase: Micros) -> String {
    sha1_hex(&format!("{secret}:{phase}"))
}

/// What is published before the draw: the seed's SHA-256, in hex.
pub fn commitment(seed: &str) -> String {
    hex(digest::digest(&digest::SHA256, seed.as_bytes()).as_ref())
}

/// An entry's place key under `seed`.
pub fn key(seed: &str, id: u64) -> String {
    sha1_hex(&format!("{seed}:{id}"))
}

/// `entries` in the order the draw with `seed` gives them.
pub fn order(seed: &str, entries: &[u64]) -> Vec<u64> {
    let mut keyed: Vec<(String, u64)> = entries.iter().map(|id| (key(seed, *id), *id)).collect();
    keyed.sort();
    keyed.into_iter().map(|(_, id)| id).collect()
}

/// A new room secret: 128 random bits in hex.
pub fn new_secret() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// A new entry id, from 1 to [`MAX_ENTRY`].
pub fn new_entry() -> u64 {
    (random_u64() & MAX_ENTRY).max(1)
}

/// Reads the entry ids of a published list: one per line, in decimal;
/// blank lines and lines starting with `#` are skipped. Errors name the
/// line.
pub fn read_entries(text: &str) -> Result<Vec<u64>, String> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.parse::<u64>() {
            Ok(id) if (1..=MAX_ENTRY).contains(&id) => entries.push(id),
            _ => {
                return Err(format!(
                    "line {}: {line:?} is not an entry id (a whole number from 1 to {MAX_ENTRY})",
                    i + 1
                ))
            }
        }
    }
    Ok(entries)
}

/// True when `seed` is 40 lowercase hex digits, as [`seed`] makes them.
pub fn valid_seed(seed: &str) -> bool {
    seed.len() == 40
        && seed
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_give_known_values() {
        // SHA-1("abc") and SHA-256("abc"), the standards' own examples.
        assert_eq!(sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            commitment("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(seed("s", 7), sha1_hex("s:7"));
        assert_eq!(key("abc", 12), sha1_hex("abc:12"));
    }

    #[test]
    fn the_order_depends_on_the_seed_and_not_on_arrival() {
        let entries: Vec<u64> = (1..=50).collect();
        let one = order(&seed("x", 1), &entries);
        let reversed: Vec<u64> = entries.iter().rev().copied().collect();
        assert_eq!(one, order(&seed("x", 1), &reversed));
        assert_ne!(one, order(&seed("x", 2), &entries));
        assert_ne!(one, entries, "shuffled");
        let mut sorted = one.clone();
        sorted.sort();
        assert_eq!(sorted, entries, "everyone once");
    }

    #[test]
    fn a_list_is_read_with_its_mistakes_named() {
        assert_eq!(read_entries("# ids\n3\n\n 17 \n"), Ok(vec![3, 17]));
        assert_eq!(
            read_entries("3\nfour\n"),
            Err(format!(
                "line 2: \"four\" is not an entry id (a whole number from 1 to {MAX_ENTRY})"
            ))
        );
        assert!(read_entries("0").is_err());
        assert!(valid_seed(&seed("s", 1)) && !valid_seed("ABC"));
    }
}
