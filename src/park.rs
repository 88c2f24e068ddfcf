//! Quiet connections, held outside hyper until their client speaks again
//! (HTTP/2 ones with what [`crate::frames`] kept of their state).
//!
//! A waiting room's connections spend nearly all their life idle: a tab
//! polls every few seconds and keeps its connection open in between. Inside
//! hyper an idle connection keeps its read and write buffers, its header
//! map and a task; here it keeps a socket and its place in the connection
//! counts, about a hundred bytes.
//!
//! Once a connection has been quiet for [`QUIET`], its driving task asks
//! hyper to let go of it (a graceful shutdown that leaves the socket open),
//! takes back the socket and any bytes hyper had read but not used, and
//! hands them here. The lot watches every parked socket with one epoll set
//! of its own (itself watched by the runtime), so a parked connection has
//! no task, no timer and no registration with the runtime. When its client
//! sends again (or closes), it goes back to a fresh hyper connection, the
//! leftover bytes first. Its idle timeout is kept by one wheel for the whole
//! lot, one-second buckets, checked only when a bucket falls due.
//!
//! A plain socket leaves the runtime while parked; a TLS one keeps its
//! session state (it cannot be rebuilt) but drops hyper's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long a connection is quiet (nothing in flight, nothing read) before
/// it leaves hyper. Short, so that a waiting visitor's connection spends
/// its seconds between polls here; long enough that a busy keep-alive
/// client (a page and its assets, a load test) never leaves hyper.
pub const QUIET: Duration = Duration::from_secs(1);

/// Events taken from the epoll set at once.
const BATCH: usize = 256;

/// The memory connections freed is handed back to the system once they
/// have been still for [`TRIM_AFTER`], or while this many or more keep
/// coming and going, once every [`TRIM_AFTER`].
const TRIM_MOVES: usize = 256;
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// Hands memory freed on the heap back to the system. glibc's allocator
/// keeps what a crowd of connections freed (most of it is in the middle of
/// the heap, which it never trims itself), so a process that once held
/// 20,000 connections would stay that large after they left.
fn give_back_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free pages of the allocator's own.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A TLS connection's stream.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// A parked connection's socket.
pub enum Socket {
    /// Out of the runtime: a bare socket.
    Plain(std::net::TcpStream),
    /// Still registered with the runtime, its TLS session kept.
    Tls(Box<TlsStream>),
}

impl Socket {
    fn fd(&self) -> RawFd {
        match self {
            Socket::Plain(s) => s.as_raw_fd(),
            Socket::Tls(s) => s.get_ref().0.as_raw_fd(),
        }
    }
}

/// One connection waiting outside hyper.
pub struct Parked<S> {
    pub socket: Socket,
    pub addr: SocketAddr,
    /// Bytes hyper had read and not used (the start of a next request).
    pub leftover: Bytes,
    /// When it is closed if its client has said nothing more.
    pub idle_until: Instant,
    /// Its place in the listener's connection counts, given back on close,
    /// and what else its protocol keeps.
    pub slot: S,
}

/// What a parked connection says before the lot closes it.
pub trait Farewell {
    /// Bytes written, as far as the socket takes them at once, before a
    /// plain connection is closed for idleness or shutdown (HTTP/2's
    /// GOAWAY). None by default.
    fn farewell(&self) -> Option<Vec<u8>> {
        None
    }
}

impl<S> Parked<S> {
    /// Whether its client has closed with nothing left to read (a plain
    /// socket; a TLS one may have a closing alert to read).
    fn hung_up(&self, events: u32) -> bool {
        let closed = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        match &self.socket {
            Socket::Plain(socket) if events & closed != 0 => {
                matches!(socket.peek(&mut [0u8; 1]), Ok(0) | Err(_))
            }
            _ => false,
        }
    }
}

impl<S: Farewell> Parked<S> {
    /// Closes it, saying its farewell first.
    fn close(self) {
        if let (Socket::Plain(socket), Some(farewell)) = (&self.socket, self.slot.farewell()) {
            use std::io::Write as _;
            let _ = (&*socket).write(&farewell);
        }
    }
}

/// Where connection tasks hand their quiet connections.
pub struct Lot<S> {
    tx: mpsc::UnboundedSender<Parked<S>>,
}

impl<S> Clone for Lot<S> {
    fn clone(&self) -> Self {
        Lot {
            tx: self.tx.clone(),
        }
    }
}

impl<S: Farewell + Send + 'static> Lot<S> {
    /// Opens a lot whose connections go to `resume` when their client
    /// speaks again, and are all closed when `shutdown` flips. `None` when
    /// the system gives no epoll set (connections then stay in hyper).
    pub fn open(
        resume: impl Fn(Parked<S>) + Send + 'static,
        shutdown: watch::Receiver<bool>,
    ) -> Option<Lot<S>> {
        // SAFETY: epoll_create1 takes flags and returns a new descriptor
        // or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "no epoll set: idle connections stay in hyper");
            return None;
        }
        // SAFETY: a descriptor just created, owned by nothing else.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the set stays open, owned by the AsyncFd, until the
        // AsyncFd is dropped.
        let registered =
            unsafe { AsyncFd::register_with_interest(epoll, tokio::io::Interest::READABLE) };
        let epoll = match registered {
            Ok(epoll) => epoll,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the epoll set: idle connections stay in hyper");
                return None;
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let lot = Waiting {
            epoll: epoll.get_ref().as_raw_fd(),
            slots: Vec::new(),
            free: Vec::new(),
            generation: 0,
            wheel: BTreeMap::new(),
            start: Instant::now(),
            moves: 0,
            trim_at: None,
        };
        tokio::spawn(lot.run(epoll, rx, resume, shutdown));
        Some(Lot { tx })
    }

    /// Hands `parked` to the lot; it comes back to the caller when the lot
    /// is gone (shutting down).
    pub fn park(&self, parked: Parked<S>) -> Result<(), Parked<S>> {
        self.tx.send(parked).map_err(|e| e.0)
    }
}

/// The lot's own state, owned by its task.
struct Waiting<S> {
    /// The epoll set, owned by the task's `AsyncFd`.
    epoll: RawFd,
    slots: Vec<Option<(u32, Parked<S>)>>,
    free: Vec<u32>,
    generation: u32,
    /// Deadline (whole seconds since `start`, rounded up) to the keys of
    /// the connections that fall due then; a key whose connection has
    /// left since is skipped.
    wheel: BTreeMap<u64, Vec<u64>>,
    start: Instant,
    /// Connections parked, resumed or closed since memory was last given
    /// back, and when it is given back next.
    moves: usize,
    trim_at: Option<Instant>,
}

fn key(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

impl<S: Farewell> Waiting<S> {
    async fn run(
        mut self,
        epoll: AsyncFd<OwnedFd>,
        mut incoming: mpsc::UnboundedReceiver<Parked<S>>,
        resume: impl Fn(Parked<S>),
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; BATCH];
        loop {
            let next = self
                .wheel
                .first_key_value()
                .map(|(second, _)| self.start + Duration::from_secs(*second));
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => break,
                parked = incoming.recv() => match parked {
                    Some(parked) => {
                        if let Err(parked) = self.park(parked) {
                            resume(parked);
                        }
                    }
                    None => break,
                },
                ready = epoll.readable() => {
                    let Ok(mut guard) = ready else { break };
                    loop {
                        // SAFETY: `events` has room for BATCH entries; a
                        // timeout of 0 does not block.
                        let n = unsafe {
                            libc::epoll_wait(
                                self.epoll,
                                events.as_mut_ptr(),
                                BATCH as i32,
                                0,
                            )
                        };
                        if n <= 0 {
                            guard.clear_ready();
                            break;
                        }
                        for event in &events[..n as usize] {
                            if let Some(parked) = self.take(event.u64) {
                                if parked.hung_up(event.events) {
                                    // Its client closed and sent nothing:
                                    // closed here, no connection rebuilt
                                    // just to see the end.
                                    drop(parked);
                                } else {
                                    resume(parked);
                                }
                            }
                        }
                    }
                },
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.expire();
                }
                _ = tokio::time::sleep_until(self.trim_at.unwrap_or_else(Instant::now)), if self.trim_at.is_some() => {
                    self.trim_at = None;
                    self.moves = 0;
                    give_back_memory();
                }
            }
            if self.moves > 0 {
                // Once a second while many come and go; otherwise once
                // they have been still for a second.
                let later = Instant::now() + TRIM_AFTER;
                self.trim_at = Some(match self.trim_at {
                    Some(at) if self.moves >= TRIM_MOVES => at,
                    _ => later,
                });
            }
        }
        // Shutting down: the parked are idle, so closing is all they need.
        for (_, parked) in self.slots.drain(..).flatten() {
            parked.close();
        }
    }

    /// Adds `parked` to the set; gives it back if the system refuses it.
    fn park(&mut self, parked: Parked<S>) -> Result<(), Parked<S>> {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.generation = self.generation.wrapping_add(1);
        let key = key(index, self.generation);
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32,
            u64: key,
        };
        let fd = parked.socket.fd();
        // SAFETY: both descriptors are open; the event is read, not kept.
        let added = unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
        if added != 0 {
            self.free.push(index);
            return Err(parked);
        }
        let due = parked
            .idle_until
            .saturating_duration_since(self.start)
            .as_secs()
            + 1;
        self.wheel.entry(due).or_default().push(key);
        self.slots[index as usize] = Some((self.generation, parked));
        self.moves += 1;
        Ok(())
    }

    /// Takes the connection with `key` out of the set, if it is still
    /// there.
    fn take(&mut self, key: u64) -> Option<Parked<S>> {
        let index = key as u32;
        let generation = (key >> 32) as u32;
        let slot = self.slots.get_mut(index as usize)?;
        if !matches!(slot, Some((g, _)) if *g == generation) {
            return None;
        }
        let (_, parked) = slot.take()?;
        // SAFETY: both descriptors are open; a removal takes no event.
        unsafe {
            libc::epoll_ctl(
                self.epoll,
                libc::EPOLL_CTL_DEL,
                parked.socket.fd(),
                std::ptr::null_mut(),
            );
        }
        self.free.push(index);
        self.moves += 1;
        if self.free.len() == self.slots.len() && self.slots.len() > 64 {
            // Everyone left: give the table's memory back. Keys still in
            // the wheel name slots that are gone, and are skipped.
            self.slots = Vec::new();
            self.free = Vec::new();
        }
        Some(parked)
    }

    /// Closes the connections whose idle timeout has passed.
    fn expire(&mut self) {
        let now = Instant::now()
            .saturating_duration_since(self.start)
            .as_secs();
        while let Some(entry) = self.wheel.first_entry() {
            if *entry.key() > now {
                break;
            }
            for key in entry.remove() {
                // Closed: its place is given back.
                if let Some(parked) = self.take(key) {
                    parked.close();
                }
            }
        }
    }

    #[cfg(test)]
    fn parked(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    fn parked(server: std::net::TcpStream, idle: Duration, slot: u32) -> Parked<u32> {
        Parked {
            addr: server.peer_addr().unwrap(),
            socket: Socket::Plain(server),
            leftover: Bytes::new(),
            idle_until: Instant::now() + idle,
            slot,
        }
    }

    /// A test connection's place is its number, which it says last.
    impl Farewell for u32 {
        fn farewell(&self) -> Option<Vec<u8>> {
            Some(format!("bye {self}").into_bytes())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parked_connection_comes_back_when_its_client_speaks_and_closes_when_idle() {
        let resumed = Arc::new(Mutex::new(Vec::new()));
        let (stop, shutdown) = watch::channel(false);
        let seen = resumed.clone();
        let lot = Lot::open(
            move |p: Parked<u32>| seen.lock().unwrap().push((p.slot, p.socket)),
            shutdown,
        )
        .unwrap();

        let (mut talker, server) = pair();
        lot.park(parked(server, Duration::from_secs(60), 1))
            .ok()
            .unwrap();
        let (mut quiet, server) = pair();
        lot.park(parked(server, Duration::from_millis(10), 2))
            .ok()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(resumed.lock().unwrap().is_empty(), "nobody spoke yet");

        talker.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while resumed.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (slot, socket) = resumed.lock().unwrap().pop().unwrap();
        assert_eq!(slot, 1);
        let Socket::Plain(mut back) = socket else {
            panic!("a plain socket comes back plain")
        };
        // The bytes are still there for hyper to read.
        back.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 16];
        back.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"GET / HTTP/1.1\r\n");

        // One whose client closes is closed here, not given back to be
        // served (nothing would be).
        let (leaver, server) = pair();
        lot.park(parked(server, Duration::from_secs(60), 3))
            .ok()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(leaver);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(resumed.lock().unwrap().is_empty(), "closed, not resumed");

        // The quiet one is closed by the wheel within about a second.
        quiet
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut said = Vec::new();
        quiet.read_to_end(&mut said).unwrap();
        assert_eq!(said, b"bye 2", "its farewell, then closed by the lot");
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(resumed.lock().unwrap().is_empty(), "closed, not resumed");
        stop.send(true).unwrap();
    }

    #[tokio::test]
    async fn a_slot_reused_by_a_later_connection_is_not_closed_by_the_earlier_deadline() {
        // SAFETY: a new descriptor, owned here.
        let epoll = unsafe { OwnedFd::from_raw_fd(libc::epoll_create1(libc::EPOLL_CLOEXEC)) };
        let start = Instant::now();
        let mut lot: Waiting<u32> = Waiting {
            epoll: epoll.as_raw_fd(),
            slots: Vec::new(),
            free: Vec::new(),
            generation: 0,
            wheel: BTreeMap::new(),
            start,
            moves: 0,
            trim_at: None,
        };
        let (_a, server) = pair();
        lot.park(parked(server, Duration::ZERO, 1)).ok().unwrap();
        // It leaves (its client spoke) and another takes its slot.
        assert!(lot.take(key(0, 1)).is_some());
        let (_b, server) = pair();
        lot.park(parked(server, Duration::from_secs(60), 2))
            .ok()
            .unwrap();
        assert_eq!(lot.slots.len(), 1, "the slot is reused");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        lot.expire();
        assert_eq!(lot.parked(), 1, "the newcomer stays");

        // A crowd comes and goes: the table's memory goes with it, and a
        // key from before names nothing.
        let mut keys = Vec::new();
        let mut clients = Vec::new();
        for i in 0..100 {
            let (client, server) = pair();
            clients.push(client);
            let before = lot.generation;
            lot.park(parked(server, Duration::from_secs(60), i))
                .ok()
                .unwrap();
            let index = lot
                .slots
                .iter()
                .rposition(|s| matches!(s, Some((g, _)) if *g == before + 1))
                .unwrap();
            keys.push(key(index as u32, before + 1));
        }
        assert!(lot.take(key(0, 2)).is_some(), "the newcomer leaves");
        for k in &keys {
            assert!(lot.take(*k).is_some());
        }
        assert_eq!(lot.slots.capacity(), 0);
        assert!(lot.take(keys[0]).is_none());
        let (_c, server) = pair();
        lot.park(parked(server, Duration::from_secs(60), 7))
            .ok()
            .unwrap();
        assert_eq!(lot.parked(), 1);
    }
}
