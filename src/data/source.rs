//! Image sources shared by every stage: a folder tree, a tar archive read as a stream (plain or
//! gzip), and LSUN's LMDB export (key -> encoded image bytes).
//!
//! A source hands out [`Record`]s in a stable order (sorted paths, archive order, key order), each
//! with a global index; resume and `--shard` rely on that order. Only the records a caller wants
//! are loaded: the others are walked past without reading their bytes where the format allows.

use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// File name extensions taken as images without looking at their content.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "jpe", "jfif", "png", "webp", "gif", "bmp", "tif", "tiff"];

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: no such file or folder")]
    Missing { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a folder, a .tar/.tar.gz archive or an LMDB folder (data.mdb)")]
    UnknownKind { path: PathBuf },
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
    /// A record the caller did not want; its bytes were not read.
    NotLoaded,
    /// Could not be read; the reason names the problem, the record's name the file.
    Unreadable(String),
}

#[derive(Debug)]
pub struct Record {
    /// Position in the source's stable order, counted over all records.
    pub index: u64,
    /// Path relative to the folder, path inside the archive, or LMDB key.
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
                let file = File::open(path).map_err(|e| e.to_string())?;
                let len = file.metadata().map_err(|e| e.to_string())?.len();
                if len > max_bytes {
                    return Err(format!("file of {len} bytes exceeds the limit of {max_bytes}"));
                }
                let mut bytes = Vec::with_capacity(len as usize);
                file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
                Ok(std::borrow::Cow::Owned(bytes))
            }
            RecordData::NotLoaded => Err("record was not loaded".into()),
            RecordData::Unreadable(why) => Err(why.clone()),
        }
    }
}

#[derive(Debug)]
pub enum ImageSource {
    Folder { root: PathBuf, files: Vec<PathBuf>, ignored: u64 },
    Tar { path: PathBuf },
    Lmdb { path: PathBuf },
}

fn has_image_extension(name: &str) -> bool {
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

fn is_hidden(name: &str) -> bool {
    // Dot files include macOS's AppleDouble "._x.jpg" companions, which are not images.
    name.starts_with('.')
}

/// The class of a record at `relative` path: the name of its immediate folder, if it has one.
fn class_of(relative: &Path) -> Option<String> {
    let parent = relative.parent()?;
    let name = parent.file_name()?.to_string_lossy().into_owned();
    (!name.is_empty()).then_some(name)
}

fn sniff_file(path: &Path) -> bool {
    let mut head = [0u8; 16];
    let Ok(mut f) = File::open(path) else { return false };
    let n = f.read(&mut head).unwrap_or(0);
    looks_like_image(&head[..n])
}

fn is_gzip(path: &Path) -> std::io::Result<bool> {
    let mut magic = [0u8; 2];
    let n = File::open(path)?.read(&mut magic)?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

impl ImageSource {
    /// Opens `path` as the kind of source it is: a folder with `data.mdb` is LMDB, another folder
    /// a folder tree, a file a tar archive (gzip-compressed or not).
    pub fn open(path: &Path) -> Result<Self, SourceError> {
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
        let mut files = Vec::new();
        let mut ignored = 0;
        let walker = walkdir::WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !is_hidden(&e.file_name().to_string_lossy()));
        for entry in walker {
            let entry = entry.map_err(|e| SourceError::Io {
                path: e.path().unwrap_or(root).to_owned(),
                source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("symlink loop")),
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy();
            if has_image_extension(&name) || sniff_file(entry.path()) {
                files.push(entry.path().strip_prefix(root).unwrap_or(entry.path()).to_owned());
            } else {
                ignored += 1;
            }
        }
        Ok(Self::Folder { root: root.to_owned(), files, ignored })
    }

    /// The number of records, where it is known without reading the source through.
    pub fn len_hint(&self) -> Option<u64> {
        match self {
            Self::Folder { files, .. } => Some(files.len() as u64),
            Self::Tar { .. } => None,
            Self::Lmdb { path } => lmdb_len(path).ok(),
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
            Self::Folder { root, files, .. } => {
                for (index, rel) in files.iter().enumerate() {
                    let index = index as u64;
                    let data = if wanted(index) { RecordData::File(root.join(rel)) } else { RecordData::NotLoaded };
                    let record = Record { index, name: rel.to_string_lossy().into_owned(), class: class_of(rel), data };
                    if visit(record).is_break() {
                        break;
                    }
                }
                Ok(())
            }
            Self::Tar { path } => walk_tar(path, wanted, max_bytes, visit),
            Self::Lmdb { path } => walk_lmdb(path, wanted, max_bytes, visit),
        }
    }
}

fn walk_tar(
    path: &Path,
    wanted: &dyn Fn(u64) -> bool,
    max_bytes: u64,
    visit: &mut dyn FnMut(Record) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    let io = |source| SourceError::Io { path: path.to_owned(), source };
    let file = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
    let reader: Box<dyn Read> =
        if is_gzip(path).map_err(io)? { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
    let mut archive = tar::Archive::new(reader);
    let mut index = 0u64;
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let entry_path = entry.path().map_err(io)?.into_owned();
        let name = entry_path.to_string_lossy().into_owned();
        let file_name = entry_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if is_hidden(&file_name) {
            continue;
        }
        // Entries without an image extension are sniffed: their first bytes decide.
        let mut head = Vec::with_capacity(16);
        if !has_image_extension(&file_name) {
            (&mut entry).take(16).read_to_end(&mut head).map_err(io)?;
            if !looks_like_image(&head) {
                continue;
            }
        }
        let size = entry.size();
        let data = if !wanted(index) {
            RecordData::NotLoaded
        } else if size > max_bytes {
            RecordData::Unreadable(format!("file of {size} bytes exceeds the limit of {max_bytes}"))
        } else {
            let mut bytes = head;
            bytes.reserve(size as usize);
            match entry.read_to_end(&mut bytes) {
                Ok(_) => RecordData::Bytes(bytes),
                Err(e) => return Err(io(e)),
            }
        };
        let record = Record { index, name, class: class_of(&entry_path), data };
        index += 1;
        if visit(record).is_break() {
            break;
        }
    }
    Ok(())
}

fn open_lmdb(path: &Path) -> Result<heed::Env, SourceError> {
    let lmdb = |e: heed::Error| SourceError::Lmdb { path: path.to_owned(), message: e.to_string() };
    let sub_dir = path.is_dir();
    let data_file = if sub_dir { path.join("data.mdb") } else { path.to_owned() };
    let size =
        std::fs::metadata(&data_file).map_err(|source| SourceError::Io { path: data_file.clone(), source })?.len();
    let mut options = heed::EnvOpenOptions::new();
    // The map must cover the file; round up to whole MiB.
    options.map_size((size as usize).div_ceil(1 << 20).max(1) << 20);
    let mut flags = heed::EnvFlags::READ_ONLY | heed::EnvFlags::NO_LOCK;
    if !sub_dir {
        flags |= heed::EnvFlags::NO_SUB_DIR;
    }
    // SAFETY: the environment is opened read-only and without a lock file (inputs are never
    // written); no other handle of this process maps the same file while it is open.
    unsafe {
        options.flags(flags);
        options.open(path).map_err(lmdb)
    }
}

fn lmdb_len(path: &Path) -> Result<u64, SourceError> {
    let env = open_lmdb(path)?;
    let lmdb = |e: heed::Error| SourceError::Lmdb { path: path.to_owned(), message: e.to_string() };
    let rtxn = env.read_txn().map_err(lmdb)?;
    let db: Option<heed::Database<heed::types::Bytes, heed::types::Bytes>> =
        env.open_database(&rtxn, None).map_err(lmdb)?;
    Ok(match db {
        Some(db) => db.len(&rtxn).map_err(lmdb)?,
        None => 0,
    })
}

fn walk_lmdb(
    path: &Path,
    wanted: &dyn Fn(u64) -> bool,
    max_bytes: u64,
    visit: &mut dyn FnMut(Record) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    let env = open_lmdb(path)?;
    let lmdb = |e: heed::Error| SourceError::Lmdb { path: path.to_owned(), message: e.to_string() };
    let rtxn = env.read_txn().map_err(lmdb)?;
    let db: Option<heed::Database<heed::types::Bytes, heed::types::Bytes>> =
        env.open_database(&rtxn, None).map_err(lmdb)?;
    let Some(db) = db else { return Ok(()) };
    for (index, item) in db.iter(&rtxn).map_err(lmdb)?.enumerate() {
        let index = index as u64;
        let (key, value) = item.map_err(lmdb)?;
        let data = if !wanted(index) {
            RecordData::NotLoaded
        } else if value.len() as u64 > max_bytes {
            RecordData::Unreadable(format!("value of {} bytes exceeds the limit of {max_bytes}", value.len()))
        } else {
            RecordData::Bytes(value.to_vec())
        };
        let name = String::from_utf8(key.to_vec()).unwrap_or_else(|_| key.iter().map(|b| format!("{b:02x}")).collect());
        if visit(Record { index, name, class: None, data }).is_break() {
            break;
        }
    }
    Ok(())
}
