//! linfa-svm as an independent check of our solver, on subsets small enough for it: it builds a
//! dense n x n kernel matrix even for the linear kernel and solves the hinge-loss (L1) SVM by SMO,
//! so it agrees with the L2-SVM in accuracy, not in weights.

use linfa::dataset::DatasetBase;
use linfa::traits::Fit;
use linfa_svm::Svm;
use ndarray::{Array1, Array2};

use super::matrix::FeatureRows;

fn to_f64(rows: &impl FeatureRows) -> Array2<f64> {
    let mut buf = vec![0f32; rows.n_cols()];
    let mut out = Array2::<f64>::zeros((rows.n_rows(), rows.n_cols()));
    for i in 0..rows.n_rows() {
        for (o, v) in out.row_mut(i).iter_mut().zip(rows.row(i, &mut buf)) {
            *o = *v as f64;
        }
    }
    out
}

/// One-vs-rest linear linfa-svm with penalty `c`, fitted on `train` and predicting `test`.
pub fn linfa_svm_predictions(
    train: &impl FeatureRows,
    labels: &[usize],
    test: &impl FeatureRows,
    classes: usize,
    c: f64,
) -> Result<Vec<usize>, linfa_svm::SvmError> {
    let x = to_f64(train);
    let t = to_f64(test);
    let mut scores = Array2::<f64>::zeros((t.nrows(), classes));
    for class in 0..classes {
        let y: Array1<bool> = labels.iter().map(|&l| l == class).collect();
        let dataset = DatasetBase::new(x.clone(), y);
        let model = Svm::<f64, bool>::params().linear_kernel().pos_neg_weights(c, c).fit(&dataset)?;
        for (i, row) in t.rows().into_iter().enumerate() {
            scores[[i, class]] = model.weighted_sum(&row) - model.rho;
        }
    }
    Ok(scores
        .rows()
        .into_iter()
        .map(|s| s.iter().enumerate().fold(0, |b, (k, v)| if *v > s[b] { k } else { b }))
        .collect())
}
