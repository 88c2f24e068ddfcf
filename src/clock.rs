//! Where time comes from. Queue maths and token expiry read an injected
//! [`Clock`], never the system clock, so tests can step time by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub type Micros = u64;

pub const MICROS_PER_SECOND: u64 = 1_000_000;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> Micros;

    /// Whole seconds since the Unix epoch, as cookies carry them.
    fn now_seconds(&self) -> u64 {
        self.now_micros() / MICROS_PER_SECOND
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> Micros {
        // A clock set before 1970 is a broken machine; treat it as the epoch
        // rather than panic on the request path.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to; shared between a test and the code
/// under test through `Arc`.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    pub fn new(start: Micros) -> Arc<Self> {
        Arc::new(ManualClock {
            now: AtomicU64::new(start),
        })
    }

    pub fn set(&self, now: Micros) {
        self.now.store(now, Ordering::SeqCst);
    }

    pub fn advance_micros(&self, by: u64) {
        self.now.fetch_add(by, Ordering::SeqCst);
    }

    pub fn advance_seconds(&self, by: u64) {
        self.advance_micros(by * MICROS_PER_SECOND);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> Micros {
        self.now.load(Ordering::SeqCst)
    }
}
