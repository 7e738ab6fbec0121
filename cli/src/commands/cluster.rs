//! The proving cluster from the command line: `zkaudit coordinator`,
//! `zkaudit worker`, and the client commands `submit`, `status`, `watch`,
//! `fetch`, `cancel` and `jobs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use sha2::{Digest, Sha256};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use zkaudit_coordinator::auth::Tokens;
use zkaudit_coordinator::{Config, SystemClock};
use zkaudit_proto::client::{channel, Auth};
use zkaudit_proto::v1 as pb;
use zkaudit_proto::v1::jobs_client::JobsClient;
use zkaudit_proto::CHUNK_BYTES;
use zkaudit_worker::{Fault, WorkerConfig};

use super::prove::ModeArg;

/// How to reach and authenticate with a coordinator.
#[derive(Debug, Args)]
pub struct Endpoint {
    /// Coordinator URL.
    #[arg(
        long,
        env = "ZKAUDIT_COORDINATOR",
        default_value = "http://127.0.0.1:7700"
    )]
    pub coordinator: String,
    /// Token and TLS trust.
    #[command(flatten)]
    pub credentials: Credentials,
}

/// How a client or worker authenticates with a coordinator and trusts it.
#[derive(Clone, Debug, Args)]
pub struct Credentials {
    /// Bearer token (or ZKAUDIT_TOKEN, or --token-file).
    #[arg(long, env = "ZKAUDIT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the token.
    #[arg(long, env = "ZKAUDIT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify a TLS coordinator (`https://` URLs).
    #[arg(long, env = "ZKAUDIT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

/// Reads the token from `--token` or `--token-file`.
fn token(token: &Option<String>, file: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    match (token, file) {
        (Some(t), _) => Ok(Some(t.trim().to_string())),
        (None, Some(f)) => {
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("reading the token file {}", f.display()))?;
            let t = t.trim().to_string();
            if t.is_empty() {
                bail!("the token file {} is empty", f.display());
            }
            Ok(Some(t))
        }
        (None, None) => Ok(None),
    }
}

pub(super) type Client = JobsClient<InterceptedService<Channel, Auth>>;

impl Endpoint {
    /// A Jobs client on `rt`'s runtime.
    pub(super) fn client(&self, rt: &tokio::runtime::Runtime) -> anyhow::Result<Client> {
        let _guard = rt.enter();
        let c = &self.credentials;
        let ch = channel(&self.coordinator, c.tls_ca.as_deref()).map_err(anyhow::Error::msg)?;
        let auth =
            Auth::new(token(&c.token, &c.token_file)?.as_deref()).map_err(anyhow::Error::msg)?;
        Ok(JobsClient::with_interceptor(ch, auth)
            .max_decoding_message_size(96 << 20)
            .max_encoding_message_size(96 << 20))
    }
}

/// A gRPC error in words a user can act on.
pub(super) fn rpc(s: tonic::Status, coordinator: &str) -> anyhow::Error {
    match s.code() {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "cannot reach the coordinator at {coordinator}: {} (is it running? check --coordinator)",
            s.message()
        ),
        tonic::Code::Unauthenticated => anyhow::anyhow!(
            "the coordinator refused the credentials: {} (check --token / ZKAUDIT_TOKEN)",
            s.message()
        ),
        _ if s.message().contains("h2 protocol error") => anyhow::anyhow!(
            "the connection to {coordinator} broke at the protocol level: {} (does the coordinator use TLS? then use https:// and --tls-ca)",
            s.message()
        ),
        c => anyhow::anyhow!("{} ({c:?})", s.message()),
    }
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .context("starting the async runtime")
}

/// A channel that counts shutdown signals (SIGTERM, SIGINT).
fn shutdown_signals() -> tokio::sync::watch::Receiver<u32> {
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        loop {
            #[cfg(unix)]
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            tx.send_modify(|n| *n += 1);
            eprintln!("shutdown requested (send again to stop at once)");
        }
    });
    rx
}

/// Arguments of `zkaudit coordinator`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ZKAUDIT_TOKEN=secret zkaudit coordinator --data /var/lib/zkaudit --srs params/kzg_bn254.srs
  zkaudit coordinator --listen 0.0.0.0:7700 --http 0.0.0.0:9100 --token-file /run/secrets/token")]
pub struct CoordinatorArgs {
    /// gRPC listen address.
    #[arg(long, env = "ZKAUDIT_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// HTTP address for /metrics and /healthz.
    #[arg(long, env = "ZKAUDIT_HTTP")]
    pub http: Option<SocketAddr>,
    /// sled data directory (jobs, tasks, proofs, certificates).
    #[arg(long, env = "ZKAUDIT_DATA", default_value = "zkaudit-data")]
    pub data: PathBuf,
    /// SRS file (at least as large as the largest circuit).
    #[arg(long, env = "ZKAUDIT_SRS", default_value = "params/kzg_bn254.srs")]
    pub srs: PathBuf,
    /// Key cache directory (verifying keys are derived here).
    #[arg(long, env = "ZKAUDIT_KEYS", default_value = ".zkaudit-keys")]
    pub keys: PathBuf,
    /// Client tokens (comma-separated: one per client; a job can be
    /// cancelled only with the token that submitted it, or the admin token).
    #[arg(long, env = "ZKAUDIT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the client tokens (one per line).
    #[arg(long, env = "ZKAUDIT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Token workers present (only it opens the Workers service).
    #[arg(long, env = "ZKAUDIT_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
    /// File holding the worker token.
    #[arg(long, env = "ZKAUDIT_WORKER_TOKEN_FILE")]
    pub worker_token_file: Option<PathBuf>,
    /// Token that may also cancel any client's job.
    #[arg(long, env = "ZKAUDIT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Accept calls without a token (local experiments only).
    #[arg(long)]
    pub allow_unauthenticated: bool,
    /// TLS certificate (PEM); with --tls-key, serves gRPC over TLS.
    #[arg(long, env = "ZKAUDIT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "ZKAUDIT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Lease duration in seconds (workers heartbeat at a third of it).
    #[arg(long, env = "ZKAUDIT_LEASE_SECS", default_value_t = 60.0)]
    pub lease_secs: f64,
    /// Attempts per task before its job fails.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// Seconds a worker that failed three times in a row gets no task.
    #[arg(long, env = "ZKAUDIT_QUARANTINE_SECS", default_value_t = 300)]
    pub quarantine_secs: u64,
    /// Longest one task may be held (a hung prover then loses its lease).
    #[arg(long, env = "ZKAUDIT_MAX_TASK_SECS", default_value_t = 6 * 3600)]
    pub max_task_secs: u64,
    /// Largest transcript accepted, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub max_transcript_mib: u64,
    /// If the SRS file does not exist, generate an INSECURE local one of
    /// size 2^K first (tests and demos; production puts a ceremony file there).
    #[arg(long, env = "ZKAUDIT_SRS_IF_MISSING", value_name = "K")]
    pub srs_if_missing: Option<u32>,
    /// Flip one byte of the first N SRS downloads served (testing only).
    #[arg(long, hide = true, default_value_t = 0)]
    pub fault_corrupt_srs: u32,
}

/// Runs `zkaudit coordinator`.
pub fn coordinator(a: CoordinatorArgs) -> anyhow::Result<()> {
    let clients: Vec<String> = token(&a.token, &a.token_file)?
        .map(|t| t.split([',', '\n']).map(|x| x.trim().to_string()).collect())
        .unwrap_or_default();
    let worker = token(&a.worker_token, &a.worker_token_file)?;
    let tokens = match (clients.is_empty(), worker) {
        (true, None) if a.allow_unauthenticated => None,
        (false, Some(worker)) => Some(Tokens {
            clients,
            worker,
            admin: a.admin_token.map(|t| t.trim().to_string()),
        }),
        _ => bail!(
            "the coordinator needs a client token (ZKAUDIT_TOKEN, --token or --token-file) and a worker token of its own (ZKAUDIT_WORKER_TOKEN, --worker-token or --worker-token-file), or --allow-unauthenticated for a local experiment"
        ),
    };
    if !(0.3..=86_400.0).contains(&a.lease_secs) {
        bail!("--lease-secs must be in 0.3..=86400, got {}", a.lease_secs);
    }
    if let Some(k) = a.srs_if_missing {
        if !a.srs.exists() {
            eprintln!(
                "no SRS at {}: generating an INSECURE local one with k = {k} (tests and demos only)",
                a.srs.display()
            );
            zkaudit_circuits::srs::generate_insecure(k, &a.srs)
                .with_context(|| format!("generating the SRS {}", a.srs.display()))?;
        }
    }
    let mut cfg = Config::new(a.listen, a.data.clone(), a.srs, a.keys);
    cfg.http = a.http;
    cfg.tokens = tokens;
    cfg.tls = a.tls_cert.zip(a.tls_key);
    cfg.lease_ms = (a.lease_secs * 1e3) as u64;
    cfg.max_attempts = a.max_attempts.max(1);
    cfg.quarantine_ms = a.quarantine_secs.saturating_mul(1000);
    cfg.max_task_ms = a.max_task_secs.saturating_mul(1000);
    cfg.max_transcript_bytes = a.max_transcript_mib << 20;
    cfg.corrupt_srs_streams = a.fault_corrupt_srs;
    let rt = runtime()?;
    rt.block_on(async move {
        let running = zkaudit_coordinator::start(cfg, Arc::new(SystemClock))
            .await
            .with_context(|| format!("starting the coordinator (data in {})", a.data.display()))?;
        eprintln!(
            "coordinator listening on {} (metrics: {})",
            running.addr,
            running
                .http_addr
                .map(|h| format!("http://{h}/metrics"))
                .unwrap_or_else(|| "off".into())
        );
        let mut sig = shutdown_signals();
        let _ = sig.changed().await;
        running.stop().await;
        eprintln!("coordinator stopped; state flushed");
        Ok(())
    })
}

/// Faults a worker can inject (fault-tolerance tests).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FaultArg {
    /// Flip a byte of every proof before returning it.
    CorruptProof,
}

/// Arguments of `zkaudit worker`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ZKAUDIT_WORKER_TOKEN=secret zkaudit worker --coordinator http://coordinator:7700 --threads 16")]
pub struct WorkerArgs {
    /// Coordinator address (http:// or https://).
    #[arg(
        long,
        env = "ZKAUDIT_COORDINATOR",
        default_value = "http://127.0.0.1:7700"
    )]
    pub coordinator: String,
    /// The coordinator's worker token (not a client token).
    #[arg(long, env = "ZKAUDIT_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
    /// File holding the worker token.
    #[arg(long, env = "ZKAUDIT_WORKER_TOKEN_FILE")]
    pub worker_token_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify a TLS coordinator (`https://` URLs).
    #[arg(long, env = "ZKAUDIT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Name shown in the coordinator's status.
    #[arg(long, env = "ZKAUDIT_WORKER_NAME")]
    pub name: Option<String>,
    /// Prover threads (0: all cores).
    #[arg(long, env = "ZKAUDIT_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Memory this worker offers, in GiB (default: the machine's); the
    /// coordinator leases it only tasks whose estimated memory fits.
    #[arg(long, env = "ZKAUDIT_WORKER_MEMORY_GIB")]
    pub memory_gib: Option<f64>,
    /// SRS and key cache.
    #[command(flatten)]
    pub files: super::prove_step::ProvingFiles,
    /// Inject a fault (testing only).
    #[arg(long, value_enum, hide = true)]
    pub fault: Option<FaultArg>,
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "worker".into())
}

/// Runs `zkaudit worker`.
pub fn worker(a: WorkerArgs) -> anyhow::Result<()> {
    let cfg = WorkerConfig {
        coordinator: a.coordinator.clone(),
        token: token(&a.worker_token, &a.worker_token_file)?,
        tls_ca: a.tls_ca.clone(),
        name: a
            .name
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id())),
        threads: a.threads,
        memory_bytes: match a.memory_gib {
            Some(g) if g.is_finite() && g > 0.0 => (g * (1u64 << 30) as f64) as u64,
            Some(g) => bail!("--memory-gib must be a positive number, got {g}"),
            None => 0,
        },
        srs: a.files.srs,
        keys_dir: a.files.keys,
        wait_ms: 15_000,
        max_message_bytes: 96 << 20,
        fault: a.fault.map(|f| match f {
            FaultArg::CorruptProof => Fault::CorruptProof,
        }),
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let sig = shutdown_signals();
        zkaudit_worker::run(cfg, sig)
            .await
            .map_err(|e| anyhow::anyhow!("worker: {e}"))
    })
}

/// Arguments of `zkaudit submit`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit submit --run runs/digits --steps 8
  zkaudit submit --run runs/digits --mode succinct --span 32 --watch")]
pub struct SubmitArgs {
    /// Coordinator and token.
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Run directory written by `zkaudit train` (its transcript is uploaded).
    #[arg(long)]
    pub run: PathBuf,
    /// Prove only the first N steps (default: all).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Certificate mode.
    #[arg(long, value_enum, default_value = "batched")]
    pub mode: ModeArg,
    /// Steps per leaf proof (succinct mode).
    #[arg(long, default_value_t = 1)]
    pub span: u32,
    /// Step circuit size (default: automatic).
    #[arg(long)]
    pub k: Option<u32>,
    /// Aggregation circuit size (default: the coordinator's).
    #[arg(long)]
    pub agg_k: Option<u32>,
    /// Job name.
    #[arg(long)]
    pub name: Option<String>,
    /// Watch the job after submitting it.
    #[arg(long)]
    pub watch: bool,
}

/// Runs `zkaudit submit`.
pub fn submit(a: SubmitArgs) -> anyhow::Result<()> {
    let path = transcript_file(&a.run);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (is {} a run directory written by `zkaudit train`?)",
            path.display(),
            a.run.display()
        )
    })?;
    let spec = pb::JobSpec {
        name: a.name.clone().unwrap_or_default(),
        steps: a.steps.unwrap_or(0),
        mode: match a.mode {
            ModeArg::Batched => pb::Mode::Batched,
            ModeArg::Succinct => pb::Mode::Succinct,
        } as i32,
        span: a.span,
        k: a.k.unwrap_or(0),
        agg_k: a.agg_k.unwrap_or(0),
        transcript_bytes: bytes.len() as u64,
        transcript_sha256: hex::encode(Sha256::digest(&bytes)),
        ..Default::default()
    };
    let rt = runtime()?;
    let mut client = a.endpoint.client(&rt)?;
    let coord = a.endpoint.coordinator.clone();
    let (id, tasks) = upload(&rt, &mut client, &coord, spec, &bytes)?;
    println!("submitted {id} ({tasks} tasks)");
    if a.watch {
        return watch_job(&rt, &mut client, &coord, &id);
    }
    Ok(())
}

/// Streams a job spec and its transcript to the coordinator; the job id and
/// its number of tasks.
pub(super) fn upload(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    coord: &str,
    spec: pb::JobSpec,
    bytes: &[u8],
) -> anyhow::Result<(String, u32)> {
    rt.block_on(async {
        let mut msgs = vec![pb::SubmitRequest {
            part: Some(pb::submit_request::Part::Spec(spec)),
        }];
        msgs.extend(bytes.chunks(CHUNK_BYTES).map(|c| pb::SubmitRequest {
            part: Some(pb::submit_request::Part::Chunk(c.to_vec())),
        }));
        let r = client
            .submit(tokio_stream::iter(msgs))
            .await
            .map_err(|s| rpc(s, coord))?
            .into_inner();
        anyhow::Ok((r.job_id, r.tasks))
    })
}

/// The transcript of a run directory (or the file itself).
pub(super) fn transcript_file(run: &Path) -> PathBuf {
    if run.is_dir() {
        run.join("transcript.bin")
    } else {
        run.to_path_buf()
    }
}

/// Arguments of the commands naming one job.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// Coordinator and token.
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Job id (as `submit` printed it).
    pub job: String,
}

fn state_name(s: i32) -> &'static str {
    match pb::JobState::try_from(s) {
        Ok(pb::JobState::Queued) => "queued",
        Ok(pb::JobState::Running) => "running",
        Ok(pb::JobState::Done) => "done",
        Ok(pb::JobState::Failed) => "FAILED",
        Ok(pb::JobState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

fn summary(st: &pb::JobStatus) -> String {
    if st.kind == "audit" {
        let mut s = format!(
            "{} ({}): audit, {}, {}/{} tasks",
            st.job_id,
            st.name,
            state_name(st.state),
            st.tasks_done,
            st.tasks_total
        );
        if !st.error.is_empty() {
            s.push_str(&format!("\n  error: {}", st.error));
        }
        return s;
    }
    let mut s = format!(
        "{} ({}): {}, {}/{} steps proven, {}/{} aggregations, {}/{} tasks",
        st.job_id,
        st.name,
        state_name(st.state),
        st.steps_proven,
        st.steps_total,
        st.aggregations_done,
        st.aggregations_total,
        st.tasks_done,
        st.tasks_total
    );
    if !st.error.is_empty() {
        s.push_str(&format!("\n  error: {}", st.error));
    }
    s
}

/// Runs `zkaudit status`.
pub fn status(a: JobArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let mut client = a.endpoint.client(&rt)?;
    rt.block_on(async {
        let st = client
            .get_status(pb::JobRef {
                job_id: a.job.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| rpc(s, &a.endpoint.coordinator))?
            .into_inner();
        println!("{}", summary(&st));
        if !st.claim.is_empty() {
            println!("  claim: {}", st.claim);
        }
        for t in &st.tasks {
            let what = match t.kind.as_str() {
                "leaf" => format!("steps {}..={}", t.first_step, t.last_step),
                "audit-chunk" => format!("audit chunk {}", t.first_step),
                "audit-combine" => "audit combine".to_string(),
                _ => format!("aggregation level {}", t.level),
            };
            println!(
                "  task {:>4} {:<24} {:<7} attempts {} {}{}",
                t.index,
                what,
                t.state,
                t.attempts,
                if t.worker_id.is_empty() {
                    String::new()
                } else {
                    format!("worker {} ", t.worker_id)
                },
                if t.prove_ms > 0 {
                    format!("{:.1}s", t.prove_ms as f64 / 1e3)
                } else {
                    String::new()
                }
            );
        }
        Ok(())
    })
}

pub(super) fn watch_job(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    coord: &str,
    id: &str,
) -> anyhow::Result<()> {
    rt.block_on(async {
        let mut stream = client
            .watch(pb::JobRef {
                job_id: id.to_string(),
                ..Default::default()
            })
            .await
            .map_err(|s| rpc(s, coord))?
            .into_inner();
        let plain = !std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut bar: Option<indicatif::ProgressBar> = None;
        let mut last = None;
        while let Some(ev) = stream.message().await.map_err(|s| rpc(s, coord))? {
            let Some(st) = ev.status else { continue };
            let b =
                bar.get_or_insert_with(|| super::progress_bar(st.tasks_total as u64, "proving"));
            b.set_position(st.tasks_done as u64);
            if !ev.message.is_empty() {
                if plain {
                    eprintln!("{}", ev.message);
                } else {
                    b.set_message(ev.message.clone());
                }
            }
            last = Some(st);
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        match last {
            Some(st) => {
                println!("{}", summary(&st));
                if st.state != pb::JobState::Done as i32 {
                    bail!("job {id} ended {}", state_name(st.state));
                }
                Ok(())
            }
            None => bail!("the coordinator closed the stream without a status"),
        }
    })
}

/// Runs `zkaudit watch`.
pub fn watch(a: JobArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let mut client = a.endpoint.client(&rt)?;
    watch_job(&rt, &mut client, &a.endpoint.coordinator, &a.job)
}

/// Arguments of `zkaudit fetch` (a certificate, or an audit job's audit proof).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit fetch job-3f9c0a1d27e4b856 --out run.cert && zkaudit verify run.cert")]
pub struct FetchArgs {
    /// The job.
    #[command(flatten)]
    pub job: JobArgs,
    /// Where to write the certificate.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `zkaudit fetch`.
pub fn fetch(a: FetchArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let mut client = a.job.endpoint.client(&rt)?;
    let bytes = fetch_certificate(&rt, &mut client, &a.job.endpoint.coordinator, &a.job.job)?;
    zkaudit_model::transcript::write_atomic(&a.out, &bytes)?;
    let audit = bytes.starts_with(&zkaudit_circuits::audit::AUDIT_MAGIC);
    println!(
        "wrote {} ({} bytes); check it with `zkaudit verify {}{}`",
        a.out.display(),
        bytes.len(),
        if audit { "CERT --audit " } else { "" },
        a.out.display()
    );
    Ok(())
}

/// Downloads the certificate of a finished job.
pub(super) fn fetch_certificate(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    coord: &str,
    job: &str,
) -> anyhow::Result<Vec<u8>> {
    rt.block_on(async {
        let mut stream = client
            .fetch_certificate(pb::JobRef {
                job_id: job.to_string(),
                ..Default::default()
            })
            .await
            .map_err(|s| rpc(s, coord))?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(c) = stream.message().await.map_err(|s| rpc(s, coord))? {
            if c.offset != bytes.len() as u64 || c.total > 1 << 30 {
                bail!("the certificate stream is out of order or too large");
            }
            bytes.extend_from_slice(&c.data);
        }
        anyhow::Ok(bytes)
    })
}

/// Runs `zkaudit cancel`.
pub fn cancel(a: JobArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let mut client = a.endpoint.client(&rt)?;
    rt.block_on(async {
        let st = client
            .cancel(pb::JobRef {
                job_id: a.job.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| rpc(s, &a.endpoint.coordinator))?
            .into_inner();
        println!("{}", summary(&st));
        Ok(())
    })
}

/// Arguments of `zkaudit jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Coordinator and token.
    #[command(flatten)]
    pub endpoint: Endpoint,
}

/// Runs `zkaudit jobs`.
pub fn jobs(a: JobsArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let mut client = a.endpoint.client(&rt)?;
    rt.block_on(async {
        let r = client
            .list_jobs(pb::ListJobsRequest {})
            .await
            .map_err(|s| rpc(s, &a.endpoint.coordinator))?
            .into_inner();
        if r.jobs.is_empty() {
            println!("no jobs");
        }
        for j in &r.jobs {
            println!("{}", summary(j));
        }
        Ok(())
    })
}

/// Arguments of `zkaudit healthcheck`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit healthcheck http://127.0.0.1:9100/healthz")]
pub struct HealthcheckArgs {
    /// URL to probe (plain `http://host:port/path`).
    #[arg(default_value = "http://127.0.0.1:9100/healthz")]
    pub url: String,
    /// Seconds before giving up.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
}

/// Runs `zkaudit healthcheck`: exits 0 when the URL answers 200.
pub fn healthcheck(a: HealthcheckArgs) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let rest = a
        .url
        .strip_prefix("http://")
        .with_context(|| format!("{}: only http:// URLs can be probed", a.url))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let timeout = std::time::Duration::from_secs_f64(a.timeout.clamp(0.1, 600.0));
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} resolves to no address"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut resp = Vec::new();
    s.take(64 << 10).read_to_end(&mut resp)?;
    let resp = String::from_utf8_lossy(&resp);
    let status = resp.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        println!("{}: healthy", a.url);
        Ok(())
    } else {
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
        bail!("{}: unhealthy ({status}) {body}", a.url)
    }
}
