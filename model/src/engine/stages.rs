//! The engine's convolution and pooling stages ([`crate::stage`]), forward
//! and backward, with the rounding rules the circuit enforces:
//!
//! - convolution: `z[oc][pos] = div_round(sum_e P[pos][e] K[e][oc] + b[oc] 2^f, 2^f)`
//!   (range-checked), `a = act(z)`, as a dense layer over the patch matrix `P`;
//! - average pooling: `y[o] = div_round(sum of the k x k window, k^2)`;
//! - pooling backward: every input of window `o` gets `div_round(dy[o], k^2)`,
//!   inputs outside every window 0;
//! - max pooling: `y[o]` is the window's first maximal entry, which alone
//!   gets `dy[o]` in the backward pass (no rounding);
//! - convolution backward: `dz = act'(dA)` as for a dense layer; the kernel
//!   and bias gradients sum over every position of every record and update
//!   as a dense layer's ([`Engine::step`]); the input gradient (not for the
//!   first stage) is `dx[i] = div_round(sum_{(pos, e) -> i} sum_oc dz[oc][pos] K[e][oc], 2^f)`,
//!   one rounding per input value after the patch entries are summed back
//!   (col2im), range-checked.

use crate::arch::{LayerWeights, Weights};
use crate::error::Result;
use crate::fixed::div_round;
use crate::stage::{ConvSpec, PoolSpec, Stage};

use super::{Engine, SampleForward};

/// Per stage: its input, and a convolution's pre-activation output.
type StageTrace = (Vec<Vec<i64>>, Vec<Vec<i64>>);

impl Engine {
    /// Name of stage `i` in errors.
    pub fn stage_name(&self, i: usize) -> String {
        format!("stage {i} ({})", self.arch.stages[i].describe())
    }

    /// `z` and `a = act(z)` of convolution stage `i` on one record `x`
    /// (both NCHW).
    pub fn conv(
        &self,
        i: usize,
        spec: &ConvSpec,
        lw: &LayerWeights,
        x: &[i64],
    ) -> Result<(Vec<i64>, Vec<i64>)> {
        let f = self.fx.frac_bits;
        let name = self.stage_name(i);
        let (oc, n) = (spec.out_channels, spec.positions());
        let mut z = vec![0i64; oc * n];
        for (pos, row) in spec.im2col().iter().enumerate() {
            for o in 0..oc {
                let mut acc = (lw.b[o] as i128) << f;
                for (e, idx) in row.iter().enumerate() {
                    if let Some(idx) = idx {
                        acc += x[*idx] as i128 * lw.w[e * oc + o] as i128;
                    }
                }
                let k = o * n + pos;
                z[k] = self.fx.check(div_round(acc, 1i128 << f).0, &name, "z", k)?;
            }
        }
        let a = z
            .iter()
            .enumerate()
            .map(|(k, &v)| self.apply(spec.activation, v, &name, k))
            .collect::<Result<Vec<_>>>()?;
        Ok((z, a))
    }

    /// Average pooling of one record.
    pub fn avgpool(&self, spec: &PoolSpec, x: &[i64]) -> Vec<i64> {
        let d = (spec.kernel * spec.kernel) as i128;
        spec.windows()
            .iter()
            .map(|w| div_round(w.iter().map(|&i| x[i] as i128).sum(), d).0 as i64)
            .collect()
    }

    /// Max pooling of one record.
    pub fn maxpool(&self, spec: &PoolSpec, x: &[i64]) -> Vec<i64> {
        spec.windows()
            .iter()
            .map(|w| x[w[first_max(x, w)]])
            .collect()
    }

    /// The stages' forward pass of one record: every stage's input, the
    /// convolutions' pre-activations, and the last output (the record
    /// itself without stages).
    pub(super) fn stages_forward(&self, w: &Weights, x: &[i64]) -> Result<(StageTrace, Vec<i64>)> {
        let (mut inputs, mut zs): StageTrace = (Vec::new(), Vec::new());
        let mut a = x.to_vec();
        let mut conv = 0;
        for (i, st) in self.arch.stages.iter().enumerate() {
            let (z, out) = match st {
                Stage::Conv(c) => {
                    conv += 1;
                    self.conv(i, c, &w.stages[conv - 1], &a)?
                }
                Stage::AvgPool(p) => (Vec::new(), self.avgpool(p, &a)),
                Stage::MaxPool(p) => (Vec::new(), self.maxpool(p, &a)),
            };
            inputs.push(std::mem::replace(&mut a, out));
            zs.push(z);
        }
        Ok(((inputs, zs), a))
    }

    /// The stages' backward pass and update from `d_out`, per record the
    /// gradient of the last stage's output: the convolutions' new weights.
    pub(super) fn stages_backward(
        &self,
        w: &Weights,
        samples: &[SampleForward],
        mut d_out: Vec<Vec<i64>>,
        lr_fx: i64,
    ) -> Result<Vec<LayerWeights>> {
        let f = self.fx.frac_bits;
        let batch = samples.len();
        let mut new = vec![None; w.stages.len()];
        let mut conv = w.stages.len();
        for (i, st) in self.arch.stages.iter().enumerate().rev() {
            let name = self.stage_name(i);
            let (n_in, _) = st.sizes();
            d_out = match st {
                Stage::AvgPool(p) => {
                    let d = (p.kernel * p.kernel) as i128;
                    let windows = p.windows();
                    d_out
                        .iter()
                        .map(|dy| {
                            let mut dx = vec![0i64; n_in];
                            for (win, &g) in windows.iter().zip(dy) {
                                let q = div_round(g as i128, d).0 as i64;
                                for &k in win {
                                    dx[k] = q;
                                }
                            }
                            dx
                        })
                        .collect()
                }
                Stage::MaxPool(p) => {
                    let windows = p.windows();
                    samples
                        .iter()
                        .zip(&d_out)
                        .map(|(sample, dy)| {
                            let x = &sample.stage_inputs[i];
                            let mut dx = vec![0i64; n_in];
                            for (win, &g) in windows.iter().zip(dy) {
                                dx[win[first_max(x, win)]] = g;
                            }
                            dx
                        })
                        .collect()
                }
                Stage::Conv(c) => {
                    conv -= 1;
                    let lw = &w.stages[conv];
                    let (oc, n) = (c.out_channels, c.positions());
                    let cols = c.im2col();
                    let mut g = vec![0i128; c.patch_len() * oc];
                    let mut gb = vec![0i128; oc];
                    let mut d_in = Vec::with_capacity(if i > 0 { batch } else { 0 });
                    for (s, sample) in samples.iter().enumerate() {
                        let (z, x) = (&sample.stage_z[i], &sample.stage_inputs[i]);
                        let a = match self.arch.stages.get(i + 1) {
                            Some(_) => &sample.stage_inputs[i + 1],
                            None => &sample.inputs[0],
                        };
                        let dz = (0..oc * n)
                            .map(|k| {
                                let zad = (z[k], a[k], d_out[s][k]);
                                self.activation_grad(c.activation, zad, &name, s * oc * n + k)
                            })
                            .collect::<Result<Vec<_>>>()?;
                        let mut acc = vec![0i128; if i > 0 { n_in } else { 0 }];
                        for (pos, row) in cols.iter().enumerate() {
                            for o in 0..oc {
                                let d = dz[o * n + pos] as i128;
                                gb[o] += d;
                                for (e, idx) in row.iter().enumerate() {
                                    if let Some(idx) = idx {
                                        g[e * oc + o] += x[*idx] as i128 * d;
                                        if i > 0 {
                                            acc[*idx] += d * lw.w[e * oc + o] as i128;
                                        }
                                    }
                                }
                            }
                        }
                        if i > 0 {
                            let dx = acc
                                .iter()
                                .enumerate()
                                .map(|(k, &v)| {
                                    let q = div_round(v, 1i128 << f).0;
                                    self.fx.check(q, &name, "input_grad", s * n_in + k)
                                })
                                .collect::<Result<Vec<_>>>()?;
                            d_in.push(dx);
                        }
                    }
                    new[conv] = Some(self.sgd(&name, lw, (&g, &gb), batch, lr_fx)?);
                    d_in
                }
            };
        }
        Ok(new.into_iter().flatten().collect())
    }
}

/// The position in `win` of the first maximal entry of `x` among `win`.
pub fn first_max(x: &[i64], win: &[usize]) -> usize {
    let mut best = 0;
    for (j, &i) in win.iter().enumerate() {
        if x[i] > x[win[best]] {
            best = j;
        }
    }
    best
}
