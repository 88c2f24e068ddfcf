//! What the engine keeps, beside the store, so that one person holds one
//! place: the budget of free tickets per client network and room, and each
//! pass's request rate and the networks it has been used from. Bounded in
//! memory ([`crate::limit`]); one per process, handed from each config
//! generation to the next, so a reload forgets nobody's budget.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{Histogram, IntCounterVec};

use crate::clock::{Micros, MICROS_PER_SECOND};
use crate::config::MAX_NETWORKS_PER_PASS;
use crate::limit::{Limiter, Network};

/// Keys held per limiter: past this the quietest go first (see
/// [`Limiter`]). At about a hundred bytes a key, a few megabytes at most.
const KEYS: usize = 65_536;

/// A pass's networks and rate are remembered this long after its last
/// request, so a visitor reading a long form keeps them.
const PASS_KEEP: Micros = 30 * 60 * MICROS_PER_SECOND;

/// How often quiet budgets are swept (and counted in the histogram).
const SWEEP_EVERY: Micros = 5 * MICROS_PER_SECOND;

/// The networks one pass has been seen from on this instance: those the
/// store allowed, and the last few it refused (so a shared pass hammered
/// from elsewhere costs no store call per request).
#[derive(Debug, Clone, Copy, Default)]
pub struct PassSeen {
    allowed: [u64; MAX_NETWORKS_PER_PASS],
    allowed_len: u8,
    refused: [u64; 4],
    refused_next: u8,
}

/// What this instance knows about a pass used from one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Allowed,
    Refused,
    /// Not seen here from this network: the store decides.
    Unknown,
}

impl PassSeen {
    pub fn seen(&self, network: u64) -> Seen {
        if self.allowed[..usize::from(self.allowed_len)].contains(&network) {
            Seen::Allowed
        } else if network != 0 && self.refused.contains(&network) {
            Seen::Refused
        } else {
            Seen::Unknown
        }
    }

    /// How many networks this pass is known here to have been used from:
    /// those the store allowed, and `own`, the one it was issued to (0
    /// when unknown).
    pub fn known(&self, own: u64) -> usize {
        let allowed = &self.allowed[..usize::from(self.allowed_len)];
        allowed.len() + usize::from(own != 0 && !allowed.contains(&own))
    }

    pub fn allow(&mut self, network: u64) {
        let len = usize::from(self.allowed_len);
        if len < self.allowed.len() && !self.allowed[..len].contains(&network) {
            self.allowed[len] = network;
            self.allowed_len += 1;
        }
    }

    pub fn refuse(&mut self, network: u64) {
        let slot = usize::from(self.refused_next) % self.refused.len();
        self.refused[slot] = network;
        self.refused_next = self.refused_next.wrapping_add(1);
    }
}

/// Counters the engine bumps; registered by [`crate::metrics`].
#[derive(Clone)]
pub struct ShieldMetrics {
    /// By room and result: `issued`, `solved`, `failed`.
    pub challenges: IntCounterVec,
    /// By room and reason: `networks`, `rate`, `ticket_spent`.
    pub refusals: IntCounterVec,
    /// Tickets one network took while it was active.
    pub tickets_per_address: Histogram,
}

pub struct Shields {
    /// Free tickets taken, per (room, network).
    pub budget: Limiter<(u64, Network)>,
    /// Requests and networks, per (room, pass id).
    pub passes: Limiter<(u64, u64), PassSeen>,
    /// When each allow-listed network was last logged, per room.
    pub bypasses: Limiter<(u64, Network)>,
    pub metrics: Option<ShieldMetrics>,
    last_sweep: AtomicU64,
}

impl Default for Shields {
    fn default() -> Self {
        Shields::new(None)
    }
}

impl Shields {
    pub fn new(metrics: Option<ShieldMetrics>) -> Shields {
        Shields {
            budget: Limiter::new(KEYS, 0),
            passes: Limiter::new(KEYS, PASS_KEEP),
            bypasses: Limiter::new(4096, 0),
            metrics,
            last_sweep: AtomicU64::new(0),
        }
    }

    /// Counts the tickets of networks whose budgets were forgotten.
    pub fn forgotten(&self, counts: &[u32]) {
        if let Some(metrics) = &self.metrics {
            for count in counts {
                if *count > 0 {
                    metrics.tickets_per_address.observe(f64::from(*count));
                }
            }
        }
    }

    /// Forgets quiet keys, at most every few seconds whoever asks.
    pub fn sweep(&self, now: Micros) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now < last + SWEEP_EVERY
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let counts = self.budget.sweep(now);
        self.forgotten(&counts);
        self.passes.sweep(now);
        self.bypasses.sweep(now);
    }

    pub fn challenge(&self, room: &str, result: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.challenges.with_label_values(&[room, result]).inc();
        }
    }

    pub fn refusal(&self, room: &str, reason: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.refusals.with_label_values(&[room, reason]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_remembers_what_the_store_said() {
        let mut seen = PassSeen::default();
        assert_eq!(seen.seen(7), Seen::Unknown);
        seen.allow(7);
        seen.allow(7);
        assert_eq!(seen.seen(7), Seen::Allowed);
        assert_eq!(seen.allowed_len, 1);
        for n in 100..110 {
            seen.refuse(n);
        }
        // The last few refusals are remembered; older ones ask again.
        assert_eq!(seen.seen(109), Seen::Refused);
        assert_eq!(seen.seen(100), Seen::Unknown);
    }

    #[test]
    fn a_pass_knows_how_many_networks_it_has() {
        let mut seen = PassSeen::default();
        assert_eq!(seen.known(0), 0);
        assert_eq!(seen.known(5), 1, "its own network");
        seen.allow(7);
        assert_eq!(seen.known(5), 2);
        // Its own network allowed again (a second exchange) counts once.
        seen.allow(5);
        assert_eq!(seen.known(5), 2);
    }
}
