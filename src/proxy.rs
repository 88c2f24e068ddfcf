//! Forwarding to the origin: pooled HTTP/1.1 connections (see
//! [`crate::pool`]; over TLS for an `https://` origin, verified), or for
//! an `https://` origin that offers HTTP/2 by ALPN one multiplexed HTTP/2
//! connection; bodies streamed in
//! both directions, hop-by-hop headers removed, identity headers rewritten
//! (see [`crate::forwarded`]), and `Upgrade` (WebSocket) connections
//! spliced through (always over HTTP/1.1).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::config::Origin;
use crate::cookie;
use crate::forwarded::{self, Hop};
use crate::listener::RequestBody;
use crate::pool::{Failure, OriginBody, Pool, Ready};
use crate::stream::MaybeTls;
use crate::wire::{self, HOP_BY_HOP};

/// The body of every response antre sends.
pub type Body = BoxBody<Bytes, BoxError>;

/// Any error, as response bodies and the origin client give them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request could not be answered by the origin.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot connect to the origin: {0}")]
    Connect(String),
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the origin failed: {0}")]
    Failed(String),
    /// The client's own request body was malformed or cut short: the
    /// client's fault, never counted as the origin's.
    #[error("the request body could not be read: {0}")]
    ClientBody(String),
}

impl ProxyError {
    /// The status the visitor's error page carries.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Connect(_) | ProxyError::Failed(_) => StatusCode::BAD_GATEWAY,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Connect(_) => "connect",
            ProxyError::Timeout(_) => "timeout",
            ProxyError::Failed(_) => "failed",
            ProxyError::ClientBody(_) => "client_body",
        }
    }
}

/// What goes to the origin besides the request itself.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The canonical path and query: exactly what routing matched.
    pub target: &'a str,
    pub hop: Hop<'a>,
    /// Cookies antre sets on the response (a pass): the response is then
    /// made private to the visitor.
    pub set_cookies: &'a [String],
    /// The signed `antre-admission` header of an admitted visitor's
    /// request; any the client sent is gone by then.
    pub admission: Option<&'a HeaderValue>,
    /// Every cookie the request carries is antre's ([`cookie::Jar::only_own`]):
    /// its `Cookie` fields are dropped without being read again.
    pub only_own_cookies: bool,
}

pub struct Proxy {
    pool: Arc<Pool>,
    origin: Origin,
    /// For an `https://` origin: HTTP/2, when it offers it.
    h2: Option<Http2Origin>,
}

impl Proxy {
    /// The client for `origin`. For an `https://` origin whose files the
    /// config check loaded but that cannot be read now, the error names
    /// the file.
    pub fn new(origin: Origin) -> Result<Self, crate::tls::TlsError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(origin.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = match &origin.tls {
            None => None,
            Some(tls) => {
                let roots = match &tls.ca_file {
                    Some(path) => crate::tls::roots(path)?,
                    None => crate::tls::system_roots(),
                };
                let name = rustls_pki_types::ServerName::try_from(tls.server_name.clone())
                    .map_err(|e| crate::tls::TlsError::Key(format!("origin.server_name: {e}")))?;
                let h1 = crate::tls::origin_connector(
                    roots.clone(),
                    tls.client.as_ref(),
                    &[b"http/1.1"],
                )?;
                let h2 = crate::tls::origin_connector(
                    roots,
                    tls.client.as_ref(),
                    &[b"h2", b"http/1.1"],
                )?;
                Some((h1, h2, name))
            }
        };
        let h2 = tls.as_ref().map(|(_, h2, name)| Http2Origin {
            connector: OriginConnector {
                http: http.clone(),
                tls: Some((h2.clone(), name.clone())),
            },
            url: origin.url.clone(),
            live: std::sync::Mutex::new(Protocol::Unknown),
            connecting: tokio::sync::Mutex::new(()),
        });
        let pool = Pool::new(
            OriginConnector {
                http,
                tls: tls.map(|(h1, _, name)| (h1, name)),
            },
            origin.url.clone(),
            origin.pool_max_idle,
            origin.pool_idle,
            origin.response_timeout,
        );
        Ok(Proxy { pool, origin, h2 })
    }

    /// Sends `request` to the origin at `outgoing.target` and returns its
    /// response. Both bodies stream; nothing is buffered whole.
    ///
    /// What needs no waiting is done before the future is made: over
    /// HTTP/1.1 (nearly every request) the head is written by then, and
    /// the future keeps neither the request nor the fields added to it.
    pub fn forward<'a>(
        &'a self,
        request: Request<RequestBody>,
        outgoing: Outgoing<'a>,
    ) -> impl std::future::Future<Output = Result<Response<Body>, ProxyError>> + Send + 'a {
        let upgrade = wants_upgrade(request.headers()) && request.version() == Version::HTTP_11;
        let websocket_key = request.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
        // Whether the client's body broke off: asked only of a request
        // that has one.
        let body_failed = (!hyper::body::Body::is_end_stream(request.body()))
            .then(|| Arc::new(AtomicBool::new(false)));
        let mut request = request.map(|body| ClientBody {
            inner: body,
            failed: body_failed.clone(),
        });

        let headers = request.headers_mut();
        let upgrade_protocol = headers.get(header::UPGRADE).cloned();
        strip_hop_by_hop(headers);
        if upgrade {
            if let Some(protocol) = upgrade_protocol {
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::UPGRADE, protocol);
            }
        }
        rewrite_cookies(headers, outgoing.only_own_cookies);
        // The fields this hop adds (identity, admission, the site in
        // `Host`) go straight into an HTTP/1.1 request's head; only
        // HTTP/2 needs them in the map.
        let identity = forwarded::identity(headers, outgoing.hop);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let host = self.origin.host.as_ref().or(outgoing.hop.host);
        let admission = outgoing.admission;
        let target = outgoing.target;
        let pending = match &self.h2 {
            Some(h2) if !upgrade => match h2.current() {
                Some(None) => {
                    Pending::Http1(self.http1(request, &identity, host, admission, target))
                }
                // Boxed: the rare way, its request not weighing on the
                // future of every HTTP/1.1 one.
                known => Pending::Http2(h2, Box::new((known.flatten(), request, identity))),
            },
            _ => Pending::Http1(self.http1(request, &identity, host, admission, target)),
        };
        async move {
            // After a `101` from an HTTP/1.1 origin: its side of the tunnel.
            let mut origin_tunnel = None;
            // Either way, a failure is (whether it was in connecting, its
            // description).
            let mut via_http2 = false;
            let sent = match pending {
                Pending::Http1(ready) => {
                    from_http1(self.pool.send_ready(ready?).await, &mut origin_tunnel)
                }
                Pending::Http2(h2, to) => {
                    let (known, request, identity) = *to;
                    let sender = match known {
                        Some(sender) => Some(sender),
                        // Connecting is rare; boxed, its future does not
                        // weigh on every request's.
                        None => Box::pin(tokio::time::timeout(
                            self.origin.connect_timeout,
                            h2.sender(),
                        ))
                        .await
                        .map_err(|_| {
                            ProxyError::Connect(format!(
                                "no connection within {:?}",
                                self.origin.connect_timeout
                            ))
                        })??,
                    };
                    match sender {
                        Some(sender) => {
                            via_http2 = true;
                            // Boxed, so an HTTP/1.1 request's state is not
                            // the size of an HTTP/2 exchange's.
                            Box::pin(
                                self.over_http2(sender, request, identity, host, admission, target),
                            )
                            .await?
                        }
                        // It chose HTTP/1.1.
                        None => {
                            let ready = self.http1(request, &identity, host, admission, target)?;
                            from_http1(self.pool.send_ready(ready).await, &mut origin_tunnel)
                        }
                    }
                }
            };
            let mut response = match sent {
                Err(_) => return Err(ProxyError::Timeout(self.origin.response_timeout)),
                Ok(Err((_, why)))
                    if body_failed
                        .as_ref()
                        .is_some_and(|failed| failed.load(Ordering::Relaxed)) =>
                {
                    return Err(ProxyError::ClientBody(why))
                }
                Ok(Err((true, why))) => return Err(ProxyError::Connect(why)),
                Ok(Err((false, why))) => return Err(ProxyError::Failed(why)),
                Ok(Ok(response)) => response,
            };

            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                // A tunnel opens only on a real WebSocket handshake: an origin
                // that answers 101 to anything would otherwise hand the client
                // a raw connection on which to send requests antre never sees.
                let accepted = websocket_key.as_ref().is_some_and(|key| {
                    response.headers().get(header::SEC_WEBSOCKET_ACCEPT)
                        == Some(&websocket_accept(key.as_bytes()))
                });
                if !accepted {
                    return Err(ProxyError::Failed(
                        "the origin switched protocols without completing a WebSocket handshake"
                            .to_owned(),
                    ));
                }
                if let (Some(client_upgrade), Some((mut origin, early))) =
                    (client_upgrade, origin_tunnel)
                {
                    tokio::spawn(async move {
                        match client_upgrade.await {
                            Ok(client) => {
                                let mut client = TokioIo::new(client);
                                // What the origin sent right after its head
                                // goes first.
                                let spliced = async {
                                    tokio::io::AsyncWriteExt::write_all(&mut client, &early)
                                        .await?;
                                    tokio::io::copy_bidirectional(&mut client, &mut origin).await
                                };
                                if let Err(e) = spliced.await {
                                    tracing::debug!(error = %e, "upgraded connection ended");
                                }
                            }
                            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                        }
                    });
                }
            } else if via_http2 {
                strip_hop_by_hop(response.headers_mut());
            }
            if !outgoing.set_cookies.is_empty() {
                keep_private(response.headers_mut());
            }
            for cookie in outgoing.set_cookies {
                if let Ok(value) = HeaderValue::from_str(cookie) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            Ok(response)
        }
    }

    /// The request over HTTP/1.1, its head written with the fields this
    /// hop adds; whatever the client used.
    fn http1(
        &self,
        request: Request<ClientBody>,
        identity: &forwarded::Identity,
        host: Option<&HeaderValue>,
        admission: Option<&HeaderValue>,
        target: &str,
    ) -> Result<Ready<ClientBody>, ProxyError> {
        // The target goes into the request line as it is: canonical
        // paths are visible ASCII and queries were parsed (raw UTF-8
        // in a query passes, as it came); a space, a line end or any
        // other control byte must never reach the wire.
        if target.bytes().any(|b| b <= b' ' || b == 0x7F) {
            return Err(ProxyError::Failed(format!(
                "{target:?} is not a request target"
            )));
        }
        // The site named in `Host`; the fields added kept on the stack:
        // at most the four of identity, the admission and `Host`.
        let host = match host {
            Some(host) => Some(host.as_bytes()),
            // Neither configured nor sent: the origin's own.
            None if !request.headers().contains_key(header::HOST) => self
                .origin
                .url
                .authority()
                .map(|a| a.as_str().as_bytes())
                .filter(|a| HeaderValue::from_bytes(a).is_ok()),
            None => None,
        };
        let fields = identity
            .fields()
            .chain(admission.map(|a| (crate::admission::HEADER_NAME, a.as_bytes())))
            .chain(host.map(|host| (header::HOST, host)));
        let mut added: [(HeaderName, &[u8]); 6] = std::array::from_fn(|_| (header::HOST, &[][..]));
        let mut count = 0;
        for (slot, field) in added.iter_mut().zip(fields) {
            *slot = field;
            count += 1;
        }
        Ok(Ready::new(request, target, &added[..count]))
    }

    /// The request over HTTP/2, the fields this hop adds put in its map.
    async fn over_http2(
        &self,
        sender: hyper::client::conn::http2::SendRequest<ClientBody>,
        mut request: Request<ClientBody>,
        identity: forwarded::Identity,
        host: Option<&HeaderValue>,
        admission: Option<&HeaderValue>,
        target: &str,
    ) -> Result<Sent, ProxyError> {
        let headers = request.headers_mut();
        headers.reserve(5);
        identity.apply(headers);
        if let Some(admission) = admission {
            headers.insert(crate::admission::HEADER_NAME, admission.clone());
        }
        // HTTP/2 names the site in `:authority`, from the URI; the `Host`
        // antre would send moves there.
        let sent_host = headers.remove(header::HOST);
        let host = host.or(sent_host.as_ref());
        *request.uri_mut() = self.origin_uri_for(host, target)?;
        *request.version_mut() = Version::HTTP_2;
        let sent =
            tokio::time::timeout(self.origin.response_timeout, send_http2(sender, request)).await;
        Ok(sent
            .map(|sent| {
                sent.map(|r| r.map(|body| body.map_err(BoxError::from).boxed()))
                    .map_err(|e| (false, error_chain(&e)))
            })
            .map_err(|_| TimedOut))
    }

    /// The origin's URL with `host` as its authority, for HTTP/2's
    /// `:authority`; the origin's own authority when there is no host or
    /// it cannot be one.
    fn origin_uri_for(&self, host: Option<&HeaderValue>, target: &str) -> Result<Uri, ProxyError> {
        let mut uri = self.origin_uri(target)?;
        // A host with user information is no authority HTTP/2 allows.
        let authority = host
            .filter(|h| !h.as_bytes().contains(&b'@'))
            .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok());
        if let Some(authority) = authority {
            let mut parts = uri.clone().into_parts();
            parts.authority = Some(authority);
            if let Ok(named) = Uri::from_parts(parts) {
                uri = named;
            }
        }
        Ok(uri)
    }

    fn origin_uri(&self, target: &str) -> Result<Uri, ProxyError> {
        let mut parts = self.origin.url.clone().into_parts();
        parts.path_and_query = Some(
            target
                .parse()
                .map_err(|e: http::uri::InvalidUri| ProxyError::Failed(e.to_string()))?,
        );
        Uri::from_parts(parts).map_err(|e| ProxyError::Failed(e.to_string()))
    }
}

/// A request on its way, as far as it could go without waiting.
enum Pending<'a> {
    /// Over HTTP/1.1, its head written (or why it could not be).
    Http1(Result<Ready<ClientBody>, ProxyError>),
    /// Over HTTP/2 on a connection in hand, or one to be made first (an
    /// origin that then chooses HTTP/1.1 gets it that way).
    #[allow(clippy::type_complexity)]
    Http2(
        &'a Http2Origin,
        Box<(
            Option<hyper::client::conn::http2::SendRequest<ClientBody>>,
            Request<ClientBody>,
            forwarded::Identity,
        )>,
    ),
}

/// No response head came within the response timeout.
struct TimedOut;

/// An exchange's result as [`Proxy::forward`] takes it, either way: in
/// time or not, and a failure as (whether it was in connecting, its
/// description).
type Sent = Result<Result<Response<Body>, (bool, String)>, TimedOut>;

/// An HTTP/1.1 exchange's result as [`Sent`]; after a `101`, the origin's
/// side of the tunnel goes in `tunnel`.
fn from_http1(
    sent: Result<Response<OriginBody>, Failure>,
    tunnel: &mut Option<(OriginStream, Bytes)>,
) -> Sent {
    match sent {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                *tunnel = body.into_tunnel();
                Ok(Ok(Response::from_parts(parts, crate::server::empty())))
            } else {
                Ok(Ok(Response::from_parts(parts, body.boxed())))
            }
        }
        Err(Failure::Connect(why)) => Ok(Err((true, why))),
        Err(Failure::Failed(why)) => Ok(Err((false, why))),
        Err(Failure::TimedOut) => Err(TimedOut),
    }
}

// === HTTP/2 to the origin ===

/// What an `https://` origin was found to speak.
enum Protocol {
    /// Not asked yet, or its last connection closed.
    Unknown,
    /// It chose HTTP/1.1 by ALPN: the pooled client is used.
    Http1,
    /// It chose HTTP/2: one connection carries every request.
    Http2(hyper::client::conn::http2::SendRequest<ClientBody>),
}

/// One multiplexed HTTP/2 connection to an origin that offers it, made
/// on first use and again after it closes. An origin that answers with
/// HTTP/1.1 is asked once and then left to the pooled client.
struct Http2Origin {
    connector: OriginConnector,
    url: Uri,
    /// A std `Mutex`: only read or replaced, never held across an await.
    live: std::sync::Mutex<Protocol>,
    /// Held while connecting, so a burst of requests makes one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl Http2Origin {
    fn current(&self) -> Option<Option<hyper::client::conn::http2::SendRequest<ClientBody>>> {
        match &*self.live.lock().unwrap_or_else(|p| p.into_inner()) {
            Protocol::Http1 => Some(None),
            Protocol::Http2(sender) if !sender.is_closed() => Some(Some(sender.clone())),
            _ => None,
        }
    }

    /// The HTTP/2 connection to use, or `None` when the origin speaks
    /// HTTP/1.1.
    async fn sender(
        &self,
    ) -> Result<Option<hyper::client::conn::http2::SendRequest<ClientBody>>, ProxyError> {
        if let Some(known) = self.current() {
            return Ok(known);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(known) = self.current() {
            return Ok(known);
        }
        let io = tower_service::Service::call(&mut self.connector.clone(), self.url.clone())
            .await
            .map_err(|e| ProxyError::Connect(error_chain(e.as_ref())))?;
        let h2 = matches!(io.inner(), MaybeTls::Tls(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2"));
        if !h2 {
            tracing::info!(origin = %self.url, "the origin speaks HTTP/1.1");
            *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Protocol::Http1;
            return Ok(None);
        }
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(io)
            .await
            .map_err(|e| ProxyError::Connect(error_chain(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP/2 connection to the origin ended");
            }
        });
        tracing::info!(origin = %self.url, "the origin speaks HTTP/2");
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Protocol::Http2(sender.clone());
        Ok(Some(sender))
    }
}

async fn send_http2(
    mut sender: hyper::client::conn::http2::SendRequest<ClientBody>,
    request: Request<ClientBody>,
) -> Result<Response<Incoming>, hyper::Error> {
    sender.ready().await?;
    sender.send_request(request).await
}

// === connecting to the origin ===

/// Connects to the origin: TCP, then TLS for an `https://` origin.
#[derive(Clone)]
pub struct OriginConnector {
    http: HttpConnector,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
}

type ConnectError = Box<dyn std::error::Error + Send + Sync>;

impl OriginConnector {
    /// Plain TCP, for tests.
    #[cfg(test)]
    pub(crate) fn plain(connect_timeout: Duration) -> OriginConnector {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        OriginConnector { http, tls: None }
    }
}

impl tower_service::Service<Uri> for OriginConnector {
    type Response = TokioIo<OriginStream>;
    type Error = ConnectError;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri);
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            match tls {
                None => Ok(TokioIo::new(MaybeTls::Plain(tcp))),
                Some((connector, name)) => {
                    let stream = connector.connect(name, tcp).await?;
                    Ok(TokioIo::new(MaybeTls::Tls(Box::new(stream))))
                }
            }
        })
    }
}

/// A connection to the origin, plain or TLS.
pub type OriginStream = MaybeTls<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// The client's request body on its way to the origin, noting whether it
/// failed (malformed chunks, a connection cut mid-body), so that failure is
/// blamed on the client, not the origin. The pool closes an origin
/// connection whose request body did not finish, so it is never reused.
pub struct ClientBody {
    inner: RequestBody,
    /// Set when reading the body fails; `None` for a request without one.
    failed: Option<Arc<AtomicBool>>,
}

impl hyper::body::Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Err(_))), Some(failed)) = (&poll, &self.failed) {
            failed.store(true, Ordering::Relaxed);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response that carries a visitor's pass is theirs alone: no shared
/// cache may keep it and hand the pass to the next person. What the origin
/// said about caching is kept for the browser, less what would let a
/// shared cache store it; `Vary: Cookie` is added.
fn keep_private(headers: &mut HeaderMap) {
    let directives: Vec<String> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect();
    let value = if directives.is_empty() {
        "no-store".to_owned()
    } else {
        let kept: Vec<&str> = directives
            .iter()
            .map(String::as_str)
            .filter(|d| {
                let name = d
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                !matches!(
                    name.as_str(),
                    "public" | "s-maxage" | "private" | "proxy-revalidate"
                )
            })
            .collect();
        std::iter::once("private")
            .chain(kept)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    let varies_by_cookie = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("cookie") || v.trim() == "*");
    if !varies_by_cookie {
        headers.append(header::VARY, HeaderValue::from_static("Cookie"));
    }
}

/// Only WebSocket upgrades pass: an `h2c` upgrade would hand the client a
/// raw HTTP/2 tunnel to the origin that antre could no longer guard.
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && headers.contains_key(header::SEC_WEBSOCKET_KEY)
}

/// The `Sec-WebSocket-Accept` that answers `key` (RFC 6455 section 4.2.2).
pub fn websocket_accept(key: &[u8]) -> HeaderValue {
    use base64::Engine as _;
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key);
    context.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(context.finish());
    HeaderValue::from_str(&accept).unwrap_or(HeaderValue::from_static("-"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes the standard hop-by-hop headers and any named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Fields `Connection` names beyond the standard ones: it nearly always
    // says only `keep-alive`, which is one of them, so nothing is looked up
    // (or allocated) then.
    let mut named: Vec<HeaderName> = Vec::new();
    for token in connection_tokens(headers) {
        if token.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            if !HOP_BY_HOP.contains(&name) && headers.contains_key(&name) {
                named.push(name);
            }
        }
    }
    // One look over the names present, noting which standard ones are
    // there (told by length and first letter; a visitor's request nearly
    // always has none); removing (which hashes each name) only those.
    let mut present = 0u16;
    for name in headers.keys() {
        if !wire::is_hop_by_hop(name.as_str().as_bytes()) {
            continue;
        }
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << i;
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    for name in named {
        headers.remove(name);
    }
}

/// Keeps antre's own cookies away from the origin (they are of no use to
/// it, and its logs should not collect passes), and joins the several
/// `Cookie` fields an HTTP/2 client may send into the one HTTP/1.1 expects.
/// Works on bytes, so the site's own cookies pass untouched whatever they
/// hold.
fn rewrite_cookies(headers: &mut HeaderMap, only_own: bool) {
    // An admitted visitor's request usually carries the pass alone: the
    // jar has seen every pair already.
    if only_own {
        headers.remove(header::COOKIE);
        return;
    }
    let kept = {
        let fields = headers.get_all(header::COOKIE);
        let pairs = || {
            fields
                .iter()
                .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
                .map(<[u8]>::trim_ascii)
                .filter(|pair| !pair.is_empty())
        };
        // One field with none of antre's (a request for an unguarded path)
        // goes on as it came, nothing copied; the look stops at the first
        // of antre's, which an admitted visitor's pass usually is.
        if fields.iter().nth(1).is_none() && !pairs().any(cookie::is_own) {
            return;
        }
        let mut kept: Vec<u8> = Vec::new();
        for pair in pairs().filter(|pair| !cookie::is_own(pair)) {
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
        kept
    };
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(kept)) {
            headers.insert(header::COOKIE, value);
        }
    }
}

pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookie::Jar;

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::ACCEPT));

        // `Upgrade` goes too; a name `Connection` lists that is not there,
        // or is not a header name at all, changes nothing else.
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, close, x-absent, bad name"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("close", HeaderValue::from_static("named, so removed"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn antre_cookies_stay_out_and_split_cookie_fields_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("session=abc; antre-pass-vaksin=1.k.1.2.3.x"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("antre-lang=en"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"theme=dark; nama=J\xc3\xa9r\xc3\xb4me; antre-x=site-own")
                .unwrap(),
        );
        let only_own = Jar::from_headers(&headers).only_own();
        rewrite_cookies(&mut headers, only_own);
        let cookies: Vec<_> = headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect();
        assert_eq!(
            cookies,
            vec![b"session=abc; theme=dark; nama=J\xc3\xa9r\xc3\xb4me; antre-x=site-own".to_vec()]
        );

        let mut only_ours = HeaderMap::new();
        only_ours.insert(
            header::COOKIE,
            HeaderValue::from_static("antre-ticket-vaksin=1.k.1.2.3.x"),
        );
        let only_own = Jar::from_headers(&only_ours).only_own();
        rewrite_cookies(&mut only_ours, only_own);
        assert!(!only_ours.contains_key(header::COOKIE));

        // One field with none of antre's goes on exactly as it came.
        let mut site_only = HeaderMap::new();
        site_only.insert(
            header::COOKIE,
            HeaderValue::from_static("session=abc;;  theme=dark ;"),
        );
        let only_own = Jar::from_headers(&site_only).only_own();
        rewrite_cookies(&mut site_only, only_own);
        assert_eq!(site_only[header::COOKIE], "session=abc;;  theme=dark ;");
    }

    #[test]
    fn a_pass_makes_the_response_private() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=600, s-maxage=600"),
        );
        keep_private(&mut headers);
        assert_eq!(headers[header::CACHE_CONTROL], "private, max-age=600");
        assert_eq!(headers[header::VARY], "Cookie");

        let mut silent = HeaderMap::new();
        silent.insert(
            header::VARY,
            HeaderValue::from_static("Accept-Encoding, cookie"),
        );
        keep_private(&mut silent);
        assert_eq!(silent[header::CACHE_CONTROL], "no-store");
        assert_eq!(silent.get_all(header::VARY).iter().count(), 1);
    }

    #[test]
    fn upgrade_needs_a_whole_websocket_handshake() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!wants_upgrade(&headers));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(!wants_upgrade(&headers));
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert!(wants_upgrade(&headers));
        // RFC 6455's own example.
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
