//! The counters behind every room, behind one trait so that the in-process
//! store and a shared store run the same engine. Each operation is atomic:
//! it advances the room to `now` and applies its change in one step.

pub mod memory;
pub mod queue;
pub mod redis;

use std::future::Future;

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
pub use queue::{
    Claim, Entry, Overrides, Phase, RoomSettings, RoomView, SettingsChange, Standing,
    EXCHANGE_GRACE,
};

use crate::clock::Micros;

/// Audit entries the store keeps; older ones are dropped.
pub const AUDIT_KEEP: usize = 1000;

/// One change an operator made, kept where every instance sharing the
/// store reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: u64,
    /// Who asked: the `X-Antre-Operator` header, else "unknown".
    pub who: String,
    pub room: String,
    /// What was asked, as sent.
    pub change: serde_json::Value,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("room {0:?} is not configured in the store")]
    UnknownRoom(String),
    #[error("state file {path}: {message}")]
    State { path: String, message: String },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Places promised during an outage are being numbered; a newcomer is
    /// promised one too rather than jump ahead of them.
    #[error("places promised during an outage are being numbered")]
    Settling,
    /// The proof of work offered for a ticket has bought one already.
    #[error("this proof of work has been used")]
    Spent,
}

/// A new ticket, and whether it was admitted on the spot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub ticket: u64,
    pub admitted: bool,
    pub view: RoomView,
}

/// Atomic operations on rooms' counters.
///
/// Every method first advances the room to `now` (releases what the rate
/// allows, expires unclaimed slots), then does its own work, as one atomic
/// step however many instances share the store.
pub trait Store: Send + Sync + 'static {
    /// Creates the room if it is new, and applies `settings` to it.
    fn configure(
        &self,
        room: &str,
        settings: &RoomSettings,
        now: Micros,
    ) -> impl Future<Output = Result<RoomView, StoreError>> + Send;

    /// Advances the room and returns its counters.
    fn sync(
        &self,
        room: &str,
        now: Micros,
    ) -> impl Future<Output = Result<RoomView, StoreError>> + Send;

    /// Hands out the next ticket; admits it at once when nobody is ahead and
    /// the rate and quota allow.
    fn arrive(
        &self,
        room: &str,
        now: Micros,
    ) -> impl Future<Output = Result<Arrival, StoreError>> + Send;

    /// [`Store::arrive`], paid for with a proof of work: `nonce` (valid
    /// until `expires`) buys one ticket, on whichever instance it is
    /// offered; offered again it fails with [`StoreError::Spent`].
    fn arrive_paid(
        &self,
        room: &str,
        now: Micros,
        nonce: u64,
        expires: Micros,
    ) -> impl Future<Output = Result<Arrival, StoreError>> + Send;

    /// Notes that pass `pass` was used from each of `networks` (the one it
    /// was issued to first) and remembers them until `until`. False when
    /// that would make more than `max` networks: the last of `networks` is
    /// then refused.
    fn bind_pass(
        &self,
        room: &str,
        pass: u64,
        networks: &[u64],
        max: u32,
        until: Micros,
        now: Micros,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Counts one use of staff invite `invite`, remembered until `until`;
    /// false once it has been used `uses` times.
    fn use_invite(
        &self,
        room: &str,
        invite: u64,
        uses: u32,
        until: Micros,
        now: Micros,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Exchanges a ticket for a pass, atomically with the quota check; the
    /// same ticket is never counted twice, and gives a pass again only
    /// within [`queue::EXCHANGE_GRACE`] of its exchange.
    fn claim(
        &self,
        room: &str,
        epoch: u64,
        ticket: u64,
        now: Micros,
    ) -> impl Future<Output = Result<(Claim, RoomView), StoreError>> + Send;

    /// Exchanges a ticket handed out before the phase that opened at
    /// `phase`: see [`queue::Counters::come_back`].
    fn come_back(
        &self,
        room: &str,
        epoch: u64,
        ticket: u64,
        phase: Micros,
        now: Micros,
    ) -> impl Future<Output = Result<(Claim, RoomView), StoreError>> + Send;

    /// Enters visitor `id` in the draw of the phase opening at `phase`,
    /// or gives the ticket it drew: see [`queue::Counters::enter_draw`].
    fn enter_draw(
        &self,
        room: &str,
        epoch: u64,
        id: u64,
        phase: Micros,
        now: Micros,
    ) -> impl Future<Output = Result<(Entry, RoomView), StoreError>> + Send;

    /// Gives the room's unused places at `at` to another segment: see
    /// [`queue::Counters::give`]. Returns how many.
    fn give(
        &self,
        room: &str,
        at: Micros,
        now: Micros,
    ) -> impl Future<Output = Result<(u64, RoomView), StoreError>> + Send;

    /// Takes `amount` places segment `from` gave at `at`, once: see
    /// [`queue::Counters::receive`].
    fn receive(
        &self,
        room: &str,
        from: &str,
        at: Micros,
        amount: u64,
        now: Micros,
    ) -> impl Future<Output = Result<RoomView, StoreError>> + Send;

    /// The last draw: the start of the phase it was for (0 for none) and
    /// each entry's id with its ticket number, in ticket order.
    fn drawn(
        &self,
        room: &str,
    ) -> impl Future<Output = Result<(Micros, Vec<(u64, u64)>), StoreError>> + Send;

    /// Turns a place promised during a store outage into a ticket. Places
    /// promised in one outage are numbered together, in arrival order, once
    /// the promises have had a few seconds to come in; until then `None`.
    /// `member` identifies the promise; asking again gives the same ticket.
    fn arrive_pending(
        &self,
        room: &str,
        member: &str,
        arrival_millis: u64,
        now: Micros,
    ) -> impl Future<Output = Result<Option<Arrival>, StoreError>> + Send;

    /// Changes a room's settings live, for every instance sharing the
    /// store; the changed settings survive restarts with another config.
    fn update(
        &self,
        room: &str,
        change: &SettingsChange,
        now: Micros,
    ) -> impl Future<Output = Result<RoomView, StoreError>> + Send;

    /// Starts a new epoch of the room: old tickets and passes stop counting.
    fn reset(
        &self,
        room: &str,
        now: Micros,
    ) -> impl Future<Output = Result<RoomView, StoreError>> + Send;

    /// Adds `entry` to the audit trail that every instance sharing the store
    /// reads; beyond [`AUDIT_KEEP`] entries the oldest are dropped.
    fn record(&self, entry: &AuditEntry) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest `limit` audit entries, oldest first.
    fn audit(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;
}

/// The store chosen in the config; cloning shares it.
#[derive(Clone)]
pub enum AnyStore {
    Memory(std::sync::Arc<MemoryStore>),
    Redis(std::sync::Arc<RedisStore>),
}

impl AnyStore {
    /// A short name for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyStore::Memory(_) => "memory",
            AnyStore::Redis(_) => "redis",
        }
    }

    /// Calls to a shared store so far, failed ones, and their mean latency
    /// in microseconds; `None` for the in-process store.
    pub fn call_stats(&self) -> Option<(u64, u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        match self {
            AnyStore::Memory(_) => None,
            AnyStore::Redis(store) => {
                let calls = store.stats.calls.load(Relaxed);
                let micros = store.stats.micros.load(Relaxed);
                Some((
                    calls,
                    store.stats.errors.load(Relaxed),
                    micros.checked_div(calls).unwrap_or(0),
                ))
            }
        }
    }
}

// A Redis call's future holds the client's whole exchange (a few
// kilobytes); boxed, it costs one allocation beside a network round trip,
// and every future that may wait on the store (up to the request handler's)
// stays the size of the memory store's instead.
impl Store for AnyStore {
    async fn configure(
        &self,
        room: &str,
        settings: &RoomSettings,
        now: Micros,
    ) -> Result<RoomView, StoreError> {
        match self {
            AnyStore::Memory(store) => store.configure(room, settings, now).await,
            AnyStore::Redis(store) => Box::pin(store.configure(room, settings, now)).await,
        }
    }

    async fn sync(&self, room: &str, now: Micros) -> Result<RoomView, StoreError> {
        match self {
            AnyStore::Memory(store) => store.sync(room, now).await,
            AnyStore::Redis(store) => Box::pin(store.sync(room, now)).await,
        }
    }

    async fn arrive(&self, room: &str, now: Micros) -> Result<Arrival, StoreError> {
        match self {
            AnyStore::Memory(store) => store.arrive(room, now).await,
            AnyStore::Redis(store) => Box::pin(store.arrive(room, now)).await,
        }
    }

    async fn arrive_paid(
        &self,
        room: &str,
        now: Micros,
        nonce: u64,
        expires: Micros,
    ) -> Result<Arrival, StoreError> {
        match self {
            AnyStore::Memory(store) => store.arrive_paid(room, now, nonce, expires).await,
            AnyStore::Redis(store) => Box::pin(store.arrive_paid(room, now, nonce, expires)).await,
        }
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
        match self {
            AnyStore::Memory(store) => store.bind_pass(room, pass, networks, max, until, now).await,
            AnyStore::Redis(store) => {
                Box::pin(store.bind_pass(room, pass, networks, max, until, now)).await
            }
        }
    }

    async fn use_invite(
        &self,
        room: &str,
        invite: u64,
        uses: u32,
        until: Micros,
        now: Micros,
    ) -> Result<bool, StoreError> {
        match self {
            AnyStore::Memory(store) => store.use_invite(room, invite, uses, until, now).await,
            AnyStore::Redis(store) => {
                Box::pin(store.use_invite(room, invite, uses, until, now)).await
            }
        }
    }

    async fn claim(
        &self,
        room: &str,
        epoch: u64,
        ticket: u64,
        now: Micros,
    ) -> Result<(Claim, RoomView), StoreError> {
        match self {
            AnyStore::Memory(store) => store.claim(room, epoch, ticket, now).await,
            AnyStore::Redis(store) => Box::pin(store.claim(room, epoch, ticket, now)).await,
        }
    }

    async fn come_back(
        &self,
        room: &str,
        epoch: u64,
        ticket: u64,
        phase: Micros,
        now: Micros,
    ) -> Result<(Claim, RoomView), StoreError> {
        match self {
            AnyStore::Memory(store) => store.come_back(room, epoch, ticket, phase, now).await,
            AnyStore::Redis(store) => {
                Box::pin(store.come_back(room, epoch, ticket, phase, now)).await
            }
        }
    }

    async fn enter_draw(
        &self,
        room: &str,
        epoch: u64,
        id: u64,
        phase: Micros,
        now: Micros,
    ) -> Result<(Entry, RoomView), StoreError> {
        match self {
            AnyStore::Memory(store) => store.enter_draw(room, epoch, id, phase, now).await,
            AnyStore::Redis(store) => Box::pin(store.enter_draw(room, epoch, id, phase, now)).await,
        }
    }

    async fn give(
        &self,
        room: &str,
        at: Micros,
        now: Micros,
    ) -> Result<(u64, RoomView), StoreError> {
        match self {
            AnyStore::Memory(store) => store.give(room, at, now).await,
            AnyStore::Redis(store) => Box::pin(store.give(room, at, now)).await,
        }
    }

    async fn receive(
        &self,
        room: &str,
        from: &str,
        at: Micros,
        amount: u64,
        now: Micros,
    ) -> Result<RoomView, StoreError> {
        match self {
            AnyStore::Memory(store) => store.receive(room, from, at, amount, now).await,
            AnyStore::Redis(store) => Box::pin(store.receive(room, from, at, amount, now)).await,
        }
    }

    async fn drawn(&self, room: &str) -> Result<(Micros, Vec<(u64, u64)>), StoreError> {
        match self {
            AnyStore::Memory(store) => store.drawn(room).await,
            AnyStore::Redis(store) => Box::pin(store.drawn(room)).await,
        }
    }

    async fn arrive_pending(
        &self,
        room: &str,
        member: &str,
        arrival_millis: u64,
        now: Micros,
    ) -> Result<Option<Arrival>, StoreError> {
        match self {
            AnyStore::Memory(store) => {
                store
                    .arrive_pending(room, member, arrival_millis, now)
                    .await
            }
            AnyStore::Redis(store) => {
                Box::pin(store.arrive_pending(room, member, arrival_millis, now)).await
            }
        }
    }

    async fn update(
        &self,
        room: &str,
        change: &SettingsChange,
        now: Micros,
    ) -> Result<RoomView, StoreError> {
        match self {
            AnyStore::Memory(store) => store.update(room, change, now).await,
            AnyStore::Redis(store) => Box::pin(store.update(room, change, now)).await,
        }
    }

    async fn reset(&self, room: &str, now: Micros) -> Result<RoomView, StoreError> {
        match self {
            AnyStore::Memory(store) => store.reset(room, now).await,
            AnyStore::Redis(store) => Box::pin(store.reset(room, now)).await,
        }
    }

    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(store) => store.record(entry).await,
            AnyStore::Redis(store) => Box::pin(store.record(entry)).await,
        }
    }

    async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        match self {
            AnyStore::Memory(store) => store.audit(limit).await,
            AnyStore::Redis(store) => Box::pin(store.audit(limit)).await,
        }
    }
}
