//! `digits`: OpenCV's handwritten digits sheet as a data set, and the digits demo's measurements.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dcgan_pipeline::data::cifar::Split;
use dcgan_pipeline::data::digits::{self, DIGITS_SHEET};
use dcgan_pipeline::data::LabeledImages;
use dcgan_pipeline::eval::digits::{
    beats, generator_samples, grid_by_class, score_features, table_markdown, to_labeled, DigitsEvalConfig, FeatureRow,
    FeatureSource, HistogramCheck, PixelClassifier,
};
use dcgan_pipeline::fsutil;
use dcgan_pipeline::gan::TrainedGenerator;
use dcgan_pipeline::stage::cli::exit_with;
use dcgan_pipeline::stage::owner::{claim_output, refuse_other_stage};

/// OpenCV's 5,000 handwritten digits (opencv-doc's digits.png: 50 rows of 100 tiles of 20x20, five
/// rows per digit) with a fixed split: every fifth tile of each digit is a test tile (4,000
/// training, 1,000 test digits). `train` and `cifar-eval` read the sheet directly as --input
/// (upscaled to the model's side, grey copied to RGB); `digits folders` writes it as class folders
/// for anything else.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the sheet as OUTPUT/{train,test}/<digit>/<sheet index>.png (side x side RGB);
    /// files already there are kept.
    Folders {
        /// The sheet. Never modified.
        #[arg(long, short, value_name = "PNG", default_value = DIGITS_SHEET)]
        input: PathBuf,
        #[arg(long, short, value_name = "DIR")]
        output: PathBuf,
        /// Side of the written images (the tiles are 20x20; bilinear).
        #[arg(long, default_value_t = 32)]
        side: u32,
    },
    /// The demo's checks. (1) Did G learn the digits: a linear L2-SVM on the pixels of the training
    /// digits labels --samples samples of the generator; passes when every digit appears and none
    /// takes more than 3x its share. (2) Few-label accuracy on the test digits of each
    /// --discriminator's features, of a random D of each one's architecture, and of raw pixels,
    /// with 10, 50 and 100 labels per class (--draws draws) and all labels; passes when each
    /// trained D beats its random D on the accuracy averaged over the columns.
    /// Writes OUTPUT/metrics.json, table.md, samples-by-class.png, summary.json (the report shows
    /// them in its train section); exits 1 when a check fails (after writing them).
    Eval {
        /// The sheet. Never modified.
        #[arg(long, short, value_name = "PNG", default_value = DIGITS_SHEET)]
        input: PathBuf,
        #[arg(long, short, value_name = "DIR")]
        output: PathBuf,
        /// The generator to check (safetensors, or a train output folder).
        #[arg(long, value_name = "G")]
        generator: Option<PathBuf>,
        /// NAME=FILE: a discriminator to score (repeatable); its preset and width are read off
        /// its tensors.
        #[arg(long = "discriminator", value_name = "NAME=FILE")]
        discriminators: Vec<String>,
        /// Draws of each few-label column.
        #[arg(long, default_value_t = 5)]
        draws: usize,
        /// Samples of G labelled by the histogram check.
        #[arg(long, default_value_t = 1000)]
        samples: usize,
        /// Seeds z, the random Ds, the validation split and the draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn main() {
    exit_with("digits", run(Cli::parse()))
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Folders { input, output, side } => {
            let tiles = digits::read_sheet(&input)?;
            // Class folders are a data set, not a stage's output: never into a stage's folder.
            refuse_other_stage(&output, "digits folders")?;
            let written = digits::write_class_folders(&tiles, &output, side)
                .with_context(|| format!("--output {}", output.display()))?;
            println!(
                "digits: {} -> {} ({written} images written; 4,000 train + 1,000 test, {side}x{side})",
                input.display(),
                output.display()
            );
            Ok(0)
        }
        Command::Eval { input, output, generator, discriminators, draws, samples, seed } => {
            // Counts of 0 would be a check of nothing (a histogram of no samples, a mean of no draws).
            for (option, value) in [("--draws", draws), ("--samples", samples)] {
                if value == 0 {
                    bail!("{option} 0: must be at least 1");
                }
            }
            let config = DigitsEvalConfig { draws, samples, seed, ..Default::default() };
            eval(&input, &output, generator, &discriminators, &config)
        }
    }
}

/// (1) The histogram check of `generator`'s samples, labelled by `classifier`: what metrics.json
/// records (None without a generator). A failed check is added to `failures`.
fn histogram_check(
    generator: &std::path::Path,
    classifier: &PixelClassifier,
    output: &std::path::Path,
    config: &DigitsEvalConfig,
    failures: &mut Vec<String>,
) -> Result<serde_json::Value> {
    let g = TrainedGenerator::load(generator)?;
    if g.preset.image_size() != 32 {
        bail!(
            "{}: a {} generator draws {}x{}; the digits check takes 32x32",
            generator.display(),
            g.preset,
            g.preset.image_size(),
            g.preset.image_size()
        );
    }
    let images = generator_samples(&g, config.samples, config.seed as i64 + 7);
    let predicted = classifier.predict(&to_labeled(&images));
    dcgan_pipeline::gan::sample::write_sample_grid(
        &grid_by_class(&images, &predicted, 12),
        12,
        2,
        &output.join("samples-by-class.png"),
    )?;
    let check = HistogramCheck::new(&predicted, config.max_share_factor, classifier);
    eprintln!("digits: {}", check.describe());
    if !check.passed {
        failures.push(format!("histogram check: {}", check.describe()));
    }
    Ok(serde_json::json!({ "generator": generator.display().to_string(), "check": check, "summary": check.describe() }))
}

/// (2) The few-label table: pixels, then each D, then a random D of each architecture; and each
/// D's comparison with its random D. A D that does not beat its random D is added to `failures`.
fn few_label_table(
    discriminators: &[String],
    train: &LabeledImages,
    test: &LabeledImages,
    config: &DigitsEvalConfig,
    failures: &mut Vec<String>,
) -> Result<(Vec<FeatureRow>, Vec<serde_json::Value>)> {
    let mut rows: Vec<FeatureRow> = vec![score_features("pixels", &FeatureSource::Pixels, train, test, config)?];
    eprintln!("digits: pixels scored");
    let mut comparisons = Vec::new();
    let mut randoms: Vec<FeatureRow> = Vec::new();
    for spec in discriminators {
        let (name, path) =
            spec.split_once('=').with_context(|| format!("--discriminator {spec}: expected NAME=FILE"))?;
        let path = PathBuf::from(path);
        let (preset, width) = dcgan_pipeline::eval::digits::discriminator_shape(&path)?;
        let row = score_features(name, &FeatureSource::Trained { path, preset, width }, train, test, config)?;
        eprintln!("digits: {name} scored");
        let random = match randoms.iter().find(|r| r.preset == Some(preset) && r.width == Some(width)) {
            Some(r) => r.clone(),
            None => {
                let r = score_features(
                    &format!("random {preset} width {width}"),
                    &FeatureSource::Random { preset, width },
                    train,
                    test,
                    config,
                )?;
                eprintln!("digits: a random {preset} D of width {width} scored");
                randoms.push(r.clone());
                r
            }
        };
        let won = beats(&row, &random);
        if !won {
            failures.push(format!("{name} does not beat a random D of its architecture (mean over the columns)"));
        }
        let (mine, theirs) =
            (dcgan_pipeline::eval::digits::overall(&row), dcgan_pipeline::eval::digits::overall(&random));
        eprintln!(
            "digits: {name} {:.2}% vs {} {:.2}% (mean over the columns)",
            100.0 * mine,
            random.name,
            100.0 * theirs
        );
        comparisons.push(serde_json::json!({ "trained": name, "random": random.name, "beats": won, "mean_over_columns": [mine, theirs] }));
        rows.push(row);
    }
    // Random rows after the trained ones.
    rows.extend(randoms);
    Ok((rows, comparisons))
}

fn eval(
    input: &std::path::Path,
    output: &std::path::Path,
    generator: Option<PathBuf>,
    discriminators: &[String],
    config: &DigitsEvalConfig,
) -> Result<i32> {
    let started = std::time::Instant::now();
    claim_output(output, "digits-eval")?;
    let tiles = digits::read_sheet(input)?;
    let (train, test) = (tiles.split(Split::Train, 32), tiles.split(Split::Test, 32));
    let mut failures = Vec::new();

    let t = std::time::Instant::now();
    let classifier = PixelClassifier::fit(&train, &test, config)?;
    let histogram =
        generator.map(|path| histogram_check(&path, &classifier, output, config, &mut failures)).transpose()?;
    let histogram_s = t.elapsed().as_secs_f64();

    let t = std::time::Instant::now();
    let (rows, comparisons) = few_label_table(discriminators, &train, &test, config, &mut failures)?;
    let table_s = t.elapsed().as_secs_f64();
    let table = table_markdown(&rows);
    print!("{table}");
    fsutil::write_atomic(&output.join("table.md"), table.as_bytes())?;
    let metrics = serde_json::json!({
        "histogram": histogram,
        "classifier": { "features": "pixels", "c": classifier.c, "test_accuracy": classifier.test_accuracy },
        "few_label": rows,
        "comparisons": comparisons,
        "failures": failures,
        "passed": failures.is_empty(),
        "split": "fixed: every fifth tile of each digit is a test tile (4,000 train / 1,000 test)",
        "config": config,
    });
    fsutil::write_atomic(&output.join("metrics.json"), &serde_json::to_vec_pretty(&metrics)?)?;
    let summary = serde_json::json!({
        "stage": "digits-eval",
        "input": input.display().to_string(),
        "passed": failures.is_empty(),
        "timings_s": { "histogram": histogram_s, "few_label": table_s, "total": started.elapsed().as_secs_f64() },
        "versions": dcgan_pipeline::versions(),
    });
    fsutil::write_atomic(&output.join("summary.json"), &serde_json::to_vec_pretty(&summary)?)?;
    if !failures.is_empty() {
        bail!("{} check(s) failed: {}", failures.len(), failures.join("; "));
    }
    eprintln!("digits: every check passed -> {}", output.display());
    Ok(0)
}
