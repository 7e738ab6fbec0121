//! The coordinator's gRPC server in-process on a loopback port, against
//! jobs put straight into its store: stopping it ends `Watch` streams and
//! long polls instead of hanging, and a task too large for one gRPC message
//! fails its job with the reason instead of being handed out forever.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zkaudit_circuits::shape::StepShape;
use zkaudit_coordinator::plan::{plan_job, JobMode};
use zkaudit_coordinator::store::{JobKind, JobSpec, JobState, Store};
use zkaudit_coordinator::{start, Config, SystemClock};
use zkaudit_model::{Activation, Architecture, DenseSpec, FixedParams};
use zkaudit_proto::client::{channel, Auth};
use zkaudit_proto::v1 as pb;

const TOKEN: &str = "stopping-test-token";
const WORKER_TOKEN: &str = "stopping-test-worker-token";

/// Puts a one-step training job into the store at `dir`; its id.
fn put_job(dir: &Path, transcript_sha256: String) -> String {
    let s = Store::open(dir).unwrap();
    let shape = StepShape {
        arch: Architecture::new(vec![DenseSpec {
            inputs: 2,
            outputs: 2,
            activation: Activation::None,
        }])
        .unwrap(),
        fx: FixedParams::default(),
        lr_fx: 1,
        batch: 1,
        depth: 2,
        k: 12,
        lookup_bits: 11,
        span: 1,
    };
    let spec = JobSpec {
        kind: JobKind::Training,
        claim: None,
        name: "t".into(),
        steps: 1,
        mode: JobMode::Batched,
        agg_k: 20,
        transcript_sha256,
    };
    let plan = plan_job(1, JobMode::Batched, 1);
    let job = s
        .submit(spec, shape, plan, b"transcript", None, "test", 1)
        .unwrap();
    s.flush().unwrap();
    job.id
}

fn config(dir: &Path) -> Config {
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.to_path_buf(),
        dir.join("no-srs"),
        dir.join("keys"),
    );
    cfg.tokens = Some(zkaudit_coordinator::auth::Tokens {
        clients: vec![TOKEN.into()],
        worker: WORKER_TOKEN.into(),
        admin: None,
    });
    cfg
}

async fn worker(
    url: &str,
) -> (
    pb::workers_client::WorkersClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Auth>,
    >,
    String,
) {
    let ch = channel(url, None).unwrap();
    let mut w = pb::workers_client::WorkersClient::with_interceptor(
        ch,
        Auth::new(Some(WORKER_TOKEN)).unwrap(),
    );
    let id = w
        .register(pb::RegisterRequest {
            name: "w".into(),
            cores: 1,
            memory_bytes: 1 << 30,
            version: zkaudit_circuits::compatibility(),
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    (w, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_ends_watch_streams_and_long_polls() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let job = put_job(&data, "00".repeat(32));
    let running = start(config(&data), Arc::new(SystemClock)).await.unwrap();
    let url = format!("http://{}", running.addr);
    // A client watching the running job.
    let ch = channel(&url, None).unwrap();
    let mut jobs =
        pb::jobs_client::JobsClient::with_interceptor(ch, Auth::new(Some(TOKEN)).unwrap());
    let mut stream = jobs
        .watch(pb::JobRef {
            job_id: job.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some(), "first event");
    // A worker takes the only task, then long-polls for another.
    let (mut w, id) = worker(&url).await;
    let first = w
        .lease(pb::LeaseRequest {
            worker_id: id.clone(),
            wait_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(first.task.is_some());
    let poll = tokio::spawn(async move {
        let t0 = Instant::now();
        let r = w
            .lease(pb::LeaseRequest {
                worker_id: id,
                wait_ms: 20_000,
            })
            .await;
        (r.map(|r| r.into_inner().task.is_none()), t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Stopping returns although both calls were open.
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), running.stop())
        .await
        .expect("the coordinator did not stop while a Watch stream and a long poll were open");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let (polled, took) = poll.await.unwrap();
    assert!(took < Duration::from_secs(10), "the long poll ran {took:?}");
    if let Ok(empty) = polled {
        assert!(empty, "no task was ready");
    }
    // The watch stream ended (with Unavailable, or closed with the server).
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(e) => return Some(e.code()),
            }
        }
    })
    .await
    .expect("the watch stream is still open");
    assert!(
        matches!(
            end,
            None | Some(tonic::Code::Unavailable) | Some(tonic::Code::Unknown)
        ),
        "{end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_larger_than_a_message_fails_its_job() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    // The task message carries the transcript hash: make it 16 KiB.
    let job = put_job(&data, "ab".repeat(8 << 10));
    let mut cfg = config(&data);
    cfg.max_message_bytes = 8 << 10;
    let running = start(cfg, Arc::new(SystemClock)).await.unwrap();
    let url = format!("http://{}", running.addr);
    let (mut w, id) = worker(&url).await;
    let r = w
        .lease(pb::LeaseRequest {
            worker_id: id,
            wait_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.task.is_none(), "an oversized task was handed out");
    let j = running.shared.store.job(&job).unwrap();
    running.stop().await;
    assert_eq!(j.state, JobState::Failed);
    let why = j.error.unwrap();
    assert!(why.contains("gRPC message limit"), "{why}");
}
