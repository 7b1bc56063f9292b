//! `faces`: detect faces (OpenCV's YuNet CNN, or the paper's Haar cascade) and crop the
//! sufficiently large ones.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use dcgan_pipeline::config::load_or_print;
use dcgan_pipeline::faces::{eval, FacesStage};
use dcgan_pipeline::stage::cli::{exit_with, run_stage};
use dcgan_pipeline::stage::{fingerprint, StageArgs};

/// Face crops for the DCGAN faces model. faces.detector = "yunet" (default): OpenCV's YuNet CNN
/// (models/face_detection_yunet_2023mar.onnx, sha256-checked) on a copy of each photo in which a
/// faces.min_face_side face measures faces.detect_face_px, keeping faces scoring >=
/// faces.score_threshold, with five landmarks; each box scoring below faces.second_look_below is
/// looked at again (YuNet on its neighbourhood and its mirror), and a box that look rejects can be
/// given back by a face-presence model (faces.presence_rescue). "scrfd": a model file you supply
/// (configs/scrfd.toml); "haar": the paper's OpenCV Haar cascade (faces.cascade). Boxes whose side
/// (faces.side_measure: sqrt(w x h), or the longer side; the cascade's: its side) is at least
/// faces.min_face_side (64) px are kept, as the paper kept "sufficiently high resolution"
/// detections. The default keeps precision first; --config configs/faces-recall-first.toml finds
/// more faces (docs/faces.md). Each kept box becomes a square crop from the full-size photo,
/// faces.align = "box" (around the box; faces.margin, faces.border) or "eyes"
/// (turned so the eyes are level, from the landmarks), resized to faces.size (64).
///
/// Writes to --output: images-NNNNN.npy (uint8, N x 64 x 64 x 3), labels.npy (the photo's folder
/// as class), classes.jsonl, manifest.jsonl (one row per photo, with every box: position, score and
/// landmarks (YuNet) or neighbours (Haar), kept or why not, output row, crop), summary.json,
/// config.toml; crops/*.png with faces.save_png. Photos without a kept face are "skipped" rows.
/// With --eval-boxes, also eval-boxes.json, a precision/recall table on stdout and (folder input)
/// eval-wrong-boxes.png, the wrong boxes at the configured threshold.
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
    // Read and checked before the run: a missing or malformed file stops it at once.
    let truth = match &eval_boxes {
        Some(gt) => Some(eval::read_ground_truth(gt, config.faces.min_face_side as f64)?),
        None => None,
    };
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
    if let (Some(gt), Some(truth)) = (eval_boxes, truth) {
        print!("{}", eval::score_run(&truth, &gt, args.input.as_deref(), &output, &config.faces)?);
    }
    Ok(status)
}
