//! The admission engine: given a room, a visitor's cookies and address,
//! decides whether the request goes to the origin or the visitor waits, and
//! what they are told. It reads a cached view of each room's counters; the
//! store is asked only to hand out a ticket, to exchange one for a pass, to
//! hear of a pass used from a new network, and (in the background) to
//! refresh the cache.
//!
//! One person, one place: each client network (an IPv4 address, an IPv6
//! /64) has a budget of free tickets per room; past it a ticket costs a
//! proof of work ([`crate::work`]). A pass is used from at most
//! `max_networks_per_pass` networks, at a bounded request rate, and renewed
//! only up to its hard cap; a ticket gives a pass once (again only within
//! [`crate::store::EXCHANGE_GRACE`]).

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::admission::Via;
use crate::clock::{Clock, Micros, MICROS_PER_SECOND};
use crate::config::{OnError, RoomConfig};
use crate::cookie::{self, Jar};
use crate::draw;
use crate::limit::{Network, Rate, Verdict};
use crate::shield::{Seen, Shields};
use crate::status::{DrawEntry, Notice, State, Status};
use crate::store::{Arrival, Claim, Entry, Phase, RoomView, Standing, Store, StoreError};
use crate::token::{random_u64, Claims, Keyring, Kind, PassClaims};
use crate::work::{self, Challenge};

/// A network that paid for tickets with work is remembered this far
/// ahead at most: its next challenges stay harder for up to an hour.
const WORK_MEMORY: Micros = 3600 * MICROS_PER_SECOND;

/// A line takes this many times more arrivals a minute than it admits
/// (and at least [`PRESSURE_FLOOR`]): challenges get one bit harder.
const PRESSURE_FACTOR: u64 = 10;
const PRESSURE_FLOOR: u64 = 100;

/// Within this wait of their turn, a visitor is told exactly when to ask.
const NEAR_FRONT_MILLIS: u64 = 6_000;

/// Asked just after the turn comes: the cached frontier has caught up.
const TURN_MARGIN_MILLIS: u64 = 100;

/// A visitor more than this far ahead of the server clock is not believed.
const CLOCK_SKEW_SECONDS: u64 = 300;

/// How often a visitor beyond the quota asks: they learn within a few
/// seconds that the places are gone, or that one came free.
const BEYOND_QUOTA_REFRESH_SECONDS: u32 = 4;

/// What to do with a request to a guarded route.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send the request to the origin, setting these cookies on the
    /// response (a new or renewed pass, the spent ticket cleared).
    Forward {
        set_cookies: Vec<String>,
        admitted_now: bool,
        /// The pass the request goes in on, for the origin's admission
        /// header.
        pass: Option<PassClaims>,
    },
    /// Keep the visitor out and tell them where they stand.
    Hold {
        status: Status,
        set_cookies: Vec<String>,
    },
    /// The visitor's network has used its free tickets: a ticket costs
    /// this proof of work, sent back in the cookie `cookie`.
    Challenge {
        challenge: Challenge,
        cookie: String,
        /// When a page without JavaScript should ask again.
        refresh_seconds: u32,
        /// Why the solution offered was refused, if one was.
        failed: Option<String>,
        set_cookies: Vec<String>,
    },
    /// The pass is asking faster than a person does: try again later.
    Slow { retry_after_seconds: u32 },
    /// The visitor holds no valid cookie for this room (status requests only;
    /// a guarded request gets a ticket instead).
    NoTicket,
}

impl Decision {
    fn add_cookie(&mut self, cookie: String) {
        match self {
            Decision::Forward { set_cookies, .. }
            | Decision::Hold { set_cookies, .. }
            | Decision::Challenge { set_cookies, .. } => set_cookies.push(cookie),
            Decision::Slow { .. } | Decision::NoTicket => {}
        }
    }

    /// Sets `cookie` before any the decision sets already, so those win
    /// where they name the same cookie.
    fn first_cookie(&mut self, cookie: String) {
        match self {
            Decision::Forward { set_cookies, .. }
            | Decision::Hold { set_cookies, .. }
            | Decision::Challenge { set_cookies, .. } => set_cookies.insert(0, cookie),
            Decision::Slow { .. } | Decision::NoTicket => {}
        }
    }
}

/// One request's view of its room, built once by [`Engine::decide`].
struct Visit<'a> {
    room: &'a Room,
    view: Arc<RoomView>,
    now: Micros,
    now_s: u64,
    network: Network,
    jar: &'a Jar,
    cookies: CookieOptions,
}

/// A staff invite link's token and what it allows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Invite {
    pub token: String,
    pub id: u64,
    pub uses: u32,
    /// Unix seconds.
    pub expires: u64,
}

/// Why an invite link let nobody in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("this invite link is not genuine, or not for this room")]
    Forged,
    #[error("this invite link has expired")]
    Expired,
    #[error("this invite link has been used as often as it may be")]
    UsedUp,
    #[error("the waiting room's store cannot be reached; try again in a moment")]
    Store,
}

/// Why a return-ticket link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReturnError {
    #[error("this is not a return ticket for this room")]
    Forged,
    #[error("the session this return ticket was for has closed, or the line was reset since")]
    Over,
}

/// Whether the engine may hand out a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A request for a guarded route: a visitor without a ticket gets one.
    Request,
    /// A status poll: answers about the visitor's own cookies only.
    Status,
}

/// One guarded room: its config and this instance's view of its counters.
pub struct Room {
    pub config: RoomConfig,
    pass_cookie: String,
    ticket_cookie: String,
    return_cookie: String,
    work_cookie: String,
    /// The room's id as a number, for the shields' keys: the same in
    /// every config generation.
    key: u64,
    /// The freshest counters this instance has seen. A std `RwLock` holding
    /// an `Arc`: readers clone the pointer and let go at once; nothing is
    /// awaited while it is held.
    view: RwLock<Arc<RoomView>>,
    /// False from a failed store call until the next answer: meanwhile the
    /// cached counters cannot be trusted, so nobody new is admitted.
    healthy: AtomicBool,
    /// (time, admitted, tail) at each background sync over the last minute
    /// and a bit, for "admitted in the last minute" and the arrival rate. A
    /// std `Mutex`: nothing is awaited while it is held.
    history: Mutex<VecDeque<(Micros, u64, u64)>>,
    /// Whether the store has taken this config's settings for the room;
    /// until then the background sync configures instead of syncing.
    configured: AtomicBool,
    /// The last draw as published (`draw.json`), by (phase, epoch): a draw
    /// never changes once made, so the store is asked once.
    draw_body: Mutex<Option<(Micros, u64, Arc<str>)>>,
    /// True once this instance has seen the room's unused places moved to
    /// the segment its rule names.
    moved: AtomicBool,
}

/// A room's draw as anyone may check it: `{prefix}/draw.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DrawReport {
    pub room: String,
    /// Unix seconds of the opening the draw is for; entries are taken
    /// from `entries_from` until then.
    pub opens_at: u64,
    pub entries_from: u64,
    /// SHA-256 of the seed, in hex, published before the draw.
    pub commitment: String,
    /// The seed, revealed once the phase has opened.
    pub seed: Option<String>,
    /// Once drawn, every entry's id, in ascending order.
    pub entries: Option<Vec<u64>>,
    /// The ticket number of the draw's first place.
    pub first_ticket: Option<u64>,
}

impl Room {
    /// A room new to this process: a placeholder view until the store
    /// answers.
    fn new_placeholder(config: RoomConfig) -> Room {
        let view = placeholder_view(&config);
        Room::new(config, view, true)
    }

    /// A room starting from the last view this process had of it.
    fn new(mut config: RoomConfig, view: RoomView, healthy: bool) -> Room {
        // This instance's candidate for the room's draw secret; the store
        // keeps the first one it is given.
        if config.settings.draw_secret.is_empty() {
            config.settings.draw_secret = draw::new_secret();
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        config.id.hash(&mut hasher);
        Room {
            pass_cookie: format!("antre-pass-{}", config.id),
            ticket_cookie: format!("antre-ticket-{}", config.id),
            return_cookie: format!("antre-return-{}", config.id),
            work_cookie: work::cookie_name(&config.id),
            key: hasher.finish(),
            view: RwLock::new(Arc::new(view)),
            config,
            healthy: AtomicBool::new(healthy),
            history: Mutex::new(VecDeque::new()),
            configured: AtomicBool::new(false),
            draw_body: Mutex::new(None),
            moved: AtomicBool::new(false),
        }
    }

    pub fn view(&self) -> Arc<RoomView> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Admissions in the last minute, from the background syncs' samples.
    pub fn admitted_last_minute(&self) -> u64 {
        self.last_minute().0
    }

    /// Admissions and arrivals in the last minute.
    fn last_minute(&self) -> (u64, u64) {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let Some(&(latest_at, admitted, tail)) = history.back() else {
            return (0, 0);
        };
        let since = latest_at.saturating_sub(60 * MICROS_PER_SECOND);
        let (admitted_then, tail_then) = history
            .iter()
            .find(|(at, _, _)| *at >= since)
            .map_or((admitted, tail), |(_, a, t)| (*a, *t));
        (
            admitted.saturating_sub(admitted_then),
            tail.saturating_sub(tail_then),
        )
    }

    /// Whether the line takes far more arrivals than it admits.
    fn under_pressure(&self, view: &RoomView) -> bool {
        let arrivals = self.last_minute().1;
        let admits = u64::from(view.settings.admit_per_minute);
        arrivals >= PRESSURE_FLOOR && arrivals > admits.saturating_mul(PRESSURE_FACTOR)
    }

    fn sample(&self, at: Micros, admitted: u64, tail: u64) {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.push_back((at, admitted, tail));
        let keep_from = at.saturating_sub(70 * MICROS_PER_SECOND);
        while history.front().is_some_and(|(t, _, _)| *t < keep_from) {
            history.pop_front();
        }
    }

    /// Whether the store answered the last call about this room.
    pub fn store_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Notes a failed store call; logs only when the room was healthy.
    fn store_failed(&self, error: &StoreError) {
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(room = %self.config.id, error = %error, "store unavailable: holding the line until it is back");
        }
    }

    /// Keeps `view` unless the cache already holds a newer one.
    fn offer(&self, view: RoomView) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(room = %self.config.id, "store is back: the line moves again");
        }
        let mut slot = self.view.write().unwrap_or_else(|p| p.into_inner());
        if view.epoch > slot.epoch || (view.epoch == slot.epoch && view.at >= slot.at) {
            *slot = Arc::new(view);
        }
    }

    pub fn pass_cookie_name(&self) -> &str {
        &self.pass_cookie
    }

    pub fn ticket_cookie_name(&self) -> &str {
        &self.ticket_cookie
    }

    pub fn return_cookie_name(&self) -> &str {
        &self.return_cookie
    }
}

/// Cookie attributes shared by tickets and passes.
#[derive(Debug, Clone, Copy)]
pub struct CookieOptions {
    pub secure: bool,
}

pub struct Engine<S> {
    store: S,
    clock: Arc<dyn Clock>,
    keys: Keyring,
    rooms: Vec<Room>,
    on_error: OnError,
    /// Budgets per network and passes' rates and networks: shared with
    /// the generations before and after this one.
    shields: Arc<Shields>,
}

impl<S: Store> Engine<S> {
    /// Registers every room's settings with the store and loads their
    /// counters.
    pub async fn start(
        store: S,
        clock: Arc<dyn Clock>,
        keys: Keyring,
        rooms: Vec<RoomConfig>,
    ) -> Result<Self, StoreError> {
        let mut engine = Engine {
            store,
            clock,
            keys,
            rooms: Vec::with_capacity(rooms.len()),
            on_error: OnError::Hold,
            shields: Arc::new(Shields::default()),
        };
        for config in rooms {
            let room = Room::new_placeholder(config);
            engine.configure(&room).await?;
            engine.rooms.push(room);
        }
        Ok(engine)
    }

    /// An engine for a reloaded config on the same store. A room that keeps
    /// its id starts from this engine's view of it, its health and its
    /// admission history, so a reload during a store outage costs nobody
    /// their place; its new settings reach the store as soon as it answers
    /// (an operator's live changes still win, as on a restart).
    pub async fn successor(&self, keys: Keyring, rooms: Vec<RoomConfig>) -> Result<Self, StoreError>
    where
        S: Clone,
    {
        let mut engine = Engine {
            store: self.store.clone(),
            clock: self.clock.clone(),
            keys,
            rooms: Vec::with_capacity(rooms.len()),
            on_error: self.on_error,
            shields: self.shields.clone(),
        };
        for config in rooms {
            let room = match self.rooms.iter().find(|r| r.config.id == config.id) {
                Some(old) => {
                    let room = Room::new(config, (*old.view()).clone(), old.store_healthy());
                    let history = old
                        .history
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    *room.history.lock().unwrap_or_else(|p| p.into_inner()) = history;
                    room
                }
                None => Room::new_placeholder(config),
            };
            engine.configure(&room).await?;
            engine.rooms.push(room);
        }
        Ok(engine)
    }

    /// Registers `room`'s settings with the store. A shared store that is
    /// down must not stop antre from starting or reloading: the room is
    /// held (as in any outage) and the background sync configures it when
    /// the store answers.
    async fn configure(&self, room: &Room) -> Result<(), StoreError> {
        let id = &room.config.id;
        match self
            .store
            .configure(id, &room.config.settings, self.clock.now_micros())
            .await
        {
            Ok(view) => {
                room.configured.store(true, Ordering::Relaxed);
                room.offer(view);
                Ok(())
            }
            Err(e @ StoreError::Unavailable(_)) => {
                tracing::warn!(room = %id, error = %e, "store unavailable: holding the line until it answers");
                room.healthy.store(false, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// What visitors get while the store cannot be reached; default hold.
    pub fn with_on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Uses `shields` (budgets, passes' rates and networks, their metrics)
    /// instead of a fresh set.
    pub fn with_shields(mut self, shields: Arc<Shields>) -> Self {
        self.shields = shields;
        self
    }

    pub fn shields(&self) -> &Shields {
        &self.shields
    }

    /// Takes a view the store returned to someone else (the admin API).
    pub fn offer(&self, room: &Room, view: RoomView) {
        room.offer(view);
    }

    pub fn rooms(&self) -> &[Room] {
        &self.rooms
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Refreshes every room's cached view from the store now; a room the
    /// store could not take at start or reload is configured instead.
    pub async fn sync_all(&self) {
        for room in &self.rooms {
            let id = &room.config.id;
            let now = self.clock.now_micros();
            let answer = if room.configured.load(Ordering::Relaxed) {
                self.store.sync(id, now).await
            } else {
                let answer = self.store.configure(id, &room.config.settings, now).await;
                if answer.is_ok() {
                    room.configured.store(true, Ordering::Relaxed);
                }
                answer
            };
            match answer {
                Ok(view) => {
                    room.sample(view.at, view.admitted, view.tail);
                    room.offer(view);
                }
                Err(e) => room.store_failed(&e),
            }
        }
        self.move_unused().await;
    }

    /// Moves each segment's unused places to the segment its rule names,
    /// once its time has come. Both steps are idempotent in the store, so
    /// every instance of a fleet may do them and the places move once; a
    /// step that fails is tried again at the next sync.
    async fn move_unused(&self) {
        for room in &self.rooms {
            let Some(rule) = &room.config.unused else {
                continue;
            };
            let now = self.clock.now_micros();
            if now < rule.at || room.moved.load(Ordering::Relaxed) {
                continue;
            }
            let Some(to) = self.rooms.iter().find(|r| r.config.id == rule.to) else {
                continue;
            };
            let from = &room.config.id;
            let given = match self.store.give(from, rule.at, now).await {
                Ok((given, view)) => {
                    room.offer(view);
                    given
                }
                Err(e) => {
                    room.store_failed(&e);
                    continue;
                }
            };
            match self
                .store
                .receive(&to.config.id, from, rule.at, given, now)
                .await
            {
                Ok(view) => {
                    to.offer(view);
                    room.moved.store(true, Ordering::Relaxed);
                    tracing::info!(from = %from, to = %to.config.id, places = given, "unused places moved to another segment");
                }
                Err(e) => to.store_failed(&e),
            }
        }
    }

    /// Decides what happens to a visitor of `room` from `client` carrying
    /// `jar`.
    pub async fn decide(
        &self,
        room_index: usize,
        jar: &Jar,
        client: IpAddr,
        mode: Mode,
        cookies: CookieOptions,
    ) -> Decision {
        let Some(room) = self.rooms.get(room_index) else {
            return Decision::NoTicket;
        };
        let now = self.clock.now_micros();
        let v = Visit {
            room,
            view: room.view(),
            now,
            now_s: now / MICROS_PER_SECOND,
            network: Network::of(client),
            jar,
            cookies,
        };

        if room.config.allow.iter().any(|block| block.contains(client)) {
            return self.allowed(&v);
        }

        if let Some(pass) = self.valid_pass(&v) {
            return self.with_pass(&v, pass).await;
        }

        if let Some(ticket) = self.valid_ticket(&v) {
            return self.with_ticket(&v, ticket).await;
        }

        // The rarer holders' futures are boxed: the state of every
        // request's decision is the size of its largest branch, and it is
        // moved (copied) as a request starts.
        if let Some(kept) = self.valid_return(&v) {
            return Box::pin(self.with_return(&v, kept)).await;
        }

        if let Some((entry, phase)) = self.valid_entry(&v) {
            return Box::pin(self.with_entry(&v, entry, phase)).await;
        }

        if let Some(promise) = self.valid_promise(&v) {
            return Box::pin(self.keep_promise(&v, promise)).await;
        }

        match mode {
            Mode::Status => Decision::NoTicket,
            Mode::Request => {
                // A genuine ticket that no longer counts (too old, or from
                // before a reset): the visitor is told they have a new place.
                let lapsed = jar.values(&room.ticket_cookie).any(|value| {
                    self.keys
                        .verify(Kind::Ticket, &room.config.id, value)
                        .is_some()
                });
                self.arrive(&v, &v.view, lapsed).await
            }
        }
    }

    /// The status a pass holder sees.
    pub fn admitted_status(&self, room_index: usize) -> Option<Status> {
        let room = self.rooms.get(room_index)?;
        let view = room.view();
        let mut status = base_status(room, &view, State::Admitted, self.clock.now_micros());
        status.refresh_seconds = room.config.refresh_seconds;
        Some(status)
    }

    /// The room's draw for the public, as JSON ([`DrawReport`]): the one
    /// taking entries now, else the last one made, else the next; `None`
    /// when the room has no draw. Once made, a draw never changes: its
    /// answer is read from the store and serialised once, then served from
    /// memory.
    pub async fn draw_json(&self, room_index: usize) -> Result<Option<Arc<str>>, StoreError> {
        let Some(room) = self.rooms.get(room_index) else {
            return Ok(None);
        };
        let view = room.view();
        let now = self.clock.now_micros();
        let drawn_phases = view.settings.phases.iter().filter(|p| p.prequeue > 0);
        let phase = drawn_phases
            .clone()
            .find(|p| p.drawing(now))
            .or_else(|| drawn_phases.clone().rfind(|p| p.start <= now))
            .or_else(|| drawn_phases.clone().find(|p| p.start > now));
        let Some(phase) = phase.copied() else {
            return Ok(None);
        };
        let cached = room
            .draw_body
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, epoch, _)| *at == phase.start && *epoch == view.epoch)
            .map(|(_, _, body)| body.clone());
        if cached.is_some() {
            return Ok(cached);
        }
        let seed = view.settings.draw_seed(phase.start);
        let mut report = DrawReport {
            room: room.config.id.clone(),
            opens_at: phase.start.div_ceil(MICROS_PER_SECOND),
            entries_from: (phase.start - phase.prequeue) / MICROS_PER_SECOND,
            commitment: draw::commitment(&seed),
            seed: None,
            entries: None,
            first_ticket: None,
        };
        // The seed stays secret until the opening, and the store draws as
        // it steps into the phase: until this instance has seen it there,
        // there is nothing more to say.
        let made = now >= phase.start && view.phase >= phase.start;
        if now >= phase.start {
            report.seed = Some(seed);
        }
        if made {
            let (drawn_phase, list) = self.store.drawn(&room.config.id).await?;
            // No entries drawn for this phase: nobody entered.
            let list = if drawn_phase == phase.start {
                list
            } else {
                Vec::new()
            };
            let mut entries: Vec<u64> = list.iter().map(|(id, _)| *id).collect();
            entries.sort_unstable();
            report.first_ticket = list.iter().map(|(_, ticket)| *ticket).min();
            report.entries = Some(entries);
        }
        let body: Arc<str> = serde_json::to_string(&report)
            .unwrap_or_else(|_| "{}".to_owned())
            .into();
        if made {
            *room.draw_body.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((phase.start, view.epoch, body.clone()));
        }
        Ok(Some(body))
    }

    /// A staff invite link for `room`: `uses` visitors may skip the line
    /// with it within `minutes`.
    pub fn invite(&self, room_index: usize, uses: u32, minutes: u64) -> Option<Invite> {
        let room = self.rooms.get(room_index)?;
        let id = random_u64().max(1);
        let expires = self.clock.now_micros() / MICROS_PER_SECOND + minutes * 60;
        let token = self.keys.sign_numbers(
            Kind::Invite,
            &room.config.id,
            &[id, u64::from(uses), expires],
        );
        Some(Invite {
            token,
            id,
            uses,
            expires,
        })
    }

    /// A visitor following a staff invite link: a pass of their own,
    /// outside the line and the quota, while the invite has uses left.
    pub async fn redeem(
        &self,
        room_index: usize,
        token: &str,
        client: IpAddr,
        cookies: CookieOptions,
    ) -> Result<(PassClaims, String), InviteError> {
        let room = self.rooms.get(room_index).ok_or(InviteError::Forged)?;
        let now = self.clock.now_micros();
        let now_s = now / MICROS_PER_SECOND;
        let [id, uses, expires] = self
            .keys
            .verify_numbers(Kind::Invite, &room.config.id, token)
            .ok_or(InviteError::Forged)?;
        if now_s >= expires {
            return Err(InviteError::Expired);
        }
        let uses = u32::try_from(uses).unwrap_or(u32::MAX);
        let fits = self
            .store
            .use_invite(&room.config.id, id, uses, expires * MICROS_PER_SECOND, now)
            .await
            .map_err(|e| {
                room.store_failed(&e);
                InviteError::Store
            })?;
        if !fits {
            return Err(InviteError::UsedUp);
        }
        let v = Visit {
            room,
            view: room.view(),
            now,
            now_s,
            network: Network::of(client),
            jar: &Jar::default(),
            cookies,
        };
        let mut pass = self.new_pass(&v, v.view.epoch, 0);
        pass.id = random_u64().max(1);
        pass.via = Via::Invite.code();
        tracing::info!(room = %room.config.id, invite = format_args!("{id:016x}"), pass = format_args!("{:016x}", pass.id), client = %client, "staff invite used");
        Ok((pass, self.pass_cookie(&v, &pass)))
    }

    /// A request from an address on the room's allow list: forwarded as
    /// it is, counted, and logged once an hour per network.
    fn allowed(&self, v: &Visit<'_>) -> Decision {
        let room = v.room;
        let hourly = Rate {
            interval: 3600 * MICROS_PER_SECOND,
            tolerance: 0,
        };
        let mut forgotten = Vec::new();
        let first =
            self.shields
                .bypasses
                .with((room.key, v.network), v.now, &mut forgotten, |slot| {
                    slot.check(hourly, v.now)
                });
        if first == Verdict::Conforms {
            tracing::info!(room = %room.config.id, network = %v.network, "allow list: skipping the line");
        }
        let mut pass = self.new_pass(v, v.view.epoch, 0);
        pass.id = v.network.as_u64().max(1);
        pass.via = Via::Allow.code();
        Decision::Forward {
            set_cookies: Vec::new(),
            admitted_now: false,
            pass: Some(pass),
        }
    }

    /// Sweeps quiet budgets and passes (at most every few seconds).
    pub fn sweep(&self) {
        self.shields.sweep(self.clock.now_micros());
    }

    /// The first cookie under `name` that is a genuine token of `kind` for
    /// this room and passes `current`.
    fn first_valid(
        &self,
        v: &Visit<'_>,
        name: &str,
        kind: Kind,
        current: impl Fn(&Claims) -> bool,
    ) -> Option<Claims> {
        v.jar
            .values(name)
            .filter_map(|value| self.keys.verify(kind, &v.room.config.id, value))
            .find(|claims| current(claims))
    }

    /// A genuine pass of this epoch, unexpired and within its hard cap.
    fn valid_pass(&self, v: &Visit<'_>) -> Option<PassClaims> {
        let room = v.room;
        let longest = v.view.settings.pass_seconds.max(room.config.pass_seconds);
        let cap = room.config.protection.pass_max_seconds;
        v.jar
            .values(&room.pass_cookie)
            .filter_map(|value| self.keys.verify_pass(&room.config.id, value))
            .map(|pass| self.complete(v, pass))
            .find(|p| {
                p.expires > v.now_s
                    && p.expires <= v.now_s + longest + CLOCK_SKEW_SECONDS
                    && p.epoch == v.view.epoch
                    && v.now_s < p.issued.saturating_add(cap)
            })
    }

    /// A pass from before passes carried an id and an issue time: its id
    /// is its ticket's, its issue time as early as its expiry allows.
    fn complete(&self, v: &Visit<'_>, mut pass: PassClaims) -> PassClaims {
        if pass.id == 0 {
            pass.id = self
                .keys
                .pass_id(&v.room.config.id, pass.epoch, pass.number);
        }
        if pass.issued == 0 {
            pass.issued = pass.expires.saturating_sub(v.view.settings.pass_seconds);
        }
        pass
    }

    fn valid_ticket(&self, v: &Visit<'_>) -> Option<Claims> {
        let room = v.room;
        self.first_valid(v, &room.ticket_cookie, Kind::Ticket, |c| {
            c.time <= v.now_s + CLOCK_SKEW_SECONDS
                && v.now_s < c.time.saturating_add(room.config.ticket_seconds)
                && c.epoch == v.view.epoch
        })
    }

    /// A pass holder's request: within the pass's rate, from a network the
    /// pass may be used from, it goes to the origin (the pass renewed
    /// while used, up to its hard cap).
    async fn with_pass(&self, v: &Visit<'_>, pass: PassClaims) -> Decision {
        let room = v.room;
        let protection = &room.config.protection;
        let network = v.network.as_u64();
        let rate = Rate::per_second(
            f64::from(protection.pass_requests_per_second),
            protection.pass_request_burst,
        );
        let mut forgotten = Vec::new();
        // Only requests from networks the pass may be used from count
        // against its rate, so copies used elsewhere cannot slow its owner.
        let (verdict, seen) =
            self.shields
                .passes
                .with((room.key, pass.id), v.now, &mut forgotten, |slot| {
                    let seen = if network == pass.network {
                        Seen::Allowed
                    } else {
                        match slot.extra.seen(network) {
                            // The pass's own network and as many more as
                            // are allowed: the store's set is full, and a
                            // set never shrinks within the pass's life.
                            Seen::Unknown
                                if slot.extra.known(pass.network)
                                    >= protection.max_networks_per_pass as usize =>
                            {
                                Seen::Refused
                            }
                            seen => seen,
                        }
                    };
                    match seen {
                        Seen::Allowed => (Some(slot.check(rate, v.now)), seen),
                        _ => (None, seen),
                    }
                });
        let verdict = match (verdict, seen) {
            (Some(verdict), _) => verdict,
            (None, Seen::Unknown) if self.bind(v, &pass, &[pass.network, network]).await => self
                .shields
                .passes
                .with((room.key, pass.id), v.now, &mut forgotten, |slot| {
                    slot.check(rate, v.now)
                }),
            (None, _) => return self.shared_pass(v),
        };
        if let Verdict::Exceeds { wait, .. } = verdict {
            self.shields.refusal(&room.config.id, "rate");
            return Decision::Slow {
                retry_after_seconds: wait.div_ceil(MICROS_PER_SECOND).clamp(1, 60) as u32,
            };
        }
        // Renewed once it is a minute old (a quarter of its life for short
        // passes): a pass then always lasts nearly `pass_minutes` after the
        // visitor's last request, without a new cookie on every response;
        // never beyond its hard cap.
        let pass_seconds = v.view.settings.pass_seconds;
        let step = (pass_seconds / 4).min(60);
        let renewed = (v.now_s + pass_seconds).min(pass.issued + protection.pass_max_seconds);
        let mut set_cookies = Vec::new();
        let mut pass = pass;
        if renewed > pass.expires + step {
            pass.expires = renewed;
            set_cookies.push(self.pass_cookie(v, &pass));
        }
        Decision::Forward {
            set_cookies,
            admitted_now: false,
            pass: Some(pass),
        }
    }

    /// Asks the store whether `pass` may be used from the last of
    /// `networks` (0s, unknown networks, are left out); remembers the
    /// answer here. While the store cannot answer, pass holders carry on.
    async fn bind(&self, v: &Visit<'_>, pass: &PassClaims, networks: &[u64]) -> bool {
        let room = v.room;
        let protection = &room.config.protection;
        let mut wanted: Vec<u64> = networks.iter().copied().filter(|n| *n != 0).collect();
        wanted.dedup();
        let Some(&network) = wanted.last() else {
            return true;
        };
        let until = (pass.issued + protection.pass_max_seconds) * MICROS_PER_SECOND;
        let answer = self
            .store
            .bind_pass(
                &room.config.id,
                pass.id,
                &wanted,
                protection.max_networks_per_pass,
                until,
                v.now,
            )
            .await;
        let allowed = match answer {
            Ok(allowed) => allowed,
            Err(e) => {
                room.store_failed(&e);
                return true;
            }
        };
        let mut forgotten = Vec::new();
        self.shields
            .passes
            .with((room.key, pass.id), v.now, &mut forgotten, |slot| {
                if allowed {
                    slot.extra.allow(network);
                } else {
                    slot.extra.refuse(network);
                }
            });
        allowed
    }

    /// A pass used from one network too many: refused here, the visitor
    /// told so and sent to the back of the line on their next request.
    fn shared_pass(&self, v: &Visit<'_>) -> Decision {
        self.shields.refusal(&v.room.config.id, "networks");
        let mut status = base_status(v.room, &v.view, State::Waiting, v.now);
        status.notice = Some(Notice::PassShared);
        status.refresh_seconds = 5;
        hold(status, vec![clear_cookie(&v.room.pass_cookie, v.cookies)])
    }

    async fn with_ticket(&self, v: &Visit<'_>, ticket: Claims) -> Decision {
        let room = v.room;
        let view = &v.view;
        if !room.store_healthy() {
            return self.store_trouble(v, view, Some(ticket.number));
        }
        // A ticket from before the phase now open comes back to it.
        if let Some(open) = view.settings.phase_at(v.now) {
            if ticket.time.saturating_mul(MICROS_PER_SECOND) < open.start {
                return Box::pin(self.back(v, ticket.number, open.start)).await;
            }
        }
        if ticket.number <= view.floor {
            return Box::pin(self.arrive(v, view, true)).await;
        }
        if ticket.number > view.projected_frontier(v.now) {
            return self.waiting(v, view, ticket.number);
        }
        // Boxed: a poll that is not yet its holder's turn (nearly all of
        // them) does not carry the store call's state.
        Box::pin(async {
            let answer = self
                .store
                .claim(&room.config.id, ticket.epoch, ticket.number, v.now)
                .await;
            self.exchanged(v, ticket.epoch, ticket.number, answer).await
        })
        .await
    }

    /// Enters a newcomer in the draw of `phase`: a random entry id, kept by
    /// the store, and a cookie carrying it. `None` when the store says the
    /// draw is no longer taking entries (it has just opened): the visitor
    /// then takes a ticket as anyone arriving now.
    async fn enter(&self, v: &Visit<'_>, view: &RoomView, phase: &Phase) -> Option<Decision> {
        let room = v.room;
        let id = draw::new_entry();
        match self
            .store
            .enter_draw(&room.config.id, view.epoch, id, phase.start, v.now)
            .await
        {
            Ok((Entry::Entered, fresh)) => {
                room.offer(fresh.clone());
                let claims = Claims {
                    epoch: fresh.epoch,
                    number: id,
                    time: phase.start / MICROS_PER_SECOND,
                };
                let token = self.keys.sign(Kind::Draw, &room.config.id, claims);
                let max_age = phase.start.saturating_sub(v.now) / MICROS_PER_SECOND
                    + room.config.ticket_seconds;
                let cookie = cookie(&room.ticket_cookie, &token, max_age, v.cookies);
                Some(self.entered(v, &fresh, id, phase, vec![cookie]))
            }
            Ok((_, fresh)) => {
                room.offer(fresh);
                None
            }
            Err(e) => {
                room.store_failed(&e);
                Some(self.promise(v, view))
            }
        }
    }

    /// What someone in the draw sees until it is made: the room's opening,
    /// their entry and the draw's commitment.
    fn entered(
        &self,
        v: &Visit<'_>,
        view: &RoomView,
        id: u64,
        phase: &Phase,
        set_cookies: Vec<String>,
    ) -> Decision {
        let mut status = base_status(v.room, view, State::Closed, v.now);
        status.draw = Some(DrawEntry {
            entry: id,
            opens_at: phase.start.div_ceil(MICROS_PER_SECOND),
            commitment: draw::commitment(&view.settings.draw_seed(phase.start)),
        });
        hold(status, set_cookies)
    }

    /// An entry in a draw of this epoch, for a phase of the schedule that
    /// has not closed, with that phase.
    fn valid_entry(&self, v: &Visit<'_>) -> Option<(Claims, Phase)> {
        let settings = &v.view.settings;
        let entry = self.first_valid(v, &v.room.ticket_cookie, Kind::Draw, |c| {
            c.epoch == v.view.epoch && settings.phase_opening(c.time, v.now).is_some()
        })?;
        Some((entry, *settings.phase_opening(entry.time, v.now)?))
    }

    /// Someone in a draw: before the opening they wait for it; from the
    /// opening the store tells them the ticket the draw gave them, which
    /// then counts as any ticket.
    async fn with_entry(&self, v: &Visit<'_>, entry: Claims, phase: Phase) -> Decision {
        let room = v.room;
        if v.now < phase.start {
            return self.entered(v, &v.view, entry.number, &phase, Vec::new());
        }
        if !room.store_healthy() {
            return self.store_trouble(v, &v.view, None);
        }
        let answer = self
            .store
            .enter_draw(
                &room.config.id,
                entry.epoch,
                entry.number,
                phase.start,
                v.now,
            )
            .await;
        match answer {
            Ok((Entry::Drawn(number), fresh)) => {
                room.offer(fresh);
                let drawn = Visit {
                    room,
                    view: room.view(),
                    now: v.now,
                    now_s: v.now_s,
                    network: v.network,
                    jar: v.jar,
                    cookies: v.cookies,
                };
                let ticket = Claims {
                    epoch: entry.epoch,
                    number,
                    time: v.now_s,
                };
                let token = self.keys.sign(Kind::Ticket, &room.config.id, ticket);
                let mut decision = self.with_ticket(&drawn, ticket).await;
                decision.first_cookie(cookie(
                    &room.ticket_cookie,
                    &token,
                    room.config.ticket_seconds,
                    v.cookies,
                ));
                decision
            }
            Ok((Entry::Entered, fresh)) => {
                room.offer(fresh.clone());
                self.entered(v, &fresh, entry.number, &phase, Vec::new())
            }
            Ok((Entry::Missed, fresh)) => {
                room.offer(fresh.clone());
                self.arrive(v, &fresh, false).await
            }
            Err(e) => {
                room.store_failed(&e);
                self.store_trouble(v, &v.view, None)
            }
        }
    }

    /// A place kept for a later phase, brought back: verified, of this
    /// epoch, for a phase of the schedule that has not closed.
    fn valid_return(&self, v: &Visit<'_>) -> Option<Claims> {
        let settings = &v.view.settings;
        self.first_valid(v, &v.room.return_cookie, Kind::Return, |c| {
            c.epoch == v.view.epoch && settings.phase_opening(c.time, v.now).is_some()
        })
    }

    /// A return ticket's holder: before their phase opens they are told
    /// their place is kept; once it is open they come back to it.
    async fn with_return(&self, v: &Visit<'_>, kept: Claims) -> Decision {
        match v.view.settings.phase_at(v.now) {
            Some(open) if open.start / MICROS_PER_SECOND == kept.time => {
                self.back(v, kept.number, open.start).await
            }
            _ => {
                let state = state_of(v.view.standing(v.now));
                let mut status = waiting_status(v.room, &v.view, state, kept.number, v.now);
                status.kept_for = Some(kept.time);
                hold(status, Vec::new())
            }
        }
    }

    /// Someone who held a place before the phase that opened at `phase`:
    /// see [`crate::store::queue::Counters::come_back`].
    async fn back(&self, v: &Visit<'_>, number: u64, phase: Micros) -> Decision {
        let view = &v.view;
        if !v.room.store_healthy() {
            return self.store_trouble(v, view, Some(number));
        }
        if number > view.projected_frontier(v.now) {
            return self.waiting(v, view, number);
        }
        let answer = self
            .store
            .come_back(&v.room.config.id, view.epoch, number, phase, v.now)
            .await;
        self.exchanged(v, view.epoch, number, answer).await
    }

    /// A visitor whose turn has not come: where they stand, and when the
    /// phase has ended before their turn, a return ticket that keeps their
    /// place for the next one.
    fn waiting(&self, v: &Visit<'_>, view: &RoomView, number: u64) -> Decision {
        let standing = view.standing(v.now);
        let mut status = waiting_status(v.room, view, state_of(standing), number, v.now);
        let mut set_cookies = Vec::new();
        if let Standing::SoldOut { next: Some(at) } | Standing::Closed { next: Some(at) } = standing
        {
            let phase = view.settings.phases.iter().find(|p| p.start == at);
            if let Some(phase) = phase.filter(|_| number > view.frontier) {
                let kept = Claims {
                    epoch: view.epoch,
                    number,
                    time: at / MICROS_PER_SECOND,
                };
                let token = self.keys.sign(Kind::Return, &v.room.config.id, kept);
                let max_age = phase.end.saturating_sub(v.now) / MICROS_PER_SECOND;
                set_cookies.push(cookie(&v.room.return_cookie, &token, max_age, v.cookies));
                status.kept_for = Some(kept.time);
                status.return_ticket = Some(token);
            }
        }
        hold(status, set_cookies)
    }

    /// What the store's answer to an exchange means for the visitor.
    async fn exchanged(
        &self,
        v: &Visit<'_>,
        epoch: u64,
        number: u64,
        answer: Result<(Claim, RoomView), StoreError>,
    ) -> Decision {
        let room = v.room;
        let (claim, fresh_view) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                room.store_failed(&e);
                return self.store_trouble(v, &v.view, Some(number));
            }
        };
        room.offer(fresh_view.clone());
        match claim {
            Claim::Admitted { fresh } => {
                let pass = self.new_pass(v, epoch, number);
                // The same ticket again (a retry, a second tab) gets the
                // same pass, but counts as using it from this network.
                if !fresh && !self.bind(v, &pass, &[v.network.as_u64()]).await {
                    return self.shared_pass(v);
                }
                let mut set_cookies = vec![self.pass_cookie(v, &pass)];
                set_cookies.extend(self.spent_cookies(v));
                Decision::Forward {
                    set_cookies,
                    admitted_now: fresh,
                    pass: Some(pass),
                }
            }
            Claim::NotYet => self.waiting(v, &fresh_view, number),
            Claim::SoldOut => hold(
                base_status(room, &fresh_view, State::SoldOut, v.now),
                Vec::new(),
            ),
            Claim::Spent => {
                self.shields.refusal(&room.config.id, "ticket_spent");
                let mut status = base_status(room, &fresh_view, State::Waiting, v.now);
                status.notice = Some(Notice::TicketSpent);
                status.refresh_seconds = 5;
                hold(status, self.spent_cookies(v))
            }
            Claim::Lapsed | Claim::Stale => {
                let mut decision = self.arrive(v, &fresh_view, true).await;
                if v.jar.values(&room.return_cookie).next().is_some() {
                    decision.add_cookie(clear_cookie(&room.return_cookie, v.cookies));
                }
                decision
            }
        }
    }

    /// Clears the ticket, and the return ticket if the visitor holds one:
    /// they have been exchanged.
    fn spent_cookies(&self, v: &Visit<'_>) -> Vec<String> {
        let room = v.room;
        let mut cookies = vec![clear_cookie(&room.ticket_cookie, v.cookies)];
        if v.jar.values(&room.return_cookie).next().is_some() {
            cookies.push(clear_cookie(&room.return_cookie, v.cookies));
        }
        cookies
    }

    /// `{prefix}/return?room=ID&ticket=T`: a return ticket from a link
    /// becomes this browser's, so a place kept on one device can be used
    /// on another (still only once). Returns the cookie to set.
    pub fn take_return(
        &self,
        room_index: usize,
        token: &str,
        cookies: CookieOptions,
    ) -> Result<String, ReturnError> {
        let room = self.rooms.get(room_index).ok_or(ReturnError::Forged)?;
        let kept = self
            .keys
            .verify(Kind::Return, &room.config.id, token)
            .ok_or(ReturnError::Forged)?;
        let view = room.view();
        let now = self.clock.now_micros();
        let phase = view
            .settings
            .phase_opening(kept.time, now)
            .filter(|_| kept.epoch == view.epoch)
            .ok_or(ReturnError::Over)?;
        let max_age = (phase.end - now) / MICROS_PER_SECOND;
        Ok(cookie(&room.return_cookie, token, max_age, cookies))
    }

    /// Hands the visitor a ticket, admitting them at once when the store
    /// says nobody is ahead. Within their network's budget the ticket is
    /// free; past it, it costs a proof of work.
    async fn arrive(&self, v: &Visit<'_>, view: &RoomView, requeued: bool) -> Decision {
        let room = v.room;
        let standing = view.standing(v.now);
        // Before a phase with a draw, newcomers enter the draw.
        let drawing = match standing {
            Standing::Closed { next: Some(at) } => view
                .settings
                .phases
                .iter()
                .find(|p| p.start == at && p.drawing(v.now))
                .copied(),
            _ => None,
        };
        if drawing.is_none()
            && matches!(standing, Standing::SoldOut { .. } | Standing::Closed { .. })
        {
            return hold(
                base_status(room, view, state_of(standing), v.now),
                Vec::new(),
            );
        }
        let protection = &room.config.protection;
        let rate = Rate::per_minute(protection.tickets_per_minute, protection.ticket_burst);
        let key = (room.key, v.network);
        let mut forgotten = Vec::new();
        let verdict = self
            .shields
            .budget
            .with(key, v.now, &mut forgotten, |slot| slot.check(rate, v.now));
        self.shields.forgotten(&forgotten);
        let mut paid = None;
        if let Verdict::Exceeds { wait, excess } = verdict {
            let Some(solution) = v.jar.values(&room.work_cookie).next() else {
                return self.challenge(v, view, excess, wait, None);
            };
            match work::verify(&self.keys, &room.config.id, v.network, solution, v.now_s) {
                Ok(solved) => paid = Some(solved),
                Err(e) => return self.challenge(v, view, excess, wait, Some(e.to_string())),
            }
        }
        if !room.store_healthy() {
            return self.promise(v, view);
        }
        if let Some(phase) = drawing {
            if let Some(mut decision) = self.enter(v, view, &phase).await {
                if paid.is_some() {
                    self.paid_for(v, rate, &mut decision);
                }
                return decision;
            }
        }
        let answer = match paid {
            Some(solved) => {
                let expires = solved.expires * MICROS_PER_SECOND;
                self.store
                    .arrive_paid(&room.config.id, v.now, solved.nonce, expires)
                    .await
            }
            None => self.store.arrive(&room.config.id, v.now).await,
        };
        match answer {
            Ok(arrival) => {
                let mut decision = self.arrival(v, arrival, requeued);
                if paid.is_some() {
                    self.paid_for(v, rate, &mut decision);
                }
                decision
            }
            Err(StoreError::Spent) => {
                let excess = self
                    .shields
                    .budget
                    .peek(&key, |slot| slot.map_or(0, |s| s.excess(rate, v.now)));
                self.challenge(v, view, excess, 0, Some(StoreError::Spent.to_string()))
            }
            Err(StoreError::Settling) => self.promise(v, view),
            Err(e) => {
                room.store_failed(&e);
                self.promise(v, view)
            }
        }
    }

    /// A place paid for with a proof of work: counted against the
    /// network's budget, so the next costs more, and the solution's cookie
    /// cleared.
    fn paid_for(&self, v: &Visit<'_>, rate: Rate, decision: &mut Decision) {
        let room = v.room;
        let mut forgotten = Vec::new();
        self.shields.challenge(&room.config.id, "solved");
        self.shields
            .budget
            .with((room.key, v.network), v.now, &mut forgotten, |slot| {
                slot.force(rate, v.now, WORK_MEMORY)
            });
        self.shields.forgotten(&forgotten);
        decision.add_cookie(clear_cookie(&room.work_cookie, v.cookies));
    }

    /// A proof-of-work challenge instead of a ticket: harder the further
    /// the network has run past its budget and while the line is under
    /// pressure. `failed` says why the solution offered was refused.
    fn challenge(
        &self,
        v: &Visit<'_>,
        view: &RoomView,
        excess: u64,
        wait: Micros,
        failed: Option<String>,
    ) -> Decision {
        let room = v.room;
        let protection = &room.config.protection;
        let bits = work::difficulty(
            protection.challenge_bits,
            protection.challenge_bits_max,
            excess,
            room.under_pressure(view),
        );
        let challenge = work::issue(&self.keys, &room.config.id, v.network, bits, v.now_s);
        self.shields.challenge(&room.config.id, "issued");
        let mut set_cookies = Vec::new();
        if failed.is_some() {
            self.shields.challenge(&room.config.id, "failed");
            set_cookies.push(clear_cookie(&room.work_cookie, v.cookies));
        }
        Decision::Challenge {
            challenge,
            cookie: room.work_cookie.clone(),
            // Without JavaScript, the page asks again once the network's
            // budget has a free ticket again.
            refresh_seconds: wait.div_ceil(MICROS_PER_SECOND).clamp(5, 60) as u32,
            failed,
            set_cookies,
        }
    }

    /// Tells a visitor about the ticket the store just handed them (or the
    /// pass, when they were admitted at once).
    fn arrival(&self, v: &Visit<'_>, arrival: Arrival, requeued: bool) -> Decision {
        let room = v.room;
        room.offer(arrival.view.clone());
        let epoch = arrival.view.epoch;
        if arrival.admitted {
            let pass = self.new_pass(v, epoch, arrival.ticket);
            return Decision::Forward {
                set_cookies: vec![self.pass_cookie(v, &pass)],
                admitted_now: true,
                pass: Some(pass),
            };
        }
        let ticket = self.keys.sign(
            Kind::Ticket,
            &room.config.id,
            Claims {
                epoch,
                number: arrival.ticket,
                time: v.now_s,
            },
        );
        let set_cookies = vec![cookie(
            &room.ticket_cookie,
            &ticket,
            room.config.ticket_seconds,
            v.cookies,
        )];
        let state = state_of(arrival.view.standing(v.now));
        let mut status = waiting_status(room, &arrival.view, state, arrival.ticket, v.now);
        status.requeued = requeued;
        hold(status, set_cookies)
    }

    /// A newcomer while the store is unreachable: under `hold`, a signed
    /// promise of a place that records when they came, so that once the
    /// store is back they are numbered in arrival order behind everyone
    /// already waiting.
    fn promise(&self, v: &Visit<'_>, view: &RoomView) -> Decision {
        let room = v.room;
        if self.on_error == OnError::Admit {
            return self.store_trouble(v, view, None);
        }
        let promise = self.keys.sign(
            Kind::Pending,
            &room.config.id,
            Claims {
                epoch: random_u64() >> 1,
                number: 0,
                time: v.now / 1000,
            },
        );
        let set_cookies = vec![cookie(
            &room.ticket_cookie,
            &promise,
            room.config.ticket_seconds,
            v.cookies,
        )];
        hold(promise_status(room, view, v.now), set_cookies)
    }

    fn valid_promise(&self, v: &Visit<'_>) -> Option<Claims> {
        let room = v.room;
        self.first_valid(v, &room.ticket_cookie, Kind::Pending, |c| {
            let arrived_s = c.time / 1000;
            arrived_s <= v.now_s + CLOCK_SKEW_SECONDS
                && v.now_s < arrived_s.saturating_add(room.config.ticket_seconds)
        })
    }

    /// Turns a promise into a ticket once the store is back and the
    /// promises of the outage have come in; until then the visitor waits
    /// on the paused page.
    async fn keep_promise(&self, v: &Visit<'_>, promise: Claims) -> Decision {
        let room = v.room;
        if !room.store_healthy() {
            return self.store_trouble(v, &v.view, None);
        }
        let member = format!("{}:{}", promise.time, promise.epoch);
        match self
            .store
            .arrive_pending(&room.config.id, &member, promise.time, v.now)
            .await
        {
            Ok(Some(arrival)) => self.arrival(v, arrival, false),
            Ok(None) => hold(promise_status(room, &v.view, v.now), Vec::new()),
            Err(e) => {
                room.store_failed(&e);
                self.store_trouble(v, &v.view, None)
            }
        }
    }

    /// The store could not be asked. Under `hold` the visitor keeps
    /// whatever they hold and is told the line is paused, their place kept;
    /// under `admit` they are let in with a pass that counts against nothing
    /// (ticket number 0).
    fn store_trouble(&self, v: &Visit<'_>, view: &RoomView, ticket: Option<u64>) -> Decision {
        let room = v.room;
        if self.on_error == OnError::Admit {
            let mut pass = self.new_pass(v, view.epoch, 0);
            pass.id = random_u64().max(1);
            pass.via = Via::Outage.code();
            return Decision::Forward {
                set_cookies: vec![self.pass_cookie(v, &pass)],
                admitted_now: false,
                pass: Some(pass),
            };
        }
        let status = match ticket {
            Some(number) => waiting_status(room, view, State::Paused, number, v.now),
            None => base_status(room, view, State::Paused, v.now),
        };
        hold(status, Vec::new())
    }

    /// A pass for ticket `number`, issued now to the visitor's network.
    fn new_pass(&self, v: &Visit<'_>, epoch: u64, number: u64) -> PassClaims {
        // Live settings: an operator may have changed the session length.
        let pass_seconds = v.room.view().settings.pass_seconds;
        PassClaims {
            epoch,
            number,
            expires: v.now_s + pass_seconds,
            issued: v.now_s,
            id: self.keys.pass_id(&v.room.config.id, epoch, number),
            network: v.network.as_u64(),
            via: Via::Line.code(),
        }
    }

    fn pass_cookie(&self, v: &Visit<'_>, pass: &PassClaims) -> String {
        let token = self.keys.sign_pass(&v.room.config.id, pass);
        let max_age = pass.expires.saturating_sub(v.now_s);
        cookie(&v.room.pass_cookie, &token, max_age, v.cookies)
    }
}

/// What a room looks like before the store has answered: nothing handed
/// out; any real view replaces it (it is the oldest possible).
fn placeholder_view(config: &RoomConfig) -> RoomView {
    RoomView {
        settings: config.settings.clone(),
        epoch: 1,
        tail: 0,
        frontier: 0,
        floor: 0,
        admitted: 0,
        wasted: 0,
        outstanding: 0,
        tat: 0,
        running: false,
        phase: 0,
        phase_base: 0,
        given: 0,
        received: 0,
        at: 0,
    }
}

fn hold(status: Status, set_cookies: Vec<String>) -> Decision {
    Decision::Hold {
        status,
        set_cookies,
    }
}

fn cookie(name: &str, value: &str, max_age: u64, options: CookieOptions) -> String {
    cookie::set_cookie(name, value, max_age, options.secure)
}

fn clear_cookie(name: &str, options: CookieOptions) -> String {
    cookie::clear_cookie(name, options.secure)
}

/// What a visitor holding a promise sees: the line is paused for them, and
/// they are asked back often, so every promise is in before they are
/// numbered.
fn promise_status(room: &Room, view: &RoomView, now: Micros) -> Status {
    let mut status = base_status(room, view, State::Paused, now);
    status.refresh_seconds = 2;
    status
}

/// The state a visitor who is not yet in sees, from the room's standing.
fn state_of(standing: Standing) -> State {
    match standing {
        Standing::Open => State::Waiting,
        Standing::Paused => State::Paused,
        Standing::SoldOut { .. } => State::SoldOut,
        Standing::Closed { .. } => State::Closed,
    }
}

/// Status fields that do not depend on a ticket.
fn base_status(room: &Room, view: &RoomView, state: State, now: Micros) -> Status {
    let opens_at = match view.standing(now) {
        Standing::SoldOut { next } | Standing::Closed { next } => {
            next.map(|at| at.div_ceil(MICROS_PER_SECOND))
        }
        Standing::Open | Standing::Paused => None,
    };
    // A page without JavaScript reloads right as the room opens.
    let refresh_seconds = match opens_at {
        Some(at) => {
            let left = at.saturating_sub(now / MICROS_PER_SECOND);
            room.config
                .refresh_seconds
                .min(u32::try_from(left).unwrap_or(u32::MAX))
                .max(1)
        }
        None => room.config.refresh_seconds,
    };
    Status {
        room: room.config.id.clone(),
        state,
        ticket: None,
        position: None,
        ahead: None,
        eta_seconds: None,
        eta_range_seconds: None,
        quota_left: view.places_left(now),
        beyond_quota: false,
        opens_at,
        kept_for: None,
        return_ticket: None,
        draw: None,
        requeued: false,
        notice: None,
        refresh_seconds,
        poll_after_millis: None,
        updated_at: view.at / MICROS_PER_SECOND,
    }
}

/// Where ticket `number` stands, told honestly: the wait is the time the
/// frontier needs at the current rate, shown as a range that only narrows
/// as the line moves.
pub fn waiting_status(
    room: &Room,
    view: &RoomView,
    state: State,
    number: u64,
    now: Micros,
) -> Status {
    let frontier = view.projected_frontier(now);
    let position = number.saturating_sub(frontier).max(1);
    let mut status = base_status(room, view, state, now);
    status.ticket = Some(number);
    status.position = Some(position);
    status.ahead = Some(position - 1);
    status.beyond_quota = number.saturating_sub(view.frontier) > view.releasable(now);
    if status.beyond_quota {
        status.refresh_seconds = status.refresh_seconds.min(BEYOND_QUOTA_REFRESH_SECONDS);
    }
    if state == State::Waiting && !status.beyond_quota {
        if let Some(at) = view.release_time(number, now) {
            let wait = at.saturating_sub(now);
            let eta = wait.div_ceil(MICROS_PER_SECOND);
            status.eta_seconds = Some(eta);
            status.eta_range_seconds = Some(eta_range(eta));
            let longest = u64::from(room.config.refresh_seconds) * 1000;
            let wait_ms = wait / 1000;
            // Near the front, ask again just after the turn comes, so turns
            // are taken promptly and in order; further back, a third of the
            // wait, so the estimate stays fresh without a flood of polls.
            let poll_ms = if wait_ms <= NEAR_FRONT_MILLIS {
                status.poll_after_millis = Some(wait_ms + TURN_MARGIN_MILLIS);
                wait_ms + TURN_MARGIN_MILLIS
            } else {
                wait_ms / 3
            };
            status.refresh_seconds = poll_ms.div_ceil(1000).clamp(1, longest / 1000) as u32;
        }
    }
    status
}

/// The honest range around an estimate: operators may slow the rate, so the
/// upper end leaves a fifth more plus a little; both ends fall steadily as
/// the line moves, so the range never jumps around.
pub fn eta_range(eta: u64) -> [u64; 2] {
    [eta, eta + eta / 5 + 10]
}
