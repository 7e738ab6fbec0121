//! The shape of a step circuit, derived from the public run parameters, and
//! the digest of those parameters that every step proof exposes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zkaudit_model::transcript::Transcript;
use zkaudit_model::{Activation, Architecture, FixedParams, Stage};

use crate::hash::MerkleTree;
use crate::Fr;

/// Advice columns (all kinds) the automatic `k` aims for in a small circuit.
pub const TARGET_ADVICE_COLUMNS: usize = 16;

/// Largest `k` the automatic choice goes to before accepting more columns.
pub const MAX_AUTO_K: u32 = 20;

/// A circuit that needs at least this `k` at [`TARGET_ADVICE_COLUMNS`]
/// columns is large: its `k` is chosen for proving time instead.
pub const LARGE_K: u32 = 18;

/// Smallest `k` a large circuit is laid out at. Measured on 784-32-10 at
/// batch 16: k = 16 proved no faster than k = 17 (the range lookups of
/// `k - 1 = 15` bits need three limbs per 32-bit value: 20% more cells) and
/// made a proof twice the size (BENCHMARKS.md).
pub const MIN_LARGE_K: u32 = 17;

/// Most advice columns ([`total_columns`]) of the automatic layout of a
/// leaf that will be aggregated. An aggregation's size follows the columns
/// of the proofs it verifies. Over 784-128-10 leaves of 23, 33 and 39
/// columns the k = 20 aggregation keyed and proved in 11.2, 12.9 and 16.3
/// GiB; over 32-step digits leaves of 42 columns it took more than 22 GiB
/// (the epoch was killed on a 24 GiB machine, twice) (BENCHMARKS.md).
pub const MAX_AGGREGATED_LEAF_COLUMNS: usize = 33;

/// Most bits of a step circuit's range lookup table: at every `k >= 17`
/// the stored 32-bit values and the 16-bit ones split into whole 16-bit
/// limbs (no shifted top limb in halo2-base's range checks, no shift column
/// in the value region's lanes).
pub const MAX_LOOKUP_BITS: usize = 16;

/// The lookup bits of a step circuit at `2^k` rows: `k - 1`, at most
/// [`MAX_LOOKUP_BITS`].
pub fn lookup_bits_for(k: u32) -> usize {
    (k.saturating_sub(1) as usize).min(MAX_LOOKUP_BITS)
}

/// Most advice columns (all kinds) an automatic layout uses.
pub const MAX_AUTO_COLUMNS: usize = 128;

/// Advice columns of a circuit of size `e` laid out at `k`, counted by kind
/// as [`crate::step::StepCircuitParams::advice_columns`] lays them out, each
/// kind at least a whole column where it holds anything: halo2-base's two
/// phases and its lookup columns, six per Poseidon lane, the exp lookup's
/// two, the challenge's, and at `k >= 17` the value region's value and
/// remainder lanes ([`crate::values::value_lane_columns`]); below, the
/// region's values are halo2-base limb chains.
pub fn total_columns(k: u32, e: &Estimate) -> usize {
    let usable = (1usize << k) - MINIMUM_ROWS;
    let l = lookup_bits_for(k).max(1);
    let limbs = |bits: u32| (bits as usize).div_ceil(l);
    let (values, remainders) = (e.values as usize, e.remainders as usize);
    let lanes = |rows: usize| rows.div_ceil(usable);
    let mut base = e.cells as usize;
    let mut lookups = base / LOOKUP_CELL_SHARE;
    let mut columns = 0;
    if crate::step::uses_value_region(k) {
        columns += lanes(values) * crate::values::value_lane_columns(e.value_bits, l)
            + lanes(remainders)
                * crate::values::remainder_lane_columns(limbs(e.remainder_bits), e.remainder_cells);
    } else {
        // A limb chain of `n` limbs (`3 n + 1` cells, `n` looked up) and an
        // evaluation's 3 cells per entry.
        let chain = |n: usize| 3 * n + 4;
        base += values * chain(limbs(e.value_bits)) + remainders * chain(limbs(e.remainder_bits));
        lookups += values * limbs(e.value_bits) + remainders * limbs(e.remainder_bits);
    }
    let blocks = (usable / crate::poseidon::BLOCK_ROWS).max(1);
    let phases = if e.second_phase { 2 } else { 1 };
    let base_columns = base.div_ceil(usable).max(1);
    // halo2-base looks a lone first-phase column up in place.
    let lookup_columns = if base_columns == 1 {
        0
    } else {
        lanes(lookups).max(1)
    };
    columns + base_columns + phases - 1
        + lookup_columns
        + 6 * (e.perms as usize).div_ceil(blocks).max(1)
        + 2
        + usize::from(e.second_phase)
}

/// halo2-base advice cells per cell copied into its lookup columns (range
/// checks' limbs), measured: 784-128-10 spans at `L = 16` copy 3.4-4.2% of
/// their halo2-base cells.
const LOOKUP_CELL_SHARE: usize = 25;

/// Most consecutive steps one proof may cover (bounds what a certificate
/// can ask a verifier to build).
pub const MAX_SPAN: usize = 256;

/// Rows halo2 keeps for blinding; never used for witnesses.
pub const MINIMUM_ROWS: usize = 20;

/// Everything that determines the step circuit (and so its keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepShape {
    /// The model.
    pub arch: Architecture,
    /// The fixed-point format.
    pub fx: FixedParams,
    /// Learning rate at scale `2^f`.
    pub lr_fx: i64,
    /// Batch size.
    pub batch: usize,
    /// Merkle tree depth.
    pub depth: usize,
    /// Circuit size `2^k` rows.
    pub k: u32,
    /// Bits of the range-check lookup table.
    pub lookup_bits: usize,
    /// Consecutive steps one proof covers (a span; 1 for step proofs).
    pub span: usize,
}

impl StepShape {
    /// Checks a user-chosen circuit size: at least 12 (the exp table's rows)
    /// and at most the largest supported SRS.
    pub fn check_k(k: u32) -> crate::Result<()> {
        if !(12..=crate::srs::MAX_K).contains(&k) {
            return Err(crate::CircuitError::Shape(format!(
                "--k {k} is out of range: the step circuit needs k in 12..={}",
                crate::srs::MAX_K
            )));
        }
        Ok(())
    }

    /// The shape for a run's transcript with a given `k` (lookup bits
    /// [`lookup_bits_for`]).
    pub fn for_run(t: &Transcript, k: u32) -> Self {
        StepShape {
            arch: t.config.arch.clone(),
            fx: t.config.fx,
            lr_fx: t.config.lr_fx,
            batch: t.config.batch_size,
            depth: MerkleTree::depth_for(t.train.len()),
            k,
            lookup_bits: lookup_bits_for(k),
            span: 1,
        }
    }

    /// The same circuit over a span of `span` consecutive steps.
    pub fn with_span(&self, span: usize) -> Self {
        StepShape {
            span: span.max(1),
            ..self.clone()
        }
    }

    /// The shape for a run with `k` chosen automatically from the size `e`
    /// of its circuit (see [`StepShape::auto_k`]).
    pub fn auto(t: &Transcript, e: &Estimate) -> Self {
        Self::for_run(t, Self::auto_k(e))
    }

    /// The `k` of [`StepShape::auto`]. A small circuit takes the smallest `k`
    /// (at least 12, so the exp table fits) whose layout needs at most
    /// [`TARGET_ADVICE_COLUMNS`] advice columns in all ([`total_columns`]):
    /// fewer, taller columns make smaller proofs that are cheaper to
    /// aggregate, and such a step proves in seconds. A large circuit (one
    /// that would need [`LARGE_K`] or more) takes the smallest `k` from
    /// [`MIN_LARGE_K`] whose layout needs at most [`MAX_AUTO_COLUMNS`]
    /// columns: measured, its proving time and memory track the slots
    /// (columns x `2^k`), and the time per slot grows with `k` (10.5 us at
    /// k = 17, 11.9 at 18, 13.5 at 19 and 20 for 784-128-10 steps and
    /// spans), so the lowest `k` is the fastest. 784-32-10 at batch 16: 44 s
    /// and 1.5 GiB at k = 17 with 37 columns, 63 s at k = 18 with 25, 93 s
    /// and 3.1 GiB at k = 19 with 15 (BENCHMARKS.md). The price is a larger
    /// proof (8 KB against 4 KB) and more columns for an aggregation to read.
    pub fn auto_k(e: &Estimate) -> u32 {
        let mut k = 12u32;
        while k < MAX_AUTO_K && total_columns(k, e) > TARGET_ADVICE_COLUMNS {
            k += 1;
        }
        if k < LARGE_K {
            return k;
        }
        (MIN_LARGE_K..=k)
            .find(|&j| total_columns(j, e) <= MAX_AUTO_COLUMNS)
            .unwrap_or(k)
    }

    /// The `k` of a leaf that will be aggregated: [`StepShape::auto_k`], or
    /// the smallest larger one (up to [`MAX_AUTO_K`]) whose layout needs at
    /// most [`TARGET_ADVICE_COLUMNS`] columns, so that the aggregations
    /// above it stay small. Where none does, the one with the fewest slots
    /// among those within [`MAX_AGGREGATED_LEAF_COLUMNS`] (the highest
    /// `k` when none is): a 784-128-10 leaf of 3 steps at k = 19 (33
    /// columns) proved 26% faster per step than at k = 20 (23 columns), in
    /// 5.3 GiB instead of 8.4. Small circuits are unchanged.
    pub fn auto_k_aggregated(e: &Estimate) -> u32 {
        let k = Self::auto_k(e);
        if let Some(j) = (k..=MAX_AUTO_K).find(|&j| total_columns(j, e) <= TARGET_ADVICE_COLUMNS) {
            return j;
        }
        (k..=MAX_AUTO_K)
            .map(|j| (j, total_columns(j, e)))
            .filter(|&(_, c)| c <= MAX_AGGREGATED_LEAF_COLUMNS)
            .min_by_key(|&(j, c)| (c << j, j))
            .map_or(k.max(MAX_AUTO_K), |(j, _)| j)
    }

    /// Checks, before any key is derived from it, that a deserialised shape
    /// is the circuit of the (validated) public parameters `p`, with a
    /// supported size and a span of 1..=[`MAX_SPAN`] steps (exactly `span`
    /// when given). Shared by every verifier of step proofs and certificates.
    pub fn check_public(&self, p: &PublicParams, span: Option<usize>) -> crate::Result<()> {
        let fail = |m: String| Err(crate::CircuitError::Verification(m));
        p.validate()?;
        if self.arch != p.arch
            || self.fx != p.fx
            || self.lr_fx != p.lr_fx
            || self.batch != p.batch
            || self.depth != MerkleTree::depth_for(p.num_records)
        {
            return fail("the circuit shape does not match the public parameters".into());
        }
        Self::check_k(self.k).or_else(|e| fail(e.to_string()))?;
        if self.lookup_bits != lookup_bits_for(self.k) {
            return fail(format!(
                "lookup bits {} do not belong to a circuit of k = {} (expected {})",
                self.lookup_bits,
                self.k,
                lookup_bits_for(self.k)
            ));
        }
        if self.span == 0 || self.span > MAX_SPAN || span.is_some_and(|s| s != self.span) {
            return fail(format!(
                "a span of {} steps per proof is not allowed here (expected {})",
                self.span,
                span.map_or(format!("1..={MAX_SPAN}"), |s| s.to_string())
            ));
        }
        Ok(())
    }

    /// The circuit's size estimated from the shape alone, without building
    /// it (a model too large for the machine is refused before its circuit
    /// is laid out): Poseidon permutations counted from the hashes the
    /// circuit computes, the value region's rows counted (the loaded weights
    /// once per proof; per step the new weights, their scaled remainders and
    /// the batch's features), the matrix products' cells counted as laid
    /// out, the other halo2-base cells from a fit to measured circuits
    /// (`print_step_cost_points`, `print_span_layouts`: within 10% on seven
    /// shapes from 4-3-3 to 784-128-10 and per step of a span).
    pub fn estimate(&self) -> Estimate {
        let lanes = (253 / self.fx.value_bits.max(1)) as u64;
        let hash = |n: u64| n.div_ceil(2);
        let (b, s) = (self.batch as u64, self.span.max(1) as u64);
        let params = self.arch.num_params() as u64;
        let d = self.arch.input_dim() as u64;
        // The matrix products: their exact entries (first phase) and their
        // challenge checks (second phase), counted as `freivalds` lays them
        // out; `units` are the entries rounded afterwards.
        let (mut products, mut units) = (0u64, 0u64);
        let last = self.arch.layers.len() - 1;
        let mut smooth = 0u64;
        for (i, l) in self.arch.layers.iter().enumerate() {
            let (m, p) = (l.inputs as u64, l.outputs as u64);
            products += product_cells(b, m, p, true) + update_cells(m, b, p);
            units += b * p;
            if i < last && matches!(l.activation, Activation::Sigmoid | Activation::Tanh) {
                smooth += b * p;
            }
            if i > 0 || !self.arch.stages.is_empty() {
                products += product_cells(b, p, m, false);
                units += b * m;
            }
        }
        // The stages: a convolution as a dense layer over the batch's
        // patches (its input gradient summed back and rounded per value),
        // a pooling's divisions per output forward and backward.
        let (mut pooled, mut conv_units, mut maxed) = (0u64, 0u64, 0u64);
        for (i, st) in self.arch.stages.iter().enumerate() {
            let (n_in, n_out) = st.sizes();
            match st {
                Stage::Conv(c) => {
                    let (rows, e, oc) = (
                        b * c.positions() as u64,
                        c.patch_len() as u64,
                        c.out_channels as u64,
                    );
                    products += product_cells(rows, e, oc, true) + update_cells(e, rows, oc);
                    conv_units += rows * oc;
                    if matches!(c.activation, Activation::Sigmoid | Activation::Tanh) {
                        smooth += rows * oc;
                    }
                    if i > 0 {
                        products += product_cells(rows, oc, e, false) + rows * e;
                        units += b * n_in as u64;
                    }
                }
                Stage::AvgPool(p) => {
                    pooled += b * n_out as u64;
                    products += b * n_out as u64 * (p.kernel * p.kernel) as u64;
                }
                Stage::MaxPool(p) => maxed += b * n_out as u64 * (p.kernel * p.kernel) as u64,
            }
        }
        let commit = hash(2 + params.div_ceil(lanes));
        let record = hash(3 + d.div_ceil(lanes)) + 2 * self.depth as u64;
        let perms = 2 * commit + s * (b * record + hash(2 + b)) + u64::from(s > 1) * hash(1 + s);
        let cells_per_step = products
            + CELLS_PER_UNIT * units
            + CELLS_PER_SMOOTH_UNIT * smooth
            + CELLS_PER_POOLED * pooled
            + CELLS_PER_CONV_UNIT * conv_units
            + CELLS_PER_MAX_ENTRY * maxed
            + CELLS_PER_RECORD * b;
        // The update's divisor `2^(2f) batch`: a scaled remainder per
        // parameter, and its complement where the divisor is no power of two.
        let wdiv = (self.batch.max(1) as u128) << (2 * self.fx.frac_bits);
        let complements = !wdiv.is_power_of_two();
        let per_remainder = 1 + u64::from(complements);
        Estimate {
            cells: s * cells_per_step + CELLS_PER_PARAM_ONCE * params,
            perms,
            // The loaded weights once; per step the new ones and the features.
            values: params + s * (params + b * d),
            remainders: s * per_remainder * params,
            value_bits: self.fx.value_bits,
            remainder_bits: crate::fixed_chip::bits_of(wdiv - 1) as u32,
            remainder_cells: complements,
            second_phase: products > 0,
        }
    }

    /// The automatic `k`, the columns and the prover memory the estimated
    /// size of this shape calls for.
    pub fn estimate_memory(&self) -> (u32, usize, u64) {
        self.estimate_memory_as(false)
    }

    /// [`StepShape::estimate_memory`] at the `k` of a leaf that will be
    /// `aggregated` ([`StepShape::auto_k_aggregated`]) or not.
    pub fn estimate_memory_as(&self, aggregated: bool) -> (u32, usize, u64) {
        let e = self.estimate();
        let k = match aggregated {
            true => Self::auto_k_aggregated(&e),
            false => Self::auto_k(&e),
        };
        let (columns, bytes) = e.memory_at(k);
        (k, columns, bytes)
    }

    /// The columns and the prover memory of the estimated size laid out at `k`.
    pub fn memory_at(&self, k: u32) -> (usize, u64) {
        self.estimate().memory_at(k)
    }

    /// Refuses, before any circuit is laid out, a shape whose estimated
    /// prover memory exceeds `budget` bytes, naming the estimate and the
    /// largest batch (and span) that would fit.
    pub fn check_fits(&self, budget: u64) -> crate::Result<()> {
        let (k, columns, bytes) = self.estimate_memory();
        if bytes <= budget {
            return Ok(());
        }
        let e = self.estimate();
        let fits = |s: &StepShape| s.estimate_memory().2 <= budget;
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let mut hint = Vec::new();
        if let Some(b) = (1..self.batch).rev().find(|&b| {
            fits(&StepShape {
                batch: b,
                ..self.clone()
            })
        }) {
            hint.push(format!("the largest batch that fits is {b}"));
        } else {
            hint.push("no batch size fits: the model itself is too large for this machine".into());
        }
        if self.span > 1 {
            match (1..self.span).rev().find(|&s| fits(&self.with_span(s))) {
                Some(s) => hint.push(format!("the largest span that fits is {s}")),
                None => hint.push("no span fits at this batch".into()),
            }
        }
        Err(crate::CircuitError::Shape(format!(
            "model {} at batch {} (span {}) needs about {:.1} GiB to prove ({} M cells, {} Poseidon permutations, k = {k}, {columns} columns), more than the {:.1} GiB available; {}",
            self.arch.describe(),
            self.batch,
            self.span,
            gib(bytes),
            e.cells / 1_000_000,
            e.perms,
            gib(budget),
            hint.join("; ")
        )))
    }

    /// A stable identifier of the shape (hex SHA-256 of its bincode), for key caches.
    pub fn id(&self) -> String {
        let bytes = bincode::serialize(self).unwrap_or_default();
        hex::encode(&Sha256::digest(bytes)[..16])
    }
}

/// Cells of one checked product `(n x m).(m x p)` ([`crate::freivalds`]):
/// its `n p` exact entries, then `B.v` (`m` dot products along the powers
/// of the challenge, whose first entry is the constant one; none when `B`
/// is a weight matrix, which the value region evaluates), `A.(B.v)` and
/// `C.v` (`n` each), and a power of the challenge.
pub fn product_cells(n: u64, m: u64, p: u64, weights: bool) -> u64 {
    let b_along = if weights { 0 } else { m * along(p) };
    n * p + b_along + n * (1 + 3 * m) + n * along(p) + 4
}

/// Cells of a dot product along the challenge's powers, halo2-base's.
fn along(len: u64) -> u64 {
    1 + 3 * len.saturating_sub(1)
}

/// Second-phase cells of one checked SGD update of an `n x p` weight matrix
/// by `X^T.dZ` (`X^T` is `n x m`) ([`crate::freivalds`]): `dZ.v`, then per
/// row `X^T.(dZ.v)`, its scaling and the combination (`W.v`, `W'.v` and
/// `R.v` are the value region's), and the sum of the powers.
pub fn update_cells(n: u64, m: u64, p: u64) -> u64 {
    m * along(p) + n * ((1 + 3 * m) + 4 + 13) + p
}

/// Cells per rounded product entry (rescale, sign, ReLU), fitted to measured
/// circuits (`print_step_cost_points`, `print_span_layouts`) at 16 lookup
/// bits: halo2-base cells within 0.90-1.10 of seven shapes from 4-3-3 to
/// 784-128-10 and of a 784-128-10 span's step.
const CELLS_PER_UNIT: u64 = 65;
/// Cells per hidden sigmoid or tanh unit and record besides those of a
/// rounded entry: its 2-way softmax and its derivative's rounding, measured
/// (317 and 325 at 30-8-1, batch 16).
const CELLS_PER_SMOOTH_UNIT: u64 = 320;
/// Cells per convolution output and record (rounding, sign, activation and
/// its derivative), fitted to the digits CNN (1x8x8, conv 3x3/8, batch 8).
const CELLS_PER_CONV_UNIT: u64 = 46;
/// Cells per entry of a max pooling window and record: its selector bit,
/// its range-checked distance to the maximum, its gradient routing.
const CELLS_PER_MAX_ENTRY: u64 = 24;
/// Cells per pooled value and record: its average's and its gradient's
/// divisions and range checks, measured.
const CELLS_PER_POOLED: u64 = 40;
/// halo2-base cells per record besides its products (leaf, path, softmax;
/// its features are the value region's rows and the Poseidon region's
/// absorptions), fitted.
const CELLS_PER_RECORD: u64 = 780;
/// halo2-base cells per parameter once per proof (the weights' packings for
/// the commitments at its ends), fitted: measured on 784-128-10 spans, the
/// per-parameter cells besides the value region's rows are paid once per
/// proof, not per step.
const CELLS_PER_PARAM_ONCE: u64 = 9;

/// Prover memory per advice slot (one column, one row), measured: 4.54 and
/// 2.23 GiB for 784-128-10 at k = 17 in 124 and 60 columns (jemalloc).
pub const BYTES_PER_SLOT: u64 = 310;

/// This machine's memory (Linux `MemTotal`), or less where the process's
/// control group is limited (a container's memory limit: cgroup v2
/// `memory.max`, v1 `memory.limit_in_bytes`), if known.
pub fn machine_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok());
    memory_limit(&meminfo, cgroup.as_deref())
}

/// The smaller of `MemTotal` in a `/proc/meminfo` text and a cgroup limit
/// (`max`, or a number of bytes; v1 reports "no limit" as a huge number).
fn memory_limit(meminfo: &str, cgroup: Option<&str>) -> Option<u64> {
    let total = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()?
        .checked_mul(1024)?;
    let limit = cgroup.and_then(|c| c.trim().parse::<u64>().ok());
    Some(limit.map_or(total, |l| l.min(total)))
}

/// A circuit's size by kind: estimated from a shape ([`StepShape::estimate`])
/// or counted on a laid-out circuit ([`crate::step::StepCircuit::size`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// halo2-base advice cells, both phases (the value region's excluded).
    pub cells: u64,
    /// Poseidon permutations of the dedicated region.
    pub perms: u64,
    /// Stored values the value region range-checks (at `k >= 17`; below,
    /// halo2-base limb chains).
    pub values: u64,
    /// Scaled remainders (and their complements) the region range-checks.
    pub remainders: u64,
    /// Bits of a stored value.
    pub value_bits: u32,
    /// Bits of a scaled remainder before padding to whole limbs.
    pub remainder_bits: u32,
    /// Whether the remainders have complements, so their lanes hold their
    /// cells ([`crate::values::remainder_lane_columns`]).
    pub remainder_cells: bool,
    /// Whether the circuit has a second phase (matrix products).
    pub second_phase: bool,
}

impl Estimate {
    /// The columns and the prover memory of this size laid out at `k`.
    pub fn memory_at(&self, k: u32) -> (usize, u64) {
        let columns = total_columns(k, self);
        (columns, prover_memory(k, columns))
    }
}

/// Prover memory of a step circuit of `columns` advice columns at `2^k`
/// rows: [`BYTES_PER_SLOT`] per advice slot and a part per row that grows
/// with `k` (fixed and permutation columns on the extended domain), fitted
/// to seven measured layouts of 784-32-10 and 784-128-10 steps, spans and
/// leaves from k = 17 to 20 (within 4%; BENCHMARKS.md).
pub fn prover_memory(k: u32, columns: usize) -> u64 {
    let per_row: u64 = match k {
        0..=17 => 200,
        18 => 400,
        19 => 700,
        _ => 1600,
    };
    (columns as u64 * BYTES_PER_SLOT + per_row) << k
}

/// The public parameters bound into every step proof.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublicParams {
    /// Architecture.
    pub arch: Architecture,
    /// Fixed-point format.
    pub fx: FixedParams,
    /// Learning rate at scale `2^f`.
    pub lr_fx: i64,
    /// Batch size.
    pub batch: usize,
    /// Public seed of the schedule.
    pub seed: u64,
    /// Training records (committed dataset size).
    pub num_records: usize,
    /// Total steps of the run.
    pub num_steps: usize,
    /// The feature scaling fitted before quantization: published so that
    /// audits can state predicates and test data in raw units.
    pub scaling: zkaudit_model::data::Scaling,
}

impl PublicParams {
    /// The public parameters of a transcript.
    pub fn of(t: &Transcript) -> Self {
        PublicParams {
            arch: t.config.arch.clone(),
            fx: t.config.fx,
            lr_fx: t.config.lr_fx,
            batch: t.config.batch_size,
            seed: t.config.seed,
            num_records: t.train.len(),
            num_steps: t.num_steps(),
            scaling: t.scaling.clone(),
        }
    }

    /// Validates deserialised parameters with the same function `train`
    /// applies ([`zkaudit_model::train::check_run_params`]): the circuits'
    /// no-wraparound argument rests on its bounds.
    pub fn validate(&self) -> crate::Result<()> {
        zkaudit_model::train::check_run_params(&zkaudit_model::train::RunParams {
            arch: &self.arch,
            fx: &self.fx,
            lr_fx: self.lr_fx,
            batch: self.batch,
            num_records: self.num_records,
            num_steps: self.num_steps,
        })
        .map_err(|e| crate::CircuitError::Verification(format!("public parameters: {e}")))
    }

    /// SHA-256 of the bincode encoding, truncated to 248 bits, as a field element.
    pub fn digest(&self) -> Fr {
        let bytes = bincode::serialize(self).unwrap_or_default();
        let h = Sha256::digest(bytes);
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            let end = ((i + 1) * 8).min(31);
            let start = i * 8;
            if start < end {
                b[..end - start].copy_from_slice(&h[start..end]);
            }
            *limb = u64::from_le_bytes(b);
        }
        Fr::from_raw(limbs)
    }
}

#[cfg(test)]
mod tests {
    use super::memory_limit;

    /// A container's memory limit, not the host's memory, is what a worker
    /// offers; no limit (v2 `max`, v1's huge number) leaves `MemTotal`.
    #[test]
    fn the_memory_offered_honours_a_container_limit() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:  1000 kB\n";
        let host = 24_576_000 * 1024;
        assert_eq!(memory_limit(meminfo, None), Some(host));
        assert_eq!(memory_limit(meminfo, Some("max\n")), Some(host));
        assert_eq!(
            memory_limit(meminfo, Some("9223372036854771712\n")),
            Some(host)
        );
        assert_eq!(memory_limit(meminfo, Some("8589934592\n")), Some(8 << 30));
        assert_eq!(memory_limit("garbage", Some("8589934592")), None);
    }
}
