//! Audits as independent units of work, for the local prover and for the
//! proving cluster: one task per chunk and one combine task depending on
//! all of them.
//!
//! A job is an [`AuditJob`]: the claim, what it binds to, which weights are
//! audited and the circuits ([`Plan`]). Whoever checks a returned chunk
//! proof ([`verify_chunk`]) recomputes what the chunk must expose (its
//! subtree root, its count commitment) from the transcript itself, so a
//! prover can neither move a chunk nor change its counts. Count salts come
//! from a [`SaltKey`], so a retried chunk commits to the same value and the
//! combine task can be proven by another machine.

use std::path::Path;

use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, G1Affine};
use halo2_base::halo2_proofs::plonk::VerifyingKey;
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use serde::{Deserialize, Serialize};
use zkaudit_model::transcript::Transcript;

use super::circuit::AuditWitness;
use super::prove::{
    check_claim, chunk_counts, chunk_inputs, chunk_publics, combine_publics, plan, prove_one,
    AuditData, Plan, SaltKey,
};
use super::{AuditProof, Binding, ChunkKind, ChunkProof, Claim};
use crate::hash::{commit_weights_native, MerkleTree};
use crate::keys::StepKey;
use crate::prover::verify_snark;
use crate::{envelope, CircuitError, Result};

/// Magic of serialized audit requests.
pub const AUDIT_REQUEST_MAGIC: [u8; 8] = *b"ZKAAREQ\0";
/// Magic of serialized audit jobs.
pub const AUDIT_JOB_MAGIC: [u8; 8] = *b"ZKAAJOB\0";
/// Magic of serialized audit task results.
pub const AUDIT_PART_MAGIC: [u8; 8] = *b"ZKAAPRT\0";
/// Version of the three formats.
pub const AUDIT_TASK_VERSION: u32 = 1;

/// What a client asks a cluster to prove: a claim about a certified run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditRequest {
    /// The claim with its public data.
    pub claim: Claim,
    /// The certificate's commitments it binds to.
    pub binding: Binding,
    /// Index of the audited weights in the transcript (`t_last + 1`).
    pub model_index: u64,
    /// Records per chunk.
    pub chunk_records: u64,
}

/// A planned audit: the request and its circuits.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditJob {
    /// The claim.
    pub claim: Claim,
    /// The commitments it binds to.
    pub binding: Binding,
    /// Index of the audited weights.
    pub model_index: u64,
    /// The circuits.
    pub plan: Plan,
}

impl AuditRequest {
    /// Serializes with magic and version.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        envelope::encode(&AUDIT_REQUEST_MAGIC, AUDIT_TASK_VERSION, self)
    }

    /// Parses [`AuditRequest::to_bytes`] output; `what` names its origin in errors.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self> {
        envelope::decode(
            bytes,
            &AUDIT_REQUEST_MAGIC,
            AUDIT_TASK_VERSION,
            "audit request",
            Path::new(what),
        )
    }
}

impl AuditJob {
    /// Serializes with magic and version.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        envelope::encode(&AUDIT_JOB_MAGIC, AUDIT_TASK_VERSION, self)
    }

    /// Parses [`AuditJob::to_bytes`] output; `what` names its origin in errors.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self> {
        envelope::decode(
            bytes,
            &AUDIT_JOB_MAGIC,
            AUDIT_TASK_VERSION,
            "audit job",
            Path::new(what),
        )
    }

    /// The private side of the job on transcript `t`.
    pub fn data<'a>(&self, t: &'a Transcript) -> AuditData<'a> {
        AuditData {
            transcript: t,
            model_index: self.model_index as usize,
        }
    }
}

/// The result of an audit task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AuditPart {
    /// Chunk `index`.
    Chunk {
        /// Chunk index.
        index: u32,
        /// Its proof and exposed values.
        proof: ChunkProof,
    },
    /// The combine proof with the sums it reveals (if the claim asks).
    Combine {
        /// The SHPLONK proof.
        proof: Vec<u8>,
        /// Revealed sums.
        revealed: Vec<u64>,
    },
}

impl AuditPart {
    /// Serializes with magic and version.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        envelope::encode(&AUDIT_PART_MAGIC, AUDIT_TASK_VERSION, self)
    }

    /// Parses [`AuditPart::to_bytes`] output; `what` names its origin in errors.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self> {
        envelope::decode(
            bytes,
            &AUDIT_PART_MAGIC,
            AUDIT_TASK_VERSION,
            "audit task result",
            Path::new(what),
        )
    }

    /// The proof bytes (for fault injection in tests).
    pub fn proof_mut(&mut self) -> &mut Vec<u8> {
        match self {
            AuditPart::Chunk { proof, .. } => &mut proof.proof,
            AuditPart::Combine { proof, .. } => proof,
        }
    }
}

/// The commitments of transcript `t` an audit of the weights after
/// `model_index` steps binds to (`tree`: its dataset tree).
pub fn binding_of_transcript(
    t: &Transcript,
    tree: &MerkleTree,
    model_index: usize,
) -> Result<Binding> {
    let (w, salt) = match (t.weights.get(model_index), t.weight_salts.get(model_index)) {
        (Some(w), Some(s)) => (w, *s),
        _ => {
            return Err(CircuitError::Shape(format!(
                "the run has no weights after step {model_index} (it has {} steps)",
                t.num_steps()
            )))
        }
    };
    Ok(Binding {
        root: tree.root(),
        num_records: t.train.len() as u64,
        c_t: commit_weights_native(salt, &w.flatten(), t.config.fx.value_bits),
    })
}

/// Admits a request on the run's transcript: its binding must be the
/// transcript's, the claim must hold (a clear message otherwise), and the
/// circuits are planned here, not taken from the client.
pub fn admit(req: &AuditRequest, t: &Transcript, tree: &MerkleTree) -> Result<AuditJob> {
    let model_index = usize::try_from(req.model_index).unwrap_or(usize::MAX);
    let own = binding_of_transcript(t, tree, model_index)?;
    if own != req.binding {
        return Err(CircuitError::Verification(format!(
            "the audit's commitments are not the run's after step {}: give the certificate of this run",
            req.model_index
        )));
    }
    let data = AuditData {
        transcript: t,
        model_index,
    };
    check_claim(&req.claim, &data)?;
    let chunk = usize::try_from(req.chunk_records)
        .unwrap_or(usize::MAX)
        .clamp(1, 1 << 20);
    let plan = plan(
        &req.claim,
        &req.binding,
        &t.config.arch,
        &t.config.fx,
        chunk,
    )?;
    Ok(AuditJob {
        claim: req.claim.clone(),
        binding: req.binding.clone(),
        model_index: req.model_index,
        plan,
    })
}

fn chunk_name(job: &AuditJob, i: usize) -> String {
    format!("{} chunk {i}", job.plan.chunk.kind.name())
}

fn check_index(job: &AuditJob, i: usize) -> Result<()> {
    if i >= job.plan.chunks {
        return Err(CircuitError::Shape(format!(
            "chunk {i} does not exist: the audit has {} chunks",
            job.plan.chunks
        )));
    }
    Ok(())
}

/// Proves chunk `i` with `key` (the chunk circuit's key over `params`).
/// `tree` is the dataset tree (data audits).
pub fn prove_chunk(
    job: &AuditJob,
    data: &AuditData,
    tree: Option<&MerkleTree>,
    salts: &SaltKey,
    i: usize,
    params: &ParamsKZG<Bn256>,
    key: &StepKey,
) -> Result<ChunkProof> {
    check_index(job, i)?;
    let inputs = chunk_inputs(&job.claim, data, tree, &job.plan.chunk, i, salts.salt(i))?;
    let publics = chunk_publics(
        &job.claim,
        &job.binding,
        &job.plan.chunk,
        i,
        inputs.root,
        inputs.cc,
    )?;
    let proof = prove_one(
        &job.plan.chunk,
        &publics,
        &inputs.witness,
        params,
        key,
        &chunk_name(job, i),
    )?;
    Ok(ChunkProof {
        root: inputs.root,
        cc: inputs.cc,
        proof,
    })
}

/// Checks a chunk proof made by someone else: the subtree root and count
/// commitment it exposes must be the ones the transcript gives, and the
/// proof must verify with the public inputs built from the claim.
#[allow(clippy::too_many_arguments)]
pub fn verify_chunk(
    job: &AuditJob,
    data: &AuditData,
    tree: Option<&MerkleTree>,
    salts: &SaltKey,
    i: usize,
    c: &ChunkProof,
    params: &ParamsKZG<Bn256>,
    vk: &VerifyingKey<G1Affine>,
) -> Result<()> {
    check_index(job, i)?;
    let own = chunk_inputs(&job.claim, data, tree, &job.plan.chunk, i, salts.salt(i))?;
    if own.root != c.root || own.cc != c.cc {
        return Err(CircuitError::Verification(format!(
            "{}: the exposed subtree root or count commitment is not the transcript's",
            chunk_name(job, i)
        )));
    }
    let publics = chunk_publics(&job.claim, &job.binding, &job.plan.chunk, i, c.root, c.cc)?;
    verify_snark(params, vk, &publics, &c.proof)
        .map_err(|e| CircuitError::Verification(format!("{}: {e}", chunk_name(job, i))))
}

/// The combine proof's private inputs and revealed sums over the chunks.
fn combine_inputs(
    job: &AuditJob,
    data: &AuditData,
    salts: &SaltKey,
) -> Result<(AuditWitness, Vec<u64>)> {
    let shape = job
        .plan
        .combine
        .as_ref()
        .ok_or_else(|| CircuitError::Shape("this audit has no combine proof".into()))?;
    let ChunkKind::Combine { groups, reveal, .. } = shape.kind else {
        return Err(CircuitError::Shape("not a combine shape".into()));
    };
    let counts = (0..job.plan.chunks)
        .map(|i| chunk_counts(&job.claim, data, &job.plan.chunk, i))
        .collect::<Result<Vec<_>>>()?;
    let revealed = if reveal {
        (0..groups)
            .map(|g| counts.iter().map(|c| c.get(g).copied().unwrap_or(0)).sum())
            .collect()
    } else {
        Vec::new()
    };
    let salts = (0..job.plan.chunks).map(|i| salts.salt(i)).collect();
    Ok((AuditWitness::Combine { counts, salts }, revealed))
}

/// Proves the combine step over the chunks' proofs (in order) with `key`
/// (the combine circuit's key over `params`); returns the proof and the
/// revealed sums.
pub fn prove_combine(
    job: &AuditJob,
    data: &AuditData,
    salts: &SaltKey,
    chunks: &[ChunkProof],
    params: &ParamsKZG<Bn256>,
    key: &StepKey,
) -> Result<(Vec<u8>, Vec<u64>)> {
    let (w, revealed) = combine_inputs(job, data, salts)?;
    let shape = job
        .plan
        .combine
        .as_ref()
        .ok_or_else(|| CircuitError::Shape("this audit has no combine proof".into()))?;
    let publics = combine_publics(&job.claim, chunks, &revealed)?;
    let proof = prove_one(shape, &publics, &w, params, key, "combine")?;
    Ok((proof, revealed))
}

/// Checks a combine proof made by someone else over verified chunk proofs:
/// the revealed sums must be the transcript's and the proof must verify.
#[allow(clippy::too_many_arguments)]
pub fn verify_combine(
    job: &AuditJob,
    data: &AuditData,
    salts: &SaltKey,
    chunks: &[ChunkProof],
    proof: &[u8],
    revealed: &[u64],
    params: &ParamsKZG<Bn256>,
    vk: &VerifyingKey<G1Affine>,
) -> Result<()> {
    let (_, own) = combine_inputs(job, data, salts)?;
    if own != revealed {
        return Err(CircuitError::Verification(
            "combine: the revealed sums are not the transcript's".into(),
        ));
    }
    let publics = combine_publics(&job.claim, chunks, revealed)?;
    verify_snark(params, vk, &publics, proof)
        .map_err(|e| CircuitError::Verification(format!("combine proof: {e}")))
}

/// The audit file from its parts (chunks in order).
pub fn assemble(
    job: &AuditJob,
    chunks: Vec<ChunkProof>,
    combine: Option<(Vec<u8>, Vec<u64>)>,
    srs_id: String,
) -> Result<AuditProof> {
    if chunks.len() != job.plan.chunks || combine.is_some() != job.plan.combine.is_some() {
        return Err(CircuitError::Shape(format!(
            "{} chunk proofs and {} combine proof for an audit of {} chunks{}",
            chunks.len(),
            usize::from(combine.is_some()),
            job.plan.chunks,
            if job.plan.combine.is_some() {
                " and a combine proof"
            } else {
                ""
            }
        )));
    }
    let (combine, revealed) = match (combine, &job.plan.combine) {
        (Some((proof, revealed)), Some(shape)) => (Some((shape.clone(), proof)), revealed),
        _ => (None, Vec::new()),
    };
    Ok(AuditProof {
        claim: job.claim.clone(),
        binding: job.binding.clone(),
        chunk_shape: job.plan.chunk.clone(),
        chunks,
        combine,
        revealed,
        srs_id,
    })
}
