//! The `antre-admission` header as the site sees it: `antre verify-admission`
//! and `antre admission-key` (the real binary) on configured, derived and
//! state-file keys, and the README's PHP, Python and Node.js checks, taken
//! from README.md as written, against genuine and altered values.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use antre::admission::{self, Admission, AdmissionKeys, Via};
use antre::config::{Config, KeySpec};
use common::{antre_command, config, temp_dir, Antre};

const ROOM: &str = r#"
[[rooms]]
id = "vaksin"
paths = ["/"]
admit_per_minute = 60
"#;

const TICKET_SECRET: &str = "the ticket key's secret, 32 bytes or more";
const ADMISSION_SECRET: &str = "the site's admission secret, 32 bytes or more";

fn line_admission() -> Admission<'static> {
    Admission {
        room: "vaksin".into(),
        ticket: 1001,
        pass: 0x9f3a_0c41_d2e8_7b55,
        issued: 1_800_000_000,
        via: Via::Line,
    }
}

/// Writes `text` as `antre.toml` in a fresh folder.
fn write_config(name: &str, text: &str) -> PathBuf {
    let path = temp_dir(name).join("antre.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn ticket_keys() -> String {
    format!("[[keys]]\nid = \"t1\"\nsecret = \"{TICKET_SECRET}\"\n")
}

fn antre(args: &[&str], config: &Path) -> Output {
    antre_command()
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn verify(config: &Path, value: &str) -> Output {
    antre_command()
        .arg("verify-admission")
        .arg("--config")
        .arg(config)
        .arg(value)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `value` with one byte changed at each position in turn, to a character
/// that could stand in a header; and with each byte left out.
fn one_byte_changes(value: &str) -> Vec<String> {
    let mut changed = Vec::new();
    for index in 0..value.len() {
        for replacement in *b"0a1A.-_z~ /" {
            let mut bytes = value.as_bytes().to_vec();
            if bytes[index] == replacement {
                continue;
            }
            bytes[index] = replacement;
            changed.push(String::from_utf8(bytes).unwrap());
        }
        let mut shorter = value.to_owned();
        shorter.remove(index);
        changed.push(shorter);
    }
    changed.push(format!("{value}A"));
    changed
}

/// Asserts `antre verify-admission` accepts `value` as `expected`, signed
/// with `key_id`, and refuses it with any one byte changed.
fn accepted_and_altered_refused(config: &Path, value: &str, key_id: &str) {
    let output = verify(config, value);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = stdout(&output);
    for line in [
        "genuine",
        "room     vaksin",
        "ticket   1001",
        "pass     9f3a0c41d2e87b55",
        "issued   1800000000 (2027-01-15T08:00:00Z)",
        "via      line",
        &format!("key      {key_id}"),
    ] {
        assert!(report.contains(line), "{line:?} not in {report}");
    }
    // Each position changed in turn. Every change is its own process, so
    // one change a position here; the snippets below, and the library's
    // proptest, try many more.
    for index in 0..value.len() {
        let mut bytes = value.as_bytes().to_vec();
        bytes[index] = if bytes[index] == b'0' { b'1' } else { b'0' };
        let altered = String::from_utf8(bytes).unwrap();
        let output = verify(config, &altered);
        let why = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{altered}: {why}");
        assert!(
            why.starts_with("antre verify-admission: not genuine: ") && why.lines().count() == 1,
            "{why}"
        );
        assert!(stdout(&output).is_empty());
    }
}

#[test]
fn verify_admission_accepts_configured_keys_and_refuses_changes() {
    let path = write_config(
        "admission-configured",
        &format!(
            "{}\n{}\n[[admission_keys]]\nid = \"a1\"\nsecret = \"{ADMISSION_SECRET}\"\n",
            config("http://127.0.0.1:9", ROOM),
            ticket_keys()
        ),
    );
    let keys = AdmissionKeys::new(vec![KeySpec {
        id: "a1".into(),
        secret: ADMISSION_SECRET.as_bytes().to_vec(),
    }])
    .unwrap();
    let value = keys.sign(&line_admission()).unwrap();
    accepted_and_altered_refused(&path, &value, "a1");

    // The configured key is the one the site is given, as written.
    let output = antre(&["admission-key"], &path);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!("a1 {}\n", hex(ADMISSION_SECRET.as_bytes()))
    );

    // With admission keys configured, the derived one does not count.
    let derived = AdmissionKeys::derived_from(&[ticket_spec()]).unwrap();
    let output = verify(&path, &derived.sign(&line_admission()).unwrap());
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("\"t1\""), "{}", stderr(&output));
}

fn ticket_spec() -> KeySpec {
    KeySpec {
        id: "t1".into(),
        secret: TICKET_SECRET.as_bytes().to_vec(),
    }
}

#[test]
fn verify_admission_accepts_keys_derived_from_the_ticket_key() {
    let path = write_config(
        "admission-derived",
        &format!(
            "{}\n{}\n[[keys]]\nid = \"t0\"\nsecret = \"{}\"\n",
            config("http://127.0.0.1:9", ROOM),
            ticket_keys(),
            "an older ticket key, also 32 bytes long"
        ),
    );
    let derived = AdmissionKeys::derived_from(&[ticket_spec()]).unwrap();
    let value = derived.sign(&line_admission()).unwrap();
    accepted_and_altered_refused(&path, &value, "t1");

    // The key given to the site is HMAC-SHA256(ticket secret, label), as
    // the README says, worked out here without antre's code.
    let expected = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, TICKET_SECRET.as_bytes()),
        b"antre admission key",
    );
    let output = antre(&["admission-key"], &path);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), format!("t1 {}\n", hex(expected.as_ref())));

    // Signed with the ticket key itself, a value is refused: the site's
    // key and the key that makes passes are never the same.
    let raw = AdmissionKeys::new(vec![ticket_spec()]).unwrap();
    let output = verify(&path, &raw.sign(&line_admission()).unwrap());
    assert_eq!(output.status.code(), Some(1));
    // A key the config does not hold is named.
    let other = AdmissionKeys::new(vec![KeySpec {
        id: "t9".into(),
        secret: TICKET_SECRET.as_bytes().to_vec(),
    }])
    .unwrap();
    let output = verify(&path, &other.sign(&line_admission()).unwrap());
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("\"t9\""), "{}", stderr(&output));
}

/// With no keys configured, the ticket key is the one antre made in its
/// state file; the commands find it there while antre runs and holds the
/// state file's lock.
#[test]
fn the_state_files_key_is_found_while_antre_runs() {
    let dir = temp_dir("admission-state");
    let text = config("http://127.0.0.1:9", ROOM);
    let path = dir.join("antre.toml");
    std::fs::write(&path, &text).unwrap();
    // Before the first start there is no key to give.
    for command in ["admission-key", "verify-admission"] {
        let mut args = vec![command];
        if command == "verify-admission" {
            args.push("1.auto.vaksin.1.0000000000000001.1.line.x");
        }
        let output = antre_command()
            .args(&args)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}");
        assert!(
            stderr(&output).contains("start it once"),
            "{}",
            stderr(&output)
        );
    }

    let running = Antre::start_in(&dir, &text);
    let output = antre(&["admission-key"], &path);
    assert!(output.status.success(), "{}", stderr(&output));
    let line = stdout(&output);
    let (id, secret) = line.trim_end().split_once(' ').unwrap();
    assert_eq!(id, "auto");
    assert_eq!(secret.len(), 64, "{line}");

    let config = Config::load(&path).unwrap();
    let keys = admission::settle_offline(&config).unwrap();
    assert!(keys.is_derived());
    assert_eq!(hex(keys.signing_secret()), secret);
    let value = keys.sign(&line_admission()).unwrap();
    accepted_and_altered_refused(&path, &value, "auto");
    assert!(running.stop().success());
}

#[test]
fn a_config_with_problems_exits_2() {
    let path = write_config(
        "admission-problems",
        &format!(
            "{}\n[[admission_keys]]\nid = \"a1\"\nsecret = \"short\"\n",
            config(
                "http://127.0.0.1:9",
                &ROOM.replace("admit_per_minute", "admit_per_minit")
            )
        ),
    );
    for args in [
        &[
            "verify-admission",
            "1.a1.vaksin.1.0000000000000001.1.line.x",
        ][..],
        &["admission-key"][..],
    ] {
        let output = antre(args, &path);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let why = stderr(&output);
        assert!(
            why.contains("admission_keys[0].secret") && why.contains("rooms[0].admit_per_minit"),
            "{why}"
        );
        assert!(stdout(&output).is_empty());
    }
    let missing = temp_dir("admission-missing").join("nowhere.toml");
    let output = antre(&["admission-key"], &missing);
    assert_eq!(output.status.code(), Some(2));
}

// === the README's checks ===

/// The code between `<!-- snippet: LANG -->` and `<!-- /snippet -->` in
/// README.md, without its fence.
fn snippet(lang: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let open = format!("<!-- snippet: {lang} -->");
    assert_eq!(readme.matches(&open).count(), 1, "one {open} in README.md");
    let start = readme.find(&open).unwrap() + open.len();
    let length = readme[start..]
        .find("<!-- /snippet -->")
        .expect("the snippet is closed");
    let block = readme[start..start + length].trim();
    let mut lines = block.lines();
    let fence = lines.next().unwrap_or_default();
    assert!(fence.starts_with("```"), "{lang}: {fence}");
    let code: Vec<&str> = lines.collect();
    assert_eq!(code.last().copied(), Some("```"), "{lang}: fence closed");
    code[..code.len() - 1].join("\n")
}

// Drivers appended to each snippet: the key in hex as the argument, one
// value a line on standard input, one answer a line out: the fields the
// snippet returned, or `rejected`.

const PYTHON_DRIVER: &str = r#"
import sys

key = bytes.fromhex(sys.argv[1])
for value in sys.stdin.read().split("\n")[:-1]:
    r = verify(value, key)
    if r is None:
        print("rejected")
    else:
        print(r["room"], r["ticket"], r["pass"], r["issued"], r["via"], r["key_id"])
"#;

const NODE_DRIVER: &str = r#"
const key = Buffer.from(process.argv[2], "hex");
const values = require("node:fs").readFileSync(0, "utf8").split("\n").slice(0, -1);
for (const value of values) {
  const r = verify(value, key);
  console.log(r === null ? "rejected" : [r.room, r.ticket, r.pass, r.issued, r.via, r.keyId].join(" "));
}
"#;

const PHP_DRIVER: &str = r#"
$key = hex2bin($argv[1]);
$values = explode("\n", stream_get_contents(STDIN));
array_pop($values);
foreach ($values as $value) {
    $r = verify($value, $key);
    echo $r === null ? "rejected" : implode(' ', [$r['room'], $r['ticket'], $r['pass'], $r['issued'], $r['via'], $r['key_id']]), "\n";
}
"#;

/// Whether `tool` runs here; when not, the test is skipped (a failure
/// where every tool is required).
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        common::skip(&format!(
            "{tool} is not installed: skipping its README check"
        ));
    }
    found
}

/// Runs the README's check for `lang` over `values` with `key`, one
/// answer a line.
fn run_snippet(lang: &str, key: &[u8], values: &[String]) -> Option<Vec<String>> {
    let (tool, extension, program) = match lang {
        "python" => (
            "python3",
            "py",
            format!("{}\n{PYTHON_DRIVER}", snippet(lang)),
        ),
        "node" => ("node", "js", format!("{}\n{NODE_DRIVER}", snippet(lang))),
        "php" => (
            "php",
            "php",
            format!("<?php\n{}\n{PHP_DRIVER}", snippet(lang)),
        ),
        other => unreachable!("no driver for {other}"),
    };
    if !have(tool) {
        return None;
    }
    let file = temp_dir(&format!("admission-{lang}")).join(format!("verify.{extension}"));
    std::fs::write(&file, program).unwrap();
    let mut child = Command::new(tool)
        .arg(&file)
        .arg(hex(key))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = values.join("\n");
    input.push('\n');
    let mut stdin = child.stdin.take().unwrap();
    // Written from a thread so a full stdout pipe cannot stall both sides.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "{lang}: {}", stderr(&output));
    let answers: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    assert_eq!(answers.len(), values.len(), "{lang}: one answer a value");
    Some(answers)
}

/// Each README check accepts genuine values, reporting their fields, and
/// refuses every one-byte change of them, and values signed with another
/// key. The key is the one `antre admission-key` prints for the config.
fn readme_check(lang: &str) {
    let path = write_config(
        &format!("admission-readme-{lang}"),
        &format!("{}\n{}", config("http://127.0.0.1:9", ROOM), ticket_keys()),
    );
    let output = antre(&["admission-key"], &path);
    assert!(output.status.success(), "{}", stderr(&output));
    let line = stdout(&output);
    let (_, secret) = line.trim_end().split_once(' ').unwrap();
    let key = unhex(secret);
    let keys = admission::settle_offline(&Config::load(&path).unwrap()).unwrap();

    let genuine = [
        line_admission(),
        Admission {
            ticket: 0,
            via: Via::Invite,
            ..line_admission()
        },
        Admission {
            room: "rumah-sakit_2".into(),
            ticket: u64::MAX,
            pass: u64::MAX,
            issued: u64::MAX,
            via: Via::Outage,
        },
        Admission {
            ticket: 0,
            pass: 0,
            issued: 0,
            via: Via::Allow,
            ..line_admission()
        },
    ];
    let mut values = Vec::new();
    let mut expected = Vec::new();
    for admission in &genuine {
        let value = keys.sign(admission).unwrap();
        values.push(value.clone());
        expected.push(format!(
            "{} {} {:016x} {} {} t1",
            admission.room, admission.ticket, admission.pass, admission.issued, admission.via
        ));
        for altered in one_byte_changes(&value) {
            assert!(keys.verify(&altered).is_err(), "{altered}");
            values.push(altered);
            expected.push("rejected".to_owned());
        }
    }
    // Signed by another key, or by the ticket key itself.
    for spec in [
        ticket_spec(),
        KeySpec {
            id: "t1".into(),
            secret: ADMISSION_SECRET.as_bytes().to_vec(),
        },
    ] {
        let other = AdmissionKeys::new(vec![spec]).unwrap();
        values.push(other.sign(&line_admission()).unwrap());
        expected.push("rejected".to_owned());
    }
    for garbage in ["", "1", "........", "1.t1.vaksin.1001"] {
        values.push(garbage.to_owned());
        expected.push("rejected".to_owned());
    }

    let Some(answers) = run_snippet(lang, &key, &values) else {
        return;
    };
    for ((value, answer), expected) in values.iter().zip(&answers).zip(&expected) {
        assert_eq!(answer, expected, "{lang} on {value:?}");
    }
}

#[test]
fn the_readme_python_check() {
    readme_check("python");
}

#[test]
fn the_readme_node_check() {
    readme_check("node");
}

#[test]
fn the_readme_php_check() {
    readme_check("php");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "{text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The header as the site receives it: on every request of an admitted
/// visitor, genuine by `antre verify-admission` and refused with one byte
/// changed; never on a request that was not admitted, whatever the client
/// sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_receives_a_genuine_header_only_for_admitted_requests() {
    use common::{Origin, Visitor};
    let origin = Origin::start().await;
    let dir = temp_dir("admission-e2e");
    let room =
        "[[rooms]]\nid = \"vaksin\"\npaths = [\"/daftar\"]\nadmit_per_minute = 1\nquota = 10\n";
    let text = format!(
        "{}\n{}[[admission_keys]]\nid = \"a1\"\nsecret = \"{ADMISSION_SECRET}\"\n",
        config(&origin.url(), room),
        ticket_keys()
    );
    let path = dir.join("antre.toml");
    std::fs::write(&path, &text).unwrap();
    let antre = Antre::start_in(&dir, &text);
    let forged = "1.a1.vaksin.1.0000000000000001.1800000000.line.AAAA";

    // Admitted (the room's one free admission), with a forged header of
    // its own: the site sees antre's, not the forgery.
    let mut admitted = Visitor::new("admitted");
    let answer = admitted
        .get(&antre.url("/daftar"), &[("antre-admission", forged)])
        .await;
    assert_eq!(answer.status, http::StatusCode::OK);
    let seen = origin.seen();
    let values: Vec<&http::HeaderValue> = seen
        .last()
        .unwrap()
        .headers
        .get_all("antre-admission")
        .iter()
        .collect();
    assert_eq!(values.len(), 1, "{values:?}");
    let value = values[0].to_str().unwrap().to_owned();
    assert_ne!(value, forged);
    let output = verify(&path, &value);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = stdout(&output);
    assert!(
        report.contains("room     vaksin") && report.contains("ticket   1"),
        "{report}"
    );
    assert!(report.contains("via      line"), "{report}");
    // One byte changed: refused.
    for altered in one_byte_changes(&value).into_iter().step_by(37) {
        assert_eq!(verify(&path, &altered).status.code(), Some(1), "{altered}");
    }
    // Stripped of its signature: refused too.
    let stripped = value.rsplit_once('.').unwrap().0;
    assert_eq!(verify(&path, stripped).status.code(), Some(1));

    // The same visitor's next request carries the same admission.
    admitted.get(&antre.url("/daftar/form"), &[]).await;
    let again = origin.seen().last().unwrap().headers["antre-admission"].clone();
    let pass_of = |v: &str| v.split('.').nth(4).map(str::to_owned);
    assert_eq!(pass_of(again.to_str().unwrap()), pass_of(&value));

    // Not admitted: an unguarded page and a visitor who waits. The forged
    // header never reaches the site.
    let mut other = Visitor::new("other");
    other
        .get(&antre.url("/info"), &[("antre-admission", forged)])
        .await;
    let waiting = other
        .get(&antre.url("/daftar"), &[("antre-admission", forged)])
        .await;
    assert_eq!(waiting.status, http::StatusCode::SERVICE_UNAVAILABLE);
    let last = origin.seen().last().unwrap().clone();
    assert_eq!(last.path, "/info");
    assert!(!last.headers.contains_key("antre-admission"));
    assert!(antre.stop().success());
}
