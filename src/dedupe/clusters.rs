//! From codes to clusters: exact collisions grouped in one pass over a hash map (the paper's
//! linear-time semantic hashing), then near pairs of the distinct codes grouped by one of two
//! rules ([`ClusterRule`]), each cluster keeping one image.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::hash::Code128;
use super::index::NearPair;

/// Images sharing one code, in input order. Groups are ordered by their first image.
pub fn exact_groups(codes: &[Code128]) -> Vec<Vec<u32>> {
    let mut slot: HashMap<Code128, usize> = HashMap::with_capacity(codes.len());
    let mut groups: Vec<Vec<u32>> = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let g = *slot.entry(*code).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i as u32);
    }
    groups
}

/// Disjoint sets with path halving and union by size.
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        Self { parent: (0..n as u32).collect(), size: vec![1; n] }
    }

    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    pub fn union(&mut self, a: u32, b: u32) {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        if self.size[ra as usize] < self.size[rb as usize] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb as usize] = ra;
        self.size[ra as usize] += self.size[rb as usize];
    }

    /// Every set, members in increasing order, sets ordered by their smallest member.
    pub fn sets(&mut self) -> Vec<Vec<u32>> {
        let n = self.parent.len();
        let mut slot: HashMap<u32, usize> = HashMap::new();
        let mut sets: Vec<Vec<u32>> = Vec::new();
        for i in 0..n as u32 {
            let root = self.find(i);
            let s = *slot.entry(root).or_insert_with(|| {
                sets.push(Vec::new());
                sets.len() - 1
            });
            sets[s].push(i);
        }
        sets
    }
}

/// How near pairs become clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterRule {
    /// Every removed image lies within the radius of the image kept for it ([`around_keepers`]).
    AroundKeeper,
    /// Union-find over the near pairs: a chain of near pairs joins its two ends, however far
    /// apart they are ([`cluster`]).
    SingleLinkage,
}

/// One cluster: its members in increasing order and the one kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub kept: u32,
    pub members: Vec<u32>,
}

/// Clusters by `rule`, ordered by their smallest member; `source_pixels` picks the kept image.
/// `same(a, b)` is a second test every joined pair must pass (a check independent of the code,
/// e.g. pHash within a few bits): a candidate within the radius that fails it is not removed.
/// `|_, _| true` gives the code alone.
pub fn clusters_by(
    rule: ClusterRule,
    n: usize,
    groups: &[Vec<u32>],
    near: &[NearPair],
    source_pixels: &[u64],
    same: &(dyn Fn(u32, u32) -> bool + Sync),
) -> Vec<Cluster> {
    match rule {
        ClusterRule::AroundKeeper => around_keepers(n, groups, near, source_pixels, same),
        ClusterRule::SingleLinkage => cluster(n, groups, near, same)
            .into_iter()
            .map(|members| Cluster { kept: keeper(&members, source_pixels), members })
            .collect(),
    }
}

/// Clusters that do not chain. Images are visited best copy first (most source pixels, then input
/// order); each image not yet taken keeps itself and takes every untaken image of its own exact
/// group and of the groups whose code lies within the radius of its own, that passes `same` with
/// it: neighbours of a neighbour are not taken through it. So each removed image is within the
/// radius of its keeper and passed the check against the keeper itself. With a check that always
/// passes, whole groups are taken at once (the first image of a group to be visited is its best).
/// (`near` indexes `groups`, as [`cluster`]'s does.)
pub fn around_keepers(
    n: usize,
    groups: &[Vec<u32>],
    near: &[NearPair],
    source_pixels: &[u64],
    same: &(dyn Fn(u32, u32) -> bool + Sync),
) -> Vec<Cluster> {
    // Each group's neighbours (CSR).
    let mut starts = vec![0usize; groups.len() + 1];
    for p in near {
        starts[p.a as usize + 1] += 1;
        starts[p.b as usize + 1] += 1;
    }
    for g in 0..groups.len() {
        starts[g + 1] += starts[g];
    }
    let mut fill = starts.clone();
    let mut neighbours = vec![0u32; starts[groups.len()]];
    for p in near {
        for (from, to) in [(p.a, p.b), (p.b, p.a)] {
            neighbours[fill[from as usize]] = to;
            fill[from as usize] += 1;
        }
    }
    let mut group_of = vec![u32::MAX; n];
    for (g, members) in groups.iter().enumerate() {
        for &m in members {
            group_of[m as usize] = g as u32;
        }
    }
    // Each group's untaken members; taken ones are dropped as they go, so a group that is taken
    // whole costs one pass.
    let mut untaken: Vec<Vec<u32>> = groups.to_vec();
    let mut order: Vec<u32> = groups.iter().flatten().copied().collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(source_pixels[i as usize]), i));
    let mut taken = vec![false; n];
    let mut clusters = Vec::new();
    for k in order {
        if taken[k as usize] {
            continue;
        }
        let g = group_of[k as usize] as usize;
        let mut members = Vec::new();
        for h in std::iter::once(g).chain(neighbours[starts[g]..starts[g + 1]].iter().map(|&h| h as usize)) {
            untaken[h].retain(|&m| {
                let take = m == k || same(k, m);
                if take {
                    taken[m as usize] = true;
                    members.push(m);
                }
                !take
            });
        }
        members.sort_unstable();
        clusters.push(Cluster { kept: k, members });
    }
    clusters.sort_by_key(|c| c.members[0]);
    clusters
}

/// Clusters of images: exact groups, joined wherever a near pair links two groups'
/// representatives (`near` indexes `representatives`), each link kept only if it passes `same`.
pub fn cluster(
    n: usize,
    groups: &[Vec<u32>],
    near: &[NearPair],
    same: &(dyn Fn(u32, u32) -> bool + Sync),
) -> Vec<Vec<u32>> {
    let mut sets = UnionFind::new(n);
    for group in groups {
        for &member in &group[1..] {
            if same(group[0], member) {
                sets.union(group[0], member);
            }
        }
    }
    for pair in near {
        let (a, b) = (groups[pair.a as usize][0], groups[pair.b as usize][0]);
        if same(a, b) {
            sets.union(a, b);
        }
    }
    sets.sets()
}

/// The image a cluster keeps: the one with the most source pixels (the best copy), the first
/// in input order among equals.
pub fn keeper(members: &[u32], source_pixels: &[u64]) -> u32 {
    *members.iter().min_by_key(|&&i| (std::cmp::Reverse(source_pixels[i as usize]), i)).expect("a cluster has members")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_groups_collect_equal_codes_in_input_order() {
        let c = |x| Code128([x, 0]);
        let groups = exact_groups(&[c(5), c(1), c(5), c(2), c(1), c(5)]);
        assert_eq!(groups, vec![vec![0, 2, 5], vec![1, 4], vec![3]]);
    }

    #[test]
    fn near_pairs_join_groups_transitively() {
        // Groups {0, 3}, {1}, {2}, {4}; near pairs link group 0 with 1, and group 1 with 2.
        let groups = vec![vec![0, 3], vec![1], vec![2], vec![4]];
        let near = [NearPair { a: 0, b: 1, distance: 2 }, NearPair { a: 1, b: 2, distance: 3 }];
        let clusters = cluster(5, &groups, &near, &|_, _| true);
        assert_eq!(clusters, vec![vec![0, 1, 2, 3], vec![4]]);
    }

    #[test]
    fn around_keepers_do_not_chain() {
        // Codes A = 0, B = 3 bits from A, C = 3 bits from B and 6 from A; radius 4: pairs A-B, B-C.
        // A has the most pixels, so it keeps first and takes B; C is not within 4 of A and keeps
        // itself. Single linkage puts all three together.
        let groups = vec![vec![0], vec![1], vec![2]];
        let near = [NearPair { a: 0, b: 1, distance: 3 }, NearPair { a: 1, b: 2, distance: 3 }];
        let pixels = [900, 400, 400];
        let around = clusters_by(ClusterRule::AroundKeeper, 3, &groups, &near, &pixels, &|_, _| true);
        assert_eq!(around, vec![Cluster { kept: 0, members: vec![0, 1] }, Cluster { kept: 2, members: vec![2] }]);
        let linked = clusters_by(ClusterRule::SingleLinkage, 3, &groups, &near, &pixels, &|_, _| true);
        assert_eq!(linked, vec![Cluster { kept: 0, members: vec![0, 1, 2] }]);
        // When B is the best copy it keeps, and both ends are within the radius of it.
        let around = clusters_by(ClusterRule::AroundKeeper, 3, &groups, &near, &[100, 900, 100], &|_, _| true);
        assert_eq!(around, vec![Cluster { kept: 1, members: vec![0, 1, 2] }]);
    }

    #[test]
    fn every_removed_image_is_within_the_radius_of_its_keeper() {
        // Random codes on a 20-bit cube, many exact groups, all pairs within 5 bits.
        let mut rng = crate::rng::SplitMix::new(11);
        let codes: Vec<Code128> = (0..400).map(|_| Code128([rng.next() & 0xFFFFF & rng.next(), 0])).collect();
        let groups = exact_groups(&codes);
        let distinct: Vec<Code128> = groups.iter().map(|g| codes[g[0] as usize]).collect();
        let radius = 5;
        let mut near = Vec::new();
        for a in 0..distinct.len() {
            for b in a + 1..distinct.len() {
                let distance = distinct[a].hamming(&distinct[b]);
                if distance <= radius {
                    near.push(NearPair { a: a as u32, b: b as u32, distance });
                }
            }
        }
        let pixels: Vec<u64> = (0..codes.len()).map(|_| rng.next() % 5).collect();
        let mut seen = vec![0; codes.len()];
        let clusters = clusters_by(ClusterRule::AroundKeeper, codes.len(), &groups, &near, &pixels, &|_, _| true);
        let mut worst_linked = 0;
        for c in &clusters {
            assert!(c.members.contains(&c.kept));
            for &m in &c.members {
                seen[m as usize] += 1;
                assert!(codes[m as usize].hamming(&codes[c.kept as usize]) <= radius, "{c:?}");
            }
        }
        assert!(seen.iter().all(|&s| s == 1), "every image in exactly one cluster");
        // Single linkage on the same pairs does chain (so the check above can fail).
        for c in clusters_by(ClusterRule::SingleLinkage, codes.len(), &groups, &near, &pixels, &|_, _| true) {
            for &m in &c.members {
                worst_linked = worst_linked.max(codes[m as usize].hamming(&codes[c.kept as usize]));
            }
        }
        assert!(worst_linked > radius, "{worst_linked}");
    }

    #[test]
    fn a_candidate_that_fails_the_check_against_its_keeper_is_not_removed() {
        // One exact group {0, 1, 2} and a near group {3}; image 0 is the best copy. The check
        // rejects 0-2 and 0-3 but passes 2-3: 0 keeps 1, and 2 (the next best) keeps 3.
        let groups = vec![vec![0, 1, 2], vec![3]];
        let near = [NearPair { a: 0, b: 1, distance: 2 }];
        let pixels = [900, 100, 500, 100];
        let fails = |a: u32, b: u32| matches!((a.min(b), a.max(b)), (0, 2) | (0, 3));
        let same = |a: u32, b: u32| !fails(a, b);
        let around = clusters_by(ClusterRule::AroundKeeper, 4, &groups, &near, &pixels, &same);
        assert_eq!(around, vec![Cluster { kept: 0, members: vec![0, 1] }, Cluster { kept: 2, members: vec![2, 3] }]);
        for c in &around {
            assert!(c.members.iter().all(|&m| m == c.kept || same(c.kept, m)));
        }
        // Without the check the best copy takes all four.
        let unchecked = clusters_by(ClusterRule::AroundKeeper, 4, &groups, &near, &pixels, &|_, _| true);
        assert_eq!(unchecked, vec![Cluster { kept: 0, members: vec![0, 1, 2, 3] }]);
        // Single linkage keeps only the links that pass: 0-1 (group), not 0-2 (group) nor 0-3 (near).
        let linked = clusters_by(ClusterRule::SingleLinkage, 4, &groups, &near, &pixels, &same);
        assert_eq!(
            linked,
            vec![
                Cluster { kept: 0, members: vec![0, 1] },
                Cluster { kept: 2, members: vec![2] },
                Cluster { kept: 3, members: vec![3] }
            ]
        );
    }

    #[test]
    fn keeper_takes_the_largest_source_then_the_first() {
        let pixels = [100, 400, 400, 50];
        assert_eq!(keeper(&[0, 1, 2, 3], &pixels), 1);
        assert_eq!(keeper(&[3, 0], &pixels), 0);
    }
}
