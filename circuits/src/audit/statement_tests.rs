//! What an audit statement binds, tested against a prover who builds a
//! witness the honest code never would (MockProver on hand-made witnesses):
//! an inclusion proof for a leaf planted past the record count, and a
//! fairness audit with an empty group.

use halo2_base::gates::circuit::CircuitBuilderStage;
use halo2_base::halo2_proofs::dev::MockProver;

use super::circuit::{self, count_commitment, AuditWitness};
use super::tests::{binding, ranges, run, test_set};
use super::*;
use crate::field::fe;
use crate::hash::MerkleTree;
use crate::Fr;

/// Runs the audit circuit of `shape` on a hand-made witness; `Ok` when every constraint holds.
fn mock(shape: &AuditShape, publics: Vec<Fr>, w: &AuditWitness) -> std::result::Result<(), String> {
    let c = circuit::build(shape, &publics, w, CircuitBuilderStage::Mock, None, None)
        .map_err(|e| e.to_string())?;
    MockProver::run(shape.k, &c, vec![publics])
        .map_err(|e| e.to_string())?
        .verify()
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn inclusion_is_bounded_by_the_record_count() {
    let t = run();
    let n = t.train.len();
    let vb = t.config.fx.value_bits;
    assert!(!n.is_power_of_two(), "the attack needs padding positions");
    // The prover's tree holds an extra leaf at position N: training never
    // opens it (the schedule draws indices below N), so the certificate is
    // made normally over this root with N records.
    let fake_x: Vec<i64> = vec![11, -22, 33, -44];
    let fake_y = 1i64;
    let mut features = t.train.features.clone();
    let mut labels = t.train.labels.clone();
    let mut salts = t.leaf_salts.clone();
    features.push(fake_x.clone());
    labels.push(fake_y);
    salts.push(77);
    let tree = MerkleTree::of_dataset(&features, &labels, &salts, vb);
    assert_eq!(MerkleTree::depth_for(n), MerkleTree::depth_for(n + 1));
    let b = Binding {
        root: tree.root(),
        ..binding(&t)
    };
    let claim = |x: &[i64], y: i64| Claim::Inclusion {
        features: x.to_vec(),
        label: y,
    };
    let p = plan(&claim(&fake_x, fake_y), &b, &t.config.arch, &t.config.fx, 1).unwrap();
    let publics = |x: &[i64], y: i64| {
        let mut v = vec![b.root, Fr::from(b.num_records), fe(y as i128)];
        v.extend(x.iter().map(|&v| fe(v as i128)));
        v
    };
    let at = |i: usize| AuditWitness::Inclusion {
        salt: salts[i],
        index: i as u64,
        path: tree.path(i),
    };
    // The last real record (index N - 1) is included ...
    let last = n - 1;
    mock(&p.chunk, publics(&features[last], labels[last]), &at(last)).unwrap();
    // ... the planted leaf at index N is not.
    assert!(
        mock(&p.chunk, publics(&fake_x, fake_y), &at(n)).is_err(),
        "a leaf past the record count was accepted as a training record"
    );
    // Nor with a record count raised to cover it: N is the verifier's (the
    // certificate's), so this publics vector is never built by verify_audit.
    let mut raised = publics(&fake_x, fake_y);
    raised[1] = Fr::from(b.num_records + 1);
    mock(&p.chunk, raised, &at(n)).unwrap();
}

#[test]
fn fairness_needs_both_groups_non_empty() {
    let t = run();
    let b = binding(&t);
    let test = test_set(&t, 10);
    let (arch, fx) = (&t.config.arch, &t.config.fx);
    let fair = |group: FeatureRanges| Claim::Fairness {
        test: test.clone(),
        group,
        max_gap_num: 0,
        max_gap_den: 1,
    };
    // Every test feature lies in [0, 1]: a group of values above 2 is empty.
    let empty = fair(ranges(1, 2 * fx.one(), 3 * fx.one()));
    let err = plan(&empty, &b, arch, fx, 5).unwrap_err().to_string();
    assert!(err.contains("at least one test record each"), "{err}");
    // The combine circuit itself refuses n_a = 0 or n_b = 0, although no
    // correct prediction then satisfies the gap inequality (both sides 0).
    let p = plan(&fair(ranges(1, 0, fx.one() / 2)), &b, arch, fx, 5).unwrap();
    let shape = p.combine.expect("fairness has a combine proof");
    let counts = vec![vec![0, 0]; p.chunks];
    let salts: Vec<u128> = (0..p.chunks as u128).collect();
    let publics = |na: u64, nb: u64| {
        let mut v: Vec<Fr> = counts
            .iter()
            .zip(&salts)
            .map(|(c, s)| count_commitment(*s, c))
            .collect();
        v.extend([Fr::from(na), Fr::from(nb), Fr::zero(), Fr::one()]);
        v
    };
    let w = AuditWitness::Combine {
        counts: counts.clone(),
        salts: salts.clone(),
    };
    assert!(
        mock(&shape, publics(0, 10), &w).is_err(),
        "a fairness gap over an empty group was accepted"
    );
    assert!(
        mock(&shape, publics(10, 0), &w).is_err(),
        "a fairness gap over an empty group was accepted"
    );
    // With both groups non-empty the same witness is judged on the gap
    // (here 0 <= 0: accepted), so the refusals above are the groups' doing.
    mock(&shape, publics(4, 6), &w).unwrap();
}

/// Accuracy, fairness and counterfactual audits count predicted classes: a
/// regression model's are refused with the reason, before any proving.
#[test]
fn class_audits_of_a_regression_are_refused() {
    use zkaudit_model::{Activation, Architecture, DenseSpec};
    let t = run();
    let arch = Architecture::new(vec![DenseSpec {
        inputs: 4,
        outputs: 1,
        activation: Activation::None,
    }])
    .unwrap();
    let test = test_set(&t, 4);
    let claims = [
        Claim::Accuracy {
            test: test.clone(),
            bound: Bound::AtLeast(1),
            reveal: false,
        },
        Claim::Counterfactual {
            inputs: test.clone(),
            feature: 0,
            name: "f0".into(),
            values: vec![0],
            raw: vec![0.0],
        },
    ];
    for c in &claims {
        let e = plan(c, &binding(&t), &arch, &t.config.fx, 2)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("regression"), "{e}");
    }
}
