//! antre as a reverse proxy: headers, streaming, upgrades, HTTP/2, timeouts,
//! origin outages and restarts, seen from a visitor and from the origin.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{config, Antre, Origin, Visitor};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everyone is let in at once (high rate, no quota): for proxy behaviour.
const OPEN: &str = r#"
[[rooms]]
id = "vaksin"
paths = ["/"]
admit_per_minute = 600000
pass_minutes = 20
"#;

#[tokio::test]
async fn forwarding_sets_forwarded_headers_and_drops_hop_by_hop_ones() {
    let origin = Origin::start().await;
    let antre = Antre::start("headers", &config(&origin.url(), OPEN));
    let mut visitor = Visitor::from_address("a", [127, 0, 0, 1].into());
    let answer = visitor
        .get(
            &antre.url("/daftar?x=1"),
            &[
                ("host", "vaksin.kota.example"),
                ("connection", "x-private"),
                ("x-private", "secret"),
                ("x-forwarded-for", "203.0.113.9"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("antre-pass-vaksin=")));
    let seen = origin.seen().pop().unwrap();
    assert_eq!(seen.path, "/daftar");
    assert_eq!(
        seen.headers["host"], "vaksin.kota.example",
        "Host passes as the client sent it"
    );
    assert_eq!(seen.headers["x-forwarded-host"], "vaksin.kota.example");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(
        seen.headers["x-forwarded-for"], "127.0.0.1",
        "a client's own claim is replaced unless the proxy in front is trusted"
    );
    assert!(
        !seen.headers.contains_key("x-private"),
        "headers named in Connection are dropped"
    );
}

#[tokio::test]
async fn the_host_header_can_be_set_by_the_config() {
    let origin = Origin::start().await;
    let text =
        config(&origin.url(), OPEN).replace("[store]", "host = \"internal.example\"\n\n[store]");
    let antre = Antre::start("host", &text);
    Visitor::new("a")
        .get(&antre.url("/"), &[("host", "public.example")])
        .await;
    let seen = origin.seen().pop().unwrap();
    assert_eq!(seen.headers["host"], "internal.example");
    assert_eq!(seen.headers["x-forwarded-host"], "public.example");
}

/// A 256 MiB upload and download pass through without antre holding them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_with_flat_memory() {
    let origin = Origin::start().await;
    let antre = Antre::start("stream", &config(&origin.url(), OPEN));
    let mut visitor = Visitor::new("a");
    visitor.get(&antre.url("/"), &[]).await;
    let baseline = antre.peak_rss_kib();

    const MIB: usize = 1 << 20;
    let chunks = 256;
    let (sender, body) = mpsc_body();
    let upload = tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'u'; MIB]);
        for _ in 0..chunks {
            if sender.send(chunk.clone()).await.is_err() {
                break;
            }
        }
    });
    let answer = visitor
        .send(Request::post(antre.url("/upload")), &[], body)
        .await;
    upload.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, (chunks * MIB).to_string());

    let response = common::client()
        .request(
            Request::get(antre.url("/download/256"))
                .header(
                    "cookie",
                    format!(
                        "antre-pass-vaksin={}",
                        visitor.cookie("antre-pass-vaksin").unwrap()
                    ),
                )
                .body(common::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        total += frame.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
    }
    assert_eq!(total, 256 * MIB);
    let grown = antre.peak_rss_kib().saturating_sub(baseline);
    assert!(
        grown < 32 * 1024,
        "antre's peak memory grew by {grown} KiB moving 512 MiB"
    );
}

/// A body fed from a channel, so the upload is produced while it is sent.
fn mpsc_body() -> (tokio::sync::mpsc::Sender<Bytes>, common::Body) {
    struct Channel(tokio::sync::mpsc::Receiver<Bytes>);
    impl hyper::body::Body for Channel {
        type Data = Bytes;
        type Error = hyper::Error;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(hyper::body::Frame::data(c))))
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (tx, Channel(rx).boxed())
}

#[tokio::test]
async fn an_admitted_visitor_can_upgrade_to_a_websocket() {
    let origin = Origin::start().await;
    let antre = Antre::start("upgrade", &config(&origin.url(), OPEN));
    let mut visitor = Visitor::new("a");
    visitor.get(&antre.url("/"), &[]).await;
    let pass = visitor.cookie("antre-pass-vaksin").unwrap().to_owned();

    let mut stream = TcpStream::connect(antre.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: antre-pass-vaksin={pass}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    stream.write_all(b"halo antre").await.unwrap();
    let mut echoed = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"halo antre");

    // Without a pass the upgrade never reaches the origin.
    let closed = Antre::start(
        "upgrade-closed",
        &config(
            &origin.url(),
            &OPEN
                .replace("600000", "1")
                .replace("pass_minutes", "burst = 1\npass_minutes"),
        ),
    );
    Visitor::new("first").get(&closed.url("/"), &[]).await;
    let before = origin.seen().len();
    let mut stream = TcpStream::connect(closed.addr).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: antre-hello=1\r\n\r\n")
        .await
        .unwrap();
    let mut response = vec![0u8; 12];
    stream.read_exact(&mut response).await.unwrap();
    assert_eq!(&response, b"HTTP/1.1 503");
    assert_eq!(origin.seen().len(), before);
}

#[tokio::test]
async fn http2_clients_are_served_and_the_origin_gets_http1() {
    let origin = Origin::start().await;
    let antre = Antre::start("h2", &config(&origin.url(), OPEN));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<common::Body>();
    let response = client
        .request(
            Request::get(antre.url("/h2"))
                .header("cookie", "antre-hello=1")
                .body(common::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let seen = origin.seen().pop().unwrap();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(
        seen.headers["host"],
        antre.addr.to_string(),
        "the :authority becomes Host"
    );
}

#[tokio::test]
async fn an_origin_outage_keeps_the_pass_and_shows_a_clear_page() {
    let origin = Origin::start().await;
    let antre = Antre::start("outage", &config(&origin.url(), OPEN));
    let mut visitor = Visitor::new("a");
    assert_eq!(
        visitor.get(&antre.url("/"), &[]).await.status,
        StatusCode::OK
    );
    let pass = visitor.cookie("antre-pass-vaksin").unwrap().to_owned();

    let (addr, state) = origin.stop().await;
    let answer = visitor
        .get(&antre.url("/"), &[("accept-language", "id-ID,id;q=0.9")])
        .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert!(answer.headers.contains_key("retry-after"));
    assert!(answer.body.contains("lang=\"id\""), "{}", answer.body);
    let english = visitor
        .get(&antre.url("/"), &[("accept-language", "en")])
        .await;
    assert!(english.body.contains("lang=\"en\""));
    let json = visitor
        .get(&antre.url("/api"), &[("accept", "application/json")])
        .await;
    assert_eq!(json.status, StatusCode::BAD_GATEWAY);
    assert_eq!(json.json()["error"], "origin_unavailable");
    assert_eq!(
        visitor.cookie("antre-pass-vaksin"),
        Some(pass.as_str()),
        "the pass is kept"
    );

    let origin = Origin::start_on(addr, state).await;
    let answer = visitor.get(&antre.url("/"), &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "origin ok");
    drop(origin);
}

#[tokio::test]
async fn an_origin_slower_than_the_response_timeout_gets_a_gateway_timeout() {
    let origin = Origin::start().await;
    let text =
        config(&origin.url(), OPEN).replace("[store]", "response_timeout_seconds = 1\n\n[store]");
    let antre = Antre::start("response-timeout", &text);
    let mut visitor = Visitor::new("a");
    // A first request leaves a kept-alive connection to the origin, whose
    // timer the next request moves on.
    assert_eq!(
        visitor.get(&antre.url("/"), &[]).await.status,
        StatusCode::OK
    );
    let pass = visitor.cookie("antre-pass-vaksin").unwrap().to_owned();
    let late = visitor
        .get(&antre.url("/slow/5000"), &[("accept", "application/json")])
        .await;
    assert_eq!(late.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(late.json()["kind"], "timeout");
    assert_eq!(visitor.cookie("antre-pass-vaksin"), Some(pass.as_str()));
    // Within the timeout an answer comes through, on a connection of its
    // own (the one that timed out is not used again).
    let slow = visitor.get(&antre.url("/slow/300"), &[]).await;
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(slow.body, "origin ok, slowly");
    assert_eq!(visitor.get(&antre.url("/"), &[]).await.body, "origin ok");
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let origin = Origin::start().await;
    let text = config(&origin.url(), OPEN)
        .replace("[admin]", "header_read_timeout_seconds = 1\n\n[admin]");
    let antre = Antre::start("header-timeout", &text);
    let mut stream = TcpStream::connect(antre.addr).await.unwrap();
    let sent = std::time::Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the connection was closed by antre");
    // A 1 s setting, not the 10 s default.
    let after = sent.elapsed();
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(4),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn a_query_reaches_the_origin_as_it_was_sent() {
    // Raw UTF-8 in a query (some clients do not escape it) passes as it
    // came, beside escapes left as they are; the path is antre's one
    // spelling of it.
    let origin = Origin::start().await;
    let antre = Antre::start("query", &config(&origin.url(), OPEN));
    let mut stream = TcpStream::connect(
        antre
            .url("/")
            .trim_start_matches("http://")
            .trim_end_matches('/'),
    )
    .await
    .unwrap();
    stream
        .write_all(
            "GET /daftar//%64ata?nama=J\u{e9}r\u{f4}me&kota=%4Balang HTTP/1.1\r\nHost: x\r\nCookie: antre-hello=1\r\nConnection: close\r\n\r\n"
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let seen = origin.seen().pop().unwrap();
    assert_eq!(seen.path, "/daftar/data");
    assert_eq!(
        seen.query.as_deref(),
        Some("nama=J\u{e9}r\u{f4}me&kota=%4Balang")
    );
}

#[tokio::test]
async fn routes_no_room_guards_go_straight_through() {
    let origin = Origin::start().await;
    let rooms = r#"
[[rooms]]
id = "daftar"
paths = ["/daftar"]
admit_per_minute = 1
quota = 1
"#;
    let antre = Antre::start("unguarded", &config(&origin.url(), rooms));
    let mut first = Visitor::new("first");
    assert_eq!(
        first.get(&antre.url("/daftar"), &[]).await.status,
        StatusCode::OK
    );
    let mut second = Visitor::new("second");
    assert_eq!(
        second.get(&antre.url("/daftar/form"), &[]).await.status,
        StatusCode::GONE
    );
    let answer = second.get(&antre.url("/info"), &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "origin ok");
    assert!(second.cookie("antre-ticket-daftar").is_none());
}

#[tokio::test]
async fn status_endpoint_and_json_answers() {
    let origin = Origin::start().await;
    let rooms = r#"
[[rooms]]
id = "vaksin"
paths = ["/"]
admit_per_minute = 1
quota = 10
"#;
    let antre = Antre::start("status", &config(&origin.url(), rooms));
    let mut nobody = Visitor::new("nobody");
    let answer = nobody.status(&antre).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json()["error"], "no_ticket");

    let mut first = Visitor::new("first");
    first.get(&antre.url("/"), &[]).await;
    let status = first.status(&antre).await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.json()["state"], "admitted");

    let mut second = Visitor::new("second");
    let answer = second
        .get(&antre.url("/"), &[("accept", "application/json")])
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers["content-type"], "application/json");
    let json = answer.json();
    for field in [
        "room",
        "state",
        "position",
        "ahead",
        "eta_seconds",
        "quota_left",
        "refresh_seconds",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
    assert_eq!(json["room"], "vaksin");
    assert_eq!(json["state"], "waiting");
    assert_eq!(json["position"], 1);
    assert_eq!(json["ahead"], 0);
    assert_eq!(json["quota_left"], 9);
    let status = second.status(&antre).await.json();
    assert_eq!(status["state"], "waiting");
    assert_eq!(status["ticket"], json["ticket"]);

    let html = second
        .get(&antre.url("/"), &[("accept", "text/html,*/*")])
        .await;
    assert_eq!(html.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(html.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(html.headers["cache-control"], "no-store");
    assert!(html.body.len() < 20 * 1024);
}

#[tokio::test]
async fn the_language_switch_remembers_the_choice_and_goes_back() {
    let origin = Origin::start().await;
    let rooms = r#"
[[rooms]]
id = "vaksin"
paths = ["/"]
admit_per_minute = 1
"#;
    let antre = Antre::start("lang", &config(&origin.url(), rooms));
    Visitor::new("first").get(&antre.url("/"), &[]).await;
    let mut visitor = Visitor::new("v");
    let page = visitor
        .get(&antre.url("/daftar"), &[("accept-language", "id")])
        .await;
    assert!(page.body.contains("lang=\"id\""));
    let switch = visitor
        .get(&antre.url("/_antre/lang?back=%2Fdaftar&set=en"), &[])
        .await;
    assert_eq!(switch.status, StatusCode::SEE_OTHER);
    assert_eq!(switch.headers["location"], "/daftar");
    let page = visitor
        .get(&antre.url("/daftar"), &[("accept-language", "id")])
        .await;
    assert!(
        page.body.contains("lang=\"en\""),
        "the chosen language wins over the header"
    );
    let away = visitor
        .get(&antre.url("/_antre/lang?back=//evil.example&set=en"), &[])
        .await;
    assert_eq!(
        away.headers["location"], "/",
        "never redirects off the site"
    );
}

#[tokio::test]
async fn a_restart_keeps_every_place_and_pass() {
    let origin = Origin::start().await;
    let rooms = r#"
[[rooms]]
id = "vaksin"
paths = ["/"]
admit_per_minute = 1
quota = 100
"#;
    let dir = common::temp_dir("restart");
    let text = config(&origin.url(), rooms);
    let antre = Antre::start_in(&dir, &text);
    assert!(antre
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("created a signing key")));
    let mut admitted = Visitor::new("in");
    assert_eq!(
        admitted.get(&antre.url("/"), &[]).await.status,
        StatusCode::OK
    );
    let mut waiting: Vec<Visitor> = (0..5).map(|i| Visitor::new(format!("w{i}"))).collect();
    let mut tickets = Vec::new();
    for visitor in &mut waiting {
        let json = visitor
            .get(&antre.url("/"), &[("accept", "application/json")])
            .await
            .json();
        tickets.push(json["ticket"].as_u64().unwrap());
    }
    assert!(antre.stop().success(), "a clean exit on SIGTERM");

    let antre = Antre::start_in(&dir, &text);
    assert_eq!(
        admitted.get(&antre.url("/"), &[]).await.status,
        StatusCode::OK,
        "passes still count"
    );
    for (visitor, ticket) in waiting.iter_mut().zip(&tickets) {
        let json = visitor.status(&antre).await.json();
        assert_eq!(json["ticket"].as_u64(), Some(*ticket), "the place is kept");
    }
    let mut newcomer = Visitor::new("new");
    let json = newcomer
        .get(&antre.url("/"), &[("accept", "application/json")])
        .await
        .json();
    assert_eq!(json["ticket"].as_u64(), Some(tickets.last().unwrap() + 1));

    // Killed outright, it still comes back with everything.
    antre.kill();
    let antre = Antre::start_in(&dir, &text);
    let json = newcomer.status(&antre).await.json();
    assert_eq!(json["ticket"].as_u64(), Some(tickets.last().unwrap() + 1));
    assert_eq!(
        admitted.get(&antre.url("/"), &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let origin = Origin::start().await;
    let text = config(&origin.url(), OPEN).replace(
        "[admin]",
        "header_read_timeout_seconds = 60\nidle_timeout_seconds = 1\n\n[admin]",
    );
    let antre = Antre::start("idle", &text);
    let mut stream = TcpStream::connect(antre.addr).await.unwrap();
    stream
        .write_all(b"GET /_antre/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    // The response comes, then, with no further traffic, the connection ends.
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the idle connection was closed by antre");
    assert!(String::from_utf8_lossy(&buffer).starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn antre_cookies_do_not_reach_the_origin() {
    let origin = Origin::start().await;
    let antre = Antre::start("own-cookies", &config(&origin.url(), OPEN));
    let mut visitor = Visitor::new("a");
    visitor.set_cookie("session", "site-own");
    visitor.get(&antre.url("/"), &[]).await;
    visitor.get(&antre.url("/"), &[]).await;
    assert!(visitor.cookie("antre-pass-vaksin").is_some());
    let seen = origin.seen().pop().unwrap();
    assert_eq!(seen.headers["cookie"], "session=site-own");
}

#[tokio::test]
async fn configuring_keys_later_keeps_every_place() {
    let origin = Origin::start().await;
    let rooms = "[[rooms]]\nid = \"vaksin\"\npaths = [\"/\"]\nadmit_per_minute = 1\nquota = 100\n";
    let dir = common::temp_dir("keys-later");
    let antre = Antre::start_in(&dir, &config(&origin.url(), rooms));
    let mut admitted = Visitor::new("in");
    assert_eq!(
        admitted.get(&antre.url("/"), &[]).await.status,
        StatusCode::OK
    );
    let mut waiting = Visitor::new("w");
    let ticket = waiting
        .get(&antre.url("/"), &[("accept", "application/json")])
        .await
        .json()["ticket"]
        .clone();
    antre.stop();

    let keys = "[[keys]]\nid = \"2026-11\"\nsecret = \"a secret of at least thirty-two bytes\"\n";
    let antre = Antre::start_in(&dir, &format!("{}\n{keys}", config(&origin.url(), rooms)));
    assert_eq!(
        admitted.get(&antre.url("/"), &[]).await.status,
        StatusCode::OK,
        "the old pass still counts"
    );
    assert_eq!(
        waiting.status(&antre).await.json()["ticket"],
        ticket,
        "the old ticket still counts"
    );
    let mut newcomer = Visitor::new("new");
    newcomer.get(&antre.url("/"), &[]).await;
    assert!(
        newcomer
            .cookie("antre-ticket-vaksin")
            .unwrap()
            .starts_with("1.2026-11."),
        "new cookies use the new key"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_its_forwarded_headers_are_kept() {
    let origin = Origin::start().await;
    let text = config(&origin.url(), OPEN).replace(
        "[admin]",
        "trusted_proxies = [\"127.0.0.0/8\"]\nsecure_cookies = true\n\n[admin]",
    );
    let antre = Antre::start("trusted", &text);
    let mut visitor = Visitor::from_address("a", [127, 0, 0, 1].into());
    let answer = visitor
        .get(
            &antre.url("/"),
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-host", "vaksin.kota.example"),
            ],
        )
        .await;
    assert!(answer
        .headers
        .get_all("set-cookie")
        .iter()
        .all(|c| c.to_str().unwrap().contains("Secure")));
    let seen = origin.seen().pop().unwrap();
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(
        seen.headers["x-forwarded-proto"], "https",
        "TLS ends in front of antre"
    );
    assert_eq!(seen.headers["x-forwarded-host"], "vaksin.kota.example");
}

#[tokio::test]
async fn clients_that_keep_no_cookies_take_no_place() {
    let origin = Origin::start().await;
    let rooms = "[[rooms]]\nid = \"vaksin\"\npaths = [\"/\"]\nadmit_per_minute = 60\nquota = 5\n";
    let antre = Antre::start("monitors", &config(&origin.url(), rooms));
    let client = common::client();
    for _ in 0..20 {
        let response = client
            .request(Request::get(antre.url("/")).body(common::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert!(response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("antre-hello=1"));
    }
    let health = client
        .request(
            Request::get(antre.url("/_antre/health"))
                .body(common::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(origin.seen().is_empty(), "no monitor reached the origin");
    // A browser follows the redirect, comes back with the cookie, and is the
    // first admitted: the monitors used none of the quota of five.
    let mut visitor = Visitor::new("citizen");
    let answer = visitor.get(&antre.url("/"), &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    let status = visitor.status(&antre).await.json();
    assert_eq!(status["quota_left"], 4);
}
