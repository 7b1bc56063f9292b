//! Helpers shared by the integration tests: generated images and running the stage binaries.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{ImageBuffer, Rgb, RgbImage};

/// Photos that Debian's opencv-doc package ships (installed by `make setup`).
pub const OPENCV_SAMPLES: &str = "/usr/share/doc/opencv-doc/examples/data";

pub fn opencv_sample(name: &str) -> PathBuf {
    let path = Path::new(OPENCV_SAMPLES).join(name);
    assert!(path.exists(), "{} is missing: install Debian's opencv-doc (make setup)", path.display());
    path
}

pub fn jpeg_bytes(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).encode_image(img).unwrap();
    out
}

pub fn png_bytes<P: image::PixelWithColorType>(img: &ImageBuffer<P, Vec<P::Subpixel>>) -> Vec<u8>
where
    [P::Subpixel]: image::EncodableLayout,
{
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A textured image whose content differs with `seed`, so crops of different inputs differ.
pub fn textured(width: u32, height: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let v = (x * 7 + y * 13 + seed * 31) % 256;
        Rgb([v as u8, ((x + seed * 17) % 256) as u8, ((y * 3 + seed) % 256) as u8])
    })
}

/// A decompression bomb: a valid 1x1 PNG whose header announces `width` x `height` pixels.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut bomb = png_bytes(&RgbImage::new(1, 1));
    bomb[16..20].copy_from_slice(&width.to_be_bytes());
    bomb[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    bomb
}

/// PNG's CRC-32, to keep a hand-edited header valid.
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

/// Inserts an EXIF APP1 segment carrying `orientation` right after the SOI marker.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    // Little-endian TIFF: header, one IFD with a single SHORT entry (0x0112), no next IFD.
    let mut tiff = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// An LMDB folder laid out as LSUN's export (string keys -> encoded images), 64 MiB map.
pub fn write_lmdb<K: AsRef<str>>(path: &Path, items: &[(K, Vec<u8>)]) {
    std::fs::create_dir_all(path).unwrap();
    let env = unsafe { heed::EnvOpenOptions::new().map_size(64 << 20).open(path).unwrap() };
    let mut wtxn = env.write_txn().unwrap();
    let db: heed::Database<heed::types::Str, heed::types::Bytes> = env.create_database(&mut wtxn, None).unwrap();
    for (key, value) in items {
        db.put(&mut wtxn, key.as_ref(), value).unwrap();
    }
    wtxn.commit().unwrap();
}

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

pub fn crop_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crop"))
}

/// Runs `crop` with `args`; returns its output (status checked by the caller).
pub fn run_crop(args: &[&str]) -> Output {
    let out = crop_bin().args(args).output().expect("crop runs");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs `crop --input INPUT --output OUTPUT EXTRA...` and asserts that it succeeded.
pub fn crop_ok(input: &Path, output: &Path, extra: &[&str]) {
    let mut args = vec!["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run_crop(&args);
    assert!(out.status.success(), "crop failed: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn read_manifest(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn row_for<'a>(rows: &'a [serde_json::Value], source: &str) -> &'a serde_json::Value {
    rows.iter().find(|r| r["source"] == source).unwrap_or_else(|| panic!("no manifest row for {source}"))
}

/// Every file of a folder (recursively) with its bytes, for exact comparisons of two outputs.
pub fn folder_bytes(dir: &Path, skip: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .filter(|(name, _)| !skip.iter().any(|s| name.contains(s)))
        .collect();
    files.sort();
    files
}

/// A 32x32 image of one of ten generated classes: each class has its own colour and stripe
/// direction, each image its own phase, contrast and noise, so that classes are learnable but no
/// two images are alike.
pub fn class_image(class: u32, seed: u32) -> RgbImage {
    const PALETTE: [[f32; 3]; 10] = [
        [200., 60., 60.],
        [60., 200., 60.],
        [60., 60., 200.],
        [200., 200., 60.],
        [200., 60., 200.],
        [60., 200., 200.],
        [230., 140., 40.],
        [120., 120., 120.],
        [40., 90., 160.],
        [150., 210., 120.],
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9) ^ class.wrapping_mul(0x85EB_CA6B);
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 1000) as f32 / 1000.0 - 0.5
    };
    let angle = class as f32 * std::f32::consts::PI / 10.0;
    let (dx, dy) = (angle.cos(), angle.sin());
    let phase = noise() * 6.0;
    let contrast = 50.0 + noise() * 30.0;
    RgbImage::from_fn(32, 32, |x, y| {
        let stripe = ((x as f32 * dx + y as f32 * dy) * 0.8 + phase).sin() * contrast;
        let base = PALETTE[class as usize];
        let mut px = |c: usize| (base[c] + stripe + noise() * 40.0).clamp(0.0, 255.0) as u8;
        Rgb([px(0), px(1), px(2)])
    })
}

/// CIFAR-10-style class folders (`<split>/<class>/NNNN.png`) of [`class_image`]s.
pub fn class_folders(root: &Path, split: &str, per_class: u32, seed: u32) {
    const NAMES: [&str; 10] =
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
    for (c, name) in NAMES.iter().enumerate() {
        for i in 0..per_class {
            write(
                &root.join(split).join(name).join(format!("{i:04}.png")),
                &png_bytes(&class_image(c as u32, seed + i * 10 + c as u32)),
            );
        }
    }
}

/// A gzip-compressed tar of `members` (name, bytes), in the given order.
pub fn write_tar_gz(path: &Path, members: impl IntoIterator<Item = (String, Vec<u8>)>) {
    let file = std::fs::File::create(path).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, &name, bytes.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}
