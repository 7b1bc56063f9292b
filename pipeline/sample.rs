//! `sample`: what a trained generator makes, as pictures.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use dcgan_pipeline::gan::copying::{write_copy_test_for, CopyTestSpec};
use dcgan_pipeline::gan::sample::{write_pictures, PictureSpec};
use dcgan_pipeline::gan::Prior;
use dcgan_pipeline::neighbours::CopyTestSettings;
use dcgan_pipeline::stage::cli::exit_with;

/// Loads a generator (float32 safetensors from training, float16 as exported by
/// `train --export-generator`, or a train output folder: its generator.safetensors) and writes
/// into OUTPUT: samples.png, a grid of N samples from a seeded z; walk.png, the paper's latent
/// walk (section 6.1), each row a straight line in z between two random points, consecutive
/// rows joined; summary.json, what was drawn from what (the report shows it). CPU only.
///
/// With --copy-test --training INPUT: does G copy its training set? The data-copying test (C_T of
/// Meehan, Chaudhuri, Dasgupta 2020) on G's samples, INPUT's training images and held-out real
/// images, into OUTPUT/copy-test/: copy_test.json, cells.csv, neighbours.csv, distances.png,
/// closest.png (docs/train.md, "Does G copy its training set?").
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
    #[command(flatten)]
    copy: CopyArgs,
}

/// The data-copying test (`--copy-test`).
#[derive(clap::Args)]
struct CopyArgs {
    /// Also run the data-copying test into OUTPUT/copy-test (needs --training).
    #[arg(long)]
    copy_test: bool,
    /// The training input G was trained on (train's --input).
    #[arg(long, value_name = "PATH")]
    training: Option<PathBuf>,
    /// Held-out real images (never trained on); default: the training input's test split, or the
    /// last --held-out-share of a one-split input.
    #[arg(long, value_name = "PATH")]
    held_out: Option<PathBuf>,
    /// Of a one-split input (a packed set), the last share held out (train with
    /// train.limit_images set to the rest).
    #[arg(long, default_value_t = 0.2)]
    held_out_share: f64,
    /// Samples of G compared.
    #[arg(long, default_value_t = 2000)]
    copy_samples: i64,
    /// k-means cells of the training set.
    #[arg(long, default_value_t = 20)]
    cells: usize,
    /// A cell counts with at least this many held-out images and samples.
    #[arg(long, default_value_t = 20)]
    min_per_cell: usize,
}

fn parse_prior(name: &str) -> Result<Prior, String> {
    serde_json::from_value(serde_json::Value::String(name.into()))
        .map_err(|_| format!("{name:?}: expected uniform or normal"))
}

fn main() {
    exit_with("sample", run(Cli::parse()))
}

fn run(cli: Cli) -> Result<i32> {
    if cli.copy.copy_test && cli.copy.training.is_none() {
        anyhow::bail!("--copy-test needs --training PATH (the input G was trained on)");
    }
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
    if cli.copy.copy_test {
        copy_test(&cli)?;
    }
    Ok(0)
}

fn copy_test(cli: &Cli) -> Result<()> {
    let a = &cli.copy;
    let training = a.training.clone().ok_or_else(|| anyhow::anyhow!("--copy-test needs --training PATH"))?;
    let spec = CopyTestSpec {
        training,
        held_out: a.held_out.clone(),
        held_out_share: a.held_out_share,
        samples: a.copy_samples,
        seed: cli.seed,
        prior: cli.prior,
        settings: CopyTestSettings {
            cells: a.cells,
            min_per_cell: a.min_per_cell,
            seed: cli.seed as u64,
            ..CopyTestSettings::default()
        },
    };
    let dir = cli.output.join("copy-test");
    let v = write_copy_test_for(&cli.generator, &dir, &spec)?;
    println!(
        "sample: copy test: {} ({} cells of {} used; {:.1}% of samples near-duplicate a training image) -> {}",
        v["result"]["verdict"].as_str().unwrap_or(""),
        v["result"]["cells_used"],
        a.cells,
        100.0 * v["result"]["near_duplicate_share"].as_f64().unwrap_or(f64::NAN),
        dir.display()
    );
    Ok(())
}
