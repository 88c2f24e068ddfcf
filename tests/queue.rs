//! Property tests for the queue maths: the invariants of the brief, hammered
//! with random arrivals, claims and gaps in time.

use antre::clock::MICROS_PER_SECOND;
use antre::store::queue::{Claim, Counters, RoomSettings, EXCHANGE_GRACE};
use proptest::prelude::*;

const START: u64 = 1_800_000_000 * MICROS_PER_SECOND;

#[derive(Debug, Clone)]
enum Step {
    /// Time passes by this many milliseconds.
    Wait(u64),
    /// A new visitor arrives.
    Arrive,
    /// The holder of the k-th ticket handed out so far (mod count) tries to
    /// exchange it.
    Claim(usize),
    /// The background sync advances the room.
    Sync,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u64..5_000).prop_map(Step::Wait),
        4 => Just(Step::Arrive),
        4 => any::<usize>().prop_map(Step::Claim),
        1 => Just(Step::Sync),
    ]
}

fn settings() -> impl Strategy<Value = RoomSettings> {
    (1u32..600, 1u32..5, prop::option::of(1u64..40), 1u64..120).prop_map(
        |(rate, burst, quota, claim)| RoomSettings {
            admit_per_minute: rate,
            burst,
            quota,
            paused: false,
            claim_seconds: claim,
            pass_seconds: 1200,
            phases: Vec::new(),
            live_rate: false,
            draw_secret: String::new(),
        },
    )
}

/// Runs `steps`, checking the invariants after each one, and returns the
/// room's counters and the (time, frontier) trace.
fn run(
    settings: &RoomSettings,
    steps: &[Step],
) -> Result<(Counters, Vec<(u64, u64)>), TestCaseError> {
    let mut counters = Counters::default();
    let mut now = START;
    let mut tickets: Vec<u64> = Vec::new();
    let mut admitted_tickets: Vec<u64> = Vec::new();
    let mut trace = vec![(now, 0)];
    let mut exchanged_at = std::collections::HashMap::new();
    for step in steps {
        match step {
            Step::Wait(ms) => now += ms * 1000,
            Step::Arrive => {
                let (ticket, admitted) = counters.arrive(settings, now);
                prop_assert_eq!(
                    ticket,
                    tickets.len() as u64 + 1,
                    "tickets are handed out in order"
                );
                tickets.push(ticket);
                if admitted {
                    admitted_tickets.push(ticket);
                    exchanged_at.insert(ticket, now);
                }
            }
            Step::Claim(k) if !tickets.is_empty() => {
                let ticket = tickets[k % tickets.len()];
                let before = counters.admitted;
                match counters.claim(settings, counters.epoch, ticket, now) {
                    Claim::Admitted { fresh: true } => {
                        prop_assert_eq!(counters.admitted, before + 1);
                        prop_assert!(
                            !admitted_tickets.contains(&ticket),
                            "ticket {} counted twice",
                            ticket
                        );
                        // FIFO: everyone ahead has been let in before.
                        prop_assert!(ticket <= counters.frontier);
                        admitted_tickets.push(ticket);
                        exchanged_at.insert(ticket, now);
                    }
                    Claim::Admitted { fresh: false } => {
                        prop_assert_eq!(counters.admitted, before);
                        prop_assert!(admitted_tickets.contains(&ticket));
                        // Again only within the grace of the exchange.
                        prop_assert!(now - exchanged_at[&ticket] <= EXCHANGE_GRACE);
                    }
                    Claim::Spent => {
                        prop_assert_eq!(counters.admitted, before);
                        prop_assert!(now - exchanged_at[&ticket] > EXCHANGE_GRACE);
                    }
                    Claim::NotYet => prop_assert!(ticket > counters.frontier),
                    Claim::Lapsed => prop_assert!(ticket <= counters.floor),
                    Claim::SoldOut => prop_assert!(counters.sold_out(settings)),
                    Claim::Stale => prop_assert!(false, "no reset happened"),
                }
            }
            Step::Claim(_) => {}
            Step::Sync => {
                counters.advance(settings, now);
            }
        }
        // Never more admissions than the quota.
        if let Some(quota) = settings.quota {
            prop_assert!(
                counters.admitted <= quota,
                "admitted {} > quota {}",
                counters.admitted,
                quota
            );
            // Nobody is released for a slot that does not exist.
            prop_assert!(counters.admitted + counters.outstanding() <= quota);
        }
        // Every released number is admitted, wasted or outstanding.
        prop_assert_eq!(
            counters.frontier,
            counters.admitted + counters.wasted + counters.outstanding()
        );
        prop_assert!(counters.floor <= counters.frontier && counters.frontier <= counters.tail);
        prop_assert_eq!(counters.admitted, admitted_tickets.len() as u64);
        // Waiting alone moves nothing: the frontier is evaluated lazily, so
        // only steps that advance the room are observations of it.
        if !matches!(step, Step::Wait(_)) {
            trace.push((now, counters.frontier));
        }
    }
    Ok((counters, trace))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Quota, FIFO, idempotence and conservation hold after every step.
    #[test]
    fn invariants_hold(settings in settings(), steps in prop::collection::vec(step(), 1..300)) {
        run(&settings, &steps)?;
    }

    /// Releases in any window are at most rate x window plus the burst.
    #[test]
    fn release_rate_is_bounded(settings in settings(), steps in prop::collection::vec(step(), 1..200)) {
        let (_, trace) = run(&settings, &steps)?;
        let interval = settings.interval();
        for (i, (t1, f1)) in trace.iter().enumerate() {
            for (t2, f2) in &trace[i..] {
                let allowed = u64::from(settings.burst) + (t2 - t1) / interval;
                prop_assert!(f2 - f1 <= allowed, "{} released in {} us, allowed {}", f2 - f1, t2 - t1, allowed);
            }
        }
    }

    /// A backlogged line drains at the configured rate: after `w` seconds
    /// with people waiting, `w / interval` have been released, however the
    /// background syncs fall.
    #[test]
    fn backlog_drains_at_the_rate(rate in 1u32..100_000, seconds in 1u64..600, tick_ms in 20u64..1000) {
        let settings = RoomSettings { admit_per_minute: rate, burst: 1, quota: None, paused: false, claim_seconds: 600, pass_seconds: 1200, phases: Vec::new(), live_rate: false, draw_secret: String::new() };
        let mut counters = Counters::default();
        let window = seconds * MICROS_PER_SECOND;
        let expected = window / settings.interval();
        for _ in 0..expected + 10 {
            counters.arrive(&settings, START);
        }
        let released_at_start = counters.frontier;
        let mut now = START;
        while now < START + window {
            now = (now + tick_ms * 1000).min(START + window);
            counters.advance(&settings, now);
        }
        let released = counters.frontier - released_at_start;
        prop_assert_eq!(released, expected);
        // Rounding the interval up to whole microseconds costs under 0.2%
        // of the rate up to 100000 a minute.
        let exact = u64::from(rate) as f64 * seconds as f64 / 60.0;
        prop_assert!(released as f64 >= exact * 0.998 - 1.0, "released {released}, exact {exact}");
    }
}

fn quick(rate: u32, burst: u32, quota: Option<u64>, claim_seconds: u64) -> RoomSettings {
    RoomSettings {
        admit_per_minute: rate,
        burst,
        quota,
        paused: false,
        claim_seconds,
        pass_seconds: 1200,
        phases: Vec::new(),
        live_rate: false,
        draw_secret: String::new(),
    }
}

#[test]
fn the_first_visitor_is_admitted_at_once_and_the_rest_wait_in_order() {
    let settings = quick(60, 1, Some(5), 600);
    let mut room = Counters::default();
    let arrivals: Vec<(u64, bool)> = (0..20).map(|_| room.arrive(&settings, START)).collect();
    assert_eq!(arrivals[0], (1, true));
    for (i, (ticket, admitted)) in arrivals.iter().enumerate().skip(1) {
        assert_eq!(*ticket, i as u64 + 1);
        assert!(!admitted, "ticket {ticket} admitted at once");
    }
    // One a second, in order, until the quota is used.
    for second in 1..=4u64 {
        let now = START + second * MICROS_PER_SECOND;
        assert_eq!(room.claim(&settings, 1, second + 2, now), Claim::NotYet);
        assert_eq!(
            room.claim(&settings, 1, second + 1, now),
            Claim::Admitted { fresh: true }
        );
    }
    assert_eq!(room.admitted, 5);
    assert!(room.sold_out(&settings));
    let later = START + 60 * MICROS_PER_SECOND;
    assert_eq!(room.claim(&settings, 1, 6, later), Claim::NotYet);
    assert_eq!(room.frontier, 5, "the frontier stops at the quota");
}

#[test]
fn an_abandoned_slot_expires_and_gives_its_quota_back() {
    let settings = quick(60, 1, Some(2), 60);
    let mut room = Counters::default();
    for _ in 0..4 {
        room.arrive(&settings, START);
    }
    // Ticket 1 was admitted on arrival; ticket 2 is released after a second
    // but its holder is gone.
    room.advance(&settings, START + 2 * MICROS_PER_SECOND);
    assert_eq!(room.frontier, 2);
    assert_eq!(
        room.claim(&settings, 1, 3, START + 3 * MICROS_PER_SECOND),
        Claim::NotYet
    );
    // Past the claim window (plus one checkpoint), slot 2 lapses and slot 3
    // is released in its place.
    let later = START + 64 * MICROS_PER_SECOND;
    assert_eq!(room.claim(&settings, 1, 2, later), Claim::Lapsed);
    assert_eq!(room.wasted, 1);
    assert_eq!(room.frontier, 3);
    assert_eq!(
        room.claim(&settings, 1, 3, later),
        Claim::Admitted { fresh: true }
    );
    assert!(room.sold_out(&settings));
}

#[test]
fn a_released_slot_stays_claimable_for_the_whole_window() {
    let settings = quick(60, 1, None, 60);
    let mut room = Counters::default();
    room.arrive(&settings, START);
    room.arrive(&settings, START);
    room.advance(&settings, START + MICROS_PER_SECOND);
    assert_eq!(room.frontier, 2);
    // Syncs keep running while the holder is away for 59 seconds.
    for s in 2..60 {
        room.advance(&settings, START + s * MICROS_PER_SECOND);
    }
    assert_eq!(
        room.claim(&settings, 1, 2, START + 60 * MICROS_PER_SECOND),
        Claim::Admitted { fresh: true }
    );
}

#[test]
fn pause_stops_the_frontier_and_resume_does_not_burst() {
    let mut settings = quick(60, 1, None, 600);
    let mut room = Counters::default();
    for _ in 0..10 {
        room.arrive(&settings, START);
    }
    settings.paused = true;
    room.advance(&settings, START + 30 * MICROS_PER_SECOND);
    assert_eq!(room.frontier, 1);
    settings.paused = false;
    room.advance(&settings, START + 30 * MICROS_PER_SECOND);
    assert_eq!(room.frontier, 2, "only the burst is released on resume");
}

#[test]
fn reset_drops_old_tickets_but_keeps_the_quota_used() {
    let settings = quick(60, 1, Some(3), 600);
    let mut room = Counters::default();
    room.arrive(&settings, START);
    room.arrive(&settings, START);
    room.reset(&settings, START);
    assert_eq!(room.epoch, 2);
    assert_eq!(
        room.claim(&settings, 1, 2, START + 5 * MICROS_PER_SECOND),
        Claim::Stale
    );
    let (ticket, admitted) = room.arrive(&settings, START + 5 * MICROS_PER_SECOND);
    assert_eq!(ticket, 3, "numbers continue");
    assert!(admitted);
    let (_, admitted) = room.arrive(&settings, START + 10 * MICROS_PER_SECOND);
    assert!(admitted);
    assert!(
        room.sold_out(&settings),
        "ticket 1 and the two new ones use the quota of 3"
    );
}
