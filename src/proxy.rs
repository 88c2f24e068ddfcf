//! Forwarding to the origin: one pooled HTTP/1.1 client, bodies streamed in
//! both directions, hop-by-hop headers removed, `X-Forwarded-*` set, and
//! `Upgrade` (WebSocket) connections spliced through.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::config::Origin;

/// The body of every response antre sends.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Why the origin could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot connect to the origin: {0}")]
    Connect(String),
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the origin failed: {0}")]
    Failed(String),
}

impl ProxyError {
    /// The status the visitor's error page carries.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Connect(_) | ProxyError::Failed(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Connect(_) => "connect",
            ProxyError::Timeout(_) => "timeout",
            ProxyError::Failed(_) => "failed",
        }
    }
}

/// Headers that describe one hop, not the message; never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Where a request came from, for the `X-Forwarded-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub ip: IpAddr,
    pub tls: bool,
}

/// How the `X-Forwarded-*` headers are written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forwarding {
    /// Keep what a proxy in front of antre set (`listen.trust_forwarded`).
    pub trust: bool,
    /// TLS ends in front of antre (`listen.secure_cookies`): the visitor
    /// used https.
    pub behind_tls: bool,
}

pub struct Proxy {
    client: Client<HttpConnector, Incoming>,
    origin: Origin,
    forwarding: Forwarding,
}

impl Proxy {
    pub fn new(origin: Origin, forwarding: Forwarding) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(origin.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(origin.pool_idle)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Proxy {
            client,
            origin,
            forwarding,
        }
    }

    /// Sends `request` to the origin and returns its response, with
    /// `set_cookies` added. Both bodies stream; nothing is buffered whole.
    pub async fn forward(
        &self,
        mut request: Request<Incoming>,
        peer: Peer,
        set_cookies: &[String],
    ) -> Result<Response<Body>, ProxyError> {
        let upgrade = wants_upgrade(request.headers()) && request.version() == Version::HTTP_11;
        let client_host = request.headers().get(header::HOST).cloned().or_else(|| {
            request
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
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
        rewrite_cookies(headers);
        let trust = self.forwarding.trust;
        set_forwarded_for(headers, peer.ip, trust);
        if !(trust && headers.contains_key(&X_FORWARDED_PROTO)) {
            let https = peer.tls || self.forwarding.behind_tls;
            headers.insert(
                X_FORWARDED_PROTO,
                HeaderValue::from_static(if https { "https" } else { "http" }),
            );
        }
        if let Some(host) = client_host
            .as_ref()
            .filter(|_| !(trust && headers.contains_key(&X_FORWARDED_HOST)))
        {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        if let Some(host) = self.origin.host.clone().or(client_host) {
            headers.insert(header::HOST, host);
        }

        *request.uri_mut() = self.origin_uri(request.uri())?;
        // The origin is spoken to over HTTP/1.1 whatever the client used.
        *request.version_mut() = Version::HTTP_11;

        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let mut response =
            match tokio::time::timeout(self.origin.response_timeout, self.client.request(request))
                .await
            {
                Err(_) => return Err(ProxyError::Timeout(self.origin.response_timeout)),
                Ok(Err(e)) if e.is_connect() => return Err(ProxyError::Connect(error_chain(&e))),
                Ok(Err(e)) => return Err(ProxyError::Failed(error_chain(&e))),
                Ok(Ok(response)) => response,
            };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let origin_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    match tokio::try_join!(client_upgrade, origin_upgrade) {
                        Ok((client, origin)) => {
                            let mut client = TokioIo::new(client);
                            let mut origin = TokioIo::new(origin);
                            if let Err(e) =
                                tokio::io::copy_bidirectional(&mut client, &mut origin).await
                            {
                                tracing::debug!(error = %e, "upgraded connection ended");
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                    }
                });
            }
        } else {
            strip_hop_by_hop(response.headers_mut());
        }
        for cookie in set_cookies {
            if let Ok(value) = HeaderValue::from_str(cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
        Ok(response.map(|body| body.boxed()))
    }

    fn origin_uri(&self, uri: &Uri) -> Result<Uri, ProxyError> {
        let path = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        let mut parts = self.origin.url.clone().into_parts();
        parts.path_and_query = Some(
            path.parse()
                .map_err(|e: http::uri::InvalidUri| ProxyError::Failed(e.to_string()))?,
        );
        Uri::from_parts(parts).map_err(|e| ProxyError::Failed(e.to_string()))
    }
}

/// Only WebSocket upgrades pass: an `h2c` upgrade would hand the client a
/// raw HTTP/2 tunnel to the origin that antre could no longer guard.
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
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
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Whether a `Cookie` pair (`name=value`) is one of antre's own.
fn is_own_cookie(pair: &[u8]) -> bool {
    let name = pair.split(|b| *b == b'=').next().unwrap_or(pair);
    name == b"antre-lang"
        || name == b"antre-hello"
        || name.starts_with(b"antre-pass-")
        || name.starts_with(b"antre-ticket-")
}

/// Keeps antre's own cookies away from the origin (they are of no use to
/// it, and its logs should not collect passes), and joins the several
/// `Cookie` fields an HTTP/2 client may send into the one HTTP/1.1 expects.
/// Works on bytes, so the site's own cookies pass untouched whatever they
/// hold.
fn rewrite_cookies(headers: &mut HeaderMap) {
    let fields = headers.get_all(header::COOKIE).iter().count();
    let pairs = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
            .map(|pair| pair.trim_ascii())
            .filter(|pair| !pair.is_empty())
    };
    if fields <= 1 && !pairs().any(is_own_cookie) {
        return;
    }
    let kept: Vec<&[u8]> = pairs().filter(|pair| !is_own_cookie(pair)).collect();
    let value = (!kept.is_empty())
        .then(|| HeaderValue::from_bytes(&kept.join(&b"; "[..])).ok())
        .flatten();
    headers.remove(header::COOKIE);
    if let Some(value) = value {
        headers.insert(header::COOKIE, value);
    }
}

/// `X-Forwarded-For`: the client's address, after those of trusted proxies
/// in front when `trust` is set; otherwise whatever the client claimed is
/// replaced.
fn set_forwarded_for(headers: &mut HeaderMap, ip: IpAddr, trust: bool) {
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(previous) if trust && !previous.trim().is_empty() => format!("{previous}, {ip}"),
        _ => ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
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
        rewrite_cookies(&mut headers);
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
        rewrite_cookies(&mut only_ours);
        assert!(!only_ours.contains_key(header::COOKIE));
    }

    #[test]
    fn forwarded_for_appends_to_what_came_before() {
        let mut headers = HeaderMap::new();
        set_forwarded_for(&mut headers, "10.0.0.1".parse().unwrap(), true);
        set_forwarded_for(&mut headers, "::1".parse().unwrap(), true);
        assert_eq!(headers[&X_FORWARDED_FOR], "10.0.0.1, ::1");
        set_forwarded_for(&mut headers, "192.0.2.7".parse().unwrap(), false);
        assert_eq!(
            headers[&X_FORWARDED_FOR], "192.0.2.7",
            "an untrusted claim is replaced"
        );
    }

    #[test]
    fn upgrade_needs_both_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!wants_upgrade(&headers));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(wants_upgrade(&headers));
    }
}
