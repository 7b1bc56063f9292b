//! Image sources (folder, tar, tar.gz, LMDB) and the CIFAR-10 readers.

mod common;

use std::ops::ControlFlow;
use std::path::Path;

use common::*;
use dcgan_pipeline::data::cifar::{read_cifar10_binary, read_class_folders, CifarError, Split};
use dcgan_pipeline::data::packed::read_packed;
use dcgan_pipeline::data::{ImageSource, RecordData};

fn names_and_bytes(source: &ImageSource) -> Vec<(String, Option<String>, Vec<u8>)> {
    let mut out = Vec::new();
    source
        .for_each_record(&|_| true, u64::MAX, &mut |r| {
            // Hidden entries are records not read: skipped rows with a reason.
            let bytes = match &r.data {
                RecordData::Skipped(why) => why.clone().into_bytes(),
                _ => r.load(u64::MAX).unwrap().into_owned(),
            };
            out.push((r.name, r.class, bytes));
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

fn sample_tree(root: &Path) {
    write(&root.join("cats/1.jpg"), &jpeg_bytes(&textured(50, 40, 1), 90));
    write(&root.join("cats/2.png"), &png_bytes(&textured(30, 30, 2)));
    write(&root.join("dogs/3.jpg"), &jpeg_bytes(&textured(40, 50, 3), 90));
    write(&root.join("dogs/.hidden.jpg"), b"junk");
    write(&root.join("dogs/notes.txt"), b"not an image");
}

fn tar_of(root: &Path, path: &Path, gzip: bool) {
    let file = std::fs::File::create(path).unwrap();
    let writer: Box<dyn std::io::Write> =
        if gzip { Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast())) } else { Box::new(file) };
    let mut builder = tar::Builder::new(writer);
    // In the folder walk's sorted order, so that both list the same records in the same order.
    for name in ["cats/1.jpg", "cats/2.png", "dogs/.hidden.jpg", "dogs/3.jpg", "dogs/notes.txt"] {
        builder.append_path_with_name(root.join(name), name).unwrap();
    }
    builder.into_inner().unwrap().flush().unwrap();
}

#[test]
fn folder_tar_and_gzipped_tar_list_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    sample_tree(&root);
    let folder = ImageSource::open(&root).unwrap();
    assert_eq!(folder.len_hint(), Some(4), "three images and a hidden file");
    assert_eq!((folder.inputs_hint(), folder.hidden()), (Some(3), 1));
    assert_eq!(folder.ignored(), 1, "notes.txt is not an image");
    let expected = names_and_bytes(&folder);
    assert_eq!(
        expected.iter().map(|(n, c, _)| (n.as_str(), c.as_deref())).collect::<Vec<_>>(),
        vec![
            ("cats/1.jpg", Some("cats")),
            ("cats/2.png", Some("cats")),
            ("dogs/.hidden.jpg", None),
            ("dogs/3.jpg", Some("dogs"))
        ]
    );
    for gzip in [false, true] {
        let path = dir.path().join(if gzip { "tree.tar.gz" } else { "tree.tar" });
        tar_of(&root, &path, gzip);
        let tar = ImageSource::open(&path).unwrap();
        assert_eq!(names_and_bytes(&tar), expected, "gzip={gzip}");
    }
}

#[test]
fn unwanted_records_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    sample_tree(&root);
    let path = dir.path().join("tree.tar");
    tar_of(&root, &path, false);
    let tar = ImageSource::open(&path).unwrap();
    let mut loaded = Vec::new();
    tar.for_each_record(&|i| i == 1, u64::MAX, &mut |r| {
        loaded.push(!matches!(r.data, RecordData::NotLoaded));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(loaded, vec![false, true, false, false]);
}

/// Writes a tiny LMDB the way LSUN's export is laid out: key -> encoded image bytes.
#[test]
fn lmdb_export_is_read_in_key_order_and_cropped() {
    let dir = tempfile::tempdir().unwrap();
    let lmdb = dir.path().join("bedroom_train_lmdb");
    let webp = {
        let mut out = std::io::Cursor::new(Vec::new());
        textured(48, 36, 5).write_to(&mut out, image::ImageFormat::WebP).unwrap();
        out.into_inner()
    };
    write_lmdb(&lmdb, &[("b2", jpeg_bytes(&textured(60, 40, 1), 90)), ("a1", webp), ("c3", b"broken value".to_vec())]);
    let before = std::fs::read(lmdb.join("data.mdb")).unwrap();
    let source = ImageSource::open(&lmdb).unwrap();
    assert_eq!(source.len_hint(), Some(3));
    let records = names_and_bytes(&source);
    assert_eq!(records.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), vec!["a1", "b2", "c3"]);

    let output = dir.path().join("out");
    let out = run_crop(&["-i", lmdb.to_str().unwrap(), "-o", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "one value is not an image");
    let rows = read_manifest(&output);
    assert_eq!(row_for(&rows, "a1")["format"], "WebP");
    assert_eq!(row_for(&rows, "c3")["status"], "error");
    assert_eq!(read_packed(&output).unwrap().len(), 2);
    assert_eq!(std::fs::read(lmdb.join("data.mdb")).unwrap(), before, "the input is read-only");
}

fn cifar_batch(path: &Path, first_label: u8) {
    let mut bytes = Vec::with_capacity(10_000 * 3073);
    for i in 0..10_000usize {
        bytes.push(((i + first_label as usize) % 10) as u8);
        // Plane values encode the channel: R = 10, G = 20, B = 30, except pixel 0 of R = i % 256.
        for c in 0..3u8 {
            for p in 0..1024 {
                bytes.push(if c == 0 && p == 0 { (i % 256) as u8 } else { 10 * (c + 1) });
            }
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn cifar_binary_batches_become_interleaved_images() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&bin).unwrap();
    cifar_batch(&bin.join("test_batch.bin"), 3);
    let test = read_cifar10_binary(dir.path(), Split::Test).unwrap();
    assert_eq!((test.len(), test.height, test.width), (10_000, 32, 32));
    assert_eq!(test.labels[..3], [3, 4, 5]);
    assert_eq!(test.classes[0], "airplane");
    let img = test.image(7);
    assert_eq!(&img[..6], &[7, 20, 30, 10, 20, 30]);

    // Train needs all five batches: the missing one is named.
    cifar_batch(&bin.join("data_batch_1.bin"), 0);
    match read_cifar10_binary(&bin, Split::Train) {
        Err(CifarError::MissingBatch { path }) => assert!(path.ends_with("data_batch_2.bin")),
        other => panic!("expected a missing batch, got {other:?}"),
    }
    std::fs::write(bin.join("test_batch.bin"), vec![0u8; 3073 * 10]).unwrap();
    let err = read_cifar10_binary(&bin, Split::Test).unwrap_err().to_string();
    assert!(err.contains("test_batch.bin") && err.contains("30730 bytes"), "{err}");
}

#[test]
fn cifar_class_folders_from_a_gzipped_tar() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cifar");
    for (split, n) in [("train", 3), ("test", 1)] {
        for class in ["truck", "airplane"] {
            for i in 0..n {
                write(&root.join(split).join(class).join(format!("{i:04}.jpg")), &jpeg_bytes(&textured(32, 32, i), 95));
            }
        }
    }
    write(&root.join("train/truck/big.jpg"), &jpeg_bytes(&textured(64, 64, 9), 95));
    let archive = dir.path().join("cifar.tar.gz");
    {
        let file = std::fs::File::create(&archive).unwrap();
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
        builder.append_dir_all(".", &root).unwrap();
        builder.into_inner().unwrap().finish().unwrap();
    }
    for input in [root.as_path(), archive.as_path()] {
        let (train, rejected) = read_class_folders(input, Split::Train, 32).unwrap();
        assert_eq!(train.classes, vec!["airplane", "truck"]);
        assert_eq!(train.len(), 6);
        assert_eq!(train.labels.iter().filter(|&&l| l == 1).count(), 3);
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].0.ends_with("train/truck/big.jpg") && rejected[0].1.contains("64x64"), "{rejected:?}");
        let (test, _) = read_class_folders(input, Split::Test, 32).unwrap();
        assert_eq!(test.len(), 2);
    }
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(read_class_folders(&empty, Split::Train, 32), Err(CifarError::NoImages { .. })));
}
