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

// === the JSON answer ===

impl Status {
    /// The status as JSON, byte for byte what its `Serialize` gives, written
    /// directly: a waiting visitor's poll is answered with this, and the
    /// generic serialiser spent more on quoting the field names than the
    /// rest of the poll's own work.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"room\":");
        string(&mut out, &self.room);
        out.extend_from_slice(b",\"state\":\"");
        out.extend_from_slice(self.state.as_str().as_bytes());
        out.extend_from_slice(b"\",\"ticket\":");
        number(&mut out, self.ticket);
        out.extend_from_slice(b",\"position\":");
        number(&mut out, self.position);
        out.extend_from_slice(b",\"ahead\":");
        number(&mut out, self.ahead);
        out.extend_from_slice(b",\"eta_seconds\":");
        number(&mut out, self.eta_seconds);
        out.extend_from_slice(b",\"eta_range_seconds\":");
        match self.eta_range_seconds {
            Some([earliest, latest]) => {
                out.push(b'[');
                number(&mut out, Some(earliest));
                out.push(b',');
                number(&mut out, Some(latest));
                out.push(b']');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"quota_left\":");
        number(&mut out, self.quota_left);
        out.extend_from_slice(b",\"beyond_quota\":");
        boolean(&mut out, self.beyond_quota);
        out.extend_from_slice(b",\"opens_at\":");
        number(&mut out, self.opens_at);
        out.extend_from_slice(b",\"kept_for\":");
        number(&mut out, self.kept_for);
        out.extend_from_slice(b",\"return_ticket\":");
        match &self.return_ticket {
            Some(ticket) => string(&mut out, ticket),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"draw\":");
        match &self.draw {
            Some(draw) => {
                out.extend_from_slice(b"{\"entry\":");
                number(&mut out, Some(draw.entry));
                out.extend_from_slice(b",\"opens_at\":");
                number(&mut out, Some(draw.opens_at));
                out.extend_from_slice(b",\"commitment\":");
                string(&mut out, &draw.commitment);
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"requeued\":");
        boolean(&mut out, self.requeued);
        out.extend_from_slice(b",\"notice\":");
        out.extend_from_slice(match self.notice {
            Some(Notice::PassShared) => b"\"pass_shared\"",
            Some(Notice::TicketSpent) => b"\"ticket_spent\"",
            None => b"null",
        });
        out.extend_from_slice(b",\"refresh_seconds\":");
        number(&mut out, Some(u64::from(self.refresh_seconds)));
        out.extend_from_slice(b",\"poll_after_millis\":");
        number(&mut out, self.poll_after_millis);
        out.extend_from_slice(b",\"updated_at\":");
        number(&mut out, Some(self.updated_at));
        out.push(b'}');
        out
    }
}

fn number(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

fn boolean(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

/// A JSON string. Ids, tokens and hex need no escaping; anything else is
/// left to serde_json so the two cannot differ.
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = Status> {
        let state = prop_oneof![
            Just(State::Admitted),
            Just(State::Waiting),
            Just(State::SoldOut),
            Just(State::Paused),
            Just(State::Closed),
        ];
        let notice = prop_oneof![
            Just(None),
            Just(Some(Notice::PassShared)),
            Just(Some(Notice::TicketSpent)),
        ];
        let draw = proptest::option::of((any::<u64>(), any::<u64>(), ".*").prop_map(
            |(entry, opens_at, commitment)| DrawEntry {
                entry,
                opens_at,
                commitment,
            },
        ));
        let numbers = proptest::collection::vec(proptest::option::of(any::<u64>()), 8);
        (
            ".*",
            state,
            numbers,
            proptest::option::of(any::<[u64; 2]>()),
            (any::<bool>(), any::<bool>(), any::<u32>(), any::<u64>()),
            proptest::option::of("[ -~]{0,40}|.*"),
            draw,
            notice,
        )
            .prop_map(
                |(
                    room,
                    state,
                    n,
                    eta_range_seconds,
                    (beyond, requeued, refresh, at),
                    ret,
                    draw,
                    notice,
                )| {
                    Status {
                        room,
                        state,
                        ticket: n[0],
                        position: n[1],
                        ahead: n[2],
                        eta_seconds: n[3],
                        eta_range_seconds,
                        quota_left: n[4],
                        beyond_quota: beyond,
                        opens_at: n[5],
                        kept_for: n[6],
                        return_ticket: ret,
                        draw,
                        requeued,
                        notice,
                        refresh_seconds: refresh,
                        poll_after_millis: n[7],
                        updated_at: at,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn the_written_json_is_what_serde_writes(status in status()) {
            let expected = serde_json::to_vec(&status).unwrap();
            prop_assert_eq!(
                String::from_utf8(status.to_json()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
