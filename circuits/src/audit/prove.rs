//! Planning, proving and verifying audits (see the module docs of
//! [`crate::audit`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use halo2_base::gates::circuit::CircuitBuilderStage;
use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, G1Affine};
use halo2_base::halo2_proofs::plonk::VerifyingKey;
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use snark_verifier_sdk::halo2::gen_snark_shplonk;
use zkaudit_model::transcript::Transcript;
use zkaudit_model::{Architecture, Engine, FixedParams, Weights};

use super::circuit::{self, count_commitment, AuditWitness};
use super::{
    AuditProof, AuditShape, Binding, Bound, ChunkKind, ChunkProof, Claim, RuleKind,
    AUDIT_CIRCUIT_VERSION, MAX_BLOCKLIST, MAX_RANGES, MAX_TEST_RECORDS, MAX_VALUES,
};
use crate::field::fe;
use crate::hash::{node_native, MerkleTree};
use crate::keys::{cached_key, cached_vk, StepKey, VkPins};
use crate::prover::{verify_snark, verify_snarks_accumulated};
use crate::shape::StepShape;
use crate::srs::srs_id;
use crate::{CircuitError, Fr, Result};

/// The private side of an audit: the run's transcript and which weights are audited.
pub struct AuditData<'a> {
    /// The transcript (training set, weights, salts).
    pub transcript: &'a Transcript,
    /// Index of the audited weights in `transcript.weights` (`t_last + 1` of the certificate).
    pub model_index: usize,
}

/// Progress of [`prove_audit`].
#[derive(Clone, Copy, Debug)]
pub enum AuditProgress {
    /// Proving starts: this many proofs (chunks plus combine).
    Started(usize),
    /// A key is being loaded or generated.
    Key(&'static str),
    /// One more proof is done.
    Proved(usize),
}

/// The circuits of an audit: the chunk shape, the number of chunks, the combine shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Chunk circuit.
    pub chunk: AuditShape,
    /// Number of chunks.
    pub chunks: usize,
    /// Combine circuit (counting audits).
    pub combine: Option<AuditShape>,
}

fn bad<T>(m: String) -> Result<T> {
    Err(CircuitError::Verification(m))
}

/// Number of records the claim ranges over (training records or public records).
pub(super) fn population(claim: &Claim, b: &Binding) -> usize {
    match claim {
        Claim::Composition { .. } | Claim::Exclusion { .. } => b.num_records as usize,
        Claim::Inclusion { .. } => 1,
        Claim::Accuracy { test, .. } | Claim::Fairness { test, .. } => test.labels.len(),
        Claim::Counterfactual { inputs, .. } => inputs.labels.len(),
    }
}

/// Checks the claim's public data against the model format and the bounds.
pub(super) fn check_public(claim: &Claim, arch: &Architecture, fx: &FixedParams) -> Result<()> {
    let d = arch.input_dim();
    let in_fx = |v: i64| fx.in_range(v as i128);
    let check_ranges = |r: &super::FeatureRanges| -> Result<()> {
        if r.feature >= d {
            return bad(format!(
                "feature {} does not exist: records have {d} features (0..{})",
                r.feature,
                d - 1
            ));
        }
        if r.fixed.is_empty() || r.fixed.len() > super::MAX_RANGES {
            return bad(format!(
                "a predicate needs 1..={MAX_RANGES} ranges, got {}",
                r.fixed.len()
            ));
        }
        if r.fixed
            .iter()
            .any(|&(lo, hi)| lo > hi || !in_fx(lo) || !in_fx(hi))
        {
            return bad(format!("invalid fixed-point range in {:?}", r.fixed));
        }
        Ok(())
    };
    let check_records = |p: &super::PublicRecords, labels: bool| -> Result<()> {
        if p.labels.is_empty() || p.labels.len() > MAX_TEST_RECORDS {
            return bad(format!(
                "public records: 1..={MAX_TEST_RECORDS} needed, got {}",
                p.labels.len()
            ));
        }
        if p.features.len() != p.labels.len() {
            return bad("public records: features and labels differ in number".into());
        }
        for (i, x) in p.features.iter().enumerate() {
            if x.len() != d || x.iter().any(|&v| !in_fx(v)) {
                return bad(format!(
                    "public record {i}: needs {d} features within the fixed-point range"
                ));
            }
        }
        if labels {
            if arch.is_regression() {
                return bad(format!(
                    "accuracy and fairness audits count correct classes, but model {} is a regression (mean squared error)",
                    arch.describe()
                ));
            }
            if let Some(i) = p
                .labels
                .iter()
                .position(|&y| y < 0 || y as usize >= arch.num_classes())
            {
                return bad(format!(
                    "public record {i}: label {} is not a class of the model (0..{})",
                    p.labels[i],
                    arch.num_classes()
                ));
            }
        }
        Ok(())
    };
    match claim {
        Claim::Composition { ranges, .. } => check_ranges(ranges),
        Claim::Exclusion { blocklist } => {
            if blocklist.is_empty() || blocklist.len() > MAX_BLOCKLIST {
                return bad(format!(
                    "the blocklist needs 1..={MAX_BLOCKLIST} entries, got {}",
                    blocklist.len()
                ));
            }
            Ok(())
        }
        Claim::Inclusion { features, .. } => {
            if features.len() != d || features.iter().any(|&v| !in_fx(v)) {
                return bad(format!(
                    "the record needs {d} features within the fixed-point range"
                ));
            }
            Ok(())
        }
        Claim::Accuracy { test, .. } => check_records(test, true),
        Claim::Fairness {
            test,
            group,
            max_gap_den,
            max_gap_num,
        } => {
            check_records(test, true)?;
            check_ranges(group)?;
            // With an empty group both sides of the gap inequality are 0 and
            // any model would pass: each group needs at least one record.
            if let Some((_, (na, nb))) = groups(claim) {
                if na == 0 || nb == 0 {
                    return bad(format!(
                        "the fairness groups need at least one test record each, but {na} records have {} and {nb} do not",
                        group.describe()
                    ));
                }
            }
            if *max_gap_den == 0 || *max_gap_den >= 1 << 32 || *max_gap_num > *max_gap_den {
                return bad(format!(
                    "the gap {max_gap_num}/{max_gap_den} must be a fraction in [0, 1] with a denominator below 2^32"
                ));
            }
            Ok(())
        }
        Claim::Counterfactual {
            inputs,
            feature,
            values,
            ..
        } => {
            check_records(inputs, false)?;
            if arch.is_regression() {
                return bad(format!(
                    "a counterfactual audit compares predicted classes, but model {} is a regression (mean squared error)",
                    arch.describe()
                ));
            }
            if *feature >= d {
                return bad(format!(
                    "feature {feature} does not exist: records have {d} features"
                ));
            }
            if values.is_empty() || values.len() > MAX_VALUES || values.iter().any(|&v| !in_fx(v)) {
                return bad(format!(
                    "1..={MAX_VALUES} attribute values within the fixed-point range are needed"
                ));
            }
            Ok(())
        }
    }
}

/// The circuits of a claim with `records` per chunk (rounded to what the
/// claim allows) and the given circuit sizes.
pub(super) fn shapes(
    claim: &Claim,
    b: &Binding,
    arch: &Architecture,
    fx: &FixedParams,
    records: usize,
    k: u32,
    combine_k: u32,
) -> Result<Plan> {
    let depth = MerkleTree::depth_for(b.num_records as usize);
    let n = population(claim, b);
    let records = match claim {
        Claim::Inclusion { .. } => 1,
        Claim::Composition { .. } | Claim::Exclusion { .. } => {
            records.clamp(2, 1 << depth).next_power_of_two()
        }
        _ => records.clamp(1, n.max(1)),
    };
    let chunks = n.div_ceil(records);
    let (kind, combine) = match claim {
        Claim::Composition {
            ranges,
            bound,
            reveal,
        } => (
            ChunkKind::Composition {
                feature: ranges.feature,
                ranges: ranges.fixed.len(),
            },
            Some((1, rule_of(bound), *reveal)),
        ),
        Claim::Exclusion { blocklist } => (
            ChunkKind::Exclusion {
                entries: blocklist.len(),
            },
            None,
        ),
        Claim::Inclusion { .. } => (ChunkKind::Inclusion, None),
        Claim::Accuracy { bound, reveal, .. } => (
            ChunkKind::Accuracy { groups: false },
            Some((1, rule_of(bound), *reveal)),
        ),
        Claim::Fairness { .. } => (
            ChunkKind::Accuracy { groups: true },
            Some((2, RuleKind::Gap, false)),
        ),
        Claim::Counterfactual {
            feature, values, ..
        } => (
            ChunkKind::Counterfactual {
                feature: *feature,
                values: values.len(),
            },
            None,
        ),
    };
    let shape = |kind, records, k: u32| AuditShape {
        kind,
        arch: arch.clone(),
        fx: *fx,
        depth,
        records,
        k,
        lookup_bits: (k - 1) as usize,
    };
    Ok(Plan {
        chunk: shape(kind, records, k),
        chunks,
        combine: combine.map(|(groups, rule, reveal)| {
            shape(
                ChunkKind::Combine {
                    chunks,
                    groups,
                    rule,
                    reveal,
                },
                1,
                combine_k,
            )
        }),
    })
}

fn rule_of(b: &Bound) -> RuleKind {
    match b {
        Bound::AtLeast(_) => RuleKind::AtLeast,
        Bound::AtMost(_) => RuleKind::AtMost,
    }
}

/// The smallest workable `k` for a shape: from its cell and permutation
/// counts, and large enough for its public inputs and range table.
fn auto_k(shape: &AuditShape) -> Result<u32> {
    let probe = AuditShape {
        k: 20,
        lookup_bits: 19,
        ..shape.clone()
    };
    let (p, w) = circuit::dummy(&probe);
    let c = circuit::build(&probe, &p, &w, CircuitBuilderStage::Keygen, None, None)?;
    let mut k = StepShape::auto_k(&c.size()).max(12);
    while (1usize << k) < shape.num_instances() + 64 {
        k += 1;
    }
    Ok(k)
}

/// Chooses the circuits of an audit: `records` per chunk (data audits: a
/// power of two, at most the tree), `k` automatic.
pub fn plan(
    claim: &Claim,
    b: &Binding,
    arch: &Architecture,
    fx: &FixedParams,
    records: usize,
) -> Result<Plan> {
    check_public(claim, arch, fx)?;
    let draft = shapes(claim, b, arch, fx, records, 12, 12)?;
    let k = auto_k(&draft.chunk)?;
    let combine_k = match &draft.combine {
        Some(c) => auto_k(c)?,
        None => 12,
    };
    shapes(claim, b, arch, fx, records, k, combine_k)
}

/// The public numbers of the combine rule.
fn rule_params(claim: &Claim, fx_group: Option<(u64, u64)>) -> Vec<Fr> {
    match claim {
        Claim::Composition { bound, .. } | Claim::Accuracy { bound, .. } => match bound {
            Bound::AtLeast(t) | Bound::AtMost(t) => vec![Fr::from(*t)],
        },
        Claim::Fairness {
            max_gap_num,
            max_gap_den,
            ..
        } => {
            let (na, nb) = fx_group.unwrap_or((0, 0));
            vec![
                Fr::from(na),
                Fr::from(nb),
                Fr::from(*max_gap_num),
                Fr::from(*max_gap_den),
            ]
        }
        _ => Vec::new(),
    }
}

/// Group bits of a fairness test set and the group sizes `(n_a, n_b)`.
pub(super) fn groups(claim: &Claim) -> Option<(Vec<bool>, (u64, u64))> {
    match claim {
        Claim::Fairness { test, group, .. } => {
            let g: Vec<bool> = test
                .features
                .iter()
                .map(|x| group.contains(x[group.feature]))
                .collect();
            let na = g.iter().filter(|&&b| b).count() as u64;
            Some((g.clone(), (na, g.len() as u64 - na)))
        }
        _ => None,
    }
}

/// Public inputs of chunk `i` (`root`, `cc`: the values it exposes).
pub(super) fn chunk_publics(
    claim: &Claim,
    b: &Binding,
    shape: &AuditShape,
    i: usize,
    root: Option<Fr>,
    cc: Option<Fr>,
) -> Result<Vec<Fr>> {
    let c = shape.records;
    let n = population(claim, b);
    let real = n.saturating_sub(i * c).min(c) as u64;
    let need = |v: Option<Fr>, what: &str| {
        v.ok_or_else(|| CircuitError::Verification(format!("chunk {i} lacks its {what}")))
    };
    let d = shape.arch.input_dim();
    let mut v = Vec::with_capacity(shape.num_instances());
    match claim {
        Claim::Composition { ranges, .. } => {
            v.extend([
                need(root, "subtree root")?,
                Fr::from(real),
                need(cc, "count commitment")?,
            ]);
            for &(lo, hi) in &ranges.fixed {
                v.extend([fe(lo as i128), fe(hi as i128)]);
            }
        }
        Claim::Exclusion { blocklist } => {
            v.extend([need(root, "subtree root")?, Fr::from(real)]);
            v.extend_from_slice(blocklist);
        }
        Claim::Inclusion { features, label } => {
            v.extend([b.root, Fr::from(b.num_records), fe(*label as i128)]);
            v.extend(features.iter().map(|&x| fe(x as i128)));
        }
        Claim::Accuracy { test, .. } | Claim::Fairness { test, .. } => {
            let g = groups(claim).map(|(g, _)| g);
            v.extend([b.c_t, Fr::from(real), need(cc, "count commitment")?]);
            for r in i * c..(i + 1) * c {
                if let Some(g) = &g {
                    v.push(Fr::from(u64::from(g.get(r).copied().unwrap_or(false))));
                }
                match (test.features.get(r), test.labels.get(r)) {
                    (Some(x), Some(y)) => {
                        v.push(fe(*y as i128));
                        v.extend(x.iter().map(|&x| fe(x as i128)));
                    }
                    _ => v.extend(std::iter::repeat_n(Fr::zero(), d + 1)),
                }
            }
        }
        Claim::Counterfactual { inputs, values, .. } => {
            v.extend([b.c_t, Fr::from(real)]);
            v.extend(values.iter().map(|&x| fe(x as i128)));
            for r in i * c..(i + 1) * c {
                match inputs.features.get(r) {
                    Some(x) => v.extend(x.iter().map(|&x| fe(x as i128))),
                    None => v.extend(std::iter::repeat_n(Fr::zero(), d)),
                }
            }
        }
    }
    Ok(v)
}

pub(super) fn combine_publics(
    claim: &Claim,
    chunks: &[ChunkProof],
    revealed: &[u64],
) -> Result<Vec<Fr>> {
    let mut v = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        v.push(c.cc.ok_or_else(|| {
            CircuitError::Verification(format!("chunk {i} lacks its count commitment"))
        })?);
    }
    v.extend(rule_params(claim, groups(claim).map(|(_, n)| n)));
    v.extend(revealed.iter().map(|&r| Fr::from(r)));
    Ok(v)
}

fn key_base(dir: &Path, shape: &AuditShape, params: &ParamsKZG<Bn256>) -> std::path::PathBuf {
    dir.join(format!(
        "audit-v{AUDIT_CIRCUIT_VERSION}-{}-{}",
        shape.id(),
        srs_id(params)
    ))
}

fn keygen_circuit(shape: &AuditShape) -> Result<crate::step::StepCircuit> {
    let (p, w) = circuit::dummy(shape);
    circuit::build(shape, &p, &w, CircuitBuilderStage::Keygen, None, None)
}

/// The proving key of an audit circuit, cached in `dir`.
pub fn audit_key(dir: &Path, shape: &AuditShape, params: &ParamsKZG<Bn256>) -> Result<StepKey> {
    cached_key(dir, &key_base(dir, shape, params), params, || {
        keygen_circuit(shape)
    })
}

/// The verifying key of an audit circuit (cached if trusted, see
/// [`crate::keys`]; else derived from the shape).
pub fn audit_vk(
    dir: &Path,
    shape: &AuditShape,
    params: &ParamsKZG<Bn256>,
    pins: Option<&VkPins>,
) -> Result<VerifyingKey<G1Affine>> {
    cached_vk(dir, &key_base(dir, shape, params), params, pins, || {
        keygen_circuit(shape)
    })
}

/// Native evaluation of the claim on the private data: `Ok` with the
/// counts (per group) when it holds, else an error that says by how much
/// it fails. The circuits enforce the same rule; this only gives a clear
/// message before any proving.
pub fn check_claim(claim: &Claim, data: &AuditData) -> Result<Vec<u64>> {
    let t = data.transcript;
    let fail = |m: String| {
        Err(CircuitError::Unsatisfied(format!(
            "the claim does not hold: {m}"
        )))
    };
    let w = model(data)?;
    let engine = Engine::new(t.config.arch.clone(), t.config.fx);
    let predict = |x: &[i64]| -> Result<usize> { Ok(engine.forward(w, x)?.prediction()) };
    let vb = t.config.fx.value_bits;
    match claim {
        Claim::Composition { ranges, bound, .. } => {
            let c = t
                .train
                .features
                .iter()
                .filter(|x| ranges.contains(x[ranges.feature]))
                .count() as u64;
            match bound {
                Bound::AtLeast(m) if c < *m => fail(format!("{c} records match, fewer than {m}")),
                Bound::AtMost(m) if c > *m => fail(format!("{c} records match, more than {m}")),
                _ => Ok(vec![c]),
            }
        }
        Claim::Exclusion { blocklist } => {
            for (i, x) in t.train.features.iter().enumerate() {
                let h = circuit::content_hash(x, vb);
                if blocklist.contains(&h) {
                    return fail(format!("training record {i} is on the blocklist"));
                }
            }
            Ok(Vec::new())
        }
        Claim::Inclusion { features, label } => {
            match t
                .train
                .features
                .iter()
                .zip(&t.train.labels)
                .position(|(x, y)| x == features && y == label)
            {
                Some(_) => Ok(Vec::new()),
                None => fail("the record is not in the training set".into()),
            }
        }
        Claim::Accuracy { test, bound, .. } => {
            let mut c = 0u64;
            for (x, y) in test.features.iter().zip(&test.labels) {
                c += u64::from(predict(x)? == *y as usize);
            }
            let n = test.labels.len();
            match bound {
                Bound::AtLeast(m) if c < *m => fail(format!(
                    "{c} of {n} test records are predicted correctly, fewer than {m}"
                )),
                Bound::AtMost(m) if c > *m => fail(format!(
                    "{c} of {n} test records are predicted correctly, more than {m}"
                )),
                _ => Ok(vec![c]),
            }
        }
        Claim::Fairness {
            test,
            max_gap_num,
            max_gap_den,
            ..
        } => {
            let (g, (na, nb)) = groups(claim).unwrap_or_default();
            let (mut ca, mut cb) = (0u64, 0u64);
            for ((x, y), in_a) in test.features.iter().zip(&test.labels).zip(&g) {
                let ok = u64::from(predict(x)? == *y as usize);
                if *in_a {
                    ca += ok
                } else {
                    cb += ok
                }
            }
            let lhs =
                (ca as i128 * nb as i128 - cb as i128 * na as i128).abs() * *max_gap_den as i128;
            let rhs = *max_gap_num as i128 * na as i128 * nb as i128;
            if lhs > rhs {
                let acc = |c: u64, n: u64| 100.0 * c as f64 / n.max(1) as f64;
                return fail(format!(
                    "group accuracies {:.2}% ({ca}/{na}) and {:.2}% ({cb}/{nb}) differ by more than {max_gap_num}/{max_gap_den}",
                    acc(ca, na),
                    acc(cb, nb)
                ));
            }
            Ok(vec![ca, cb])
        }
        Claim::Counterfactual {
            inputs,
            feature,
            values,
            ..
        } => {
            for (i, x) in inputs.features.iter().enumerate() {
                let p0 = predict(x)?;
                for v in values {
                    let mut x2 = x.clone();
                    x2[*feature] = *v;
                    let p = predict(&x2)?;
                    if p != p0 {
                        return fail(format!(
                            "input {i} is predicted {p0}, but {p} with feature {feature} set to {v} (fixed point)"
                        ));
                    }
                }
            }
            Ok(Vec::new())
        }
    }
}

fn model<'a>(data: &AuditData<'a>) -> Result<&'a Weights> {
    data.transcript
        .weights
        .get(data.model_index)
        .ok_or_else(|| {
            CircuitError::Shape(format!(
                "the run has no weights after step {}",
                data.model_index
            ))
        })
}

/// Counts of chunk `i` (same rules as the circuit).
pub(super) fn chunk_counts(
    claim: &Claim,
    data: &AuditData,
    shape: &AuditShape,
    i: usize,
) -> Result<Vec<u64>> {
    let t = data.transcript;
    let c = shape.records;
    match claim {
        Claim::Composition { ranges, .. } => Ok(vec![t
            .train
            .features
            .iter()
            .skip(i * c)
            .take(c)
            .filter(|x| ranges.contains(x[ranges.feature]))
            .count() as u64]),
        Claim::Accuracy { test, .. } | Claim::Fairness { test, .. } => {
            let engine = Engine::new(t.config.arch.clone(), t.config.fx);
            let w = model(data)?;
            let g = groups(claim).map(|(g, _)| g);
            let mut counts = vec![0u64; if g.is_some() { 2 } else { 1 }];
            for r in i * c..((i + 1) * c).min(test.labels.len()) {
                let ok =
                    engine.forward(w, &test.features[r])?.prediction() == test.labels[r] as usize;
                let slot = match &g {
                    Some(g) if !g[r] => 1,
                    _ => 0,
                };
                counts[slot] += u64::from(ok);
            }
            Ok(counts)
        }
        _ => Ok(Vec::new()),
    }
}

/// The secret from which an audit's count salts are derived: the run's
/// secret salts (the audited weights' and every record's, never published)
/// and the claim. Deterministic, so that a chunk proven twice (a retried
/// cluster task) commits to the same counts, and the combine proof can be
/// made by a prover that did not make the chunks.
pub struct SaltKey([u8; 32]);

impl SaltKey {
    /// The key of `claim` on the data of `data`.
    pub fn new(claim: &Claim, data: &AuditData) -> Self {
        let t = data.transcript;
        let mut h = Sha256::new();
        h.update(b"zkaudit/audit-count-salt/v1");
        h.update(claim_digest(claim));
        h.update((data.model_index as u64).to_le_bytes());
        h.update(
            t.weight_salts
                .get(data.model_index)
                .copied()
                .unwrap_or(0)
                .to_le_bytes(),
        );
        for s in &t.leaf_salts {
            h.update(s.to_le_bytes());
        }
        SaltKey(h.finalize().into())
    }

    /// The count salt of chunk `i`.
    pub fn salt(&self, i: usize) -> u128 {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update((i as u64).to_le_bytes());
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        u128::from_le_bytes(b)
    }
}

/// SHA-256 of a claim's encoding.
pub fn claim_digest(claim: &Claim) -> [u8; 32] {
    Sha256::digest(bincode::serialize(claim).unwrap_or_default()).into()
}

/// The private inputs of a chunk and the values it exposes.
pub(super) struct ChunkInputs {
    pub(super) witness: AuditWitness,
    pub(super) root: Option<Fr>,
    pub(super) cc: Option<Fr>,
}

/// The private inputs and exposed values of chunk `i` (`count_salt`: its salt).
pub(super) fn chunk_inputs(
    claim: &Claim,
    data: &AuditData,
    tree: Option<&MerkleTree>,
    shape: &AuditShape,
    i: usize,
    count_salt: u128,
) -> Result<ChunkInputs> {
    let tree =
        || tree.ok_or_else(|| CircuitError::Shape("data audits need the dataset tree".into()));
    let t = data.transcript;
    let c = shape.records;
    let counts = chunk_counts(claim, data, shape, i)?;
    let cc = (!counts.is_empty()).then(|| count_commitment(count_salt, &counts));
    Ok(match claim {
        Claim::Composition { .. } | Claim::Exclusion { .. } => {
            let d = t.config.arch.input_dim();
            let pos = |r: usize| r < t.train.len();
            let range = i * c..(i + 1) * c;
            let level = c.trailing_zeros() as usize;
            ChunkInputs {
                witness: AuditWitness::Data {
                    features: range
                        .clone()
                        .map(|r| {
                            if pos(r) {
                                t.train.features[r].clone()
                            } else {
                                vec![0; d]
                            }
                        })
                        .collect(),
                    labels: range
                        .clone()
                        .map(|r| if pos(r) { t.train.labels[r] } else { 0 })
                        .collect(),
                    salts: range
                        .map(|r| if pos(r) { t.leaf_salts[r] } else { 0 })
                        .collect(),
                    count_salt,
                },
                root: Some(tree()?.levels[level][i]),
                cc,
            }
        }
        Claim::Inclusion { features, label } => {
            let index = t
                .train
                .features
                .iter()
                .zip(&t.train.labels)
                .position(|(x, y)| x == features && y == label)
                .ok_or_else(|| {
                    CircuitError::Unsatisfied(
                        "the claim does not hold: the record is not in the training set".into(),
                    )
                })?;
            ChunkInputs {
                witness: AuditWitness::Inclusion {
                    salt: t.leaf_salts[index],
                    index: index as u64,
                    path: tree()?.path(index),
                },
                root: None,
                cc: None,
            }
        }
        _ => ChunkInputs {
            witness: AuditWitness::Model {
                weights: model(data)?.clone(),
                salt: data
                    .transcript
                    .weight_salts
                    .get(data.model_index)
                    .copied()
                    .unwrap_or(0),
                count_salt,
            },
            root: None,
            cc,
        },
    })
}

/// Proves one circuit and checks the proof (a false statement yields an
/// invalid proof, reported as unsatisfied).
pub(super) fn prove_one(
    shape: &AuditShape,
    publics: &[Fr],
    w: &AuditWitness,
    params: &ParamsKZG<Bn256>,
    key: &StepKey,
    what: &str,
) -> Result<Vec<u8>> {
    let circuit = circuit::build(
        shape,
        publics,
        w,
        CircuitBuilderStage::Prover,
        Some(key.meta.params.clone()),
        Some(key.meta.break_points.clone()),
    )?;
    let snark = catch_unwind(AssertUnwindSafe(|| {
        gen_snark_shplonk(params, &key.pk, circuit, None::<&str>)
    }))
    .map_err(|_| CircuitError::Unsatisfied(format!("{what}: the prover failed")))?;
    verify_snark(params, key.pk.get_vk(), publics, &snark.proof).map_err(|_| {
        CircuitError::Unsatisfied(format!(
            "{what}: the witness does not satisfy the circuit (the claim does not hold)"
        ))
    })?;
    Ok(snark.proof)
}

/// Proves an audit locally: every chunk, then the combine proof.
/// `params_for(k)` gives the SRS at size `k`; keys are cached in `keys_dir`.
/// The claim is not pre-checked here (see [`check_claim`]): a false claim
/// fails in the circuits.
pub fn prove_audit(
    claim: &Claim,
    binding: &Binding,
    data: &AuditData,
    plan: &Plan,
    params_for: &dyn Fn(u32) -> Result<ParamsKZG<Bn256>>,
    keys_dir: &Path,
    progress: &mut dyn FnMut(AuditProgress),
) -> Result<AuditProof> {
    use super::tasks::{assemble, prove_chunk, prove_combine, AuditJob};
    let t = data.transcript;
    // Only data audits open the tree.
    let tree = claim.is_data().then(|| {
        MerkleTree::of_dataset(
            &t.train.features,
            &t.train.labels,
            &t.leaf_salts,
            t.config.fx.value_bits,
        )
    });
    let job = AuditJob {
        claim: claim.clone(),
        binding: binding.clone(),
        model_index: data.model_index as u64,
        plan: plan.clone(),
    };
    let salts = SaltKey::new(claim, data);
    progress(AuditProgress::Started(
        plan.chunks + usize::from(plan.combine.is_some()),
    ));
    let params = params_for(plan.chunk.k)?;
    progress(AuditProgress::Key(plan.chunk.kind.name()));
    let key = audit_key(keys_dir, &plan.chunk, &params)?;
    let mut chunks = Vec::with_capacity(plan.chunks);
    for i in 0..plan.chunks {
        chunks.push(prove_chunk(
            &job,
            data,
            tree.as_ref(),
            &salts,
            i,
            &params,
            &key,
        )?);
        progress(AuditProgress::Proved(i + 1));
    }
    drop(key);
    let combine = match &plan.combine {
        None => None,
        Some(shape) => {
            let params = params_for(shape.k)?;
            progress(AuditProgress::Key("combine"));
            let key = audit_key(keys_dir, shape, &params)?;
            let out = prove_combine(&job, data, &salts, &chunks, &params, &key)?;
            progress(AuditProgress::Proved(plan.chunks + 1));
            Some(out)
        }
    };
    assemble(&job, chunks, combine, srs_id(&params))
}

/// Verifies an audit completely against the binding of a verified
/// certificate (`cert`: its `R`, record count and `c_T`) and the model
/// format it states: the claim's public data, the circuits (rebuilt from the
/// claim), every proof with public inputs the verifier computed itself, the
/// subtree roots hashing up to `R`, and the combine proof over the chunks'
/// count commitments.
pub fn verify_audit(
    a: &AuditProof,
    cert: &Binding,
    arch: &Architecture,
    fx: &FixedParams,
    params_for: &dyn Fn(u32) -> Result<ParamsKZG<Bn256>>,
    keys_dir: &Path,
    pins: Option<&VkPins>,
) -> Result<()> {
    let claim = &a.claim;
    if claim.is_data() {
        if a.binding.root != cert.root || a.binding.num_records != cert.num_records {
            return bad("the audit is about another dataset than the certificate's (its root R or record count differ)".into());
        }
    } else if a.binding.c_t != cert.c_t {
        return bad(
            "the audit is about another model than the certificate's (its c_T differs)".into(),
        );
    }
    check_public(claim, arch, fx)?;
    let k_combine = a.combine.as_ref().map(|(s, _)| s.k).unwrap_or(12);
    if !(12..=crate::srs::MAX_K).contains(&a.chunk_shape.k)
        || !(12..=crate::srs::MAX_K).contains(&k_combine)
    {
        return bad("circuit size out of range".into());
    }
    let expected = shapes(
        claim,
        &a.binding,
        arch,
        fx,
        a.chunk_shape.records,
        a.chunk_shape.k,
        k_combine,
    )?;
    if expected.chunk != a.chunk_shape
        || expected.combine != a.combine.as_ref().map(|c| c.0.clone())
    {
        return bad("the audit's circuits are not the ones its claim calls for".into());
    }
    if a.chunks.len() != expected.chunks {
        return bad(format!(
            "{} chunk proofs, but the claim needs {}",
            a.chunks.len(),
            expected.chunks
        ));
    }
    let expect_reveal = match &expected.combine {
        Some(AuditShape {
            kind:
                ChunkKind::Combine {
                    groups,
                    reveal: true,
                    ..
                },
            ..
        }) => *groups,
        _ => 0,
    };
    if a.revealed.len() != expect_reveal {
        return bad("the revealed counts do not match the claim".into());
    }
    // Every bit of the data is covered: the chunk roots hash up to R.
    if claim.is_data() && !matches!(claim, Claim::Inclusion { .. }) {
        let c = a.chunk_shape.records;
        let depth = a.chunk_shape.depth;
        let level = c.trailing_zeros() as usize;
        let mut empty = Fr::zero();
        for _ in 0..level {
            empty = node_native(empty, empty);
        }
        let mut nodes: Vec<Fr> = (0..1usize << (depth - level))
            .map(|p| match a.chunks.get(p) {
                Some(ch) => ch.root.unwrap_or_default(),
                None => empty,
            })
            .collect();
        while nodes.len() > 1 {
            nodes = nodes.chunks(2).map(|p| node_native(p[0], p[1])).collect();
        }
        if nodes[0] != cert.root {
            return bad("the chunks' subtree roots do not hash up to the dataset root R".into());
        }
    }
    let params = params_for(a.chunk_shape.k)?;
    if a.srs_id != srs_id(&params) {
        return bad(format!(
            "the audit was proven with SRS {} but {} was given",
            a.srs_id,
            srs_id(&params)
        ));
    }
    let vk = audit_vk(keys_dir, &a.chunk_shape, &params, pins)?;
    // The chunk proofs are checked together: one accumulated pairing.
    let proofs = a
        .chunks
        .iter()
        .enumerate()
        .map(|(i, ch)| {
            Ok((
                chunk_publics(claim, &a.binding, &a.chunk_shape, i, ch.root, ch.cc)?,
                ch.proof.as_slice(),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let kind = a.chunk_shape.kind.name();
    verify_snarks_accumulated(
        &params,
        &vk,
        &proofs,
        &|i| format!("{kind} chunk {i}"),
        &format!("{kind} chunk"),
    )?;
    if let Some((shape, proof)) = &a.combine {
        let params = params_for(shape.k)?;
        let vk = audit_vk(keys_dir, shape, &params, pins)?;
        let publics = combine_publics(claim, &a.chunks, &a.revealed)?;
        verify_snark(&params, &vk, &publics, proof)
            .map_err(|e| CircuitError::Verification(format!("combine proof: {e}")))?;
    }
    Ok(())
}
