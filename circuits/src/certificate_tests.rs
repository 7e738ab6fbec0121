//! Batched certificates: a 4-step run verifies, and every listed tampering is
//! rejected (order, gap, foreign proof, root, flipped byte, edited statement).

use crate::certificate::{check_statement, verify_certificate, Certificate};
use crate::keys::{step_key, step_vk};
use crate::pipeline::prove_run;
use crate::shape::StepShape;
use crate::srs;
use crate::step::tests::synthetic_run;
use zkaudit_model::Activation;

#[test]
fn batched_certificate_verifies_and_rejects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let dims = [
        (4, Activation::None),
        (3, Activation::Relu),
        (3, Activation::None),
    ];
    let t = synthetic_run(&dims, 12, 2, 5, 11);
    let other = synthetic_run(&dims, 12, 2, 5, 12);
    let k = 13;
    let params = srs::generate_insecure(k, &dir.path().join("srs.bin")).unwrap();
    let shape = StepShape::for_run(&t, k);
    let keys = dir.path().join("keys");
    let key = step_key(&keys, &shape, &params).unwrap();
    let cert = prove_run(&t, Some(4), &shape, &params, &key, &mut |_| {}).unwrap();
    let foreign = prove_run(&other, Some(4), &shape, &params, &key, &mut |_| {}).unwrap();
    let vk = step_vk(&keys, &shape, &params, None).unwrap();
    verify_certificate(&cert, &params, &vk).unwrap();
    assert!(cert.initial_salt.is_some(), "seeded init reveals salt_0");
    assert!(cert.describe().contains("by 4 SGD steps"));

    // Round trip through the file format.
    let f = dir.path().join("run.cert");
    cert.write(&f).unwrap();
    verify_certificate(&Certificate::read(&f).unwrap(), &params, &vk).unwrap();

    let rejected = |c: &Certificate, what: &str| {
        assert!(
            verify_certificate(c, &params, &vk).is_err(),
            "{what} accepted"
        );
    };
    // Two proofs out of order.
    let mut c = cert.clone();
    c.steps.swap(1, 2);
    rejected(&c, "out of order");
    // A gap.
    let mut c = cert.clone();
    c.steps.remove(2);
    c.statement.t_last -= 1;
    c.statement.c_last = c.steps[2].statement.c_after;
    rejected(&c, "gap");
    // A step proof from another run.
    let mut c = cert.clone();
    c.steps[1] = foreign.steps[1].clone();
    rejected(&c, "foreign step");
    // A mismatched dataset root.
    let mut c = cert.clone();
    c.statement.root = foreign.statement.root;
    for e in &mut c.steps {
        e.statement.root = foreign.statement.root;
    }
    rejected(&c, "other root");
    // An edited statement.
    let mut c = cert.clone();
    c.statement.c_last = foreign.statement.c_last;
    rejected(&c, "edited c_last");
    let mut c = cert.clone();
    c.public.lr_fx += 1;
    rejected(&c, "edited parameters");
    let mut c = cert.clone();
    c.initial_salt = Some(c.initial_salt.unwrap() + 1);
    rejected(&c, "wrong initial salt");
    // Parameters outside what `train` accepts are refused before any key is
    // derived from them, even with a consistent digest and shape.
    let forged = |edit: &dyn Fn(&mut Certificate)| {
        let mut c = cert.clone();
        edit(&mut c);
        c.shape.fx = c.public.fx;
        c.shape.lr_fx = c.public.lr_fx;
        c.statement.digest = c.public.digest();
        check_statement(&c, &params).map_err(|e| e.to_string())
    };
    forged(&|_| {}).unwrap();
    let err = forged(&|c| c.public.fx.value_bits = 127).unwrap_err();
    assert!(err.contains("value-bits"), "{err}");
    let err = forged(&|c| c.public.lr_fx = 0).unwrap_err();
    assert!(err.contains("lr_fx"), "{err}");
    assert!(forged(&|c| c.public.lr_fx = -3).is_err());
    let err = forged(&|c| c.public.batch = 1 << 40).unwrap_err();
    assert!(err.contains("batch_size"), "{err}");
    // A batched certificate's proofs are single steps.
    let err = forged(&|c| c.shape.span = 2).unwrap_err();
    assert!(err.contains("span"), "{err}");
    // A flipped byte anywhere in a proof, and in the file.
    for pos in [5usize, 700, 2000] {
        let mut c = cert.clone();
        let n = c.steps[3].proof.len();
        c.steps[3].proof[pos % n] ^= 0x04;
        rejected(&c, "flipped proof byte");
    }
    let mut bytes = std::fs::read(&f).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    // Either the file no longer parses, or what it parses to is rejected.
    if let Ok(c) = Certificate::from_bytes(&bytes, &f) {
        rejected(&c, "flipped file byte");
    }
}

/// A succinct certificate whose root is a single leaf proof of a span of
/// consecutive steps (no aggregation needed): real proof, verified with the
/// key the verifier derives, and tampering rejected.
#[test]
fn succinct_single_span_certificate() {
    use crate::certificate::verify_succinct;
    use crate::pipeline::{derive_root_key, prove_run_succinct};

    let dir = tempfile::tempdir().unwrap();
    let dims = [
        (4, Activation::None),
        (3, Activation::Relu),
        (3, Activation::None),
    ];
    let t = synthetic_run(&dims, 12, 2, 5, 11);
    let k = 14;
    let params = srs::generate_insecure(k, &dir.path().join("srs.bin")).unwrap();
    let shape = StepShape::for_run(&t, k).with_span(3);
    let keys = dir.path().join("keys");
    // The aggregation SRS is unused for a single leaf; the same file serves.
    let cert =
        prove_run_succinct(&t, Some(3), &shape, &params, &params, &keys, &mut |_| {}).unwrap();
    let root = cert.root.as_ref().unwrap();
    assert_eq!(root.kind, crate::aggregate::NodeKind::Steps(3));
    let verifier_keys = dir.path().join("verifier-keys");
    let (kind, vk) = derive_root_key(&cert, &verifier_keys, &params, &params).unwrap();
    verify_succinct(&cert, &params, &params, kind, &vk).unwrap();
    assert!(cert.describe().contains("by 3 SGD steps"));

    let rejected = |c: &Certificate, what: &str| {
        assert!(
            verify_succinct(c, &params, &params, kind, &vk).is_err(),
            "{what} accepted"
        );
    };
    let mut c = cert.clone();
    c.statement.t_last = 1;
    rejected(&c, "edited step range");
    let mut c = cert.clone();
    c.public.seed += 1;
    rejected(&c, "another schedule");
    let mut c = cert.clone();
    c.statement.c_last = c.statement.c_first;
    rejected(&c, "edited c_last");
    let mut c = cert.clone();
    let r = c.root.as_mut().unwrap();
    r.proof[100] ^= 0x10;
    rejected(&c, "flipped proof byte");
    // A batched verifier refuses a succinct certificate and vice versa.
    assert!(verify_certificate(&cert, &params, &vk).is_err());
}
