//! The example configs in `config/` stay valid: `antre check` accepts them.

mod common;

#[test]
fn the_example_config_passes_check() {
    let output = common::antre_command()
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/antre.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("vaksin"));
}

#[test]
fn the_fleet_example_passes_check_with_its_key_in_the_environment() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/fleet.toml");
    let output = common::antre_command()
        .args(["check", "--config", path])
        .env("ANTRE_KEY", "a secret of at least thirty-two bytes!")
        .env("ANTRE_ADMIN_TOKEN", "an admin token of some length")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("redis redis://127.0.0.1:6379"), "{stdout}");
    let output = common::antre_command()
        .args(["check", "--config", path])
        .env_remove("ANTRE_KEY")
        .env("ANTRE_ADMIN_TOKEN", "an admin token of some length")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("keys[0].secret_env"));
}

#[test]
fn the_example_template_is_accepted_and_a_misspelt_placeholder_is_named() {
    let dir = common::temp_dir("template");
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/queue.html")).unwrap();
    std::fs::write(dir.join("queue.html"), &example).unwrap();
    let room = "[[rooms]]\nid = \"vaksin\"\npaths = [\"/\"]\nadmit_per_minute = 60\ntemplate = \"queue.html\"\n";
    std::fs::write(
        dir.join("antre.toml"),
        common::config("http://127.0.0.1:9000", room),
    )
    .unwrap();
    let check = || {
        common::antre_command()
            .arg("check")
            .arg("--config")
            .arg(dir.join("antre.toml"))
            .output()
            .unwrap()
    };
    assert!(
        check().status.success(),
        "{}",
        String::from_utf8_lossy(&check().stderr)
    );

    std::fs::write(
        dir.join("queue.html"),
        example.replace("{{position}}", "{{postion}}"),
    )
    .unwrap();
    let output = check();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rooms[0].template") && stderr.contains("{{postion}}"),
        "{stderr}"
    );
}

/// The campaign examples pass `antre check`, which reads each schedule
/// back as a table: one line per phase with its opening, closing, quota
/// and pace.
#[test]
fn the_campaign_examples_pass_check_and_print_their_schedules() {
    for (name, phases, quota, pace) in [
        ("karawang", 5, "400", "spread"),
        ("balikpapan", 3, "1000", "40 a minute"),
        ("malang", 2, "8000", "40 a minute"),
    ] {
        let path = format!("{}/config/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        let output = common::antre_command()
            .args(["check", "--config", &path])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(&format!("schedule of {name}")), "{stdout}");
        let rows: Vec<&str> = stdout
            .lines()
            .filter(|line| line.contains(quota) && line.contains(pace))
            .collect();
        assert_eq!(rows.len(), phases, "{name}: {stdout}");
        // Only the calendar may make a warning: once the campaign is over.
        assert!(
            stdout
                .lines()
                .filter(|line| line.contains("warning"))
                .all(|line| line.contains("the last phase closed")),
            "{name}: {stdout}"
        );
    }
}
