//! Audits: claims about the committed training data (against the dataset
//! root `R` of a certificate) and about the committed trained model (against
//! its final weight commitment `c_T`), proven in zero knowledge.
//!
//! # Scheme
//! An audit is split into *chunks* proven independently (in parallel, or by
//! the cluster's workers), each a small circuit ([`circuit`]):
//! - data audits cover the tree in aligned subtrees of `C = 2^c` leaves: a
//!   chunk proves the root of its subtree from the hidden records (padding
//!   positions forced to the empty leaf `0`), and the verifier hashes the
//!   chunk roots, with the empty subtrees' roots, up to `R` itself, so every
//!   record is covered exactly once;
//! - model audits cover a public test set in slices: each chunk opens the
//!   hidden weights against `c_T` and runs the engine's fixed-point forward
//!   pass on its records.
//!
//! Counts are never published per chunk: a chunk exposes a hiding commitment
//! `H(TAG_COUNT, salt, counts..)` and one *combine* proof opens all of them,
//! sums them and proves the claimed rule (at least / at most a threshold, or
//! a bounded gap between two groups), revealing the sums only on request.
//! The verifier rebuilds every proof's public inputs itself from the claim,
//! the public data in the audit file and the certificate, verifies the chunk
//! proofs together with one accumulated pairing (as a batched certificate
//! does for step proofs) and the combine proof, and checks that `R` (with
//! the record count) or `c_T` is the certificate's. The chunks are
//! independent tasks ([`tasks`]): proven one after the other locally, or in
//! parallel by the proving cluster's workers.
//!
//! A false claim has no satisfying witness: the combine circuit constrains
//! the rule, the exclusion circuit constrains every record's content hash to
//! differ from every blocklist entry, and so on (tests in `tests.rs`).

pub mod circuit;
mod prove;
#[cfg(test)]
mod statement_tests;
pub mod tasks;
#[cfg(test)]
mod tests;

pub use prove::{
    // planning, proving, verifying
    audit_key,
    audit_vk,
    check_claim,
    plan,
    prove_audit,
    verify_audit,
    AuditData,
    AuditProgress,
    Plan,
    SaltKey,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zkaudit_model::{Architecture, FixedParams};

use crate::field::to_hex;
use crate::{envelope, Fr, Result};

/// Version of the audit circuits' constraint systems (part of key names).
pub const AUDIT_CIRCUIT_VERSION: u32 = 3;
pub use crate::hash::{TAG_CONTENT, TAG_COUNT};
/// File magic of audit proofs.
pub const AUDIT_MAGIC: [u8; 8] = *b"ZKAAUDT\0";
/// Audit file format version.
pub const AUDIT_VERSION: u32 = 2;
/// Most ranges one composition predicate may list.
pub const MAX_RANGES: usize = 16;
/// Most blocklist entries.
pub const MAX_BLOCKLIST: usize = 4096;
/// Most public test records of a model audit.
pub const MAX_TEST_RECORDS: usize = 100_000;
/// Most attribute values of a counterfactual audit.
pub const MAX_VALUES: usize = 16;

/// The rule the combine proof enforces on the summed counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleKind {
    /// `S >= t`.
    AtLeast,
    /// `S <= t`.
    AtMost,
    /// `|S_a n_b - S_b n_a| den <= num n_a n_b`.
    Gap,
}

impl RuleKind {
    /// Public numbers of the rule (`t`, or `n_a, n_b, num, den`).
    pub fn num_params(&self) -> usize {
        match self {
            RuleKind::AtLeast | RuleKind::AtMost => 1,
            RuleKind::Gap => 4,
        }
    }
}

/// What one audit circuit computes; with the model and the sizes below it
/// fixes the circuit (and so its keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChunkKind {
    /// Commit to the number of a subtree's records whose `feature` lies in
    /// one of `ranges` public ranges.
    Composition {
        /// Feature index.
        feature: usize,
        /// Number of ranges.
        ranges: usize,
    },
    /// No record of a subtree has a content hash in a public list of `entries`.
    Exclusion {
        /// Blocklist length.
        entries: usize,
    },
    /// A public record is a leaf of the tree with root `R`.
    Inclusion,
    /// Commit to the number of correct predictions on public test records
    /// (split by a public group bit when `groups`).
    Accuracy {
        /// Whether counts are split in two groups (fairness).
        groups: bool,
    },
    /// Predictions do not change when `feature` takes each of `values` values.
    Counterfactual {
        /// Feature index.
        feature: usize,
        /// Number of alternative values.
        values: usize,
    },
    /// Open `chunks` count commitments of `groups` counts, sum, check `rule`.
    Combine {
        /// Chunks.
        chunks: usize,
        /// Counts per chunk.
        groups: usize,
        /// The rule.
        rule: RuleKind,
        /// Whether the sums are public.
        reveal: bool,
    },
}

impl ChunkKind {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            ChunkKind::Composition { .. } => "composition",
            ChunkKind::Exclusion { .. } => "exclusion",
            ChunkKind::Inclusion => "inclusion",
            ChunkKind::Accuracy { groups: false } => "accuracy",
            ChunkKind::Accuracy { groups: true } => "fairness",
            ChunkKind::Counterfactual { .. } => "counterfactual",
            ChunkKind::Combine { .. } => "combine",
        }
    }
}

/// Everything that determines one audit circuit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuditShape {
    /// What it computes.
    pub kind: ChunkKind,
    /// The model (inputs per record; layers for model audits).
    pub arch: Architecture,
    /// The fixed-point format.
    pub fx: FixedParams,
    /// Depth of the dataset tree.
    pub depth: usize,
    /// Records per chunk (a power of two for data chunks).
    pub records: usize,
    /// Circuit size `2^k`.
    pub k: u32,
    /// Range-lookup bits.
    pub lookup_bits: usize,
}

impl AuditShape {
    /// Public instances per test record of a model chunk.
    pub fn record_instances(&self) -> usize {
        let d = self.arch.input_dim();
        match self.kind {
            ChunkKind::Accuracy { groups } => d + 1 + usize::from(groups),
            _ => d,
        }
    }

    /// Number of public instances.
    pub fn num_instances(&self) -> usize {
        let d = self.arch.input_dim();
        match &self.kind {
            ChunkKind::Composition { ranges, .. } => 3 + 2 * ranges,
            ChunkKind::Exclusion { entries } => 2 + entries,
            ChunkKind::Inclusion => 3 + d,
            ChunkKind::Accuracy { .. } => 3 + self.records * self.record_instances(),
            ChunkKind::Counterfactual { values, .. } => 2 + values + self.records * d,
            ChunkKind::Combine {
                chunks,
                groups,
                rule,
                reveal,
            } => chunks + rule.num_params() + if *reveal { *groups } else { 0 },
        }
    }

    /// A stable identifier (for key caches).
    pub fn id(&self) -> String {
        let bytes = bincode::serialize(self).unwrap_or_default();
        hex::encode(&Sha256::digest(bytes)[..16])
    }
}

/// A numeric threshold on a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bound {
    /// At least this many.
    AtLeast(u64),
    /// At most this many.
    AtMost(u64),
}

/// Inclusive ranges of one feature, in fixed point (as committed), with
/// the raw-unit ranges they were derived from (for the words).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureRanges {
    /// Feature index (0-based column of the features).
    pub feature: usize,
    /// Its name as the owner called it (informational).
    pub name: String,
    /// Inclusive fixed-point ranges.
    pub fixed: Vec<(i64, i64)>,
    /// The raw ranges (before scaling), for the words.
    pub raw: Vec<(f64, f64)>,
}

impl FeatureRanges {
    /// Whether a fixed-point value lies in one of the ranges.
    pub fn contains(&self, v: i64) -> bool {
        self.fixed.iter().any(|&(lo, hi)| lo <= v && v <= hi)
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .raw
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    format!("= {lo}")
                } else {
                    format!("in [{lo}, {hi}]")
                }
            })
            .collect();
        format!(
            "feature {} ({}) {} (fixed point {:?})",
            self.feature,
            self.name,
            parts.join(" or "),
            self.fixed
        )
    }
}

/// Public records: fixed-point features and labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicRecords {
    /// Features at scale `2^f`.
    pub features: Vec<Vec<i64>>,
    /// Labels.
    pub labels: Vec<i64>,
}

impl PublicRecords {
    /// SHA-256 of the bincode encoding (to compare with one's own copy).
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(bincode::serialize(self).unwrap_or_default()))
    }
}

/// The audited claim, with the public data it is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Claim {
    /// The number of training records in `ranges` satisfies `bound`.
    Composition {
        /// The predicate.
        ranges: FeatureRanges,
        /// The threshold.
        bound: Bound,
        /// Whether the count is revealed.
        reveal: bool,
    },
    /// No training record's features hash to a blocklist entry (`content_hash`).
    Exclusion {
        /// Content hashes `H(TAG_CONTENT, pack(x))`.
        blocklist: Vec<Fr>,
    },
    /// This public record is in the training set.
    Inclusion {
        /// Its fixed-point features.
        features: Vec<i64>,
        /// Its label.
        label: i64,
    },
    /// Correct predictions of the model on the test set satisfy `bound`.
    Accuracy {
        /// The public test set.
        test: PublicRecords,
        /// The threshold on correct predictions.
        bound: Bound,
        /// Whether the count is revealed.
        reveal: bool,
    },
    /// Accuracy of group A (records in `group`) and group B (the others)
    /// differ by at most `max_gap_num / max_gap_den`.
    Fairness {
        /// The public test set.
        test: PublicRecords,
        /// Membership of group A.
        group: FeatureRanges,
        /// Numerator of the largest allowed gap.
        max_gap_num: u64,
        /// Denominator of the largest allowed gap.
        max_gap_den: u64,
    },
    /// The prediction of each input does not change when `feature` takes each of `values`.
    Counterfactual {
        /// Public inputs (labels unused).
        inputs: PublicRecords,
        /// The attribute.
        feature: usize,
        /// Its name (informational).
        name: String,
        /// Alternative fixed-point values.
        values: Vec<i64>,
        /// The raw values, for the words.
        raw: Vec<f64>,
    },
}

impl Claim {
    /// Whether the claim is about the data (bound to `R`) rather than the model (`c_T`).
    pub fn is_data(&self) -> bool {
        matches!(
            self,
            Claim::Composition { .. } | Claim::Exclusion { .. } | Claim::Inclusion { .. }
        )
    }

    /// A short name.
    pub fn name(&self) -> &'static str {
        match self {
            Claim::Composition { .. } => "composition",
            Claim::Exclusion { .. } => "exclusion",
            Claim::Inclusion { .. } => "inclusion",
            Claim::Accuracy { .. } => "accuracy",
            Claim::Fairness { .. } => "fairness",
            Claim::Counterfactual { .. } => "counterfactual",
        }
    }
}

/// What the audit is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Dataset root `R`.
    pub root: Fr,
    /// Training records.
    pub num_records: u64,
    /// Final weight commitment `c_T` (the model audited).
    pub c_t: Fr,
}

/// One chunk's proof with the values the verifier cannot recompute.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChunkProof {
    /// Subtree root (data chunks).
    pub root: Option<Fr>,
    /// Count commitment (counting chunks).
    pub cc: Option<Fr>,
    /// The SHPLONK proof.
    pub proof: Vec<u8>,
}

/// A proven audit: the claim, its public data, and the proofs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditProof {
    /// The claim.
    pub claim: Claim,
    /// The commitments it is about.
    pub binding: Binding,
    /// Shape of the chunk circuits.
    pub chunk_shape: AuditShape,
    /// The chunk proofs in order.
    pub chunks: Vec<ChunkProof>,
    /// Shape of the combine circuit and its proof (counting audits).
    pub combine: Option<(AuditShape, Vec<u8>)>,
    /// The sums, when the claim reveals them.
    pub revealed: Vec<u64>,
    /// SRS id the proofs were made with.
    pub srs_id: String,
}

impl AuditProof {
    /// Serializes with magic and version.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        envelope::encode(&AUDIT_MAGIC, AUDIT_VERSION, self)
    }

    /// Parses [`AuditProof::to_bytes`] output; `path` names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &std::path::Path) -> Result<Self> {
        envelope::decode(bytes, &AUDIT_MAGIC, AUDIT_VERSION, "audit proof", path)
    }

    /// Writes atomically.
    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        envelope::write(path, &AUDIT_MAGIC, AUDIT_VERSION, self)
    }

    /// Reads a file.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        envelope::read(path, &AUDIT_MAGIC, AUDIT_VERSION, "audit proof")
    }

    /// The audited claim in words.
    pub fn describe(&self) -> String {
        describe_claim(&self.claim, &self.binding, &self.revealed)
    }
}

/// A claim about the commitments `b` in words (`revealed`: published sums).
pub fn describe_claim(claim: &Claim, b: &Binding, revealed: &[u64]) -> String {
    let n = b.num_records;
    let count = |bound: &Bound, total: u64, what: &str| match bound {
        Bound::AtLeast(t) => format!(
            "at least {t} of the {total} {what} ({:.2}%)",
            100.0 * *t as f64 / total.max(1) as f64
        ),
        Bound::AtMost(t) => format!(
            "at most {t} of the {total} {what} ({:.2}%)",
            100.0 * *t as f64 / total.max(1) as f64
        ),
    };
    let revealed_words = |r: &[u64]| match r {
        [] => String::new(),
        [c, ..] => format!("; revealed count: {c}"),
    };
    match claim {
            Claim::Composition {
                ranges,
                bound,
                ..
            } => format!(
                "{} of the training set with root {} have {}{}",
                count(bound, n, "records"),
                to_hex(&b.root),
                ranges.describe(),
                revealed_words(revealed)
            ),
            Claim::Exclusion { blocklist } => format!(
                "none of the {n} records of the training set with root {} has features equal to an item of the {}-entry blocklist (content hashes, SHA-256 of the list {})",
                to_hex(&b.root),
                blocklist.len(),
                blocklist_sha(blocklist)
            ),
            Claim::Inclusion { features, label } => format!(
                "the public record with label {label} and features {:?} (fixed point) is one of the {n} records of the training set with root {}",
                features,
                to_hex(&b.root)
            ),
            Claim::Accuracy { test, bound, .. } => format!(
                "the model with commitment {} predicts {} correctly (public test set, SHA-256 {}){}",
                to_hex(&b.c_t),
                count(bound, test.labels.len() as u64, "test records"),
                test.sha256(),
                revealed_words(revealed)
            ),
            Claim::Fairness {
                test,
                group,
                max_gap_num,
                max_gap_den,
            } => {
                let (na, nb) = prove::groups(claim).map(|(_, n)| n).unwrap_or((0, 0));
                format!(
                    "on the public test set (SHA-256 {}, {} records), the accuracy of the model with commitment {} on the {na} records with {} and on the {nb} other records differ by at most {max_gap_num}/{max_gap_den} ({:.2} percentage points)",
                    test.sha256(),
                    test.labels.len(),
                    to_hex(&b.c_t),
                    group.describe(),
                    100.0 * *max_gap_num as f64 / (*max_gap_den).max(1) as f64
                )
            }
            Claim::Counterfactual {
                inputs,
                feature,
                name,
                raw,
                ..
            } => format!(
                "for each of the {} public inputs (SHA-256 {}), the model with commitment {} predicts the same class when feature {feature} ({name}) is set to each of {:?}",
                inputs.labels.len(),
                inputs.sha256(),
                to_hex(&b.c_t),
                raw
            ),
        }
}

/// SHA-256 over the blocklist's field elements.
pub fn blocklist_sha(list: &[Fr]) -> String {
    let mut h = Sha256::new();
    for e in list {
        h.update(to_hex(e).as_bytes());
    }
    hex::encode(h.finalize())
}

/// The committed fixed-point value of raw value `v` of `feature`: the run's
/// scaling, then rounding to the grid (`None` outside the range).
pub fn raw_to_fixed(
    scaling: &zkaudit_model::data::Scaling,
    fx: &FixedParams,
    feature: usize,
    v: f64,
) -> Option<i64> {
    let o = scaling.offset.get(feature)?;
    let f = scaling.factor.get(feature)?;
    fx.quantize((v - o) * f)
}

/// Checks that the fixed-point values of a claim are its raw values under
/// the run's published scaling, so the words in raw units are what was proven.
pub fn check_raw(
    claim: &Claim,
    scaling: &zkaudit_model::data::Scaling,
    fx: &FixedParams,
) -> Result<()> {
    let mismatch = |what: &str| {
        Err(crate::CircuitError::Verification(format!(
            "the {what} in fixed point are not the raw values under the run's scaling"
        )))
    };
    let ranges_ok = |r: &FeatureRanges| {
        r.raw.len() == r.fixed.len()
            && r.raw.iter().zip(&r.fixed).all(|(&(lo, hi), &(flo, fhi))| {
                raw_to_fixed(scaling, fx, r.feature, lo) == Some(flo)
                    && raw_to_fixed(scaling, fx, r.feature, hi) == Some(fhi)
            })
    };
    match claim {
        Claim::Composition { ranges, .. } if !ranges_ok(ranges) => mismatch("ranges"),
        Claim::Fairness { group, .. } if !ranges_ok(group) => mismatch("group ranges"),
        Claim::Counterfactual {
            feature,
            values,
            raw,
            ..
        } if raw.len() != values.len()
            || raw
                .iter()
                .zip(values)
                .any(|(&r, &v)| raw_to_fixed(scaling, fx, *feature, r) != Some(v)) =>
        {
            mismatch("attribute values")
        }
        _ => Ok(()),
    }
}
