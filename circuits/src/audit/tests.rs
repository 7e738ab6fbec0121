//! Audit tests with real proofs on a small synthetic run: every audit kind
//! verifies when its claim is true; a false claim cannot be proven (the
//! proof the prover makes from the witness fails); tampered audit files and
//! audits bound to another certificate are rejected.

use std::path::Path;

use halo2_base::gates::circuit::CircuitBuilderStage;
use halo2_base::halo2_proofs::dev::MockProver;
use zkaudit_model::transcript::Transcript;
use zkaudit_model::{Activation, Engine};

use super::circuit::{self, content_hash, AuditWitness};
use super::*;
use crate::hash::MerkleTree;
use crate::step::tests::synthetic_run;
use crate::{srs, CircuitError, ParamsKZG};

pub(super) fn run() -> Transcript {
    synthetic_run(
        &[
            (4, Activation::None),
            (3, Activation::Relu),
            (3, Activation::None),
        ],
        12,
        2,
        3,
        5,
    )
}

pub(super) fn binding(t: &Transcript) -> Binding {
    let tree = MerkleTree::of_dataset(
        &t.train.features,
        &t.train.labels,
        &t.leaf_salts,
        t.config.fx.value_bits,
    );
    let last = t.num_steps();
    Binding {
        root: tree.root(),
        num_records: t.train.len() as u64,
        c_t: crate::hash::commit_weights_native(
            t.weight_salts[last],
            &t.weights[last].flatten(),
            t.config.fx.value_bits,
        ),
    }
}

struct Env {
    dir: tempfile::TempDir,
    params: ParamsKZG<crate::Bn256>,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let params = srs::generate_insecure(15, &dir.path().join("srs.bin")).unwrap();
        Env { dir, params }
    }

    fn params_for(&self) -> impl Fn(u32) -> crate::Result<ParamsKZG<crate::Bn256>> + '_ {
        move |k| {
            let mut p = self.params.clone();
            if k > 15 {
                return Err(CircuitError::Srs(format!(
                    "k {k} too large for the test SRS"
                )));
            }
            halo2_base::halo2_proofs::poly::commitment::Params::downsize(&mut p, k);
            Ok(p)
        }
    }

    fn keys(&self) -> &Path {
        self.dir.path()
    }

    fn prove(&self, t: &Transcript, claim: &Claim, records: usize) -> crate::Result<AuditProof> {
        let b = binding(t);
        let plan = plan(claim, &b, &t.config.arch, &t.config.fx, records)?;
        let data = AuditData {
            transcript: t,
            model_index: t.num_steps(),
        };
        prove_audit(
            claim,
            &b,
            &data,
            &plan,
            &self.params_for(),
            self.keys(),
            &mut |_| {},
        )
    }

    fn verify(&self, t: &Transcript, a: &AuditProof) -> crate::Result<()> {
        verify_audit(
            a,
            &binding(t),
            &t.config.arch,
            &t.config.fx,
            &self.params_for(),
            self.keys(),
            None,
        )
    }
}

pub(super) fn ranges(feature: usize, lo: i64, hi: i64) -> FeatureRanges {
    FeatureRanges {
        feature,
        name: format!("f{feature}"),
        fixed: vec![(lo, hi)],
        raw: vec![(lo as f64, hi as f64)],
    }
}

fn unsatisfied(r: crate::Result<AuditProof>, what: &str) {
    match r {
        Err(CircuitError::Unsatisfied(_)) => {}
        Err(e) => panic!("{what}: expected an unsatisfied circuit, got {e}"),
        Ok(_) => panic!("{what}: a false claim was proven"),
    }
}

#[test]
fn composition_audit_verifies_and_rejects_false_claims_and_tampering() {
    let env = Env::new();
    let t = run();
    let half = t.config.fx.one() / 2;
    let pred = ranges(0, 0, half);
    let truth = t
        .train
        .features
        .iter()
        .filter(|x| pred.contains(x[0]))
        .count() as u64;
    assert!(
        truth > 0 && truth < 12,
        "the test predicate must split the data"
    );
    let claim = Claim::Composition {
        ranges: pred.clone(),
        bound: Bound::AtLeast(truth),
        reveal: true,
    };
    // 12 records in chunks of 4: three chunks cover the 16-leaf tree with an empty subtree.
    let a = env.prove(&t, &claim, 4).unwrap();
    assert_eq!(a.chunks.len(), 3);
    assert_eq!(a.revealed, vec![truth]);
    env.verify(&t, &a).unwrap();
    let f = env.dir.path().join("a.audit");
    a.write(&f).unwrap();
    env.verify(&t, &AuditProof::read(&f).unwrap()).unwrap();
    assert!(a
        .describe()
        .contains(&format!("at least {truth} of the 12 records")));

    // A threshold that does not hold cannot be proven (the combine circuit rejects it).
    let false_claim = Claim::Composition {
        ranges: pred.clone(),
        bound: Bound::AtLeast(truth + 1),
        reveal: false,
    };
    let data = AuditData {
        transcript: &t,
        model_index: t.num_steps(),
    };
    assert!(check_claim(&false_claim, &data).is_err());
    unsatisfied(
        env.prove(&t, &false_claim, 4),
        "composition above the truth",
    );
    unsatisfied(
        env.prove(
            &t,
            &Claim::Composition {
                ranges: pred,
                bound: Bound::AtMost(truth - 1),
                reveal: false,
            },
            4,
        ),
        "composition below the truth",
    );

    let rejected = |a: &AuditProof, what: &str| {
        assert!(env.verify(&t, a).is_err(), "{what} accepted");
    };
    // Edited threshold (the statement), edited revealed count.
    let mut e = a.clone();
    if let Claim::Composition { bound, .. } = &mut e.claim {
        *bound = Bound::AtLeast(truth + 1);
    }
    rejected(&e, "raised threshold");
    let mut e = a.clone();
    e.revealed = vec![truth + 1];
    rejected(&e, "edited count");
    // A flipped proof byte, chunks out of order, a chunk missing.
    let mut e = a.clone();
    let n = e.chunks[1].proof.len();
    e.chunks[1].proof[n / 2] ^= 1;
    rejected(&e, "flipped byte");
    let mut e = a.clone();
    e.chunks.swap(0, 1);
    rejected(&e, "chunks out of order");
    let mut e = a.clone();
    e.chunks.pop();
    rejected(&e, "missing chunk");
    // A flipped byte anywhere in the file is caught.
    let mut bytes = std::fs::read(&f).unwrap();
    let m = bytes.len();
    bytes[m - 40] ^= 0x10;
    if let Ok(e) = AuditProof::from_bytes(&bytes, &f) {
        rejected(&e, "flipped file byte");
    }
    // An audit of another dataset does not verify against this certificate.
    let other = synthetic_run(
        &[
            (4, Activation::None),
            (3, Activation::Relu),
            (3, Activation::None),
        ],
        12,
        2,
        3,
        6,
    );
    assert!(env.verify(&other, &a).is_err(), "audit of another dataset");

    // The same audit as cluster tasks: the coordinator's checks accept the
    // locally proven chunks (count salts are derived, not drawn, so any
    // prover commits to the same counts) and reject moved or altered ones.
    use super::tasks::{admit, verify_chunk, verify_combine, AuditRequest};
    let tree = MerkleTree::of_dataset(
        &t.train.features,
        &t.train.labels,
        &t.leaf_salts,
        t.config.fx.value_bits,
    );
    let claim = a.claim.clone();
    let req = |claim: Claim, binding: Binding| AuditRequest {
        claim,
        binding,
        model_index: t.num_steps() as u64,
        chunk_records: 4,
    };
    let job = admit(&req(claim.clone(), binding(&t)), &t, &tree).unwrap();
    assert_eq!(job.plan.chunk, a.chunk_shape);
    assert!(matches!(
        admit(&req(false_claim.clone(), binding(&t)), &t, &tree),
        Err(CircuitError::Unsatisfied(_))
    ));
    let mut foreign = binding(&t);
    foreign.c_t = foreign.root;
    assert!(matches!(
        admit(&req(claim.clone(), foreign), &t, &tree),
        Err(CircuitError::Verification(_))
    ));
    let salts = SaltKey::new(&claim, &data);
    let params = env.params_for()(a.chunk_shape.k).unwrap();
    let vk = audit_vk(env.keys(), &a.chunk_shape, &params, None).unwrap();
    let check = |i: usize, c: &ChunkProof| {
        verify_chunk(&job, &data, Some(&tree), &salts, i, c, &params, &vk)
    };
    for (i, c) in a.chunks.iter().enumerate() {
        check(i, c).unwrap();
    }
    assert!(check(1, &a.chunks[0]).is_err(), "a chunk proof moved");
    let mut e = a.chunks[2].clone();
    e.cc = Some(circuit::count_commitment(7, &[0]));
    assert!(check(2, &e).is_err(), "another count commitment");
    let (shape, proof) = a.combine.clone().unwrap();
    let cparams = env.params_for()(shape.k).unwrap();
    let cvk = audit_vk(env.keys(), &shape, &cparams, None).unwrap();
    let combine = |revealed: &[u64]| {
        verify_combine(
            &job, &data, &salts, &a.chunks, &proof, revealed, &cparams, &cvk,
        )
    };
    combine(&a.revealed).unwrap();
    assert!(combine(&[truth + 1]).is_err(), "a wrong revealed sum");
}

#[test]
fn exclusion_and_inclusion_audits() {
    let env = Env::new();
    let t = run();
    let vb = t.config.fx.value_bits;
    let outsider = vec![1, 2, 3, 4];
    assert!(!t.train.features.contains(&outsider));
    let clean = Claim::Exclusion {
        blocklist: vec![content_hash(&outsider, vb), content_hash(&[5, 6, 7, 8], vb)],
    };
    let a = env.prove(&t, &clean, 8).unwrap();
    env.verify(&t, &a).unwrap();
    // A blocklisted record that is present cannot be proven absent.
    let dirty = Claim::Exclusion {
        blocklist: vec![
            content_hash(&outsider, vb),
            content_hash(&t.train.features[9], vb),
        ],
    };
    unsatisfied(env.prove(&t, &dirty, 8), "blocklisted record present");
    // Dropping an entry from the list the proof was made for is caught.
    let mut e = a.clone();
    if let Claim::Exclusion { blocklist } = &mut e.claim {
        blocklist[1] = content_hash(&t.train.features[9], vb);
    }
    assert!(env.verify(&t, &e).is_err(), "edited blocklist accepted");

    let member = Claim::Inclusion {
        features: t.train.features[7].clone(),
        label: t.train.labels[7],
    };
    let a = env.prove(&t, &member, 1).unwrap();
    env.verify(&t, &a).unwrap();
    // The proof does not carry over to another record.
    let mut e = a.clone();
    e.claim = Claim::Inclusion {
        features: t.train.features[8].clone(),
        label: t.train.labels[8],
    };
    assert!(
        env.verify(&t, &e).is_err(),
        "inclusion of another record accepted"
    );
    // A record that is not in the training set has no valid witness: the
    // circuit rejects any leaf of the tree presented for it.
    let b = binding(&t);
    let p = plan(&member, &b, &t.config.arch, &t.config.fx, 1).unwrap();
    let tree = MerkleTree::of_dataset(&t.train.features, &t.train.labels, &t.leaf_salts, vb);
    let mut publics = vec![
        b.root,
        crate::Fr::from(b.num_records),
        crate::Fr::from(t.train.labels[7] as u64),
    ];
    publics.extend(outsider.iter().map(|&x| crate::field::fe(x as i128)));
    let w = AuditWitness::Inclusion {
        salt: t.leaf_salts[7],
        index: 7,
        path: tree.path(7),
    };
    let c = circuit::build(
        &p.chunk,
        &publics,
        &w,
        CircuitBuilderStage::Mock,
        None,
        None,
    )
    .unwrap();
    assert!(MockProver::run(p.chunk.k, &c, vec![publics])
        .unwrap()
        .verify()
        .is_err());
}

pub(super) fn test_set(t: &Transcript, n: usize) -> PublicRecords {
    let mut rng = zkaudit_model::seed::SeedRng::new(b"audit-test", 9, 0);
    let features: Vec<Vec<i64>> = (0..n)
        .map(|_| {
            (0..4)
                .map(|_| rng.below(t.config.fx.one() as u64 + 1) as i64)
                .collect()
        })
        .collect();
    let classes = t.config.arch.num_classes() as u64;
    let labels = (0..n).map(|_| rng.below(classes) as i64).collect();
    PublicRecords { features, labels }
}

#[test]
fn model_audits_accuracy_fairness_counterfactual() {
    let env = Env::new();
    let t = run();
    let test = test_set(&t, 10);
    let engine = Engine::new(t.config.arch.clone(), t.config.fx);
    let w = &t.weights[t.num_steps()];
    let correct: Vec<bool> = test
        .features
        .iter()
        .zip(&test.labels)
        .map(|(x, y)| engine.forward(w, x).unwrap().prediction() == *y as usize)
        .collect();
    let truth = correct.iter().filter(|&&c| c).count() as u64;

    let acc = Claim::Accuracy {
        test: test.clone(),
        bound: Bound::AtLeast(truth),
        reveal: false,
    };
    let a = env.prove(&t, &acc, 4).unwrap();
    assert_eq!(a.chunks.len(), 3);
    env.verify(&t, &a).unwrap();
    assert!(a.describe().contains("predicts at least"));
    unsatisfied(
        env.prove(
            &t,
            &Claim::Accuracy {
                test: test.clone(),
                bound: Bound::AtLeast(truth + 1),
                reveal: false,
            },
            4,
        ),
        "accuracy above the truth",
    );
    // Another test set (one label changed) does not match the proofs.
    let mut e = a.clone();
    if let Claim::Accuracy { test, .. } = &mut e.claim {
        test.labels[0] = (test.labels[0] + 1) % 3;
    }
    assert!(env.verify(&t, &e).is_err(), "edited test set accepted");
    // An audit of another model does not verify against this certificate.
    let mut other = t.clone();
    other.weight_salts[t.num_steps()] += 1;
    assert!(
        env.verify(&other, &a).is_err(),
        "audit of another model accepted"
    );

    // Fairness: the exact gap passes, any smaller bound fails.
    let group = ranges(1, 0, t.config.fx.one() / 2);
    let g: Vec<bool> = test.features.iter().map(|x| group.contains(x[1])).collect();
    let (na, nb) = (
        g.iter().filter(|&&b| b).count() as i64,
        g.iter().filter(|&&b| !b).count() as i64,
    );
    assert!(na > 0 && nb > 0, "both groups needed");
    let ca = (0..10).filter(|&i| g[i] && correct[i]).count() as i64;
    let cb = (0..10).filter(|&i| !g[i] && correct[i]).count() as i64;
    let gap_num = (ca * nb - cb * na).unsigned_abs(); // gap = gap_num / (na nb)
    let den = (na * nb) as u64;
    let fair = |num: u64| Claim::Fairness {
        test: test.clone(),
        group: group.clone(),
        max_gap_num: num,
        max_gap_den: den,
    };
    let a = env.prove(&t, &fair(gap_num), 5).unwrap();
    env.verify(&t, &a).unwrap();
    if gap_num > 0 {
        unsatisfied(
            env.prove(&t, &fair(gap_num - 1), 5),
            "fairness gap below the truth",
        );
    }

    // Counterfactual: setting feature 2 to a value each input already has changes nothing.
    let mut inputs = test.clone();
    for x in &mut inputs.features {
        x[2] = 7;
    }
    let same = Claim::Counterfactual {
        inputs: inputs.clone(),
        feature: 2,
        name: "f2".into(),
        values: vec![7],
        raw: vec![7.0],
    };
    let a = env.prove(&t, &same, 5).unwrap();
    env.verify(&t, &a).unwrap();
    // A value that flips some prediction cannot be proven harmless.
    let data = AuditData {
        transcript: &t,
        model_index: t.num_steps(),
    };
    let flipping = (0..4).flat_map(|f| {
        [-8, 8, -64, 64]
            .into_iter()
            .map(move |s| (f, s * t.config.fx.one()))
    });
    let mut found = false;
    for (f, v) in flipping {
        let c = Claim::Counterfactual {
            inputs: inputs.clone(),
            feature: f,
            name: format!("f{f}"),
            values: vec![v],
            raw: vec![v as f64],
        };
        if check_claim(&c, &data).is_err() {
            unsatisfied(
                env.prove(&t, &c, 5),
                "counterfactual that flips a prediction",
            );
            found = true;
            break;
        }
    }
    assert!(found, "no flipping counterfactual found for the test model");
}

#[test]
fn raw_values_must_map_to_the_proven_fixed_point_values() {
    let t = run();
    let fx = t.config.fx;
    let scaling = zkaudit_model::data::Scaling {
        kind: zkaudit_model::data::ScalingKind::Standard,
        offset: vec![1.0, 2.0, 3.0, 4.0],
        factor: vec![0.5, 0.25, 2.0, 1.0],
    };
    let fixed = |f: usize, v: f64| raw_to_fixed(&scaling, &fx, f, v).unwrap();
    assert_eq!(fixed(0, 3.0), fx.one());
    let ranges = FeatureRanges {
        feature: 1,
        name: "b".into(),
        fixed: vec![(fixed(1, 2.0), fixed(1, 6.0))],
        raw: vec![(2.0, 6.0)],
    };
    let claim = |r: FeatureRanges| Claim::Composition {
        ranges: r,
        bound: Bound::AtLeast(1),
        reveal: false,
    };
    check_raw(&claim(ranges.clone()), &scaling, &fx).unwrap();
    // Words in raw units that do not match the proven range are rejected.
    let mut widened = ranges;
    widened.raw[0].1 = 7.0;
    assert!(check_raw(&claim(widened), &scaling, &fx).is_err());
    let cf = Claim::Counterfactual {
        inputs: test_set(&t, 1),
        feature: 2,
        name: "c".into(),
        values: vec![fixed(2, 5.0)],
        raw: vec![5.0],
    };
    check_raw(&cf, &scaling, &fx).unwrap();
    let mut edited = cf.clone();
    if let Claim::Counterfactual { values, .. } = &mut edited {
        values[0] += 1;
    }
    assert!(check_raw(&edited, &scaling, &fx).is_err());
}

/// The accuracy audit runs a tanh layer and a sigmoid output as the engine
/// does: the true count verifies, one more cannot be proven.
#[test]
fn accuracy_audit_of_a_tanh_model_with_a_sigmoid_output() {
    let env = Env::new();
    let t = synthetic_run(
        &[
            (4, Activation::None),
            (3, Activation::Tanh),
            (1, Activation::Sigmoid),
        ],
        12,
        2,
        3,
        6,
    );
    accuracy_audit_of(&env, t);
}

/// The accuracy audit runs convolution and pooling stages as the engine
/// does: the true count verifies, one more cannot be proven.
#[test]
fn accuracy_audit_of_a_cnn() {
    use crate::step::stage_tests::{cnn_run, max_cnn, small_cnn};
    let env = Env::new();
    for arch in [small_cnn(Activation::Relu), max_cnn()] {
        accuracy_audit_of(&env, cnn_run(arch, 2, 3, 9));
    }
    // A counterfactual through the stages: setting a pixel to the value every
    // input already has changes no prediction.
    let t = cnn_run(max_cnn(), 2, 3, 9);
    let mut inputs = test_set(&t, 4);
    inputs.features = (0..4)
        .map(|i| (0..16).map(|j| (i * 16 + j) * 900).collect())
        .collect();
    for x in &mut inputs.features {
        x[5] = 7;
    }
    let same = Claim::Counterfactual {
        inputs,
        feature: 5,
        name: "pixel 5".into(),
        values: vec![7],
        raw: vec![7.0],
    };
    let a = env.prove(&t, &same, 4).unwrap();
    env.verify(&t, &a).unwrap();
}

/// The true accuracy of `t`'s model verifies, one more cannot be proven.
fn accuracy_audit_of(env: &Env, t: Transcript) {
    let mut rng = zkaudit_model::seed::SeedRng::new(b"audit-acc", 1, 0);
    let one = t.config.fx.one() as u64;
    let (dim, classes) = (
        t.config.arch.input_dim(),
        t.config.arch.num_classes() as u64,
    );
    let test = PublicRecords {
        features: (0..6)
            .map(|_| (0..dim).map(|_| rng.below(one + 1) as i64).collect())
            .collect(),
        labels: (0..6).map(|_| rng.below(classes) as i64).collect(),
    };
    let engine = Engine::new(t.config.arch.clone(), t.config.fx);
    let w = &t.weights[t.num_steps()];
    let truth = test
        .features
        .iter()
        .zip(&test.labels)
        .filter(|(x, y)| engine.forward(w, x).unwrap().prediction() == **y as usize)
        .count() as u64;
    let claim = |n| Claim::Accuracy {
        test: test.clone(),
        bound: Bound::AtLeast(n),
        reveal: false,
    };
    let a = env.prove(&t, &claim(truth), 3).unwrap();
    env.verify(&t, &a).unwrap();
    unsatisfied(
        env.prove(&t, &claim(truth + 1), 3),
        "accuracy above the truth",
    );
}
