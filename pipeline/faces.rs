//! `faces`: detect faces with OpenCV's Haar cascade and crop the sufficiently large ones.

use anyhow::Result;
use clap::Parser;
use dcgan_pipeline::faces::FacesStage;
use dcgan_pipeline::config::load_or_print;
use dcgan_pipeline::stage::cli::{exit_with, run_stage};
use dcgan_pipeline::stage::{fingerprint, StageArgs};

/// Face crops for the DCGAN faces model: OpenCV's Haar cascade (faces.cascade) finds faces,
/// boxes whose shorter side is at least faces.min_face_side (64) px are kept, as the paper kept
/// "sufficiently high resolution" detections; each becomes a square crop (faces.margin,
/// faces.border) resized to faces.size (64) with area interpolation.
///
/// Writes to --output: images-NNNNN.npy (uint8, N x 64 x 64 x 3), labels.npy (the photo's folder
/// as class), classes.txt, manifest.jsonl (one row per photo, with every box: position,
/// neighbours, kept or why not, output row), summary.json, config.toml; crops/*.png with
/// faces.save_png. Photos without a kept face are "skipped" rows.
/// Exit status: 0 all photos read, 3 some photos failed (listed in the manifest), 1 the stage
/// could not run, 2 a bad command line.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    stage: StageArgs,
}

fn main() {
    exit_with("faces", run(Cli::parse().stage))
}

fn run(args: StageArgs) -> Result<i32> {
    let Some(config) = load_or_print(args.config.as_deref(), &args.sets, args.print_config)? else {
        return Ok(0);
    };
    let output = args.output.clone().expect("clap requires --output");
    let stage = FacesStage::new(config.faces.clone(), Some(&output))?;
    run_stage(&stage, &args, &config.run, config.to_toml(), &output, config.faces.part_size, fingerprint(&config.faces))
}
