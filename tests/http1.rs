//! What a visitor's HTTP/1.1 client sees on the wire: plain `GET`s are read
//! and answered by antre's own HTTP/1.1 side, anything else by hyper's, on
//! the same connection and in order. An origin speaking raw bytes shows
//! that the framing the visitor gets is right whatever the origin's was.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{config, Antre};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Only `/guarded` has a room: every other path goes straight through.
const ROOM: &str = r#"
[[rooms]]
id = "loket"
paths = ["/guarded"]
admit_per_minute = 600
"#;

/// An origin answering in raw bytes, by path:
/// - `/chunked`: a chunked body, "hello world";
/// - `/until-close`: a body delimited by closing the connection;
/// - `/not-modified`, `/no-content`: `304` and `204`;
/// - `/short`: says 100 bytes, sends 10 and closes;
/// - `/slow`: answers after a second;
/// - anything else: "METHOD /path" and, for a body, its length.
async fn raw_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve_raw(stream));
        }
    });
    addr
}

async fn serve_raw(mut stream: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut words = head.split(' ');
        let method = words.next().unwrap_or_default().to_owned();
        let path = words.next().unwrap_or_default().to_owned();
        let length = common::content_length_of(&head);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        let answer: Vec<u8> = match path.as_str() {
            "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
            "/until-close" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
                    .await;
                return;
            }
            "/not-modified" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec(),
            "/no-content" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/short" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                    .await;
                return;
            }
            _ => {
                if path == "/slow" {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let body = match length {
                    0 => format!("{method} {path}"),
                    n => format!("{method} {path} {n}"),
                };
                let mut answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                if method != "HEAD" {
                    answer.extend_from_slice(body.as_bytes());
                }
                answer
            }
        };
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// One response read off a connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client side of one connection that reads responses as they come.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(antre: &Antre) -> Client {
        Client {
            stream: TcpStream::connect(antre.addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// More bytes, or false at EOF.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("antre answered in time")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "closed before {n} bytes");
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..at + 2).collect();
                return String::from_utf8(line[..at].to_vec()).unwrap();
            }
            assert!(self.fill().await, "closed mid-line");
        }
    }

    /// The next response; `head` for the answer to a `HEAD`.
    async fn answer(&mut self, head: bool) -> Answer {
        let status_line = self.line().await;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a field");
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        if head || status == 204 || status == 304 {
            return answer;
        }
        if answer
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size = usize::from_str_radix(&self.line().await, 16).expect("chunk size");
                if size == 0 {
                    assert_eq!(self.line().await, "", "no trailers");
                    break;
                }
                let data = self.take(size).await;
                answer.body.extend_from_slice(&data);
                assert_eq!(self.take(2).await, b"\r\n");
            }
        } else if let Some(length) = answer.header("content-length") {
            answer.body = self.take(length.parse().unwrap()).await;
        } else {
            while self.fill().await {}
            answer.body = std::mem::take(&mut self.buf);
        }
        answer
    }

    /// Whether the connection is closed (EOF) within a few seconds.
    async fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: antre.test\r\n\r\n")
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_whichever_side_reads_them() {
    let origin = raw_origin().await;
    let antre = Antre::start("h1-pipeline", &config(&format!("http://{origin}"), ROOM));
    let mut client = Client::connect(&antre).await;
    let mut burst = get("/one");
    burst.push_str("POST /two HTTP/1.1\r\nHost: antre.test\r\nContent-Length: 5\r\n\r\nhello");
    burst.push_str(&get("/three"));
    burst.push_str("HEAD /four HTTP/1.1\r\nHost: antre.test\r\n\r\n");
    burst.push_str("GET /five HTTP/1.1\r\nHost: antre.test\r\nConnection: keep-alive\r\n\r\n");
    burst.push_str(&get("/six"));
    client.send(burst.as_bytes()).await;

    for (path, head, body) in [
        ("/one", false, "GET /one"),
        ("/two", false, "POST /two 5"),
        ("/three", false, "GET /three"),
        ("/four", true, ""),
        ("/five", false, "GET /five"),
        ("/six", false, "GET /six"),
    ] {
        let answer = client.answer(head).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(String::from_utf8_lossy(&answer.body), body, "{path}");
        assert!(answer.header("date").is_some(), "{path}: {answer:?}");
        if head {
            assert_eq!(answer.header("content-length"), Some("10"), "{answer:?}");
        }
    }
    // Still open, and served again after a pause.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.send(get("/seven").as_bytes()).await;
    assert_eq!(client.answer(false).await.body, b"GET /seven");
}

#[tokio::test]
async fn the_visitor_gets_framing_of_its_own_whatever_the_origin_used() {
    let origin = raw_origin().await;
    let antre = Antre::start("h1-framing", &config(&format!("http://{origin}"), ROOM));
    let mut client = Client::connect(&antre).await;

    client.send(get("/chunked").as_bytes()).await;
    let answer = client.answer(false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"hello world");

    // Delimited by the origin closing: the visitor's connection stays.
    client.send(get("/until-close").as_bytes()).await;
    let answer = client.answer(false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"until close");
    assert_eq!(answer.header("connection"), None, "{answer:?}");

    client.send(get("/not-modified").as_bytes()).await;
    let answer = client.answer(false).await;
    assert_eq!(answer.status, 304);
    assert_eq!(answer.header("etag"), Some("\"v1\""));
    assert_eq!(answer.header("content-length"), None, "{answer:?}");
    assert_eq!(answer.header("transfer-encoding"), None, "{answer:?}");

    client.send(get("/no-content").as_bytes()).await;
    let answer = client.answer(false).await;
    assert_eq!(answer.status, 204);
    assert_eq!(answer.header("content-length"), None, "{answer:?}");

    // Each answer ended where the client thought: the next one reads whole.
    client.send(get("/last").as_bytes()).await;
    assert_eq!(client.answer(false).await.body, b"GET /last");
}

#[tokio::test]
async fn a_body_the_origin_cuts_short_closes_the_visitors_connection() {
    let origin = raw_origin().await;
    let antre = Antre::start("h1-short", &config(&format!("http://{origin}"), ROOM));
    let mut client = Client::connect(&antre).await;
    client.send(get("/short").as_bytes()).await;
    let status = client.line().await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    loop {
        if client.line().await.is_empty() {
            break;
        }
    }
    // The ten bytes sent (at most), then the connection closes, so the
    // client knows the body is not whole.
    while client.fill().await {}
    assert!(client.buf.len() < 100, "{} bytes", client.buf.len());
}

#[tokio::test]
async fn shutdown_ends_the_answer_in_flight_and_then_the_connection() {
    let origin = raw_origin().await;
    let antre = Antre::start("h1-shutdown", &config(&format!("http://{origin}"), ROOM));
    let mut client = Client::connect(&antre).await;
    client.send(get("/warm").as_bytes()).await;
    assert_eq!(client.answer(false).await.body, b"GET /warm");
    client.send(get("/slow").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    antre.signal("TERM");
    let answer = client.answer(false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"GET /slow");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert!(client.closed().await, "closed after the answer");
}

#[tokio::test]
async fn antres_own_answers_are_dated_and_framed() {
    let origin = raw_origin().await;
    let antre = Antre::start("h1-own", &config(&format!("http://{origin}"), ROOM));
    let mut client = Client::connect(&antre).await;
    // A first visit to a guarded page: antre's own answer, not the origin's.
    client.send(get("/guarded").as_bytes()).await;
    let answer = client.answer(false).await;
    let date = answer.header("date").expect("a date");
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    assert!(answer.header("content-length").is_some(), "{answer:?}");
    assert!(
        !String::from_utf8_lossy(&answer.body).contains("GET /guarded"),
        "answered by antre: {answer:?}"
    );
    // Its JSON answer, with a body of its own.
    client
        .send(b"GET /_antre/status?room=loket HTTP/1.1\r\nHost: antre.test\r\nAccept: application/json\r\n\r\n")
        .await;
    let answer = client.answer(false).await;
    assert!(answer.header("date").is_some(), "{answer:?}");
    let json: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert!(json.is_object(), "{json}");
    client.send(get("/after").as_bytes()).await;
    assert_eq!(client.answer(false).await.body, b"GET /after");
}
