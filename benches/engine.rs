//! Micro-benchmarks of the request path: signing and checking cookies, the
//! admission decision for each kind of visitor, the queue maths and the
//! queue page. Run with `cargo bench --bench engine`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use antre::clock::{ManualClock, MICROS_PER_SECOND};
use antre::config::Config;
use antre::cookie::Jar;
use antre::engine::{CookieOptions, Decision, Engine, Mode};
use antre::page::{self, Lang, PageContext, PageKind};
use antre::store::queue::{Counters, RoomSettings};
use antre::store::{AnyStore, MemoryStore};
use antre::token::{Claims, Key, Keyring, Kind};
use criterion::{criterion_group, criterion_main, Criterion};

const START: u64 = 1_800_000_000 * MICROS_PER_SECOND;
const OPTIONS: CookieOptions = CookieOptions { secure: false };
const HOME: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn keyring() -> Keyring {
    Keyring::new(vec![Key::new("k1", &[7; 32]).unwrap()]).unwrap()
}

fn tokens(c: &mut Criterion) {
    let keys = keyring();
    let claims = Claims {
        epoch: 1,
        number: 123_456,
        time: 1_800_000_000,
    };
    let pass = keys.sign(Kind::Pass, "vaksin", claims);
    c.bench_function("token/sign_pass", |b| {
        b.iter(|| keys.sign(Kind::Pass, black_box("vaksin"), black_box(claims)))
    });
    c.bench_function("token/verify_pass", |b| {
        b.iter(|| keys.verify(Kind::Pass, black_box("vaksin"), black_box(&pass)))
    });
    let mut altered = pass.clone().into_bytes();
    altered[20] ^= 1;
    let altered = String::from_utf8(altered).unwrap();
    c.bench_function("token/verify_altered", |b| {
        b.iter(|| keys.verify(Kind::Pass, black_box("vaksin"), black_box(&altered)))
    });
}

fn engine(rate: u32) -> (Engine<AnyStore>, Arc<ManualClock>) {
    let text = format!(
        "[origin]\nurl = \"http://127.0.0.1:9\"\n[[rooms]]\nid = \"vaksin\"\npaths = [\"/\"]\nadmit_per_minute = {rate}\n"
    );
    let config = Config::parse(&text, Path::new("/tmp")).unwrap();
    let clock = ManualClock::new(START);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let engine = runtime
        .block_on(Engine::start(
            AnyStore::Memory(Arc::new(MemoryStore::ephemeral())),
            clock.clone(),
            keyring(),
            config.rooms,
        ))
        .unwrap();
    (engine, clock)
}

fn cookie_of(decision: &Decision, name: &str) -> String {
    let set_cookies = match decision {
        Decision::Forward { set_cookies, .. } | Decision::Hold { set_cookies, .. } => set_cookies,
        other => panic!("no cookies: {other:?}"),
    };
    let header = set_cookies.iter().find(|c| c.starts_with(name)).unwrap();
    header.split(';').next().unwrap().to_owned()
}

fn decisions(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (engine, _clock) = engine(1);
    let empty = Jar::default();
    let first = runtime.block_on(engine.decide(0, &empty, HOME, Mode::Request, OPTIONS));
    let pass = cookie_of(&first, "antre-pass-vaksin");
    let second = runtime.block_on(engine.decide(0, &empty, HOME, Mode::Request, OPTIONS));
    let ticket = cookie_of(&second, "antre-ticket-vaksin");

    let pass_header = format!("_ga=GA1.2.3; {pass}; theme=dark");
    c.bench_function("decide/admitted_request", |b| {
        b.iter(|| {
            let jar = Jar::parse([pass_header.as_str()]);
            runtime.block_on(engine.decide(0, &jar, HOME, Mode::Request, OPTIONS))
        })
    });
    let ticket_header = format!("_ga=GA1.2.3; {ticket}");
    c.bench_function("decide/waiting_poll", |b| {
        b.iter(|| {
            let jar = Jar::parse([ticket_header.as_str()]);
            runtime.block_on(engine.decide(0, &jar, HOME, Mode::Status, OPTIONS))
        })
    });
    // Each from an address of its own, within its budget of free tickets.
    let mut next = 0x0a00_0000u32;
    c.bench_function("decide/new_arrival", |b| {
        b.iter(|| {
            next += 1;
            let from = IpAddr::V4(Ipv4Addr::from(next));
            runtime.block_on(engine.decide(0, &empty, from, Mode::Request, OPTIONS))
        })
    });
    // One address far past its budget: a challenge instead of a ticket.
    c.bench_function("decide/challenge", |b| {
        b.iter(|| runtime.block_on(engine.decide(0, &empty, HOME, Mode::Request, OPTIONS)))
    });
}

fn queue(c: &mut Criterion) {
    let settings = RoomSettings {
        admit_per_minute: 6000,
        burst: 100,
        quota: Some(u64::MAX / 2),
        paused: false,
        claim_seconds: 600,
        pass_seconds: 1200,
        phases: Vec::new(),
        live_rate: false,
        draw_secret: String::new(),
    };
    let mut counters = Counters::default();
    let mut now = START;
    c.bench_function("queue/arrive", |b| {
        b.iter(|| {
            now += 1000;
            counters.arrive(&settings, now)
        })
    });
    let mut counters = Counters::default();
    for _ in 0..100_000 {
        counters.arrive(&settings, START);
    }
    let mut now = START;
    c.bench_function("queue/advance_backlogged", |b| {
        b.iter(|| {
            now += 10_000;
            counters.advance(&settings, now)
        })
    });
}

fn pages(c: &mut Criterion) {
    let (engine, clock) = engine(60);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let empty = Jar::default();
    let mut status = None;
    for i in 0..1000u32 {
        let from = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        if let Decision::Hold { status: s, .. } =
            runtime.block_on(engine.decide(0, &empty, from, Mode::Request, OPTIONS))
        {
            status = Some(s);
        }
    }
    let _ = clock;
    let status = status.unwrap();
    let context = PageContext {
        kind: PageKind::Waiting,
        lang: Lang::Id,
        status: &status,
        title: "Vaksinasi Kota",
        status_url: "/_antre/status?room=vaksin",
        lang_switch_url: "/_antre/lang?back=%2F&set=",
        utc_offset_minutes: 420,
        return_url: None,
    };
    c.bench_function("page/render_waiting", |b| {
        b.iter(|| page::render(black_box(&context), None))
    });
}

criterion_group!(benches, tokens, decisions, queue, pages);
criterion_main!(benches);
