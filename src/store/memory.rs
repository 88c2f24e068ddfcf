//! The in-process store: rooms' counters in memory, kept in a small state
//! file so that restarting antre loses nobody's place.
//!
//! Durability. Every change is an operation (arrive, claim, sync, ...) that
//! is applied to the counters and appended as one line to a journal beside
//! the state file, under the same lock, before the caller gets its answer.
//! The queue maths is deterministic, so replaying the journal over the last
//! snapshot rebuilds exactly the counters the process had, even after it was
//! killed. Every `COMPACT_AFTER` lines, and on shutdown, the counters are
//! written as a fresh snapshot and the journal starts over. Each line
//! carries a sequence number and the snapshot the last one it includes, so a
//! crash between writing a snapshot and emptying the journal replays nothing
//! twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::queue::{Claim, Counters, Entry, Overrides, RoomSettings, RoomView, SettingsChange};
use super::{Arrival, AuditEntry, Store, StoreError, AUDIT_KEEP};
use crate::clock::Micros;

/// Journal lines after which the state is written as a snapshot.
const COMPACT_AFTER: u64 = 100_000;

const SNAPSHOT_VERSION: u32 = 1;

/// A signing key antre made for itself because the config named none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: String,
    /// The secret, base64 (standard alphabet).
    pub secret: String,
}

impl StoredKey {
    /// The secret's bytes; fails, saying why, when the state file holds
    /// something that is not base64.
    pub fn secret_bytes(&self) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&self.secret)
            .map_err(|e| format!("the key in the state file is not valid base64: {e}"))
    }
}

/// The signing key kept in the state file at `path`, read without opening
/// the store: a running antre holds the store's lock, and commands such as
/// `antre admission-key` must still find the key. The key is written to the
/// snapshot itself as soon as it is made (never only to the journal), so the
/// snapshot is enough. `None` when there is no state file or no key yet.
pub fn read_stored_key(path: &Path) -> Result<Option<StoredKey>, StoreError> {
    /// The one field wanted; the rest of the snapshot is ignored.
    #[derive(Deserialize)]
    struct KeyOnly {
        version: u32,
        generated_key: Option<StoredKey>,
    }
    let state_error = |message: String| StoreError::State {
        path: path.display().to_string(),
        message,
    };
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(state_error(e.to_string())),
    };
    let snapshot: KeyOnly = serde_json::from_slice(&bytes)
        .map_err(|e| state_error(format!("not a valid antre state file: {e}")))?;
    if snapshot.version != SNAPSHOT_VERSION {
        return Err(state_error(format!(
            "state file version {} is not supported (expected {SNAPSHOT_VERSION})",
            snapshot.version
        )));
    }
    Ok(snapshot.generated_key)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Room {
    settings: RoomSettings,
    counters: Counters,
    /// Settings changed live, which a restart's config does not undo.
    #[serde(default)]
    overrides: Overrides,
}

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// Sequence number of the last journal line folded into this snapshot.
    seq: u64,
    generated_key: Option<StoredKey>,
    rooms: BTreeMap<String, Room>,
    /// Operators' changes, oldest first.
    #[serde(default)]
    audit: VecDeque<AuditEntry>,
}

/// One change to the counters, as journalled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Configure {
        room: String,
        settings: RoomSettings,
        now: Micros,
    },
    Sync {
        room: String,
        now: Micros,
    },
    Arrive {
        room: String,
        now: Micros,
    },
    Claim {
        room: String,
        epoch: u64,
        ticket: u64,
        now: Micros,
    },
    Give {
        room: String,
        at: Micros,
        now: Micros,
    },
    Receive {
        room: String,
        from: String,
        at: Micros,
        amount: u64,
        now: Micros,
    },
    EnterDraw {
        room: String,
        epoch: u64,
        id: u64,
        phase: Micros,
        now: Micros,
    },
    ComeBack {
        room: String,
        epoch: u64,
        ticket: u64,
        phase: Micros,
        now: Micros,
    },
    Reset {
        room: String,
        now: Micros,
    },
    Update {
        room: String,
        change: SettingsChange,
        now: Micros,
    },
    Record {
        entry: AuditEntry,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct JournalLine {
    seq: u64,
    #[serde(flatten)]
    op: Op,
}

/// The journal line borrowed for writing.
#[derive(Serialize)]
struct JournalLineRef<'a> {
    seq: u64,
    #[serde(flatten)]
    op: &'a Op,
}

impl Op {
    fn room(&self) -> &str {
        match self {
            Op::Configure { room, .. }
            | Op::Sync { room, .. }
            | Op::Arrive { room, .. }
            | Op::Claim { room, .. }
            | Op::ComeBack { room, .. }
            | Op::EnterDraw { room, .. }
            | Op::Give { room, .. }
            | Op::Receive { room, .. }
            | Op::Reset { room, .. }
            | Op::Update { room, .. }
            | Op::Record {
                entry: AuditEntry { room, .. },
            } => room,
        }
    }
}

/// What an operation returned, before it is shaped for the caller.
enum Outcome {
    View,
    Arrival { ticket: u64, admitted: bool },
    Claim(Claim),
    Entry(Entry),
}

/// Files behind a persistent store.
struct StateFile {
    path: PathBuf,
    journal_path: PathBuf,
    journal: File,
    journal_lines: u64,
    /// Length of the journal up to its last whole line.
    journal_bytes: u64,
}

struct Inner {
    rooms: BTreeMap<String, Room>,
    generated_key: Option<StoredKey>,
    /// Operators' changes, oldest first, at most [`AUDIT_KEEP`].
    audit: VecDeque<AuditEntry>,
    /// Sequence number of the last applied operation.
    seq: u64,
    file: Option<StateFile>,
}

/// Spent nonces and pass networks, keyed by room and nonce or pass id.
/// After a restart they are forgotten: a solution may then buy one more
/// ticket within its expiry, a pass gets its networks afresh.
#[derive(Default)]
struct Passing {
    /// Expiry of each spent nonce.
    spent: HashMap<(String, u64), Micros>,
    /// Until when, and from which networks, each pass has been used.
    bound: HashMap<(String, u64), (Micros, Vec<u64>)>,
    /// Until when, and how often, each staff invite has been used.
    invites: HashMap<(String, u64), (Micros, u32)>,
    /// The ticket each promise made during an outage became, and until
    /// when asking with it again gives that ticket (a day, as in Redis).
    promised: HashMap<(String, String), (Micros, u64)>,
    /// Expired entries are swept no more than once a second.
    next_sweep: Micros,
}

impl Passing {
    fn sweep(&mut self, now: Micros) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + crate::clock::MICROS_PER_SECOND;
        self.spent.retain(|_, expires| *expires >= now);
        self.bound.retain(|_, (until, _)| *until > now);
        self.invites.retain(|_, (until, _)| *until > now);
        self.promised.retain(|_, (until, _)| *until > now);
    }
}

/// Rooms' counters in this process. A std `Mutex`, not a Tokio one: nothing
/// is awaited while it is held, and each operation is a few arithmetic steps
/// plus one small append.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// What need not outlive the process: proof-of-work nonces spent and
    /// the networks passes were used from. Apart from `inner` so it is
    /// never journalled. A std `Mutex`: nothing is awaited while it is
    /// held.
    passing: Mutex<Passing>,
    /// An exclusive lock on `<state file>.lock`, held while the store lives,
    /// so two processes never share one state file.
    _lock: Option<File>,
}

impl MemoryStore {
    /// A store that keeps nothing on disk (tests, benchmarks).
    pub fn ephemeral() -> Self {
        MemoryStore {
            inner: Mutex::new(Inner {
                rooms: BTreeMap::new(),
                generated_key: None,
                audit: VecDeque::new(),
                seq: 0,
                file: None,
            }),
            passing: Mutex::default(),
            _lock: None,
        }
    }

    /// Opens (or creates) the state file at `path` and its journal at
    /// `path` + `.journal`, replaying whatever the last run left.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let state_error = |message: String| StoreError::State {
            path: path.display().to_string(),
            message,
        };
        let lock_path = sibling(path, ".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| state_error(format!("cannot open {}: {e}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            return Err(state_error(
                "another antre process is using this state file; give each instance its own, or use the Redis store".into(),
            ));
        }
        let snapshot = match fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Snapshot>(&bytes)
                .map_err(|e| state_error(format!("not a valid antre state file: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Snapshot {
                version: SNAPSHOT_VERSION,
                seq: 0,
                generated_key: None,
                rooms: BTreeMap::new(),
                audit: VecDeque::new(),
            },
            Err(e) => return Err(state_error(e.to_string())),
        };
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(state_error(format!(
                "state file version {} is not supported (expected {SNAPSHOT_VERSION})",
                snapshot.version
            )));
        }
        let mut inner = Inner {
            rooms: snapshot.rooms,
            generated_key: snapshot.generated_key,
            audit: snapshot.audit,
            seq: snapshot.seq,
            file: None,
        };

        let journal_path = journal_path(path);
        let replayed = replay(&mut inner, &journal_path).map_err(|e| StoreError::State {
            path: journal_path.display().to_string(),
            message: e,
        })?;
        if replayed > 0 {
            tracing::info!(operations = replayed, journal = %journal_path.display(), "replayed state journal");
        }

        let mut journal_options = OpenOptions::new();
        journal_options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut journal_options, 0o600);
        let journal = journal_options
            .open(&journal_path)
            .map_err(|e| StoreError::State {
                path: journal_path.display().to_string(),
                message: e.to_string(),
            })?;
        inner.file = Some(StateFile {
            path: path.to_path_buf(),
            journal_path,
            journal,
            journal_lines: 0,
            journal_bytes: 0,
        });
        inner.write_snapshot()?;
        Ok(MemoryStore {
            inner: Mutex::new(inner),
            passing: Mutex::default(),
            _lock: Some(lock),
        })
    }

    fn passing(&self) -> MutexGuard<'_, Passing> {
        self.passing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock was held cannot leave the counters half
        // updated (each operation finishes its arithmetic before appending),
        // so a poisoned lock is still safe to use.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The signing key kept in the state file, made with `make` (and written
    /// out at once) when there is none yet.
    pub fn generated_key(
        &self,
        make: impl FnOnce() -> StoredKey,
    ) -> Result<(StoredKey, bool), StoreError> {
        let mut inner = self.lock();
        if let Some(key) = &inner.generated_key {
            return Ok((key.clone(), false));
        }
        let key = make();
        inner.generated_key = Some(key.clone());
        inner.write_snapshot()?;
        Ok((key, true))
    }

    /// The signing key kept in the state file, if antre ever made one.
    pub fn stored_key(&self) -> Option<StoredKey> {
        self.lock().generated_key.clone()
    }

    /// Writes a snapshot and empties the journal; called on shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.lock().write_snapshot()
    }

    /// Applies `op`. Operations that hand out places or admissions are
    /// journalled before they are applied, so an answer is never given for
    /// a change the journal does not hold; a background sync is journalled
    /// after, and only when it changed something.
    fn run(&self, op: Op) -> Result<(Outcome, RoomView), StoreError> {
        let mut inner = self.lock();
        if matches!(op, Op::Sync { .. }) {
            let (outcome, view, changed) = inner.apply(&op)?;
            if changed {
                if let Err(e) = inner.append(&op) {
                    // The counters are already moved on; time alone
                    // replays them nearly the same, so the sync stands.
                    tracing::error!(error = %e, "could not journal a sync");
                }
            }
            return Ok((outcome, view));
        }
        if !inner.rooms.contains_key(op.room()) && !matches!(op, Op::Configure { .. }) {
            return Err(StoreError::UnknownRoom(op.room().to_owned()));
        }
        inner.append(&op)?;
        let (outcome, view, _) = inner.apply(&op)?;
        Ok((outcome, view))
    }
}

impl Inner {
    /// Applies `op` to the counters. Returns what it produced, the room's
    /// view afterwards, and whether anything changed (and so must be
    /// journalled).
    fn apply(&mut self, op: &Op) -> Result<(Outcome, RoomView, bool), StoreError> {
        if let Op::Configure {
            room,
            settings,
            now,
        } = op
        {
            let entry = self.rooms.entry(room.clone()).or_insert_with(|| Room {
                settings: settings.clone(),
                counters: Counters::default(),
                overrides: Overrides::default(),
            });
            entry.settings = RoomSettings::merged(settings, &entry.settings, entry.overrides);
            entry.counters.advance(&entry.settings, *now);
            return Ok((
                Outcome::View,
                entry.counters.view(&entry.settings, *now),
                true,
            ));
        }
        if let Op::Update { room, change, now } = op {
            let entry = self
                .rooms
                .get_mut(room)
                .ok_or_else(|| StoreError::UnknownRoom(room.clone()))?;
            // Brought up to date under the old settings first, so a new
            // rate applies from now on, not back to the last advance.
            entry.counters.advance(&entry.settings, *now);
            entry.settings.change(change, &mut entry.overrides);
            entry.counters.advance(&entry.settings, *now);
            return Ok((
                Outcome::View,
                entry.counters.view(&entry.settings, *now),
                true,
            ));
        }
        let (name, now) = match op {
            Op::Configure { .. } | Op::Update { .. } => unreachable!("handled above"),
            Op::Record { .. } => unreachable!("applied by apply_record"),
            Op::Sync { room, now } | Op::Arrive { room, now } | Op::Reset { room, now } => {
                (room, *now)
            }
            Op::Claim { room, now, .. }
            | Op::ComeBack { room, now, .. }
            | Op::EnterDraw { room, now, .. }
            | Op::Give { room, now, .. }
            | Op::Receive { room, now, .. } => (room, *now),
        };
        let room = self
            .rooms
            .get_mut(name)
            .ok_or_else(|| StoreError::UnknownRoom(name.clone()))?;
        let before = fingerprint(&room.counters);
        let settings = &room.settings;
        let counters = &mut room.counters;
        let outcome = match op {
            Op::Sync { .. } | Op::Configure { .. } | Op::Update { .. } | Op::Record { .. } => {
                counters.advance(settings, now);
                Outcome::View
            }
            Op::Arrive { .. } => {
                let (ticket, admitted) = counters.arrive(settings, now);
                Outcome::Arrival { ticket, admitted }
            }
            Op::Claim { epoch, ticket, .. } => {
                Outcome::Claim(counters.claim(settings, *epoch, *ticket, now))
            }
            Op::ComeBack {
                epoch,
                ticket,
                phase,
                ..
            } => Outcome::Claim(counters.come_back(settings, *epoch, *ticket, *phase, now)),
            Op::EnterDraw {
                epoch, id, phase, ..
            } => Outcome::Entry(counters.enter_draw(settings, *epoch, *id, *phase, now)),
            Op::Give { at, .. } => Outcome::Arrival {
                ticket: counters.give(settings, *at, now),
                admitted: false,
            },
            Op::Receive {
                from, at, amount, ..
            } => {
                counters.receive(settings, from, *at, *amount, now);
                Outcome::View
            }
            Op::Reset { .. } => {
                counters.reset(settings, now);
                Outcome::View
            }
        };
        let changed = fingerprint(counters) != before;
        Ok((outcome, counters.view(settings, now), changed))
    }

    /// Adds an operator's change to the audit trail; it touches no room.
    fn apply_record(&mut self, entry: &AuditEntry) {
        self.audit.push_back(entry.clone());
        while self.audit.len() > AUDIT_KEEP {
            self.audit.pop_front();
        }
    }

    /// Appends `op` to the journal under the next sequence number. On a
    /// failed write the journal is cut back to its last whole line, so a
    /// fragment never sits between good lines.
    fn append(&mut self, op: &Op) -> Result<(), StoreError> {
        let seq = self.seq + 1;
        if let Some(file) = self.file.as_mut() {
            let failed = |message: String| StoreError::State {
                path: file.journal_path.display().to_string(),
                message,
            };
            let mut text = serde_json::to_string(&JournalLineRef { seq, op })
                .map_err(|e| failed(e.to_string()))?;
            text.push('\n');
            // One write call a line: a process killed mid-way leaves at most
            // a torn last line, which replay skips.
            if let Err(e) = file.journal.write_all(text.as_bytes()) {
                let _ = file.journal.set_len(file.journal_bytes);
                return Err(failed(format!("cannot append to the journal: {e}")));
            }
            file.journal_bytes += text.len() as u64;
            file.journal_lines += 1;
        }
        self.seq = seq;
        let full = self
            .file
            .as_ref()
            .is_some_and(|f| f.journal_lines >= COMPACT_AFTER);
        if full {
            if let Err(e) = self.write_snapshot() {
                tracing::error!(error = %e, "could not write the state snapshot");
            }
        }
        Ok(())
    }

    /// Writes all counters to the state file (through a temporary file and
    /// a rename, so a crash never leaves half a file) and empties the journal.
    fn write_snapshot(&mut self) -> Result<(), StoreError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let snapshot = SnapshotRef {
            version: SNAPSHOT_VERSION,
            seq: self.seq,
            generated_key: &self.generated_key,
            rooms: &self.rooms,
            audit: &self.audit,
        };
        let error = |message: String| StoreError::State {
            path: file.path.display().to_string(),
            message,
        };
        let bytes = serde_json::to_vec(&snapshot).map_err(|e| error(e.to_string()))?;
        let tmp = file.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            // Only antre's user may read it: it can hold the signing key.
            let mut out = private_file(&tmp)?;
            out.write_all(&bytes)?;
            out.sync_all()?;
            fs::rename(&tmp, &file.path)?;
            file.journal.set_len(0)?;
            Ok(())
        };
        write().map_err(|e| error(e.to_string()))?;
        file.journal_lines = 0;
        file.journal_bytes = 0;
        Ok(())
    }
}

/// The snapshot, borrowed for writing.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    seq: u64,
    generated_key: &'a Option<StoredKey>,
    rooms: &'a BTreeMap<String, Room>,
    audit: &'a VecDeque<AuditEntry>,
}

/// Every change an operation can make moves one of these: the counters,
/// the schedule, and the newest expiry checkpoint.
type Fingerprint = ([u64; 18], bool, usize, Option<(Micros, u64)>);

fn fingerprint(c: &Counters) -> Fingerprint {
    (
        [
            c.epoch,
            c.tail,
            c.frontier,
            c.admitted,
            c.wasted,
            c.floor,
            c.tat,
            c.phase,
            c.phase_base,
            c.phase_from,
            c.phase_to,
            c.draw_phase,
            c.entries.len() as u64,
            c.drawn_phase,
            c.drawn.len() as u64,
            c.given,
            c.received,
            c.gave_at,
        ],
        c.running,
        c.checkpoints.len(),
        c.checkpoints.back().map(|cp| (cp.last, cp.frontier)),
    )
}

/// Creates (or truncates) `path` readable and writable by its owner only.
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).write(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    // An existing file keeps its mode through `open`: set it.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}

fn journal_path(path: &Path) -> PathBuf {
    sibling(path, ".journal")
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Applies the journal's lines newer than the snapshot, in order. A torn
/// last line (the process died while writing it) is dropped; a damaged line
/// with more after it is refused, since skipping it would lose what follows.
fn replay(inner: &mut Inner, journal_path: &Path) -> Result<u64, String> {
    let bytes = match fs::read(journal_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.to_string()),
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut replayed = 0;
    for (index, line) in lines.iter().enumerate() {
        let entry: JournalLine = match serde_json::from_str(line) {
            Ok(entry) => entry,
            Err(_) if index + 1 == lines.len() && !text.ends_with('\n') => {
                tracing::warn!(line = index + 1, "the state journal ends in a torn line; dropping it");
                break;
            }
            Err(e) => {
                return Err(format!(
                    "line {} is damaged ({e}) and {} more follow; move the journal aside to start from the last snapshot",
                    index + 1,
                    lines.len() - index - 1
                ))
            }
        };
        if entry.seq <= inner.seq {
            continue;
        }
        match &entry.op {
            Op::Record { entry } => inner.apply_record(entry),
            op => {
                inner
                    .apply(op)
                    .map_err(|e| format!("line {}: {e}", index + 1))?;
            }
        }
        inner.seq = entry.seq;
        replayed += 1;
    }
    Ok(replayed)
}

impl Store for MemoryStore {
    async fn configure(
        &self,
        room: &str,
        settings: &RoomSettings,
        now: Micros,
    ) -> Result<RoomView, StoreError> {
        let op = Op::Configure {
            room: room.to_owned(),
            settings: settings.clone(),
            now,
        };
        Ok(self.run(op)?.1)
    }

    async fn sync(&self, room: &str, now: Micros) -> Result<RoomView, StoreError> {
        Ok(self
            .run(Op::Sync {
                room: room.to_owned(),
                now,
            })?
            .1)
    }

    async fn arrive(&self, room: &str, now: Micros) -> Result<Arrival, StoreError> {
        match self.run(Op::Arrive {
            room: room.to_owned(),
            now,
        })? {
            (Outcome::Arrival { ticket, admitted }, view) => Ok(Arrival {
                ticket,
                admitted,
                view,
            }),
            _ => unreachable!("arrive always yields an arrival"),
        }
    }

    async fn arrive_paid(
        &self,
        room: &str,
        now: Micros,
        nonce: u64,
        expires: Micros,
    ) -> Result<Arrival, StoreError> {
        {
            let mut passing = self.passing();
            passing.sweep(now);
            let key = (room.to_owned(), nonce);
            if passing.spent.get(&key).is_some_and(|e| *e >= now) {
                return Err(StoreError::Spent);
            }
            passing.spent.insert(key, expires);
        }
        self.arrive(room, now).await
    }

    async fn bind_pass(
        &self,
        room: &str,
        pass: u64,
        networks: &[u64],
        max: u32,
        until: Micros,
        now: Micros,
    ) -> Result<bool, StoreError> {
        let mut passing = self.passing();
        passing.sweep(now);
        let (kept_until, known) = passing
            .bound
            .entry((room.to_owned(), pass))
            .or_insert_with(|| (until, Vec::new()));
        if *kept_until <= now {
            known.clear();
        }
        for network in networks {
            if !known.contains(network) {
                if known.len() >= max as usize {
                    return Ok(false);
                }
                known.push(*network);
            }
        }
        *kept_until = until;
        Ok(true)
    }

    async fn use_invite(
        &self,
        room: &str,
        invite: u64,
        uses: u32,
        until: Micros,
        now: Micros,
    ) -> Result<bool, StoreError> {
        let mut passing = self.passing();
        passing.sweep(now);
        let (kept_until, used) = passing
            .invites
            .entry((room.to_owned(), invite))
            .or_insert((until, 0));
        if *kept_until <= now {
            *used = 0;
        }
        *kept_until = until;
        if *used >= uses {
            return Ok(false);
        }
        *used += 1;
        Ok(true)
    }

    async fn claim(
        &self,
        room: &str,
        epoch: u64,
        ticket: u64,
        now: Micros,
    ) -> Result<(Claim, RoomView), StoreError> {
        match self.run(Op::Claim {
            room: room.to_owned(),
            epoch,
            ticket,
            now,
        })? {
            (Outcome::Claim(claim), view) => Ok((claim, view)),
            _ => unreachable!("claim always yields a claim"),
        }
    }

    async fn come_back(
        &self,
        room: &str,
        epoch: u64,
        ticket: u64,
        phase: Micros,
        now: Micros,
    ) -> Result<(Claim, RoomView), StoreError> {
        match self.run(Op::ComeBack {
            room: room.to_owned(),
            epoch,
            ticket,
            phase,
            now,
        })? {
            (Outcome::Claim(claim), view) => Ok((claim, view)),
            _ => unreachable!("a return always yields a claim"),
        }
    }

    async fn enter_draw(
        &self,
        room: &str,
        epoch: u64,
        id: u64,
        phase: Micros,
        now: Micros,
    ) -> Result<(Entry, RoomView), StoreError> {
        match self.run(Op::EnterDraw {
            room: room.to_owned(),
            epoch,
            id,
            phase,
            now,
        })? {
            (Outcome::Entry(entry), view) => Ok((entry, view)),
            _ => unreachable!("an entry always yields an entry"),
        }
    }

    /// The in-process store is never unreachable in a way that lets some
    /// visitors through and not others, so a promise simply takes the next
    /// place; asked again, the same one.
    async fn arrive_pending(
        &self,
        room: &str,
        member: &str,
        _arrival_millis: u64,
        now: Micros,
    ) -> Result<Option<Arrival>, StoreError> {
        let key = (room.to_owned(), member.to_owned());
        let known = {
            let mut passing = self.passing();
            passing.sweep(now);
            passing.promised.get(&key).map(|(_, ticket)| *ticket)
        };
        if let Some(ticket) = known {
            let view = self.sync(room, now).await?;
            let (claim, view) = if ticket <= view.frontier {
                self.claim(room, view.epoch, ticket, now).await?
            } else {
                (Claim::NotYet, view)
            };
            return Ok(Some(Arrival {
                ticket,
                admitted: matches!(claim, Claim::Admitted { .. }),
                view,
            }));
        }
        let arrival = self.arrive(room, now).await?;
        let day = 24 * 3600 * crate::clock::MICROS_PER_SECOND;
        self.passing()
            .promised
            .insert(key, (now + day, arrival.ticket));
        Ok(Some(arrival))
    }

    async fn update(
        &self,
        room: &str,
        change: &SettingsChange,
        now: Micros,
    ) -> Result<RoomView, StoreError> {
        let op = Op::Update {
            room: room.to_owned(),
            change: change.clone(),
            now,
        };
        Ok(self.run(op)?.1)
    }

    async fn reset(&self, room: &str, now: Micros) -> Result<RoomView, StoreError> {
        Ok(self
            .run(Op::Reset {
                room: room.to_owned(),
                now,
            })?
            .1)
    }

    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.append(&Op::Record {
            entry: entry.clone(),
        })?;
        inner.apply_record(entry);
        Ok(())
    }

    async fn give(
        &self,
        room: &str,
        at: Micros,
        now: Micros,
    ) -> Result<(u64, RoomView), StoreError> {
        match self.run(Op::Give {
            room: room.to_owned(),
            at,
            now,
        })? {
            (Outcome::Arrival { ticket, .. }, view) => Ok((ticket, view)),
            _ => unreachable!("a give always says how many"),
        }
    }

    async fn receive(
        &self,
        room: &str,
        from: &str,
        at: Micros,
        amount: u64,
        now: Micros,
    ) -> Result<RoomView, StoreError> {
        Ok(self
            .run(Op::Receive {
                room: room.to_owned(),
                from: from.to_owned(),
                at,
                amount,
                now,
            })?
            .1)
    }

    async fn drawn(&self, room: &str) -> Result<(Micros, Vec<(u64, u64)>), StoreError> {
        let inner = self.lock();
        let counters = &inner
            .rooms
            .get(room)
            .ok_or_else(|| StoreError::UnknownRoom(room.to_owned()))?
            .counters;
        let mut list: Vec<(u64, u64)> = counters.drawn.iter().map(|(id, t)| (*id, *t)).collect();
        list.sort_by_key(|(_, ticket)| *ticket);
        Ok((counters.drawn_phase, list))
    }

    async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let inner = self.lock();
        let skip = inner.audit.len().saturating_sub(limit);
        Ok(inner.audit.iter().skip(skip).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MICROS_PER_SECOND;

    const START: Micros = 1_800_000_000 * MICROS_PER_SECOND;

    fn settings() -> RoomSettings {
        RoomSettings {
            admit_per_minute: 60,
            burst: 1,
            quota: Some(100),
            paused: false,
            claim_seconds: 600,
            pass_seconds: 1200,
            phases: Vec::new(),
            live_rate: false,
            draw_secret: String::new(),
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_state_file_and_journal_are_its_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_state("private");
        let store = MemoryStore::open(&path).unwrap();
        store
            .generated_key(|| StoredKey {
                id: "auto".into(),
                secret: "c2VjcmV0".into(),
            })
            .unwrap();
        for file in [path.clone(), journal_path(&path)] {
            let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
    }

    fn temp_state(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("antre-memory-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("state.json")
    }

    async fn drive(store: &MemoryStore) -> RoomView {
        store.configure("vaksin", &settings(), START).await.unwrap();
        for i in 0..50 {
            store.arrive("vaksin", START + i * 1000).await.unwrap();
        }
        for s in 1..=10 {
            let now = START + s * MICROS_PER_SECOND;
            store.sync("vaksin", now).await.unwrap();
            store.claim("vaksin", 1, s + 1, now).await.unwrap();
        }
        store
            .sync("vaksin", START + 11 * MICROS_PER_SECOND)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_killed_process_loses_nothing() {
        let path = temp_state("killed");
        let before = {
            let store = MemoryStore::open(&path).unwrap();
            drive(&store).await
            // Dropped without flush: as if the process were killed.
        };
        assert_eq!(before.tail, 50);
        assert_eq!(before.admitted, 11);
        let store = MemoryStore::open(&path).unwrap();
        let after = store.sync("vaksin", before.at).await.unwrap();
        assert_eq!(after, before);
        // Numbering goes on where it stopped: nobody's place is handed out twice.
        let next = store.arrive("vaksin", before.at).await.unwrap();
        assert_eq!(next.ticket, 51);
        // A ticket exchanged before the restart is still not counted twice.
        let (claim, view) = store.claim("vaksin", 1, 5, before.at).await.unwrap();
        assert_eq!(claim, Claim::Admitted { fresh: false });
        assert_eq!(view.admitted, 11);
    }

    #[tokio::test]
    async fn the_audit_trail_survives_a_kill_and_a_clean_stop() {
        let path = temp_state("audit");
        let entry = |who: &str| AuditEntry {
            at: 1_800_000_000,
            who: who.into(),
            room: "vaksin".into(),
            change: serde_json::json!({"paused": true}),
        };
        {
            let store = MemoryStore::open(&path).unwrap();
            store.configure("vaksin", &settings(), START).await.unwrap();
            store.record(&entry("ani")).await.unwrap();
            // Killed: only the journal holds it.
        }
        {
            let store = MemoryStore::open(&path).unwrap();
            assert_eq!(store.audit(10).await.unwrap(), vec![entry("ani")]);
            store.record(&entry("budi")).await.unwrap();
            store.flush().unwrap();
        }
        let store = MemoryStore::open(&path).unwrap();
        assert_eq!(
            store.audit(10).await.unwrap(),
            vec![entry("ani"), entry("budi")]
        );
    }

    #[tokio::test]
    async fn a_torn_last_journal_line_is_ignored() {
        let path = temp_state("torn");
        let before = {
            let store = MemoryStore::open(&path).unwrap();
            drive(&store).await
        };
        let mut journal = OpenOptions::new()
            .append(true)
            .open(journal_path(&path))
            .unwrap();
        journal.write_all(br#"{"seq":99999,"op":"arr"#).unwrap();
        let store = MemoryStore::open(&path).unwrap();
        assert_eq!(store.sync("vaksin", before.at).await.unwrap(), before);
    }

    #[tokio::test]
    async fn a_damaged_line_with_more_after_it_stops_the_start() {
        let path = temp_state("damaged");
        {
            let store = MemoryStore::open(&path).unwrap();
            drive(&store).await;
        }
        let journal = fs::read_to_string(journal_path(&path)).unwrap();
        let mut lines: Vec<&str> = journal.lines().collect();
        lines[3] = "{\"seq\":4,\"op\":\"arr";
        fs::write(journal_path(&path), lines.join("\n") + "\n").unwrap();
        let error = MemoryStore::open(&path).err().unwrap().to_string();
        assert!(error.contains("line 4 is damaged"), "{error}");
        // Nothing was overwritten: the operator can still look.
        assert!(fs::read_to_string(journal_path(&path))
            .unwrap()
            .contains("\"arr\n"));
    }

    #[tokio::test]
    async fn a_crash_between_snapshot_and_journal_truncation_replays_nothing_twice() {
        let path = temp_state("twice");
        let store = MemoryStore::open(&path).unwrap();
        let before = drive(&store).await;
        let journal = fs::read(journal_path(&path)).unwrap();
        assert!(!journal.is_empty());
        store.flush().unwrap();
        drop(store);
        // Put the already-folded lines back, as if truncation never happened.
        fs::write(journal_path(&path), journal).unwrap();
        let store = MemoryStore::open(&path).unwrap();
        assert_eq!(store.sync("vaksin", before.at).await.unwrap(), before);
    }

    #[tokio::test]
    async fn the_generated_key_is_kept() {
        let path = temp_state("key");
        let first = MemoryStore::open(&path)
            .unwrap()
            .generated_key(|| StoredKey {
                id: "auto".into(),
                secret: "c2VjcmV0".into(),
            })
            .unwrap();
        assert!(first.1, "made on first start");
        let second = MemoryStore::open(&path)
            .unwrap()
            .generated_key(|| unreachable!("the kept key is used"))
            .unwrap();
        assert_eq!(second, (first.0, false));
    }

    #[test]
    fn the_generated_key_can_be_read_while_the_store_is_open() {
        let path = temp_state("read-key");
        assert_eq!(read_stored_key(&path).unwrap(), None, "no state file yet");
        let store = MemoryStore::open(&path).unwrap();
        assert_eq!(read_stored_key(&path).unwrap(), None, "no key made yet");
        let (made, _) = store
            .generated_key(|| StoredKey {
                id: "auto".into(),
                secret: "c2VjcmV0".into(),
            })
            .unwrap();
        // The store holds its lock; reading needs none.
        assert_eq!(read_stored_key(&path).unwrap(), Some(made.clone()));
        assert_eq!(made.secret_bytes().unwrap(), b"secret");
        fs::write(&path, "{}").unwrap();
        assert!(read_stored_key(&path).is_err());
    }

    #[test]
    fn two_processes_cannot_share_a_state_file() {
        let path = temp_state("shared");
        let first = MemoryStore::open(&path).unwrap();
        let error = MemoryStore::open(&path).err().unwrap().to_string();
        assert!(error.contains("another antre process"), "{error}");
        drop(first);
        assert!(
            MemoryStore::open(&path).is_ok(),
            "free again once the first is gone"
        );
    }

    #[test]
    fn a_corrupt_state_file_is_refused_not_overwritten() {
        let path = temp_state("corrupt");
        fs::write(&path, "not json").unwrap();
        let error = MemoryStore::open(&path).err().unwrap().to_string();
        assert!(
            error.contains("state.json") && error.contains("not a valid antre state file"),
            "{error}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "not json");
    }
}
