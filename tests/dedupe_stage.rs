//! The dedupe stage end to end, through its binary: real photos (Debian's opencv-doc samples)
//! with exact and edited copies, LSUN's LMDB layout, resume, a saved model, bad inputs.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use dcgan_pipeline::data::npy::read_array;
use dcgan_pipeline::data::packed::read_packed;
use serde_json::Value;

/// Distinct natural photos (no pairs of one scene, which the samples also hold).
const PHOTOS: &[&str] = &[
    "baboon.jpg",
    "fruits.jpg",
    "aero1.jpg",
    "building.jpg",
    "butterfly.jpg",
    "orange.jpg",
    "starry_night.jpg",
    "messi5.jpg",
    "apple.jpg",
    "HappyFish.jpg",
    "home.jpg",
    "smarties.png",
    "squirrel_cls.jpg",
    "board.jpg",
];

/// Settings that keep a test short: a small model trained briefly on the CPU.
const QUICK: &[&str] = &["--set", "dedupe.ae_steps=300", "--set", "dedupe.ae_batch=32", "--set", "dedupe.device=cpu"];

fn run_dedupe(args: &[&str]) -> Output {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_dedupe")).args(args).args(QUICK).output().expect("dedupe runs");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn dedupe_ok(input: &Path, output: &Path, extra: &[&str]) {
    let mut args = vec!["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run_dedupe(&args);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dedupe failed: {log}");
    // Every whole-set step that takes minutes at millions reports its progress (a last line each).
    for step in ["codes", "code pairs", "outputs"] {
        assert!(log.contains(&format!("dedupe: {step}: ")), "no progress of {step}: {log}");
    }
}

/// Copies the photos into `input`; returns their names.
fn copy_photos(input: &Path) -> Vec<String> {
    PHOTOS
        .iter()
        .map(|name| {
            write(&input.join(name), &std::fs::read(opencv_sample(name)).unwrap());
            name.to_string()
        })
        .collect()
}

fn summary(output: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(output.join("summary.json")).unwrap()).unwrap()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn exact_copies_collide_unrelated_photos_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let names = copy_photos(&input);
    // Byte-identical copies (names sort after the originals: the originals come first).
    for name in ["baboon.jpg", "fruits.jpg", "starry_night.jpg"] {
        write(&input.join(format!("zz-copy-of-{name}")), &std::fs::read(input.join(name)).unwrap());
    }
    // A larger re-encoding of a small photo: the same picture, more source pixels, so it is the
    // one kept.
    let small = image::open(input.join("orange.jpg")).unwrap().to_rgb8();
    let big =
        image::imageops::resize(&small, small.width() * 2, small.height() * 2, image::imageops::FilterType::Triangle);
    write(&input.join("zz-orange-2x.jpg"), &jpeg_bytes(&big, 95));
    let output = dir.path().join("out");
    dedupe_ok(&input, &output, &[]);

    let rows = read_manifest(&output);
    assert_eq!(rows.len(), names.len() + 4);
    for name in ["baboon.jpg", "fruits.jpg", "starry_night.jpg"] {
        let copy = row_for(&rows, &format!("zz-copy-of-{name}"));
        assert_eq!(copy["status"], "skipped", "{copy}");
        assert_eq!(copy["duplicate_of"], name);
        assert_eq!(copy["distance"], 0);
        assert_eq!(copy["code"], row_for(&rows, name)["code"]);
    }
    // Every distinct photo is kept, in its own cluster.
    let kept: Vec<&str> = rows.iter().filter(|r| r["status"] == "ok").map(|r| r["source"].as_str().unwrap()).collect();
    for name in &names {
        if name != "orange.jpg" {
            assert!(kept.contains(&name.as_str()), "{name} was removed: {}", row_for(&rows, name));
        }
    }
    let clusters: Vec<i64> =
        names.iter().filter(|n| *n != "orange.jpg").map(|n| row_for(&rows, n)["cluster"].as_i64().unwrap()).collect();
    let distinct: std::collections::BTreeSet<_> = clusters.iter().collect();
    assert_eq!(distinct.len(), clusters.len(), "unrelated photos share a cluster");
    // The two oranges: one cluster if the hash holds them together, and then the bigger is kept.
    let orange = row_for(&rows, "orange.jpg");
    if orange["status"] == "skipped" {
        assert_eq!(orange["duplicate_of"], "zz-orange-2x.jpg");
    }

    // The packed kept set matches the manifest, rows in input order.
    let packed = read_packed(&output).unwrap();
    assert_eq!((packed.len(), packed.height, packed.width), (kept.len(), 64, 64));
    let text = std::fs::read_to_string(output.join("kept.jsonl")).unwrap();
    let listed: Vec<String> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed, kept);
    for (i, r) in rows.iter().filter(|r| r["status"] == "ok").enumerate() {
        assert_eq!(r["index"], i as u64);
    }
    // Clusters and pairs with distances; the page embeds the crops.
    let clusters = lines(&output.join("clusters.jsonl"));
    assert!(clusters.iter().any(|c| c["kept"] == "baboon.jpg" && c["size"] == 2), "{clusters:?}");
    let pairs = lines(&output.join("pairs.jsonl"));
    assert!(pairs.iter().any(|p| p["a"] == "fruits.jpg" && p["b"] == "zz-copy-of-fruits.jpg" && p["distance"] == 0));
    let html = std::fs::read_to_string(output.join("report.html")).unwrap();
    assert!(html.contains("data:image/png;base64,") && html.contains("title=\"zz-copy-of-baboon.jpg\""));
    let s = summary(&output);
    assert_eq!(s["counts"]["removed"].as_u64().unwrap() as usize, names.len() + 4 - kept.len());
    // codes.npy: one 128-bit code (two u64 words) per crop, the same codes the manifest lists.
    let (shape, words) = read_array::<u64>(&output.join("codes.npy")).unwrap();
    let mut from_npy: Vec<String> = words.chunks(2).map(|w| format!("{:016x}{:016x}", w[1], w[0])).collect();
    let mut from_manifest: Vec<String> = rows.iter().filter_map(|r| r["code"].as_str().map(str::to_owned)).collect();
    assert_eq!(shape, vec![from_manifest.len() as u64, 2]);
    from_npy.sort();
    from_manifest.sort();
    assert_eq!(from_npy, from_manifest);
    // The model: the 3072-128-3072 autoencoder's weights.
    let tensors = tch::Tensor::read_safetensors(output.join("model.safetensors")).unwrap();
    let size = |name: &str| {
        tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t.size()).unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!((size("encoder.weight"), size("decoder.weight")), (vec![128, 3072], vec![3072, 128]));
}

/// `img` with `(left, right, top, bottom)` per mille of its sides cut off.
fn cropped(img: &image::RgbImage, [l, r, t, b]: [u32; 4]) -> image::RgbImage {
    let (w, h) = (img.width(), img.height());
    let (l, r, t, b) = (w * l / 1000, w * r / 1000, h * t / 1000, h * b / 1000);
    image::imageops::crop_imm(img, l, t, w - l - r, h - t - b).to_image()
}

/// `img` inside a plain frame `(left, right, top, bottom)` per mille of its sides wide.
fn framed(img: &image::RgbImage, [l, r, t, b]: [u32; 4], colour: [u8; 3]) -> image::RgbImage {
    let (w, h) = (img.width(), img.height());
    let (l, r, t, b) = (w * l / 1000, w * r / 1000, h * t / 1000, h * b / 1000);
    let mut out = image::RgbImage::from_pixel(w + l + r, h + t + b, image::Rgb(colour));
    image::imageops::replace(&mut out, img, l as i64, t as i64);
    out
}

#[test]
fn cropped_and_bordered_copies_are_found_and_distinct_photos_kept() {
    // Copies cropped by 4-9% (off-centre) and framed by 6-8%: what moves the code and the
    // whole-crop pHash. The crop route must find each; the 14 distinct photos must all stay.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let names = copy_photos(&input);
    let open = |name: &str| image::open(input.join(name)).unwrap().to_rgb8();
    let copies = [
        ("zz-crop-baboon.jpg", "baboon.jpg", cropped(&open("baboon.jpg"), [60, 10, 0, 50])),
        ("zz-crop-fruits.jpg", "fruits.jpg", cropped(&open("fruits.jpg"), [0, 40, 45, 0])),
        ("zz-crop-building.jpg", "building.jpg", cropped(&open("building.jpg"), [45, 45, 20, 70])),
        ("zz-frame-butterfly.jpg", "butterfly.jpg", framed(&open("butterfly.jpg"), [40, 30, 30, 50], [0, 0, 0])),
        ("zz-frame-home.jpg", "home.jpg", framed(&open("home.jpg"), [30, 40, 40, 30], [255, 255, 255])),
    ];
    for (name, _, img) in &copies {
        write(&input.join(name), &jpeg_bytes(img, 92));
    }
    let output = dir.path().join("out");
    dedupe_ok(&input, &output, &[]);
    let rows = read_manifest(&output);
    // A framed copy has more source pixels than its original, so the keep rule may keep it and
    // remove the original: each pair must share a cluster, one of the two removed for the other.
    for (name, original, _) in &copies {
        let (copy, orig) = (row_for(&rows, name), row_for(&rows, original));
        assert_eq!(copy["cluster"], orig["cluster"], "{copy} / {orig}");
        let removed = [(copy, *original), (orig, *name)]
            .into_iter()
            .filter(|(r, _)| r["status"] == "skipped")
            .collect::<Vec<_>>();
        assert_eq!(removed.len(), 1, "{copy} / {orig}");
        assert_eq!(removed[0].0["duplicate_of"], removed[0].1, "{copy} / {orig}");
    }
    // The 14 distinct photos stay apart: 14 clusters among them.
    let clusters: std::collections::BTreeSet<String> =
        names.iter().map(|n| row_for(&rows, n)["cluster"].to_string()).collect();
    assert_eq!(clusters.len(), names.len(), "distinct photos share a cluster");
    let found_by_windows = copies
        .iter()
        .filter(|(name, original, _)| [name, original].iter().any(|n| row_for(&rows, n)["found_by"] == "windows"))
        .count();
    let s = summary(&output);
    assert!(s["counts"]["window_pairs_passing"].as_u64().unwrap() >= found_by_windows as u64, "{s}");
    // The default searches, and their shape for this set, are in the summary.
    for search in ["code_pairs", "window_pairs"] {
        let used = &s["searches"][search];
        assert!(
            used["search"] == "sampled" && used["tables"].as_u64() > Some(0) && used["key_bits"].as_u64() >= Some(8),
            "{used}"
        );
    }

    // Without the crop route, the same run misses some of them (so the check above can fail).
    let without = dir.path().join("without");
    dedupe_ok(&input, &without, &["--set", "dedupe.windows=false", "--set", "dedupe.search=exact"]);
    assert_eq!(
        summary(&without)["searches"],
        serde_json::json!({"code_pairs": {"search": "exact"}, "window_pairs": null})
    );
    let rows = read_manifest(&without);
    let missed = copies
        .iter()
        .filter(|(name, original, _)| row_for(&rows, name)["cluster"] != row_for(&rows, original)["cluster"])
        .count();
    assert!(
        missed >= 1 && found_by_windows >= missed,
        "missed without windows: {missed}; found by windows: {found_by_windows}"
    );
}

#[test]
fn the_phash_check_keeps_distinct_photos_that_the_code_calls_near() {
    // Radius 128: every pair of codes is a candidate, so the code alone would keep one image.
    // The pHash check must keep the 14 distinct photos apart and still remove the re-encoded copies.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let names = copy_photos(&input);
    for name in ["baboon.jpg", "fruits.jpg"] {
        let img = image::open(input.join(name)).unwrap().to_rgb8();
        write(&input.join(format!("zz-q70-{name}")), &jpeg_bytes(&img, 70));
    }
    let checked = dir.path().join("checked");
    let pin = [
        "--set",
        "dedupe.radius=128",
        "--set",
        "dedupe.verify=\"phash\"",
        "--set",
        "dedupe.verify_phash_radius=10",
        "--set",
        "dedupe.windows=false",
    ];
    dedupe_ok(&input, &checked, &pin);
    let rows = read_manifest(&checked);
    for name in &names {
        assert_eq!(row_for(&rows, name)["status"], "ok", "{name} removed: {}", row_for(&rows, name));
    }
    for name in ["baboon.jpg", "fruits.jpg"] {
        let copy = row_for(&rows, &format!("zz-q70-{name}"));
        assert_eq!(copy["status"], "skipped", "{copy}");
        assert_eq!(copy["duplicate_of"], name);
        assert!(copy["phash_distance"].as_u64().unwrap() <= 10, "{copy}");
    }
    // Every candidate pair is listed with its pHash distance and whether it passed.
    let pairs = lines(&checked.join("pairs.jsonl"));
    assert!(pairs.iter().all(|p| p["passes_check"] == (p["phash_distance"].as_u64().unwrap() <= 10)));
    let failing = pairs.iter().filter(|p| p["passes_check"] == false).count();
    assert!(failing > 0 && summary(&checked)["counts"]["pairs_failing_the_check"] == failing as u64);
    // phash.npy: one 64-bit pHash per crop; every listed pair's distance is that of two of them.
    let (shape, hashes) = read_array::<u64>(&checked.join("phash.npy")).unwrap();
    assert_eq!(shape, vec![rows.iter().filter(|r| r["code"].is_string()).count() as u64]);
    let mut between = std::collections::HashMap::new();
    for (i, a) in hashes.iter().enumerate() {
        for b in &hashes[i + 1..] {
            *between.entry((a ^ b).count_ones() as u64).or_insert(0) += 1;
        }
    }
    for p in &pairs {
        let left = between.get_mut(&p["phash_distance"].as_u64().unwrap()).expect("a distance two hashes have");
        assert!(*left > 0, "more pairs at distance {} than pairs of hashes", p["phash_distance"]);
        *left -= 1;
    }

    // The code alone at the same radius collapses the set (so the check above can fail).
    let unchecked = dir.path().join("unchecked");
    dedupe_ok(
        &input,
        &unchecked,
        &["--set", "dedupe.radius=128", "--set", "dedupe.verify=\"none\"", "--set", "dedupe.windows=false"],
    );
    assert_eq!(summary(&unchecked)["counts"]["kept"], 1);
    assert!(!unchecked.join("phash.npy").exists());
}

/// Writes an LMDB the way LSUN's export is laid out: key -> encoded image bytes.
#[test]
fn lsun_lmdb_export_with_duplicates_and_a_broken_value() {
    let dir = tempfile::tempdir().unwrap();
    let lmdb = dir.path().join("bedroom_train_lmdb");
    let mut items: Vec<(String, Vec<u8>)> = PHOTOS
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("k{i:02}"), std::fs::read(opencv_sample(n)).unwrap()))
        .collect();
    items.push(("k50".into(), items[3].1.clone()));
    items.push(("k51".into(), b"not an image at all".to_vec()));
    write_lmdb(&lmdb, &items);
    let before = std::fs::read(lmdb.join("data.mdb")).unwrap();
    let output = dir.path().join("out");
    let out = run_dedupe(&["-i", lmdb.to_str().unwrap(), "-o", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "one value is not an image");
    let rows = read_manifest(&output);
    assert_eq!(rows.len(), PHOTOS.len() + 2);
    assert_eq!(row_for(&rows, "k51")["status"], "error");
    assert_eq!(row_for(&rows, "k50")["duplicate_of"], "k03");
    assert_eq!(read_packed(&output).unwrap().len(), PHOTOS.len());
    assert_eq!(std::fs::read(lmdb.join("data.mdb")).unwrap(), before, "the input is read-only");
}

#[test]
fn a_rerun_resumes_and_a_saved_model_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    copy_photos(&input);
    write(&input.join("zz-copy.jpg"), &std::fs::read(input.join("messi5.jpg")).unwrap());
    let output = dir.path().join("out");
    // Parts of 5 inputs, so that resume has parts to skip.
    dedupe_ok(&input, &output, &["--set", "dedupe.part_size=5"]);
    assert_eq!(summary(&output)["model"]["trained_now"], true);
    let first = folder_bytes(&output, &["summary.json", "shard-"]);

    let out =
        run_dedupe(&["-i", input.to_str().unwrap(), "-o", output.to_str().unwrap(), "--set", "dedupe.part_size=5"]);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("resuming: 3 parts already done"), "{log}");
    assert_eq!(summary(&output)["model"]["trained_now"], false, "the saved model is reused");
    assert_eq!(folder_bytes(&output, &["summary.json", "shard-"]), first, "a resumed run gives the same outputs");

    // Another output, hashing with the first run's model: the same codes, nothing trained.
    let model = output.join("model.safetensors");
    let other = dir.path().join("other");
    dedupe_ok(&input, &other, &["--model", model.to_str().unwrap()]);
    assert_eq!(summary(&other)["model"]["trained_now"], false);
    assert!(!other.join("model.safetensors").exists());
    assert_eq!(std::fs::read(other.join("codes.npy")).unwrap(), std::fs::read(output.join("codes.npy")).unwrap());
    assert_eq!(row_for(&read_manifest(&other), "zz-copy.jpg")["duplicate_of"], "messi5.jpg");

    // A fresh run on the same input with the same seed trains the same model, bit for bit: the
    // weights' first values come from the seed too (they came from libtorch's generator as the
    // process found it, and two runs kept different photos).
    let again = dir.path().join("again");
    dedupe_ok(&input, &again, &["--set", "dedupe.part_size=5"]);
    assert_eq!(summary(&again)["model"]["trained_now"], true);
    assert!(std::fs::read(again.join("model.safetensors")).unwrap() == std::fs::read(&model).unwrap());
    assert_eq!(folder_bytes(&again, &["summary.json", "shard-"]), first, "a second run gives the same outputs");
}

#[test]
fn bad_inputs_are_listed_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    for name in ["baboon.jpg", "fruits.jpg", "aero1.jpg", "building.jpg"] {
        write(&input.join(name), &std::fs::read(opencv_sample(name)).unwrap());
    }
    let good = std::fs::read(input.join("fruits.jpg")).unwrap();
    write(&input.join("truncated.jpg"), &good[..good.len() / 3]);
    write(&input.join("empty.png"), b"");
    write(&input.join("text.jpg"), b"this is not a JPEG");
    let output = dir.path().join("out");
    let out = run_dedupe(&["-i", input.to_str().unwrap(), "-o", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let log = String::from_utf8_lossy(&out.stderr);
    let rows = read_manifest(&output);
    for name in ["empty.png", "text.jpg"] {
        assert_eq!(row_for(&rows, name)["status"], "error", "{name}");
        assert!(log.lines().any(|l| l.contains("warning") && l.contains(name)), "no warning naming {name}: {log}");
    }
    // A truncated JPEG may still decode partially (libjpeg fills the rest); either way the run goes on.
    assert!(["error", "ok", "skipped"].contains(&row_for(&rows, "truncated.jpg")["status"].as_str().unwrap()));
    for name in ["baboon.jpg", "fruits.jpg", "aero1.jpg", "building.jpg"] {
        assert_eq!(row_for(&rows, name)["status"], "ok", "{name}");
    }

    // No input at all, and a bad setting: one clear line, status 1.
    let out = run_dedupe(&["-i", dir.path().join("missing").to_str().unwrap(), "-o", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let out = run_dedupe(&["-i", input.to_str().unwrap(), "-o", output.to_str().unwrap(), "--set", "dedupe.size=48"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dedupe.size"));
    for absurd in ["dedupe.window_search_tables=0", "dedupe.search_tables=100000"] {
        let out = run_dedupe(&["-i", input.to_str().unwrap(), "-o", output.to_str().unwrap(), "--set", absurd]);
        let key = absurd.split('=').next().unwrap();
        assert!(out.status.code() == Some(1) && String::from_utf8_lossy(&out.stderr).contains(key), "{absurd}");
    }
}

#[test]
fn the_evaluation_prints_precision_and_recall_for_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("photos");
    copy_photos(&input);
    let output = dir.path().join("eval");
    let out = run_dedupe(&["--eval", "-i", input.to_str().unwrap(), "-o", output.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("pHash") && printed.contains("autoencoder"), "{printed}");
    let report: Value = serde_json::from_slice(&std::fs::read(output.join("eval.json")).unwrap()).unwrap();
    // 14 photos alternate between the splits; photos 0, 1, 4, 5, 8, 9, 12, 13 get 2 copies each.
    assert_eq!(report["items"], 14 + 2 * 8);
    for curve in report["curves"].as_array().unwrap() {
        let points = curve["points"].as_array().unwrap();
        // Recall cannot fall as the radius grows.
        let recalls: Vec<f64> = points.iter().map(|p| p["recall"].as_f64().unwrap()).collect();
        assert!(recalls.windows(2).all(|w| w[0] <= w[1]), "{curve}");
        assert!(curve["positives"].as_u64().unwrap() > 0);
        // False pairs per distinct pair: a rate that cannot fall either.
        let rates: Vec<f64> = points.iter().map(|p| p["false_pair_rate"].as_f64().unwrap()).collect();
        assert!(rates.windows(2).all(|w| w[0] <= w[1]) && rates.iter().all(|r| (0.0..=1.0).contains(r)), "{curve}");
    }
    // The scored set is written for other hashes to try: the 32x32 inputs and one line per item.
    let inputs = std::fs::read(output.join("eval-inputs.npy")).unwrap();
    let header = String::from_utf8_lossy(&inputs[..128.min(inputs.len())]);
    assert!(header.contains("(30, 32, 32, 3)"), "{header}");
    assert!(inputs.len() > 30 * 32 * 32 * 3 && inputs.len() - 30 * 32 * 32 * 3 <= 256, "{} bytes", inputs.len());
    let items = std::fs::read_to_string(output.join("eval-items.jsonl")).unwrap();
    let rows: Vec<Value> = items.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 30);
    assert_eq!(rows.iter().filter(|r| r["split"] == 0).count(), 15);
    assert_eq!(rows.iter().filter(|r| r["name"].as_str().unwrap().contains("#copy")).count(), 16);
}

#[test]
fn the_evaluation_at_scale_scores_removals_per_radius_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("photos");
    copy_photos(&input);
    // A photo the set already holds twice (byte-identical): one photo, not a false removal.
    write(&input.join("zz-baboon-again.jpg"), &std::fs::read(input.join("baboon.jpg")).unwrap());
    let output = dir.path().join("eval-scale");
    let out = run_dedupe(&[
        "--eval-scale",
        "-i",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--planted",
        "5",
        "--copies",
        "1",
        "--max-radius",
        "8",
        "--phash-max-radius",
        "6",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("pHash") && printed.contains("around keeper") && printed.contains("single linkage"),
        "{printed}"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(output.join("eval-scale.json")).unwrap()).unwrap();
    let photos = PHOTOS.len() + 1;
    // Every third photo (15 // 5) gets a copy: photos 0, 3, 6, 9, 12.
    assert_eq!((report["photos"].as_u64().unwrap() as usize, report["planted_photos"].as_u64().unwrap()), (photos, 5));
    assert_eq!(report["images"].as_u64().unwrap() as usize, photos + 5);
    assert!(report["existing_copy_pairs"].as_u64().unwrap() >= 1, "the baboon pair: {}", report["existing_copy_pairs"]);
    let curves = report["curves"].as_array().unwrap();
    // Both hashes under both rules, and the autoencoder with the pHash check at 6, 8, 10, 12, 14
    // bits (the configured 10 among them), around keepers.
    // And the crop route at 2 window radii x 4 correlation floors (the configured 10, 0.96 among them).
    assert_eq!(curves.len(), 4 + 5 + 8, "{:?}", curves.iter().map(|c| &c["method"]).collect::<Vec<_>>());
    assert!(printed.contains("autoencoder + pHash check <= 10"), "{printed}");
    assert!(
        printed.contains("crop 2-5%")
            && printed.contains("border or letterbox 5-10%")
            && printed.contains("windows <= 10, correlation >= 0.96"),
        "{printed}"
    );
    for curve in curves {
        let scores = curve["scores"].as_array().unwrap();
        let max = if curve["method"] == "pHash" { 6 } else { 8 };
        assert_eq!(scores.len(), max + 1, "{curve}");
        for s in scores {
            let (removed, correct) = (s["removed"].as_u64().unwrap(), s["correct"].as_u64().unwrap());
            assert!(correct <= removed && s["false_removals"].as_u64().unwrap() == removed - correct, "{s}");
            assert!(s["recall"].as_f64().unwrap() <= 1.0);
        }
        // Recall per edit kind: the 5 planted copies are kinds 0-4 in turn, one each (mixed edits: none).
        for s in scores {
            let by_kind: Vec<f64> =
                s["recall_by_kind"].as_array().unwrap().iter().map(|r| r.as_f64().unwrap()).collect();
            let found: Vec<u64> = s["found_by_kind"].as_array().unwrap().iter().map(|r| r.as_u64().unwrap()).collect();
            assert_eq!((by_kind.len(), found[5]), (6, 0), "{s}");
            assert!(
                found[..5].iter().all(|&f| f <= 1) && by_kind.iter().zip(&found).all(|(&r, &f)| r == f as f64),
                "{s}"
            );
        }
        // Radius 0: the identical pair collides in both hashes, and it is a correct removal.
        assert!(scores[0]["correct_existing"].as_u64().unwrap() >= 1, "{curve}");
    }
    // Single linkage has no more clusters than there are keepers around which to cluster.
    for method in ["autoencoder", "pHash"] {
        let removed = |rule: &str| -> Vec<u64> {
            let c = curves.iter().find(|c| c["method"] == method && c["rule"] == rule).unwrap();
            c["scores"].as_array().unwrap().iter().map(|s| s["removed"].as_u64().unwrap()).collect()
        };
        let (around, linked) = (removed("around_keeper"), removed("single_linkage"));
        assert!(around.iter().zip(&linked).all(|(a, l)| a <= l), "{method}: {around:?} vs {linked:?}");
    }
}
