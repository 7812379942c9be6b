//! `/metrics` in Prometheus text format, and the per-request log line.
//!
//! Written by hand from atomics rather than through the `metrics` crate: the set is small
//! and fixed, and the exporter would cost more build time than this file. Engine-side
//! numbers (queue depth, KV blocks, token totals) come from [`EngineStats`] at scrape
//! time, aggregated over the models served (token counters include models unloaded since
//! start, so they never go down; gauges are of the models loaded now, whose number is
//! `nao_models_loaded`); latency histograms are measured here, from event arrival times, so they include
//! what a client actually waits for (queueing, prefill, channel hops).

use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nao_engine::api::EngineStats;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the time-to-first-token buckets.
const TTFT_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds (seconds) of the time-per-output-token buckets.
const TPOT_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket histogram; the sum is kept in microseconds so it fits an atomic.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts per bucket, plus one for `+Inf`.
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cum = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c.load(Ordering::Relaxed);
            match self.bounds.get(i) {
                Some(b) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
                }
            }
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cum}");
    }
}

/// Server-side counters.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by (endpoint label, status). A mutex, not atomics: the label set is open
    /// (any status) and it is touched once per request.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub ttft: Histogram,
    pub tpot: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            ttft: Histogram::new(&TTFT_BUCKETS),
            tpot: Histogram::new(&TPOT_BUCKETS),
        }
    }
}

impl Metrics {
    pub fn count_request(&self, endpoint: &'static str, status: u16) {
        // A poisoned lock only means another thread panicked mid-increment; the map is
        // still a valid map, so keep counting.
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((endpoint, status)).or_insert(0) += 1;
    }

    pub fn render(&self, stats: &EngineStats, models_loaded: usize) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP nao_requests_total HTTP requests by endpoint and status.\n");
        out.push_str("# TYPE nao_requests_total counter\n");
        {
            let map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            for ((endpoint, status), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "nao_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {v}");
        };
        let s = stats;
        metric(
            "nao_prompt_tokens_total",
            "counter",
            "Prompt tokens processed (computed or cached).",
            s.prompt_tokens,
        );
        metric(
            "nao_generation_tokens_total",
            "counter",
            "Tokens generated.",
            s.generated_tokens,
        );
        metric(
            "nao_prefix_cache_hit_tokens_total",
            "counter",
            "Prompt tokens served from the prefix cache.",
            s.prefix_cache_hit_tokens,
        );
        metric(
            "nao_preemptions_total",
            "counter",
            "Sequences preempted for lack of KV blocks.",
            s.preemptions,
        );
        metric(
            "nao_requests_waiting",
            "gauge",
            "Requests queued for their first step.",
            s.waiting as u64,
        );
        metric(
            "nao_requests_running",
            "gauge",
            "Sequences being computed.",
            s.running as u64,
        );
        metric(
            "nao_kv_blocks_used",
            "gauge",
            "KV cache blocks in use.",
            s.kv_blocks_used as u64,
        );
        metric(
            "nao_kv_blocks_free",
            "gauge",
            "KV cache blocks free.",
            s.kv_blocks_total.saturating_sub(s.kv_blocks_used) as u64,
        );
        metric(
            "nao_models_loaded",
            "gauge",
            "Models loaded now.",
            models_loaded as u64,
        );
        self.ttft.render(
            &mut out,
            "nao_time_to_first_token_seconds",
            "Time from submission to the first generated text, per sequence.",
        );
        self.tpot.render(
            &mut out,
            "nao_time_per_output_token_seconds",
            "Mean time between output tokens after the first, per sequence.",
        );
        out
    }
}

/// The `endpoint` label: fixed strings only, so a scanner probing random URLs cannot grow
/// the label set without bound.
fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/v1/models" => "/v1/models",
        "/health" | "/healthz" => "/health",
        "/metrics" => "/metrics",
        "/api/generate" => "/api/generate",
        "/api/chat" => "/api/chat",
        "/api/tags" => "/api/tags",
        "/api/show" => "/api/show",
        "/api/ps" => "/api/ps",
        "/api/version" => "/api/version",
        "/" => "/",
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        _ => "other",
    }
}

/// Token counts a handler attaches to its response for the log line.
#[derive(Debug, Clone, Copy)]
pub struct LogTokens {
    pub prompt: usize,
    pub completion: usize,
}

/// Marks a streamed response: its body logs the line itself when it ends, with the full
/// duration and the token counts, which are unknown when the headers go out.
#[derive(Debug, Clone, Copy)]
pub struct LoggedByStream;

/// Status recorded for a request whose client left before the response was ready
/// (nginx's convention; it is never sent).
const CLIENT_CLOSED: u16 = 499;

/// Counts every request by endpoint and status and logs one line to stderr.
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let mut guard = Unfinished {
        state: state.clone(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        start: Instant::now(),
        done: false,
    };
    let resp = next.run(req).await;
    guard.done = true;
    let status = resp.status().as_u16();
    state
        .metrics
        .count_request(endpoint_label(&guard.path), status);
    if resp.extensions().get::<LoggedByStream>().is_none() {
        let tokens = resp.extensions().get::<LogTokens>().copied();
        log_line(
            &guard.method,
            &guard.path,
            status,
            guard.start.elapsed(),
            tokens,
            "",
        );
    }
    resp
}

/// Logs and counts a request whose handler future was dropped: hyper does that when the
/// client disconnects before a non-streamed response is ready.
struct Unfinished {
    state: Arc<AppState>,
    method: String,
    path: String,
    start: Instant,
    done: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.state
            .metrics
            .count_request(endpoint_label(&self.path), CLIENT_CLOSED);
        let note = " (client disconnected)";
        log_line(
            &self.method,
            &self.path,
            CLIENT_CLOSED,
            self.start.elapsed(),
            None,
            note,
        );
    }
}

pub fn log_line(
    method: &str,
    path: &str,
    status: u16,
    took: Duration,
    tokens: Option<LogTokens>,
    note: &str,
) {
    let tokens = match tokens {
        Some(t) => format!(
            " prompt_tokens={} completion_tokens={}",
            t.prompt, t.completion
        ),
        None => String::new(),
    };
    eprintln!(
        "{method} {path} {status} {:.1}ms{tokens}{note}",
        took.as_secs_f64() * 1e3
    );
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = state
        .metrics
        .render(&state.models.stats(), state.models.loaded().len());
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::new(&TTFT_BUCKETS);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(200));
        h.observe(Duration::from_secs(100));
        let mut s = String::new();
        h.render(&mut s, "x", "h");
        assert!(s.contains("x_bucket{le=\"0.01\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.25\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"60\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_count 3\n"), "{s}");
        assert!(s.contains("x_sum 100.205\n"), "{s}");
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(endpoint_label("/v1/models/abc"), "/v1/models/{id}");
        assert_eq!(endpoint_label("/whatever/../x"), "other");
        assert_eq!(endpoint_label("/healthz"), "/health");
        assert_eq!(endpoint_label("/api/chat"), "/api/chat");
        assert_eq!(endpoint_label("/api/pull"), "other");
    }
}
