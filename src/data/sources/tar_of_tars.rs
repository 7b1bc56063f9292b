//! ImageNet's training archive: a tar whose members are per-class tars (`n01440764.tar`, plain or
//! gzip), or a folder of such tars (the outer tar unpacked one level). Each inner tar is walked
//! while the outer stream passes over it, never unpacked; a record's class is its inner tar's name
//! without the extension, its name `n01440764.tar/n01440764_10026.JPEG`.

use std::ffi::OsStr;
use std::io::Read;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{is_tar_name, maybe_gunzip, open_stream, tar_member_data, tar_stem, Emitter};
use crate::data::names::encode_name;
use crate::data::source::{class_of, in_hidden_place, RecordData, SourceError};

#[derive(Debug)]
pub struct TarOfTars {
    root: PathBuf,
    /// The class tars, when `root` is a folder of them; empty when it is the outer archive.
    files: Vec<PathBuf>,
}

impl TarOfTars {
    pub fn archive(path: &Path) -> Self {
        Self { root: path.to_owned(), files: Vec::new() }
    }

    pub fn folder(root: &Path, files: Vec<PathBuf>) -> Self {
        Self { root: root.to_owned(), files }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub(crate) fn walk(&self, out: &mut Emitter) -> Result<(), SourceError> {
        if self.files.is_empty() {
            return self.walk_outer(out);
        }
        for file in &self.files {
            let relative = file.strip_prefix(&self.root).unwrap_or(file);
            let name = encode_name(relative.as_os_str().as_bytes());
            let reader = open_stream(file)?;
            if walk_inner(reader, &name, out).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn walk_outer(&self, out: &mut Emitter) -> Result<(), SourceError> {
        let path = &self.root;
        let io = |source| SourceError::Io { path: path.to_owned(), source };
        let mut archive = tar::Archive::new(open_stream(path)?);
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let bytes = entry.path_bytes().into_owned();
            let member = Path::new(OsStr::from_bytes(&bytes)).to_owned();
            let name = encode_name(&bytes);
            let file_name = member.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let flow = if in_hidden_place(&member) {
                out.emit_hidden(name)
            } else if is_tar_name(&file_name) {
                walk_inner(&mut entry, &name, out)
            } else {
                // An image beside the class tars: a record as in a flat tar.
                match tar_member_data(&mut entry, &file_name, out.wants_next(), out.max_bytes).map_err(io)? {
                    Some(data) => out.emit(name, class_of(&member), data),
                    None => ControlFlow::Continue(()),
                }
            };
            if flow.is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// Walks one class tar named `tar_name`, its records named `tar_name/member`. A damaged inner tar
/// ends in one failed row naming it and the member reached; the walk goes on with the next one.
fn walk_inner(reader: impl Read, tar_name: &str, out: &mut Emitter) -> ControlFlow<()> {
    let class = tar_stem(tar_name.rsplit('/').next().unwrap_or(tar_name)).to_owned();
    let reader = match maybe_gunzip(reader) {
        Ok(r) => r,
        Err(e) => return damaged(out, tar_name, "", &e),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => return damaged(out, tar_name, "", &e),
    };
    let mut last = String::new();
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => return damaged(out, tar_name, &last, &e),
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let bytes = entry.path_bytes().into_owned();
        let member = Path::new(OsStr::from_bytes(&bytes)).to_owned();
        let name = format!("{tar_name}/{}", encode_name(&bytes));
        let file_name = member.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        last.clone_from(&name);
        let flow = if in_hidden_place(&member) {
            out.emit_hidden(name)
        } else {
            match tar_member_data(&mut entry, &file_name, out.wants_next(), out.max_bytes) {
                Ok(Some(data)) => out.emit(name, Some(class.clone()), data),
                Ok(None) => ControlFlow::Continue(()),
                Err(e) => out.emit(name, Some(class.clone()), RecordData::Unreadable(format!("cannot read: {e}"))),
            }
        };
        flow?;
    }
    ControlFlow::Continue(())
}

/// The failed row of a class tar that cannot be read on from `after` (its last member read).
fn damaged(out: &mut Emitter, tar_name: &str, after: &str, e: &std::io::Error) -> ControlFlow<()> {
    let place = if after.is_empty() { "at its start".to_owned() } else { format!("after {after}") };
    out.emit_failed(tar_name.to_owned(), format!("damaged class tar ({place}): {e}"))
}
