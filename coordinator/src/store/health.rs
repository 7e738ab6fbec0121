//! Worker health: which failures count against a task and which against the
//! worker that reported them, where a failed task may go next, and the
//! quarantine of workers that keep failing.
//!
//! - A failure caused by the worker's own setup (a missing SRS, an unwritable
//!   key cache: [`Blame::Worker`]) gives the task its attempt back: one broken
//!   worker cannot spend a job's retry budget.
//! - A task that failed (or whose proof was rejected, or whose lease expired)
//!   is not leased to the same worker again for [`Store::retry_elsewhere_ms`],
//!   so another worker gets it first.
//! - A worker with [`QUARANTINE_AFTER`] failures or rejected proofs in a row
//!   gets no task for [`Store::quarantine_ms`]; an accepted proof resets the
//!   count. Quarantines are shown on the status page and in metrics.
//!
//! Kept in trees of their own (`credits`, `avoid`, `health`) so that the
//! records of existing stores decode unchanged.

use serde::{Deserialize, Serialize};

use super::{dec, enc, Result, Store};

/// Failures in a row after which a worker is quarantined.
pub const QUARANTINE_AFTER: u32 = 3;

/// Who a task failure is charged to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The task (an expired lease, a rejected proof, a retryable failure):
    /// one attempt of its budget.
    Task,
    /// The task can never succeed: its job fails.
    Fatal,
    /// The reporting worker's own setup: the attempt is given back.
    Worker,
}

/// What the store knows of a worker's recent failures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerHealth {
    /// Failures and rejected proofs since its last accepted proof.
    pub failures_in_a_row: u32,
    /// Unix ms until which it gets no task (0: not quarantined).
    pub quarantined_until_ms: u64,
    /// Its last failure.
    pub last_failure: Option<String>,
}

impl WorkerHealth {
    /// Whether the worker is in quarantine at `now_ms`.
    pub fn quarantined(&self, now_ms: u64) -> bool {
        self.quarantined_until_ms > now_ms
    }
}

/// Key of a task in the `credits` and `avoid` trees (the task key).
pub(super) type TaskKey = [u8];

impl Store {
    /// A worker's health record (default when it never failed).
    pub fn health(&self, worker: &str) -> Result<WorkerHealth> {
        match self.health.get(worker.as_bytes())? {
            Some(v) => dec(worker.as_bytes(), &v),
            None => Ok(WorkerHealth::default()),
        }
    }

    fn update_health(&self, worker: &str, f: impl Fn(&mut WorkerHealth)) -> Result<WorkerHealth> {
        let mut out = WorkerHealth::default();
        self.health.fetch_and_update(worker.as_bytes(), |old| {
            let mut h: WorkerHealth = old
                .and_then(|b| bincode::deserialize(b).ok())
                .unwrap_or_default();
            f(&mut h);
            out = h.clone();
            Some(enc(&h))
        })?;
        Ok(out)
    }

    /// Counts a failure (or a rejected proof) against `worker`; returns its
    /// health, quarantined when this was failure [`QUARANTINE_AFTER`] in a row.
    pub fn record_failure(&self, worker: &str, reason: &str, now_ms: u64) -> Result<WorkerHealth> {
        let until = now_ms + self.quarantine_ms;
        self.update_health(worker, |h| {
            h.failures_in_a_row += 1;
            h.last_failure = Some(reason.chars().take(500).collect());
            if h.failures_in_a_row >= QUARANTINE_AFTER {
                h.quarantined_until_ms = until;
            }
        })
    }

    /// An accepted proof: the worker's failure count starts over.
    pub(super) fn record_success(&self, worker: &str) -> Result<()> {
        if self.health.contains_key(worker.as_bytes())? {
            self.update_health(worker, |h| {
                h.failures_in_a_row = 0;
                h.quarantined_until_ms = 0;
            })?;
        }
        Ok(())
    }

    /// Whether `worker` should not get the task `tk` now (it failed it last, recently).
    pub(super) fn avoided(&self, tk: &TaskKey, worker: &str, now_ms: u64) -> Result<bool> {
        Ok(match self.avoid.get(tk)? {
            Some(v) => {
                let (w, until): (String, u64) = dec(tk, &v)?;
                w == worker && until > now_ms
            }
            None => false,
        })
    }

    /// Every worker in quarantine at `now_ms`, with its health.
    pub fn quarantined(&self, now_ms: u64) -> Result<Vec<(String, WorkerHealth)>> {
        let mut v = Vec::new();
        for r in self.health.iter() {
            let (k, val) = r?;
            let h: WorkerHealth = dec(&k, &val)?;
            if h.quarantined(now_ms) {
                v.push((String::from_utf8_lossy(&k).into_owned(), h));
            }
        }
        Ok(v)
    }
}
