//! Step circuit tests of the smooth activations and the sigmoid output:
//! honest steps of every combination accepted (the circuit's new weights
//! are the engine's, since the statement's commitment is the transcript's),
//! and a sigmoid or tanh value off by one rejected even when the prover
//! commits to the weights its corrupted computation produces.

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
