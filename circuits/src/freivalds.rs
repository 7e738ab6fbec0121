//! Matrix products checked with a verifier challenge (Freivalds' check).
//!
//! A step multiplies matrices three times per layer (the forward pass
//! `Z = X.W`, the input gradient `dX = dZ.W^T`, the weight gradient
//! `dW = X^T.dZ`). Computing each entry with a dot product costs
//! `O(n.m.p)` cells; here the exact (unrounded) product `C` is instead
//! assigned as a witness in the circuit's first phase next to `A` and `B`, and
//! checked in the second phase against a challenge `r` the verifier's
//! transcript draws after the first phase's columns are committed:
//! `C.v = A.(B.v)` with `v = (1, r, r^2, ..., r^(p-1))`, costing
//! `O(n.m + m.p + n.p)` cells.
//!
//! # Soundness argument
//! - *The values are fixed before `r` exists.* `A`, `B` and `C` are cells of
//!   first-phase advice columns (the halo2-base region, where every other
//!   constraint of the step also reads them); the second phase reads them
//!   through copy constraints, which the permutation argument (drawn after
//!   every phase) binds to the committed first-phase values. `r` is squeezed
//!   from the transcript after those commitments (halo2's
//!   `challenge_usable_after(FirstPhase)`), and the cell holding it is
//!   constrained to the challenge by a gate of its own ([`crate::step`]), so
//!   the prover can neither choose `r` nor change `C` after seeing it.
//! - *Schwartz-Zippel.* If `C != A.B` (as field elements), some row `i` has
//!   `D_i = C_i - A_i.B != 0`, and row `i` passes only when `r` is a root of
//!   the non-zero polynomial `sum_j D_ij X^j` of degree `<= p - 1`: probability
//!   at most `(p - 1)/|F| < 2^-240` for `p < 2^13`. Over all products of a
//!   proof the bound adds up (a few hundred products at most), and a prover
//!   grinding witnesses to obtain a favourable transcript needs `~2^240` tries.
//!   A fixed, public or prover-chosen `v` gives no such bound: a product that
//!   agrees with `A.B` along `v` only is accepted (the unsoundness of earlier
//!   zkML work; the tests show the circuit rejects exactly such a product).
//! - *Field identity is the integer identity.* The check yields `C = A.B` in
//!   the field, entry by entry, i.e. exactly the value the former in-circuit
//!   dot product computed. `A` and `B` are range-checked values and the
//!   model crate bounds every accumulator below `2^120` statically, so the
//!   integer product is represented exactly; each entry of `C` is then
//!   rounded and range-checked by [`crate::fixed_chip`] as before.

use std::cell::{Cell, RefCell};

use halo2_base::gates::{GateChip, GateInstructions};
use halo2_base::{AssignedValue, Context, QuantumCell};

use crate::fixed_chip::Tamper;
use crate::Fr;

/// A matrix of assigned cells, row-major.
pub type Matrix = Vec<Vec<AssignedValue<Fr>>>;

/// One product `C = A.B` awaiting its second-phase check.
#[derive(Clone, Debug)]
pub struct Product {
    /// `n x m`.
    pub a: Matrix,
    /// `m x p`.
    pub b: Matrix,
    /// `n x p`, the exact product as assigned.
    pub c: Matrix,
}

/// Records matrix products in the first phase; [`check_products`] checks them
/// in the second.
#[derive(Debug, Default)]
pub struct ProductChip {
    /// The products recorded so far, in order.
    pub products: RefCell<Vec<Product>>,
    tamper: Option<Tamper>,
    count: Cell<usize>,
}

impl ProductChip {
    /// A chip; `tamper` is for the soundness tests only.
    pub fn new(tamper: Option<Tamper>) -> Self {
        ProductChip {
            tamper,
            ..Self::default()
        }
    }

    /// Assigns `C = A.B` (computed from the cells' values) and records the
    /// product for the challenge check. `a` is `n x m`, `b` is `m x p`.
    pub fn matmul(
        &self,
        ctx: &mut Context<Fr>,
        a: &[Vec<AssignedValue<Fr>>],
        b: &Matrix,
    ) -> Matrix {
        let p = b.first().map_or(0, Vec::len);
        let mut values: Vec<Vec<Fr>> = a
            .iter()
            .map(|row| {
                (0..p)
                    .map(|j| {
                        row.iter().zip(b).fold(Fr::zero(), |acc, (x, brow)| {
                            acc + *x.value() * *brow[j].value()
                        })
                    })
                    .collect()
            })
            .collect();
        let n = self.count.get();
        self.count.set(n + 1);
        match self.tamper {
            Some(Tamper::ProductEntry(k)) if k == n => values[0][0] += Fr::one(),
            // Agrees with `A.B` along `v = (1, 1, ...)`: a fixed vector cannot see it.
            Some(Tamper::ProductAlongOnes(k)) if k == n => {
                values[0][0] += Fr::one();
                values[0][1] -= Fr::one();
            }
            _ => {}
        }
        let c: Matrix = values
            .into_iter()
            .map(|row| row.into_iter().map(|v| ctx.load_witness(v)).collect())
            .collect();
        self.products.borrow_mut().push(Product {
            a: a.to_vec(),
            b: b.clone(),
            c: c.clone(),
        });
        c
    }
}

/// Lays out, in a second-phase context, `C.v = A.(B.v)` for every product,
/// `v` the powers of the challenge cell `r`.
pub fn check_products(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    r: AssignedValue<Fr>,
    products: &[Product],
) {
    let width = products
        .iter()
        .map(|p| p.b.first().map_or(0, Vec::len))
        .max()
        .unwrap_or(0);
    // v = (1, r, r^2, ...); the leading constant one saves a term per dot product.
    let mut powers: Vec<QuantumCell<Fr>> = Vec::with_capacity(width);
    if width > 0 {
        powers.push(QuantumCell::Constant(Fr::one()));
    }
    let mut last = r;
    if width > 1 {
        powers.push(QuantumCell::Existing(r));
    }
    while powers.len() < width {
        last = gate.mul(ctx, last, r);
        powers.push(QuantumCell::Existing(last));
    }
    for p in products {
        let along = |ctx: &mut Context<Fr>, row: &[AssignedValue<Fr>]| {
            gate.inner_product(
                ctx,
                row.iter().copied(),
                powers[..row.len()].iter().copied(),
            )
        };
        let bv: Vec<_> = p.b.iter().map(|row| along(ctx, row)).collect();
        for (arow, crow) in p.a.iter().zip(&p.c) {
            let lhs = gate.inner_product(
                ctx,
                arow.iter().copied(),
                bv.iter().copied().map(QuantumCell::Existing),
            );
            let rhs = along(ctx, crow);
            ctx.constrain_equal(&lhs, &rhs);
        }
    }
}

/// The check evaluated natively: whether `C.v = A.(B.v)` for `v` the powers
/// of `r` (what the circuit enforces, for tests and diagnostics).
pub fn holds(a: &[Vec<Fr>], b: &[Vec<Fr>], c: &[Vec<Fr>], r: Fr) -> bool {
    let p = b.first().map_or(0, Vec::len);
    let v: Vec<Fr> = std::iter::successors(Some(Fr::one()), |x| Some(*x * r))
        .take(p)
        .collect();
    let dot = |x: &[Fr], y: &[Fr]| x.iter().zip(y).fold(Fr::zero(), |s, (a, b)| s + *a * *b);
    let bv: Vec<Fr> = b.iter().map(|row| dot(row, &v)).collect();
    a.len() == c.len() && a.iter().zip(c).all(|(ar, cr)| dot(ar, &bv) == dot(cr, &v))
}
