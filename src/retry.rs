//! The retry loop behind [`crate::Db::run`] and [`crate::TxBuilder::run`].
//!
//! On a retryable error it backs off with full jitter and, for a conflict, waits until the
//! winning commit is visible: a retry that began before the winner was published would take a
//! snapshot without it and lose again.

use crate::db::Db;
use crate::error::{Error, Result};
use crate::tx::{RetryPolicy, Transaction};
use rand::Rng;
use std::time::{Duration, Instant};

pub(crate) fn run<T>(
    db: &Db,
    policy: &RetryPolicy,
    mut begin: impl FnMut() -> Result<Transaction>,
    mut f: impl FnMut(&mut Transaction) -> Result<T>,
) -> Result<T> {
    let started = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let mut tx = begin()?;
        let err = match f(&mut tx) {
            Ok(value) => match tx.commit() {
                Ok(_) => return Ok(value),
                Err(e) => e,
            },
            Err(e) => {
                drop(tx);
                e
            }
        };
        if !err.is_retryable() {
            return Err(err);
        }
        if attempt >= policy.max_attempts || started.elapsed() >= policy.max_elapsed {
            return Err(Error::RetriesExhausted {
                attempts: attempt,
                last: Box::new(err),
            });
        }
        if let Some(report) = err.conflict() {
            db.wait_for_version(report.winner, policy.max_backoff);
        }
        std::thread::sleep(backoff(policy, attempt));
    }
}

/// A random duration up to the attempt's ceiling.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let ceiling = policy
        .base_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(policy.max_backoff);
    let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let p = RetryPolicy {
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(8),
            ..RetryPolicy::default()
        };
        for attempt in 1..40 {
            let b = backoff(&p, attempt);
            let ceiling = Duration::from_millis(1 << (attempt - 1).min(3));
            assert!(b <= ceiling, "attempt {attempt}: {b:?} > {ceiling:?}");
        }
    }
}
