//! The damage matrix (issue 35, items 1, 2, 4): damaged copies of opencv-doc's photos in every
//! format the stages read, generated here (never committed), run through crop, faces and dedupe.
//! Each is a failed row naming its file, or an `ok` row whose pixels equal a clean decode; no
//! panic; no decoder message on stderr without its file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::*;
use dcgan_pipeline::data::packed::read_packed;
use dcgan_pipeline::imageops::{decode_rgb, decode_rgb_with_libjpeg, min_resize_center_crop, DecodeOptions};
use serde_json::Value;

const SIZE: u32 = 32;

fn bin(name: &str) -> Command {
    Command::new(match name {
        "crop" => env!("CARGO_BIN_EXE_crop"),
        "faces" => env!("CARGO_BIN_EXE_faces"),
        "dedupe" => env!("CARGO_BIN_EXE_dedupe"),
        other => panic!("no binary {other}"),
    })
}

fn run(name: &str, input: &Path, output: &Path, sets: &[&str]) -> Output {
    let mut command = bin(name);
    command.arg("--input").arg(input).arg("--output").arg(output);
    for s in sets {
        command.args(["--set", s]);
    }
    let out = command.output().expect("the stage runs");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// How a clean photo is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The first `percent` of the file.
    Cut(usize),
    /// The first `percent`, then the file's last 200 bytes (a JPEG's end marker kept).
    CutKeepTail(usize),
    /// Out of the middle: from 40% to 60%.
    Hole,
    /// One bit flipped at `percent` of the way into the data after the headers.
    Flip(usize),
    /// The header's height made 4 times larger.
    TallerHeader,
    ZeroLength,
}

fn damaged(clean: &[u8], damage: Damage, header_end: usize) -> Vec<u8> {
    let at = |percent: usize| clean.len() * percent / 100;
    match damage {
        Damage::Cut(p) => clean[..at(p)].to_vec(),
        Damage::CutKeepTail(p) => [&clean[..at(p)], &clean[clean.len() - 200..]].concat(),
        Damage::Hole => [&clean[..at(40)], &clean[at(60)..]].concat(),
        Damage::Flip(p) => {
            let mut out = clean.to_vec();
            let i = header_end + (clean.len() - header_end) * p / 100;
            out[i] ^= 0x10;
            out
        }
        Damage::TallerHeader => unreachable!("made per format"),
        Damage::ZeroLength => Vec::new(),
    }
}

/// The photo in each format, with where its pixel data starts.
fn clean_photos() -> Vec<(&'static str, Vec<u8>, usize)> {
    let jpeg = std::fs::read(opencv_sample("baboon.jpg")).unwrap();
    let scan = dcgan_pipeline::imageops::jpeg::read_jpeg_info(&jpeg).unwrap().first_scan + 20;
    let rgb = image::load_from_memory(&std::fs::read(opencv_sample("fruits.jpg")).unwrap()).unwrap().to_rgb8();
    let rgb = image::imageops::resize(&rgb, 160, 120, image::imageops::FilterType::Triangle);
    let encode = |format: image::ImageFormat| {
        let mut out = std::io::Cursor::new(Vec::new());
        rgb.write_to(&mut out, format).unwrap();
        out.into_inner()
    };
    let png = encode(image::ImageFormat::Png);
    // The first IDAT's data.
    let idat = png.windows(4).position(|w| w == b"IDAT").unwrap() + 8;
    vec![
        ("jpg", jpeg, scan),
        ("png", png, idat),
        ("webp", encode(image::ImageFormat::WebP), 30),
        ("gif", encode(image::ImageFormat::Gif), 800),
        ("bmp", encode(image::ImageFormat::Bmp), 54),
        ("tif", encode(image::ImageFormat::Tiff), 8),
    ]
}

/// A copy whose header claims 4 times the height.
fn taller_header(format: &str, clean: &[u8]) -> Option<Vec<u8>> {
    let mut out = clean.to_vec();
    match format {
        "jpg" => {
            let sof = out.windows(2).position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2])?;
            let h = u16::from_be_bytes([out[sof + 5], out[sof + 6]]) * 4;
            out[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        }
        "png" => {
            let h = u32::from_be_bytes(out[20..24].try_into().unwrap()) * 4;
            out[20..24].copy_from_slice(&h.to_be_bytes());
            let crc = crc32(&out[12..29]);
            out[29..33].copy_from_slice(&crc.to_be_bytes());
        }
        "bmp" => {
            let h = i32::from_le_bytes(out[22..26].try_into().unwrap()) * 4;
            out[22..26].copy_from_slice(&h.to_le_bytes());
        }
        "gif" => {
            let h = u16::from_le_bytes([out[8], out[9]]) * 4;
            out[8..10].copy_from_slice(&h.to_le_bytes());
        }
        _ => return None,
    }
    Some(out)
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Writes the matrix into `dir`: name -> the clean photo it was made from (None: clean itself).
fn write_matrix(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut made = BTreeMap::new();
    let damages = [
        Damage::Cut(10),
        Damage::Cut(50),
        Damage::Cut(97),
        Damage::CutKeepTail(20),
        Damage::CutKeepTail(70),
        Damage::Hole,
        Damage::Flip(10),
        Damage::Flip(50),
        Damage::Flip(90),
        Damage::TallerHeader,
        Damage::ZeroLength,
    ];
    for (format, clean, header_end) in clean_photos() {
        write(&dir.join(format!("clean.{format}")), &clean);
        made.insert(format!("clean.{format}"), clean.clone());
        for damage in damages {
            let bytes = match damage {
                Damage::TallerHeader => match taller_header(format, &clean) {
                    Some(b) => b,
                    None => continue,
                },
                d => damaged(&clean, d, header_end),
            };
            let name = format!("{damage:?}.{format}").replace(['(', ')'], "");
            write(&dir.join(&name), &bytes);
            made.insert(name, clean.clone());
        }
    }
    // Extreme aspect ratios, whole.
    for (name, w, h) in [("wide.png", 20000, 20), ("tall.png", 1, 5000), ("thin.png", 1000, 2)] {
        let bytes = png_bytes(&textured(w, h, 3));
        write(&dir.join(name), &bytes);
        made.insert(name.into(), bytes);
    }
    let wide_jpeg = jpeg_bytes(&textured(20000, 20, 5), 90);
    write(&dir.join("wide.jpg"), &wide_jpeg);
    made.insert("wide.jpg".into(), wide_jpeg);
    made
}

/// The crop a clean decode of `bytes` gives: libjpeg for JPEG (full size), the image crate else.
fn clean_crop(bytes: &[u8]) -> Option<Vec<u8>> {
    let decoded = decode_rgb_with_libjpeg(bytes, &DecodeOptions::checked(1 << 28)).ok()?;
    Some(min_resize_center_crop(&decoded.image, SIZE).pixels)
}

/// Every row of an ok photo, by source: its crop (rows in the images in manifest order).
fn crops_by_source(output: &Path, rows: &[Value]) -> BTreeMap<String, Vec<u8>> {
    let set = read_packed(output).unwrap();
    let row_bytes = (SIZE * SIZE * 3) as usize;
    let mut out = BTreeMap::new();
    for row in rows.iter().filter(|r| r["status"] == "ok") {
        let i = row["index"].as_u64().unwrap() as usize;
        out.insert(row["source"].as_str().unwrap().to_owned(), set.images[i * row_bytes..(i + 1) * row_bytes].to_vec());
    }
    out
}

#[test]
fn damaged_photos_are_failed_rows_or_clean_decodes_in_crop_faces_and_dedupe() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let made = write_matrix(&input);

    // crop, at full size (no DCT scaling) so that a clean decode is comparable pixel for pixel.
    let crop_out = dir.path().join("crop");
    let out = run("crop", &input, &crop_out, &["crop.dct_scaling=false"]);
    assert_eq!(out.status.code(), Some(3), "some inputs fail: {}", stderr(&out));
    let rows = read_manifest(&crop_out);
    assert_eq!(rows.len(), made.len(), "one row per file");
    let crops = crops_by_source(&crop_out, &rows);
    let log = stderr(&out);
    let mut failed = Vec::new();
    for row in &rows {
        let name = row["source"].as_str().unwrap();
        let bytes = std::fs::read(input.join(name)).unwrap();
        match row["status"].as_str().unwrap() {
            "ok" => {
                let got = &crops[name];
                let clean_original = clean_crop(&made[name]);
                // A flipped bit may leave a valid file of other pixels: then the pixels must be
                // what a second, independent decoder (the image crate's, pure Rust) makes of it.
                let independent =
                    decode_rgb(&bytes, 1 << 28).ok().map(|d| min_resize_center_crop(&d.image, SIZE).pixels);
                let same_as_original = clean_original.as_ref() == Some(got);
                let close_to_independent = independent
                    .as_ref()
                    .is_some_and(|want| want.iter().zip(got).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0) <= 8);
                // Formats without a checksum (BMP, TIFF, GIF, WebP) stay valid files after a flipped
                // bit, and a GIF's screen may be larger than its frame: other pixels, truly encoded.
                let still_valid = (name.starts_with("Flip") && !name.ends_with(".jpg")) || name == "TallerHeader.gif";
                let accepted = same_as_original || (name.ends_with(".jpg") && close_to_independent) || still_valid;
                assert!(accepted, "{name}: an ok row whose pixels no clean decode gives");
            }
            "error" => {
                let reason = row["reason"].as_str().unwrap();
                assert!(!reason.is_empty(), "{name}");
                assert!(log.contains(&format!("{name}: {reason}")), "{name}: the warning names the file");
                failed.push(name.to_owned());
            }
            other => panic!("{name}: status {other}"),
        }
    }
    for name in made.keys().filter(|n| n.starts_with("Cut") || n.starts_with("Hole") || n.starts_with("ZeroLength")) {
        assert!(failed.contains(name), "{name}: cut, holed or empty, yet not failed");
    }
    for line in log.lines() {
        assert!(!line.starts_with("Corrupt JPEG") && !line.starts_with("Premature end"), "a bare libjpeg line: {line}");
    }
    assert!(!log.contains("panicked") && !log.contains("internal error"), "{log}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(crop_out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["counts"]["error"].as_u64(), Some(failed.len() as u64), "failed rows are counted");

    faces_agree(&input, dir.path(), &failed);
    dedupe_agrees(&input, dir.path(), &failed, &crops);
}

/// faces over the matrix: crop's verdicts, thin photos skipped, no invented box, the same rows twice.
fn faces_agree(input: &Path, dir: &Path, failed: &[String]) {
    // faces: the same verdicts (one checked decode), thin photos skipped with a reason, the same
    // boxes on a second run.
    let faces_out = dir.join("faces");
    let faces_sets = ["faces.min_face_side=16", "faces.keep_damaged=false"];
    let out = run("faces", input, &faces_out, &faces_sets);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let face_rows = read_manifest(&faces_out);
    let faces_log = stderr(&out);
    for row in &face_rows {
        let name = row["source"].as_str().unwrap();
        let crop_failed = failed.iter().any(|f| f == name);
        assert_eq!(row["status"] == "error", crop_failed, "{name}: faces and crop disagree: {row}");
        if crop_failed {
            assert!(faces_log.contains(&format!("{name}: ")), "{name}: the warning names the file");
        }
        for b in row["boxes"].as_array().into_iter().flatten().filter(|b| b["kept"] == true) {
            let (x, y, w, h) = (
                b["x"].as_i64().unwrap(),
                b["y"].as_i64().unwrap(),
                b["w"].as_i64().unwrap(),
                b["h"].as_i64().unwrap(),
            );
            let (iw, ih) = (row["width"].as_i64().unwrap(), row["height"].as_i64().unwrap());
            assert!(
                w > 0
                    && h > 0
                    && w <= 2 * iw
                    && h <= 2 * ih
                    && x + w / 2 >= -1
                    && x + w / 2 <= iw + 1
                    && y + h / 2 >= -1
                    && y + h / 2 <= ih + 1,
                "{name}: an invented box {b}"
            );
        }
    }
    for thin in ["wide.png", "thin.png", "wide.jpg"] {
        let row = row_for(&face_rows, thin);
        assert_eq!(row["status"], "skipped", "{row}");
        assert!(row["reason"].as_str().unwrap().contains("thinner than"), "{row}");
    }
    let again = dir.join("faces-again");
    assert_eq!(run("faces", input, &again, &faces_sets).status.code(), Some(3));
    let strip = |rows: Vec<Value>| -> Vec<Value> {
        rows.into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("part");
                r
            })
            .collect()
    };
    assert_eq!(strip(read_manifest(&again)), strip(face_rows), "the same boxes on every run");
}

/// dedupe's crop pass over the matrix: crop's verdicts and crop's crops.
fn dedupe_agrees(input: &Path, dir: &Path, failed: &[String], crops: &BTreeMap<String, Vec<u8>>) {
    // dedupe's crop pass: the same verdicts and the same crops as crop's.
    let dedupe_out = dir.join("dedupe");
    let dedupe_sets = [
        "dedupe.size=32",
        "dedupe.dct_scaling=false",
        "dedupe.ae_steps=5",
        "dedupe.ae_min_steps=1",
        "dedupe.ae_batch=8",
        "dedupe.device=cpu",
    ];
    let out = run("dedupe", input, &dedupe_out, &dedupe_sets);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    let crop_rows = read_manifest(&dedupe_out.join("crops"));
    let dedupe_crops = crops_by_source(&dedupe_out.join("crops"), &crop_rows);
    for row in &crop_rows {
        let name = row["source"].as_str().unwrap();
        assert_eq!(row["status"] == "error", failed.iter().any(|f| f == name), "{name}: dedupe and crop disagree");
    }
    assert_eq!(&dedupe_crops, crops, "dedupe's crops are crop's");
}

#[test]
fn a_jpeg_with_a_hole_keeping_its_end_marker_is_a_failed_row_unless_kept() {
    // The F1: libjpeg filled the hole with grey and the row said ok.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let whole = std::fs::read(opencv_sample("baboon.jpg")).unwrap();
    let hole = [&whole[..whole.len() / 5], &whole[whole.len() - 200..]].concat();
    write(&input.join("hole.jpg"), &hole);
    write(&input.join("whole.jpg"), &whole);
    let output = dir.path().join("out");
    let out = run("crop", &input, &output, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let rows = read_manifest(&output);
    let row = row_for(&rows, "hole.jpg");
    assert_eq!(row["status"], "error", "{row}");
    assert!(row["reason"].as_str().unwrap().contains("Corrupt JPEG data"), "{row}");
    let log = stderr(&out);
    assert!(log.contains("hole.jpg: corrupt JPEG: libjpeg: Corrupt JPEG data"), "{log}");
    assert!(log.lines().all(|l| !l.starts_with("Corrupt JPEG")), "libjpeg printed on its own: {log}");
    assert_eq!(row_for(&rows, "whole.jpg")["status"], "ok");

    // Kept on request, and then the row says so.
    let kept = dir.path().join("kept");
    let out = run("crop", &input, &kept, &["crop.keep_damaged=true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = read_manifest(&kept);
    let row = row_for(&rows, "hole.jpg");
    assert_eq!(row["status"], "ok");
    assert!(row["damaged"].as_str().unwrap().contains("Corrupt JPEG data"), "{row}");
    assert!(row_for(&rows, "whole.jpg").get("damaged").is_none());
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(kept.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stage_counts"]["kept_damaged"], 1, "{summary}");
}

/// A tar's bytes: each member (name, bytes) a regular file, then what `extra` appends.
fn tar_bytes(members: &[(&str, &[u8])], extra: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, *bytes).unwrap();
    }
    extra(&mut tar);
    tar.into_inner().unwrap()
}

fn link(tar: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, target: &str) {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(0);
    header.set_mode(0o644);
    tar.append_link(&mut header, name, target).unwrap();
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn tar_members_of_one_name_and_link_members_each_get_a_row_and_no_output_is_written_twice() {
    // The F3: two members people/p.jpg (a photo and its mirror image) lost a crop or
    // overwrote one PNG; link members were passed over without a word.
    let dir = tempfile::tempdir().unwrap();
    let photo = image::load_from_memory(&std::fs::read(opencv_sample("messi5.jpg")).unwrap()).unwrap().to_rgb8();
    let (a, b) = (jpeg_bytes(&photo, 90), jpeg_bytes(&image::imageops::flip_horizontal(&photo), 90));
    let archive = dir.path().join("dup.tar");
    let bytes = tar_bytes(&[("people/p.jpg", &a), ("people/p.jpg", &b)], |tar| {
        link(tar, tar::EntryType::Symlink, "people/passwd.jpg", "/etc/passwd");
        link(tar, tar::EntryType::Link, "people/again.jpg", "people/p.jpg");
    });
    write(&archive, &bytes);

    let output = dir.path().join("faces");
    let out = run("faces", &archive, &output, &["faces.save_png=true", "faces.min_face_side=16"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = read_manifest(&output);
    let photos: Vec<&Value> = rows.iter().filter(|r| r["source"] == "people/p.jpg").collect();
    assert_eq!(photos.len(), 2, "a row for each member");
    assert!(photos.iter().all(|r| r["status"] == "ok" && r["outputs"].as_u64() > Some(0)), "no crop lost: {photos:?}");
    assert!(photos[0].get("duplicate").is_none());
    assert!(photos[1]["duplicate"].as_str().unwrap().contains("member 2 of this name"), "{}", photos[1]);
    assert!(stderr(&out).contains("people/p.jpg: member 2 of this name"), "a warning names it");
    let pngs: Vec<&str> =
        photos.iter().flat_map(|r| r["png"].as_array().unwrap().iter().map(|p| p.as_str().unwrap())).collect();
    let distinct: std::collections::BTreeSet<&&str> = pngs.iter().collect();
    assert_eq!(distinct.len(), pngs.len(), "no PNG name twice: {pngs:?}");
    let kept: u64 = photos.iter().map(|r| r["outputs"].as_u64().unwrap()).sum();
    assert_eq!(std::fs::read_dir(output.join("crops")).unwrap().count() as u64, kept, "one file per kept face");
    let crops: Vec<Vec<u8>> = pngs.iter().map(|p| std::fs::read(output.join(p)).unwrap()).collect();
    assert_ne!(crops[0], crops[crops.len() - 1], "the mirror image's crop is its own");
    for (name, says) in [
        ("people/passwd.jpg", "symbolic link member (to /etc/passwd): not followed"),
        ("people/again.jpg", "hard link member (to people/p.jpg): not followed"),
    ] {
        let row = row_for(&rows, name);
        assert_eq!(row["status"], "skipped", "{row}");
        assert_eq!(row["reason"], says, "{row}");
    }

    // crop too: both members, the second marked.
    let output = dir.path().join("crop");
    let out = run("crop", &archive, &output, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = read_manifest(&output);
    assert_eq!(rows.iter().filter(|r| r["source"] == "people/p.jpg" && r["status"] == "ok").count(), 2);
    assert_eq!(rows.iter().filter(|r| r["status"] == "skipped").count(), 2, "the two links");
}

#[test]
#[allow(clippy::too_many_lines, reason = "a test kept as written: issue 41 moves code, tests pass unchanged")]
fn damaged_archives_name_the_member_and_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = std::fs::read(opencv_sample("baboon.jpg")).unwrap();
    let png = png_bytes(&textured(64, 48, 1));
    let whole = tar_bytes(&[("a.png", &png), ("b.jpg", &jpeg), ("c.png", &png)], |_| {});
    let b_header = 512 + png.len().div_ceil(512) * 512;

    // A tar cut inside b.jpg's data: a failed row for b.jpg naming where its header is.
    let cut = dir.path().join("cut.tar");
    write(&cut, &whole[..b_header + 512 + jpeg.len() / 2]);
    let output = dir.path().join("cut");
    let out = run("crop", &cut, &output, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let rows = read_manifest(&output);
    assert_eq!(row_for(&rows, "a.png")["status"], "ok");
    let reason = row_for(&rows, "b.jpg")["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains(&format!("the archive ends inside this member (header at byte {b_header} of the file)")),
        "{reason}"
    );

    // The same cut, gzip-compressed: the member and the offset in the decompressed stream.
    let cut_gz = dir.path().join("cut.tar.gz");
    let gz = gzip(&whole);
    write(&cut_gz, &gz[..gz.len() * 6 / 10]);
    let out = run("crop", &cut_gz, &dir.path().join("cut-gz"), &[]);
    let log = stderr(&out);
    assert!(matches!(out.status.code(), Some(1 | 3)), "{log}");
    assert!(log.contains("of the decompressed stream"), "the offset is named: {log}");

    // A header claiming 8 GiB: its row, then one line naming it and its offset.
    let big = dir.path().join("big.tar");
    let mut header = tar::Header::new_gnu();
    header.set_path("big.jpg").unwrap();
    header.set_size(8 << 30);
    header.set_mode(0o644);
    header.set_cksum();
    write(&big, &[header.as_bytes().as_slice(), &jpeg, &vec![0u8; 1024]].concat());
    let out = run("crop", &big, &dir.path().join("big"), &[]);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("after member big.jpg (header at byte 0 of the file, 8589934592 bytes of data claimed)"),
        "{log}"
    );

    // What is not a tar, under a tar's name.
    for (name, bytes, holds) in [
        ("notes.tar.gz", b"these are my holiday notes, not an archive\n".repeat(20), "it holds text"),
        (
            "photos.tar",
            [b"PK\x03\x04\x14\x00\x00\x00\x08\x00".as_slice(), &[7u8; 600]].concat(),
            "it holds a zip archive",
        ),
    ] {
        let path = dir.path().join(name);
        write(&path, &bytes);
        let out = run("crop", &path, &dir.path().join(format!("{name}-out")), &[]);
        let log = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{log}");
        assert!(log.contains(name) && log.contains(&format!("not a tar archive: {holds}")), "{log}");
    }

    // A tar stream split over two gzip members (as `cat a.gz b.gz` makes): every member read.
    let multi = dir.path().join("multi.tar.gz");
    let half = whole.len() / 2;
    write(&multi, &[gzip(&whole[..half]), gzip(&whole[half..])].concat());
    let output = dir.path().join("multi");
    let out = run("crop", &multi, &output, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(read_manifest(&output).iter().filter(|r| r["status"] == "ok").count(), 3);

    // An LMDB whose values are garbage: a failed row per key, each named.
    let lmdb = dir.path().join("lmdb");
    write_lmdb(&lmdb, &[("k1", b"garbage".to_vec()), ("k2", vec![0xFF, 0xD8, 0xFF, 0x00, 1, 2]), ("k3", png.clone())]);
    let output = dir.path().join("lmdb-out");
    let out = run("crop", &lmdb, &output, &[]);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{log}");
    let rows = read_manifest(&output);
    for key in ["k1", "k2"] {
        assert_eq!(row_for(&rows, key)["status"], "error");
        assert!(log.contains(&format!("{}:{key}: ", lmdb.display())), "{log}");
    }
    assert_eq!(row_for(&rows, "k3")["status"], "ok");

    // LSUN's data.mdb cut short (an interrupted download): LMDB would map the missing pages and die
    // of SIGBUS on the first read past the end; the stage says so instead and writes nothing.
    let big: Vec<(String, Vec<u8>)> = (0..40).map(|k| (format!("p{k:02}"), png_bytes(&textured(96, 96, k)))).collect();
    let cut = dir.path().join("lmdb-cut");
    write_lmdb(&cut, &big);
    let data = std::fs::read(cut.join("data.mdb")).unwrap();
    std::fs::write(cut.join("data.mdb"), &data[..data.len() / 2]).unwrap();
    let output = dir.path().join("lmdb-cut-out");
    let out = run("crop", &cut, &output, &[]);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("data.mdb is cut") && log.contains(&format!("{} bytes", data.len() / 2)), "{log}");
    assert!(!output.join("manifest.jsonl").exists());
}

#[test]
fn thread_count_is_lowered_to_what_the_memory_holds_for_the_largest_photos() {
    // Item 8: faces with run.threads = 12 on bomb-sized photos peaked at 5.7 GB.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write(&input.join("a.png"), &png_bytes(&textured(64, 64, 1)));
    for stage in ["crop", "faces"] {
        let output = dir.path().join(stage);
        // 100 MP photos: 1.4 GB each to decode; 12 of them do not fit in 4 GiB.
        let sets = ["run.threads=12", "run.max_memory_gb=4", &format!("{stage}.max_pixels=100000000")];
        let out = run(stage, &input, &output, &sets);
        let log = stderr(&out);
        assert!(matches!(out.status.code(), Some(0 | 3)), "{log}");
        assert!(log.contains("2 worker threads instead of 12"), "{stage}: {log}");
        assert!(log.contains("run.max_memory_gb = 4"), "{log}");
    }
}
