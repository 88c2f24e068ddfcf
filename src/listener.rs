//! Connections on both listeners, from accept to close: how many may be
//! open (in all and per client address), the process's open-file limit and
//! what happens when it is reached, and the header and idle timeouts, which
//! antre keeps itself instead of leaving them to hyper.
//!
//! # Timeouts
//!
//! Each connection shares one small [`Activity`] between its socket (which
//! notes reads), its service (which counts requests in flight) and its
//! response bodies (which end the count when they finish or are dropped).
//! From it the driving task computes one deadline and sleeps on one timer:
//!
//! - a request head owed (a fresh connection, or the first byte of the next
//!   head has arrived): `header_read_timeout` from when it began, then the
//!   connection is dropped;
//! - nothing in flight and no head begun: `idle_timeout` from the end of
//!   the last response (for HTTP/2, from the last bytes read), then a
//!   graceful shutdown (a GOAWAY for HTTP/2), dropped a second later if it
//!   has not finished;
//! - a request in flight (a streaming body, an upgrade): no deadline.
//!
//! hyper's own header timeout is turned off: it also runs between
//! keep-alive requests, which would make any idle timeout longer than the
//! header timeout meaningless.
//!
//! # Protocols, and connections that wait outside hyper
//!
//! The first bytes tell HTTP/2's preface from an HTTP/1.1 request. HTTP/2
//! goes to hyper's server. HTTP/1.1 is read by antre's own side first
//! ([`lane`]), which answers plain `GET`s itself and gives the connection
//! to hyper, with every byte read, at the first request that is anything
//! else; hyper gives it back when it next waits. An HTTP/1.1 connection
//! quiet for [`park::QUIET`] (nothing in flight, nothing read) leaves
//! either (hyper closes its side without shutting the socket down), and
//! the socket, with any bytes read but not used, waits in the listener's
//! [`park`] lot until its client speaks again or its idle timeout passes.
//! A quiet HTTP/2 connection leaves hyper with what [`frames`] kept of its
//! state.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::clock;
use crate::frames::{Frames, Plan, Resume, PREFACE};
use crate::park::{self, Lot, Parked, Socket};
use crate::stream::MaybeTls;

use crate::config::{AdminConfig, Listen};
use crate::forwarded::Cidr;
use crate::metrics::Metrics;
use crate::proxy::Body;

mod lane;

pub use lane::RequestBody;

/// Longest wait for in-flight requests once shutdown starts.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Open files kept back from visitor connections: the store (Redis
/// connections or the state file and its journal), the admin listener's
/// connections, logs, and room to spare. On a low limit, half of it.
pub const RESERVED_FILES: u64 = 256;

/// Default `listen.max_connections_per_address`. Generous, because mobile
/// carriers put many phones behind one address (carrier-grade NAT), and a
/// queue opening at 09:00 brings them all at once.
pub const DEFAULT_PER_ADDRESS: usize = 512;

/// Default `admin.max_connections`: operators and a few scrapers.
pub const DEFAULT_ADMIN_CONNECTIONS: usize = 256;

/// Default `admin.max_connections_per_address`.
pub const DEFAULT_ADMIN_PER_ADDRESS: usize = 64;

/// After an idle connection is asked to shut down gracefully, how long it
/// has to finish before it is dropped.
const GOODBYE_GRACE: Duration = Duration::from_secs(1);

/// The receive window of an HTTP/2 connection (hyper's default); larger
/// than the 65,535 bytes every connection opens with, so a connection's
/// first frames always include the update that raises it.
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;

/// At most one log line per listener and reason this often, however many
/// connections are refused.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Backoff when accepting fails even with the spare descriptor released.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

// === open files ===

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard
/// limit, as far as the system allows, and returns it before and after.
/// Each connection is a file: the usual soft limit of 1,024 would cap
/// antre far below what the machine can hold.
pub fn raise_open_file_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    // An unlimited hard limit is still bounded by the kernel (`nr_open`,
    // 1,048,576 by default): try the hard limit, then that.
    for wanted in [limit.rlim_max, 1 << 20] {
        if wanted <= before {
            break;
        }
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok((before, wanted));
        }
    }
    Ok((before, before))
}

/// The soft limit on open files now.
pub fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur
}

/// Default `listen.max_connections` under an open-file limit of
/// `open_files`: what is left after [`RESERVED_FILES`], halved, because
/// each admitted request in flight also holds a connection to the origin.
/// At least 1.
pub fn default_max_connections(open_files: u64) -> usize {
    let reserve = RESERVED_FILES.min(open_files / 2);
    usize::try_from(open_files.saturating_sub(reserve) / 2)
        .unwrap_or(usize::MAX)
        .max(1)
}

// === limits ===

/// Which listener, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Visitor,
    Admin,
}

impl Side {
    /// The largest request head a connection may send (`431` beyond it),
    /// and so what a half-sent head can hold in memory. A visitor's head
    /// holds the site's own cookies too; an operator's is small.
    pub fn max_head(self) -> usize {
        match self {
            Side::Visitor => 64 * 1024,
            Side::Admin => 16 * 1024,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Side::Visitor => "visitor",
            Side::Admin => "admin",
        }
    }
}

/// How one listener treats connections. Read again for each connection,
/// so a reload applies to connections opened after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; past it a new one gets `503`.
    pub max_connections: usize,
    /// Connections open at once from one client address; past it `429`.
    pub max_connections_per_address: usize,
    /// Time to send a whole request head, from its first byte (from the
    /// connection's opening for the first request).
    pub header_read_timeout: Duration,
    /// Time a connection with nothing in flight is kept.
    pub idle_timeout: Duration,
    /// Addresses the per-address cap does not apply to: the trusted
    /// proxies in front of antre, whose one address carries everyone.
    pub exempt: Vec<Cidr>,
}

impl Limits {
    /// The visitor listener's, with caps not configured derived from an
    /// open-file limit of `open_files`.
    pub fn visitor(listen: &Listen, open_files: u64) -> Limits {
        Limits {
            max_connections: listen
                .max_connections
                .unwrap_or_else(|| default_max_connections(open_files)),
            max_connections_per_address: listen.max_connections_per_address,
            header_read_timeout: listen.header_read_timeout,
            idle_timeout: listen.idle_timeout,
            exempt: listen.trusted_proxies.clone(),
        }
    }

    pub fn admin(admin: &AdminConfig) -> Limits {
        Limits {
            max_connections: admin.max_connections,
            max_connections_per_address: admin.max_connections_per_address,
            header_read_timeout: admin.header_read_timeout,
            idle_timeout: admin.idle_timeout,
            exempt: Vec::new(),
        }
    }
}

// === workers ===

/// How many worker threads serve visitors: one per core this process may
/// run on (its CPU affinity counts).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The runtimes that serve a listener's connections: each connection is
/// served on one of them from accept to close, so its requests, its
/// origin calls and their wake-ups stay on one thread. With none, they are
/// served on the runtime that accepts.
#[derive(Default)]
pub struct Workers {
    runtimes: Vec<tokio::runtime::Handle>,
    next: AtomicUsize,
}

impl Workers {
    pub fn new(runtimes: Vec<tokio::runtime::Handle>) -> Workers {
        Workers {
            runtimes,
            next: AtomicUsize::new(0),
        }
    }

    fn pick(&self) -> Option<&tokio::runtime::Handle> {
        if self.runtimes.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.runtimes.get(n % self.runtimes.len())
    }

    fn spawn<T>(&self, task: T)
    where
        T: Future<Output = ()> + Send + 'static,
    {
        match self.pick() {
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// Serves `stream` with `serve` on the next worker, the socket moved to
    /// that worker's own reactor.
    fn spawn_connection<S, T>(&self, stream: TcpStream, serve: S)
    where
        S: FnOnce(TcpStream) -> T + Send + 'static,
        T: Future<Output = ()> + Send + 'static,
    {
        let Some(runtime) = self.pick() else {
            tokio::spawn(serve(stream));
            return;
        };
        let Ok(socket) = stream.into_std() else {
            return;
        };
        runtime.spawn(async move {
            if let Ok(stream) = TcpStream::from_std(socket) {
                serve(stream).await;
            }
        });
    }
}

// === accepting ===

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `max_connections` reached.
    Total,
    /// `max_connections_per_address` reached for the client's address.
    PerAddress,
    /// The process is out of file descriptors: counted as `total`, the
    /// cap the system imposed.
    OutOfFiles,
}

impl Refusal {
    const ALL: [Refusal; 3] = [Refusal::Total, Refusal::PerAddress, Refusal::OutOfFiles];

    fn label(self) -> &'static str {
        match self {
            Refusal::Total | Refusal::OutOfFiles => "total",
            Refusal::PerAddress => "per_address",
        }
    }

    /// Written whole, without waiting, on a socket just accepted: a few
    /// hundred bytes always fit its empty send buffer.
    fn answer(self) -> &'static [u8] {
        match self {
            Refusal::Total | Refusal::OutOfFiles => BUSY,
            Refusal::PerAddress => TOO_MANY_FROM_ADDRESS,
        }
    }

    fn why(self) -> &'static str {
        match self {
            Refusal::Total => "the connection cap (max_connections) is reached",
            Refusal::PerAddress => "a client address reached its cap (max_connections_per_address)",
            Refusal::OutOfFiles => "the process is out of file descriptors",
        }
    }
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 5\r\n\
Connection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 66\r\n\
\r\n\
Server sibuk, coba lagi sebentar. Server busy, try again shortly.\n";

const TOO_MANY_FROM_ADDRESS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
Retry-After: 5\r\n\
Connection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 82\r\n\
\r\n\
Terlalu banyak sambungan dari alamat ini. Too many connections from this address.\n";

/// Open connections of one listener, in all and per client address.
struct Counts {
    total: AtomicUsize,
    /// Only addresses with a connection open: an entry is removed when its
    /// count drops to 0, so the map never outgrows the connections. A std
    /// `Mutex`: nothing is awaited while it is held.
    per_address: Mutex<HashMap<IpAddr, usize>>,
    open: IntGauge,
}

impl Counts {
    /// The counts of a new listener on `side`.
    fn new(side: Side, metrics: &Metrics) -> Arc<Counts> {
        Arc::new(Counts {
            total: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            open: metrics.connections_open.with_label_values(&[side.label()]),
        })
    }

    /// Takes a place for a connection from `ip`, or says why not.
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Result<Slot, Refusal> {
        // Only the accept loop adds, so the check and the add cannot race
        // each other; closes only make room.
        if self.total.load(Ordering::Acquire) >= limits.max_connections {
            return Err(Refusal::Total);
        }
        let counted = !limits.exempt.iter().any(|block| block.contains(ip));
        if counted {
            let mut map = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
            let count = map.entry(ip).or_insert(0);
            if *count >= limits.max_connections_per_address {
                if *count == 0 {
                    map.remove(&ip);
                }
                return Err(Refusal::PerAddress);
            }
            *count += 1;
        }
        self.total.fetch_add(1, Ordering::AcqRel);
        self.open.inc();
        Ok(Slot {
            counts: self.clone(),
            ip,
            counted,
        })
    }
}

/// One connection's place in its listener's [`Counts`], given back when
/// the socket closes: it lives in the connection's [`Activity`], which the
/// socket holds even after an upgrade has taken it out of hyper.
struct Slot {
    counts: Arc<Counts>,
    ip: IpAddr,
    /// Whether it holds a place in the per-address count.
    counted: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.counted {
            let mut map = self
                .counts
                .per_address
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(count) = map.get_mut(&self.ip) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&self.ip);
                }
            }
        }
        self.counts.total.fetch_sub(1, Ordering::AcqRel);
        self.counts.open.dec();
    }
}

/// Refusals of one kind since they were last logged.
struct Tally {
    refusal: Refusal,
    counter: IntCounter,
    unreported: u64,
    last_report: Option<Instant>,
}

impl Tally {
    fn note(&mut self, side: Side) {
        self.counter.inc();
        self.unreported += 1;
        let now = Instant::now();
        if self
            .last_report
            .is_some_and(|at| now.duration_since(at) < REPORT_EVERY)
        {
            return;
        }
        tracing::warn!(
            listener = side.label(),
            refused = self.unreported,
            "refused {} connection(s) since the last report: {}",
            self.unreported,
            self.refusal.why()
        );
        self.unreported = 0;
        self.last_report = Some(now);
    }
}

/// Serves connections from `listener` until `shutdown` flips, each
/// request answered by `handler` (given the client's address); then asks
/// every connection to finish and waits up to [`DRAIN_GRACE`] for them.
/// `limits` is read for each new connection. Connections are served by
/// `workers`, each on one of them from accept to close.
#[allow(clippy::too_many_arguments)]
pub async fn serve<H, F>(
    side: Side,
    listener: TcpListener,
    workers: Workers,
    tls: Option<TlsAcceptor>,
    limits: impl Fn() -> Limits + Send + Sync + 'static,
    metrics: Arc<Metrics>,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<RequestBody>, Peer) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let counts = Counts::new(side, &metrics);
    let workers = Arc::new(workers);
    let mut tallies = Refusal::ALL.map(|refusal| Tally {
        refusal,
        counter: metrics
            .connections_refused
            .with_label_values(&[side.label(), refusal.label()]),
        unreported: 0,
        last_report: None,
    });
    let mut tally = |refusal: Refusal| {
        if let Some(t) = tallies.iter_mut().find(|t| t.refusal == refusal) {
            t.note(side);
        }
    };
    let mut h1 = http1::Builder::new();
    // Off: the timeouts are kept by `drive`, see the module's comment.
    h1.header_read_timeout(None)
        .max_buf_size(side.max_head())
        .max_header_size(side.max_head());
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(side.max_head() as u32)
        // No header table for the client to fill: a connection that waits
        // outside hyper comes back to a fresh one (see `frames`).
        .header_table_size(0)
        // Said here, not left to hyper's default: a connection coming back
        // drops the window update this opens with (see `frames`).
        .initial_connection_window_size(H2_CONNECTION_WINDOW);
    // One clone per connection task: the count of tasks still running.
    let running = Arc::new(());
    let shared = Arc::new(Shared {
        handler,
        h1,
        h2,
        limits: Box::new(limits),
        lot: std::sync::OnceLock::new(),
        shutdown: shutdown.clone(),
    });
    let lot = {
        let shared = shared.clone();
        let running = running.clone();
        let workers = workers.clone();
        Lot::open(
            move |parked| {
                workers.spawn(resumed(shared.clone(), parked, running.clone()));
            },
            shutdown.clone(),
        )
    };
    if let Some(lot) = lot {
        let _ = shared.lot.set(lot);
    }
    // Kept open so that, out of descriptors, one can be freed to accept a
    // waiting client and tell it to come back, instead of leaving it
    // hanging in the backlog.
    let mut spare = spare_descriptor();

    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(e) if out_of_descriptors(&e) => {
                drop(spare.take());
                match accept_now(&listener).await {
                    Some(Ok((stream, _))) => refuse(stream, Refusal::OutOfFiles),
                    _ => tokio::time::sleep(ACCEPT_BACKOFF).await,
                }
                spare = spare_descriptor();
                tally(Refusal::OutOfFiles);
                continue;
            }
            Err(e) => {
                // A client gone before it was accepted, and the like.
                tracing::debug!(listener = side.label(), error = %e, "accept failed");
                continue;
            }
        };
        let limits = (shared.limits)();
        let slot = match counts.admit(addr.ip().to_canonical(), &limits) {
            Ok(slot) => slot,
            Err(refusal) => {
                refuse(stream, refusal);
                tally(refusal);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (shared, tls, running) = (shared.clone(), tls.clone(), running.clone());
        let activity = Activity::new(slot);
        workers.spawn_connection(stream, move |stream| {
            connection(stream, shared, tls, addr, activity, limits, running)
        });
    }

    let deadline = Instant::now() + DRAIN_GRACE;
    while Arc::strong_count(&running) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

fn spare_descriptor() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// One accept attempt that does not wait: `None` when nobody is waiting.
async fn accept_now(listener: &TcpListener) -> Option<std::io::Result<(TcpStream, SocketAddr)>> {
    poll_fn(|cx| match listener.poll_accept(cx) {
        Poll::Ready(result) => Poll::Ready(Some(result)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Answers a connection that gets no place and closes it, all without
/// waiting.
fn refuse(stream: TcpStream, refusal: Refusal) {
    // Out of the runtime's hands, so the write is tried at once rather
    // than after the runtime has seen the socket writable.
    let Ok(stream) = stream.into_std() else {
        return;
    };
    let mut stream = &stream;
    let _ = stream.write(refusal.answer());
    let _ = stream.shutdown(Shutdown::Write);
    // Whatever the client sent already is read, so the close is a plain
    // FIN rather than a reset that could discard the answer on its side.
    let mut sink = [0u8; 2048];
    for _ in 0..4 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

// === one connection ===

/// No time recorded.
const NEVER: u64 = u64::MAX;

/// What one connection is doing, shared by its socket, its service, its
/// response bodies and the task that drives it. Atomics, because HTTP/2
/// streams run on other tasks. Times are milliseconds since `opened`.
struct Activity {
    opened: Instant,
    /// `opened` on [`clock::coarse_millis`], which the stamps below are
    /// read from (a request stamps two: cheaper than `Instant::now`, and
    /// a few milliseconds do not matter to deadlines of seconds).
    opened_millis: u64,
    /// Requests whose response (body included) has not finished.
    in_flight: AtomicU32,
    /// When the first byte of a request head not yet complete arrived, or
    /// [`NEVER`]. A new connection owes its first head from the start.
    head_since: AtomicU64,
    /// When the connection last had nothing in flight and nothing begun:
    /// the end of the last response, or for HTTP/2 the last bytes read.
    idle_since: AtomicU64,
    http2: AtomicBool,
    /// Set when hyper is asked to let go of a quiet connection: its
    /// socket is then kept open, not shut down.
    parking: AtomicBool,
    /// The driving task, when its timer fired while a request was in
    /// flight: woken when the last one finishes so it can set the idle
    /// deadline. A std `Mutex`: held only to swap the waker.
    waiter: Mutex<Option<Waker>>,
    /// Whether `waiter` holds a waker, so finishing a request takes the
    /// lock only when someone waits.
    waiting: AtomicBool,
    _slot: Slot,
}

/// What the connection's next deadline is for.
enum Due {
    /// A request head was begun and not finished: drop the connection.
    Head(Instant),
    /// Nothing in flight: close gracefully.
    Idle(Instant),
    /// Nothing in flight for a moment: take it out of hyper to wait.
    Quiet(Instant),
    /// A request is in flight: no deadline.
    Never,
}

impl Activity {
    fn new(slot: Slot) -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            opened_millis: clock::coarse_millis(),
            in_flight: AtomicU32::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            parking: AtomicBool::new(false),
            waiter: Mutex::new(None),
            waiting: AtomicBool::new(false),
            _slot: slot,
        })
    }

    fn now(&self) -> u64 {
        clock::coarse_millis().saturating_sub(self.opened_millis)
    }

    fn at(&self, millis: u64) -> Instant {
        self.opened + Duration::from_millis(millis)
    }

    /// The next deadline; `quiet`, for a connection that may wait outside
    /// hyper, how long it may be idle before it does.
    fn due(&self, limits: &Limits, quiet: Option<Duration>) -> Due {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Due::Never;
        }
        let head = self.head_since.load(Ordering::Acquire);
        if head != NEVER {
            return Due::Head(self.at(head) + limits.header_read_timeout);
        }
        let idle = self.at(self.idle_since.load(Ordering::Acquire));
        match quiet {
            Some(quiet) if quiet < limits.idle_timeout => Due::Quiet(idle + quiet),
            _ => Due::Idle(idle + limits.idle_timeout),
        }
    }

    /// When the connection is closed if nothing more comes.
    fn idle_until(&self, limits: &Limits) -> Instant {
        self.at(self.idle_since.load(Ordering::Acquire)) + limits.idle_timeout
    }

    /// Bytes arrived.
    fn read(&self) {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return;
        }
        let now = self.now();
        if self.http2.load(Ordering::Relaxed) {
            // Frames with no stream open (pings, settings) keep an HTTP/2
            // connection alive; a stream's own head ends that at once.
            self.idle_since.store(now, Ordering::Release);
        } else {
            let _ =
                self.head_since
                    .compare_exchange(NEVER, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// The HTTP/2 preface is in: from now on reads are activity, not heads.
    fn http2_began(&self) {
        self.http2.store(true, Ordering::Relaxed);
        self.idle_since.store(self.now(), Ordering::Release);
        self.head_since.store(NEVER, Ordering::Release);
    }

    /// A whole request head arrived and goes to the service.
    fn request_began(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NEVER, Ordering::Release);
        InFlight(self.clone())
    }

    /// Registers `waker` to hear when the last request in flight finishes;
    /// false when none is in flight any more.
    fn wait_while_in_flight(&self, waker: &Waker) -> bool {
        {
            let mut waiter = self.waiter.lock().unwrap_or_else(|p| p.into_inner());
            if !waiter.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *waiter = Some(waker.clone());
            }
            self.waiting.store(true, Ordering::SeqCst);
        }
        // Checked after registering, so a finish in between is not missed
        // (sequentially consistent with the finish's decrement and swap).
        self.in_flight.load(Ordering::SeqCst) > 0
    }
}

/// One request in flight; dropped when its response body finishes or is
/// dropped (or its handler is, when the client goes away first).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            activity.idle_since.store(activity.now(), Ordering::Release);
            if activity.waiting.swap(false, Ordering::SeqCst) {
                let waiter = activity
                    .waiter
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                if let Some(waker) = waiter {
                    waker.wake();
                }
            }
        }
    }
}

/// A response body that ends its request's [`InFlight`] when it ends.
struct Tracked {
    body: Body,
    in_flight: Option<InFlight>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = crate::proxy::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let poll = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(poll, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.in_flight = None;
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's other end: where it came from, and whether over TLS.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// A connection's byte stream: plain, or TLS ended here.
type Stream = MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>;

/// The socket, noting reads in the connection's [`Activity`].
struct Io {
    inner: Stream,
    activity: Arc<Activity>,
    /// Bytes read before hyper took the connection (the protocol sniffed,
    /// or what hyper had read and not used before the connection waited
    /// outside it): given to hyper first.
    prefix: Bytes,
}

impl AsyncRead for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        poll
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.activity.parking.load(Ordering::Acquire) {
            // hyper let go of a quiet connection: the socket stays open.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What a connection waiting in the lot keeps besides its socket.
struct Kept {
    /// Its place in the connection counts.
    slot: Slot,
    /// For HTTP/2, what it needs to come back to a fresh hyper connection.
    /// Held here, not boxed: what a crowd of parked connections allocates
    /// one by one lands among the pages their hyper state freed, and keeps
    /// those pages from going back to the system.
    http2: Option<Resume>,
}

impl park::Farewell for Kept {
    fn farewell(&self) -> Option<Vec<u8>> {
        self.http2.as_ref().map(|resume| resume.farewell().to_vec())
    }
}

/// What every connection of one listener shares.
struct Shared<H> {
    handler: H,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    /// The limits of the config current now.
    limits: Box<dyn Fn() -> Limits + Send + Sync>,
    /// Where quiet HTTP/1.1 connections wait; unset when the system has no
    /// epoll set to give.
    lot: std::sync::OnceLock<Lot<Kept>>,
    shutdown: watch::Receiver<bool>,
}

/// Serves one new connection until it ends, a deadline passes, shutdown,
/// or it waits in the lot. Takes the socket (already on the runtime it is
/// served on) first, the rest is ready beforehand.
async fn connection<H, F>(
    stream: TcpStream,
    shared: Arc<Shared<H>>,
    tls: Option<TlsAcceptor>,
    addr: SocketAddr,
    activity: Arc<Activity>,
    limits: Limits,
    _running: Arc<()>,
) where
    H: Fn(Request<RequestBody>, Peer) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    // The handshake and the protocol's first bytes are part of the head:
    // they too must come within the header timeout, so a client that
    // never finishes them holds nothing for long.
    let deadline = activity.opened + limits.header_read_timeout;
    let mut inner = match tls {
        None => MaybeTls::Plain(stream),
        Some(acceptor) => {
            let handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(stream)) => MaybeTls::Tls(Box::new(stream)),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, peer = %addr, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake not finished in time");
                    return;
                }
            }
        }
    };
    let peer = Peer {
        addr,
        tls: inner.is_tls(),
    };
    let mut shutdown = shared.shutdown.clone();
    let sniffed = tokio::select! {
        sniffed = tokio::time::timeout_at(deadline, sniff(&mut inner, &activity)) => sniffed,
        _ = shutdown.wait_for(|stop| *stop) => return,
    };
    match sniffed {
        Ok(Some((Protocol::Http2, prefix))) => {
            activity.http2_began();
            http2(shared, inner, peer, activity, limits, prefix, Frames::new()).await;
        }
        Ok(Some((Protocol::Http1, prefix))) => {
            http1(shared, inner, peer, activity, limits, prefix).await;
        }
        Ok(None) => {}
        Err(_) => tracing::debug!(peer = %addr, "no request begun in time"),
    }
}

/// A connection back from the lot: its client spoke again (or closed).
async fn resumed<H, F>(shared: Arc<Shared<H>>, parked: Parked<Kept>, _running: Arc<()>)
where
    H: Fn(Request<RequestBody>, Peer) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let inner = match parked.socket {
        Socket::Plain(socket) => match TcpStream::from_std(socket) {
            Ok(stream) => MaybeTls::Plain(stream),
            Err(e) => {
                tracing::debug!(error = %e, peer = %parked.addr, "cannot take a connection back");
                return;
            }
        },
        Socket::Tls(stream) => MaybeTls::Tls(stream),
    };
    let peer = Peer {
        addr: parked.addr,
        tls: inner.is_tls(),
    };
    let limits = (shared.limits)();
    let Kept {
        slot,
        http2: resume,
    } = parked.slot;
    let activity = Activity::new(slot);
    match resume {
        None => http1(shared, inner, peer, activity, limits, parked.leftover).await,
        Some(resume) => {
            activity.http2_began();
            let mut prefix = resume.preface();
            prefix.extend_from_slice(&parked.leftover);
            let frames = Frames::resumed(&resume);
            http2(shared, inner, peer, activity, limits, prefix.into(), frames).await;
        }
    }
}

enum Protocol {
    Http1,
    Http2,
}

/// Reads until the first bytes tell HTTP/2's preface from an HTTP/1.1
/// request; `None` when the client closed first. The bytes read are
/// returned, to be given to hyper first.
async fn sniff(inner: &mut Stream, activity: &Activity) -> Option<(Protocol, Bytes)> {
    let mut seen = [0u8; PREFACE.len()];
    let mut len = 0;
    loop {
        let n = inner.read(&mut seen[len..]).await.ok()?;
        if n == 0 {
            return None;
        }
        activity.read();
        len += n;
        if seen[..len] != PREFACE[..len] {
            return Some((Protocol::Http1, Bytes::copy_from_slice(&seen[..len])));
        }
        if len == PREFACE.len() {
            return Some((Protocol::Http2, Bytes::copy_from_slice(&seen)));
        }
    }
}

/// The service answering a connection's requests, each counted in flight
/// until its response ends.
fn service<H, F>(
    shared: &Arc<Shared<H>>,
    activity: &Arc<Activity>,
    peer: Peer,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Tracked>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Tracked>, Infallible>> + Send,
> + Clone
       + Send
       + Unpin
where
    H: Fn(Request<RequestBody>, Peer) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let serving = activity.clone();
    let shared = shared.clone();
    service_fn(move |request: Request<Incoming>| {
        let in_flight = serving.request_began();
        let request = request.map(RequestBody::Hyper);
        // The handler's future is made inside this one, in place: made
        // outside, its whole (large) state would be copied in once more.
        let shared = shared.clone();
        async move {
            let response = (shared.handler)(request, peer).await;
            Ok::<_, Infallible>(response.map(|body| Tracked {
                body,
                in_flight: Some(in_flight),
            }))
        }
    })
}

/// Serves HTTP/1.1 on a connection: plain requests in [`lane`], anything
/// else in hyper; once it has been quiet for [`park::QUIET`], it waits in
/// the lot.
async fn http1<H, F>(
    shared: Arc<Shared<H>>,
    mut inner: Stream,
    peer: Peer,
    mut activity: Arc<Activity>,
    limits: Limits,
    mut prefix: Bytes,
) where
    H: Fn(Request<RequestBody>, Peer) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut quiet = shared.lot.get().map(|_| park::QUIET);
    'connection: loop {
        'serve: {
            // antre's own side first, for as long as the requests are plain.
            let stop = AtomicBool::new(false);
            let mut buf = BytesMut::with_capacity(lane::READ_GROW.max(prefix.len()));
            buf.extend_from_slice(&prefix);
            // Boxed, as hyper's connection is below: a connection's task
            // stays small while it has not yet sent a request.
            let mut lane = Box::pin(lane::serve(
                &mut inner,
                &mut buf,
                &stop,
                &activity,
                peer,
                &shared.handler,
            ));
            let ended = drive(
                lane.as_mut(),
                |_| stop.store(true, Ordering::Release),
                || Leave::Goodbye,
                &activity,
                &limits,
                quiet,
                shared.shutdown.clone(),
            )
            .await;
            drop(lane);
            activity.parking.store(false, Ordering::Release);
            match ended {
                Ended::Finished(lane::Exit::Hyper(bytes))
                | Ended::Quiet(Some(lane::Exit::Hyper(bytes))) => prefix = bytes,
                Ended::Finished(lane::Exit::Done) => return,
                Ended::Closed(error) => return ended_with(error, peer),
                Ended::Quiet(_) if buf.is_empty() => break 'serve,
                // Bytes came with the goodbye: they are served, not parked.
                Ended::Quiet(_) => prefix = buf.split().freeze(),
            }
            drop(buf);

            let io = Io {
                inner,
                activity: activity.clone(),
                prefix,
            };
            let service = service(&shared, &activity, peer);
            // Boxed: the task keeps only a pointer while the connection waits.
            let mut connection = Box::new(
                shared
                    .h1
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades(),
            );
            let ended = drive(
                Pin::new(&mut *connection),
                |c| c.graceful_shutdown(),
                || Leave::Goodbye,
                &activity,
                &limits,
                quiet,
                shared.shutdown.clone(),
            )
            .await;
            if !went_quiet(ended, peer) {
                return;
            }
            let Some(parts) = connection.into_parts() else {
                return;
            };
            drop(parts.service);
            let io = parts.io.into_inner();
            inner = io.inner;
            drop(io.activity);
            prefix = parts.read_buf;
            activity.parking.store(false, Ordering::Release);
            // Bytes of a next request already in: no waiting, serve them.
            if !prefix.is_empty() {
                continue 'connection;
            }
        }
        // Quiet, with nothing read: to the lot.
        let idle_until = activity.idle_until(&limits);
        match Arc::try_unwrap(activity) {
            Ok(activity) => {
                let kept = Kept {
                    slot: activity._slot,
                    http2: None,
                };
                park_in(&shared, inner, peer, idle_until, kept);
                return;
            }
            // A response body outlived its connection: the connection stays
            // out of the lot.
            Err(still_shared) => {
                activity = still_shared;
                quiet = None;
                prefix = Bytes::new();
            }
        }
    }
}

/// Serves HTTP/2 on a connection; once it has been quiet for
/// [`park::QUIET`] and is between frames (see [`Frames::may_leave`]),
/// hyper's connection is dropped and the socket waits in the lot, to come
/// back to a fresh one.
async fn http2<H, F>(
    shared: Arc<Shared<H>>,
    mut inner: Stream,
    peer: Peer,
    mut activity: Arc<Activity>,
    limits: Limits,
    mut prefix: Bytes,
    mut frames: Frames,
) where
    H: Fn(Request<RequestBody>, Peer) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut quiet = shared.lot.get().map(|_| park::QUIET);
    loop {
        let watch = Arc::new(Mutex::new(Watch {
            frames,
            socket: None,
        }));
        let io = H2Io {
            inner: Some(inner),
            activity: activity.clone(),
            prefix,
            watch: watch.clone(),
        };
        let service = service(&shared, &activity, peer);
        let mut connection = Box::pin(shared.h2.serve_connection(TokioIo::new(io), service));
        let ended = drive(
            connection.as_mut(),
            |c| c.graceful_shutdown(),
            || match lock(&watch).frames.may_leave() {
                true => Leave::Now,
                false => Leave::NotYet,
            },
            &activity,
            &limits,
            quiet,
            shared.shutdown.clone(),
        )
        .await;
        if !went_quiet(ended, peer) {
            return;
        }
        // hyper's state goes; the socket comes back (see `H2Io`'s drop).
        drop(connection);
        let (socket, resume) = {
            let mut watch = lock(&watch);
            (watch.socket.take(), watch.frames.resume())
        };
        activity.parking.store(false, Ordering::Release);
        let Some(socket) = socket else {
            return;
        };
        let idle_until = activity.idle_until(&limits);
        let slot = match Arc::try_unwrap(activity) {
            Ok(activity) => activity._slot,
            Err(still_shared) => {
                // Something of the connection is still about: straight
                // back to a fresh hyper connection, and it stays there.
                activity = still_shared;
                inner = socket;
                prefix = resume.preface().into();
                frames = Frames::resumed(&resume);
                quiet = None;
                continue;
            }
        };
        let kept = Kept {
            slot,
            http2: Some(resume),
        };
        park_in(&shared, socket, peer, idle_until, kept);
        return;
    }
}

/// Hands a quiet connection's socket to the lot, to wait there until its
/// client speaks again or `idle_until`.
fn park_in<H>(shared: &Shared<H>, stream: Stream, peer: Peer, idle_until: Instant, kept: Kept) {
    let socket = match stream {
        MaybeTls::Plain(stream) => match stream.into_std() {
            Ok(socket) => Socket::Plain(socket),
            Err(_) => return,
        },
        MaybeTls::Tls(stream) => Socket::Tls(stream),
    };
    let parked = Parked {
        socket,
        addr: peer.addr,
        leftover: Bytes::new(),
        idle_until,
        slot: kept,
    };
    if let Some(lot) = shared.lot.get() {
        // Refused only when shutting down: then it just closes.
        let _ = lot.park(parked);
    }
}

/// What an HTTP/2 connection's driving task shares with its socket.
struct Watch {
    frames: Frames,
    /// The socket, once hyper has dropped a quiet connection.
    socket: Option<Stream>,
}

fn lock(watch: &Mutex<Watch>) -> std::sync::MutexGuard<'_, Watch> {
    watch.lock().unwrap_or_else(|p| p.into_inner())
}

/// An HTTP/2 connection's socket: reads noted in its [`Activity`], frames
/// followed both ways (see [`Frames`]), and the socket handed back when
/// hyper drops a connection leaving to wait outside it.
struct H2Io {
    /// Always there until dropped.
    inner: Option<Stream>,
    activity: Arc<Activity>,
    /// Bytes to give hyper before the socket's: the preface sniffed, or
    /// the one made for a connection coming back.
    prefix: Bytes,
    /// A std `Mutex`: held only within a read or write, never across an
    /// await; the driving task looks at it between polls.
    watch: Arc<Mutex<Watch>>,
}

fn gone() -> std::io::Error {
    std::io::ErrorKind::NotConnected.into()
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
        } else {
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(Err(gone()));
            };
            std::task::ready!(Pin::new(inner).poll_read(cx, buf))?;
            if buf.filled().len() > before {
                this.activity.read();
            }
        }
        lock(&this.watch)
            .frames
            .read(&mut buf.filled_mut()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let mut watch = lock(&this.watch);
        let n = match watch.frames.plan(data) {
            Plan::Drop(n) => {
                watch.frames.wrote(&data[..n]);
                return Poll::Ready(Ok(n));
            }
            Plan::Pass(n) => n,
        };
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let poll = Pin::new(inner).poll_write(cx, &data[..n]);
        match &poll {
            Poll::Ready(Ok(written)) => watch.frames.wrote(&data[..*written]),
            Poll::Pending => watch.frames.blocked(),
            Poll::Ready(Err(_)) => {}
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if lock(&self.watch).frames.filtering() {
            // The few frames a connection coming back opens with: one
            // slice at a time, so each can be looked at.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return self.poll_write(cx, first);
        }
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let poll = Pin::new(inner).poll_write_vectored(cx, bufs);
        let mut watch = lock(&this.watch);
        match &poll {
            Poll::Ready(Ok(written)) => {
                let mut left = *written;
                for buf in bufs {
                    let n = left.min(buf.len());
                    watch.frames.wrote(&buf[..n]);
                    left -= n;
                    if left == 0 {
                        break;
                    }
                }
            }
            Poll::Pending => watch.frames.blocked(),
            Poll::Ready(Err(_)) => {}
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|inner| inner.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.activity.parking.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Err(gone())),
        }
    }
}

impl Drop for H2Io {
    fn drop(&mut self) {
        if self.activity.parking.load(Ordering::Acquire) {
            if let Some(socket) = self.inner.take() {
                lock(&self.watch).socket = Some(socket);
            }
        }
    }
}

/// How a quiet connection leaves hyper.
enum Leave {
    /// hyper is asked to let go (HTTP/1.1: a graceful shutdown that keeps
    /// the socket, see `Io::poll_shutdown`).
    Goodbye,
    /// Dropped at once; its socket is handed back (HTTP/2, see `H2Io`).
    Now,
    /// Not at this moment (HTTP/2 between frames, see `Frames::may_leave`):
    /// asked again a moment later.
    NotYet,
}

/// Whether hyper let go of a connection because it went quiet (it is to
/// wait outside hyper); otherwise it is done, and its error is noted.
fn went_quiet<E: std::fmt::Display>(ended: Ended<(), E>, peer: Peer) -> bool {
    match ended {
        Ended::Quiet(_) => true,
        Ended::Finished(()) => false,
        Ended::Closed(error) => {
            ended_with(error, peer);
            false
        }
    }
}

/// Notes the error a connection ended with, if any.
fn ended_with(error: Option<impl std::fmt::Display>, peer: Peer) {
    if let Some(e) = error {
        tracing::debug!(error = %e, peer = %peer.addr, "connection ended with an error");
    }
}

/// How a connection left [`drive`].
enum Ended<T, E> {
    /// It finished, by itself or when asked to close.
    Finished(T),
    /// It failed (with its error), or was dropped: a head not finished in
    /// time, or a goodbye not finished.
    Closed(Option<E>),
    /// It was quiet and let go of its socket, still open (with what it
    /// returned, when it returned).
    Quiet(Option<T>),
}

/// Polls a connection until it ends, keeping its deadlines: the header and
/// idle timeouts, and for one that may wait outside hyper, `quiet`.
async fn drive<C, T, E>(
    mut connection: Pin<&mut C>,
    goodbye: impl Fn(Pin<&mut C>),
    leave: impl Fn() -> Leave,
    activity: &Activity,
    limits: &Limits,
    quiet: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) -> Ended<T, E>
where
    C: Future<Output = Result<T, E>>,
{
    // Polling the shutdown signal takes its channel's lock, shared by every
    // connection: it is polled again only when this task's waker changed
    // or the signal moved (seen on `probe`, a plain atomic load).
    let mut probe = shutdown.clone();
    let mut watching: Option<Waker> = None;
    let mut stopping = pin!(shutdown.wait_for(|stop| *stop));
    let mut shutting_down = false;
    // Set once an idle connection was asked to close: dropped then.
    let mut give_up: Option<Instant> = None;
    // A quiet connection that could not leave yet: asked again then, each
    // time after twice as long.
    let mut not_before: Option<Instant> = None;
    let mut refused = 0u32;
    // One timer, moved to whatever the next deadline is.
    let mut timer = pin!(tokio::time::sleep_until(
        activity.opened + limits.header_read_timeout
    ));

    poll_fn(|cx| {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            return Poll::Ready(match result {
                // Cleared when shutdown began: then it simply closed.
                Ok(done) if activity.parking.load(Ordering::Acquire) => Ended::Quiet(Some(done)),
                Ok(done) => Ended::Finished(done),
                Err(e) => Ended::Closed(Some(e)),
            });
        }
        let watched = watching.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
            && matches!(probe.has_changed(), Ok(false));
        if !shutting_down && !watched {
            probe.mark_unchanged();
            watching = Some(cx.waker().clone());
            if stopping.as_mut().poll(cx).is_ready() {
                shutting_down = true;
                activity.parking.store(false, Ordering::Release);
                goodbye(connection.as_mut());
                // Polled again so the connection acts on it.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        // The timer only ever moves earlier here: a deadline that moved
        // later (each finished request pushes the idle deadline on) is
        // found when the timer fires, so a busy keep-alive connection does
        // not touch the timer wheel once a request.
        loop {
            let due = match (give_up, activity.due(limits, quiet)) {
                (Some(at), _) => Due::Head(at),
                (None, Due::Quiet(at)) => Due::Quiet(not_before.map_or(at, |later| at.max(later))),
                (None, Due::Never) => {
                    // Busy again: the next quiet moment starts afresh.
                    not_before = None;
                    refused = 0;
                    Due::Never
                }
                (None, due) => due,
            };
            if let Due::Head(at) | Due::Idle(at) | Due::Quiet(at) = due {
                if at < timer.deadline() {
                    timer.as_mut().reset(at);
                }
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            match due {
                Due::Never => {
                    // A request outlived the timer: wait for it to finish.
                    if activity.wait_while_in_flight(cx.waker()) {
                        return Poll::Pending;
                    }
                }
                Due::Head(at) | Due::Idle(at) | Due::Quiet(at) if at > now => {
                    timer.as_mut().reset(at)
                }
                // A head not finished in time, or a goodbye not finished.
                Due::Head(_) => return Poll::Ready(Ended::Closed(None)),
                Due::Idle(_) | Due::Quiet(_) => {
                    if matches!(due, Due::Quiet(_)) && !shutting_down {
                        match leave() {
                            Leave::Goodbye => {
                                // hyper closes an idle connection at once;
                                // the socket is kept (see `Io::poll_shutdown`).
                                activity.parking.store(true, Ordering::Release);
                            }
                            Leave::Now => {
                                activity.parking.store(true, Ordering::Release);
                                return Poll::Ready(Ended::Quiet(None));
                            }
                            Leave::NotYet if now < activity.idle_until(limits) => {
                                let wait = park::QUIET * 2u32.pow(refused.min(6));
                                refused += 1;
                                let again = (now + wait).min(activity.idle_until(limits));
                                not_before = Some(again);
                                timer.as_mut().reset(again);
                                continue;
                            }
                            // Idle for good: closed as any other.
                            Leave::NotYet => {}
                        }
                    }
                    goodbye(connection.as_mut());
                    give_up = Some(now + GOODBYE_GRACE);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_whole_http_responses() {
        for answer in [BUSY, TOO_MANY_FROM_ADDRESS] {
            let text = std::str::from_utf8(answer).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(length, body.len(), "{head}");
            assert!(head.contains("Connection: close") && head.contains("Retry-After: "));
        }
    }

    #[test]
    fn default_caps_keep_files_for_the_rest() {
        assert_eq!(default_max_connections(1024), 384);
        assert_eq!(default_max_connections(1 << 20), (1 << 20) / 2 - 128);
        // On a tiny limit, half is still kept back.
        assert_eq!(default_max_connections(128), 32);
        assert_eq!(default_max_connections(0), 1);
    }

    fn test_counts() -> Arc<Counts> {
        Arc::new(Counts {
            total: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            open: IntGauge::new("test_open", "test").unwrap(),
        })
    }

    fn test_limits(total: usize, per_address: usize, exempt: Vec<Cidr>) -> Limits {
        Limits {
            max_connections: total,
            max_connections_per_address: per_address,
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            exempt,
        }
    }

    #[test]
    fn the_preface_is_recognised_across_reads() {
        let counts = test_counts();
        let limits = test_limits(10, 10, Vec::new());
        let ip = IpAddr::from([127, 0, 0, 2]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use tokio::io::AsyncWriteExt;
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            // The preface in two pieces, then a request that begins like it.
            for (pieces, expect) in [
                (vec![&PREFACE[..5], &PREFACE[5..]], Some(true)),
                (vec![&b"PRI * HTTP/1.1\r\n"[..]], Some(false)),
                (vec![&b"GET / HTTP/1.1\r\n"[..]], Some(false)),
                (vec![&PREFACE[..3]], None),
            ] {
                let activity = Activity::new(counts.admit(ip, &limits).unwrap());
                let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
                let mut client = client.unwrap();
                let mut inner = MaybeTls::Plain(accepted.unwrap().0);
                let sent: Vec<u8> = pieces.concat();
                let writer = async {
                    for piece in &pieces {
                        client.write_all(piece).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    client.shutdown().await.unwrap();
                };
                let (sniffed, ()) = tokio::join!(sniff(&mut inner, &activity), writer);
                match (sniffed, expect) {
                    (Some((Protocol::Http2, prefix)), Some(true)) => {
                        assert_eq!(&prefix[..], &PREFACE[..])
                    }
                    (Some((Protocol::Http1, prefix)), Some(false)) => {
                        // What was read goes to hyper first, whole.
                        assert!(sent.starts_with(&prefix) && !prefix.is_empty());
                    }
                    (None, None) => {}
                    (got, _) => panic!(
                        "{:?}: got {:?}",
                        String::from_utf8_lossy(&sent),
                        got.map(|(p, _)| matches!(p, Protocol::Http2))
                    ),
                }
            }
        });
        assert_eq!(counts.total.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_per_address_map_forgets_closed_addresses() {
        let counts = test_counts();
        let limits = test_limits(3, 2, Vec::new());
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let first = counts.admit(a, &limits).unwrap();
        let second = counts.admit(a, &limits).unwrap();
        assert_eq!(counts.admit(a, &limits).err(), Some(Refusal::PerAddress));
        let third = counts.admit(b, &limits).unwrap();
        assert_eq!(counts.admit(b, &limits).err(), Some(Refusal::Total));
        assert_eq!(counts.open.get(), 3);
        drop((first, second, third));
        assert!(counts.per_address.lock().unwrap().is_empty());
        assert_eq!(counts.open.get(), 0);
    }

    #[test]
    fn a_trusted_proxy_is_not_capped_per_address() {
        let counts = test_counts();
        let limits = test_limits(3, 1, vec![Cidr::parse("10.0.0.0/24").unwrap()]);
        let proxy = IpAddr::from([10, 0, 0, 9]);
        let slots: Vec<Slot> = (0..3)
            .map(|_| counts.admit(proxy, &limits).unwrap())
            .collect();
        assert_eq!(counts.admit(proxy, &limits).err(), Some(Refusal::Total));
        assert!(counts.per_address.lock().unwrap().is_empty());
        drop(slots);
        assert_eq!(counts.total.load(Ordering::Relaxed), 0);
    }
}
