//! `crop`: ImageNet-style trees (train/<wnid>/*.JPEG) to 32x32 min-resized center crops, packed.

use anyhow::{Context, Result};
use clap::Parser;
use dcgan_pipeline::config::Config;
use dcgan_pipeline::crop::CropStage;
use dcgan_pipeline::data::ImageSource;
use dcgan_pipeline::stage::{self, fingerprint, RunSpec, StageArgs};

/// Min-resized center crops, as the DCGAN paper trained on: scale the shorter side to
/// crop.size (32) with antialiasing, keep the central square. Classes are the input's folder
/// names, sorted (ImageNet: wnids).
///
/// Writes to --output: images-NNNNN.npy (uint8, N x size x size x 3), labels.npy (int64),
/// classes.txt, manifest.jsonl (one row per input), summary.json, config.toml.
/// Exit status: 0 all inputs cropped, 3 some inputs failed (listed in the manifest), 1 the stage
/// could not run.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    stage: StageArgs,
}

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("crop: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<i32> {
    let cli = Cli::parse();
    let args = cli.stage;
    let config = Config::load(args.config.as_deref(), &args.sets)?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(0);
    }
    let output = args.output.expect("clap requires --output");
    let stage = CropStage::new(config.crop.clone());
    let summary = if args.merge {
        Some(stage::merge(&stage, &output)?)
    } else {
        let input = args.input.expect("clap requires --input");
        let source = ImageSource::open(&input).context("cannot open the input")?;
        let spec = RunSpec {
            source: &source,
            output: &output,
            shard: args.shard,
            force: args.force,
            part_size: config.crop.part_size,
            batch: config.run.batch,
            threads: config.run.threads,
            log_every_s: config.run.log_every_s,
            config_toml: config.to_toml(),
            fingerprint: fingerprint(&config.crop),
        };
        let (report, summary) = stage::run_per_image(&stage, &spec)?;
        if summary.is_none() {
            eprintln!(
                "crop: shard {} done: {} records processed, {} failed; merge with `crop --merge --output {}` once every shard has finished",
                report.shard,
                report.records_processed,
                report.errors,
                output.display()
            );
            return Ok(if report.errors > 0 { stage::EXIT_SOME_INPUTS_FAILED } else { 0 });
        }
        summary
    };
    let summary = summary.expect("merged");
    eprintln!(
        "crop: {} inputs: {} cropped, {} failed -> {} ({})",
        summary.records,
        summary.ok,
        summary.errors,
        output.display(),
        summary.summary_path.display()
    );
    Ok(if summary.errors > 0 { stage::EXIT_SOME_INPUTS_FAILED } else { 0 })
}
