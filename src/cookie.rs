//! antre's own cookies: finding them in a `Cookie` header whatever else it
//! holds, and writing `Set-Cookie` values, in one place.
//!
//! A `Cookie` header is read as bytes. The site's own cookies may hold
//! anything (`nama=Jérôme`, invalid UTF-8 set by a subdomain, thousands of
//! pairs); none of it may cost a visitor their ticket or pass, so antre
//! picks out the pairs whose names are its own and leaves the rest alone
//! (the proxy forwards them untouched).

use http::header::{self, HeaderMap};

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

/// (name start, value start, value end) in a jar's text; the name ends
/// where the value starts.
type Pair = (u32, u32, u32);

/// antre's own cookies from one request, in the order they came: their
/// text in one buffer, so reading a request's cookies costs one
/// allocation (more only past [`INLINE_PAIRS`] of them).
#[derive(Debug, Default, Clone)]
pub struct Jar {
    text: String,
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
        Jar::parse(headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()))
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
            // Valid UTF-8 (nearly always) is split with the fast `str`
            // search; anything else byte by byte.
            let full = match std::str::from_utf8(field) {
                Ok(text) => text.split(';').any(|pair| !jar.take(pair.as_bytes())),
                Err(_) => field.split(|b| *b == b';').any(|pair| !jar.take(pair)),
            };
            if full {
                jar.foreign = true;
                break;
            }
        }
        jar
    }

    /// Keeps `pair` if it is one of antre's; false once the jar is full.
    fn take(&mut self, pair: &[u8]) -> bool {
        if self.len() == OWN_PAIRS {
            return false;
        }
        let pair = pair.trim_ascii();
        if !is_own(pair) {
            self.foreign |= !pair.is_empty();
            return true;
        }
        let Some((name, value)) = split_pair(pair) else {
            return true;
        };
        if self.values(name).count() == VALUES_PER_NAME {
            return true;
        }
        if self.is_empty() {
            // Room for a ticket or pass and a little more, so one such
            // cookie is read without the buffer growing.
            self.text.reserve(160);
        }
        let start = self.text.len() as u32;
        self.text.push_str(name);
        let value_start = self.text.len() as u32;
        self.text.push_str(value);
        let pair = (start, value_start, self.text.len() as u32);
        match self.inline.get_mut(usize::from(self.inline_len)) {
            Some(slot) => {
                *slot = pair;
                self.inline_len += 1;
            }
            None => self.more.push(pair),
        }
        true
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
        self.pairs().filter_map(move |&(start, value, end)| {
            // Names compared as bytes: only a match is cut out as text.
            (self.text.as_bytes().get(start as usize..value as usize)? == name.as_bytes())
                .then(|| self.text.get(value as usize..end as usize))
                .flatten()
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

/// `name=value` of one of antre's cookies (a trimmed pair [`is_own`]
/// accepts), unquoted; `None` when it is not ASCII or has no value.
fn split_pair(pair: &[u8]) -> Option<(&str, &str)> {
    let pair = std::str::from_utf8(pair).ok()?;
    if !pair.is_ascii() {
        return None;
    }
    let (name, value) = pair.split_once('=')?;
    let value = value.trim_ascii();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some((name.trim_ascii_end(), value))
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
}
