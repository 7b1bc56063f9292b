//! What already held when the stages were tried as a hostile user would (issue 32), kept so by a
//! test each: a signal in the middle of a run and a full disk are named and resume to the bytes of
//! a clean run; tar members that climb out of the archive write nothing outside the output.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// 12 photos; the last 8 are large JPEGs (slow to decode in full: crop.dct_scaling = false), so
/// that a run lasts long enough for a signal to land in its middle.
fn slow_photos(dir: &Path) {
    let big = jpeg_bytes(&textured(3000, 2000, 7), 90);
    for i in 0..12u32 {
        let bytes = if i >= 4 { big.clone() } else { png_bytes(&textured(80, 60, i)) };
        write(&dir.join(format!("{i:03}.png")), &bytes);
    }
}

const SLOW: [&str; 8] =
    ["--set", "crop.part_size=2", "--set", "crop.dct_scaling=false", "--set", "run.threads=1", "--set", "run.batch=1"];

/// The bytes a reader of the output sees; the run's own timing records differ between runs.
fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    folder_bytes(dir, &["summary.json", "shard-0-of-1.json"])
}

#[test]
fn a_signal_in_the_middle_of_a_crop_run_stops_it_and_the_rerun_gives_the_clean_runs_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("photos");
    slow_photos(&input);
    let clean = tmp.path().join("clean");
    crop_ok(&input, &clean, &SLOW);
    for signal in ["-TERM", "-INT"] {
        let output = tmp.path().join(format!("out{signal}"));
        let args = [&["-i", input.to_str().unwrap(), "-o", output.to_str().unwrap()], &SLOW[..]].concat();
        let child = crop_bin().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        // After the first part is written and before the last: the middle of the run.
        let first_part = output.join("parts/manifest-00000.jsonl");
        let start = Instant::now();
        while !first_part.exists() {
            assert!(start.elapsed() < Duration::from_secs(300), "the run never finished its first part");
            std::thread::sleep(Duration::from_millis(5));
        }
        let pid = child.id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
        let stopped = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&stopped.stderr);
        use std::os::unix::process::ExitStatusExt;
        if stopped.status.success() {
            // The signal came after the last part: nothing was interrupted, so nothing is tested here.
            println!("{signal}: the run had finished its last part before the signal; not counted");
            continue;
        }
        // crop keeps no state in memory worth saving: the signal's default action ends it, and the
        // parts already written are complete (each is renamed into place when whole).
        let by_signal = stopped.status.signal().is_some() || stopped.status.code() == Some(75);
        assert!(by_signal, "the run ended on the signal: {:?} {log}", stopped.status);
        assert!(!output.join("manifest.jsonl").exists(), "an interrupted run does not merge");
        crop_ok(&input, &output, &SLOW);
        assert_eq!(outputs(&output), outputs(&clean), "{signal}: the resumed output differs from a clean run");
    }
}

/// A tmpfs of `size` mounted on `dir` for the life of the guard, where this process may mount one.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str().unwrap()])
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Self(dir.to_path_buf()))
    }

    fn grow(&self, size: &str) {
        let remount = format!("remount,size={size}");
        let status = Command::new("mount").args(["-o", &remount, self.0.to_str().unwrap()]).status().unwrap();
        assert!(status.success(), "remount of the small disk failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_names_the_file_and_a_rerun_with_space_gives_the_clean_runs_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("photos");
    for i in 0..12u32 {
        write(&input.join(format!("{i:03}.png")), &png_bytes(&textured(200, 150, i)));
    }
    // 128x128 crops: 48 KiB a photo, 590 KiB in all, on a disk of 200 KiB.
    let sets = ["--set", "crop.size=128", "--set", "crop.part_size=2"];
    let clean = tmp.path().join("clean");
    crop_ok(&input, &clean, &sets);
    let mount_point = tmp.path().join("small");
    let disk = match SmallDisk::mount(&mount_point, "200k") {
        Ok(disk) => disk,
        Err(why) => {
            println!("skipped: a full disk needs a tmpfs, and this process may not mount one ({why})");
            return;
        }
    };
    let output = mount_point.join("out");
    let full = run_crop(&[&["-i", input.to_str().unwrap(), "-o", output.to_str().unwrap()], &sets[..]].concat());
    let log = String::from_utf8_lossy(&full.stderr);
    assert!(!full.status.success(), "a run that cannot fit its output must fail: {log}");
    assert!(log.contains("No space left on device"), "{log}");
    let named = log.lines().any(|l| l.contains("No space left on device") && l.contains(output.to_str().unwrap()));
    assert!(named, "the line that reports the full disk names the file under the output: {log}");
    assert_eq!(log.matches("No space left on device").count(), 1, "said once: {log}");
    disk.grow("4m");
    crop_ok(&input, &output, &sets);
    assert_eq!(outputs(&output), outputs(&clean), "the run resumed after the full disk differs from a clean run");
}

/// A tar member with the name exactly as given (the tar crate refuses `..` in paths it builds).
fn append_raw(tar: &mut tar::Builder<std::fs::File>, name: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append(&header, bytes).unwrap();
}

/// Every path under `dir`, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn tar_members_that_climb_out_write_nothing_outside_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("a/b");
    std::fs::create_dir_all(&work).unwrap();
    let messi = std::fs::read(opencv_sample("messi5.jpg")).unwrap();
    let tar_path = work.join("hostile.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    let names = ["../../x.jpg", "/tmp/absolute-messi.jpg", "ok/../../../y.jpg", "plain.jpg"];
    for name in names {
        append_raw(&mut tar, name, &messi);
    }
    tar.into_inner().unwrap();
    let before = tree(tmp.path());

    let crop_out = work.join("crop-out");
    crop_ok(&tar_path, &crop_out, &[]);
    let faces_out = work.join("faces-out");
    let faces = Command::new(env!("CARGO_BIN_EXE_faces"))
        .args([
            "-i",
            tar_path.to_str().unwrap(),
            "-o",
            faces_out.to_str().unwrap(),
            "--set",
            "faces.save_png=true",
            "--set",
            "faces.min_face_side=24",
        ])
        .output()
        .unwrap();
    assert!(faces.status.success(), "{}", String::from_utf8_lossy(&faces.stderr));

    // Every member is a row, under the name the archive gives it; nothing lands outside the outputs.
    for out in [&crop_out, &faces_out] {
        let rows = read_manifest(out);
        assert_eq!(rows.len(), names.len(), "{rows:?}");
    }
    let pngs = tree(&faces_out.join("crops"));
    assert!(pngs.len() >= names.len(), "messi's face is kept from every member: {pngs:?}");
    assert!(pngs.iter().all(|p| !p.contains('/')), "crops/ holds files only: {pngs:?}");
    let created: Vec<String> = tree(tmp.path())
        .into_iter()
        .filter(|p| !before.contains(p) && !p.starts_with("a/b/crop-out") && !p.starts_with("a/b/faces-out"))
        .collect();
    assert!(created.is_empty(), "written outside the outputs: {created:?}");
    assert!(!Path::new("/tmp/absolute-messi.jpg").exists());
}
