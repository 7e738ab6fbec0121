//! Hidden-layer activations and their derivatives, with the engine's exact
//! semantics ([`zkaudit_model::engine::Engine::activate`] and
//! [`zkaudit_model::engine::Engine::activation_grad`]).
//!
//! # Soundness argument
//! - *ReLU* multiplies `z` by the sign bit of its range check
//!   ([`FixedChip::signed`]); its derivative multiplies by the same bit.
//! - *Sigmoid* is the probability of `z` in the stable softmax of `[0, z]`
//!   and *tanh* is `2 p - 2^f` with `p` that of `z` in the softmax of
//!   `[-z, z]`: the softmax gadget's own constraints (one-hot maximum with
//!   `m - z_j >= 0`, the exp table's range-checked indices, the division
//!   `e 2^f + floor(S/2) = p S + r` with `0 <= r < S` on both sides and `p`
//!   range-checked) make `p` the unique rounded quotient, so the value is
//!   the engine's. For tanh, `-z` is not range-checked as a value: the
//!   softmax's distance `m - z_j` is range-checked to `[0, 2^b)`, which fails
//!   exactly for `z = -2^(b-1)`, where the engine reports `-z` out of range.
//! - *Derivatives* are one rounded division by `2^(2f)` of
//!   `da a (2^f - a)` (sigmoid) or `da (2^(2f) - a^2)` (tanh), with
//!   [`FixedChip::rescale`]'s checks (remainder in `[0, 2^(2f))`, quotient a
//!   range-checked value). `a` is the softmax output (`0 <= p <= 2^(f+1)`
//!   by its range check), so `|acc| < 2^(b - 1 + 2f + 2)`, far below `p/2`
//!   ([`zkaudit_model::arch::Architecture::check_bounds`] bounds it), and the
//!   field equation is the integer one.

use halo2_base::gates::GateInstructions;
use halo2_base::{AssignedValue, Context, QuantumCell};
use zkaudit_model::Activation;

use super::{FixedChip, Tamper};
use crate::field::fe;
use crate::Fr;

impl FixedChip {
    /// The probability of `z` in the softmax of `[other, z]`.
    fn second_probability(
        &self,
        ctx: &mut Context<Fr>,
        other: AssignedValue<Fr>,
        z: AssignedValue<Fr>,
    ) -> AssignedValue<Fr> {
        let parts = self.softmax_parts(ctx, &[other, z]);
        let n = self.next(|c| &mut c.activation);
        let tamper = self.tamper == Some(Tamper::ActivationValue(n));
        self.normalise(ctx, &parts, parts.e[1], Some(tamper))
    }

    /// `sigmoid(z)`: the probability of `z` in the softmax of `[0, z]`.
    pub fn sigmoid(&self, ctx: &mut Context<Fr>, z: AssignedValue<Fr>) -> AssignedValue<Fr> {
        let zero = ctx.load_zero();
        self.second_probability(ctx, zero, z)
    }

    /// `tanh(z) = 2 p - 2^f` with `p` the probability of `z` in the softmax
    /// of `[-z, z]`.
    pub fn tanh(&self, ctx: &mut Context<Fr>, z: AssignedValue<Fr>) -> AssignedValue<Fr> {
        let neg = self.gate().neg(ctx, z);
        let p = self.second_probability(ctx, neg, z);
        let one = fe(self.fx.one() as i128);
        self.gate().mul_add(
            ctx,
            p,
            QuantumCell::Constant(fe(2)),
            QuantumCell::Constant(-one),
        )
    }

    /// A hidden layer's activation of `z`; `bit` is `[z >= 0]` from `z`'s
    /// range check.
    pub fn activate(
        &self,
        ctx: &mut Context<Fr>,
        act: Activation,
        z: AssignedValue<Fr>,
        bit: AssignedValue<Fr>,
    ) -> AssignedValue<Fr> {
        match act {
            Activation::Relu => self.gate().mul(ctx, z, bit),
            Activation::None => z,
            Activation::Sigmoid => self.sigmoid(ctx, z),
            Activation::Tanh => self.tanh(ctx, z),
        }
    }

    /// The gradient with respect to a hidden layer's output from the
    /// rescaled gradient `da` of its activation `a` (`bit = [z >= 0]`).
    pub fn activation_grad(
        &self,
        ctx: &mut Context<Fr>,
        act: Activation,
        a: AssignedValue<Fr>,
        bit: AssignedValue<Fr>,
        da: AssignedValue<Fr>,
    ) -> AssignedValue<Fr> {
        let gate = self.gate();
        let one = self.fx.one() as i128;
        let slope = match act {
            Activation::Relu => return gate.mul(ctx, da, bit),
            Activation::None => return da,
            // a (2^f - a)
            Activation::Sigmoid => {
                let rest = gate.sub(ctx, QuantumCell::Constant(fe(one)), a);
                gate.mul(ctx, a, rest)
            }
            // 2^(2f) - a^2
            Activation::Tanh => {
                let sq = gate.mul(ctx, a, a);
                gate.sub(ctx, QuantumCell::Constant(fe(one * one)), sq)
            }
        };
        let acc = gate.mul(ctx, da, slope);
        self.rescale(ctx, acc, 2 * self.fx.frac_bits).0
    }
}
