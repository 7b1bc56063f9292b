//! `report`: one self-contained HTML page for a run folder (the stages' outputs side by side).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use dcgan_pipeline::data::names::for_terminal;
use dcgan_pipeline::report::{find_stages, unreadable_summaries, write_report};
use dcgan_pipeline::stage::cli::exit_with;
use dcgan_pipeline::stage::EXIT_SOME_INPUTS_FAILED;

/// Writes <RUN>/report.html: a section per stage found under RUN (faces, dedupe, crop, train,
/// cifar-eval, recognised by their summary.json), in pipeline order: face crops as a contact
/// sheet with counts and rejects, dedupe's largest clusters, a grid of crops, GAN samples over
/// training with the loss plot, the SVM accuracy next to the paper's Table 1 with the confusion
/// matrix, and every stage's timings and configuration. Images are embedded; the page needs
/// nothing beside it (except dedupe's own page, linked). Stages not run are marked, not errors.
///
/// Exit status: 0 written, 3 written but some stage output's summary.json could not be read or
/// names no stage (the page and a warning name it), 1 RUN is not a folder or the page cannot be written, 2 a bad
/// command line.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// The run folder: stage outputs as its subfolders (make demo: out/demo).
    #[arg(long, short, value_name = "DIR")]
    run: PathBuf,
    /// The page's title (default: "dcgan-pipeline run <folder name>").
    #[arg(long)]
    title: Option<String>,
}

fn main() {
    exit_with("report", run(Cli::parse()))
}

fn run(cli: Cli) -> Result<i32> {
    if !cli.run.is_dir() {
        bail!("{}: not a folder", cli.run.display());
    }
    let name = cli
        .run
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let title = cli.title.unwrap_or_else(|| format!("dcgan-pipeline run {name}"));
    let stages = find_stages(&cli.run);
    let unreadable = unreadable_summaries(&cli.run);
    for (path, why) in &unreadable {
        eprintln!(
            "report: warning: {}",
            for_terminal(&format!("{}: {why}; its stage's section is left out of the page", path.display()))
        );
    }
    let path =
        write_report(&cli.run, &title).with_context(|| format!("{}: cannot write report.html", cli.run.display()))?;
    let names: Vec<&str> = stages.iter().map(|s| s.stage.as_str()).collect();
    println!(
        "report: {} ({} stage outputs: {})",
        path.display(),
        names.len(),
        if names.is_empty() { "none".into() } else { names.join(", ") }
    );
    Ok(if unreadable.is_empty() { 0 } else { EXIT_SOME_INPUTS_FAILED })
}
