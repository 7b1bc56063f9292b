//! `sample`: what a trained generator makes, as pictures.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use dcgan_pipeline::gan::sample::{write_pictures, PictureSpec};
use dcgan_pipeline::gan::Prior;
use dcgan_pipeline::stage::cli::exit_with;

/// Loads a generator (float32 safetensors from training, float16 as exported by
/// `train --export-generator`, or a train output folder: its generator.safetensors) and writes
/// into OUTPUT: samples.png, a grid of N samples from a seeded z; walk.png, the paper's latent
/// walk (section 6.1), each row a straight line in z between two random points, consecutive
/// rows joined; summary.json, what was drawn from what (the report shows it). CPU only.
///
/// Exit status: 0 written, 1 the generator cannot be read or the output written, 2 a bad command line.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// The generator: a .safetensors file or a train output folder.
    #[arg(long, short, value_name = "PATH")]
    generator: PathBuf,
    /// The folder to write into.
    #[arg(long, short, value_name = "DIR")]
    output: PathBuf,
    /// Images in the sample grid.
    #[arg(long, default_value_t = 64)]
    samples: i64,
    /// Columns of the sample grid.
    #[arg(long, default_value_t = 8)]
    columns: i64,
    /// Rows of the walk.
    #[arg(long, default_value_t = 8)]
    walk_rows: i64,
    /// Images per row of the walk, both ends included.
    #[arg(long, default_value_t = 10)]
    walk_steps: i64,
    /// Seed of z (the same seed, the same pictures).
    #[arg(long, default_value_t = 1)]
    seed: i64,
    /// Where z comes from: uniform (U(-1, 1), the paper's) or normal.
    #[arg(long, default_value = "uniform", value_parser = parse_prior)]
    prior: Prior,
}

fn parse_prior(name: &str) -> Result<Prior, String> {
    serde_json::from_value(serde_json::Value::String(name.into()))
        .map_err(|_| format!("{name:?}: expected uniform or normal"))
}

fn main() {
    exit_with("sample", run(Cli::parse()))
}

fn run(cli: Cli) -> Result<i32> {
    let spec = PictureSpec {
        samples: cli.samples,
        columns: cli.columns,
        walk_rows: cli.walk_rows,
        walk_steps: cli.walk_steps,
        seed: cli.seed,
        prior: cli.prior,
    };
    let summary = write_pictures(&cli.generator, &cli.output, &spec)?;
    println!(
        "sample: {} ({} {}, {}) -> {}/samples.png ({} images), walk.png ({} rows of {})",
        summary["generator"].as_str().unwrap_or(""),
        summary["preset"].as_str().unwrap_or(""),
        summary["width"],
        summary["stored_dtype"].as_str().unwrap_or(""),
        cli.output.display(),
        summary["samples"]["count"],
        summary["walk"]["rows"],
        summary["walk"]["steps"]
    );
    Ok(0)
}
