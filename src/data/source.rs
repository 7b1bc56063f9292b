//! Image sources shared by every stage: a folder tree, a tar archive read as a stream (plain or
//! gzip), and LSUN's LMDB export (key -> encoded image bytes); the archive kinds of
//! [`super::sources`] (a tar of tars, zip, Parquet, WebDataset) through one variant. Walking a
//! tar stream lives in [`super::tar_stream`], LMDB in [`super::lmdb`]; this file opens a source,
//! lists a folder, and hands out the records.
//!
//! A source hands out [`Record`]s in a stable order (sorted paths, archive order, key order), each
//! with a global index; resume and `--shard` rely on that order. Only the records a caller wants
//! are loaded: the others are walked past without reading their bytes where the format allows.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::lmdb::{lmdb_len, walk_lmdb};
use super::names::encode_os;
use super::sources::{self, ArchiveSource, SourceOptions};
use super::tar_stream::walk_tar;

/// File name extensions taken as images without looking at their content.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "jpe", "jfif", "png", "webp", "gif", "bmp", "tif", "tiff"];

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: no such file or folder")]
    Missing { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a folder, a .tar/.tar.gz, .zip or .parquet file, or an LMDB folder (data.mdb)")]
    UnknownKind { path: PathBuf },
    #[error("{path}: {kind}, not a regular file: give a folder, a .tar/.tar.gz archive or an LMDB folder")]
    Special { path: PathBuf, kind: &'static str },
    #[error("{path}: LMDB: {message}")]
    Lmdb { path: PathBuf, message: String },
}

/// Where a record's bytes are.
#[derive(Debug)]
pub enum RecordData {
    /// A file of a folder source, read by whoever processes it (so reads spread over threads).
    File(PathBuf),
    /// Bytes already read from an archive or a database.
    Bytes(Vec<u8>),
    /// A zip member's deflated bytes, inflated and checked when loaded (by a worker).
    Deflated(super::sources::zip_archive::Deflated),
    /// A record the caller did not want; its bytes were not read.
    NotLoaded,
    /// Could not be read; the reason names the problem, the record's name the file.
    Unreadable(String),
    /// Not read on purpose (a hidden file); the reason says why. A skipped row, not an error.
    Skipped(String),
}

#[derive(Debug)]
pub struct Record {
    /// Position in the source's stable order, counted over all records.
    pub index: u64,
    /// Path relative to the folder, path inside the archive, or LMDB key, kept exactly: bytes
    /// that are not UTF-8 as `\xHH`, a backslash as `\\` ([`super::names`]).
    pub name: String,
    /// The record's class: the name of the folder that holds it, if any.
    pub class: Option<String>,
    pub data: RecordData,
}

impl Record {
    /// The record's encoded bytes, refusing files larger than `max_bytes`.
    pub fn load(&self, max_bytes: u64) -> Result<std::borrow::Cow<'_, [u8]>, String> {
        match &self.data {
            RecordData::Bytes(b) => Ok(std::borrow::Cow::Borrowed(b)),
            RecordData::File(path) => {
                let file = open_regular(path).map_err(|e| format!("cannot read: {e}"))?;
                let len = file.metadata().map_err(|e| e.to_string())?.len();
                if len > max_bytes {
                    return Err(format!("file of {len} bytes exceeds the limit of {max_bytes}"));
                }
                let mut bytes = Vec::with_capacity(len as usize);
                file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
                Ok(std::borrow::Cow::Owned(bytes))
            }
            RecordData::Deflated(member) => member.inflate().map(std::borrow::Cow::Owned),
            RecordData::NotLoaded => Err("record was not loaded".into()),
            RecordData::Unreadable(why) | RecordData::Skipped(why) => Err(why.clone()),
        }
    }
}

/// What a folder walk found at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file taken as an image (by its extension or its first bytes).
    File,
    /// A name starting with "." (a file, or a folder not walked into): not read, a skipped record.
    Hidden { folder: bool },
    /// Found but not usable: a dangling symbolic link, a link loop, a FIFO or another special
    /// file, a file or folder that cannot be read. A failed record, never an abort of the run.
    Unusable(String),
}

/// One record of a folder source: its path relative to the root and what was found there.
#[derive(Debug, Clone)]
pub struct FolderEntry {
    pub relative: PathBuf,
    pub kind: EntryKind,
}

#[derive(Debug)]
pub enum ImageSource {
    Folder {
        root: PathBuf,
        entries: Vec<FolderEntry>,
        ignored: u64,
    },
    Tar {
        path: PathBuf,
    },
    Lmdb {
        path: PathBuf,
    },
    /// A tar of tars, a zip, Parquet files, WebDataset shards ([`super::sources`]).
    Archive(ArchiveSource),
}

pub(crate) fn has_image_extension(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// True when the first bytes carry the signature of an image format the pipeline decodes.
pub fn looks_like_image(head: &[u8]) -> bool {
    image::guess_format(head).is_ok_and(|f| {
        use image::ImageFormat::*;
        matches!(f, Jpeg | Png | WebP | Gif | Bmp | Tiff)
    })
}

fn is_hidden(name: &OsStr) -> bool {
    // Dot files include macOS's AppleDouble "._x.jpg" companions, which are not images.
    name.as_bytes().starts_with(b".")
}

/// Whether a path inside an archive is hidden or lies in a hidden folder.
pub(crate) fn in_hidden_place(path: &Path) -> bool {
    path.components().any(|c| matches!(c, Component::Normal(name) if is_hidden(name)))
}

pub(crate) fn hidden_reason(folder: bool) -> String {
    let what = if folder { "hidden folder" } else { "hidden file" };
    format!("{what} (its name starts with \".\"): not read")
}

/// The class of a record at `relative` path: the name of its immediate folder, if it has one.
pub(crate) fn class_of(relative: &Path) -> Option<String> {
    let parent = relative.parent()?;
    let name = encode_os(parent.file_name()?);
    (!name.is_empty()).then_some(name)
}

/// Opens `path` for reading without blocking on a FIFO (a FIFO put in place of a file after the
/// walk would otherwise wait forever for a writer), and refuses anything but a regular file.
fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK on Linux (every architecture this builds for); no effect on regular files.
    const O_NONBLOCK: i32 = 0o4000;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(O_NONBLOCK).open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(std::io::Error::other(format!("{}, not a regular file", special_kind(kind))));
    }
    Ok(file)
}

/// What a file that is neither a regular file nor a folder is, in words.
fn special_kind(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else if kind.is_dir() {
        "a folder"
    } else {
        "a special file"
    }
}

/// Whether the file's first bytes are an image's; an error when it cannot be read.
fn sniff_file(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; 16];
    let n = open_regular(path)?.read(&mut head)?;
    Ok(looks_like_image(&head[..n]))
}

/// Why the walk could not use the path of `error`: a dangling link, a loop, an unreadable folder.
fn unusable_reason(error: &walkdir::Error) -> String {
    if let Some(ancestor) = error.loop_ancestor() {
        return format!("symbolic link loop (back to {})", encode_os(ancestor.as_os_str()));
    }
    let path = error.path().unwrap_or(Path::new(""));
    let dangling =
        std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) && std::fs::metadata(path).is_err();
    let io = error.io_error().map_or_else(|| error.to_string(), ToString::to_string);
    if dangling {
        format!("dangling symbolic link (its target cannot be reached: {io})")
    } else if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        format!("cannot list the folder: {io}")
    } else {
        format!("cannot read: {io}")
    }
}

pub(super) fn is_gzip(path: &Path) -> std::io::Result<bool> {
    let mut magic = [0u8; 2];
    let n = File::open(path)?.read(&mut magic)?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

impl ImageSource {
    /// Opens `path` as the kind of source it is: a folder with `data.mdb` is LMDB, another folder
    /// a folder tree, a file a tar archive (gzip-compressed or not).
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        Self::open_with(path, &SourceOptions::default())
    }

    /// [`Self::open`] with the settings that the archive kinds of [`super::sources`] take; those
    /// kinds (a `.zip`, `.parquet`, a tar of tars or of WebDataset samples, a folder of Parquet
    /// files or of tars, a brace pattern of shards) are recognised first.
    pub fn open_with(path: &Path, options: &SourceOptions) -> Result<Self, SourceError> {
        if !path.join("data.mdb").is_file() {
            if let Some(archive) = sources::detect(path, options)? {
                return Ok(Self::Archive(archive));
            }
        }
        let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SourceError::Missing { path: path.to_owned() },
            _ => SourceError::Io { path: path.to_owned(), source },
        })?;
        if meta.is_dir() {
            if path.join("data.mdb").is_file() {
                return Ok(Self::Lmdb { path: path.to_owned() });
            }
            return Self::list_folder(path);
        }
        if !meta.is_file() {
            // A FIFO named x.tar would block the read of the archive forever.
            return Err(SourceError::Special { path: path.to_owned(), kind: special_kind(meta.file_type()) });
        }
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        if name.ends_with(".mdb") {
            return Ok(Self::Lmdb { path: path.to_owned() });
        }
        if name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            return Ok(Self::Tar { path: path.to_owned() });
        }
        Err(SourceError::UnknownKind { path: path.to_owned() })
    }

    fn list_folder(root: &Path) -> Result<Self, SourceError> {
        let mut entries = Vec::new();
        let mut ignored = 0;
        let mut walker = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name().into_iter();
        let relative_of = |path: &Path| path.strip_prefix(root).unwrap_or(path).to_owned();
        while let Some(entry) = walker.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.depth() == 0 => {
                    let source = e.into_io_error().unwrap_or_else(|| std::io::Error::other("symlink loop"));
                    return Err(SourceError::Io { path: root.to_owned(), source });
                }
                Err(e) => {
                    let relative = relative_of(e.path().unwrap_or(root));
                    entries.push(FolderEntry { relative, kind: EntryKind::Unusable(unusable_reason(&e)) });
                    continue;
                }
            };
            if entry.depth() == 0 {
                continue;
            }
            let relative = relative_of(entry.path());
            let kind = entry.file_type();
            if is_hidden(entry.file_name()) {
                if kind.is_dir() {
                    walker.skip_current_dir();
                }
                entries.push(FolderEntry { relative, kind: EntryKind::Hidden { folder: kind.is_dir() } });
                continue;
            }
            if kind.is_dir() {
                continue;
            }
            let found = if !kind.is_file() {
                EntryKind::Unusable(format!("{}, not a regular file: not read", special_kind(kind)))
            } else if has_image_extension(&entry.file_name().to_string_lossy()) {
                EntryKind::File
            } else {
                match sniff_file(entry.path()) {
                    Ok(true) => EntryKind::File,
                    Ok(false) => {
                        ignored += 1;
                        continue;
                    }
                    Err(e) => EntryKind::Unusable(format!("cannot read: {e}")),
                }
            };
            entries.push(FolderEntry { relative, kind: found });
        }
        Ok(Self::Folder { root: root.to_owned(), entries, ignored })
    }

    /// The number of records, where it is known without reading the source through.
    pub fn len_hint(&self) -> Option<u64> {
        match self {
            Self::Folder { entries, .. } => Some(entries.len() as u64),
            Self::Tar { .. } => None,
            Self::Lmdb { path } => lmdb_len(path).ok(),
            Self::Archive(archive) => archive.len_hint(),
        }
    }

    /// Records that are not hidden entries, where it is known without reading the source
    /// through: zero means there is nothing to work on.
    pub fn inputs_hint(&self) -> Option<u64> {
        match self {
            Self::Folder { entries, .. } => {
                Some(entries.iter().filter(|e| !matches!(e.kind, EntryKind::Hidden { .. })).count() as u64)
            }
            other => other.len_hint(),
        }
    }

    /// Hidden files and folders a folder walk passed over (each a skipped record).
    pub fn hidden(&self) -> u64 {
        match self {
            Self::Folder { entries, .. } => {
                entries.iter().filter(|e| matches!(e.kind, EntryKind::Hidden { .. })).count() as u64
            }
            _ => 0,
        }
    }

    /// Files a folder walk passed over because they are not images by name or by content.
    pub fn ignored(&self) -> u64 {
        match self {
            Self::Folder { ignored, .. } => *ignored,
            _ => 0,
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Self::Folder { root, .. } => root,
            Self::Tar { path } | Self::Lmdb { path } => path,
            Self::Archive(archive) => archive.path(),
        }
    }

    /// Calls `visit` with every record in order. `wanted(index)` says which records to load;
    /// the others arrive as [`RecordData::NotLoaded`]. Records over `max_bytes` arrive as
    /// [`RecordData::Unreadable`]. `visit` may stop the walk early.
    pub fn for_each_record(
        &self,
        wanted: &dyn Fn(u64) -> bool,
        max_bytes: u64,
        visit: &mut dyn FnMut(Record) -> ControlFlow<()>,
    ) -> Result<(), SourceError> {
        match self {
            Self::Folder { root, entries, .. } => {
                for (index, entry) in entries.iter().enumerate() {
                    if visit(folder_record(root, index as u64, entry, wanted)).is_break() {
                        break;
                    }
                }
                Ok(())
            }
            Self::Tar { path } => walk_tar(path, wanted, max_bytes, visit),
            Self::Lmdb { path } => walk_lmdb(path, wanted, max_bytes, visit),
            Self::Archive(archive) => archive.for_each_record(wanted, max_bytes, visit),
        }
    }
}

/// The record of one folder entry; its bytes are read later, by whoever processes it.
fn folder_record(root: &Path, index: u64, entry: &FolderEntry, wanted: &dyn Fn(u64) -> bool) -> Record {
    let mut name = encode_os(entry.relative.as_os_str());
    let class = match entry.kind {
        // Not inputs: they must not add a class (and so renumber the others).
        EntryKind::Hidden { folder } => {
            if folder {
                name.push('/');
            }
            None
        }
        _ => class_of(&entry.relative),
    };
    let data = match &entry.kind {
        _ if !wanted(index) => RecordData::NotLoaded,
        EntryKind::File => RecordData::File(root.join(&entry.relative)),
        EntryKind::Hidden { folder } => RecordData::Skipped(hidden_reason(*folder)),
        EntryKind::Unusable(why) => RecordData::Unreadable(why.clone()),
    };
    Record { index, name, class, data }
}
