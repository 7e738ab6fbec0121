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
/// column fewer and its evaluation reads the limbs' sum.
#[test]
fn remainder_lanes_hold_cells_only_with_complements() {
    for (batch, cells) in [(2, false), (3, true)] {
        let (c, _) = build_mock_at(&mlp(batch), K, 1, |_, _| {}, None);
        let p = c.values.params;
        assert_eq!(p.remainder_cells, cells, "batch {batch}: {p:?}");
        assert!(p.remainder_lanes > 0, "batch {batch}: {p:?}");
        let lane = crate::values::remainder_lane_columns(p.remainder_limbs, cells);
        assert_eq!(lane, p.remainder_limbs + 1 + usize::from(cells));
        let size = c.size();
        assert_eq!(size.remainder_cells, cells, "batch {batch}");
        let (laid, counted) = (
            c.params.advice_columns(),
            crate::shape::total_columns(K, &size),
        );
        assert!(
            laid.abs_diff(counted) <= 1,
            "batch {batch}: laid out {laid}, counted {counted}"
        );
    }
}

/// A remainder's limbs changed alone: with the cell `x`, its tie to the
/// limbs fails; without it (batch 2), the evaluation that reads the limbs.
#[test]
fn a_remainder_is_its_limbs() {
    for (batch, gate) in [(2, "a = x + r a_next"), (3, "x = o + S")] {
        for i in [0, 7] {
            let f = failures(&mlp(batch), K, None, Some(RegionTamper::RemainderLimbs(i)));
            assert!(has_gate(&f, gate), "batch {batch}, row {i}: {f:?}");
        }
    }
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
