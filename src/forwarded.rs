//! Who a request came from and how it reached antre, as the origin is told
//! it: the trusted-proxy list, the identity headers a client could forge,
//! and the `Forwarded` / `X-Forwarded-*` headers antre writes.
//!
//! Origins use these headers to decide who someone is (rate limits, audit
//! logs, "one registration per address") and sometimes which page to serve
//! (`X-Original-URL`, `X-Rewrite-URL` and `X-Forwarded-Prefix` rewrite the
//! path on IIS, Symfony and Spring). A client could write any of them. So
//! unless the connection comes from a proxy the operator listed in
//! `listen.trusted_proxies`, every one of them is removed and antre writes
//! its own; path-rewriting headers are removed whoever sent them, and so is
//! `antre-admission`, which only antre may write.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// An address block, `10.0.0.0/8` or `2001:db8::/32`; a bare address is
/// a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `ADDRESS[/BITS]`, naming what is wrong.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text, None),
        };
        let network: IpAddr = address.trim().parse().map_err(|_| {
            format!("{text:?} is not an address or address block like \"10.0.0.0/8\"")
        })?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(bits) => match bits.trim().parse::<u8>() {
                Ok(bits) if bits <= max => bits,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Cidr { network, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on an IPv6 socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.bits)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// Headers that say who the client is or where the request was meant to
/// go, which antre keeps only from a trusted proxy. Any `X-Forwarded-*` is
/// treated the same way.
const IDENTITY: [&str; 10] = [
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-host",
    "via",
];

/// Headers that make origins serve another path than the request line's:
/// never forwarded, whoever sent them.
const PATH_REWRITES: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// Headers only antre writes, which the origin trusts because of that:
/// removed from every request, whoever sent it, so the only one the origin
/// sees is antre's own. The same name as [`crate::admission::HEADER`] (a
/// test there holds them together); spelt out here so that this module,
/// which the config uses, does not depend on the config in turn.
pub(crate) const ANTRE_ONLY: [&str; 1] = ["antre-admission"];

/// Headers that make origins act on another method than the request
/// line's; removed from requests antre lets through without a place in
/// line (CORS preflights, unguarded routes), where they could turn an
/// `OPTIONS` into a `POST`.
pub const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// How the request reached antre.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The address of the connection's other end.
    pub peer: IpAddr,
    /// Whether that address is a trusted proxy's.
    pub trusted: bool,
    /// Whether the visitor used https (TLS here or in front of antre).
    pub https: bool,
    /// The host the visitor asked for.
    pub host: Option<&'a HeaderValue>,
    /// Whether the visitor went through the line; a request that did not
    /// (a CORS preflight, an unguarded route) loses its method-override
    /// headers.
    pub admitted: bool,
}

/// Rewrites the identity headers of a request about to go to the origin:
/// a client's own claims removed, a trusted proxy's kept with this hop
/// added, `Forwarded` (RFC 7239) and `X-Forwarded-For/-Proto/-Host`
/// written.
pub fn rewrite(headers: &mut HeaderMap, hop: Hop<'_>) {
    identity(headers, hop).apply(headers);
}

/// The identity fields this hop gives a request: `X-Forwarded-For` and
/// `Forwarded` replace any field of their name; `X-Forwarded-Proto` and
/// `-Host` are given only where the request has none.
#[derive(Debug)]
pub struct Identity {
    /// The values of `X-Forwarded-For` and `Forwarded`, one after the
    /// other: one allocation for both.
    text: Vec<u8>,
    /// Where each lies in `text`; `None` for a value that would not be a
    /// valid field (never from what this hop writes itself; a trusted
    /// proxy's own could be odd).
    forwarded_for: Option<(usize, usize)>,
    forwarded: Option<(usize, usize)>,
    proto: Option<&'static str>,
    host: Option<HeaderValue>,
}

/// Takes out of `headers` what no client may claim (see [`rewrite`]) and
/// returns the identity fields to add: into the map ([`Identity::apply`]),
/// or straight into a request head ([`Identity::fields`]).
pub fn identity(headers: &mut HeaderMap, hop: Hop<'_>) -> Identity {
    // One look over the names; removing (which hashes each name) only when
    // something is there to remove, which is rare.
    let unwanted = |name: &HeaderName| {
        let name = name.as_str();
        // CGI-style origins (PHP, many FastCGI setups) read `X_Forwarded_For`
        // as `X-Forwarded-For`: names with underscores are dropped, as
        // nginx does by default.
        name.contains('_')
            || PATH_REWRITES.contains(&name)
            || ANTRE_ONLY.contains(&name)
            || (!hop.admitted && METHOD_OVERRIDES.contains(&name))
            || (!hop.trusted && (IDENTITY.contains(&name) || name.starts_with("x-forwarded-")))
    };
    if headers.keys().any(unwanted) {
        let names: Vec<HeaderName> = headers.keys().filter(|n| unwanted(n)).cloned().collect();
        for name in names {
            headers.remove(name);
        }
    }

    let proto = if hop.https { "https" } else { "http" };
    let previous_for = hop
        .trusted
        .then(|| joined(headers, &X_FORWARDED_FOR))
        .flatten();
    let previous = hop.trusted.then(|| joined(headers, &FORWARDED)).flatten();
    let mut text = Vec::with_capacity(
        128 + previous_for.as_ref().map_or(0, String::len)
            + previous.as_ref().map_or(0, String::len),
    );

    // X-Forwarded-For: what a trusted proxy said, then the peer.
    if let Some(previous) = &previous_for {
        text.extend_from_slice(previous.as_bytes());
        text.extend_from_slice(b", ");
    }
    let peer_start = text.len();
    push_ip(&mut text, hop.peer);
    let peer = peer_start..text.len();
    let forwarded_for = (0, text.len());

    // Forwarded: the same, with this hop's host and scheme.
    let start = text.len();
    if let Some(previous) = &previous {
        text.extend_from_slice(previous.as_bytes());
        text.extend_from_slice(b", ");
    }
    text.extend_from_slice(b"for=");
    match hop.peer {
        IpAddr::V4(_) => text.extend_from_within(peer),
        IpAddr::V6(_) => {
            text.extend_from_slice(b"\"[");
            text.extend_from_within(peer);
            text.extend_from_slice(b"]\"");
        }
    }
    if let Some(host) = hop.host.and_then(|h| h.to_str().ok()) {
        text.extend_from_slice(b";host=");
        push_quoted(&mut text, host);
    }
    text.extend_from_slice(b";proto=");
    text.extend_from_slice(proto.as_bytes());
    let forwarded = (start, text.len());

    // What this hop writes is always a valid value; what a trusted proxy
    // sent before it is looked at.
    let relayed = previous_for.is_some() || previous.is_some();
    let valid = |(from, to): (usize, usize)| {
        (!relayed
            || text[from..to]
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)))
        .then_some((from, to))
    };
    Identity {
        forwarded_for: valid(forwarded_for),
        forwarded: valid(forwarded),
        proto: (!headers.contains_key(&X_FORWARDED_PROTO)).then_some(proto),
        host: hop
            .host
            .filter(|_| !headers.contains_key(&X_FORWARDED_HOST))
            .cloned(),
        text,
    }
}

impl Identity {
    /// Each field to give the request, as a name and a valid value; the
    /// request's own fields of these names are to be left out.
    pub fn fields(&self) -> impl Iterator<Item = (HeaderName, &[u8])> {
        let value = |(from, to): (usize, usize)| &self.text[from..to];
        [
            self.forwarded_for.map(|v| (X_FORWARDED_FOR, value(v))),
            self.proto
                .map(|proto| (X_FORWARDED_PROTO, proto.as_bytes())),
            self.host
                .as_ref()
                .map(|host| (X_FORWARDED_HOST, host.as_bytes())),
            self.forwarded.map(|v| (FORWARDED, value(v))),
        ]
        .into_iter()
        .flatten()
    }

    /// Puts the fields into `headers`.
    pub fn apply(self, headers: &mut HeaderMap) {
        for (name, value) in self.fields() {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.insert(name, value);
            }
        }
    }
}

/// Every field of `name` joined with commas, when there is any text.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Appends an address in its usual text form. IPv4, nearly every visitor,
/// is written digit by digit: formatting through `Display` costs more
/// than the rest of this hop's headers together.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `value` as a token when it is one, else as a quoted string.
fn push_quoted(out: &mut Vec<u8>, value: &str) {
    let token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    out.push(b'"');
    for b in value.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(peer: &str, trusted: bool) -> Hop<'static> {
        Hop {
            peer: peer.parse().unwrap(),
            trusted,
            https: false,
            host: None,
            admitted: true,
        }
    }

    #[test]
    fn blocks_contain_their_addresses() {
        let block = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(block.contains("10.1.200.3".parse().unwrap()));
        assert!(block.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!block.contains("10.2.0.1".parse().unwrap()));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/33").unwrap();
        assert!(v6.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db8:8000::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nowhere", "10.0.0/8", "::/129", "1.2.3.4/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }

    #[test]
    fn a_clients_claims_are_replaced() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-prefix", "/admin"),
            ("x-forwarded-port", "443"),
            ("x-real-ip", "1.2.3.4"),
            ("true-client-ip", "1.2.3.4"),
            ("cf-connecting-ip", "1.2.3.4"),
            ("x-original-url", "/daftar"),
            ("x-rewrite-url", "/daftar"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x_original_url", "/daftar"),
            ("accept", "text/html"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let host = HeaderValue::from_static("kota.example:8080");
        rewrite(
            &mut headers,
            Hop {
                host: Some(&host),
                ..hop("::1", false)
            },
        );
        let mut names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "accept",
                "forwarded",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto"
            ]
        );
        assert_eq!(headers["x-forwarded-for"], "::1");
        assert_eq!(
            headers["forwarded"],
            "for=\"[::1]\";host=\"kota.example:8080\";proto=http"
        );
    }

    #[test]
    fn a_clients_admission_header_never_reaches_the_origin() {
        for trusted in [false, true] {
            for admitted in [false, true] {
                let mut headers = HeaderMap::new();
                // Names are case-insensitive; the map keeps them in lower case.
                let name = HeaderName::from_bytes(b"Antre-Admission").unwrap();
                headers.append(name, HeaderValue::from_static("1.k.vaksin.1.0.0.line.x"));
                let name = HeaderName::from_bytes(b"ANTRE-ADMISSION").unwrap();
                headers.append(name, HeaderValue::from_static("another"));
                headers.insert("accept", HeaderValue::from_static("text/html"));
                rewrite(
                    &mut headers,
                    Hop {
                        admitted,
                        ..hop("10.0.0.2", trusted)
                    },
                );
                assert!(
                    !headers.contains_key("antre-admission"),
                    "trusted {trusted}, admitted {admitted}: {headers:?}"
                );
                assert_eq!(headers["accept"], "text/html");
            }
        }
    }

    #[test]
    fn method_overrides_reach_the_origin_only_from_admitted_visitors() {
        let overridden = || {
            let mut headers = HeaderMap::new();
            headers.insert("x-http-method-override", HeaderValue::from_static("POST"));
            headers
        };
        let mut admitted = overridden();
        rewrite(&mut admitted, hop("10.0.0.2", false));
        assert!(admitted.contains_key("x-http-method-override"));
        let mut preflight = overridden();
        rewrite(
            &mut preflight,
            Hop {
                admitted: false,
                ..hop("10.0.0.2", false)
            },
        );
        assert!(!preflight.contains_key("x-http-method-override"));
    }

    #[test]
    fn a_trusted_proxys_headers_are_kept_and_this_hop_added() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert(
            "forwarded",
            HeaderValue::from_static("for=203.0.113.9;proto=https"),
        );
        headers.insert("x-real-ip", HeaderValue::from_static("203.0.113.9"));
        headers.insert("x-original-url", HeaderValue::from_static("/daftar"));
        rewrite(&mut headers, hop("10.0.0.2", true));
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 10.0.0.2");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-real-ip"], "203.0.113.9");
        assert_eq!(
            headers["forwarded"],
            "for=203.0.113.9;proto=https, for=10.0.0.2;proto=http"
        );
        assert!(!headers.contains_key("x-original-url"), "never forwarded");
    }
}
