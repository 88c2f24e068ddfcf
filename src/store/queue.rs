//! The queue maths of one room: how the frontier advances with time, how a
//! ticket is exchanged for a pass, and how released slots nobody claimed
//! expire. Pure functions over plain counters; every store runs exactly
//! these rules (the in-process store calls them, the Redis store mirrors them
//! in Lua), so property tests here pin the invariants for all of them.
//!
//! Accounting. Every ticket number at or below the frontier is in exactly
//! one of three groups:
//!
//! - *admitted*: exchanged for a pass (counted in `admitted`);
//! - *wasted*: released, but not claimed within the claim window;
//! - *outstanding*: released, still claimable (between `floor` and
//!   `frontier`, not yet claimed).
//!
//! So `frontier = admitted + wasted + outstanding`, and keeping
//! `frontier <= quota + wasted` means admitted plus outstanding never exceed
//! the quota: nobody is told "your turn" for a slot that does not exist.
//!
//! Rate. Releases follow a schedule one `interval` apart. `tat` is the
//! scheduled time of the last released slot. An idle room's schedule may
//! restart no earlier than `now - burst * interval`, so it saves up at most
//! `burst` releases; a running line keeps exact time from `tat`, whenever
//! the next advance comes. Releases happen on schedule: in any window of
//! length `w`, at most `burst + w / interval` slots fall due. The frontier
//! is evaluated lazily, so slots that fell due while nobody asked are
//! released together at the next advance (the background sync asks a few
//! times a second); after a stall longer than [`CATCH_UP`] the line resumes
//! at the rate instead of releasing the whole gap.
//!
//! Phases. A room with a schedule admits only inside one of its phases,
//! each with its own quota and rate. The first advance at or after a
//! phase's start enters it: the slots used until then (released, less
//! those wasted) become the phase's base, and the frontier may release
//! `base + phase quota + wasted` in all, so each phase gets exactly its own
//! quota and a slot wasted in it is given back to it. Outside every phase
//! the frontier stands still, as if paused; slots already released stay
//! claimable for their window. A phase with `spread` derives its interval
//! from what is left: the phase's remaining time over the slots it may
//! still release, so it uses its quota evenly and a wasted slot is spread
//! over the rest of the phase rather than lost. Ticket numbers go on across
//! phases: whoever still waits when a phase closes keeps their place.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::clock::{Micros, MICROS_PER_SECOND};

/// What an operator sets for a room; the counters obey it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    /// Admissions per minute, released smoothly (one every `60 s / rate`).
    pub admit_per_minute: u32,
    /// How many releases an idle room may save up and hand out at once.
    pub burst: u32,
    /// Total admissions allowed; `None` for no limit.
    pub quota: Option<u64>,
    /// While paused the frontier stands still; tickets are still handed out.
    pub paused: bool,
    /// How long a released slot stays claimable, in seconds.
    pub claim_seconds: u64,
    /// How long a pass lasts after the visitor's last request, in seconds.
    #[serde(default = "default_pass_seconds")]
    pub pass_seconds: u64,
    /// The room's schedule, in order and never overlapping; empty for a
    /// room that is always open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
    /// True once an operator set `admit_per_minute` live: it then wins over
    /// the phases' own rates.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub live_rate: bool,
    /// The room's secret for its draws (see [`crate::draw`]): made once,
    /// the first time a store sees the room, and kept; an instance's
    /// config brings a candidate that is used only while none is kept.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub draw_secret: String,
}

/// One window of a room's schedule: inside it the room admits up to the
/// phase's own quota at the phase's own rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// When it opens, in microseconds since the Unix epoch.
    pub start: Micros,
    /// When it closes; after `start`.
    pub end: Micros,
    /// Admissions this phase allows.
    pub quota: u64,
    /// Admissions per minute; 0 spreads what is left of the quota evenly
    /// over what is left of the phase.
    pub admit_per_minute: u32,
    /// How long before `start` visitors may enter the phase's draw; 0 for
    /// no draw.
    #[serde(default)]
    pub prequeue: Micros,
}

impl Phase {
    pub fn spread(&self) -> bool {
        self.admit_per_minute == 0
    }

    /// True while visitors arriving at `now` enter this phase's draw.
    pub fn drawing(&self, now: Micros) -> bool {
        self.prequeue > 0 && self.start.saturating_sub(self.prequeue) <= now && now < self.start
    }

    /// The schedule as the Redis script keeps it:
    /// `start:end:quota:rate:prequeue` per phase, joined by `;`.
    pub fn encode_all(phases: &[Phase]) -> String {
        let mut text = String::new();
        for (i, p) in phases.iter().enumerate() {
            if i > 0 {
                text.push(';');
            }
            text.push_str(&format!(
                "{}:{}:{}:{}:{}",
                p.start, p.end, p.quota, p.admit_per_minute, p.prequeue
            ));
        }
        text
    }

    /// Reads [`Phase::encode_all`]'s form; `None` if any part is not one.
    pub fn decode_all(text: &str) -> Option<Vec<Phase>> {
        if text.is_empty() {
            return Some(Vec::new());
        }
        text.split(';')
            .map(|part| {
                let mut numbers = part.split(':');
                let mut next = || numbers.next()?.parse::<u64>().ok();
                let phase = Phase {
                    start: next()?,
                    end: next()?,
                    quota: next()?,
                    admit_per_minute: u32::try_from(next()?).ok()?,
                    prequeue: next()?,
                };
                numbers.next().is_none().then_some(phase)
            })
            .collect()
    }
}

fn default_pass_seconds() -> u64 {
    20 * 60
}

/// Which settings an operator changed live. Those keep their live value
/// when an instance starts with a config that says otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    pub admit_per_minute: bool,
    pub quota: bool,
    pub paused: bool,
    pub pass_seconds: bool,
}

/// A live change to a room's settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsChange {
    pub admit_per_minute: Option<u32>,
    /// `Some(None)` removes the quota.
    pub quota: Option<Option<u64>>,
    pub paused: Option<bool>,
    pub pass_seconds: Option<u64>,
}

impl RoomSettings {
    /// The config's settings, except those an operator changed live, which
    /// keep their value from `live`.
    pub fn merged(
        config: &RoomSettings,
        live: &RoomSettings,
        overrides: Overrides,
    ) -> RoomSettings {
        RoomSettings {
            admit_per_minute: if overrides.admit_per_minute {
                live.admit_per_minute
            } else {
                config.admit_per_minute
            },
            quota: if overrides.quota {
                live.quota
            } else {
                config.quota
            },
            paused: if overrides.paused {
                live.paused
            } else {
                config.paused
            },
            pass_seconds: if overrides.pass_seconds {
                live.pass_seconds
            } else {
                config.pass_seconds
            },
            live_rate: overrides.admit_per_minute,
            draw_secret: if live.draw_secret.is_empty() {
                config.draw_secret.clone()
            } else {
                live.draw_secret.clone()
            },
            ..config.clone()
        }
    }

    /// Applies a live change and notes which settings it overrode.
    pub fn change(&mut self, change: &SettingsChange, overrides: &mut Overrides) {
        if let Some(rate) = change.admit_per_minute {
            self.admit_per_minute = rate;
            self.live_rate = true;
            overrides.admit_per_minute = true;
        }
        if let Some(quota) = change.quota {
            self.quota = quota;
            overrides.quota = true;
        }
        if let Some(paused) = change.paused {
            self.paused = paused;
            overrides.paused = true;
        }
        if let Some(pass) = change.pass_seconds {
            self.pass_seconds = pass;
            overrides.pass_seconds = true;
        }
    }

    /// Microseconds between two releases at `admit_per_minute`, rounded up
    /// so the room is never faster than the configured rate.
    pub fn interval(&self) -> Micros {
        per_minute(self.admit_per_minute)
    }

    /// The phase open at `now`, if the room has a schedule and one is.
    pub fn phase_at(&self, now: Micros) -> Option<&Phase> {
        self.phases.iter().find(|p| p.start <= now && now < p.end)
    }

    /// The seed of the draw of the phase opening at `phase`.
    pub fn draw_seed(&self, phase: Micros) -> String {
        crate::draw::seed(&self.draw_secret, phase)
    }

    /// The phase that opens in Unix second `second` (as tokens name it)
    /// and has not closed at `now`.
    pub fn phase_opening(&self, second: u64, now: Micros) -> Option<&Phase> {
        self.phases
            .iter()
            .find(|p| p.start / MICROS_PER_SECOND == second && now < p.end)
    }

    /// The first phase opening after `now`.
    pub fn next_phase(&self, now: Micros) -> Option<&Phase> {
        self.phases.iter().find(|p| p.start > now)
    }

    /// True when the room has a schedule and no phase of it is open.
    pub fn closed_at(&self, now: Micros) -> bool {
        !self.phases.is_empty() && self.phase_at(now).is_none()
    }

    /// Microseconds between two releases at `now`, when the frontier may
    /// still release `left` slots: the open phase's rate (an operator's
    /// live rate wins), or for a spread phase its remaining time shared
    /// evenly among them.
    pub fn interval_at(&self, now: Micros, left: u64) -> Micros {
        match self.phase_at(now) {
            Some(phase) if !self.live_rate && phase.spread() => {
                (phase.end.saturating_sub(now) / left.max(1)).max(1)
            }
            Some(phase) if !self.live_rate => per_minute(phase.admit_per_minute),
            _ => self.interval(),
        }
    }

    /// Width of one expiry checkpoint: the claim window is tracked in about
    /// 32 steps, never finer than a second. A slot may stay claimable up to
    /// one step longer than `claim_seconds`, never shorter.
    fn checkpoint_width(&self) -> Micros {
        (self.claim_seconds * MICROS_PER_SECOND / 32).max(MICROS_PER_SECOND)
    }
}

/// The answer to a ticket-for-pass exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The ticket is at or below the frontier and a pass may be issued.
    /// `fresh` is false when this ticket was already exchanged before (a
    /// second tab, a retried request): it is not counted again.
    Admitted { fresh: bool },
    /// The frontier has not reached the ticket yet.
    NotYet,
    /// The ticket's slot was released and not claimed in time.
    Lapsed,
    /// The quota is used up.
    SoldOut,
    /// The ticket belongs to an earlier epoch of the room.
    Stale,
    /// The ticket was exchanged more than [`EXCHANGE_GRACE`] ago: a pass
    /// has been given for it, and it buys nothing more.
    Spent,
}

/// The answer to an entry in a draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// In the draw; it is made when the phase opens.
    Entered,
    /// Drawn: this is the entry's ticket number.
    Drawn(u64),
    /// Not in this draw: its pre-queue has not opened or has closed, the
    /// entry came too late or is of an earlier epoch. The visitor joins
    /// the line as any newcomer.
    Missed,
}

/// How long after a ticket's exchange it still gives the same pass again
/// (a retried request whose answer was lost, a second tab opened at the
/// same moment). Later it buys nothing: a ticket is exchanged once.
pub const EXCHANGE_GRACE: Micros = 30 * MICROS_PER_SECOND;

/// One checkpoint of the frontier: every number up to `frontier` was
/// released at or before `last`. `opened` is when the checkpoint was begun;
/// a new one starts once `opened` is a checkpoint width old.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub opened: Micros,
    pub last: Micros,
    pub frontier: u64,
}

/// Which released, unexpired numbers (between `floor` and `frontier`) have
/// been exchanged: one bit a number, so that an exchange is idempotent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedSet {
    /// Number held by bit 0 of `words[0]`; always `floor + 1` rounded down
    /// to a multiple of 64.
    start: u64,
    words: VecDeque<u64>,
}

impl ClaimedSet {
    /// An empty set for numbers above `number`.
    pub fn above(number: u64) -> ClaimedSet {
        ClaimedSet {
            start: (number + 1) / 64 * 64,
            words: VecDeque::new(),
        }
    }

    fn locate(&self, number: u64) -> Option<(usize, u32)> {
        let offset = number.checked_sub(self.start)?;
        Some(((offset / 64) as usize, (offset % 64) as u32))
    }

    pub fn contains(&self, number: u64) -> bool {
        match self.locate(number) {
            Some((word, bit)) => self.words.get(word).is_some_and(|w| w & (1 << bit) != 0),
            None => false,
        }
    }

    /// Marks `number`; numbers below `start` are never asked for, since the
    /// caller checks them against the floor first.
    fn insert(&mut self, number: u64) {
        if let Some((word, bit)) = self.locate(number) {
            if self.words.len() <= word {
                self.words.resize(word + 1, 0);
            }
            self.words[word] |= 1 << bit;
        }
    }

    /// Counts the marked numbers in `(from, to]` and forgets every number at
    /// or below `to`.
    fn drain_through(&mut self, from: u64, to: u64) -> u64 {
        let mut count = 0;
        for number in from.saturating_add(1)..=to {
            if let Some((word, bit)) = self.locate(number) {
                if let Some(w) = self.words.get_mut(word) {
                    if *w & (1 << bit) != 0 {
                        count += 1;
                        *w &= !(1 << bit);
                    }
                }
            }
        }
        let new_start = (to + 1) / 64 * 64;
        while self.start < new_start {
            self.words.pop_front();
            self.start += 64;
        }
        count
    }

    /// How many numbers are marked.
    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }
}

/// The counters of one room. A handful of numbers plus the claim window:
/// never a list of visitors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Generation of the room; a reset bumps it and old cookies stop counting.
    pub epoch: u64,
    /// Last ticket number handed out.
    pub tail: u64,
    /// Highest ticket number allowed in so far.
    pub frontier: u64,
    /// Passes issued (fresh exchanges).
    pub admitted: u64,
    /// Released slots that expired unclaimed; they give their quota back.
    pub wasted: u64,
    /// Tickets at or below the floor can no longer be exchanged.
    pub floor: u64,
    /// Scheduled release time of the last released slot.
    pub tat: Micros,
    /// True while the release schedule is running: after the last advance
    /// people were still waiting and the quota had room. The schedule then
    /// continues from `tat` exactly, however late the next advance comes
    /// (within [`CATCH_UP`]); an idle room instead saves up at most `burst`.
    #[serde(default)]
    pub running: bool,
    pub checkpoints: VecDeque<Checkpoint>,
    pub claimed: ClaimedSet,
    /// (time, ticket) of the exchanges of the last [`EXCHANGE_GRACE`],
    /// oldest first: a claimed ticket found here gets its pass again, one
    /// not found is spent. Bounded by what the rate admits in the grace.
    #[serde(default)]
    pub exchanged: VecDeque<(Micros, u64)>,
    /// Start of the phase whose quota is counting; 0 before the first.
    #[serde(default)]
    pub phase: Micros,
    /// Slots used (released, less those wasted) before that phase opened:
    /// its quota counts from here.
    #[serde(default)]
    pub phase_base: u64,
    /// The frontier and the tail when that phase opened: the numbers
    /// between them were still waiting, and may come back to it once (see
    /// [`Counters::come_back`]).
    #[serde(default)]
    pub phase_from: u64,
    #[serde(default)]
    pub phase_to: u64,
    /// Which of those numbers have been let in during the phase.
    #[serde(default)]
    pub returned: ClaimedSet,
    /// The entries of the coming draw, for the phase opening at
    /// `draw_phase` (0: none yet).
    #[serde(default)]
    pub draw_phase: Micros,
    #[serde(default)]
    pub entries: BTreeSet<u64>,
    /// The last draw: each entry's ticket number, for the phase that
    /// opened at `drawn_phase`.
    #[serde(default)]
    pub drawn_phase: Micros,
    #[serde(default)]
    pub drawn: BTreeMap<u64, u64>,
    /// Places this room gave to another segment, and received from others,
    /// in the phase counting now: they move its limit.
    #[serde(default)]
    pub given: u64,
    #[serde(default)]
    pub received: u64,
    /// The time of the last move out and how many it gave, so asking again
    /// gives the same answer.
    #[serde(default)]
    pub gave_at: Micros,
    #[serde(default)]
    pub gave: u64,
    /// The moves in taken so far, by `from@at`: each is taken once.
    #[serde(default)]
    pub moves_in: BTreeMap<String, u64>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            epoch: 1,
            tail: 0,
            frontier: 0,
            admitted: 0,
            wasted: 0,
            floor: 0,
            tat: 0,
            running: false,
            checkpoints: VecDeque::new(),
            claimed: ClaimedSet::default(),
            exchanged: VecDeque::new(),
            phase: 0,
            phase_base: 0,
            phase_from: 0,
            phase_to: 0,
            returned: ClaimedSet::default(),
            draw_phase: 0,
            entries: BTreeSet::new(),
            drawn_phase: 0,
            drawn: BTreeMap::new(),
            given: 0,
            received: 0,
            gave_at: 0,
            gave: 0,
            moves_in: BTreeMap::new(),
        }
    }
}

impl Counters {
    /// People holding a ticket beyond the frontier.
    pub fn waiting(&self) -> u64 {
        self.tail.saturating_sub(self.frontier)
    }

    /// Released slots still claimable and not yet claimed.
    pub fn outstanding(&self) -> u64 {
        self.frontier
            .saturating_sub(self.floor)
            .saturating_sub(self.claimed.len())
    }

    /// How many more slots the quota counting now lets the frontier
    /// release.
    pub fn releasable(&self, settings: &RoomSettings) -> u64 {
        let limit = limit(settings, self.phase, self.phase_base, self.moved());
        releasable(limit, self.wasted, self.frontier)
    }

    /// True when every admission the quota counting now allows has been
    /// made.
    pub fn sold_out(&self, settings: &RoomSettings) -> bool {
        limit(settings, self.phase, self.phase_base, self.moved())
            .is_some_and(|limit| self.admitted >= limit)
    }

    /// Places given and received in the phase counting now.
    fn moved(&self) -> (u64, u64) {
        (self.given, self.received)
    }

    /// Gives this room's unused places at `at` to another segment: what
    /// its limit still allows beyond those let in and the turns called and
    /// not yet taken. Its line then stops. Asked again for the same `at`,
    /// it gives nothing more and answers the same; before `at`, nothing.
    pub fn give(&mut self, settings: &RoomSettings, at: Micros, now: Micros) -> u64 {
        self.advance(settings, now);
        if now < at {
            return 0;
        }
        if self.gave_at == at {
            return self.gave;
        }
        let unused = limit(settings, self.phase, self.phase_base, self.moved())
            .map_or(0, |limit| {
                limit.saturating_sub(self.admitted.saturating_add(self.outstanding()))
            });
        self.given += unused;
        self.gave = unused;
        self.gave_at = at;
        unused
    }

    /// Takes `amount` places given by segment `from` at `at`, once.
    pub fn receive(
        &mut self,
        settings: &RoomSettings,
        from: &str,
        at: Micros,
        amount: u64,
        now: Micros,
    ) {
        self.advance(settings, now);
        let key = format!("{from}@{at}");
        if let std::collections::btree_map::Entry::Vacant(slot) = self.moves_in.entry(key) {
            slot.insert(amount);
            self.received += amount;
            self.advance(settings, now);
        }
    }

    /// Moves time forward to `now`: expires unclaimed slots whose window has
    /// passed, enters the phase that opened, then releases what the rate,
    /// the line and the quota allow. Returns true when any counter changed.
    pub fn advance(&mut self, settings: &RoomSettings, now: Micros) -> bool {
        let expired = self.expire(settings, now);
        let (phase, phase_base) = entered(
            settings,
            (self.phase, self.phase_base),
            self.frontier,
            self.wasted,
            now,
        );
        let expired = expired || phase != self.phase;
        if phase != self.phase {
            self.given = 0;
            self.received = 0;
            self.phase_from = self.frontier;
            self.phase_to = self.tail;
            self.returned = ClaimedSet::above(self.frontier);
            if self.draw_phase == phase {
                self.draw(settings, phase);
            }
        }
        self.phase = phase;
        self.phase_base = phase_base;
        if settings.paused || settings.closed_at(now) {
            let changed = self.running;
            self.running = false;
            return expired || changed;
        }
        let left = self.releasable(settings);
        let cap = self.waiting().min(left);
        if cap == 0 {
            let changed = self.running;
            self.running = false;
            return expired || changed;
        }
        let interval = settings.interval_at(now, left);
        let base = schedule_base(self.tat, self.running, settings.burst, interval, now);
        let due = now.saturating_sub(base) / interval;
        let released = due.min(cap);
        let running = released < cap;
        let changed = expired || released > 0 || running != self.running || base != self.tat;
        self.running = running;
        if released == 0 {
            // Pin the schedule where it resumes, so a running line keeps
            // exact time and an idle one has saved up at most `burst`.
            self.tat = base;
            return changed;
        }
        self.frontier += released;
        self.tat = base + released * interval;
        self.record_checkpoint(settings, now);
        true
    }

    /// A copy of what an instance needs to answer visitors on its own.
    pub fn view(&self, settings: &RoomSettings, at: Micros) -> RoomView {
        RoomView {
            settings: settings.clone(),
            epoch: self.epoch,
            tail: self.tail,
            frontier: self.frontier,
            floor: self.floor,
            admitted: self.admitted,
            wasted: self.wasted,
            outstanding: self.outstanding(),
            tat: self.tat,
            running: self.running,
            phase: self.phase,
            phase_base: self.phase_base,
            given: self.given,
            received: self.received,
            at,
        }
    }

    /// Hands out the next ticket. If nobody is ahead and the rate and quota
    /// allow, the frontier covers it at once and it is exchanged in the same
    /// step. Returns the ticket number and whether it was admitted.
    pub fn arrive(&mut self, settings: &RoomSettings, now: Micros) -> (u64, bool) {
        self.advance(settings, now);
        self.tail += 1;
        let ticket = self.tail;
        self.advance(settings, now);
        let admitted = ticket <= self.frontier
            && matches!(
                self.claim(settings, self.epoch, ticket, now),
                Claim::Admitted { .. }
            );
        (ticket, admitted)
    }

    /// Exchanges `ticket` for a pass, atomically with the quota check. The
    /// same ticket is never counted twice.
    pub fn claim(
        &mut self,
        settings: &RoomSettings,
        epoch: u64,
        ticket: u64,
        now: Micros,
    ) -> Claim {
        if epoch != self.epoch {
            return Claim::Stale;
        }
        self.advance(settings, now);
        if ticket == 0 || ticket > self.frontier {
            return Claim::NotYet;
        }
        if ticket <= self.floor {
            return Claim::Lapsed;
        }
        if let Some(again) = self.let_in_before(self.claimed.contains(ticket), ticket, now) {
            return again;
        }
        if self.sold_out(settings) {
            return Claim::SoldOut;
        }
        self.claimed.insert(ticket);
        self.admit(ticket, now);
        Claim::Admitted { fresh: true }
    }

    /// For a ticket already let in (`marked`): the same pass again within
    /// [`EXCHANGE_GRACE`] of its exchange, else spent. `None` for one not
    /// let in yet.
    fn let_in_before(&mut self, marked: bool, ticket: u64, now: Micros) -> Option<Claim> {
        let since = now.saturating_sub(EXCHANGE_GRACE);
        while self.exchanged.front().is_some_and(|(at, _)| *at < since) {
            self.exchanged.pop_front();
        }
        if !marked {
            return None;
        }
        if self.exchanged.iter().any(|(_, number)| *number == ticket) {
            return Some(Claim::Admitted { fresh: false });
        }
        Some(Claim::Spent)
    }

    /// Counts `ticket`'s exchange, and notes it when it is one of the
    /// numbers that came back to this phase.
    fn admit(&mut self, ticket: u64, now: Micros) {
        if self.came_back(ticket) {
            self.returned.insert(ticket);
        }
        self.admitted += 1;
        self.exchanged.push_back((now, ticket));
    }

    /// True for the numbers that were still waiting when the phase now
    /// counting opened.
    pub fn came_back(&self, ticket: u64) -> bool {
        self.phase != 0 && self.phase_from < ticket && ticket <= self.phase_to
    }

    /// Exchanges a ticket handed out before the phase opened at `phase`
    /// (a return ticket). Whoever was still waiting when it opened keeps
    /// their place ahead of newcomers: while the frontier has not reached
    /// them they wait, once it has they are let in as any ticket, and if
    /// their turn came and went while they were away they are let in on
    /// their return all the same, for as long as the quota lasts. Each
    /// such number is let in once. Any other ticket is simply claimed.
    pub fn come_back(
        &mut self,
        settings: &RoomSettings,
        epoch: u64,
        ticket: u64,
        phase: Micros,
        now: Micros,
    ) -> Claim {
        if epoch != self.epoch {
            return Claim::Stale;
        }
        self.advance(settings, now);
        if self.phase != phase || settings.phase_at(now).map(|p| p.start) != Some(phase) {
            // Not the phase the visitor was told of (it has just closed,
            // or the schedule changed): their place is kept as it is.
            return if ticket > self.floor {
                self.claim(settings, epoch, ticket, now)
            } else {
                Claim::NotYet
            };
        }
        if !self.came_back(ticket) || ticket > self.floor {
            return self.claim(settings, epoch, ticket, now);
        }
        if let Some(again) = self.let_in_before(self.returned.contains(ticket), ticket, now) {
            return again;
        }
        if self.sold_out(settings) {
            return Claim::SoldOut;
        }
        // The slot lapsed while they were away and was counted as wasted,
        // giving its quota back: it is taken up again.
        self.wasted = self.wasted.saturating_sub(1);
        self.admit(ticket, now);
        Claim::Admitted { fresh: true }
    }

    /// Numbers the entries of the draw of the phase opening at `phase`, in
    /// the order [`crate::draw::order`] gives them from the phase's seed,
    /// right behind everyone already holding a number.
    fn draw(&mut self, settings: &RoomSettings, phase: Micros) {
        let entries: Vec<u64> = std::mem::take(&mut self.entries).into_iter().collect();
        self.drawn.clear();
        for id in crate::draw::order(&settings.draw_seed(phase), &entries) {
            self.tail += 1;
            self.drawn.insert(id, self.tail);
        }
        self.drawn_phase = phase;
        self.draw_phase = 0;
    }

    /// A visitor's entry `id` in the draw of the phase opening at `phase`:
    /// taken while its pre-queue is open, answered with the ticket number
    /// once the draw is made.
    pub fn enter_draw(
        &mut self,
        settings: &RoomSettings,
        epoch: u64,
        id: u64,
        phase: Micros,
        now: Micros,
    ) -> Entry {
        if epoch != self.epoch || id == 0 || id > crate::draw::MAX_ENTRY {
            return Entry::Missed;
        }
        self.advance(settings, now);
        if self.drawn_phase == phase {
            if let Some(ticket) = self.drawn.get(&id) {
                return Entry::Drawn(*ticket);
            }
        }
        let open = settings
            .phases
            .iter()
            .find(|p| p.start == phase)
            .is_some_and(|p| p.drawing(now));
        if !open {
            return Entry::Missed;
        }
        if self.draw_phase != phase {
            self.entries.clear();
            self.draw_phase = phase;
        }
        self.entries.insert(id);
        Entry::Entered
    }

    /// Starts a new epoch: everyone waiting or released but unclaimed
    /// loses their place (their cookies stop counting), and numbering goes
    /// on from the tail. Admissions so far still count against the quota.
    pub fn reset(&mut self, settings: &RoomSettings, now: Micros) {
        self.advance(settings, now);
        let dropped = self.waiting() + self.outstanding();
        self.epoch += 1;
        self.wasted += dropped;
        self.frontier = self.tail;
        self.floor = self.tail;
        self.tat = now;
        self.checkpoints.clear();
        self.exchanged.clear();
        self.claimed = ClaimedSet::above(self.tail);
        self.phase_from = self.tail;
        self.phase_to = self.tail;
        self.returned = ClaimedSet::above(self.tail);
        self.entries.clear();
        self.drawn.clear();
        self.draw_phase = 0;
        self.drawn_phase = 0;
    }

    fn record_checkpoint(&mut self, settings: &RoomSettings, now: Micros) {
        match self.checkpoints.back_mut() {
            Some(last) if now.saturating_sub(last.opened) < settings.checkpoint_width() => {
                last.last = now;
                last.frontier = self.frontier;
            }
            _ => self.checkpoints.push_back(Checkpoint {
                opened: now,
                last: now,
                frontier: self.frontier,
            }),
        }
    }

    /// Raises the floor past every slot released more than `claim_seconds`
    /// ago; those not claimed become wasted and give their quota back.
    fn expire(&mut self, settings: &RoomSettings, now: Micros) -> bool {
        let window = settings.claim_seconds * MICROS_PER_SECOND;
        let Some(cutoff) = now.checked_sub(window) else {
            return false;
        };
        let mut new_floor = self.floor;
        while let Some(front) = self.checkpoints.front() {
            if front.last > cutoff {
                break;
            }
            new_floor = new_floor.max(front.frontier);
            self.checkpoints.pop_front();
        }
        if new_floor == self.floor {
            return false;
        }
        let claimed = self.claimed.drain_through(self.floor, new_floor);
        self.wasted += (new_floor - self.floor) - claimed;
        self.floor = new_floor;
        true
    }
}

/// How far behind a running schedule may fall and still be caught up in
/// full; after a longer stall (the process was down) the line resumes at
/// the rate rather than releasing the whole gap at once.
pub const CATCH_UP: Micros = 5 * MICROS_PER_SECOND;

/// Where the release schedule may resume at `now`: right after the last
/// release, but an idle room saves up at most `burst` releases.
fn schedule_base(tat: Micros, running: bool, burst: u32, interval: Micros, now: Micros) -> Micros {
    let mut saved = u64::from(burst.max(1)).saturating_mul(interval);
    if running {
        saved = saved.saturating_add(CATCH_UP);
    }
    tat.max(now.saturating_sub(saved))
}

fn per_minute(rate: u32) -> Micros {
    (60 * MICROS_PER_SECOND).div_ceil(u64::from(rate.max(1)))
}

/// The most slots the frontier may have used (released, less those
/// wasted): the room's quota, and inside a phase that phase's base plus
/// its own quota.
fn limit(
    settings: &RoomSettings,
    phase: Micros,
    base: u64,
    (given, received): (u64, u64),
) -> Option<u64> {
    let in_phase = settings
        .phases
        .iter()
        .find(|p| phase != 0 && p.start == phase)
        .map(|p| base.saturating_add(p.quota));
    let limit = match (settings.quota, in_phase) {
        (Some(room), Some(phase)) => Some(room.min(phase)),
        (room, phase) => room.or(phase),
    };
    limit.map(|limit| limit.saturating_add(received).saturating_sub(given))
}

/// The phase counting at `now` and its base, from the one counting before:
/// a phase open at `now` that is not it is entered, with the slots used so
/// far as its base.
fn entered(
    settings: &RoomSettings,
    (phase, base): (Micros, u64),
    frontier: u64,
    wasted: u64,
    now: Micros,
) -> (Micros, u64) {
    match settings.phase_at(now) {
        Some(open) if open.start != phase => (open.start, frontier.saturating_sub(wasted)),
        _ => (phase, base),
    }
}

fn releasable(limit: Option<u64>, wasted: u64, frontier: u64) -> u64 {
    match limit {
        Some(limit) => limit.saturating_add(wasted).saturating_sub(frontier),
        None => u64::MAX,
    }
}

/// Whether a room admits at some moment, and if not, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The line moves.
    Open,
    /// An operator paused it; places are kept.
    Paused,
    /// The quota counting now is used up; `next` is when the next phase
    /// opens, if one does.
    SoldOut { next: Option<Micros> },
    /// Outside every phase of the schedule; `next` is when the next phase
    /// opens, if one does.
    Closed { next: Option<Micros> },
}

/// A room's counters as one instance last saw them: enough to answer a
/// waiting visitor without asking the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView {
    pub settings: RoomSettings,
    pub epoch: u64,
    pub tail: u64,
    pub frontier: u64,
    pub floor: u64,
    pub admitted: u64,
    pub wasted: u64,
    pub outstanding: u64,
    pub tat: Micros,
    pub running: bool,
    /// The phase counting and its base (see [`Counters::phase`]).
    pub phase: Micros,
    pub phase_base: u64,
    /// Places given to and received from other segments in that phase.
    pub given: u64,
    pub received: u64,
    /// When the store produced this view.
    pub at: Micros,
}

impl RoomView {
    pub fn waiting(&self) -> u64 {
        self.tail.saturating_sub(self.frontier)
    }

    /// The quota counting at `now`, as the store's next advance has it (a
    /// phase that opened since this view was made counts from here).
    pub fn limit(&self, now: Micros) -> Option<u64> {
        let (phase, base) = entered(
            &self.settings,
            (self.phase, self.phase_base),
            self.frontier,
            self.wasted,
            now,
        );
        limit(&self.settings, phase, base, self.moved_at(now))
    }

    /// Places given and received that count at `now`: a phase entered
    /// since this view was made starts with none moved.
    fn moved_at(&self, now: Micros) -> (u64, u64) {
        match self.settings.phase_at(now) {
            Some(open) if open.start != self.phase => (0, 0),
            _ => (self.given, self.received),
        }
    }

    /// True when the quota counting at `now` is used up.
    pub fn sold_out(&self, now: Micros) -> bool {
        self.limit(now).is_some_and(|limit| self.admitted >= limit)
    }

    /// Admissions left in the quota counting at `now`.
    pub fn quota_left(&self, now: Micros) -> Option<u64> {
        self.limit(now)
            .map(|limit| limit.saturating_sub(self.admitted))
    }

    /// How many more slots the quota counting at `now` lets the frontier
    /// release.
    pub fn releasable(&self, now: Micros) -> u64 {
        releasable(self.limit(now), self.wasted, self.frontier)
    }

    /// Places still open to people in the line at `now`: the slots the
    /// quota lets the frontier release beyond where it has reached, so
    /// turns called and not yet taken do not count as places left.
    /// `None` when no quota counts.
    pub fn places_left(&self, now: Micros) -> Option<u64> {
        self.limit(now)?;
        let due = self.projected_frontier(now).saturating_sub(self.frontier);
        Some(self.releasable(now).saturating_sub(due))
    }

    /// Whether the room admits at `now`.
    pub fn standing(&self, now: Micros) -> Standing {
        let next = self.settings.next_phase(now).map(|p| p.start);
        let (given, received) = self.moved_at(now);
        if self
            .settings
            .quota
            .is_some_and(|quota| self.admitted >= (quota + received).saturating_sub(given))
        {
            return Standing::SoldOut { next: None };
        }
        if self.settings.closed_at(now) {
            return Standing::Closed { next };
        }
        if self.sold_out(now) {
            return Standing::SoldOut { next };
        }
        if self.settings.paused {
            return Standing::Paused;
        }
        Standing::Open
    }

    /// The release interval at `now` and where the schedule resumes from,
    /// or `None` while nothing is released (paused, closed, nothing left).
    fn schedule(&self, now: Micros) -> Option<(u64, Micros, Micros)> {
        if self.settings.paused || self.settings.closed_at(now) {
            return None;
        }
        let left = self.releasable(now);
        let interval = self.settings.interval_at(now, left);
        let base = schedule_base(self.tat, self.running, self.settings.burst, interval, now);
        Some((left, interval, base))
    }

    /// The frontier as the store would advance it at `now` (expiry aside).
    /// Lets an instance tell from its cache whether a ticket's turn has come.
    pub fn projected_frontier(&self, now: Micros) -> u64 {
        let Some((left, interval, base)) = self.schedule(now) else {
            return self.frontier;
        };
        let due = now.saturating_sub(base) / interval;
        self.frontier + due.min(self.waiting().min(left))
    }

    /// When the frontier reaches `ticket` if the room keeps its current
    /// rate; `None` while paused or closed, when the quota runs out first,
    /// or when the open phase closes first.
    pub fn release_time(&self, ticket: u64, now: Micros) -> Option<Micros> {
        let (left, interval, base) = self.schedule(now)?;
        let steps = ticket.saturating_sub(self.frontier);
        if steps > left {
            return None;
        }
        if steps == 0 {
            return Some(now);
        }
        // The j-th release from here is due j intervals after the base.
        let at = base.saturating_add(steps.saturating_mul(interval)).max(now);
        match self.settings.phase_at(now) {
            Some(phase) if at > phase.end => None,
            _ => Some(at),
        }
    }
}
