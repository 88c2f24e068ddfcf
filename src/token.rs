//! Tickets and passes: the signed cookies that are a visitor's only state.
//!
//! Wire form, all ASCII so it needs no cookie quoting:
//!
//! ```text
//! 1.<key id>.<epoch>.<number>.<time>.<mac>                      ticket
//! 1.<key id>.<epoch>.<number>.<expires>.<issued>.<id>.<network>.<via>.<mac>  pass
//! 1.<key id>.<bits>.<expires>.<nonce>.<network>.<mac>           challenge
//! 1.<key id>.<id>.<uses>.<expires>.<mac>                          invite
//! ```
//!
//! `1` is the format version; times are Unix seconds; `mac` is
//! HMAC-SHA256, base64url without padding, over the version, the kind, the
//! room, the key id and the numbers. The kind and the room are bound by the
//! MAC rather than carried, so a cookie of another kind or room never
//! verifies, and each kind has its own count of numbers. Several keys may
//! verify (for rotation); the first one signs.
//!
//! Passes issued before they carried an issue time and an id (three
//! numbers, like a ticket) still verify, so an upgrade sends nobody back
//! to the line.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;

use crate::memo::{Memo, OwnKeys};

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Longest cookie value looked at; anything longer is not ours.
const MAX_TOKEN_LEN: usize = 200;

const VERSION: &str = "1";

/// A key id: 1 to 32 of `A-Z a-z 0-9 _ -`.
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `id` and `secret` make a key: fails, saying why, when the id is
/// malformed or the secret too short. The same rule for every HMAC key
/// antre holds (tickets and passes, admissions).
pub fn check_key(id: &str, secret: &[u8]) -> Result<(), String> {
    if !valid_key_id(id) {
        return Err(format!(
            "key id {id:?} must be 1 to 32 characters of A-Z, a-z, 0-9, '_' or '-'"
        ));
    }
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "key {id:?} is {} bytes long; at least {MIN_SECRET_LEN} are needed",
            secret.len()
        ));
    }
    Ok(())
}

/// One signing key.
pub struct Key {
    id: String,
    key: hmac::Key,
}

impl Key {
    /// Fails, saying why, when the id is malformed or the secret too short.
    pub fn new(id: &str, secret: &[u8]) -> Result<Key, String> {
        check_key(id, secret)?;
        Ok(Key {
            id: id.to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Which cookie a token is; part of the MAC so one can never pass as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ticket,
    Pass,
    /// A place promised while the store could not be reached: `epoch`
    /// holds a random nonce, `number` is 0 and `time` is the arrival in
    /// milliseconds, so places can be handed out in arrival order later.
    Pending,
    /// A proof-of-work challenge: see [`crate::work`].
    Challenge,
    /// A staff invite link: its id, its uses and its expiry.
    Invite,
    /// A return ticket: a place kept for a later phase of the room. `time`
    /// is when that phase opens, in Unix seconds.
    Return,
    /// An entry in a phase's draw: `number` is the entry's id, `time` when
    /// the phase opens, in Unix seconds.
    Draw,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Ticket => "ticket",
            Kind::Pass => "pass",
            Kind::Pending => "pending",
            Kind::Challenge => "challenge",
            Kind::Invite => "invite",
            Kind::Return => "return",
            Kind::Draw => "draw",
        }
    }
}

/// The numbers a token carries, once verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    pub epoch: u64,
    /// The ticket number.
    pub number: u64,
    /// Issue time (ticket) or expiry (pass), Unix seconds.
    pub time: u64,
}

/// What a pass carries, once verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassClaims {
    pub epoch: u64,
    /// The ticket number it was exchanged for; 0 when it was not.
    pub number: u64,
    /// Unix seconds.
    pub expires: u64,
    /// When the first pass of this id was issued, Unix seconds: renewals
    /// never take a pass beyond its room's hard cap from here. 0 in a pass
    /// from before passes carried it.
    pub issued: u64,
    /// Names the pass for rate limits and network binding; the same ticket
    /// always gives the same id ([`Keyring::pass_id`]). 0 in a pass from
    /// before passes carried it.
    pub id: u64,
    /// The client network it was issued to ([`crate::limit::Network`]):
    /// its use from there needs no question to the store. 0 when unknown.
    pub network: u64,
    /// How the visitor got in: 0 through the line, 1 a staff invite, 3
    /// while the store was down (`crate::admission::Via::code`).
    pub via: u64,
}

/// The keys that sign and verify tokens; the first signs.
///
/// ```
/// use antre::token::{Claims, Key, Keyring, Kind};
///
/// let old = Key::new("2026-10", b"an old secret of at least 32 bytes").unwrap();
/// let new = Key::new("2026-11", b"a new secret, also 32 bytes or more").unwrap();
/// let keys = Keyring::new(vec![new, old]).unwrap();
///
/// let claims = Claims { epoch: 1, number: 1001, time: 1_800_000_000 };
/// let ticket = keys.sign(Kind::Ticket, "vaksin", claims);
/// assert!(ticket.starts_with("1.2026-11.1.1001.1800000000."));
/// assert_eq!(keys.verify(Kind::Ticket, "vaksin", &ticket), Some(claims));
/// // Bound to its room and its kind.
/// assert_eq!(keys.verify(Kind::Ticket, "tiket", &ticket), None);
/// assert_eq!(keys.verify(Kind::Pass, "vaksin", &ticket), None);
/// ```
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<Key>,
    /// Tokens already verified, by their exact text (hashed by its end,
    /// the MAC: see [`OwnKeys`]): a visitor shows the same pass or ticket
    /// on every request and poll, and its MAC need not be computed each
    /// time. Only genuine tokens enter, each bound to its kind and room;
    /// what they claim (expiry, epoch, place) is still checked on every
    /// request by the caller.
    verified: Memo<Box<str>, Verified, OwnKeys>,
}

/// What a verified token was found to be: its kind, room and numbers (the
/// first `len`).
type Verified = (Kind, Box<str>, [u64; 8], u8);

/// Verified tokens remembered at most; forgotten whole when full (a few
/// megabytes at most).
const REMEMBERED_TOKENS: usize = 16_384;

impl Keyring {
    /// `None` when `keys` is empty.
    pub fn new(keys: Vec<Key>) -> Option<Keyring> {
        if keys.is_empty() {
            None
        } else {
            Some(Keyring {
                keys,
                verified: Memo::new(REMEMBERED_TOKENS),
            })
        }
    }

    pub fn signing_key_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn sign(&self, kind: Kind, room: &str, claims: Claims) -> String {
        self.sign_numbers(kind, room, &[claims.epoch, claims.number, claims.time])
    }

    /// The claims of a token of `kind` for `room`, or `None` when it is
    /// malformed, signed by an unknown key, for another room or kind, or
    /// altered in any byte. Expiry is the caller's check.
    pub fn verify(&self, kind: Kind, room: &str, token: &str) -> Option<Claims> {
        let [epoch, number, time] = self.verify_numbers(kind, room, token)?;
        Some(Claims {
            epoch,
            number,
            time,
        })
    }

    pub fn sign_pass(&self, room: &str, pass: &PassClaims) -> String {
        self.sign_numbers(
            Kind::Pass,
            room,
            &[
                pass.epoch,
                pass.number,
                pass.expires,
                pass.issued,
                pass.id,
                pass.network,
                pass.via,
            ],
        )
    }

    /// A pass for `room`, in its current form or the older one without an
    /// issue time and id (those read as 0).
    pub fn verify_pass(&self, room: &str, token: &str) -> Option<PassClaims> {
        if let Some([epoch, number, expires, issued, id, network, via]) =
            self.verify_numbers(Kind::Pass, room, token)
        {
            return Some(PassClaims {
                epoch,
                number,
                expires,
                issued,
                id,
                network,
                via,
            });
        }
        let [epoch, number, expires] = self.verify_numbers(Kind::Pass, room, token)?;
        Some(PassClaims {
            epoch,
            number,
            expires,
            issued: 0,
            id: 0,
            network: 0,
            // Old passes with ticket 0 were let in during an outage.
            via: if number == 0 { 3 } else { 0 },
        })
    }

    /// The id of the pass that ticket `number` of `room`'s `epoch` is
    /// exchanged for: the same ticket always gives the same id, so a retry
    /// within the exchange's grace gets the same pass; nobody without the
    /// key can guess another ticket's. Never 0.
    pub fn pass_id(&self, room: &str, epoch: u64, number: u64) -> u64 {
        let tag = hmac::sign(
            &self.keys[0].key,
            format!("antre|pass-id|{room}|{epoch}|{number}").as_bytes(),
        );
        let mut id = [0u8; 8];
        id.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_le_bytes(id).max(1)
    }

    /// `numbers` signed as a token of `kind` for `room`.
    pub fn sign_numbers(&self, kind: Kind, room: &str, numbers: &[u64]) -> String {
        use std::fmt::Write as _;
        let key = &self.keys[0];
        let mut body = format!("{VERSION}.{}", key.id);
        for n in numbers {
            let _ = write!(body, ".{n}");
        }
        let tag = hmac::sign(&key.key, mac_input(kind, room, &body).as_bytes());
        body.push('.');
        body.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
        body
    }

    /// The `N` numbers of a genuine token of `kind` for `room`.
    pub fn verify_numbers<const N: usize>(
        &self,
        kind: Kind,
        room: &str,
        token: &str,
    ) -> Option<[u64; N]> {
        if N > 8 {
            return self.check_numbers(kind, room, token);
        }
        let remembered = self.verified.find(token, |(k, r, known, len)| {
            let same = *k == kind && **r == *room && usize::from(*len) == N;
            same.then(|| std::array::from_fn(|i| known[i]))
        });
        if remembered.is_some() {
            return remembered;
        }
        let numbers = self.check_numbers(kind, room, token)?;
        let mut known = [0u64; 8];
        known[..N].copy_from_slice(&numbers);
        self.verified
            .insert(token.into(), (kind, room.into(), known, N as u8));
        Some(numbers)
    }

    fn check_numbers<const N: usize>(
        &self,
        kind: Kind,
        room: &str,
        token: &str,
    ) -> Option<[u64; N]> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (body, mac) = token.rsplit_once('.')?;
        let mut parts = body.split('.');
        if parts.next()? != VERSION {
            return None;
        }
        let key_id = parts.next()?;
        let mut numbers = [0u64; N];
        for slot in &mut numbers {
            *slot = parse_decimal(parts.next()?)?;
        }
        if parts.next().is_some() {
            return None;
        }
        let key = self.keys.iter().find(|k| k.id == key_id)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        // ring compares in constant time.
        hmac::verify(&key.key, mac_input(kind, room, body).as_bytes(), &mac).ok()?;
        Some(numbers)
    }
}

fn mac_input(kind: Kind, room: &str, body: &str) -> String {
    format!("antre|{}|{room}|{body}", kind.tag())
}

/// A canonical decimal: digits only, no sign, no leading zeros, fits a u64.
/// Being strict means each token has exactly one spelling.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// A random 64-bit number from the system's generator: pass ids of
/// outages, challenge nonces, store write ids. Zero if the generator fails,
/// which ring reports only where no system source exists at all.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keyring(ids: &[(&str, u8)]) -> Keyring {
        Keyring::new(
            ids.iter()
                .map(|(id, fill)| Key::new(id, &[*fill; 32]).unwrap())
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn a_remembered_token_is_still_bound_to_its_kind_room_and_bytes() {
        let keys = keyring(&[("k1", 1)]);
        let claims = PassClaims {
            epoch: 1,
            number: 7,
            expires: 1_790_000_000,
            issued: 1_789_990_000,
            id: 99,
            network: 0,
            via: 0,
        };
        let pass = keys.sign_pass("vaksin", &claims);
        for _ in 0..3 {
            assert_eq!(keys.verify_pass("vaksin", &pass), Some(claims));
        }
        // Remembered for its room and kind only, and a byte changed is a
        // new text.
        assert_eq!(keys.verify_pass("tiket", &pass), None);
        assert_eq!(keys.verify(Kind::Ticket, "vaksin", &pass), None);
        let ticket = keys.sign(Kind::Ticket, "vaksin", CLAIMS);
        for _ in 0..2 {
            assert_eq!(keys.verify(Kind::Ticket, "vaksin", &ticket), Some(CLAIMS));
            assert_eq!(keys.verify_pass("vaksin", &ticket), None);
        }
        let mut altered = pass.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(keys.verify_pass("vaksin", &altered), None);
        // A keyring without the key knows nothing of it.
        assert_eq!(keyring(&[("k1", 2)]).verify_pass("vaksin", &pass), None);
        // Past the bound the memory is forgotten, the pass still verifies.
        for n in 0..REMEMBERED_TOKENS as u64 + 5 {
            let other = keys.sign_pass(
                "vaksin",
                &PassClaims {
                    number: n,
                    ..claims
                },
            );
            assert!(keys.verify_pass("vaksin", &other).is_some());
        }
        assert!(keys.verified.len() <= REMEMBERED_TOKENS);
        assert_eq!(keys.verify_pass("vaksin", &pass), Some(claims));
    }

    const CLAIMS: Claims = Claims {
        epoch: 3,
        number: 1234,
        time: 1_790_000_000,
    };

    #[test]
    fn round_trip() {
        let ring = keyring(&[("k1", 7)]);
        let token = ring.sign(Kind::Ticket, "vaksin", CLAIMS);
        assert!(token.starts_with("1.k1.3.1234.1790000000."), "{token}");
        assert!(token.len() < 80, "{token}");
        assert_eq!(ring.verify(Kind::Ticket, "vaksin", &token), Some(CLAIMS));
    }

    #[test]
    fn other_room_or_kind_does_not_verify() {
        let ring = keyring(&[("k1", 7)]);
        let token = ring.sign(Kind::Ticket, "vaksin", CLAIMS);
        assert_eq!(ring.verify(Kind::Ticket, "tiket", &token), None);
        assert_eq!(ring.verify(Kind::Pass, "vaksin", &token), None);
    }

    #[test]
    fn rotation_verifies_old_keys_and_signs_with_the_first() {
        let old = keyring(&[("old", 1)]);
        let token = old.sign(Kind::Pass, "r", CLAIMS);
        let rotated = keyring(&[("new", 2), ("old", 1)]);
        assert_eq!(rotated.verify(Kind::Pass, "r", &token), Some(CLAIMS));
        assert!(rotated.sign(Kind::Pass, "r", CLAIMS).starts_with("1.new."));
        // Once the old key is dropped its tokens stop counting.
        let retired = keyring(&[("new", 2)]);
        assert_eq!(retired.verify(Kind::Pass, "r", &token), None);
    }

    #[test]
    fn same_id_with_another_secret_does_not_verify() {
        let token = keyring(&[("k", 1)]).sign(Kind::Pass, "r", CLAIMS);
        assert_eq!(keyring(&[("k", 2)]).verify(Kind::Pass, "r", &token), None);
    }

    #[test]
    fn short_secrets_and_bad_ids_are_refused() {
        let err = Key::new("k1", b"too short").unwrap_err();
        assert!(err.contains("9 bytes") && err.contains("32"), "{err}");
        assert!(Key::new("bad id", &[0; 32]).unwrap_err().contains("bad id"));
        assert!(Key::new("", &[0; 32]).is_err());
    }

    #[test]
    fn non_canonical_numbers_are_refused() {
        let ring = keyring(&[("k1", 7)]);
        let token = ring.sign(Kind::Ticket, "r", CLAIMS);
        for bad in [
            token.replace(".1234.", ".01234."),
            token.replace(".1234.", ".+1234."),
            token.replacen("1.", "2.", 1),
            format!("{token}.extra"),
            String::new(),
            "1.k1.3.1234".to_owned(),
            "x".repeat(1000),
        ] {
            assert_eq!(ring.verify(Kind::Ticket, "r", &bad), None, "{bad}");
        }
    }

    #[test]
    fn passes_carry_issue_time_and_id_and_old_ones_still_verify() {
        let ring = keyring(&[("k1", 7)]);
        let pass = PassClaims {
            epoch: 3,
            number: 1234,
            expires: 1_790_001_200,
            issued: 1_790_000_000,
            id: ring.pass_id("vaksin", 3, 1234),
            network: 0x7f00_0002,
            via: 0,
        };
        let token = ring.sign_pass("vaksin", &pass);
        assert_eq!(ring.verify_pass("vaksin", &token), Some(pass));
        assert_eq!(ring.verify_pass("tiket", &token), None);
        // Not a ticket, and a ticket is not a pass.
        assert_eq!(ring.verify(Kind::Ticket, "vaksin", &token), None);
        let ticket = ring.sign(Kind::Ticket, "vaksin", CLAIMS);
        assert_eq!(ring.verify_pass("vaksin", &ticket), None);
        // A pass from before: three numbers.
        let old = ring.sign(Kind::Pass, "vaksin", CLAIMS);
        let read = ring.verify_pass("vaksin", &old).unwrap();
        assert_eq!(
            (read.number, read.expires, read.issued, read.id),
            (1234, CLAIMS.time, 0, 0)
        );
        // The same ticket gives the same id; another ticket another one.
        assert_eq!(ring.pass_id("vaksin", 3, 1234), pass.id);
        assert_ne!(ring.pass_id("vaksin", 3, 1235), pass.id);
        assert_ne!(ring.pass_id("tiket", 3, 1234), pass.id);
    }

    proptest! {
        /// Changing any one byte of a token makes it fail to verify.
        #[test]
        fn any_altered_byte_is_refused(index in 0usize..200, byte in any::<u8>()) {
            let ring = keyring(&[("k1", 7)]);
            let token = ring.sign(Kind::Pass, "vaksin", CLAIMS);
            let mut bytes = token.clone().into_bytes();
            let index = index % bytes.len();
            prop_assume!(bytes[index] != byte);
            bytes[index] = byte;
            let altered = String::from_utf8_lossy(&bytes);
            // The decoder refuses non-canonical trailing bits, so even the
            // last character has exactly one accepted spelling.
            prop_assert_eq!(ring.verify(Kind::Pass, "vaksin", &altered), None);
        }

        /// Arbitrary strings never verify and never panic.
        #[test]
        fn garbage_never_verifies(s in ".{0,120}") {
            let ring = keyring(&[("k1", 7)]);
            prop_assert_eq!(ring.verify(Kind::Ticket, "r", &s), None);
        }
    }
}
