//! Exact nearest neighbours in pixel space: for every query image, the reference images closest
//! to it by the sum of squared pixel differences.
//!
//! Two passes. Candidates come from float32 matrix products, block by block of the reference set
//! (||b||^2 - 2 a.b ranks the references for a query as ||a - b||^2 does, ||a||^2 being the same
//! for all of them): libtorch's GEMM, on every core. The candidates are then re-ranked by their
//! exact squared difference in integers, so the distances reported are exact and ties are broken by
//! the lower index. Pixels are shifted to [-128, 127] first: smaller norms, so float32 loses less.

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// Reference images per block: a block's float copy and one query chunk's scores stay a few tens
/// of MB.
const REFERENCE_BLOCK: usize = 4096;
/// Queries multiplied against a block at once.
const QUERY_CHUNK: usize = 4096;
/// Candidates kept per query beyond the `k` asked for; the exact re-rank chooses among them. Only a
/// true neighbour whose float32 score ties with more than this many others could be missed.
const EXTRA_CANDIDATES: usize = 7;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{what}: {len} bytes is not a whole number of images of {dims} values")]
    Ragged { what: &'static str, len: usize, dims: usize },
    #[error("the reference set is empty")]
    NoReference,
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Packed uint8 images (each `dims` values, e.g. H x W x 3), all of one shape.
#[derive(Debug, Clone, Copy)]
pub struct PixelRows<'a> {
    pub pixels: &'a [u8],
    pub dims: usize,
}

impl<'a> PixelRows<'a> {
    pub fn new(what: &'static str, pixels: &'a [u8], dims: usize) -> Result<Self, SearchError> {
        if dims == 0 || !pixels.len().is_multiple_of(dims) {
            return Err(SearchError::Ragged { what, len: pixels.len(), dims });
        }
        Ok(Self { pixels, dims })
    }

    pub fn len(&self) -> usize {
        self.pixels.len() / self.dims
    }

    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    pub fn row(&self, i: usize) -> &'a [u8] {
        &self.pixels[i * self.dims..(i + 1) * self.dims]
    }

    /// Rows `start..end` as float32, shifted to [-128, 127].
    fn centred(&self, start: usize, end: usize) -> Tensor {
        let bytes = &self.pixels[start * self.dims..end * self.dims];
        Tensor::from_slice(bytes).view([(end - start) as i64, self.dims as i64]).to_kind(Kind::Float) - 128.0
    }
}

/// The `k` nearest reference images of every query, nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbours {
    pub k: usize,
    pub dims: usize,
    /// Query i's j-th neighbour is `index[i * k + j]`, at squared distance `ssd[i * k + j]`
    /// (the sum over the pixels of the squared difference, in 0..255 units).
    pub index: Vec<u32>,
    pub ssd: Vec<u64>,
}

impl Neighbours {
    pub fn len(&self) -> usize {
        self.index.len() / self.k.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Query i's nearest reference image.
    pub fn nearest(&self, i: usize) -> u32 {
        self.index[i * self.k]
    }

    /// Query i's distance to its nearest reference image, as [`rms_distance`].
    pub fn nearest_distance(&self, i: usize) -> f64 {
        rms_distance(self.ssd[i * self.k], self.dims)
    }

    /// Every query's distance to its nearest reference image.
    pub fn nearest_distances(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.nearest_distance(i)).collect()
    }
}

/// A squared pixel distance as the root mean square difference per value, on a 0-1 scale (pixels
/// divided by 255): 0 for the same image, about 0.01 for one value in 255 everywhere; comparable
/// across image sizes.
pub fn rms_distance(ssd: u64, dims: usize) -> f64 {
    (ssd as f64 / dims.max(1) as f64).sqrt() / 255.0
}

/// The exact squared difference of two images.
pub fn squared_difference(a: &[u8], b: &[u8]) -> u64 {
    // u32 lanes cannot overflow within 66,000 values (255^2 each); images up to 256x256x3 fit in
    // one pass, larger ones sum in chunks.
    a.chunks(65_536)
        .zip(b.chunks(65_536))
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(&p, &q)| {
                    let d = p as i32 - q as i32;
                    (d * d) as u32
                })
                .sum::<u32>() as u64
        })
        .sum()
}

/// The `k` nearest images of `reference` for every image of `queries` (exact; see the module).
pub fn nearest(reference: PixelRows, queries: PixelRows, k: usize) -> Result<Neighbours, SearchError> {
    if reference.is_empty() {
        return Err(SearchError::NoReference);
    }
    if reference.dims != queries.dims {
        return Err(SearchError::Ragged { what: "queries", len: queries.pixels.len(), dims: reference.dims });
    }
    let k = k.clamp(1, reference.len());
    let keep = (k + EXTRA_CANDIDATES).min(reference.len());
    let candidates = tch::no_grad(|| candidates(reference, queries, keep))?;
    Ok(rerank(reference, queries, &candidates, keep, k))
}

/// For each query, the `keep` references of lowest float32 score, as indices (nq x keep, row-major).
fn candidates(reference: PixelRows, queries: PixelRows, keep: usize) -> Result<Vec<i64>, SearchError> {
    let nq = queries.len();
    let mut best: Vec<Option<(Tensor, Tensor)>> = (0..nq.div_ceil(QUERY_CHUNK)).map(|_| None).collect();
    // Each query chunk times -2, once: a block's scores are then one product plus its norms.
    let query_chunks: Vec<Tensor> =
        (0..nq).step_by(QUERY_CHUNK).map(|s| queries.centred(s, (s + QUERY_CHUNK).min(nq)) * -2.0).collect();
    for start in (0..reference.len()).step_by(REFERENCE_BLOCK) {
        let end = (start + REFERENCE_BLOCK).min(reference.len());
        let block = reference.centred(start, end);
        let norms = block.square().sum_dim_intlist(1i64, false, Kind::Float).unsqueeze(0);
        let block_t = block.tr();
        for (chunk, slot) in query_chunks.iter().zip(best.iter_mut()) {
            let mut scores = chunk.matmul(&block_t);
            scores += &norms;
            let take = keep.min(end - start) as i64;
            let (values, indices) = scores.topk(take, 1, false, true);
            let indices = indices + start as i64;
            *slot = Some(match slot.take() {
                None => (values, indices),
                Some((v, i)) => {
                    let (v, i) = (Tensor::cat(&[v, values], 1), Tensor::cat(&[i, indices], 1));
                    let take = (keep as i64).min(v.size()[1]);
                    let (nv, pos) = v.topk(take, 1, false, true);
                    (nv, i.gather(1, &pos, false))
                }
            });
        }
    }
    let mut out = Vec::with_capacity(nq * keep);
    for (_, indices) in best.into_iter().flatten() {
        out.extend(Vec::<i64>::try_from(indices.to_device(Device::Cpu).contiguous().flatten(0, -1))?);
    }
    Ok(out)
}

/// Exact squared differences of each query's candidates; the `k` lowest, ties by index.
fn rerank(reference: PixelRows, queries: PixelRows, candidates: &[i64], keep: usize, k: usize) -> Neighbours {
    let rows: Vec<Vec<(u64, u32)>> = candidates
        .par_chunks(keep)
        .enumerate()
        .map(|(q, cands)| {
            let query = queries.row(q);
            let mut scored: Vec<(u64, u32)> =
                cands.iter().map(|&c| (squared_difference(query, reference.row(c as usize)), c as u32)).collect();
            scored.sort_unstable();
            scored.dedup();
            scored.truncate(k);
            scored
        })
        .collect();
    let mut index = Vec::with_capacity(rows.len() * k);
    let mut ssd = Vec::with_capacity(rows.len() * k);
    for row in rows {
        for (d, i) in row {
            ssd.push(d);
            index.push(i);
        }
    }
    Neighbours { k, dims: reference.dims, index, ssd }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_rows(n: usize, dims: usize, seed: u64) -> Vec<u8> {
        let mut rng = crate::rng::SplitMix::new(seed);
        (0..n * dims).map(|_| (rng.next() % 256) as u8).collect()
    }

    #[test]
    fn finds_the_same_neighbours_as_brute_force_across_blocks() {
        let dims = 48;
        let reference = random_rows(REFERENCE_BLOCK + 300, dims, 1);
        let queries = random_rows(50, dims, 2);
        let r = PixelRows::new("reference", &reference, dims).unwrap();
        let q = PixelRows::new("queries", &queries, dims).unwrap();
        let found = nearest(r, q, 3).unwrap();
        for i in 0..q.len() {
            let mut all: Vec<(u64, u32)> =
                (0..r.len()).map(|j| (squared_difference(q.row(i), r.row(j)), j as u32)).collect();
            all.sort_unstable();
            for (j, expected) in all.iter().take(3).enumerate() {
                assert_eq!((found.ssd[i * 3 + j], found.index[i * 3 + j]), *expected, "query {i}, neighbour {j}");
            }
        }
    }

    #[test]
    fn a_copy_is_its_own_nearest_at_distance_zero() {
        let dims = 12;
        let reference = random_rows(20, dims, 3);
        let q = PixelRows::new("queries", &reference[5 * dims..6 * dims], dims).unwrap();
        let found = nearest(PixelRows::new("reference", &reference, dims).unwrap(), q, 1).unwrap();
        assert_eq!((found.nearest(0), found.ssd[0], found.nearest_distance(0)), (5, 0, 0.0));
        assert!((rms_distance(12 * 255 * 255, 12) - 1.0).abs() < 1e-12);
        assert!(PixelRows::new("x", &reference[..13], dims).is_err());
    }
}
