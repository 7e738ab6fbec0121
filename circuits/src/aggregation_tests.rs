//! Real recursive aggregation. A run is aggregated into a succinct
//! certificate that verifies with a root key the verifier derives in its own
//! empty key cache; out-of-order children are rejected by the circuit itself
//! (a real proof of them does not verify), and so are a flipped proof or
//! file byte and every edited statement.
//!
//! CI runs one aggregation level (2 steps, ~14 minutes and ~9 GiB on a
//! 2-core machine, SRS generation included); the full recursion (4 steps
//! through two levels, ~23 minutes) is `--ignored`:
//! `cargo test --release -p zkaudit-circuits succinct_certificate -- --include-ignored --nocapture`.
//! `ZKAUDIT_AGG_SRS` may name an existing SRS file with `k >= 20` (else one is
//! generated, ~5 minutes) and `ZKAUDIT_AGG_KEYS` a persistent key cache.

use std::path::PathBuf;
use std::time::Instant;

use halo2_base::halo2_proofs::halo2curves::bn256::Fr;

use crate::aggregate::{
    agg_key, protocol, prove_node_claiming, prover_memory, NodeKind, Summary, AGG_BYTES_PER_SLOT,
    DEFAULT_AGG_K,
};
use crate::certificate::{verify_succinct, Certificate};
use crate::keys::step_key;
use crate::pipeline::{derive_root_key, prove_run_succinct, RunProgress};
use crate::prover::verify_snark;
use crate::shape::StepShape;
use crate::srs;
use crate::step::tests::synthetic_run;
use zkaudit_model::Activation;

#[test]
fn succinct_certificate_one_level() {
    succinct_certificate(2);
}

#[test]
#[ignore = "~23 minutes: run with --include-ignored (see the module docs)"]
fn succinct_certificate_through_two_levels() {
    succinct_certificate(4);
}

/// Proves `steps` steps of a synthetic run succinctly and checks the list.
fn succinct_certificate(steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let srs_path = std::env::var("ZKAUDIT_AGG_SRS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("srs20.bin"));
    if !srs_path.exists() {
        let start = Instant::now();
        srs::generate_insecure(DEFAULT_AGG_K, &srs_path).unwrap();
        eprintln!(
            "SRS k={DEFAULT_AGG_K}: {:.0}s",
            start.elapsed().as_secs_f64()
        );
    }
    let keys = std::env::var("ZKAUDIT_AGG_KEYS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("keys"));
    let dims = [
        (4, Activation::None),
        (3, Activation::Relu),
        (3, Activation::None),
    ];
    let t = synthetic_run(&dims, 12, 2, 5, 11);
    let k = 13;
    let shape = StepShape::for_run(&t, k);
    let step_params = srs::load(&srs_path, k).unwrap();
    let agg_params = srs::load(&srs_path, DEFAULT_AGG_K).unwrap();
    let key = step_key(&keys, &shape, &step_params).unwrap();
    let start = Instant::now();
    let cert = prove_run_succinct(
        &t,
        Some(steps),
        &shape,
        &step_params,
        &agg_params,
        &keys,
        &mut |p| {
            if !matches!(p, RunProgress::StepDone(_)) {
                eprintln!("[{:>6.1}s] {p:?}", start.elapsed().as_secs_f64());
            }
        },
    )
    .unwrap();
    eprintln!(
        "{steps} steps aggregated in {:.0}s; root proof {} bytes",
        start.elapsed().as_secs_f64(),
        cert.root.as_ref().unwrap().proof.len()
    );

    // The verifier derives the root key in its own, empty cache.
    let verifier_keys = dir.path().join("verifier-keys");
    let start = Instant::now();
    let (kind, vk) = derive_root_key(&cert, &verifier_keys, &step_params, &agg_params).unwrap();
    let n = crate::step::STEP_INSTANCES;
    eprintln!(
        "verifier key derivation: {:.0}s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(kind, NodeKind::Aggregate);
    let start = Instant::now();
    verify_succinct(&cert, &step_params, &agg_params, kind, &vk).unwrap();
    eprintln!("verify: {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
    let f = dir.path().join("run.cert");
    cert.write(&f).unwrap();
    eprintln!(
        "certificate: {} bytes",
        std::fs::metadata(&f).unwrap().len()
    );
    let read = Certificate::read(&f).unwrap();
    verify_succinct(&read, &step_params, &agg_params, kind, &vk).unwrap();
    assert!(cert.describe().contains(&format!("by {steps} SGD steps")));

    let rejected = |c: &Certificate, what: &str| {
        assert!(
            verify_succinct(c, &step_params, &agg_params, kind, &vk).is_err(),
            "{what} accepted"
        );
    };
    let other = synthetic_run(&dims, 12, 2, 5, 12);
    let mut c = cert.clone();
    c.statement.c_last = Fr::from(3);
    rejected(&c, "edited c_last");
    let mut c = cert.clone();
    c.statement.root = crate::hash::MerkleTree::of_dataset(
        &other.train.features,
        &other.train.labels,
        &other.leaf_salts,
        other.config.fx.value_bits,
    )
    .root();
    rejected(&c, "mismatched dataset root");
    let mut c = cert.clone();
    c.statement.t_last = steps as u64 - 2;
    rejected(&c, "edited step range");
    let mut c = cert.clone();
    c.public.seed += 1;
    rejected(&c, "edited seed");
    let mut c = cert.clone();
    c.root.as_mut().unwrap().instances[0] += Fr::one();
    rejected(&c, "edited accumulator");
    for pos in [5usize, 1000, 4000] {
        let mut c = cert.clone();
        let r = c.root.as_mut().unwrap();
        let n = r.proof.len();
        r.proof[pos % n] ^= 0x04;
        rejected(&c, "flipped proof byte");
    }
    let mut bytes = std::fs::read(&f).unwrap();
    let len = bytes.len();
    bytes[len - 100] ^= 0x01;
    if let Ok(c) = Certificate::from_bytes(&bytes, &f) {
        rejected(&c, "flipped file byte");
    }

    // Out of order: the first-level circuit over steps (1, 0) yields a proof
    // that does not verify, whatever summary it exposes.
    let batched =
        crate::pipeline::prove_run(&t, Some(2), &shape, &step_params, &key, &mut |_| {}).unwrap();
    let p = protocol(&step_params, key.pk.get_vk(), NodeKind::Steps(1), n);
    let leaf = |i: usize| crate::aggregate::Node {
        kind: NodeKind::Steps(1),
        snark: snark_verifier_sdk::Snark::new(
            p.clone(),
            vec![batched.steps[i].statement.instances()],
            batched.steps[i].proof.clone(),
        ),
        summary: Summary::of_step(&batched.steps[i].statement),
    };
    let kids = [leaf(1), leaf(0)];
    let sig: Vec<_> = kids
        .iter()
        .map(|k| (k.kind, k.snark.protocol.clone()))
        .collect();
    let akey = agg_key(&keys, &agg_params, &sig).unwrap();
    // The memory estimate counts every advice column of the layout, the
    // lookup ones included, over all 2^k rows.
    let cfg = akey.meta.config;
    let advice = (cfg.num_advice + cfg.num_lookup_advice) as u64;
    let memory = prover_memory(akey.pk.get_vk());
    eprintln!("aggregation {cfg:?}: estimated prover memory {memory} B");
    assert_eq!(memory, (advice << cfg.degree) * AGG_BYTES_PER_SLOT);
    let claim = Summary {
        c_first: kids[0].summary.c_first,
        c_last: kids[1].summary.c_last,
        t_first: 1,
        t_last: 0,
        ..kids[0].summary.clone()
    };
    let start = Instant::now();
    let bad = prove_node_claiming(&agg_params, &akey, &kids, claim);
    eprintln!(
        "out-of-order aggregation attempt: {:.0}s",
        start.elapsed().as_secs_f64()
    );
    // Either the prover's own check refuses it, or the proof does not verify.
    if let Ok(node) = bad {
        let l1_vk = akey.pk.get_vk();
        assert!(
            verify_snark(
                &agg_params,
                l1_vk,
                &node.snark.instances[0],
                &node.snark.proof
            )
            .is_err(),
            "an aggregation of out-of-order steps verified"
        );
    }
}
