//! Step circuit tests of convolution and pooling stages: honest CNN steps
//! accepted (the circuit's updated weights are the engine's, since the
//! statement's commitment is the transcript's), a forged pooling quotient
//! and a forged convolution product rejected even with a consistent
//! commitment, and a proof whose patch matrix is arranged otherwise
//! rejected by the honest verifying key.

use zkaudit_model::transcript::Transcript;
use zkaudit_model::{Activation, Architecture, ConvSpec, DenseSpec, PoolSpec, Stage, Weights};

use super::tests::{build_mock, built_cells, mock, rejects_consistent_forgery, synthetic_run};
use super::*;
use crate::fixed_chip::Tamper;
use crate::keys::step_key;
use crate::prover_tests::assert_verdict;
use crate::srs;

/// A synthetic run of `arch` (the dense spec of [`synthetic_run`] with
/// `arch`'s shape swapped in): 10 records, `steps` steps.
pub(crate) fn cnn_run(arch: Architecture, batch: usize, steps: usize, seed: u64) -> Transcript {
    run_with(arch, batch, steps, seed, |_| {})
}

/// [`cnn_run`] with the records' labels first set by `labels` (a
/// regression's targets, say).
pub(crate) fn run_with(
    arch: Architecture,
    batch: usize,
    steps: usize,
    seed: u64,
    labels: impl FnOnce(&mut Vec<i64>),
) -> Transcript {
    let dims = [(arch.input_dim(), Activation::None), (3, Activation::None)];
    let mut t = synthetic_run(&dims, 10, batch, 0, seed);
    labels(&mut t.train.labels);
    let engine = zkaudit_model::Engine::new(arch.clone(), t.config.fx);
    t.config.arch = arch.clone();
    t.weights = vec![Weights::seeded(&arch, &t.config.fx, seed)];
    let sched = zkaudit_model::schedule::Schedule::new(seed, t.train.len(), batch).unwrap();
    for s in 0..steps {
        let idx = sched.batch(s as u64);
        let xs: Vec<_> = idx
            .iter()
            .map(|&i| t.train.features[i as usize].clone())
            .collect();
        let ys: Vec<_> = idx.iter().map(|&i| t.train.labels[i as usize]).collect();
        let next = engine
            .step(&t.weights[s], &xs, &ys, t.config.lr_fx)
            .unwrap();
        t.weights.push(next.new_weights);
    }
    t.weight_salts = (0..=steps as u128).map(|i| 1000 + i).collect();
    t
}

/// 1x4x4 -> conv 3x3/2 (padding 1, `act`) -> avgpool 2 -> dense 3.
pub(crate) fn small_cnn(act: Activation) -> Architecture {
    let conv = ConvSpec {
        in_channels: 1,
        height: 4,
        width: 4,
        out_channels: 2,
        kernel: 3,
        stride: 1,
        padding: 1,
        activation: act,
    };
    let pool = PoolSpec {
        channels: 2,
        height: 4,
        width: 4,
        kernel: 2,
    };
    Architecture::with_stages(
        vec![Stage::Conv(conv), Stage::AvgPool(pool)],
        vec![DenseSpec {
            inputs: 8,
            outputs: 3,
            activation: Activation::None,
        }],
    )
    .unwrap()
}

/// 1x4x4 -> conv 3x3/2 (padding 1, ReLU) -> maxpool 2 -> dense 3.
pub(crate) fn max_cnn() -> Architecture {
    let mut a = small_cnn(Activation::Relu);
    if let Stage::AvgPool(p) = a.stages[1] {
        a.stages[1] = Stage::MaxPool(p);
    }
    a.validate().unwrap();
    a
}

/// 2x5x5 -> conv 3x3/3 stride 2 (tanh) -> conv 2x2/2 (relu) -> dense 3:
/// a second convolution, so an input gradient through col2im.
fn two_convs() -> Architecture {
    let a = ConvSpec {
        in_channels: 2,
        height: 5,
        width: 5,
        out_channels: 3,
        kernel: 3,
        stride: 2,
        padding: 1,
        activation: Activation::Tanh,
    };
    let b = ConvSpec {
        in_channels: 3,
        height: 3,
        width: 3,
        out_channels: 2,
        kernel: 2,
        stride: 1,
        padding: 0,
        activation: Activation::Relu,
    };
    Architecture::with_stages(
        vec![Stage::Conv(a), Stage::Conv(b)],
        vec![DenseSpec {
            inputs: 8,
            outputs: 3,
            activation: Activation::None,
        }],
    )
    .unwrap()
}

#[test]
fn accepts_cnn_steps() {
    let t = cnn_run(small_cnn(Activation::Relu), 2, 2, 3);
    assert!(mock(&t, 1, |_, _| {}, None));
    let t = cnn_run(two_convs(), 2, 2, 4);
    assert!(mock(&t, 1, |_, _| {}, None));
    let t = cnn_run(max_cnn(), 2, 2, 4);
    assert!(mock(&t, 1, |_, _| {}, None));
}

/// A max pooling that selects another entry of its window (the forward
/// value and the routed gradient both follow the wrong choice) is rejected.
#[test]
fn rejects_a_wrong_max_pooling_argmax() {
    let t = cnn_run(max_cnn(), 2, 1, 10);
    for n in [0, 5] {
        rejects_consistent_forgery(&t, Tamper::MaxSelect(n));
    }
}

#[test]
fn rejects_a_forged_pooling_quotient_and_convolution_product() {
    let t = cnn_run(small_cnn(Activation::None), 2, 1, 5);
    // The first constant divisions are the forward pass's averages.
    rejects_consistent_forgery(&t, Tamper::UpdateQuotient(0));
    rejects_consistent_forgery(&t, Tamper::UpdateQuotientLow(3));
    // The first product is the convolution's.
    rejects_consistent_forgery(&t, Tamper::ProductEntry(0));
    let t = cnn_run(two_convs(), 2, 1, 6);
    // The second convolution's input gradient (products: 2 forward, dense dX, then it).
    rejects_consistent_forgery(&t, Tamper::ProductEntry(3));
}

/// The arrangement of the patches is wiring: a prover who lays the patch
/// matrix out otherwise (and computes everything else consistently) makes a
/// proof the honest verifying key rejects.
#[test]
fn a_patch_matrix_arranged_otherwise_is_rejected_by_the_honest_key() {
    let dir = tempfile::tempdir().unwrap();
    let t = cnn_run(small_cnn(Activation::Relu), 2, 1, 7);
    let tree = MerkleTree::of_dataset(&t.train.features, &t.train.labels, &t.leaf_salts, 32);
    let k = 14;
    let params = srs::generate_insecure(k, &dir.path().join("srs.bin")).unwrap();
    let shape = StepShape::for_run(&t, k);
    let key = step_key(&dir.path().join("keys"), &shape, &params).unwrap();
    let (mut st, w) = step_inputs(&t, &tree, 0).unwrap();
    for tamper in [None, Some(Tamper::Im2col(0))] {
        // The claim is what the (possibly re-arranged) computation produces.
        let (probe, _) = build_mock(&t, 0, |_, _| {}, tamper);
        st.c_after = probe.computed_c_after;
        assert_verdict(&params, &key, (&shape, &st, &w), tamper);
    }
}

/// The size estimate (which sizes `k` and refuses what does not fit)
/// counts the stages: within the band of the dense shapes' fit.
#[test]
fn size_estimate_counts_stages() {
    let digits = {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/models/digits_cnn.toml");
        zkaudit_model::spec::load_model(&p).unwrap().arch
    };
    for (arch, batch) in [
        (digits, 8),
        (two_convs(), 4),
        (small_cnn(Activation::Tanh), 2),
        (max_cnn(), 4),
    ] {
        let (shape, cells, _) = built_cells(&cnn_run(arch, batch, 1, 8));
        let ratio = shape.estimate().cells as f64 / cells as f64;
        eprintln!(
            "{}: {} cells, estimate ratio {ratio:.3}",
            shape.arch.describe(),
            cells
        );
        assert!(
            (0.8..1.25).contains(&ratio),
            "{}: estimate off by {ratio}",
            shape.arch.describe()
        );
    }
}
