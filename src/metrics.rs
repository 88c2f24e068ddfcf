//! Every metric antre exports, on one explicit registry. Names are the
//! constants below and nowhere else; labels are of low cardinality (room,
//! outcome, kind; never a visitor). Room gauges come from the cached views
//! at scrape time, so the request path only bumps counters.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::engine::Engine;
use crate::shield::ShieldMetrics;
use crate::store::AnyStore;

pub const REQUESTS: &str = "antre_requests_total";
pub const ORIGIN_SECONDS: &str = "antre_origin_response_seconds";
pub const ORIGIN_ERRORS: &str = "antre_origin_errors_total";
pub const STORE_SECONDS: &str = "antre_store_call_seconds";
pub const STORE_ERRORS: &str = "antre_store_errors_total";
pub const WAITING: &str = "antre_visitors_waiting";
pub const TICKETS: &str = "antre_tickets_issued";
pub const ADMITTED: &str = "antre_admitted";
pub const ADMITTED_LAST_MINUTE: &str = "antre_admitted_last_minute";
pub const RATE: &str = "antre_admit_per_minute";
pub const CONFIGURED_RATE: &str = "antre_configured_admit_per_minute";
pub const QUOTA_LEFT: &str = "antre_quota_remaining";
pub const PAUSED: &str = "antre_paused";
pub const STORE_UP: &str = "antre_store_up";
pub const CONNECTIONS_OPEN: &str = "antre_connections_open";
pub const CONNECTIONS_REFUSED: &str = "antre_connections_refused_total";
pub const CHALLENGES: &str = "antre_challenges_total";
pub const PASS_REFUSALS: &str = "antre_refusals_total";
pub const TICKETS_PER_ADDRESS: &str = "antre_tickets_per_address";
pub const TLS_EXPIRY: &str = "antre_tls_certificate_expiry_timestamp_seconds";

/// Every name above: what dashboards and alert rules may refer to.
pub const NAMES: [&str; 20] = [
    REQUESTS,
    ORIGIN_SECONDS,
    ORIGIN_ERRORS,
    STORE_SECONDS,
    STORE_ERRORS,
    WAITING,
    TICKETS,
    ADMITTED,
    ADMITTED_LAST_MINUTE,
    RATE,
    CONFIGURED_RATE,
    QUOTA_LEFT,
    PAUSED,
    STORE_UP,
    CONNECTIONS_OPEN,
    CONNECTIONS_REFUSED,
    CHALLENGES,
    PASS_REFUSALS,
    TICKETS_PER_ADDRESS,
    TLS_EXPIRY,
];

/// What became of a request, for [`REQUESTS`].
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// A pass holder's request went to the origin.
    Forwarded,
    /// Admitted now and forwarded.
    Admitted,
    Waiting,
    Paused,
    SoldOut,
    /// Held outside the room's schedule.
    Closed,
    /// A first visit sent back for its cookie.
    CookieCheck,
    /// No room guards the route.
    Unguarded,
    /// A CORS preflight to a guarded route, forwarded without a place.
    Preflight,
    /// A poll of `/status`.
    Status,
    /// antre's other endpoints (`/health`, `/lang`).
    Internal,
    /// Refused before routing: an ambiguous path, a body where none
    /// belongs, a forbidden method, an unknown host.
    Refused,
    /// A request body antre could not read: the client's fault.
    ClientError,
    /// Forwarded, but the origin could not answer.
    OriginError,
    /// A new arrival past its network's free tickets, asked for a proof
    /// of work.
    Challenge,
    /// A pass asking faster than its rate: `429`.
    Limited,
    /// Skipped the line: an allow-listed address, or a staff invite link
    /// taken.
    Bypass,
}

impl Outcome {
    /// Every outcome, in declaration order (`outcome as usize` indexes it).
    pub const ALL: [Outcome; 17] = [
        Outcome::Forwarded,
        Outcome::Admitted,
        Outcome::Waiting,
        Outcome::Paused,
        Outcome::SoldOut,
        Outcome::Closed,
        Outcome::CookieCheck,
        Outcome::Unguarded,
        Outcome::Preflight,
        Outcome::Status,
        Outcome::Internal,
        Outcome::Refused,
        Outcome::ClientError,
        Outcome::OriginError,
        Outcome::Challenge,
        Outcome::Limited,
        Outcome::Bypass,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Admitted => "admitted",
            Outcome::Waiting => "waiting",
            Outcome::Paused => "paused",
            Outcome::SoldOut => "sold_out",
            Outcome::Closed => "closed",
            Outcome::CookieCheck => "cookie_check",
            Outcome::Unguarded => "unguarded",
            Outcome::Preflight => "preflight",
            Outcome::Status => "status",
            Outcome::Internal => "internal",
            Outcome::Refused => "refused",
            Outcome::ClientError => "client_error",
            Outcome::OriginError => "origin_error",
            Outcome::Challenge => "challenge",
            Outcome::Limited => "limited",
            Outcome::Bypass => "bypass",
        }
    }
}

/// [`REQUESTS`] for one config generation's rooms; see
/// [`Metrics::request_counters`].
pub struct RequestCounters {
    rooms: Vec<[IntCounter; Outcome::ALL.len()]>,
    none: [IntCounter; Outcome::ALL.len()],
}

impl RequestCounters {
    /// Counts one request of room `room` (an index) with its outcome.
    pub fn count(&self, room: Option<usize>, outcome: Outcome) {
        let row = room.and_then(|i| self.rooms.get(i)).unwrap_or(&self.none);
        row[outcome as usize].inc();
    }
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    pub origin_seconds: Histogram,
    origin_errors: IntCounterVec,
    pub store_seconds: Histogram,
    pub store_errors: IntCounter,
    rooms: Vec<(&'static str, IntGaugeVec)>,
    /// Open connections, by listener (`visitor`, `admin`).
    pub connections_open: IntGaugeVec,
    /// Connections answered and closed at once, by listener and reason
    /// (`total`, `per_address`).
    pub connections_refused: IntCounterVec,
    /// The engine's counters of challenges, refusals and tickets per
    /// network.
    pub shields: ShieldMetrics,
    /// When the visitor listener's TLS certificate expires (Unix seconds);
    /// registered only with TLS, so an alert on it never fires without.
    pub tls_expiry: prometheus::IntGauge,
    /// Held while the room gauges are rebuilt for a scrape. A std `Mutex`:
    /// nothing is awaited while it is held.
    rendering: std::sync::Mutex<()>,
}

impl Metrics {
    /// Exports [`TLS_EXPIRY`] for `certificate`, kept current through
    /// reloads.
    pub fn watch_certificate(
        &self,
        certificate: &crate::tls::Certificate,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(Box::new(self.tls_expiry.clone()))?;
        certificate.report_expiry(self.tls_expiry.clone());
        Ok(())
    }

    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                REQUESTS,
                "Requests to guarded and unguarded routes, by room and outcome.",
            ),
            &["room", "outcome"],
        )?;
        let origin_seconds = Histogram::with_opts(
            HistogramOpts::new(ORIGIN_SECONDS, "Time until the origin's response headers.")
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
        )?;
        let origin_errors = IntCounterVec::new(
            Opts::new(
                ORIGIN_ERRORS,
                "Requests the origin could not answer, by kind.",
            ),
            &["kind"],
        )?;
        let store_seconds = Histogram::with_opts(
            HistogramOpts::new(STORE_SECONDS, "Time of one call to the shared store.").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ],
            ),
        )?;
        let store_errors = IntCounter::new(STORE_ERRORS, "Calls to the shared store that failed.")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(origin_seconds.clone()))?;
        registry.register(Box::new(origin_errors.clone()))?;
        registry.register(Box::new(store_seconds.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        let connections_open = IntGaugeVec::new(
            Opts::new(CONNECTIONS_OPEN, "Connections open, by listener."),
            &["listener"],
        )?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                CONNECTIONS_REFUSED,
                "Connections refused at a connection cap or out of file descriptors, by listener and reason.",
            ),
            &["listener", "reason"],
        )?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_refused.clone()))?;
        let shields = ShieldMetrics {
            challenges: IntCounterVec::new(
                Opts::new(
                    CHALLENGES,
                    "Proof-of-work challenges, by room and result (issued, solved, failed).",
                ),
                &["room", "result"],
            )?,
            refusals: IntCounterVec::new(
                Opts::new(
                    PASS_REFUSALS,
                    "Cookies refused, by room and reason: a pass used from too many networks \
                     (networks) or too fast (rate), a ticket exchanged already (ticket_spent).",
                ),
                &["room", "reason"],
            )?,
            tickets_per_address: Histogram::with_opts(
                HistogramOpts::new(
                    TICKETS_PER_ADDRESS,
                    "Tickets one client network took while it was active, observed when it goes quiet.",
                )
                .buckets(vec![
                    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 10000.0,
                ]),
            )?,
        };
        registry.register(Box::new(shields.challenges.clone()))?;
        registry.register(Box::new(shields.refusals.clone()))?;
        registry.register(Box::new(shields.tickets_per_address.clone()))?;
        let tls_expiry = prometheus::IntGauge::new(
            TLS_EXPIRY,
            "When the TLS certificate in use expires, in Unix seconds (with TLS only).",
        )?;
        let mut rooms = Vec::new();
        for (name, help) in [
            (WAITING, "Visitors holding a ticket beyond the frontier."),
            (TICKETS, "Tickets handed out so far in the room (its tail)."),
            (ADMITTED, "Passes issued so far in the room."),
            (
                ADMITTED_LAST_MINUTE,
                "Passes issued in the last minute: the effective rate.",
            ),
            (RATE, "The room's current admissions per minute."),
            (CONFIGURED_RATE, "Admissions per minute in the config."),
            (
                QUOTA_LEFT,
                "Admissions left in the quota (absent without a quota).",
            ),
            (PAUSED, "1 while the room is paused."),
            (STORE_UP, "1 while the room's store answers."),
        ] {
            let gauge = IntGaugeVec::new(Opts::new(name, help), &["room"])?;
            registry.register(Box::new(gauge.clone()))?;
            rooms.push((name, gauge));
        }
        Ok(Metrics {
            tls_expiry,
            registry,
            requests,
            origin_seconds,
            origin_errors,
            store_seconds,
            store_errors,
            rooms,
            connections_open,
            connections_refused,
            shields,
            rendering: std::sync::Mutex::new(()),
        })
    }

    /// The request counters for these rooms (by index; requests no room
    /// took count under `room="none"`), looked up once per config
    /// generation so counting a request is one atomic add.
    pub fn request_counters<'a>(
        &self,
        rooms: impl IntoIterator<Item = &'a str>,
    ) -> RequestCounters {
        let row =
            |room: &str| Outcome::ALL.map(|o| self.requests.with_label_values(&[room, o.label()]));
        RequestCounters {
            rooms: rooms.into_iter().map(row).collect(),
            none: row("none"),
        }
    }

    pub fn origin_error(&self, kind: &str) {
        self.origin_errors.with_label_values(&[kind]).inc();
    }

    /// The registry in Prometheus' text format, with room gauges read from
    /// the engine's cached views now.
    pub fn render(&self, engine: &Engine<AnyStore>) -> String {
        // Rebuilt on each scrape, so a room a reload removed, or a quota
        // taken away, leaves no stale series; one scrape at a time.
        let _rendering = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        for (_, gauge) in &self.rooms {
            gauge.reset();
        }
        for room in engine.rooms() {
            let view = room.view();
            let id = room.config.id.as_str();
            let now = engine.clock().now_micros();
            let waiting = view.tail.saturating_sub(view.projected_frontier(now));
            for (name, gauge) in &self.rooms {
                let value = match *name {
                    WAITING => Some(waiting),
                    TICKETS => Some(view.tail),
                    ADMITTED => Some(view.admitted),
                    ADMITTED_LAST_MINUTE => Some(room.admitted_last_minute()),
                    RATE => Some(u64::from(view.settings.admit_per_minute)),
                    CONFIGURED_RATE => Some(u64::from(room.config.settings.admit_per_minute)),
                    QUOTA_LEFT => view.quota_left(now),
                    PAUSED => Some(u64::from(view.settings.paused)),
                    STORE_UP => Some(u64::from(room.store_healthy())),
                    _ => None,
                };
                if let Some(value) = value {
                    gauge
                        .with_label_values(&[id])
                        .set(i64::try_from(value).unwrap_or(i64::MAX));
                }
            }
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_counter() {
        for (index, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, index, "{}", outcome.label());
        }
        // A new outcome stops this match from compiling: add it to `ALL`
        // (in declaration order) as well as here.
        let listed = |outcome: Outcome| match outcome {
            Outcome::Forwarded
            | Outcome::Admitted
            | Outcome::Waiting
            | Outcome::Paused
            | Outcome::SoldOut
            | Outcome::Closed
            | Outcome::CookieCheck
            | Outcome::Unguarded
            | Outcome::Preflight
            | Outcome::Status
            | Outcome::Internal
            | Outcome::Refused
            | Outcome::ClientError
            | Outcome::OriginError
            | Outcome::Challenge
            | Outcome::Limited
            | Outcome::Bypass => true,
        };
        assert!(Outcome::ALL.iter().all(|o| listed(*o)));

        let metrics = Metrics::new().unwrap();
        let counters = metrics.request_counters(["vaksin"]);
        counters.count(Some(0), Outcome::Status);
        counters.count(None, Outcome::Refused);
        counters.count(Some(7), Outcome::Refused);
        let none = metrics
            .requests
            .with_label_values(&["none", "refused"])
            .get();
        assert_eq!(
            none, 2,
            "a room the generation does not know counts as none"
        );
        assert_eq!(
            metrics
                .requests
                .with_label_values(&["vaksin", "status"])
                .get(),
            1
        );
    }
}
