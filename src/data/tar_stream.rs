//! A tar archive read as a stream (plain or gzip, detected by its magic bytes): members in archive
//! order, links and special files named and not followed, a cut or foreign archive named with the
//! last member read.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::names::encode_name;
use super::source::{
    class_of, has_image_extension, hidden_reason, in_hidden_place, is_gzip, looks_like_image, Record, RecordData,
    SourceError,
};

/// The member last read from an archive, to name where the archive broke.
struct LastMember {
    name: String,
    header_at: u64,
    size: u64,
}

/// What an archive that cannot be read as tar holds instead, from its first bytes.
fn not_tar_content(head: &[u8]) -> &'static str {
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        "a zip archive"
    } else if head.starts_with(&[0x1f, 0x8b]) {
        "gzip data"
    } else if looks_like_image(head) {
        "an image"
    } else if !head.is_empty() && head.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
        "text"
    } else {
        "data that is not a tar header"
    }
}

/// The error of an archive whose next header cannot be read, naming where: the member before it
/// (which may claim more bytes than the archive holds) or, at the start, what the file holds.
fn tar_header_error(path: &Path, last: Option<&LastMember>, stream: &str, e: std::io::Error) -> SourceError {
    let message = match last {
        Some(m) => format!(
            "after member {} (header at byte {} of the {stream}, {} bytes of data claimed): {e}",
            super::names::for_terminal(&m.name),
            m.header_at,
            m.size
        ),
        None => {
            let mut head = Vec::with_capacity(512);
            let what = File::open(path)
                .and_then(|f| f.take(512).read_to_end(&mut head))
                .map_or("unreadable data", |_| not_tar_content(&head));
            format!("not a tar archive: it holds {what} (at byte 0: {e})")
        }
    };
    SourceError::Io { path: path.to_owned(), source: std::io::Error::new(e.kind(), message) }
}

/// The record of a link or special member: never followed, a skipped row that says so.
fn link_member_reason(entry: &tar::Entry<'_, Box<dyn Read>>) -> Option<String> {
    let kind = entry.header().entry_type();
    let target =
        || entry.link_name_bytes().map(|t| super::names::for_terminal(&encode_name(&t))).unwrap_or_else(|| "?".into());
    if kind.is_symlink() {
        Some(format!("symbolic link member (to {}): not followed", target()))
    } else if kind.is_hard_link() {
        Some(format!("hard link member (to {}): not followed", target()))
    } else if matches!(kind, tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo) {
        Some("device or FIFO member: not read".into())
    } else {
        None
    }
}

pub(super) fn walk_tar(
    path: &Path,
    wanted: &dyn Fn(u64) -> bool,
    max_bytes: u64,
    visit: &mut dyn FnMut(Record) -> ControlFlow<()>,
) -> Result<(), SourceError> {
    let io = |source| SourceError::Io { path: path.to_owned(), source };
    let file = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
    let gzip = is_gzip(path).map_err(io)?;
    let stream = if gzip { "decompressed stream" } else { "file" };
    let reader: Box<dyn Read> = if gzip { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
    let mut archive = tar::Archive::new(reader);
    let mut index = 0u64;
    let mut last: Option<LastMember> = None;
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(|e| tar_header_error(path, last.as_ref(), stream, e))?;
        let entry_bytes = entry.path_bytes().into_owned();
        let name = encode_name(&entry_bytes);
        let header_at = entry.raw_header_position();
        last = Some(LastMember { name: name.clone(), header_at, size: entry.size() });
        let entry_path = Path::new(OsStr::from_bytes(&entry_bytes)).to_owned();
        let hidden = in_hidden_place(&entry_path);
        let link = if hidden { None } else { link_member_reason(&entry) };
        if !entry.header().entry_type().is_file() && link.is_none() {
            continue;
        }
        let file_name = entry_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if hidden || link.is_some() {
            let why = link.unwrap_or_else(|| hidden_reason(false));
            let data = if wanted(index) { RecordData::Skipped(why) } else { RecordData::NotLoaded };
            let class = if hidden { None } else { class_of(&entry_path) };
            let record = Record { index, name, class, data };
            index += 1;
            if visit(record).is_break() {
                break;
            }
            continue;
        }
        let broken = |e: std::io::Error| {
            format!("the archive breaks inside this member (header at byte {header_at} of the {stream}): {e}")
        };
        // Entries without an image extension are sniffed: their first bytes decide.
        let mut head = Vec::with_capacity(16);
        if !has_image_extension(&file_name) {
            if let Err(e) = (&mut entry).take(16).read_to_end(&mut head) {
                return Err(io(std::io::Error::new(e.kind(), format!("member {name}: {}", broken(e)))));
            }
            if !looks_like_image(&head) {
                continue;
            }
        }
        let size = entry.size();
        let mut stop = false;
        let data = if !wanted(index) {
            RecordData::NotLoaded
        } else if size > max_bytes {
            RecordData::Unreadable(format!("file of {size} bytes exceeds the limit of {max_bytes}"))
        } else {
            let mut bytes = head;
            bytes.reserve(size as usize);
            match entry.read_to_end(&mut bytes) {
                Ok(_) if bytes.len() as u64 == size => RecordData::Bytes(bytes),
                // tar stops quietly at the end of the file: a member cut short is said so.
                Ok(_) => {
                    stop = true;
                    RecordData::Unreadable(format!(
                        "the archive ends inside this member (header at byte {header_at} of the {stream}): {} of \
                         its {size} bytes",
                        bytes.len()
                    ))
                }
                Err(e) => {
                    stop = true;
                    RecordData::Unreadable(broken(e))
                }
            }
        };
        let record = Record { index, name, class: class_of(&entry_path), data };
        index += 1;
        if visit(record).is_break() || stop {
            break;
        }
    }
    Ok(())
}
