//! Where time comes from. Queue maths and token expiry read an injected
//! [`Clock`], never the system clock, so tests can step time by hand. Also
//! the calendar: Unix times to dates and back, for certificates, schedules
//! and headers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub type Micros = u64;

pub const MICROS_PER_SECOND: u64 = 1_000_000;

/// Milliseconds on the kernel's coarse monotonic clock: the time of its
/// last tick (a few milliseconds behind at most), read without asking the
/// hardware, so about a fifth of the cost of `Instant::now`. For stamps
/// that deadlines of seconds are counted from, not for measuring.
pub fn coarse_millis() -> u64 {
    nanos(libc::CLOCK_MONOTONIC_COARSE, libc::CLOCK_MONOTONIC) / 1_000_000
}

/// Whole seconds since the Unix epoch on the kernel's coarse clock (see
/// [`coarse_millis`]): for a `Date` field.
pub fn coarse_unix_seconds() -> u64 {
    nanos(libc::CLOCK_REALTIME_COARSE, libc::CLOCK_REALTIME) / 1_000_000_000
}

/// Nanoseconds on `coarse`, or on `precise` where the kernel lacks it.
fn nanos(coarse: libc::clockid_t, precise: libc::clockid_t) -> u64 {
    read(coarse).or_else(|| read(precise)).unwrap_or(0)
}

/// Nanoseconds on `clock`; `None` when the kernel has no such clock.
fn read(clock: libc::clockid_t) -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to write.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64)
}

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

// === calendar ===

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date (year, month, day) `days` after 1970-01-01; the inverse of
/// [`days_from_civil`]. Counted in 400-year eras (146,097 days each, the
/// calendar's full cycle) of years that start on 1 March, so the leap day
/// falls at the end of a year and needs no special case.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // 1970-01-01 is day 719,468 counted from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    // Every 4 years a leap day, except every 100, except every 400.
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March, whose lengths repeat 31 30 31 30 31 every five.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// A Unix time as `2026-11-30 19:05 UTC`.
pub fn utc(unix: i64) -> String {
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    let seconds = unix.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        seconds / 3_600,
        seconds % 3_600 / 60
    )
}

/// A Unix time in the zone `offset_minutes` east of UTC, to the minute:
/// `2021-07-12 08:00 +07:00`.
pub fn local_time(unix_seconds: i64, offset_minutes: i32) -> String {
    let local = unix_seconds + i64::from(offset_minutes) * 60;
    let (year, month, day) = civil_from_days(local.div_euclid(86_400));
    let of_day = local.rem_euclid(86_400);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let offset = offset_minutes.unsigned_abs();
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} {sign}{:02}:{:02}",
        of_day / 3_600,
        of_day % 3_600 / 60,
        offset / 60,
        offset % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clocks_follow_the_precise_ones() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let coarse = coarse_unix_seconds();
        assert!(
            coarse + 1 >= wall && coarse <= wall + 1,
            "{coarse} against {wall}"
        );

        let started = std::time::Instant::now();
        let first = coarse_millis();
        std::thread::sleep(std::time::Duration::from_millis(60));
        let second = coarse_millis();
        let slept = started.elapsed().as_millis() as u64;
        // A tick behind at most (10 ms at the slowest kernel tick rate).
        assert!(
            second >= first + 60 - 20 && second <= first + slept + 20,
            "{first} {second} {slept}"
        );
    }

    #[test]
    fn dates_round_trip_and_print_in_a_zone() {
        for days in [-800_000, -1, 0, 1, 11_016, 18_820, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        // 2021-07-12 01:00 UTC is 08:00 in Jakarta.
        let at = days_from_civil(2021, 7, 12) * 86_400 + 3_600;
        assert_eq!(local_time(at, 420), "2021-07-12 08:00 +07:00");
        assert_eq!(local_time(at, -210), "2021-07-11 21:30 -03:30");
        assert_eq!(local_time(at, 0), "2021-07-12 01:00 +00:00");
    }
}
