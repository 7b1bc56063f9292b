//! Row adapters over feature matrices, without copying: a subset of rows, two matrices stacked, and
//! a split's features (with their mirrored images' rows) fitted and predicted on index lists. The
//! protocol, snapshot scoring (select.rs) and the digits checks (digits.rs) share them.

use anyhow::Result;
use linfa::dataset::Records;
use linfa::traits::Fit;
use linfa::DatasetBase;
use ndarray::{Array1, ArrayView1};

use super::matrix::{FeatureMatrix, FeatureRows};
use super::svm::{L2Svm, L2SvmValidParams};

/// Rows `indices` of a matrix, without copying them.
pub struct Subset<'a, R> {
    pub rows: &'a R,
    pub indices: &'a [usize],
}

impl<R: FeatureRows> FeatureRows for Subset<'_, R> {
    fn n_rows(&self) -> usize {
        self.indices.len()
    }
    fn n_cols(&self) -> usize {
        self.rows.n_cols()
    }
    fn row<'a>(&'a self, i: usize, buf: &'a mut [f32]) -> &'a [f32] {
        self.rows.row(self.indices[i], buf)
    }
}

/// linfa's records, so that the SVM fits a `DatasetBase` of a subset (`Fit`).
impl<R: FeatureRows> Records for Subset<'_, R> {
    type Elem = f32;
    fn nsamples(&self) -> usize {
        self.n_rows()
    }
    fn nfeatures(&self) -> usize {
        self.n_cols()
    }
}

/// The rows of `first` then those of `second` (a training set with its mirrored copies).
pub struct Stacked<'a, A, B> {
    pub first: &'a A,
    pub second: &'a B,
}

impl<A: FeatureRows, B: FeatureRows> FeatureRows for Stacked<'_, A, B> {
    fn n_rows(&self) -> usize {
        self.first.n_rows() + self.second.n_rows()
    }
    fn n_cols(&self) -> usize {
        self.first.n_cols()
    }
    fn row<'a>(&'a self, i: usize, buf: &'a mut [f32]) -> &'a [f32] {
        let n = self.first.n_rows();
        if i < n {
            self.first.row(i, buf)
        } else {
            self.second.row(i - n, buf)
        }
    }
}

impl<A: FeatureRows, B: FeatureRows> Records for Stacked<'_, A, B> {
    type Elem = f32;
    fn nsamples(&self) -> usize {
        self.n_rows()
    }
    fn nfeatures(&self) -> usize {
        self.n_cols()
    }
}

/// A split's features and, with `flips`, those of its mirrored images (row for row).
pub struct SplitFeatures<'a> {
    pub x: &'a FeatureMatrix,
    pub flipped: Option<&'a FeatureMatrix>,
}

impl SplitFeatures<'_> {
    /// Fits on rows `indices` (and their mirrored copies, labelled alike).
    pub fn fit(&self, params: &L2SvmValidParams, indices: &[usize], labels: &[usize]) -> Result<L2Svm> {
        let rows = Subset { rows: self.x, indices };
        Ok(match self.flipped {
            None => params.fit(&DatasetBase::new(rows, ArrayView1::from(labels)))?,
            Some(f) => {
                let doubled: Array1<usize> = labels.iter().chain(labels).copied().collect();
                params
                    .fit(&DatasetBase::new(Stacked { first: &rows, second: &Subset { rows: f, indices } }, doubled))?
            }
        })
    }

    /// The predicted class of rows `indices`: the largest decision value, averaged with the mirrored
    /// image's where there is one.
    pub fn predict(&self, model: &L2Svm, indices: &[usize]) -> Vec<usize> {
        let mut scores = model.decision_values(&Subset { rows: self.x, indices });
        if let Some(f) = self.flipped {
            let mirrored = model.decision_values(&Subset { rows: f, indices });
            scores.iter_mut().zip(mirrored).for_each(|(s, m)| *s = 0.5 * (*s + m));
        }
        let k = model.n_classes();
        scores
            .chunks(k)
            .map(|s| s.iter().enumerate().fold(0, |best, (c, v)| if *v > s[best] { c } else { best }))
            .collect()
    }

    pub fn all(&self) -> Vec<usize> {
        (0..self.x.n_rows()).collect()
    }
}
