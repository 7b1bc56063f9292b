//! Near pairs by sampled bits: a fixed-radius Hamming search whose work per query does not grow
//! with the set (approximate, unlike multi-index hashing).
//!
//! An exact search of a fixed radius cannot be flat: multi-index hashing's buckets fill with the
//! set, so the hashes a query compares grow with it (docs/dedupe.md, "measured at scale"). Here
//! each of `tables` tables keys every hash by `width` bits drawn at random from its bits, with
//! `width` growing with the set (log2 of the hashes over [`FILL`]): a bucket then holds about
//! [`FILL`] hashes at any size. A query looks up its own key and the `width` keys one bit away,
//! so two hashes are compared when they differ in at most one of some table's sampled bits. A pair
//! d bits apart is found by one table with the probability that at most one of its d differing bits
//! was sampled; with many tables a near pair is nearly always found: the chance a pair is missed is
//! [`miss_probability`], and what it does to recall was measured (docs/dedupe.md). It falls
//! slowly as the set grows (the keys get longer): the price of a flat cost.

use rayon::prelude::*;

use super::buckets::bucket_order;
use super::hash::Code128;

/// The hashes a bucket holds on average (the key's width is set from it): lookups against
/// comparisons, measured on real pHashes (docs/dedupe.md).
pub const FILL: f64 = 8.0;

/// A hash the search takes: its bits, byte by byte, and its distance to another.
pub trait Bits: Copy + Send + Sync {
    const BYTES: usize;
    fn byte(&self, k: usize) -> u8;
    fn distance(&self, other: &Self) -> u32;
}

impl Bits for u64 {
    const BYTES: usize = 8;
    fn byte(&self, k: usize) -> u8 {
        (self >> (8 * k)) as u8
    }
    fn distance(&self, other: &Self) -> u32 {
        (self ^ other).count_ones()
    }
}

impl Bits for Code128 {
    const BYTES: usize = 16;
    fn byte(&self, k: usize) -> u8 {
        (self.0[k / 8] >> (8 * (k % 8))) as u8
    }
    fn distance(&self, other: &Self) -> u32 {
        self.hamming(other)
    }
}

/// The key width for `hashes` hashes: buckets of about [`FILL`], between 8 and 28 bits.
pub fn key_width(hashes: usize, bits: u32) -> u32 {
    let wanted = (hashes as f64 / FILL).max(1.0).log2().ceil() as u32;
    wanted.clamp(8, 28.min(bits))
}

/// The chance that `tables` tables of `width` sampled bits of `bits` all miss a pair `d` bits
/// apart (each table finds it when at most one sampled bit differs; tables taken as independent).
pub fn miss_probability(bits: u32, width: u32, d: u32, tables: usize) -> f64 {
    let choose = |n: u32, k: u32| -> f64 { (0..k).map(|i| f64::from(n - i) / f64::from(k - i)).product() };
    let (n, d, w) = (bits, d.min(bits), width.min(bits));
    let found = |i: u32| if i > d || w < i { 0.0 } else { choose(d, i) * choose(n - d, w - i) / choose(n, w) };
    (1.0 - found(0) - found(1)).max(0.0).powi(tables as i32)
}

/// One table's key: `width` bit positions, gathered a byte at a time through per-byte lookups.
struct Key {
    width: u32,
    lookup: Vec<[u32; 256]>,
}

impl Key {
    /// Table `t`'s bits, drawn without repeats from `bytes` x 8 (the same for every run).
    fn new(bytes: usize, width: u32, t: usize) -> Self {
        let mut rng = crate::rng::SplitMix::new(0x5a4d_1ed0 ^ (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut positions: Vec<u32> = (0..8 * bytes as u32).collect();
        for k in 0..width as usize {
            let pick = k + (rng.next() % (positions.len() - k) as u64) as usize;
            positions.swap(k, pick);
        }
        let mut lookup = vec![[0u32; 256]; bytes];
        for (slot, &bit) in positions[..width as usize].iter().enumerate() {
            let (byte, within) = ((bit / 8) as usize, bit % 8);
            for (value, key) in lookup[byte].iter_mut().enumerate() {
                if value >> within & 1 == 1 {
                    *key |= 1 << slot;
                }
            }
        }
        Self { width, lookup }
    }

    fn of<H: Bits>(&self, h: &H) -> usize {
        self.lookup.iter().enumerate().fold(0u32, |key, (k, table)| key | table[h.byte(k) as usize]) as usize
    }
}

/// One table: the hashes ordered by key (a bucket is scanned contiguously), their positions, and
/// where each bucket starts. Keys map to `buckets` buckets in order (`key x buckets / 2^width`,
/// two neighbouring keys at most to one bucket), so a bucket holds [`FILL`] hashes on average
/// whatever the set's size, not between [`FILL`] / 2 and [`FILL`] as the powers of two would.
struct Table<H> {
    key: Key,
    buckets: usize,
    starts: Vec<u32>,
    ids: Vec<u32>,
    ordered: Vec<H>,
}

/// The bucket of a `width`-bit key among `buckets` (at most 2^width): keys in order, two
/// neighbouring keys at most to one bucket.
fn bucket_of(key: usize, buckets: usize, width: u32) -> usize {
    ((key as u64 * buckets as u64) >> width) as usize
}

impl<H: Bits> Table<H> {
    fn build(items: &[H], key: Key, buckets: usize) -> Self {
        let of: Vec<u32> = items.par_iter().map(|h| bucket_of(key.of(h), buckets, key.width) as u32).collect();
        let (starts, ids) = bucket_order(buckets, items.len(), |i| of[i] as usize);
        let ordered = ids.par_iter().map(|&j| items[j as usize]).collect();
        Self { key, buckets, starts, ids, ordered }
    }

    /// Calls `visit(item, distance)` for every item of `key`'s bucket within `radius` of `query`.
    fn scan(&self, key: usize, query: &H, radius: u32, mut visit: impl FnMut(u32, u32)) {
        let b = bucket_of(key, self.buckets, self.key.width);
        let bucket = self.starts[b] as usize..self.starts[b + 1] as usize;
        for (&j, h) in self.ids[bucket.clone()].iter().zip(&self.ordered[bucket]) {
            let d = h.distance(query);
            if d <= radius {
                visit(j, d);
            }
        }
    }
}

/// A search for a set: its radius, and its shape (tables, key width, buckets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub radius: u32,
    pub tables: usize,
    pub width: u32,
    pub buckets: usize,
}

impl Plan {
    pub fn for_set<H: Bits>(items: usize, radius: u32, tables: usize) -> Self {
        let width = key_width(items, 8 * H::BYTES as u32);
        let buckets = ((items as f64 / FILL).ceil() as usize).clamp(1, 1 << width);
        Self { radius, tables, width, buckets }
    }
}

/// Queries probed together: sorted by key, each flip is applied to the whole block in turn, so
/// the buckets one flip visits come in key order (a stream, not random reads of a large table).
const BLOCK: usize = 8192;

/// For each query, the items within the plan's radius that some table finds, folded into the query's state
/// by `collect(query, state, finds)`, called once per query and table that finds something with
/// that table's finds as (query, distance, item). Items are owned by queries, `per_owner` items
/// each (item j belongs to query j / per_owner), and a query never finds its own. One table is
/// held at a time.
pub fn search<H: Bits, S: Send>(
    items: &[H],
    per_owner: u32,
    queries: &[H],
    plan: Plan,
    state: &mut [S],
    progress: &crate::stage::progress::Progress,
    collect: impl Fn(usize, &mut S, &[(u32, u32, u32)]) + Sync,
) {
    assert_eq!(queries.len(), state.len());
    let flips: Vec<usize> = std::iter::once(0).chain((0..plan.width).map(|b| 1usize << b)).collect();
    for t in 0..plan.tables {
        let table = Table::build(items, Key::new(H::BYTES, plan.width, t), plan.buckets);
        let mut order: Vec<(u32, u32)> =
            queries.par_iter().enumerate().map(|(q, h)| (table.key.of(h) as u32, q as u32)).collect();
        order.par_sort_unstable();
        let mut finds: Vec<(u32, u32, u32)> = order
            .par_chunks(BLOCK)
            .flat_map_iter(|block| {
                let mut out = Vec::new();
                for &flip in &flips {
                    for &(key, q) in block {
                        table.scan(key as usize ^ flip, &queries[q as usize], plan.radius, |j, d| {
                            if j / per_owner != q {
                                out.push((q, d, j));
                            }
                        });
                    }
                }
                progress.inc(block.len() as u64);
                out
            })
            .collect();
        finds.par_sort_unstable();
        // Each chunk of queries folds its own run of the sorted finds.
        state.par_chunks_mut(BLOCK).enumerate().for_each(|(c, chunk)| {
            let first = (c * BLOCK) as u32;
            let lo = finds.partition_point(|f| f.0 < first);
            let hi = finds.partition_point(|f| f.0 < first + chunk.len() as u32);
            for run in finds[lo..hi].chunk_by(|x, y| x.0 == y.0) {
                let q = run[0].0 as usize;
                collect(q, &mut chunk[q - first as usize], run);
            }
        });
    }
}

/// Every pair of `codes` within `radius` that some table finds (a < b, each once).
pub fn code_pairs(codes: &[Code128], radius: u32, tables: usize) -> Vec<super::index::NearPair> {
    let plan = Plan::for_set::<Code128>(codes.len(), radius, tables);
    let progress =
        crate::stage::progress::Progress::new("dedupe: code pairs", Some((codes.len() * tables) as u64), 10.0);
    let mut near: Vec<Vec<(u32, u32)>> = vec![Vec::new(); codes.len()];
    search(codes, 1, codes, plan, &mut near, &progress, |q, row, found| {
        row.extend(found.iter().filter(|f| f.2 as usize > q).map(|f| (f.1, f.2)));
        row.sort_unstable_by_key(|&(_, j)| j);
        row.dedup_by_key(|p| p.1);
    });
    progress.finish();
    near.into_iter()
        .enumerate()
        .flat_map(|(a, row)| {
            row.into_iter().map(move |(distance, b)| super::index::NearPair { a: a as u32, b, distance })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedupe::index::brute_force_pairs;

    fn random_codes(n: usize, seed: u64) -> Vec<Code128> {
        let mut rng = crate::rng::SplitMix::new(seed);
        let mut codes: Vec<Code128> = (0..n).map(|_| Code128([rng.next(), rng.next()])).collect();
        // Near copies 1-16 bits from an earlier code.
        for i in (1..n).step_by(3) {
            let mut c = codes[(rng.next() % i as u64) as usize];
            for _ in 0..1 + rng.next() % 16 {
                c.0[(rng.next() % 2) as usize] ^= 1 << (rng.next() % 64);
            }
            codes[i] = c;
        }
        codes
    }

    #[test]
    fn the_pairs_found_are_true_and_nearly_all_of_them() {
        let codes = random_codes(3000, 4);
        let exact = brute_force_pairs(&codes, 14);
        let found = code_pairs(&codes, 14, 12);
        assert!(found.windows(2).all(|w| (w[0].a, w[0].b) < (w[1].a, w[1].b)), "sorted, each pair once");
        assert!(found.iter().all(|p| exact.contains(p)), "a pair outside the radius or with a wrong distance");
        let recall = found.len() as f64 / exact.len() as f64;
        assert!(exact.len() > 500 && recall > 0.98, "{} of {} found", found.len(), exact.len());
        // Fewer tables find fewer: the tables are what buys the recall.
        assert!(code_pairs(&codes, 14, 1).len() < found.len());
    }

    #[test]
    fn the_key_width_follows_the_set_and_the_miss_chance_the_tables() {
        assert_eq!(key_width(1 << 20, 64), 17);
        assert_eq!(key_width(1 << 21, 64), 18);
        assert_eq!(key_width(10, 64), 8);
        let one = miss_probability(64, 18, 10, 1);
        assert!((0.5..0.9).contains(&one), "{one}");
        assert!((miss_probability(64, 18, 10, 8) - one.powi(8)).abs() < 1e-12);
        assert!(miss_probability(64, 18, 1, 1) == 0.0, "one differing bit is always found");
        assert!(miss_probability(64, 24, 10, 8) > miss_probability(64, 18, 10, 8), "longer keys miss more");
    }

    #[test]
    fn a_key_gathers_its_sampled_bits() {
        let key = Key::new(8, 12, 3);
        assert_eq!(key.of(&0u64), 0);
        assert_eq!(key.of(&u64::MAX), (1 << 12) - 1);
        let set_bits: u32 = (0..64).map(|b| (key.of(&(1u64 << b)) != 0) as u32).sum();
        assert_eq!(set_bits, 12, "each sampled bit lands in the key once");
    }
}
