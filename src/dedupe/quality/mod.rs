//! How well dedupe finds near-duplicates, measured (`dedupe --eval`, `dedupe --eval-scale`): not part
//! of the stage's run, a room of its own beside it.
//!
//! - [`labelled`]: clean photos with planted edited copies; precision and recall of the pairs each
//!   hash calls near, the autoencoder against pHash, radii chosen on a tune split.
//! - [`scale`]: a large real set with planted copies run through the stage's own path; the removals
//!   themselves scored per radius and cluster rule. `scale_set` builds its set, `scale_truth`
//!   labels and scores it, `scale_report` writes its eval-scale.md.

pub mod labelled;
pub mod scale;
mod scale_report;
mod scale_set;
mod scale_truth;
