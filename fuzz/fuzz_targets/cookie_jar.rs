//! `antre::cookie::Jar::parse` and `is_own` on arbitrary `Cookie` fields:
//! they never panic, the jar only hands back values the visitor sent under
//! one of antre's names, and stuffing the header cannot make it keep more
//! than a few values per name.
//!
//! Input: the bytes of the fields, separated by `\n` (which a header value
//! cannot hold), so one input is one request's `Cookie` fields.

#![no_main]

use antre::cookie::{is_own, Jar};
use libfuzzer_sys::fuzz_target;

/// `cookie::VALUES_PER_NAME`, which is private.
const VALUES_PER_NAME: usize = 4;

/// `cookie::OWN_PAIRS`, which is private.
const OWN_PAIRS: usize = 32;

fuzz_target!(|data: &[u8]| {
    let fields: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let jar = Jar::parse(&fields);

    let pairs: Vec<&[u8]> = fields
        .iter()
        .flat_map(|field| field.split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .collect();

    for pair in &pairs {
        // `is_own` must agree with itself on the trimmed pair (the proxy
        // trims before asking), and only ever claim antre's names.
        if is_own(pair) {
            let name = pair.split(|b| *b == b'=').next().unwrap_or(pair);
            assert!(
                name.trim_ascii().starts_with(b"antre-"),
                "is_own({pair:?}) for a name that is not antre's"
            );
        }
    }

    // Every name the input could have sent, spelt as a lookup would spell it.
    let mut names: Vec<&str> = pairs
        .iter()
        .filter_map(|pair| {
            let name = pair.split(|b| *b == b'=').next()?;
            let name = std::str::from_utf8(name).ok()?;
            Some([name.trim_ascii(), name.trim()])
        })
        .flatten()
        .collect();
    names.sort_unstable();
    names.dedup();

    let mut total = 0;
    for name in names {
        let values: Vec<&str> = jar.values(name).collect();
        assert!(
            values.len() <= VALUES_PER_NAME,
            "{} values kept for {name:?}",
            values.len()
        );
        total += values.len();
        for value in values {
            // The value came from a pair of antre's, sent under this name:
            // one the proxy also keeps away from the origin.
            let sent = pairs.iter().any(|pair| {
                is_own(pair)
                    && std::str::from_utf8(pair)
                        .ok()
                        .and_then(|p| p.split_once('='))
                        .is_some_and(|(n, v)| n.trim() == name && v.contains(value))
            });
            assert!(sent, "{name:?}={value:?} was never sent");
        }
    }
    assert!(total <= OWN_PAIRS, "{total} pairs kept");

    // The first of antre's pairs is never lost, however many follow it.
    let first = pairs.iter().find_map(|pair| {
        if !is_own(pair) || !pair.is_ascii() {
            return None;
        }
        let (name, value) = std::str::from_utf8(pair).ok()?.split_once('=')?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some((name.trim(), value))
    });
    if let Some((name, value)) = first {
        assert_eq!(
            jar.values(name).next(),
            Some(value),
            "the first pair {name:?}={value:?} was lost"
        );
    }

    // `is_own` on the raw bytes, whatever they are.
    let _ = is_own(data);
});
