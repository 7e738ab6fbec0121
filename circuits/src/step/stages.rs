//! The step circuit's convolution and pooling stages, with the engine's
//! semantics ([`zkaudit_model::engine`]'s `stages` module).
//!
//! # Soundness argument
//! - *im2col is wiring.* A record's patch matrix is made of the very cells
//!   of its feature map, arranged by [`ConvSpec::im2col`] (the engine's own
//!   arrangement), and of constant-zero cells for the padding: no new value
//!   is assigned, so the arrangement is enforced by copy constraints and a
//!   wrong arrangement changes the circuit itself (the verifying key).
//! - *Convolution = checked matrix product.* `Z = P.K` over the patches of
//!   the whole batch is one product checked along the challenge
//!   ([`crate::freivalds`]), then rounded and activated entry by entry as a
//!   dense layer's outputs ([`FixedChip::dense_output`],
//!   [`FixedChip::activate`]). The kernel update is one challenge-checked
//!   update with `X^T = P^T` (the gradient sums over every position of every
//!   record; [`zkaudit_model::Architecture::check_bounds`] bounds it for the
//!   field argument), the bias update a constant division as a dense
//!   layer's. The input gradient `dZ.K^T` is a checked product whose exact
//!   entries are summed back onto the input values they came from (col2im,
//!   additions of existing cells) and rounded once per value.
//! - *Max pooling* selects each window's first maximal entry with
//!   [`FixedChip::first_max`] (whose argument makes the selector unique) and
//!   routes the output gradient to it by multiplying with the selector bits.
//! - *Pooling.* An average is `div_round(sum, k^2)` by
//!   [`FixedChip::div_const`] (remainder range-checked on both sides) with
//!   the quotient range-checked as a value, which makes it unique; the
//!   backward pass divides each output gradient the same way and copies the
//!   quotient cell to the window's inputs.

use halo2_base::gates::GateInstructions;
use halo2_base::{AssignedValue, Context};
use zkaudit_model::{ConvSpec, PoolSpec, Stage};

use super::{Cells, Layer};
use crate::fixed_chip::{FixedChip, Tamper};
use crate::freivalds::{Matrix, ProductChip, Shared};
use crate::shape::StepShape;
use crate::Fr;

/// What the backward pass needs of a stage's forward pass.
pub(super) enum StageTrace {
    /// A convolution: the batch's patch matrix (`B P x C k k`, record by
    /// record) and, per record, its activations and sign bits (NCHW).
    Conv {
        patches: Matrix,
        acts: Vec<Cells>,
        bits: Vec<Cells>,
    },
    /// An average pooling.
    Pool,
    /// A max pooling: per record and window, the one-hot selector of its
    /// first maximal entry.
    Max(Vec<Vec<Cells>>),
}

/// The chips a stage uses.
pub(super) type Chips<'a> = (&'a FixedChip, &'a ProductChip);

/// The stages' forward pass over the batch's records `xs`; returns every
/// stage's trace and the last stage's outputs (the first dense layer's
/// inputs). `convs` are the convolutions' loaded weights, in order.
pub(super) fn forward(
    ctx: &mut Context<Fr>,
    (chip, products): Chips,
    shape: &StepShape,
    convs: &[Layer],
    mut cur: Vec<Cells>,
) -> (Vec<StageTrace>, Vec<Cells>) {
    let mut traces = Vec::with_capacity(shape.arch.stages.len());
    let mut conv = 0;
    for st in &shape.arch.stages {
        match st {
            Stage::Conv(c) => {
                let (kernel, bias) = &convs[conv];
                conv += 1;
                let mut patches = im2col(ctx, c, &cur);
                if chip.tamper() == Some(Tamper::Im2col(conv - 1)) {
                    // Two entries of the first patch that hold different values.
                    let row = &mut patches[0];
                    if let Some(j) = (1..row.len()).find(|&j| row[j].value() != row[0].value()) {
                        row.swap(0, j);
                    }
                }
                let exact = products.matmul(ctx, &patches, kernel);
                let n = c.positions();
                let mut acts = Vec::with_capacity(cur.len());
                let mut bits = Vec::with_capacity(cur.len());
                for s in 0..cur.len() {
                    let mut a = Vec::with_capacity(c.out_channels * n);
                    let mut m = Vec::with_capacity(c.out_channels * n);
                    for (o, b) in bias.iter().enumerate() {
                        for pos in 0..n {
                            let (z, bit) = chip.dense_output(ctx, exact[s * n + pos][o], *b);
                            a.push(chip.activate(ctx, c.activation, z, bit));
                            m.push(bit);
                        }
                    }
                    acts.push(a);
                    bits.push(m);
                }
                traces.push(StageTrace::Conv {
                    patches,
                    acts: acts.clone(),
                    bits,
                });
                cur = acts;
            }
            Stage::AvgPool(p) => {
                cur = cur.iter().map(|x| avg_pool(ctx, chip, p, x)).collect();
                traces.push(StageTrace::Pool);
            }
            Stage::MaxPool(p) => {
                let windows = p.windows();
                let mut sels = Vec::with_capacity(cur.len());
                cur = cur
                    .iter()
                    .map(|x| {
                        let (sel, out): (Vec<Cells>, Cells) = windows
                            .iter()
                            .map(|w| {
                                let xs: Cells = w.iter().map(|&i| x[i]).collect();
                                chip.first_max(ctx, &xs)
                            })
                            .unzip();
                        sels.push(sel);
                        out
                    })
                    .collect();
                traces.push(StageTrace::Max(sels));
            }
        }
    }
    (traces, cur)
}

/// The stages' backward pass from `d_out`, per record the gradient of the
/// last stage's output; returns the convolutions' updated weights in order.
pub(super) fn backward(
    ctx: &mut Context<Fr>,
    (chip, products): Chips,
    shape: &StepShape,
    convs: &[Layer],
    traces: Vec<StageTrace>,
    mut d_out: Vec<Cells>,
) -> Vec<Layer> {
    let gate = chip.gate().clone();
    let f = shape.fx.frac_bits;
    let batch = d_out.len();
    let mut new = vec![None; convs.len()];
    let mut conv = convs.len();
    for (i, (st, trace)) in shape.arch.stages.iter().zip(traces).enumerate().rev() {
        let (n_in, _) = st.sizes();
        d_out = match (st, trace) {
            (Stage::AvgPool(p), _) => {
                let d = (p.kernel * p.kernel) as u128;
                let windows = p.windows();
                d_out
                    .iter()
                    .map(|dy| {
                        let zero = ctx.load_zero();
                        let mut dx = vec![zero; n_in];
                        for (win, g) in windows.iter().zip(dy) {
                            let q = chip.div_const(ctx, *g, 1, d);
                            chip.check_value(ctx, q);
                            for &k in win {
                                dx[k] = q;
                            }
                        }
                        dx
                    })
                    .collect()
            }
            (
                Stage::Conv(c),
                StageTrace::Conv {
                    patches,
                    acts,
                    bits,
                },
            ) => {
                conv -= 1;
                let (kernel, bias) = &convs[conv];
                let (oc, n) = (c.out_channels, c.positions());
                // dZ as the `B P x OC` matrix of the product Z = P.K.
                let mut dz: Matrix = vec![Vec::with_capacity(oc); batch * n];
                for s in 0..batch {
                    for o in 0..oc {
                        for pos in 0..n {
                            let k = o * n + pos;
                            let g = chip.activation_grad(
                                ctx,
                                c.activation,
                                acts[s][k],
                                bits[s][k],
                                d_out[s][k],
                            );
                            dz[s * n + pos].push(g);
                        }
                    }
                }
                let d_in = if i > 0 {
                    input_grad(ctx, (chip, products), c, kernel, &dz, batch, n_in, f)
                } else {
                    Vec::new()
                };
                let x_t: Matrix = (0..c.patch_len())
                    .map(|e| patches.iter().map(|row| row[e]).collect())
                    .collect();
                let wdiv = (batch as u128) << (2 * f);
                let bdiv = (batch as u128) << f;
                let new_k = products.update(ctx, chip, x_t, &dz, kernel, shape.lr_fx, wdiv);
                let new_b = bias
                    .iter()
                    .enumerate()
                    .map(|(o, b)| {
                        let g = gate.sum(ctx, dz.iter().map(|row| row[o]));
                        let q = chip.div_const(ctx, g, shape.lr_fx, bdiv);
                        let nb = gate.sub(ctx, *b, q);
                        chip.check_value(ctx, nb);
                        nb
                    })
                    .collect();
                new[conv] = Some((new_k, new_b));
                d_in
            }
            (Stage::MaxPool(p), StageTrace::Max(sels)) => {
                let windows = p.windows();
                d_out
                    .iter()
                    .zip(sels)
                    .map(|(dy, sel)| {
                        let zero = ctx.load_zero();
                        let mut dx = vec![zero; n_in];
                        for ((win, s), g) in windows.iter().zip(sel).zip(dy) {
                            for (&k, bit) in win.iter().zip(s) {
                                dx[k] = gate.mul(ctx, bit, *g);
                            }
                        }
                        dx
                    })
                    .collect()
            }
            _ => unreachable!("traces follow the stages"),
        };
    }
    new.into_iter().flatten().collect()
}

/// The average pooling of one record: per window `div_round(sum, k^2)`,
/// range-checked as a value.
pub(crate) fn avg_pool(
    ctx: &mut Context<Fr>,
    chip: &FixedChip,
    p: &PoolSpec,
    x: &[AssignedValue<Fr>],
) -> Cells {
    let d = (p.kernel * p.kernel) as u128;
    p.windows()
        .iter()
        .map(|w| {
            let sum = chip.gate().sum(ctx, w.iter().map(|&i| x[i]));
            let q = chip.div_const(ctx, sum, 1, d);
            chip.check_value(ctx, q);
            q
        })
        .collect()
}

/// The patch matrix of a batch: per record and output position, the input
/// cells [`ConvSpec::im2col`] names, constant zeros in the padding.
pub(crate) fn im2col(ctx: &mut Context<Fr>, c: &ConvSpec, xs: &[Cells]) -> Matrix {
    let cols = c.im2col();
    let zero = ctx.load_zero();
    xs.iter()
        .flat_map(|x| {
            cols.iter()
                .map(|row| row.iter().map(|idx| idx.map_or(zero, |i| x[i])).collect())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The gradient of a convolution's input: `dZ.K^T` checked along the
/// challenge, its entries summed back onto the input values they read
/// (col2im), each sum rounded by `2^f` and range-checked.
#[allow(clippy::too_many_arguments)]
fn input_grad(
    ctx: &mut Context<Fr>,
    (chip, products): Chips,
    c: &ConvSpec,
    kernel: &Shared,
    dz: &Matrix,
    batch: usize,
    n_in: usize,
    f: u32,
) -> Vec<Cells> {
    let k_t: Matrix = (0..c.out_channels)
        .map(|o| kernel.iter().map(|row| row[o]).collect())
        .collect();
    let exact = products.matmul(ctx, dz, &Shared::new(k_t));
    let cols = c.im2col();
    let n = c.positions();
    (0..batch)
        .map(|s| {
            let mut terms: Vec<Vec<AssignedValue<Fr>>> = vec![Vec::new(); n_in];
            for (pos, row) in cols.iter().enumerate() {
                for (e, idx) in row.iter().enumerate() {
                    if let Some(i) = idx {
                        terms[*i].push(exact[s * n + pos][e]);
                    }
                }
            }
            terms
                .into_iter()
                .map(|t| {
                    let acc = chip.gate().sum(ctx, t);
                    chip.rescale(ctx, acc, f).0
                })
                .collect()
        })
        .collect()
}
