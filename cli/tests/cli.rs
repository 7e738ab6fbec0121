//! End-to-end tests of the `zkaudit` binary: train, inspect, export, and the
//! one-line errors users see.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn zkaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zkaudit"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn train_cancer(out: &Path) {
    train_cancer_model("cancer_logreg", out);
}

/// Trains `examples/models/<model>.toml` on breast_cancer (2 epochs).
fn train_cancer_model(model: &str, out: &Path) {
    train_model(model, "breast_cancer.csv", out);
}

/// Trains `examples/models/<model>.toml` on `examples/data/<data>` (2 epochs).
fn train_model(model: &str, data: &str, out: &Path) {
    let st = zkaudit()
        .args(["train", "--model"])
        .arg(root().join(match model.split_once('/') {
            Some(("torch", m)) => format!("examples/models/torch/{m}.onnx"),
            Some(("tflite", m)) => format!("examples/models/tflite/{m}.tflite"),
            _ => format!("examples/models/{model}.toml"),
        }))
        .arg("--data")
        .arg(root().join(format!("examples/data/{data}")))
        .args([
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--lr",
            "0.5",
            "--seed",
            "3",
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let stdout = String::from_utf8_lossy(&st.stdout);
    assert!(
        stdout.contains("fixed point (proven)") && stdout.contains("f64 reference"),
        "{stdout}"
    );
}

#[test]
fn help_has_examples() {
    for cmd in ["train", "export", "inspect"] {
        let o = zkaudit().args([cmd, "--help"]).output().unwrap();
        assert!(o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Examples:"),
            "{cmd} --help lacks examples"
        );
    }
}

#[test]
fn train_inspect_export() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    train_cancer(&run);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert!(summary["fixed"]["test_accuracy"].as_f64().unwrap() > 0.85);
    assert_eq!(summary["steps"].as_u64().unwrap(), 2 * (455 / 16));
    let o = zkaudit()
        .args(["inspect", "--replay", "--run"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("all 56 steps reproduce"));
    let onnx = d.path().join("m.onnx");
    let o = zkaudit()
        .args(["export", "--step", "3", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&onnx)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = zkaudit_model::spec::load_model(&onnx).unwrap();
    assert_eq!(m.arch.describe(), "30-2");
    let o = zkaudit()
        .args(["export", "--step", "999", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&onnx)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--step 999 does not exist"));
}

#[test]
fn errors_are_one_line_and_name_the_cause() {
    let d = tempfile::tempdir().unwrap();
    let o = zkaudit()
        .args(["train", "--model"])
        .arg(root().join("examples/models/digits_mlp.toml"))
        .args(["--data", "/nonexistent/digits.csv", "--out"])
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: /nonexistent/digits.csv"), "{err}");

    let bad = d.path().join("bad.csv");
    std::fs::write(&bad, "1,2,0\n1,oops,1\n").unwrap();
    let o = zkaudit()
        .args(["train", "--model"])
        .arg(root().join("examples/models/cancer_logreg.toml"))
        .arg("--data")
        .arg(&bad)
        .arg("--out")
        .arg(d.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.csv:2:2: `oops` is not a number"));

    let o = zkaudit()
        .args(["inspect", "--run"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("transcript.bin"));
}

/// The ONNX export evaluated by onnxruntime predicts what the fixed-point model
/// predicts. Needs python3 with numpy and onnxruntime: `.ci/run` installs them
/// and sets ZKAUDIT_REQUIRE_ORT=1 so that a missing runtime fails instead of skipping.
#[test]
fn onnxruntime_agrees_with_fixed_point_predictions() {
    let have = Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .output();
    if !have.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("ZKAUDIT_REQUIRE_ORT").is_err(),
            "onnxruntime is required (ZKAUDIT_REQUIRE_ORT set) but python3 cannot import it"
        );
        eprintln!("skipped: python3 with onnxruntime and numpy is not available");
        return;
    }
    // A softmax model, a tanh layer with a sigmoid output, and a CNN.
    for (model, data) in [
        ("cancer_logreg", "breast_cancer.csv"),
        ("cancer_tanh_mlp", "breast_cancer.csv"),
        ("digits_cnn", "digits.csv.gz"),
        // PyTorch's export and the TFLite converter's output, trained and re-exported
        ("torch/digits_cnn", "digits.csv.gz"),
        ("tflite/cnn_max", "digits.csv.gz"),
    ] {
        onnxruntime_agrees_on(model, data);
    }
}

/// [`onnxruntime_agrees_with_fixed_point_predictions`] for one model.
fn onnxruntime_agrees_on(model: &str, data: &str) {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    train_model(model, data, &run);
    let onnx = d.path().join("m.onnx");
    assert!(zkaudit()
        .args(["export", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&onnx)
        .status()
        .unwrap()
        .success());
    let t = zkaudit_model::transcript::Transcript::read_run(&run).unwrap();
    let engine = t.engine();
    let w = &t.weights[t.num_steps()];
    let fx = t.config.fx;
    let feats: Vec<Vec<f64>> = t
        .test
        .features
        .iter()
        .map(|r| r.iter().map(|&v| fx.dequantize(v)).collect())
        .collect();
    let ours: Vec<usize> = t
        .test
        .features
        .iter()
        .map(|x| engine.forward(w, x).unwrap().prediction())
        .collect();
    let inp = d.path().join("in.json");
    std::fs::write(
        &inp,
        serde_json::to_vec(&serde_json::json!({ "features": feats })).unwrap(),
    )
    .unwrap();
    let out = d.path().join("out.json");
    let o = Command::new("python3")
        .arg(root().join("scripts/onnx_predict.py"))
        .arg(&onnx)
        .arg(&inp)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let theirs: Vec<usize> = theirs["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let agree = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
    // Float32 evaluation vs fixed-point rounding may flip a near-tie; allow at most 1%.
    assert!(
        agree * 100 >= ours.len() * 99,
        "{model}: only {agree}/{} predictions agree",
        ours.len()
    );
}

/// A sigmoid-output logistic regression and a tanh MLP with a sigmoid output
/// (binary cross-entropy) on breast_cancer reach the f64 reference's test
/// accuracy within 2 points, and at least 90%.
#[test]
fn sigmoid_and_tanh_models_match_the_f64_reference() {
    for model in ["cancer_sigmoid", "cancer_tanh_mlp"] {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        train_cancer_model(model, &run);
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
        let fixed = s["fixed"]["test_accuracy"].as_f64().unwrap();
        let float = s["float"]["test_accuracy"].as_f64().unwrap();
        assert!(
            (fixed - float).abs() <= 0.02 && fixed >= 0.9,
            "{model}: fixed {fixed}, f64 {float}"
        );
    }
}

/// A linear regression (mean squared error) on the diabetes progression
/// target: the fixed-point run's test RMSE within 5% of the f64
/// reference's, and the table shows RMSE and R^2.
#[test]
fn diabetes_regression_matches_the_f64_reference() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let data = root().join("examples/data");
    let o = zkaudit()
        .args(["train", "--model"])
        .arg(root().join("examples/models/diabetes_regression.toml"))
        .arg("--data")
        .arg(data.join("diabetes_data_raw.csv.gz"))
        .arg("--labels")
        .arg(data.join("diabetes_target.csv.gz"))
        .args([
            "--epochs",
            "10",
            "--batch-size",
            "16",
            "--lr",
            "0.1",
            "--seed",
            "3",
            "--out",
        ])
        .arg(&run)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("test RMSE"));
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    let fixed = s["fixed"]["test_rmse"].as_f64().unwrap();
    let float = s["float"]["test_rmse"].as_f64().unwrap();
    assert!(
        (fixed - float).abs() <= 0.05 * float
            && s["fixed"]["test_accuracy"].as_f64().unwrap() > 0.3,
        "fixed RMSE {fixed}, f64 {float}"
    );
}
