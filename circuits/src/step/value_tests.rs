//! The value region inside the step circuit ([`crate::values`]), which
//! circuits laid out at `k >= 17` use: honest steps accepted (at a batch
//! whose update divisor is a power of two and one whose is not, so that the
//! remainders' complement rows are laid out too), each of the region's
//! constraints shown rejecting a corrupted witness, and the update
//! remainders' tampers of [`super::tests`] rejected through the region.

use halo2_base::halo2_proofs::dev::{MockProver, VerifyFailure};
use zkaudit_model::arch::Activation;
use zkaudit_model::transcript::Transcript;

use super::tests::{build_mock_at, first_update, small_dims, synthetic_run};
use crate::fixed_chip::Tamper;
use crate::values::RegionTamper;

/// The smallest `k` with the region (16-bit limbs: whole limbs for 32-bit values).
const K: u32 = 17;

fn mlp(batch: usize) -> Transcript {
    synthetic_run(
        &[
            (4, Activation::None),
            (3, Activation::Relu),
            (3, Activation::None),
        ],
        10,
        batch,
        2,
        5,
    )
}

/// The failures MockProver reports for step 1 of `t` laid out at `2^k`,
/// with the chip's `tamper` and the region's witness corrupted by `region`.
fn failures(
    t: &Transcript,
    k: u32,
    tamper: Option<Tamper>,
    region: Option<RegionTamper>,
) -> Vec<VerifyFailure> {
    let (mut circuit, st) = build_mock_at(t, k, 1, |_, _| {}, tamper);
    assert!(circuit.values.rows() > 0, "the step uses the value region");
    circuit.values.tamper = region;
    match MockProver::run(k, &circuit, vec![st.instances()])
        .unwrap()
        .verify()
    {
        Ok(()) => Vec::new(),
        Err(f) => f,
    }
}

fn has_lookup(f: &[VerifyFailure], name: &str) -> bool {
    f.iter()
        .any(|e| matches!(e, VerifyFailure::Lookup { name: n, .. } if n == name))
}

/// Whether the value region's constraint `name` failed.
fn has_gate(f: &[VerifyFailure], name: &str) -> bool {
    f.iter().any(|e| {
        matches!(e, VerifyFailure::ConstraintNotSatisfied { constraint, .. }
            if constraint.to_string().contains(&format!("'{name}'"))
                && constraint.to_string().contains("value region"))
    })
}

#[test]
fn honest_steps_are_accepted_with_the_region() {
    for batch in [2, 3] {
        let t = mlp(batch);
        let (c, _) = build_mock_at(&t, K, 1, |_, _| {}, None);
        let p = c.values.params;
        assert!(p.value_lanes > 0 && p.remainder_lanes > 0, "{p:?}");
        assert!(failures(&t, K, None, None).is_empty(), "batch {batch}");
    }
}

/// A remainder lane holds the remainders' cells only where complements are
/// tied to them (batch 3: the divisor `3 2^(2f)`); at batch 2 it has one
/// column fewer, as the shape's estimate says before any layout, and the
/// configured constraint system has the columns the layout counts.
#[test]
fn remainder_lanes_hold_cells_only_with_complements() {
    use crate::step::StepCircuit;
    use halo2_base::halo2_proofs::plonk::{Circuit, ConstraintSystem};
    let mut columns = Vec::new();
    for (batch, cells) in [(2, false), (3, true)] {
        let t = mlp(batch);
        assert_eq!(
            crate::shape::StepShape::for_run(&t, K)
                .estimate()
                .remainder_cells,
            cells,
            "batch {batch}: estimated from the shape"
        );
        let (c, _) = build_mock_at(&t, K, 1, |_, _| {}, None);
        let p = c.values.params;
        assert_eq!(p.remainder_cells, cells, "batch {batch}: {p:?}");
        assert_eq!(p.remainder_lanes, 1, "batch {batch}: {p:?}");
        let mut cs = ConstraintSystem::<crate::Fr>::default();
        StepCircuit::configure_with_params(&mut cs, c.params.clone());
        assert_eq!(
            cs.num_advice_columns(),
            c.params.advice_columns(),
            "batch {batch}: configured and counted"
        );
        columns.push((
            cs.num_advice_columns(),
            c.params.base.num_advice_per_phase.clone(),
        ));
    }
    // The same halo2-base columns, one remainder cell column more at batch 3.
    assert_eq!(columns[0].1, columns[1].1, "{columns:?}");
    assert_eq!(columns[0].0 + 1, columns[1].0, "{columns:?}");
}

/// A remainder's limbs changed alone: with the cell `x`, its tie to the
/// limbs fails; without it (batch 2), the evaluation that reads the limbs,
/// at a group's inner rows and at its last.
#[test]
fn a_remainder_is_its_limbs() {
    for (batch, gates) in [
        (2, ["a = S + r a_next", "a = S"]),
        (3, ["x = o + S", "x = o - S"]),
    ] {
        for i in [0, 2, 7, 8] {
            let f = failures(&mlp(batch), K, None, Some(RegionTamper::RemainderLimbs(i)));
            assert!(
                gates.iter().any(|g| has_gate(&f, g)),
                "batch {batch}, row {i}: {f:?}"
            );
        }
    }
}

/// A remainder `R + d` with the new weight one lower satisfies the update's
/// equation exactly; without complements (batch 2, `d` a power of two) only
/// the remainder's top limb, out of the table, rejects it.
#[test]
fn a_remainder_of_d_or_more_leaves_the_table() {
    let t = mlp(2);
    let tamper = Some(Tamper::UpdateQuotientLow(0));
    let (c, _) = build_mock_at(&t, K, 1, |_, _| {}, tamper);
    let u = first_update(&c.phase1.checks);
    assert!(u.d.is_power_of_two() && !c.values.params.remainder_cells);
    let r = crate::field::fe(12_345);
    assert!(crate::freivalds::Check::Update(u.clone()).holds(r));
    let f = failures(&t, K, tamper, None);
    assert!(has_lookup(&f, "value limb"), "{f:?}");
}

/// A prover's layout must have the key's remainder cells: a circuit whose
/// witness needs none is refused against a key that has them.
#[test]
fn remainder_cells_must_match_the_key() {
    use halo2_base::gates::circuit::CircuitBuilderStage;
    let t = mlp(2);
    let shape = crate::shape::StepShape::for_run(&t, K);
    let c = crate::keys::keygen_circuit(&shape).unwrap();
    let mut params = c.params.clone();
    assert!(!params.values.remainder_cells);
    params.values.remainder_cells = true;
    let (st, w) = crate::step::step_inputs(&t, &super::tests::tree_of(&t), 1).unwrap();
    let got = crate::step::StepCircuit::build(
        &shape,
        &st,
        &w,
        CircuitBuilderStage::Prover,
        Some(params),
        // Refused before any break point is read.
        Some(vec![Vec::new(); 2]),
        None,
    );
    assert!(
        matches!(got, Err(crate::CircuitError::Shape(ref m)) if m.contains("value-region lanes")),
        "{:?}",
        got.err()
    );
}

#[test]
fn a_value_out_of_range_is_caught_by_its_top_limb() {
    // k = 17: two whole 16-bit limbs, the top one leaves the table; k = 18:
    // 17 + 15 bits, the top limb's shifted copy leaves it.
    for k in [K, K + 1] {
        let f = failures(&mlp(2), k, None, Some(RegionTamper::OutOfRange(0)));
        assert!(has_lookup(&f, "value limb"), "k = {k}: {f:?}");
        assert!(
            !has_gate(&f, "x = o + S"),
            "k = {k}: consistent limbs: {f:?}"
        );
        assert!(!has_gate(&f, "t = 2^(L - q) l_top"), "k = {k}: {f:?}");
    }
}

#[test]
fn limbs_of_another_value_are_rejected() {
    let f = failures(&mlp(2), K, None, Some(RegionTamper::Limbs(3)));
    assert!(has_gate(&f, "x = o + S"), "{f:?}");
}

#[test]
fn an_evaluation_off_its_row_is_rejected() {
    for n in [0, 5] {
        let f = failures(&mlp(2), K, None, Some(RegionTamper::Head(n)));
        assert!(has_gate(&f, "a = x + r a_next"), "head {n}: {f:?}");
    }
}

/// The remainders' tampers of the limb-chain tests, through the region: a
/// scaled remainder off its multiple of `2^s`, and a remainder `R + d`
/// that satisfies the update's equation exactly (batch 3: only the
/// complement row `2^s (d - 1) - y` rejects it).
#[test]
fn update_remainders_are_checked_in_the_region() {
    for batch in [2, 3] {
        let f = failures(&mlp(batch), K, Some(Tamper::ScaledRemainder(0)), None);
        assert!(!f.is_empty(), "batch {batch}: off its multiple, accepted");
    }
    let t = synthetic_run(&small_dims(), 10, 3, 2, 1);
    let (honest, _) = build_mock_at(&t, K, 1, |_, _| {}, None);
    let u = first_update(&honest.phase1.checks);
    let e = crate::fixed_chip::bits_of(u.d - 1);
    let n =
        u.r.iter()
            .flatten()
            .position(|y| (crate::fixed_chip::int(y) >> u.shift) + (u.d as i128) < (1i128 << e))
            .expect("an entry with a small remainder");
    let f = failures(&t, K, Some(Tamper::UpdateQuotientLow(n)), None);
    assert!(
        has_gate(&f, "x = o - S") || has_lookup(&f, "value limb"),
        "{f:?}"
    );
}
