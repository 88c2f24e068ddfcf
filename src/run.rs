//! Wiring for `antre run`: opens the store, settles the signing keys, starts
//! the engine's background sync and the visitor listener, and shuts all of
//! it down on one signal.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, Admin};
use crate::clock::Clock;
use crate::config::{Config, StoreKind};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::proxy::{Forwarding, Proxy};
use crate::server::{self, App};
use crate::store::memory::StoredKey;
use crate::store::{AnyStore, MemoryStore, RedisStore, StoreError};
use crate::token::{Key, Keyring};

/// Why antre could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key: {0}")]
    Key(String),
}

/// A running antre: where it listens, and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, drains in-flight requests (up to the grace period),
    /// stops background tasks and writes the store's state.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Builds everything from `config` and starts serving.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Running, StartError> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new().map_err(|e| StartError::Key(format!("metrics: {e}")))?);
    let (store, memory) = match &config.store.kind {
        StoreKind::Memory { state_file } => {
            let store = Arc::new(MemoryStore::open(state_file)?);
            (AnyStore::Memory(store.clone()), Some(store))
        }
        StoreKind::Redis { url, prefix } => {
            let store = RedisStore::single(url, prefix)?
                .with_recovery_grace(recovery_grace(&config))
                .with_metrics(metrics.store_seconds.clone(), metrics.store_errors.clone());
            (AnyStore::Redis(Arc::new(store)), None)
        }
        StoreKind::Cluster { urls, prefix } => {
            let store = RedisStore::cluster(urls, prefix)?
                .with_recovery_grace(recovery_grace(&config))
                .with_metrics(metrics.store_seconds.clone(), metrics.store_errors.clone());
            (AnyStore::Redis(Arc::new(store)), None)
        }
    };
    let keys = keyring(&config, memory.as_deref())?;
    let engine = Arc::new(
        Engine::start(store, clock, keys, config.rooms.clone())
            .await?
            .with_on_error(config.store.on_error),
    );

    let listener = TcpListener::bind(config.listen.addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen.addr,
        source,
    })?;

    let admin_listener = TcpListener::bind(config.admin.addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.admin.addr,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.admin.addr,
            source,
        })?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let app = Arc::new(App {
        config: config.clone(),
        engine: engine.clone(),
        metrics: metrics.clone(),
        proxy: Proxy::new(
            config.origin.clone(),
            Forwarding {
                trust: config.listen.trust_forwarded,
                behind_tls: config.listen.secure_cookies,
            },
        ),
    });
    let sync_engine = engine.clone();
    let sync_interval = config.store.sync_interval;
    let sync_shutdown = shutdown_rx.clone();
    let admin = Arc::new(Admin::new(config.clone(), engine.clone(), metrics.clone()));
    let admin_task = tokio::spawn(admin::serve(admin, admin_listener, shutdown_rx.clone()));
    let task = tokio::spawn(async move {
        let sync =
            tokio::spawn(async move { sync_engine.run_sync(sync_interval, sync_shutdown).await });
        server::serve(app, listener, shutdown_rx).await;
        let _ = sync.await;
        let _ = admin_task.await;
        if let Some(memory) = memory {
            if let Err(e) = memory.flush() {
                tracing::error!(error = %e, "could not write the state file on shutdown");
            }
        }
        tracing::info!("stopped");
    });
    tracing::info!(%addr,
        admin = %admin_addr, origin = %config.origin.url, rooms = config.rooms.len(), "antre is serving");
    Ok(Running {
        addr,
        admin_addr,
        shutdown,
        task,
    })
}

/// Three sync intervals, at least a second: time for every instance to
/// notice a rebuilt room and add its counters.
fn recovery_grace(config: &Config) -> std::time::Duration {
    (config.store.sync_interval * 3).max(std::time::Duration::from_secs(1))
}

/// The configured keys, or the one kept in the state file (made on first
/// start, and said so).
fn keyring(config: &Config, memory: Option<&MemoryStore>) -> Result<Keyring, StartError> {
    let decode = |stored: &StoredKey| -> Result<Key, StartError> {
        let secret = STANDARD.decode(&stored.secret).map_err(|e| {
            StartError::Key(format!(
                "the key in the state file is not valid base64: {e}"
            ))
        })?;
        Key::new(&stored.id, &secret).map_err(StartError::Key)
    };
    let mut keys: Vec<Key> = config
        .keys
        .iter()
        .map(|k| Key::new(&k.id, &k.secret))
        .collect::<Result<_, _>>()
        .map_err(StartError::Key)?;
    if let Some(memory) = memory {
        if keys.is_empty() {
            let candidate = generate_key()?;
            let (stored, created) = memory.generated_key(|| candidate)?;
            if created {
                tracing::warn!(
                    key = %stored.id,
                    "no [[keys]] configured: created a signing key in the state file; \
                     configure keys shared by every instance before running more than one"
                );
            } else {
                tracing::info!(key = %stored.id, "using the signing key kept in the state file");
            }
            keys.push(decode(&stored)?);
        } else if let Some(stored) = memory.stored_key() {
            // Keys were configured after antre had made its own: the old key
            // still verifies (it never signs again), so nobody holding a
            // ticket or pass loses their place.
            if keys.iter().all(|k| k.id() != stored.id) {
                tracing::info!(key = %stored.id, "the key antre made earlier still verifies existing cookies");
                keys.push(decode(&stored)?);
            }
        }
    }
    Keyring::new(keys).ok_or_else(|| StartError::Key("no signing key".into()))
}

fn generate_key() -> Result<StoredKey, StartError> {
    let mut secret = [0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| StartError::Key("the system random number generator failed".into()))?;
    Ok(StoredKey {
        id: "auto".into(),
        secret: STANDARD.encode(secret),
    })
}
