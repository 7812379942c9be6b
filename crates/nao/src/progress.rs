//! Progress of pulls and verification on stderr: an indicatif bar (bytes, rate, ETA) on a
//! terminal; plain lines (start, every 10 s, end) otherwise, so logs and CI output stay
//! readable instead of filling with carriage returns. Plain mode stays silent for phases
//! under 16 MiB (a small file is verified before the user could read the line).

use indicatif::{ProgressBar, ProgressStyle};
use nao_store::Progress;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Phases smaller than this print no plain lines.
const QUIET_BELOW: u64 = 16 << 20;

pub struct TermProgress {
    tty: bool,
    bar: Option<ProgressBar>,
    label: String,
    total: Option<u64>,
    done: u64,
    start_done: u64,
    started: Instant,
    last_line: Instant,
}

impl TermProgress {
    pub fn new() -> Self {
        TermProgress {
            tty: std::io::stderr().is_terminal(),
            bar: None,
            label: String::new(),
            total: None,
            done: 0,
            start_done: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn plain_line(&self) {
        if self.total.is_some_and(|t| t < QUIET_BELOW) {
            return;
        }
        let rate =
            (self.done - self.start_done) as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let of = match self.total {
            Some(t) if t > 0 => format!(
                " of {} ({:.0}%)",
                crate::cli::human_bytes(t),
                self.done as f64 * 100.0 / t as f64
            ),
            _ => String::new(),
        };
        eprintln!(
            "{}: {}{of}, {}/s",
            self.label,
            crate::cli::human_bytes(self.done),
            crate::cli::human_bytes(rate as u64)
        );
    }
}

impl Progress for TermProgress {
    fn begin(&mut self, what: &str, total: Option<u64>, done: u64) {
        self.label = what.to_string();
        self.total = total;
        self.done = done;
        self.start_done = done;
        self.started = Instant::now();
        self.last_line = Instant::now();
        if self.tty {
            let bar = match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            } else {
                "{msg} {spinner} {bytes} {bytes_per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what.to_string());
            bar.set_position(done);
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(bar);
        } else {
            self.plain_line();
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        } else if self.last_line.elapsed() >= Duration::from_secs(10) {
            self.last_line = Instant::now();
            self.plain_line();
        }
    }

    fn end(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {} in {secs:.1}s",
                self.label,
                crate::cli::human_bytes(self.done)
            );
        } else {
            self.plain_line();
        }
    }

    fn note(&mut self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => eprintln!("{msg}"),
        }
    }
}
