//! Test harness: a real origin, the real `antre` binary, and visitors with
//! their own cookie jars, all on loopback ephemeral ports.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

// === origin ===

/// What the origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub path: String,
    pub query: Option<String>,
    pub version: http::Version,
    pub headers: HeaderMap,
}

#[derive(Default)]
pub struct OriginState {
    pub seen: Mutex<Vec<Seen>>,
    /// Visitors (by their `x-visitor` header) that reached the origin.
    pub visitors: Mutex<Vec<String>>,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    /// Connections accepted so far.
    pub connections: AtomicU64,
}

/// A small origin site: `/upload` counts a streamed body, `/download/N`
/// streams N MiB, `/slow/MS` answers after MS milliseconds, `/ws` echoes
/// after an upgrade, anything else answers "origin ok".
pub struct Origin {
    pub addr: SocketAddr,
    pub state: Arc<OriginState>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub async fn start() -> Origin {
        Origin::start_on(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(OriginState::default()),
        )
        .await
    }

    pub async fn start_on(addr: SocketAddr, state: Arc<OriginState>) -> Origin {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = watch::channel(false);
        let serve_state = state.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        serve_state.connections.fetch_add(1, Ordering::SeqCst);
                        let state = serve_state.clone();
                        connections.spawn(async move {
                            let service = service_fn(move |request| origin_handle(state.clone(), request));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await;
                        });
                    }
                    _ = stopped.changed() => break,
                }
            }
            connections.abort_all();
        });
        Origin {
            addr,
            state,
            stop,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and drops every open connection.
    pub async fn stop(self) -> (SocketAddr, Arc<OriginState>) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        (self.addr, self.state)
    }

    pub fn distinct_visitors(&self) -> BTreeSet<String> {
        self.state
            .visitors
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

async fn origin_handle(
    state: Arc<OriginState>,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    state.seen.lock().unwrap().push(Seen {
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        version: request.version(),
        headers: request.headers().clone(),
    });
    if let Some(visitor) = request
        .headers()
        .get("x-visitor")
        .and_then(|v| v.to_str().ok())
    {
        state.visitors.lock().unwrap().push(visitor.to_owned());
    }
    let path = request.uri().path().to_owned();
    // Any path ending in /upload reads the whole body first, as a form
    // handler does (`/static/upload` reaches it without a pass).
    let response = if path.ends_with("/upload") {
        let mut total = 0u64;
        let mut body = request.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map(|f| f.into_data()) {
                total += data.map(|d| d.len() as u64).unwrap_or(0);
            }
        }
        text(StatusCode::OK, total.to_string())
    } else if let Some(mib) = path.strip_prefix("/download/") {
        let mib: usize = mib.parse().unwrap_or(1);
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        let stream = futures_stream(chunk, mib);
        Response::new(stream)
    } else if let Some(millis) = path.strip_prefix("/slow/") {
        let millis: u64 = millis.parse().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        text(StatusCode::OK, "origin ok, slowly".into())
    } else if path.starts_with("/cacheable") {
        let mut response = text(StatusCode::OK, "cacheable".into());
        response
            .headers_mut()
            .insert("cache-control", "public, max-age=600".parse().unwrap());
        response
    } else if path == "/ws" {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let (mut reader, mut writer) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            }
        });
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        response
            .headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        // `/ws?bogus` answers 101 without a real handshake, as a careless
        // origin might.
        if request.uri().query() != Some("bogus") {
            if let Some(key) = request.headers().get("sec-websocket-key") {
                let accept = antre::proxy::websocket_accept(key.as_bytes());
                response
                    .headers_mut()
                    .insert("sec-websocket-accept", accept);
            }
        }
        response
    } else {
        text(StatusCode::OK, "origin ok".into())
    };
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(response)
}

/// A body of `count` copies of `chunk`, produced one at a time.
fn futures_stream(chunk: Bytes, count: usize) -> Body {
    struct Repeat {
        chunk: Bytes,
        left: usize,
    }
    impl hyper::body::Body for Repeat {
        type Data = Bytes;
        type Error = hyper::Error;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
            if self.left == 0 {
                return std::task::Poll::Ready(None);
            }
            self.left -= 1;
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(self.chunk.clone()))))
        }
        fn size_hint(&self) -> hyper::body::SizeHint {
            hyper::body::SizeHint::with_exact((self.chunk.len() * self.left) as u64)
        }
    }
    Repeat { chunk, left: count }.boxed()
}

pub fn empty() -> Body {
    full("")
}

pub fn full(text: &'static str) -> Body {
    Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed()
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

/// Notes a test skipped for a missing tool; where `ANTRE_REQUIRE_TOOLS` is
/// set (CI installs every tool and sets it) a skip is a failure instead, so
/// a missing install never passes unseen.
pub fn skip(why: &str) {
    assert!(std::env::var_os("ANTRE_REQUIRE_TOOLS").is_none(), "{why}");
    // Written to the process's stderr itself, past the test harness's
    // capture, so a skip shows in the run's output and is not taken for
    // a pass.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

// === antre ===

/// The real binary, started on an ephemeral port. Killed on drop.
pub struct Antre {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A fresh, empty folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "antre-test-{name}-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A config for `origin` with `rooms` appended; listens on an ephemeral port.
pub fn config(origin: &str, rooms: &str) -> String {
    format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n\n[admin]\naddr = \"127.0.0.1:0\"\n\n[origin]\nurl = \"{origin}\"\n\n[store]\nkind = \"memory\"\nsync_millis = 50\n\n{rooms}"
    )
}

pub fn antre_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_antre"))
}

impl Antre {
    /// Writes `config` into `dir` and starts antre on it.
    pub fn start_in(dir: &Path, config: &str) -> Antre {
        Antre::launch(dir, config, antre_command())
    }

    /// Starts antre in a fresh folder with at most `open_files` open files
    /// (soft and hard limit), as a small machine or container would have.
    pub fn start_with_open_files(name: &str, config: &str, open_files: u64) -> Antre {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\""));
        command.arg(env!("CARGO_BIN_EXE_antre"));
        Antre::launch(&temp_dir(name), config, command)
    }

    /// Runs `command` (antre, or something that execs it) with
    /// `run --config` and `config` written into `dir`.
    fn launch(dir: &Path, config: &str, mut command: Command) -> Antre {
        let path = dir.join("antre.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = command
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("ANTRE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("antre starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_log = log.clone();
        let log_path = dir.join("antre.log");
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut file = std::fs::File::create(log_path).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(file) = file.as_mut() {
                    use std::io::Write as _;
                    let _ = writeln!(file, "{line}");
                }
                if line.contains("antre is serving") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line.clone());
                    }
                }
                thread_log.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("antre did not start: {:?}", log.lock().unwrap());
            }
        };
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(name))
                .and_then(|a| a.trim_end_matches(',').parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        };
        let addr = field("addr=");
        let admin_addr = field("admin=");
        Antre {
            addr,
            admin_addr,
            dir: dir.to_path_buf(),
            child,
            log,
        }
    }

    pub fn start(name: &str, config: &str) -> Antre {
        Antre::start_in(&temp_dir(name), config)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }

    /// Sends `signal` (`HUP`, `TERM`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Waits until a log line after the first `skip` contains `needle`.
    pub fn wait_for_log(&self, skip: usize, needle: &str, limit: Duration) -> Option<String> {
        self.wait_for_any_log(skip, &[needle], limit)
    }

    /// Waits until a log line after the first `skip` contains any of
    /// `needles`, and returns it.
    pub fn wait_for_any_log(
        &self,
        skip: usize,
        needles: &[&str],
        limit: Duration,
    ) -> Option<String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .skip(skip)
                .find(|line| needles.iter().any(|needle| line.contains(needle)))
                .cloned();
            if found.is_some() || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Log lines so far.
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Runs `antre ctl` against this instance's admin listener and returns
    /// (success, stdout, stderr).
    pub fn ctl(&self, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
        let mut command = antre_command();
        command
            .arg("ctl")
            .args(args)
            .env("ANTRE_ADMIN_ADDR", format!("http://{}", self.admin_addr))
            .env("USER", "operator-ani");
        match token {
            Some(token) => command.env("ANTRE_ADMIN_TOKEN", token),
            None => command.env_remove("ANTRE_ADMIN_TOKEN"),
        };
        let output = command.output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Kills the process outright, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The body of `GET path` on the admin listener (from loopback, so no
    /// token is needed).
    pub async fn admin_get(&self, path: &str) -> String {
        let response = client()
            .request(
                Request::get(format!("http://{}{path}", self.admin_addr))
                    .body(empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Peak resident memory of the process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Antre {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === visitors ===

/// A client that, like a browser, drops keep-alive connections it has not
/// used for a few seconds (antre closes them after `idle_timeout`).
pub fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(4))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(HttpConnector::new())
}

/// What a visitor got back.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A browser-like visitor with its own cookie jar, connecting from a
/// loopback address of its own (127.x.y.z): separate people come from
/// separate networks.
#[derive(Clone)]
pub struct Visitor {
    pub name: String,
    pub cookies: Vec<(String, String)>,
    /// The address the visitor connects from.
    pub address: IpAddr,
    client: Client<HttpConnector, Body>,
}

/// The next unused loopback address: 127.1.0.1, 127.1.0.2, ...
pub fn next_loopback() -> IpAddr {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Spread over 127.1.0.0 - 127.254.255.255, never a .0 or .255 host.
    let host = n % 254 + 1;
    let rest = n / 254;
    IpAddr::V4(std::net::Ipv4Addr::new(
        127,
        1 + ((rest >> 8) % 254) as u8,
        (rest & 0xff) as u8,
        host as u8,
    ))
}

impl Visitor {
    pub fn new(name: impl Into<String>) -> Visitor {
        Visitor::from_address(name, next_loopback())
    }

    /// A visitor connecting from `address` (any 127.x.y.z works).
    pub fn from_address(name: impl Into<String>, address: IpAddr) -> Visitor {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(address));
        Visitor {
            name: name.into(),
            cookies: Vec::new(),
            address,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(4))
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(connector),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(n, _)| n != name);
        self.cookies.push((name.to_owned(), value.to_owned()));
    }

    /// A GET, retried on a reused connection that the server had just
    /// closed, as browsers do for idempotent requests.
    ///
    /// Like a browser it follows antre's first-visit redirect (307 to the
    /// same address, with a cookie).
    pub async fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> Answer {
        let mut answer = self.get_once(url, headers).await;
        for _ in 0..3 {
            if answer.status != StatusCode::TEMPORARY_REDIRECT {
                break;
            }
            answer = self.get_once(url, headers).await;
        }
        answer
    }

    async fn get_once(&mut self, url: &str, headers: &[(&str, &str)]) -> Answer {
        for _ in 0..2 {
            if let Ok(answer) = self.try_send(Request::get(url), headers, empty()).await {
                return answer;
            }
        }
        self.send(Request::get(url), headers, empty()).await
    }

    pub async fn send(
        &mut self,
        builder: http::request::Builder,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Answer {
        self.try_send(builder, headers, body)
            .await
            .expect("antre answers")
    }

    async fn try_send(
        &mut self,
        builder: http::request::Builder,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Answer, hyper_util::client::legacy::Error> {
        let mut builder = builder.header("x-visitor", self.name.as_str());
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            builder = builder.header("cookie", jar.join("; "));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = self
            .client
            .request(builder.body(body).unwrap())
            .await
            .expect("antre answers");
        let status = response.status();
        let headers = response.headers().clone();
        for value in headers.get_all("set-cookie") {
            let value = value.to_str().unwrap();
            let (name, rest) = value.split_once('=').unwrap();
            let cookie_value = rest.split(';').next().unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.contains("Max-Age=0") {
                self.cookies
                    .push((name.to_owned(), cookie_value.to_owned()));
            }
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    /// `GET /_antre/status` as the page's script asks it.
    pub async fn status(&mut self, antre: &Antre) -> Answer {
        self.get(
            &antre.url("/_antre/status"),
            &[("accept", "application/json")],
        )
        .await
    }
}

/// Kendall tau between two orderings of the same items (1.0 = identical).
pub fn kendall_tau(order: &[u64]) -> f64 {
    let n = order.len();
    if n < 2 {
        return 1.0;
    }
    let mut concordant = 0i64;
    let mut discordant = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            if order[i] < order[j] {
                concordant += 1;
            } else {
                discordant += 1;
            }
        }
    }
    (concordant - discordant) as f64 / (concordant + discordant) as f64
}

/// For tickets in the order they were let in: the most places by which
/// anyone got in ahead of someone with a lower ticket.
pub fn most_overtaken(order: &[u64]) -> u64 {
    let mut highest = 0;
    let mut most = 0;
    for &ticket in order {
        highest = highest.max(ticket);
        most = most.max(highest - ticket);
    }
    most
}

pub fn size_of(body: &Body) -> Option<u64> {
    body.size_hint().exact()
}

// === Redis ===

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free port whose cluster bus port (10000 above it) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A `redis-server` of the test's own on an ephemeral port; killed on drop.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> RedisServer {
        let port = if extra.contains(&"--cluster-enabled") {
            cluster_port()
        } else {
            free_port()
        };
        RedisServer::start_on(port, extra)
    }

    /// A server on `port`, chosen by the caller.
    pub fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        let dir = temp_dir(&format!("redis-{port}"));
        let mut server = RedisServer {
            port,
            dir,
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is installed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Kills the server (its data is gone: no persistence).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port: empty, unless a `SAVE` left a
    /// snapshot behind.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Calls of each command since the last reset, from INFO commandstats.
    pub fn command_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three masters in a Redis Cluster on loopback.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed");
        assert!(
            output.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            while !node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(
                    std::time::Instant::now() < deadline,
                    "cluster did not come up"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Command counts summed over the masters.
    pub fn command_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut total = std::collections::BTreeMap::new();
        for node in &self.nodes {
            for (name, calls) in node.command_counts() {
                *total.entry(name).or_insert(0) += calls;
            }
        }
        total
    }
}

// === A cluster with replicas, behind relays ===

/// A TCP relay in front of one Redis node. Everything flows through it,
/// but a test can hold back what the node sends its replicas (the
/// replication stream, told apart by the replica's `PSYNC`): the replica
/// then falls as far behind as the test wants, while clients carry on.
pub struct Relay {
    pub port: u16,
    hold: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    pub fn start(target: u16) -> Relay {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = Arc::new(AtomicBool::new(false));
        let held = hold.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let replication = Arc::new(AtomicBool::new(false));
                let (mut from_client, mut to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut from_server, mut to_client) = (server, client);
                let marked = replication.clone();
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buffer = [0u8; 16384];
                    while let Ok(n) = from_client.read(&mut buffer) {
                        if n == 0 {
                            break;
                        }
                        let chunk = &buffer[..n];
                        if chunk.windows(5).any(|w| w.eq_ignore_ascii_case(b"PSYNC")) {
                            marked.store(true, Ordering::SeqCst);
                        }
                        if to_server.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown(std::net::Shutdown::Both);
                });
                let held = held.clone();
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buffer = [0u8; 16384];
                    while let Ok(n) = from_server.read(&mut buffer) {
                        if n == 0 {
                            break;
                        }
                        while held.load(Ordering::SeqCst) && replication.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        if to_client.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Relay { port, hold }
    }

    /// Holds back (true) or lets through (false) the replication stream.
    pub fn hold_replication(&self, hold: bool) {
        self.hold.store(hold, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Three masters, each with one replica, every node reached (by clients
/// and by its replica alike) through its own [`Relay`].
pub struct ReplicatedCluster {
    pub nodes: Vec<RedisServer>,
    pub relays: Vec<Relay>,
}

impl ReplicatedCluster {
    pub fn start() -> ReplicatedCluster {
        let mut nodes = Vec::new();
        let mut relays = Vec::new();
        for _ in 0..6 {
            let port = cluster_port();
            let relay = Relay::start(port);
            let announce = relay.port.to_string();
            let bus = (port + 10_000).to_string();
            nodes.push(RedisServer::start_on(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-announce-ip",
                    "127.0.0.1",
                    "--cluster-announce-port",
                    &announce,
                    "--cluster-announce-bus-port",
                    &bus,
                    "--repl-timeout",
                    "60",
                ],
            ));
            relays.push(relay);
        }
        for (node, relay) in nodes.iter().zip(&relays).skip(1) {
            let (port, bus) = (relay.port.to_string(), (node.port + 10_000).to_string());
            nodes[0].cli(&["CLUSTER", "MEET", "127.0.0.1", &port, &bus]);
        }
        let ranges = [("0", "5460"), ("5461", "10922"), ("10923", "16383")];
        for (node, (from, to)) in nodes.iter().zip(ranges) {
            node.cli(&["CLUSTER", "ADDSLOTSRANGE", from, to]);
        }
        let ids: Vec<String> = nodes
            .iter()
            .map(|n| n.cli(&["CLUSTER", "MYID"]).trim().to_owned())
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let wait = |what: &str, ready: &dyn Fn() -> bool| {
            while !ready() {
                assert!(std::time::Instant::now() < deadline, "the cluster: {what}");
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        wait("every node knows every other", &|| {
            nodes.iter().all(|n| {
                let known = n.cli(&["CLUSTER", "NODES"]);
                known.lines().count() == 6 && !known.contains("handshake")
            })
        });
        for replica in 3..6 {
            let master = &ids[replica - 3];
            wait("replicas know their masters", &|| {
                nodes[replica].cli(&["CLUSTER", "REPLICATE", master]).trim() == "OK"
            });
        }
        wait("replicas in sync", &|| {
            nodes[3..].iter().all(|n| {
                n.cli(&["INFO", "replication"])
                    .contains("master_link_status:up")
            })
        });
        wait("the cluster is up", &|| {
            nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
        ReplicatedCluster { nodes, relays }
    }

    /// Addresses for clients: the relays.
    pub fn urls(&self) -> Vec<String> {
        self.relays
            .iter()
            .map(|r| format!("redis://127.0.0.1:{}", r.port))
            .collect()
    }

    /// The master serving `hash_tag`'s slot and its replica (indices).
    pub fn serving(&self, hash_tag: &str) -> (usize, usize) {
        let slot: u32 = self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", hash_tag])
            .trim()
            .parse()
            .unwrap();
        let master = match slot {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        };
        (master, master + 3)
    }

    /// True when node `index` is a master.
    pub fn is_master(&self, index: usize) -> bool {
        self.nodes[index]
            .cli(&["INFO", "replication"])
            .contains("role:master")
    }
}

/// The `Content-Length` a message head gives, or 0.
pub fn content_length_of(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}
