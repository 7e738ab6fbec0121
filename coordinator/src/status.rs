//! The built-in status page: a JSON snapshot of jobs, tasks and workers
//! (`/api/status`) and a self-contained HTML page (`/`, no external assets)
//! that renders it and refreshes every two seconds.

use std::collections::HashMap;

use serde::Serialize;

use crate::plan::{JobMode, TaskKind};
use crate::service::Shared;
use crate::store::JobKind;
use crate::store::{JobRecord, StoreError, TaskState};

/// The status page itself (HTML, CSS and script in one file).
pub const PAGE: &str = include_str!("status.html");

/// Jobs shown on the page (newest first); older ones are counted only.
pub const MAX_JOBS: usize = 50;

/// Everything the page shows.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Unix ms when the snapshot was taken.
    pub now_ms: u64,
    /// Coordinator version.
    pub version: &'static str,
    /// Jobs, newest first (at most [`MAX_JOBS`]).
    pub jobs: Vec<JobView>,
    /// Jobs not shown.
    pub jobs_hidden: usize,
    /// Registered workers, most recently seen first.
    pub workers: Vec<WorkerView>,
}

/// One job.
#[derive(Debug, Serialize)]
pub struct JobView {
    /// Id.
    pub id: String,
    /// Name given at submission.
    pub name: String,
    /// `running`, `finishing`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// `batched` or `succinct`.
    pub mode: &'static str,
    /// Steps proven.
    pub steps: u64,
    /// Steps per leaf proof.
    pub span: usize,
    /// Unix ms of submission.
    pub created_ms: u64,
    /// Unix ms when it ended.
    pub finished_ms: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Steps whose leaf proof is accepted.
    pub steps_done: u64,
    /// Leaf tasks: total and accepted.
    pub leaves: (u32, u32),
    /// Aggregation tasks: total and accepted.
    pub aggregations: (u32, u32),
    /// Tasks leased right now.
    pub leased: u32,
    /// Median proving time of one step (leaf time / steps), seconds.
    pub step_median_s: Option<f64>,
    /// Every task.
    pub tasks: Vec<TaskView>,
}

/// One task of a job.
#[derive(Debug, Serialize)]
pub struct TaskView {
    /// Index in the job's plan.
    pub index: u32,
    /// `steps 0-31` or `aggregation L1 of 2`.
    pub what: String,
    /// `queued`, `leased` or `done`.
    pub state: &'static str,
    /// Worker (name) holding or having proven it.
    pub worker: Option<String>,
    /// Progress of a leased task, 0..1.
    pub progress: f64,
    /// Proving time of a done task, seconds.
    pub prove_s: Option<f64>,
    /// Seconds per step of a done leaf.
    pub per_step_s: Option<f64>,
    /// Times leased.
    pub attempts: u32,
    /// Last failure.
    pub last_error: Option<String>,
    /// Why a queued task waits, when no live worker has the memory it needs.
    pub waiting: Option<String>,
}

/// One worker.
#[derive(Debug, Serialize)]
pub struct WorkerView {
    /// Id.
    pub id: String,
    /// Name it registered with.
    pub name: String,
    /// Cores it reported.
    pub cores: u32,
    /// Memory it reported, bytes.
    pub memory_bytes: u64,
    /// Its version.
    pub version: String,
    /// Seconds since it was last heard from.
    pub seen_s_ago: f64,
    /// Heard from within two lease periods.
    pub live: bool,
    /// Proofs accepted and rejected.
    pub accepted: u64,
    /// Proofs rejected.
    pub rejected: u64,
    /// What it is proving now: `(job, task description, progress)`.
    pub current: Vec<(String, String, f64)>,
    /// Seconds of quarantine left (0: not quarantined): it failed too often.
    pub quarantined_s: f64,
    /// Its last failure, if any since its last accepted proof.
    pub last_failure: Option<String>,
}

fn describe(kind: &TaskKind) -> String {
    match kind {
        TaskKind::Leaf { first, last } if first == last => format!("step {first}"),
        TaskKind::Leaf { first, last } => format!("steps {first}-{last}"),
        TaskKind::Aggregate { level, children } => {
            format!("aggregation L{level} of {}", children.len())
        }
        TaskKind::AuditChunk { chunk } => format!("audit chunk {chunk}"),
        TaskKind::AuditCombine { chunks } => format!("audit combine of {}", chunks.len()),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn job_view(
    s: &Shared,
    job: &JobRecord,
    names: &HashMap<String, String>,
    largest_worker: u64,
) -> Result<JobView, StoreError> {
    let tasks = s.store.tasks(&job.id)?;
    let name_of = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let mut view = JobView {
        id: job.id.clone(),
        name: job.spec.name.clone(),
        state: format!("{:?}", job.state).to_lowercase(),
        mode: match (job.spec.kind, job.spec.mode) {
            (JobKind::Audit, _) => "audit",
            (_, JobMode::Batched) => "batched",
            (_, JobMode::Succinct) => "succinct",
        },
        steps: job.spec.steps,
        span: job.shape.span,
        created_ms: job.created_ms,
        finished_ms: job.finished_ms,
        error: job.error.clone(),
        steps_done: 0,
        leaves: (0, 0),
        aggregations: (0, 0),
        leased: 0,
        step_median_s: None,
        tasks: Vec::with_capacity(tasks.len()),
    };
    let mut per_step = Vec::new();
    for (i, (kind, t)) in job.plan.tasks.iter().zip(tasks.iter()).enumerate() {
        let steps = match kind {
            TaskKind::Leaf { first, last } => Some(last - first + 1),
            _ => None,
        };
        let done = matches!(t.state, TaskState::Done { .. });
        match steps {
            Some(n) => {
                view.leaves.0 += 1;
                if done {
                    view.leaves.1 += 1;
                    view.steps_done += n;
                }
            }
            None => {
                view.aggregations.0 += 1;
                view.aggregations.1 += u32::from(done);
            }
        }
        let (state, worker, prove_s) = match &t.state {
            TaskState::Queued => ("queued", None, None),
            TaskState::Leased { worker, .. } => {
                view.leased += 1;
                ("leased", Some(name_of(worker)), None)
            }
            TaskState::Done {
                worker, prove_ms, ..
            } => ("done", Some(name_of(worker)), Some(*prove_ms as f64 / 1e3)),
        };
        let per_step_s = match (prove_s, steps) {
            (Some(p), Some(n)) if n > 0 => Some(p / n as f64),
            _ => None,
        };
        per_step.extend(per_step_s);
        let need = s.key_prep.task_memory(job, i as u32, kind);
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let waiting =
            (state == "queued" && largest_worker > 0 && need > largest_worker).then(|| {
                format!(
                    "needs about {:.1} GiB; the largest live worker reports {:.1} GiB",
                    gib(need),
                    gib(largest_worker)
                )
            });
        view.tasks.push(TaskView {
            waiting,
            index: i as u32,
            what: describe(kind),
            state,
            worker,
            progress: match state {
                "done" => 1.0,
                "leased" => f64::from(t.progress_milli.min(1000)) / 1e3,
                _ => 0.0,
            },
            prove_s,
            per_step_s,
            attempts: t.attempts,
            last_error: t.last_error.clone(),
        });
    }
    view.step_median_s = median(per_step);
    Ok(view)
}

/// Takes a snapshot of the store for the page.
pub fn snapshot(s: &Shared) -> Result<Snapshot, StoreError> {
    let now = s.clock.now_ms();
    let live_ms = s.cfg.worker_live_ms();
    let mut workers = s.store.workers()?;
    workers.sort_by_key(|w| std::cmp::Reverse(w.last_seen_ms));
    let names: HashMap<String, String> = workers
        .iter()
        .map(|w| (w.id.clone(), w.name.clone()))
        .collect();
    let mut jobs = s.store.jobs()?;
    jobs.sort_by_key(|j| std::cmp::Reverse(j.seq));
    let jobs_hidden = jobs.len().saturating_sub(MAX_JOBS);
    let largest_worker = workers
        .iter()
        .filter(|w| now.saturating_sub(w.last_seen_ms) <= live_ms)
        .map(|w| w.memory_bytes)
        .max()
        .unwrap_or(0);
    let job_views = jobs
        .iter()
        .take(MAX_JOBS)
        .map(|j| job_view(s, j, &names, largest_worker))
        .collect::<Result<Vec<_>, _>>()?;
    // Current work of each worker, from the live leases.
    let mut current: HashMap<String, Vec<(String, String, f64)>> = HashMap::new();
    for (_, l) in s.store.leases()? {
        let what = job_views
            .iter()
            .find(|j| j.id == l.job)
            .and_then(|j| j.tasks.get(l.index as usize))
            .map(|t| (t.what.clone(), t.progress))
            .unwrap_or_else(|| (format!("task {}", l.index), 0.0));
        current
            .entry(l.worker.clone())
            .or_default()
            .push((l.job.clone(), what.0, what.1));
    }
    Ok(Snapshot {
        now_ms: now,
        version: env!("CARGO_PKG_VERSION"),
        jobs: job_views,
        jobs_hidden,
        workers: workers
            .into_iter()
            .map(|w| {
                let ago = now.saturating_sub(w.last_seen_ms);
                let health = s.store.health(&w.id).unwrap_or_default();
                WorkerView {
                    quarantined_s: health.quarantined_until_ms.saturating_sub(now) as f64 / 1e3,
                    last_failure: health.last_failure,
                    current: current.remove(&w.id).unwrap_or_default(),
                    id: w.id,
                    name: w.name,
                    cores: w.cores,
                    memory_bytes: w.memory_bytes,
                    version: w.version,
                    seen_s_ago: ago as f64 / 1e3,
                    live: ago <= live_ms,
                    accepted: w.accepted,
                    rejected: w.rejected,
                }
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_lists() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn tasks_are_described_by_their_steps_or_level() {
        assert_eq!(describe(&TaskKind::Leaf { first: 3, last: 3 }), "step 3");
        assert_eq!(
            describe(&TaskKind::Leaf { first: 0, last: 31 }),
            "steps 0-31"
        );
        assert_eq!(
            describe(&TaskKind::Aggregate {
                level: 2,
                children: vec![4, 5]
            }),
            "aggregation L2 of 2"
        );
    }

    #[test]
    fn the_page_is_self_contained() {
        // No external scripts, styles or fonts: the page must work offline.
        for needle in ["http://", "https://", "//cdn", "<link"] {
            assert!(!PAGE.contains(needle), "status page references {needle}");
        }
        assert!(PAGE.contains("api/status"));
    }
}
