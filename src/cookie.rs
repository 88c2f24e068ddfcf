//! antre's own cookies: finding them in a `Cookie` header whatever else it
//! holds, and writing `Set-Cookie` values, in one place.
//!
//! A `Cookie` header is read as bytes. The site's own cookies may hold
//! anything (`nama=Jérôme`, invalid UTF-8 set by a subdomain, thousands of
//! pairs); none of it may cost a visitor their ticket or pass, so antre
//! picks out the pairs whose names are its own and leaves the rest alone
//! (the proxy forwards them untouched).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};

/// Every cookie antre sets is named with this prefix.
pub const PREFIX: &str = "antre-";

/// The visitor's language choice.
pub const LANG: &str = "antre-lang";

/// Set on a first visit; its return shows the client keeps cookies.
pub const HELLO: &str = "antre-hello";

/// Values kept per name: a browser sends a cookie once per matching path
/// and domain, so a few are honest; more are someone stuffing the header
/// to make antre verify signatures in a loop.
const VALUES_PER_NAME: usize = 4;

/// antre's own pairs kept from one request.
const OWN_PAIRS: usize = 32;

/// Pairs a jar holds without allocating: a pass or ticket and a little
/// more, what nearly every request carries.
const INLINE_PAIRS: usize = 2;

/// Where one of antre's pairs lies: which field kept, and its name's and
/// its value's (unquoted) ranges in that field.
#[derive(Debug, Default, Clone, Copy)]
struct Pair {
    field: u32,
    name: (u32, u32),
    value: (u32, u32),
}

/// A `Cookie` field that holds some of antre's pairs.
#[derive(Debug, Clone)]
enum Field {
    /// The request's own field, shared with its head.
    Header(HeaderValue),
    /// Bytes handed to [`Jar::parse`], copied.
    Bytes(Bytes),
}

impl Field {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Field::Header(value) => value.as_bytes(),
            Field::Bytes(bytes) => bytes,
        }
    }
}

/// antre's own cookies from one request, in the order they came. The
/// fields they came in are kept as they are (a request's own are shared,
/// not copied), with where each pair lies in them: reading a request's
/// cookies allocates only past one field or [`INLINE_PAIRS`] pairs.
#[derive(Debug, Default, Clone)]
pub struct Jar {
    /// The first field that held one of antre's pairs.
    first: Option<Field>,
    /// The fields after it that did.
    more_fields: Vec<Field>,
    /// The first pairs.
    inline: [Pair; INLINE_PAIRS],
    inline_len: u8,
    /// The pairs past those.
    more: Vec<Pair>,
    /// The request had cookies that are not antre's, or more than were
    /// read: what goes to the origin must be picked out of its `Cookie`
    /// fields, not simply dropped.
    foreign: bool,
}

impl Jar {
    /// The cookies of a request's `Cookie` fields (HTTP/2 clients may send
    /// several).
    pub fn from_headers(headers: &HeaderMap) -> Jar {
        let mut jar = Jar::default();
        for value in headers.get_all(header::COOKIE) {
            let (kept, full) = jar.read(value.as_bytes());
            if kept {
                jar.keep(Field::Header(value.clone()));
            }
            if full {
                break;
            }
        }
        jar
    }

    /// Reads `Cookie` field values; pairs that are not antre's, malformed
    /// or not ASCII are passed over.
    pub fn parse<I, T>(fields: I) -> Jar
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let mut jar = Jar::default();
        for field in fields {
            let field = field.as_ref();
            let (kept, full) = jar.read(field);
            if kept {
                jar.keep(Field::Bytes(Bytes::copy_from_slice(field)));
            }
            if full {
                break;
            }
        }
        jar
    }

    /// Takes antre's pairs from one field, as the field after those kept
    /// so far: whether any was taken (the caller then keeps the field),
    /// and whether the jar is full (the rest unread).
    fn read(&mut self, field: &[u8]) -> (bool, bool) {
        let index = self.fields() as u32;
        let before = self.len();
        let mut at = 0;
        loop {
            let end = memchr::memchr(b';', &field[at..]).map_or(field.len(), |i| at + i);
            if !self.take(index, field, at, end) {
                self.foreign = true;
                return (self.len() > before, true);
            }
            if end == field.len() {
                return (self.len() > before, false);
            }
            at = end + 1;
        }
    }

    /// Keeps the pair at `start..end` of `field` if it is one of antre's;
    /// false once the jar is full.
    fn take(&mut self, index: u32, field: &[u8], start: usize, end: usize) -> bool {
        if self.len() == OWN_PAIRS {
            return false;
        }
        let raw = &field[start..end];
        let pair = raw.trim_ascii();
        if !is_own(pair) {
            self.foreign |= !pair.is_empty();
            return true;
        }
        // Only an ASCII pair with a value is kept; its name is antre's.
        let Some(equals) = memchr::memchr(b'=', pair).filter(|_| pair.is_ascii()) else {
            return true;
        };
        let name = pair[..equals].trim_ascii_end();
        let value = pair[equals + 1..].trim_ascii();
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        let kept = self
            .pairs()
            .filter(|kept| {
                let text = match kept.field {
                    i if i == index => field,
                    i => self.field(i),
                };
                text.get(kept.name.0 as usize..kept.name.1 as usize) == Some(name)
            })
            .count();
        if kept == VALUES_PER_NAME {
            return true;
        }
        let base = field.as_ptr() as usize;
        let at = |part: &[u8]| (part.as_ptr() as usize - base) as u32;
        let pair = Pair {
            field: index,
            name: (at(name), at(name) + name.len() as u32),
            value: (at(value), at(value) + value.len() as u32),
        };
        match self.inline.get_mut(usize::from(self.inline_len)) {
            Some(slot) => {
                *slot = pair;
                self.inline_len += 1;
            }
            None => self.more.push(pair),
        }
        true
    }

    fn keep(&mut self, field: Field) {
        if self.first.is_none() {
            self.first = Some(field);
        } else {
            self.more_fields.push(field);
        }
    }

    fn fields(&self) -> usize {
        usize::from(self.first.is_some()) + self.more_fields.len()
    }

    /// The bytes of the field kept at `index`.
    fn field(&self, index: u32) -> &[u8] {
        let field = match index {
            0 => self.first.as_ref(),
            i => self.more_fields.get(i as usize - 1),
        };
        field.map_or(&[], Field::as_bytes)
    }

    /// The pairs kept, in the order they came.
    fn pairs(&self) -> impl Iterator<Item = &Pair> {
        self.inline[..usize::from(self.inline_len)]
            .iter()
            .chain(&self.more)
    }

    fn len(&self) -> usize {
        usize::from(self.inline_len) + self.more.len()
    }

    /// Every value sent under `name`, first to last.
    pub fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.pairs().filter_map(move |pair| {
            let field = self.field(pair.field);
            let (from, to) = pair.name;
            // Names compared as bytes.
            (field.get(from as usize..to as usize)? == name.as_bytes())
                .then(|| field.get(pair.value.0 as usize..pair.value.1 as usize))
                .flatten()
                // SAFETY: `take` keeps only a pair that is all ASCII, and
                // the value lies within it; a kept field never changes.
                .map(|value| unsafe { std::str::from_utf8_unchecked(value) })
        })
    }

    /// Whether the request carried any cookie of antre's.
    pub fn is_empty(&self) -> bool {
        self.inline_len == 0
    }

    /// Whether every cookie the request carried is antre's (or it carried
    /// none): none of them is the origin's.
    pub fn only_own(&self) -> bool {
        !self.foreign
    }
}

/// Whether a `Cookie` pair (`name=value`, trimmed) is one of antre's.
pub fn is_own(pair: &[u8]) -> bool {
    let name = pair
        .split(|b| *b == b'=')
        .next()
        .unwrap_or(pair)
        .trim_ascii();
    name.starts_with(PREFIX.as_bytes())
        && (name == LANG.as_bytes()
            || name == HELLO.as_bytes()
            || name.starts_with(b"antre-pass-")
            || name.starts_with(b"antre-ticket-")
            || name.starts_with(b"antre-return-")
            || name.starts_with(b"antre-work-"))
}

/// A `Set-Cookie` value for one of antre's cookies: for the whole site,
/// out of scripts' reach, sent on top-level navigation from elsewhere (a
/// link to the registration page), `Secure` when the visitor is on https.
pub fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// A `Set-Cookie` value that removes `name`.
pub fn clear_cookie(name: &str, secure: bool) -> String {
    set_cookie(name, "", 0, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cookies_are_found_whatever_else_the_header_holds() {
        let field: &[u8] =
            b"nama=J\xc3\xa9r\xc3\xb4me; junk=\xff\xfe; antre-ticket-vaksin=\"1.k.2\"; theme=dark; antre-return-vaksin=r; antre-pass-vaksin=p; novalue; =; antre-lang=en";
        let jar = Jar::parse([field]);
        assert_eq!(
            jar.values("antre-ticket-vaksin").collect::<Vec<_>>(),
            ["1.k.2"]
        );
        assert_eq!(jar.values("antre-pass-vaksin").collect::<Vec<_>>(), ["p"]);
        assert_eq!(jar.values("antre-return-vaksin").collect::<Vec<_>>(), ["r"]);
        assert_eq!(jar.values("antre-lang").collect::<Vec<_>>(), ["en"]);
        assert_eq!(jar.values("nama").count(), 0, "only antre's own are kept");
    }

    #[test]
    fn thousands_of_pairs_and_duplicates_cannot_hide_the_real_one() {
        let mut field = String::new();
        for i in 0..5000 {
            field.push_str(&format!("site{i}=x; "));
        }
        field.push_str("antre-pass-vaksin=bogus1; antre-pass-vaksin=real; ");
        for _ in 0..100 {
            field.push_str("antre-pass-vaksin=bogus; ");
        }
        let jar = Jar::parse([field.as_str()]);
        let values: Vec<_> = jar.values("antre-pass-vaksin").collect();
        assert_eq!(values.len(), VALUES_PER_NAME);
        assert_eq!(&values[..2], ["bogus1", "real"]);
    }

    #[test]
    fn several_cookie_fields_are_read_in_order() {
        let jar = Jar::parse(["a=1; antre-hello=1", "antre-pass-x=2"]);
        assert!(!jar.is_empty());
        assert_eq!(jar.values("antre-pass-x").next(), Some("2"));
        assert!(Jar::parse(["a=1; antre-x=site-own"]).is_empty());
    }

    #[test]
    fn values_per_name_are_counted_across_fields() {
        let fields = [
            "antre-pass-x=1; a=1; antre-pass-x=\"2\"",
            "b=2",
            "antre-pass-x=3;antre-lang=en; antre-pass-x=4",
            "antre-pass-x=5",
        ];
        let jar = Jar::parse(fields);
        assert_eq!(
            jar.values("antre-pass-x").collect::<Vec<_>>(),
            ["1", "2", "3", "4"]
        );
        assert_eq!(jar.values("antre-lang").collect::<Vec<_>>(), ["en"]);
        // A request's own fields read the same.
        let mut headers = HeaderMap::new();
        for field in fields {
            headers.append(header::COOKIE, HeaderValue::from_static(field));
        }
        let from_request = Jar::from_headers(&headers);
        assert_eq!(
            from_request.values("antre-pass-x").collect::<Vec<_>>(),
            ["1", "2", "3", "4"]
        );
        assert_eq!(from_request.values("antre-lang").next(), Some("en"));
        assert!(!from_request.only_own());
    }

    #[test]
    fn a_jar_knows_whether_any_cookie_is_the_sites() {
        // Only antre's (spaces, empty pairs, malformed own ones and no
        // cookie at all change nothing): the origin gets none of them.
        for only_own in [
            &[][..],
            &[" antre-pass-x=1 ;; "],
            &["antre-pass-x=1", "antre-lang=en; antre-ticket-x=\"2\""],
            &["antre-pass-x", "antre-hello=\u{e9}"],
        ] {
            assert!(Jar::parse(only_own).only_own(), "{only_own:?}");
        }
        // Any of the site's, in any field, or more of antre's than a jar
        // reads (the rest unseen).
        let crowded: String = (0..=OWN_PAIRS)
            .map(|i| format!("antre-pass-x{i}=1; "))
            .collect();
        for mixed in [
            &["antre-pass-x=1; a=1"][..],
            &["antre-pass-x=1", "b"],
            &["antre-x=site-own"],
            &["=1"],
            &[crowded.as_str()],
        ] {
            assert!(!Jar::parse(mixed).only_own(), "{mixed:?}");
        }
    }

    /// What a jar must hold: antre's pairs, read one by one as the
    /// module's comment and [`Jar::parse`] say, without offsets or shared
    /// fields.
    fn model(fields: &[Vec<u8>]) -> (Vec<(String, String)>, bool) {
        let mut kept: Vec<(String, String)> = Vec::new();
        let mut foreign = false;
        'fields: for field in fields {
            for raw in field.split(|b| *b == b';') {
                if kept.len() == OWN_PAIRS {
                    foreign = true;
                    break 'fields;
                }
                let pair = raw.trim_ascii();
                if !is_own(pair) {
                    foreign |= !pair.is_empty();
                    continue;
                }
                let Some((name, value)) = std::str::from_utf8(pair)
                    .ok()
                    .filter(|p| p.is_ascii())
                    .and_then(|p| p.split_once('='))
                else {
                    continue;
                };
                let (name, value) = (name.trim_ascii_end(), value.trim_ascii());
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                if kept.iter().filter(|(n, _)| n == name).count() < VALUES_PER_NAME {
                    kept.push((name.to_owned(), value.to_owned()));
                }
            }
        }
        (kept, foreign)
    }

    /// A `Cookie` field made of pieces that matter to the reader: antre's
    /// names and others, separators, spaces, quotes and bytes that are
    /// not ASCII.
    fn field() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            8 => "(antre-pass-[a-j]|antre-lang|site)=\"?[a-z0-9]{0,3}\"?; ?".prop_map(String::into_bytes),
            1 => Just(b"antre-pass-x".to_vec()),
            1 => Just(b"antre-ticket-x".to_vec()),
            1 => Just(b"antre-lang".to_vec()),
            1 => Just(b"antre-x".to_vec()),
            1 => Just(b"site".to_vec()),
            1 => Just(b"=".to_vec()),
            1 => Just(b";".to_vec()),
            1 => Just(b"; ".to_vec()),
            1 => Just(b" ".to_vec()),
            1 => Just(b"\"".to_vec()),
            1 => Just(b"\xc3\xa9".to_vec()),
            1 => Just(vec![0xff]),
            1 => "[a-z0-9.]{1,6}".prop_map(String::into_bytes),
        ];
        proptest::collection::vec(piece, 0..64).prop_map(|pieces| pieces.concat())
    }

    /// Whether `jar` holds what [`model`] reads from `fields`, for every
    /// name the fields could hold.
    fn holds_the_model(
        jar: &Jar,
        fields: &[Vec<u8>],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let (kept, foreign) = model(fields);
        proptest::prop_assert_eq!(jar.only_own(), !foreign);
        proptest::prop_assert_eq!(jar.is_empty(), kept.is_empty());
        let names = [
            "antre-pass-x",
            "antre-ticket-x",
            "antre-lang",
            "antre-x",
            "site",
        ]
        .into_iter()
        .map(String::from)
        .chain(('a'..='j').map(|c| format!("antre-pass-{c}")));
        for name in names {
            let want: Vec<&str> = kept
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            let got: Vec<&str> = jar.values(&name).collect();
            proptest::prop_assert_eq!(got, want, "{}", name);
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn a_jar_holds_what_reading_pair_by_pair_gives(
            fields in proptest::collection::vec(field(), 0..4),
        ) {
            holds_the_model(&Jar::parse(&fields), &fields)?;
            // The same fields as a request's own (those a field may hold).
            let mut headers = HeaderMap::new();
            for field in &fields {
                if let Ok(value) = HeaderValue::from_bytes(field) {
                    headers.append(header::COOKIE, value);
                }
            }
            let sent: Vec<Vec<u8>> = headers
                .get_all(header::COOKIE)
                .iter()
                .map(|v| v.as_bytes().to_vec())
                .collect();
            holds_the_model(&Jar::from_headers(&headers), &sent)?;
        }
    }
}
