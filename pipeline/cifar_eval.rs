//! `cifar-eval`: the paper's Table 1 on CIFAR-10: discriminator features and a linear L2-SVM.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use dcgan_pipeline::config::load_or_print;
use dcgan_pipeline::eval::protocol::{evaluate, table_1};
use dcgan_pipeline::eval::select::score_snapshots;
use dcgan_pipeline::fsutil;
use dcgan_pipeline::stage::cli::{exit_with, refuse_output_equal_to_input};
use dcgan_pipeline::stage::owner::claim_and_lock;

/// Scores a DCGAN discriminator the paper's way (Table 1): every conv layer's activation
/// max-pooled to 4x4 and concatenated (28,672 features for imagenet32), standardised, and a
/// one-vs-rest linear L2-SVM (squared hinge, dual coordinate descent) on CIFAR-10.
///
/// --input: CIFAR-10 as the official binary batches (cifar-10-batches-bin, or the folder holding
/// it) or class folders train/<class>/*.jpg and test/<class>/*.jpg (a folder or a .tar.gz).
/// C is chosen on a class-balanced validation split of the training images; the refit on all of
/// them is scored once on the test split (without one, the validation figures are reported).
/// Also the paper's 400-labels-per-class column (mean and spread over cifar_eval.draws draws).
/// Writes to --output: metrics.json (accuracies, per-class accuracy, confusion matrix, the C grid,
/// chosen C, timings, the checkpoint's sha256, every input image left out with the reason: each
/// also gets a warning line), confusion.png, confusion.csv, summary.json,
/// config.toml, and with cifar_eval.save_features the features as .npy (reused on a re-run).
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// CIFAR-10 (see above). Never modified.
    #[arg(long, short, value_name = "PATH", required_unless_present = "print_config")]
    input: Option<PathBuf>,
    /// Output folder.
    #[arg(long, short, value_name = "DIR", required_unless_present = "print_config")]
    output: Option<PathBuf>,
    /// The discriminator: a safetensors checkpoint written by train, or "random" (the baseline).
    /// Same as --set cifar_eval.discriminator=...; default models/imagenet32-d.safetensors.
    #[arg(long, short, value_name = "FILE|random")]
    discriminator: Option<String>,
    /// Instead of one D: score every D snapshot of a training run (its output folder, or its
    /// snapshots/ folder; train.snapshot_every_epochs writes them) on the validation split only
    /// (the test split is never read), and name the best. Writes snapshots.json (the table, the
    /// best, (epoch, accuracy) to plot), snapshots.csv and snapshots.md; a re-run reuses the rows
    /// already scored with the same settings.
    #[arg(long, value_name = "RUN")]
    snapshots: Option<PathBuf>,
    /// TOML configuration laid over the embedded default; see --print-config.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one configuration key, e.g. --set cifar_eval.c_grid=[0.001] (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() {
    exit_with("cifar-eval", run(Cli::parse()))
}

fn run(cli: Cli) -> Result<i32> {
    let mut sets = cli.sets.clone();
    if let Some(d) = &cli.discriminator {
        sets.insert(0, format!("cifar_eval.discriminator={d:?}"));
    }
    let Some(config) = load_or_print(cli.config.as_deref(), &sets, cli.print_config)? else {
        return Ok(0);
    };
    let (input, output) = (cli.input.expect("required"), cli.output.expect("required"));
    refuse_output_equal_to_input(&input, &output)?;
    // Before anything is read: a model, batch or feature matrix too big is refused with its estimate.
    dcgan_pipeline::eval::footprint::check(&config.cifar_eval, config.run.max_memory_gb)?;
    if config.run.threads > 0 {
        tch::set_num_threads(config.run.threads as i32);
    }
    // Its own folder (never train's or sample's), and one cifar-eval at a time in it.
    let _lock = claim_and_lock(&output, "cifar-eval")?;
    fsutil::write_atomic(&output.join("config.toml"), config.to_toml().as_bytes())?;
    if let Some(run) = &cli.snapshots {
        let table =
            score_snapshots(&config.cifar_eval, &input, run, &output, config.run.threads, config.run.log_every_s)?;
        print!("{}", table.to_markdown());
        if let Some(best) = &table.best {
            println!(
                "\nbest: step {} (epoch {:.2}), validation {:.2}% at C {}: {}",
                best.step,
                best.epoch,
                100.0 * best.validation_accuracy,
                best.best_c,
                best.path.display()
            );
        }
        eprintln!("cifar-eval: {} snapshots scored -> {}", table.rows.len(), output.join("snapshots.json").display());
        return Ok(0);
    }
    let report = evaluate(&config.cifar_eval, &input, &output, config.run.threads, config.run.log_every_s)?;
    let summary = serde_json::json!({
        "stage": "cifar-eval",
        "input": input.display().to_string(),
        "metrics": report,
        "config": config,
        "versions": dcgan_pipeline::versions(),
    });
    fsutil::write_atomic(&output.join("summary.json"), &serde_json::to_vec_pretty(&summary)?)?;
    println!("{}", table_1(&report));
    if report.rejected_images.count > 0 {
        eprintln!(
            "cifar-eval: {} images left out ({} training, {} test; named above and in metrics.json)",
            report.rejected_images.count,
            report.rejected_images.train.len(),
            report.rejected_images.test.len()
        );
    }
    eprintln!(
        "cifar-eval: chosen C {} ({:.0} s in all) -> {}",
        report.chosen_c,
        report.timings_s["total"].as_f64().unwrap_or(0.0),
        output.display()
    );
    Ok(0)
}
