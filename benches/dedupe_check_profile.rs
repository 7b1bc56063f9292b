//! The crop route's check on real candidates: for every window pair of N real crops (a dedupe
//! output's crops/ folder, 64x64, with its manifest), the first look's correlation (the proposed
//! alignments only) beside the full search's, split by whether the two are one photo (names
//! `<photo>#copy<c>-<kind>.jpg`, as `dedupe --eval-scale --write-set` writes them), and the CPU time
//! of each. It shows how much of the check the pairs of two photos cost, and at which first-look
//! correlation the full search can start without losing a copy that passes the floor.
//!
//! With STAGE_SIZES=26000,52000,... it instead runs the check as the stage does (sampled window pairs,
//! thumbnails read from a scratch file) on random subsets of whole photos (an original with its
//! copies) of those sizes, and prints its CPU time an image: the check's growth without the rest of
//! the run's noise.
//!
//! With MICRO=N it times the ranking and the coarse first look on one thread (the least of N runs)
//! and prints checksums of their values, to show that a faster version gives the same numbers.
//!
//! cargo run --release --example dedupe_check_profile -- CROPS_DIR [RADIUS]   (env: FLOOR, MAX_CANDIDATES, STAGE_SIZES, REPEAT, MICRO)

use std::path::PathBuf;

use dcgan_pipeline::data::npy::read_array;
use dcgan_pipeline::dedupe::autoencoder::downsample_to_input;
use dcgan_pipeline::dedupe::usage::measure;
use dcgan_pipeline::dedupe::windows::{
    aligned_correlation, coarse_first_look, first_look, grey_thumbnail, proposed_alignments, ranked_best,
    window_hashes, window_pairs, Window, WindowPair, RANK_FROM, SEARCH_FROM,
};
use rayon::prelude::*;

/// A first look: two thumbnails and the proposed alignments to their best correlation.
type Look = fn(&[u8], &[u8], &[(Window, Window)]) -> f32;

fn photo_of(name: &str) -> &str {
    name.split("#copy").next().unwrap_or(name)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect("usage: dedupe_check_profile CROPS_DIR [RADIUS]"));
    let radius: u32 = args.get(2).map_or(Ok(10), |r| r.parse())?;
    let floor: f32 = std::env::var("FLOOR").ok().and_then(|v| v.parse().ok()).unwrap_or(0.96);
    let mut sources: Vec<(u64, String)> = Vec::new();
    for line in std::fs::read_to_string(dir.join("manifest.jsonl"))?.lines() {
        let row: serde_json::Value = serde_json::from_str(line)?;
        if let (Some(i), Some(s)) = (row["index"].as_u64(), row["source"].as_str()) {
            sources.push((i, s.to_owned()));
        }
    }
    sources.sort();
    let mut shards: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("images-")))
        .collect();
    shards.sort();
    let (mut hashes, mut thumbs) = (Vec::new(), Vec::new());
    for shard in &shards {
        let (shape, data) = read_array::<u8>(shard)?;
        hashes.extend(window_hashes(&data, shape[1] as u32));
        let inputs = downsample_to_input(&data, shape[1] as usize);
        thumbs.extend(inputs.par_chunks_exact(32 * 32 * 3).map(grey_thumbnail).collect::<Vec<_>>());
    }
    let images = thumbs.len();
    assert_eq!(images, sources.len(), "one manifest row per crop");
    if let Ok(sizes) = std::env::var("STAGE_SIZES") {
        return stage_check_by_size(&sizes, &hashes, &thumbs, &sources, radius);
    }
    let bound = std::env::var("MAX_CANDIDATES").ok().and_then(|v| v.parse().ok()).unwrap_or(8usize);
    let pairs = window_pairs(&hashes, radius, bound);
    let same: Vec<bool> =
        pairs.iter().map(|p| photo_of(&sources[p.a as usize].1) == photo_of(&sources[p.b as usize].1)).collect();
    // A first look (fine or coarse grid) at every pair's proposed alignments.
    let look = |f: Look| {
        measure(|| {
            pairs
                .par_iter()
                .map(|p| {
                    f(&thumbs[p.a as usize], &thumbs[p.b as usize], &proposed_alignments(&hashes, p.a, p.b, radius))
                })
                .collect::<Vec<f32>>()
        })
    };
    let (quick, quick_usage) = look(first_look);
    let (coarse, coarse_usage) = look(coarse_first_look);
    println!("coarse first look: {:.2} us CPU a pair", 1e6 * coarse_usage.cpu_s / pairs.len() as f64);
    if let Ok(reps) = std::env::var("MICRO") {
        micro(&pairs, &hashes, &thumbs, &coarse, radius, reps.parse().unwrap_or(7));
        return Ok(());
    }
    let (full, full_usage) = measure(|| {
        pairs
            .par_iter()
            .map(|p| aligned_correlation(&thumbs[p.a as usize], &thumbs[p.b as usize]))
            .collect::<Vec<f32>>()
    });
    let n_true = same.iter().filter(|&&s| s).count();
    println!(
        "{images} crops, {} window pairs within {radius} ({n_true} of one photo, {:.3} an image)",
        pairs.len(),
        pairs.len() as f64 / images as f64
    );
    println!(
        "first look: {:.2} us CPU a pair; full search: {:.1} us CPU a pair",
        1e6 * quick_usage.cpu_s / pairs.len() as f64,
        1e6 * full_usage.cpu_s / pairs.len() as f64
    );
    print_where_to_search(&pairs, &same, [&quick, &coarse, &full], radius, floor);
    print_where_to_stop_ranking(&pairs, &same, &thumbs, [&quick, &coarse, &full], floor);
    Ok(())
}

/// Which pairs the search would pass, and by where it starts (a fine or a coarse first look, under
/// the radius and at it): the pairs of two photos searched and the copies it would pass, lost.
fn print_where_to_search(
    pairs: &[WindowPair],
    same: &[bool],
    [quick, coarse, full]: [&[f32]; 3],
    radius: u32,
    floor: f32,
) {
    let passing = |one: bool| (0..pairs.len()).filter(|&k| same[k] == one && full[k].max(quick[k]) >= floor).count();
    println!("full search passes {floor}: {} pairs of one photo, {} of two", passing(true), passing(false));
    println!("| search from (first look >=) | pairs of two photos searched | pairs of one photo passing {floor} with the full search, lost |");
    println!("|---:|---:|---:|");
    for (name, look) in [("fine", quick), ("coarse", coarse)] {
        for at10 in [false, true] {
            println!("{name} first look, pairs at {}:", if at10 { "the radius" } else { "under the radius" });
            let on = |k: usize| (pairs[k].distance == radius) == at10;
            for from in [0.5f32, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9] {
                let searched = (0..pairs.len()).filter(|&k| on(k) && !same[k] && look[k] >= from).count();
                let lost = (0..pairs.len())
                    .filter(|&k| on(k) && same[k] && full[k].max(quick[k]) >= floor && look[k] < from)
                    .count();
                println!("| {from} | {searched} | {lost} |");
            }
        }
    }
}

/// Where the full search can stop after ranking ([`RANK_FROM`]): of the pairs searched (a coarse
/// first look of at least [`SEARCH_FROM`]), those ranking below each bound, and the pairs passing
/// the floor that such a stop would lose.
fn print_where_to_stop_ranking(
    pairs: &[WindowPair],
    same: &[bool],
    thumbs: &[Vec<u8>],
    [quick, coarse, full]: [&[f32]; 3],
    floor: f32,
) {
    let searched: Vec<usize> = (0..pairs.len()).filter(|&k| coarse[k] >= SEARCH_FROM).collect();
    let (rank, usage) = measure(|| {
        searched
            .par_iter()
            .map(|&k| ranked_best(&thumbs[pairs[k].a as usize], &thumbs[pairs[k].b as usize]))
            .collect::<Vec<f32>>()
    });
    println!(
        "ranking alone: {:.1} us CPU a searched pair; the check stops ranking below RANK_FROM = {RANK_FROM}",
        1e6 * usage.cpu_s / searched.len().max(1) as f64
    );
    let two = searched.iter().filter(|&&k| !same[k]).count();
    println!("| stop below (ranking) | of {two} searched pairs of two photos, stopped | pairs of one photo passing {floor}, lost | of two photos, lost |");
    println!("|---:|---:|---:|---:|");
    for from in [0.8f32, 0.84, 0.86, 0.88, 0.9, 0.92] {
        let stopped = |one: bool| searched.iter().zip(&rank).filter(move |(&k, &r)| same[k] == one && r < from);
        let lost = |one: bool| stopped(one).filter(|(&k, _)| full[k].max(quick[k]) >= floor).count();
        println!("| {from} | {} | {} | {} |", stopped(false).count(), lost(true), lost(false));
    }
}

/// One-thread timings (the least of `reps`) of the ranking on 8,000 searched pairs and of the
/// coarse first look on 20,000 pairs, each with a checksum of the values' bits: an optimisation that
/// keeps the checksums changes no result.
fn micro(pairs: &[WindowPair], hashes: &[u64], thumbs: &[Vec<u8>], coarse: &[f32], radius: u32, reps: usize) {
    let checksum = |values: &mut dyn Iterator<Item = f32>| {
        values.fold(0u64, |h, v| h.wrapping_mul(1_099_511_628_211).wrapping_add(u64::from(v.to_bits())))
    };
    let time = |keys: &[usize], f: &dyn Fn(usize) -> f32| {
        (0..reps.max(1))
            .map(|_| {
                let start = std::time::Instant::now();
                std::hint::black_box(keys.iter().map(|&k| f(k)).sum::<f32>());
                1e6 * start.elapsed().as_secs_f64() / keys.len().max(1) as f64
            })
            .fold(f64::INFINITY, f64::min)
    };
    let (a, b) = (|k: usize| &thumbs[pairs[k].a as usize][..], |k: usize| &thumbs[pairs[k].b as usize][..]);
    let searched: Vec<usize> = (0..pairs.len()).filter(|&k| coarse[k] >= SEARCH_FROM).take(8000).collect();
    let rank = |k: usize| ranked_best(a(k), b(k));
    let sum = checksum(&mut searched.iter().map(|&k| rank(k)));
    println!("micro: ranking {:.2} us a pair (checksum {sum:016x})", time(&searched, &rank));
    let full = checksum(&mut searched.iter().take(3000).map(|&k| aligned_correlation(a(k), b(k))));
    println!("micro: full search checksum {full:016x} (3,000 pairs)");
    let all: Vec<usize> = (0..pairs.len().min(20_000)).collect();
    let look = |k: usize| coarse_first_look(a(k), b(k), &proposed_alignments(hashes, pairs[k].a, pairs[k].b, radius));
    let sum = checksum(&mut all.iter().map(|&k| look(k)));
    println!("micro: coarse first look {:.2} us a pair (checksum {sum:016x})", time(&all, &look));
}

/// The check as the stage runs it (sampled window pairs, thumbnails read from a scratch file a
/// batch at a time, `window_correlations`) on prefixes of the crops: CPU us an image and a pair,
/// the least of REPEAT runs.
fn stage_check_by_size(
    sizes: &str,
    hashes: &[u64],
    thumbs: &[Vec<u8>],
    sources: &[(u64, String)],
    radius: u32,
) -> anyhow::Result<()> {
    use dcgan_pipeline::dedupe::thumbnails::ThumbnailWriter;
    use dcgan_pipeline::dedupe::windows::{window_correlations, window_pairs_sampled, PER_IMAGE};
    let repeat: usize = std::env::var("REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir()?;
    println!("| images | pairs an image | of one photo an image | check CPU us an image | us a pair |");
    println!("|---:|---:|---:|---:|---:|");
    // Whole photos (an original with its copies) in a fixed random order, so that every size has
    // the same share of copies.
    let mut groups: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (k, (_, s)) in sources.iter().enumerate() {
        groups.entry(photo_of(s)).or_default().push(k);
    }
    let mut order: Vec<Vec<usize>> = groups.into_values().collect();
    let mut state = 0x9e3779b97f4a7c15u64;
    for k in (1..order.len()).rev() {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        order.swap(k, (state >> 33) as usize % (k + 1));
    }
    for n in sizes.split(',').map(|s| s.trim().parse::<usize>()) {
        let n = n?.min(thumbs.len());
        let mut chosen: Vec<usize> = order.iter().flatten().copied().take(n).collect();
        chosen.sort_unstable();
        let prefix: Vec<u64> =
            chosen.iter().flat_map(|&k| hashes[k * PER_IMAGE..(k + 1) * PER_IMAGE].iter().copied()).collect();
        let prefix = &prefix[..];
        let pairs = window_pairs_sampled(prefix, radius, 16, 8);
        let name = |i: u32| photo_of(&sources[chosen[i as usize]].1);
        let one = pairs.iter().filter(|p| name(p.a) == name(p.b)).count();
        let path = dir.path().join(format!("thumbs-{n}.u8"));
        let mut writer = ThumbnailWriter::create(&path)?;
        for &k in &chosen {
            writer.push(&thumbs[k])?;
        }
        let file = writer.finish()?;
        let mut best = f64::INFINITY;
        for _ in 0..repeat {
            let (result, usage) =
                measure(|| window_correlations(&pairs, prefix, radius, 200_000, &|ids| file.read(ids)));
            result?;
            best = best.min(usage.cpu_s);
        }
        println!(
            "| {n} | {:.3} | {:.4} | {:.2} | {:.2} |",
            pairs.len() as f64 / n as f64,
            one as f64 / n as f64,
            1e6 * best / n as f64,
            1e6 * best / pairs.len().max(1) as f64
        );
        file.remove()?;
    }
    Ok(())
}
