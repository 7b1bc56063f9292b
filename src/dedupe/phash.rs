//! pHash, the check a candidate pair must pass before one image removes the other.
//!
//! The autoencoder's code finds candidates: distinct photos that share a colour layout (blue sky
//! with a small object, green-and-grey landscapes) land within a few bits of each other at scale.
//! A 64-bit DCT hash of the same crop errs on other pairs, so requiring both to agree keeps the
//! code's recall while removing almost all of its false pairs (docs/dedupe.md, dedupe at scale).

use image::RgbImage;
use image_hasher::{HashAlg, Hasher, HasherConfig};
use rayon::prelude::*;

/// The 64-bit perceptual hash: the 8x8 lowest DCT frequencies of the grey image, each bit
/// whether its coefficient is above the median (image_hasher's DCT + median).
pub fn phasher() -> Hasher {
    HasherConfig::new().hash_size(8, 8).hash_alg(HashAlg::Median).preproc_dct().to_hasher()
}

/// One image's pHash as a word.
pub fn phash64<I: image_hasher::Image>(hasher: &Hasher, image: &I) -> u64 {
    u64::from_le_bytes(hasher.hash_image(image).as_bytes()[..8].try_into().expect("a 64-bit pHash"))
}

/// pHashes of packed `side` x `side` RGB crops, in order.
pub fn phash_crops(crops: &[u8], side: u32) -> Vec<u64> {
    let per = (side * side * 3) as usize;
    let hasher = phasher();
    crops
        .par_chunks_exact(per)
        .map(|c| phash64(&hasher, &RgbImage::from_raw(side, side, c.to_vec()).expect("crop size")))
        .collect()
}

/// Two images pass when their pHashes differ in at most `radius` bits.
#[derive(Debug, Clone, Copy)]
pub struct PhashCheck<'a> {
    pub hashes: &'a [u64],
    pub radius: u32,
}

impl PhashCheck<'_> {
    pub fn distance(&self, a: u32, b: u32) -> u32 {
        (self.hashes[a as usize] ^ self.hashes[b as usize]).count_ones()
    }

    pub fn same(&self, a: u32, b: u32) -> bool {
        self.distance(a, b) <= self.radius
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(side: u32, flip: bool) -> RgbImage {
        RgbImage::from_fn(side, side, |x, y| {
            let v = if flip { side - 1 - x } else { x } * 255 / side + y * 40 / side;
            image::Rgb([v as u8, (v / 2) as u8, 255 - v as u8])
        })
    }

    #[test]
    fn a_brightened_copy_stays_close_and_a_mirrored_one_does_not() {
        let hasher = phasher();
        let a = gradient(64, false);
        let mut brighter = a.clone();
        brighter.pixels_mut().for_each(|p| p.0.iter_mut().for_each(|v| *v = v.saturating_add(12)));
        let hashes = [phash64(&hasher, &a), phash64(&hasher, &brighter), phash64(&hasher, &gradient(64, true))];
        let check = PhashCheck { hashes: &hashes, radius: 8 };
        assert!(check.same(0, 1), "brightened: {} bits", check.distance(0, 1));
        assert!(!check.same(0, 2), "mirrored: {} bits", check.distance(0, 2));
    }

    #[test]
    fn packed_crops_hash_like_single_images() {
        let (a, b) = (gradient(32, false), gradient(32, true));
        let packed: Vec<u8> = a.as_raw().iter().chain(b.as_raw()).copied().collect();
        let hasher = phasher();
        assert_eq!(phash_crops(&packed, 32), vec![phash64(&hasher, &a), phash64(&hasher, &b)]);
    }
}
