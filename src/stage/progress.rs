//! Progress of long work: a bar on a terminal, a plain line every few seconds in logs.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: Option<u64>,
    bar: Option<indicatif::ProgressBar>,
    done: AtomicU64,
    started: Instant,
    log_every: Duration,
    last_log: Mutex<Instant>,
}

impl Progress {
    pub fn new(label: &str, total: Option<u64>, log_every_s: f64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta}) {msg}"
            } else {
                "{prefix} [{elapsed_precise}] {spinner} {pos} ({per_sec}) {msg}"
            };
            bar.set_style(indicatif::ProgressStyle::with_template(template).expect("valid template"));
            bar.set_prefix(label.to_owned());
            bar
        });
        let now = Instant::now();
        Self {
            label: label.to_owned(),
            total,
            bar,
            done: AtomicU64::new(0),
            started: now,
            log_every: Duration::from_secs_f64(log_every_s.max(0.1)),
            last_log: Mutex::new(now),
        }
    }

    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
            return;
        }
        let mut last = self.last_log.lock().expect("progress lock");
        if last.elapsed() >= self.log_every {
            *last = Instant::now();
            eprintln!("{}", self.line(done));
        }
    }

    /// A message beside the bar, or a log line. Control characters (a file name's newline or ANSI
    /// escape) are shown escaped, so a message is always one line and never drives the terminal.
    pub fn note(&self, message: &str) {
        let message = crate::data::names::for_terminal(message);
        match &self.bar {
            Some(bar) => bar.println(format!("{}: {message}", self.label)),
            None => eprintln!("{}: {message}", self.label),
        }
    }

    fn line(&self, done: u64) -> String {
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        match self.total {
            // The time left at the rate so far (the bar on a terminal shows indicatif's estimate).
            Some(total) if done < total && rate > 0.0 => {
                let left = (total - done) as f64 / rate;
                format!("{}: {done}/{total} ({rate:.1}/s, about {:.0} s left)", self.label, left.ceil())
            }
            Some(total) => format!("{}: {done}/{total} ({rate:.1}/s)", self.label),
            None => format!("{}: {done} ({rate:.1}/s)", self.label),
        }
    }

    pub fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish(),
            None => eprintln!("{}", self.line(self.done.load(Ordering::Relaxed))),
        }
    }
}
