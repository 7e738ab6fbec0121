//! The first maximal entry of a list of values, by a one-hot selector.
//!
//! # Soundness argument
//! The selector's entries are bits summing to one, so `m = sum_j s_j x_j`
//! is one of the entries, `x_i`. For every `j`, `m - x_j - before_j` is
//! range-checked to `[0, 2^(b+1))`, where `before_j = 1 - sum_{l <= j} s_l`
//! is 1 exactly for the entries before the selected one: those must be
//! strictly smaller than `m`, the others at most `m`. So `m` is the maximum
//! and `i` its first position, the engine's choice (the prediction's
//! argmax, a max pooling's routed gradient), with no freedom left to the
//! prover. The entries are range-checked values (`|x| < 2^(b-1)`), so the
//! differences are small integers and the range checks are exact.

use halo2_base::gates::{GateInstructions, RangeInstructions};
use halo2_base::{AssignedValue, Context};

use super::{int, FixedChip, Tamper};
use crate::field::fe;
use crate::Fr;

impl FixedChip {
    /// A one-hot selector (bits summing to one) of the first maximal entry
    /// of `xs`, and the selected entry `m = sum_j s_j x_j`; what makes `m`
    /// the maximum is the caller's (`m - x_j` range-checked). `tamper`
    /// (tests only) selects another entry.
    pub(crate) fn one_hot_max(
        &self,
        ctx: &mut Context<Fr>,
        xs: &[AssignedValue<Fr>],
        tamper: Option<bool>,
    ) -> (Vec<AssignedValue<Fr>>, AssignedValue<Fr>) {
        let gate = self.gate();
        let vals: Vec<i128> = xs.iter().map(int).collect();
        let mut best = 0;
        for (j, v) in vals.iter().enumerate() {
            if *v > vals[best] {
                best = j;
            }
        }
        if tamper == Some(true) {
            // Another entry: the last one, or the first if the last is the maximum.
            best = if best + 1 == xs.len() {
                0
            } else {
                xs.len() - 1
            };
        }
        let sel: Vec<_> = (0..xs.len())
            .map(|j| ctx.load_witness(fe(i128::from(j == best))))
            .collect();
        for s in &sel {
            gate.assert_bit(ctx, *s);
        }
        let total = gate.sum(ctx, sel.iter().copied());
        gate.assert_is_const(ctx, &total, &Fr::one());
        let m = self.dot(ctx, &sel, xs);
        (sel, m)
    }

    /// The one-hot selector of the first maximal entry of `xs` and that
    /// entry.
    pub fn first_max(
        &self,
        ctx: &mut Context<Fr>,
        xs: &[AssignedValue<Fr>],
    ) -> (Vec<AssignedValue<Fr>>, AssignedValue<Fr>) {
        let n = self.next(|c| &mut c.select);
        let tamper = self.tamper == Some(Tamper::MaxSelect(n));
        let (sel, m) = self.one_hot_max(ctx, xs, Some(tamper));
        let gate = self.gate();
        let mut seen = ctx.load_zero();
        let bits = self.fx.value_bits as usize + 1;
        for (x, s) in xs.iter().zip(&sel) {
            seen = gate.add(ctx, seen, *s);
            let before = gate.not(ctx, seen);
            let d = gate.sub(ctx, m, *x);
            let d = gate.sub(ctx, d, before);
            self.range.range_check(ctx, d, bits);
        }
        (sel, m)
    }
}
