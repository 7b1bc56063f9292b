//! The photos of a flat archive (Tiny ImageNet's tar.gz) written in each layout the sources read,
//! in the folder walk's sorted order, for benches/source_layouts.sh:
//!
//!   source_layouts make ARCHIVE N DIR    first N photos -> DIR/{folder, train.tar (a tar of class
//!                                        tars), parquet/data/*.parquet (Hub-style), wds/*.tar}
//!   source_layouts read PATH [FIELD]     reads every record's bytes: records, MB, records/s
//!
//! The zip is written by the script (Python's zipfile, as CelebA's was made by a zip tool).

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use dcgan_pipeline::data::{ImageSource, RecordData, SourceOptions};

/// Photos in one Parquet shard and in a row group (the Hub's `datasets` writes image sets in row
/// groups of 100 rows), and in a WebDataset shard.
const PARQUET_SHARD: usize = 10_000;
const ROW_GROUP: usize = 100;
const WDS_SHARD: usize = 10_000;

struct Photo {
    class: String,
    file: String,
    bytes: Vec<u8>,
}

fn first_photos(archive: &Path, n: usize) -> Result<Vec<Photo>> {
    let source = ImageSource::open(archive)?;
    let mut photos = Vec::with_capacity(n);
    source.for_each_record(&|_| true, u64::MAX, &mut |r| {
        if let (Some(class), RecordData::Bytes(bytes)) = (r.class, r.data) {
            let file = r.name.rsplit('/').next().unwrap_or(&r.name).to_owned();
            photos.push(Photo { class, file, bytes });
        }
        if photos.len() >= n {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    // The folder walk's order: class folders sorted, then the files in each.
    photos.sort_by(|a, b| (&a.class, &a.file).cmp(&(&b.class, &b.file)));
    Ok(photos)
}

fn tar_of(members: impl Iterator<Item = (String, Vec<u8>)>) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes.as_slice())?;
    }
    Ok(builder.into_inner()?)
}

fn write_parquet(path: &Path, photos: &[Photo], classes: &[String]) -> Result<()> {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = parquet::schema::parser::parse_message_type(
        "message schema { optional group image { optional binary bytes; optional binary path (STRING); } optional int64 label; }",
    )?;
    let features = serde_json::json!({"info": {"features": {"image": {"_type": "Image"}, "label": {"names": classes, "_type": "ClassLabel"}}}});
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_key_value_metadata(Some(vec![KeyValue::new("huggingface".into(), features.to_string())]))
        .build();
    let mut writer = SerializedFileWriter::new(std::fs::File::create(path)?, Arc::new(schema), Arc::new(props))?;
    for group in photos.chunks(ROW_GROUP) {
        let mut rg = writer.next_row_group()?;
        let defs = vec![2i16; group.len()];
        let columns: [Vec<ByteArray>; 2] = [
            group.iter().map(|p| ByteArray::from(p.bytes.clone())).collect(),
            group.iter().map(|p| ByteArray::from(p.file.as_str())).collect(),
        ];
        for values in &columns {
            let mut column = rg.next_column()?.context("column")?;
            column.typed::<ByteArrayType>().write_batch(values, Some(&defs), None)?;
            column.close()?;
        }
        let labels: Vec<i64> = group.iter().map(|p| classes.binary_search(&p.class).expect("listed") as i64).collect();
        let mut column = rg.next_column()?.context("column")?;
        column.typed::<Int64Type>().write_batch(&labels, Some(&vec![1i16; group.len()]), None)?;
        column.close()?;
        rg.close()?;
    }
    writer.close()?;
    Ok(())
}

fn make(archive: &Path, n: usize, dir: &Path) -> Result<()> {
    let photos = first_photos(archive, n)?;
    let mut classes: Vec<String> = photos.iter().map(|p| p.class.clone()).collect();
    classes.dedup();
    for p in &photos {
        let path = dir.join("folder").join(&p.class).join(&p.file);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        std::fs::write(path, &p.bytes)?;
    }
    let mut outer = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(dir.join("train.tar"))?));
    for class in &classes {
        let inner = tar_of(photos.iter().filter(|p| &p.class == class).map(|p| (p.file.clone(), p.bytes.clone())))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(inner.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        outer.append_data(&mut header, format!("{class}.tar"), inner.as_slice())?;
    }
    outer.into_inner()?.flush()?;
    std::fs::create_dir_all(dir.join("parquet/data"))?;
    let shards = photos.len().div_ceil(PARQUET_SHARD);
    for (i, chunk) in photos.chunks(PARQUET_SHARD).enumerate() {
        write_parquet(&dir.join(format!("parquet/data/train-{i:05}-of-{shards:05}.parquet")), chunk, &classes)?;
    }
    std::fs::create_dir_all(dir.join("wds"))?;
    for (s, chunk) in photos.chunks(WDS_SHARD).enumerate() {
        let members = chunk.iter().enumerate().flat_map(|(i, p)| {
            let key = format!("{:08}", s * WDS_SHARD + i);
            [(format!("{key}.jpg"), p.bytes.clone()), (format!("{key}.cls"), p.class.clone().into_bytes())]
        });
        std::fs::write(dir.join(format!("wds/train-{s:06}.tar")), tar_of(members)?)?;
    }
    println!(
        "{} photos of {} classes; {} WebDataset shards -> {}",
        photos.len(),
        classes.len(),
        photos.len().div_ceil(WDS_SHARD),
        dir.display()
    );
    Ok(())
}

fn read(path: &Path, class_field: Option<String>) -> Result<()> {
    let started = Instant::now();
    let source = ImageSource::open_with(path, &SourceOptions { class_field, ..Default::default() })?;
    let (mut records, mut bytes, mut classes) = (0u64, 0u64, 0u64);
    source.for_each_record(&|_| true, u64::MAX, &mut |r| {
        records += 1;
        classes += u64::from(r.class.is_some());
        bytes += r.load(u64::MAX).map_or(0, |b| b.len() as u64);
        ControlFlow::Continue(())
    })?;
    let s = started.elapsed().as_secs_f64();
    println!(
        "{}: {records} records ({classes} with a class), {:.1} MB in {s:.2} s: {:.0} records/s",
        path.display(),
        bytes as f64 / 1e6,
        records as f64 / s
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["make", archive, n, dir] => make(Path::new(archive), n.parse()?, Path::new(dir)),
        ["read", path] => read(Path::new(path), None),
        ["read", path, field] => read(Path::new(path), Some(field.to_string())),
        _ => anyhow::bail!("usage: source_layouts make ARCHIVE N DIR | read PATH [CLASS_FIELD]"),
    }
}
