//! Coordinator bookkeeping cost per task, without proving: a job of N tasks
//! is submitted to the sled store, then one simulated worker leases,
//! heartbeats and completes every task (with a fixed-size stand-in artifact)
//! as fast as it can. This measures the store alone (transactions and
//! flushes), which is what the coordinator adds to each real proof.
//!
//! `cargo run --release -p zkaudit-coordinator --example store_bench -- [TASKS] [RUNS] [ARTIFACT_BYTES]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use zkaudit_circuits::shape::StepShape;
use zkaudit_coordinator::plan::{plan_job, JobMode};
use zkaudit_coordinator::store::{JobKind, JobSpec, Store};
use zkaudit_model::{Activation, Architecture, DenseSpec, FixedParams};

fn shape() -> StepShape {
    StepShape {
        arch: Architecture::new(vec![DenseSpec {
            inputs: 64,
            outputs: 10,
            activation: Activation::None,
        }])
        .unwrap(),
        fx: FixedParams::default(),
        lr_fx: 1,
        batch: 8,
        depth: 11,
        k: 16,
        lookup_bits: 15,
        span: 1,
    }
}

/// One run: (seconds for submit, seconds for the lease/complete loop, tasks).
fn run(store: &Store, steps: u64, mode: JobMode, artifact: &[u8]) -> (f64, f64, usize) {
    let transcript = vec![7u8; 64 << 10];
    let t0 = Instant::now();
    let plan = plan_job(steps, mode, 1);
    let tasks = plan.tasks.len();
    let spec = JobSpec {
        kind: JobKind::Training,
        claim: None,
        name: "bench".into(),
        steps,
        mode,
        agg_k: 20,
        transcript_sha256: String::new(),
    };
    store
        .submit(spec, shape(), plan, &transcript, None, "bench", 1)
        .unwrap();
    let submit = t0.elapsed().as_secs_f64();
    let w = store.register_worker("bench", 1, 0, "bench", 1).unwrap().id;
    let t1 = Instant::now();
    let mut done = 0;
    let mut now = 10;
    while let Some(l) = store.lease(&w, now, 60_000).unwrap() {
        now += 1;
        store.heartbeat(&w, &l.lease, 500, now, 60_000).unwrap();
        store.complete(&w, &l.lease, artifact, 1, now).unwrap();
        done += 1;
    }
    assert_eq!(done, tasks, "every task is leased and completed once");
    (submit, t1.elapsed().as_secs_f64(), tasks)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are numbers"))
        .collect();
    let steps = args.first().copied().unwrap_or(2000);
    let runs = args.get(1).copied().unwrap_or(5) as usize;
    let artifact = vec![3u8; args.get(2).copied().unwrap_or(4096) as usize];
    println!(
        "store benchmark: {steps}-step jobs, {} B artifacts, median of {runs} runs",
        artifact.len()
    );
    for (label, mode) in [
        ("batched (leaves only)", JobMode::Batched),
        ("succinct (leaves + binary tree)", JobMode::Succinct),
    ] {
        for disk in [true, false] {
            let mut per_task = Vec::new();
            let mut rate = Vec::new();
            let mut submits = Vec::new();
            for _ in 0..runs {
                let dir = tempfile::tempdir().unwrap();
                let store = if disk {
                    Store::open(dir.path()).unwrap()
                } else {
                    Store::temporary().unwrap()
                };
                let (s, secs, tasks) = run(&store, steps, mode, &artifact);
                per_task.push(secs / tasks as f64 * 1e6);
                rate.push(tasks as f64 / secs);
                submits.push(s * 1e3);
            }
            println!(
                "{label:<32} {:<9} submit {:>8.1} ms, lease+heartbeat+complete {:>7.1} us/task, {:>8.0} tasks/s",
                if disk { "on disk" } else { "in memory" },
                median(submits),
                median(per_task),
                median(rate)
            );
        }
    }
}
