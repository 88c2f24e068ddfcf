//! Canonical request paths: the one spelling of a path that routing matches
//! and the origin receives. A path that origins could read in more than one
//! way is refused instead of guessed at.
//!
//! Origins disagree about what a path means. IIS decodes `%u0064` as `d`,
//! treats `/daftar.` and `/daftar%20` as `/daftar` and decodes twice;
//! Tomcat and Spring drop `;parameters` (`/daftar/..;/x` is `/x`); nginx
//! resolves dot segments and merges slashes before matching a `location`;
//! many frameworks decode `%2f` to a slash or cut a path at a NUL. If antre
//! matched one reading and the origin served another, a guarded page could
//! be reached around the line. So [`canonicalise`] refuses, before any room
//! is consulted:
//!
//! | refused | why |
//! |---|---|
//! | control bytes, raw or encoded (`%00`–`%1F`, `%7F`) | C-string cuts (`/daftar%00.css`), header and log injection |
//! | `%u` escapes | IIS reads `%u0064` as `d` |
//! | `%` not followed by two hex digits | each parser recovers differently |
//! | bytes that do not decode to UTF-8, overlong forms included (`%c0%af`, `%ff`) | overlong slashes and dots were classic IIS traversals |
//! | encoded slashes and backslashes (`%2f`, `%5c`), raw backslashes, and their full-width look-alikes | some origins split on them, others do not |
//! | `%25` followed by two hex digits | double encoding: origins that decode twice read another path |
//! | dot segments in any spelling (`.`, `..`, `%2e`, `.%2e`, `..;x`) | resolved by some origins, served literally by others |
//! | a segment ending in a dot or a space (`/daftar.`, `/daftar%20`) | Windows file systems drop them |
//! | full-width forms of ASCII characters (`%EF%BD%84aftar`, `ｄaftar`) | Windows' best-fit mapping and Unicode (NFKC) normalisation read them as ASCII |
//!
//! What remains has one reading, so antre can spell it one way: escapes of
//! characters that need none are decoded (`/%64aftar` is `/daftar`), the
//! rest are written in upper case, and repeated slashes are merged. The
//! origin receives exactly that path. Routing compares a key made from it:
//! lower case (IIS and many Windows hosts ignore case) and without
//! `;parameters` (Tomcat drops them), so `/DAFTAR;jsessionid=1` is guarded
//! by the room for `/daftar` too.

use std::fmt::Write as _;

/// Why a path was refused; each is a short, stable name for logs and the
/// `400` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path holds a control byte")]
    ControlByte,
    #[error("the path holds a %u escape")]
    PercentU,
    #[error("the path holds a '%' that is not followed by two hex digits")]
    BadEscape,
    #[error("the path does not decode to UTF-8")]
    InvalidUtf8,
    #[error("the path holds an encoded or look-alike slash or a backslash")]
    Slash,
    #[error("the path is encoded twice")]
    DoubleEncoding,
    #[error("the path holds a dot segment")]
    DotSegment,
    #[error("the path holds a full-width form of an ASCII character")]
    FullWidth,
    #[error("a path segment ends in a dot or a space")]
    TrailingDotOrSpace,
}

impl PathError {
    /// A short, stable name for logs, metrics and JSON answers.
    pub fn code(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "not_absolute",
            PathError::ControlByte => "control_byte",
            PathError::PercentU => "percent_u",
            PathError::BadEscape => "bad_escape",
            PathError::InvalidUtf8 => "invalid_utf8",
            PathError::Slash => "slash",
            PathError::DoubleEncoding => "double_encoding",
            PathError::DotSegment => "dot_segment",
            PathError::FullWidth => "full_width",
            PathError::TrailingDotOrSpace => "trailing_dot_or_space",
        }
    }
}

/// A path in its one spelling, and the key routing matches it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    path: String,
    /// `None` when the key is the path itself (the common case: lower case,
    /// no parameters), which saves a copy.
    key: Option<String>,
}

impl CanonicalPath {
    /// What the origin receives: starts with `/`, no query.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// What routing matches: the path in lower case without `;parameters`.
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(&self.path)
    }
}

/// Characters that look like a slash or a backslash to origins that fold
/// Unicode (full-width forms, division slash, set minus).
const SLASH_LOOKALIKES: [char; 4] = ['\u{FF0F}', '\u{FF3C}', '\u{2215}', '\u{2216}'];

/// Characters that some origins fold to a dot.
const DOT_LOOKALIKES: [char; 3] = ['\u{FF0E}', '\u{2024}', '\u{FE52}'];

/// The one spelling of `raw` (a request's path, without its query), or why
/// it has none.
pub fn canonicalise(raw: &str) -> Result<CanonicalPath, PathError> {
    match already_canonical(raw) {
        Some(plain) => plain,
        None => the_long_way(raw),
    }
}

/// Decodes, checks and re-encodes segment by segment.
fn the_long_way(raw: &str) -> Result<CanonicalPath, PathError> {
    let decoded = decode(raw.as_bytes())?;
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::InvalidUtf8)?;
    if decoded.contains(SLASH_LOOKALIKES) {
        return Err(PathError::Slash);
    }
    // Full-width forms of the other ASCII characters (`ｄａｆｔａｒ`) are
    // read as plain ASCII by Windows' best-fit mapping and by origins that
    // normalise Unicode (NFKC); dots among them are dot segments.
    if decoded.contains(|c| ('\u{FF01}'..='\u{FF5E}').contains(&c) && !DOT_LOOKALIKES.contains(&c))
    {
        return Err(PathError::FullWidth);
    }

    let mut path = String::with_capacity(decoded.len() + 1);
    let mut key = String::with_capacity(decoded.len() + 1);
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        let name = segment.split(';').next().unwrap_or("");
        if is_dots(name) {
            return Err(PathError::DotSegment);
        }
        if [name, segment]
            .iter()
            .any(|s| s.ends_with(['.', ' ']) || s.ends_with(DOT_LOOKALIKES))
        {
            return Err(PathError::TrailingDotOrSpace);
        }
        path.push('/');
        encode_into(&mut path, segment);
        // A segment that is all parameters (`/;x/daftar`) is dropped by the
        // origins that drop parameters.
        if !name.is_empty() {
            key.push('/');
            key.extend(name.chars().flat_map(char::to_lowercase));
        }
    }
    let trailing = decoded.len() > 1 && decoded.ends_with('/');
    for text in [&mut path, &mut key] {
        if text.is_empty() || trailing {
            text.push('/');
        }
    }
    let key = (key != path).then_some(key);
    Ok(CanonicalPath { path, key })
}

/// Most paths are already in their one spelling: no escapes, no repeated
/// slashes, no parameters. Those are checked in one pass and copied once;
/// `None` sends anything else the long way.
fn already_canonical(raw: &str) -> Option<Result<CanonicalPath, PathError>> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    // One pass: every byte plain, no empty segment but a last one, and
    // each segment's end checked as it closes.
    let mut upper = false;
    let mut segment_start = 1;
    for i in 1..=bytes.len() {
        let byte = bytes.get(i).copied().unwrap_or(b'/');
        if byte != b'/' {
            if !is_pchar(byte) || byte == b';' {
                return None;
            }
            upper |= byte.is_ascii_uppercase();
            continue;
        }
        let segment = &bytes[segment_start..i];
        segment_start = i + 1;
        match segment {
            [] if i < bytes.len() => return None,
            [] => {}
            [.., b'.'] if segment.iter().all(|b| *b == b'.') => {
                return Some(Err(PathError::DotSegment))
            }
            [.., b'.'] => return Some(Err(PathError::TrailingDotOrSpace)),
            _ => {}
        }
    }
    Some(Ok(CanonicalPath {
        path: raw.to_owned(),
        key: upper.then(|| raw.to_ascii_lowercase()),
    }))
}

/// Decodes escapes, refusing every byte and escape that origins read in
/// different ways.
fn decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        if byte != b'%' {
            match byte {
                b'\\' => return Err(PathError::Slash),
                b if b < 0x20 || b == 0x7f => return Err(PathError::ControlByte),
                _ => out.push(byte),
            }
            i += 1;
            continue;
        }
        let (Some(&high), Some(&low)) = (raw.get(i + 1), raw.get(i + 2)) else {
            return Err(PathError::BadEscape);
        };
        if high == b'u' || high == b'U' {
            return Err(PathError::PercentU);
        }
        let (Some(high), Some(low)) = (hex(high), hex(low)) else {
            return Err(PathError::BadEscape);
        };
        let decoded = high * 16 + low;
        match decoded {
            b'/' | b'\\' => return Err(PathError::Slash),
            b if b < 0x20 || b == 0x7f => return Err(PathError::ControlByte),
            _ => out.push(decoded),
        }
        i += 3;
    }
    // A '%' in what was decoded came from `%25`; followed by two hex
    // digits (written plainly or escaped themselves, `%25%36%34`), it is an
    // escape that a second decoding would read.
    let encoded_twice = out
        .windows(3)
        .any(|w| w[0] == b'%' && hex(w[1]).is_some() && hex(w[2]).is_some());
    if encoded_twice {
        return Err(PathError::DoubleEncoding);
    }
    Ok(out)
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// RFC 3986's `pchar` less escapes: unreserved, sub-delims, `:` and `@`.
fn is_pchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// `.`, `..` and their look-alikes: a name made of dots only.
fn is_dots(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c == '.' || DOT_LOOKALIKES.contains(&c))
}

/// Appends `segment`, escaping every byte outside RFC 3986's `pchar`
/// (unreserved, sub-delims, `:` and `@`), escapes in upper case.
fn encode_into(out: &mut String, segment: &str) {
    for byte in segment.bytes() {
        if is_pchar(byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(raw: &str) -> (String, String) {
        let c = canonicalise(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        (c.as_str().to_owned(), c.key().to_owned())
    }

    #[test]
    fn one_spelling_for_what_is_unambiguous() {
        for (raw, path, key) in [
            ("/", "/", "/"),
            ("/daftar", "/daftar", "/daftar"),
            ("/%64aftar", "/daftar", "/daftar"),
            ("/DAFTAR/", "/DAFTAR/", "/daftar/"),
            ("//daftar///baru", "/daftar/baru", "/daftar/baru"),
            ("/daftar;jsessionid=1", "/daftar;jsessionid=1", "/daftar"),
            ("/;x/daftar", "/;x/daftar", "/daftar"),
            ("/a%20b/c", "/a%20b/c", "/a b/c"),
            ("/berita/%e2%9c%93", "/berita/%E2%9C%93", "/berita/\u{2713}"),
            ("/100%25", "/100%25", "/100%"),
            ("/a\"b", "/a%22b", "/a\"b"),
            ("/x.js", "/x.js", "/x.js"),
            ("/.well-known/x", "/.well-known/x", "/.well-known/x"),
            ("/%C3%89t%C3%A9", "/%C3%89t%C3%A9", "/\u{e9}t\u{e9}"),
        ] {
            assert_eq!(canon(raw), (path.to_owned(), key.to_owned()), "{raw}");
        }
    }

    #[test]
    fn ambiguous_spellings_are_refused() {
        use PathError::*;
        for (raw, why) in [
            ("daftar", NotAbsolute),
            ("*", NotAbsolute),
            ("", NotAbsolute),
            ("/daftar%00", ControlByte),
            ("/daftar%0a", ControlByte),
            ("/daftar%0D", ControlByte),
            ("/daftar%09", ControlByte),
            ("/daftar%7f", ControlByte),
            ("/daftar\t", ControlByte),
            ("/daftar%20", TrailingDotOrSpace),
            ("/daftar.", TrailingDotOrSpace),
            ("/daftar%2e", TrailingDotOrSpace),
            ("/daftar./x", TrailingDotOrSpace),
            ("/daftar;x.", TrailingDotOrSpace),
            ("/daftar/..;/x", DotSegment),
            ("/x/../daftar", DotSegment),
            ("/./daftar", DotSegment),
            ("/%2e%2e/daftar", DotSegment),
            ("/.%2e/daftar", DotSegment),
            ("/...", DotSegment),
            ("/%ef%bc%8e%ef%bc%8e/daftar", DotSegment),
            ("/%u0064aftar", PercentU),
            ("/%U0064aftar", PercentU),
            ("/daftar%ff", InvalidUtf8),
            ("/daftar%c0%af", InvalidUtf8),
            ("/%c0%ae%c0%ae/daftar", InvalidUtf8),
            ("/daftar%", BadEscape),
            ("/daftar%4", BadEscape),
            ("/daftar%zz", BadEscape),
            ("/x%2fdaftar", Slash),
            ("/x%5Cdaftar", Slash),
            ("/x\\daftar", Slash),
            ("/x%ef%bc%8fdaftar", Slash),
            ("/%2564aftar", DoubleEncoding),
            ("/%EF%BD%84aftar", FullWidth),
            ("/\u{FF24}AFTAR", FullWidth),
            ("/%25%36%34aftar", DoubleEncoding),
            ("/%256%424jtr", DoubleEncoding),
            ("/100%25%34%31", DoubleEncoding),
        ] {
            assert_eq!(canonicalise(raw), Err(why), "{raw:?}");
        }
    }

    proptest! {
        /// Whatever comes in, what goes out is either refused or a path in
        /// its one spelling: canonicalising it again changes nothing, and
        /// it holds nothing an origin could read another way.
        #[test]
        fn canonical_paths_are_fixed_points(raw in "/[a-zA-Z0-9%./;\\\\ _~:@!$&'()*+,=\u{e9}\u{FF0E}-]{0,40}") {
            if let Ok(c) = canonicalise(&raw) {
                let again = canonicalise(c.as_str()).expect("a canonical path is accepted");
                prop_assert_eq!(&again, &c);
                prop_assert!(c.as_str().starts_with('/'));
                prop_assert!(!c.as_str().contains("//"));
                prop_assert!(!c.as_str().contains('\\'));
                for segment in c.key().split('/') {
                    prop_assert!(segment != "." && segment != "..");
                }
            }
        }

        /// The quick check for paths already in their one spelling agrees
        /// with the long way.
        #[test]
        fn the_quick_way_agrees_with_the_long_way(raw in "/[a-zA-Z0-9./_~!$&'()*+,=:@-]{0,30}") {
            if let Some(quick) = already_canonical(&raw) {
                prop_assert_eq!(quick, the_long_way(&raw));
            }
        }

        /// Every byte string is answered, never a panic.
        #[test]
        fn any_bytes_are_answered(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = String::from_utf8_lossy(&raw);
            let _ = canonicalise(&text);
        }
    }
}
