//! What every per-image stage binary does once its stage is built: run or merge, then print a
//! one-line summary and choose the exit status. It takes the `[run]` settings and the config's
//! text, never the whole configuration (config.rs composes the stages; the contract knows none).

use std::path::Path;

use anyhow::{Context, Result};

use super::runner::{merge, run_per_image, PerImageStage, RunSpec};
use super::{RunSettings, StageArgs, EXIT_SOME_INPUTS_FAILED};
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
        merge(stage, output)?
    } else {
        let input = args.input.as_deref().context("--input is required")?;
        let source = ImageSource::open(input).context("cannot open the input")?;
        let spec = RunSpec {
            source: &source,
            output,
            shard: args.shard,
            force: args.force,
            part_size,
            batch: run.batch,
            threads: run.threads,
            log_every_s: run.log_every_s,
            config_toml,
            fingerprint,
        };
        let (report, summary) = run_per_image(stage, &spec)?;
        let Some(summary) = summary else {
            eprintln!(
                "{name}: shard {} done: {} inputs processed, {} failed; once every shard has finished: {name} --merge --output {}",
                report.shard,
                report.records_processed,
                report.errors,
                output.display()
            );
            return Ok(if report.errors > 0 { EXIT_SOME_INPUTS_FAILED } else { 0 });
        };
        summary
    };
    eprintln!(
        "{name}: {} inputs: {} ok, {} skipped, {} failed; {} rows -> {} (see {})",
        summary.records,
        summary.ok,
        summary.skipped,
        summary.errors,
        summary.outputs,
        output.display(),
        summary.summary_path.display()
    );
    Ok(if summary.errors > 0 { EXIT_SOME_INPUTS_FAILED } else { 0 })
}

/// Ends the process: the status of `result`, or 1 with the error chain on one line.
pub fn exit_with(name: &str, result: Result<i32>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("{name}: error: {}", one_line(&e));
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
