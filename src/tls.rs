//! TLS on the visitor listener, with rustls: the certificate and key from
//! PEM files, HTTP/2 and HTTP/1.1 by ALPN, TLS 1.2 and 1.3 with rustls'
//! safe defaults. The certificate is swapped in place, without dropping a
//! connection, on `SIGHUP` and when its files change; a new one that does
//! not load (unreadable, malformed, a key that is not the certificate's)
//! is refused and the one in use kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

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
/// files, and checks that the key is the certificate's.
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
    Ok(certified)
}

/// The DNS names the leaf certificate in `cert` is valid for, for
/// `antre check` to show.
pub fn names(cert: &Path) -> Result<Vec<String>, TlsError> {
    let leaf = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e))?
        .next()
        .ok_or_else(|| file_error(cert, "holds no certificate"))?
        .map_err(|e| file_error(cert, e))?;
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
/// `server_name`, presenting `client` when given. HTTP/1.1 by ALPN: the
/// visitor's `Host` is passed on as it is, which HTTP/2's `:authority`
/// (the origin's own address here) would not carry.
pub fn origin_connector(
    roots: rustls::RootCertStore,
    client: Option<&crate::config::TlsFiles>,
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
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
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
        }))
    }

    /// Loads the files again. A certificate that loads replaces the one
    /// in use for new handshakes (connections open keep theirs); one that
    /// does not is refused, the one in use kept, and the reason logged.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
            (modified(&self.cert), modified(&self.key));
        match load(&self.cert, &self.key) {
            Ok(loaded) => {
                self.current.store(Arc::new(loaded));
                tracing::info!(cert = %self.cert.display(), "TLS certificate loaded");
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
