//! The crop route: finding a copy that was cropped by a few percent or given a border.
//!
//! Both the code and the pHash are taken on the whole center crop, and a crop of a few percent
//! moves everything in it: among the cropped copies the default missed, the code distance had a
//! median of 18 bits and the pHash distance 12 (issue 22). Here every crop also gets the pHashes of
//! a few *windows*, sub-crops at 88-96% of its side at a few offsets ([`WINDOWS`]). A copy cropped
//! by c% shows a window of its original at (100 - c)%, so its whole-crop pHash lies near one of the
//! original's window pHashes; a bordered copy shows its original inside a window of its own, the
//! same relation the other way round. Pairs whose whole-crop pHash lies within a radius of any
//! window pHash of the other are the candidates ([`window_pairs`]).
//!
//! Many distinct photos share a pHash with one of another photo's windows, so a candidate must
//! also pass a pixel test: the grey 32x32 thumbnails, one searched over windows of the other
//! (scales 88-100%, shifts in steps of 2% of the side), correlate at least `min_correlation`
//! ([`aligned_correlation`]).

use std::collections::HashMap;

use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use super::autoencoder::{INPUT_DIM, INPUT_SIDE};
use super::index::masks_within;
use super::phash::{phash64, phasher};
use crate::stage::progress::Progress;

/// A square sub-crop: side `scale` of the crop's side, centre offset by (`dx`, `dy`) sides from
/// the crop's centre.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    pub scale: f32,
    pub dx: f32,
    pub dy: f32,
}

const fn w(scale: f32, dx: f32, dy: f32) -> Window {
    Window { scale, dx, dy }
}

/// The windows hashed besides the whole crop: scale 0.96 centred, 0.92 at the centre and four
/// diagonal shifts of 2.5%, 0.88 at the centre and four diagonal shifts of 4%. A crop of 2-10%
/// (its centre moved by up to half of it) or a frame of 5-10% lands within ~2% of scale and shift
/// of one of them, which pHash tolerates.
pub const WINDOWS: [Window; 11] = [
    w(0.96, 0.0, 0.0),
    w(0.92, 0.0, 0.0),
    w(0.92, -0.025, -0.025),
    w(0.92, 0.025, -0.025),
    w(0.92, -0.025, 0.025),
    w(0.92, 0.025, 0.025),
    w(0.88, 0.0, 0.0),
    w(0.88, -0.04, -0.04),
    w(0.88, 0.04, -0.04),
    w(0.88, -0.04, 0.04),
    w(0.88, 0.04, 0.04),
];

/// Hashes per image: the whole crop, then each window.
pub const PER_IMAGE: usize = 1 + WINDOWS.len();

/// The window's pixel rectangle in a `side` x `side` crop: left, top, side.
fn rect(window: &Window, side: u32) -> (u32, u32, u32) {
    let s = ((window.scale * side as f32).round() as u32).clamp(1, side);
    let at = |d: f32| (((0.5 + d - window.scale / 2.0) * side as f32).round().max(0.0) as u32).min(side - s);
    (at(window.dx), at(window.dy), s)
}

/// The pHashes of each packed `side` x `side` crop and of its windows, `PER_IMAGE` per image.
pub fn window_hashes(crops: &[u8], side: u32) -> Vec<u64> {
    let per = (side * side * 3) as usize;
    let hasher = phasher();
    crops
        .par_chunks_exact(per)
        .flat_map_iter(|c| {
            let image = RgbImage::from_raw(side, side, c.to_vec()).expect("crop size");
            // pHash greys the image first: grey once, then cut the windows (the same hashes).
            let grey = image::imageops::grayscale(&image);
            let mut hashes = Vec::with_capacity(PER_IMAGE);
            hashes.push(phash64(&hasher, &image));
            for window in &WINDOWS {
                let (x, y, s) = rect(window, side);
                hashes.push(phash64(&hasher, &image::imageops::crop_imm(&grey, x, y, s, s).to_image()));
            }
            hashes
        })
        .collect()
}

/// The smallest distance between the whole-crop pHash of one image and any pHash of the other,
/// either way round (`hashes`: `PER_IMAGE` per image).
pub fn window_distance(hashes: &[u64], a: u32, b: u32) -> u32 {
    let (ha, hb) = (&hashes[a as usize * PER_IMAGE..][..PER_IMAGE], &hashes[b as usize * PER_IMAGE..][..PER_IMAGE]);
    let one_way = |full: u64, all: &[u64]| all.iter().map(|h| (h ^ full).count_ones()).min().unwrap_or(64);
    one_way(ha[0], hb).min(one_way(hb[0], ha))
}

/// An image pair (a < b) with its window distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WindowPair {
    pub a: u32,
    pub b: u32,
    pub distance: u32,
}

/// The image pairs whose window distance ([`window_distance`]) is within `radius`, by multi-index
/// hashing with the number of chunks [`window_chunks`] picks: for each image, the `max_per_image`
/// others nearest to its whole-crop pHash (usize::MAX: every pair, exactly). The bound keeps the
/// check linear in the set: false candidates grow with the square of the set (0.3 an image at
/// 100,000 photos, ~9 projected at 3M), a copy is nearly always among its original's nearest.
pub fn window_pairs(hashes: &[u64], radius: u32, max_per_image: usize) -> Vec<WindowPair> {
    window_pairs_with(hashes, radius, window_chunks(hashes, radius), max_per_image)
}

/// Chunk k of m covers bits [64 k / m, 64 (k + 1) / m) of a hash.
fn chunk_bounds(chunks: usize) -> Vec<(u32, u32)> {
    (0..chunks).map(|k| ((64 * k / chunks) as u32, (64 * (k + 1) / chunks) as u32)).collect()
}

fn chunk_value(h: u64, (lo, hi): (u32, u32)) -> usize {
    ((h >> lo) & ((1u64 << (hi - lo)) - 1)) as usize
}

/// Where each value of chunk `b` starts among the hashes ordered by that chunk's value.
fn bucket_starts(hashes: &[u64], b: (u32, u32)) -> Vec<u32> {
    let mut starts = vec![0u32; (1usize << (b.1 - b.0)) + 1];
    for &h in hashes {
        starts[chunk_value(h, b) + 1] += 1;
    }
    for v in 0..starts.len() - 1 {
        starts[v + 1] += starts[v];
    }
    starts
}

/// A bucket lookup costs about this many hash comparisons (a random read of a table of megabytes
/// against a contiguous scan): measured by `dedupe_window_search` on 25,000-100,000 photos.
const LOOKUP_COST: f64 = 4.0;

/// 3 or 4 chunks, whichever is less work on these hashes: 4 chunks of 16 bits need few lookups
/// (C(16, <= 2) each for radius 10) into crowded buckets, 3 of 21-22 bits many more lookups into
/// buckets ~60x emptier. Buckets fill unevenly (pHash bits are correlated), so the candidates are
/// counted for a sample of images against the real bucket sizes. Small sets pick 4; the crowding
/// that grows with the set tips large ones to 3.
pub fn window_chunks(hashes: &[u64], radius: u32) -> usize {
    let cost = |chunks: usize| {
        let (lookups, candidates) = window_search_work(hashes, radius, chunks);
        LOOKUP_COST * lookups + candidates
    };
    if cost(3) < cost(4) {
        3
    } else {
        4
    }
}

/// The work of the window search with `chunks` chunks, per image: bucket lookups, and hashes
/// compared (counted for a sample of up to ~512 images against the real bucket sizes).
pub fn window_search_work(hashes: &[u64], radius: u32, chunks: usize) -> (f64, f64) {
    let images = hashes.len() / PER_IMAGE;
    let sample: Vec<usize> = (0..images).step_by((images / 512).max(1)).collect();
    let bounds = chunk_bounds(chunks);
    let (starts, masks): (Vec<_>, Vec<_>) = bounds
        .par_iter()
        .map(|b| (bucket_starts(hashes, *b), masks_within(b.1 - b.0, radius as usize / chunks)))
        .unzip();
    let lookups: f64 = masks.iter().map(|m| m.len() as f64).sum();
    let seen: u64 = sample
        .par_iter()
        .map(|&i| {
            let full = hashes[i * PER_IMAGE];
            let mut n = 0u64;
            for ((b, starts), masks) in bounds.iter().zip(&starts).zip(&masks) {
                let own = chunk_value(full, *b);
                n += masks.iter().map(|m| u64::from(starts[(own ^ m) + 1] - starts[own ^ m])).sum::<u64>();
            }
            n
        })
        .sum();
    (lookups, seen as f64 / sample.len().max(1) as f64)
}

/// One chunk's lookup table: each value's first slot, the hash positions and the hashes in the
/// chunk's value order (a bucket is then scanned contiguously rather than gathered from `hashes`),
/// and the masks within the search's flips. 12 bytes a hash: only one chunk's table is held at a
/// time (LSUN's 3M: 36M hashes, ~430 MB).
struct ChunkTable {
    bounds: (u32, u32),
    starts: Vec<u32>,
    ids: Vec<u32>,
    ordered: Vec<u64>,
    masks: Vec<usize>,
}

impl ChunkTable {
    fn build(hashes: &[u64], bounds: (u32, u32), flips: usize) -> Self {
        let starts = bucket_starts(hashes, bounds);
        let mut fill = starts.clone();
        let mut ids = vec![0u32; hashes.len()];
        for (i, &h) in hashes.iter().enumerate() {
            let slot = &mut fill[chunk_value(h, bounds)];
            ids[*slot as usize] = i as u32;
            *slot += 1;
        }
        let ordered = ids.par_iter().map(|&j| hashes[j as usize]).collect();
        Self { bounds, starts, ids, ordered, masks: masks_within(bounds.1 - bounds.0, flips) }
    }

    /// The other images with a pHash within `radius` of image `i`'s whole-crop pHash that share
    /// this chunk within the flips: (distance to the nearest of their hashes, image).
    fn near(&self, hashes: &[u64], i: usize, radius: u32) -> Vec<(u32, u32)> {
        let full = hashes[i * PER_IMAGE];
        let own = chunk_value(full, self.bounds);
        let mut found = Vec::new();
        for &m in &self.masks {
            let v = own ^ m;
            let bucket = self.starts[v] as usize..self.starts[v + 1] as usize;
            for (&j, &h) in self.ids[bucket.clone()].iter().zip(&self.ordered[bucket]) {
                let (other, d) = (j as usize / PER_IMAGE, (h ^ full).count_ones());
                if d <= radius && other != i {
                    found.push((d, other as u32));
                }
            }
        }
        found
    }
}

/// Keeps each image once at its least distance, then the `keep` nearest (ties: lower index).
fn nearest(found: &mut Vec<(u32, u32)>, keep: usize) {
    found.sort_unstable_by_key(|&(d, j)| (j, d));
    found.dedup_by_key(|p| p.1);
    found.sort_unstable();
    found.truncate(keep);
}

/// [`window_pairs`] with a given number of chunks, 3 or 4 (fewer make tables of 2^32 buckets):
/// a pair within `radius` differs in at most `radius / chunks` bits in some chunk, so each
/// whole-crop hash is looked up, per chunk, in the buckets within that many bits of its own. One
/// chunk's table at a time; each image's nearest are bounded after each chunk (an image among the
/// nearest overall is among the nearest of any subset holding it at its least distance, so the
/// bound per chunk drops nothing the bound overall keeps).
pub fn window_pairs_with(hashes: &[u64], radius: u32, chunks: usize, max_per_image: usize) -> Vec<WindowPair> {
    let flips = radius as usize / chunks;
    let images = hashes.len() / PER_IMAGE;
    let progress = Progress::new("dedupe: window search", Some((images * chunks) as u64), 10.0);
    let mut near: Vec<Vec<(u32, u32)>> = vec![Vec::new(); images];
    for bounds in chunk_bounds(chunks) {
        let table = ChunkTable::build(hashes, bounds, flips);
        // Queries in the order of their own chunk value: consecutive queries then visit neighbouring
        // buckets for each mask, still in cache (in image order nearly every lookup of a large set
        // misses the cache).
        let mut order: Vec<u32> = (0..images as u32).collect();
        order.par_sort_unstable_by_key(|&i| chunk_value(hashes[i as usize * PER_IMAGE], bounds));
        let found: Vec<Vec<(u32, u32)>> = order
            .par_chunks(4096)
            .flat_map_iter(|block| {
                let rows: Vec<Vec<(u32, u32)>> = block
                    .iter()
                    .map(|&i| {
                        let mut row = table.near(hashes, i as usize, radius);
                        nearest(&mut row, max_per_image);
                        row
                    })
                    .collect();
                progress.inc(block.len() as u64);
                rows
            })
            .collect();
        for (&i, row) in order.iter().zip(found) {
            near[i as usize].extend(row);
        }
        near.par_iter_mut().for_each(|row| nearest(row, max_per_image));
    }
    progress.finish();
    let mut pairs: Vec<(u32, u32)> = near
        .into_par_iter()
        .enumerate()
        .flat_map_iter(|(i, row)| row.into_iter().map(move |(_, j)| ((i as u32).min(j), (i as u32).max(j))))
        .collect();
    pairs.par_sort_unstable();
    pairs.dedup();
    pairs.into_par_iter().map(|(a, b)| WindowPair { a, b, distance: window_distance(hashes, a, b) }).collect()
}

/// Side of the grid the correlation compares.
const GRID: usize = 24;

/// The best alignment is refined only from this correlation up (floors in use: 0.93-0.97).
pub const REFINE_FROM: f32 = 0.85;

/// A grey 32x32 thumbnail of the autoencoder's input (32 x 32 x 3) for the correlation, in grey
/// levels (1 KiB an image: at LSUN's 3M the thumbnails of every candidate fit in 3 GiB).
pub fn grey_thumbnail(input: &[u8]) -> Vec<u8> {
    assert_eq!(input.len(), INPUT_DIM);
    input
        .chunks_exact(3)
        .map(|p| (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round() as u8)
        .collect()
}

/// A thumbnail's grey levels as floats, for sampling (stored as bytes: a quarter of the memory).
fn grey_levels(thumb: &[u8]) -> Vec<f32> {
    thumb.iter().map(|&v| f32::from(v)).collect()
}

/// Where one axis of a window samples the thumbnail: per grid cell the lower pixel, the upper
/// one (clamped to the edge) and the weight of the upper.
type Axis = [(usize, usize, f32); GRID];

/// A window's sampling positions along x and y (bilinear resampling is separable, so the 24 x 24
/// grid needs 2 x 24 positions, worked out once per window rather than per sample).
#[derive(Clone, Copy)]
struct Sampling {
    x: Axis,
    y: Axis,
}

impl Sampling {
    fn of(window: &Window) -> Self {
        let n = INPUT_SIDE as f32;
        let side = window.scale * n;
        let axis = |d: f32| -> Axis {
            let start = (0.5 + d - window.scale / 2.0) * n;
            std::array::from_fn(|g| {
                // Pixel centres: grid cell g covers [g, g + 1) / GRID of the window.
                let at = (start + (g as f32 + 0.5) * side / GRID as f32 - 0.5).clamp(0.0, n - 1.0);
                let low = at.floor() as usize;
                (low.min(INPUT_SIDE - 1), (low + 1).min(INPUT_SIDE - 1), at.fract())
            })
        };
        Self { x: axis(window.dx), y: axis(window.dy) }
    }

    /// The window of a thumbnail resampled bilinearly to GRID x GRID, minus its mean, divided by
    /// its norm (so that a dot product is the correlation).
    fn sample(&self, thumb: &[f32]) -> [f32; GRID * GRID] {
        let mut out = [0f32; GRID * GRID];
        let mut row = [0f32; INPUT_SIDE];
        for (gy, &(y0, y1, fy)) in self.y.iter().enumerate() {
            // Between two pixel rows first (a contiguous pass), then along the row.
            let (upper, lower) = (&thumb[y0 * INPUT_SIDE..][..INPUT_SIDE], &thumb[y1 * INPUT_SIDE..][..INPUT_SIDE]);
            for ((r, &u), &l) in row.iter_mut().zip(upper).zip(lower) {
                *r = u * (1.0 - fy) + l * fy;
            }
            for (o, &(x0, x1, fx)) in out[gy * GRID..][..GRID].iter_mut().zip(&self.x) {
                *o = row[x0] * (1.0 - fx) + row[x1] * fx;
            }
        }
        let mean = lane_sum(&out, false) / out.len() as f32;
        out.iter_mut().for_each(|v| *v -= mean);
        let norm = lane_sum(&out, true).sqrt().max(1e-3);
        out.iter_mut().for_each(|v| *v /= norm);
        out
    }
}

/// The windows the correlation searches: the whole thumbnail, and scales 0.88-0.96 at every shift
/// that is a multiple of 2% of the side and keeps the window inside.
fn search_windows() -> Vec<Window> {
    let mut out = vec![w(1.0, 0.0, 0.0)];
    for scale in [0.96f32, 0.92, 0.88] {
        let reach = ((1.0 - scale) / 2.0 / 0.02 + 1e-3).floor() as i32;
        for iy in -reach..=reach {
            for ix in -reach..=reach {
                out.push(w(scale, ix as f32 * 0.02, iy as f32 * 0.02));
            }
        }
    }
    out
}

/// The search, worked out once: each window, its sampling, and the window of the same scale
/// shifted the opposite way (if another).
struct Search {
    windows: Vec<Window>,
    sampling: Vec<Sampling>,
    mirror: Vec<Option<usize>>,
}

fn search() -> &'static Search {
    static SEARCH: std::sync::OnceLock<Search> = std::sync::OnceLock::new();
    SEARCH.get_or_init(|| {
        let windows = search_windows();
        let sampling = windows.iter().map(Sampling::of).collect();
        let mirror = windows
            .iter()
            .enumerate()
            .map(|(k, wi)| {
                windows
                    .iter()
                    .position(|o| o.scale == wi.scale && (o.dx + wi.dx).abs() < 1e-4 && (o.dy + wi.dy).abs() < 1e-4)
                    .filter(|&m| m != k)
            })
            .collect();
        Search { windows, sampling, mirror }
    })
}

/// The dot product, summed in 8 lanes (a single running sum cannot be vectorised: float addition
/// is not reassociated by the compiler), which made it a third of the check's time.
fn dot(x: &[f32; GRID * GRID], y: &[f32; GRID * GRID]) -> f32 {
    let mut lanes = [0f32; 8];
    for (p, q) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        for k in 0..8 {
            lanes[k] += p[k] * q[k];
        }
    }
    lanes.iter().sum()
}

/// The sum, in 8 lanes as [`dot`].
fn lane_sum(x: &[f32; GRID * GRID], square: bool) -> f32 {
    let mut lanes = [0f32; 8];
    for p in x.chunks_exact(8) {
        for k in 0..8 {
            lanes[k] += if square { p[k] * p[k] } else { p[k] };
        }
    }
    lanes.iter().sum()
}

/// The highest correlation of the grey thumbnails `a` and `b` over alignments: one whole and a
/// window of the other ([`search_windows`], either way round: a crop, a frame), or windows of one
/// scale shifted opposite ways (a shift, as a pillarbox cut by the center crop leaves); then the
/// best alignment refined by 1% shifts and scales when it reaches [`REFINE_FROM`]. 1 is the same picture; a flat thumbnail
/// correlates with nothing (0).
pub fn aligned_correlation(a: &[u8], b: &[u8]) -> f32 {
    let Search { windows, sampling, mirror } = search();
    let (a, b) = (&grey_levels(a)[..], &grey_levels(b)[..]);
    let (sa, sb): (Vec<_>, Vec<_>) = sampling.iter().map(|s| (s.sample(a), s.sample(b))).unzip();
    // The best (window of a, window of b) by index into `windows`.
    let mut best = (dot(&sa[0], &sb[0]), 0, 0);
    for k in 1..windows.len() {
        for (c, i, j) in [(dot(&sa[0], &sb[k]), 0, k), (dot(&sa[k], &sb[0]), k, 0)] {
            if c > best.0 {
                best = (c, i, j);
            }
        }
        if let Some(m) = mirror[k] {
            let c = dot(&sa[k], &sb[m]);
            if c > best.0 {
                best = (c, k, m);
            }
        }
    }
    // Refine: move b's window (a's when b is whole) by 1% steps of shift and scale. Refining moves
    // a correlation by a few hundredths, so a pair far below any floor used (most candidates of
    // two photos) is left at its coarse best: a fifth of the check's time.
    let (mut top, i, j) = best;
    if top < REFINE_FROM {
        return top;
    }
    let (fixed, moving, base) = if j != 0 { (&sa[i], b, windows[j]) } else { (&sb[j], a, windows[i]) };
    for ds in [-0.02f32, -0.01, 0.0, 0.01, 0.02] {
        for dy in [-0.01f32, 0.0, 0.01] {
            for dx in [-0.01f32, 0.0, 0.01] {
                let scale = (base.scale + ds).min(1.0);
                top = top.max(dot(fixed, &Sampling::of(&w(scale, base.dx + dx, base.dy + dy)).sample(moving)));
            }
        }
    }
    top
}

/// The alignments the window search proposed for a pair, as (window of a, window of b): one side
/// whole, the other a window whose pHash lies within `radius` of that whole crop's pHash (the
/// nearest such alignment when none is within).
pub fn proposed_alignments(hashes: &[u64], a: u32, b: u32, radius: u32) -> Vec<(Window, Window)> {
    let (ha, hb) = (&hashes[a as usize * PER_IMAGE..][..PER_IMAGE], &hashes[b as usize * PER_IMAGE..][..PER_IMAGE]);
    let whole = w(1.0, 0.0, 0.0);
    let at = |k: usize| if k == 0 { whole } else { WINDOWS[k - 1] };
    let mut proposed = Vec::new();
    let mut nearest = (u32::MAX, (whole, whole));
    for k in 0..PER_IMAGE {
        for (d, pair) in
            [((ha[0] ^ hb[k]).count_ones(), (whole, at(k))), ((hb[0] ^ ha[k]).count_ones(), (at(k), whole))]
        {
            if d <= radius {
                proposed.push(pair);
            }
            if d < nearest.0 {
                nearest = (d, pair);
            }
        }
    }
    if proposed.is_empty() {
        proposed.push(nearest.1);
    }
    proposed
}

/// A pair whose thumbnails correlate less than this at every proposed alignment is not searched
/// over all alignments ([`aligned_correlation`], ~100 times the work): most candidates are two
/// photos, which correlate far below any floor in use (0.93-0.97) wherever they are aligned.
pub const SEARCH_FROM: f32 = 0.6;

/// The crop route's correlation of a candidate pair: the best of the proposed alignments
/// ([`proposed_alignments`]), and when that reaches [`SEARCH_FROM`], of the full search too.
pub fn window_correlation(a: &[u8], b: &[u8], proposed: &[(Window, Window)]) -> f32 {
    let (la, lb) = (grey_levels(a), grey_levels(b));
    let quick = proposed
        .iter()
        .map(|(wa, wb)| dot(&Sampling::of(wa).sample(&la), &Sampling::of(wb).sample(&lb)))
        .fold(f32::MIN, f32::max);
    if quick < SEARCH_FROM {
        return quick;
    }
    aligned_correlation(a, b).max(quick)
}

/// Grey thumbnails by image, as a batch of the check reads them.
pub type Thumbnails = HashMap<u32, Vec<u8>>;

/// The correlation of every pair ([`window_correlation`]), `batch` pairs at a time: only the
/// thumbnails of one batch's images are held (`read` fetches them, e.g. from disk), so the
/// check's memory is bounded by `batch`, not by the set.
pub fn window_correlations(
    pairs: &[WindowPair],
    hashes: &[u64],
    radius: u32,
    batch: usize,
    read: &dyn Fn(&[u32]) -> std::io::Result<Thumbnails>,
) -> std::io::Result<HashMap<(u32, u32), f32>> {
    let progress = Progress::new("dedupe: window check", Some(pairs.len() as u64), 10.0);
    let mut correlation = HashMap::with_capacity(pairs.len());
    for part in pairs.chunks(batch.max(1)) {
        let mut wanted: Vec<u32> = part.iter().flat_map(|p| [p.a, p.b]).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let thumbs = read(&wanted)?;
        correlation.par_extend(part.par_iter().map(|p| {
            let proposed = proposed_alignments(hashes, p.a, p.b, radius);
            ((p.a, p.b), window_correlation(&thumbs[&p.a], &thumbs[&p.b], &proposed))
        }));
        progress.inc(part.len() as u64);
    }
    progress.finish();
    Ok(correlation)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth but detailed picture, `side` x `side`, of a scene `size` wide seen from `(x0, y0)`.
    fn scene(side: u32, x0: f32, y0: f32, size: f32, seed: f32) -> Vec<u8> {
        let mut out = Vec::with_capacity((side * side * 3) as usize);
        for y in 0..side {
            for x in 0..side {
                let (u, v) = (x0 + size * (x as f32 + 0.5) / side as f32, y0 + size * (y as f32 + 0.5) / side as f32);
                let g = 128.0
                    + 60.0 * (7.0 * u + seed).sin() * (5.0 * v - seed).cos()
                    + 40.0 * (11.0 * (u + v) + 2.0 * seed).sin();
                out.extend([g as u8, (255.0 - g) as u8, (g / 2.0) as u8]);
            }
        }
        out
    }

    #[test]
    fn windows_lie_inside_the_crop() {
        for window in WINDOWS.iter().chain(&search_windows()) {
            let (x, y, s) = rect(window, 64);
            assert!(x + s <= 64 && y + s <= 64 && s >= 56, "{window:?}");
        }
        assert_eq!(rect(&w(1.0, 0.0, 0.0), 64), (0, 0, 64));
    }

    #[test]
    fn a_cropped_copy_is_near_a_window_of_its_original_and_correlates() {
        // The original sees [0, 1] of the scene; the copy [0.06, 0.98] (8% cropped, off-centre).
        let original = scene(64, 0.0, 0.0, 1.0, 0.3);
        let copy = scene(64, 0.06, 0.02, 0.92, 0.3);
        let other = scene(64, 0.0, 0.0, 1.0, 2.1);
        let hashes = window_hashes(&[original.clone(), copy.clone(), other.clone()].concat(), 64);
        let whole = |i: usize| hashes[i * PER_IMAGE];
        let near = window_distance(&hashes, 0, 1);
        assert!(
            near < (whole(0) ^ whole(1)).count_ones() || near <= 4,
            "window {near} vs whole {}",
            (whole(0) ^ whole(1)).count_ones()
        );
        assert!(near <= 8, "copy: {near} bits");
        let pairs = window_pairs(&hashes, 8, usize::MAX);
        assert!(pairs.iter().any(|p| (p.a, p.b) == (0, 1)), "{pairs:?}");
        let thumb = |img: &[u8]| grey_thumbnail(&super::super::autoencoder::downsample_to_input(img, 64));
        let (t0, t1, t2) = (thumb(&original), thumb(&copy), thumb(&other));
        let plain = {
            let whole = Sampling::of(&w(1.0, 0.0, 0.0));
            dot(&whole.sample(&grey_levels(&t0)), &whole.sample(&grey_levels(&t1)))
        };
        let aligned = aligned_correlation(&t0, &t1);
        assert!(aligned > 0.95 && aligned > plain, "aligned {aligned}, unaligned {plain}");
        assert!(aligned_correlation(&t0, &t2) < 0.8, "another scene: {}", aligned_correlation(&t0, &t2));
        // The check's path: the proposed alignments first, the full search when they reach 0.6.
        let checked = window_correlation(&t0, &t1, &proposed_alignments(&hashes, 0, 1, 8));
        assert!(checked >= aligned, "checked {checked}, aligned {aligned}");
        let other = window_correlation(&t0, &t2, &proposed_alignments(&hashes, 0, 2, 8));
        assert!(other < 0.8, "another scene: {other}");
    }

    /// Hashes clustered around a few centres, so that many pairs are near.
    fn clustered_hashes(images: usize, seed: u64) -> Vec<u64> {
        let mut rng = crate::rng::SplitMix::new(seed);
        let centres: Vec<u64> = (0..4).map(|_| rng.next()).collect();
        (0..images * PER_IMAGE)
            .map(|_| {
                let mut h = centres[(rng.next() % 4) as usize];
                for _ in 0..rng.next() % 8 {
                    h ^= 1 << (rng.next() % 64);
                }
                h
            })
            .collect()
    }

    #[test]
    fn the_bound_keeps_each_images_nearest_candidates() {
        let hashes = clustered_hashes(60, 9);
        let all = window_pairs(&hashes, 10, usize::MAX);
        for keep in [1, 2, 4] {
            let bounded = window_pairs(&hashes, 10, keep);
            assert!(
                bounded.len() <= keep * 60 && bounded.len() < all.len(),
                "{keep}: {} of {}",
                bounded.len(),
                all.len()
            );
            assert!(bounded.iter().all(|p| all.contains(p)), "{keep}: a pair outside the radius");
            for i in 0..60u32 {
                let whole = hashes[i as usize * PER_IMAGE];
                let one_way = |j: u32| {
                    hashes[j as usize * PER_IMAGE..][..PER_IMAGE]
                        .iter()
                        .map(|h| (h ^ whole).count_ones())
                        .min()
                        .unwrap()
                };
                let mut near: Vec<(u32, u32)> =
                    (0..60).filter(|&j| j != i).map(|j| (one_way(j), j)).filter(|&(d, _)| d <= 10).collect();
                near.sort_unstable();
                for &(_, j) in near.iter().take(keep) {
                    assert!(
                        bounded.iter().any(|p| (p.a, p.b) == (i.min(j), i.max(j))),
                        "{keep}: {i}'s near {j} dropped"
                    );
                }
            }
        }
    }

    #[test]
    fn window_pairs_match_a_scan_of_all_pairs() {
        let mut rng = crate::rng::SplitMix::new(5);
        // Hashes clustered around a few centres, so that many pairs are near.
        let centres: Vec<u64> = (0..4).map(|_| rng.next()).collect();
        let hashes: Vec<u64> = (0..60 * PER_IMAGE)
            .map(|_| {
                let mut h = centres[(rng.next() % 4) as usize];
                for _ in 0..rng.next() % 8 {
                    h ^= 1 << (rng.next() % 64);
                }
                h
            })
            .collect();
        for radius in [0, 3, 6, 9, 10, 12] {
            let mut expected = Vec::new();
            for a in 0..60u32 {
                for b in a + 1..60 {
                    let d = window_distance(&hashes, a, b);
                    if d <= radius {
                        expected.push(WindowPair { a, b, distance: d });
                    }
                }
            }
            assert_eq!(window_pairs(&hashes, radius, usize::MAX), expected, "radius {radius}");
            for chunks in [3, 4] {
                assert_eq!(
                    window_pairs_with(&hashes, radius, chunks, usize::MAX),
                    expected,
                    "radius {radius}, {chunks} chunks"
                );
            }
        }
    }
}
