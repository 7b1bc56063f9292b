//! The data-copying test of Meehan, Chaudhuri and Dasgupta (AISTATS 2020, "A Non-Parametric Test
//! to Detect Data-Copying in Generative Models"): C_T.
//!
//! Each generated sample and each held-out real image (never trained on) gets its distance to the
//! nearest training image. A generator that copies puts its samples closer to the training set than
//! new real images are. The comparison is made cell by cell (k-means cells of the training set), so
//! that a generator cannot hide copying in one region behind underfitting in another: per cell the
//! Mann-Whitney U of the two sets of distances, as a z-score, and the z-scores averaged with each
//! cell's share of the held-out images as its weight. Cells with fewer than `min_per_cell` held-out
//! images or samples are left out, as the paper does. C_T well below 0: the samples are closer than
//! real images (copying); about 0: as close as real images; well above 0: farther (underfitting).
//!
//! Beside it, what a person reads at once: the share of samples whose nearest training image is a
//! near duplicate by the dedupe stage's check (pHash within `dedupe.verify_phash_radius` bits; its
//! other half, the autoencoder's code, needs a model trained on the set and is not used here).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::cells::Cells;
use super::search::{nearest, Neighbours, PixelRows, SearchError};

/// The test's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CopyTestSettings {
    /// k-means cells of the training set.
    pub cells: usize,
    /// A cell counts only with at least this many held-out images and this many samples.
    pub min_per_cell: usize,
    /// k-means is fitted on at most this many training images (spread over the set); 0 = all.
    pub kmeans_sample: usize,
    pub seed: u64,
    /// pHash bits (of 64) within which a sample and its nearest training image are near
    /// duplicates: dedupe's `verify_phash_radius`.
    pub phash_radius: u32,
}

impl Default for CopyTestSettings {
    fn default() -> Self {
        Self { cells: 20, min_per_cell: 20, kmeans_sample: 20_000, seed: 0, phash_radius: 8 }
    }
}

/// Below this C_T the verdict says copying, above its negative underfitting.
pub const VERDICT_Z: f64 = 3.0;

/// Square RGB images, packed (`side` x `side` x 3 bytes each).
#[derive(Debug, Clone, Copy)]
pub struct Images<'a> {
    pub pixels: &'a [u8],
    pub side: u32,
}

impl<'a> Images<'a> {
    pub fn rows(&self, what: &'static str) -> Result<PixelRows<'a>, SearchError> {
        PixelRows::new(what, self.pixels, (self.side * self.side * 3) as usize)
    }
}

/// One cell's line of the table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellRow {
    pub cell: usize,
    pub held_out: usize,
    pub generated: usize,
    /// The cell's share of the held-out images: its weight in C_T.
    pub held_out_share: f64,
    /// Whether the cell counts (enough of both).
    pub used: bool,
    /// Mann-Whitney U (pairs where the sample is the farther, ties half) and its z-score.
    pub u: Option<f64>,
    pub z: Option<f64>,
    pub median_distance_held_out: Option<f64>,
    pub median_distance_generated: Option<f64>,
}

/// Mean and median distance to the nearest training image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DistanceSummary {
    pub count: usize,
    pub mean: f64,
    pub median: f64,
}

/// What the test found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyTest {
    /// None when no cell had enough images of both sets.
    pub c_t: Option<f64>,
    pub verdict: String,
    pub cells: Vec<CellRow>,
    pub cells_used: usize,
    /// The held-out images in the cells that count, as a share of all held-out images.
    pub held_out_share_used: f64,
    pub training_images: usize,
    pub generated: DistanceSummary,
    pub held_out: DistanceSummary,
    /// Samples whose nearest training image is a near duplicate by pHash, and the same count for
    /// held-out images (what chance gives on this data).
    pub near_duplicates: usize,
    pub near_duplicate_share: f64,
    pub held_out_near_duplicate_share: f64,
    pub near_duplicate_rule: String,
    pub kmeans_iterations: usize,
    pub kmeans_fitted_on: usize,
    pub timings_s: Timings,
    /// Distances are the root mean square difference per value, pixels on a 0-1 scale.
    pub distance: String,
    #[serde(skip)]
    pub generated_neighbours: Option<Neighbours>,
    #[serde(skip)]
    pub held_out_neighbours: Option<Neighbours>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub neighbours: f64,
    pub cells: f64,
    pub phash: f64,
}

/// Mann-Whitney U of `a` against `b` (pairs with a's value the larger, ties counted half) and its
/// z-score under the hypothesis that both come from one distribution (normal approximation, no tie
/// correction). None when either is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    let (m, n) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a.iter().map(|&x| (x, true)).chain(b.iter().map(|&x| (x, false))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Ranks from 1, tied values sharing their average rank.
    let mut rank_sum_a = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_a += rank * all[i..=j].iter().filter(|v| v.1).count() as f64;
        i = j + 1;
    }
    let u = rank_sum_a - m * (m + 1.0) / 2.0;
    let z = (u - m * n / 2.0) / (m * n * (m + n + 1.0) / 12.0).sqrt();
    Some((u, z))
}

fn summary(distances: &[f64]) -> DistanceSummary {
    let mut sorted = distances.to_vec();
    sorted.sort_by(f64::total_cmp);
    DistanceSummary {
        count: sorted.len(),
        mean: sorted.iter().sum::<f64>() / sorted.len().max(1) as f64,
        median: median(&sorted).unwrap_or(f64::NAN),
    }
}

fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    (n > 0).then(|| if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 })
}

/// Per cell U and z, and C_T as their average weighted by the cell's held-out share.
pub fn cell_table(
    cells: usize,
    held_cells: &[usize],
    held: &[f64],
    gen_cells: &[usize],
    gen: &[f64],
    min_per_cell: usize,
) -> (Vec<CellRow>, Option<f64>) {
    let mut rows = Vec::with_capacity(cells);
    let (mut weighted, mut weights) = (0.0, 0.0);
    for cell in 0..cells {
        let pick = |of: &[usize], d: &[f64]| {
            let mut v: Vec<f64> = of.iter().zip(d).filter(|(c, _)| **c == cell).map(|(_, &x)| x).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let (h, g) = (pick(held_cells, held), pick(gen_cells, gen));
        let share = h.len() as f64 / held.len().max(1) as f64;
        let used = h.len() >= min_per_cell.max(1) && g.len() >= min_per_cell.max(1);
        let uz = if used { mann_whitney(&g, &h) } else { None };
        if let Some((_, z)) = uz {
            weighted += share * z;
            weights += share;
        }
        rows.push(CellRow {
            cell,
            held_out: h.len(),
            generated: g.len(),
            held_out_share: share,
            used,
            u: uz.map(|x| x.0),
            z: uz.map(|x| x.1),
            median_distance_held_out: median(&h),
            median_distance_generated: median(&g),
        });
    }
    (rows, (weights > 0.0).then(|| weighted / weights))
}

/// One line saying what C_T means for this generator.
pub fn verdict(c_t: Option<f64>) -> String {
    match c_t {
        None => "no cell holds enough held-out images and samples: ask for more samples or fewer cells".into(),
        Some(c) if c < -VERDICT_Z => format!(
            "C_T = {c:.2}: DATA-COPYING: samples are closer to their nearest training images than new real images are"
        ),
        Some(c) if c > VERDICT_Z => format!(
            "C_T = {c:.2}: no data-copying; samples are farther from the training images than new real images are (underfitting)"
        ),
        Some(c) => format!("C_T = {c:.2}: no sign of data-copying: samples are about as close to the training images as new real images"),
    }
}

/// Near duplicates by pHash: for each query, whether its pHash is within `radius` bits of its
/// nearest training image's.
fn phash_near(training: Images, queries: Images, neighbours: &Neighbours, radius: u32) -> Vec<bool> {
    let per = (training.side * training.side * 3) as usize;
    let nearest: Vec<u8> = (0..neighbours.len())
        .flat_map(|i| {
            let j = neighbours.nearest(i) as usize;
            training.pixels[j * per..(j + 1) * per].iter().copied()
        })
        .collect();
    let a = crate::dedupe::phash::phash_crops(queries.pixels, queries.side);
    let b = crate::dedupe::phash::phash_crops(&nearest, training.side);
    a.iter().zip(&b).map(|(x, y)| (x ^ y).count_ones() <= radius).collect()
}

/// The whole test: neighbours of the samples and of the held-out images, cells, C_T, near
/// duplicates. All three sets must have one side.
pub fn copy_test(
    training: Images,
    held_out: Images,
    generated: Images,
    settings: &CopyTestSettings,
) -> Result<CopyTest, SearchError> {
    let (t_rows, h_rows, g_rows) = (training.rows("training")?, held_out.rows("held-out")?, generated.rows("samples")?);
    let t = Instant::now();
    let gen_nn = nearest(t_rows, g_rows, 1)?;
    let held_nn = nearest(t_rows, h_rows, 1)?;
    let neighbours_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let cells = Cells::fit(t_rows, settings.cells, settings.kmeans_sample, settings.seed)?;
    let (gen_cells, held_cells) = (cells.cell_of(g_rows)?, cells.cell_of(h_rows)?);
    let (gen_d, held_d) = (gen_nn.nearest_distances(), held_nn.nearest_distances());
    let (rows, c_t) = cell_table(cells.count(), &held_cells, &held_d, &gen_cells, &gen_d, settings.min_per_cell);
    let cells_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let gen_near = phash_near(training, generated, &gen_nn, settings.phash_radius);
    let held_near = phash_near(training, held_out, &held_nn, settings.phash_radius);
    let phash_s = t.elapsed().as_secs_f64();
    let near = gen_near.iter().filter(|&&x| x).count();
    let share = |v: &[bool]| v.iter().filter(|&&x| x).count() as f64 / v.len().max(1) as f64;

    Ok(CopyTest {
        c_t,
        verdict: verdict(c_t),
        cells_used: rows.iter().filter(|r| r.used).count(),
        held_out_share_used: rows.iter().filter(|r| r.used).map(|r| r.held_out_share).sum(),
        cells: rows,
        training_images: t_rows.len(),
        generated: summary(&gen_d),
        held_out: summary(&held_d),
        near_duplicates: near,
        near_duplicate_share: share(&gen_near),
        held_out_near_duplicate_share: share(&held_near),
        near_duplicate_rule: format!(
            "pHash of the sample and of its nearest training image within {} bits of 64 (dedupe's verify_phash_radius)",
            settings.phash_radius
        ),
        kmeans_iterations: cells.iterations,
        kmeans_fitted_on: cells.fitted_on,
        timings_s: Timings { neighbours: neighbours_s, cells: cells_s, phash: phash_s },
        distance: "root mean square difference per value, pixels on a 0-1 scale, to the nearest training image".into(),
        generated_neighbours: Some(gen_nn),
        held_out_neighbours: Some(held_nn),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mann_whitney_counts_pairs_and_halves_ties() {
        // a = [1, 3], b = [2, 3]: pairs with a larger: (3 > 2) = 1, tie (3, 3) = 0.5.
        let (u, z) = mann_whitney(&[1.0, 3.0], &[2.0, 3.0]).unwrap();
        assert_eq!(u, 1.5);
        let expected = (1.5 - 2.0) / (4.0f64 * 5.0 / 12.0).sqrt();
        assert!((z - expected).abs() < 1e-12);
        // Every a below every b: U = 0, strongly negative z for large sets.
        let a: Vec<f64> = (0..50).map(f64::from).collect();
        let b: Vec<f64> = (100..150).map(f64::from).collect();
        let (u, z) = mann_whitney(&a, &b).unwrap();
        assert_eq!(u, 0.0);
        assert!(z < -8.0, "{z}");
    }

    #[test]
    fn cells_below_the_minimum_are_left_out_and_weights_are_held_out_shares() {
        // Cell 0: 3 held-out, 3 generated, all generated closer; cell 1: 1 held-out (skipped).
        let held_cells = [0, 0, 0, 1];
        let held = [0.5, 0.6, 0.7, 0.1];
        let gen_cells = [0, 0, 0, 1, 1];
        let gen = [0.1, 0.2, 0.3, 0.9, 0.9];
        let (rows, c_t) = cell_table(2, &held_cells, &held, &gen_cells, &gen, 2);
        assert!(rows[0].used && !rows[1].used);
        assert_eq!(rows[0].held_out_share, 0.75);
        assert_eq!(c_t, rows[0].z);
        assert!(c_t.unwrap() < 0.0);
    }
}
