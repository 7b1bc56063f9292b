//! Parquet, as the Hugging Face Hub serves data sets: one file or a folder of shards
//! (`data/train-00000-of-00042.parquet`), an image column of `{bytes, path}` structs and often a
//! label column. The image column is found by type (a struct with a binary `bytes` field, or a
//! binary column) unless `run.input_image_column` names it; the class is the label column's value
//! (`run.input_label_column`, the Hub's ClassLabel feature, or a column named `label`), named
//! from the Hub's metadata (`huggingface` key: the ClassLabel names) where it is there.
//!
//! Files are read row group by row group, a few hundred rows at a time; a row group with no
//! wanted row is not read at all (its row count is in the footer). A record is named
//! `file.parquet#row`.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::column::reader::ColumnReader;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnDescriptor;

use super::{Emitter, SourceOptions};
use crate::data::names::encode_name;
use crate::data::source::{RecordData, SourceError};

#[derive(Debug)]
pub struct ParquetSource {
    /// The file or the folder as given.
    pub root: PathBuf,
    files: Vec<ParquetFile>,
}

#[derive(Debug)]
struct ParquetFile {
    path: PathBuf,
    /// How its records are named: its path under the folder, or its file name.
    shown: String,
    row_groups: Vec<u64>,
    columns: Columns,
}

/// Which leaf columns hold the image and the class.
#[derive(Debug, Clone)]
struct Columns {
    image: usize,
    label: Option<usize>,
    /// Class names by label number (the Hub's ClassLabel).
    names: Option<Vec<String>>,
}

/// Rows read at a time from a row group.
const CHUNK_ROWS: usize = 256;

fn parquet_error(path: &Path, message: String) -> SourceError {
    SourceError::Io { path: path.to_owned(), source: std::io::Error::other(message) }
}

impl ParquetSource {
    /// Reads every file's footer (row counts, schema, metadata); a file whose footer cannot be
    /// read, or that has no image column, is refused naming it.
    pub fn open(root: &Path, paths: Vec<PathBuf>, options: &SourceOptions) -> Result<Self, SourceError> {
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let file = File::open(&path).map_err(|source| SourceError::Io { path: path.clone(), source })?;
            let reader = SerializedFileReader::new(file)
                .map_err(|e| parquet_error(&path, format!("not a readable Parquet file ({e}); fetch it again")))?;
            let meta = reader.metadata();
            let row_groups = meta.row_groups().iter().map(|g| g.num_rows().max(0) as u64).collect();
            let columns = find_columns(&reader, options).map_err(|why| parquet_error(&path, why))?;
            let relative = path.strip_prefix(root).ok().filter(|p| !p.as_os_str().is_empty());
            let shown = relative.or(path.file_name().map(Path::new)).unwrap_or(&path);
            let shown = encode_name(std::os::unix::ffi::OsStrExt::as_bytes(shown.as_os_str()));
            files.push(ParquetFile { path, shown, row_groups, columns });
        }
        Ok(Self { root: root.to_owned(), files })
    }

    pub fn rows(&self) -> u64 {
        self.files.iter().flat_map(|f| &f.row_groups).sum()
    }

    pub(crate) fn walk(&self, out: &mut Emitter) -> Result<(), SourceError> {
        for file in &self.files {
            let io = |source| SourceError::Io { path: file.path.clone(), source };
            let reader = SerializedFileReader::new(File::open(&file.path).map_err(io)?)
                .map_err(|e| parquet_error(&file.path, format!("not a readable Parquet file ({e})")))?;
            let mut row = 0u64;
            for (group, &rows) in file.row_groups.iter().enumerate() {
                let name = |r: u64| format!("{}#{r}", file.shown);
                if !(0..rows).any(|r| out.wants_ahead(r)) {
                    for r in row..row + rows {
                        if out.emit(name(r), None, RecordData::NotLoaded).is_break() {
                            return Ok(());
                        }
                    }
                } else if read_row_group(&reader, group, &file.columns, row, rows, &name, out).is_break() {
                    return Ok(());
                }
                row += rows;
            }
        }
        Ok(())
    }
}

/// The leaf columns' paths, for an error that lists them.
fn column_list(columns: &[std::sync::Arc<ColumnDescriptor>]) -> String {
    columns.iter().map(|c| c.path().string()).collect::<Vec<_>>().join(", ")
}

fn is_text(c: &ColumnDescriptor) -> bool {
    matches!(c.logical_type_ref(), Some(LogicalType::String | LogicalType::Json | LogicalType::Enum))
        || matches!(c.converted_type(), ConvertedType::UTF8 | ConvertedType::JSON | ConvertedType::ENUM)
}

fn is_binary(c: &ColumnDescriptor) -> bool {
    c.physical_type() == PhysicalType::BYTE_ARRAY && !is_text(c) && c.max_rep_level() == 0
}

/// The Hub's feature descriptions (`huggingface` metadata key: `{"info": {"features": {...}}}`).
fn hub_features(reader: &SerializedFileReader<File>) -> Option<serde_json::Map<String, serde_json::Value>> {
    let kv = reader.metadata().file_metadata().key_value_metadata()?;
    let text = kv.iter().find(|k| k.key == "huggingface")?.value.as_deref()?;
    let doc: serde_json::Value = serde_json::from_str(text).ok()?;
    doc.get("info")?.get("features")?.as_object().cloned()
}

fn feature_of_type(features: Option<&serde_json::Map<String, serde_json::Value>>, kind: &str) -> Option<String> {
    features?.iter().find(|(_, f)| f.get("_type").and_then(|t| t.as_str()) == Some(kind)).map(|(name, _)| name.clone())
}

fn find_columns(reader: &SerializedFileReader<File>, options: &SourceOptions) -> Result<Columns, String> {
    let schema = reader.metadata().file_metadata().schema_descr();
    let leaves = schema.columns();
    let features = hub_features(reader);
    let position = |parts: &[&str]| {
        leaves.iter().position(|c| c.path().parts().iter().map(String::as_str).eq(parts.iter().copied()))
    };
    let image_named =
        |name: &str| position(&[name, "bytes"]).or_else(|| position(&[name])).filter(|&i| is_binary(&leaves[i]));
    let image = match &options.image_column {
        Some(name) => image_named(name).ok_or_else(|| {
            format!(
                "no binary column or struct with `bytes` named {name:?} (run.input_image_column; columns: {})",
                column_list(leaves)
            )
        })?,
        None => feature_of_type(features.as_ref(), "Image")
            .and_then(|name| image_named(&name))
            .or_else(|| leaves.iter().position(|c| c.path().parts().len() == 2 && c.name() == "bytes" && is_binary(c)))
            .or_else(|| leaves.iter().position(|c| c.path().parts().len() == 1 && is_binary(c)))
            .ok_or_else(|| {
                format!(
                    "no image column (a struct with a binary `bytes` field, or a binary column); name one with \
                     --set run.input_image_column=NAME (columns: {})",
                    column_list(leaves)
                )
            })?,
    };
    let label_ok = |i: usize| {
        let c = &leaves[i];
        c.max_rep_level() == 0
            && (matches!(c.physical_type(), PhysicalType::INT32 | PhysicalType::INT64)
                || (c.physical_type() == PhysicalType::BYTE_ARRAY && is_text(c)))
    };
    let hub_label = feature_of_type(features.as_ref(), "ClassLabel");
    let label = match &options.label_column {
        Some(name) => Some(position(&[name.as_str()]).filter(|&i| label_ok(i)).ok_or_else(|| {
            format!(
                "no integer or string column named {name:?} (run.input_label_column; columns: {})",
                column_list(leaves)
            )
        })?),
        None => hub_label.as_deref().or(Some("label")).and_then(|name| position(&[name])).filter(|&i| label_ok(i)),
    };
    let label_name = label.map(|i| leaves[i].path().string());
    let names = label_name.and_then(|name| {
        let list = features.as_ref()?.get(&name)?.get("names")?.as_array()?.clone();
        list.iter().map(|n| n.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>()
    });
    Ok(Columns { image, label, names })
}

/// One chunk's values of a column: per row, its value or `None` for a null.
enum Values {
    Bytes(Vec<Option<Vec<u8>>>),
    Ints(Vec<Option<i64>>),
}

/// Values read with their definition levels, as one entry per row (`None` for a null).
fn per_row<T>(defs: &[i16], max_def: i16, values: Vec<T>) -> Vec<Option<T>> {
    if max_def == 0 {
        return values.into_iter().map(Some).collect();
    }
    let mut values = values.into_iter();
    defs.iter().map(|&d| if d == max_def { values.next() } else { None }).collect()
}

/// Reads up to `rows` rows of a leaf column (no repetition) into per-row values.
fn read_chunk(column: &mut ColumnReader, max_def: i16, rows: usize) -> parquet::errors::Result<Values> {
    let mut defs = Vec::with_capacity(rows);
    Ok(match column {
        ColumnReader::ByteArrayColumnReader(r) => {
            let mut values = Vec::with_capacity(rows);
            r.read_records(rows, Some(&mut defs), None, &mut values)?;
            let bytes: Vec<Vec<u8>> = values.iter().map(|v| v.data().to_vec()).collect();
            Values::Bytes(per_row(&defs, max_def, bytes))
        }
        ColumnReader::Int64ColumnReader(r) => {
            let mut values = Vec::with_capacity(rows);
            r.read_records(rows, Some(&mut defs), None, &mut values)?;
            Values::Ints(per_row(&defs, max_def, values))
        }
        ColumnReader::Int32ColumnReader(r) => {
            let mut values = Vec::with_capacity(rows);
            r.read_records(rows, Some(&mut defs), None, &mut values)?;
            Values::Ints(per_row(&defs, max_def, values.into_iter().map(i64::from).collect()))
        }
        _ => return Err(parquet::errors::ParquetError::General("unexpected column type".into())),
    })
}

/// A row's class from the label column's value.
fn class_of_value(columns: &Columns, labels: Option<&Values>, i: usize) -> Option<String> {
    match labels? {
        Values::Ints(v) => {
            let label = (*v.get(i)?)?;
            // The Hub writes -1 for a row without a label (a test split).
            let number = usize::try_from(label).ok()?;
            Some(columns.names.as_ref().and_then(|n| n.get(number).cloned()).unwrap_or_else(|| label.to_string()))
        }
        Values::Bytes(v) => v.get(i)?.as_ref().map(|b| encode_name(b)),
    }
}

/// Emits the `rows` rows of row group `group` (file rows from `first`); a row group that cannot
/// be read gives a failed row, naming it, for each of its rows not yet emitted.
fn read_row_group(
    reader: &SerializedFileReader<File>,
    group: usize,
    columns: &Columns,
    first: u64,
    rows: u64,
    name: &dyn Fn(u64) -> String,
    out: &mut Emitter,
) -> std::ops::ControlFlow<()> {
    let mut done = 0u64;
    let result = (|| -> parquet::errors::Result<std::ops::ControlFlow<()>> {
        let group_reader = reader.get_row_group(group)?;
        let image_def = group_reader.metadata().column(columns.image).column_descr().max_def_level();
        let mut images = group_reader.get_column_reader(columns.image)?;
        let mut labels = match columns.label {
            Some(i) => Some((
                group_reader.get_column_reader(i)?,
                group_reader.metadata().column(i).column_descr().max_def_level(),
            )),
            None => None,
        };
        while done < rows {
            let want = (rows - done).min(CHUNK_ROWS as u64) as usize;
            let Values::Bytes(chunk) = read_chunk(&mut images, image_def, want)? else { unreachable!("binary column") };
            let label_values = match labels.as_mut() {
                Some((reader, max_def)) => Some(read_chunk(reader, *max_def, chunk.len())?),
                None => None,
            };
            if chunk.is_empty() {
                return Err(parquet::errors::ParquetError::General(format!("ends after {done} of {rows} rows")));
            }
            for (i, image) in chunk.into_iter().enumerate() {
                let class = class_of_value(columns, label_values.as_ref(), i);
                let data = match image {
                    None => RecordData::Unreadable("no image in this row (null)".into()),
                    Some(b) if b.len() as u64 > out.max_bytes => RecordData::Unreadable(format!(
                        "image of {} bytes exceeds the limit of {}",
                        b.len(),
                        out.max_bytes
                    )),
                    Some(b) => RecordData::Bytes(b),
                };
                let flow = out.emit(name(first + done), class, data);
                done += 1;
                if flow.is_break() {
                    return Ok(flow);
                }
            }
        }
        Ok(std::ops::ControlFlow::Continue(()))
    })();
    match result {
        Ok(flow) => flow,
        Err(e) => {
            let reason = format!("row group {group} cannot be read: {e}");
            for r in done..rows {
                out.emit_failed(name(first + r), reason.clone())?;
            }
            std::ops::ControlFlow::Continue(())
        }
    }
}
