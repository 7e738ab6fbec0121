//! The gRPC services (`zkaudit.v1.Jobs` and `zkaudit.v1.Workers`) over the
//! task store, the lease sweeper and certificate assembly.
//!
//! Every proof a worker returns is checked by [`zkaudit_circuits::tasks`]
//! against the job's transcript before the store accepts it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc, Notify, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, info_span, warn, Instrument};
use zkaudit_circuits::audit::tasks::{
    admit as plan_audit_job, assemble, verify_chunk, verify_combine, AuditJob, AuditPart,
    AuditRequest,
};
use zkaudit_circuits::audit::{audit_vk, describe_claim, verify_audit, AuditShape, SaltKey};
use zkaudit_circuits::certificate::Certificate;
use zkaudit_circuits::keys::VkPins;
use zkaudit_circuits::pipeline::auto_shape_span;
use zkaudit_circuits::shape::{StepShape, MAX_SPAN};
use zkaudit_circuits::srs;
use zkaudit_circuits::tasks::{
    batched_certificate, succinct_certificate, verify_aggregate, verify_leaf, Artifact, JobContext,
    KeyStore,
};
use zkaudit_model::transcript::Transcript;
use zkaudit_proto::v1 as pb;
use zkaudit_proto::CHUNK_BYTES;

use crate::auth::Caller;
use crate::plan::{plan_audit, plan_job, JobMode, TaskKind};
use crate::store::{
    Blame, Completed, JobKind, JobRecord, JobSpec, JobState, Requeued, Store, StoreError,
    TaskState, QUARANTINE_AFTER,
};
use crate::{Clock, Config};

/// State shared by the services, the sweeper and the HTTP endpoints.
pub struct Shared {
    /// The task store.
    pub store: Store,
    /// Configuration.
    pub cfg: Config,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Metrics.
    pub metrics: crate::metrics::Metrics,
    /// Job events for `Watch`.
    pub events: broadcast::Sender<(String, String)>,
    /// Woken when tasks may have become ready.
    pub ready: Notify,
    /// Set when the coordinator stops: `Watch` streams and long polls end.
    pub stopping: tokio::sync::watch::Sender<bool>,
    contexts: Mutex<HashMap<String, Arc<JobContext>>>,
    audits: Mutex<HashMap<String, Arc<(AuditJob, SaltKey)>>>,
    audit_vks: Mutex<HashMap<String, zkaudit_circuits::Vk>>,
    keys: Mutex<HashMap<(u32, u32), Arc<KeyStore>>>,
    verify_slots: Semaphore,
    /// Digests of the verifying keys and SRS the coordinator derived or
    /// loaded itself, in its data directory (workers may share `keys_dir`).
    pins: VkPins,
    /// The SRS files served to workers.
    pub srs_files: crate::srs_serve::SrsFiles,
    /// Jobs whose verifying keys are derived (their aggregations may be leased).
    pub(crate) key_prep: crate::keyprep::KeyPrep,
}

fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NoJob(j) => Status::not_found(format!("no job {j}")),
        StoreError::LeaseLost(l) => Status::failed_precondition(format!(
            "lease {l} is not held (expired, completed, or its job ended)"
        )),
        StoreError::State(m) => Status::failed_precondition(m),
        e => Status::internal(e.to_string()),
    }
}

fn blocking_err(e: tokio::task::JoinError) -> Status {
    Status::internal(format!("internal task failed: {e}"))
}

impl Shared {
    /// Shared state over an opened store.
    pub fn new(store: Store, cfg: Config, clock: Arc<dyn Clock>) -> Self {
        let cfg_pins = cfg.pins_dir();
        let corrupt = cfg.corrupt_srs_streams;
        Shared {
            store,
            cfg,
            clock,
            metrics: Default::default(),
            events: broadcast::channel(1024).0,
            ready: Notify::new(),
            stopping: tokio::sync::watch::channel(false).0,
            contexts: Mutex::new(HashMap::new()),
            audits: Mutex::new(HashMap::new()),
            audit_vks: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            verify_slots: Semaphore::new(2),
            pins: VkPins::new(cfg_pins),
            srs_files: crate::srs_serve::SrsFiles::new(corrupt),
            key_prep: Default::default(),
        }
    }

    pub(crate) fn event(&self, job: &str, message: String) {
        info!(job = job, "{message}");
        let _ = self.events.send((job.to_string(), message));
    }

    /// The context (parsed transcript and Merkle tree) of a job, cached.
    pub fn context(&self, job: &JobRecord) -> Result<Arc<JobContext>, Status> {
        if let Some(c) = self
            .contexts
            .lock()
            .ok()
            .and_then(|m| m.get(&job.id).cloned())
        {
            return Ok(c);
        }
        let bytes = self.store.transcript(&job.id).map_err(store_status)?;
        let t = Transcript::from_bytes(&bytes, std::path::Path::new(&job.id))
            .map_err(|e| Status::internal(format!("stored transcript of {}: {e}", job.id)))?;
        let ctx = Arc::new(JobContext::new(t, job.shape.clone()));
        if let Ok(mut m) = self.contexts.lock() {
            if m.len() > 16 {
                m.clear();
            }
            m.insert(job.id.clone(), ctx.clone());
        }
        Ok(ctx)
    }

    /// The coordinator's SRS at `k`, refused if it is not the one pinned.
    pub fn params(
        &self,
        k: u32,
    ) -> Result<zkaudit_circuits::ParamsKZG<zkaudit_circuits::Bn256>, Status> {
        let p = srs::load(&self.cfg.srs, k).map_err(|e| {
            Status::failed_precondition(format!(
                "the coordinator cannot load its SRS for k = {k}: {e}"
            ))
        })?;
        // An SRS file replaced under the coordinator (by anyone who can
        // write its directory) is refused, not silently trusted.
        self.pins
            .check_or_pin(
                &format!("srs-k{k}"),
                &srs::srs_id(&p),
                &format!("the SRS at k = {k} ({})", self.cfg.srs.display()),
            )
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(p)
    }

    /// SRS and keys for a step size and an aggregation size (0: none).
    pub fn keys(&self, k: u32, agg_k: u32) -> Result<Arc<KeyStore>, Status> {
        if let Some(ks) = self
            .keys
            .lock()
            .ok()
            .and_then(|m| m.get(&(k, agg_k)).cloned())
        {
            return Ok(ks);
        }
        let step = self.params(k)?;
        let agg = if agg_k > 0 {
            Some(self.params(agg_k)?)
        } else {
            None
        };
        let ks = Arc::new(
            KeyStore::new(self.cfg.keys_dir.clone(), step, agg).with_pins(self.pins.clone()),
        );
        if let Ok(mut m) = self.keys.lock() {
            m.insert((k, agg_k), ks.clone());
        }
        Ok(ks)
    }

    /// The planned audit of an audit job with its salt key, cached.
    pub fn audit(&self, job: &JobRecord) -> Result<Arc<(AuditJob, SaltKey)>, Status> {
        if let Some(a) = self
            .audits
            .lock()
            .ok()
            .and_then(|m| m.get(&job.id).cloned())
        {
            return Ok(a);
        }
        let bytes = self.store.audit(&job.id).map_err(store_status)?;
        let a = AuditJob::from_bytes(&bytes, &job.id)
            .map_err(|e| Status::internal(format!("stored audit of {}: {e}", job.id)))?;
        let ctx = self.context(job)?;
        let salts = SaltKey::new(&a.claim, &a.data(&ctx.transcript));
        let out = Arc::new((a, salts));
        if let Ok(mut m) = self.audits.lock() {
            if m.len() > 16 {
                m.clear();
            }
            m.insert(job.id.clone(), out.clone());
        }
        Ok(out)
    }

    /// The SRS at `k` and the verifying key of an audit circuit (derived
    /// from the shape and cached).
    fn audit_vk(
        &self,
        shape: &AuditShape,
    ) -> Result<(Arc<KeyStore>, zkaudit_circuits::Vk), Status> {
        let ks = self.keys(shape.k, 0)?;
        let id = format!("{}-{}", shape.id(), shape.k);
        if let Some(vk) = self.audit_vks.lock().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok((ks, vk));
        }
        let vk = audit_vk(&self.cfg.keys_dir, shape, &ks.step_params, Some(&self.pins))
            .map_err(|e| Status::internal(format!("audit verifying key: {e}")))?;
        if let Ok(mut m) = self.audit_vks.lock() {
            m.insert(id, vk.clone());
        }
        Ok((ks, vk))
    }

    /// The accepted proof of task `index` of a job.
    fn stored_artifact(&self, job: &str, index: u32) -> Result<Vec<u8>, Status> {
        self.store
            .artifact(job, index)
            .map_err(store_status)?
            .ok_or_else(|| Status::internal(format!("task {index} has no proof")))
    }

    /// The accepted proofs of `tasks`, in order, as sent to workers.
    fn stored_artifacts(&self, job: &str, tasks: &[u32]) -> Result<Vec<pb::ProofArtifact>, Status> {
        tasks
            .iter()
            .map(|&c| {
                Ok(pb::ProofArtifact {
                    body: self.stored_artifact(job, c)?,
                })
            })
            .collect()
    }

    /// A stored audit task result.
    fn audit_part(&self, job: &str, index: u32) -> Result<AuditPart, Status> {
        let b = self.stored_artifact(job, index)?;
        AuditPart::from_bytes(&b, "stored audit proof").map_err(|e| Status::internal(e.to_string()))
    }

    /// The chunk proofs of tasks `chunks` (in order).
    fn audit_chunks(
        &self,
        job: &str,
        chunks: &[u32],
    ) -> Result<Vec<zkaudit_circuits::audit::ChunkProof>, Status> {
        chunks
            .iter()
            .map(|&c| match self.audit_part(job, c)? {
                AuditPart::Chunk { proof, .. } => Ok(proof),
                AuditPart::Combine { .. } => {
                    Err(Status::internal(format!("task {c} holds no chunk proof")))
                }
            })
            .collect()
    }

    /// Checks a returned audit task result; `Ok(Err(why))` rejects it.
    fn verify_audit_task(
        &self,
        job: &JobRecord,
        kind: &TaskKind,
        body: &[u8],
    ) -> Result<Result<(), String>, Status> {
        let part = match AuditPart::from_bytes(body, "returned proof") {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let ctx = self.context(job)?;
        let a = self.audit(job)?;
        let (aj, salts) = (&a.0, &a.1);
        let data = aj.data(&ctx.transcript);
        Ok(match (kind, part) {
            (TaskKind::AuditChunk { chunk }, AuditPart::Chunk { index, proof }) => {
                if index != *chunk {
                    return Ok(Err(format!("a proof of chunk {index}, not {chunk}")));
                }
                let (ks, vk) = self.audit_vk(&aj.plan.chunk)?;
                verify_chunk(
                    aj,
                    &data,
                    Some(&ctx.tree),
                    salts,
                    *chunk as usize,
                    &proof,
                    &ks.step_params,
                    &vk,
                )
                .map_err(|e| e.to_string())
            }
            (TaskKind::AuditCombine { chunks }, AuditPart::Combine { proof, revealed }) => {
                let shape = aj
                    .plan
                    .combine
                    .as_ref()
                    .ok_or_else(|| Status::internal("the audit has no combine circuit"))?;
                let (ks, vk) = self.audit_vk(shape)?;
                let parts = self.audit_chunks(&job.id, chunks)?;
                verify_combine(
                    aj,
                    &data,
                    salts,
                    &parts,
                    &proof,
                    &revealed,
                    &ks.step_params,
                    &vk,
                )
                .map_err(|e| e.to_string())
            }
            _ => Err("the result is not of the task's kind".to_string()),
        })
    }

    /// The audit proof of a finishing audit job, assembled from its verified
    /// parts and verified once more as a whole (as `zkaudit verify` would).
    fn audit_proof(&self, job: &JobRecord) -> Result<Vec<u8>, String> {
        let ctx = self.context(job).map_err(|e| e.message().to_string())?;
        let a = self.audit(job).map_err(|e| e.message().to_string())?;
        let aj = &a.0;
        let mut chunks = Vec::new();
        let mut combine = None;
        for (i, kind) in job.plan.tasks.iter().enumerate() {
            let part = self
                .audit_part(&job.id, i as u32)
                .map_err(|e| e.message().to_string())?;
            match (kind, part) {
                (TaskKind::AuditChunk { .. }, AuditPart::Chunk { proof, .. }) => chunks.push(proof),
                (TaskKind::AuditCombine { .. }, AuditPart::Combine { proof, revealed }) => {
                    combine = Some((proof, revealed))
                }
                _ => return Err(format!("task {i} holds a result of another kind")),
            }
        }
        let ks = self
            .keys(aj.plan.chunk.k, 0)
            .map_err(|e| e.message().to_string())?;
        let audit = assemble(aj, chunks, combine, srs::srs_id(&ks.step_params))
            .map_err(|e| e.to_string())?;
        let t = &ctx.transcript;
        verify_audit(
            &audit,
            &aj.binding,
            &t.config.arch,
            &t.config.fx,
            &|k| {
                self.keys(k, 0)
                    .map(|ks| ks.step_params.clone())
                    .map_err(|e| zkaudit_circuits::CircuitError::Srs(e.message().to_string()))
            },
            &self.cfg.keys_dir,
            Some(&self.pins),
        )
        .map_err(|e| format!("the assembled audit does not verify: {e}"))?;
        audit.to_bytes().map_err(|e| e.to_string())
    }

    pub(crate) fn agg_k(job: &JobRecord) -> u32 {
        match job.spec.mode {
            JobMode::Batched => 0,
            JobMode::Succinct => job.spec.agg_k,
        }
    }

    /// Counts a failure against a worker; logs its quarantine when this one starts it.
    fn worker_failed(&self, worker: &str, reason: &str, now: u64) {
        match self.store.record_failure(worker, reason, now) {
            Ok(h) if h.failures_in_a_row == QUARANTINE_AFTER => {
                let msg = format!(
                    "worker {worker} quarantined for {} s after {} failures in a row; last: {reason}",
                    self.store.quarantine_ms / 1000,
                    h.failures_in_a_row
                );
                warn!("{msg}");
            }
            Ok(_) => {}
            Err(e) => warn!("worker health of {worker}: {e}"),
        }
    }

    /// Requeues expired leases; returns how many.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now_ms();
        let expired = match self.store.expired_leases(now) {
            Ok(v) => v,
            Err(e) => {
                warn!("lease sweep: {e}");
                return 0;
            }
        };
        for (lease, rec) in &expired {
            let reason = format!("lease expired: worker {} stopped heartbeating", rec.worker);
            self.metrics
                .lease_expiries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match self.store.requeue(lease, &reason, Blame::Task, now) {
                Ok(Requeued::Retry) => {
                    self.event(&rec.job, format!("task {} re-queued: {reason}", rec.index))
                }
                Ok(Requeued::JobFailed(why)) => self.event(&rec.job, format!("job failed: {why}")),
                Ok(Requeued::Stale) => {}
                Err(e) => warn!("requeue {lease}: {e}"),
            }
        }
        if !expired.is_empty() {
            self.ready.notify_waiters();
        }
        expired.len()
    }

    /// Assembles and stores the certificate of a finishing job.
    pub async fn finish_job(self: &Arc<Self>, job_id: String) {
        let s = self.clone();
        let id = job_id.clone();
        let res = tokio::task::spawn_blocking(move || -> Result<(usize, &'static str), String> {
            let job = s.store.job(&id).map_err(|e| e.to_string())?;
            if job.spec.kind == JobKind::Audit {
                let bytes = s.audit_proof(&job)?;
                s.store
                    .finish(&id, &bytes, s.clock.now_ms())
                    .map_err(|e| e.to_string())?;
                return Ok((bytes.len(), "audit proof"));
            }
            let ctx = s.context(&job).map_err(|e| e.message().to_string())?;
            let keys = s
                .keys(job.shape.k, Shared::agg_k(&job))
                .map_err(|e| e.message().to_string())?;
            let artifact = |i: u32| -> Result<Artifact, String> {
                let b = s
                    .store
                    .artifact(&id, i)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("task {i} has no stored proof"))?;
                Artifact::from_bytes(&b, &format!("{id}/{i}")).map_err(|e| e.to_string())
            };
            let cert: Certificate = match job.plan.root {
                None => {
                    let leaves = (0..job.plan.tasks.len() as u32)
                        .map(artifact)
                        .collect::<Result<Vec<_>, _>>()?;
                    batched_certificate(&ctx, &keys.step_params, leaves)
                        .map_err(|e| e.to_string())?
                }
                Some(root) => {
                    let agg = keys.agg_params.as_ref().ok_or("no aggregation SRS")?;
                    succinct_certificate(&ctx, &keys.step_params, agg, artifact(root)?)
                        .map_err(|e| e.to_string())?
                }
            };
            let bytes = cert.to_bytes().map_err(|e| e.to_string())?;
            s.store
                .finish(&id, &bytes, s.clock.now_ms())
                .map_err(|e| e.to_string())?;
            Ok((bytes.len(), "certificate"))
        })
        .await;
        let outcome = match res {
            Ok(r) => r,
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok((n, what)) => self.event(&job_id, format!("{what} ready ({n} bytes)")),
            Err(e) => {
                let msg = format!("the result could not be assembled: {e}");
                let _ = self.store.fail_job(&job_id, &msg, self.clock.now_ms());
                self.event(&job_id, format!("job failed: {msg}"));
            }
        }
    }

    /// The status message of a job.
    pub fn status(&self, job: &JobRecord, with_tasks: bool) -> Result<pb::JobStatus, Status> {
        let tasks = self.store.tasks(&job.id).map_err(store_status)?;
        let mut st = pb::JobStatus {
            job_id: job.id.clone(),
            name: job.spec.name.clone(),
            state: match job.state {
                JobState::Running | JobState::Finishing => pb::JobState::Running,
                JobState::Done => pb::JobState::Done,
                JobState::Failed => pb::JobState::Failed,
                JobState::Cancelled => pb::JobState::Cancelled,
            } as i32,
            tasks_total: tasks.len() as u32,
            steps_total: job.spec.steps,
            error: job.error.clone().unwrap_or_default(),
            created_ms: job.created_ms,
            finished_ms: job.finished_ms.unwrap_or(0),
            kind: match job.spec.kind {
                JobKind::Training => "training",
                JobKind::Audit => "audit",
            }
            .into(),
            claim: job.spec.claim.clone().unwrap_or_default(),
            ..Default::default()
        };
        for (i, (t, kind)) in tasks.iter().zip(&job.plan.tasks).enumerate() {
            let done = matches!(t.state, TaskState::Done { .. });
            st.tasks_done += u32::from(done);
            let (kname, first, last, level) = match kind {
                TaskKind::Leaf { first, last } => {
                    if done {
                        st.steps_proven += last - first + 1;
                    }
                    ("leaf", *first, *last, 0)
                }
                TaskKind::Aggregate { level, .. } => {
                    st.aggregations_total += 1;
                    st.aggregations_done += u32::from(done);
                    ("aggregate", 0, 0, *level)
                }
                TaskKind::AuditChunk { chunk } => ("audit-chunk", *chunk as u64, *chunk as u64, 0),
                TaskKind::AuditCombine { .. } => ("audit-combine", 0, 0, 0),
            };
            if with_tasks {
                let (state, worker, prove_ms) = match &t.state {
                    TaskState::Queued => ("queued", String::new(), 0),
                    TaskState::Leased { worker, .. } => ("leased", worker.clone(), 0),
                    TaskState::Done {
                        worker, prove_ms, ..
                    } => ("done", worker.clone(), *prove_ms),
                };
                st.tasks.push(pb::TaskInfo {
                    index: i as u32,
                    kind: kname.into(),
                    state: state.into(),
                    first_step: first,
                    last_step: last,
                    level,
                    worker_id: worker,
                    attempts: t.attempts,
                    prove_ms,
                });
            }
        }
        Ok(st)
    }
}

/// The `Jobs` service.
pub struct JobsService(pub Arc<Shared>);
/// The `Workers` service.
pub struct WorkersService(pub Arc<Shared>);

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send>>;
/// A stream of file chunks.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::Chunk, Status>> + Send>>;

fn chunks(bytes: Vec<u8>) -> ChunkStream {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let total = bytes.len() as u64;
        for (i, c) in bytes.chunks(CHUNK_BYTES).enumerate() {
            let chunk = pb::Chunk {
                data: c.to_vec(),
                offset: (i * CHUNK_BYTES) as u64,
                total,
            };
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

fn job_id(r: &pb::JobRef) -> Result<&str, Status> {
    if r.job_id.is_empty() || r.job_id.len() > 64 {
        return Err(Status::invalid_argument(
            "job_id: give the id `submit` printed",
        ));
    }
    Ok(&r.job_id)
}

/// Most tasks one job (training or audit) may be split into.
pub const MAX_JOB_TASKS: usize = 100_000;

/// Checks a received transcript against its announced hash and parses it.
fn parse_transcript(spec: &pb::JobSpec, bytes: &[u8]) -> Result<(String, Transcript), Status> {
    let sha = hex::encode(Sha256::digest(bytes));
    if !spec.transcript_sha256.is_empty() && !spec.transcript_sha256.eq_ignore_ascii_case(&sha) {
        return Err(Status::invalid_argument(format!(
            "transcript_sha256: the received transcript hashes to {sha}, not {}",
            spec.transcript_sha256
        )));
    }
    let t = Transcript::from_bytes(bytes, std::path::Path::new("submitted transcript"))
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    t.validate()
        .map_err(|e| Status::invalid_argument(format!("submitted transcript: {e}")))?;
    Ok((sha, t))
}

fn job_name(spec: &pb::JobSpec, sha: &str, prefix: &str) -> String {
    if spec.name.is_empty() {
        format!("{prefix}-{}", &sha[..12])
    } else {
        spec.name.chars().take(128).collect()
    }
}

/// Validates an audit job: the request must decode, bind to the
/// transcript's commitments, and hold; the coordinator plans its circuits.
fn admit_audit(
    spec: &pb::JobSpec,
    bytes: &[u8],
) -> Result<(JobSpec, JobContext, AuditJob), Status> {
    let (sha, t) = parse_transcript(spec, bytes)?;
    let req = AuditRequest::from_bytes(&spec.audit, "audit")
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    // The step shape is not used by audit tasks; any valid one will do.
    let shape = StepShape::for_run(&t, 12);
    let ctx = JobContext::new(t, shape);
    let job = plan_audit_job(&req, &ctx.transcript, &ctx.tree).map_err(|e| match e {
        zkaudit_circuits::CircuitError::Unsatisfied(m) => Status::failed_precondition(m),
        e => Status::invalid_argument(format!("audit: {e}")),
    })?;
    let tasks = job.plan.chunks + usize::from(job.plan.combine.is_some());
    if tasks > MAX_JOB_TASKS {
        return Err(Status::invalid_argument(format!(
            "audit: {tasks} tasks exceed the limit of {MAX_JOB_TASKS}; use larger chunks"
        )));
    }
    Ok((
        JobSpec {
            kind: JobKind::Audit,
            claim: Some(describe_claim(&job.claim, &job.binding, &[])),
            name: job_name(spec, &sha, &format!("{}-audit", job.claim.name())),
            steps: 0,
            mode: JobMode::Batched,
            agg_k: 0,
            transcript_sha256: sha,
        },
        ctx,
        job,
    ))
}

/// Validates a job spec and a received transcript, choosing the shape.
fn admit(
    spec: &pb::JobSpec,
    bytes: &[u8],
    default_agg_k: u32,
) -> Result<(JobSpec, StepShape, Transcript), Status> {
    let bad = |m: String| Err(Status::invalid_argument(m));
    let (sha, t) = parse_transcript(spec, bytes)?;
    let n = t.num_steps() as u64;
    let steps = if spec.steps == 0 { n } else { spec.steps };
    if steps == 0 || steps > n {
        return bad(format!(
            "steps: must be in 1..={n} (the run's steps), got {steps}"
        ));
    }
    let mode = match pb::Mode::try_from(spec.mode) {
        Ok(pb::Mode::Succinct) => JobMode::Succinct,
        Ok(pb::Mode::Batched) | Ok(pb::Mode::Unspecified) => JobMode::Batched,
        Err(_) => return bad(format!("mode: unknown value {}", spec.mode)),
    };
    let span = match (mode, spec.span) {
        (JobMode::Batched, 0 | 1) => 1,
        (JobMode::Batched, s) => {
            return bad(format!(
                "span: batched jobs prove one step per proof, got {s}"
            ))
        }
        (JobMode::Succinct, 0) => 1,
        (JobMode::Succinct, s) if s as usize <= MAX_SPAN => s as usize,
        (JobMode::Succinct, s) => return bad(format!("span: must be in 1..={MAX_SPAN}, got {s}")),
    };
    let shape = match spec.k {
        0 => auto_shape_span(&t, span, mode == JobMode::Succinct && steps > span as u64)
            .map_err(|e| Status::invalid_argument(e.to_string()))?,
        k => {
            StepShape::check_k(k).map_err(|e| Status::invalid_argument(format!("k: {e}")))?;
            StepShape::for_run(&t, k).with_span(span)
        }
    };
    let agg_k = match spec.agg_k {
        0 => default_agg_k,
        k => {
            StepShape::check_k(k).map_err(|e| Status::invalid_argument(format!("agg_k: {e}")))?;
            k
        }
    };
    Ok((
        JobSpec {
            kind: JobKind::Training,
            claim: None,
            name: job_name(spec, &sha, "run"),
            steps,
            mode,
            agg_k,
            transcript_sha256: sha,
        },
        shape,
        t,
    ))
}

#[tonic::async_trait]
impl pb::jobs_server::Jobs for JobsService {
    async fn submit(
        &self,
        req: Request<Streaming<pb::SubmitRequest>>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let s = self.0.clone();
        let owner = req
            .extensions()
            .get::<Caller>()
            .map(|c| c.owner.clone())
            .unwrap_or_else(|| "anonymous".into());
        let mut stream = req.into_inner();
        let spec = match stream.message().await? {
            Some(pb::SubmitRequest {
                part: Some(pb::submit_request::Part::Spec(spec)),
            }) => spec,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of Submit must carry the job spec",
                ))
            }
        };
        let max = s.cfg.max_transcript_bytes;
        if spec.transcript_bytes > max {
            return Err(Status::invalid_argument(format!(
                "transcript_bytes: {} exceeds the coordinator's limit of {max} bytes",
                spec.transcript_bytes
            )));
        }
        let mut bytes = Vec::with_capacity(spec.transcript_bytes as usize);
        while let Some(m) = stream.message().await? {
            match m.part {
                Some(pb::submit_request::Part::Chunk(c)) => {
                    if c.len() > CHUNK_BYTES || bytes.len() as u64 + c.len() as u64 > max {
                        return Err(Status::invalid_argument(format!(
                            "transcript: chunks must be at most {CHUNK_BYTES} bytes and the whole at most {max} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&c);
                }
                _ => {
                    return Err(Status::invalid_argument(
                        "only transcript chunks may follow the job spec",
                    ))
                }
            }
        }
        if spec.transcript_bytes != 0 && spec.transcript_bytes != bytes.len() as u64 {
            return Err(Status::invalid_argument(format!(
                "transcript_bytes: announced {} bytes, received {}",
                spec.transcript_bytes,
                bytes.len()
            )));
        }
        let default_agg_k = s.cfg.default_agg_k;
        let s2 = s.clone();
        let job = tokio::task::spawn_blocking(move || -> Result<JobRecord, Status> {
            if !spec.audit.is_empty() {
                let (spec, ctx, audit) = admit_audit(&spec, &bytes)?;
                let plan = plan_audit(audit.plan.chunks as u32, audit.plan.combine.is_some());
                let q = audit
                    .to_bytes()
                    .map_err(|e| Status::internal(e.to_string()))?;
                let job = s2
                    .store
                    .submit(
                        spec,
                        ctx.shape.clone(),
                        plan,
                        &bytes,
                        Some(&q),
                        &owner,
                        s2.clock.now_ms(),
                    )
                    .map_err(store_status)?;
                if let Ok(mut m) = s2.contexts.lock() {
                    m.insert(job.id.clone(), Arc::new(ctx));
                }
                return Ok(job);
            }
            let (spec, shape, t) = admit(&spec, &bytes, default_agg_k)?;
            let plan = plan_job(spec.steps, spec.mode, shape.span);
            let tasks = plan.tasks.len();
            if tasks > MAX_JOB_TASKS {
                return Err(Status::invalid_argument(format!(
                    "steps: {} steps at span {} make {tasks} tasks, above the limit of {MAX_JOB_TASKS}; submit fewer steps per job or a larger span",
                    spec.steps, shape.span
                )));
            }
            let job = s2
                .store
                .submit(
                    spec,
                    shape.clone(),
                    plan,
                    &bytes,
                    None,
                    &owner,
                    s2.clock.now_ms(),
                )
                .map_err(store_status)?;
            if let Ok(mut m) = s2.contexts.lock() {
                m.insert(job.id.clone(), Arc::new(JobContext::new(t, shape)));
            }
            Ok(job)
        })
        .await
        .map_err(blocking_err)??;
        s.metrics
            .jobs_submitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let what = match &job.spec.claim {
            Some(claim) => format!(
                "submitted: audit in {} tasks: {claim}",
                job.plan.tasks.len()
            ),
            None => format!(
                "submitted: {} steps, {:?} mode, {} tasks (k = {}, span {})",
                job.spec.steps,
                job.spec.mode,
                job.plan.tasks.len(),
                job.shape.k,
                job.shape.span
            ),
        };
        s.event(&job.id, what);
        crate::keyprep::start(&s, job.clone());
        s.ready.notify_waiters();
        Ok(Response::new(pb::SubmitResponse {
            job_id: job.id,
            tasks: job.plan.tasks.len() as u32,
        }))
    }

    async fn get_status(
        &self,
        req: Request<pb::JobRef>,
    ) -> Result<Response<pb::JobStatus>, Status> {
        let id = job_id(req.get_ref())?;
        let job = self.0.store.job(id).map_err(store_status)?;
        Ok(Response::new(self.0.status(&job, true)?))
    }

    type WatchStream = EventStream;

    async fn watch(&self, req: Request<pb::JobRef>) -> Result<Response<EventStream>, Status> {
        let id = job_id(req.get_ref())?.to_string();
        let s = self.0.clone();
        let mut rx = s.events.subscribe();
        let mut stopping = s.stopping.subscribe();
        let job = s.store.job(&id).map_err(store_status)?;
        let first = s.status(&job, false)?;
        let (tx, out) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut terminal = job.state.is_terminal();
            if tx
                .send(Ok(pb::JobEvent {
                    status: Some(first),
                    message: format!("job {id}"),
                }))
                .await
                .is_err()
            {
                return;
            }
            while !terminal {
                if *stopping.borrow() {
                    // The stream ends so that the server can stop.
                    let _ = tx
                        .send(Err(Status::unavailable(
                            "the coordinator is shutting down; watch again once it is back",
                        )))
                        .await;
                    return;
                }
                let next = tokio::select! {
                    r = tokio::time::timeout(Duration::from_secs(5), rx.recv()) => r,
                    _ = stopping.changed() => continue,
                };
                let msg = match next {
                    Ok(Ok((j, m))) if j == id => m,
                    Ok(Ok(_)) => continue,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => String::new(),
                    Ok(Err(broadcast::error::RecvError::Closed)) => return,
                };
                let st = match s.store.job(&id) {
                    Ok(j) => {
                        terminal = j.state.is_terminal();
                        s.status(&j, false)
                    }
                    Err(e) => Err(store_status(e)),
                };
                let ev = st.map(|st| pb::JobEvent {
                    status: Some(st),
                    message: msg,
                });
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    type FetchCertificateStream = ChunkStream;

    async fn fetch_certificate(
        &self,
        req: Request<pb::JobRef>,
    ) -> Result<Response<ChunkStream>, Status> {
        let id = job_id(req.get_ref())?;
        let job = self.0.store.job(id).map_err(store_status)?;
        let cert = {
            let (s, id) = (self.0.clone(), id.to_string());
            tokio::task::spawn_blocking(move || s.store.certificate(&id))
                .await
                .map_err(blocking_err)?
                .map_err(store_status)?
        };
        match cert {
            Some(c) => Ok(Response::new(chunks(c))),
            None => Err(Status::failed_precondition(format!(
                "job {id} has no certificate yet (it is {:?}{})",
                job.state,
                job.error.map(|e| format!(": {e}")).unwrap_or_default()
            ))),
        }
    }

    async fn cancel(&self, req: Request<pb::JobRef>) -> Result<Response<pb::JobStatus>, Status> {
        let id = job_id(req.get_ref())?;
        // Only the client that submitted the job, or the admin, may cancel it.
        let caller = req.extensions().get::<Caller>().cloned();
        let owner = self.0.store.owner(id).map_err(store_status)?;
        let allowed = match (&caller, &owner) {
            (Some(c), _) if c.admin => true,
            (Some(c), Some(o)) => *o == c.owner,
            _ => false,
        };
        if !allowed {
            self.0.store.job(id).map_err(store_status)?;
            return Err(Status::permission_denied(format!(
                "job {id} was submitted by another client: only that client or the admin token may cancel it"
            )));
        }
        let job = self
            .0
            .store
            .cancel(id, self.0.clock.now_ms())
            .map_err(store_status)?;
        self.0
            .event(id, format!("cancel requested: job is {:?}", job.state));
        Ok(Response::new(self.0.status(&job, false)?))
    }

    async fn list_jobs(
        &self,
        _req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let mut jobs = self.0.store.jobs().map_err(store_status)?;
        jobs.reverse();
        let jobs = jobs
            .iter()
            .map(|j| self.0.status(j, false))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }
}

fn worker_of<'a>(s: &Shared, id: &'a str) -> Result<&'a str, Status> {
    match s.store.worker(id) {
        Ok(Some(_)) => Ok(id),
        Ok(None) => Err(Status::failed_precondition(format!(
            "worker_id {id:?} is not registered with this coordinator: call Register"
        ))),
        Err(e) => Err(store_status(e)),
    }
}

/// Leases the next task `worker` can take and builds its message (blocking:
/// sled flushes and proof copies); `None` when nothing is ready. A task too
/// large for one gRPC message fails its job and the next one is tried.
fn lease_task(s: &Arc<Shared>, worker: &str) -> Result<Option<pb::Task>, Status> {
    loop {
        // A succinct job's aggregations wait for its verifying keys
        // ([`crate::keyprep`]); jobs found without them get them started.
        let leased = s
            .store
            .lease_where(worker, s.clock.now_ms(), s.cfg.lease_ms, &|j, i, k| {
                s.key_prep.gate(j, i, k)
            });
        for id in s.key_prep.take_wanted() {
            if let Ok(job) = s.store.job(&id) {
                crate::keyprep::start(s, job);
            }
        }
        let Some(l) = leased.map_err(store_status)? else {
            return Ok(None);
        };
        let job = s.store.job(&l.job).map_err(store_status)?;
        let mut task = pb::Task {
            job_id: l.job.clone(),
            index: l.index,
            lease_id: l.lease.clone(),
            attempt: l.attempt,
            shape: bincode::serialize(&job.shape).map_err(|e| Status::internal(e.to_string()))?,
            transcript_sha256: job.spec.transcript_sha256.clone(),
            kind: None,
        };
        let what = match &job.plan.tasks[l.index as usize] {
            TaskKind::Leaf { first, last } => {
                task.kind = Some(pb::task::Kind::Leaf(pb::LeafTask {
                    first_step: *first,
                    last_step: *last,
                }));
                format!("steps {first}..={last}")
            }
            TaskKind::Aggregate { level, children } => {
                let kids = s.stored_artifacts(&l.job, children)?;
                task.kind = Some(pb::task::Kind::Aggregate(pb::AggregateTask {
                    level: *level,
                    agg_k: job.spec.agg_k,
                    children: kids,
                }));
                format!("aggregation level {level} of tasks {children:?}")
            }
            TaskKind::AuditChunk { chunk } => {
                let audit = s.store.audit(&l.job).map_err(store_status)?;
                task.kind = Some(pb::task::Kind::AuditChunk(pb::AuditChunkTask {
                    audit,
                    chunk: *chunk,
                }));
                format!("audit chunk {chunk}")
            }
            TaskKind::AuditCombine { chunks } => {
                let audit = s.store.audit(&l.job).map_err(store_status)?;
                let parts = s.stored_artifacts(&l.job, chunks)?;
                task.kind = Some(pb::task::Kind::AuditCombine(pb::AuditCombineTask {
                    audit,
                    chunks: parts,
                }));
                format!("audit combine of {} chunks", chunks.len())
            }
        };
        // A task the worker could not receive would come back to
        // every worker, forever: its job fails, saying why.
        let size = prost::Message::encoded_len(&pb::LeaseResponse {
            task: Some(task.clone()),
        });
        if size > s.cfg.max_message_bytes {
            let why = format!(
                    "task {} ({what}) is {size} bytes, above the gRPC message limit of {} bytes; use larger audit chunks (fewer chunk proofs per combine) or raise the limit",
                    l.index, s.cfg.max_message_bytes
                );
            warn!(job = %l.job, "{why}");
            if let Ok(Requeued::JobFailed(w)) =
                s.store
                    .requeue(&l.lease, &why, Blame::Fatal, s.clock.now_ms())
            {
                s.event(&l.job, format!("job failed: {w}"));
            }
            continue;
        }
        info!(job = %l.job, task = l.index, worker = %worker, attempt = l.attempt, "leased {what}");
        return Ok(Some(task));
    }
}

#[tonic::async_trait]
impl pb::workers_server::Workers for WorkersService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = req.into_inner();
        if r.name.len() > 128 || r.version.len() > 64 {
            return Err(Status::invalid_argument(
                "name (<= 128 bytes) or version (<= 64 bytes) too long",
            ));
        }
        let s = &self.0;
        // A worker of another release or circuit version would fail every
        // task (or prove for other keys): refuse it before it takes one.
        let ours = zkaudit_circuits::compatibility();
        if r.version != ours {
            return Err(Status::failed_precondition(format!(
                "worker version {:?} cannot work for this coordinator (version {ours:?}): run the same zkaudit release on both",
                r.version
            )));
        }
        let w = s
            .store
            .register_worker(
                &r.name,
                r.cores,
                r.memory_bytes,
                &r.version,
                s.clock.now_ms(),
            )
            .map_err(store_status)?;
        info!(worker = %w.id, name = %r.name, cores = r.cores, "worker registered");
        Ok(Response::new(pb::RegisterResponse {
            worker_id: w.id,
            lease_ms: s.cfg.lease_ms,
            heartbeat_ms: s.cfg.heartbeat_ms(),
        }))
    }

    async fn lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let r = req.into_inner();
        let s = self.0.clone();
        let worker = worker_of(&s, &r.worker_id)?.to_string();
        let deadline = Instant::now() + Duration::from_millis(r.wait_ms.min(s.cfg.max_wait_ms));
        let mut stopping = s.stopping.subscribe();
        loop {
            let notified = s.ready.notified();
            let task = {
                let (s, worker) = (s.clone(), worker.clone());
                tokio::task::spawn_blocking(move || lease_task(&s, &worker))
                    .await
                    .map_err(blocking_err)??
            };
            if let Some(task) = task {
                return Ok(Response::new(pb::LeaseResponse { task: Some(task) }));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || *stopping.borrow() {
                return Ok(Response::new(pb::LeaseResponse { task: None }));
            }
            tokio::select! {
                _ = tokio::time::timeout(left.min(Duration::from_secs(1)), notified) => {}
                _ = stopping.changed() => {}
            }
        }
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let s = &self.0;
        let progress = (r.progress.clamp(0.0, 1.0) * 1000.0) as u32;
        let keep_going = s
            .store
            .heartbeat(
                &r.worker_id,
                &r.lease_id,
                progress,
                s.clock.now_ms(),
                s.cfg.lease_ms,
            )
            .map_err(store_status)?;
        Ok(Response::new(pb::HeartbeatResponse { keep_going }))
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let r = req.into_inner();
        let s = self.0.clone();
        let body = r
            .proof
            .map(|p| p.body)
            .ok_or_else(|| Status::invalid_argument("proof: missing"))?;
        if body.len() as u64 > s.cfg.max_proof_bytes {
            return Err(Status::invalid_argument(format!(
                "proof: {} bytes exceeds the limit of {}",
                body.len(),
                s.cfg.max_proof_bytes
            )));
        }
        let rec = match s.store.lease_record(&r.lease_id, &r.worker_id) {
            Ok(rec) => rec,
            Err(StoreError::LeaseLost(_)) => {
                // A retried completion of an accepted proof is acknowledged.
                return match s.store.complete(
                    &r.worker_id,
                    &r.lease_id,
                    &body,
                    r.prove_ms,
                    s.clock.now_ms(),
                ) {
                    Ok(Completed::Duplicate) => Ok(Response::new(pb::CompleteResponse {
                        accepted: true,
                        message: "already accepted".into(),
                    })),
                    Ok(_) => Err(Status::internal("completed a task without a lease")),
                    Err(e) => Err(store_status(e)),
                };
            }
            Err(e) => return Err(store_status(e)),
        };
        let span = info_span!("complete", job = %rec.job, task = rec.index, worker = %r.worker_id);
        async move {
            let job = s.store.job(&rec.job).map_err(store_status)?;
            let kind = job.plan.tasks[rec.index as usize].clone();
            let _permit = s
                .verify_slots
                .acquire()
                .await
                .map_err(|_| Status::unavailable("shutting down"))?;
            let s2 = s.clone();
            let job2 = job.clone();
            let body2 = body.clone();
            let started = Instant::now();
            let verdict =
                tokio::task::spawn_blocking(move || -> Result<Result<(), String>, Status> {
                    if job2.spec.kind == JobKind::Audit {
                        return s2.verify_audit_task(&job2, &kind, &body2);
                    }
                    let a = match Artifact::from_bytes(&body2, "returned proof") {
                        Ok(a) => a,
                        Err(e) => return Ok(Err(e.to_string())),
                    };
                    let ctx = s2.context(&job2)?;
                    let keys = s2.keys(job2.shape.k, Shared::agg_k(&job2))?;
                    Ok(match &kind {
                        TaskKind::Leaf { first, last } => {
                            verify_leaf(&ctx, &keys, *first, *last, &a).map_err(|e| e.to_string())
                        }
                        TaskKind::Aggregate { children, .. } => {
                            let mut kids = Vec::new();
                            for &c in children {
                                let b = s2.store.artifact(&job2.id, c).map_err(store_status)?;
                                let b = b.ok_or_else(|| {
                                    Status::internal(format!("task {c} has no proof"))
                                })?;
                                kids.push(
                                    Artifact::from_bytes(&b, "stored proof")
                                        .map_err(|e| Status::internal(e.to_string()))?,
                                );
                            }
                            verify_aggregate(&ctx, &keys, &kids, &a).map_err(|e| e.to_string())
                        }
                        _ => Err("an audit result for a training job".to_string()),
                    })
                })
                .await
                .map_err(blocking_err)??;
            s.metrics.verify_ms.fetch_add(
                started.elapsed().as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let now = s.clock.now_ms();
            if let Err(why) = verdict {
                s.metrics
                    .proofs_rejected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = s.store.count_rejection(&r.worker_id, now);
                let reason = format!("proof from worker {} rejected: {why}", r.worker_id);
                warn!("{reason}");
                s.worker_failed(&r.worker_id, &reason, now);
                let requeued = {
                    let (s2, lease, why) = (s.clone(), r.lease_id.clone(), reason.clone());
                    tokio::task::spawn_blocking(move || {
                        s2.store.requeue(&lease, &why, Blame::Task, now)
                    })
                    .await
                    .map_err(blocking_err)?
                };
                match requeued {
                    Ok(Requeued::JobFailed(w)) => s.event(&job.id, format!("job failed: {w}")),
                    Ok(_) => s.event(&job.id, format!("task {} re-queued: {reason}", rec.index)),
                    Err(e) => warn!("requeue: {e}"),
                }
                s.ready.notify_waiters();
                return Ok(Response::new(pb::CompleteResponse {
                    accepted: false,
                    message: reason,
                }));
            }
            // complete flushes sled: off the async runtime.
            let out = {
                let (s2, worker, lease, ms) = (
                    s.clone(),
                    r.worker_id.clone(),
                    r.lease_id.clone(),
                    r.prove_ms,
                );
                tokio::task::spawn_blocking(move || {
                    s2.store.complete(&worker, &lease, &body, ms, now)
                })
                .await
                .map_err(blocking_err)?
                .map_err(store_status)?
            };
            if let Completed::Accepted { job_finished } = out {
                s.metrics
                    .proofs_accepted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let what = match &job.plan.tasks[rec.index as usize] {
                    TaskKind::Leaf { first, last } => {
                        let n = last - first + 1;
                        for _ in 0..n {
                            s.metrics.observe_step(r.prove_ms as f64 / 1e3 / n as f64);
                        }
                        format!("steps {first}..={last} proven")
                    }
                    TaskKind::Aggregate { level, .. } => {
                        format!("aggregation (level {level}) done")
                    }
                    TaskKind::AuditChunk { chunk } => format!("audit chunk {chunk} proven"),
                    TaskKind::AuditCombine { .. } => "audit combine proven".to_string(),
                };
                s.event(
                    &job.id,
                    format!(
                        "{what} by worker {} in {:.1}s",
                        r.worker_id,
                        r.prove_ms as f64 / 1e3
                    ),
                );
                s.ready.notify_waiters();
                if job_finished {
                    let s3 = s.clone();
                    let id = job.id.clone();
                    tokio::spawn(async move { s3.finish_job(id).await });
                }
            }
            Ok(Response::new(pb::CompleteResponse {
                accepted: true,
                message: "accepted".into(),
            }))
        }
        .instrument(span)
        .await
    }

    async fn fail(
        &self,
        req: Request<pb::FailRequest>,
    ) -> Result<Response<pb::FailResponse>, Status> {
        let r = req.into_inner();
        let s = &self.0;
        let rec = s
            .store
            .lease_record(&r.lease_id, &r.worker_id)
            .map_err(store_status)?;
        let reason: String = r.reason.chars().take(2000).collect();
        s.metrics
            .task_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = s.clock.now_ms();
        // A worker's word does not fail a job: a "fatal" report spends one
        // attempt (the task goes to another worker first), and a failure of
        // the worker's own setup spends none but counts against the worker.
        let blame = if r.worker_fault {
            Blame::Worker
        } else {
            Blame::Task
        };
        if r.worker_fault || r.retryable {
            s.worker_failed(&r.worker_id, &reason, now);
        }
        let requeued = {
            let (s2, lease) = (s.clone(), r.lease_id.clone());
            let why = format!("worker {}: {reason}", r.worker_id);
            // requeue flushes sled: off the async runtime.
            tokio::task::spawn_blocking(move || s2.store.requeue(&lease, &why, blame, now))
                .await
                .map_err(blocking_err)?
                .map_err(store_status)?
        };
        match requeued {
            Requeued::JobFailed(w) => s.event(&rec.job, format!("job failed: {w}")),
            Requeued::Retry => s.event(
                &rec.job,
                format!(
                    "task {} re-queued after worker {} failed: {reason}",
                    rec.index, r.worker_id
                ),
            ),
            Requeued::Stale => {}
        }
        s.ready.notify_waiters();
        Ok(Response::new(pb::FailResponse {}))
    }

    type FetchTranscriptStream = ChunkStream;

    async fn fetch_transcript(
        &self,
        req: Request<pb::JobRef>,
    ) -> Result<Response<ChunkStream>, Status> {
        let r = req.get_ref();
        let id = job_id(r)?;
        // The transcript holds the private data and weights: only a worker
        // holding a live lease of this job may read it.
        match self.0.store.lease_record(&r.lease_id, &r.worker_id) {
            Ok(rec) if rec.job == id => {}
            _ => {
                return Err(Status::permission_denied(format!(
                    "only a worker holding a lease of job {id} may fetch its transcript (give worker_id and lease_id)"
                )))
            }
        }
        let bytes = {
            let (s, id) = (self.0.clone(), id.to_string());
            // A whole-transcript copy: off the async runtime.
            tokio::task::spawn_blocking(move || s.store.transcript(&id))
                .await
                .map_err(blocking_err)?
                .map_err(store_status)?
        };
        Ok(Response::new(chunks(bytes)))
    }

    async fn describe_srs(
        &self,
        req: Request<pb::SrsRequest>,
    ) -> Result<Response<pb::SrsDescription>, Status> {
        let k = req.get_ref().k;
        crate::srs_serve::describe(self.0.clone(), k)
            .await
            .map(Response::new)
    }

    type FetchSrsStream = ChunkStream;

    async fn fetch_srs(
        &self,
        req: Request<pb::SrsRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let r = req.get_ref();
        crate::srs_serve::fetch(self.0.clone(), r.k, r.offset)
            .await
            .map(Response::new)
    }
}
