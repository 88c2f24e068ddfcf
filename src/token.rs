//! Tickets and passes: the signed cookies that are a visitor's only state.
//!
//! Wire form, all ASCII so it needs no cookie quoting:
//!
//! ```text
//! 1.<key id>.<epoch>.<number>.<time>.<mac>
//! ```
//!
//! `1` is the format version; `time` is the issue time (tickets) or the
//! expiry (passes) in Unix seconds; `mac` is HMAC-SHA256, base64url without
//! padding, over the version, the kind (ticket or pass), the room, the key id
//! and the numbers. The room is bound by the MAC rather than carried, so a
//! cookie from another room never verifies. Several keys may verify (for
//! rotation); the first one signs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;

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
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Ticket => "ticket",
            Kind::Pass => "pass",
            Kind::Pending => "pending",
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
}

impl Keyring {
    /// `None` when `keys` is empty.
    pub fn new(keys: Vec<Key>) -> Option<Keyring> {
        if keys.is_empty() {
            None
        } else {
            Some(Keyring { keys })
        }
    }

    pub fn signing_key_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn sign(&self, kind: Kind, room: &str, claims: Claims) -> String {
        let key = &self.keys[0];
        let body = format!(
            "{VERSION}.{}.{}.{}.{}",
            key.id, claims.epoch, claims.number, claims.time
        );
        let tag = hmac::sign(&key.key, mac_input(kind, room, &body).as_bytes());
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The claims of a token of `kind` for `room`, or `None` when it is
    /// malformed, signed by an unknown key, for another room or kind, or
    /// altered in any byte. Expiry is the caller's check.
    pub fn verify(&self, kind: Kind, room: &str, token: &str) -> Option<Claims> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (body, mac) = token.rsplit_once('.')?;
        let mut parts = body.split('.');
        let (version, key_id, epoch, number, time) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if parts.next().is_some() || version != VERSION {
            return None;
        }
        let key = self.keys.iter().find(|k| k.id == key_id)?;
        let claims = Claims {
            epoch: parse_decimal(epoch)?,
            number: parse_decimal(number)?,
            time: parse_decimal(time)?,
        };
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        // ring compares in constant time.
        hmac::verify(&key.key, mac_input(kind, room, body).as_bytes(), &mac).ok()?;
        Some(claims)
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
