//! Training certificates: one file that proves a whole run (or its first `N`
//! steps) and the checks `zkaudit verify` makes.
//!
//! # Batched mode
//! The certificate holds every step proof with its statement. Verification
//! runs the SHPLONK verifier of each proof up to its KZG accumulator, folds
//! all accumulators into one random linear combination (fresh randomness per
//! fold), and checks a single pairing; then it checks natively that the steps
//! chain: step indices `t_first, t_first + 1, ...` without gap or repetition,
//! each after-commitment equals the next before-commitment, one dataset root
//! and one parameter digest throughout, which must be the digest of the
//! certificate's public parameters, and every batch's indices are the ones
//! the seed's schedule gives. When the initial weights are public (seeded),
//! the certificate reveals `salt_0` and the verifier recomputes `c_0`.
//!
//! # Succinct mode
//! The certificate holds one proof: the root of the aggregation tree of
//! [`crate::aggregate`], whose instances are a KZG accumulator and the run's
//! summary. Verification recomputes the summary from the statement and the
//! seed's schedule (the schedule hash along the tree), derives the root's
//! verifying key from the step circuit's shape (each aggregation level's key
//! embeds its children's, so nothing of the prover's is trusted), verifies
//! the proof, and checks the pairing on the accumulator it carries. The same
//! statement checks as in batched mode apply.
//!
//! # File format
//! `"ZKACERT\0"`, version u32 LE, then bincode of [`Certificate`].

use std::path::Path;

use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, G1Affine};
use halo2_base::halo2_proofs::plonk::VerifyingKey;
use halo2_base::halo2_proofs::poly::commitment::Params;
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use serde::{Deserialize, Serialize};
use zkaudit_model::schedule::Schedule;
use zkaudit_model::Weights;

use crate::aggregate::{check_accumulator, expected_schedule, NodeKind, Summary, ACC_LEN};
use crate::envelope;
use crate::field::to_hex;
use crate::hash::commit_weights_native;
use crate::prover::{verify_snark, verify_snarks_accumulated};
use crate::shape::{PublicParams, StepShape};
use crate::srs::srs_id;
use crate::step::StepStatement;
use crate::{CircuitError, Fr, Result};

/// File magic of certificates.
pub const CERT_MAGIC: [u8; 8] = *b"ZKACERT\0";
/// Certificate format version.
pub const CERT_VERSION: u32 = 6;

/// How the steps are proven in the certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Every step proof, checked with one accumulated pairing.
    Batched,
    /// One aggregation proof for the whole range of steps.
    Succinct,
}

/// The root proof of a succinct certificate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootProof {
    /// Step proof (a one-step run) or aggregation proof.
    pub kind: NodeKind,
    /// Size `2^k` of the aggregation circuits.
    pub agg_k: u32,
    /// Its instances: accumulator limbs then the summary (aggregation), or the step's.
    pub instances: Vec<Fr>,
    /// The SHPLONK proof.
    pub proof: Vec<u8>,
}

/// The claim a certificate makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStatement {
    /// Commitment to the weights before the first proven step.
    pub c_first: Fr,
    /// Commitment to the weights after the last proven step.
    pub c_last: Fr,
    /// Dataset root.
    pub root: Fr,
    /// First proven step.
    pub t_first: u64,
    /// Last proven step.
    pub t_last: u64,
    /// Digest of the public parameters.
    pub digest: Fr,
}

/// One step of a batched certificate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepEntry {
    /// Its statement.
    pub statement: StepStatement,
    /// Its proof.
    pub proof: Vec<u8>,
}

/// A training certificate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Certificate {
    /// Proof mode.
    pub mode: Mode,
    /// Public parameters of the run.
    pub public: PublicParams,
    /// Step-circuit shape (selects the verifying key).
    pub shape: StepShape,
    /// SRS the proofs were made with.
    pub srs_id: String,
    /// The claim.
    pub statement: RunStatement,
    /// For seeded (public) initial weights: the salt of `c_0`, so verifiers recompute it.
    pub initial_salt: Option<u128>,
    /// The step proofs (batched mode), in step order.
    pub steps: Vec<StepEntry>,
    /// The root of the aggregation tree (succinct mode).
    pub root: Option<RootProof>,
}

impl Certificate {
    /// Assembles a batched certificate from consecutive step proofs.
    pub fn batched(
        public: PublicParams,
        shape: StepShape,
        srs_id: String,
        initial_salt: Option<u128>,
        steps: Vec<StepEntry>,
    ) -> Result<Self> {
        let (first, last) = match (steps.first(), steps.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => {
                return Err(CircuitError::Shape(
                    "a certificate needs at least one step".into(),
                ))
            }
        };
        let statement = RunStatement {
            c_first: first.statement.c_before,
            c_last: last.statement.c_after,
            root: first.statement.root,
            t_first: first.statement.step,
            t_last: last.statement.step,
            digest: first.statement.digest,
        };
        Ok(Certificate {
            mode: Mode::Batched,
            public,
            shape,
            srs_id,
            statement,
            initial_salt,
            steps,
            root: None,
        })
    }

    /// Turns a batched certificate into a succinct one with the tree's root proof.
    pub fn into_succinct(mut self, root: RootProof) -> Self {
        self.mode = Mode::Succinct;
        self.steps.clear();
        self.root = Some(root);
        self
    }

    /// Number of proofs in the certificate.
    pub fn num_proofs(&self) -> usize {
        self.steps.len() + self.root.is_some() as usize
    }

    /// Serializes with magic and version.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        envelope::encode(&CERT_MAGIC, CERT_VERSION, self)
    }

    /// Parses [`Certificate::to_bytes`] output; `path` names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        envelope::decode(
            bytes,
            &CERT_MAGIC,
            CERT_VERSION,
            "training certificate",
            path,
        )
    }

    /// Writes atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        envelope::write(path, &CERT_MAGIC, CERT_VERSION, self)
    }

    /// Reads a certificate file.
    pub fn read(path: &Path) -> Result<Self> {
        envelope::read(path, &CERT_MAGIC, CERT_VERSION, "training certificate")
    }

    /// The claim in words.
    pub fn describe(&self) -> String {
        let s = &self.statement;
        let p = &self.public;
        format!(
            "model with commitment {} was trained from {} by {} SGD steps (steps {}..={} of {}) on dataset {} ({} records) with parameters: model {}, {} fractional bits, {}-bit values, lr {}/2^{}, batch {}, schedule seed {} (digest {})",
            to_hex(&s.c_last),
            to_hex(&s.c_first),
            s.t_last - s.t_first + 1,
            s.t_first,
            s.t_last,
            p.num_steps,
            to_hex(&s.root),
            p.num_records,
            p.arch.describe(),
            p.fx.frac_bits,
            p.fx.value_bits,
            p.lr_fx,
            p.fx.frac_bits,
            p.batch,
            p.seed,
            to_hex(&s.digest)
        )
    }
}

/// Checks what both modes share: the statement against the public
/// parameters, the circuit shape, the SRS and the seeded `c_0`.
pub fn check_statement(cert: &Certificate, params: &ParamsKZG<Bn256>) -> Result<()> {
    let fail = |m: String| Err(CircuitError::Verification(m));
    let (p, s) = (&cert.public, &cert.statement);
    if s.digest != p.digest() {
        return fail(
            "the certificate's parameter digest does not match its public parameters".into(),
        );
    }
    let span = match cert.mode {
        Mode::Batched => Some(1),
        Mode::Succinct => None,
    };
    cert.shape.check_public(p, span)?;
    if cert.srs_id != srs_id(params) {
        return fail(format!(
            "the certificate was made with SRS {} but {} was given",
            cert.srs_id,
            srs_id(params)
        ));
    }
    if s.t_last < s.t_first || s.t_last as usize >= p.num_steps {
        return fail(format!(
            "steps {}..={} are not within the run's {} steps",
            s.t_first, s.t_last, p.num_steps
        ));
    }
    if let Some(salt) = cert.initial_salt {
        if s.t_first != 0 {
            return fail(
                "an initial salt is only meaningful for a certificate starting at step 0".into(),
            );
        }
        let w0 = Weights::seeded(&p.arch, &p.fx, p.seed);
        if commit_weights_native(salt, &w0.flatten(), p.fx.value_bits) != s.c_first {
            return fail("c_0 is not the commitment to the seeded initial weights".into());
        }
    }
    Ok(())
}

/// Verifies a batched certificate completely (`vk`: the step circuit's key);
/// see the module docs for what is checked.
pub fn verify_certificate(
    cert: &Certificate,
    params: &ParamsKZG<Bn256>,
    vk: &VerifyingKey<G1Affine>,
) -> Result<()> {
    let fail = |m: String| Err(CircuitError::Verification(m));
    if cert.mode != Mode::Batched || cert.root.is_some() || cert.shape.span != 1 {
        return fail("not a batched certificate".into());
    }
    check_statement(cert, params)?;
    let (p, s) = (&cert.public, &cert.statement);
    let steps = &cert.steps;
    if steps.len() as u64 != s.t_last - s.t_first + 1 {
        return fail(format!(
            "{} step proofs for steps {}..={}",
            steps.len(),
            s.t_first,
            s.t_last
        ));
    }
    let sched = Schedule::new(p.seed, p.num_records, p.batch).map_err(CircuitError::from)?;
    for (i, e) in steps.iter().enumerate() {
        let st = &e.statement;
        let t = s.t_first + i as u64;
        if st.step != t {
            return fail(format!("proof {i} is for step {} but step {t} comes next (out of order, gap or repetition)", st.step));
        }
        if st.root != s.root || st.digest != s.digest {
            return fail(format!(
                "step {t} uses another dataset root or parameter digest"
            ));
        }
        if i == 0 && st.c_before != s.c_first {
            return fail("the first step does not start from c_first".into());
        }
        if i + 1 == steps.len() && st.c_after != s.c_last {
            return fail("the last step does not end at c_last".into());
        }
        if i > 0 && steps[i - 1].statement.c_after != st.c_before {
            return fail(format!(
                "step {t} does not start from the weights step {} ended with",
                t - 1
            ));
        }
        if st.indices != sched.batch(t) {
            return fail(format!("step {t} used records other than the schedule's"));
        }
    }
    // One accumulated pairing for all proofs.
    let proofs: Vec<(Vec<Fr>, &[u8])> = steps
        .iter()
        .map(|e| (e.statement.instances(), e.proof.as_slice()))
        .collect();
    verify_snarks_accumulated(
        params,
        vk,
        &proofs,
        &|i| format!("step {}", steps[i].statement.step),
        "step",
    )
}

/// Verifies a succinct certificate completely: `step_params` is the SRS at
/// the step circuit's size, `agg_params` at the aggregation size, and
/// `root_vk` the root key the verifier derived itself
/// ([`crate::aggregate::root_vk`]). See the module docs.
pub fn verify_succinct(
    cert: &Certificate,
    step_params: &ParamsKZG<Bn256>,
    agg_params: &ParamsKZG<Bn256>,
    root_kind: NodeKind,
    root_vk: &VerifyingKey<G1Affine>,
) -> Result<()> {
    let fail = |m: String| Err(CircuitError::Verification(m));
    let root = match (&cert.mode, &cert.root) {
        (Mode::Succinct, Some(r)) if cert.steps.is_empty() => r,
        _ => return fail("not a succinct certificate".into()),
    };
    check_statement(cert, step_params)?;
    let (p, s) = (&cert.public, &cert.statement);
    if root.kind != root_kind {
        return fail(format!(
            "a tree over {} steps has a {root_kind:?} root, the certificate holds a {:?} proof",
            s.t_last - s.t_first + 1,
            root.kind
        ));
    }
    let sched = Schedule::new(p.seed, p.num_records, p.batch).map_err(CircuitError::from)?;
    let batches = (s.t_first..=s.t_last).map(|t| sched.batch(t));
    let expected = match root_kind {
        NodeKind::Aggregate => {
            let mut v = root.instances.get(..ACC_LEN).unwrap_or_default().to_vec();
            v.extend(
                Summary {
                    c_first: s.c_first,
                    c_last: s.c_last,
                    root: s.root,
                    t_first: s.t_first,
                    t_last: s.t_last,
                    digest: s.digest,
                    schedule: expected_schedule(s.t_first, batches, cert.shape.span)?,
                }
                .to_instances(),
            );
            v
        }
        NodeKind::Steps(_) => vec![
            s.c_first,
            s.c_last,
            s.root,
            Fr::from(s.t_first),
            s.digest,
            expected_schedule(s.t_first, batches, cert.shape.span)?,
        ],
    };
    if root.instances != expected {
        return fail(
            "the root proof's public inputs are not the certificate's statement and the seed's schedule"
                .into(),
        );
    }
    match root_kind {
        NodeKind::Aggregate => {
            if agg_params.s_g2() != step_params.s_g2() || agg_params.k() != root.agg_k {
                return fail(format!(
                    "the aggregation SRS is not the certificate's SRS at k = {}",
                    root.agg_k
                ));
            }
            verify_snark(agg_params, root_vk, &root.instances, &root.proof)?;
            check_accumulator(agg_params, &root.instances)
        }
        NodeKind::Steps(_) => verify_snark(step_params, root_vk, &root.instances, &root.proof),
    }
}
