//! The real binary in front of a real origin, driven by visitors with their
//! own cookie jars.

mod common;

use std::time::{Duration, Instant};

use common::{config, kendall_tau, Antre, Origin, Visitor};
use http::StatusCode;

/// Unix seconds now, for schedules relative to the test's start.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const VAKSIN: &str = r#"
[[rooms]]
id = "vaksin"
title = "Vaksinasi Kota"
paths = ["/"]
admit_per_minute = 60
quota = 5
pass_minutes = 20
"#;

/// The acceptance scenario: twenty arrive together for five doses at one a
/// second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_visitors_five_doses_one_a_second() {
    let origin = Origin::start().await;
    let antre = Antre::start("done-when", &config(&origin.url(), VAKSIN));
    let url = antre.url("/daftar");

    let mut visitors: Vec<Visitor> = (0..20).map(|i| Visitor::new(format!("v{i:02}"))).collect();
    let mut tickets = Vec::new();
    for visitor in &mut visitors {
        let answer = visitor.get(&url, &[("accept", "application/json")]).await;
        match answer.status {
            StatusCode::OK => tickets.push(0),
            StatusCode::SERVICE_UNAVAILABLE => {
                let status = answer.json();
                assert_eq!(status["state"], "waiting");
                assert!(answer.headers.contains_key("retry-after"));
                tickets.push(status["ticket"].as_u64().unwrap());
            }
            other => panic!("{other}: {}", answer.body),
        }
    }
    let at_once = origin.distinct_visitors().len();
    assert!(
        (1..=2).contains(&at_once),
        "{at_once} reached the origin at once"
    );
    let waiting: Vec<u64> = tickets.iter().copied().filter(|t| *t > 0).collect();
    let mut sorted = waiting.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, waiting, "distinct places, in arrival order");

    // Everyone polls as the page does until nobody is waiting.
    let mut admitted_order: Vec<String> = origin.state.visitors.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let sold_out = loop {
        let mut sold_out = 0;
        let mut waiting = 0;
        for visitor in &mut visitors {
            if admitted_order.contains(&visitor.name) {
                continue;
            }
            let status = visitor.status(&antre).await.json();
            match status["state"].as_str().unwrap() {
                "admitted" => {
                    let answer = visitor.get(&url, &[]).await;
                    assert_eq!(answer.body, "origin ok");
                    admitted_order.push(visitor.name.clone());
                }
                "waiting" => waiting += 1,
                "sold_out" => sold_out += 1,
                other => panic!("unexpected state {other}"),
            }
        }
        if waiting == 0 || Instant::now() > deadline {
            break sold_out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        admitted_order,
        vec!["v00", "v01", "v02", "v03", "v04"],
        "one by one in ticket order"
    );
    assert_eq!(
        origin.distinct_visitors().len(),
        5,
        "exactly five reach the origin"
    );
    assert_eq!(sold_out, 15);
    for visitor in &mut visitors[5..] {
        let answer = visitor.get(&url, &[]).await;
        assert_eq!(answer.status, StatusCode::GONE);
        assert!(answer.body.contains("<html"), "a sold-out page");
    }

    // One byte changed in a genuine pass never reaches the origin.
    let seen_before = origin.seen().len();
    let mut forger = visitors[0].clone();
    let pass = forger.cookie("antre-pass-vaksin").unwrap().to_owned();
    let mut bytes = pass.into_bytes();
    bytes[12] = if bytes[12] == b'7' { b'8' } else { b'7' };
    forger.set_cookie("antre-pass-vaksin", std::str::from_utf8(&bytes).unwrap());
    let answer = forger.get(&url, &[]).await;
    assert_ne!(answer.status, StatusCode::OK);
    assert_eq!(
        origin.seen().len(),
        seen_before,
        "the altered pass did not reach the origin"
    );
}

/// Hundreds of visitors with their own jars: the quota is used exactly and
/// admission follows ticket order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_visitors_use_the_quota_exactly_in_order() {
    let origin = Origin::start().await;
    let rooms = VAKSIN
        .replace("admit_per_minute = 60", "admit_per_minute = 3000")
        .replace("quota = 5", "quota = 200");
    let antre = Antre::start("hundreds", &config(&origin.url(), &rooms));
    let url = antre.url("/");

    let mut visitors: Vec<Visitor> = (0..300).map(|i| Visitor::new(format!("v{i:03}"))).collect();
    let mut tickets = std::collections::HashMap::new();
    // Arrive in concurrent waves of 50.
    for wave in visitors.chunks_mut(50) {
        let mut set = tokio::task::JoinSet::new();
        for visitor in wave.iter() {
            let mut visitor = visitor.clone();
            let url = url.clone();
            set.spawn(async move {
                let answer = visitor.get(&url, &[("accept", "application/json")]).await;
                (visitor, answer)
            });
        }
        let mut done = Vec::new();
        while let Some(result) = set.join_next().await {
            done.push(result.unwrap());
        }
        for (visitor, answer) in done {
            if answer.status == StatusCode::SERVICE_UNAVAILABLE {
                tickets.insert(
                    visitor.name.clone(),
                    answer.json()["ticket"].as_u64().unwrap(),
                );
            }
            let slot = wave.iter_mut().find(|v| v.name == visitor.name).unwrap();
            *slot = visitor;
        }
    }
    let mut distinct: Vec<u64> = tickets.values().copied().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        tickets.len(),
        "every waiting visitor has their own place"
    );

    // Each round asks everyone still waiting, lowest ticket first, as
    // their pages would in the order they were told to: asked in any other
    // order, those released during one round would be let in in the order
    // asked, which says nothing about antre.
    visitors.sort_by_key(|v| tickets.get(&v.name).copied().unwrap_or(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut admitted: Vec<String> = origin.state.visitors.lock().unwrap().clone();
    loop {
        let mut waiting = 0;
        for visitor in &mut visitors {
            if admitted.contains(&visitor.name) {
                continue;
            }
            let status = visitor.status(&antre).await.json();
            match status["state"].as_str().unwrap() {
                "admitted" => {
                    visitor.get(&url, &[]).await;
                    admitted.push(visitor.name.clone());
                }
                "waiting" => waiting += 1,
                _ => {}
            }
        }
        if waiting == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reached = origin.distinct_visitors();
    assert_eq!(reached.len(), 200, "the quota is used exactly");
    let order: Vec<u64> = admitted
        .iter()
        .filter_map(|name| tickets.get(name).copied())
        .collect();
    let tau = kendall_tau(&order);
    assert!(tau >= 0.95, "admission follows ticket order: tau {tau}");
}

fn check(config: &std::path::Path) -> std::process::Output {
    common::antre_command()
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[tokio::test]
async fn check_names_a_misspelt_key_and_summarises_a_good_config() {
    let dir = common::temp_dir("check");
    let path = dir.join("antre.toml");
    std::fs::write(
        &path,
        config("http://127.0.0.1:9000", &VAKSIN.replace("quota", "qouta")),
    )
    .unwrap();
    let output = check(&path);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rooms[0].qouta") && stderr.contains("did you mean `quota`"),
        "{stderr}"
    );

    std::fs::write(&path, config("http://127.0.0.1:9000", VAKSIN)).unwrap();
    let output = check(&path);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("vaksin") && stdout.contains("60"),
        "{stdout}"
    );
    assert!(!stdout.contains("warning"), "{stdout}");

    // A room over some prefixes only is allowed, with a warning that names
    // the key.
    let partial = VAKSIN.replacen("paths = [\"/\"]", "paths = [\"/daftar\"]", 1);
    assert_ne!(partial, VAKSIN);
    std::fs::write(&path, config("http://127.0.0.1:9000", &partial)).unwrap();
    let output = check(&path);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("warning  rooms[0].paths: room \"vaksin\" guards only /daftar"),
        "{stdout}"
    );

    let output = common::antre_command().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("antre "));
}

/// A sell-out with a later session: the one left waiting sees, in their
/// language, that their number is kept and they need not queue again, with
/// a link that takes the kept place to another browser; that browser is
/// let in when the next session opens. The link is refused for another
/// room, and when altered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_return_link_brings_a_kept_place_to_another_browser() {
    let origin = Origin::start().await;
    let now = unix_now();
    let rfc3339 = antre::admission::utc_time;
    let reopens = now + 10;
    let rooms = format!(
        "[[rooms]]\nid = \"vaksin\"\npaths = [\"/\"]\n\
         [[rooms.phases]]\nstart = {}\nend = {}\nquota = 2\nadmit_per_minute = 60\n\
         [[rooms.phases]]\nstart = {}\nend = {}\nquota = 5\nadmit_per_minute = 60\n\
         [[rooms]]\nid = \"lain\"\npaths = [\"/lain\"]\nadmit_per_minute = 60\n",
        rfc3339(now - 10),
        rfc3339(now + 8),
        rfc3339(reopens),
        rfc3339(now + 3600),
    );
    let antre = Antre::start("return-link", &config(&origin.url(), &rooms));
    let url = antre.url("/daftar");
    let json = [("accept", "application/json")];

    // Two places: the first is let in at once, the second a second later,
    // and the third is left waiting when they are gone.
    let mut first = Visitor::new("first");
    assert_eq!(first.get(&url, &json).await.status, StatusCode::OK);
    let mut second = Visitor::new("second");
    let mut left = Visitor::new("left");
    assert_eq!(second.get(&url, &json).await.json()["ticket"], 2);
    assert_eq!(left.get(&url, &json).await.json()["ticket"], 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while second.get(&url, &json).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "the second is let in");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let answer = left.get(&url, &json).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    let status = answer.json();
    assert_eq!(status["state"], "sold_out");
    assert_eq!(status["ticket"], 3);
    assert_eq!(status["kept_for"], reopens);
    let token = status["return_ticket"].as_str().unwrap().to_owned();
    assert_eq!(left.cookie("antre-return-vaksin"), Some(token.as_str()));

    let page = left.get(&url, &[("accept-language", "en")]).await;
    assert!(
        page.body
            .contains("Your number, 3, is kept for the next session")
            && page.body.contains("You need not queue again"),
        "{}",
        page.body
    );
    let link = format!("/_antre/return?room=vaksin&amp;ticket={token}&amp;next=%2Fdaftar");
    assert!(page.body.contains(&link), "{}", page.body);
    let page = left.get(&url, &[("accept-language", "id")]).await;
    assert!(
        page.body.contains("Anda tidak perlu mengantre lagi"),
        "{}",
        page.body
    );

    // The link, opened on another phone.
    let mut phone = Visitor::new("phone");
    let link = antre.url(&format!(
        "/_antre/return?room=vaksin&ticket={token}&next=%2Fdaftar"
    ));
    let answer = phone.get(&link, &[]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers["location"], "/daftar");
    assert_eq!(phone.cookie("antre-return-vaksin"), Some(token.as_str()));
    let mut other = Visitor::new("other");
    let elsewhere = antre.url(&format!("/_antre/return?room=lain&ticket={token}"));
    let answer = other.get(&elsewhere, &json).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(answer.json()["error"], "return_refused");
    let altered = antre.url(&format!(
        "/_antre/return?room=vaksin&ticket={}",
        token.replacen(".3.", ".2.", 1)
    ));
    assert_eq!(
        other.get(&altered, &json).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(other.cookie("antre-return-vaksin"), None);

    // Before the next session the phone is told its place is kept; once
    // it opens, the phone is let in.
    let answer = phone.get(&url, &json).await;
    assert_eq!(answer.json()["kept_for"], reopens, "{}", answer.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = phone.get(&url, &[]).await;
        if answer.status == StatusCode::OK {
            assert!(answer.body.contains("origin ok"));
            break;
        }
        assert!(Instant::now() < deadline, "never let in: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(phone.cookie("antre-return-vaksin"), None);
}

/// The public board: only rooms with `board = true`, each with its state,
/// the quota left, the people waiting and its sessions, as JSON and as a
/// small page without script that refreshes itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_each_public_room_and_its_quota_left() {
    let origin = Origin::start().await;
    let now = unix_now();
    let rfc3339 = antre::admission::utc_time;
    let rooms = format!(
        "[[rooms]]\nid = \"kota\"\ntitle = \"Vaksinasi Kota\"\npaths = [\"/\"]\nboard = true\n\
         [[rooms.phases]]\nstart = {}\nend = {}\nquota = 5\nadmit_per_minute = 1\n\
         [[rooms.phases]]\nstart = {}\nend = {}\nquota = 7\nadmit_per_minute = 60\n\
         [[rooms]]\nid = \"staf\"\npaths = [\"/staf\"]\nadmit_per_minute = 60\nquota = 9\n",
        rfc3339(now - 10),
        rfc3339(now + 3600),
        rfc3339(now + 7200),
        rfc3339(now + 10800),
    );
    let antre = Antre::start("board", &config(&origin.url(), &rooms));
    let mut reader = Visitor::new("reader");
    let board = reader.get(&antre.url("/_antre/board.json"), &[]).await;
    assert_eq!(board.status, StatusCode::OK, "{}", board.body);
    let json = board.json();
    let listed = json["rooms"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "only the room on the board: {json}");
    let room = &listed[0];
    assert_eq!(room["id"], "kota");
    assert_eq!(room["state"], "open");
    assert_eq!(room["quota_left"], 5);
    assert_eq!(room["phase"]["opens"], now - 10);
    assert_eq!(room["next_phase"]["opens"], now + 7200);
    assert_eq!(room["next_phase"]["quota"], 7);

    // Three come: one is let in at once, two wait.
    let url = antre.url("/daftar");
    let accept = [("accept", "application/json")];
    let mut first = Visitor::new("first");
    assert_eq!(first.get(&url, &accept).await.status, StatusCode::OK);
    for name in ["second", "third"] {
        let answer = Visitor::new(name).get(&url, &accept).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let json = reader
        .get(&antre.url("/_antre/board.json"), &[])
        .await
        .json();
    let room = &json["rooms"][0];
    assert_eq!(
        (room["admitted"].as_u64(), room["waiting"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(room["quota_left"], 4);

    let page = reader
        .get(&antre.url("/_antre/board"), &[("accept-language", "en")])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("<dd data-board=\"quota_left\">4</dd>")
            && page.body.contains("<dd data-board=\"waiting\">2</dd>")
            && page.body.contains("Vaksinasi Kota"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script") && !page.body.contains("staf"));
    assert_eq!(page.headers["cache-control"], "public, max-age=5");
    assert!(
        reader.cookies.is_empty(),
        "reading the board takes no place: {:?}",
        reader.cookies
    );
}

/// A draw at the opening: those who come in the pre-queue are told they
/// are in the draw, with their entry and the commitment; at the opening
/// they are numbered in the drawn order, ahead of a newcomer, and
/// `antre verify-draw` recomputes that order from the revealed seed and
/// the published entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draw_at_the_opening_is_recomputed_from_its_revealed_seed() {
    let origin = Origin::start().await;
    let now = unix_now();
    let opens = now + 8;
    let rooms = format!(
        "[[rooms]]\nid = \"undian\"\npaths = [\"/\"]\n\
         [[rooms.phases]]\nstart = {}\nend = {}\nquota = 100\nadmit_per_minute = 1\nprequeue_minutes = 1\n",
        antre::admission::utc_time(opens),
        antre::admission::utc_time(now + 3600),
    );
    let antre = Antre::start("draw", &config(&origin.url(), &rooms));
    let url = antre.url("/daftar");
    let json = [("accept", "application/json")];

    let mut people: Vec<Visitor> = (0..12).map(|i| Visitor::new(format!("p{i}"))).collect();
    let mut entries = Vec::new();
    let mut commitment = String::new();
    for person in &mut people {
        let answer = person.get(&url, &json).await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.body
        );
        let status = answer.json();
        assert_eq!(status["state"], "closed");
        assert_eq!(
            status["ticket"],
            serde_json::Value::Null,
            "no number before the draw"
        );
        assert_eq!(status["draw"]["opens_at"], opens);
        entries.push(status["draw"]["entry"].as_u64().unwrap());
        commitment = status["draw"]["commitment"].as_str().unwrap().to_owned();
    }
    let page = people[0].get(&url, &[("accept-language", "en")]).await;
    assert!(
        page.body.contains("You are in the draw")
            && page.body.contains(&format!("Your entry: {}.", entries[0])),
        "{}",
        page.body
    );
    let draw_url = antre.url("/_antre/draw.json?room=undian");
    let before = people[0].get(&draw_url, &[]).await.json();
    assert_eq!(before["commitment"], commitment.as_str());
    assert_eq!(
        before["seed"],
        serde_json::Value::Null,
        "the seed is kept until the opening"
    );

    // The opening: everyone asks again and learns their number.
    let wait = opens * 1000 + 500;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(wait.saturating_sub(now_ms))).await;
    let mut tickets = Vec::new();
    for person in &mut people {
        let answer = person.get(&url, &json).await;
        let ticket = match answer.status {
            // The first place is let in at once.
            StatusCode::OK => 1,
            _ => answer.json()["ticket"].as_u64().unwrap(),
        };
        tickets.push(ticket);
    }
    let mut sorted = tickets.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=12).collect::<Vec<u64>>(),
        "the drawn group is 1 to 12"
    );
    let mut newcomer = Visitor::new("newcomer");
    let answer = newcomer.get(&url, &json).await;
    assert_eq!(answer.json()["ticket"], 13, "behind the whole drawn group");

    let after = people[0].get(&draw_url, &[]).await.json();
    let seed = after["seed"].as_str().unwrap().to_owned();
    assert_eq!(after["first_ticket"], 1);
    let published: Vec<u64> = after["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_u64().unwrap())
        .collect();
    let mut mine = entries.clone();
    mine.sort_unstable();
    assert_eq!(published, mine, "every entry is published");

    let dir = common::temp_dir("verify-draw");
    let list = dir.join("entries.txt");
    let text: String = published.iter().map(|id| format!("{id}\n")).collect();
    std::fs::write(&list, text).unwrap();
    let output = common::antre_command()
        .args(["verify-draw", "--seed", &seed, "--commitment", &commitment])
        .args(["--first-ticket", "1", "--tickets"])
        .arg(&list)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    for (entry, ticket) in entries.iter().zip(&tickets) {
        assert!(
            stdout
                .lines()
                .any(|line| line.ends_with(&format!("\t{entry}\tticket {ticket}"))),
            "entry {entry} holds ticket {ticket}: {stdout}"
        );
    }
    // A seed that is not the one committed to is refused.
    let wrong = format!("{}0", &seed[..39]);
    let wrong = if wrong == seed {
        format!("{}1", &seed[..39])
    } else {
        wrong
    };
    let output = common::antre_command()
        .args([
            "verify-draw",
            "--seed",
            &wrong,
            "--commitment",
            &commitment,
            "--tickets",
        ])
        .arg(&list)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not match the commitment"));
}

/// Malang's split: residents and people from elsewhere queue in two
/// segments of one campaign, each with its own line and quota, kept apart;
/// at the set time the others' unused places move to the residents, whose
/// line moves on into them. Operators see both segments and what moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_s_unused_places_move_to_the_other_at_the_set_time() {
    let origin = Origin::start().await;
    let now = unix_now();
    let moves = now + 5;
    let rooms = format!(
        "[[rooms]]\nid = \"warga\"\ncampaign = \"malang\"\npaths = [\"/warga\"]\nquota = 3\nadmit_per_minute = 600\nboard = true\n\
         [[rooms]]\nid = \"luar\"\ncampaign = \"malang\"\npaths = [\"/luar\"]\nquota = 3\nadmit_per_minute = 600\nboard = true\n\
         [rooms.unused]\nat = {}\nto = \"warga\"\n",
        antre::admission::utc_time(moves),
    );
    let antre = Antre::start("segments", &config(&origin.url(), &rooms));
    let json = [("accept", "application/json")];
    let warga_url = antre.url("/warga/daftar");
    let mut residents: Vec<Visitor> = (0..5).map(|i| Visitor::new(format!("w{i}"))).collect();
    for resident in &mut residents {
        resident.get(&warga_url, &json).await;
    }
    let mut other = Visitor::new("luar");
    assert_eq!(
        other.get(&antre.url("/luar/daftar"), &json).await.status,
        StatusCode::OK
    );
    // Three residents get in; two are left beyond the residents' quota,
    // while the others' segment keeps its own two places.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut inside = 0;
    while Instant::now() < deadline {
        inside = 0;
        for resident in &mut residents {
            if resident.get(&warga_url, &json).await.status == StatusCode::OK {
                inside += 1;
            }
        }
        if inside == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(inside, 3);
    let board = Visitor::new("board")
        .get(&antre.url("/_antre/board.json"), &[])
        .await
        .json();
    let left = |board: &serde_json::Value, id: &str| {
        board["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["quota_left"].clone())
            .unwrap()
    };
    assert_eq!(
        (left(&board, "warga"), left(&board, "luar")),
        (0.into(), 2.into())
    );

    // At the set time the others' two places move; the two residents
    // left waiting get in.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut all = true;
        for resident in &mut residents {
            if resident.get(&warga_url, &json).await.status != StatusCode::OK {
                all = false;
            }
        }
        if all {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "the moved places were never used: {} {}",
                antre.admin_get("/api/rooms/luar").await,
                antre.admin_get("/api/rooms/warga").await
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let now_s = unix_now();
    assert!(now_s >= moves, "not before the set time");
    let luar: serde_json::Value =
        serde_json::from_str(&antre.admin_get("/api/rooms/luar").await).unwrap();
    assert_eq!(luar["campaign"], "malang");
    assert_eq!(luar["places_given"], 2);
    assert_eq!(luar["quota_left"], 0);
    assert_eq!(luar["unused"]["to"], "warga");
    let warga: serde_json::Value =
        serde_json::from_str(&antre.admin_get("/api/rooms/warga").await).unwrap();
    assert_eq!(warga["places_received"], 2);
    assert_eq!(warga["admitted"], 5);
    let (ok, table, _) = antre.ctl(None, &["status"]);
    assert!(
        ok && table.contains("warga (malang)") && table.contains("luar (malang)"),
        "{table}"
    );
}
