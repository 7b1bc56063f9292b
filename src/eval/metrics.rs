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
                if n == 0 { 0.0 } else { row[c] as f64 / n as f64 }
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

    /// A heat map of the row-normalised matrix (true class down, predicted across; darker blue =
    /// more), 32 px per cell. The numbers are in confusion.csv and metrics.json.
    pub fn write_confusion_png(&self, path: &Path) -> anyhow::Result<()> {
        const CELL: u32 = 32;
        let k = self.confusion.len() as u32;
        let mut img = image::RgbImage::from_pixel(k * CELL + 1, k * CELL + 1, image::Rgb([200, 200, 200]));
        for (t, row) in self.confusion.iter().enumerate() {
            let n = row.iter().sum::<usize>().max(1) as f64;
            for (p, &v) in row.iter().enumerate() {
                let share = v as f64 / n;
                let shade = |full: f64| (255.0 - share * (255.0 - full)).round() as u8;
                let colour = image::Rgb([shade(8.0), shade(48.0), shade(107.0)]);
                for y in 1..CELL {
                    for x in 1..CELL {
                        img.put_pixel(p as u32 * CELL + x, t as u32 * CELL + y, colour);
                    }
                }
            }
        }
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
        crate::fsutil::write_atomic(path, &bytes)?;
        Ok(())
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
