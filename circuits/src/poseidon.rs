//! A dedicated Poseidon region: one row per round instead of ~2,250 flex-gate
//! cells per permutation.
//!
//! The permutation is standard Poseidon over BN254 with width 3, rate 2, the
//! x^5 S-box, 8 full and 57 partial rounds, and the round constants and MDS
//! matrix of the reference Grain generator (`poseidon-primitives`), i.e. the
//! same permutation halo2-base's optimized sponge computes (tested below), so
//! commitments are plain halo2-base Poseidon hashes.
//!
//! # Layout
//! A permutation occupies a block of `ROUNDS + 1 = 66` rows in one *lane* of
//! six advice columns: the state `s_0..s_2` before each round and the squares
//! `x_j = (s_j + rc_j)^2`; the last row holds the output. All lanes share the
//! round-constant fixed columns and the two selectors, so lanes fill the same
//! blocks side by side. Per round row, with `M` the MDS matrix:
//!
//! ```text
//! full:    x_j = (s_j + rc_j)^2 (all j);  s'_i = sum_j M_ij * x_j^2 * (s_j + rc_j)
//! partial: x_0 = (s_0 + rc_0)^2;          s'_i = M_i0 * x_0^2 * (s_0 + rc_0) + sum_{j>0} M_ij (s_j + rc_j)
//! ```
//!
//! Degree 4 with the selector, below the degree 5 the lookups already need.
//! The input and output rows are copy-constrained to halo2-base cells; the
//! sponge (absorption, padding) runs in halo2-base arithmetic.

use std::cell::RefCell;
use std::sync::OnceLock;

use halo2_base::gates::{GateChip, GateInstructions};
use halo2_base::halo2_proofs::circuit::{Region, Value};
use halo2_base::halo2_proofs::plonk::{
    Advice, Column, ConstraintSystem, Error, Expression, Fixed, Selector,
};
use halo2_base::halo2_proofs::poly::Rotation;
use halo2_base::utils::halo2::{
    constrain_virtual_equals_external, raw_assign_advice, raw_assign_fixed,
};
use halo2_base::virtual_region::copy_constraints::CopyConstraintManager;
use halo2_base::{AssignedValue, Context, QuantumCell};
use poseidon_primitives::poseidon::primitives::Spec;

use crate::Fr;

/// Sponge width.
pub const T: usize = 3;
/// Sponge rate.
pub const RATE: usize = 2;
/// Full rounds.
pub const R_F: usize = 8;
/// Partial rounds.
pub const R_P: usize = 57;
/// Rounds per permutation.
pub const ROUNDS: usize = R_F + R_P;
/// Rows per permutation block (the states before each round plus the output).
pub const BLOCK_ROWS: usize = ROUNDS + 1;

#[derive(Debug)]
struct ZkSpec;

impl Spec<Fr, T, RATE> for ZkSpec {
    fn full_rounds() -> usize {
        R_F
    }
    fn partial_rounds() -> usize {
        R_P
    }
    fn sbox(val: Fr) -> Fr {
        let v2 = val * val;
        v2 * v2 * val
    }
    fn secure_mds() -> usize {
        0
    }
}

/// Round constants and MDS matrix.
pub struct Constants {
    /// `rc[r]` is added before the S-box of round `r`.
    pub rc: Vec<[Fr; T]>,
    /// The MDS matrix.
    pub mds: [[Fr; T]; T],
}

/// The shared constants.
pub fn constants() -> &'static Constants {
    static C: OnceLock<Constants> = OnceLock::new();
    C.get_or_init(|| {
        let (rc, mds, _) = ZkSpec::constants();
        Constants { rc, mds }
    })
}

fn is_full(round: usize) -> bool {
    !(R_F / 2..R_F / 2 + R_P).contains(&round)
}

fn pow5(x: Fr) -> Fr {
    let x2 = x * x;
    x2 * x2 * x
}

/// All states of a permutation: the input, then the state after each round.
pub fn trace(input: [Fr; T]) -> Vec<[Fr; T]> {
    let c = constants();
    let mut states = Vec::with_capacity(BLOCK_ROWS);
    let mut s = input;
    states.push(s);
    for r in 0..ROUNDS {
        let mut y = [Fr::zero(); T];
        for j in 0..T {
            let v = s[j] + c.rc[r][j];
            y[j] = if is_full(r) || j == 0 { pow5(v) } else { v };
        }
        let mut next = [Fr::zero(); T];
        for (i, n) in next.iter_mut().enumerate() {
            for (j, yj) in y.iter().enumerate() {
                *n += c.mds[i][j] * yj;
            }
        }
        s = next;
        states.push(s);
    }
    states
}

/// The permutation.
pub fn permute(input: [Fr; T]) -> [Fr; T] {
    trace(input)[ROUNDS]
}

/// One permutation to place in the region.
#[derive(Clone, Debug)]
pub struct PermRequest {
    /// Input state cells (halo2-base).
    pub input: [AssignedValue<Fr>; T],
    /// Output state cells (halo2-base).
    pub output: [AssignedValue<Fr>; T],
}

/// Records permutations in halo2-base and lays them out at synthesis.
#[derive(Debug, Default)]
pub struct PoseidonChip {
    /// Permutations in request order.
    pub requests: RefCell<Vec<PermRequest>>,
    /// Soundness tests only: the output of this permutation is corrupted.
    pub tamper_output: Option<usize>,
}

impl PoseidonChip {
    /// A chip with no permutations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Permutes a state: the output is a fresh witness tied to the input by the region.
    pub fn permute(
        &self,
        ctx: &mut Context<Fr>,
        input: [AssignedValue<Fr>; T],
    ) -> [AssignedValue<Fr>; T] {
        let mut out = permute(input.map(|a| *a.value()));
        if self.tamper_output == Some(self.requests.borrow().len()) {
            out[1] += Fr::one();
        }
        let output = out.map(|v| ctx.load_witness(v));
        self.requests
            .borrow_mut()
            .push(PermRequest { input, output });
        output
    }

    /// Fixed-length sponge hash, identical to halo2-base's `hash_fix_len_array`:
    /// capacity `2^64`, inputs absorbed `RATE` at a time, a 1 appended after the
    /// last input (an extra block when the length is a multiple of `RATE`);
    /// the output is the state's second element.
    pub fn hash_fix_len(
        &self,
        ctx: &mut Context<Fr>,
        gate: &GateChip<Fr>,
        inputs: &[AssignedValue<Fr>],
    ) -> AssignedValue<Fr> {
        let cap = Fr::from_raw([0, 1, 0, 0]); // 2^64
        let mut s = [ctx.load_constant(cap), ctx.load_zero(), ctx.load_zero()];
        let absorb =
            |ctx: &mut Context<Fr>, s: &mut [AssignedValue<Fr>; T], chunk: &[AssignedValue<Fr>]| {
                for (k, x) in chunk.iter().enumerate() {
                    s[1 + k] = gate.add(ctx, s[1 + k], *x);
                }
                if chunk.len() < RATE {
                    s[1 + chunk.len()] =
                        gate.add(ctx, s[1 + chunk.len()], QuantumCell::Constant(Fr::one()));
                }
            };
        for chunk in inputs.chunks(RATE) {
            absorb(ctx, &mut s, chunk);
            s = self.permute(ctx, s);
        }
        if inputs.len().is_multiple_of(RATE) {
            absorb(ctx, &mut s, &[]);
            s = self.permute(ctx, s);
        }
        s[1]
    }

    /// Number of lanes needed for the recorded permutations with `usable_rows` rows.
    pub fn lanes_needed(&self, usable_rows: usize) -> usize {
        let blocks = (usable_rows / BLOCK_ROWS).max(1);
        self.requests.borrow().len().div_ceil(blocks).max(1)
    }
}

/// One lane: six advice columns.
#[derive(Clone, Debug)]
pub struct Lane {
    s: [Column<Advice>; T],
    x: [Column<Advice>; T],
}

/// The Poseidon region's columns and gates.
#[derive(Clone, Debug)]
pub struct PoseidonConfig {
    lanes: Vec<Lane>,
    rc: [Column<Fixed>; T],
    q_full: Selector,
    q_partial: Selector,
}

impl PoseidonConfig {
    /// Creates `lanes` lanes sharing constants and selectors; enables equality on the state columns.
    // Gate equations index the MDS matrix and state columns together.
    #[allow(clippy::needless_range_loop)]
    pub fn configure(meta: &mut ConstraintSystem<Fr>, lanes: usize) -> Self {
        let rc = [(); T].map(|_| meta.fixed_column());
        let q_full = meta.selector();
        let q_partial = meta.selector();
        let mds = constants().mds;
        let lanes: Vec<Lane> = (0..lanes)
            .map(|_| {
                let s = [(); T].map(|_| {
                    let c = meta.advice_column();
                    meta.enable_equality(c);
                    c
                });
                let x = [(); T].map(|_| meta.advice_column());
                Lane { s, x }
            })
            .collect();
        for lane in &lanes {
            meta.create_gate("poseidon full round: s' = M (s + rc)^5", |meta| {
                let q = meta.query_selector(q_full);
                let v: Vec<Expression<Fr>> = (0..T)
                    .map(|j| {
                        meta.query_advice(lane.s[j], Rotation::cur())
                            + meta.query_fixed(rc[j], Rotation::cur())
                    })
                    .collect();
                let x: Vec<Expression<Fr>> = (0..T)
                    .map(|j| meta.query_advice(lane.x[j], Rotation::cur()))
                    .collect();
                let mut cons = Vec::new();
                for j in 0..T {
                    cons.push(q.clone() * (x[j].clone() - v[j].clone() * v[j].clone()));
                }
                for i in 0..T {
                    let next = meta.query_advice(lane.s[i], Rotation::next());
                    let mut sum = Expression::Constant(Fr::zero());
                    for j in 0..T {
                        sum = sum
                            + Expression::Constant(mds[i][j])
                                * x[j].clone()
                                * x[j].clone()
                                * v[j].clone();
                    }
                    cons.push(q.clone() * (next - sum));
                }
                cons
            });
            meta.create_gate("poseidon partial round: s' = M (sbox_0(s + rc))", |meta| {
                let q = meta.query_selector(q_partial);
                let v: Vec<Expression<Fr>> = (0..T)
                    .map(|j| {
                        meta.query_advice(lane.s[j], Rotation::cur())
                            + meta.query_fixed(rc[j], Rotation::cur())
                    })
                    .collect();
                let x0 = meta.query_advice(lane.x[0], Rotation::cur());
                let mut cons = vec![q.clone() * (x0.clone() - v[0].clone() * v[0].clone())];
                for i in 0..T {
                    let next = meta.query_advice(lane.s[i], Rotation::next());
                    let mut sum =
                        Expression::Constant(mds[i][0]) * x0.clone() * x0.clone() * v[0].clone();
                    for j in 1..T {
                        sum = sum + Expression::Constant(mds[i][j]) * v[j].clone();
                    }
                    cons.push(q.clone() * (next - sum));
                }
                cons
            });
        }
        PoseidonConfig {
            lanes,
            rc,
            q_full,
            q_partial,
        }
    }

    /// Number of lanes.
    pub fn num_lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Lays out the permutations block by block across the lanes; unused slots
    /// hold the permutation of the zero state. Copy-constrains inputs and
    /// outputs to their halo2-base cells when `copy` is given.
    // Rows, lanes and state columns are parallel arrays indexed together.
    #[allow(clippy::needless_range_loop)]
    pub fn assign(
        &self,
        region: &mut Region<Fr>,
        requests: &[PermRequest],
        usable_rows: usize,
        mut copy: Option<&mut CopyConstraintManager<Fr>>,
    ) -> Result<(), Error> {
        let c = constants();
        let lanes = self.lanes.len();
        let blocks = requests.len().div_ceil(lanes);
        if blocks * BLOCK_ROWS > usable_rows {
            return Err(Error::NotEnoughRowsAvailable { current_k: 0 });
        }
        let zero_trace = trace([Fr::zero(); T]);
        for b in 0..blocks {
            let base = b * BLOCK_ROWS;
            for r in 0..ROUNDS {
                if is_full(r) {
                    self.q_full.enable(region, base + r)?;
                } else {
                    self.q_partial.enable(region, base + r)?;
                }
                for j in 0..T {
                    raw_assign_fixed(region, self.rc[j], base + r, c.rc[r][j]);
                }
            }
            for (l, lane) in self.lanes.iter().enumerate() {
                let req = requests.get(b * lanes + l);
                let states = match req {
                    Some(q) => trace(q.input.map(|a| *a.value())),
                    None => zero_trace.clone(),
                };
                for (r, st) in states.iter().enumerate() {
                    for j in 0..T {
                        let cell =
                            raw_assign_advice(region, lane.s[j], base + r, Value::known(st[j]));
                        if let (Some(q), Some(cm)) = (req, copy.as_deref_mut()) {
                            if r == 0 {
                                constrain_virtual_equals_external(
                                    region,
                                    q.input[j],
                                    cell.cell(),
                                    cm,
                                );
                            } else if r == ROUNDS {
                                constrain_virtual_equals_external(
                                    region,
                                    q.output[j],
                                    cell.cell(),
                                    cm,
                                );
                            }
                        }
                    }
                    if r < ROUNDS {
                        for j in 0..T {
                            let v = st[j] + c.rc[r][j];
                            let x = if is_full(r) || j == 0 {
                                v * v
                            } else {
                                Fr::zero()
                            };
                            raw_assign_advice(region, lane.x[j], base + r, Value::known(x));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo2_base::gates::flex_gate::threads::SinglePhaseCoreManager;
    use halo2_base::poseidon::hasher::PoseidonHasher;

    #[test]
    fn matches_halo2_base_sponge() {
        let mut pool = SinglePhaseCoreManager::new(true, Default::default());
        let gate = GateChip::default();
        let ctx = pool.main();
        let mut h = PoseidonHasher::<Fr, T, RATE>::new(crate::hash::halo2_base_spec().clone());
        h.initialize_consts(ctx, &gate);
        let chip = PoseidonChip::new();
        for len in 1..7u64 {
            let xs: Vec<_> = (0..len)
                .map(|i| ctx.load_witness(Fr::from(i * 1_000_003 + 17)))
                .collect();
            let ours = chip.hash_fix_len(ctx, &gate, &xs);
            let theirs = h.hash_fix_len_array(ctx, &gate, &xs);
            assert_eq!(ours.value(), theirs.value(), "length {len}");
        }
    }
}
