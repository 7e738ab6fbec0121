//! Engine tests: hand-computed cases, overflow reporting, and property tests
//! of every operation against the f64 reference with stated error bounds.

use super::*;
use crate::arch::DenseSpec;
use crate::float_ref::{softmax as float_softmax, FloatModel};
use proptest::prelude::*;

fn tiny(fx: FixedParams) -> Engine {
    let arch = Architecture::new(vec![
        DenseSpec {
            inputs: 2,
            outputs: 2,
            activation: Activation::Relu,
        },
        DenseSpec {
            inputs: 2,
            outputs: 2,
            activation: Activation::None,
        },
    ])
    .unwrap();
    Engine::new(arch, fx)
}

#[test]
fn dense_rounds_half_up() {
    let fx = FixedParams::new(4, 16).unwrap(); // one = 16
    let e = tiny(fx);
    let lw = LayerWeights {
        w: vec![8, 0, 0, 16],
        b: vec![0, -1],
    }; // w = [[0.5, 0],[0, 1]]
       // x = [3/16, -3/16]: z0 = 1.5/16 -> rounds half up to 2; z1 = (-3*16 - 16)/16 = -4
    let z = e.dense(0, &lw, &[3, -3]).unwrap();
    assert_eq!(z, vec![2, -4]);
}

#[test]
fn overflow_names_layer_and_tensor() {
    let fx = FixedParams::new(4, 8).unwrap(); // values in [-128, 128)
    let e = tiny(fx);
    let lw = LayerWeights {
        w: vec![127, 0, 127, 0],
        b: vec![0, 0],
    };
    let err = e.dense(0, &lw, &[100, 100]).unwrap_err().to_string();
    assert!(err.contains("layer 0 (dense 2->2)"), "{err}");
    assert!(err.contains("tensor `z`"), "{err}");
}

#[test]
fn update_overflow_names_weight_tensor() {
    let fx = FixedParams::new(4, 8).unwrap();
    let e = tiny(fx);
    let w = Weights {
        stages: vec![],
        layers: vec![
            LayerWeights {
                w: vec![16, 0, 0, 16],
                b: vec![0, 0],
            },
            LayerWeights {
                w: vec![127, 0, 0, 16],
                b: vec![0, 0],
            },
        ],
    };
    // A huge learning rate pushes a weight out of range.
    let err = e
        .step(&w, &[vec![16, 16]], &[1], 100)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("(dense 2->2)") && (err.contains("`weight`") || err.contains("`bias`")),
        "{err}"
    );
}

#[test]
fn softmax_of_equal_logits_is_uniform_and_sums_near_one() {
    let e = tiny(FixedParams::default());
    let t = e.softmax(&[0, 0, 0, 0]);
    assert_eq!(t.max_index, 0);
    assert_eq!(t.sum, 4 * 65536);
    assert!(t.p.iter().all(|&p| p == 16384));
}

#[test]
fn softmax_saturates_far_logits() {
    let e = tiny(FixedParams::default());
    let t = e.softmax(&[0, -(40 << 16), 5]);
    assert_eq!(t.max_index, 2);
    assert_eq!(t.e[1], 0);
    assert_eq!(t.p[1], 0);
    assert_eq!(t.e[2], 65536);
}

#[test]
fn sigmoid_and_tanh_hand_values() {
    let e = tiny(FixedParams::default());
    assert_eq!(e.sigmoid(0), 32768);
    assert_eq!(e.tanh(0, "t", 0).unwrap(), 0);
    assert_eq!(e.sigmoid(40 << 16), 65536);
    assert_eq!(e.sigmoid(-(40 << 16)), 0);
    assert_eq!(e.tanh(40 << 16, "t", 0).unwrap(), 65536);
    // -z of the smallest value is out of range: named, not wrapped.
    let min = FixedParams::default().min_value();
    let err = e
        .tanh(min, "layer 0 (dense 2->2)", 3)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tanh_input") && err.contains("layer 0"),
        "{err}"
    );
}

#[test]
fn sigmoid_output_gradient_is_p_minus_y() {
    // One sigmoid unit, zero weights: p = 1/2, so dz = 1/2 - y.
    let arch = Architecture::new(vec![DenseSpec {
        inputs: 2,
        outputs: 1,
        activation: Activation::Sigmoid,
    }])
    .unwrap();
    let e = Engine::new(arch.clone(), FixedParams::default());
    let w = Weights::zeros(&arch);
    let t = e
        .step(&w, &[vec![65536, 0], vec![0, 65536]], &[1, 0], 65536)
        .unwrap();
    assert_eq!(t.dz[0], vec![vec![-32768], vec![32768]]);
    assert_eq!(t.samples[0].softmax.p, vec![32768, 32768]);
    // w0 -= lr * mean(x0 * dz) = -(1 * -1/2) / 2: +1/4; w1 -= (1 * 1/2) / 2: -1/4.
    assert_eq!(t.new_weights.layers[0].w, vec![16384, -16384]);
    assert_eq!(t.new_weights.layers[0].b, vec![0]);
}

#[test]
fn regression_gradient_is_z_minus_y() {
    // One linear output, zero weights: z = 0, so dz = -y; with x = [1, 0],
    // y = 2 and lr = 1/2: w0 += 1/2 * 2 = 1, b += 1.
    let arch = Architecture::new(vec![DenseSpec {
        inputs: 2,
        outputs: 1,
        activation: Activation::None,
    }])
    .unwrap();
    assert!(arch.is_regression());
    let e = Engine::new(arch.clone(), FixedParams::default());
    let w = Weights::zeros(&arch);
    let t = e.step(&w, &[vec![65536, 0]], &[2 * 65536], 32768).unwrap();
    assert_eq!(t.dz[0], vec![vec![-2 * 65536]]);
    assert_eq!(t.new_weights.layers[0].w, vec![65536, 0]);
    assert_eq!(t.new_weights.layers[0].b, vec![65536]);
    assert!((e.loss(&t.samples[0], 2 * 65536) - 2.0).abs() < 1e-12);
    // A target whose difference leaves the value range is an overflow, named.
    let big = FixedParams::default().max_value();
    let err = e
        .step(&w, &[vec![0, 0]], &[-big - 1], 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("loss_grad"), "{err}");
}

#[test]
fn gradient_step_hand_example() {
    // Logistic regression, one record, uniform start: p = [1/2, 1/2], y = 1,
    // dz = [1/2, -1/2]; with x = [1, 0] and lr = 1: w[0][0] -= 1/2, w[0][1] += 1/2.
    let fx = FixedParams::default();
    let arch = Architecture::new(vec![DenseSpec {
        inputs: 2,
        outputs: 2,
        activation: Activation::None,
    }])
    .unwrap();
    let e = Engine::new(arch.clone(), fx);
    let w = Weights::zeros(&arch);
    let t = e.step(&w, &[vec![65536, 0]], &[1], 65536).unwrap();
    assert_eq!(t.dz[0][0], vec![32768, -32768]);
    assert_eq!(t.new_weights.layers[0].w, vec![-32768, 32768, 0, 0]);
    assert_eq!(t.new_weights.layers[0].b, vec![-32768, 32768]);
}

fn arb_model() -> impl Strategy<Value = (Vec<usize>, u64)> {
    (prop::collection::vec(1usize..6, 1..3), any::<u64>())
}

/// A random model with `hidden` widths, real weights in [-1, 1], inputs in [0, 1].
fn random_setup(
    hidden: &[usize],
    seed: u64,
    batch: usize,
    fx: FixedParams,
) -> (Engine, Weights, Vec<Vec<i64>>, Vec<i64>) {
    random_setup_with(hidden, Activation::Relu, Output::Softmax, seed, batch, fx)
}

/// The loss of a random test model.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Output {
    /// 3 softmax classes.
    Softmax,
    /// One sigmoid output (binary cross-entropy).
    Sigmoid,
    /// One linear output (mean squared error), targets in [-2, 2].
    Regression,
}

/// [`random_setup`] with a chosen hidden activation and output.
fn random_setup_with(
    hidden: &[usize],
    act: Activation,
    out: Output,
    seed: u64,
    batch: usize,
    fx: FixedParams,
) -> (Engine, Weights, Vec<Vec<i64>>, Vec<i64>) {
    let mut rng = crate::seed::SeedRng::new(b"test", seed, 0);
    let mut dims = vec![3usize];
    dims.extend_from_slice(hidden);
    dims.push(if out == Output::Softmax { 3 } else { 1 });
    let layers = dims
        .windows(2)
        .enumerate()
        .map(|(i, d)| DenseSpec {
            inputs: d[0],
            outputs: d[1],
            activation: match (i + 2 == dims.len(), out) {
                (true, Output::Sigmoid) => Activation::Sigmoid,
                (true, _) => Activation::None,
                (false, _) => act,
            },
        })
        .collect();
    let arch = Architecture::new(layers).unwrap();
    let one = fx.one() as u64;
    let mut r = |lo: i64, span: u64| lo + rng.below(span) as i64;
    let w = Weights {
        stages: vec![],
        layers: arch
            .layers
            .iter()
            .map(|l| LayerWeights {
                w: (0..l.inputs * l.outputs)
                    .map(|_| r(-(one as i64), 2 * one + 1))
                    .collect(),
                b: (0..l.outputs)
                    .map(|_| r(-(one as i64) / 4, one / 2 + 1))
                    .collect(),
            })
            .collect(),
    };
    let xs = (0..batch)
        .map(|_| (0..3).map(|_| r(0, one + 1)).collect())
        .collect();
    let classes = arch.num_classes() as u64;
    let ys = (0..batch)
        .map(|_| match out {
            Output::Regression => r(-2 * one as i64, 4 * one + 1),
            _ => r(0, classes),
        })
        .collect();
    (Engine::new(arch, fx), w, xs, ys)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Dense layer: exactly one rounding, so the error is at most half a unit.
    #[test]
    fn dense_error_at_most_half_unit((hidden, seed) in arb_model()) {
        let fx = FixedParams::default();
        let (e, w, xs, _) = random_setup(&hidden, seed, 1, fx);
        let fm = FloatModel::from_fixed(&e.arch, &fx, &w);
        let x: Vec<f64> = xs[0].iter().map(|&v| fx.dequantize(v)).collect();
        let z = e.dense(0, &w.layers[0], &xs[0]).unwrap();
        let zf = &fm.forward(&x)[0];
        for (a, b) in z.iter().zip(zf) {
            prop_assert!((fx.dequantize(*a) - b).abs() <= 0.5 / fx.one() as f64 + 1e-12);
        }
    }

    /// Softmax: `|p - exact| <= 2n + 3` units for n classes (exp error 2 units per entry).
    #[test]
    fn softmax_error_bound(z in prop::collection::vec(-(20i64 << 16)..(20i64 << 16), 2..12)) {
        let fx = FixedParams::default();
        let e = tiny(fx);
        let t = e.softmax(&z);
        let exact = float_softmax(&z.iter().map(|&v| fx.dequantize(v)).collect::<Vec<_>>());
        let bound = (2 * z.len() + 3) as f64 / fx.one() as f64;
        for (p, q) in t.p.iter().zip(&exact) {
            prop_assert!((fx.dequantize(*p) - q).abs() <= bound, "p={} exact={}", p, q);
        }
        prop_assert!(t.sum >= fx.one());
        prop_assert!(t.p[t.max_index] > 0);
    }

    /// Sigmoid: a 2-entry softmax, so within `2 * 2 + 3 = 7` units of the
    /// exact value; tanh is `2 p - 1` of one, so within 14 units.
    #[test]
    fn sigmoid_and_tanh_error_bounds(z in -(40i64 << 16)..(40i64 << 16)) {
        let fx = FixedParams::default();
        let e = tiny(fx);
        let unit = 1.0 / fx.one() as f64;
        let x = fx.dequantize(z);
        let s = fx.dequantize(e.sigmoid(z));
        prop_assert!((s - 1.0 / (1.0 + (-x).exp())).abs() <= 7.0 * unit, "sigmoid({}) = {}", x, s);
        let t = fx.dequantize(e.tanh(z, "t", 0).unwrap());
        prop_assert!((t - x.tanh()).abs() <= 14.0 * unit, "tanh({}) = {}", x, t);
        prop_assert!((0.0..=1.0).contains(&s) && (-1.0..=1.0).contains(&t));
    }

    /// A whole step against the f64 reference from the same start: with inputs
    /// in [0,1], weights in [-1,1], widths <= 5 and lr <= 0.5, every updated
    /// parameter agrees within 1e-3 (the bound is loose: measured errors are ~1e-5).
    #[test]
    fn step_matches_float_reference(
        (hidden, seed) in arb_model(),
        batch in 1usize..5,
        lr_bits in 1u32..16,
        act in prop::sample::select(vec![Activation::Relu, Activation::None, Activation::Sigmoid, Activation::Tanh]),
        out in prop::sample::select(vec![Output::Softmax, Output::Sigmoid, Output::Regression]),
    ) {
        let fx = FixedParams::default();
        let (e, w, xs, ys) = random_setup_with(&hidden, act, out, seed, batch, fx);
        let lr_fx = 1i64 << lr_bits; // lr in [2^-15, 0.5]
        let t = e.step(&w, &xs, &ys, lr_fx).unwrap();
        let mut fm = FloatModel::from_fixed(&e.arch, &fx, &w);
        let fxs: Vec<Vec<f64>> = xs.iter().map(|x| x.iter().map(|&v| fx.dequantize(v)).collect()).collect();
        // A regression's labels are fixed-point targets; a classifier's class indices.
        let fys: Vec<f64> = ys
            .iter()
            .map(|&y| if out == Output::Regression { fx.dequantize(y) } else { y as f64 })
            .collect();
        fm.step(&fxs, &fys, fx.dequantize(lr_fx));
        for (l, (fl, (wf, bf))) in t.new_weights.layers.iter().zip(&fm.layers).enumerate() {
            for (a, b) in fl.w.iter().zip(wf).chain(fl.b.iter().zip(bf)) {
                prop_assert!((fx.dequantize(*a) - b).abs() <= 1e-3, "layer {} fixed {} float {}", l, fx.dequantize(*a), b);
            }
        }
    }

    /// The cross-entropy gradient rows sum to `sum(p) - 2^f`, within the
    /// rounding of the normalisation (at most n/2 units).
    #[test]
    fn ce_gradient_rows_sum_near_zero((hidden, seed) in arb_model()) {
        let fx = FixedParams::default();
        let (e, w, xs, ys) = random_setup(&hidden, seed, 2, fx);
        let t = e.step(&w, &xs, &ys, 1 << 12).unwrap();
        for row in &t.dz[e.arch.layers.len() - 1] {
            let s: i64 = row.iter().sum();
            prop_assert!(s.abs() <= row.len() as i64);
        }
    }
}

/// A small CNN: `stages` on a `c x h x w` input, then a dense layer to 3
/// classes; seeded weights scaled up, inputs in [0, 1].
fn random_cnn(
    (c, h, w): (usize, usize, usize),
    convs: &[(usize, usize, usize, usize, Activation)],
    (pool, max): (bool, bool),
    seed: u64,
    batch: usize,
) -> (Engine, Weights, Vec<Vec<i64>>, Vec<i64>) {
    use crate::stage::{ConvSpec, PoolSpec, Stage};
    let fx = FixedParams::default();
    let mut stages = Vec::new();
    let mut shape = (c, h, w);
    for &(oc, k, s, p, act) in convs {
        let st = Stage::Conv(ConvSpec {
            in_channels: shape.0,
            height: shape.1,
            width: shape.2,
            out_channels: oc,
            kernel: k,
            stride: s,
            padding: p,
            activation: act,
        });
        shape = st.output_shape();
        stages.push(st);
        if pool && stages.len() == 1 && shape.1 >= 2 && shape.2 >= 2 {
            let p = PoolSpec {
                channels: shape.0,
                height: shape.1,
                width: shape.2,
                kernel: 2,
            };
            let st = if max {
                Stage::MaxPool(p)
            } else {
                Stage::AvgPool(p)
            };
            shape = st.output_shape();
            stages.push(st);
        }
    }
    let arch = Architecture::with_stages(
        stages,
        vec![DenseSpec {
            inputs: shape.0 * shape.1 * shape.2,
            outputs: 3,
            activation: Activation::None,
        }],
    )
    .unwrap();
    let mut wts = Weights::seeded(&arch, &fx, seed);
    for l in wts.stages.iter_mut() {
        l.b.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i as i64 - 1) * 3000);
    }
    let mut rng = crate::seed::SeedRng::new(b"cnn-test", seed, 0);
    let one = fx.one() as u64;
    let xs = (0..batch)
        .map(|_| {
            (0..arch.input_dim())
                .map(|_| rng.below(one + 1) as i64)
                .collect()
        })
        .collect();
    let ys = (0..batch).map(|_| rng.below(3) as i64).collect();
    (Engine::new(arch, fx), wts, xs, ys)
}

#[test]
fn im2col_pads_with_none_and_strides() {
    let c = crate::stage::ConvSpec {
        in_channels: 1,
        height: 3,
        width: 3,
        out_channels: 1,
        kernel: 2,
        stride: 2,
        padding: 1,
        activation: Activation::None,
    };
    assert_eq!(c.out_hw(), (2, 2));
    let cols = c.im2col();
    // Position (0, 0) covers rows/cols -1..=0: only x[0][0] is inside.
    assert_eq!(cols[0], vec![None, None, None, Some(0)]);
    // Position (1, 1) covers rows/cols 1..=2.
    assert_eq!(cols[3], vec![Some(4), Some(5), Some(7), Some(8)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A CNN step (one or two convolutions, pooling, any stride and
    /// padding) against the f64 reference: every parameter within 1e-3.
    #[test]
    fn cnn_step_matches_float_reference(
        seed in any::<u64>(),
        batch in 1usize..4,
        two in any::<bool>(),
        pool in any::<bool>(),
        max in any::<bool>(),
        stride in 1usize..3,
        act in prop::sample::select(vec![Activation::Relu, Activation::None, Activation::Tanh]),
    ) {
        let mut convs = vec![(3, 3, stride, 1, act)];
        // (a stride-2 convolution and a pooling leave 1x1: nothing to convolve)
        if two && !(pool && stride == 2) {
            convs.push((2, 2, 1, 0, Activation::Relu));
        }
        let (e, w, xs, ys) = random_cnn((2, 6, 5), &convs, (pool, max), seed, batch);
        let fx = e.fx;
        let lr_fx = 1 << 14;
        let t = e.step(&w, &xs, &ys, lr_fx).unwrap();
        // A ReLU input within rounding of 0 may take the other side in f64:
        // a legitimate difference of whole gradient terms, not measured here.
        prop_assume!(t.samples.iter().all(|s| s.stage_z.iter().flatten().all(|z| z.abs() > 64)));
        // Likewise a max pooling window whose two largest entries are that close.
        for (i, st) in e.arch.stages.iter().enumerate() {
            if let crate::stage::Stage::MaxPool(p) = st {
                for s in &t.samples {
                    for win in p.windows() {
                        let mut v: Vec<i64> = win.iter().map(|&k| s.stage_inputs[i][k]).collect();
                        v.sort_unstable();
                        prop_assume!(v[v.len() - 1] - v[v.len() - 2] > 64);
                    }
                }
            }
        }
        let mut fm = FloatModel::from_fixed(&e.arch, &fx, &w);
        let fxs: Vec<Vec<f64>> = xs.iter().map(|x| x.iter().map(|&v| fx.dequantize(v)).collect()).collect();
        fm.step(&fxs, &ys.iter().map(|&y| y as f64).collect::<Vec<_>>(), fx.dequantize(lr_fx));
        let fixed = t.new_weights.all().flat_map(|l| l.w.iter().chain(&l.b));
        let float = fm.stages.iter().chain(&fm.layers).flat_map(|(w, b)| w.iter().chain(b));
        let mut n = 0;
        for (a, b) in fixed.zip(float) {
            prop_assert!((fx.dequantize(*a) - b).abs() <= 1e-3, "fixed {} float {}", fx.dequantize(*a), b);
            n += 1;
        }
        prop_assert_eq!(n, e.arch.num_params());
        // The gradients reach the first convolution (unless ReLUs stop them all).
        if act != Activation::Relu && !two {
            prop_assert!(t.new_weights.stages[0] != w.stages[0]);
        }
    }
}
