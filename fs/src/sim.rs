//! [`SimFs`]: an in-memory file system that models crashes.
//!
//! Model (what survives [`SimFs::restart`] after a crash):
//! * File contents: everything written before the file's last successful `sync_data`, plus a
//!   random prefix (possibly empty) of the later writes, in order, the last kept one possibly
//!   torn to a random prefix of its bytes. With [`SimOptions::keep_unsynced`] off, every
//!   unsynced write is dropped.
//! * Directory entries: every create, rename and remove made durable by `sync_dir` of the
//!   parent, plus a random prefix of the later ones (none with `keep_unsynced` off).
//! * Open handles and locks of the crashed "process" are fenced off by an epoch counter: after a
//!   restart they fail with an error and dropping them changes nothing.
//!
//! A crash is scheduled with [`SimFs::crash_after`]: the n-th mutating operation (write, sync,
//! set_len, create, rename, remove, directory sync) from then on fails, and so does every
//! operation after it until [`SimFs::restart`]. Randomness comes from a seeded xorshift
//! generator, so a failing case replays from its seed.

use crate::{DirLock, FileSystem, ReadableFile, WritableFile};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a [`SimFs`] behaves at a crash.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    /// Seed of the generator that picks which unsynced operations survive.
    pub seed: u64,
    /// Keep a random prefix of unsynced operations at a crash (else drop them all).
    pub keep_unsynced: bool,
    /// Allow the last kept unsynced write of a file to be torn.
    pub tear: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 0x5eed,
            keep_unsynced: true,
            tear: true,
        }
    }
}

type Ino = u64;

#[derive(Debug)]
enum Undo {
    Write {
        offset: u64,
        old_len: u64,
        old: Vec<u8>,
        new: Vec<u8>,
    },
    SetLen {
        old_len: u64,
        old_tail: Vec<u8>,
    },
}

#[derive(Debug, Default)]
struct SimFile {
    data: Vec<u8>,
    unsynced: Vec<Undo>,
}

#[derive(Debug, Clone)]
enum NsOp {
    Create(PathBuf, Ino),
    Rename(PathBuf, PathBuf),
    Remove(PathBuf),
    CreateDir(PathBuf),
    RenameDir(PathBuf, PathBuf),
    RemoveDir(PathBuf),
}

/// The namespace: file paths to inodes, and directories.
#[derive(Debug, Clone, Default)]
struct Namespace {
    names: BTreeMap<PathBuf, Ino>,
    dirs: BTreeSet<PathBuf>,
}

impl Namespace {
    fn root() -> Self {
        let mut ns = Namespace::default();
        ns.dirs.insert(PathBuf::from("/"));
        ns
    }

    /// Moves every file and directory at or below `from` to the same place below `to`.
    fn move_tree(&mut self, from: &Path, to: &Path) {
        let moved = |p: &Path| p.strip_prefix(from).ok().map(|rest| to.join(rest));
        let names: Vec<(PathBuf, Ino)> = self
            .names
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (p, ino) in names {
            self.names.remove(&p);
            if let Some(q) = moved(&p) {
                self.names.insert(q, ino);
            }
        }
        let dirs: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for p in dirs {
            self.dirs.remove(&p);
            if let Some(q) = moved(&p) {
                self.dirs.insert(q);
            }
        }
    }

    fn remove_tree(&mut self, dir: &Path) {
        self.names.retain(|p, _| !p.starts_with(dir));
        self.dirs.retain(|p| !p.starts_with(dir));
    }
}

impl NsOp {
    fn dir(&self) -> Option<&Path> {
        match self {
            NsOp::Create(p, _)
            | NsOp::Rename(_, p)
            | NsOp::Remove(p)
            | NsOp::CreateDir(p)
            | NsOp::RenameDir(_, p)
            | NsOp::RemoveDir(p) => p.parent(),
        }
    }
    fn apply(&self, ns: &mut Namespace) {
        match self {
            NsOp::Create(p, ino) => {
                ns.names.insert(p.clone(), *ino);
            }
            NsOp::Rename(from, to) => {
                if let Some(ino) = ns.names.remove(from) {
                    ns.names.insert(to.clone(), ino);
                }
            }
            NsOp::Remove(p) => {
                ns.names.remove(p);
            }
            NsOp::CreateDir(p) => {
                ns.dirs.insert(p.clone());
            }
            NsOp::RenameDir(from, to) => {
                if ns.dirs.contains(from) {
                    ns.move_tree(from, to);
                }
            }
            NsOp::RemoveDir(p) => ns.remove_tree(p),
        }
    }
}

#[derive(Debug)]
struct State {
    opts: SimOptions,
    rng: u64,
    files: HashMap<Ino, SimFile>,
    next_ino: Ino,
    /// The namespace as the running process sees it.
    ns: Namespace,
    /// The namespace as made durable by directory syncs.
    durable_ns: Namespace,
    unsynced_ns: Vec<NsOp>,
    locks: HashSet<PathBuf>,
    epoch: u64,
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
}

fn crash_error() -> io::Error {
    io::Error::other("simulated crash: the file system is down until restart")
}

impl State {
    fn next_rand(&mut self) -> u64 {
        // xorshift64*: deterministic and good enough to pick crash outcomes.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn rand_upto(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_rand() % (n + 1)
        }
    }

    fn check(&self, epoch: u64) -> io::Result<()> {
        if self.crashed || epoch != self.epoch {
            Err(crash_error())
        } else {
            Ok(())
        }
    }

    /// Counts a mutating operation; returns true if this one is the crash.
    fn tick(&mut self) -> bool {
        self.ops += 1;
        if self.crash_at == Some(self.ops) {
            self.crashed = true;
            true
        } else {
            false
        }
    }

    fn ino(&self, path: &Path) -> io::Result<Ino> {
        self.ns.names.get(path).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such file", path.display()),
            )
        })
    }

    fn parent_exists(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(dir) if self.ns.dirs.contains(dir) => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: parent directory does not exist", path.display()),
            )),
        }
    }

    fn crash_file(&mut self, ino: Ino) {
        let keep_unsynced = self.opts.keep_unsynced;
        let tear = self.opts.tear;
        let count = self.files.get(&ino).map_or(0, |f| f.unsynced.len()) as u64;
        let keep = if keep_unsynced {
            self.rand_upto(count)
        } else {
            0
        };
        let tear_len = self.next_rand();
        let Some(file) = self.files.get_mut(&ino) else {
            return;
        };
        let undo = std::mem::take(&mut file.unsynced);
        // Revert the dropped operations newest first.
        for op in undo.iter().skip(keep as usize).rev() {
            match op {
                Undo::Write {
                    offset,
                    old_len,
                    old,
                    ..
                } => {
                    let start = *offset as usize;
                    file.data[start..start + old.len()].copy_from_slice(old);
                    file.data.truncate(*old_len as usize);
                }
                Undo::SetLen {
                    old_len, old_tail, ..
                } => {
                    file.data.truncate(*old_len as usize);
                    file.data.resize(*old_len as usize - old_tail.len(), 0);
                    file.data.extend_from_slice(old_tail);
                }
            }
        }
        // Tear: the first dropped write may have reached the disk in part.
        if tear && keep_unsynced {
            if let Some(Undo::Write { offset, new, .. }) = undo.get(keep as usize) {
                let part = (tear_len % (new.len() as u64 + 1)) as usize;
                write_into(&mut file.data, *offset, &new[..part]);
            }
        }
    }
}

fn write_into(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    let end = start + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

/// An in-memory, crash-simulating [`FileSystem`]. Cloning shares the same file system.
#[derive(Debug, Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new(SimOptions::default())
    }
}

impl SimFs {
    /// A new, empty file system containing only the root directory `/`.
    pub fn new(opts: SimOptions) -> Self {
        SimFs {
            state: Arc::new(Mutex::new(State {
                opts,
                rng: opts.seed | 1,
                files: HashMap::new(),
                next_ino: 1,
                ns: Namespace::root(),
                durable_ns: Namespace::root(),
                unsynced_ns: Vec::new(),
                locks: HashSet::new(),
                epoch: 0,
                ops: 0,
                crash_at: None,
                crashed: false,
            })),
        }
    }

    /// Schedules a crash at the `n`-th mutating operation from now (`n >= 1`); `None` cancels.
    pub fn crash_after(&self, n: Option<u64>) {
        let mut st = self.state.lock();
        st.crash_at = n.map(|n| st.ops + n.max(1));
    }

    /// Crashes now: every later operation fails until [`SimFs::restart`].
    pub fn crash_now(&self) {
        self.state.lock().crashed = true;
    }

    /// True once the scheduled crash has happened (and before the restart).
    pub fn has_crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// Mutating operations performed so far.
    pub fn op_count(&self) -> u64 {
        self.state.lock().ops
    }

    /// Simulates the machine coming back after a crash (or a power cut if no crash was
    /// scheduled): unsynced data and directory entries are lost as described in the module
    /// documentation, handles and locks of the old "process" are fenced off.
    pub fn restart(&self) {
        let mut st = self.state.lock();
        // Visit files in a fixed order so that a crash outcome replays from the seed.
        let mut inos: Vec<Ino> = st.files.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            st.crash_file(ino);
        }
        let pending = std::mem::take(&mut st.unsynced_ns);
        let keep = if st.opts.keep_unsynced {
            st.rand_upto(pending.len() as u64) as usize
        } else {
            0
        };
        let mut ns = std::mem::take(&mut st.durable_ns);
        for op in &pending[..keep] {
            op.apply(&mut ns);
        }
        // A file's directory exists wherever the file survived.
        let parents: Vec<PathBuf> = ns
            .names
            .keys()
            .flat_map(|p| {
                p.ancestors()
                    .skip(1)
                    .map(Path::to_path_buf)
                    .collect::<Vec<_>>()
            })
            .collect();
        ns.dirs.extend(parents);
        ns.dirs.insert(PathBuf::from("/"));
        let live: HashSet<Ino> = ns.names.values().copied().collect();
        st.files.retain(|ino, _| live.contains(ino));
        st.durable_ns = ns.clone();
        st.ns = ns;
        st.locks.clear();
        st.epoch += 1;
        st.crash_at = None;
        st.crashed = false;
    }

    /// Test helper: XORs `mask` into the byte at `offset` of `path`, as durable damage.
    pub fn corrupt(&self, path: &Path, offset: u64, mask: u8) -> io::Result<()> {
        let mut st = self.state.lock();
        let ino = st.ino(path)?;
        let file = st.files.entry(ino).or_default();
        match file.data.get_mut(offset as usize) {
            Some(b) => {
                *b ^= mask;
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset past end of file",
            )),
        }
    }

    /// Test helper: cuts `path` to `len` bytes, as durable damage.
    pub fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        let ino = st.ino(path)?;
        let file = st.files.entry(ino).or_default();
        file.data.truncate(len as usize);
        Ok(())
    }

    /// Test helper: the current length of `path`.
    pub fn file_len(&self, path: &Path) -> io::Result<u64> {
        let st = self.state.lock();
        let ino = st.ino(path)?;
        Ok(st.files.get(&ino).map_or(0, |f| f.data.len() as u64))
    }

    /// Test helper: every file path, sorted.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        self.state.lock().ns.names.keys().cloned().collect()
    }

    /// Test helper: every directory path, sorted.
    pub fn dir_paths(&self) -> Vec<PathBuf> {
        self.state.lock().ns.dirs.iter().cloned().collect()
    }
}

#[derive(Debug)]
struct SimHandle {
    state: Arc<Mutex<State>>,
    ino: Ino,
    epoch: u64,
}

impl WritableFile for SimHandle {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check(self.epoch)?;
        let crash = st.tick();
        let tear = st.opts.tear;
        let cut = if crash && tear {
            (st.next_rand() % (data.len() as u64 + 1)) as usize
        } else {
            data.len()
        };
        let data = if crash { &data[..cut] } else { data };
        let file = st.files.entry(self.ino).or_default();
        let old_len = file.data.len() as u64;
        let start = (offset as usize).min(file.data.len());
        let end = (offset as usize + data.len()).min(file.data.len());
        let old = file.data[start..end.max(start)].to_vec();
        write_into(&mut file.data, offset, data);
        file.unsynced.push(Undo::Write {
            offset: start as u64,
            old_len,
            old,
            new: data.to_vec(),
        });
        if crash {
            Err(crash_error())
        } else {
            Ok(())
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check(self.epoch)?;
        if st.tick() {
            return Err(crash_error());
        }
        if let Some(file) = st.files.get_mut(&self.ino) {
            file.unsynced.clear();
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check(self.epoch)?;
        if st.tick() {
            return Err(crash_error());
        }
        let file = st.files.entry(self.ino).or_default();
        let old_len = file.data.len() as u64;
        let old_tail = if len < old_len {
            file.data[len as usize..].to_vec()
        } else {
            Vec::new()
        };
        file.data.resize(len as usize, 0);
        file.unsynced.push(Undo::SetLen { old_len, old_tail });
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let st = self.state.lock();
        st.check(self.epoch)?;
        Ok(st.files.get(&self.ino).map_or(0, |f| f.data.len() as u64))
    }
}

#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<State>>,
    dir: PathBuf,
    epoch: u64,
}

impl DirLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        if st.epoch == self.epoch {
            st.locks.remove(&self.dir);
        }
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check(st.epoch)?;
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .filter(|a| !st.ns.dirs.contains(*a))
            .map(Path::to_path_buf)
            .collect();
        // Outermost first; each new directory's entry is durable once its parent is synced.
        for d in missing.into_iter().rev() {
            if st.ns.names.contains_key(&d) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: a file is in the way", d.display()),
                ));
            }
            if st.tick() {
                return Err(crash_error());
            }
            st.ns.dirs.insert(d.clone());
            st.unsynced_ns.push(NsOp::CreateDir(d));
        }
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check(st.epoch)?;
        if !st.ns.dirs.contains(dir) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such directory", dir.display()),
            ));
        }
        if st.tick() {
            return Err(crash_error());
        }
        st.ns.remove_tree(dir);
        st.unsynced_ns.push(NsOp::RemoveDir(dir.to_path_buf()));
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.state.lock();
        st.check(st.epoch)?;
        if !st.ns.dirs.contains(dir) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such directory", dir.display()),
            ));
        }
        let mut out: Vec<String> = st
            .ns
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        out.extend(
            st.ns
                .dirs
                .iter()
                .filter(|p| p.parent() == Some(dir))
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        );
        out.sort();
        Ok(out)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let st = self.state.lock();
        st.check(st.epoch)?;
        Ok(st.ns.names.contains_key(path) || st.ns.dirs.contains(path))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.state.lock();
        st.check(st.epoch)?;
        let ino = st.ino(path)?;
        Ok(st
            .files
            .get(&ino)
            .map(|f| f.data.clone())
            .unwrap_or_default())
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        let data = self.read(path)?;
        Ok(Box::new(SimReadFile { data: data.into() }))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut st = self.state.lock();
        st.check(st.epoch)?;
        let ino = match st.ns.names.get(path) {
            Some(ino) => *ino,
            None => {
                st.parent_exists(path)?;
                if st.tick() {
                    return Err(crash_error());
                }
                let ino = st.next_ino;
                st.next_ino += 1;
                st.files.insert(ino, SimFile::default());
                st.ns.names.insert(path.to_path_buf(), ino);
                st.unsynced_ns.push(NsOp::Create(path.to_path_buf(), ino));
                ino
            }
        };
        Ok(Box::new(SimHandle {
            state: self.state.clone(),
            ino,
            epoch: st.epoch,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check(st.epoch)?;
        st.ino(path)?;
        if st.tick() {
            return Err(crash_error());
        }
        st.ns.names.remove(path);
        st.unsynced_ns.push(NsOp::Remove(path.to_path_buf()));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check(st.epoch)?;
        st.parent_exists(to)?;
        if st.ns.dirs.contains(from) {
            if st.ns.dirs.contains(to) || st.ns.names.contains_key(to) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: rename target exists", to.display()),
                ));
            }
            if st.tick() {
                return Err(crash_error());
            }
            st.ns.move_tree(from, to);
            st.unsynced_ns
                .push(NsOp::RenameDir(from.to_path_buf(), to.to_path_buf()));
            return Ok(());
        }
        let ino = st.ino(from)?;
        if st.tick() {
            return Err(crash_error());
        }
        st.ns.names.remove(from);
        st.ns.names.insert(to.to_path_buf(), ino);
        st.unsynced_ns
            .push(NsOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check(st.epoch)?;
        if st.tick() {
            return Err(crash_error());
        }
        let pending = std::mem::take(&mut st.unsynced_ns);
        let mut rest = Vec::with_capacity(pending.len());
        for op in pending {
            if op.dir() == Some(dir) {
                op.apply(&mut st.durable_ns);
            } else {
                rest.push(op);
            }
        }
        st.unsynced_ns = rest;
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>> {
        let mut st = self.state.lock();
        st.check(st.epoch)?;
        if !st.locks.insert(dir.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "directory is locked by another open database",
            ));
        }
        Ok(Box::new(SimLock {
            state: self.state.clone(),
            dir: dir.to_path_buf(),
            epoch: st.epoch,
        }))
    }
}

/// A read handle: the file's contents when it was opened (segment files are immutable once
/// written, so a copy reads exactly what the file holds, even after it is removed).
#[derive(Debug)]
struct SimReadFile {
    data: std::sync::Arc<[u8]>,
}

impl ReadableFile for SimReadFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .filter(|e| *e <= self.data.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(&self.data[start..end]);
        Ok(())
    }
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn no_keep() -> SimFs {
        SimFs::new(SimOptions {
            seed: 7,
            keep_unsynced: false,
            tear: false,
        })
    }

    #[test]
    fn unsynced_writes_are_lost_and_synced_ones_kept() -> io::Result<()> {
        let fs = no_keep();
        fs.create_dir_all(&p("/d"))?;
        fs.sync_dir(&p("/"))?;
        let mut f = fs.open_write(&p("/d/a"))?;
        f.write_at(0, b"hello")?;
        f.sync_data()?;
        fs.sync_dir(&p("/d"))?;
        f.write_at(5, b" world")?;
        fs.restart();
        assert_eq!(fs.read(&p("/d/a"))?, b"hello");
        Ok(())
    }

    #[test]
    fn file_without_directory_sync_vanishes() -> io::Result<()> {
        let fs = no_keep();
        fs.create_dir_all(&p("/d"))?;
        fs.sync_dir(&p("/"))?;
        let mut f = fs.open_write(&p("/d/a"))?;
        f.write_at(0, b"x")?;
        f.sync_data()?;
        fs.restart();
        assert!(!fs.exists(&p("/d/a"))?);
        Ok(())
    }

    #[test]
    fn scheduled_crash_fails_the_operation_and_fences_old_handles() -> io::Result<()> {
        let fs = no_keep();
        fs.create_dir_all(&p("/d"))?;
        let mut f = fs.open_write(&p("/d/a"))?;
        fs.sync_dir(&p("/d"))?;
        fs.crash_after(Some(2));
        f.write_at(0, b"one")?;
        assert!(f.sync_data().is_err());
        assert!(fs.has_crashed());
        assert!(f.write_at(0, b"x").is_err());
        fs.restart();
        assert!(f.write_at(0, b"x").is_err(), "old handle must stay fenced");
        assert_eq!(fs.read(&p("/d/a"))?, b"");
        Ok(())
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop_or_restart() -> io::Result<()> {
        let fs = no_keep();
        fs.create_dir_all(&p("/d"))?;
        let lock = fs.lock_dir(&p("/d"))?;
        assert_eq!(
            fs.lock_dir(&p("/d")).map(|_| ()).err().map(|e| e.kind()),
            Some(io::ErrorKind::WouldBlock)
        );
        drop(lock);
        let stale = fs.lock_dir(&p("/d"))?;
        fs.restart();
        let fresh = fs.lock_dir(&p("/d"))?;
        drop(stale); // must not release the fresh lock
        assert!(fs.lock_dir(&p("/d")).is_err());
        drop(fresh);
        Ok(())
    }

    #[test]
    fn kept_unsynced_writes_form_a_prefix() -> io::Result<()> {
        for seed in 0..200 {
            let fs = SimFs::new(SimOptions {
                seed,
                keep_unsynced: true,
                tear: true,
            });
            fs.create_dir_all(&p("/d"))?;
            let mut f = fs.open_write(&p("/d/a"))?;
            fs.sync_dir(&p("/d"))?;
            f.write_at(0, b"aaaa")?;
            f.write_at(4, b"bbbb")?;
            f.write_at(8, b"cccc")?;
            fs.restart();
            let data = fs.read(&p("/d/a"))?;
            let full = b"aaaabbbbcccc";
            assert!(data.len() <= full.len());
            assert_eq!(&data[..], &full[..data.len()], "seed {seed}: not a prefix");
        }
        Ok(())
    }

    #[test]
    fn a_directory_rename_is_atomic_and_durable_only_after_a_parent_sync() -> io::Result<()> {
        for seed in 0..40 {
            let fs = SimFs::new(SimOptions {
                seed,
                keep_unsynced: true,
                tear: true,
            });
            fs.create_dir_all(&p("/t"))?;
            fs.sync_dir(&p("/"))?;
            fs.create_dir_all(&p("/t/tmp"))?;
            fs.sync_dir(&p("/t"))?;
            let mut f = fs.open_write(&p("/t/tmp/a"))?;
            f.write_at(0, b"data")?;
            f.sync_data()?;
            fs.sync_dir(&p("/t/tmp"))?;
            fs.rename(&p("/t/tmp"), &p("/t/final"))?;
            let synced = seed % 2 == 0;
            if synced {
                fs.sync_dir(&p("/t"))?;
            }
            fs.restart();
            let at_final = fs.exists(&p("/t/final/a"))?;
            let at_tmp = fs.exists(&p("/t/tmp/a"))?;
            assert!(at_final != at_tmp, "seed {seed}: exactly one name");
            assert!(
                !synced || at_final,
                "seed {seed}: a synced rename is durable"
            );
            let path = if at_final { "/t/final/a" } else { "/t/tmp/a" };
            assert_eq!(fs.read(&p(path))?, b"data");
            assert_eq!(
                fs.exists(&p("/t/final"))?,
                at_final,
                "seed {seed}: no empty leftover"
            );
        }
        Ok(())
    }

    #[test]
    fn a_created_directory_needs_its_parent_synced() -> io::Result<()> {
        let fs = no_keep();
        fs.create_dir_all(&p("/a/b"))?;
        fs.sync_dir(&p("/"))?;
        fs.restart();
        assert!(fs.exists(&p("/a"))?);
        assert!(!fs.exists(&p("/a/b"))?, "its parent /a was never synced");
        Ok(())
    }

    #[test]
    fn rename_is_atomic_across_a_crash() -> io::Result<()> {
        for seed in 0..50 {
            let fs = SimFs::new(SimOptions {
                seed,
                keep_unsynced: true,
                tear: true,
            });
            fs.create_dir_all(&p("/d"))?;
            crate::write_file_atomic(&fs, &p("/d/f"), b"old")?;
            fs.crash_after(Some(1 + seed % 5));
            let _ = crate::write_file_atomic(&fs, &p("/d/f"), b"new!");
            fs.restart();
            let data = fs.read(&p("/d/f"))?;
            assert!(data == b"old" || data == b"new!", "seed {seed}: {data:?}");
        }
        Ok(())
    }
}
