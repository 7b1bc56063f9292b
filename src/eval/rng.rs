//! splitmix64: the seeded generator behind the solver's pass order, the validation split and the
//! 400-per-class draws. Small and the same on every platform, so a seed names one result.

pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for j in (1..v.len()).rev() {
            v.swap(j, (self.next() % (j as u64 + 1)) as usize);
        }
    }
}
