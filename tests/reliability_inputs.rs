//! Hostile inputs and names (issue 32, items 5 and 6): dangling symbolic links, link loops, FIFOs,
//! unreadable files, hidden files, names holding newlines, ANSI escapes or bytes that are not
//! UTF-8, colliding output names, empty inputs, an output inside its input, a garbage summary.json.
//! Every case is built here from generated images (and opencv-doc's photos for faces).

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use dcgan_pipeline::data::cifar::Split;
use dcgan_pipeline::data::names::{decode_name, encode_name};
use dcgan_pipeline::data::open_labeled;
use dcgan_pipeline::data::packed::read_packed;
use serde_json::Value;

fn bin(name: &str) -> Command {
    let path = match name {
        "crop" => env!("CARGO_BIN_EXE_crop"),
        "faces" => env!("CARGO_BIN_EXE_faces"),
        "dedupe" => env!("CARGO_BIN_EXE_dedupe"),
        "train" => env!("CARGO_BIN_EXE_train"),
        "cifar-eval" => env!("CARGO_BIN_EXE_cifar-eval"),
        "report" => env!("CARGO_BIN_EXE_report"),
        other => panic!("no binary {other}"),
    };
    Command::new(path)
}

/// Runs `name` with `args`, killed (and the test failed) after `limit`: a FIFO must never block.
fn run_within(name: &str, args: &[&OsStr], limit: Duration) -> Output {
    let mut child =
        bin(name).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the binary starts");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("{name} still running after {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stage(name: &str, input: &Path, output: &Path, sets: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec!["--input".as_ref(), input.as_os_str(), "--output".as_ref(), output.as_os_str()];
    for s in sets {
        args.push("--set".as_ref());
        args.push(s.as_ref());
    }
    run_within(name, &args, Duration::from_secs(300))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn image(seed: u32) -> Vec<u8> {
    jpeg_bytes(&textured(48, 40, seed), 90)
}

/// A folder path from raw bytes (names that are not UTF-8).
fn raw(root: &Path, bytes: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(bytes))
}

/// A row of the manifest by its source, with its status.
fn status_of<'a>(rows: &'a [Value], source: &str) -> (&'a str, &'a str) {
    let row = row_for(rows, source);
    (row["status"].as_str().unwrap(), row["reason"].as_str().unwrap_or(""))
}

/// Two good images, a dangling symbolic link and a link back to the input (a loop).
fn folder_with_bad_links(root: &Path) {
    write(&root.join("cats/a.jpg"), &image(1));
    write(&root.join("dogs/b.jpg"), &image(2));
    std::os::unix::fs::symlink(root.join("cats/gone.jpg"), root.join("cats/broken.jpg")).unwrap();
    std::os::unix::fs::symlink(root, root.join("dogs/loop")).unwrap();
}

fn assert_bad_links_are_rows(output: &Path) {
    let rows = read_manifest(output);
    // faces finds no face in it (skipped); crop crops it.
    assert_ne!(status_of(&rows, "cats/a.jpg").0, "error");
    let (status, reason) = status_of(&rows, "cats/broken.jpg");
    assert_eq!(status, "error");
    assert!(reason.contains("dangling symbolic link"), "{reason}");
    let (status, reason) = status_of(&rows, "dogs/loop");
    assert_eq!(status, "error");
    assert!(reason.contains("loop"), "{reason}");
}

#[test]
fn a_dangling_symlink_or_a_loop_is_one_failed_row_of_crop_and_dedupe() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    folder_with_bad_links(&input);
    let out = stage("crop", &input, &dir.path().join("crop"), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_bad_links_are_rows(&dir.path().join("crop"));
    assert_eq!(read_packed(&dir.path().join("crop")).unwrap().len(), 2);

    let quick = ["dedupe.ae_steps=20", "dedupe.ae_min_steps=10", "dedupe.ae_batch=8", "dedupe.device=cpu"];
    let out = stage("dedupe", &input, &dir.path().join("dedupe"), &quick);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_bad_links_are_rows(&dir.path().join("dedupe/crops"));
}

#[test]
fn a_dangling_symlink_is_one_failed_row_of_faces() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    folder_with_bad_links(&input);
    std::fs::copy(opencv_sample("messi5.jpg"), input.join("messi5.jpg")).unwrap();
    let output = dir.path().join("faces");
    let out = stage("faces", &input, &output, &["faces.detector=haar", "faces.min_face_side=32"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_bad_links_are_rows(&output);
    assert_eq!(status_of(&read_manifest(&output), "messi5.jpg").0, "ok");
}

#[test]
fn a_fifo_is_a_failed_row_and_never_blocks_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write(&input.join("a.jpg"), &image(1));
    for name in ["pipe.jpg", "pipe"] {
        let made = Command::new("mkfifo").arg(input.join(name)).status().expect("mkfifo runs");
        assert!(made.success());
    }
    let output = dir.path().join("out");
    let args: Vec<&OsStr> = vec!["-i".as_ref(), input.as_os_str(), "-o".as_ref(), output.as_os_str()];
    let out = run_within("crop", &args, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let rows = read_manifest(&output);
    for name in ["pipe.jpg", "pipe"] {
        let (status, reason) = status_of(&rows, name);
        assert_eq!(status, "error");
        assert!(reason.contains("FIFO"), "{reason}");
    }
    assert_eq!(status_of(&rows, "a.jpg").0, "ok");

    // A FIFO given as the archive itself: refused at once, naming it, rather than read forever.
    let archive = dir.path().join("photos.tar");
    assert!(Command::new("mkfifo").arg(&archive).status().expect("mkfifo runs").success());
    let output = dir.path().join("out-fifo");
    let args: Vec<&OsStr> = vec!["-i".as_ref(), archive.as_os_str(), "-o".as_ref(), output.as_os_str()];
    let out = run_within("crop", &args, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("photos.tar: a FIFO (named pipe), not a regular file"), "{text}");
    assert!(!output.exists(), "nothing written for an input that cannot be read");
}

#[test]
fn an_unreadable_file_is_a_failed_row() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write(&input.join("a.jpg"), &image(1));
    write(&input.join("locked.jpg"), &image(2));
    write(&input.join("locked"), &image(3));
    for name in ["locked.jpg", "locked"] {
        std::fs::set_permissions(input.join(name), std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    if std::fs::read(input.join("locked.jpg")).is_ok() {
        // Root (and CAP_DAC_OVERRIDE) reads a file of mode 000: there is no unreadable file to test.
        eprintln!("skipped: this test runs with the right to read files of mode 000 (as root)");
        return;
    }
    let output = dir.path().join("out");
    let out = stage("crop", &input, &output, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let rows = read_manifest(&output);
    for name in ["locked.jpg", "locked"] {
        let (status, reason) = status_of(&rows, name);
        assert_eq!(status, "error");
        assert!(reason.contains("ermission denied"), "{reason}");
    }
}

#[test]
fn hidden_files_are_skipped_rows_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write(&input.join("cats/a.jpg"), &image(1));
    write(&input.join("cats/...jpg"), &image(2));
    write(&input.join("cats/.x.jpg"), &image(3));
    write(&input.join(".thumbs/t.jpg"), &image(4));
    let output = dir.path().join("out");
    let out = stage("crop", &input, &output, &[]);
    assert_eq!(out.status.code(), Some(0), "skipped rows are not failures: {}", stderr(&out));
    assert!(stderr(&out).contains("3 hidden entries"), "the log counts them");
    let rows = read_manifest(&output);
    assert_eq!(rows.len(), 4);
    for name in ["cats/...jpg", "cats/.x.jpg", ".thumbs/"] {
        let (status, reason) = status_of(&rows, name);
        assert_eq!(status, "skipped", "{name}");
        assert!(reason.starts_with("hidden"), "{reason}");
        assert!(row_for(&rows, name).get("class").is_none(), "a hidden entry adds no class");
    }
    let summary: Value = serde_json::from_slice(&std::fs::read(output.join("summary.json")).unwrap()).unwrap();
    assert_eq!((summary["counts"]["skipped"].as_u64(), summary["counts"]["ok"].as_u64()), (Some(3), Some(1)));
    assert_eq!(read_packed(&output).unwrap().classes, vec!["cats"]);
}

/// A broken file whose name, printed raw, would add a line that looks like a warning of its own.
const FORGED: &[u8] = b"a\nb/bad\ncrop: warning: forged.jpg";

/// Class folders and files whose names hold a newline, an ANSI escape, a byte that is not UTF-8
/// and a backslash; one broken file whose name would forge a log line.
fn hostile_tree(input: &Path) -> Vec<Vec<u8>> {
    let classes: [&[u8]; 5] = [b"a\nb", b"c\x1b[31m", b"d\xff", b"d\xfe", b"e\\xff"];
    let files: [&[u8]; 3] = [b"x\ny.jpg", b"\x1b[2Jz.jpg", b"\xfe.jpg"];
    let mut written = Vec::new();
    for (c, class) in classes.iter().enumerate() {
        for (f, file) in files.iter().enumerate() {
            let relative = [*class, b"/", *file].concat();
            write(&raw(input, &relative), &image((c * 3 + f) as u32));
            written.push(relative);
        }
    }
    write(&raw(input, FORGED), b"not an image");
    written
}

#[test]
fn hostile_names_are_kept_exactly_from_crop_to_trains_labels_and_escaped_on_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let written = hostile_tree(&input);
    let output = dir.path().join("out");
    let out = stage("crop", &input, &output, &[]);
    assert_eq!(out.status.code(), Some(3), "the broken file fails: {}", stderr(&out));

    // The terminal: no escape byte, no line forged by a name.
    let err = stderr(&out);
    assert!(!out.stderr.contains(&0x1b), "an ANSI escape reached the terminal");
    assert!(err.contains("bad\\ncrop: warning: forged.jpg"), "the name is shown escaped: {err}");
    assert!(!err.lines().any(|l| l.starts_with("crop: warning: forged")), "a name forged a log line");

    // The manifest: every source decodes back to the file it names.
    let rows = read_manifest(&output);
    let ok: Vec<&Value> = rows.iter().filter(|r| r["status"] == "ok").collect();
    assert_eq!(ok.len(), written.len());
    for row in &ok {
        let bytes = decode_name(row["source"].as_str().unwrap()).expect("a name the encoding wrote");
        assert!(written.contains(&bytes), "{row}");
        assert!(raw(&input, &bytes).is_file());
    }

    // classes.jsonl: one line per class, and train's reader maps each label to its folder's name.
    let text = std::fs::read_to_string(output.join("classes.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 5, "{text:?}");
    let (set, _) = open_labeled(&output, Split::Train, 32).unwrap();
    let mut expected: Vec<String> = ["a\nb", "c\u{1b}[31m", "d\\xfe", "d\\xff", "e\\\\xff"].map(String::from).to_vec();
    expected.sort();
    assert_eq!(set.classes, expected);
    for row in &ok {
        let label = set.labels[row["index"].as_u64().unwrap() as usize];
        let class = row["class"].as_str().unwrap();
        assert_eq!(set.classes[label as usize], class);
        let source = decode_name(row["source"].as_str().unwrap()).unwrap();
        assert_eq!(encode_name(source.split(|&b| b == b'/').next().unwrap()), class);
    }
}

#[test]
fn a_tar_lists_hostile_names_as_its_folder_does() {
    use std::ops::ControlFlow;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    hostile_tree(&input);
    write(&input.join(".hidden.jpg"), &image(9));
    let tar_path = dir.path().join("in.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    builder.follow_symlinks(false);
    builder.append_dir_all("", &input).unwrap();
    builder.into_inner().unwrap();
    let names = |path: &Path| {
        let mut names = Vec::new();
        let source = dcgan_pipeline::data::ImageSource::open(path).unwrap();
        source
            .for_each_record(&|_| false, 0, &mut |r| {
                names.push((r.name, r.class));
                ControlFlow::Continue(())
            })
            .unwrap();
        names.sort();
        names
    };
    let from_folder = names(&input);
    assert_eq!(names(&tar_path), from_folder);
    assert!(from_folder.iter().any(|(n, _)| n == "d\\xff/\\xfe.jpg"), "{from_folder:?}");
}

#[test]
fn dedupes_kept_list_keeps_one_line_per_name() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let written = hostile_tree(&input);
    std::fs::remove_file(raw(&input, FORGED)).unwrap();
    let output = dir.path().join("out");
    let quick = ["dedupe.ae_steps=20", "dedupe.ae_min_steps=10", "dedupe.ae_batch=8", "dedupe.device=cpu"];
    let out = stage("dedupe", &input, &output, &quick);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let kept: Vec<String> = std::fs::read_to_string(output.join("kept.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ok: Vec<String> = read_manifest(&output)
        .iter()
        .filter(|r| r["status"] == "ok")
        .map(|r| r["source"].as_str().unwrap().to_owned())
        .collect();
    assert!(!kept.is_empty() && kept.len() <= written.len());
    assert_eq!(kept, ok);
    assert_eq!(read_packed(&output).unwrap().classes.len(), 5);
}

#[test]
fn faces_png_names_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let photo = std::fs::read(opencv_sample("messi5.jpg")).unwrap();
    // Names that a lossy or flattening naming maps onto one another.
    let names: [&[u8]; 5] = [b"p\xff.jpg", b"p\xfe.jpg", b"dir/x.jpg", b"dir_x.jpg", b"dir%2Fx.jpg"];
    for name in names {
        write(&raw(&input, name), &photo);
    }
    let output = dir.path().join("out");
    let sets = ["faces.detector=haar", "faces.min_face_side=32", "faces.save_png=true"];
    let out = stage("faces", &input, &output, &sets);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = read_manifest(&output);
    let kept: u64 = rows.iter().map(|r| r["outputs"].as_u64().unwrap()).sum();
    assert!(kept >= names.len() as u64, "every copy has a face");
    let pngs: Vec<String> =
        rows.iter().flat_map(|r| r["png"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned())).collect();
    assert_eq!(pngs.len() as u64, kept, "the manifest names each crop's file");
    let on_disk = std::fs::read_dir(output.join("crops")).unwrap().count();
    assert_eq!(on_disk as u64, kept, "one file per kept face");
    for png in &pngs {
        assert!(raw(&output, &decode_name(png).unwrap()).is_file(), "{png}");
    }

    // Long names that share their first 200 bytes still differ, within the file system's limit.
    let long = |tail: &str| format!("{}{tail}", "n".repeat(300));
    let (a, b) = (dcgan_pipeline::faces::png_stem(&long("a")), dcgan_pipeline::faces::png_stem(&long("b")));
    assert!(a.len() < 240 && a != b);
}

#[test]
fn an_empty_input_is_refused_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let hidden_only = dir.path().join("hidden-only");
    write(&hidden_only.join(".x.jpg"), &image(1));
    for (name, input) in [("crop", &empty), ("faces", &empty), ("crop", &hidden_only)] {
        let output = dir.path().join(format!("out-{name}"));
        let out = stage(name, input, &output, &["faces.detector=haar"]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains("no images found"), "{}", stderr(&out));
        assert!(!output.exists(), "nothing is written");
    }
    let out = stage("crop", &hidden_only, &dir.path().join("o"), &[]);
    assert!(stderr(&out).contains("1 hidden entries"), "{}", stderr(&out));

    // An archive's records are known once it is read: refused after the walk.
    let tar_path = dir.path().join("empty.tar");
    tar::Builder::new(std::fs::File::create(&tar_path).unwrap()).into_inner().unwrap();
    let out = stage("crop", &tar_path, &dir.path().join("out-tar"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no inputs found"), "{}", stderr(&out));
}

#[test]
fn an_output_inside_its_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write(&input.join("a.jpg"), &image(1));
    std::os::unix::fs::symlink(&input, dir.path().join("link-to-input")).unwrap();
    let inside = [input.clone(), input.join("out"), input.join("sub/deeper"), dir.path().join("link-to-input/out")];
    for output in &inside {
        for name in ["crop", "faces"] {
            let out = stage(name, &input, output, &["faces.detector=haar"]);
            assert_eq!(out.status.code(), Some(1), "{name} {}: {}", output.display(), stderr(&out));
            let refusal =
                if output == &input { "would write over its own inputs" } else { "would read its own outputs" };
            assert!(stderr(&out).contains(refusal), "{}", stderr(&out));
        }
    }
    assert_eq!(std::fs::read_dir(&input).unwrap().count(), 1, "nothing written into the input");
    // A sibling folder whose name starts like the input's is not inside it.
    let out = stage("crop", &input, &dir.path().join("in-crops"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The other binaries with an --input folder and an --output. train and cifar-eval read their
    // input by file name (never walked), so only an output equal to it is refused.
    let packed = dir.path().join("in-crops");
    let checks: [(&str, Vec<&OsStr>); 3] = [
        ("train", vec!["--input".as_ref(), packed.as_os_str(), "--output".as_ref(), packed.as_os_str()]),
        (
            "cifar-eval",
            vec![
                "--input".as_ref(),
                packed.as_os_str(),
                "--discriminator".as_ref(),
                "d.safetensors".as_ref(),
                "--output".as_ref(),
                packed.as_os_str(),
            ],
        ),
        (
            "dedupe",
            vec!["--eval".as_ref(), "--input".as_ref(), input.as_os_str(), "--output".as_ref(), input.as_os_str()],
        ),
    ];
    for (name, args) in checks {
        let out = run_within(name, &args, Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains("would write over its own inputs"), "{name}: {}", stderr(&out));
    }
}

#[test]
fn a_garbage_summary_is_named_on_the_page_and_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    write(&input_image_path(&run), &image(1));
    let out = stage("crop", &run.join("photos"), &run.join("crop"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = |run: &Path| run_within("report", &["--run".as_ref(), run.as_os_str()], Duration::from_secs(120));
    let good = report(&run);
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));
    assert!(!std::fs::read_to_string(run.join("report.html")).unwrap().contains("Unreadable stage outputs"));

    std::fs::write(run.join("crop/summary.json"), b"{\"stage\": \"crop\", garbage").unwrap();
    let out = report(&run);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("crop/summary.json: unreadable"), "{}", stderr(&out));
    let page = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(page.contains("Unreadable stage outputs") && page.contains("crop/summary.json"));
}

fn input_image_path(run: &Path) -> PathBuf {
    run.join("photos/a.jpg")
}
