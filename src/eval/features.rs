//! The paper's CIFAR-10 features: a discriminator's conv activations, each max-pooled to a 4x4 grid,
//! flattened and concatenated (28,672 values per image for imagenet32).
//!
//! BatchNorm runs in inference mode. The running statistics a GAN's D ends training with mix real
//! and generated batches, so by default they are replaced by population statistics over the
//! CIFAR-10 training images, layer by layer (each layer's statistics are measured with the layers
//! below it already normalised by theirs), as the authors' own feature code did.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{nn, Device, Kind, Tensor};

use super::matrix::{FeatureDtype, FeatureMatrix, FeatureRows};
use crate::data::LabeledImages;
use crate::gan::{Discriminator, FeaturePoint, Pooling, Preset};
use crate::torchutil::input::to_network_input;

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error(transparent)]
    Integrity(#[from] crate::integrity::IntegrityError),
    #[error("{path}: cannot read the checkpoint: {why}")]
    Unreadable { path: PathBuf, why: String },
    #[error("{path}: not a {preset} discriminator of width {width}: {why}")]
    WrongModel { path: PathBuf, preset: Preset, width: i64, why: String },
    #[error("images are {height}x{width}, the {preset} discriminator takes {size}x{size}")]
    WrongImageSize { height: u32, width: u32, preset: Preset, size: i64 },
    #[error("no images to extract features from")]
    NoImages,
    #[error("{path}: {name} holds NaN or infinity: not a usable discriminator (training diverged?)")]
    NonFiniteWeights { path: PathBuf, name: String },
    #[error("{model}: feature {feature} of image {image} is {value}{why}; no SVM is fitted on it")]
    NonFiniteFeature { model: String, image: usize, feature: usize, value: f32, why: &'static str },
}

/// A discriminator ready to hand out features.
pub struct FeatureExtractor {
    vars: nn::VarStore,
    d: Discriminator,
    pub device: Device,
    /// Where D came from, for errors: its file, or "a random discriminator".
    model: String,
}

impl FeatureExtractor {
    /// A randomly initialised discriminator (N(0, 0.02) weights): the paper's models' features
    /// without any training, the baseline a trained D has to beat.
    pub fn random(preset: Preset, width: i64, seed: i64, device: Device) -> Self {
        tch::manual_seed(seed);
        let vars = nn::VarStore::new(device);
        let d = Discriminator::new(&vars.root(), preset, width);
        Self { vars, d, device, model: format!("a random {preset} discriminator") }
    }

    /// Loads D's weights (and BatchNorm statistics) from a safetensors checkpoint written by
    /// `train` (float32 or float16). Every tensor must be there with the right shape.
    pub fn load(path: &Path, preset: Preset, width: i64, device: Device) -> Result<Self, FeatureError> {
        let unreadable = |why: String| FeatureError::Unreadable { path: path.to_owned(), why };
        if !path.is_file() {
            return Err(unreadable("no such file".into()));
        }
        // Checked against its record (FILE.json, or its checkpoint's state.json) before it is used.
        crate::integrity::verify_model_noting(path)?;
        let stored: HashMap<String, Tensor> =
            Tensor::read_safetensors(path).map_err(|e| unreadable(e.to_string()))?.into_iter().collect();
        let mut extractor = Self::random(preset, width, 0, device);
        extractor.model = path.display().to_string();
        let wrong = |why: String| FeatureError::WrongModel { path: path.to_owned(), preset, width, why };
        let mut variables: Vec<(String, Tensor)> = extractor.vars.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, _) in &variables {
            if !stored.contains_key(name) {
                return Err(wrong(format!("it has no tensor {name:?} (it holds {})", describe(&stored))));
            }
        }
        if let Some(extra) = stored.keys().find(|k| !variables.iter().any(|(n, _)| n == *k)) {
            return Err(wrong(format!("unexpected tensor {extra:?}")));
        }
        tch::no_grad(|| {
            for (name, mut var) in variables {
                let value = &stored[&name];
                if value.size() != var.size() {
                    return Err(wrong(format!("{name} has shape {:?}, expected {:?}", value.size(), var.size())));
                }
                if !bool::try_from(value.isfinite().all()).unwrap_or(false) {
                    return Err(FeatureError::NonFiniteWeights { path: path.to_owned(), name });
                }
                var.copy_(&value.to_kind(var.kind()));
            }
            Ok(())
        })?;
        Ok(extractor)
    }

    pub fn discriminator(&self) -> &Discriminator {
        &self.d
    }

    pub fn feature_count(&self) -> usize {
        self.d.feature_count() as usize
    }

    fn check_images(&self, images: &LabeledImages) -> Result<(), FeatureError> {
        let size = self.d.preset.image_size();
        if images.height as i64 != size || images.width as i64 != size {
            return Err(FeatureError::WrongImageSize {
                height: images.height,
                width: images.width,
                preset: self.d.preset,
                size,
            });
        }
        if images.is_empty() {
            return Err(FeatureError::NoImages);
        }
        Ok(())
    }

    /// Images `range` as D's input on its device.
    fn batch(&self, images: &LabeledImages, range: std::ops::Range<usize>) -> Tensor {
        let bytes = (images.height * images.width * 3) as usize;
        let pixels = &images.images[range.start * bytes..range.end * bytes];
        let t = Tensor::from_slice(pixels).view([range.len() as i64, images.height as i64, images.width as i64, 3]);
        to_network_input(&t.to_device(self.device))
    }

    /// Replaces every BatchNorm's running mean and variance with the population statistics of
    /// `images` (the first `limit` of them; 0 = all), bottom layer first.
    pub fn recompute_batch_norm(
        &mut self,
        images: &LabeledImages,
        limit: usize,
        batch: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(), FeatureError> {
        self.check_images(images)?;
        let n = if limit == 0 { images.len() } else { limit.min(images.len()) };
        let layers = self.d.layers.len();
        tch::no_grad(|| {
            for k in 0..layers {
                if self.d.layers[k].batch_norm_mut().is_none() {
                    continue;
                }
                let mut sum: Option<Tensor> = None;
                let mut sum_sq: Option<Tensor> = None;
                let mut count = 0i64;
                for start in (0..n).step_by(batch) {
                    let mut x = self.batch(images, start..(start + batch).min(n));
                    for layer in &self.d.layers[..k] {
                        x = layer.forward_t(&x, false);
                    }
                    let y = self.d.layers[k].conv_output(&x).to_kind(Kind::Double);
                    let (s, q) = (
                        y.sum_dim_intlist([0, 2, 3].as_slice(), false, Kind::Double),
                        y.square().sum_dim_intlist([0, 2, 3].as_slice(), false, Kind::Double),
                    );
                    sum = Some(match sum {
                        Some(acc) => acc + s,
                        None => s,
                    });
                    sum_sq = Some(match sum_sq {
                        Some(acc) => acc + q,
                        None => q,
                    });
                    count += y.size()[0] * y.size()[2] * y.size()[3];
                }
                let mean = sum.unwrap() / count as f64;
                let var = (sum_sq.unwrap() / count as f64 - mean.square()).clamp_min(0.0);
                let bn = self.d.layers[k].batch_norm_mut().unwrap();
                bn.running_mean.copy_(&mean.to_kind(Kind::Float));
                bn.running_var.copy_(&var.to_kind(Kind::Float));
                progress(k + 1, layers);
            }
        });
        Ok(())
    }

    /// The pooled features of every image, `batch` at a time (the paper's: after LeakyReLU, 4x4 max).
    pub fn extract(
        &self,
        images: &LabeledImages,
        batch: usize,
        dtype: FeatureDtype,
        progress: impl FnMut(usize, usize),
    ) -> Result<FeatureMatrix, FeatureError> {
        let spec = FeatureSpec { point: FeaturePoint::LeakyRelu, pooling: Pooling::Max, flipped: false };
        Ok(self.extract_many(images, &[spec], batch, dtype, progress)?.pop().expect("one spec"))
    }

    /// One feature matrix per spec, from one forward pass over the images per flip (a spec with
    /// `flipped` takes the features of each image mirrored left to right).
    pub fn extract_many(
        &self,
        images: &LabeledImages,
        specs: &[FeatureSpec],
        batch: usize,
        dtype: FeatureDtype,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<FeatureMatrix>, FeatureError> {
        self.check_images(images)?;
        let n = images.len();
        let mut out: Vec<FeatureMatrix> =
            specs.iter().map(|s| FeatureMatrix::zeros(n, self.feature_count_with(s.pooling), dtype)).collect();
        let need = |flipped: bool| specs.iter().any(|s| s.flipped == flipped);
        tch::no_grad(|| -> Result<(), FeatureError> {
            for start in (0..n).step_by(batch) {
                let end = (start + batch).min(n);
                let x = self.batch(images, start..end);
                for flipped in [false, true].into_iter().filter(|f| need(*f)) {
                    let outputs = self.d.layer_outputs(&if flipped { x.flip([3]) } else { x.shallow_clone() });
                    for (spec, matrix) in specs.iter().zip(out.iter_mut()).filter(|(s, _)| s.flipped == flipped) {
                        let features = Discriminator::pool_outputs(&outputs, spec.point, spec.pooling)
                            .to_device(Device::Cpu)
                            .contiguous();
                        let values: Vec<f32> = Vec::<f32>::try_from(features.view([-1])).expect("float features");
                        self.check_finite(&values, start, matrix.n_cols(), dtype)?;
                        matrix.set_rows(start, &values);
                    }
                }
                progress(end, n);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Refuses a NaN or infinite feature, or one too large for float16 (it would be stored as
    /// infinity): the SVM would fit garbage (a D full of NaN once scored "10.0%").
    fn check_finite(
        &self,
        values: &[f32],
        first_image: usize,
        cols: usize,
        dtype: FeatureDtype,
    ) -> Result<(), FeatureError> {
        let limit = if dtype == FeatureDtype::Float16 { f32::from(half::f16::MAX) } else { f32::MAX };
        let Some(i) = values.iter().position(|v| v.is_nan() || v.abs() > limit) else { return Ok(()) };
        let why =
            if values[i].is_finite() { " (beyond float16: set cifar_eval.features_dtype = \"float32\")" } else { "" };
        Err(FeatureError::NonFiniteFeature {
            model: self.model.clone(),
            image: first_image + i / cols.max(1),
            feature: i % cols.max(1),
            value: values[i],
            why,
        })
    }

    /// Feature width with `pooling`.
    pub fn feature_count_with(&self, pooling: Pooling) -> usize {
        self.d.feature_layout(pooling).iter().sum()
    }
}

/// Which features to take: the layer point, the pooling, and whether of the mirrored image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureSpec {
    pub point: FeaturePoint,
    pub pooling: Pooling,
    pub flipped: bool,
}

fn describe(stored: &HashMap<String, Tensor>) -> String {
    let mut names: Vec<&String> = stored.keys().collect();
    names.sort();
    let shown: Vec<String> = names.iter().take(4).map(|n| format!("{n} {:?}", stored[*n].size())).collect();
    format!("{} tensors: {}{}", names.len(), shown.join(", "), if names.len() > 4 { ", ..." } else { "" })
}
