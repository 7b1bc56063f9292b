//! Atomic output files: everything is written under a temporary name in the destination folder
//! and renamed into place once complete, so an interrupted run never leaves a half-written file
//! under a final name (and resume can trust every file it finds).

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Suffix of files being written; [`remove_stale_temporaries`] clears leftovers of a killed run.
pub const TMP_SUFFIX: &str = ".partial";

fn temporary_path(path: &Path) -> PathBuf {
    // Built from the name's bytes: a lossy name would give two files whose names differ only in
    // bytes that are not UTF-8 the same temporary.
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}{TMP_SUFFIX}", std::process::id()));
    path.with_file_name(name)
}

/// A file that appears under its final name only on [`AtomicFile::commit`]; dropped
/// uncommitted, it removes its temporary.
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl AtomicFile {
    pub fn create(path: &Path) -> io::Result<Self> {
        let tmp = temporary_path(path);
        let file = File::create(&tmp)?;
        Ok(Self { file: Some(file), tmp, path: path.to_owned() })
    }

    /// Flushes the content to the disk without renaming: a caller staging several files finds a
    /// full disk before it renames any.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file().sync_data()
    }

    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("committed twice");
        file.sync_data()?;
        drop(file);
        fs::rename(&self.tmp, &self.path)
    }

    fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("used after commit")
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file().seek(pos)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` atomically. An error names the file (`PATH: cannot write: ...`), so
/// that no caller can let a bare "No space left on device" through.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let write = || -> io::Result<()> {
        let mut file = AtomicFile::create(path)?;
        file.write_all(bytes)?;
        file.commit()
    };
    write().map_err(|e| io::Error::new(e.kind(), format!("{}: cannot write: {e}", path.display())))
}

/// Removes temporaries left in `dir` by an interrupted run; returns how many.
pub fn remove_stale_temporaries(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(TMP_SUFFIX) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// sha256 of bytes already in memory, hex (as [`sha256_file`] writes it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// sha256 of a file, hex: recorded with every result so that a number names its checkpoint.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        {
            let mut f = AtomicFile::create(&path).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        write_atomic(&path, b"whole").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
    }

    #[test]
    fn a_failed_write_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-folder/summary.json");
        let e = write_atomic(&path, b"{}").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().starts_with(&format!("{}: cannot write: ", path.display())), "{e}");
    }

    #[test]
    fn stale_temporaries_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!(".a.npy.123{TMP_SUFFIX}")), b"x").unwrap();
        fs::write(dir.path().join("keep.npy"), b"x").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert!(dir.path().join("keep.npy").exists());
    }
}
