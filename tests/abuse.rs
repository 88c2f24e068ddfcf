//! One person, one place, against real clients: a flood from one address
//! (many connections, every method) while honest visitors from other
//! loopback addresses queue; a pass replayed from many addresses at once;
//! a ticket replayed after its exchange.

mod common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, Antre, Origin, Visitor};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;

/// The room the issue measured: one admission a minute, 1,000 doses.
const ROOM: &str = r#"
[[rooms]]
id = "vaksin"
paths = ["/"]
unguarded = ["/static"]
admit_per_minute = 1
quota = 1000
"#;

fn address(c: u8, d: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, c, d))
}

/// The ticket number in a queue answer (JSON).
fn ticket(answer: &common::Answer) -> u64 {
    answer.json()["ticket"]
        .as_u64()
        .unwrap_or_else(|| panic!("no ticket: {} {}", answer.status, answer.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_barely_moves_the_line() {
    let origin = Origin::start().await;
    let antre = Antre::start("flood", &config(&origin.url(), ROOM));
    // The room's one free admission goes to someone first.
    Visitor::from_address("first", address(1, 1))
        .get(&antre.url("/"), &[])
        .await;
    // Honest people already in line, each from an address of their own.
    let mut honest: Vec<Visitor> = (2..22)
        .map(|d| Visitor::from_address(format!("honest-{d}"), address(1, d)))
        .collect();
    for visitor in &mut honest {
        let answer = visitor
            .get(&antre.url("/daftar"), &[("accept", "application/json")])
            .await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let before = ticket(
        &honest
            .last_mut()
            .unwrap()
            .get(&antre.url("/daftar"), &[("accept", "application/json")])
            .await,
    );

    // The flood: 10,000 arrivals from 127.0.0.1 over 32 connections at
    // once, every method, keeping no cookies; bounded to 10 seconds.
    let minted = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ];
    let mut flood = Vec::new();
    for worker in 0..32usize {
        let (minted, sent, url) = (minted.clone(), sent.clone(), antre.url("/daftar"));
        let methods = methods.clone();
        flood.push(tokio::spawn(async move {
            let client = common::client();
            let mut i = worker;
            while sent.fetch_add(1, Ordering::Relaxed) < 10_000 && Instant::now() < deadline {
                let method = methods[i % methods.len()].clone();
                i += 1;
                let mut request = Request::builder().method(method.clone()).uri(&url);
                // GET and HEAD as a script that learnt the first-visit
                // cookie; the rest with no cookie at all.
                if matches!(method, Method::GET | Method::HEAD) {
                    request = request.header("cookie", "antre-hello=1");
                }
                let body = if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
                    common::full("nik=3507000000000001")
                } else {
                    common::empty()
                };
                let Ok(response) = client.request(request.body(body).unwrap()).await else {
                    continue;
                };
                let took = response
                    .headers()
                    .get_all("set-cookie")
                    .iter()
                    .filter(|c| {
                        let c = c.to_str().unwrap_or("");
                        c.starts_with("antre-ticket-vaksin=") || c.starts_with("antre-pass-vaksin=")
                    })
                    .count();
                minted.fetch_add(took, Ordering::Relaxed);
                let _ = response.into_body().collect().await;
            }
        }));
    }

    // Meanwhile the honest visitors keep polling their place.
    let mut latencies = Vec::new();
    while flood.iter().any(|task| !task.is_finished()) {
        for visitor in &mut honest {
            let started = Instant::now();
            let answer = visitor.status(&antre).await;
            latencies.push(started.elapsed());
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        }
    }
    for task in flood {
        task.await.unwrap();
    }
    let sent = sent.load(Ordering::Relaxed).min(10_000);
    let minted = minted.load(Ordering::Relaxed);

    // Someone new, from another address, arrives after the flood.
    let mut newcomer = Visitor::from_address("newcomer", address(2, 1));
    let after = ticket(
        &newcomer
            .get(&antre.url("/daftar"), &[("accept", "application/json")])
            .await,
    );
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "flood: {sent} requests, {minted} tickets to the flooder; newcomer moved back {} places; \
         honest polls p99 {p99:?} over {}",
        after - before - 1,
        latencies.len()
    );
    assert!(sent >= 5_000, "the flood ran: {sent}");
    assert!(minted <= 100, "the flooder holds {minted} tickets");
    assert!(
        after - before - 1 <= 100,
        "moved back {}",
        after - before - 1
    );
    let metrics = antre.admin_get("/metrics").await;
    assert!(
        metrics.contains("antre_challenges_total{result=\"issued\",room=\"vaksin\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("antre_requests_total{outcome=\"challenge\",room=\"vaksin\"}"));
    // Nothing of the flood reached the site.
    assert!(origin
        .seen()
        .iter()
        .all(|seen| seen.headers["x-forwarded-for"] != "127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_replayed_from_ten_addresses_at_once_serves_at_most_three() {
    let origin = Origin::start().await;
    let idle = ROOM.replace("admit_per_minute = 1\n", "admit_per_minute = 600\n");
    let antre = Antre::start("shared-pass", &config(&origin.url(), &idle));
    let mut owner = Visitor::from_address("owner", address(3, 1));
    assert_eq!(
        owner.get(&antre.url("/daftar"), &[]).await.status,
        StatusCode::OK
    );
    let pass = owner.cookie("antre-pass-vaksin").unwrap().to_owned();
    let before = origin.seen().len();

    let mut tasks = Vec::new();
    for d in 2..12 {
        let (url, pass) = (antre.url("/daftar"), pass.clone());
        tasks.push(tokio::spawn(async move {
            let mut copy = Visitor::from_address(format!("copy-{d}"), address(3, d));
            copy.set_cookie("antre-pass-vaksin", &pass);
            copy.get(&url, &[("accept", "application/json")]).await
        }));
    }
    let mut served = 0;
    let mut refused = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status {
            StatusCode::OK => served += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(answer.json()["notice"], "pass_shared", "{}", answer.body);
                refused += 1;
            }
            other => panic!("{other}: {}", answer.body),
        }
    }
    let reached: std::collections::BTreeSet<String> = origin.seen()[before..]
        .iter()
        .map(|seen| seen.headers["x-forwarded-for"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        (served, refused),
        (2, 8),
        "with the owner's, three networks"
    );
    assert_eq!(reached.len(), 2, "{reached:?}");
    // The owner is still in.
    assert_eq!(
        owner.get(&antre.url("/daftar"), &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_replayed_after_its_exchange_gets_no_pass() {
    let origin = Origin::start().await;
    let room = ROOM.replace("admit_per_minute = 1\n", "admit_per_minute = 60\n");
    let antre = Antre::start("ticket-replay", &config(&origin.url(), &room));
    Visitor::from_address("first", address(4, 1))
        .get(&antre.url("/"), &[])
        .await;
    let mut visitor = Visitor::from_address("visitor", address(4, 2));
    let answer = visitor
        .get(&antre.url("/daftar"), &[("accept", "application/json")])
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let ticket = visitor.cookie("antre-ticket-vaksin").unwrap().to_owned();
    // Their turn comes within a couple of seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = visitor.get(&antre.url("/daftar"), &[]).await;
        if answer.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "never admitted: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let pass = visitor.cookie("antre-pass-vaksin").unwrap().to_owned();

    // A retry at once (a lost answer) gets the same pass again.
    let mut retry = Visitor::from_address("retry", address(4, 2));
    retry.set_cookie("antre-ticket-vaksin", &ticket);
    assert_eq!(
        retry.get(&antre.url("/daftar"), &[]).await.status,
        StatusCode::OK
    );
    let again = retry.cookie("antre-pass-vaksin").unwrap();
    let id = |pass: &str| pass.split('.').nth(6).map(str::to_owned);
    assert_eq!(id(again), id(&pass), "the same pass");

    // Past the exchange's grace, the ticket buys nothing.
    tokio::time::sleep(antre_grace() + Duration::from_secs(1)).await;
    let mut replay = Visitor::from_address("replay", address(4, 3));
    replay.set_cookie("antre-ticket-vaksin", &ticket);
    let answer = replay
        .get(&antre.url("/daftar"), &[("accept", "application/json")])
        .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.json()["notice"], "ticket_spent", "{}", answer.body);
    assert_eq!(replay.cookie("antre-pass-vaksin"), None);
    assert_eq!(
        replay.cookie("antre-ticket-vaksin"),
        None,
        "the ticket is cleared"
    );
}

fn antre_grace() -> Duration {
    Duration::from_micros(antre::store::EXCHANGE_GRACE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_asking_faster_than_a_person_gets_429_with_retry_after() {
    let origin = Origin::start().await;
    let room = ROOM.replace(
        "admit_per_minute = 1\n",
        "admit_per_minute = 600\npass_requests_per_second = 2\npass_request_burst = 5\n",
    );
    let antre = Antre::start("pass-rate", &config(&origin.url(), &room));
    let mut visitor = Visitor::from_address("quick", address(5, 1));
    assert_eq!(
        visitor.get(&antre.url("/daftar"), &[]).await.status,
        StatusCode::OK
    );
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let answer = visitor
            .get(&antre.url("/daftar"), &[("accept", "application/json")])
            .await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(answer.headers.contains_key("retry-after"));
            assert_eq!(answer.json()["error"], "too_many_requests");
        }
        statuses.push(answer.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    // The status endpoint says the same, not "no ticket".
    let answer = visitor.status(&antre).await;
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    assert!(origin.seen().len() <= 6);
}
