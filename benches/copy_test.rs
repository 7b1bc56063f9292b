//! Scale of the data-copying test: SAMPLES "generated" images against a packed set's training
//! images (Tiny ImageNet's 100,000 32x32 crops: `crop` first), exact nearest neighbours in pixel
//! space and C_T, with wall time, CPU time and peak memory printed. The last HELD_OUT images of the
//! set are the held-out real images; the samples replay training images with +-3 noise (a copying
//! generator, so C_T must come out strongly negative). The samples and their neighbours are written
//! to OUT for benches/copy_test_reference.py (NumPy brute force on the same images).
//!
//! cargo run --release --example copy_test_bench -- PACKED_DIR OUT [SAMPLES] [HELD_OUT]

use std::path::PathBuf;
use std::time::Instant;

use dcgan_pipeline::data::npy::write_array;
use dcgan_pipeline::data::packed::read_packed;
use dcgan_pipeline::neighbours::{copy_test, nearest, CopyTestSettings, Images, PixelRows};
use dcgan_pipeline::rng::SplitMix;

/// User and system CPU seconds of this process so far (/proc/self/stat, clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory (VmHWM) in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: copy_test_bench PACKED_DIR OUT [SAMPLES] [HELD_OUT]");
        std::process::exit(2);
    }
    let (input, out) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let samples: usize = args.get(3).map_or(10_000, |s| s.parse().expect("SAMPLES"));
    let held_n: usize = args.get(4).map_or(5_000, |s| s.parse().expect("HELD_OUT"));
    std::fs::create_dir_all(&out).unwrap();

    let set = read_packed(&input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    let (side, dims) = (set.width, (set.width * set.height * 3) as usize);
    let n = set.len();
    let training = &set.images[..(n - held_n) * dims];
    let held = &set.images[(n - held_n) * dims..];
    let mut rng = SplitMix::new(7);
    let mut generated = Vec::with_capacity(samples * dims);
    for _ in 0..samples {
        let i = (rng.next() % (n - held_n) as u64) as usize;
        generated.extend(
            training[i * dims..(i + 1) * dims]
                .iter()
                .map(|&v| (v as i32 + (rng.next() % 7) as i32 - 3).clamp(0, 255) as u8),
        );
    }
    println!("{n} images {side}x{side}: {} training, {held_n} held out; {samples} samples", n - held_n);
    println!("threads: libtorch {}, rayon {}", tch::get_num_threads(), rayon::current_num_threads());

    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let nn = nearest(
        PixelRows::new("training", training, dims).unwrap(),
        PixelRows::new("samples", &generated, dims).unwrap(),
        1,
    )
    .unwrap();
    let (nn_wall, nn_cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!("nearest neighbours of the samples: wall {nn_wall:.1} s, CPU {nn_cpu:.1} s");

    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let test = copy_test(
        Images { pixels: training, side },
        Images { pixels: held, side },
        Images { pixels: &generated, side },
        &CopyTestSettings::default(),
    )
    .unwrap();
    let (t_wall, t_cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!(
        "copy test (neighbours of samples and held-out, k-means, C_T, pHash): wall {t_wall:.1} s, CPU {t_cpu:.1} s \
         (neighbours {:.1} s, cells {:.1} s, pHash {:.1} s)",
        test.timings_s.neighbours, test.timings_s.cells, test.timings_s.phash
    );
    println!(
        "C_T = {:?} ({} cells of {} used), near duplicates {:.3}, held-out {:.3}; peak memory {:.0} MiB",
        test.c_t,
        test.cells_used,
        test.cells.len(),
        test.near_duplicate_share,
        test.held_out_near_duplicate_share,
        peak_mib()
    );
    write_array(&out.join("samples.npy"), &[samples as u64, set.height as u64, side as u64, 3], &generated).unwrap();
    let index: Vec<i64> = nn.index.iter().map(|&i| i as i64).collect();
    write_array(&out.join("nearest.npy"), &[samples as u64], &index).unwrap();
    let ssd: Vec<i64> = nn.ssd.iter().map(|&d| d as i64).collect();
    write_array(&out.join("ssd.npy"), &[samples as u64], &ssd).unwrap();
    let figures = serde_json::json!({
        "images": n, "training": n - held_n, "held_out": held_n, "samples": samples,
        "nearest_wall_s": nn_wall, "nearest_cpu_s": nn_cpu, "copy_test_wall_s": t_wall, "copy_test_cpu_s": t_cpu,
        "peak_mib": peak_mib(), "c_t": test.c_t, "cells_used": test.cells_used,
        "near_duplicate_share": test.near_duplicate_share,
    });
    std::fs::write(out.join("rust.json"), serde_json::to_vec_pretty(&figures).unwrap()).unwrap();
}
