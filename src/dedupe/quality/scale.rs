//! The evaluation at scale: every photo of a large real set (e.g. Tiny ImageNet's 100,000) plus
//! edited copies of a few thousand of them, run through the stage's own path (decode, crop, the
//! autoencoder trained on the whole set, exact search, clusters). It scores the removals
//! themselves, per radius and cluster rule, beside pHash clustered the same way. Just over 600
//! lines with its tests, and one idea: the evaluation's run (the set, its labels and the report are
//! scale_set.rs, scale_truth.rs and scale_report.rs).
//!
//! Labels. A removal is correct when the removed image and its keeper show the same photo: one
//! source photo's original and planted copies, or two originals the set already holds twice. The
//! latter are found without either hash deciding: among the pairs either hash calls near at its
//! largest radius, two originals whose 32x32 inputs differ by at most `same_photo_mad` grey levels
//! on average (mean absolute difference) are one photo. Recall counts the planted copies only
//! (the removals the labels fully know), so the already-present copies cannot flatter it.
//!
//! This file runs the hashes and scores their curves ([`evaluate`]); the set is built in
//! scale_set.rs, labelled and scored in scale_truth.rs ([`Truth`], [`score`]), and the report written
//! in scale_report.rs.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

pub use super::scale_set::ScaleSet;
pub use super::scale_truth::{score, Score, Truth};
use crate::dedupe::autoencoder::Autoencoder;
use crate::dedupe::clusters::{clusters_by, exact_groups, Cluster, ClusterRule};
use crate::dedupe::hash::Code128;
use crate::dedupe::index::{multi_index_pairs, NearPair};
use crate::dedupe::phash::PhashCheck;
use crate::dedupe::windows::{
    grey_thumbnail, proposed_alignments, window_correlation, window_correlations, window_distance, Thumbnails,
    WindowPair,
};
use crate::dedupe::DedupeConfig;

/// Settings of the evaluation at scale.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ScaleSettings {
    /// Photos that get edited copies, spread evenly over the set.
    pub planted: usize,
    /// Edited copies of each of them.
    pub copies: usize,
    /// Radii 0..=this are scored for the autoencoder (of 128 bits) and pHash (of 64).
    pub max_radius: u32,
    pub phash_max_radius: u32,
    /// Two originals at most this far apart (mean absolute difference of their 32x32 inputs, grey
    /// levels) are one photo held twice.
    pub same_photo_mad: f64,
    /// The radius at which removals are broken down by the images' detail.
    pub detail_radius: u32,
    pub seed: u64,
    /// Use at most this many photos (0: all).
    pub limit: usize,
    /// The crop route's window pHash radii and correlation floors scored (besides the configured).
    pub window_radii: &'static [u32],
    pub correlations: &'static [f64],
}

/// One hash under one cluster rule, over radii.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleCurve {
    pub method: String,
    pub rule: ClusterRule,
    pub scores: Vec<Score>,
}

/// Pairs of images of different true groups within each radius, per pair of distinct images.
#[derive(Debug, Clone, Serialize)]
pub struct PairRate {
    pub method: String,
    /// By radius: false pairs, and false pairs per distinct pair.
    pub false_pairs: Vec<u64>,
    pub rate: Vec<f64>,
}

/// Removals at `detail_radius` (around keepers, autoencoder) whose smaller signal (detail, bits
/// set) lies below `below` and at or above the row before's.
#[derive(Debug, Clone, Serialize)]
pub struct DetailRow {
    pub below: f32,
    pub images: u64,
    pub correct: u64,
    pub false_removals: u64,
}

/// Images and removals binned by `value` (a removal by the smaller value of removed and keeper).
fn by_signal(value: &[f32], bounds: &[f32], clusters: &[Cluster], truth: &Truth) -> Vec<DetailRow> {
    let mut rows: Vec<DetailRow> =
        bounds.iter().map(|&below| DetailRow { below, images: 0, correct: 0, false_removals: 0 }).collect();
    let bin = |d: f32| bounds.iter().position(|&b| d < b).unwrap_or(bounds.len() - 1);
    for &d in value {
        rows[bin(d)].images += 1;
    }
    for c in clusters {
        for &m in c.members.iter().filter(|&&m| m != c.kept) {
            let row = &mut rows[bin(value[m as usize].min(value[c.kept as usize]))];
            if truth.group[m as usize] == truth.group[c.kept as usize] {
                row.correct += 1;
            } else {
                row.false_removals += 1;
            }
        }
    }
    rows
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    pub input: String,
    pub settings: ScaleSettings,
    pub photos: usize,
    pub images: usize,
    pub planted_photos: usize,
    pub unreadable: Vec<(String, String)>,
    pub existing_copy_pairs: usize,
    pub distinct_pairs: f64,
    pub curves: Vec<ScaleCurve>,
    pub pair_rates: Vec<PairRate>,
    pub detail: Vec<DetailRow>,
    pub bits_set: Vec<DetailRow>,
    /// The crop route's candidates by window distance and correlation, true and false.
    pub window_candidates: Vec<WindowRow>,
    /// The configured stage's curve (the method name of the curve the defaults pick).
    pub configured: String,
    pub configured_radius: u32,
    pub timings_s: HashMap<&'static str, f64>,
}

/// Window pairs (the crop route's candidates) at one window distance: per correlation band
/// (below each of [`CORRELATION_BANDS`]), pairs of one true group and of two.
#[derive(Debug, Clone, Serialize)]
pub struct WindowRow {
    pub distance: u32,
    pub true_pairs: Vec<u64>,
    pub false_pairs: Vec<u64>,
}

/// Upper bounds of the correlation bands in [`WindowRow`].
pub const CORRELATION_BANDS: [f32; 9] = [0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.96, 0.97, f32::INFINITY];

/// The name of the curve of the code with the pHash check at `t` bits and the crop route.
pub fn windows_method(t: u32, window_radius: u32, correlation: f64) -> String {
    format!("autoencoder + pHash check <= {t} + windows <= {window_radius}, correlation >= {correlation:.2}")
}

pub const AE: &str = "autoencoder";
/// The crop route's window radii and correlation floors scored (besides the configured ones).
pub const WINDOW_RADII: [u32; 2] = [8, 10];
pub const CORRELATIONS: [f64; 4] = [0.93, 0.95, 0.96, 0.97];
pub const PHASH: &str = "pHash";
/// pHash radii tried as the check on the autoencoder's candidates (besides the configured one).
pub const CHECK_RADII: [u32; 5] = [6, 8, 10, 12, 14];

/// The name of the autoencoder's curve with the pHash check at `t` bits.
pub fn checked_method(t: u32) -> String {
    format!("autoencoder + pHash check <= {t}")
}

/// One hash's curves: its near pairs, scored at every radius up to `max_radius` under each rule,
/// with an optional pHash check on every removal.
struct CurveRun<'a> {
    method: String,
    searched: &'a Searched,
    max_radius: u32,
    check: Option<PhashCheck<'a>>,
    rules: &'static [ClusterRule],
}

/// The near pairs of a hash's distinct codes, every radius up to `max_radius`.
struct Searched {
    groups: Vec<Vec<u32>>,
    near: Vec<NearPair>,
}

/// `pairs_within` finds the distinct codes' near pairs (the configured search for the
/// autoencoder's codes, so that its curves are what the stage finds; exact for pHash's).
fn search(
    codes: &[Code128],
    max_radius: u32,
    scale: u32,
    pairs_within: impl Fn(&[Code128], u32) -> Vec<NearPair>,
) -> Searched {
    let groups = exact_groups(codes);
    let distinct: Vec<Code128> = groups.iter().map(|g| codes[g[0] as usize]).collect();
    let mut near = pairs_within(&distinct, max_radius * scale);
    for p in &mut near {
        p.distance /= scale;
    }
    near.sort_by_key(|p| p.distance);
    Searched { groups, near }
}

impl Searched {
    fn within(&self, radius: u32) -> &[NearPair] {
        &self.near[..self.near.partition_point(|p| p.distance <= radius)]
    }

    /// Image pairs each standing for a near pair or an exact group member.
    fn image_pairs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let exact = self.groups.iter().flat_map(|g| g[1..].iter().map(move |&m| (g[0], m)));
        exact.chain(self.near.iter().map(|p| (self.groups[p.a as usize][0], self.groups[p.b as usize][0])))
    }

    /// Per radius, pairs of images of different true groups (that pass `same`, when given).
    fn false_pairs(&self, truth: &Truth, max_radius: u32, same: Option<&PhashCheck>) -> Vec<u64> {
        let mut by_distance = vec![0u64; max_radius as usize + 1];
        let g = |i: &u32| truth.group[*i as usize];
        let differing = |x: &u32, y: &u32| g(x) != g(y) && same.is_none_or(|c| c.same(*x, *y));
        for group in &self.groups {
            if same.is_some() {
                by_distance[0] += group
                    .iter()
                    .enumerate()
                    .map(|(i, x)| group[i + 1..].iter().filter(|y| differing(x, y)).count() as u64)
                    .sum::<u64>();
                continue;
            }
            let mut count: HashMap<u32, u64> = HashMap::new();
            for m in group {
                *count.entry(g(m)).or_default() += 1;
            }
            let s = group.len() as u64;
            by_distance[0] += s * (s - 1) / 2 - count.values().map(|c| c * (c - 1) / 2).sum::<u64>();
        }
        for p in &self.near {
            let (a, b) = (&self.groups[p.a as usize], &self.groups[p.b as usize]);
            by_distance[p.distance as usize] +=
                a.iter().map(|x| b.iter().filter(|y| differing(x, y)).count() as u64).sum::<u64>();
        }
        by_distance
            .iter()
            .scan(0, |sum, &c| {
                *sum += c;
                Some(*sum)
            })
            .collect()
    }
}

/// The autoencoder trained on a sample of the whole set (as the stage does), and every image's code.
fn train_codes(set: &ScaleSet, config: &DedupeConfig) -> Result<Vec<Code128>> {
    let device = config.device().map_err(anyhow::Error::msg)?;
    let picked = crate::dedupe::run::sample_rows(set.len(), config.ae_sample);
    let sample: Vec<u8> = picked.iter().flat_map(|&i| set.input(i as u32).iter().copied()).collect();
    let mut model = Autoencoder::new(device, config.ae_centre_images);
    let train = config.train_settings();
    model.train(&sample, &train, Some(&train.progress(picked.len())));
    Ok(model.codes(&set.small, config.threshold))
}

/// What every curve is scored with: the set, its labels, the autoencoder's codes and near pairs.
struct Scoring<'a> {
    set: &'a ScaleSet,
    config: &'a DedupeConfig,
    settings: &'a ScaleSettings,
    truth: &'a Truth,
    codes: &'a [Code128],
    ae: &'a Searched,
    distinct_pairs: f64,
    curves: Vec<ScaleCurve>,
    pair_rates: Vec<PairRate>,
}

/// The crop route's window pairs and each one's aligned correlation.
struct WindowPairs {
    pairs: Vec<WindowPair>,
    correlation: HashMap<(u32, u32), f32>,
    max_radius: u32,
}

impl Scoring<'_> {
    fn add_pair_rate(&mut self, method: String, false_pairs: Vec<u64>) {
        let rate = false_pairs.iter().map(|&f| f as f64 / self.distinct_pairs).collect();
        self.pair_rates.push(PairRate { method, false_pairs, rate });
    }

    /// The autoencoder and pHash under both cluster rules, and the autoencoder with the pHash
    /// check at each radius: removals scored at every radius, and false pairs per radius.
    fn hash_curves(&mut self, phash: &Searched) {
        let (set, settings) = (self.set, self.settings);
        const BOTH: &[ClusterRule] = &[ClusterRule::AroundKeeper, ClusterRule::SingleLinkage];
        let mut runs = vec![
            CurveRun {
                method: AE.into(),
                searched: self.ae,
                max_radius: settings.max_radius,
                check: None,
                rules: BOTH,
            },
            CurveRun {
                method: PHASH.into(),
                searched: phash,
                max_radius: settings.phash_max_radius,
                check: None,
                rules: BOTH,
            },
        ];
        // The autoencoder's candidates, each removal also within t bits of pHash of its keeper.
        let mut check_radii: Vec<u32> = CHECK_RADII.to_vec();
        check_radii.push(self.config.verify_phash_radius);
        check_radii.sort_unstable();
        check_radii.dedup();
        for t in check_radii {
            let check = Some(PhashCheck { hashes: &set.phash, radius: t });
            runs.push(CurveRun {
                method: checked_method(t),
                searched: self.ae,
                max_radius: settings.max_radius,
                check,
                rules: &[ClusterRule::AroundKeeper],
            });
        }
        for CurveRun { method, searched, max_radius, check, rules } in runs {
            let same = |a: u32, b: u32| check.is_none_or(|c| c.same(a, b));
            for &rule in rules {
                let scores: Vec<Score> = (0..=max_radius)
                    .into_par_iter()
                    .map(|r| {
                        score(
                            r,
                            &clusters_by(rule, set.len(), &searched.groups, searched.within(r), &set.pixels, &same),
                            self.truth,
                        )
                    })
                    .collect();
                self.curves.push(ScaleCurve { method: method.clone(), rule, scores });
            }
            let false_pairs = searched.false_pairs(self.truth, max_radius, check.as_ref());
            self.add_pair_rate(method, false_pairs);
        }
    }

    /// Pairs of images whose windows' pHashes are within the largest window radius scored, with
    /// their aligned correlation.
    fn window_pairs(&self) -> WindowPairs {
        let (set, settings) = (self.set, self.settings);
        let max_radius =
            settings.window_radii.iter().copied().chain([self.config.window_phash_radius]).max().unwrap_or(0);
        let pairs: Vec<WindowPair> = self.config.window_pairs(&set.windows, max_radius);
        let read = |ids: &[u32]| Ok(Thumbnails::gather(ids, |i| grey_thumbnail(set.input(i))));
        let correlation = window_correlations(&pairs, &set.windows, max_radius, self.config.check_batch, &read)
            .expect("thumbnails in memory");
        WindowPairs { pairs, correlation, max_radius }
    }

    /// The window pairs at each distance, true and false, by correlation band.
    fn window_candidates(&self, windows: &WindowPairs) -> Vec<WindowRow> {
        let group = &self.truth.group;
        (0..=windows.max_radius)
            .map(|d| {
                let mut row = WindowRow {
                    distance: d,
                    true_pairs: vec![0; CORRELATION_BANDS.len()],
                    false_pairs: vec![0; CORRELATION_BANDS.len()],
                };
                for p in windows.pairs.iter().filter(|p| p.distance == d) {
                    let c = windows.correlation[&(p.a, p.b)];
                    let band = CORRELATION_BANDS.iter().position(|&b| c < b).unwrap_or(CORRELATION_BANDS.len() - 1);
                    if group[p.a as usize] == group[p.b as usize] {
                        row.true_pairs[band] += 1;
                    } else {
                        row.false_pairs[band] += 1;
                    }
                }
                row
            })
            .collect()
    }

    /// The crop route (the code with the pHash check, or windows within `t` bits correlating at
    /// least `rho`) at every window radius and correlation floor scored.
    fn crop_route_curves(&mut self, windows: &WindowPairs) {
        let (config, settings) = (self.config, self.settings);
        let mut routes: Vec<(u32, f64)> =
            settings.window_radii.iter().flat_map(|&t| settings.correlations.iter().map(move |&c| (t, c))).collect();
        routes.push((config.window_phash_radius, config.window_min_correlation));
        routes.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        routes.dedup();
        let phash_check = PhashCheck { hashes: &self.set.phash, radius: config.verify_phash_radius };
        let code_route = self.ae.false_pairs(self.truth, settings.max_radius, Some(&phash_check));
        for (t, rho) in routes {
            self.crop_route_curve(windows, &phash_check, &code_route, t, rho);
        }
    }

    /// One crop route's curve and false pairs.
    fn crop_route_curve(
        &mut self,
        windows: &WindowPairs,
        phash_check: &PhashCheck,
        code_route: &[u64],
        t: u32,
        rho: f64,
    ) {
        let (set, settings, truth, codes, ae) = (self.set, self.settings, self.truth, self.codes, self.ae);
        let n = set.len();
        let thumb = |i: u32| grey_thumbnail(set.input(i));
        let correlation_of = |a: u32, b: u32| -> f32 {
            let key = (a.min(b), a.max(b));
            windows.correlation.get(&key).copied().unwrap_or_else(|| {
                let proposed = proposed_alignments(&set.windows, key.0, key.1, windows.max_radius);
                window_correlation(&thumb(key.0), &thumb(key.1), &proposed)
            })
        };
        let mut group_of = vec![0u32; n];
        for (g, members) in ae.groups.iter().enumerate() {
            for &m in members {
                group_of[m as usize] = g as u32;
            }
        }
        let passes_window =
            |a: u32, b: u32| window_distance(&set.windows, a, b) <= t && f64::from(correlation_of(a, b)) >= rho;
        let passing: Vec<&WindowPair> = windows
            .pairs
            .iter()
            .filter(|p| p.distance <= t && f64::from(windows.correlation[&(p.a, p.b)]) >= rho)
            .collect();
        let extra: Vec<NearPair> = passing
            .iter()
            .map(|p| (group_of[p.a as usize], group_of[p.b as usize]))
            .filter(|(a, b)| a != b)
            .map(|(a, b)| NearPair {
                a: a.min(b),
                b: a.max(b),
                distance: codes[p_first(&ae.groups, a)].hamming(&codes[p_first(&ae.groups, b)]),
            })
            .collect();
        let code_passes =
            |a: u32, b: u32, r: u32| codes[a as usize].hamming(&codes[b as usize]) <= r && phash_check.same(a, b);
        let scores: Vec<Score> = (0..=settings.max_radius)
            .into_par_iter()
            .map(|r| {
                let same = |a: u32, b: u32| code_passes(a, b, r) || passes_window(a, b);
                let mut near: Vec<NearPair> = ae.within(r).to_vec();
                near.extend_from_slice(&extra);
                score(r, &clusters_by(ClusterRule::AroundKeeper, n, &ae.groups, &near, &set.pixels, &same), truth)
            })
            .collect();
        let method = windows_method(phash_check.radius, t, rho);
        self.curves.push(ScaleCurve { method: method.clone(), rule: ClusterRule::AroundKeeper, scores });
        // False pairs: the code route's, plus the window route's that the code route lacks.
        let false_pairs: Vec<u64> = (0..=settings.max_radius)
            .map(|r| {
                code_route[r as usize]
                    + passing
                        .iter()
                        .filter(|p| truth.group[p.a as usize] != truth.group[p.b as usize])
                        .filter(|p| !code_passes(p.a, p.b, r))
                        .count() as u64
            })
            .collect();
        self.add_pair_rate(method, false_pairs);
    }

    /// The name of the curve the configuration runs.
    fn configured_method(&self) -> String {
        let config = self.config;
        if config.windows {
            windows_method(config.verify_phash_radius, config.window_phash_radius, config.window_min_correlation)
        } else if config.verify == crate::dedupe::Verify::Phash {
            checked_method(config.verify_phash_radius)
        } else {
            AE.to_owned()
        }
    }

    /// Removals at one radius by two cheap signals of a low-content image: is one behind the
    /// false ones? The detail of the less detailed image of removed and keeper, and the fewer bits
    /// set of their two codes.
    fn by_signals(&self) -> (Vec<DetailRow>, Vec<DetailRow>) {
        let (set, settings) = (self.set, self.settings);
        let detail = crate::dedupe::autoencoder::detail(&set.small);
        let radius = settings.detail_radius.min(settings.max_radius);
        let always = |_: u32, _: u32| true;
        let clusters = clusters_by(
            ClusterRule::AroundKeeper,
            set.len(),
            &self.ae.groups,
            self.ae.within(radius),
            &set.pixels,
            &always,
        );
        let rows = by_signal(&detail, &[4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, f32::INFINITY], &clusters, self.truth);
        let bits_set: Vec<f32> =
            self.codes.iter().map(|c| (c.0[0].count_ones() + c.0[1].count_ones()) as f32).collect();
        let bit_rows =
            by_signal(&bits_set, &[8.0, 16.0, 24.0, 32.0, 40.0, 48.0, 64.0, f32::INFINITY], &clusters, self.truth);
        (rows, bit_rows)
    }
}

/// Runs the evaluation: trains the autoencoder on the whole set (as the stage does), hashes,
/// searches, clusters at every radius under both rules, and scores.
pub fn evaluate(input: &Path, set: &ScaleSet, config: &DedupeConfig, settings: &ScaleSettings) -> Result<ScaleReport> {
    let mut timings = HashMap::new();
    let started = std::time::Instant::now();
    let codes = train_codes(set, config)?;
    timings.insert("model_and_codes", started.elapsed().as_secs_f64());

    let started = std::time::Instant::now();
    let ae = search(&codes, settings.max_radius, 1, |distinct, radius| config.code_pairs(distinct, radius));
    timings.insert("search_autoencoder", started.elapsed().as_secs_f64());
    let started = std::time::Instant::now();
    // pHash's 64 bits, written twice into a 128-bit code: distances double, the search is exact.
    let doubled: Vec<Code128> = set.phash.iter().map(|&h| Code128([h, h])).collect();
    let phash = search(&doubled, settings.phash_max_radius, 2, multi_index_pairs);
    timings.insert("search_phash", started.elapsed().as_secs_f64());

    let started = std::time::Instant::now();
    let candidates: Vec<(u32, u32)> = ae.image_pairs().chain(phash.image_pairs()).collect();
    let truth = Truth::new(set, &candidates, settings.same_photo_mad);
    let distinct_pairs = truth.distinct_pairs();
    let mut scoring = Scoring {
        set,
        config,
        settings,
        truth: &truth,
        codes: &codes,
        ae: &ae,
        distinct_pairs,
        curves: Vec::new(),
        pair_rates: Vec::new(),
    };
    scoring.hash_curves(&phash);
    let window_started = std::time::Instant::now();
    let windows = scoring.window_pairs();
    timings.insert("windows_pairs_and_correlation", window_started.elapsed().as_secs_f64());
    let window_candidates = scoring.window_candidates(&windows);
    scoring.crop_route_curves(&windows);
    let configured = scoring.configured_method();
    let (detail, bits_set) = scoring.by_signals();
    timings.insert("cluster_and_score", started.elapsed().as_secs_f64());

    Ok(ScaleReport {
        input: input.display().to_string(),
        settings: *settings,
        photos: set.planted.len(),
        images: set.len(),
        planted_photos: set.planted.iter().filter(|&&p| p).count(),
        unreadable: set.unreadable.clone(),
        existing_copy_pairs: truth.existing_pairs,
        distinct_pairs,
        curves: scoring.curves,
        pair_rates: scoring.pair_rates,
        detail,
        bits_set,
        window_candidates,
        configured,
        configured_radius: config.radius,
        timings_s: timings,
    })
}

/// A group's first image.
fn p_first(groups: &[Vec<u32>], g: u32) -> usize {
    groups[g as usize][0] as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original_image_of(group: &[u32], i: usize) -> u32 {
        group.iter().position(|&x| x == group[i]).unwrap() as u32
    }

    /// Each group's first image is its original; the others are copies of the first edit kind.
    fn truth(group: Vec<u32>, planted: Vec<bool>) -> Truth {
        let photo = group.clone();
        let mut size = vec![0; planted.len()];
        for &g in &group {
            size[g as usize] += 1;
        }
        let original_image = group.iter().map(|&g| group.iter().position(|&x| x == g).unwrap() as u32).collect();
        let kind = (0..group.len()).map(|i| (original_image_of(&group, i) != i as u32).then_some(0u8)).collect();
        Truth { group, photo, size, planted, existing_pairs: 0, kind, original_image }
    }

    #[test]
    fn removals_are_scored_against_their_keepers() {
        // Photo 0 planted with two copies (images 0, 1, 2); photos 1, 2, 3 single (images 3, 4, 5).
        let t = truth(vec![0, 0, 0, 1, 2, 3], vec![true, false, false, false]);
        // One copy found with its original; the other copy kept alone; image 4 wrongly removed under 3.
        let clusters = vec![
            Cluster { kept: 0, members: vec![0, 1] },
            Cluster { kept: 2, members: vec![2] },
            Cluster { kept: 3, members: vec![3, 4] },
            Cluster { kept: 5, members: vec![5] },
        ];
        let s = score(7, &clusters, &t);
        assert_eq!((s.removed, s.correct, s.false_removals), (2, 1, 1));
        assert_eq!((s.precision, s.recall), (0.5, 0.5));
        assert_eq!((s.photos_lost, s.largest_mixed_cluster, s.mixed_clusters), (1, 2, 1));
        assert!((s.photos_lost_fraction - 0.25).abs() < 1e-12);
        // Everything of photo 0 together, the rest alone: perfect.
        let clusters = vec![
            Cluster { kept: 1, members: vec![0, 1, 2] },
            Cluster { kept: 3, members: vec![3] },
            Cluster { kept: 4, members: vec![4] },
            Cluster { kept: 5, members: vec![5] },
        ];
        let s = score(7, &clusters, &t);
        assert_eq!((s.precision, s.recall, s.photos_lost, s.largest_mixed_cluster), (1.0, 1.0, 0, 0));
        assert_eq!(t.distinct_pairs(), 15.0 - 3.0);
    }

    #[test]
    fn false_pairs_count_images_of_different_photos_by_radius() {
        // Exact groups {0, 1} (photos 0, 1) and {2} (photo 0); a near pair between them at 3.
        let t = truth(vec![0, 1, 0], vec![false, false]);
        let searched = Searched { groups: vec![vec![0, 1], vec![2]], near: vec![NearPair { a: 0, b: 1, distance: 3 }] };
        // Radius 0: (0, 1) differ; radius 3 adds (1, 2); (0, 2) is one photo.
        assert_eq!(searched.false_pairs(&t, 4, None), vec![1, 1, 1, 2, 2]);
        assert_eq!(searched.within(2).len(), 0);
        assert_eq!(searched.within(3).len(), 1);
    }
}
