//! Step circuit tests of the smooth activations, the sigmoid output and the
//! regression loss: honest steps of every combination accepted (the
//! circuit's new weights are the engine's, since the statement's commitment
//! is the transcript's), a sigmoid or tanh value off by one rejected even
//! when the prover commits to the weights its corrupted computation
//! produces, and a regression step on another target rejected.

use super::tests::{mock, rejects_consistent_forgery, synthetic_run};
use crate::fixed_chip::Tamper;
use zkaudit_model::Activation::{None as Linear, Sigmoid, Tanh};

#[test]
fn accepts_sigmoid_and_tanh_layers_and_a_sigmoid_output() {
    let binary = synthetic_run(
        &[(4, Linear), (3, Sigmoid), (3, Tanh), (1, Sigmoid)],
        10,
        2,
        2,
        5,
    );
    assert!(mock(&binary, 1, |_, _| {}, None));
    let classes = synthetic_run(&[(4, Linear), (3, Tanh), (3, Linear)], 10, 3, 2, 6);
    assert!(mock(&classes, 1, |_, _| {}, None));
    let logistic = synthetic_run(&[(5, Linear), (1, Sigmoid)], 9, 4, 2, 7);
    assert!(mock(&logistic, 1, |_, _| {}, None));
}

#[test]
fn rejects_a_wrong_sigmoid_value() {
    let t = synthetic_run(&[(4, Linear), (3, Sigmoid), (2, Linear)], 10, 2, 1, 8);
    for n in [0, 3] {
        rejects_consistent_forgery(&t, Tamper::ActivationValue(n));
    }
}

#[test]
fn rejects_a_wrong_tanh_value() {
    let t = synthetic_run(&[(4, Linear), (3, Tanh), (1, Sigmoid)], 10, 2, 1, 9);
    for n in [0, 4] {
        rejects_consistent_forgery(&t, Tamper::ActivationValue(n));
    }
}

/// A smooth unit costs its 2-way softmax and its derivative's rounding, far
/// more than a ReLU: the size estimate counts them (measured 317 and 325
/// cells per unit and record more than ReLU at 30-8-2, batch 16).
#[test]
fn size_estimate_counts_smooth_units() {
    use zkaudit_model::Activation::Relu;
    for act in [Relu, Sigmoid, Tanh] {
        let (shape, cells, _) =
            super::tests::built_step(&[(30, Linear), (8, act), (1, Sigmoid)], 16);
        let ratio = shape.estimate().cells as f64 / cells as f64;
        assert!(
            (0.8..1.25).contains(&ratio),
            "{act:?}: estimate off by {ratio}"
        );
    }
}

/// A regression (one linear output, mean squared error) with real targets:
/// its step is accepted; the same step claimed on a changed target (its
/// record and path unchanged, the update recomputed) is not.
#[test]
fn regression_steps_are_checked_against_the_committed_targets() {
    use zkaudit_model::{Architecture, DenseSpec};
    let arch = Architecture::new(vec![
        DenseSpec {
            inputs: 4,
            outputs: 3,
            activation: Linear,
        },
        DenseSpec {
            inputs: 3,
            outputs: 1,
            activation: Linear,
        },
    ])
    .unwrap();
    let targets = |ys: &mut Vec<i64>| {
        for (i, y) in ys.iter_mut().enumerate() {
            *y = (i as i64 - 4) * 30_000;
        }
    };
    let t = super::stage_tests::run_with(arch, 2, 2, 12, targets);
    assert!(t.config.arch.is_regression());
    assert!(mock(&t, 1, |_, _| {}, None));
    // Another target for the first record: the leaf no longer matches the root.
    assert!(!mock(&t, 1, |_, w| w.labels[0] += 1, None));
}
