//! The value region: stored values range-checked in a row each, with their
//! lookup limbs in lookup columns, and matrix rows evaluated along the
//! challenge by a Horner accumulator in the same rows.
//!
//! A step range-checks every weight it loads, every new weight and every
//! scaled update remainder (about three values per parameter), and evaluates
//! the weight, new-weight and remainder matrices row by row along
//! `v = (1, r, r^2, ...)` ([`crate::freivalds`]). In halo2-base's vertical
//! gate a 32-bit value costs a limb chain of 7 cells plus 2 copies into
//! lookup columns, and an evaluation 3 cells per entry. Here a value costs
//! one row of a *lane*: its cell `x`, its limbs `l_0..l_(n-1)` (lookup
//! columns, looked up in halo2-base's range table `[0, 2^L)`), and one
//! second-phase accumulator cell `a`.
//!
//! Step circuits use the region when laid out at `k >= 17`
//! ([`crate::step::uses_value_region`]): a lane is a whole column whatever
//! it holds, so a small circuit keeps halo2-base's limb chains.
//!
//! # Lanes and rows
//! Two kinds of lanes: *value* lanes (signed `b`-bit values, `b` the
//! stored-value width; `n = ceil(b / L)` limbs, and a column `t` holding
//! `2^(L - q) l_(n-1)` when the top limb has only `q < L` bits) and
//! *remainder* lanes (scaled remainders `y = 2^s r`, whole limbs). Per row,
//! with the fixed column `o` and `S = sum_i 2^(L i) l_i`:
//!
//! ```text
//! q_plus:  x = o + S          (a value: o = -2^(b-1); a remainder: o = 0)
//! q_minus: x = o - S          (a remainder's complement: o = 2^s (d - 1))
//! q_top:   t = 2^(L - q) l_(n-1)
//! q_step:  a = x + r a_next   (inside an evaluated row)
//! q_end:   a = x              (its last entry)
//! ```
//!
//! A remainder lane has the cell `x` (with `o`, `q_plus` and `q_minus`)
//! only where the circuit has complements, which are tied to their
//! remainders through `x`. Without them (the divisor `d` a power of two,
//! so `2^e = d` and the limbs' range alone gives `r < d`) a remainder is
//! read by nothing but its row's evaluation, so the lane reads the limbs'
//! sum instead (`q_step: a = S + r a_next`, `q_end: a = S`;
//! [`remainder_lane_columns`]), and every row of such a lane belongs to an
//! evaluated group ([`ValueRecorder::remainders`] evaluates every
//! remainder row; only complements are not, and they need `x`).
//!
//! # Soundness argument
//! - *Range.* Every limb is an integer in `[0, 2^L)` (the lookup), so `S` is
//!   an integer in `[0, 2^(n L))`, and `t`'s lookup bounds the top limb to
//!   `q` bits: `S < 2^b` for a value. The gate makes `x` the field element
//!   `o + S` (or `o - S`): exactly the range `[-2^(b-1), 2^(b-1))` halo2-base's
//!   limb chain enforces ([`crate::fixed_chip::FixedChip::limb_chain`]), and
//!   `[0, 2^(n L))` (`o - [0, 2^(n L))`) for remainders, whose `n L` is the
//!   padded width `e + s` of [`crate::fixed_chip::FixedChip::scaled_remainder`].
//!   Remainders of another width than the region's are checked by the limb
//!   chain instead. In a remainder lane without `x`, the evaluation reads
//!   `S` itself, the same integer in `[0, 2^(n L))`.
//! - *Evaluations.* `a` is a second-phase column: the prover fills it after
//!   the challenge `r` is drawn, but the gate reads `r` itself (not a cell),
//!   and `x` (in a lane without it, the limbs) is first-phase, committed
//!   before `r` exists. Along an evaluated
//!   row of `p` entries laid out in consecutive rows `x_0..x_(p-1)`,
//!   `q_step` on the first `p - 1` rows and `q_end` on the last force
//!   `a_0 = sum_j x_j r^j` (`sum_j S_j r^j` without `x`), the row's
//!   evaluation along `v`; the cell `a_0` is
//!   copy-constrained to the cell the second-phase checks read. Rows never
//!   run across lanes (a row that does not fit a lane's rest starts the next
//!   lane).
//! - *Copies.* Every `x` and every head `a_0` is a virtual cell of its own
//!   context ([`VALUE_CELLS`], [`EVALUATION_CELLS`]) mapped to its region
//!   cell, so halo2-base gates that read it are copy-constrained to it. A
//!   remainder of a lane without `x` has a virtual cell mapped to nothing:
//!   it only keys its row's evaluation, and its value is read by no
//!   constraint. A copy constraint on it would make key generation panic
//!   (halo2-base's copy manager refuses an unplaced cell); a prover cannot
//!   add one, since the permutation is the verifier's key, derived from the
//!   shape.

use halo2_base::halo2_proofs::circuit::{Region, Value};
use halo2_base::halo2_proofs::plonk::{
    Advice, Challenge, Column, ConstraintSystem, Error, Expression, Fixed, SecondPhase, Selector,
    TableColumn,
};
use halo2_base::halo2_proofs::poly::Rotation;
use halo2_base::utils::halo2::{raw_assign_advice, raw_assign_fixed};
use halo2_base::virtual_region::copy_constraints::{
    CopyConstraintManager, SharedCopyConstraintManager,
};
use halo2_base::{AssignedValue, Context};
use serde::{Deserialize, Serialize};

use crate::field::{fe, fe_u128};
use crate::freivalds::Evaluated;
use crate::hash::pow2;
use crate::Fr;

/// The context type of the region's value cells.
pub const VALUE_CELLS: &str = "zkaudit:value-region";
/// The context type of the region's evaluation cells (second phase).
pub const EVALUATION_CELLS: &str = "zkaudit:value-region-evaluations";

/// The region's shape: lanes of each kind and the remainders' limbs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueRegionParams {
    /// Lanes of signed stored values.
    pub value_lanes: usize,
    /// Lanes of scaled remainders.
    pub remainder_lanes: usize,
    /// Lookup limbs of a scaled remainder (0: no remainder lanes).
    pub remainder_limbs: usize,
    /// Whether remainder lanes hold each remainder's cell `x`: only where
    /// complements are tied to it (no default: every layout before circuit
    /// version 12 had the cell).
    pub remainder_cells: bool,
}

/// Columns of a value lane (and cells of a value's row): the value, the
/// accumulator, the limbs and, when the top limb is partial, its shift.
pub fn value_lane_columns(value_bits: u32, lookup_bits: usize) -> usize {
    if lookup_bits == 0 {
        return 0;
    }
    let vb = value_bits as usize;
    2 + vb.div_ceil(lookup_bits) + usize::from(!vb.is_multiple_of(lookup_bits))
}

/// Columns of a remainder lane: the accumulator, the limbs and, where
/// complements are tied to them, the remainders' cells.
pub fn remainder_lane_columns(limbs: usize, cells: bool) -> usize {
    1 + usize::from(cells) + limbs
}

/// The two kinds of lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Value = 0,
    Remainder = 1,
}

/// One range-checked value: `x = off + S` or, `minus`, `x = off - S`.
#[derive(Clone, Debug)]
struct Row {
    cell: AssignedValue<Fr>,
    off: i128,
    minus: bool,
    magnitude: u128,
}

/// Consecutive rows of one kind placed together; an evaluated group is a
/// matrix row evaluated along the challenge.
#[derive(Clone, Copy, Debug)]
struct Group {
    kind: Kind,
    start: usize,
    len: usize,
    evaluated: bool,
}

/// Values recorded during synthesis, in their groups.
#[derive(Debug)]
pub struct ValueRecorder {
    ctx: Context<Fr>,
    rows: [Vec<Row>; 2],
    groups: Vec<Group>,
    value_bits: usize,
    lookup_bits: usize,
    remainder_limbs: Option<usize>,
}

impl ValueRecorder {
    /// A recorder whose cells join `copy_manager`'s constraints. Its cells
    /// carry their identities even when only witnesses are generated (they
    /// key the evaluated rows, [`Evaluated`], in every stage alike).
    pub fn new(
        copy_manager: SharedCopyConstraintManager<Fr>,
        value_bits: u32,
        lookup_bits: usize,
    ) -> Self {
        ValueRecorder {
            ctx: Context::new(false, 0, VALUE_CELLS, 0, copy_manager),
            rows: [Vec::new(), Vec::new()],
            groups: Vec::new(),
            value_bits: value_bits as usize,
            lookup_bits,
            remainder_limbs: None,
        }
    }

    fn push(&mut self, kind: Kind, x: i128, off: i128, minus: bool) -> AssignedValue<Fr> {
        let cell = self.ctx.load_witness(fe(x));
        let d = if minus { off - x } else { x - off };
        // An out-of-range witness (only a corrupted one) gets limbs of
        // another value; the gate then fails.
        let magnitude = u128::try_from(d).unwrap_or(0);
        self.rows[kind as usize].push(Row {
            cell,
            off,
            minus,
            magnitude,
        });
        cell
    }

    fn group(
        &mut self,
        kind: Kind,
        values: &[(i128, i128, bool)],
        evaluated: bool,
    ) -> Vec<AssignedValue<Fr>> {
        let start = self.rows[kind as usize].len();
        let cells = values
            .iter()
            .map(|&(x, off, minus)| self.push(kind, x, off, minus))
            .collect();
        self.groups.push(Group {
            kind,
            start,
            len: values.len(),
            evaluated: evaluated && !values.is_empty(),
        });
        cells
    }

    /// Signed stored values `[-2^(b-1), 2^(b-1))`; `evaluated`: the values
    /// are one matrix row, evaluated along the challenge.
    pub fn values(&mut self, xs: &[i128], evaluated: bool) -> Vec<AssignedValue<Fr>> {
        let off = -(1i128 << (self.value_bits - 1));
        let rows: Vec<_> = xs.iter().map(|&x| (x, off, false)).collect();
        self.group(Kind::Value, &rows, evaluated)
    }

    /// Whether remainders of `bits` bits (whole limbs) are checked here:
    /// the first width asked for is the region's.
    pub fn takes_remainders(&mut self, bits: usize) -> bool {
        if bits == 0 || !bits.is_multiple_of(self.lookup_bits) {
            return false;
        }
        let limbs = bits / self.lookup_bits;
        *self.remainder_limbs.get_or_insert(limbs) == limbs
    }

    /// Scaled remainders `y` in `[0, 2^(n L))` (one evaluated matrix row)
    /// and, with `top = Some(2^s (d - 1))`, each `top - y` too, in rows of
    /// their own whose cells are constrained equal to the first.
    pub fn remainders(
        &mut self,
        ctx: &mut Context<Fr>,
        ys: &[i128],
        top: Option<i128>,
    ) -> Vec<AssignedValue<Fr>> {
        let rows: Vec<_> = ys.iter().map(|&y| (y, 0, false)).collect();
        let cells = self.group(Kind::Remainder, &rows, true);
        if let Some(top) = top {
            for (&y, cell) in ys.iter().zip(&cells) {
                let other = self.group(Kind::Remainder, &[(y, top, true)], false);
                ctx.constrain_equal(cell, &other[0]);
            }
        }
        cells
    }

    /// The recorded values placed in lanes of `usable` rows.
    pub fn layout(&self, usable: usize) -> Result<ValueLayout, String> {
        let mut places: [Vec<(usize, usize)>; 2] = [
            vec![(0, 0); self.rows[0].len()],
            vec![(0, 0); self.rows[1].len()],
        ];
        let mut cursor = [(0usize, 0usize); 2];
        let mut used = [false; 2];
        for g in &self.groups {
            if g.len == 0 {
                continue;
            }
            if g.len > usable {
                return Err(format!(
                    "a matrix row of {} entries is longer than a column ({usable} rows)",
                    g.len
                ));
            }
            let k = g.kind as usize;
            let (lane, row) = &mut cursor[k];
            if *row + g.len > usable {
                *lane += 1;
                *row = 0;
            }
            for i in 0..g.len {
                places[k][g.start + i] = (*lane, *row + i);
            }
            *row += g.len;
            used[k] = true;
        }
        let lanes = [0, 1].map(|k| if used[k] { cursor[k].0 + 1 } else { 0 });
        Ok(ValueLayout {
            rows: self.rows.clone(),
            groups: self.groups.clone(),
            places,
            tamper: None,
            params: ValueRegionParams {
                value_lanes: lanes[0],
                remainder_lanes: lanes[1],
                remainder_limbs: if lanes[1] > 0 {
                    self.remainder_limbs.unwrap_or(0)
                } else {
                    0
                },
                remainder_cells: self.rows[1].iter().any(|r| r.minus),
            },
        })
    }
}

/// A corruption of the region's witness, for the soundness tests only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionTamper {
    /// Value row `i` holds `x + 2^b` in the region, its limbs consistent
    /// with it (the top limb then leaves the table).
    OutOfRange(usize),
    /// Value row `i`'s limbs are those of `x + 1`.
    Limbs(usize),
    /// Remainder row `i`'s limbs are those of `y + 1`, its cell and the
    /// evaluation left as they were.
    RemainderLimbs(usize),
    /// The `n`-th evaluated row's accumulator at its head is one more.
    Head(usize),
}

/// The recorded values with their places: what the region assigns.
#[derive(Clone, Debug, Default)]
pub struct ValueLayout {
    rows: [Vec<Row>; 2],
    groups: Vec<Group>,
    places: [Vec<(usize, usize)>; 2],
    /// The lanes this layout needs.
    pub params: ValueRegionParams,
    /// Soundness tests only: the witness corruption to assign.
    pub tamper: Option<RegionTamper>,
}

impl ValueLayout {
    /// Rows used, over all lanes.
    pub fn rows(&self) -> usize {
        self.rows[0].len() + self.rows[1].len()
    }

    /// Rows used by stored values and by scaled remainders.
    pub fn rows_by_kind(&self) -> (usize, usize) {
        (self.rows[0].len(), self.rows[1].len())
    }

    /// Cells used (value, limbs, top-limb shift, accumulator per row), for
    /// cell counts.
    pub fn cells(&self, value_bits: u32, lookup_bits: usize) -> usize {
        if lookup_bits == 0 {
            return 0;
        }
        self.rows[0].len() * value_lane_columns(value_bits, lookup_bits)
            + self.rows[1].len()
                * remainder_lane_columns(self.params.remainder_limbs, self.params.remainder_cells)
    }

    /// The evaluated groups' cells, each a matrix row.
    fn evaluated(&self) -> impl Iterator<Item = (&Group, &[Row])> {
        self.groups
            .iter()
            .filter(|g| g.evaluated)
            .map(|g| (g, &self.rows[g.kind as usize][g.start..g.start + g.len]))
    }

    /// The evaluations of the recorded matrix rows as cells of `ctx` (a
    /// context of type [`EVALUATION_CELLS`]; values along `r`), keyed by
    /// the rows' cells for the second phase's checks.
    pub fn evaluations(&self, ctx: &mut Context<Fr>, r: Fr) -> Evaluated {
        let mut out = Evaluated::default();
        for (_, rows) in self.evaluated() {
            let a = rows
                .iter()
                .rev()
                .fold(Fr::zero(), |acc, row| *row.cell.value() + r * acc);
            let cell = ctx.load_witness(a);
            out.insert(&rows.iter().map(|row| row.cell).collect::<Vec<_>>(), cell);
        }
        out
    }
}

/// A lane's cell `x` with what ties it to the limbs.
#[derive(Clone, Debug)]
struct Cells {
    x: Column<Advice>,
    off: Column<Fixed>,
    q_plus: Selector,
    q_minus: Selector,
}

/// The columns of one lane.
#[derive(Clone, Debug)]
struct Lane {
    /// None: a remainder lane without complements, whose evaluation reads
    /// the limbs' sum.
    cells: Option<Cells>,
    a: Column<Advice>,
    limbs: Vec<Column<Advice>>,
    top: Option<Column<Advice>>,
    q_step: Selector,
    q_end: Selector,
}

/// The region's configuration.
#[derive(Clone, Debug)]
pub struct ValueConfig {
    lanes: [Vec<Lane>; 2],
    /// Top-limb bits `q` of a value (`L` when whole).
    top_bits: usize,
    lookup_bits: usize,
    value_bits: usize,
}

impl ValueConfig {
    /// Configures the lanes of `params`, limbs looked up in `table`
    /// (`[0, 2^lookup_bits)`), evaluations along `challenge`.
    pub fn configure(
        meta: &mut ConstraintSystem<Fr>,
        params: ValueRegionParams,
        value_bits: u32,
        lookup_bits: usize,
        table: TableColumn,
        challenge: Challenge,
    ) -> Self {
        let vb = value_bits as usize;
        let value_limbs = vb.div_ceil(lookup_bits);
        let top_bits = vb - (value_limbs - 1) * lookup_bits;
        let mut lane = |limbs: usize, with_top: bool, with_cells: bool| {
            let cells = with_cells.then(|| {
                let x = meta.advice_column();
                meta.enable_equality(x);
                x
            });
            let a = meta.advice_column_in(SecondPhase);
            meta.enable_equality(a);
            let limbs: Vec<_> = (0..limbs).map(|_| meta.advice_column()).collect();
            let top = with_top.then(|| meta.advice_column());
            for &c in limbs.iter().chain(&top) {
                meta.lookup("value limb", |m| {
                    vec![(m.query_advice(c, Rotation::cur()), table)]
                });
            }
            let lane = Lane {
                cells: cells.map(|x| Cells {
                    x,
                    off: meta.fixed_column(),
                    q_plus: meta.selector(),
                    q_minus: meta.selector(),
                }),
                a,
                limbs,
                top,
                q_step: meta.selector(),
                q_end: meta.selector(),
            };
            let l = lane.clone();
            meta.create_gate("value region", |m| {
                let s = l.limbs.iter().enumerate().fold(
                    Expression::Constant(Fr::zero()),
                    |acc, (i, &c)| {
                        acc + m.query_advice(c, Rotation::cur())
                            * Expression::Constant(pow2((lookup_bits * i) as u32))
                    },
                );
                let a = m.query_advice(l.a, Rotation::cur());
                let a_next = m.query_advice(l.a, Rotation::next());
                let r = m.query_challenge(challenge);
                let mut gates = Vec::with_capacity(5);
                // What the evaluation reads: the cell where there is one,
                // else the limbs' sum (a remainder, `o = 0`).
                let (x, step, end) = match &l.cells {
                    Some(c) => {
                        let x = m.query_advice(c.x, Rotation::cur());
                        let off = m.query_fixed(c.off, Rotation::cur());
                        let q_plus = m.query_selector(c.q_plus);
                        let q_minus = m.query_selector(c.q_minus);
                        gates.push((
                            "x = o + S",
                            q_plus.clone() * (x.clone() - off.clone() - s.clone()),
                        ));
                        gates.push(("x = o - S", q_minus * (x.clone() - off + s)));
                        if let (Some(t), Some(&top)) = (l.top, l.limbs.last()) {
                            let shift = Expression::Constant(pow2((lookup_bits - top_bits) as u32));
                            gates.push((
                                "t = 2^(L - q) l_top",
                                q_plus
                                    * (m.query_advice(t, Rotation::cur())
                                        - shift * m.query_advice(top, Rotation::cur())),
                            ));
                        }
                        (x, "a = x + r a_next", "a = x")
                    }
                    None => (s, "a = S + r a_next", "a = S"),
                };
                gates.push((
                    step,
                    m.query_selector(l.q_step) * (a.clone() - x.clone() - r * a_next),
                ));
                gates.push((end, m.query_selector(l.q_end) * (a - x)));
                gates
            });
            lane
        };
        let values = (0..params.value_lanes)
            .map(|_| lane(value_limbs, top_bits < lookup_bits, true))
            .collect();
        let remainders = (0..params.remainder_lanes)
            .map(|_| lane(params.remainder_limbs, false, params.remainder_cells))
            .collect();
        ValueConfig {
            lanes: [values, remainders],
            top_bits,
            lookup_bits,
            value_bits: vb,
        }
    }

    /// Assigns the first phase: values, limbs, offsets and selectors; maps
    /// every value cell to its place when `copy` is given.
    pub fn assign(
        &self,
        region: &mut Region<Fr>,
        layout: &ValueLayout,
        mut copy: Option<&mut CopyConstraintManager<Fr>>,
    ) -> Result<(), Error> {
        let l = self.lookup_bits;
        for k in 0..2 {
            if layout.params_lanes(k) > self.lanes[k].len() {
                return Err(Error::Synthesis);
            }
        }
        let mut evaluated_rows = [
            vec![None; layout.rows[0].len()],
            vec![None; layout.rows[1].len()],
        ];
        for g in layout.groups.iter().filter(|g| g.evaluated) {
            for i in 0..g.len {
                evaluated_rows[g.kind as usize][g.start + i] = Some(i + 1 == g.len);
            }
        }
        for (k, (rows, places)) in layout.rows.iter().zip(&layout.places).enumerate() {
            for (i, row) in rows.iter().enumerate() {
                let (lane, at) = places[i];
                let lane = &self.lanes[k][lane];
                let (mut x, mut row) = (*row.cell.value(), row.clone());
                match layout.tamper {
                    Some(RegionTamper::OutOfRange(t)) if k == 0 && t == i => {
                        let b = self.value_bits as u32;
                        x += pow2(b);
                        row.magnitude += 1u128 << b;
                    }
                    Some(RegionTamper::Limbs(t)) if k == 0 && t == i => row.magnitude += 1,
                    Some(RegionTamper::RemainderLimbs(t)) if k == 1 && t == i => row.magnitude += 1,
                    _ => {}
                }
                match &lane.cells {
                    Some(c) => {
                        let cell = raw_assign_advice(region, c.x, at, Value::known(x));
                        if let (Some(cm), Some(v)) = (copy.as_deref_mut(), row.cell.cell) {
                            cm.assigned_advices.insert(v, cell.cell());
                        }
                        raw_assign_fixed(region, c.off, at, fe(row.off));
                        if row.minus {
                            c.q_minus.enable(region, at)?;
                        } else {
                            c.q_plus.enable(region, at)?;
                        }
                    }
                    // Only a plain remainder (`x = S`) has no cell to hold.
                    None if row.minus || row.off != 0 => return Err(Error::Synthesis),
                    None => {}
                }
                let n = lane.limbs.len();
                for (j, &c) in lane.limbs.iter().enumerate() {
                    // The top limb keeps every higher bit: out of the table
                    // exactly when the value is out of range.
                    let limb = match l * j {
                        s if s >= 128 => 0,
                        s if j + 1 == n => row.magnitude >> s,
                        s => (row.magnitude >> s) & ((1u128 << l) - 1),
                    };
                    raw_assign_advice(region, c, at, Value::known(fe_u128(limb)));
                    if let (true, Some(t)) = (j + 1 == n, lane.top) {
                        let shifted = fe_u128(limb) * pow2((l - self.top_bits) as u32);
                        raw_assign_advice(region, t, at, Value::known(shifted));
                    }
                }
                match evaluated_rows[k][i] {
                    Some(false) => lane.q_step.enable(region, at)?,
                    Some(true) => lane.q_end.enable(region, at)?,
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// Assigns the second phase: the accumulators of every evaluated row
    /// along `r`, each head mapped to its cell of `evaluated` when `copy`
    /// is given.
    pub fn assign_evaluations(
        &self,
        region: &mut Region<Fr>,
        layout: &ValueLayout,
        r: Fr,
        evaluated: &Evaluated,
        mut copy: Option<&mut CopyConstraintManager<Fr>>,
    ) -> Result<(), Error> {
        for (n, (g, rows)) in layout.evaluated().enumerate() {
            let k = g.kind as usize;
            let mut acc = Fr::zero();
            for (i, row) in rows.iter().enumerate().rev() {
                acc = *row.cell.value() + r * acc;
                if i == 0 && layout.tamper == Some(RegionTamper::Head(n)) {
                    acc += Fr::one();
                }
                let (lane, at) = layout.places[k][g.start + i];
                let cell = raw_assign_advice(region, self.lanes[k][lane].a, at, Value::known(acc));
                if i == 0 {
                    let cells: Vec<_> = rows.iter().map(|row| row.cell).collect();
                    if let (Some(cm), Some(head)) = (copy.as_deref_mut(), evaluated.get(&cells)) {
                        if let Some(c) = head.cell {
                            cm.assigned_advices.insert(c, cell.cell());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl ValueLayout {
    fn params_lanes(&self, k: usize) -> usize {
        if k == 0 {
            self.params.value_lanes
        } else {
            self.params.remainder_lanes
        }
    }
}
