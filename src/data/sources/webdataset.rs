//! WebDataset: tar shards whose consecutive members sharing a key (the name up to the first dot
//! of the file name) make one sample: `000123.jpg` beside `000123.cls` or `000123.json`. One
//! record per sample: the image is the member with an image extension, the class the text of
//! `.cls` or a field of `.json` (`run.input_class_field`). A tar, a folder of tars, or a brace
//! pattern of shards (`train-{000000..000146}.tar`) is read; with several shards a record's name
//! starts with its shard's.

use std::ffi::OsStr;
use std::io::Read;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{open_stream, Emitter, SourceOptions};
use crate::data::names::encode_name;
use crate::data::source::{has_image_extension, in_hidden_place, RecordData, SourceError};

#[derive(Debug)]
pub struct WebDataset {
    /// The tar, the folder, or the pattern as given.
    pub root: PathBuf,
    shards: Vec<PathBuf>,
    class_field: Option<String>,
}

/// A sample's key and extension: `dir/000123.seg.png` -> (`dir/000123`, `seg.png`).
pub fn split_key(name: &str) -> (&str, &str) {
    let base_start = name.rfind('/').map_or(0, |i| i + 1);
    match name[base_start..].find('.') {
        Some(dot) => (&name[..base_start + dot], &name[base_start + dot + 1..]),
        None => (name, ""),
    }
}

/// The largest `.cls` or `.json` member read for the class.
const MAX_LABEL_BYTES: u64 = 1 << 20;

/// The sample being gathered from consecutive members.
#[derive(Default)]
struct Sample {
    key: String,
    image: Option<(String, RecordData)>,
    class: Option<String>,
    /// Extensions of the members that are not the image, for the failed row of a sample without one.
    others: Vec<String>,
    problem: Option<String>,
}

impl WebDataset {
    /// Shards that must exist; the first missing one is named.
    pub fn from_shards(root: &Path, shards: Vec<PathBuf>, options: &SourceOptions) -> Result<Self, SourceError> {
        if let Some(missing) = shards.iter().find(|s| !s.is_file()) {
            return Err(SourceError::Missing { path: missing.clone() });
        }
        Ok(Self { root: root.to_owned(), shards, class_field: options.class_field.clone() })
    }

    pub(crate) fn walk(&self, out: &mut Emitter) -> Result<(), SourceError> {
        let several = self.shards.len() > 1;
        for shard in &self.shards {
            let prefix = if several {
                let shown = shard.strip_prefix(&self.root).ok().filter(|p| !p.as_os_str().is_empty());
                let shown = shown.or(shard.file_name().map(Path::new)).unwrap_or(shard);
                format!("{}/", encode_name(shown.as_os_str().as_bytes()))
            } else {
                String::new()
            };
            if self.walk_shard(shard, &prefix, out)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    fn walk_shard(&self, shard: &Path, prefix: &str, out: &mut Emitter) -> Result<ControlFlow<()>, SourceError> {
        let mut archive = tar::Archive::new(open_stream(shard)?);
        let io = |source| SourceError::Io { path: shard.to_owned(), source };
        let mut sample = Sample::default();
        let mut last = String::new();
        for entry in archive.entries().map_err(io)? {
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    // A cut or damaged shard: the sample gathered so far, then one failed row for the rest.
                    if flush(std::mem::take(&mut sample), prefix, out).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                    let shown = if prefix.is_empty() { shard.display().to_string() } else { prefix.to_owned() };
                    let place = if last.is_empty() { "at its start".to_owned() } else { format!("after {last}") };
                    return Ok(out.emit_failed(shown, format!("damaged shard ({place}): {e}")));
                }
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let bytes = entry.path_bytes().into_owned();
            let name = encode_name(&bytes);
            last.clone_from(&name);
            if in_hidden_place(Path::new(OsStr::from_bytes(&bytes))) {
                let flow = flush(std::mem::take(&mut sample), prefix, out);
                if flow.is_break() || out.emit_hidden(format!("{prefix}{name}")).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                continue;
            }
            let (key, ext) = split_key(&name);
            if key != sample.key {
                if flush(std::mem::take(&mut sample), prefix, out).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                sample.key = key.to_owned();
            }
            let ext = ext.to_owned();
            self.add_member(&mut sample, &mut entry, name.clone(), &ext, out);
        }
        Ok(flush(sample, prefix, out))
    }

    fn add_member(&self, sample: &mut Sample, entry: &mut impl Read, name: String, ext: &str, out: &Emitter) {
        let read_label = |e: &mut dyn Read| {
            let mut text = Vec::new();
            e.take(MAX_LABEL_BYTES).read_to_end(&mut text).map(|_| text)
        };
        let lower = ext.to_ascii_lowercase();
        if sample.image.is_none() && has_image_extension(&name) {
            let data = if !out.wants_next() {
                RecordData::NotLoaded
            } else {
                let mut bytes = Vec::new();
                match entry.take(out.max_bytes.saturating_add(1)).read_to_end(&mut bytes) {
                    Ok(n) if n as u64 > out.max_bytes => {
                        RecordData::Unreadable(format!("file of more than {} bytes exceeds the limit", out.max_bytes))
                    }
                    Ok(_) => RecordData::Bytes(bytes),
                    Err(e) => RecordData::Unreadable(format!("cannot read the member: {e}")),
                }
            };
            sample.image = Some((name, data));
            return;
        }
        sample.others.push(format!(".{ext}"));
        let class = match lower.as_str() {
            "cls" | "cls2" | "class" | "label" => {
                read_label(entry).map(|t| Some(String::from_utf8_lossy(&t).trim().to_owned()))
            }
            "json" => match &self.class_field {
                Some(field) => read_label(entry).map(|t| json_class(&t, field)),
                None => Ok(None),
            },
            _ => Ok(None),
        };
        match class {
            Ok(Some(class)) if !class.is_empty() && sample.class.is_none() => sample.class = Some(class),
            Ok(_) => {}
            Err(e) => sample.problem = Some(format!("cannot read {name}: {e}")),
        }
    }
}

/// The class that field `field` of a sample's JSON holds: a string as itself, a number as written.
fn json_class(text: &[u8], field: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(text).ok()?;
    match value.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The record of a gathered sample: its image, or a failed row naming the key when it has none.
fn flush(sample: Sample, prefix: &str, out: &mut Emitter) -> ControlFlow<()> {
    if sample.key.is_empty() && sample.image.is_none() && sample.others.is_empty() {
        return ControlFlow::Continue(());
    }
    match (sample.image, sample.problem) {
        (Some((name, _)), Some(problem)) => out.emit_failed(format!("{prefix}{name}"), problem),
        (Some((name, data)), None) => out.emit(format!("{prefix}{name}"), sample.class, data),
        (None, _) => out.emit_failed(
            format!("{prefix}{}", sample.key),
            format!("sample without an image member (found {})", sample.others.join(", ")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::split_key;

    #[test]
    fn keys_end_at_the_first_dot_of_the_file_name() {
        assert_eq!(split_key("a.b/000123.seg.png"), ("a.b/000123", "seg.png"));
        assert_eq!(split_key("x.jpg"), ("x", "jpg"));
        assert_eq!(split_key("noext"), ("noext", ""));
    }
}
