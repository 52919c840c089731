//! The retention window: how far back [`crate::Db::read_at`] can read although no snapshot
//! pins the versions, by count ([`crate::Options::retain_versions`]) and by age
//! ([`crate::Options::retain_versions_for`]).
//!
//! For the age window the database samples `(time, visible version)` as commits are published
//! (at most one sample per 1/64 of the window). The retention floor is the newest sampled
//! version that was already visible at `now - window`: every version committed within the
//! window is above it. The first sample is taken at open with the recovered version, so
//! versions committed before the open are kept for a full window after it.
//!
//! Invariant: the floor returned never decreases below a floor returned earlier for the same
//! visible version sequence (samples only age), and is never above `visible`.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use vellum_storage::Version;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Retention {
    count: u64,
    window: Duration,
    samples: Mutex<VecDeque<(Instant, Version)>>,
}

impl Retention {
    pub fn new(count: u64, window: Duration, visible_at_open: Version) -> Retention {
        let mut samples = VecDeque::new();
        if !window.is_zero() {
            samples.push_back((Instant::now(), visible_at_open));
        }
        Retention {
            count,
            window,
            samples: Mutex::new(samples),
        }
    }

    /// Notes that `version` became visible now.
    pub fn record(&self, version: Version) {
        if self.window.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut s = self.samples.lock();
        if s.back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= self.window / 64)
        {
            s.push_back((now, version));
        }
    }

    /// The oldest version that must stay readable, given the newest visible one.
    pub fn floor(&self, visible: Version) -> Version {
        let by_count = Version(visible.0.saturating_sub(self.count));
        if self.window.is_zero() {
            return by_count;
        }
        let now = Instant::now();
        let mut s = self.samples.lock();
        // Drop samples older than the newest one that is already outside the window.
        while s.len() > 1
            && s.get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= self.window)
        {
            s.pop_front();
        }
        let by_age = match s.front() {
            Some((t, v)) if now.duration_since(*t) >= self.window => *v,
            // Nothing is old enough yet: keep everything from the first sample on.
            Some((_, v)) => (*v).min(visible),
            None => visible,
        };
        by_count.min(by_age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_window_keeps_the_last_n_versions() {
        let r = Retention::new(10, Duration::ZERO, Version(0));
        assert_eq!(r.floor(Version(25)), Version(15));
        assert_eq!(r.floor(Version(3)), Version(0));
    }

    #[test]
    fn the_age_window_keeps_everything_since_open_until_it_has_passed() {
        let r = Retention::new(0, Duration::from_secs(3600), Version(7));
        r.record(Version(8));
        r.record(Version(9));
        assert_eq!(
            r.floor(Version(9)),
            Version(7),
            "an hour has not passed since open"
        );
    }

    #[test]
    fn the_age_window_moves_once_samples_are_old_enough() {
        let r = Retention::new(0, Duration::from_millis(1), Version(7));
        std::thread::sleep(Duration::from_millis(5));
        r.record(Version(12));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(r.floor(Version(12)), Version(12));
    }
}
