//! The task store: transitions, idempotence, durability across reopen, and a
//! property test against an in-memory model with random operations and restarts.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use zkaudit_circuits::shape::StepShape;
use zkaudit_model::{Activation, Architecture, DenseSpec, FixedParams};

use super::*;
use crate::plan::{plan_audit, plan_job, JobMode, TaskKind};

/// A tiny step shape for store tests.
pub(crate) fn shape() -> StepShape {
    StepShape {
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
    }
}

/// A training job's spec for store tests.
pub(crate) fn spec(steps: u64, mode: JobMode) -> JobSpec {
    JobSpec {
        kind: JobKind::Training,
        claim: None,
        name: "t".into(),
        steps,
        mode,
        agg_k: 20,
        transcript_sha256: String::new(),
    }
}

fn submit(s: &Store, steps: u64, mode: JobMode, span: usize) -> JobRecord {
    let plan = plan_job(steps, mode, span);
    s.submit(
        spec(steps, mode),
        shape(),
        plan,
        b"transcript",
        None,
        "owner",
        1,
    )
    .unwrap()
}

#[test]
fn leases_follow_dependencies_and_complete_once() {
    let s = Store::temporary().unwrap();
    let w = s.register_worker("a", 2, 0, "v", 0).unwrap().id;
    let job = submit(&s, 4, JobMode::Succinct, 2);
    // Two leaves, then their aggregation.
    let a = s.lease(&w, 10, 100).unwrap().unwrap();
    let b = s.lease(&w, 10, 100).unwrap().unwrap();
    assert_eq!((a.index, b.index), (0, 1));
    assert_eq!(s.lease(&w, 10, 100).unwrap(), None, "aggregation not ready");
    assert_eq!(
        s.complete(&w, &a.lease, b"p0", 5, 11).unwrap(),
        Completed::Accepted {
            job_finished: false
        }
    );
    // A retried completion is recognised, a foreign worker is refused.
    assert_eq!(
        s.complete(&w, &a.lease, b"p0", 5, 11).unwrap(),
        Completed::Duplicate
    );
    assert!(matches!(
        s.complete("w-other", &b.lease, b"x", 5, 11),
        Err(StoreError::LeaseLost(_))
    ));
    s.complete(&w, &b.lease, b"p1", 5, 12).unwrap();
    let c = s.lease(&w, 13, 100).unwrap().unwrap();
    assert_eq!(c.index, 2);
    assert_eq!(
        s.complete(&w, &c.lease, b"root", 5, 14).unwrap(),
        Completed::Accepted { job_finished: true }
    );
    assert_eq!(s.job(&job.id).unwrap().state, JobState::Finishing);
    s.finish(&job.id, b"cert", 15).unwrap();
    s.finish(&job.id, b"cert", 15).unwrap();
    assert_eq!(s.job(&job.id).unwrap().state, JobState::Done);
    assert_eq!(s.certificate(&job.id).unwrap().unwrap(), b"cert");
    assert_eq!(s.artifact(&job.id, 1).unwrap().unwrap(), b"p1");
    assert_eq!(s.worker(&w).unwrap().unwrap().accepted, 3);
}

#[test]
fn an_audit_combines_after_all_its_chunks() {
    let s = Store::temporary().unwrap();
    let w = s.register_worker("a", 2, 0, "v", 0).unwrap().id;
    let mut sp = spec(0, JobMode::Batched);
    sp.kind = JobKind::Audit;
    let job = s
        .submit(
            sp,
            shape(),
            plan_audit(2, true),
            b"t",
            Some(b"audit"),
            "owner",
            1,
        )
        .unwrap();
    assert_eq!(s.audit(&job.id).unwrap(), b"audit");
    let a = s.lease(&w, 10, 100).unwrap().unwrap();
    let b = s.lease(&w, 10, 100).unwrap().unwrap();
    assert_eq!((a.index, b.index), (0, 1));
    assert_eq!(s.lease(&w, 10, 100).unwrap(), None, "combine not ready");
    s.complete(&w, &b.lease, b"c1", 5, 11).unwrap();
    assert_eq!(s.lease(&w, 11, 100).unwrap(), None, "chunk 0 missing");
    s.complete(&w, &a.lease, b"c0", 5, 12).unwrap();
    let c = s.lease(&w, 13, 100).unwrap().unwrap();
    assert_eq!(c.index, 2);
    assert_eq!(
        s.complete(&w, &c.lease, b"combine", 5, 14).unwrap(),
        Completed::Accepted { job_finished: true }
    );
    // A training job has no planned audit.
    let t = submit(&s, 1, JobMode::Batched, 1);
    assert!(matches!(s.audit(&t.id), Err(StoreError::State(_))));
}

#[test]
fn expired_leases_requeue_and_the_budget_fails_the_job() {
    let mut s = Store::temporary().unwrap();
    s.max_attempts = 2;
    s.retry_elsewhere_ms = 0; // one worker: it may retry at once
    let w = s.register_worker("a", 2, 0, "v", 0).unwrap().id;
    let job = submit(&s, 1, JobMode::Batched, 1);
    let a = s.lease(&w, 0, 100).unwrap().unwrap();
    assert!(s.heartbeat(&w, &a.lease, 500, 50, 100).unwrap());
    assert!(
        s.expired_leases(120).unwrap().is_empty(),
        "heartbeat extended it"
    );
    let exp = s.expired_leases(200).unwrap();
    assert_eq!(exp.len(), 1);
    assert_eq!(
        s.requeue(&exp[0].0, "lease expired", Blame::Task, 200)
            .unwrap(),
        Requeued::Retry
    );
    // The old lease is dead: completing under it is refused.
    assert!(s.complete(&w, &a.lease, b"late", 1, 201).is_err());
    assert!(!s.heartbeat(&w, &a.lease, 0, 201, 100).unwrap());
    let b = s.lease(&w, 202, 100).unwrap().unwrap();
    assert_eq!(b.attempt, 2);
    match s
        .requeue(&b.lease, "out of memory", Blame::Task, 203)
        .unwrap()
    {
        Requeued::JobFailed(why) => assert!(why.contains("out of memory"), "{why}"),
        r => panic!("{r:?}"),
    }
    let j = s.job(&job.id).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert!(j.error.unwrap().contains("retry budget"));
    assert_eq!(s.lease(&w, 204, 100).unwrap(), None);
}

#[test]
fn cancelled_jobs_lease_nothing_and_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (job, w, lease) = {
        let s = Store::open(dir.path()).unwrap();
        let w = s.register_worker("a", 2, 0, "v", 0).unwrap().id;
        let job = submit(&s, 3, JobMode::Batched, 1);
        let a = s.lease(&w, 0, 100).unwrap().unwrap();
        s.complete(&w, &a.lease, b"p0", 1, 1).unwrap();
        let b = s.lease(&w, 2, 100).unwrap().unwrap();
        (job, w, b.lease)
    };
    let s = Store::open(dir.path()).unwrap();
    let tasks = s.tasks(&job.id).unwrap();
    assert!(matches!(tasks[0].state, TaskState::Done { .. }));
    assert!(matches!(tasks[1].state, TaskState::Leased { .. }));
    // The lease held across the restart can still complete.
    s.complete(&w, &lease, b"p1", 1, 3).unwrap();
    s.cancel(&job.id, 4).unwrap();
    assert_eq!(s.lease(&w, 5, 100).unwrap(), None);
    assert_eq!(s.job(&job.id).unwrap().state, JobState::Cancelled);
}

/// Operations of the property test.
#[derive(Clone, Debug)]
enum Op {
    Submit(u8, bool),
    Lease(u8),
    Complete(u8),
    Fail(u8, bool),
    Advance(u16),
    Expire,
    Cancel(u8),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (1u8..6, any::<bool>()).prop_map(|(n, s)| Op::Submit(n, s)),
        4 => (0u8..3).prop_map(Op::Lease),
        4 => any::<u8>().prop_map(Op::Complete),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(l, f)| Op::Fail(l, f)),
        1 => (1u16..200).prop_map(Op::Advance),
        1 => Just(Op::Expire),
        1 => any::<u8>().prop_map(Op::Cancel),
        1 => Just(Op::Restart),
    ]
}

/// The reference model: plain maps with the store's rules.
#[derive(Default)]
struct Model {
    jobs: Vec<(String, JobPlan, JobState)>,
    /// (job, index) → (state: 0 queued / 1 leased / 2 done, attempts, lease expiry).
    tasks: BTreeMap<(usize, u32), (u8, u32, u64)>,
    /// Live leases: (id, job, index, worker).
    leases: Vec<(String, usize, u32, String)>,
}

impl Model {
    fn ready(&self) -> Option<(usize, u32)> {
        for (j, (_, plan, state)) in self.jobs.iter().enumerate() {
            if *state != JobState::Running {
                continue;
            }
            for i in 0..plan.tasks.len() as u32 {
                let queued = self.tasks[&(j, i)].0 == 0;
                let deps = plan.deps(i).iter().all(|d| self.tasks[&(j, *d)].0 == 2);
                if queued && deps {
                    return Some((j, i));
                }
            }
        }
        None
    }
}

const LEASE_MS: u64 = 100;
const MAX_ATTEMPTS: u32 = 3;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            // sled's flusher thread may hold the directory lock for a moment
            // after the previous handle is dropped: retry briefly, as a
            // restarted process would find it released.
            let mut tries = 0;
            let mut s = loop {
                match Store::open(dir.path()) {
                    Err(e) if tries < 100 && e.to_string().contains("sled's lock is held") => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    r => break r.unwrap(),
                }
            };
            s.max_attempts = MAX_ATTEMPTS;
            // The model hands the first ready task to whoever asks.
            s.retry_elsewhere_ms = 0;
            s
        };
        let mut s = open();
        let mut m = Model::default();
        let mut now = 0u64;
        let workers: Vec<String> = (0..3)
            .map(|i| s.register_worker(&format!("w{i}"), 1, 0, "v", 0).unwrap().id)
            .collect();
        for op in ops {
            match op {
                Op::Submit(n, succinct) => {
                    let mode = if succinct { JobMode::Succinct } else { JobMode::Batched };
                    let job = submit(&s, n as u64, mode, 2);
                    let j = m.jobs.len();
                    for i in 0..job.plan.tasks.len() as u32 {
                        m.tasks.insert((j, i), (0, 0, 0));
                    }
                    m.jobs.push((job.id, job.plan, JobState::Running));
                }
                Op::Lease(w) => {
                    let got = s.lease(&workers[w as usize], now, LEASE_MS).unwrap();
                    let want = m.ready();
                    prop_assert_eq!(got.as_ref().map(|l| (l.job.clone(), l.index)),
                        want.map(|(j, i)| (m.jobs[j].0.clone(), i)));
                    if let (Some(l), Some((j, i))) = (got, want) {
                        let t = m.tasks.get_mut(&(j, i)).unwrap();
                        *t = (1, t.1 + 1, now + LEASE_MS);
                        prop_assert_eq!(l.attempt, t.1);
                        m.leases.push((l.lease, j, i, workers[w as usize].clone()));
                    }
                }
                Op::Complete(x) => {
                    if m.leases.is_empty() { continue; }
                    let (lease, j, i, w) = m.leases.remove(x as usize % m.leases.len());
                    let r = s.complete(&w, &lease, b"proof", 1, now);
                    if m.jobs[j].2 != JobState::Running {
                        // Refused; the lease stays until it expires.
                        prop_assert!(r.is_err());
                        m.leases.push((lease, j, i, w));
                        continue;
                    }
                    let r = r.unwrap();
                    m.tasks.get_mut(&(j, i)).unwrap().0 = 2;
                    let plan = &m.jobs[j].1;
                    let finished = match plan.root {
                        Some(root) => root == i,
                        None => (0..plan.tasks.len() as u32).all(|t| m.tasks[&(j, t)].0 == 2),
                    };
                    prop_assert_eq!(r, Completed::Accepted { job_finished: finished });
                    if finished {
                        m.jobs[j].2 = JobState::Finishing;
                    }
                }
                Op::Fail(x, fatal) => {
                    if m.leases.is_empty() { continue; }
                    let (lease, j, i, _) = m.leases.remove(x as usize % m.leases.len());
                    let blame = if fatal { Blame::Fatal } else { Blame::Task };
                    let r = s.requeue(&lease, "boom", blame, now).unwrap();
                    requeue_model(&mut m, j, i, fatal, &r)?;
                }
                Op::Advance(d) => now += d as u64,
                Op::Expire => {
                    for (lease, rec) in s.expired_leases(now).unwrap() {
                        let pos = m.leases.iter().position(|l| l.0 == lease).unwrap();
                        let (_, j, i, _) = m.leases.remove(pos);
                        prop_assert_eq!((rec.job.clone(), rec.index), (m.jobs[j].0.clone(), i));
                        let r = s.requeue(&lease, "lease expired", Blame::Task, now).unwrap();
                        requeue_model(&mut m, j, i, false, &r)?;
                    }
                    // Every model lease left is unexpired.
                    for (_, j, i, _) in &m.leases {
                        prop_assert!(m.tasks[&(*j, *i)].2 > now);
                    }
                }
                Op::Cancel(x) => {
                    if m.jobs.is_empty() { continue; }
                    let j = x as usize % m.jobs.len();
                    s.cancel(&m.jobs[j].0, now).unwrap();
                    if !m.jobs[j].2.is_terminal() {
                        m.jobs[j].2 = JobState::Cancelled;
                    }
                }
                Op::Restart => {
                    drop(s);
                    s = open();
                }
            }
            // Job and task states agree after every operation.
            for (j, (id, plan, state)) in m.jobs.iter().enumerate() {
                prop_assert_eq!(s.job(id).unwrap().state, *state);
                let tasks = s.tasks(id).unwrap();
                prop_assert_eq!(tasks.len(), plan.tasks.len());
                for (i, t) in tasks.iter().enumerate() {
                    let (st, attempts, _) = m.tasks[&(j, i as u32)];
                    let kind = match t.state {
                        TaskState::Queued => 0,
                        TaskState::Leased { .. } => 1,
                        TaskState::Done { .. } => 2,
                    };
                    prop_assert_eq!((kind, t.attempts), (st, attempts));
                }
            }
        }
    }
}

fn requeue_model(
    m: &mut Model,
    j: usize,
    i: u32,
    fatal: bool,
    r: &Requeued,
) -> Result<(), TestCaseError> {
    let t = m.tasks.get_mut(&(j, i)).unwrap();
    t.0 = 0;
    if m.jobs[j].2 != JobState::Running {
        prop_assert_eq!(r, &Requeued::Stale);
        return Ok(());
    }
    if fatal || t.1 >= MAX_ATTEMPTS {
        prop_assert!(matches!(r, Requeued::JobFailed(_)));
        m.jobs[j].2 = JobState::Failed;
    } else {
        prop_assert_eq!(r, &Requeued::Retry);
    }
    Ok(())
}

#[test]
fn a_broken_worker_spends_no_attempts_and_is_quarantined() {
    let mut s = Store::temporary().unwrap();
    s.max_attempts = 2;
    s.retry_elsewhere_ms = 1_000;
    s.quarantine_ms = 60_000;
    let bad = s.register_worker("no-srs", 2, 0, "v", 0).unwrap().id;
    let good = s.register_worker("good", 2, 0, "v", 0).unwrap().id;
    let job = submit(&s, 2, JobMode::Batched, 1);
    // Failures of the worker's own setup, more than the retry budget: the
    // job keeps running and the task keeps its attempts.
    let mut now = 10;
    for i in 0..QUARANTINE_AFTER {
        let l = s
            .lease(&bad, now, 100)
            .unwrap()
            .expect("a task for the bad worker");
        assert_eq!(
            s.requeue(&l.lease, "SRS missing", Blame::Worker, now)
                .unwrap(),
            Requeued::Retry,
            "failure {i}"
        );
        let h = s.record_failure(&bad, "SRS missing", now).unwrap();
        assert_eq!(h.quarantined(now), i + 1 == QUARANTINE_AFTER);
        now += 1_001; // past the pause before it may retry a task it failed
    }
    assert_eq!(s.job(&job.id).unwrap().state, JobState::Running);
    // Quarantined: no task for it, and it is listed.
    assert_eq!(s.lease(&bad, now, 100).unwrap(), None);
    assert_eq!(s.quarantined(now).unwrap().len(), 1);
    assert!(s.quarantined(now + 60_000).unwrap().is_empty(), "it ends");
    assert_eq!(
        s.tasks(&job.id).unwrap()[0].attempts,
        3,
        "leased 3 times (budget 2), charged never"
    );
    // The good worker proves both tasks; attempts counted against the task
    // are only its own.
    let a = s.lease(&good, now, 100).unwrap().unwrap();
    s.complete(&good, &a.lease, b"p", 1, now).unwrap();
    let b = s.lease(&good, now, 100).unwrap().unwrap();
    assert_eq!(
        s.complete(&good, &b.lease, b"p", 1, now).unwrap(),
        Completed::Accepted { job_finished: true }
    );
}

#[test]
fn a_failed_task_goes_to_another_worker_first() {
    let mut s = Store::temporary().unwrap();
    s.retry_elsewhere_ms = 1_000;
    let w1 = s.register_worker("a", 2, 0, "v", 0).unwrap().id;
    let w2 = s.register_worker("b", 2, 0, "v", 0).unwrap().id;
    submit(&s, 1, JobMode::Batched, 1);
    let a = s.lease(&w1, 0, 100).unwrap().unwrap();
    s.requeue(&a.lease, "boom", Blame::Task, 10).unwrap();
    assert_eq!(s.lease(&w1, 20, 100).unwrap(), None, "handed straight back");
    let b = s.lease(&w2, 30, 100).unwrap().unwrap();
    assert_eq!((b.index, b.attempt), (0, 2));
    s.requeue(&b.lease, "boom", Blame::Task, 40).unwrap();
    // After the pause the worker that failed may retry (one-worker clusters).
    assert!(s.lease(&w2, 41, 100).unwrap().is_none());
    let c = s.lease(&w2, 1_041, 100).unwrap().unwrap();
    // An accepted proof starts the worker's failure count over.
    s.record_failure(&w2, "boom", 1_042).unwrap();
    s.complete(&w2, &c.lease, b"p", 1, 1_043).unwrap();
    assert_eq!(s.health(&w2).unwrap().failures_in_a_row, 0);
}

#[test]
fn leases_survive_a_long_restart_but_not_their_maximum_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let (w, lease) = {
        let s = Store::open(dir.path()).unwrap();
        let w = s.register_worker("a", 2, 0, "v", 0).unwrap().id;
        submit(&s, 1, JobMode::Batched, 1);
        let a = s.lease(&w, 0, 100).unwrap().unwrap();
        (w, a.lease)
    };
    // Down for ten lease periods: the restarted store extends what it holds.
    let mut s = Store::open(dir.path()).unwrap();
    s.max_lease_ms = 5_000;
    assert_eq!(s.extend_leases(1_100).unwrap(), 1);
    assert!(
        s.expired_leases(1_050).unwrap().is_empty(),
        "lost on restart"
    );
    // Heartbeats keep it until its maximum lifetime, then no longer.
    let mut now = 1_050;
    while now <= 5_000 {
        assert!(s.heartbeat(&w, &lease, 0, now, 100).unwrap(), "at {now}");
        now += 50;
    }
    assert!(
        !s.heartbeat(&w, &lease, 0, 5_050, 100).unwrap(),
        "hung forever"
    );
    assert_eq!(s.expired_leases(5_200).unwrap().len(), 1);
}

#[test]
fn a_second_store_on_the_same_directory_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path()).unwrap();
    let err = match Store::open(dir.path()) {
        Ok(_) => panic!("two stores opened one directory"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("in use by another coordinator"), "{err}");
    drop(first);
}

#[test]
fn tasks_go_only_to_workers_with_the_memory_they_need() {
    let s = Store::temporary().unwrap();
    let small = s.register_worker("4 GiB", 2, 4 << 30, "v", 0).unwrap().id;
    let large = s.register_worker("64 GiB", 2, 64 << 30, "v", 0).unwrap().id;
    // A 784-128-10 step at batch 32 (about 5.9 GiB planned at k = 20) and a
    // tiny one.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/models/mnist_mlp128.toml"
    );
    let big = StepShape {
        arch: zkaudit_model::spec::load_model(std::path::Path::new(path))
            .unwrap()
            .arch,
        batch: 32,
        depth: 16,
        k: 20,
        lookup_bits: 16,
        ..shape()
    };
    let need = crate::plan::task_memory(&big, 20, &TaskKind::Leaf { first: 0, last: 0 });
    assert!(need > 4 << 30 && need < 64 << 30, "{need}");
    let plan = plan_job(1, JobMode::Batched, 1);
    let job = s
        .submit(spec(1, JobMode::Batched), big, plan, b"t", None, "o", 1)
        .unwrap();
    assert_eq!(s.lease(&small, 2, 100).unwrap(), None, "too small a worker");
    let tiny = submit(&s, 1, JobMode::Batched, 1);
    let l = s.lease(&small, 3, 100).unwrap().unwrap();
    assert_eq!(l.job, tiny.id, "the small worker takes what fits");
    let l = s.lease(&large, 4, 100).unwrap().unwrap();
    assert_eq!(l.job, job.id);
    // Aggregations: 16 GiB at k = 20.
    assert_eq!(
        crate::plan::task_memory(
            &shape(),
            20,
            &TaskKind::Aggregate {
                level: 1,
                children: vec![0, 1]
            }
        ),
        16 << 30
    );
}
