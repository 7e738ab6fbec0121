//! Real keygen, prove and verify of step proofs on a small model, and the
//! proof-level soundness checks: a flipped byte, another step's instances, an
//! edited statement.

use crate::hash::MerkleTree;
use crate::keys::{step_key, step_vk};
use crate::prover::{prove_step, verify_snark, verify_step, StepProof};
use crate::shape::StepShape;
use crate::srs;
use crate::step::tests::synthetic_run;
use zkaudit_model::Activation;

/// A 4-3-3 run of 3 steps on 10 records, and its dataset tree.
fn small_run() -> (zkaudit_model::transcript::Transcript, MerkleTree) {
    let t = synthetic_run(
        &[
            (4, Activation::None),
            (3, Activation::Relu),
            (3, Activation::None),
        ],
        10,
        2,
        3,
        7,
    );
    let tree = MerkleTree::of_dataset(&t.train.features, &t.train.labels, &t.leaf_salts, 32);
    (t, tree)
}

#[test]
fn prove_verify_and_reject_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let (t, tree) = small_run();
    let k = 13;
    let srs_path = dir.path().join("srs.bin");
    srs::generate_insecure(k + 1, &srs_path).unwrap();
    assert!(srs::is_insecure(&srs_path));
    let params = srs::load(&srs_path, k).unwrap();
    let shape = StepShape::for_run(&t, k);
    let keys = dir.path().join("keys");
    let key = step_key(&keys, &shape, &params).unwrap();
    let p0 = prove_step(&t, &tree, 0, &shape, &params, &key).unwrap();
    let p1 = prove_step(&t, &tree, 1, &shape, &params, &key).unwrap();

    // Verify from public data only (vk from the cache, then regenerated from the shape).
    let vk = step_vk(&keys, &shape, &params, None).unwrap();
    verify_step(&p0, &params, &vk).unwrap();
    verify_step(&p1, &params, &vk).unwrap();
    let fresh = step_vk(&dir.path().join("empty"), &shape, &params, None).unwrap();
    verify_step(&p1, &params, &fresh).unwrap();

    // File round trip.
    let f = dir.path().join("p0.step");
    p0.write(&f).unwrap();
    let back = StepProof::read(&f).unwrap();
    verify_step(&back, &params, &vk).unwrap();

    // A proof with one byte flipped.
    for pos in [10, p0.proof.len() / 2, p0.proof.len() - 3] {
        let mut bad = p0.clone();
        bad.proof[pos] ^= 1;
        assert!(
            verify_step(&bad, &params, &vk).is_err(),
            "flipped byte {pos} accepted"
        );
    }
    // A proof checked against another step's instances.
    assert!(verify_snark(&params, &vk, &p1.statement.instances(), &p0.proof).is_err());
    // Edited statements.
    let mut edited = p0.clone();
    edited.statement.c_after = p1.statement.c_after;
    assert!(verify_step(&edited, &params, &vk).is_err());
    let mut edited = p0.clone();
    edited.statement.indices.swap(0, 1);
    assert!(verify_step(&edited, &params, &vk).is_err());
    let mut edited = p0.clone();
    edited.public.lr_fx += 1;
    assert!(verify_step(&edited, &params, &vk).is_err());
    // A proof presented as a span of two steps (its key would be another
    // circuit's) is refused: step proofs are single steps.
    let mut edited = p0.clone();
    edited.shape.span = 2;
    let err = verify_step(&edited, &params, &vk).unwrap_err().to_string();
    assert!(err.contains("span"), "{err}");

    // A transcript whose recorded weights do not follow from the engine is refused before proving.
    let mut forged = t.clone();
    forged.weights[1].layers[1].b[0] += 1;
    assert!(prove_step(&forged, &tree, 0, &shape, &params, &key).is_err());

    // The cached key is reused.
    let again = step_key(&keys, &shape, &params).unwrap();
    let p2 = prove_step(&t, &tree, 2, &shape, &params, &again).unwrap();
    verify_step(&p2, &params, &vk).unwrap();
}

#[test]
#[ignore]
fn time_srs_load() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../params/kzg_bn254.srs");
    for k in [18, 17] {
        let t = std::time::Instant::now();
        let _ = srs::load(&p, k).unwrap();
        eprintln!("load k={k}: {:?}", t.elapsed());
    }
}

/// A proof of `circuit` with the proving key `pk`, made as a cheating prover
/// would: without checking the constraints first.
pub(crate) fn prove_raw(
    params: &crate::ParamsKZG<crate::Bn256>,
    pk: &halo2_base::halo2_proofs::plonk::ProvingKey<
        halo2_base::halo2_proofs::halo2curves::bn256::G1Affine,
    >,
    circuit: crate::step::StepCircuit,
    instances: &[crate::Fr],
) -> Vec<u8> {
    use halo2_base::halo2_proofs::plonk::create_proof;
    use halo2_base::halo2_proofs::poly::kzg::commitment::KZGCommitmentScheme;
    use halo2_base::halo2_proofs::poly::kzg::multiopen::ProverSHPLONK;
    use snark_verifier_sdk::halo2::{PoseidonTranscript, POSEIDON_SPEC};
    use snark_verifier_sdk::NativeLoader;
    let mut transcript =
        PoseidonTranscript::<NativeLoader, Vec<u8>>::from_spec(vec![], POSEIDON_SPEC.clone());
    create_proof::<KZGCommitmentScheme<_>, ProverSHPLONK<'_, _>, _, _, _, _>(
        params,
        pk,
        &[circuit],
        &[&[instances]],
        rand_core::OsRng,
        &mut transcript,
    )
    .unwrap();
    transcript.finalize()
}

/// Proves step `(shape, st, w)` with `key` and `tamper` as a cheating
/// prover would and checks the real verifier's verdict: accepted when
/// honest, rejected when tampered.
pub(crate) fn assert_verdict(
    params: &crate::ParamsKZG<crate::Bn256>,
    key: &crate::keys::StepKey,
    (shape, st, w): (
        &StepShape,
        &crate::step::StepStatement,
        &crate::step::StepWitness,
    ),
    tamper: Option<crate::fixed_chip::Tamper>,
) {
    let circuit = key.prover_circuit(shape, st, w, tamper).unwrap();
    let instances = st.instances();
    let proof = prove_raw(params, &key.pk, circuit, &instances);
    let res = verify_snark(params, key.pk.get_vk(), &instances, &proof);
    match tamper {
        None => res.unwrap(),
        Some(tm) => assert!(res.is_err(), "{tm:?} accepted by the verifier"),
    }
}

/// A proof made from a corrupted witness (the prover skips constraint checks,
/// as a cheating prover would) is rejected by the real verifier.
#[test]
fn real_proofs_of_tampered_witnesses_are_rejected() {
    use crate::fixed_chip::Tamper;
    use crate::step::step_inputs;
    let dir = tempfile::tempdir().unwrap();
    let t = synthetic_run(
        &[
            (4, Activation::None),
            (3, Activation::Relu),
            (3, Activation::None),
        ],
        10,
        2,
        2,
        9,
    );
    let tree = MerkleTree::of_dataset(&t.train.features, &t.train.labels, &t.leaf_salts, 32);
    let k = 13;
    let srs_path = dir.path().join("srs.bin");
    let params = srs::generate_insecure(k, &srs_path).unwrap();
    let shape = StepShape::for_run(&t, k);
    let key = step_key(&dir.path().join("keys"), &shape, &params).unwrap();
    let (st, w) = step_inputs(&t, &tree, 0).unwrap();
    for tamper in [
        None,
        Some(Tamper::RemainderTooLarge(2)),
        Some(Tamper::Gradient(1)),
        Some(Tamper::FlipSignBit(5)),
        Some(Tamper::PoseidonOutput(3)),
        Some(Tamper::ProductEntry(1)),
        Some(Tamper::ProductAlongOnes(0)),
    ] {
        assert_verdict(&params, &key, (&shape, &st, &w), tamper);
    }
}

/// Pins the verifying key of a small fixed shape (deterministic SRS), so an
/// accidental change of the circuit is caught; bump `CIRCUIT_VERSION` and
/// update the constant when the circuit changes on purpose.
#[test]
fn verifying_key_is_pinned() {
    use halo2_base::halo2_proofs::halo2curves::bn256::Bn256;
    use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
    use rand_chacha::rand_core::SeedableRng;
    const PINNED: &str = "0x00c36972d7cf54b964005cec61d32789ab6f52da1124829b1aff6f662c9950e9";
    let t = synthetic_run(
        &[
            (4, Activation::None),
            (3, Activation::Relu),
            (3, Activation::None),
        ],
        10,
        2,
        1,
        1,
    );
    let params = ParamsKZG::<Bn256>::setup(13, rand_chacha::ChaCha20Rng::seed_from_u64(7));
    let dir = tempfile::tempdir().unwrap();
    let vk = step_vk(dir.path(), &StepShape::for_run(&t, 13), &params, None).unwrap();
    let repr = format!("{:?}", vk.transcript_repr());
    assert_eq!(
        repr,
        PINNED,
        "circuit changed: the pinned verifying key differs (version {})",
        crate::step::CIRCUIT_VERSION
    );
}

/// A circuit with the step circuit's physical layout that exposes `publics`
/// and constrains nothing: what a hostile prover would key and plant.
fn unconstrained(
    k: u32,
    publics: &[crate::Fr],
    stage: halo2_base::gates::circuit::CircuitBuilderStage,
    layout: Option<(crate::step::StepCircuitParams, Vec<Vec<usize>>)>,
) -> crate::step::StepCircuit {
    let (params, bp) = match layout {
        Some((p, bp)) => (Some(p), Some(bp)),
        None => (None, None),
    };
    let mut b = crate::step::new_builder(stage, k, (k - 1) as usize, &params, bp);
    let mut chip = crate::fixed_chip::FixedChip::new(
        b.range_chip(),
        zkaudit_model::FixedParams::default(),
        None,
    );
    chip.no_exp_table = true;
    let h = crate::poseidon::PoseidonChip::default();
    let ctx = b.main(0);
    let cells = publics.iter().map(|v| ctx.load_witness(*v)).collect();
    b.assigned_instances = vec![cells];
    crate::step::StepCircuit::assemble(b, &chip, &h, k, params).unwrap()
}

/// A verifying key planted in a key cache the verifier shares with provers
/// (a hostile worker writing the coordinator's `keys` volume): without pins
/// the verifier loads it and accepts a forged proof; with pins it derives
/// its own key and rejects the proof, and honest proofs still verify.
#[test]
fn a_planted_verifying_key_is_not_trusted() {
    use halo2_base::gates::circuit::CircuitBuilderStage;
    use halo2_base::halo2_proofs::plonk::{keygen_pk, keygen_vk};
    use snark_verifier_sdk::halo2::gen_snark_shplonk;

    use crate::keys::{base, vk_digest, KeyMeta, VkPins};

    let dir = tempfile::tempdir().unwrap();
    let (t, tree) = small_run();
    let k = 13;
    let params = srs::generate_insecure(k, &dir.path().join("srs.bin")).unwrap();
    let shape = StepShape::for_run(&t, k);
    let shared = dir.path().join("shared-keys");
    let pins = VkPins::new(dir.path().join("coordinator-pins"));
    let key = step_key(&shared, &shape, &params).unwrap();
    let honest = prove_step(&t, &tree, 0, &shape, &params, &key).unwrap();
    // The verifier derives and pins its key on first use.
    let vk = step_vk(&shared, &shape, &params, Some(&pins)).unwrap();
    verify_step(&honest, &params, &vk).unwrap();

    // The attacker keys an unconstrained circuit and plants its key, with a
    // matching digest beside it, under the step circuit's cache name.
    let zero = vec![crate::Fr::zero(); crate::step::STEP_INSTANCES];
    let c = unconstrained(k, &zero, CircuitBuilderStage::Keygen, None);
    let fvk = keygen_vk(&params, &c).unwrap();
    let fpk = keygen_pk(&params, fvk.clone(), &c).unwrap();
    let layout = (c.params.clone(), c.break_points());
    let b = base(&shared, &shape, &params);
    let mut bytes = Vec::new();
    fvk.write(&mut bytes, halo2_base::halo2_proofs::SerdeFormat::RawBytes)
        .unwrap();
    std::fs::write(b.with_extension("vk"), bytes).unwrap();
    let meta = KeyMeta {
        params: layout.0.clone(),
        break_points: layout.1.clone(),
        advice_cells: 0,
        vk_sha256: vk_digest(&fvk, &layout.0),
    };
    std::fs::write(b.with_extension("json"), serde_json::to_vec(&meta).unwrap()).unwrap();
    // ... and proves a false statement: step 0 ends in weights of its choice.
    let mut forged = honest.clone();
    forged.statement.c_after = crate::Fr::from(12345u64);
    let c = unconstrained(
        k,
        &forged.statement.instances(),
        CircuitBuilderStage::Prover,
        Some(layout),
    );
    forged.proof = gen_snark_shplonk(&params, &fpk, c, None::<&str>).proof;

    // A verifier trusting the shared cache as it is accepts the forgery.
    let planted = step_vk(&shared, &shape, &params, None).unwrap();
    verify_step(&forged, &params, &planted).unwrap();
    // The pinned verifier does not load the planted key: it derives its own.
    let vk = step_vk(&shared, &shape, &params, Some(&pins)).unwrap();
    assert!(
        verify_step(&forged, &params, &vk).is_err(),
        "a proof under a planted key was accepted"
    );
    verify_step(&honest, &params, &vk).unwrap();
    // So does a verifier whose pins are new (nothing trusted before it derived it).
    let fresh = VkPins::new(dir.path().join("other-pins"));
    let vk = step_vk(&shared, &shape, &params, Some(&fresh)).unwrap();
    assert!(verify_step(&forged, &params, &vk).is_err());
}
