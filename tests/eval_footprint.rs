//! cifar-eval's memory estimate on the paper's settings (configs/paper.toml, loaded as the binaries
//! load it). Here rather than beside the estimate in src/eval/footprint.rs: `config` composes the
//! stages' tables, so no room below it imports it, tests included (docs/architecture.md).

use dcgan_pipeline::config::Config;
use dcgan_pipeline::eval::footprint::estimate;

#[test]
fn the_papers_evaluation_fits_a_small_machine_and_a_hostile_width_does_not() {
    let paper = Config::load(Some(std::path::Path::new("configs/paper.toml")), &[]).unwrap();
    let e = estimate(&paper.cifar_eval);
    // 28,672 float16 features of 60,000 images: 3.4 GB, the bulk of it.
    assert!(e.bytes > 3.0e9 && e.bytes < 6.0e9, "{e:?}");
    let mut wide = paper.cifar_eval.clone();
    wide.width = 100_000;
    assert!(estimate(&wide).bytes > 1e13);
    wide.width = 128;
    wide.flips = true;
    assert!(estimate(&wide).bytes > 1.5 * e.bytes, "flips double the matrices");
}
