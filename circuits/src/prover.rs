//! Proving and verifying one step, and the step-proof file.
//!
//! # Step-proof file
//! ```text
//! magic "ZKASTEP\0", version u32 LE, then bincode of `StepProof`
//! ```
//! It carries the proof, its public statement, the public parameters the
//! statement's digest commits to, the circuit shape and the SRS id. A verifier
//! needs nothing else but the SRS: it recomputes the digest, the batch indices
//! from the seed, and the verifying key from the shape.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, G1Affine};
use halo2_base::halo2_proofs::plonk::{verify_proof, VerifyingKey};
use halo2_base::halo2_proofs::poly::commitment::ParamsProver;
use halo2_base::halo2_proofs::poly::kzg::commitment::{KZGCommitmentScheme, ParamsKZG};
use halo2_base::halo2_proofs::poly::kzg::multiopen::VerifierSHPLONK;
use halo2_base::halo2_proofs::poly::kzg::strategy::AccumulatorStrategy;
use halo2_base::halo2_proofs::poly::VerificationStrategy;
use serde::{Deserialize, Serialize};
use snark_verifier_sdk::halo2::{gen_snark_shplonk, PoseidonTranscript, POSEIDON_SPEC};
use snark_verifier_sdk::{NativeLoader, Snark};
use zkaudit_model::schedule::Schedule;
use zkaudit_model::transcript::Transcript;

use crate::envelope;
use crate::hash::MerkleTree;
use crate::keys::StepKey;
use crate::shape::{PublicParams, StepShape};
use crate::srs::srs_id;
use crate::step::{step_inputs, StepStatement};
use crate::{CircuitError, Fr, Result};

/// File magic of step proofs.
pub const STEP_MAGIC: [u8; 8] = *b"ZKASTEP\0";
/// Step-proof format version.
pub const STEP_VERSION: u32 = 3;

/// A proven step with everything a verifier needs besides the SRS.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepProof {
    /// Circuit shape (selects the verifying key).
    pub shape: StepShape,
    /// Public parameters (their digest is an instance).
    pub public: PublicParams,
    /// The statement.
    pub statement: StepStatement,
    /// The SHPLONK proof (Poseidon transcript).
    pub proof: Vec<u8>,
    /// Id of the SRS it was made with.
    pub srs_id: String,
}

impl StepProof {
    /// Serializes with magic and version.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        envelope::encode(&STEP_MAGIC, STEP_VERSION, self)
    }

    /// Parses [`StepProof::to_bytes`] output; `path` names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        envelope::decode(bytes, &STEP_MAGIC, STEP_VERSION, "step proof", path)
    }

    /// Writes atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        envelope::write(path, &STEP_MAGIC, STEP_VERSION, self)
    }

    /// Reads a file.
    pub fn read(path: &Path) -> Result<Self> {
        envelope::read(path, &STEP_MAGIC, STEP_VERSION, "step proof")
    }

    /// The statement in words.
    pub fn describe(&self) -> String {
        let s = &self.statement;
        format!(
            "step {} of {}: weights committed as {} became {} by one SGD step (model {}, batch {}, lr {}/2^{}) on records {:?} of the dataset with root {}",
            s.step,
            self.public.num_steps,
            crate::field::to_hex(&s.c_before),
            crate::field::to_hex(&s.c_after),
            self.public.arch.describe(),
            self.public.batch,
            self.public.lr_fx,
            self.public.fx.frac_bits,
            s.indices,
            crate::field::to_hex(&s.root)
        )
    }
}

/// Proves step `step` of a transcript (the library call the worker uses).
pub fn prove_step(
    t: &Transcript,
    tree: &MerkleTree,
    step: usize,
    shape: &StepShape,
    params: &ParamsKZG<Bn256>,
    key: &StepKey,
) -> Result<StepProof> {
    // The engine must reproduce the recorded update; otherwise the statement is false.
    t.replay_step(step)?;
    let (statement, witness) = step_inputs(t, tree, step)?;
    let circuit = key.prover_circuit(shape, &statement, &witness, None)?;
    let snark: Snark = catch_unwind(AssertUnwindSafe(|| {
        gen_snark_shplonk(params, &key.pk, circuit, None::<&str>)
    }))
    .map_err(|_| {
        CircuitError::Unsatisfied(format!(
            "step {step}: the prover could not produce a valid proof"
        ))
    })?;
    Ok(StepProof {
        shape: shape.clone(),
        public: PublicParams::of(t),
        statement,
        proof: snark.proof,
        srs_id: srs_id(params),
    })
}

/// Verifies a SHPLONK proof against a verifying key and instances, including the pairing.
pub fn verify_snark(
    params: &ParamsKZG<Bn256>,
    vk: &VerifyingKey<G1Affine>,
    instances: &[Fr],
    proof: &[u8],
) -> Result<()> {
    let mut transcript =
        PoseidonTranscript::<NativeLoader, &[u8]>::from_spec(proof, POSEIDON_SPEC.clone());
    let strategy = AccumulatorStrategy::new(params.verifier_params());
    let res = catch_unwind(AssertUnwindSafe(|| {
        verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, _, _, _>(
            params.verifier_params(),
            vk,
            strategy,
            &[&[instances]],
            &mut transcript,
        )
    }));
    match res {
        Ok(Ok(acc)) => {
            if VerificationStrategy::<_, VerifierSHPLONK<'_, Bn256>>::finalize(acc) {
                Ok(())
            } else {
                Err(CircuitError::Verification(
                    "the final pairing check failed".into(),
                ))
            }
        }
        Ok(Err(e)) => Err(CircuitError::Verification(format!("{e:?}"))),
        Err(_) => Err(CircuitError::Verification("malformed proof".into())),
    }
}

/// Verifies several SHPLONK proofs under one verifying key with one
/// accumulated pairing: each proof's KZG accumulator is folded into a random
/// linear combination and a single pairing is checked at the end.
/// `proofs` are `(instances, proof)`; `name(i)` names proof `i` in errors
/// (e.g. "step 3"), `kind` names them all (e.g. "step").
pub fn verify_snarks_accumulated(
    params: &ParamsKZG<Bn256>,
    vk: &VerifyingKey<G1Affine>,
    proofs: &[(Vec<Fr>, &[u8])],
    name: &dyn Fn(usize) -> String,
    kind: &str,
) -> Result<()> {
    let mut strategy = AccumulatorStrategy::new(params.verifier_params());
    for (i, (inst, proof)) in proofs.iter().enumerate() {
        let mut transcript =
            PoseidonTranscript::<NativeLoader, &[u8]>::from_spec(proof, POSEIDON_SPEC.clone());
        let res = catch_unwind(AssertUnwindSafe(|| {
            verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, _, _, _>(
                params.verifier_params(),
                vk,
                strategy,
                &[&[inst.as_slice()]],
                &mut transcript,
            )
        }));
        strategy = match res {
            Ok(Ok(next)) => next,
            Ok(Err(e)) => {
                return Err(CircuitError::Verification(format!(
                    "the proof of {} is invalid: {e:?}",
                    name(i)
                )))
            }
            Err(_) => {
                return Err(CircuitError::Verification(format!(
                    "the proof of {} is malformed",
                    name(i)
                )))
            }
        };
    }
    if !VerificationStrategy::<_, VerifierSHPLONK<'_, Bn256>>::finalize(strategy) {
        return Err(CircuitError::Verification(format!(
            "the accumulated pairing check failed: at least one {kind} proof is invalid"
        )));
    }
    Ok(())
}

/// Checks a step proof from public data only: the digest, the scheduled
/// indices, the shape's consistency with the public parameters, the SRS, and
/// the proof itself.
pub fn verify_step(
    p: &StepProof,
    params: &ParamsKZG<Bn256>,
    vk: &VerifyingKey<G1Affine>,
) -> Result<()> {
    let bad = |m: String| Err(CircuitError::Verification(m));
    let (s, pp) = (&p.statement, &p.public);
    if s.digest != pp.digest() {
        return bad("the statement's parameter digest does not match its public parameters".into());
    }
    p.shape.check_public(pp, Some(1))?;
    if s.step as usize >= pp.num_steps {
        return bad(format!(
            "step {} is beyond the run's {} steps",
            s.step, pp.num_steps
        ));
    }
    let sched = Schedule::new(pp.seed, pp.num_records, pp.batch).map_err(CircuitError::from)?;
    if s.indices != sched.batch(s.step) {
        return bad(format!(
            "the batch indices are not the ones the schedule (seed {}) gives step {}",
            pp.seed, s.step
        ));
    }
    if p.srs_id != srs_id(params) {
        return bad(format!(
            "the proof was made with SRS {} but {} was given",
            p.srs_id,
            srs_id(params)
        ));
    }
    verify_snark(params, vk, &s.instances(), &p.proof)
}
