//! Command-line definitions and dispatch; one module per command.

mod audit;
mod cluster;
mod embedded;
mod export;
mod inspect;
mod prove;
mod prove_step;
mod train;

use clap::{Parser, Subcommand};

/// zkaudit: trustless audits of machine-learning models with zero-knowledge proofs.
#[derive(Debug, Parser)]
#[command(name = "zkaudit", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// All commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model with deterministic fixed-point SGD and write the transcript to prove.
    Train(train::TrainArgs),
    /// Write the weights of one step of a run as an ONNX model.
    Export(export::ExportArgs),
    /// Show a run's configuration and results; optionally replay every step.
    Inspect(inspect::InspectArgs),
    /// Generate an INSECURE local SRS for tests and demos.
    Srs(prove_step::SrsArgs),
    /// Prove one SGD step of a run.
    ProveStep(prove_step::ProveStepArgs),
    /// Verify a step proof from public data and print its statement.
    VerifyStep(prove_step::VerifyStepArgs),
    /// Prove the steps of a run and write a training certificate.
    Prove(prove::ProveArgs),
    /// Verify a training certificate (and audits of it) and print the claims.
    Verify(prove::VerifyArgs),
    /// Prove an audit of a certified run's data or model.
    Audit(audit::AuditArgs),
    /// Run the proving-cluster coordinator (gRPC API, sled store, metrics).
    Coordinator(cluster::CoordinatorArgs),
    /// Run a proving worker that leases tasks from a coordinator.
    Worker(cluster::WorkerArgs),
    /// Submit a run's transcript to a coordinator as a proving job.
    Submit(cluster::SubmitArgs),
    /// Show a job's state and tasks.
    Status(cluster::JobArgs),
    /// Follow a job's progress until it ends.
    Watch(cluster::JobArgs),
    /// Download a finished job's certificate.
    Fetch(cluster::FetchArgs),
    /// Cancel a job.
    Cancel(cluster::JobArgs),
    /// List the coordinator's jobs.
    Jobs(cluster::JobsArgs),
    /// Probe an HTTP health endpoint (container health checks; no shell needed).
    Healthcheck(cluster::HealthcheckArgs),
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Export(a) => export::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Srs(a) => prove_step::srs_cmd(a),
        Command::ProveStep(a) => prove_step::prove(a),
        Command::VerifyStep(a) => prove_step::verify(a),
        Command::Prove(a) => prove::prove(a),
        Command::Verify(a) => prove::verify(a),
        Command::Audit(a) => audit::run(a),
        Command::Coordinator(a) => cluster::coordinator(a),
        Command::Worker(a) => cluster::worker(a),
        Command::Submit(a) => cluster::submit(a),
        Command::Status(a) => cluster::status(a),
        Command::Watch(a) => cluster::watch(a),
        Command::Fetch(a) => cluster::fetch(a),
        Command::Cancel(a) => cluster::cancel(a),
        Command::Jobs(a) => cluster::jobs(a),
        Command::Healthcheck(a) => cluster::healthcheck(a),
    }
}

/// Logging to stderr: `RUST_LOG` filter (default `info` for the cluster's
/// services, else `warn`; halo2-base internals `error`), `LOG_FORMAT=json` for JSON lines.
pub fn init_logging(cli: &Cli) -> Option<crate::telemetry::Traces> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let service = match cli.command {
        Command::Coordinator(_) => Some("zkaudit-coordinator"),
        Command::Worker(_) => Some("zkaudit-worker"),
        _ => None,
    };
    let default = match service {
        Some(_) => "info,halo2_base=error,h2=warn,tower=warn",
        None => "warn,halo2_base=error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json") {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    // Spans go to an OTLP collector (e.g. Jaeger) when an endpoint is configured.
    let (otel, traces) = match service.map(crate::telemetry::from_env) {
        Some(Ok(Some((layer, traces)))) => (Some(layer), Some(traces)),
        Some(Err(e)) => {
            eprintln!("warning: OTLP trace export disabled: {e}");
            (None, None)
        }
        _ => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    traces
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{what} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} ({{eta}} left) {{msg}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    pb.set_style(style);
    pb
}
