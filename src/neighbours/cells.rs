//! The cells of the data-copying test: k-means on the training images in pixel space (k-means++
//! seeding, Lloyd's iterations), each image then in the cell of its nearest centre.

use tch::{Device, Kind, Tensor};

use super::search::{PixelRows, SearchError};
use crate::rng::SplitMix;

/// Lloyd's iterations at most (the assignment usually settles well before).
const MAX_ITERATIONS: usize = 30;

/// k centres in pixel space (float32, pixels shifted to [-128, 127] as the search takes them).
pub struct Cells {
    centres: Tensor,
    /// Lloyd's iterations run and the training images the centres were fitted on.
    pub iterations: usize,
    pub fitted_on: usize,
}

fn as_float(rows: PixelRows, picks: &[usize]) -> Tensor {
    let mut bytes = Vec::with_capacity(picks.len() * rows.dims);
    for &i in picks {
        bytes.extend_from_slice(rows.row(i));
    }
    Tensor::from_slice(&bytes).view([picks.len() as i64, rows.dims as i64]).to_kind(Kind::Float) - 128.0
}

/// Each row's nearest centre.
fn assign(points: &Tensor, centres: &Tensor) -> Tensor {
    let norms = centres.square().sum_dim_intlist(1i64, false, Kind::Float).unsqueeze(0);
    (points.matmul(&centres.tr()) * -2.0 + norms).argmin(1i64, false)
}

impl Cells {
    /// k-means with `k` cells on at most `sample` training images spread over the set (all when
    /// 0), seeded by `seed`. Fewer distinct images than `k` give fewer cells.
    pub fn fit(training: PixelRows, k: usize, sample: usize, seed: u64) -> Result<Self, SearchError> {
        if training.is_empty() {
            return Err(SearchError::NoReference);
        }
        let mut rng = SplitMix::new(seed ^ 0xC311_5EED);
        let mut picks: Vec<usize> = (0..training.len()).collect();
        rng.shuffle(&mut picks);
        if sample > 0 {
            picks.truncate(sample);
        }
        tch::no_grad(|| {
            let points = as_float(training, &picks);
            let centres = seed_centres(&points, k.max(1), &mut rng)?;
            let (centres, iterations) = lloyd(&points, centres)?;
            Ok(Self { centres, iterations, fitted_on: picks.len() })
        })
    }

    pub fn count(&self) -> usize {
        self.centres.size()[0] as usize
    }

    /// The cell of every image of `rows`.
    pub fn cell_of(&self, rows: PixelRows) -> Result<Vec<usize>, SearchError> {
        let mut out = Vec::with_capacity(rows.len());
        tch::no_grad(|| {
            for start in (0..rows.len()).step_by(8192) {
                let picks: Vec<usize> = (start..(start + 8192).min(rows.len())).collect();
                let cells = assign(&as_float(rows, &picks), &self.centres);
                out.extend(Vec::<i64>::try_from(cells.to_device(Device::Cpu))?.into_iter().map(|c| c as usize));
            }
            Ok::<_, SearchError>(())
        })?;
        Ok(out)
    }
}

/// k-means++: each next centre drawn with probability proportional to its squared distance to the
/// nearest centre so far.
fn seed_centres(points: &Tensor, k: usize, rng: &mut SplitMix) -> Result<Tensor, SearchError> {
    let n = points.size()[0] as usize;
    let mut chosen = vec![(rng.next() % n as u64) as i64];
    let mut nearest = (points - points.get(chosen[0])).square().sum_dim_intlist(1i64, false, Kind::Float);
    while chosen.len() < k.min(n) {
        let weights = Vec::<f32>::try_from(&nearest)?;
        let total: f64 = weights.iter().map(|&w| w.max(0.0) as f64).sum();
        if total <= 0.0 {
            break; // every point is a centre already: fewer distinct images than k
        }
        let mut target = rng.uniform(0.0, total);
        let mut pick = n - 1;
        for (i, &w) in weights.iter().enumerate() {
            target -= w.max(0.0) as f64;
            if target < 0.0 {
                pick = i;
                break;
            }
        }
        chosen.push(pick as i64);
        let d = (points - points.get(pick as i64)).square().sum_dim_intlist(1i64, false, Kind::Float);
        nearest = nearest.minimum(&d);
    }
    Ok(points.index_select(0, &Tensor::from_slice(&chosen)))
}

/// Lloyd's iterations until no image changes cell; an emptied cell keeps its centre.
fn lloyd(points: &Tensor, mut centres: Tensor) -> Result<(Tensor, usize), SearchError> {
    let k = centres.size()[0];
    let mut cells = assign(points, &centres);
    let mut iterations = 0;
    while iterations < MAX_ITERATIONS {
        iterations += 1;
        let counts = Tensor::zeros([k], (Kind::Float, Device::Cpu)).index_add(
            0,
            &cells,
            &Tensor::ones([points.size()[0]], (Kind::Float, Device::Cpu)),
        );
        let sums = Tensor::zeros_like(&centres).index_add(0, &cells, points);
        let filled = counts.gt(0.0).unsqueeze(1);
        centres = sums.divide(&counts.clamp_min(1.0).unsqueeze(1)).where_self(&filled, &centres);
        let next = assign(points, &centres);
        let moved = next.ne_tensor(&cells).sum(Kind::Int64).int64_value(&[]);
        cells = next;
        if moved == 0 {
            break;
        }
    }
    Ok((centres, iterations))
}
