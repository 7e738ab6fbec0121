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

#[test]
#[ignore]
fn aggregation_bench() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let srs_path = std::path::PathBuf::from(
        std::env::var("ZKAUDIT_AGG_SRS").expect("set ZKAUDIT_AGG_SRS to a k >= 20 SRS"),
    );
    let agg_k: u32 = std::env::var("ZKAUDIT_AGG_K")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
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
    let (t, _) = train(&opts, &mut |_| {}).unwrap();
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
