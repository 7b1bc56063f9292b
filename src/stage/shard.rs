//! `--shard INDEX/COUNT`: which parts of the input this process owns, and the lock that keeps two
//! runs off the same parts.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use super::lock::{live_locks, OutputLock};
use super::parts::parts_dir;

/// Shard `index` of `count`: owns the parts p with p % count == index, so the same binary fans
/// out under a job array (Slurm's SLURM_ARRAY_TASK_ID, Kubernetes' JOB_COMPLETION_INDEX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: u64,
    pub count: u64,
}

impl ShardSpec {
    pub const WHOLE: ShardSpec = ShardSpec { index: 0, count: 1 };

    pub fn owns_part(&self, part: u64) -> bool {
        part % self.count == self.index
    }

    pub fn is_whole(&self) -> bool {
        self.count == 1
    }
}

impl Default for ShardSpec {
    fn default() -> Self {
        Self::WHOLE
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for ShardSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}': expected INDEX/COUNT with 0 <= INDEX < COUNT, for example 3/16");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

fn shard_lock_path(output: &Path, shard: ShardSpec) -> PathBuf {
    parts_dir(output).join(format!("lock-shard-{}-of-{}", shard.index, shard.count))
}

/// Locks this shard's parts of `output` against a second run of the same parts (the same shard,
/// or an overlapping one of another shard count); the error names the run that has them.
pub(super) fn lock_shard(output: &Path, shard: ShardSpec, stage: &str) -> Result<OutputLock> {
    std::fs::create_dir_all(parts_dir(output))
        .with_context(|| format!("{}: cannot create the output folder", output.display()))?;
    let what = if shard.is_whole() { stage.to_owned() } else { format!("{stage} shard {shard}") };
    let lock = OutputLock::acquire(&shard_lock_path(output, shard), &what)?;
    for (name, holder) in live_locks(&parts_dir(output), "lock-shard-") {
        let Some(other) = parse_lock_name(&name) else { continue };
        if other != shard && shards_overlap(other, shard) {
            bail!(
                "{}: its parts overlap those of {} which is writing into this folder; wait for it to finish",
                output.display(),
                holder.describe()
            );
        }
    }
    Ok(lock)
}

fn parse_lock_name(name: &str) -> Option<ShardSpec> {
    let (i, n) = name.strip_prefix("lock-shard-")?.split_once("-of-")?;
    format!("{i}/{n}").parse().ok()
}

/// Whether two shards share a part: p = a.index (mod a.count) and p = b.index (mod b.count) has a
/// solution exactly when the indices agree modulo gcd(a.count, b.count).
fn shards_overlap(a: ShardSpec, b: ShardSpec) -> bool {
    let gcd = |mut x: u64, mut y: u64| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    let g = gcd(a.count, b.count);
    a.index % g == b.index % g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("2/4".parse::<ShardSpec>().unwrap(), ShardSpec { index: 2, count: 4 });
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2"] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_partition_the_parts() {
        let shards: Vec<ShardSpec> = (0..3).map(|index| ShardSpec { index, count: 3 }).collect();
        for part in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.owns_part(part)).count(), 1);
        }
    }

    #[test]
    fn overlapping_shards_of_different_counts_are_found() {
        let s = |index, count| ShardSpec { index, count };
        assert!(shards_overlap(s(0, 1), s(3, 4)), "the whole run owns every part");
        assert!(shards_overlap(s(1, 2), s(3, 4)), "part 3");
        assert!(!shards_overlap(s(0, 2), s(3, 4)));
        assert!(!shards_overlap(s(0, 4), s(1, 4)));
        assert_eq!(parse_lock_name("lock-shard-3-of-4"), Some(s(3, 4)));
        assert_eq!(parse_lock_name(".lock-shard-3-of-4.12.partial"), None);
    }
}
