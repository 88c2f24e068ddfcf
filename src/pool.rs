//! Keep-alive HTTP/1.1 connections to the origin, and the exchange of one
//! request and response on them.
//!
//! The exchange runs in the request's own task: the request head is
//! written, the body (if any) streamed while the response head is awaited,
//! and the response body read by whoever polls it, straight from the
//! connection. No task per connection and no channel between the request
//! and its connection; the bytes on the wire are [`crate::wire`]'s.
//!
//! Each worker thread keeps its own stack of idle connections (a shard,
//! found by the thread), so a connection is used on the thread whose
//! runtime it is registered with. A connection goes back on the stack when
//! its response body has been read to the end and nothing follows it; one
//! whose response was cut, upgraded or failed is dropped (and so closed).
//! The most recently used is taken first, so the rest age out: those idle
//! for longer than `pool_idle_seconds` are closed by a sweep, and no more
//! than `pool_max_idle` are kept by each worker.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::HeaderName;
use http::{Method, Request, Response, Uri};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::proxy::{BoxError, OriginConnector, OriginStream};
use crate::wire::{self, Chunked, Decoded, Framing, RequestFraming};

/// Why a request got no response: in connecting (the origin is down), or
/// after (it failed on the way), with the error's description; or no
/// response head within the response timeout.
#[derive(Debug)]
pub enum Failure {
    Connect(String),
    Failed(String),
    TimedOut,
}

/// How much room a connection's reads start with.
const READ_SIZE: usize = 8 * 1024;
/// How far that room grows while reads keep filling it (a large body).
const MAX_READ_SIZE: usize = 64 * 1024;

/// The pool.
pub struct Pool {
    connector: OriginConnector,
    url: Uri,
    shards: Box<[Mutex<Vec<Idle>>]>,
    /// Idle connections kept at most, per shard (per worker thread).
    max_idle: usize,
    idle_timeout: Duration,
    /// How long a request may wait for its response head, connecting
    /// included.
    response_timeout: Duration,
}

struct Idle {
    conn: Conn,
    /// When it went idle, on [`crate::clock::coarse_millis`]: stamped and
    /// checked on every request, and a few milliseconds do not matter to
    /// `pool_idle_seconds`.
    since: u64,
}

/// One connection to the origin, with bytes read from it and not yet used.
pub struct Conn {
    io: OriginStream,
    buf: BytesMut,
    /// Room each read asks for: doubled, up to [`MAX_READ_SIZE`], after a
    /// read that filled it, so a large body takes fewer system calls.
    read_size: usize,
    /// The response timeout of the exchanges on this connection: one timer
    /// that stays with it and is moved on for each request (a later
    /// deadline is one atomic store), where a timer made for every request
    /// is registered with the runtime's wheel and taken out again each
    /// time. Made with the connection's first exchange.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Which shard the current thread uses.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
    }
    SHARD.with(|shard| match shard.get() {
        Some(index) => index,
        None => {
            let index = NEXT.fetch_add(1, Ordering::Relaxed);
            shard.set(Some(index));
            index
        }
    })
}

/// A request with its head written, ready to go: what its exchange keeps
/// of it (the head, not the request's fields map).
pub struct Ready<B> {
    head: Vec<u8>,
    body: B,
    framing: RequestFraming,
    head_request: bool,
    repeatable: bool,
}

impl<B: Body> Ready<B> {
    /// `request` for `target` (in origin form; the request's own URI is not
    /// read), with the fields `added` in place of any of the same name.
    pub fn new(request: Request<B>, target: &str, added: &[(HeaderName, &[u8])]) -> Self {
        let (parts, body) = request.into_parts();
        let framing = if body.is_end_stream() {
            RequestFraming::Empty
        } else {
            match body.size_hint().exact() {
                Some(length) => RequestFraming::Length(length),
                None => RequestFraming::Chunked,
            }
        };
        let mut head = Vec::with_capacity(256 + parts.headers.len() * 48);
        wire::write_request_head(
            &parts.method,
            target,
            &parts.headers,
            added,
            framing,
            &mut head,
        );
        Ready {
            head,
            body,
            framing,
            head_request: parts.method == Method::HEAD,
            repeatable: framing == RequestFraming::Empty && parts.method.is_idempotent(),
        }
    }
}

impl Pool {
    /// A pool for the origin at `url`, reached by `connector`, keeping at
    /// most `max_idle` idle connections a worker thread, each for at most
    /// `idle_timeout`; a request waits at most `response_timeout` for its
    /// response head.
    pub fn new(
        connector: OriginConnector,
        url: Uri,
        max_idle: usize,
        idle_timeout: Duration,
        response_timeout: Duration,
    ) -> Arc<Pool> {
        // The workers, and the runtime that starts them.
        let shards = crate::listener::cores() + 1;
        let pool = Arc::new(Pool {
            connector,
            url,
            shards: (0..shards).map(|_| Mutex::new(Vec::new())).collect(),
            max_idle: max_idle.max(1),
            idle_timeout,
            response_timeout,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep(Arc::downgrade(&pool)));
        }
        pool
    }

    fn shard(&self) -> &Mutex<Vec<Idle>> {
        &self.shards[shard_index() % self.shards.len()]
    }

    /// Sends `request` for `target` (in origin form; the request's own URI
    /// is not read), with the fields `added` in place of any of the same
    /// name: [`Ready::new`], then [`Pool::send_ready`]. The proxy makes the
    /// two steps itself; the tests send this way.
    #[cfg(test)]
    pub fn send<'p, B>(
        self: &'p Arc<Self>,
        request: Request<B>,
        target: &str,
        added: &[(HeaderName, &[u8])],
    ) -> impl std::future::Future<Output = Result<Response<OriginBody>, Failure>> + 'p
    where
        B: Body<Data = Bytes> + Unpin + 'p,
        B::Error: Into<BoxError>,
    {
        self.send_ready(Ready::new(request, target, added))
    }

    /// Sends a request on an idle connection, or a new one, and returns the
    /// response once its head has come, within the response timeout
    /// (connecting included); the body is read from the connection as it
    /// is polled.
    ///
    /// A request without a body and of a method that may be repeated
    /// (RFC 9110 §9.2.2) is sent again once, on a new connection, when a
    /// reused one gave no answer at all: the origin closed it while it was
    /// idle, just as the request went out.
    pub fn send_ready<'p, B>(
        self: &'p Arc<Self>,
        ready: Ready<B>,
    ) -> impl std::future::Future<Output = Result<Response<OriginBody>, Failure>> + 'p
    where
        B: Body<Data = Bytes> + Unpin + 'p,
        B::Error: Into<BoxError>,
    {
        let Ready {
            head,
            mut body,
            framing,
            head_request,
            repeatable,
        } = ready;
        async move {
            let deadline = tokio::time::Instant::now() + self.response_timeout;
            let mut reuse = true;
            loop {
                let (mut conn, reused) = match reuse.then(|| self.take()).flatten() {
                    Some(conn) => (conn, true),
                    // Boxed: connecting is rare, and its state would weigh on
                    // every exchange's.
                    None => match Box::pin(tokio::time::timeout_at(deadline, self.connect())).await
                    {
                        Ok(connected) => (connected.map_err(Failure::Connect)?, false),
                        Err(_) => return Err(Failure::TimedOut),
                    },
                };
                let exchanged =
                    exchange(&mut conn, &head, &mut body, framing, head_request, deadline).await;
                let (response, sent_all) = match exchanged {
                    Ok(done) => done,
                    Err(e) if e.timed_out => return Err(Failure::TimedOut),
                    Err(e) if reused && repeatable && !e.answered => {
                        reuse = false;
                        continue;
                    }
                    Err(e) => return Err(Failure::Failed(e.why)),
                };
                return Ok(self.respond(conn, response, sent_all));
            }
        }
    }

    /// The response, its body to be read from `conn`; the connection back
    /// in the pool at once when the whole body is already here.
    fn respond(
        self: &Arc<Self>,
        mut conn: Conn,
        head: wire::Head,
        sent_all: bool,
    ) -> Response<OriginBody> {
        let keep_alive = head.keep_alive && sent_all;
        let mut body = OriginBody {
            ready: None,
            conn: None,
            state: State::Done,
            back: keep_alive.then(|| self.clone()),
        };
        if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
            body.back = None;
            body.state = State::Tunnel;
            body.conn = Some(conn);
        } else {
            match head.framing {
                Framing::Empty => body.finish(conn),
                Framing::Length(length) if conn.buf.len() as u64 >= length => {
                    // `length` fits in memory: `buf` holds it.
                    body.ready = Some(conn.buf.split_to(length as usize).freeze());
                    body.finish(conn);
                }
                Framing::Length(length) => {
                    body.state = State::Length(length);
                    body.conn = Some(conn);
                }
                Framing::Chunked => {
                    body.state = State::Chunked(Chunked::default());
                    body.conn = Some(conn);
                }
                Framing::UntilClose => {
                    body.back = None;
                    body.state = State::UntilClose;
                    body.conn = Some(conn);
                }
            }
        }
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        *response.headers_mut() = head.headers;
        response
    }

    /// Whether a connection idle since `since` may still be used.
    fn fresh(&self, since: u64) -> bool {
        let idle = crate::clock::coarse_millis().saturating_sub(since);
        u128::from(idle) < self.idle_timeout.as_millis()
    }

    /// The most recently used idle connection still open and fresh.
    fn take(&self) -> Option<Conn> {
        let mut idle = self.shard().lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut entry) = idle.pop() {
            if self.fresh(entry.since) && still_open(&mut entry.conn) {
                return Some(entry.conn);
            }
        }
        None
    }

    fn put(&self, mut conn: Conn) {
        // What a large body made the buffer grow to is not kept idle.
        if conn.buf.capacity() > 2 * READ_SIZE {
            conn.buf = BytesMut::new();
            conn.read_size = READ_SIZE;
        }
        let mut idle = self.shard().lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: crate::clock::coarse_millis(),
            });
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let io = tower_service::Service::call(&mut self.connector.clone(), self.url.clone())
            .await
            .map_err(|e| crate::proxy::error_chain(e.as_ref()))?;
        Ok(Conn {
            io: io.into_inner(),
            buf: BytesMut::new(),
            read_size: READ_SIZE,
            timer: None,
        })
    }

    /// Closes the connections idle for too long, or closed by the origin;
    /// the number closed.
    fn close_stale(&self) -> usize {
        let mut closed = 0;
        for shard in self.shards.iter() {
            let mut idle = shard.lock().unwrap_or_else(|p| p.into_inner());
            let before = idle.len();
            idle.retain_mut(|entry| self.fresh(entry.since) && still_open(&mut entry.conn));
            closed += before - idle.len();
        }
        closed
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// Whether an idle connection is still open with nothing to read: an
/// origin that closed it, or sent something unasked, has ended it.
fn still_open(conn: &mut Conn) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut probe = [0u8; 1];
    let mut probe = ReadBuf::new(&mut probe);
    conn.buf.is_empty()
        && Pin::new(&mut conn.io)
            .poll_read(&mut cx, &mut probe)
            .is_pending()
}

/// Reads what the connection has into its buffer; `Ok(0)` at its end.
fn poll_fill(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
    if conn.buf.capacity() - conn.buf.len() < conn.read_size / 4 {
        conn.buf.reserve(conn.read_size);
    }
    let spare = conn.buf.spare_capacity_mut();
    let room = spare.len();
    let mut read = ReadBuf::uninit(spare);
    match Pin::new(&mut conn.io).poll_read(cx, &mut read) {
        Poll::Ready(Ok(())) => {
            let n = read.filled().len();
            if n == room && conn.read_size < MAX_READ_SIZE {
                conn.read_size *= 2;
            }
            // SAFETY: `poll_read` initialised and filled the first `n`
            // bytes of the spare capacity.
            unsafe { conn.buf.set_len(conn.buf.len() + n) };
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Why an exchange failed, and whether any of a response had come.
struct Unanswered {
    why: String,
    answered: bool,
    /// No response head came by the deadline.
    timed_out: bool,
}

impl Unanswered {
    fn new(why: impl std::fmt::Display, answered: bool) -> Self {
        Unanswered {
            why: why.to_string(),
            answered,
            timed_out: false,
        }
    }
}

/// Writes the request and reads the response head, past any interim
/// (`1xx`) ones, by `deadline`. The body is sent while the head is
/// awaited: an origin may answer (a `413`, a redirect) before it has read
/// all of it. With the head: whether the whole request was sent.
async fn exchange<B>(
    conn: &mut Conn,
    head: &[u8],
    body: &mut B,
    framing: RequestFraming,
    head_request: bool,
    deadline: tokio::time::Instant,
) -> Result<(wire::Head, bool), Unanswered>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut timer = match conn.timer.take() {
        Some(mut timer) => {
            timer.as_mut().reset(deadline);
            timer
        }
        None => Box::pin(tokio::time::sleep_until(deadline)),
    };
    let exchanged = exchange_by(conn, head, body, framing, head_request, timer.as_mut()).await;
    conn.timer = Some(timer);
    exchanged
}

/// [`exchange`], until `timer` runs out.
async fn exchange_by<B>(
    conn: &mut Conn,
    head: &[u8],
    body: &mut B,
    framing: RequestFraming,
    head_request: bool,
    mut timer: Pin<&mut tokio::time::Sleep>,
) -> Result<(wire::Head, bool), Unanswered>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut written = 0;
    // Body bytes on their way: chunk sizes, data, line ends.
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    let mut body_done = framing == RequestFraming::Empty;
    let mut flushed = false;
    // Whether any byte of an answer has come: a reused connection that
    // closes before one did may have lost the request unread.
    let mut answered = false;
    poll_fn(|cx| {
        // Sending, as far as the connection and the client's body allow.
        while !flushed {
            // The head first, then the body's pieces in turn.
            let unsent = if written < head.len() {
                Some(&head[written..])
            } else {
                pending.front().map(|front| &front[..])
            };
            if let Some(unsent) = unsent {
                match Pin::new(&mut conn.io).poll_write(cx, unsent) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(Unanswered::new(
                            "the origin closed the connection",
                            answered,
                        )))
                    }
                    Poll::Ready(Ok(n)) if written < head.len() => written += n,
                    Poll::Ready(Ok(n)) => {
                        if let Some(front) = pending.front_mut() {
                            front.advance(n);
                            if front.is_empty() {
                                pending.pop_front();
                            }
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Unanswered::new(e, answered))),
                    Poll::Pending => break,
                }
            } else if !body_done {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        let Ok(data) = frame.into_data() else {
                            // Trailers are not forwarded.
                            continue;
                        };
                        if data.is_empty() {
                            continue;
                        }
                        if framing == RequestFraming::Chunked {
                            let mut size = Vec::with_capacity(18);
                            wire::write_chunk_size(data.len(), &mut size);
                            pending.push_back(size.into());
                            pending.push_back(data);
                            pending.push_back(Bytes::from_static(b"\r\n"));
                        } else {
                            pending.push_back(data);
                        }
                    }
                    Poll::Ready(None) => {
                        body_done = true;
                        if framing == RequestFraming::Chunked {
                            pending.push_back(Bytes::from_static(b"0\r\n\r\n"));
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        let e: BoxError = e.into();
                        return Poll::Ready(Err(Unanswered::new(
                            format!("the request body failed: {e}"),
                            answered,
                        )));
                    }
                    Poll::Pending => break,
                }
            } else {
                match Pin::new(&mut conn.io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => flushed = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Unanswered::new(e, answered))),
                    Poll::Pending => break,
                }
            }
        }
        // Receiving.
        loop {
            match wire::read_response_head(&mut conn.buf, head_request) {
                Ok(Some(response)) => {
                    if response.status.is_informational()
                        && response.status != http::StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue;
                    }
                    return Poll::Ready(Ok((response, flushed)));
                }
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(Unanswered::new(e, true))),
            }
            match poll_fill(conn, cx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Unanswered::new(
                        "the origin closed the connection before it answered",
                        answered,
                    )))
                }
                Poll::Ready(Ok(_)) => answered = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Unanswered::new(e, answered))),
                // Every wait passes here (sending that must wait goes on
                // to receiving), so the timer is always watched.
                Poll::Pending if timer.as_mut().poll(cx).is_ready() => {
                    let mut late = Unanswered::new("no response head in time", answered);
                    late.timed_out = true;
                    return Poll::Ready(Err(late));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// Closes stale idle connections every little while, until the pool is
/// gone (a reload made a new one).
async fn sweep(pool: Weak<Pool>) {
    let every = match pool.upgrade() {
        Some(pool) => {
            (pool.idle_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(15))
        }
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(pool) => {
                pool.close_stale();
            }
            None => return,
        }
    }
}

// === the response body ===

/// An origin response's body, read from its connection as it is polled;
/// the connection goes back to the pool when the body has been read to the
/// end and nothing else came after it.
pub struct OriginBody {
    /// Bytes of the body read with the head, handed out first.
    ready: Option<Bytes>,
    /// Where the rest comes from; `None` once it has all been read.
    conn: Option<Conn>,
    state: State,
    /// The pool the connection goes back to, when it may carry another
    /// request.
    back: Option<Arc<Pool>>,
}

enum State {
    /// This many bytes still to come.
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    /// A `101`: the connection is the tunnel's, not a body's.
    Tunnel,
    Done,
}

impl OriginBody {
    /// The body is all read: the connection goes back, or is closed.
    fn finish(&mut self, conn: Conn) {
        self.state = State::Done;
        if let Some(pool) = self.back.take() {
            if conn.buf.is_empty() {
                pool.put(conn);
            }
        }
    }

    /// After a `101`, the connection to the origin and what came after the
    /// head: the origin's side of the tunnel.
    pub fn into_tunnel(mut self) -> Option<(OriginStream, Bytes)> {
        match self.state {
            State::Tunnel => self.conn.take().map(|conn| (conn.io, conn.buf.freeze())),
            _ => None,
        }
    }
}

fn cut_short() -> BoxError {
    "the origin closed the connection before the body's end".into()
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(ready) = this.ready.take() {
            return Poll::Ready(Some(Ok(Frame::data(ready))));
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.state {
                State::Length(left) => {
                    if !conn.buf.is_empty() {
                        let take = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.buf.len());
                        let data = conn.buf.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            if let Some(conn) = this.conn.take() {
                                this.finish(conn);
                            }
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Chunked(chunked) => match chunked.decode(&mut conn.buf) {
                    Ok(Some(Decoded::Data(data))) => {
                        return Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Ok(Some(Decoded::End)) => {
                        if let Some(conn) = this.conn.take() {
                            this.finish(conn);
                        }
                        return Poll::Ready(None);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        this.conn = None;
                        this.state = State::Done;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                State::UntilClose => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Tunnel | State::Done => return Poll::Ready(None),
            }
            match poll_fill(conn, cx) {
                Poll::Ready(Ok(0)) => {
                    let until_close = matches!(this.state, State::UntilClose);
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(if until_close {
                        None
                    } else {
                        Some(Err(cut_short()))
                    });
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_none() && matches!(self.state, State::Done | State::Tunnel)
    }

    fn size_hint(&self) -> SizeHint {
        let ready = self.ready.as_ref().map_or(0, |r| r.len() as u64);
        match self.state {
            State::Length(left) => SizeHint::with_exact(ready + left),
            State::Done | State::Tunnel => SizeHint::with_exact(ready),
            _ => {
                let mut hint = SizeHint::new();
                hint.set_lower(ready);
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty, Full};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What a scripted origin does with one request.
    #[derive(Clone)]
    enum Reply {
        /// Writes these bytes, then waits for the next request.
        Send(&'static [u8]),
        /// Writes these bytes and closes.
        SendAndClose(&'static [u8]),
        /// Answers at once, without reading the body, and closes.
        EarlyAndClose(&'static [u8]),
        /// Reads the request and closes without a word.
        Drop,
        /// Reads the request and never answers, the connection kept open.
        Silent,
    }

    /// An origin on a raw socket: the `n`th request on any connection gets
    /// `script(n)`; it counts connections, and keeps each request's bytes.
    async fn origin(
        script: fn(usize) -> Reply,
    ) -> (Uri, Arc<AtomicUsize>, Arc<Mutex<Vec<Vec<u8>>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        // The head, and then a body by its framing.
                        let end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            if !read_more(&mut stream, &mut buf).await {
                                return;
                            }
                        };
                        let n = {
                            let mut all = seen.lock().unwrap();
                            all.push(buf[..end].to_vec());
                            all.len() - 1
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let reply = script(n);
                        if let Reply::EarlyAndClose(bytes) = reply {
                            let _ = stream.write_all(bytes).await;
                            return;
                        }
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        let mut wanted = end + length;
                        if head.contains("transfer-encoding: chunked") {
                            while !buf[end..].windows(5).any(|w| w == b"0\r\n\r\n") {
                                if !read_more(&mut stream, &mut buf).await {
                                    return;
                                }
                            }
                            wanted = buf.len();
                        }
                        while buf.len() < wanted {
                            if !read_more(&mut stream, &mut buf).await {
                                return;
                            }
                        }
                        seen.lock().unwrap()[n] = buf[..wanted].to_vec();
                        buf.drain(..wanted);
                        match reply {
                            Reply::Send(bytes) => {
                                if stream.write_all(bytes).await.is_err() {
                                    return;
                                }
                            }
                            Reply::SendAndClose(bytes) | Reply::EarlyAndClose(bytes) => {
                                let _ = stream.write_all(bytes).await;
                                return;
                            }
                            Reply::Drop => return,
                            Reply::Silent => {
                                let _ = read_more(&mut stream, &mut buf).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        (
            format!("http://{addr}").parse().unwrap(),
            accepted,
            requests,
        )
    }

    /// Reads what comes next onto `buf`; false once the peer is gone.
    async fn read_more(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
        let mut more = [0u8; 4096];
        match stream.read(&mut more).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                buf.extend_from_slice(&more[..n]);
                true
            }
        }
    }

    fn pool_for(url: Uri, max_idle: usize, idle: Duration) -> Arc<Pool> {
        timed_pool_for(url, max_idle, idle, Duration::from_secs(30))
    }

    fn timed_pool_for(url: Uri, max_idle: usize, idle: Duration, respond: Duration) -> Arc<Pool> {
        Pool::new(
            OriginConnector::plain(Duration::from_secs(5)),
            url,
            max_idle,
            idle,
            respond,
        )
    }

    async fn get(pool: &Arc<Pool>) -> Result<(http::StatusCode, Bytes), String> {
        let request = Request::get("/")
            .header("host", "x")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = pool
            .send(request, "/", &[])
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, body.to_bytes()))
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[tokio::test]
    async fn an_origin_that_does_not_answer_in_time_fails_the_request_once() {
        const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        // Answers the first two requests, then none.
        let (url, accepted, _) = origin(|n| {
            if n < 2 {
                Reply::Send(OK)
            } else {
                Reply::Silent
            }
        })
        .await;
        let timeout = Duration::from_millis(300);
        let pool = timed_pool_for(url, 4, Duration::from_secs(30), timeout);
        assert_eq!(get(&pool).await.unwrap().1, "ok");
        // The connection's timer runs out while it is idle; used again, it
        // is set afresh and does not cut the next answer short.
        tokio::time::sleep(timeout * 2).await;
        assert_eq!(get(&pool).await.unwrap().1, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // Silence on the reused connection: a timeout, and the request is
        // not sent again (a slow origin is not asked twice).
        let late = get(&pool).await.unwrap_err();
        assert!(late.contains("TimedOut"), "{late}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // That connection is not reused: the next request opens another.
        let late = get(&pool).await.unwrap_err();
        assert!(late.contains("TimedOut"), "{late}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn idle_connections_are_bounded_and_closed_when_stale() {
        let (url, accepted, _) = origin(|_| Reply::Send(OK)).await;
        let pool = pool_for(url, 2, Duration::from_millis(600));
        // One after another: one connection, reused.
        for _ in 0..3 {
            assert_eq!(get(&pool).await.unwrap().1, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle(), 1);
        // Five at once: the idle one and four new, at most two kept (all
        // on this one thread).
        let (a, b, c, d, e) =
            tokio::join!(get(&pool), get(&pool), get(&pool), get(&pool), get(&pool));
        for result in [a, b, c, d, e] {
            assert_eq!(result.unwrap().1, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
        assert_eq!(pool.idle(), 2);
        // Unused for longer than the idle timeout: closed by the sweep.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn chunked_and_interim_responses_are_read_and_the_connection_kept() {
        const CHUNKED: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
            HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwait\r\n6\r\ning...\r\n0\r\nX-T: 1\r\n\r\n";
        let (url, accepted, _) = origin(|_| Reply::Send(CHUNKED)).await;
        let pool = pool_for(url, 4, Duration::from_secs(30));
        for _ in 0..3 {
            let response = pool
                .send(
                    Request::get("/").body(Empty::<Bytes>::new()).unwrap(),
                    "/",
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert!(
                !response.headers().contains_key("link"),
                "the interim head is not the response's"
            );
            assert_eq!(
                response.into_body().collect().await.unwrap().to_bytes(),
                "waiting..."
            );
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection carried all three"
        );
    }

    #[tokio::test]
    async fn a_body_until_close_is_read_whole_and_its_connection_not_reused() {
        const UNTIL_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\n\r\nevery byte until the end";
        let (url, accepted, _) = origin(|_| Reply::SendAndClose(UNTIL_CLOSE)).await;
        let pool = pool_for(url, 4, Duration::from_secs(30));
        for _ in 0..2 {
            assert_eq!(get(&pool).await.unwrap().1, "every byte until the end");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_and_bytes_after_a_response_end_its_connection() {
        const CUT: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this";
        let (url, _, _) = origin(|_| Reply::SendAndClose(CUT)).await;
        let pool = pool_for(url, 4, Duration::from_secs(30));
        let error = get(&pool).await.unwrap_err();
        assert!(error.contains("before the body's end"), "{error}");

        const TRAILING: &[u8] =
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n";
        let (url, accepted, _) = origin(|_| Reply::Send(TRAILING)).await;
        let pool = pool_for(url, 4, Duration::from_secs(30));
        assert_eq!(get(&pool).await.unwrap().1, "ok");
        assert_eq!(get(&pool).await.unwrap().1, "ok");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "a connection with stray bytes is not reused"
        );
    }

    #[tokio::test]
    async fn a_connection_the_origin_closed_while_idle_is_not_used() {
        // Every connection answers once and closes, as an origin whose
        // keep-alive timeout is shorter than the pool's would.
        let (url, accepted, _) = origin(|_| Reply::SendAndClose(OK)).await;
        let pool = pool_for(url, 4, Duration::from_secs(30));
        for _ in 0..3 {
            assert_eq!(get(&pool).await.unwrap().1, "ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_repeatable_request_is_sent_again_when_a_reused_connection_gives_no_answer() {
        // The second request, on the reused connection, meets an origin
        // that closes it unanswered (as one does when its keep-alive time
        // runs out just then).
        let (url, accepted, requests) =
            origin(|n| if n == 1 { Reply::Drop } else { Reply::Send(OK) }).await;
        let pool = pool_for(url, 4, Duration::from_secs(30));
        assert_eq!(get(&pool).await.unwrap().1, "ok");
        assert_eq!(get(&pool).await.unwrap().1, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(requests.lock().unwrap().len(), 3);

        // A request with a body is not: it may have been acted on.
        let (url, _, requests) =
            origin(|n| if n == 1 { Reply::Drop } else { Reply::Send(OK) }).await;
        let pool = pool_for(url, 4, Duration::from_secs(30));
        assert_eq!(get(&pool).await.unwrap().1, "ok");
        let post = Request::post("/pay")
            .body(Full::new(Bytes::from_static(b"once")))
            .unwrap();
        let Err(Failure::Failed(why)) = pool.send(post, "/pay", &[]).await else {
            panic!("a POST the origin dropped was not a failure")
        };
        assert!(why.contains("closed the connection"), "{why}");
        assert_eq!(requests.lock().unwrap().len(), 2, "sent once");
    }

    #[tokio::test]
    async fn request_bodies_are_framed_by_what_is_known_of_them() {
        let (url, _, requests) = origin(|_| Reply::Send(OK)).await;
        let pool = pool_for(url, 4, Duration::from_secs(30));
        let known = Request::post("/form")
            .body(Full::new(Bytes::from_static(b"name=ana")))
            .unwrap();
        assert_eq!(pool.send(known, "/form", &[]).await.unwrap().status(), 200);
        // A body of unknown length goes in chunks.
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
        let streamed = Channel(receiver);
        let request = Request::post("/upload").body(streamed).unwrap();
        let sending = tokio::spawn(async move {
            for part in ["first ", "second"] {
                sender.send(Bytes::from(part)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let response = pool.send(request, "/upload", &[]).await.unwrap();
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "ok"
        );
        sending.await.unwrap();
        let requests = requests.lock().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&requests[0]),
            "POST /form HTTP/1.1\r\ncontent-length: 8\r\n\r\nname=ana"
        );
        assert_eq!(
            String::from_utf8_lossy(&requests[1]),
            "POST /upload HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst \r\n6\r\nsecond\r\n0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn an_answer_before_the_body_is_sent_is_the_response() {
        const TOO_LARGE: &[u8] = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo much";
        let (url, _, _) = origin(|_| Reply::EarlyAndClose(TOO_LARGE)).await;
        let pool = pool_for(url, 4, Duration::from_secs(30));
        // A body that never ends: the origin's answer still comes through.
        let (_sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
        let endless = Channel(receiver);
        let response = pool
            .send(
                Request::post("/upload").body(endless).unwrap(),
                "/upload",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "too much"
        );
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn a_large_body_arrives_whole_and_its_buffer_is_not_kept_idle() {
        static LARGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        fn large() -> &'static [u8] {
            LARGE.get_or_init(|| {
                let body: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
                let mut response =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                        .into_bytes();
                response.extend_from_slice(&body);
                response
            })
        }
        let (url, accepted, _) = origin(|_| Reply::Send(large())).await;
        let pool = pool_for(url, 4, Duration::from_secs(30));
        for _ in 0..2 {
            let (status, body) = get(&pool).await.unwrap();
            assert_eq!(status, 200);
            assert_eq!(body.len(), 1 << 20);
            assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        let idle = pool.shard().lock().unwrap();
        assert!(
            idle[0].conn.buf.capacity() <= 2 * READ_SIZE,
            "{}",
            idle[0].conn.buf.capacity()
        );
    }

    #[tokio::test]
    async fn a_malformed_response_is_a_failure_naming_what_was_wrong() {
        const TWO_LENGTHS: &[u8] =
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok";
        let (url, _, _) = origin(|_| Reply::Send(TWO_LENGTHS)).await;
        let pool = pool_for(url, 4, Duration::from_secs(30));
        let error = get(&pool).await.unwrap_err();
        assert!(error.contains("Content-Length"), "{error}");
        assert_eq!(pool.idle(), 0);
    }

    /// A request body fed from a channel, of unknown length, ending when
    /// the channel closes.
    struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Channel {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }
}
