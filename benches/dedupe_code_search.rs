//! The code route's search at growing set sizes, on real codes: a dedupe output's codes.npy
//! (uint64, N x 2), prefixes of it grouped (exact collisions) and searched for the pairs within the
//! radius by sampled bits (the default) and by multi-index hashing (exact); CPU time per code of
//! each, and the exact pairs the sampled search finds. The window pairs' counterpart is
//! dedupe_window_search.
//!
//! cargo run --release --example dedupe_code_search -- CODES_NPY [RADIUS]   (env: SIZES, TABLES)

use dcgan_pipeline::data::npy::read_array;
use dcgan_pipeline::dedupe::clusters::exact_groups;
use dcgan_pipeline::dedupe::index::multi_index_pairs;
use dcgan_pipeline::dedupe::sampled::code_pairs;
use dcgan_pipeline::dedupe::usage::measure;
use dcgan_pipeline::dedupe::Code128;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: dedupe_code_search CODES_NPY [RADIUS]");
    let radius: u32 = args.get(2).map_or(Ok(14), |r| r.parse())?;
    let tables: usize = std::env::var("TABLES").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let (shape, words) = read_array::<u64>(std::path::Path::new(path))?;
    anyhow::ensure!(shape.len() == 2 && shape[1] == 2, "{path}: expected N x 2 uint64 codes");
    let codes: Vec<Code128> = words.chunks_exact(2).map(|w| Code128([w[0], w[1]])).collect();
    let sizes: Vec<usize> = match std::env::var("SIZES") {
        Ok(list) => list.split(',').filter_map(|v| v.parse().ok()).filter(|&n| n <= codes.len()).collect(),
        Err(_) => vec![codes.len() / 4, codes.len() / 2, codes.len()],
    };
    println!("| codes | distinct | groups: CPU us a code | sampled, {tables} tables: CPU us a code | exact: CPU us a code | exact pairs within {radius} | found by sampled |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let (groups, g) = measure(|| exact_groups(&codes[..n]));
        let distinct: Vec<Code128> = groups.iter().map(|g| codes[g[0] as usize]).collect();
        let (sampled, s) = measure(|| code_pairs(&distinct, radius, tables));
        let (exact, e) = measure(|| multi_index_pairs(&distinct, radius));
        let found = sampled.iter().filter(|p| exact.binary_search(p).is_ok()).count();
        let per = |cpu: f64| format!("{:.2}", 1e6 * cpu / n as f64);
        println!(
            "| {n} | {} | {} | {} | {} | {} | {found} |",
            distinct.len(),
            per(g.cpu_s),
            per(s.cpu_s),
            per(e.cpu_s),
            exact.len()
        );
    }
    Ok(())
}
