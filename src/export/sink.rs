//! A data file written through the file-system trait: buffered, checksummed, synced.

use super::FileEntry;
use crate::error::{io_err, Result};
use std::path::{Path, PathBuf};
use vellum_fs::{FileSystem, WritableFile};

/// Bytes buffered before each write call.
const BUFFER_BYTES: usize = 1 << 20;

/// An export data file being written.
pub(crate) struct FileSink {
    file: Box<dyn WritableFile>,
    path: PathBuf,
    name: String,
    buf: Vec<u8>,
    offset: u64,
    crc: u32,
}

impl FileSink {
    pub fn create(fs: &dyn FileSystem, path: &Path, name: &str) -> Result<FileSink> {
        let mut file = fs.open_write(path).map_err(io_err(path))?;
        file.set_len(0).map_err(io_err(path))?;
        Ok(FileSink {
            file,
            path: path.to_path_buf(),
            name: name.to_string(),
            buf: Vec::with_capacity(BUFFER_BYTES + 4096),
            offset: 0,
            crc: 0,
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Bytes written so far (buffered included).
    pub fn len(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    fn flush(&mut self) -> Result<()> {
        self.file
            .write_at(self.offset, &self.buf)
            .map_err(io_err(&self.path))?;
        self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Flushes, syncs and describes the file.
    pub fn finish(mut self) -> Result<FileEntry> {
        self.flush()?;
        self.file.sync_data().map_err(io_err(&self.path))?;
        Ok(FileEntry {
            path: self.name,
            bytes: self.offset,
            crc32c: format!("{:08x}", self.crc),
        })
    }
}
