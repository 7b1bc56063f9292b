//! LSUN's LMDB export (key -> encoded image bytes), opened read-only without a lock: its record
//! count, its records in key order, and a cut data.mdb refused with its size and the meta page's.

use std::ops::ControlFlow;
use std::path::Path;

use super::names::encode_name;
use super::source::{Record, RecordData, SourceError};

fn open_lmdb(path: &Path) -> Result<heed::Env, SourceError> {
    let lmdb = |e: heed::Error| SourceError::Lmdb { path: path.to_owned(), message: e.to_string() };
    let sub_dir = path.is_dir();
    let data_file = if sub_dir { path.join("data.mdb") } else { path.to_owned() };
    let size =
        std::fs::metadata(&data_file).map_err(|source| SourceError::Io { path: data_file.clone(), source })?.len();
    if let Some(needed) = lmdb_size_from_meta(&data_file) {
        if size < needed {
            // LMDB maps the pages its meta page names; reading one past the end of the file kills
            // the process with SIGBUS, so a cut file (an interrupted download) is refused here.
            let message = format!(
                "{} is cut: {size} bytes, where its meta page says {needed} (an incomplete download or copy?)",
                data_file.display()
            );
            return Err(SourceError::Lmdb { path: path.to_owned(), message });
        }
    }
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

/// The size the newer of an LMDB file's two meta pages says the file has ((last page + 1) x page
/// size), for 64-bit LMDB files; None when the file does not start like one (LMDB then says why).
fn lmdb_size_from_meta(data_file: &Path) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    // A meta page: a 16-byte page header, then magic, version, address, map size, the free and
    // main databases' records (48 bytes each; the first's leading u32 is the page size), last page,
    // transaction id.
    const MAGIC: u32 = 0xBEEF_C0DE;
    let mut file = std::fs::File::open(data_file).ok()?;
    let mut meta = |offset: u64| -> Option<(u64, u64, u64)> {
        let mut page = [0u8; 152];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut page).ok()?;
        let u32_at = |at: usize| u32::from_le_bytes(page[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(page[at..at + 8].try_into().unwrap());
        (u32_at(16) == MAGIC).then(|| (u32_at(40) as u64, u64_at(136), u64_at(144)))
    };
    let (page_size, last_page, txn) = meta(0)?;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return None;
    }
    let (_, last_page, _) = match meta(page_size) {
        Some(second) if second.2 > txn => second,
        _ => (page_size, last_page, txn),
    };
    last_page.checked_add(1)?.checked_mul(page_size)
}

pub(super) fn lmdb_len(path: &Path) -> Result<u64, SourceError> {
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

pub(super) fn walk_lmdb(
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
        let name = encode_name(key);
        if visit(Record { index, name, class: None, data }).is_break() {
            break;
        }
    }
    Ok(())
}
