//! `antre::admission::AdmissionKeys::verify` on arbitrary header values,
//! and on values it signed with one byte changed: it never panics, and
//! nothing verifies but a value the keys signed.
//!
//! Input: the first byte picks the test, the rest feeds it.
//!
//! - even: the rest is a header value, verified against fixed keys (`a1`
//!   signs, `old` verifies).
//! - odd: the rest gives a key, an admission and one byte to change; the
//!   signed value must verify as itself, and not once altered.

#![no_main]

use std::sync::OnceLock;

use antre::admission::{Admission, AdmissionKeys, Via};
use antre::config::KeySpec;
use libfuzzer_sys::fuzz_target;

mod input;

use input::{one_byte_changed, Input};

const VIAS: [Via; 4] = [Via::Line, Via::Invite, Via::Allow, Via::Outage];

/// The fixed keys; the seeds hold values they signed, for the fuzzer to
/// mutate. Each alone, to re-sign what the pair verified.
struct Keys {
    both: AdmissionKeys,
    a1: AdmissionKeys,
    old: AdmissionKeys,
}

fn spec(id: &str, fill: u8) -> KeySpec {
    KeySpec {
        id: id.into(),
        secret: vec![fill; 32],
    }
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let keys = |specs| AdmissionKeys::new(specs).expect("valid keys");
        Keys {
            both: keys(vec![spec("a1", 7), spec("old", 1)]),
            a1: keys(vec![spec("a1", 7)]),
            old: keys(vec![spec("old", 1)]),
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

/// Whatever verifies is exactly what the key named in it signs for that
/// admission: no other spelling of a value is accepted.
fn garbage(value: &str) {
    let keys = keys();
    let Ok(admission) = keys.both.verify(value) else {
        return;
    };
    let signer = match antre::admission::key_id(value) {
        Some("a1") => &keys.a1,
        Some("old") => &keys.old,
        other => panic!("{value:?} verified under key {other:?}"),
    };
    assert_eq!(
        signer.sign(&admission).expect("a verified room signs"),
        value,
        "{value:?} verified as {admission:?} but is not what was signed"
    );
}

fn altered(input: &mut Input) {
    let id = input.text(32);
    let secret = input.bytes(40);
    let keys = AdmissionKeys::new(vec![KeySpec { id, secret }])
        .or_else(|_| AdmissionKeys::new(vec![spec("k", 0)]))
        .expect("valid keys");
    let room = input.text(32);
    let admission = Admission {
        room: room.as_str().into(),
        ticket: input.u64(),
        pass: input.u64(),
        issued: input.u64(),
        via: VIAS[usize::from(input.byte()) % VIAS.len()],
    };
    // A room the config would refuse is refused here too, never signed.
    let Ok(value) = keys.sign(&admission) else {
        return;
    };
    assert_eq!(keys.verify(&value), Ok(admission.clone()), "{value:?} does not verify");

    let (altered, index, byte) = one_byte_changed(&value, input);
    assert!(
        keys.verify(&altered).is_err(),
        "{value:?} with byte {index} set to {byte:#04x} still verifies"
    );
}
