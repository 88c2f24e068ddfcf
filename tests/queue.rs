//! Property tests for the queue maths: the invariants of the brief, hammered
//! with random arrivals, claims and gaps in time.

use antre::clock::MICROS_PER_SECOND;
use antre::store::queue::{
    Claim, Counters, Overrides, RoomSettings, SettingsChange, CATCH_UP, EXCHANGE_GRACE,
};
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
    /// The process stalls this many milliseconds with nobody asking: long
    /// enough that a running line falls behind its schedule.
    Stall(u64),
    /// An operator pauses or resumes the room.
    Pause(bool),
    /// An operator sets the rate live.
    Rate(u32),
    /// An operator sets the quota live; below the admissions so far too.
    Quota(Option<u64>),
    /// An operator resets the line: a new epoch.
    Reset,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        30 => (0u64..5_000).prop_map(Step::Wait),
        40 => Just(Step::Arrive),
        40 => any::<usize>().prop_map(Step::Claim),
        10 => Just(Step::Sync),
        2 => (5_000u64..60_000).prop_map(Step::Stall),
        2 => any::<bool>().prop_map(Step::Pause),
        2 => (1u32..600).prop_map(Step::Rate),
        2 => prop::option::of(0u64..40).prop_map(Step::Quota),
        1 => Just(Step::Reset),
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

/// The cached projection agrees with the store's own maths. An instance
/// makes its view at a sync and answers from it until the next, a second
/// later at most: over that second the frontier it projects is what
/// advancing the counters gives (while no slot expires, which the
/// projection leaves aside), and a ticket's release time falling in it is
/// the very moment its turn comes.
fn projection_agrees(
    settings: &RoomSettings,
    counters: &Counters,
    now: u64,
) -> Result<(), TestCaseError> {
    let mut synced = counters.clone();
    synced.advance(settings, now);
    let view = synced.view(settings, now);
    let at_most = now + MICROS_PER_SECOND;
    let advanced = |to: u64| {
        let mut room = synced.clone();
        room.advance(settings, to);
        room
    };
    for at in [now, now + 300_000, at_most] {
        let later = advanced(at);
        if later.floor == synced.floor {
            prop_assert_eq!(
                view.projected_frontier(at),
                later.frontier,
                "at +{} us",
                at - now
            );
        }
    }
    let next = view.projected_frontier(now) + 1;
    let release = view
        .release_time(next, now)
        .filter(|at| next <= synced.tail && *at > now && *at <= at_most);
    if let Some(at) = release {
        let (before, then) = (advanced(at - 1), advanced(at));
        if then.floor == synced.floor {
            prop_assert!(
                before.frontier < next,
                "ticket {} released before {}",
                next,
                at
            );
            prop_assert!(
                then.frontier >= next,
                "ticket {} not released at {}",
                next,
                at
            );
        }
    }
    Ok(())
}

/// Runs `steps`, checking the invariants after each one, and returns the
/// room's counters and the (time, frontier) trace of the first epoch,
/// under the starting settings (empty once an operator changed them).
fn run(start: &RoomSettings, steps: &[Step]) -> Result<(Counters, Vec<(u64, u64)>), TestCaseError> {
    let mut settings = start.clone();
    let mut overrides = Overrides::default();
    let mut counters = Counters::default();
    let mut now = START;
    // Every ticket handed out, with its epoch.
    let mut tickets: Vec<(u64, u64)> = Vec::new();
    let mut admitted_tickets: Vec<(u64, u64)> = Vec::new();
    let mut trace = vec![(now, 0)];
    let mut traced = true;
    let mut exchanged_at = std::collections::HashMap::new();
    // When each number's turn was first seen called, by epoch.
    let mut called: std::collections::HashMap<(u64, u64), u64> = std::collections::HashMap::new();
    // The frontier up to which turns are recorded, and its epoch.
    let mut recorded = (1, 0);
    // The most admissions may reach: the quota, or the admissions already
    // made when an operator lowered it below them.
    let mut cap = settings.quota;
    for step in steps {
        let mut let_in = None;
        let mut frontier_before = counters.frontier;
        let epoch_before = counters.epoch;
        let mut change = SettingsChange::default();
        match step {
            Step::Wait(ms) | Step::Stall(ms) => now += ms * 1000,
            Step::Arrive => {
                let (ticket, admitted) = counters.arrive(&settings, now);
                prop_assert_eq!(
                    ticket,
                    tickets.len() as u64 + 1,
                    "tickets are numbered in order, across resets too"
                );
                tickets.push((counters.epoch, ticket));
                if admitted {
                    admitted_tickets.push((counters.epoch, ticket));
                    exchanged_at.insert(ticket, now);
                }
            }
            Step::Claim(k) if !tickets.is_empty() => {
                let (epoch, ticket) = tickets[k % tickets.len()];
                let before = counters.admitted;
                let quota_before = settings.quota;
                match counters.claim(&settings, epoch, ticket, now) {
                    Claim::Admitted { fresh: true } => {
                        prop_assert_eq!(counters.admitted, before + 1);
                        prop_assert!(
                            quota_before.is_none_or(|q| before < q),
                            "admitted past the quota"
                        );
                        prop_assert!(
                            !admitted_tickets.iter().any(|(_, t)| *t == ticket),
                            "ticket {} counted twice",
                            ticket
                        );
                        let_in = Some((epoch, ticket));
                        admitted_tickets.push((epoch, ticket));
                        exchanged_at.insert(ticket, now);
                    }
                    Claim::Admitted { fresh: false } => {
                        prop_assert_eq!(counters.admitted, before);
                        prop_assert!(admitted_tickets.iter().any(|(_, t)| *t == ticket));
                        // Again only within the grace of the exchange.
                        prop_assert!(now - exchanged_at[&ticket] <= EXCHANGE_GRACE);
                    }
                    Claim::Spent => {
                        prop_assert_eq!(counters.admitted, before);
                        prop_assert!(now - exchanged_at[&ticket] > EXCHANGE_GRACE);
                    }
                    Claim::NotYet => prop_assert!(ticket > counters.frontier),
                    Claim::Lapsed => prop_assert!(ticket <= counters.floor),
                    Claim::SoldOut => prop_assert!(counters.sold_out(&settings)),
                    Claim::Stale => {
                        prop_assert!(epoch != counters.epoch, "stale only after a reset")
                    }
                }
            }
            Step::Claim(_) => {}
            Step::Sync => {
                counters.advance(&settings, now);
            }
            Step::Pause(paused) => change.paused = Some(*paused),
            Step::Rate(rate) => change.admit_per_minute = Some(*rate),
            Step::Quota(quota) => change.quota = Some(*quota),
            Step::Reset => {
                counters.reset(&settings, now);
                prop_assert_eq!(counters.epoch, epoch_before + 1);
                prop_assert_eq!(counters.frontier, counters.tail);
                traced = false;
            }
        }
        if change != SettingsChange::default() {
            // As the stores do: up to date under the old settings first.
            counters.advance(&settings, now);
            prop_assert!(counters.frontier >= frontier_before);
            frontier_before = counters.frontier;
            settings.change(&change, &mut overrides);
            counters.advance(&settings, now);
            if let Some(quota) = change.quota {
                cap = quota.map(|q| q.max(counters.admitted));
            }
            traced = false;
        }
        // FIFO, from what was seen: when a ticket is let in, everyone ahead
        // of it in its epoch has had their turn called already.
        if counters.epoch == recorded.0 {
            for number in recorded.1 + 1..=counters.frontier {
                called.entry((counters.epoch, number)).or_insert(now);
            }
        }
        recorded = (counters.epoch, counters.frontier);
        if let Some((epoch, ticket)) = let_in {
            for (number_epoch, number) in &tickets {
                if *number_epoch == epoch && *number < ticket {
                    let turn = called.get(&(epoch, *number));
                    prop_assert!(
                        turn.is_some_and(|at| *at <= now),
                        "ticket {} let in before {}'s turn came",
                        ticket,
                        number
                    );
                }
            }
        }
        if settings.paused && counters.epoch == epoch_before && !matches!(step, Step::Pause(_)) {
            prop_assert_eq!(
                counters.frontier,
                frontier_before,
                "paused, the line stands still"
            );
        }
        // Never more admissions than the quota allows.
        if let Some(cap) = cap {
            prop_assert!(
                counters.admitted <= cap,
                "admitted {} > {}",
                counters.admitted,
                cap
            );
        }
        if let Some(quota) = settings.quota {
            // A release only ever for a slot that exists.
            if counters.frontier > frontier_before && counters.epoch == epoch_before {
                prop_assert!(counters.admitted + counters.outstanding() <= quota);
            }
        }
        // The frontier never goes back.
        prop_assert!(counters.frontier >= frontier_before);
        // Every released number is admitted, wasted or outstanding.
        prop_assert_eq!(
            counters.frontier,
            counters.admitted + counters.wasted + counters.outstanding()
        );
        prop_assert!(counters.floor <= counters.frontier && counters.frontier <= counters.tail);
        prop_assert_eq!(counters.admitted, admitted_tickets.len() as u64);
        projection_agrees(&settings, &counters, now)?;
        // Waiting alone moves nothing: the frontier is evaluated lazily, so
        // only steps that advance the room are observations of it.
        if traced && !matches!(step, Step::Wait(_) | Step::Stall(_)) {
            trace.push((now, counters.frontier));
        }
    }
    if !traced {
        trace.clear();
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

    /// After a stall longer than the catch-up, a running line resumes at
    /// its rate: the first advance releases at most the burst and what the
    /// catch-up allows, not the whole gap.
    #[test]
    fn a_stall_is_not_released_all_at_once(rate in 60u32..6000, stall in 6_000u64..120_000) {
        let settings = RoomSettings { admit_per_minute: rate, burst: 1, quota: None, paused: false, claim_seconds: 600, pass_seconds: 1200, phases: Vec::new(), live_rate: false, draw_secret: String::new() };
        let mut counters = Counters::default();
        for _ in 0..10_000 {
            counters.arrive(&settings, START);
        }
        counters.advance(&settings, START + MICROS_PER_SECOND);
        prop_assert!(counters.running);
        let before = counters.frontier;
        counters.advance(&settings, START + MICROS_PER_SECOND + stall * 1000);
        let interval = settings.interval();
        let allowed = 1 + (CATCH_UP + interval) / interval;
        prop_assert!(counters.frontier - before <= allowed, "released {} after a {} ms stall, allowed {}", counters.frontier - before, stall, allowed);
        prop_assert!(counters.frontier > before, "the line resumes");
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
