//! What the networks of a preset weigh in memory, counted from their layer shapes before anything
//! is allocated: the values they store (weights, BatchNorm's statistics) and the activations one
//! image makes through them. From these, the estimates that `train`, `cifar-eval` and `sample`
//! check before they start ([`crate::memory`]); docs/train.md gives the formulas and how they
//! compare with measured peaks.
//!
//! Counts are floating point, so that a hostile width gives a huge number, never an overflow.

use super::models::{Pooling, Preset};
use super::train_config::TrainConfig;
use crate::memory::{self, count, Estimate};

/// One conv or transposed conv layer: channels in and out, kernel side, output side, and
/// whether a BatchNorm follows (then there is no bias).
#[derive(Debug, Clone, Copy)]
struct Layer {
    c_in: f64,
    c_out: f64,
    kernel: f64,
    side: f64,
    norm: bool,
}

impl Layer {
    fn new(c_in: f64, c_out: f64, kernel: f64, side: f64, norm: bool) -> Self {
        Self { c_in, c_out, kernel, side, norm }
    }
    /// Weights, then a bias or BatchNorm's four vectors (scale, shift, running mean and variance).
    fn values(&self) -> f64 {
        self.c_in * self.c_out * self.kernel * self.kernel + if self.norm { 4.0 * self.c_out } else { self.c_out }
    }
    fn activations(&self) -> f64 {
        self.c_out * self.side * self.side
    }
}

/// D's conv layers and the values of its head, as [`super::Discriminator::new`] builds them.
fn discriminator_layers(preset: Preset, width: f64) -> (Vec<Layer>, f64) {
    let w = width;
    match preset {
        Preset::Imagenet32 => (
            vec![
                Layer::new(3.0, w, 3.0, 32.0, false),
                Layer::new(w, w, 3.0, 16.0, true),
                Layer::new(w, 2.0 * w, 3.0, 16.0, true),
                Layer::new(2.0 * w, 2.0 * w, 3.0, 8.0, true),
                Layer::new(2.0 * w, 4.0 * w, 3.0, 8.0, true),
                Layer::new(4.0 * w, 4.0 * w, 3.0, 4.0, true),
            ],
            4.0 * w * 16.0 + 1.0,
        ),
        Preset::Dcgan64 => (
            vec![
                Layer::new(3.0, w, 4.0, 32.0, false),
                Layer::new(w, 2.0 * w, 4.0, 16.0, true),
                Layer::new(2.0 * w, 4.0 * w, 4.0, 8.0, true),
                Layer::new(4.0 * w, 8.0 * w, 4.0, 4.0, true),
            ],
            8.0 * w * 16.0 + 1.0,
        ),
        Preset::Dcgan32 => (
            vec![
                Layer::new(3.0, w, 4.0, 16.0, false),
                Layer::new(w, 2.0 * w, 4.0, 8.0, true),
                Layer::new(2.0 * w, 4.0 * w, 4.0, 4.0, true),
            ],
            4.0 * w * 16.0 + 1.0,
        ),
    }
}

/// G's layers from z to the image, as [`super::Generator::new`] builds them (imagenet32's linear
/// stem is written as a 1x1 "conv" from z to a 4x4 map: the same values and activations).
fn generator_layers(preset: Preset, z_dim: f64, width: f64) -> Vec<Layer> {
    let (w, side) = (width, preset.image_size() as f64);
    let mut layers = match preset {
        Preset::Imagenet32 => vec![
            Layer::new(z_dim, 64.0 * w, 1.0, 1.0, true),
            Layer::new(4.0 * w, 2.0 * w, 3.0, 8.0, true),
            Layer::new(2.0 * w, 2.0 * w, 3.0, 8.0, true),
            Layer::new(2.0 * w, w, 3.0, 16.0, true),
            Layer::new(w, w, 3.0, 16.0, true),
        ],
        Preset::Dcgan64 => vec![
            Layer::new(z_dim, 8.0 * w, 4.0, 4.0, true),
            Layer::new(8.0 * w, 4.0 * w, 4.0, 8.0, true),
            Layer::new(4.0 * w, 2.0 * w, 4.0, 16.0, true),
            Layer::new(2.0 * w, w, 4.0, 32.0, true),
        ],
        Preset::Dcgan32 => vec![
            Layer::new(z_dim, 4.0 * w, 4.0, 4.0, true),
            Layer::new(4.0 * w, 2.0 * w, 4.0, 8.0, true),
            Layer::new(2.0 * w, w, 4.0, 16.0, true),
        ],
    };
    let kernel = if preset == Preset::Imagenet32 { 3.0 } else { 4.0 };
    layers.push(Layer::new(w, 3.0, kernel, side, false));
    layers
}

/// The sizes of a preset's G and D, in values (float32 each).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Footprint {
    /// Values D stores: weights, biases, BatchNorm's parameters and running statistics.
    pub d_values: f64,
    pub g_values: f64,
    /// Values of every layer's output for one image.
    pub d_activations: f64,
    pub g_activations: f64,
}

impl Footprint {
    pub fn of(preset: Preset, z_dim: i64, width: i64) -> Self {
        let (d_layers, head) = discriminator_layers(preset, width as f64);
        let g_layers = generator_layers(preset, z_dim as f64, width as f64);
        let sum = |layers: &[Layer], f: fn(&Layer) -> f64| layers.iter().map(f).sum::<f64>();
        Self {
            d_values: sum(&d_layers, Layer::values) + head,
            g_values: sum(&g_layers, Layer::values),
            d_activations: sum(&d_layers, Layer::activations),
            g_activations: sum(&g_layers, Layer::activations),
        }
    }
}

/// Width of D's features with `pooling`, as [`super::Discriminator::feature_layout`] lays them out.
pub fn feature_count(preset: Preset, width: i64, pooling: Pooling) -> f64 {
    let (layers, _) = discriminator_layers(preset, width as f64);
    layers
        .iter()
        .map(|l| match pooling {
            Pooling::MaxMean if l.side * l.side > 16.0 => 32.0 * l.c_out,
            _ => 16.0 * l.c_out,
        })
        .sum()
}

/// libtorch, the process and the data it reads besides the estimate's own terms.
const OVERHEAD_BYTES: f64 = 512.0 * 1024.0 * 1024.0;

/// Training G and D on batches of `batch`: every stored value four times (the value, its gradient
/// and Adam's two moments), and per image of the batch D's activations eight times (three passes,
/// real and generated, each keeping its layer outputs and BatchNorm's inputs for the backward
/// pass, and their gradients) and G's four times; float32; plus 0.5 GiB for libtorch.
pub fn training_estimate(preset: Preset, z_dim: i64, width: i64, batch: i64) -> Estimate {
    let f = Footprint::of(preset, z_dim, width);
    let values = f.d_values + f.g_values;
    let per_image = 8.0 * f.d_activations + 4.0 * f.g_activations;
    let bytes = 4.0 * (4.0 * values + batch as f64 * per_image) + OVERHEAD_BYTES;
    Estimate {
        bytes,
        formula: format!(
            "{} parameters x 16 B + batch {batch} x {} activation values x 4 B + 0.5 GiB",
            count(values),
            count(per_image)
        ),
    }
}

/// Refuses `config` before training starts when its estimate exceeds the budget
/// (`max_memory_gb`, else the training device's memory).
pub fn check_training(config: &TrainConfig, max_memory_gb: f64) -> anyhow::Result<()> {
    let cuda = match config.device()? {
        tch::Device::Cuda(i) => Some(i),
        _ => None,
    };
    let (z, w, batch) = (config.z_dim(), config.width(), config.batch);
    let what = format!("train.width = {w}, train.z_dim = {z}, train.batch = {batch} ({})", config.preset);
    let hint = "lower train.width, train.z_dim or train.batch, or set run.max_memory_gb";
    let budget = memory::budget(max_memory_gb, cuda);
    Ok(memory::check(&what, &training_estimate(config.preset, z, w, batch), budget.as_ref(), hint)?)
}

/// Sampling `images` images from G, each alone: G's values, and per image its z, the float32
/// image and the copies the grid is made through (six), and its `cell`-pixel square in the grid
/// (three bytes a pixel); plus 0.5 GiB.
pub fn sampling_estimate(preset: Preset, z_dim: i64, width: i64, images: f64, grid_pixels: f64) -> Estimate {
    let f = Footprint::of(preset, z_dim, width);
    let side = preset.image_size() as f64;
    let per_image = 4.0 * (z_dim as f64 + 6.0 * 3.0 * side * side);
    let bytes = 4.0 * f.g_values + images * per_image + 3.0 * grid_pixels + OVERHEAD_BYTES;
    Estimate {
        bytes,
        formula: format!(
            "{} parameters x 4 B + {} images x {} B + a grid of {} pixels x 3 B + 0.5 GiB",
            count(f.g_values),
            count(images),
            count(per_image),
            count(grid_pixels)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gan::{Discriminator, Generator};
    use tch::{nn, Device, Kind, Tensor};

    fn stored(vs: &nn::VarStore) -> f64 {
        vs.variables().values().map(|t| t.numel() as f64).sum()
    }

    #[test]
    fn counted_values_match_the_built_networks() {
        for preset in [Preset::Imagenet32, Preset::Dcgan64, Preset::Dcgan32] {
            for (z, w) in [(7, 4), (20, 8)] {
                let (gv, dv) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
                let _g = Generator::new(&gv.root(), preset, z, w);
                let d = Discriminator::new(&dv.root(), preset, w);
                let f = Footprint::of(preset, z, w);
                assert_eq!((f.d_values, f.g_values), (stored(&dv), stored(&gv)), "{preset} z {z} width {w}");
                let side = preset.image_size();
                let images = Tensor::zeros([1, 3, side, side], (Kind::Float, Device::Cpu));
                let (_, acts) = tch::no_grad(|| d.activations(&images, false));
                let counted: f64 = acts.iter().map(|a| a.numel() as f64).sum();
                assert_eq!(f.d_activations, counted, "{preset} width {w}");
                for pooling in [Pooling::Max, Pooling::MaxMean] {
                    let laid_out: usize = d.feature_layout(pooling).iter().sum();
                    assert_eq!(feature_count(preset, w, pooling), laid_out as f64, "{preset} {pooling}");
                }
            }
        }
    }

    #[test]
    fn the_papers_model_is_small_and_a_hostile_width_is_huge() {
        let paper = training_estimate(Preset::Imagenet32, 256, 128, 128);
        assert!(paper.bytes < 2.0 * crate::memory::GIB, "{paper:?}");
        let hostile = training_estimate(Preset::Imagenet32, 256, 100_000, 128);
        assert!(hostile.bytes > 1e13 && hostile.bytes.is_finite(), "{hostile:?}");
    }
}
