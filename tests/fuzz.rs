//! Fuzzing where it pays (issue 35, item 3): the source readers (tar, tar.gz, LMDB, folder
//! names), the decoders' wrapper and the faces stage's box handling, fed mutated copies of valid
//! inputs (proptest: bit flips, bytes set, cuts, insertions; shrunk to a minimal case on failure).
//!
//! The targets are `#[ignore]`d: `make fuzz` runs each for FUZZ_SECONDS (default 60) and prints
//! the cases it ran. Crashers it finds become ordinary tests at the end of this file.

mod common;

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use dcgan_pipeline::data::names::{decode_name, encode_name, nth_occurrence, split_occurrence};
use dcgan_pipeline::data::ImageSource;
use dcgan_pipeline::faces::detector::{Detection, DetectorError, FaceBox, FaceDetector};
use dcgan_pipeline::imageops::{decode_rgb, decode_rgb_with_libjpeg, DecodeOptions, RgbImage};
use dcgan_pipeline::stage::{Failure, PerImageStage, Processed};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRng, TestRunner};

/// One edit of a seed's bytes.
#[derive(Debug, Clone)]
enum Edit {
    Flip {
        at: u32,
        bit: u8,
    },
    Set {
        at: u32,
        value: u8,
    },
    Cut {
        at: u32,
    },
    Insert {
        at: u32,
        bytes: Vec<u8>,
    },
    /// Copies `len` bytes from `from` over `at` (duplicated headers, lengths from elsewhere).
    Copy {
        from: u32,
        at: u32,
        len: u16,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<u32>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        3 => (any::<u32>(), prop_oneof![Just(0u8), Just(0xFF), Just(0x7F), Just(0x80), any::<u8>()])
            .prop_map(|(at, value)| Edit::Set { at, value }),
        1 => any::<u32>().prop_map(|at| Edit::Cut { at }),
        1 => (any::<u32>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        1 => (any::<u32>(), any::<u32>(), 1u16..64).prop_map(|(from, at, len)| Edit::Copy { from, at, len }),
    ]
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for e in edits {
        if out.is_empty() {
            break;
        }
        let pos = |at: u32, len: usize| at as usize % len;
        match e {
            Edit::Flip { at, bit } => {
                let i = pos(*at, out.len());
                out[i] ^= 1 << bit;
            }
            Edit::Set { at, value } => {
                let i = pos(*at, out.len());
                out[i] = *value;
            }
            Edit::Cut { at } => out.truncate(pos(*at, out.len())),
            Edit::Insert { at, bytes } => {
                let i = pos(*at, out.len());
                out.splice(i..i, bytes.iter().copied());
            }
            Edit::Copy { from, at, len } => {
                let (from, at) = (pos(*from, out.len()), pos(*at, out.len()));
                let n = (*len as usize).min(out.len() - from).min(out.len() - at);
                let chunk = out[from..from + n].to_vec();
                out[at..at + n].copy_from_slice(&chunk);
            }
        }
    }
    out
}

/// A seed and the edits made to it.
fn mutated(seeds: &[Vec<u8>]) -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds.to_vec();
    (0..seeds.len(), prop::collection::vec(edit(), 0..6)).prop_map(move |(k, edits)| apply(&seeds[k], &edits))
}

/// Runs `test` on cases of `strategy` for FUZZ_SECONDS (default 60), in rounds of 64 cases from
/// seeds 0, 1, 2...; a failure panics with the shrunk case. Prints the cases run.
fn fuzz<S: Strategy>(target: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let seconds: u64 = std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let (started, limit) = (Instant::now(), Duration::from_secs(seconds));
    let mut cases = 0u64;
    let mut round = 0u64;
    while started.elapsed() < limit {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&round.to_le_bytes());
        let config = Config { cases: 64, failure_persistence: None, ..Config::default() };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &seed));
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz {target}: round {round} failed after {cases} cases: {e}");
        }
        cases += 64;
        round += 1;
    }
    let cpu = cpu_seconds();
    println!(
        "fuzz {target}: {cases} cases in {:.0} s wall ({cpu:.0} s CPU of this process so far), nothing found",
        started.elapsed().as_secs_f64()
    );
}

/// This process's user + system CPU seconds (/proc/self/stat), to set beside wall time on a
/// loaded machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Every record of `path`, loaded: must end with records or an error, never a panic or a hang.
fn walk(path: &Path) {
    let Ok(source) = ImageSource::open(path) else { return };
    let _ = source.len_hint();
    let mut seen = 0u64;
    let _ = source.for_each_record(&|_| true, 1 << 20, &mut |record| {
        assert_eq!(record.index, seen, "records in order");
        seen += 1;
        if let Ok(bytes) = record.load(1 << 20) {
            assert!(bytes.len() <= 1 << 20);
        }
        ControlFlow::Continue(())
    });
}

fn tar_seeds() -> Vec<Vec<u8>> {
    let png = png_bytes(&textured(8, 6, 1));
    let jpeg = jpeg_bytes(&textured(9, 7, 2), 80);
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in
        [("a/x.png", &png), ("a/y.jpg", &jpeg), ("b/.hidden.png", &png), ("noext", &png), ("a/x.png", &jpeg)]
    {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes.as_slice()).unwrap();
    }
    for (kind, name, target) in
        [(tar::EntryType::Symlink, "a/l.png", "/etc/passwd"), (tar::EntryType::Link, "a/h.png", "a/x.png")]
    {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(0);
        tar.append_link(&mut header, name, target).unwrap();
    }
    let mut long = tar::Header::new_gnu();
    long.set_size(png.len() as u64);
    long.set_cksum();
    tar.append_data(&mut long, format!("{}/z.png", "d".repeat(150)), png.as_slice()).unwrap();
    let plain = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    vec![plain.clone(), gz.finish().unwrap(), plain[..1024].to_vec()]
}

#[test]
#[ignore = "fuzzing: make fuzz"]
fn fuzz_tar_reader() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = tar_seeds();
    fuzz("tar", (mutated(&seeds), any::<bool>()), |(bytes, gz)| {
        let path = dir.path().join(if gz { "f.tar.gz" } else { "f.tar" });
        std::fs::write(&path, &bytes).unwrap();
        walk(&path);
        Ok(())
    });
}

#[test]
#[ignore = "fuzzing: make fuzz"]
fn fuzz_lmdb_reader() {
    // Keys and values of any bytes, written by LMDB itself: the reader's side of LSUN's export.
    let dir = tempfile::tempdir().unwrap();
    let png = png_bytes(&textured(8, 6, 1));
    let value = prop_oneof![mutated(&[png]), prop::collection::vec(any::<u8>(), 0..64)];
    let entries = prop::collection::vec((prop::collection::vec(any::<u8>(), 1..40), value), 0..6);
    let round = std::sync::atomic::AtomicU64::new(0);
    fuzz("lmdb", entries, |entries| {
        let path = dir.path().join(round.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string());
        std::fs::create_dir_all(&path).unwrap();
        {
            let env = unsafe { heed::EnvOpenOptions::new().map_size(16 << 20).open(&path).unwrap() };
            let mut wtxn = env.write_txn().unwrap();
            let db: heed::Database<heed::types::Bytes, heed::types::Bytes> =
                env.create_database(&mut wtxn, None).unwrap();
            for (key, value) in &entries {
                db.put(&mut wtxn, key, value).unwrap();
            }
            wtxn.commit().unwrap();
        }
        let source = ImageSource::open(&path).unwrap();
        let mut names = Vec::new();
        source
            .for_each_record(&|_| true, 1 << 20, &mut |record| {
                names.push(decode_name(&record.name).expect("a key's name decodes"));
                ControlFlow::Continue(())
            })
            .unwrap();
        let mut keys: Vec<Vec<u8>> = entries.into_iter().map(|(k, _)| k).collect();
        keys.sort();
        keys.dedup();
        prop_assert_eq!(names, keys);
        std::fs::remove_dir_all(&path).unwrap();
        Ok(())
    });
}

#[test]
#[ignore = "fuzzing: make fuzz"]
fn fuzz_folder_names() {
    // Any bytes a Unix file name may hold: each record's name gives the file's bytes back, the
    // class is its folder's, and faces' PNG stems stay apart.
    let dir = tempfile::tempdir().unwrap();
    let png = png_bytes(&textured(4, 4, 1));
    let name = prop::collection::vec(any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0), 1..60)
        .prop_filter("not . or ..", |n| n != b"." && n != b"..");
    let round = std::sync::atomic::AtomicU64::new(0);
    fuzz("folder names", prop::collection::vec((name.clone(), prop::option::of(name)), 1..6), |files| {
        use std::os::unix::ffi::OsStrExt;
        let root = dir.path().join(round.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string());
        let mut expected = std::collections::BTreeSet::new();
        for (file, folder) in &files {
            let mut relative = folder
                .clone()
                .map(|mut f| {
                    f.push(b'/');
                    f
                })
                .unwrap_or_default();
            relative.extend_from_slice(file);
            let path = root.join(std::ffi::OsStr::from_bytes(&relative));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            if std::fs::write(&path, &png).is_ok() {
                expected.insert(relative);
            }
        }
        let source = ImageSource::open(&root).unwrap();
        let mut found = std::collections::BTreeSet::new();
        let mut stems = std::collections::BTreeSet::new();
        source
            .for_each_record(&|_| true, 1 << 20, &mut |record| {
                let bytes = decode_name(&record.name).expect("the name decodes");
                assert_eq!(encode_name(&bytes), record.name);
                assert_eq!(split_occurrence(&record.name), (record.name.as_str(), None));
                assert_eq!(split_occurrence(&nth_occurrence(&record.name, 2)), (record.name.as_str(), Some(2)));
                stems.insert(dcgan_pipeline::faces::png_stem(&record.name));
                stems.insert(dcgan_pipeline::faces::png_stem(&nth_occurrence(&record.name, 2)));
                found.insert(bytes);
                ControlFlow::Continue(())
            })
            .unwrap();
        // Hidden names are records too (skipped rows); a hidden folder is one record, unwalked.
        let visible: std::collections::BTreeSet<Vec<u8>> =
            expected.iter().filter(|p| !p.split(|b| *b == b'/').any(|c| c.starts_with(b"."))).cloned().collect();
        prop_assert!(visible.is_subset(&found), "{:?} not all in {:?}", visible, found);
        prop_assert_eq!(stems.len(), 2 * found.len(), "PNG stems collide");
        std::fs::remove_dir_all(&root).unwrap();
        Ok(())
    });
}

fn image_seeds() -> Vec<Vec<u8>> {
    let img = textured(24, 17, 4);
    let encode = |format: image::ImageFormat| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    };
    let mut progressive = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut progressive, 70);
    encoder.set_progressive(true);
    encoder.encode(img.as_raw(), 24, 17, jpeg_encoder::ColorType::Rgb).unwrap();
    vec![
        jpeg_bytes(&img, 85),
        with_exif_orientation(&jpeg_bytes(&img, 60), 6),
        progressive,
        encode(image::ImageFormat::Png),
        encode(image::ImageFormat::WebP),
        encode(image::ImageFormat::Gif),
        encode(image::ImageFormat::Bmp),
        encode(image::ImageFormat::Tiff),
    ]
}

#[test]
#[ignore = "fuzzing: make fuzz"]
fn fuzz_decoders() {
    let seeds = image_seeds();
    fuzz(
        "decoders",
        (mutated(&seeds), any::<bool>(), prop_oneof![Just(None), Just(Some(4u32)), Just(Some(12))]),
        |(bytes, keep, side)| {
            let options = DecodeOptions { max_pixels: 1 << 16, min_decoded_side: side, keep_damaged: keep };
            for decoded in
                [decode_rgb_with_libjpeg(&bytes, &options), decode_rgb(&bytes, 1 << 16)].into_iter().flatten()
            {
                let image = &decoded.image;
                prop_assert_eq!(image.pixels.len() as u64, image.width as u64 * image.height as u64 * 3);
                prop_assert!(image.width as u64 * image.height as u64 <= 1 << 16);
                prop_assert!(keep || decoded.damage.is_none());
            }
            Ok(())
        },
    );
}

/// A detector that reports what it is given.
struct Fixed(Vec<Detection>);

impl FaceDetector for Fixed {
    fn detect(&self, _image: &RgbImage) -> Result<Vec<Detection>, DetectorError> {
        Ok(self.0.clone())
    }
}

fn coordinate() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -100.0f32..400.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(3.0e9f32),
        1 => any::<f32>(),
    ]
}

fn detection() -> impl Strategy<Value = Detection> {
    (prop::array::uniform4(coordinate()), coordinate(), prop::array::uniform10(coordinate())).prop_map(
        |(exact, score, p)| {
            let face = FaceBox {
                x: exact[0].round() as i32,
                y: exact[1].round() as i32,
                w: exact[2].round() as i32,
                h: exact[3].round() as i32,
                neighbours: 0,
            };
            let landmarks = std::array::from_fn(|n| [p[2 * n], p[2 * n + 1]]);
            Detection { face, exact, score: Some(score), landmarks: Some(landmarks) }
        },
    )
}

fn faces_config() -> dcgan_pipeline::faces::FacesConfig {
    let config = dcgan_pipeline::config::Config::load(None, &[]).expect("the default configuration");
    config.faces
}

#[test]
#[ignore = "fuzzing: make fuzz"]
fn fuzz_face_boxes() {
    // Whatever boxes a detector reports (non-finite, huge, outside), the faces stage keeps only
    // boxes inside the photo, crops without a panic, and gives the same result twice.
    let photo = png_bytes(&textured(300, 200, 7));
    let aligns = prop_oneof![Just("box"), Just("eyes")];
    let borders = prop_oneof![Just("clamp"), Just("pad")];
    let strategy = (prop::collection::vec(detection(), 0..5), aligns, borders, 0.0f64..1.0);
    fuzz("face boxes", strategy, |(detections, align, border, margin)| {
        let mut config = faces_config();
        config.min_face_side = 0;
        config.size = 16;
        config.margin = margin;
        config.align = serde_json::from_value(serde_json::json!(align)).unwrap();
        config.border = serde_json::from_value(serde_json::json!(border)).unwrap();
        let stage =
            dcgan_pipeline::faces::FacesStage::with_detector(config.clone(), Box::new(Fixed(detections.clone())));
        let first = stage.process(&photo);
        let again = dcgan_pipeline::faces::FacesStage::with_detector(config, Box::new(Fixed(detections)));
        let second = again.process(&photo);
        let detail = |r: &Result<Processed, Failure>| match r {
            Ok(p) => (p.rows.clone(), p.detail.clone()),
            Err(f) => (Vec::new(), f.detail.clone()),
        };
        let (rows, info) = detail(&first);
        prop_assert_eq!((rows.clone(), info.clone()), detail(&second));
        for row in &rows {
            prop_assert_eq!(row.len(), 16 * 16 * 3);
        }
        for b in info.get("boxes").and_then(|b| b.as_array()).into_iter().flatten().filter(|b| b["kept"] == true) {
            let (x, w) = (b["x"].as_i64().unwrap(), b["w"].as_i64().unwrap());
            let (y, h) = (b["y"].as_i64().unwrap(), b["h"].as_i64().unwrap());
            prop_assert!(w > 0 && h > 0 && w <= 600 && h <= 400, "{}", b);
            prop_assert!((-1..=301).contains(&(x + w / 2)) && (-1..=201).contains(&(y + h / 2)), "{}", b);
        }
        Ok(())
    });
}
