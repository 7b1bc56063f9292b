//! File and class names as data and as text shown to a person.
//!
//! A name from the file system or an archive is bytes. Where it is data (manifests, classes.jsonl,
//! kept.jsonl) it is kept exactly, by a lossless escape into a string: valid UTF-8 as itself, each
//! byte that is not part of valid UTF-8 as `\xHH`, and a backslash as `\\` (so that a name holding
//! the four characters `\xff` stays apart from one holding the byte 0xFF). JSON then escapes control
//! characters in its own way. Names of valid UTF-8 without a backslash, nearly all, are unchanged.
//!
//! Where a name is shown on a terminal or in a log, [`for_terminal`] writes control characters as
//! escapes, so that a name with a newline cannot fake a log line and ANSI escapes never reach the
//! terminal.

use std::fmt::Write as _;

/// The lossless string form of the name `bytes` (see the module's documentation).
pub fn encode_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The name's bytes back from [`encode_name`]'s form; None for a string it cannot have written.
pub fn decode_name(encoded: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(encoded.len());
    let bytes = encoded.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = encoded.get(i + 2..i + 4)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The key of the `n`-th record (n >= 2) of a source that repeats `name` (a tar may hold two members
/// of one name), for outputs named after their source: `name\#n`. [`encode_name`] never writes a
/// backslash followed by `#`, so the key meets no real name.
pub fn nth_occurrence(name: &str, n: u32) -> String {
    format!("{name}\\#{n}")
}

/// A key of [`nth_occurrence`] split back into the name and its occurrence; other names whole.
pub fn split_occurrence(key: &str) -> (&str, Option<u32>) {
    if let Some((name, n)) = key.rsplit_once("\\#") {
        // The backslash must not be the second of an escaped `\\`.
        let escaped = name.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1;
        if let (false, Ok(n)) = (escaped, n.parse()) {
            return (name, Some(n));
        }
    }
    (key, None)
}

/// The string form of an OS path or name (Unix: its bytes).
pub fn encode_os(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    encode_name(name.as_bytes())
}

/// Characters that change how a terminal shows what follows: C0 and C1 controls, DEL, and the
/// bidirectional overrides and isolates (which can make a name read backwards).
fn is_unsafe_to_show(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` safe to print on one line: control characters written as `\n`, `\r`, `\t` or `\u{1b}`.
pub fn for_terminal(text: &str) -> String {
    if !text.chars().any(is_unsafe_to_show) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_to_show(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_stay_apart() {
        let names: [&[u8]; 7] = [
            b"plain.jpg",
            b"caf\xc3\xa9.jpg",
            b"caf\xe9.jpg",
            b"caf\\xe9.jpg",
            b"a\nb\x1b[31m.jpg",
            b"\xff\xfe",
            b"\\",
        ];
        let encoded: Vec<String> = names.iter().map(|n| encode_name(n)).collect();
        for (name, text) in names.iter().zip(&encoded) {
            assert_eq!(decode_name(text).as_deref(), Some(*name), "{text}");
            assert_eq!(split_occurrence(text), (text.as_str(), None), "{text}");
            assert_eq!(split_occurrence(&nth_occurrence(text, 3)), (text.as_str(), Some(3)));
        }
        assert_eq!(encoded[0], "plain.jpg", "ordinary names are unchanged");
        assert_eq!(encoded[1], "café.jpg");
        assert_eq!(encoded[2], "caf\\xe9.jpg");
        assert_eq!(encoded[3], "caf\\\\xe9.jpg");
        let distinct: std::collections::BTreeSet<&String> = encoded.iter().collect();
        assert_eq!(distinct.len(), names.len());
        assert_eq!(decode_name("bad\\q"), None);
        assert_eq!(decode_name("bad\\x4"), None);
    }

    #[test]
    fn terminal_text_has_no_control_characters() {
        let shown = for_terminal("a\nfaces: warning: fake\x1b[31m\u{9b}\u{202e}gpj.exe");
        assert_eq!(shown, "a\\nfaces: warning: fake\\u{1b}[31m\\u{9b}\\u{202e}gpj.exe");
        assert!(!shown.chars().any(is_unsafe_to_show));
        assert_eq!(for_terminal("café/x.jpg"), "café/x.jpg");
    }
}
