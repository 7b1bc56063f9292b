//! From codes to clusters: exact collisions grouped in one pass over a hash map (the paper's
//! linear-time semantic hashing), near pairs of the distinct codes joined by union-find, and the
//! rule that keeps one image per cluster.

use std::collections::HashMap;

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

/// Clusters of images: exact groups, joined wherever a near pair links two groups'
/// representatives (`near` indexes `representatives`).
pub fn cluster(n: usize, groups: &[Vec<u32>], near: &[NearPair]) -> Vec<Vec<u32>> {
    let mut sets = UnionFind::new(n);
    for group in groups {
        for &member in &group[1..] {
            sets.union(group[0], member);
        }
    }
    for pair in near {
        sets.union(groups[pair.a as usize][0], groups[pair.b as usize][0]);
    }
    sets.sets()
}

/// The image a cluster keeps: the one with the most source pixels (the best copy), the first
/// in input order among equals.
pub fn keeper(members: &[u32], source_pixels: &[u64]) -> u32 {
    *members
        .iter()
        .min_by_key(|&&i| (std::cmp::Reverse(source_pixels[i as usize]), i))
        .expect("a cluster has members")
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
        let clusters = cluster(5, &groups, &near);
        assert_eq!(clusters, vec![vec![0, 1, 2, 3], vec![4]]);
    }

    #[test]
    fn keeper_takes_the_largest_source_then_the_first() {
        let pixels = [100, 400, 400, 50];
        assert_eq!(keeper(&[0, 1, 2, 3], &pixels), 1);
        assert_eq!(keeper(&[3, 0], &pixels), 0);
    }
}
