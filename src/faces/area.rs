//! OpenCV's INTER_AREA shrink of an 8-bit, 3-channel image by a factor that is not a whole number,
//! computed as OpenCV 4.6's `resize` computes it (its `computeResizeAreaTab` weights and its
//! `ResizeArea_Invoker` float sums, term by term in the same order, rounded half to even), so that
//! the pixels are the same, in about half the time: each source row's horizontal sums are
//! computed once (OpenCV computes them again for a row shared by two output rows) and kept in
//! registers rather than re-read per term. Whole-number factors (OpenCV's integer fast path) and
//! enlargements are left to OpenCV ([`shrinks_here`]).

/// One term of a sum: output index, source index, weight.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Term {
    to: usize,
    from: usize,
    weight: f32,
}

/// The terms by which `src` pixels make `dst` pixels at `scale` = src / dst (OpenCV's
/// computeResizeAreaTab, in its order).
fn terms(src: usize, dst: usize, scale: f64) -> Vec<Term> {
    let mut tab = Vec::with_capacity(src * 2);
    for to in 0..dst {
        let fsx1 = to as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell = scale.min(src as f64 - fsx1);
        let mut sx2 = fsx2.floor() as i64;
        sx2 = sx2.min(src as i64 - 1);
        let sx1 = (fsx1.ceil() as i64).min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push(Term { to, from: (sx1 - 1) as usize, weight: ((sx1 as f64 - fsx1) / cell) as f32 });
        }
        for sx in sx1..sx2 {
            tab.push(Term { to, from: sx as usize, weight: (1.0 / cell) as f32 });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            tab.push(Term { to, from: sx2 as usize, weight: ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32 });
        }
    }
    tab
}

/// OpenCV's scale for a side (`1 / (dst / src)`, in doubles) and whether it counts as a whole
/// number there.
fn scale_of(src: u32, dst: u32) -> (f64, bool) {
    let scale = 1.0 / (dst as f64 / src as f64);
    let whole = (scale - scale.round_ties_even()).abs() < f64::EPSILON;
    (scale, whole)
}

/// Whether [`shrink_area`] computes this resize (otherwise OpenCV must): both sides shrink or stay,
/// one at least shrinks, and not both by whole numbers.
pub fn shrinks_here(src: (u32, u32), dst: (u32, u32)) -> bool {
    let (sx, wx) = scale_of(src.0, dst.0);
    let (sy, wy) = scale_of(src.1, dst.1);
    dst.0 >= 1 && dst.1 >= 1 && sx >= 1.0 && sy >= 1.0 && src != dst && !(wx && wy)
}

/// `pixels` (RGB rows of `src` = width, height) shrunk to `dst` as OpenCV's INTER_AREA does it;
/// only where [`shrinks_here`].
pub fn shrink_area(pixels: &[u8], src: (u32, u32), dst: (u32, u32)) -> Vec<u8> {
    debug_assert!(shrinks_here(src, dst));
    let (sw, sh) = (src.0 as usize, src.1 as usize);
    let (dw, dh) = (dst.0 as usize, dst.1 as usize);
    let xtab = terms(sw, dw, scale_of(src.0, dst.0).0);
    let ytab = terms(sh, dh, scale_of(src.1, dst.1).0);
    // Each output pixel's terms, contiguous in xtab.
    let mut starts = vec![0usize; dw + 1];
    for t in &xtab {
        starts[t.to + 1] += 1;
    }
    for i in 0..dw {
        starts[i + 1] += starts[i];
    }
    let width = dw * 3;
    let mut out = vec![0u8; width * dh];
    let mut buf = vec![0f32; width];
    let mut sum = vec![0f32; width];
    let mut buf_row = usize::MAX;
    let mut prev_dy = ytab.first().map_or(0, |t| t.to);
    for t in &ytab {
        if t.from != buf_row {
            let row = &pixels[t.from * sw * 3..(t.from + 1) * sw * 3];
            for (dx, px) in buf.chunks_exact_mut(3).enumerate() {
                let (mut r, mut g, mut b) = (0f32, 0f32, 0f32);
                for term in &xtab[starts[dx]..starts[dx + 1]] {
                    let s = &row[term.from * 3..term.from * 3 + 3];
                    r += s[0] as f32 * term.weight;
                    g += s[1] as f32 * term.weight;
                    b += s[2] as f32 * term.weight;
                }
                px.copy_from_slice(&[r, g, b]);
            }
            buf_row = t.from;
        }
        let beta = t.weight;
        if t.to != prev_dy {
            let line = &mut out[prev_dy * width..(prev_dy + 1) * width];
            for ((o, s), b) in line.iter_mut().zip(sum.iter_mut()).zip(&buf) {
                *o = to_u8(*s);
                *s = beta * b;
            }
            prev_dy = t.to;
        } else {
            for (s, b) in sum.iter_mut().zip(&buf) {
                *s += beta * b;
            }
        }
    }
    for (o, s) in out[prev_dy * width..(prev_dy + 1) * width].iter_mut().zip(&sum) {
        *o = to_u8(*s);
    }
    out
}

/// OpenCV's saturate_cast<uchar>(float): rounded half to even, then clamped.
fn to_u8(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Mat, Size};
    use opencv::imgproc;
    use opencv::prelude::*;

    fn opencv_area(pixels: &[u8], src: (u32, u32), dst: (u32, u32)) -> Vec<u8> {
        let flat = Mat::new_rows_cols_with_data(src.1 as i32, (src.0 * 3) as i32, pixels).unwrap();
        let img = flat.reshape(3, src.1 as i32).unwrap();
        let mut out = Mat::default();
        imgproc::resize(&img, &mut out, Size::new(dst.0 as i32, dst.1 as i32), 0.0, 0.0, imgproc::INTER_AREA).unwrap();
        out.data_bytes().unwrap().to_vec()
    }

    #[test]
    fn the_same_pixels_as_opencv_inter_area() {
        let mut x = 0x2545_f491u32;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut sizes = vec![((1024, 768), (640, 480)), ((1024, 1366), (640, 854)), ((1024, 683), (640, 427))];
        sizes.extend([
            ((1024, 1366), (160, 214)),
            ((640, 875), (160, 219)),
            ((37, 29), (11, 29)),
            ((300, 7), (299, 3)),
        ]);
        for _ in 0..40 {
            let (w, h) = (1 + next() % 300, 1 + next() % 300);
            sizes.push(((w, h), (1 + next() % w, 1 + next() % h)));
        }
        let mut checked = 0;
        for (src, dst) in sizes {
            if !shrinks_here(src, dst) {
                continue;
            }
            // Smooth regions and noise: rounding ties and the 255 clamp both occur.
            let pixels: Vec<u8> = (0..src.0 * src.1 * 3)
                .map(|i| {
                    if (i / 97) % 3 == 0 {
                        255
                    } else if (i / 61) % 2 == 0 {
                        (i % 7) as u8
                    } else {
                        next() as u8
                    }
                })
                .collect();
            assert_eq!(shrink_area(&pixels, src, dst), opencv_area(&pixels, src, dst), "{src:?} -> {dst:?}");
            checked += 1;
        }
        assert!(checked > 30, "{checked}");
        assert!(!shrinks_here((640, 480), (160, 120)), "whole factors are OpenCV's");
        assert!(!shrinks_here((100, 100), (120, 80)), "enlargements are OpenCV's");
    }
}
