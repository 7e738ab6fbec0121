//! The local proving pipeline: prove the steps of a run and assemble a
//! certificate (the embedded default of `zkaudit prove`).

use halo2_base::halo2_proofs::halo2curves::bn256::Bn256;
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use zkaudit_model::transcript::{InitSource, Transcript};

use std::path::Path;

use halo2_base::halo2_proofs::poly::commitment::Params;
use snark_verifier_sdk::Snark;

use crate::aggregate::{aggregate_tree, plan, protocol, AggProgress, Node, NodeKind, Summary};
use crate::certificate::{Certificate, RootProof, StepEntry};
use crate::hash::MerkleTree;
use crate::keys::StepKey;
use crate::prover::prove_step;
use crate::shape::{PublicParams, StepShape};
use crate::srs::srs_id;
use crate::{CircuitError, Result};

/// The step shape chosen automatically for a run (see [`StepShape::auto`]).
pub fn auto_shape(t: &Transcript) -> Result<StepShape> {
    let c = crate::keys::keygen_circuit(&StepShape::for_run(t, 16))?;
    Ok(StepShape::auto(t, c.advice_cells(), c.perms.len()))
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
    let initial_salt = match t.init {
        InitSource::Seeded => Some(t.weight_salts[0]),
        InitSource::Imported { .. } => None,
    };
    Certificate::batched(
        PublicParams::of(t),
        shape.clone(),
        srs_id(params),
        initial_salt,
        steps,
    )
}

/// Proves steps `0..n` of a run, aggregates them up the tree of
/// [`crate::aggregate::plan`] and returns a succinct certificate.
/// `agg_params` is the SRS at the aggregation size; aggregation keys are cached in `keys_dir`.
#[allow(clippy::too_many_arguments)]
pub fn prove_run_succinct(
    t: &Transcript,
    n: Option<usize>,
    shape: &StepShape,
    step_params: &ParamsKZG<Bn256>,
    key: &StepKey,
    agg_params: &ParamsKZG<Bn256>,
    keys_dir: &Path,
    progress: &mut dyn FnMut(RunProgress),
) -> Result<Certificate> {
    let batched = prove_run(t, n, shape, step_params, key, progress)?;
    let p = protocol(
        step_params,
        key.pk.get_vk(),
        NodeKind::Step,
        batched.steps[0].statement.instances().len(),
    );
    let leaves: Vec<Node> = batched
        .steps
        .iter()
        .map(|e| Node {
            kind: NodeKind::Step,
            snark: Snark::new(p.clone(), vec![e.statement.instances()], e.proof.clone()),
            summary: Summary::of_step(&e.statement),
        })
        .collect();
    progress(RunProgress::AggStarted(plan(leaves.len()).aggregations()));
    let root = aggregate_tree(keys_dir, agg_params, leaves, &mut |a| match a {
        AggProgress::Key(l) => progress(RunProgress::AggKey(l)),
        AggProgress::Node(l, a, b) => progress(RunProgress::AggDone(l, a, b)),
    })?;
    let instances = root.snark.instances.into_iter().next().unwrap_or_default();
    Ok(batched.into_succinct(RootProof {
        kind: root.kind,
        agg_k: agg_params.k(),
        instances,
        proof: root.snark.proof,
    }))
}
