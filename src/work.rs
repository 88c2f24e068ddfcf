//! Proof of work: what a new arrival pays when their network has used up
//! its budget of free tickets ([`crate::limit`]).
//!
//! A challenge is a signed token ([`crate::token`], kind `challenge`) that
//! binds the room (through the MAC), the difficulty in bits, an expiry, a
//! random server nonce and the client's network. The visitor finds a
//! decimal `n` such that
//!
//! ```text
//! SHA-256(challenge + "." + n)
//! ```
//!
//! starts with `bits` zero bits, and sends `challenge.n` back in the cookie
//! `antre-work-<room>`. antre checks the MAC, the expiry and the network,
//! then one hash; the store spends the nonce in the same atomic step that
//! hands out the ticket, so a solution buys one ticket, on any instance.
//!
//! Work prices a flood; it proves nobody's identity. A native solver runs
//! many times faster than a browser, so the difficulty stays where a cheap
//! phone solves it in about a second, and the budget per network, the
//! one-use nonce and the rising difficulty do the rest.

use std::fmt::Write as _;

use ring::digest;

use crate::limit::Network;
use crate::token::{Keyring, Kind};

/// The cookie a solution comes back in.
pub fn cookie_name(room: &str) -> String {
    format!("antre-work-{room}")
}

/// The solver the challenge page runs; also usable by API clients.
pub const SOLVER_JS: &str = include_str!("work.js");

/// A challenge handed to a visitor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Challenge {
    /// The token to hash, as sent.
    pub challenge: String,
    /// Leading zero bits the hash must have.
    pub bits: u32,
    /// Unix seconds after which a solution is refused.
    pub expires: u64,
}

/// A solution that checked out: its nonce is what the store spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solved {
    pub nonce: u64,
    pub expires: u64,
    pub bits: u32,
}

/// Why a solution was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    #[error("the solution is not `challenge.n`")]
    Malformed,
    #[error("the challenge was not issued by this waiting room")]
    Forged,
    #[error("the challenge has expired")]
    Expired,
    #[error("the challenge was issued to another network")]
    OtherNetwork,
    #[error("the hash does not start with enough zero bits")]
    TooLittle,
}

/// How long a challenge may be solved for.
pub const CHALLENGE_SECONDS: u64 = 300;

/// Issues a challenge of `bits` for `network` in `room`.
pub fn issue(keys: &Keyring, room: &str, network: Network, bits: u32, now_s: u64) -> Challenge {
    let expires = now_s + CHALLENGE_SECONDS;
    let challenge = keys.sign_numbers(
        Kind::Challenge,
        room,
        &[
            u64::from(bits),
            expires,
            crate::token::random_u64(),
            network.as_u64(),
        ],
    );
    Challenge {
        challenge,
        bits,
        expires,
    }
}

/// Checks a solution sent from `network` at `now_s`: the token, its expiry
/// and network, then one hash. Spending the nonce is the store's part.
pub fn verify(
    keys: &Keyring,
    room: &str,
    network: Network,
    solution: &str,
    now_s: u64,
) -> Result<Solved, WorkError> {
    let (challenge, counter) = solution.rsplit_once('.').ok_or(WorkError::Malformed)?;
    if counter.is_empty() || counter.len() > 16 || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WorkError::Malformed);
    }
    let [bits, expires, nonce, bound] = keys
        .verify_numbers(Kind::Challenge, room, challenge)
        .ok_or(WorkError::Forged)?;
    if now_s > expires {
        return Err(WorkError::Expired);
    }
    if bound != network.as_u64() {
        return Err(WorkError::OtherNetwork);
    }
    let bits = u32::try_from(bits).map_err(|_| WorkError::Forged)?;
    if leading_zero_bits(digest::digest(&digest::SHA256, solution.as_bytes()).as_ref()) < bits {
        return Err(WorkError::TooLittle);
    }
    Ok(Solved {
        nonce,
        expires,
        bits,
    })
}

fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in hash {
        if *byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// Solves a challenge here, for tests and the documented recipe: the
/// first counter that works.
pub fn solve(challenge: &str, bits: u32) -> u64 {
    let mut text = String::with_capacity(challenge.len() + 21);
    for n in 0.. {
        text.clear();
        let _ = write!(text, "{challenge}.{n}");
        if leading_zero_bits(digest::digest(&digest::SHA256, text.as_bytes()).as_ref()) >= bits {
            return n;
        }
    }
    unreachable!("some counter below 2^64 has the bits")
}

/// The difficulty for an arrival: `min` bits, one more for every fourfold
/// of the network's excess over its budget, one more while the line is
/// under pressure (arrivals far beyond what it admits), never above `max`.
///
/// ```
/// use antre::work::difficulty;
/// assert_eq!(difficulty(16, 19, 0, false), 16);
/// assert_eq!(difficulty(16, 19, 4, false), 17);
/// assert_eq!(difficulty(16, 19, 16, true), 19);
/// assert_eq!(difficulty(16, 19, 1_000_000, true), 19);
/// ```
pub fn difficulty(min: u32, max: u32, excess: u64, pressure: bool) -> u32 {
    let steps = if excess == 0 { 0 } else { excess.ilog2() / 2 };
    (min + steps + u32::from(pressure))
        .min(max)
        .max(min.min(max))
}

/// The recipe JSON clients get beside a challenge.
pub const RECIPE: &str = "Find a decimal n such that SHA-256(challenge + \".\" + n) starts with `bits` zero bits, then send the request again with the cookie named in `cookie` set to challenge + \".\" + n. The challenge is bound to your network address, expires at `expires` (Unix seconds) and buys one ticket.";

/// The page a browser gets: small, in both languages, with the solver
/// inline (no third party, no external script). Without JavaScript it
/// explains why and refreshes, so a visitor whose network's budget has
/// come back gets a ticket.
pub fn page(
    challenge: &Challenge,
    cookie: &str,
    secure: bool,
    lang: crate::page::Lang,
    refresh_seconds: u32,
) -> String {
    use crate::page::Lang;
    let (title, doing, nojs, other) = match lang {
        Lang::Id => (
            "Sebentar, memeriksa peramban Anda",
            "Banyak pendaftar datang dari jaringan yang sama dengan Anda. Peramban Anda sedang mengerjakan hitungan singkat (biasanya sekitar satu detik) sebelum Anda mendapat nomor antrean. Jangan tutup halaman ini.",
            "Langkah ini membutuhkan peramban dengan JavaScript aktif. Halaman ini akan mencoba lagi dengan sendirinya.",
            "Many people are arriving from your network. Your browser is doing a short calculation (usually about a second) before you get your place in line.",
        ),
        Lang::En => (
            "One moment: checking your browser",
            "Many people are arriving from the same network as you. Your browser is doing a short calculation (usually about a second) before you get your place in line. Please keep this page open.",
            "This step needs a browser with JavaScript enabled. This page will try again by itself.",
            "Banyak pendaftar datang dari jaringan Anda. Peramban Anda sedang mengerjakan hitungan singkat (biasanya sekitar satu detik) sebelum Anda mendapat nomor antrean.",
        ),
    };
    let mut html = String::with_capacity(SOLVER_JS.len() + 2048);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"{code}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<noscript><meta http-equiv=\"refresh\" content=\"{refresh_seconds}\"></noscript>\
<title>{title}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:2em auto;padding:0 1em;color:#222}}\
.s{{color:#666;font-size:.9em}}</style></head><body>\
<h1>{title}</h1><p>{doing}</p>\
<p id=\"antre-work\" data-challenge=\"{challenge}\" data-bits=\"{bits}\" data-cookie=\"{cookie}\" data-secure=\"{secure}\">\
&#9203; <span id=\"antre-progress\">0k</span></p>\
<noscript><p><strong>{nojs}</strong></p></noscript>\
<p class=\"s\" lang=\"{other_code}\">{other}</p><script>{SOLVER_JS}</script></body></html>",
        code = lang.code(),
        challenge = challenge.challenge,
        bits = challenge.bits,
        secure = u8::from(secure),
        other_code = match lang {
            Lang::Id => "en",
            Lang::En => "id",
        },
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Key;

    fn keys() -> Keyring {
        Keyring::new(vec![Key::new("k1", &[9; 32]).unwrap()]).unwrap()
    }

    const NET: Network = Network::V4(0x7f00_0002);
    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_solution_checks_out_once_found() {
        let keys = keys();
        let c = issue(&keys, "vaksin", NET, 8, NOW);
        let n = solve(&c.challenge, c.bits);
        let solution = format!("{}.{n}", c.challenge);
        let solved = verify(&keys, "vaksin", NET, &solution, NOW + 10).unwrap();
        assert_eq!((solved.bits, solved.expires), (8, NOW + CHALLENGE_SECONDS));
        // Another challenge, another nonce.
        let other = issue(&keys, "vaksin", NET, 8, NOW);
        assert_ne!(other.challenge, c.challenge);
    }

    #[test]
    fn bound_to_room_network_time_and_work() {
        let keys = keys();
        let c = issue(&keys, "vaksin", NET, 12, NOW);
        let n = solve(&c.challenge, c.bits);
        let good = format!("{}.{n}", c.challenge);
        let v = |room: &str, net: Network, s: &str, at: u64| verify(&keys, room, net, s, at);
        assert_eq!(v("tiket", NET, &good, NOW), Err(WorkError::Forged));
        assert_eq!(
            v("vaksin", Network::V4(0x7f00_0003), &good, NOW),
            Err(WorkError::OtherNetwork)
        );
        assert_eq!(
            v("vaksin", NET, &good, NOW + CHALLENGE_SECONDS + 1),
            Err(WorkError::Expired)
        );
        // A counter that does not do the work (the first one that fails).
        let lazy = (0..)
            .find(|m| {
                let s = format!("{}.{m}", c.challenge);
                leading_zero_bits(digest::digest(&digest::SHA256, s.as_bytes()).as_ref()) < 12
            })
            .unwrap();
        let lazy = format!("{}.{lazy}", c.challenge);
        assert_eq!(v("vaksin", NET, &lazy, NOW), Err(WorkError::TooLittle));
        // Asking for less work by changing the bits breaks the MAC.
        let cheaper = good.replacen(".12.", ".1.", 1);
        assert_eq!(v("vaksin", NET, &cheaper, NOW), Err(WorkError::Forged));
        for bad in [
            "",
            ".",
            "x.1",
            &format!("{}.", c.challenge),
            &format!("{}.-1", c.challenge),
        ] {
            assert!(v("vaksin", NET, bad, NOW).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn difficulty_rises_with_excess_and_pressure() {
        let table: Vec<u32> = [0, 1, 3, 4, 15, 16, 63, 64, 10_000]
            .iter()
            .map(|e| difficulty(16, 20, *e, false))
            .collect();
        assert_eq!(table, [16, 16, 16, 17, 17, 18, 18, 19, 20]);
        assert_eq!(difficulty(16, 20, 0, true), 17);
        assert_eq!(difficulty(18, 16, 0, false), 16);
    }

    #[test]
    fn the_page_is_small_and_carries_the_challenge() {
        let c = issue(&keys(), "vaksin", NET, 16, NOW);
        for lang in [crate::page::Lang::Id, crate::page::Lang::En] {
            let html = page(&c, "antre-work-vaksin", false, lang, 10);
            assert!(html.contains(&c.challenge));
            assert!(html.contains("data-bits=\"16\""));
            assert!(html.contains("http-equiv=\"refresh\" content=\"10\""));
            assert!(html.contains("JavaScript"));
            assert!(!html.contains("src="), "no external script");
            assert!(html.len() < 12 * 1024, "{}", html.len());
        }
    }
}
