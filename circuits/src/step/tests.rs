//! Step circuit tests: MockProver positives on every supported layer kind, a
//! property test against the native engine on random small models, and the
//! soundness list: each tampered witness or statement must be rejected.

use halo2_base::halo2_proofs::dev::MockProver;
use proptest::prelude::*;
use zkaudit_model::data::{FixedDataset, Scaling, ScalingKind};
use zkaudit_model::schedule::Schedule;
use zkaudit_model::seed::SeedRng;
use zkaudit_model::transcript::{DataSource, InitSource, TrainConfig};
use zkaudit_model::{Activation, Architecture, DenseSpec, Engine};

use super::*;

/// A transcript of a small synthetic run, built with the model crate's engine.
pub(crate) fn synthetic_run(
    dims: &[(usize, Activation)],
    n: usize,
    batch: usize,
    steps: usize,
    seed: u64,
) -> Transcript {
    let fx = FixedParams::default();
    let layers: Vec<DenseSpec> = dims
        .windows(2)
        .map(|d| DenseSpec {
            inputs: d[0].0,
            outputs: d[1].0,
            activation: d[1].1,
        })
        .collect();
    // The activation listed with a width applies to the layer producing it.
    let arch = Architecture::new(layers).unwrap();
    let mut rng = SeedRng::new(b"synthetic", seed, 0);
    let classes = arch.num_classes() as u64;
    let features: Vec<Vec<i64>> = (0..n)
        .map(|_| {
            (0..arch.input_dim())
                .map(|_| rng.below(fx.one() as u64 + 1) as i64)
                .collect()
        })
        .collect();
    let labels: Vec<i64> = (0..n).map(|_| rng.below(classes) as i64).collect();
    let lr_fx = fx.quantize(0.25).unwrap();
    let engine = Engine::new(arch.clone(), fx);
    let sched = Schedule::new(seed, n, batch).unwrap();
    let mut weights = vec![Weights::seeded(&arch, &fx, seed)];
    for t in 0..steps {
        let idx = sched.batch(t as u64);
        let xs: Vec<_> = idx.iter().map(|&i| features[i as usize].clone()).collect();
        let ys: Vec<_> = idx.iter().map(|&i| labels[i as usize]).collect();
        let next = engine
            .step(&weights[t], &xs, &ys, lr_fx)
            .unwrap()
            .new_weights;
        weights.push(next);
    }
    Transcript {
        config: TrainConfig {
            model_name: "synthetic".into(),
            arch: arch.clone(),
            fx,
            epochs: 1,
            batch_size: batch,
            lr: 0.25,
            lr_fx,
            seed,
            test_fraction: 0.0,
            scaling: ScalingKind::None,
        },
        init: InitSource::Seeded,
        data_source: DataSource {
            path: "synthetic".into(),
            sha256: String::new(),
            records: n,
            features: arch.input_dim(),
        },
        scaling: Scaling {
            kind: ScalingKind::None,
            offset: vec![0.0; arch.input_dim()],
            factor: vec![1.0; arch.input_dim()],
        },
        train: FixedDataset { features, labels },
        test: FixedDataset {
            features: vec![],
            labels: vec![],
        },
        weight_salts: (0..=steps as u128).map(|i| 1000 + i).collect(),
        leaf_salts: (0..n as u128).map(|i| 77 + 3 * i).collect(),
        weights,
    }
}

const K: u32 = 14;

/// The dataset tree of a run.
pub(super) fn tree_of(t: &Transcript) -> MerkleTree {
    MerkleTree::of_dataset(
        &t.train.features,
        &t.train.labels,
        &t.leaf_salts,
        t.config.fx.value_bits,
    )
}

/// Step `step` of `t`, its statement and witness edited, laid out for
/// MockProver with `tamper`; and the (edited) statement.
pub(super) fn build_mock(
    t: &Transcript,
    step: usize,
    edit: impl FnOnce(&mut StepStatement, &mut StepWitness),
    tamper: Option<Tamper>,
) -> (StepCircuit, StepStatement) {
    build_mock_at(t, K, step, edit, tamper)
}

/// [`build_mock`] laid out at `2^k` rows.
pub(super) fn build_mock_at(
    t: &Transcript,
    k: u32,
    step: usize,
    edit: impl FnOnce(&mut StepStatement, &mut StepWitness),
    tamper: Option<Tamper>,
) -> (StepCircuit, StepStatement) {
    let shape = StepShape::for_run(t, k);
    let (mut st, mut w) = step_inputs(t, &tree_of(t), step).unwrap();
    edit(&mut st, &mut w);
    let circuit = StepCircuit::build(
        &shape,
        &st,
        &w,
        CircuitBuilderStage::Mock,
        None,
        None,
        tamper,
    )
    .unwrap();
    (circuit, st)
}

pub(super) fn mock(
    t: &Transcript,
    step: usize,
    edit: impl FnOnce(&mut StepStatement, &mut StepWitness),
    tamper: Option<Tamper>,
) -> bool {
    let (circuit, st) = build_mock(t, step, edit, tamper);
    MockProver::run(K, &circuit, vec![st.instances()])
        .unwrap()
        .verify()
        .is_ok()
}

fn mlp() -> Transcript {
    synthetic_run(
        &[
            (4, Activation::None),
            (3, Activation::Relu),
            (3, Activation::None),
        ],
        10,
        2,
        3,
        1,
    )
}

#[test]
fn accepts_honest_mlp_steps() {
    let t = mlp();
    assert!(mock(&t, 0, |_, _| {}, None));
    assert!(mock(&t, 2, |_, _| {}, None));
}

#[test]
fn accepts_logistic_regression_and_linear_hidden_layer() {
    let lr = synthetic_run(&[(5, Activation::None), (2, Activation::None)], 9, 4, 2, 2);
    assert!(mock(&lr, 1, |_, _| {}, None));
    let lin = synthetic_run(
        &[
            (3, Activation::None),
            (4, Activation::None),
            (2, Activation::Relu),
            (3, Activation::None),
        ],
        8,
        2,
        2,
        3,
    );
    assert!(mock(&lin, 1, |_, _| {}, None));
}

#[test]
fn rejects_changed_updated_weight() {
    let t = mlp();
    let mut forged = t.clone();
    forged.weights[1].layers[0].w[5] += 1;
    let tree = tree_of(&t);
    let (st_forged, _) = step_inputs(&forged, &tree, 0).unwrap();
    assert!(!mock(&t, 0, |st, _| st.c_after = st_forged.c_after, None));
}

#[test]
fn rejects_wrong_gradient() {
    assert!(!mock(&mlp(), 0, |_, _| {}, Some(Tamper::Gradient(4))));
}

#[test]
fn rejects_remainder_out_of_range() {
    assert!(!mock(
        &mlp(),
        0,
        |_, _| {},
        Some(Tamper::RemainderTooLarge(3))
    ));
    assert!(!mock(
        &mlp(),
        0,
        |_, _| {},
        Some(Tamper::RemainderNegative(3))
    ));
}

#[test]
fn rejects_flipped_relu_bit() {
    // Weights and features are range-checked without a sign; the first sign
    // decompositions are the pre-activations'.
    assert!(!mock(&mlp(), 0, |_, _| {}, Some(Tamper::FlipSignBit(1))));
}

#[test]
fn rejects_exp_value_not_in_table() {
    assert!(!mock(&mlp(), 0, |_, _| {}, Some(Tamper::ExpValue(1))));
}

#[test]
fn rejects_forged_poseidon_output() {
    // First permutation of the weight commitment, one in the middle, and the last one.
    let t = mlp();
    let tree = tree_of(&t);
    let shape = StepShape::for_run(&t, K);
    let (st, w) = step_inputs(&t, &tree, 0).unwrap();
    for n in [0usize, 9, 19] {
        let c = StepCircuit::build(
            &shape,
            &st,
            &w,
            CircuitBuilderStage::Mock,
            None,
            None,
            Some(Tamper::PoseidonOutput(n)),
        )
        .unwrap();
        assert!(n < c.perms.len());
        let errs = MockProver::run(K, &c, vec![st.instances()])
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(
            format!("{errs:?}").contains("Equality constraint not satisfied"),
            "permutation {n}: {errs:?}"
        );
    }
}

/// The strongest form of a tampered witness: the prover also claims the
/// commitment to whatever weights its corrupted computation produces, so only
/// the constraint under test can reject it.
pub(super) fn rejects_consistent_forgery(t: &Transcript, tamper: Tamper) {
    let tree = tree_of(t);
    let shape = StepShape::for_run(t, K);
    let (mut st, w) = step_inputs(t, &tree, 0).unwrap();
    let probe = StepCircuit::build(
        &shape,
        &st,
        &w,
        CircuitBuilderStage::Mock,
        None,
        None,
        Some(tamper),
    )
    .unwrap();
    // (If the corruption happens not to change the update, the claim is the honest one.)
    st.c_after = probe.computed_c_after;
    let c = StepCircuit::build(
        &shape,
        &st,
        &w,
        CircuitBuilderStage::Mock,
        None,
        None,
        Some(tamper),
    )
    .unwrap();
    assert!(
        MockProver::run(K, &c, vec![st.instances()])
            .unwrap()
            .verify()
            .is_err(),
        "{tamper:?} accepted with a consistent commitment"
    );
}

#[test]
fn rejects_exp_table_aliasing_even_with_consistent_commitment() {
    // Find an exp evaluation whose high index is at least 1 (d >= 2^10 units), then alias it.
    let t = mlp();
    let tree = tree_of(&t);
    let (st, w) = step_inputs(&t, &tree, 0).unwrap();
    let shape = StepShape::for_run(&t, K);
    for n in 0..12 {
        let probe = StepCircuit::build(
            &shape,
            &st,
            &w,
            CircuitBuilderStage::Mock,
            None,
            None,
            Some(Tamper::ExpAlias(n)),
        )
        .unwrap();
        if probe.computed_c_after != st.c_after {
            rejects_consistent_forgery(&t, Tamper::ExpAlias(n));
            return;
        }
    }
    panic!("no aliasable exp evaluation in the test run");
}

#[test]
fn rejects_consistent_forgeries_of_rounding_and_gradients() {
    let t = mlp();
    rejects_consistent_forgery(&t, Tamper::RemainderTooLarge(9));
    rejects_consistent_forgery(&t, Tamper::RemainderNegative(9));
    rejects_consistent_forgery(&t, Tamper::Gradient(2));
    rejects_consistent_forgery(&t, Tamper::UpdateQuotient(0));
    rejects_consistent_forgery(&t, Tamper::ExpValue(0));
}

/// Every matrix product of a step (forward, input gradient of each layer)
/// and every weight update (by the unassigned weight gradient) is checked
/// against the challenge: an exact product with one entry changed, or a new
/// weight off by one with its remainder still in range, is rejected, with
/// the commitment to whatever weights it leads to claimed as well.
#[test]
fn rejects_a_changed_matrix_product() {
    use crate::freivalds::Check;
    let t = mlp();
    let (c, _) = build_mock(&t, 0, |_, _| {}, None);
    // Two layers: forward x2, input gradient x1, then the updates x2.
    let kinds: Vec<bool> = c
        .phase1
        .checks
        .iter()
        .map(|k| matches!(k, Check::Update(_)))
        .collect();
    assert_eq!(kinds, [false, false, false, true, true]);
    assert!(c.params.base.num_advice_per_phase[1] > 0);
    for n in 0..c.phase1.checks.len() {
        assert!(!mock(&t, 0, |_, _| {}, Some(Tamper::ProductEntry(n))));
        rejects_consistent_forgery(&t, Tamper::ProductEntry(n));
    }
}

/// A product that agrees with the true one along the fixed vector
/// `(1, 1, ...)` passes a check with that vector (shown natively) but not
/// the circuit's check with the transcript's challenge.
#[test]
fn rejects_a_product_that_fools_a_fixed_vector() {
    let t = mlp();
    let (honest, _) = build_mock(&t, 0, |_, _| {}, None);
    assert!(honest
        .phase1
        .checks
        .iter()
        .all(|k| k.holds(Fr::from(0x1234_5678_9abc_def1u64))));
    for n in 0..5 {
        let (c, _) = build_mock(&t, 0, |_, _| {}, Some(Tamper::ProductAlongOnes(n)));
        let check = &c.phase1.checks[n];
        assert!(
            check.holds(Fr::one()),
            "check {n}: forged along (1, 1, ...)"
        );
        assert!(!check.holds(Fr::from(0x1234_5678_9abc_def1u64)));
        assert!(!mock(&t, 0, |_, _| {}, Some(Tamper::ProductAlongOnes(n))));
        rejects_consistent_forgery(&t, Tamper::ProductAlongOnes(n));
    }
}

/// A prover that evaluates the check at a vector of its choosing (here
/// `r = 1`, along which its forged product agrees) is refused by the gate
/// tying the challenge cell to the transcript's challenge; with an honest
/// witness the same choice is refused too, so the gate alone rejects it.
#[test]
fn rejects_a_prover_chosen_challenge() {
    let t = mlp();
    for tamper in [None, Some(Tamper::ProductAlongOnes(0))] {
        let (mut c, st) = build_mock(&t, 0, |_, _| {}, tamper);
        c.phase1.chosen_challenge = Some(Fr::one());
        let result = MockProver::run(K, &c, vec![st.instances()])
            .unwrap()
            .verify();
        let errors = format!("{result:?}");
        assert!(
            result.is_err(),
            "{tamper:?}: a chosen challenge was accepted"
        );
        assert!(
            errors.contains("the cell holding the challenge"),
            "{errors}"
        );
    }
}

#[test]
fn rejects_wrong_update_quotient() {
    assert!(!mock(&mlp(), 0, |_, _| {}, Some(Tamper::UpdateQuotient(2))));
}

/// The update remainders are range-checked scaled by `2^s` (whole lookup
/// limbs). One that is in range but no multiple of `2^s` (the quotient
/// unchanged) fails the update's challenge check, natively and in the
/// circuit, with a divisor that is a power of two (batch 2) and one that is
/// not (batch 3); the honest step at batch 3 is accepted.
#[test]
fn rejects_a_scaled_remainder_off_its_multiple() {
    use crate::freivalds::Check;
    let r = Fr::from(0x1234_5678_9abc_def1u64);
    let odd = synthetic_run(&small_dims(), 10, 3, 1, 1);
    assert!(mock(&odd, 0, |_, _| {}, None));
    for t in [mlp(), odd] {
        let (c, _) = build_mock(&t, 0, |_, _| {}, Some(Tamper::ScaledRemainder(0)));
        let first = first_update(&c.phase1.checks);
        assert!(
            first.shift > 0,
            "batch {}: no scaled remainder",
            t.config.batch_size
        );
        assert!(!Check::Update(first.clone()).holds(r));
        assert!(!mock(&t, 0, |_, _| {}, Some(Tamper::ScaledRemainder(0))));
    }
}

/// A remainder one divisor too large (`R + d`, the quotient one less)
/// satisfies the update's equation exactly, so only the remainder's bounds
/// reject it: at batch 3 (`d = 3 x 2^32`, no power of two) it lies below
/// `2^bits(d-1)` and only the second bound, `2^s (d - 1 - R) >= 0`, is left
/// to catch it.
#[test]
fn rejects_an_update_remainder_above_the_divisor() {
    use crate::freivalds::Check;
    let r = Fr::from(0x1234_5678_9abc_def1u64);
    let t = synthetic_run(&small_dims(), 10, 3, 1, 1);
    let (honest, _) = build_mock(&t, 0, |_, _| {}, None);
    let u = first_update(&honest.phase1.checks);
    let d = u.d;
    let e = crate::fixed_chip::bits_of(d - 1);
    assert!(!d.is_power_of_two());
    // The first entry (in assignment order) whose R + d still fits in e bits.
    let n =
        u.r.iter()
            .flatten()
            .position(|y| {
                let rem = crate::fixed_chip::int(y) >> u.shift;
                rem + (d as i128) < (1i128 << e)
            })
            .expect("an entry with a small remainder");
    let tamper = Tamper::UpdateQuotientLow(n);
    let (c, _) = build_mock(&t, 0, |_, _| {}, Some(tamper));
    assert!(Check::Update(first_update(&c.phase1.checks).clone()).holds(r));
    assert!(!mock(&t, 0, |_, _| {}, Some(tamper)));
    rejects_consistent_forgery(&t, tamper);
}

/// The 4-3-3 MLP of the small tests.
pub(super) fn small_dims() -> [(usize, Activation); 3] {
    [
        (4, Activation::None),
        (3, Activation::Relu),
        (3, Activation::None),
    ]
}

/// The first weight update among a step's challenge checks (the last
/// layer's: updates run last layer first).
pub(super) fn first_update(checks: &[crate::freivalds::Check]) -> &crate::freivalds::Update {
    checks
        .iter()
        .find_map(|k| match k {
            crate::freivalds::Check::Update(u) => Some(u),
            _ => None,
        })
        .expect("a step updates its weights")
}

#[test]
fn rejects_record_not_in_dataset() {
    assert!(!mock(&mlp(), 0, |_, w| w.features[0][1] += 1, None));
}

#[test]
fn rejects_record_at_wrong_index() {
    let t = mlp();
    let tree = tree_of(&t);
    let (st, _) = step_inputs(&t, &tree, 0).unwrap();
    // A genuine record of the dataset, with its genuine path, but not the scheduled one.
    let other = (0..t.train.len() as u32)
        .find(|i| !st.indices.contains(i))
        .unwrap() as usize;
    assert!(!mock(
        &t,
        0,
        |_, w| {
            w.features[0] = t.train.features[other].clone();
            w.labels[0] = t.train.labels[other];
            w.leaf_salts[0] = t.leaf_salts[other];
            w.paths[0] = tree.path(other);
        },
        None
    ));
}

#[test]
fn rejects_changed_label_and_wrong_salt() {
    assert!(!mock(
        &mlp(),
        0,
        |_, w| w.labels[1] = (w.labels[1] + 1) % 3,
        None
    ));
    assert!(!mock(&mlp(), 0, |_, w| w.salt_before += 1, None));
    assert!(!mock(&mlp(), 0, |_, w| w.leaf_salts[0] += 1, None));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]
    /// On random small models the circuit's in-circuit update matches the
    /// native engine exactly (the committed `W_{t+1}` is the engine's).
    #[test]
    fn circuit_matches_engine_on_random_models(seed in 0u64..1000, hidden in 1usize..4, batch in 1usize..3) {
        let t = synthetic_run(&[(3, Activation::None), (hidden, Activation::Relu), (2, Activation::None)], 6, batch, 1, seed);
        let ok = mock(&t, 0, |_, _| (), None);
        prop_assert!(ok);
    }
}

#[test]
fn exp_tamper_is_caught_by_the_lookup_itself() {
    let t = mlp();
    let tree = tree_of(&t);
    let shape = StepShape::for_run(&t, K);
    let (st, w) = step_inputs(&t, &tree, 0).unwrap();
    let circuit = StepCircuit::build(
        &shape,
        &st,
        &w,
        CircuitBuilderStage::Mock,
        None,
        None,
        Some(Tamper::ExpValue(1)),
    )
    .unwrap();
    let errs = MockProver::run(K, &circuit, vec![st.instances()])
        .unwrap()
        .verify()
        .unwrap_err();
    let text = format!("{errs:?}");
    assert!(text.contains("exp table"), "{text}");
}

/// Prints cell counts for the digits-sized step (run with --ignored --nocapture).
#[test]
#[ignore]
fn print_digits_shape() {
    let t = synthetic_run(
        &[
            (64, Activation::None),
            (16, Activation::Relu),
            (10, Activation::None),
        ],
        1438,
        8,
        1,
        5,
    );
    let tree = tree_of(&t);
    for k in [15u32, 16, 17, 18] {
        let shape = StepShape::for_run(&t, k);
        let (st, w) = step_inputs(&t, &tree, 0).unwrap();
        let start = std::time::Instant::now();
        let c = StepCircuit::build(
            &shape,
            &st,
            &w,
            CircuitBuilderStage::Keygen,
            None,
            None,
            None,
        )
        .unwrap();
        let stats = c.builder.statistics();
        println!(
            "k={k} cells={} lookups={:?} params={:?} exp_lookups={} build={:?}",
            c.advice_cells(),
            stats.total_lookup_advice_per_phase,
            c.params.base,
            c.lookups.len(),
            start.elapsed()
        );
    }
}

#[test]
#[ignore]
fn print_constraint_degree() {
    use halo2_base::halo2_proofs::plonk::ConstraintSystem;
    let t = mlp();
    let c = crate::keys::keygen_circuit(&StepShape::for_run(&t, K)).unwrap();
    let mut cs = ConstraintSystem::<Fr>::default();
    let _ = StepCircuit::configure_with_params(&mut cs, c.params.clone());
    println!("degree = {}", cs.degree());
}

/// Mock-proves steps `steps` of `t` as one span; the exposed instances are
/// what a cheating prover would claim for them (first start, last end).
fn mock_span(t: &Transcript, steps: &[usize]) -> bool {
    let tree = MerkleTree::of_dataset(
        &t.train.features,
        &t.train.labels,
        &t.leaf_salts,
        t.config.fx.value_bits,
    );
    let shape = StepShape::for_run(t, K).with_span(steps.len());
    let (sts, ws): (Vec<_>, Vec<_>) = steps
        .iter()
        .map(|&s| step_inputs(t, &tree, s).unwrap())
        .unzip();
    let circuit = StepCircuit::build_span(
        &shape,
        &sts,
        &ws,
        CircuitBuilderStage::Mock,
        None,
        None,
        None,
    )
    .unwrap();
    MockProver::run(K, &circuit, vec![span_instances(&sts)])
        .unwrap()
        .verify()
        .is_ok()
}

/// Inside a span the weights pass from step to step as cells: a span whose
/// second step starts from other weights (consistently trained on, with a
/// final commitment to their update) is rejected, and so is a span claiming
/// a final commitment that the chained update does not give.
#[test]
fn span_internal_weights_are_chained() {
    let t = mlp();
    let tree = tree_of(&t);
    let shape = StepShape::for_run(&t, K).with_span(2);
    // The forged run: step 1 starts from weights changed by one unit.
    let mut forged = t.clone();
    forged.weights[1].layers[0].w[0] += 1;
    let engine = Engine::new(t.config.arch.clone(), t.config.fx);
    let b = forged.batch(1).unwrap();
    forged.weights[2] = engine
        .step(&forged.weights[1], &b.features, &b.labels, t.config.lr_fx)
        .unwrap()
        .new_weights;
    let run = |sts: &[StepStatement], ws: &[StepWitness]| {
        let c =
            StepCircuit::build_span(&shape, sts, ws, CircuitBuilderStage::Mock, None, None, None)
                .unwrap();
        MockProver::run(K, &c, vec![span_instances(sts)])
            .unwrap()
            .verify()
            .is_ok()
    };
    let (s0, w0) = step_inputs(&t, &tree, 0).unwrap();
    let (s1, w1) = step_inputs(&t, &tree, 1).unwrap();
    let (f1, g1) = step_inputs(&forged, &tree, 1).unwrap();
    assert!(run(&[s0.clone(), s1.clone()], &[w0.clone(), w1.clone()]));
    assert!(
        !run(&[s0.clone(), f1.clone()], &[w0.clone(), g1]),
        "a span whose second step starts from other weights was accepted"
    );
    // The honest witness with the forged final commitment.
    let mut claimed = s1;
    claimed.c_after = f1.c_after;
    assert!(!run(&[s0, claimed], &[w0, w1]));
}

/// Prints advice cells and Poseidon permutations per step of a span
/// (run with --ignored --nocapture).
#[test]
#[ignore]
fn print_span_cost() {
    for (name, dims, batch) in [
        ("digits 64-16-10", digits_dims(), 8),
        (
            "784-32-10",
            vec![
                (784, Activation::None),
                (32, Activation::Relu),
                (10, Activation::None),
            ],
            16,
        ),
    ] {
        let t = synthetic_run(&dims, 64, batch, 4, 5);
        let tree = tree_of(&t);
        for span in [1usize, 2, 4] {
            let shape = StepShape::for_run(&t, 20).with_span(span);
            let (sts, ws): (Vec<_>, Vec<_>) = (0..span)
                .map(|i| step_inputs(&t, &tree, i).unwrap())
                .unzip();
            let c = StepCircuit::build_span(
                &shape,
                &sts,
                &ws,
                CircuitBuilderStage::Keygen,
                None,
                None,
                None,
            )
            .unwrap();
            let (cells, perms) = (c.advice_cells(), c.perms.len());
            println!(
                "{name} batch {batch} span {span}: {cells} advice cells, {perms} permutations; per step {} cells, {} permutations",
                cells / span,
                perms / span
            );
        }
    }
}

/// Prints the columns, by kind, of 784-128-10 span circuits at batch 32
/// laid out for key generation at each `k` (`ZKAUDIT_SPANS`, `ZKAUDIT_KS`:
/// comma-separated; run with --ignored --nocapture).
#[test]
#[ignore]
fn print_span_layouts() {
    let list = |var: &str, default: &str| -> Vec<usize> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect()
    };
    let dims = vec![
        (784, Activation::None),
        (128, Activation::Relu),
        (10, Activation::None),
    ];
    let digits = std::env::var("ZKAUDIT_DIGITS").is_ok();
    let t = match digits {
        true => synthetic_run(&digits_dims(), 64, 8, 1, 5),
        false => synthetic_run(&dims, 640, 32, 1, 5),
    };
    for span in list("ZKAUDIT_SPANS", "1,3,4") {
        let est = StepShape::for_run(&t, 16).with_span(span).estimate();
        let big =
            crate::keys::keygen_circuit(&StepShape::for_run(&t, crate::srs::MAX_K).with_span(span))
                .unwrap()
                .size();
        println!("span {span}: size {big:?}\n        estimate {est:?}");
        for k in list("ZKAUDIT_KS", "17,18,19,20") {
            let shape = StepShape::for_run(&t, k as u32).with_span(span);
            let c = crate::keys::keygen_circuit(&shape).unwrap();
            let p = &c.params;
            println!(
                "  k {k}: columns counted {} from the size, {} estimated; memory estimated {:.2} GiB",
                crate::shape::total_columns(k as u32, &big),
                crate::shape::total_columns(k as u32, &est),
                est.memory_at(k as u32).1 as f64 / (1u64 << 30) as f64
            );
            println!(
                "span {span} k {k} L {}: {} advice columns (base {:?} + lookup {:?}, poseidon lanes {}, value lanes {}, remainder lanes {} x {} limbs), {} region rows, {} cells, {} permutations",
                shape.lookup_bits,
                p.advice_columns(),
                p.base.num_advice_per_phase,
                p.base.num_lookup_advice_per_phase,
                p.poseidon_lanes,
                p.values.value_lanes,
                p.values.remainder_lanes,
                p.values.remainder_limbs,
                c.values.rows(),
                c.advice_cells(),
                c.perms.len()
            );
        }
    }
}

#[test]
fn span_of_consecutive_steps_is_accepted_and_broken_spans_rejected() {
    let t = mlp();
    assert!(mock_span(&t, &[0, 1]));
    assert!(mock_span(&t, &[0, 1, 2]));
    // Out of order, a gap, a repeated step.
    assert!(!mock_span(&t, &[1, 0]));
    assert!(!mock_span(&t, &[0, 2]));
    assert!(!mock_span(&t, &[1, 1]));
    // One step's statement is exactly the span instances of one step.
    let tree = MerkleTree::of_dataset(
        &t.train.features,
        &t.train.labels,
        &t.leaf_salts,
        t.config.fx.value_bits,
    );
    let (st, _) = step_inputs(&t, &tree, 2).unwrap();
    assert_eq!(span_instances(std::slice::from_ref(&st)), st.instances());
}

/// The shape of a one-step synthetic run (64 records) and the advice cells
/// and permutations of its step circuit, laid out.
pub(super) fn built_step(dims: &[(usize, Activation)], batch: usize) -> (StepShape, usize, usize) {
    built_cells(&synthetic_run(dims, 64, batch, 1, 5))
}

/// The shape of step 0 of `t` and the advice cells and permutations of its
/// step circuit, laid out for key generation.
pub(super) fn built_cells(t: &Transcript) -> (StepShape, usize, usize) {
    let tree = tree_of(t);
    let shape = StepShape::for_run(t, 20);
    let (st, w) = step_inputs(t, &tree, 0).unwrap();
    let c = StepCircuit::build(
        &shape,
        &st,
        &w,
        CircuitBuilderStage::Keygen,
        None,
        None,
        None,
    )
    .unwrap();
    (shape, c.advice_cells(), c.perms.len())
}

/// The digits MLP's layers (64-16-10).
fn digits_dims() -> Vec<(usize, Activation)> {
    vec![
        (64, Activation::None),
        (16, Activation::Relu),
        (10, Activation::None),
    ]
}

/// Prints advice cells and permutations of single steps of a few shapes, the
/// points [`StepShape::estimate`] is fitted to (run with --ignored --nocapture).
#[test]
#[ignore]
fn print_step_cost_points() {
    for (dims, batch) in [
        (digits_dims(), 8),
        (digits_dims(), 32),
        (
            vec![
                (784, Activation::None),
                (32, Activation::Relu),
                (10, Activation::None),
            ],
            16,
        ),
        (
            vec![
                (784, Activation::None),
                (16, Activation::Relu),
                (10, Activation::None),
            ],
            4,
        ),
        (vec![(30, Activation::None), (2, Activation::None)], 16),
        (
            vec![
                (4, Activation::None),
                (3, Activation::Relu),
                (3, Activation::None),
            ],
            2,
        ),
    ] {
        let t = synthetic_run(&dims, 64, batch, 1, 5);
        let shape = StepShape::for_run(&t, crate::srs::MAX_K);
        let size = crate::keys::keygen_circuit(&shape).unwrap().size();
        let est = shape.estimate();
        println!(
            "{} batch {batch}: {} base cells (estimate {}, {:.3}), {} values ({}), {} remainders ({}), {} permutations (estimate {})",
            shape.arch.describe(),
            size.cells,
            est.cells,
            est.cells as f64 / size.cells as f64,
            size.values,
            est.values,
            size.remainders,
            est.remainders,
            size.perms,
            est.perms
        );
    }
}

/// The bundled 784-128-10 MLP (`examples/models/mnist_mlp128.toml`, 100k
/// parameters) at batch 32, judged without building it.
fn mlp128_shape() -> StepShape {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/models/mnist_mlp128.toml"
    );
    StepShape {
        arch: zkaudit_model::spec::load_model(std::path::Path::new(path))
            .unwrap()
            .arch,
        fx: FixedParams::default(),
        lr_fx: 6554,
        batch: 32,
        depth: 16,
        k: 20,
        lookup_bits: 16,
        span: 1,
    }
}

/// The size estimate follows the circuits it is fitted to (small shapes,
/// built here), and a model too large for a memory budget is refused with
/// the estimate and a batch that fits, before anything is laid out.
#[test]
fn size_estimate_tracks_circuits_and_refuses_what_does_not_fit() {
    for (dims, batch) in [
        (vec![(30, Activation::None), (2, Activation::None)], 16),
        (
            vec![
                (4, Activation::None),
                (3, Activation::Relu),
                (3, Activation::None),
            ],
            2,
        ),
        (digits_dims(), 8),
    ] {
        let t = synthetic_run(&dims, 64, batch, 1, 5);
        let shape = StepShape::for_run(&t, crate::srs::MAX_K);
        let size = crate::keys::keygen_circuit(&shape).unwrap().size();
        let e = shape.estimate();
        let ratio = e.cells as f64 / size.cells as f64;
        assert!(
            (0.85..1.15).contains(&ratio),
            "cells {ratio} off for {dims:?}"
        );
        let ratio = e.perms as f64 / size.perms as f64;
        assert!(
            (0.8..1.25).contains(&ratio),
            "permutations {ratio} off for {dims:?}"
        );
        assert_eq!(e.values, size.values, "{dims:?}");
    }
    let shape = mlp128_shape();
    // About 2.6 GiB estimated at k = 17 in 68 columns (2.23 GiB measured in
    // 60); most of it per parameter, so a smaller batch gains little.
    let err = shape.check_fits(5 << 29).unwrap_err().to_string();
    assert!(
        err.contains("GiB to prove") && err.contains("the largest batch that fits is"),
        "{err}"
    );
    eprintln!("{err}");
    shape.check_fits(1 << 40).unwrap();
    shape.check_fits(8 << 30).unwrap();
    shape.with_span(4).check_fits(8 << 30).unwrap();
    let err = shape
        .with_span(8)
        .check_fits(8 << 30)
        .unwrap_err()
        .to_string();
    assert!(err.contains("the largest span that fits is"), "{err}");
    eprintln!("{err}");
    // `--span auto` takes the longest span that fits: 4 for one leaf, at
    // k = 17 like one step (5 would fit 8 GiB only at k = 18, slower per
    // step), 3 where the leaves will be aggregated (k = 19 within 33
    // columns: 5.3 GiB estimated, 5.32 measured; 4 would take k = 20 and 9
    // GiB), 1 where no span of 2 fits, and never more steps than are
    // proven.
    use crate::pipeline::{auto_span, SpanBudget};
    assert_eq!(auto_span(&shape, 4, SpanBudget::uniform(8 << 30)), 4);
    // Five steps: one leaf of 5 would fit 8 GiB, at k = 18 only, so two
    // narrow leaves of 3 steps.
    let (k5, _, bytes5) = shape.with_span(5).estimate_memory();
    assert!(k5 > 17 && bytes5 <= 8 << 30, "{k5} {bytes5}");
    assert_eq!(auto_span(&shape, 5, SpanBudget::uniform(8 << 30)), 3);
    assert_eq!(auto_span(&shape, 179, SpanBudget::uniform(8 << 30)), 3);
    let (k, columns, _) = shape.with_span(3).estimate_memory_as(true);
    assert_eq!(k, 19);
    assert!(columns <= crate::shape::MAX_AGGREGATED_LEAF_COLUMNS);
    assert!(shape.with_span(4).estimate_memory_as(true).2 > 8 << 30);
    assert_eq!(auto_span(&shape, 179, SpanBudget::uniform(2 << 30)), 1);
    // The budgets of this machine kind: leaves that will be aggregated may
    // take what the aggregations above them take anyway, so a long run
    // takes longer leaves at k = 20 within 33 columns (fewer leaves to
    // aggregate); a single leaf keeps its 8 GiB.
    let budget = SpanBudget {
        single: 8 << 30,
        aggregated: crate::pipeline::AUTO_AGGREGATED_LEAF_MEMORY,
    };
    assert_eq!(auto_span(&shape, 4, budget), 4);
    let s = auto_span(&shape, 179, budget);
    let (k, columns, bytes) = shape.with_span(s).estimate_memory_as(true);
    assert!(
        s > 3 && k == 20 && columns <= crate::shape::MAX_AGGREGATED_LEAF_COLUMNS,
        "span {s} at k = {k}, {columns} columns"
    );
    assert!(bytes <= budget.aggregated, "{bytes}");
    // The benchmark's dataset (512 records, a tree of depth 9; a smaller
    // tree, fewer permutations per record): leaves of 5 (BENCHMARKS.md),
    // the 6 of one more Poseidon lane over the budget.
    let bench = StepShape {
        depth: 9,
        ..shape.clone()
    };
    assert_eq!(auto_span(&bench, 179, budget), 5);
    assert!(bench.with_span(6).estimate_memory_as(true).2 > budget.aggregated);
    assert_eq!(auto_span(&shape, 3, SpanBudget::uniform(8 << 30)), 3);
    assert_eq!(auto_span(&shape, 1, SpanBudget::uniform(8 << 30)), 1);
}

/// The columns counted from a circuit's size by kind are those its layout
/// has, at small and large `k` alike (each kind a whole column where it
/// holds anything), and the estimate from the shape alone is as close.
#[test]
fn columns_are_counted_by_kind() {
    let t = synthetic_run(&digits_dims(), 64, 8, 1, 5);
    for (span, k) in [(1usize, 15u32), (1, 17), (32, 18)] {
        let laid = crate::keys::keygen_circuit(&StepShape::for_run(&t, k).with_span(span))
            .unwrap()
            .params
            .advice_columns();
        let size =
            crate::keys::keygen_circuit(&StepShape::for_run(&t, crate::srs::MAX_K).with_span(span))
                .unwrap()
                .size();
        let counted = crate::shape::total_columns(k, &size);
        let estimated =
            crate::shape::total_columns(k, &StepShape::for_run(&t, k).with_span(span).estimate());
        assert!(
            counted.abs_diff(laid) <= 1 && estimated.abs_diff(laid) <= 2,
            "span {span} at k = {k}: laid out {laid}, counted {counted}, estimated {estimated}"
        );
    }
}

/// The digits step, small, takes the longest automatic span (64 steps:
/// 0.26x a standalone step per step, measured at 3.0 GiB) within 8 GiB.
#[test]
fn digits_takes_the_longest_automatic_span() {
    let t = synthetic_run(&digits_dims(), 64, 8, 1, 5);
    let shape = StepShape::for_run(&t, 16);
    assert_eq!(
        crate::pipeline::auto_span(&shape, 179, crate::pipeline::SpanBudget::uniform(8 << 30)),
        64
    );
    assert_eq!(
        crate::pipeline::auto_span(&shape, 20, crate::pipeline::SpanBudget::uniform(8 << 30)),
        20
    );
}

/// Leaves that will be aggregated are laid out narrow: a 32-step digits
/// leaf, wide (k = 17, 35 columns) when proven alone, takes k = 18 (24
/// columns) so that the aggregations above it stay small; a 784-128-10
/// leaf of 3 steps takes the `k` with the fewest slots within the column
/// cap (k = 19, not k = 20); a single digits step, already narrow, keeps
/// its `k`.
#[test]
fn aggregated_leaves_are_laid_out_narrow() {
    use crate::shape::{total_columns, MAX_AGGREGATED_LEAF_COLUMNS};
    let t = synthetic_run(&digits_dims(), 64, 8, 1, 5);
    let e = StepShape::for_run(&t, 16).with_span(32).estimate();
    let alone = StepShape::auto_k(&e);
    let aggregated = StepShape::auto_k_aggregated(&e);
    assert_eq!(alone, 17);
    assert!(total_columns(alone, &e) > MAX_AGGREGATED_LEAF_COLUMNS);
    assert_eq!(aggregated, 18);
    assert!(total_columns(aggregated, &e) <= MAX_AGGREGATED_LEAF_COLUMNS);
    let one = StepShape::for_run(&t, 16).estimate();
    assert_eq!(StepShape::auto_k_aggregated(&one), StepShape::auto_k(&one));
    let leaf = mlp128_shape().with_span(3).estimate();
    assert_eq!(StepShape::auto_k_aggregated(&leaf), 19);
    let slots = |k: u32| total_columns(k, &leaf) << k;
    assert!(total_columns(20, &leaf) < total_columns(19, &leaf) && slots(19) < slots(20));
}

/// Verifiers accept a step shape only with the lookup bits its `k` lays
/// out: `k - 1` up to 16, 16 from k = 17 on (the layout before, `k - 1`
/// at every `k`, is refused).
#[test]
fn shapes_carry_the_lookup_bits_of_their_k() {
    let t = synthetic_run(&digits_dims(), 64, 8, 1, 5);
    let p = crate::shape::PublicParams::of(&t);
    for (k, bits) in [(15u32, 14usize), (17, 16), (19, 16), (20, 16)] {
        let shape = StepShape::for_run(&t, k);
        assert_eq!(shape.lookup_bits, bits);
        shape.check_public(&p, Some(1)).unwrap();
    }
    for (k, bits) in [(19u32, 18usize), (15, 16)] {
        let shape = StepShape {
            lookup_bits: bits,
            ..StepShape::for_run(&t, k)
        };
        let err = shape.check_public(&p, Some(1)).unwrap_err().to_string();
        assert!(err.contains("lookup bits"), "{err}");
    }
}
