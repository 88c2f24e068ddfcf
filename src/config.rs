//! The config file: raw serde structs as written in TOML, checked and turned
//! into a [`Config`] of typed values. Every problem is collected and reported
//! at once, each naming its key, before any port is bound.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Uri};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::clock::{days_from_civil, Micros, MICROS_PER_SECOND};
use crate::forwarded::Cidr;
use crate::page::{edit_distance, Template};
use crate::store::memory::StoredKey;
use crate::store::{Phase, RoomSettings};
use crate::token;

/// One problem in the config, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key, e.g. `rooms[0].admit_per_minute`.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

// === raw config, as written ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawListen {
    addr: Option<String>,
    prefix: Option<String>,
    header_read_timeout_seconds: Option<u64>,
    idle_timeout_seconds: Option<u64>,
    max_connections: Option<u64>,
    max_connections_per_address: Option<u64>,
    secure_cookies: Option<bool>,
    trust_forwarded: Option<bool>,
    trusted_proxies: Option<Vec<String>>,
    hosts: Option<Vec<String>>,
    access_log: Option<bool>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    hsts_seconds: Option<u64>,
    redirect_http: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOrigin {
    url: Option<String>,
    host: Option<String>,
    connect_timeout_seconds: Option<u64>,
    response_timeout_seconds: Option<u64>,
    pool_idle_seconds: Option<u64>,
    pool_max_idle: Option<u64>,
    ca_file: Option<String>,
    server_name: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    kind: Option<String>,
    state_file: Option<String>,
    sync_millis: Option<u64>,
    url: Option<String>,
    cluster: Option<Vec<String>>,
    prefix: Option<String>,
    on_error: Option<String>,
    wait_replicas: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPage {
    utc_offset: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    addr: Option<String>,
    token: Option<String>,
    token_env: Option<String>,
    token_file: Option<String>,
    header_read_timeout_seconds: Option<u64>,
    idle_timeout_seconds: Option<u64>,
    max_connections: Option<u64>,
    max_connections_per_address: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawKey {
    id: Option<String>,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRoom {
    id: Option<String>,
    title: Option<String>,
    paths: Option<Vec<String>>,
    unguarded: Option<Vec<String>>,
    hosts: Option<Vec<String>>,
    admit_per_minute: Option<u32>,
    burst: Option<u32>,
    quota: Option<u64>,
    pass_minutes: Option<u64>,
    claim_minutes: Option<u64>,
    ticket_hours: Option<u64>,
    paused: Option<bool>,
    refresh_seconds: Option<u32>,
    board: Option<bool>,
    campaign: Option<String>,
    /// Checked in [`Checker::unused`], so its errors name its keys.
    unused: Option<toml::Value>,
    template: Option<String>,
    tickets_per_address_per_minute: Option<u64>,
    tickets_per_address_burst: Option<u64>,
    challenge_bits: Option<u64>,
    challenge_bits_max: Option<u64>,
    max_networks_per_pass: Option<u64>,
    pass_requests_per_second: Option<u64>,
    pass_request_burst: Option<u64>,
    pass_max_minutes: Option<u64>,
    allow: Option<Vec<String>>,
    /// Checked item by item in [`Checker::phases`], so each error names its
    /// phase.
    phases: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUnused {
    at: Option<toml::Value>,
    to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPhase {
    /// A TOML date-time or an RFC 3339 string.
    start: Option<toml::Value>,
    end: Option<toml::Value>,
    quota: Option<u64>,
    admit_per_minute: Option<u32>,
    spread: Option<bool>,
    prequeue_minutes: Option<u64>,
}

/// Keys each table may hold; anything else is reported as unknown. Kept
/// beside the raw structs above, which also deny unknown fields.
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "listen",
        &[
            "addr",
            "prefix",
            "header_read_timeout_seconds",
            "idle_timeout_seconds",
            "max_connections",
            "max_connections_per_address",
            "secure_cookies",
            "trust_forwarded",
            "trusted_proxies",
            "hosts",
            "access_log",
            "tls_cert",
            "tls_key",
            "hsts_seconds",
            "redirect_http",
        ],
    ),
    (
        "origin",
        &[
            "url",
            "host",
            "connect_timeout_seconds",
            "response_timeout_seconds",
            "pool_idle_seconds",
            "pool_max_idle",
            "ca_file",
            "server_name",
            "client_cert",
            "client_key",
        ],
    ),
    (
        "store",
        &[
            "kind",
            "state_file",
            "sync_millis",
            "url",
            "cluster",
            "prefix",
            "on_error",
            "wait_replicas",
        ],
    ),
    ("page", &["utc_offset"]),
    (
        "admin",
        &[
            "addr",
            "token",
            "token_env",
            "token_file",
            "header_read_timeout_seconds",
            "idle_timeout_seconds",
            "max_connections",
            "max_connections_per_address",
        ],
    ),
    ("keys", &["id", "secret", "secret_env", "secret_file"]),
    (
        "admission_keys",
        &["id", "secret", "secret_env", "secret_file"],
    ),
    (
        "rooms",
        &[
            "id",
            "title",
            "paths",
            "unguarded",
            "hosts",
            "admit_per_minute",
            "burst",
            "quota",
            "pass_minutes",
            "claim_minutes",
            "ticket_hours",
            "paused",
            "refresh_seconds",
            "board",
            "campaign",
            "unused",
            "template",
            "tickets_per_address_per_minute",
            "tickets_per_address_burst",
            "challenge_bits",
            "challenge_bits_max",
            "max_networks_per_pass",
            "pass_requests_per_second",
            "pass_request_burst",
            "pass_max_minutes",
            "allow",
            "phases",
        ],
    ),
    ("unused", &["at", "to"]),
    (
        "phases",
        &[
            "start",
            "end",
            "quota",
            "admit_per_minute",
            "spread",
            "prequeue_minutes",
        ],
    ),
];

// === validated config ===

/// A checked config: every value typed and in range.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    pub origin: Origin,
    pub store: StoreConfig,
    pub page: PageConfig,
    pub admin: AdminConfig,
    /// Signing keys, the first signs. Empty: antre makes one in its state.
    pub keys: Vec<KeySpec>,
    /// Keys for the `antre-admission` header the origin checks, the first
    /// signs. Empty: derived from `keys` (see [`crate::admission::settle`]).
    /// Never the secret of one of `keys`: the origin holds these, and must
    /// not be able to make passes.
    pub admission_keys: Vec<KeySpec>,
    pub rooms: Vec<RoomConfig>,
}

/// The operators' listener, apart from visitor traffic.
#[derive(Clone)]
pub struct AdminConfig {
    /// Default `127.0.0.1:9090`.
    pub addr: SocketAddr,
    /// Bearer token for every admin request; required unless `addr` is a
    /// loopback address.
    pub token: Option<String>,
    /// The same timeouts as the visitor listener's, defaults 10 s and
    /// 120 s: an operator's browser is no different from a visitor's, and a
    /// listener without them is held open by anyone who connects.
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Default 256: operators, dashboards and scrapers, far fewer than
    /// visitors; kept apart from the visitors' budget of open files.
    pub max_connections: usize,
    /// Default 64.
    pub max_connections_per_address: usize,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Listen {
    /// Default `127.0.0.1:8080`.
    pub addr: SocketAddr,
    /// Where antre's own endpoints live; default `/_antre`.
    pub prefix: String,
    /// Default 10 s.
    pub header_read_timeout: Duration,
    /// A connection with no traffic this long is closed; default 120 s.
    pub idle_timeout: Duration,
    /// Connections open at once; past it a new one is answered `503` and
    /// closed. `None`: derived from the open-file limit at start (see
    /// `listener::default_max_connections`).
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address; past it `429`.
    /// Default 512: mobile carriers put many phones behind one address.
    pub max_connections_per_address: usize,
    /// Mark cookies `Secure` even on plain HTTP, and tell the origin the
    /// visitor used https: TLS ends in front of antre. Default false.
    pub secure_cookies: bool,
    /// Proxies in front of antre whose `Forwarded`, `X-Forwarded-*` and
    /// client-address headers are kept; from anyone else they are replaced.
    /// Default none.
    pub trusted_proxies: Vec<Cidr>,
    /// Host names antre serves (lower case, no port); a request for another
    /// gets `421`. Empty: any host, unless every room names its hosts.
    pub hosts: Vec<String>,
    /// One log line per request (target `antre::access`). Default true.
    pub access_log: bool,
    /// The certificate (chain) and key antre serves TLS with; `None`:
    /// plain HTTP.
    pub tls: Option<TlsFiles>,
    /// `Strict-Transport-Security: max-age=` on answers over TLS; 0 (the
    /// default) sends none.
    pub hsts_seconds: u64,
    /// A plain-HTTP listener that sends every request to the same address
    /// over HTTPS (`308`); only with `tls`. Default none.
    pub redirect_http: Option<SocketAddr>,
}

/// PEM files of a TLS certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Listen {
    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|block| block.contains(ip))
    }
}

#[derive(Debug, Clone)]
pub struct Origin {
    /// `http://host:port`, no path.
    pub url: Uri,
    /// Host header to send instead of the client's; default none.
    pub host: Option<HeaderValue>,
    /// Default 5 s.
    pub connect_timeout: Duration,
    /// Until the origin's response headers arrive; default 60 s.
    pub response_timeout: Duration,
    /// Idle pooled connections are closed after this; default 90 s.
    pub pool_idle: Duration,
    /// Idle pooled connections kept at most by each worker (more are
    /// closed as they come free); default 64.
    pub pool_max_idle: usize,
    /// How an `https://` origin is verified; `None` for `http://`.
    pub tls: Option<OriginTls>,
}

/// TLS to an `https://` origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginTls {
    /// PEM certificates the origin's chain must lead to; `None`: the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// The name the origin's certificate must carry (and the SNI sent);
    /// `None`: the URL's host.
    pub server_name: String,
    /// A client certificate to present, for origins that ask for one.
    pub client: Option<TlsFiles>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    Memory {
        state_file: PathBuf,
    },
    /// One Redis server.
    Redis {
        url: String,
        prefix: String,
    },
    /// A Redis Cluster, given some of its nodes.
    Cluster {
        urls: Vec<String>,
        prefix: String,
    },
}

/// What visitors get while the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Admitted visitors carry on; waiting ones keep their place and see
    /// "paused"; nobody new is admitted, so the quota stays safe.
    Hold,
    /// Visitors without a pass are let in (uncounted) until the store is
    /// back: the site's availability over the quota.
    Admit,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// Default `hold`.
    pub on_error: OnError,
    /// How often each instance refreshes its rooms' counters; default 200 ms.
    pub sync_interval: Duration,
    /// Redis replicas that must hold a ticket or an admission before the
    /// visitor is given it (Redis `WAIT`); default 0, Redis only.
    pub wait_replicas: u32,
}

#[derive(Debug, Clone)]
pub struct PageConfig {
    /// Local time zone for "last updated"; default +07:00 (WIB).
    pub utc_offset_minutes: i32,
}

#[derive(Clone)]
pub struct KeySpec {
    pub id: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySpec")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct RoomConfig {
    pub id: String,
    /// Shown on the queue page; defaults to the id.
    pub title: String,
    /// Path prefixes the room guards, matched on whole segments, as routing
    /// keys (see [`crate::path`]).
    pub paths: Vec<String>,
    /// Prefixes under `paths` that the room leaves alone (`/static`), as
    /// routing keys.
    pub unguarded: Vec<String>,
    /// Hosts the room guards (lowercase, no port); empty means any.
    pub hosts: Vec<String>,
    pub settings: RoomSettings,
    /// How long a pass lasts after the visitor's last request (renewed
    /// at most once a minute).
    pub pass_seconds: u64,
    /// How long a ticket is honoured after it was issued.
    pub ticket_seconds: u64,
    /// Longest pause between a waiting page's refreshes.
    pub refresh_seconds: u32,
    /// Whether the public board (`{prefix}/board`) shows the room.
    pub board: bool,
    /// The campaign this room is a segment of, for operators' views.
    pub campaign: Option<String>,
    /// When the room's unused places move to another segment, and which.
    pub unused: Option<UnusedMove>,
    pub template: Option<Arc<Template>>,
    pub protection: Protection,
    /// Client addresses or blocks that skip the line (staff, a partner's
    /// office): every request of theirs is forwarded, logged and counted.
    pub allow: Vec<Cidr>,
}

/// A segment's rule: at `at`, the places it has not used move to room `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusedMove {
    pub at: Micros,
    pub to: String,
}

/// How a room prices arrivals and keeps each pass to one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// Free tickets per client network (an IPv4 address, an IPv6 /64):
    /// the steady rate a minute, and how many may come at once.
    pub tickets_per_minute: u32,
    pub ticket_burst: u32,
    /// Proof-of-work difficulty past the free tickets: from `challenge_bits`
    /// with no excess, rising with it, at most `challenge_bits_max`.
    pub challenge_bits: u32,
    pub challenge_bits_max: u32,
    /// Distinct networks one pass may be used from in its life.
    pub max_networks_per_pass: u32,
    /// Requests one pass may make: a steady rate a second, and a burst.
    pub pass_requests_per_second: u32,
    pub pass_request_burst: u32,
    /// A pass is never renewed beyond this long after it was first issued.
    pub pass_max_seconds: u64,
}

impl Config {
    /// Reads and checks the config at `path`. Relative paths inside it
    /// (state file, templates, secret files) are taken from its folder.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                key: "(file)".into(),
                message: format!("cannot read {}: {e}", path.display()),
            }]
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base)
    }

    /// The ticket and pass keys antre signs and verifies with, the first
    /// signing: the configured `[[keys]]`, then, with the memory store, the
    /// key antre made in its state file (`state_key`), unless a configured
    /// key has its id. So configuring keys after antre made its own keeps
    /// the cookies it signed valid; that key never signs again. With Redis
    /// the state file plays no part and `state_key` is ignored. Fails only
    /// when the state file's key is used and is not base64.
    ///
    /// One rule for `antre run` and for the commands that must reach the
    /// same keys without running (`antre admission-key`).
    pub fn ticket_keys(&self, state_key: Option<&StoredKey>) -> Result<Vec<KeySpec>, String> {
        let mut keys = self.keys.clone();
        if let (StoreKind::Memory { .. }, Some(stored)) = (&self.store.kind, state_key) {
            if keys.iter().all(|k| k.id != stored.id) {
                keys.push(KeySpec {
                    id: stored.id.clone(),
                    secret: stored.secret_bytes()?,
                });
            }
        }
        Ok(keys)
    }

    /// What is allowed but probably not meant, each naming its key.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (index, room) in self.rooms.iter().enumerate() {
            // A campaign's segments guard their own parts of a site by
            // design.
            if room.campaign.is_none() && !room.paths.iter().any(|p| p == "/") {
                warnings.push(format!(
                    "rooms[{index}].paths: room {:?} guards only {}; every other page of the site, \
                     including any added later, reaches it without a place in line. \
                     Prefer paths = [\"/\"] with the exceptions in `unguarded`",
                    room.id,
                    room.paths.join(", ")
                ));
            }
            for (i, phase) in room.settings.phases.iter().enumerate() {
                let minutes = (phase.end - phase.start) / (60 * MICROS_PER_SECOND);
                let most = u64::from(phase.admit_per_minute).saturating_mul(minutes);
                if !phase.spread() && most < phase.quota {
                    warnings.push(format!(
                        "rooms[{index}].phases[{i}]: at {} a minute for {minutes} minutes it admits \
                         at most {most} of its quota of {}; raise admit_per_minute or use \
                         spread = true",
                        phase.admit_per_minute, phase.quota
                    ));
                }
            }
            for (i, pair) in room.settings.phases.windows(2).enumerate() {
                let apart = (pair[1].start - pair[0].start) / MICROS_PER_SECOND;
                if apart > room.ticket_seconds {
                    warnings.push(format!(
                        "rooms[{index}].ticket_hours: a ticket taken when phase {i} opens has \
                         expired ({} hours) before phase {} opens {} hours later, so whoever is \
                         still in line and has not seen the page since phase {i} ended (which \
                         gives a return ticket) loses their place; raise ticket_hours to at \
                         least {}",
                        room.ticket_seconds / 3600,
                        i + 1,
                        apart / 3600,
                        apart.div_ceil(3600)
                    ));
                }
            }
            let now = crate::tls::unix_now().max(0) as u64 * MICROS_PER_SECOND;
            if let Some(last) = room.settings.phases.last().filter(|p| p.end <= now) {
                warnings.push(format!(
                    "rooms[{index}].phases: the last phase closed on {}; room {:?} stays closed",
                    crate::clock::utc((last.end / MICROS_PER_SECOND) as i64),
                    room.id
                ));
            }
        }
        if let Some(files) = &self.listen.tls {
            if let Ok(validity) = crate::tls::file_validity(&files.cert) {
                let days = (validity.not_after - crate::tls::unix_now()) / 86_400;
                if days < 14 {
                    warnings.push(format!(
                        "listen.tls_cert: {} expires on {}, in {days} days; renew it (antre \
                         takes the new one on SIGHUP or when the file changes)",
                        files.cert.display(),
                        crate::clock::utc(validity.not_after)
                    ));
                }
            }
        }
        warnings
    }

    /// Checks config text; `base` is the folder relative paths start from.
    pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            vec![ConfigError {
                key: "(syntax)".into(),
                message: e.to_string().trim().replace('\n', " "),
            }]
        })?;
        let mut check = Checker {
            errors: Vec::new(),
            base: base.to_path_buf(),
        };
        let config = check.config(&table);
        if check.errors.is_empty() {
            Ok(config)
        } else {
            Err(check.errors)
        }
    }
}

// === checking ===

struct Checker {
    errors: Vec<ConfigError>,
    base: PathBuf,
}

impl Checker {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    fn config(&mut self, table: &toml::Table) -> Config {
        let known: Vec<&str> = SECTIONS.iter().map(|(name, _)| *name).collect();
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                self.unknown(key, key, &known);
            }
        }
        let listen = self.section::<RawListen>(table, "listen");
        let origin = self.section::<RawOrigin>(table, "origin");
        let store = self.section::<RawStore>(table, "store");
        let page = self.section::<RawPage>(table, "page");
        let admin = self.section::<RawAdmin>(table, "admin");
        let keys = self.array::<RawKey>(table, "keys");
        let admission_keys = self.array::<RawKey>(table, "admission_keys");
        let rooms = self.array::<RawRoom>(table, "rooms");
        let keys_given = !keys.is_empty();
        let config = Config {
            listen: self.listen(listen),
            origin: self.origin(origin),
            store: self.store(store),
            page: self.page(page),
            admin: self.admin(admin),
            keys: keys
                .into_iter()
                .enumerate()
                .filter_map(|(i, k)| self.key("keys", i, k))
                .collect(),
            admission_keys: admission_keys
                .into_iter()
                .enumerate()
                .filter_map(|(i, k)| self.key("admission_keys", i, k))
                .collect(),
            rooms: self.rooms(rooms),
        };
        if config.origin.host.is_some() {
            for (index, room) in config.rooms.iter().enumerate() {
                if !room.hosts.is_empty() {
                    self.error(
                        format!("rooms[{index}].hosts"),
                        "cannot guard by host while origin.host sends every request to the same site; guard by path",
                    );
                }
            }
        }
        for (index, key) in config.admission_keys.iter().enumerate() {
            if let Some(shared) = config.keys.iter().find(|k| k.secret == key.secret) {
                self.error(
                    format!("admission_keys[{index}]"),
                    format!(
                        "has the secret of [[keys]] {:?}; the site that checks admissions \
                         would hold the key that makes passes: give it its own secret",
                        shared.id
                    ),
                );
            }
        }
        if !keys_given && !matches!(config.store.kind, StoreKind::Memory { .. }) {
            self.error(
                "keys",
                "instances sharing Redis must sign with the same keys: add [[keys]] (the same on every instance)",
            );
        }
        config
    }

    fn unknown(&mut self, path: &str, key: &str, allowed: &[&str]) {
        let hint = allowed
            .iter()
            .filter(|candidate| edit_distance(key, candidate) <= 2)
            .min_by_key(|candidate| edit_distance(key, candidate))
            .map(|candidate| format!("; did you mean `{candidate}`?"))
            .unwrap_or_default();
        self.error(path, format!("unknown key `{key}`{hint}"));
    }

    /// Reports unknown keys in one table and returns the table without
    /// them, so the rest can still be checked.
    fn known_keys(&mut self, path: &str, section: &str, table: &toml::Table) -> toml::Table {
        let allowed = SECTIONS
            .iter()
            .find(|(name, _)| *name == section)
            .map(|(_, keys)| *keys)
            .unwrap_or(&[]);
        let mut known = table.clone();
        for key in table.keys() {
            if !allowed.contains(&key.as_str()) {
                self.unknown(&format!("{path}.{key}"), key, allowed);
                known.remove(key);
            }
        }
        known
    }

    fn decode<T: DeserializeOwned + Default>(
        &mut self,
        path: &str,
        section: &str,
        value: &toml::Value,
    ) -> T {
        let Some(table) = value.as_table() else {
            self.error(path, "must be a table");
            return T::default();
        };
        let mut known = self.known_keys(path, section, table);
        // Decode each key on its own first, so a wrong type is reported
        // against its key and the rest of the table is still checked.
        for (key, item) in known.clone() {
            let single = toml::Table::from_iter([(key.clone(), item)]);
            if let Err(e) = T::deserialize(toml::Value::Table(single)) {
                self.error(format!("{path}.{key}"), e.message().trim().to_string());
                known.remove(&key);
            }
        }
        T::deserialize(toml::Value::Table(known)).unwrap_or_else(|e| {
            self.error(path, e.message().trim().to_string());
            T::default()
        })
    }

    fn section<T: DeserializeOwned + Default>(&mut self, table: &toml::Table, name: &str) -> T {
        match table.get(name) {
            Some(value) => self.decode(name, name, value),
            None => T::default(),
        }
    }

    fn array<T: DeserializeOwned + Default>(&mut self, table: &toml::Table, name: &str) -> Vec<T> {
        match table.get(name) {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.decode(&format!("{name}[{i}]"), name, item))
                .collect(),
            Some(_) => {
                self.error(name, format!("must be an array of tables ([[{name}]])"));
                Vec::new()
            }
        }
    }

    fn seconds(
        &mut self,
        key: &str,
        value: Option<u64>,
        default: u64,
        range: (u64, u64),
    ) -> Duration {
        Duration::from_secs(self.ranged(key, value, default, range))
    }

    fn ranged(
        &mut self,
        key: &str,
        value: Option<u64>,
        default: u64,
        (low, high): (u64, u64),
    ) -> u64 {
        let value = value.unwrap_or(default);
        if value < low || value > high {
            self.error(
                key,
                format!("must be between {low} and {high}, got {value}"),
            );
            return default;
        }
        value
    }

    fn path(&self, value: &str) -> PathBuf {
        let path = Path::new(value);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    /// Path prefixes as routing keys; a prefix that is not a path in its
    /// one spelling is named.
    fn prefixes(&mut self, key: &str, raw: &[String]) -> Vec<String> {
        let mut keys = Vec::new();
        for prefix in raw {
            if prefix.contains(['?', '#']) {
                self.error(
                    key,
                    format!("{prefix:?} must be a path, without '?' or '#'"),
                );
                continue;
            }
            match crate::path::canonicalise(prefix) {
                Ok(path) => keys.push(path.key().to_owned()),
                Err(e) => self.error(key, format!("{prefix:?} is not a plain path: {e}")),
            }
        }
        keys
    }

    /// Host names, normalised as routing compares them.
    fn hosts(&mut self, key: &str, raw: Option<Vec<String>>) -> Vec<String> {
        let hosts: Vec<String> = raw
            .unwrap_or_default()
            .iter()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        for host in &hosts {
            if host.is_empty() || host.contains(['/', ':', ' ', '[']) {
                self.error(
                    key,
                    format!("{host:?} must be a host name without port or path"),
                );
            }
        }
        hosts
    }

    fn listen(&mut self, raw: RawListen) -> Listen {
        let addr_text = raw.addr.unwrap_or_else(|| "127.0.0.1:8080".into());
        let addr = addr_text.parse().unwrap_or_else(|_| {
            self.error(
                "listen.addr",
                format!("{addr_text:?} is not an address with a port, like \"127.0.0.1:8080\""),
            );
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        let prefix = raw.prefix.unwrap_or_else(|| "/_antre".into());
        if !prefix.starts_with('/')
            || prefix.len() < 2
            || prefix.ends_with('/')
            || prefix.contains(['?', '#', ' '])
        {
            self.error(
                "listen.prefix",
                format!(
                    "{prefix:?} must be a path like \"/_antre\": a leading '/', no trailing '/'"
                ),
            );
        }
        if raw.trust_forwarded.is_some() {
            self.error(
                "listen.trust_forwarded",
                "was replaced by `trusted_proxies`: list the addresses of the proxies in front of antre, like [\"10.0.0.0/8\"]",
            );
        }
        let mut trusted_proxies = Vec::new();
        for (i, text) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
            match Cidr::parse(text) {
                Ok(block) => trusted_proxies.push(block),
                Err(message) => self.error(format!("listen.trusted_proxies[{i}]"), message),
            }
        }
        let hosts = self.hosts("listen.hosts", raw.hosts);
        let tls = match (raw.tls_cert, raw.tls_key) {
            (Some(cert), Some(key)) => {
                let files = TlsFiles {
                    cert: self.path(&cert),
                    key: self.path(&key),
                };
                match crate::tls::load(&files.cert, &files.key) {
                    Ok(_) => Some(files),
                    Err(e) => {
                        self.error("listen.tls_cert", e.to_string());
                        None
                    }
                }
            }
            (None, None) => None,
            (Some(_), None) => {
                self.error(
                    "listen.tls_key",
                    "is needed with tls_cert: the certificate's private key (PEM)",
                );
                None
            }
            (None, Some(_)) => {
                self.error(
                    "listen.tls_cert",
                    "is needed with tls_key: the certificate chain (PEM), leaf first",
                );
                None
            }
        };
        let redirect_http = match raw.redirect_http {
            None => None,
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(addr) if tls.is_some() => Some(addr),
                Ok(_) => {
                    self.error(
                        "listen.redirect_http",
                        "sends visitors to HTTPS, which needs tls_cert and tls_key",
                    );
                    None
                }
                Err(_) => {
                    self.error(
                        "listen.redirect_http",
                        format!("{text:?} must be an address and port, like \"0.0.0.0:80\""),
                    );
                    None
                }
            },
        };
        let hsts_seconds = self.ranged(
            "listen.hsts_seconds",
            raw.hsts_seconds,
            0,
            (0, 2 * 365 * 86_400),
        );
        Listen {
            tls,
            hsts_seconds,
            redirect_http,
            addr,
            prefix,
            header_read_timeout: self.seconds(
                "listen.header_read_timeout_seconds",
                raw.header_read_timeout_seconds,
                10,
                (1, 3600),
            ),
            idle_timeout: self.seconds(
                "listen.idle_timeout_seconds",
                raw.idle_timeout_seconds,
                120,
                (1, 86_400),
            ),
            max_connections: raw
                .max_connections
                .map(|_| self.connections("listen.max_connections", raw.max_connections, 0)),
            max_connections_per_address: self.connections(
                "listen.max_connections_per_address",
                raw.max_connections_per_address,
                512,
            ),
            secure_cookies: raw.secure_cookies.unwrap_or(false),
            trusted_proxies,
            hosts,
            access_log: raw.access_log.unwrap_or(true),
        }
    }

    fn origin(&mut self, raw: RawOrigin) -> Origin {
        let url = match raw.url {
            None => {
                self.error("origin.url", "is required: the address of the site antre guards, like \"http://127.0.0.1:9000\"");
                Uri::from_static("http://127.0.0.1:9000")
            }
            Some(text) => match text.parse::<Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.authority().is_some()
                        && matches!(uri.path(), "" | "/")
                        && uri.query().is_none() =>
                {
                    uri
                }
                _ => {
                    self.error(
                        "origin.url",
                        format!("{text:?} must be http://host:port or https://host:port with no path, like \"http://127.0.0.1:9000\""),
                    );
                    Uri::from_static("http://127.0.0.1:9000")
                }
            },
        };
        let https = url.scheme_str() == Some("https");
        let tls_only = |checker: &mut Checker, key: &str, set: bool| {
            if set && !https {
                checker.error(
                    format!("origin.{key}"),
                    "applies to an https:// origin; origin.url is http://",
                );
            }
        };
        tls_only(self, "ca_file", raw.ca_file.is_some());
        tls_only(self, "server_name", raw.server_name.is_some());
        tls_only(self, "client_cert", raw.client_cert.is_some());
        tls_only(self, "client_key", raw.client_key.is_some());
        let tls = https.then(|| {
            let ca_file = raw.ca_file.as_deref().map(|file| self.path(file));
            if let Some(path) = &ca_file {
                if let Err(e) = crate::tls::roots(path) {
                    self.error("origin.ca_file", e.to_string());
                }
            }
            let server_name = raw
                .server_name
                .clone()
                .unwrap_or_else(|| url.host().unwrap_or("").trim_matches(['[', ']']).to_owned());
            if rustls_pki_types::ServerName::try_from(server_name.clone()).is_err() {
                self.error(
                    "origin.server_name",
                    format!("{server_name:?} is not a host name or address"),
                );
            }
            let client = match (&raw.client_cert, &raw.client_key) {
                (Some(cert), Some(key)) => {
                    let files = TlsFiles {
                        cert: self.path(cert),
                        key: self.path(key),
                    };
                    match crate::tls::load(&files.cert, &files.key) {
                        Ok(_) => Some(files),
                        Err(e) => {
                            self.error("origin.client_cert", e.to_string());
                            None
                        }
                    }
                }
                (None, None) => None,
                _ => {
                    self.error(
                        "origin.client_cert",
                        "client_cert and client_key go together",
                    );
                    None
                }
            };
            OriginTls {
                ca_file,
                server_name,
                client,
            }
        });
        let host = raw.host.and_then(|h| match HeaderValue::from_str(&h) {
            Ok(value) if !h.is_empty() && !h.contains(['/', ' ']) => Some(value),
            _ => {
                self.error(
                    "origin.host",
                    format!("{h:?} is not a valid Host header value"),
                );
                None
            }
        });
        Origin {
            url,
            host,
            connect_timeout: self.seconds(
                "origin.connect_timeout_seconds",
                raw.connect_timeout_seconds,
                5,
                (1, 600),
            ),
            response_timeout: self.seconds(
                "origin.response_timeout_seconds",
                raw.response_timeout_seconds,
                60,
                (1, 3600),
            ),
            pool_idle: self.seconds(
                "origin.pool_idle_seconds",
                raw.pool_idle_seconds,
                90,
                (1, 3600),
            ),
            pool_max_idle: self.ranged("origin.pool_max_idle", raw.pool_max_idle, 64, (1, 100_000))
                as usize,
            tls,
        }
    }

    fn store(&mut self, raw: RawStore) -> StoreConfig {
        let prefix = raw.prefix.unwrap_or_else(|| "antre".into());
        if prefix.is_empty() || prefix.contains(['{', '}', ' ']) {
            self.error(
                "store.prefix",
                format!("{prefix:?} must be non-empty, without braces or spaces"),
            );
        }
        let memory_only = |checker: &mut Checker, key: &str, set: bool| {
            if set {
                checker.error(format!("store.{key}"), "only applies to kind = \"memory\"");
            }
        };
        let redis_url = |checker: &mut Checker, key: &str, url: &str| {
            if !(url.starts_with("redis://") || url.starts_with("rediss://"))
                || url.parse::<Uri>().is_err()
            {
                checker.error(
                    key,
                    format!("{url:?} must be a redis:// or rediss:// URL, like \"redis://127.0.0.1:6379\""),
                );
            }
        };
        let kind = match raw.kind.as_deref().unwrap_or("memory") {
            "memory" => {
                if raw.url.is_some() || raw.cluster.is_some() {
                    self.error("store.kind", "`url` and `cluster` need kind = \"redis\"");
                }
                if raw.wait_replicas.is_some_and(|n| n > 0) {
                    self.error(
                        "store.wait_replicas",
                        "needs kind = \"redis\": the memory store has no replicas",
                    );
                }
                StoreKind::Memory {
                    state_file: self.path(raw.state_file.as_deref().unwrap_or("antre-state.json")),
                }
            }
            "redis" => {
                memory_only(self, "state_file", raw.state_file.is_some());
                match (raw.url, raw.cluster) {
                    (Some(url), None) => {
                        redis_url(self, "store.url", &url);
                        StoreKind::Redis { url, prefix }
                    }
                    (None, Some(urls)) if !urls.is_empty() => {
                        for (i, url) in urls.iter().enumerate() {
                            redis_url(self, &format!("store.cluster[{i}]"), url);
                        }
                        StoreKind::Cluster { urls, prefix }
                    }
                    (Some(_), Some(_)) => {
                        self.error(
                            "store",
                            "give either `url` (one Redis) or `cluster` (its nodes), not both",
                        );
                        StoreKind::Redis {
                            url: String::new(),
                            prefix,
                        }
                    }
                    _ => {
                        self.error(
                            "store.url",
                            "is required with kind = \"redis\" (or `cluster` for a Redis Cluster)",
                        );
                        StoreKind::Redis {
                            url: String::new(),
                            prefix,
                        }
                    }
                }
            }
            other => {
                self.error(
                    "store.kind",
                    format!("{other:?} is not a store kind; use \"memory\" or \"redis\""),
                );
                StoreKind::Memory {
                    state_file: PathBuf::from("antre-state.json"),
                }
            }
        };
        let on_error = match raw.on_error.as_deref().unwrap_or("hold") {
            "hold" => OnError::Hold,
            "admit" => OnError::Admit,
            other => {
                self.error(
                    "store.on_error",
                    format!("{other:?} must be \"hold\" or \"admit\""),
                );
                OnError::Hold
            }
        };
        let sync_millis = self.ranged("store.sync_millis", raw.sync_millis, 200, (10, 5_000));
        let wait_replicas = self.ranged("store.wait_replicas", raw.wait_replicas, 0, (0, 16));
        StoreConfig {
            kind,
            on_error,
            sync_interval: Duration::from_millis(sync_millis),
            wait_replicas: wait_replicas as u32,
        }
    }

    fn admin(&mut self, raw: RawAdmin) -> AdminConfig {
        let text = raw.addr.unwrap_or_else(|| "127.0.0.1:9090".into());
        let addr = text.parse().unwrap_or_else(|_| {
            self.error(
                "admin.addr",
                format!("{text:?} is not an address with a port, like \"127.0.0.1:9090\""),
            );
            SocketAddr::from(([127, 0, 0, 1], 9090))
        });
        let sources = [
            raw.token.is_some(),
            raw.token_env.is_some(),
            raw.token_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            self.error(
                "admin",
                "give at most one of `token`, `token_env` or `token_file`",
            );
        }
        let token = if let Some(token) = raw.token {
            Some(token)
        } else if let Some(var) = raw.token_env {
            std::env::var(&var).ok().or_else(|| {
                self.error(
                    "admin.token_env",
                    format!("environment variable {var:?} is not set"),
                );
                None
            })
        } else if let Some(file) = raw.token_file {
            let path = self.path(&file);
            match std::fs::read(&path) {
                Ok(bytes) => Some(String::from_utf8_lossy(&trim_newline(bytes)).into_owned()),
                Err(e) => {
                    self.error(
                        "admin.token_file",
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        } else {
            None
        };
        if let Some(token) = &token {
            if token.len() < 16 {
                self.error(
                    "admin.token",
                    format!("is {} characters long; at least 16 are needed", token.len()),
                );
            }
        }
        if token.is_none() && !addr.ip().is_loopback() {
            self.error(
                "admin.token",
                format!("is required to serve the admin API on {addr}, beyond loopback"),
            );
        }
        AdminConfig {
            addr,
            token,
            header_read_timeout: self.seconds(
                "admin.header_read_timeout_seconds",
                raw.header_read_timeout_seconds,
                10,
                (1, 3600),
            ),
            idle_timeout: self.seconds(
                "admin.idle_timeout_seconds",
                raw.idle_timeout_seconds,
                120,
                (1, 86_400),
            ),
            max_connections: self.connections("admin.max_connections", raw.max_connections, 256),
            max_connections_per_address: self.connections(
                "admin.max_connections_per_address",
                raw.max_connections_per_address,
                64,
            ),
        }
    }

    /// A cap on open connections: at least 1, at most ten million.
    fn connections(&mut self, key: &str, value: Option<u64>, default: u64) -> usize {
        let value = self.ranged(key, value, default, (1, 10_000_000));
        usize::try_from(value).unwrap_or(usize::MAX)
    }

    fn page(&mut self, raw: RawPage) -> PageConfig {
        let text = raw.utc_offset.unwrap_or_else(|| "+07:00".into());
        let utc_offset_minutes = parse_utc_offset(&text).unwrap_or_else(|| {
            self.error(
                "page.utc_offset",
                format!("{text:?} is not an offset like \"+07:00\" (between -12:00 and +14:00)"),
            );
            420
        });
        PageConfig { utc_offset_minutes }
    }

    /// One `[[keys]]` or `[[admission_keys]]` table (`section`).
    fn key(&mut self, section: &str, index: usize, raw: RawKey) -> Option<KeySpec> {
        let path = format!("{section}[{index}]");
        let Some(id) = raw.id else {
            self.error(format!("{path}.id"), "is required");
            return None;
        };
        let sources = [
            raw.secret.is_some(),
            raw.secret_env.is_some(),
            raw.secret_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            self.error(
                &path,
                "needs exactly one of `secret`, `secret_env` or `secret_file`",
            );
            return None;
        }
        let (key, secret) = if let Some(secret) = raw.secret {
            (format!("{path}.secret"), secret.into_bytes())
        } else if let Some(var) = raw.secret_env {
            match std::env::var(&var) {
                Ok(value) => (format!("{path}.secret_env"), value.into_bytes()),
                Err(_) => {
                    self.error(
                        format!("{path}.secret_env"),
                        format!("environment variable {var:?} is not set"),
                    );
                    return None;
                }
            }
        } else {
            let file = self.path(raw.secret_file.as_deref().unwrap_or_default());
            match std::fs::read(&file) {
                // A trailing newline from `echo` or an editor is not part of the secret.
                Ok(bytes) => (format!("{path}.secret_file"), trim_newline(bytes)),
                Err(e) => {
                    self.error(
                        format!("{path}.secret_file"),
                        format!("cannot read {}: {e}", file.display()),
                    );
                    return None;
                }
            }
        };
        match token::Key::new(&id, &secret) {
            Ok(_) => Some(KeySpec { id, secret }),
            Err(message) => {
                self.error(key, message);
                None
            }
        }
    }

    fn rooms(&mut self, raw: Vec<RawRoom>) -> Vec<RoomConfig> {
        let mut seen = BTreeSet::new();
        let mut rooms = Vec::new();
        for (index, raw) in raw.into_iter().enumerate() {
            if let Some(room) = self.room(index, raw) {
                if !seen.insert(room.id.clone()) {
                    self.error(
                        format!("rooms[{index}].id"),
                        format!("{:?} is used by another room", room.id),
                    );
                }
                rooms.push(room);
            }
        }
        for (index, room) in rooms.iter().enumerate() {
            let Some(rule) = &room.unused else { continue };
            match rooms.iter().find(|r| r.id == rule.to) {
                None => self.error(
                    format!("rooms[{index}].unused.to"),
                    format!(
                        "{:?} is not a room here; the unused places must go to another room",
                        rule.to
                    ),
                ),
                Some(to) if to.campaign.is_none() || to.campaign != room.campaign => self.error(
                    format!("rooms[{index}].unused.to"),
                    format!(
                        "{:?} is not a segment of the same campaign; set campaign on both rooms",
                        rule.to
                    ),
                ),
                Some(_) => {}
            }
            if room.settings.quota.is_none() && room.settings.phases.is_empty() {
                self.error(
                    format!("rooms[{index}].unused"),
                    "the room has no quota, so it has no unused places to give",
                );
            }
        }
        rooms
    }

    /// A segment's `[rooms.unused]`: when its unused places move, and to
    /// which room (checked against the others once all are read).
    fn unused(&mut self, path: &str, id: &str, value: &toml::Value) -> Option<UnusedMove> {
        let raw: RawUnused = self.decode(path, "unused", value);
        let at = match raw.at {
            Some(at) => self.time(&format!("{path}.at"), Some(at)),
            None => {
                self.error(
                    format!("{path}.at"),
                    "is required: when the unused places move",
                );
                None
            }
        };
        let to = match raw.to {
            Some(to) if to == id => {
                self.error(format!("{path}.to"), "names this room itself");
                None
            }
            Some(to) => Some(to),
            None => {
                self.error(format!("{path}.to"), "is required: the room they move to");
                None
            }
        };
        Some(UnusedMove { at: at?, to: to? })
    }

    fn room(&mut self, index: usize, raw: RawRoom) -> Option<RoomConfig> {
        let key = |name: &str| format!("rooms[{index}].{name}");
        let id = match raw.id {
            Some(id) if valid_room_id(&id) => id,
            Some(id) => {
                self.error(
                    key("id"),
                    format!("{id:?} must be 1 to 32 characters of a-z, 0-9, '_' or '-'"),
                );
                return None;
            }
            None => {
                self.error(key("id"), "is required");
                return None;
            }
        };
        let campaign = match raw.campaign {
            Some(name) if valid_room_id(&name) => Some(name),
            Some(name) => {
                self.error(
                    key("campaign"),
                    format!("{name:?} must be 1 to 32 characters of a-z, 0-9, '_' or '-'"),
                );
                None
            }
            None => None,
        };
        let unused = raw
            .unused
            .and_then(|value| self.unused(&key("unused"), &id, &value));
        let raw_paths = raw.paths.unwrap_or_default();
        if raw_paths.is_empty() {
            self.error(
                key("paths"),
                "must list at least one path prefix, like [\"/\"]",
            );
        }
        let paths = self.prefixes(&key("paths"), &raw_paths);
        let unguarded = self.prefixes(&key("unguarded"), &raw.unguarded.unwrap_or_default());
        let hosts = self.hosts(&key("hosts"), raw.hosts);
        let phases = self.phases(index, raw.phases);
        // With a schedule the phases set the pace; the room's own rate is
        // the one an operator may set live.
        let scheduled = phases.iter().map(|p| p.admit_per_minute).max();
        let Some(rate) = raw.admit_per_minute.or(scheduled.map(|r| r.max(1))) else {
            self.error(
                key("admit_per_minute"),
                "is required: admissions per minute, at least 1",
            );
            return None;
        };
        if rate == 0 || rate > 600_000 {
            self.error(
                key("admit_per_minute"),
                format!("must be between 1 and 600000, got {rate}"),
            );
        }
        let burst = raw.burst.unwrap_or((rate / 60).max(1));
        if burst == 0 || burst > 1_000_000 {
            self.error(
                key("burst"),
                format!("must be between 1 and 1000000, got {burst}"),
            );
        }
        if raw.quota == Some(0) {
            self.error(
                key("quota"),
                "must be at least 1; leave it out for no quota",
            );
        }
        let pass_minutes =
            self.ranged(&key("pass_minutes"), raw.pass_minutes, 20, (1, 7 * 24 * 60));
        let claim_minutes = self.ranged(&key("claim_minutes"), raw.claim_minutes, 10, (1, 24 * 60));
        let ticket_hours = self.ranged(&key("ticket_hours"), raw.ticket_hours, 24, (1, 30 * 24));
        let refresh_seconds = self.ranged(
            &key("refresh_seconds"),
            raw.refresh_seconds.map(u64::from),
            20,
            (2, 600),
        );
        let challenge_bits =
            self.ranged(&key("challenge_bits"), raw.challenge_bits, 16, (1, 32)) as u32;
        let challenge_bits_max = self.ranged(
            &key("challenge_bits_max"),
            raw.challenge_bits_max,
            19,
            (1, 32),
        ) as u32;
        if challenge_bits_max < challenge_bits {
            self.error(
                key("challenge_bits_max"),
                format!(
                    "must be at least challenge_bits ({challenge_bits}), got {challenge_bits_max}"
                ),
            );
        }
        let pass_max_minutes = self.ranged(
            &key("pass_max_minutes"),
            raw.pass_max_minutes,
            120.max(pass_minutes),
            (1, 30 * 24 * 60),
        );
        if pass_max_minutes < pass_minutes {
            self.error(
                key("pass_max_minutes"),
                format!("must be at least pass_minutes ({pass_minutes}), got {pass_max_minutes}"),
            );
        }
        let protection = Protection {
            tickets_per_minute: self.ranged(
                &key("tickets_per_address_per_minute"),
                raw.tickets_per_address_per_minute,
                60,
                (1, 1_000_000),
            ) as u32,
            ticket_burst: self.ranged(
                &key("tickets_per_address_burst"),
                raw.tickets_per_address_burst,
                30,
                (1, 1_000_000),
            ) as u32,
            challenge_bits,
            challenge_bits_max,
            max_networks_per_pass: self.ranged(
                &key("max_networks_per_pass"),
                raw.max_networks_per_pass,
                3,
                (1, MAX_NETWORKS_PER_PASS as u64),
            ) as u32,
            pass_requests_per_second: self.ranged(
                &key("pass_requests_per_second"),
                raw.pass_requests_per_second,
                20,
                (1, 100_000),
            ) as u32,
            pass_request_burst: self.ranged(
                &key("pass_request_burst"),
                raw.pass_request_burst,
                40,
                (1, 1_000_000),
            ) as u32,
            pass_max_seconds: pass_max_minutes * 60,
        };
        let mut allow = Vec::new();
        for (i, text) in raw.allow.unwrap_or_default().iter().enumerate() {
            match Cidr::parse(text) {
                Ok(block) => allow.push(block),
                Err(message) => self.error(format!("rooms[{index}].allow[{i}]"), message),
            }
        }
        let template = raw.template.and_then(|file| {
            let path = self.path(&file);
            match std::fs::read_to_string(&path) {
                Ok(source) => match Template::parse(&source) {
                    Ok(template) => Some(Arc::new(template)),
                    Err(problems) => {
                        for problem in problems {
                            self.error(key("template"), format!("{}: {problem}", path.display()));
                        }
                        None
                    }
                },
                Err(e) => {
                    self.error(
                        key("template"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        });
        Some(RoomConfig {
            title: raw.title.unwrap_or_else(|| id.clone()),
            id,
            paths,
            unguarded,
            hosts,
            settings: RoomSettings {
                admit_per_minute: rate.max(1),
                burst: burst.max(1),
                quota: raw.quota,
                paused: raw.paused.unwrap_or(false),
                claim_seconds: claim_minutes * 60,
                pass_seconds: pass_minutes * 60,
                phases,
                live_rate: false,
                draw_secret: String::new(),
            },
            pass_seconds: pass_minutes * 60,
            ticket_seconds: ticket_hours * 3600,
            refresh_seconds: refresh_seconds as u32,
            board: raw.board.unwrap_or(false),
            campaign,
            unused,
            template,
            protection,
            allow,
        })
    }
}

impl Checker {
    /// A room's schedule, `[[rooms.phases]]`: each phase whole and in
    /// range, the phases in order and apart.
    fn phases(&mut self, index: usize, raw: Option<toml::Value>) -> Vec<Phase> {
        let path = format!("rooms[{index}].phases");
        let raws: Vec<RawPhase> = match raw {
            None => return Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.decode(&format!("{path}[{i}]"), "phases", item))
                .collect(),
            Some(_) => {
                self.error(&path, "must be an array of tables ([[rooms.phases]])");
                return Vec::new();
            }
        };
        if raws.len() > MAX_PHASES {
            self.error(
                &path,
                format!("may hold at most {MAX_PHASES} phases, got {}", raws.len()),
            );
        }
        let mut phases: Vec<Phase> = Vec::new();
        for (i, raw) in raws.into_iter().enumerate() {
            let key = |name: &str| format!("{path}[{i}].{name}");
            let start = self.time(&key("start"), raw.start);
            let end = self.time(&key("end"), raw.end);
            let quota = match raw.quota {
                Some(0) => {
                    self.error(key("quota"), "must be at least 1");
                    None
                }
                Some(quota) => Some(quota),
                None => {
                    self.error(key("quota"), "is required: how many this phase admits");
                    None
                }
            };
            let rate = match (raw.admit_per_minute, raw.spread) {
                (Some(_), Some(true)) => {
                    self.error(
                        key("spread"),
                        "cannot be set beside admit_per_minute: a phase either has a rate or spreads its quota",
                    );
                    None
                }
                (Some(rate), _) if rate == 0 || rate > 600_000 => {
                    self.error(
                        key("admit_per_minute"),
                        format!("must be between 1 and 600000, got {rate}"),
                    );
                    None
                }
                (Some(rate), _) => Some(rate),
                (None, Some(true)) => Some(0),
                (None, _) => {
                    self.error(
                        key("admit_per_minute"),
                        "is required unless spread = true (which paces the quota evenly over the phase)",
                    );
                    None
                }
            };
            let prequeue = match raw.prequeue_minutes {
                Some(minutes) if minutes == 0 || minutes > 24 * 60 => {
                    self.error(
                        key("prequeue_minutes"),
                        format!("must be between 1 and 1440 (a day), got {minutes}"),
                    );
                    None
                }
                minutes => Some(minutes.unwrap_or(0) * 60 * MICROS_PER_SECOND),
            };
            let (Some(start), Some(end), Some(quota), Some(rate), Some(prequeue)) =
                (start, end, quota, rate, prequeue)
            else {
                continue;
            };
            if end <= start {
                self.error(
                    key("end"),
                    format!("must be after start ({})", utc_label(start)),
                );
                continue;
            }
            if let Some(previous) = phases.last() {
                if prequeue > 0 && start.saturating_sub(prequeue) < previous.end {
                    self.error(
                        key("prequeue_minutes"),
                        format!(
                            "the draw's pre-queue would open at {}, before the previous phase closes ({}); \
                             it must open after it",
                            utc_label(start.saturating_sub(prequeue)),
                            utc_label(previous.end)
                        ),
                    );
                    continue;
                }
                if start < previous.end {
                    self.error(
                        key("start"),
                        format!(
                            "{} is before the previous phase closes ({}): phases must be in order and must not overlap",
                            utc_label(start),
                            utc_label(previous.end)
                        ),
                    );
                    continue;
                }
            }
            phases.push(Phase {
                start,
                end,
                quota,
                admit_per_minute: rate,
                prequeue,
            });
        }
        phases
    }

    /// A point in time: a TOML date-time or an RFC 3339 string, with its
    /// UTC offset (`Z`, `+07:00`).
    fn time(&mut self, key: &str, value: Option<toml::Value>) -> Option<Micros> {
        const EXAMPLE: &str = "a time like 2021-07-12T08:00:00+07:00";
        let datetime = match value {
            None => {
                self.error(key, format!("is required: {EXAMPLE}"));
                return None;
            }
            Some(toml::Value::Datetime(datetime)) => datetime,
            Some(toml::Value::String(text)) => match text.parse::<toml::value::Datetime>() {
                Ok(datetime) => datetime,
                Err(_) => {
                    self.error(key, format!("{text:?} is not {EXAMPLE}"));
                    return None;
                }
            },
            Some(other) => {
                self.error(key, format!("must be {EXAMPLE}, got {}", other.type_str()));
                return None;
            }
        };
        match datetime_micros(&datetime) {
            Ok(micros) => Some(micros),
            Err(problem) => {
                self.error(key, format!("{datetime} {problem}"));
                None
            }
        }
    }
}

/// The most phases one room's schedule may hold.
pub const MAX_PHASES: usize = 100;

/// A TOML date-time with a date, a time and an offset, as microseconds
/// since the Unix epoch; from the year 2000 to 9999.
fn datetime_micros(datetime: &toml::value::Datetime) -> Result<Micros, &'static str> {
    let (Some(date), Some(time)) = (datetime.date, datetime.time) else {
        return Err("needs both a date and a time of day");
    };
    let offset_minutes = match datetime.offset {
        Some(toml::value::Offset::Z) => 0,
        Some(toml::value::Offset::Custom { minutes }) => i64::from(minutes),
        None => return Err("needs a UTC offset, such as +07:00 or Z"),
    };
    if date.year < 2000 {
        return Err("is before the year 2000");
    }
    let seconds = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    ) * 86_400
        + i64::from(time.hour) * 3_600
        + i64::from(time.minute) * 60
        + i64::from(time.second.min(59))
        - offset_minutes * 60;
    Ok(seconds as u64 * MICROS_PER_SECOND + u64::from(time.nanosecond) / 1_000)
}

/// A schedule time for error messages.
fn utc_label(micros: Micros) -> String {
    crate::clock::utc((micros / MICROS_PER_SECOND) as i64)
}

/// The most networks `max_networks_per_pass` may allow.
pub const MAX_NETWORKS_PER_PASS: usize = 8;

/// Room ids appear in cookie names and store keys: 1 to 32 of `a-z 0-9 _ -`.
pub fn valid_room_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `+07:00`, `-03:30`, `Z` or `+00:00`.
pub fn parse_utc_offset(text: &str) -> Option<i32> {
    if text == "Z" {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    let total = sign * (hours * 60 + minutes);
    (minutes < 60 && (-12 * 60..=14 * 60).contains(&total)).then_some(total)
}

fn trim_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT: &str = r#"
[listen]
addr = "127.0.0.1:8080"

[origin]
url = "http://127.0.0.1:9000"

[store]
kind = "memory"

[[rooms]]
id = "vaksin"
paths = ["/"]
admit_per_minute = 60
quota = 1000
pass_minutes = 20
"#;

    fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        Config::parse(text, Path::new("/tmp"))
    }

    /// Asserts each of `expected` is among `errors`, word for word.
    fn assert_reported(errors: &[String], expected: &[&str]) {
        for expected in expected {
            assert!(
                errors.iter().any(|e| e == expected),
                "{expected} not in {errors:?}"
            );
        }
    }

    fn messages(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_contract_config_parses_with_defaults() {
        let config = parse(CONTRACT).unwrap();
        let room = &config.rooms[0];
        assert_eq!(room.id, "vaksin");
        assert_eq!(room.settings.admit_per_minute, 60);
        assert_eq!(room.settings.burst, 1);
        assert_eq!(room.settings.quota, Some(1000));
        assert_eq!(room.settings.claim_seconds, 600);
        assert_eq!(room.pass_seconds, 1200);
        assert_eq!(config.listen.prefix, "/_antre");
        assert_eq!(config.page.utc_offset_minutes, 420);
        assert!(
            matches!(&config.store.kind, StoreKind::Memory { state_file } if state_file == Path::new("/tmp/antre-state.json"))
        );
    }

    #[test]
    fn a_misspelt_key_is_named_with_a_suggestion() {
        let errors = messages(&CONTRACT.replace("admit_per_minute", "admit_per_minit"));
        assert!(
            errors.iter().any(|e| e.contains("rooms[0].admit_per_minit")
                && e.contains("did you mean `admit_per_minute`")),
            "{errors:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = CONTRACT
            .replace("127.0.0.1:8080", "nowhere")
            .replace("pass_minutes = 20", "pass_minutes = 0\nqouta = 3")
            .replace("[store]", "[store]\ncolour = 1")
            .replace("http://127.0.0.1:9000", "ftp://x");
        let errors = messages(&text);
        for key in [
            "listen.addr",
            "rooms[0].qouta",
            "rooms[0].pass_minutes",
            "store.colour",
            "origin.url",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(key)),
                "{key} missing from {errors:?}"
            );
        }
        // Only what the user wrote wrong: an unknown key does not hide the
        // rest of its table, nor add errors about it.
        assert_eq!(errors.len(), 5, "{errors:?}");
    }

    #[test]
    fn out_of_range_values_name_their_key_and_value() {
        let errors = messages(&CONTRACT.replace("pass_minutes = 20", "pass_minutes = 0"));
        assert_eq!(
            errors,
            vec!["rooms[0].pass_minutes: must be between 1 and 10080, got 0"]
        );
        let errors = messages(&CONTRACT.replace("quota = 1000", "quota = \"many\""));
        assert_eq!(
            errors,
            vec!["rooms[0].quota: invalid type: string \"many\", expected u64"]
        );
    }

    #[test]
    fn short_keys_and_duplicate_rooms_are_refused() {
        let text = format!(
            "{CONTRACT}\n[[keys]]\nid = \"k1\"\nsecret = \"short\"\n\n[[rooms]]\nid = \"vaksin\"\npaths = [\"/x\"]\nadmit_per_minute = 1\n"
        );
        let errors = messages(&text);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("keys[0].secret") && e.contains("at least 32")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("rooms[1].id") && e.contains("another room")),
            "{errors:?}"
        );
    }

    #[test]
    fn prefixes_hosts_and_proxies_are_checked() {
        let text = CONTRACT
            .replace(
                "paths = [\"/\"]",
                "paths = [\"/\", \"/a/../b\", \"/%u0064\"]\nunguarded = [\"/Static\", \"/x?y\"]\nhosts = [\"Kota.Example.\", \"a:1\"]",
            )
            .replace(
                "addr = \"127.0.0.1:8080\"",
                "addr = \"127.0.0.1:8080\"\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\ntrust_forwarded = true",
            );
        let errors = messages(&text);
        assert_reported(
            &errors,
            &[
                "rooms[0].paths: \"/a/../b\" is not a plain path: the path holds a dot segment",
                "rooms[0].paths: \"/%u0064\" is not a plain path: the path holds a %u escape",
                "rooms[0].unguarded: \"/x?y\" must be a path, without '?' or '#'",
                "rooms[0].hosts: \"a:1\" must be a host name without port or path",
                "listen.trusted_proxies[1]: \"10.0.0.0/40\": the prefix length must be 0 to 32",
            ],
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("listen.trust_forwarded: was replaced by `trusted_proxies`")),
            "{errors:?}"
        );
        let text = CONTRACT.replace(
            "paths = [\"/\"]",
            "paths = [\"/\"]\nunguarded = [\"/Static\", \"/favicon.ico\"]\nhosts = [\"Kota.Example.\"]",
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.rooms[0].unguarded, ["/static", "/favicon.ico"]);
        assert_eq!(config.rooms[0].hosts, ["kota.example"]);
        assert!(config.listen.access_log);
    }

    #[test]
    fn admission_keys_are_checked_like_keys() {
        let text = format!(
            "{CONTRACT}\n[[admission_keys]]\nid = \"a1\"\nsecret = \"short\"\n\n\
             [[admission_keys]]\nid = \"a2\"\n\n\
             [[admission_keys]]\nid = \"a3\"\nsecret = \"{}\"\nsecret_env = \"X\"\n\n\
             [[admission_keys]]\nid = \"a4\"\nsecret_file = \"/nonexistent/antre-key\"\nsecrett = 1\n",
            "s".repeat(32)
        );
        let errors = messages(&text);
        assert_reported(
            &errors,
            &[
                "admission_keys[0].secret: key \"a1\" is 5 bytes long; at least 32 are needed",
                "admission_keys[1]: needs exactly one of `secret`, `secret_env` or `secret_file`",
                "admission_keys[2]: needs exactly one of `secret`, `secret_env` or `secret_file`",
                "admission_keys[3].secrett: unknown key `secrett`; did you mean `secret`?",
            ],
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("admission_keys[3].secret_file: cannot read")),
            "{errors:?}"
        );

        let secret = "an admission secret of 32 bytes or more";
        let text = format!("{CONTRACT}\n[[admission_keys]]\nid = \"a1\"\nsecret = \"{secret}\"\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.admission_keys[0].id, "a1");
        assert_eq!(config.admission_keys[0].secret, secret.as_bytes());
        assert!(config.keys.is_empty());
    }

    #[test]
    fn an_admission_key_cannot_be_a_ticket_key() {
        let secret = "one secret of 32 bytes or more, used twice";
        let text = format!(
            "{CONTRACT}\n[[keys]]\nid = \"k1\"\nsecret = \"{secret}\"\n\n\
             [[admission_keys]]\nid = \"a1\"\nsecret = \"{secret}\"\n"
        );
        let errors = messages(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("admission_keys[0]: has the secret of [[keys]] \"k1\""),
            "{errors:?}"
        );
    }

    #[test]
    fn ticket_keys_add_the_state_files_key_only_with_the_memory_store() {
        let stored = StoredKey {
            id: "auto".into(),
            secret: "c2VjcmV0".into(),
        };
        let ids = |config: &Config, stored: Option<&StoredKey>| -> Vec<String> {
            let keys = config.ticket_keys(stored).unwrap();
            keys.into_iter().map(|k| k.id).collect()
        };
        let bare = parse(CONTRACT).unwrap();
        assert_eq!(ids(&bare, Some(&stored)), ["auto"]);
        assert!(ids(&bare, None).is_empty());
        let configured = parse(&format!(
            "{CONTRACT}\n[[keys]]\nid = \"k1\"\nsecret = \"{}\"\n",
            "k".repeat(32)
        ))
        .unwrap();
        // Keys configured after antre made its own: its own still verifies.
        assert_eq!(ids(&configured, Some(&stored)), ["k1", "auto"]);
        let same_id = StoredKey {
            id: "k1".into(),
            ..stored.clone()
        };
        assert_eq!(ids(&configured, Some(&same_id)), ["k1"]);
        let redis = parse(&format!(
            "{}\n[[keys]]\nid = \"k1\"\nsecret = \"{}\"\n",
            CONTRACT.replace(
                "kind = \"memory\"",
                "kind = \"redis\"\nurl = \"redis://127.0.0.1:6379\""
            ),
            "k".repeat(32)
        ))
        .unwrap();
        assert_eq!(ids(&redis, Some(&stored)), ["k1"]);
        let broken = StoredKey {
            id: "auto".into(),
            secret: "not base64!".into(),
        };
        assert!(bare.ticket_keys(Some(&broken)).is_err());
    }

    #[test]
    fn rooms_cannot_guard_by_host_when_the_host_header_is_rewritten() {
        let text = CONTRACT
            .replace(
                "url = \"http://127.0.0.1:9000\"",
                "url = \"http://127.0.0.1:9000\"\nhost = \"internal\"",
            )
            .replace(
                "paths = [\"/\"]",
                "paths = [\"/\"]\nhosts = [\"kota.example\"]",
            );
        assert!(messages(&text)[0].starts_with("rooms[0].hosts"));
    }

    #[test]
    fn a_shared_store_needs_configured_keys() {
        let text = CONTRACT.replace(
            "kind = \"memory\"",
            "kind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"",
        );
        let errors = messages(&text);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("keys: instances sharing Redis")),
            "{errors:?}"
        );
        let errors = messages(
            &CONTRACT.replace("kind = \"memory\"", "kind = \"redis\"\nurl = \"http://x\""),
        );
        assert!(
            errors.iter().any(|e| e.starts_with("store.url")),
            "{errors:?}"
        );
    }

    #[test]
    fn waiting_for_replicas_needs_redis_and_a_sane_count() {
        let errors = messages(
            &CONTRACT.replace("kind = \"memory\"", "kind = \"memory\"\nwait_replicas = 1"),
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("store.wait_replicas: needs kind = \"redis\"")),
            "{errors:?}"
        );
        let errors = messages(&CONTRACT.replace(
            "kind = \"memory\"",
            "kind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nwait_replicas = 17",
        ));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("store.wait_replicas: must be between 0 and 16, got 17")),
            "{errors:?}"
        );
    }

    #[test]
    fn connection_caps_and_admin_timeouts() {
        let config = parse(CONTRACT).unwrap();
        assert_eq!(config.listen.max_connections, None);
        assert_eq!(config.listen.max_connections_per_address, 512);
        assert_eq!(config.admin.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.admin.idle_timeout, Duration::from_secs(120));
        assert_eq!(
            (
                config.admin.max_connections,
                config.admin.max_connections_per_address
            ),
            (256, 64)
        );
        let text = CONTRACT.replace(
            "addr = \"127.0.0.1:8080\"",
            "addr = \"127.0.0.1:8080\"\nmax_connections = 0\n\n[admin]\nidle_timeout_seconds = 0\nmax_connections_per_address = 20000000",
        );
        assert_eq!(
            messages(&text),
            vec![
                "listen.max_connections: must be between 1 and 10000000, got 0",
                "admin.idle_timeout_seconds: must be between 1 and 86400, got 0",
                "admin.max_connections_per_address: must be between 1 and 10000000, got 20000000",
            ]
        );
        let text = CONTRACT.replace(
            "addr = \"127.0.0.1:8080\"",
            "addr = \"127.0.0.1:8080\"\nmax_connections = 100",
        );
        assert_eq!(parse(&text).unwrap().listen.max_connections, Some(100));
    }

    #[test]
    fn the_origin_pool_keeps_a_bounded_number_of_idle_connections() {
        assert_eq!(parse(CONTRACT).unwrap().origin.pool_max_idle, 64);
        let with = |value: &str| {
            CONTRACT.replace(
                "url = \"http://127.0.0.1:9000\"",
                &format!("url = \"http://127.0.0.1:9000\"\npool_max_idle = {value}"),
            )
        };
        assert_eq!(parse(&with("8")).unwrap().origin.pool_max_idle, 8);
        assert_eq!(
            messages(&with("0")),
            vec!["origin.pool_max_idle: must be between 1 and 100000, got 0"]
        );
    }

    const ROOM: &str =
        "[origin]\nurl = \"http://127.0.0.1:9\"\n[[rooms]]\nid = \"kota\"\npaths = [\"/\"]\n";

    #[test]
    fn segments_name_each_mistake_in_their_move() {
        let origin = "[origin]\nurl = \"http://127.0.0.1:9\"\n";
        let room = |id: &str, extra: &str| {
            format!("[[rooms]]\nid = \"{id}\"\npaths = [\"/{id}\"]\nadmit_per_minute = 5\n{extra}")
        };
        let good = format!(
            "{origin}{}{}",
            room("warga", "campaign = \"malang\"\nquota = 10\n"),
            room(
                "luar",
                "campaign = \"malang\"\nquota = 5\n[rooms.unused]\nat = 2027-03-02T14:00:00+07:00\nto = \"warga\"\n"
            ),
        );
        let config = parse(&good).unwrap();
        assert_eq!(
            config.rooms[1].unused,
            Some(UnusedMove {
                at: 1_803_970_800 * MICROS_PER_SECOND,
                to: "warga".into()
            })
        );
        assert_eq!(config.rooms[0].campaign.as_deref(), Some("malang"));
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
        let bad = format!(
            "{origin}{}{}{}{}",
            room("warga", "campaign = \"Malang Kota\"\nquota = 10\n"),
            room("luar", "campaign = \"malang\"\n[rooms.unused]\nat = 2027-03-02T14:00:00+07:00\nto = \"kota\"\n"),
            room("lain", "campaign = \"lain\"\nquota = 1\n[rooms.unused]\nto = \"lain\"\nwhen = 1\n"),
            room("dua", "campaign = \"dua\"\nquota = 1\n[rooms.unused]\nat = 2027-03-02T14:00:00+07:00\nto = \"luar\"\n"),
        );
        assert_reported(
            &messages(&bad),
            &[
                "rooms[0].campaign: \"Malang Kota\" must be 1 to 32 characters of a-z, 0-9, '_' or '-'",
                "rooms[1].unused.to: \"kota\" is not a room here; the unused places must go to another room",
                "rooms[1].unused: the room has no quota, so it has no unused places to give",
                "rooms[2].unused.at: is required: when the unused places move",
                "rooms[2].unused.to: names this room itself",
                "rooms[2].unused.when: unknown key `when`",
                "rooms[3].unused.to: \"luar\" is not a segment of the same campaign; set campaign on both rooms",
            ],
        );
    }

    #[test]
    fn phases_read_rfc3339_times_with_their_offset() {
        let text = format!(
            "{ROOM}[[rooms.phases]]\nstart = 2021-07-12T08:00:00+07:00\nend = \"2021-07-12T16:00:00+07:00\"\n\
             quota = 400\nspread = true\n\
             [[rooms.phases]]\nstart = 2021-07-13T01:00:00Z\nend = 2021-07-13T09:00:00Z\n\
             quota = 1000\nadmit_per_minute = 5\n"
        );
        let config = parse(&text).unwrap();
        let settings = &config.rooms[0].settings;
        // 2021-07-12 08:00 WIB is 01:00 UTC: Unix 1,626,051,600.
        let start = 1_626_051_600 * MICROS_PER_SECOND;
        assert_eq!(
            settings.phases,
            vec![
                Phase {
                    start,
                    end: start + 8 * 3600 * MICROS_PER_SECOND,
                    quota: 400,
                    admit_per_minute: 0,
                    prequeue: 0,
                },
                Phase {
                    start: start + 24 * 3600 * MICROS_PER_SECOND,
                    end: start + 32 * 3600 * MICROS_PER_SECOND,
                    quota: 1000,
                    admit_per_minute: 5,
                    prequeue: 0,
                },
            ]
        );
        // Tickets last 24 hours; the phases open 24 hours apart.
        assert!(config
            .warnings()
            .iter()
            .all(|w| !w.contains("ticket_hours")));
        let short =
            parse(&text.replace("paths = [\"/\"]\n", "paths = [\"/\"]\nticket_hours = 12\n"))
                .unwrap()
                .warnings();
        assert!(
            short.iter().any(|w| w.starts_with(
                "rooms[0].ticket_hours: a ticket taken when phase 0 opens has expired (12 hours) before phase 1 opens 24 hours later"
            )),
            "{short:?}"
        );
        // The room's own rate, unset, is the fastest phase's.
        assert_eq!(settings.admit_per_minute, 5);
        // 5 a minute for 8 hours is 2,400: room for the quota of 1,000.
        assert!(config.warnings().iter().all(|w| !w.contains("phases[1]")));
        let slow = text.replace("admit_per_minute = 5", "admit_per_minute = 1");
        let warnings = parse(&slow).unwrap().warnings();
        assert!(
            warnings.iter().any(|w| w.starts_with(
                "rooms[0].phases[1]: at 1 a minute for 480 minutes it admits at most 480 of its quota of 1000"
            )),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_bad_schedule_is_named_phase_by_phase() {
        let phase = |body: &str| format!("[[rooms.phases]]\n{body}\n");
        let text = format!(
            "{ROOM}{}{}{}{}{}{}",
            phase("start = 2021-07-12T08:00:00\nend = 2021-07-12T16:00:00+07:00\nquota = 1\nspread = true"),
            phase("start = 2021-07-12T08:00:00+07:00\nend = 2021-07-12T07:00:00+07:00\nquota = 1\nspread = true"),
            phase("start = \"tomorrow at nine\"\nend = 2021-07-12T16:00:00+07:00\nquota = 0\nadmit_per_minute = 5\nspread = true"),
            phase("start = 2021-07-12T08:00:00+07:00\nend = 2021-07-12T16:00:00+07:00\nquota = 5"),
            phase("start = 2021-07-12T08:00:00+07:00\nend = 2021-07-12T16:00:00+07:00\nquota = 5\nspread = true"),
            phase("start = 2021-07-12T12:00:00+07:00\nend = 2021-07-12T18:00:00+07:00\nquota = 5\nspred = true"),
        );
        let errors = messages(&text);
        assert_reported(
            &errors,
            &[
                "rooms[0].phases[0].start: 2021-07-12T08:00:00 needs a UTC offset, such as +07:00 or Z",
                "rooms[0].phases[1].end: must be after start (2021-07-12 01:00 UTC)",
                "rooms[0].phases[2].start: \"tomorrow at nine\" is not a time like 2021-07-12T08:00:00+07:00",
                "rooms[0].phases[2].quota: must be at least 1",
                "rooms[0].phases[2].spread: cannot be set beside admit_per_minute: a phase either has a rate or spreads its quota",
                "rooms[0].phases[3].admit_per_minute: is required unless spread = true (which paces the quota evenly over the phase)",
                "rooms[0].phases[5].spred: unknown key `spred`; did you mean `spread`?",
                "rooms[0].phases[5].admit_per_minute: is required unless spread = true (which paces the quota evenly over the phase)",
            ],
        );
        let overlap = format!(
            "{ROOM}{}{}",
            phase("start = 2021-07-12T08:00:00+07:00\nend = 2021-07-12T16:00:00+07:00\nquota = 5\nspread = true"),
            phase("start = 2021-07-12T12:00:00+07:00\nend = 2021-07-12T18:00:00+07:00\nquota = 5\nspread = true"),
        );
        assert_reported(
            &messages(&overlap),
            &["rooms[0].phases[1].start: 2021-07-12 05:00 UTC is before the previous phase closes (2021-07-12 09:00 UTC): phases must be in order and must not overlap"],
        );
        // A draw's pre-queue: in range, and open only after the previous
        // phase has closed.
        let draws = format!(
            "{ROOM}{}{}{}",
            phase("start = 2021-07-12T08:00:00+07:00\nend = 2021-07-12T16:00:00+07:00\nquota = 5\nspread = true"),
            phase("start = 2021-07-12T17:00:00+07:00\nend = 2021-07-12T18:00:00+07:00\nquota = 5\nspread = true\nprequeue_minutes = 90"),
            phase("start = 2021-07-13T08:00:00+07:00\nend = 2021-07-13T09:00:00+07:00\nquota = 5\nspread = true\nprequeue_minutes = 0"),
        );
        assert_reported(
            &messages(&draws),
            &[
                "rooms[0].phases[2].prequeue_minutes: must be between 1 and 1440 (a day), got 0",
                "rooms[0].phases[1].prequeue_minutes: the draw's pre-queue would open at 2021-07-12 08:30 UTC, before the previous phase closes (2021-07-12 09:00 UTC); it must open after it",
            ],
        );
        // Without phases a room still needs its rate.
        assert_reported(
            &messages(ROOM),
            &["rooms[0].admit_per_minute: is required: admissions per minute, at least 1"],
        );
    }

    #[test]
    fn utc_offsets() {
        assert_eq!(parse_utc_offset("+07:00"), Some(420));
        assert_eq!(parse_utc_offset("-03:30"), Some(-210));
        assert_eq!(parse_utc_offset("Z"), Some(0));
        for bad in ["07:00", "+7:00", "+15:00", "+07:60", ""] {
            assert_eq!(parse_utc_offset(bad), None, "{bad}");
        }
    }
}
