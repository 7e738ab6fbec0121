//! The coordinator of the zkaudit proving cluster: it accepts jobs (training
//! transcripts), splits them into leaf and aggregation tasks ([`plan`]),
//! keeps all state in sled ([`store`]), leases tasks to workers, verifies
//! every proof they return before accepting it (with keys it derives itself
//! before a job's aggregations start, [`keyprep`]), assembles the certificate,
//! and serves the gRPC API ([`service`]), Prometheus metrics ([`metrics`])
//! and a live status page ([`status`]).

pub mod auth;
pub mod keyprep;
pub mod metrics;
pub mod plan;
pub mod service;
pub mod srs_serve;
pub mod status;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Identity, Server, ServerTlsConfig};
use tracing::{info, warn};
use zkaudit_proto::v1::jobs_server::JobsServer;
use zkaudit_proto::v1::workers_server::WorkersServer;

pub use service::Shared;

/// A source of time in unix milliseconds (injectable for tests).
pub trait Clock: Send + Sync + 'static {
    /// Now, in unix milliseconds.
    fn now_ms(&self) -> u64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Coordinator settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC address.
    pub listen: SocketAddr,
    /// HTTP address of `/metrics` and `/healthz` (none: not served).
    pub http: Option<SocketAddr>,
    /// sled directory.
    pub data_dir: PathBuf,
    /// SRS file (the largest size needed; smaller ones are derived).
    pub srs: PathBuf,
    /// Key cache directory.
    pub keys_dir: PathBuf,
    /// Client, worker and admin tokens (`None`: no authentication).
    pub tokens: Option<auth::Tokens>,
    /// PEM certificate and key for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Lease duration; a worker heartbeats at a third of it.
    pub lease_ms: u64,
    /// Longest a `Lease` call waits for a task.
    pub max_wait_ms: u64,
    /// Attempts per task before its job fails.
    pub max_attempts: u32,
    /// Largest transcript accepted.
    pub max_transcript_bytes: u64,
    /// Largest proof artifact accepted.
    pub max_proof_bytes: u64,
    /// Largest gRPC message.
    pub max_message_bytes: usize,
    /// Aggregation circuit size when a job does not say.
    pub default_agg_k: u32,
    /// How long a worker that keeps failing gets no task.
    pub quarantine_ms: u64,
    /// Longest one task may be held by a worker (a hung prover then loses it).
    pub max_task_ms: u64,
    /// Test fault: the first N SRS streams served get one byte flipped.
    pub corrupt_srs_streams: u32,
}

impl Config {
    /// Defaults for a data directory and an SRS file.
    pub fn new(listen: SocketAddr, data_dir: PathBuf, srs: PathBuf, keys_dir: PathBuf) -> Self {
        Config {
            listen,
            http: None,
            data_dir,
            srs,
            keys_dir,
            tokens: None,
            tls: None,
            lease_ms: 60_000,
            max_wait_ms: 20_000,
            max_attempts: 5,
            max_transcript_bytes: 1 << 30,
            max_proof_bytes: 64 << 20,
            max_message_bytes: 96 << 20,
            default_agg_k: zkaudit_circuits::aggregate::DEFAULT_AGG_K,
            quarantine_ms: 300_000,
            max_task_ms: 6 * 3_600_000,
            corrupt_srs_streams: 0,
        }
    }

    /// How long after its last call a worker still counts as live (two lease periods plus a long-poll).
    pub fn worker_live_ms(&self) -> u64 {
        2 * self.lease_ms + self.max_wait_ms
    }

    /// Where the coordinator pins the digests of the verifying keys and SRS
    /// it derived or loaded itself: in its data directory (beside sled's
    /// files), never in `keys_dir`, which workers may share.
    pub fn pins_dir(&self) -> PathBuf {
        self.data_dir.join("key-pins")
    }

    /// How often workers heartbeat.
    pub fn heartbeat_ms(&self) -> u64 {
        (self.lease_ms / 3).max(100)
    }
}

/// Errors starting the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A listener or TLS file failed.
    #[error("{0}")]
    Io(String),
}

/// A running coordinator.
pub struct Running {
    /// Shared state (store, metrics).
    pub shared: Arc<Shared>,
    /// The gRPC address it listens on.
    pub addr: SocketAddr,
    /// The HTTP address, if any.
    pub http_addr: Option<SocketAddr>,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    /// Stops serving and waits for the server to end.
    pub async fn stop(self) {
        // Streams and long polls end first, so that the server can drain.
        self.shared.stopping.send_replace(true);
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.shared.store.flush();
    }
}

/// Opens the store, resumes unfinished work, and serves until [`Running::stop`].
pub async fn start(cfg: Config, clock: Arc<dyn Clock>) -> Result<Running, StartError> {
    if let Some(t) = &cfg.tokens {
        t.check().map_err(StartError::Config)?;
    }
    let mut st = store::Store::open(&cfg.data_dir)?;
    st.max_attempts = cfg.max_attempts;
    // A failed task waits half a lease before its last worker may take it again.
    st.retry_elsewhere_ms = cfg.lease_ms / 2;
    st.quarantine_ms = cfg.quarantine_ms;
    st.max_lease_ms = cfg.max_task_ms;
    // Workers could not heartbeat while the coordinator was down: their
    // leases get one more lease period before the sweeper may expire them.
    let grace = clock.now_ms() + cfg.lease_ms;
    let extended = st.extend_leases(grace)?;
    if extended > 0 {
        info!(
            extended,
            "leases held before the restart extended by one lease period"
        );
    }
    let shared = Arc::new(Shared::new(st, cfg.clone(), clock));
    let tokens = cfg.tokens.clone().map(Arc::new);
    if tokens.is_none() {
        warn!("no token configured: every client and worker is accepted");
    }
    // Jobs whose tasks all finished before a crash get their certificate now.
    for id in shared.store.finishing_jobs()? {
        let s = shared.clone();
        tokio::spawn(async move { s.finish_job(id).await });
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| StartError::Io(format!("cannot listen on {}: {e}", cfg.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Io(e.to_string()))?;
    let http_addr = match cfg.http {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| StartError::Io(format!("cannot listen on {a}: {e}")))?;
            let a = l.local_addr().map_err(|e| StartError::Io(e.to_string()))?;
            let app = metrics::router(shared.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).await {
                    warn!("metrics endpoint: {e}");
                }
            });
            Some(a)
        }
        None => None,
    };
    // Lease sweeper.
    {
        let s = shared.clone();
        let every = Duration::from_millis((cfg.lease_ms / 4).clamp(50, 2_000));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                s.sweep();
            }
        });
    }
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let max = cfg.max_message_bytes;
    let mut builder = Server::builder();
    if let Some((cert, key)) = &cfg.tls {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| StartError::Io(format!("{}: {e}", p.display())))
        };
        let id = Identity::from_pem(read(cert)?, read(key)?);
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(id))
            .map_err(|e| StartError::Io(format!("TLS: {e}")))?;
    }
    let router = builder
        .add_service(tonic::service::interceptor::InterceptedService::new(
            JobsServer::new(service::JobsService(shared.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            auth::jobs(tokens.clone()),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            WorkersServer::new(service::WorkersService(shared.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            auth::workers(tokens.clone()),
        ));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = rx.changed().await;
    }));
    info!(%addr, http = ?http_addr, "coordinator listening");
    Ok(Running {
        shared,
        addr,
        http_addr,
        shutdown: tx,
        server,
    })
}
