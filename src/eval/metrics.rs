//! Accuracy, per-class accuracy and the confusion matrix, with its picture.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassificationMetrics {
    pub accuracy: f64,
    /// Recall of each class: correct / members.
    pub per_class_accuracy: Vec<f64>,
    /// confusion[true][predicted].
    pub confusion: Vec<Vec<usize>>,
}

impl ClassificationMetrics {
    pub fn new(truth: &[usize], predicted: &[usize], classes: usize) -> Self {
        assert_eq!(truth.len(), predicted.len());
        let mut confusion = vec![vec![0usize; classes]; classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            confusion[t][p] += 1;
        }
        let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
        let per_class_accuracy = confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let n: usize = row.iter().sum();
                if n == 0 {
                    0.0
                } else {
                    row[c] as f64 / n as f64
                }
            })
            .collect();
        Self { accuracy: correct as f64 / truth.len().max(1) as f64, per_class_accuracy, confusion }
    }

    /// Rows are true classes, columns predicted ones.
    pub fn confusion_csv(&self, names: &[&str]) -> String {
        let mut out = format!("true\\predicted,{}\n", names.join(","));
        for (c, row) in self.confusion.iter().enumerate() {
            let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
            out += &format!("{},{}\n", names.get(c).copied().unwrap_or("?"), cells.join(","));
        }
        out
    }

    /// The matrix as a picture: class names on both axes, counts in the cells, shaded by their
    /// share of the row (see [`crate::plots::render_confusion`]).
    pub fn write_confusion_png(&self, names: &[&str], path: &Path) -> Result<(), crate::plots::PlotError> {
        crate::plots::write_png(&crate::plots::render_confusion(&self.confusion, names, crate::plots::Text::On)?, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up() {
        let m = ClassificationMetrics::new(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0], 3);
        assert_eq!(m.confusion, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]);
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        assert_eq!(m.per_class_accuracy, vec![0.5, 1.0, 0.0]);
        assert!(m.confusion_csv(&["a", "b", "c"]).starts_with("true\\predicted,a,b,c\na,1,1,0\n"));
    }
}
