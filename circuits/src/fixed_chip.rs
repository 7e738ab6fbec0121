//! The fixed-point chip: the constraints behind every operation of the model
//! crate's engine, with witnesses computed by that engine's own functions.
//!
//! # Soundness argument (no field wraparound)
//! Values live in BN254's scalar field `p ~ 2^253.6`; a signed integer `x` is
//! `x mod p`. Every stored value is checked to lie in `[-2^(b-1), 2^(b-1))`
//! (`b <= 48`): by [`FixedChip::check_value`] (`x + 2^(b-1)` range-checked to
//! `b` bits; in the step circuit a row of the value region,
//! [`crate::values`], otherwise a limb chain) where no sign is needed, and
//! by [`FixedChip::signed`]
//! (`x + 2^(b-1) = bit * 2^(b-1) + low`, `bit` boolean, `low` range-checked
//! to `b-1` bits) where the mask `bit = [x >= 0]` is the ReLU's.
//! Accumulators are sums of products of checked values, so their integer
//! magnitude is below `2^120` (checked statically by the model crate) and the
//! field holds them exactly.
//!
//! A rounded division of an accumulator `a` by a positive constant `d` is
//! `a + floor(d/2) = q*d + r` with `0 <= r < d` range-checked on both sides
//! (`r` to `bits(d-1)` bits and, unless `d` is a power of two, `d - 1 - r` too)
//! and `q` bounded (range-checked as a value, or because `w - q` is).
//! Both sides of the equation are then integers far below `p/2`, so the field
//! equation is an integer equation and `(q, r)` is unique: no other quotient
//! can be forged. Division by the variable softmax normaliser `S` is the same
//! with `r` and `S - 1 - r` range-checked and `S >= 2^f` guaranteed by the
//! maximal entry's `exp(0) = 2^f`.
//!
//! The softmax maximum is a prover-supplied one-hot selector (boolean entries,
//! sum 1) whose selected logit `m` satisfies `m - z_j >= 0` for every `j`
//! (range check), hence `m = max z`. `exp` comes from a fixed two-part table
//! looked up as `(key, value)` pairs (see [`crate::step`]); both table
//! indices are range-checked so a key of one table can never be read as a
//! key of the other.
//!
//! # Testing hooks
//! [`Tamper`] lets the soundness tests make the *witness generation* produce a
//! chosen wrong value (e.g. a remainder one too large with the quotient
//! adjusted so the linear equation still holds); the constraints must reject
//! it. Production code never sets it.

use std::cell::RefCell;

use halo2_base::gates::{GateChip, GateInstructions, RangeChip, RangeInstructions};
use halo2_base::{AssignedValue, Context, QuantumCell};
use zkaudit_model::exp::ExpTable;
use zkaudit_model::fixed::{div_round, FixedParams};

use crate::field::{fe, to_i128};
use crate::values::ValueRecorder;
use crate::Fr;

mod activation;
mod select;

/// Which witness the soundness tests corrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// The `n`-th rescale gets remainder `r + 2^s` and quotient `q - 1`.
    RemainderTooLarge(usize),
    /// The `n`-th rescale gets remainder `r - 2^s` and quotient `q + 1`.
    RemainderNegative(usize),
    /// The `n`-th sign decomposition gets its bit flipped (low part adjusted).
    FlipSignBit(usize),
    /// The `n`-th constant-divisor quotient (an SGD update) is off by one, remainder adjusted.
    UpdateQuotient(usize),
    /// The `n`-th constant-divisor quotient is one less, the remainder `r + d`
    /// (too large: only the bound `r <= d - 1` rejects it).
    UpdateQuotientLow(usize),
    /// The `n`-th cross-entropy gradient entry is off by one.
    Gradient(usize),
    /// The `n`-th exp evaluation uses a low-table value off by one.
    ExpValue(usize),
    /// The output of the `n`-th Poseidon permutation is off by one.
    PoseidonOutput(usize),
    /// The `n`-th exp evaluation reads its low part from the high table (index aliasing).
    ExpAlias(usize),
    /// Entry `(0, 0)` of the `n`-th matrix product is off by one.
    ProductEntry(usize),
    /// Entries `(0, 0)` and `(0, 1)` of the `n`-th matrix product are off by
    /// `+1` and `-1`: the product still agrees with `A.B` along `(1, 1, ...)`.
    ProductAlongOnes(usize),
    /// The `n`-th scaled update remainder `2^s r` is one more: still in
    /// range, no longer a multiple of `2^s`.
    ScaledRemainder(usize),
    /// The `n`-th sigmoid or tanh probability is one more, its remainder
    /// `S` less (the division's linear equation still holds).
    ActivationValue(usize),
    /// The `n`-th first-maximum selection (a max pooling window, a
    /// prediction) selects another entry.
    MaxSelect(usize),
    /// The `n`-th convolution's patch matrix has two entries of its first
    /// patch that hold different values swapped (a wrong im2col arrangement).
    Im2col(usize),
}

/// Counts of each operation, to address [`Tamper`] targets.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    rescale: usize,
    sign: usize,
    div_const: usize,
    grad: usize,
    exp: usize,
    scaled: usize,
    activation: usize,
    select: usize,
}

/// A softmax's exponentials `e`, normaliser `S`, `floor(S/2)` and the bits
/// of its division remainders ([`FixedChip::softmax_parts`]).
pub(crate) struct SoftmaxParts {
    /// `e_j = exp_fixed(m - z_j)`.
    pub(crate) e: Vec<AssignedValue<Fr>>,
    /// `S = sum_j e_j`.
    s: AssignedValue<Fr>,
    /// `floor(S/2)`.
    h: AssignedValue<Fr>,
    /// Bits of a remainder of a division by `S`.
    rbits: usize,
}

/// The native integer of an assigned value. Honest witnesses are always
/// within `i128`; a value outside it can only come from a corrupted witness,
/// whose constraints fail whatever we compute here.
pub fn int(a: &AssignedValue<Fr>) -> i128 {
    to_i128(a.value()).unwrap_or(0)
}

/// Number of bits of `x >= 0` (`bits(0) = 0`).
pub fn bits_of(x: u128) -> usize {
    (128 - x.leading_zeros()) as usize
}

/// The fixed-point chip.
#[derive(Debug)]
pub struct FixedChip {
    /// Range checks (and its gate).
    pub range: RangeChip<Fr>,
    /// The fixed-point format.
    pub fx: FixedParams,
    /// The softmax exp tables.
    pub exp: ExpTable,
    /// `(key, value)` pairs to look up in the exp table, assigned at synthesis.
    pub exp_lookups: RefCell<Vec<[AssignedValue<Fr>; 2]>>,
    /// Set by circuits that never evaluate `exp`: their layout leaves the table out.
    pub no_exp_table: bool,
    /// The value region's recorder, where the circuit has one
    /// ([`crate::values`]): stored values and update remainders are
    /// range-checked there instead of by limb chains.
    pub values: Option<RefCell<ValueRecorder>>,
    tamper: Option<Tamper>,
    counters: RefCell<Counters>,
}

impl FixedChip {
    /// A chip for a format, with a range chip of `lookup_bits`.
    pub fn new(range: RangeChip<Fr>, fx: FixedParams, tamper: Option<Tamper>) -> Self {
        FixedChip {
            range,
            exp: ExpTable::new(&fx),
            fx,
            exp_lookups: RefCell::new(Vec::new()),
            no_exp_table: false,
            values: None,
            tamper,
            counters: RefCell::new(Counters::default()),
        }
    }

    /// The witness corruption the soundness tests asked for (never set in
    /// production).
    pub(crate) fn tamper(&self) -> Option<Tamper> {
        self.tamper
    }

    /// The gate.
    pub fn gate(&self) -> &GateChip<Fr> {
        &self.range.gate
    }

    fn next(&self, f: impl FnOnce(&mut Counters) -> &mut usize) -> usize {
        let mut c = self.counters.borrow_mut();
        let slot = f(&mut c);
        let n = *slot;
        *slot += 1;
        n
    }

    /// Constrains `x` to `[-2^(b-1), 2^(b-1))` and returns the bit `[x >= 0]`.
    pub fn signed(&self, ctx: &mut Context<Fr>, x: AssignedValue<Fr>) -> AssignedValue<Fr> {
        let b = self.fx.value_bits;
        let half = 1i128 << (b - 1);
        let u = int(&x) + half;
        let (mut bit, mut low) = (u >> (b - 1), u & (half - 1));
        if self.tamper == Some(Tamper::FlipSignBit(self.next(|c| &mut c.sign))) {
            bit = 1 - bit;
            low = u - bit * half;
        }
        let bit = ctx.load_witness(fe(bit));
        let low = ctx.load_witness(fe(low));
        self.gate().assert_bit(ctx, bit);
        self.range.range_check(ctx, low, (b - 1) as usize);
        // x + 2^(b-1) = bit * 2^(b-1) + low
        let rhs = self
            .gate()
            .mul_add(ctx, bit, QuantumCell::Constant(fe(half)), low);
        let lhs = self.gate().add(ctx, x, QuantumCell::Constant(fe(half)));
        ctx.constrain_equal(&lhs, &rhs);
        bit
    }

    /// Constrains `x` to `[-2^(b-1), 2^(b-1))` without its sign:
    /// `x + 2^(b-1)` is decomposed into `b` bits of lookup limbs (cheaper
    /// than [`FixedChip::signed`] where no ReLU mask is needed).
    pub fn check_value(&self, ctx: &mut Context<Fr>, x: AssignedValue<Fr>) {
        let y = self.value(ctx, int(&x));
        ctx.constrain_equal(&x, &y);
    }

    /// Loads a stored value (weight, feature) and range-checks it.
    pub fn load_value(&self, ctx: &mut Context<Fr>, v: i64) -> AssignedValue<Fr> {
        self.value(ctx, v as i128)
    }

    /// Assigns `v`, constrained to `[-2^(b-1), 2^(b-1))`: in a row of the
    /// value region where the circuit has one, else by
    /// [`FixedChip::limb_chain`] (its cell is the chain's last).
    pub fn value(&self, ctx: &mut Context<Fr>, v: i128) -> AssignedValue<Fr> {
        if let Some(rec) = &self.values {
            return rec.borrow_mut().values(&[v], false)[0];
        }
        let b = self.fx.value_bits as usize;
        self.limb_chain(ctx, v, -(1i128 << (b - 1)), false, b)
    }

    /// Assigns one matrix row of values as [`FixedChip::value`] does; in
    /// the value region the row is also evaluated along the challenge
    /// there ([`crate::freivalds::Evaluated`]).
    pub fn value_row(&self, ctx: &mut Context<Fr>, vs: &[i128]) -> Vec<AssignedValue<Fr>> {
        match &self.values {
            Some(rec) => rec.borrow_mut().values(vs, true),
            None => vs.iter().map(|&v| self.value(ctx, v)).collect(),
        }
    }

    /// Assigns `x = offset + s * sum_i l_i 2^(L i)` (`s = -1` when `negate`,
    /// `L` the lookup bits) as one chain of the vertical gate
    /// `a + b c = d`, whose last cell, returned, holds `x`. Every limb is
    /// looked up, the top one to the bits left over, so `s (x - offset)`
    /// lies in `[0, 2^bits)`. A witness `x` outside that range leaves the
    /// limbs' sum different from `x` and the last gate fails. Costs
    /// `3 n + 1` cells for `n` limbs (`3 n - 2` when `offset = 0` and not
    /// negated), against `3 n + 2` for a 4-cell shift and halo2-base's range
    /// check, and it leaves the checked value in the chain's own last cell.
    pub fn limb_chain(
        &self,
        ctx: &mut Context<Fr>,
        x: i128,
        offset: i128,
        negate: bool,
        bits: usize,
    ) -> AssignedValue<Fr> {
        if bits == 0 {
            let cell = ctx.load_witness(fe(x));
            self.gate().assert_is_const(ctx, &cell, &fe(offset));
            return cell;
        }
        let l = self.range.lookup_bits();
        let n = bits.div_ceil(l);
        let magnitude = if negate { offset - x } else { x - offset } as u128;
        let limb = |i: usize| -> i128 {
            let shift = l * i;
            if shift >= 128 {
                0
            } else {
                ((magnitude >> shift) & ((1u128 << l) - 1)) as i128
            }
        };
        let base = |i: usize| -> i128 {
            let b = 1i128 << (l * i);
            if negate {
                -b
            } else {
                b
            }
        };
        let mut cells: Vec<QuantumCell<Fr>> = Vec::with_capacity(3 * n + 1);
        let mut gates = Vec::with_capacity(n);
        let mut limb_at = Vec::with_capacity(n);
        let first = if offset == 0 && !negate {
            limb_at.push(0);
            cells.push(QuantumCell::Witness(fe(limb(0))));
            1
        } else {
            cells.push(QuantumCell::Constant(fe(offset)));
            0
        };
        let mut acc = if first == 1 { limb(0) } else { offset };
        for i in first..n {
            gates.push(cells.len() as isize - 1);
            limb_at.push(cells.len());
            acc += base(i) * limb(i);
            cells.push(QuantumCell::Witness(fe(limb(i))));
            cells.push(QuantumCell::Constant(fe(base(i))));
            cells.push(QuantumCell::Witness(fe(acc)));
        }
        // The claimed value, which the last gate ties to the limbs.
        if let Some(last) = cells.last_mut() {
            *last = QuantumCell::Witness(fe(x));
        }
        let start = ctx.advice.len() as isize;
        ctx.assign_region(cells.iter().copied(), gates);
        let top_bits = bits - l * (n - 1);
        for (i, &at) in limb_at.iter().enumerate() {
            let cell = ctx.get(start + at as isize);
            self.range
                .range_check(ctx, cell, if i + 1 == n { top_bits } else { l });
        }
        ctx.get(start + cells.len() as isize - 1)
    }

    /// `q = div_round(acc, 2^s)`, with `q` range-checked; returns `(q, [q >= 0])`.
    pub fn rescale(
        &self,
        ctx: &mut Context<Fr>,
        acc: AssignedValue<Fr>,
        s: u32,
    ) -> (AssignedValue<Fr>, AssignedValue<Fr>) {
        let d = 1i128 << s;
        let (mut q, mut r) = div_round(int(&acc), d);
        let n = self.next(|c| &mut c.rescale);
        match self.tamper {
            Some(Tamper::RemainderTooLarge(k)) if k == n => (q, r) = (q - 1, r + d),
            Some(Tamper::RemainderNegative(k)) if k == n => (q, r) = (q + 1, r - d),
            _ => {}
        }
        let q = ctx.load_witness(fe(q));
        let r = ctx.load_witness(fe(r));
        self.range.range_check(ctx, r, s as usize);
        // acc + 2^(s-1) = q * 2^s + r
        let rhs = self.gate().mul_add(ctx, q, QuantumCell::Constant(fe(d)), r);
        let lhs = self.gate().add(ctx, acc, QuantumCell::Constant(fe(d / 2)));
        ctx.constrain_equal(&lhs, &rhs);
        let bit = self.signed(ctx, q);
        (q, bit)
    }

    /// Assigns `r`, constrained to `0 <= r < d` for a constant `d > 0`
    /// (`r` to `bits(d-1)` bits and, unless `d` is a power of two,
    /// `d - 1 - r` too).
    pub fn below_const(&self, ctx: &mut Context<Fr>, r: i128, d: u128) -> AssignedValue<Fr> {
        self.below_scaled(ctx, r, d, 0)
    }

    /// Assigns `y`, constrained to `[0, 2^(e+s))` and, unless `d` is a power
    /// of two, `2^s (d - 1) - y` too (`e = bits(d - 1)`): `y = 2^s r` for
    /// `0 <= r < d` when `y` is known to be `2^s` times an integer.
    fn below_scaled(&self, ctx: &mut Context<Fr>, y: i128, d: u128, s: u32) -> AssignedValue<Fr> {
        let bits = bits_of(d - 1) + s as usize;
        let cell = self.limb_chain(ctx, y, 0, false, bits);
        if !d.is_power_of_two() {
            let top = ((d - 1) as i128) << s;
            let other = self.limb_chain(ctx, y, top, true, bits);
            ctx.constrain_equal(&cell, &other);
        }
        cell
    }

    /// The scale `s` of [`FixedChip::scaled_remainder`] for a divisor `d`:
    /// what pads `bits(d - 1)` to whole lookup limbs.
    pub(crate) fn remainder_shift(&self, d: u128) -> u32 {
        let e = bits_of(d - 1);
        let l = self.range.lookup_bits();
        (e.div_ceil(l) * l - e) as u32
    }

    /// Assigns `y = 2^s r` for each remainder `0 <= r < d`, where `s` pads
    /// `e = bits(d - 1)` to whole lookup limbs, so `y` is range-checked to
    /// `e + s` bits without a partial top limb (and, unless `d` is a power
    /// of two, `2^s (d - 1 - r)` too); `s` is [`FixedChip::remainder_shift`].
    ///
    /// Sound only where the caller's other constraints make `r` (the field
    /// element `y / 2^s`) a small integer `K` with `2^s |K|` far below
    /// `p/2`, as the SGD update's equation does with bounded weights and
    /// gradients ([`crate::freivalds`]): then `2^s K = y` holds over the
    /// integers, so `0 <= K < 2^e` and `y` is a multiple of `2^s`. A `y`
    /// that is no multiple of `2^s` makes `K` a non-integer field element,
    /// which that equation rejects. Saves the mul and the cells of a shifted
    /// top limb. Crate-private: it is no range check on its own.
    ///
    /// One matrix row of remainders at a time: in the value region (when
    /// its remainders have this width) the row is also evaluated along the
    /// challenge there.
    pub(crate) fn scaled_remainders(
        &self,
        ctx: &mut Context<Fr>,
        rs: &[i128],
        d: u128,
    ) -> Vec<AssignedValue<Fr>> {
        let s = self.remainder_shift(d);
        let ys: Vec<i128> = rs
            .iter()
            .map(|&r| {
                let mut y = r << s;
                if self.tamper == Some(Tamper::ScaledRemainder(self.next(|c| &mut c.scaled))) {
                    y += 1;
                }
                y
            })
            .collect();
        let bits = bits_of(d - 1) + s as usize;
        if let Some(rec) = &self.values {
            let mut rec = rec.borrow_mut();
            if rec.takes_remainders(bits) {
                let top = (!d.is_power_of_two()).then(|| ((d - 1) as i128) << s);
                return rec.remainders(ctx, &ys, top);
            }
        }
        ys.iter()
            .map(|&y| self.below_scaled(ctx, y, d, s))
            .collect()
    }

    /// `div_round(num, d)` as the engine's SGD update rounds it: quotient and
    /// remainder (the update-quotient tamper of the soundness tests applied).
    pub fn update_quotient(&self, num: i128, d: u128) -> (i128, i128) {
        let di = d as i128;
        let (q, r) = div_round(num, di);
        let n = self.next(|c| &mut c.div_const);
        match self.tamper {
            Some(Tamper::UpdateQuotient(k)) if k == n => (q + 1, r - di),
            Some(Tamper::UpdateQuotientLow(k)) if k == n => (q - 1, r + di),
            _ => (q, r),
        }
    }

    /// `q = div_round(g * c, d)` for constants `c` and `d > 0`, the product
    /// and the rounding offset folded into one gate. The caller must bound
    /// `q` (e.g. by range-checking `w - q`).
    pub fn div_const(
        &self,
        ctx: &mut Context<Fr>,
        g: AssignedValue<Fr>,
        c: i64,
        d: u128,
    ) -> AssignedValue<Fr> {
        let di = d as i128;
        // Honest products are far inside i128 (the model crate bounds them); a
        // corrupted one is rejected by the constraints whatever we compute.
        let num = int(&g).checked_mul(c as i128).unwrap_or(0);
        let (q, r) = self.update_quotient(num, d);
        let q = ctx.load_witness(fe(q));
        let r = self.below_const(ctx, r, d);
        // g * c + floor(d/2) = q * d + r
        let rhs = self
            .gate()
            .mul_add(ctx, q, QuantumCell::Constant(fe(di)), r);
        let lhs = self.gate().mul_add(
            ctx,
            g,
            QuantumCell::Constant(fe(c as i128)),
            QuantumCell::Constant(fe(di / 2)),
        );
        ctx.constrain_equal(&lhs, &rhs);
        q
    }

    /// `sum_i a_i * b_i` (all existing cells).
    pub fn dot(
        &self,
        ctx: &mut Context<Fr>,
        a: &[AssignedValue<Fr>],
        b: &[AssignedValue<Fr>],
    ) -> AssignedValue<Fr> {
        self.gate().inner_product(
            ctx,
            a.iter().copied(),
            b.iter().copied().map(QuantumCell::Existing),
        )
    }

    /// Dense layer output `div_round(x . w_col + bias * 2^f, 2^f)`; returns `(z, [z >= 0])`.
    pub fn dense_unit(
        &self,
        ctx: &mut Context<Fr>,
        x: &[AssignedValue<Fr>],
        w_col: &[AssignedValue<Fr>],
        bias: AssignedValue<Fr>,
    ) -> (AssignedValue<Fr>, AssignedValue<Fr>) {
        let dot = self.dot(ctx, x, w_col);
        self.dense_output(ctx, dot, bias)
    }

    /// Dense layer output from the exact dot product `x . w_col`:
    /// `div_round(dot + bias * 2^f, 2^f)`; returns `(z, [z >= 0])`.
    pub fn dense_output(
        &self,
        ctx: &mut Context<Fr>,
        dot: AssignedValue<Fr>,
        bias: AssignedValue<Fr>,
    ) -> (AssignedValue<Fr>, AssignedValue<Fr>) {
        let acc = self.gate().mul_add(
            ctx,
            bias,
            QuantumCell::Constant(fe(self.fx.one() as i128)),
            dot,
        );
        self.rescale(ctx, acc, self.fx.frac_bits)
    }

    /// `exp_fixed(d)` for `0 <= d < 2^b` (range-checked here), via clamp and two table lookups.
    pub fn exp_neg(&self, ctx: &mut Context<Fr>, d: AssignedValue<Fr>) -> AssignedValue<Fr> {
        let gate = self.gate();
        let t = &self.exp;
        let dbits = (t.lo_bits + t.hi_bits) as usize;
        let b = self.fx.value_bits as usize;
        let dv = int(&d);
        // d = top * 2^D + low, low < 2^D, top < 2^(b-D)
        let (top, low) = (dv >> dbits, dv & ((1i128 << dbits) - 1));
        let top_a = ctx.load_witness(fe(top));
        let low_a = ctx.load_witness(fe(low));
        self.range.range_check(ctx, top_a, b - dbits);
        self.range.range_check(ctx, low_a, dbits);
        let recomposed = gate.mul_add(ctx, top_a, QuantumCell::Constant(fe(1i128 << dbits)), low_a);
        ctx.constrain_equal(&recomposed, &d);
        // clamp: c = low if top == 0 else 2^D - 1
        let small = gate.is_zero(ctx, top_a);
        let c = gate.select(
            ctx,
            low_a,
            QuantumCell::Constant(fe(t.clamp_max() as i128)),
            small,
        );
        let (cv, mut hi, mut lo) = t.split(int(&c) as i64);
        debug_assert_eq!(cv as i128, int(&c));
        let n = self.next(|c| &mut c.exp);
        // The aliasing attack the index range checks below defeat: read the
        // "low" part from the high table by shifting one unit of `hi` into `lo`.
        let alias =
            self.tamper == Some(Tamper::ExpAlias(n)) && hi >= 1 && lo < (1usize << t.hi_bits);
        let (mut thv, mut tlv) = (t.hi[hi] as i128, t.lo[lo] as i128);
        if alias {
            (hi, lo) = (hi - 1, lo + (1usize << t.lo_bits));
            (thv, tlv) = (t.hi[hi] as i128, t.hi[lo - (1usize << t.lo_bits)] as i128);
        }
        if self.tamper == Some(Tamper::ExpValue(n)) {
            tlv += 1;
        }
        let hi_a = ctx.load_witness(fe(hi as i128));
        let lo_a = ctx.load_witness(fe(lo as i128));
        // Both indices are range-checked: without this, `lo` could exceed
        // 2^lo_bits and its key would land in the high table's key range.
        self.range.range_check(ctx, lo_a, t.lo_bits as usize);
        self.range.range_check(ctx, hi_a, t.hi_bits as usize);
        let re = gate.mul_add(
            ctx,
            hi_a,
            QuantumCell::Constant(fe(1i128 << t.lo_bits)),
            lo_a,
        );
        ctx.constrain_equal(&re, &c);
        // Table lookups. Keys: lo + 1 for the low table, 2^lo_bits + hi + 1 for
        // the high table; key 0 is the table's disabled row.
        let th = ctx.load_witness(fe(thv));
        let tl = ctx.load_witness(fe(tlv));
        let hi_key = gate.add(
            ctx,
            hi_a,
            QuantumCell::Constant(fe((1i128 << t.lo_bits) + 1)),
        );
        let lo_key = gate.add(ctx, lo_a, QuantumCell::Constant(Fr::one()));
        self.exp_lookups.borrow_mut().push([hi_key, th]);
        self.exp_lookups.borrow_mut().push([lo_key, tl]);
        let prod = gate.mul(ctx, th, tl);
        let (e, _) = self.rescale(ctx, prod, self.fx.frac_bits);
        e
    }

    /// Stable softmax of one row of logits; returns the probabilities `p`.
    pub fn softmax(
        &self,
        ctx: &mut Context<Fr>,
        z: &[AssignedValue<Fr>],
    ) -> Vec<AssignedValue<Fr>> {
        let parts = self.softmax_parts(ctx, z);
        parts
            .e
            .iter()
            .map(|ej| self.normalise(ctx, &parts, *ej, None))
            .collect()
    }

    /// The exponentials and normaliser of a stable softmax: the maximum by a
    /// one-hot selector with `m - z_j >= 0` for all `j`, `e_j = exp(m - z_j)`,
    /// `S = sum_j e_j` and `floor(S/2)`.
    pub(crate) fn softmax_parts(
        &self,
        ctx: &mut Context<Fr>,
        z: &[AssignedValue<Fr>],
    ) -> SoftmaxParts {
        let gate = self.gate();
        let (_, m) = self.one_hot_max(ctx, z, None);
        let e: Vec<AssignedValue<Fr>> = z
            .iter()
            .map(|zj| {
                let d = gate.sub(ctx, m, *zj);
                self.exp_neg(ctx, d) // range-checks d >= 0
            })
            .collect();
        let s = gate.sum(ctx, e.iter().copied());
        // floor(S/2): S = 2h + t
        let sv = int(&s);
        let h = ctx.load_witness(fe(sv / 2));
        let tb = ctx.load_witness(fe(sv % 2));
        gate.assert_bit(ctx, tb);
        let s2 = gate.mul_add(ctx, h, QuantumCell::Constant(fe(2)), tb);
        ctx.constrain_equal(&s2, &s);
        // S <= n * 2^f + n, so remainders fit in rbits bits
        let rbits = bits_of((z.len() as u128) * (self.fx.one() as u128 + 1));
        SoftmaxParts { e, s, h, rbits }
    }

    /// `p = div_round(e 2^f, S)` for one exponential `e` of `parts`: `p`
    /// range-checked to `f + 1` bits, `0 <= r < S` on both sides. `tamper`
    /// (tests only) adds one to `p` and takes `S` from `r`, keeping the
    /// linear equation.
    pub(crate) fn normalise(
        &self,
        ctx: &mut Context<Fr>,
        parts: &SoftmaxParts,
        ej: AssignedValue<Fr>,
        tamper: Option<bool>,
    ) -> AssignedValue<Fr> {
        let gate = self.gate();
        let one = self.fx.one() as i128;
        let sv = int(&parts.s);
        let (mut p, mut r) = div_round(int(&ej) * one, sv.max(1));
        if tamper == Some(true) {
            (p, r) = (p + 1, r - sv);
        }
        let p = ctx.load_witness(fe(p));
        let r = ctx.load_witness(fe(r));
        self.range
            .range_check(ctx, p, self.fx.frac_bits as usize + 1);
        self.range.range_check(ctx, r, parts.rbits);
        let rest = gate.sub(ctx, parts.s, r);
        let rest = gate.sub(ctx, rest, QuantumCell::Constant(Fr::one()));
        self.range.range_check(ctx, rest, parts.rbits);
        // e * 2^f + h = p * S + r
        let lhs = gate.mul_add(ctx, ej, QuantumCell::Constant(fe(one)), parts.h);
        let ps = gate.mul(ctx, p, parts.s);
        let rhs = gate.add(ctx, ps, r);
        ctx.constrain_equal(&lhs, &rhs);
        p
    }

    /// Cross-entropy gradient `p - 2^f * onehot(y)`; constrains `y < n`.
    pub fn ce_grad(
        &self,
        ctx: &mut Context<Fr>,
        p: &[AssignedValue<Fr>],
        y: AssignedValue<Fr>,
    ) -> Vec<AssignedValue<Fr>> {
        let gate = self.gate();
        let onehot = gate.idx_to_indicator(ctx, y, p.len());
        let total = gate.sum(ctx, onehot.iter().copied());
        gate.assert_is_const(ctx, &total, &Fr::one());
        let one = self.fx.one() as i128;
        p.iter()
            .zip(&onehot)
            .map(|(pj, oj)| {
                let mut v = int(pj) - one * int(oj);
                if self.tamper == Some(Tamper::Gradient(self.next(|c| &mut c.grad))) {
                    v += 1;
                }
                let g = ctx.load_witness(fe(v));
                // g + 2^f * onehot = p
                let back = gate.mul_add(ctx, *oj, QuantumCell::Constant(fe(one)), g);
                ctx.constrain_equal(&back, pj);
                g
            })
            .collect()
    }
}
