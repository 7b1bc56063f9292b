//! The labelled near-duplicate evaluation: clean photos, each of half of them with edited copies
//! (JPEG re-encoding at quality 30-95, rescaling 0.5-2x, cropping up to 10%, brightness and
//! contrast within 10%, mild noise), the other half left single. Pairs of one photo's versions
//! are duplicates, every other pair is not. Precision and recall of the pairs each hash calls
//! near (distance <= r) are counted for the autoencoder hash (both thresholds) and for pHash.
//!
//! The photos alternate between two splits: the autoencoder trains on the first ("tune") split,
//! whose numbers also choose each method's radius; the second ("test") split, never seen by the
//! model or the radius choice, gives the reported figures.

use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{bail, Context, Result};
use image::RgbImage as Image;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::ImageSource;
use crate::dedupe::autoencoder::{downsample_to_input, Autoencoder, Threshold};
use crate::dedupe::DedupeConfig;
use crate::imageops::{decode_rgb, decode_rgb_with_libjpeg, min_resize_center_crop, DecodeOptions};

/// The edits' generator (the crate's splitmix64).
pub use crate::rng::SplitMix as Rng;

fn jpeg(image: &Image, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(image)
        .expect("JPEG encoding in memory");
    out
}

/// An edited copy of `photo`: one to three of rescale, crop, brightness/contrast and noise, then
/// always a JPEG re-encoding. Returns the bytes and what was done.
pub fn edited_copy(photo: &Image, rng: &mut Rng) -> (Vec<u8>, String) {
    let mut image = photo.clone();
    let mut done = Vec::new();
    let mut picks = [false; 4];
    while picks.iter().filter(|&&p| p).count() < 1 + (rng.next() % 3) as usize {
        picks[(rng.next() % 4) as usize] = true;
    }
    if picks[0] {
        let s = rng.uniform(0.5, 2.0);
        let (w, h) =
            (((image.width() as f64 * s).round() as u32).max(8), ((image.height() as f64 * s).round() as u32).max(8));
        image = image::imageops::resize(&image, w, h, image::imageops::FilterType::Triangle);
        done.push(format!("scale {s:.2}"));
    }
    if picks[1] {
        // Up to 5% off each side: at most 10% of each dimension in all.
        let (w, h) = (image.width(), image.height());
        let cut = |rng: &mut Rng, n: u32| (rng.uniform(0.0, 0.05) * n as f64) as u32;
        let (l, r, t, b) = (cut(rng, w), cut(rng, w), cut(rng, h), cut(rng, h));
        image = image::imageops::crop_imm(&image, l, t, w - l - r, h - t - b).to_image();
        done.push(format!("crop {:.1}%x{:.1}%", 100.0 * (l + r) as f64 / w as f64, 100.0 * (t + b) as f64 / h as f64));
    }
    if picks[2] {
        let (c, b) = (rng.uniform(0.9, 1.1), rng.uniform(-0.1, 0.1) * 255.0);
        for p in image.pixels_mut() {
            for v in p.0.iter_mut() {
                *v = ((*v as f64 - 128.0) * c + 128.0 + b).round().clamp(0.0, 255.0) as u8;
            }
        }
        done.push(format!("contrast {c:.2} brightness {:+.0}", b));
    }
    if picks[3] {
        let sigma = rng.uniform(1.0, 5.0);
        for p in image.pixels_mut() {
            for v in p.0.iter_mut() {
                *v = (*v as f64 + sigma * rng.normal()).round().clamp(0.0, 255.0) as u8;
            }
        }
        done.push(format!("noise sigma {sigma:.1}"));
    }
    let quality = 30 + (rng.next() % 66) as u8;
    done.push(format!("jpeg q{quality}"));
    (jpeg(&image, quality), done.join(", "))
}

/// One kind of edit, planted on its own (`dedupe --eval-scale` scores the recall of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EditKind {
    /// 2-5% of the width and of the height cut off, split at random between the two sides.
    CropSmall,
    /// 5-10% cut off the same way.
    CropLarge,
    /// A plain frame (black, white, grey or a random colour) adding 5-10% to the width and the
    /// height, split at random between the sides; or, one time in three, bars on two opposite
    /// sides only (a letterbox or pillarbox).
    Border,
    /// Rescaled 0.5-2x.
    Rescale,
    /// Re-encoded as JPEG at quality 30-95, nothing else.
    Reencode,
    /// One to three of rescale, crop, tone and noise ([`edited_copy`]): the earlier mixed edits.
    Mixed,
}

impl EditKind {
    pub const ALL: [EditKind; 6] =
        [Self::CropSmall, Self::CropLarge, Self::Border, Self::Rescale, Self::Reencode, Self::Mixed];

    /// A file-name word for the kind.
    pub fn slug(self) -> &'static str {
        match self {
            Self::CropSmall => "crop-small",
            Self::CropLarge => "crop-large",
            Self::Border => "border",
            Self::Rescale => "rescale",
            Self::Reencode => "reencode",
            Self::Mixed => "mixed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::CropSmall => "crop 2-5%",
            Self::CropLarge => "crop 5-10%",
            Self::Border => "border or letterbox 5-10%",
            Self::Rescale => "rescale 0.5-2x",
            Self::Reencode => "re-encoded (JPEG q30-95)",
            Self::Mixed => "mixed (1-3 of rescale, crop up to 10%, tone, noise; JPEG q30-95)",
        }
    }
}

/// `total` of `n` pixels cut (or added), split at random between the two sides.
fn split_sides(rng: &mut Rng, n: u32, total: f64) -> (u32, u32) {
    let all = ((total * n as f64).round() as u32).max(1);
    let first = (rng.uniform(0.0, 1.0) * (all + 1) as f64) as u32;
    (first.min(all), all - first.min(all))
}

/// A copy of `photo` with one kind of edit, then a JPEG encoding (quality 95 except for
/// re-encoding and mixed edits). Returns the bytes and what was done.
pub fn planted_copy(photo: &Image, kind: EditKind, rng: &mut Rng) -> (Vec<u8>, String) {
    let (w, h) = (photo.width(), photo.height());
    match kind {
        EditKind::CropSmall | EditKind::CropLarge => {
            let (lo, hi) = if kind == EditKind::CropSmall { (0.02, 0.05) } else { (0.05, 0.10) };
            let (cw, ch) = (rng.uniform(lo, hi), rng.uniform(lo, hi));
            let (l, r) = split_sides(rng, w, cw);
            let (t, b) = split_sides(rng, h, ch);
            let image = image::imageops::crop_imm(photo, l, t, w - l - r, h - t - b).to_image();
            (jpeg(&image, 95), format!("crop {l}+{r} of {w} x {t}+{b} of {h}, jpeg q95"))
        }
        EditKind::Border => {
            let colour = match rng.next() % 4 {
                0 => [0, 0, 0],
                1 => [255, 255, 255],
                2 => [128, 128, 128],
                _ => [rng.next() as u8, rng.next() as u8, rng.next() as u8],
            };
            // 0, 1: a frame; 2: bars on two sides.
            let shape = rng.next() % 3;
            let along_width = rng.next().is_multiple_of(2);
            let (bw, bh) = (rng.uniform(0.05, 0.10), rng.uniform(0.05, 0.10));
            let (l, r) = if shape < 2 || along_width { split_sides(rng, w, bw) } else { (0, 0) };
            let (t, b) = if shape < 2 || !along_width { split_sides(rng, h, bh) } else { (0, 0) };
            let mut framed = Image::from_pixel(w + l + r, h + t + b, image::Rgb(colour));
            image::imageops::replace(&mut framed, photo, l as i64, t as i64);
            let what = if shape < 2 { "frame" } else { "bars" };
            (jpeg(&framed, 95), format!("{what} {l}+{r} x {t}+{b} colour {colour:?}, jpeg q95"))
        }
        EditKind::Rescale => {
            let s = rng.uniform(0.5, 2.0);
            let (nw, nh) = (((w as f64 * s).round() as u32).max(8), ((h as f64 * s).round() as u32).max(8));
            let image = image::imageops::resize(photo, nw, nh, image::imageops::FilterType::Triangle);
            (jpeg(&image, 95), format!("scale {s:.2}, jpeg q95"))
        }
        EditKind::Reencode => {
            let quality = 30 + (rng.next() % 66) as u8;
            (jpeg(photo, quality), format!("jpeg q{quality}"))
        }
        EditKind::Mixed => edited_copy(photo, rng),
    }
}

/// One image of the labelled set.
pub struct Item {
    pub split: usize,
    /// Items of one group are versions of one photo.
    pub group: usize,
    pub name: String,
    pub edits: String,
    pub bytes: Vec<u8>,
}

/// Settings of the labelled set.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EvalSettings {
    /// Edited copies of each photo that gets copies.
    pub copies: usize,
    /// Photos are first scaled down so that their shorter side is at most this (speed).
    pub max_side: u32,
    /// The precision a radius must reach to be chosen.
    pub target_precision: f64,
    pub seed: u64,
    /// Use at most this many photos (0: all).
    pub limit: usize,
}

/// Builds the labelled set from the photos of `input` (any image source).
pub fn labelled_set(input: &Path, settings: &EvalSettings) -> Result<Vec<Item>> {
    let source = ImageSource::open(input).context("cannot open the evaluation photos")?;
    let mut photos: Vec<(String, Vec<u8>)> = Vec::new();
    source.for_each_record(&|_| true, 64 << 20, &mut |record| {
        if let Ok(bytes) = record.load(64 << 20) {
            photos.push((record.name.clone(), bytes.into_owned()));
        }
        if settings.limit > 0 && photos.len() >= settings.limit {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    let decoded: Vec<Option<(String, Image)>> = photos
        .par_iter()
        .map(|(name, bytes)| {
            let d = decode_rgb(bytes, 1 << 28).ok()?;
            let img = Image::from_raw(d.image.width, d.image.height, d.image.pixels)?;
            let short = img.width().min(img.height());
            let img = if short > settings.max_side {
                let s = settings.max_side as f64 / short as f64;
                let (w, h) = ((img.width() as f64 * s).round() as u32, (img.height() as f64 * s).round() as u32);
                image::imageops::resize(&img, w.max(1), h.max(1), image::imageops::FilterType::Triangle)
            } else {
                img
            };
            Some((name.clone(), img))
        })
        .collect();
    let decoded: Vec<(String, Image)> = decoded.into_iter().flatten().collect();
    if decoded.len() < 8 {
        bail!("{}: {} decodable photos; the evaluation needs at least 8", input.display(), decoded.len());
    }
    let items: Vec<Vec<Item>> = decoded
        .par_iter()
        .enumerate()
        .map(|(i, (name, photo))| {
            let mut rng = Rng::new(settings.seed ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
            let split = i % 2;
            let mut out = vec![Item {
                split,
                group: i,
                name: name.clone(),
                edits: "original (jpeg q95)".into(),
                bytes: jpeg(photo, 95),
            }];
            // Every other photo of a split gets copies; the rest stay single (distinct images).
            if (i / 2) % 2 == 0 {
                for c in 0..settings.copies {
                    let (bytes, edits) = edited_copy(photo, &mut rng);
                    out.push(Item { split, group: i, name: format!("{name}#copy{c}"), edits, bytes });
                }
            }
            out
        })
        .collect();
    Ok(items.into_iter().flatten().collect())
}

/// Precision and recall of the pairs called near at one radius.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub radius: u32,
    pub predicted: u64,
    pub true_positives: u64,
    pub precision: f64,
    pub recall: f64,
    /// Pairs of distinct photos called near, per pair of distinct photos: times n (n - 1) / 2 of
    /// a larger set, the false pairs to expect there (they grow with the square of the set).
    pub false_pair_rate: f64,
}

/// One method on one split: its curve over radii.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    pub method: String,
    pub bits: u32,
    pub split: String,
    pub positives: u64,
    pub points: Vec<Point>,
}

/// Counts, for each radius up to `max_radius`, the pairs within it and the true ones among them.
pub fn curve(distances: &dyn Fn(usize, usize) -> u32, groups: &[usize], max_radius: u32) -> (u64, Vec<Point>) {
    let n = groups.len();
    let mut all = vec![0u64; max_radius as usize + 1];
    let mut hits = vec![0u64; max_radius as usize + 1];
    let mut positives = 0;
    for i in 0..n {
        for j in i + 1..n {
            let same = groups[i] == groups[j];
            positives += same as u64;
            let d = distances(i, j);
            if d <= max_radius {
                all[d as usize] += 1;
                hits[d as usize] += same as u64;
            }
        }
    }
    let negatives = (n * n.saturating_sub(1) / 2) as u64 - positives;
    let (mut predicted, mut tp) = (0, 0);
    let points = (0..=max_radius)
        .map(|r| {
            predicted += all[r as usize];
            tp += hits[r as usize];
            Point {
                radius: r,
                predicted,
                true_positives: tp,
                precision: if predicted > 0 { tp as f64 / predicted as f64 } else { 1.0 },
                recall: tp as f64 / positives.max(1) as f64,
                false_pair_rate: (predicted - tp) as f64 / negatives.max(1) as f64,
            }
        })
        .collect();
    (positives, points)
}

/// The radius with the highest recall among those that reach `target` precision (the smallest
/// such radius on ties); None if none does.
pub fn choose_radius(points: &[Point], target: f64) -> Option<u32> {
    recall_at_precision(points, target).map(|p| p.radius)
}

/// The result of one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub input: String,
    pub settings: EvalSettings,
    pub items: usize,
    pub photos: usize,
    /// Images each split's autoencoder trains on (its own split's).
    pub train_items: usize,
    pub curves: Vec<Curve>,
    /// Per method: the radius chosen on the tune split and its test-split point.
    pub chosen: Vec<(String, Option<u32>, Option<Point>)>,
}

/// The labelled set as the stage sees it: each item's 64x64 crop (for pHash) and 32x32 network input.
pub struct LabelledInputs {
    pub items: Vec<Item>,
    /// `config.size` x `config.size` x 3 crops, one per item.
    pub crops: Vec<Vec<u8>>,
    /// N x 32 x 32 x 3, the autoencoder's input, item order.
    pub small: Vec<u8>,
}

impl LabelledInputs {
    /// Builds the labelled set from the photos of `input` and runs every image through the stage's
    /// own path: decode, min-resize, center crop, box-average to 32x32.
    pub fn build(input: &Path, config: &DedupeConfig, settings: &EvalSettings) -> Result<Self> {
        let items = labelled_set(input, settings)?;
        let size = config.size;
        let options = DecodeOptions {
            max_pixels: config.max_pixels,
            min_decoded_side: config.dct_scaling.then_some(size * config.min_decoded_factor),
            keep_damaged: config.keep_damaged,
        };
        let crops: Vec<Vec<u8>> = items
            .par_iter()
            .map(|item| {
                let decoded = decode_rgb_with_libjpeg(&item.bytes, &options)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", item.name))?;
                Ok(min_resize_center_crop(&decoded.image, size).pixels)
            })
            .collect::<Result<_>>()?;
        let small: Vec<u8> = crops.iter().flat_map(|c| downsample_to_input(c, size as usize)).collect();
        Ok(Self { items, crops, small })
    }

    /// Writes the network inputs (`eval-inputs.npy`, N x 32 x 32 x 3 uint8) and one JSON line per
    /// item (`eval-items.jsonl`: name, group, split, edits), so that other hashes can be tried on
    /// exactly the same set.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let side = crate::dedupe::autoencoder::INPUT_SIDE as u64;
        crate::data::npy::write_array(
            &dir.join("eval-inputs.npy"),
            &[self.items.len() as u64, side, side, 3],
            &self.small,
        )?;
        let mut lines = String::new();
        for item in &self.items {
            let line =
                serde_json::json!({"name": item.name, "group": item.group, "split": item.split, "edits": item.edits});
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        crate::fsutil::write_atomic(&dir.join("eval-items.jsonl"), lines.as_bytes())?;
        Ok(())
    }
}

/// Runs the evaluation on a labelled set (see [`LabelledInputs::build`]).
///
/// Each split gets its own autoencoder, trained on that split's images: the stage, too, hashes
/// the images its model trained on (the paper fitted it on LSUN's training images), and a model
/// trained on one split but applied to the other puts the radius chosen on the first in the
/// wrong place for the second. No model sees a label.
pub fn evaluate(
    input: &Path,
    labelled: &LabelledInputs,
    config: &DedupeConfig,
    settings: &EvalSettings,
) -> Result<EvalReport> {
    let LabelledInputs { items, crops, small } = labelled;
    let size = config.size;
    let dim = crate::dedupe::autoencoder::INPUT_DIM;
    let device = config.device().map_err(anyhow::Error::msg)?;
    let splits: Vec<Vec<usize>> =
        (0..2).map(|split| (0..items.len()).filter(|&i| items[i].split == split).collect()).collect();
    // Per split: the codes of its items (threshold 0, median), in split order.
    let mut codes = Vec::new();
    for idx in &splits {
        let images: Vec<u8> = idx.iter().flat_map(|&i| small[i * dim..(i + 1) * dim].iter().copied()).collect();
        let mut model = Autoencoder::new(device, config.ae_centre_images);
        let train = config.train_settings();
        model.train(&images, &train, Some(&train.progress(idx.len())));
        codes.push((model.codes(&images, Threshold::Zero), model.codes(&images, Threshold::Median)));
    }

    let phasher = crate::dedupe::phash::phasher();
    let phashes: Vec<u64> = crops
        .par_iter()
        .map(|c| crate::dedupe::phash::phash64(&phasher, &Image::from_raw(size, size, c.clone()).expect("crop size")))
        .collect();

    let mut curves = Vec::new();
    let mut chosen = Vec::new();
    for (method, bits, max_radius) in [(AE_ZERO, 128u32, 40u32), (AE_MEDIAN, 128, 40), (PHASH, 64, 20)] {
        let mut by_split = Vec::new();
        for (split, split_name) in [(0usize, "tune"), (1, "test")] {
            let idx = &splits[split];
            let (zero, median) = &codes[split];
            let groups: Vec<usize> = idx.iter().map(|&i| items[i].group).collect();
            let dist = |a: usize, b: usize| -> u32 {
                match method {
                    PHASH => (phashes[idx[a]] ^ phashes[idx[b]]).count_ones(),
                    AE_MEDIAN => median[a].hamming(&median[b]),
                    _ => zero[a].hamming(&zero[b]),
                }
            };
            let (positives, points) = curve(&dist, &groups, max_radius);
            by_split.push(Curve { method: method.into(), bits, split: split_name.into(), positives, points });
        }
        let radius = choose_radius(&by_split[0].points, settings.target_precision);
        let test_point = radius.map(|r| by_split[1].points[r as usize].clone());
        chosen.push((method.to_owned(), radius, test_point));
        curves.extend(by_split);
    }
    Ok(EvalReport {
        input: input.display().to_string(),
        settings: *settings,
        items: items.len(),
        photos: items.iter().map(|i| i.group).collect::<std::collections::BTreeSet<_>>().len(),
        train_items: splits[0].len(),
        curves,
        chosen,
    })
}

const AE_ZERO: &str = "autoencoder, threshold 0 (paper)";
const AE_MEDIAN: &str = "autoencoder, median threshold";
const PHASH: &str = "pHash (image_hasher, DCT + median)";

/// The point of highest recall among those with at least `target` precision (the smallest radius
/// on ties): how far a curve reaches at that precision, whatever the radius.
pub fn recall_at_precision(points: &[Point], target: f64) -> Option<&Point> {
    points
        .iter()
        .filter(|p| p.precision >= target && p.true_positives > 0)
        .max_by(|a, b| a.recall.total_cmp(&b.recall).then(b.radius.cmp(&a.radius)))
}

impl EvalReport {
    /// The table in docs/dedupe.md: the chosen radii, then each method's test curve at a few radii.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        md.push_str(&format!(
            "{} photos -> {} images ({} edited copies per photo for half of them); a tune split (radius choice) and a test split alternate; each split's autoencoder trains on that split's images.\n\n",
            self.photos, self.items, self.settings.copies
        ));
        md.push_str(&format!(
            "Radius chosen on the tune split (highest recall at precision >= {}), measured on the test split:\n\n",
            self.settings.target_precision
        ));
        md.push_str("| method | radius | pairs called | precision | recall |\n|---|---:|---:|---:|---:|\n");
        for (method, radius, point) in &self.chosen {
            match (radius, point) {
                (Some(r), Some(p)) => md.push_str(&format!(
                    "| {method} | {r} | {} | {:.4} | {:.4} |\n",
                    p.predicted, p.precision, p.recall
                )),
                _ => md.push_str(&format!("| {method} | none reaches the target | | | |\n")),
            }
        }
        md.push_str("\nTest split, the highest recall each method reaches at a precision, whatever the radius (recall, radius):\n\n");
        let targets = [0.99, 0.995, 1.0];
        md.push_str("| method | precision >= 0.99 | >= 0.995 | = 1 |\n|---|---:|---:|---:|\n");
        for c in self.curves.iter().filter(|c| c.split == "test") {
            let cells: Vec<String> = targets
                .iter()
                .map(|&t| {
                    recall_at_precision(&c.points, t)
                        .map_or("-".into(), |p| format!("{:.4} (r {})", p.recall, p.radius))
                })
                .collect();
            md.push_str(&format!("| {} | {} |\n", c.method, cells.join(" | ")));
        }
        md.push_str("\nTest split, every radius (precision / recall):\n\n");
        for c in self.curves.iter().filter(|c| c.split == "test") {
            md.push_str(&format!(
                "{} ({} bits; {} duplicate pairs):\n\n| radius | pairs called | precision | recall | false pairs per 10^6 distinct pairs |\n|---:|---:|---:|---:|---:|\n",
                c.method, c.bits, c.positives
            ));
            for p in &c.points {
                if p.radius <= 4 || p.radius % 2 == 0 {
                    md.push_str(&format!(
                        "| {} | {} | {:.4} | {:.4} | {:.1} |\n",
                        p.radius,
                        p.predicted,
                        p.precision,
                        p.recall,
                        p.false_pair_rate * 1e6
                    ));
                }
            }
            md.push('\n');
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_counts_pairs_by_radius() {
        // Items 0, 1 one group; 2 alone. Distances: (0,1)=1, (0,2)=2, (1,2)=5.
        let d = |a: usize, b: usize| match (a, b) {
            (0, 1) => 1,
            (0, 2) => 2,
            _ => 5,
        };
        let (positives, points) = curve(&d, &[7, 7, 9], 5);
        assert_eq!(positives, 1);
        assert_eq!((points[0].predicted, points[0].recall), (0, 0.0));
        assert_eq!((points[1].predicted, points[1].precision, points[1].recall), (1, 1.0, 1.0));
        assert_eq!((points[2].predicted, points[2].precision), (2, 0.5));
        assert_eq!(points[5].predicted, 3);
        // Two pairs of distinct photos; at radius 2 one of them is called.
        assert_eq!((points[1].false_pair_rate, points[2].false_pair_rate, points[5].false_pair_rate), (0.0, 0.5, 1.0));
        assert_eq!(choose_radius(&points, 0.99), Some(1));
        // Equal recall: the smaller radius.
        assert_eq!(choose_radius(&points, 0.4), Some(1));
    }

    #[test]
    fn edits_change_the_bytes_but_keep_the_picture_roughly() {
        let photo = Image::from_fn(120, 90, |x, y| image::Rgb([(x * 2) as u8, (y * 2) as u8, 100]));
        let mut rng = Rng::new(3);
        for _ in 0..10 {
            let (bytes, edits) = edited_copy(&photo, &mut rng);
            let d = decode_rgb(&bytes, 1 << 24).unwrap();
            assert!(edits.contains("jpeg q"), "{edits}");
            let (w, h) = (d.image.width as f64, d.image.height as f64);
            assert!((w / h - 120.0 / 90.0).abs() < 0.15, "{edits}: {w}x{h}");
            assert!((54.0..=240.0).contains(&w), "{edits}: width {w}");
        }
    }
}
