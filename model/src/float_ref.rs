//! The f64 reference: the same model, initial weights, data and schedule,
//! trained with exact (floating-point) arithmetic, to measure the fidelity of
//! the fixed-point run.

use crate::arch::{Activation, Architecture, Loss, Weights};
use crate::fixed::FixedParams;
use crate::stage::{ConvSpec, Stage};

/// Real-valued weights and biases of one parameter matrix.
pub type RealLayer = (Vec<f64>, Vec<f64>);

/// A model with real-valued parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatModel {
    /// The shape.
    pub arch: Architecture,
    /// Per convolution stage: kernel `[C k k][OC]` and biases.
    pub stages: Vec<RealLayer>,
    /// Per dense layer: weights row-major `[inputs][outputs]` and biases.
    pub layers: Vec<RealLayer>,
}

/// Intermediates of one record's forward pass.
struct Forward {
    /// Every stage's input (the record first).
    stage_inputs: Vec<Vec<f64>>,
    /// Every stage's output before its activation (a pooling's output).
    stage_z: Vec<Vec<f64>>,
    /// Every dense layer's input.
    inputs: Vec<Vec<f64>>,
    /// Every dense layer's pre-activation output.
    zs: Vec<Vec<f64>>,
}

impl FloatModel {
    /// The real values of fixed-point weights.
    pub fn from_fixed(arch: &Architecture, fx: &FixedParams, w: &Weights) -> Self {
        let real = |ls: &[crate::arch::LayerWeights]| -> Vec<RealLayer> {
            ls.iter()
                .map(|l| {
                    (
                        l.w.iter().map(|&v| fx.dequantize(v)).collect(),
                        l.b.iter().map(|&v| fx.dequantize(v)).collect(),
                    )
                })
                .collect()
        };
        FloatModel {
            arch: arch.clone(),
            stages: real(&w.stages),
            layers: real(&w.layers),
        }
    }

    fn run(&self, x: &[f64]) -> Forward {
        let mut f = Forward {
            stage_inputs: Vec::new(),
            stage_z: Vec::new(),
            inputs: Vec::new(),
            zs: Vec::new(),
        };
        let mut a = x.to_vec();
        let mut conv = 0;
        for st in &self.arch.stages {
            let (z, out) = match st {
                Stage::Conv(c) => {
                    let z = conv_forward(c, &self.stages[conv], &a);
                    conv += 1;
                    let out = z.iter().map(|&v| activate(c.activation, v)).collect();
                    (z, out)
                }
                Stage::AvgPool(p) => {
                    let k2 = (p.kernel * p.kernel) as f64;
                    let out: Vec<f64> = p
                        .windows()
                        .iter()
                        .map(|w| w.iter().map(|&i| a[i]).sum::<f64>() / k2)
                        .collect();
                    (out.clone(), out)
                }
                Stage::MaxPool(p) => {
                    let out: Vec<f64> =
                        p.windows().iter().map(|w| a[w[first_max(&a, w)]]).collect();
                    (out.clone(), out)
                }
            };
            f.stage_inputs.push(std::mem::replace(&mut a, out));
            f.stage_z.push(z);
        }
        for (spec, (w, b)) in self.arch.layers.iter().zip(&self.layers) {
            let z: Vec<f64> = (0..spec.outputs)
                .map(|j| {
                    b[j] + (0..spec.inputs)
                        .map(|i| a[i] * w[i * spec.outputs + j])
                        .sum::<f64>()
                })
                .collect();
            let next = z.iter().map(|&v| activate(spec.activation, v)).collect();
            f.inputs.push(std::mem::replace(&mut a, next));
            f.zs.push(z);
        }
        f
    }

    /// Pre-activations of every dense layer for one input.
    pub fn forward(&self, x: &[f64]) -> Vec<Vec<f64>> {
        self.run(x).zs
    }

    /// The logits of the loss's softmax: the last layer's outputs, or
    /// `[0, z]` for a sigmoid output.
    fn loss_logits(&self, z: &[f64]) -> Vec<f64> {
        match self.arch.loss() {
            Loss::SoftmaxCrossEntropy | Loss::MeanSquaredError => z.to_vec(),
            Loss::SigmoidBinaryCrossEntropy => [0.0].into_iter().chain(z.iter().copied()).collect(),
        }
    }

    /// Predicted class (first maximal logit).
    pub fn predict(&self, x: &[f64]) -> usize {
        let zs = self.forward(x);
        argmax(&self.loss_logits(&zs[zs.len() - 1]))
    }

    /// A regression's prediction: the first output of the last layer.
    pub fn output(&self, x: &[f64]) -> f64 {
        let zs = self.forward(x);
        zs[zs.len() - 1][0]
    }

    /// The loss of one record: cross-entropy, or a regression's
    /// `(z - y)^2 / 2` (`y` a class index or a real target).
    pub fn loss(&self, x: &[f64], y: f64) -> f64 {
        let zs = self.forward(x);
        let z = &zs[zs.len() - 1];
        if self.arch.is_regression() {
            return (z[0] - y) * (z[0] - y) / 2.0;
        }
        let p = softmax(&self.loss_logits(z));
        -p.get(y as usize).copied().unwrap_or(0.0).max(1e-300).ln()
    }

    /// One SGD step with the mean gradient over the batch (`ys`: class
    /// indices, or a regression's real targets).
    pub fn step(&mut self, xs: &[Vec<f64>], ys: &[f64], lr: f64) {
        let nl = self.layers.len();
        let batch = xs.len() as f64;
        let zeros = |ls: &[RealLayer]| -> Vec<RealLayer> {
            ls.iter()
                .map(|(w, b)| (vec![0.0; w.len()], vec![0.0; b.len()]))
                .collect()
        };
        let mut grads = zeros(&self.layers);
        let mut stage_grads = zeros(&self.stages);
        for (x, &y) in xs.iter().zip(ys) {
            let f = self.run(x);
            let mut dz = if self.arch.is_regression() {
                vec![f.zs[nl - 1][0] - y]
            } else {
                let mut p = softmax(&self.loss_logits(&f.zs[nl - 1]));
                p[y as usize] -= 1.0;
                // A sigmoid output's gradient is its own logit's, not the constant 0's.
                let skip = p.len() - self.arch.layers[nl - 1].outputs;
                p.drain(..skip);
                p
            };
            for l in (0..nl).rev() {
                let spec = self.arch.layers[l];
                let (gw, gb) = &mut grads[l];
                for j in 0..spec.outputs {
                    gb[j] += dz[j];
                    for i in 0..spec.inputs {
                        gw[i * spec.outputs + j] += f.inputs[l][i] * dz[j];
                    }
                }
                let w = &self.layers[l].0;
                let da: Vec<f64> = (0..spec.inputs)
                    .map(|i| {
                        (0..spec.outputs)
                            .map(|j| dz[j] * w[i * spec.outputs + j])
                            .sum()
                    })
                    .collect();
                dz = if l > 0 {
                    let act = self.arch.layers[l - 1].activation;
                    let (z, a) = (&f.zs[l - 1], &f.inputs[l]);
                    (0..spec.inputs)
                        .map(|i| derivative(act, z[i], a[i]) * da[i])
                        .collect()
                } else {
                    da
                };
            }
            // dz is now the gradient of the last stage's output.
            let mut conv = self.stages.len();
            for (i, st) in self.arch.stages.iter().enumerate().rev() {
                dz = match st {
                    Stage::AvgPool(p) => {
                        let k2 = (p.kernel * p.kernel) as f64;
                        let mut dx = vec![0.0; st.sizes().0];
                        for (win, g) in p.windows().iter().zip(&dz) {
                            for &k in win {
                                dx[k] = g / k2;
                            }
                        }
                        dx
                    }
                    Stage::MaxPool(p) => {
                        let x = &f.stage_inputs[i];
                        let mut dx = vec![0.0; st.sizes().0];
                        for (win, g) in p.windows().iter().zip(&dz) {
                            dx[win[first_max(x, win)]] = *g;
                        }
                        dx
                    }
                    Stage::Conv(c) => {
                        conv -= 1;
                        let a = f.stage_inputs.get(i + 1).unwrap_or(&f.inputs[0]);
                        let dzc: Vec<f64> = (0..dz.len())
                            .map(|k| derivative(c.activation, f.stage_z[i][k], a[k]) * dz[k])
                            .collect();
                        conv_backward(
                            c,
                            &self.stages[conv].0,
                            &f.stage_inputs[i],
                            &dzc,
                            &mut stage_grads[conv],
                        )
                    }
                };
            }
        }
        for ((w, b), (gw, gb)) in self
            .stages
            .iter_mut()
            .chain(self.layers.iter_mut())
            .zip(stage_grads.iter().chain(&grads))
        {
            for (wk, g) in w.iter_mut().zip(gw).chain(b.iter_mut().zip(gb)) {
                *wk -= lr * g / batch;
            }
        }
    }
}

/// A convolution's output before its activation (NCHW).
fn conv_forward(c: &ConvSpec, (w, b): &RealLayer, x: &[f64]) -> Vec<f64> {
    let (oc, n) = (c.out_channels, c.positions());
    let mut z = vec![0.0; oc * n];
    for (pos, row) in c.im2col().iter().enumerate() {
        for o in 0..oc {
            z[o * n + pos] = b[o]
                + row
                    .iter()
                    .enumerate()
                    .filter_map(|(e, idx)| idx.map(|i| x[i] * w[e * oc + o]))
                    .sum::<f64>();
        }
    }
    z
}

/// Adds a convolution's kernel and bias gradients from `dz` (NCHW) and
/// returns the gradient of its input.
fn conv_backward(
    c: &ConvSpec,
    w: &[f64],
    x: &[f64],
    dz: &[f64],
    (gw, gb): &mut RealLayer,
) -> Vec<f64> {
    let (oc, n) = (c.out_channels, c.positions());
    let mut dx = vec![0.0; x.len()];
    for (pos, row) in c.im2col().iter().enumerate() {
        for o in 0..oc {
            let d = dz[o * n + pos];
            gb[o] += d;
            for (e, idx) in row.iter().enumerate() {
                if let Some(i) = idx {
                    gw[e * oc + o] += x[*i] * d;
                    dx[*i] += d * w[e * oc + o];
                }
            }
        }
    }
    dx
}

/// The derivative of an activation at `z` (with `a = act(z)`).
fn derivative(act: Activation, z: f64, a: f64) -> f64 {
    match act {
        Activation::Relu if z < 0.0 => 0.0,
        Activation::Relu | Activation::None => 1.0,
        Activation::Sigmoid => a * (1.0 - a),
        Activation::Tanh => 1.0 - a * a,
    }
}

/// An activation applied exactly.
pub fn activate(act: Activation, z: f64) -> f64 {
    match act {
        Activation::Relu => z.max(0.0),
        Activation::None => z,
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::Tanh => z.tanh(),
    }
}

/// Exact softmax with the maximum subtracted.
pub fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|&v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|&v| v / s).collect()
}

/// The position in `win` of the first maximal entry of `x` among `win`.
fn first_max(x: &[f64], win: &[usize]) -> usize {
    let mut best = 0;
    for (j, &i) in win.iter().enumerate() {
        if x[i] > x[win[best]] {
            best = j;
        }
    }
    best
}

/// Index of the first maximal element.
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
