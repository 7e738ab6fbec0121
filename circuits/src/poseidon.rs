//! A dedicated Poseidon region: a row per full round or per two partial
//! rounds (38 rows of six columns) instead of ~2,250 flex-gate cells per
//! permutation.
//!
//! The permutation is standard Poseidon over BN254 with width 3, rate 2, the
//! x^5 S-box, 8 full and 57 partial rounds, and the round constants and MDS
//! matrix of the reference Grain generator (`poseidon-primitives`), i.e. the
//! same permutation halo2-base's optimized sponge computes (tested below), so
//! commitments are plain halo2-base Poseidon hashes.
//!
//! # Layout
//! A permutation occupies a block of [`BLOCK_ROWS`] `= 38` rows in one *lane*
//! of six advice columns: the state `s_0..s_2` before each row's round(s),
//! three helper cells `x_0..x_2`, and in the last row the output. A full
//! round takes a row; the partial rounds take a row per *two* rounds (the
//! 57th alone), since a partial round's S-box touches one element only and
//! the helpers have room for the second round's. All lanes share the
//! round-constant fixed columns (`rc` of a row's first round, `rc2` of its
//! second) and the three selectors, so lanes fill the same blocks side by
//! side. Per row, with `M` the MDS matrix and `v_j = s_j + rc_j`:
//!
//! ```text
//! full:    x_j = v_j^2 (all j);  s'_i = sum_j M_ij x_j^2 v_j
//! partial: x_0 = v_0^2;          s'_i = M_i0 x_0^2 v_0 + sum_{j>0} M_ij v_j
//! double:  x_0 = v_0^2;          t_i  = M_i0 x_0^2 v_0 + sum_{j>0} M_ij v_j  (round r)
//!          x_1 = t_0;  w_j = t_j + rc2_j (w_0 = x_1 + rc2_0);  x_2 = w_0^2
//!          s'_i = M_i0 x_2^2 w_0 + sum_{j>0} M_ij w_j                       (round r + 1)
//! ```
//!
//! Every constraint has degree at most 3 in the cells (`t_1`, `t_2` are
//! degree-3 expressions used linearly; `t_0` is pinned to the cell `x_1`
//! before it is squared), 4 with the selector, below the degree 5 the
//! lookups already need. A double row is exactly two rounds of the
//! permutation: `x_1` is forced to round `r`'s first output and each
//! following quantity is a function of it, so the row admits one next state.
//! The input and output rows are copy-constrained to halo2-base cells; the
//! sponge (absorption, padding) runs in halo2-base arithmetic.

use std::cell::RefCell;
use std::sync::OnceLock;

use halo2_base::gates::{GateChip, GateInstructions};
use halo2_base::halo2_proofs::circuit::{Region, Value};
use halo2_base::halo2_proofs::plonk::{
    Advice, Column, ConstraintSystem, Error, Expression, Fixed, Selector, VirtualCells,
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
/// Rows per permutation block: one per full round, one per two partial
/// rounds (and one for an odd last), and the output.
pub const BLOCK_ROWS: usize = R_F + R_P.div_ceil(2) + 1;

/// What one row of a block computes: a full round, a partial round, or two
/// partial rounds, starting at the round it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Row {
    Full(usize),
    Partial(usize),
    Double(usize),
}

/// The rows of a block in order (the output row not included).
fn rows() -> &'static [Row] {
    static R: OnceLock<Vec<Row>> = OnceLock::new();
    R.get_or_init(|| {
        let mut rows = Vec::with_capacity(BLOCK_ROWS - 1);
        let mut r = 0;
        while r < ROUNDS {
            if is_full(r) {
                rows.push(Row::Full(r));
                r += 1;
            } else if r + 1 < ROUNDS && !is_full(r + 1) {
                rows.push(Row::Double(r));
                r += 2;
            } else {
                rows.push(Row::Partial(r));
                r += 1;
            }
        }
        rows
    })
}

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

/// The cells of one block, row by row: the state `s` and the helpers `x`
/// (zero where unused; the output row's are zero), computed by the gates'
/// own equations. `forged_x2` (soundness tests only) replaces the first
/// double row's `x_2`, the rest of the block following from it.
fn block(input: [Fr; T], forged_x2: Option<Fr>) -> Vec<([Fr; T], [Fr; T])> {
    let c = constants();
    let m = &c.mds;
    let mix = |y: [Fr; T]| -> [Fr; T] {
        [0, 1, 2].map(|i| (0..T).fold(Fr::zero(), |acc, j| acc + m[i][j] * y[j]))
    };
    let mut forged = forged_x2;
    let mut s = input;
    let mut out = Vec::with_capacity(BLOCK_ROWS);
    for row in rows() {
        let (x, next) = match *row {
            Row::Full(r) => {
                let v = [0, 1, 2].map(|j| s[j] + c.rc[r][j]);
                let x = v.map(|e| e * e);
                (x, mix([0, 1, 2].map(|j| x[j] * x[j] * v[j])))
            }
            Row::Partial(r) => {
                let v = [0, 1, 2].map(|j| s[j] + c.rc[r][j]);
                let x0 = v[0] * v[0];
                (
                    [x0, Fr::zero(), Fr::zero()],
                    mix([x0 * x0 * v[0], v[1], v[2]]),
                )
            }
            Row::Double(r) => {
                let v = [0, 1, 2].map(|j| s[j] + c.rc[r][j]);
                let x0 = v[0] * v[0];
                let t = mix([x0 * x0 * v[0], v[1], v[2]]);
                let w = [0, 1, 2].map(|j| t[j] + c.rc[r + 1][j]);
                let x2 = forged.take().unwrap_or(w[0] * w[0]);
                ([x0, t[0], x2], mix([x2 * x2 * w[0], w[1], w[2]]))
            }
        };
        out.push((s, x));
        s = next;
    }
    out.push((s, [Fr::zero(); T]));
    out
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

/// `s_j + rc_j` of the current row, per state element.
fn shifted(
    meta: &mut VirtualCells<'_, Fr>,
    lane: &Lane,
    rc: &[Column<Fixed>; T],
) -> Vec<Expression<Fr>> {
    (0..T)
        .map(|j| {
            meta.query_advice(lane.s[j], Rotation::cur()) + meta.query_fixed(rc[j], Rotation::cur())
        })
        .collect()
}

/// Element `i` of a partial round's output on `v`, whose first element's
/// S-box is `a^2 v_0` (`a = v_0^2`): `M_i0 a^2 v_0 + sum_{j>0} M_ij v_j`.
fn partial_mix(
    mds: &[[Fr; T]; T],
    i: usize,
    a: &Expression<Fr>,
    v: &[Expression<Fr>],
) -> Expression<Fr> {
    let sbox = Expression::Constant(mds[i][0]) * a.clone() * a.clone() * v[0].clone();
    (1..T).fold(sbox, |acc, j| {
        acc + Expression::Constant(mds[i][j]) * v[j].clone()
    })
}

/// The Poseidon region's columns and gates.
#[derive(Clone, Debug)]
pub struct PoseidonConfig {
    lanes: Vec<Lane>,
    rc: [Column<Fixed>; T],
    rc2: [Column<Fixed>; T],
    q_full: Selector,
    q_partial: Selector,
    q_double: Selector,
}

impl PoseidonConfig {
    /// Creates `lanes` lanes sharing constants and selectors; enables equality on the state columns.
    // Gate equations index the MDS matrix and state columns together.
    #[allow(clippy::needless_range_loop)]
    pub fn configure(meta: &mut ConstraintSystem<Fr>, lanes: usize) -> Self {
        let rc = [(); T].map(|_| meta.fixed_column());
        let rc2 = [(); T].map(|_| meta.fixed_column());
        let q_full = meta.selector();
        let q_partial = meta.selector();
        let q_double = meta.selector();
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
                let v = shifted(meta, lane, &rc);
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
                let v = shifted(meta, lane, &rc);
                let x0 = meta.query_advice(lane.x[0], Rotation::cur());
                let mut cons = vec![q.clone() * (x0.clone() - v[0].clone() * v[0].clone())];
                for i in 0..T {
                    let next = meta.query_advice(lane.s[i], Rotation::next());
                    cons.push(q.clone() * (next - partial_mix(&mds, i, &x0, &v)));
                }
                cons
            });
            meta.create_gate("poseidon two partial rounds", |meta| {
                let q = meta.query_selector(q_double);
                let v = shifted(meta, lane, &rc);
                let x: Vec<Expression<Fr>> = (0..T)
                    .map(|j| meta.query_advice(lane.x[j], Rotation::cur()))
                    .collect();
                // Round r: t = M (x_0^2 v_0, v_1, v_2).
                let t: Vec<Expression<Fr>> =
                    (0..T).map(|i| partial_mix(&mds, i, &x[0], &v)).collect();
                let mut cons = vec![
                    q.clone() * (x[0].clone() - v[0].clone() * v[0].clone()),
                    q.clone() * (x[1].clone() - t[0].clone()),
                ];
                // Round r + 1 on w = t + rc2, its first element read from x_1.
                let w: Vec<Expression<Fr>> = (0..T)
                    .map(|j| {
                        let tj = if j == 0 { x[1].clone() } else { t[j].clone() };
                        tj + meta.query_fixed(rc2[j], Rotation::cur())
                    })
                    .collect();
                cons.push(q.clone() * (x[2].clone() - w[0].clone() * w[0].clone()));
                for i in 0..T {
                    let next = meta.query_advice(lane.s[i], Rotation::next());
                    cons.push(q.clone() * (next - partial_mix(&mds, i, &x[2], &w)));
                }
                cons
            });
        }
        PoseidonConfig {
            lanes,
            rc,
            rc2,
            q_full,
            q_partial,
            q_double,
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
        let zero_block = block([Fr::zero(); T], None);
        let rows = rows();
        for b in 0..blocks {
            let base = b * BLOCK_ROWS;
            for (at, row) in rows.iter().enumerate() {
                let r = match *row {
                    Row::Full(r) => {
                        self.q_full.enable(region, base + at)?;
                        r
                    }
                    Row::Partial(r) => {
                        self.q_partial.enable(region, base + at)?;
                        r
                    }
                    Row::Double(r) => {
                        self.q_double.enable(region, base + at)?;
                        for j in 0..T {
                            raw_assign_fixed(region, self.rc2[j], base + at, c.rc[r + 1][j]);
                        }
                        r
                    }
                };
                for j in 0..T {
                    raw_assign_fixed(region, self.rc[j], base + at, c.rc[r][j]);
                }
            }
            for (l, lane) in self.lanes.iter().enumerate() {
                let req = requests.get(b * lanes + l);
                let cells = match req {
                    Some(q) => block(q.input.map(|a| *a.value()), None),
                    None => zero_block.clone(),
                };
                let last = cells.len() - 1;
                for (at, (st, x)) in cells.iter().enumerate() {
                    for j in 0..T {
                        let cell =
                            raw_assign_advice(region, lane.s[j], base + at, Value::known(st[j]));
                        if let (Some(q), Some(cm)) = (req, copy.as_deref_mut()) {
                            if at == 0 {
                                constrain_virtual_equals_external(
                                    region,
                                    q.input[j],
                                    cell.cell(),
                                    cm,
                                );
                            } else if at == last {
                                constrain_virtual_equals_external(
                                    region,
                                    q.output[j],
                                    cell.cell(),
                                    cm,
                                );
                            }
                        }
                        raw_assign_advice(region, lane.x[j], base + at, Value::known(x[j]));
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

    use halo2_base::halo2_proofs::circuit::{Layouter, SimpleFloorPlanner};
    use halo2_base::halo2_proofs::dev::MockProver;
    use halo2_base::halo2_proofs::plonk::Circuit;

    /// One permutation laid out in a lane, optionally with one advice cell
    /// (lane column `s` or `x` index, row) overwritten by one more.
    #[derive(Clone, Default)]
    struct OnePerm {
        corrupt: Option<(bool, usize, usize)>,
        /// Rewrites the block with the first double row's `x_2` set to this
        /// value and every later cell consistent with it.
        forge_x2: Option<u64>,
    }

    impl Circuit<Fr> for OnePerm {
        type Config = PoseidonConfig;
        type FloorPlanner = SimpleFloorPlanner;
        type Params = ();
        fn without_witnesses(&self) -> Self {
            self.clone()
        }
        fn configure(meta: &mut ConstraintSystem<Fr>) -> PoseidonConfig {
            PoseidonConfig::configure(meta, 1)
        }
        fn synthesize(
            &self,
            config: PoseidonConfig,
            mut layouter: impl Layouter<Fr>,
        ) -> Result<(), Error> {
            let mut ctx = Context::<Fr>::new(false, 0, "test", 0, Default::default());
            let input = [3u64, 5, 7].map(|v| ctx.load_witness(Fr::from(v)));
            let output = permute(input.map(|a| *a.value())).map(|v| ctx.load_witness(v));
            layouter.assign_region(
                || "poseidon",
                |mut region| {
                    config.assign(&mut region, &[PermRequest { input, output }], 100, None)?;
                    if let Some(v) = self.forge_x2 {
                        let lane = &config.lanes[0];
                        let cells = block(input.map(|a| *a.value()), Some(Fr::from(v)));
                        for (at, (st, x)) in cells.iter().enumerate() {
                            for j in 0..T {
                                raw_assign_advice(&mut region, lane.s[j], at, Value::known(st[j]));
                                raw_assign_advice(&mut region, lane.x[j], at, Value::known(x[j]));
                            }
                        }
                    }
                    if let Some((in_s, col, row)) = self.corrupt {
                        let lane = &config.lanes[0];
                        let column = if in_s { lane.s[col] } else { lane.x[col] };
                        raw_assign_advice(
                            &mut region,
                            column,
                            row,
                            Value::known(Fr::from(12345u64)),
                        );
                    }
                    Ok(())
                },
            )
        }
    }

    /// The region's rows are the permutation: an honest block passes (and
    /// ends in the permutation's output), a changed cell of a double
    /// partial-round row (its pinned first output `x_1`, its second square
    /// `x_2`, the state it leads to) or of a full round is rejected by the
    /// gates, and so is a whole block built on a wrong square.
    #[test]
    fn the_region_accepts_the_permutation_and_nothing_else() {
        let ok = MockProver::run(7, &OnePerm::default(), vec![]).unwrap();
        assert_eq!(ok.verify(), Ok(()));
        let first_double = rows()
            .iter()
            .position(|r| matches!(r, Row::Double(_)))
            .unwrap();
        let last_single = rows()
            .iter()
            .position(|r| matches!(r, Row::Partial(_)))
            .unwrap();
        assert_eq!(rows().len() + 1, BLOCK_ROWS);
        assert_eq!(BLOCK_ROWS, 38);
        for corrupt in [
            (false, 1, first_double),
            (false, 2, first_double + 3),
            (true, 0, first_double + 1),
            (true, 2, first_double + 5),
            (true, 1, last_single),
            (false, 1, 0),
            (true, 1, BLOCK_ROWS - 1),
        ] {
            let bad = OnePerm {
                corrupt: Some(corrupt),
                ..OnePerm::default()
            };
            let bad = MockProver::run(7, &bad, vec![]).unwrap();
            assert!(bad.verify().is_err(), "{corrupt:?} accepted");
        }
        // A whole block consistent with a wrong square in a double row: only
        // the square's own constraint can see it.
        let honest = block([3u64, 5, 7].map(Fr::from), None);
        assert_eq!(
            honest[BLOCK_ROWS - 1].0,
            permute([3u64, 5, 7].map(Fr::from))
        );
        let forged = OnePerm {
            forge_x2: Some(2),
            ..OnePerm::default()
        };
        let bad = MockProver::run(7, &forged, vec![]).unwrap();
        assert!(bad.verify().is_err(), "a forged square was accepted");
    }

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
