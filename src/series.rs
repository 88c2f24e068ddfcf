//! Recent history of each room and of the origin, sampled in the
//! background for the dashboard's charts, so a dashboard opened mid-event
//! draws the last minutes at once instead of starting blank.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::clock::MICROS_PER_SECOND;
use crate::engine::Engine;
use crate::store::AnyStore;

/// Time between samples.
pub const STEP: Duration = Duration::from_secs(2);

/// Samples kept: fifteen minutes.
pub const KEEP: usize = 450;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OriginPoint {
    /// Unix seconds.
    pub at: u64,
    /// Mean time to the origin's response headers over the step, in
    /// milliseconds; `None` when the origin served nothing in it.
    pub ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RoomPoint {
    /// Unix seconds.
    pub at: u64,
    pub waiting: u64,
    /// Admissions over the minute up to `at`.
    pub admitted_per_minute: u64,
}

#[derive(Default)]
struct Inner {
    origin: VecDeque<OriginPoint>,
    rooms: BTreeMap<String, VecDeque<RoomPoint>>,
    /// The origin histogram's (sum, count) at the last sample.
    origin_totals: (f64, u64),
}

/// Shared by every config generation, so a reload keeps the history.
#[derive(Default)]
pub struct Series {
    /// A std `Mutex`: nothing is awaited while it is held.
    inner: Mutex<Inner>,
}

/// What [`Series::snapshot`] returns: the body of `GET /api/series`.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub step_seconds: u64,
    pub origin: Vec<OriginPoint>,
    pub rooms: BTreeMap<String, Vec<RoomPoint>>,
}

impl Series {
    /// Takes one sample of every room in `engine` and of the origin's
    /// response time (`origin_sum` seconds over `origin_count` responses,
    /// both totals since start). Rooms no longer configured are dropped.
    pub fn sample(&self, engine: &Engine<AnyStore>, origin_sum: f64, origin_count: u64) {
        let now = engine.clock().now_micros();
        let at = now / MICROS_PER_SECOND;
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (last_sum, last_count) = inner.origin_totals;
        let served = origin_count.saturating_sub(last_count);
        let ms = (served > 0).then(|| (origin_sum - last_sum).max(0.0) * 1000.0 / served as f64);
        inner.origin_totals = (origin_sum, origin_count);
        push(&mut inner.origin, OriginPoint { at, ms });

        inner
            .rooms
            .retain(|id, _| engine.rooms().iter().any(|r| &r.config.id == id));
        for room in engine.rooms() {
            let view = room.view();
            let point = RoomPoint {
                at,
                waiting: view.tail.saturating_sub(view.projected_frontier(now)),
                admitted_per_minute: room.admitted_last_minute(),
            };
            push(
                inner.rooms.entry(room.config.id.clone()).or_default(),
                point,
            );
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Snapshot {
            step_seconds: STEP.as_secs(),
            origin: inner.origin.iter().copied().collect(),
            rooms: inner
                .rooms
                .iter()
                .map(|(id, points)| (id.clone(), points.iter().copied().collect()))
                .collect(),
        }
    }
}

fn push<T>(points: &mut VecDeque<T>, point: T) {
    points.push_back(point);
    while points.len() > KEEP {
        points.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_keeps_the_newest() {
        let mut points = VecDeque::new();
        for at in 0..(KEEP as u64 + 10) {
            push(&mut points, at);
        }
        assert_eq!(points.len(), KEEP);
        assert_eq!(points.front(), Some(&10));
    }
}
