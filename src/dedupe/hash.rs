//! 128-bit binary codes: the autoencoder's code layer, thresholded, packed into two u64 words.

use serde::{Deserialize, Serialize};

/// Bits per code: the width of the autoencoder's code layer.
pub const CODE_BITS: usize = 128;

/// One image's semantic hash. Bit k of the code layer is bit (k % 64) of word k / 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Code128(pub [u64; 2]);

impl Code128 {
    /// Packs 128 booleans (bit k = `bits[k]`).
    pub fn from_bits(bits: &[bool]) -> Self {
        assert_eq!(bits.len(), CODE_BITS, "a code has {CODE_BITS} bits");
        let mut words = [0u64; 2];
        for (k, &bit) in bits.iter().enumerate() {
            if bit {
                words[k / 64] |= 1 << (k % 64);
            }
        }
        Self(words)
    }

    pub fn bit(&self, k: usize) -> bool {
        self.0[k / 64] >> (k % 64) & 1 == 1
    }

    /// Number of differing bits.
    pub fn hamming(&self, other: &Self) -> u32 {
        (self.0[0] ^ other.0[0]).count_ones() + (self.0[1] ^ other.0[1]).count_ones()
    }

    pub fn to_hex(&self) -> String {
        format!("{:016x}{:016x}", self.0[1], self.0[0])
    }
}

/// Thresholds activations (row-major, `CODE_BITS` per row) into codes: bit = activation > threshold.
/// On the code layer's pre-activations with threshold 0 this is the paper's "ReLU active".
pub fn binarize(activations: &[f32], thresholds: &[f32]) -> Vec<Code128> {
    assert_eq!(thresholds.len(), CODE_BITS);
    assert_eq!(activations.len() % CODE_BITS, 0);
    activations
        .chunks_exact(CODE_BITS)
        .map(|row| {
            let mut words = [0u64; 2];
            for (k, (&a, &t)) in row.iter().zip(thresholds).enumerate() {
                if a > t {
                    words[k / 64] |= 1 << (k % 64);
                }
            }
            Code128(words)
        })
        .collect()
}

/// How evenly the bits split the set: per bit, the fraction of codes with it set.
pub fn bit_usage(codes: &[Code128]) -> Vec<f64> {
    let mut ones = vec![0u64; CODE_BITS];
    for code in codes {
        for (k, count) in ones.iter_mut().enumerate() {
            *count += code.bit(k) as u64;
        }
    }
    ones.iter().map(|&c| c as f64 / codes.len().max(1) as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hamming_counts_bits_in_both_words() {
        let a = Code128([0, 0]);
        let b = Code128([0b1011, 1 << 63]);
        assert_eq!(a.hamming(&b), 4);
        assert_eq!(b.hamming(&b), 0);
        assert_eq!(Code128([u64::MAX, u64::MAX]).hamming(&a), 128);
    }

    #[test]
    fn binarize_packs_bit_k_into_word_k_div_64() {
        let mut act = vec![-1.0f32; CODE_BITS];
        act[0] = 0.5;
        act[70] = 2.0;
        act[127] = 0.1;
        let thresholds = vec![0.0f32; CODE_BITS];
        let code = binarize(&act, &thresholds)[0];
        assert_eq!(code, Code128([1, (1 << 6) | (1 << 63)]));
        let bits: Vec<bool> = (0..CODE_BITS).map(|k| code.bit(k)).collect();
        assert_eq!(Code128::from_bits(&bits), code);
        // A higher threshold turns the weak activation off.
        let raised = vec![0.2f32; CODE_BITS];
        assert_eq!(binarize(&act, &raised)[0], Code128([1, 1 << 6]));
    }
}
