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
}
