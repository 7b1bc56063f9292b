//! `crop`: ImageNet-style trees (train/<wnid>/*.JPEG) to 32x32 min-resized center crops, packed.

use anyhow::Result;
use clap::Parser;
use dcgan_pipeline::config::load_or_print;
use dcgan_pipeline::crop::CropStage;
use dcgan_pipeline::stage::cli::{exit_with, run_stage};
use dcgan_pipeline::stage::{fingerprint, StageArgs};

/// Min-resized center crops, as the DCGAN paper trained on: scale the shorter side to
/// crop.size (32) with antialiasing, keep the central square. Classes are the input's folder
/// names, sorted (ImageNet: wnids).
///
/// Writes to --output: images-NNNNN.npy (uint8, N x size x size x 3), labels.npy (int64),
/// classes.jsonl (label i: line i, a JSON string), manifest.jsonl (one row per input), summary.json,
/// config.toml.
/// Exit status: 0 all inputs cropped, 3 some inputs failed (listed in the manifest), 1 the stage
/// could not run, 2 a bad command line.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    stage: StageArgs,
}

fn main() {
    exit_with("crop", run(Cli::parse().stage))
}

fn run(args: StageArgs) -> Result<i32> {
    let Some(config) = load_or_print(args.config.as_deref(), &args.sets, args.print_config)? else {
        return Ok(0);
    };
    let output = args.output.clone().expect("clap requires --output");
    let stage = CropStage::new(config.crop.clone());
    run_stage(&stage, &args, &config.run, config.to_toml(), &output, config.crop.part_size, fingerprint(&config.crop))
}
