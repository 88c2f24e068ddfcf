//! The operators' listener, apart from visitor traffic: a JSON API to watch
//! rooms and change them live (through the store, so every instance of a
//! fleet follows), the dashboard, metrics, health and readiness for
//! orchestrators. Every request but `/healthz` and the dashboard's own
//! files needs the bearer token when one is configured.
//!
//! Operators open the dashboard in the same browser they use for anything
//! else, so the listener also guards against other sites: without a token
//! it answers only to loopback host names (a DNS-rebound name gets 403),
//! and a change must be JSON from the listener's own origin, which a page
//! elsewhere cannot send without a CORS preflight this listener never
//! grants.

use std::sync::Arc;

use crate::listener::RequestBody;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::MICROS_PER_SECOND;
use crate::config::Config;
use crate::engine::{Engine, Room};
use crate::listener::{self, Limits, Side};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::proxy::Body;
use crate::series::Series;
use crate::server::full;
use crate::store::{AnyStore, AuditEntry, SettingsChange, Standing, Store};

/// Largest admin request body read.
const MAX_BODY: usize = 64 * 1024;

const DASHBOARD_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

/// Audit entries `GET /api/audit` returns.
const AUDIT_SHOWN: usize = 200;

/// The admin API over one config generation; a reload builds a new one.
pub struct Admin {
    pub config: Arc<Config>,
    pub engine: Arc<Engine<AnyStore>>,
    pub metrics: Arc<Metrics>,
    /// Shared by every generation, so a reload keeps the charts' history.
    pub series: Arc<Series>,
}

/// A live change as the API takes it. Unknown fields are refused, so a
/// typo is an error, not a silent no-op.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomPatch {
    admit_per_minute: Option<u32>,
    /// A number sets the quota; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    quota: Option<Option<u64>>,
    paused: Option<bool>,
    pass_minutes: Option<u64>,
}

/// Tells a field that is absent (`None`) from one that is `null`
/// (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    /// Must repeat the room's id.
    confirm: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    /// How many visitors the link lets in.
    uses: u32,
    /// How long it works, in minutes.
    minutes: u64,
}

impl Admin {
    pub fn new(
        config: Arc<Config>,
        engine: Arc<Engine<AnyStore>>,
        metrics: Arc<Metrics>,
        series: Arc<Series>,
    ) -> Self {
        Admin {
            config,
            engine,
            metrics,
            series,
        }
    }

    pub async fn handle(&self, request: Request<RequestBody>) -> Response<Body> {
        let path = request.uri().path().to_owned();
        if path == "/healthz" {
            return json(StatusCode::OK, &serde_json::json!({"status": "ok"}));
        }
        // Probes carry no token: readiness answers without one (the rooms
        // whose store is down are named only to those who have it).
        if path == "/readyz" && request.method() == Method::GET {
            return self.ready(self.authorized(&request));
        }
        if let Some(refusal) = self.refusal(&request) {
            return refusal;
        }
        // The dashboard's files hold no data: they load without the token,
        // and the page asks for it when the API does.
        if request.method() == Method::GET {
            match path.as_str() {
                "/" => return asset(DASHBOARD_HTML, "text/html; charset=utf-8"),
                "/dashboard.js" => return asset(DASHBOARD_JS, "text/javascript; charset=utf-8"),
                "/dashboard.css" => return asset(DASHBOARD_CSS, "text/css; charset=utf-8"),
                _ => {}
            }
        }
        if !self.authorized(&request) {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = request.method().clone();
        match (method, segments.as_slice()) {
            (Method::GET, ["metrics"]) => {
                let text = self.metrics.render(&self.engine);
                let mut response = Response::new(full(text));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            (Method::GET, ["api", "rooms"]) => {
                let rooms: Vec<_> = self.engine.rooms().iter().map(|r| self.report(r)).collect();
                json(StatusCode::OK, &rooms)
            }
            (Method::GET, ["api", "rooms", id]) => match self.room(id) {
                Some(room) => json(StatusCode::OK, &self.report(room)),
                None => unknown_room(id),
            },
            (Method::PATCH, ["api", "rooms", id]) => {
                let id = id.to_string();
                self.patch(&id, request).await
            }
            (Method::POST, ["api", "rooms", id, "reset"]) => {
                let id = id.to_string();
                self.reset(&id, request).await
            }
            (Method::POST, ["api", "rooms", id, "invites"]) => {
                let id = id.to_string();
                self.invite(&id, request).await
            }
            (Method::GET, ["api", "audit"]) => match self.engine.store().audit(AUDIT_SHOWN).await {
                Ok(audit) => json(StatusCode::OK, &audit),
                Err(e) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    &e.to_string(),
                ),
            },
            (Method::GET, ["api", "series"]) => json(StatusCode::OK, &self.series.snapshot()),
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
        }
    }

    /// The answer refusing what another site could make a browser send:
    /// any request by a name other than loopback while there is no token,
    /// and a change that is not JSON or comes from another origin.
    fn refusal(&self, request: &Request<RequestBody>) -> Option<Response<Body>> {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                request
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        if self.config.admin.token.is_none() {
            if let Some(authority) = &authority {
                if !is_loopback_name(authority) {
                    return Some(error(
                        StatusCode::FORBIDDEN,
                        "forbidden_host",
                        &format!(
                            "without [admin] token only loopback names are served, not {authority:?}"
                        ),
                    ));
                }
            }
        }
        if matches!(*request.method(), Method::GET | Method::HEAD) {
            return None;
        }
        let headers = request.headers();
        let fetched_from = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let own_origin = |origin: &str| {
            let host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            host.is_some() && host == authority.as_deref()
        };
        if matches!(fetched_from, "cross-site" | "same-site")
            || origin.is_some_and(|o| !own_origin(o))
        {
            return Some(error(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "changes are taken only from the admin listener's own pages and from clients such as antre ctl",
            ));
        }
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Some(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not_json",
                "send the change as Content-Type: application/json",
            ));
        }
        None
    }

    fn authorized(&self, request: &Request<RequestBody>) -> bool {
        let Some(token) = &self.config.admin.token else {
            return true;
        };
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), token.as_bytes())
    }

    fn room(&self, id: &str) -> Option<&Room> {
        self.engine.rooms().iter().find(|r| r.config.id == id)
    }

    /// Ready when every room's store answers.
    fn ready(&self, authorized: bool) -> Response<Body> {
        let down: Vec<&str> = self
            .engine
            .rooms()
            .iter()
            .filter(|r| !r.store_healthy())
            .map(|r| r.config.id.as_str())
            .collect();
        if down.is_empty() {
            json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
        } else {
            let mut body = serde_json::json!({"status": "store_unavailable"});
            if authorized {
                body["rooms"] = down.into();
            }
            json(StatusCode::SERVICE_UNAVAILABLE, &body)
        }
    }

    /// What an operator sees of a room, from this instance's cached view.
    fn report(&self, room: &Room) -> serde_json::Value {
        let now = self.engine.clock().now_micros();
        let view = room.view();
        let settings = &view.settings;
        let frontier = view.projected_frontier(now);
        let waiting = view.tail.saturating_sub(frontier);
        let interval = settings.interval_at(now, view.releasable(now));
        let seconds = |micros: u64| micros.div_ceil(MICROS_PER_SECOND);
        let last_wait = (waiting > 0)
            .then(|| view.release_time(view.tail, now))
            .flatten()
            .map(|at| seconds(at.saturating_sub(now)));
        let quota_out = settings
            .quota
            .filter(|_| !settings.paused)
            .map(|_| seconds(view.releasable(now).saturating_mul(interval)));
        let (standing, next_opening) = match view.standing(now) {
            Standing::Open => ("open", None),
            Standing::Paused => ("paused", None),
            Standing::SoldOut { next } => ("sold_out", next),
            Standing::Closed { next } => ("closed", next),
        };
        let next_opening = next_opening.map(|at| at / MICROS_PER_SECOND);
        serde_json::json!({
            "id": room.config.id,
            "title": room.config.title,
            "paths": room.config.paths,
            "epoch": view.epoch,
            "tail": view.tail,
            "frontier": frontier,
            "waiting": waiting,
            "admitted": view.admitted,
            "admitted_last_minute": room.admitted_last_minute(),
            "admit_per_minute": settings.admit_per_minute,
            "configured_admit_per_minute": room.config.settings.admit_per_minute,
            "quota": settings.quota,
            "quota_left": view.quota_left(now),
            "sold_out": view.sold_out(now),
            "standing": standing,
            "next_opening": next_opening,
            "phase": settings.phase_at(now).map(|phase| serde_json::json!({
                "opens": phase.start / MICROS_PER_SECOND,
                "closes": phase.end / MICROS_PER_SECOND,
                "quota": phase.quota,
                "admit_per_minute": (!phase.spread()).then_some(phase.admit_per_minute),
                "spread": phase.spread(),
            })),
            "campaign": room.config.campaign,
            "unused": room.config.unused.as_ref().map(|rule| serde_json::json!({
                "at": rule.at / MICROS_PER_SECOND,
                "to": rule.to,
            })),
            "places_given": view.given,
            "places_received": view.received,
            "paused": settings.paused,
            "pass_minutes": settings.pass_seconds / 60,
            "last_in_line_wait_seconds": last_wait,
            "drains_in_seconds": last_wait,
            "quota_runs_out_in_seconds": quota_out,
            "store": if room.store_healthy() { "ok" } else { "unavailable" },
            "updated_at": view.at / MICROS_PER_SECOND,
        })
    }

    async fn patch(&self, id: &str, request: Request<RequestBody>) -> Response<Body> {
        let Some(room) = self.room(id) else {
            return unknown_room(id);
        };
        let who = operator(&request);
        let (raw, patch) = match read_json::<RoomPatch>(request).await {
            Ok(parsed) => parsed,
            Err(response) => return response,
        };
        let mut problems = Vec::new();
        if let Some(rate) = patch.admit_per_minute {
            if rate == 0 || rate > 600_000 {
                problems.push(format!(
                    "admit_per_minute must be between 1 and 600000, got {rate}"
                ));
            }
        }
        if let Some(Some(0)) = patch.quota {
            problems.push("quota must be at least 1; send null for no quota".to_owned());
        }
        if let Some(minutes) = patch.pass_minutes {
            if minutes == 0 || minutes > 7 * 24 * 60 {
                problems.push(format!(
                    "pass_minutes must be between 1 and 10080, got {minutes}"
                ));
            }
        }
        if patch.admit_per_minute.is_none()
            && patch.quota.is_none()
            && patch.paused.is_none()
            && patch.pass_minutes.is_none()
        {
            problems.push(
                "nothing to change: send admit_per_minute, quota, paused or pass_minutes"
                    .to_owned(),
            );
        }
        if !problems.is_empty() {
            return json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &serde_json::json!({"error": "invalid", "problems": problems}),
            );
        }
        let change = SettingsChange {
            admit_per_minute: patch.admit_per_minute,
            quota: patch.quota,
            paused: patch.paused,
            pass_seconds: patch.pass_minutes.map(|m| m * 60),
        };
        let now = self.engine.clock().now_micros();
        match self.engine.store().update(id, &change, now).await {
            Ok(view) => {
                self.engine.offer(room, view);
                self.record(&who, id, raw).await;
                json(StatusCode::OK, &self.report(room))
            }
            Err(e) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                &e.to_string(),
            ),
        }
    }

    async fn reset(&self, id: &str, request: Request<RequestBody>) -> Response<Body> {
        let Some(room) = self.room(id) else {
            return unknown_room(id);
        };
        let who = operator(&request);
        let (raw, reset) = match read_json::<ResetRequest>(request).await {
            Ok(parsed) => parsed,
            Err(response) => return response,
        };
        if reset.confirm != id {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unconfirmed",
                &format!(
                    "a reset drops everyone's place: send {{\"confirm\": \"{id}\"}} to confirm"
                ),
            );
        }
        let now = self.engine.clock().now_micros();
        match self.engine.store().reset(id, now).await {
            Ok(view) => {
                self.engine.offer(room, view);
                self.record(&who, id, serde_json::json!({"reset": raw}))
                    .await;
                json(StatusCode::OK, &self.report(room))
            }
            Err(e) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                &e.to_string(),
            ),
        }
    }

    /// `POST /api/rooms/ID/invites {"uses": N, "minutes": M}`: a staff
    /// invite link that lets `uses` visitors skip the line for `minutes`.
    async fn invite(&self, id: &str, request: Request<RequestBody>) -> Response<Body> {
        let Some(index) = self.engine.rooms().iter().position(|r| r.config.id == id) else {
            return unknown_room(id);
        };
        let who = operator(&request);
        let (raw, asked) = match read_json::<InviteRequest>(request).await {
            Ok(parsed) => parsed,
            Err(response) => return response,
        };
        let mut problems = Vec::new();
        if !(1..=100_000).contains(&asked.uses) {
            problems.push(format!(
                "uses: must be between 1 and 100000, got {}",
                asked.uses
            ));
        }
        if !(1..=7 * 24 * 60).contains(&asked.minutes) {
            problems.push(format!(
                "minutes: must be between 1 and 10080, got {}",
                asked.minutes
            ));
        }
        if !problems.is_empty() {
            return json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &serde_json::json!({"error": "invalid", "problems": problems}),
            );
        }
        let Some(invite) = self.engine.invite(index, asked.uses, asked.minutes) else {
            return unknown_room(id);
        };
        let path = format!(
            "{}/invite?room={id}&token={}",
            self.config.listen.prefix, invite.token
        );
        self.record(
            &who,
            id,
            serde_json::json!({"invite": raw, "id": format!("{:016x}", invite.id)}),
        )
        .await;
        let url = self.config.listen.hosts.first().map(|host| {
            let scheme = if self.config.listen.secure_cookies {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}{path}")
        });
        json(
            StatusCode::OK,
            &serde_json::json!({
                "room": id,
                "id": format!("{:016x}", invite.id),
                "uses": invite.uses,
                "expires": invite.expires,
                "path": path,
                "url": url,
            }),
        )
    }

    /// Logs a change and adds it to the fleet's audit trail. The change
    /// has already been made, so a trail the store cannot take is logged
    /// as an error rather than undoing it.
    async fn record(&self, who: &str, room: &str, change: serde_json::Value) {
        tracing::info!(who, room, change = %change, "admin change");
        let entry = AuditEntry {
            at: self.engine.clock().now_seconds(),
            who: who.to_owned(),
            room: room.to_owned(),
            change,
        };
        if let Err(e) = self.engine.store().record(&entry).await {
            tracing::error!(who, room, error = %e, "could not add the change to the audit trail");
        }
    }
}

fn operator(request: &Request<RequestBody>) -> String {
    request
        .headers()
        .get("x-antre-operator")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .unwrap_or("unknown")
        .to_owned()
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes.
async fn read_json<T: for<'de> Deserialize<'de>>(
    request: Request<RequestBody>,
) -> Result<(serde_json::Value, T), Response<Body>> {
    let body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the body is too large or broken",
            )
        })?
        .to_bytes();
    let raw: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_json",
            &format!("the body is not JSON: {e}"),
        )
    })?;
    let parsed = serde_json::from_value(raw.clone())
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", &e.to_string()))?;
    Ok((raw, parsed))
}

/// One of the dashboard's files. The policy allows only its own files
/// (no inline script, nothing from elsewhere), and no other site may frame
/// the page to trick a click on its controls.
fn asset(text: &'static str, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(full(text));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn unknown_room(id: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "unknown_room",
        &format!("no room {id:?}"),
    )
}

fn error(code: StatusCode, kind: &str, message: &str) -> Response<Body> {
    json(
        code,
        &serde_json::json!({"error": kind, "message": message}),
    )
}

fn json<T: Serialize>(code: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(full(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether `authority` (`host[:port]`) names this machine's loopback:
/// `localhost`, `127.x.x.x` or `[::1]`.
fn is_loopback_name(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Compares without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the admin API until `shutdown` flips. Connections take their
/// limits (`[admin]` timeouts and caps) from the config current when they
/// open.
pub async fn serve(
    admin: Arc<Live<Admin>>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) {
    let metrics = admin.load().metrics.clone();
    let limits = {
        let admin = admin.clone();
        move || Limits::admin(&admin.load().config.admin)
    };
    let handle = move |request: Request<RequestBody>, _: listener::Peer| {
        let admin = admin.load();
        async move { admin.handle(request).await }
    };
    listener::serve(
        Side::Admin,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_count_as_loopback() {
        for good in [
            "127.0.0.1:9090",
            "localhost:9090",
            "LOCALHOST",
            "[::1]:9090",
            "127.1.2.3",
        ] {
            assert!(is_loopback_name(good), "{good}");
        }
        for bad in [
            "evil.example:9090",
            "10.0.0.1:9090",
            "[2001:db8::1]:80",
            "localhost.evil.example",
            "",
        ] {
            assert!(!is_loopback_name(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret-token-123", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-124", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret", b"secret-token-123"));
    }

    #[test]
    fn a_patch_tells_absent_from_null() {
        let patch: RoomPatch = serde_json::from_str(r#"{"quota": null}"#).unwrap();
        assert_eq!(patch.quota, Some(None));
        let patch: RoomPatch = serde_json::from_str(r#"{"paused": true}"#).unwrap();
        assert_eq!(patch.quota, None);
        assert!(serde_json::from_str::<RoomPatch>(r#"{"rate": 5}"#).is_err());
    }
}
