//! Looking at what a trained generator makes: a grid of samples from a seeded z, and the paper's
//! latent walk (section 6.1): images along straight lines between random points of z. A smooth
//! walk says the generator learned a space; sharp jumps say it memorised.
//!
//! Every image is G(z) for its z alone (a batch of one, BatchNorm on its running statistics), so
//! the same z gives the same picture in the grid, in the walk and on any machine's CPU.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{nn, Device, Kind, Tensor};

use super::models::{Generator, Preset, Prior};

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    Integrity(#[from] crate::integrity::IntegrityError),
    #[error("{path}: cannot read the generator: {why}")]
    Unreadable { path: PathBuf, why: String },
    #[error("{path}: not a generator of this project: {why}")]
    NotAGenerator { path: PathBuf, why: String },
}

/// A generator loaded from safetensors (float32 from training or float16 as exported), on the CPU.
pub struct TrainedGenerator {
    _vars: nn::VarStore,
    pub g: Generator,
    pub preset: Preset,
    pub width: i64,
    /// The type its weights were stored in.
    pub stored_kind: Kind,
}

/// The file behind `path`: a safetensors file, or a train output folder's generator.safetensors.
pub fn generator_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("generator.safetensors")
    } else {
        path.to_path_buf()
    }
}

impl TrainedGenerator {
    /// Loads `path` (see [`generator_file`]); the preset, z size and width are read off the
    /// tensors' shapes, and every tensor of that generator must be there with its shape.
    pub fn load(path: &Path) -> Result<Self, SampleError> {
        let path = generator_file(path);
        let unreadable = |why: String| SampleError::Unreadable { path: path.clone(), why };
        if !path.is_file() {
            return Err(unreadable("no such file".into()));
        }
        // Checked against its record (FILE.json, or its checkpoint's state.json) before it is used.
        crate::integrity::verify_model_noting(&path)?;
        let stored: HashMap<String, Tensor> =
            Tensor::read_safetensors(&path).map_err(|e| unreadable(e.to_string()))?.into_iter().collect();
        let wrong = |why: String| SampleError::NotAGenerator { path: path.clone(), why };
        let shape = |name: &str| stored.get(name).map(|t| t.size());
        let rgb = shape("rgb.weight").ok_or_else(|| wrong("it has no tensor \"rgb.weight\"".into()))?;
        let width = rgb[0];
        let (preset, z_dim) = if let Some(s) = shape("project.weight") {
            (Preset::Imagenet32, s[1])
        } else if let Some(s) = shape("project.deconv.weight") {
            // dcgan64 and dcgan32 share the stem; dcgan64 has one more up layer.
            (if stored.contains_key("u3.deconv.weight") { Preset::Dcgan64 } else { Preset::Dcgan32 }, s[0])
        } else {
            return Err(wrong(
                "it has neither \"project.weight\" (imagenet32) nor \"project.deconv.weight\" (dcgan64, dcgan32)"
                    .into(),
            ));
        };
        let vars = nn::VarStore::new(Device::Cpu);
        let g = Generator::new(&vars.root(), preset, z_dim, width);
        let mut stored_kind = Kind::Float;
        let variables = vars.variables();
        if let Some(extra) = stored.keys().find(|k| !variables.contains_key(*k)) {
            return Err(wrong(format!("unexpected tensor {extra:?} for a {preset} generator of width {width}")));
        }
        tch::no_grad(|| {
            for (name, mut var) in variables {
                let value = stored.get(&name).ok_or_else(|| wrong(format!("it has no tensor {name:?}")))?;
                if value.size() != var.size() {
                    return Err(wrong(format!("{name} has shape {:?}, expected {:?}", value.size(), var.size())));
                }
                if value.kind() != Kind::Float {
                    stored_kind = value.kind();
                }
                var.copy_(&value.to_kind(var.kind()));
            }
            Ok(())
        })?;
        Ok(Self { _vars: vars, g, preset, width, stored_kind })
    }

    pub fn z_dim(&self) -> i64 {
        self.g.z_dim
    }

    /// G(z) for each row of `z` (N x z_dim), each alone: N x 3 x H x W in [-1, 1].
    pub fn generate(&self, z: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let images: Vec<Tensor> = (0..z.size()[0]).map(|i| self.g.forward_t(&z.narrow(0, i, 1), false)).collect();
            Tensor::cat(&images, 0)
        })
    }
}

/// `n` draws of z from `prior`, the same for the same seed.
pub fn seeded_z(prior: Prior, n: i64, z_dim: i64, seed: i64) -> Tensor {
    // The crate's own generator, not libtorch's global one: the same z on every platform, and no
    // other thread that seeds or draws from the global generator can change it.
    let mut rng = crate::rng::SplitMix::new(seed as u64);
    let values: Vec<f32> = (0..n * z_dim)
        .map(|_| match prior {
            Prior::Uniform => rng.uniform(-1.0, 1.0) as f32,
            Prior::Normal => rng.normal() as f32,
        })
        .collect();
    Tensor::from_slice(&values).view([n, z_dim])
}

/// The paper's walk: for points p0..pR (the rows of `points`), row r goes from p(r) to p(r+1) in
/// `steps` evenly spaced z (both ends included), so consecutive rows join up. R*steps x z_dim.
pub fn latent_walk(points: &Tensor, steps: i64) -> Tensor {
    let rows = points.size()[0] - 1;
    let steps = steps.max(2);
    let mut walk = Vec::with_capacity((rows * steps) as usize);
    for r in 0..rows {
        let (a, b) = (points.get(r), points.get(r + 1));
        for j in 0..steps {
            let t = j as f64 / (steps - 1) as f64;
            // (1 - t) a + t b: exactly a at t = 0 and exactly b at t = 1.
            walk.push(&a * (1.0 - t) + &b * t);
        }
    }
    Tensor::stack(&walk, 0)
}

/// Lays images (N x 3 x H x W in [-1, 1]) out in a grid with `cols` columns and a 2-pixel gap,
/// each image magnified `scale` times (nearest), and writes it as PNG (train's samples, `sample`'s
/// grid and walk, the digits demo's samples by class).
pub fn write_sample_grid(images: &Tensor, cols: usize, scale: u32, path: &Path) -> anyhow::Result<()> {
    let images = ((images.to_device(tch::Device::Cpu).clamp(-1.0, 1.0) + 1.0) * 127.5)
        .round()
        .to_kind(tch::Kind::Uint8)
        .permute([0, 2, 3, 1])
        .contiguous();
    let size = images.size();
    let (n, h, w) = (size[0] as usize, size[1] as u32, size[2] as u32);
    let pixels: Vec<u8> = Vec::<u8>::try_from(images.flatten(0, -1))?;
    let tiles: Vec<&[u8]> = pixels.chunks_exact((h * w * 3) as usize).take(n).collect();
    let grid = crate::pictures::grid::tile_grid(&tiles, w, h, cols, scale, 2);
    Ok(crate::plots::write_png(&grid, path)?)
}

/// What [`write_pictures`] draws.
#[derive(Debug, Clone)]
pub struct PictureSpec {
    /// Images in the sample grid, and its columns.
    pub samples: i64,
    pub columns: i64,
    /// Rows of the walk (each between two random points of z) and images per row.
    pub walk_rows: i64,
    pub walk_steps: i64,
    pub seed: i64,
    pub prior: Prior,
}

impl Default for PictureSpec {
    fn default() -> Self {
        Self { samples: 64, columns: 8, walk_rows: 8, walk_steps: 10, seed: 1, prior: Prior::Uniform }
    }
}

impl PictureSpec {
    /// Refuses counts that would be changed silently (0 images, 0 columns, a walk of one image):
    /// named by the `sample` option that sets them.
    pub fn check(&self) -> anyhow::Result<()> {
        for (option, value, least) in [
            ("--samples", self.samples, 1),
            ("--columns", self.columns, 1),
            ("--walk-rows", self.walk_rows, 1),
            ("--walk-steps", self.walk_steps, 2),
        ] {
            if value < least {
                anyhow::bail!("{option} {value}: must be at least {least}");
            }
        }
        Ok(())
    }
}

/// Refuses a sample count or grid too big for the memory available, before any image is made.
fn check_memory(g: &TrainedGenerator, spec: &PictureSpec, scale: u32) -> anyhow::Result<()> {
    let cell = (g.preset.image_size() * scale as i64 + 2) as f64;
    let grid = |n: f64, cols: f64| (cols * cell + 2.0) * ((n / cols).ceil().max(1.0) * cell + 2.0);
    let samples = spec.samples.max(1) as f64;
    let walk = (spec.walk_rows.max(1) as f64) * (spec.walk_steps.max(2) as f64);
    let budget = crate::memory::budget(0.0, None);
    for (what, n, cols) in [
        (format!("--samples {} --columns {}", spec.samples, spec.columns), samples, spec.columns.max(1) as f64),
        (
            format!("--walk-rows {} --walk-steps {}", spec.walk_rows, spec.walk_steps),
            walk,
            spec.walk_steps.max(2) as f64,
        ),
    ] {
        let estimate = super::footprint::sampling_estimate(g.preset, g.z_dim(), g.width, n, grid(n, cols));
        crate::memory::check(&what, &estimate, budget.as_ref(), "ask for fewer images")?;
    }
    Ok(())
}

/// Loads the generator at `generator` and writes `output`/samples.png (the grid), walk.png (the
/// latent walk, one row per line in z) and summary.json (stage "sample": what was drawn from what;
/// the report shows it next to the train stage). Returns the summary.
pub fn write_pictures(generator: &Path, output: &Path, spec: &PictureSpec) -> anyhow::Result<serde_json::Value> {
    spec.check()?;
    let started = std::time::Instant::now();
    let file = generator_file(generator);
    let g = TrainedGenerator::load(&file)?;
    let load_s = started.elapsed().as_secs_f64();
    // 32x32 images are shown twice their size: a grid of them is otherwise too small to judge.
    let scale = if g.preset.image_size() <= 32 { 2 } else { 1 };
    check_memory(&g, spec, scale)?;
    // Never into another stage's folder (`-o` the train folder it samples would replace train's summary).
    let _lock = crate::stage::owner::claim_and_lock(output, "sample")?;

    let t = std::time::Instant::now();
    let z = seeded_z(spec.prior, spec.samples.max(1), g.z_dim(), spec.seed);
    write_sample_grid(&g.generate(&z), spec.columns.max(1) as usize, scale, &output.join("samples.png"))?;
    let samples_s = t.elapsed().as_secs_f64();

    let t = std::time::Instant::now();
    // Another stream than the grid's: the walk's points are not the grid's first images.
    let points = seeded_z(spec.prior, spec.walk_rows.max(1) + 1, g.z_dim(), spec.seed.wrapping_add(1_000_003));
    let walk = latent_walk(&points, spec.walk_steps);
    write_sample_grid(&g.generate(&walk), spec.walk_steps.max(2) as usize, scale, &output.join("walk.png"))?;
    let walk_s = t.elapsed().as_secs_f64();

    let record: Option<serde_json::Value> =
        std::fs::read(file.with_extension("safetensors.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let summary = serde_json::json!({
        "stage": "sample",
        "generator": file.display().to_string(),
        "generator_sha256": crate::fsutil::sha256_file(&file)?,
        "generator_record": record,
        "preset": g.preset,
        "z_dim": g.z_dim(),
        "width": g.width,
        "stored_dtype": if g.stored_kind == Kind::Half { "float16" } else { "float32" },
        "prior": spec.prior,
        "seed": spec.seed,
        "samples": {"file": "samples.png", "count": spec.samples.max(1), "columns": spec.columns.max(1)},
        "walk": {"file": "walk.png", "rows": spec.walk_rows.max(1), "steps": spec.walk_steps.max(2)},
        "batch_norm": "running statistics, each image alone",
        "timings_s": {"load": load_s, "samples": samples_s, "walk": walk_s},
        "versions": crate::versions(),
    });
    crate::fsutil::write_atomic(&output.join("summary.json"), &serde_json::to_vec_pretty(&summary)?)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A freshly initialised generator written as safetensors (float32), the way training saves it.
    fn saved_generator(dir: &Path, preset: Preset, z_dim: i64, width: i64) -> PathBuf {
        tch::manual_seed(3);
        let vars = nn::VarStore::new(Device::Cpu);
        let _g = Generator::new(&vars.root(), preset, z_dim, width);
        let path = dir.join("g.safetensors");
        let named: Vec<(String, Tensor)> = vars.variables().into_iter().collect();
        Tensor::write_safetensors(&named, &path).unwrap();
        path
    }

    #[test]
    fn the_walk_starts_and_ends_on_its_points() {
        let points = seeded_z(Prior::Uniform, 4, 16, 7);
        let walk = latent_walk(&points, 5);
        assert_eq!(walk.size(), [15, 16]);
        for r in 0..3 {
            assert!(walk.get(5 * r).equal(&points.get(r)), "row {r} starts at p{r}");
            assert!(walk.get(5 * r + 4).equal(&points.get(r + 1)), "row {r} ends at p{}", r + 1);
        }
        // The middle of a row is the midpoint.
        let mid = (points.get(0) + points.get(1)) / 2.0;
        assert!(walk.get(2).allclose(&mid, 1e-6, 1e-6, false));
    }

    #[test]
    fn seeded_z_repeats() {
        assert!(seeded_z(Prior::Uniform, 3, 8, 1).equal(&seeded_z(Prior::Uniform, 3, 8, 1)));
        assert!(!seeded_z(Prior::Uniform, 3, 8, 1).equal(&seeded_z(Prior::Uniform, 3, 8, 2)));
    }

    #[test]
    fn loads_both_presets_and_reads_their_shapes() {
        let dir = tempfile::tempdir().unwrap();
        for (preset, z_dim, width, side) in
            [(Preset::Imagenet32, 20, 8, 32), (Preset::Dcgan64, 12, 4, 64), (Preset::Dcgan32, 12, 4, 32)]
        {
            let path = saved_generator(dir.path(), preset, z_dim, width);
            let g = TrainedGenerator::load(&path).unwrap();
            assert_eq!((g.preset, g.z_dim(), g.width), (preset, z_dim, width));
            let images = g.generate(&seeded_z(Prior::Uniform, 2, z_dim, 1));
            assert_eq!(images.size(), [2, 3, side, side]);
        }
    }

    #[test]
    fn an_image_does_not_depend_on_the_others_in_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let g = TrainedGenerator::load(&saved_generator(dir.path(), Preset::Imagenet32, 20, 8)).unwrap();
        let z = seeded_z(Prior::Uniform, 5, 20, 2);
        let all = g.generate(&z);
        // Up to the last bits (MKL may pick other kernels for other buffers): a batch's statistics
        // would move it by far more.
        assert!(all.get(3).allclose(&g.generate(&z.narrow(0, 3, 1)).get(0), 1e-5, 1e-6, false));
    }

    #[test]
    fn a_wrong_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("d.safetensors");
        Tensor::write_safetensors(&[("c1.conv.weight", Tensor::zeros([2, 3, 3, 3], (Kind::Float, Device::Cpu)))], &bad)
            .unwrap();
        let e = TrainedGenerator::load(&bad).err().unwrap().to_string();
        assert!(e.contains("d.safetensors") && e.contains("rgb.weight"), "{e}");
        let e = TrainedGenerator::load(&dir.path().join("none.safetensors")).err().unwrap().to_string();
        assert!(e.contains("no such file"), "{e}");
    }
}
