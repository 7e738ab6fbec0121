//! The f64 reference: the same model, initial weights, data and schedule,
//! trained with exact (floating-point) arithmetic, to measure the fidelity of
//! the fixed-point run.

use crate::arch::{Activation, Architecture, Loss, Weights};
use crate::fixed::FixedParams;

/// A model with real-valued parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatModel {
    /// The shape.
    pub arch: Architecture,
    /// Per layer: weights row-major `[inputs][outputs]` and biases.
    pub layers: Vec<(Vec<f64>, Vec<f64>)>,
}

impl FloatModel {
    /// The real values of fixed-point weights.
    pub fn from_fixed(arch: &Architecture, fx: &FixedParams, w: &Weights) -> Self {
        let layers = w
            .layers
            .iter()
            .map(|l| {
                (
                    l.w.iter().map(|&v| fx.dequantize(v)).collect(),
                    l.b.iter().map(|&v| fx.dequantize(v)).collect(),
                )
            })
            .collect();
        FloatModel {
            arch: arch.clone(),
            layers,
        }
    }

    /// Pre-activations of every layer for one input.
    pub fn forward(&self, x: &[f64]) -> Vec<Vec<f64>> {
        let mut zs = Vec::with_capacity(self.layers.len());
        let mut a = x.to_vec();
        for (spec, (w, b)) in self.arch.layers.iter().zip(&self.layers) {
            let z: Vec<f64> = (0..spec.outputs)
                .map(|j| {
                    b[j] + (0..spec.inputs)
                        .map(|i| a[i] * w[i * spec.outputs + j])
                        .sum::<f64>()
                })
                .collect();
            a = z.iter().map(|&v| activate(spec.activation, v)).collect();
            zs.push(z);
        }
        zs
    }

    /// The logits of the loss's softmax: the last layer's outputs, or
    /// `[0, z]` for a sigmoid output.
    fn loss_logits(&self, z: &[f64]) -> Vec<f64> {
        match self.arch.loss() {
            Loss::SoftmaxCrossEntropy => z.to_vec(),
            Loss::SigmoidBinaryCrossEntropy => [0.0].into_iter().chain(z.iter().copied()).collect(),
        }
    }

    /// Predicted class (first maximal logit).
    pub fn predict(&self, x: &[f64]) -> usize {
        let zs = self.forward(x);
        argmax(&self.loss_logits(&zs[zs.len() - 1]))
    }

    /// Cross-entropy loss of one record.
    pub fn loss(&self, x: &[f64], y: u32) -> f64 {
        let zs = self.forward(x);
        let p = softmax(&self.loss_logits(&zs[zs.len() - 1]));
        -p[y as usize].max(1e-300).ln()
    }

    /// One SGD step with the mean gradient over the batch.
    pub fn step(&mut self, xs: &[Vec<f64>], ys: &[u32], lr: f64) {
        let nl = self.layers.len();
        let batch = xs.len() as f64;
        let mut gw: Vec<Vec<f64>> = self
            .layers
            .iter()
            .map(|(w, _)| vec![0.0; w.len()])
            .collect();
        let mut gb: Vec<Vec<f64>> = self
            .layers
            .iter()
            .map(|(_, b)| vec![0.0; b.len()])
            .collect();
        for (x, &y) in xs.iter().zip(ys) {
            let zs = self.forward(x);
            let mut inputs = vec![x.clone()];
            for (l, spec) in self.arch.layers.iter().enumerate().take(nl - 1) {
                inputs.push(
                    zs[l]
                        .iter()
                        .map(|&v| activate(spec.activation, v))
                        .collect(),
                );
            }
            let mut dz = softmax(&self.loss_logits(&zs[nl - 1]));
            dz[y as usize] -= 1.0;
            // A sigmoid output's gradient is its own logit's, not the constant 0's.
            let skip = dz.len() - self.arch.layers[nl - 1].outputs;
            dz.drain(..skip);
            for l in (0..nl).rev() {
                let spec = self.arch.layers[l];
                for j in 0..spec.outputs {
                    gb[l][j] += dz[j];
                    for i in 0..spec.inputs {
                        gw[l][i * spec.outputs + j] += inputs[l][i] * dz[j];
                    }
                }
                if l > 0 {
                    let w = &self.layers[l].0;
                    dz = (0..spec.inputs)
                        .map(|i| {
                            let g: f64 = (0..spec.outputs)
                                .map(|j| dz[j] * w[i * spec.outputs + j])
                                .sum();
                            let (z, a) = (zs[l - 1][i], inputs[l][i]);
                            match self.arch.layers[l - 1].activation {
                                Activation::Relu if z <= 0.0 => 0.0,
                                Activation::Relu | Activation::None => g,
                                Activation::Sigmoid => g * a * (1.0 - a),
                                Activation::Tanh => g * (1.0 - a * a),
                            }
                        })
                        .collect();
                }
            }
        }
        for (l, (w, b)) in self.layers.iter_mut().enumerate() {
            for (wk, g) in w.iter_mut().zip(&gw[l]) {
                *wk -= lr * g / batch;
            }
            for (bk, g) in b.iter_mut().zip(&gb[l]) {
                *bk -= lr * g / batch;
            }
        }
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
