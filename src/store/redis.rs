//! The Redis store: rooms' counters in Redis (one server or a cluster), so a
//! fleet of antre instances behaves as one waiting room.
//!
//! Every operation is one call of `room.lua`, which applies the same rules
//! as `queue.rs` atomically inside Redis. A room's keys share a hash tag
//! (`antre:{vaksin}:state`, `...:claimed`, `...:checkpoints`, `...:pending`,
//! `...:promised`), so each call touches one cluster slot and rooms spread
//! over the cluster. The operators' audit trail is one list,
//! `antre:audit`, newest first.
//!
//! Losing Redis's data (a restart without persistence) is noticed: the room
//! is missing, or its `boot` marker changed. The store then re-seeds the room
//! from this instance's last view instead of starting the line over; other
//! instances merge what they knew (the larger numbers win).
//!
//! Losing only the last writes (a replica that had not caught up takes
//! over) is noticed too: every write extends a chain, a digest of every
//! write since the room was made, and each call carries the version and
//! chain this instance last saw. Where the room's history does not pass
//! through them, the script answers `rewritten` and this instance puts back
//! what it knew, among it every exchange it made lately, so a pass somebody
//! holds is counted against the quota again. With `wait_replicas`, a ticket
//! or a pass is handed out only once that many replicas hold it (Redis
//! `WAIT`), so a replica that takes over lacks nothing anybody holds.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::Value;
use tokio::sync::OnceCell;

use super::queue::{Claim, Entry, Phase, RoomSettings, RoomView, SettingsChange};
use super::{Arrival, AuditEntry, Store, StoreError, AUDIT_KEEP};
use crate::clock::Micros;
use crate::token::random_u64;

const SCRIPT: &str = include_str!("room.lua");

/// Records the networks a pass is used from. KEYS[1] the pass's set;
/// ARGV[1] the most networks allowed, ARGV[2] how long to remember them
/// (milliseconds), ARGV[3..] the networks, the one the pass was issued to
/// first. Returns 1 when every one of them fits, else 0 (the set keeps
/// those that fitted).
const BIND_SCRIPT: &str = r"
local max = tonumber(ARGV[1])
for i = 3, #ARGV do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 0 then
    if redis.call('SCARD', KEYS[1]) >= max then
      return 0
    end
    redis.call('SADD', KEYS[1], ARGV[i])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// After a failed call, calls fail at once for this long (the background
/// sync keeps probing), so visitors are not kept waiting on a dead Redis.
const BACKOFF: Duration = Duration::from_millis(500);

/// How long promises made during an outage may come in before they are
/// numbered together; waiting pages ask every two seconds.
const PENDING_SETTLE: Duration = Duration::from_secs(4);

/// How long one Redis call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_millis(1000);

/// With `wait_replicas`, how long a write waits for its replicas; a write
/// they do not confirm in time is not handed to the visitor.
const CONFIRM_TIMEOUT: Duration = Duration::from_millis(500);

/// Exchanges each instance remembers per room, to put back after Redis lost
/// them. Loss windows last seconds; this covers thousands of admissions.
const EXCHANGES_KEPT: usize = 4096;

enum Connection {
    Single(ConnectionManager),
    /// Connected on first use, so antre starts while the cluster is down.
    Cluster(Box<ClusterLink>),
}

/// One connection, of either kind, for a single request.
enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(c) => c.req_packed_commands(cmd, offset, count),
            Link::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

struct ClusterLink {
    client: redis::cluster::ClusterClient,
    connection: OnceCell<ClusterConnection>,
}

/// What this instance knows of a room, for re-seeding after Redis lost it.
#[derive(Default)]
struct Known {
    settings: Option<RoomSettings>,
    /// The highest counters heard back from Redis (each counter only grows
    /// within one incarnation and epoch, so replies arriving out of order
    /// are merged, never allowed to lower it).
    last: Option<RoomView>,
    /// The room's incarnation marker, the highest version seen in it and
    /// the chain after that version.
    boot: String,
    version: u64,
    chain: String,
    /// Exchanges this instance made lately, (epoch, ticket, when), oldest
    /// first: the passes it handed out, to count again if Redis loses them.
    exchanges: VecDeque<(u64, u64, Micros)>,
    /// Until when calls about this room fail fast (milliseconds on the
    /// store's monotonic clock); per room, so one failing cluster node does
    /// not hold up rooms on the others.
    failing_until: u64,
}

impl Known {
    /// What a reply shows Redis lost of what this instance had heard back
    /// about: the room (a new incarnation), or its last writes (a version
    /// older than the one this instance had seen before it sent the
    /// request; replies to concurrent requests may come back in any order,
    /// but none can predate what was already seen when it was sent).
    fn lost(&self, boot: &str, version: u64, seen_before: u64) -> Option<Loss> {
        if self.boot.is_empty() {
            None
        } else if self.boot != boot {
            Some(Loss::Room)
        } else if version < seen_before {
            Some(Loss::Writes)
        } else {
            None
        }
    }

    /// What the script is told this instance saw: 'version:chain'.
    fn seen(&self) -> String {
        if self.boot.is_empty() || self.chain.is_empty() {
            return String::new();
        }
        format!("{}:{}", self.version, self.chain)
    }

    /// Forgets the history seen, keeping the incarnation: the next reply is
    /// taken as it is.
    fn forget_history(&mut self) {
        self.version = 0;
        self.chain.clear();
        self.last = None;
    }

    fn exchanged(&mut self, epoch: u64, ticket: u64, at: Micros) {
        if self.exchanges.len() == EXCHANGES_KEPT {
            self.exchanges.pop_front();
        }
        self.exchanges.push_back((epoch, ticket, at));
    }

    fn remember(&mut self, view: &RoomView, boot: String, version: u64, chain: String) {
        let same = self.boot == boot && self.last.as_ref().is_some_and(|l| l.epoch == view.epoch);
        self.last = Some(match (&self.last, same) {
            (Some(last), true) => RoomView {
                tail: last.tail.max(view.tail),
                frontier: last.frontier.max(view.frontier),
                floor: last.floor.max(view.floor),
                admitted: last.admitted.max(view.admitted),
                wasted: last.wasted.max(view.wasted),
                tat: last.tat.max(view.tat),
                ..view.clone()
            },
            _ => view.clone(),
        });
        if boot != self.boot || version >= self.version {
            self.version = version;
            self.chain = chain;
        }
        self.boot = boot;
    }
}

/// What Redis lost of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    /// All of it: it restarted without its data, or was flushed.
    Room,
    /// Its last writes: older data came back, or a replica without them
    /// took over and wrote on.
    Writes,
}

/// A script call's reply, and whether the replicas asked for hold it.
struct Reply {
    values: Vec<Value>,
    confirmed: bool,
}

/// Counts and latency of Redis calls, for reports and metrics.
#[derive(Debug, Default)]
pub struct RedisStats {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub micros: AtomicU64,
}

pub struct RedisStore {
    /// Call latency and failures for the metrics registry, when attached.
    timers: Option<(prometheus::Histogram, prometheus::IntCounter)>,
    connection: Connection,
    script: redis::Script,
    bind_script: redis::Script,
    invite_script: redis::Script,
    prefix: String,
    known: Mutex<HashMap<String, Known>>,
    started: Instant,
    /// After rebuilding a lost room, how long to wait for the other
    /// instances to add what they knew before tickets flow again.
    recovery_grace: Duration,
    /// Replicas that must confirm a write a visitor is given (0: none).
    wait_replicas: u32,
    /// This instance's part of every write id, and the count of its writes:
    /// together unique, so two histories never chain the same writes.
    writer: u64,
    writes: AtomicU64,
    pub stats: Arc<RedisStats>,
}

impl RedisStore {
    /// A store on one Redis server (`redis://` or `rediss://`, with a
    /// password in the URL if needed). Connects lazily.
    pub fn single(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client =
            redis::Client::open(url).map_err(|e| StoreError::Unavailable(format!("{url}: {e}")))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Unavailable(format!("{url}: {e}")))?;
        Ok(RedisStore::new(Connection::Single(manager), prefix))
    }

    /// A store on a Redis Cluster, given some of its nodes.
    pub fn cluster(urls: &[String], prefix: &str) -> Result<Self, StoreError> {
        let client = redis::cluster::ClusterClientBuilder::new(urls.iter().map(String::as_str))
            .connection_timeout(CALL_TIMEOUT)
            .response_timeout(CALL_TIMEOUT)
            .retries(2)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cluster: {e}")))?;
        let link = ClusterLink {
            client,
            connection: OnceCell::new(),
        };
        Ok(RedisStore::new(Connection::Cluster(Box::new(link)), prefix))
    }

    fn new(connection: Connection, prefix: &str) -> Self {
        RedisStore {
            timers: None,
            connection,
            script: redis::Script::new(SCRIPT),
            bind_script: redis::Script::new(BIND_SCRIPT),
            invite_script: redis::Script::new(INVITE_SCRIPT),
            prefix: prefix.to_owned(),
            known: Mutex::new(HashMap::new()),
            started: Instant::now(),
            recovery_grace: Duration::from_secs(1),
            wait_replicas: 0,
            writer: random_u64(),
            writes: AtomicU64::new(0),
            stats: Arc::new(RedisStats::default()),
        }
    }

    /// Hands a visitor a ticket or a pass only once `replicas` Redis
    /// replicas hold it (Redis `WAIT`, up to half a second); a write they
    /// do not confirm fails as if Redis had not answered. Default 0.
    pub fn with_replicas(mut self, replicas: u32) -> Self {
        self.wait_replicas = replicas;
        self
    }

    /// Reports every call's latency and failures to these metrics.
    pub fn with_metrics(
        mut self,
        seconds: prometheus::Histogram,
        errors: prometheus::IntCounter,
    ) -> Self {
        self.timers = Some((seconds, errors));
        self
    }

    /// Sets the wait after a rebuild; it should cover a few sync intervals
    /// of every instance. Default one second.
    pub fn with_recovery_grace(mut self, grace: Duration) -> Self {
        self.recovery_grace = grace;
        self
    }

    fn keys(&self, room: &str) -> [String; 12] {
        let base = format!("{}:{{{room}}}", self.prefix);
        [
            format!("{base}:state"),
            format!("{base}:claimed"),
            format!("{base}:checkpoints"),
            format!("{base}:pending"),
            format!("{base}:promised"),
            format!("{base}:exchanged"),
            format!("{base}:spent"),
            format!("{base}:history"),
            format!("{base}:returned"),
            format!("{base}:entries"),
            format!("{base}:drawn"),
            format!("{base}:moves"),
        ]
    }

    /// The networks a pass has been used from; in the room's slot.
    fn pass_key(&self, room: &str, pass: u64) -> String {
        format!("{}:{{{room}}}:pass:{pass:016x}", self.prefix)
    }

    /// The audit trail: a list, newest first, shared by the fleet.
    fn audit_key(&self) -> String {
        format!("{}:audit", self.prefix)
    }

    /// The connection to use now; the cluster's is made on first use.
    async fn link(&self) -> Result<Link, String> {
        match &self.connection {
            Connection::Single(manager) => Ok(Link::Single(manager.clone())),
            Connection::Cluster(cluster) => {
                let connect = cluster
                    .connection
                    .get_or_try_init(|| cluster.client.get_async_connection());
                match tokio::time::timeout(CALL_TIMEOUT, connect).await {
                    Ok(Ok(connection)) => Ok(Link::Cluster(connection.clone())),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no connection within {CALL_TIMEOUT:?}")),
                }
            }
        }
    }

    /// Runs one request on a connection within the call timeout, and
    /// counts it (time, failure) in the store's statistics and metrics.
    async fn timed<T, F, Fut>(&self, request: F) -> Result<T, String>
    where
        F: FnOnce(Link) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let result = match self.link().await {
            Ok(link) => match tokio::time::timeout(CALL_TIMEOUT, request(link)).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
            },
            Err(e) => Err(e),
        };
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.stats
            .micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if result.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((seconds, errors)) = &self.timers {
            seconds.observe(started.elapsed().as_secs_f64());
            if result.is_err() {
                errors.inc();
            }
        }
        result
    }

    /// Runs `pipeline` (commands outside the room script).
    async fn pipeline<T: redis::FromRedisValue>(
        &self,
        pipeline: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        self.timed(|mut link| async move { pipeline.query_async(&mut link).await })
            .await
            .map_err(StoreError::Unavailable)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One script call. `probe` calls go out even while failing fast.
    /// Every operation but `sync` and `extend` waits for `wait_replicas`.
    async fn call(
        &self,
        room: &str,
        mut args: Vec<String>,
        probe: bool,
    ) -> Result<Reply, StoreError> {
        let elapsed = self.started.elapsed().as_millis() as u64;
        let (failing, seen) = {
            let known = self.known();
            let entry = known.get(room);
            (
                entry.is_some_and(|k| elapsed < k.failing_until),
                entry.map(Known::seen).unwrap_or_default(),
            )
        };
        if !probe && failing {
            return Err(StoreError::Unavailable("Redis is not answering".into()));
        }
        let write = self.writes.fetch_add(1, Ordering::Relaxed);
        args.insert(2, format!("{:016x}{write:x}", self.writer));
        args.insert(3, seen);
        let replicas = match args[0].as_str() {
            "sync" | "extend" => 0,
            _ => self.wait_replicas,
        };
        let keys = self.keys(room);
        let script = &self.script;
        let result = if replicas == 0 {
            let mut invocation = script.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            for arg in &args {
                invocation.arg(arg);
            }
            self.timed(|mut link| async move {
                let values: Vec<Value> = invocation.invoke_async(&mut link).await?;
                Ok((values, 0))
            })
            .await
        } else {
            self.timed(|mut link| async move {
                confirmed(&mut link, script, &keys, &args, replicas).await
            })
            .await
        };
        let backoff = || {
            let until = (self.started.elapsed() + BACKOFF).as_millis() as u64;
            self.known()
                .entry(room.to_owned())
                .or_default()
                .failing_until = until;
        };
        match result {
            Ok((values, acked)) if acked >= i64::from(replicas) => {
                if let Some(known) = self.known().get_mut(room) {
                    known.failing_until = 0;
                }
                Ok(Reply {
                    values,
                    confirmed: true,
                })
            }
            Ok((values, acked)) => {
                tracing::warn!(
                    room,
                    acked,
                    wanted = replicas,
                    "Redis replicas did not confirm a write in time; nothing it gave is handed out"
                );
                backoff();
                Ok(Reply {
                    values,
                    confirmed: false,
                })
            }
            Err(message) => {
                backoff();
                Err(StoreError::Unavailable(message))
            }
        }
    }

    /// Runs an operation; if Redis has lost the room, or writes this
    /// instance saw, puts back what this instance knew and runs the
    /// operation again.
    async fn run(
        &self,
        room: &str,
        args: Vec<String>,
        probe: bool,
    ) -> Result<(String, u64, RoomView), StoreError> {
        let now: Micros = args[1].parse().unwrap_or(0);
        for _ in 0..2 {
            let seen_before = self.known().get(room).map_or(0, |k| k.version);
            let reply = self.call(room, args.clone(), probe).await?;
            match reply.values.first().and_then(text).as_deref() {
                Some("missing") => {
                    self.reseed(room, Loss::Room, now).await?;
                    continue;
                }
                Some("rewritten") => {
                    self.recover(room, Loss::Writes, now).await?;
                    continue;
                }
                Some("settling") => {
                    let view = self.known().get(room).and_then(|k| k.last.clone());
                    let view = view.ok_or_else(|| StoreError::UnknownRoom(room.to_owned()))?;
                    return Ok(("settling".into(), 0, view));
                }
                Some("work_spent") => return Err(StoreError::Spent),
                Some("recovering") => {
                    return Err(StoreError::Unavailable(
                        "the room is being rebuilt after Redis lost its data".into(),
                    ))
                }
                _ => {}
            }
            let (outcome, ticket, view, boot, version, chain) = parse(&reply.values, now)?;
            if !reply.confirmed {
                let exchange = args[0] == "claim" || args[0] == "come_back";
                if exchange && (outcome == "fresh" || outcome == "again") {
                    // Exchanged, but the pass cannot be handed over: its
                    // holder may come back for it after the usual grace.
                    self.extend(room, view.epoch, ticket, view.settings.claim_seconds, now)
                        .await;
                }
                return Err(StoreError::Unavailable(format!(
                    "fewer than {} Redis replicas confirmed the write in time",
                    self.wait_replicas
                )));
            }
            let loss = self
                .known()
                .get(room)
                .and_then(|k| k.lost(&boot, version, seen_before));
            if let Some(loss) = loss {
                // The operation ran on data that lacks what this instance
                // knew: run it again once that is put back (an extra ticket
                // number is harmless; a number handed out twice is not).
                self.recover(room, loss, now).await?;
                continue;
            }
            let mut known = self.known();
            let entry = known.entry(room.to_owned()).or_default();
            entry.remember(&view, boot, version, chain);
            let handed = match args[0].as_str() {
                "claim" | "come_back" => outcome == "fresh" || outcome == "again",
                "arrive" | "pending" => outcome == "admitted",
                _ => false,
            };
            if handed {
                entry.exchanged(view.epoch, ticket, now);
            }
            // Counters only grow within an incarnation and epoch: a reply
            // showing fewer admissions than this instance has seen (an
            // older reply, or a store that lost some) does not make the
            // room look less sold than it is.
            let mut view = view;
            if let Some(last) = entry.last.as_ref().filter(|l| l.epoch == view.epoch) {
                view.admitted = view.admitted.max(last.admitted);
            }
            return Ok((outcome, ticket, view));
        }
        Err(StoreError::Unavailable(format!(
            "room {room:?} keeps disappearing from Redis"
        )))
    }

    /// Puts back what Redis lost. A lost room is re-seeded from this
    /// instance's view. Lost writes are too, unless replicas confirm every
    /// write handed out: then the replica that took over holds all anybody
    /// was given, and its history is simply taken on.
    async fn recover(&self, room: &str, loss: Loss, now: Micros) -> Result<(), StoreError> {
        if loss == Loss::Writes && self.wait_replicas > 0 {
            tracing::warn!(
                room,
                "Redis went back to an earlier history; every write handed out was confirmed by a replica, so it is taken on"
            );
            if let Some(known) = self.known().get_mut(room) {
                known.forget_history();
            }
            return Ok(());
        }
        tracing::warn!(
            room,
            ?loss,
            "Redis lost this room's latest counters; merging what this instance knew"
        );
        // Until that succeeds the history seen is kept, so a failed merge
        // is tried again on the next call.
        self.reseed(room, loss, now).await
    }

    /// Keeps an exchange that could not be handed over claimable by its
    /// ticket for `claim_seconds`. Best effort: a failure leaves the usual
    /// grace.
    async fn extend(&self, room: &str, epoch: u64, ticket: u64, claim_seconds: u64, now: Micros) {
        let keep = claim_seconds.max(30).saturating_mul(1_000_000);
        let args = vec![
            "extend".to_owned(),
            now.to_string(),
            epoch.to_string(),
            ticket.to_string(),
            keep.to_string(),
        ];
        if let Err(e) = self.call(room, args, true).await {
            tracing::warn!(room, ticket, error = %e, "could not keep an unconfirmed exchange claimable");
        }
    }

    async fn reseed(&self, room: &str, loss: Loss, now: Micros) -> Result<(), StoreError> {
        let (settings, last, exchanges) = {
            let known = self.known();
            let entry = known.get(room);
            (
                entry.and_then(|k| k.settings.clone()),
                entry.and_then(|k| k.last.clone()),
                entry.map(|k| k.exchanges.clone()).unwrap_or_default(),
            )
        };
        let config = settings.ok_or_else(|| StoreError::UnknownRoom(room.to_owned()))?;
        // Rebuilt with the live settings this instance last saw, noting
        // those an operator changed so a restart's config keeps them too.
        let settings = last.as_ref().map_or(config.clone(), |v| v.settings.clone());
        let mut args = vec!["seed".to_owned(), now.to_string()];
        args.extend(settings_args(&settings));
        args.push(new_boot());
        match &last {
            Some(view) => {
                tracing::warn!(
                    room,
                    tail = view.tail,
                    admitted = view.admitted,
                    "re-seeding room counters in Redis from this instance's last view"
                );
                args.extend(
                    [
                        view.epoch,
                        view.tail,
                        view.frontier,
                        view.floor,
                        view.admitted,
                        view.wasted,
                        view.tat,
                        view.phase,
                        view.phase_base,
                    ]
                    .iter()
                    .map(u64::to_string),
                );
            }
            None => args.extend(["1", "0", "0", "0", "0", "0", "0", "0", "0"].map(str::to_owned)),
        }
        args.push((self.recovery_grace.as_micros() as u64).to_string());
        args.push(override_bits(&config, &settings).to_string());
        args.push(
            match loss {
                Loss::Room => "room",
                Loss::Writes => "writes",
            }
            .to_owned(),
        );
        let epoch = last.as_ref().map_or(1, |v| v.epoch);
        args.extend(
            exchanges
                .iter()
                .filter(|(e, _, _)| *e == epoch)
                .map(|(_, ticket, at)| format!("{ticket}:{at}")),
        );
        let reply = self.call(room, args, true).await?;
        if !reply.confirmed {
            return Err(StoreError::Unavailable(
                "Redis replicas did not confirm the rebuilt room in time".into(),
            ));
        }
        let (_, _, view, boot, version, chain) = parse(&reply.values, now)?;
        let mut known = self.known();
        let entry = known.entry(room.to_owned()).or_default();
        // The rebuilt room is a new history: count from it.
        entry.boot = String::new();
        entry.version = 0;
        entry.chain.clear();
        entry.remember(&view, boot, version, chain);
        Ok(())
    }
}

/// A new random marker for a room created or rebuilt in Redis: every
/// instance that sees it change knows the room was lost and rebuilt.
fn new_boot() -> String {
    format!("{:016x}", random_u64())
}

/// Runs the room script and, in the same pipeline on the same connection,
/// Redis `WAIT` for `replicas`: the number of replicas that hold the
/// script's writes (and everything before them on this connection) comes
/// back with its reply. `WAIT` cannot run inside a script.
async fn confirmed(
    link: &mut Link,
    script: &redis::Script,
    keys: &[String],
    args: &[String],
    replicas: u32,
) -> redis::RedisResult<(Vec<Value>, i64)> {
    let mut pipeline = redis::pipe();
    pipeline
        .cmd("EVALSHA")
        .arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args)
        .cmd("WAIT")
        .arg(replicas)
        .arg(CONFIRM_TIMEOUT.as_millis() as u64);
    match pipeline.query_async(link).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.prepare_invoke().load_async(link).await?;
            pipeline.query_async(link).await
        }
        other => other,
    }
}

fn settings_args(settings: &RoomSettings) -> [String; 8] {
    [
        settings.admit_per_minute.to_string(),
        settings.burst.to_string(),
        settings.quota.map_or("-1".to_owned(), |q| q.to_string()),
        u8::from(settings.paused).to_string(),
        settings.claim_seconds.to_string(),
        settings.pass_seconds.to_string(),
        Phase::encode_all(&settings.phases),
        settings.draw_secret.clone(),
    ]
}

/// The bits of `overrides` in room.lua for the settings in which `live`
/// differs from `config`.
fn override_bits(config: &RoomSettings, live: &RoomSettings) -> u8 {
    u8::from(config.admit_per_minute != live.admit_per_minute || live.live_rate)
        | u8::from(config.quota != live.quota) << 1
        | u8::from(config.paused != live.paused) << 2
        | u8::from(config.pass_seconds != live.pass_seconds) << 3
}

/// Counts a use of a staff invite. KEYS[1] its counter; ARGV[1] its uses,
/// ARGV[2] how long to remember it (milliseconds). 1 when this use fits.
const INVITE_SCRIPT: &str = r"
local used = redis.call('INCR', KEYS[1])
if used == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if used > tonumber(ARGV[1]) then
  return 0
end
return 1
";

impl RedisStore {
    async fn arrival(&self, room: &str, args: Vec<String>) -> Result<Arrival, StoreError> {
        let (outcome, ticket, view) = self.run(room, args, false).await?;
        if outcome == "settling" {
            return Err(StoreError::Settling);
        }
        Ok(Arrival {
            ticket,
            admitted: outcome == "admitted",
            view,
        })
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// What a script reply holds: outcome, ticket, the view, the boot marker,
/// the version and the chain.
type Parsed = (String, u64, RoomView, String, u64, String);

/// Reads the script's reply.
fn parse(reply: &[Value], at: Micros) -> Result<Parsed, StoreError> {
    let field = |i: usize| -> Result<String, StoreError> {
        reply.get(i).and_then(text).ok_or_else(|| {
            StoreError::Unavailable(format!("malformed reply from Redis: {reply:?}"))
        })
    };
    let number = |i: usize| -> Result<u64, StoreError> {
        field(i)?
            .parse::<u64>()
            .map_err(|e| StoreError::Unavailable(format!("malformed number in Redis reply: {e}")))
    };
    let quota: i64 = field(13)?
        .parse()
        .map_err(|e| StoreError::Unavailable(format!("malformed quota in Redis reply: {e}")))?;
    let view = RoomView {
        settings: RoomSettings {
            admit_per_minute: number(11)? as u32,
            burst: number(12)? as u32,
            quota: u64::try_from(quota).ok(),
            paused: number(14)? == 1,
            claim_seconds: number(15)?,
            pass_seconds: number(17)?,
            phases: Phase::decode_all(&field(22)?).ok_or_else(|| {
                StoreError::Unavailable(format!("malformed schedule in Redis reply: {reply:?}"))
            })?,
            live_rate: number(23)? == 1,
            draw_secret: field(24)?,
        },
        epoch: number(2)?,
        tail: number(3)?,
        frontier: number(4)?,
        floor: number(5)?,
        admitted: number(6)?,
        wasted: number(7)?,
        outstanding: number(8)?,
        tat: number(9)?,
        running: number(10)? == 1,
        phase: number(20)?,
        phase_base: number(21)?,
        given: number(25)?,
        received: number(26)?,
        at,
    };
    Ok((
        field(0)?,
        number(1)?,
        view,
        field(16).unwrap_or_default(),
        number(18)?,
        field(19).unwrap_or_default(),
    ))
}

fn entry_of(outcome: &str, ticket: u64) -> Result<Entry, StoreError> {
    Ok(match outcome {
        "entered" => Entry::Entered,
        "drawn" => Entry::Drawn(ticket),
        "missed" => Entry::Missed,
        other => {
            return Err(StoreError::Unavailable(format!(
                "unexpected draw outcome {other:?}"
            )))
        }
    })
}

fn claim_of(outcome: &str) -> Result<Claim, StoreError> {
    Ok(match outcome {
        "fresh" => Claim::Admitted { fresh: true },
        "again" => Claim::Admitted { fresh: false },
        "not_yet" => Claim::NotYet,
        "lapsed" => Claim::Lapsed,
        "sold_out" => Claim::SoldOut,
        "stale" => Claim::Stale,
        "spent" => Claim::Spent,
        other => {
            return Err(StoreError::Unavailable(format!(
                "unexpected claim outcome {other:?}"
            )))
        }
    })
}

impl Store for RedisStore {
    async fn configure(
        &self,
        room: &str,
        settings: &RoomSettings,
        now: Micros,
    ) -> Result<RoomView, StoreError> {
        self.known().entry(room.to_owned()).or_default().settings = Some(settings.clone());
        let mut args = vec!["configure".to_owned(), now.to_string()];
        args.extend(settings_args(settings));
        args.push(new_boot());
        // No grace for a room made at start-up: a new room has nothing to
        // wait for, and running instances that knew a lost one merge within
        // a sync interval (the README states what that window can cost).
        args.push("0".to_owned());
        Ok(self.run(room, args, true).await?.2)
    }

    async fn sync(&self, room: &str, now: Micros) -> Result<RoomView, StoreError> {
        Ok(self
            .run(room, vec!["sync".into(), now.to_string()], true)
            .await?
            .2)
    }

    async fn arrive(&self, room: &str, now: Micros) -> Result<Arrival, StoreError> {
        self.arrival(room, vec!["arrive".into(), now.to_string()])
            .await
    }

    async fn arrive_paid(
        &self,
        room: &str,
        now: Micros,
        nonce: u64,
        expires: Micros,
    ) -> Result<Arrival, StoreError> {
        let args = vec![
            "arrive".into(),
            now.to_string(),
            nonce.to_string(),
            expires.to_string(),
        ];
        self.arrival(room, args).await
    }

    async fn bind_pass(
        &self,
        room: &str,
        pass: u64,
        networks: &[u64],
        max: u32,
        until: Micros,
        now: Micros,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.bind_script.prepare_invoke();
        invocation.key(self.pass_key(room, pass));
        invocation
            .arg(max)
            .arg((until.saturating_sub(now) / 1000).max(1));
        for network in networks {
            invocation.arg(*network);
        }
        let allowed: i64 = self
            .timed(|mut link| async move { invocation.invoke_async(&mut link).await })
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(allowed == 1)
    }

    async fn use_invite(
        &self,
        room: &str,
        invite: u64,
        uses: u32,
        until: Micros,
        now: Micros,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.invite_script.prepare_invoke();
        invocation.key(format!("{}:{{{room}}}:invite:{invite:016x}", self.prefix));
        invocation
            .arg(uses)
            .arg((until.saturating_sub(now) / 1000).max(1));
        let fits: i64 = self
            .timed(|mut link| async move { invocation.invoke_async(&mut link).await })
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(fits == 1)
    }

    async fn claim(
        &self,
        room: &str,
        epoch: u64,
        ticket: u64,
        now: Micros,
    ) -> Result<(Claim, RoomView), StoreError> {
        let args = vec![
            "claim".into(),
            now.to_string(),
            epoch.to_string(),
            ticket.to_string(),
        ];
        let (outcome, _, view) = self.run(room, args, false).await?;
        Ok((claim_of(&outcome)?, view))
    }

    async fn enter_draw(
        &self,
        room: &str,
        epoch: u64,
        id: u64,
        phase: Micros,
        now: Micros,
    ) -> Result<(Entry, RoomView), StoreError> {
        let args = vec![
            "enter".into(),
            now.to_string(),
            epoch.to_string(),
            id.to_string(),
            phase.to_string(),
        ];
        let (outcome, ticket, view) = self.run(room, args, false).await?;
        Ok((entry_of(&outcome, ticket)?, view))
    }

    async fn give(
        &self,
        room: &str,
        at: Micros,
        now: Micros,
    ) -> Result<(u64, RoomView), StoreError> {
        let args = vec!["give".into(), now.to_string(), at.to_string()];
        let (_, amount, view) = self.run(room, args, false).await?;
        Ok((amount, view))
    }

    async fn receive(
        &self,
        room: &str,
        from: &str,
        at: Micros,
        amount: u64,
        now: Micros,
    ) -> Result<RoomView, StoreError> {
        let args = vec![
            "receive".into(),
            now.to_string(),
            from.to_owned(),
            at.to_string(),
            amount.to_string(),
        ];
        Ok(self.run(room, args, false).await?.2)
    }

    async fn come_back(
        &self,
        room: &str,
        epoch: u64,
        ticket: u64,
        phase: Micros,
        now: Micros,
    ) -> Result<(Claim, RoomView), StoreError> {
        let args = vec![
            "come_back".into(),
            now.to_string(),
            epoch.to_string(),
            ticket.to_string(),
            phase.to_string(),
        ];
        let (outcome, _, view) = self.run(room, args, false).await?;
        Ok((claim_of(&outcome)?, view))
    }

    async fn arrive_pending(
        &self,
        room: &str,
        member: &str,
        arrival_millis: u64,
        now: Micros,
    ) -> Result<Option<Arrival>, StoreError> {
        let args = vec![
            "pending".into(),
            now.to_string(),
            member.to_owned(),
            arrival_millis.to_string(),
            (PENDING_SETTLE.as_micros() as u64).to_string(),
        ];
        let (outcome, ticket, view) = self.run(room, args, false).await?;
        if outcome == "settling" {
            return Ok(None);
        }
        Ok(Some(Arrival {
            ticket,
            admitted: outcome == "admitted",
            view,
        }))
    }

    async fn update(
        &self,
        room: &str,
        change: &SettingsChange,
        now: Micros,
    ) -> Result<RoomView, StoreError> {
        let optional = |value: Option<String>| value.unwrap_or_default();
        let args = vec![
            "update".into(),
            now.to_string(),
            optional(change.admit_per_minute.map(|r| r.to_string())),
            optional(
                change
                    .quota
                    .map(|q| q.map_or("none".to_owned(), |q| q.to_string())),
            ),
            optional(change.paused.map(|p| u8::from(p).to_string())),
            optional(change.pass_seconds.map(|p| p.to_string())),
        ];
        Ok(self.run(room, args, true).await?.2)
    }

    async fn reset(&self, room: &str, now: Micros) -> Result<RoomView, StoreError> {
        Ok(self
            .run(room, vec!["reset".into(), now.to_string()], true)
            .await?
            .2)
    }

    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let line = serde_json::to_string(entry)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode the audit entry: {e}")))?;
        let key = self.audit_key();
        let mut pipeline = redis::pipe();
        pipeline
            .atomic()
            .lpush(&key, line)
            .ignore()
            .ltrim(&key, 0, AUDIT_KEEP as isize - 1)
            .ignore();
        self.pipeline::<()>(&pipeline).await
    }

    async fn drawn(&self, room: &str) -> Result<(Micros, Vec<(u64, u64)>), StoreError> {
        let keys = self.keys(room);
        let mut pipeline = redis::pipe();
        pipeline.hget(&keys[0], "drawn_phase").hgetall(&keys[10]);
        let (phase, entries): (Option<String>, HashMap<String, String>) =
            self.pipeline(&pipeline).await?;
        let mut list = Vec::with_capacity(entries.len());
        for (id, ticket) in &entries {
            match (id.parse::<u64>(), ticket.parse::<u64>()) {
                (Ok(id), Ok(ticket)) => list.push((id, ticket)),
                _ => {
                    return Err(StoreError::Unavailable(format!(
                        "malformed draw entry in Redis: {id:?} -> {ticket:?}"
                    )))
                }
            }
        }
        list.sort_by_key(|(_, ticket)| *ticket);
        let phase = phase.and_then(|p| p.parse().ok()).unwrap_or(0);
        Ok((phase, list))
    }

    async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        pipeline.lrange(self.audit_key(), 0, limit.min(AUDIT_KEEP) as isize - 1);
        let (lines,): (Vec<String>,) = self.pipeline(&pipeline).await?;
        // Newest first in Redis; a line another version wrote and this one
        // cannot read is skipped rather than hiding the rest.
        Ok(lines
            .iter()
            .rev()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }
}
