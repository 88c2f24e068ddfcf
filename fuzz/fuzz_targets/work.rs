//! A proof-of-work solution and a pass, as a client may send them, on
//! arbitrary bytes: `antre::work::verify` and `Keyring::verify_pass` never
//! panic, and what they accept is exactly what the keys signed (a
//! challenge with enough work for the network it names; a pass).

#![no_main]

use std::sync::OnceLock;

use antre::limit::Network;
use antre::token::{Key, Keyring, Kind};
use antre::work;
use libfuzzer_sys::fuzz_target;

const NET: Network = Network::V4(0x7f00_0001);
const NOW: u64 = 1_800_000_000;

fn keys() -> &'static Keyring {
    static KEYS: OnceLock<Keyring> = OnceLock::new();
    KEYS.get_or_init(|| {
        Keyring::new(vec![Key::new("k1", &[7; 32]).expect("a valid key")]).expect("a key")
    })
}

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let keys = keys();
    if let Ok(solved) = work::verify(keys, "vaksin", NET, &value, NOW) {
        let (challenge, _) = value.rsplit_once('.').expect("a solution has a counter");
        let numbers: [u64; 4] = keys
            .verify_numbers(Kind::Challenge, "vaksin", challenge)
            .expect("the challenge verifies");
        assert_eq!(keys.sign_numbers(Kind::Challenge, "vaksin", &numbers), challenge);
        assert_eq!(u64::from(solved.bits), numbers[0]);
        assert_eq!(numbers[3], NET.as_u64());
    }
    if let Some(pass) = keys.verify_pass("vaksin", &value) {
        let resigned = if pass.issued == 0 && pass.id == 0 {
            let claims = antre::token::Claims {
                epoch: pass.epoch,
                number: pass.number,
                time: pass.expires,
            };
            keys.sign(Kind::Pass, "vaksin", claims)
        } else {
            keys.sign_pass("vaksin", &pass)
        };
        assert_eq!(resigned, value, "only what was signed verifies as a pass");
    }
});
