//! Recursive aggregation of step proofs into one proof of a whole run.
//!
//! # The tree
//! Step proofs are the leaves. Each level pairs consecutive proofs and proves
//! one aggregation circuit per pair (arity 2); an odd leftover at the end of
//! a level is *carried up* unchanged to the next level, where it is paired
//! with the aggregate of its left neighbours. Carrying up is sound because it
//! adds nothing: the carried proof is verified in-circuit by its parent like
//! any other child. The tree shape is a pure function of the number of steps
//! ([`plan`]), so the verifier rebuilds it.
//!
//! # What an aggregation circuit proves
//! For its children (step or aggregation proofs, verified in-circuit with
//! snark-verifier's SHPLONK verifier, whose KZG accumulators are folded with
//! the children's own accumulators into one), it constrains that they chain:
//! each child's `c_last` is the next child's `c_first`, the next child's
//! `t_first` is this child's `t_last + 1`, and the dataset root and the
//! parameter digest are the same. It exposes the accumulator limbs followed by
//! the [`Summary`] `(c_first, c_last, R, t_first, t_last, digest, schedule)`.
//!
//! `schedule` binds the batch indices, which the proofs hide: a step
//! contributes `H(TAG_SCHED_STEP, t, i_1..i_B)`, a leaf proof of a span of
//! several steps `H(TAG_SCHED_NODE, s_1..s_S)` (both computed by the step
//! circuit, which exposes only the hash) and a node `H(TAG_SCHED_NODE, s_left,
//! s_right)`. The verifier recomputes it from the seed's schedule along the
//! same tree. Because a leaf exposes six public inputs whatever its span and
//! batch, verifying it in-circuit costs an aggregation the same for any span.
//!
//! Verifying keys are not taken from the prover: every aggregation circuit
//! embeds its children's verifying keys as constants
//! ([`VerifierUniversality::None`]), so the root's key pins the whole tree and
//! the verifier derives it from the step circuit's shape ([`root_vk`]),
//! caching each level's key on disk.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use halo2_base::gates::circuit::CircuitBuilderStage;
use halo2_base::gates::RangeInstructions;
use halo2_base::gates::{GateChip, GateInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, G1Affine};
use halo2_base::halo2_proofs::halo2curves::pairing::Engine;
use halo2_base::halo2_proofs::halo2curves::CurveAffine;
use halo2_base::halo2_proofs::plonk::{keygen_pk, keygen_vk, ProvingKey, VerifyingKey};
use halo2_base::halo2_proofs::poly::commitment::Params;
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_base::halo2_proofs::SerdeFormat;
use halo2_base::poseidon::hasher::PoseidonHasher;
use halo2_base::{AssignedValue, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use snark_verifier_sdk::halo2::aggregation::{
    AggregationCircuit, AggregationConfigParams, VerifierUniversality,
};
use snark_verifier_sdk::halo2::gen_dummy_snark_from_protocol;
use snark_verifier_sdk::halo2::gen_snark_shplonk;
use snark_verifier_sdk::snark_verifier::system::halo2::{compile, Config};
use snark_verifier_sdk::snark_verifier::util::arithmetic::fe_from_limbs;
use snark_verifier_sdk::snark_verifier::verifier::plonk::PlonkProtocol;
use snark_verifier_sdk::{CircuitExt, Snark, BITS, LIMBS, SHPLONK};

use crate::hash::{halo2_base_spec, TAG_SCHED_NODE, TAG_SCHED_STEP};
use crate::keys::{read_trusted_vk, store_derived_vk, vk_digest, write_vk, VkPins};
use crate::poseidon::{RATE, T};
use crate::step::{StepStatement, STEP_INSTANCES};
use crate::{CircuitError, Fr, Result};

/// Version of the aggregation circuit; part of every aggregation key's cache name.
pub const AGG_VERSION: u32 = 2;
/// Field elements of a KZG accumulator (two points, two coordinates, `LIMBS` limbs each).
pub const ACC_LEN: usize = 4 * LIMBS;
/// Field elements of a [`Summary`].
pub const SUMMARY_LEN: usize = 7;
/// Default size of aggregation circuits: two digits-sized proofs need `2^20` rows.
pub const DEFAULT_AGG_K: u32 = 20;
/// Most leaves one tree aggregates (bounds what a certificate can ask a verifier to derive).
pub const MAX_TREE_LEAVES: usize = 1 << 24;
/// Children per aggregation circuit.
pub const ARITY: usize = 2;

/// What a proof in the tree proves about a contiguous range of steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Commitment before the first step.
    pub c_first: Fr,
    /// Commitment after the last step.
    pub c_last: Fr,
    /// Dataset root.
    pub root: Fr,
    /// First step.
    pub t_first: u64,
    /// Last step.
    pub t_last: u64,
    /// Parameter digest.
    pub digest: Fr,
    /// Schedule hash of the range (binds every batch's indices).
    pub schedule: Fr,
}

impl Summary {
    /// The summary of one step's statement.
    pub fn of_step(st: &StepStatement) -> Self {
        Summary {
            c_first: st.c_before,
            c_last: st.c_after,
            root: st.root,
            t_first: st.step,
            t_last: st.step,
            digest: st.digest,
            schedule: schedule_step_hash(st.step, &st.indices),
        }
    }

    /// The instance values (after the accumulator) of an aggregation proof.
    pub fn to_instances(&self) -> Vec<Fr> {
        vec![
            self.c_first,
            self.c_last,
            self.root,
            Fr::from(self.t_first),
            Fr::from(self.t_last),
            self.digest,
            self.schedule,
        ]
    }

    /// The summary of a span of consecutive steps proven together (their
    /// chaining checked natively as by [`Summary::join`]).
    pub fn of_span(steps: &[StepStatement]) -> Result<Self> {
        match steps {
            [one] => Ok(Self::of_step(one)),
            _ => Self::join(&steps.iter().map(Self::of_step).collect::<Vec<_>>()),
        }
    }

    /// Joins the summaries of consecutive ranges, checking natively what the
    /// circuit constrains (so a prover learns of a broken chain before proving).
    pub fn join(parts: &[Summary]) -> Result<Summary> {
        let (first, last) = match (parts.first(), parts.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => return Err(CircuitError::Shape("nothing to aggregate".into())),
        };
        for w in parts.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if b.t_first != a.t_last + 1 {
                return Err(CircuitError::Unsatisfied(format!(
                    "steps {}..={} are followed by steps {}..={} (out of order, gap or repetition)",
                    a.t_first, a.t_last, b.t_first, b.t_last
                )));
            }
            if a.c_last != b.c_first {
                return Err(CircuitError::Unsatisfied(format!(
                    "step {} does not start from the weights step {} ended with",
                    b.t_first, a.t_last
                )));
            }
            if a.root != b.root || a.digest != b.digest {
                return Err(CircuitError::Unsatisfied(format!(
                    "steps {} and {} use another dataset root or parameter digest",
                    a.t_last, b.t_first
                )));
            }
        }
        Ok(Summary {
            c_first: first.c_first,
            c_last: last.c_last,
            root: first.root,
            t_first: first.t_first,
            t_last: last.t_last,
            digest: first.digest,
            schedule: schedule_node_hash(&parts.iter().map(|p| p.schedule).collect::<Vec<_>>()),
        })
    }
}

fn poseidon_native(inputs: &[Fr]) -> Fr {
    crate::hash::native(|ctx, gate, h| {
        let cells: Vec<_> = inputs.iter().map(|&v| ctx.load_witness(v)).collect();
        *h.hash_fix_len(ctx, gate, &cells).value()
    })
}

/// `H(TAG_SCHED_STEP, t, indices...)`.
pub fn schedule_step_hash(t: u64, indices: &[u32]) -> Fr {
    let mut v = vec![Fr::from(TAG_SCHED_STEP), Fr::from(t)];
    v.extend(indices.iter().map(|&i| Fr::from(i as u64)));
    poseidon_native(&v)
}

/// `H(TAG_SCHED_NODE, children...)`.
pub fn schedule_node_hash(children: &[Fr]) -> Fr {
    let mut v = vec![Fr::from(TAG_SCHED_NODE)];
    v.extend_from_slice(children);
    poseidon_native(&v)
}

/// What kind of proof a tree node holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeKind {
    /// A proof of this many consecutive steps (the step circuit over a span).
    Steps(usize),
    /// An aggregation proof (its instances start with an accumulator).
    Aggregate,
}

/// The aggregation tree for `n` leaves: `levels[0]` has the leaves' ranges,
/// each further level the ranges of its nodes; `children[l][j]` lists the
/// indices in level `l` of the children of node `j` of level `l + 1` (one
/// child: carried up unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Node counts per level, leaves first; the last level has one node.
    pub sizes: Vec<usize>,
}

/// The tree of `n >= 1` leaves with arity [`ARITY`] (see the module docs).
pub fn plan(n: usize) -> Plan {
    let mut sizes = vec![n.max(1)];
    while let Some(&last) = sizes.last() {
        if last <= 1 {
            break;
        }
        sizes.push(last.div_ceil(ARITY));
    }
    Plan { sizes }
}

impl Plan {
    /// The children (indices in level `l`) of node `j` of level `l + 1`.
    pub fn children(&self, l: usize, j: usize) -> std::ops::Range<usize> {
        let start = j * ARITY;
        start..(start + ARITY).min(self.sizes[l])
    }

    /// Aggregation proofs the tree needs (nodes with two or more children).
    pub fn aggregations(&self) -> usize {
        (0..self.sizes.len() - 1)
            .map(|l| {
                (0..self.sizes[l + 1])
                    .filter(|&j| self.children(l, j).len() > 1)
                    .count()
            })
            .sum()
    }
}

/// Folds values up the tree of [`plan`]: `leaves` at level 0, `join` for a
/// node of several children, a single child carried up as is.
pub fn fold_tree<V: Clone, E>(
    leaves: Vec<V>,
    mut join: impl FnMut(usize, &[V]) -> std::result::Result<V, E>,
) -> std::result::Result<V, E>
where
    E: From<CircuitError>,
{
    let p = plan(leaves.len());
    let mut level = leaves;
    for l in 0..p.sizes.len() - 1 {
        let mut next = Vec::with_capacity(p.sizes[l + 1]);
        for j in 0..p.sizes[l + 1] {
            let kids = &level[p.children(l, j)];
            if kids.len() == 1 {
                next.push(kids[0].clone());
            } else {
                next.push(join(l + 1, kids)?);
            }
        }
        level = next;
    }
    level
        .pop()
        .ok_or_else(|| CircuitError::Shape("an empty aggregation tree".into()).into())
}

/// The schedule hash of steps `t_first, t_first + 1, ..` along the tree whose
/// leaves are spans of `span` steps (the last one shorter), given each step's indices.
pub fn expected_schedule(
    t_first: u64,
    batches: impl IntoIterator<Item = Vec<u32>>,
    span: usize,
) -> Result<Fr> {
    let steps: Vec<Fr> = batches
        .into_iter()
        .enumerate()
        .map(|(i, idx)| schedule_step_hash(t_first + i as u64, &idx))
        .collect();
    let leaves: Vec<Fr> = steps
        .chunks(span.max(1))
        .map(|c| match c {
            [one] => *one,
            _ => schedule_node_hash(c),
        })
        .collect();
    fold_tree::<Fr, CircuitError>(leaves, |_, kids| Ok(schedule_node_hash(kids)))
}

/// A summary's cells in the circuit.
#[derive(Clone, Copy, Debug)]
pub struct AssignedSummary {
    /// `c_first`.
    pub c_first: AssignedValue<Fr>,
    /// `c_last`.
    pub c_last: AssignedValue<Fr>,
    /// Dataset root.
    pub root: AssignedValue<Fr>,
    /// `t_first`.
    pub t_first: AssignedValue<Fr>,
    /// `t_last`.
    pub t_last: AssignedValue<Fr>,
    /// Parameter digest.
    pub digest: AssignedValue<Fr>,
    /// Schedule hash.
    pub schedule: AssignedValue<Fr>,
}

impl AssignedSummary {
    /// The cells in instance order.
    pub fn cells(&self) -> [AssignedValue<Fr>; SUMMARY_LEN] {
        [
            self.c_first,
            self.c_last,
            self.root,
            self.t_first,
            self.t_last,
            self.digest,
            self.schedule,
        ]
    }
}

/// The summary of a child's instance cells: a span of steps'
/// `[c_first, c_last, R, t_first, digest, schedule]` (the step circuit hashed
/// the batch indices itself) or an aggregation's `[accumulator.., summary..]`.
pub fn child_summary(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    kind: NodeKind,
    inst: &[AssignedValue<Fr>],
) -> Result<AssignedSummary> {
    match kind {
        NodeKind::Steps(span) => {
            if inst.len() != STEP_INSTANCES {
                return Err(CircuitError::Shape(format!(
                    "a proof of {span} steps has {STEP_INSTANCES} instances, got {}",
                    inst.len()
                )));
            }
            // The span's steps are consecutive (the step circuit chains them).
            let t_last = gate.add(
                ctx,
                inst[3],
                halo2_base::QuantumCell::Constant(Fr::from(span.max(1) as u64 - 1)),
            );
            Ok(AssignedSummary {
                c_first: inst[0],
                c_last: inst[1],
                root: inst[2],
                t_first: inst[3],
                t_last,
                digest: inst[4],
                schedule: inst[5],
            })
        }
        NodeKind::Aggregate => {
            if inst.len() != ACC_LEN + SUMMARY_LEN {
                return Err(CircuitError::Shape(format!(
                    "an aggregation proof has {} instances, got {}",
                    ACC_LEN + SUMMARY_LEN,
                    inst.len()
                )));
            }
            let s = &inst[ACC_LEN..];
            Ok(AssignedSummary {
                c_first: s[0],
                c_last: s[1],
                root: s[2],
                t_first: s[3],
                t_last: s[4],
                digest: s[5],
                schedule: s[6],
            })
        }
    }
}

/// Constrains that the children chain (see the module docs) and returns their joint summary.
pub fn chain(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    hasher: &PoseidonHasher<Fr, T, RATE>,
    parts: &[AssignedSummary],
) -> Result<AssignedSummary> {
    let (first, last) = match (parts.first(), parts.last()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => return Err(CircuitError::Shape("nothing to aggregate".into())),
    };
    for w in parts.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        ctx.constrain_equal(&a.c_last, &b.c_first);
        let next = gate.add(ctx, a.t_last, halo2_base::QuantumCell::Constant(Fr::one()));
        ctx.constrain_equal(&next, &b.t_first);
        ctx.constrain_equal(&a.root, &b.root);
        ctx.constrain_equal(&a.digest, &b.digest);
    }
    let tag = ctx.load_constant(Fr::from(TAG_SCHED_NODE));
    let mut input = vec![tag];
    input.extend(parts.iter().map(|p| p.schedule));
    let schedule = hasher.hash_fix_len_array(ctx, gate, &input);
    Ok(AssignedSummary {
        schedule,
        t_last: last.t_last,
        c_last: last.c_last,
        ..first
    })
}

/// The leaves of a run of `n` steps proven in spans of `span`: full spans,
/// then a shorter last one; each with its span length.
pub fn leaf_spans(n: usize, span: usize) -> Vec<usize> {
    let span = span.max(1);
    let mut v = vec![span; n / span];
    if !n.is_multiple_of(span) {
        v.push(n % span);
    }
    v
}

/// A proof in the tree with what it proves.
#[derive(Clone, Debug)]
pub struct Node {
    /// Step or aggregation proof.
    pub kind: NodeKind,
    /// The proof with its protocol and instances.
    pub snark: Snark,
    /// Its summary.
    pub summary: Summary,
}

/// The protocol (verifier's view of a circuit) of a step or aggregation key.
pub fn protocol(
    params: &ParamsKZG<Bn256>,
    vk: &VerifyingKey<G1Affine>,
    kind: NodeKind,
    num_instance: usize,
) -> PlonkProtocol<G1Affine> {
    let acc = match kind {
        NodeKind::Steps(_) => None,
        NodeKind::Aggregate => AggregationCircuit::accumulator_indices(),
    };
    compile(
        params,
        vk,
        Config::kzg()
            .with_num_instance(vec![num_instance])
            .with_accumulator_indices(acc),
    )
}

/// Builds the aggregation circuit of some children.
fn build_circuit(
    stage: CircuitBuilderStage,
    config: AggregationConfigParams,
    params: &ParamsKZG<Bn256>,
    children: &[(NodeKind, Snark)],
    break_points: Option<Vec<Vec<usize>>>,
) -> Result<AggregationCircuit> {
    let snarks: Vec<Snark> = children.iter().map(|(_, s)| s.clone()).collect();
    let mut c = catch_unwind(AssertUnwindSafe(|| {
        AggregationCircuit::new::<SHPLONK>(
            stage,
            config,
            params,
            snarks,
            VerifierUniversality::None,
        )
    }))
    .map_err(|_| {
        CircuitError::Verification(
            "a child proof could not be read by the in-circuit verifier".into(),
        )
    })?;
    let prev = c.previous_instances().clone();
    let range = c.builder.range_chip();
    let gate = range.gate().clone();
    let ctx = c.builder.main(0);
    let mut hasher = PoseidonHasher::<Fr, T, RATE>::new(halo2_base_spec().clone());
    hasher.initialize_consts(ctx, &gate);
    let parts = children
        .iter()
        .zip(&prev)
        .map(|((kind, _), inst)| child_summary(ctx, &gate, *kind, inst))
        .collect::<Result<Vec<_>>>()?;
    let joint = chain(ctx, &gate, &hasher, &parts)?;
    c.builder.assigned_instances[0].extend(joint.cells());
    if let Some(bp) = break_points {
        c.set_break_points(bp);
    }
    Ok(c)
}

/// Physical parameters of an aggregation circuit fixed at keygen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AggMeta {
    /// halo2-base columns and lookup bits.
    pub config: AggregationConfigParams,
    /// Break points for the prover.
    pub break_points: Vec<Vec<usize>>,
    /// Advice cells (for benchmarks).
    pub advice_cells: usize,
    /// Digest of the cached `.vk` file and `config` (see [`crate::keys`]).
    #[serde(default)]
    pub vk_sha256: String,
}

/// A loaded or generated aggregation key.
pub struct AggKey {
    /// The proving key.
    pub pk: ProvingKey<G1Affine>,
    /// Parameters and break points.
    pub meta: AggMeta,
}

/// Identifies an aggregation circuit: version, `k`, SRS, and its children's kinds and protocols.
pub fn agg_id(
    params: &ParamsKZG<Bn256>,
    children: &[(NodeKind, PlonkProtocol<G1Affine>)],
) -> String {
    let mut h = Sha256::new();
    h.update(AGG_VERSION.to_le_bytes());
    h.update(params.k().to_le_bytes());
    h.update(crate::srs::srs_id(params).as_bytes());
    for (kind, p) in children {
        h.update(bincode::serialize(kind).unwrap_or_default());
        h.update(bincode::serialize(p).unwrap_or_default());
    }
    hex::encode(&h.finalize()[..16])
}

fn base(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("agg-v{AGG_VERSION}-{id}"))
}

fn io(p: &Path) -> impl Fn(std::io::Error) -> CircuitError + '_ {
    move |e| CircuitError::io(p, e)
}

fn keygen_circuit(
    params: &ParamsKZG<Bn256>,
    children: &[(NodeKind, PlonkProtocol<G1Affine>)],
) -> Result<(AggregationCircuit, AggMeta)> {
    let k = params.k();
    let dummies: Vec<(NodeKind, Snark)> = children
        .iter()
        .map(|(kind, p)| (*kind, gen_dummy_snark_from_protocol::<SHPLONK>(p.clone())))
        .collect();
    let cfg = AggregationConfigParams {
        degree: k,
        lookup_bits: k as usize - 1,
        ..Default::default()
    };
    let mut c = build_circuit(CircuitBuilderStage::Keygen, cfg, params, &dummies, None)?;
    let config = catch_unwind(AssertUnwindSafe(|| c.calculate_params(Some(20)))).map_err(|_| {
        CircuitError::Shape(format!("the aggregation circuit does not fit k = {k}"))
    })?;
    let advice_cells = c
        .builder
        .statistics()
        .gate
        .total_advice_per_phase
        .iter()
        .sum();
    // Break points are recorded when keygen synthesizes the circuit.
    let meta = AggMeta {
        config,
        break_points: Vec::new(),
        advice_cells,
        vk_sha256: String::new(),
    };
    Ok((c, meta))
}

/// The layout (columns, advice cells) of the aggregation circuit over these
/// children, found by building it over dummy proofs as keygen does, without
/// deriving a key (seconds, where keygen takes minutes).
pub fn agg_layout(
    params: &ParamsKZG<Bn256>,
    children: &[(NodeKind, PlonkProtocol<G1Affine>)],
) -> Result<AggMeta> {
    keygen_circuit(params, children).map(|(_, meta)| meta)
}

/// Prover memory per row of one advice column of an aggregation circuit
/// (keygen and proof together), fitted to the widest measured: at `k = 20`
/// over 42-column digits leaves, 35 advice columns (31 + 4 lookup) peaked
/// at 22 GiB (BENCHMARKS.md). Over 23-column leaves (22 + 3) it estimates
/// 15.6 GiB where a whole run peaked at 12.0 GB: it errs on the side of
/// passing a worker over.
pub const AGG_BYTES_PER_SLOT: u64 = 640;

/// The prover memory an aggregation circuit with verifying key `vk` needs
/// (keygen and proof): its advice columns (lookup ones included) times
/// `2^k` rows times [`AGG_BYTES_PER_SLOT`]. The fixed columns (one per
/// advice column's selector, the constants and the lookup table) grow with
/// the advice ones and are priced in the constant.
pub fn prover_memory(vk: &VerifyingKey<G1Affine>) -> u64 {
    (vk.cs().num_advice_columns() as u64)
        .saturating_mul(1u64 << vk.get_domain().k().min(40))
        .saturating_mul(AGG_BYTES_PER_SLOT)
}

/// Loads the aggregation proving key for these children from the cache, or generates and caches it.
pub fn agg_key(
    dir: &Path,
    params: &ParamsKZG<Bn256>,
    children: &[(NodeKind, PlonkProtocol<G1Affine>)],
) -> Result<AggKey> {
    let b = base(dir, &agg_id(params, children));
    let (pk_path, meta_path) = (b.with_extension("pk"), b.with_extension("json"));
    if let (Ok(meta), Ok(f)) = (std::fs::read(&meta_path), std::fs::File::open(&pk_path)) {
        let meta: AggMeta = serde_json::from_slice(&meta).map_err(|e| CircuitError::Format {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        let pk = ProvingKey::<G1Affine>::read::<_, AggregationCircuit>(
            &mut BufReader::new(f),
            SerdeFormat::RawBytesUnchecked,
            meta.config,
        )
        .map_err(io(&pk_path))?;
        return Ok(AggKey { pk, meta });
    }
    let (circuit, mut meta) = keygen_circuit(params, children)?;
    let vk = keygen_vk(params, &circuit)
        .map_err(|e| CircuitError::Shape(format!("aggregation keygen_vk: {e:?}")))?;
    let pk = keygen_pk(params, vk, &circuit)
        .map_err(|e| CircuitError::Shape(format!("aggregation keygen_pk: {e:?}")))?;
    meta.break_points = circuit.break_points();
    drop(circuit);
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = crate::envelope::tmp_path(&pk_path);
    {
        let mut w = BufWriter::new(std::fs::File::create(&tmp).map_err(io(&tmp))?);
        pk.write(&mut w, SerdeFormat::RawBytesUnchecked)
            .map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &pk_path).map_err(io(&pk_path))?;
    write_vk(&b.with_extension("vk"), pk.get_vk())?;
    meta.vk_sha256 = vk_digest(pk.get_vk(), &meta.config);
    let json = serde_json::to_vec(&meta).map_err(|e| CircuitError::Shape(e.to_string()))?;
    crate::envelope::write_bytes_atomic(&meta_path, &json).map_err(io(&meta_path))?;
    Ok(AggKey { pk, meta })
}

/// The aggregation verifying key for these children: from the cache if
/// trusted (see [`crate::keys`]), else derived from the children's protocols
/// alone (public data), pinned and cached.
pub fn agg_vk(
    dir: &Path,
    params: &ParamsKZG<Bn256>,
    children: &[(NodeKind, PlonkProtocol<G1Affine>)],
    pins: Option<&VkPins>,
) -> Result<VerifyingKey<G1Affine>> {
    let b = base(dir, &agg_id(params, children));
    let (vk_path, meta_path) = (b.with_extension("vk"), b.with_extension("json"));
    if let Ok(meta) = std::fs::read(&meta_path) {
        if let Ok(meta) = serde_json::from_slice::<AggMeta>(&meta) {
            if let Some(vk) =
                read_trusted_vk::<AggregationCircuit>(&vk_path, meta.config, pins, &meta.vk_sha256)
            {
                return Ok(vk);
            }
        }
    }
    let (circuit, mut meta) = keygen_circuit(params, children)?;
    let vk = keygen_vk(params, &circuit)
        .map_err(|e| CircuitError::Shape(format!("aggregation keygen_vk: {e:?}")))?;
    meta.break_points = circuit.break_points();
    let _ = std::fs::create_dir_all(dir);
    meta.vk_sha256 = store_derived_vk(&vk_path, &vk, &meta.config, pins)?;
    if let Ok(json) = serde_json::to_vec(&meta) {
        let _ = crate::envelope::write_bytes_atomic(&meta_path, &json);
    }
    Ok(vk)
}

/// Proves one aggregation node over its children (two or more, consecutive).
pub fn prove_node(params: &ParamsKZG<Bn256>, key: &AggKey, children: &[Node]) -> Result<Node> {
    let summary = Summary::join(
        &children
            .iter()
            .map(|c| c.summary.clone())
            .collect::<Vec<_>>(),
    )?;
    prove_node_claiming(params, key, children, summary)
}

/// [`prove_node`] without the native chaining check, claiming `summary`
/// (for soundness tests: the circuit alone must reject a broken chain).
pub fn prove_node_claiming(
    params: &ParamsKZG<Bn256>,
    key: &AggKey,
    children: &[Node],
    summary: Summary,
) -> Result<Node> {
    let kids: Vec<(NodeKind, Snark)> = children.iter().map(|c| (c.kind, c.snark.clone())).collect();
    let circuit = build_circuit(
        CircuitBuilderStage::Prover,
        key.meta.config,
        params,
        &kids,
        Some(key.meta.break_points.clone()),
    )?;
    let snark = catch_unwind(AssertUnwindSafe(|| {
        gen_snark_shplonk(params, &key.pk, circuit, None::<&str>)
    }))
    .map_err(|_| {
        CircuitError::Unsatisfied(format!(
            "aggregation of steps {}..={}: the prover could not produce a valid proof",
            summary.t_first, summary.t_last
        ))
    })?;
    Ok(Node {
        kind: NodeKind::Aggregate,
        snark,
        summary,
    })
}

/// Checks the KZG accumulator carried in an aggregation proof's instances:
/// `e(lhs, g2) = e(rhs, s*g2)`.
pub fn check_accumulator(params: &ParamsKZG<Bn256>, instances: &[Fr]) -> Result<()> {
    if instances.len() < ACC_LEN {
        return Err(CircuitError::Verification(
            "the aggregation proof carries no accumulator".into(),
        ));
    }
    let coord = |i: usize| {
        let limbs: [Fr; LIMBS] = std::array::from_fn(|j| instances[i * LIMBS + j]);
        fe_from_limbs::<_, halo2_base::halo2_proofs::halo2curves::bn256::Fq, LIMBS, BITS>(limbs)
    };
    let point = |x, y| {
        Option::<G1Affine>::from(G1Affine::from_xy(x, y)).ok_or_else(|| {
            CircuitError::Verification("the accumulator is not a curve point".into())
        })
    };
    let lhs = point(coord(0), coord(1))?;
    let rhs = point(coord(2), coord(3))?;
    if Bn256::pairing(&lhs, &params.g2()) != Bn256::pairing(&rhs, &params.s_g2()) {
        return Err(CircuitError::Verification(
            "the final pairing check on the aggregated accumulator failed".into(),
        ));
    }
    Ok(())
}

/// Progress of [`aggregate_tree`].
#[derive(Clone, Copy, Debug)]
pub enum AggProgress {
    /// A key is being loaded or generated for level `l`.
    Key(usize),
    /// A node of level `l` covering steps `a..=b` is done.
    Node(usize, u64, u64),
}

/// Aggregates consecutive step proofs up the tree of [`plan`] into one root
/// proof. `step_protocol` is the step circuit's protocol; keys are cached in `dir`.
pub fn aggregate_tree(
    dir: &Path,
    params: &ParamsKZG<Bn256>,
    leaves: Vec<Node>,
    progress: &mut dyn FnMut(AggProgress),
) -> Result<Node> {
    let mut keys: HashMap<String, AggKey> = HashMap::new();
    fold_tree::<Node, CircuitError>(leaves, |level, kids| {
        let sig: Vec<(NodeKind, PlonkProtocol<G1Affine>)> = kids
            .iter()
            .map(|k| (k.kind, k.snark.protocol.clone()))
            .collect();
        let id = agg_id(params, &sig);
        if !keys.contains_key(&id) {
            // Aggregation keys are large: keep only the current one in memory.
            keys.clear();
            progress(AggProgress::Key(level));
            keys.insert(id.clone(), agg_key(dir, params, &sig)?);
        }
        let key = keys
            .get(&id)
            .ok_or_else(|| CircuitError::Shape("aggregation key cache".into()))?;
        let node = prove_node(params, key, kids)?;
        progress(AggProgress::Node(
            level,
            node.summary.t_first,
            node.summary.t_last,
        ));
        Ok(node)
    })
}

/// The verifying key of the root of the tree over the given leaves (their
/// kinds and protocols, in step order), derived from the leaves' keys alone,
/// level by level, with each aggregation key cached in `dir`. A single leaf
/// is its own root (`None`: use the leaf's key).
pub fn root_vk(
    dir: &Path,
    agg_params: &ParamsKZG<Bn256>,
    leaves: Vec<(NodeKind, PlonkProtocol<G1Affine>)>,
    pins: Option<&VkPins>,
) -> Result<(NodeKind, Option<VerifyingKey<G1Affine>>)> {
    if leaves.len() > MAX_TREE_LEAVES {
        return Err(CircuitError::Shape(format!(
            "{} leaves: at most {MAX_TREE_LEAVES} can be aggregated",
            leaves.len()
        )));
    }
    #[derive(Clone)]
    struct K {
        kind: NodeKind,
        protocol: PlonkProtocol<G1Affine>,
        vk: Option<VerifyingKey<G1Affine>>,
    }
    let leaves: Vec<K> = leaves
        .into_iter()
        .map(|(kind, protocol)| K {
            kind,
            protocol,
            vk: None,
        })
        .collect();
    let mut cache: HashMap<String, (PlonkProtocol<G1Affine>, VerifyingKey<G1Affine>)> =
        HashMap::new();
    let root = fold_tree::<K, CircuitError>(leaves, |_, kids| {
        let sig: Vec<_> = kids.iter().map(|k| (k.kind, k.protocol.clone())).collect();
        let id = agg_id(agg_params, &sig);
        if !cache.contains_key(&id) {
            let vk = agg_vk(dir, agg_params, &sig, pins)?;
            let p = protocol(agg_params, &vk, NodeKind::Aggregate, ACC_LEN + SUMMARY_LEN);
            cache.insert(id.clone(), (p, vk));
        }
        let (p, vk) = cache
            .get(&id)
            .ok_or_else(|| CircuitError::Shape("aggregation key cache".into()))?;
        Ok(K {
            kind: NodeKind::Aggregate,
            protocol: p.clone(),
            vk: Some(vk.clone()),
        })
    })?;
    Ok((root.kind, root.vk))
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
