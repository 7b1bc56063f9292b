//! The adversarial pair: G and D with their Adam optimisers, one alternating step of the
//! non-saturating loss, and their weights on disk (safetensors).

use std::path::Path;

use anyhow::{Context, Result};
use tch::{nn, Device, Kind, Tensor};

use super::models::{sample_z, Discriminator, Generator, Prior};
use super::train_config::{Precision, TrainConfig};
use crate::torchutil::adam::Adam;
use crate::torchutil::input::to_network_input;

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
pub(super) fn save_vars(vs: &nn::VarStore, path: &Path) -> Result<()> {
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
