//! The evaluation at scale's labels and its score ([`super::scale`]): which images show one photo
//! ([`Truth`]: a photo's original and planted copies, and two originals within `same_photo_mad`
//! of each other), and one clustering's removals scored against them ([`score`]).

use std::collections::HashMap;

use rayon::prelude::*;
use serde::Serialize;

use super::labelled::EditKind;
use super::scale_set::ScaleSet;
use crate::dedupe::clusters::{Cluster, UnionFind};

/// Mean absolute difference of two inputs, grey levels.
fn mad(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as i32 - y as i32).unsigned_abs() as u64).sum::<u64>() as f64 / a.len() as f64
}

/// True groups: photos, merged where two originals are one photo held twice.
pub struct Truth {
    /// Per image, its true group and its source photo.
    pub group: Vec<u32>,
    pub photo: Vec<u32>,
    /// Per group: images, and whether it holds a planted photo.
    pub size: Vec<u32>,
    pub planted: Vec<bool>,
    /// Pairs of originals found to be one photo.
    pub existing_pairs: usize,
    /// Per image: its edit kind's position in [`EditKind::ALL`] (None: an original), and the
    /// image of its photo's original.
    pub kind: Vec<Option<u8>>,
    pub original_image: Vec<u32>,
}

impl Truth {
    /// `candidates`: image pairs to check (those the hashes call near at their largest radius).
    pub fn new(set: &ScaleSet, candidates: &[(u32, u32)], same_photo_mad: f64) -> Self {
        let photos = set.planted.len();
        let mut photo_pairs: Vec<(u32, u32)> = candidates
            .iter()
            .map(|&(a, b)| {
                let (pa, pb) = (set.photo[a as usize], set.photo[b as usize]);
                (pa.min(pb), pa.max(pb))
            })
            .filter(|(a, b)| a != b)
            .collect();
        photo_pairs.par_sort_unstable();
        photo_pairs.dedup();
        let same: Vec<(u32, u32)> = photo_pairs
            .into_par_iter()
            .filter(|&(a, b)| {
                mad(set.input(set.original[a as usize]), set.input(set.original[b as usize])) <= same_photo_mad
            })
            .collect();
        let mut sets = UnionFind::new(photos);
        for &(a, b) in &same {
            sets.union(a, b);
        }
        let mut id_of_root: HashMap<u32, u32> = HashMap::new();
        let photo_group: Vec<u32> = (0..photos as u32)
            .map(|p| {
                let root = sets.find(p);
                let next = id_of_root.len() as u32;
                *id_of_root.entry(root).or_insert(next)
            })
            .collect();
        let groups = id_of_root.len();
        let mut size = vec![0u32; groups];
        let mut planted = vec![false; groups];
        let group: Vec<u32> = set.photo.iter().map(|&p| photo_group[p as usize]).collect();
        for &g in &group {
            size[g as usize] += 1;
        }
        for (p, &g) in photo_group.iter().enumerate() {
            planted[g as usize] |= set.planted[p];
        }
        let kind = set
            .kind
            .iter()
            .map(|k| k.map(|k| EditKind::ALL.iter().position(|&x| x == k).expect("a known kind") as u8))
            .collect();
        let original_image = set.photo.iter().map(|&p| set.original[p as usize]).collect();
        Self { group, photo: set.photo.clone(), size, planted, existing_pairs: same.len(), kind, original_image }
    }

    /// Pairs of images of different true groups.
    pub(super) fn distinct_pairs(&self) -> f64 {
        let n = self.group.len() as f64;
        n * (n - 1.0) / 2.0 - self.size.iter().map(|&s| s as f64 * (s as f64 - 1.0) / 2.0).sum::<f64>()
    }
}

/// The removals of one clustering, scored.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub radius: u32,
    pub removed: u64,
    pub correct: u64,
    /// Correct removals of an original under another original (a photo the set already held twice).
    pub correct_existing: u64,
    pub precision: f64,
    /// Of the planted copies' removals (per planted group, its images less one).
    pub recall: f64,
    /// Removed images whose keeper shows another photo.
    pub false_removals: u64,
    /// True groups no image of which is kept, and their share of all true groups.
    pub photos_lost: u64,
    pub photos_lost_fraction: f64,
    /// The largest cluster holding more than one true group (0 when none does), and their count.
    pub largest_mixed_cluster: usize,
    pub mixed_clusters: usize,
    pub largest_cluster: usize,
    /// Per edit kind (in [`EditKind::ALL`]'s order): planted copies of that kind in one cluster
    /// with their original, and their share.
    pub found_by_kind: Vec<u64>,
    pub recall_by_kind: Vec<f64>,
}

/// Scores one clustering against the truth.
pub fn score(radius: u32, clusters: &[Cluster], truth: &Truth) -> Score {
    let groups = truth.size.len();
    let mut kept_in_group = vec![false; groups];
    let mut correct_in_planted = 0u64;
    let (mut removed, mut correct, mut correct_existing) = (0u64, 0u64, 0u64);
    let (mut largest_mixed, mut mixed, mut largest) = (0, 0, 0);
    for c in clusters {
        let kg = truth.group[c.kept as usize];
        kept_in_group[kg as usize] = true;
        largest = largest.max(c.members.len());
        let mut is_mixed = false;
        for &m in &c.members {
            let g = truth.group[m as usize];
            is_mixed |= g != kg;
            if m == c.kept {
                continue;
            }
            removed += 1;
            if g == kg {
                correct += 1;
                correct_in_planted += truth.planted[g as usize] as u64;
                correct_existing += (truth.photo[m as usize] != truth.photo[c.kept as usize]) as u64;
            }
        }
        if is_mixed {
            mixed += 1;
            largest_mixed = largest_mixed.max(c.members.len());
        }
    }
    let mut cluster_of = vec![u32::MAX; truth.group.len()];
    for (c, cluster) in clusters.iter().enumerate() {
        for &m in &cluster.members {
            cluster_of[m as usize] = c as u32;
        }
    }
    let mut found_by_kind = vec![0u64; EditKind::ALL.len()];
    let mut copies_by_kind = vec![0u64; EditKind::ALL.len()];
    for (i, kind) in truth.kind.iter().enumerate() {
        if let Some(k) = kind {
            copies_by_kind[*k as usize] += 1;
            found_by_kind[*k as usize] += (cluster_of[i] == cluster_of[truth.original_image[i] as usize]) as u64;
        }
    }
    let recall_by_kind = found_by_kind.iter().zip(&copies_by_kind).map(|(&f, &c)| f as f64 / c.max(1) as f64).collect();
    let planted_removals: u64 =
        truth.size.iter().zip(&truth.planted).filter(|(_, &p)| p).map(|(&s, _)| s as u64 - 1).sum();
    let photos_lost = kept_in_group.iter().filter(|&&k| !k).count() as u64;
    Score {
        radius,
        removed,
        correct,
        correct_existing,
        precision: if removed > 0 { correct as f64 / removed as f64 } else { 1.0 },
        recall: correct_in_planted as f64 / planted_removals.max(1) as f64,
        false_removals: removed - correct,
        photos_lost,
        photos_lost_fraction: photos_lost as f64 / groups as f64,
        largest_mixed_cluster: largest_mixed,
        mixed_clusters: mixed,
        largest_cluster: largest,
        found_by_kind,
        recall_by_kind,
    }
}
