//! `faces`: detect faces (OpenCV's YuNet CNN, or the paper's Haar cascade) and crop the
//! sufficiently large ones.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use dcgan_pipeline::config::load_or_print;
use dcgan_pipeline::faces::{eval, DetectorKind, FacesStage};
use dcgan_pipeline::fsutil::write_atomic;
use dcgan_pipeline::stage::cli::{exit_with, run_stage};
use dcgan_pipeline::stage::manifest::read_manifest;
use dcgan_pipeline::stage::{fingerprint, StageArgs};

/// Face crops for the DCGAN faces model. faces.detector = "yunet" (default): OpenCV's YuNet CNN
/// (models/face_detection_yunet_2023mar.onnx, sha256-checked) on a copy of each photo whose
/// longer side is at most faces.detect_max_side, keeping faces scoring >= faces.score_threshold,
/// with five landmarks; "haar": the paper's OpenCV Haar cascade (faces.cascade). Boxes whose side
/// (sqrt(w x h); the cascade's: its side) is at least faces.min_face_side (64) px are kept, as the
/// paper kept "sufficiently high resolution" detections; each becomes a square crop from the
/// full-size photo, faces.align = "box" (around the box; faces.margin, faces.border) or "eyes"
/// (turned so the eyes are level, from the landmarks), resized to faces.size (64).
///
/// Writes to --output: images-NNNNN.npy (uint8, N x 64 x 64 x 3), labels.npy (the photo's folder
/// as class), classes.txt, manifest.jsonl (one row per photo, with every box: position, score and
/// landmarks (YuNet) or neighbours (Haar), kept or why not, output row, crop), summary.json,
/// config.toml; crops/*.png with faces.save_png. Photos without a kept face are "skipped" rows.
/// With --eval-boxes, also eval-boxes.json and a precision/recall table on stdout.
/// Exit status: 0 all photos read, 3 some photos failed (listed in the manifest), 1 the stage
/// could not run, 2 a bad command line.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    stage: StageArgs,

    /// After the run, score its kept boxes against ground-truth boxes (WIDER FACE's format:
    /// {"images": [{"file", "boxes": [[x, y, w, h]], "invalid": [0/1]}]}): precision and recall
    /// at IoU >= 0.5 for faces of side >= faces.min_face_side, invalid or smaller boxes ignored;
    /// YuNet at its threshold and higher ones.
    #[arg(long, value_name = "GT.json")]
    eval_boxes: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    exit_with("faces", run(cli.stage, cli.eval_boxes))
}

fn run(args: StageArgs, eval_boxes: Option<PathBuf>) -> Result<i32> {
    let Some(config) = load_or_print(args.config.as_deref(), &args.sets, args.print_config)? else {
        return Ok(0);
    };
    let output = args.output.clone().expect("clap requires --output");
    let stage = FacesStage::new(config.faces.clone(), Some(&output))?;
    let status = run_stage(
        &stage,
        &args,
        &config.run,
        config.to_toml(),
        &output,
        config.faces.part_size,
        fingerprint(&config.faces),
    )?;
    if let Some(gt) = eval_boxes {
        evaluate_run(&gt, &output, &config.faces)?;
    }
    Ok(status)
}

/// Scores the run in `output` against `gt`; prints the table, writes eval-boxes.json.
fn evaluate_run(gt: &Path, output: &Path, faces: &dcgan_pipeline::faces::FacesConfig) -> Result<()> {
    let truth = eval::read_ground_truth(gt, faces.min_face_side as f64)?;
    let manifest = output.join("manifest.jsonl");
    let rows = read_manifest(&manifest).with_context(|| format!("{}", manifest.display()))?;
    let thresholds: Vec<f64> = match faces.detector {
        DetectorKind::Haar => vec![f64::NEG_INFINITY],
        DetectorKind::Yunet => {
            let t = faces.score_threshold as f64;
            let higher = [0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95].into_iter().filter(|&h| h > t + 1e-9);
            std::iter::once(t).chain(higher).collect()
        }
    };
    let (table, missing) = eval::evaluate(&truth, &eval::kept_boxes(&rows), &thresholds);
    println!(
        "faces --eval-boxes {}: {} photos, faces of side >= {} px, IoU >= {}",
        gt.display(),
        truth.len() - missing.len(),
        faces.min_face_side,
        eval::MATCH_IOU
    );
    print!("{}", eval::format_table(&table));
    if !missing.is_empty() {
        println!(
            "{} ground-truth photos are not in the run (their faces count as missed), e.g. {}",
            missing.len(),
            missing[0]
        );
    }
    let record = serde_json::json!({
        "ground_truth": gt.display().to_string(),
        "min_face_side": faces.min_face_side,
        "match_iou": eval::MATCH_IOU,
        "detector": faces.detector,
        "photos_missing_from_the_run": missing,
        "table": table.iter().map(|c| serde_json::json!({
            "score_threshold": if c.score_threshold.is_finite() { serde_json::json!(c.score_threshold) } else { serde_json::Value::Null },
            "right": c.right, "wrong": c.wrong, "ignored": c.ignored, "faces": c.faces,
            "precision": c.precision(), "recall": c.recall(),
        })).collect::<Vec<_>>(),
    });
    let path = output.join("eval-boxes.json");
    write_atomic(&path, serde_json::to_string_pretty(&record)?.as_bytes())
        .with_context(|| format!("{}", path.display()))?;
    Ok(())
}
