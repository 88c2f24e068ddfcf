//! What `[store] wait_replicas = 1` costs: the latency of a new arrival and
//! of an exchange (the two store calls a visitor waits on) against a Redis
//! with one replica, with and without waiting for the replica, in
//! alternating rounds on the same servers.
//!
//! `cargo bench --bench durable`. Needs `redis-server` on `PATH`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use antre::clock::MICROS_PER_SECOND;
use antre::store::{RedisStore, RoomSettings, Store};

const CALLS: usize = 5_000;
const ROUNDS: usize = 3;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis(port: u16, extra: &[&str]) -> Server {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    std::thread::sleep(Duration::from_millis(300));
    Server(child)
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli on PATH");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Microseconds per call of `CALLS` arrivals then as many exchanges, in a
/// fresh room: the median and the 99th percentile of each.
async fn measure(store: &RedisStore, room: &str) -> [(u64, u64); 2] {
    let settings = RoomSettings {
        admit_per_minute: 6_000_000,
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
    store.configure(room, &settings, start).await.unwrap();
    let mut arrivals = Vec::with_capacity(CALLS);
    let mut tickets = Vec::with_capacity(CALLS);
    for i in 0..CALLS as u64 {
        let began = Instant::now();
        let arrival = store.arrive(room, start + i).await.unwrap();
        arrivals.push(began.elapsed().as_micros() as u64);
        tickets.push(arrival.ticket);
    }
    let later = start + 60 * MICROS_PER_SECOND;
    let mut claims = Vec::with_capacity(CALLS);
    for ticket in tickets {
        let began = Instant::now();
        store.claim(room, 1, ticket, later).await.unwrap();
        claims.push(began.elapsed().as_micros() as u64);
    }
    [summary(arrivals), summary(claims)]
}

fn summary(mut micros: Vec<u64>) -> (u64, u64) {
    micros.sort_unstable();
    (micros[micros.len() / 2], micros[micros.len() * 99 / 100])
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (primary_port, replica_port) = (free_port(), free_port());
    let _primary = redis(primary_port, &[]);
    let primary = primary_port.to_string();
    let _replica = redis(replica_port, &["--replicaof", "127.0.0.1", &primary]);
    while !cli(primary_port, &["INFO", "replication"]).contains("state=online") {
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("redis://127.0.0.1:{primary_port}");
    let plain = RedisStore::single(&url, "bench").unwrap();
    let durable = RedisStore::single(&url, "bench").unwrap().with_replicas(1);
    println!("{CALLS} arrivals then {CALLS} exchanges, one at a time; microseconds, median / p99");
    println!("round  wait_replicas  arrival     exchange");
    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        let a = measure(&plain, &format!("plain{round}")).await;
        let b = measure(&durable, &format!("durable{round}")).await;
        println!(
            "{round:>5}  0              {:>4} / {:<4}  {:>4} / {:<4}",
            a[0].0, a[0].1, a[1].0, a[1].1
        );
        println!(
            "{round:>5}  1              {:>4} / {:<4}  {:>4} / {:<4}",
            b[0].0, b[0].1, b[1].0, b[1].1
        );
        ratios.push((b[0].0 as f64 / a[0].0 as f64, b[1].0 as f64 / a[1].0 as f64));
    }
    ratios.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (arrival, exchange) = ratios[ROUNDS / 2];
    println!(
        "median ratio, waiting for one replica: arrival {arrival:.2}x, exchange {exchange:.2}x"
    );
}
