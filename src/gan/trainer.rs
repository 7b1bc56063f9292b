//! DCGAN training as the paper did it: Adam (lr 2e-4, betas 0.5/0.999), batch 128, the
//! non-saturating loss, D and G alternating, no augmentation; checkpoints that resume exactly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::checkpoints::{checkpoints_dir, latest_intact_checkpoint, snapshots_dir, CheckpointState};
use super::collapse::{CollapseCriteria, CollapseMonitor, CollapseReport};
use super::models::{sample_z, Discriminator, Generator, Preset, Prior};
use super::nn_watch::NnWatch;
use super::resume_guard::{refuse_other_run, TrainInput};
use super::sample::write_sample_grid;
use crate::data::LabeledImages;
use crate::fsutil;
use crate::plots::{write_line_plot, Legend, LinePlot, Panel, Series};
use crate::stage::progress::Progress;
use crate::torchutil::adam::Adam;
use crate::torchutil::device::parse_device;
use crate::torchutil::input::to_network_input;

/// Everything training needs; `[train]` in the config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// imagenet32 (the authors' 32x32 ImageNet model) or dcgan64 (faces/LSUN, Figure 1).
    pub preset: Preset,
    /// Size of z; 0 = the preset's (256 for imagenet32, 100 for dcgan64).
    pub z_dim: i64,
    /// uniform (U(-1, 1), the paper's) or normal.
    pub prior: Prior,
    /// Width of D's first layer; G mirrors D. 0 = the paper's 128.
    pub width: i64,
    pub epochs: u64,
    /// Stop after this many steps in all (0: no limit besides epochs).
    pub max_steps: u64,
    pub batch: i64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub seed: u64,
    /// auto (CUDA when there is one), cpu, cuda or cuda:N.
    pub device: String,
    /// Steps between loss rows (each reads values back from the device).
    pub log_every: u64,
    /// Steps between sample grids besides the end of each epoch (0: epochs only).
    pub sample_every: u64,
    /// Steps between checkpoints besides the end of each epoch (0: epochs only).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (the newest).
    pub keep_checkpoints: usize,
    /// Every this many epochs, G and D (no optimiser state) go to snapshots/step-N/, never removed
    /// (apart from keep_checkpoints): what `cifar-eval --snapshots` chooses a D from. 0: none.
    pub snapshot_every_epochs: u64,
    /// Train on the first N images only (0: all).
    pub limit_images: usize,
    /// Stop cleanly (checkpoint, samples, summary) once this much wall time has passed in this
    /// invocation; a re-run resumes. 0: no limit.
    pub max_minutes: f64,
    /// After resuming from weights without optimiser state (the GPU leases, docs/gpu.md), this
    /// many steps re-estimate Adam's moments with the weights held still (lr 0). 0: none.
    pub moment_warmup_steps: u64,
    /// float32, or bfloat16: convolutions in bfloat16, everything else (BatchNorm, losses, weights,
    /// Adam) in float32, as autocast does. bfloat16 needs a GPU that has it (CUDA only).
    pub precision: Precision,
    /// Images and conv weights in channels-last (NHWC) memory order: "auto" (on the CPU, where
    /// oneDNN's convolutions prefer it; not on CUDA, where it measured 0.87x on an H100 and 1.07x
    /// on an H200 in float32), true or false.
    pub channels_last: ChannelsLast,
}

/// [`TrainConfig::channels_last`]: `"auto"`, `true` or `false` in the TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FlagOrWord", into = "FlagOrWord")]
pub enum ChannelsLast {
    Auto,
    On,
    Off,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum FlagOrWord {
    Flag(bool),
    Word(String),
}

impl TryFrom<FlagOrWord> for ChannelsLast {
    type Error = String;
    fn try_from(value: FlagOrWord) -> Result<Self, String> {
        match value {
            FlagOrWord::Flag(true) => Ok(Self::On),
            FlagOrWord::Flag(false) => Ok(Self::Off),
            FlagOrWord::Word(w) if w == "auto" => Ok(Self::Auto),
            FlagOrWord::Word(w) => Err(format!("channels_last = {w:?}: expected \"auto\", true or false")),
        }
    }
}

impl From<ChannelsLast> for FlagOrWord {
    fn from(value: ChannelsLast) -> Self {
        match value {
            ChannelsLast::Auto => Self::Word("auto".to_owned()),
            ChannelsLast::On => Self::Flag(true),
            ChannelsLast::Off => Self::Flag(false),
        }
    }
}

impl ChannelsLast {
    /// Whether tensors on `device` are kept channels-last.
    pub fn on(self, device: Device) -> bool {
        match self {
            Self::Auto => device == Device::Cpu,
            Self::On => true,
            Self::Off => false,
        }
    }
}

/// The type convolutions compute in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Float32,
    Bfloat16,
}

impl TrainConfig {
    pub fn z_dim(&self) -> i64 {
        if self.z_dim > 0 {
            self.z_dim
        } else {
            self.preset.default_z_dim()
        }
    }
    pub fn width(&self) -> i64 {
        if self.width > 0 {
            self.width
        } else {
            self.preset.default_width()
        }
    }

    /// The settings a resumed run must share with the run it continues (not the length of
    /// training, the device or how often things are logged).
    pub fn resume_fingerprint(&self) -> String {
        crate::stage::fingerprint(&self.resume_settings())
    }

    /// Those settings by key (recorded in each checkpoint, so that a refusal names what changed).
    pub fn resume_settings(&self) -> serde_json::Value {
        serde_json::json!({
            "preset": self.preset, "z_dim": self.z_dim(), "prior": self.prior, "width": self.width(),
            "batch": self.batch, "lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "seed": self.seed,
            "limit_images": self.limit_images,
        })
    }

    pub fn device(&self) -> Result<Device> {
        parse_device(&self.device).map_err(|e| anyhow::anyhow!("train.device: {e}"))
    }
}

/// G and D with their optimisers.
pub struct Gan {
    pub device: Device,
    pub prior: Prior,
    pub g_vars: nn::VarStore,
    pub d_vars: nn::VarStore,
    pub g: Generator,
    pub d: Discriminator,
    pub opt_g: Adam,
    pub opt_d: Adam,
    /// Images and conv weights in channels-last order (see [`TrainConfig::channels_last`]).
    pub channels_last: bool,
}

/// One step's numbers, still on the device (reading them back costs a sync).
pub struct StepLosses {
    pub loss_d: Tensor,
    pub loss_g: Tensor,
    pub d_real: Tensor,
    pub d_fake: Tensor,
}

impl Gan {
    pub fn new(config: &TrainConfig, device: Device) -> Self {
        tch::manual_seed(config.seed as i64);
        let g_vars = nn::VarStore::new(device);
        let d_vars = nn::VarStore::new(device);
        let mut g = Generator::new(&g_vars.root(), config.preset, config.z_dim(), config.width());
        let mut d = Discriminator::new(&d_vars.root(), config.preset, config.width());
        // Mixed precision only where it exists and pays: cuDNN's tensor cores.
        let on_cuda = matches!(device, Device::Cuda(_));
        let channels_last = config.channels_last.on(device);
        if on_cuda && config.precision == Precision::Bfloat16 {
            g.set_compute_kind(Kind::BFloat16);
            d.set_compute_kind(Kind::BFloat16);
        }
        if channels_last {
            for vs in [&g_vars, &d_vars] {
                for (_, mut t) in vs.variables() {
                    if t.dim() == 4 {
                        tch::no_grad(|| t.set_data(&to_channels_last(&t)));
                    }
                }
            }
        }
        let opt_g = Adam::new(&g_vars, config.lr, config.beta1, config.beta2);
        let opt_d = Adam::new(&d_vars, config.lr, config.beta1, config.beta2);
        Self { device, prior: config.prior, g_vars, d_vars, g, d, opt_g, opt_d, channels_last }
    }

    /// A batch of uint8 images (N x H x W x 3) as the networks take it: N x 3 x H x W in [-1, 1],
    /// channels-last when the weights are.
    pub fn network_input(&self, images: &Tensor) -> Tensor {
        let real = to_network_input(images);
        if self.channels_last {
            to_channels_last(&real)
        } else {
            real
        }
    }

    /// One D update then one G update on `real` (N x 3 x H x W in [-1, 1]). `seed` fixes z, so a
    /// resumed run draws what the uninterrupted one drew.
    pub fn train_step(&mut self, real: &Tensor, seed: i64) -> StepLosses {
        tch::manual_seed(seed);
        let n = real.size()[0];
        let z = sample_z(self.prior, n, self.g.z_dim, self.device);
        let fake = self.g.forward_t(&z, true);

        // D: real -> 1, fake -> 0.
        let d_real_logits = self.d.forward_t(real, true);
        let d_fake_logits = self.d.forward_t(&fake.detach(), true);
        let ones = Tensor::ones([n], (Kind::Float, self.device));
        let zeros = Tensor::zeros([n], (Kind::Float, self.device));
        let loss_d = d_real_logits.binary_cross_entropy_with_logits::<Tensor>(&ones, None, None, tch::Reduction::Mean)
            + d_fake_logits.binary_cross_entropy_with_logits::<Tensor>(&zeros, None, None, tch::Reduction::Mean);
        self.opt_d.zero_grad();
        loss_d.backward();
        self.opt_d.step();

        // G: the non-saturating loss, -log D(G(z)). D is frozen meanwhile, so that backward
        // computes only what flows to G, not D's weight gradients (a third of D's backward work,
        // which the usual PyTorch loop computes and drops at the next zero_grad).
        self.d_vars.freeze();
        let g_logits = self.d.forward_t(&fake, true);
        let loss_g = g_logits.binary_cross_entropy_with_logits::<Tensor>(&ones, None, None, tch::Reduction::Mean);
        self.opt_g.zero_grad();
        loss_g.backward();
        self.d_vars.unfreeze();
        self.opt_g.step();

        StepLosses {
            loss_d: loss_d.detach(),
            loss_g: loss_g.detach(),
            d_real: d_real_logits.detach().sigmoid().mean(Kind::Float),
            d_fake: d_fake_logits.detach().sigmoid().mean(Kind::Float),
        }
    }

    /// G's images for `z`, with BatchNorm on the batch's statistics as during training (the
    /// running averages lag far behind early on); G's running averages are left as they were, so
    /// sampling never changes the model.
    pub fn sample(&self, z: &Tensor) -> Tensor {
        let running: Vec<(Tensor, Tensor)> = self
            .g_vars
            .variables()
            .into_values()
            .filter(|t| !t.requires_grad())
            .map(|t| {
                let copy = t.copy();
                (t, copy)
            })
            .collect();
        let images = tch::no_grad(|| self.g.forward_t(z, true));
        tch::no_grad(|| {
            for (mut t, saved) in running {
                t.copy_(&saved);
            }
        });
        images
    }

    /// Sets both optimisers' learning rate.
    pub fn set_lr(&mut self, lr: f64) {
        self.opt_g.lr = lr;
        self.opt_d.lr = lr;
    }

    /// Writes G, D and both optimisers' states into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        save_vars(&self.g_vars, &dir.join("g.safetensors"))?;
        save_vars(&self.d_vars, &dir.join("d.safetensors"))?;
        self.opt_g.save(&dir.join("opt_g.safetensors"))?;
        self.opt_d.save(&dir.join("opt_d.safetensors"))?;
        Ok(())
    }

    /// Loads G and D (float32, or float16 as exported) and both optimisers' states. A folder
    /// without the optimisers' states (exported weights: the GPU run resumes from those,
    /// docs/gpu.md) leaves Adam's moments at zero; returns whether they were loaded.
    pub fn load(&mut self, dir: &Path) -> Result<bool> {
        let ctx = |name: &str| format!("{}: cannot load", dir.join(name).display());
        load_vars(&mut self.g_vars, &dir.join("g.safetensors")).with_context(|| ctx("g.safetensors"))?;
        load_vars(&mut self.d_vars, &dir.join("d.safetensors")).with_context(|| ctx("d.safetensors"))?;
        let [opt_g, opt_d] = ["opt_g.safetensors", "opt_d.safetensors"];
        if !dir.join(opt_g).exists() && !dir.join(opt_d).exists() {
            return Ok(false);
        }
        self.opt_g.load(&dir.join(opt_g)).with_context(|| ctx(opt_g))?;
        self.opt_d.load(&dir.join(opt_d)).with_context(|| ctx(opt_d))?;
        Ok(true)
    }
}

/// A VarStore as safetensors; weights kept channels-last are written in the standard order.
fn save_vars(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, t)| (k, t.contiguous())).collect();
    Tensor::write_safetensors(&named, path).with_context(|| format!("{}: cannot write", path.display()))
}

/// Loads a VarStore from safetensors. tch gives each variable the file's type, so float16 weights
/// (the exports) are turned back into float32, in place (channels-last strides kept).
fn load_vars(vs: &mut nn::VarStore, path: &Path) -> Result<(), tch::TchError> {
    vs.load(path)?;
    for (_, mut t) in vs.variables() {
        if t.kind() == Kind::Half {
            tch::no_grad(|| t.set_data(&t.to_kind(Kind::Float)));
        }
    }
    Ok(())
}

/// The first of G's and D's tensors (weights, BatchNorm statistics) holding a NaN or infinity,
/// as "D's c3.bn.running_var"; one reduction per tensor and one read back.
pub fn non_finite_parameter(gan: &Gan) -> Result<Option<String>> {
    for (net, vars) in [("G", &gan.g_vars), ("D", &gan.d_vars)] {
        let mut named: Vec<(String, Tensor)> = vars.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let flags: Vec<Tensor> = named.iter().map(|(_, t)| t.isfinite().all()).collect();
        let finite = Vec::<u8>::try_from(Tensor::stack(&flags, 0).to_kind(Kind::Uint8).to_device(Device::Cpu))?;
        if let Some(i) = finite.iter().position(|f| *f == 0) {
            return Ok(Some(format!("{net}'s {}", named[i].0)));
        }
    }
    Ok(None)
}

/// The same values with channels-last (NHWC) strides.
pub fn to_channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

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

/// One row of losses.csv.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossRow {
    pub step: u64,
    pub epoch: u64,
    pub loss_d: f64,
    pub loss_g: f64,
    pub d_real: f64,
    pub d_fake: f64,
    pub images_per_s: f64,
}

const CSV_HEADER: &str = "step,epoch,loss_d,loss_g,d_x,d_g_z,images_per_s";

fn write_losses(rows: &[LossRow], output: &Path) -> Result<()> {
    let mut csv = format!("{CSV_HEADER}\n");
    for r in rows {
        csv.push_str(&format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{:.1}\n",
            r.step, r.epoch, r.loss_d, r.loss_g, r.d_real, r.d_fake, r.images_per_s
        ));
    }
    fsutil::write_atomic(&output.join("losses.csv"), csv.as_bytes())?;
    if rows.is_empty() {
        // A checkpoint before the first loss row (train.checkpoint_every < train.log_every): no plot yet.
        return Ok(());
    }
    let pts = |f: fn(&LossRow) -> f64| rows.iter().map(|r| (r.step as f64, f(r))).collect::<Vec<_>>();
    let (ld, lg, dx, dgz) = (pts(|r| r.loss_d), pts(|r| r.loss_g), pts(|r| r.d_real), pts(|r| r.d_fake));
    Ok(write_line_plot(&loss_plot(&ld, &lg, &dx, &dgz), &output.join("losses.png"))?)
}

/// Losses on top, D's mean outputs (probabilities, 0 to 1) below, over the step.
pub fn loss_plot<'a>(
    ld: &'a [(f64, f64)],
    lg: &'a [(f64, f64)],
    dx: &'a [(f64, f64)],
    dgz: &'a [(f64, f64)],
) -> LinePlot<'a> {
    let (red, blue) = ([200, 30, 30], [30, 60, 200]);
    LinePlot {
        title: "Training: losses and D's outputs",
        x_title: "step",
        panels: vec![
            Panel {
                y_title: "loss",
                legend: Legend::UpperRight,
                y_range: None,
                series: vec![
                    Series { name: "D loss", color: red, points: ld, dots: false },
                    Series { name: "G loss", color: blue, points: lg, dots: false },
                ],
            },
            Panel {
                y_title: "D's mean output",
                // D(x) tends to 1 and D(G(z)) to 0: the middle is where neither curve usually is.
                legend: Legend::MiddleRight,
                y_range: Some((0.0, 1.0)),
                series: vec![
                    Series { name: "D(x), real", color: red, points: dx, dots: false },
                    Series { name: "D(G(z)), generated", color: blue, points: dgz, dots: false },
                ],
            },
        ],
    }
}

fn read_losses(path: &Path, up_to_step: u64) -> Result<Vec<LossRow>> {
    Ok(read_step_rows(path, 7, up_to_step)?
        .into_iter()
        .map(|f| LossRow {
            step: f[0] as u64,
            epoch: f[1] as u64,
            loss_d: f[2],
            loss_g: f[3],
            d_real: f[4],
            d_fake: f[5],
            images_per_s: f[6],
        })
        .collect())
}

/// The rows of a per-step CSV an earlier run wrote (step first), each of `columns` numbers, up to
/// `up_to_step`: none when there is no file, so that a resumed run continues its own log.
pub(super) fn read_step_rows(path: &Path, columns: usize, up_to_step: u64) -> Result<Vec<Vec<f64>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: unreadable", path.display())),
    };
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<f64> = line.split(',').map(|v| v.parse().unwrap_or(f64::NAN)).collect();
        if f.len() != columns {
            bail!("{}: row {line:?} does not have {columns} columns", path.display());
        }
        if f[0] as u64 <= up_to_step {
            rows.push(f);
        }
    }
    Ok(rows)
}

/// Writes one step's folder under `root` atomically: `write` fills a temporary folder, the sizes
/// and sha256 of `files` go into its state.json, and it is renamed to step-N (replacing one of
/// that step). Checkpoints and snapshots both go through here.
fn save_step_dir(
    root: &Path,
    state: &CheckpointState,
    files: &[&str],
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let name = format!("step-{:08}", state.step);
    let tmp = root.join(format!(".{name}{}", fsutil::TMP_SUFFIX));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    write(&tmp)?;
    let mut state = state.clone();
    state.record_files(&tmp, files)?;
    fsutil::write_atomic(&tmp.join("state.json"), &serde_json::to_vec_pretty(&state)?)?;
    let dir = root.join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)?;
    Ok(dir)
}

/// Saves G and D (not the optimisers: a snapshot is for scoring and publishing, not resuming) as
/// snapshots/step-N/, atomically.
fn save_snapshot(gan: &Gan, output: &Path, state: &CheckpointState) -> Result<PathBuf> {
    save_step_dir(&snapshots_dir(output), state, &["g.safetensors", "d.safetensors"], |tmp| {
        save_vars(&gan.g_vars, &tmp.join("g.safetensors"))?;
        save_vars(&gan.d_vars, &tmp.join("d.safetensors"))
    })
}

/// What [`Gan::save`] writes into a checkpoint: recorded in its state.json.
const CHECKPOINT_FILES: [&str; 4] = ["g.safetensors", "d.safetensors", "opt_g.safetensors", "opt_d.safetensors"];

/// Saves a checkpoint atomically: written under a temporary name, renamed, then `latest` moved.
fn save_checkpoint(gan: &Gan, output: &Path, state: &CheckpointState, keep: usize) -> Result<PathBuf> {
    let root = checkpoints_dir(output);
    let dir = save_step_dir(&root, state, &CHECKPOINT_FILES, |tmp| gan.save(tmp))?;
    let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
    fsutil::write_atomic(&root.join("latest"), name.as_bytes())?;
    // Keep the newest `keep`.
    let mut old: Vec<PathBuf> = std::fs::read_dir(&root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
        .collect();
    old.sort();
    let excess = old.len().saturating_sub(keep.max(1));
    for path in &old[..excess] {
        std::fs::remove_dir_all(path)?;
    }
    Ok(dir)
}

/// The newest weights under stable names, for cifar-eval and for users: generator.safetensors and
/// discriminator.safetensors, each checked against its checkpoint's record as it is copied, with a
/// record beside it (FILE.json: size, sha256, step) that their loaders check.
fn publish_newest(dir: &Path, output: &Path) -> Result<()> {
    let state = super::checkpoints::read_state(dir)?;
    for (from, to, network) in [
        ("g.safetensors", "generator.safetensors", "generator"),
        ("d.safetensors", "discriminator.safetensors", "discriminator"),
    ] {
        let source = dir.join(from);
        let bytes = std::fs::read(&source).with_context(|| format!("{}: unreadable", source.display()))?;
        let record = crate::integrity::FileRecord::of_bytes(&bytes);
        if let Some(expected) = state.files.as_ref().and_then(|f| f.get(from)) {
            crate::integrity::check(&source, &record, expected, "it was altered or damaged after it was written")?;
        }
        let dest = output.join(to);
        fsutil::write_atomic(&dest, &bytes)?;
        let extra =
            serde_json::json!({"network": network, "step": state.step, "checkpoint": dir.display().to_string()});
        crate::integrity::write_model_record(&dest, &record, extra)
            .with_context(|| format!("{}.json: cannot write", dest.display()))?;
    }
    Ok(())
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
