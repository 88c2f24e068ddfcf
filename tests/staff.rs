//! Staff skip the line: signed invite links made with `antre ctl invite`,
//! and an address allow list; each logged and counted, and told to the
//! site in the admission header.

mod common;

use std::net::IpAddr;

use common::{config, Antre, Origin, Visitor};
use http::StatusCode;

/// A busy room: one admission a minute, taken by the first visitor.
const ROOM: &str = r#"
[[rooms]]
id = "vaksin"
paths = ["/"]
admit_per_minute = 1
quota = 100
allow = ["127.0.9.0/24"]
"#;

fn address(c: u8, d: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, c, d))
}

fn via(origin: &Origin) -> String {
    let seen = origin.seen();
    let header = seen.last().unwrap().headers["antre-admission"]
        .to_str()
        .unwrap()
        .to_owned();
    header.split('.').nth(6).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_skips_the_line_and_is_counted() {
    let origin = Origin::start().await;
    let antre = Antre::start("allow", &config(&origin.url(), ROOM));
    Visitor::from_address("first", address(8, 1))
        .get(&antre.url("/"), &[])
        .await;
    let mut outsider = Visitor::from_address("outsider", address(8, 2));
    assert_eq!(
        outsider.get(&antre.url("/daftar"), &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let mut staff = Visitor::from_address("staff", address(9, 7));
    for _ in 0..3 {
        assert_eq!(
            staff.get(&antre.url("/daftar"), &[]).await.status,
            StatusCode::OK
        );
        assert_eq!(via(&origin), "allow");
    }
    assert!(
        staff.cookie("antre-ticket-vaksin").is_none(),
        "no place taken"
    );
    let metrics = antre.admin_get("/metrics").await;
    assert!(
        metrics.contains("antre_requests_total{outcome=\"bypass\",room=\"vaksin\"} 3"),
        "{metrics}"
    );
    assert!(antre
        .wait_for_log(
            0,
            "allow list: skipping the line",
            std::time::Duration::from_secs(5)
        )
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_link_lets_in_as_many_as_it_says() {
    let origin = Origin::start().await;
    let antre = Antre::start("invite", &config(&origin.url(), ROOM));
    Visitor::from_address("first", address(10, 1))
        .get(&antre.url("/"), &[])
        .await;

    let (ok, out, err) = antre.ctl(None, &["invite", "vaksin", "--uses", "2", "--minutes", "5"]);
    assert!(ok, "antre ctl invite: {err}");
    let link = out.lines().next().unwrap().to_owned();
    assert!(
        link.starts_with("/_antre/invite?room=vaksin&token="),
        "{out}"
    );
    assert!(out.contains("2 uses until"), "{out}");
    let url = antre.url(&format!("{link}&next=/daftar"));

    for d in 2..4 {
        let mut staff = Visitor::from_address(format!("staff-{d}"), address(10, d));
        let answer = staff.get(&url, &[]).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        assert_eq!(answer.headers["location"], "/daftar");
        assert_eq!(
            staff.get(&antre.url("/daftar"), &[]).await.status,
            StatusCode::OK
        );
        assert_eq!(via(&origin), "invite");
    }
    // A third person: the link is used up.
    let mut late = Visitor::from_address("late", address(10, 9));
    let answer = late.get(&url, &[("accept", "application/json")]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("used as often"), "{}", answer.body);
    // An altered link lets nobody in.
    let forged = url.replacen("token=1.", "token=1.x", 1);
    let answer = Visitor::from_address("forger", address(10, 10))
        .get(&forged, &[])
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);

    let metrics = antre.admin_get("/metrics").await;
    assert!(
        metrics.contains("antre_requests_total{outcome=\"bypass\",room=\"vaksin\"} 2"),
        "{metrics}"
    );
    assert!(antre
        .wait_for_log(0, "staff invite used", std::time::Duration::from_secs(5))
        .is_some());
    let audit = antre.admin_get("/api/audit").await;
    assert!(audit.contains("\"invite\""), "{audit}");
}
