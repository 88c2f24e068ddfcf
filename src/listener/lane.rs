//! antre's own HTTP/1.1 server side, for the request nearly every visitor
//! sends: a `GET` over HTTP/1.1 with no body, no upgrade and nothing asked
//! of the connection (`Connection: keep-alive` at most). Such a request is
//! read, answered and written here, in the connection's own task, without
//! hyper's dispatcher, read and write buffers and head encoder between
//! the socket and the handler.
//!
//! Anything else goes to hyper with every byte read so far, and hyper
//! serves the connection from there: another method, a body, HTTP/1.0, an
//! upgrade, `Expect`, `TE`, a head larger than [`MAX_HEAD`], with more than
//! [`MAX_HEADERS`] fields, or one that does not parse. So every refusal a
//! malformed request gets (`400`, `431`, ...) is hyper's, as before, and
//! the request is seen by the same handler either way.
//!
//! A response is framed here, whatever framing fields it came with:
//! `content-length` when the body's length is known (from the body or its
//! one valid `content-length`), chunked when it is not, no body and no
//! framing field for `204` and `304`; a `date` is added when the response
//! has none, and `connection: close` (then the connection closes) when the
//! listener is shutting down. A body that ends short of its length, runs
//! past it or fails closes the connection, so the client sees it cut
//! short.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Activity, Peer, Stream};
use crate::proxy::Body;
use crate::wire;

/// The largest request head served here; a larger one goes to hyper, which
/// holds it to the listener's own limit ([`super::Side::max_head`]).
pub const MAX_HEAD: usize = 8 * 1024;
/// The most header fields a head served here may have (hyper's own limit:
/// past it hyper answers `431`).
pub const MAX_HEADERS: usize = 100;
/// Response body frames up to this size are copied after the head, so a
/// small response leaves in one write; larger ones are written from where
/// they are.
const COPY_UP_TO: usize = 16 * 1024;
/// Room kept free in the read buffer before each read.
const READ_ROOM: usize = 1024;
/// What the read buffer grows by.
pub(super) const READ_GROW: usize = 4096;

/// A visitor's request body: hyper's, for a request hyper read, or none,
/// for one read here (which never has a body).
pub enum RequestBody {
    Hyper(Incoming),
    Empty,
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Hyper(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Hyper(body) => body.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Hyper(body) => body.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// Why the lane stopped serving a connection.
pub(super) enum Exit {
    /// The client closed, asked to close, or the connection was told to
    /// stop (see [`serve`]).
    Done,
    /// A request not served here begins with these bytes: hyper takes the
    /// connection from them.
    Hyper(Bytes),
}

/// Serves a connection's requests while they are plain (see the module's
/// comment), starting with the bytes in `buf`. `stop` is set by the task
/// driving the connection (idle, quiet, shutting down): it is acted on
/// when waiting for a request (the lane returns at once) or before the
/// next response is written (which then says `connection: close`).
pub(super) async fn serve<H, F>(
    io: &mut Stream,
    buf: &mut BytesMut,
    stop: &AtomicBool,
    activity: &Arc<Activity>,
    peer: Peer,
    handler: &H,
) -> io::Result<Exit>
where
    H: Fn(Request<RequestBody>, Peer) -> F,
    F: Future<Output = Response<Body>>,
{
    // Where each field's name and value lie in the head; kept from one
    // request to the next.
    let mut spans = Vec::new();
    let mut out = Vec::new();
    loop {
        let request = match read_head(buf, &mut spans) {
            Head::Whole(request) => request,
            Head::Hyper(bytes) => return Ok(Exit::Hyper(bytes)),
            Head::Partial => {
                if buf.capacity() - buf.len() < READ_ROOM {
                    buf.reserve(READ_GROW);
                }
                let read = poll_fn(|cx| {
                    if stop.load(Ordering::Acquire) {
                        return Poll::Ready(Ok(0));
                    }
                    pin!(io.read_buf(buf)).poll(cx)
                })
                .await?;
                if read == 0 {
                    return Ok(Exit::Done);
                }
                activity.read();
                continue;
            }
        };
        let in_flight = activity.request_began();
        let response = handler(request, peer).await;
        let close = stop.load(Ordering::Acquire);
        let keep = respond(io, &mut out, response, close).await?;
        drop(in_flight);
        if !keep {
            return Ok(Exit::Done);
        }
        if !buf.is_empty() {
            // The next head has begun: its time runs from now.
            activity.read();
        }
    }
}

/// What the read buffer holds.
// Returned, never stored: boxing the request would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Head {
    /// A whole request served here (its head taken from the buffer).
    Whole(Request<RequestBody>),
    /// Not yet a whole head.
    Partial,
    /// The start of a request for hyper (everything the buffer held).
    Hyper(Bytes),
}

/// Where a field's name and value lie in the head.
type Span = [usize; 4];

fn read_head(buf: &mut BytesMut, spans: &mut Vec<Span>) -> Head {
    if buf.is_empty() {
        return Head::Partial;
    }
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Head::Partial,
        _ => return Head::Hyper(buf.split().freeze()),
    };
    if parsed.method != Some("GET") || parsed.version != Some(1) {
        return Head::Hyper(buf.split().freeze());
    }
    let base = buf.as_ptr() as usize;
    let at = |part: &[u8]| part.as_ptr() as usize - base;
    spans.clear();
    for field in parsed.headers.iter() {
        if !plain(field.name.as_bytes(), field.value) {
            return Head::Hyper(buf.split().freeze());
        }
        let (name, value) = (at(field.name.as_bytes()), at(field.value));
        spans.push([
            name,
            name + field.name.len(),
            value,
            value + field.value.len(),
        ]);
    }
    let target = parsed.path.unwrap_or_default().as_bytes();
    let target = at(target)..at(target) + target.len();
    let head = buf.split_to(len).freeze();
    match request(&head, target, spans) {
        Some(request) => Head::Whole(request),
        // Nothing httparse let through fails here; if it ever did, hyper
        // reads the head again and answers for it.
        None => {
            let mut all = BytesMut::with_capacity(head.len() + buf.len());
            all.extend_from_slice(&head);
            all.extend_from_slice(&buf.split());
            Head::Hyper(all.freeze())
        }
    }
}

/// Whether a field leaves a `GET` plain: nothing about a body, an upgrade,
/// an expectation or trailers, and a connection kept alive (the default).
fn plain(name: &[u8], value: &[u8]) -> bool {
    const ASKS: [&[u8]; 6] = [
        b"content-length",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"te",
        b"http2-settings",
    ];
    if name.eq_ignore_ascii_case(b"connection") {
        return value.trim_ascii().eq_ignore_ascii_case(b"keep-alive");
    }
    !ASKS.iter().any(|asks| name.eq_ignore_ascii_case(asks))
}

/// The request a plain head says, its fields' values shared with the head.
fn request(
    head: &Bytes,
    target: std::ops::Range<usize>,
    spans: &[Span],
) -> Option<Request<RequestBody>> {
    let mut headers = HeaderMap::with_capacity(spans.len());
    for &[name_from, name_to, value_from, value_to] in spans {
        let name = HeaderName::from_bytes(&head[name_from..name_to]).ok()?;
        // SAFETY: httparse accepts in a field value only tab, space and
        // bytes from 0x21 up but 0x7F, which is exactly what a
        // `HeaderValue` may hold (as for the origin's fields in `wire`).
        let value =
            unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(value_from..value_to)) };
        headers.append(name, value);
    }
    let uri = Uri::from_maybe_shared(head.slice(target)).ok()?;
    let mut request = Request::new(RequestBody::Empty);
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

/// How a response's body is framed on the wire.
enum Framing {
    /// `content-length`, with the bytes still to come.
    Length(u64),
    Chunked,
    /// No body may follow (`204`, `304`).
    None,
}

/// Writes `response`; whether the connection stays open after it.
async fn respond(
    io: &mut Stream,
    out: &mut Vec<u8>,
    response: Response<Body>,
    close: bool,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    // An informational answer cannot end a request: none reaches here (the
    // proxy refuses a `101` it did not ask for), and were one to, the
    // connection would not be trusted to carry another.
    let mut keep = !close && !parts.status.is_informational();
    let status = parts.status;
    let mut framing = if matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
        || status.is_informational()
    {
        Framing::None
    } else {
        match body
            .size_hint()
            .exact()
            .or_else(|| content_length(&parts.headers))
        {
            Some(len) => Framing::Length(len),
            None => Framing::Chunked,
        }
    };

    out.clear();
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut dated = false;
    for (name, value) in &parts.headers {
        match *name {
            // Framing is this writer's to say.
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING => continue,
            header::CONNECTION
                if wire::elements(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close")) =>
            {
                keep = false;
            }
            header::DATE => dated = true,
            _ => {}
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close && !parts.headers.contains_key(header::CONNECTION) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    match framing {
        Framing::Length(len) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {}
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");

    if matches!(framing, Framing::None) {
        drop(body);
        send(io, out).await?;
        return Ok(keep);
    }
    loop {
        // What the body has ready now goes out with what is already
        // written; only when it must wait is the rest flushed first.
        let next = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(next) => next,
            Poll::Pending => {
                send(io, out).await?;
                body.frame().await
            }
        };
        let data = match next {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                // Trailers (not sent over HTTP/1.1 here) or an empty frame.
                _ => continue,
            },
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; closing the connection");
                send(io, out).await?;
                return Ok(false);
            }
        };
        match &mut framing {
            Framing::Length(left) => {
                let fits = (*left).min(data.len() as u64) as usize;
                *left -= fits as u64;
                put(io, out, &data[..fits]).await?;
                if fits < data.len() {
                    tracing::debug!("response body longer than its length; closing the connection");
                    send(io, out).await?;
                    return Ok(false);
                }
            }
            Framing::Chunked => {
                wire::write_chunk_size(data.len(), out);
                put(io, out, &data).await?;
                out.extend_from_slice(b"\r\n");
            }
            Framing::None => {}
        }
    }
    match framing {
        Framing::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        Framing::Length(left) if left > 0 => {
            tracing::debug!(
                missing = left,
                "response body ended short; closing the connection"
            );
            keep = false;
        }
        _ => {}
    }
    send(io, out).await?;
    Ok(keep)
}

/// Writes out what `out` holds, and empties it.
async fn send(io: &mut Stream, out: &mut Vec<u8>) -> io::Result<()> {
    io.write_all(out).await?;
    io.flush().await?;
    out.clear();
    Ok(())
}

/// Adds `data` after what `out` holds: copied when small, else written
/// out together with it.
async fn put(io: &mut Stream, out: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
    if data.len() <= COPY_UP_TO {
        out.extend_from_slice(data);
        return Ok(());
    }
    let (mut first, mut second) = (&out[..], data);
    while !first.is_empty() {
        let n = io
            .write_vectored(&[IoSlice::new(first), IoSlice::new(second)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n < first.len() {
            first = &first[n..];
        } else {
            second = &second[n - first.len()..];
            first = &[];
        }
    }
    io.write_all(second).await?;
    out.clear();
    Ok(())
}

/// A response's own `content-length`, when it has one valid value.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    let len = wire::parse_length(first.as_bytes())?;
    values.all(|other| other == first).then_some(len)
}

thread_local! {
    /// The `date` value for the current second, made once a second per
    /// worker thread.
    static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
}

fn http_date(out: &mut Vec<u8>) {
    // The coarse clock: a second's text is only made once a second.
    let second = crate::clock::coarse_unix_seconds();
    DATE.with(|cell| {
        let (at, mut text) = cell.get();
        if at != second {
            let now = UNIX_EPOCH + Duration::from_secs(second);
            text.copy_from_slice(httpdate::fmt_http_date(now).as_bytes());
            cell.set((second, text));
        }
        out.extend_from_slice(&text);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    fn head(bytes: &[u8]) -> (Head, BytesMut) {
        let mut buf = BytesMut::from(bytes);
        let head = read_head(&mut buf, &mut Vec::new());
        (head, buf)
    }

    #[test]
    fn a_plain_get_is_read_here_with_what_follows_left() {
        let (parsed, rest) = head(
            b"GET /page?x=1 HTTP/1.1\r\nHost: a.example\r\nCookie: a=1\r\nCookie: b=2\r\n\r\nGET /next",
        );
        let Head::Whole(request) = parsed else {
            panic!("not read here")
        };
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/page?x=1");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["host"], "a.example");
        let cookies: Vec<_> = request.headers().get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn anything_but_a_plain_get_goes_to_hyper_whole() {
        for bytes in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx"[..],
            b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nconnection: keep-alive, x-secret\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"\x16\x03\x01\x00",
        ] {
            let (parsed, rest) = head(bytes);
            match parsed {
                Head::Hyper(all) => {
                    assert_eq!(&all[..], bytes, "{:?}", String::from_utf8_lossy(bytes))
                }
                _ => panic!("served here: {:?}", String::from_utf8_lossy(bytes)),
            }
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn connection_keep_alive_is_plain() {
        let (parsed, _) = head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection:  Keep-Alive \r\n\r\n");
        assert!(matches!(parsed, Head::Whole(_)));
    }

    #[test]
    fn a_head_in_parts_waits_and_a_large_one_goes_to_hyper() {
        let (parsed, rest) = head(b"GET / HTTP/1.1\r\nHost: a\r\n");
        assert!(matches!(parsed, Head::Partial));
        assert_eq!(&rest[..], b"GET / HTTP/1.1\r\nHost: a\r\n");

        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: ".to_vec();
        big.resize(MAX_HEAD + 10, b'c');
        let (parsed, _) = head(&big);
        assert!(matches!(parsed, Head::Hyper(all) if all.len() == big.len()));

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(head(&many).0, Head::Hyper(_)));
    }

    /// What reading `bytes` did: a head taken from the front and nothing
    /// else, everything handed on, or nothing taken yet.
    fn taken_whole_or_handed_on_whole(
        bytes: &[u8],
    ) -> Result<Option<Request<RequestBody>>, TestCaseError> {
        let mut buf = BytesMut::from(bytes);
        match read_head(&mut buf, &mut Vec::new()) {
            Head::Whole(request) => {
                let taken = bytes.len() - buf.len();
                prop_assert!(taken <= MAX_HEAD);
                prop_assert!(bytes[..taken].ends_with(b"\n"));
                prop_assert_eq!(&buf[..], &bytes[taken..]);
                prop_assert_eq!(request.method(), Method::GET);
                for asks in [
                    "content-length",
                    "transfer-encoding",
                    "upgrade",
                    "expect",
                    "te",
                ] {
                    prop_assert!(!request.headers().contains_key(asks), "{}", asks);
                }
                // The values were taken unchecked: each must be one a
                // checked `HeaderValue` would hold.
                for value in request.headers().values() {
                    prop_assert!(
                        HeaderValue::from_bytes(value.as_bytes()).is_ok(),
                        "{:?}",
                        value
                    );
                }
                Ok(Some(request))
            }
            Head::Hyper(all) => {
                prop_assert_eq!(&all[..], bytes);
                prop_assert!(buf.is_empty());
                Ok(None)
            }
            Head::Partial => {
                prop_assert_eq!(&buf[..], bytes);
                prop_assert!(bytes.len() < MAX_HEAD);
                Ok(None)
            }
        }
    }

    fn field_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("Host".to_owned()),
            Just("Cookie".to_owned()),
            Just("Accept".to_owned()),
            Just("X-Site".to_owned()),
            Just("Connection".to_owned()),
            Just("Content-Length".to_owned()),
            Just("Transfer-Encoding".to_owned()),
            Just("Upgrade".to_owned()),
            Just("Expect".to_owned()),
            Just("TE".to_owned()),
            Just("HTTP2-Settings".to_owned()),
        ]
        .prop_flat_map(|name| {
            // Each letter upper or lower case, as a client may send it.
            proptest::collection::vec(any::<bool>(), name.len()).prop_map(move |upper| {
                name.chars()
                    .zip(upper)
                    .map(|(c, up)| {
                        if up {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        }
                    })
                    .collect()
            })
        })
    }

    fn field_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("keep-alive".to_owned()),
            Just("Keep-Alive".to_owned()),
            Just("close".to_owned()),
            Just("0".to_owned()),
            Just("chunked".to_owned()),
            Just("a=1; b=2".to_owned()),
            "[ -~]{0,20}",
        ]
    }

    proptest! {
        #[test]
        fn any_bytes_are_taken_whole_or_handed_on_whole(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            taken_whole_or_handed_on_whole(&bytes)?;
        }

        #[test]
        fn any_bytes_in_a_field_value_are_served_only_as_a_valid_value(
            value in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut bytes = b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Site: ".to_vec();
            bytes.extend_from_slice(&value);
            bytes.extend_from_slice(b"\r\n\r\n");
            taken_whole_or_handed_on_whole(&bytes)?;
        }

        #[test]
        fn a_head_is_served_here_only_when_it_is_a_plain_get(
            method in prop_oneof![Just("GET"), Just("HEAD"), Just("POST"), Just("get"), Just("OPTIONS")],
            version in prop_oneof![Just("1.1"), Just("1.0")],
            target in prop_oneof![Just("/"), Just("/daftar?x=1"), Just("*"), Just("http://a.example/b")],
            fields in proptest::collection::vec((field_name(), field_value()), 0..8),
            rest in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut head = format!("{method} {target} HTTP/{version}\r\n");
            for (name, value) in &fields {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let mut bytes = head.clone().into_bytes();
            bytes.extend_from_slice(&rest);
            let plain = method == "GET"
                && version == "1.1"
                && fields.iter().all(|(name, value)| match name.to_ascii_lowercase().as_str() {
                    "connection" => value.trim().eq_ignore_ascii_case("keep-alive"),
                    "content-length" | "transfer-encoding" | "upgrade" | "expect" | "te"
                    | "http2-settings" => false,
                    _ => true,
                });
            let served = taken_whole_or_handed_on_whole(&bytes)?;
            prop_assert_eq!(served.is_some(), plain, "{}", head);
            if let Some(request) = served {
                prop_assert_eq!(request.uri().to_string(), target);
                let seen: Vec<(String, String)> = request
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect();
                let mut sent: Vec<(String, String)> = fields
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let mut seen_sorted = seen.clone();
                seen_sorted.sort();
                sent.sort();
                prop_assert_eq!(seen_sorted, sent);
            }
        }
    }

    #[test]
    fn a_content_length_counts_only_when_it_is_one_number() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_length(&headers), None);
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(content_length(&headers), Some(12));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(content_length(&headers), Some(12));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("13"));
        assert_eq!(content_length(&headers), None);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("+12"));
        assert_eq!(content_length(&headers), None);
    }

    #[test]
    fn the_date_is_an_http_date() {
        let mut out = Vec::new();
        http_date(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
    }
}
