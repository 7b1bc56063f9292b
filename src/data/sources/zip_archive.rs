//! Zip archives (CelebA's `img_align_celeba.zip`), read through the central directory at the
//! archive's end: the directory is streamed entry by entry (never held whole, so memory does not
//! grow with the archive), and a member's bytes are read by seeking to its local header only when
//! the caller wants it, so a `--shard` reads only its own members' data. Stored and deflated
//! members are read (what zip tools write); each is checked against its CRC-32. A record's class
//! is the folder that holds it inside the zip, as for a folder.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use flate2::{Decompress, FlushDecompress};

use super::Emitter;
use crate::data::names::encode_name;
use crate::data::source::{class_of, has_image_extension, in_hidden_place, looks_like_image, RecordData, SourceError};

#[derive(Debug)]
pub struct ZipSource {
    pub path: PathBuf,
    /// Where the central directory starts, and how many entries it lists.
    directory: u64,
    entries: u64,
}

const END_SIGNATURE: u32 = 0x0605_4b50;
const END64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const END64_SIGNATURE: u32 = 0x0606_4b50;
const ENTRY_SIGNATURE: u32 = 0x0201_4b50;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// One entry of the central directory.
struct Entry {
    name: Vec<u8>,
    method: u16,
    flags: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    local_header: u64,
    /// The entry's Unix mode, when the archive was made on Unix.
    unix_mode: Option<u32>,
}

impl ZipSource {
    /// Finds the central directory from the end record (zip64's too); a file without one (a cut
    /// download) is refused naming the file.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io { path: path.to_owned(), source };
        let bad = |why: &str| SourceError::Io { path: path.to_owned(), source: std::io::Error::other(why.to_owned()) };
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        // The end record is the last 22 bytes but a comment of up to 65,535 bytes.
        let tail_len = len.min(22 + 65_535);
        let mut tail = vec![0u8; tail_len as usize];
        file.seek(SeekFrom::Start(len - tail_len)).map_err(io)?;
        file.read_exact(&mut tail).map_err(io)?;
        let at =
            (0..tail.len().saturating_sub(21)).rev().find(|&i| u32_at(&tail, i) == END_SIGNATURE).ok_or_else(|| {
                bad("not a complete zip archive: no end-of-central-directory record (a cut download?); fetch it again")
            })?;
        let end = &tail[at..];
        let (mut entries, mut directory) = (u16_at(end, 10) as u64, u32_at(end, 16) as u64);
        let end_offset = len - tail_len + at as u64;
        if (entries == 0xFFFF || directory == 0xFFFF_FFFF) && end_offset >= 20 {
            let mut locator = [0u8; 20];
            file.seek(SeekFrom::Start(end_offset - 20)).map_err(io)?;
            file.read_exact(&mut locator).map_err(io)?;
            if u32_at(&locator, 0) == END64_LOCATOR_SIGNATURE {
                let mut end64 = [0u8; 56];
                file.seek(SeekFrom::Start(u64_at(&locator, 8))).map_err(io)?;
                file.read_exact(&mut end64).map_err(io)?;
                if u32_at(&end64, 0) != END64_SIGNATURE {
                    return Err(bad("damaged zip64 end record"));
                }
                (entries, directory) = (u64_at(&end64, 32), u64_at(&end64, 48));
            }
        }
        if directory > len {
            return Err(bad("the central directory lies past the end of the file (a cut download?); fetch it again"));
        }
        Ok(Self { path: path.to_owned(), directory, entries })
    }

    pub(crate) fn walk(&self, out: &mut Emitter) -> Result<(), SourceError> {
        let io = |source| SourceError::Io { path: self.path.clone(), source };
        let mut listing = BufReader::with_capacity(1 << 16, File::open(&self.path).map_err(io)?);
        listing.seek(SeekFrom::Start(self.directory)).map_err(io)?;
        let data = File::open(&self.path).map_err(io)?;
        let mut inflater = Decompress::new(false);
        for number in 0..self.entries {
            let entry = read_entry(&mut listing).map_err(|e| {
                io(std::io::Error::other(format!("central directory entry {number} of {}: {e}", self.entries)))
            })?;
            if entry.name.ends_with(b"/") {
                continue;
            }
            if visit_entry(&entry, &data, &mut inflater, out).is_break() {
                break;
            }
        }
        Ok(())
    }
}

fn visit_entry(entry: &Entry, data: &File, inflater: &mut Decompress, out: &mut Emitter) -> ControlFlow<()> {
    use std::os::unix::ffi::OsStrExt;
    let member = Path::new(std::ffi::OsStr::from_bytes(&entry.name));
    let name = encode_name(&entry.name);
    if in_hidden_place(member) {
        // Also macOS's __MACOSX/._x.jpg companions.
        return out.emit_hidden(name);
    }
    const S_IFMT: u32 = 0o170_000;
    if let Some(mode) = entry.unix_mode.filter(|m| m & S_IFMT != 0 && m & S_IFMT != 0o100_000) {
        let what = if mode & S_IFMT == 0o120_000 { "a symbolic link" } else { "a special file" };
        return out.emit_failed(name, format!("{what} inside the zip, not a regular file: not read"));
    }
    let file_name = member.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !has_image_extension(&file_name) {
        match read_head(entry, data, inflater, 16) {
            Ok(head) if looks_like_image(&head) => {}
            Ok(_) => return ControlFlow::Continue(()),
            Err(e) => return out.emit_failed(name, e),
        }
    }
    let class = class_of(member);
    if !out.wants_next() {
        return out.emit(name, class, RecordData::NotLoaded);
    }
    let record = if entry.size > out.max_bytes {
        RecordData::Unreadable(format!("file of {} bytes exceeds the limit of {}", entry.size, out.max_bytes))
    } else {
        read_member(entry, data).unwrap_or_else(RecordData::Unreadable)
    };
    out.emit(name, class, record)
}

/// The next central directory entry.
fn read_entry(listing: &mut impl Read) -> std::io::Result<Entry> {
    let mut fixed = [0u8; 46];
    listing.read_exact(&mut fixed)?;
    if u32_at(&fixed, 0) != ENTRY_SIGNATURE {
        return Err(std::io::Error::other("bad signature"));
    }
    let (name_len, extra_len, comment_len) =
        (u16_at(&fixed, 28) as usize, u16_at(&fixed, 30) as usize, u16_at(&fixed, 32) as usize);
    let mut variable = vec![0u8; name_len + extra_len + comment_len];
    listing.read_exact(&mut variable)?;
    let made_on_unix = fixed[5] == 3;
    let external = u32_at(&fixed, 38);
    let mut entry = Entry {
        name: variable[..name_len].to_vec(),
        method: u16_at(&fixed, 10),
        flags: u16_at(&fixed, 8),
        crc: u32_at(&fixed, 16),
        compressed: u32_at(&fixed, 20) as u64,
        size: u32_at(&fixed, 24) as u64,
        local_header: u32_at(&fixed, 42) as u64,
        unix_mode: made_on_unix.then_some(external >> 16),
    };
    apply_zip64(&mut entry, &variable[name_len..name_len + extra_len]);
    Ok(entry)
}

/// Takes the 64-bit sizes and offset from the zip64 extra field, for those the entry marks.
fn apply_zip64(entry: &mut Entry, mut extra: &[u8]) {
    while extra.len() >= 4 {
        let (id, len) = (u16_at(extra, 0), u16_at(extra, 2) as usize);
        let body = &extra[4..(4 + len).min(extra.len())];
        if id == 1 {
            let mut at = 0;
            for field in [&mut entry.size, &mut entry.compressed, &mut entry.local_header] {
                if *field == 0xFFFF_FFFF && body.len() >= at + 8 {
                    *field = u64_at(body, at);
                    at += 8;
                }
            }
        }
        extra = &extra[(4 + len).min(extra.len())..];
    }
}

/// A deflated member's data as stored, inflated and checked against its CRC-32 by whoever
/// processes the record ([`crate::data::Record::load`]), so that inflating spreads over the
/// workers as a folder's reads do, instead of holding up the one thread that reads the archive.
#[derive(Debug)]
pub struct Deflated {
    raw: Vec<u8>,
    size: u64,
    crc: u32,
}

impl Deflated {
    pub fn inflate(&self) -> Result<Vec<u8>, String> {
        thread_local! {
            static INFLATER: std::cell::RefCell<Decompress> = std::cell::RefCell::new(Decompress::new(false));
        }
        let bytes = INFLATER.with(|inflater| inflate(&self.raw, self.size, &mut inflater.borrow_mut()))?;
        check(&bytes, self.size, self.crc)?;
        Ok(bytes)
    }
}

fn inflate(raw: &[u8], want: u64, inflater: &mut Decompress) -> Result<Vec<u8>, String> {
    inflater.reset(false);
    let mut out = Vec::with_capacity(want as usize);
    inflater.decompress_vec(raw, &mut out, FlushDecompress::Finish).map_err(|e| format!("damaged member data: {e}"))?;
    Ok(out)
}

/// Whether whole member data has its recorded size and CRC-32.
fn check(bytes: &[u8], size: u64, recorded: u32) -> Result<(), String> {
    if bytes.len() as u64 != size {
        return Err(format!("member data ends after {} of {size} bytes (a damaged archive)", bytes.len()));
    }
    let crc = crc32(bytes);
    if crc != recorded {
        return Err(format!("CRC-32 {crc:08x} does not match the recorded {recorded:08x} (damaged data)"));
    }
    Ok(())
}

/// A member's data as stored (at most what `limit` bytes of content need, when given): two
/// positional reads, its local header then its data.
fn read_stored(entry: &Entry, file: &File, limit: Option<u64>) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::FileExt;
    if entry.flags & 1 != 0 {
        return Err("encrypted member: not read".into());
    }
    if !matches!(entry.method, 0 | 8) {
        return Err(format!("compression method {} is not read (only stored and deflate)", entry.method));
    }
    let cannot = |e: std::io::Error| format!("cannot read the member at offset {}: {e}", entry.local_header);
    let mut local = [0u8; 30];
    file.read_exact_at(&mut local, entry.local_header).map_err(cannot)?;
    if u32_at(&local, 0) != LOCAL_SIGNATURE {
        return Err(format!("no local header at offset {} (a damaged archive)", entry.local_header));
    }
    let data_at = entry.local_header + 30 + u16_at(&local, 26) as u64 + u16_at(&local, 28) as u64;
    let compressed = match (limit, entry.method) {
        (None, _) => entry.compressed,
        // The head of a deflated member needs only its first compressed bytes.
        (Some(_), 8) => entry.compressed.min(4096),
        (Some(limit), _) => entry.compressed.min(limit),
    };
    let mut raw = vec![0u8; compressed as usize];
    file.read_exact_at(&mut raw, data_at).map_err(cannot)?;
    Ok(raw)
}

/// The first `limit` bytes of a member's content (to tell an image by its first bytes).
fn read_head(entry: &Entry, file: &File, inflater: &mut Decompress, limit: u64) -> Result<Vec<u8>, String> {
    let raw = read_stored(entry, file, Some(limit))?;
    if entry.method == 0 {
        return Ok(raw);
    }
    inflate(&raw, limit.min(entry.size), inflater)
}

/// A whole member: stored data checked here, deflated data handed on to be inflated by a worker.
fn read_member(entry: &Entry, file: &File) -> Result<RecordData, String> {
    let raw = read_stored(entry, file, None)?;
    if entry.method == 0 {
        check(&raw, entry.size, entry.crc)?;
        return Ok(RecordData::Bytes(raw));
    }
    Ok(RecordData::Deflated(Deflated { raw, size: entry.size, crc: entry.crc }))
}

/// CRC-32 (IEEE), zip's checksum (flate2's, which uses the CPU's instructions where there are).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}
