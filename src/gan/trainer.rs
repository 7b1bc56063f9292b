//! DCGAN training as the paper did it: Adam (lr 2e-4, betas 0.5/0.999), batch 128, the
//! non-saturating loss, D and G alternating, no augmentation; checkpoints that resume exactly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::adversarial::StepLosses;
use super::checkpoints::{
    checkpoints_dir, latest_intact_checkpoint, publish_newest, save_checkpoint, save_snapshot, snapshots_dir,
    CheckpointState,
};
use super::collapse::{CollapseCriteria, CollapseMonitor, CollapseReport};
use super::loss_log::{read_losses, write_losses, LossRow};
use super::models::sample_z;
use super::nn_watch::NnWatch;
use super::resume_guard::{refuse_other_run, TrainInput};
use super::sample::write_sample_grid;
use crate::data::LabeledImages;
use crate::fsutil;
use crate::stage::progress::Progress;
use crate::torchutil::input::to_network_input;

// The paths callers have named since training was one file (tests/train_stage.rs,
// tests/reliability_settings.rs): the pair and its settings live in adversarial.rs and train_config.rs.
pub use super::adversarial::{non_finite_parameter, Gan};
pub use super::train_config::{ChannelsLast, TrainConfig};

/// A permutation of 0..n that depends only on (seed, epoch), the same on every device.
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<i64> {
    let mut state = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<i64> = (0..n as i64).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// What a training run did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub device: String,
    pub images: usize,
    pub steps_per_epoch: u64,
    pub start_step: u64,
    pub end_step: u64,
    pub wall_s: f64,
    pub images_per_s: Option<f64>,
    pub final_losses: Option<LossRow>,
    pub checkpoint: Option<PathBuf>,
    /// Whether (and when) G collapsed: [`super::collapse`].
    pub collapse: CollapseReport,
}

/// 256 training images spread over the set (uint8 on the device), as the networks take them: the
/// real spread collapse is measured against.
fn collapse_probe(images: &Tensor, seed: u64) -> Tensor {
    let n = images.size()[0] as usize;
    let picks: Vec<i64> = epoch_permutation(n, seed, u64::MAX).into_iter().take(256).collect();
    to_network_input(&images.index_select(0, &Tensor::from_slice(&picks).to_device(images.device())))
}

/// Checks that the images suit the preset; the error says what to do.
pub fn check_dataset(config: &TrainConfig, data: &LabeledImages, source: &str) -> Result<()> {
    let size = config.preset.image_size() as u32;
    if data.is_empty() {
        bail!("{source}: no images to train on");
    }
    if (data.height, data.width) != (size, size) {
        bail!(
            "{source}: images are {}x{}, preset {} trains on {size}x{size} (make them with crop --set crop.size={size}, or pick the other preset)",
            data.width,
            data.height,
            config.preset
        );
    }
    let n = if config.limit_images > 0 { data.len().min(config.limit_images) } else { data.len() };
    if (n as i64) < config.batch {
        bail!("{source}: {n} images, fewer than one batch of {} (lower train.batch)", config.batch);
    }
    Ok(())
}

/// The training device, checked (CUDA must be there when asked for).
fn training_device(config: &TrainConfig) -> Result<Device> {
    let device = config.device()?;
    if let Device::Cuda(_) = device {
        if !tch::Cuda::is_available() {
            bail!("train.device = {:?}, but CUDA is not available here", config.device);
        }
        tch::Cuda::cudnn_set_benchmark(true);
    }
    Ok(device)
}

/// Creates `output` (and samples/), removes stale temporaries; with `force`, what an earlier run left.
fn prepare_output(output: &Path, force: bool) -> Result<()> {
    std::fs::create_dir_all(output.join("samples")).with_context(|| format!("{}: cannot create", output.display()))?;
    fsutil::remove_stale_temporaries(output)?;
    if force {
        let _ = std::fs::remove_dir_all(checkpoints_dir(output));
        let _ = std::fs::remove_dir_all(snapshots_dir(output));
        let _ = std::fs::remove_dir_all(output.join("samples"));
        std::fs::create_dir_all(output.join("samples"))?;
        for name in ["losses.csv", "losses.png", "summary.json", super::nn_watch::CSV, super::nn_watch::PNG] {
            let _ = std::fs::remove_file(output.join(name));
        }
    }
    Ok(())
}

/// Loads `output`'s latest checkpoint into `gan` when there is one (it must be of the same
/// settings); returns the step it reached, the training wall time behind it, and the step until
/// which Adam's moments are re-estimated at lr 0 (a checkpoint without optimiser state).
fn resume(gan: &mut Gan, config: &TrainConfig, output: &Path, input: &TrainInput) -> Result<Resumed> {
    let Some(found) = latest_intact_checkpoint(output)? else { return Ok(Resumed::default()) };
    for line in &found.passed_over {
        eprintln!("train: warning: {line}: not resumed from");
    }
    let (dir, state) = (found.dir, found.state);
    if !found.verified {
        eprintln!(
            "train: note: {}: written before checkpoints recorded their files' sha256; resumed unverified",
            dir.display()
        );
    }
    refuse_other_run(output, &state, &config.resume_settings(), &config.resume_fingerprint(), input)?;
    if state.input.is_none() {
        eprintln!(
            "train: note: {}: records no input (written before inputs were recorded); not checked",
            dir.display()
        );
    }
    let mut warmup_until = 0;
    if !gan.load(&dir)? {
        let n = config.moment_warmup_steps;
        let note = format!("Adam's moments restart from zero, re-estimated over {n} steps at lr 0");
        eprintln!("train: {}: no optimiser state; {note}", dir.display());
        warmup_until = state.step + n;
    }
    let which = if found.passed_over.is_empty() { "" } else { "the previous intact checkpoint " };
    eprintln!("train: resuming from {which}{} (step {})", dir.display(), state.step);
    Ok(Resumed { step: state.step, wall_s: state.train_wall_s.unwrap_or(0.0), warmup_until, dir: Some(dir) })
}

/// Where a run starts: the step, the training wall time behind it, the step until which Adam's
/// moments are re-estimated at lr 0, and the checkpoint it was loaded from.
#[derive(Default)]
struct Resumed {
    step: u64,
    wall_s: f64,
    warmup_until: u64,
    dir: Option<PathBuf>,
}

/// A training run in progress: the networks, the images on the device, where it stands, and what
/// it has written.
struct TrainingRun<'a> {
    config: &'a TrainConfig,
    /// What it trains on, recorded in each checkpoint.
    input: &'a TrainInput,
    output: &'a Path,
    device: Device,
    gan: Gan,
    /// The whole uint8 set on the device; batches are cut there.
    images: Tensor,
    /// The images trained on (train.limit_images applied).
    n: usize,
    steps_per_epoch: u64,
    total_steps: u64,
    start_step: u64,
    step: u64,
    /// Steps before this one run at lr 0 (Adam's moments re-estimated after a resume without them).
    warmup_until: u64,
    /// The z of every sample grid, so that grids compare across epochs.
    fixed_z: Tensor,
    collapse: CollapseMonitor,
    /// The mean distance of G(fixed z) to a subset of the training set, every epoch.
    nn_watch: NnWatch,
    progress: Progress,
    started: Instant,
    wall_before: f64,
    /// When the current loss row's window began, and the steps in it.
    window: (Instant, u64),
    /// The epoch whose shuffled order `order` holds.
    order: Option<(u64, Tensor)>,
    rows: Vec<LossRow>,
    last_checkpoint: Option<PathBuf>,
    /// The first step at which D's and G's loss was not finite (-1: not yet), kept on the device
    /// so that watching every step costs no sync; read at each loss row.
    first_non_finite: Tensor,
}

impl<'a> TrainingRun<'a> {
    /// A new G and D, or those of `output`'s latest checkpoint; the images on the device; the
    /// fixed z of the sample grids; the collapse monitor's probe.
    fn start(
        config: &'a TrainConfig,
        data: &LabeledImages,
        output: &'a Path,
        device: Device,
        log_every_s: f64,
        input: &'a TrainInput,
    ) -> Result<Self> {
        let mut gan = Gan::new(config, device);
        let resumed = resume(&mut gan, config, output, input)?;
        let (start_step, wall_before, warmup_until) = (resumed.step, resumed.wall_s, resumed.warmup_until);
        let rows = read_losses(&output.join("losses.csv"), start_step)?;
        let n = if config.limit_images > 0 { data.len().min(config.limit_images) } else { data.len() };
        let steps_per_epoch = (n as i64 / config.batch) as u64;
        let mut total_steps = config.epochs.saturating_mul(steps_per_epoch);
        if config.max_steps > 0 {
            total_steps = total_steps.min(config.max_steps);
        }
        let images = data.to_tensor().narrow(0, 0, n as i64).to_device(device);
        tch::manual_seed(config.seed as i64 ^ 0x5EED);
        let fixed_z = sample_z(config.prior, 64, config.z_dim(), device);
        let collapse = CollapseMonitor::new(&collapse_probe(&images, config.seed), CollapseCriteria::default());
        let nn_watch = NnWatch::new(&images, config.seed, output, start_step)?;
        let progress = Progress::new("train", Some(total_steps.saturating_sub(start_step)), log_every_s);
        Ok(Self {
            config,
            input,
            output,
            device,
            gan,
            images,
            n,
            steps_per_epoch,
            total_steps,
            start_step,
            step: start_step,
            warmup_until,
            fixed_z,
            collapse,
            nn_watch,
            progress,
            started: Instant::now(),
            wall_before,
            window: (Instant::now(), 0),
            order: None,
            rows,
            last_checkpoint: resumed.dir,
            first_non_finite: Tensor::full([2], -1, (Kind::Int64, device)),
        })
    }

    fn state_at(&self, step: u64) -> CheckpointState {
        let config = self.config;
        CheckpointState {
            step,
            epoch: step / self.steps_per_epoch.max(1),
            fingerprint: config.resume_fingerprint(),
            preset: config.preset,
            z_dim: config.z_dim(),
            width: config.width(),
            train_wall_s: Some(self.wall_before + self.started.elapsed().as_secs_f64()),
            device: Some(format!("{:?}", self.device)),
            steps_per_epoch: Some(self.steps_per_epoch),
            files: None,
            settings: Some(config.resume_settings()),
            input: Some(self.input.clone()),
        }
    }

    /// The current step's batch: the epoch's shuffled order, cut on the device.
    fn next_batch(&mut self) -> Tensor {
        let (config, batch) = (self.config, self.config.batch);
        let epoch = self.step / self.steps_per_epoch;
        let within = (self.step % self.steps_per_epoch) as i64;
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let perm = epoch_permutation(self.n, config.seed, epoch);
            self.order = Some((epoch, Tensor::from_slice(&perm).to_device(self.device)));
        }
        let indices = self.order.as_ref().expect("set above").1.narrow(0, within * batch, batch);
        self.gan.network_input(&self.images.index_select(0, &indices))
    }

    /// One step of D and G, then what is due after it: loss row, pictures, snapshot, checkpoint.
    fn train_step(&mut self) -> Result<()> {
        let real = self.next_batch();
        self.gan.set_lr(if self.step < self.warmup_until { 0.0 } else { self.config.lr });
        let losses = self
            .gan
            .train_step(&real, (self.config.seed as i64).wrapping_mul(1_000_003).wrapping_add(self.step as i64));
        self.step += 1;
        self.watch_losses(&losses);
        self.progress.inc(1);
        self.window.1 += 1;
        self.stop_early_when_asked();
        self.log_losses(&losses)?;
        self.write_due_outputs(&losses)
    }

    /// Notes on the device whether this step's losses are finite (the first step each was not).
    fn watch_losses(&mut self, losses: &StepLosses) {
        let finite = Tensor::stack(&[losses.loss_d.isfinite(), losses.loss_g.isfinite()], 0);
        let keep = finite.logical_or(&self.first_non_finite.ge(0));
        self.first_non_finite = self.first_non_finite.where_scalarother(&keep, self.step as i64);
    }

    /// Stops the run at a non-finite loss (the first step it happened, which loss) or parameter
    /// (which network and tensor), naming the last good checkpoint, which is kept.
    fn stop_when_not_finite(&self) -> Result<()> {
        let first = Vec::<i64>::try_from(self.first_non_finite.to_device(Device::Cpu))?;
        let bad_loss = ["loss_d", "loss_g"].iter().zip(&first).filter(|(_, s)| **s >= 0).min_by_key(|(_, s)| **s);
        let what = match bad_loss {
            Some((name, step)) => format!("step {step}: {name} is not finite"),
            None => match non_finite_parameter(&self.gan)? {
                Some(name) => format!("step {}: parameter {name} is not finite", self.step),
                None => return Ok(()),
            },
        };
        write_losses(&self.rows, self.output)?;
        let kept = self.last_checkpoint.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "none yet".into());
        bail!("{what} (train.lr = {:e}); training stopped, the last good checkpoint is kept ({kept})", self.config.lr)
    }

    /// Out of time (train.max_minutes) or asked to stop by a signal: this step becomes the last
    /// (checkpoint, samples, summary), and a re-run resumes.
    fn stop_early_when_asked(&mut self) {
        let (config, step) = (self.config, self.step);
        if config.max_minutes > 0.0
            && step < self.total_steps
            && self.started.elapsed().as_secs_f64() >= config.max_minutes * 60.0
        {
            self.progress
                .note(&format!("train.max_minutes = {} reached at step {step}; a re-run resumes", config.max_minutes));
            self.total_steps = step;
        }
        if let Some(signal) = crate::stage::preemption::received().filter(|_| step < self.total_steps) {
            // Asked to stop (Slurm's requeue, preemption or time limit): save now, a re-run resumes.
            self.progress
                .note(&format!("{signal} at step {step}: writing a checkpoint and stopping; a re-run resumes"));
            self.total_steps = step;
        }
    }

    fn epoch_done(&self) -> bool {
        self.step.is_multiple_of(self.steps_per_epoch)
    }

    /// A loss row every train.log_every steps (and at each epoch's end and the last step); stops
    /// the run when a loss is not finite, keeping the last good checkpoint.
    fn log_losses(&mut self, losses: &StepLosses) -> Result<()> {
        let step = self.step;
        if !(step.is_multiple_of(self.config.log_every.max(1)) || self.epoch_done() || step == self.total_steps) {
            return Ok(());
        }
        let row = self.loss_row(losses)?;
        self.window = (Instant::now(), 0);
        self.stop_when_not_finite()?;
        self.rows.push(row);
        if let Some(line) = self.collapse.observe(step, row.d_fake, &self.gan.sample(&self.fixed_z)) {
            self.progress.note(&line);
        }
        Ok(())
    }

    /// This step's losses read back from the device, with the images/s since the last row.
    fn loss_row(&self, losses: &StepLosses) -> Result<LossRow> {
        Ok(LossRow {
            step: self.step,
            epoch: (self.step - 1) / self.steps_per_epoch,
            loss_d: f64::try_from(&losses.loss_d)?,
            loss_g: f64::try_from(&losses.loss_g)?,
            d_real: f64::try_from(&losses.d_real)?,
            d_fake: f64::try_from(&losses.d_fake)?,
            images_per_s: (self.window.1 as i64 * self.config.batch) as f64 / self.window.0.elapsed().as_secs_f64(),
        })
    }

    /// The sample grid, the snapshot and the checkpoint that are due at this step.
    fn write_due_outputs(&mut self, losses: &StepLosses) -> Result<()> {
        let (config, step, output) = (self.config, self.step, self.output);
        let (epoch_done, last) = (self.epoch_done(), step == self.total_steps);
        let sample_now = config.sample_every > 0 && step.is_multiple_of(config.sample_every);
        if epoch_done || sample_now || last {
            let name = if epoch_done {
                format!("epoch-{:04}.png", step / self.steps_per_epoch)
            } else {
                format!("step-{step:08}.png")
            };
            let samples = self.gan.sample(&self.fixed_z);
            write_sample_grid(&samples, 8, 2, &output.join("samples").join(name))?;
            if epoch_done || last {
                self.nn_watch.observe(step, (step - 1) / self.steps_per_epoch, &samples)?;
            }
        }
        // Snapshots at every snapshot_every_epochs-th epoch's end, and at the end of a run that
        // stopped within an epoch (max_steps, max_minutes), so that the last D is scored too.
        let epochs_done = step / self.steps_per_epoch;
        let every = config.snapshot_every_epochs;
        if every > 0 && ((epoch_done && epochs_done.is_multiple_of(every)) || (last && !epoch_done)) {
            self.stop_when_not_finite()?;
            save_snapshot(&self.gan, output, &self.state_at(step))?;
        }
        let checkpoint_now = config.checkpoint_every > 0 && step.is_multiple_of(config.checkpoint_every);
        if epoch_done || checkpoint_now || last {
            // Never a checkpoint of non-finite weights.
            self.stop_when_not_finite()?;
            self.last_checkpoint =
                Some(save_checkpoint(&self.gan, output, &self.state_at(step), config.keep_checkpoints)?);
            write_losses(&self.rows, output)?;
            self.nn_watch.write(output)?;
            // This step's own losses: a checkpoint between two loss rows (checkpoint_every below
            // log_every) printed the last row's, as if nothing had moved since.
            let r = match self.rows.last().filter(|r| r.step == step) {
                Some(row) => *row,
                None => self.loss_row(losses)?,
            };
            self.progress.note(&format!(
                "step {step} (epoch {}): loss D {:.3} G {:.3}, D(x) {:.3} D(G(z)) {:.3}, {:.0} images/s",
                r.epoch, r.loss_d, r.loss_g, r.d_real, r.d_fake, r.images_per_s
            ));
        }
        Ok(())
    }

    /// The collapse verdict, the newest weights under stable names, and the report.
    fn finish(self) -> Result<TrainReport> {
        self.progress.finish();
        let collapse = self.collapse.report();
        if collapse.collapsed_at_end {
            eprintln!("train: warning: {}", collapse.verdict);
        }
        let wall_s = self.started.elapsed().as_secs_f64();
        let trained = self.step - self.start_step;
        if let Some(dir) = &self.last_checkpoint {
            publish_newest(dir, self.output)?;
        }
        Ok(TrainReport {
            device: format!("{:?}", self.device),
            images: self.n,
            steps_per_epoch: self.steps_per_epoch,
            start_step: self.start_step,
            end_step: self.step,
            wall_s,
            images_per_s: (trained > 0).then(|| (trained as i64 * self.config.batch) as f64 / wall_s),
            final_losses: self.rows.last().copied(),
            checkpoint: self.last_checkpoint,
            collapse,
        })
    }
}

/// Trains on `data` (read from `input`) into `output`, resuming from its latest checkpoint when
/// there is one of the same settings and input.
pub fn train(
    config: &TrainConfig,
    data: &LabeledImages,
    output: &Path,
    force: bool,
    log_every_s: f64,
    input: &TrainInput,
) -> Result<TrainReport> {
    let device = training_device(config)?;
    prepare_output(output, force)?;
    let mut run = TrainingRun::start(config, data, output, device, log_every_s, input)?;
    while run.step < run.total_steps {
        run.train_step()?;
    }
    run.finish()
}
