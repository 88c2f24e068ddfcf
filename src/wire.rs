//! HTTP/1.1 to the origin, on the wire (RFC 9112): the request head antre
//! writes, the response head it reads and how that response's body is
//! framed, and the decoder for a chunked body. Functions over bytes, so
//! tests and fuzzing drive them directly; [`crate::pool`] does the I/O.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// The longest response head read, in bytes (hyper's default limit, which
/// the origin client had before).
pub const MAX_HEAD: usize = 8192 + 4096 * 100;
/// The most header fields a response head may have.
pub const MAX_HEADERS: usize = 100;
/// The most bytes of chunk extensions, or of trailer fields, in one body.
const MAX_CHUNK_EXTRAS: usize = 16 * 1024;

/// Why an origin's response could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("malformed response head: {0}")]
    Head(&'static str),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid Content-Length in the response")]
    Length,
    #[error("malformed chunked body: {0}")]
    Chunk(&'static str),
}

// === the request head ===

/// How a request's body goes to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body.
    Empty,
    /// A body of this many bytes.
    Length(u64),
    /// A body of unknown length, sent in chunks.
    Chunked,
}

/// Appends the request head to `out`: the request line in origin form,
/// the fields of `headers` but those named in `added` and the body's
/// framing (which `framing` decides), the fields `added` (valid values),
/// and the empty line.
pub fn write_request_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    added: &[(HeaderName, &[u8])],
    framing: RequestFraming,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let kept = headers
        .iter()
        .filter(|(name, _)| {
            *name != header::CONTENT_LENGTH
                && *name != header::TRANSFER_ENCODING
                && !added.iter().any(|(added, _)| added == *name)
        })
        .map(|(name, value)| (name, value.as_bytes()));
    for (name, value) in kept.chain(added.iter().map(|(name, value)| (name, *value))) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        RequestFraming::Empty => {
            // Methods whose body means something say "none" outright.
            if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
        }
        RequestFraming::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk's size line to `out` (the data and its `CRLF` follow).
pub fn write_chunk_size(length: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - length.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(HEX[(length >> (i * 4)) & 0xf]);
    }
    out.extend_from_slice(b"\r\n");
}

// === the response head ===

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (a `HEAD` request, `204`, `304`, `101`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the origin closes the connection.
    UntilClose,
}

/// A response head read from the origin.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
}

/// Reads a response head from the front of `buf`, taking its bytes out.
/// `Ok(None)`: the head is not all there yet (nothing is taken). An
/// interim (`1xx`, other than `101`) response is returned like any other;
/// the caller reads on past it.
pub fn read_response_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<Head>, WireError> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Where each field's name and value lie in the head, so the values
    // can be slices of it rather than copies.
    let mut found = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let (length, code, minor, count) = {
        let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut fields,
        );
        let length = match parsed {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => {
                return if buf.len() > MAX_HEAD {
                    Err(WireError::HeadTooLarge)
                } else {
                    Ok(None)
                };
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(WireError::Head("too many header fields"))
            }
            Err(_) => return Err(WireError::Head("not an HTTP/1.x response")),
        };
        if length > MAX_HEAD {
            return Err(WireError::HeadTooLarge);
        }
        let start = buf.as_ptr() as usize;
        let offset = |s: &[u8]| (s.as_ptr() as usize - start) as u32;
        for (slot, field) in found.iter_mut().zip(response.headers.iter()) {
            let name = offset(field.name.as_bytes());
            let value = offset(field.value);
            *slot = (
                name,
                name + field.name.len() as u32,
                value,
                value + field.value.len() as u32,
            );
        }
        let code = response.code.unwrap_or(0);
        let minor = response.version.unwrap_or(1);
        (length, code, minor, response.headers.len())
    };
    let head = buf.split_to(length).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| WireError::Head("invalid status code"))?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let spans = &found[..count];
    let fields = spans
        .iter()
        .map(|&(name_start, name_end, value_start, value_end)| {
            (
                &head[name_start as usize..name_end as usize],
                &head[value_start as usize..value_end as usize],
            )
        });
    let read = Fields::read(fields.clone());
    let (framing, keep_alive) = framing(status, version, &read, head_request)?;
    // The fields that describe this hop, and those `Connection` names, are
    // left out here rather than put into the map and taken out again; a
    // `101` keeps them all, as its tunnel is made of them.
    let tunnel = status == StatusCode::SWITCHING_PROTOCOLS;
    let named = !tunnel && read.names_more;
    let mut headers = HeaderMap::with_capacity(count);
    let listed = |name: &[u8]| {
        fields
            .clone()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .any(|(_, value)| elements(value).any(|t| t.eq_ignore_ascii_case(name)))
    };
    for &(name_start, name_end, value_start, value_end) in spans {
        let name = &head[name_start as usize..name_end as usize];
        if !tunnel && (is_hop_by_hop(name) || (named && listed(name))) {
            continue;
        }
        let name =
            HeaderName::from_bytes(name).map_err(|_| WireError::Head("invalid header name"))?;
        let value = head.slice(value_start as usize..value_end as usize);
        // SAFETY: httparse accepts in a field value only tab, space and
        // bytes from 0x21 up but 0x7F, which is exactly what a
        // `HeaderValue` may hold.
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(value) };
        headers.append(name, value);
    }
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// Whether a field (named in any case) describes one hop, not the
/// message (RFC 9110 §7.6.1): such fields are never passed on. The names
/// of [`HOP_BY_HOP`], told apart by length and first letter.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let first = name.first().map(u8::to_ascii_lowercase);
    let candidate: &[u8] = match (name.len(), first) {
        (2, _) => b"te",
        (7, Some(b'u')) => b"upgrade",
        (7, _) => b"trailer",
        (10, Some(b'c')) => b"connection",
        (10, _) => b"keep-alive",
        (16, _) => b"proxy-connection",
        (17, _) => b"transfer-encoding",
        (18, _) => b"proxy-authenticate",
        (19, _) => b"proxy-authorization",
        _ => return false,
    };
    name.eq_ignore_ascii_case(candidate)
}

/// Fields that describe one hop, not the message; never forwarded.
pub static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// What a response head's fields say about its framing and connection,
/// read in one pass over them.
#[derive(Debug, Default)]
struct Fields<'a> {
    /// `Connection` lists `close`.
    close: bool,
    /// `Connection` lists `keep-alive`.
    keep_alive: bool,
    /// `Connection` lists an option that is not a hop-by-hop field's name
    /// (`close` among them), which the fields of that name go with.
    names_more: bool,
    /// Some `Transfer-Encoding` field is present.
    coded: bool,
    /// The last transfer coding listed.
    last_coding: Option<&'a [u8]>,
    /// Some `Content-Length` field is present.
    has_length: bool,
    /// The length the `Content-Length` values give.
    length: Option<u64>,
    /// Some `Content-Length` value is malformed, or two differ.
    bad_length: bool,
}

impl<'a> Fields<'a> {
    fn read(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut read = Fields::default();
        for (name, value) in fields {
            if name.eq_ignore_ascii_case(b"connection") {
                for token in elements(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        read.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        read.keep_alive = true;
                    }
                    // Any option may name a field, `close` too.
                    read.names_more |= !is_hop_by_hop(token);
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                read.coded = true;
                if let Some(last) = elements(value).last() {
                    read.last_coding = Some(last);
                }
            } else if name.eq_ignore_ascii_case(b"content-length") {
                read.has_length = true;
                for part in value.split(|&b| b == b',') {
                    match parse_length(part.trim_ascii()) {
                        Some(n) if read.length.is_none_or(|seen| seen == n) => {
                            read.length = Some(n);
                        }
                        _ => read.bad_length = true,
                    }
                }
            }
        }
        read
    }
}

/// A `Content-Length` element: decimal digits only, at most 19 of them.
pub fn parse_length(part: &[u8]) -> Option<u64> {
    if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// How the body after this head is delimited, and whether the connection
/// can be used again after it (RFC 9112 §6.3, §9.3).
fn framing(
    status: StatusCode,
    version: Version,
    fields: &Fields<'_>,
    head_request: bool,
) -> Result<(Framing, bool), WireError> {
    let mut keep_alive = if version == Version::HTTP_10 {
        fields.keep_alive
    } else {
        !fields.close
    };
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, keep_alive));
    }
    if fields.coded {
        // Both framings at once, or a coding HTTP/1.0 does not have: the
        // body is read as the coding says (or to the end), and the
        // connection is not trusted with another request.
        if fields.has_length || version == Version::HTTP_10 {
            keep_alive = false;
        }
        return Ok(match fields.last_coding {
            Some(coding)
                if coding.eq_ignore_ascii_case(b"chunked") && version == Version::HTTP_11 =>
            {
                (Framing::Chunked, keep_alive)
            }
            _ => (Framing::UntilClose, false),
        });
    }
    if fields.bad_length {
        return Err(WireError::Length);
    }
    Ok(match fields.length {
        Some(0) => (Framing::Empty, keep_alive),
        Some(n) => (Framing::Length(n), keep_alive),
        None => (Framing::UntilClose, false),
    })
}

/// The elements of one comma-separated field value, trimmed, the empty
/// ones left out.
pub fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// The elements of a comma-separated field (every field of `name`
/// together), trimmed, the empty ones left out.
pub fn tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| elements(v.as_bytes()))
}

// === chunked bodies ===

/// Decodes a chunked body as its bytes arrive.
#[derive(Debug, Clone, Default)]
pub struct Chunked {
    state: ChunkState,
    /// Bytes of extensions and trailers seen so far, bounded.
    extras: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// At the start of a size line: no digit yet.
    #[default]
    SizeStart,
    /// In the size's hex digits.
    Size(u64),
    /// Spaces after the size, before an extension or the line's end.
    SizeSpace(u64),
    /// In an extension, to the end of the line.
    Extension(u64),
    /// After the size line's `CR`.
    SizeLf(u64),
    /// In a chunk's data, this much left.
    Data(u64),
    /// After the data: its `CR`, then `LF`.
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// In a trailer line.
    Trailer,
    /// After a trailer line's `CR`.
    TrailerLf,
    /// After the final empty line's `CR`.
    EndLf,
    /// The body is complete.
    Done,
}

/// What decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Bytes of the body.
    Data(Bytes),
    /// The body is complete.
    End,
}

impl Chunked {
    /// Decodes from the front of `buf`, taking out what it used. `Ok(None)`:
    /// more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, WireError> {
        let mut used = 0;
        let result = loop {
            if self.state == ChunkState::Done {
                break Ok(Some(Decoded::End));
            }
            if let ChunkState::Data(left) = self.state {
                let available = buf.len() - used;
                if available == 0 {
                    break Ok(None);
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(available);
                buf.advance(used);
                let data = buf.split_to(take).freeze();
                self.state = if left == take as u64 {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data(left - take as u64)
                };
                return Ok(Some(Decoded::Data(data)));
            }
            let Some(&byte) = buf.get(used) else {
                break Ok(None);
            };
            used += 1;
            if let Err(e) = self.step(byte) {
                break Err(e);
            }
        };
        buf.advance(used);
        result
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    fn step(&mut self, byte: u8) -> Result<(), WireError> {
        use ChunkState::*;
        self.state = match (self.state, byte) {
            (SizeStart, b) if b.is_ascii_hexdigit() => Size(hex(b)),
            (SizeStart, _) => return Err(WireError::Chunk("no chunk size")),
            (Size(n), b) if b.is_ascii_hexdigit() => {
                if n > u64::MAX >> 4 {
                    return Err(WireError::Chunk("chunk size too large"));
                }
                Size(n << 4 | hex(b))
            }
            (Size(n) | SizeSpace(n), b' ' | b'\t') => SizeSpace(n),
            (Size(n) | SizeSpace(n), b';') => Extension(n),
            (Size(n) | SizeSpace(n) | Extension(n), b'\r') => SizeLf(n),
            (Size(_) | SizeSpace(_), _) => return Err(WireError::Chunk("invalid chunk size")),
            (Extension(_), b'\n') => return Err(WireError::Chunk("bare LF in a chunk extension")),
            (Extension(n), _) => {
                self.extra()?;
                Extension(n)
            }
            (SizeLf(0), b'\n') => TrailerStart,
            (SizeLf(n), b'\n') => Data(n),
            (SizeLf(_), _) => return Err(WireError::Chunk("CR without LF after a chunk size")),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => SizeStart,
            (DataCr | DataLf, _) => {
                return Err(WireError::Chunk("chunk data longer than its size"))
            }
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | Trailer, b'\n') => {
                return Err(WireError::Chunk("bare LF in a trailer"))
            }
            (Trailer, b'\r') => TrailerLf,
            (TrailerStart | Trailer, _) => {
                self.extra()?;
                Trailer
            }
            (TrailerLf, b'\n') => TrailerStart,
            (TrailerLf, _) => return Err(WireError::Chunk("CR without LF in a trailer")),
            (EndLf, b'\n') => Done,
            (EndLf, _) => return Err(WireError::Chunk("CR without LF at the end")),
            // Handled in `decode`, never stepped through.
            (state @ (Data(_) | Done), _) => state,
        };
        Ok(())
    }

    fn extra(&mut self) -> Result<(), WireError> {
        self.extras += 1;
        if self.extras > MAX_CHUNK_EXTRAS {
            return Err(WireError::Chunk("chunk extensions or trailers too long"));
        }
        Ok(())
    }
}

fn hex(b: u8) -> u64 {
    match b {
        b'0'..=b'9' => u64::from(b - b'0'),
        b'a'..=b'f' => u64::from(b - b'a' + 10),
        _ => u64::from(b - b'A' + 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head_of(text: &str, head_request: bool) -> Result<Option<Head>, WireError> {
        read_response_head(&mut BytesMut::from(text), head_request)
    }

    fn framed(text: &str) -> (Framing, bool) {
        let head = head_of(text, false).unwrap().unwrap();
        (head.framing, head.keep_alive)
    }

    #[test]
    fn the_request_head_takes_its_framing_from_the_body() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("example.org"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("gzip, chunked"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        let mut out = Vec::new();
        write_request_head(
            &Method::GET,
            "/x?y=1",
            &headers,
            &[],
            RequestFraming::Empty,
            &mut out,
        );
        assert_eq!(
            out,
            b"GET /x?y=1 HTTP/1.1\r\nhost: example.org\r\ncookie: a=1\r\n\r\n"
        );
        out.clear();
        write_request_head(
            &Method::POST,
            "/",
            &headers,
            &[],
            RequestFraming::Empty,
            &mut out,
        );
        assert!(
            out.ends_with(b"cookie: a=1\r\ncontent-length: 0\r\n\r\n"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        out.clear();
        write_request_head(
            &Method::PUT,
            "/",
            &headers,
            &[],
            RequestFraming::Length(12345),
            &mut out,
        );
        assert!(out.ends_with(b"content-length: 12345\r\n\r\n"));
        out.clear();
        write_request_head(
            &Method::POST,
            "/",
            &headers,
            &[],
            RequestFraming::Chunked,
            &mut out,
        );
        assert!(out.ends_with(b"transfer-encoding: chunked\r\n\r\n"));
        // Fields added by this hop take the place of the request's own.
        out.clear();
        let added = [
            (header::HOST, &b"origin.example"[..]),
            (HeaderName::from_static("x-forwarded-for"), &b"10.0.0.1"[..]),
        ];
        write_request_head(
            &Method::GET,
            "/",
            &headers,
            &added,
            RequestFraming::Empty,
            &mut out,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "GET / HTTP/1.1\r\ncookie: a=1\r\nhost: origin.example\r\nx-forwarded-for: 10.0.0.1\r\n\r\n"
        );
        assert_eq!(
            out.windows(14).filter(|w| w == b"content-length").count(),
            0
        );
    }

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        for (n, text) in [
            (0, "0\r\n"),
            (1, "1\r\n"),
            (255, "ff\r\n"),
            (4096, "1000\r\n"),
            (usize::MAX, "ffffffffffffffff\r\n"),
        ] {
            let mut out = Vec::new();
            write_chunk_size(n, &mut out);
            assert_eq!(out, text.as_bytes());
        }
    }

    #[test]
    fn a_head_is_read_once_it_is_all_there() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Site: a\r\nX-Site: b\r\n\r\nhello";
        for cut in 0..text.find("\r\n\r\n").unwrap() + 4 {
            let mut buf = BytesMut::from(&text[..cut]);
            assert!(
                read_response_head(&mut buf, false).unwrap().is_none(),
                "cut at {cut}"
            );
            assert_eq!(buf.len(), cut, "nothing is taken from a partial head");
        }
        let mut buf = BytesMut::from(text);
        let head = read_response_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.framing, Framing::Length(5));
        assert!(head.keep_alive);
        let sites: Vec<_> = head.headers.get_all("x-site").iter().collect();
        assert_eq!(sites, ["a", "b"]);
        assert_eq!(&buf[..], b"hello", "the body stays in the buffer");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        // A response head, how its body is framed, and whether the
        // connection may be used again: by length; both framings at once
        // (the coding wins, the connection is not used again); a coding
        // not chunked last, or none at all (to the end); keep-alive by
        // version and `Connection`; no body whatever the fields say.
        #[rustfmt::skip]
        let cases = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", Framing::Length(10), true),
            ("HTTP/1.1 200 OK\r\nContent-Length: 10, 10\r\nContent-Length: 10\r\n\r\n", Framing::Length(10), true),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Framing::Empty, true),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Framing::Chunked, true),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", Framing::Chunked, true),
            ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Framing::Chunked, false),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Framing::UntilClose, false),
            ("HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose, false),
            ("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Framing::UntilClose, false),
            ("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\n", Framing::Length(1), false),
            ("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Framing::Length(1), false),
            ("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n", Framing::Length(1), true),
            ("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", Framing::Empty, true),
            ("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", Framing::Empty, true),
            ("HTTP/1.1 100 Continue\r\n\r\n", Framing::Empty, true),
            ("HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n", Framing::Chunked, false),
            ("HTTP/1.1 200 OK\r\nCONNECTION: CLOSE\r\nCONTENT-LENGTH: 2\r\n\r\n", Framing::Length(2), false),
        ];
        for (text, framing, keep_alive) in cases {
            assert_eq!(framed(text), (framing, keep_alive), "{text:?}");
        }
        let head = head_of("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Empty);
    }

    #[test]
    fn hop_by_hop_names_are_known_in_any_case() {
        for name in &HOP_BY_HOP {
            let lower = name.as_str();
            assert!(is_hop_by_hop(lower.as_bytes()), "{lower}");
            assert!(
                is_hop_by_hop(lower.to_ascii_uppercase().as_bytes()),
                "{lower}"
            );
        }
        // Names of the same lengths that describe the message.
        for name in [
            "tx",
            "referer",
            "USER-AGENT",
            "x-forwarded-host",
            "content-encoding",
            "content-location",
            "x-transfer-encoding",
            "proxy-authorizatio",
            "",
        ] {
            assert!(!is_hop_by_hop(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn hop_by_hop_fields_are_left_out_of_the_response() {
        // What describes the hop, and what `Connection` names, never
        // reaches the map; the rest comes whole, in order, in any case.
        let text = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n\
                    x-hop: 1\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\nProxy-Connection: close\r\n\
                    Content-Length: 2\r\nX-Site: a\r\nx-site: b\r\n\r\n";
        let head = head_of(text, false).unwrap().unwrap();
        let names: Vec<&str> = head.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-length", "x-site"]);
        let sites: Vec<_> = head.headers.get_all("x-site").iter().collect();
        assert_eq!(sites, ["a", "b"]);
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.keep_alive);

        // `close` ends the connection and, like any option, takes a field
        // of its name with it.
        let text = "HTTP/1.1 200 OK\r\nConnection: close\r\nClose: 1\r\nContent-Length: 0\r\n\r\n";
        let head = head_of(text, false).unwrap().unwrap();
        let names: Vec<&str> = head.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-length"]);
        assert!(!head.keep_alive);

        // A `101` keeps them: its tunnel is made of `Connection` and
        // `Upgrade`.
        let text =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let head = head_of(text, false).unwrap().unwrap();
        assert_eq!(head.headers["connection"], "Upgrade");
        assert_eq!(head.headers["upgrade"], "websocket");
    }

    #[test]
    fn bad_heads_are_refused_by_name() {
        for length in [
            "1, 2",
            "-1",
            "+1",
            "1 2",
            "",
            "0x10",
            "99999999999999999999",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
            assert_eq!(
                head_of(&text, false).unwrap_err(),
                WireError::Length,
                "{length:?}"
            );
        }
        let two = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(head_of(two, false).unwrap_err(), WireError::Length);
        assert!(matches!(
            head_of("HTTP/2 200 OK\r\n\r\n", false),
            Err(WireError::Head(_))
        ));
        assert!(matches!(
            head_of("SSH-2.0-OpenSSH\r\n\r\n", false),
            Err(WireError::Head(_))
        ));
        assert!(matches!(
            head_of("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", false),
            Err(WireError::Head(_))
        ));
        assert!(matches!(
            head_of("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n", false),
            Err(WireError::Head(_))
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: y\r\n")).collect();
        let text = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(
            head_of(&text, false).unwrap_err(),
            WireError::Head("too many header fields")
        );
        let endless = format!("HTTP/1.1 200 OK\r\nX: {}", "y".repeat(MAX_HEAD));
        assert_eq!(
            head_of(&endless, false).unwrap_err(),
            WireError::HeadTooLarge
        );
    }

    /// Decodes `input` fed in pieces of `step` bytes; the body and what
    /// was left after its end.
    fn dechunk(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), WireError> {
        let mut decoder = Chunked::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Some(Decoded::Data(data)) => {
                    assert!(!data.is_empty());
                    body.extend_from_slice(&data);
                }
                Some(Decoded::End) => {
                    let mut rest = buf.to_vec();
                    rest.extend_from_slice(&input[fed..]);
                    return Ok((body, rest));
                }
                None if fed < input.len() => {
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
                None => return Err(WireError::Chunk("input ended")),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces() {
        let input = b"5\r\nhello\r\n1;name=value;q=\"x\"\r\n \r\nA  \r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, input.len()] {
            let (body, rest) = dechunk(input, step).unwrap();
            assert_eq!(body, b"hello 0123456789", "step {step}");
            assert_eq!(rest, b"NEXT");
        }
        assert_eq!(dechunk(b"0\r\n\r\n", 1).unwrap().0, b"");
        assert!(Chunked {
            state: ChunkState::Done,
            extras: 0
        }
        .is_done());
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello!\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5;x\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\n\rx",
            b"11111111111111111\r\n",
            b"-1\r\n",
            b"0x5\r\n",
        ] {
            assert!(
                matches!(dechunk(bad, 1), Err(WireError::Chunk(why)) if why != "input ended"),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_EXTRAS + 1));
        assert_eq!(
            dechunk(long.as_bytes(), 4096).unwrap_err(),
            WireError::Chunk("chunk extensions or trailers too long")
        );
    }

    proptest! {
        #[test]
        fn any_body_chunked_any_way_comes_back_whole(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(1usize..80, 0..12),
            step in 1usize..40,
        ) {
            let mut input = Vec::new();
            let mut rest = &body[..];
            for cut in cuts {
                let n = cut.min(rest.len());
                if n == 0 {
                    break;
                }
                write_chunk_size(n, &mut input);
                input.extend_from_slice(&rest[..n]);
                input.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            if !rest.is_empty() {
                write_chunk_size(rest.len(), &mut input);
                input.extend_from_slice(rest);
                input.extend_from_slice(b"\r\n");
            }
            input.extend_from_slice(b"0\r\n\r\n");
            let (decoded, left) = dechunk(&input, step).unwrap();
            prop_assert_eq!(decoded, body);
            prop_assert!(left.is_empty());
        }

        #[test]
        fn no_bytes_make_the_readers_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = dechunk(&bytes, 1);
            let mut text = b"HTTP/1.1 200 OK\r\n".to_vec();
            text.extend_from_slice(&bytes);
            let _ = read_response_head(&mut BytesMut::from(&text[..]), false);
            let _ = read_response_head(&mut BytesMut::from(&bytes[..]), false);
        }
    }
}
