//! The visitor path: each request runs through named phases over one
//! context built once, and every outcome becomes a response here and
//! nowhere else.
//!
//! 1. **accept**: the connection layer hands over a request and its peer.
//! 2. **parse** ([`parse`]): method, canonical path ([`crate::path`]),
//!    host, body framing, cookies, language, JSON or HTML. Anything
//!    ambiguous is refused here, before any room is consulted.
//! 3. **route** (`App::route`): antre's own endpoints, a CORS preflight,
//!    the room guarding the path ([`crate::route`]), or an unknown host.
//! 4. **admission** (`App::admission`): the first-visit cookie check,
//!    then the engine's decision.
//! 5. **forward** (`App::forward`): to the origin, with the canonical
//!    path and rewritten identity headers.
//! 6. **respond**: the queue page, JSON, or an error page.
//! 7. **log** (`App::log`): one count and one access-log line per
//!    request, with its outcome.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::listener::RequestBody;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admission::{AdmissionKeys, Via};
use crate::board;
use crate::config::Config;
use crate::cookie::{self, Jar};
use crate::engine::{CookieOptions, Decision, Engine, InviteError, Mode, ReturnError};
use crate::forwarded::Hop;
use crate::listener::{self, Limits, Side};
use crate::live::Live;
use crate::memo::{Memo, OwnKeys};
use crate::metrics::{Metrics, Outcome, RequestCounters};
use crate::page::{self, Lang, PageContext, PageKind};
use crate::path::{self, CanonicalPath, PathError};
use crate::proxy::{Body, Outgoing, Proxy, ProxyError};
use crate::route::{self, Route, Router};
use crate::status::{State, Status};
use crate::store::AnyStore;
use crate::token::PassClaims;
use crate::work;

/// The other end of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub ip: IpAddr,
    /// Whether the connection is TLS to antre itself.
    pub tls: bool,
}

/// Everything a request needs, shared by all connections; one per config
/// generation.
pub struct App {
    pub config: Arc<Config>,
    pub engine: Arc<Engine<AnyStore>>,
    pub metrics: Arc<Metrics>,
    pub proxy: Proxy,
    /// Signs the `antre-admission` header of admitted visitors' requests.
    admission: Arc<AdmissionKeys>,
    /// Headers already signed, by what they state: a pass's header is the
    /// same on every request it makes.
    signed: Memo<Signed, HeaderValue, OwnKeys>,
    router: Router,
    requests: RequestCounters,
}

/// What an `antre-admission` header states: room, ticket, pass id, issue
/// time and how the pass was had.
type Signed = (usize, u64, u64, u64, u64);

/// Admission headers remembered at most; forgotten whole when full.
const REMEMBERED_HEADERS: usize = 16_384;

/// One request's context, built once by [`parse`]; every later phase
/// reads it.
#[derive(Debug)]
pub struct Context {
    pub peer: Peer,
    /// Whether the peer is a trusted proxy (`listen.trusted_proxies`).
    pub trusted: bool,
    /// The visitor's address: the peer's, or behind a trusted proxy the
    /// nearest address it vouches for.
    pub client: IpAddr,
    /// Whether the visitor used https (here, or in front of antre).
    pub https: bool,
    pub method: Method,
    /// The host the request names, as sent.
    pub host: Option<HeaderValue>,
    pub path: CanonicalPath,
    /// The canonical path with the query: what the origin receives.
    pub target: String,
    pub jar: Jar,
    pub lang: Lang,
    /// An API client asking for JSON rather than a page.
    pub json: bool,
    /// When parsing began, for the access log's timing; not read (the
    /// clock not asked) when there is no access log.
    pub started: Option<Instant>,
}

/// Why [`parse`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Path(#[from] PathError),
    #[error("the method is not allowed")]
    Method,
    #[error("a {0} request may not carry a body")]
    Body(&'static str),
    #[error("the request does not name one plain host")]
    Host,
    /// A transfer coding other than `chunked`: antre would pass the coded
    /// bytes on as if they were plain, so, as nginx does, it refuses them.
    #[error("the request's transfer coding is not supported")]
    Coding,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::Method => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Coding => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Refusal::Path(e) => e.code(),
            Refusal::Method => "method_not_allowed",
            Refusal::Body(_) => "body_not_allowed",
            Refusal::Host => "bad_host",
            Refusal::Coding => "coding_not_supported",
        }
    }
}

/// Where the route phase sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// antre's own endpoint (the path starts with the prefix and a `/`).
    Internal,
    Room(usize),
    Unguarded,
    /// A CORS preflight to a guarded route: it needs no place in line.
    Preflight,
    UnknownHost,
}

/// A finished request: the response and what to count.
struct Done {
    response: Response<Body>,
    outcome: Outcome,
    room: Option<usize>,
}

impl Done {
    fn new(response: Response<Body>, outcome: Outcome, room: Option<usize>) -> Done {
        Done {
            response,
            outcome,
            room,
        }
    }
}

// === phase: parse ===

/// Methods whose requests carry no body: one on them is refused, so an
/// origin that ignores it can never read it as a second request.
fn bodiless(method: &Method) -> Option<&'static str> {
    match *method {
        Method::GET => Some("GET"),
        Method::HEAD => Some("HEAD"),
        Method::OPTIONS => Some("OPTIONS"),
        _ => None,
    }
}

/// Builds the context, or refuses what has no single reading.
pub fn parse<B: hyper::body::Body>(
    request: &Request<B>,
    peer: Peer,
    config: &Config,
) -> Result<Context, Refusal> {
    let started = config.listen.access_log.then(Instant::now);
    let method = request.method().clone();
    // TRACE echoes the request, cookies included; CONNECT opens a tunnel.
    if method == Method::TRACE || method == Method::CONNECT {
        return Err(Refusal::Method);
    }
    let path = path::canonicalise(request.uri().path())?;
    if let Some(name) = bodiless(&method) {
        if has_body(request) {
            return Err(Refusal::Body(name));
        }
    }
    if has_other_coding(request) {
        return Err(Refusal::Coding);
    }
    let host = checked_host(request)?;
    let query = request.uri().query();
    let mut target = String::with_capacity(path.as_str().len() + query.map_or(0, |q| q.len() + 1));
    target.push_str(path.as_str());
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    let jar = Jar::from_headers(request.headers());
    let lang = page::negotiate(
        request
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
        jar.values(cookie::LANG).next(),
    );
    let trusted = config.listen.trusts(peer.ip);
    // Over TLS here, or in front of antre: configured, or said by a
    // trusted proxy.
    let https = peer.tls
        || config.listen.secure_cookies
        || (trusted
            && request
                .headers()
                .get("x-forwarded-proto")
                .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https")));
    Ok(Context {
        peer,
        trusted,
        client: client_address(request, peer.ip, trusted, &config.listen),
        https,
        method,
        host,
        path,
        target,
        jar,
        lang,
        json: wants_json(request),
        started,
    })
}

/// One host, spelt as a host: a single `Host` field that is a host name,
/// an IPv4 address or a bracketed IPv6 address, with an optional port (no
/// user info, no path), agreeing with the request target's authority when
/// it has one. Origins build links and redirects from it.
/// Returns the host the request names: its `Host` field, else the
/// authority of an absolute or HTTP/2 target.
fn checked_host<B>(request: &Request<B>) -> Result<Option<HeaderValue>, Refusal> {
    let mut fields = request.headers().get_all(header::HOST).iter();
    let field = fields.next();
    if fields.next().is_some() {
        return Err(Refusal::Host);
    }
    let Some(field) = field else {
        let authority = request.uri().authority();
        return Ok(authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    };
    if !is_plain_host(field.as_bytes()) {
        return Err(Refusal::Host);
    }
    match (request.uri().authority(), field.to_str()) {
        (Some(target), Ok(field))
            if route::normal_host(target.as_str()) != route::normal_host(field) =>
        {
            Err(Refusal::Host)
        }
        _ => Ok(Some(field.clone())),
    }
}

/// `name[:port]` or `[v6][:port]`: letters, digits, `-`, `.` and `_` in a
/// name, a port of one to five digits up to 65535.
fn is_plain_host(host: &[u8]) -> bool {
    let (name, port) = match host.first() {
        Some(b'[') => match host.iter().position(|b| *b == b']') {
            Some(end) => {
                let inner = &host[1..end];
                let ok = !inner.is_empty()
                    && inner
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
                if !ok {
                    return false;
                }
                match &host[end + 1..] {
                    [] => (&host[..0], None),
                    [b':', port @ ..] => (&host[..0], Some(port)),
                    _ => return false,
                }
            }
            None => return false,
        },
        _ => match host.iter().rposition(|b| *b == b':') {
            Some(colon) => (&host[..colon], Some(&host[colon + 1..])),
            None => (host, None),
        },
    };
    let name_ok = name
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && (host.first() == Some(&b'[') || !name.is_empty());
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(p)
                .ok()
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| p <= 65_535)
    });
    name_ok && port_ok
}

/// Whether `Transfer-Encoding` names any coding but `chunked`.
fn has_other_coding<B>(request: &Request<B>) -> bool {
    crate::wire::tokens(request.headers(), header::TRANSFER_ENCODING)
        .any(|coding| !coding.eq_ignore_ascii_case(b"chunked"))
}

/// Whether a request has a body. hyper has read the framing: an HTTP/1.1
/// request without `Content-Length` or `Transfer-Encoding`, or with a
/// length of 0, has an empty body; an HTTP/2 request has one unless its
/// headers ended the stream.
fn has_body<B: hyper::body::Body>(request: &Request<B>) -> bool {
    !request.body().is_end_stream()
}

/// The nearest address in `X-Forwarded-For` that is not a trusted proxy,
/// when the peer is one; otherwise the peer.
fn client_address<B>(
    request: &Request<B>,
    peer: IpAddr,
    trusted: bool,
    listen: &crate::config::Listen,
) -> IpAddr {
    if !trusted {
        return peer;
    }
    let claimed: Vec<IpAddr> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    claimed
        .into_iter()
        .rev()
        .find(|ip| !listen.trusts(*ip))
        .unwrap_or(peer)
}

/// API clients ask for JSON; browsers ask for HTML (and often `*/*`).
fn wants_json<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .is_some_and(|accept| accepts_json(accept.as_bytes()))
}

/// Whether an `Accept` value lists `application/json` and not `text/html`
/// (a browser's lists both kinds or only HTML), in one look over its media
/// ranges, parameters and letter case aside.
fn accepts_json(accept: &[u8]) -> bool {
    // What the queue page's own script sends with every poll.
    if accept == b"application/json" {
        return true;
    }
    let mut json = false;
    for range in accept.split(|b| *b == b',') {
        let kind = range
            .split(|b| *b == b';')
            .next()
            .unwrap_or(range)
            .trim_ascii();
        if kind.eq_ignore_ascii_case(b"text/html") {
            return false;
        }
        json |= kind.eq_ignore_ascii_case(b"application/json");
    }
    json
}

impl App {
    pub fn new(
        config: Arc<Config>,
        engine: Arc<Engine<AnyStore>>,
        metrics: Arc<Metrics>,
        admission: Arc<AdmissionKeys>,
    ) -> Result<App, crate::tls::TlsError> {
        Ok(App {
            admission,
            signed: Memo::new(REMEMBERED_HEADERS),
            router: Router::new(&config.rooms, &config.listen.hosts),
            requests: metrics.request_counters(config.rooms.iter().map(|r| r.id.as_str())),
            proxy: Proxy::new(config.origin.clone())?,
            config,
            engine,
            metrics,
        })
    }

    /// Handles one request from `peer`. Never fails: every error becomes a
    /// page or JSON answer here.
    /// Owns its `App` (the generation current when the request came), so
    /// the listener can hold this future itself, with no wrapper around it.
    ///
    /// This and the phases below that take the request return an `async
    /// move` block instead of being `async fn`s: an `async fn` moves each
    /// argument into a local of its own, so its state would hold the
    /// request twice, and every level would copy it once more.
    #[allow(clippy::manual_async_fn)]
    pub fn handle(
        self: Arc<Self>,
        request: Request<RequestBody>,
        peer: Peer,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        async move {
            // The context stays where parsing put it; phases borrow it.
            let parsed = parse(&request, peer, &self.config);
            let done = match &parsed {
                Err(refusal) => refused(*refusal, &request),
                Ok(context) => self.run(request, context).await,
            };
            self.log(&done, parsed.as_ref().ok(), peer);
            let mut response = done.response;
            if peer.tls && self.config.listen.hsts_seconds > 0 {
                let value = format!("max-age={}", self.config.listen.hsts_seconds);
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response
                        .headers_mut()
                        .entry(header::STRICT_TRANSPORT_SECURITY)
                        .or_insert(value);
                }
            }
            response
        }
    }

    /// The phases after parsing. Not an `async fn`: see [`App::handle`].
    #[allow(clippy::manual_async_fn)]
    fn run<'a>(
        &'a self,
        request: Request<RequestBody>,
        context: &'a Context,
    ) -> impl std::future::Future<Output = Done> + Send + 'a {
        async move {
            match self.route(context, &request) {
                Target::Internal => self.internal(context).await,
                Target::UnknownHost => Done::new(
                    error_response(
                        StatusCode::MISDIRECTED_REQUEST,
                        "unknown_host",
                        "This server does not serve that host name.",
                        context.json,
                    ),
                    Outcome::Refused,
                    None,
                ),
                Target::Unguarded => {
                    let target = context.target.as_str();
                    self.forward(request, context, Leg::bare(target, Outcome::Unguarded))
                        .await
                }
                Target::Preflight => {
                    // A browser's preflight carries no credentials and no data;
                    // one that does is someone using the preflight's pass
                    // through the line to reach a script that runs for any
                    // method. The origin gets the path and the CORS headers.
                    let mut request = request;
                    request.headers_mut().remove(header::COOKIE);
                    request.headers_mut().remove(header::AUTHORIZATION);
                    let target = context.path.as_str();
                    self.forward(request, context, Leg::bare(target, Outcome::Preflight))
                        .await
                }
                Target::Room(index) => match self.admission(index, context).await {
                    Admission::Hello(response) => {
                        Done::new(response, Outcome::CookieCheck, Some(index))
                    }
                    Admission::Decided(Decision::Forward {
                        set_cookies,
                        admitted_now,
                        pass,
                    }) => {
                        let outcome = if pass.is_some_and(|p| p.via == Via::Allow.code()) {
                            Outcome::Bypass
                        } else if admitted_now {
                            Outcome::Admitted
                        } else {
                            Outcome::Forwarded
                        };
                        let admission = pass.and_then(|pass| self.admission_header(index, &pass));
                        let target = context.target.as_str();
                        let leg = Leg {
                            target,
                            set_cookies: &set_cookies,
                            admission: admission.as_ref(),
                            room: Some(index),
                            outcome,
                        };
                        self.forward(request, context, leg).await
                    }
                    Admission::Decided(Decision::Hold {
                        status,
                        set_cookies,
                    }) => {
                        let outcome = match status.state {
                            State::Paused => Outcome::Paused,
                            State::SoldOut => Outcome::SoldOut,
                            State::Closed => Outcome::Closed,
                            State::Waiting | State::Admitted => Outcome::Waiting,
                        };
                        let mut response = self.hold_page(index, &status, context);
                        append_cookies(&mut response, &set_cookies);
                        Done::new(response, outcome, Some(index))
                    }
                    Admission::Decided(decision @ Decision::Challenge { .. }) => Done::new(
                        self.slow_down(index, decision, context.json, context),
                        Outcome::Challenge,
                        Some(index),
                    ),
                    Admission::Decided(decision @ Decision::Slow { .. }) => Done::new(
                        self.slow_down(index, decision, context.json, context),
                        Outcome::Limited,
                        Some(index),
                    ),
                    Admission::Decided(Decision::NoTicket) => Done::new(
                        plain(StatusCode::INTERNAL_SERVER_ERROR, "no ticket"),
                        Outcome::Waiting,
                        Some(index),
                    ),
                },
            }
        }
    }

    // === phase: route ===

    fn route<B>(&self, context: &Context, request: &Request<B>) -> Target {
        let prefix = &self.config.listen.prefix;
        if let Some(rest) = context.path.as_str().strip_prefix(prefix.as_str()) {
            if rest.starts_with('/') {
                return Target::Internal;
            }
        }
        let host = context.host.as_ref().and_then(|h| h.to_str().ok());
        match self.router.route(host, context.path.key()) {
            Route::UnknownHost => Target::UnknownHost,
            Route::Unguarded => Target::Unguarded,
            Route::Room(_) if is_preflight(request) => Target::Preflight,
            Route::Room(index) => Target::Room(index),
        }
    }

    // === phase: admission ===

    async fn admission(&self, room: usize, context: &Context) -> Admission {
        if let Some(response) = self.cookie_check(context) {
            return Admission::Hello(response);
        }
        let decision = self
            .engine
            .decide(
                room,
                &context.jar,
                context.client,
                Mode::Request,
                cookie_options(context),
            )
            .await;
        Admission::Decided(decision)
    }

    /// A first visit (no antre cookie at all) to a guarded page is sent
    /// back to the same address with a small cookie before it may take a
    /// place. Browsers follow at once; clients that keep no cookies (health
    /// checks, monitors, crawlers) never come back with it, so they neither
    /// take a ticket nor use the quota.
    fn cookie_check(&self, context: &Context) -> Option<Response<Body>> {
        if !matches!(context.method, Method::GET | Method::HEAD) || !context.jar.is_empty() {
            return None;
        }
        let mut response = redirect(StatusCode::TEMPORARY_REDIRECT, &context.target);
        let cookie = cookie::set_cookie(cookie::HELLO, "1", 86_400, context.https);
        append_cookies(&mut response, &[cookie]);
        Some(response)
    }

    // === phase: forward ===

    /// The signed header telling the origin who was admitted, on which
    /// pass and how.
    fn admission_header(&self, room: usize, pass: &PassClaims) -> Option<HeaderValue> {
        let key = (room, pass.number, pass.id, pass.issued, pass.via);
        if let Some(value) = self.signed.find(&key, |value| Some(value.clone())) {
            return Some(value);
        }
        let value = self.sign_admission(room, pass)?;
        self.signed.insert(key, value.clone());
        Some(value)
    }

    fn sign_admission(&self, room: usize, pass: &PassClaims) -> Option<HeaderValue> {
        let room = self.config.rooms.get(room)?;
        let via = Via::from_code(pass.via)?;
        let admission = crate::admission::Admission {
            room: std::borrow::Cow::Borrowed(room.id.as_str()),
            ticket: if via == Via::Line { pass.number } else { 0 },
            pass: pass.id,
            issued: pass.issued,
            via,
        };
        self.admission.header_value(&admission).ok()
    }

    /// Sends the request to the origin; a failure becomes the page that
    /// says so, the visitor's pass and place untouched.
    ///
    /// Not an `async fn`: see [`App::handle`].
    #[allow(clippy::manual_async_fn)]
    fn forward<'a>(
        &'a self,
        request: Request<RequestBody>,
        context: &'a Context,
        leg: Leg<'a>,
    ) -> impl std::future::Future<Output = Done> + Send + 'a {
        async move {
            let Leg {
                target,
                set_cookies,
                admission,
                room,
                outcome,
            } = leg;
            let started = Instant::now();
            let outgoing = Outgoing {
                target,
                hop: Hop {
                    peer: context.peer.ip,
                    trusted: context.trusted,
                    https: context.https,
                    host: context.host.as_ref(),
                    // Only a visitor who went through the line may ask the
                    // origin to treat their request as another method.
                    admitted: room.is_some(),
                },
                set_cookies,
                admission,
                only_own_cookies: context.jar.only_own(),
            };
            match self.proxy.forward(request, outgoing).await {
                Ok(response) => {
                    self.metrics
                        .origin_seconds
                        .observe(started.elapsed().as_secs_f64());
                    Done::new(response, outcome, room)
                }
                Err(ProxyError::ClientBody(e)) => {
                    tracing::debug!(error = %e, "the client's request body was malformed");
                    let response = error_response(
                        StatusCode::BAD_REQUEST,
                        "bad_body",
                        "The request body could not be read.",
                        context.json,
                    );
                    Done::new(response, Outcome::ClientError, room)
                }
                Err(e) => {
                    self.metrics.origin_error(e.kind());
                    let mut response = self.origin_trouble(room, &e, context);
                    append_cookies(&mut response, set_cookies);
                    Done::new(response, Outcome::OriginError, room)
                }
            }
        }
    }

    // === phase: log ===

    /// Counts the request once, with its outcome, and writes its access-log
    /// line.
    fn log(&self, done: &Done, context: Option<&Context>, peer: Peer) {
        self.requests.count(done.room, done.outcome);
        if !self.config.listen.access_log {
            return;
        }
        let room = done
            .room
            .and_then(|i| self.config.rooms.get(i))
            .map_or("none", |r| r.id.as_str());
        let status = done.response.status().as_u16();
        match context {
            Some(context) => tracing::info!(
                target: "antre::access",
                client = %context.client,
                method = %context.method,
                host = context.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("-"),
                path = %context.path.as_str(),
                room,
                outcome = done.outcome.label(),
                status,
                micros = context.started.map_or(0, |s| s.elapsed().as_micros() as u64),
            ),
            None => tracing::info!(
                target: "antre::access",
                client = %peer.ip,
                room,
                outcome = done.outcome.label(),
                status,
            ),
        }
    }

    // === antre's own endpoints ===

    async fn internal(&self, context: &Context) -> Done {
        if context.method != Method::GET && context.method != Method::HEAD {
            let response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Only GET and HEAD are answered here.",
                true,
            );
            return Done::new(response, Outcome::Refused, None);
        }
        let query = context.target.split_once('?').map(|(_, q)| q);
        let prefix = self.config.listen.prefix.as_str();
        match context.path.as_str().strip_prefix(prefix).unwrap_or("") {
            "/health" => Done::new(self.health(), Outcome::Internal, None),
            "/lang" => Done::new(switch_lang(query, context), Outcome::Internal, None),
            "/status" => self.status(query, context).await,
            // Rare, and boxed so a poll's state is not the size of theirs.
            "/invite" => Box::pin(self.invite(query, context)).await,
            "/return" => self.take_return(query, context),
            "/board" => Done::new(self.board(context, false), Outcome::Internal, None),
            "/board.json" => Done::new(self.board(context, true), Outcome::Internal, None),
            "/draw.json" => Box::pin(self.draw(query)).await,
            _ => Done::new(
                json_response(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": "not_found"}),
                ),
                Outcome::Internal,
                None,
            ),
        }
    }

    /// `GET {prefix}/health`: antre answers, and whether each room's store
    /// does; always `200` while the process serves. No store call.
    fn health(&self) -> Response<Body> {
        let store = self.engine.store();
        let rooms: serde_json::Map<String, serde_json::Value> = self
            .engine
            .rooms()
            .iter()
            .map(|room| {
                let state = if room.store_healthy() {
                    "ok"
                } else {
                    "store_unavailable"
                };
                (room.config.id.clone(), state.into())
            })
            .collect();
        let mut body = serde_json::json!({"status": "ok", "store": store.kind(), "rooms": rooms});
        if let Some((calls, errors, mean_micros)) = store.call_stats() {
            body["store_calls"] = calls.into();
            body["store_errors"] = errors.into();
            body["store_mean_micros"] = mean_micros.into();
        }
        json_response(StatusCode::OK, &body)
    }

    /// `GET {prefix}/status[?room=ID]`: the caller's own status as JSON.
    async fn status(&self, query: Option<&str>, context: &Context) -> Done {
        let wanted = query_param(query, "room");
        let rooms = self.engine.rooms();
        // The room asked for, or else the first the visitor holds a cookie
        // for.
        let asked = match &wanted {
            Some(id) => match rooms.iter().position(|r| r.config.id == **id) {
                Some(index) => Some(index),
                None => {
                    let response = json_response(
                        StatusCode::NOT_FOUND,
                        &serde_json::json!({"error": "unknown_room", "room": id}),
                    );
                    return Done::new(response, Outcome::Status, None);
                }
            },
            None => None,
        };
        let candidates = (0..rooms.len()).filter(|&i| match asked {
            Some(index) => i == index,
            None => {
                let room = &rooms[i];
                context.jar.values(room.pass_cookie_name()).next().is_some()
                    || context
                        .jar
                        .values(room.ticket_cookie_name())
                        .next()
                        .is_some()
            }
        });
        for index in candidates {
            let decision = self
                .engine
                .decide(
                    index,
                    &context.jar,
                    context.client,
                    Mode::Status,
                    cookie_options(context),
                )
                .await;
            let (status, set_cookies) = match decision {
                Decision::Forward { set_cookies, .. } => match self.engine.admitted_status(index) {
                    Some(status) => (status, set_cookies),
                    None => continue,
                },
                Decision::Hold {
                    status,
                    set_cookies,
                } => (status, set_cookies),
                Decision::NoTicket => continue,
                decision @ Decision::Challenge { .. } => {
                    let response = self.slow_down(index, decision, true, context);
                    return Done::new(response, Outcome::Challenge, Some(index));
                }
                decision @ Decision::Slow { .. } => {
                    let response = self.slow_down(index, decision, true, context);
                    return Done::new(response, Outcome::Limited, Some(index));
                }
            };
            let mut response = status_response(StatusCode::OK, &status);
            append_cookies(&mut response, &set_cookies);
            return Done::new(response, Outcome::Status, Some(index));
        }
        let response = json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "no_ticket", "room": wanted}),
        );
        Done::new(response, Outcome::Status, None)
    }

    /// `GET {prefix}/invite?room=ID&token=T&next=/path`: a staff invite
    /// link. While it has uses left the visitor gets a pass of their own
    /// and goes on to `next` (a path on this site, `/` by default).
    async fn invite(&self, query: Option<&str>, context: &Context) -> Done {
        let room = query_param(query, "room").unwrap_or_default();
        let token = query_param(query, "token").unwrap_or_default();
        let Some(index) = self.engine.rooms().iter().position(|r| r.config.id == room) else {
            let response = error_response(
                StatusCode::NOT_FOUND,
                "unknown_room",
                "This invite link names no room here.",
                context.json,
            );
            return Done::new(response, Outcome::Internal, None);
        };
        match self
            .engine
            .redeem(index, &token, context.client, cookie_options(context))
            .await
        {
            Ok((_, cookie)) => {
                let next = query_param(query, "next").unwrap_or(Cow::Borrowed("/"));
                let mut response = redirect(StatusCode::SEE_OTHER, &next);
                append_cookies(&mut response, &[cookie]);
                Done::new(response, Outcome::Bypass, Some(index))
            }
            Err(e) => {
                let code = match e {
                    InviteError::Store => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::FORBIDDEN,
                };
                let response = error_response(code, "invite_refused", &e.to_string(), context.json);
                Done::new(response, Outcome::Refused, Some(index))
            }
        }
    }

    /// `GET {prefix}/board` and `{prefix}/board.json`: the public board of
    /// the rooms with `board = true`, from the cached views (no store call);
    /// `404` when no room is on it. Caches may keep it a few seconds.
    fn board(&self, context: &Context, json: bool) -> Response<Body> {
        let rooms = board::rooms(self.engine.rooms(), self.engine.clock().now_micros());
        if rooms.is_empty() {
            return error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "No room is on the public board.",
                json,
            );
        }
        let mut response = if json {
            json_response(StatusCode::OK, &board::json(&rooms))
        } else {
            html_response(
                StatusCode::OK,
                board::html(&rooms, context.lang, self.config.page.utc_offset_minutes),
            )
        };
        let cache = format!("public, max-age={}", board::REFRESH_SECONDS / 3);
        if let Ok(value) = HeaderValue::from_str(&cache) {
            response.headers_mut().insert(header::CACHE_CONTROL, value);
        }
        response
    }

    /// `GET {prefix}/draw.json?room=ID`: the room's draw, so anyone can
    /// check it: the commitment before the opening; after it the seed, the
    /// entries and the first ticket. `404` for a room without a draw.
    async fn draw(&self, query: Option<&str>) -> Done {
        let room = query_param(query, "room").unwrap_or_default();
        let index = self.engine.rooms().iter().position(|r| r.config.id == room);
        let report = match index {
            Some(index) => self.engine.draw_json(index).await,
            None => Ok(None),
        };
        let response = match report {
            Ok(Some(body)) => response(
                StatusCode::OK,
                "application/json",
                full(Bytes::copy_from_slice(body.as_bytes())),
            ),
            Ok(None) => error_response(
                StatusCode::NOT_FOUND,
                "no_draw",
                "No room here by that id holds a draw.",
                true,
            ),
            Err(e) => {
                let mut response = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    &format!("The draw's entries cannot be read right now: {e}."),
                    true,
                );
                set_retry_after(&mut response, 5);
                response
            }
        };
        Done::new(response, Outcome::Internal, index)
    }

    /// `GET {prefix}/return?room=ID&ticket=T&next=/path`: a return ticket
    /// from a link (another browser, a bookmark) becomes this browser's;
    /// the visitor then goes on to `next` (a path on this site, `/` by
    /// default), where their kept place counts. It is still let in once.
    fn take_return(&self, query: Option<&str>, context: &Context) -> Done {
        let room = query_param(query, "room").unwrap_or_default();
        let token = query_param(query, "ticket").unwrap_or_default();
        let Some(index) = self.engine.rooms().iter().position(|r| r.config.id == room) else {
            let response = error_response(
                StatusCode::NOT_FOUND,
                "unknown_room",
                "This return link names no room here.",
                context.json,
            );
            return Done::new(response, Outcome::Internal, None);
        };
        match self
            .engine
            .take_return(index, &token, cookie_options(context))
        {
            Ok(cookie) => {
                let next = query_param(query, "next").unwrap_or(Cow::Borrowed("/"));
                let mut response = redirect(StatusCode::SEE_OTHER, &next);
                append_cookies(&mut response, &[cookie]);
                Done::new(response, Outcome::Internal, Some(index))
            }
            Err(e) => {
                let code = match e {
                    ReturnError::Forged => StatusCode::FORBIDDEN,
                    ReturnError::Over => StatusCode::GONE,
                };
                let message = format!("Return ticket refused: {e}.");
                let response = error_response(code, "return_refused", &message, context.json);
                Done::new(response, Outcome::Refused, Some(index))
            }
        }
    }

    // === phase: respond ===

    /// `429` for a visitor asked to slow down: the proof-of-work page (or
    /// its JSON) for a new arrival past its network's budget, a short
    /// answer for a pass asking too fast.
    fn slow_down(
        &self,
        index: usize,
        decision: Decision,
        json: bool,
        context: &Context,
    ) -> Response<Body> {
        match decision {
            Decision::Challenge {
                challenge,
                cookie,
                refresh_seconds,
                failed,
                set_cookies,
            } => {
                let mut response = if json {
                    let mut body = serde_json::json!({
                        "error": "challenge",
                        "room": self.config.rooms.get(index).map(|r| r.id.as_str()),
                        "challenge": challenge.challenge,
                        "bits": challenge.bits,
                        "expires": challenge.expires,
                        "cookie": cookie,
                        "recipe": work::RECIPE,
                    });
                    if let Some(failed) = failed {
                        body["refused"] = failed.into();
                    }
                    json_response(StatusCode::TOO_MANY_REQUESTS, &body)
                } else {
                    html_response(
                        StatusCode::TOO_MANY_REQUESTS,
                        work::page(
                            &challenge,
                            &cookie,
                            context.https,
                            context.lang,
                            refresh_seconds,
                        ),
                    )
                };
                set_retry_after(&mut response, refresh_seconds);
                append_cookies(&mut response, &set_cookies);
                response
            }
            Decision::Slow {
                retry_after_seconds,
            } => {
                let mut response = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "This pass is making requests faster than a person does; please slow down.",
                    json,
                );
                set_retry_after(&mut response, retry_after_seconds);
                response
            }
            _ => plain(StatusCode::INTERNAL_SERVER_ERROR, "not a refusal"),
        }
    }

    /// The queue page (or its JSON) for a visitor kept out.
    fn hold_page(&self, room_index: usize, status: &Status, context: &Context) -> Response<Body> {
        let code = match status.state {
            // Gone for good only when no later phase brings new places.
            State::SoldOut if status.opens_at.is_none() => StatusCode::GONE,
            State::Admitted => StatusCode::OK,
            State::Waiting | State::Paused | State::Closed | State::SoldOut => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let kind = PageKind::for_state(status.state).unwrap_or(PageKind::Waiting);
        let mut response = if context.json {
            status_response(code, status)
        } else {
            self.render(
                room_index,
                kind,
                status,
                context.lang,
                &context.target,
                code,
            )
        };
        if code == StatusCode::SERVICE_UNAVAILABLE {
            set_retry_after(&mut response, status.refresh_seconds);
        }
        response
    }

    /// The page for a visitor whose request the origin could not answer.
    /// Their pass and place are untouched.
    fn origin_trouble(
        &self,
        room_index: Option<usize>,
        error: &ProxyError,
        context: &Context,
    ) -> Response<Body> {
        tracing::warn!(error = %error, "origin request failed");
        let code = error.status();
        let refresh = 10;
        let mut response = match room_index {
            _ if context.json => json_response(
                code,
                &serde_json::json!({
                    "error": "origin_unavailable",
                    "kind": error.kind(),
                    "message": "The site behind the waiting room is not answering; your place and access are kept.",
                    "refresh_seconds": refresh,
                }),
            ),
            Some(index) => {
                let mut status = self
                    .engine
                    .admitted_status(index)
                    .unwrap_or_else(|| unknown_status(refresh));
                status.refresh_seconds = refresh;
                self.render(
                    index,
                    PageKind::OriginTrouble,
                    &status,
                    context.lang,
                    "/",
                    code,
                )
            }
            None => html_response(code, origin_trouble_fallback(context.lang)),
        };
        set_retry_after(&mut response, refresh);
        response
    }

    fn render(
        &self,
        room_index: usize,
        kind: PageKind,
        status: &Status,
        lang: Lang,
        back: &str,
        code: StatusCode,
    ) -> Response<Body> {
        let Some(room) = self.engine.rooms().get(room_index) else {
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "unknown room");
        };
        let prefix = &self.config.listen.prefix;
        let status_url = format!("{prefix}/status?room={}", room.config.id);
        let lang_switch_url = format!(
            "{prefix}/lang?back={}&set=",
            form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
        );
        let return_url = status.return_ticket.as_ref().map(|ticket| {
            format!(
                "{prefix}/return?room={}&ticket={ticket}&next={}",
                room.config.id,
                form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
            )
        });
        let context = PageContext {
            kind,
            lang,
            status,
            title: &room.config.title,
            status_url: &status_url,
            lang_switch_url: &lang_switch_url,
            utc_offset_minutes: self.config.page.utc_offset_minutes,
            return_url: return_url.as_deref(),
        };
        html_response(
            code,
            page::render(&context, room.config.template.as_deref()),
        )
    }
}

/// Where a request goes on to the origin, and what antre adds.
struct Leg<'a> {
    /// The path and query the origin gets.
    target: &'a str,
    /// Cookies set on the response (a new or renewed pass).
    set_cookies: &'a [String],
    /// The signed admission header, for an admitted visitor.
    admission: Option<&'a HeaderValue>,
    /// The room whose line the visitor went through.
    room: Option<usize>,
    outcome: Outcome,
}

impl<'a> Leg<'a> {
    /// A request no line stands in front of.
    fn bare(target: &'a str, outcome: Outcome) -> Leg<'a> {
        Leg {
            target,
            set_cookies: &[],
            admission: None,
            room: None,
            outcome,
        }
    }
}

/// What the admission phase decided.
enum Admission {
    /// A first visit, sent back for its cookie.
    Hello(Response<Body>),
    Decided(Decision),
}

fn cookie_options(context: &Context) -> CookieOptions {
    CookieOptions {
        secure: context.https,
    }
}

/// A real CORS preflight: `OPTIONS` with the headers a browser sends and no
/// body (bodies on `OPTIONS` are refused in [`parse`]). Anything else to a
/// guarded route goes through the line, whatever its method.
fn is_preflight<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    request.method() == Method::OPTIONS
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && headers.contains_key(header::ORIGIN)
}

/// `GET {prefix}/lang?set=en&back=/path`: remembers the language and goes
/// back to the page the visitor came from.
fn switch_lang(query: Option<&str>, context: &Context) -> Response<Body> {
    let lang = query_param(query, "set").and_then(|code| Lang::from_code(&code));
    let back = query_param(query, "back").unwrap_or_default();
    let mut response = redirect(StatusCode::SEE_OTHER, &back);
    if let Some(lang) = lang {
        let cookie = cookie::set_cookie(cookie::LANG, lang.code(), 31_536_000, context.https);
        append_cookies(&mut response, &[cookie]);
    }
    response
}

/// The answer to a request [`parse`] refused.
fn refused<B>(refusal: Refusal, request: &Request<B>) -> Done {
    let response = error_response(
        refusal.status(),
        refusal.code(),
        &format!("Bad request: {refusal}."),
        wants_json(request),
    );
    Done::new(response, Outcome::Refused, None)
}

fn unknown_status(refresh: u32) -> Status {
    Status {
        room: String::new(),
        state: State::Admitted,
        ticket: None,
        position: None,
        ahead: None,
        eta_seconds: None,
        eta_range_seconds: None,
        quota_left: None,
        beyond_quota: false,
        opens_at: None,
        kept_for: None,
        return_ticket: None,
        draw: None,
        requeued: false,
        notice: None,
        refresh_seconds: refresh,
        poll_after_millis: None,
        updated_at: 0,
    }
}

/// A plain page for origin trouble on routes no room guards.
fn origin_trouble_fallback(lang: Lang) -> String {
    let (title, text) = match lang {
        Lang::Id => (
            "Situs sedang gangguan",
            "Situs di balik ruang tunggu ini sedang tidak menjawab. Silakan coba lagi sebentar lagi.",
        ),
        Lang::En => (
            "The site is having trouble",
            "The site behind this waiting room is not answering. Please try again in a moment.",
        ),
    };
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><meta http-equiv=\"refresh\" content=\"10\"><title>{title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>",
        lang.code()
    )
}

/// The first value of `name` in a query, percent-decoded; borrowed from
/// the query when it has nothing to decode.
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<Cow<'q, str>> {
    let query = query?;
    if !query.contains(['%', '+']) {
        // Nothing to decode (a poll's `room=ID`): the pairs as they are.
        return query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(Cow::Borrowed(value))
        });
    }
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// A path on this site and nothing else: a single leading `/`, then only
/// printable ASCII without backslashes, so no browser can read it as
/// another host (`//evil`, `/\\evil`, `/\t/evil` once tabs are dropped).
fn is_local_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\')
}

// === responses ===

/// A redirect to `location` when it is a path on this site, else to `/`:
/// every `Location` antre writes comes from here.
fn redirect(code: StatusCode, location: &str) -> Response<Body> {
    let location = if is_local_path(location) {
        location
    } else {
        "/"
    };
    let mut response = response(code, "text/plain; charset=utf-8", empty());
    let value = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    response.headers_mut().insert(header::LOCATION, value);
    response
}

pub(crate) fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// A whole body held in memory.
pub(crate) fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn response(code: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html_response(code: StatusCode, html: String) -> Response<Body> {
    response(code, "text/html; charset=utf-8", full(html))
}

fn json_response<T: serde::Serialize>(code: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    response(code, "application/json", full(body))
}

fn status_response(code: StatusCode, status: &Status) -> Response<Body> {
    response(code, "application/json", full(status.to_json()))
}

fn plain(code: StatusCode, text: &'static str) -> Response<Body> {
    response(code, "text/plain; charset=utf-8", full(text))
}

/// An error as JSON (`{"error": code, "message": ...}`) or plain text.
fn error_response(code: StatusCode, error: &str, message: &str, json: bool) -> Response<Body> {
    if json {
        json_response(
            code,
            &serde_json::json!({"error": error, "message": message}),
        )
    } else {
        response(
            code,
            "text/plain; charset=utf-8",
            full(format!("{message}\n")),
        )
    }
}

fn set_retry_after(response: &mut Response<Body>, seconds: u32) {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
}

fn append_cookies(response: &mut Response<Body>, cookies: &[String]) {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

// === connections ===

/// Serves visitors on `listener` until `shutdown` flips, then waits up to
/// [`listener::DRAIN_GRACE`] for in-flight requests. Each connection takes
/// its limits from the config current when it opens; each request is
/// handled by the config current when it arrives. Connections are served
/// on `workers`.
pub async fn serve(
    app: Arc<Live<App>>,
    listener: TcpListener,
    workers: listener::Workers,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    let (metrics, limits) = visitor_limits(&app);
    let handle = move |request: Request<RequestBody>, peer: listener::Peer| {
        let app = app.load();
        let peer = Peer {
            ip: peer.addr.ip(),
            tls: peer.tls,
        };
        app.handle(request, peer)
    };
    listener::serve(
        Side::Visitor,
        listener,
        workers,
        tls,
        limits,
        metrics,
        handle,
        shutdown,
    )
    .await;
}

/// The metrics and the visitor listeners' limits, read from the config
/// current when each connection opens.
fn visitor_limits(app: &Arc<Live<App>>) -> (Arc<Metrics>, impl Fn() -> Limits + Send + 'static) {
    let metrics = app.load().metrics.clone();
    let open_files = listener::open_file_limit();
    let app = app.clone();
    (metrics, move || {
        Limits::visitor(&app.load().config.listen, open_files)
    })
}

/// Serves the plain-HTTP listener of `listen.redirect_http`: every request
/// is sent to the same host and path over HTTPS with `308`, so a form's
/// method and body would be sent again, not lost.
pub async fn serve_redirect(
    app: Arc<Live<App>>,
    listener: TcpListener,
    https_port: u16,
    shutdown: watch::Receiver<bool>,
) {
    let (metrics, limits) = visitor_limits(&app);
    let handle = move |request: Request<RequestBody>, _: listener::Peer| {
        let app = app.load();
        async move { https_redirect(&request, &app.config, https_port) }
    };
    listener::serve(
        Side::Visitor,
        listener,
        listener::Workers::default(),
        None,
        limits,
        metrics,
        handle,
        shutdown,
    )
    .await;
}

/// `308` to `https://HOST[:PORT]/path?query`: the host the request named
/// when it is a plain host name (its port replaced by the TLS listener's),
/// else the first of `listen.hosts`; nothing else is believed.
fn https_redirect<B>(request: &Request<B>, config: &Config, https_port: u16) -> Response<Body> {
    let named = checked_host(request)
        .ok()
        .flatten()
        .and_then(|h| h.to_str().ok().map(|h| route::normal_host(h).into_owned()));
    let host = named.or_else(|| config.listen.hosts.first().cloned());
    let Some(host) = host else {
        return plain(StatusCode::BAD_REQUEST, "no host to send you to");
    };
    if !config.listen.hosts.is_empty() && !config.listen.hosts.contains(&host) {
        return plain(StatusCode::MISDIRECTED_REQUEST, "unknown host");
    }
    let port = match https_port {
        443 => String::new(),
        port => format!(":{port}"),
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let path = if is_local_path(path) { path } else { "/" };
    let location = if host.contains(':') {
        format!("https://[{host}]{port}{path}")
    } else {
        format!("https://{host}{port}{path}")
    };
    let mut response = response(
        StatusCode::PERMANENT_REDIRECT,
        "text/plain; charset=utf-8",
        empty(),
    );
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => plain(StatusCode::BAD_REQUEST, "no host to send you to"),
    }
}

#[cfg(test)]
mod tests {
    use super::{accepts_json, is_local_path, is_plain_host, query_param};
    use std::borrow::Cow;

    #[test]
    fn json_is_answered_to_clients_that_ask_for_it_and_not_html() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "text/plain, application/json;q=0.9",
            " application/json ",
        ] {
            assert!(accepts_json(json.as_bytes()), "{json}");
        }
        for not in [
            "",
            "*/*",
            "text/html",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "application/json, text/html",
            "TEXT/HTML;q=0.1, application/json",
            "application/jsonx",
            "application/vnd.api+json",
        ] {
            assert!(!accepts_json(not.as_bytes()), "{not}");
        }
        assert!(!accepts_json(b"application/json\xff"));
        assert!(accepts_json(b"application/json, x/\xff"));
    }

    proptest::proptest! {
        #[test]
        fn a_query_value_is_what_the_form_decoder_reads(
            query in "[a=&%+2Fr]{0,16}",
            name in "[a=r]{1,2}",
        ) {
            let decoded = form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| *key == *name)
                .map(|(_, value)| value.into_owned());
            proptest::prop_assert_eq!(
                query_param(Some(&query), &name).map(Cow::into_owned),
                decoded
            );
        }
    }

    #[test]
    fn a_query_value_is_borrowed_unless_it_must_be_decoded() {
        let query = Some("a=1&room=ruang%20satu&next=/x&room=second&plain=kota");
        assert_eq!(query_param(query, "room").as_deref(), Some("ruang satu"));
        assert_eq!(
            query_param(Some("next=/a+b&room=x"), "next").as_deref(),
            Some("/a b")
        );
        assert_eq!(
            query_param(Some("room&next=/x"), "room").as_deref(),
            Some("")
        );
        assert_eq!(
            query_param(Some("&&room=x="), "room").as_deref(),
            Some("x=")
        );
        assert_eq!(query_param(Some("ro%6Fm=y"), "room").as_deref(), Some("y"));
        assert!(matches!(
            query_param(query, "plain"),
            Some(Cow::Borrowed("kota"))
        ));
        assert_eq!(query_param(query, "missing"), None);
        assert_eq!(query_param(None, "room"), None);
    }

    #[test]
    fn plain_hosts_only() {
        for good in [
            "kota.example",
            "kota.example:8080",
            "KOTA.example.",
            "127.0.0.1:80",
            "[::1]",
            "[2001:db8::1]:443",
            "under_score",
        ] {
            assert!(is_plain_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            ":80",
            "kota.example/daftar",
            "user@kota.example",
            "kota.example:99999",
            "kota.example:",
            "kota.example:8o",
            "a b",
            "evil.example, kota.example",
            "[::1",
            "[::1]x",
            "[]",
            "\u{e9}vil.example",
        ] {
            assert!(!is_plain_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn only_paths_on_this_site_are_redirect_targets() {
        for good in ["/", "/daftar", "/daftar?x=1&y=%20"] {
            assert!(is_local_path(good), "{good}");
        }
        for bad in [
            "",
            "daftar",
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\r\nSet-Cookie:x",
            "https://evil",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }
}
