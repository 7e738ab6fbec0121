//! TFLite import tests on the converter-made fixtures of
//! `scripts/make_tflite_fixtures.py`: each model equals the same Keras
//! model's ONNX import (same architecture, same weights, so the same
//! predictions), an unsupported operator is named with its index, and a
//! damaged file is an error, never a panic.

use std::path::{Path, PathBuf};

use crate::arch::Weights;
use crate::engine::Engine;
use crate::fixed::FixedParams;
use crate::spec::load_model;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/models/tflite")
        .join(name)
}

#[test]
fn tflite_imports_equal_the_same_models_onnx_imports() {
    let fx = FixedParams::default();
    for name in ["cnn_avg", "cnn_max", "mlp_sigmoid"] {
        let t = load_model(&fixture(&format!("{name}.tflite"))).unwrap();
        let o = load_model(&fixture(&format!("{name}.onnx"))).unwrap();
        assert_eq!(t.arch, o.arch, "{name}");
        let (tw, ow) = (t.initial.unwrap(), o.initial.unwrap());
        for ((a, b), (c, d)) in tw.iter().zip(&ow) {
            let close = |x: &[f64], y: &[f64]| {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-6)
            };
            assert!(close(a, c) && close(b, d), "{name}: weights differ");
        }
        let (wt, wo) = (
            Weights::quantize(&t.arch, &fx, &tw).unwrap(),
            Weights::quantize(&o.arch, &fx, &ow).unwrap(),
        );
        assert_eq!(wt, wo, "{name}: quantized weights differ");
        // The same predictions on a few inputs.
        let e = Engine::new(t.arch.clone(), fx);
        let mut rng = crate::seed::SeedRng::new(b"tflite-test", 3, 0);
        for _ in 0..5 {
            let x: Vec<i64> = (0..t.arch.input_dim())
                .map(|_| rng.below(1 << 16) as i64)
                .collect();
            assert_eq!(e.forward(&wt, &x).unwrap(), e.forward(&wo, &x).unwrap());
        }
    }
    let t = load_model(&fixture("cnn_avg.tflite")).unwrap();
    assert_eq!(t.arch.describe(), "1x8x8-conv3x3/4p1(relu)-avgpool2-64-10");
}

#[test]
fn unsupported_operator_is_named_with_its_index() {
    let e = load_model(&fixture("unsupported.tflite"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("LEAKY_RELU") && e.contains("index 1") && e.contains("unsupported.tflite"),
        "{e}"
    );
}

/// Truncations and flipped bytes of a real model give errors or (where the
/// damage misses everything read) a model, never a panic.
#[test]
fn damaged_files_are_errors_not_panics() {
    let good = std::fs::read(fixture("cnn_avg.tflite")).unwrap();
    for n in [0, 3, 7, 8, 40, 200, good.len() / 2, good.len() - 1] {
        assert!(
            super::read(&good[..n]).is_err(),
            "truncated to {n} bytes accepted"
        );
    }
    let mut rng = crate::seed::SeedRng::new(b"tflite-fuzz", 1, 0);
    for _ in 0..2000 {
        let mut bad = good.clone();
        for _ in 0..3 {
            let i = rng.below(bad.len() as u64) as usize;
            bad[i] = rng.below(256) as u8;
        }
        let _ = super::read(&bad);
    }
    let e = super::read(b"not a flatbuffer at all")
        .err()
        .unwrap_or_default();
    assert!(e.contains("TFL3") || e.contains("outside"), "{e}");
}
