//! The run report: rendered from real stage outputs (crop, train) and hand-written ones (dedupe,
//! cifar-eval), checked for its structure, its embedded images and that it touches nothing else.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

fn report(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_report")).args(args).output().expect("report runs");
    eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn write_json(path: &Path, value: serde_json::Value) {
    write(path, serde_json::to_string_pretty(&value).unwrap().as_bytes());
}

/// A run folder: crop and train from the real binaries, dedupe and cifar-eval outputs by hand,
/// no faces stage.
fn run_folder(run: &Path) {
    let photos = run.join("../photos");
    for i in 0..12u32 {
        write(&photos.join(format!("p{i:02}.png")), &png_bytes(&textured(40 + 3 * i, 48, i)));
    }
    write(&photos.join("broken.jpg"), b"not a jpeg");
    let out = run_crop(&["--input", photos.to_str().unwrap(), "--output", run.join("crop").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "one unreadable input");
    let train = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--input", run.join("crop").to_str().unwrap(), "--output", run.join("train").to_str().unwrap()])
        .args([
            "--set",
            "train.width=8",
            "--set",
            "train.batch=4",
            "--set",
            "train.epochs=2",
            "--set",
            "train.device=cpu",
        ])
        .output()
        .unwrap();
    assert!(train.status.success(), "{}", String::from_utf8_lossy(&train.stderr));
    let sample = Command::new(env!("CARGO_BIN_EXE_sample"))
        .args([
            "--generator",
            run.join("train").to_str().unwrap(),
            "--output",
            run.join("samples").to_str().unwrap(),
            "--samples",
            "16",
        ])
        .output()
        .unwrap();
    assert!(sample.status.success(), "{}", String::from_utf8_lossy(&sample.stderr));

    // dedupe: one cluster of three over the crop stage's images.
    std::fs::create_dir_all(run.join("dedupe/crops")).unwrap();
    for f in ["images-00000.npy", "labels.npy", "classes.jsonl"] {
        std::fs::copy(run.join("crop").join(f), run.join("dedupe/crops").join(f)).unwrap();
    }
    write_json(
        &run.join("dedupe/summary.json"),
        json!({
            "stage": "dedupe",
            "counts": {"cropped": 12, "kept": 10, "removed": 2, "clusters_of_two_or_more": 1, "exact_collision_groups": 1},
            "config": {"radius": 14},
            "timings_s": {"codes": 0.5, "index_and_cluster": 0.01},
        }),
    );
    let members: Vec<_> = [2, 5, 7]
        .iter()
        .map(|&i| json!({"source": format!("p{i:02}.png"), "crop_index": i, "distance_to_kept": i % 3}))
        .collect();
    write(
        &run.join("dedupe/clusters.jsonl"),
        format!("{}\n", json!({"cluster": 0, "size": 3, "kept": "p02.png", "members": members})).as_bytes(),
    );

    // cifar-eval: metrics as the stage writes them.
    write_json(&run.join("cifar-eval/summary.json"), json!({"stage": "cifar-eval"}));
    write_json(
        &run.join("cifar-eval/metrics.json"),
        json!({
            "discriminator": "models/d.safetensors", "feature_count": 28672, "chosen_c": 3e-5,
            "test_source": "held-out training images", "per_class_mean": 0.623, "per_class_std": 0.004,
            "per_class_labels": 400,
            "test": {"accuracy": 0.7204, "per_class_accuracy": [0.7, 0.8, 0.6, 0.5, 0.7, 0.6, 0.8, 0.8, 0.8, 0.9],
                     "confusion": (0..10).map(|i| (0..10).map(|j| if i == j { 7 } else { (i + j) % 2 }).collect::<Vec<_>>()).collect::<Vec<_>>()},
            "timings_s": {"total": 63.2},
        }),
    );
    write(&run.join("cifar-eval/confusion.png"), &png_bytes(&textured(10, 10, 1)));
}

#[test]
fn the_report_has_a_section_per_stage_with_embedded_images() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    run_folder(&run);
    let before = folder_bytes(&run, &[]);
    let out = report(&["--run", run.to_str().unwrap(), "--title", "test <run>"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("5 stage outputs"), "{stdout}");
    // Nothing but report.html was added or changed.
    let mut after = folder_bytes(&run, &[]);
    let page_at = after.iter().position(|(name, _)| name == "report.html").expect("report.html written");
    let html = String::from_utf8(after.remove(page_at).1).unwrap();
    assert_eq!(before, after, "the run folder's files were changed");

    assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"));
    assert!(html.contains("<meta name=\"viewport\""), "phones need the viewport meta");
    let escaped = ["<title>test &lt;run&gt;</title>", "<title>test &#60;run&#62;</title>"];
    assert!(escaped.iter().any(|t| html.contains(t)) && !html.contains("test <run>"), "the title is escaped");
    for id in ["overview", "faces", "dedupe", "crop", "train", "cifar-eval", "timings"] {
        assert_eq!(html.matches(&format!("<section id=\"{id}\">")).count(), 1, "section {id}");
    }
    assert_eq!(html.matches("<section").count(), html.matches("</section>").count());
    // The faces stage did not run: said so, in its section and in the overview.
    let faces = &html[html.find("<section id=\"faces\">").unwrap()..html.find("<section id=\"dedupe\">").unwrap()];
    assert!(faces.contains("Not run"), "{faces}");
    // Self-contained: every image is a data URI.
    let images: Vec<&str> = html.split("<img").skip(1).collect();
    assert!(images.iter().all(|i| i.contains("src=\"data:image/png;base64,")), "an image is not embedded");
    let in_section = |id: &str, next: &str| {
        let s = &html[html.find(&format!("<section id=\"{id}\">")).unwrap()
            ..html.find(&format!("<section id=\"{next}\">")).unwrap()];
        s.matches("<img").count()
    };
    assert_eq!(in_section("dedupe", "crop"), 3, "the cluster's three members");
    assert_eq!(in_section("crop", "train"), 1, "one contact sheet");
    assert!(
        in_section("train", "cifar-eval") >= 5,
        "sample grids of both epochs, the loss plot, the sample stage's grid and walk"
    );
    // The walk sits next to the trained generator's samples, in the train section.
    let train = &html[html.find("<section id=\"train\">").unwrap()..html.find("<section id=\"cifar-eval\">").unwrap()];
    let (grid_at, walk_at) =
        (train.find("alt=\"samples\"").expect("the sample grid"), train.find("alt=\"latent walk\"").expect("the walk"));
    assert!(
        grid_at < walk_at && train[grid_at..walk_at].matches("<figure>").count() == 1,
        "grid then walk, side by side"
    );
    assert!(train.contains("imagenet32 of width 8, stored as float32"), "what the pictures came from");
    assert!(
        train.contains("<span>collapse check</span>") && train.contains("Collapse check (D(G(z)) near 0"),
        "train's collapse verdict"
    );
    assert!(html.contains("<a href=\"#train\">sample</a>"), "the sample stage in the overview");
    let cifar =
        &html[html.find("<section id=\"cifar-eval\">").unwrap()..html.find("<section id=\"timings\">").unwrap()];
    assert_eq!(cifar.matches("<table class=\"confusion\">").count(), 1, "the confusion matrix");
    assert_eq!(cifar.matches("<td class=\"num\" style=").count(), 100, "10 x 10 cells");
    assert_eq!(cifar.matches(">58.3%<").count(), 10, "each row: 7 of 12 right");
    assert_eq!(html.matches("class=\"kept\"").count(), 1, "the kept image is marked");
    // The numbers: crop's counts and its unreadable input, our accuracy next to the paper's.
    let crop = &html[html.find("<section id=\"crop\">").unwrap()..html.find("<section id=\"train\">").unwrap()];
    assert!(crop.contains("broken.jpg"), "the unreadable input is listed");
    assert!(
        crop.contains("<b>13</b><span>images read</span>") && crop.contains("<b>12</b><span>crops written</span>"),
        "{crop}"
    );
    assert!(
        html.contains("82.8%")
            && html.contains("72.0% (held-out training images)")
            && html.contains("62.3% (+-0.4%) (400 per class)")
    );
    assert!(html.contains("63.2 s"), "cifar-eval's wall time in the overview");
    assert!(html.contains("<summary>Configuration</summary>"), "stage configs");
}

#[test]
fn the_digits_checks_show_in_the_train_section_and_a_failed_one_in_red() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    write_json(&run.join("digits/summary.json"), json!({"stage": "digits-eval", "timings_s": {"total": 40.0}}));
    let few = |m: f64| json!({"per_class": 10, "c": 0.01, "accuracies": [m], "mean": m, "std": 0.012});
    write_json(
        &run.join("digits/metrics.json"),
        json!({
            "passed": false,
            "failures": ["histogram check: one digit takes 700 > 300"],
            "histogram": {"summary": "1000 samples of G labelled", "check": {"counts": [700, 300, 0, 0, 0, 0, 0, 0, 0, 0], "largest_allowed": 300}},
            "few_label": [
                {"name": "pixels", "features": 1024, "few": [few(0.71)], "all_labels_accuracy": 0.912},
                {"name": "random dcgan32 width 32", "features": 3584, "few": [few(0.65)], "all_labels_accuracy": 0.934},
            ],
        }),
    );
    write(&run.join("digits/samples-by-class.png"), &png_bytes(&textured(20, 20, 2)));
    assert!(report(&["--run", run.to_str().unwrap()]).status.success());
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let train = &html[html.find("<section id=\"train\">").unwrap()..html.find("<section id=\"cifar-eval\">").unwrap()];
    assert!(
        train.contains("Did G learn the digits?") && train.contains("<p class=\"failed\">A check FAILED."),
        "{train}"
    );
    assert!(
        train.contains("one digit takes 700 &gt; 300") || train.contains("one digit takes 700 &#62; 300"),
        "the failure, escaped"
    );
    assert_eq!(train.matches("class=\"bar bad\"").count(), 9, "700 over the line, eight digits missing");
    assert!(train.contains("alt=\"samples by predicted digit\""));
    assert!(train.contains("<th class=\"num\">10 per class</th><th class=\"num\">all training labels</th>"), "{train}");
    assert!(
        train.contains(
            "<td>pixels (1024 features)</td><td class=\"num\">71.0% (+-1.2%)</td><td class=\"num\">91.2%</td>"
        ),
        "{train}"
    );
    assert!(train.contains("random dcgan32 width 32 (3584 features)"));
}

#[test]
fn an_empty_run_folder_gives_a_page_and_a_missing_one_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = report(&["--run", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert_eq!(html.matches("Not run in this run folder.").count(), 5);
    let missing = dir.path().join("nope");
    let out = report(&["--run", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nope") && stderr.contains("not a folder"), "{stderr}");
}
