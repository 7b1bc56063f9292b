//! The pipeline under a real one-node Slurm cluster (slurm/local-cluster.sh: munged, slurmctld and
//! slurmd in a temporary folder), through the job scripts that ship in slurm/: a 4-task crop array
//! and its merge against a single run, a merge that waits for its array, a task cancelled mid-run
//! and resubmitted with `slurm/submit resubmit`, a training job requeued mid-run, and what
//! `slurm/submit` refuses (more CPUs, memory or GPUs than a node has, a cluster it cannot reach, a
//! failed sbatch). Skipped, with a line saying so, only where Slurm is not installed (`make test`
//! installs it) or the test does not run as root. The SHARDS warning needs no cluster (--dry-run).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const PROJECT: &str = env!("CARGO_MANIFEST_DIR");
/// Generous: CI is a loaded 2-core machine. Every wait polls; none sleeps a fixed time.
const TIMEOUT: Duration = Duration::from_secs(180);

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_crop")).parent().unwrap().to_owned()
}

fn tool_path(tool: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
}

fn slurm_missing() -> Option<String> {
    for tool in ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol", "squeue", "scancel"] {
        if tool_path(tool).is_none() {
            return Some(format!(
                "{tool} is not installed (apt-get install --no-install-recommends slurm-wlm munge; make test does)"
            ));
        }
    }
    let uid = Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if uid.as_deref() != Some("0") {
        return Some("slurmd must run as root to start jobs, and this test does not".into());
    }
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running one-node cluster; brought down (jobs cancelled, daemons stopped by their pid files)
/// when dropped, also when the test fails.
struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn up(dir: &Path) -> Cluster {
        let out = Command::new(Path::new(PROJECT).join("slurm/local-cluster.sh"))
            .args(["up", dir.to_str().unwrap()])
            .env("SLURM_PORTS", format!("{} {}", free_port(), free_port()))
            // Finished jobs stay visible to scontrol for the whole test.
            .env("LOCAL_CLUSTER_MIN_JOB_AGE", "600")
            .env("LOCAL_CLUSTER_OWNER", std::process::id().to_string())
            .output()
            .unwrap();
        let cluster = Cluster { dir: dir.to_owned() };
        assert!(out.status.success(), "the cluster did not come up: {}", String::from_utf8_lossy(&out.stderr));
        cluster
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", self.conf());
        // Bitwise-reproducible CPU training (see tests/train_stage.rs); sbatch passes it to jobs.
        cmd.env("MKL_CBWR", "COMPATIBLE");
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.command(program).args(args).output().unwrap();
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// (task, state, reason) of every task of `job` as scontrol reports it.
    fn states(&self, job: &str) -> Vec<(String, String, String)> {
        let out = self.command("scontrol").args(["show", "job", "-o", job]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let field =
            |line: &str, key: &str| line.split_whitespace().find_map(|f| f.strip_prefix(key)).unwrap_or("").to_owned();
        text.lines()
            .filter(|l| l.contains("JobState="))
            .map(|l| (field(l, "ArrayTaskId="), field(l, "JobState="), field(l, "Reason=")))
            .collect()
    }

    /// Waits until every task of `job` is in a final state; returns the states.
    fn wait_done(&self, job: &str) -> Vec<String> {
        let finished =
            ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"];
        let mut last = Vec::new();
        let ok = poll(TIMEOUT, || {
            last = self.states(job);
            !last.is_empty() && last.iter().all(|(_, s, _)| finished.contains(&s.as_str()))
        });
        assert!(ok, "job {job} did not finish in {TIMEOUT:?}: {last:?}\n{}", self.logs());
        last.into_iter().map(|(_, s, _)| s).collect()
    }

    fn logs(&self) -> String {
        ["slurmctld.log", "slurmd.log"]
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.join("log").join(n)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!("--- {n} (last lines)\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(PROJECT).join("slurm/local-cluster.sh"))
            .args(["down", self.dir.to_str().unwrap()])
            .status();
    }
}

/// Calls `check` every 50 ms until it holds or `limit` passes.
fn poll(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The packed crops and the merged files, which must be byte-identical between runs (not
/// summary.json: timings and the shards differ).
fn crop_outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let files = folder_bytes(dir, &["parts/", "summary.json", "config.toml", ".lock"]);
    assert!(files.iter().any(|(n, _)| n == "manifest.jsonl"), "{}: no merged manifest", dir.display());
    files
}

/// 48 photos in two class folders and a broken one, in 13 parts of 4. Shard 1 of 4 owns parts 1,
/// 5 and 9: the photos of parts 5 and 9 are large JPEGs (slow to decode in full: crop.dct_scaling
/// = false), so that a task of shard 1
/// can be cancelled between its parts.
fn photos(root: &Path) -> usize {
    let big = jpeg_bytes(&textured(4000, 3000, 7), 90);
    let mut names = Vec::new();
    for i in 0..48u32 {
        names.push(format!("c{}/{i:03}.jpg", i / 24));
    }
    names.push("c1/zz-broken.png".into());
    for (index, name) in names.iter().enumerate() {
        let part = index / 4;
        let path = root.join(name);
        if name.contains("broken") {
            write(&path, b"\x89PNG\r\n\x1a\nnot really");
        } else if part == 5 || part == 9 {
            write(&path, &big);
        } else {
            write(&path, &jpeg_bytes(&textured(96, 64, index as u32), 90));
        }
    }
    names.len()
}

fn config(path: &Path, log_every_s: f64) {
    let text = format!(
        "[run]\nthreads = 1\nbatch = 1\nlog_every_s = {log_every_s}\n\n[crop]\npart_size = 4\ndct_scaling = false\n\n\
         [train]\npreset = \"imagenet32\"\nwidth = 8\nbatch = 4\nepochs = 10\nmax_steps = 40\ndevice = \"cpu\"\n\
         log_every = 1\ncheckpoint_every = 0\nsnapshot_every_epochs = 0\nkeep_checkpoints = 2\n"
    );
    std::fs::write(path, text).unwrap();
}

/// A line that shows in `cargo test`'s output even when the test passes (the harness captures
/// eprintln!, not writes to the stderr handle): the skip, and the Slurm part's wall time for CI logs.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn lap(label: &str, since: &mut Instant) {
    eprintln!("slurm_cluster: {label}: {:.1} s", since.elapsed().as_secs_f64());
    *since = Instant::now();
}

#[test]
fn the_pipeline_runs_under_a_one_node_slurm_cluster() {
    if let Some(why) = slurm_missing() {
        say(&format!("slurm_cluster: SKIPPED: {why}"));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let input = root.join("photos");
    photos(&input);
    let conf = root.join("test.toml");
    config(&conf, 0.05);
    let reference = root.join("single");
    let single = crop_bin()
        .args(["--config", conf.to_str().unwrap(), "-i", input.to_str().unwrap(), "-o", reference.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(single.status.code(), Some(3), "one broken input: {}", String::from_utf8_lossy(&single.stderr));
    let expected = crop_outputs(&reference);

    let started = Instant::now();
    let mut up = Instant::now();
    let cluster = Cluster::up(&root.join("cluster"));
    lap("cluster up", &mut up);
    let bin = bin_dir();
    let scene = Scene { cluster: &cluster, root, bin: &bin, conf: &conf, input: &input, expected: &expected };
    // One cluster, brought up once (tens of seconds), runs the scenarios in order.
    let mut step = Instant::now();
    submit_refuses_what_no_node_can_run(&scene);
    submit_stops_at_a_failed_sbatch(&scene);
    lap("refusals and a failed sbatch", &mut step);
    preprocess_as_a_held_array_then_merge(&scene);
    a_cancelled_task_resumes_when_resubmitted(&scene);
    training_requeued_mid_run_resumes_to_the_same_weights(&scene);
    say(&format!("slurm_cluster: the Slurm part took {:.1} s", started.elapsed().as_secs_f64()));
    drop(cluster);
}

/// What the scenarios share: the cluster, the test's folder, the binaries, the config and input
/// photos, and the outputs of a single crop run over them.
#[derive(Clone, Copy)]
struct Scene<'a> {
    cluster: &'a Cluster,
    root: &'a Path,
    bin: &'a Path,
    conf: &'a Path,
    input: &'a Path,
    expected: &'a [(String, Vec<u8>)],
}

impl Scene<'_> {
    fn script(&self, name: &str) -> String {
        Path::new(PROJECT).join("slurm").join(name).to_str().unwrap().to_owned()
    }

    /// `slurm/submit ARGS` for the photos into `out` (crop only, 4 tasks of 1 CPU); `env` adds or
    /// overrides variables. Returns the exit code and what it printed (stderr).
    fn submit(&self, out: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
        let mut cmd = self.cluster.command(&self.script("submit"));
        cmd.args(args)
            .env("BIN", self.bin)
            .env("CONFIG", self.conf)
            .env("OUT", out)
            .env("IMAGENET_DIR", self.input)
            .env("FACES_DIR", "")
            .env("LSUN_DIR", "")
            .env("SHARDS", "4")
            .env("CPUS_PER_TASK", "1")
            .env("MEM_PER_TASK", "")
            .env("EXTRA_SBATCH", "");
        for (key, value) in env {
            cmd.env(key, value);
        }
        let done = cmd.output().unwrap();
        (done.status.code(), String::from_utf8_lossy(&done.stderr).into_owned())
    }

    /// `slurm/submit ARGS` with `OUT` alone set: what it printed, stdout then stderr.
    fn submit_out(&self, out: &Path, args: &[&str]) -> (Option<i32>, String) {
        let done = self.cluster.command(&self.script("submit")).args(args).env("OUT", out).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&done.stdout), String::from_utf8_lossy(&done.stderr));
        (done.status.code(), text)
    }

    /// `slurm/submit status OUT`, which must succeed; its output.
    fn status(&self, out: &Path) -> String {
        let done =
            self.cluster.command(&self.script("submit")).args(["status", out.to_str().unwrap()]).output().unwrap();
        let text = String::from_utf8_lossy(&done.stdout).into_owned();
        assert!(done.status.success(), "status: {text}{}", String::from_utf8_lossy(&done.stderr));
        text
    }
}

/// Scenario 0, before any job runs: slurm/submit refuses jobs that no node could run (they would
/// pend forever) and a cluster it cannot reach, in one line with the numbers, queueing nothing.
fn submit_refuses_what_no_node_can_run(scene: &Scene) {
    let Scene { cluster, root, input, .. } = *scene;
    let node = |format: &str| -> u64 {
        let text = cluster.run("sinfo", &["-h", "-N", "-o", format]);
        text.lines().next().unwrap_or("").trim().parse().unwrap_or_else(|_| panic!("sinfo {format}: {text}"))
    };
    let (cpus, mb) = (node("%c"), node("%m"));
    let out = root.join("refused");
    let (more_cpus, more_mem) = ((cpus + 1).to_string(), format!("{}M", mb + 1));
    let lsun = input.to_str().unwrap();
    let broken = root.join("broken-slurm.conf");
    std::fs::write(&broken, "this is not a slurm.conf\n").unwrap();
    let broken_s = broken.to_str().unwrap();
    // A partition whose jobs may run an hour at most: site.conf's 4 hours for a task would pend for ever.
    cluster.run(
        "scontrol",
        &["create", "PartitionName=short", "Nodes=ALL", "MaxTime=01:00:00", "DefaultTime=00:20:00", "State=UP"],
    );
    let cases: [(Vec<(&str, &str)>, String); 5] = [
        (
            vec![("CPUS_PER_TASK", &more_cpus)],
            format!("CPUS_PER_TASK={more_cpus} but its largest node has {cpus} CPUs"),
        ),
        (
            vec![("MEM_PER_TASK", &more_mem)],
            format!("MEM_PER_TASK={more_mem} ({} MB) but its largest node has {mb} MB", mb + 1),
        ),
        // dedupe's merge is a GPU job; the node has one GPU.
        (
            vec![("LSUN_DIR", lsun), ("GPU_GRES", "gpu:2")],
            "GPU_GRES=gpu:2 asks for 2 GPU(s) but its largest node has 1".into(),
        ),
        (
            vec![("PARTITION", "short")],
            "crop-shards asks for TIME_SHARD=04:00:00 but partition short allows at most MaxTime=01:00:00: it would \
             pend for ever (Reason=PartitionTimeLimit)"
                .into(),
        ),
        // A configuration sinfo cannot parse (a missing one costs a minute of DNS look-ups).
        (
            vec![("SLURM_CONF", broken_s)],
            "cannot read the cluster's nodes with sinfo: Unable to process configuration file".into(),
        ),
    ];
    for (env, expected) in &cases {
        let (code, text) = scene.submit(&out, &["preprocess"], env);
        assert_eq!(code, Some(1), "{env:?}: {text}");
        assert!(text.starts_with("submit: error: ") && text.contains(expected.as_str()), "{env:?}: {text}");
        assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
        assert!(text.contains("nothing was submitted"), "{text}");
    }
    assert_eq!(cluster.run("squeue", &["-h"]), "", "a refused submission queued jobs");
    assert!(!out.join("slurm-logs/submitted.tsv").exists(), "a refused submission recorded jobs");
    // Within the limit, or the partition's DefaultTime (an empty TIME_SHARD), the times pass the check.
    let env = [("PARTITION", "short"), ("TIME_SHARD", ""), ("TIME_MERGE", "00:59:00"), ("EXTRA_SBATCH", "--hold")];
    let (code, text) = scene.submit(&root.join("within-limits"), &["preprocess"], &env);
    assert_eq!(code, Some(0), "{text}");
    let (array, merge, report) =
        (job_of_in(&text, "crop-shards"), job_of_in(&text, "crop-merge"), job_of_in(&text, "report"));
    let limit = |job: &str| {
        let text = cluster.run("scontrol", &["show", "job", "-o", job]);
        text.split_whitespace().find_map(|f| f.strip_prefix("TimeLimit=")).unwrap_or("").to_owned()
    };
    assert_eq!((limit(&array), limit(&merge)), ("00:20:00".to_owned(), "00:59:00".to_owned()));
    cluster.run("scancel", &[&report, &merge, &array]);
}

/// Scenario 0, continued: an sbatch that fails (here the second, a stand-in on PATH before the real
/// one) stops slurm/submit at that job, naming it and sbatch's message; the array it had already
/// queued is cancelled, and no job is ever given an empty dependency.
fn submit_stops_at_a_failed_sbatch(scene: &Scene) {
    let Scene { cluster, root, .. } = *scene;
    let fake = root.join("fake-bin");
    let calls = root.join("sbatch-calls");
    let real = tool_path("sbatch").unwrap();
    let stand_in = format!(
        "#!/bin/sh\necho \"$*\" >>'{calls}'\nif [ -e '{calls}.once' ]; then\n  echo 'sbatch: error: Batch job \
         submission failed: Invalid account or account/partition combination specified' >&2\n  exit 1\nfi\n\
         touch '{calls}.once'\nexec '{real}' \"$@\"\n",
        calls = calls.display(),
        real = real.display()
    );
    write(&fake.join("sbatch"), stand_in.as_bytes());
    std::fs::set_permissions(fake.join("sbatch"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    let env = [("PATH", path.as_str()), ("EXTRA_SBATCH", "--hold")];
    let (code, text) = scene.submit(&root.join("failed-sbatch"), &["preprocess"], &env);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("submit: error: sbatch failed for crop-merge: Batch job submission failed: Invalid account"),
        "{text}"
    );
    let array = job_of_in(&text, "crop-shards");
    assert!(text.contains(&format!("cancelled what this run had queued: crop-shards {array}")), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("crop-merge ") || l.starts_with("report ")), "{text}");
    let states = cluster.wait_done(&array);
    assert!(states.iter().all(|s| s == "CANCELLED"), "{states:?}");
    let made = read(&calls);
    assert_eq!(made.lines().count(), 2, "stopped at the failed sbatch: {made}");
    for after in made.split("afterok:").skip(1) {
        assert!(after.starts_with(|c: char| c.is_ascii_digit()), "an empty dependency: {made}");
    }
    assert_eq!(cluster.run("squeue", &["-h"]), "", "jobs left queued");
}

/// Scenario 1, slurm/submit preprocess: a 4-task array and its merge (afterok), all held so that the test
/// sets the pace; a merge by hand before the shards have run names what is missing.
fn preprocess_as_a_held_array_then_merge(scene: &Scene) {
    let Scene { cluster, root, bin, conf, input, expected } = *scene;
    let crop_path = bin.join("crop");
    let (crop, conf_s) = (crop_path.to_str().unwrap(), conf.to_str().unwrap());
    let script = |name: &str| scene.script(name);
    let mut step = Instant::now();
    let out = root.join("out");
    let submitted = cluster
        .command(&script("submit"))
        .arg("preprocess")
        .env("BIN", bin)
        .env("CONFIG", conf)
        .env("OUT", &out)
        .env("IMAGENET_DIR", input)
        .env("FACES_DIR", "")
        .env("LSUN_DIR", "")
        .env("SHARDS", "4")
        .env("CPUS_PER_TASK", "1")
        .env("MEM_PER_TASK", "")
        .env("EXTRA_SBATCH", "--hold")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&submitted.stderr).into_owned();
    assert!(submitted.status.success(), "slurm/submit: {text}");
    // 13 parts for 4 tasks: every task has work.
    assert!(!text.contains("warning"), "{text}");
    let job_of = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} job in {text}"))
            .trim()
            .to_owned()
    };
    let (array, merge) = (job_of("crop-shards"), job_of("crop-merge"));
    // The job names carry the run (OUT's last folder) and the stage.
    let names = cluster.run("squeue", &["-h", "-j", &format!("{array},{merge}"), "-o", "%j"]);
    assert!(names.contains("out-crop") && names.contains("out-crop-merge"), "{names}");
    let crops = out.join("imagenet32");
    cluster.run("scontrol", &["release", &format!("{array}_0")]);
    cluster.run("scontrol", &["release", &job_of("report")]);
    assert_eq!(cluster.wait_done(&format!("{array}_0")), ["COMPLETED"]);
    // A merge run by hand while shards 1-3 have not run names what is missing.
    let early =
        Command::new(crop).args(["--config", conf_s, "--output", crops.to_str().unwrap(), "--merge"]).output().unwrap();
    let early_err = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(1), "{early_err}");
    assert!(early_err.contains("9 of 13 parts are not done yet (parts 1, 2, 3, 5, 6, 7, 9, 10, 11)"), "{early_err}");
    // The merge job, free to run, waits for its array.
    cluster.run("scontrol", &["release", &merge]);
    let mut seen = Vec::new();
    let waits = poll(TIMEOUT, || {
        seen = cluster.states(&merge);
        seen.iter().any(|(_, s, r)| s == "PENDING" && r == "Dependency")
    });
    assert!(waits, "merge job {merge}: {seen:?}");
    assert!(!crops.join("manifest.jsonl").exists());
    cluster.run("scontrol", &["release", &format!("{array}_[1-3]")]);
    assert_eq!(
        cluster.wait_done(&merge),
        ["COMPLETED"],
        "{}",
        read(&out.join(format!("slurm-logs/crop-merge-{merge}.out")))
    );
    assert_eq!(crop_outputs(&crops), expected, "4-task array + merge vs a single crop run");
    // The shard's last word: its merge is queued already, not a command to run by hand.
    let shard_log = read(&out.join(format!("slurm-logs/crop-{array}_0.out")));
    assert!(shard_log.contains("its merge job runs once every shard has finished"), "{shard_log}");
    assert!(!shard_log.contains("--merge --output"), "{shard_log}");
    let rows = read_manifest(&crops);
    let broken = row_for(&rows, "c1/zz-broken.png");
    assert_eq!(broken["status"], "error", "{broken}");
    assert!(read(&crops.join("summary.json")).contains("zz-broken.png"));
    lap("4-task array, held merge, merge by hand, merge", &mut step);
}

/// Scenario 2: `slurm/submit preprocess` (named `night`), then a task cancelled between its parts,
/// and the merge let run early: it fails, and the report after it says so instead of reporting;
/// `status` names the failed task and merge with their logs' last lines and the command to run.
/// `slurm/submit resubmit crop` (with other settings in the environment: the recorded ones are used)
/// resubmits that task and a new merge; that task cancelled too, a second resubmit takes every array
/// of the stage into account (only task 1 again; the new merge waits for the first array's tasks
/// still queued) and cancels the first resubmit's merge and report. The resubmitted task resumes,
/// taking the dead task's lock over; the outputs are those of a single run; then `status` says it
/// has finished, and `resubmit` that there is nothing to do (from the merge's output).
fn a_cancelled_task_resumes_when_resubmitted(scene: &Scene) {
    let Scene { cluster, root, .. } = *scene;
    let mut step = Instant::now();
    let out2 = root.join("out2");
    let crops = out2.join("imagenet32");
    let (code, text) = scene.submit(&out2, &["preprocess"], &[("EXTRA_SBATCH", "--hold"), ("RUN_NAME", "night")]);
    assert_eq!(code, Some(0), "slurm/submit: {text}");
    let (array, merge, report) =
        (job_of_in(&text, "crop-shards"), job_of_in(&text, "crop-merge"), job_of_in(&text, "report"));
    assert_eq!(cluster.run("squeue", &["-h", "-j", &array, "-o", "%j"]), "night-crop");
    cluster.run("scontrol", &["release", &format!("{array}_1")]);
    let log1 = out2.join(format!("slurm-logs/crop-{array}_1.out"));
    let part1 = crops.join("parts/manifest-00001.jsonl");
    assert!(poll(TIMEOUT, || part1.exists()), "shard 1 never finished part 1: {}", read(&log1));
    cluster.run("scancel", &[&format!("{array}_1")]);
    assert_eq!(cluster.wait_done(&format!("{array}_1")), ["CANCELLED"]);
    assert!(
        !crops.join("parts/shard-1-of-4.json").exists() && !crops.join("parts/manifest-00009.jsonl").exists(),
        "cancelled too late: shard 1 had finished"
    );
    assert!(crops.join("parts/lock-shard-1-of-4").exists(), "the killed task's lock is left behind (stale)");
    a_failed_merge_stops_the_report(scene, &out2, &merge, &report);
    let status = scene.status(&out2);
    for line in [
        "crop: 4 tasks: 0 done, 0 running, 3 pending (JobHeld".to_owned(),
        ": 0 2 3), 1 failed (1)".to_owned(),
        format!("  task 1 failed (job {array}_1, CANCELLED): slurmstepd"),
        format!("  merge (job {merge}): failed: "),
        format!("report (job {report}): failed: report: not written: the merge of crop did not succeed"),
        format!("next: OUT={} slurm/submit resubmit crop", out2.display()),
    ] {
        assert!(status.contains(&line), "{line:?} in\n{status}");
    }

    // Other settings in the environment (8 CPUs: more than the node has) are ignored.
    let (code, text) = scene.submit(&out2, &["resubmit", "crop"], &[("CPUS_PER_TASK", "8"), ("EXTRA_SBATCH", "")]);
    assert_eq!(code, Some(0), "slurm/submit resubmit: {text}");
    assert!(text.contains("resubmit uses the settings recorded with the run"), "{text}");
    assert!(text.contains("ignored here: CPUS_PER_TASK=8 EXTRA_SBATCH="), "{text}");
    let waits = format!("resubmitting task(s) 1; the new merge also waits for {array}_0 {array}_2 {array}_3");
    assert!(text.contains(&waits), "only the cancelled task, after the others still held: {text}");
    assert!(!text.contains("cancelled"), "the first merge and report had ended: {text}");
    let (again, merge2, report2) =
        (job_of_in(&text, "crop-shards"), job_of_in(&text, "crop-merge"), job_of_in(&text, "report"));
    let shown = cluster.run("scontrol", &["show", "job", "-o", &again]);
    assert!(shown.contains("MinCPUsNode=1 ") && shown.contains("Reason=JobHeldUser"), "the recorded settings: {shown}");

    // That task cancelled too (before it ran): every array of the stage counts, not the last one.
    cluster.run("scancel", &[&again]);
    assert_eq!(cluster.wait_done(&again), ["CANCELLED"]);
    let (code, text) = scene.submit(&out2, &["resubmit", "crop"], &[]);
    assert_eq!(code, Some(0), "slurm/submit resubmit: {text}");
    assert!(text.contains(&waits), "task 1 only, once: {text}");
    let cancelled = format!("cancelled the jobs that waited in vain: crop-merge {merge2},report {report2}");
    assert!(text.contains(&cancelled), "{text}");
    let (third, merge3, report3) =
        (job_of_in(&text, "crop-shards"), job_of_in(&text, "crop-merge"), job_of_in(&text, "report"));
    assert_eq!(cluster.wait_done(&merge2), ["CANCELLED"]);
    assert_eq!(cluster.wait_done(&report2), ["CANCELLED"]);

    // The recorded settings hold the jobs (EXTRA_SBATCH=--hold): released, they finish the run.
    cluster.run("scontrol", &["release", &third, &format!("{array}_[0,2-3]"), &merge3, &report3]);
    let merge_log = out2.join(format!("slurm-logs/crop-merge-{merge3}.out"));
    assert_eq!(cluster.wait_done(&merge3), ["COMPLETED"], "{}", read(&merge_log));
    let log = read(&out2.join(format!("slurm-logs/crop-{third}_1.out")));
    assert!(log.contains("resuming:") && log.contains("parts already done"), "{log}");
    assert!(log.contains("taking over a stale lock of crop shard 1/4"), "{log}");
    assert_eq!(crop_outputs(&crops), scene.expected, "cancelled and resubmitted task vs a single crop run");
    let report_log = out2.join(format!("slurm-logs/report-{report3}.out"));
    assert_eq!(cluster.wait_done(&report3), ["COMPLETED"], "{}", read(&report_log));
    a_finished_run_has_nothing_to_resubmit(scene, &out2, &merge3, &report3);
    lap("task cancelled mid-run, failed merge, slurm/submit resubmit twice, status, merged", &mut step);
}

/// The first merge, its dependency cleared, runs before the shards and fails; the report, which
/// follows it with afterany (so that it never waits for ever), ends without a report and says which
/// stage failed, in a log that starts with a header line.
fn a_failed_merge_stops_the_report(scene: &Scene, out: &Path, merge: &str, report: &str) {
    let cluster = scene.cluster;
    cluster.run("scontrol", &["update", &format!("jobid={merge}"), "dependency="]);
    cluster.run("scontrol", &["release", merge, report]);
    assert_eq!(cluster.wait_done(merge), ["FAILED"]);
    assert_eq!(cluster.wait_done(report), ["FAILED"]);
    let log = read(&out.join(format!("slurm-logs/report-{report}.out")));
    assert!(log.lines().next().unwrap_or("").contains(&format!("report of {} (job {report})", out.display())), "{log}");
    assert!(log.contains("report: not written: the merge of crop did not succeed"), "{log}");
    assert!(!out.join("report.html").exists());
}

/// After the run has finished: `status` says so, and `resubmit` has nothing to do, because the
/// merge's output is complete (not because of its job: without that output, it submits a new merge).
fn a_finished_run_has_nothing_to_resubmit(scene: &Scene, out: &Path, merge: &str, report: &str) {
    let status = scene.status(out);
    for line in [
        "crop: 4 tasks: 4 done, 0 running, 0 pending, 0 failed".to_owned(),
        format!("  merge (job {merge}): done ({}/imagenet32/summary.json)", out.display()),
        format!("report (job {report}): written: {}/report.html", out.display()),
        "next: nothing to do: the run has finished".to_owned(),
    ] {
        assert!(status.contains(&line), "{line:?} in\n{status}");
    }
    let recorded = read(&out.join("slurm-logs/submitted.tsv"));
    let (code, text) = scene.submit(out, &["resubmit", "crop"], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("nothing to do: crop has finished: its 4 shards and its merge succeeded"), "{text}");
    assert_eq!(read(&out.join("slurm-logs/submitted.tsv")), recorded, "nothing submitted");
    let summary = out.join("imagenet32/summary.json");
    let aside = out.join("summary.json.aside");
    std::fs::rename(&summary, &aside).unwrap();
    let (code, text) = scene.submit_out(out, &["resubmit", "crop", "--dry-run"]);
    std::fs::rename(&aside, &summary).unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("no task to resubmit, but the merge did not succeed"), "{text}");
    assert!(text.contains("slurm/merge.sbatch") && text.contains("slurm/report.sbatch"), "{text}");
}

/// Scenario 3: training requeued mid-run: it checkpoints on the signal and resumes to the same weights;
/// cifar-eval, waiting for it, starts once it has finished.
fn training_requeued_mid_run_resumes_to_the_same_weights(scene: &Scene) {
    let Scene { cluster, root, bin, conf, .. } = *scene;
    let conf_s = conf.to_str().unwrap();
    let script = |name: &str| scene.script(name);
    let mut step = Instant::now();
    let packed = root.join("packed");
    let images: Vec<u8> = (0..600 * 32 * 32 * 3).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::create_dir_all(&packed).unwrap();
    dcgan_pipeline::data::npy::write_array(&packed.join("images-00000.npy"), &[600, 32, 32, 3], &images).unwrap();
    let uninterrupted = root.join("train-whole");
    let mut whole = cluster
        .command(bin.join("train").to_str().unwrap())
        .args(["--config", conf_s, "-i", packed.to_str().unwrap(), "-o", uninterrupted.to_str().unwrap()])
        .stderr(std::fs::File::create(root.join("train-whole.log")).unwrap())
        .spawn()
        .unwrap();
    let train_out = root.join("train-out");
    let cifar = root.join("cifar");
    class_folders(&cifar, "train", 1, 0);
    // slurm/submit train, as a user runs it; the same command before and after the packed set exists.
    let submit_train = || {
        cluster
            .command(&script("submit"))
            .arg("train")
            .env("BIN", bin)
            .env("CONFIG", conf)
            .env("OUT", &train_out)
            .env("CIFAR_DIR", &cifar)
            .env("CPUS_PER_TASK", "1")
            .env("MEM_PER_TASK", "")
            .env("EXTRA_SBATCH", "")
            .output()
            .unwrap()
    };
    let submitted = submit_train();
    let text = String::from_utf8_lossy(&submitted.stderr).into_owned();
    // slurm/submit reads the packed set from OUT/imagenet32.
    assert!(!submitted.status.success() && text.contains("no packed set"), "{text}");
    std::fs::create_dir_all(&train_out).unwrap();
    std::os::unix::fs::symlink(&packed, train_out.join("imagenet32")).unwrap();
    let submitted = submit_train();
    let text = String::from_utf8_lossy(&submitted.stderr).into_owned();
    assert!(submitted.status.success(), "slurm/submit train: {text}");
    let (train, eval) = (job_of_in(&text, "train"), job_of_in(&text, "cifar-eval"));
    let train_log = train_out.join(format!("slurm-logs/train-{train}.out"));
    requeue_once_under_way(cluster, &train, &eval, &train_log);
    let log = read(&train_log);
    let stopped_at = log
        .lines()
        .find_map(|l| l.strip_prefix("train: SIGTERM at step ")?.split(':').next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no checkpoint on the signal: {log}"));
    assert!((8..40).contains(&stopped_at), "{log}");
    assert!(log.contains(&format!("stopped on SIGTERM with a checkpoint at step {stopped_at}")), "{log}");
    assert!(
        log.contains(&format!("(step {stopped_at})")) && log.contains("resuming from"),
        "resumed from the signal's checkpoint: {log}"
    );
    assert!(log.contains("restart 1"), "the same job, requeued: {log}");
    // No step lost, none done twice: one loss row per step.
    let losses = read(&train_out.join("train/losses.csv"));
    assert_eq!(losses.lines().count(), 1 + 40, "{}", &losses[..losses.len().min(300)]);
    let status = whole.wait().unwrap();
    assert!(status.success());
    for name in ["generator.safetensors", "discriminator.safetensors"] {
        let (a, b) = (
            std::fs::read(uninterrupted.join(name)).unwrap(),
            std::fs::read(train_out.join("train").join(name)).unwrap(),
        );
        assert!(a == b, "{name}: the requeued run's weights differ from the uninterrupted run's");
    }
    // cifar-eval was waiting for train: it starts now (its own run is the stage's tests' business).
    let mut seen = Vec::new();
    assert!(
        poll(TIMEOUT, || {
            seen = cluster.states(&eval);
            seen.iter().all(|(_, s, _)| s != "PENDING")
        }),
        "cifar-eval never started after train: {seen:?}"
    );
    cluster.run("scancel", &[&eval]);
    lap("train requeued mid-run, resumed, same weights", &mut step);
}

/// Requeues the train job once it is under way, while cifar-eval waits for it, and lets the
/// requeued job start at once; returns when it has completed.
fn requeue_once_under_way(cluster: &Cluster, train: &str, eval: &str, train_log: &Path) {
    // Requeue once training is under way (progress lines every 0.05 s), well before its 40 steps end.
    let progressed = poll(TIMEOUT, || {
        read(train_log)
            .lines()
            .filter_map(|l| l.strip_prefix("train: ")?.split('/').next()?.parse::<u64>().ok())
            .any(|done| done >= 8)
    });
    assert!(progressed, "train made no progress: {}", read(train_log));
    let before = cluster.states(eval);
    assert!(
        before.iter().all(|(_, s, r)| s == "PENDING" && r == "Dependency"),
        "cifar-eval waits for train: {before:?}"
    );
    cluster.run("scontrol", &["requeue", train]);
    // Slurm holds a requeued job back (BeginTime, ~2 min) and refuses to start it within the second
    // its credential was revoked: once the first run has ended, let it start now.
    let mut seen = Vec::new();
    assert!(
        poll(TIMEOUT, || {
            seen = cluster.states(train);
            seen.iter().any(|(_, s, _)| s == "PENDING")
        }),
        "{seen:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    cluster.run("scontrol", &["update", &format!("jobid={train}"), "StartTime=now"]);
    assert_eq!(cluster.wait_done(train), ["COMPLETED"], "{}", read(train_log));
}

fn job_of_in(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} job in {text}"))
        .trim()
        .to_owned()
}

/// slurm/submit warns when SHARDS is more than the parts of an input (the extra tasks would have
/// nothing to do), for a folder and for a .tar.gz; --dry-run, so no cluster is needed.
#[test]
fn submit_warns_when_shards_exceed_the_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let folder = root.join("photos");
    // 49 images, and two members that are not (as Tiny ImageNet's wnids.txt and words.txt): not counted.
    let mut members: Vec<(String, Vec<u8>)> = (0..49).map(|i| (format!("c0/{i:03}.jpg"), vec![0xff, 0xd8])).collect();
    members.push(("wnids.txt".into(), b"n01443537\n".to_vec()));
    members.push(("words.txt".into(), b"n01443537\tgoldfish\n".to_vec()));
    for (name, bytes) in &members {
        write(&folder.join(name), bytes);
    }
    let archive = root.join("photos.tar.gz");
    write_tar_gz(&archive, members);
    let conf = root.join("test.toml");
    config(&conf, 1.0);
    let dry_run = |input: &Path, shards: &str| {
        let done = Command::new(Path::new(PROJECT).join("slurm/submit"))
            .args(["preprocess", "--dry-run"])
            .env("CONFIG", &conf)
            .env("OUT", root.join("out"))
            .env("IMAGENET_DIR", input)
            .env("FACES_DIR", "")
            .env("LSUN_DIR", "")
            .env("SHARDS", shards)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&done.stderr).into_owned();
        assert!(done.status.success(), "{text}");
        (text, String::from_utf8_lossy(&done.stdout).into_owned())
    };
    // 49 inputs in parts of 4 (test.toml's crop.part_size): 13 parts.
    let warning =
        "SHARDS=20 but the input of crop (IMAGENET_DIR) holds at most 49 images: 13 part(s) of crop.part_size = 4, \
                   so 7 of its 20 tasks will have nothing to do; SHARDS=13 is enough";
    for input in [&folder, &archive] {
        let (text, commands) = dry_run(input, "20");
        assert!(text.contains(warning), "{}: {text}", input.display());
        assert!(commands.contains("--array=0-19"), "the warning changes nothing: {commands}");
        // A stage without input names the configuration it read, not paper.toml.
        let skipped = format!("no input for dedupe (LSUN_DIR= or [paths] in {}), skipping", conf.display());
        assert!(text.contains(&skipped), "{text}");
        let (text, _) = dry_run(input, "13");
        assert!(!text.contains("warning"), "{}: {text}", input.display());
    }
}

/// The slurm-* make targets run on a login node: they never install or build anything (no `setup`
/// before them), and a missing binary is refused with the command that builds it. No cluster needed.
#[test]
fn slurm_make_targets_install_and_build_nothing() {
    for target in ["slurm-preprocess", "slurm-train", "slurm-all", "slurm-status"] {
        let done = Command::new("make").args(["-n", target]).current_dir(PROJECT).output().unwrap();
        let text = String::from_utf8_lossy(&done.stdout);
        assert!(done.status.success(), "make -n {target}: {}", String::from_utf8_lossy(&done.stderr));
        assert!(text.contains("slurm/submit"), "{target}: {text}");
        for word in ["apt-get", "pip", "cargo", "python"] {
            assert!(!text.contains(word), "make {target} would run {word}: {text}");
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let done = Command::new(Path::new(PROJECT).join("slurm/submit"))
        .arg("preprocess")
        .env("BIN", tmp.path().join("nowhere"))
        .env("OUT", tmp.path().join("out"))
        .env("IMAGENET_DIR", tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{text}");
    assert!(text.contains("nowhere/crop is missing: build them first where the toolchain is: make build"), "{text}");
}
