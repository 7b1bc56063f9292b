//! The evaluation at scale's report (eval-scale.md): the set and its labels, recall per edit kind,
//! the crop route's candidates, each curve's best recall at a precision, every curve radius by
//! radius, and removals by detail and bits set. The numbers come from [`super::scale::evaluate`].

use super::labelled::EditKind;
use super::scale::{ScaleReport, Score, CORRELATION_BANDS, PHASH};
use crate::dedupe::clusters::ClusterRule;

/// A cluster rule as the tables name it.
fn rule_label(rule: ClusterRule) -> &'static str {
    match rule {
        ClusterRule::AroundKeeper => "around keeper",
        ClusterRule::SingleLinkage => "single linkage",
    }
}

impl ScaleReport {
    /// The highest recall at precision >= `target` of a curve, with its score.
    pub fn best_at(&self, method: &str, rule: ClusterRule, target: f64) -> Option<&Score> {
        let curve = self.curves.iter().find(|c| c.method == method && c.rule == rule)?;
        curve
            .scores
            .iter()
            .filter(|s| s.precision >= target && s.correct > 0)
            .max_by(|a, b| a.recall.total_cmp(&b.recall).then(b.radius.cmp(&a.radius)))
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        self.write_header(&mut md);
        self.write_recall_by_kind(&mut md);
        self.write_window_candidates(&mut md);
        self.write_best_at_precision(&mut md);
        self.write_curves(&mut md);
        self.write_by_signal(&mut md);
        md
    }

    /// The set, the labels, and what precision and recall mean.
    fn write_header(&self, md: &mut String) {
        md.push_str(&format!(
            "{} photos from {} -> {} images: {} photos with {} edited copies each (planted). {} pairs of originals found to be one photo held twice (32x32 inputs within a mean absolute difference of {} grey levels, among the pairs either hash calls near at its largest radius). {} records unreadable.\n\n",
            self.photos, self.input, self.images, self.planted_photos, self.settings.copies, self.existing_copy_pairs, self.settings.same_photo_mad, self.unreadable.len()
        ));
        md.push_str("Precision: removals whose keeper shows the same photo. Recall: of the planted copies' removals. Lost: photos of which no image is kept. Mixed: the largest cluster holding more than one photo.\n\n");
    }

    /// Recall per edit kind at the configured radius (pHash alone at its best radius).
    fn write_recall_by_kind(&self, md: &mut String) {
        let kinds: Vec<&str> = EditKind::ALL.iter().map(|k| k.label()).collect();
        let kind_cells = |s: &Score| s.recall_by_kind.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(" | ");
        md.push_str(&format!(
            "Recall per edit kind (a planted copy in one cluster with its original), clusters around keepers: the code-based methods at the configured radius {} (the configured stage: {}), pHash alone at its best radius at precision >= 0.99:\n\n| method | radius | precision | recall | {} | photos lost | largest mixed cluster |\n|---|---:|---:|---:|{}---:|---:|\n",
            self.configured_radius,
            self.configured,
            kinds.join(" | "),
            "---:|".repeat(kinds.len())
        ));
        for c in self.curves.iter().filter(|c| c.rule == ClusterRule::AroundKeeper) {
            let s = if c.method == PHASH {
                self.best_at(&c.method, c.rule, 0.99)
            } else {
                c.scores.get(self.configured_radius as usize)
            };
            if let Some(s) = s {
                let name = if c.method == self.configured {
                    format!("**{}** (configured)", c.method)
                } else {
                    c.method.clone()
                };
                md.push_str(&format!(
                    "| {name} | {} | {:.4} | {:.4} | {} | {} ({:.3}%) | {} |\n",
                    s.radius,
                    s.precision,
                    s.recall,
                    kind_cells(s),
                    s.photos_lost,
                    100.0 * s.photos_lost_fraction,
                    s.largest_mixed_cluster
                ));
            }
        }
    }

    /// The crop route's candidate pairs by distance and correlation band.
    fn write_window_candidates(&self, md: &mut String) {
        md.push_str(&format!(
            "\nThe crop route's candidates (whole-crop pHash within d bits of a window pHash of the other image), by the best aligned correlation of their grey thumbnails: pairs of one photo / of two photos. Bands end below {:?}.\n\n| d | {} |\n|---:|{}\n",
            CORRELATION_BANDS,
            CORRELATION_BANDS.iter().map(|b| format!("< {b}")).collect::<Vec<_>>().join(" | "),
            "---:|".repeat(CORRELATION_BANDS.len())
        ));
        for row in &self.window_candidates {
            let cells: Vec<String> =
                row.true_pairs.iter().zip(&row.false_pairs).map(|(t, f)| format!("{t} / {f}")).collect();
            md.push_str(&format!("| {} | {} |\n", row.distance, cells.join(" | ")));
        }
        md.push('\n');
    }

    /// Each curve's highest recall at precision >= 0.99 and >= 0.999.
    fn write_best_at_precision(&self, md: &mut String) {
        md.push_str("Highest recall at a precision, whatever the radius (radius, recall, photos lost, largest mixed cluster):\n\n| hash, clusters | precision >= 0.99 | >= 0.999 |\n|---|---|---|\n");
        for c in &self.curves {
            let cells: Vec<String> = [0.99, 0.999]
                .iter()
                .map(|&t| {
                    self.best_at(&c.method, c.rule, t).map_or("-".into(), |s| {
                        format!(
                            "r {}: recall {:.4}, lost {} ({:.3}%), mixed {}",
                            s.radius,
                            s.recall,
                            s.photos_lost,
                            100.0 * s.photos_lost_fraction,
                            s.largest_mixed_cluster
                        )
                    })
                })
                .collect();
            md.push_str(&format!("| {}, {} | {} |\n", c.method, rule_label(c.rule), cells.join(" | ")));
        }
    }

    /// Every curve radius by radius, with its false pairs.
    fn write_curves(&self, md: &mut String) {
        let kinds: Vec<&str> = EditKind::ALL.iter().map(|k| k.label()).collect();
        let kind_cells = |s: &Score| s.recall_by_kind.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(" | ");
        for c in &self.curves {
            let rates = self.pair_rates.iter().find(|r| r.method == c.method).expect("a rate per method");
            md.push_str(&format!(
                "\n{}, clusters {}:\n\n| radius | removed | precision | recall | false removals | of which existing copies correct | photos lost | lost % | largest mixed cluster | mixed clusters | false pairs | per 10^9 distinct pairs | {} |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{}\n",
                c.method,
                rule_label(c.rule),
                kinds.join(" | "),
                "---:|".repeat(kinds.len())
            ));
            for s in &c.scores {
                md.push_str(&format!(
                    "| {} | {} | {:.4} | {:.4} | {} | {} | {} | {:.3} | {} | {} | {} | {:.2} | {} |\n",
                    s.radius,
                    s.removed,
                    s.precision,
                    s.recall,
                    s.false_removals,
                    s.correct_existing,
                    s.photos_lost,
                    100.0 * s.photos_lost_fraction,
                    s.largest_mixed_cluster,
                    s.mixed_clusters,
                    rates.false_pairs[s.radius as usize],
                    rates.rate[s.radius as usize] * 1e9,
                    kind_cells(s)
                ));
            }
        }
    }

    /// Removals at one radius by the detail of the images and the bits set of their codes.
    fn write_by_signal(&self, md: &mut String) {
        let radius = self.settings.detail_radius.min(self.settings.max_radius);
        for (title, rows) in [
            (
                "detail (standard deviation of the 32x32 input, grey levels; the less detailed of removed and keeper)",
                &self.detail,
            ),
            ("bits set in the code (the fewer of removed and keeper)", &self.bits_set),
        ] {
            md.push_str(&format!(
                "\nRemovals by {title}, autoencoder around keepers at radius {radius}:\n\n| below | images | correct removals | false removals |\n|---:|---:|---:|---:|\n"
            ));
            for r in rows {
                md.push_str(&format!("| {} | {} | {} | {} |\n", r.below, r.images, r.correct, r.false_removals));
            }
        }
    }
}
