//! Per-transaction settings: isolation level, concurrency mode, deadlines, label, retries.

use std::time::Duration;

/// How much a transaction is isolated from concurrent ones. See `docs/isolation.md` for the
/// anomalies each level prevents and the tests that show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Every read sees the newest committed version at the time of the read. No dirty reads
    /// or dirty writes; lost updates and read skew are possible. Commits do not check
    /// write-write conflicts (the last committer wins).
    ReadCommitted,
    /// One snapshot for the whole transaction; the first committer wins on write-write
    /// conflicts. Write skew is possible. The default.
    #[default]
    Snapshot,
    /// Snapshot reads, plus commit-time validation that nothing the transaction read (keys and
    /// scanned ranges, in every table) was changed by a commit after its snapshot. Commits are
    /// equivalent to running one at a time in commit-version order.
    Serializable,
}

/// How a retrying run ([`crate::Db::run`], [`crate::TxBuilder::run`]) retries.
///
/// Between attempts it sleeps a random time up to `base_backoff × 2^(attempt-1)` (capped at
/// `max_backoff`), "full jitter", and waits for the conflicting commit to become visible so the
/// next snapshot includes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts, the first included.
    pub max_attempts: u32,
    /// No new attempt starts after this much time since the first began.
    pub max_elapsed: Duration,
    /// Backoff ceiling of the first retry.
    pub base_backoff: Duration,
    /// Largest backoff ceiling.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 20,
            max_elapsed: Duration::from_secs(10),
            base_backoff: Duration::from_micros(200),
            max_backoff: Duration::from_millis(50),
        }
    }
}

/// Everything [`crate::TxBuilder`] can set.
#[derive(Debug, Clone, Default)]
pub(crate) struct TxConfig {
    pub isolation: Isolation,
    pub pessimistic: bool,
    pub timeout: Option<Duration>,
    pub read_only: bool,
    pub label: Option<String>,
    pub lock_timeout: Option<Duration>,
}
