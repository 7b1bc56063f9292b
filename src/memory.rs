//! Memory a piece of work needs, checked before it starts.
//!
//! A model, a batch or a sample count too big for the machine used to meet a failed allocation
//! inside libtorch (a panic) or the kernel's out-of-memory killer. The stages that run a network
//! estimate what it needs first (the estimates: [`crate::gan::footprint`]) and refuse, with the
//! estimate and the limit, what exceeds the budget: `run.max_memory_gb` when set, otherwise what
//! the machine has (MemAvailable in /proc/meminfo for the CPU; the GPU's memory, as nvidia-smi
//! reports it, for CUDA).

use std::path::Path;

/// Bytes in a GiB.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// What a piece of work is estimated to need: bytes, and how they were counted (shown when refused).
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Floating point: a hostile size gives a huge number (or infinity), never an overflow.
    pub bytes: f64,
    pub formula: String,
}

/// The most a piece of work may use, and where that figure comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub bytes: f64,
    pub source: String,
}

/// A refusal: the work, its estimate and the budget, on one line.
#[derive(Debug, thiserror::Error)]
#[error("{what} needs about {} by estimate ({formula}), more than {} ({limit_source}); {hint}", gib(*.bytes), gib(*.limit))]
pub struct TooBig {
    pub what: String,
    pub bytes: f64,
    pub formula: String,
    pub limit: f64,
    pub limit_source: String,
    pub hint: String,
}

/// `bytes` as GiB, readable at any size.
pub fn gib(bytes: f64) -> String {
    let g = bytes / GIB;
    if g >= 100.0 {
        format!("{g:.3e} GiB")
    } else {
        format!("{g:.2} GiB")
    }
}

/// A count as 1.2k, 3.4M, 5.6G, 7.8T or 9.0e18.
pub fn count(n: f64) -> String {
    if n >= 1e15 {
        return format!("{n:.1e}");
    }
    for (unit, scale) in [("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)] {
        if n >= scale {
            return format!("{:.1}{unit}", n / scale);
        }
    }
    format!("{n:.0}")
}

/// MemAvailable of a /proc/meminfo text, in bytes.
pub fn parse_mem_available(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// The memory this machine has available now (Linux's MemAvailable), if it can be read.
pub fn host_available() -> Option<f64> {
    parse_mem_available(&std::fs::read_to_string(Path::new("/proc/meminfo")).ok()?)
}

/// Total memory of CUDA device `index` as nvidia-smi reports it, when nvidia-smi is there.
pub fn gpu_total(index: usize) -> Option<f64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.total", "--format=csv,noheader,nounits", &format!("--id={index}")])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let mib: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some(mib * 1024.0 * 1024.0)
}

/// The budget: `max_memory_gb` (GiB) when above 0, else the memory of `cuda` (a CUDA device's
/// index) or of the host. None where the machine's figure cannot be read and none is set.
pub fn budget(max_memory_gb: f64, cuda: Option<usize>) -> Option<Budget> {
    if max_memory_gb > 0.0 {
        return Some(Budget { bytes: max_memory_gb * GIB, source: format!("run.max_memory_gb = {max_memory_gb}") });
    }
    match cuda {
        Some(i) => gpu_total(i).map(|bytes| Budget { bytes, source: format!("the memory of CUDA device {i}") }),
        None => host_available().map(|bytes| Budget { bytes, source: "the memory available (MemAvailable)".into() }),
    }
}

/// Refuses `estimate` when it exceeds `budget` (no budget: nothing to check against).
pub fn check(what: &str, estimate: &Estimate, budget: Option<&Budget>, hint: &str) -> Result<(), TooBig> {
    let Some(budget) = budget else { return Ok(()) };
    // A NaN estimate is refused too (an infinite one is above any budget).
    if estimate.bytes.is_nan() || estimate.bytes > budget.bytes {
        return Err(TooBig {
            what: what.to_owned(),
            bytes: estimate.bytes,
            formula: estimate.formula.clone(),
            limit: budget.bytes,
            limit_source: budget.source.clone(),
            hint: hint.to_owned(),
        });
    }
    Ok(())
}

/// How many of `wanted` workers fit in `budget` when each may hold `per_worker` bytes at once
/// (at least one: a single worker is what a run cannot do without).
pub fn workers_within(wanted: usize, per_worker: f64, budget: Option<&Budget>) -> usize {
    let Some(budget) = budget else { return wanted.max(1) };
    if per_worker.is_nan() || per_worker <= 0.0 {
        return wanted.max(1);
    }
    let fit = (budget.bytes / per_worker).floor();
    if fit >= wanted as f64 {
        wanted.max(1)
    } else {
        (fit as usize).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_as_many_as_fit() {
        let budget = Budget { bytes: 6.0 * GIB, source: "x".into() };
        assert_eq!(workers_within(12, 1.5 * GIB, Some(&budget)), 4);
        assert_eq!(workers_within(2, 1.5 * GIB, Some(&budget)), 2);
        assert_eq!(workers_within(12, 10.0 * GIB, Some(&budget)), 1);
        assert_eq!(workers_within(12, 1.5 * GIB, None), 12);
        assert_eq!(workers_within(12, f64::NAN, Some(&budget)), 12);
    }

    #[test]
    fn counts_read_at_any_size() {
        assert_eq!((count(2.5e9).as_str(), count(9e18).as_str(), count(512.0).as_str()), ("2.5G", "9.0e18", "512"));
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       24683792 kB\nMemFree:         6953076 kB\nMemAvailable:   20985596 kB\n";
        assert_eq!(parse_mem_available(text), Some(20_985_596.0 * 1024.0));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn an_estimate_over_the_budget_is_refused_with_both_figures() {
        let budget = Budget { bytes: 2.0 * GIB, source: "run.max_memory_gb = 2".into() };
        let small = Estimate { bytes: GIB, formula: "x".into() };
        assert!(check("w", &small, Some(&budget), "h").is_ok());
        let big = Estimate { bytes: 3.0 * GIB, formula: "3 things".into() };
        let e = check("the model", &big, Some(&budget), "lower it").unwrap_err().to_string();
        assert!(e.contains("3.00 GiB") && e.contains("2.00 GiB") && e.contains("run.max_memory_gb = 2"), "{e}");
        assert!(e.contains("3 things") && e.contains("lower it") && !e.contains('\n'), "{e}");
        let infinite = Estimate { bytes: f64::INFINITY, formula: "x".into() };
        assert!(check("w", &infinite, Some(&budget), "h").is_err());
        assert!(check("w", &big, None, "h").is_ok(), "no budget, no check");
    }

    #[test]
    fn a_configured_limit_wins_over_the_machine() {
        let b = budget(1.5, None).unwrap();
        assert_eq!(b.bytes, 1.5 * GIB);
        assert!(b.source.contains("run.max_memory_gb"));
    }
}
