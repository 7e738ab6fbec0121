//! Fixed-point numbers: representation, range bounds and the one rounding rule.
//!
//! # Representation
//! A real number `x` is stored as the integer `v = round(x * 2^f)` where `f` is
//! [`FixedParams::frac_bits`]. Every *stored* value (inputs, weights, biases,
//! pre-activations, activations, probabilities, back-propagated gradients and
//! updated weights) must lie in the signed range `[-2^(b-1), 2^(b-1))` where `b`
//! is [`FixedParams::value_bits`]; leaving it is an [`ModelError::Overflow`] that
//! names the layer and tensor, never a silent wrap. Intermediate sums of
//! products ("accumulators") are not stored; their magnitude is bounded
//! statically from the model shape (see [`crate::arch::Architecture::check_bounds`])
//! so that neither the native `i128` arithmetic nor the circuit field can wrap.
//!
//! # Defaults and why
//! `f = 16`, `b = 32`. Measured on the digits MLP (2 epochs, batch 8, lr 0.1,
//! seed 42), the fixed-point run's final training loss against the f64
//! reference from the same start is 0.2526 vs 0.2501 at `f = 8`, 0.3036 vs
//! 0.2893 at `f = 10`, 0.2851 vs 0.2853 at `f = 12` and identical to four
//! decimals (0.2936) at `f = 16`: SGD updates (`lr * grad / batch`, about
//! `1e-4..1e-2` here) are resolved to 1.5e-5 instead of being rounded coarsely.
//! 32-bit lanes leave a real range of +-32768 and let the circuit range-check a
//! value with two 16-bit lookups. Both are configurable (`--frac-bits`, `--value-bits`).
//!
//! # Rounding (exactly what the circuit enforces)
//! Every division is *round half up*: for a divisor `d > 0`,
//! `q = floor((a + floor(d/2)) / d)` and the remainder `r = a + floor(d/2) - q*d`
//! satisfies `0 <= r < d` (both sides). For `d = 2^s` this is
//! `a + 2^(s-1) = q * 2^s + r`, `0 <= r < 2^s`. [`div_round`] returns `(q, r)` so
//! the circuit witness is produced by this very function.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Default number of fractional bits.
pub const DEFAULT_FRAC_BITS: u32 = 16;
/// Default signed width of every stored value.
pub const DEFAULT_VALUE_BITS: u32 = 32;
/// Largest supported number of fractional bits (keeps the exp tables small).
pub const MAX_FRAC_BITS: u32 = 24;
/// Largest supported value width.
pub const MAX_VALUE_BITS: u32 = 48;

/// The fixed-point format of a run: fractional bits and stored-value width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FixedParams {
    /// Number of fractional bits `f` (scale `2^f`).
    pub frac_bits: u32,
    /// Signed width `b` of stored values: they lie in `[-2^(b-1), 2^(b-1))`.
    pub value_bits: u32,
}

impl Default for FixedParams {
    fn default() -> Self {
        FixedParams {
            frac_bits: DEFAULT_FRAC_BITS,
            value_bits: DEFAULT_VALUE_BITS,
        }
    }
}

impl FixedParams {
    /// Validated constructor.
    pub fn new(frac_bits: u32, value_bits: u32) -> Result<Self> {
        if !(2..=MAX_FRAC_BITS).contains(&frac_bits) {
            return Err(ModelError::Config(format!(
                "frac-bits must be in 2..={MAX_FRAC_BITS}, got {frac_bits}"
            )));
        }
        let min = frac_bits + crate::exp::EXP_INT_BITS;
        if value_bits < min || value_bits > MAX_VALUE_BITS {
            return Err(ModelError::Config(format!(
                "value-bits must be in {min}..={MAX_VALUE_BITS} (at least frac-bits + {}, so that the softmax exponent domain [0, {}) fits), got {value_bits}",
                crate::exp::EXP_INT_BITS,
                1u32 << crate::exp::EXP_INT_BITS
            )));
        }
        Ok(FixedParams {
            frac_bits,
            value_bits,
        })
    }

    /// Re-checks a deserialised format with the constructor's rules.
    pub fn validate(&self) -> Result<()> {
        FixedParams::new(self.frac_bits, self.value_bits).map(|_| ())
    }

    /// The scale `2^f` as an integer.
    pub fn one(&self) -> i64 {
        1i64 << self.frac_bits
    }

    /// Smallest storable value, `-2^(b-1)`.
    pub fn min_value(&self) -> i64 {
        -(1i64 << (self.value_bits - 1))
    }

    /// Largest storable value, `2^(b-1) - 1`.
    pub fn max_value(&self) -> i64 {
        (1i64 << (self.value_bits - 1)) - 1
    }

    /// Whether `v` is a storable value.
    pub fn in_range(&self, v: i128) -> bool {
        v >= self.min_value() as i128 && v <= self.max_value() as i128
    }

    /// Checks that `v` is storable, naming the layer, tensor and index otherwise.
    pub fn check(&self, v: i128, layer: &str, tensor: &'static str, index: usize) -> Result<i64> {
        if self.in_range(v) {
            Ok(v as i64)
        } else {
            Err(ModelError::Overflow {
                layer: layer.to_string(),
                tensor,
                index,
                value: v,
                value_bits: self.value_bits,
            })
        }
    }

    /// Quantizes a real number with round half up; `None` for NaN, infinities
    /// and values outside the storable range.
    pub fn quantize(&self, x: f64) -> Option<i64> {
        if !x.is_finite() {
            return None;
        }
        let scaled = (x * self.one() as f64 + 0.5).floor();
        if scaled < self.min_value() as f64 || scaled > self.max_value() as f64 {
            return None;
        }
        Some(scaled as i64)
    }

    /// The real number a stored value represents.
    pub fn dequantize(&self, v: i64) -> f64 {
        v as f64 / self.one() as f64
    }

    /// Rounds an accumulator of scale `2^(2f)` back to scale `2^f`.
    pub fn rescale(&self, acc: i128) -> i128 {
        div_round(acc, 1i128 << self.frac_bits).0
    }
}

/// Round-half-up division by a positive divisor: returns `(q, r)` with
/// `a + floor(d/2) = q*d + r` and `0 <= r < d`.
///
/// # Panics
/// If `d <= 0`; divisors are always constants or sums that are provably
/// positive (softmax normaliser `Z >= 2^f`), never input data.
pub fn div_round(a: i128, d: i128) -> (i128, i128) {
    assert!(d > 0, "div_round divisor must be positive");
    let n = a + d / 2;
    (n.div_euclid(d), n.rem_euclid(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn div_round_is_round_half_up() {
        assert_eq!(div_round(5, 2), (3, 0)); // 2.5 -> 3
        assert_eq!(div_round(-5, 2), (-2, 0)); // -2.5 -> -2 (half up)
        assert_eq!(div_round(7, 4), (2, 1)); // 1.75 -> 2
        assert_eq!(div_round(-7, 4), (-2, 3)); // -1.75 -> -2
        assert_eq!(div_round(1, 4), (0, 3)); // 0.25 -> 0
        assert_eq!(div_round(0, 3), (0, 1));
    }

    #[test]
    fn params_validation() {
        assert!(FixedParams::new(16, 32).is_ok());
        assert!(FixedParams::new(1, 32).is_err());
        assert!(FixedParams::new(16, 17).is_err());
        // exp's clamp splits d into 2^(f+4)-sized parts: b >= f + 4.
        assert!(FixedParams::new(16, 19).is_err());
        assert!(FixedParams::new(16, 20).is_ok());
        let forged = FixedParams {
            frac_bits: 16,
            value_bits: 127,
        };
        assert!(forged.validate().is_err());
        assert!(FixedParams::new(16, 49).is_err());
    }

    #[test]
    fn range_boundaries() {
        let fx = FixedParams::new(8, 12).unwrap();
        assert!(fx.in_range(2047));
        assert!(!fx.in_range(2048));
        assert!(fx.in_range(-2048));
        assert!(!fx.in_range(-2049));
        let err = fx.check(4096, "layer 0", "z", 3).unwrap_err().to_string();
        assert!(
            err.contains("layer 0") && err.contains("`z`") && err.contains("index 3"),
            "{err}"
        );
    }

    #[test]
    fn quantize_rejects_nan_and_out_of_range() {
        let fx = FixedParams::default();
        assert_eq!(fx.quantize(f64::NAN), None);
        assert_eq!(fx.quantize(f64::INFINITY), None);
        assert_eq!(fx.quantize(40000.0), None);
        assert_eq!(fx.quantize(1.0), Some(65536));
        assert_eq!(fx.quantize(-0.5), Some(-32768));
    }

    proptest! {
        #[test]
        fn div_round_matches_f64_rounding(a in -(1i128 << 80)..(1i128 << 80), d in 1i128..(1i128 << 40)) {
            let (q, r) = div_round(a, d);
            prop_assert!(r >= 0 && r < d);
            prop_assert_eq!(q * d + r, a + d / 2);
            // |q - a/d| <= 1/2 (half up at ties)
            let twice = 2 * (a - q * d);
            prop_assert!(twice >= -d && twice < d + (d % 2));
        }

        #[test]
        fn quantize_error_is_half_ulp(x in -1000.0f64..1000.0, f in 2u32..=24) {
            let fx = FixedParams::new(f, 40).unwrap();
            let v = fx.quantize(x).unwrap();
            prop_assert!((fx.dequantize(v) - x).abs() <= 0.5 / fx.one() as f64 + 1e-12);
        }
    }
}
