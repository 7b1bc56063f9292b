//! What every per-image stage binary does once its stage is built: run or merge, then print a
//! one-line summary and choose the exit status. It takes the `[run]` settings and the config's
//! text, never the whole configuration (config.rs composes the stages; the contract knows none).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::merge::merge;
use super::runner::{run_per_image, PerImageStage, RunSpec};
use super::{RunSettings, StageArgs, EXIT_SOME_INPUTS_FAILED};
use crate::data::names::for_terminal;
use crate::data::ImageSource;

/// Runs (or, with --merge, merges) `stage` as the command line asks; returns the exit status.
/// `config_toml` is the effective configuration, recorded with the outputs.
pub fn run_stage<S: PerImageStage>(
    stage: &S,
    args: &StageArgs,
    run: &RunSettings,
    config_toml: String,
    output: &Path,
    part_size: u64,
    fingerprint: String,
) -> Result<i32> {
    let name = S::NAME;
    let summary = if args.merge {
        if output.is_dir() {
            super::owner::claim_output(output, name)?;
        }
        merge(stage, output)?
    } else {
        let input = args.input.as_deref().context("--input is required")?;
        refuse_output_in_input(input, output)?;
        let source = ImageSource::open_with(input, &run.source_options()).context("cannot open the input")?;
        refuse_empty_input(&source)?;
        if let ImageSource::Archive(archive) = &source {
            eprintln!("{}", for_terminal(&format!("{name}: {} read as {}", input.display(), archive.kind())));
        }
        super::owner::claim_output(output, name)?;
        if source.hidden() > 0 {
            eprintln!(
                "{name}: {} hidden entries (names starting with \".\") are not read; each is a skipped row of the manifest",
                source.hidden()
            );
        }
        let threads = threads_within_memory(stage, run);
        let spec = RunSpec {
            source: &source,
            output,
            shard: args.shard,
            force: args.force,
            part_size,
            batch: run.batch,
            threads,
            log_every_s: run.log_every_s,
            config_toml,
            fingerprint,
        };
        let (report, summary) = run_per_image(stage, &spec)?;
        let Some(summary) = summary else {
            // Under slurm/submit the merge is already queued as a job of its own (slurm/stage.sbatch).
            let next = if std::env::var_os("DCGAN_MERGE_QUEUED").is_some() {
                "its merge job runs once every shard has finished".to_owned()
            } else {
                format!("once every shard has finished: {name} --merge --output {}", output.display())
            };
            eprintln!(
                "{}",
                for_terminal(&format!(
                    "{name}: shard {} done: {} inputs processed, {} failed; {next}",
                    report.shard, report.records_processed, report.errors,
                ))
            );
            return Ok(if report.errors > 0 { EXIT_SOME_INPUTS_FAILED } else { 0 });
        };
        summary
    };
    if summary.records == 0 {
        // An archive's records are only known once read through.
        bail!("{}: no inputs found; check --input", args.input.as_deref().unwrap_or(output).display());
    }
    eprintln!(
        "{}",
        for_terminal(&format!(
            "{name}: {} inputs: {} ok, {} skipped, {} failed; {} rows -> {} (see {})",
            summary.records,
            summary.ok,
            summary.skipped,
            summary.errors,
            summary.outputs,
            output.display(),
            summary.summary_path.display()
        ))
    );
    Ok(if summary.errors > 0 { EXIT_SOME_INPUTS_FAILED } else { 0 })
}

/// `path` made absolute with its links resolved, as far as it exists; the rest appended as given.
fn resolved(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(real) => return Ok(rest.iter().rev().fold(real, |p, c| p.join(c))),
            Err(_) => {
                let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                    return Ok(absolute);
                };
                rest.push(name.to_owned());
                existing = parent;
            }
        }
    }
}

/// Refuses an output folder that is the input folder or lies inside it, for inputs that are walked
/// through: the run would read its own outputs back as inputs (a faces re-run with --force cropped
/// its own crops).
pub fn refuse_output_in_input(input: &Path, output: &Path) -> Result<()> {
    refuse_output_at_input(input, output, true)
}

/// Refuses an output folder that is the input folder, for inputs read by file name (a packed
/// folder, CIFAR-10's batches): their outputs would overwrite the input's own files (summary.json,
/// config.toml). A folder inside such an input is never read back, so it is allowed.
pub fn refuse_output_equal_to_input(input: &Path, output: &Path) -> Result<()> {
    refuse_output_at_input(input, output, false)
}

fn refuse_output_at_input(input: &Path, output: &Path, inside_too: bool) -> Result<()> {
    let real_input = resolved(input).with_context(|| format!("{}: cannot resolve", input.display()))?;
    let real_output = resolved(output).with_context(|| format!("{}: cannot resolve", output.display()))?;
    if !real_input.is_dir() {
        return Ok(());
    }
    if real_output == real_input {
        bail!(
            "--output {} is --input {}: the run would write over its own inputs; choose another output folder",
            output.display(),
            input.display()
        );
    }
    if inside_too && real_output.starts_with(&real_input) {
        bail!(
            "--output {} lies inside --input {}: the run would read its own outputs as inputs; choose an output folder outside the input",
            output.display(),
            input.display()
        );
    }
    Ok(())
}

/// Refuses an input that holds nothing to work on (nothing, or only hidden entries): the chosen
/// behaviour for an empty input is an error, before any output is written.
fn refuse_empty_input(source: &ImageSource) -> Result<()> {
    if source.inputs_hint() != Some(0) {
        return Ok(());
    }
    let mut found = Vec::new();
    if source.hidden() > 0 {
        found.push(format!("{} hidden entries, not read", source.hidden()));
    }
    if source.ignored() > 0 {
        found.push(format!("{} files that are not images", source.ignored()));
    }
    bail!(
        "{}: no images found{}; check --input",
        source.path().display(),
        if found.is_empty() { " (it is empty)".to_owned() } else { format!(" ({})", found.join(", ")) }
    )
}

/// Ends the process: the status of `result`, or 1 with the error chain on one line.
pub fn exit_with(name: &str, result: Result<i32>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // One line whatever the error quotes (a file name with a newline or an ANSI escape).
            eprintln!("{name}: error: {}", for_terminal(&one_line(&e)));
            std::process::exit(1);
        }
    }
}

/// The error chain on one line, `: `-joined like `{:#}`, without repeating a cause that the line
/// already ends with (a typed error whose message holds its source, e.g. `{path}: {source}`,
/// would otherwise print the source twice).
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// `run.threads` (0: every core), lowered where that many photos of the largest size the stage
/// accepts, decoded at once, would not fit in `run.max_memory_gb` or the machine's available memory.
fn threads_within_memory<S: PerImageStage>(stage: &S, run: &RunSettings) -> usize {
    let wanted = match run.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let (per_image, formula) = stage.peak_bytes_per_image();
    let budget = crate::memory::budget(run.max_memory_gb, None);
    let threads = crate::memory::workers_within(wanted, per_image, budget.as_ref());
    if let (true, Some(budget)) = (threads < wanted, budget) {
        eprintln!(
            "{}: {threads} worker threads instead of {wanted}: each may hold up to {} ({formula}) and {} threads would \
             exceed {} ({}); a lower max_pixels allows more",
            S::NAME,
            crate::memory::gib(per_image),
            wanted,
            crate::memory::gib(budget.bytes),
            budget.source
        );
    }
    threads
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct WithSource {
        path: String,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated_and_context_is_kept() {
        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let e =
            anyhow::Error::new(WithSource { path: "out/x.npy".into(), source: full }).context("cannot write part 1");
        assert_eq!(one_line(&e), "cannot write part 1: out/x.npy: No space left on device");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&plain), "outer: inner");
    }
}
