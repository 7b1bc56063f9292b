//! Stopping early when asked to: a cluster signals a job before it kills it (Slurm: SIGTERM on
//! `scontrol requeue`, on preemption and at the time limit, then SIGKILL after KillWait, 30 s by
//! default; `--signal=B:USR1@300` asks for SIGUSR1 five minutes ahead). A long stage checks
//! [`requested`] between steps, saves its state at once and exits with [`EXIT_PREEMPTED`], so that
//! the requeued job resumes from there. Ctrl-C does the same; a second Ctrl-C ends the process at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

/// Exit status of a stage that stopped on a signal with its state saved (EX_TEMPFAIL: run it
/// again to continue).
pub const EXIT_PREEMPTED: i32 = 75;

/// The signal that asked us to stop (0: none yet).
static RECEIVED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Catches SIGTERM, SIGUSR1 and SIGINT from now on (idempotent). Several SIGTERMs are one request:
/// Slurm may signal the job's shell and the stage both, and the shell forwards its own.
pub fn install() -> std::io::Result<()> {
    if RECEIVED.get().is_some() {
        return Ok(());
    }
    let received = Arc::new(AtomicUsize::new(0));
    let interrupted = Arc::new(AtomicBool::new(false));
    // A second Ctrl-C: the default action (end now). Registered first so that the first one only
    // arms it.
    signal_hook::flag::register_conditional_default(SIGINT, interrupted.clone())?;
    signal_hook::flag::register(SIGINT, interrupted)?;
    for signal in [SIGTERM, SIGUSR1, SIGINT] {
        signal_hook::flag::register_usize(signal, received.clone(), signal as usize)?;
    }
    let _ = RECEIVED.set(received);
    Ok(())
}

/// Whether a stop was asked for since [`install`].
pub fn requested() -> bool {
    received().is_some()
}

/// The name of the signal that asked to stop, if one did.
pub fn received() -> Option<&'static str> {
    let signal = RECEIVED.get()?.load(Ordering::Relaxed) as i32;
    match signal {
        0 => None,
        SIGTERM => Some("SIGTERM"),
        SIGUSR1 => Some("SIGUSR1"),
        SIGINT => Some("SIGINT"),
        _ => Some("a signal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_is_recorded_not_fatal() {
        install().unwrap();
        install().unwrap();
        assert!(!requested());
        signal_hook::low_level::raise(SIGUSR1).unwrap();
        // Delivered synchronously to the raising thread.
        assert_eq!(received(), Some("SIGUSR1"));
        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert!(requested(), "a second signal leaves the process running");
    }
}
