//! The paper's 3072-128-3072 de-noising, dropout-regularised ReLU autoencoder, whose code layer,
//! thresholded, is the semantic hash.
//!
//! Input: a 32x32 RGB crop flattened to 3072 values in [-1, 1], minus its own mean value (so that
//! a brightness change, a common edit of a re-posted photo, moves no code bit; the labelled
//! evaluation chose this, see docs/dedupe.md), minus the training sample's mean image (saved with the
//! model). Centred inputs put each code unit's zero threshold through the
//! data rather than beside it: without that, a briefly trained model on a small set gave nearly
//! the same bits to every image (all 15 unrelated test photos fell into one cluster). Training corrupts the input with
//! Gaussian noise (de-noising) and drops code units (dropout) and asks for the clean image back
//! (mean squared error), which makes each code bit depend on broad image content rather than on
//! any few pixels: what a near duplicate keeps.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Device, Kind, Tensor};

use super::hash::{binarize, Code128, CODE_BITS};

/// Values per input: 32 x 32 x 3.
pub const INPUT_SIDE: usize = 32;
pub const INPUT_DIM: usize = INPUT_SIDE * INPUT_SIDE * 3;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Tch { path: String, source: tch::TchError },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Where a code bit switches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Threshold {
    /// The paper's: the ReLU unit is active (> 0).
    Zero,
    /// Each unit's median pre-activation over the training sample, so every bit splits the data
    /// in two. (The median of the ReLU output itself is 0 for any unit that is off for half the
    /// images or more, which on ImageNet photos was every unit: no different from `Zero`.)
    Median,
}

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct TrainSettings {
    /// Passes over the training images; the steps they take are kept within
    /// `min_steps..=max_steps` ([`TrainSettings::steps_for`]).
    pub epochs: f64,
    pub min_steps: usize,
    pub max_steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Standard deviation of the Gaussian corruption, on the [-1, 1] scale.
    pub noise: f64,
    /// Probability of dropping a code unit while training.
    pub dropout: f64,
    pub seed: i64,
}

impl TrainSettings {
    /// Adam steps for `images` training images: `epochs` passes in batches of `batch`, at least
    /// `min_steps` (a few images still need enough updates), at most `max_steps` (the cap a large
    /// set reaches: 4 epochs of 100,000 is 3,125 batches of 128).
    pub fn steps_for(&self, images: usize) -> usize {
        let steps = (self.epochs * images as f64 / self.batch.max(1) as f64).ceil() as usize;
        steps.clamp(self.min_steps.min(self.max_steps), self.max_steps)
    }

    /// A progress display for training on `images` images (a bar on a terminal, a line every
    /// 10 s in logs).
    pub fn progress(&self, images: usize) -> crate::stage::progress::Progress {
        crate::stage::progress::Progress::new(
            "dedupe: training the autoencoder (steps)",
            Some(self.steps_for(images) as u64),
            10.0,
        )
    }

    /// Exactly `steps` steps, whatever the set's size (tests, benchmarks).
    pub fn fixed(steps: usize, batch: usize, lr: f64, noise: f64, dropout: f64, seed: i64) -> Self {
        Self { epochs: f64::MAX, min_steps: steps, max_steps: steps, batch, lr, noise, dropout, seed }
    }
}

pub struct Autoencoder {
    pub vs: nn::VarStore,
    encoder: nn::Linear,
    decoder: nn::Linear,
    /// Per-unit median pre-activation over the training sample (saved with the weights).
    code_median: Tensor,
    /// The training sample's mean input, subtracted from every input.
    input_mean: Tensor,
    /// Whether each image's own mean is subtracted first; saved as `image_centring` (1 or 0).
    /// Models saved before it existed load with 0, the old behaviour.
    centre_images: bool,
}

/// uint8 rows to floats in [-1, 1].
fn scale(rows: &Tensor) -> Tensor {
    rows.to_kind(Kind::Float) / 127.5 - 1.0
}

/// `scale(rows)` minus each row's mean, computed on integers so that it is exact: `D * v - sum(v)`
/// stays below 2^24 and is the same number for an image and a brightness-shifted copy of it, on every
/// CPU and in every summation order. (Centring the scaled floats differed in the last bit between the
/// two, which flipped code bits that sat near zero on another machine.)
fn centred_scale(rows: &Tensor) -> Tensor {
    let d = INPUT_DIM as f64;
    let v = rows.to_kind(Kind::Float);
    let sum = v.sum_dim_intlist(1, true, Kind::Float);
    (v * d - sum) / (d * 127.5)
}

impl Autoencoder {
    /// An untrained model; `centre_images`: subtract each image's mean from its input.
    pub fn new(device: Device, centre_images: bool) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let encoder = nn::linear(&root / "encoder", INPUT_DIM as i64, CODE_BITS as i64, Default::default());
        let decoder = nn::linear(&root / "decoder", CODE_BITS as i64, INPUT_DIM as i64, Default::default());
        let code_median = root.zeros_no_train("code_median", &[CODE_BITS as i64]);
        let input_mean = root.zeros_no_train("input_mean", &[INPUT_DIM as i64]);
        let mut flag = root.zeros_no_train("image_centring", &[1]);
        if centre_images {
            let _ = tch::no_grad(|| flag.fill_(1.0));
        }
        Self { vs, encoder, decoder, code_median, input_mean, centre_images }
    }

    /// A model saved by [`Autoencoder::save`] (its input settings come from the file).
    pub fn load(path: &Path, device: Device) -> Result<Self, ModelError> {
        let mut model = Self::new(device, false);
        let error = |source| ModelError::Tch { path: path.display().to_string(), source };
        let missing = model.vs.load_partial(path).map_err(error)?;
        if let Some(name) = missing.iter().find(|name| name.as_str() != "image_centring") {
            return Err(error(tch::TchError::TensorNameNotFound(name.clone(), path.display().to_string())));
        }
        let flag = model.vs.variables().get("image_centring").map_or(0.0, |t| t.double_value(&[0]));
        model.centre_images = flag > 0.5;
        Ok(model)
    }

    pub fn centres_images(&self) -> bool {
        self.centre_images
    }

    /// Writes safetensors atomically (a temporary beside `path`, then a rename).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // tch picks the format by extension, so the temporary keeps ".safetensors".
        let tmp = path.with_file_name(format!(".{name}.tmp.safetensors"));
        self.vs.save(&tmp).map_err(|source| ModelError::Tch { path: tmp.display().to_string(), source })?;
        std::fs::rename(&tmp, path).map_err(|source| ModelError::Io { path: path.display().to_string(), source })
    }

    /// uint8 rows to [-1, 1], each minus its own mean when the model centres images.
    fn scaled(&self, rows: &Tensor) -> Tensor {
        if self.centre_images {
            centred_scale(rows)
        } else {
            scale(rows)
        }
    }

    /// N x 32 x 32 x 3 uint8 images to the network's centred input, one row per image.
    fn to_input(&self, images: &[u8]) -> Tensor {
        let n = (images.len() / INPUT_DIM) as i64;
        self.scaled(&Tensor::from_slice(images).view([n, INPUT_DIM as i64]).to_device(self.vs.device()))
            - &self.input_mean
    }

    fn encode(&self, x: &Tensor) -> Tensor {
        self.encoder.forward(x).relu()
    }

    /// Trains on `images` (N x 32 x 32 x 3, uint8) for [`TrainSettings::steps_for`] N steps,
    /// batches drawn at random with replacement; then records each unit's median activation.
    /// Returns the loss every `steps / 20` steps. `progress`, when given, counts the steps.
    pub fn train(
        &mut self,
        images: &[u8],
        settings: &TrainSettings,
        progress: Option<&crate::stage::progress::Progress>,
    ) -> Vec<(usize, f64)> {
        let n = (images.len() / INPUT_DIM) as i64;
        let steps = settings.steps_for(n as usize);
        assert!(n > 0, "no images to train on");
        let device = self.vs.device();
        tch::manual_seed(settings.seed);
        // The weights were drawn when the model was made, from libtorch's global generator in
        // whatever state the process had left it; draw them again from the seed, or two runs on one
        // input train different models and keep different photos.
        let fresh = Autoencoder::new(device, self.centre_images);
        self.vs.copy(&fresh.vs).expect("the same layers");
        // uint8 on the device: a quarter of the floats' memory.
        let data = Tensor::from_slice(images).view([n, INPUT_DIM as i64]).to_device(device);
        let mean = tch::no_grad(|| {
            let mut sum = Tensor::zeros([INPUT_DIM as i64], (Kind::Float, device));
            for start in (0..n).step_by(4096) {
                sum += self.scaled(&data.narrow(0, start, 4096.min(n - start))).sum_dim_intlist(0, false, Kind::Float);
            }
            sum / n as f64
        });
        tch::no_grad(|| self.input_mean.copy_(&mean));
        let mut adam = crate::torchutil::adam::Adam::new(&self.vs, settings.lr, 0.9, 0.999);
        let every = (steps / 20).max(1);
        let mut losses = Vec::new();
        for step in 0..steps {
            let pick = Tensor::randint(n, [settings.batch as i64], (Kind::Int64, device));
            let clean = self.scaled(&data.index_select(0, &pick)) - &self.input_mean;
            let noisy = &clean + clean.randn_like() * settings.noise;
            let code = self.encode(&noisy).dropout(settings.dropout, true);
            let loss = self.decoder.forward(&code).mse_loss(&clean, tch::Reduction::Mean);
            adam.zero_grad();
            loss.backward();
            adam.step();
            if step % every == 0 || step + 1 == steps {
                losses.push((step, loss.double_value(&[])));
            }
            if let Some(p) = progress {
                p.inc(1);
            }
        }
        if let Some(p) = progress {
            p.finish();
        }
        let activations = self.activations(images);
        let acts = Tensor::from_slice(&activations).view([n, CODE_BITS as i64]);
        let (median, _) = acts.median_dim(0, false);
        tch::no_grad(|| self.code_median.copy_(&median.to_device(device)));
        losses
    }

    /// Code-layer pre-activations (N x 128, row-major; the ReLU's input) of N x 32 x 32 x 3 uint8
    /// images. A unit is active (ReLU > 0) exactly where its pre-activation is > 0.
    pub fn activations(&self, images: &[u8]) -> Vec<f32> {
        let mut out = Vec::with_capacity(images.len() / INPUT_DIM * CODE_BITS);
        tch::no_grad(|| {
            for chunk in images.chunks(4096 * INPUT_DIM) {
                let acts = self.encoder.forward(&self.to_input(chunk)).to_device(Device::Cpu).contiguous();
                out.extend(Vec::<f32>::try_from(acts.view([-1])).expect("float activations"));
            }
        });
        out
    }

    pub fn thresholds(&self, threshold: Threshold) -> Vec<f32> {
        match threshold {
            Threshold::Zero => vec![0.0; CODE_BITS],
            Threshold::Median => Vec::<f32>::try_from(self.code_median.to_device(Device::Cpu)).expect("float medians"),
        }
    }

    /// The semantic hashes of N x 32 x 32 x 3 uint8 images.
    pub fn codes(&self, images: &[u8], threshold: Threshold) -> Vec<Code128> {
        binarize(&self.activations(images), &self.thresholds(threshold))
    }

    /// Mean squared reconstruction error on clean inputs (no noise, no dropout).
    pub fn reconstruction_error(&self, images: &[u8]) -> f64 {
        let x = self.to_input(images);
        tch::no_grad(|| self.decoder.forward(&self.encode(&x)).mse_loss(&x, tch::Reduction::Mean).double_value(&[]))
    }
}

/// Box-averages N x side x side x 3 uint8 images down to N x 32 x 32 x 3 (side a multiple of 32).
pub fn downsample_to_input(images: &[u8], side: usize) -> Vec<u8> {
    assert!(side.is_multiple_of(INPUT_SIDE), "side {side} is not a multiple of {INPUT_SIDE}");
    let f = side / INPUT_SIDE;
    let per = side * side * 3;
    let mut out = Vec::with_capacity(images.len() / per * INPUT_DIM);
    for image in images.chunks_exact(per) {
        for y in 0..INPUT_SIDE {
            for x in 0..INPUT_SIDE {
                for c in 0..3 {
                    let mut sum = 0u32;
                    for dy in 0..f {
                        for dx in 0..f {
                            sum += image[((y * f + dy) * side + x * f + dx) * 3 + c] as u32;
                        }
                    }
                    let count = (f * f) as u32;
                    out.push(((sum + count / 2) / count) as u8);
                }
            }
        }
    }
    out
}

/// Per N x 32 x 32 x 3 input: the standard deviation of its values (grey levels), how much the
/// picture shows. Near-uniform pictures (sky, flat scans) have little, and their codes say little.
pub fn detail(inputs: &[u8]) -> Vec<f32> {
    use rayon::prelude::*;
    inputs
        .par_chunks_exact(INPUT_DIM)
        .map(|x| {
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / INPUT_DIM as f64;
            (x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / INPUT_DIM as f64).sqrt() as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_is_sized_to_the_data() {
        let s = TrainSettings {
            epochs: 4.0,
            min_steps: 100,
            max_steps: 3000,
            batch: 128,
            lr: 1e-3,
            noise: 0.2,
            dropout: 0.2,
            seed: 0,
        };
        assert_eq!(s.steps_for(11), 100);
        assert_eq!(s.steps_for(10_000), 313);
        assert_eq!(s.steps_for(104_000), 3000);
        assert_eq!(TrainSettings::fixed(7, 8, 1e-3, 0.0, 0.0, 0).steps_for(1_000_000), 7);
    }

    #[test]
    fn detail_is_the_spread_of_the_values() {
        let flat = vec![90u8; INPUT_DIM];
        let halves: Vec<u8> = (0..INPUT_DIM).map(|i| if i < INPUT_DIM / 2 { 80 } else { 120 }).collect();
        let d = detail(&[flat, halves].concat());
        assert_eq!(d, vec![0.0, 20.0]);
    }

    #[test]
    fn downsample_averages_blocks() {
        let side = 64;
        let mut img = vec![0u8; side * side * 3];
        // Top-left 2x2 block: red 0, 100, 200, 100 -> 100.
        for (i, v) in [(0, 0), (1, 100), (side, 200), (side + 1, 100)] {
            img[i * 3] = v;
        }
        let small = downsample_to_input(&img, side);
        assert_eq!(small.len(), INPUT_DIM);
        assert_eq!(small[0], 100);
        assert_eq!(small[3], 0);
    }

    #[test]
    fn training_lowers_the_reconstruction_error_and_saves_round_trip() {
        // 64 smooth random images: gradients, so a linear code can capture them.
        let mut images = Vec::new();
        for i in 0..64u32 {
            for y in 0..32u32 {
                for x in 0..32u32 {
                    images.extend([(x * 8 + i) as u8, (y * 8 + 3 * i) as u8, ((x + y) * 4 + 5 * i) as u8]);
                }
            }
        }
        let mut model = Autoencoder::new(Device::Cpu, true);
        let before = model.reconstruction_error(&images);
        let settings = TrainSettings::fixed(150, 32, 1e-3, 0.1, 0.1, 1);
        model.train(&images, &settings, None);
        let after = model.reconstruction_error(&images);
        assert!(after < before * 0.5, "error {before} -> {after}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        model.save(&path).unwrap();
        let loaded = Autoencoder::load(&path, Device::Cpu).unwrap();
        assert_eq!(loaded.codes(&images, Threshold::Median), model.codes(&images, Threshold::Median));
        assert_eq!(loaded.thresholds(Threshold::Median), model.thresholds(Threshold::Median));
        assert!(loaded.centres_images());
    }

    #[test]
    fn centred_codes_ignore_a_brightness_shift() {
        // Smooth images well inside [0, 255], so a shift of +-25 clips nothing.
        let images: Vec<u8> = (0..48u32)
            .flat_map(|i| {
                (0..32u32).flat_map(move |y| {
                    (0..32u32).flat_map(move |x| {
                        [
                            (60 + (x * 3 + i * 7) % 120) as u8,
                            (60 + (y * 4 + i * 5) % 120) as u8,
                            (60 + ((x + y) * 2 + i * 11) % 120) as u8,
                        ]
                    })
                })
            })
            .collect();
        let settings = TrainSettings::fixed(100, 16, 1e-3, 0.1, 0.1, 2);
        let brighter: Vec<u8> = images.iter().map(|v| v + 25).collect();
        let darker: Vec<u8> = images.iter().map(|v| v - 25).collect();
        let mut centred = Autoencoder::new(Device::Cpu, true);
        centred.train(&images, &settings, None);
        let codes = centred.codes(&images, Threshold::Zero);
        assert_eq!(centred.codes(&brighter, Threshold::Zero), codes);
        assert_eq!(centred.codes(&darker, Threshold::Zero), codes);
        // Without centring the same shift moves bits: the check above can fail.
        let mut plain = Autoencoder::new(Device::Cpu, false);
        plain.train(&images, &settings, None);
        let moved: u32 = plain
            .codes(&images, Threshold::Zero)
            .iter()
            .zip(plain.codes(&brighter, Threshold::Zero))
            .map(|(a, b)| a.hamming(&b))
            .sum();
        assert!(moved > 0, "an uncentred model's codes did not notice a brightness shift");
    }
}
