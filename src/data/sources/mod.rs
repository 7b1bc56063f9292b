//! Inputs as users download them, beside the folder, tar and LMDB sources of [`super::source`]:
//! ImageNet's tar of per-class tars ([`tar_of_tars`]), zip archives ([`zip_archive`]), Parquet
//! files or shards as the Hugging Face Hub serves them ([`parquet_shards`]) and WebDataset tar
//! shards ([`webdataset`]).
//!
//! Each hands out [`Record`]s through the same visitor as the other sources, in a stable order
//! (archive order, central-directory order, row order, file order), with the same treatment of
//! hidden members (skipped rows), damaged members (failed rows naming the member) and bytes of
//! unwanted records (not read). None holds more than one member, row group page or sample at a
//! time, so memory does not grow with the archive.

pub mod parquet_shards;
pub mod tar_of_tars;
pub mod webdataset;
pub mod zip_archive;

use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::source::{has_image_extension, hidden_reason, looks_like_image, Record, RecordData, SourceError};

/// Settings of the archive sources that a file cannot say by itself (`[run]` input_* keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOptions {
    /// Parquet: the column holding the images (a struct with `bytes`, or a binary column); found
    /// by type when unset.
    pub image_column: Option<String>,
    /// Parquet: the column used as the class; found from the Hub's metadata (a ClassLabel
    /// feature) or a top-level integer or string column named `label` when unset.
    pub label_column: Option<String>,
    /// WebDataset: the field of each sample's `.json` used as the class when it has no `.cls`.
    pub class_field: Option<String>,
}

/// A source kind of this module, opened.
#[derive(Debug)]
pub enum ArchiveSource {
    TarOfTars(tar_of_tars::TarOfTars),
    Zip(zip_archive::ZipSource),
    Parquet(parquet_shards::ParquetSource),
    WebDataset(webdataset::WebDataset),
}

impl ArchiveSource {
    pub fn path(&self) -> &Path {
        match self {
            Self::TarOfTars(s) => s.path(),
            Self::Zip(s) => &s.path,
            Self::Parquet(s) => &s.root,
            Self::WebDataset(s) => &s.root,
        }
    }

    /// The number of records where it is known without reading the archive through (Parquet's
    /// footers count their rows).
    pub fn len_hint(&self) -> Option<u64> {
        match self {
            Self::Parquet(s) => Some(s.rows()),
            _ => None,
        }
    }

    /// What kind of input this is, in words (for the start-up line).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TarOfTars(_) => "tar of tars",
            Self::Zip(_) => "zip",
            Self::Parquet(_) => "Parquet",
            Self::WebDataset(_) => "WebDataset",
        }
    }

    pub fn for_each_record(
        &self,
        wanted: &dyn Fn(u64) -> bool,
        max_bytes: u64,
        visit: &mut dyn FnMut(Record) -> ControlFlow<()>,
    ) -> Result<(), SourceError> {
        let mut out = Emitter { next: 0, wanted, visit, max_bytes };
        match self {
            Self::TarOfTars(s) => s.walk(&mut out),
            Self::Zip(s) => s.walk(&mut out),
            Self::Parquet(s) => s.walk(&mut out),
            Self::WebDataset(s) => s.walk(&mut out),
        }
    }
}

/// Hands records to the visitor, numbering them in order.
pub(crate) struct Emitter<'a> {
    next: u64,
    wanted: &'a dyn Fn(u64) -> bool,
    visit: &'a mut dyn FnMut(Record) -> ControlFlow<()>,
    pub max_bytes: u64,
}

impl Emitter<'_> {
    /// Whether the caller wants the bytes of the next record.
    pub fn wants_next(&self) -> bool {
        (self.wanted)(self.next)
    }

    /// Whether the caller wants the record `ahead` places after the next one.
    pub fn wants_ahead(&self, ahead: u64) -> bool {
        (self.wanted)(self.next + ahead)
    }

    pub fn emit(&mut self, name: String, class: Option<String>, data: RecordData) -> ControlFlow<()> {
        let index = self.next;
        self.next += 1;
        let data = if (self.wanted)(index) { data } else { RecordData::NotLoaded };
        (self.visit)(Record { index, name, class, data })
    }

    /// A hidden member: a skipped row without a class.
    pub fn emit_hidden(&mut self, name: String) -> ControlFlow<()> {
        self.emit(name, None, RecordData::Skipped(hidden_reason(false)))
    }

    pub fn emit_failed(&mut self, name: String, reason: String) -> ControlFlow<()> {
        self.emit(name, None, RecordData::Unreadable(reason))
    }
}

/// Whether a member's name is that of a tar archive (`.tar`, `.tar.gz`, `.tgz`).
pub(crate) fn is_tar_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".tar") || lower.ends_with(".tar.gz") || lower.ends_with(".tgz")
}

/// A tar archive's name without its extension: ImageNet's class tar `n01440764.tar` -> `n01440764`.
pub(crate) fn tar_stem(name: &str) -> &str {
    let lower = name.to_ascii_lowercase();
    for ext in [".tar.gz", ".tgz", ".tar"] {
        if lower.ends_with(ext) {
            return &name[..name.len() - ext.len()];
        }
    }
    name
}

/// A reader over `inner` that undoes gzip when its first bytes are gzip's magic.
pub(crate) fn maybe_gunzip<'a, R: Read + 'a>(inner: R) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(1 << 16, inner);
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip { Box::new(flate2::read::MultiGzDecoder::new(buffered)) } else { Box::new(buffered) })
}

/// Opens an archive file for streaming, gzip undone.
pub(crate) fn open_stream(path: &Path) -> Result<Box<dyn Read>, SourceError> {
    let file = std::fs::File::open(path).map_err(|source| SourceError::Io { path: path.to_owned(), source })?;
    maybe_gunzip(BufReader::with_capacity(1 << 20, file))
        .map_err(|source| SourceError::Io { path: path.to_owned(), source })
}

/// What a tar member holds: `None` when it is not an image (no image extension, and its first
/// bytes are no image's); otherwise its bytes when wanted and within `max_bytes`.
pub(crate) fn tar_member_data<R: Read>(
    entry: &mut tar::Entry<R>,
    file_name: &str,
    wanted: bool,
    max_bytes: u64,
) -> std::io::Result<Option<RecordData>> {
    let mut head = Vec::with_capacity(16);
    if !has_image_extension(file_name) {
        entry.by_ref().take(16).read_to_end(&mut head)?;
        if !looks_like_image(&head) {
            return Ok(None);
        }
    }
    let size = entry.size();
    if !wanted {
        return Ok(Some(RecordData::NotLoaded));
    }
    if size > max_bytes {
        return Ok(Some(RecordData::Unreadable(format!("file of {size} bytes exceeds the limit of {max_bytes}"))));
    }
    let mut bytes = head;
    bytes.reserve(size as usize);
    Ok(Some(match entry.read_to_end(&mut bytes) {
        Ok(_) => RecordData::Bytes(bytes),
        Err(e) => RecordData::Unreadable(format!("cannot read the member: {e}")),
    }))
}

/// Expands one `{a..b}` range (zero-padded as `a` is written) or `{x,y,z}` list in `pattern`,
/// recursively: WebDataset's shard patterns, `train-{000000..000146}.tar`. `None` without braces.
pub fn expand_braces(pattern: &str) -> Option<Vec<String>> {
    let open = pattern.find('{')?;
    let close = open + pattern[open..].find('}')?;
    let (head, body, tail) = (&pattern[..open], &pattern[open + 1..close], &pattern[close + 1..]);
    let items: Vec<String> = if let Some((a, b)) = body.split_once("..") {
        let (from, to): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
        if to < from || to - from > 10_000_000 {
            return None;
        }
        let width = if a.starts_with('0') { a.len() } else { 0 };
        (from..=to).map(|i| format!("{i:0width$}")).collect()
    } else {
        body.split(',').map(str::to_owned).collect()
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let joined = format!("{head}{item}{tail}");
        match expand_braces(&joined) {
            Some(more) => out.extend(more),
            None => out.push(joined),
        }
    }
    Some(out)
}

/// What a folder given as input holds, decided from its first files (sorted, at most three levels
/// down, hidden entries passed over): images (a folder source), Parquet files, or tar archives.
pub(crate) enum FolderContent {
    Images,
    Parquet(Vec<PathBuf>),
    Tars(Vec<PathBuf>),
}

pub(crate) fn folder_content(root: &Path) -> FolderContent {
    let mut parquet = Vec::new();
    let mut tars = Vec::new();
    let walker = walkdir::WalkDir::new(root).max_depth(3).sort_by_file_name().into_iter();
    let visible = walker.filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in visible.filter_map(Result::ok) {
        if !entry.file_type().is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy();
        if has_image_extension(&name) {
            // A folder of images (perhaps beside an archive): read as a folder, as before.
            return FolderContent::Images;
        }
        if name.to_ascii_lowercase().ends_with(".parquet") {
            parquet.push(entry.into_path());
        } else if is_tar_name(&name) {
            tars.push(entry.into_path());
        }
    }
    if !parquet.is_empty() {
        FolderContent::Parquet(parquet)
    } else if !tars.is_empty() {
        FolderContent::Tars(tars)
    } else {
        FolderContent::Images
    }
}

/// Opens `path` as one of this module's kinds, when it is one: a `.zip` or `.parquet` file, a tar
/// whose first members are tars or WebDataset samples, a folder of Parquet files or of tars, or a
/// brace pattern of WebDataset shards that does not exist as a path. `None`: not one of them.
pub fn detect(path: &Path, options: &SourceOptions) -> Result<Option<ArchiveSource>, SourceError> {
    let io = |source| SourceError::Io { path: path.to_owned(), source };
    let Ok(meta) = std::fs::metadata(path) else {
        let text = path.to_string_lossy();
        return match expand_braces(&text) {
            Some(shards) => {
                webdataset::WebDataset::from_shards(path, shards.into_iter().map(PathBuf::from).collect(), options)
                    .map(|w| Some(ArchiveSource::WebDataset(w)))
            }
            None => Ok(None),
        };
    };
    if meta.is_dir() {
        return Ok(match folder_content(path) {
            FolderContent::Images => None,
            FolderContent::Parquet(files) => {
                Some(ArchiveSource::Parquet(parquet_shards::ParquetSource::open(path, files, options)?))
            }
            FolderContent::Tars(tars) => Some(tars_source(path, tars, options).map_err(io)?),
        });
    }
    if !meta.is_file() {
        return Ok(None);
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if name.ends_with(".zip") {
        return Ok(Some(ArchiveSource::Zip(zip_archive::ZipSource::open(path)?)));
    }
    if name.ends_with(".parquet") {
        let source = parquet_shards::ParquetSource::open(path, vec![path.to_owned()], options)?;
        return Ok(Some(ArchiveSource::Parquet(source)));
    }
    if is_tar_name(&name) {
        return Ok(match peek_tar(path).map_err(io)? {
            TarLayout::OfTars => Some(ArchiveSource::TarOfTars(tar_of_tars::TarOfTars::archive(path))),
            TarLayout::WebDataset => Some(ArchiveSource::WebDataset(webdataset::WebDataset::from_shards(
                path,
                vec![path.to_owned()],
                options,
            )?)),
            TarLayout::Flat => None,
        });
    }
    Ok(None)
}

/// A folder of tars: WebDataset shards when the first one is laid out as samples, else per-class
/// tars (ImageNet's outer tar unpacked one level).
fn tars_source(root: &Path, tars: Vec<PathBuf>, options: &SourceOptions) -> std::io::Result<ArchiveSource> {
    Ok(match peek_tar(&tars[0])? {
        TarLayout::WebDataset => ArchiveSource::WebDataset(
            webdataset::WebDataset::from_shards(root, tars, options).map_err(std::io::Error::other)?,
        ),
        _ => ArchiveSource::TarOfTars(tar_of_tars::TarOfTars::folder(root, tars)),
    })
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TarLayout {
    /// Images (and other files) in folders: the tar source of source.rs.
    Flat,
    /// Its first file member is itself a tar.
    OfTars,
    /// Its first members share a key (`x.jpg`, `x.cls`): samples.
    WebDataset,
}

/// Looks at the first file members of a tar (at most 16, only their headers and names).
pub(crate) fn peek_tar(path: &Path) -> std::io::Result<TarLayout> {
    let file = std::fs::File::open(path)?;
    let mut archive = tar::Archive::new(maybe_gunzip(BufReader::new(file))?);
    let mut keys: Vec<(String, String)> = Vec::new();
    let Ok(entries) = archive.entries() else { return Ok(TarLayout::Flat) };
    for entry in entries.take(16) {
        // A damaged archive is the tar source's to report.
        let Ok(entry) = entry else { break };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let base = name.rsplit('/').next().unwrap_or(&name);
        if base.starts_with('.') {
            continue;
        }
        if keys.is_empty() && is_tar_name(base) {
            return Ok(TarLayout::OfTars);
        }
        let (key, ext) = webdataset::split_key(&name);
        // Two members of one key, not both images (x.jpg beside x.png is two photos).
        let images = |e: &str| has_image_extension(&format!("x.{e}"));
        if keys.iter().any(|(k, e)| *k == key && *e != ext && !(images(e) && images(ext))) {
            return Ok(TarLayout::WebDataset);
        }
        keys.push((key.to_owned(), ext.to_owned()));
    }
    Ok(TarLayout::Flat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brace_patterns_expand_in_order() {
        assert_eq!(expand_braces("a-{0..2}.tar").unwrap(), ["a-0.tar", "a-1.tar", "a-2.tar"]);
        assert_eq!(expand_braces("s{008..010}.tar").unwrap(), ["s008.tar", "s009.tar", "s010.tar"]);
        assert_eq!(expand_braces("{a,b}/{1..2}").unwrap(), ["a/1", "a/2", "b/1", "b/2"]);
        assert_eq!(expand_braces("plain.tar"), None);
        assert_eq!(expand_braces("bad-{2..1}.tar"), None);
    }

    #[test]
    fn tar_stems() {
        assert_eq!(tar_stem("n01440764.tar"), "n01440764");
        assert_eq!(tar_stem("x.TAR.GZ"), "x");
        assert!(is_tar_name("a.tgz") && !is_tar_name("a.zip"));
    }
}
