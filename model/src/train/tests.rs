//! Training-run tests on the vendored data: fidelity against the f64 reference,
//! determinism, transcript round trip and corruption handling.

use super::*;
use crate::transcript::Transcript;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn opts(model: &str, data: &str, epochs: u32, batch: usize, lr: f64) -> TrainOptions {
    TrainOptions {
        model: root().join("examples/models").join(model),
        data: root().join("examples/data").join(data),
        load: LoadOptions::default(),
        epochs,
        batch_size: batch,
        lr,
        fx: FixedParams::default(),
        seed: 42,
        test_fraction: 0.2,
        scaling: ScalingKind::MinMax,
        init: InitChoice::Auto,
    }
}

#[test]
fn digits_mlp_fixed_point_tracks_float_reference() {
    let (t, s) = train(
        &opts("digits_mlp.toml", "digits.csv.gz", 2, 8, 0.1),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(s.steps, 2 * (1438 / 8));
    assert_eq!(t.num_steps(), s.steps);
    assert!(s.fixed.test_accuracy > 0.90, "{:?}", s.fixed);
    assert!(
        (s.fixed.test_accuracy - s.float.test_accuracy).abs() <= 0.02,
        "{:?} vs {:?}",
        s.fixed,
        s.float
    );
}

#[test]
fn cancer_logreg_fixed_point_tracks_float_reference() {
    let (_, s) = train(
        &opts("cancer_logreg.toml", "breast_cancer.csv", 5, 16, 0.5),
        &mut |_| {},
    )
    .unwrap();
    assert!(s.fixed.test_accuracy > 0.90, "{:?}", s.fixed);
    assert!(
        (s.fixed.test_accuracy - s.float.test_accuracy).abs() <= 0.02,
        "{:?} vs {:?}",
        s.fixed,
        s.float
    );
}

#[test]
fn training_is_deterministic_and_replayable() {
    let o = opts("cancer_logreg.toml", "breast_cancer.csv", 1, 16, 0.5);
    let (a, _) = train(&o, &mut |_| {}).unwrap();
    let (b, _) = train(&o, &mut |_| {}).unwrap();
    assert_eq!(a.weights, b.weights);
    assert_ne!(a.weight_salts, b.weight_salts, "salts are fresh randomness");
    for t in [0, a.num_steps() / 2, a.num_steps() - 1] {
        a.replay_step(t).unwrap();
    }
    let mut forged = a.clone();
    forged.weights[3].layers[0].w[0] += 1;
    assert!(forged.replay_step(2).is_err());
}

#[test]
fn onnx_init_is_imported_and_private() {
    let (t, s) = train(
        &opts("digits_mlp.onnx", "digits.csv.gz", 1, 8, 0.1),
        &mut |_| {},
    )
    .unwrap();
    assert!(matches!(
        t.init,
        crate::transcript::InitSource::Imported { .. }
    ));
    assert_eq!(s.init, "imported");
    assert!(s.fixed.test_accuracy > 0.85, "{:?}", s.fixed);
}

#[test]
fn transcript_round_trip_and_corruption() {
    let (t, mut s) = train(
        &opts("cancer_logreg.toml", "breast_cancer.csv", 1, 32, 0.5),
        &mut |_| {},
    )
    .unwrap();
    let d = tempfile::tempdir().unwrap();
    write_run(d.path(), &t, &mut s).unwrap();
    let back = Transcript::read_run(d.path()).unwrap();
    assert_eq!(back, t);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("summary.json")).unwrap()).unwrap();
    assert!(json["fixed"]["test_accuracy"].is_number() && json["float"]["final_loss"].is_number());

    let path = d.path().join("transcript.bin");
    let good = std::fs::read(&path).unwrap();
    let mut flipped = good.clone();
    let k = flipped.len() - 10;
    flipped[k] ^= 1;
    let e = Transcript::from_bytes(&flipped, &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    let e = Transcript::from_bytes(&good[..good.len() - 5], &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
    let mut v1 = good.clone();
    v1[8] = 1;
    let e = Transcript::from_bytes(&v1, &path).unwrap_err().to_string();
    assert!(e.contains("version 1 is not supported"), "{e}");
    let e = Transcript::from_bytes(b"PK\x03\x04 a zip file", &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad magic"), "{e}");
}

#[test]
fn configuration_errors_are_clear() {
    let mut o = opts("digits_mlp.toml", "breast_cancer.csv", 1, 8, 0.1);
    let e = train(&o, &mut |_| {}).unwrap_err().to_string();
    assert!(
        e.contains("30 feature columns") && e.contains("64 inputs"),
        "{e}"
    );
    o = opts("cancer_logreg.toml", "breast_cancer.csv", 1, 8, 1e-9);
    assert!(train(&o, &mut |_| {})
        .unwrap_err()
        .to_string()
        .contains("not representable"));
    o = opts("cancer_logreg.toml", "breast_cancer.csv", 1, 100_000, 0.1);
    assert!(train(&o, &mut |_| {})
        .unwrap_err()
        .to_string()
        .contains("batch size"));
    // iris has 3 classes: labels 2 do not fit a 2-class model
    o = opts("cancer_logreg.toml", "iris.csv", 1, 8, 0.1);
    let e = train(&o, &mut |_| {}).unwrap_err().to_string();
    assert!(
        e.contains("feature columns") || e.contains("label 2"),
        "{e}"
    );
}

#[test]
fn run_parameters_are_validated_naming_the_field() {
    let arch = crate::spec::load_model(&root().join("examples/models/digits_mlp.toml"))
        .unwrap()
        .arch;
    let fx = FixedParams::default();
    let ok = RunParams {
        arch: &arch,
        fx: &fx,
        lr_fx: 6554,
        batch: 8,
        num_records: 1438,
        num_steps: 179,
    };
    check_run_params(&ok).unwrap();
    let err = |p: RunParams| check_run_params(&p).unwrap_err().to_string();
    assert!(err(RunParams {
        batch: 1 << 40,
        ..ok
    })
    .contains("batch_size"));
    assert!(err(RunParams { batch: 0, ..ok }).contains("batch_size"));
    assert!(err(RunParams { batch: 2000, ..ok }).contains("batch_size"));
    assert!(err(RunParams { lr_fx: 0, ..ok }).contains("lr_fx"));
    assert!(err(RunParams { lr_fx: -5, ..ok }).contains("lr_fx"));
    assert!(err(RunParams { num_steps: 0, ..ok }).contains("num_steps"));
    assert!(err(RunParams {
        num_steps: MAX_STEPS + 1,
        ..ok
    })
    .contains("num_steps"));
    assert!(err(RunParams {
        num_records: MAX_RECORDS + 1,
        ..ok
    })
    .contains("num_records"));
    let wide = FixedParams {
        frac_bits: 16,
        value_bits: 127,
    };
    assert!(err(RunParams { fx: &wide, ..ok }).contains("value-bits"));
    // exp's clamp needs value_bits >= frac_bits + 4.
    let narrow = FixedParams {
        frac_bits: 16,
        value_bits: 19,
    };
    assert!(err(RunParams { fx: &narrow, ..ok }).contains("value-bits"));
    let mut huge = arch.clone();
    huge.layers[0].outputs = 1 << 40;
    huge.layers[1].inputs = 1 << 40;
    assert!(err(RunParams { arch: &huge, ..ok }).contains("widths"));
}

#[test]
fn train_refuses_a_format_too_narrow_for_the_softmax() {
    let mut o = opts("digits_mlp.toml", "digits.csv.gz", 1, 8, 0.1);
    o.fx.value_bits = 19;
    let err = train(&o, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("value-bits"), "{err}");
}
