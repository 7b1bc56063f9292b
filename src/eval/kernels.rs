//! The two loops the SVM solver spends its time in, `dot` and `axpy`, compiled twice: once for the
//! baseline x86-64 target and once with AVX2 + FMA, picked at run time. The release build targets
//! plain x86-64 (the binaries must run anywhere), which would otherwise leave 3/4 of each vector
//! unit idle.

/// Lanes summed independently: float addition is not associative, so the compiler only
/// vectorises a reduction it is handed in this shape.
const LANES: usize = 16;

#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let chunks = n / LANES * LANES;
    for (ca, cb) in a[..chunks].chunks_exact(LANES).zip(b[..chunks].chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] = ca[l].mul_add(cb[l], acc[l]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in a[chunks..].iter().zip(&b[chunks..]) {
        sum += x * y;
    }
    sum
}

#[inline(always)]
fn axpy_portable(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = alpha.mul_add(*xi, *yi);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::dot_portable(a, b)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        super::axpy_portable(alpha, x, y)
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// Sum of `a[i] * b[i]` over the shorter length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { avx2::dot(a, b) };
    }
    // Without hardware FMA, mul_add is a slow libm call: plain multiply-add instead.
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y += alpha * x`.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: as in `dot`.
        return unsafe { avx2::axpy(alpha, x, y) };
    }
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// Floats of a row swept per class at a time in [`dot_many`] / [`axpy_many`]: 8 KB, so the row's
/// block stays in L1 while each class's weights stream past it.
const BLOCK: usize = 2048;

/// `out[j] = weights[classes[j]] . x` for several classes in one sweep over `x`.
pub fn dot_many(x: &[f32], weights: &[Vec<f32>], classes: &[usize], out: &mut Vec<f32>) {
    out.clear();
    out.resize(classes.len(), 0.0);
    for start in (0..x.len()).step_by(BLOCK) {
        let end = (start + BLOCK).min(x.len());
        for (o, &c) in out.iter_mut().zip(classes) {
            *o += dot(&weights[c][start..end], &x[start..end]);
        }
    }
}

/// `weights[c] += step * x` for every `(c, step)`, in one sweep over `x`.
pub fn axpy_many(x: &[f32], weights: &mut [Vec<f32>], updates: &[(usize, f32)]) {
    if updates.is_empty() {
        return;
    }
    for start in (0..x.len()).step_by(BLOCK) {
        let end = (start + BLOCK).min(x.len());
        for &(c, step) in updates {
            axpy(step, &x[start..end], &mut weights[c][start..end]);
        }
    }
}

/// float16 -> float32 for a whole row. half's slice conversion calls a function per 8 values,
/// which cost the solver a fifth of its time; this loop keeps F16C's vcvtph2ps inline.
pub fn widen_f16(src: &[half::f16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    #[cfg(target_arch = "x86_64")]
    if has_f16c() {
        // SAFETY: F16C and AVX are present; f16 is a transparent u16.
        unsafe { f16c::widen(src.as_ptr() as *const u16, dst.as_mut_ptr(), n) };
        return;
    }
    for (d, s) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = s.to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
fn has_f16c() -> bool {
    use std::sync::OnceLock;
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| is_x86_feature_detected!("f16c") && is_x86_feature_detected!("avx"))
}

#[cfg(target_arch = "x86_64")]
mod f16c {
    use std::arch::x86_64::{__m128i, _mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};

    #[target_feature(enable = "avx,f16c")]
    pub unsafe fn widen(src: *const u16, dst: *mut f32, n: usize) {
        let whole = n / 8 * 8;
        let mut i = 0;
        while i < whole {
            let halves = _mm_loadu_si128(src.add(i) as *const __m128i);
            _mm256_storeu_ps(dst.add(i), _mm256_cvtph_ps(halves));
            i += 8;
        }
        for j in whole..n {
            *dst.add(j) = half::f16::from_bits(*src.add(j)).to_f32();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_float16_matches_half() {
        let src: Vec<half::f16> = (0..37).map(|i| half::f16::from_f32(i as f32 * 0.37 - 5.0)).collect();
        let mut dst = vec![0f32; 37];
        widen_f16(&src, &mut dst);
        for (s, d) in src.iter().zip(&dst) {
            assert_eq!(s.to_f32(), *d);
        }
    }

    #[test]
    fn dot_and_axpy_match_a_plain_loop_at_every_tail_length() {
        for n in [0usize, 1, 15, 16, 17, 100, 1000] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 2.0).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - plain).abs() <= 1e-4 * (1.0 + plain.abs()), "n = {n}");
            let mut y = b.clone();
            axpy(0.5, &a, &mut y);
            for i in 0..n {
                assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6);
            }
        }
    }
}
