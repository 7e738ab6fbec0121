//! Tests of the aggregation tree and of the in-circuit chaining constraints.
//!
//! The chaining gadget is tested in a small MockProver circuit whose child
//! instances are witnesses, exactly as the aggregation circuit receives them
//! from snark-verifier (its `previous_instances`). Real aggregation proofs
//! are in `aggregation_tests.rs` (ignored: minutes and ~12 GiB).

use halo2_base::gates::circuit::builder::BaseCircuitBuilder;
use halo2_base::halo2_proofs::dev::MockProver;

use super::*;

fn step(t: u64, c_before: u64, c_after: u64, root: u64) -> StepStatement {
    StepStatement {
        c_before: Fr::from(c_before),
        c_after: Fr::from(c_after),
        root: Fr::from(root),
        step: t,
        digest: Fr::from(77),
        indices: vec![t as u32 * 3, t as u32 * 3 + 1],
    }
}

/// A consistent run of `n` steps: commitments 100, 101, ...
fn run(n: u64) -> Vec<StepStatement> {
    (0..n).map(|t| step(t, 100 + t, 101 + t, 9)).collect()
}

/// Proves the chaining of `children` (steps, or summaries posing as
/// aggregation instances) in a MockProver circuit exposing the joint summary;
/// returns whether the constraints hold for the honest joint summary.
fn chain_holds(children: &[(NodeKind, Vec<Fr>)], expected: &[Fr]) -> bool {
    let k = 11;
    let mut b = BaseCircuitBuilder::<Fr>::from_stage(CircuitBuilderStage::Mock)
        .use_k(k)
        .use_lookup_bits(k - 1)
        .use_instance_columns(1);
    let gate = GateChip::<Fr>::default();
    let ctx = b.main(0);
    let mut hasher = PoseidonHasher::<Fr, T, RATE>::new(halo2_base_spec().clone());
    hasher.initialize_consts(ctx, &gate);
    let parts: Vec<_> = children
        .iter()
        .map(|(kind, inst)| {
            let cells: Vec<_> = inst.iter().map(|&v| ctx.load_witness(v)).collect();
            child_summary(ctx, &gate, *kind, &cells).unwrap()
        })
        .collect();
    let joint = chain(ctx, &gate, &hasher, &parts).unwrap();
    b.assigned_instances[0].extend(joint.cells());
    b.calculate_params(Some(9));
    MockProver::run(k as u32, &b, vec![expected.to_vec()])
        .unwrap()
        .verify()
        .is_ok()
}

fn step_child(st: &StepStatement) -> (NodeKind, Vec<Fr>) {
    (NodeKind::Steps(1), st.instances())
}

fn agg_child(s: &Summary) -> (NodeKind, Vec<Fr>) {
    let mut v = vec![Fr::from(5); ACC_LEN];
    v.extend(s.to_instances());
    (NodeKind::Aggregate, v)
}

/// The honest joint summary of consecutive steps.
fn joint(steps: &[StepStatement]) -> Vec<Fr> {
    let parts: Vec<_> = steps.iter().map(Summary::of_step).collect();
    Summary::join(&parts).unwrap().to_instances()
}

#[test]
fn plan_pairs_and_carries_the_odd_leftover_up() {
    assert_eq!(plan(1).sizes, vec![1]);
    assert_eq!(plan(2).sizes, vec![2, 1]);
    assert_eq!(plan(4).sizes, vec![4, 2, 1]);
    assert_eq!(plan(5).sizes, vec![5, 3, 2, 1]);
    assert_eq!(
        plan(5).children(0, 2),
        4..5,
        "the fifth leaf is carried up alone"
    );
    assert_eq!(plan(1).aggregations(), 0);
    assert_eq!(plan(4).aggregations(), 3);
    assert_eq!(plan(5).aggregations(), 4);
    // Folding ranges reproduces 0..n in order for every n.
    for n in 1..40u64 {
        let r =
            fold_tree::<(u64, u64), CircuitError>((0..n).map(|t| (t, t)).collect(), |_, kids| {
                for w in kids.windows(2) {
                    assert_eq!(w[0].1 + 1, w[1].0);
                }
                Ok((kids[0].0, kids[kids.len() - 1].1))
            })
            .unwrap();
        assert_eq!(r, (0, n - 1));
    }
}

#[test]
fn native_join_rejects_broken_chains() {
    let s: Vec<_> = run(3).iter().map(Summary::of_step).collect();
    assert!(Summary::join(&s).is_ok());
    let msg = |parts: &[Summary]| Summary::join(parts).unwrap_err().to_string();
    assert!(msg(&[s[1].clone(), s[0].clone()]).contains("out of order"));
    assert!(msg(&[s[0].clone(), s[2].clone()]).contains("gap"));
    let mut other_root = s[1].clone();
    other_root.root = Fr::from(10);
    assert!(msg(&[s[0].clone(), other_root]).contains("dataset root"));
    let mut other_weights = s[1].clone();
    other_weights.c_first = Fr::from(5);
    assert!(msg(&[s[0].clone(), other_weights]).contains("does not start from"));
}

#[test]
fn schedule_hash_binds_every_index_and_the_tree() {
    let steps = run(5);
    let e = expected_schedule(0, steps.iter().map(|s| s.indices.clone()), 1).unwrap();
    let via_summaries =
        fold_tree::<Summary, CircuitError>(steps.iter().map(Summary::of_step).collect(), |_, k| {
            Summary::join(k)
        })
        .unwrap();
    assert_eq!(e, via_summaries.schedule);
    let mut other = steps.clone();
    other[3].indices[1] += 1;
    assert_ne!(
        e,
        expected_schedule(0, other.iter().map(|s| s.indices.clone()), 1).unwrap()
    );
    assert_ne!(
        e,
        expected_schedule(1, steps.iter().map(|s| s.indices.clone()), 1).unwrap()
    );
}

#[test]
fn circuit_accepts_chained_steps_and_aggregates() {
    let steps = run(4);
    assert!(chain_holds(
        &[step_child(&steps[0]), step_child(&steps[1])],
        &joint(&steps[..2])
    ));
    // Level 2: two aggregation children carrying summaries of two steps each.
    let left = Summary::join(&[Summary::of_step(&steps[0]), Summary::of_step(&steps[1])]).unwrap();
    let right = Summary::join(&[Summary::of_step(&steps[2]), Summary::of_step(&steps[3])]).unwrap();
    let top = Summary::join(&[left.clone(), right.clone()]).unwrap();
    assert!(chain_holds(
        &[agg_child(&left), agg_child(&right)],
        &top.to_instances()
    ));
    // A carried-up step beside an aggregate.
    let three = Summary::join(&[left.clone(), Summary::of_step(&steps[2])]).unwrap();
    assert!(chain_holds(
        &[agg_child(&left), step_child(&steps[2])],
        &three.to_instances()
    ));
    // The schedule the circuit computes is the verifier's.
    assert_eq!(
        top.schedule,
        expected_schedule(0, steps.iter().map(|s| s.indices.clone()), 1).unwrap()
    );
}

#[test]
fn circuit_rejects_out_of_order_gap_foreign_run_and_other_root() {
    let steps = run(4);
    // The exposed summary is what a cheating prover would want accepted: the
    // first child's start and the last child's end.
    let claim = |a: &StepStatement, b: &StepStatement| {
        let mut s = Summary::of_step(a);
        s.c_last = b.c_after;
        s.t_last = b.step;
        s.schedule = schedule_node_hash(&[
            schedule_step_hash(a.step, &a.indices),
            schedule_step_hash(b.step, &b.indices),
        ]);
        s.to_instances()
    };
    let (s0, s1, s2) = (&steps[0], &steps[1], &steps[2]);
    assert!(chain_holds(
        &[step_child(s0), step_child(s1)],
        &claim(s0, s1)
    ));
    // Two proofs out of order.
    assert!(!chain_holds(
        &[step_child(s1), step_child(s0)],
        &claim(s1, s0)
    ));
    // A gap (step 1 left out).
    assert!(!chain_holds(
        &[step_child(s0), step_child(s2)],
        &claim(s0, s2)
    ));
    // A step proof from another run: same step index, other weights.
    let foreign = step(1, 555, 556, 9);
    assert!(!chain_holds(
        &[step_child(s0), step_child(&foreign)],
        &claim(s0, &foreign)
    ));
    // A mismatched dataset root.
    let other_root = step(1, 101, 102, 10);
    assert!(!chain_holds(
        &[step_child(s0), step_child(&other_root)],
        &claim(s0, &other_root)
    ));
    // Another parameter digest.
    let mut other_digest = s1.clone();
    other_digest.digest = Fr::from(78);
    assert!(!chain_holds(
        &[step_child(s0), step_child(&other_digest)],
        &claim(s0, &other_digest)
    ));
    // A summary that hides an index change.
    let mut wrong = claim(s0, s1);
    wrong[6] = schedule_node_hash(&[
        schedule_step_hash(0, &s0.indices),
        schedule_step_hash(1, &[0, 0]),
    ]);
    assert!(!chain_holds(&[step_child(s0), step_child(s1)], &wrong));
    // Aggregates out of order.
    let left = Summary::join(&[Summary::of_step(s0), Summary::of_step(s1)]).unwrap();
    let right = Summary::join(&[Summary::of_step(s2), Summary::of_step(&steps[3])]).unwrap();
    let mut swapped = right.clone();
    swapped.c_last = left.c_last;
    swapped.t_last = left.t_last;
    swapped.schedule = schedule_node_hash(&[right.schedule, left.schedule]);
    assert!(!chain_holds(
        &[agg_child(&right), agg_child(&left)],
        &swapped.to_instances()
    ));
}

#[test]
fn leaf_spans_cover_the_run() {
    assert_eq!(leaf_spans(4, 1), vec![1, 1, 1, 1]);
    assert_eq!(leaf_spans(10, 4), vec![4, 4, 2]);
    assert_eq!(leaf_spans(8, 4), vec![4, 4]);
    assert_eq!(leaf_spans(3, 8), vec![3]);
}

#[test]
fn circuit_accepts_spans_and_binds_their_schedule() {
    let steps = run(5);
    // A leaf proving steps 0..=2 together exposes span instances.
    let span = crate::step::span_instances(&steps[..3]);
    let tail = crate::step::span_instances(&steps[3..]);
    let left = Summary::of_span(&steps[..3]).unwrap();
    let right = Summary::of_span(&steps[3..]).unwrap();
    let top = Summary::join(&[left, right]).unwrap();
    assert!(chain_holds(
        &[
            (NodeKind::Steps(3), span.clone()),
            (NodeKind::Steps(2), tail.clone())
        ],
        &top.to_instances()
    ));
    assert_eq!(
        top.schedule,
        expected_schedule(0, steps.iter().map(|s| s.indices.clone()), 3).unwrap()
    );
    // The span length is part of what the verifier recomputes.
    assert_ne!(
        top.schedule,
        expected_schedule(0, steps.iter().map(|s| s.indices.clone()), 2).unwrap()
    );
    // A span claimed one step shorter leaves a gap before the next leaf.
    let mut short = span.clone();
    short.truncate(5 + 2 * 2);
    assert!(!chain_holds(
        &[(NodeKind::Steps(2), short), (NodeKind::Steps(2), tail)],
        &top.to_instances()
    ));
}
