//! The front door as an attacker tries it: odd spellings, every method,
//! forged headers, smuggled bodies and stray cookies, against a room that
//! guards the whole site but `/static`, with a full line.

mod common;

use std::time::Duration;

use common::{config, Antre, Origin, Visitor};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Guards everything but `/static`; one admission a minute, so after the
/// first visitor everyone waits.
const ROOM: &str = r#"[[rooms]]
id = "vaksin"
paths = ["/"]
unguarded = ["/static"]
admit_per_minute = 1
quota = 1000
"#;

/// A raw exchange: what antre answered, as text (lossy), up to when it
/// closed the connection or went quiet.
async fn raw(antre: &Antre, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(antre.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Decodes a corpus line: `\r \n \t \\ \xNN`, `{STD}` and `{TICKET}`.
fn decode(line: &str, ticket: &str) -> Vec<u8> {
    let line = line
        .replace(
            "{STD}",
            "Host: antre.test\\r\\nCookie: antre-hello=1\\r\\nConnection: close\\r\\n",
        )
        .replace("{TICKET}", &format!("Cookie: {ticket}\\r\\n"));
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            other => panic!("unknown escape {other:?} in {line}"),
        }
        i += 2;
    }
    out
}

/// Fills the line: the first visitor takes the one admission the room has
/// saved up; the second gets a ticket and waits. Returns the waiting
/// visitor.
async fn full_line(antre: &Antre, origin: &Origin) -> Visitor {
    let mut first = Visitor::new("first");
    assert_eq!(
        first.get(&antre.url("/daftar"), &[]).await.status,
        StatusCode::OK
    );
    let mut waiting = Visitor::new("waiting");
    let answer = waiting.get(&antre.url("/daftar"), &[]).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(waiting.cookie("antre-ticket-vaksin").is_some());
    assert_eq!(origin.seen().len(), 1);
    waiting
}

/// How the most lenient origins read a path: escapes decoded again and
/// again (`%u` included), backslashes as slashes, cut at a NUL, `;params`
/// dropped, trailing dots and spaces trimmed, dot segments resolved, case
/// ignored.
fn lenient(path: &str) -> String {
    let mut text = path.to_owned();
    for _ in 0..3 {
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let hex = |from: usize, len: usize| {
                bytes
                    .get(from..from + len)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
            };
            if bytes[i] == b'%' && matches!(bytes.get(i + 1), Some(b'u' | b'U')) {
                if let Some(c) = hex(i + 2, 4).and_then(char::from_u32) {
                    out.extend_from_slice(c.to_string().as_bytes());
                    i += 6;
                    continue;
                }
            }
            if bytes[i] == b'%' {
                if let Some(byte) = hex(i + 1, 2) {
                    out.push(byte as u8);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        text = String::from_utf8_lossy(&out).into_owned();
    }
    // Full-width forms read as ASCII (Windows best-fit, NFKC).
    let text: String = text
        .chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .collect();
    let text = text.split('\0').next().unwrap_or("").replace('\\', "/");
    let mut segments: Vec<String> = Vec::new();
    for segment in text.split('/') {
        let name = segment.split(';').next().unwrap_or("");
        let name = name.trim_end_matches(['.', ' ', '\t', '\r', '\n']);
        match (segment.split(';').next().unwrap_or(""), name) {
            (".." | "...", _) => {
                segments.pop();
            }
            (".", _) | (_, "") => {}
            (_, name) => segments.push(name.to_lowercase()),
        }
    }
    format!("/{}", segments.join("/"))
}

#[test]
fn the_lenient_reading_finds_daftar_in_every_disguise() {
    for path in [
        "/daftar%00.css",
        "/DAFTAR.",
        "/daftar%20",
        "/%u0064aftar",
        "/x/..;/daftar",
        "/static/..%5cdaftar",
        "/%252e%252e/daftar",
        "/daftar;jsessionid=1",
        "/%EF%BD%84aftar",
        "/x/%EF%BC%8E%EF%BC%8E/daftar",
    ] {
        assert_eq!(lenient(path), "/daftar", "{path}");
    }
}

/// Sends every corpus entry to antre guarding per `rooms` with a full
/// line; `reached` says whether what the origin saw is a guarded request.
async fn corpus_against(name: &str, rooms: &str, guarded: impl Fn(&str) -> bool) {
    let origin = Origin::start().await;
    let antre = Antre::start(name, &config(&origin.url(), rooms));
    let waiting = full_line(&antre, &origin).await;
    let ticket = format!(
        "antre-ticket-vaksin={}",
        waiting.cookie("antre-ticket-vaksin").unwrap()
    );

    let corpus = include_str!("corpus/front-door.txt");
    let mut sent = 0;
    let mut statuses = std::collections::BTreeMap::new();
    for line in corpus.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let before = origin.seen().len();
        let answer = raw(&antre, &decode(line, &ticket)).await;
        let status = answer.get(9..12).unwrap_or("---").to_owned();
        *statuses.entry(status).or_insert(0) += 1;
        for seen in &origin.seen()[before..] {
            assert!(
                !guarded(&seen.path),
                "{line}\n reached the origin as {} {} (read leniently: {})\n antre answered: {answer}",
                seen.method,
                seen.path,
                lenient(&seen.path),
            );
            for header in [
                "x-original-url",
                "x-rewrite-url",
                "x_original_url",
                "x_rewrite_url",
                "x-smuggled",
            ] {
                assert!(
                    !seen.headers.contains_key(header),
                    "{line}\n reached the origin with {header}"
                );
            }
        }
        sent += 1;
    }
    assert!(sent >= 100, "the corpus holds {sent} entries");
    println!("{name}: {sent} corpus entries, answers by status: {statuses:?}");

    // The line is as it was: the waiting visitor still holds their place.
    let mut waiting = waiting;
    let status = waiting.status(&antre).await.json();
    assert_eq!(status["ticket"], 2, "{status}");
    assert_eq!(status["state"], "waiting");
}

#[tokio::test]
async fn nothing_in_the_corpus_reaches_the_origin_as_a_guarded_request() {
    // The recommended form: the whole site but `/static`.
    corpus_against("corpus-site", ROOM, |path| {
        let read = lenient(path);
        !(read == "/static" || read.starts_with("/static/"))
    })
    .await;
    // One prefix guarded, the rest open: what reaches the origin must not
    // be read as that prefix by even the most lenient origin.
    let daftar =
        "[[rooms]]\nid = \"vaksin\"\npaths = [\"/daftar\"]\nadmit_per_minute = 1\nquota = 1000\n";
    corpus_against("corpus-prefix", daftar, |path| {
        let read = lenient(path);
        read == "/daftar" || read.starts_with("/daftar/")
    })
    .await;
}

#[tokio::test]
async fn ambiguous_paths_are_refused_before_any_room_and_counted() {
    let origin = Origin::start().await;
    let antre = Antre::start("refused", &config(&origin.url(), ROOM));
    for path in [
        "/daftar%00",
        "/static/..%2fdaftar",
        "/%u0064aftar",
        "/daftar.",
    ] {
        let answer = raw(
            &antre,
            format!("GET {path} HTTP/1.1\r\nHost: antre.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{path}: {answer}");
        assert!(
            !answer.contains("set-cookie"),
            "{path}: no ticket, no hello"
        );
    }
    let answer = raw(
        &antre,
        b"GET /daftar%00 HTTP/1.1\r\nHost: antre.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.contains(r#""error":"control_byte""#), "{answer}");
    assert!(origin.seen().is_empty());
    let metrics = metrics(&antre).await;
    assert!(
        metrics.contains("antre_requests_total{outcome=\"refused\",room=\"none\"} 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn http2_requests_take_the_same_door() {
    let origin = Origin::start().await;
    let antre = Antre::start("h2-door", &config(&origin.url(), ROOM));
    full_line(&antre, &origin).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<common::Body>();
    let send = |method: &str, path: &str, body: &'static str| {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", antre.addr))
            .header("cookie", "antre-hello=1")
            .body(
                http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes()))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap();
        client.request(request)
    };
    use http_body_util::BodyExt;
    for (method, path, body, expected) in [
        ("GET", "/daftar%00", "", StatusCode::BAD_REQUEST),
        ("GET", "/static/..%2fdaftar", "", StatusCode::BAD_REQUEST),
        ("GET", "/static/%2e%2e/daftar", "", StatusCode::BAD_REQUEST),
        (
            "GET",
            "/static/x",
            "GET /daftar HTTP/1.1\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        ("OPTIONS", "/daftar", "nik=1", StatusCode::BAD_REQUEST),
        ("TRACE", "/static/x", "", StatusCode::METHOD_NOT_ALLOWED),
        ("POST", "/daftar", "nik=1", StatusCode::SERVICE_UNAVAILABLE),
        ("GET", "/DAFTAR;x=1", "", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let response = send(method, path, body).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), expected, "{method} {path}");
    }
    assert_eq!(origin.seen().len(), 1, "only the first visitor reached it");
}

#[tokio::test]
async fn what_the_room_matched_is_what_the_origin_receives() {
    let origin = Origin::start().await;
    let rooms = "[[rooms]]\nid = \"vaksin\"\npaths = [\"/daftar\"]\nadmit_per_minute = 600000\n";
    let antre = Antre::start("canonical", &config(&origin.url(), rooms));
    let mut visitor = Visitor::new("a");
    for (sent, received) in [
        ("/%64aftar/%66orm", "/daftar/form"),
        ("//daftar//x", "/daftar/x"),
        ("/DAFTAR;jsessionid=1", "/DAFTAR;jsessionid=1"),
        ("/berita/%e2%9c%93", "/berita/%E2%9C%93"),
    ] {
        let answer = visitor.get(&antre.url(sent), &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{sent}");
        assert_eq!(origin.seen().pop().unwrap().path, received, "{sent}");
    }
    // The first request to each guarded spelling went through the room:
    // the visitor holds its pass.
    assert!(visitor.cookie("antre-pass-vaksin").is_some());
}

#[tokio::test]
async fn no_location_antre_writes_leads_off_site() {
    let origin = Origin::start().await;
    let antre = Antre::start("redirects", &config(&origin.url(), ROOM));
    for (request, expected) in [
        ("GET //evil.example/ HTTP/1.1", "/evil.example/"),
        ("GET ///evil.example/x?y=1 HTTP/1.1", "/evil.example/x?y=1"),
        ("GET /_antre/lang?set=en&back=//evil.example HTTP/1.1", "/"),
        (
            "GET /_antre/lang?set=en&back=%2F%2Fevil.example HTTP/1.1",
            "/",
        ),
        (
            "GET /_antre/lang?set=en&back=/%5Cevil.example HTTP/1.1",
            "/",
        ),
        (
            "GET /_antre/lang?set=en&back=https://evil.example HTTP/1.1",
            "/",
        ),
        (
            "GET /_antre/lang?set=en&back=/daftar%3Fx%3D1 HTTP/1.1",
            "/daftar?x=1",
        ),
    ] {
        let answer = raw(
            &antre,
            format!("{request}\r\nHost: antre.test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let location = answer
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap_or_else(|| panic!("{request}: no location in {answer}"));
        assert_eq!(location, expected, "{request}");
    }
}

#[tokio::test]
async fn a_non_ascii_cookie_costs_nobody_their_place_or_pass() {
    let origin = Origin::start().await;
    let antre = Antre::start("cookies", &config(&origin.url(), ROOM));
    let waiting = full_line(&antre, &origin).await;
    let ticket = waiting.cookie("antre-ticket-vaksin").unwrap().to_owned();

    let request = [
        b"GET /daftar HTTP/1.1\r\nHost: antre.test\r\nAccept: application/json\r\nConnection: close\r\nCookie: nama=J\xc3\xa9r\xc3\xb4me; junk=\xff\xfe; antre-ticket-vaksin=".as_slice(),
        ticket.as_bytes(),
        b"; theme=dark\r\n\r\n",
    ]
    .concat();
    let answer = raw(&antre, &request).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(
        answer.contains(r#""ticket":2"#),
        "kept their place: {answer}"
    );
    assert!(
        !answer.contains("antre-ticket-vaksin="),
        "no new ticket: {answer}"
    );

    // A pass holder with the same cookie beside the pass goes through.
    let mut admitted = Visitor::new("admitted");
    let rooms = ROOM.replace("admit_per_minute = 1", "admit_per_minute = 600000");
    let open = Antre::start("cookies-open", &config(&origin.url(), &rooms));
    admitted.get(&open.url("/daftar"), &[]).await;
    let pass = admitted.cookie("antre-pass-vaksin").unwrap().to_owned();
    let before = origin.seen().len();
    let request = [
        b"GET /daftar HTTP/1.1\r\nHost: antre.test\r\nConnection: close\r\nCookie: nama=J\xc3\xa9r\xc3\xb4me; antre-pass-vaksin=".as_slice(),
        pass.as_bytes(),
        b"\r\nCookie: junk=\x80\r\n\r\n",
    ]
    .concat();
    let answer = raw(&open, &request).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let seen = &origin.seen()[before];
    assert_eq!(
        seen.headers["cookie"].as_bytes(),
        b"nama=J\xc3\xa9r\xc3\xb4me; junk=\x80",
        "the site's own cookies pass untouched, antre's stay out"
    );
}

#[tokio::test]
async fn a_pass_on_a_cacheable_response_comes_back_private() {
    let origin = Origin::start().await;
    let rooms = ROOM.replace("admit_per_minute = 1", "admit_per_minute = 600000");
    let antre = Antre::start("private", &config(&origin.url(), &rooms));
    let mut visitor = Visitor::new("a");
    let answer = visitor.get(&antre.url("/cacheable"), &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("antre-pass-vaksin="));
    assert_eq!(answer.headers["cache-control"], "private, max-age=600");
    assert_eq!(answer.headers["vary"], "Cookie");
    // Without a cookie to set, the origin's caching stands.
    let answer = visitor.get(&antre.url("/cacheable"), &[]).await;
    assert!(answer.headers.get("set-cookie").is_none());
    assert_eq!(answer.headers["cache-control"], "public, max-age=600");
}

#[tokio::test]
async fn only_a_real_preflight_skips_the_line() {
    let origin = Origin::start().await;
    let antre = Antre::start("preflight", &config(&origin.url(), ROOM));
    full_line(&antre, &origin).await;
    let preflight = "OPTIONS /daftar.php?nik=3171234567890123&kirim=1 HTTP/1.1\r\nHost: antre.test\r\nOrigin: http://app.example\r\nAccess-Control-Request-Method: POST\r\nX-HTTP-Method-Override: POST\r\nCookie: antre-hello=1; session=abc\r\nAuthorization: Basic YTpi\r\nConnection: close\r\n\r\n";
    let answer = raw(&antre, preflight.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let seen = origin.seen().pop().unwrap();
    assert_eq!(seen.method, http::Method::OPTIONS);
    assert_eq!(seen.path, "/daftar.php");
    assert_eq!(seen.query, None, "nor the query a script would read");
    for header in ["x-http-method-override", "cookie", "authorization"] {
        assert!(
            !seen.headers.contains_key(header),
            "a preflight carries no {header} to the origin"
        );
    }
    assert_eq!(seen.headers["access-control-request-method"], "POST");

    let before = origin.seen().len();
    for request in [
        "OPTIONS /daftar HTTP/1.1\r\nHost: antre.test\r\nCookie: antre-hello=1\r\nConnection: close\r\n\r\n",
        "OPTIONS /daftar HTTP/1.1\r\nHost: antre.test\r\nCookie: antre-hello=1\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
        "OPTIONS /daftar HTTP/1.1\r\nHost: antre.test\r\nOrigin: http://app.example\r\nAccess-Control-Request-Method: POST\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    ] {
        let answer = raw(&antre, request.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 503 ") || answer.starts_with("HTTP/1.1 400 "),
            "{request}: {answer}"
        );
    }
    assert_eq!(origin.seen().len(), before);
}

#[tokio::test]
async fn hosts_nobody_serves_are_misdirected() {
    let origin = Origin::start().await;
    let rooms = "[[rooms]]\nid = \"vaksin\"\npaths = [\"/daftar\"]\nhosts = [\"vaksin.kota.example\"]\nadmit_per_minute = 1\n";
    let antre = Antre::start("hosts", &config(&origin.url(), rooms));
    for host in ["other.example", "127.0.0.1", "vaksin.kota.example.evil"] {
        let answer = raw(
            &antre,
            format!("GET /daftar HTTP/1.1\r\nHost: {host}\r\nCookie: antre-hello=1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 421 "), "{host}: {answer}");
    }
    let answer = raw(
        &antre,
        b"GET /daftar HTTP/1.0\r\nCookie: antre-hello=1\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.0 421 "), "no host: {answer}");
    assert!(origin.seen().is_empty());

    let answer = raw(
        &antre,
        b"GET /daftar HTTP/1.1\r\nHost: VAKSIN.kota.example.:8080\r\nCookie: antre-hello=1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.contains("antre-pass-vaksin="), "guarded: {answer}");
}

#[tokio::test]
async fn forged_identity_headers_are_replaced() {
    let origin = Origin::start().await;
    let rooms = ROOM.replace("admit_per_minute = 1", "admit_per_minute = 600000");
    let antre = Antre::start("identity", &config(&origin.url(), &rooms));
    let mut visitor = Visitor::from_address("a", [127, 0, 0, 1].into());
    let forged = [
        ("forwarded", "for=10.9.9.9;proto=https"),
        ("x-forwarded-for", "10.9.9.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "admin.kota.example"),
        ("x-forwarded-prefix", "/admin"),
        ("x-forwarded-port", "443"),
        ("x-real-ip", "10.9.9.9"),
        ("true-client-ip", "10.9.9.9"),
        ("cf-connecting-ip", "10.9.9.9"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
    ];
    let answer = visitor.get(&antre.url("/daftar"), &forged).await;
    assert_eq!(answer.status, StatusCode::OK);
    let seen = origin.seen().pop().unwrap();
    for gone in [
        "x-forwarded-prefix",
        "x-forwarded-port",
        "x-real-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-original-url",
        "x-rewrite-url",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the origin"
        );
    }
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], antre.addr.to_string());
    assert_eq!(
        seen.headers["forwarded"],
        format!("for=127.0.0.1;host=\"{}\";proto=http", antre.addr)
    );
}

#[tokio::test]
async fn a_body_antre_cannot_read_is_the_clients_fault() {
    let origin = Origin::start().await;
    let antre = Antre::start("bad-body", &config(&origin.url(), ROOM));
    let answer = raw(
        &antre,
        b"POST /static/upload HTTP/1.1\r\nHost: antre.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let metrics = metrics(&antre).await;
    assert!(
        metrics.contains("antre_requests_total{outcome=\"client_error\",room=\"none\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("antre_origin_errors_total{"), "{metrics}");
    assert!(antre
        .log
        .lock()
        .unwrap()
        .iter()
        .all(|line| !line.contains("origin request failed")));
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_refused() {
    let origin = Origin::start().await;
    let antre = Antre::start("coding", &config(&origin.url(), ROOM));
    for coding in [
        "gzip, chunked",
        "deflate,chunked",
        "chunked, identity, chunked",
    ] {
        let request = format!(
            "POST /static/upload HTTP/1.1\r\nHost: antre.test\r\nTransfer-Encoding: {coding}\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let answer = raw(&antre, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 501 "), "{coding}: {answer}");
    }
    // Chunked alone, in any case, goes through.
    let answer = raw(
        &antre,
        b"POST /static/upload HTTP/1.1\r\nHost: antre.test\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(
        origin.seen().len(),
        1,
        "only the plain chunked body reached the site"
    );
}

#[tokio::test]
async fn an_origin_connection_is_not_reused_after_a_body_cut_short() {
    let origin = Origin::start().await;
    let rooms = ROOM.replace("admit_per_minute = 1", "admit_per_minute = 600000");
    let antre = Antre::start("cut-body", &config(&origin.url(), &rooms));
    let mut visitor = Visitor::new("a");
    assert_eq!(
        visitor.get(&antre.url("/x"), &[]).await.status,
        StatusCode::OK
    );
    let pass = visitor.cookie("antre-pass-vaksin").unwrap().to_owned();
    let connections = || {
        origin
            .state
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    assert_eq!(connections(), 1);

    // A good chunk, then garbage where the next chunk size belongs: the
    // origin has read part of a body when antre gives up on it.
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: antre.test\r\nCookie: antre-pass-vaksin={pass}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\nGET /smuggled HTTP/1.1\r\n\r\n"
    );
    let answer = raw(&antre, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");

    // Whichever worker and origin connection each lands on, every next
    // request is answered whole: none meets the half-sent body.
    for i in 0..6 {
        let request = format!(
            "GET /after{i} HTTP/1.1\r\nHost: antre.test\r\nCookie: antre-pass-vaksin={pass}\r\nConnection: close\r\n\r\n"
        );
        let answer = raw(&antre, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert_eq!(origin.seen().last().unwrap().path, format!("/after{i}"));
    }
    assert_eq!(
        visitor.get(&antre.url("/after"), &[]).await.status,
        StatusCode::OK
    );
    // The connection the cut body went over (the pooled one, or a new
    // one) was closed, not reused: a second had to be opened either way.
    assert!(connections() >= 2, "{} origin connections", connections());
    assert!(origin.seen().iter().all(|s| s.path != "/smuggled"));
}

#[tokio::test]
async fn a_careless_101_opens_no_tunnel() {
    let origin = Origin::start().await;
    let antre = Antre::start("bogus-101", &config(&origin.url(), ROOM));
    // `/static` is open to all: an origin that answers 101 there without a
    // real handshake must not give the client a raw connection to it.
    for request in [
        "GET /static/../ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "GET /ws?bogus HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    ] {
        let answer = raw(&antre, request.as_bytes()).await;
        assert!(!answer.starts_with("HTTP/1.1 101"), "{request}: {answer}");
    }
    let unguarded = ROOM.replace(
        "unguarded = [\"/static\"]",
        "unguarded = [\"/static\", \"/ws\"]",
    );
    let antre = Antre::start("bogus-101-open", &config(&origin.url(), &unguarded));
    let mut stream = TcpStream::connect(antre.addr).await.unwrap();
    stream
        .write_all(b"GET /ws?bogus HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nGET /daftar HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        origin.seen().iter().all(|s| s.path != "/daftar"),
        "nothing went through a tunnel"
    );

    // A real handshake still opens one.
    let mut stream = TcpStream::connect(antre.addr).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buffer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
}

#[tokio::test]
async fn every_request_is_counted_once_with_its_outcome() {
    let origin = Origin::start().await;
    let antre = Antre::start("counted", &config(&origin.url(), ROOM));
    let mut waiting = full_line(&antre, &origin).await;
    for _ in 0..3 {
        assert_eq!(waiting.status(&antre).await.status, StatusCode::OK);
    }
    Visitor::new("x")
        .get(&antre.url("/static/app.js"), &[])
        .await;
    let metrics = metrics(&antre).await;
    for line in [
        "antre_requests_total{outcome=\"admitted\",room=\"vaksin\"} 1",
        "antre_requests_total{outcome=\"waiting\",room=\"vaksin\"} 1",
        "antre_requests_total{outcome=\"status\",room=\"vaksin\"} 3",
        "antre_requests_total{outcome=\"unguarded\",room=\"none\"} 1",
        "antre_requests_total{outcome=\"cookie_check\",room=\"vaksin\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    // Log lines reach standard error a moment after the request.
    let access_lines = || -> Vec<String> {
        antre
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("antre::access"))
            .cloned()
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while access_lines().len() < 8 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let access = access_lines();
    assert_eq!(access.len(), 8, "one access line per request: {access:#?}");
    assert!(access
        .iter()
        .any(|l| l.contains("path=/_antre/status") && l.contains("outcome=\"status\"")));
}

async fn metrics(antre: &Antre) -> String {
    antre.admin_get("/metrics").await
}

#[tokio::test]
async fn the_access_log_speaks_json_when_asked() {
    let origin = Origin::start().await;
    let port = common::free_port();
    let dir = common::temp_dir("json-log");
    let path = dir.join("antre.toml");
    let text = config(&origin.url(), ROOM).replace(
        "addr = \"127.0.0.1:0\"\n\n[admin]",
        &format!("addr = \"127.0.0.1:{port}\"\n\n[admin]"),
    );
    std::fs::write(&path, text).unwrap();
    let child = common::antre_command()
        .args(["run", "--log-format", "json", "--config"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let answer = loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await {
            stream
                .write_all(
                    b"GET /daftar%00 HTTP/1.1\r\nHost: antre.test\r\nConnection: close\r\n\r\n",
                )
                .await
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "antre did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let access: serde_json::Value = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["target"] == "antre::access")
        .unwrap_or_else(|| panic!("no access line in {stderr}"));
    assert_eq!(access["fields"]["outcome"], "refused", "{access}");
    assert_eq!(access["fields"]["status"], 400, "{access}");
    assert_eq!(access["fields"]["client"], "127.0.0.1", "{access}");
}

#[tokio::test]
async fn request_heads_are_bounded_on_both_listeners() {
    let origin = Origin::start().await;
    let antre = Antre::start("big-heads", &config(&origin.url(), ROOM));
    let cookie = format!("site={}", "x".repeat(100 * 1024));
    let answer = raw(
        &antre,
        format!("GET /static/x HTTP/1.1\r\nHost: antre.test\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 431 "),
        "{}",
        &answer[..answer.len().min(200)]
    );
    // A head of a few site cookies is fine.
    let cookie = format!("site={}", "x".repeat(8 * 1024));
    let answer = raw(
        &antre,
        format!("GET /static/x HTTP/1.1\r\nHost: antre.test\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200 "),
        "{}",
        &answer[..answer.len().min(200)]
    );

    let mut stream = TcpStream::connect(antre.admin_addr).await.unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "x".repeat(20 * 1024)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
}
