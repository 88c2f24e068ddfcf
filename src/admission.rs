//! The `antre-admission` header: on every request antre forwards for an
//! admitted visitor, a signed note of which admission it belongs to, so the
//! origin can check that the visitor really came through antre and accept
//! one registration per admission. A pass shared or sold on still reaches
//! the site, but every request it makes carries the same admission, so the
//! second registration on it is refused by the site itself.
//!
//! Wire form, ASCII with nothing to quote:
//!
//! ```text
//! 1.<key id>.<room>.<ticket>.<pass>.<issued>.<via>.<mac>
//! ```
//!
//! `1` is the format version; `ticket` the visitor's ticket number (0 when
//! they did not come through the line); `pass` the pass id, 16 lowercase hex
//! digits; `issued` the pass's issue time in Unix seconds; `via` how they got
//! in ([`Via`]); `mac` HMAC-SHA256 over every byte before the last `.`,
//! base64url without padding. Numbers are canonical decimals, so each
//! admission has exactly one spelling. Neither key ids nor room ids can hold
//! a `.`, so splitting on it is unambiguous, and the site can check a value
//! with a few lines in any language (the README has them).
//!
//! The keys are [`AdmissionKeys`]: the configured `[[admission_keys]]`, or
//! else keys derived one-way from the ticket and pass keys, so the site that
//! holds them can check admissions but never make a pass. [`settle`] is the
//! one place that decides which, for `antre run` and the CLI alike.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::{HeaderName, HeaderValue};
use ring::hmac;

use crate::config::{valid_room_id, Config, KeySpec, StoreKind};
use crate::store::memory::{read_stored_key, StoredKey};
use crate::store::StoreError;
use crate::token::{check_key, parse_decimal, valid_key_id};

/// The header's name, as forwarded to the origin.
pub const HEADER: &str = "antre-admission";

/// [`HEADER`] as a header name, made without parsing.
pub const HEADER_NAME: HeaderName = HeaderName::from_static(HEADER);

const VERSION: &str = "1";

/// Longest value looked at. The longest genuine one is 177 bytes (32-byte
/// key id and room, 20-digit numbers); anything longer is not ours.
const MAX_LEN: usize = 256;

/// What a derived key is made from, with the ticket key's secret as the
/// HMAC key. A fixed label: the same ticket key always gives the same
/// admission key, so the site's copy stays valid across restarts.
const DERIVATION_LABEL: &[u8] = b"antre admission key";

// === the admission ===

/// How an admitted visitor got in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// Through the line: their ticket's turn came, or nobody was waiting.
    Line,
    /// A staff invite link.
    Invite,
    /// The address allow list.
    Allow,
    /// While the store could not be reached, with `store.on_error =
    /// "admit"`: uncounted, so the site is the only one who can count it.
    Outage,
}

impl Via {
    /// The word in the header: `line`, `invite`, `allow` or `outage`.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Line => "line",
            Via::Invite => "invite",
            Via::Allow => "allow",
            Via::Outage => "outage",
        }
    }

    /// The number a pass carries for it ([`crate::token::PassClaims::via`]).
    pub fn code(self) -> u64 {
        match self {
            Via::Line => 0,
            Via::Invite => 1,
            Via::Allow => 2,
            Via::Outage => 3,
        }
    }

    /// The inverse of [`Via::code`].
    pub fn from_code(code: u64) -> Option<Via> {
        match code {
            0 => Some(Via::Line),
            1 => Some(Via::Invite),
            2 => Some(Via::Allow),
            3 => Some(Via::Outage),
            _ => None,
        }
    }

    /// The inverse of [`Via::as_str`]; exact, lower case.
    pub fn parse(text: &str) -> Option<Via> {
        match text {
            "line" => Some(Via::Line),
            "invite" => Some(Via::Invite),
            "allow" => Some(Via::Allow),
            "outage" => Some(Via::Outage),
            _ => None,
        }
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One admission, as the header states it.
///
/// The room is a [`Cow`] so signing borrows the room's configured id and
/// verifying borrows from the value checked: neither copies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Admission<'a> {
    /// The room's id.
    pub room: Cow<'a, str>,
    /// The ticket number; 0 unless `via` is [`Via::Line`]. Numbers go on
    /// across phases and resets, so (room, ticket) names one place in line
    /// for good; every pass given for that ticket carries it.
    pub ticket: u64,
    /// The pass id: tells apart admissions that have no ticket.
    pub pass: u64,
    /// When the pass was issued, Unix seconds.
    pub issued: u64,
    pub via: Via,
}

impl Admission<'_> {
    /// The same admission, owning its room.
    pub fn into_owned(self) -> Admission<'static> {
        Admission {
            room: Cow::Owned(self.room.into_owned()),
            ticket: self.ticket,
            pass: self.pass,
            issued: self.issued,
            via: self.via,
        }
    }
}

// === errors ===

/// Why a value is not a genuine admission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("longer than {MAX_LEN} bytes")]
    TooLong,
    /// The part named is missing or not in its one accepted spelling.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    #[error("signed with key {0:?}, which is not one of these keys")]
    UnknownKey(String),
    #[error("the signature does not match: altered, or signed with another secret")]
    BadSignature,
}

/// Why an admission cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The config checks room ids, so this means a caller's mistake; the
    /// value would not parse back.
    #[error("room {0:?} is not a room id")]
    Room(String),
}

/// Why the admission keys could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// An id or secret unfit for a key (the config checks them first).
    #[error("admission key: {0}")]
    Invalid(String),
    /// The ticket key to derive from cannot be read (the state file's key
    /// is not base64).
    #[error("ticket key: {0}")]
    TicketKey(String),
    #[error(
        "no ticket key to derive the admission key from: antre makes one in \
             {state_file} when it first starts; start it once, or configure [[keys]] \
             or [[admission_keys]]"
    )]
    NotYetMade { state_file: String },
    #[error("no admission key: configure [[keys]] or [[admission_keys]]")]
    None,
    #[error(transparent)]
    State(#[from] StoreError),
}

// === keys ===

/// One admission key.
struct AdmissionKey {
    id: String,
    /// Kept so it can be given to the site (`antre admission-key`).
    secret: Vec<u8>,
    key: hmac::Key,
}

/// The keys that sign and verify admissions; the first signs, all verify,
/// so a key can be rotated as [`crate::token::Keyring`]'s are.
///
/// ```
/// use antre::admission::{Admission, AdmissionKeys, Via};
/// use antre::config::KeySpec;
///
/// let keys = AdmissionKeys::new(vec![KeySpec {
///     id: "2026-11".into(),
///     secret: b"a secret for the site, 32 bytes or more".to_vec(),
/// }])
/// .unwrap();
/// let admission = Admission {
///     room: "vaksin".into(),
///     ticket: 1001,
///     pass: 0x9f3a_0c41_d2e8_7b55,
///     issued: 1_800_000_000,
///     via: Via::Line,
/// };
/// let value = keys.sign(&admission).unwrap();
/// assert!(value.starts_with("1.2026-11.vaksin.1001.9f3a0c41d2e87b55.1800000000.line."));
/// assert_eq!(keys.verify(&value), Ok(admission));
/// // One byte changed and it no longer verifies.
/// let altered = value.replace(".1001.", ".1002.");
/// assert!(keys.verify(&altered).is_err());
/// ```
pub struct AdmissionKeys {
    keys: Vec<AdmissionKey>,
    /// Whether the keys were derived from the ticket keys rather than
    /// configured: rotating the ticket key then changes them.
    derived: bool,
}

impl std::fmt::Debug for AdmissionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("AdmissionKeys")
            .field("ids", &ids)
            .field("derived", &self.derived)
            .finish_non_exhaustive()
    }
}

impl AdmissionKeys {
    /// Keys as given; the first signs. Fails, saying why, when there are
    /// none, or an id is malformed or a secret shorter than 32 bytes.
    pub fn new(keys: Vec<KeySpec>) -> Result<AdmissionKeys, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::None);
        }
        let keys = keys
            .into_iter()
            .map(|spec| {
                check_key(&spec.id, &spec.secret).map_err(KeyError::Invalid)?;
                Ok(AdmissionKey {
                    key: hmac::Key::new(hmac::HMAC_SHA256, &spec.secret),
                    id: spec.id,
                    secret: spec.secret,
                })
            })
            .collect::<Result<_, KeyError>>()?;
        Ok(AdmissionKeys {
            keys,
            derived: false,
        })
    }

    /// One admission key for each ticket key, in the same order and with
    /// the same id: HMAC-SHA256(ticket secret, "antre admission key"). The
    /// derivation is one-way, so the site holding the result learns nothing
    /// about the key that makes passes.
    pub fn derived_from(ticket_keys: &[KeySpec]) -> Result<AdmissionKeys, KeyError> {
        let derived = ticket_keys
            .iter()
            .map(|ticket| KeySpec {
                id: ticket.id.clone(),
                secret: derive(&ticket.secret),
            })
            .collect();
        let mut keys = AdmissionKeys::new(derived)?;
        keys.derived = true;
        Ok(keys)
    }

    /// The id of the key that signs.
    pub fn signing_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// The secret of the key that signs: what the site needs.
    pub fn signing_secret(&self) -> &[u8] {
        &self.keys[0].secret
    }

    /// Whether the keys come from the ticket keys rather than
    /// `[[admission_keys]]`.
    pub fn is_derived(&self) -> bool {
        self.derived
    }

    /// The header value for `admission`, signed with the first key.
    pub fn sign(&self, admission: &Admission<'_>) -> Result<String, SignError> {
        if !valid_room_id(&admission.room) {
            return Err(SignError::Room(admission.room.clone().into_owned()));
        }
        let key = &self.keys[0];
        // The longest value is 177 bytes: one allocation, never regrown.
        let mut value = String::with_capacity(MAX_LEN);
        // Writing to a String cannot fail.
        let _ = write!(
            value,
            "{VERSION}.{}.{}.{}.{:016x}.{}.{}",
            key.id,
            admission.room,
            admission.ticket,
            admission.pass,
            admission.issued,
            admission.via.as_str()
        );
        let tag = hmac::sign(&key.key, value.as_bytes());
        value.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut value);
        Ok(value)
    }

    /// [`AdmissionKeys::sign`] as a header value, without copying the
    /// text again.
    pub fn header_value(&self, admission: &Admission<'_>) -> Result<HeaderValue, SignError> {
        let value = self.sign(admission)?;
        // Every byte is visible ASCII (room ids are checked above), so this
        // is never refused; should it be, the room is what is wrong.
        HeaderValue::try_from(value).map_err(|_| SignError::Room(admission.room.to_string()))
    }

    /// The admission `value` states, when one of these keys signed it and
    /// no byte was changed. Never panics, whatever `value` holds. The MAC is
    /// compared in constant time.
    pub fn verify<'v>(&self, value: &'v str) -> Result<Admission<'v>, VerifyError> {
        use VerifyError::Malformed;
        if value.len() > MAX_LEN {
            return Err(VerifyError::TooLong);
        }
        let (signed, mac) = value
            .rsplit_once('.')
            .ok_or(Malformed("no fields separated by '.'"))?;
        let mut fields = signed.split('.');
        let mut next = |what: &'static str| fields.next().ok_or(Malformed(what));
        let version = next("no format version")?;
        let key_id = next("no key id")?;
        let room = next("no room")?;
        let ticket = next("no ticket number")?;
        let pass = next("no pass id")?;
        let issued = next("no issue time")?;
        let via = next("no `via`")?;
        if fields.next().is_some() {
            return Err(Malformed("more fields than 8"));
        }
        if version != VERSION {
            return Err(Malformed("the format version is not 1"));
        }
        if !valid_key_id(key_id) {
            return Err(Malformed("the key id"));
        }
        if !valid_room_id(room) {
            return Err(Malformed("the room id"));
        }
        let admission = Admission {
            room: Cow::Borrowed(room),
            ticket: parse_decimal(ticket).ok_or(Malformed("the ticket number"))?,
            pass: parse_pass(pass).ok_or(Malformed("the pass id"))?,
            issued: parse_decimal(issued).ok_or(Malformed("the issue time"))?,
            via: Via::parse(via).ok_or(Malformed("`via`"))?,
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| VerifyError::UnknownKey(key_id.to_owned()))?;
        // The decoder refuses padding and non-canonical trailing bits, so
        // the MAC too has one spelling.
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| Malformed("the signature is not base64url"))?;
        hmac::verify(&key.key, signed.as_bytes(), &mac).map_err(|_| VerifyError::BadSignature)?;
        Ok(admission)
    }
}

fn derive(ticket_secret: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, ticket_secret);
    hmac::sign(&key, DERIVATION_LABEL).as_ref().to_vec()
}

/// The key id a value names, read without checking anything else: for
/// reporting which key signed a value [`AdmissionKeys::verify`] accepted.
pub fn key_id(value: &str) -> Option<&str> {
    value.split('.').nth(1)
}

/// Exactly 16 lowercase hex digits.
fn parse_pass(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

// === settling the keys for a config ===

/// The admission keys for `config`: its `[[admission_keys]]` when it has
/// any; otherwise one derived from each ticket key antre uses
/// ([`Config::ticket_keys`], which may include `state_key`, the key the
/// memory store keeps in its state file).
///
/// The one decision of which keys sign admissions: `antre run` calls it
/// with its store's key once the ticket keys are settled
/// (`memory.stored_key()`), and the CLI through [`settle_offline`], so the
/// two never disagree.
pub fn settle(config: &Config, state_key: Option<&StoredKey>) -> Result<AdmissionKeys, KeyError> {
    if !config.admission_keys.is_empty() {
        return AdmissionKeys::new(config.admission_keys.clone());
    }
    let ticket_keys = config.ticket_keys(state_key).map_err(KeyError::TicketKey)?;
    if ticket_keys.is_empty() {
        return Err(match &config.store.kind {
            StoreKind::Memory { state_file } => KeyError::NotYetMade {
                state_file: state_file.display().to_string(),
            },
            _ => KeyError::None,
        });
    }
    AdmissionKeys::derived_from(&ticket_keys)
}

/// [`settle`] without a running antre: the state file's key is read
/// without opening the store (whose lock a running antre holds). For the
/// commands `antre admission-key` and `antre verify-admission`.
pub fn settle_offline(config: &Config) -> Result<AdmissionKeys, KeyError> {
    let state_key = match &config.store.kind {
        // Only needed when deriving; configured keys need no state file.
        StoreKind::Memory { state_file } if config.admission_keys.is_empty() => {
            read_stored_key(state_file)?
        }
        _ => None,
    };
    settle(config, state_key.as_ref())
}

// === for the CLI ===

/// `antre admission-key`'s line: the signing key's id and its secret in
/// lowercase hex, `<id> <hex>`.
pub fn key_line(keys: &AdmissionKeys) -> String {
    let mut line = String::with_capacity(keys.signing_key_id().len() + 65);
    line.push_str(keys.signing_key_id());
    line.push(' ');
    for byte in keys.signing_secret() {
        let _ = write!(line, "{byte:02x}");
    }
    line
}

/// `antre verify-admission`'s report of a genuine value, one field a line.
pub fn report(admission: &Admission<'_>, key_id: &str) -> String {
    format!(
        "genuine\nroom     {}\nticket   {}\npass     {:016x}\nissued   {} ({})\nvia      {}\nkey      {key_id}\n",
        admission.room,
        admission.ticket,
        admission.pass,
        admission.issued,
        utc_time(admission.issued),
        admission.via
    )
}

/// Unix seconds as an ISO 8601 UTC time, `2027-01-15T08:00:00Z`.
pub fn utc_time(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let of_day = unix_seconds % 86_400;
    let (year, month, day) = crate::clock::civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(id: &str, fill: u8) -> KeySpec {
        KeySpec {
            id: id.into(),
            secret: vec![fill; 32],
        }
    }

    fn keys(specs: &[(&str, u8)]) -> AdmissionKeys {
        AdmissionKeys::new(specs.iter().map(|(id, fill)| spec(id, *fill)).collect()).unwrap()
    }

    fn admission() -> Admission<'static> {
        Admission {
            room: "vaksin".into(),
            ticket: 1234,
            pass: 0x00ab_cdef_0123_4567,
            issued: 1_790_000_000,
            via: Via::Line,
        }
    }

    #[test]
    fn round_trip() {
        let keys = keys(&[("k1", 7)]);
        let value = keys.sign(&admission()).unwrap();
        assert!(
            value.starts_with("1.k1.vaksin.1234.00abcdef01234567.1790000000.line."),
            "{value}"
        );
        assert_eq!(value.rsplit_once('.').unwrap().1.len(), 43, "{value}");
        assert_eq!(keys.verify(&value), Ok(admission()));
        assert_eq!(key_id(&value), Some("k1"));
        let header = keys.header_value(&admission()).unwrap();
        assert_eq!(header.as_bytes(), value.as_bytes());
        for via in [Via::Line, Via::Invite, Via::Allow, Via::Outage] {
            let a = Admission {
                via,
                ticket: 0,
                ..admission()
            };
            assert_eq!(keys.verify(&keys.sign(&a).unwrap()), Ok(a));
        }
    }

    #[test]
    fn the_longest_value_fits() {
        let keys = keys(&[(&"k".repeat(32), 7)]);
        let longest = Admission {
            room: "r".repeat(32).into(),
            ticket: u64::MAX,
            pass: u64::MAX,
            issued: u64::MAX,
            via: Via::Outage,
        };
        let value = keys.sign(&longest).unwrap();
        assert_eq!(value.len(), 177);
        assert_eq!(keys.verify(&value), Ok(longest));
    }

    #[test]
    fn a_room_that_is_not_an_id_is_not_signed() {
        let keys = keys(&[("k1", 7)]);
        for room in ["a.b", "", "Vaksin", "a\nb"] {
            let a = Admission {
                room: room.into(),
                ..admission()
            };
            assert_eq!(keys.sign(&a), Err(SignError::Room(room.into())));
            assert!(keys.header_value(&a).is_err());
        }
    }

    #[test]
    fn rotation_verifies_old_keys_and_signs_with_the_first() {
        let old = keys(&[("old", 1)]);
        let value = old.sign(&admission()).unwrap();
        let rotated = keys(&[("new", 2), ("old", 1)]);
        assert_eq!(rotated.verify(&value), Ok(admission()));
        assert!(rotated.sign(&admission()).unwrap().starts_with("1.new."));
        assert_eq!(
            keys(&[("new", 2)]).verify(&value),
            Err(VerifyError::UnknownKey("old".into()))
        );
        assert_eq!(
            keys(&[("old", 2)]).verify(&value),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn each_reason_is_named() {
        let keys = keys(&[("k1", 7)]);
        let value = keys.sign(&admission()).unwrap();
        let malformed = |v: &str| matches!(keys.verify(v), Err(VerifyError::Malformed(_)));
        for bad in [
            value.replace(".1234.", ".01234."),
            value.replace(".1234.", ".+1234."),
            value.replace(".1790000000.", ".017900000000."),
            value.replace(".00abcdef01234567.", ".00ABCDEF01234567."),
            value.replace(".00abcdef01234567.", ".abcdef01234567."),
            value.replace(".line.", ".Line."),
            value.replace(".vaksin.", ".Vaksin."),
            value.replacen("1.", "2.", 1),
            format!("{value}.extra"),
            format!("{value}="),
            String::new(),
            "1.k1.vaksin".to_owned(),
            ".......".to_owned(),
        ] {
            assert!(malformed(&bad), "{bad}: {:?}", keys.verify(&bad));
        }
        assert_eq!(keys.verify(&"x".repeat(1000)), Err(VerifyError::TooLong));
        // Well formed but not signed so: the signature is what refuses it.
        assert_eq!(
            keys.verify(&value.replace(".1234.", ".1235.")),
            Err(VerifyError::BadSignature)
        );
        let reasons = [
            VerifyError::TooLong.to_string(),
            VerifyError::Malformed("the room id").to_string(),
            VerifyError::UnknownKey("k9".into()).to_string(),
            VerifyError::BadSignature.to_string(),
        ];
        assert!(reasons.iter().all(|r| !r.contains('\n')), "{reasons:?}");
    }

    #[test]
    fn derived_keys_are_fixed_and_not_the_ticket_key() {
        let ticket = [spec("t1", 9), spec("t0", 8)];
        let derived = AdmissionKeys::derived_from(&ticket).unwrap();
        assert!(derived.is_derived());
        assert_eq!(derived.signing_key_id(), "t1");
        assert_eq!(derived.signing_secret(), derive(&[9; 32]).as_slice());
        assert_ne!(derived.signing_secret(), ticket[0].secret.as_slice());
        // The same ticket key always gives the same admission key.
        let again = AdmissionKeys::derived_from(&ticket).unwrap();
        assert_eq!(again.signing_secret(), derived.signing_secret());
        // The older ticket key's admission key still verifies.
        let old = AdmissionKeys::derived_from(&ticket[1..]).unwrap();
        let value = old.sign(&admission()).unwrap();
        assert_eq!(derived.verify(&value), Ok(admission()));
        // A value signed with the ticket key itself does not verify.
        let raw = AdmissionKeys::new(vec![spec("t1", 9)]).unwrap();
        assert_eq!(
            derived.verify(&raw.sign(&admission()).unwrap()),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(matches!(AdmissionKeys::new(vec![]), Err(KeyError::None)));
        let short = KeySpec {
            id: "k".into(),
            secret: b"short".to_vec(),
        };
        let error = AdmissionKeys::new(vec![short]).unwrap_err().to_string();
        assert!(error.contains("5 bytes") && error.contains("32"), "{error}");
        assert!(AdmissionKeys::new(vec![spec("a.b", 1)]).is_err());
        let debug = format!("{:?}", keys(&[("k1", 7)]));
        assert!(debug.contains("k1") && !debug.contains("7, 7"), "{debug}");
    }

    const CONFIG: &str = "[origin]\nurl = \"http://127.0.0.1:9000\"\n\n\
        [[rooms]]\nid = \"vaksin\"\npaths = [\"/\"]\nadmit_per_minute = 60\n";

    fn config(extra: &str, dir: &std::path::Path) -> Config {
        Config::parse(&format!("{CONFIG}\n{extra}"), dir).unwrap()
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("antre-admission-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn configured_admission_keys_win() {
        let dir = temp_dir("configured");
        let secret = "an admission secret of 32 bytes or more";
        let config = config(
            &format!(
                "[[keys]]\nid = \"t1\"\nsecret = \"{}\"\n\n\
                 [[admission_keys]]\nid = \"a1\"\nsecret = \"{secret}\"\n",
                "t".repeat(32)
            ),
            &dir,
        );
        let keys = settle(&config, None).unwrap();
        assert!(!keys.is_derived());
        assert_eq!(keys.signing_key_id(), "a1");
        assert_eq!(keys.signing_secret(), secret.as_bytes());
        let offline = settle_offline(&config).unwrap();
        assert_eq!(key_line(&offline), key_line(&keys));
    }

    #[test]
    fn without_admission_keys_they_are_derived_from_the_ticket_keys() {
        let dir = temp_dir("derived");
        let config = config(
            &format!(
                "[[keys]]\nid = \"t1\"\nsecret = \"{}\"\n\n[[keys]]\nid = \"t0\"\nsecret = \"{}\"\n",
                "t".repeat(32),
                "u".repeat(32)
            ),
            &dir,
        );
        let keys = settle(&config, None).unwrap();
        assert!(keys.is_derived());
        assert_eq!(keys.signing_key_id(), "t1");
        assert_eq!(keys.signing_secret(), derive(&[b't'; 32]).as_slice());
        let old = AdmissionKeys::derived_from(&config.keys[1..]).unwrap();
        assert!(keys.verify(&old.sign(&admission()).unwrap()).is_ok());
        assert_eq!(key_line(&settle_offline(&config).unwrap()), key_line(&keys));
    }

    #[test]
    fn the_state_files_key_is_found_without_opening_the_store() {
        let dir = temp_dir("state");
        let config = config("", &dir);
        let error = settle_offline(&config).unwrap_err().to_string();
        assert!(
            error.contains("antre-state.json") && error.contains("start it once"),
            "{error}"
        );
        assert!(matches!(
            settle(&config, None),
            Err(KeyError::NotYetMade { .. })
        ));
        let StoreKind::Memory { state_file } = &config.store.kind else {
            unreachable!("the memory store is the default")
        };
        let store = crate::store::MemoryStore::open(state_file).unwrap();
        let (stored, _) = store
            .generated_key(|| StoredKey {
                id: "auto".into(),
                secret: "c2VjcmV0IG9mIGF0IGxlYXN0IHRoaXJ0eS10d28gYnl0ZXM=".into(),
            })
            .unwrap();
        // What `antre run` settles with its store open, and what the CLI
        // finds beside it, are the same key.
        let running = settle(&config, store.stored_key().as_ref()).unwrap();
        let offline = settle_offline(&config).unwrap();
        assert_eq!(running.signing_key_id(), "auto");
        assert_eq!(key_line(&offline), key_line(&running));
        assert_eq!(
            running.signing_secret(),
            derive(&stored.secret_bytes().unwrap()).as_slice()
        );
    }

    #[test]
    fn the_header_is_one_the_proxy_strips_from_clients() {
        assert_eq!(HEADER_NAME.as_str(), HEADER);
        assert!(crate::forwarded::ANTRE_ONLY.contains(&HEADER));
    }

    #[test]
    fn the_key_line_is_the_id_and_the_secret_in_hex() {
        let keys = keys(&[("k1", 0xab)]);
        assert_eq!(key_line(&keys), format!("k1 {}", "ab".repeat(32)));
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_time(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(utc_time(951_868_800), "2000-03-01T00:00:00Z");
        assert_eq!(utc_time(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(utc_time(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(utc_time(4_107_542_400), "2100-03-01T00:00:00Z");
        // Never panics, even at the far end.
        assert!(utc_time(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn the_report_names_every_field() {
        let report = report(&admission(), "k1");
        for line in [
            "room     vaksin",
            "ticket   1234",
            "pass     00abcdef01234567",
            "issued   1790000000 (2026-09-21T",
            "via      line",
            "key      k1",
        ] {
            assert!(report.contains(line), "{line} not in {report}");
        }
    }

    proptest! {
        /// Changing any one byte of a value makes it fail to verify.
        #[test]
        fn any_altered_byte_is_refused(index in 0usize..200, byte in any::<u8>()) {
            let keys = keys(&[("k1", 7)]);
            let value = keys.sign(&admission()).unwrap();
            let mut bytes = value.clone().into_bytes();
            let index = index % bytes.len();
            prop_assume!(bytes[index] != byte);
            bytes[index] = byte;
            let altered = String::from_utf8_lossy(&bytes);
            prop_assert!(keys.verify(&altered).is_err(), "{}", altered);
        }

        /// Arbitrary strings never verify and never panic.
        #[test]
        fn garbage_never_verifies(s in ".{0,300}") {
            let keys = keys(&[("k1", 7)]);
            prop_assert!(keys.verify(&s).is_err());
        }

        /// Strings shaped like a value, with any fields, never verify.
        #[test]
        fn lookalikes_never_verify(
            fields in proptest::collection::vec("[a-z0-9_-]{0,20}", 0..10),
        ) {
            let keys = keys(&[("k1", 7)]);
            let value = format!("1.k1.{}", fields.join("."));
            prop_assert!(keys.verify(&value).is_err());
        }

        /// Any admission signs and verifies back to itself.
        #[test]
        fn every_admission_round_trips(
            room in "[a-z0-9_-]{1,32}",
            ticket in any::<u64>(),
            pass in any::<u64>(),
            issued in any::<u64>(),
            via in 0usize..4,
        ) {
            let keys = keys(&[("k1", 7)]);
            let via = [Via::Line, Via::Invite, Via::Allow, Via::Outage][via];
            let a = Admission { room: room.into(), ticket, pass, issued, via };
            let value = keys.sign(&a).unwrap();
            prop_assert_eq!(keys.verify(&value), Ok(a));
        }
    }
}
