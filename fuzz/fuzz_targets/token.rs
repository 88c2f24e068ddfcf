//! `antre::token::Keyring::verify` on arbitrary cookie values, and on
//! tokens it signed with one byte changed: it never panics, and nothing
//! verifies but a value the keyring signed.
//!
//! Input: the first byte picks the test, the rest feeds it.
//!
//! - even: the rest is a cookie value, verified as every kind for a few
//!   rooms against a fixed keyring of two keys (`k1` signs, `old` verifies).
//! - odd: the rest gives a key, a room, claims and one byte to change;
//!   the signed token must verify as itself only, and not once altered.

#![no_main]

use std::sync::OnceLock;

use antre::token::{Claims, Key, Keyring, Kind};
use libfuzzer_sys::fuzz_target;

mod input;

use input::{one_byte_changed, Input};

const KINDS: [Kind; 3] = [Kind::Ticket, Kind::Pass, Kind::Pending];
const ROOMS: [&str; 3] = ["vaksin", "r", ""];

/// The fixed keys; the seeds hold tokens they signed, for the fuzzer to
/// mutate. Each alone, to re-sign what the pair verified.
struct Keys {
    both: Keyring,
    k1: Keyring,
    old: Keyring,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = |id, fill| Key::new(id, &[fill; 32]).expect("a valid key");
        let ring = |keys| Keyring::new(keys).expect("a key");
        Keys {
            both: ring(vec![key("k1", 7), key("old", 1)]),
            k1: ring(vec![key("k1", 7)]),
            old: ring(vec![key("old", 1)]),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(value) => garbage(value),
            Err(_) => garbage(&String::from_utf8_lossy(rest)),
        }
    } else {
        altered(&mut Input(rest));
    }
});

/// Whatever verifies is exactly what the key named in it signs for those
/// claims: no other spelling of a token is accepted.
fn garbage(value: &str) {
    let keys = keys();
    for kind in KINDS {
        for room in ROOMS {
            let Some(claims) = keys.both.verify(kind, room, value) else {
                continue;
            };
            let signer = match value.split('.').nth(1) {
                Some("k1") => &keys.k1,
                Some("old") => &keys.old,
                other => panic!("{value:?} verified under key {other:?}"),
            };
            assert_eq!(
                signer.sign(kind, room, claims),
                value,
                "{value:?} verified as {kind:?} for {room:?} but is not what was signed"
            );
        }
    }
}

fn altered(input: &mut Input) {
    let id = input.text(32);
    let secret = input.bytes(40);
    let key = Key::new(&id, &secret).or_else(|_| Key::new("k", &[0; 32]));
    let ring = Keyring::new(vec![key.expect("a valid key")]).expect("a key");

    let kind = KINDS[usize::from(input.byte()) % KINDS.len()];
    let room = input.text(16);
    let claims = Claims {
        epoch: input.u64(),
        number: input.u64(),
        time: input.u64(),
    };
    let token = ring.sign(kind, &room, claims);
    assert_eq!(
        ring.verify(kind, &room, &token),
        Some(claims),
        "{token:?} does not verify"
    );
    for other in KINDS.into_iter().filter(|k| *k != kind) {
        assert_eq!(ring.verify(other, &room, &token), None, "{token:?} as {other:?}");
    }
    let elsewhere = format!("{room}x");
    assert_eq!(ring.verify(kind, &elsewhere, &token), None, "{token:?} in {elsewhere:?}");

    let (altered, index, byte) = one_byte_changed(&token, input);
    assert_eq!(
        ring.verify(kind, &room, &altered),
        None,
        "{token:?} with byte {index} set to {byte:#04x} still verifies"
    );
}
