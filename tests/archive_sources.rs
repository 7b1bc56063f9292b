//! The archive inputs as users download them (issue 37): ImageNet's tar of class tars, a zip,
//! Hugging Face Parquet, WebDataset shards, each generated here, read against the folder of the
//! same photos (same records, same crops byte for byte), and damaged copies of each.

mod common;

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use dcgan_pipeline::data::{ImageSource, RecordData, SourceOptions};

/// Two classes of four photos each, in the folder walk's sorted order: (class, file, JPEG bytes).
fn photos() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (c, class) in ["cats", "dogs"].into_iter().enumerate() {
        for i in 0..4u32 {
            let seed = c as u32 * 10 + i;
            out.push((class, format!("{i:02}.jpg"), jpeg_bytes(&textured(40 + 8 * i, 36 + 4 * i, seed), 90)));
        }
    }
    out
}

fn folder_of(dir: &Path) -> PathBuf {
    let root = dir.join("folder");
    for (class, file, bytes) in photos() {
        write(&root.join(class).join(file), &bytes);
    }
    root
}

/// A record as read: name, class, bytes or the reason it has none.
type Found = (String, Option<String>, Result<Vec<u8>, String>);

fn records(source: &ImageSource) -> Vec<Found> {
    let mut out = Vec::new();
    source
        .for_each_record(&|_| true, u64::MAX, &mut |r| {
            let bytes = match &r.data {
                RecordData::Skipped(why) => Err(format!("skipped: {why}")),
                _ => r.load(u64::MAX).map(|b| b.into_owned()),
            };
            out.push((r.name, r.class, bytes));
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

/// (class, bytes) in order: what a layout must agree on with the folder.
fn contents(source: &ImageSource) -> Vec<(Option<String>, Vec<u8>)> {
    records(source)
        .into_iter()
        .map(|(name, class, bytes)| (class, bytes.unwrap_or_else(|e| panic!("{name}: {e}"))))
        .collect()
}

fn tar_bytes(members: &[(String, Vec<u8>)], gzip: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes.as_slice()).unwrap();
    }
    let plain = builder.into_inner().unwrap();
    if !gzip {
        return plain;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    gz.finish().unwrap()
}

/// ImageNet's layout: an outer tar of per-class tars (cats plain, dogs gzipped).
fn tar_of_tars(path: &Path, extra: &[(String, Vec<u8>)]) {
    let class_tar = |class: &str, gzip: bool| {
        let members: Vec<(String, Vec<u8>)> =
            photos().into_iter().filter(|p| p.0 == class).map(|(_, file, bytes)| (file, bytes)).collect();
        tar_bytes(&members, gzip)
    };
    let mut outer =
        vec![("cats.tar".to_owned(), class_tar("cats", false)), ("dogs.tar.gz".to_owned(), class_tar("dogs", true))];
    outer.extend_from_slice(extra);
    std::fs::write(path, tar_bytes(&outer, false)).unwrap();
}

fn crop_layout(input: &Path, output: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["-i", input.to_str().unwrap(), "-o", output.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_crop(&args)
}

/// The crops, labels and class names a run wrote.
fn packed(output: &Path) -> Vec<Vec<u8>> {
    ["images-00000.npy", "labels.npy", "classes.jsonl"].iter().map(|f| std::fs::read(output.join(f)).unwrap()).collect()
}

#[test]
fn tar_of_class_tars_reads_as_the_folder_and_crops_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let folder = folder_of(dir.path());
    let outer = dir.path().join("ILSVRC2012_img_train.tar");
    tar_of_tars(&outer, &[]);
    let source = ImageSource::open(&outer).unwrap();
    assert!(matches!(source, ImageSource::Archive(_)), "{source:?}");
    let found = records(&source);
    assert_eq!(found[0].0, "cats.tar/00.jpg");
    assert_eq!(found[4].0, "dogs.tar.gz/00.jpg");
    assert_eq!(found[4].1.as_deref(), Some("dogs"), "class from the inner tar's name");
    assert_eq!(contents(&source), contents(&ImageSource::open(&folder).unwrap()));

    // The outer tar unpacked one level: a folder of class tars.
    let unpacked = dir.path().join("unpacked");
    let mut archive = tar::Archive::new(std::fs::File::open(&outer).unwrap());
    archive.unpack(&unpacked).unwrap();
    assert_eq!(contents(&ImageSource::open(&unpacked).unwrap()), contents(&ImageSource::open(&folder).unwrap()));

    let (from_folder, from_tar) = (dir.path().join("out-folder"), dir.path().join("out-tar"));
    assert!(crop_layout(&folder, &from_folder, &[]).status.success());
    assert!(crop_layout(&outer, &from_tar, &[]).status.success());
    assert_eq!(packed(&from_tar), packed(&from_folder), "same crops, labels and classes");
}

#[test]
fn a_damaged_class_tar_and_a_hidden_one_are_rows_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let outer = dir.path().join("train.tar");
    let extra = [("._cats.tar".to_owned(), b"AppleDouble".to_vec()), ("zebra.tar".to_owned(), vec![0x5a; 1500])];
    tar_of_tars(&outer, &extra);
    let found = records(&ImageSource::open(&outer).unwrap());
    assert_eq!(found.len(), 10, "{found:?}");
    assert!(found[8].0 == "._cats.tar" && found[8].2.as_ref().unwrap_err().starts_with("skipped"));
    assert_eq!(found[9].0, "zebra.tar");
    assert!(found[9].2.as_ref().unwrap_err().contains("damaged class tar"), "{:?}", found[9].2);

    let output = dir.path().join("out");
    let out = crop_layout(&outer, &output, &[]);
    assert_eq!(out.status.code(), Some(3), "one failed row");
    let rows = read_manifest(&output);
    assert_eq!(row_for(&rows, "zebra.tar")["status"], "error");
    assert_eq!(row_for(&rows, "._cats.tar")["status"], "skipped");
    assert!(String::from_utf8_lossy(&out.stderr).contains("train.tar:zebra.tar"), "the warning names the member");
}

fn python() -> String {
    std::env::var("DCGAN_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into())
}

/// A zip of the photos under `img_align_celeba/<class>_<file>` (CelebA's single folder) written by
/// Python's zipfile, the reference writer; `method` is ZIP_DEFLATED or ZIP_STORED.
fn zip_of(folder: &Path, path: &Path, method: &str) {
    let script = format!(
        "import zipfile, pathlib, sys\n\
         root = pathlib.Path(sys.argv[1])\n\
         with zipfile.ZipFile(sys.argv[2], 'w', zipfile.{method}) as z:\n\
         \x20   for p in sorted(root.rglob('*.jpg')):\n\
         \x20       z.write(p, str(p.relative_to(root)))\n"
    );
    let out = std::process::Command::new(python())
        .args(["-c", &script, folder.to_str().unwrap(), path.to_str().unwrap()])
        .output()
        .expect("python (make setup)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn zip_reads_through_the_central_directory_and_shards_agree() {
    let dir = tempfile::tempdir().unwrap();
    let folder = folder_of(dir.path());
    let zip = dir.path().join("img_align_celeba.zip");
    zip_of(&folder, &zip, "ZIP_DEFLATED");
    let source = ImageSource::open(&zip).unwrap();
    let found = records(&source);
    assert_eq!((found[0].0.as_str(), found[0].1.as_deref()), ("cats/00.jpg", Some("cats")));
    assert_eq!(contents(&source), contents(&ImageSource::open(&folder).unwrap()));

    // Only wanted members are read; the others arrive unread.
    let mut loaded = Vec::new();
    source
        .for_each_record(&|i| i >= 6, u64::MAX, &mut |r| {
            loaded.push(!matches!(r.data, RecordData::NotLoaded));
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(loaded, [false, false, false, false, false, false, true, true]);

    let (whole, sharded, from_folder) =
        (dir.path().join("whole"), dir.path().join("sharded"), dir.path().join("folder-out"));
    let parts = ["--set", "crop.part_size=3"];
    assert!(crop_layout(&zip, &whole, &parts).status.success());
    assert!(crop_layout(&folder, &from_folder, &parts).status.success());
    for shard in ["0/2", "1/2"] {
        assert!(crop_layout(&zip, &sharded, &[parts[0], parts[1], "--shard", shard]).status.success());
    }
    assert!(run_crop(&["-o", sharded.to_str().unwrap(), "--merge"]).status.success());
    for file in ["images-00000.npy", "images-00001.npy", "images-00002.npy", "labels.npy", "classes.jsonl"] {
        let read = |d: &Path| std::fs::read(d.join(file)).unwrap();
        assert_eq!(read(&sharded), read(&whole), "{file}");
        assert_eq!(read(&from_folder), read(&whole), "{file}: the folder's crops");
    }
    // Resume: a re-run finds every part done and leaves them as they are.
    let before = packed(&whole);
    assert!(crop_layout(&zip, &whole, &parts).status.success());
    assert_eq!(packed(&whole), before);
}

#[test]
fn a_cut_zip_is_one_line_naming_it_and_a_damaged_member_a_failed_row() {
    let dir = tempfile::tempdir().unwrap();
    let folder = folder_of(dir.path());
    let zip = dir.path().join("celeba.zip");
    zip_of(&folder, &zip, "ZIP_STORED");
    let bytes = std::fs::read(&zip).unwrap();

    let cut = dir.path().join("cut.zip");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = ImageSource::open(&cut).unwrap_err().to_string();
    assert!(err.contains("cut.zip") && err.contains("cut download") && !err.contains('\n'), "{err}");
    let out = crop_layout(&cut, &dir.path().join("out-cut"), &[]);
    assert_eq!(out.status.code(), Some(1));

    // A byte of dogs/01.jpg's stored data flipped: its CRC-32 no longer matches.
    let mut damaged = bytes.clone();
    let name = b"dogs/01.jpg";
    let at = damaged.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 200;
    damaged[at] ^= 0xFF;
    let bad = dir.path().join("damaged.zip");
    std::fs::write(&bad, &damaged).unwrap();
    let output = dir.path().join("out-damaged");
    let out = crop_layout(&bad, &output, &[]);
    assert_eq!(out.status.code(), Some(3));
    let rows = read_manifest(&output);
    let row = row_for(&rows, "dogs/01.jpg");
    assert_eq!(row["status"], "error");
    assert!(row["reason"].as_str().unwrap().contains("CRC-32"), "{row}");
    assert_eq!(rows.iter().filter(|r| r["status"] == "ok").count(), 7);

    // The same in a deflated zip: inflated and checked by the worker, still a failed row naming it.
    let deflated = dir.path().join("deflated.zip");
    zip_of(&folder, &deflated, "ZIP_DEFLATED");
    let mut damaged = std::fs::read(&deflated).unwrap();
    let at = damaged.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 100;
    damaged[at] ^= 0xFF;
    std::fs::write(&deflated, &damaged).unwrap();
    let output = dir.path().join("out-deflated");
    assert_eq!(crop_layout(&deflated, &output, &[]).status.code(), Some(3));
    let rows = read_manifest(&output);
    let reason = row_for(&rows, "dogs/01.jpg")["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("damaged member data") || reason.contains("CRC-32") || reason.contains("ends after"),
        "{reason}"
    );
    assert_eq!(rows.iter().filter(|r| r["status"] == "ok").count(), 7);
}

/// A Hub-style Parquet file: `image` {bytes, path} structs, an int64 `label`, the `huggingface`
/// metadata naming the classes; `per_group` rows in each row group. Returns each row group's byte
/// range of the image bytes column.
fn hub_parquet(path: &Path, rows: &[(i64, Vec<u8>)], per_group: usize) -> Vec<(u64, u64)> {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = parquet::schema::parser::parse_message_type(
        "message schema { optional group image { optional binary bytes; optional binary path (STRING); } optional int64 label; }",
    )
    .unwrap();
    let features = r#"{"info": {"features": {"image": {"_type": "Image"}, "label": {"names": ["cats", "dogs"], "_type": "ClassLabel"}}}}"#;
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new("huggingface".into(), features.to_owned())]))
        .build();
    let mut writer =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), Arc::new(schema), Arc::new(props)).unwrap();
    for group in rows.chunks(per_group) {
        let mut rg = writer.next_row_group().unwrap();
        let defs = vec![2i16; group.len()];
        let images: Vec<ByteArray> = group.iter().map(|(_, b)| ByteArray::from(b.clone())).collect();
        let names: Vec<ByteArray> = (0..group.len()).map(|i| ByteArray::from(format!("{i}.jpg").as_str())).collect();
        let mut column = rg.next_column().unwrap().unwrap();
        column.typed::<ByteArrayType>().write_batch(&images, Some(&defs), None).unwrap();
        column.close().unwrap();
        let mut column = rg.next_column().unwrap().unwrap();
        column.typed::<ByteArrayType>().write_batch(&names, Some(&defs), None).unwrap();
        column.close().unwrap();
        let labels: Vec<i64> = group.iter().map(|(l, _)| *l).collect();
        let mut column = rg.next_column().unwrap().unwrap();
        column.typed::<Int64Type>().write_batch(&labels, Some(&vec![1i16; group.len()]), None).unwrap();
        column.close().unwrap();
        rg.close().unwrap();
    }
    let meta = writer.close().unwrap();
    meta.row_groups().iter().map(|g| g.column(0).byte_range()).collect()
}

fn labelled_photos() -> Vec<(i64, Vec<u8>)> {
    photos().into_iter().map(|(class, _, bytes)| (i64::from(class == "dogs"), bytes)).collect()
}

#[test]
fn hub_parquet_shards_read_as_the_folder_with_class_names_from_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let folder = folder_of(dir.path());
    let all = labelled_photos();
    let hub = dir.path().join("hub");
    std::fs::create_dir_all(hub.join("data")).unwrap();
    write(&hub.join("README.md"), b"# a data set card");
    hub_parquet(&hub.join("data/train-00000-of-00002.parquet"), &all[..5], 2);
    hub_parquet(&hub.join("data/train-00001-of-00002.parquet"), &all[5..], 2);
    let source = ImageSource::open(&hub).unwrap();
    assert_eq!(source.len_hint(), Some(8), "row counts from the footers");
    let found = records(&source);
    assert_eq!(found[0].0, "data/train-00000-of-00002.parquet#0");
    assert_eq!(found[5].0, "data/train-00001-of-00002.parquet#0");
    assert_eq!(contents(&source), contents(&ImageSource::open(&folder).unwrap()));

    let (from_folder, from_hub) = (dir.path().join("out-folder"), dir.path().join("out-hub"));
    assert!(crop_layout(&folder, &from_folder, &[]).status.success());
    assert!(crop_layout(&hub, &from_hub, &[]).status.success());
    assert_eq!(packed(&from_hub), packed(&from_folder), "same crops, labels and classes");

    // One file; the image column named by a setting; no such column: one line listing them.
    let single = hub.join("data/train-00000-of-00002.parquet");
    let named = SourceOptions { image_column: Some("image".into()), ..Default::default() };
    assert_eq!(records(&ImageSource::open_with(&single, &named).unwrap()).len(), 5);
    let wrong = SourceOptions { image_column: Some("photo".into()), ..Default::default() };
    let err = ImageSource::open_with(&single, &wrong).unwrap_err().to_string();
    assert!(err.contains("train-00000-of-00002.parquet") && err.contains("image.bytes"), "{err}");
}

#[test]
fn a_bad_row_group_gives_failed_rows_naming_it_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.parquet");
    let ranges = hub_parquet(&path, &labelled_photos(), 3);
    let mut bytes = std::fs::read(&path).unwrap();
    let (start, len) = ranges[1];
    bytes[start as usize..(start + len) as usize].fill(0xFF);
    std::fs::write(&path, &bytes).unwrap();
    let output = dir.path().join("out");
    let out = crop_layout(&path, &output, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = read_manifest(&output);
    assert_eq!(rows.len(), 8);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["source"], format!("train.parquet#{i}"));
        if (3..6).contains(&i) {
            assert_eq!(row["status"], "error", "{row}");
            assert!(row["reason"].as_str().unwrap().contains("row group 1"), "{row}");
        } else {
            assert_eq!(row["status"], "ok", "{row}");
        }
    }
    // A file that is not Parquet at all: one line naming it.
    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"not parquet").unwrap();
    let err = ImageSource::open(&junk).unwrap_err().to_string();
    assert!(err.contains("junk.parquet") && !err.contains('\n'), "{err}");
}

/// WebDataset samples: photo i as `NNNNNN.jpg`, its class in `.cls` (even) or `.json` (odd).
fn webdataset_members() -> Vec<(String, Vec<u8>)> {
    let mut members = Vec::new();
    for (i, (class, _, bytes)) in photos().into_iter().enumerate() {
        members.push((format!("{i:06}.jpg"), bytes));
        if i % 2 == 0 {
            members.push((format!("{i:06}.cls"), class.as_bytes().to_vec()));
        } else {
            members.push((format!("{i:06}.json"), format!(r#"{{"label": "{class}", "w": 1}}"#).into_bytes()));
        }
    }
    members
}

#[test]
fn webdataset_shards_group_members_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let folder = folder_of(dir.path());
    let members = webdataset_members();
    let shards = dir.path().join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    std::fs::write(shards.join("train-000000.tar"), tar_bytes(&members[..8], false)).unwrap();
    std::fs::write(shards.join("train-000001.tar"), tar_bytes(&members[8..], true)).unwrap();
    let options = SourceOptions { class_field: Some("label".into()), ..Default::default() };
    let expected = contents(&ImageSource::open(&folder).unwrap());

    let from_folder = ImageSource::open_with(&shards, &options).unwrap();
    let found = records(&from_folder);
    assert_eq!(found[4].0, "train-000001.tar/000004.jpg");
    assert_eq!(contents(&from_folder), expected);
    let pattern = dir.path().join("shards/train-{000000..000001}.tar");
    assert_eq!(contents(&ImageSource::open_with(&pattern, &options).unwrap()), expected);
    let missing = dir.path().join("shards/train-{000000..000002}.tar");
    let err = ImageSource::open_with(&missing, &options).unwrap_err().to_string();
    assert!(err.contains("train-000002.tar"), "{err}");

    let one = dir.path().join("one.tar");
    std::fs::write(&one, tar_bytes(&members, false)).unwrap();
    assert_eq!(contents(&ImageSource::open_with(&one, &options).unwrap()), expected);
    // Without the .json field set, odd samples have no class.
    let classes: Vec<Option<String>> = records(&ImageSource::open(&one).unwrap()).into_iter().map(|r| r.1).collect();
    assert_eq!(classes[..2], [Some("cats".to_owned()), None]);

    let (out_folder, out_wds) = (dir.path().join("out-folder"), dir.path().join("out-wds"));
    assert!(crop_layout(&folder, &out_folder, &[]).status.success());
    assert!(crop_layout(&pattern, &out_wds, &["--set", "run.input_class_field=label"]).status.success());
    assert_eq!(packed(&out_wds), packed(&out_folder), "same crops, labels and classes");
}

#[test]
fn a_webdataset_key_without_an_image_is_a_failed_row_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = webdataset_members();
    members.insert(4, ("000001x.cls".into(), b"dogs".to_vec()));
    members.push((".000009.jpg".into(), b"hidden".to_vec()));
    let path = dir.path().join("shard.tar");
    std::fs::write(&path, tar_bytes(&members, false)).unwrap();
    let output = dir.path().join("out");
    let out = crop_layout(&path, &output, &[]);
    assert_eq!(out.status.code(), Some(3));
    let rows = read_manifest(&output);
    assert_eq!(rows.len(), 10);
    let row = row_for(&rows, "000001x");
    assert_eq!(row["status"], "error");
    assert!(row["reason"].as_str().unwrap().contains("without an image member (found .cls)"), "{row}");
    assert_eq!(row_for(&rows, ".000009.jpg")["status"], "skipped");
    assert_eq!(rows.iter().filter(|r| r["status"] == "ok").count(), 8);
}
