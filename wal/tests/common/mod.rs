//! Helpers shared by the integration tests of `vellum-wal`. Every test runs on [`SimFs`], so
//! nothing touches the real disk and crashes are deterministic (seeded).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use vellum_fs::{FileSystem, SimFs, SimOptions};
use vellum_wal::{Lsn, Record, SyncPolicy, Wal, WalOptions};

/// Result type of every test.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The log directory used by every test.
pub fn dir() -> PathBuf {
    PathBuf::from("/db/wal")
}

/// A simulated file system with the given crash behaviour.
pub fn sim(seed: u64, keep_unsynced: bool, tear: bool) -> SimFs {
    SimFs::new(SimOptions {
        seed,
        keep_unsynced,
        tear,
    })
}

/// A simulated file system that drops every unsynced byte at a restart.
pub fn strict_sim() -> SimFs {
    sim(1, false, false)
}

/// The shared handle `Wal::open` wants.
pub fn dyn_fs(fs: &SimFs) -> Arc<dyn FileSystem> {
    Arc::new(fs.clone())
}

/// Options with a small segment size.
pub fn options(segment_size: u64, sync: SyncPolicy, spare_segments_max: usize) -> WalOptions {
    WalOptions {
        segment_size,
        sync,
        spare_segments_max,
        ..WalOptions::default()
    }
}

/// Opens the log in [`dir`] (creating it if needed).
pub fn open(
    fs: &SimFs,
    opts: &WalOptions,
    replay_after: u64,
) -> vellum_wal::Result<(Wal, Vec<Record>)> {
    Wal::open(dyn_fs(fs), &dir(), opts.clone(), Lsn(replay_after), false)
}

/// A deterministic payload of `len` bytes that differs for every `id` (and never is all zeros
/// when `len > 0`).
pub fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            if i < 8 {
                return (id >> (8 * i)) as u8 ^ 0xA5;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Enqueues and waits for each payload in turn; returns the records as recovery should
/// return them.
pub fn write_each(wal: &Wal, payloads: &[Vec<u8>]) -> vellum_wal::Result<Vec<Record>> {
    let mut out = Vec::with_capacity(payloads.len());
    for p in payloads {
        let ticket = wal.enqueue(p)?;
        wal.wait(ticket)?;
        out.push(Record {
            lsn: ticket.lsn(),
            payload: p.clone(),
        });
    }
    Ok(out)
}

/// Enqueues all payloads, then waits for the last ticket only: the whole batch is written
/// (and synced, under `Immediate`) by one leader.
pub fn write_batch(wal: &Wal, payloads: &[Vec<u8>]) -> vellum_wal::Result<Vec<Record>> {
    let mut out = Vec::with_capacity(payloads.len());
    let mut last = None;
    for p in payloads {
        let ticket = wal.enqueue(p)?;
        out.push(Record {
            lsn: ticket.lsn(),
            payload: p.clone(),
        });
        last = Some(ticket);
    }
    if let Some(ticket) = last {
        wal.wait(ticket)?;
    }
    Ok(out)
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// True if `name` is `<prefix><20 digits><suffix>`.
pub fn is_named(name: &str, prefix: &str, suffix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|r| r.strip_suffix(suffix))
        .is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Live segment files (`wal-*.log`) in [`dir`], sorted.
pub fn segment_files(fs: &SimFs) -> Vec<PathBuf> {
    files_named(fs, "wal-", ".log")
}

/// Spare segment files (`spare-*.log`) in [`dir`], sorted.
pub fn spare_files(fs: &SimFs) -> Vec<PathBuf> {
    files_named(fs, "spare-", ".log")
}

fn files_named(fs: &SimFs, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    fs.file_paths()
        .into_iter()
        .filter(|p| p.parent() == Some(dir().as_path()) && is_named(&name_of(p), prefix, suffix))
        .collect()
}

/// One past the last non-zero byte of `path`: the end of what the log wrote into a segment
/// that was preallocated with zeros (the last byte of every frame is its non-zero kind byte).
pub fn written_end(fs: &SimFs, path: &Path) -> std::io::Result<usize> {
    let data = fs.read(path)?;
    Ok(data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1))
}

/// True if `shorter` is a prefix of `longer`.
pub fn is_prefix(shorter: &[Record], longer: &[Record]) -> bool {
    shorter.len() <= longer.len() && shorter == &longer[..shorter.len()]
}

/// A [`FileSystem`] over a [`SimFs`] whose `sync_data` takes as long as a real `fdatasync` on a
/// fast disk: concurrent committers then reliably find a leader busy syncing, as in
/// production, instead of racing through an instantaneous in-memory sync one by one.
#[derive(Debug)]
pub struct SlowSyncFs {
    inner: SimFs,
    delay: std::time::Duration,
}

impl SlowSyncFs {
    /// Wraps `inner`; every `sync_data` sleeps `delay` before syncing.
    pub fn wrap(inner: &SimFs, delay: std::time::Duration) -> Arc<dyn FileSystem> {
        Arc::new(SlowSyncFs {
            inner: inner.clone(),
            delay,
        })
    }
}

#[derive(Debug)]
struct SlowSyncFile {
    inner: Box<dyn vellum_fs::WritableFile>,
    delay: std::time::Duration,
}

impl vellum_fs::WritableFile for SlowSyncFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write_at(offset, data)
    }
    fn sync_data(&mut self) -> std::io::Result<()> {
        std::thread::sleep(self.delay);
        self.inner.sync_data()
    }
    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
}

impl FileSystem for SlowSyncFs {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn remove_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        self.inner.exists(path)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn open_read(&self, path: &Path) -> std::io::Result<Box<dyn vellum_fs::ReadableFile>> {
        self.inner.open_read(path)
    }
    fn open_write(&self, path: &Path) -> std::io::Result<Box<dyn vellum_fs::WritableFile>> {
        Ok(Box::new(SlowSyncFile {
            inner: self.inner.open_write(path)?,
            delay: self.delay,
        }))
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn lock_dir(&self, dir: &Path) -> std::io::Result<Box<dyn vellum_fs::DirLock>> {
        self.inner.lock_dir(dir)
    }
}
