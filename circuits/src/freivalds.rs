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
//! The weight gradient `G = X^T.dZ` of a layer is never assigned: the SGD
//! update `W' = W - round(c G / d)` is checked in one go. Its new weights
//! `W'` and remainders `R` (`c G + floor(d/2) = (W - W') d + R`, `0 <= R < d`,
//! both range-checked in the first phase) satisfy, entry by entry,
//! `c G = d W - d W' + R - floor(d/2)`, which the second phase checks along
//! the challenge: `c X^T.(dZ.v) = d W.v - d W'.v + R.v - floor(d/2) (1.v)`.
//! `W.v` is the forward product's own (`Z = X.W` is checked along the same
//! `v`), and inside a span `W'.v` is the next step's `W.v`, so an update
//! costs its new weights, its remainders and `R.v`. The remainders are
//! assigned scaled, `Y = 2^s R` with `s` padding `bits(d - 1)` to whole
//! lookup limbs (`d = 2^37` at batch 32: `Y` is three 16-bit limbs, with no
//! shifted partial limb), and the equation is checked multiplied by `2^s`.
//! In the step circuit the rows of `W`, `W'` and `Y` are evaluated along `v`
//! by the value region's accumulators, in the rows that range-check them
//! ([`crate::values`], where that argument is); [`Evaluated`] hands those
//! cells to the checks here, and every other row is a dot product with the
//! powers of `r`.
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
//!   at most `(p - 1)/|F| < 2^-229` for any width `p <= 2^24` (a model's
//!   parameters, and so every dimension of a weight or patch matrix, are at
//!   most `MAX_PARAMS = 2^24`; dense widths at most `2^16`). Over all
//!   products of a proof the bound adds up (a few hundred products at most),
//!   and a prover grinding witnesses to obtain a favourable transcript needs
//!   `~2^229` tries.
//!   A fixed, public or prover-chosen `v` gives no such bound: a product that
//!   agrees with `A.B` along `v` only is accepted (the unsoundness of earlier
//!   zkML work; the tests show the circuit rejects exactly such a product).
//! - *Field identity is the integer identity.* The check yields `C = A.B` in
//!   the field, entry by entry, i.e. exactly the value the former in-circuit
//!   dot product computed. `A` and `B` are range-checked values and the
//!   model crate bounds every accumulator below `2^120` statically, so the
//!   integer product is represented exactly; each entry of `C` is then
//!   rounded and range-checked by [`crate::fixed_chip`] as before.
//! - *Updates.* The same argument applies to the polynomial whose
//!   coefficients are `d W_ij - d W'_ij + R_ij - floor(d/2) - c G_ij`: a
//!   passing check means every coefficient is zero as a field element. `W`,
//!   `W'` are checked values (`< 2^48`), `0 <= R < d < 2^128` (a `u128`),
//!   `|c| < 2^63` (an `i64`) and `|G| < 2^120`, so both sides are below
//!   `2^190`, far below `p/2`, and the field identity
//!   is the integer identity `c G + floor(d/2) = (W - W') d + R`; with
//!   `0 <= R < d` the quotient `W - W'` is the unique rounded division, the
//!   engine's update.
//! - *Scaled remainders.* What is range-checked is `Y = 2^s R`, in
//!   `[0, 2^(e+s))` (`e = bits(d - 1)`; and `2^s (d - 1 - R)` too unless `d`
//!   is a power of two); `R = Y / 2^s` is a field element. A passing check
//!   gives `2^s (d W - d W' - floor(d/2) - c G) + Y = 0` in the field, so
//!   `Y = 2^s K` for the integer `K = c G + floor(d/2) - (W - W') d`. The
//!   run parameters a verifier validates (`check_run_params`) bound it:
//!   `|c G| < 2^119` (the model crate's static check), `d = batch 2^(2f)
//!   <= 2^60` and `|W - W'| < 2^48`, so `|K| < 2^121`, and `s < 16` (the
//!   lookup bits are at most 16, `shape::lookup_bits_for`), so
//!   `2^s |K| < 2^137`, far below `p/2`:
//!   `Y = 2^s K` over the integers and `0 <= K < 2^e` (`<= d - 1` by the
//!   second check, or, `d` a power of two, because `2^e = d`), the
//!   remainder the unscaled argument needs. A `Y` that
//!   is no multiple of `2^s` has no such `K` and fails the check, and a
//!   remainder `R + d` fails the second bound (both tested).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use halo2_base::gates::{GateChip, GateInstructions};
use halo2_base::{AssignedValue, Context, ContextCell, QuantumCell};

use crate::field::{fe, to_i128};
use crate::fixed_chip::{int, FixedChip, Tamper};
use crate::Fr;

/// A matrix of assigned cells, row-major.
pub type Matrix = Vec<Vec<AssignedValue<Fr>>>;

/// A matrix used by several checks (a layer's weights): its rows are
/// evaluated along the challenge once.
pub type Shared = Arc<Matrix>;

/// One product `C = A.B` awaiting its second-phase check.
#[derive(Clone, Debug)]
pub struct Product {
    /// `n x m`.
    pub a: Matrix,
    /// `m x p`.
    pub b: Shared,
    /// `n x p`, the exact product as assigned.
    pub c: Matrix,
}

/// One SGD update of a weight matrix awaiting its second-phase check:
/// `c (X^T.dZ) + floor(d/2) = (W - W') d + R` entry by entry.
#[derive(Clone, Debug)]
pub struct Update {
    /// `X^T`, `n x m` (inputs by batch).
    pub x_t: Matrix,
    /// `dZ`, `m x p` (batch by outputs).
    pub dz: Matrix,
    /// The weights before, `n x p`.
    pub w: Shared,
    /// The weights after, `n x p`.
    pub nw: Shared,
    /// The remainders scaled by `2^shift`, `n x p` (each `2^shift r` for
    /// an `r` in `[0, d)`; see [`FixedChip::scaled_remainder`]).
    pub r: Matrix,
    /// The scale `s` of the remainders.
    pub shift: u32,
    /// The learning-rate constant `c`.
    pub c: i64,
    /// The divisor `d`.
    pub d: u128,
}

impl Update {
    /// `2^s c`, `2^s d` and `2^s floor(d/2)` (`s` the remainders' scale):
    /// the update's equation multiplied by `2^s`, so that it reads the
    /// scaled remainders as assigned.
    fn constants(&self) -> [Fr; 3] {
        let scale = crate::hash::pow2(self.shift);
        [
            fe(self.c as i128),
            fe(self.d as i128),
            fe((self.d / 2) as i128),
        ]
        .map(|x| x * scale)
    }
}

/// A first-phase relation checked against the challenge.
#[derive(Clone, Debug)]
pub enum Check {
    /// A matrix product.
    Product(Product),
    /// A weight update.
    Update(Update),
}

/// The values of a matrix of cells.
pub fn values(m: &[Vec<AssignedValue<Fr>>]) -> Vec<Vec<Fr>> {
    m.iter()
        .map(|r| r.iter().map(|x| *x.value()).collect())
        .collect()
}

/// `A.B` over the field, from the cells' values.
fn product_values(a: &[Vec<AssignedValue<Fr>>], b: &[Vec<AssignedValue<Fr>>]) -> Vec<Vec<Fr>> {
    let p = b.first().map_or(0, Vec::len);
    a.iter()
        .map(|row| {
            (0..p)
                .map(|j| {
                    row.iter().zip(b).fold(Fr::zero(), |acc, (x, brow)| {
                        acc + *x.value() * *brow[j].value()
                    })
                })
                .collect()
        })
        .collect()
}

impl Check {
    /// Columns of `v` the check uses.
    fn width(&self) -> usize {
        match self {
            Check::Product(p) => p.b.first().map_or(0, Vec::len),
            Check::Update(u) => u.dz.first().map_or(0, Vec::len),
        }
    }

    /// The check evaluated natively along the powers of `r`: what the
    /// circuit enforces (for tests and diagnostics).
    pub fn holds(&self, r: Fr) -> bool {
        let v: Vec<Fr> = std::iter::successors(Some(Fr::one()), |x| Some(*x * r))
            .take(self.width())
            .collect();
        let dot = |x: &[Fr], y: &[Fr]| x.iter().zip(y).fold(Fr::zero(), |s, (a, b)| s + *a * *b);
        let along = |m: &[Vec<AssignedValue<Fr>>]| -> Vec<Fr> {
            values(m).iter().map(|row| dot(row, &v)).collect()
        };
        match self {
            Check::Product(p) => {
                let bv = along(&p.b);
                let cv = along(&p.c);
                p.a.len() == p.c.len()
                    && values(&p.a)
                        .iter()
                        .zip(&cv)
                        .all(|(ar, c)| dot(ar, &bv) == *c)
            }
            Check::Update(u) => {
                let dzv = along(&u.dz);
                let (wv, nwv, rv) = (along(&u.w), along(&u.nw), along(&u.r));
                let ones: Fr = v.iter().copied().sum();
                let [c, d, k] = u.constants();
                values(&u.x_t)
                    .iter()
                    .enumerate()
                    .all(|(i, xr)| c * dot(xr, &dzv) == d * wv[i] - d * nwv[i] + rv[i] - k * ones)
            }
        }
    }
}

/// Records matrix products and weight updates in the first phase;
/// [`check_products`] checks them in the second.
#[derive(Debug, Default)]
pub struct ProductChip {
    /// The checks recorded so far, in order.
    pub checks: RefCell<Vec<Check>>,
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

    /// The index of the next check, and the change the soundness tests ask
    /// of its entries `(0, 0)` and `(0, 1)`.
    fn next_tamper(&self) -> (Fr, Fr) {
        let n = self.count.get();
        self.count.set(n + 1);
        match self.tamper {
            Some(Tamper::ProductEntry(k)) if k == n => (Fr::one(), Fr::zero()),
            // Agrees with the truth along `v = (1, 1, ...)`: a fixed vector cannot see it.
            Some(Tamper::ProductAlongOnes(k)) if k == n => (Fr::one(), -Fr::one()),
            _ => (Fr::zero(), Fr::zero()),
        }
    }

    /// Assigns `C = A.B` (computed from the cells' values) and records the
    /// product for the challenge check. `a` is `n x m`, `b` is `m x p`.
    pub fn matmul(
        &self,
        ctx: &mut Context<Fr>,
        a: &[Vec<AssignedValue<Fr>>],
        b: &Shared,
    ) -> Matrix {
        let mut values = product_values(a, b);
        let (t0, t1) = self.next_tamper();
        if let Some(row) = values.first_mut() {
            for (j, t) in [t0, t1].into_iter().enumerate() {
                if let Some(x) = row.get_mut(j) {
                    *x += t;
                }
            }
        }
        let c: Matrix = values
            .into_iter()
            .map(|row| row.into_iter().map(|v| ctx.load_witness(v)).collect())
            .collect();
        self.checks.borrow_mut().push(Check::Product(Product {
            a: a.to_vec(),
            b: b.clone(),
            c: c.clone(),
        }));
        c
    }

    /// The SGD update of the weights `w` (`n x p`) by the gradient
    /// `X^T.dZ` (`x_t` is `n x m`, `dz` is `m x p`): assigns the new
    /// weights `round(W - c G / d)` as checked values and the remainders in
    /// `[0, d)`, records the update for the challenge check, and returns the
    /// new weights. The gradient itself is never assigned.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        ctx: &mut Context<Fr>,
        chip: &FixedChip,
        x_t: Matrix,
        dz: &[Vec<AssignedValue<Fr>>],
        w: &Shared,
        c: i64,
        d: u128,
    ) -> Shared {
        let grad = product_values(&x_t, dz);
        let (t0, t1) = self.next_tamper();
        let mut nw = Vec::with_capacity(w.len());
        let mut rem = Vec::with_capacity(w.len());
        let shift = chip.remainder_shift(d);
        for (i, (grow, wrow)) in grad.iter().zip(w.iter()).enumerate() {
            let mut vs = Vec::with_capacity(wrow.len());
            let mut rs = Vec::with_capacity(wrow.len());
            for (j, (g, wv)) in grow.iter().zip(wrow).enumerate() {
                // Honest gradients are far inside i128 (the model crate bounds
                // them); a corrupted one fails the check whatever we compute.
                let num = to_i128(g)
                    .and_then(|g| g.checked_mul(c as i128))
                    .unwrap_or(0);
                let (q, r) = chip.update_quotient(num, d);
                let mut v = int(wv) - q;
                if i == 0 {
                    let t = [t0, t1].get(j).copied().unwrap_or(Fr::zero());
                    v += to_i128(&t).unwrap_or(0);
                }
                vs.push(v);
                rs.push(r);
            }
            rem.push(chip.scaled_remainders(ctx, &rs, d));
            nw.push(chip.value_row(ctx, &vs));
        }
        let nw = Arc::new(nw);
        self.checks.borrow_mut().push(Check::Update(Update {
            x_t,
            dz: dz.to_vec(),
            w: w.clone(),
            nw: nw.clone(),
            r: rem,
            shift,
            c,
            d,
        }));
        nw
    }
}

/// Matrix rows whose evaluations along `v` a dedicated region computes
/// ([`crate::values`]): the cell holding each evaluation, by the row's
/// cells (all of them, in order: a row is found only when it is exactly
/// the evaluated one).
#[derive(Debug, Default)]
pub struct Evaluated(HashMap<Vec<ContextCell>, AssignedValue<Fr>>);

impl Evaluated {
    fn key(row: &[AssignedValue<Fr>]) -> Option<Vec<ContextCell>> {
        row.iter().map(|x| x.cell).collect()
    }

    /// Records that `cell` holds the evaluation of `row`.
    pub fn insert(&mut self, row: &[AssignedValue<Fr>], cell: AssignedValue<Fr>) {
        if let Some(k) = Self::key(row) {
            self.0.insert(k, cell);
        }
    }

    /// The cell holding the evaluation of `row`, if a region computes it.
    pub fn get(&self, row: &[AssignedValue<Fr>]) -> Option<AssignedValue<Fr>> {
        Self::key(row).and_then(|k| self.0.get(&k).copied())
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no row is evaluated elsewhere.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Rows evaluated along `v = (1, r, r^2, ...)` in the second phase, shared
/// matrices once, rows a region evaluates taken from it.
struct Along<'a> {
    powers: Vec<QuantumCell<Fr>>,
    memo: HashMap<*const Matrix, Vec<AssignedValue<Fr>>>,
    evaluated: &'a Evaluated,
}

impl Along<'_> {
    fn row(
        &self,
        ctx: &mut Context<Fr>,
        gate: &GateChip<Fr>,
        row: &[AssignedValue<Fr>],
    ) -> AssignedValue<Fr> {
        if let Some(done) = self.evaluated.get(row) {
            return done;
        }
        gate.inner_product(
            ctx,
            row.iter().copied(),
            self.powers[..row.len()].iter().copied(),
        )
    }

    fn rows(
        &self,
        ctx: &mut Context<Fr>,
        gate: &GateChip<Fr>,
        m: &[Vec<AssignedValue<Fr>>],
    ) -> Vec<AssignedValue<Fr>> {
        m.iter().map(|row| self.row(ctx, gate, row)).collect()
    }

    fn shared(
        &mut self,
        ctx: &mut Context<Fr>,
        gate: &GateChip<Fr>,
        m: &Shared,
    ) -> Vec<AssignedValue<Fr>> {
        if let Some(done) = self.memo.get(&Arc::as_ptr(m)) {
            return done.clone();
        }
        let done = self.rows(ctx, gate, m);
        self.memo.insert(Arc::as_ptr(m), done.clone());
        done
    }
}

/// Lays out, in a second-phase context, every check along `v`, the powers
/// of the challenge cell `r`: `C.v = A.(B.v)` for a product and
/// `c X^T.(dZ.v) = d W.v - d W'.v + R.v - floor(d/2) (1.v)` for an update.
/// Rows in `evaluated` are read from the cells it holds.
pub fn check_products(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    r: AssignedValue<Fr>,
    checks: &[Check],
    evaluated: &Evaluated,
) {
    let width = checks.iter().map(Check::width).max().unwrap_or(0);
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
    let mut along = Along {
        powers,
        memo: HashMap::new(),
        evaluated,
    };
    let mut ones: HashMap<usize, AssignedValue<Fr>> = HashMap::new();
    let existing = |v: &[AssignedValue<Fr>]| {
        v.iter()
            .copied()
            .map(QuantumCell::Existing)
            .collect::<Vec<_>>()
    };
    for check in checks {
        match check {
            Check::Product(p) => {
                let bv = along.shared(ctx, gate, &p.b);
                for (arow, crow) in p.a.iter().zip(&p.c) {
                    let lhs = gate.inner_product(ctx, arow.iter().copied(), existing(&bv));
                    let rhs = along.row(ctx, gate, crow);
                    ctx.constrain_equal(&lhs, &rhs);
                }
            }
            Check::Update(u) => {
                let p = check.width();
                let one = match ones.get(&p) {
                    Some(s) => *s,
                    None => {
                        let s = gate.sum(ctx, along.powers[..p].iter().copied());
                        ones.insert(p, s);
                        s
                    }
                };
                let dzv = along.rows(ctx, gate, &u.dz);
                let wv = along.shared(ctx, gate, &u.w);
                let nwv = along.shared(ctx, gate, &u.nw);
                let [c, d, k] = u.constants();
                let consts = [d, -d, Fr::one(), -k].map(QuantumCell::Constant);
                for (i, xrow) in u.x_t.iter().enumerate() {
                    let g = gate.inner_product(ctx, xrow.iter().copied(), existing(&dzv));
                    let lhs = gate.mul(ctx, g, QuantumCell::Constant(c));
                    let rv = along.row(ctx, gate, &u.r[i]);
                    let terms = [wv[i], nwv[i], rv, one].map(QuantumCell::Existing);
                    let rhs = gate.inner_product(ctx, terms, consts);
                    ctx.constrain_equal(&lhs, &rhs);
                }
            }
        }
    }
}
