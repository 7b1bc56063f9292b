//! The crop route's pixel test: a candidate pair's grey 32x32 thumbnails, one searched over
//! windows of the other, correlate at least `min_correlation` ([`aligned_correlation`]); the
//! windows its pHash search proposed are tried first ([`window_correlation`]). The candidates come
//! from the window pHashes in the parent module ([`super`]).

use std::collections::HashMap;

use rayon::prelude::*;

use super::{w, Window, WindowPair, PER_IMAGE, WINDOWS};
use crate::dedupe::autoencoder::{INPUT_DIM, INPUT_SIDE};
use crate::stage::progress::Progress;

/// Side of the grid the correlation compares.
const GRID: usize = 24;

/// Side of the coarse grid the check's first look compares on ([`coarse_first_look`]).
const COARSE: usize = 12;

/// Side of the grid the full search ranks every alignment on first (a ninth of the fine grid's
/// cells); only the best [`FINE_CANDIDATES`] are compared on the fine grid.
const RANK: usize = 8;

/// Alignments the ranking hands to the fine grid.
const FINE_CANDIDATES: usize = 6;

/// A pair whose best alignment on the ranking grid correlates less than this is not compared on
/// the fine grid: its ranking correlation is its result (far below the floors in use, 0.93-0.97).
/// On the 155,000-photo growth set, no pair passing 0.96 ranked below 0.90, and 68% of the searched
/// pairs of two photos rank below 0.88 (docs/dedupe.md, "why the check cannot be flat").
pub const RANK_FROM: f32 = 0.88;

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
type Axis<const G: usize> = [(usize, usize, f32); G];

/// A window's sampling positions along x and y on a G x G grid (bilinear resampling is
/// separable, so the grid needs 2 x G positions, worked out once per window rather than per
/// sample).
#[derive(Clone, Copy)]
struct Sampling<const G: usize> {
    x: Axis<G>,
    y: Axis<G>,
}

impl<const G: usize> Sampling<G> {
    fn of(window: &Window) -> Self {
        let n = INPUT_SIDE as f32;
        let side = window.scale * n;
        let axis = |d: f32| -> Axis<G> {
            let start = (0.5 + d - window.scale / 2.0) * n;
            std::array::from_fn(|g| {
                // Pixel centres: grid cell g covers [g, g + 1) / G of the window.
                let at = (start + (g as f32 + 0.5) * side / G as f32 - 0.5).clamp(0.0, n - 1.0);
                let low = at.floor() as usize;
                (low.min(INPUT_SIDE - 1), (low + 1).min(INPUT_SIDE - 1), at.fract())
            })
        };
        Self { x: axis(window.dx), y: axis(window.dy) }
    }

    /// The window of a thumbnail resampled bilinearly to G x G, minus its mean, divided by its
    /// norm (so that a dot product is the correlation).
    fn sample(&self, thumb: &[f32]) -> [[f32; G]; G] {
        self.sample_rows(&self.rows(thumb))
    }

    /// The thumbnail interpolated between pixel rows at each grid row (a contiguous pass; windows
    /// with the same scale and vertical shift share it).
    fn rows(&self, thumb: &[f32]) -> [[f32; INPUT_SIDE]; G] {
        let mut rows = [[0f32; INPUT_SIDE]; G];
        self.rows_into(thumb, &mut rows);
        rows
    }

    /// [`Sampling::rows`] written in place (the ranking fills a buffer: no 1 KiB copies).
    fn rows_into(&self, thumb: &[f32], rows: &mut [[f32; INPUT_SIDE]; G]) {
        for (row, &(y0, y1, fy)) in rows.iter_mut().zip(&self.y) {
            let (upper, lower) = (&thumb[y0 * INPUT_SIDE..][..INPUT_SIDE], &thumb[y1 * INPUT_SIDE..][..INPUT_SIDE]);
            for ((r, &u), &l) in row.iter_mut().zip(upper).zip(lower) {
                *r = u * (1.0 - fy) + l * fy;
            }
        }
    }

    /// [`Sampling::sample`] from the window's [`Sampling::rows`]: along each row, then normalised.
    fn sample_rows(&self, rows: &[[f32; INPUT_SIDE]; G]) -> [[f32; G]; G] {
        let mut grid = [[0f32; G]; G];
        self.sample_rows_into(rows, &mut grid);
        grid
    }

    /// [`Sampling::sample_rows`] written in place.
    fn sample_rows_into(&self, rows: &[[f32; INPUT_SIDE]; G], grid: &mut [[f32; G]; G]) {
        for (cells, row) in grid.iter_mut().zip(rows) {
            for (o, &(x0, x1, fx)) in cells.iter_mut().zip(&self.x) {
                // The axis keeps indices inside the row; the mask says so to the compiler, which
                // then drops two bounds checks a cell (INPUT_SIDE is a power of two).
                *o = row[x0 & (INPUT_SIDE - 1)] * (1.0 - fx) + row[x1 & (INPUT_SIDE - 1)] * fx;
            }
        }
        let out = grid.as_flattened_mut();
        let mean = lane_sum(out) / out.len() as f32;
        // Centred and its squares summed in one pass (the same lanes and order as two passes).
        let mut lanes = [0f32; 8];
        for p in out.chunks_exact_mut(8) {
            for k in 0..8 {
                p[k] -= mean;
                lanes[k] += p[k] * p[k];
            }
        }
        let norm = lanes.iter().sum::<f32>().sqrt().max(1e-3);
        out.iter_mut().for_each(|v| *v /= norm);
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

/// The search, worked out once: each window, its samplings and the alignments tried.
struct Search {
    windows: Vec<Window>,
    sampling: Vec<Sampling<GRID>>,
    coarse: Vec<Sampling<RANK>>,
    /// The samplings of the windows the pHash search proposes (the whole crop and [`WINDOWS`]),
    /// for the first looks.
    proposed_fine: Vec<(Window, Sampling<GRID>)>,
    proposed_coarse: Vec<(Window, Sampling<COARSE>)>,
    /// Every alignment tried ([`alignments`]), worked out once.
    alignments: Vec<(usize, usize)>,
    /// Per window, its set of rows: windows of the same scale and vertical shift share one
    /// (numbered in window order, so a window's set is either an earlier one or the next new one).
    row_set: Vec<usize>,
    /// How many sets of rows there are.
    row_sets: usize,
}

impl Search {
    /// Every window of a thumbnail on the coarse grid, rows interpolated once per scale and
    /// vertical shift (16 row sets for 84 windows).
    fn coarse_samples(&self, thumb: &[f32]) -> Vec<[[f32; RANK]; RANK]> {
        let mut rows = vec![[[0f32; INPUT_SIDE]; RANK]; self.row_sets];
        let mut samples = vec![[[0f32; RANK]; RANK]; self.windows.len()];
        let mut filled = 0;
        for (k, sample) in samples.iter_mut().enumerate() {
            let set = self.row_set[k];
            if set == filled {
                self.coarse[k].rows_into(thumb, &mut rows[set]);
                filled += 1;
            }
            self.coarse[k].sample_rows_into(&rows[set], sample);
        }
        samples
    }
}

fn search() -> &'static Search {
    static SEARCH: std::sync::OnceLock<Search> = std::sync::OnceLock::new();
    SEARCH.get_or_init(|| {
        let windows = search_windows();
        let sampling = windows.iter().map(Sampling::of).collect();
        let coarse = windows.iter().map(Sampling::of).collect();
        let mirror: Vec<Option<usize>> = windows
            .iter()
            .enumerate()
            .map(|(k, wi)| {
                windows
                    .iter()
                    .position(|o| o.scale == wi.scale && (o.dx + wi.dx).abs() < 1e-4 && (o.dy + wi.dy).abs() < 1e-4)
                    .filter(|&m| m != k)
            })
            .collect();
        let mut firsts: Vec<usize> = Vec::new();
        let row_set: Vec<usize> = (0..windows.len())
            .map(|k| {
                let same = |&f: &usize| windows[f].scale == windows[k].scale && windows[f].dy == windows[k].dy;
                firsts.iter().position(same).unwrap_or_else(|| {
                    firsts.push(k);
                    firsts.len() - 1
                })
            })
            .collect();
        let alignments = alignments(&windows, &mirror);
        let proposed: Vec<Window> = std::iter::once(w(1.0, 0.0, 0.0)).chain(WINDOWS.iter().copied()).collect();
        let proposed_fine = proposed.iter().map(|p| (*p, Sampling::of(p))).collect();
        let proposed_coarse = proposed.iter().map(|p| (*p, Sampling::of(p))).collect();
        let row_sets = firsts.len();
        Search { windows, sampling, coarse, proposed_fine, proposed_coarse, alignments, row_set, row_sets }
    })
}

/// The dot product, summed in 8 lanes (a single running sum cannot be vectorised: float addition
/// is not reassociated by the compiler), which made it a third of the check's time.
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    for (p, q) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        for k in 0..8 {
            lanes[k] += p[k] * q[k];
        }
    }
    lanes.iter().sum()
}

/// The sum, in 8 lanes as [`dot`].
fn lane_sum(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    for p in x.chunks_exact(8) {
        for k in 0..8 {
            lanes[k] += p[k];
        }
    }
    lanes.iter().sum()
}

/// Every alignment the full search tries, as (window of a, window of b) by index into
/// [`search_windows`]: one whole and a window of the other, either way round (a crop, a frame),
/// and windows of one scale shifted opposite ways (a shift, as a pillarbox cut by the center crop
/// leaves).
fn alignments(windows: &[Window], mirror: &[Option<usize>]) -> Vec<(usize, usize)> {
    (0..windows.len())
        .flat_map(|k| {
            let whole = if k == 0 { vec![(0, 0)] } else { vec![(0, k), (k, 0)] };
            whole.into_iter().chain(mirror[k].map(|m| (k, m)))
        })
        .collect()
}

/// The highest correlation of the grey thumbnails `a` and `b` over alignments ([`alignments`]):
/// every alignment ranked on the coarse grid (a pair whose best ranks below [`RANK_FROM`] stops
/// there, with that correlation), the best [`FINE_CANDIDATES`] compared on the fine one; then the
/// best alignment refined by 1% shifts and scales when it reaches [`REFINE_FROM`].
/// 1 is the same picture; a flat thumbnail correlates with nothing (0).
pub fn aligned_correlation(a: &[u8], b: &[u8]) -> f32 {
    aligned_levels(&grey_levels(a), &grey_levels(b))
}

/// The best correlation of two grey thumbnails over every alignment on the ranking grid (what the
/// full search compares with [`RANK_FROM`]; the profile bench tabulates it).
pub fn ranked_best(a: &[u8], b: &[u8]) -> f32 {
    ranked(&grey_levels(a), &grey_levels(b)).iter().map(|r| r.0).fold(f32::MIN, f32::max)
}

/// Every alignment's correlation on the ranking grid, as (correlation, window of a, window of b).
fn ranked(a: &[f32], b: &[f32]) -> Vec<(f32, usize, usize)> {
    let search = search();
    let (ca, cb) = (search.coarse_samples(a), search.coarse_samples(b));
    search.alignments.iter().map(|&(i, j)| (dot(ca[i].as_flattened(), cb[j].as_flattened()), i, j)).collect()
}

/// [`aligned_correlation`] of thumbnails already in grey levels.
fn aligned_levels(a: &[f32], b: &[f32]) -> f32 {
    let search = search();
    let mut ranked = ranked(a, b);
    let best_ranked = ranked.iter().map(|r| r.0).fold(f32::MIN, f32::max);
    if best_ranked < RANK_FROM {
        return best_ranked;
    }
    let keep = FINE_CANDIDATES.min(ranked.len());
    ranked.select_nth_unstable_by(keep - 1, |x, y| y.0.total_cmp(&x.0));
    let fine = |i: usize, thumb: &[f32]| search.sampling[i].sample(thumb);
    let best = ranked[..keep]
        .iter()
        .map(|&(_, i, j)| (dot(fine(i, a).as_flattened(), fine(j, b).as_flattened()), i, j))
        .fold((f32::MIN, 0, 0), |x, y| if y.0 > x.0 { y } else { x });
    refine(best, a, b, &search.windows)
}

/// Moves b's window (a's when b is whole) of the best alignment by 1% steps of shift and scale.
/// Refining moves a correlation by a few hundredths, so a pair far below any floor used (most
/// candidates of two photos) is left at its coarse best: a fifth of the check's time.
fn refine((mut top, i, j): (f32, usize, usize), a: &[f32], b: &[f32], windows: &[Window]) -> f32 {
    if top < REFINE_FROM {
        return top;
    }
    let (fixed, moving, base) = if j != 0 {
        (Sampling::<GRID>::of(&windows[i]).sample(a), b, windows[j])
    } else {
        (Sampling::<GRID>::of(&windows[j]).sample(b), a, windows[i])
    };
    for ds in [-0.02f32, -0.01, 0.0, 0.01, 0.02] {
        for dy in [-0.01f32, 0.0, 0.01] {
            for dx in [-0.01f32, 0.0, 0.01] {
                let scale = (base.scale + ds).min(1.0);
                let moved = Sampling::<GRID>::of(&w(scale, base.dx + dx, base.dy + dy)).sample(moving);
                top = top.max(dot(fixed.as_flattened(), moved.as_flattened()));
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

/// A pair whose thumbnails correlate less than this on the coarse grid at every proposed
/// alignment ([`coarse_first_look`]) is not searched over all alignments ([`aligned_correlation`],
/// ~20 times the work): most candidates are two photos, which correlate far below any floor in use
/// (0.93-0.97) wherever they are aligned. On the coarse grid a look predicts the full search better
/// than on the fine one, at half the cost: on 155,000 real photos with planted copies, searching from
/// a coarse 0.7 searched 17,706 pairs of two photos and left 5 copies that the search would have
/// passed, against 32,226 and 6 from a fine 0.6 (docs/dedupe.md, "a flat index").
pub const SEARCH_FROM: f32 = 0.7;

/// The best correlation of two grey thumbnails at the proposed alignments only
/// ([`proposed_alignments`]), on the fine grid.
pub fn first_look(a: &[u8], b: &[u8], proposed: &[(Window, Window)]) -> f32 {
    looks(&grey_levels(a), &grey_levels(b), proposed, &search().proposed_fine)
}

/// [`first_look`] on the coarse grid: a quarter of the cells, the same alignments (the check's
/// first look).
pub fn coarse_first_look(a: &[u8], b: &[u8], proposed: &[(Window, Window)]) -> f32 {
    looks(&grey_levels(a), &grey_levels(b), proposed, &search().proposed_coarse)
}

/// The best correlation at the proposed alignments on a G x G grid, the windows' samplings taken
/// from `table` (worked out once) and each thumbnail's whole window sampled once (one side of
/// every proposed alignment is whole).
fn looks<const G: usize>(
    la: &[f32],
    lb: &[f32],
    proposed: &[(Window, Window)],
    table: &[(Window, Sampling<G>)],
) -> f32 {
    let sample = |window: &Window, levels: &[f32]| match table.iter().find(|(w, _)| w == window) {
        Some((_, sampling)) => sampling.sample(levels),
        None => Sampling::<G>::of(window).sample(levels),
    };
    let whole = w(1.0, 0.0, 0.0);
    let (mut whole_a, mut whole_b) = (None, None);
    let mut best = f32::MIN;
    for (wa, wb) in proposed {
        let (fresh_a, fresh_b);
        let sa = if *wa == whole {
            &*whole_a.get_or_insert_with(|| sample(wa, la))
        } else {
            fresh_a = sample(wa, la);
            &fresh_a
        };
        let sb = if *wb == whole {
            &*whole_b.get_or_insert_with(|| sample(wb, lb))
        } else {
            fresh_b = sample(wb, lb);
            &fresh_b
        };
        best = best.max(dot(sa.as_flattened(), sb.as_flattened()));
    }
    best
}

/// The crop route's correlation of a candidate pair: the coarse first look
/// ([`coarse_first_look`]) when it is below [`SEARCH_FROM`] (far below any floor: the pair fails
/// whatever the grid), otherwise the best of the full search and the proposed alignments on the
/// fine grid. The thumbnails are turned into grey levels once for all three.
pub fn window_correlation(a: &[u8], b: &[u8], proposed: &[(Window, Window)]) -> f32 {
    let (la, lb) = (grey_levels(a), grey_levels(b));
    let search = search();
    let quick = looks(&la, &lb, proposed, &search.proposed_coarse);
    if quick < SEARCH_FROM {
        return quick;
    }
    aligned_levels(&la, &lb).max(looks(&la, &lb, proposed, &search.proposed_fine))
}

/// Bytes of one grey thumbnail ([`grey_thumbnail`]).
pub const GREY_BYTES: usize = INPUT_DIM / 3;

/// Grey thumbnails of a batch of images, as the check reads them: one buffer in image order (not
/// an allocation per thumbnail), found by binary search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thumbnails {
    ids: Vec<u32>,
    bytes: Vec<u8>,
}

impl Thumbnails {
    /// `bytes` holds the thumbnail of each of `ids` (sorted, each once), in that order.
    pub fn from_sorted(ids: Vec<u32>, bytes: Vec<u8>) -> Self {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids sorted, each once");
        assert_eq!(bytes.len(), ids.len() * GREY_BYTES, "one grey thumbnail an id");
        Self { ids, bytes }
    }

    /// The thumbnails of `ids` (sorted, each once), each made by `make` (in parallel).
    pub fn gather(ids: &[u32], make: impl Fn(u32) -> Vec<u8> + Sync) -> Self {
        let bytes = ids.par_iter().flat_map_iter(|&i| make(i)).collect();
        Self::from_sorted(ids.to_vec(), bytes)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The thumbnail of image `id`, if the batch holds it.
    pub fn get(&self, id: u32) -> Option<&[u8]> {
        let k = self.ids.binary_search(&id).ok()?;
        Some(&self.bytes[k * GREY_BYTES..][..GREY_BYTES])
    }
}

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
        let thumb = |i: u32| thumbs.get(i).expect("the batch reads every image of its pairs");
        correlation.par_extend(part.par_iter().map(|p| {
            let proposed = proposed_alignments(hashes, p.a, p.b, radius);
            ((p.a, p.b), window_correlation(thumb(p.a), thumb(p.b), &proposed))
        }));
        progress.inc(part.len() as u64);
    }
    progress.finish();
    Ok(correlation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedupe::windows::{rect, window_distance, window_hashes, window_pairs};

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

    /// The best fine-grid correlation over every alignment (what the search ranked coarsely first
    /// must reach: refining only adds).
    fn exhaustive(a: &[u8], b: &[u8]) -> f32 {
        let search = search();
        let (a, b) = (grey_levels(a), grey_levels(b));
        search
            .alignments
            .iter()
            .map(|&(i, j)| {
                dot(search.sampling[i].sample(&a).as_flattened(), search.sampling[j].sample(&b).as_flattened())
            })
            .fold(f32::MIN, f32::max)
    }

    #[test]
    fn the_coarse_ranking_keeps_the_best_fine_alignment() {
        let thumb = |img: &[u8]| grey_thumbnail(&crate::dedupe::autoencoder::downsample_to_input(img, 64));
        let original = thumb(&scene(64, 0.0, 0.0, 1.0, 0.7));
        let mut checked = 0;
        for (x0, y0, size) in
            [(0.02, 0.03, 0.95), (0.05, 0.0, 0.9), (-0.04, -0.04, 1.08), (0.0, 0.06, 0.92), (0.01, 0.01, 0.97)]
        {
            let copy = thumb(&scene(64, x0, y0, size, 0.7));
            let (full, best) = (aligned_correlation(&original, &copy), exhaustive(&original, &copy));
            assert!(full >= best - 1e-5, "({x0}, {y0}, {size}): {full} below the exhaustive {best}");
            assert!(best > 0.9, "({x0}, {y0}, {size}): a copy correlates {best}");
            checked += 1;
        }
        let other = thumb(&scene(64, 0.0, 0.0, 1.0, 2.9));
        assert!(aligned_correlation(&original, &other) <= exhaustive(&original, &other) + 0.05);
        assert_eq!(checked, 5);
    }

    #[test]
    fn a_pair_ranking_far_below_the_floor_stops_at_its_ranking() {
        let thumb = |img: &[u8]| grey_thumbnail(&crate::dedupe::autoencoder::downsample_to_input(img, 64));
        let original = thumb(&scene(64, 0.0, 0.0, 1.0, 0.3));
        let mut stopped = 0;
        for seed in [1.3f32, 2.1, 2.9, 4.4] {
            let other = thumb(&scene(64, 0.0, 0.0, 1.0, seed));
            let ranking = ranked_best(&original, &other);
            if ranking < RANK_FROM {
                // Not compared on the fine grid: the result is the ranking's own.
                assert_eq!(aligned_correlation(&original, &other), ranking, "seed {seed}");
                stopped += 1;
            }
        }
        assert!(stopped >= 3, "only {stopped} of 4 other scenes stopped at the ranking");
        let copy = thumb(&scene(64, 0.06, 0.02, 0.92, 0.3));
        assert!(ranked_best(&original, &copy) >= RANK_FROM, "a cropped copy must go on to the fine grid");
        assert!(aligned_correlation(&original, &copy) > ranked_best(&original, &copy) - 0.05);
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
        let thumb = |img: &[u8]| grey_thumbnail(&crate::dedupe::autoencoder::downsample_to_input(img, 64));
        let (t0, t1, t2) = (thumb(&original), thumb(&copy), thumb(&other));
        let plain = {
            let whole = Sampling::<GRID>::of(&w(1.0, 0.0, 0.0));
            dot(whole.sample(&grey_levels(&t0)).as_flattened(), whole.sample(&grey_levels(&t1)).as_flattened())
        };
        let aligned = aligned_correlation(&t0, &t1);
        assert!(aligned > 0.95 && aligned > plain, "aligned {aligned}, unaligned {plain}");
        assert!(aligned_correlation(&t0, &t2) < 0.8, "another scene: {}", aligned_correlation(&t0, &t2));
        // The check's path: the coarse first look, the full search when it reaches SEARCH_FROM.
        let checked = window_correlation(&t0, &t1, &proposed_alignments(&hashes, 0, 1, 8));
        assert!(checked >= aligned, "checked {checked}, aligned {aligned}");
        let other = window_correlation(&t0, &t2, &proposed_alignments(&hashes, 0, 2, 8));
        assert!(other < 0.8, "another scene: {other}");
    }
}
