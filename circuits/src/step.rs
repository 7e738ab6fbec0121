//! The SGD-step circuit: one training step proven with hidden weights and
//! committed data.
//!
//! Public instances, in order: `c_t`, `c_{t+1}`, the dataset root `R`, the
//! step index `t`, the digest of the public parameters, and the schedule hash
//! `H(TAG_SCHED_STEP, t, i_1..i_B)` of the batch's record indices (which the
//! verifier recomputes from the seed). Hashing the indices in the step circuit,
//! whose dedicated Poseidon region makes it cheap, keeps the public inputs (and
//! so the cost of verifying the proof inside an aggregation circuit) the same
//! whatever the batch size and span.
//!
//! The circuit enforces, with every witness produced by the model crate's
//! engine semantics (see [`crate::fixed_chip`] for the soundness argument):
//! 1. `c_t = H(TAG_WEIGHTS, salt_t, pack(W_t))` with every weight range-checked;
//! 2. for each record `s`: its features are range-checked, its leaf
//!    `H(TAG_LEAF, salt_s, y_s, pack(x_s))` is on a Merkle path to `R` at the
//!    position given by the index `i_s` (`i_s < 2^depth` by its bit
//!    decomposition; the verifier checks the indices against the schedule
//!    through the public schedule hash);
//! 3. the forward pass, stable softmax, cross-entropy gradient (a
//!    regression's `z - y` with its target range-checked), backward pass
//!    and the SGD update of [`zkaudit_model::engine`], exactly; the matrix
//!    products `X.W` and `dZ.W^T` of every layer are assigned as exact
//!    witnesses and checked in a second phase against a challenge the
//!    transcript draws after the first phase is committed, instead of one
//!    dot product per entry; the weight gradient `X^T.dZ` is not assigned
//!    at all: the update's new weights and remainders are, and the update
//!    is checked along the same challenge ([`crate::freivalds`], where the
//!    soundness argument is);
//! 4. `c_{t+1} = H(TAG_WEIGHTS, salt_{t+1}, pack(W_{t+1}))` where `W_{t+1}` is the
//!    in-circuit update, element by element, range-checked.
//!
//! A proof of a span of `S` consecutive steps hashes the weights only where
//! it ends: step 1's weights are loaded and checked against `c_first` (1.),
//! each later step starts from the very cells the previous step's update
//! produced (range-checked there), and only step `S`'s update is committed as
//! `c_last` (4.). The steps are chained by their indices (`t + 1`), the root
//! and the parameter digest; the intermediate commitments are neither
//! computed nor exposed, so a span costs two weight commitments, not `2 S`.

use halo2_base::gates::circuit::builder::BaseCircuitBuilder;
use halo2_base::gates::circuit::{
    BaseCircuitParams, BaseConfig, CircuitBuilderStage, MaybeRangeConfig,
};
use halo2_base::gates::flex_gate::threads::SinglePhaseCoreManager;
use halo2_base::gates::GateChip;
use halo2_base::gates::GateInstructions;
use halo2_base::halo2_proofs::circuit::{Layouter, SimpleFloorPlanner, Value};
use halo2_base::halo2_proofs::plonk::{
    Advice, Challenge, Circuit, Column, ConstraintSystem, Error, FirstPhase, SecondPhase, Selector,
    TableColumn,
};
use halo2_base::halo2_proofs::poly::Rotation;
use halo2_base::utils::halo2::{constrain_virtual_equals_external, raw_assign_advice};
use halo2_base::virtual_region::manager::VirtualRegionManager;
use halo2_base::{AssignedValue, Context, QuantumCell};
use serde::{Deserialize, Serialize};
use snark_verifier_sdk::CircuitExt;
use std::cell::RefCell;
use zkaudit_model::exp::ExpTable;
use zkaudit_model::transcript::Transcript;
use zkaudit_model::{FixedParams, Weights};

use crate::aggregate::{schedule_node_hash, schedule_step_hash};
use crate::field::{fe, fe_u128};
use crate::fixed_chip::{FixedChip, Tamper};
use crate::freivalds::{check_products, Check, Matrix, ProductChip, Shared};
use crate::hash::{self, MerkleTree, TAG_SCHED_NODE, TAG_SCHED_STEP};
use crate::poseidon::{PermRequest, PoseidonChip, PoseidonConfig};
use crate::shape::{PublicParams, StepShape, MINIMUM_ROWS, MIN_LARGE_K};
use crate::values::{
    remainder_lane_columns, value_lane_columns, ValueConfig, ValueLayout, ValueRecorder,
    ValueRegionParams, EVALUATION_CELLS,
};
use crate::{CircuitError, Fr, Result};

/// Version of the step circuit's constraint system; part of every key's cache
/// name, so a changed circuit never loads a stale key.
pub const CIRCUIT_VERSION: u32 = 12;

/// The public statement of one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStatement {
    /// Commitment to the weights before the step.
    pub c_before: Fr,
    /// Commitment to the weights after the step.
    pub c_after: Fr,
    /// Dataset Merkle root.
    pub root: Fr,
    /// Step index.
    pub step: u64,
    /// Digest of the public parameters.
    pub digest: Fr,
    /// Record indices of the batch.
    pub indices: Vec<u32>,
}

impl StepStatement {
    /// The instance column values.
    pub fn instances(&self) -> Vec<Fr> {
        span_instances(std::slice::from_ref(self))
    }
}

/// Number of public instances of a step or span proof.
pub const STEP_INSTANCES: usize = 6;

/// The public instances of a span of consecutive steps proven together:
/// `c_first, c_last, R, t_first, digest`, then the span's schedule hash (the
/// step's [`schedule_step_hash`] for one step, else [`schedule_node_hash`] of
/// the steps' hashes). For one step these are [`StepStatement::instances`].
pub fn span_instances(steps: &[StepStatement]) -> Vec<Fr> {
    let (first, last) = match (steps.first(), steps.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Vec::new(),
    };
    let hashes: Vec<Fr> = steps
        .iter()
        .map(|s| schedule_step_hash(s.step, &s.indices))
        .collect();
    let schedule = match hashes.as_slice() {
        [one] => *one,
        _ => schedule_node_hash(&hashes),
    };
    vec![
        first.c_before,
        last.c_after,
        first.root,
        Fr::from(first.step),
        first.digest,
        schedule,
    ]
}

/// The private witness of one step.
#[derive(Clone, Debug)]
pub struct StepWitness {
    /// Weights before the step.
    pub weights: Weights,
    /// Salt of `c_t`.
    pub salt_before: u128,
    /// Salt of `c_{t+1}`.
    pub salt_after: u128,
    /// Batch records.
    pub features: Vec<Vec<i64>>,
    /// Batch labels.
    pub labels: Vec<i64>,
    /// Leaf salts of the batch records.
    pub leaf_salts: Vec<u128>,
    /// Merkle siblings of each record, bottom-up.
    pub paths: Vec<Vec<Fr>>,
}

/// Statement and witness of step `t` of a transcript (tree built by the caller, once per run).
pub fn step_inputs(
    t: &Transcript,
    tree: &MerkleTree,
    step: usize,
) -> Result<(StepStatement, StepWitness)> {
    let b = t.batch(step)?;
    let vb = t.config.fx.value_bits;
    let statement = StepStatement {
        c_before: hash::commit_weights_native(t.weight_salts[step], &t.weights[step].flatten(), vb),
        c_after: hash::commit_weights_native(
            t.weight_salts[step + 1],
            &t.weights[step + 1].flatten(),
            vb,
        ),
        root: tree.root(),
        step: step as u64,
        digest: PublicParams::of(t).digest(),
        indices: b.indices.clone(),
    };
    let witness = StepWitness {
        weights: t.weights[step].clone(),
        salt_before: t.weight_salts[step],
        salt_after: t.weight_salts[step + 1],
        leaf_salts: b
            .indices
            .iter()
            .map(|&i| t.leaf_salts[i as usize])
            .collect(),
        paths: b.indices.iter().map(|&i| tree.path(i as usize)).collect(),
        features: b.features,
        labels: b.labels,
    };
    Ok((statement, witness))
}

/// A witness of the right shape with all-zero values (for key generation).
pub fn dummy_inputs(shape: &StepShape) -> (StepStatement, StepWitness) {
    let a = &shape.arch;
    let statement = StepStatement {
        c_before: Fr::zero(),
        c_after: Fr::zero(),
        root: Fr::zero(),
        step: 0,
        digest: Fr::zero(),
        indices: vec![0; shape.batch],
    };
    let witness = StepWitness {
        weights: Weights::zeros(a),
        salt_before: 0,
        salt_after: 0,
        features: vec![vec![0; a.input_dim()]; shape.batch],
        labels: vec![0; shape.batch],
        leaf_salts: vec![0; shape.batch],
        paths: vec![vec![Fr::zero(); shape.depth]; shape.batch],
    };
    (statement, witness)
}

/// Parameters of the physical circuit: the halo2-base layout plus the exp table.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepCircuitParams {
    /// halo2-base columns and lookup bits.
    pub base: BaseCircuitParams,
    /// Fixed-point fractional bits (selects the exp table).
    pub frac_bits: u32,
    /// Stored-value width.
    pub value_bits: u32,
    /// Parallel lanes of the Poseidon region.
    pub poseidon_lanes: usize,
    /// Leaves the exp table out (audit circuits never evaluate a softmax).
    #[serde(default)]
    pub no_exp_table: bool,
    /// Lanes of the value region (none in audit circuits).
    #[serde(default)]
    pub values: ValueRegionParams,
}

impl StepCircuitParams {
    /// Advice columns of the layout, every kind: halo2-base (both phases
    /// and its lookup columns), the Poseidon lanes, the exp lookup's, the
    /// challenge's cell and the value region's lanes.
    pub fn advice_columns(&self) -> usize {
        let b = &self.base;
        let second = b.num_advice_per_phase.len() > 1;
        let v = &self.values;
        let value_lane = value_lane_columns(self.value_bits, b.lookup_bits.unwrap_or(0));
        // halo2-base looks a lone first-phase column up in place, with a
        // selector instead of lookup columns.
        let lookups = b
            .num_lookup_advice_per_phase
            .iter()
            .enumerate()
            .filter(|&(phase, _)| phase > 0 || b.num_advice_per_phase.first() != Some(&1))
            .map(|(_, &n)| n)
            .sum::<usize>();
        b.num_advice_per_phase.iter().sum::<usize>()
            + lookups
            + 6 * self.poseidon_lanes
            + if self.no_exp_table { 0 } else { 2 }
            + usize::from(second)
            + v.value_lanes * value_lane
            + v.remainder_lanes * remainder_lane_columns(v.remainder_limbs, v.remainder_cells)
    }
}

/// Columns of the exp-table lookup.
#[derive(Clone, Debug)]
pub struct ExpLookupConfig {
    q: Selector,
    key: Column<Advice>,
    value: Column<Advice>,
    t_key: TableColumn,
    t_value: TableColumn,
}

/// The configuration: halo2-base plus the exp lookup.
#[derive(Clone, Debug)]
pub struct StepConfig {
    /// halo2-base gates, range lookup and instances.
    pub base: BaseConfig<Fr>,
    /// The exp table lookup (absent when the circuit has no softmax).
    pub exp: Option<ExpLookupConfig>,
    /// The Poseidon region.
    pub poseidon: PoseidonConfig,
    /// The second phase: the challenge and the products' checks (absent
    /// when the circuit multiplies no matrices).
    pub products: Option<ProductConfig>,
    /// The value region (absent in audit circuits).
    pub values: Option<ValueConfig>,
}

/// The challenge of the products' second-phase check and the cell that
/// holds it.
#[derive(Clone, Debug)]
pub struct ProductConfig {
    challenge: Challenge,
    q: Selector,
    r: Column<Advice>,
}

/// The second phase of a circuit: the matrix products its first phase
/// recorded, checked against the challenge ([`crate::freivalds`]).
#[derive(Debug, Default)]
pub struct ProductPhase {
    /// The products and updates, in the order they were recorded.
    pub checks: Vec<Check>,
    /// Second-phase advice cells.
    pub cells: usize,
    /// halo2-base break points of the second phase (set by keygen, given to the prover).
    pub break_points: RefCell<Option<Vec<usize>>>,
    /// Soundness tests only: a value the prover uses in place of the challenge.
    pub(crate) chosen_challenge: Option<Fr>,
}

impl ProductPhase {
    /// The phase for `checks`, the rows `values` evaluates read from it;
    /// its cells are counted by laying the checks out once in a
    /// witness-only context.
    pub fn new(checks: Vec<Check>, values: &ValueLayout) -> Self {
        let mut ctx = Context::new(true, 1, "zkaudit:count", 0, Default::default());
        let mut heads = Context::new(true, 1, EVALUATION_CELLS, 0, Default::default());
        let evaluated = values.evaluations(&mut heads, Fr::zero());
        let r = ctx.load_witness(Fr::zero());
        check_products(&mut ctx, &GateChip::default(), r, &checks, &evaluated);
        ProductPhase {
            cells: if checks.is_empty() {
                0
            } else {
                ctx.advice.len()
            },
            checks,
            break_points: RefCell::new(None),
            chosen_challenge: None,
        }
    }

    /// Second-phase columns for the checks at `usable` rows per column (a
    /// few rows spare for halo2-base's column breaks).
    pub fn columns(&self, usable: usize) -> usize {
        if self.cells == 0 {
            return 0;
        }
        (self.cells + self.cells / usable + 8).div_ceil(usable)
    }
}

/// The step circuit, ready for keygen, mock proving or proving.
pub struct StepCircuit {
    /// The halo2-base virtual circuit.
    pub builder: BaseCircuitBuilder<Fr>,
    /// Exp-table `(key, value)` lookups.
    pub lookups: Vec<[AssignedValue<Fr>; 2]>,
    /// Poseidon permutations for the dedicated region.
    pub perms: Vec<PermRequest>,
    /// The second phase (matrix products checked with the challenge).
    pub phase1: ProductPhase,
    /// The values range-checked in the value region, placed.
    pub values: ValueLayout,
    /// The commitment to the weights the circuit's own update computed (equal
    /// to the statement's `c_after` exactly when the witness is honest).
    pub computed_c_after: Fr,
    /// Physical parameters.
    pub params: StepCircuitParams,
}

impl StepCircuit {
    /// Builds the circuit for a statement and witness.
    ///
    /// `stage` is keygen, mock or prover; `params` must be given for the
    /// prover stage (from keygen) and is computed otherwise.
    pub fn build(
        shape: &StepShape,
        statement: &StepStatement,
        witness: &StepWitness,
        stage: CircuitBuilderStage,
        params: Option<StepCircuitParams>,
        break_points: Option<Vec<Vec<usize>>>,
        tamper: Option<Tamper>,
    ) -> Result<Self> {
        Self::build_span(
            shape,
            std::slice::from_ref(statement),
            std::slice::from_ref(witness),
            stage,
            params,
            break_points,
            tamper,
        )
    }

    /// Builds the circuit of a span of `shape.span` consecutive steps: each
    /// step as in [`StepCircuit::build`], and in-circuit chaining (each
    /// step's after-commitment is the next one's before-commitment, step
    /// indices consecutive, one root and digest). Instances: [`span_instances`].
    pub fn build_span(
        shape: &StepShape,
        statements: &[StepStatement],
        witnesses: &[StepWitness],
        stage: CircuitBuilderStage,
        params: Option<StepCircuitParams>,
        break_points: Option<Vec<Vec<usize>>>,
        tamper: Option<Tamper>,
    ) -> Result<Self> {
        if statements.len() != shape.span || witnesses.len() != shape.span {
            return Err(CircuitError::Shape(format!(
                "the circuit proves spans of {} steps, got {}",
                shape.span,
                statements.len()
            )));
        }
        for (st, w) in statements.iter().zip(witnesses) {
            check_inputs(shape, st, w)?;
        }
        let (break_points, phase1_break_points) = match break_points {
            Some(mut bp) if bp.len() > 1 => {
                let second = bp.pop();
                (Some(bp), second)
            }
            other => (other, None),
        };
        let mut builder = new_builder(stage, shape.k, shape.lookup_bits, &params, break_points);
        let mut chip = FixedChip::new(builder.range_chip(), shape.fx, tamper);
        if uses_value_region(shape.k) {
            chip.values = Some(RefCell::new(ValueRecorder::new(
                builder.core().copy_manager.clone(),
                shape.fx.value_bits,
                shape.lookup_bits,
            )));
        }
        let products = ProductChip::new(tamper);
        let poseidon = PoseidonChip {
            tamper_output: match tamper {
                Some(Tamper::PoseidonOutput(n)) => Some(n),
                _ => None,
            },
            ..PoseidonChip::default()
        };
        let mut parts = Vec::with_capacity(statements.len());
        let mut computed_c_after = Fr::zero();
        let mut carried = None;
        for (i, (st, w)) in statements.iter().zip(witnesses).enumerate() {
            let chain = Chain {
                carried: carried.take(),
                commit_after: i + 1 == statements.len(),
            };
            let (inst, c, updated) = synthesize_step(
                &mut builder,
                (&chip, &products, &poseidon),
                shape,
                st,
                w,
                chain,
            );
            parts.push(inst);
            computed_c_after = c;
            carried = Some(updated);
        }
        let gate = chip.gate().clone();
        let ctx = builder.main(0);
        // Consecutive steps of one run: the weights are chained cell to cell
        // above; here the step indices, the root and the parameters.
        for w in parts.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            let next = gate.add(ctx, a[3], QuantumCell::Constant(Fr::one()));
            ctx.constrain_equal(&next, &b[3]);
            ctx.constrain_equal(&a[2], &b[2]);
            ctx.constrain_equal(&a[4], &b[4]);
        }
        let (first, last) = (&parts[0], &parts[parts.len() - 1]);
        let schedule = if parts.len() == 1 {
            first[5]
        } else {
            let mut input = vec![ctx.load_constant(Fr::from(TAG_SCHED_NODE))];
            input.extend(parts.iter().map(|p| p[5]));
            poseidon.hash_fix_len(ctx, &gate, &input)
        };
        let instances = vec![first[0], last[1], first[2], first[3], first[4], schedule];
        builder.assigned_instances = vec![instances];
        let given = params.is_some();
        let mut c = StepCircuit::assemble(builder, &chip, &poseidon, shape.k, params)?;
        c.computed_c_after = computed_c_after;
        c.phase1 = ProductPhase::new(products.checks.into_inner(), &c.values);
        *c.phase1.break_points.borrow_mut() = phase1_break_points;
        if !given {
            let usable = (1usize << shape.k) - MINIMUM_ROWS;
            let columns = c.phase1.columns(usable);
            let phases = &mut c.params.base.num_advice_per_phase;
            phases.truncate(1);
            if columns > 0 {
                phases.push(columns);
            }
        }
        Ok(c)
    }

    /// Wraps a laid-out halo2-base builder with the exp lookups and Poseidon
    /// permutations its chips recorded into a circuit: the physical layout of
    /// every zkaudit circuit (step and audit circuits alike). `params` are
    /// computed (keygen, mock) unless given (prover stage).
    pub fn assemble(
        mut builder: BaseCircuitBuilder<Fr>,
        chip: &FixedChip,
        poseidon: &PoseidonChip,
        k: u32,
        params: Option<StepCircuitParams>,
    ) -> Result<Self> {
        let lookups = chip.exp_lookups.borrow().clone();
        let perms = poseidon.requests.borrow().clone();
        let usable = (1usize << k) - MINIMUM_ROWS;
        let values = match &chip.values {
            Some(rec) => rec.borrow().layout(usable).map_err(CircuitError::Shape)?,
            None => ValueLayout::default(),
        };
        let params = match params {
            Some(p) => {
                if values.params.value_lanes > p.values.value_lanes
                    || values.params.remainder_lanes > p.values.remainder_lanes
                    || (values.params.remainder_lanes > 0
                        && (values.params.remainder_limbs != p.values.remainder_limbs
                            || values.params.remainder_cells != p.values.remainder_cells))
                {
                    return Err(CircuitError::Shape(format!(
                        "the witness needs value-region lanes {:?}, the key has {:?}",
                        values.params, p.values
                    )));
                }
                p
            }
            None => {
                let base = builder.calculate_params(Some(MINIMUM_ROWS));
                let no_exp_table = lookups.is_empty() && chip.no_exp_table;
                let table_rows = if no_exp_table {
                    0
                } else {
                    (1usize << chip.exp.lo_bits) + (1usize << chip.exp.hi_bits) + 1
                };
                if table_rows > usable || lookups.len() > usable {
                    return Err(CircuitError::Shape(format!(
                        "k = {k} is too small for the exp table ({table_rows} rows) and {} lookups",
                        lookups.len()
                    )));
                }
                StepCircuitParams {
                    base,
                    frac_bits: chip.fx.frac_bits,
                    value_bits: chip.fx.value_bits,
                    poseidon_lanes: poseidon.lanes_needed(usable),
                    no_exp_table,
                    values: values.params,
                }
            }
        };
        Ok(StepCircuit {
            builder,
            lookups,
            perms,
            phase1: ProductPhase::default(),
            values,
            params,
            computed_c_after: Fr::zero(),
        })
    }

    /// Number of advice cells used, both phases (for benchmarks and shapes).
    pub fn advice_cells(&self) -> usize {
        self.base_cells()
            + self.values.cells(
                self.params.value_bits,
                self.params.base.lookup_bits.unwrap_or(0),
            )
    }

    /// halo2-base advice cells, both phases.
    fn base_cells(&self) -> usize {
        self.builder
            .statistics()
            .gate
            .total_advice_per_phase
            .iter()
            .sum::<usize>()
            + self.phase1.cells
    }

    /// The circuit's size by kind, as [`StepShape::estimate`] gives it for
    /// a shape: what the automatic layout is chosen from.
    pub fn size(&self) -> crate::shape::Estimate {
        let (values, remainders) = self.values.rows_by_kind();
        let l = self.params.base.lookup_bits.unwrap_or(0);
        crate::shape::Estimate {
            cells: self.base_cells() as u64,
            perms: self.perms.len() as u64,
            values: values as u64,
            remainders: remainders as u64,
            value_bits: self.params.value_bits,
            remainder_bits: (self.values.params.remainder_limbs * l) as u32,
            remainder_cells: self.values.params.remainder_cells,
            second_phase: self.phase1.cells > 0,
        }
    }

    /// The halo2-base break points of both phases (kept from keygen for proving).
    pub fn break_points(&self) -> Vec<Vec<usize>> {
        let mut bp = self.builder.break_points();
        bp.truncate(1);
        if let Some(second) = self.phase1.break_points.borrow().as_ref() {
            bp.push(second.clone());
        }
        bp
    }
}

/// Whether a step circuit laid out at `2^k` rows range-checks its values in
/// the value region ([`crate::values`]): the large circuits of
/// [`StepShape::auto_k`] (`k >= MIN_LARGE_K`), whose proving time tracks
/// their slots. A lane is a whole column (and each limb column a lookup
/// argument, which an aggregation verifies) whatever it holds, so the few
/// values of a small circuit, laid out narrow for cheap aggregation, stay
/// in halo2-base's limb chains.
pub fn uses_value_region(k: u32) -> bool {
    k >= MIN_LARGE_K
}

/// A halo2-base builder with one instance column at `2^k` rows; in the
/// prover stage with the keygen's `params` and `break_points`.
pub fn new_builder(
    stage: CircuitBuilderStage,
    k: u32,
    lookup_bits: usize,
    params: &Option<StepCircuitParams>,
    break_points: Option<Vec<Vec<usize>>>,
) -> BaseCircuitBuilder<Fr> {
    let mut builder = BaseCircuitBuilder::from_stage(stage)
        .use_k(k as usize)
        .use_lookup_bits(lookup_bits)
        .use_instance_columns(1);
    if let Some(p) = params {
        builder.set_params(p.base.clone());
    }
    if let Some(bp) = break_points {
        builder.set_break_points(bp);
    }
    builder
}

fn check_inputs(shape: &StepShape, st: &StepStatement, w: &StepWitness) -> Result<()> {
    let bad = |m: String| Err(CircuitError::Shape(m));
    w.weights.check_shape(&shape.arch)?;
    if st.indices.len() != shape.batch
        || w.features.len() != shape.batch
        || w.labels.len() != shape.batch
    {
        return bad(format!(
            "the circuit proves batches of {} records",
            shape.batch
        ));
    }
    if w.paths.iter().any(|p| p.len() != shape.depth) || w.leaf_salts.len() != shape.batch {
        return bad(format!("Merkle paths must have depth {}", shape.depth));
    }
    if w.features.iter().any(|x| x.len() != shape.arch.input_dim()) {
        return bad(format!(
            "records must have {} features",
            shape.arch.input_dim()
        ));
    }
    Ok(())
}

/// Assigned cells of one vector.
type Cells = Vec<AssignedValue<Fr>>;

/// A layer's weights (`inputs x outputs`, shared by the checks that read
/// them) and biases.
type Layer = (Shared, Cells);

/// The cells of a model's weights in commitment order: each layer's weights
/// row-major, then its biases.
fn flatten(layers: &[Layer]) -> Cells {
    layers
        .iter()
        .flat_map(|(w, b)| w.iter().flatten().chain(b).copied())
        .collect()
}

/// The weights a step starts from inside a span, and whether it commits to
/// the weights it ends with.
struct Chain {
    /// The previous step's updated weights (range-checked), or `None` for
    /// the first step of a proof: its weights are loaded and committed.
    carried: Option<Vec<Layer>>,
    /// Whether the updated weights are committed (the last step of a proof).
    commit_after: bool,
}

/// Lays out the whole step; returns its statement's cells
/// `[c_t, c_{t+1}, R, t, digest, schedule hash]`, the computed `c_{t+1}`
/// (zero when not committed) and the updated weights' cells. Inside a span
/// the weights pass from step to step as the same cells, so only the first
/// step's `c_t` and the last step's `c_{t+1}` are hashed and constrained.
// Samples, layers and units are parallel arrays indexed together.
#[allow(clippy::needless_range_loop)]
fn synthesize_step(
    builder: &mut BaseCircuitBuilder<Fr>,
    (chip, products, h): (&FixedChip, &ProductChip, &PoseidonChip),
    shape: &StepShape,
    st: &StepStatement,
    w: &StepWitness,
    chain: Chain,
) -> (Vec<AssignedValue<Fr>>, Fr, Vec<Layer>) {
    let gate = chip.gate().clone();
    let fx: FixedParams = shape.fx;
    let f = fx.frac_bits;
    let vb = fx.value_bits;
    let ctx = builder.main(0);

    // The statement (the indices stay private: the schedule hash binds them).
    let c_before = ctx.load_witness(st.c_before);
    let c_after = ctx.load_witness(st.c_after);
    let root = ctx.load_witness(st.root);
    let step = ctx.load_witness(Fr::from(st.step));
    let digest = ctx.load_witness(st.digest);
    let indices: Vec<_> = st
        .indices
        .iter()
        .map(|&i| ctx.load_witness(Fr::from(i as u64)))
        .collect();

    // 1. Weights before: loaded, range-checked and committed, or (inside a
    //    span) the previous step's updated cells themselves.
    let params: Vec<Layer> = match chain.carried {
        None => {
            let shapes = shape
                .arch
                .convs()
                .map(|c| c.out_channels)
                .chain(shape.arch.layers.iter().map(|l| l.outputs));
            let params: Vec<Layer> = w
                .weights
                .all()
                .zip(shapes)
                .map(|(l, cols)| {
                    let rows: Matrix =
                        l.w.chunks(cols.max(1))
                            .map(|row| {
                                let row: Vec<i128> = row.iter().map(|&v| v as i128).collect();
                                chip.value_row(ctx, &row)
                            })
                            .collect();
                    let b = l.b.iter().map(|&v| chip.load_value(ctx, v)).collect();
                    (Shared::new(rows), b)
                })
                .collect();
            let salt_before = ctx.load_witness(fe_u128(w.salt_before));
            let c = hash::commit_weights(ctx, &gate, h, salt_before, &flatten(&params), vb);
            ctx.constrain_equal(&c, &c_before);
            params
        }
        Some(params) => params,
    };
    // The convolutions' weights come first (the commitment's order).
    let (convs, layers) = params.split_at(shape.arch.convs().count());

    // 2. Records and their Merkle membership at the scheduled indices.
    let mut xs = Vec::with_capacity(shape.batch);
    let mut ys = Vec::with_capacity(shape.batch);
    for s in 0..shape.batch {
        let x: Vec<_> = w.features[s]
            .iter()
            .map(|&v| chip.load_value(ctx, v))
            .collect();
        let y = ctx.load_witness(fe(w.labels[s] as i128));
        let salt = ctx.load_witness(fe_u128(w.leaf_salts[s]));
        let leaf = hash::leaf(ctx, &gate, h, salt, y, &x, vb);
        let bits = gate.num_to_bits(ctx, indices[s], shape.depth);
        let sibs: Vec<_> = w.paths[s].iter().map(|&p| ctx.load_witness(p)).collect();
        let r = hash::merkle_root(ctx, &gate, h, leaf, &bits, &sibs);
        ctx.constrain_equal(&r, &root);
        xs.push(x);
        ys.push(y);
    }

    // 3. Forward pass: the stages, then the dense layers.
    let (stage_traces, features) = stages::forward(ctx, (chip, products), shape, convs, xs);
    let nl = shape.arch.layers.len();
    // inputs[l][s], z[l][s], mask[l][s]
    let mut inputs: Vec<Vec<Vec<AssignedValue<Fr>>>> = vec![features];
    let mut masks: Vec<Vec<Vec<AssignedValue<Fr>>>> = Vec::with_capacity(nl);
    let mut logits = Vec::with_capacity(shape.batch);
    for (l, spec) in shape.arch.layers.iter().enumerate() {
        let (wl, bl) = &layers[l];
        // Z = X.W exactly (checked with the challenge), then bias and rounding.
        let exact = products.matmul(ctx, &inputs[l], wl);
        let mut next = Vec::with_capacity(shape.batch);
        let mut mask_l = Vec::with_capacity(shape.batch);
        for s in 0..shape.batch {
            let mut out = Vec::with_capacity(spec.outputs);
            let mut mask = Vec::with_capacity(spec.outputs);
            for j in 0..spec.outputs {
                let (z, bit) = chip.dense_output(ctx, exact[s][j], bl[j]);
                // The last layer's activation (a sigmoid output) belongs to the loss.
                out.push(if l + 1 == nl {
                    z
                } else {
                    chip.activate(ctx, spec.activation, z, bit)
                });
                mask.push(bit);
            }
            if l + 1 == nl {
                logits.push(out);
            } else {
                next.push(out);
            }
            mask_l.push(mask);
        }
        masks.push(mask_l);
        if l + 1 < nl {
            inputs.push(next);
        }
    }

    // 4. Softmax and cross-entropy gradient; a sigmoid output is the softmax
    //    of [0, z], of which only z's gradient is the layer's.
    //    A regression's gradient is z - y, its target y range-checked as a
    //    value and the difference too (the engine's check).
    let skip = shape.arch.num_classes() - shape.arch.layers[nl - 1].outputs;
    let mut dz: Vec<Vec<AssignedValue<Fr>>> = (0..shape.batch)
        .map(|s| {
            if shape.arch.is_regression() {
                chip.check_value(ctx, ys[s]);
                let d = gate.sub(ctx, logits[s][0], ys[s]);
                chip.check_value(ctx, d);
                return vec![d];
            }
            let mut z: Vec<_> = (0..skip).map(|_| ctx.load_zero()).collect();
            z.extend(&logits[s]);
            let p = chip.softmax(ctx, &z);
            chip.ce_grad(ctx, &p, ys[s]).split_off(skip)
        })
        .collect();

    // 5. Backward pass and 6. update, last layer first.
    let mut new_layers: Vec<Option<Layer>> = vec![None; nl];
    for l in (0..nl).rev() {
        let spec = shape.arch.layers[l];
        let (wl, bl) = &layers[l];
        // Input gradients with the weights before the update: dX = dZ.W^T
        // exactly (checked with the challenge), then rounding and the mask
        // (for the first layer, only into stages, which apply their own).
        let dz_prev: Option<Vec<Vec<AssignedValue<Fr>>>> = (l > 0 || !shape.arch.stages.is_empty())
            .then(|| {
                let w_t: Matrix = (0..spec.outputs)
                    .map(|j| (0..spec.inputs).map(|i| wl[i][j]).collect())
                    .collect();
                let exact = products.matmul(ctx, &dz, &Shared::new(w_t));
                exact
                    .into_iter()
                    .enumerate()
                    .map(|(s, row)| {
                        row.into_iter()
                            .enumerate()
                            .map(|(i, acc)| {
                                let (da, _) = chip.rescale(ctx, acc, f);
                                if l == 0 {
                                    return da;
                                }
                                chip.activation_grad(
                                    ctx,
                                    shape.arch.layers[l - 1].activation,
                                    inputs[l][s][i],
                                    masks[l - 1][s][i],
                                    da,
                                )
                            })
                            .collect()
                    })
                    .collect()
            });
        let wdiv = (shape.batch as u128) << (2 * f);
        let bdiv = (shape.batch as u128) << f;
        // The update by the weight gradient dW = X^T.dZ, checked with the
        // challenge without assigning dW.
        let x_t: Matrix = (0..spec.inputs)
            .map(|i| (0..shape.batch).map(|s| inputs[l][s][i]).collect())
            .collect();
        let new_w = products.update(ctx, chip, x_t, &dz, wl, shape.lr_fx, wdiv);
        let mut updated = Vec::with_capacity(spec.outputs);
        for j in 0..spec.outputs {
            let g = gate.sum(ctx, (0..shape.batch).map(|s| dz[s][j]));
            let q = chip.div_const(ctx, g, shape.lr_fx, bdiv);
            let nb = gate.sub(ctx, bl[j], q);
            chip.check_value(ctx, nb);
            updated.push(nb);
        }
        new_layers[l] = Some((new_w, updated));
        if let Some(p) = dz_prev {
            dz = p;
        }
    }

    // The stages' backward pass and updates, from the first layer's input gradient.
    let mut new_params = if shape.arch.stages.is_empty() {
        Vec::new()
    } else {
        stages::backward(ctx, (chip, products), shape, convs, stage_traces, dz)
    };

    // 7. Commitment to the updated weights (the last step of a proof).
    new_params.extend(new_layers.into_iter().flatten());
    let new_layers = new_params;
    let computed_after = if chain.commit_after {
        let salt_after = ctx.load_witness(fe_u128(w.salt_after));
        let c = hash::commit_weights(ctx, &gate, h, salt_after, &flatten(&new_layers), vb);
        ctx.constrain_equal(&c, &c_after);
        *c.value()
    } else {
        Fr::zero()
    };

    // 8. The schedule hash of the batch's indices.
    let mut input = vec![ctx.load_constant(Fr::from(TAG_SCHED_STEP)), step];
    input.extend(indices);
    let schedule = h.hash_fix_len(ctx, &gate, &input);

    (
        vec![c_before, c_after, root, step, digest, schedule],
        computed_after,
        new_layers,
    )
}

impl Circuit<Fr> for StepCircuit {
    type Config = StepConfig;
    type FloorPlanner = SimpleFloorPlanner;
    type Params = StepCircuitParams;

    fn params(&self) -> Self::Params {
        self.params.clone()
    }

    fn without_witnesses(&self) -> Self {
        unimplemented!("StepCircuit is built with params")
    }

    fn configure_with_params(
        meta: &mut ConstraintSystem<Fr>,
        params: Self::Params,
    ) -> Self::Config {
        let base = BaseConfig::configure(meta, params.base.clone());
        let exp = (!params.no_exp_table).then(|| {
            let q = meta.complex_selector();
            let key = meta.advice_column();
            let value = meta.advice_column();
            meta.enable_equality(key);
            meta.enable_equality(value);
            let t_key = meta.lookup_table_column();
            let t_value = meta.lookup_table_column();
            meta.lookup("exp table", |meta| {
                let q = meta.query_selector(q);
                let k = meta.query_advice(key, Rotation::cur());
                let v = meta.query_advice(value, Rotation::cur());
                vec![(q.clone() * k, t_key), (q * v, t_value)]
            });
            ExpLookupConfig {
                q,
                key,
                value,
                t_key,
                t_value,
            }
        });
        let poseidon = PoseidonConfig::configure(meta, params.poseidon_lanes.max(1));
        let second = params
            .base
            .num_advice_per_phase
            .get(1)
            .copied()
            .unwrap_or(0);
        let products = (second > 0).then(|| {
            let challenge = meta.challenge_usable_after(FirstPhase);
            let q = meta.selector();
            let r = meta.advice_column_in(SecondPhase);
            meta.enable_equality(r);
            meta.create_gate("the cell holding the challenge", |meta| {
                let q = meta.query_selector(q);
                let r = meta.query_advice(r, Rotation::cur());
                vec![q * (r - meta.query_challenge(challenge))]
            });
            ProductConfig { challenge, q, r }
        });
        let v = params.values;
        let values = match (&base.base, &products, params.base.lookup_bits) {
            (MaybeRangeConfig::WithRange(rc), Some(pc), Some(bits))
                if v.value_lanes + v.remainder_lanes > 0 =>
            {
                Some(ValueConfig::configure(
                    meta,
                    v,
                    params.value_bits,
                    bits,
                    rc.lookup,
                    pc.challenge,
                ))
            }
            _ => None,
        };
        StepConfig {
            base,
            poseidon,
            exp,
            products,
            values,
        }
    }

    fn configure(_: &mut ConstraintSystem<Fr>) -> Self::Config {
        unreachable!("StepCircuit is configured with params")
    }

    fn synthesize(
        &self,
        config: Self::Config,
        mut layouter: impl Layouter<Fr>,
    ) -> Result<(), Error> {
        config.base.initialize(&mut layouter);
        let fx = FixedParams {
            frac_bits: self.params.frac_bits,
            value_bits: self.params.value_bits,
        };
        if let Some(exp) = &config.exp {
            let table = ExpTable::new(&fx);
            layouter.assign_table(
                || "exp table",
                |mut t| {
                    let mut row = 0;
                    let mut put = |k: i128, v: i128, row: &mut usize| -> Result<(), Error> {
                        t.assign_cell(|| "key", exp.t_key, *row, || Value::known(fe(k)))?;
                        t.assign_cell(|| "value", exp.t_value, *row, || Value::known(fe(v)))?;
                        *row += 1;
                        Ok(())
                    };
                    put(0, 0, &mut row)?; // disabled rows
                    for (lo, v) in table.lo.iter().enumerate() {
                        put(lo as i128 + 1, *v as i128, &mut row)?;
                    }
                    for (hi, v) in table.hi.iter().enumerate() {
                        put(
                            (1i128 << table.lo_bits) + hi as i128 + 1,
                            *v as i128,
                            &mut row,
                        )?;
                    }
                    Ok(())
                },
            )?;
        }
        let builder = &self.builder;
        let witness_gen_only = builder.witness_gen_only();
        layouter.assign_region(
            || "halo2-base",
            |mut region| {
                let gate = config.base.gate();
                builder.core().phase_manager[0]
                    .assign_raw(&(gate.basic_gates[0].clone(), gate.max_rows), &mut region);
                if let MaybeRangeConfig::WithRange(rc) = &config.base.base {
                    builder.assign_lookups_in_phase(rc, &mut region, 0);
                }
                Ok(())
            },
        )?;
        if let Some(exp) = &config.exp {
            layouter.assign_region(
                || "exp lookups",
                |mut region| {
                    let mut cm = (!witness_gen_only).then(|| builder.core().copy_manager.lock());
                    for (row, [k, v]) in self.lookups.iter().enumerate() {
                        exp.q.enable(&mut region, row)?;
                        let kc =
                            raw_assign_advice(&mut region, exp.key, row, Value::known(*k.value()));
                        let vc = raw_assign_advice(
                            &mut region,
                            exp.value,
                            row,
                            Value::known(*v.value()),
                        );
                        if let Some(Ok(cm)) = cm.as_mut() {
                            constrain_virtual_equals_external(&mut region, *k, kc.cell(), cm);
                            constrain_virtual_equals_external(&mut region, *v, vc.cell(), cm);
                        }
                    }
                    Ok(())
                },
            )?;
        }
        let usable = (1usize << self.params.base.k) - MINIMUM_ROWS;
        layouter.assign_region(
            || "poseidon",
            |mut region| {
                let mut cm = (!witness_gen_only).then(|| builder.core().copy_manager.lock());
                let copy = match cm.as_mut() {
                    Some(Ok(g)) => Some(&mut **g),
                    _ => None,
                };
                config
                    .poseidon
                    .assign(&mut region, &self.perms, usable, copy)
            },
        )?;
        if self.values.rows() > 0 {
            let vc = config.values.as_ref().ok_or(Error::Synthesis)?;
            layouter.assign_region(
                || "values",
                |mut region| {
                    let mut cm = (!witness_gen_only).then(|| builder.core().copy_manager.lock());
                    let copy = match cm.as_mut() {
                        Some(Ok(g)) => Some(&mut **g),
                        _ => None,
                    };
                    vc.assign(&mut region, &self.values, copy)
                },
            )?;
        }
        if let Some(pc) = &config.products {
            // Every first-phase column is committed here; then the challenge.
            layouter.next_phase();
            let mut r = Fr::zero();
            layouter.get_challenge(pc.challenge).map(|v| r = v);
            if let Some(chosen) = self.phase1.chosen_challenge {
                r = chosen;
            }
            let copy_manager = builder.core().copy_manager.clone();
            let mut manager =
                SinglePhaseCoreManager::new(witness_gen_only, copy_manager).in_phase(1);
            if witness_gen_only {
                *manager.break_points.borrow_mut() = self.phase1.break_points.borrow().clone();
            }
            let mut heads = Context::new(
                witness_gen_only,
                1,
                EVALUATION_CELLS,
                0,
                builder.core().copy_manager.clone(),
            );
            let evaluated = self.values.evaluations(&mut heads, r);
            let ctx = manager.main();
            let r_cell = ctx.load_witness(r);
            check_products(
                ctx,
                &GateChip::default(),
                r_cell,
                &self.phase1.checks,
                &evaluated,
            );
            if let Some(vc) = config.values.as_ref().filter(|_| self.values.rows() > 0) {
                layouter.assign_region(
                    || "value evaluations",
                    |mut region| {
                        let mut cm =
                            (!witness_gen_only).then(|| builder.core().copy_manager.lock());
                        let copy = match cm.as_mut() {
                            Some(Ok(g)) => Some(&mut **g),
                            _ => None,
                        };
                        vc.assign_evaluations(&mut region, &self.values, r, &evaluated, copy)
                    },
                )?;
            }
            let gate = config.base.gate();
            layouter.assign_region(
                || "products",
                |mut region| {
                    manager.assign_raw(&(gate.basic_gates[1].clone(), gate.max_rows), &mut region);
                    Ok(())
                },
            )?;
            if !witness_gen_only {
                *self.phase1.break_points.borrow_mut() = manager.break_points.borrow().clone();
            }
            layouter.assign_region(
                || "challenge",
                |mut region| {
                    pc.q.enable(&mut region, 0)?;
                    let cell = raw_assign_advice(&mut region, pc.r, 0, Value::known(r));
                    if !witness_gen_only {
                        if let Ok(mut cm) = builder.core().copy_manager.lock() {
                            constrain_virtual_equals_external(
                                &mut region,
                                r_cell,
                                cell.cell(),
                                &mut cm,
                            );
                        }
                    }
                    Ok(())
                },
            )?;
        }
        layouter.assign_region(
            || "copy constraints",
            |mut region| {
                if !witness_gen_only {
                    builder
                        .core()
                        .copy_manager
                        .assign_raw(config.base.constants(), &mut region);
                }
                Ok(())
            },
        )?;
        builder.assign_instances(&config.base.instance, layouter.namespace(|| "expose"));
        Ok(())
    }
}

impl CircuitExt<Fr> for StepCircuit {
    fn num_instance(&self) -> Vec<usize> {
        vec![self.builder.assigned_instances[0].len()]
    }

    fn instances(&self) -> Vec<Vec<Fr>> {
        vec![self.builder.assigned_instances[0]
            .iter()
            .map(|a| *a.value())
            .collect()]
    }
}

pub(crate) mod stages;

#[cfg(test)]
mod activation_tests;
#[cfg(test)]
pub(crate) mod stage_tests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod value_tests;
