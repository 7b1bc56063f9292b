//! The crop route's grey thumbnails on disk: 1 KiB an image, written once while the codes are
//! computed, read back a batch of candidate pairs at a time ([`super::windows::window_correlations`]),
//! so the check holds one batch's thumbnails, not the set's (LSUN's 3M: 3 GB on disk).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::windows::{Thumbnails, GREY_BYTES};

/// Bytes of one grey 32x32 thumbnail (the check's own size, not a second definition).
pub const THUMBNAIL_BYTES: usize = GREY_BYTES;

/// Wanted thumbnails at most this far apart are read in one go, the ones between included.
const READ_THROUGH: u32 = 8;

/// The most thumbnails one read spans (4 MiB), so that reads stay many and in parallel.
const RUN_THUMBNAILS: usize = 4096;

/// An error naming the file.
fn named(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Appends thumbnails, in image order.
pub struct ThumbnailWriter {
    out: BufWriter<File>,
    path: PathBuf,
    count: usize,
}

impl ThumbnailWriter {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        // Read back by the check: opened for reading too (File::create is write-only).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| named(path, e))?;
        Ok(Self { out: BufWriter::with_capacity(1 << 20, file), path: path.to_owned(), count: 0 })
    }

    /// Appends whole thumbnails (a multiple of [`THUMBNAIL_BYTES`]).
    pub fn push(&mut self, thumbnails: &[u8]) -> std::io::Result<()> {
        assert_eq!(thumbnails.len() % THUMBNAIL_BYTES, 0, "whole thumbnails");
        self.out.write_all(thumbnails).map_err(|e| named(&self.path, e))?;
        self.count += thumbnails.len() / THUMBNAIL_BYTES;
        Ok(())
    }

    pub fn finish(self) -> std::io::Result<ThumbnailFile> {
        let Self { out, path, count } = self;
        let file = out.into_inner().map_err(|e| named(&path, e.into_error()))?;
        Ok(ThumbnailFile { file, path, count })
    }
}

/// Thumbnails written by a [`ThumbnailWriter`], read by index.
pub struct ThumbnailFile {
    file: File,
    path: PathBuf,
    count: usize,
}

impl ThumbnailFile {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The thumbnails of `ids`, by index: positioned reads in parallel, one for each run of ids
    /// no more than [`READ_THROUGH`] apart (a batch of the check wants a good share of the file, and
    /// one read of a few KiB costs less than a system call per thumbnail).
    pub fn read(&self, ids: &[u32]) -> std::io::Result<Thumbnails> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if let Some(&last) = ids.last().filter(|&&i| i as usize >= self.count) {
            let message = format!("{}: thumbnail {last} of {}", self.path.display(), self.count);
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, message));
        }
        let mut runs: Vec<&[u32]> = Vec::new();
        let mut start = 0;
        for k in 1..=ids.len() {
            let ends = k == ids.len()
                || ids[k] - ids[k - 1] > READ_THROUGH
                || (ids[k] - ids[start]) as usize >= RUN_THUMBNAILS;
            if ends {
                runs.push(&ids[start..k]);
                start = k;
            }
        }
        let parts: Vec<Vec<u8>> = runs
            .par_iter()
            .map(|run| {
                let first = run[0];
                let span_len = (run[run.len() - 1] - first + 1) as usize;
                let mut span = vec![0u8; span_len * THUMBNAIL_BYTES];
                self.file
                    .read_exact_at(&mut span, first as u64 * THUMBNAIL_BYTES as u64)
                    .map_err(|e| named(&self.path, e))?;
                if span_len == run.len() {
                    return Ok(span);
                }
                let mut wanted = Vec::with_capacity(run.len() * THUMBNAIL_BYTES);
                for &i in run.iter() {
                    wanted.extend_from_slice(&span[(i - first) as usize * THUMBNAIL_BYTES..][..THUMBNAIL_BYTES]);
                }
                Ok(wanted)
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Thumbnails::from_sorted(ids, parts.concat()))
    }

    /// Deletes the file (a scratch file of the run).
    pub fn remove(self) -> std::io::Result<()> {
        std::fs::remove_file(&self.path).map_err(|e| named(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_read_back_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thumbs.u8");
        let mut writer = ThumbnailWriter::create(&path).unwrap();
        let all: Vec<u8> = (0..5 * THUMBNAIL_BYTES).map(|k| (k / THUMBNAIL_BYTES * 37 + k % 251) as u8).collect();
        writer.push(&all[..2 * THUMBNAIL_BYTES]).unwrap();
        writer.push(&all[2 * THUMBNAIL_BYTES..]).unwrap();
        let file = writer.finish().unwrap();
        assert_eq!(file.len(), 5);
        let read = file.read(&[4, 1]).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read.get(4).unwrap(), &all[4 * THUMBNAIL_BYTES..]);
        assert_eq!(read.get(1).unwrap(), &all[THUMBNAIL_BYTES..2 * THUMBNAIL_BYTES]);
        assert!(read.get(2).is_none(), "read through, but not wanted");
        let error = file.read(&[5]).unwrap_err().to_string();
        assert!(error.contains("thumbs.u8") && error.contains("thumbnail 5 of 5"), "{error}");
        file.remove().unwrap();
        assert!(!path.exists());
    }
}
