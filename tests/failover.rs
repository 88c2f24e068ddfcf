//! A Redis failover on the day: a replica that had not caught up takes over
//! its master's slots in the middle of an event (`CLUSTER FAILOVER FORCE`),
//! with two antre instances admitting all along. Nobody may get in beyond
//! the quota, and nobody may be left waiting for a place that is gone.
//!
//! The replica is made to lag for certain: every node is reached through a
//! relay that can hold back the replication stream, so the replica stops
//! receiving writes while the master keeps taking them.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use antre::clock::MICROS_PER_SECOND;
use antre::store::{RedisStore, RoomSettings, SettingsChange, Store};
use common::{Antre, Origin, RedisServer, ReplicatedCluster, Visitor};
use http::StatusCode;

const QUOTA: usize = 200;
const VISITORS: usize = 300;

fn config(origin: &str, nodes: &[String], wait_replicas: u32) -> String {
    let nodes: Vec<String> = nodes.iter().map(|n| format!("{n:?}")).collect();
    format!(
        r#"
[listen]
addr = "127.0.0.1:0"
max_connections_per_address = 100000

[admin]
addr = "127.0.0.1:0"

[origin]
url = "{origin}"

[store]
kind = "redis"
cluster = [{nodes}]
sync_millis = 100
wait_replicas = {wait_replicas}

[[keys]]
id = "drill"
secret = "a secret shared by both instances of the drill"

[[rooms]]
id = "vaksin"
paths = ["/daftar"]
admit_per_minute = 1200
quota = {QUOTA}
refresh_seconds = 2
"#,
        nodes = nodes.join(", ")
    )
}

/// What became of every visitor.
struct Drill {
    admitted: usize,
    sold_out: usize,
    /// Log lines in which an instance noticed the rewritten history.
    noticed: Vec<String>,
}

/// Three hundred visitors, two instances, quota 200; once a third of the
/// quota is used the room's replica stops receiving writes, a few seconds
/// later it is forced to take over, and the visitors carry on until each is
/// admitted or told the room is sold out.
async fn drill(wait_replicas: u32) -> Drill {
    let cluster = ReplicatedCluster::start();
    let (master, replica) = cluster.serving("vaksin");
    let origin = Origin::start().await;
    let text = config(&origin.url(), &cluster.urls(), wait_replicas);
    let instances = [
        Antre::start("failover-a", &text),
        Antre::start("failover-b", &text),
    ];
    let urls: Vec<(String, String)> = instances
        .iter()
        .map(|a| (a.url("/daftar"), a.url("/_antre/status")))
        .collect();

    // Each visitor arrives at one instance, then asks every half second, at
    // either instance in turn, until let in or told the room is sold out.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut visitors = tokio::task::JoinSet::new();
    for i in 0..VISITORS {
        let urls = urls.clone();
        visitors.spawn(async move {
            tokio::time::sleep(Duration::from_millis(i as u64 * 10)).await;
            let mut visitor = Visitor::new(format!("v{i:03}"));
            let mut turn = i;
            loop {
                let (page, status) = &urls[turn % 2];
                turn += 1;
                let answer = visitor.get(page, &[("accept", "application/json")]).await;
                if answer.status == StatusCode::OK {
                    return (i, "admitted".to_owned());
                }
                let state = match answer.status {
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::GONE => {
                        answer.json()["state"].as_str().unwrap_or("").to_owned()
                    }
                    other => other.to_string(),
                };
                if state == "sold_out" {
                    // Sold out for good: the status a page asks for agrees.
                    let again = visitor.get(status, &[("accept", "application/json")]).await;
                    return (i, again.json()["state"].as_str().unwrap_or("").to_owned());
                }
                if Instant::now() > deadline {
                    return (i, format!("stuck ({state})"));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    // A third of the quota in, the replica stops receiving writes.
    while origin.distinct_visitors().len() < QUOTA / 3 {
        assert!(Instant::now() < deadline, "the event started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.relays[master].hold_replication(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let behind = cluster.nodes[master].cli(&["INFO", "replication"]);
    // Then it takes over, lacking those writes.
    let answer = cluster.nodes[replica].cli(&["CLUSTER", "FAILOVER", "FORCE"]);
    assert_eq!(answer.trim(), "OK", "failover: {answer}");
    while !cluster.is_master(replica) {
        assert!(Instant::now() < deadline, "the replica took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.relays[master].hold_replication(false);
    eprintln!("before the failover the master said:\n{behind}");

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(joined) = visitors.join_next().await {
        let (i, outcome) = joined.unwrap();
        if outcome != "admitted" && outcome != "sold_out" {
            eprintln!("v{i:03} {outcome}");
        }
        *outcomes.entry(outcome).or_default() += 1;
    }
    eprintln!("outcomes: {outcomes:?}");
    let noticed = instances
        .iter()
        .filter_map(|a| {
            a.wait_for_any_log(
                0,
                &["earlier history", "lost this room's latest counters"],
                Duration::ZERO,
            )
        })
        .collect();
    let settled = outcomes.get("admitted").copied().unwrap_or(0)
        + outcomes.get("sold_out").copied().unwrap_or(0);
    assert_eq!(
        settled, VISITORS,
        "every visitor was let in or told the room is sold out: {outcomes:?}"
    );
    Drill {
        admitted: origin.distinct_visitors().len(),
        sold_out: outcomes.get("sold_out").copied().unwrap_or(0),
        noticed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_forced_to_take_over_loses_no_admission_with_wait_replicas() {
    let drill = drill(1).await;
    assert!(
        drill.admitted <= QUOTA,
        "{} admitted for a quota of {QUOTA}",
        drill.admitted
    );
    assert_eq!(drill.admitted, QUOTA, "the whole quota is used");
    assert_eq!(drill.sold_out, VISITORS - QUOTA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_forced_to_take_over_is_noticed_and_its_gap_filled() {
    let drill = drill(0).await;
    assert!(
        !drill.noticed.is_empty(),
        "an instance noticed that the replica lacked writes it had seen"
    );
    assert!(
        drill.admitted <= QUOTA,
        "{} admitted for a quota of {QUOTA}",
        drill.admitted
    );
    assert_eq!(drill.admitted + drill.sold_out, VISITORS);
}

const ROOM_KEYS: [&str; 8] = [
    "state",
    "claimed",
    "checkpoints",
    "pending",
    "promised",
    "exchanged",
    "spent",
    "history",
];

/// Copies the room's keys aside, or puts the copies back: a replica that
/// stopped receiving writes at the copy, then took over.
fn copy_room(redis: &RedisServer, back: bool) {
    for name in ROOM_KEYS {
        let key = format!("antre:{{vaksin}}:{name}");
        let copy = format!("{key}:copy");
        let (from, to) = if back { (copy, key) } else { (key, copy) };
        redis.cli(&["DEL", &to]);
        redis.cli(&["COPY", &from, &to]);
    }
}

/// The hard case, step by step: the replica that takes over lacks one
/// admission, and a write on it brings its version back to what an
/// instance saw, so the lost write does not look older. The chain tells
/// the two histories apart; the pass handed out is counted again.
#[tokio::test]
async fn a_history_rewritten_to_the_same_length_is_noticed() {
    let redis = RedisServer::start();
    let a = RedisStore::single(&redis.url(), "antre").unwrap();
    let b = RedisStore::single(&redis.url(), "antre").unwrap();
    let settings = RoomSettings {
        admit_per_minute: 600,
        burst: 5,
        quota: Some(3),
        paused: false,
        claim_seconds: 600,
        pass_seconds: 1200,
        phases: Vec::new(),
        live_rate: false,
        draw_secret: String::new(),
    };
    let start = 1_800_000_000 * MICROS_PER_SECOND;
    let at = |seconds: u64| start + seconds * MICROS_PER_SECOND;
    a.configure("vaksin", &settings, at(0)).await.unwrap();
    b.configure("vaksin", &settings, at(0)).await.unwrap();
    let first = a.arrive("vaksin", at(1)).await.unwrap();
    assert!(first.admitted);
    copy_room(&redis, false);
    let second = a.arrive("vaksin", at(1)).await.unwrap();
    assert!(second.admitted);
    assert_eq!((second.ticket, second.view.admitted), (2, 2));

    // The replica takes over without the second admission; an operator's
    // change on it makes its history as long as the one A saw.
    copy_room(&redis, true);
    let change = SettingsChange {
        admit_per_minute: Some(300),
        ..SettingsChange::default()
    };
    let view = b.update("vaksin", &change, at(2)).await.unwrap();
    assert_eq!(view.admitted, 1, "the new master lacks the admission");

    // A's next call notices and puts its admission back.
    let view = a.sync("vaksin", at(3)).await.unwrap();
    assert_eq!(view.admitted, 2, "the pass A handed out counts again");
    assert_eq!(view.settings.admit_per_minute, 300, "the change is kept");
    let view = b.sync("vaksin", at(3)).await.unwrap();
    assert_eq!((view.admitted, view.tail), (2, 2), "B sees it too");

    // One place is left, and ticket 2 is not handed out again.
    let third = b.arrive("vaksin", at(5)).await.unwrap();
    assert_eq!((third.ticket, third.admitted), (3, true));
    let fourth = b.arrive("vaksin", at(5)).await.unwrap();
    assert!(!fourth.admitted, "sold out at the quota");
    assert_eq!(fourth.view.admitted, 3);
}

/// With `wait_replicas`, a write no replica confirms is not handed out: no
/// ticket, no pass. An exchange already made stays claimable by its ticket
/// for the claim window, so its holder still gets the pass once Redis is
/// whole again, rather than being told the ticket was used.
#[tokio::test]
async fn an_unconfirmed_write_hands_nothing_out_and_keeps_the_place() {
    // A Redis without replicas: nothing is ever confirmed.
    let redis = RedisServer::start();
    let plain = RedisStore::single(&redis.url(), "antre").unwrap();
    let durable = RedisStore::single(&redis.url(), "antre")
        .unwrap()
        .with_replicas(1);
    let settings = RoomSettings {
        admit_per_minute: 60,
        burst: 1,
        quota: None,
        paused: false,
        claim_seconds: 600,
        pass_seconds: 1200,
        phases: Vec::new(),
        live_rate: false,
        draw_secret: String::new(),
    };
    let start = 1_800_000_000 * MICROS_PER_SECOND;
    let at = |seconds: u64| start + seconds * MICROS_PER_SECOND;
    plain.configure("vaksin", &settings, at(0)).await.unwrap();
    assert!(plain.arrive("vaksin", at(0)).await.unwrap().admitted);
    let waiting = plain.arrive("vaksin", at(0)).await.unwrap();
    assert!(!waiting.admitted);

    let refused = durable.arrive("vaksin", at(1)).await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("replicas")),
        "{refused:?}"
    );
    // After a failure calls fail fast for half a second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let refused = durable.claim("vaksin", 1, waiting.ticket, at(2)).await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("replicas")),
        "{refused:?}"
    );
    // Long past the usual 30 s grace, the holder still gets the pass.
    let (claim, _) = plain
        .claim("vaksin", 1, waiting.ticket, at(120))
        .await
        .unwrap();
    assert_eq!(claim, antre::store::Claim::Admitted { fresh: false });
}
