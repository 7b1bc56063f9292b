//! The paper's two DCGANs, written so that each layer list reads like the paper.
//!
//! - `imagenet32`: the authors' 32x32 ImageNet model whose discriminator gives the CIFAR-10
//!   features: D = 3x3 convs, widths 128-128-256-256-512-512, strides 1-2-1-2-1-2, LeakyReLU 0.2,
//!   BatchNorm on all but the first, a linear layer to one logit; G mirrors it from z (256) with 3x3
//!   transposed convs alternating stride 2 and 1.
//! - `dcgan64`: the 64x64 faces/LSUN model of the paper's Figure 1: G 100 -> 4x4x1024 -> 512 ->
//!   256 -> 128 -> 3 with 4x4 stride-2 transposed convs; D mirrors it with 4x4 stride-2 convs.
//! - `dcgan32` (not the paper's; the common 32x32 DCGAN, added for the digits demo): the Figure 1
//!   model one layer shorter, G z -> 4x4x4w -> 8x8x2w -> 16x16xw -> 32x32x3, D mirrored (no
//!   BatchNorm on its first layer), a 4x4 valid conv to the logit. Three times imagenet32's rate on
//!   a CPU, and it learns the digits in minutes where imagenet32 collapses (docs/train.md).
//!
//! Weights start from N(0, 0.02), BatchNorm scales from N(1, 0.02), as the paper says.

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Kind, Tensor};

use crate::torchutil::leaky_relu::{leaky_relu, leaky_relu_};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Imagenet32,
    Dcgan64,
    Dcgan32,
}

impl Preset {
    pub fn image_size(self) -> i64 {
        match self {
            Preset::Imagenet32 | Preset::Dcgan32 => 32,
            Preset::Dcgan64 => 64,
        }
    }
    pub fn default_z_dim(self) -> i64 {
        match self {
            Preset::Imagenet32 => 256,
            Preset::Dcgan64 | Preset::Dcgan32 => 100,
        }
    }
    /// Width of D's first layer (G's widths mirror D's).
    pub fn default_width(self) -> i64 {
        128
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Preset::Imagenet32 => "imagenet32",
            Preset::Dcgan64 => "dcgan64",
            Preset::Dcgan32 => "dcgan32",
        })
    }
}

/// LeakyReLU's slope in D, the paper's.
const LEAKY_SLOPE: f64 = 0.2;

const INIT: nn::Init = nn::Init::Randn { mean: 0.0, stdev: 0.02 };

fn batch_norm(vs: nn::Path, channels: i64) -> nn::BatchNorm {
    let config = nn::BatchNormConfig {
        ws_init: nn::Init::Randn { mean: 1.0, stdev: 0.02 },
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::batch_norm2d(vs, channels, config)
}

/// conv -> (BatchNorm) -> LeakyReLU(0.2): one discriminator layer.
#[derive(Debug)]
pub struct ConvLayer {
    conv: nn::Conv2D,
    norm: Option<nn::BatchNorm>,
    /// The type the convolution computes in (float32, or bfloat16 for mixed precision).
    compute: Kind,
    /// (stride, padding), kept because tch's conv config is private.
    geometry: (i64, i64),
}

impl ConvLayer {
    fn new(vs: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, padding: i64, norm: bool) -> Self {
        // A bias before BatchNorm is cancelled by its mean; leave it out there.
        let config = nn::ConvConfig {
            stride,
            padding,
            bias: !norm,
            ws_init: INIT,
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let conv = nn::conv2d(&vs / "conv", c_in, c_out, kernel, config);
        let norm = norm.then(|| batch_norm(&vs / "bn", c_out));
        Self { conv, norm, compute: Kind::Float, geometry: (stride, padding) }
    }

    /// The convolution alone: what this layer's BatchNorm normalises (in the compute type).
    pub fn conv_output(&self, x: &Tensor) -> Tensor {
        if self.compute == Kind::Float {
            return x.apply(&self.conv);
        }
        // Mixed precision as autocast does it: the convolution in the reduced type with the
        // float32 weights cast on the way in; BatchNorm takes the reduced type with float32
        // parameters, and the weights Adam updates stay float32.
        let (c, k, (s, p)) = (&self.conv, self.compute, self.geometry);
        let bias = c.bs.as_ref().map(|b| b.to_kind(k));
        x.to_kind(k).conv2d(&c.ws.to_kind(k), bias.as_ref(), [s, s], [p, p], [1, 1], 1)
    }

    pub fn batch_norm(&self) -> Option<&nn::BatchNorm> {
        self.norm.as_ref()
    }

    /// The BatchNorm, for replacing its running statistics with population statistics.
    pub fn batch_norm_mut(&mut self) -> Option<&mut nn::BatchNorm> {
        self.norm.as_mut()
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.conv_output(x);
        let mut y = match &self.norm {
            Some(bn) => y.apply_t(bn, train),
            None => y,
        };
        // In place: neither BatchNorm's nor the convolution's backward reads its output.
        leaky_relu_(&mut y, LEAKY_SLOPE)
    }

    /// The layer's three tensors in inference mode: conv output, after BatchNorm (the conv output
    /// again where the layer has none), after LeakyReLU (the layer's output).
    pub fn outputs(&self, x: &Tensor) -> LayerOutputs {
        let conv = self.conv_output(x);
        let normalized = match &self.norm {
            Some(bn) => conv.apply_t(bn, false),
            None => conv.shallow_clone(),
        };
        let activated = leaky_relu(&normalized, LEAKY_SLOPE);
        LayerOutputs { conv, normalized, activated }
    }
}

/// One discriminator layer's tensors, for taking features at any of them.
pub struct LayerOutputs {
    pub conv: Tensor,
    pub normalized: Tensor,
    pub activated: Tensor,
}

impl LayerOutputs {
    pub fn at(&self, point: FeaturePoint) -> &Tensor {
        match point {
            FeaturePoint::Conv => &self.conv,
            FeaturePoint::BatchNorm => &self.normalized,
            FeaturePoint::LeakyRelu => &self.activated,
        }
    }
}

/// Which tensor of a layer the CIFAR-10 features are taken from. The paper does not say; the
/// authors' SVHN code takes the layer's output (after BatchNorm and LeakyReLU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeaturePoint {
    /// The convolution's output, before BatchNorm (signed).
    Conv,
    /// After BatchNorm, before LeakyReLU (the first layer has no BatchNorm: its conv output).
    BatchNorm,
    /// After LeakyReLU: the layer's output.
    #[serde(rename = "leakyrelu")]
    LeakyRelu,
}

/// How each layer's map is reduced to the 4x4 grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// 4x4 max pooling (the paper): 28,672 features for imagenet32.
    Max,
    /// 4x4 max and 4x4 mean pooling side by side, per layer; a layer whose map is already 4x4
    /// keeps one copy (both poolings would be the map itself): 49,152 features for imagenet32.
    #[serde(rename = "max+mean")]
    MaxMean,
}

impl std::fmt::Display for FeaturePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FeaturePoint::Conv => "conv",
            FeaturePoint::BatchNorm => "batchnorm",
            FeaturePoint::LeakyRelu => "leakyrelu",
        })
    }
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Max => "max",
            Pooling::MaxMean => "max+mean",
        })
    }
}

/// A layer's map (N x C x H x W) pooled to 4x4 and flattened (N x 16C, or 32C for max+mean).
pub fn pool_to_4x4(map: &Tensor, pooling: Pooling) -> Tensor {
    let max = map.adaptive_max_pool2d([4, 4]).0.flatten(1, -1);
    let spatial = map.size()[2] * map.size()[3];
    match pooling {
        Pooling::MaxMean if spatial > 16 => Tensor::cat(&[max, map.adaptive_avg_pool2d([4, 4]).flatten(1, -1)], 1),
        _ => max,
    }
}

/// transposed conv -> BatchNorm -> ReLU: one generator layer.
#[derive(Debug)]
pub struct UpLayer {
    deconv: Deconv,
    norm: nn::BatchNorm,
}

/// A transposed convolution that can compute in bfloat16 (tch's keeps its geometry private).
#[derive(Debug)]
struct Deconv {
    module: nn::ConvTranspose2D,
    /// (stride, padding, output_padding).
    geometry: (i64, i64, i64),
    compute: Kind,
}

impl UpLayer {
    fn new(vs: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, padding: i64, output_padding: i64) -> Self {
        let config = nn::ConvTransposeConfig {
            stride,
            padding,
            output_padding,
            bias: false,
            ws_init: INIT,
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let module = nn::conv_transpose2d(&vs / "deconv", c_in, c_out, kernel, config);
        let deconv = Deconv { module, geometry: (stride, padding, output_padding), compute: Kind::Float };
        Self { deconv, norm: batch_norm(&vs / "bn", c_out) }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        // ReLU in place: BatchNorm's backward does not read its output.
        self.deconv.forward(x).apply_t(&self.norm, train).relu_()
    }
}

impl Deconv {
    /// Computed in `compute` as [`ConvLayer::conv_output`] does it.
    fn forward(&self, x: &Tensor) -> Tensor {
        if self.compute == Kind::Float {
            return x.apply(&self.module);
        }
        let (k, (s, p, o)) = (self.compute, self.geometry);
        let bias = self.module.bs.as_ref().map(|b| b.to_kind(k));
        x.to_kind(k).conv_transpose2d(&self.module.ws.to_kind(k), bias.as_ref(), [s, s], [p, p], [o, o], 1, [1, 1])
    }
}

fn to_rgb(vs: nn::Path, c_in: i64, kernel: i64, stride: i64, padding: i64, output_padding: i64) -> Deconv {
    let config = nn::ConvTransposeConfig {
        stride,
        padding,
        output_padding,
        ws_init: INIT,
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    let module = nn::conv_transpose2d(vs, c_in, 3, kernel, config);
    Deconv { module, geometry: (stride, padding, output_padding), compute: Kind::Float }
}

/// The discriminator. `layers` are its conv layers in order; every one's activation is handed out
/// by [`Discriminator::activations`], which the CIFAR-10 features need.
#[derive(Debug)]
pub struct Discriminator {
    pub preset: Preset,
    pub layers: Vec<ConvLayer>,
    head: Head,
}

#[derive(Debug)]
enum Head {
    /// imagenet32: flatten 4x4xC, linear to one logit.
    Linear(nn::Linear),
    /// dcgan64, dcgan32: a 4x4 valid conv to one logit.
    Conv(nn::Conv2D),
}

impl Discriminator {
    pub fn new(vs: &nn::Path, preset: Preset, width: i64) -> Self {
        let w = width;
        match preset {
            Preset::Imagenet32 => {
                //                     name  in     out    k  s  p  BatchNorm    -> output size
                let layers = vec![
                    ConvLayer::new(vs / "c1", 3, w, 3, 1, 1, false),        //   32x32
                    ConvLayer::new(vs / "c2", w, w, 3, 2, 1, true),         //     16x16
                    ConvLayer::new(vs / "c3", w, 2 * w, 3, 1, 1, true),     // 16x16
                    ConvLayer::new(vs / "c4", 2 * w, 2 * w, 3, 2, 1, true), // 8x8
                    ConvLayer::new(vs / "c5", 2 * w, 4 * w, 3, 1, 1, true), // 8x8
                    ConvLayer::new(vs / "c6", 4 * w, 4 * w, 3, 2, 1, true), // 4x4
                ];
                let config = nn::LinearConfig { ws_init: INIT, bs_init: Some(nn::Init::Const(0.0)), bias: true };
                let head = Head::Linear(nn::linear(vs / "logit", 4 * w * 4 * 4, 1, config));
                Self { preset, layers, head }
            }
            Preset::Dcgan64 => {
                let layers = vec![
                    ConvLayer::new(vs / "c1", 3, w, 4, 2, 1, false),        //    32x32
                    ConvLayer::new(vs / "c2", w, 2 * w, 4, 2, 1, true),     //  16x16
                    ConvLayer::new(vs / "c3", 2 * w, 4 * w, 4, 2, 1, true), // 8x8
                    ConvLayer::new(vs / "c4", 4 * w, 8 * w, 4, 2, 1, true), // 4x4
                ];
                let config = nn::ConvConfig { ws_init: INIT, bs_init: nn::Init::Const(0.0), ..Default::default() };
                let head = Head::Conv(nn::conv2d(vs / "logit", 8 * w, 1, 4, config));
                Self { preset, layers, head }
            }
            Preset::Dcgan32 => {
                let layers = vec![
                    ConvLayer::new(vs / "c1", 3, w, 4, 2, 1, false),        //    16x16
                    ConvLayer::new(vs / "c2", w, 2 * w, 4, 2, 1, true),     //  8x8
                    ConvLayer::new(vs / "c3", 2 * w, 4 * w, 4, 2, 1, true), // 4x4
                ];
                let config = nn::ConvConfig { ws_init: INIT, bs_init: nn::Init::Const(0.0), ..Default::default() };
                let head = Head::Conv(nn::conv2d(vs / "logit", 4 * w, 1, 4, config));
                Self { preset, layers, head }
            }
        }
    }

    /// The logit and every conv layer's activation, for images in [-1, 1], N x 3 x H x W.
    pub fn activations(&self, images: &Tensor, train: bool) -> (Tensor, Vec<Tensor>) {
        let mut acts = Vec::with_capacity(self.layers.len());
        let mut x = images.shallow_clone();
        for layer in &self.layers {
            x = layer.forward_t(&x, train);
            acts.push(x.shallow_clone());
        }
        let x = x.to_kind(Kind::Float); // the head and the loss in float32 (a no-op without mixed precision)
        let logit = match &self.head {
            Head::Linear(linear) => x.flatten(1, -1).apply(linear),
            Head::Conv(conv) => x.apply(conv).flatten(1, -1),
        };
        (logit.view([-1]), acts)
    }

    /// One logit per image.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Tensor {
        self.activations(images, train).0
    }

    /// The paper's CIFAR-10 features: every conv layer's activation max-pooled to a 4x4 grid,
    /// flattened and concatenated (28,672 values per image for imagenet32 at width 128).
    pub fn pooled_features(&self, images: &Tensor) -> Tensor {
        self.features(images, FeaturePoint::LeakyRelu, Pooling::Max)
    }

    /// Every layer's three tensors (inference mode), for images in [-1, 1].
    pub fn layer_outputs(&self, images: &Tensor) -> Vec<LayerOutputs> {
        let mut out: Vec<LayerOutputs> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let input = out.last().map(|o| o.activated.shallow_clone()).unwrap_or_else(|| images.shallow_clone());
            out.push(layer.outputs(&input));
        }
        out
    }

    /// The features taken at `point` of every layer, pooled and concatenated (float32).
    pub fn features(&self, images: &Tensor, point: FeaturePoint, pooling: Pooling) -> Tensor {
        Self::pool_outputs(&self.layer_outputs(images), point, pooling)
    }

    /// [`Discriminator::features`] from outputs already computed (one forward pass, many variants).
    pub fn pool_outputs(outputs: &[LayerOutputs], point: FeaturePoint, pooling: Pooling) -> Tensor {
        let pooled: Vec<Tensor> =
            outputs.iter().map(|o| pool_to_4x4(o.at(point), pooling).to_kind(Kind::Float)).collect();
        Tensor::cat(&pooled, 1)
    }

    /// The width of each layer's block of features with `pooling`, in order.
    pub fn feature_layout(&self, pooling: Pooling) -> Vec<usize> {
        let mut side = self.preset.image_size();
        self.layers
            .iter()
            .map(|l| {
                side /= l.geometry.0;
                let channels = l.conv.ws.size()[0] as usize;
                match pooling {
                    Pooling::MaxMean if side * side > 16 => 32 * channels,
                    _ => 16 * channels,
                }
            })
            .collect()
    }

    /// Computes the convolutions in `kind` (bfloat16: mixed precision on GPUs that have it).
    pub fn set_compute_kind(&mut self, kind: Kind) {
        for layer in &mut self.layers {
            layer.compute = kind;
        }
    }

    /// Width of [`Discriminator::pooled_features`].
    pub fn feature_count(&self) -> i64 {
        self.layers.iter().map(|l| l.conv.ws.size()[0] * 16).sum()
    }
}

/// The generator: z -> image in [-1, 1].
#[derive(Debug)]
pub struct Generator {
    pub preset: Preset,
    pub z_dim: i64,
    stem: Stem,
    pub layers: Vec<UpLayer>,
    to_rgb: Deconv,
}

#[derive(Debug)]
enum Stem {
    /// imagenet32: linear z -> 4x4xC, BatchNorm, ReLU.
    Linear { linear: nn::Linear, norm: nn::BatchNorm, channels: i64 },
    /// dcgan64, dcgan32: z as 1x1 -> 4x4 transposed conv, BatchNorm, ReLU.
    Deconv(UpLayer),
}

impl Generator {
    pub fn new(vs: &nn::Path, preset: Preset, z_dim: i64, width: i64) -> Self {
        let w = width;
        match preset {
            Preset::Imagenet32 => {
                let config = nn::LinearConfig { ws_init: INIT, bs_init: Some(nn::Init::Const(0.0)), bias: false };
                let stem = Stem::Linear {
                    linear: nn::linear(vs / "project", z_dim, 4 * w * 4 * 4, config), // 4x4x512
                    norm: nn::batch_norm1d(vs / "project_bn", 4 * w * 4 * 4, bn1d()),
                    channels: 4 * w,
                };
                //                                 in     out    k  s  p  out_pad  -> output size
                let layers = vec![
                    UpLayer::new(vs / "u1", 4 * w, 2 * w, 3, 2, 1, 1), // 8x8
                    UpLayer::new(vs / "u2", 2 * w, 2 * w, 3, 1, 1, 0), // 8x8
                    UpLayer::new(vs / "u3", 2 * w, w, 3, 2, 1, 1),     //     16x16
                    UpLayer::new(vs / "u4", w, w, 3, 1, 1, 0),         //         16x16
                ];
                let to_rgb = to_rgb(vs / "rgb", w, 3, 2, 1, 1); //        32x32, tanh
                Self { preset, z_dim, stem, layers, to_rgb }
            }
            Preset::Dcgan64 => {
                let stem = Stem::Deconv(UpLayer::new(vs / "project", z_dim, 8 * w, 4, 1, 0, 0)); // 4x4x1024
                let layers = vec![
                    UpLayer::new(vs / "u1", 8 * w, 4 * w, 4, 2, 1, 0), // 8x8x512
                    UpLayer::new(vs / "u2", 4 * w, 2 * w, 4, 2, 1, 0), // 16x16x256
                    UpLayer::new(vs / "u3", 2 * w, w, 4, 2, 1, 0),     //     32x32x128
                ];
                let to_rgb = to_rgb(vs / "rgb", w, 4, 2, 1, 0); //        64x64x3, tanh
                Self { preset, z_dim, stem, layers, to_rgb }
            }
            Preset::Dcgan32 => {
                let stem = Stem::Deconv(UpLayer::new(vs / "project", z_dim, 4 * w, 4, 1, 0, 0)); // 4x4x4w
                let layers = vec![
                    UpLayer::new(vs / "u1", 4 * w, 2 * w, 4, 2, 1, 0), // 8x8x2w
                    UpLayer::new(vs / "u2", 2 * w, w, 4, 2, 1, 0),     //     16x16xw
                ];
                let to_rgb = to_rgb(vs / "rgb", w, 4, 2, 1, 0); //        32x32x3, tanh
                Self { preset, z_dim, stem, layers, to_rgb }
            }
        }
    }

    pub fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        let n = z.size()[0];
        let mut x = match &self.stem {
            Stem::Linear { linear, norm, channels } => {
                z.apply(linear).apply_t(norm, train).relu_().view([n, *channels, 4, 4])
            }
            Stem::Deconv(layer) => layer.forward_t(&z.view([n, self.z_dim, 1, 1]), train),
        };
        for layer in &self.layers {
            x = layer.forward_t(&x, train);
        }
        self.to_rgb.forward(&x).tanh().to_kind(Kind::Float)
    }

    /// Computes the transposed convolutions in `kind` (see [`Discriminator::set_compute_kind`]).
    pub fn set_compute_kind(&mut self, kind: Kind) {
        self.to_rgb.compute = kind;
        if let Stem::Deconv(layer) = &mut self.stem {
            layer.deconv.compute = kind;
        }
        for layer in &mut self.layers {
            layer.deconv.compute = kind;
        }
    }
}

fn bn1d() -> nn::BatchNormConfig {
    nn::BatchNormConfig {
        ws_init: nn::Init::Randn { mean: 1.0, stdev: 0.02 },
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    }
}

/// Where z comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prior {
    /// U(-1, 1), the paper's choice.
    Uniform,
    /// N(0, 1).
    Normal,
}

pub fn sample_z(prior: Prior, n: i64, z_dim: i64, device: tch::Device) -> Tensor {
    let options = (tch::Kind::Float, device);
    match prior {
        Prior::Uniform => Tensor::rand([n, z_dim], options) * 2.0 - 1.0,
        Prior::Normal => Tensor::randn([n, z_dim], options),
    }
}
