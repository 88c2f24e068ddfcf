//! What a visitor is told about their own place: the value behind the queue
//! page, the status endpoint and the JSON answer on guarded routes.

use serde::Serialize;

/// Where a visitor stands in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Holds a valid pass: requests go to the origin.
    Admitted,
    /// Holds a ticket beyond the frontier.
    Waiting,
    /// The room's quota is used up; no more passes will be issued.
    SoldOut,
    /// The operator paused admissions; places are kept.
    Paused,
    /// Outside the room's schedule: it admits nobody until its next phase
    /// opens. Places are kept.
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Admitted => "admitted",
            State::Waiting => "waiting",
            State::SoldOut => "sold_out",
            State::Paused => "paused",
            State::Closed => "closed",
        }
    }
}

/// Why a visitor's cookie was refused, shown beside their status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// Their pass was used from more networks than a pass may be: it is
    /// refused here, and they get a new place at the back of the line.
    PassShared,
    /// Their ticket was exchanged for a pass already; it buys no other.
    TicketSpent,
}

/// An entry in the draw at a phase's opening (see [`crate::draw`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrawEntry {
    /// The entry's id: its place in the draw follows from it and the seed.
    pub entry: u64,
    /// Unix seconds of the opening, when the draw is made.
    pub opens_at: u64,
    /// SHA-256 of the draw's seed, in hex, published before the draw.
    pub commitment: String,
}

/// A visitor's own status in one room, as served by `GET /_antre/status`.
///
/// Numbers that do not apply to the state are `None` (JSON `null`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// The room's id from the config.
    pub room: String,
    pub state: State,
    /// The visitor's ticket number (their place among all arrivals).
    pub ticket: Option<u64>,
    /// Place in line: ticket number minus frontier; 1 means "next".
    pub position: Option<u64>,
    /// People ahead in line: `position - 1`.
    pub ahead: Option<u64>,
    /// Seconds until the frontier reaches this ticket at the current rate.
    pub eta_seconds: Option<u64>,
    /// An honest range around `eta_seconds`: `[earliest, latest]`.
    pub eta_range_seconds: Option<[u64; 2]>,
    /// Places left for people in the line: admissions the quota counting
    /// now still allows, less the turns already called and not yet taken;
    /// `None` when the room has no quota.
    pub quota_left: Option<u64>,
    /// True when as many people are ahead as places are left, so this
    /// visitor gets in only if others give up their place.
    pub beyond_quota: bool,
    /// Unix time (seconds) of the room's next opening: for `closed`, when
    /// its next phase opens; for `sold_out`, when a later phase brings new
    /// places. `None` when no opening is scheduled.
    pub opens_at: Option<u64>,
    /// Unix time (seconds) of the phase the visitor's place is kept for:
    /// they hold a return ticket, need not queue again, and are let in
    /// ahead of newcomers when they come back once it opens.
    pub kept_for: Option<u64>,
    /// The return ticket itself, for a link that brings the kept place to
    /// another browser: `{prefix}/return?room=ID&ticket=...`. It works
    /// once, for this room and that phase only.
    pub return_ticket: Option<String>,
    /// The visitor's entry in the draw at the next opening, while they
    /// wait for it.
    pub draw: Option<DrawEntry>,
    /// True when the visitor's earlier ticket lapsed (their turn came and
    /// went unclaimed for `claim_minutes`) and they were given a new one.
    pub requeued: bool,
    /// Why the cookie the visitor came with was refused, if it was.
    pub notice: Option<Notice>,
    /// How long a client should wait before asking again.
    pub refresh_seconds: u32,
    /// Near the front of the line, the exact wait until the visitor's turn
    /// (plus a moment), so a script can ask right then; `None` otherwise.
    pub poll_after_millis: Option<u64>,
    /// Unix time (seconds) of the counters this status was computed from.
    pub updated_at: u64,
}
