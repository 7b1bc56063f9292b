//! The paper's "regularized linear L2-SVM": one-vs-rest, squared hinge loss, L2 penalty, solved in
//! the dual by coordinate descent (Hsieh et al., ICML 2008; LIBLINEAR's `-s 1`).
//!
//! For class k with y_i = +1 on its samples and -1 elsewhere, the dual is
//! min_a 1/2 a'Qa - sum(a), a >= 0, Q_ij = y_i y_j x_i.x_j + delta_ij / (2C), and w = sum a_i y_i x_i.
//! One coordinate step needs only w and x_i: G = y_i w.x_i - 1 + a_i / (2C),
//! a_i <- max(a_i - G / Q_ii, 0), w += (a_new - a_old) y_i x_i.
//!
//! What differs from running LIBLINEAR once per class: each sample's row is read once per pass for
//! all the classes a thread owns (ten classes, one row fetch: the matrix is GBs, the row fits in
//! cache); classes are split across threads, each with its own w, so threads never synchronise and
//! the result does not depend on the thread count. Shrinking and the stopping rule (projected
//! gradient spread <= tol, then one unshrunk pass to confirm) are LIBLINEAR's, per class.

use std::time::Instant;

use linfa::dataset::{AsSingleTargets, DatasetBase, Records};
use linfa::traits::{Fit, PredictInplace};
use linfa::ParamGuard;
use ndarray::Array1;
use rayon::prelude::*;
use serde::Serialize;

use super::kernels::{axpy_many, dot, dot_many};
use super::matrix::FeatureRows;
use crate::rng::SplitMix;

#[derive(Debug, thiserror::Error)]
pub enum SvmError {
    #[error("invalid SVM parameter: {0}")]
    Params(String),
    #[error("{0}")]
    Data(String),
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

/// Hyperparameters, checked (linfa's convention: build [`L2SvmParams`], `check()` gives this).
#[derive(Debug, Clone, PartialEq)]
pub struct L2SvmValidParams {
    /// Weight of the loss against 1/2 |w|^2.
    pub c: f64,
    /// Stop when the projected gradients of a class span at most this (LIBLINEAR's eps; 0.1 there).
    pub tol: f64,
    /// Passes over the data before giving up (reported as not converged).
    pub max_passes: usize,
    /// The constant feature appended for the intercept (LIBLINEAR's -B; regularised like w).
    /// 0 fits no intercept.
    pub bias: f32,
    pub shrinking: bool,
    /// 0 = as many as rayon's pool has.
    pub threads: usize,
    /// Seeds the order of each pass.
    pub seed: u64,
    /// Number of classes; 0 = the largest label + 1.
    pub n_classes: usize,
}

/// Hyperparameters, unchecked.
#[derive(Debug, Clone, PartialEq)]
pub struct L2SvmParams(L2SvmValidParams);

impl Default for L2SvmParams {
    fn default() -> Self {
        Self(L2SvmValidParams {
            c: 1.0,
            tol: 0.1,
            max_passes: 1000,
            bias: 1.0,
            shrinking: true,
            threads: 0,
            seed: 0,
            n_classes: 0,
        })
    }
}

impl L2SvmParams {
    pub fn c(mut self, c: f64) -> Self {
        self.0.c = c;
        self
    }
    pub fn tol(mut self, tol: f64) -> Self {
        self.0.tol = tol;
        self
    }
    pub fn max_passes(mut self, n: usize) -> Self {
        self.0.max_passes = n;
        self
    }
    pub fn bias(mut self, bias: f32) -> Self {
        self.0.bias = bias;
        self
    }
    pub fn shrinking(mut self, on: bool) -> Self {
        self.0.shrinking = on;
        self
    }
    pub fn threads(mut self, n: usize) -> Self {
        self.0.threads = n;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
    pub fn n_classes(mut self, n: usize) -> Self {
        self.0.n_classes = n;
        self
    }
}

impl ParamGuard for L2SvmParams {
    type Checked = L2SvmValidParams;
    type Error = SvmError;

    fn check_ref(&self) -> Result<&L2SvmValidParams, SvmError> {
        let p = &self.0;
        if !(p.c.is_finite() && p.c > 0.0) {
            return Err(SvmError::Params(format!("C must be positive, got {}", p.c)));
        }
        if !(p.tol.is_finite() && p.tol > 0.0) {
            return Err(SvmError::Params(format!("tol must be positive, got {}", p.tol)));
        }
        if p.max_passes == 0 {
            return Err(SvmError::Params("max_passes must be at least 1".into()));
        }
        if !p.bias.is_finite() || p.bias < 0.0 {
            return Err(SvmError::Params(format!("bias must be >= 0, got {}", p.bias)));
        }
        Ok(p)
    }

    fn check(self) -> Result<L2SvmValidParams, SvmError> {
        self.check_ref()?;
        Ok(self.0)
    }
}

/// How the fit went, per class.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub passes: Vec<usize>,
    pub converged: Vec<bool>,
    pub support_vectors: Vec<usize>,
    pub seconds: f64,
}

/// A fitted one-vs-rest linear L2-SVM.
#[derive(Debug, Clone)]
pub struct L2Svm {
    /// One weight vector per class.
    pub weights: Vec<Vec<f32>>,
    /// Intercepts (already multiplied by the bias feature).
    pub intercepts: Vec<f32>,
    pub report: FitReport,
}

impl L2Svm {
    pub fn params() -> L2SvmParams {
        L2SvmParams::default()
    }

    pub fn n_classes(&self) -> usize {
        self.weights.len()
    }

    /// w_k . x + b_k for every row and class (rows x classes, row-major).
    pub fn decision_values(&self, rows: &impl FeatureRows) -> Vec<f32> {
        let k = self.n_classes();
        let mut out = vec![0f32; rows.n_rows() * k];
        out.par_chunks_mut(k).enumerate().for_each_init(
            || vec![0f32; rows.n_cols()],
            |buf, (i, scores)| {
                let x = rows.row(i, buf);
                for (c, s) in scores.iter_mut().enumerate() {
                    *s = dot(&self.weights[c], x) + self.intercepts[c];
                }
            },
        );
        out
    }

    /// The class with the largest decision value, per row.
    pub fn predict_rows(&self, rows: &impl FeatureRows) -> Vec<usize> {
        let k = self.n_classes();
        self.decision_values(rows)
            .chunks(k)
            .map(|s| s.iter().enumerate().fold(0, |best, (c, v)| if *v > s[best] { c } else { best }))
            .collect()
    }

    /// The primal objective of each class's binary problem:
    /// 1/2 (|w|^2 + b^2) + C sum max(0, 1 - y (w.x + b))^2, with b the intercept over the bias feature.
    pub fn primal_objectives(&self, rows: &impl FeatureRows, labels: &[usize], c: f64, bias: f32) -> Vec<f64> {
        let scores = self.decision_values(rows);
        let k = self.n_classes();
        (0..k)
            .map(|class| {
                let w2: f64 = self.weights[class].iter().map(|w| (*w as f64).powi(2)).sum();
                let wb = if bias > 0.0 { self.intercepts[class] as f64 / bias as f64 } else { 0.0 };
                let loss: f64 = labels
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| {
                        let y = if l == class { 1.0 } else { -1.0 };
                        (1.0 - y * scores[i * k + class] as f64).max(0.0).powi(2)
                    })
                    .sum();
                0.5 * (w2 + wb * wb) + c * loss
            })
            .collect()
    }
}

/// Per-class solver state for the classes one thread owns.
struct ClassState {
    w: Vec<f32>,
    /// Weight of the bias feature.
    wb: f64,
    alpha: Vec<f64>,
    /// Samples still in this class's active set.
    active: Vec<bool>,
    active_count: usize,
    pg_max_old: f64,
    pg_min_old: f64,
    done: bool,
    passes: usize,
}

impl ClassState {
    /// Every sample active, every alpha zero, on `n` samples.
    fn new(n: usize) -> Self {
        ClassState {
            w: Vec::new(), // filled from `weights` at the end
            wb: 0.0,
            alpha: vec![0.0; n],
            active: vec![true; n],
            active_count: n,
            pg_max_old: f64::INFINITY,
            pg_min_old: f64::NEG_INFINITY,
            done: false,
            passes: 0,
        }
    }

    /// Ends a pass whose projected gradients spanned `pg_min..=pg_max` (NEG_INFINITY: no sample was
    /// looked at): done when they are within `tol` on all `n` samples, else the shrinking bounds of
    /// the next pass.
    fn end_pass(&mut self, pg_max: f64, pg_min: f64, tol: f64, n: usize) {
        self.passes += 1;
        let (hi, lo) = if pg_max == f64::NEG_INFINITY { (0.0, 0.0) } else { (pg_max, pg_min) };
        if hi - lo <= tol {
            if self.active_count == n {
                self.done = true;
            } else {
                // Converged on the shrunk set: confirm on all samples.
                self.active.iter_mut().for_each(|a| *a = true);
                self.active_count = n;
                self.pg_max_old = f64::INFINITY;
                self.pg_min_old = f64::NEG_INFINITY;
            }
        } else {
            self.pg_max_old = if hi > 0.0 { hi } else { f64::INFINITY };
            self.pg_min_old = if lo < 0.0 { lo } else { f64::NEG_INFINITY };
        }
    }
}

/// Solves the binary problems of `classes` together, reading each row once per pass for all of them.
fn solve_classes(
    rows: &impl FeatureRows,
    labels: &[usize],
    classes: std::ops::Range<usize>,
    sq_norms: &[f64],
    p: &L2SvmValidParams,
) -> Vec<ClassState> {
    let n = rows.n_rows();
    let d = rows.n_cols();
    let diag = 0.5 / p.c; // D_ii of the L2-loss dual
    let bias = p.bias as f64;
    let mut states: Vec<ClassState> = classes.clone().map(|_| ClassState::new(n)).collect();
    let mut rng = SplitMix(p.seed ^ 0x5851_F42D_4C95_7F2D);
    let mut order: Vec<usize> = (0..n).collect();
    let mut buf = vec![0f32; d];
    let mut pg_max = vec![0f64; states.len()];
    let mut pg_min = vec![0f64; states.len()];
    // Kept apart from the states so that one sweep over a row can update several at once.
    let mut weights: Vec<Vec<f32>> = vec![vec![0.0; d]; states.len()];
    let (mut active_classes, mut dots, mut updates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..p.max_passes {
        if states.iter().all(|s| s.done) {
            break;
        }
        // The whole order is reshuffled every pass, whatever is shrunk, so that each class sees the
        // same sequence however the classes are grouped onto threads.
        rng.shuffle(&mut order);
        pg_max.iter_mut().for_each(|v| *v = f64::NEG_INFINITY);
        pg_min.iter_mut().for_each(|v| *v = f64::INFINITY);
        for &i in &order {
            active_classes.clear();
            active_classes.extend((0..states.len()).filter(|&s| !states[s].done && states[s].active[i]));
            if active_classes.is_empty() {
                continue; // no class of this thread still looks at it: skip the row fetch
            }
            let x = rows.row(i, &mut buf);
            let q_ii = sq_norms[i] + diag;
            dot_many(x, &weights, &active_classes, &mut dots);
            updates.clear();
            for (&s, &wx) in active_classes.iter().zip(&dots) {
                let state = &mut states[s];
                let y = if labels[i] == classes.start + s { 1.0 } else { -1.0 };
                let a = state.alpha[i];
                let g = y * (wx as f64 + state.wb * bias) - 1.0 + a * diag;
                let pg = if a == 0.0 {
                    if p.shrinking && g > state.pg_max_old {
                        state.active[i] = false;
                        state.active_count -= 1;
                        continue;
                    }
                    g.min(0.0)
                } else {
                    g
                };
                pg_max[s] = pg_max[s].max(pg);
                pg_min[s] = pg_min[s].min(pg);
                if pg.abs() > 1e-12 {
                    let a_new = (a - g / q_ii).max(0.0);
                    let step = (a_new - a) * y;
                    state.alpha[i] = a_new;
                    updates.push((s, step as f32));
                    state.wb += step * bias;
                }
            }
            axpy_many(x, &mut weights, &updates);
        }
        for (s, state) in states.iter_mut().enumerate() {
            if !state.done {
                state.end_pass(pg_max[s], pg_min[s], p.tol, n);
            }
        }
    }
    for (state, w) in states.iter_mut().zip(weights) {
        state.w = w;
    }
    states
}

impl L2SvmValidParams {
    /// Fits on any row storage; `labels` are 0..n_classes.
    pub fn fit_rows(&self, rows: &impl FeatureRows, labels: &[usize]) -> Result<L2Svm, SvmError> {
        let p = self;
        let n = rows.n_rows();
        if n == 0 {
            return Err(SvmError::Data("no training samples".into()));
        }
        if labels.len() != n {
            return Err(SvmError::Data(format!("{} labels for {n} samples", labels.len())));
        }
        let max_label = labels.iter().copied().max().unwrap_or(0);
        let k = if p.n_classes == 0 { max_label + 1 } else { p.n_classes };
        if max_label >= k {
            return Err(SvmError::Data(format!("label {max_label} with {k} classes")));
        }
        if k < 2 {
            return Err(SvmError::Data("a classifier needs at least two classes".into()));
        }
        let start = Instant::now();
        let bias2 = (p.bias as f64).powi(2);
        let sq_norms: Vec<f64> = (0..n)
            .into_par_iter()
            .map_init(
                || vec![0f32; rows.n_cols()],
                |buf, i| {
                    let x = rows.row(i, buf);
                    x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() + bias2
                },
            )
            .collect();
        let threads = if p.threads == 0 { rayon::current_num_threads() } else { p.threads };
        let groups = threads.clamp(1, k);
        let bounds: Vec<std::ops::Range<usize>> = (0..groups).map(|g| g * k / groups..(g + 1) * k / groups).collect();
        let pool =
            rayon::ThreadPoolBuilder::new().num_threads(groups).build().map_err(|e| SvmError::Params(e.to_string()))?;
        let states: Vec<ClassState> = pool.install(|| {
            bounds
                .into_par_iter()
                .map(|classes| solve_classes(rows, labels, classes, &sq_norms, p))
                .collect::<Vec<_>>()
                .into_iter()
                .flatten()
                .collect()
        });
        let report = FitReport {
            passes: states.iter().map(|s| s.passes).collect(),
            converged: states.iter().map(|s| s.done).collect(),
            support_vectors: states.iter().map(|s| s.alpha.iter().filter(|a| **a > 0.0).count()).collect(),
            seconds: start.elapsed().as_secs_f64(),
        };
        Ok(L2Svm {
            intercepts: states.iter().map(|s| (s.wb * p.bias as f64) as f32).collect(),
            weights: states.into_iter().map(|s| s.w).collect(),
            report,
        })
    }
}

impl<R, T> Fit<R, T, SvmError> for L2SvmValidParams
where
    R: Records<Elem = f32> + FeatureRows,
    T: AsSingleTargets<Elem = usize>,
{
    type Object = L2Svm;

    fn fit(&self, dataset: &DatasetBase<R, T>) -> Result<L2Svm, SvmError> {
        let targets = dataset.as_single_targets();
        let labels: Vec<usize> = targets.iter().copied().collect();
        self.fit_rows(&dataset.records, &labels)
    }
}

impl<R: Records<Elem = f32> + FeatureRows> PredictInplace<R, Array1<usize>> for L2Svm {
    fn predict_inplace(&self, x: &R, y: &mut Array1<usize>) {
        assert_eq!(y.len(), x.n_rows(), "one target per sample");
        for (t, p) in y.iter_mut().zip(self.predict_rows(x)) {
            *t = p;
        }
    }

    fn default_target(&self, x: &R) -> Array1<usize> {
        Array1::zeros(x.n_rows())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::traits::Predict;
    use ndarray::Array2;

    /// Two Gaussian-ish blobs per class, well apart: linearly separable.
    fn separable(n_per_class: usize, classes: usize, dims: usize) -> (Array2<f32>, Vec<usize>) {
        let mut rng = SplitMix(7);
        let mut x = Array2::<f32>::zeros((n_per_class * classes, dims));
        let mut y = Vec::new();
        for c in 0..classes {
            for j in 0..n_per_class {
                let i = c * n_per_class + j;
                for f in 0..dims {
                    let noise = (rng.next() % 1000) as f32 / 1000.0 - 0.5;
                    x[[i, f]] = noise + if f == c { 4.0 } else { 0.0 };
                }
                y.push(c);
            }
        }
        (x, y)
    }

    #[test]
    fn separates_a_separable_set_perfectly_through_linfa() {
        let (x, y) = separable(60, 4, 6);
        let dataset = DatasetBase::new(x, Array1::from(y.clone()));
        let model = L2Svm::params().c(1.0).tol(1e-3).check().unwrap().fit(&dataset).unwrap();
        let predicted: Array1<usize> = model.predict(&dataset);
        assert_eq!(predicted.to_vec(), y);
        assert!(model.report.converged.iter().all(|c| *c));
    }

    #[test]
    fn result_does_not_depend_on_threads() {
        let (x, y) = separable(30, 5, 8);
        let fit = |threads| L2Svm::params().c(0.5).threads(threads).check().unwrap().fit_rows(&x, &y).unwrap();
        let (a, b) = (fit(1), fit(3));
        assert_eq!(a.weights, b.weights);
        assert_eq!(a.intercepts, b.intercepts);
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(L2Svm::params().c(0.0).check().is_err());
        assert!(L2Svm::params().tol(-1.0).check().is_err());
        let x = Array2::<f32>::zeros((3, 2));
        let err = L2Svm::params().check().unwrap().fit_rows(&x, &[0, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("two classes"), "{err}");
    }

    /// The primal optimum by brute force: coordinate-wise grid refinement over (w1, w2, b), which
    /// for this convex, tiny problem converges to the minimum without any dual reasoning.
    fn brute_force_optimum(x: &Array2<f32>, y: &[f64], c: f64) -> f64 {
        let objective = |w: [f64; 3]| {
            let loss: f64 = (0..x.nrows())
                .map(|i| (1.0 - y[i] * (w[0] * x[[i, 0]] as f64 + w[1] * x[[i, 1]] as f64 + w[2])).max(0.0).powi(2))
                .sum();
            0.5 * (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]) + c * loss
        };
        let mut best = [0.0f64; 3];
        let mut step = 2.0;
        while step > 1e-7 {
            let mut improved = true;
            while improved {
                improved = false;
                for dim in 0..3 {
                    for dir in [-1.0, 1.0] {
                        let mut cand = best;
                        cand[dim] += dir * step;
                        if objective(cand) < objective(best) {
                            best = cand;
                            improved = true;
                        }
                    }
                }
            }
            step /= 2.0;
        }
        objective(best)
    }

    #[test]
    fn matches_a_brute_force_optimum_on_a_tiny_problem() {
        // Overlapping classes, so the loss term matters.
        let points = [
            (0.2, 1.0, 0),
            (1.0, 0.4, 0),
            (0.6, 0.9, 0),
            (-0.3, -0.2, 1),
            (0.5, -0.8, 1),
            (0.7, 0.6, 1),
            (-1.0, 0.3, 1),
        ];
        let x = Array2::from_shape_fn((points.len(), 2), |(i, j)| if j == 0 { points[i].0 } else { points[i].1 });
        let labels: Vec<usize> = points.iter().map(|p| p.2).collect();
        for c in [0.1, 1.0, 10.0] {
            let model = L2Svm::params().c(c).tol(1e-6).check().unwrap().fit_rows(&x, &labels).unwrap();
            let ours = model.primal_objectives(&x, &labels, c, 1.0);
            assert_eq!(ours.len(), 2);
            for (class, &objective) in ours.iter().enumerate() {
                let y: Vec<f64> = labels.iter().map(|&l| if l == class { 1.0 } else { -1.0 }).collect();
                let best = brute_force_optimum(&x, &y, c);
                assert!(
                    (objective - best).abs() <= 1e-4 * (1.0 + best),
                    "C = {c}, class {class}: ours {objective} vs brute force {best}"
                );
            }
        }
    }
}
