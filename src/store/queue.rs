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

use std::collections::VecDeque;

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
            ..config.clone()
        }
    }

    /// Applies a live change and notes which settings it overrode.
    pub fn change(&mut self, change: &SettingsChange, overrides: &mut Overrides) {
        if let Some(rate) = change.admit_per_minute {
            self.admit_per_minute = rate;
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

    /// Microseconds between two releases, rounded up so the room is never
    /// faster than the configured rate.
    pub fn interval(&self) -> Micros {
        let rate = u64::from(self.admit_per_minute.max(1));
        (60 * MICROS_PER_SECOND).div_ceil(rate)
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

    /// How many more slots the quota lets the frontier release.
    pub fn releasable(&self, settings: &RoomSettings) -> u64 {
        releasable(settings, self.wasted, self.frontier)
    }

    /// True when every admission the quota allows has been made.
    pub fn sold_out(&self, settings: &RoomSettings) -> bool {
        settings.quota.is_some_and(|quota| self.admitted >= quota)
    }

    /// Moves time forward to `now`: expires unclaimed slots whose window has
    /// passed, then releases what the rate, the line and the quota allow.
    /// Returns true when any counter changed.
    pub fn advance(&mut self, settings: &RoomSettings, now: Micros) -> bool {
        let expired = self.expire(settings, now);
        if settings.paused {
            let changed = self.running;
            self.running = false;
            return expired || changed;
        }
        let cap = self.waiting().min(self.releasable(settings));
        if cap == 0 {
            let changed = self.running;
            self.running = false;
            return expired || changed;
        }
        let interval = settings.interval();
        let base = self.schedule_base(settings, now);
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

    /// Where the release schedule may resume at `now`: right after the last
    /// release, but never more than `burst` intervals in the past.
    fn schedule_base(&self, settings: &RoomSettings, now: Micros) -> Micros {
        schedule_base(self.tat, self.running, settings, now)
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
        let since = now.saturating_sub(EXCHANGE_GRACE);
        while self.exchanged.front().is_some_and(|(at, _)| *at < since) {
            self.exchanged.pop_front();
        }
        if self.claimed.contains(ticket) {
            if self.exchanged.iter().any(|(_, number)| *number == ticket) {
                return Claim::Admitted { fresh: false };
            }
            return Claim::Spent;
        }
        if self.sold_out(settings) {
            return Claim::SoldOut;
        }
        self.claimed.insert(ticket);
        self.admitted += 1;
        self.exchanged.push_back((now, ticket));
        Claim::Admitted { fresh: true }
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
        self.claimed = ClaimedSet {
            start: (self.tail + 1) / 64 * 64,
            words: VecDeque::new(),
        };
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
fn schedule_base(tat: Micros, running: bool, settings: &RoomSettings, now: Micros) -> Micros {
    let mut saved = u64::from(settings.burst.max(1)) * settings.interval();
    if running {
        saved += CATCH_UP;
    }
    tat.max(now.saturating_sub(saved))
}

fn releasable(settings: &RoomSettings, wasted: u64, frontier: u64) -> u64 {
    match settings.quota {
        Some(quota) => quota.saturating_add(wasted).saturating_sub(frontier),
        None => u64::MAX,
    }
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
    /// When the store produced this view.
    pub at: Micros,
}

impl RoomView {
    pub fn waiting(&self) -> u64 {
        self.tail.saturating_sub(self.frontier)
    }

    pub fn sold_out(&self) -> bool {
        self.settings
            .quota
            .is_some_and(|quota| self.admitted >= quota)
    }

    /// Admissions left in the quota.
    pub fn quota_left(&self) -> Option<u64> {
        self.settings
            .quota
            .map(|quota| quota.saturating_sub(self.admitted))
    }

    /// How many more slots the quota lets the frontier release.
    pub fn releasable(&self) -> u64 {
        releasable(&self.settings, self.wasted, self.frontier)
    }

    /// The frontier as the store would advance it at `now` (expiry aside).
    /// Lets an instance tell from its cache whether a ticket's turn has come.
    pub fn projected_frontier(&self, now: Micros) -> u64 {
        if self.settings.paused {
            return self.frontier;
        }
        let cap = self.waiting().min(self.releasable());
        let base = schedule_base(self.tat, self.running, &self.settings, now);
        let due = now.saturating_sub(base) / self.settings.interval();
        self.frontier + due.min(cap)
    }

    /// When the frontier reaches `ticket` if the room keeps its current
    /// rate; `None` while paused or when the quota runs out first.
    pub fn release_time(&self, ticket: u64, now: Micros) -> Option<Micros> {
        if self.settings.paused {
            return None;
        }
        let steps = ticket.saturating_sub(self.frontier);
        if steps > self.releasable() {
            return None;
        }
        if steps == 0 {
            return Some(now);
        }
        // The j-th release from here is due j intervals after the base.
        let base = schedule_base(self.tat, self.running, &self.settings, now);
        Some(
            base.saturating_add(steps.saturating_mul(self.settings.interval()))
                .max(now),
        )
    }
}
