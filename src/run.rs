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
use crate::admission::AdmissionKeys;
use crate::clock::Clock;
use crate::config::{Config, KeySpec, StoreKind};
use crate::engine::Engine;
use crate::listener;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::series::{self, Series};
use crate::server::{self, App};
use crate::shield::Shields;
use crate::store::memory::StoredKey;
use crate::store::{AnyStore, MemoryStore, RedisStore, StoreError};
use crate::tls::Certificate;
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
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
}

/// A running antre: where it listens, how to reload its config, and how
/// to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// What requests read; a reload replaces it.
    app: Arc<Live<App>>,
    admin: Arc<Live<Admin>>,
    /// The in-process store, when it is the one in use: it holds the key
    /// antre made for itself.
    memory: Option<Arc<MemoryStore>>,
    metrics: Arc<Metrics>,
    series: Arc<Series>,
    /// The TLS certificate in use, reloaded with the config.
    certificate: Option<Arc<Certificate>>,
}

impl Running {
    /// Stops accepting, drains in-flight requests (up to the grace period),
    /// stops background tasks and writes the store's state.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Puts `config` in place of the running one. Requests already under
    /// way finish on the old config, connections stay open, and every
    /// room's line lives in the store, so nobody loses their place. What a
    /// reload cannot change (the addresses antre listens on, the store)
    /// refuses the whole reload, with every reason, and the running config
    /// stays.
    pub async fn reload(&self, config: Config) -> Result<Reloaded, Vec<String>> {
        let current = self.app.load();
        let old = &current.config;
        let mut problems = Vec::new();
        if config.listen.addr != old.listen.addr {
            problems.push(format!(
                "listen.addr: changing it from {} to {} needs a restart",
                old.listen.addr, config.listen.addr
            ));
        }
        if config.listen.redirect_http != old.listen.redirect_http {
            problems.push("listen.redirect_http: changing it needs a restart".to_owned());
        }
        if config.listen.tls != old.listen.tls {
            problems.push(
                "listen.tls_cert, listen.tls_key: turning TLS on or off, or naming other files, \
                 needs a restart (new contents in the same files are loaded on reload)"
                    .to_owned(),
            );
        }
        if config.admin.addr != old.admin.addr {
            problems.push(format!(
                "admin.addr: changing it from {} to {} needs a restart",
                old.admin.addr, config.admin.addr
            ));
        }
        if config.store.kind != old.store.kind {
            problems.push("store: changing the store needs a restart".to_owned());
        }
        problems.extend(key_problems(&old.keys, &config.keys));
        let removed_keys: Vec<String> = old
            .keys
            .iter()
            .filter(|k| !config.keys.iter().any(|n| n.id == k.id))
            .map(|k| k.id.clone())
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let config = Arc::new(config);
        let keys = keyring(&config, self.memory.as_deref()).map_err(|e| vec![e.to_string()])?;
        let admission = admission_keys(&config, self.memory.as_deref())
            .map_err(|e| vec![format!("admission_keys: {e}")])?;
        let engine = current
            .engine
            .successor(keys, config.rooms.clone())
            .await
            .map_err(|e| vec![e.to_string()])?
            .with_on_error(config.store.on_error);
        let engine = Arc::new(engine);

        let ids = |c: &Config| -> Vec<String> { c.rooms.iter().map(|r| r.id.clone()).collect() };
        let (before, after) = (ids(old), ids(&config));
        let added: Vec<String> = after
            .iter()
            .filter(|id| !before.contains(id))
            .cloned()
            .collect();
        let removed: Vec<String> = before
            .iter()
            .filter(|id| !after.contains(id))
            .cloned()
            .collect();
        let mut live_wins = Vec::new();
        // A room the store could not take yet still shows its old settings:
        // nothing to compare until it does.
        for room in engine.rooms().iter().filter(|r| r.store_healthy()) {
            let (file, live) = (&room.config.settings, room.view().settings.clone());
            let settings = [
                (
                    "admit_per_minute",
                    live.admit_per_minute.to_string(),
                    file.admit_per_minute.to_string(),
                ),
                ("quota", describe(live.quota), describe(file.quota)),
                ("paused", live.paused.to_string(), file.paused.to_string()),
                (
                    "pass_minutes",
                    (live.pass_seconds / 60).to_string(),
                    (file.pass_seconds / 60).to_string(),
                ),
            ];
            for (name, live, file) in settings {
                if live != file {
                    live_wins.push(format!("{}: {name} {live} (file {file})", room.config.id));
                }
            }
        }

        // The same files, perhaps new contents: a certificate that does
        // not load is refused (and logged) and the one in use kept; the
        // rest of the config still applies.
        let app = build_app(&config, &engine, &self.metrics, admission)
            .map_err(|e| vec![format!("origin: {e}")])?;
        if let Some(certificate) = &self.certificate {
            let _ = certificate.reload();
        }
        self.app.replace(Arc::new(app));
        self.admin.replace(Arc::new(Admin::new(
            config.clone(),
            engine,
            self.metrics.clone(),
            self.series.clone(),
        )));
        Ok(Reloaded {
            rooms: after,
            added,
            removed,
            live_wins,
            removed_keys,
        })
    }
}

/// What a reload changed, for the log.
#[derive(Debug)]
pub struct Reloaded {
    pub rooms: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Settings an operator changed live, which keep their live value over
    /// the file's (as on a restart).
    pub live_wins: Vec<String>,
    /// Verify-only keys taken out: cookies they signed no longer count.
    pub removed_keys: Vec<String>,
}

/// Key changes a reload refuses because they would void everyone's
/// cookies at once: dropping the key that signs now, or changing a kept
/// key's secret. Rotation adds the new key first and drops the old one
/// once its cookies have expired.
fn key_problems(old: &[KeySpec], new: &[KeySpec]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(signing) = old.first() {
        if !new.iter().any(|k| k.id == signing.id) {
            problems.push(format!(
                "keys: key {:?} signs every ticket and pass now; keep it in [[keys]] \
                 (after the new one) until its cookies have expired",
                signing.id
            ));
        }
    }
    for key in new {
        if old.iter().any(|k| k.id == key.id && k.secret != key.secret) {
            problems.push(format!(
                "keys: the secret of key {:?} changed, which voids every cookie it signed; \
                 give a new secret a new id",
                key.id
            ));
        }
    }
    problems
}

fn describe(quota: Option<u64>) -> String {
    quota.map_or_else(|| "none".to_owned(), |q| q.to_string())
}

fn build_app(
    config: &Arc<Config>,
    engine: &Arc<Engine<AnyStore>>,
    metrics: &Arc<Metrics>,
    admission: Arc<AdmissionKeys>,
) -> Result<App, crate::tls::TlsError> {
    App::new(config.clone(), engine.clone(), metrics.clone(), admission)
}

/// The keys that sign the origin's admission header: those configured, or
/// derived from the ticket keys just settled (the state file's included),
/// exactly as `antre verify-admission` finds them.
fn admission_keys(
    config: &Config,
    memory: Option<&MemoryStore>,
) -> Result<Arc<AdmissionKeys>, crate::admission::KeyError> {
    let stored = memory.and_then(MemoryStore::stored_key);
    crate::admission::settle(config, stored.as_ref()).map(Arc::new)
}

/// Builds everything from `config` and starts serving.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Running, StartError> {
    let config = Arc::new(config);
    match listener::raise_open_file_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!("raised the open-file limit from {before} to {after}");
        }
        Ok((_, limit)) => tracing::info!("the open-file limit is {limit}"),
        Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
    }
    let metrics = Arc::new(Metrics::new().map_err(|e| StartError::Key(format!("metrics: {e}")))?);
    let (store, memory) = match &config.store.kind {
        StoreKind::Memory { state_file } => {
            let store = Arc::new(MemoryStore::open(state_file)?);
            (AnyStore::Memory(store.clone()), Some(store))
        }
        StoreKind::Redis { url, prefix } => {
            let store = RedisStore::single(url, prefix)?
                .with_recovery_grace(recovery_grace(&config))
                .with_replicas(config.store.wait_replicas)
                .with_metrics(metrics.store_seconds.clone(), metrics.store_errors.clone());
            (AnyStore::Redis(Arc::new(store)), None)
        }
        StoreKind::Cluster { urls, prefix } => {
            let store = RedisStore::cluster(urls, prefix)?
                .with_recovery_grace(recovery_grace(&config))
                .with_replicas(config.store.wait_replicas)
                .with_metrics(metrics.store_seconds.clone(), metrics.store_errors.clone());
            (AnyStore::Redis(Arc::new(store)), None)
        }
    };
    let keys = keyring(&config, memory.as_deref())?;
    let engine = Arc::new(
        Engine::start(store, clock, keys, config.rooms.clone())
            .await?
            .with_on_error(config.store.on_error)
            .with_shields(Arc::new(Shields::new(Some(metrics.shields.clone())))),
    );

    let listener = bind(config.listen.addr).await?;
    let addr = local_addr(&listener, config.listen.addr)?;
    let redirect_listener = match config.listen.redirect_http {
        Some(redirect) => {
            let listener = bind(redirect).await?;
            let bound = local_addr(&listener, redirect)?;
            tracing::info!(addr = %bound, "plain HTTP sends visitors to HTTPS");
            Some(listener)
        }
        None => None,
    };
    let admin_listener = bind(config.admin.addr).await?;
    let admin_addr = local_addr(&admin_listener, config.admin.addr)?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let series = Arc::new(Series::default());
    let certificate = match &config.listen.tls {
        Some(files) => Some(Certificate::open(&files.cert, &files.key)?),
        None => None,
    };
    let acceptor = match &certificate {
        Some(certificate) => {
            metrics
                .watch_certificate(certificate)
                .map_err(|e| StartError::Key(format!("metrics: {e}")))?;
            tokio::spawn(certificate.clone().watch(shutdown_rx.clone()));
            Some(certificate.acceptor()?)
        }
        None => None,
    };
    let admission = admission_keys(&config, memory.as_deref())
        .map_err(|e| StartError::Key(format!("admission_keys: {e}")))?;
    let app = Arc::new(Live::new(Arc::new(build_app(
        &config, &engine, &metrics, admission,
    )?)));
    let admin = Arc::new(Live::new(Arc::new(Admin::new(
        config.clone(),
        engine,
        metrics.clone(),
        series.clone(),
    ))));
    let admin_task = tokio::spawn(admin::serve(
        admin.clone(),
        admin_listener,
        shutdown_rx.clone(),
    ));
    let sync = tokio::spawn(sync(app.clone(), shutdown_rx.clone()));
    let sampler = tokio::spawn(sample(
        app.clone(),
        metrics.clone(),
        series.clone(),
        shutdown_rx.clone(),
    ));
    let redirecting = redirect_listener.map(|listener| {
        tokio::spawn(server::serve_redirect(
            app.clone(),
            listener,
            addr.port(),
            shutdown_rx.clone(),
        ))
    });
    let (workers, stop_workers) = workers().map_err(StartError::Workers)?;
    let serving = app.clone();
    let flushing = memory.clone();
    let task = tokio::spawn(async move {
        server::serve(serving, listener, workers, acceptor, shutdown_rx).await;
        drop(stop_workers);
        if let Some(redirecting) = redirecting {
            let _ = redirecting.await;
        }
        let _ = sync.await;
        let _ = sampler.await;
        let _ = admin_task.await;
        if let Some(memory) = flushing {
            if let Err(e) = memory.flush() {
                tracing::error!(error = %e, "could not write the state file on shutdown");
            }
        }
        tracing::info!("stopped");
    });
    tracing::info!(%addr,
        admin = %admin_addr, tls = certificate.is_some(), origin = %config.origin.url, rooms = config.rooms.len(), "antre is serving");
    Ok(Running {
        addr,
        admin_addr,
        shutdown,
        task,
        app,
        admin,
        memory,
        metrics,
        series,
        certificate,
    })
}

/// Starts the visitor listener's workers, one per core this process may
/// run on: each a thread with a single-threaded runtime of its own that
/// serves the connections given to it from accept to close, so a request
/// never crosses threads on its way through. Dropping the returned
/// senders ends them (once their connections have drained).
fn workers() -> std::io::Result<(listener::Workers, Vec<tokio::sync::oneshot::Sender<()>>)> {
    let count = listener::cores();
    let mut runtimes = Vec::with_capacity(count);
    let mut stops = Vec::with_capacity(count);
    for index in 0..count {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtimes.push(runtime.handle().clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        std::thread::Builder::new()
            .name(format!("antre-worker-{index}"))
            .spawn(move || {
                // Its tasks run while it waits; a dropped sender ends it.
                let _ = runtime.block_on(stopped);
            })?;
    }
    Ok((listener::Workers::new(runtimes), stops))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })
}

/// Refreshes the current engine's cached counters every `sync_millis`
/// until shutdown.
async fn sync(app: Arc<Live<App>>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let current = app.load();
        let next = tokio::time::Instant::now() + current.config.store.sync_interval;
        current.engine.sync_all().await;
        current.engine.sweep();
        drop(current);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Samples the rooms and the origin for the dashboard every [`series::STEP`].
async fn sample(
    app: Arc<Live<App>>,
    metrics: Arc<Metrics>,
    series: Arc<Series>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(series::STEP);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let origin = &metrics.origin_seconds;
                series.sample(&app.load().engine, origin.get_sample_sum(), origin.get_sample_count());
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Three sync intervals, at least a second: time for every instance to
/// notice a rebuilt room and add its counters.
fn recovery_grace(config: &Config) -> std::time::Duration {
    (config.store.sync_interval * 3).max(std::time::Duration::from_secs(1))
}

/// The configured keys, or the one kept in the state file (made on first
/// start, and said so); which of them count is [`Config::ticket_keys`].
fn keyring(config: &Config, memory: Option<&MemoryStore>) -> Result<Keyring, StartError> {
    let stored = match memory {
        Some(memory) if config.keys.is_empty() => {
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
            Some(stored)
        }
        Some(memory) => {
            let stored = memory.stored_key();
            if let Some(stored) = &stored {
                if config.keys.iter().all(|k| k.id != stored.id) {
                    // Keys were configured after antre had made its own: the
                    // old key still verifies (it never signs again), so
                    // nobody holding a ticket or pass loses their place.
                    tracing::info!(key = %stored.id, "the key antre made earlier still verifies existing cookies");
                }
            }
            stored
        }
        None => None,
    };
    let keys: Vec<Key> = config
        .ticket_keys(stored.as_ref())
        .map_err(StartError::Key)?
        .iter()
        .map(|k| Key::new(&k.id, &k.secret))
        .collect::<Result<_, _>>()
        .map_err(StartError::Key)?;
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
