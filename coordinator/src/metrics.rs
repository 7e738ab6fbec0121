//! Prometheus metrics of the coordinator (text exposition format) and the
//! HTTP endpoint that serves them with the health check and the status page.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::service::Shared;
use crate::store::{JobState, TaskState};

/// Upper bounds (seconds) of the step prove-time histogram.
pub const STEP_BUCKETS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// Counters and histograms updated by the services.
#[derive(Default)]
pub struct Metrics {
    /// Proofs accepted after verification.
    pub proofs_accepted: AtomicU64,
    /// Proofs that failed verification.
    pub proofs_rejected: AtomicU64,
    /// Leases that expired (worker stopped heartbeating).
    pub lease_expiries: AtomicU64,
    /// Tasks reported failed by workers.
    pub task_failures: AtomicU64,
    /// Jobs submitted.
    pub jobs_submitted: AtomicU64,
    /// Step prove-time histogram: counts per bucket (plus +Inf).
    step_buckets: [AtomicU64; STEP_BUCKETS.len() + 1],
    /// Sum of step prove times in milliseconds.
    step_sum_ms: AtomicU64,
    /// Verification time of returned proofs, sum in milliseconds.
    pub verify_ms: AtomicU64,
}

impl Metrics {
    /// Records the time to prove one step (a leaf's time divided by its steps).
    pub fn observe_step(&self, seconds: f64) {
        let i = STEP_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(STEP_BUCKETS.len());
        self.step_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.step_sum_ms
            .fetch_add((seconds * 1e3) as u64, Ordering::Relaxed);
    }
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

/// Renders every metric; gauges are read from the store.
pub fn render(s: &Shared) -> String {
    let m = &s.metrics;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    counter(
        &mut out,
        "zkaudit_proofs_accepted_total",
        "Proofs accepted after verification.",
        get(&m.proofs_accepted),
    );
    counter(
        &mut out,
        "zkaudit_proofs_rejected_total",
        "Proofs that failed verification.",
        get(&m.proofs_rejected),
    );
    counter(
        &mut out,
        "zkaudit_lease_expiries_total",
        "Leases that expired because a worker stopped heartbeating.",
        get(&m.lease_expiries),
    );
    counter(
        &mut out,
        "zkaudit_task_failures_total",
        "Task failures reported by workers.",
        get(&m.task_failures),
    );
    counter(
        &mut out,
        "zkaudit_jobs_submitted_total",
        "Jobs submitted.",
        get(&m.jobs_submitted),
    );
    counter(
        &mut out,
        "zkaudit_verify_milliseconds_total",
        "Time spent verifying returned proofs.",
        get(&m.verify_ms),
    );
    // Step prove time.
    let _ = writeln!(
        out,
        "# HELP zkaudit_step_prove_seconds Time to prove one step (leaf time / steps).\n# TYPE zkaudit_step_prove_seconds histogram"
    );
    let mut cum = 0;
    for (i, b) in STEP_BUCKETS.iter().enumerate() {
        cum += get(&m.step_buckets[i]);
        let _ = writeln!(out, "zkaudit_step_prove_seconds_bucket{{le=\"{b}\"}} {cum}");
    }
    cum += get(&m.step_buckets[STEP_BUCKETS.len()]);
    let _ = writeln!(
        out,
        "zkaudit_step_prove_seconds_bucket{{le=\"+Inf\"}} {cum}"
    );
    let _ = writeln!(
        out,
        "zkaudit_step_prove_seconds_sum {}\nzkaudit_step_prove_seconds_count {cum}",
        get(&m.step_sum_ms) as f64 / 1e3
    );
    // Gauges from the store.
    let mut tasks = [0u64; 3];
    let mut jobs = [0u64; 5];
    if let Ok(all) = s.store.jobs() {
        for j in all {
            jobs[j.state as usize] += 1;
            if j.state.is_terminal() {
                continue;
            }
            for t in s.store.tasks(&j.id).unwrap_or_default() {
                tasks[match t.state {
                    TaskState::Queued => 0,
                    TaskState::Leased { .. } => 1,
                    TaskState::Done { .. } => 2,
                }] += 1;
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP zkaudit_tasks Tasks of unfinished jobs by state.\n# TYPE zkaudit_tasks gauge"
    );
    for (i, name) in ["queued", "leased", "done"].iter().enumerate() {
        let _ = writeln!(out, "zkaudit_tasks{{state=\"{name}\"}} {}", tasks[i]);
    }
    let _ = writeln!(
        out,
        "# HELP zkaudit_jobs Jobs by state.\n# TYPE zkaudit_jobs gauge"
    );
    for st in [
        JobState::Running,
        JobState::Finishing,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
    ] {
        let _ = writeln!(
            out,
            "zkaudit_jobs{{state=\"{}\"}} {}",
            format!("{st:?}").to_lowercase(),
            jobs[st as usize]
        );
    }
    let now = s.clock.now_ms();
    let live = s
        .store
        .workers()
        .unwrap_or_default()
        .iter()
        .filter(|w| now.saturating_sub(w.last_seen_ms) <= s.cfg.worker_live_ms())
        .count();
    let _ = writeln!(
        out,
        "# HELP zkaudit_workers Workers seen within two lease periods.\n# TYPE zkaudit_workers gauge\nzkaudit_workers {live}"
    );
    let quarantined = s.store.quarantined(now).map(|v| v.len()).unwrap_or(0);
    let _ = writeln!(
        out,
        "# HELP zkaudit_workers_quarantined Workers given no task for now: they failed three times in a row.\n# TYPE zkaudit_workers_quarantined gauge\nzkaudit_workers_quarantined {quarantined}"
    );
    out
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let body = tokio::task::spawn_blocking(move || render(&s))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn health(State(s): State<Arc<Shared>>) -> Response {
    match s.store.jobs() {
        Ok(_) => "ok\n".into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("store: {e}\n"),
        )
            .into_response(),
    }
}

async fn status_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        crate::status::PAGE,
    )
        .into_response()
}

async fn status_json(State(s): State<Arc<Shared>>) -> Response {
    let snap = tokio::task::spawn_blocking(move || {
        crate::status::snapshot(&s)
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::to_string(&v).map_err(|e| e.to_string()))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match snap {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("store: {e}\n"),
        )
            .into_response(),
    }
}

/// The HTTP routes: `/` (status page), `/api/status`, `/metrics`, `/healthz`.
pub fn router(s: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/api/status", get(status_json))
        .route("/metrics", get(metrics))
        .route("/healthz", get(health))
        .with_state(s)
}
