//! The local proving pipeline: prove the steps of a run and assemble a
//! certificate (the embedded default of `zkaudit prove`).

use halo2_base::halo2_proofs::halo2curves::bn256::Bn256;
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use zkaudit_model::transcript::{InitSource, Transcript};

use std::path::Path;

use halo2_base::halo2_proofs::poly::commitment::Params;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use halo2_base::halo2_proofs::halo2curves::bn256::G1Affine;
use halo2_base::halo2_proofs::plonk::VerifyingKey;
use snark_verifier_sdk::halo2::gen_snark_shplonk;
use snark_verifier_sdk::snark_verifier::verifier::plonk::PlonkProtocol;

use crate::aggregate::{
    aggregate_tree, leaf_spans, plan, protocol, root_vk, AggProgress, Node, NodeKind, Summary,
    MAX_TREE_LEAVES,
};
use crate::certificate::{Certificate, Mode, RootProof, RunStatement, StepEntry};
use crate::hash::MerkleTree;
use crate::keys::StepKey;
use crate::keys::{step_key, step_vk};
use crate::prover::prove_step;
use crate::shape::{PublicParams, StepShape, MIN_LARGE_K};
use crate::srs::srs_id;
use crate::step::{step_inputs, STEP_INSTANCES};
use crate::{CircuitError, Result};

/// The step shape chosen automatically for a run (see [`StepShape::auto`]),
/// from the size of its circuit laid out once (at the largest `k`, where
/// the value region counts its rows).
pub fn auto_shape(t: &Transcript) -> Result<StepShape> {
    check_machine_fits(&StepShape::for_run(t, 16))?;
    let c = crate::keys::keygen_circuit(&StepShape::for_run(t, crate::srs::MAX_K))?;
    Ok(StepShape::auto(t, &c.size()))
}

/// The shape for proofs covering `span` consecutive steps, with `k` chosen
/// automatically from the span circuit's size: [`StepShape::auto`], or,
/// where the proofs will be `aggregated` (succinct mode, more steps than
/// one span), [`StepShape::auto_k_aggregated`].
pub fn auto_shape_span(t: &Transcript, span: usize, aggregated: bool) -> Result<StepShape> {
    if span <= 1 && !aggregated {
        return auto_shape(t);
    }
    check_machine_fits(&StepShape::for_run(t, 16).with_span(span))?;
    let c = crate::keys::keygen_circuit(&StepShape::for_run(t, crate::srs::MAX_K).with_span(span))?;
    let size = c.size();
    let k = match aggregated {
        true => StepShape::auto_k_aggregated(&size),
        false => StepShape::auto_k(&size),
    };
    Ok(StepShape::for_run(t, k).with_span(span))
}

/// Most consecutive steps an automatic span covers (a 64-step digits leaf
/// costs 0.26x a standalone step per step; BENCHMARKS.md).
pub const MAX_AUTO_SPAN: usize = 64;

/// Estimated prover memory an automatic span stays within when it is the
/// run's only proof, so that a worker of that size can prove it.
pub const AUTO_SPAN_MEMORY: u64 = 8 << 30;

/// Estimated prover memory the leaves of an aggregated run stay within:
/// below what the aggregations above them take (11.2-13.2 GiB measured at
/// k = 20 over leaves within 33 columns; BENCHMARKS.md), so longer leaves,
/// fewer to aggregate, do not raise the run's peak.
pub const AUTO_AGGREGATED_LEAF_MEMORY: u64 = 10 << 30;

/// The memory budgets [`auto_span`] chooses within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanBudget {
    /// For a span that is the run's only proof.
    pub single: u64,
    /// For the leaves of a run that is aggregated.
    pub aggregated: u64,
}

impl SpanBudget {
    /// The same budget for both.
    pub fn uniform(bytes: u64) -> Self {
        SpanBudget {
            single: bytes,
            aggregated: bytes,
        }
    }

    /// [`AUTO_SPAN_MEMORY`] and [`AUTO_AGGREGATED_LEAF_MEMORY`], or less
    /// where this machine has less.
    pub fn for_machine() -> Self {
        let cap = |b: u64| crate::shape::machine_memory().map_or(b, |m| m.min(b));
        SpanBudget {
            single: cap(AUTO_SPAN_MEMORY),
            aggregated: cap(AUTO_AGGREGATED_LEAF_MEMORY),
        }
    }

    /// The budget of a span proven alone or, `aggregated`, as a leaf.
    pub fn of(&self, aggregated: bool) -> u64 {
        if aggregated {
            self.aggregated
        } else {
            self.single
        }
    }
}

/// The span `zkaudit prove --span auto` takes for proving `steps` steps of
/// a run of shape `step` in succinct mode: the longest, up to
/// [`MAX_AUTO_SPAN`] and `steps`, whose estimated prover memory
/// ([`StepShape::estimate_memory_as`], at the layout of a leaf that will be
/// aggregated when `steps` exceeds the span) fits `budget`, and which, as
/// the only leaf, is laid out at no larger `k` than one step (or 17). A
/// step inside a span costs less than alone (the weights are hashed only at
/// the span's ends and passed between its steps as cells) and fewer leaves
/// need fewer aggregations, so the longest that fits is the cheapest per
/// step; but the time per slot grows with `k`: a 784-128-10 span of 6 at
/// k = 18 proved 48.0 s per step, one of 4 at k = 17 41.8-44.4 s, in the
/// same slots per step (BENCHMARKS.md). 1 when even a span of 2 does not fit.
/// A leaf's budget is `budget.of(aggregated)`.
pub fn auto_span(step: &StepShape, steps: usize, budget: SpanBudget) -> usize {
    let one = StepShape::auto_k(&step.with_span(1).estimate()).max(MIN_LARGE_K);
    (2..=MAX_AUTO_SPAN.min(steps))
        .rev()
        .find(|&s| {
            let aggregated = steps > s;
            let (k, _, bytes) = step.with_span(s).estimate_memory_as(aggregated);
            bytes <= budget.of(aggregated) && (aggregated || k <= one)
        })
        .unwrap_or(1)
}

/// Refuses, before laying out its circuit, a shape whose estimated prover
/// memory exceeds this machine's (see [`StepShape::check_fits`]).
fn check_machine_fits(shape: &StepShape) -> Result<()> {
    match crate::shape::machine_memory() {
        Some(m) => shape.check_fits(m),
        None => Ok(()),
    }
}

/// Progress of [`prove_run`].
#[derive(Clone, Copy, Debug)]
pub enum RunProgress {
    /// Proving starts: this many steps.
    Started(usize),
    /// A step was proven and checked.
    StepDone(usize),
    /// Aggregation starts: this many aggregation proofs.
    AggStarted(usize),
    /// The key of an aggregation level is being loaded or generated.
    AggKey(usize),
    /// An aggregation proof is done: level, first and last step it covers.
    AggDone(usize, u64, u64),
}

/// Proves steps `0..n` of a run (all when `n` is `None`) and assembles a batched certificate.
pub fn prove_run(
    t: &Transcript,
    n: Option<usize>,
    shape: &StepShape,
    params: &ParamsKZG<Bn256>,
    key: &StepKey,
    progress: &mut dyn FnMut(RunProgress),
) -> Result<Certificate> {
    let total = n.unwrap_or(t.num_steps());
    if total == 0 || total > t.num_steps() {
        return Err(CircuitError::Shape(format!(
            "--steps must be in 1..={} (the run's steps), got {total}",
            t.num_steps()
        )));
    }
    let tree = MerkleTree::of_dataset(
        &t.train.features,
        &t.train.labels,
        &t.leaf_salts,
        t.config.fx.value_bits,
    );
    progress(RunProgress::Started(total));
    let mut steps = Vec::with_capacity(total);
    for s in 0..total {
        let p = prove_step(t, &tree, s, shape, params, key)?;
        steps.push(StepEntry {
            statement: p.statement,
            proof: p.proof,
        });
        progress(RunProgress::StepDone(s + 1));
    }
    Certificate::batched(
        PublicParams::of(t),
        shape.clone(),
        srs_id(params),
        initial_salt(t),
        steps,
    )
}

/// Proves steps `0..n` of a run in spans of `shape.span` consecutive steps
/// per leaf proof (the last span shorter), aggregates the leaves up the tree
/// of [`crate::aggregate::plan`] and returns a succinct certificate.
/// `agg_params` is the SRS at the aggregation size; step and aggregation
/// keys are cached in `keys_dir`.
pub fn prove_run_succinct(
    t: &Transcript,
    n: Option<usize>,
    shape: &StepShape,
    step_params: &ParamsKZG<Bn256>,
    agg_params: &ParamsKZG<Bn256>,
    keys_dir: &Path,
    progress: &mut dyn FnMut(RunProgress),
) -> Result<Certificate> {
    let total = n.unwrap_or(t.num_steps());
    if total == 0 || total > t.num_steps() {
        return Err(CircuitError::Shape(format!(
            "--steps must be in 1..={} (the run's steps), got {total}",
            t.num_steps()
        )));
    }
    let tree = MerkleTree::of_dataset(
        &t.train.features,
        &t.train.labels,
        &t.leaf_salts,
        t.config.fx.value_bits,
    );
    progress(RunProgress::Started(total));
    let mut leaves = Vec::new();
    let mut key: Option<(usize, StepKey)> = None;
    let mut first = 0usize;
    for len in leaf_spans(total, shape.span) {
        let span_shape = shape.with_span(len);
        if key.as_ref().map(|(l, _)| *l) != Some(len) {
            drop(key.take());
            key = Some((len, step_key(keys_dir, &span_shape, step_params)?));
        }
        let k = match &key {
            Some((_, k)) => k,
            None => return Err(CircuitError::Shape("step key".into())),
        };
        let mut statements = Vec::with_capacity(len);
        let mut witnesses = Vec::with_capacity(len);
        for s in first..first + len {
            t.replay_step(s)?;
            let (st, w) = step_inputs(t, &tree, s)?;
            statements.push(st);
            witnesses.push(w);
        }
        let summary = Summary::of_span(&statements)?;
        let circuit = k.prover_span_circuit(&span_shape, &statements, &witnesses, None)?;
        let snark = catch_unwind(AssertUnwindSafe(|| {
            gen_snark_shplonk(step_params, &k.pk, circuit, None::<&str>)
        }))
        .map_err(|_| {
            CircuitError::Unsatisfied(format!(
                "steps {first}..{}: the prover could not produce a valid proof",
                first + len
            ))
        })?;
        leaves.push(Node {
            kind: NodeKind::Steps(len),
            snark,
            summary,
        });
        first += len;
        progress(RunProgress::StepDone(first));
    }
    drop(key);
    progress(RunProgress::AggStarted(plan(leaves.len()).aggregations()));
    let root = aggregate_tree(keys_dir, agg_params, leaves, &mut |a| match a {
        AggProgress::Key(l) => progress(RunProgress::AggKey(l)),
        AggProgress::Node(l, a, b) => progress(RunProgress::AggDone(l, a, b)),
    })?;
    let s = &root.summary;
    let statement = RunStatement {
        c_first: s.c_first,
        c_last: s.c_last,
        root: s.root,
        t_first: s.t_first,
        t_last: s.t_last,
        digest: s.digest,
    };
    let instances = root.snark.instances.into_iter().next().unwrap_or_default();
    Ok(Certificate {
        mode: Mode::Succinct,
        public: PublicParams::of(t),
        shape: shape.clone(),
        srs_id: srs_id(step_params),
        statement,
        initial_salt: initial_salt(t),
        steps: Vec::new(),
        root: Some(RootProof {
            kind: root.kind,
            agg_k: agg_params.k(),
            instances,
            proof: root.snark.proof,
        }),
    })
}

/// The salt of `c_0` when the initial weights are public (seeded), so that a
/// verifier can recompute `c_0`.
pub(crate) fn initial_salt(t: &Transcript) -> Option<u128> {
    match t.init {
        InitSource::Seeded => Some(t.weight_salts[0]),
        InitSource::Imported { .. } => None,
    }
}

/// The leaves' kinds and protocols of a run of `n` steps proven in spans of
/// `shape.span`, from the step keys (cached in `keys_dir`, else derived from the shape).
pub fn leaf_protocols(
    keys_dir: &Path,
    shape: &StepShape,
    params: &ParamsKZG<Bn256>,
    n: usize,
) -> Result<Vec<(NodeKind, PlonkProtocol<G1Affine>)>> {
    let mut by_len: HashMap<usize, PlonkProtocol<G1Affine>> = HashMap::new();
    leaf_spans(n, shape.span)
        .into_iter()
        .map(|len| {
            if let Some(p) = by_len.get(&len) {
                return Ok((NodeKind::Steps(len), p.clone()));
            }
            let vk = step_vk(keys_dir, &shape.with_span(len), params, None)?;
            let p = protocol(params, &vk, NodeKind::Steps(len), STEP_INSTANCES);
            by_len.insert(len, p.clone());
            Ok((NodeKind::Steps(len), p))
        })
        .collect()
}

/// The root verifying key of a succinct certificate, derived by the verifier
/// from the step shape (keys cached in `keys_dir`; minutes the first time).
pub fn derive_root_key(
    cert: &Certificate,
    keys_dir: &Path,
    step_params: &ParamsKZG<Bn256>,
    agg_params: &ParamsKZG<Bn256>,
) -> Result<(NodeKind, VerifyingKey<G1Affine>)> {
    let s = &cert.statement;
    let n = s
        .t_last
        .checked_sub(s.t_first)
        .map(|d| d as usize + 1)
        .filter(|&n| n <= MAX_TREE_LEAVES)
        .ok_or_else(|| {
            CircuitError::Verification(format!("bad step range {}..={}", s.t_first, s.t_last))
        })?;
    let leaves = leaf_protocols(keys_dir, &cert.shape, step_params, n)?;
    match root_vk(keys_dir, agg_params, leaves, None)? {
        (kind, Some(vk)) => Ok((kind, vk)),
        (NodeKind::Steps(len), None) => Ok((
            NodeKind::Steps(len),
            step_vk(keys_dir, &cert.shape.with_span(len), step_params, None)?,
        )),
        (kind, None) => Err(CircuitError::Shape(format!("no key for a {kind:?} root"))),
    }
}
