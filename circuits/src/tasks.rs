//! The proving cluster's units of work: proving a leaf (a span of steps) or
//! an aggregation node, checking a returned proof against what the run's
//! transcript says it must prove, and assembling the certificate.
//!
//! A worker and the coordinator both hold a [`JobContext`] built from the
//! same transcript. The coordinator trusts nothing a worker returns: it
//! recomputes each leaf's statements from the transcript, joins child
//! summaries itself, derives every verifying key from public data (the step
//! shape and the SRS), and verifies the proof, pairing included.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, G1Affine};
use halo2_base::halo2_proofs::plonk::VerifyingKey;
use halo2_base::halo2_proofs::poly::commitment::Params;
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use serde::{Deserialize, Serialize};
use snark_verifier_sdk::halo2::gen_snark_shplonk;
use snark_verifier_sdk::snark_verifier::verifier::plonk::PlonkProtocol;
use snark_verifier_sdk::Snark;
use zkaudit_model::transcript::Transcript;

use crate::pipeline::initial_salt;

use crate::aggregate::{
    agg_key, agg_vk, check_accumulator, leaf_spans, protocol, root_vk, AggKey, Node, NodeKind,
    Summary, ACC_LEN, SUMMARY_LEN,
};
use crate::certificate::{Certificate, Mode, RootProof, RunStatement, StepEntry};
use crate::envelope;
use crate::hash::MerkleTree;
use crate::keys::{step_key, step_vk, StepKey, VkPins};
use crate::prover::verify_snark;
use crate::shape::{PublicParams, StepShape};
use crate::srs::srs_id;
use crate::step::{span_instances, step_inputs, StepStatement, STEP_INSTANCES};
use crate::{CircuitError, Fr, Result};

/// Magic of serialized artifacts.
pub const ARTIFACT_MAGIC: [u8; 8] = *b"ZKAPROOF";
/// Artifact format version.
pub const ARTIFACT_VERSION: u32 = 1;

/// A proof made by a worker: a leaf (steps) or an aggregation node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Artifact {
    /// What proves it.
    pub kind: NodeKind,
    /// What it claims about its range of steps.
    pub summary: Summary,
    /// Its public instances.
    pub instances: Vec<Fr>,
    /// The SHPLONK proof.
    pub proof: Vec<u8>,
}

impl Artifact {
    /// Serializes with magic and version.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        envelope::encode(&ARTIFACT_MAGIC, ARTIFACT_VERSION, self)
    }

    /// Parses [`Artifact::to_bytes`] output; `what` names its origin in errors.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self> {
        envelope::decode(
            bytes,
            &ARTIFACT_MAGIC,
            ARTIFACT_VERSION,
            "proof artifact",
            Path::new(what),
        )
    }
}

/// A job's transcript with what proving and checking its tasks needs.
pub struct JobContext {
    /// The training transcript.
    pub transcript: Transcript,
    /// Its dataset Merkle tree.
    pub tree: MerkleTree,
    /// The step shape (its `span` is the job's steps per leaf).
    pub shape: StepShape,
}

impl JobContext {
    /// Builds the context (computes the Merkle tree).
    pub fn new(transcript: Transcript, shape: StepShape) -> Self {
        let t = &transcript;
        let tree = MerkleTree::of_dataset(
            &t.train.features,
            &t.train.labels,
            &t.leaf_salts,
            t.config.fx.value_bits,
        );
        JobContext {
            transcript,
            tree,
            shape,
        }
    }

    /// The statements of steps `first..=last`, replaying each step with the
    /// engine (a transcript whose recorded update is not the engine's fails here).
    pub fn statements(&self, first: u64, last: u64) -> Result<Vec<StepStatement>> {
        self.check_range(first, last)?;
        (first..=last)
            .map(|s| {
                self.transcript.replay_step(s as usize)?;
                Ok(step_inputs(&self.transcript, &self.tree, s as usize)?.0)
            })
            .collect()
    }

    /// The leaf lengths under a node covering `first..=last` (leaves start at
    /// multiples of the span).
    pub fn leaf_lens(&self, first: u64, last: u64) -> Vec<usize> {
        leaf_spans((last - first + 1) as usize, self.shape.span)
    }

    fn check_range(&self, first: u64, last: u64) -> Result<()> {
        let n = self.transcript.num_steps() as u64;
        if first > last || last >= n {
            return Err(CircuitError::Shape(format!(
                "steps {first}..={last} are not within the run's {n} steps"
            )));
        }
        Ok(())
    }
}

/// A node of the tree: the step shape's id and its leaves' lengths.
type NodeId = (String, Vec<usize>);

/// SRS and key files shared by the tasks of a process, with the protocols
/// derived so far.
pub struct KeyStore {
    /// Directory of cached keys.
    pub dir: PathBuf,
    /// SRS at the step size.
    pub step_params: ParamsKZG<Bn256>,
    /// SRS at the aggregation size (succinct jobs).
    pub agg_params: Option<ParamsKZG<Bn256>>,
    /// Pins of the verifying keys (a verifier sharing `dir` with provers).
    pub pins: Option<VkPins>,
    protocols: Mutex<HashMap<NodeId, (NodeKind, PlonkProtocol<G1Affine>)>>,
    vks: Mutex<HashMap<NodeId, VerifyingKey<G1Affine>>>,
}

impl KeyStore {
    /// A key store over `dir`.
    pub fn new(
        dir: PathBuf,
        step_params: ParamsKZG<Bn256>,
        agg_params: Option<ParamsKZG<Bn256>>,
    ) -> Self {
        KeyStore {
            dir,
            step_params,
            agg_params,
            pins: None,
            protocols: Mutex::new(HashMap::new()),
            vks: Mutex::new(HashMap::new()),
        }
    }

    /// The same store, trusting cached verifying keys only through `pins`.
    pub fn with_pins(mut self, pins: VkPins) -> Self {
        self.pins = Some(pins);
        self
    }

    fn agg_params(&self) -> Result<&ParamsKZG<Bn256>> {
        self.agg_params.as_ref().ok_or_else(|| {
            CircuitError::Srs("aggregation needs an SRS at the aggregation size".into())
        })
    }

    /// The proving key of a leaf of `len` steps.
    pub fn step_key(&self, shape: &StepShape, len: usize) -> Result<StepKey> {
        step_key(&self.dir, &shape.with_span(len), &self.step_params)
    }

    /// The verifying key of the node over leaves of lengths `lens` (derived
    /// from public data, cached on disk and in memory).
    pub fn node_vk(&self, shape: &StepShape, lens: &[usize]) -> Result<VerifyingKey<G1Affine>> {
        let key = (shape.id(), lens.to_vec());
        if let Some(vk) = lock(&self.vks)?.get(&key) {
            return Ok(vk.clone());
        }
        let vk = match lens {
            [len] => step_vk(
                &self.dir,
                &shape.with_span(*len),
                &self.step_params,
                self.pins.as_ref(),
            )?,
            _ => {
                let leaves = self.leaf_protocols(shape, lens)?;
                match root_vk(&self.dir, self.agg_params()?, leaves, self.pins.as_ref())? {
                    (_, Some(vk)) => vk,
                    (kind, None) => {
                        return Err(CircuitError::Shape(format!("no key for a {kind:?} node")))
                    }
                }
            }
        };
        lock(&self.vks)?.insert(key, vk.clone());
        Ok(vk)
    }

    /// The kind and protocol of the node over leaves of lengths `lens`.
    pub fn node_protocol(
        &self,
        shape: &StepShape,
        lens: &[usize],
    ) -> Result<(NodeKind, PlonkProtocol<G1Affine>)> {
        let key = (shape.id(), lens.to_vec());
        if let Some(p) = lock(&self.protocols)?.get(&key) {
            return Ok(p.clone());
        }
        let vk = self.node_vk(shape, lens)?;
        let p = match lens {
            [len] => (
                NodeKind::Steps(*len),
                protocol(
                    &self.step_params,
                    &vk,
                    NodeKind::Steps(*len),
                    STEP_INSTANCES,
                ),
            ),
            _ => (
                NodeKind::Aggregate,
                protocol(
                    self.agg_params()?,
                    &vk,
                    NodeKind::Aggregate,
                    ACC_LEN + SUMMARY_LEN,
                ),
            ),
        };
        lock(&self.protocols)?.insert(key, p.clone());
        Ok(p)
    }

    fn leaf_protocols(
        &self,
        shape: &StepShape,
        lens: &[usize],
    ) -> Result<Vec<(NodeKind, PlonkProtocol<G1Affine>)>> {
        lens.iter()
            .map(|&l| self.node_protocol(shape, &[l]))
            .collect()
    }

    /// The aggregation proving key for children over these leaf lengths.
    pub fn agg_key(&self, shape: &StepShape, children: &[Vec<usize>]) -> Result<AggKey> {
        let sig = children
            .iter()
            .map(|lens| self.node_protocol(shape, lens))
            .collect::<Result<Vec<_>>>()?;
        agg_key(&self.dir, self.agg_params()?, &sig)
    }

    /// The aggregation verifying key for children over these leaf lengths.
    pub fn agg_vk(
        &self,
        shape: &StepShape,
        children: &[Vec<usize>],
    ) -> Result<VerifyingKey<G1Affine>> {
        let sig = children
            .iter()
            .map(|lens| self.node_protocol(shape, lens))
            .collect::<Result<Vec<_>>>()?;
        agg_vk(&self.dir, self.agg_params()?, &sig, self.pins.as_ref())
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| CircuitError::Shape("a key cache lock was poisoned".into()))
}

/// Proves steps `first..=last` in one leaf proof with `key` (the key of a
/// leaf of that length).
pub fn prove_leaf(
    ctx: &JobContext,
    keys: &KeyStore,
    key: &StepKey,
    first: u64,
    last: u64,
) -> Result<Artifact> {
    let statements = ctx.statements(first, last)?;
    let witnesses = (first..=last)
        .map(|s| Ok(step_inputs(&ctx.transcript, &ctx.tree, s as usize)?.1))
        .collect::<Result<Vec<_>>>()?;
    let len = statements.len();
    let summary = Summary::of_span(&statements)?;
    let circuit =
        key.prover_span_circuit(&ctx.shape.with_span(len), &statements, &witnesses, None)?;
    let snark = catch_unwind(AssertUnwindSafe(|| {
        gen_snark_shplonk(&keys.step_params, &key.pk, circuit, None::<&str>)
    }))
    .map_err(|_| {
        CircuitError::Unsatisfied(format!(
            "steps {first}..={last}: the prover could not produce a valid proof"
        ))
    })?;
    Ok(Artifact {
        kind: NodeKind::Steps(len),
        summary,
        instances: snark.instances.into_iter().next().unwrap_or_default(),
        proof: snark.proof,
    })
}

/// Proves the aggregation of consecutive children (two or more) with `key`
/// (from [`KeyStore::agg_key`] over the children's leaf lengths).
pub fn prove_aggregate(
    ctx: &JobContext,
    keys: &KeyStore,
    key: &AggKey,
    children: &[Artifact],
) -> Result<Artifact> {
    let nodes = children
        .iter()
        .map(|c| {
            let lens = ctx.leaf_lens(c.summary.t_first, c.summary.t_last);
            let (kind, protocol) = keys.node_protocol(&ctx.shape, &lens)?;
            Ok(Node {
                kind,
                snark: Snark::new(protocol, vec![c.instances.clone()], c.proof.clone()),
                summary: c.summary.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let node = crate::aggregate::prove_node(keys.agg_params()?, key, &nodes)?;
    Ok(Artifact {
        kind: node.kind,
        summary: node.summary,
        instances: node.snark.instances.into_iter().next().unwrap_or_default(),
        proof: node.snark.proof,
    })
}

/// Children's leaf lengths, as [`KeyStore::agg_key`] takes them.
pub fn children_lens(ctx: &JobContext, children: &[Artifact]) -> Vec<Vec<usize>> {
    children
        .iter()
        .map(|c| ctx.leaf_lens(c.summary.t_first, c.summary.t_last))
        .collect()
}

/// Checks a leaf artifact for steps `first..=last` against the transcript's
/// statements and verifies its proof.
pub fn verify_leaf(
    ctx: &JobContext,
    keys: &KeyStore,
    first: u64,
    last: u64,
    a: &Artifact,
) -> Result<()> {
    let statements = ctx.statements(first, last)?;
    let len = statements.len();
    if a.kind != NodeKind::Steps(len) {
        return Err(CircuitError::Verification(format!(
            "expected a proof of {len} steps, got {:?}",
            a.kind
        )));
    }
    let instances = span_instances(&statements);
    if a.instances != instances || a.summary != Summary::of_span(&statements)? {
        return Err(CircuitError::Verification(format!(
            "the proof's statement is not the transcript's for steps {first}..={last}"
        )));
    }
    let vk = keys.node_vk(&ctx.shape, &[len])?;
    verify_snark(&keys.step_params, &vk, &instances, &a.proof)
}

/// Checks an aggregation artifact over verified children: its summary must
/// be the join of theirs, its proof must verify with the key derived from
/// the children's shapes, and the accumulator it carries must pass the pairing.
pub fn verify_aggregate(
    ctx: &JobContext,
    keys: &KeyStore,
    children: &[Artifact],
    a: &Artifact,
) -> Result<()> {
    let summary = Summary::join(
        &children
            .iter()
            .map(|c| c.summary.clone())
            .collect::<Vec<_>>(),
    )?;
    if a.kind != NodeKind::Aggregate || a.summary != summary {
        return Err(CircuitError::Verification(
            "the aggregation's claimed summary is not the join of its children's".into(),
        ));
    }
    if a.instances.len() != ACC_LEN + SUMMARY_LEN
        || a.instances[ACC_LEN..] != summary.to_instances()
    {
        return Err(CircuitError::Verification(
            "the aggregation's instances do not carry its summary".into(),
        ));
    }
    let vk = keys.agg_vk(&ctx.shape, &children_lens(ctx, children))?;
    let params = keys.agg_params()?;
    verify_snark(params, &vk, &a.instances, &a.proof)?;
    check_accumulator(params, &a.instances)
}

/// A batched certificate from verified single-step leaves in step order.
pub fn batched_certificate(
    ctx: &JobContext,
    step_params: &ParamsKZG<Bn256>,
    leaves: Vec<Artifact>,
) -> Result<Certificate> {
    let mut steps = Vec::with_capacity(leaves.len());
    for a in leaves {
        let st = ctx.statements(a.summary.t_first, a.summary.t_last)?;
        match (a.kind, st.as_slice()) {
            (NodeKind::Steps(1), [one]) => steps.push(StepEntry {
                statement: one.clone(),
                proof: a.proof,
            }),
            _ => {
                return Err(CircuitError::Shape(
                    "a batched certificate takes one-step proofs".into(),
                ))
            }
        }
    }
    Certificate::batched(
        PublicParams::of(&ctx.transcript),
        ctx.shape.with_span(1),
        srs_id(step_params),
        initial_salt(&ctx.transcript),
        steps,
    )
}

/// A succinct certificate from the verified root of the tree.
pub fn succinct_certificate(
    ctx: &JobContext,
    step_params: &ParamsKZG<Bn256>,
    agg_params: &ParamsKZG<Bn256>,
    root: Artifact,
) -> Result<Certificate> {
    let s = &root.summary;
    Ok(Certificate {
        mode: Mode::Succinct,
        public: PublicParams::of(&ctx.transcript),
        shape: ctx.shape.clone(),
        srs_id: srs_id(step_params),
        statement: RunStatement {
            c_first: s.c_first,
            c_last: s.c_last,
            root: s.root,
            t_first: s.t_first,
            t_last: s.t_last,
            digest: s.digest,
        },
        initial_salt: initial_salt(&ctx.transcript),
        steps: Vec::new(),
        root: Some(RootProof {
            kind: root.kind,
            agg_k: agg_params.k(),
            instances: root.instances,
            proof: root.proof,
        }),
    })
}
