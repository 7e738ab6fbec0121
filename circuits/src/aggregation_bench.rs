//! Measurement of the aggregation cost problem (issue "Recursive aggregation"):
//! aggregate two real digits step proofs with snark-verifier-sdk's SHPLONK
//! aggregation circuit and report its size, key generation and proving cost.
//! Heavy (minutes, ~10 GiB): run explicitly with
//! `ZKAUDIT_AGG_SRS=<k>=20 SRS> cargo test --release -p zkaudit-circuits aggregation_bench -- --ignored --nocapture`.

use std::time::Instant;

use halo2_base::gates::circuit::CircuitBuilderStage;
use snark_verifier_sdk::halo2::aggregation::{
    AggregationCircuit, AggregationConfigParams, VerifierUniversality,
};
use snark_verifier_sdk::halo2::gen_snark_shplonk;
use snark_verifier_sdk::{gen_pk, CircuitExt, SHPLONK};
use zkaudit_model::data::{LoadOptions, ScalingKind};
use zkaudit_model::train::{train, InitChoice, TrainOptions};
use zkaudit_model::FixedParams;

use crate::hash::MerkleTree;
use crate::keys::step_key;
use crate::pipeline::auto_shape;
use crate::srs;
use crate::step::step_inputs;

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
        / 1024
}

/// The digits run (64-16-10, batch 8, seed 42, one epoch) the benchmarks prove.
fn digits_run() -> zkaudit_model::transcript::Transcript {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let opts = TrainOptions {
        model: root.join("examples/models/digits_mlp.toml"),
        data: root.join("examples/data/digits.csv.gz"),
        load: LoadOptions::default(),
        epochs: 1,
        batch_size: 8,
        lr: 0.1,
        fx: FixedParams::default(),
        seed: 42,
        test_fraction: 0.2,
        scaling: ScalingKind::MinMax,
        init: InitChoice::Auto,
    };
    train(&opts, &mut |_| {}).unwrap().0
}

/// The SRS of `ZKAUDIT_AGG_SRS` (k >= 20).
fn agg_srs_path() -> std::path::PathBuf {
    std::env::var("ZKAUDIT_AGG_SRS")
        .expect("set ZKAUDIT_AGG_SRS to a k >= 20 SRS")
        .into()
}

/// The number in environment variable `name`, else `default`.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore]
fn aggregation_bench() {
    let srs_path = agg_srs_path();
    let agg_k: u32 = env_or("ZKAUDIT_AGG_K", 20);
    let t = digits_run();
    let tree = MerkleTree::of_dataset(&t.train.features, &t.train.labels, &t.leaf_salts, 32);
    let shape = auto_shape(&t).unwrap();
    let step_params = srs::load(&srs_path, shape.k).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = step_key(keys.path(), &shape, &step_params).unwrap();
    let snarks: Vec<_> = (0..2)
        .map(|s| {
            let (st, w) = step_inputs(&t, &tree, s).unwrap();
            let c = key.prover_circuit(&shape, &st, &w, None).unwrap();
            gen_snark_shplonk(&step_params, &key.pk, c, None::<&str>)
        })
        .collect();
    eprintln!("step: k={} proof bytes={}", shape.k, snarks[0].proof.len());

    let agg_params = srs::load(&srs_path, agg_k).unwrap();
    let start = Instant::now();
    let mut circuit = AggregationCircuit::new::<SHPLONK>(
        CircuitBuilderStage::Keygen,
        AggregationConfigParams {
            degree: agg_k,
            lookup_bits: agg_k as usize - 1,
            ..Default::default()
        },
        &agg_params,
        snarks.clone(),
        VerifierUniversality::None,
    );
    let cfg = circuit.calculate_params(Some(20));
    let stats = circuit.builder.statistics();
    eprintln!(
        "aggregation of 2: k={} advice columns={} lookup columns={} cells={} (build {:.1}s)",
        agg_k,
        cfg.num_advice,
        cfg.num_lookup_advice,
        stats.gate.total_advice_per_phase.iter().sum::<usize>(),
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let pk = gen_pk(&agg_params, &circuit, None);
    let bp = circuit.break_points();
    eprintln!(
        "aggregation keygen {:.1}s, peak RSS {} MiB",
        start.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    let start = Instant::now();
    let prover = AggregationCircuit::new::<SHPLONK>(
        CircuitBuilderStage::Prover,
        cfg,
        &agg_params,
        snarks,
        VerifierUniversality::None,
    )
    .use_break_points(bp);
    let n_inst = prover.num_instance();
    let snark = gen_snark_shplonk(&agg_params, &pk, prover, None::<&str>);
    eprintln!(
        "aggregation prove {:.1}s, proof {} bytes, {:?} instances, peak RSS {} MiB",
        start.elapsed().as_secs_f64(),
        snark.proof.len(),
        n_inst,
        peak_rss_mib()
    );
}

/// The aggregation's size against its leaves' layout: for a digits leaf of
/// `ZKAUDIT_SPAN` steps (32) laid out at each `k` of `ZKAUDIT_LEAF_KS`
/// ("17,18,19,20"), the leaf's columns and the layout of the level-1
/// aggregation over two such leaves and of the level-2 one over two level-1
/// proofs (verifying keys derived, no proving key). Run with
/// `ZKAUDIT_AGG_SRS=<k = 20 SRS> cargo test --release -p zkaudit-circuits aggregation_size_by_leaf_layout -- --ignored --nocapture`.
#[test]
#[ignore]
fn aggregation_size_by_leaf_layout() {
    use crate::aggregate::agg_layout;
    use crate::shape::StepShape;
    use crate::tasks::KeyStore;
    let srs_path = agg_srs_path();
    let span: usize = env_or("ZKAUDIT_SPAN", 32);
    let ks: Vec<u32> = std::env::var("ZKAUDIT_LEAF_KS")
        .unwrap_or_else(|_| "17,18,19,20".into())
        .split(',')
        .map(|k| k.trim().parse().unwrap())
        .collect();
    let t = digits_run();
    let agg_params = srs::load(&srs_path, 20).unwrap();
    for k in ks {
        let keys = tempfile::tempdir().unwrap();
        let store = KeyStore::new(
            keys.path().to_path_buf(),
            srs::load(&srs_path, k).unwrap(),
            Some(agg_params.clone()),
        );
        let shape = StepShape::for_run(&t, k).with_span(span);
        let start = Instant::now();
        let vk = store.node_vk(&shape, &[span]).unwrap();
        let leaf = store.node_protocol(&shape, &[span]).unwrap();
        let cs = vk.cs();
        eprintln!(
            "leaf k={k} span={span}: advice {} fixed {} lookups {} witness commitments {} evaluations {} (vk {:.1}s)",
            cs.num_advice_columns(),
            cs.num_fixed_columns(),
            cs.lookups().len(),
            leaf.1.num_witness.iter().sum::<usize>(),
            leaf.1.evaluations.len(),
            start.elapsed().as_secs_f64()
        );
        for (level, lens) in [(1, vec![span]), (2, vec![span, span])] {
            let child = store.node_protocol(&shape, &lens).unwrap();
            let start = Instant::now();
            let m = agg_layout(&agg_params, &[child.clone(), child]).unwrap();
            eprintln!(
                "  level {level}: advice columns {} lookup columns {} fixed {} cells {} (layout {:.1}s), peak RSS {} MiB",
                m.config.num_advice,
                m.config.num_lookup_advice,
                m.config.num_fixed,
                m.advice_cells,
                start.elapsed().as_secs_f64(),
                peak_rss_mib()
            );
        }
    }
}
