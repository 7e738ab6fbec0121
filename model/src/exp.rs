//! The fixed-point `exp(-d)` used by the stable softmax, as two small tables.
//!
//! # Domain and precision
//! The input is `d >= 0` at scale `2^f` (the distance of a logit below the row
//! maximum). It is clamped to `D = 2^(f + EXP_INT_BITS) - 1`, i.e. real inputs
//! of 16 or more behave like 16 (`exp(-16) < 1.2e-7`, below one unit for every
//! supported `f`). The clamped `d` is split as `d = hi * 2^L + lo` with
//! `L = floor((f + 4) / 2)`, and
//!
//! ```text
//! T_hi[hi] = round(2^f * exp(-hi * 2^L / 2^f))
//! T_lo[lo] = round(2^f * exp(-lo / 2^f))
//! exp_fixed(d) = div_round(T_hi[hi] * T_lo[lo], 2^f)
//! ```
//!
//! Each table has at most `2^14` rows (for `f = 24`; 1,024 rows for the default
//! `f = 16`), independent of the circuit size. `exp_fixed(0) = 2^f` exactly, so
//! a softmax normaliser is always at least `2^f`. The error against the exact
//! value is at most 2 units of `2^-f` (two table roundings of half a unit each,
//! the final rounding, and the clamp); see the tests.
//!
//! The table entries are computed with [`det_exp`], which uses only IEEE-754
//! additions, multiplications and divisions (correctly rounded, so identical on
//! every platform) instead of the platform `libm`, so the prover, the verifier
//! and the circuit all build bit-identical tables.

use serde::{Deserialize, Serialize};

use crate::fixed::{div_round, FixedParams};

/// Real-valued range of the softmax exponent domain: `d < 2^EXP_INT_BITS`.
pub const EXP_INT_BITS: u32 = 4;

/// The two tables of the fixed-point exponential for one fixed-point format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpTable {
    /// Fractional bits the table was built for.
    pub frac_bits: u32,
    /// Number of low bits `L` taken by the low table.
    pub lo_bits: u32,
    /// Number of bits of the high index.
    pub hi_bits: u32,
    /// `T_hi`, indexed by the high part.
    pub hi: Vec<i64>,
    /// `T_lo`, indexed by the low part.
    pub lo: Vec<i64>,
}

impl ExpTable {
    /// Builds the tables for a fixed-point format.
    pub fn new(fx: &FixedParams) -> Self {
        let f = fx.frac_bits;
        let domain_bits = f + EXP_INT_BITS;
        let lo_bits = domain_bits / 2;
        let hi_bits = domain_bits - lo_bits;
        let scale = fx.one() as f64;
        let entry = |x: f64| (scale * det_exp(-x) + 0.5).floor() as i64;
        let hi = (0..(1u64 << hi_bits))
            .map(|i| entry(((i << lo_bits) as f64) / scale))
            .collect();
        let lo = (0..(1u64 << lo_bits))
            .map(|j| entry(j as f64 / scale))
            .collect();
        ExpTable {
            frac_bits: f,
            lo_bits,
            hi_bits,
            hi,
            lo,
        }
    }

    /// Largest accepted input; larger inputs are clamped to it.
    pub fn clamp_max(&self) -> i64 {
        (1i64 << (self.lo_bits + self.hi_bits)) - 1
    }

    /// Splits a (non-negative) input into the clamped value and its table indices.
    pub fn split(&self, d: i64) -> (i64, usize, usize) {
        debug_assert!(d >= 0);
        let c = d.min(self.clamp_max());
        let hi = (c >> self.lo_bits) as usize;
        let lo = (c & ((1i64 << self.lo_bits) - 1)) as usize;
        (c, hi, lo)
    }

    /// `exp(-d / 2^f) * 2^f`, rounded as documented in the module.
    pub fn exp_neg(&self, d: i64) -> i64 {
        let (_, hi, lo) = self.split(d);
        let prod = self.hi[hi] as i128 * self.lo[lo] as i128;
        div_round(prod, 1i128 << self.frac_bits).0 as i64
    }
}

/// `exp(x)` for `x` in `[-17, 0]` with basic IEEE operations only: the Taylor
/// series of `exp(x / 64)` (|x/64| < 0.27, 24 terms) squared six times.
/// Relative error below `1e-13`, far under the table's `2^-25` resolution.
pub fn det_exp(x: f64) -> f64 {
    let y = x / 64.0;
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    for n in 1..=24 {
        term = term * y / n as f64;
        sum += term;
    }
    for _ in 0..6 {
        sum *= sum;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn det_exp_matches_libm() {
        for i in 0..=1700 {
            let x = -(i as f64) / 100.0;
            let rel = (det_exp(x) - x.exp()).abs() / x.exp();
            assert!(rel < 1e-13, "x={x} rel={rel}");
        }
    }

    #[test]
    fn exp_of_zero_is_exactly_one() {
        for f in [4, 8, 12, 16, 20, 24] {
            let fx = FixedParams::new(f, f + 16).unwrap();
            let t = ExpTable::new(&fx);
            assert_eq!(t.exp_neg(0), fx.one());
        }
    }

    #[test]
    fn table_sizes() {
        let t = ExpTable::new(&FixedParams::default());
        assert_eq!(t.lo.len(), 1024);
        assert_eq!(t.hi.len(), 1024);
        assert_eq!(t.clamp_max(), (1 << 20) - 1);
    }

    proptest! {
        #[test]
        fn exp_error_at_most_two_units(d in 0i64..(1i64 << 26), f in prop::sample::select(vec![8u32, 12, 16, 20])) {
            let fx = FixedParams::new(f, 48).unwrap();
            let t = ExpTable::new(&fx);
            let exact = (-(d as f64) / fx.one() as f64).exp() * fx.one() as f64;
            let got = t.exp_neg(d) as f64;
            prop_assert!((got - exact).abs() <= 2.0, "d={} got={} exact={}", d, got, exact);
        }

        #[test]
        fn exp_is_monotone_non_increasing(d in 0i64..(1i64 << 21)) {
            let t = ExpTable::new(&FixedParams::default());
            prop_assert!(t.exp_neg(d + 1) <= t.exp_neg(d) + 2);
        }
    }
}
