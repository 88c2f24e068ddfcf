//! Load test: the release `antre` binary in front of a small in-process
//! origin, all on loopback. Bounded in requests and time. Run with
//! `bash benches/load.sh` (or `cargo bench --bench load`).
//!
//! Measures, each over keep-alive HTTP/1.1 connections:
//! - the origin alone (the baseline),
//! - admitted visitors through antre (a pass on every request),
//! - waiting visitors polling `/_antre/status`,
//! - a storm of new arrivals (a ticket each, as if from many people),
//! - a flood of arrivals from one address on a room with the default
//!   budgets (challenges past the free tickets), and meanwhile the polls of
//!   twenty honest visitors in line at other addresses,
//! - a 1 GiB upload through antre, with antre's peak memory before and after.
//!
//! To compare two builds side by side, `ANTRE_BIN` names the binary to run
//! instead of this build's (words split on spaces, so
//! `ANTRE_BIN="taskset -c 1 /path/to/antre"` pins it), `ANTRE_LOAD_LISTEN`
//! replaces the extra `[listen]` lines (default `access_log = false`: the
//! access log is measured apart), `ANTRE_LOAD_REQUESTS` the requests a
//! scenario (default 60,000), and `ANTRE_LOAD_UPLOAD_MIB` the
//! upload's size (0 skips it).

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, hyper::Error>;

/// Requests per scenario, split over the connections.
/// (`ANTRE_LOAD_REQUESTS` sets another number.)
fn requests() -> usize {
    std::env::var("ANTRE_LOAD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000)
}
const CONNECTIONS: usize = 32;
/// No scenario runs longer than this.
const TIME_LIMIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let origin = start_origin().await;
    let dir = std::env::temp_dir().join(format!("antre-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let listen_extra =
        std::env::var("ANTRE_LOAD_LISTEN").unwrap_or_else(|_| "access_log = false".to_owned());
    let upload_mib: u64 = std::env::var("ANTRE_LOAD_UPLOAD_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let config = format!(
        r#"[listen]
addr = "127.0.0.1:0"
{listen_extra}
[admin]
addr = "127.0.0.1:0"
[origin]
url = "http://{origin}"
[store]
state_file = "state.json"
# One pass asks as fast as the client can: the rate a person would be
# held to is lifted, to measure the proxy.
[[rooms]]
id = "open"
paths = ["/open"]
admit_per_minute = 600000
pass_requests_per_second = 100000
pass_request_burst = 100000
# The arrivals stand for many people: one address, no budget.
[[rooms]]
id = "line"
paths = ["/line"]
admit_per_minute = 1
tickets_per_address_burst = 1000000
tickets_per_address_per_minute = 1000000
# Defaults: a flood from one address meets the budget and the challenges.
[[rooms]]
id = "guarded"
paths = ["/guarded"]
admit_per_minute = 1
quota = 1000
"#
    );
    std::fs::write(dir.join("antre.toml"), config).unwrap();
    let bin = std::env::var("ANTRE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_antre").to_owned());
    let mut words = bin.split_whitespace();
    let program = words.next().expect("ANTRE_BIN names a program");
    let mut child = Stopped(
        Command::new(program)
            .args(words)
            .args(["run", "--config"])
            .arg(dir.join("antre.toml"))
            .env("ANTRE_LOG", "warn,antre=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
            {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr.to_owned());
                }
            }
        }
    });
    let antre: SocketAddr = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .parse()
        .unwrap();
    let pid = child.0.id();

    println!("antre load test: {} requests a scenario over {CONNECTIONS} connections, loopback, 2 cores shared by client, antre and origin", requests());
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}",
        "scenario", "req/s", "p50 us", "p99 us", "errors"
    );

    let direct = run(origin, "/", Vec::new()).await;
    report("origin alone", &direct);

    let pass = cookie_from(antre, "/open", "antre-pass-open").await;
    let admitted = run(antre, "/open/page", vec![("cookie", pass)]).await;
    report("admitted via antre", &admitted);

    // One visitor holds the line's only admission; the poller waits.
    cookie_from(antre, "/line", "antre-pass-line").await;
    let ticket = cookie_from(antre, "/line", "antre-ticket-line").await;
    let polls = run(
        antre,
        "/_antre/status?room=line",
        vec![("cookie", ticket), ("accept", "application/json".into())],
    )
    .await;
    report("waiting visitor polls", &polls);

    let arrivals = run(
        antre,
        "/line",
        vec![
            ("accept", "application/json".into()),
            ("cookie", "antre-hello=1".into()),
        ],
    )
    .await;
    report("new arrivals (tickets)", &arrivals);

    // A flood from 127.0.0.1 on a room with the default budgets, while
    // twenty people in line, each at an address of their own, poll.
    cookie_from(antre, "/guarded", "antre-pass-guarded").await;
    let mut honest = Vec::new();
    for i in 0..20u8 {
        let from = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 3, 2 + i));
        honest.push(cookie_from_address(antre, from, "/guarded", "antre-ticket-guarded").await);
    }
    let flood = tokio::spawn(run(
        antre,
        "/guarded",
        vec![
            ("accept", "application/json".into()),
            ("cookie", "antre-hello=1".into()),
        ],
    ));
    let mut pollers = tokio::task::JoinSet::new();
    for (i, ticket) in honest.into_iter().enumerate() {
        let from = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 3, 2 + i as u8));
        let flood_running = flood.abort_handle();
        pollers.spawn(async move {
            poll_while(antre, from, ticket, move || !flood_running.is_finished()).await
        });
    }
    let flooded = flood.await.unwrap();
    report("flood from one address", &flooded);
    let mut polls = Outcome {
        latencies: Vec::new(),
        errors: 0,
        elapsed: flooded.elapsed,
    };
    while let Some(Ok(latencies)) = pollers.join_next().await {
        polls.latencies.extend(latencies);
    }
    report("  honest polls meanwhile", &polls);

    if upload_mib > 0 {
        let before = peak_rss_kib(pid);
        let pass = cookie_from(antre, "/open", "antre-pass-open").await;
        let started = Instant::now();
        let uploaded = upload(antre, &pass, upload_mib as usize).await;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{upload_mib} MiB upload via antre: {uploaded} bytes in {seconds:.1} s ({:.0} MiB/s); antre peak RSS {} KiB before, {} KiB after",
            upload_mib as f64 / seconds,
            before,
            peak_rss_kib(pid)
        );
    }

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.0.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The antre under test, killed if the load test stops early (a panic),
/// so it never outlives the run.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

fn report(name: &str, outcome: &Outcome) {
    let mut sorted = outcome.latencies.clone();
    sorted.sort();
    let at = |q: f64| {
        sorted.get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
    };
    println!(
        "{:<28} {:>10.0} {:>10} {:>10} {:>10}",
        name,
        sorted.len() as f64 / outcome.elapsed.as_secs_f64(),
        at(0.5).map_or(0, |d| d.as_micros()),
        at(0.99).map_or(0, |d| d.as_micros()),
        outcome.errors
    );
}

/// Sends [`requests`] GETs for `path` over `CONNECTIONS` keep-alive
/// connections.
async fn run(addr: SocketAddr, path: &str, headers: Vec<(&'static str, String)>) -> Outcome {
    let started = Instant::now();
    let per_connection = requests() / CONNECTIONS;
    let headers = Arc::new(headers);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let path = path.to_owned();
        let headers = headers.clone();
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(per_connection);
            let mut errors = 0;
            let Ok(stream) = TcpStream::connect(addr).await else {
                return (latencies, per_connection);
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, connection)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                return (latencies, per_connection);
            };
            tokio::spawn(connection);
            for _ in 0..per_connection {
                if started.elapsed() > TIME_LIMIT {
                    break;
                }
                let mut request = Request::get(path.as_str()).header("host", addr.to_string());
                for (name, value) in headers.iter() {
                    request = request.header(*name, value.as_str());
                }
                let request = request.body(Empty::<Bytes>::new()).unwrap();
                let sent = Instant::now();
                match sender.send_request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let _ = response.into_body().collect().await;
                        latencies.push(sent.elapsed());
                        if status.is_server_error()
                            && status != http::StatusCode::SERVICE_UNAVAILABLE
                        {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        });
    }
    let mut outcome = Outcome {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(Ok((latencies, errors))) = workers.join_next().await {
        outcome.latencies.extend(latencies);
        outcome.errors += errors;
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// Visits `path` once with only the first-visit cookie and returns
/// `name=value` of the cookie `name` antre set.
async fn cookie_from(addr: SocketAddr, path: &str, name: &str) -> String {
    let stream = TcpStream::connect(addr).await.unwrap();
    cookie_over(stream, addr, path, name).await
}

/// Like [`cookie_from`], connecting from `from`.
async fn cookie_from_address(
    addr: SocketAddr,
    from: std::net::IpAddr,
    path: &str,
    name: &str,
) -> String {
    cookie_over(connect_from(addr, from).await, addr, path, name).await
}

async fn cookie_over(stream: TcpStream, addr: SocketAddr, path: &str, name: &str) -> String {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    // The first-visit cookie a browser would bring back.
    let request = Request::get(path)
        .header("host", addr.to_string())
        .header("cookie", "antre-hello=1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(name))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_owned()
}

/// A connection to `addr` from the loopback address `from`.
async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let _ = stream.set_nodelay(true);
    stream
}

/// A waiting visitor at `from` polling their status as the page does (but
/// without pause) while `go` says so; returns each poll's time.
async fn poll_while(
    addr: SocketAddr,
    from: std::net::IpAddr,
    ticket: String,
    go: impl Fn() -> bool,
) -> Vec<Duration> {
    let stream = connect_from(addr, from).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut latencies = Vec::new();
    while go() {
        let request = Request::get("/_antre/status?room=guarded")
            .header("host", addr.to_string())
            .header("cookie", ticket.as_str())
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let sent = Instant::now();
        let Ok(response) = sender.send_request(request).await else {
            break;
        };
        let _ = response.into_body().collect().await;
        latencies.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies
}

async fn upload(addr: SocketAddr, pass: &str, mib: usize) -> String {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'u'; 1 << 20]);
        for _ in 0..mib {
            if tx.send(chunk.clone()).await.is_err() {
                break;
            }
        }
    });
    struct Channel(tokio::sync::mpsc::Receiver<Bytes>);
    impl hyper::body::Body for Channel {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
            self.0
                .poll_recv(cx)
                .map(|c| c.map(|c| Ok(hyper::body::Frame::data(c))))
        }
    }
    let request = Request::post("/open/upload")
        .header("host", addr.to_string())
        .header("cookie", pass)
        .body(Channel(rx))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

// === origin ===

async fn start_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(origin))
                    .await;
            });
        }
    });
    addr
}

async fn origin(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if request.uri().path().ends_with("/upload") {
        let mut total = 0usize;
        let mut body = request.into_body();
        while let Some(Ok(frame)) = body.frame().await {
            total += frame.data_ref().map_or(0, |d| d.len());
        }
        return Ok(Response::new(
            Full::new(Bytes::from(total.to_string()))
                .map_err(|n| match n {})
                .boxed(),
        ));
    }
    Ok(Response::new(
        Full::new(Bytes::from_static(
            b"<html><body>registration form</body></html>",
        ))
        .map_err(|n| match n {})
        .boxed(),
    ))
}
