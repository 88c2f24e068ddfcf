//! The admission engine driven with a hand-moved clock: what visitors with
//! and without cookies are told, and that no cookie but a genuine, current
//! one for this room ever lets anyone in.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use antre::clock::{Clock, ManualClock, MICROS_PER_SECOND};
use antre::config::Config;
use antre::cookie::Jar;
use antre::engine::{CookieOptions, Decision, Engine, Mode};
use antre::status::State;
use antre::store::{AnyStore, MemoryStore, Store};
use antre::token::{Key, Keyring};

const START: u64 = 1_800_000_000 * MICROS_PER_SECOND;
const OPTIONS: CookieOptions = CookieOptions { secure: false };

fn config(rooms: &str) -> Config {
    let text = format!("[origin]\nurl = \"http://127.0.0.1:9\"\n{rooms}");
    Config::parse(&text, Path::new("/tmp")).unwrap()
}

const VAKSIN: &str = r#"
[[rooms]]
id = "vaksin"
paths = ["/"]
admit_per_minute = 60
quota = 5
pass_minutes = 20
claim_minutes = 1
"#;

fn keyring(secret: u8) -> Keyring {
    Keyring::new(vec![Key::new("k1", &[secret; 32]).unwrap()]).unwrap()
}

async fn engine(rooms: &str) -> (Engine<AnyStore>, Arc<ManualClock>) {
    let clock = ManualClock::new(START);
    let store = AnyStore::Memory(Arc::new(MemoryStore::ephemeral()));
    let engine = Engine::start(store, clock.clone(), keyring(7), config(rooms).rooms)
        .await
        .unwrap();
    (engine, clock)
}

/// A visitor's cookie jar, as a browser keeps it.
#[derive(Default, Clone)]
struct Visitor {
    cookies: Vec<(String, String)>,
    /// Where the visitor comes from: an address of their own, given on
    /// their first visit, unless a test sets one.
    from: Option<IpAddr>,
}

const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A new address for each visitor: separate people, separate networks.
fn new_address() -> IpAddr {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0x0a00_0001);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    IpAddr::V4(std::net::Ipv4Addr::from(n))
}

impl Visitor {
    fn take(&mut self, set_cookies: &[String]) {
        for header in set_cookies {
            let pair = header.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !header.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    async fn visit(&mut self, engine: &Engine<AnyStore>, mode: Mode) -> Decision {
        let header = self.header();
        let jar = Jar::parse([header.as_str()]);
        let from = *self.from.get_or_insert_with(new_address);
        let decision = engine.decide(0, &jar, from, mode, OPTIONS).await;
        match &decision {
            Decision::Forward { set_cookies, .. }
            | Decision::Hold { set_cookies, .. }
            | Decision::Challenge { set_cookies, .. } => self.take(set_cookies),
            Decision::NoTicket | Decision::Slow { .. } => {}
        }
        decision
    }
}

fn state(decision: &Decision) -> Option<State> {
    match decision {
        Decision::Forward { .. } => Some(State::Admitted),
        Decision::Hold { status, .. } => Some(status.state),
        Decision::NoTicket | Decision::Challenge { .. } | Decision::Slow { .. } => None,
    }
}

#[tokio::test]
async fn twenty_arrive_together_five_get_in_one_a_second_in_order() {
    let (engine, clock) = engine(VAKSIN).await;
    let mut visitors = vec![Visitor::default(); 20];
    let mut admitted = Vec::new();
    for (i, visitor) in visitors.iter_mut().enumerate() {
        match visitor.visit(&engine, Mode::Request).await {
            Decision::Forward {
                admitted_now: true, ..
            } => admitted.push(i),
            Decision::Hold { status, .. } => {
                assert_eq!(status.state, State::Waiting);
                assert_eq!(
                    status.ticket,
                    Some(i as u64 + 1),
                    "places follow arrival order"
                );
                assert_eq!(
                    status.position,
                    Some(i as u64),
                    "ticket 1 is in, so ticket n is n-1th"
                );
                assert_eq!(status.ahead, Some(i as u64 - 1));
            }
            other => panic!("visitor {i}: {other:?}"),
        }
    }
    assert_eq!(admitted, vec![0], "only the burst gets in at once");

    for second in 1..=10 {
        clock.advance_seconds(1);
        engine.sync_all().await;
        for (i, visitor) in visitors.iter_mut().enumerate() {
            if admitted.contains(&i) {
                continue;
            }
            if let Decision::Forward { .. } = visitor.visit(&engine, Mode::Status).await {
                admitted.push(i);
            }
        }
        let expected = (second + 1).min(5);
        assert_eq!(admitted.len(), expected, "after {second}s");
    }
    assert_eq!(
        admitted,
        vec![0, 1, 2, 3, 4],
        "admitted one by one in ticket order"
    );
    for visitor in &mut visitors[5..] {
        assert_eq!(
            state(&visitor.visit(&engine, Mode::Request).await),
            Some(State::SoldOut)
        );
    }
    // A newcomer is told at once, without a ticket.
    let mut late = Visitor::default();
    assert_eq!(
        state(&late.visit(&engine, Mode::Request).await),
        Some(State::SoldOut)
    );
    assert!(late.cookies.is_empty());
}

#[tokio::test]
async fn a_pass_is_checked_locally_and_renewed_past_half_its_life() {
    let (engine, clock) = engine(VAKSIN).await;
    let mut visitor = Visitor::default();
    assert!(matches!(
        visitor.visit(&engine, Mode::Request).await,
        Decision::Forward {
            admitted_now: true,
            ..
        }
    ));
    let pass = visitor.get("antre-pass-vaksin").unwrap().to_owned();

    clock.advance_seconds(60);
    match visitor.visit(&engine, Mode::Request).await {
        Decision::Forward {
            set_cookies,
            admitted_now,
            ..
        } => {
            assert!(!admitted_now);
            assert!(
                set_cookies.is_empty(),
                "no new cookie while the pass is young"
            );
        }
        other => panic!("{other:?}"),
    }
    clock.advance_seconds(11 * 60);
    match visitor.visit(&engine, Mode::Request).await {
        Decision::Forward { set_cookies, .. } => {
            assert_eq!(set_cookies.len(), 1);
            assert!(set_cookies[0].starts_with("antre-pass-vaksin="));
            assert!(set_cookies[0].contains("HttpOnly") && set_cookies[0].contains("SameSite=Lax"));
        }
        other => panic!("{other:?}"),
    }
    assert_ne!(visitor.get("antre-pass-vaksin").unwrap(), pass);

    // Someone filling in a long form: quiet for most of the pass's life,
    // and still in, because every request renews it.
    clock.advance_seconds(19 * 60);
    assert!(matches!(
        visitor.visit(&engine, Mode::Request).await,
        Decision::Forward { .. }
    ));
    clock.advance_seconds(19 * 60);
    assert!(matches!(
        visitor.visit(&engine, Mode::Request).await,
        Decision::Forward { .. }
    ));

    // An inactive visitor's pass runs out; they queue again.
    clock.advance_seconds(21 * 60);
    let decision = visitor.visit(&engine, Mode::Status).await;
    assert_eq!(decision, Decision::NoTicket);
}

#[tokio::test]
async fn altered_forged_and_foreign_cookies_count_as_none() {
    let rooms = format!(
        "{VAKSIN}\n[[rooms]]\nid = \"tiket\"\npaths = [\"/tiket\"]\nadmit_per_minute = 60\n"
    );
    let (engine, _clock) = engine(&rooms).await;
    let mut visitor = Visitor::default();
    visitor.visit(&engine, Mode::Request).await;
    let pass = visitor.get("antre-pass-vaksin").unwrap().to_owned();

    let check = |cookie: String| {
        let engine = &engine;
        async move {
            let jar = Jar::parse([cookie.as_str()]);
            engine.decide(0, &jar, HOME, Mode::Status, OPTIONS).await
        }
    };
    assert!(matches!(
        check(format!("antre-pass-vaksin={pass}")).await,
        Decision::Forward { .. }
    ));
    for index in 0..pass.len() {
        let mut bytes = pass.clone().into_bytes();
        bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            check(format!("antre-pass-vaksin={altered}")).await,
            Decision::NoTicket,
            "{altered}"
        );
    }
    // Signed with another key.
    let forged = keyring(8).sign(
        antre::token::Kind::Pass,
        "vaksin",
        antre::token::Claims {
            epoch: 1,
            number: 1,
            time: START / MICROS_PER_SECOND + 600,
        },
    );
    assert_eq!(
        check(format!("antre-pass-vaksin={forged}")).await,
        Decision::NoTicket
    );
    // A genuine pass of another room, renamed.
    let mut other = Visitor::default();
    let jar_header = String::new();
    let jar = Jar::parse([jar_header.as_str()]);
    if let Decision::Forward { set_cookies, .. } =
        engine.decide(1, &jar, HOME, Mode::Request, OPTIONS).await
    {
        other.take(&set_cookies);
    }
    let foreign = other.get("antre-pass-tiket").unwrap().to_owned();
    assert_eq!(
        check(format!("antre-pass-vaksin={foreign}")).await,
        Decision::NoTicket
    );
    // A ticket presented as a pass.
    let mut waiting = Visitor::default();
    waiting.visit(&engine, Mode::Request).await;
    let ticket = waiting.get("antre-ticket-vaksin").unwrap().to_owned();
    assert_eq!(
        check(format!("antre-pass-vaksin={ticket}")).await,
        Decision::NoTicket
    );
}

#[tokio::test]
async fn refreshing_and_a_second_tab_keep_the_place_and_count_once() {
    let (engine, clock) = engine(VAKSIN).await;
    let mut first = Visitor::default();
    first.visit(&engine, Mode::Request).await;
    let mut visitor = Visitor::default();
    let ticket = match visitor.visit(&engine, Mode::Request).await {
        Decision::Hold { status, .. } => status.ticket,
        other => panic!("{other:?}"),
    };
    for _ in 0..5 {
        match visitor.visit(&engine, Mode::Request).await {
            Decision::Hold {
                status,
                set_cookies,
            } => {
                assert_eq!(status.ticket, ticket, "a refresh keeps the place");
                assert!(set_cookies.is_empty(), "and hands out no new ticket");
            }
            other => panic!("{other:?}"),
        }
    }
    clock.advance_seconds(1);
    let tab_two = visitor.clone();
    assert!(matches!(
        visitor.visit(&engine, Mode::Request).await,
        Decision::Forward {
            admitted_now: true,
            ..
        }
    ));
    let mut tab_two = tab_two;
    // The second tab still holds only the ticket: it gets in without
    // counting again.
    assert!(matches!(
        tab_two.visit(&engine, Mode::Request).await,
        Decision::Forward {
            admitted_now: false,
            ..
        }
    ));
    let view = engine
        .store()
        .sync("vaksin", clock.now_micros())
        .await
        .unwrap();
    assert_eq!(view.admitted, 2);
}

#[tokio::test]
async fn a_lapsed_turn_gets_a_new_place_at_the_back() {
    let rooms = VAKSIN.replace("quota = 5", "quota = 1000");
    let (engine, clock) = engine(&rooms).await;
    let mut first = Visitor::default();
    first.visit(&engine, Mode::Request).await;
    let mut away = Visitor::default();
    away.visit(&engine, Mode::Request).await;
    let mut behind = Visitor::default();
    behind.visit(&engine, Mode::Request).await;
    for _ in 0..200 {
        Visitor::default().visit(&engine, Mode::Request).await;
    }
    // Ticket 2's turn comes after a second; its holder is gone for two
    // minutes while the one behind keeps polling.
    let mut behind_in_at = None;
    for second in 1..=120 {
        clock.advance_seconds(1);
        engine.sync_all().await;
        if behind_in_at.is_none() {
            if let Decision::Forward { .. } = behind.visit(&engine, Mode::Status).await {
                behind_in_at = Some(second);
            }
        }
    }
    assert_eq!(
        behind_in_at,
        Some(2),
        "the abandoned ticket did not hold up the line"
    );
    match away.visit(&engine, Mode::Request).await {
        Decision::Hold { status, .. } => {
            assert!(status.requeued);
            assert_eq!(status.ticket, Some(204), "a new place at the back");
            assert_eq!(status.state, State::Waiting);
        }
        other => panic!("{other:?}"),
    }
    let view = engine
        .store()
        .sync("vaksin", clock.now_micros())
        .await
        .unwrap();
    // Ticket 2 and the slots of the never-polling visitors released more
    // than a claim window (plus at most one checkpoint) ago, less ticket 3.
    assert!((55..=59).contains(&view.wasted), "wasted {}", view.wasted);
}

#[tokio::test]
async fn waiting_status_is_honest_and_narrows_as_the_line_moves() {
    let rooms = VAKSIN.replace("quota = 5", "quota = 1000");
    let (engine, clock) = engine(&rooms).await;
    let mut visitors = vec![Visitor::default(); 121];
    for visitor in &mut visitors {
        visitor.visit(&engine, Mode::Request).await;
    }
    let last = visitors.last_mut().unwrap();
    let mut previous: Option<[u64; 2]> = None;
    for _ in 0..10 {
        let Decision::Hold { status, .. } = last.visit(&engine, Mode::Status).await else {
            panic!("still waiting")
        };
        // 119 people ahead at one a minute... one a second: about two minutes.
        let [low, high] = status.eta_range_seconds.unwrap();
        assert!(low <= status.eta_seconds.unwrap() && status.eta_seconds.unwrap() <= high);
        if let Some([previous_low, previous_high]) = previous {
            assert!(
                low < previous_low && high < previous_high,
                "the range only narrows"
            );
        }
        // Turns called count against the places left, taken or not:
        // 1,000 less everyone up to the frontier.
        let frontier = 121 - status.position.unwrap();
        assert_eq!(status.quota_left, Some(1000 - frontier));
        previous = Some([low, high]);
        clock.advance_seconds(5);
        engine.sync_all().await;
    }
}

#[tokio::test]
async fn beyond_the_quota_a_waiting_visitor_is_told_so() {
    let (engine, _clock) = engine(VAKSIN).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let mut visitor = Visitor::default();
        if let Decision::Hold { status, .. } = visitor.visit(&engine, Mode::Request).await {
            statuses.push(status);
        }
    }
    let beyond: Vec<bool> = statuses.iter().map(|s| s.beyond_quota).collect();
    // Tickets 2..=5 fit in the quota of 5 (ticket 1 is in); 6.. do not.
    assert_eq!(beyond, vec![false, false, false, false, true, true, true]);
    assert!(
        statuses[4].eta_seconds.is_none(),
        "no promise of a wait for a place that may not come"
    );
}

#[tokio::test]
async fn after_a_reset_old_tickets_and_passes_count_as_none() {
    let rooms = VAKSIN.replace("quota = 5", "quota = 100");
    let (engine, clock) = engine(&rooms).await;
    let mut admitted = Visitor::default();
    admitted.visit(&engine, Mode::Request).await;
    let mut waiting = Visitor::default();
    waiting.visit(&engine, Mode::Request).await;
    assert!(waiting.get("antre-ticket-vaksin").is_some());

    engine
        .store()
        .reset("vaksin", clock.now_micros())
        .await
        .unwrap();
    engine.sync_all().await;
    assert_eq!(
        admitted.visit(&engine, Mode::Status).await,
        Decision::NoTicket
    );
    assert_eq!(
        waiting.visit(&engine, Mode::Status).await,
        Decision::NoTicket
    );
    // Coming back, they queue in the new epoch with numbers that go on.
    clock.advance_seconds(1);
    match waiting.visit(&engine, Mode::Request).await {
        Decision::Forward { admitted_now, .. } => assert!(admitted_now),
        other => panic!("{other:?}"),
    }
}

/// A campaign of two phases a day apart, three places each: closed before
/// the first with the opening named, sold out for the day with the next
/// opening named, closed overnight with places kept, and the second phase
/// numbering on from the first and letting those still in line in first.
#[tokio::test]
async fn a_schedule_opens_closes_and_numbers_on_across_phases() {
    const HOUR: u64 = 3600;
    let at = |seconds: u64| (START / MICROS_PER_SECOND + seconds) * MICROS_PER_SECOND;
    // `utc_time` writes RFC 3339 in UTC, as the schedule takes it.
    let rfc3339 = |micros: u64| antre::admission::utc_time(micros / MICROS_PER_SECOND);
    let first = at(HOUR);
    let second = at(25 * HOUR);
    let rooms = format!(
        "[[rooms]]\nid = \"kota\"\npaths = [\"/\"]\nticket_hours = 48\nrefresh_seconds = 20\n\
         [[rooms.phases]]\nstart = {}\nend = {}\nquota = 3\nadmit_per_minute = 60\n\
         [[rooms.phases]]\nstart = {}\nend = {}\nquota = 3\nadmit_per_minute = 60\n",
        rfc3339(first),
        rfc3339(first + 3600 * MICROS_PER_SECOND),
        rfc3339(second),
        rfc3339(second + 3600 * MICROS_PER_SECOND),
    );
    let (engine, clock) = engine(&rooms).await;
    let opens = |micros: u64| Some(micros / MICROS_PER_SECOND);

    // Before the first phase: closed, the opening named, no number given.
    let mut early = Visitor::default();
    let Decision::Hold { status, .. } = early.visit(&engine, Mode::Request).await else {
        panic!("an early visitor is held");
    };
    assert_eq!(status.state, State::Closed);
    assert_eq!(status.opens_at, opens(first));
    assert_eq!(status.ticket, None);
    assert_eq!(status.refresh_seconds, 20);
    assert!(early.cookies.is_empty(), "no ticket before opening");
    clock.set(first - 5 * MICROS_PER_SECOND);
    let Decision::Hold { status, .. } = early.visit(&engine, Mode::Request).await else {
        panic!("still held");
    };
    assert_eq!(
        status.refresh_seconds, 5,
        "a page reloads as the room opens"
    );

    // It opens: six arrive; one is in at once, two more a second apart.
    clock.set(first);
    engine.sync_all().await;
    let mut people = vec![Visitor::default(); 6];
    let mut tickets = Vec::new();
    for person in people.iter_mut() {
        match person.visit(&engine, Mode::Request).await {
            Decision::Forward { .. } => tickets.push(1),
            Decision::Hold { status, .. } => {
                assert_eq!(status.state, State::Waiting);
                tickets.push(status.ticket.unwrap());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(tickets, vec![1, 2, 3, 4, 5, 6]);
    for _ in 0..3 {
        clock.advance_seconds(1);
        engine.sync_all().await;
        for person in &mut people[1..3] {
            person.visit(&engine, Mode::Status).await;
        }
    }
    for person in &mut people[1..3] {
        assert_eq!(
            state(&person.visit(&engine, Mode::Status).await),
            Some(State::Admitted)
        );
    }
    // The day's three are in: those still waiting, and newcomers, are told
    // when the next phase opens.
    for person in &mut people[3..] {
        let Decision::Hold { status, .. } = person.visit(&engine, Mode::Status).await else {
            panic!("held");
        };
        assert_eq!(status.state, State::SoldOut);
        assert_eq!(status.opens_at, opens(second));
    }
    let mut late = Visitor::default();
    let Decision::Hold { status, .. } = late.visit(&engine, Mode::Request).await else {
        panic!("held");
    };
    assert_eq!(
        (status.state, status.opens_at),
        (State::SoldOut, opens(second))
    );

    // Overnight: closed, and those in line keep their place.
    clock.set(first + 12 * HOUR * MICROS_PER_SECOND);
    engine.sync_all().await;
    let Decision::Hold { status, .. } = people[4].visit(&engine, Mode::Status).await else {
        panic!("held");
    };
    assert_eq!(status.state, State::Closed);
    assert_eq!((status.ticket, status.position), (Some(5), Some(2)));
    assert_eq!(status.opens_at, opens(second));

    // The second phase: a newcomer numbers on from the first phase, behind
    // those still in line, who go in first and in order.
    clock.set(second);
    engine.sync_all().await;
    let Decision::Hold { status, .. } = late.visit(&engine, Mode::Request).await else {
        panic!("held");
    };
    assert_eq!((status.state, status.ticket), (State::Waiting, Some(7)));
    let mut order = Vec::new();
    for _ in 0..5 {
        clock.advance_seconds(1);
        engine.sync_all().await;
        for (i, person) in people.iter_mut().enumerate().skip(3) {
            if !order.contains(&i)
                && state(&person.visit(&engine, Mode::Status).await) == Some(State::Admitted)
            {
                order.push(i);
            }
        }
    }
    assert_eq!(order, vec![3, 4, 5], "tickets 4, 5 and 6, in order");
    // The campaign's places are all gone: the newcomer is told so, with no
    // opening ahead.
    let Decision::Hold { status, .. } = late.visit(&engine, Mode::Status).await else {
        panic!("held");
    };
    assert_eq!((status.state, status.opens_at), (State::SoldOut, None));
}

/// A sell-out with return tickets: those still waiting when the first
/// phase's places run out are given a return ticket for the second, told
/// when it opens and that they need not queue again. Their tickets have
/// expired by then; the return tickets let them in first, in their order,
/// one of them from another browser by the link, and one who comes back
/// only after their turn passed. A return ticket works once, and only in
/// its own room.
#[tokio::test]
async fn return_tickets_bring_those_left_waiting_back_first() {
    const HOUR: u64 = 3600;
    let at = |seconds: u64| (START / MICROS_PER_SECOND + seconds) * MICROS_PER_SECOND;
    let rfc3339 = |micros: u64| antre::admission::utc_time(micros / MICROS_PER_SECOND);
    let first = at(HOUR);
    let second = at(25 * HOUR);
    let rooms = format!(
        "[[rooms]]\nid = \"kota\"\npaths = [\"/\"]\nticket_hours = 1\nclaim_minutes = 1\n\
         [[rooms.phases]]\nstart = {}\nend = {}\nquota = 3\nadmit_per_minute = 60\n\
         [[rooms.phases]]\nstart = {}\nend = {}\nquota = 4\nadmit_per_minute = 60\n\
         [[rooms]]\nid = \"lain\"\npaths = [\"/lain\"]\nadmit_per_minute = 60\n",
        rfc3339(first),
        rfc3339(first + 3 * HOUR * MICROS_PER_SECOND),
        rfc3339(second),
        rfc3339(second + 3 * HOUR * MICROS_PER_SECOND),
    );
    let (engine, clock) = engine(&rooms).await;
    let return_cookie = engine.rooms()[0].return_cookie_name().to_owned();

    clock.set(first);
    engine.sync_all().await;
    let mut people = vec![Visitor::default(); 5];
    for person in people.iter_mut() {
        person.visit(&engine, Mode::Request).await;
    }
    for _ in 0..3 {
        clock.advance_seconds(1);
        engine.sync_all().await;
        for person in &mut people[..3] {
            person.visit(&engine, Mode::Status).await;
        }
    }
    // 4 and 5 are left waiting when the three places are gone: each gets
    // a return ticket for the second phase.
    let mut links = Vec::new();
    for (i, person) in people.iter_mut().enumerate().skip(3) {
        let Decision::Hold { status, .. } = person.visit(&engine, Mode::Status).await else {
            panic!("held");
        };
        assert_eq!(status.state, State::SoldOut);
        assert_eq!(status.ticket, Some(i as u64 + 1));
        assert_eq!(status.kept_for, Some(second / MICROS_PER_SECOND));
        let token = status.return_ticket.expect("a return ticket");
        assert_eq!(person.get(&return_cookie), Some(token.as_str()));
        links.push(token);
    }
    // Number 4 moves to another phone by the link; the link is no good in
    // another room, and a forged one is refused.
    let mut phone = Visitor::default();
    phone.take(&[engine.take_return(0, &links[0], OPTIONS).unwrap()]);
    assert_eq!(
        engine.take_return(1, &links[0], OPTIONS),
        Err(antre::engine::ReturnError::Forged)
    );
    let forged = links[0].replacen(".4.", ".3.", 1);
    assert_eq!(
        engine.take_return(0, &forged, OPTIONS),
        Err(antre::engine::ReturnError::Forged)
    );
    let mut copy = phone.clone();
    copy.from = None;

    // Overnight: the phone is told its place is kept for the morning.
    clock.set(first + 12 * HOUR * MICROS_PER_SECOND);
    engine.sync_all().await;
    let Decision::Hold { status, .. } = phone.visit(&engine, Mode::Request).await else {
        panic!("held");
    };
    assert_eq!(status.state, State::Closed);
    assert_eq!(status.ticket, Some(4));
    assert_eq!(status.kept_for, Some(second / MICROS_PER_SECOND));

    // The second morning: a newcomer is numbered on, behind number 4 on
    // the phone, who goes in first; number 5 is away.
    clock.set(second);
    engine.sync_all().await;
    let mut newcomer = Visitor::default();
    let Decision::Hold { status, .. } = newcomer.visit(&engine, Mode::Request).await else {
        panic!("held");
    };
    assert_eq!((status.state, status.ticket), (State::Waiting, Some(6)));
    let mut order = Vec::new();
    for _ in 0..4 {
        clock.advance_seconds(1);
        engine.sync_all().await;
        if !order.contains(&4)
            && state(&phone.visit(&engine, Mode::Status).await) == Some(State::Admitted)
        {
            order.push(4);
        }
        if !order.contains(&6)
            && state(&newcomer.visit(&engine, Mode::Status).await) == Some(State::Admitted)
        {
            order.push(6);
        }
    }
    assert_eq!(order, vec![4, 6]);
    assert_eq!(
        phone.get(&return_cookie),
        None,
        "spent, the return ticket is cleared"
    );
    // The same link used again, from the copy, a minute later: spent.
    clock.advance_seconds(60);
    let Decision::Hold { status, .. } = copy.visit(&engine, Mode::Request).await else {
        panic!("a spent return ticket lets nobody in");
    };
    assert_eq!(status.notice, Some(antre::status::Notice::TicketSpent));

    // Number 5 comes back at ten o'clock, long after their turn lapsed:
    // let in all the same. One more newcomer takes the phase's fourth
    // place, and the next is told all places are gone.
    clock.set(second + HOUR * MICROS_PER_SECOND);
    engine.sync_all().await;
    assert!(matches!(
        people[4].visit(&engine, Mode::Request).await,
        Decision::Forward {
            admitted_now: true,
            ..
        }
    ));
    assert_eq!(people[4].get(&return_cookie), None);
    let mut fourth = Visitor::default();
    assert!(matches!(
        fourth.visit(&engine, Mode::Request).await,
        Decision::Forward {
            admitted_now: true,
            ..
        }
    ));
    let mut last = Visitor::default();
    let Decision::Hold { status, .. } = last.visit(&engine, Mode::Request).await else {
        panic!("held");
    };
    assert_eq!((status.state, status.opens_at), (State::SoldOut, None));
    assert_eq!(engine.rooms()[0].view().admitted, 3 + 4);
}

/// Quota 5 and a queue: "places left" counts only what is still open to
/// people in the line (not turns called and not yet taken), so a page's
/// numbers agree: a visitor is beyond the quota exactly when as many are
/// ahead as places are left. Those beyond it ask every few seconds, so
/// they hear of the sell-out at once.
#[tokio::test]
async fn places_left_agree_with_the_people_ahead() {
    let (engine, clock) = engine(VAKSIN).await;
    let mut people = vec![Visitor::default(); 9];
    for person in people.iter_mut() {
        person.visit(&engine, Mode::Request).await;
    }
    // Two turns are called and nobody has taken them yet.
    clock.advance_seconds(2);
    engine.sync_all().await;
    let mut beyond = Vec::new();
    for person in &mut people[3..] {
        let Decision::Hold { status, .. } = person.visit(&engine, Mode::Status).await else {
            panic!("held");
        };
        // Ticket 1 is in, 2 and 3 are called: 5 - 1 - 2 places remain.
        assert_eq!(status.quota_left, Some(2), "{status:?}");
        let ahead = status.ahead.unwrap();
        assert_eq!(status.beyond_quota, ahead >= 2, "{status:?}");
        if status.beyond_quota {
            assert!(status.refresh_seconds <= 4, "{status:?}");
            assert_eq!(status.eta_seconds, None);
        }
        beyond.push(status.beyond_quota);
    }
    // Tickets 4 and 5 fit; 6 to 9 do not.
    assert_eq!(beyond, vec![false, false, true, true, true, true]);
}
