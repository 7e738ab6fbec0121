//! Poseidon commitments and the dataset Merkle tree.
//!
//! Poseidon is halo2-base's sponge (BN254, width 3, rate 2, 8 full and 57
//! partial rounds, the parameters snark-verifier uses), as a fixed-length
//! hash, computed in the dedicated region of [`crate::poseidon`]. Each
//! use has its own leading tag, so a weight commitment, a leaf and a node can
//! never be confused:
//!
//! ```text
//! commit(W, salt) = H(TAG_WEIGHTS, salt, pack(W))
//! leaf(x, y, s)   = H(TAG_LEAF, s, y, pack(x))
//! node(l, r)      = H(TAG_NODE, l, r)
//! ```
//!
//! The schedule hashes and the audits' count and content hashes take their
//! tags from the same table ([`DOMAIN_TAGS`]).
//!
//! `pack` maps each signed `b`-bit value `v` to the lane `v + 2^(b-1)` in
//! `[0, 2^b)` and puts `L = floor(253 / b)` lanes in one field element
//! (`sum lane_i * 2^(b*i)`), little-endian. Packing is injective only because
//! every lane is range-checked to `b` bits by the caller; the step circuit
//! range-checks every weight and feature it packs.
//!
//! Salts are 128-bit secrets, so commitments and the root hide low-entropy
//! weights and records. The tree has `2^depth` leaves (`depth = ceil(log2 n)`,
//! at least 1); missing leaves are 0.
//!
//! Native values are computed by running the same gadgets in witness-only mode
//! ([`native`]), so circuit and native hashing cannot drift apart.

use std::sync::OnceLock;

use halo2_base::gates::flex_gate::threads::SinglePhaseCoreManager;
use halo2_base::gates::{GateChip, GateInstructions};
use halo2_base::poseidon::hasher::spec::OptimizedPoseidonSpec;
use halo2_base::{AssignedValue, Context, QuantumCell};
use rayon::prelude::*;

use crate::field::{fe, fe_u128};
use crate::poseidon::{PoseidonChip, RATE, R_F, R_P, T};
use crate::Fr;

/// Tag of weight commitments.
pub const TAG_WEIGHTS: u64 = 0x7a6b_0001;
/// Tag of Merkle leaves.
pub const TAG_LEAF: u64 = 0x7a6b_0002;
/// Tag of Merkle nodes.
pub const TAG_NODE: u64 = 0x7a6b_0003;
/// Tag of a step's schedule hash `H(TAG_SCHED_STEP, t, i_1..i_B)`.
pub const TAG_SCHED_STEP: u64 = 0x7a6b_0004;
/// Tag of a span's or node's schedule hash `H(TAG_SCHED_NODE, s_1..s_n)`.
pub const TAG_SCHED_NODE: u64 = 0x7a6b_0005;
/// Tag of an audit's count commitment `H(TAG_COUNT, salt, counts..)`.
pub const TAG_COUNT: u64 = 0x7a6b_0006;
/// Tag of a record's content hash `H(TAG_CONTENT, pack(x))` (audit blocklists).
pub const TAG_CONTENT: u64 = 0x7a6b_0007;

/// Every domain tag with its name: each hash use has its own, so no two uses
/// can produce the same preimage (tested distinct).
pub const DOMAIN_TAGS: [(&str, u64); 7] = [
    ("weights", TAG_WEIGHTS),
    ("leaf", TAG_LEAF),
    ("node", TAG_NODE),
    ("schedule step", TAG_SCHED_STEP),
    ("schedule node", TAG_SCHED_NODE),
    ("count", TAG_COUNT),
    ("content", TAG_CONTENT),
];

/// halo2-base's optimized specification of the same Poseidon (used to test
/// that [`crate::poseidon`] computes the same hash).
pub fn halo2_base_spec() -> &'static OptimizedPoseidonSpec<Fr, T, RATE> {
    static SPEC: OnceLock<OptimizedPoseidonSpec<Fr, T, RATE>> = OnceLock::new();
    SPEC.get_or_init(OptimizedPoseidonSpec::new::<R_F, R_P, 0>)
}

/// Lanes per packed field element for `value_bits`-bit values.
pub fn lanes_per_element(value_bits: u32) -> usize {
    (253 / value_bits) as usize
}

/// Packs signed `value_bits`-bit values (already range-checked) into field elements.
pub fn pack(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    values: &[AssignedValue<Fr>],
    value_bits: u32,
) -> Vec<AssignedValue<Fr>> {
    let l = lanes_per_element(value_bits);
    values
        .chunks(l)
        .map(|chunk| {
            // sum (v_i + 2^(b-1)) 2^(b i) = sum v_i 2^(b i) + offset, the
            // offset computed in the field (it exceeds i128 for wide packs)
            let offset = (0..chunk.len()).fold(Fr::zero(), |acc, i| {
                acc + pow2(value_bits - 1 + value_bits * i as u32)
            });
            let coeffs: Vec<QuantumCell<Fr>> = (0..chunk.len())
                .map(|i| QuantumCell::Constant(pow2(value_bits * i as u32)))
                .collect();
            let dot = gate.inner_product(
                ctx,
                chunk.iter().copied().map(QuantumCell::Existing),
                coeffs,
            );
            gate.add(ctx, dot, QuantumCell::Constant(offset))
        })
        .collect()
}

/// `2^n` in the field.
pub fn pow2(n: u32) -> Fr {
    let mut x = Fr::one();
    let two = Fr::from(2u64);
    for _ in 0..n {
        x *= two;
    }
    x
}

/// `H(TAG_WEIGHTS, salt, pack(W))` in-circuit (weights already range-checked).
pub fn commit_weights(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    h: &PoseidonChip,
    salt: AssignedValue<Fr>,
    weights: &[AssignedValue<Fr>],
    value_bits: u32,
) -> AssignedValue<Fr> {
    let tag = ctx.load_constant(Fr::from(TAG_WEIGHTS));
    let mut input = vec![tag, salt];
    input.extend(pack(ctx, gate, weights, value_bits));
    h.hash_fix_len(ctx, gate, &input)
}

/// `H(TAG_LEAF, salt, label, pack(features))` in-circuit (features already range-checked).
pub fn leaf(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    h: &PoseidonChip,
    salt: AssignedValue<Fr>,
    label: AssignedValue<Fr>,
    features: &[AssignedValue<Fr>],
    value_bits: u32,
) -> AssignedValue<Fr> {
    let tag = ctx.load_constant(Fr::from(TAG_LEAF));
    let mut input = vec![tag, salt, label];
    input.extend(pack(ctx, gate, features, value_bits));
    h.hash_fix_len(ctx, gate, &input)
}

/// `H(TAG_NODE, l, r)` in-circuit.
pub fn node(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    h: &PoseidonChip,
    l: AssignedValue<Fr>,
    r: AssignedValue<Fr>,
) -> AssignedValue<Fr> {
    let tag = ctx.load_constant(Fr::from(TAG_NODE));
    h.hash_fix_len(ctx, gate, &[tag, l, r])
}

/// Root from a leaf, its index bits (least significant first) and siblings.
pub fn merkle_root(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    h: &PoseidonChip,
    leaf: AssignedValue<Fr>,
    index_bits: &[AssignedValue<Fr>],
    siblings: &[AssignedValue<Fr>],
) -> AssignedValue<Fr> {
    let mut cur = leaf;
    for (bit, sib) in index_bits.iter().zip(siblings) {
        // bit = 1: we are the right child.
        let l = gate.select(ctx, *sib, cur, *bit);
        let r = gate.select(ctx, cur, *sib, *bit);
        cur = node(ctx, gate, h, l, r);
    }
    cur
}

/// Runs a gadget in witness-only mode and returns its native result.
pub fn native<R>(f: impl FnOnce(&mut Context<Fr>, &GateChip<Fr>, &PoseidonChip) -> R) -> R {
    let mut pool = SinglePhaseCoreManager::new(true, Default::default());
    let gate = GateChip::default();
    let ctx = pool.main();
    let h = PoseidonChip::new();
    f(ctx, &gate, &h)
}

/// Native weight commitment.
pub fn commit_weights_native(salt: u128, weights: &[i64], value_bits: u32) -> Fr {
    native(|ctx, gate, h| {
        let s = ctx.load_witness(fe_u128(salt));
        let w: Vec<_> = weights
            .iter()
            .map(|&v| ctx.load_witness(fe(v as i128)))
            .collect();
        *commit_weights(ctx, gate, h, s, &w, value_bits).value()
    })
}

/// Native leaf hash of one record.
pub fn leaf_native(salt: u128, label: i64, features: &[i64], value_bits: u32) -> Fr {
    native(|ctx, gate, h| {
        let s = ctx.load_witness(fe_u128(salt));
        let y = ctx.load_witness(fe(label as i128));
        let x: Vec<_> = features
            .iter()
            .map(|&v| ctx.load_witness(fe(v as i128)))
            .collect();
        *leaf(ctx, gate, h, s, y, &x, value_bits).value()
    })
}

/// Native node hash.
pub fn node_native(l: Fr, r: Fr) -> Fr {
    native(|ctx, gate, h| {
        let l = ctx.load_witness(l);
        let r = ctx.load_witness(r);
        *node(ctx, gate, h, l, r).value()
    })
}

/// The dataset Merkle tree with every level kept (for paths).
#[derive(Clone, Debug)]
pub struct MerkleTree {
    /// `levels[0]` are the `2^depth` leaves; the last level is the root.
    pub levels: Vec<Vec<Fr>>,
}

impl MerkleTree {
    /// Depth for `n` leaves: `ceil(log2 n)`, at least 1.
    pub fn depth_for(n: usize) -> usize {
        let mut d = 1;
        while (1usize << d) < n {
            d += 1;
        }
        d
    }

    /// Builds the tree over the given leaves (padded with zeros).
    pub fn build(mut leaves: Vec<Fr>) -> Self {
        let depth = Self::depth_for(leaves.len());
        leaves.resize(1 << depth, Fr::zero());
        let mut levels = vec![leaves];
        while levels[levels.len() - 1].len() > 1 {
            let prev = &levels[levels.len() - 1];
            let next: Vec<Fr> = prev
                .par_chunks(2)
                .map(|p| node_native(p[0], p[1]))
                .collect();
            levels.push(next);
        }
        MerkleTree { levels }
    }

    /// Builds the tree of a training set with its leaf salts.
    pub fn of_dataset(
        features: &[Vec<i64>],
        labels: &[i64],
        salts: &[u128],
        value_bits: u32,
    ) -> Self {
        let leaves: Vec<Fr> = (0..labels.len())
            .into_par_iter()
            .map(|i| leaf_native(salts[i], labels[i], &features[i], value_bits))
            .collect();
        Self::build(leaves)
    }

    /// The root.
    pub fn root(&self) -> Fr {
        self.levels[self.levels.len() - 1][0]
    }

    /// Tree depth.
    pub fn depth(&self) -> usize {
        self.levels.len() - 1
    }

    /// Siblings of leaf `index`, bottom-up.
    pub fn path(&self, index: usize) -> Vec<Fr> {
        (0..self.depth())
            .map(|d| self.levels[d][(index >> d) ^ 1])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_tag_is_distinct() {
        for (i, (a, x)) in DOMAIN_TAGS.iter().enumerate() {
            for (b, y) in &DOMAIN_TAGS[i + 1..] {
                assert_ne!(x, y, "tags of {a} and {b} collide");
            }
        }
    }

    #[test]
    fn commitments_are_salted_and_binding_to_every_lane() {
        let w: Vec<i64> = (0..20).map(|i| i * 1000 - 7000).collect();
        let c = commit_weights_native(1, &w, 32);
        assert_eq!(c, commit_weights_native(1, &w, 32));
        assert_ne!(c, commit_weights_native(2, &w, 32));
        for k in [0, 6, 7, 19] {
            let mut w2 = w.clone();
            w2[k] += 1;
            assert_ne!(c, commit_weights_native(1, &w2, 32), "lane {k} not bound");
        }
    }

    #[test]
    fn merkle_paths_recompute_the_root() {
        let leaves: Vec<Fr> = (0..5u64).map(Fr::from).collect();
        let t = MerkleTree::build(leaves.clone());
        assert_eq!(t.depth(), 3);
        for (i, leaf) in leaves.iter().enumerate() {
            let mut cur = *leaf;
            for (d, sib) in t.path(i).iter().enumerate() {
                cur = if (i >> d) & 1 == 1 {
                    node_native(*sib, cur)
                } else {
                    node_native(cur, *sib)
                };
            }
            assert_eq!(cur, t.root());
        }
    }

    #[test]
    fn leaf_binds_label_and_salt() {
        let x = vec![1, -2, 3];
        let a = leaf_native(9, 1, &x, 32);
        assert_ne!(a, leaf_native(9, 2, &x, 32));
        assert_ne!(a, leaf_native(8, 1, &x, 32));
        assert_ne!(a, leaf_native(9, 1, &[1, -2, 4], 32));
    }
}
