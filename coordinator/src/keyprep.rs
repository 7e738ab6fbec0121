//! Verifying keys derived before a succinct job's aggregations are leased.
//!
//! The coordinator checks every proof a worker returns with verifying keys
//! it derives itself from the job's public shape. Deriving an aggregation's
//! key builds the whole aggregation circuit: about 14 GB at `k = 20` over
//! digits leaves of 42 advice columns (BENCHMARKS.md). Derived when the
//! first proof needing it arrived, it ran beside a worker generating the
//! next aggregation's proving key; where both share a machine (the embedded
//! cluster of `zkaudit prove`, a compose deployment on one host) the two
//! together passed 24 GiB and the kernel killed the run at its second
//! aggregation level.
//!
//! So a succinct job's keys (every leaf length, every aggregation node) are
//! derived in tree order as soon as the job is submitted, or, after a
//! restart, as soon as one of its aggregations is ready to lease; that
//! overlaps only with leaf proving, which needs a few GiB. Its aggregation
//! tasks are leased only once every key is derived, so no worker generates
//! an aggregation key while the coordinator builds one, and checking a
//! returned aggregation then takes milliseconds. A key that cannot be
//! derived (an aggregation that does not fit `agg_k`) fails the job with
//! the reason before any aggregation is attempted. Jobs derive their keys
//! one at a time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::warn;
use zkaudit_circuits::aggregate::prover_memory;

use crate::plan::{JobMode, TaskKind};
use crate::service::Shared;
use crate::store::JobRecord;

/// Where the derivation of a job's keys stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prep {
    /// Being derived.
    Deriving,
    /// Every key derived.
    Ready,
}

/// The jobs whose verifying keys are derived or being derived.
#[derive(Default)]
pub struct KeyPrep {
    jobs: Mutex<HashMap<String, Prep>>,
    /// Jobs found with an aggregation ready but no derivation started.
    wanted: Mutex<HashSet<String>>,
    /// Held while one job's keys are derived: each derivation can take
    /// 14 GB, so jobs submitted together derive theirs one after another.
    one_at_a_time: Mutex<()>,
    /// The prover memory of each aggregation task (job, index), estimated
    /// from the layout of its derived key.
    memory: Mutex<HashMap<(String, u32), u64>>,
}

impl KeyPrep {
    /// Whether task `kind` of `job` may be leased now: any task but a
    /// succinct job's aggregation, and that once the job's keys are ready. A
    /// job whose derivation was never started (the coordinator restarted)
    /// is noted for [`KeyPrep::take_wanted`].
    pub fn allows(&self, job: &JobRecord, kind: &TaskKind) -> bool {
        if job.spec.mode != JobMode::Succinct || !matches!(kind, TaskKind::Aggregate { .. }) {
            return true;
        }
        let state = self.jobs.lock().ok().and_then(|m| m.get(&job.id).copied());
        match state {
            Some(Prep::Ready) => true,
            Some(Prep::Deriving) => false,
            None => {
                if let Ok(mut w) = self.wanted.lock() {
                    w.insert(job.id.clone());
                }
                false
            }
        }
    }

    /// The lease gate of the coordinator: `None` while task `index` of
    /// `job` may not be leased ([`KeyPrep::allows`]), else the memory it
    /// needs ([`KeyPrep::task_memory`]).
    pub fn gate(&self, job: &JobRecord, index: u32, kind: &TaskKind) -> Option<u64> {
        self.allows(job, kind)
            .then(|| self.task_memory(job, index, kind))
    }

    /// The prover memory task `index` of `job` needs: for an aggregation
    /// whose key was derived, from that key's layout
    /// ([`zkaudit_circuits::aggregate::prover_memory`]); otherwise the
    /// estimate from the job's shape ([`crate::plan::task_memory`]).
    pub fn task_memory(&self, job: &JobRecord, index: u32, kind: &TaskKind) -> u64 {
        let derived = match kind {
            TaskKind::Aggregate { .. } => self
                .memory
                .lock()
                .ok()
                .and_then(|m| m.get(&(job.id.clone(), index)).copied()),
            _ => None,
        };
        derived.unwrap_or_else(|| crate::plan::task_memory(&job.shape, job.spec.agg_k, kind))
    }

    /// Records the memory aggregation task `index` of `job` needs.
    fn set_memory(&self, job: &str, index: u32, bytes: u64) {
        if let Ok(mut m) = self.memory.lock() {
            m.insert((job.to_string(), index), bytes);
        }
    }

    /// Jobs [`KeyPrep::allows`] found without a derivation, now forgotten.
    pub fn take_wanted(&self) -> Vec<String> {
        self.wanted
            .lock()
            .map(|mut w| w.drain().collect())
            .unwrap_or_default()
    }

    /// Marks `job` as being derived; false when it already is or is ready.
    fn begin(&self, job: &str) -> bool {
        match self.jobs.lock() {
            Ok(mut m) if !m.contains_key(job) => {
                m.insert(job.to_string(), Prep::Deriving);
                true
            }
            _ => false,
        }
    }

    /// Records the end of a derivation: ready, or forgotten after a failure.
    fn end(&self, job: &str, ready: bool) {
        if let Ok(mut m) = self.jobs.lock() {
            if ready {
                m.insert(job.to_string(), Prep::Ready);
            } else {
                m.remove(job);
            }
        }
    }
}

/// Starts deriving the verifying keys of `job` on a thread of its own,
/// unless it is not a succinct training job or its derivation has started.
/// When done the job's aggregations become leasable; when a key cannot be
/// derived the job fails with the reason.
pub fn start(s: &Arc<Shared>, job: JobRecord) {
    if job.spec.mode != JobMode::Succinct || job.spec.claim.is_some() || !s.key_prep.begin(&job.id)
    {
        return;
    }
    let (s2, id) = (s.clone(), job.id.clone());
    let spawned = std::thread::Builder::new()
        .name("key-prep".into())
        .spawn(move || {
            let s = s2;
            let started = Instant::now();
            let derived = {
                let _one = s.key_prep.one_at_a_time.lock();
                derive(&s, &job)
            };
            match derived {
                Ok(n) => {
                    s.key_prep.end(&job.id, true);
                    s.event(
                        &job.id,
                        format!(
                            "verifying keys ready: {n} keys derived or loaded in {:.1}s; aggregations may start",
                            started.elapsed().as_secs_f64()
                        ),
                    );
                }
                Err(why) => {
                    s.key_prep.end(&job.id, false);
                    let reason = format!("the job's verifying keys cannot be derived: {why}");
                    if let Err(e) = s.store.fail_job(&job.id, &reason, s.clock.now_ms()) {
                        warn!("failing job {}: {e}", job.id);
                    }
                    s.event(&job.id, format!("job failed: {reason}"));
                }
            }
            s.ready.notify_waiters();
        });
    if let Err(e) = spawned {
        s.key_prep.end(&id, false);
        warn!("cannot start deriving the keys of job {id}: {e}");
    }
}

/// Derives (or loads, where this coordinator pinned them) the verifying key
/// of every distinct leaf length and aggregation node of `job`, children
/// before parents, exactly as checking the returned proofs will ask for
/// them ([`zkaudit_circuits::tasks::verify_leaf`], `verify_aggregate`).
/// Returns how many distinct keys there are.
fn derive(s: &Shared, job: &JobRecord) -> Result<usize, String> {
    let ctx = s.context(job).map_err(|e| e.message().to_string())?;
    let keys = s
        .keys(job.shape.k, Shared::agg_k(job))
        .map_err(|e| e.message().to_string())?;
    let plan = &job.plan;
    let mut done: HashSet<Vec<Vec<usize>>> = HashSet::new();
    let mut memory: HashMap<Vec<Vec<usize>>, u64> = HashMap::new();
    for (i, kind) in plan.tasks.iter().enumerate() {
        match kind {
            TaskKind::Leaf { first, last } => {
                let len = (last.saturating_sub(*first) + 1) as usize;
                if done.insert(vec![vec![len]]) {
                    keys.node_vk(&ctx.shape, &[len])
                        .map_err(|e| format!("the key of a leaf of {len} steps: {e}"))?;
                }
            }
            TaskKind::Aggregate { level, children } => {
                let lens = children
                    .iter()
                    .map(|&c| plan.range(c).map(|(f, l)| ctx.leaf_lens(f, l)))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("task {i}: its children are not in the plan"))?;
                if done.insert(lens.clone()) {
                    let vk = keys.agg_vk(&ctx.shape, &lens).map_err(|e| {
                        format!("the key of aggregation level {level} (task {i}): {e}")
                    })?;
                    memory.insert(lens.clone(), prover_memory(&vk));
                }
                if let Some(&bytes) = memory.get(&lens) {
                    s.key_prep.set_memory(&job.id, i as u32, bytes);
                }
            }
            TaskKind::AuditChunk { .. } | TaskKind::AuditCombine { .. } => {}
        }
    }
    Ok(done.len())
}

#[cfg(test)]
mod tests {
    use super::{KeyPrep, Prep};
    use crate::plan::{plan_job, JobMode};
    use crate::store::tests::{shape, spec};
    use crate::store::Store;

    /// A succinct job of 4 steps in leaves of 2: two leaves, one aggregation.
    fn succinct_job(s: &Store) -> crate::store::JobRecord {
        s.submit(
            spec(4, JobMode::Succinct),
            shape(),
            plan_job(4, JobMode::Succinct, 2),
            b"t",
            None,
            "o",
            1,
        )
        .unwrap()
    }

    /// An aggregation whose children are proven is not leased while the
    /// job's keys are being derived, nor, after a restart, before their
    /// derivation is asked for; it is leased once they are ready. Leaves are
    /// leased meanwhile.
    #[test]
    fn aggregations_wait_for_the_jobs_verifying_keys() {
        let s = Store::temporary().unwrap();
        let w = s.register_worker("a", 2, 0, "v", 0).unwrap().id;
        let job = succinct_job(&s);
        let prep = KeyPrep::default();
        let lease = |now| {
            s.lease_where(&w, now, 100, &|j, i, k| prep.gate(j, i, k))
                .unwrap()
        };
        // After a restart nothing was started: the leaves go, the
        // aggregation waits and its job is asked for.
        let (a, b) = (lease(10).unwrap(), lease(10).unwrap());
        assert_eq!((a.index, b.index), (0, 1));
        s.complete(&w, &a.lease, b"p0", 5, 11).unwrap();
        s.complete(&w, &b.lease, b"p1", 5, 11).unwrap();
        assert_eq!(lease(12), None, "aggregation leased before its keys");
        assert_eq!(prep.take_wanted(), vec![job.id.clone()]);
        assert!(prep.take_wanted().is_empty());
        assert!(prep.begin(&job.id));
        assert!(!prep.begin(&job.id), "derivation started twice");
        assert_eq!(lease(13), None, "aggregation leased while deriving");
        assert!(prep.take_wanted().is_empty());
        prep.end(&job.id, true);
        assert_eq!(prep.jobs.lock().unwrap().get(&job.id), Some(&Prep::Ready));
        assert_eq!(lease(14).map(|l| l.index), Some(2));
    }

    /// Once a job's keys are derived, its aggregations need the memory
    /// their keys' layout calls for, not the constant estimate: a worker
    /// large enough for the constant but not for the layout is passed over
    /// and a larger one gets the task.
    #[test]
    fn aggregations_need_the_memory_of_their_derived_layout() {
        let s = Store::temporary().unwrap();
        let gib = 1u64 << 30;
        let small = s.register_worker("small", 2, 20 * gib, "v", 0).unwrap().id;
        let large = s.register_worker("large", 2, 64 * gib, "v", 0).unwrap().id;
        let job = succinct_job(&s);
        let prep = KeyPrep::default();
        let lease = |w: &str, now| {
            s.lease_where(w, now, 100, &|j, i, k| prep.gate(j, i, k))
                .unwrap()
        };
        for i in 0..2 {
            let l = lease(&small, 10).unwrap();
            assert_eq!(l.index, i);
            s.complete(&small, &l.lease, b"p", 5, 11).unwrap();
        }
        assert!(prep.begin(&job.id));
        prep.end(&job.id, true);
        let agg = job.plan.tasks[2].clone();
        let constant = crate::plan::task_memory(&job.shape, job.spec.agg_k, &agg);
        assert!(
            constant <= 20 * gib,
            "the constant estimate fits the small worker"
        );
        assert_eq!(prep.task_memory(&job, 2, &agg), constant);
        prep.set_memory(&job.id, 2, 23 * gib);
        assert_eq!(prep.task_memory(&job, 2, &agg), 23 * gib);
        assert_eq!(lease(&small, 12), None, "leased beyond the worker's memory");
        assert_eq!(lease(&large, 12).map(|l| l.index), Some(2));
    }
}
