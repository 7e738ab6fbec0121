//! The zkaudit proving worker: registers with a coordinator, leases tasks
//! (leaf spans of steps, aggregation nodes, audit chunks and combine steps),
//! proves them on a rayon pool off the async runtime while heartbeating, and
//! returns the proofs.
//!
//! Proving keys are cached on disk (`keys_dir`) and the last ones in memory;
//! transcripts are fetched once per job and cached by their SHA-256. On the
//! first shutdown signal the worker finishes its current task and exits; on
//! the second it releases the lease (a retryable failure) and exits at once.
//! A finished proof is offered until the coordinator answers and kept on
//! disk meanwhile ([`pending`]), so neither a coordinator outage nor a worker
//! crash during one loses it. Failures of the worker's own setup (SRS, key
//! cache) are reported as such: they do not count against the task.

pub mod pending;
pub mod srs_fetch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;
use tracing::{info, info_span, warn, Instrument};
use zkaudit_circuits::aggregate::AggKey;
use zkaudit_circuits::audit::tasks::{prove_chunk, prove_combine, AuditJob, AuditPart};
use zkaudit_circuits::audit::{audit_key, AuditShape, SaltKey};
use zkaudit_circuits::keys::StepKey;
use zkaudit_circuits::shape::StepShape;
use zkaudit_circuits::tasks::{
    children_lens, prove_aggregate, prove_leaf, Artifact, JobContext, KeyStore,
};
use zkaudit_circuits::CircuitError;
use zkaudit_model::transcript::Transcript;
use zkaudit_proto::client::{channel, Auth};
use zkaudit_proto::v1 as pb;
use zkaudit_proto::v1::workers_client::WorkersClient;

/// Errors that stop a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// The coordinator refused or could not be reached.
    #[error("coordinator: {0}")]
    Rpc(#[from] tonic::Status),
}

/// Deliberate misbehaviour for fault tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Flip a byte of every proof before returning it.
    CorruptProof,
}

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Coordinator URL (`http://host:port`).
    pub coordinator: String,
    /// Bearer token.
    pub token: Option<String>,
    /// CA certificate (PEM) for TLS.
    pub tls_ca: Option<PathBuf>,
    /// Name shown in status.
    pub name: String,
    /// Prover threads (0: all cores).
    pub threads: usize,
    /// SRS file.
    pub srs: PathBuf,
    /// Key cache directory.
    pub keys_dir: PathBuf,
    /// Memory offered to the coordinator's leasing (0: the machine's): it
    /// leases only tasks whose estimated memory fits.
    pub memory_bytes: u64,
    /// Longest wait per lease call.
    pub wait_ms: u64,
    /// Largest gRPC message.
    pub max_message_bytes: usize,
    /// Injected fault (tests).
    pub fault: Option<Fault>,
}

/// The coordinator's `Workers` client.
pub type Client = WorkersClient<InterceptedService<Channel, Auth>>;

/// Proving state kept across tasks (blocking side).
struct Prover {
    srs: srs_fetch::SrsSource,
    keystores: HashMap<(u32, u32), Arc<KeyStore>>,
    contexts: HashMap<(String, String), Arc<JobContext>>,
    step_key: Option<(String, Arc<StepKey>)>,
    agg_key: Option<(String, Arc<AggKey>)>,
    audit_key: Option<(String, Arc<StepKey>)>,
}

/// What a task produced.
enum Output {
    /// A step or aggregation proof.
    Step(Artifact),
    /// An audit chunk or combine proof.
    Audit(AuditPart),
}

impl Output {
    fn proof_mut(&mut self) -> &mut Vec<u8> {
        match self {
            Output::Step(a) => &mut a.proof,
            Output::Audit(p) => p.proof_mut(),
        }
    }

    fn to_bytes(&self) -> Result<Vec<u8>, CircuitError> {
        match self {
            Output::Step(a) => a.to_bytes(),
            Output::Audit(p) => p.to_bytes(),
        }
    }
}

impl Prover {
    fn keystore(
        &mut self,
        cfg: &WorkerConfig,
        k: u32,
        agg_k: u32,
    ) -> Result<Arc<KeyStore>, CircuitError> {
        if let Some(ks) = self.keystores.get(&(k, agg_k)) {
            return Ok(ks.clone());
        }
        let step = self.srs.load(k)?;
        let agg = if agg_k > 0 {
            Some(self.srs.load(agg_k)?)
        } else {
            None
        };
        let ks = Arc::new(KeyStore::new(cfg.keys_dir.clone(), step, agg));
        self.keystores.insert((k, agg_k), ks.clone());
        Ok(ks)
    }

    /// The proving key of an audit circuit (one kept in memory).
    fn audit_key(
        &mut self,
        cfg: &WorkerConfig,
        shape: &AuditShape,
    ) -> Result<(Arc<KeyStore>, Arc<StepKey>), CircuitError> {
        let ks = self.keystore(cfg, shape.k, 0)?;
        let id = format!("{}-{}", shape.id(), shape.k);
        if let Some((kid, key)) = &self.audit_key {
            if *kid == id {
                return Ok((ks, key.clone()));
            }
        }
        self.step_key = None;
        self.agg_key = None;
        self.audit_key = None;
        let key = Arc::new(audit_key(&cfg.keys_dir, shape, &ks.step_params)?);
        self.audit_key = Some((id, key.clone()));
        Ok((ks, key))
    }
}

/// Runs a worker until `shutdown` reaches 1 (drain) or 2 (abort).
pub async fn run(cfg: WorkerConfig, mut shutdown: watch::Receiver<u32>) -> Result<(), WorkerError> {
    let ch = channel(&cfg.coordinator, cfg.tls_ca.as_deref()).map_err(WorkerError::Config)?;
    let auth = Auth::new(cfg.token.as_deref()).map_err(WorkerError::Config)?;
    let mut client = WorkersClient::with_interceptor(ch, auth)
        .max_decoding_message_size(cfg.max_message_bytes)
        .max_encoding_message_size(cfg.max_message_bytes);
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cfg.threads
    };
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("prover-{i}"))
            .build()
            .map_err(|e| WorkerError::Config(format!("rayon pool: {e}")))?,
    );
    let reg = register(&mut client, &cfg, threads, &mut shutdown).await?;
    let Some(reg) = reg else { return Ok(()) };
    let worker_id = reg.worker_id.clone();
    info!(worker = %worker_id, threads, coordinator = %cfg.coordinator, "registered");
    // Proofs an earlier run finished but could not report.
    for (path, req) in pending::load_all(&pending::dir(&cfg.keys_dir)) {
        let r = client.complete(req.clone()).await.map(|r| r.into_inner());
        pending::report(&req, &r);
        if !matches!(&r, Err(s) if retryable_rpc(s)) {
            pending::remove(Some(path));
        }
    }
    let prover = Arc::new(Mutex::new(Prover {
        srs: srs_fetch::SrsSource {
            client: client.clone(),
            handle: tokio::runtime::Handle::current(),
            path: cfg.srs.clone(),
        },
        keystores: HashMap::new(),
        contexts: HashMap::new(),
        step_key: None,
        agg_key: None,
        audit_key: None,
    }));
    let mut last_ms: HashMap<&'static str, u64> = HashMap::new();
    let mut backoff = Duration::from_millis(200);
    loop {
        if *shutdown.borrow() > 0 {
            info!(worker = %worker_id, "shutting down: no task in progress");
            return Ok(());
        }
        let lease = tokio::select! {
            r = client.lease(pb::LeaseRequest { worker_id: worker_id.clone(), wait_ms: cfg.wait_ms }) => r,
            _ = shutdown.changed() => continue,
        };
        let task = match lease {
            Ok(r) => {
                backoff = Duration::from_millis(200);
                match r.into_inner().task {
                    Some(t) => t,
                    None => continue,
                }
            }
            Err(s) if retryable_rpc(&s) => {
                warn!("lease: {}; retrying in {:?}", s.message(), backoff);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(s) => return Err(s.into()),
        };
        let span = info_span!("task", job = %task.job_id, task = task.index, worker = %worker_id, attempt = task.attempt);
        let kind = match &task.kind {
            Some(pb::task::Kind::Leaf(_)) => "leaf",
            Some(pb::task::Kind::AuditChunk(_)) => "audit-chunk",
            Some(pb::task::Kind::AuditCombine(_)) => "audit-combine",
            _ => "aggregate",
        };
        let expected = last_ms.get(kind).copied();
        let t0 = Instant::now();
        let done = work(
            &mut client,
            &cfg,
            &worker_id,
            &reg,
            task,
            prover.clone(),
            pool.clone(),
            expected,
            &mut shutdown,
        )
        .instrument(span)
        .await?;
        if done {
            last_ms.insert(kind, t0.elapsed().as_millis() as u64);
        }
    }
}

/// Wakes the heartbeat task's stop when dropped.
struct StopOnDrop(Arc<tokio::sync::Notify>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

fn retryable_rpc(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

async fn register(
    client: &mut Client,
    cfg: &WorkerConfig,
    threads: usize,
    shutdown: &mut watch::Receiver<u32>,
) -> Result<Option<pb::RegisterResponse>, WorkerError> {
    let req = pb::RegisterRequest {
        name: cfg.name.clone(),
        cores: threads as u32,
        memory_bytes: match cfg.memory_bytes {
            0 => zkaudit_circuits::shape::machine_memory().unwrap_or(0),
            m => m,
        },
        version: zkaudit_circuits::compatibility(),
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let r = tokio::select! {
            r = client.register(req.clone()) => r,
            _ = shutdown.changed() => return Ok(None),
        };
        match r {
            Ok(r) => return Ok(Some(r.into_inner())),
            Err(s) if retryable_rpc(&s) => {
                warn!(
                    "cannot reach the coordinator at {} ({}); retrying",
                    cfg.coordinator,
                    s.message()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(s) => return Err(s.into()),
        }
    }
}

async fn fetch_transcript(
    client: &mut Client,
    job: &str,
    sha: &str,
    worker_id: &str,
    lease_id: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = client
        .fetch_transcript(pb::JobRef {
            job_id: job.to_string(),
            worker_id: worker_id.to_string(),
            lease_id: lease_id.to_string(),
        })
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(c) = stream.message().await? {
        bytes.extend_from_slice(&c.data);
    }
    let got = hex::encode(Sha256::digest(&bytes));
    if !got.eq_ignore_ascii_case(sha) {
        return Err(tonic::Status::data_loss(format!(
            "transcript of {job} hashes to {got}, expected {sha}"
        )));
    }
    Ok(bytes)
}

/// Proves one task; returns whether it completed (accepted or not).
#[allow(clippy::too_many_arguments)]
async fn work(
    client: &mut Client,
    cfg: &WorkerConfig,
    worker_id: &str,
    reg: &pb::RegisterResponse,
    task: pb::Task,
    prover: Arc<Mutex<Prover>>,
    pool: Arc<rayon::ThreadPool>,
    expected_ms: Option<u64>,
    shutdown: &mut watch::Receiver<u32>,
) -> Result<bool, WorkerError> {
    let lease = task.lease_id.clone();
    let fail = |retryable: bool, reason: String| pb::FailRequest {
        worker_id: worker_id.to_string(),
        lease_id: lease.clone(),
        retryable,
        reason,
        worker_fault: false,
    };
    let shape: StepShape = match bincode::deserialize(&task.shape) {
        Ok(s) => s,
        Err(e) => {
            let _ = client
                .fail(fail(false, format!("undecodable step shape: {e}")))
                .await;
            return Ok(false);
        }
    };
    let (agg_k, what) = match &task.kind {
        Some(pb::task::Kind::Leaf(l)) => (0, format!("steps {}..={}", l.first_step, l.last_step)),
        Some(pb::task::Kind::Aggregate(a)) => (
            a.agg_k,
            format!(
                "aggregation level {} of {} proofs",
                a.level,
                a.children.len()
            ),
        ),
        Some(pb::task::Kind::AuditChunk(c)) => (0, format!("audit chunk {}", c.chunk)),
        Some(pb::task::Kind::AuditCombine(c)) => {
            (0, format!("audit combine of {} chunks", c.chunks.len()))
        }
        None => {
            let _ = client.fail(fail(false, "task without a kind".into())).await;
            return Ok(false);
        }
    };
    info!("proving {what}");
    // The transcript (cached by hash).
    let ctx_key = (task.transcript_sha256.clone(), shape.id());
    let have = prover
        .lock()
        .map(|p| p.contexts.contains_key(&ctx_key))
        .unwrap_or(false);
    if !have {
        let bytes = match fetch_transcript(
            client,
            &task.job_id,
            &task.transcript_sha256,
            worker_id,
            &lease,
        )
        .await
        {
            Ok(b) => b,
            Err(s) => {
                let _ = client
                    .fail(fail(
                        true,
                        format!("fetching the transcript: {}", s.message()),
                    ))
                    .await;
                return Ok(false);
            }
        };
        let t = match Transcript::from_bytes(&bytes, std::path::Path::new(&task.job_id)) {
            Ok(t) => t,
            Err(e) => {
                let _ = client.fail(fail(false, format!("transcript: {e}"))).await;
                return Ok(false);
            }
        };
        let shape2 = shape.clone();
        let ctx = tokio::task::spawn_blocking(move || JobContext::new(t, shape2))
            .await
            .map_err(|e| WorkerError::Config(e.to_string()))?;
        if let Ok(mut p) = prover.lock() {
            if p.contexts.len() >= 4 {
                p.contexts.clear();
            }
            p.contexts.insert(ctx_key.clone(), Arc::new(ctx));
        }
    }
    // Heartbeats while proving, stopped on every way out of this function
    // (a panicked prover included).
    let abandoned = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(tokio::sync::Notify::new());
    let _stop_heartbeats = StopOnDrop(stop.clone());
    let hb = {
        let mut c = client.clone();
        let (abandoned, stop) = (abandoned.clone(), stop.clone());
        let (worker_id, lease) = (worker_id.to_string(), lease.clone());
        let every = Duration::from_millis(reg.heartbeat_ms.max(50));
        tokio::spawn(async move {
            let t0 = Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.notified() => return,
                }
                let progress = expected_ms
                    .map(|e| (t0.elapsed().as_millis() as f32 / e.max(1) as f32).min(0.99))
                    .unwrap_or(0.0);
                match c
                    .heartbeat(pb::HeartbeatRequest {
                        worker_id: worker_id.clone(),
                        lease_id: lease.clone(),
                        progress,
                    })
                    .await
                {
                    Ok(r) if !r.get_ref().keep_going => {
                        warn!("the coordinator no longer wants this task (lease expired or job ended)");
                        abandoned.store(true, Ordering::Relaxed);
                        return;
                    }
                    Ok(_) => {}
                    Err(s) => warn!("heartbeat: {}", s.message()),
                }
            }
        })
    };
    let cfg2 = cfg.clone();
    let kind = task.kind.clone();
    let started = Instant::now();
    let job = tokio::task::spawn_blocking(move || -> Result<Output, CircuitError> {
        let mut p = prover
            .lock()
            .map_err(|_| CircuitError::Shape("prover state poisoned".into()))?;
        let ctx = p
            .contexts
            .get(&ctx_key)
            .cloned()
            .ok_or_else(|| CircuitError::Shape("transcript not loaded".into()))?;
        let audit = match &kind {
            Some(pb::task::Kind::AuditChunk(c)) => Some(&c.audit),
            Some(pb::task::Kind::AuditCombine(c)) => Some(&c.audit),
            _ => None,
        };
        if let Some(bytes) = audit {
            let job = AuditJob::from_bytes(bytes, "leased audit")?;
            let data = job.data(&ctx.transcript);
            let salts = SaltKey::new(&job.claim, &data);
            return match kind {
                Some(pb::task::Kind::AuditChunk(c)) => {
                    let (ks, key) = p.audit_key(&cfg2, &job.plan.chunk)?;
                    drop(p);
                    let i = c.chunk as usize;
                    let proof = pool.install(|| {
                        prove_chunk(
                            &job,
                            &data,
                            Some(&ctx.tree),
                            &salts,
                            i,
                            &ks.step_params,
                            &key,
                        )
                    })?;
                    Ok(Output::Audit(AuditPart::Chunk {
                        index: c.chunk,
                        proof,
                    }))
                }
                Some(pb::task::Kind::AuditCombine(c)) => {
                    let chunks = c
                        .chunks
                        .iter()
                        .enumerate()
                        .map(|(i, a)| {
                            match AuditPart::from_bytes(&a.body, &format!("chunk {i}"))? {
                                AuditPart::Chunk { proof, .. } => Ok(proof),
                                AuditPart::Combine { .. } => Err(CircuitError::Shape(format!(
                                    "input {i} of the combine task is not a chunk proof"
                                ))),
                            }
                        })
                        .collect::<Result<Vec<_>, CircuitError>>()?;
                    let shape = job.plan.combine.clone().ok_or_else(|| {
                        CircuitError::Shape("the audit has no combine circuit".into())
                    })?;
                    let (ks, key) = p.audit_key(&cfg2, &shape)?;
                    drop(p);
                    let (proof, revealed) = pool.install(|| {
                        prove_combine(&job, &data, &salts, &chunks, &ks.step_params, &key)
                    })?;
                    Ok(Output::Audit(AuditPart::Combine { proof, revealed }))
                }
                _ => Err(CircuitError::Shape("not an audit task".into())),
            };
        }
        let ks = p.keystore(&cfg2, shape.k, agg_k)?;
        p.audit_key = None;
        match kind {
            Some(pb::task::Kind::Leaf(l)) => {
                let len = (l.last_step + 1).saturating_sub(l.first_step) as usize;
                let id = shape.with_span(len).id();
                // Aggregation proving keys are gigabytes: hold one kind at a time.
                p.agg_key = None;
                let t_key = Instant::now();
                let key = match &p.step_key {
                    Some((kid, key)) if *kid == id => key.clone(),
                    _ => {
                        p.step_key = None;
                        let key = Arc::new(ks.step_key(&shape, len)?);
                        p.step_key = Some((id, key.clone()));
                        key
                    }
                };
                drop(p);
                let key_s = t_key.elapsed().as_secs_f64();
                let t_prove = Instant::now();
                let out = pool.install(|| prove_leaf(&ctx, &ks, &key, l.first_step, l.last_step));
                info!(
                    key_s = format!("{key_s:.1}"),
                    prove_s = format!("{:.1}", t_prove.elapsed().as_secs_f64()),
                    "leaf of steps {}..={}: key ready, then proved",
                    l.first_step,
                    l.last_step
                );
                out.map(Output::Step)
            }
            Some(pb::task::Kind::Aggregate(a)) => {
                let children = a
                    .children
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Artifact::from_bytes(&c.body, &format!("child {i}")))
                    .collect::<Result<Vec<_>, _>>()?;
                let lens = children_lens(&ctx, &children);
                let id = format!("{}-{lens:?}", shape.id());
                p.step_key = None;
                let t_key = Instant::now();
                let key = match &p.agg_key {
                    Some((kid, key)) if *kid == id => key.clone(),
                    _ => {
                        p.agg_key = None;
                        let key = Arc::new(pool.install(|| ks.agg_key(&shape, &lens))?);
                        p.agg_key = Some((id, key.clone()));
                        key
                    }
                };
                drop(p);
                let key_s = t_key.elapsed().as_secs_f64();
                let t_prove = Instant::now();
                let out = pool.install(|| prove_aggregate(&ctx, &ks, &key, &children));
                info!(
                    key_s = format!("{key_s:.1}"),
                    prove_s = format!("{:.1}", t_prove.elapsed().as_secs_f64()),
                    advice_cells = key.meta.advice_cells,
                    advice_columns = key.meta.config.num_advice,
                    "aggregation of children {lens:?}: key ready, then proved"
                );
                out.map(Output::Step)
            }
            _ => Err(CircuitError::Shape("task without a kind".into())),
        }
    });
    tokio::pin!(job);
    let result = loop {
        tokio::select! {
            r = &mut job => break r,
            _ = shutdown.changed() => {
                if *shutdown.borrow() >= 2 {
                    stop.notify_one();
                    let _ = client.fail(fail(true, "worker shutting down".into())).await;
                    info!("released the lease on shutdown");
                    return Ok(false);
                }
                info!("shutdown requested: finishing the current task first");
            }
        }
    };
    let prove_ms = started.elapsed().as_millis() as u64;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            // A panic in the prover: the task goes back, the worker goes on.
            warn!("the prover thread failed: {e}");
            let _ = client
                .fail(fail(true, format!("the prover thread failed: {e}")))
                .await;
            return Ok(false);
        }
    };
    if abandoned.load(Ordering::Relaxed) {
        stop.notify_one();
        let _ = hb.await;
        return Ok(false);
    }
    let outcome = match result {
        Ok(mut a) => {
            let proof = a.proof_mut();
            if cfg.fault == Some(Fault::CorruptProof) && !proof.is_empty() {
                let i = proof.len() / 2;
                proof[i] ^= 0x01;
                warn!("fault injection: corrupting the proof");
            }
            let body = match a.to_bytes() {
                Ok(b) => b,
                Err(e) => {
                    let _ = client
                        .fail(fail(true, format!("encoding the proof: {e}")))
                        .await;
                    stop.notify_one();
                    return Ok(false);
                }
            };
            let req = pb::CompleteRequest {
                worker_id: worker_id.to_string(),
                lease_id: lease.clone(),
                proof: Some(pb::ProofArtifact { body }),
                prove_ms,
            };
            // The lease stays alive (heartbeats) while the coordinator
            // verifies, and while it is unreachable: the proof is offered
            // until the coordinator answers (a restarted coordinator extends
            // the leases it held) or the worker is told to stop at once, and
            // kept on disk meanwhile for a restarted worker to offer.
            let kept = pending::save(&pending::dir(&cfg.keys_dir), &req);
            let mut tries = 0u32;
            let (done, answered) = loop {
                match client.complete(req.clone()).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        if r.accepted {
                            info!(
                                "{what} proven in {:.1}s and accepted",
                                prove_ms as f64 / 1e3
                            );
                        } else {
                            warn!("proof rejected: {}", r.message);
                        }
                        break (true, true);
                    }
                    Err(s) if retryable_rpc(&s) && *shutdown.borrow() < 2 => {
                        tries += 1;
                        let wait = Duration::from_millis(500 * u64::from(tries.min(10)));
                        warn!(
                            "complete: {}; offering the proof again in {wait:?}",
                            s.message()
                        );
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                    Err(s) => {
                        warn!("complete refused: {}", s.message());
                        // Unreachable at a forced stop: kept for the next run.
                        break (false, !retryable_rpc(&s));
                    }
                }
            };
            if answered {
                pending::remove(kept);
            }
            done
        }
        Err(e) => {
            let fatal = matches!(e, CircuitError::Unsatisfied(_) | CircuitError::Model(_));
            let req = pb::FailRequest {
                worker_fault: e.is_local_setup(),
                ..fail(!fatal, e.to_string())
            };
            if req.worker_fault {
                warn!("proving failed on this worker's own setup (the task goes elsewhere): {e}");
            } else {
                warn!("proving failed: {e}");
            }
            let _ = client.fail(req).await;
            false
        }
    };
    stop.notify_one();
    let _ = hb.await;
    Ok(outcome)
}
