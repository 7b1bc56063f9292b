//! What a step of the whole-set pass cost: wall time, CPU time (user + system, all threads: on a
//! shared machine the wall time says more about the neighbours than about the step) and the peak
//! resident memory during the step (Linux: the process's high-water mark is reset before the step
//! through /proc/self/clear_refs, then read from /proc/self/status).

use std::time::Instant;

use serde::Serialize;

/// One step's cost.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct StepUsage {
    pub wall_s: f64,
    pub cpu_s: f64,
    /// None where /proc does not say (not Linux).
    pub peak_rss_mib: Option<f64>,
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat (clock ticks of 1/100 s).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (user, system): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    Some((user + system) / 100.0)
}

/// The resident memory's high-water mark, MiB (VmHWM).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Starts a new high-water mark (false where the kernel does not allow it).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Runs `f` and says what it cost.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, StepUsage) {
    let reset = reset_peak_rss();
    let (cpu, started) = (cpu_seconds(), Instant::now());
    let out = f();
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = match (cpu, cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    (out, StepUsage { wall_s, cpu_s, peak_rss_mib: if reset { peak_rss_mib() } else { None } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_that_spins_and_allocates_is_measured() {
        let (sum, usage) = measure(|| {
            let data = vec![1u8; 64 << 20];
            // Touch every page and spin a little: CPU time and memory both show.
            let mut sum = 0u64;
            for _ in 0..20 {
                sum += data.iter().map(|&v| u64::from(v)).sum::<u64>();
            }
            sum
        });
        assert_eq!(sum, 20 * (64 << 20));
        assert!(usage.wall_s > 0.0 && usage.cpu_s >= 0.0, "{usage:?}");
        if cfg!(target_os = "linux") {
            let peak = usage.peak_rss_mib.expect("Linux reports the high-water mark");
            assert!(peak >= 64.0, "peak {peak} MiB while holding 64 MiB");
        }
    }
}
