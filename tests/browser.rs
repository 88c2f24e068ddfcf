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

/// `name` found on `PATH`, as `.ci/run` looks for it.
fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

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
        let (Some(chromedriver), Some(chromium)) = (on_path("chromedriver"), on_path("chromium"))
        else {
            common::skip("chromium or chromedriver not on PATH: browser test skipped");
            return None;
        };
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&chromedriver)
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
            "binary": chromium,
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
            .body(Full::new(if body.is_null() {
                Bytes::new()
            } else {
                Bytes::from(body.to_string())
            }))
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

    /// The first element matching `css`, as a WebDriver element id.
    async fn find(&self, css: &str) -> Option<String> {
        let value = self
            .session(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        value["value"]
            .as_object()?
            .values()
            .next()?
            .as_str()
            .map(str::to_owned)
    }

    /// Waits up to `limit` for an element matching `css`.
    async fn wait_find(&self, css: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(id) = self.find(css).await {
                return id;
            }
            assert!(Instant::now() < deadline, "no {css} on the page");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        let id = self.wait_find(css, Duration::from_secs(5)).await;
        self.session("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    /// Replaces what the field matching `css` holds with `text`, typed.
    async fn type_into(&self, css: &str, text: &str) {
        let id = self.wait_find(css, Duration::from_secs(5)).await;
        self.session("POST", &format!("/element/{id}/clear"), json!({}))
            .await;
        self.session(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// The text of the open `alert`/`confirm` dialog, waiting a little for
    /// it to open.
    async fn dialog(&self) -> Option<String> {
        for _ in 0..20 {
            let value = self.session("GET", "/alert/text", Value::Null).await;
            if let Some(text) = value["value"].as_str() {
                return Some(text.to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Answers the open dialog: OK when `accept`, else Cancel.
    async fn answer_dialog(&self, accept: bool) {
        let path = if accept {
            "/alert/accept"
        } else {
            "/alert/dismiss"
        };
        self.session("POST", path, json!({})).await;
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

/// A room whose registration opens in a few seconds: the page says it is
/// not open yet, counts down every second, and at zero reloads itself into
/// the line and onto the site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_room_counts_down_and_lets_the_browser_in_when_it_opens() {
    let Some(browser) = Browser::start(true).await else {
        return;
    };
    let origin = Origin::start().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let rfc3339 = antre::admission::utc_time;
    let room = format!(
        "[[rooms]]\nid = \"vaksin\"\npaths = [\"/\"]\nrefresh_seconds = 20\n\
         [[rooms.phases]]\nstart = {}\nend = {}\nquota = 10\nadmit_per_minute = 60\n",
        rfc3339(now + 12),
        rfc3339(now + 3600)
    );
    let antre = Antre::start("browser-closed", &config(&origin.url(), &room));
    browser.open(&antre.url("/daftar")).await;
    let text = wait_for(
        &browser,
        "Pendaftaran belum dibuka",
        Duration::from_secs(10),
    )
    .await;
    assert!(text.is_some(), "the closed page: {}", browser.text().await);
    let countdown = || async {
        browser
            .eval("return document.querySelector('[data-antre=countdown]').textContent")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let before = countdown().await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let after = countdown().await;
    assert!(
        before.starts_with("00:00:") && after.starts_with("00:00:") && after < before,
        "the countdown runs: {before} then {after}"
    );
    let text = wait_for(&browser, "origin ok", Duration::from_secs(30)).await;
    browser.quit().await;
    assert!(text.is_some(), "let in once it opened");
}

const DASHBOARD_TOKEN: &str = "a dashboard token, long enough";

/// An operator opens the dashboard in a browser, signs in with the token,
/// sees the line drawn, and changes the rate and pauses the room, each
/// change confirmed first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_the_room_and_steers_it() {
    let Some(browser) = Browser::start(true).await else {
        return;
    };
    let origin = Origin::start().await;
    let text = config(&origin.url(), ROOM).replace(
        "[admin]\naddr = \"127.0.0.1:0\"",
        &format!("[admin]\naddr = \"127.0.0.1:0\"\ntoken = \"{DASHBOARD_TOKEN}\""),
    );
    let antre = Antre::start("dashboard", &text);
    // One let in and browsing the site, five waiting.
    let mut inside = Visitor::new("inside");
    inside.get(&antre.url("/"), &[]).await;
    let site = antre.url("/daftar");
    let browsing = tokio::spawn(async move {
        loop {
            inside.get(&site, &[]).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    for i in 0..5 {
        Visitor::new(format!("v{i}"))
            .get(&antre.url("/"), &[])
            .await;
    }
    let api = |path: &str| format!("http://{}{path}", antre.admin_addr);
    let report = || async {
        let mut operator = Visitor::new("operator");
        operator
            .get(
                &api("/api/rooms/vaksin"),
                &[("authorization", &format!("Bearer {DASHBOARD_TOKEN}"))],
            )
            .await
            .json()
    };

    browser.open(&api("/")).await;
    // Without the token the page asks for it.
    browser
        .wait_find("#signin:not([hidden]) #token", Duration::from_secs(10))
        .await;
    browser.type_into("#token", DASHBOARD_TOKEN).await;
    browser.type_into("#signin-name", "ani").await;
    browser.click("#signin button[type=submit]").await;

    // The room appears with its numbers, its quota bar and three charts
    // that have drawn something.
    let room = "section[data-room=vaksin]";
    browser.wait_find(room, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let drawn = loop {
        let drawn = browser
            .eval(
                "return [...document.querySelectorAll('section[data-room=vaksin] canvas.chart')]\
                 .map(c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;\
                   let inked = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) inked++;\
                   return [c.className, Number(c.dataset.points || 0), inked]; })",
            )
            .await;
        let charts = drawn.as_array().cloned().unwrap_or_default();
        let ready = charts.len() == 3
            && charts
                .iter()
                .all(|c| c[1].as_u64().unwrap_or(0) >= 2 && c[2].as_u64().unwrap_or(0) > 0);
        if ready || Instant::now() > deadline {
            break drawn;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let charts = drawn.as_array().unwrap();
    assert_eq!(charts.len(), 3, "{drawn}");
    for chart in charts {
        assert!(chart[1].as_u64().unwrap() >= 2, "points drawn: {drawn}");
        assert!(chart[2].as_u64().unwrap() > 0, "pixels inked: {drawn}");
    }
    let page = browser.text().await;
    assert!(page.contains("Vaksinasi Kota"), "{page}");
    assert!(page.contains("1 of 100 used"), "{page}");
    let bar = browser
        .eval("return document.querySelector('section[data-room=vaksin] [role=progressbar]').getAttribute('aria-valuenow')")
        .await;
    assert_eq!(bar, "1");
    browser.screenshot(&antre.dir.join("dashboard.png")).await;

    // A rate change asks first; cancelled, nothing changes.
    browser
        .type_into(&format!("{room} input[name=rate]"), "600")
        .await;
    browser.click(&format!("{room} .set-rate")).await;
    let Some(question) = browser.dialog().await else {
        panic!("the change is confirmed first: {}", browser.text().await);
    };
    assert!(
        question.contains("vaksin") && question.contains("600"),
        "{question}"
    );
    browser.answer_dialog(false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(report().await["admit_per_minute"], 1);

    // Confirmed, it reaches the API, and the page says so.
    browser
        .type_into(&format!("{room} input[name=rate]"), "600")
        .await;
    browser.click(&format!("{room} .set-rate")).await;
    if browser.dialog().await.is_none() {
        panic!("the change is confirmed first: {}", browser.text().await);
    }
    browser.answer_dialog(true).await;
    let message = wait_for(&browser, "600 per minute", Duration::from_secs(5)).await;
    assert!(message.is_some(), "{}", browser.text().await);
    assert_eq!(report().await["admit_per_minute"], 600);

    // Pausing too.
    browser.click(&format!("{room} .toggle-pause")).await;
    let question = browser.dialog().await.expect("a pause is confirmed first");
    assert!(question.contains("Pause"), "{question}");
    browser.answer_dialog(true).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while report().await["paused"] != true {
        assert!(Instant::now() < deadline, "the pause reached the API");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The changes are in the audit trail under the name given at sign-in,
    // and the page lists them.
    let audit = Visitor::new("operator")
        .get(
            &api("/api/audit"),
            &[("authorization", &format!("Bearer {DASHBOARD_TOKEN}"))],
        )
        .await
        .json();
    let who: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["who"].as_str().unwrap())
        .collect();
    assert_eq!(who, ["ani", "ani"], "{audit}");
    let listed = wait_for(&browser, "\"paused\":true", Duration::from_secs(8)).await;
    assert!(listed.is_some(), "the page lists the changes");

    // A change made elsewhere (here `antre ctl`) shows on the page too.
    let (ok, _, err) = antre.ctl(Some(DASHBOARD_TOKEN), &["rate", "vaksin", "900"]);
    assert!(ok, "{err}");
    let shown = wait_for(&browser, "900/min", Duration::from_secs(8)).await;
    assert!(shown.is_some(), "{}", browser.text().await);
    browser.quit().await;
    browsing.abort();
}

/// A busy room whose free tickets run out after five from one network,
/// asking the most work a flooded network is asked by default.
const GUARDED: &str = r#"
[[rooms]]
id = "vaksin"
title = "Vaksinasi Kota"
paths = ["/"]
admit_per_minute = 1
burst = 1
quota = 100
refresh_seconds = 2
tickets_per_address_burst = 5
tickets_per_address_per_minute = 1
# The hardest work antre asks by default, from the first challenge on.
challenge_bits = 19
"#;

/// Someone at 127.0.0.1 (the browser's address) takes tickets as fast as
/// a script can, keeping no cookies; returns how many they got.
async fn flood_from_the_browsers_address(antre: &Antre, requests: usize) -> usize {
    let client = common::client();
    let mut tickets = 0;
    for _ in 0..requests {
        let request = Request::get(antre.url("/daftar"))
            .header("cookie", "antre-hello=1")
            .body(common::empty())
            .unwrap();
        let response = client.request(request).await.unwrap();
        tickets += response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter(|c| c.to_str().unwrap().starts_with("antre-ticket-vaksin="))
            .count();
    }
    tickets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_behind_a_flooded_address_does_the_work_and_gets_a_ticket() {
    let Some(browser) = Browser::start(true).await else {
        return;
    };
    let origin = Origin::start().await;
    let antre = Antre::start("browser-work", &config(&origin.url(), GUARDED));
    let flooded = flood_from_the_browsers_address(&antre, 300).await;
    assert!(flooded <= 6, "the script got {flooded} tickets");

    let started = Instant::now();
    browser.open(&antre.url("/daftar")).await;
    // The challenge page solves itself and comes back with a ticket: the
    // queue page shows the browser's place.
    let deadline = Instant::now() + Duration::from_secs(30);
    let position = loop {
        let position = browser
            .eval("var e = document.querySelector('[data-antre=\"position\"]'); return e ? e.textContent : ''")
            .await;
        if position.as_str().is_some_and(|p| !p.is_empty()) {
            break position;
        }
        assert!(
            Instant::now() < deadline,
            "no place in line after the work: {}",
            browser.text().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = started.elapsed();
    let text = browser.text().await;
    assert!(text.contains("Vaksinasi Kota"), "{text}");
    eprintln!("chromium: position {position}");
    let cookies = browser.session("GET", "/cookie", Value::Null).await;
    let names: Vec<&str> = cookies["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"antre-ticket-vaksin"), "{names:?}");
    assert!(
        !names.contains(&"antre-work-vaksin"),
        "the spent work is cleared: {names:?}"
    );

    // How fast this browser hashes, to set the difficulty table by: the
    // solver's own search, one thread, for a fixed count.
    let solver = antre::work::SOLVER_JS;
    let rate = browser
        .eval(&format!(
            "{solver}\nvar t = performance.now(); antreSearch('{}', 40, 0, 1, 300000); \
             return Math.round(300000 / ((performance.now() - t) / 1000));",
            "x".repeat(97)
        ))
        .await;
    let metrics = antre.admin_get("/metrics").await;
    browser.quit().await;
    eprintln!(
        "chromium: queued after the work in {} ms; one thread hashes {rate} a second",
        took.as_millis()
    );
    assert!(
        metrics.contains("antre_challenges_total{result=\"solved\",room=\"vaksin\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_the_challenge_says_why_and_refreshes() {
    let Some(browser) = Browser::start(false).await else {
        return;
    };
    let origin = Origin::start().await;
    let antre = Antre::start("browser-work-nojs", &config(&origin.url(), GUARDED));
    flood_from_the_browsers_address(&antre, 50).await;
    browser.open(&antre.url("/daftar")).await;
    let text = wait_for(&browser, "JavaScript", Duration::from_secs(10)).await;
    browser.quit().await;
    let text = text.expect("the page explains that JavaScript is needed");
    assert!(text.contains("jaringan"), "in Indonesian first: {text}");
    assert!(
        origin.seen().iter().all(|seen| !seen
            .headers
            .get("user-agent")
            .is_some_and(|ua| ua.to_str().unwrap_or("").contains("Chrome"))),
        "nothing of the browser's reached the site"
    );
}
