//! TLS on the visitor listener, with rustls: the certificate and key from
//! PEM files, HTTP/2 and HTTP/1.1 by ALPN, TLS 1.2 and 1.3 with rustls'
//! safe defaults. The certificate is swapped in place, without dropping a
//! connection, on `SIGHUP` and when its files change; a new one that does
//! not load (unreadable, malformed, a key that is not the certificate's,
//! expired or not yet valid) is refused and the one in use kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::clock::{days_from_civil, utc};

/// How often the files are looked at for a change.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Why a certificate could not be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Key(String),
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a certificate chain (leaf first) and its private key from PEM
/// files, and checks that the key is the certificate's and that the
/// certificate is valid now.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, e))?;
    if chain.is_empty() {
        return Err(file_error(cert, "holds no certificate"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| file_error(key, e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        TlsError::Key(format!(
            "{} is not the key of {}: {e}",
            key.display(),
            cert.display()
        ))
    })?;
    let validity = validity(&certified.cert[0])
        .ok_or_else(|| file_error(cert, "the certificate's validity dates cannot be read"))?;
    let now = unix_now();
    if now > validity.not_after {
        return Err(file_error(
            cert,
            format!("the certificate expired on {}", utc(validity.not_after)),
        ));
    }
    if now < validity.not_before {
        return Err(file_error(
            cert,
            format!(
                "the certificate is not valid before {}",
                utc(validity.not_before)
            ),
        ));
    }
    Ok(certified)
}

/// Now, in Unix seconds, for certificate dates.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// When a certificate may be used, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

/// The validity dates of the leaf certificate in `cert`, for `antre check`.
pub fn file_validity(cert: &Path) -> Result<Validity, TlsError> {
    validity(&leaf(cert)?)
        .ok_or_else(|| file_error(cert, "the certificate's validity dates cannot be read"))
}

/// Reads `validity` from a DER certificate: Certificate ::= SEQUENCE {
/// tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
/// signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... } ...}
/// (RFC 5280, 4.1). `None` for anything else.
pub fn validity(der: &[u8]) -> Option<Validity> {
    let (certificate, _) = der_take(der, 0x30)?;
    let (tbs, _) = der_take(certificate, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_next(rest)?.2;
    }
    for _ in 0..3 {
        rest = der_next(rest)?.2;
    }
    let (dates, _) = der_take(rest, 0x30)?;
    let (before_tag, before, after) = der_next(dates)?;
    let (after_tag, after, _) = der_next(after)?;
    Some(Validity {
        not_before: der_time(before_tag, before)?,
        not_after: der_time(after_tag, after)?,
    })
}

/// One DER element: its tag, its contents and what follows it.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, tail) = rest.split_at(count);
        rest = tail;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

fn der_take(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = der_next(input)?;
    (found == tag).then_some((contents, rest))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), as RFC 5280 allows them, in Unix seconds.
fn der_time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let (year, at) = match (tag, text.len()) {
        (0x17, 13) => {
            let yy = digits(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 15) => (digits(0..4)?, 4),
        _ => return None,
    };
    if text.last() != Some(&b'Z') {
        return None;
    }
    let (month, day) = (digits(at..at + 2)?, digits(at + 2..at + 4)?);
    let (hour, minute, second) = (
        digits(at + 4..at + 6)?,
        digits(at + 6..at + 8)?,
        digits(at + 8..at + 10)?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// The first (leaf) certificate in the PEM file `cert`.
fn leaf(cert: &Path) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e))?
        .next()
        .ok_or_else(|| file_error(cert, "holds no certificate"))?
        .map_err(|e| file_error(cert, e))
}

/// The DNS names the leaf certificate in `cert` is valid for, for
/// `antre check` to show.
pub fn names(cert: &Path) -> Result<Vec<String>, TlsError> {
    let leaf = leaf(cert)?;
    let parsed = webpki::EndEntityCert::try_from(&leaf).map_err(|e| file_error(cert, e))?;
    Ok(parsed.valid_dns_names().map(str::to_owned).collect())
}

/// The certificates in a PEM bundle, as trust roots for an origin.
pub fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_error(path, e))? {
        let cert = cert.map_err(|e| file_error(path, e))?;
        roots.add(cert).map_err(|e| file_error(path, e))?;
    }
    if roots.is_empty() {
        return Err(file_error(path, "holds no certificate"));
    }
    Ok(roots)
}

/// The system's trust roots; logged and empty when none can be read (an
/// https origin then fails to connect, saying why).
pub fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(error = %error, "reading the system's trust roots");
    }
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!(
            "no trust roots found on this system: set origin.ca_file for an https origin"
        );
    }
    roots
}

/// A connector to an `https://` origin: verified against `roots`, named
/// `server_name`, presenting `client` when given, offering `alpn` (the
/// protocols antre will speak, preferred first).
pub fn origin_connector(
    roots: rustls::RootCertStore,
    client: Option<&crate::config::TlsFiles>,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Key(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
                .map_err(|e| file_error(&files.cert, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| file_error(&files.cert, e))?;
            let key =
                PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| file_error(&files.key, e))?
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The certificate in use, swapped whole when it is reloaded; what every
/// new handshake is answered with.
pub struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// The files' modification times when last loaded (or tried).
    seen: std::sync::Mutex<(Option<SystemTime>, Option<SystemTime>)>,
    /// Set to the expiry of the certificate in use, when attached.
    expiry: OnceLock<prometheus::IntGauge>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Certificate {
    /// Loads the files; fails, saying why, when they cannot be used.
    pub fn open(cert: &Path, key: &Path) -> Result<Arc<Certificate>, TlsError> {
        let seen = (modified(cert), modified(key));
        let loaded = load(cert, key)?;
        Ok(Arc::new(Certificate {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: ArcSwap::from_pointee(loaded),
            seen: std::sync::Mutex::new(seen),
            expiry: OnceLock::new(),
        }))
    }

    /// Keeps `gauge` at the expiry (Unix seconds) of the certificate in
    /// use, through reloads.
    pub fn report_expiry(&self, gauge: prometheus::IntGauge) {
        if let Some(validity) = validity(&self.leaf()) {
            gauge.set(validity.not_after);
        }
        let _ = self.expiry.set(gauge);
    }

    /// Loads the files again. A certificate that loads replaces the one
    /// in use for new handshakes (connections open keep theirs); one that
    /// does not is refused, the one in use kept, and the reason logged.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
            (modified(&self.cert), modified(&self.key));
        match load(&self.cert, &self.key) {
            Ok(loaded) => {
                let expires = validity(&loaded.cert[0]).map_or(0, |v| v.not_after);
                self.current.store(Arc::new(loaded));
                if let Some(gauge) = self.expiry.get() {
                    gauge.set(expires);
                }
                tracing::info!(
                    cert = %self.cert.display(),
                    expires = %utc(expires),
                    "TLS certificate loaded"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "new TLS certificate refused; keeping the one in use");
                Err(e)
            }
        }
    }

    /// Whether either file changed since it was last loaded.
    fn changed(&self) -> bool {
        let now = (modified(&self.cert), modified(&self.key));
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) != now
    }

    /// The leaf certificate in use, as DER.
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.load().cert[0].clone()
    }

    /// The acceptor for the visitor listener: rustls' safe defaults (TLS
    /// 1.2 and 1.3), HTTP/2 and HTTP/1.1 by ALPN, this certificate.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Key(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // rustls' own order of cipher suites (the strongest first), not
        // whatever a client lists first.
        config.ignore_client_order = true;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Reloads the certificate whenever its files change, until shutdown.
    pub async fn watch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(WATCH_EVERY) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            if self.changed() {
                let _ = self.reload();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_both_time_forms_and_print_back() {
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(der_time(0x18, b"20261130190500Z"), Some(1_796_065_500));
        assert_eq!(utc(1_796_065_500), "2026-11-30 19:05 UTC");
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        for bad in [
            &b"2611301905Z"[..],
            b"261330190500Z",
            b"26113019050AZ",
            b"261130190500+",
        ] {
            assert_eq!(der_time(0x17, bad), None, "{bad:?}");
        }
        assert_eq!(der_time(0x18, b"261130190500Z"), None);
    }

    #[test]
    fn truncated_or_odd_der_is_refused_without_a_panic() {
        assert_eq!(validity(&[]), None);
        assert_eq!(validity(&[0x30]), None);
        assert_eq!(validity(&[0x30, 0x85, 1, 2, 3, 4, 5]), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(&[0x30, 0x02, 0x30, 0x00]), None);
        // Every prefix of a real shape fails cleanly.
        let mut der = vec![0x30, 0x80];
        for _ in 0..64 {
            der.push(0x30);
            assert_eq!(validity(&der), None);
        }
    }
}
