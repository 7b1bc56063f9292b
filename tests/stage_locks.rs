//! Two runs of the same parts into one output folder at once: the second stops at once and names
//! the run that holds them; a lock left by a killed run is taken over.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// 12 photos, the last 8 large JPEGs (slow to decode in full: crop.dct_scaling = false), so that
/// a run lasts long enough to be caught.
fn photos(dir: &Path) {
    let big = jpeg_bytes(&textured(4000, 3000, 7), 90);
    for i in 0..12u32 {
        let bytes = if i >= 4 { big.clone() } else { png_bytes(&textured(80, 60, i)) };
        write(&dir.join(format!("{i:03}.png")), &bytes);
    }
}

#[test]
fn a_second_run_of_the_same_parts_names_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("photos");
    photos(&input);
    let output = tmp.path().join("out");
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
    let sets = [
        "--set",
        "crop.part_size=4",
        "--set",
        "crop.dct_scaling=false",
        "--set",
        "run.threads=1",
        "--set",
        "run.batch=1",
    ];
    let mut first = crop_bin().args(["-i", i, "-o", o]).args(sets).stderr(Stdio::null()).spawn().unwrap();
    let lock = output.join("parts/lock-shard-0-of-1");
    let start = Instant::now();
    while !lock.exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "the first run never took its lock");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Frozen while the others try: the test does not depend on how fast the machine is.
    let pid = first.id();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success())
    };
    signal("-STOP");
    let caught = first.try_wait().unwrap().is_none() && lock.exists();
    let second = run_crop(&["-i", i, "-o", o].iter().copied().chain(sets).collect::<Vec<_>>());
    let overlapping = run_crop(&["-i", i, "-o", o, "--shard", "1/3"].iter().copied().chain(sets).collect::<Vec<_>>());
    signal("-CONT");
    assert!(first.wait().unwrap().success());
    assert!(caught, "the first run ended before it could be caught: nothing was tested");
    let text = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{text}");
    assert!(text.contains("is held by another run: crop (host ") && text.contains(&format!("pid {pid}")), "{text}");
    let text = String::from_utf8_lossy(&overlapping.stderr);
    assert_eq!(overlapping.status.code(), Some(1), "{text}");
    assert!(text.contains("overlap") && text.contains(&format!("pid {pid}")), "{text}");
    // The first run was not disturbed, and left no lock behind.
    assert_eq!(read_manifest(&output).len(), 12);
    assert!(!lock.exists());

    // A lock of a process that is gone (this one's child, exited) is stale: taken over.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    let stale =
        format!(r#"{{"host":"{host}","pid":{},"process_start":1,"boot_id":null,"since":0,"what":"crop"}}"#, gone.id());
    std::fs::write(&lock, stale).unwrap();
    let again = run_crop(&["-i", i, "-o", o].iter().copied().chain(sets).collect::<Vec<_>>());
    let text = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{text}");
    assert!(text.contains("taking over a stale lock of crop"), "{text}");
}
