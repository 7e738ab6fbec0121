//! The value region inside the step circuit ([`crate::values`]): honest
//! steps are accepted by every other test of the step circuit (all of
//! which now range-check weights, updates and remainders there); here each
//! of the region's constraints is shown rejecting a corrupted witness.

use halo2_base::halo2_proofs::dev::{MockProver, VerifyFailure};
use zkaudit_model::arch::Activation;

use super::tests::{build_mock, synthetic_run, K};
use crate::values::RegionTamper;

/// The failures MockProver reports for step 1 of a small MLP with the
/// region's witness corrupted by `tamper`.
fn failures(tamper: RegionTamper) -> Vec<VerifyFailure> {
    let t = synthetic_run(
        &[
            (4, Activation::None),
            (3, Activation::Relu),
            (3, Activation::None),
        ],
        10,
        2,
        2,
        5,
    );
    let (mut circuit, st) = build_mock(&t, 1, |_, _| {}, None);
    assert!(circuit.values.rows() > 0, "the step uses the value region");
    circuit.values.tamper = Some(tamper);
    match MockProver::run(K, &circuit, vec![st.instances()])
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
fn a_value_out_of_range_is_caught_by_its_top_limb() {
    // K = 14: 13-bit limbs, so a 32-bit value's top limb has 6 bits and its
    // shifted copy is what leaves the table.
    let f = failures(RegionTamper::OutOfRange(0));
    assert!(has_lookup(&f, "value limb"), "{f:?}");
    assert!(
        !has_gate(&f, "x = o + S"),
        "the limbs were consistent: {f:?}"
    );
    assert!(!has_gate(&f, "t = 2^(L - q) l_top"), "{f:?}");
}

#[test]
fn limbs_of_another_value_are_rejected() {
    let f = failures(RegionTamper::Limbs(3));
    assert!(has_gate(&f, "x = o + S"), "{f:?}");
}

#[test]
fn an_evaluation_off_its_row_is_rejected() {
    for n in [0, 5] {
        let f = failures(RegionTamper::Head(n));
        assert!(has_gate(&f, "a = x + r a_next"), "head {n}: {f:?}");
    }
}
