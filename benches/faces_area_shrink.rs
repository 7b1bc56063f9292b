//! The faces stage's INTER_AREA shrink (src/faces/area.rs) against OpenCV 4.6's `resize` on the
//! same pixels (one thread each, least of 30): the sizes of the dev photos' detection copies.
//!
//!     cargo run --profile test-release --example faces_area_shrink
//!
//! Every output is compared with OpenCV's, byte for byte.
use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
fn main() {
    // Noise with a fixed seed: the time does not depend on the pixels.
    use dcgan_pipeline::faces::area::shrink_area;
    opencv::core::set_num_threads(1).unwrap();
    let mut x = 12345u32;
    let base: Vec<u8> = (0..1024 * 1366 * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 256) as u8
        })
        .collect();
    for (src, dst) in [((1024u32, 768u32), (640u32, 480u32)), ((1024, 1366), (640, 854)), ((1024, 768), (1000, 700))] {
        let px2 = &base[..(src.0 * src.1 * 3) as usize];
        let (mut best, mut bcv) = (f64::MAX, f64::MAX);
        let flat = Mat::new_rows_cols_with_data(src.1 as i32, (src.0 * 3) as i32, px2).unwrap();
        let img = flat.reshape(3, src.1 as i32).unwrap();
        for _ in 0..30 {
            let t = std::time::Instant::now();
            let out = shrink_area(px2, src, dst);
            best = best.min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            let mut o = Mat::default();
            imgproc::resize(&img, &mut o, Size::new(dst.0 as i32, dst.1 as i32), 0.0, 0.0, imgproc::INTER_AREA)
                .unwrap();
            bcv = bcv.min(t.elapsed().as_secs_f64());
            assert_eq!(out, o.data_bytes().unwrap());
        }
        println!("{src:?} -> {dst:?}: ours {:.3} ms, OpenCV 4.6 {:.3} ms, {:.2}x", best * 1e3, bcv * 1e3, bcv / best);
    }
}
