//! The visitor listener: takes each request (HTTP/1.1 and HTTP/2; the
//! connections themselves are `listener`'s) through its phases (antre's own endpoints, routing to a
//! room, the admission decision, forwarding) and turns every outcome into a
//! response in this one place.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{self, Config};
use crate::engine::{CookieOptions, Decision, Engine, Jar, Mode};
use crate::listener::{self, Limits, Side};
use crate::live::Live;
use crate::metrics::{Metrics, Outcome};
use crate::page::{self, Lang, PageContext, PageKind};
use crate::proxy::{Body, Peer, Proxy, ProxyError};
use crate::status::{State, Status};
use crate::store::AnyStore;

const LANG_COOKIE: &str = "antre-lang";

/// Set on a first visit; its return shows the client keeps cookies.
const HELLO_COOKIE: &str = "antre-hello";

/// Everything a request needs, shared by all connections.
pub struct App {
    pub config: Arc<Config>,
    pub engine: Arc<Engine<AnyStore>>,
    pub metrics: Arc<Metrics>,
    pub proxy: Proxy,
}

impl App {
    /// Handles one request from `peer`. Never fails: every error becomes a
    /// page or JSON answer here.
    pub async fn handle(&self, request: Request<Incoming>, peer: Peer) -> Response<Body> {
        let prefix = &self.config.listen.prefix;
        if let Some(rest) = request.uri().path().strip_prefix(prefix.as_str()) {
            if rest.starts_with('/') {
                let rest = rest.to_owned();
                return self.internal(&rest, &request, peer).await;
            }
        }

        let host = request_host(&request);
        let room = config::route(&self.config.rooms, host.as_deref(), request.uri().path());
        // A CORS preflight carries no cookies and does nothing by itself:
        // it needs no place in line.
        let Some(room_index) = room.filter(|_| request.method() != Method::OPTIONS) else {
            let (lang, json) = (visitor_lang(&request), wants_json(&request));
            self.metrics.request("none", Outcome::Unguarded);
            return match self.forward(request, peer, &[]).await {
                Ok(response) => response,
                Err(e) => self.origin_trouble(None, &e, lang, json),
            };
        };
        let room_id = self.config.rooms[room_index].id.as_str();
        if let Some(response) = self.cookie_check(&request) {
            self.metrics.request(room_id, Outcome::CookieCheck);
            return response;
        }

        let cookie_options = self.cookie_options(peer);
        // One parse of the cookies serves both the decision and the language.
        let (decision, lang) = {
            let jar = cookie_jar(&request);
            let decision = self
                .engine
                .decide(room_index, &jar, Mode::Request, cookie_options)
                .await;
            (decision, negotiate_lang(&request, &jar))
        };
        let json = wants_json(&request);
        match decision {
            Decision::Forward {
                set_cookies,
                admitted_now,
            } => {
                let outcome = if admitted_now {
                    Outcome::Admitted
                } else {
                    Outcome::Forwarded
                };
                self.metrics.request(room_id, outcome);
                match self.forward(request, peer, &set_cookies).await {
                    Ok(response) => response,
                    Err(e) => {
                        let mut response = self.origin_trouble(Some(room_index), &e, lang, json);
                        append_cookies(&mut response, &set_cookies);
                        response
                    }
                }
            }
            Decision::Hold {
                status,
                set_cookies,
            } => {
                let back = request
                    .uri()
                    .path_and_query()
                    .map(|pq| pq.as_str())
                    .unwrap_or("/");
                let outcome = match status.state {
                    State::Paused => Outcome::Paused,
                    State::SoldOut => Outcome::SoldOut,
                    State::Waiting | State::Admitted => Outcome::Waiting,
                };
                self.metrics.request(room_id, outcome);
                let mut response = self.hold_page(room_index, &status, lang, json, back);
                append_cookies(&mut response, &set_cookies);
                response
            }
            Decision::NoTicket => plain(StatusCode::INTERNAL_SERVER_ERROR, "no ticket"),
        }
    }

    /// Forwards to the origin, timing its answer and counting its failures.
    async fn forward(
        &self,
        request: Request<Incoming>,
        peer: Peer,
        set_cookies: &[String],
    ) -> Result<Response<Body>, ProxyError> {
        let started = std::time::Instant::now();
        let result = self.proxy.forward(request, peer, set_cookies).await;
        match &result {
            Ok(_) => self
                .metrics
                .origin_seconds
                .observe(started.elapsed().as_secs_f64()),
            Err(e) => self.metrics.origin_error(e.kind()),
        }
        result
    }

    /// A first visit (no antre cookie at all) to a guarded page is sent
    /// back to the same address with a small cookie before it may take a
    /// place. Browsers follow at once; clients that keep no cookies (health
    /// checks, monitors, crawlers) never come back with it, so they neither
    /// take a ticket nor use the quota.
    fn cookie_check(&self, request: &Request<Incoming>) -> Option<Response<Body>> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return None;
        }
        let has_ours = request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .any(|v| v.as_bytes().windows(6).any(|w| w == b"antre-"));
        if has_ours {
            return None;
        }
        let location = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let mut response = response(
            StatusCode::TEMPORARY_REDIRECT,
            "text/plain; charset=utf-8",
            empty(),
        );
        if let Ok(location) = HeaderValue::from_str(location) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        let secure = if self.config.listen.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        let cookie =
            format!("{HELLO_COOKIE}=1; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax{secure}");
        append_cookies(&mut response, &[cookie]);
        Some(response)
    }

    fn cookie_options(&self, peer: Peer) -> CookieOptions {
        CookieOptions {
            secure: peer.tls || self.config.listen.secure_cookies,
        }
    }

    /// antre's own endpoints under the prefix.
    async fn internal(
        &self,
        rest: &str,
        request: &Request<Incoming>,
        peer: Peer,
    ) -> Response<Body> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({"error": "method_not_allowed"}),
            );
        }
        match rest {
            "/health" => self.health(),
            "/lang" => self.switch_lang(request),
            "/status" => self.status(request, peer).await,
            _ => json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "not_found"}),
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
    async fn status(&self, request: &Request<Incoming>, peer: Peer) -> Response<Body> {
        let wanted = query_param(request.uri().query(), "room");
        let jar = cookie_jar(request);
        let rooms = self.engine.rooms();
        let candidates: Vec<usize> = match &wanted {
            Some(id) => match rooms.iter().position(|r| r.config.id == *id) {
                Some(index) => vec![index],
                None => {
                    return json_response(
                        StatusCode::NOT_FOUND,
                        &serde_json::json!({"error": "unknown_room", "room": id}),
                    )
                }
            },
            // Without a room, the first room the visitor holds a cookie for.
            None => (0..rooms.len())
                .filter(|i| {
                    let room = &rooms[*i];
                    jar.values(room.pass_cookie_name()).next().is_some()
                        || jar.values(room.ticket_cookie_name()).next().is_some()
                })
                .collect(),
        };
        for index in candidates {
            match self
                .engine
                .decide(index, &jar, Mode::Status, self.cookie_options(peer))
                .await
            {
                Decision::Forward { set_cookies, .. } => {
                    if let Some(status) = self.engine.admitted_status(index) {
                        let mut response = json_response(StatusCode::OK, &status);
                        append_cookies(&mut response, &set_cookies);
                        return response;
                    }
                }
                Decision::Hold {
                    status,
                    set_cookies,
                } => {
                    let mut response = json_response(StatusCode::OK, &status);
                    append_cookies(&mut response, &set_cookies);
                    return response;
                }
                Decision::NoTicket => {}
            }
        }
        json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "no_ticket", "room": wanted}),
        )
    }

    /// `GET {prefix}/lang?set=en&back=/path`: remembers the language and
    /// goes back to the page the visitor came from.
    fn switch_lang(&self, request: &Request<Incoming>) -> Response<Body> {
        let query = request.uri().query();
        let lang = query_param(query, "set").and_then(|code| Lang::from_code(&code));
        let back = query_param(query, "back")
            .filter(|b| is_local_path(b))
            .unwrap_or_else(|| "/".to_owned());
        let mut response = response(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", empty());
        let location = HeaderValue::from_str(&back).unwrap_or(HeaderValue::from_static("/"));
        response.headers_mut().insert(header::LOCATION, location);
        if let Some(lang) = lang {
            let cookie = format!(
                "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
                lang.code()
            );
            append_cookies(&mut response, &[cookie]);
        }
        response
    }

    /// The queue page (or its JSON) for a visitor kept out.
    fn hold_page(
        &self,
        room_index: usize,
        status: &Status,
        lang: Lang,
        json: bool,
        back: &str,
    ) -> Response<Body> {
        let code = match status.state {
            State::SoldOut => StatusCode::GONE,
            State::Admitted => StatusCode::OK,
            State::Waiting | State::Paused => StatusCode::SERVICE_UNAVAILABLE,
        };
        let kind = match status.state {
            State::SoldOut => PageKind::SoldOut,
            State::Paused => PageKind::Paused,
            State::Waiting | State::Admitted => PageKind::Waiting,
        };
        let mut response = if json {
            json_response(code, status)
        } else {
            self.render(room_index, kind, status, lang, back, code)
        };
        if status.state != State::SoldOut {
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
        lang: Lang,
        json: bool,
    ) -> Response<Body> {
        tracing::warn!(error = %error, "origin request failed");
        let code = error.status();
        let refresh = 10;
        let mut response = match room_index {
            Some(index) if !json => {
                let mut status = self
                    .engine
                    .admitted_status(index)
                    .unwrap_or_else(|| unknown_status(refresh));
                status.refresh_seconds = refresh;
                self.render(index, PageKind::OriginTrouble, &status, lang, "/", code)
            }
            _ if json => json_response(
                code,
                &serde_json::json!({
                    "error": "origin_unavailable",
                    "kind": error.kind(),
                    "message": "The site behind the waiting room is not answering; your place and access are kept.",
                    "refresh_seconds": refresh,
                }),
            ),
            _ => html_response(code, origin_trouble_fallback(lang)),
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
        let lang_switch_url = format!("{prefix}/lang?back={}&set=", percent_encode(back));
        let context = PageContext {
            kind,
            lang,
            status,
            title: &room.config.title,
            status_url: &status_url,
            lang_switch_url: &lang_switch_url,
            utc_offset_minutes: self.config.page.utc_offset_minutes,
        };
        html_response(
            code,
            page::render(&context, room.config.template.as_deref()),
        )
    }
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
        requeued: false,
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

// === request helpers ===

fn cookie_jar(request: &Request<Incoming>) -> Jar<'_> {
    Jar::parse(
        request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

fn request_host(request: &Request<Incoming>) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
}

fn visitor_lang(request: &Request<Incoming>) -> Lang {
    negotiate_lang(request, &cookie_jar(request))
}

/// The visitor's language: their own choice (cookie), else their browser's.
fn negotiate_lang(request: &Request<Incoming>, jar: &Jar<'_>) -> Lang {
    let accept = request
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    page::negotiate(accept, jar.values(LANG_COOKIE).next())
}

/// API clients ask for JSON; browsers ask for HTML (and often `*/*`).
fn wants_json(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json") && !accept.contains("text/html"))
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| config::percent_decode(&value.replace('+', " ")))
    })
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

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// === responses ===

fn empty() -> Body {
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

fn plain(code: StatusCode, text: &'static str) -> Response<Body> {
    response(code, "text/plain; charset=utf-8", full(text))
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
/// handled by the config current when it arrives.
pub async fn serve(app: Arc<Live<App>>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
    let metrics = app.load().metrics.clone();
    let open_files = listener::open_file_limit();
    let limits = {
        let app = app.clone();
        move || Limits::visitor(&app.load().config.listen, open_files)
    };
    let handle = move |request: Request<Incoming>, addr: SocketAddr| {
        let app = app.load();
        let peer = Peer {
            ip: addr.ip(),
            tls: false,
        };
        async move { app.handle(request, peer).await }
    };
    listener::serve(Side::Visitor, listener, limits, metrics, handle, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::is_local_path;

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
