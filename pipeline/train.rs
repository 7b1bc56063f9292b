//! `train`: the paper's DCGAN on a packed set, CIFAR-10 or class folders, on GPU where there is one.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use dcgan_pipeline::config::load_or_print;
use dcgan_pipeline::data::names::for_terminal;
use dcgan_pipeline::data::{cifar::Split, content_records, open_labeled};
use dcgan_pipeline::fsutil;
use dcgan_pipeline::gan::footprint::check_training;
use dcgan_pipeline::gan::resume_guard::{check_resumable, TrainInput};
use dcgan_pipeline::gan::trainer::{check_dataset, train};
use dcgan_pipeline::gan::{Gan, TrainConfig};
use dcgan_pipeline::stage::cli::{exit_with, refuse_output_equal_to_input};
use dcgan_pipeline::stage::owner::claim_and_lock;
use dcgan_pipeline::stage::preemption;

/// Trains the DCGAN (train.preset: imagenet32 or dcgan64) with the paper's settings: Adam lr 2e-4,
/// betas (0.5, 0.999), batch 128, N(0, 0.02) weights, images in [-1, 1], no augmentation.
///
/// --input: a packed folder (the output of crop, faces or dedupe), CIFAR-10's binary batches
/// (cifar-10-batches-bin), or class folders train/<class>/*.jpg (a folder or a .tar.gz); labels
/// are not used.
/// Writes to --output: samples/epoch-NNNN.png (a fixed z), losses.csv and losses.png (red: D's loss
/// and D(x); blue: G's loss and D(G(z))), checkpoints/step-N/ (G, D and both Adam states as
/// safetensors), generator.safetensors and discriminator.safetensors (the newest), summary.json,
/// config.toml; with train.snapshot_every_epochs, snapshots/step-N/ (G and D, kept) for
/// `cifar-eval --snapshots`. Re-running the same command resumes from the newest checkpoint exactly.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Training images (see above). Never modified.
    #[arg(long, short, value_name = "PATH", required_unless_present_any = ["print_config", "benchmark_steps", "export_discriminator", "export_generator"])]
    input: Option<PathBuf>,
    /// Output folder; resumed when it holds a run with the same settings.
    #[arg(long, short, value_name = "DIR", required_unless_present_any = ["print_config", "benchmark_steps", "export_images"])]
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
    /// Time N training steps of the configured model on random images (after 3 warm-up steps),
    /// print images/s and exit; no input or output needed.
    #[arg(long, value_name = "N")]
    benchmark_steps: Option<u64>,
    /// Write the training images as decoded (uint8, N x H x W x 3 .npy) to FILE and exit:
    /// what train sees, for inspection or for another tool.
    #[arg(long, value_name = "FILE", conflicts_with = "output")]
    export_images: Option<PathBuf>,
    /// Write the discriminator of the run in --output as float16 safetensors to FILE, with
    /// FILE.json recording what it is (config, the data it trained on, step, device, wall time,
    /// sha256), and exit: how models/imagenet32-d.safetensors is made. From the newest checkpoint,
    /// or from --checkpoint.
    #[arg(long, value_name = "FILE", requires = "output")]
    export_discriminator: Option<PathBuf>,
    /// The same for the generator (may be given with --export-discriminator).
    #[arg(long, value_name = "FILE", requires = "output")]
    export_generator: Option<PathBuf>,
    /// With an export: the checkpoint or snapshot folder to export from (checkpoints/step-N or
    /// snapshots/step-N, e.g. the best of `cifar-eval --snapshots`), instead of the newest checkpoint.
    #[arg(long, value_name = "DIR")]
    checkpoint: Option<PathBuf>,
}

fn main() {
    exit_with("train", run(Cli::parse()))
}

fn run(cli: Cli) -> Result<i32> {
    let Some(config) = load_or_print(cli.config.as_deref(), &cli.sets, cli.print_config)? else {
        return Ok(0);
    };
    // Before anything is read or allocated: a model or batch too big is refused with its estimate.
    check_training(&config.train, config.run.max_memory_gb)?;
    if let Some(steps) = cli.benchmark_steps {
        let rate = benchmark_steps(&config.train, steps)?;
        println!(
            "train: {} width {} batch {} on {}: {rate:.1} images/s ({:.1} ms/step, {steps} steps, {} threads)",
            config.train.preset,
            config.train.width(),
            config.train.batch,
            if config.train.device()?.is_cuda() { "CUDA" } else { "CPU" },
            1000.0 * config.train.batch as f64 / rate,
            tch::get_num_threads()
        );
        return Ok(0);
    }
    if cli.export_discriminator.is_some() || cli.export_generator.is_some() {
        return export(&cli);
    }
    let input = cli.input.expect("required");
    if let Some(output) = &cli.output {
        refuse_output_equal_to_input(&input, output)?;
    }
    // Before the (maybe long) read of the input: an --output that cannot be a folder, or that
    // another stage wrote, is named now; the lock stops a second train into it until this one ends.
    let _lock = match cli.output.as_ref().filter(|_| cli.export_images.is_none()) {
        Some(output) => Some(claim_and_lock(output, "train")?),
        None => None,
    };
    let side = config.train.preset.image_size() as u32;
    let (data, rejected) = open_labeled(&input, Split::Train, side)?;
    for (name, reason) in rejected.iter().take(20) {
        eprintln!("train: warning: {}", for_terminal(&format!("{}: {name}: {reason} (left out)", input.display())));
    }
    if rejected.len() > 20 {
        eprintln!("train: warning: {} more images left out (all named in summary.json)", rejected.len() - 20);
    }
    if let Some(path) = cli.export_images {
        let shape = [data.len() as u64, data.height as u64, data.width as u64, 3];
        dcgan_pipeline::data::npy::write_array(&path, &shape, &data.images)?;
        eprintln!("train: {} images of {}x{} -> {}", data.len(), data.width, data.height, path.display());
        return Ok(0);
    }
    let output = cli.output.expect("required");
    check_dataset(&config.train, &data, &input.display().to_string())?;
    let trained_on = TrainInput { path: input.display().to_string(), files: content_records(&input, &data) };
    if !cli.force {
        // Before config.toml is replaced: other settings or other data are refused, naming what changed.
        let settings = config.train.resume_settings();
        check_resumable(&output, &settings, &config.train.resume_fingerprint(), &trained_on)?;
    }
    fsutil::write_atomic(&output.join("config.toml"), config.to_toml().as_bytes())?;
    // A cluster's signal before it kills or requeues the job: checkpoint, then exit 75.
    preemption::install().context("cannot catch signals")?;
    let report = train(&config.train, &data, &output, cli.force, config.run.log_every_s, &trained_on)?;
    let summary = serde_json::json!({
        "stage": "train",
        "input": input.display().to_string(),
        "images_left_out": rejected.len(),
        "rejected_images": rejected.iter().map(|(name, reason)| serde_json::json!({ "name": name, "reason": reason })).collect::<Vec<_>>(),
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
    if let Some(signal) = preemption::received() {
        eprintln!("train: stopped on {signal} with a checkpoint at step {}; the same command resumes", report.end_step);
        return Ok(preemption::EXIT_PREEMPTED);
    }
    Ok(0)
}

/// The --export-* options: float16 networks with their records.
fn export(cli: &Cli) -> Result<i32> {
    use dcgan_pipeline::gan::export::{export_network, source_checkpoint, Network};
    let run = cli.output.as_ref().expect("required");
    let (dir, state) = source_checkpoint(run, cli.checkpoint.as_deref())?;
    // --input, where given, is what the record says the run trained on; else the run's own summary.
    let data = cli.input.as_ref().map(|p| p.display().to_string());
    for (dest, network) in
        [(&cli.export_discriminator, Network::Discriminator), (&cli.export_generator, Network::Generator)]
    {
        let Some(dest) = dest else { continue };
        let record = export_network(run, &dir, &state, network, dest, data.as_deref())?;
        eprintln!(
            "train: {} (step {}, sha256 {}) -> {}",
            dir.display(),
            record["step"],
            record["sha256"].as_str().unwrap_or(""),
            dest.display()
        );
    }
    Ok(0)
}

/// images/s of `steps` training steps on random uint8 images, as the training loop feeds them.
fn benchmark_steps(config: &TrainConfig, steps: u64) -> Result<f64> {
    let device = config.device()?;
    let mut gan = Gan::new(config, device);
    let size = config.preset.image_size();
    let images = tch::Tensor::randint(256, [config.batch, size, size, 3], (tch::Kind::Uint8, device));
    let sync = |gan: &Gan| {
        if device.is_cuda() {
            tch::Cuda::synchronize(0)
        } else {
            let _ = &gan.device;
        }
    };
    for step in 0..3 {
        gan.train_step(&gan.network_input(&images), step);
    }
    sync(&gan);
    let start = std::time::Instant::now();
    for step in 0..steps {
        let losses = gan.train_step(&gan.network_input(&images), 3 + step as i64);
        if step + 1 == steps {
            let _ = f64::try_from(&losses.loss_d)?;
        }
    }
    sync(&gan);
    Ok((steps as i64 * config.batch) as f64 / start.elapsed().as_secs_f64())
}
