//! TLS on the visitor listener with rustls, against a real client: HTTP/2
//! and HTTP/1.1 by ALPN, cookies `Secure` over TLS, a certificate swapped
//! on disk served after `SIGHUP` without dropping an open connection, a
//! bad one refused and the old one kept. Certificates are made with the
//! `openssl` command (`.ci/run` installs it where it is missing).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{config, temp_dir, Antre, Origin};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const ROOM: &str = r#"
[[rooms]]
id = "vaksin"
paths = ["/daftar"]
admit_per_minute = 60
"#;

/// A self-signed certificate for `localhost` and 127.0.0.1 with its key,
/// written to `cert.pem` and `key.pem` in `dir`; `None` without openssl.
fn make_certificate(dir: &Path, name: &str) -> Option<CertificateDer<'static>> {
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "3", "-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join("key.next.pem"))
        .arg("-out")
        .arg(dir.join("cert.next.pem"))
        .output();
    match made {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!("openssl: {}", String::from_utf8_lossy(&output.stderr)),
        Err(_) => {
            common::skip("openssl not installed: TLS test skipped");
            return None;
        }
    }
    // Each file replaced whole, as a deploy tool does.
    std::fs::rename(dir.join("key.next.pem"), dir.join("key.pem")).unwrap();
    std::fs::rename(dir.join("cert.next.pem"), dir.join("cert.pem")).unwrap();
    let pem = std::fs::read(dir.join("cert.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    Some(CertificateDer::from_pem_slice(&pem).unwrap())
}

fn tls_config(dir: &Path) -> String {
    let text = config("http://127.0.0.1:9", ROOM);
    let _ = dir;
    text.replacen(
        "[listen]\n",
        "[listen]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nhsts_seconds = 600\n",
        1,
    )
}

/// A TLS connection to antre trusting `root`, offering `alpn`.
async fn connect(
    addr: std::net::SocketAddr,
    root: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// An HTTP/1.1 sender over `stream`.
async fn http1(
    stream: TlsStream<TcpStream>,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .header("cookie", "antre-hello=1")
        .body(Empty::new())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_by_alpn_with_secure_cookies_and_hsts() {
    let origin = Origin::start().await;
    let dir = temp_dir("tls-alpn");
    let Some(root) = make_certificate(&dir, "antre-test") else {
        return;
    };
    let text = tls_config(&dir).replace("http://127.0.0.1:9", &origin.url());
    let antre = Antre::start_in(&dir, &text);

    // HTTP/2, chosen by ALPN.
    let stream = connect(antre.addr, &root, &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get(format!("https://localhost:{}/daftar", antre.addr.port()))
        .header("cookie", "antre-hello=1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("antre-pass-vaksin=") && c.contains("; Secure")),
        "{cookies:?}"
    );
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=600"
    );
    let seen = origin.seen().pop().unwrap();
    assert_eq!(seen.headers["x-forwarded-proto"], "https");

    // HTTP/1.1 for a client that offers only it.
    let stream = connect(antre.addr, &root, &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut sender = http1(stream).await;
    let response = sender.send_request(get("/info")).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(response.status(), StatusCode::OK);

    // Plain HTTP to the TLS port gets nowhere.
    let mut plain = TcpStream::connect(antre.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"GET /info HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");

    // Monitoring sees when the certificate expires.
    let expires = openssl_date(&dir.join("cert.pem"), "-enddate");
    let metrics = antre.admin_get("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "antre_tls_certificate_expiry_timestamp_seconds {expires}"
        )),
        "{metrics}"
    );
    assert!(antre.stop().success());
}

/// A date of the certificate in `path` as openssl reads it (`-startdate`
/// or `-enddate`), in Unix seconds.
fn openssl_date(path: &Path, which: &str) -> i64 {
    let output = Command::new("openssl")
        .args(["x509", "-noout", which, "-dateopt", "iso_8601", "-in"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    // notAfter=2026-12-03 19:59:52Z
    let date = text.trim().split_once('=').unwrap().1;
    let output = Command::new("date")
        .args(["-u", "-d", date, "+%s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_swapped_on_disk_is_served_after_sighup_and_open_connections_stay() {
    let origin = Origin::start().await;
    let dir = temp_dir("tls-swap");
    let Some(first) = make_certificate(&dir, "antre-first") else {
        return;
    };
    let text = tls_config(&dir).replace("http://127.0.0.1:9", &origin.url());
    let antre = Antre::start_in(&dir, &text);

    let stream = connect(antre.addr, &first, &[b"http/1.1"]).await;
    let mut open = http1(stream).await;
    assert_eq!(
        open.send_request(get("/info")).await.unwrap().status(),
        StatusCode::OK
    );

    let second = make_certificate(&dir, "antre-second").unwrap();
    assert_ne!(first, second);
    let skip = antre.log_len();
    antre.signal("HUP");
    assert!(
        antre
            .wait_for_log(skip, "TLS certificate loaded", Duration::from_secs(10))
            .is_some(),
        "the new certificate was loaded"
    );
    // A new connection is served the new certificate...
    let stream = connect(antre.addr, &second, &[b"http/1.1"]).await;
    let served = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(served, second);
    // ...and the connection opened before still works.
    open.ready()
        .await
        .expect("the open connection was not dropped");
    assert_eq!(
        open.send_request(get("/info")).await.unwrap().status(),
        StatusCode::OK
    );

    // A broken certificate is refused, and the one in use kept.
    std::fs::write(
        dir.join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let skip = antre.log_len();
    antre.signal("HUP");
    assert!(
        antre
            .wait_for_log(skip, "new TLS certificate refused", Duration::from_secs(10))
            .is_some(),
        "the broken certificate was refused"
    );
    let stream = connect(antre.addr, &second, &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.peer_certificates().unwrap()[0], second);
    let mut sender = http1(stream).await;
    let response = sender.send_request(get("/info")).await.unwrap();
    let _ = response.into_body().collect().await;
    assert!(antre.stop().success());
}

/// `antre check` on the TLS config in `dir`: success, stdout, stderr.
fn check_tls(dir: &Path) -> (bool, String, String) {
    let path = dir.join("antre.toml");
    std::fs::write(&path, tls_config(dir)).unwrap();
    let output = common::antre_command()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_key_that_is_not_the_certificates_is_named_by_antre_check() {
    let dir = temp_dir("tls-check");
    let Some(_) = make_certificate(&dir, "one") else {
        return;
    };
    // A good pair: the summary names the certificate's names.
    let (ok, stdout, stderr) = check_tls(&dir);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("(names: localhost)"), "{stdout}");
    let key = std::fs::read(dir.join("key.pem")).unwrap();
    make_certificate(&dir, "two").unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let (ok, _, stderr) = check_tls(&dir);
    assert!(!ok);
    assert!(
        stderr.contains("listen.tls_cert") && stderr.contains("is not the key of"),
        "{stderr}"
    );
}

/// `antre check` shows when the certificate is valid, warns when it
/// expires soon, and refuses one that has expired, saying when.
#[test]
fn antre_check_names_the_certificates_dates_and_refuses_an_expired_one() {
    let dir = temp_dir("tls-dates");
    let Some(_) = make_certificate(&dir, "dates") else {
        return;
    };
    let (ok, stdout, stderr) = check_tls(&dir);
    assert!(ok, "{stderr}");
    let until = openssl_date(&dir.join("cert.pem"), "-enddate");
    let shown = |unix: i64| {
        let output = Command::new("date")
            .args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%d %H:%M UTC"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let from = openssl_date(&dir.join("cert.pem"), "-startdate");
    assert!(
        stdout.contains(&format!(
            "valid from {} until {}",
            shown(from),
            shown(until)
        )),
        "{stdout}"
    );
    // Three days: soon enough to be told.
    assert!(
        stdout.contains("warning  listen.tls_cert")
            && stdout.contains(&format!("expires on {}", shown(until))),
        "{stdout}"
    );

    // A certificate that expired yesterday.
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=old",
        "-keyout",
        "key.pem",
        "-out",
        "old.csr",
    ]);
    std::fs::write(
        dir.join("old.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509", "-req", "-in", "old.csr", "-signkey", "key.pem", "-days", "-1", "-extfile",
        "old.ext", "-out", "cert.pem",
    ]);
    let expired = openssl_date(&dir.join("cert.pem"), "-enddate");
    let (ok, _, stderr) = check_tls(&dir);
    assert!(!ok);
    assert!(
        stderr.contains("listen.tls_cert")
            && stderr.contains(&format!("the certificate expired on {}", shown(expired))),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_sent_to_https() {
    let dir = temp_dir("tls-redirect");
    let Some(_) = make_certificate(&dir, "antre-redirect") else {
        return;
    };
    let port = common::free_port();
    let text = tls_config(&dir).replacen(
        "[listen]\n",
        &format!("[listen]\nredirect_http = \"127.0.0.1:{port}\"\n"),
        1,
    );
    let antre = Antre::start_in(&dir, &text);
    let mut visitor = common::Visitor::new("plain");
    let answer = visitor
        .send(
            Request::post(format!("http://127.0.0.1:{port}/daftar?step=2"))
                .header("host", "kota.example:80"),
            &[],
            common::full("nik=1"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        answer.headers["location"],
        format!("https://kota.example:{}/daftar?step=2", antre.addr.port())
    );
    // A host that is not one plain name is not believed.
    let answer = visitor
        .send(
            Request::get(format!("http://127.0.0.1:{port}/")).header("host", "evil.example/x"),
            &[],
            common::empty(),
        )
        .await;
    assert_ne!(answer.status, StatusCode::PERMANENT_REDIRECT);
    assert!(antre.stop().success());
}

/// The command-line clients of the issue's checks, where installed:
/// `curl --http2` and `h2load` (`nghttp2-client`) through antre over TLS
/// to an `https://` origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_h2load_get_through_over_http2_to_an_https_origin() {
    let dir = temp_dir("tls-clients");
    let Some(_) = make_certificate(&dir, "antre-clients") else {
        return;
    };
    let (origin, served) = https_origin(&dir, &[b"h2", b"http/1.1"]).await;
    let text = tls_config(&dir).replacen(
        "url = \"http://127.0.0.1:9\"",
        &format!(
            "url = \"https://{origin}\"\nca_file = \"{}\"",
            dir.join("cert.pem").display()
        ),
        1,
    );
    let antre = Antre::start_in(&dir, &text);
    let port = antre.addr.port();
    let url = format!("https://localhost:{port}/info");
    let resolve = format!("localhost:{port}:127.0.0.1");
    match Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--http2",
            "--output",
            "/dev/null",
        ])
        .args(["--write-out", "%{http_version} %{http_code}"])
        .arg("--cacert")
        .arg(dir.join("cert.pem"))
        .args(["--resolve", &resolve, &url])
        .output()
    {
        Ok(output) => {
            let out = String::from_utf8_lossy(&output.stdout);
            assert_eq!(out, "2 200", "{}", String::from_utf8_lossy(&output.stderr));
        }
        Err(_) => common::skip("curl not installed: curl check skipped"),
    }
    match Command::new("h2load")
        .args([
            "-n",
            "400",
            "-c",
            "8",
            &format!("https://127.0.0.1:{port}/info"),
        ])
        .output()
    {
        Ok(output) => {
            let out = String::from_utf8_lossy(&output.stdout);
            assert!(out.contains("400 succeeded") && out.contains("h2"), "{out}");
            assert!(out.contains("status codes: 400 2xx"), "{out}");
        }
        Err(_) => {
            common::skip("h2load not installed (Debian nghttp2-client): h2load check skipped")
        }
    }
    assert!(
        served.load(std::sync::atomic::Ordering::Relaxed) >= 400,
        "the https origin answered"
    );
    assert!(antre.stop().success());
}

/// A small `https://` origin with the certificate in `dir`: it answers
/// every request with the Host it was sent and the protocol, and counts.
/// An https origin with the certificate in `dir`, offering `alpn`. It
/// answers with the site it was asked for (`:authority` over HTTP/2, `Host`
/// over HTTP/1.1) and the protocol.
async fn https_origin(
    dir: &Path,
    alpn: &[&[u8]],
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use http_body_util::Full;
    let certified = antre::tls::load(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certified.cert.clone(), {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap()
    })
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting = served.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counting = counting.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        counting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let host = match request.uri().authority() {
                            Some(authority) => authority.to_string(),
                            None => request
                                .headers()
                                .get("host")
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or("")
                                .to_owned(),
                        };
                        let body = format!("secure origin ok {host} {:?}", request.version());
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_origin_is_verified_against_its_ca_and_name() {
    let dir = temp_dir("tls-origin");
    let Some(_) = make_certificate(&dir, "antre-origin") else {
        return;
    };
    let (origin, served) = https_origin(&dir, &[b"h2", b"http/1.1"]).await;
    let with = |origin_lines: &str| {
        config(&format!("https://{origin}"), ROOM).replacen(
            "[origin]\n",
            &format!("[origin]\n{origin_lines}"),
            1,
        )
    };

    // Verified against the CA file, by the URL's address (in the
    // certificate's names): the site answers, told the visitor's Host.
    let antre = Antre::start_in(
        &temp_dir("tls-origin-ok"),
        &with(&format!(
            "ca_file = \"{}\"\n",
            dir.join("cert.pem").display()
        )),
    );
    let mut visitor = common::Visitor::new("v");
    let answer = visitor
        .get(&antre.url("/info"), &[("host", "kota.example")])
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, "secure origin ok kota.example HTTP/2.0");
    // A body goes through too, and the connection is reused.
    let answer = visitor
        .send(
            Request::post(antre.url("/form")),
            &[("host", "kota.example")],
            common::full("nik=3201"),
        )
        .await;
    assert_eq!(answer.body, "secure origin ok kota.example HTTP/2.0");
    assert!(antre.stop().success());

    // An origin that offers only HTTP/1.1 is spoken to in it.
    let (plain_origin, _) = https_origin(&dir, &[b"http/1.1"]).await;
    let antre = Antre::start_in(
        &temp_dir("tls-origin-h1"),
        &config(&format!("https://{plain_origin}"), ROOM).replacen(
            "[origin]\n",
            &format!(
                "[origin]\nca_file = \"{}\"\n",
                dir.join("cert.pem").display()
            ),
            1,
        ),
    );
    for _ in 0..2 {
        let answer = visitor
            .get(&antre.url("/info"), &[("host", "kota.example")])
            .await;
        assert_eq!(answer.body, "secure origin ok kota.example HTTP/1.1");
    }
    assert!(antre.stop().success());

    // The same by another name the certificate carries.
    let antre = Antre::start_in(
        &temp_dir("tls-origin-name"),
        &with(&format!(
            "ca_file = \"{}\"\nserver_name = \"localhost\"\n",
            dir.join("cert.pem").display()
        )),
    );
    let answer = common::Visitor::new("v")
        .get(&antre.url("/info"), &[])
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(antre.stop().success());

    // A name it does not carry, and the system's roots (which do not know
    // this certificate): refused, nothing served.
    let before = served.load(std::sync::atomic::Ordering::Relaxed);
    for lines in [
        format!(
            "ca_file = \"{}\"\nserver_name = \"elsewhere.example\"\n",
            dir.join("cert.pem").display()
        ),
        String::new(),
    ] {
        let antre = Antre::start_in(&temp_dir("tls-origin-bad"), &with(&lines));
        let answer = common::Visitor::new("v")
            .get(&antre.url("/info"), &[])
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_GATEWAY,
            "{lines}: {}",
            answer.body
        );
        assert!(antre.stop().success());
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::Relaxed), before);
}

/// `testssl` (Debian's `testssl.sh`) against antre's listener, with a
/// certificate made the way a CA issues one (its own CA, 200 days, a CRL
/// address): nothing high or critical. About a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_nothing_high_or_critical() {
    if Command::new("testssl").arg("--version").output().is_err() {
        common::skip("testssl not installed (Debian testssl.sh): TLS audit skipped");
        return;
    }
    let dir = temp_dir("tls-audit");
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("openssl");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "400",
                "-subj",
                "/CN=antre audit CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
         crlDistributionPoints=URI:http://crl.antre.invalid/ca.crl\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "200",
        "-extfile",
        "leaf.ext",
    ]);
    let chain = [
        std::fs::read_to_string(dir.join("leaf.pem")).unwrap(),
        std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("cert.pem"), chain).unwrap();

    let origin = Origin::start().await;
    let text = tls_config(&dir)
        .replace("http://127.0.0.1:9", &origin.url())
        .replace("hsts_seconds = 600", "hsts_seconds = 31536000");
    let antre = Antre::start_in(&dir, &text);
    let report = dir.join("testssl.json");
    let output = Command::new("testssl")
        .args(["--quiet", "--color", "0", "--warnings", "batch", "--add-ca"])
        .arg(dir.join("ca.pem"))
        .arg("--jsonfile")
        .arg(&report)
        .arg(format!("127.0.0.1:{}", antre.addr.port()))
        .output()
        .unwrap();
    let findings: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(&report)
            .unwrap_or_else(|_| panic!("no report: {}", String::from_utf8_lossy(&output.stdout))),
    )
    .unwrap();
    let grave: Vec<String> = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("HIGH" | "CRITICAL")))
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    assert!(
        findings.len() > 50,
        "testssl ran: {} findings",
        findings.len()
    );
    assert!(grave.is_empty(), "{grave:#?}");
    assert!(antre.stop().success());
}
