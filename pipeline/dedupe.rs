//! `dedupe`: near-duplicate removal by semantic hashing, as the DCGAN paper did for LSUN.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use dcgan_pipeline::config::{load_or_print, Config};
use dcgan_pipeline::data::names::for_terminal;
use dcgan_pipeline::dedupe::quality::labelled::{evaluate, EvalSettings, LabelledInputs};
use dcgan_pipeline::dedupe::quality::scale::{
    evaluate as scale_evaluate, ScaleSet, ScaleSettings, CORRELATIONS, WINDOW_RADII,
};
use dcgan_pipeline::dedupe::run::crops_dir;
use dcgan_pipeline::dedupe::{deduplicate, Autoencoder, DedupeCrops};
use dcgan_pipeline::fsutil::write_atomic;
use dcgan_pipeline::stage::cli::{exit_with, refuse_output_in_input, run_stage};
use dcgan_pipeline::stage::owner::{claim_output, refuse_other_stage};
use dcgan_pipeline::stage::{fingerprint, StageArgs};

/// Removes near duplicates the DCGAN paper's way: a 3072-128-3072 de-noising, dropout-regularised
/// ReLU autoencoder on 32x32 center crops; its code layer thresholded into 128 bits; equal codes
/// grouped in one pass, codes within dedupe.radius bits found by multi-index hashing; clusters
/// formed around the best copies (most source pixels), each removed image within dedupe.radius of
/// the image kept for it (dedupe.cluster_rule = "single_linkage": union-find, which chains).
///
/// Writes to --output: images-00000.npy (the kept images, uint8, N x size x size x 3),
/// labels.npy, classes.jsonl, manifest.jsonl (one row per input: kept, or skipped as a duplicate
/// of which), kept.jsonl (one JSON string a line), clusters.jsonl, pairs.jsonl (with Hamming
/// distances), report.html (largest clusters and pairs near the radius, for visual inspection),
/// codes.npy (uint64, N x 2),
/// model.safetensors (unless --model), summary.json; crops/ holds the crop pass (resumable,
/// --shard, --merge).
///
/// With --eval: builds a labelled near-duplicate set from the photos at --input (edited copies
/// mixed with distinct photos), prints precision and recall of the autoencoder hash and of pHash,
/// writes eval.json and eval.md to --output.
/// With --eval-scale: edits planted into a large real set (every photo at --input, e.g. Tiny
/// ImageNet's 100,000), one kind per copy in turn (crop 2-5%, crop 5-10%, border or letterbox
/// 5-10%, rescale, re-encoding, mixed), the removals scored per radius and cluster rule beside
/// pHash, with recall per edit kind, and the crop route at a few settings; writes
/// eval-scale.json and eval-scale.md to --output.
/// Exit status: 0 done, 3 some inputs failed (listed in the manifest), 1 the stage could not
/// run, 2 a bad command line.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    stage: StageArgs,

    /// A trained autoencoder (model.safetensors of an earlier run) to hash with, instead of
    /// training one on the input.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,

    /// Run the labelled near-duplicate evaluation on the photos at --input instead.
    #[arg(long)]
    eval: bool,

    /// Run the evaluation at scale on the photos at --input instead (all distinct but for the
    /// copies the set already holds) with --planted of them given edited copies.
    #[arg(long, conflicts_with = "eval")]
    eval_scale: bool,

    /// With --eval-scale: photos given edited copies, spread over the set.
    #[arg(long, default_value_t = 2000)]
    planted: usize,

    /// With --eval-scale: radii scored, 0 up to this (autoencoder; pHash: --phash-max-radius).
    #[arg(long, default_value_t = 20)]
    max_radius: u32,

    /// With --eval-scale: pHash radii scored, 0 up to this (of its 64 bits).
    #[arg(long, default_value_t = 12)]
    phash_max_radius: u32,

    /// With --eval-scale: two originals whose 32x32 inputs differ by at most this many grey levels
    /// on average count as one photo held twice.
    #[arg(long, default_value_t = 4.0)]
    same_photo_mad: f64,

    /// With --eval-scale: the radius at which removals are broken down by low-content signals
    /// (the image's detail, the code's bits set).
    #[arg(long, default_value_t = 16)]
    detail_radius: u32,

    /// With --eval / --eval-scale: edited copies per photo that gets copies.
    #[arg(long, default_value_t = 2)]
    copies: usize,

    /// With --eval / --eval-scale: use at most this many photos (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,

    /// With --eval-scale: also write the evaluated set (the photos read and the planted copies,
    /// named <photo>#copy<c>-<kind>.jpg) as an uncompressed tar, to run the stage on it.
    #[arg(long, value_name = "TAR", requires = "eval_scale")]
    write_set: Option<PathBuf>,
}

fn main() {
    exit_with("dedupe", run(Cli::parse()))
}

/// The three modes: the stage, `--eval` and `--eval-scale`, each a function of its own.
fn run(cli: Cli) -> Result<i32> {
    let args = &cli.stage;
    let Some(config) = load_or_print(args.config.as_deref(), &args.sets, args.print_config)? else {
        return Ok(0);
    };
    let output = args.output.clone().expect("clap requires --output");
    // Before any image is read: an autoencoder batch too big is refused with its estimate.
    config.dedupe.check_memory(config.run.max_memory_gb)?;
    if cli.eval {
        run_eval(&cli, &config, &output)
    } else if cli.eval_scale {
        run_eval_scale(&cli, &config, &output)
    } else {
        run_dedupe(&cli, &config, &output)
    }
}

/// `--eval`: the labelled near-duplicate set built from the photos at --input, and both hashes scored on it.
fn run_eval(cli: &Cli, config: &Config, output: &Path) -> Result<i32> {
    let input = cli.stage.input.as_deref().context("--eval needs --input (a folder of photos)")?;
    refuse_output_in_input(input, output)?;
    refuse_other_stage(output, "dedupe")?;
    let settings = EvalSettings {
        copies: cli.copies,
        max_side: 256,
        target_precision: 0.99,
        seed: config.dedupe.seed as u64,
        limit: cli.limit,
    };
    let labelled = LabelledInputs::build(input, &config.dedupe, &settings)?;
    claim_output(output, "dedupe")?;
    labelled.write(output)?;
    let report = evaluate(input, &labelled, &config.dedupe, &settings)?;
    let md = report.markdown();
    write_atomic(&output.join("eval.md"), md.as_bytes())?;
    write_atomic(&output.join("eval.json"), &serde_json::to_vec_pretty(&report)?)?;
    print!("{md}");
    Ok(0)
}

/// `--eval-scale`: edited copies planted into the set at --input, the removals scored.
fn run_eval_scale(cli: &Cli, config: &Config, output: &Path) -> Result<i32> {
    let input = cli.stage.input.as_deref().context("--eval-scale needs --input (photos: a folder or an archive)")?;
    refuse_output_in_input(input, output)?;
    let settings = ScaleSettings {
        planted: cli.planted,
        copies: cli.copies,
        max_radius: cli.max_radius,
        phash_max_radius: cli.phash_max_radius,
        same_photo_mad: cli.same_photo_mad,
        detail_radius: cli.detail_radius,
        seed: config.dedupe.seed as u64,
        limit: cli.limit,
        window_radii: &WINDOW_RADII,
        correlations: &CORRELATIONS,
    };
    let started = std::time::Instant::now();
    let set = ScaleSet::build(input, &config.dedupe, &settings)?;
    for (name, why) in &set.unreadable {
        eprintln!("dedupe: warning: {}", for_terminal(&format!("{name}: skipped, {why}")));
    }
    eprintln!(
        "dedupe: {} images ({} photos) prepared in {:.1} s",
        set.len(),
        set.planted.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(tar) = &cli.write_set {
        set.write_tar(input, tar, config.dedupe.max_file_bytes)?;
        eprintln!("dedupe: the evaluated set written to {}", tar.display());
    }
    let report = scale_evaluate(input, &set, &config.dedupe, &settings)?;
    claim_output(output, "dedupe")?;
    let md = report.markdown();
    write_atomic(&output.join("eval-scale.md"), md.as_bytes())?;
    write_atomic(&output.join("eval-scale.json"), &serde_json::to_vec_pretty(&report)?)?;
    print!("{md}");
    eprintln!("dedupe: evaluation at scale done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(0)
}

/// The stage: the crop pass (resumable, sharded), then, once every shard is merged, the dedupe itself.
fn run_dedupe(cli: &Cli, config: &Config, output: &Path) -> Result<i32> {
    let args = &cli.stage;
    if let Some(model) = &cli.model {
        // Before the crop pass (minutes on a large input): a file that is no autoencoder is named now.
        Autoencoder::load(model, tch::Device::Cpu)
            .with_context(|| format!("--model {}: not an autoencoder dedupe can hash with", model.display()))?;
    }
    refuse_other_stage(output, "dedupe")?;
    let stage = DedupeCrops::new(&config.dedupe);
    let crops = crops_dir(output);
    let status = run_stage(
        &stage,
        args,
        &config.run,
        config.to_toml(),
        &crops,
        config.dedupe.part_size,
        fingerprint(&config.dedupe.crop_config()),
    )?;
    // The crops are merged only once every shard has finished; until then there is no whole set.
    if !crops.join("manifest.jsonl").is_file() {
        return Ok(status);
    }
    claim_output(output, "dedupe")?;
    let summary = deduplicate(&config.dedupe, output, cli.model.as_deref(), args.force)?;
    eprintln!(
        "dedupe: {} images, {} kept, {} removed in {} clusters (radius {}); model {}{} -> {}",
        summary.images,
        summary.kept,
        summary.removed,
        summary.clusters,
        config.dedupe.radius,
        summary.model,
        if summary.model_trained { " (trained now)" } else { "" },
        output.display()
    );
    Ok(status)
}
