//! Near pairs of codes: an hnsw_rs graph over the codes with a true bit-Hamming distance, queried
//! for each code's nearest neighbours and filtered by radius; and the exact brute-force scan that
//! checks it.
//!
//! hnsw_rs's own `DistHamming` counts differing elements of the vectors, not bits, so on packed
//! u64 words it would say "0, 1 or 2"; [`BitHamming`] counts bits.

use anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::buckets::{bucket_order, bucket_starts};
use super::hash::Code128;

/// Hamming distance between two packed bit vectors of equal length.
#[derive(Debug, Clone, Copy, Default)]
pub struct BitHamming;

impl Distance<u64> for BitHamming {
    fn eval(&self, a: &[u64], b: &[u64]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum::<u32>() as f32
    }
}

/// Graph and search settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IndexParams {
    /// Links per node and layer (HNSW's M).
    pub max_connections: usize,
    /// Candidate list while building.
    pub ef_construction: usize,
    /// Neighbours asked for per query; pairs within the radius beyond these are found through
    /// the clusters' transitivity, or not at all.
    pub neighbours: usize,
    /// Candidate list while searching (at least `neighbours`).
    pub ef_search: usize,
}

/// Two codes within the radius: positions in the slice given, a < b.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NearPair {
    pub a: u32,
    pub b: u32,
    pub distance: u32,
}

/// Every pair of `codes` within `radius` that an HNSW search finds (codes should be distinct:
/// group exact collisions first, since k nearest neighbours cannot list a larger group).
pub fn index_pairs(codes: &[Code128], radius: u32, params: &IndexParams) -> Vec<NearPair> {
    if codes.len() < 2 {
        return Vec::new();
    }
    let layers = 16.min(((codes.len() as f64).ln().ceil() as usize).max(1));
    let hnsw: Hnsw<u64, BitHamming> =
        Hnsw::new(params.max_connections, codes.len(), layers, params.ef_construction, BitHamming);
    let items: Vec<(&[u64], usize)> = codes.iter().enumerate().map(|(i, c)| (&c.0[..], i)).collect();
    hnsw.parallel_insert_slice(&items);
    let k = params.neighbours.min(codes.len());
    let ef = params.ef_search.max(k);
    let mut pairs: Vec<NearPair> = codes
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, code)| {
            hnsw.search(&code.0, k, ef).into_iter().filter_map(move |n| {
                let j = n.d_id;
                let distance = n.distance as u32;
                (j != i && distance <= radius).then(|| NearPair { a: i.min(j) as u32, b: i.max(j) as u32, distance })
            })
        })
        .collect();
    pairs.par_sort_unstable();
    pairs.dedup();
    pairs
}

/// Every pair of `codes` within `radius`, exactly, by multi-index hashing (Norouzi et al. 2012):
/// the 128 bits are cut into m chunks; two codes at most `radius` apart differ in at most
/// `radius / m` bits in at least one chunk (pigeonhole), so each code is only compared with the
/// codes whose chunk k lies within that many bits of its own chunk k, for some k, read from one
/// table per chunk (codes ordered by chunk value). m is chosen by [`plan_chunks`].
pub fn multi_index_pairs(codes: &[Code128], radius: u32) -> Vec<NearPair> {
    multi_index_pairs_with(codes, radius, plan_chunks(codes, radius).chunks)
}

/// Chunk k of m covers bits [128 k / m, 128 (k + 1) / m).
fn chunk_bounds(chunks: usize) -> Vec<(u32, u32)> {
    (0..chunks).map(|k| ((128 * k / chunks) as u32, (128 * (k + 1) / chunks) as u32)).collect()
}

fn chunk_value(c: &Code128, (lo, hi): (u32, u32)) -> usize {
    let word = ((c.0[1] as u128) << 64) | c.0[0] as u128;
    ((word >> lo) & ((1u128 << (hi - lo)) - 1)) as usize
}

/// One table per chunk: each value's start, and the code indices ordered by the chunk's value.
fn chunk_tables(codes: &[Code128], bounds: &[(u32, u32)]) -> Vec<(Vec<u32>, Vec<u32>)> {
    bounds.par_iter().map(|&b| bucket_order(1 << (b.1 - b.0), codes.len(), |i| chunk_value(&codes[i], b))).collect()
}

/// Where each value of chunk `b` starts in the codes ordered by that chunk ([`bucket_starts`]).
fn chunk_starts(codes: &[Code128], b: (u32, u32)) -> Vec<u32> {
    bucket_starts(1 << (b.1 - b.0), codes.len(), |i| chunk_value(&codes[i], b))
}

/// [`multi_index_pairs`] with a given number of chunks (any m in 1..=128 is exact; speed varies).
pub fn multi_index_pairs_with(codes: &[Code128], radius: u32, chunks: usize) -> Vec<NearPair> {
    let bounds = chunk_bounds(chunks);
    let flips = radius as usize / chunks;
    let tables = chunk_tables(codes, &bounds);
    let variants: Vec<Vec<usize>> = bounds.iter().map(|&(lo, hi)| masks_within(hi - lo, flips)).collect();
    let progress = crate::stage::progress::Progress::new("dedupe: code pairs", Some(codes.len() as u64), 10.0);
    let blocks: Vec<(usize, usize)> =
        (0..codes.len()).step_by(4096).map(|s| (s, (s + 4096).min(codes.len()))).collect();
    let per_code = |i: usize| {
        let ci = codes[i];
        let mut found: Vec<NearPair> = Vec::new();
        for (k, (starts, ids)) in tables.iter().enumerate() {
            let own = chunk_value(&ci, bounds[k]);
            for mask in &variants[k] {
                let v = own ^ mask;
                for &j in &ids[starts[v] as usize..starts[v + 1] as usize] {
                    if j as usize > i {
                        let distance = ci.hamming(&codes[j as usize]);
                        if distance <= radius {
                            found.push(NearPair { a: i as u32, b: j, distance });
                        }
                    }
                }
            }
        }
        // A pair close in several chunks is met once per chunk.
        found.sort_unstable();
        found.dedup();
        found
    };
    let mut pairs: Vec<NearPair> = blocks
        .into_par_iter()
        .flat_map_iter(|(start, end)| {
            let found: Vec<NearPair> = (start..end).flat_map(per_code).collect();
            progress.inc((end - start) as u64);
            found
        })
        .collect();
    progress.finish();
    pairs.par_sort_unstable();
    pairs
}

/// The cost of one bucket lookup in candidate comparisons, for [`plan_chunks`].
const LOOKUP_COST: f64 = 10.0;

/// The chunk count [`multi_index_pairs`] uses, with its estimated work per code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkPlan {
    pub chunks: usize,
    /// Bucket lookups per code.
    pub lookups: f64,
    /// Candidates compared per code, estimated on a sample of the codes.
    pub candidates: f64,
}

/// Chooses the chunk count with the least estimated work. Few chunks mean long chunks with few
/// codes per bucket but many bucket variants to visit (all within `radius / m` bits); many chunks
/// the reverse. Real codes fill buckets unevenly (biased, correlated bits), so the candidates are
/// counted for a sample of the codes against the actual tables rather than assumed uniform.
pub fn plan_chunks(codes: &[Code128], radius: u32) -> ChunkPlan {
    // At least 7 chunks (of at most 19 bits: tables of at most 2 MiB each), at most 3 flipped bits.
    let options: Vec<usize> = (7..=128usize).filter(|&m| radius as usize / m <= 3).take(18).collect();
    let sample: Vec<usize> = (0..codes.len()).step_by((codes.len() / 512).max(1)).collect();
    let mut best: Option<(f64, ChunkPlan)> = None;
    for &m in &options {
        let bounds = chunk_bounds(m);
        let flips = radius as usize / m;
        // Bucket sizes only: the planning does not need the tables themselves.
        let starts: Vec<Vec<u32>> = bounds.par_iter().map(|&b| chunk_starts(codes, b)).collect();
        let variants: Vec<Vec<usize>> = bounds.iter().map(|&(lo, hi)| masks_within(hi - lo, flips)).collect();
        let lookups: f64 = variants.iter().map(|v| v.len() as f64).sum();
        let seen: u64 = sample
            .par_iter()
            .map(|&i| {
                let mut n = 0u64;
                for (k, starts) in starts.iter().enumerate() {
                    let own = chunk_value(&codes[i], bounds[k]);
                    n += variants[k]
                        .iter()
                        .map(|mask| (starts[(own ^ mask) + 1] - starts[own ^ mask]) as u64)
                        .sum::<u64>();
                }
                n
            })
            .sum();
        let candidates = seen as f64 / sample.len().max(1) as f64;
        // A lookup lands on a random place of a table of up to 2 MiB (a cache miss); candidates
        // are read in runs. Measured at 1,000,000 codes, radius 16: 7 chunks (1,242 lookups,
        // ~11,800 candidates) took 108 s, 9 chunks (135 lookups) 61 s; hence the weight.
        let cost = LOOKUP_COST * lookups + candidates;
        if best.is_none_or(|(c, _)| cost < c) {
            best = Some((cost, ChunkPlan { chunks: m, lookups, candidates }));
        }
    }
    best.map_or(ChunkPlan { chunks: 8, lookups: 0.0, candidates: 0.0 }, |(_, plan)| plan)
}

/// Every mask of `bits` bits with at most `flips` bits set (the window search uses it too).
pub(super) fn masks_within(bits: u32, flips: usize) -> Vec<usize> {
    (0..1usize << bits).filter(|m| m.count_ones() as usize <= flips).collect()
}

/// Every pair of `codes` within `radius`, by comparing all n (n - 1) / 2 pairs.
pub fn brute_force_pairs(codes: &[Code128], radius: u32) -> Vec<NearPair> {
    let mut pairs: Vec<NearPair> = (0..codes.len())
        .into_par_iter()
        .flat_map_iter(|i| {
            let ci = codes[i];
            codes[i + 1..].iter().enumerate().filter_map(move |(o, cj)| {
                let distance = ci.hamming(cj);
                (distance <= radius).then_some(NearPair { a: i as u32, b: (i + 1 + o) as u32, distance })
            })
        })
        .collect();
    pairs.par_sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rng::SplitMix;

    #[test]
    fn distance_counts_bits_not_words() {
        assert_eq!(BitHamming.eval(&[0b111, 0], &[0, 1 << 40]), 4.0);
        assert_eq!(BitHamming.eval(&[5, 9], &[5, 9]), 0.0);
    }

    #[test]
    fn index_finds_the_planted_pairs_that_brute_force_finds() {
        let mut s = SplitMix::new(7);
        let mut codes: Vec<Code128> = (0..2000).map(|_| Code128([s.next(), s.next()])).collect();
        // Plant 100 near copies, 1 to 6 bits away.
        for i in 0..100 {
            let mut c = codes[i * 7];
            for _ in 0..=(i % 6) {
                let bit = s.next() % 128;
                c.0[(bit / 64) as usize] ^= 1 << (bit % 64);
            }
            codes.push(c);
        }
        let exact = brute_force_pairs(&codes, 8);
        assert!(exact.len() >= 100, "{} pairs", exact.len());
        assert!(exact
            .iter()
            .all(|p| codes[p.a as usize].hamming(&codes[p.b as usize]) == p.distance && p.distance <= 8));
        let params = IndexParams { max_connections: 16, ef_construction: 64, neighbours: 8, ef_search: 64 };
        let found = index_pairs(&codes, 8, &params);
        let hits = found.iter().filter(|p| exact.binary_search(p).is_ok()).count();
        assert_eq!(hits, found.len(), "the index reported pairs that are not within the radius");
        assert!(hits as f64 >= 0.95 * exact.len() as f64, "index found {hits} of {}", exact.len());
    }

    #[test]
    fn multi_index_hashing_finds_exactly_the_brute_force_pairs() {
        let mut s = SplitMix::new(11);
        // Codes in a few tight families (crowded buckets) plus random ones.
        let mut codes: Vec<Code128> = Vec::new();
        for f in 0..3000 {
            let c =
                if f % 3 == 0 && f > 0 { codes[(s.next() % f as u64) as usize] } else { Code128([s.next(), s.next()]) };
            let mut c = c;
            for _ in 0..(s.next() % 12) {
                let bit = s.next() % 128;
                c.0[(bit / 64) as usize] ^= 1 << (bit % 64);
            }
            codes.push(c);
        }
        for radius in [0, 7, 8, 14, 17, 23, 25, 30] {
            let exact = brute_force_pairs(&codes, radius);
            assert_eq!(multi_index_pairs(&codes, radius), exact, "radius {radius}");
            // Exact whatever the chunk count (1 to 3 flipped bits per chunk among these).
            for chunks in [7, 9, 13, 20] {
                if radius as usize / chunks <= 3 {
                    assert_eq!(
                        multi_index_pairs_with(&codes, radius, chunks),
                        exact,
                        "radius {radius}, {chunks} chunks"
                    );
                }
            }
            if radius >= 14 {
                assert!(exact.len() > 500, "radius {radius}: only {} pairs, the test is too easy", exact.len());
            }
        }
    }
}
