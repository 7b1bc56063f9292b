//! The dedupe stage's steps after decoding at 1M and 3M images, on synthetic hashes: wall time,
//! CPU time (user + system, all threads) and peak resident memory of each step, per image.
//!
//! Each image gets a latent z (32-dimensional Gaussian; 10% of the images are near copies of an
//! earlier one: z plus a little noise). Its 128-bit code is sign(W z + b) through 128 random
//! planes (as benches/dedupe_index.rs: distinct codes 64 +- 9 bits apart, like the stage's); its
//! whole-crop pHash bit k the sign of plane k over the first `PHASH_LATENT` (12) dimensions of z
//! plus `PHASH_NOISE` (4.1) times a value of the photo's own for bit k, its 11 window pHashes the
//! same with the latent moved a little per window. Planes alone make pHashes far more crowded than
//! real ones (latent 12: ~7 pairs of two photos within the window radius an image at 100,000, the
//! bound of 8 reached; latent 32 still ~4); the per-bit values spread them towards uniform hashes.
//! Calibrated at 100,000 images against Tiny ImageNet's real window pHashes (~31,500 pairs of two
//! photos within 10 bits at 100,000, 0.31 an image; the 4-chunk search compared ~13,900 hashes an
//! image): noise 4.1 gives 0.29 pairs of two photos an image and ~14,400 hashes compared
//! (noise 4.0: 0.34; 4.2: 0.25). `CALIBRATE=1` runs the window search only, for this. The grey thumbnails
//! (1 KiB, on disk as the stage keeps them) are noise per photo, shared by its copies (plus noise):
//! a copy correlates ~1, two photos ~0, so the check's two paths are both taken.
//!
//! The codes step itself (autoencoder forward, pHash and window pHashes of 64x64 crops) does the
//! same work for every image, independent of the others; it is timed on `CODES_SAMPLE` (20,000)
//! random crops with an untrained autoencoder and scaled per image.
//!
//! The code pairs and the window pairs are searched as the stage's configuration says (the default:
//! sampled bits); `--set dedupe.search=exact --set dedupe.window_search=exact` after the arguments
//! measures the exact searches instead (any `--set` the stage takes).
//!
//! cargo run --release --example dedupe_scale_synthetic -- [N] [OUT_DIR] [--set KEY=VALUE ...]
//! (env: PHASH_LATENT, PHASH_NOISE, CALIBRATE, CODES_SAMPLE, MAX_CANDIDATES, CHECK_BATCH)

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use dcgan_pipeline::dedupe::autoencoder::{downsample_to_input, Autoencoder};
use dcgan_pipeline::dedupe::clusters::{clusters_by, exact_groups, Cluster, ClusterRule};
use dcgan_pipeline::dedupe::index::NearPair;
use dcgan_pipeline::dedupe::phash::phash_crops;
use dcgan_pipeline::dedupe::quality::labelled::Rng;
use dcgan_pipeline::dedupe::thumbnails::{ThumbnailFile, ThumbnailWriter, THUMBNAIL_BYTES};
use dcgan_pipeline::dedupe::usage::{measure, StepUsage};
use dcgan_pipeline::dedupe::windows::{
    window_chunks, window_correlations, window_hashes, window_search_work, WindowPair, PER_IMAGE,
};
use dcgan_pipeline::dedupe::{Code128, Threshold};

const LATENT: usize = 32;
/// The latent and, after it, one independent value per pHash bit (`PHASH_NOISE` scales them).
const DIMS: usize = LATENT + 64;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Per image: its latent and the photo it copies (itself when not a copy).
fn latents(n: usize, seed: u64) -> (Vec<[f32; DIMS]>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let mut z: Vec<[f32; DIMS]> = Vec::with_capacity(n);
    let mut photo = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 && rng.chance(0.1) {
            let base = (rng.next() % i as u64) as usize;
            let sigma = rng.uniform(0.0, 0.1) as f32;
            let b = z[base];
            z.push(std::array::from_fn(|k| b[k] + sigma * rng.normal() as f32));
            photo.push(photo[base]);
        } else {
            z.push(std::array::from_fn(|_| rng.normal() as f32));
            photo.push(i as u32);
        }
    }
    (z, photo)
}

fn planes(count: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| (0..dims).map(|_| rng.normal() as f32).collect()).collect()
}

fn signs(planes: &[Vec<f32>], z: &[f32]) -> u128 {
    planes.iter().enumerate().fold(0u128, |bits, (k, w)| {
        let dot: f32 = w.iter().zip(z).map(|(a, b)| a * b).sum();
        bits | (u128::from(dot > 0.0) << k)
    })
}

struct Synthetic {
    codes: Vec<Code128>,
    phash: Vec<u64>,
    windows: Vec<u64>,
    photo: Vec<u32>,
}

/// A pHash: bit k the sign of plane k over the first dimensions of the latent plus `noise` times the
/// photo's own value for bit k (0: bits as correlated as the planes make them, crowded; large:
/// independent bits, uniform hashes).
fn phash_bits(planes: &[Vec<f32>], latent: &[f32], own: &[f32], noise: f32) -> u64 {
    planes.iter().zip(own).enumerate().fold(0u64, |bits, (k, (w, e))| {
        let dot: f32 = w.iter().zip(latent).map(|(a, b)| a * b).sum::<f32>() + noise * e;
        bits | (u64::from(dot > 0.0) << k)
    })
}

fn synthesize(n: usize, phash_latent: usize, noise: f32) -> Synthetic {
    let (z, photo) = latents(n, 1);
    let code_planes = planes(128, LATENT, 2);
    let phash_planes = planes(64, phash_latent, 3);
    let codes = z
        .par_iter()
        .map(|z| {
            let bits = signs(&code_planes, z);
            Code128([bits as u64, (bits >> 64) as u64])
        })
        .collect();
    let windows: Vec<u64> = z
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, z)| {
            let mut rng = Rng::new(1000 + i as u64);
            let (latent, own) = (&z[..phash_latent], &z[LATENT..]);
            let mut hashes = vec![phash_bits(&phash_planes, latent, own, noise)];
            for _ in 1..PER_IMAGE {
                let moved: Vec<f32> = latent.iter().map(|v| v + 0.25 * rng.normal() as f32).collect();
                hashes.push(phash_bits(&phash_planes, &moved, own, noise));
            }
            hashes
        })
        .collect();
    let phash = windows.iter().step_by(PER_IMAGE).copied().collect();
    Synthetic { codes, phash, windows, photo }
}

/// Per photo a noise thumbnail; a copy gets its photo's plus a little noise.
fn thumbnail(photo: u32, image: u32) -> Vec<u8> {
    let mut rng = Rng::new(u64::from(photo) * 7919 + 17);
    let mut own = Rng::new(u64::from(image) * 104_729 + 3);
    (0..THUMBNAIL_BYTES)
        .map(|_| ((rng.next() % 200) as f64 + 40.0 + 4.0 * own.normal()).clamp(0.0, 255.0) as u8)
        .collect()
}

fn row(step: &str, n: usize, u: &StepUsage) {
    println!(
        "| {step} | {:.1} | {:.1} | {:.2} | {} |",
        u.wall_s,
        u.cpu_s,
        1e6 * u.cpu_s / n as f64,
        u.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}"))
    );
}

/// The codes step's work on `sample` random 64x64 crops, per image.
fn codes_step(sample: usize) -> StepUsage {
    let model = Autoencoder::new(tch::Device::Cpu, true);
    let mut rng = Rng::new(9);
    let crops: Vec<u8> = (0..sample * 64 * 64 * 3).map(|_| (rng.next() & 0xff) as u8).collect();
    let ((), usage) = measure(|| {
        for part in crops.chunks(8192 * 64 * 64 * 3) {
            let codes = model.codes(&downsample_to_input(part, 64), Threshold::Zero);
            let (p, w) = (phash_crops(part, 64), window_hashes(part, 64));
            assert_eq!((codes.len() * PER_IMAGE, p.len() * PER_IMAGE), (w.len(), w.len()));
        }
    });
    usage
}

/// Only the window search's candidates, to match `PHASH_LATENT` and `PHASH_NOISE` to the real rate.
fn calibrate(set: &Synthetic, window_radius: u32, config: &dcgan_pipeline::dedupe::DedupeConfig, model: &str) {
    let n = set.photo.len();
    let (pairs, search) = measure(|| config.window_pairs(&set.windows, window_radius));
    let distinct = pairs.iter().filter(|p| set.photo[p.a as usize] != set.photo[p.b as usize]).count();
    println!(
        "{n} images, {model}: {} window pairs ({:.3} an image), {distinct} of two photos ({:.3} an image); search {:.1} CPU s",
        pairs.len(),
        pairs.len() as f64 / n as f64,
        distinct as f64 / n as f64,
        search.cpu_s
    );
}

/// Every image's thumbnail written to `path`, as the codes step keeps them.
fn write_thumbnails(set: &Synthetic, path: &Path) -> anyhow::Result<ThumbnailFile> {
    let n = set.photo.len();
    let mut writer = ThumbnailWriter::create(path)?;
    for block in (0..n as u32).collect::<Vec<_>>().chunks(65536) {
        let bytes: Vec<u8> = block.par_iter().flat_map_iter(|&i| thumbnail(set.photo[i as usize], i)).collect();
        writer.push(&bytes)?;
    }
    Ok(writer.finish()?)
}

/// The clusters as the stage forms them (around keepers): code pairs, and window pairs between
/// distinct codes, each removal passing the code-and-pHash check or the window correlation.
fn cluster_all(
    set: &Synthetic,
    (groups, near): (&[Vec<u32>], &[NearPair]),
    pairs: &[WindowPair],
    correlation: &HashMap<(u32, u32), f32>,
    (radius, phash_radius, floor): (u32, u32, f32),
) -> Vec<Cluster> {
    let n = set.photo.len();
    let mut group_of = vec![0u32; n];
    for (g, members) in groups.iter().enumerate() {
        for &m in members {
            group_of[m as usize] = g as u32;
        }
    }
    let mut all: Vec<NearPair> = near.to_vec();
    all.extend(pairs.iter().filter_map(|p| {
        let (a, b) = (group_of[p.a as usize], group_of[p.b as usize]);
        (a != b).then(|| NearPair { a: a.min(b), b: a.max(b), distance: 0 })
    }));
    all.sort_unstable_by_key(|p| (p.a, p.b));
    all.dedup_by_key(|p| (p.a, p.b));
    let by_window: HashMap<(u32, u32), bool> = correlation.iter().map(|(&k, &c)| (k, c >= floor)).collect();
    let same = |a: u32, b: u32| {
        let by_code = set.codes[a as usize].hamming(&set.codes[b as usize]) <= radius
            && (set.phash[a as usize] ^ set.phash[b as usize]).count_ones() <= phash_radius;
        by_code || by_window.get(&(a.min(b), a.max(b))).copied().unwrap_or(false)
    };
    let pixels = vec![1u64; n];
    clusters_by(ClusterRule::AroundKeeper, n, groups, &all, &pixels, &same)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(Ok(1_000_000), |a| a.parse())?;
    let out = PathBuf::from(args.get(2).map_or("out/dedupe-synthetic", String::as_str));
    let sets: Vec<String> = args.iter().skip(3).filter(|a| a.as_str() != "--set").cloned().collect();
    let mut config = dcgan_pipeline::config::Config::load(None, &sets)?.dedupe;
    std::fs::create_dir_all(&out)?;
    let (phash_latent, sample) = (env_or("PHASH_LATENT", 12usize), env_or("CODES_SAMPLE", 20_000usize));
    let phash_noise = env_or("PHASH_NOISE", 4.1f32);
    assert!(phash_latent <= LATENT, "PHASH_LATENT is at most {LATENT}");
    let (max_candidates, batch) = (env_or("MAX_CANDIDATES", 8usize), env_or("CHECK_BATCH", 200_000usize));
    config.window_max_candidates = max_candidates;
    eprintln!("code pairs: {:?}, window pairs: {:?}", config.search, config.window_search);
    let (radius, phash_radius, window_radius, floor) = (14u32, 8u32, 10u32, 0.96f32);
    eprintln!("{n} images, pHash latent {phash_latent}, noise {phash_noise}, at most {max_candidates} window candidates an image");
    let set = synthesize(n, phash_latent, phash_noise);
    let chunks = window_chunks(&set.windows, window_radius);
    let (lookups, compared) = window_search_work(&set.windows, window_radius, chunks);
    eprintln!("window search: {chunks} chunks, {lookups:.0} lookups and {compared:.0} hashes compared an image");
    if std::env::var("CALIBRATE").is_ok() {
        calibrate(&set, window_radius, &config, &format!("pHash latent {phash_latent}, noise {phash_noise}"));
        return Ok(());
    }
    let thumbs_path = out.join("scratch-thumbnails.u8");
    let (thumbs, write) = measure(|| write_thumbnails(&set, &thumbs_path));
    let thumbs = thumbs?;
    let codes = codes_step(sample);
    let ((groups, near), index) = measure(|| {
        let groups = exact_groups(&set.codes);
        let distinct: Vec<Code128> = groups.iter().map(|g| set.codes[g[0] as usize]).collect();
        let near = config.code_pairs(&distinct, radius);
        (groups, near)
    });
    let (pairs, search) = measure(|| config.window_pairs(&set.windows, window_radius));
    let (correlation, check) =
        measure(|| window_correlations(&pairs, &set.windows, window_radius, batch, &|ids| thumbs.read(ids)));
    let correlation = correlation?;
    let (clusters, cluster_usage) =
        measure(|| cluster_all(&set, (&groups, &near), &pairs, &correlation, (radius, phash_radius, floor)));
    thumbs.remove()?;
    let removed = n - clusters.len();
    let copies = set.photo.iter().enumerate().filter(|&(i, &p)| p != i as u32).count();
    let passing = correlation.values().filter(|&&c| c >= floor).count();
    let distinct = pairs.iter().filter(|p| set.photo[p.a as usize] != set.photo[p.b as usize]).count();
    println!(
        "{n} images ({copies} near copies planted), {} distinct codes, {} code pairs within {radius}, {} window pairs ({:.3} an image, {distinct} of two photos: {:.3} an image; {passing} correlate >= {floor}), {removed} removed",
        groups.len(),
        near.len(),
        pairs.len(),
        pairs.len() as f64 / n as f64,
        distinct as f64 / n as f64
    );
    println!("| step | wall s | CPU s | CPU us an image | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| codes ({sample} random crops; per image x {n}: {:.0} CPU s) | {:.1} | {:.1} | {:.2} | {} |",
        codes.cpu_s * n as f64 / sample as f64,
        codes.wall_s,
        codes.cpu_s,
        1e6 * codes.cpu_s / sample as f64,
        codes.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}"))
    );
    row("thumbnails to disk (the codes step's share)", n, &write);
    row("index (exact groups, code pairs)", n, &index);
    row("window search", n, &search);
    row("check", n, &check);
    row("clusters", n, &cluster_usage);
    let after = index.cpu_s + search.cpu_s + check.cpu_s + cluster_usage.cpu_s;
    let wall = index.wall_s + search.wall_s + check.wall_s + cluster_usage.wall_s;
    println!("index to clusters: {wall:.0} s wall, {after:.0} CPU s");
    Ok(())
}
