//! The set the evaluation at scale runs on ([`super::scale`]): every photo of the source read,
//! decoded, cropped and hashed as the stage does it, with edited copies planted for every step-th
//! photo; and the same set written as a tar (`dedupe --eval-scale --write-set`), to run the stage
//! on exactly it.

use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{bail, Context, Result};
use image::RgbImage as Image;
use rayon::prelude::*;

use super::labelled::{planted_copy, EditKind, Rng};
use super::scale::ScaleSettings;
use crate::data::ImageSource;
use crate::dedupe::autoencoder::{downsample_to_input, INPUT_DIM};
use crate::dedupe::windows::window_hashes;
use crate::dedupe::DedupeConfig;
use crate::imageops::{decode_rgb_with_libjpeg, min_resize_center_crop, DecodeOptions};

/// The set as the stage sees it, one entry per image (originals in input order, each followed by
/// its copies).
pub struct ScaleSet {
    pub names: Vec<String>,
    /// The source photo of each image.
    pub photo: Vec<u32>,
    /// Per photo: whether it got copies.
    pub planted: Vec<bool>,
    /// Per photo: its original's image.
    pub original: Vec<u32>,
    /// Decoded source pixels (the keeper rule's "best copy").
    pub pixels: Vec<u64>,
    /// N x 32 x 32 x 3, the autoencoder's input.
    pub small: Vec<u8>,
    pub phash: Vec<u64>,
    /// The pHashes of each crop's windows ([`crate::dedupe::windows`]), `PER_IMAGE` per image.
    pub windows: Vec<u64>,
    /// Per image: the edit that made it (None: an original).
    pub kind: Vec<Option<EditKind>>,
    /// Records that could not be decoded, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// The planted copies' encoded bytes, by name (for [`ScaleSet::write_tar`]).
    pub copy_bytes: Vec<(String, Vec<u8>)>,
    /// The source records read, by name, in order.
    records: Vec<String>,
}

/// One image of a photo: its name, the edit that made it (None: the original), the image and its
/// encoded bytes.
type PreparedImage = (String, Option<EditKind>, Prepared, Vec<u8>);

struct Prepared {
    pixels: u64,
    small: Vec<u8>,
    phash: u64,
    windows: Vec<u64>,
}

/// A source record: its name and encoded bytes.
type Record = (String, Vec<u8>);
/// A record that could not be read or decoded: its name and the reason.
type Unreadable = (String, String);

/// The source's records (at most `settings.limit`, 0: all), with those that could not be read.
fn read_records(
    input: &Path,
    config: &DedupeConfig,
    settings: &ScaleSettings,
) -> Result<(Vec<Record>, Vec<Unreadable>)> {
    let source = ImageSource::open(input).context("cannot open the evaluation photos")?;
    let mut records: Vec<Record> = Vec::new();
    let mut unreadable = Vec::new();
    source.for_each_record(&|_| true, config.max_file_bytes, &mut |record| {
        match record.load(config.max_file_bytes) {
            Ok(bytes) => records.push((record.name.clone(), bytes.into_owned())),
            Err(e) => unreadable.push((record.name.clone(), e)),
        }
        if settings.limit > 0 && records.len() >= settings.limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok((records, unreadable))
}

/// One image decoded, cropped and hashed as the stage does it.
struct Preparer {
    size: u32,
    options: DecodeOptions,
    phasher: image_hasher::Hasher,
}

impl Preparer {
    fn new(config: &DedupeConfig) -> Self {
        let size = config.size;
        let options = DecodeOptions {
            max_pixels: config.max_pixels,
            min_decoded_side: config.dct_scaling.then_some(size * config.min_decoded_factor),
            keep_damaged: config.keep_damaged,
        };
        Preparer { size, options, phasher: crate::dedupe::phash::phasher() }
    }

    /// The prepared image, and the decoded photo (planted copies are edits of it).
    fn prepare(&self, bytes: &[u8]) -> Result<(Prepared, crate::imageops::RgbImage), String> {
        let size = self.size;
        let decoded = decode_rgb_with_libjpeg(bytes, &self.options).map_err(|e| e.to_string())?;
        let crop = min_resize_center_crop(&decoded.image, size);
        let img = Image::from_raw(size, size, crop.pixels.clone()).expect("crop size");
        let prepared = Prepared {
            pixels: decoded.source_width as u64 * decoded.source_height as u64,
            small: downsample_to_input(&crop.pixels, size as usize),
            phash: crate::dedupe::phash::phash64(&self.phasher, &img),
            windows: window_hashes(&crop.pixels, size),
        };
        Ok((prepared, decoded.image))
    }

    /// Record `i`'s original, followed by its planted copies when it is every `step`-th record.
    fn photo(
        &self,
        i: usize,
        name: &str,
        bytes: &[u8],
        step: usize,
        settings: &ScaleSettings,
    ) -> Result<Vec<PreparedImage>, (String, String)> {
        let (original, decoded) = self.prepare(bytes).map_err(|e| (name.to_string(), e))?;
        let mut out = vec![(name.to_string(), None, original, Vec::new())];
        if i.is_multiple_of(step) && i / step < settings.planted {
            let photo = Image::from_raw(decoded.width, decoded.height, decoded.pixels).expect("decoded size");
            let mut rng = Rng::new(settings.seed ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
            for c in 0..settings.copies {
                // Kinds in turn over all planted copies: each kind on an even share.
                let kind = EditKind::ALL[(i / step * settings.copies + c) % EditKind::ALL.len()];
                let (bytes, _) = planted_copy(&photo, kind, &mut rng);
                let copy_name = format!("{name}#copy{c}-{}.jpg", kind.slug());
                let copy = self.prepare(&bytes).map_err(|e| (copy_name.clone(), e))?;
                out.push((copy_name, Some(kind), copy.0, bytes));
            }
        }
        Ok(out)
    }
}

impl ScaleSet {
    pub fn build(input: &Path, config: &DedupeConfig, settings: &ScaleSettings) -> Result<Self> {
        let (records, unreadable) = read_records(input, config, settings)?;
        let preparer = Preparer::new(config);
        // Planted photos: every step-th record.
        let step = (records.len() / settings.planted.max(1)).max(1);
        let per_photo: Vec<Result<Vec<PreparedImage>, (String, String)>> = records
            .par_iter()
            .enumerate()
            .map(|(i, (name, bytes))| preparer.photo(i, name, bytes, step, settings))
            .collect();
        let set = Self::assemble(&records, unreadable, per_photo);
        if set.planted.len() < 8 {
            bail!("{}: {} decodable photos; the evaluation needs at least 8", input.display(), set.planted.len());
        }
        Ok(set)
    }

    /// The set from each photo's prepared images, in input order (a photo that failed goes to
    /// `unreadable`).
    fn assemble(
        records: &[Record],
        unreadable: Vec<(String, String)>,
        per_photo: Vec<Result<Vec<PreparedImage>, (String, String)>>,
    ) -> Self {
        let mut set = ScaleSet {
            names: Vec::new(),
            photo: Vec::new(),
            planted: Vec::new(),
            original: Vec::new(),
            pixels: Vec::new(),
            small: Vec::new(),
            phash: Vec::new(),
            windows: Vec::new(),
            kind: Vec::new(),
            unreadable,
            copy_bytes: Vec::new(),
            records: records.iter().map(|(name, _)| name.clone()).collect(),
        };
        for result in per_photo {
            match result {
                Ok(images) => {
                    let p = set.planted.len() as u32;
                    set.planted.push(images.len() > 1);
                    set.original.push(set.names.len() as u32);
                    for (name, kind, prepared, bytes) in images {
                        if kind.is_some() {
                            set.copy_bytes.push((name.clone(), bytes));
                        }
                        set.names.push(name);
                        set.kind.push(kind);
                        set.windows.extend(prepared.windows);
                        set.photo.push(p);
                        set.pixels.push(prepared.pixels);
                        set.small.extend(prepared.small);
                        set.phash.push(prepared.phash);
                    }
                }
                Err(bad) => set.unreadable.push(bad),
            }
        }
        set
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Writes the evaluated set as an uncompressed tar: the records of `input` read for it, as
    /// they are, then the planted copies (`<name>#copy<c>-<kind>.jpg`), so that the stage itself
    /// can be run on exactly this set (`dedupe --input <tar>`).
    pub fn write_tar(&self, input: &Path, path: &Path, max_file_bytes: u64) -> Result<()> {
        let tmp = path.with_extension("tar.tmp");
        let file = std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let mut append = |name: &str, bytes: &[u8]| -> Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            // The entry gets the name's own bytes back (names are kept as the source encodes them).
            let raw = crate::data::names::decode_name(name).unwrap_or_else(|| name.as_bytes().to_vec());
            let entry = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&raw));
            tar.append_data(&mut header, entry, bytes)
                .with_context(|| format!("{}: cannot write {name}", tmp.display()))
        };
        let wanted: std::collections::HashSet<&str> = self.records.iter().map(String::as_str).collect();
        let source = ImageSource::open(input).context("cannot open the evaluation photos")?;
        let mut failed = None;
        source.for_each_record(&|_| true, max_file_bytes, &mut |record| {
            if wanted.contains(record.name.as_str()) {
                if let Err(e) = record
                    .load(max_file_bytes)
                    .map_err(anyhow::Error::msg)
                    .and_then(|bytes| append(&record.name, &bytes))
                {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        for (name, bytes) in &self.copy_bytes {
            append(name, bytes)?;
        }
        tar.into_inner()
            .context("finishing the tar")?
            .into_inner()
            .map_err(|e| e.into_error())
            .context("flushing the tar")?
            .sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename into place", path.display()))
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Image `i`'s 32x32x3 input.
    pub(super) fn input(&self, i: u32) -> &[u8] {
        &self.small[i as usize * INPUT_DIM..(i as usize + 1) * INPUT_DIM]
    }
}
