//! One person, one place, driven through the engine with a hand-moved
//! clock: a network's free tickets and the work past them, a pass used
//! from too many networks or too fast, a ticket exchanged once, a pass's
//! hard cap.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use antre::clock::{ManualClock, MICROS_PER_SECOND};
use antre::config::Config;
use antre::cookie::Jar;
use antre::engine::{CookieOptions, Decision, Engine, Mode};
use antre::status::{Notice, State};
use antre::store::{AnyStore, MemoryStore};
use antre::token::{Key, Keyring};
use antre::work;

const START: u64 = 1_800_000_000 * MICROS_PER_SECOND;
const OPTIONS: CookieOptions = CookieOptions { secure: false };

/// A busy room: one admission a minute, so arrivals wait.
const BUSY: &str = r#"
[[rooms]]
id = "vaksin"
paths = ["/"]
admit_per_minute = 1
quota = 1000
tickets_per_address_burst = 5
tickets_per_address_per_minute = 6
challenge_bits = 8
challenge_bits_max = 12
"#;

/// A room with room to spare: everyone gets in at once.
const IDLE: &str = r#"
[[rooms]]
id = "vaksin"
paths = ["/"]
admit_per_minute = 6000
burst = 1000
pass_minutes = 20
pass_max_minutes = 45
pass_requests_per_second = 5
pass_request_burst = 10
"#;

async fn engine(rooms: &str) -> (Engine<AnyStore>, Arc<ManualClock>) {
    let text = format!("[origin]\nurl = \"http://127.0.0.1:9\"\n{rooms}");
    let config = Config::parse(&text, Path::new("/tmp")).unwrap();
    let clock = ManualClock::new(START);
    let store = AnyStore::Memory(Arc::new(MemoryStore::ephemeral()));
    let keys = Keyring::new(vec![Key::new("k1", &[7; 32]).unwrap()]).unwrap();
    let engine = Engine::start(store, clock.clone(), keys, config.rooms)
        .await
        .unwrap();
    (engine, clock)
}

fn at(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, b, 1))
}

/// A browser's cookie jar, at an address.
#[derive(Clone)]
struct Browser {
    cookies: Vec<(String, String)>,
    from: IpAddr,
}

impl Browser {
    fn new(from: IpAddr) -> Browser {
        Browser {
            cookies: Vec::new(),
            from,
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn set(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(n, _)| n != name);
        self.cookies.push((name.to_owned(), value.to_owned()));
    }

    async fn visit(&mut self, engine: &Engine<AnyStore>) -> Decision {
        let header: Vec<String> = self
            .cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let header = header.join("; ");
        let jar = Jar::parse([header.as_str()]);
        let decision = engine
            .decide(0, &jar, self.from, Mode::Request, OPTIONS)
            .await;
        let set_cookies = match &decision {
            Decision::Forward { set_cookies, .. }
            | Decision::Hold { set_cookies, .. }
            | Decision::Challenge { set_cookies, .. } => set_cookies.clone(),
            Decision::Slow { .. } | Decision::NoTicket => Vec::new(),
        };
        for header in set_cookies {
            let pair = header.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !header.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        decision
    }
}

fn ticket_of(decision: &Decision) -> Option<u64> {
    match decision {
        Decision::Hold { status, .. } => status.ticket,
        _ => None,
    }
}

#[tokio::test]
async fn a_network_gets_its_free_tickets_then_pays_in_work() {
    let (engine, clock) = engine(BUSY).await;
    // A script that keeps no cookies: every request is a new arrival.
    let mut tickets = Vec::new();
    let mut challenges = Vec::new();
    for _ in 0..50 {
        match Browser::new(at(0, 1)).visit(&engine).await {
            d @ Decision::Hold { .. } => tickets.push(ticket_of(&d).unwrap()),
            Decision::Forward { .. } => tickets.push(0),
            Decision::Challenge { challenge, .. } => challenges.push(challenge),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(tickets.len(), 5, "the burst of free tickets, no more");
    assert_eq!(challenges.len(), 45);
    // Someone from another network is not held up by it.
    let honest = Browser::new(at(0, 2)).visit(&engine).await;
    assert_eq!(ticket_of(&honest), Some(6));

    // The budget comes back at its rate: one every ten seconds.
    clock.advance_seconds(10);
    assert!(ticket_of(&Browser::new(at(0, 1)).visit(&engine).await).is_some());
    assert!(matches!(
        Browser::new(at(0, 1)).visit(&engine).await,
        Decision::Challenge { .. }
    ));

    // Doing the work buys a ticket; the same work again buys nothing.
    let mut payer = Browser::new(at(0, 1));
    let Decision::Challenge {
        challenge, cookie, ..
    } = payer.visit(&engine).await
    else {
        panic!("expected a challenge")
    };
    assert_eq!(cookie, "antre-work-vaksin");
    let n = work::solve(&challenge.challenge, challenge.bits);
    let solution = format!("{}.{n}", challenge.challenge);
    payer.set(&cookie, &solution);
    let paid = payer.visit(&engine).await;
    assert!(ticket_of(&paid).is_some(), "{paid:?}");
    assert_eq!(payer.get(&cookie), None, "the spent solution is cleared");

    let mut replay = Browser::new(at(0, 1));
    replay.set(&cookie, &solution);
    match replay.visit(&engine).await {
        Decision::Challenge { failed, .. } => {
            assert!(failed.unwrap().contains("used"), "spent work is refused")
        }
        other => panic!("{other:?}"),
    }
    // Work done for one network does not pay from another.
    let mut elsewhere = Browser::new(at(0, 3));
    for _ in 0..5 {
        Browser::new(at(0, 3)).visit(&engine).await;
    }
    elsewhere.set(&cookie, &format!("{}.{}", challenge.challenge, n));
    match elsewhere.visit(&engine).await {
        Decision::Challenge { failed, .. } => {
            assert!(failed.unwrap().contains("another network"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn challenges_get_harder_the_further_a_network_runs_ahead() {
    let (engine, _clock) = engine(BUSY).await;
    for _ in 0..5 {
        Browser::new(at(1, 1)).visit(&engine).await;
    }
    let mut bits = Vec::new();
    for _ in 0..6 {
        let mut payer = Browser::new(at(1, 1));
        let Decision::Challenge { challenge, .. } = payer.visit(&engine).await else {
            panic!("expected a challenge")
        };
        bits.push(challenge.bits);
        let n = work::solve(&challenge.challenge, challenge.bits);
        payer.set("antre-work-vaksin", &format!("{}.{n}", challenge.challenge));
        assert!(ticket_of(&payer.visit(&engine).await).is_some());
    }
    assert!(bits.windows(2).all(|w| w[0] <= w[1]), "{bits:?}");
    assert!(bits[0] == 8 && *bits.last().unwrap() > 8, "{bits:?}");
    assert!(bits.iter().all(|b| *b <= 12), "{bits:?}");
}

#[tokio::test]
async fn a_pass_serves_at_most_three_networks() {
    let (engine, _clock) = engine(IDLE).await;
    let mut owner = Browser::new(at(2, 1));
    assert!(matches!(
        owner.visit(&engine).await,
        Decision::Forward {
            admitted_now: true,
            ..
        }
    ));
    let pass = owner.get("antre-pass-vaksin").unwrap();
    // The owner moves from Wi-Fi to mobile data and back: still in.
    let mut served = 1;
    let mut refused = 0;
    for b in 2..=10 {
        let mut friend = Browser::new(at(2, b));
        friend.set("antre-pass-vaksin", &pass);
        match friend.visit(&engine).await {
            Decision::Forward { .. } => served += 1,
            Decision::Hold { status, .. } => {
                assert_eq!(status.notice, Some(Notice::PassShared));
                assert_eq!(friend.get("antre-pass-vaksin"), None, "the pass is cleared");
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((served, refused), (3, 7));
    // The networks that were served still are; the refused stay refused.
    assert!(matches!(
        owner.visit(&engine).await,
        Decision::Forward { .. }
    ));
    let mut again = Browser::new(at(2, 2));
    again.set("antre-pass-vaksin", &pass);
    assert!(matches!(
        again.visit(&engine).await,
        Decision::Forward { .. }
    ));
    let mut still = Browser::new(at(2, 9));
    still.set("antre-pass-vaksin", &pass);
    assert!(matches!(still.visit(&engine).await, Decision::Hold { .. }));
    // The refused visitor, coming back without the pass, queues anew.
    let back = still.visit(&engine).await;
    assert!(matches!(
        back,
        Decision::Forward {
            admitted_now: true,
            ..
        }
    ));
}

#[tokio::test]
async fn a_pass_asking_faster_than_a_person_is_slowed() {
    let (engine, clock) = engine(IDLE).await;
    let mut visitor = Browser::new(at(3, 1));
    visitor.visit(&engine).await;
    let mut forwarded = 1;
    let mut slowed = 0;
    for _ in 0..30 {
        match visitor.visit(&engine).await {
            Decision::Forward { .. } => forwarded += 1,
            Decision::Slow {
                retry_after_seconds,
            } => {
                assert!(retry_after_seconds >= 1);
                slowed += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    // The admission, then a burst of ten.
    assert_eq!((forwarded, slowed), (11, 20));
    clock.advance_seconds(1);
    assert!(matches!(
        visitor.visit(&engine).await,
        Decision::Forward { .. }
    ));
}

#[tokio::test]
async fn a_ticket_gives_one_pass_and_again_only_within_the_grace() {
    let rooms = BUSY.replace("admit_per_minute = 1\n", "admit_per_minute = 60\n");
    let (engine, clock) = engine(&rooms).await;
    Browser::new(at(4, 1)).visit(&engine).await;
    let mut visitor = Browser::new(at(4, 2));
    assert_eq!(ticket_of(&visitor.visit(&engine).await), Some(2));
    let ticket = visitor.get("antre-ticket-vaksin").unwrap();
    clock.advance_seconds(2);
    engine.sync_all().await;
    let Decision::Forward {
        admitted_now: true,
        pass: Some(first),
        ..
    } = visitor.visit(&engine).await
    else {
        panic!("the turn has come")
    };
    // The answer was lost; the browser sends the ticket again: same pass.
    clock.advance_seconds(5);
    let mut retry = Browser::new(at(4, 2));
    retry.set("antre-ticket-vaksin", &ticket);
    match retry.visit(&engine).await {
        Decision::Forward {
            admitted_now: false,
            pass: Some(again),
            ..
        } => assert_eq!((again.id, again.number), (first.id, first.number)),
        other => panic!("{other:?}"),
    }
    // A minute after the exchange the ticket buys nothing.
    clock.advance_seconds(60);
    engine.sync_all().await;
    let mut replay = Browser::new(at(4, 3));
    replay.set("antre-ticket-vaksin", &ticket);
    match replay.visit(&engine).await {
        Decision::Hold {
            status,
            set_cookies,
        } => {
            assert_eq!(status.notice, Some(Notice::TicketSpent));
            assert_eq!(status.state, State::Waiting);
            assert!(set_cookies
                .iter()
                .all(|c| !c.starts_with("antre-pass-vaksin=")));
            assert!(set_cookies
                .iter()
                .any(|c| c.starts_with("antre-ticket-vaksin=;")));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_pass_renews_while_used_but_never_past_its_cap() {
    let rooms = IDLE.replace(
        "pass_requests_per_second = 5",
        "pass_requests_per_second = 50",
    );
    let (engine, clock) = engine(&rooms).await;
    let mut visitor = Browser::new(at(5, 1));
    visitor.visit(&engine).await;
    // Busy every ten minutes: renewed each time, never past 45 minutes.
    let mut requeued_at = None;
    for minute in (10..=70).step_by(10) {
        clock.advance_seconds(600);
        match visitor.visit(&engine).await {
            Decision::Forward {
                admitted_now: false,
                pass: Some(pass),
                ..
            } => {
                assert!(pass.expires <= pass.issued + 45 * 60, "{minute}: {pass:?}");
            }
            Decision::Forward {
                admitted_now: true, ..
            } => {
                requeued_at = Some(minute);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    // At 50 minutes the pass had ended: through the line again (an idle
    // room lets them straight in, with a new pass).
    assert_eq!(requeued_at, Some(50));
}
