//! Choosing the SVM's C on a validation split, written once for every caller (the protocol's
//! headline and 400-per-class columns, the snapshot table, the digits demo): each C of a grid is
//! fitted and scored by the caller's closure; the best validation accuracy wins, ties going to the
//! C tried first (the smaller, when the grid ascends: the simpler model). Optionally the grid is
//! then refined between the best C and its neighbours.

use anyhow::Result;

/// One C tried: its validation accuracy and whatever else the caller's scoring returned.
#[derive(Debug, Clone)]
pub struct Tried<T> {
    pub c: f64,
    pub accuracy: f64,
    pub detail: T,
}

/// The outcome of a search: the chosen C (with its accuracy and detail), and every C tried in order.
#[derive(Debug, Clone)]
pub struct CChoice<T> {
    pub best: Tried<T>,
    /// (C, validation accuracy) of every C tried, in the order tried.
    pub tried: Vec<(f64, f64)>,
}

impl<T> CChoice<T> {
    pub fn c(&self) -> f64 {
        self.best.c
    }

    pub fn accuracy(&self) -> f64 {
        self.best.accuracy
    }
}

/// The C values to try and how many refining steps follow the grid.
#[derive(Debug, Clone, Copy)]
pub struct CSearch<'a> {
    pub grid: &'a [f64],
    /// After the grid: this many more C values between the best and each neighbour (0 = none).
    pub refine_steps: usize,
}

impl<'a> CSearch<'a> {
    /// The grid only.
    pub fn grid(grid: &'a [f64]) -> Self {
        Self { grid, refine_steps: 0 }
    }

    /// Tries every C (`fit_and_score` fits at C and returns the validation accuracy and a detail
    /// to keep); returns the best. The grid must not be empty.
    pub fn choose<T>(&self, mut fit_and_score: impl FnMut(f64) -> Result<(f64, T)>) -> Result<CChoice<T>> {
        anyhow::ensure!(!self.grid.is_empty(), "the C grid is empty");
        let mut best: Option<Tried<T>> = None;
        let mut tried = Vec::new();
        let mut try_all = |values: &[f64], best: &mut Option<Tried<T>>| -> Result<()> {
            for &c in values {
                let (accuracy, detail) = fit_and_score(c)?;
                tried.push((c, accuracy));
                if best.as_ref().is_none_or(|b| accuracy > b.accuracy) {
                    *best = Some(Tried { c, accuracy, detail });
                }
            }
            Ok(())
        };
        try_all(self.grid, &mut best)?;
        if self.refine_steps > 0 {
            let around = best.as_ref().expect("a non-empty grid was scored").c;
            try_all(&refined_c(self.grid, around, self.refine_steps), &mut best)?;
        }
        Ok(CChoice { best: best.expect("a non-empty grid was scored"), tried })
    }
}

/// Whether `c` is the smallest or largest of a grid of two or more values.
pub fn c_at_edge(grid: &[f64], c: f64) -> bool {
    let (lo, hi) = grid.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &g| (lo.min(g), hi.max(g)));
    lo < hi && (c == lo || c == hi)
}

/// The extra C values a refinement tries: `steps` geometric steps from `best` toward each of its
/// neighbours in `grid` (one side only at the grid's ends).
pub fn refined_c(grid: &[f64], best: f64, steps: usize) -> Vec<f64> {
    let mut sorted = grid.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted.dedup();
    let Some(at) = sorted.iter().position(|c| *c == best) else { return Vec::new() };
    let neighbours = [at.checked_sub(1).map(|i| sorted[i]), sorted.get(at + 1).copied()];
    let mut out = Vec::new();
    for n in neighbours.into_iter().flatten() {
        for j in 1..=steps {
            out.push(best * (n / best).powf(j as f64 / (steps + 1) as f64));
        }
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_c_at_either_end_of_the_grid_is_at_its_edge_and_one_inside_is_not() {
        let grid = [1e-5, 3e-5, 1e-4, 3e-4];
        assert!(c_at_edge(&grid, 1e-5) && c_at_edge(&grid, 3e-4));
        assert!(!c_at_edge(&grid, 3e-5) && !c_at_edge(&grid, 1e-4));
        // A grid of one value has no edge to widen.
        assert!(!c_at_edge(&[1e-4], 1e-4));
    }

    #[test]
    fn the_best_accuracy_wins_and_a_tie_goes_to_the_c_tried_first() {
        let accuracy = |c: f64| if c < 0.05 { 0.5 } else { 0.8 };
        let choice = CSearch::grid(&[0.01, 0.1, 1.0]).choose(|c| Ok((accuracy(c), c * 2.0))).unwrap();
        assert_eq!((choice.c(), choice.accuracy(), choice.best.detail), (0.1, 0.8, 0.2));
        assert_eq!(choice.tried, vec![(0.01, 0.5), (0.1, 0.8), (1.0, 0.8)]);
    }

    #[test]
    fn refining_tries_the_steps_between_the_best_c_and_its_neighbours_after_the_grid() {
        // Accuracy peaks at C = 0.3, between the grid's 0.1 and 1.0.
        let accuracy = |c: f64| 1.0 - (c.ln() - 0.3f64.ln()).abs();
        let search = CSearch { grid: &[0.01, 0.1, 1.0], refine_steps: 1 };
        let choice = search.choose(|c| Ok((accuracy(c), ()))).unwrap();
        let tried: Vec<f64> = choice.tried.iter().map(|t| t.0).collect();
        assert_eq!(tried.len(), 5, "{tried:?}");
        assert_eq!(&tried[..3], &[0.01, 0.1, 1.0]);
        assert!((tried[3] - 0.0316227766).abs() < 1e-9, "{tried:?}");
        assert!((tried[4] - 0.316227766).abs() < 1e-9, "{tried:?}");
        assert!((choice.c() - 0.316227766).abs() < 1e-9);
    }

    #[test]
    fn an_error_while_fitting_stops_the_search() {
        let err =
            CSearch::grid(&[0.1, 1.0]).choose(|c| if c > 0.5 { anyhow::bail!("no fit at {c}") } else { Ok((0.5, ())) });
        assert!(err.unwrap_err().to_string().contains("no fit at 1"));
    }
}
