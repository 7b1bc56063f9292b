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
//! ([`aligned_correlation`]). That test is windows/correlation.rs; this file is the windows, their
//! pHashes and the search for pairs among them.

use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use super::buckets::{bucket_order, bucket_starts};
use super::index::masks_within;
use super::phash::{phash64, phasher};
use crate::stage::progress::Progress;

mod correlation;
pub use correlation::{
    aligned_correlation, coarse_first_look, first_look, grey_thumbnail, proposed_alignments, ranked_best,
    window_correlation, window_correlations, Thumbnails, GREY_BYTES, RANK_FROM, REFINE_FROM, SEARCH_FROM,
};

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
fn chunk_starts(hashes: &[u64], b: (u32, u32)) -> Vec<u32> {
    bucket_starts(1 << (b.1 - b.0), hashes.len(), |i| chunk_value(hashes[i], b))
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
        .map(|b| (chunk_starts(hashes, *b), masks_within(b.1 - b.0, radius as usize / chunks)))
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
        let (starts, ids) = bucket_order(1 << (bounds.1 - bounds.0), hashes.len(), |i| chunk_value(hashes[i], bounds));
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
    pairs_of(near, hashes)
}

/// [`window_pairs`] by sampled bits ([`super::sampled`]): each image's whole-crop pHash is looked
/// up in `tables` tables over every pHash of every image, keys of bits drawn at random, so that the
/// work per image stays the same whatever the set's size. Approximate: a pair `d` bits apart is
/// missed with [`super::sampled::miss_probability`]. The bound per image is the exact search's.
pub fn window_pairs_sampled(hashes: &[u64], radius: u32, tables: usize, max_per_image: usize) -> Vec<WindowPair> {
    let images = hashes.len() / PER_IMAGE;
    let plan = super::sampled::Plan::for_set::<u64>(hashes.len(), radius, tables);
    let wholes: Vec<u64> = hashes.iter().step_by(PER_IMAGE).copied().collect();
    let progress = Progress::new("dedupe: window search", Some((images * tables) as u64), 10.0);
    let mut near: Vec<Vec<(u32, u32)>> = vec![Vec::new(); images];
    super::sampled::search(hashes, PER_IMAGE as u32, &wholes, plan, &mut near, &progress, |_, row, found| {
        row.extend(found.iter().map(|f| (f.1, f.2 / PER_IMAGE as u32)));
        nearest(row, max_per_image);
    });
    progress.finish();
    pairs_of(near, hashes)
}

/// Each image's near others as image pairs (a < b, each once) with their window distance.
fn pairs_of(near: Vec<Vec<(u32, u32)>>, hashes: &[u64]) -> Vec<WindowPair> {
    let mut pairs: Vec<(u32, u32)> = near
        .into_par_iter()
        .enumerate()
        .flat_map_iter(|(i, row)| row.into_iter().map(move |(_, j)| ((i as u32).min(j), (i as u32).max(j))))
        .collect();
    pairs.par_sort_unstable();
    pairs.dedup();
    pairs.into_par_iter().map(|(a, b)| WindowPair { a, b, distance: window_distance(hashes, a, b) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_sampled_search_finds_nearly_every_exact_pair_and_nothing_else() {
        let hashes = clustered_hashes(400, 21);
        let exact = window_pairs(&hashes, 10, usize::MAX);
        let sampled = window_pairs_sampled(&hashes, 10, 16, usize::MAX);
        assert!(sampled.iter().all(|p| exact.binary_search(p).is_ok()), "a pair the exact search does not have");
        assert!(
            exact.len() > 1000 && sampled.len() as f64 >= 0.97 * exact.len() as f64,
            "{} of {}",
            sampled.len(),
            exact.len()
        );
        assert!(window_pairs_sampled(&hashes, 10, 1, usize::MAX).len() < sampled.len(), "tables buy the recall");
        // The bound per image holds as in the exact search.
        let bounded = window_pairs_sampled(&hashes, 10, 16, 2);
        assert!(bounded.len() <= 2 * 400 && bounded.len() < sampled.len(), "{}", bounded.len());
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
