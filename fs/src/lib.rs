//! The file-system seam of vellum.
//!
//! Every byte the write-ahead log, checkpoints and (later) segment files put on disk goes
//! through [`FileSystem`]. Two implementations exist:
//!
//! * [`RealFs`]: the operating system, with `pwrite`, `fdatasync` and directory `fsync`.
//! * [`SimFs`]: an in-memory file system that models what survives a crash. It can crash at a
//!   chosen operation, forgets every write that was not synced, forgets directory entries that
//!   were not made durable by a directory sync, and can tear the write it crashed in.
//!
//! Invariants the rest of vellum relies on:
//! * Data written with [`WritableFile::write_at`] is durable only after
//!   [`WritableFile::sync_data`] returns `Ok`.
//! * A created, renamed or removed directory entry is durable only after
//!   [`FileSystem::sync_dir`] on its parent returns `Ok`.
//! * Neither implementation ever panics on caller input; failures are `io::Error`s.

#![warn(missing_docs)]

mod real;
mod sim;

pub use real::RealFs;
pub use sim::{SimFs, SimOptions};

use std::fmt::Debug;
use std::io;
use std::path::Path;

/// A file opened for writing at explicit offsets.
pub trait WritableFile: Send + Sync + Debug {
    /// Writes all of `data` at `offset`, extending the file if needed.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes every byte written so far durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Sets the length of the file (zero-extending or cutting).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// The current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// True if the file has no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A finished file opened for positional reads (segment files). Reads never see later writes
/// through other handles; callers only open files that are complete and synced.
pub trait ReadableFile: Send + Sync + Debug {
    /// Fills `buf` with the bytes at `offset`; fails with `UnexpectedEof` past the end.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// The length of the file when it was opened.
    fn len(&self) -> u64;
    /// True if the file has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A held lock on a database directory; released when dropped.
pub trait DirLock: Send + Sync + Debug {}

/// The operations vellum performs on files and directories.
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Creates `dir` and its missing parents. Each new directory's entry is durable only after
    /// its parent is synced (see [`create_dir_durable`]).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Removes `dir` and everything below it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names (not paths) of the entries of `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// True if `path` names an existing file or directory.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens an existing file for positional reads.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>>;
    /// Opens `path` for writing, creating it (empty) if it does not exist. Never truncates.
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to`: a file (replacing a file `to`), or a directory with
    /// everything below it (`to` must not exist).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `dir`. Fails with `ErrorKind::WouldBlock` if another
    /// holder (another process, or another open database) has it.
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>>;
}

/// Creates `dir` and its missing parents durably: every directory it creates is followed by a
/// sync of its parent.
pub fn create_dir_durable(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !fs.exists(a).unwrap_or(false))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir)?;
    for d in missing.into_iter().rev() {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Writes `data` to a new file at `path` durably and atomically: the bytes go to a temporary
/// sibling, are synced, renamed over `path`, and the directory is synced. A crash at any point
/// leaves either the old file (or none) or the complete new one.
pub fn write_file_atomic(fs: &dyn FileSystem, path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    {
        let mut file = fs.open_write(tmp)?;
        file.set_len(0)?;
        file.write_at(0, data)?;
        file.sync_data()?;
    }
    fs.rename(tmp, path)?;
    fs.sync_dir(dir)
}
