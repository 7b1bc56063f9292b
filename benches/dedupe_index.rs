//! Scale of the dedupe stage's search: N synthetic codes (default 1,000,000) grouped, indexed
//! and searched for every pair within the radius; time and peak memory printed. Then, on a
//! subset (default 100,000), the pairs the index finds against those of an exact brute-force scan.
//!
//! The codes imitate an autoencoder's: sign(W z + b) of a 32-dimensional Gaussian z through 128
//! random hyperplanes (so nearby images get nearby codes, as real codes have fewer degrees of
//! freedom than 128 independent bits); 10% of the items are near copies of an earlier one (z plus
//! a little noise: 0 to ~6 bits apart). 32 dimensions match the stage's codes of distinct photos:
//! unrelated synthetic codes lie 64 +- 9.2 bits apart, 5.6e-6 of them within 25 bits; the
//! centred autoencoder's codes of the evaluation's ImageNet test photos lie 61 +- 8.1 apart,
//! 4.0e-6 within 25 bits. (16 dimensions, used before, put 80 times too many within 25 bits.)
//!
//! cargo run --release --example dedupe_index_bench -- [N] [SUBSET] [RADIUS]
//! (SKIP_HNSW_FULL=1: no HNSW on all N codes; MIH_CHUNKS=m: multi-index hashing with m chunks)

use std::collections::HashSet;
use std::time::Instant;

use dcgan_pipeline::config::Config;
use dcgan_pipeline::dedupe::clusters::{cluster, exact_groups};
use dcgan_pipeline::dedupe::index::{
    brute_force_pairs, index_pairs, multi_index_pairs, multi_index_pairs_with, plan_chunks, IndexParams,
};
use dcgan_pipeline::dedupe::quality::labelled::Rng;
use dcgan_pipeline::dedupe::Code128;

const LATENT: usize = 32;

fn synthetic_codes(n: usize, seed: u64) -> Vec<Code128> {
    let mut rng = Rng::new(seed);
    let planes: Vec<[f64; LATENT]> = (0..128).map(|_| std::array::from_fn(|_| rng.normal())).collect();
    let offsets: Vec<f64> = (0..128).map(|_| 0.3 * rng.normal()).collect();
    let mut latents: Vec<[f64; LATENT]> = Vec::with_capacity(n);
    for i in 0..n {
        let z: [f64; LATENT] = if i > 0 && rng.chance(0.1) {
            let base = latents[(rng.next() % i as u64) as usize];
            let sigma = rng.uniform(0.0, 0.15);
            std::array::from_fn(|k| base[k] + sigma * rng.normal())
        } else {
            std::array::from_fn(|_| rng.normal())
        };
        latents.push(z);
    }
    latents
        .iter()
        .map(|z| {
            let bits: Vec<bool> = planes
                .iter()
                .zip(&offsets)
                .map(|(w, b)| w.iter().zip(z).map(|(a, x)| a * x).sum::<f64>() + b > 0.0)
                .collect();
            Code128::from_bits(&bits)
        })
        .collect()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Every pair of images within the radius, as the stage finds them: exact groups, then the
/// index over distinct codes, expanded back to images.
fn stage_pairs(codes: &[Code128], radius: u32, params: &IndexParams) -> HashSet<(u32, u32)> {
    let groups = exact_groups(codes);
    let distinct: Vec<Code128> = groups.iter().map(|g| codes[g[0] as usize]).collect();
    let mut found = HashSet::new();
    for g in &groups {
        for (x, &a) in g.iter().enumerate() {
            for &b in &g[x + 1..] {
                found.insert((a.min(b), a.max(b)));
            }
        }
    }
    for p in index_pairs(&distinct, radius, params) {
        for &a in &groups[p.a as usize] {
            for &b in &groups[p.b as usize] {
                found.insert((a.min(b), a.max(b)));
            }
        }
    }
    found
}

/// HNSW on all the codes, as the stage runs it with `search = "hnsw"`: its time, pairs and peak memory.
fn hnsw_on_all(codes: &[Code128], radius: u32, params: &IndexParams, rss_before: f64) {
    let n = codes.len();
    let t = Instant::now();
    let groups = exact_groups(codes);
    let t_groups = t.elapsed().as_secs_f64();
    let distinct: Vec<Code128> = groups.iter().map(|g| codes[g[0] as usize]).collect();
    let t2 = Instant::now();
    let near = index_pairs(&distinct, radius, params);
    let t_index = t2.elapsed().as_secs_f64();
    let clusters = cluster(n, &groups, &near, &|_, _| true);
    let total = t.elapsed().as_secs_f64();
    let removed = n - clusters.len();
    println!(
        "{n} codes: exact grouping {t_groups:.2} s ({} distinct), index build + search {t_index:.1} s ({} near pairs), clusters {:.2} s; total {total:.1} s; {removed} images would be removed",
        distinct.len(),
        near.len(),
        total - t_groups - t_index
    );
    println!("peak resident memory: {:.0} MiB (after generating the codes: {:.0} MiB)", peak_rss_mib(), rss_before);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let subset: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let config = Config::load(None, &[]).expect("embedded config").dedupe;
    let radius: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(config.radius);
    let params = config.index_params();
    println!(
        "dedupe index benchmark: {n} codes, radius {radius}, HNSW M={} ef_construction={} neighbours={} ef_search={}, {} threads",
        params.max_connections,
        params.ef_construction,
        params.neighbours,
        params.ef_search,
        rayon::current_num_threads()
    );
    let t = Instant::now();
    let codes = synthetic_codes(n, 1);
    println!("generated in {:.1} s (not counted)", t.elapsed().as_secs_f64());
    let rss_before = peak_rss_mib();

    // Exact search first (multi-index hashing), so its peak memory is read before HNSW's.
    let t = Instant::now();
    let groups = exact_groups(&codes);
    let distinct: Vec<Code128> = groups.iter().map(|g| codes[g[0] as usize]).collect();
    let mut plan = plan_chunks(&distinct, radius);
    // MIH_CHUNKS=m overrides the plan (to check the planner's choice).
    if let Some(m) = std::env::var("MIH_CHUNKS").ok().and_then(|v| v.parse().ok()) {
        plan.chunks = m;
    }
    println!(
        "multi-index plan: {} chunks, {:.0} bucket lookups and ~{:.0} candidates per code (planned in {:.1} s)",
        plan.chunks,
        plan.lookups,
        plan.candidates,
        t.elapsed().as_secs_f64()
    );
    let near_exact = multi_index_pairs_with(&distinct, radius, plan.chunks);
    let clusters_exact = cluster(n, &groups, &near_exact, &|_, _| true);
    println!(
        "{n} codes, multi-index hashing (exact): {} near pairs among {} distinct codes, {} images would be removed; {:.1} s in all; peak resident memory {:.0} MiB",
        near_exact.len(),
        distinct.len(),
        n - clusters_exact.len(),
        t.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    drop((groups, distinct, clusters_exact));
    if std::env::var_os("SKIP_HNSW_FULL").is_some() {
        println!("HNSW on all {n} codes skipped (SKIP_HNSW_FULL)");
    } else {
        hnsw_on_all(&codes, radius, &params, rss_before);
    }

    let part = &codes[..subset.min(n)];
    let t = Instant::now();
    let mih = multi_index_pairs(part, radius);
    println!("{} codes: multi-index hashing {} pairs in {:.1} s", part.len(), mih.len(), t.elapsed().as_secs_f64());
    let t = Instant::now();
    let exact = brute_force_pairs(part, radius);
    let t_brute = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let found = stage_pairs(part, radius, &params);
    let t_found = t.elapsed().as_secs_f64();
    let hits = exact.iter().filter(|p| found.contains(&(p.a, p.b))).count();
    println!(
        "{} codes: brute force {} pairs in {t_brute:.1} s; index {} pairs in {t_found:.1} s, of which {hits} are brute-force pairs: recall {:.4}",
        part.len(),
        exact.len(),
        found.len(),
        hits as f64 / exact.len().max(1) as f64
    );
}
