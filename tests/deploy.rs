//! The deploy kit in `deploy/`, checked as far as this machine can: the
//! Kubernetes manifests and the Compose file parse and hold what they
//! promise, and the antre configs inside them pass `antre check`; the
//! Dockerfile builds from locked sources and runs unprivileged; the
//! systemd unit passes `systemd-analyze verify`; the Prometheus config and
//! alert rules pass `promtool`; the alerts and the Grafana dashboard name
//! only metrics antre exports.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn have(tool: &str, why: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        common::skip(&format!("{tool} not installed: {why} skipped"));
    }
    found
}

/// Every document of a YAML file, read by PyYAML (what this machine has
/// to read YAML with) and handed over as JSON.
fn yaml(path: &Path) -> Option<Vec<Value>> {
    if !have("python3", "YAML check") {
        return None;
    }
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named 'yaml'") {
        common::skip("PyYAML not installed: YAML check skipped");
        return None;
    }
    assert!(output.status.success(), "{}: {stderr}", path.display());
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

/// `antre check` on `text` with the secrets the deploy files take from
/// the environment.
fn antre_check(name: &str, text: &str) {
    let path = common::temp_dir(name).join("antre.toml");
    std::fs::write(&path, text).unwrap();
    let output = common::antre_command()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env(
            "ANTRE_KEY",
            "a key of at least thirty-two bytes for the check",
        )
        .env("ANTRE_ADMIN_TOKEN", "an admin token for the check")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn of_kind<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_kubernetes_manifests_hold_three_probed_replicas_and_a_config_that_checks() {
    let Some(mut documents) = yaml(&deploy("kubernetes/antre.yaml")) else {
        return;
    };
    documents.extend(yaml(&deploy("kubernetes/redis.yaml")).unwrap());

    let deployment = of_kind(&documents, "Deployment", "antre");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["requests"]["memory"].is_string());
    let secrets: BTreeSet<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["valueFrom"]["secretKeyRef"]["key"].as_str())
        .collect();
    assert_eq!(secrets, BTreeSet::from(["key", "admin-token"]));

    let budget = of_kind(&documents, "PodDisruptionBudget", "antre");
    assert_eq!(budget["spec"]["minAvailable"], 2);
    of_kind(&documents, "Service", "antre");
    let redis = of_kind(&documents, "StatefulSet", "antre-redis");
    let args = redis["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("noeviction") && args.contains("appendonly"),
        "{args}"
    );
    of_kind(&documents, "Service", "antre-redis");

    let config = of_kind(&documents, "ConfigMap", "antre")["data"]["antre.toml"]
        .as_str()
        .unwrap();
    assert!(config.contains("redis://antre-redis:6379"));
    antre_check("deploy-k8s", config);
}

#[test]
fn the_compose_file_runs_antre_redis_and_an_origin_with_a_config_that_checks() {
    let Some(documents) = yaml(&deploy("docker-compose.yml")) else {
        return;
    };
    let services = &documents[0]["services"];
    for service in ["antre", "redis", "origin"] {
        assert!(services[service].is_object(), "no service {service}");
    }
    let redis = services["redis"]["command"].to_string();
    assert!(
        redis.contains("noeviction") && redis.contains("appendonly"),
        "{redis}"
    );
    assert_eq!(
        services["antre"]["build"]["dockerfile"],
        "deploy/Dockerfile"
    );
    let mount = services["antre"]["volumes"][0].as_str().unwrap();
    let (file, _) = mount.split_once(':').unwrap();
    let config = std::fs::read_to_string(deploy(file)).unwrap();
    assert!(config.contains("redis://redis:6379") && config.contains("http://origin:80"));
    antre_check("deploy-compose", &config);
}

#[test]
fn the_dockerfile_builds_locked_sources_and_runs_unprivileged() {
    let text = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(stages, 2, "a build stage and a slim runtime stage");
    assert!(text.contains("cargo build --release --locked"));
    let user = text
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "{user}"
    );
    // What it copies exists.
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
            assert!(path.exists(), "{source} in {line:?}");
        }
    }
}

#[test]
fn the_systemd_unit_verifies() {
    if !have("systemd-analyze", "unit check") {
        return;
    }
    let text = std::fs::read_to_string(deploy("systemd/antre.service")).unwrap();
    assert!(text.contains("LimitNOFILE=") && text.contains("ProtectSystem=strict"));
    // Pointed at this build's binary, which systemd checks is there.
    let binary = env!("CARGO_BIN_EXE_antre");
    let dir = common::temp_dir("deploy-systemd");
    let unit = dir.join("antre.service");
    std::fs::write(&unit, text.replace("/usr/local/bin/antre", binary)).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Complaints about the machine itself (no running systemd in a
    // container) are not the unit's; anything naming the unit is.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("antre.service"))
        .collect();
    assert!(about_unit.is_empty(), "{stderr}");
}

/// `antre_*` names in `text`, histogram series folded to their metric.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("antre_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(name.to_owned());
        i = end;
    }
    names
}

#[test]
fn alerts_and_the_dashboard_name_only_exported_metrics() {
    let exported: BTreeSet<String> = antre::metrics::NAMES
        .iter()
        .map(|n| n.to_string())
        .collect();
    let alerts = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/antre.json")).unwrap())
            .unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(queries.len() >= 8, "{queries:?}");
    for (what, names) in [
        ("alerts.yml", metric_names(&alerts)),
        ("antre.json", metric_names(&queries.join("\n"))),
    ] {
        assert!(!names.is_empty(), "{what}");
        let unknown: Vec<&String> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{what} names metrics antre does not export: {unknown:?}"
        );
    }
}

#[test]
fn the_prometheus_config_and_alert_rules_pass_promtool() {
    if !have("promtool", "rules check") {
        return;
    }
    let dir = common::temp_dir("deploy-prometheus");
    let token = dir.join("antre-admin-token");
    std::fs::write(&token, "a token").unwrap();
    let config = std::fs::read_to_string(deploy("prometheus/prometheus.yml"))
        .unwrap()
        .replace("/etc/prometheus/antre-admin-token", token.to_str().unwrap());
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    std::fs::copy(deploy("prometheus/alerts.yml"), dir.join("alerts.yml")).unwrap();
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let output = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
