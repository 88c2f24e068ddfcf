//! The public board, `GET {prefix}/board` and `{prefix}/board.json`: for
//! each room that opts in (`board = true`), whether it admits, the quota
//! left, the people waiting, and the phase open now and the next one. A
//! city links it from social media instead of announcing the remaining
//! quota by hand.
//!
//! It is read from each instance's cached view of the counters, never from
//! the store, so a crowd refreshing it costs the store nothing; the answer
//! may be cached by anyone for a few seconds. The HTML is one small
//! document with no script: a meta refresh keeps it current.

use std::fmt::Write as _;

use serde::Serialize;

use crate::clock::{Micros, MICROS_PER_SECOND};
use crate::engine::Room;
use crate::page::{self, Html, Lang};
use crate::store::{Phase, Standing};

/// How often the board asks to be fetched again, in seconds; also how long
/// a cache may keep it.
pub const REFRESH_SECONDS: u32 = 15;

/// One room as the public sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoardRoom {
    pub id: String,
    pub title: String,
    /// The campaign the room is a segment of, if any.
    pub campaign: Option<String>,
    /// `open`, `paused`, `sold_out` or `closed`.
    pub state: &'static str,
    /// Admissions the quota counting now still allows; `None` without a
    /// quota.
    pub quota_left: Option<u64>,
    /// Of those, the places still open to people who join the line now
    /// (turns already called and not yet taken are not).
    pub places_left: Option<u64>,
    /// People holding a number whose turn has not come.
    pub waiting: u64,
    /// People let in so far.
    pub admitted: u64,
    pub phase: Option<BoardPhase>,
    pub next_phase: Option<BoardPhase>,
    /// Unix seconds of the counters shown.
    pub updated_at: u64,
}

/// A phase of a room's schedule, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BoardPhase {
    pub opens: u64,
    pub closes: u64,
    pub quota: u64,
}

impl BoardPhase {
    fn of(phase: &Phase) -> BoardPhase {
        BoardPhase {
            opens: phase.start / MICROS_PER_SECOND,
            closes: phase.end / MICROS_PER_SECOND,
            quota: phase.quota,
        }
    }
}

/// The board's rooms at `now`: those with `board = true`, in config order.
pub fn rooms(rooms: &[Room], now: Micros) -> Vec<BoardRoom> {
    rooms
        .iter()
        .filter(|room| room.config.board)
        .map(|room| {
            let view = room.view();
            let settings = &view.settings;
            let state = match view.standing(now) {
                Standing::Open => "open",
                Standing::Paused => "paused",
                Standing::SoldOut { .. } => "sold_out",
                Standing::Closed { .. } => "closed",
            };
            BoardRoom {
                id: room.config.id.clone(),
                title: room.config.title.clone(),
                campaign: room.config.campaign.clone(),
                state,
                quota_left: view.quota_left(now),
                places_left: view.places_left(now),
                waiting: view.tail.saturating_sub(view.projected_frontier(now)),
                admitted: view.admitted,
                phase: settings.phase_at(now).map(BoardPhase::of),
                next_phase: settings.next_phase(now).map(BoardPhase::of),
                updated_at: view.at / MICROS_PER_SECOND,
            }
        })
        .collect()
}

/// The JSON board.
pub fn json(rooms: &[BoardRoom]) -> serde_json::Value {
    serde_json::json!({
        "rooms": rooms,
        "refresh_seconds": REFRESH_SECONDS,
    })
}

/// What the HTML board says, in one language.
struct Words {
    heading: &'static str,
    lead: &'static str,
    quota_left: &'static str,
    waiting: &'static str,
    admitted: &'static str,
    phase: &'static str,
    next_phase: &'static str,
    /// A phase: `{opens}`, `{closes}` and `{quota}`.
    phase_line: &'static str,
    no_quota: &'static str,
    none: &'static str,
    updated: &'static str,
    states: [(&'static str, &'static str); 4],
}

static ID: Words = Words {
    heading: "Papan antrean",
    lead: "Keadaan terkini setiap pendaftaran: sisa kuota, jumlah orang yang menunggu, \
           dan jadwal sesi. Halaman ini diperbarui dengan sendirinya.",
    quota_left: "Sisa kuota",
    waiting: "Orang menunggu",
    admitted: "Sudah masuk",
    phase: "Sesi ini",
    next_phase: "Sesi berikutnya",
    phase_line: "{opens} sampai {closes}, kuota {quota}",
    no_quota: "tanpa batas",
    none: "tidak ada",
    updated: "Diperbarui",
    states: [
        ("open", "Dibuka"),
        ("paused", "Dijeda sementara"),
        ("sold_out", "Kuota habis"),
        ("closed", "Tutup"),
    ],
};

static EN: Words = Words {
    heading: "Queue board",
    lead: "Where each registration stands now: the quota left, the people waiting, and \
           the sessions. This page updates itself.",
    quota_left: "Quota left",
    waiting: "People waiting",
    admitted: "Let in so far",
    phase: "This session",
    next_phase: "Next session",
    phase_line: "{opens} to {closes}, quota {quota}",
    no_quota: "no limit",
    none: "none",
    updated: "Updated",
    states: [
        ("open", "Open"),
        ("paused", "Paused for now"),
        ("sold_out", "All places taken"),
        ("closed", "Closed"),
    ],
};

/// The HTML board in `lang`, times in the zone `utc_offset_minutes` from UTC.
pub fn html(rooms: &[BoardRoom], lang: Lang, utc_offset_minutes: i32) -> String {
    let words = match lang {
        Lang::Id => &ID,
        Lang::En => &EN,
    };
    let count = |n: u64| page::group_digits(n, lang);
    let phase_line = |phase: Option<BoardPhase>| match phase {
        Some(p) => words
            .phase_line
            .replacen(
                "{opens}",
                &page::format_opening(p.opens, utc_offset_minutes, lang),
                1,
            )
            .replacen(
                "{closes}",
                &page::format_opening(p.closes, utc_offset_minutes, lang),
                1,
            )
            .replacen("{quota}", &count(p.quota), 1),
        None => words.none.to_owned(),
    };
    let mut out = String::with_capacity(2048 + rooms.len() * 512);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\n\
         <title>{heading}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <h1>{heading}</h1>\n<p>{lead}</p>\n",
        lang = lang.code(),
        heading = Html(words.heading),
        lead = Html(words.lead),
    );
    for room in rooms {
        let state = words
            .states
            .iter()
            .find(|(code, _)| *code == room.state)
            .map_or(room.state, |(_, text)| *text);
        let quota_left = room
            .quota_left
            .map_or_else(|| words.no_quota.to_owned(), count);
        let _ = write!(
            out,
            "<section id=\"{id}\" data-state=\"{code}\">\n<h2>{title}</h2>\n\
             <p class=\"state\">{state}</p>\n<dl>\n\
             <dt>{quota_label}</dt><dd data-board=\"quota_left\">{quota_left}</dd>\n\
             <dt>{waiting_label}</dt><dd data-board=\"waiting\">{waiting}</dd>\n\
             <dt>{admitted_label}</dt><dd data-board=\"admitted\">{admitted}</dd>\n\
             <dt>{phase_label}</dt><dd data-board=\"phase\">{phase}</dd>\n\
             <dt>{next_label}</dt><dd data-board=\"next_phase\">{next}</dd>\n\
             </dl>\n<p class=\"upd\">{updated_label} {updated}</p>\n</section>\n",
            id = Html(&room.id),
            code = room.state,
            title = Html(room.title.trim()),
            state = Html(state),
            quota_label = Html(words.quota_left),
            quota_left = Html(&quota_left),
            waiting_label = Html(words.waiting),
            waiting = count(room.waiting),
            admitted_label = Html(words.admitted),
            admitted = count(room.admitted),
            phase_label = Html(words.phase),
            phase = Html(&phase_line(room.phase)),
            next_label = Html(words.next_phase),
            next = Html(&phase_line(room.next_phase)),
            updated_label = Html(words.updated),
            updated = Html(&page::format_updated(room.updated_at, utc_offset_minutes)),
        );
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// A plain, readable look in a few lines: the board is meant for phones.
const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}\
main{max-width:40rem;margin:0 auto;padding:1rem}\
section{background:#fff;border:1px solid #d9dde3;border-radius:8px;padding:1rem;margin:1rem 0}\
h2{margin:0 0 .25rem;font-size:1.2rem}.state{font-weight:600;margin:0 0 .5rem}\
[data-state=open] .state{color:#1a7f37}[data-state=sold_out] .state,[data-state=closed] .state{color:#b42318}\
dl{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem;margin:0}dt{color:#57606a}dd{margin:0}\
.upd{color:#57606a;font-size:.9rem;margin:.5rem 0 0}\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn room(state: &'static str) -> BoardRoom {
        BoardRoom {
            id: "malang".into(),
            title: "Vaksinasi <Malang>".into(),
            campaign: None,
            state,
            quota_left: Some(1376),
            places_left: Some(1300),
            waiting: 2345,
            admitted: 8624,
            phase: Some(BoardPhase {
                opens: 1_805_000_400,
                closes: 1_805_029_200,
                quota: 10_000,
            }),
            next_phase: None,
            updated_at: 1_805_020_000,
        }
    }

    #[test]
    fn the_html_board_names_the_quota_left_in_both_languages_without_script() {
        let rooms = [room("open")];
        let id = html(&rooms, Lang::Id, 420);
        assert!(
            id.contains("<dd data-board=\"quota_left\">1.376</dd>"),
            "{id}"
        );
        assert!(id.contains("Dibuka") && id.contains("Vaksinasi &lt;Malang&gt;"));
        assert!(id.contains("<dd data-board=\"next_phase\">tidak ada</dd>"));
        assert!(!id.contains("<script"));
        assert!(id.contains("http-equiv=\"refresh\""));
        let en = html(&rooms, Lang::En, 420);
        assert!(
            en.contains("<dd data-board=\"quota_left\">1,376</dd>"),
            "{en}"
        );
        assert!(en.contains("<dd data-board=\"waiting\">2,345</dd>"));
        assert!(en.contains("quota 10,000"));
        assert!(id.len() < 8 * 1024, "small: {} bytes", id.len());
    }

    #[test]
    fn a_room_without_a_quota_says_so() {
        let mut open = room("sold_out");
        open.quota_left = None;
        let en = html(&[open], Lang::En, 0);
        assert!(
            en.contains("no limit") && en.contains("All places taken"),
            "{en}"
        );
    }
}
