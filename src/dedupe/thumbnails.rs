//! The crop route's grey thumbnails on disk: 1 KiB an image, written once while the codes are
//! computed, read back a batch of candidate pairs at a time ([`super::windows::window_correlations`]),
//! so the check holds one batch's thumbnails, not the set's (LSUN's 3M: 3 GB on disk).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::autoencoder::INPUT_DIM;
use super::windows::Thumbnails;

/// Bytes of one grey 32x32 thumbnail.
pub const THUMBNAIL_BYTES: usize = INPUT_DIM / 3;

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

    /// The thumbnails of `ids`, by index (positioned reads, in parallel).
    pub fn read(&self, ids: &[u32]) -> std::io::Result<Thumbnails> {
        ids.par_iter()
            .map(|&i| {
                if i as usize >= self.count {
                    let message = format!("{}: thumbnail {i} of {}", self.path.display(), self.count);
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, message));
                }
                let mut thumbnail = vec![0u8; THUMBNAIL_BYTES];
                self.file
                    .read_exact_at(&mut thumbnail, i as u64 * THUMBNAIL_BYTES as u64)
                    .map_err(|e| named(&self.path, e))?;
                Ok((i, thumbnail))
            })
            .collect()
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
        assert_eq!(read[&4], all[4 * THUMBNAIL_BYTES..].to_vec());
        assert_eq!(read[&1], all[THUMBNAIL_BYTES..2 * THUMBNAIL_BYTES].to_vec());
        let error = file.read(&[5]).unwrap_err().to_string();
        assert!(error.contains("thumbs.u8") && error.contains("thumbnail 5 of 5"), "{error}");
        file.remove().unwrap();
        assert!(!path.exists());
    }
}
