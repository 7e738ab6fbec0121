//! The coordinator's durable state in sled: jobs, tasks, the ready queue,
//! leases, workers and blobs (transcripts, proofs, certificates).
//!
//! Every transition is one sled transaction over the trees it touches; it
//! checks the prior state, so replaying a request (a retried RPC, a worker
//! that reports twice) is harmless. Transitions a client or worker is told
//! about (submit, lease, complete, finish) are flushed to disk before
//! returning.
//!
//! Layout (keys big-endian so that sled's order is the queue's order):
//! - `jobs`: job id → [`JobRecord`];
//! - `tasks`: job id, 0, index (u32) → [`TaskRecord`];
//! - `ready`: job sequence (u64), index (u32) → job id (tasks whose inputs are done);
//! - `leases`: lease id → [`LeaseRecord`];
//! - `workers`: worker id → [`WorkerRecord`];
//! - `blobs`: `t/<job>` transcript, `o/<job>` its submitter (owner), `q/<job>` planned audit (audit jobs),
//!   `a/<job>/<index>` proof artifact, `c/<job>` certificate or audit proof;
//! - `credits`: task key → attempts not charged to the task (u32, big-endian);
//! - `avoid`: task key → (worker, until ms): the worker that failed it last;
//! - `health`: worker id → [`WorkerHealth`] (see [`health`]);
//! - `lease_starts`: lease id → when it was granted (unix ms, u64 big-endian).

use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;
use zkaudit_circuits::shape::StepShape;

use crate::plan::{JobMode, JobPlan, TaskKind};

pub mod health;
pub use health::{Blame, WorkerHealth, QUARANTINE_AFTER};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (disk, corruption).
    #[error("task store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error("task store: corrupt record {key}: {message}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// No such job.
    #[error("no job {0}")]
    NoJob(String),
    /// The lease is unknown, expired, or was given to another worker.
    #[error("lease {0} is not held (expired, completed, or the job ended)")]
    LeaseLost(String),
    /// The request is not valid in the current state.
    #[error("{0}")]
    State(String),
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A job's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Tasks are being proven.
    Running,
    /// Every task is done; the certificate is being assembled.
    Finishing,
    /// The certificate is stored.
    Done,
    /// A task exhausted its retries or failed fatally.
    Failed,
    /// Cancelled by a client.
    Cancelled,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// What a job proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// A training run (steps, aggregation): its result is a certificate.
    Training,
    /// An audit of a certified run: its result is an audit proof; the
    /// planned audit is the blob `q/<job>`.
    Audit,
}

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Training or audit.
    pub kind: JobKind,
    /// An audit: the claim in words.
    pub claim: Option<String>,
    /// Human-readable name.
    pub name: String,
    /// Steps `0..steps` are proven.
    pub steps: u64,
    /// Certificate mode.
    pub mode: JobMode,
    /// Size of the aggregation circuits (succinct mode).
    pub agg_k: u32,
    /// SHA-256 of the transcript (hex).
    pub transcript_sha256: String,
}

/// A stored job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Id.
    pub id: String,
    /// Queue order.
    pub seq: u64,
    /// The request.
    pub spec: JobSpec,
    /// Step circuit shape (its span is the steps per leaf).
    pub shape: StepShape,
    /// Its tasks.
    pub plan: JobPlan,
    /// Lifecycle state.
    pub state: JobState,
    /// Why it failed.
    pub error: Option<String>,
    /// Unix ms.
    pub created_ms: u64,
    /// Unix ms when it ended.
    pub finished_ms: Option<u64>,
}

/// A task's lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Waiting for its inputs, or ready (then in the `ready` tree).
    Queued,
    /// Leased to a worker.
    Leased {
        /// Lease id.
        lease: String,
        /// Worker id.
        worker: String,
    },
    /// Proven and verified.
    Done {
        /// Worker that proved it.
        worker: String,
        /// The lease it was completed under.
        lease: String,
        /// Proving time the worker reported.
        prove_ms: u64,
    },
}

/// A stored task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// State.
    pub state: TaskState,
    /// Times it was leased.
    pub attempts: u32,
    /// Last failure, if any.
    pub last_error: Option<String>,
    /// Progress reported by the worker, in thousandths.
    pub progress_milli: u32,
}

/// A live lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Job id.
    pub job: String,
    /// Task index.
    pub index: u32,
    /// Worker id.
    pub worker: String,
    /// Expiry (unix ms).
    pub expires_ms: u64,
}

/// A registered worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Id.
    pub id: String,
    /// Name it gave.
    pub name: String,
    /// Cores it reported.
    pub cores: u32,
    /// Memory it reported.
    pub memory_bytes: u64,
    /// Its version.
    pub version: String,
    /// Last contact (unix ms).
    pub last_seen_ms: u64,
    /// Proofs accepted from it.
    pub accepted: u64,
    /// Proofs rejected from it.
    pub rejected: u64,
}

/// A task handed to a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leased {
    /// Lease id.
    pub lease: String,
    /// Job id.
    pub job: String,
    /// Task index.
    pub index: u32,
    /// Attempt number (1 for the first).
    pub attempt: u32,
}

/// What a completion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completed {
    /// The proof was recorded; `job_finished` when it was the job's last task.
    Accepted {
        /// Every task of the job is now done.
        job_finished: bool,
    },
    /// The same lease had already completed (a retried request).
    Duplicate,
}

/// What happened to a task that went back to the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requeued {
    /// Queued again.
    Retry,
    /// The retry budget is spent: the job failed with this reason.
    JobFailed(String),
    /// Nothing to do (lease no longer current).
    Stale,
}

/// The task store.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    jobs: sled::Tree,
    tasks: sled::Tree,
    ready: sled::Tree,
    leases: sled::Tree,
    workers: sled::Tree,
    blobs: sled::Tree,
    credits: sled::Tree,
    avoid: sled::Tree,
    health: sled::Tree,
    lease_starts: sled::Tree,
    /// Attempts per task before its job fails.
    pub max_attempts: u32,
    /// How long a failed task is not leased back to the worker that failed it.
    pub retry_elsewhere_ms: u64,
    /// How long a worker that keeps failing gets no task.
    pub quarantine_ms: u64,
    /// Longest a lease may be held, heartbeats or not (a hung prover's lease
    /// is then no longer extended and expires).
    pub max_lease_ms: u64,
}

/// 64 random bits in hex: job and worker ids (and so lease ids) cannot be
/// guessed from one another.
fn random_id() -> String {
    use rand_core::RngCore;
    format!("{:016x}", rand_core::OsRng.next_u64())
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    // bincode of our own plain records cannot fail.
    bincode::serialize(v).unwrap_or_default()
}

fn dec<T: DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T> {
    bincode::deserialize(v).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

fn task_key(job: &str, index: u32) -> Vec<u8> {
    let mut k = job.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn ready_key(seq: u64, index: u32) -> Vec<u8> {
    let mut k = seq.to_be_bytes().to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn artifact_key(job: &str, index: u32) -> Vec<u8> {
    format!("a/{job}/{index}").into_bytes()
}

/// Aborts a transaction with a store error.
fn abort<T>(e: StoreError) -> std::result::Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(e))
}

type Tx<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

fn tget<T: DeserializeOwned>(t: &TransactionalTree, key: &[u8]) -> Tx<Option<T>> {
    match t.get(key)? {
        None => Ok(None),
        Some(v) => match dec(key, &v) {
            Ok(x) => Ok(Some(x)),
            Err(e) => abort(e),
        },
    }
}

fn flat<T>(r: std::result::Result<T, TransactionError<StoreError>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

impl From<UnabortableTransactionError> for StoreError {
    fn from(e: UnabortableTransactionError) -> Self {
        match e {
            UnabortableTransactionError::Storage(e) => StoreError::Sled(e),
            UnabortableTransactionError::Conflict => {
                StoreError::State("transaction conflict".into())
            }
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new().path(dir).open().map_err(|e| match e {
            // sled locks its directory: a second coordinator on the same
            // store fails here instead of corrupting it.
            sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                StoreError::State(format!(
                    "{} is in use by another coordinator (sled's lock is held): one coordinator per store; stop the other one or use another --data directory",
                    dir.display()
                ))
            }
            e => e.into(),
        })?;
        Self::from_db(db)
    }

    /// A store in memory (for tests and benchmarks of the store alone).
    pub fn temporary() -> Result<Self> {
        Self::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<Self> {
        Ok(Store {
            jobs: db.open_tree("jobs")?,
            tasks: db.open_tree("tasks")?,
            ready: db.open_tree("ready")?,
            leases: db.open_tree("leases")?,
            workers: db.open_tree("workers")?,
            blobs: db.open_tree("blobs")?,
            credits: db.open_tree("credits")?,
            avoid: db.open_tree("avoid")?,
            health: db.open_tree("health")?,
            lease_starts: db.open_tree("lease_starts")?,
            db,
            max_attempts: 5,
            retry_elsewhere_ms: 15_000,
            quarantine_ms: 300_000,
            max_lease_ms: 6 * 3_600_000,
        })
    }

    /// Flushes to disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Stores a new job with its transcript (and planned audit), every task
    /// queued and those without inputs ready; flushed before it returns.
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &self,
        spec: JobSpec,
        shape: StepShape,
        plan: JobPlan,
        transcript: &[u8],
        audit: Option<&[u8]>,
        owner: &str,
        now_ms: u64,
    ) -> Result<JobRecord> {
        let seq = self.db.generate_id()?;
        let id = format!("job-{}", random_id());
        let job = JobRecord {
            id: id.clone(),
            seq,
            spec,
            shape,
            plan,
            state: JobState::Running,
            error: None,
            created_ms: now_ms,
            finished_ms: None,
        };
        let task = TaskRecord {
            state: TaskState::Queued,
            attempts: 0,
            last_error: None,
            progress_milli: 0,
        };
        flat(
            (&self.jobs, &self.tasks, &self.ready, &self.blobs).transaction(|(j, t, r, b)| {
                if j.get(id.as_bytes())?.is_some() {
                    return abort(StoreError::State(format!("job {id} exists")));
                }
                j.insert(id.as_bytes(), enc(&job))?;
                b.insert(format!("t/{id}").as_bytes(), transcript)?;
                b.insert(format!("o/{id}").as_bytes(), owner.as_bytes())?;
                if let Some(q) = audit {
                    b.insert(format!("q/{id}").as_bytes(), q)?;
                }
                for i in 0..job.plan.tasks.len() as u32 {
                    t.insert(task_key(&id, i), enc(&task))?;
                    if job.plan.deps(i).is_empty() {
                        r.insert(ready_key(seq, i), id.as_bytes())?;
                    }
                }
                Ok(())
            }),
        )?;
        self.flush()?;
        Ok(job)
    }

    /// A job.
    pub fn job(&self, id: &str) -> Result<JobRecord> {
        match self.jobs.get(id.as_bytes())? {
            Some(v) => dec(id.as_bytes(), &v),
            None => Err(StoreError::NoJob(id.to_string())),
        }
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Result<Vec<JobRecord>> {
        let mut v: Vec<JobRecord> = self
            .jobs
            .iter()
            .map(|r| {
                let (k, v) = r?;
                dec(&k, &v)
            })
            .collect::<Result<_>>()?;
        v.sort_by_key(|j| j.seq);
        Ok(v)
    }

    /// Who submitted a job (see [`crate::auth::Caller::owner`]).
    pub fn owner(&self, job: &str) -> Result<Option<String>> {
        Ok(self
            .blob(format!("o/{job}").as_bytes())
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// A job's tasks by index.
    pub fn tasks(&self, job: &str) -> Result<Vec<TaskRecord>> {
        let mut prefix = job.as_bytes().to_vec();
        prefix.push(0);
        self.tasks
            .scan_prefix(&prefix)
            .map(|r| {
                let (k, v) = r?;
                dec(&k, &v)
            })
            .collect()
    }

    /// A job's transcript bytes.
    pub fn transcript(&self, job: &str) -> Result<Vec<u8>> {
        self.blob(format!("t/{job}").as_bytes())
            .ok_or_else(|| StoreError::NoJob(job.to_string()))
    }

    /// An audit job's planned audit.
    pub fn audit(&self, job: &str) -> Result<Vec<u8>> {
        self.blob(format!("q/{job}").as_bytes())
            .ok_or_else(|| StoreError::State(format!("job {job} is not an audit")))
    }

    /// A task's accepted proof artifact.
    pub fn artifact(&self, job: &str, index: u32) -> Result<Option<Vec<u8>>> {
        Ok(self
            .blobs
            .get(artifact_key(job, index))?
            .map(|v| v.to_vec()))
    }

    /// A finished job's certificate.
    pub fn certificate(&self, job: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .blobs
            .get(format!("c/{job}").as_bytes())?
            .map(|v| v.to_vec()))
    }

    fn blob(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.blobs.get(key).ok().flatten().map(|v| v.to_vec())
    }

    /// Registers a worker.
    pub fn register_worker(
        &self,
        name: &str,
        cores: u32,
        memory_bytes: u64,
        version: &str,
        now_ms: u64,
    ) -> Result<WorkerRecord> {
        let id = format!("w-{}", random_id());
        let w = WorkerRecord {
            id: id.clone(),
            name: name.to_string(),
            cores,
            memory_bytes,
            version: version.to_string(),
            last_seen_ms: now_ms,
            accepted: 0,
            rejected: 0,
        };
        self.workers.insert(id.as_bytes(), enc(&w))?;
        self.flush()?;
        Ok(w)
    }

    /// A worker.
    pub fn worker(&self, id: &str) -> Result<Option<WorkerRecord>> {
        match self.workers.get(id.as_bytes())? {
            Some(v) => Ok(Some(dec(id.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    /// Every worker.
    pub fn workers(&self) -> Result<Vec<WorkerRecord>> {
        self.workers
            .iter()
            .map(|r| {
                let (k, v) = r?;
                dec(&k, &v)
            })
            .collect()
    }

    fn touch_worker(&self, id: &str, now_ms: u64, f: impl Fn(&mut WorkerRecord)) -> Result<()> {
        self.workers.fetch_and_update(id.as_bytes(), |old| {
            let mut w: WorkerRecord = bincode::deserialize(old?).ok()?;
            w.last_seen_ms = w.last_seen_ms.max(now_ms);
            f(&mut w);
            Some(enc(&w))
        })?;
        Ok(())
    }

    /// Leases the first ready task of the oldest running job to `worker`
    /// until `now_ms + lease_ms` (flushed); `None` when nothing is ready.
    pub fn lease(&self, worker: &str, now_ms: u64, lease_ms: u64) -> Result<Option<Leased>> {
        self.lease_where(worker, now_ms, lease_ms, &|job, _, kind| {
            Some(crate::plan::task_memory(&job.shape, job.spec.agg_k, kind))
        })
    }

    /// [`Store::lease`] of only the ready tasks `gate` admits: given a job,
    /// the task's index and kind, it answers the prover memory the task
    /// needs, or `None` to leave the task ready for later.
    pub fn lease_where(
        &self,
        worker: &str,
        now_ms: u64,
        lease_ms: u64,
        gate: &dyn Fn(&JobRecord, u32, &TaskKind) -> Option<u64>,
    ) -> Result<Option<Leased>> {
        self.touch_worker(worker, now_ms, |_| {})?;
        if self.health(worker)?.quarantined(now_ms) {
            return Ok(None);
        }
        // A worker that reported its memory gets only tasks that fit in it
        // (0: unknown, every task).
        let memory = self.worker(worker)?.map_or(0, |w| w.memory_bytes);
        for entry in self.ready.iter() {
            let (rk, job_id) = entry?;
            if rk.len() != 12 {
                continue;
            }
            let index = u32::from_be_bytes([rk[8], rk[9], rk[10], rk[11]]);
            let job_id = String::from_utf8_lossy(&job_id).into_owned();
            let tk = task_key(&job_id, index);
            if self.avoided(&tk, worker, now_ms)? {
                continue;
            }
            let res =
                (&self.jobs, &self.tasks, &self.ready, &self.leases).transaction(|(j, t, r, l)| {
                    if r.get(&rk)?.is_none() {
                        return Ok(None); // taken meanwhile
                    }
                    let job: JobRecord = match tget(j, job_id.as_bytes())? {
                        Some(x) => x,
                        None => {
                            r.remove(&rk)?;
                            return Ok(None);
                        }
                    };
                    let mut task: TaskRecord = match tget(t, &tk)? {
                        Some(x) => x,
                        None => {
                            r.remove(&rk)?;
                            return Ok(None);
                        }
                    };
                    let need = match job.plan.tasks.get(index as usize) {
                        Some(kind) => match gate(&job, index, kind) {
                            Some(need) => need,
                            None => return Ok(None), // stays ready
                        },
                        None => 0,
                    };
                    if memory > 0 && need > memory {
                        return Ok(None); // stays ready for a larger worker
                    }
                    r.remove(&rk)?;
                    if job.state != JobState::Running || task.state != TaskState::Queued {
                        return Ok(None);
                    }
                    task.attempts += 1;
                    let lease = format!("{job_id}.{index}.{}", task.attempts);
                    task.state = TaskState::Leased {
                        lease: lease.clone(),
                        worker: worker.to_string(),
                    };
                    task.progress_milli = 0;
                    t.insert(tk.as_slice(), enc(&task))?;
                    l.insert(
                        lease.as_bytes(),
                        enc(&LeaseRecord {
                            job: job_id.clone(),
                            index,
                            worker: worker.to_string(),
                            expires_ms: now_ms + lease_ms,
                        }),
                    )?;
                    Ok(Some(Leased {
                        lease,
                        job: job_id.clone(),
                        index,
                        attempt: task.attempts,
                    }))
                });
            if let Some(l) = flat(res)? {
                self.lease_starts
                    .insert(l.lease.as_bytes(), &now_ms.to_be_bytes())?;
                // Durable before the worker hears of it: a coordinator that
                // crashes now still knows the lease when its proof arrives.
                self.flush()?;
                return Ok(Some(l));
            }
        }
        Ok(None)
    }

    /// The live lease record of `lease` held by `worker`.
    pub fn lease_record(&self, lease: &str, worker: &str) -> Result<LeaseRecord> {
        match self.leases.get(lease.as_bytes())? {
            Some(v) => {
                let r: LeaseRecord = dec(lease.as_bytes(), &v)?;
                if r.worker != worker {
                    return Err(StoreError::LeaseLost(lease.to_string()));
                }
                Ok(r)
            }
            None => Err(StoreError::LeaseLost(lease.to_string())),
        }
    }

    /// Extends a lease; returns whether the worker should keep going.
    pub fn heartbeat(
        &self,
        worker: &str,
        lease: &str,
        progress_milli: u32,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<bool> {
        self.touch_worker(worker, now_ms, |_| {})?;
        if let Some(v) = self.lease_starts.get(lease.as_bytes())? {
            if v.len() == 8 {
                let start = u64::from_be_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
                if now_ms.saturating_sub(start) > self.max_lease_ms {
                    return Ok(false); // not extended: it expires and is re-queued
                }
            }
        }
        let res = (&self.jobs, &self.tasks, &self.leases).transaction(|(j, t, l)| {
            let mut rec: LeaseRecord = match tget(l, lease.as_bytes())? {
                Some(r) => r,
                None => return Ok(false),
            };
            if rec.worker != worker {
                return Ok(false);
            }
            let job: Option<JobRecord> = tget(j, rec.job.as_bytes())?;
            if job.map(|j| j.state) != Some(JobState::Running) {
                return Ok(false);
            }
            rec.expires_ms = rec.expires_ms.max(now_ms + lease_ms);
            l.insert(lease.as_bytes(), enc(&rec))?;
            let tk = task_key(&rec.job, rec.index);
            if let Some(mut task) = tget::<TaskRecord>(t, &tk)? {
                task.progress_milli = progress_milli.min(1000);
                t.insert(tk.as_slice(), enc(&task))?;
            }
            Ok(true)
        });
        flat(res)
    }

    /// Records a verified proof for the task of `lease`; makes the parent
    /// ready when all its inputs are done. Flushed before it returns.
    pub fn complete(
        &self,
        worker: &str,
        lease: &str,
        artifact: &[u8],
        prove_ms: u64,
        now_ms: u64,
    ) -> Result<Completed> {
        let res = (
            &self.jobs,
            &self.tasks,
            &self.ready,
            &self.leases,
            &self.blobs,
        )
            .transaction(|(j, t, r, l, b)| {
                let (job_id, index) = match parse_lease(lease) {
                    Some(x) => x,
                    None => return abort(StoreError::LeaseLost(lease.to_string())),
                };
                let tk = task_key(&job_id, index);
                let mut task: TaskRecord = match tget(t, &tk)? {
                    Some(x) => x,
                    None => return abort(StoreError::LeaseLost(lease.to_string())),
                };
                match &task.state {
                    TaskState::Done { lease: l0, .. } if l0 == lease => {
                        return Ok(Completed::Duplicate)
                    }
                    TaskState::Leased {
                        lease: l0,
                        worker: w0,
                    } if l0 == lease && w0 == worker => {}
                    _ => return abort(StoreError::LeaseLost(lease.to_string())),
                }
                let mut job: JobRecord = match tget(j, job_id.as_bytes())? {
                    Some(x) => x,
                    None => return abort(StoreError::NoJob(job_id.clone())),
                };
                if job.state != JobState::Running {
                    return abort(StoreError::State(format!(
                        "job {job_id} is {:?}; the proof is not needed",
                        job.state
                    )));
                }
                task.state = TaskState::Done {
                    worker: worker.to_string(),
                    lease: lease.to_string(),
                    prove_ms,
                };
                task.progress_milli = 1000;
                t.insert(tk.as_slice(), enc(&task))?;
                l.remove(lease.as_bytes())?;
                b.insert(artifact_key(&job_id, index), artifact)?;
                // Parent readiness and job completion.
                let done = |i: u32, t: &TransactionalTree| -> Tx<bool> {
                    if i == index {
                        return Ok(true);
                    }
                    let x: Option<TaskRecord> = tget(t, &task_key(&job_id, i))?;
                    Ok(matches!(x.map(|x| x.state), Some(TaskState::Done { .. })))
                };
                for p in 0..job.plan.tasks.len() as u32 {
                    let children = job.plan.deps(p);
                    if children.contains(&index) {
                        let mut all = true;
                        for &c in children {
                            all &= done(c, t)?;
                        }
                        if all {
                            r.insert(ready_key(job.seq, p), job_id.as_bytes())?;
                        }
                    }
                }
                let finished = match job.plan.root {
                    Some(root) => root == index,
                    None => {
                        // Scan from the end and stop at the first task not
                        // done: leaves are leased in order, so this is short
                        // until the job's last tasks.
                        let mut all = true;
                        for i in (0..job.plan.tasks.len() as u32).rev() {
                            if !done(i, t)? {
                                all = false;
                                break;
                            }
                        }
                        all
                    }
                };
                if finished {
                    job.state = JobState::Finishing;
                    j.insert(job_id.as_bytes(), enc(&job))?;
                }
                let _ = now_ms;
                Ok(Completed::Accepted {
                    job_finished: finished,
                })
            });
        let out = flat(res)?;
        if out != Completed::Duplicate {
            self.touch_worker(worker, now_ms, |w| w.accepted += 1)?;
            self.record_success(worker)?;
            self.lease_starts.remove(lease.as_bytes())?;
        }
        self.flush()?;
        Ok(out)
    }

    /// Puts the task of `lease` back in the queue (a retryable failure, a
    /// rejected proof, an expired lease, or a failure of the worker's own
    /// setup, which gives the attempt back), away from the worker that held
    /// it for a while, or fails its job when the failure is fatal or the
    /// retry budget is spent.
    pub fn requeue(
        &self,
        lease: &str,
        reason: &str,
        blame: Blame,
        now_ms: u64,
    ) -> Result<Requeued> {
        let max = self.max_attempts;
        let away_until = now_ms + self.retry_elsewhere_ms;
        let fatal = blame == Blame::Fatal;
        let res = (
            &self.jobs,
            &self.tasks,
            &self.ready,
            &self.leases,
            &self.credits,
            &self.avoid,
        )
            .transaction(|(j, t, r, l, cr, av)| {
                let rec: LeaseRecord = match tget(l, lease.as_bytes())? {
                    Some(x) => x,
                    None => return Ok(Requeued::Stale),
                };
                l.remove(lease.as_bytes())?;
                let tk = task_key(&rec.job, rec.index);
                let mut task: TaskRecord = match tget(t, &tk)? {
                    Some(x) => x,
                    None => return Ok(Requeued::Stale),
                };
                if !matches!(&task.state, TaskState::Leased { lease: l0, .. } if l0 == lease) {
                    return Ok(Requeued::Stale);
                }
                task.state = TaskState::Queued;
                task.last_error = Some(reason.to_string());
                task.progress_milli = 0;
                t.insert(tk.as_slice(), enc(&task))?;
                let mut credit = match cr.get(&tk)? {
                    Some(v) if v.len() == 4 => u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                    _ => 0,
                };
                if blame == Blame::Worker {
                    credit += 1;
                    cr.insert(tk.as_slice(), &credit.to_be_bytes())?;
                }
                av.insert(tk.as_slice(), enc(&(rec.worker.clone(), away_until)))?;
                let charged = task.attempts.saturating_sub(credit);
                let mut job: JobRecord = match tget(j, rec.job.as_bytes())? {
                    Some(x) => x,
                    None => return Ok(Requeued::Stale),
                };
                if job.state != JobState::Running {
                    return Ok(Requeued::Stale);
                }
                if fatal || charged >= max {
                    let why = if fatal {
                        format!("task {} failed: {reason}", rec.index)
                    } else {
                        format!(
                            "task {} failed {} times (retry budget spent); last: {reason}",
                            rec.index, charged
                        )
                    };
                    job.state = JobState::Failed;
                    job.error = Some(why.clone());
                    job.finished_ms = Some(now_ms);
                    j.insert(rec.job.as_bytes(), enc(&job))?;
                    return Ok(Requeued::JobFailed(why));
                }
                r.insert(ready_key(job.seq, rec.index), rec.job.as_bytes())?;
                Ok(Requeued::Retry)
            });
        let out = flat(res)?;
        if out != Requeued::Stale {
            self.lease_starts.remove(lease.as_bytes())?;
        }
        self.flush()?;
        Ok(out)
    }

    /// Counts a rejected proof against `worker`.
    pub fn count_rejection(&self, worker: &str, now_ms: u64) -> Result<()> {
        self.touch_worker(worker, now_ms, |w| w.rejected += 1)
    }

    /// Gives every live lease at least until `until_ms` (a restarted
    /// coordinator: its workers could not heartbeat while it was down);
    /// returns how many were extended.
    pub fn extend_leases(&self, until_ms: u64) -> Result<usize> {
        let mut n = 0;
        for (lease, mut rec) in self.leases()? {
            if rec.expires_ms < until_ms {
                rec.expires_ms = until_ms;
                // A lease completed or requeued meanwhile is not brought back.
                let old = self.leases.get(lease.as_bytes())?;
                if old.is_some() {
                    let _ = self
                        .leases
                        .compare_and_swap(lease.as_bytes(), old, Some(enc(&rec)))?;
                    n += 1;
                }
            }
        }
        self.flush()?;
        Ok(n)
    }

    /// Leases past their expiry: `(lease id, record)`.
    pub fn expired_leases(&self, now_ms: u64) -> Result<Vec<(String, LeaseRecord)>> {
        let mut v = Vec::new();
        for r in self.leases.iter() {
            let (k, val) = r?;
            let rec: LeaseRecord = dec(&k, &val)?;
            if rec.expires_ms <= now_ms {
                v.push((String::from_utf8_lossy(&k).into_owned(), rec));
            }
        }
        Ok(v)
    }

    /// Live leases.
    pub fn leases(&self) -> Result<Vec<(String, LeaseRecord)>> {
        self.leases
            .iter()
            .map(|r| {
                let (k, v) = r?;
                Ok((String::from_utf8_lossy(&k).into_owned(), dec(&k, &v)?))
            })
            .collect()
    }

    /// Stores the certificate of a finishing job and marks it done (flushed).
    pub fn finish(&self, job_id: &str, certificate: &[u8], now_ms: u64) -> Result<()> {
        let res = (&self.jobs, &self.blobs).transaction(|(j, b)| {
            let mut job: JobRecord = match tget(j, job_id.as_bytes())? {
                Some(x) => x,
                None => return abort(StoreError::NoJob(job_id.to_string())),
            };
            match job.state {
                JobState::Done => return Ok(()),
                JobState::Finishing => {}
                s => {
                    return abort(StoreError::State(format!(
                        "job {job_id} is {s:?}, not finishing"
                    )))
                }
            }
            job.state = JobState::Done;
            job.finished_ms = Some(now_ms);
            j.insert(job_id.as_bytes(), enc(&job))?;
            b.insert(format!("c/{job_id}").as_bytes(), certificate)?;
            Ok(())
        });
        flat(res)?;
        self.flush()
    }

    /// Fails a job (e.g. its certificate could not be assembled).
    pub fn fail_job(&self, job_id: &str, reason: &str, now_ms: u64) -> Result<()> {
        self.set_state(job_id, now_ms, |job| {
            if job.state.is_terminal() {
                return false;
            }
            job.state = JobState::Failed;
            job.error = Some(reason.to_string());
            true
        })
    }

    /// Cancels a job: no task of it is leased again; live leases are told to stop.
    pub fn cancel(&self, job_id: &str, now_ms: u64) -> Result<JobRecord> {
        self.set_state(job_id, now_ms, |job| {
            if job.state.is_terminal() {
                return false;
            }
            job.state = JobState::Cancelled;
            true
        })?;
        self.job(job_id)
    }

    fn set_state(
        &self,
        job_id: &str,
        now_ms: u64,
        f: impl Fn(&mut JobRecord) -> bool,
    ) -> Result<()> {
        let res = self.jobs.transaction(|j| {
            let mut job: JobRecord = match tget(j, job_id.as_bytes())? {
                Some(x) => x,
                None => return abort(StoreError::NoJob(job_id.to_string())),
            };
            if f(&mut job) {
                job.finished_ms = Some(now_ms);
                j.insert(job_id.as_bytes(), enc(&job))?;
            }
            Ok(())
        });
        flat(res)?;
        self.flush()
    }

    /// Jobs whose tasks are all done but whose certificate is not stored
    /// (to finish after a restart).
    pub fn finishing_jobs(&self) -> Result<Vec<String>> {
        Ok(self
            .jobs()?
            .into_iter()
            .filter(|j| j.state == JobState::Finishing)
            .map(|j| j.id)
            .collect())
    }
}

/// Splits a lease id `"<job>.<index>.<attempt>"`.
pub fn parse_lease(lease: &str) -> Option<(String, u32)> {
    let mut it = lease.rsplitn(3, '.');
    let _attempt: u32 = it.next()?.parse().ok()?;
    let index: u32 = it.next()?.parse().ok()?;
    let job = it.next()?;
    Some((job.to_string(), index))
}

#[cfg(test)]
#[path = "store_tests.rs"]
pub(crate) mod tests;
