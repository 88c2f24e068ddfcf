//! One conformance suite for every store: the in-process store, a single
//! Redis and a three-master Redis Cluster must give the same answers and the
//! same counters for the same operations at the same times.

mod common;

use std::sync::Arc;

use antre::clock::MICROS_PER_SECOND;
use antre::store::{
    AnyStore, AuditEntry, Claim, Entry, MemoryStore, Phase, RedisStore, RoomSettings, RoomView,
    SettingsChange, Standing, Store, StoreError, AUDIT_KEEP,
};
use common::{RedisCluster, RedisServer};

const START: u64 = 1_800_000_000 * MICROS_PER_SECOND;

/// A small deterministic random source, so failures replay exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, PartialEq)]
enum Answer {
    View(RoomView),
    Arrival(u64, bool, RoomView),
    Claim(Claim, RoomView),
    /// A ticket from before a phase brought back to it.
    Back(u64, Claim, RoomView),
    /// An entry in a phase's draw.
    Entered(u64, Entry, RoomView),
    /// The line reset mid-way.
    Reset(RoomView),
    /// A paid arrival: the ticket, or `None` when its nonce was spent.
    Paid(Option<(u64, bool)>),
    Bound(bool),
}

/// Drives `store` through a random but seeded sequence and records every
/// answer.
async fn script<S: Store>(store: &S, room: &str, seed: u64, steps: usize) -> Vec<Answer> {
    let mut rng = Rng(seed);
    let mut settings = RoomSettings {
        admit_per_minute: 1 + rng.below(600) as u32,
        burst: 1 + rng.below(3) as u32,
        quota: if rng.below(2) == 0 {
            Some(1 + rng.below(40))
        } else {
            None
        },
        paused: false,
        claim_seconds: 1 + rng.below(60),
        pass_seconds: 60 * (1 + rng.below(30)),
        phases: Vec::new(),
        live_rate: false,
        draw_secret: String::new(),
    };
    if rng.below(2) == 0 {
        // A schedule: phases with gaps (or none) between them, each with
        // its quota and a rate or a spread, over the minute or so the steps
        // cover.
        let mut at = START + rng.below(10_000_000);
        for _ in 0..1 + rng.below(3) {
            let end = at + 2_000_000 + rng.below(30_000_000);
            settings.phases.push(Phase {
                start: at,
                end,
                quota: 1 + rng.below(15),
                admit_per_minute: if rng.below(2) == 0 {
                    0
                } else {
                    1 + rng.below(600) as u32
                },
                // Half the phases draw among those who come in the last
                // few seconds before they open.
                prequeue: rng.below(2) * rng.below(8_000_000),
            });
            at = end + rng.below(2) * rng.below(15_000_000);
            let last = settings.phases.len() - 1;
            if last > 0 && settings.phases[last].start - settings.phases[last].prequeue < end {
                settings.phases[last].prequeue = 0;
            }
        }
        settings.draw_secret = format!("secret-{seed}");
        // Short claim windows, so turns lapse within a phase and people
        // come back after theirs.
        settings.claim_seconds = 1 + settings.claim_seconds % 8;
    }
    let mut now = START;
    let mut answers = vec![Answer::View(
        store.configure(room, &settings, now).await.unwrap(),
    )];
    let mut tail = 0;
    // The epoch claims name: mostly the current one, after a reset now
    // and then the old one.
    let mut epoch = 1;
    for _ in 0..steps {
        match rng.below(12) {
            0..=2 => now += rng.below(3_000_000),
            3..=5 if !settings.phases.is_empty() && rng.below(3) == 0 => {
                // Someone enters a draw, or asks what it gave them: ids
                // repeat, and now and then the phase is one not drawing.
                let id = 1 + rng.below(6);
                let drawing = settings.phases.iter().find(|p| p.drawing(now));
                let opened = settings.phases.iter().rfind(|p| p.start <= now);
                let phase = match (drawing, opened) {
                    (Some(drawing), _) if rng.below(4) > 0 => *drawing,
                    (None, Some(opened)) if rng.below(4) > 0 => *opened,
                    _ => settings.phases[rng.below(settings.phases.len() as u64) as usize],
                };
                let (entry, view) = store
                    .enter_draw(room, epoch, id, phase.start, now)
                    .await
                    .unwrap();
                if let Entry::Drawn(ticket) = entry {
                    tail = tail.max(ticket);
                }
                answers.push(Answer::Entered(id, entry, view));
            }
            3..=5 => {
                let arrival = store.arrive(room, now).await.unwrap();
                tail = arrival.ticket;
                answers.push(Answer::Arrival(
                    arrival.ticket,
                    arrival.admitted,
                    arrival.view,
                ));
            }
            6..=7 if tail > 0 && !settings.phases.is_empty() && rng.below(3) == 0 => {
                // Someone comes back to a phase (now and then one that is
                // not open) with a ticket from before it, mostly one whose
                // turn has come.
                let reached = answers.iter().rev().find_map(|answer| match answer {
                    Answer::View(view)
                    | Answer::Arrival(_, _, view)
                    | Answer::Claim(_, view)
                    | Answer::Back(_, _, view)
                    | Answer::Entered(_, _, view)
                    | Answer::Reset(view) => Some(view.frontier),
                    _ => None,
                });
                let ticket = match reached {
                    Some(frontier) if frontier > 0 && rng.below(4) > 0 => 1 + rng.below(frontier),
                    _ => 1 + rng.below(tail),
                };
                let any = settings.phases[rng.below(settings.phases.len() as u64) as usize];
                let phase = match settings.phase_at(now) {
                    Some(open) if rng.below(4) > 0 => *open,
                    _ => any,
                };
                let (claim, view) = store
                    .come_back(room, epoch, ticket, phase.start, now)
                    .await
                    .unwrap();
                answers.push(Answer::Back(ticket, claim, view));
            }
            6..=7 if tail > 0 => {
                let ticket = 1 + rng.below(tail);
                let named = if rng.below(8) == 0 { 1 } else { epoch };
                let (claim, view) = store.claim(room, named, ticket, now).await.unwrap();
                answers.push(Answer::Claim(claim, view));
            }
            8 => answers.push(Answer::View(store.sync(room, now).await.unwrap())),
            9 if rng.below(4) == 0 => {
                // An operator changes something live...
                let change = match rng.below(4) {
                    0 => SettingsChange {
                        admit_per_minute: Some(1 + rng.below(900) as u32),
                        ..SettingsChange::default()
                    },
                    1 => SettingsChange {
                        quota: Some(if rng.below(3) == 0 {
                            None
                        } else {
                            Some(rng.below(50))
                        }),
                        ..SettingsChange::default()
                    },
                    2 => SettingsChange {
                        paused: Some(rng.below(2) == 0),
                        ..SettingsChange::default()
                    },
                    _ => SettingsChange {
                        pass_seconds: Some(60 * (1 + rng.below(60))),
                        ..SettingsChange::default()
                    },
                };
                answers.push(Answer::View(
                    store.update(room, &change, now).await.unwrap(),
                ));
            }
            9 if rng.below(3) == 0 => {
                // ...and an instance restarts with its config, which must
                // not undo what the operator changed.
                settings.burst = 1 + rng.below(3) as u32;
                answers.push(Answer::View(
                    store.configure(room, &settings, now).await.unwrap(),
                ));
            }
            10 if rng.below(30) == 0 => {
                // An operator resets the line mid-way: old tickets stop
                // counting, numbers go on, claims and draws follow.
                let view = store.reset(room, now).await.unwrap();
                epoch = view.epoch;
                answers.push(Answer::Reset(view));
            }
            10 => {
                // A proof of work buys one ticket: nonces repeat here.
                let nonce = rng.below(8);
                let expires = now + rng.below(20_000_000);
                match store.arrive_paid(room, now, nonce, expires).await {
                    Ok(arrival) => {
                        tail = arrival.ticket;
                        answers.push(Answer::Paid(Some((arrival.ticket, arrival.admitted))));
                    }
                    Err(StoreError::Spent) => answers.push(Answer::Paid(None)),
                    Err(e) => panic!("{e}"),
                }
            }
            11 => {
                // A pass used from a few networks; at most three count.
                let pass = rng.below(4);
                let networks = [1 + rng.below(6), 1 + rng.below(6)];
                let until = now + 3600 * MICROS_PER_SECOND;
                let bound = store
                    .bind_pass(room, pass, &networks, 3, until, now)
                    .await
                    .unwrap();
                answers.push(Answer::Bound(bound));
            }
            _ => {}
        }
    }
    let (claim, view) = store.claim(room, 0, 1, now).await.unwrap();
    answers.push(Answer::Claim(claim, view));
    answers.push(Answer::View(store.reset(room, now).await.unwrap()));
    let arrival = store.arrive(room, now + MICROS_PER_SECOND).await.unwrap();
    answers.push(Answer::Arrival(
        arrival.ticket,
        arrival.admitted,
        arrival.view,
    ));
    answers
}

/// A live change reaches the store's view at once and survives an
/// instance restarting with a config that says otherwise.
async fn live_changes_survive_a_restart<S: Store>(store: &S, label: &str) {
    let config = RoomSettings {
        admit_per_minute: 60,
        burst: 1,
        quota: Some(100),
        paused: false,
        claim_seconds: 600,
        pass_seconds: 1200,
        phases: Vec::new(),
        live_rate: false,
        draw_secret: String::new(),
    };
    store.configure("live", &config, START).await.unwrap();
    let change = SettingsChange {
        admit_per_minute: Some(600),
        quota: Some(None),
        paused: Some(true),
        pass_seconds: None,
    };
    let view = store.update("live", &change, START).await.unwrap();
    assert_eq!(
        (
            view.settings.admit_per_minute,
            view.settings.quota,
            view.settings.paused
        ),
        (600, None, true),
        "{label}"
    );
    let restarted = RoomSettings {
        burst: 3,
        pass_seconds: 600,
        ..config
    };
    let view = store.configure("live", &restarted, START).await.unwrap();
    assert_eq!(
        view.settings.admit_per_minute, 600,
        "{label}: the live rate stays"
    );
    assert_eq!(view.settings.quota, None, "{label}: the live quota stays");
    assert!(view.settings.paused, "{label}: the live pause stays");
    assert_eq!(
        view.settings.burst, 3,
        "{label}: the config still sets the rest"
    );
    assert_eq!(
        view.settings.pass_seconds, 600,
        "{label}: the config still sets the rest"
    );
}

/// The audit trail keeps the newest entries, oldest first, up to its limit.
async fn audit_trail<S: Store>(store: &S, label: &str) {
    store
        .configure("audited", &one_a_second(10), START)
        .await
        .unwrap();
    assert!(store.audit(10).await.unwrap().is_empty(), "{label}");
    let entry = |n: u64| AuditEntry {
        at: 1_800_000_000 + n,
        who: format!("operator-{n}"),
        room: "audited".into(),
        change: serde_json::json!({"admit_per_minute": n}),
    };
    for n in 1..=(AUDIT_KEEP as u64 + 5) {
        store.record(&entry(n)).await.unwrap();
    }
    let newest = store.audit(3).await.unwrap();
    let last = AUDIT_KEEP as u64 + 5;
    assert_eq!(
        newest,
        vec![entry(last - 2), entry(last - 1), entry(last)],
        "{label}"
    );
    let all = store.audit(AUDIT_KEEP * 2).await.unwrap();
    assert_eq!(all.len(), AUDIT_KEEP, "{label}: the oldest are dropped");
    assert_eq!(all[0], entry(6), "{label}");
    // The trail belongs to the fleet, not to a room: a change to a room
    // only another instance's config has is kept too.
    let elsewhere = AuditEntry {
        room: "elsewhere".into(),
        ..entry(0)
    };
    store.record(&elsewhere).await.unwrap();
    assert_eq!(store.audit(1).await.unwrap(), vec![elsewhere], "{label}");
}

/// Karawang: 2,000 doses over five days, 400 a day from 08:00 to 16:00,
/// spread evenly and never faster. 3,000 people take a number on the
/// first morning. Each day admits its 400 at an even pace and not one
/// more, in ticket order, nobody at night. From the fourth day every tenth
/// person never comes back for their turn: their slots are spread over the
/// rest of the day rather than lost.
async fn karawang<S: Store>(store: &S, label: &str) {
    const HOUR: u64 = 3600 * MICROS_PER_SECOND;
    const DAY: u64 = 24 * HOUR;
    let opening = START + 8 * HOUR;
    let settings = RoomSettings {
        admit_per_minute: 1,
        burst: 1,
        quota: Some(2000),
        paused: false,
        claim_seconds: 600,
        pass_seconds: 1200,
        phases: (0..5)
            .map(|day| Phase {
                start: opening + day * DAY,
                end: opening + day * DAY + 8 * HOUR,
                quota: 400,
                admit_per_minute: 0,
                prequeue: 0,
            })
            .collect(),
        live_rate: false,
        draw_secret: String::new(),
    };
    let room = "karawang";
    let view = store.configure(room, &settings, START).await.unwrap();
    assert_eq!(
        view.standing(START),
        Standing::Closed {
            next: Some(opening)
        },
        "{label}"
    );
    let mut admitted: Vec<(u64, u64)> = Vec::new();
    for _ in 0..3000 {
        let arrival = store.arrive(room, opening).await.unwrap();
        if arrival.admitted {
            admitted.push((opening, arrival.ticket));
        }
    }
    let away = |ticket: u64| ticket > 1200 && ticket.is_multiple_of(10);
    // The background sync runs several times a second; a step within
    // queue::CATCH_UP keeps exact time.
    let step = 4 * MICROS_PER_SECOND;
    let mut next_claim = 1;
    for day in 0..5 {
        let open = opening + day * DAY;
        let mut now = open;
        while now <= open + 8 * HOUR + 20 * 60 * MICROS_PER_SECOND {
            let view = store.sync(room, now).await.unwrap();
            while next_claim <= view.frontier {
                if !away(next_claim) {
                    let (claim, _) = store.claim(room, 1, next_claim, now).await.unwrap();
                    if claim == (Claim::Admitted { fresh: true }) {
                        admitted.push((now, next_claim));
                    }
                }
                next_claim += 1;
            }
            now += step;
        }
        // Overnight nothing moves.
        let night = open + 16 * HOUR;
        let before = store.sync(room, night).await.unwrap();
        let after = store.sync(room, night + 4 * HOUR).await.unwrap();
        assert_eq!(before.frontier, after.frontier, "{label}: day {day} night");
        assert!(
            matches!(after.standing(night + 4 * HOUR), Standing::Closed { .. }),
            "{label}"
        );
    }
    let tickets: Vec<u64> = admitted.iter().map(|(_, t)| *t).collect();
    assert!(
        tickets.windows(2).all(|w| w[0] < w[1]),
        "{label}: in ticket order"
    );
    for day in 0..5 {
        let open = opening + day * DAY;
        let in_day: Vec<u64> = admitted
            .iter()
            .filter(|(at, _)| (open..open + DAY).contains(at))
            .map(|(at, _)| at - open)
            .collect();
        let everyone_came = day < 3;
        // A slot that lapses after closing is lost to that day.
        let least = if everyone_came { 400 } else { 390 };
        assert!(
            (least..=400).contains(&in_day.len()),
            "{label}: day {day} admitted {}",
            in_day.len()
        );
        assert!(
            in_day
                .iter()
                .all(|at| *at <= 8 * HOUR + 10 * 60 * MICROS_PER_SECOND),
            "{label}: day {day}: nobody after closing but those called before it"
        );
        // Even: each hour takes its share, 50, give or take the one in
        // flight at the hour's edge; with slots given back, a later hour
        // takes its share of those too.
        for hour in 0..8 {
            let in_hour = in_day
                .iter()
                .filter(|at| (hour * HOUR..(hour + 1) * HOUR).contains(*at))
                .count();
            let band = if everyone_came { 49..=51 } else { 40..=62 };
            assert!(
                band.contains(&in_hour),
                "{label}: day {day} hour {hour}: {in_hour} admitted"
            );
        }
    }
    let last = store.sync(room, opening + 5 * DAY).await.unwrap();
    assert_eq!(last.admitted, admitted.len() as u64, "{label}");
    assert_eq!(
        last.standing(opening + 5 * DAY),
        Standing::Closed { next: None },
        "{label}"
    );
}

/// A Balikpapan-style campaign over two mornings, 100 places the first
/// and 90 the second. 160 people come the first morning: 1 to 100 get in,
/// 101 to 160 are left waiting when it sells out, and come back the second
/// morning with their return tickets. Those there at the opening (101 to
/// 140) are let in first, in their order; newcomers are numbered on from
/// 161; those who come back only after their turn has passed (141 to 160)
/// are let in on their return while places last, and not one more than
/// the 90 is admitted. A return ticket works once.
async fn balikpapan<S: Store>(store: &S, label: &str) {
    const HOUR: u64 = 3600 * MICROS_PER_SECOND;
    const DAY: u64 = 24 * HOUR;
    let opening = START + 9 * HOUR;
    let second = opening + DAY;
    let settings = RoomSettings {
        admit_per_minute: 1,
        burst: 1,
        quota: None,
        paused: false,
        claim_seconds: 600,
        pass_seconds: 1200,
        phases: vec![
            Phase {
                start: opening,
                end: opening + 3 * HOUR,
                quota: 100,
                admit_per_minute: 60,
                prequeue: 0,
            },
            Phase {
                start: second,
                end: second + 3 * HOUR,
                quota: 90,
                admit_per_minute: 60,
                prequeue: 0,
            },
        ],
        live_rate: false,
        draw_secret: String::new(),
    };
    let room = "balikpapan";
    store.configure(room, &settings, START).await.unwrap();
    let mut first_day = Vec::new();
    for _ in 0..160 {
        let arrival = store.arrive(room, opening).await.unwrap();
        if arrival.admitted {
            first_day.push(arrival.ticket);
        }
    }
    // The first morning: everyone claims on their turn.
    let mut now = opening;
    let mut next = first_day.len() as u64 + 1;
    while now < opening + HOUR {
        let view = store.sync(room, now).await.unwrap();
        while next <= view.frontier.min(160) {
            if let (Claim::Admitted { fresh: true }, _) =
                store.claim(room, 1, next, now).await.unwrap()
            {
                first_day.push(next);
            }
            next += 1;
        }
        now += 2 * MICROS_PER_SECOND;
    }
    assert_eq!(first_day, (1..=100).collect::<Vec<_>>(), "{label}");
    let view = store.sync(room, opening + 2 * HOUR).await.unwrap();
    assert_eq!(
        view.frontier, 100,
        "{label}: nobody beyond the quota called"
    );
    assert_eq!(
        view.standing(opening + 2 * HOUR),
        Standing::SoldOut { next: Some(second) },
        "{label}"
    );
    // Before the second morning a return ticket does not get in yet.
    let (early, _) = store
        .come_back(room, 1, 101, second, second - HOUR)
        .await
        .unwrap();
    assert_eq!(early, Claim::NotYet, "{label}");

    // The second morning: newcomers a few seconds after the opening.
    let mut newcomers = Vec::new();
    for _ in 0..40 {
        let arrival = store
            .arrive(room, second + 5 * MICROS_PER_SECOND)
            .await
            .unwrap();
        assert!(
            !arrival.admitted,
            "{label}: a newcomer waits behind the returners"
        );
        newcomers.push(arrival.ticket);
    }
    assert_eq!(
        newcomers,
        (161..=200).collect::<Vec<_>>(),
        "{label}: numbers go on"
    );
    let mut second_day = Vec::new();
    let mut now = second + 5 * MICROS_PER_SECOND;
    let mut next = 101;
    while now < second + 30 * 60 * MICROS_PER_SECOND {
        let view = store.sync(room, now).await.unwrap();
        while next <= view.frontier {
            let (claim, _) = if next <= 160 {
                if next > 140 {
                    next += 1;
                    continue;
                }
                store.come_back(room, 1, next, second, now).await.unwrap()
            } else {
                store.claim(room, 1, next, now).await.unwrap()
            };
            assert_eq!(claim, Claim::Admitted { fresh: true }, "{label}: {next}");
            second_day.push(next);
            next += 1;
        }
        now += 2 * MICROS_PER_SECOND;
    }
    let expected: Vec<u64> = (101..=140).chain(161..=200).collect();
    assert_eq!(second_day, expected, "{label}: returners first, in order");
    // The latecomers among them: their turns lapsed at ten minutes, and
    // the quota they gave back went to the newcomers behind them. Ten
    // places are left, and go to the first ten who come back.
    let late = second + HOUR;
    let mut answers = Vec::new();
    for ticket in 141..=160 {
        let (claim, view) = store
            .come_back(room, 1, ticket, second, late)
            .await
            .unwrap();
        assert!(view.admitted <= 100 + 90, "{label}: never past the quota");
        answers.push(claim);
    }
    let admitted = answers
        .iter()
        .filter(|c| **c == Claim::Admitted { fresh: true })
        .count();
    assert_eq!(admitted, 10, "{label}: {answers:?}");
    assert!(
        answers[..10]
            .iter()
            .all(|c| *c == Claim::Admitted { fresh: true }),
        "{label}: {answers:?}"
    );
    assert!(
        answers[10..].iter().all(|c| *c == Claim::SoldOut),
        "{label}"
    );
    let view = store.sync(room, late).await.unwrap();
    assert_eq!(view.admitted, 190, "{label}");
    // Used again at once, it gives the same pass (a retry); later, nothing.
    let (again, _) = store.come_back(room, 1, 141, second, late).await.unwrap();
    assert_eq!(again, Claim::Admitted { fresh: false }, "{label}");
    let (spent, _) = store
        .come_back(room, 1, 141, second, late + HOUR)
        .await
        .unwrap();
    assert_eq!(spent, Claim::Spent, "{label}");
    // A newcomer's ticket is no return ticket: its lapsed turn is gone.
    let (lapsed, _) = store
        .come_back(room, 1, 170, second, late + HOUR)
        .await
        .unwrap();
    assert_ne!(lapsed, Claim::Admitted { fresh: true }, "{label}");
}

/// A draw among those who come in the ten minutes before a phase opens:
/// each entry is told it is in, at the opening all are numbered in the
/// order the draw's seed gives (the same on every store, and the one
/// `antre::draw` computes from the seed), ahead of anyone arriving after
/// the opening; an entry before the pre-queue or after the opening is not
/// in the draw.
async fn draw<S: Store>(store: &S, label: &str) {
    const MINUTE: u64 = 60 * MICROS_PER_SECOND;
    let opening = START + 60 * MINUTE;
    let settings = RoomSettings {
        admit_per_minute: 1,
        burst: 1,
        quota: None,
        paused: false,
        claim_seconds: 600,
        pass_seconds: 1200,
        phases: vec![Phase {
            start: opening,
            end: opening + 60 * MINUTE,
            quota: 150,
            admit_per_minute: 600,
            prequeue: 10 * MINUTE,
        }],
        live_rate: false,
        draw_secret: "the room's secret".into(),
    };
    let room = "undian";
    store.configure(room, &settings, START).await.unwrap();
    let (early, _) = store
        .enter_draw(room, 1, 999, opening, opening - 11 * MINUTE)
        .await
        .unwrap();
    assert_eq!(early, Entry::Missed, "{label}: before the pre-queue");
    let mut rng = Rng(4242);
    let ids: Vec<u64> = (0..200).map(|_| 1 + rng.below(1 << 53)).collect();
    for (i, id) in ids.iter().enumerate() {
        let at = opening - 10 * MINUTE + i as u64 * 2 * MICROS_PER_SECOND;
        let (entry, view) = store.enter_draw(room, 1, *id, opening, at).await.unwrap();
        assert_eq!(entry, Entry::Entered, "{label}");
        assert_eq!(view.tail, 0, "{label}: nobody is numbered before the draw");
    }
    // Entering twice changes nothing.
    let again = store
        .enter_draw(room, 1, ids[0], opening, opening - MICROS_PER_SECOND)
        .await
        .unwrap();
    assert_eq!(again.0, Entry::Entered, "{label}");
    // The first newcomer after the opening comes behind the whole group.
    let newcomer = store.arrive(room, opening).await.unwrap();
    assert_eq!(newcomer.ticket, 201, "{label}");
    let seed = antre::draw::seed("the room's secret", opening);
    let expected = antre::draw::order(&seed, &ids);
    let mut numbered = vec![0; 200];
    for id in &ids {
        let (entry, _) = store
            .enter_draw(room, 1, *id, opening, opening + MICROS_PER_SECOND)
            .await
            .unwrap();
        let Entry::Drawn(ticket) = entry else {
            panic!("{label}: {entry:?}");
        };
        numbered[ticket as usize - 1] = *id;
    }
    assert_eq!(numbered, expected, "{label}: the order the seed gives");
    let (phase, list) = store.drawn(room).await.unwrap();
    assert_eq!(phase, opening, "{label}");
    let published: Vec<u64> = list.iter().map(|(id, _)| *id).collect();
    assert_eq!(published, expected, "{label}: in ticket order");
    let (late, _) = store
        .enter_draw(room, 1, 7, opening, opening + MICROS_PER_SECOND)
        .await
        .unwrap();
    assert_eq!(late, Entry::Missed, "{label}: after the opening");
    // The line moves through the drawn group first.
    let view = store.sync(room, opening + MINUTE).await.unwrap();
    assert!(
        view.frontier >= 2 && view.frontier < 201,
        "{label}: {}",
        view.frontier
    );
    let (claim, _) = store.claim(room, 1, 1, opening + MINUTE).await.unwrap();
    assert_eq!(claim, Claim::Admitted { fresh: true }, "{label}");
}

/// Malang's two segments: residents and others each have their own line
/// and quota, kept apart; at a set time the others' unused places move to
/// the residents, once, however often an instance asks.
async fn segments<S: Store>(store: &S, label: &str) {
    let segment = |quota: u64| RoomSettings {
        admit_per_minute: 60,
        burst: 1,
        quota: Some(quota),
        paused: false,
        claim_seconds: 600,
        pass_seconds: 1200,
        phases: Vec::new(),
        live_rate: false,
        draw_secret: String::new(),
    };
    store.configure("warga", &segment(10), START).await.unwrap();
    store.configure("luar", &segment(5), START).await.unwrap();
    // Fifteen residents and three others come.
    for _ in 0..15 {
        store.arrive("warga", START).await.unwrap();
    }
    for _ in 0..3 {
        store.arrive("luar", START).await.unwrap();
    }
    // A minute on, the background sync keeping time each second: the
    // residents' ten are in, the others' line is through.
    let later = START + 60 * MICROS_PER_SECOND;
    for second in 1..=60 {
        let now = START + second * MICROS_PER_SECOND;
        store.sync("warga", now).await.unwrap();
        store.sync("luar", now).await.unwrap();
    }
    for ticket in 1..=15 {
        store.claim("warga", 1, ticket, later).await.unwrap();
    }
    store.claim("luar", 1, 2, later).await.unwrap();
    let warga = store.sync("warga", later).await.unwrap();
    let luar = store.sync("luar", later).await.unwrap();
    assert_eq!(
        (warga.admitted, warga.sold_out(later)),
        (10, true),
        "{label}"
    );
    assert_eq!(luar.admitted, 2, "{label}: the first arrival and ticket 2");
    assert_eq!(luar.quota_left(later), Some(3), "{label}: kept apart");
    // Before the set time nothing moves.
    let at = later + 60 * MICROS_PER_SECOND;
    assert_eq!(store.give("luar", at, later).await.unwrap().0, 0, "{label}");
    // At it, the others' unused places go: five, less two let in and
    // ticket 3, whose turn was called and may still be taken.
    let (given, luar) = store.give("luar", at, at).await.unwrap();
    assert_eq!(given, 2, "{label}");
    assert_eq!(
        luar.quota_left(at),
        Some(1),
        "{label}: ticket 3's place is kept"
    );
    let (again, _) = store
        .give("luar", at, at + MICROS_PER_SECOND)
        .await
        .unwrap();
    assert_eq!(
        again, 2,
        "{label}: asked again, the same answer and no more"
    );
    for _ in 0..2 {
        let view = store.receive("warga", "luar", at, given, at).await.unwrap();
        assert_eq!(view.quota_left(at), Some(2), "{label}: taken once");
    }
    let (claim, _) = store.claim("luar", 1, 3, at).await.unwrap();
    assert_eq!(claim, Claim::Admitted { fresh: true }, "{label}");
    let luar = store.sync("luar", at).await.unwrap();
    assert!(luar.sold_out(at), "{label}");
    // The residents' line moves on into the two places.
    let (claim, _) = store
        .claim("warga", 1, 11, at + 10 * MICROS_PER_SECOND)
        .await
        .unwrap();
    assert_eq!(claim, Claim::Admitted { fresh: true }, "{label}");
}

/// Places promised while the store could not be reached: each promise
/// becomes a ticket behind everyone already in line, and asking again with
/// it gives the same ticket. Redis gathers the promises of one outage for
/// a few seconds and numbers them in arrival order; the in-process store,
/// never unreachable to some instances and not others, numbers each at
/// once.
async fn promises<S: Store>(store: &S, label: &str, in_arrival_order: bool) {
    let room = "janji";
    store
        .configure(room, &one_a_second(100), START)
        .await
        .unwrap();
    for _ in 0..3 {
        store.arrive(room, START).await.unwrap();
    }
    let now = START + MICROS_PER_SECOND;
    // "b" came before "a", but asks after it.
    let mut asked = [("a", 2_000u64, None), ("b", 1_000, None)];
    let mut at = now;
    while asked.iter().any(|(_, _, ticket)| ticket.is_none()) {
        assert!(
            at < now + 10 * MICROS_PER_SECOND,
            "{label}: promises never settled"
        );
        for (member, arrival, ticket) in &mut asked {
            if ticket.is_none() {
                *ticket = store
                    .arrive_pending(room, member, *arrival, at)
                    .await
                    .unwrap()
                    .map(|a| a.ticket);
            }
        }
        at += MICROS_PER_SECOND;
    }
    let (a, b) = (asked[0].2.unwrap(), asked[1].2.unwrap());
    let mut both = [a, b];
    both.sort_unstable();
    assert_eq!(both, [4, 5], "{label}: behind the three already in line");
    if in_arrival_order {
        assert!(b < a, "{label}: in arrival order");
    }
    for (member, arrival, ticket) in asked {
        let again = store
            .arrive_pending(room, member, arrival, at)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            Some(again.ticket),
            ticket,
            "{label}: asked again, the same ticket"
        );
    }
    assert_eq!(store.sync(room, at).await.unwrap().tail, 5, "{label}");
}

async fn conforms<S: Store>(store: &S, label: &str) {
    live_changes_survive_a_restart(store, label).await;
    audit_trail(store, label).await;
    karawang(store, label).await;
    balikpapan(store, label).await;
    draw(store, label).await;
    segments(store, label).await;
    let mut seen = [false; 6];
    for seed in 1..=24u64 {
        let room = format!("room-{seed}");
        let reference = script(&MemoryStore::ephemeral(), &room, seed * 7919, 150).await;
        let answers = script(store, &room, seed * 7919, 150).await;
        for (step, (expected, got)) in reference.iter().zip(&answers).enumerate() {
            assert_eq!(
                got, expected,
                "{label}: seed {seed}, step {step} differs from the in-process store"
            );
        }
        assert_eq!(answers.len(), reference.len());
        for answer in &answers {
            match answer {
                Answer::Claim(Claim::Spent, _) => seen[0] = true,
                Answer::Paid(None) => seen[1] = true,
                Answer::Bound(false) => seen[2] = true,
                Answer::Back(ticket, Claim::Admitted { fresh: true }, view)
                    if *ticket <= view.floor =>
                {
                    seen[3] = true
                }
                Answer::Entered(_, Entry::Drawn(_), _) => seen[4] = true,
                Answer::Reset(_) => seen[5] = true,
                _ => {}
            }
        }
    }
    // The steps reach a ticket spent after its grace, a nonce offered
    // twice, a pass past its networks and someone let in on their return
    // after their turn had lapsed, a draw that numbered its entries, and
    // a reset mid-way with steps after it.
    assert_eq!(seen, [true; 6], "{label}");
}

#[tokio::test]
async fn the_memory_store_conforms_through_any_store() {
    let store = AnyStore::Memory(Arc::new(MemoryStore::ephemeral()));
    conforms(&store, "memory").await;
    promises(&store, "memory", false).await;
}

#[tokio::test]
async fn a_single_redis_conforms() {
    let redis = RedisServer::start();
    let store = RedisStore::single(&redis.url(), "antre").unwrap();
    conforms(&store, "redis").await;
    promises(&store, "redis", true).await;
}

#[tokio::test]
async fn a_redis_cluster_conforms_and_spreads_rooms() {
    let cluster = RedisCluster::start();
    let store = RedisStore::cluster(&cluster.urls(), "antre").unwrap();
    conforms(&store, "cluster").await;
    promises(&store, "cluster", true).await;
    // The rooms' keys landed on more than one master.
    let holding = cluster
        .nodes
        .iter()
        .filter(|node| node.cli(&["DBSIZE"]).trim() != "0")
        .count();
    assert!(holding >= 2, "rooms spread over {holding} of 3 masters");
}

/// A room at one a minute... one a second, with `quota`.
fn one_a_second(quota: u64) -> RoomSettings {
    RoomSettings {
        admit_per_minute: 60,
        burst: 1,
        quota: Some(quota),
        paused: false,
        claim_seconds: 600,
        pass_seconds: 1200,
        phases: Vec::new(),
        live_rate: false,
        draw_secret: String::new(),
    }
}

/// Syncs until the store answers again after Redis came back.
async fn sync_once_back(store: &RedisStore, now: u64) -> RoomView {
    for _ in 0..20 {
        if let Ok(view) = store.sync("vaksin", now).await {
            return view;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("the store did not recover");
}

#[tokio::test]
async fn a_room_lost_by_redis_is_rebuilt_from_what_the_instance_knew() {
    let mut redis = RedisServer::start();
    let store = RedisStore::single(&redis.url(), "antre").unwrap();
    store
        .configure("vaksin", &one_a_second(100), START)
        .await
        .unwrap();
    for _ in 0..30 {
        store.arrive("vaksin", START).await.unwrap();
    }
    let now = START + 10 * MICROS_PER_SECOND;
    let before = store.sync("vaksin", now).await.unwrap();
    assert_eq!(before.tail, 30);

    redis.restart();
    // The first call after the restart may fail while reconnecting.
    let after = sync_once_back(&store, now).await;
    assert_eq!(after.tail, before.tail, "the line is not started over");
    assert_eq!(after.frontier, before.frontier);
    assert_eq!(after.admitted, before.admitted);
    assert_eq!(after.epoch, before.epoch, "old tickets still count");
    // For a grace period no ticket is handed out, so every instance can add
    // what it knew first.
    assert!(store.arrive("vaksin", now).await.is_err());
    let later = now + 2 * MICROS_PER_SECOND;
    let next = store.arrive("vaksin", later).await.unwrap();
    assert_eq!(next.ticket, 31, "no ticket number is handed out twice");
}

/// Redis restarted from an older snapshot still holds the room, with the
/// same marker but older counters: the instance notices (the version went
/// back) and adds what it knew, so no ticket number is handed out twice and
/// no admission is forgotten.
#[tokio::test]
async fn a_rollback_to_older_data_is_noticed_and_merged() {
    let mut redis = RedisServer::start();
    let store = RedisStore::single(&redis.url(), "antre").unwrap();
    store
        .configure("vaksin", &one_a_second(2), START)
        .await
        .unwrap();
    assert!(store.arrive("vaksin", START).await.unwrap().admitted);
    assert_eq!(store.arrive("vaksin", START).await.unwrap().ticket, 2);
    redis.cli(&["SAVE"]);
    assert_eq!(store.arrive("vaksin", START).await.unwrap().ticket, 3);
    let later = START + 2 * MICROS_PER_SECOND;
    let (claim, view) = store.claim("vaksin", 1, 2, later).await.unwrap();
    assert_eq!(claim, Claim::Admitted { fresh: true });
    assert_eq!(view.admitted, 2);

    // Back to the snapshot: tail 2, one admission.
    redis.restart();
    let merged = sync_once_back(&store, later).await;
    assert_eq!(merged.tail, 3, "the tail this instance saw is back");
    assert_eq!(
        merged.admitted, 2,
        "the admission this instance saw is back"
    );
    assert!(merged.sold_out(later));
    let next = store
        .arrive("vaksin", later + 5 * MICROS_PER_SECOND)
        .await
        .unwrap();
    assert_eq!(next.ticket, 4, "ticket 3 is not handed out again");
    assert!(!next.admitted, "the quota of two holds");
}

/// A campaign room in the middle of a phase with a draw behind it: the
/// counters, the schedule and the draw's secret (so its commitment) are
/// what an instance must carry through a store that starts over.
async fn campaign_midway<S: Store>(store: &S, room: &str) -> RoomView {
    const MINUTE: u64 = 60 * MICROS_PER_SECOND;
    let opening = START + 10 * MINUTE;
    let settings = RoomSettings {
        admit_per_minute: 1,
        burst: 1,
        quota: None,
        paused: false,
        claim_seconds: 600,
        pass_seconds: 1200,
        phases: vec![Phase {
            start: opening,
            end: opening + 60 * MINUTE,
            quota: 20,
            admit_per_minute: 60,
            prequeue: 5 * MINUTE,
        }],
        live_rate: false,
        draw_secret: "kept through it all".into(),
    };
    store.configure(room, &settings, START).await.unwrap();
    for id in 1..=8 {
        store
            .enter_draw(room, 1, id, opening, opening - MINUTE)
            .await
            .unwrap();
    }
    let mut view = store.sync(room, opening).await.unwrap();
    let mut claimed = 0;
    for second in 1..=4 {
        let now = opening + second * MICROS_PER_SECOND;
        view = store.sync(room, now).await.unwrap();
        while claimed < view.frontier {
            claimed += 1;
            view = store.claim(room, 1, claimed, now).await.unwrap().1;
        }
    }
    assert_eq!(view.tail, 8, "the draw numbered its entries");
    assert!(view.admitted >= 3, "{}", view.admitted);
    view
}

/// The same on a Redis Cluster: the master holding the room loses
/// everything, and the room is rebuilt from the instance's view, with its
/// phase, its counters and its draw secret.
#[tokio::test]
async fn a_room_lost_by_a_cluster_is_rebuilt_with_its_campaign() {
    let cluster = RedisCluster::start();
    let store = RedisStore::cluster(&cluster.urls(), "antre").unwrap();
    let before = campaign_midway(&store, "kampanye").await;
    for node in &cluster.nodes {
        node.cli(&["FLUSHALL"]);
    }
    let now = before.at + MICROS_PER_SECOND;
    let mut after = None;
    for _ in 0..20 {
        if let Ok(view) = store.sync("kampanye", now).await {
            after = Some(view);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let after = after.expect("the store recovers");
    assert_eq!(
        (after.epoch, after.tail, after.admitted),
        (before.epoch, before.tail, before.admitted)
    );
    assert!(after.frontier >= before.frontier);
    assert_eq!(
        (after.phase, after.phase_base),
        (before.phase, before.phase_base)
    );
    assert_eq!(after.settings.phases, before.settings.phases);
    assert_eq!(
        after.settings.draw_secret, before.settings.draw_secret,
        "the draw's commitment does not change under anyone"
    );
    // After the grace, numbers go on past the drawn group.
    let next = store
        .arrive("kampanye", now + 2 * MICROS_PER_SECOND)
        .await
        .unwrap();
    assert_eq!(next.ticket, 9);
}

/// The in-process store's loss is a restart: from its state file it
/// comes back with the same counters, schedule, draw and secret.
#[tokio::test]
async fn the_memory_store_comes_back_from_its_file_with_its_campaign() {
    let dir = common::temp_dir("memory-campaign");
    let path = dir.join("state.json");
    let before = {
        let store = MemoryStore::open(&path).unwrap();
        campaign_midway(&store, "kampanye").await
    };
    let store = MemoryStore::open(&path).unwrap();
    let after = store.sync("kampanye", before.at).await.unwrap();
    assert_eq!(after, before);
    let (phase, drawn) = store.drawn("kampanye").await.unwrap();
    assert_eq!((phase, drawn.len()), (before.phase, 8));
}
