//! `SIGHUP` reloads the config file in place: requests under way finish,
//! nobody loses their place, new rooms and settings apply, and a config
//! with problems is refused with its reasons while the running one stays.

mod common;

use std::time::Duration;

use common::{config, Antre, Origin, Visitor};
use http::StatusCode;

fn rooms(title: &str, rate: u32, extra: &str) -> String {
    format!(
        r#"
[[rooms]]
id = "vaksin"
title = "{title}"
paths = ["/"]
admit_per_minute = {rate}
burst = 1
quota = 100
{extra}"#
    )
}

const SEKOLAH: &str = r#"
[[rooms]]
id = "sekolah"
title = "PPDB"
paths = ["/sekolah"]
admit_per_minute = 60
"#;

/// Rewrites antre's config file and sends `SIGHUP`; returns the log line
/// that answers it.
fn reload(antre: &Antre, text: &str) -> String {
    std::fs::write(antre.dir.join("antre.toml"), text).unwrap();
    let skip = antre.log_len();
    antre.signal("HUP");
    antre
        .wait_for_any_log(
            skip,
            &["config reloaded", "reload refused"],
            Duration::from_secs(20),
        )
        .unwrap_or_else(|| panic!("no answer to SIGHUP: {:?}", antre.log.lock().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_config_with_nobody_losing_their_place() {
    let origin = Origin::start().await;
    let antre = Antre::start(
        "reload",
        &config(&origin.url(), &rooms("Vaksinasi Kota", 1, "")),
    );
    let mut first = Visitor::new("first");
    assert_eq!(first.get(&antre.url("/"), &[]).await.status, StatusCode::OK);
    let mut ani = Visitor::new("ani");
    let page = ani.get(&antre.url("/daftar"), &[]).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.body.contains("Vaksinasi Kota"), "{}", page.body);
    let before = ani.status(&antre).await.json();
    assert_eq!(before["state"], "waiting");

    // A slow request is under way when the reload lands.
    let slow_url = antre.url("/slow/2000");
    let mut slow_visitor = first.clone();
    let slow = tokio::spawn(async move { slow_visitor.get(&slow_url, &[]).await });
    while !origin.seen().iter().any(|s| s.path.starts_with("/slow/")) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let line = reload(
        &antre,
        &config(
            &origin.url(),
            &(rooms("Vaksinasi Tahap 2", 1, "") + SEKOLAH),
        ),
    );
    assert!(line.contains("config reloaded"), "{line}");
    assert!(line.contains("sekolah"), "{line}");

    let slow = slow.await.unwrap();
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(slow.body, "origin ok, slowly");

    // Ani keeps her ticket and place; the page shows the new title.
    let after = ani.status(&antre).await.json();
    assert_eq!(after["ticket"], before["ticket"]);
    assert_eq!(after["position"], before["position"]);
    let page = ani.get(&antre.url("/daftar"), &[]).await;
    assert!(page.body.contains("Vaksinasi Tahap 2"), "{}", page.body);

    // The new room guards its routes at once.
    let mut budi = Visitor::new("budi");
    let answer = budi.get(&antre.url("/sekolah/daftar"), &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(budi.cookie("antre-pass-sekolah").is_some());

    // The first visitor's pass still admits: the keys did not change.
    assert_eq!(first.get(&antre.url("/"), &[]).await.status, StatusCode::OK);

    // A faster rate in the file lets Ani in, in her turn.
    let line = reload(
        &antre,
        &config(&origin.url(), &rooms("Vaksinasi Tahap 2", 120, "")),
    );
    assert!(line.contains("config reloaded"), "{line}");
    assert!(line.contains("removed=sekolah"), "{line}");
    let metrics = Visitor::new("prometheus")
        .get(&format!("http://{}/metrics", antre.admin_addr), &[])
        .await
        .body;
    assert!(
        metrics.contains("antre_visitors_waiting{room=\"vaksin\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("antre_visitors_waiting{room=\"sekolah\"}"),
        "a removed room's gauges go: {metrics}"
    );
    let mut admitted = false;
    for _ in 0..40 {
        if ani.get(&antre.url("/daftar"), &[]).await.status == StatusCode::OK {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted, "ani was let in after the rate went up");
    assert_eq!(origin.distinct_visitors().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_with_problems_is_refused_and_the_running_one_kept() {
    let origin = Origin::start().await;
    let text = config(&origin.url(), &rooms("Vaksinasi Kota", 1, ""));
    let antre = Antre::start("reload-bad", &text);
    let mut first = Visitor::new("first");
    assert_eq!(first.get(&antre.url("/"), &[]).await.status, StatusCode::OK);
    let mut ani = Visitor::new("ani");
    ani.get(&antre.url("/"), &[]).await;
    let before = ani.status(&antre).await.json();

    // A misspelt key and a bad value: both named, nothing applied.
    let bad = config(
        &origin.url(),
        &rooms("Baru", 1, "admit_per_minit = 5\nrefresh_seconds = 0\n"),
    );
    let line = reload(&antre, &bad);
    assert!(line.contains("reload refused"), "{line}");
    assert!(line.contains("rooms[0].admit_per_minit"), "{line}");
    assert!(line.contains("did you mean"), "{line}");
    assert!(line.contains("rooms[0].refresh_seconds"), "{line}");

    // What needs a restart is refused too, with the reason.
    let moved = text.replace(
        "[store]\nkind = \"memory\"",
        "[store]\nkind = \"memory\"\nstate_file = \"elsewhere.state\"",
    );
    assert_ne!(moved, text);
    let line = reload(&antre, &moved);
    assert!(line.contains("reload refused"), "{line}");
    assert!(
        line.contains("store: changing the store needs a restart"),
        "{line}"
    );

    // Still serving the old config, with Ani in her place.
    let page = ani.get(&antre.url("/"), &[]).await;
    assert!(page.body.contains("Vaksinasi Kota"), "{}", page.body);
    let after = ani.status(&antre).await.json();
    assert_eq!(after["ticket"], before["ticket"]);
    assert_eq!(first.get(&antre.url("/"), &[]).await.status, StatusCode::OK);

    // And a good config after a bad one is taken.
    let line = reload(&antre, &config(&origin.url(), &rooms("Baru", 1, "")));
    assert!(line.contains("config reloaded"), "{line}");
    let page = ani.get(&antre.url("/"), &[]).await;
    assert!(page.body.contains("Baru"), "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_set_live_outlasts_a_reload_and_says_so() {
    let origin = Origin::start().await;
    let antre = Antre::start(
        "reload-live",
        &config(&origin.url(), &rooms("Vaksinasi Kota", 1, "")),
    );
    let (ok, _, err) = antre.ctl(None, &["rate", "vaksin", "600"]);
    assert!(ok, "{err}");
    let skip = antre.log_len();
    let line = reload(
        &antre,
        &config(&origin.url(), &rooms("Vaksinasi Kota", 30, "")),
    );
    assert!(line.contains("config reloaded"), "{line}");
    let warning = antre
        .wait_for_log(skip, "keeps its live value", Duration::from_secs(2))
        .expect("the reload says the live rate wins");
    assert!(
        warning.contains("vaksin: admit_per_minute 600 (file 30)"),
        "{warning}"
    );
    let (ok, out, _) = antre.ctl(None, &["--json", "status"]);
    assert!(ok);
    let rooms: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rooms[0]["admit_per_minute"], 600);
    assert_eq!(rooms[0]["configured_admit_per_minute"], 30);
}

const KEYS: &str = r#"
[[keys]]
id = "k1"
secret = "a secret shared by every instance of the fleet"
"#;

/// A reload while Redis is down keeps everyone's place (even in a room
/// that was reset, so its tickets carry epoch 2), and the file's new
/// settings reach Redis once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_a_store_outage_costs_no_place() {
    let mut redis = common::RedisServer::start();
    let origin = Origin::start().await;
    let url = redis.url();
    let text = |title: &str, rate: u32| {
        config(&origin.url(), &(rooms(title, rate, "") + KEYS)).replace(
            "kind = \"memory\"",
            &format!("kind = \"redis\"\nurl = \"{url}\""),
        )
    };
    let antre = Antre::start("reload-outage", &text("Vaksinasi Kota", 1));
    // Without --yes nothing happens.
    let (ok, _, err) = antre.ctl(None, &["reset", "vaksin"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, _, err) = antre.ctl(None, &["reset", "vaksin", "--yes"]);
    assert!(ok, "{err}");
    // Right after a reset the new line starts at the room's rate: both
    // wait, Ani second.
    Visitor::new("first").get(&antre.url("/"), &[]).await;
    let mut ani = Visitor::new("ani");
    ani.get(&antre.url("/daftar"), &[]).await;
    let before = ani.status(&antre).await.json();
    assert_eq!(before["state"], "waiting", "{before}");
    assert_eq!(before["position"], 2, "{before}");
    let ticket = ani.cookie("antre-ticket-vaksin").unwrap().to_owned();

    redis.cli(&["SAVE"]);
    redis.kill();
    let line = reload(&antre, &text("Vaksinasi Tahap 2", 120));
    assert!(line.contains("config reloaded"), "{line}");

    // Held, not lost: same ticket, same place.
    let held = ani.status(&antre).await.json();
    assert_eq!(held["state"], "paused", "{held}");
    assert_eq!(held["ticket"], before["ticket"], "{held}");
    assert_eq!(held["position"], before["position"], "{held}");
    assert_eq!(ani.cookie("antre-ticket-vaksin"), Some(ticket.as_str()));

    // Redis back: the reloaded rate applies and Ani is let in, in turn.
    redis.restart();
    let mut admitted = false;
    for _ in 0..100 {
        if ani.get(&antre.url("/daftar"), &[]).await.status == StatusCode::OK {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        admitted,
        "ani was let in: {}",
        ani.status(&antre).await.body
    );
    let (ok, out, _) = antre.ctl(None, &["--json", "status"]);
    assert!(ok);
    let rooms: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rooms[0]["admit_per_minute"], 120, "{rooms}");
    assert_eq!(rooms[0]["epoch"], 2, "{rooms}");
}

/// Keys rotate through reloads: the key signing now cannot be dropped or
/// have its secret changed (that would void every cookie at once); a new
/// key goes first, and the old one can go once its cookies have expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_through_reloads_without_voiding_cookies() {
    let origin = Origin::start().await;
    let key = |id: &str, secret: &str| format!("[[keys]]\nid = \"{id}\"\nsecret = \"{secret}\"\n");
    let k1 = key("k1", "the first secret, long enough to sign");
    let k2 = key("k2", "the second secret, long enough to sign");
    let text = |keys: &str| config(&origin.url(), &(rooms("Vaksinasi Kota", 1, "") + keys));
    let antre = Antre::start("reload-keys", &text(&k1));
    Visitor::new("first").get(&antre.url("/"), &[]).await;
    let mut ani = Visitor::new("ani");
    ani.get(&antre.url("/"), &[]).await;
    let before = ani.status(&antre).await.json();
    assert_eq!(before["state"], "waiting");

    let line = reload(&antre, &text(&k2));
    assert!(line.contains("reload refused"), "{line}");
    assert!(
        line.contains("key \"k1\" signs every ticket and pass now"),
        "{line}"
    );
    let line = reload(
        &antre,
        &text(&key("k1", "a different secret, long enough too")),
    );
    assert!(line.contains("the secret of key \"k1\" changed"), "{line}");

    // The new key first, the old one kept: Ani's ticket still counts and
    // newcomers get cookies signed with the new key.
    let line = reload(&antre, &text(&(k2.clone() + &k1)));
    assert!(line.contains("config reloaded"), "{line}");
    assert_eq!(ani.status(&antre).await.json()["ticket"], before["ticket"]);
    let mut budi = Visitor::new("budi");
    budi.get(&antre.url("/"), &[]).await;
    assert!(
        budi.cookie("antre-ticket-vaksin").unwrap().contains(".k2."),
        "{:?}",
        budi.cookie("antre-ticket-vaksin")
    );

    // Later the old key can go, and the log says what that costs.
    let skip = antre.log_len();
    let line = reload(&antre, &text(&k2));
    assert!(line.contains("config reloaded"), "{line}");
    assert!(antre
        .wait_for_log(skip, "key removed", Duration::from_secs(2))
        .is_some_and(|l| l.contains("k1")));
}
