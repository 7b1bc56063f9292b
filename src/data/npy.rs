//! numpy's `.npy` format (version 1.0), the packed format users load with
//! `np.load(path, mmap_mode="r")`.
//!
//! Only what the pipeline stores: C-order arrays of `|u1` (images), `<i8` (labels) and `<f4`/`<f2`
//! (features). The writer streams rows, so a shard of any size is written with bounded memory: the
//! header is padded to a fixed length and rewritten with the final row count when the file is closed.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::fsutil::AtomicFile;
use crate::integrity::{FileRecord, HashingReader};

const MAGIC: &[u8] = b"\x93NUMPY";
/// Total header length (magic + version + length field + dict), a multiple of 64 as numpy asks.
/// 128 bytes leave room for any shape with up to four 20-digit dimensions.
const STREAM_HEADER_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a .npy file ({why})")]
    Format { path: PathBuf, why: String },
    #[error("{path}: holds dtype {found}, expected {expected}")]
    Dtype { path: PathBuf, found: String, expected: &'static str },
}

/// Element types the pipeline reads and writes.
pub trait NpyElement: Copy + Default {
    const DESCR: &'static str;
    fn write_le(values: &[Self], out: &mut Vec<u8>);
    fn read_le(bytes: &[u8]) -> Vec<Self>;
}

impl NpyElement for u8 {
    const DESCR: &'static str = "|u1";
    fn write_le(values: &[Self], out: &mut Vec<u8>) {
        out.extend_from_slice(values);
    }
    fn read_le(bytes: &[u8]) -> Vec<Self> {
        bytes.to_vec()
    }
}

impl NpyElement for i64 {
    const DESCR: &'static str = "<i8";
    fn write_le(values: &[Self], out: &mut Vec<u8>) {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn read_le(bytes: &[u8]) -> Vec<Self> {
        bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
    }
}

impl NpyElement for half::f16 {
    const DESCR: &'static str = "<f2";
    fn write_le(values: &[Self], out: &mut Vec<u8>) {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn read_le(bytes: &[u8]) -> Vec<Self> {
        bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]])).collect()
    }
}

impl NpyElement for u64 {
    const DESCR: &'static str = "<u8";
    fn write_le(values: &[Self], out: &mut Vec<u8>) {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn read_le(bytes: &[u8]) -> Vec<Self> {
        bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
    }
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn write_le(values: &[Self], out: &mut Vec<u8>) {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn read_le(bytes: &[u8]) -> Vec<Self> {
        bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    }
}

fn header_dict(descr: &str, shape: &[u64]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    // A one-dimensional shape needs the trailing comma: (5,) not (5).
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
}

/// The header bytes, padded with spaces and a newline to `total_len` (or to the next multiple of
/// 64 when `total_len` is None).
fn encode_header(descr: &str, shape: &[u64], total_len: Option<usize>) -> Vec<u8> {
    let dict = header_dict(descr, shape);
    let unpadded = MAGIC.len() + 2 + 2 + dict.len() + 1;
    let total = total_len.unwrap_or(unpadded.div_ceil(64) * 64);
    assert!(total >= unpadded, "npy header does not fit in {total} bytes");
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Writes a whole array at once, atomically, converting in slices so that a multi-GB feature
/// matrix needs no second copy in memory.
pub fn write_array<T: NpyElement>(path: &Path, shape: &[u64], values: &[T]) -> Result<(), NpyError> {
    let expected: u64 = shape.iter().product();
    assert_eq!(expected as usize, values.len(), "shape {shape:?} does not match {} values", values.len());
    let io = |source| NpyError::Io { path: path.to_owned(), source };
    let mut file = BufWriter::new(AtomicFile::create(path).map_err(io)?);
    file.write_all(&encode_header(T::DESCR, shape, None)).map_err(io)?;
    let mut bytes = Vec::new();
    for chunk in values.chunks(1 << 20) {
        bytes.clear();
        T::write_le(chunk, &mut bytes);
        file.write_all(&bytes).map_err(io)?;
    }
    let atomic = file.into_inner().map_err(|e| io(e.into_error()))?;
    atomic.commit().map_err(io)
}

/// A whole array as the bytes of a `.npy` file, for a caller that stages several files before it
/// commits any (the merge).
pub fn to_bytes<T: NpyElement>(shape: &[u64], values: &[T]) -> Vec<u8> {
    let expected: u64 = shape.iter().product();
    assert_eq!(expected as usize, values.len(), "shape {shape:?} does not match {} values", values.len());
    let mut bytes = encode_header(T::DESCR, shape, None);
    T::write_le(values, &mut bytes);
    bytes
}

/// Streams `rows` of a fixed row shape into a `.npy`; the file appears under its final name only
/// when [`NpyRowWriter::finish`] succeeds.
pub struct NpyRowWriter {
    file: BufWriter<AtomicFile>,
    row_shape: Vec<u64>,
    row_len: usize,
    rows: u64,
    path: PathBuf,
}

impl NpyRowWriter {
    pub fn create_u8(path: &Path, row_shape: &[u64]) -> Result<Self, NpyError> {
        let io = |source| NpyError::Io { path: path.to_owned(), source };
        let atomic = AtomicFile::create(path).map_err(io)?;
        let mut file = BufWriter::with_capacity(1 << 20, atomic);
        let mut shape = vec![0];
        shape.extend_from_slice(row_shape);
        file.write_all(&encode_header(u8::DESCR, &shape, Some(STREAM_HEADER_LEN))).map_err(io)?;
        Ok(Self {
            file,
            row_shape: row_shape.to_vec(),
            row_len: row_shape.iter().product::<u64>() as usize,
            rows: 0,
            path: path.to_owned(),
        })
    }

    /// Appends one row; its length must match the row shape.
    pub fn push_row(&mut self, row: &[u8]) -> Result<u64, NpyError> {
        assert_eq!(row.len(), self.row_len, "row of {} bytes, expected {}", row.len(), self.row_len);
        self.file.write_all(row).map_err(|source| NpyError::Io { path: self.path.clone(), source })?;
        self.rows += 1;
        Ok(self.rows - 1)
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rewrites the header with the final row count and moves the file into place.
    pub fn finish(self) -> Result<u64, NpyError> {
        let path = self.path.clone();
        let io = |source| NpyError::Io { path: path.clone(), source };
        let mut atomic = self.file.into_inner().map_err(|e| io(e.into_error()))?;
        let mut shape = vec![self.rows];
        shape.extend_from_slice(&self.row_shape);
        atomic.seek(SeekFrom::Start(0)).map_err(io)?;
        atomic.write_all(&encode_header(u8::DESCR, &shape, Some(STREAM_HEADER_LEN))).map_err(io)?;
        atomic.commit().map_err(io)?;
        Ok(self.rows)
    }

    /// [`NpyRowWriter::finish`], then the file's record (size, sha256, rows). The header is only
    /// known at the end, so the file is hashed once it is complete, from the page cache.
    pub fn finish_recorded(self) -> Result<FileRecord, NpyError> {
        let path = self.path.clone();
        let rows = self.finish()?;
        let record = FileRecord::of_file(&path).map_err(|source| NpyError::Io { path, source })?;
        Ok(record.with_rows(rows))
    }
}

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    pub descr: String,
    pub shape: Vec<u64>,
    /// Byte offset of the first element.
    pub data_offset: u64,
}

impl NpyHeader {
    pub fn len(&self) -> u64 {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn dict_value<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let start = dict.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = dict[start..].trim_start().strip_prefix(':')?.trim_start();
    if let Some(tuple) = rest.strip_prefix('(') {
        return Some(&tuple[..tuple.find(')')?]);
    }
    if let Some(quoted) = rest.strip_prefix('\'') {
        return Some(&quoted[..quoted.find('\'')?]);
    }
    Some(rest[..rest.find(',').unwrap_or(rest.len())].trim())
}

pub fn read_header(path: &Path) -> Result<NpyHeader, NpyError> {
    let io = |source| NpyError::Io { path: path.to_owned(), source };
    let bad = |why: &str| NpyError::Format { path: path.to_owned(), why: why.to_owned() };
    let mut file = File::open(path).map_err(io)?;
    let mut prefix = [0u8; 10];
    file.read_exact(&mut prefix).map_err(|_| bad("shorter than a header"))?;
    if &prefix[..6] != MAGIC {
        return Err(bad("no \\x93NUMPY magic"));
    }
    let (dict_len, offset) = match prefix[6] {
        1 => (u16::from_le_bytes([prefix[8], prefix[9]]) as usize, 10),
        2 | 3 => {
            let mut rest = [0u8; 2];
            file.read_exact(&mut rest).map_err(|_| bad("truncated header"))?;
            (u32::from_le_bytes([prefix[8], prefix[9], rest[0], rest[1]]) as usize, 12)
        }
        v => return Err(bad(&format!("unknown version {v}"))),
    };
    let mut dict = vec![0u8; dict_len];
    file.read_exact(&mut dict).map_err(|_| bad("truncated header"))?;
    let dict = String::from_utf8_lossy(&dict);
    let descr = dict_value(&dict, "descr").ok_or_else(|| bad("no descr"))?.to_owned();
    if dict_value(&dict, "fortran_order") != Some("False") {
        return Err(bad("Fortran order is not supported"));
    }
    let shape = dict_value(&dict, "shape")
        .ok_or_else(|| bad("no shape"))?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().map_err(|_| bad("bad shape")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NpyHeader { descr, shape, data_offset: (offset + dict_len) as u64 })
}

/// Reads a whole array of element type `T`, checking that the file holds exactly what its
/// header announces.
pub fn read_array<T: NpyElement>(path: &Path) -> Result<(Vec<u64>, Vec<T>), NpyError> {
    read_array_recorded(path).map(|(shape, values, _)| (shape, values))
}

/// [`read_array`], with the record (size, sha256, rows) of the bytes it read: a reader checks a
/// file against the record its writer left without reading it twice.
pub fn read_array_recorded<T: NpyElement>(path: &Path) -> Result<(Vec<u64>, Vec<T>, FileRecord), NpyError> {
    let header = read_header(path)?;
    if header.descr != T::DESCR {
        return Err(NpyError::Dtype { path: path.to_owned(), found: header.descr, expected: T::DESCR });
    }
    let io = |source| NpyError::Io { path: path.to_owned(), source };
    let file = File::open(path).map_err(io)?;
    let data_bytes = file.metadata().map_err(io)?.len().saturating_sub(header.data_offset);
    let want = header.len() * std::mem::size_of::<T>() as u64;
    if data_bytes != want {
        return Err(NpyError::Format {
            path: path.to_owned(),
            why: format!("{data_bytes} data bytes, the header announces {want}"),
        });
    }
    let mut file = HashingReader::new(file);
    let mut head = vec![0u8; header.data_offset as usize];
    file.read_exact(&mut head).map_err(io)?;
    // Converted in slices: reading a multi-GB file whole would hold it twice.
    let mut values = Vec::with_capacity(header.len() as usize);
    let mut chunk = vec![0u8; (1 << 24) / std::mem::size_of::<T>() * std::mem::size_of::<T>()];
    let mut left = want as usize;
    while left > 0 {
        let take = left.min(chunk.len());
        file.read_exact(&mut chunk[..take]).map_err(io)?;
        values.extend(T::read_le(&chunk[..take]));
        left -= take;
    }
    let rows = header.shape.first().copied().unwrap_or(1);
    Ok((header.shape, values, file.record().with_rows(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_64_aligned_and_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        write_array::<i64>(&path, &[3], &[1, -2, 3]).unwrap();
        let header = read_header(&path).unwrap();
        assert_eq!(header.shape, vec![3]);
        assert_eq!(header.data_offset % 64, 0);
        assert_eq!(read_array::<i64>(&path).unwrap().1, vec![1, -2, 3]);
    }

    #[test]
    fn streamed_rows_get_the_final_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.npy");
        let mut writer = NpyRowWriter::create_u8(&path, &[2, 2, 3]).unwrap();
        assert!(!path.exists(), "the final name must not appear before finish()");
        for i in 0..5u8 {
            writer.push_row(&[i; 12]).unwrap();
        }
        writer.finish().unwrap();
        let (shape, data) = read_array::<u8>(&path).unwrap();
        assert_eq!(shape, vec![5, 2, 2, 3]);
        assert_eq!(data[12 * 4], 4);
    }

    #[test]
    fn wrong_dtype_and_truncation_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.npy");
        write_array::<i64>(&path, &[2], &[1, 2]).unwrap();
        assert!(matches!(read_array::<u8>(&path), Err(NpyError::Dtype { .. })));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(read_array::<i64>(&path), Err(NpyError::Format { .. })));
    }
}
