//! zkaudit's halo2 circuits (halo2-axiom through halo2-base, KZG on BN254,
//! SHPLONK): the commitments (salted Poseidon over packed fixed-point lanes,
//! the dataset Merkle tree), the fixed-point chip that enforces the model
//! crate's arithmetic, and the SGD-step circuit with its keys, SRS handling,
//! proving and verification.
//!
//! Module map:
//! - [`field`]: signed fixed-point integers as BN254 scalars;
//! - [`poseidon`]: the dedicated Poseidon permutation region;
//! - [`hash`]: Poseidon commitments and the Merkle tree, native values computed
//!   by running the very same gadgets in witness-only mode;
//! - [`fixed_chip`]: range-checked values, rounding division, ReLU, softmax exp lookups;
//! - [`freivalds`]: matrix products checked against a second-phase challenge;
//! - [`step`]: the SGD-step circuit;
//! - [`shape`]: circuit shape derived from the model and batch;
//! - [`srs`], [`keys`], [`prover`]: SRS files, cached proving keys, prove and verify;
//! - [`aggregate`]: the recursive aggregation tree with in-circuit chaining;
//! - [`certificate`], [`pipeline`]: training certificates and the local pipeline;
//! - [`tasks`]: the proving cluster's units of work and their checks;
//! - [`audit`]: audits of the committed data and model (chunked circuits).

pub mod aggregate;
#[cfg(test)]
mod aggregation_bench;
#[cfg(test)]
mod aggregation_tests;
pub mod audit;
pub mod certificate;
#[cfg(test)]
mod certificate_tests;
pub mod envelope;
pub mod error;
pub mod field;
pub mod fixed_chip;
pub mod freivalds;
pub mod hash;
pub mod keys;
pub mod pipeline;
pub mod poseidon;
pub mod prover;
#[cfg(test)]
pub(crate) mod prover_tests;
pub mod shape;
pub mod srs;
pub mod step;
pub mod tasks;
pub mod values;

pub use error::{CircuitError, Result};

/// What a worker and a coordinator must share to work together: the release
/// and every circuit version (keys, proofs and certificates differ otherwise).
pub fn compatibility() -> String {
    format!(
        "{}/step-v{}/agg-v{}/audit-v{}",
        env!("CARGO_PKG_VERSION"),
        step::CIRCUIT_VERSION,
        aggregate::AGG_VERSION,
        audit::AUDIT_CIRCUIT_VERSION
    )
}

/// halo2-base's circuit builder stages (keygen, mock, prover), re-exported.
pub mod halo2_base_stage {
    pub use halo2_base::gates::circuit::CircuitBuilderStage;
}

/// The pairing engine of KZG.
pub use halo2_base::halo2_proofs::halo2curves::bn256::Bn256;
/// The BN254 scalar field.
pub use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
/// KZG parameters (the SRS).
pub use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
/// A verifying key over BN254.
pub type Vk = halo2_base::halo2_proofs::plonk::VerifyingKey<
    halo2_base::halo2_proofs::halo2curves::bn256::G1Affine,
>;
