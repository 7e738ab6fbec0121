//! `zkaudit prove` on an embedded cluster: a coordinator on a loopback port
//! over a temporary sled store and N in-process workers, driven through the
//! same gRPC API, lease and verification logic as a deployed cluster.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use zkaudit_coordinator::{Config, SystemClock};
use zkaudit_proto::client::{channel, Auth};
use zkaudit_proto::v1 as pb;
use zkaudit_proto::v1::jobs_client::JobsClient;
use zkaudit_worker::WorkerConfig;

use super::cluster::{fetch_certificate, runtime, upload, watch_job};
use super::prove_step::ProvingFiles;

/// What to prove on the embedded cluster.
pub struct EmbeddedJob<'a> {
    /// Run directory (its `transcript.bin` is submitted).
    pub run: &'a Path,
    /// Steps to prove (from step 0).
    pub steps: u64,
    /// Batched or succinct.
    pub mode: pb::Mode,
    /// Steps per leaf proof.
    pub span: u32,
    /// Step circuit size.
    pub k: u32,
    /// Aggregation circuit size.
    pub agg_k: u32,
    /// In-process workers.
    pub workers: usize,
    /// SRS and key cache.
    pub files: &'a ProvingFiles,
}

/// Time spent by the job's tasks, as the coordinator recorded them.
pub struct EmbeddedReport {
    /// The certificate's bytes.
    pub cert: Vec<u8>,
    /// Wall time from submission to the certificate.
    pub wall: Duration,
    /// Sum of the leaf tasks' proving times.
    pub leaf_prove: Duration,
    /// Sum of the aggregation tasks' proving times.
    pub agg_prove: Duration,
    /// Prover threads per worker.
    pub threads: usize,
}

/// Proves `job` on a coordinator and workers inside this process.
pub fn prove(job: &EmbeddedJob) -> anyhow::Result<EmbeddedReport> {
    let path = job.run.join(zkaudit_model::transcript::TRANSCRIPT_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let data = tempfile::Builder::new()
        .prefix("zkaudit-embedded-")
        .tempdir()
        .context("creating the embedded coordinator's temporary store")?;
    let token = hex::encode(rand::random::<[u8; 16]>());
    let worker_token = hex::encode(rand::random::<[u8; 16]>());
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut cfg = Config::new(
        loopback,
        data.path().to_path_buf(),
        job.files.srs.clone(),
        job.files.keys.clone(),
    );
    cfg.tokens = Some(zkaudit_coordinator::auth::Tokens {
        clients: vec![token.clone()],
        worker: worker_token.clone(),
        admin: None,
    });
    cfg.default_agg_k = job.agg_k;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = job.workers.max(1);
    let threads = (cores / workers).max(1);

    let rt = runtime()?;
    let running = rt
        .block_on(zkaudit_coordinator::start(cfg, Arc::new(SystemClock)))
        .context("starting the embedded coordinator")?;
    let url = format!("http://{}", running.addr);
    let (stop_workers, signal) = tokio::sync::watch::channel(0u32);
    let handles: Vec<_> = (0..workers)
        .map(|i| {
            let cfg = WorkerConfig {
                coordinator: url.clone(),
                token: Some(worker_token.clone()),
                tls_ca: None,
                name: format!("embedded-{i}"),
                threads,
                memory_bytes: 0,
                srs: job.files.srs.clone(),
                keys_dir: job.files.keys.clone(),
                wait_ms: 5_000,
                max_message_bytes: 96 << 20,
                fault: None,
            };
            rt.spawn(zkaudit_worker::run(cfg, signal.clone()))
        })
        .collect();

    let result = (|| {
        let ch = {
            let _g = rt.enter();
            channel(&url, None).map_err(anyhow::Error::msg)?
        };
        let auth = Auth::new(Some(&token)).map_err(anyhow::Error::msg)?;
        let mut client = JobsClient::with_interceptor(ch, auth)
            .max_decoding_message_size(96 << 20)
            .max_encoding_message_size(96 << 20);
        let spec = pb::JobSpec {
            name: job.run.display().to_string(),
            steps: job.steps,
            mode: job.mode as i32,
            span: job.span,
            k: job.k,
            agg_k: job.agg_k,
            transcript_bytes: bytes.len() as u64,
            transcript_sha256: String::new(),
            ..Default::default()
        };
        let start = Instant::now();
        let (id, tasks) = upload(&rt, &mut client, &url, spec, &bytes)?;
        eprintln!(
            "embedded cluster: {workers} worker{} x {threads} thread{}, job {id} in {tasks} tasks",
            if workers == 1 { "" } else { "s" },
            if threads == 1 { "" } else { "s" },
        );
        watch_job(&rt, &mut client, &url, &id)?;
        let cert = fetch_certificate(&rt, &mut client, &url, &id)?;
        let wall = start.elapsed();
        let status = rt
            .block_on(client.get_status(pb::JobRef {
                job_id: id.clone(),
                ..Default::default()
            }))
            .map(|r| r.into_inner())
            .ok();
        let (mut leaf, mut agg) = (0u64, 0u64);
        for t in status.iter().flat_map(|s| &s.tasks) {
            if t.kind == "leaf" {
                leaf += t.prove_ms;
            } else {
                agg += t.prove_ms;
            }
        }
        anyhow::Ok(EmbeddedReport {
            cert,
            wall,
            leaf_prove: Duration::from_millis(leaf),
            agg_prove: Duration::from_millis(agg),
            threads,
        })
    })();

    // Stop the workers (abandoning any lease) and the coordinator.
    let _ = stop_workers.send(2);
    rt.block_on(async {
        for h in handles {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
        running.stop().await;
    });
    result
}
