//! `train`: the paper's DCGAN on a packed set, CIFAR-10 or class folders, on GPU where there is one.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use dcgan_pipeline::config::Config;
use dcgan_pipeline::data::{cifar::Split, open_labeled};
use dcgan_pipeline::fsutil;
use dcgan_pipeline::gan::trainer::{check_dataset, train};
use dcgan_pipeline::stage::cli::exit_with;

/// Trains the DCGAN (train.preset: imagenet32 or dcgan64) with the paper's settings: Adam lr 2e-4,
/// betas (0.5, 0.999), batch 128, N(0, 0.02) weights, images in [-1, 1], no augmentation.
///
/// --input: a packed folder (the output of crop, faces or dedupe), CIFAR-10's binary batches
/// (cifar-10-batches-bin), or class folders train/<class>/*.jpg (a folder or a .tar.gz); labels
/// are not used.
/// Writes to --output: samples/epoch-NNNN.png (a fixed z), losses.csv and losses.png (red: D's loss
/// and D(x); blue: G's loss and D(G(z))), checkpoints/step-N/ (G, D and both Adam states as
/// safetensors), generator.safetensors and discriminator.safetensors (the newest), summary.json,
/// config.toml. Re-running the same command resumes from the newest checkpoint exactly.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Training images (see above). Never modified.
    #[arg(long, short, value_name = "PATH", required_unless_present = "print_config")]
    input: Option<PathBuf>,
    /// Output folder; resumed when it holds a run with the same settings.
    #[arg(long, short, value_name = "DIR", required_unless_present = "print_config")]
    output: Option<PathBuf>,
    /// TOML configuration laid over the embedded default; see --print-config.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one configuration key, e.g. --set train.epochs=25 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Start over: remove this output's checkpoints, samples and losses first.
    #[arg(long)]
    force: bool,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() {
    exit_with("train", run(Cli::parse()))
}

fn run(cli: Cli) -> Result<i32> {
    let config = Config::load(cli.config.as_deref(), &cli.sets)?;
    if cli.print_config {
        print!("{}", config.to_toml());
        return Ok(0);
    }
    let (input, output) = (cli.input.expect("required"), cli.output.expect("required"));
    let side = config.train.preset.image_size() as u32;
    let (data, rejected) = open_labeled(&input, Split::Train, side)?;
    for (name, reason) in rejected.iter().take(20) {
        eprintln!("train: warning: {}: {name}: {reason} (left out)", input.display());
    }
    check_dataset(&config.train, &data, &input.display().to_string())?;
    std::fs::create_dir_all(&output)?;
    fsutil::write_atomic(&output.join("config.toml"), config.to_toml().as_bytes())?;
    let report = train(&config.train, &data, &output, cli.force, config.run.log_every_s)?;
    let summary = serde_json::json!({
        "stage": "train",
        "input": input.display().to_string(),
        "images_left_out": rejected.len(),
        "report": report,
        "config": config,
        "versions": dcgan_pipeline::versions(),
    });
    fsutil::write_atomic(&output.join("summary.json"), &serde_json::to_vec_pretty(&summary)?)?;
    eprintln!(
        "train: steps {}..{} on {} images ({}), {:.1} s, {} -> {}",
        report.start_step,
        report.end_step,
        report.images,
        report.device,
        report.wall_s,
        report.images_per_s.map(|r| format!("{r:.0} images/s")).unwrap_or_else(|| "nothing left to train".into()),
        output.display()
    );
    Ok(0)
}
