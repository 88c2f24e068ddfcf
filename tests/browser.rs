//! The queue page in a real browser: headless Chromium driven through
//! chromedriver waits in line, with and without JavaScript, until it is let
//! in and sees the site. Skipped (with a note) where Chromium is not
//! installed; `.ci/run` installs it.

mod common;

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{config, Antre, Origin, Visitor};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver process and one browser session in it.
struct Browser {
    driver: Child,
    /// Chromium's profile folder: unique to this browser, so its processes
    /// can be found and stopped.
    profile: std::path::PathBuf,
    base: String,
    session: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Browser {
    async fn start(javascript: bool) -> Option<Browser> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists()
        {
            eprintln!("chromium or chromedriver not installed: browser test skipped");
            return None;
        }
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        let profile = common::temp_dir("chromium-profile");
        let mut browser = Browser {
            driver,
            profile: profile.clone(),
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client,
        };
        // Browsing as an Indonesian visitor would.
        let mut prefs = json!({"intl.accept_languages": "id-ID,id"});
        if !javascript {
            prefs["profile.managed_default_content_settings.javascript"] = json!(2);
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--no-first-run", "--disable-dev-shm-usage", "--disable-quic", "--disable-sync",
                     "--disable-component-update", "--lang=id-ID",
                     format!("--user-data-dir={}", profile.display())],
            "prefs": prefs,
        }}}});
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match browser.call("POST", "/session", capabilities.clone()).await {
                Some(value) if value["value"]["sessionId"].is_string() => {
                    browser.session = value["value"]["sessionId"].as_str().unwrap().to_owned();
                    return Some(browser);
                }
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                other => panic!("chromedriver did not start a session: {other:?}"),
            }
        }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Option<Value> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = self.client.request(request).await.ok()?;
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&bytes).ok()
    }

    async fn session(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body)
            .await
            .expect("chromedriver answers")
    }

    async fn open(&self, url: &str) {
        self.session("POST", "/url", json!({"url": url})).await;
    }

    async fn eval(&self, script: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await["value"]
            .clone()
    }

    async fn text(&self) -> String {
        self.eval("return document.body ? document.body.innerText : ''")
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Ends the session, which closes Chromium; chromedriver itself is
    /// stopped on drop.
    async fn quit(&self) {
        let path = format!("/session/{}", self.session);
        let _ = self.call("DELETE", &path, Value::Null).await;
    }

    async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let value = self.session("GET", "/screenshot", Value::Null).await;
        if let Some(data) = value["value"].as_str() {
            if let Ok(png) = base64::engine::general_purpose::STANDARD.decode(data) {
                let _ = std::fs::write(path, png);
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium outlives chromedriver; stop what runs on this profile.
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(format!("user-data-dir={}", self.profile.display()))
            .status();
    }
}

const ROOM: &str = r#"
[[rooms]]
id = "vaksin"
title = "Vaksinasi Kota"
paths = ["/"]
admit_per_minute = 1
burst = 1
quota = 100
refresh_seconds = 2
"#;

/// Speeds the room up once the browser is in line: at one admission a
/// minute nobody behind the first visitor is let in however long Chromium
/// takes to start, and `antre ctl` then releases the line every two seconds.
fn speed_up(antre: &Antre) {
    let (ok, _, err) = antre.ctl(None, &["rate", "vaksin", "30"]);
    assert!(ok, "antre ctl rate: {err}");
}

/// Waits until the page shows `needle`, checking every 250 ms.
async fn wait_for(browser: &Browser, needle: &str, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    loop {
        let text = browser.text().await;
        if text.contains(needle) {
            return Some(text);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_waits_in_line_and_is_let_in_with_javascript() {
    let Some(browser) = Browser::start(true).await else {
        return;
    };
    let origin = Origin::start().await;
    let antre = Antre::start("browser-js", &config(&origin.url(), ROOM));
    // Someone else takes the room's one immediate admission.
    Visitor::new("first").get(&antre.url("/"), &[]).await;

    browser.open(&antre.url("/daftar")).await;
    let text = match wait_for(&browser, "antrean", Duration::from_secs(10)).await {
        Some(text) => text,
        None => panic!("no Indonesian queue page: {}", browser.text().await),
    };
    assert!(text.contains("Vaksinasi Kota"), "{text}");
    assert_eq!(
        browser.eval("return document.documentElement.lang").await,
        "id"
    );
    assert!(browser
        .eval("return !!document.querySelector('[aria-live]')")
        .await
        .as_bool()
        .unwrap());
    browser.screenshot(&antre.dir.join("queue.png")).await;

    // The page's script notices the turn, takes the pass and reloads onto
    // the site once the operator speeds the line up.
    speed_up(&antre);
    let text = wait_for(&browser, "origin ok", Duration::from_secs(30)).await;
    assert!(
        text.is_some(),
        "the browser was let in: {}",
        browser.text().await
    );
    let polls = origin.seen().iter().filter(|s| s.path == "/daftar").count();
    browser.quit().await;
    assert_eq!(polls, 1, "the site saw the visitor once, after admission");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_without_javascript_is_let_in_by_the_page_refreshing_itself() {
    let Some(browser) = Browser::start(false).await else {
        return;
    };
    let origin = Origin::start().await;
    let antre = Antre::start("browser-nojs", &config(&origin.url(), ROOM));
    Visitor::new("first").get(&antre.url("/"), &[]).await;

    browser.open(&antre.url("/daftar")).await;
    let queued = wait_for(&browser, "antrean", Duration::from_secs(10)).await;
    assert!(
        queued.is_some(),
        "no Indonesian queue page: {}",
        browser.text().await
    );
    speed_up(&antre);
    let text = wait_for(&browser, "origin ok", Duration::from_secs(30)).await;
    browser.quit().await;
    assert!(
        text.is_some(),
        "the meta refresh let the browser in: {}",
        browser.text().await
    );
}
