//! A generated 10-class image set in CIFAR-10's class-folder layout, for the demo's cifar-eval
//! (no download, no data files). A class is an orientation of a striped texture (0, 18, ..., 162
//! degrees); colours, stripe frequency and phase, contrast, a bright blob and pixel noise are drawn
//! per image, so colour says nothing about the class and features must see oriented structure.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::cifar::CIFAR10_CLASSES;

/// A small xorshift generator; the set depends only on the seed.
struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
}

/// One `side` x `side` image of `class` (0..10), the `index`-th of its split.
pub fn oriented_texture(class: u32, index: u64, side: u32) -> RgbImage {
    let mut rng = Xorshift::new((index << 8) ^ class as u64 ^ 0xD1CE);
    let angle = class as f32 * std::f32::consts::PI / 10.0 + rng.range(-0.08, 0.08);
    let (dx, dy) = (angle.cos(), angle.sin());
    let frequency = rng.range(0.55, 1.1);
    let phase = rng.range(0.0, std::f32::consts::TAU);
    let background: [f32; 3] = [rng.range(40.0, 215.0), rng.range(40.0, 215.0), rng.range(40.0, 215.0)];
    let ink: [f32; 3] = [rng.range(-1.0, 1.0), rng.range(-1.0, 1.0), rng.range(-1.0, 1.0)];
    let contrast = rng.range(25.0, 60.0);
    let (bx, by, br) = (rng.range(0.0, side as f32), rng.range(0.0, side as f32), rng.range(3.0, 9.0));
    RgbImage::from_fn(side, side, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        let wave = ((xf * dx + yf * dy) * frequency + phase).sin() * contrast;
        let blob = if (xf - bx).powi(2) + (yf - by).powi(2) < br * br { 60.0 } else { 0.0 };
        let mut channel = |c: usize| (background[c] + ink[c] * wave + blob + rng.range(-35.0, 35.0)).clamp(0.0, 255.0) as u8;
        Rgb([channel(0), channel(1), channel(2)])
    })
}

/// Writes `<root>/{train,test}/<class>/NNNN.png` with CIFAR-10's class names; returns the number
/// of images written. Files that already exist are left alone (a re-run is cheap).
pub fn write_class_folders(root: &Path, train_per_class: u32, test_per_class: u32) -> std::io::Result<usize> {
    let mut written = 0;
    for (split, per_class, offset) in [("train", train_per_class, 0u64), ("test", test_per_class, 1 << 32)] {
        for (c, name) in CIFAR10_CLASSES.iter().enumerate() {
            let dir = root.join(split).join(name);
            std::fs::create_dir_all(&dir)?;
            for i in 0..per_class {
                let path = dir.join(format!("{i:04}.png"));
                if path.exists() {
                    continue;
                }
                let mut png = std::io::Cursor::new(Vec::new());
                oriented_texture(c as u32, offset + i as u64, 32).write_to(&mut png, image::ImageFormat::Png).map_err(std::io::Error::other)?;
                crate::fsutil::write_atomic(&path, png.get_ref())?;
                written += 1;
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_deterministic_and_differ_within_a_class() {
        let a = oriented_texture(3, 7, 32);
        assert_eq!(a, oriented_texture(3, 7, 32));
        assert_ne!(a, oriented_texture(3, 8, 32));
        assert_ne!(a, oriented_texture(4, 7, 32));
    }

    #[test]
    fn mean_colour_does_not_give_the_class_away() {
        // Per-class mean colours over 200 images each stay close together: colour is drawn per image.
        let means: Vec<[f64; 3]> = (0..10)
            .map(|c| {
                let mut sum = [0f64; 3];
                for i in 0..200 {
                    for p in oriented_texture(c, i, 32).pixels() {
                        for k in 0..3 {
                            sum[k] += p[k] as f64;
                        }
                    }
                }
                sum.map(|s| s / (200.0 * 1024.0))
            })
            .collect();
        for k in 0..3 {
            let (lo, hi) = means.iter().fold((f64::MAX, f64::MIN), |(lo, hi), m| (lo.min(m[k]), hi.max(m[k])));
            assert!(hi - lo < 12.0, "channel {k}: class means spread over {lo:.1}..{hi:.1}");
        }
    }
}
