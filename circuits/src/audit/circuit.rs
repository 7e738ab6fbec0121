//! The audit circuits: one halo2-base layout per [`ChunkKind`], on the same
//! physical circuit as the step circuit ([`StepCircuit`], without the exp
//! table).
//!
//! Public instances, in order (`n`: real records in the chunk, the rest are
//! padding the circuit ignores; `cc`: a count commitment
//! `H(TAG_COUNT, salt, count_1, .., count_g)`):
//!
//! | kind | instances |
//! |---|---|
//! | composition | subtree root, `n`, `cc`, then `lo_r, hi_r` per range |
//! | exclusion | subtree root, `n`, then the blocklist hashes |
//! | inclusion | root `R`, record count `N` (the index is `< N`), label, features of the record |
//! | accuracy | `c_T`, `n`, `cc`, then per record: group bit (fairness only), label, features |
//! | counterfactual | `c_T`, `n`, the attribute values, then per record: features |
//! | combine | the chunks' `cc`, the rule's numbers, the revealed sums (if any) |

use halo2_base::gates::circuit::CircuitBuilderStage;
use halo2_base::gates::{GateChip, GateInstructions, RangeInstructions};
use halo2_base::{AssignedValue, Context, QuantumCell};
use zkaudit_model::arch::Loss;
use zkaudit_model::{Stage, Weights};

use crate::step::stages::{avg_pool, im2col};

use super::{AuditShape, ChunkKind, RuleKind, TAG_CONTENT, TAG_COUNT};
use crate::field::{fe, fe_u128, to_i128};
use crate::fixed_chip::FixedChip;
use crate::hash;
use crate::poseidon::PoseidonChip;
use crate::step::{new_builder, StepCircuit, StepCircuitParams};
use crate::{CircuitError, Fr, Result};

/// Bits of every count (records per dataset or test set stay far below).
pub const COUNT_BITS: usize = 32;

/// The private inputs of one audit proof.
#[derive(Clone, Debug)]
pub enum AuditWitness {
    /// Training records of one subtree (padded with zeros to the chunk size).
    Data {
        /// Features per position.
        features: Vec<Vec<i64>>,
        /// Labels per position.
        labels: Vec<i64>,
        /// Leaf salts per position.
        salts: Vec<u128>,
        /// Salt of the count commitment.
        count_salt: u128,
    },
    /// The hidden leaf of a public record.
    Inclusion {
        /// Its leaf salt.
        salt: u128,
        /// Its position in the tree.
        index: u64,
        /// Merkle siblings, bottom-up.
        path: Vec<Fr>,
    },
    /// The committed model.
    Model {
        /// Its weights.
        weights: Weights,
        /// Salt of `c_T`.
        salt: u128,
        /// Salt of the count commitment.
        count_salt: u128,
    },
    /// The chunks' counts and their commitments' salts.
    Combine {
        /// `counts[i][g]`: group `g` of chunk `i`.
        counts: Vec<Vec<u64>>,
        /// Salt of each chunk's commitment.
        salts: Vec<u128>,
    },
}

/// Native count commitment `H(TAG_COUNT, salt, counts..)`.
pub fn count_commitment(salt: u128, counts: &[u64]) -> Fr {
    hash::native(|ctx, gate, h| {
        let mut input = vec![
            ctx.load_constant(Fr::from(TAG_COUNT)),
            ctx.load_witness(fe_u128(salt)),
        ];
        input.extend(counts.iter().map(|&c| ctx.load_witness(Fr::from(c))));
        *h.hash_fix_len(ctx, gate, &input).value()
    })
}

/// Native content hash `H(TAG_CONTENT, pack(x))` of a record's features.
pub fn content_hash(features: &[i64], value_bits: u32) -> Fr {
    hash::native(|ctx, gate, h| {
        let x: Vec<_> = features
            .iter()
            .map(|&v| ctx.load_witness(fe(v as i128)))
            .collect();
        content_hash_in(ctx, gate, h, &x, value_bits)
    })
    .1
}

fn content_hash_in(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    h: &PoseidonChip,
    x: &[AssignedValue<Fr>],
    value_bits: u32,
) -> (AssignedValue<Fr>, Fr) {
    let mut input = vec![ctx.load_constant(Fr::from(TAG_CONTENT))];
    input.extend(hash::pack(ctx, gate, x, value_bits));
    let c = h.hash_fix_len(ctx, gate, &input);
    (c, *c.value())
}

/// A witness of the right shape with zero values (keygen).
pub fn dummy(shape: &AuditShape) -> (Vec<Fr>, AuditWitness) {
    let d = shape.arch.input_dim();
    let n = shape.records;
    let publics = vec![Fr::zero(); shape.num_instances()];
    let w = match &shape.kind {
        ChunkKind::Composition { .. } | ChunkKind::Exclusion { .. } => AuditWitness::Data {
            features: vec![vec![0; d]; n],
            labels: vec![0; n],
            salts: vec![0; n],
            count_salt: 0,
        },
        ChunkKind::Inclusion => AuditWitness::Inclusion {
            salt: 0,
            index: 0,
            path: vec![Fr::zero(); shape.depth],
        },
        ChunkKind::Accuracy { .. } | ChunkKind::Counterfactual { .. } => AuditWitness::Model {
            weights: Weights::zeros(&shape.arch),
            salt: 0,
            count_salt: 0,
        },
        ChunkKind::Combine { chunks, groups, .. } => AuditWitness::Combine {
            counts: vec![vec![0; *groups]; *chunks],
            salts: vec![0; *chunks],
        },
    };
    (publics, w)
}

/// Builds the audit circuit of `shape` for public instances `publics` and a witness.
pub fn build(
    shape: &AuditShape,
    publics: &[Fr],
    w: &AuditWitness,
    stage: CircuitBuilderStage,
    params: Option<StepCircuitParams>,
    break_points: Option<Vec<Vec<usize>>>,
) -> Result<StepCircuit> {
    if publics.len() != shape.num_instances() {
        return Err(CircuitError::Shape(format!(
            "the {} circuit has {} public inputs, got {}",
            shape.kind.name(),
            shape.num_instances(),
            publics.len()
        )));
    }
    let mut builder = new_builder(stage, shape.k, shape.lookup_bits, &params, break_points);
    let mut chip = FixedChip::new(builder.range_chip(), shape.fx, None);
    chip.no_exp_table = true;
    let h = PoseidonChip::default();
    let ctx = builder.main(0);
    let pubs: Vec<AssignedValue<Fr>> = publics.iter().map(|v| ctx.load_witness(*v)).collect();
    let bad = |m: &str| Err(CircuitError::Shape(format!("{}: {m}", shape.kind.name())));
    match (&shape.kind, w) {
        (
            ChunkKind::Composition { feature, ranges },
            AuditWitness::Data {
                features,
                labels,
                salts,
                count_salt,
            },
        ) => {
            check_records(shape, features, labels, salts)?;
            let leaves = data_leaves(ctx, &chip, &h, shape, features, labels, salts, pubs[1]);
            let root = subtree_root(ctx, chip.gate(), &h, leaves.iter().map(|l| l.0).collect());
            ctx.constrain_equal(&root, &pubs[0]);
            let bounds: Vec<_> = (0..*ranges)
                .map(|r| (pubs[3 + 2 * r], pubs[4 + 2 * r]))
                .collect();
            let mut count = ctx.load_zero();
            for (_, real) in &leaves {
                let x = real.1[*feature];
                let inside = in_ranges(ctx, &chip, x, &bounds);
                count = chip.gate().mul_add(ctx, inside, real.0, count);
            }
            let cc = commit_counts(ctx, chip.gate(), &h, *count_salt, &[count]);
            ctx.constrain_equal(&cc, &pubs[2]);
        }
        (
            ChunkKind::Exclusion { entries },
            AuditWitness::Data {
                features,
                labels,
                salts,
                ..
            },
        ) => {
            check_records(shape, features, labels, salts)?;
            let leaves = data_leaves(ctx, &chip, &h, shape, features, labels, salts, pubs[1]);
            let root = subtree_root(ctx, chip.gate(), &h, leaves.iter().map(|l| l.0).collect());
            ctx.constrain_equal(&root, &pubs[0]);
            let blocklist = &pubs[2..2 + entries];
            let gate = chip.gate();
            for (_, (is_real, x)) in &leaves {
                let (c, _) = content_hash_in(ctx, gate, &h, x, shape.fx.value_bits);
                let mut prod = ctx.load_constant(Fr::one());
                for b in blocklist {
                    let d = gate.sub(ctx, c, *b);
                    prod = gate.mul(ctx, prod, d);
                }
                // padding positions are exempt: t = real ? prod : 1, and t != 0.
                let t = gate.select(ctx, prod, QuantumCell::Constant(Fr::one()), *is_real);
                let inv = ctx.load_witness(t.value().invert().unwrap_or(Fr::zero()));
                let one = gate.mul(ctx, t, inv);
                gate.assert_is_const(ctx, &one, &Fr::one());
            }
        }
        (ChunkKind::Inclusion, AuditWitness::Inclusion { salt, index, path }) => {
            if path.len() != shape.depth {
                return bad(&format!("Merkle paths must have depth {}", shape.depth));
            }
            let (n, y) = (pubs[1], pubs[2]);
            let x: Vec<_> = pubs[3..].to_vec();
            for v in &x {
                chip.signed(ctx, *v);
            }
            let s = ctx.load_witness(fe_u128(*salt));
            let leaf = hash::leaf(ctx, chip.gate(), &h, s, y, &x, shape.fx.value_bits);
            let idx = ctx.load_witness(Fr::from(*index));
            let bits = chip.gate().num_to_bits(ctx, idx, shape.depth);
            // Only positions of real records count: index < N. Positions
            // N..2^depth are never opened by the training schedule, so a leaf
            // planted there would otherwise be "included" without being trained on.
            chip.range.range_check(ctx, n, shape.depth + 1);
            chip.range.check_less_than(ctx, idx, n, shape.depth + 1);
            let sibs: Vec<_> = path.iter().map(|p| ctx.load_witness(*p)).collect();
            let r = hash::merkle_root(ctx, chip.gate(), &h, leaf, &bits, &sibs);
            ctx.constrain_equal(&r, &pubs[0]);
        }
        (
            ChunkKind::Accuracy { groups },
            AuditWitness::Model {
                weights,
                salt,
                count_salt,
            },
        ) => {
            let layers = load_model(ctx, &chip, &h, shape, weights, *salt, pubs[0])?;
            let reals = real_flags(ctx, &chip, shape.records, pubs[1]);
            let per = shape.record_instances();
            let d = shape.arch.input_dim();
            let mut counts = vec![ctx.load_zero(); if *groups { 2 } else { 1 }];
            for (r, is_real) in reals.iter().enumerate() {
                let base = 3 + r * per;
                let (g, y, x) = if *groups {
                    (
                        Some(pubs[base]),
                        pubs[base + 1],
                        &pubs[base + 2..base + 2 + d],
                    )
                } else {
                    (None, pubs[base], &pubs[base + 1..base + 1 + d])
                };
                for v in x {
                    chip.signed(ctx, *v);
                }
                let pred = predict(ctx, &chip, shape, &layers, x);
                let correct = chip.gate().is_equal(ctx, pred, y);
                let hit = chip.gate().mul(ctx, correct, *is_real);
                match g {
                    None => counts[0] = chip.gate().add(ctx, counts[0], hit),
                    Some(g) => {
                        chip.gate().assert_bit(ctx, g);
                        let in_a = chip.gate().mul(ctx, hit, g);
                        let in_b = chip.gate().sub(ctx, hit, in_a);
                        counts[0] = chip.gate().add(ctx, counts[0], in_a);
                        counts[1] = chip.gate().add(ctx, counts[1], in_b);
                    }
                }
            }
            let cc = commit_counts(ctx, chip.gate(), &h, *count_salt, &counts);
            ctx.constrain_equal(&cc, &pubs[2]);
        }
        (
            ChunkKind::Counterfactual { feature, values },
            AuditWitness::Model { weights, salt, .. },
        ) => {
            let layers = load_model(ctx, &chip, &h, shape, weights, *salt, pubs[0])?;
            let reals = real_flags(ctx, &chip, shape.records, pubs[1]);
            let vals: Vec<_> = pubs[2..2 + values].to_vec();
            for v in &vals {
                chip.signed(ctx, *v);
            }
            let d = shape.arch.input_dim();
            for (r, is_real) in reals.iter().enumerate() {
                let base = 2 + values + r * d;
                let x = pubs[base..base + d].to_vec();
                for v in &x {
                    chip.signed(ctx, *v);
                }
                let p0 = predict(ctx, &chip, shape, &layers, &x);
                for v in &vals {
                    let mut x2 = x.clone();
                    x2[*feature] = *v;
                    let p = predict(ctx, &chip, shape, &layers, &x2);
                    let diff = chip.gate().sub(ctx, p, p0);
                    let gated = chip.gate().mul(ctx, diff, *is_real);
                    chip.gate().assert_is_const(ctx, &gated, &Fr::zero());
                }
            }
        }
        (
            ChunkKind::Combine {
                chunks,
                groups,
                rule,
                reveal,
            },
            AuditWitness::Combine { counts, salts },
        ) => {
            if counts.len() != *chunks
                || salts.len() != *chunks
                || counts.iter().any(|c| c.len() != *groups)
            {
                return bad(&format!("expects {chunks} chunks of {groups} counts"));
            }
            let gate = chip.gate();
            let mut sums = vec![ctx.load_zero(); *groups];
            for (i, (c, s)) in counts.iter().zip(salts).enumerate() {
                let cells: Vec<_> = c
                    .iter()
                    .map(|&v| {
                        let a = ctx.load_witness(Fr::from(v));
                        chip.range.range_check(ctx, a, COUNT_BITS);
                        a
                    })
                    .collect();
                let cc = commit_counts(ctx, gate, &h, *s, &cells);
                ctx.constrain_equal(&cc, &pubs[i]);
                for (g, a) in cells.iter().enumerate() {
                    sums[g] = gate.add(ctx, sums[g], *a);
                }
            }
            let nums = &pubs[*chunks..*chunks + rule.num_params()];
            for n in nums {
                chip.range.range_check(ctx, *n, COUNT_BITS);
            }
            let one = QuantumCell::Constant(Fr::one());
            match rule {
                RuleKind::AtLeast => {
                    // t <= S  <=>  t < S + 1
                    let s1 = gate.add(ctx, sums[0], one);
                    chip.range.check_less_than(ctx, nums[0], s1, COUNT_BITS + 8);
                }
                RuleKind::AtMost => {
                    let t1 = gate.add(ctx, nums[0], one);
                    chip.range.check_less_than(ctx, sums[0], t1, COUNT_BITS + 8);
                }
                RuleKind::Gap => {
                    // |c_a n_b - c_b n_a| * den <= num * n_a * n_b, with
                    // n_a, n_b >= 1 (an empty group makes both sides 0).
                    let (na, nb, num, den) = (nums[0], nums[1], nums[2], nums[3]);
                    for n in [na, nb] {
                        let empty = gate.is_zero(ctx, n);
                        gate.assert_is_const(ctx, &empty, &Fr::zero());
                    }
                    let a = gate.mul(ctx, sums[0], nb);
                    let a = gate.mul(ctx, a, den);
                    let b = gate.mul(ctx, sums[1], na);
                    let b = gate.mul(ctx, b, den);
                    let t = gate.mul(ctx, num, na);
                    let t = gate.mul(ctx, t, nb);
                    let bits = 4 * COUNT_BITS + 4;
                    let bt = gate.add(ctx, b, t);
                    let bt = gate.add(ctx, bt, one);
                    chip.range.check_less_than(ctx, a, bt, bits);
                    let at = gate.add(ctx, a, t);
                    let at = gate.add(ctx, at, one);
                    chip.range.check_less_than(ctx, b, at, bits);
                }
            }
            if *reveal {
                let off = *chunks + rule.num_params();
                for (g, s) in sums.iter().enumerate() {
                    ctx.constrain_equal(s, &pubs[off + g]);
                }
            }
        }
        _ => return bad("the witness does not fit this circuit kind"),
    }
    builder.assigned_instances = vec![pubs];
    StepCircuit::assemble(builder, &chip, &h, shape.k, params)
}

fn check_records(
    shape: &AuditShape,
    features: &[Vec<i64>],
    labels: &[i64],
    salts: &[u128],
) -> Result<()> {
    let d = shape.arch.input_dim();
    if features.len() != shape.records
        || labels.len() != shape.records
        || salts.len() != shape.records
        || features.iter().any(|x| x.len() != d)
    {
        return Err(CircuitError::Shape(format!(
            "a {} chunk holds {} records of {d} features",
            shape.kind.name(),
            shape.records
        )));
    }
    Ok(())
}

/// `is_real[i] = [i < n]` for the chunk's positions (`n` public, range-checked).
fn real_flags(
    ctx: &mut Context<Fr>,
    chip: &FixedChip,
    records: usize,
    n: AssignedValue<Fr>,
) -> Vec<AssignedValue<Fr>> {
    let bits = crate::fixed_chip::bits_of(records as u128) + 1;
    chip.range.range_check(ctx, n, bits);
    (0..records)
        .map(|i| {
            chip.range
                .is_less_than(ctx, QuantumCell::Constant(Fr::from(i as u64)), n, bits)
        })
        .collect()
}

/// A leaf (0 at padding positions) and `(is_real, features)` per position.
type DataLeaf = (
    AssignedValue<Fr>,
    (AssignedValue<Fr>, Vec<AssignedValue<Fr>>),
);

#[allow(clippy::too_many_arguments)]
fn data_leaves(
    ctx: &mut Context<Fr>,
    chip: &FixedChip,
    h: &PoseidonChip,
    shape: &AuditShape,
    features: &[Vec<i64>],
    labels: &[i64],
    salts: &[u128],
    n: AssignedValue<Fr>,
) -> Vec<DataLeaf> {
    let reals = real_flags(ctx, chip, shape.records, n);
    let gate = chip.gate();
    reals
        .into_iter()
        .enumerate()
        .map(|(i, is_real)| {
            let x: Vec<_> = features[i]
                .iter()
                .map(|&v| chip.load_value(ctx, v))
                .collect();
            let y = ctx.load_witness(fe(labels[i] as i128));
            let s = ctx.load_witness(fe_u128(salts[i]));
            let leaf = hash::leaf(ctx, gate, h, s, y, &x, shape.fx.value_bits);
            let leaf = gate.mul(ctx, leaf, is_real);
            (leaf, (is_real, x))
        })
        .collect()
}

/// Root of a power-of-two list of leaves.
fn subtree_root(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    h: &PoseidonChip,
    mut level: Vec<AssignedValue<Fr>>,
) -> AssignedValue<Fr> {
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| hash::node(ctx, gate, h, p[0], p[1]))
            .collect();
    }
    level[0]
}

/// `1` when `x` lies in one of the inclusive ranges, else `0` (values signed, range-checked).
fn in_ranges(
    ctx: &mut Context<Fr>,
    chip: &FixedChip,
    x: AssignedValue<Fr>,
    bounds: &[(AssignedValue<Fr>, AssignedValue<Fr>)],
) -> AssignedValue<Fr> {
    let gate = chip.gate();
    let b = chip.fx.value_bits;
    let half = QuantumCell::Constant(fe(1i128 << (b - 1)));
    let xs = gate.add(ctx, x, half);
    let mut outside = ctx.load_constant(Fr::one());
    for (lo, hi) in bounds {
        chip.signed(ctx, *lo);
        chip.signed(ctx, *hi);
        let los = gate.add(ctx, *lo, half);
        let his = gate.add(ctx, *hi, half);
        let below = chip.range.is_less_than(ctx, xs, los, b as usize + 1);
        let above = chip.range.is_less_than(ctx, his, xs, b as usize + 1);
        let not_below = gate.not(ctx, below);
        let not_above = gate.not(ctx, above);
        let inside = gate.mul(ctx, not_below, not_above);
        let not_inside = gate.not(ctx, inside);
        outside = gate.mul(ctx, outside, not_inside);
    }
    gate.not(ctx, outside)
}

fn commit_counts(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    h: &PoseidonChip,
    salt: u128,
    counts: &[AssignedValue<Fr>],
) -> AssignedValue<Fr> {
    let mut input = vec![
        ctx.load_constant(Fr::from(TAG_COUNT)),
        ctx.load_witness(fe_u128(salt)),
    ];
    input.extend_from_slice(counts);
    h.hash_fix_len(ctx, gate, &input)
}

/// Per parameter matrix (convolutions first): weight columns (`cols[j]`
/// = the inputs of unit `j`) and biases.
type LoadedLayer = (Vec<Vec<AssignedValue<Fr>>>, Vec<AssignedValue<Fr>>);

/// Loads the weights (range-checked), checks `c_T = H(TAG_WEIGHTS, salt, pack(W))`.
fn load_model(
    ctx: &mut Context<Fr>,
    chip: &FixedChip,
    h: &PoseidonChip,
    shape: &AuditShape,
    w: &Weights,
    salt: u128,
    c_t: AssignedValue<Fr>,
) -> Result<Vec<LoadedLayer>> {
    w.check_shape(&shape.arch)?;
    let widths = shape
        .arch
        .convs()
        .map(|c| c.out_channels)
        .chain(shape.arch.layers.iter().map(|l| l.outputs));
    let mut flat = Vec::new();
    let mut layers = Vec::new();
    for (l, outputs) in w.all().zip(widths) {
        let wl: Vec<_> = l.w.iter().map(|&v| chip.load_value(ctx, v)).collect();
        let bl: Vec<_> = l.b.iter().map(|&v| chip.load_value(ctx, v)).collect();
        flat.extend(wl.iter().chain(&bl).copied());
        let inputs = wl.len() / outputs.max(1);
        let cols = (0..outputs)
            .map(|j| (0..inputs).map(|i| wl[i * outputs + j]).collect())
            .collect();
        layers.push((cols, bl));
    }
    let s = ctx.load_witness(fe_u128(salt));
    let c = hash::commit_weights(ctx, chip.gate(), h, s, &flat, shape.fx.value_bits);
    ctx.constrain_equal(&c, &c_t);
    Ok(layers)
}

/// The engine's prediction: the first index of the largest logit. The
/// stages run record by record (a convolution as one dot product per
/// output: audits are single-phase).
fn predict(
    ctx: &mut Context<Fr>,
    chip: &FixedChip,
    shape: &AuditShape,
    layers: &[LoadedLayer],
    x: &[AssignedValue<Fr>],
) -> AssignedValue<Fr> {
    let gate = chip.gate();
    let (convs, layers) = layers.split_at(shape.arch.convs().count());
    let mut a = x.to_vec();
    let mut conv = convs.iter();
    for st in &shape.arch.stages {
        a = match st {
            Stage::Conv(c) => {
                let Some((cols, bl)) = conv.next() else {
                    unreachable!("one loaded matrix per convolution")
                };
                let patches = im2col(ctx, c, std::slice::from_ref(&a));
                let mut out = Vec::with_capacity(c.out_channels * patches.len());
                for (col, b) in cols.iter().zip(bl) {
                    for patch in &patches {
                        let (z, bit) = chip.dense_unit(ctx, patch, col, *b);
                        out.push(chip.activate(ctx, c.activation, z, bit));
                    }
                }
                out
            }
            Stage::AvgPool(p) => avg_pool(ctx, chip, p, &a),
            Stage::MaxPool(p) => p
                .windows()
                .iter()
                .map(|w| {
                    let x: Vec<_> = w.iter().map(|&i| a[i]).collect();
                    chip.first_max(ctx, &x).1
                })
                .collect(),
        };
    }
    let nl = shape.arch.layers.len();
    for (l, (spec, (cols, bl))) in shape.arch.layers.iter().zip(layers).enumerate() {
        a = cols
            .iter()
            .zip(bl)
            .map(|(col, b)| {
                let (z, bit) = chip.dense_unit(ctx, &a, col, *b);
                // The last layer's activation (a sigmoid output) belongs to the loss.
                if l + 1 == nl {
                    z
                } else {
                    chip.activate(ctx, spec.activation, z, bit)
                }
            })
            .collect();
    }
    // A sigmoid output predicts class 1 when z > 0: the first maximum of [0, z].
    if let Loss::SigmoidBinaryCrossEntropy = shape.arch.loss() {
        a.insert(0, ctx.load_zero());
    }
    let (sel, _) = chip.first_max(ctx, &a);
    let idx: Vec<QuantumCell<Fr>> = (0..a.len())
        .map(|j| QuantumCell::Constant(Fr::from(j as u64)))
        .collect();
    gate.inner_product(ctx, sel.iter().copied(), idx)
}

/// The signed integer of a public value (0 when it is out of range, which
/// then fails the range checks).
pub fn public_int(v: &Fr) -> i64 {
    to_i128(v).and_then(|x| i64::try_from(x).ok()).unwrap_or(0)
}
