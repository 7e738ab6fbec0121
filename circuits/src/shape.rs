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

/// Most advice columns, as [`total_columns`] estimates them, of the
/// automatic layout of a leaf that will be aggregated: the small circuits'
/// target. An aggregation's size follows the columns of the proofs it
/// verifies. Over 32-step digits leaves at k = 17 (33 columns estimated, 42
/// advice columns in the key) it has 31 advice and 4 lookup columns at
/// k = 20, and generating its key took more than 22 GiB: the epoch was
/// killed at its second level on a 24 GiB machine, twice. Over the same
/// leaves at k = 19 (14 estimated, 23 in the key) it has 22 and 3
/// (BENCHMARKS.md).
pub const MAX_AGGREGATED_LEAF_COLUMNS: usize = TARGET_ADVICE_COLUMNS;

/// Most advice columns (all kinds) an automatic layout uses.
pub const MAX_AUTO_COLUMNS: usize = 128;

/// Advice columns of a layout at `k`: halo2-base, Poseidon lanes, lookups.
pub fn total_columns(k: u32, base_cells: usize, perms: usize) -> usize {
    let usable = (1usize << k) - MINIMUM_ROWS;
    let blocks = (usable / crate::poseidon::BLOCK_ROWS).max(1);
    base_cells.div_ceil(usable) + 6 * perms.div_ceil(blocks).max(1) + 3
}

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

    /// The shape for a run's transcript with a given `k` (lookup bits `k - 1`).
    pub fn for_run(t: &Transcript, k: u32) -> Self {
        StepShape {
            arch: t.config.arch.clone(),
            fx: t.config.fx,
            lr_fx: t.config.lr_fx,
            batch: t.config.batch_size,
            depth: MerkleTree::depth_for(t.train.len()),
            k,
            lookup_bits: (k - 1) as usize,
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

    /// The shape for a run with `k` chosen automatically from the circuit's
    /// size: `base_cells` halo2-base advice cells and `perms` Poseidon
    /// permutations (see [`StepShape::auto_k`]).
    pub fn auto(t: &Transcript, base_cells: usize, perms: usize) -> Self {
        Self::for_run(t, Self::auto_k(base_cells, perms))
    }

    /// The `k` of [`StepShape::auto`]. A small circuit takes the smallest `k`
    /// (at least 12, so the exp table fits) whose layout needs at most
    /// [`TARGET_ADVICE_COLUMNS`] advice columns in all (halo2-base, six per
    /// Poseidon lane, three for lookups): fewer, taller columns make smaller
    /// proofs that are cheaper to aggregate, and such a step proves in
    /// seconds. A large circuit (one that would need [`LARGE_K`] or more)
    /// takes the smallest `k` from [`MIN_LARGE_K`] whose layout needs at most
    /// [`MAX_AUTO_COLUMNS`] columns: measured, its proving time and memory
    /// track the slots (columns x `2^k`) and fall with `k` (a lower `k`
    /// fills the Poseidon lanes and halo2-base columns that a high one
    /// leaves mostly empty, and the time per slot is lower), and at k = 17
    /// the range lookups of 16 bits split 16- and 32-bit values into whole
    /// limbs (at k = 18 the same circuit has 14% more cells). 784-32-10 at
    /// batch 16: 44 s and 1.5 GiB at k = 17 with 37 columns, 63 s at k = 18
    /// with 25, 93 s and 3.1 GiB at k = 19 with 15; 784-128-10 at batch 16:
    /// k = 17 faster than k = 18 (BENCHMARKS.md). The price is a larger proof
    /// (8 KB against 4 KB) and more columns for an aggregation to read.
    pub fn auto_k(base_cells: usize, perms: usize) -> u32 {
        let mut k = 12u32;
        while k < MAX_AUTO_K && total_columns(k, base_cells, perms) > TARGET_ADVICE_COLUMNS {
            k += 1;
        }
        if k < LARGE_K {
            return k;
        }
        (MIN_LARGE_K..=k)
            .find(|&j| total_columns(j, base_cells, perms) <= MAX_AUTO_COLUMNS)
            .unwrap_or(k)
    }

    /// The `k` of a leaf that will be aggregated: [`StepShape::auto_k`], or
    /// the smallest larger one (up to [`MAX_AUTO_K`]) whose layout needs at
    /// most [`MAX_AGGREGATED_LEAF_COLUMNS`] columns, so that the
    /// aggregations above it stay small. Small circuits are unchanged.
    pub fn auto_k_aggregated(base_cells: usize, perms: usize) -> u32 {
        let k = Self::auto_k(base_cells, perms);
        (k..=MAX_AUTO_K)
            .find(|&j| total_columns(j, base_cells, perms) <= MAX_AGGREGATED_LEAF_COLUMNS)
            .unwrap_or(k.max(MAX_AUTO_K))
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
        if self.lookup_bits != (self.k - 1) as usize {
            return fail(format!(
                "lookup bits {} do not belong to a circuit of k = {} (expected {})",
                self.lookup_bits,
                self.k,
                self.k - 1
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
    /// circuit computes, the matrix products' cells counted as laid out, the
    /// other halo2-base cells from a fit to measured circuits
    /// (`print_step_cost_points`; within 7% on the six shapes measured,
    /// from 4-3-3 to 784-32-10).
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
            + CELLS_PER_FEATURE * b * d
            + CELLS_PER_RECORD * b
            + CELLS_PER_PARAM * params;
        Estimate {
            cells: s * cells_per_step,
            perms,
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
        let (cells, perms) = (e.cells as usize, e.perms as usize);
        let k = match aggregated {
            true => Self::auto_k_aggregated(cells, perms),
            false => Self::auto_k(cells, perms),
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
/// circuits (`print_step_cost_points`).
const CELLS_PER_UNIT: u64 = 77;
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
/// Cells per feature of a record (range check, packing), fitted (13 before
/// the value region).
const CELLS_PER_FEATURE: u64 = 9;
/// Cells per record besides its features and products (leaf, path,
/// softmax), fitted.
const CELLS_PER_RECORD: u64 = 687;
/// Cells per parameter besides the checks' second phase (the loaded and the
/// new weight's and the remainder's rows of the value region with their
/// evaluations along the challenge, both packings), fitted (56 before the
/// updates were checked along the challenge, 39 before the remainders were
/// range-checked scaled to whole limbs, 35 and 9 more in the second phase
/// before the value region).
const CELLS_PER_PARAM: u64 = 22;

/// Prover memory per advice slot (one column, one row), measured: a
/// 784-32-10 step at batch 16 (k = 20, 14 columns) peaked at 5.7 GiB, about
/// 390 bytes per slot.
pub const BYTES_PER_SLOT: u64 = 400;

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

/// A circuit's estimated size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// halo2-base advice cells.
    pub cells: u64,
    /// Poseidon permutations of the dedicated region.
    pub perms: u64,
}

impl Estimate {
    /// The columns and the prover memory of this size laid out at `k`.
    pub fn memory_at(&self, k: u32) -> (usize, u64) {
        let columns = total_columns(k, self.cells as usize, self.perms as usize);
        (columns, columns as u64 * (1u64 << k) * BYTES_PER_SLOT)
    }
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
    use super::{memory_limit, StepShape};

    /// Small circuits keep the 16-column target (the digits step stays at
    /// k = 15); large ones take the smallest `k` from 17 within 128 columns.
    #[test]
    fn large_circuits_trade_rows_for_columns() {
        // The digits step (121k cells, 334 permutations): unchanged.
        assert_eq!(StepShape::auto_k(121_251, 334), 15);
        // 784-32-10 at batch 16: k = 19 at 16 columns, k = 17 now.
        assert_eq!(StepShape::auto_k(1_865_131, 4_770), 17);
        // 784-128-10 at batch 32: k = 20 at 16 columns, k = 17 now (114
        // columns, at most 128).
        assert_eq!(StepShape::auto_k(7_420_000, 17_439), 17);
        assert!(super::total_columns(17, 7_420_000, 17_439) <= super::MAX_AUTO_COLUMNS);
        // Where only k = 20 stays within 128 columns, or none does, k = 20.
        assert_eq!(StepShape::auto_k(60_000_000, 100_000), 20);
        assert_eq!(StepShape::auto_k(200_000_000, 100_000), 20);
    }

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
