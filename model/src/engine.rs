//! The fixed-point SGD step: forward pass, stable softmax, cross-entropy
//! gradient, backward pass and update, with every intermediate kept.
//!
//! This is the single source of truth for the arithmetic the step circuit
//! constrains: the circuit's witness is this module's [`StepTrace`].
//!
//! # One step on a batch of `B` records
//! For every sample and layer `l` (input `a_l`, `a_0 = x`):
//! - `z_l[j] = div_round(sum_i a_l[i] * w_l[i][j] + b_l[j] * 2^f, 2^f)`, range-checked;
//! - hidden layers: `a_{l+1} = act(z_l)`: ReLU with mask `m_l[j] = (z_l[j] >= 0)`,
//!   identity, `sigmoid(z) = softmax([0, z])_1` or `tanh(z) = 2 softmax([-z, z])_1 - 2^f`
//!   (the softmax below, so the exp table's error bound carries over);
//! - logits `z = z_{L-1}` (`[0, z]` for a sigmoid output, [`Loss`]): `m = max_j z_j`
//!   (first maximal index), `d_j = m - z_j >= 0`, `e_j = exp_fixed(d_j)` ([`ExpTable`]),
//!   `S = sum_j e_j >= 2^f`, `p_j = div_round(e_j * 2^f, S)`;
//! - `dz_{L-1}[j] = p_j - 2^f * [j == y]` (per-sample gradient, scale `2^f`; for a sigmoid
//!   output only the entry of `z`, `p_1 - 2^f * y`, the binary cross-entropy gradient;
//!   for a regression `z - y` with the target `y` at scale `2^f`, range-checked, the
//!   gradient of `(z - y)^2 / 2`, and the softmax is of `[z]` alone, unused).
//! - for `l >= 1`: `da_l[i] = div_round(sum_j dz_l[j] * w_l[i][j], 2^f)` (range-checked, using
//!   the weights *before* the update) and `dz_{l-1}[i]` is `m_{l-1}[i] * da_l[i]` (ReLU),
//!   `da_l[i]` (identity), `div_round(da_l[i] * a (2^f - a), 2^(2f))` (sigmoid) or
//!   `div_round(da_l[i] * (2^(2f) - a^2), 2^(2f))` (tanh) with `a = a_l[i]`, range-checked.
//!
//! Gradients are summed over the batch without rounding:
//! `G_l[i][j] = sum_s a_l[s][i] * dz_l[s][j]` (scale `2^(2f)`) and
//! `g_l[j] = sum_s dz_l[s][j]` (scale `2^f`). The batch mean and the learning
//! rate `lr = lr_fx / 2^f` are folded into one rounding per parameter:
//!
//! ```text
//! w'[i][j] = w[i][j] - div_round(lr_fx * G[i][j], B * 2^(2f))
//! b'[j]    = b[j]    - div_round(lr_fx * g[j],    B * 2^f)
//! ```
//!
//! which is `w - round(lr * mean_gradient)` in units of `2^-f`.

use serde::{Deserialize, Serialize};

use crate::arch::{Activation, Architecture, LayerWeights, Loss, Weights};
use crate::error::{ModelError, Result};
use crate::exp::ExpTable;
use crate::fixed::{div_round, FixedParams};

/// Intermediates of the stable softmax of one sample's logits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftmaxTrace {
    /// First index of the maximal logit.
    pub max_index: usize,
    /// `d_j = max - z_j`, non-negative.
    pub d: Vec<i64>,
    /// `e_j = exp_fixed(d_j)`.
    pub e: Vec<i64>,
    /// `S = sum_j e_j`.
    pub sum: i64,
    /// `p_j = div_round(e_j * 2^f, S)`.
    pub p: Vec<i64>,
}

/// Forward intermediates of one sample.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleForward {
    /// `stage_inputs[i]` is the input of stage `i` (`stage_inputs[0]` is the
    /// record; empty without stages).
    #[serde(default)]
    pub stage_inputs: Vec<Vec<i64>>,
    /// `stage_z[i]`: a convolution's pre-activation output (NCHW; empty for a pooling).
    #[serde(default)]
    pub stage_z: Vec<Vec<i64>>,
    /// `inputs[l]` is the input of layer `l` (`inputs[0]` is the record, or
    /// the last stage's output).
    pub inputs: Vec<Vec<i64>>,
    /// `z[l]` is the pre-activation output of layer `l`.
    pub z: Vec<Vec<i64>>,
    /// Softmax of the logits `z[L-1]`.
    pub softmax: SoftmaxTrace,
}

impl SampleForward {
    /// Index of the largest logit (first one on ties): the prediction.
    pub fn prediction(&self) -> usize {
        self.softmax.max_index
    }

    /// The first output of the last layer: a regression's prediction.
    pub fn output(&self) -> i64 {
        self.z.last().and_then(|z| z.first()).copied().unwrap_or(0)
    }
}

/// Everything one SGD step computes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTrace {
    /// Forward intermediates per sample.
    pub samples: Vec<SampleForward>,
    /// `dz[l][s]`: gradient of the loss with respect to `z_l` of sample `s` (scale `2^f`).
    pub dz: Vec<Vec<Vec<i64>>>,
    /// `da[l][s]`: rescaled gradient with respect to the input of layer `l` (empty for `l = 0`).
    pub da: Vec<Vec<Vec<i64>>>,
    /// `G_l`, unrounded weight-gradient sums (scale `2^(2f)`), row-major.
    pub weight_acc: Vec<Vec<i128>>,
    /// `g_l`, unrounded bias-gradient sums (scale `2^f`).
    pub bias_acc: Vec<Vec<i128>>,
    /// The weights after the update.
    pub new_weights: Weights,
}

/// The fixed-point engine for one architecture and format.
#[derive(Clone, Debug)]
pub struct Engine {
    /// The model shape.
    pub arch: Architecture,
    /// The fixed-point format.
    pub fx: FixedParams,
    /// The exponential tables for `fx`.
    pub exp: ExpTable,
}

impl Engine {
    /// An engine for an architecture and format.
    pub fn new(arch: Architecture, fx: FixedParams) -> Self {
        let exp = ExpTable::new(&fx);
        Engine { arch, fx, exp }
    }

    /// `z = div_round(x . w + b * 2^f, 2^f)` for one sample, range-checked.
    pub fn dense(&self, layer: usize, lw: &LayerWeights, x: &[i64]) -> Result<Vec<i64>> {
        let spec = self.arch.layers[layer];
        if x.len() != spec.inputs {
            return Err(ModelError::Shape(format!(
                "{}: input has {} values, expected {}",
                self.arch.layer_name(layer),
                x.len(),
                spec.inputs
            )));
        }
        let f = self.fx.frac_bits;
        let mut out = Vec::with_capacity(spec.outputs);
        for j in 0..spec.outputs {
            let mut acc = (lw.b[j] as i128) << f;
            for (i, &xi) in x.iter().enumerate() {
                acc += xi as i128 * lw.w[i * spec.outputs + j] as i128;
            }
            let z = div_round(acc, 1i128 << f).0;
            out.push(self.fx.check(z, &self.arch.layer_name(layer), "z", j)?);
        }
        Ok(out)
    }

    /// Stable softmax of one row of logits.
    pub fn softmax(&self, z: &[i64]) -> SoftmaxTrace {
        let mut max_index = 0;
        for (j, &v) in z.iter().enumerate() {
            if v > z[max_index] {
                max_index = j;
            }
        }
        let m = z[max_index];
        let d: Vec<i64> = z.iter().map(|&v| m - v).collect();
        let e: Vec<i64> = d.iter().map(|&dj| self.exp.exp_neg(dj)).collect();
        let sum: i64 = e.iter().sum();
        let one = self.fx.one() as i128;
        let p = e
            .iter()
            .map(|&ej| div_round(ej as i128 * one, sum as i128).0 as i64)
            .collect();
        SoftmaxTrace {
            max_index,
            d,
            e,
            sum,
            p,
        }
    }

    /// `sigmoid(z)` at scale `2^f`: the probability of `z` in the softmax
    /// of `[0, z]`, i.e. `div_round(e_1 2^f, e_0 + e_1)`.
    pub fn sigmoid(&self, z: i64) -> i64 {
        self.softmax(&[0, z]).p[1]
    }

    /// `tanh(z)` at scale `2^f`: `2 p - 2^f` with `p` the probability of `z`
    /// in the softmax of `[-z, z]`; `-z` must be a stored value (it is not
    /// only for `z = -2^(b-1)`, an overflow naming `layer` and `index`).
    pub fn tanh(&self, z: i64, layer: &str, index: usize) -> Result<i64> {
        let neg = self.fx.check(-(z as i128), layer, "tanh_input", index)?;
        Ok(2 * self.softmax(&[neg, z]).p[1] - self.fx.one())
    }

    /// An activation of one value; `name` and `index` name it in errors.
    pub fn apply(&self, act: Activation, z: i64, name: &str, index: usize) -> Result<i64> {
        match act {
            Activation::Relu => Ok(z.max(0)),
            Activation::None => Ok(z),
            Activation::Sigmoid => Ok(self.sigmoid(z)),
            Activation::Tanh => self.tanh(z, name, index),
        }
    }

    /// The activation of hidden layer `layer` applied to its outputs `z`.
    pub fn activate(&self, layer: usize, z: &[i64]) -> Result<Vec<i64>> {
        let act = self.arch.layers[layer].activation;
        let name = self.arch.layer_name(layer);
        z.iter()
            .enumerate()
            .map(|(j, &v)| self.apply(act, v, &name, j))
            .collect()
    }

    /// The logits the loss's softmax reads: the last layer's outputs, or
    /// `[0, z]` for a sigmoid output.
    pub fn loss_logits(&self, z: &[i64]) -> Vec<i64> {
        match self.arch.loss() {
            Loss::SoftmaxCrossEntropy | Loss::MeanSquaredError => z.to_vec(),
            Loss::SigmoidBinaryCrossEntropy => [0].into_iter().chain(z.iter().copied()).collect(),
        }
    }

    /// The gradient with respect to an output `z` of activation `act` from
    /// the rescaled gradient `da` of its activation `a` (see the module
    /// docs); `name` and `index` name it in errors.
    pub fn activation_grad(
        &self,
        act: Activation,
        (z, a, da): (i64, i64, i64),
        name: &str,
        index: usize,
    ) -> Result<i64> {
        let f2 = 2 * self.fx.frac_bits;
        let one = self.fx.one() as i128;
        let (da, a) = (da as i128, a as i128);
        let v = match act {
            Activation::Relu => return Ok(if z >= 0 { da as i64 } else { 0 }),
            Activation::None => return Ok(da as i64),
            Activation::Sigmoid => div_round(da * (a * (one - a)), 1i128 << f2).0,
            Activation::Tanh => div_round(da * (one * one - a * a), 1i128 << f2).0,
        };
        self.fx.check(v, name, "activation_grad", index)
    }

    /// Forward pass of one record.
    pub fn forward(&self, w: &Weights, x: &[i64]) -> Result<SampleForward> {
        let nl = self.arch.layers.len();
        let mut inputs = Vec::with_capacity(nl);
        let mut zs = Vec::with_capacity(nl);
        let ((stage_inputs, stage_z), mut a) = self.stages_forward(w, x)?;
        for l in 0..nl {
            let z = self.dense(l, &w.layers[l], &a)?;
            inputs.push(std::mem::take(&mut a));
            a = if l + 1 == nl {
                self.loss_logits(&z)
            } else {
                self.activate(l, &z)?
            };
            zs.push(z);
        }
        let softmax = self.softmax(&a);
        Ok(SampleForward {
            stage_inputs,
            stage_z,
            inputs,
            z: zs,
            softmax,
        })
    }

    /// One SGD step on a batch. `lr_fx` is the learning rate at scale `2^f`.
    pub fn step(&self, w: &Weights, xs: &[Vec<i64>], ys: &[i64], lr_fx: i64) -> Result<StepTrace> {
        if xs.is_empty() || xs.len() != ys.len() {
            return Err(ModelError::Shape(format!(
                "a step needs a non-empty batch with one label per record ({} records, {} labels)",
                xs.len(),
                ys.len()
            )));
        }
        if lr_fx <= 0 {
            return Err(ModelError::Config(format!(
                "learning rate must be positive at scale 2^f, got {lr_fx}"
            )));
        }
        let nl = self.arch.layers.len();
        let batch = xs.len();
        let one = self.fx.one();
        let classes = self.arch.num_classes();
        let samples = xs
            .iter()
            .map(|x| self.forward(w, x))
            .collect::<Result<Vec<_>>>()?;

        let mut dz: Vec<Vec<Vec<i64>>> = vec![Vec::new(); nl];
        let mut da: Vec<Vec<Vec<i64>>> = vec![Vec::new(); nl];
        // Only the sigmoid output's own logit, not the constant 0, is a layer output.
        let skip = classes - self.arch.layers[nl - 1].outputs;
        let last_name = self.arch.layer_name(nl - 1);
        dz[nl - 1] = samples
            .iter()
            .zip(ys)
            .enumerate()
            .map(|(k, (s, &y))| match self.arch.loss() {
                Loss::MeanSquaredError => {
                    let d = s.output() as i128 - y as i128;
                    Ok(vec![self.fx.check(d, &last_name, "loss_grad", k)?])
                }
                _ => Ok((skip..classes)
                    .map(|j| s.softmax.p[j] - if j as i64 == y { one } else { 0 })
                    .collect()),
            })
            .collect::<Result<Vec<_>>>()?;
        for l in (1..nl).rev() {
            let spec = self.arch.layers[l];
            let name = self.arch.layer_name(l - 1);
            let act = self.arch.layers[l - 1].activation;
            let mut da_l = Vec::with_capacity(batch);
            let mut dz_prev = Vec::with_capacity(batch);
            for (s, sample) in samples.iter().enumerate() {
                let row = self.input_grad(l, &w.layers[l], &dz[l][s], s)?;
                let prev = (0..spec.inputs)
                    .map(|i| {
                        let zai = (sample.z[l - 1][i], sample.inputs[l][i], row[i]);
                        self.activation_grad(act, zai, &name, s * spec.inputs + i)
                    })
                    .collect::<Result<Vec<_>>>()?;
                da_l.push(row);
                dz_prev.push(prev);
            }
            da[l] = da_l;
            dz[l - 1] = dz_prev;
        }
        // Into the stages, from the gradient of the first dense layer's input.
        let new_stages = if self.arch.stages.is_empty() {
            Vec::new()
        } else {
            let d_out = (0..batch)
                .map(|s| self.input_grad(0, &w.layers[0], &dz[0][s], s))
                .collect::<Result<Vec<_>>>()?;
            da[0] = d_out.clone();
            self.stages_backward(w, &samples, d_out, lr_fx)?
        };

        let mut weight_acc = Vec::with_capacity(nl);
        let mut bias_acc = Vec::with_capacity(nl);
        let mut new_layers = Vec::with_capacity(nl);
        for (l, spec) in self.arch.layers.iter().enumerate() {
            let mut g = vec![0i128; spec.inputs * spec.outputs];
            let mut gb = vec![0i128; spec.outputs];
            for (s, sample) in samples.iter().enumerate() {
                for j in 0..spec.outputs {
                    let d = dz[l][s][j] as i128;
                    gb[j] += d;
                    if d != 0 {
                        for i in 0..spec.inputs {
                            g[i * spec.outputs + j] += sample.inputs[l][i] as i128 * d;
                        }
                    }
                }
            }
            let name = self.arch.layer_name(l);
            new_layers.push(self.sgd(&name, &w.layers[l], (&g, &gb), batch, lr_fx)?);
            weight_acc.push(g);
            bias_acc.push(gb);
        }
        Ok(StepTrace {
            samples,
            dz,
            da,
            weight_acc,
            bias_acc,
            new_weights: Weights {
                stages: new_stages,
                layers: new_layers,
            },
        })
    }

    /// `da_l[i] = div_round(sum_j dz_l[j] w_l[i][j], 2^f)` of one sample
    /// `s` (the gradient of layer `l`'s input), range-checked.
    fn input_grad(&self, l: usize, lw: &LayerWeights, dz: &[i64], s: usize) -> Result<Vec<i64>> {
        let spec = self.arch.layers[l];
        let name = self.arch.layer_name(l);
        (0..spec.inputs)
            .map(|i| {
                let row_w = &lw.w[i * spec.outputs..(i + 1) * spec.outputs];
                let acc: i128 = dz
                    .iter()
                    .zip(row_w)
                    .map(|(&d, &wv)| d as i128 * wv as i128)
                    .sum();
                let v = div_round(acc, 1i128 << self.fx.frac_bits).0;
                self.fx.check(v, &name, "input_grad", s * spec.inputs + i)
            })
            .collect()
    }

    /// The SGD update of one parameter matrix from its unrounded gradient
    /// sums `(G, g)` (see the module docs).
    fn sgd(
        &self,
        name: &str,
        lw: &LayerWeights,
        (g, gb): (&[i128], &[i128]),
        batch: usize,
        lr_fx: i64,
    ) -> Result<LayerWeights> {
        let f = self.fx.frac_bits;
        let wdiv = (batch as i128) << (2 * f);
        let bdiv = (batch as i128) << f;
        let step = |v: &[i64], g: &[i128], d: i128, tensor: &'static str| {
            v.iter()
                .zip(g)
                .enumerate()
                .map(|(k, (&wk, &gk))| {
                    let upd = div_round(lr_fx as i128 * gk, d).0;
                    self.fx.check(wk as i128 - upd, name, tensor, k)
                })
                .collect::<Result<Vec<_>>>()
        };
        Ok(LayerWeights {
            w: step(&lw.w, g, wdiv, "weight")?,
            b: step(&lw.b, gb, bdiv, "bias")?,
        })
    }

    /// The loss of a sample (for reporting only): cross-entropy of its
    /// fixed-point probabilities, or a regression's `(z - y)^2 / 2`.
    pub fn loss(&self, s: &SampleForward, y: i64) -> f64 {
        if self.arch.is_regression() {
            let d = self.fx.dequantize(s.output()) - self.fx.dequantize(y);
            return d * d / 2.0;
        }
        let p =
            s.softmax.p.get(y as usize).copied().unwrap_or(0).max(1) as f64 / self.fx.one() as f64;
        -p.ln()
    }
}

mod stages;

#[cfg(test)]
mod tests;
