//! The `antre` command: parse arguments, load and check the config, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use antre::admission::{self, AdmissionKeys};
use antre::clock::SystemClock;
use antre::config::{Config, OnError, StoreKind};

/// A virtual waiting room in front of any website.
#[derive(Parser)]
#[command(name = "antre", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve: queue visitors and forward admitted ones to the origin.
    /// SIGHUP reloads the config file; SIGTERM or Ctrl-C drains and stops.
    Run {
        /// The config file.
        #[arg(short, long, value_name = "FILE", default_value = "config/antre.toml")]
        config: PathBuf,
        /// Log lines for people (`human`) or one JSON object a line (`json`).
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormat,
    },
    /// Check a config and print a summary of its rooms; lists every problem.
    Check {
        /// The config file.
        #[arg(short, long, value_name = "FILE", default_value = "config/antre.toml")]
        config: PathBuf,
    },
    /// Check an `antre-admission` header value with the config's keys:
    /// print its fields and exit 0 when genuine, say why and exit 1 when
    /// not, exit 2 when the config or its keys have problems.
    VerifyAdmission {
        /// The config file.
        #[arg(short, long, value_name = "FILE", default_value = "config/antre.toml")]
        config: PathBuf,
        /// The header's value, as the site received it.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Print the key the site needs to check `antre-admission` headers, as
    /// `<key id> <secret in hex>`. Without [[admission_keys]] it is derived
    /// from the ticket key, so rotating that key changes it. Exit 2 when the
    /// config or its keys have problems.
    AdmissionKey {
        /// The config file.
        #[arg(short, long, value_name = "FILE", default_value = "config/antre.toml")]
        config: PathBuf,
    },
    /// Recompute a draw from its revealed seed and its list of entry ids
    /// (one per line, as `/_antre/draw.json` publishes them): print each
    /// entry with its place in the draw, first place first. With
    /// `--commitment`, also check the seed against the hash published
    /// before the draw.
    VerifyDraw {
        /// The draw's seed, revealed once the phase opened.
        #[arg(long)]
        seed: String,
        /// A file of entry ids, one per line; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        tickets: PathBuf,
        /// The commitment published before the draw (SHA-256 of the seed).
        #[arg(long)]
        commitment: Option<String>,
        /// The ticket number of the first place (`first_ticket` in
        /// draw.json), to print each entry's ticket beside its place.
        #[arg(long)]
        first_ticket: Option<u64>,
    },
    /// Watch and steer a running antre through its admin API.
    Ctl {
        /// The admin API.
        #[arg(
            long,
            env = "ANTRE_ADMIN_ADDR",
            default_value = "http://127.0.0.1:9090"
        )]
        addr: String,
        /// The admin bearer token.
        #[arg(long, env = "ANTRE_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: CtlAction,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum CtlAction {
    /// Every room: line, admissions, rate, quota.
    Status,
    /// Set a room's admissions per minute.
    Rate { room: String, per_minute: u32 },
    /// Set a room's quota (total admissions), or `none`.
    Quota { room: String, quota: String },
    /// Stop admitting; tickets are still handed out and places kept.
    Pause { room: String },
    /// Admit again.
    Resume { room: String },
    /// Start a new epoch: everyone waiting loses their place. Asks for
    /// `--yes`.
    Reset {
        room: String,
        /// Really drop everyone's place.
        #[arg(long)]
        yes: bool,
    },
    /// Print a staff invite link: USES visitors skip the line with it
    /// within MINUTES. Each use is logged and counted.
    Invite {
        room: String,
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[arg(long, default_value_t = 60)]
        minutes: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(&config) {
            Some(config) => {
                print!("{}", summary(&config));
                ExitCode::SUCCESS
            }
            None => ExitCode::FAILURE,
        },
        Command::VerifyAdmission { config, value } => verify_admission(&config, &value),
        Command::AdmissionKey { config } => admission_key(&config),
        Command::VerifyDraw {
            seed,
            tickets,
            commitment,
            first_ticket,
        } => verify_draw(&seed, &tickets, commitment.as_deref(), first_ticket),
        Command::Ctl {
            addr,
            token,
            json,
            action,
        } => ctl(addr, token, json, action),
        Command::Run {
            config: path,
            log_format,
        } => {
            // Lines still in memory are written when this goes out of scope.
            let _logs = init_logging(log_format);
            let Some(config) = load(&path) else {
                return ExitCode::FAILURE;
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("antre: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(serve(config, path))
        }
    }
}

/// Exit status for a config, or keys, that cannot be used; 1 is kept for
/// "not genuine".
const CONFIG_PROBLEM: u8 = 2;

/// The admission keys `antre run` would use with the config at `path`.
fn admission_keys(command: &str, path: &std::path::Path) -> Result<AdmissionKeys, ExitCode> {
    let config = load(path).ok_or(ExitCode::from(CONFIG_PROBLEM))?;
    admission::settle_offline(&config).map_err(|e| {
        eprintln!("antre {command}: {e}");
        ExitCode::from(CONFIG_PROBLEM)
    })
}

fn verify_admission(path: &std::path::Path, value: &str) -> ExitCode {
    let keys = match admission_keys("verify-admission", path) {
        Ok(keys) => keys,
        Err(code) => return code,
    };
    match keys.verify(value) {
        Ok(admission) => {
            print!(
                "{}",
                admission::report(&admission, admission::key_id(value).unwrap_or_default())
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("antre verify-admission: not genuine: {e}");
            ExitCode::FAILURE
        }
    }
}

fn verify_draw(
    seed: &str,
    tickets: &std::path::Path,
    commitment: Option<&str>,
    first_ticket: Option<u64>,
) -> ExitCode {
    if !antre::draw::valid_seed(seed) {
        eprintln!(
            "antre verify-draw: --seed {seed:?} is not a draw seed (40 lowercase hex digits)"
        );
        return ExitCode::from(CONFIG_PROBLEM);
    }
    if let Some(published) = commitment {
        let computed = antre::draw::commitment(seed);
        if !published.eq_ignore_ascii_case(&computed) {
            eprintln!(
                "antre verify-draw: the seed does not match the commitment: SHA-256 of the seed is {computed}, the commitment {published}"
            );
            return ExitCode::FAILURE;
        }
    }
    let text = if tickets.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
    } else {
        std::fs::read_to_string(tickets)
    };
    let text = match text {
        Ok(text) => text,
        Err(e) => {
            eprintln!("antre verify-draw: cannot read {}: {e}", tickets.display());
            return ExitCode::from(CONFIG_PROBLEM);
        }
    };
    let entries = match antre::draw::read_entries(&text) {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("antre verify-draw: {}: {e}", tickets.display());
            return ExitCode::from(CONFIG_PROBLEM);
        }
    };
    let mut out = String::new();
    for (place, id) in antre::draw::order(seed, &entries).iter().enumerate() {
        let place = place as u64 + 1;
        match first_ticket {
            Some(first) => out.push_str(&format!("{place}\t{id}\tticket {}\n", first + place - 1)),
            None => out.push_str(&format!("{place}\t{id}\n")),
        }
    }
    print!("{out}");
    ExitCode::SUCCESS
}

fn admission_key(path: &std::path::Path) -> ExitCode {
    match admission_keys("admission-key", path) {
        Ok(keys) => {
            println!("{}", admission::key_line(&keys));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn ctl(addr: String, token: Option<String>, json: bool, action: CtlAction) -> ExitCode {
    use antre::ctl::{self, Command as C, Target};
    let command = match action {
        CtlAction::Status => C::Status,
        CtlAction::Rate { room, per_minute } => C::Rate { room, per_minute },
        CtlAction::Quota { room, quota } => match quota.as_str() {
            "none" => C::Quota { room, quota: None },
            text => match text.parse() {
                Ok(quota) => C::Quota {
                    room,
                    quota: Some(quota),
                },
                Err(_) => {
                    eprintln!("antre ctl: quota {text:?} must be a number or `none`");
                    return ExitCode::FAILURE;
                }
            },
        },
        CtlAction::Pause { room } => C::Pause { room },
        CtlAction::Resume { room } => C::Resume { room },
        CtlAction::Reset { room, yes } => {
            if !yes {
                eprintln!(
                    "antre ctl: a reset drops the place of everyone waiting in {room:?} and every pass; \
                     run `antre ctl reset {room} --yes` to do it"
                );
                return ExitCode::FAILURE;
            }
            C::Reset { room }
        }
        CtlAction::Invite {
            room,
            uses,
            minutes,
        } => C::Invite {
            room,
            uses,
            minutes,
        },
    };
    // `127.0.0.1:9090`, as the config writes it, means http.
    let addr = if addr.contains("://") {
        addr
    } else {
        format!("http://{addr}")
    };
    let target = Target {
        addr,
        token,
        operator: std::env::var("USER").unwrap_or_else(|_| "ctl".into()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("antre ctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ctl::run(&target, &command, json)) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("antre ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, path: PathBuf) -> ExitCode {
    // Listened for before anything starts, so a SIGHUP sent as soon as
    // the process exists never meets the default action (exit).
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("antre: cannot listen for signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let running = match antre::run::start(config, Arc::new(SystemClock)).await {
        Ok(running) => running,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("antre: {e}");
            return ExitCode::FAILURE;
        }
    };
    while let Signal::Reload = signals.next().await {
        reload(&running, &path).await;
    }
    tracing::info!("shutting down: draining in-flight requests");
    running.stop().await;
    ExitCode::SUCCESS
}

/// Reads the config file again and puts it in place; a config with
/// problems is refused with every reason, and the running one stays.
async fn reload(running: &antre::run::Running, path: &std::path::Path) {
    tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
            tracing::error!(
                config = %path.display(),
                problems = %reasons.join("; "),
                "reload refused: the config has problems; still running the previous one"
            );
            return;
        }
    };
    match running.reload(config).await {
        Ok(done) => {
            tracing::info!(
                rooms = %done.rooms.join(","),
                added = %done.added.join(","),
                removed = %done.removed.join(","),
                "config reloaded"
            );
            for key in done.removed_keys {
                tracing::warn!(%key, "key removed: tickets and passes it signed no longer count");
            }
            for setting in done.live_wins {
                tracing::warn!(%setting, "a setting changed live keeps its live value over the file's; change it live to override");
            }
        }
        Err(reasons) => tracing::error!(
            config = %path.display(),
            problems = %reasons.join("; "),
            "reload refused; still running the previous config"
        ),
    }
}

enum Signal {
    Stop,
    Reload,
}

/// SIGINT and SIGTERM stop antre; SIGHUP reloads its config.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                terminate: signal(SignalKind::terminate())?,
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Stop,
                _ = self.terminate.recv() => Signal::Stop,
                _ = self.hangup.recv() => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}

fn load(path: &std::path::Path) -> Option<Config> {
    match Config::load(path) {
        Ok(config) => Some(config),
        Err(errors) => {
            eprintln!(
                "antre: {} has {} problem{}:",
                path.display(),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            for error in errors {
                eprintln!("  {error}");
            }
            None
        }
    }
}

fn init_logging(format: LogFormat) -> antre::logging::FlushOnDrop {
    let level = std::env::var("ANTRE_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    use std::io::IsTerminal as _;
    let (writer, flush) = antre::logging::buffered_stderr();
    let logs = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(writer);
    match format {
        LogFormat::Human => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    flush
}

/// A Redis URL without its password, for printing.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_owned(),
    }
}

/// One screen about the config, for `antre check`.
fn summary(config: &Config) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "config OK");
    let _ = writeln!(
        out,
        "listen   {} (antre endpoints under {})",
        config.listen.addr, config.listen.prefix
    );
    if let Some(files) = &config.listen.tls {
        let names = antre::tls::names(&files.cert)
            .map(|names| names.join(", "))
            .unwrap_or_else(|e| e.to_string());
        let _ = writeln!(
            out,
            "tls      {} (names: {names}); HTTP/2 and HTTP/1.1",
            files.cert.display()
        );
        if let Ok(validity) = antre::tls::file_validity(&files.cert) {
            let _ = writeln!(
                out,
                "         valid from {} until {}",
                antre::clock::utc(validity.not_before),
                antre::clock::utc(validity.not_after)
            );
        }
        if let Some(redirect) = config.listen.redirect_http {
            let _ = writeln!(out, "         plain HTTP on {redirect} sent to HTTPS");
        }
    }
    let _ = writeln!(out, "origin   {}", config.origin.url);
    if let Some(tls) = &config.origin.tls {
        let roots = tls
            .ca_file
            .as_ref()
            .map_or("the system's roots".to_owned(), |f| f.display().to_string());
        let _ = writeln!(
            out,
            "         verified against {roots} as {:?}",
            tls.server_name
        );
    }
    let store = match &config.store.kind {
        StoreKind::Memory { state_file } => format!("memory, state in {}", state_file.display()),
        StoreKind::Redis { url, prefix } => {
            format!("redis {}, keys under {prefix}:", redacted(url))
        }
        StoreKind::Cluster { urls, prefix } => format!(
            "redis cluster {}, keys under {prefix}:",
            urls.iter()
                .map(|u| redacted(u))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    };
    let policy = match config.store.on_error {
        OnError::Hold => "hold",
        OnError::Admit => "admit",
    };
    let store = format!("{store}; on error: {policy}");
    let _ = writeln!(out, "store    {store}");
    let keys = if config.keys.is_empty() {
        "none configured: one is created in the state file".to_owned()
    } else {
        let ids: Vec<&str> = config.keys.iter().map(|k| k.id.as_str()).collect();
        format!("{} (signs with {})", ids.join(", "), ids[0])
    };
    let _ = writeln!(out, "keys     {keys}");
    let admission = if config.admission_keys.is_empty() {
        "derived from the signing key (`antre admission-key` prints it)".to_owned()
    } else {
        let ids: Vec<&str> = config
            .admission_keys
            .iter()
            .map(|k| k.id.as_str())
            .collect();
        format!("{} (signs with {})", ids.join(", "), ids[0])
    };
    let _ = writeln!(out, "         antre-admission header: {admission}");
    let _ = writeln!(out, "rooms    {}", config.rooms.len());
    let _ = writeln!(
        out,
        "  {:<16} {:>8} {:>6} {:>10} {:>6} {:>6}  paths",
        "id", "per min", "burst", "quota", "pass", "claim"
    );
    for room in &config.rooms {
        let quota = room
            .settings
            .quota
            .map_or("none".to_owned(), |q| q.to_string());
        let mut paths = room.paths.join(" ");
        if !room.unguarded.is_empty() {
            paths = format!("{paths} except {}", room.unguarded.join(" "));
        }
        if !room.hosts.is_empty() {
            paths = format!("{paths} on {}", room.hosts.join(" "));
        }
        if room.settings.paused {
            paths.push_str(" (paused)");
        }
        let rate = if room.settings.phases.is_empty() {
            room.settings.admit_per_minute.to_string()
        } else {
            "by phase".to_owned()
        };
        let _ = writeln!(
            out,
            "  {:<16} {:>8} {:>6} {:>10} {:>5}m {:>5}m  {}",
            room.id,
            rate,
            room.settings.burst,
            quota,
            room.pass_seconds / 60,
            room.settings.claim_seconds / 60,
            paths
        );
    }
    for room in config
        .rooms
        .iter()
        .filter(|r| !r.settings.phases.is_empty())
    {
        let _ = write!(out, "{}", schedule(room, config.page.utc_offset_minutes));
    }
    let mut campaigns: Vec<&str> = Vec::new();
    for campaign in config.rooms.iter().filter_map(|r| r.campaign.as_deref()) {
        if !campaigns.contains(&campaign) {
            campaigns.push(campaign);
        }
    }
    for campaign in campaigns {
        let segments: Vec<&antre::config::RoomConfig> = config
            .rooms
            .iter()
            .filter(|r| r.campaign.as_deref() == Some(campaign))
            .collect();
        let names: Vec<&str> = segments.iter().map(|r| r.id.as_str()).collect();
        let _ = writeln!(out, "campaign {campaign}: segments {}", names.join(", "));
        for room in segments {
            if let Some(rule) = &room.unused {
                let _ = writeln!(
                    out,
                    "  unused places of {} move to {} at {}",
                    room.id,
                    rule.to,
                    antre::clock::local_time(
                        (rule.at / antre::clock::MICROS_PER_SECOND) as i64,
                        config.page.utc_offset_minutes
                    )
                );
            }
        }
    }
    for warning in config.warnings() {
        let _ = writeln!(out, "warning  {warning}");
    }
    out
}

/// A room's schedule as a table in the page's time zone, so an operator can
/// read it back the day before.
fn schedule(room: &antre::config::RoomConfig, offset_minutes: i32) -> String {
    use antre::clock::{local_time, MICROS_PER_SECOND};
    use std::fmt::Write as _;
    let mut out = format!("schedule of {}\n", room.id);
    let _ = writeln!(
        out,
        "  {:<5} {:<23} {:<23} {:>8}  rate",
        "phase", "opens", "closes", "quota"
    );
    let local = |micros: u64| local_time((micros / MICROS_PER_SECOND) as i64, offset_minutes);
    for (i, phase) in room.settings.phases.iter().enumerate() {
        let seconds = (phase.end - phase.start) / MICROS_PER_SECOND;
        let rate = if phase.spread() {
            format!(
                "spread: about {:.1} a minute, one every {:.1} s",
                phase.quota as f64 * 60.0 / seconds as f64,
                seconds as f64 / phase.quota as f64
            )
        } else {
            format!("{} a minute", phase.admit_per_minute)
        };
        let rate = if phase.prequeue > 0 {
            format!(
                "{rate}; draw among entries from {}",
                local(phase.start - phase.prequeue)
            )
        } else {
            rate
        };
        let _ = writeln!(
            out,
            "  {:<5} {:<23} {:<23} {:>8}  {rate}",
            i + 1,
            local(phase.start),
            local(phase.end),
            phase.quota
        );
    }
    let total: u64 = room.settings.phases.iter().map(|p| p.quota).sum();
    let _ = writeln!(
        out,
        "  {:<5} {:<23} {:<23} {:>8}  ticket numbers go on from phase to phase",
        "total", "", "", total
    );
    out
}
