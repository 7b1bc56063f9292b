//! The crop route's check on real candidates: for every window pair of N real crops (a dedupe
//! output's crops/ folder, 64x64, with its manifest), the first look's correlation (the proposed
//! alignments only) beside the full search's, split by whether the two are one photo (names
//! `<photo>#copy<c>-<kind>.jpg`, as `dedupe --eval-scale --write-set` writes them), and the CPU time
//! of each. It shows how much of the check the pairs of two photos cost, and at which first-look
//! correlation the full search can start without losing a copy that passes the floor.
//!
//! cargo run --release --example dedupe_check_profile -- CROPS_DIR [RADIUS]   (env: FLOOR, MAX_CANDIDATES)

use std::path::PathBuf;

use dcgan_pipeline::data::npy::read_array;
use dcgan_pipeline::dedupe::autoencoder::downsample_to_input;
use dcgan_pipeline::dedupe::usage::measure;
use dcgan_pipeline::dedupe::windows::{
    aligned_correlation, coarse_first_look, first_look, grey_thumbnail, proposed_alignments, window_hashes,
    window_pairs, Window, WindowPair,
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
