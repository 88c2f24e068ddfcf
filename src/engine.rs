//! The admission engine: given a room and a visitor's cookies, decides
//! whether the request goes to the origin or the visitor waits, and what they
//! are told. It reads a cached view of each room's counters; the store is
//! asked only to hand out a ticket, to exchange one for a pass, and (in the
//! background) to refresh the cache.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::clock::{Clock, Micros, MICROS_PER_SECOND};
use crate::config::{OnError, RoomConfig};
use crate::cookie::{self, Jar};
use crate::status::{State, Status};
use crate::store::{Arrival, Claim, RoomView, Store, StoreError};
use crate::token::{Claims, Keyring, Kind};

/// Within this wait of their turn, a visitor is told exactly when to ask.
const NEAR_FRONT_MILLIS: u64 = 6_000;

/// Asked just after the turn comes: the cached frontier has caught up.
const TURN_MARGIN_MILLIS: u64 = 100;

/// A visitor more than this far ahead of the server clock is not believed.
const CLOCK_SKEW_SECONDS: u64 = 300;

/// What to do with a request to a guarded route.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send the request to the origin, setting these cookies on the
    /// response (a new or renewed pass, the spent ticket cleared).
    Forward {
        set_cookies: Vec<String>,
        admitted_now: bool,
    },
    /// Keep the visitor out and tell them where they stand.
    Hold {
        status: Status,
        set_cookies: Vec<String>,
    },
    /// The visitor holds no valid cookie for this room (status requests only;
    /// a guarded request gets a ticket instead).
    NoTicket,
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
    /// The freshest counters this instance has seen. A std `RwLock` holding
    /// an `Arc`: readers clone the pointer and let go at once; nothing is
    /// awaited while it is held.
    view: RwLock<Arc<RoomView>>,
    /// False from a failed store call until the next answer: meanwhile the
    /// cached counters cannot be trusted, so nobody new is admitted.
    healthy: AtomicBool,
    /// (time, admitted) at each background sync over the last minute and a
    /// bit, for "admitted in the last minute". A std `Mutex`: nothing is
    /// awaited while it is held.
    history: Mutex<VecDeque<(Micros, u64)>>,
    /// Whether the store has taken this config's settings for the room;
    /// until then the background sync configures instead of syncing.
    configured: AtomicBool,
}

impl Room {
    /// A room new to this process: a placeholder view until the store
    /// answers.
    fn new_placeholder(config: RoomConfig) -> Room {
        let view = placeholder_view(&config);
        Room::new(config, view, true)
    }

    /// A room starting from the last view this process had of it.
    fn new(config: RoomConfig, view: RoomView, healthy: bool) -> Room {
        Room {
            pass_cookie: format!("antre-pass-{}", config.id),
            ticket_cookie: format!("antre-ticket-{}", config.id),
            view: RwLock::new(Arc::new(view)),
            config,
            healthy: AtomicBool::new(healthy),
            history: Mutex::new(VecDeque::new()),
            configured: AtomicBool::new(false),
        }
    }

    pub fn view(&self) -> Arc<RoomView> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Admissions in the last minute, from the background syncs' samples.
    pub fn admitted_last_minute(&self) -> u64 {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let Some(&(latest_at, latest)) = history.back() else {
            return 0;
        };
        let since = latest_at.saturating_sub(60 * MICROS_PER_SECOND);
        let start = history
            .iter()
            .find(|(at, _)| *at >= since)
            .map_or(latest, |(_, admitted)| *admitted);
        latest.saturating_sub(start)
    }

    fn sample(&self, at: Micros, admitted: u64) {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.push_back((at, admitted));
        let keep_from = at.saturating_sub(70 * MICROS_PER_SECOND);
        while history.front().is_some_and(|(t, _)| *t < keep_from) {
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
                    room.sample(view.at, view.admitted);
                    room.offer(view);
                }
                Err(e) => room.store_failed(&e),
            }
        }
    }

    /// Decides what happens to a visitor of `room` carrying `jar`.
    pub async fn decide(
        &self,
        room_index: usize,
        jar: &Jar,
        mode: Mode,
        cookies: CookieOptions,
    ) -> Decision {
        let Some(room) = self.rooms.get(room_index) else {
            return Decision::NoTicket;
        };
        let now = self.clock.now_micros();
        let now_s = now / MICROS_PER_SECOND;
        let view = room.view();

        if let Some(pass) = self.valid_pass(room, jar, &view, now_s) {
            let mut set_cookies = Vec::new();
            // Renewed once it is a minute old (a quarter of its life for
            // short passes): a pass then always lasts nearly `pass_minutes`
            // after the visitor's last request, without a new cookie on
            // every response.
            let pass_seconds = view.settings.pass_seconds;
            let step = (pass_seconds / 4).min(60);
            if pass.time.saturating_sub(now_s) + step < pass_seconds {
                set_cookies.push(self.pass_cookie(room, pass.epoch, pass.number, now_s, cookies));
            }
            return Decision::Forward {
                set_cookies,
                admitted_now: false,
            };
        }

        if let Some(ticket) = self.valid_ticket(room, jar, &view, now_s) {
            return self.with_ticket(room, ticket, &view, now, cookies).await;
        }

        if let Some(promise) = self.valid_promise(room, jar, now_s) {
            return self.keep_promise(room, promise, &view, now, cookies).await;
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
                self.arrive(room, &view, now, lapsed, cookies).await
            }
        }
    }

    /// The status a pass holder sees.
    pub fn admitted_status(&self, room_index: usize) -> Option<Status> {
        let room = self.rooms.get(room_index)?;
        let view = room.view();
        let mut status = base_status(room, &view, State::Admitted);
        status.refresh_seconds = room.config.refresh_seconds;
        Some(status)
    }

    /// The first cookie under `name` that is a genuine token of `kind` for
    /// this room and passes `current`.
    fn first_valid(
        &self,
        room: &Room,
        jar: &Jar,
        name: &str,
        kind: Kind,
        current: impl Fn(&Claims) -> bool,
    ) -> Option<Claims> {
        jar.values(name)
            .filter_map(|value| self.keys.verify(kind, &room.config.id, value))
            .find(|claims| current(claims))
    }

    fn valid_pass(&self, room: &Room, jar: &Jar, view: &RoomView, now_s: u64) -> Option<Claims> {
        let longest = view.settings.pass_seconds.max(room.config.pass_seconds);
        self.first_valid(room, jar, &room.pass_cookie, Kind::Pass, |c| {
            c.time > now_s
                && c.time <= now_s + longest + CLOCK_SKEW_SECONDS
                && c.epoch == view.epoch
        })
    }

    fn valid_ticket(&self, room: &Room, jar: &Jar, view: &RoomView, now_s: u64) -> Option<Claims> {
        self.first_valid(room, jar, &room.ticket_cookie, Kind::Ticket, |c| {
            c.time <= now_s + CLOCK_SKEW_SECONDS
                && now_s < c.time.saturating_add(room.config.ticket_seconds)
                && c.epoch == view.epoch
        })
    }

    async fn with_ticket(
        &self,
        room: &Room,
        ticket: Claims,
        view: &RoomView,
        now: Micros,
        cookies: CookieOptions,
    ) -> Decision {
        if !room.store_healthy() {
            return self.store_trouble(room, view, Some(ticket.number), now, cookies);
        }
        if ticket.number <= view.floor {
            return self.arrive(room, view, now, true, cookies).await;
        }
        if ticket.number > view.projected_frontier(now) {
            let state = if view.sold_out() {
                State::SoldOut
            } else if view.settings.paused {
                State::Paused
            } else {
                State::Waiting
            };
            return hold(
                waiting_status(room, view, state, ticket.number, now),
                Vec::new(),
            );
        }
        match self
            .store
            .claim(&room.config.id, ticket.epoch, ticket.number, now)
            .await
        {
            Ok((claim, fresh_view)) => {
                room.offer(fresh_view.clone());
                let now_s = now / MICROS_PER_SECOND;
                match claim {
                    Claim::Admitted { fresh } => Decision::Forward {
                        set_cookies: vec![
                            self.pass_cookie(room, ticket.epoch, ticket.number, now_s, cookies),
                            clear_cookie(&room.ticket_cookie, cookies),
                        ],
                        admitted_now: fresh,
                    },
                    Claim::NotYet => hold(
                        waiting_status(room, &fresh_view, State::Waiting, ticket.number, now),
                        Vec::new(),
                    ),
                    Claim::SoldOut => {
                        hold(base_status(room, &fresh_view, State::SoldOut), Vec::new())
                    }
                    Claim::Lapsed | Claim::Stale => {
                        self.arrive(room, &fresh_view, now, true, cookies).await
                    }
                }
            }
            Err(e) => {
                room.store_failed(&e);
                self.store_trouble(room, view, Some(ticket.number), now, cookies)
            }
        }
    }

    /// Hands the visitor a ticket, admitting them at once when the store
    /// says nobody is ahead.
    async fn arrive(
        &self,
        room: &Room,
        view: &RoomView,
        now: Micros,
        requeued: bool,
        cookies: CookieOptions,
    ) -> Decision {
        if view.sold_out() {
            return hold(base_status(room, view, State::SoldOut), Vec::new());
        }
        if !room.store_healthy() {
            return self.promise(room, view, now, cookies);
        }
        match self.store.arrive(&room.config.id, now).await {
            Ok(arrival) => self.arrival(room, arrival, now, requeued, cookies),
            Err(StoreError::Settling) => self.promise(room, view, now, cookies),
            Err(e) => {
                room.store_failed(&e);
                self.promise(room, view, now, cookies)
            }
        }
    }

    /// Tells a visitor about the ticket the store just handed them (or the
    /// pass, when they were admitted at once).
    fn arrival(
        &self,
        room: &Room,
        arrival: Arrival,
        now: Micros,
        requeued: bool,
        cookies: CookieOptions,
    ) -> Decision {
        room.offer(arrival.view.clone());
        let now_s = now / MICROS_PER_SECOND;
        let epoch = arrival.view.epoch;
        if arrival.admitted {
            return Decision::Forward {
                set_cookies: vec![self.pass_cookie(room, epoch, arrival.ticket, now_s, cookies)],
                admitted_now: true,
            };
        }
        let ticket = self.keys.sign(
            Kind::Ticket,
            &room.config.id,
            Claims {
                epoch,
                number: arrival.ticket,
                time: now_s,
            },
        );
        let set_cookies = vec![cookie(
            &room.ticket_cookie,
            &ticket,
            room.config.ticket_seconds,
            cookies,
        )];
        let state = if arrival.view.settings.paused {
            State::Paused
        } else {
            State::Waiting
        };
        let mut status = waiting_status(room, &arrival.view, state, arrival.ticket, now);
        status.requeued = requeued;
        hold(status, set_cookies)
    }

    /// A newcomer while the store is unreachable: under `hold`, a signed
    /// promise of a place that records when they came, so that once the
    /// store is back they are numbered in arrival order behind everyone
    /// already waiting.
    fn promise(
        &self,
        room: &Room,
        view: &RoomView,
        now: Micros,
        cookies: CookieOptions,
    ) -> Decision {
        if self.on_error == OnError::Admit {
            return self.store_trouble(room, view, None, now, cookies);
        }
        let mut nonce = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce);
        let promise = self.keys.sign(
            Kind::Pending,
            &room.config.id,
            Claims {
                epoch: u64::from_le_bytes(nonce) >> 1,
                number: 0,
                time: now / 1000,
            },
        );
        let set_cookies = vec![cookie(
            &room.ticket_cookie,
            &promise,
            room.config.ticket_seconds,
            cookies,
        )];
        hold(promise_status(room, view), set_cookies)
    }

    fn valid_promise(&self, room: &Room, jar: &Jar, now_s: u64) -> Option<Claims> {
        self.first_valid(room, jar, &room.ticket_cookie, Kind::Pending, |c| {
            let arrived_s = c.time / 1000;
            arrived_s <= now_s + CLOCK_SKEW_SECONDS
                && now_s < arrived_s.saturating_add(room.config.ticket_seconds)
        })
    }

    /// Turns a promise into a ticket once the store is back and the
    /// promises of the outage have come in; until then the visitor waits
    /// on the paused page.
    async fn keep_promise(
        &self,
        room: &Room,
        promise: Claims,
        view: &RoomView,
        now: Micros,
        cookies: CookieOptions,
    ) -> Decision {
        if !room.store_healthy() {
            return self.store_trouble(room, view, None, now, cookies);
        }
        let member = format!("{}:{}", promise.time, promise.epoch);
        match self
            .store
            .arrive_pending(&room.config.id, &member, promise.time, now)
            .await
        {
            Ok(Some(arrival)) => self.arrival(room, arrival, now, false, cookies),
            Ok(None) => hold(promise_status(room, view), Vec::new()),
            Err(e) => {
                room.store_failed(&e);
                self.store_trouble(room, view, None, now, cookies)
            }
        }
    }

    /// The store could not be asked. Under `hold` the visitor keeps
    /// whatever they hold and is told the line is paused, their place kept;
    /// under `admit` they are let in with a pass that counts against nothing
    /// (ticket number 0).
    fn store_trouble(
        &self,
        room: &Room,
        view: &RoomView,
        ticket: Option<u64>,
        now: Micros,
        cookies: CookieOptions,
    ) -> Decision {
        if self.on_error == OnError::Admit {
            return Decision::Forward {
                set_cookies: vec![self.pass_cookie(
                    room,
                    view.epoch,
                    0,
                    now / MICROS_PER_SECOND,
                    cookies,
                )],
                admitted_now: false,
            };
        }
        let status = match ticket {
            Some(number) => waiting_status(room, view, State::Paused, number, now),
            None => base_status(room, view, State::Paused),
        };
        hold(status, Vec::new())
    }

    fn pass_cookie(
        &self,
        room: &Room,
        epoch: u64,
        number: u64,
        now_s: u64,
        cookies: CookieOptions,
    ) -> String {
        // Live settings: an operator may have changed the session length.
        let pass_seconds = room.view().settings.pass_seconds;
        let expires = now_s + pass_seconds;
        let token = self.keys.sign(
            Kind::Pass,
            &room.config.id,
            Claims {
                epoch,
                number,
                time: expires,
            },
        );
        cookie(&room.pass_cookie, &token, pass_seconds, cookies)
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
fn promise_status(room: &Room, view: &RoomView) -> Status {
    let mut status = base_status(room, view, State::Paused);
    status.refresh_seconds = 2;
    status
}

/// Status fields that do not depend on a ticket.
fn base_status(room: &Room, view: &RoomView, state: State) -> Status {
    Status {
        room: room.config.id.clone(),
        state,
        ticket: None,
        position: None,
        ahead: None,
        eta_seconds: None,
        eta_range_seconds: None,
        quota_left: view.quota_left(),
        beyond_quota: false,
        requeued: false,
        refresh_seconds: room.config.refresh_seconds,
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
    let mut status = base_status(room, view, state);
    status.ticket = Some(number);
    status.position = Some(position);
    status.ahead = Some(position - 1);
    status.beyond_quota = number.saturating_sub(view.frontier) > view.releasable();
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
