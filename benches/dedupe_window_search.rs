//! The crop route's window search at growing set sizes: the window pHashes of N real crops (a
//! dedupe output's crops/ folder, 64x64), then every pair within the window radius found with 3 and
//! with 4 chunks (both exact: their pairs must agree), the time of each and the plan's choice, for
//! N = a quarter, a half and all of the crops. How the search time grows with N is what projects
//! it to LSUN's 3M.
//!
//! cargo run --release --example dedupe_window_search -- CROPS_DIR [RADIUS]

use std::path::PathBuf;
use std::time::Instant;

use dcgan_pipeline::data::npy::read_array;
use dcgan_pipeline::dedupe::usage::measure;
use dcgan_pipeline::dedupe::windows::{
    window_chunks, window_hashes, window_pairs_sampled, window_pairs_with, window_search_work, PER_IMAGE,
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect("usage: dedupe_window_search CROPS_DIR [RADIUS]"));
    let radius: u32 = args.get(2).map_or(Ok(10), |r| r.parse())?;
    let mut shards: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("images-")))
        .collect();
    shards.sort();
    let started = Instant::now();
    let mut hashes = Vec::new();
    for shard in &shards {
        let (shape, data) = read_array::<u8>(shard)?;
        hashes.extend(window_hashes(&data, shape[1] as u32));
    }
    let images = hashes.len() / PER_IMAGE;
    println!("{images} crops from {} shards: window pHashes in {:.1} s", shards.len(), started.elapsed().as_secs_f64());
    println!("| photos | pairs within {radius} | 4 chunks (work per image) | 3 chunks (work per image) | 3 / 4 | the plan picks |");
    println!("|---:|---:|---:|---:|---:|---:|");
    // The bound per image the stage uses (MAX_CANDIDATES, default 8; 0: every pair). Times are CPU
    // seconds (user + system, all threads): the machine may be shared.
    let bound = std::env::var("MAX_CANDIDATES").ok().and_then(|v| v.parse().ok()).unwrap_or(8usize);
    let bound = if bound == 0 { usize::MAX } else { bound };
    let sizes: Vec<usize> = match std::env::var("SIZES") {
        Ok(list) => list.split(',').filter_map(|v| v.parse().ok()).filter(|&n| n <= images).collect(),
        Err(_) => vec![images / 4, images / 2, images],
    };
    for n in sizes {
        let part = &hashes[..n * PER_IMAGE];
        let time = |chunks: usize| {
            let (pairs, usage) = measure(|| window_pairs_with(part, radius, chunks, bound));
            (pairs, usage.cpu_s)
        };
        let ((four, t4), (three, t3)) = (time(4), time(3));
        if bound == usize::MAX {
            assert_eq!(four, three, "3 and 4 chunks must find the same pairs");
        }
        let t = Instant::now();
        let pick = window_chunks(part, radius);
        let planned = t.elapsed().as_secs_f64();
        let work = |chunks: usize| {
            let (lookups, compared) = window_search_work(part, radius, chunks);
            format!("{lookups:.0} lookups, {compared:.0} compared")
        };
        println!(
            "| {n} | {} | {t4:.2} CPU s, {:.1} us an image ({}) | {t3:.2} CPU s, {:.1} us an image ({}) | {:.2} | {pick} (planned in {planned:.2} s) |",
            four.len(),
            1e6 * t4 / n as f64,
            work(4),
            1e6 * t3 / n as f64,
            work(3),
            t3 / t4
        );
        // The sampled search (the default): its time, and which of the exact search's pairs it finds.
        let tables: usize = std::env::var("TABLES").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
        // The least CPU time of REPEAT runs (3): the small sets take a fraction of a second, where a
        // busy moment of the machine shows.
        let repeat: usize = std::env::var("REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
        let runs: Vec<_> =
            (0..repeat.max(1)).map(|_| measure(|| window_pairs_sampled(part, radius, tables, bound))).collect();
        let usage = runs.iter().map(|r| r.1).min_by(|x, y| x.cpu_s.total_cmp(&y.cpu_s)).expect("one run");
        let sampled = runs.into_iter().next().expect("one run").0;
        let found: std::collections::HashSet<(u32, u32)> = sampled.iter().map(|p| (p.a, p.b)).collect();
        let by_distance: Vec<String> = (0..=radius)
            .filter_map(|d| {
                let at: Vec<_> = four.iter().filter(|p| p.distance == d).collect();
                let hit = at.iter().filter(|p| found.contains(&(p.a, p.b))).count();
                (!at.is_empty()).then(|| format!("{d}: {hit}/{}", at.len()))
            })
            .collect();
        println!(
            "|   sampled, {tables} tables | {} | {:.2} CPU s (least of {repeat}), {:.1} us an image | exact pairs found by distance: {} |",
            sampled.len(),
            usage.cpu_s,
            1e6 * usage.cpu_s / n as f64,
            by_distance.join(", ")
        );
    }
    Ok(())
}
