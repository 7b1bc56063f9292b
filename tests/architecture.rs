//! The map the code keeps: docs/architecture.md's table of rooms says which room may import which;
//! this test reads that table and every `crate::` and `super::` path in src/ (and every
//! `dcgan_pipeline::` path in pipeline/), and fails with the file and line of each import the table
//! does not allow. The doc is the only copy of the table, so the two cannot drift apart.
//! Plain std: the Rust sources are scanned by hand (comments and string literals skipped).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const MAP: &str = "docs/architecture.md";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One row of the table: a library room (importable by `name`) or a binary (`name` is None).
#[derive(Debug)]
struct Room {
    name: Option<String>,
    /// Files and folders it holds, relative to the repository (`src/stage/`, `src/crop.rs`).
    paths: Vec<String>,
    allowed: Vec<Allowed>,
    row_text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Allowed {
    /// `gan`, `stage::RunSettings`: every path that starts with these segments.
    Prefix(Vec<String>),
    /// `gan::*`: the room's top-level items (what its mod.rs exports), not its files.
    TopLevel(String),
}

impl std::fmt::Display for Allowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Allowed::Prefix(p) => write!(f, "{}", p.join("::")),
            Allowed::TopLevel(room) => write!(f, "{room}::*"),
        }
    }
}

/// The backticked pieces of a table cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(|s| s.trim().to_string()).collect()
}

fn segments(path: &str) -> Vec<String> {
    path.split("::").map(str::to_string).collect()
}

/// The rows of the table whose header has the columns `room`, `path` and `may import`.
fn parse_table(markdown: &str) -> Result<Vec<Room>, String> {
    let split = |line: &str| -> Vec<String> {
        let line = line.trim().trim_start_matches('|').trim_end_matches('|');
        line.split('|').map(|c| c.trim().to_string()).collect()
    };
    let lines: Vec<&str> = markdown.lines().collect();
    let header = lines
        .iter()
        .position(|l| {
            let cells = split(l);
            l.trim_start().starts_with('|')
                && ["room", "path", "may import"].iter().all(|h| cells.iter().any(|c| c == h))
        })
        .ok_or(format!("{MAP}: no table with the columns room | path | may import"))?;
    let cells = split(lines[header]);
    let column = |name: &str| cells.iter().position(|c| c == name).unwrap();
    let (room_col, path_col, import_col) = (column("room"), column("path"), column("may import"));
    let mut rooms = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(header + 2) {
        if !line.trim_start().starts_with('|') {
            break;
        }
        let cells = split(line);
        let cell = |c: usize| cells.get(c).cloned().ok_or(format!("{MAP}:{}: too few columns", i + 1));
        let paths = code_spans(&cell(path_col)?);
        if paths.is_empty() {
            return Err(format!("{MAP}:{}: a row without a path", i + 1));
        }
        let is_library = paths.iter().all(|p| p.starts_with("src/"));
        let name = if is_library {
            let names = code_spans(&cell(room_col)?);
            Some(names.first().cloned().ok_or(format!("{MAP}:{}: a room without a name", i + 1))?)
        } else {
            None
        };
        let allowed = code_spans(&cell(import_col)?)
            .iter()
            .map(|entry| match entry.strip_suffix("::*") {
                Some(room) => Allowed::TopLevel(room.to_string()),
                None => Allowed::Prefix(segments(entry)),
            })
            .collect();
        rooms.push(Room { name, paths, allowed, row_text: format!("{MAP}:{}", i + 1) });
    }
    Ok(rooms)
}

/// What the lexer keeps of Rust source: identifiers, `::` and the punctuation a use tree needs.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Star,
    Other,
}

/// Tokens with their 1-based line; comments, strings and char literals are dropped.
fn lex(source: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = source.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    let count_lines = |from: usize, to: usize| c[from..to.min(c.len())].iter().filter(|&&ch| ch == '\n').count();
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let (start, mut depth) = (i, 0);
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += count_lines(start, i);
        } else if let Some(end) = raw_string_end(&c, i) {
            line += count_lines(i, end);
            i = end;
        } else if ch == '"' || (ch == 'b' && c.get(i + 1) == Some(&'"')) {
            let start = i;
            i += if ch == 'b' { 2 } else { 1 };
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            line += count_lines(start, i);
        } else if ch == '\'' {
            // A char literal ('a', '\n', '"'), else a lifetime ('a), whose name lexes as an identifier.
            if c.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else {
            let tok = match ch {
                ':' if c.get(i + 1) == Some(&':') => {
                    i += 1;
                    Tok::PathSep
                }
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                '*' => Tok::Star,
                _ => Tok::Other,
            };
            out.push((tok, line));
            i += 1;
        }
    }
    out
}

/// Where a raw string (r"..", r#".."#, br"..") starting at `i` ends, if one starts there.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&ch| ch == '#').count();
    j += hashes;
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"' && c[j + 1..].iter().take(hashes).filter(|&&ch| ch == '#').count() == hashes {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

/// The leaves of the use tree (or plain path) at `toks[i..]`, each with the line of its first segment.
fn use_tree(toks: &[(Tok, usize)], mut i: usize, prefix: &[String], out: &mut Vec<(Vec<String>, usize)>) -> usize {
    let mut path = prefix.to_vec();
    let mut line = toks.get(i).map_or(0, |t| t.1);
    loop {
        match toks.get(i) {
            Some((Tok::Ident(s), _)) if s == "self" && path.len() == prefix.len() && !prefix.is_empty() => {
                out.push((path, line));
                return i + 1;
            }
            Some((Tok::Ident(s), at)) => {
                if path.len() == prefix.len() {
                    line = *at;
                }
                path.push(s.clone());
                i += 1;
                if toks.get(i).map(|t| &t.0) != Some(&Tok::PathSep) {
                    out.push((path, line));
                    return i;
                }
                i += 1;
            }
            Some((Tok::Star, _)) => {
                out.push((path, line));
                return i + 1;
            }
            Some((Tok::Open, _)) => {
                i += 1;
                while let Some((tok, _)) = toks.get(i) {
                    match tok {
                        Tok::Close => return i + 1,
                        Tok::Comma => i += 1,
                        Tok::Ident(s) if s == "as" => i += 2,
                        _ => {
                            let next = use_tree(toks, i, &path, out);
                            i = if next == i { i + 1 } else { next };
                        }
                    }
                }
                return i;
            }
            _ => {
                if path.len() > prefix.len() {
                    out.push((path, line));
                }
                return i;
            }
        }
    }
}

/// Every path into the library that a file names: module-absolute segments (`["gan", "Preset"]`)
/// and the line. `module` is the file's module path; `root` the name the library goes by there
/// (`crate` in src/, `dcgan_pipeline` in pipeline/, where `super::` is not followed).
fn library_paths(source: &str, module: &[String], root: &str) -> Vec<(Vec<String>, usize)> {
    let toks = lex(source);
    let mut out = Vec::new();
    // Inline modules (`mod tests { .. }`), with the brace depth each opened at.
    let (mut inline, mut depth): (Vec<(String, usize)>, usize) = (Vec::new(), 0);
    let mut i = 0;
    while i < toks.len() {
        let after_sep = i > 0 && toks[i - 1].0 == Tok::PathSep;
        let next_is_sep = toks.get(i + 1).map(|t| &t.0) == Some(&Tok::PathSep);
        match &toks[i].0 {
            Tok::Ident(m) if m == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Open, _))) = (toks.get(i + 1), toks.get(i + 2)) {
                    depth += 1;
                    inline.push((name.clone(), depth));
                    i += 3;
                    continue;
                }
            }
            Tok::Open => depth += 1,
            Tok::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(s) if s == root && next_is_sep && !after_sep => {
                i = use_tree(&toks, i + 2, &[], &mut out).max(i + 1);
                continue;
            }
            Tok::Ident(s) if s == "super" && root == "crate" && next_is_sep && !after_sep => {
                let mut here: Vec<String> = module.to_vec();
                here.extend(inline.iter().map(|(n, _)| n.clone()));
                let mut j = i;
                while matches!(&toks.get(j).map(|t| &t.0), Some(Tok::Ident(s)) if s == "super")
                    && toks.get(j + 1).map(|t| &t.0) == Some(&Tok::PathSep)
                {
                    here.pop();
                    j += 2;
                }
                let start = out.len();
                i = use_tree(&toks, j, &[], &mut out).max(i + 1);
                for (path, _) in &mut out[start..] {
                    let mut absolute = here.clone();
                    absolute.append(path);
                    *path = absolute;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The library's top-level modules, from lib.rs's `pub mod` lines.
fn library_modules(lib_rs: &str) -> BTreeSet<String> {
    lib_rs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").and_then(|r| r.strip_suffix(';')))
        .map(str::to_string)
        .collect()
}

/// The module path of a file under src/ (`src/gan/models.rs` -> gan::models), None outside src/.
fn module_of(file: &str) -> Option<Vec<String>> {
    let rest = file.strip_prefix("src/")?.strip_suffix(".rs")?;
    let mut segs: Vec<String> = rest.split('/').map(str::to_string).collect();
    if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
        segs.pop();
    }
    Some(segs)
}

struct Map {
    rooms: Vec<Room>,
    modules: BTreeSet<String>,
    root: PathBuf,
}

impl Map {
    fn load(root: &Path) -> Map {
        let markdown = std::fs::read_to_string(root.join(MAP)).expect(MAP);
        let rooms = parse_table(&markdown).unwrap_or_else(|e| panic!("{e}"));
        let modules = library_modules(&std::fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs"));
        Map { rooms, modules, root: root.to_owned() }
    }

    /// The row holding a file: the longest path of the table it starts with.
    fn room_of_file(&self, file: &str) -> Option<&Room> {
        let best = |r: &Room| r.paths.iter().filter(|p| file.starts_with(p.as_str())).map(|p| p.len()).max();
        self.rooms.iter().filter(|r| best(r).is_some()).max_by_key(|r| best(r))
    }

    /// The room a module-absolute path lies in: the longest room name it starts with; `lib` for
    /// lib.rs's own items (`crate::versions`).
    fn room_of_path(&self, path: &[String]) -> Option<&str> {
        if path.first().is_some_and(|first| !self.modules.contains(first)) {
            return Some("lib");
        }
        self.rooms
            .iter()
            .filter_map(|r| r.name.as_deref())
            .filter(|name| path.starts_with(&segments(name)))
            .max_by_key(|name| name.len())
    }

    /// Whether `segment` is a file (a module) of room `room`, not an item its mod.rs exports.
    fn is_submodule(&self, room: &str, segment: &str) -> bool {
        let dir = self.root.join("src").join(room.replace("::", "/"));
        dir.join(format!("{segment}.rs")).exists() || dir.join(segment).join("mod.rs").exists()
    }

    fn allows(&self, room: &Room, path: &[String], target: &str) -> bool {
        room.name.as_deref() == Some(target)
            || room.allowed.iter().any(|a| match a {
                Allowed::Prefix(p) if p.len() == 1 && p[0] == "lib" => target == "lib",
                Allowed::Prefix(p) => path.starts_with(p),
                Allowed::TopLevel(r) => path.first() == Some(r) && path.get(1).is_none_or(|s| !self.is_submodule(r, s)),
            })
    }

    /// The imports of one file the table does not allow, as `file:line: ...` lines.
    fn violations(&self, file: &str, source: &str) -> Vec<String> {
        let Some(room) = self.room_of_file(file) else {
            return vec![format!("{file}: in no room of {MAP}'s table")];
        };
        let (module, root) = match module_of(file) {
            Some(m) => (m, "crate"),
            None => (Vec::new(), "dcgan_pipeline"),
        };
        let mut found = Vec::new();
        for (path, line) in library_paths(source, &module, root) {
            let Some(target) = self.room_of_path(&path) else { continue };
            if !self.allows(room, &path, target) {
                let who = room.name.clone().unwrap_or_else(|| room.paths.join(", "));
                let may: Vec<String> = room.allowed.iter().map(Allowed::to_string).collect();
                let may = if may.is_empty() { "nothing of the crate".to_string() } else { may.join(", ") };
                found.push(format!(
                    "{file}:{line}: `{who}` imports `{}` (room `{target}`), which {MAP} does not allow ({}: {who} may import {may})",
                    path.join("::"),
                    room.row_text
                ));
            }
        }
        found
    }
}

/// Every .rs file under src/ and pipeline/, relative to the repository, sorted.
fn source_files(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut folders = vec![root.join("src"), root.join("pipeline")];
    while let Some(folder) = folders.pop() {
        for path in std::fs::read_dir(&folder).expect("a readable folder").map(|e| e.expect("an entry").path()) {
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_import_in_src_and_pipeline_is_an_arrow_of_the_architecture_table() {
    let root = repo_root();
    let map = Map::load(&root);
    let files = source_files(&root);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut violations = Vec::new();
    let mut paths = 0;
    for file in &files {
        let source = std::fs::read_to_string(root.join(file)).expect("a readable source file");
        let root_name = if file.starts_with("src/") { "crate" } else { "dcgan_pipeline" };
        paths += library_paths(&source, &module_of(file).unwrap_or_default(), root_name).len();
        violations.extend(map.violations(file, &source));
    }
    assert!(paths > 300, "only {paths} library paths found: is the scan broken?");
    assert!(violations.is_empty(), "{} import(s) against the table:\n{}", violations.len(), violations.join("\n"));
}

#[test]
fn the_table_names_every_room_and_holds_every_file() {
    let root = repo_root();
    let map = Map::load(&root);
    let names: BTreeSet<&str> = map.rooms.iter().filter_map(|r| r.name.as_deref()).collect();
    let mut problems = Vec::new();
    for module in &map.modules {
        if !names.contains(module.as_str()) {
            problems.push(format!("src/lib.rs: `pub mod {module}` has no row in {MAP}"));
        }
    }
    for room in &map.rooms {
        for path in &room.paths {
            if !root.join(path).exists() {
                problems.push(format!("{}: `{path}` does not exist", room.row_text));
            }
        }
        for allowed in &room.allowed {
            let known = match allowed {
                Allowed::TopLevel(r) => names.contains(r.as_str()),
                Allowed::Prefix(p) => names.contains(p[0].as_str()) || p == &["lib"],
            };
            if !known {
                problems.push(format!("{}: may import `{allowed}`, which names no room", room.row_text));
            }
        }
    }
    for file in source_files(&root) {
        if map.room_of_file(&file).is_none() {
            problems.push(format!("{file}: in no room of {MAP}'s table"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_wrong_arrow_is_named_with_its_file_and_line_and_comments_and_strings_are_not_imports() {
    let map = Map::load(&repo_root());
    let source = "//! [`crate::gan`] in a comment\n\
                  use crate::{\n    imageops::RgbImage,\n    gan::{Gan, Preset as P},\n};\n\
                  const S: &str = \"crate::eval\"; /* crate::report */\n\
                  fn f() { let c = '\"'; crate::fsutil::write_atomic(); crate::plots::x(); }\n";
    let found = map.violations("src/crop.rs", source);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("src/crop.rs:4: `crop` imports `gan::Gan`"), "{}", found[0]);
    assert!(found[1].starts_with("src/crop.rs:4: `crop` imports `gan::Preset`"), "{}", found[1]);
    assert!(found[2].starts_with("src/crop.rs:7: `crop` imports `plots::x`"), "{}", found[2]);
    // super:: climbs out of a file into its room's other files: quality may use the rest of dedupe.
    assert!(map.violations("src/dedupe/quality/scale.rs", "use super::super::run::crops_dir;").is_empty());
    let up = map.violations("src/imageops/jpeg.rs", "mod tests { use super::super::super::gan::Gan; }");
    assert_eq!(up.len(), 1, "{up:#?}");
    // A room's top-level items, not its files, where the table says `room::*`.
    assert!(map.violations("src/eval/select.rs", "use crate::gan::CheckpointState;").is_empty());
    assert_eq!(map.violations("src/eval/select.rs", "use crate::gan::trainer::Gan;").len(), 1);
}
