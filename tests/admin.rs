//! The admin API and `antre ctl`, driven as an operator would: watch a
//! room, change its rate, pause and resume it, with nobody's place lost.

mod common;

use std::time::{Duration, Instant};

use common::{config, Antre, Origin, Visitor};
use http::StatusCode;

const TOKEN: &str = "an admin token of some length";

const ROOM: &str = r#"
[[rooms]]
id = "vaksin"
paths = ["/"]
admit_per_minute = 1
quota = 100
"#;

fn with_token(text: String) -> String {
    text.replace(
        "[admin]\naddr = \"127.0.0.1:0\"",
        &format!("[admin]\naddr = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""),
    )
}

/// `antre ctl` as operator-ani, with the admin token.
fn ctl(antre: &Antre, args: &[&str]) -> (bool, String, String) {
    antre.ctl(Some(TOKEN), args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_and_steers_a_room_live() {
    let origin = Origin::start().await;
    let antre = Antre::start("admin", &with_token(config(&origin.url(), ROOM)));
    let mut first = Visitor::new("first");
    assert_eq!(first.get(&antre.url("/"), &[]).await.status, StatusCode::OK);
    let mut waiting: Vec<Visitor> = (0..5).map(|i| Visitor::new(format!("w{i}"))).collect();
    let mut tickets = Vec::new();
    for visitor in &mut waiting {
        let json = visitor
            .get(&antre.url("/"), &[("accept", "application/json")])
            .await
            .json();
        tickets.push(json["ticket"].as_u64().unwrap());
    }

    let (ok, table, _) = ctl(&antre, &["status"]);
    assert!(ok);
    assert!(table.starts_with("room"), "{table}");
    let row = table.lines().find(|l| l.starts_with("vaksin")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "5", "waiting: {row}");
    assert_eq!(cells[2], "1", "admitted: {row}");
    assert_eq!(cells[4], "1", "rate: {row}");

    // Pause: nobody moves, places are kept.
    let (ok, _, err) = ctl(&antre, &["pause", "vaksin"]);
    assert!(ok, "{err}");
    let status = waiting[0].status(&antre).await.json();
    assert_eq!(status["state"], "paused");
    assert_eq!(status["ticket"].as_u64(), Some(tickets[0]));

    // Resume at a high rate: the line drains in order within a few seconds.
    assert!(ctl(&antre, &["rate", "vaksin", "600"]).0);
    let (ok, out, err) = ctl(&antre, &["--json", "resume", "vaksin"]);
    assert!(ok, "{err}");
    let room: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(room["admit_per_minute"], 600);
    assert_eq!(room["paused"], false);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut order = Vec::new();
    while order.len() < waiting.len() {
        assert!(Instant::now() < deadline, "the line drained: {order:?}");
        for (i, visitor) in waiting.iter_mut().enumerate() {
            if !order.contains(&i) && visitor.status(&antre).await.json()["state"] == "admitted" {
                order.push(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        order,
        vec![0, 1, 2, 3, 4],
        "in ticket order, nobody's place lost"
    );

    // Quota and validation errors name what was wrong.
    let (ok, _, err) = ctl(&antre, &["rate", "vaksin", "0"]);
    assert!(!ok);
    assert!(
        err.contains("admit_per_minute must be between 1 and 600000, got 0"),
        "{err}"
    );
    let (ok, _, err) = ctl(&antre, &["quota", "nowhere", "5"]);
    assert!(!ok);
    assert!(err.contains("no room \"nowhere\""), "{err}");
    assert!(ctl(&antre, &["quota", "vaksin", "none"]).0);

    // Every change is in the audit log with who made it.
    let client = common::client();
    let audit = client
        .request(
            http::Request::get(format!("http://{}/api/audit", antre.admin_addr))
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(common::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(audit.status(), StatusCode::OK);
    let bytes = http_body_util::BodyExt::collect(audit.into_body())
        .await
        .unwrap()
        .to_bytes();
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(entries.len(), 4, "pause, rate, resume, quota: {entries:?}");
    assert!(entries
        .iter()
        .all(|e| e["who"] == "operator-ani" && e["room"] == "vaksin"));
    assert_eq!(entries[1]["change"]["admit_per_minute"], 600);
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_a_reset_its_confirmation() {
    let origin = Origin::start().await;
    let antre = Antre::start("admin-token", &with_token(config(&origin.url(), ROOM)));
    let client = common::client();
    let get = |path: &str, token: Option<&str>| {
        let mut request = http::Request::get(format!("http://{}{path}", antre.admin_addr));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        client.request(request.body(common::empty()).unwrap())
    };
    assert_eq!(
        get("/healthz", None).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/api/rooms", None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/api/rooms", Some("wrong token of some length"))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/api/rooms", Some(TOKEN)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/readyz", Some(TOKEN)).await.unwrap().status(),
        StatusCode::OK
    );
    // Probes carry no token: readiness needs none.
    assert_eq!(get("/readyz", None).await.unwrap().status(), StatusCode::OK);

    let mut visitor = Visitor::new("v");
    visitor.get(&antre.url("/"), &[]).await;
    let post = |body: &str| {
        client.request(
            http::Request::post(format!(
                "http://{}/api/rooms/vaksin/reset",
                antre.admin_addr
            ))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(common::Body::new(http_body_util::BodyExt::map_err(
                http_body_util::Full::new(bytes::Bytes::from(body.to_owned())),
                |never| match never {},
            )))
            .unwrap(),
        )
    };
    assert_eq!(
        post("{}").await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        post(r#"{"confirm": "other"}"#).await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        visitor.get(&antre.url("/"), &[]).await.status,
        StatusCode::OK,
        "still in before the reset"
    );
    assert_eq!(
        post(r#"{"confirm": "vaksin"}"#).await.unwrap().status(),
        StatusCode::OK
    );
    let status = visitor.status(&antre).await;
    assert_eq!(
        status.status,
        StatusCode::NOT_FOUND,
        "the old pass stopped counting"
    );
}

#[test]
fn the_admin_api_is_not_exposed_beyond_loopback_without_a_token() {
    let dir = common::temp_dir("admin-open");
    let text = config("http://127.0.0.1:9000", ROOM).replace(
        "[admin]\naddr = \"127.0.0.1:0\"",
        "[admin]\naddr = \"0.0.0.0:9090\"",
    );
    std::fs::write(dir.join("antre.toml"), text).unwrap();
    let output = common::antre_command()
        .arg("check")
        .arg("--config")
        .arg(dir.join("antre.toml"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("admin.token: is required to serve the admin API on 0.0.0.0:9090"),
        "{stderr}"
    );
}

/// Sends a request to the admin listener as a browser on another site
/// might, and returns the status.
async fn admin_request(
    antre: &Antre,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> StatusCode {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", antre.admin_addr));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    use http_body_util::BodyExt as _;
    let body = http_body_util::Full::new(bytes::Bytes::from(body.to_owned()))
        .map_err(|never| match never {})
        .boxed();
    common::client()
        .request(request.body(body).unwrap())
        .await
        .unwrap()
        .status()
}

/// With no token (the loopback default), the admin listener must not be
/// steerable by a page on another site the operator happens to open: a
/// simple cross-site form post, a cross-origin fetch, and a DNS-rebound
/// host name are all refused, and the room is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sites_cannot_steer_the_room_through_an_operators_browser() {
    let origin = Origin::start().await;
    let antre = Antre::start("admin-csrf", &config(&origin.url(), ROOM));
    let reset = r#"{"confirm": "vaksin"}"#;
    let post = http::Method::POST;
    let path = "/api/rooms/vaksin/reset";

    // A form or no-cors fetch can only send "simple" content types.
    let status = admin_request(
        &antre,
        post.clone(),
        path,
        &[("content-type", "text/plain")],
        reset,
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let status = admin_request(&antre, post.clone(), path, &[], reset).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // JSON from another origin, or marked cross-site by the browser.
    let json = ("content-type", "application/json");
    let status = admin_request(
        &antre,
        post.clone(),
        path,
        &[json, ("origin", "https://evil.example")],
        reset,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let status = admin_request(
        &antre,
        post.clone(),
        path,
        &[json, ("sec-fetch-site", "cross-site")],
        reset,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A page whose name was rebound to 127.0.0.1 cannot even read.
    let status = admin_request(
        &antre,
        http::Method::GET,
        "/api/rooms",
        &[("host", "evil.example:9090")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let status = admin_request(
        &antre,
        http::Method::GET,
        "/",
        &[("host", "evil.example:9090")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (ok, out, _) = antre.ctl(None, &["--json", "status"]);
    assert!(ok);
    let rooms: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rooms[0]["epoch"], 1, "nothing was reset: {rooms}");

    // The listener's own page (same origin, as the dashboard sends it) and
    // antre ctl still can.
    let own = format!("http://{}", antre.admin_addr);
    let status = admin_request(
        &antre,
        http::Method::PATCH,
        "/api/rooms/vaksin",
        &[
            json,
            ("origin", own.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        r#"{"paused": true}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (ok, _, err) = antre.ctl(None, &["resume", "vaksin"]);
    assert!(ok, "{err}");
}

#[tokio::test]
async fn metrics_name_the_rooms_and_pass_promtool() {
    let origin = Origin::start().await;
    let antre = Antre::start("metrics", &with_token(config(&origin.url(), ROOM)));
    let mut first = Visitor::new("first");
    first.get(&antre.url("/"), &[]).await;
    first.get(&antre.url("/"), &[]).await;
    Visitor::new("second").get(&antre.url("/"), &[]).await;
    let response = common::client()
        .request(
            http::Request::get(format!("http://{}/metrics", antre.admin_addr))
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(common::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    for line in [
        "antre_requests_total{outcome=\"admitted\",room=\"vaksin\"} 1",
        "antre_requests_total{outcome=\"forwarded\",room=\"vaksin\"} 1",
        "antre_requests_total{outcome=\"waiting\",room=\"vaksin\"} 1",
        "antre_visitors_waiting{room=\"vaksin\"} 1",
        "antre_admitted{room=\"vaksin\"} 1",
        "antre_quota_remaining{room=\"vaksin\"} 99",
        "antre_admit_per_minute{room=\"vaksin\"} 1",
        "antre_origin_response_seconds_count 2",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
    {
        common::skip("promtool not installed (Debian package prometheus): lint skipped");
        return;
    }
    let mut lint = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = lint.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn logs_can_be_json_lines() {
    use std::io::{BufRead, BufReader};
    let dir = common::temp_dir("json-logs");
    std::fs::write(dir.join("antre.toml"), config("http://127.0.0.1:9", ROOM)).unwrap();
    let mut child = common::antre_command()
        .args(["run", "--log-format", "json", "--config"])
        .arg(dir.join("antre.toml"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut serving = None;
    for line in BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .take(10)
    {
        let entry: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if entry["fields"]["message"] == "antre is serving" {
            serving = Some(entry);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let serving = serving.expect("a JSON line saying antre is serving");
    assert_eq!(serving["level"], "INFO");
    assert!(serving["fields"]["addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

/// A real Prometheus server scrapes antre's metrics with the bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_antre() {
    if std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        common::skip("prometheus not installed (Debian package prometheus): scrape test skipped");
        return;
    }
    let origin = Origin::start().await;
    let antre = Antre::start("scraped", &with_token(config(&origin.url(), ROOM)));
    let dir = common::temp_dir("prometheus");
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: antre\n    authorization:\n      credentials: \"{TOKEN}\"\n    static_configs:\n      - targets: [\"{}\"]\n",
        antre.admin_addr
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = common::free_port();
    let mut server = std::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut visitor = Visitor::new("v");
    visitor.get(&antre.url("/"), &[]).await;
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/query?query=antre_admitted%7Broom%3D%22vaksin%22%7D"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = None;
    while Instant::now() < deadline {
        if let Ok(response) = common::client()
            .request(
                http::Request::get(url.as_str())
                    .body(common::empty())
                    .unwrap(),
            )
            .await
        {
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if let Some(value) = answer["data"]["result"][0]["value"][1].as_str() {
                seen = Some(value.to_owned());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        seen.as_deref(),
        Some("1"),
        "Prometheus scraped antre_admitted"
    );
}
