//! Feature matrices as the SVM reads them: one row per image, stored as float32 or float16.
//!
//! 50,000 x 28,672 features are 5.7 GB as float32; float16 halves that, and the solver widens one
//! row at a time into a buffer that stays in cache while all ten classes use it.

use std::path::Path;

use half::f16;
use half::slice::HalfFloatSliceExt;
use ndarray::{ArrayBase, Data, Ix2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::npy::{self, NpyError};

/// Row access for the solver, whatever the storage.
pub trait FeatureRows: Sync {
    fn n_rows(&self) -> usize;
    fn n_cols(&self) -> usize;
    /// Row `i` as float32: borrowed when stored so, widened into `buf` (n_cols long) otherwise.
    fn row<'a>(&'a self, i: usize, buf: &'a mut [f32]) -> &'a [f32];
}

/// A borrowed matrix reads as the matrix (linfa's records are borrowed alike: a `DatasetBase` of
/// `&FeatureMatrix` fits without a copy).
impl<R: FeatureRows + ?Sized> FeatureRows for &R {
    fn n_rows(&self) -> usize {
        (**self).n_rows()
    }
    fn n_cols(&self) -> usize {
        (**self).n_cols()
    }
    fn row<'a>(&'a self, i: usize, buf: &'a mut [f32]) -> &'a [f32] {
        (**self).row(i, buf)
    }
}

impl<S: Data<Elem = f32> + Sync> FeatureRows for ArrayBase<S, Ix2> {
    fn n_rows(&self) -> usize {
        self.nrows()
    }
    fn n_cols(&self) -> usize {
        self.ncols()
    }
    fn row<'a>(&'a self, i: usize, buf: &'a mut [f32]) -> &'a [f32] {
        let row = self.row(i);
        match row.to_slice() {
            Some(slice) => slice,
            None => {
                for (b, v) in buf.iter_mut().zip(row.iter()) {
                    *b = *v;
                }
                buf
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureDtype {
    Float32,
    Float16,
}

#[derive(Debug, Clone)]
enum Storage {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

/// A dense row-major feature matrix.
#[derive(Debug, Clone)]
pub struct FeatureMatrix {
    rows: usize,
    cols: usize,
    storage: Storage,
}

/// Per-column mean and standard deviation of a training matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    /// 1 / std, and 0 for constant columns (which then become all zeros).
    pub inv_std: Vec<f32>,
}

/// How features are scaled before the SVM (fitted on the training rows, applied to all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Each feature to zero mean and unit variance.
    Standardize,
    /// The raw pooled features (the authors' SVHN code).
    None,
    /// Standardised, then each layer's block scaled so that every layer holds the same total
    /// variance: the 512-channel layers (8,192 features each) no longer outweigh the 128-channel
    /// ones (2,048) four to one. The total over all features is unchanged, so C keeps its scale.
    PerLayer,
}

impl std::fmt::Display for Normalization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Normalization::Standardize => "standardize",
            Normalization::None => "none",
            Normalization::PerLayer => "per_layer",
        })
    }
}

impl Normalization {
    /// The transform fitted on `train` (None: leave the features as they are). `layout` is the
    /// width of each layer's block, in order.
    pub fn fit(self, train: &FeatureMatrix, layout: &[usize]) -> Option<Standardizer> {
        match self {
            Normalization::None => None,
            Normalization::Standardize => Some(train.column_stats()),
            Normalization::PerLayer => Some(train.column_stats().equalize_layers(layout)),
        }
    }
}

impl Standardizer {
    /// Scales each layer's block of standardised features so that every layer's total variance
    /// is the same share of the whole (constant columns, zero after standardising, count for none).
    pub fn equalize_layers(mut self, layout: &[usize]) -> Self {
        assert_eq!(layout.iter().sum::<usize>(), self.inv_std.len(), "layout does not cover the features");
        let varying: Vec<usize> =
            blocks(layout).map(|r| self.inv_std[r].iter().filter(|s| **s != 0.0).count()).collect();
        let total: usize = varying.iter().sum();
        let layers = varying.iter().filter(|v| **v > 0).count().max(1);
        for (range, v) in blocks(layout).zip(varying) {
            if v > 0 {
                let factor = ((total as f64 / layers as f64) / v as f64).sqrt() as f32;
                self.inv_std[range].iter_mut().for_each(|s| *s *= factor);
            }
        }
        self
    }
}

/// Column ranges of consecutive blocks of the given widths.
fn blocks(layout: &[usize]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    layout.iter().scan(0, |start, w| {
        let r = *start..*start + w;
        *start += w;
        Some(r)
    })
}

impl FeatureMatrix {
    pub fn zeros(rows: usize, cols: usize, dtype: FeatureDtype) -> Self {
        let storage = match dtype {
            FeatureDtype::Float32 => Storage::F32(vec![0.0; rows * cols]),
            FeatureDtype::Float16 => Storage::F16(vec![f16::ZERO; rows * cols]),
        };
        Self { rows, cols, storage }
    }

    pub fn from_f32(rows: usize, cols: usize, values: Vec<f32>, dtype: FeatureDtype) -> Self {
        assert_eq!(values.len(), rows * cols);
        let storage = match dtype {
            FeatureDtype::Float32 => Storage::F32(values),
            FeatureDtype::Float16 => {
                let mut out = vec![f16::ZERO; values.len()];
                out.convert_from_f32_slice(&values);
                Storage::F16(out)
            }
        };
        Self { rows, cols, storage }
    }

    pub fn dtype(&self) -> FeatureDtype {
        match self.storage {
            Storage::F32(_) => FeatureDtype::Float32,
            Storage::F16(_) => FeatureDtype::Float16,
        }
    }

    pub fn bytes(&self) -> usize {
        self.rows * self.cols * if self.dtype() == FeatureDtype::Float32 { 4 } else { 2 }
    }

    /// Writes `values` (whole rows, starting at row `first`).
    pub fn set_rows(&mut self, first: usize, values: &[f32]) {
        let start = first * self.cols;
        match &mut self.storage {
            Storage::F32(v) => v[start..start + values.len()].copy_from_slice(values),
            Storage::F16(v) => v[start..start + values.len()].convert_from_f32_slice(values),
        }
    }

    /// A new matrix of the rows `indices`, in that order.
    pub fn select_rows(&self, indices: &[usize]) -> Self {
        let cols = self.cols;
        let storage = match &self.storage {
            Storage::F32(v) => {
                Storage::F32(indices.iter().flat_map(|&i| v[i * cols..(i + 1) * cols].iter().copied()).collect())
            }
            Storage::F16(v) => {
                Storage::F16(indices.iter().flat_map(|&i| v[i * cols..(i + 1) * cols].iter().copied()).collect())
            }
        };
        Self { rows: indices.len(), cols, storage }
    }

    /// Appends `other`'s rows (same width; converted to this matrix's dtype).
    pub fn append(&mut self, other: &FeatureMatrix) {
        assert_eq!(self.cols, other.cols, "appending rows of another width");
        let mut buf = vec![0f32; self.cols];
        for i in 0..other.rows {
            let row = other.row(i, &mut buf).to_vec();
            match &mut self.storage {
                Storage::F32(v) => v.extend_from_slice(&row),
                Storage::F16(v) => v.extend(row.iter().map(|x| f16::from_f32(*x))),
            }
            self.rows += 1;
        }
    }

    /// Column means and standard deviations (population), accumulated in float64.
    pub fn column_stats(&self) -> Standardizer {
        let cols = self.cols;
        let (sum, sq) = (0..self.rows)
            .into_par_iter()
            .fold(
                || (vec![0f64; cols], vec![0f64; cols], vec![0f32; cols]),
                |(mut sum, mut sq, mut buf), i| {
                    let row = self.row(i, &mut buf);
                    for ((s, q), &x) in sum.iter_mut().zip(sq.iter_mut()).zip(row) {
                        *s += x as f64;
                        *q += x as f64 * x as f64;
                    }
                    (sum, sq, buf)
                },
            )
            .map(|(s, q, _)| (s, q))
            .reduce(
                || (vec![0f64; cols], vec![0f64; cols]),
                |(mut s1, mut q1), (s2, q2)| {
                    s1.iter_mut().zip(&s2).for_each(|(a, b)| *a += b);
                    q1.iter_mut().zip(&q2).for_each(|(a, b)| *a += b);
                    (s1, q1)
                },
            );
        let n = self.rows.max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let inv_std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| {
                let var = (q / n - m * m).max(0.0);
                // Relative to the column's scale: a column that only varies by rounding is constant.
                if var.sqrt() <= 1e-6 * (1.0 + m.abs()) {
                    0.0
                } else {
                    (1.0 / var.sqrt()) as f32
                }
            })
            .collect();
        Standardizer { mean: mean.iter().map(|&m| m as f32).collect(), inv_std }
    }

    /// (x - mean) / std in place, column by column.
    pub fn standardize(&mut self, stats: &Standardizer) {
        assert_eq!(stats.mean.len(), self.cols);
        let cols = self.cols;
        let apply = |row: &mut [f32]| {
            for ((x, m), s) in row.iter_mut().zip(&stats.mean).zip(&stats.inv_std) {
                *x = (*x - m) * s;
            }
        };
        match &mut self.storage {
            Storage::F32(v) => v.par_chunks_mut(cols).for_each(apply),
            Storage::F16(v) => v.par_chunks_mut(cols).for_each_init(
                || vec![0f32; cols],
                |buf, row| {
                    row.convert_to_f32_slice(buf);
                    apply(buf);
                    row.convert_from_f32_slice(buf);
                },
            ),
        }
    }

    /// Saves as `.npy` (`<f4` or `<f2`), atomically.
    pub fn write_npy(&self, path: &Path) -> Result<(), NpyError> {
        let shape = [self.rows as u64, self.cols as u64];
        match &self.storage {
            Storage::F32(v) => npy::write_array(path, &shape, v),
            Storage::F16(v) => npy::write_array(path, &shape, v),
        }
    }

    /// Loads a 2-D `.npy` of float32 or float16.
    pub fn read_npy(path: &Path) -> Result<Self, NpyError> {
        let header = npy::read_header(path)?;
        let bad = |why: String| NpyError::Format { path: path.to_owned(), why };
        if header.shape.len() != 2 {
            return Err(bad(format!("features must be 2-D, found shape {:?}", header.shape)));
        }
        let (rows, cols) = (header.shape[0] as usize, header.shape[1] as usize);
        let storage = match header.descr.as_str() {
            "<f2" => Storage::F16(npy::read_array::<f16>(path)?.1),
            _ => Storage::F32(npy::read_array::<f32>(path)?.1),
        };
        Ok(Self { rows, cols, storage })
    }
}

impl FeatureRows for FeatureMatrix {
    fn n_rows(&self) -> usize {
        self.rows
    }
    fn n_cols(&self) -> usize {
        self.cols
    }
    fn row<'a>(&'a self, i: usize, buf: &'a mut [f32]) -> &'a [f32] {
        let range = i * self.cols..(i + 1) * self.cols;
        match &self.storage {
            Storage::F32(v) => &v[range],
            Storage::F16(v) => {
                super::kernels::widen_f16(&v[range], &mut buf[..self.cols]);
                &buf[..self.cols]
            }
        }
    }
}

/// A linfa record set, so that the SVM's `Fit`/`Predict` take a `DatasetBase<FeatureMatrix, _>`.
impl linfa::dataset::Records for FeatureMatrix {
    type Elem = f32;
    fn nsamples(&self) -> usize {
        self.rows
    }
    fn nfeatures(&self) -> usize {
        self.cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float16_rows_widen_and_standardize_like_float32() {
        let values: Vec<f32> = (0..24).map(|i| (i % 7) as f32 * 0.5 - 1.0).collect();
        let mut a = FeatureMatrix::from_f32(4, 6, values.clone(), FeatureDtype::Float32);
        let mut b = FeatureMatrix::from_f32(4, 6, values, FeatureDtype::Float16);
        let stats = a.column_stats();
        assert_eq!(stats, b.column_stats(), "these values are exact in float16");
        a.standardize(&stats);
        b.standardize(&stats);
        let (mut ba, mut bb) = (vec![0.0; 6], vec![0.0; 6]);
        for i in 0..4 {
            let (ra, rb) = (a.row(i, &mut ba).to_vec(), b.row(i, &mut bb).to_vec());
            for (x, y) in ra.iter().zip(&rb) {
                assert!((x - y).abs() < 2e-3, "{x} vs {y}");
            }
        }
        let after = a.column_stats();
        for (m, s) in after.mean.iter().zip(&after.inv_std) {
            assert!(m.abs() < 1e-5);
            assert!(*s == 0.0 || (s - 1.0).abs() < 1e-4, "standardised columns have unit spread: {s}");
        }
    }

    #[test]
    fn npy_round_trip_keeps_dtype_and_values() {
        let dir = tempfile::tempdir().unwrap();
        for dtype in [FeatureDtype::Float32, FeatureDtype::Float16] {
            let m = FeatureMatrix::from_f32(3, 5, (0..15).map(|i| i as f32 / 4.0).collect(), dtype);
            let path = dir.path().join("f.npy");
            m.write_npy(&path).unwrap();
            let back = FeatureMatrix::read_npy(&path).unwrap();
            assert_eq!(back.dtype(), dtype);
            let mut buf = vec![0.0; 5];
            assert_eq!(back.row(2, &mut buf), &[2.5, 2.75, 3.0, 3.25, 3.5]);
        }
    }

    #[test]
    fn per_layer_scaling_gives_every_layer_the_same_total_variance() {
        // Two layers of 2 and 6 columns with very different scales; one constant column.
        let (rows, layout) = (50, [2usize, 6]);
        let mut rng = crate::rng::SplitMix(3);
        let values: Vec<f32> =
            (0..rows * 8)
                .map(|k| {
                    if k % 8 == 7 {
                        4.0
                    } else {
                        (rng.uniform(-0.5, 0.5) as f32) * if k % 8 < 2 { 0.01 } else { 30.0 }
                    }
                })
                .collect();
        let layer_variances = |norm: Normalization| {
            let mut m = FeatureMatrix::from_f32(rows, 8, values.clone(), FeatureDtype::Float32);
            m.standardize(&norm.fit(&m, &layout).unwrap());
            let stats = m.column_stats();
            let var: Vec<f64> =
                stats.inv_std.iter().map(|s| if *s == 0.0 { 0.0 } else { 1.0 / (*s as f64).powi(2) }).collect();
            [var[..2].iter().sum::<f64>(), var[2..].iter().sum::<f64>()]
        };
        let [a, b] = layer_variances(Normalization::Standardize);
        assert!((a - 2.0).abs() < 1e-3 && (b - 5.0).abs() < 1e-3, "standardised: {a} {b}");
        let [a, b] = layer_variances(Normalization::PerLayer);
        assert!((a - b).abs() < 1e-3, "per layer: {a} vs {b}");
        assert!((a + b - 7.0).abs() < 1e-3, "the total is kept: {}", a + b);
        assert!(Normalization::None.fit(&FeatureMatrix::zeros(2, 8, FeatureDtype::Float32), &layout).is_none());
    }
}
