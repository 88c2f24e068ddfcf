//! Connections on both listeners, over real sockets: the caps (in all and
//! per client address), the header and idle timeouts, the admin listener
//! under a crowd of idle connections, and running out of file descriptors.
//! Client addresses differ by binding the client socket to 127.0.0.x.
//!
//! Time bounds here are behaviour bounds (a 1 s setting must not act like
//! the 10 s default), loose enough for a busy machine.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{config, Antre, Origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const OPEN: &str = r#"
[[rooms]]
id = "vaksin"
paths = ["/"]
admit_per_minute = 600000
"#;

const HEALTH: &[u8] = b"GET /_antre/health HTTP/1.1\r\nHost: x\r\n\r\n";

/// A connection to `addr` from 127.0.0.`host`.
async fn connect_from(host: u8, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0);
    socket.bind(local).unwrap();
    socket.connect(addr).await.unwrap()
}

/// `text` with `keys` put into its `[listen]` table.
fn listen_with(text: &str, keys: &str) -> String {
    text.replace("[admin]", &format!("{keys}\n\n[admin]"))
}

/// Reads one response whose body has a `Content-Length`; returns its head
/// and body.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length = common::content_length_of(&head);
            if buffer.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]);
                return (head, body.into_owned());
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed before a whole response: {buffer:?}");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Waits up to `limit` for the peer to close; returns when it did, after
/// reading and discarding whatever came first.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Instant> {
    let mut sink = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut sink)).await {
        Ok(_) => Some(Instant::now()),
        Err(_) => None,
    }
}

/// Everything a refused connection is told, unprompted, and then EOF.
async fn refusal(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("a refused connection is answered and closed, not left hanging")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The value of the metric line starting with `series` on `antre`'s admin
/// listener.
async fn metric(antre: &Antre, series: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(antre.admin_addr).await.unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        antre.admin_addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (_, body) = read_response(&mut stream).await;
    body.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn one_address_past_its_cap_gets_429_while_others_are_served() {
    let origin = Origin::start().await;
    let text = listen_with(
        &config(&origin.url(), OPEN),
        "max_connections_per_address = 3",
    );
    let antre = Antre::start("per-address", &text);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(2, antre.addr).await);
    }
    let mut fourth = connect_from(2, antre.addr).await;
    let answer = refusal(&mut fourth).await;
    assert!(answer.starts_with("HTTP/1.1 429 "), "{answer}");
    assert!(answer.contains("Retry-After: ") && answer.contains("Connection: close"));

    let mut other = connect_from(3, antre.addr).await;
    other.write_all(HEALTH).await.unwrap();
    let (head, _) = read_response(&mut other).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    // The held connections still work.
    held[0].write_all(HEALTH).await.unwrap();
    let (head, _) = read_response(&mut held[0]).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");

    let refused = metric(
        &antre,
        "antre_connections_refused_total{listener=\"visitor\",reason=\"per_address\"}",
    )
    .await;
    assert_eq!(refused, Some(1.0));
    assert_eq!(
        metric(&antre, "antre_connections_open{listener=\"visitor\"}").await,
        Some(4.0)
    );
    // Once one closes, the address has room again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_from(2, antre.addr).await;
    again.write_all(HEALTH).await.unwrap();
    let (head, _) = read_response(&mut again).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
}

#[tokio::test]
async fn past_the_total_cap_a_connection_gets_503() {
    let origin = Origin::start().await;
    let text = listen_with(&config(&origin.url(), OPEN), "max_connections = 5");
    let antre = Antre::start("total-cap", &text);
    let mut held = Vec::new();
    for host in 2..7 {
        held.push(connect_from(host, antre.addr).await);
    }
    let mut sixth = connect_from(7, antre.addr).await;
    let answer = refusal(&mut sixth).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("Retry-After: ") && answer.contains("Connection: close"));
    let line = antre
        .wait_for_log(0, "refused 1 connection", Duration::from_secs(5))
        .expect("the refusal is logged");
    assert!(line.contains("max_connections"), "{line}");
    assert_eq!(
        metric(
            &antre,
            "antre_connections_refused_total{listener=\"visitor\",reason=\"total\"}"
        )
        .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let origin = Origin::start().await;
    let text = listen_with(
        &config(&origin.url(), OPEN),
        "header_read_timeout_seconds = 1\nidle_timeout_seconds = 120",
    );
    let antre = Antre::start("silent", &text);
    let opened = Instant::now();
    let mut stream = TcpStream::connect(antre.addr).await.unwrap();
    let closed = closed_within(&mut stream, Duration::from_secs(20))
        .await
        .expect("closed");
    let after = closed - opened;
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(4),
        "closed after {after:?}, with a header timeout of 1 s"
    );
}

/// Sends `head` one byte every 300 ms until antre closes the connection;
/// returns how long after the first byte that was.
async fn dribble(stream: TcpStream, head: &'static [u8]) -> Duration {
    let (mut reader, mut writer) = stream.into_split();
    let first = Instant::now();
    let writing = tokio::spawn(async move {
        for byte in head.iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut sink)).await;
    writing.abort();
    assert!(read.is_ok(), "antre kept a dribbling connection for 20 s");
    first.elapsed()
}

#[tokio::test]
async fn a_slowly_dribbled_head_is_cut_at_the_header_timeout() {
    let origin = Origin::start().await;
    let text = listen_with(
        &config(&origin.url(), OPEN),
        "header_read_timeout_seconds = 1\nidle_timeout_seconds = 120",
    );
    let antre = Antre::start("dribble", &text);

    // The first head on a fresh connection.
    let stream = TcpStream::connect(antre.addr).await.unwrap();
    let after = dribble(
        stream,
        b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa",
    )
    .await;
    assert!(
        after >= Duration::from_millis(700) && after < Duration::from_secs(4),
        "closed {after:?} after the first byte"
    );

    // The next head on a kept-alive connection: the idle time before it
    // does not count, the header timeout runs from its first byte.
    let mut stream = TcpStream::connect(antre.addr).await.unwrap();
    stream.write_all(HEALTH).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = dribble(
        stream,
        b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa",
    )
    .await;
    assert!(
        after >= Duration::from_millis(700) && after < Duration::from_secs(4),
        "closed {after:?} after the first byte of the second head"
    );
}

#[tokio::test]
async fn the_idle_timeout_holds_past_the_header_timeout() {
    let origin = Origin::start().await;
    let text = listen_with(
        &config(&origin.url(), OPEN),
        "header_read_timeout_seconds = 1\nidle_timeout_seconds = 4",
    );
    let antre = Antre::start("idle-long", &text);
    let mut stream = TcpStream::connect(antre.addr).await.unwrap();
    stream.write_all(HEALTH).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let answered = Instant::now();

    // Past the header timeout, the connection is still there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stream.write_all(HEALTH).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let again = Instant::now();

    let closed = closed_within(&mut stream, Duration::from_secs(20))
        .await
        .expect("closed");
    let idle = closed - again;
    assert!(
        idle >= Duration::from_secs(3) && closed - answered < Duration::from_secs(9),
        "closed {idle:?} after the second answer, with an idle timeout of 4 s"
    );
}

#[tokio::test]
async fn the_admin_listener_sheds_a_crowd_of_idle_connections() {
    // The test holds 2,000 sockets itself.
    let _ = antre::listener::raise_open_file_limit();
    let origin = Origin::start().await;
    let text = config(&origin.url(), OPEN).replace(
        "[admin]\naddr = \"127.0.0.1:0\"",
        "[admin]\naddr = \"127.0.0.1:0\"\nheader_read_timeout_seconds = 1\nmax_connections = 5000\nmax_connections_per_address = 1000",
    );
    let antre = Antre::start("admin-crowd", &text);
    // One scrape first, so what a scrape allocates is in both figures.
    assert!(metric(&antre, "antre_connections_open{listener=\"admin\"}")
        .await
        .is_some());
    let before = rss_kib(antre.pid());

    let mut waiting = tokio::task::JoinSet::new();
    for i in 0..2000u32 {
        let host = 2 + (i % 4) as u8;
        let mut stream = connect_from(host, antre.admin_addr).await;
        let opened = Instant::now();
        waiting.spawn(async move {
            let closed = closed_within(&mut stream, Duration::from_secs(30)).await;
            closed.map(|at| at - opened)
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(held) = waiting.join_next().await {
        let held = held.unwrap().expect("every idle connection is closed");
        assert!(held >= Duration::from_millis(700), "closed after {held:?}");
        slowest = slowest.max(held);
    }
    assert!(
        slowest < Duration::from_secs(6),
        "the last idle connection was held {slowest:?} with a header timeout of 1 s"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(antre.pid());
    assert!(
        after < before + 8 * 1024,
        "RSS {before} KiB before 2,000 idle connections, {after} KiB after"
    );
    // Only the scrape itself is open.
    assert_eq!(
        metric(&antre, "antre_connections_open{listener=\"admin\"}").await,
        Some(1.0)
    );
}

#[tokio::test]
async fn out_of_file_descriptors_visitors_are_told_to_come_back() {
    let origin = Origin::start().await;
    // A cap far above what the files allow, so the limit is what refuses.
    let text = listen_with(
        &config(&origin.url(), OPEN),
        "max_connections = 100000\nheader_read_timeout_seconds = 60",
    );
    let antre = Antre::start_with_open_files("nofile", &text, 128);
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..400u32 {
        let mut stream = connect_from(2 + (i % 8) as u8, antre.addr).await;
        let mut first = [0u8; 16];
        // A held connection says nothing; a refused one answers at once.
        // After the first refusal every connection must be answered.
        let wait = if refused == 0 { 100 } else { 3000 };
        match tokio::time::timeout(Duration::from_millis(wait), stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => {
                let answer = refusal(&mut stream).await;
                assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
                refused += 1;
                if refused == 20 {
                    break;
                }
            }
            Ok(other) => panic!("connection {i}: {other:?}"),
            Err(_) => {
                assert!(refused == 0, "a connection was held after a refusal");
                held.push(stream);
            }
        }
    }
    assert_eq!(refused, 20, "{} held, none refused", held.len());
    assert!(held.len() > 50 && held.len() < 128, "{} held", held.len());
    let lines = antre
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("refused"))
        .count();
    assert!((1..=3).contains(&lines), "{lines} log lines about refusals");
    assert!(antre
        .wait_for_log(0, "out of file descriptors", Duration::from_secs(1))
        .is_some());

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = TcpStream::connect(antre.addr).await.unwrap();
        stream.write_all(HEALTH).await.unwrap();
        let (head, _) = read_response(&mut stream).await;
        if head.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {head}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_http2_connection_is_kept_for_the_idle_timeout_then_told_goodbye() {
    let origin = Origin::start().await;
    let text = listen_with(
        &config(&origin.url(), OPEN),
        "header_read_timeout_seconds = 1\nidle_timeout_seconds = 3",
    );
    let antre = Antre::start("h2-idle", &text);
    let stream = TcpStream::connect(antre.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let driving = tokio::spawn(connection);
    let ask = |sender: &mut hyper::client::conn::http2::SendRequest<common::Body>| {
        sender.send_request(
            http::Request::get(antre.url("/_antre/health"))
                .body(common::empty())
                .unwrap(),
        )
    };
    let response = ask(&mut sender).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    drop(response);
    // Frames with no stream open (settings, acks) are not a request head:
    // the 1 s header timeout does not close the connection.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let response = ask(&mut sender).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    drop(response);
    let answered = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), driving)
        .await
        .expect("antre closed the idle HTTP/2 connection")
        .unwrap()
        .ok();
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_secs(2) && idle < Duration::from_secs(7),
        "closed {idle:?} after the last answer, with an idle timeout of 3 s"
    );
}

/// Sends `request` on `stream` and reads the answer; the status line.
async fn ask(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let (head, _) = read_response(stream).await;
    head.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn quiet_connections_wait_outside_hyper_hold_little_and_come_back_whole() {
    let _ = antre::listener::raise_open_file_limit();
    let origin = Origin::start().await;
    let text = listen_with(&config(&origin.url(), OPEN), "idle_timeout_seconds = 30");
    let antre = Antre::start("parked", &text);
    // Warm up: what the first requests allocate is in both figures.
    let mut warm = TcpStream::connect(antre.addr).await.unwrap();
    assert_eq!(ask(&mut warm, HEALTH).await, "HTTP/1.1 200 OK");
    drop(warm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(antre.pid());

    // 2,000 visitors from four addresses, each asks once and goes quiet.
    let mut streams = Vec::new();
    for i in 0..2000u32 {
        let mut stream = connect_from(2 + (i % 4) as u8, antre.addr).await;
        assert_eq!(
            ask(&mut stream, HEALTH).await,
            "HTTP/1.1 200 OK",
            "visitor {i}"
        );
        streams.push(stream);
    }
    // Quiet for longer than a moment: they all leave hyper, and what
    // hyper held is given back (loose bound for a busy machine).
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut holding, mut per_connection);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        holding = rss_kib(antre.pid());
        per_connection = (holding.saturating_sub(before)) * 1024 / 2000;
        if per_connection < 2048 || Instant::now() > deadline {
            break;
        }
    }
    assert!(
        per_connection < 2048,
        "{per_connection} bytes per quiet connection (RSS {before} KiB, then {holding} KiB)"
    );
    assert_eq!(
        metric(&antre, "antre_connections_open{listener=\"visitor\"}").await,
        Some(2000.0),
        "every quiet connection keeps its place in the counts"
    );

    // Each comes back: one asks again, one sends two requests at once,
    // one sends half a head and the rest later, one says goodbye.
    let (mut again, mut pipelined, mut halves, closer) = {
        let mut rest = streams.drain(..4);
        (
            rest.next().unwrap(),
            rest.next().unwrap(),
            rest.next().unwrap(),
            rest.next().unwrap(),
        )
    };
    assert_eq!(ask(&mut again, HEALTH).await, "HTTP/1.1 200 OK");
    pipelined
        .write_all(
            &[
                HEALTH,
                b"GET /_antre/health HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n",
            ]
            .concat(),
        )
        .await
        .unwrap();
    // Both answers, in order, then the close the second asked for (read
    // to the end: both may come in one read).
    let mut answers = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), pipelined.read_to_end(&mut answers))
        .await
        .expect("closed after the second answer")
        .unwrap();
    let answers = String::from_utf8_lossy(&answers);
    assert_eq!(
        answers.matches("HTTP/1.1 200 OK\r\n").count(),
        2,
        "{answers}"
    );
    halves.write_all(&HEALTH[..20]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ask(&mut halves, &HEALTH[20..]).await, "HTTP/1.1 200 OK");
    // ...and after that, the same connection goes quiet and comes back again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ask(&mut halves, HEALTH).await, "HTTP/1.1 200 OK");
    drop(closer);

    // The rest leave; the memory goes back and so do their places.
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&antre, "antre_connections_open{listener=\"visitor\"}").await != Some(2.0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&antre, "antre_connections_open{listener=\"visitor\"}").await,
        Some(2.0),
        "only `again` and `halves` are still open"
    );
}

#[tokio::test]
async fn a_quiet_connection_is_closed_at_shutdown() {
    let origin = Origin::start().await;
    let antre = Antre::start("parked-stop", &config(&origin.url(), OPEN));
    let mut stream = TcpStream::connect(antre.addr).await.unwrap();
    assert_eq!(ask(&mut stream, HEALTH).await, "HTTP/1.1 200 OK");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    let status = antre.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        closed_within(&mut stream, Duration::from_secs(5))
            .await
            .is_some(),
        "closed, not left open"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?}",
        started.elapsed()
    );
}

/// An HTTP/2 connection from 127.0.0.`host`, its driving task spawned.
async fn http2_from(
    host: u8,
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<common::Body> {
    let stream = connect_from(host, addr).await;
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    sender
}

async fn health_over(
    sender: &mut hyper::client::conn::http2::SendRequest<common::Body>,
    antre: &Antre,
) -> http::StatusCode {
    let request = http::Request::get(antre.url("/_antre/health"))
        .header("cookie", "site=1; antre-lang=id")
        .header("user-agent", "test")
        .body(common::empty())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    status
}

#[tokio::test]
async fn quiet_http2_connections_wait_outside_hyper_and_come_back() {
    let _ = antre::listener::raise_open_file_limit();
    let origin = Origin::start().await;
    let text = listen_with(&config(&origin.url(), OPEN), "idle_timeout_seconds = 30");
    let antre = Antre::start("parked-h2", &text);
    let mut warm = http2_from(20, antre.addr).await;
    assert_eq!(health_over(&mut warm, &antre).await, http::StatusCode::OK);
    drop(warm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(antre.pid());

    let count = 1000u32;
    let mut senders = Vec::new();
    for i in 0..count {
        let mut sender = http2_from(21 + (i % 4) as u8, antre.addr).await;
        assert_eq!(health_over(&mut sender, &antre).await, http::StatusCode::OK);
        senders.push(sender);
    }
    // Quiet for a moment: they leave hyper, and what it held goes back.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut holding, mut per_connection);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        holding = rss_kib(antre.pid());
        per_connection = holding.saturating_sub(before) * 1024 / u64::from(count);
        if per_connection < 2048 || Instant::now() > deadline {
            break;
        }
    }
    assert!(
        per_connection < 2048,
        "{per_connection} bytes per quiet HTTP/2 connection (RSS {before} KiB, then {holding} KiB)"
    );
    assert_eq!(
        metric(&antre, "antre_connections_open{listener=\"visitor\"}").await,
        Some(f64::from(count)),
    );

    // They come back to a fresh hyper connection, several times over, and
    // several requests at once; the header compression and flow control
    // both sides kept still agree.
    for round in 0..3 {
        for sender in senders.iter_mut().take(20) {
            let (mut one, mut two) = (sender.clone(), sender.clone());
            let (a, b) = tokio::join!(health_over(&mut one, &antre), health_over(&mut two, &antre));
            assert_eq!(
                (a, b),
                (http::StatusCode::OK, http::StatusCode::OK),
                "round {round}"
            );
            assert_eq!(health_over(sender, &antre).await, http::StatusCode::OK);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    drop(senders);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&antre, "antre_connections_open{listener=\"visitor\"}").await != Some(0.0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&antre, "antre_connections_open{listener=\"visitor\"}").await,
        Some(0.0),
        "every connection closed by its client gave back its place"
    );
}
