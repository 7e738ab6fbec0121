//! `zkaudit srs`, `zkaudit prove-step` and `zkaudit verify-step`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use zkaudit_circuits::hash::MerkleTree;
use zkaudit_circuits::keys::{step_key, step_vk};
use zkaudit_circuits::pipeline::auto_shape;
use zkaudit_circuits::prover::{prove_step, verify_step, StepProof};
use zkaudit_circuits::shape::StepShape;
use zkaudit_circuits::srs;
use zkaudit_circuits::{Bn256, ParamsKZG};
use zkaudit_model::transcript::Transcript;

/// Where the SRS and key cache live.
#[derive(Debug, Args)]
pub struct ProvingFiles {
    /// SRS file (halo2 KZG format); create a local one with `zkaudit srs`.
    #[arg(long, env = "ZKAUDIT_SRS", default_value = "params/kzg_bn254.srs")]
    pub srs: PathBuf,
    /// Directory of cached proving/verifying keys.
    #[arg(long, env = "ZKAUDIT_KEYS", default_value = ".zkaudit-keys")]
    pub keys: PathBuf,
}

impl ProvingFiles {
    /// Loads the SRS for circuits of size `2^k`, warning when it is a local insecure one.
    pub fn load_srs(&self, k: u32) -> anyhow::Result<ParamsKZG<Bn256>> {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let params = srs::load(&self.srs, k)?;
        if srs::is_insecure(&self.srs) && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            eprintln!(
                "warning: {} is an INSECURE local SRS (tests and demos only)",
                self.srs.display()
            );
        }
        Ok(params)
    }
}

/// Arguments of `zkaudit srs`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit srs --k 18 --out params/kzg_bn254.srs   # INSECURE local SRS for tests and demos
  zkaudit srs --k 21 --also-k 20 --out params/kzg_bn254_21.srs")]
pub struct SrsArgs {
    /// log2 of the largest circuit size it serves (smaller ones are derived by downsizing).
    #[arg(long, default_value_t = 18)]
    pub k: u32,
    /// Output file.
    #[arg(long, env = "ZKAUDIT_SRS", default_value = "params/kzg_bn254.srs")]
    pub out: PathBuf,
    /// Keep an existing file that holds at least `2^k` points (containers' first start).
    #[arg(long)]
    pub if_missing: bool,
    /// Also write the SRS for these smaller sizes beside it (`FILE.k<K>`, from
    /// the same secret), e.g. `--also-k 20` for a k = 21 file used by succinct
    /// runs with k = 21 leaves: far faster than downsizing at first use.
    #[arg(long = "also-k", value_delimiter = ',')]
    pub also_k: Vec<u32>,
}

/// Runs `zkaudit srs`.
pub fn srs_cmd(a: SrsArgs) -> anyhow::Result<()> {
    if a.if_missing && a.out.exists() {
        // Loading checks the file's structure and that it is large enough.
        srs::load(&a.out, a.k)
            .map_err(|e| anyhow::anyhow!("{} exists but is unusable: {e}", a.out.display()))?;
        println!("{} exists (k >= {}); kept", a.out.display(), a.k);
        return Ok(());
    }
    eprintln!(
        "generating an INSECURE local SRS (k = {}); for production load a ceremony file instead",
        a.k
    );
    let start = Instant::now();
    srs::generate_insecure_with(a.k, &a.also_k, &a.out)?;
    println!(
        "wrote {} (k = {}, INSECURE: local secret) in {:.1}s",
        a.out.display(),
        a.k,
        start.elapsed().as_secs_f64()
    );
    for k in &a.also_k {
        println!(
            "wrote {} (the same SRS downsized to k = {k})",
            srs::downsized_path(&a.out, *k).display()
        );
    }
    Ok(())
}

/// Arguments of `zkaudit prove-step`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit srs --k 18
  zkaudit prove-step --run runs/digits --step 0 --out runs/digits/step0.proof
  zkaudit verify-step runs/digits/step0.proof")]
pub struct ProveStepArgs {
    /// Run directory written by `zkaudit train`.
    #[arg(long, env = "ZKAUDIT_RUN")]
    pub run: PathBuf,
    /// Step to prove (0-based).
    #[arg(long)]
    pub step: usize,
    /// Output step-proof file.
    #[arg(long)]
    pub out: PathBuf,
    /// Circuit size 2^k (default: chosen from the model and batch).
    #[arg(long)]
    pub k: Option<u32>,
    /// SRS and key cache.
    #[command(flatten)]
    pub files: ProvingFiles,
}

/// Runs `zkaudit prove-step`.
pub fn prove(a: ProveStepArgs) -> anyhow::Result<()> {
    let t = Transcript::read_run(&a.run)?;
    if a.step >= t.num_steps() {
        bail!(
            "--step {} does not exist: the run has steps 0..{}",
            a.step,
            t.num_steps()
        );
    }
    let shape = match a.k {
        Some(k) => {
            StepShape::check_k(k)?;
            StepShape::for_run(&t, k)
        }
        None => auto_shape(&t)?,
    };
    let params = a.files.load_srs(shape.k)?;
    let start = Instant::now();
    let tree = MerkleTree::of_dataset(
        &t.train.features,
        &t.train.labels,
        &t.leaf_salts,
        t.config.fx.value_bits,
    );
    let key = step_key(&a.files.keys, &shape, &params)
        .context("loading or generating the proving key")?;
    let keyed = start.elapsed();
    let proof = prove_step(&t, &tree, a.step, &shape, &params, &key)?;
    let total = start.elapsed();
    proof.write(&a.out)?;
    println!(
        "proved step {} (k = {}, {} advice cells, {} Poseidon lanes, {} advice columns): keys {:.1}s, prove {:.1}s; wrote {} ({} proof bytes)",
        a.step,
        shape.k,
        key.meta.advice_cells,
        key.meta.params.poseidon_lanes,
        key.meta.params.advice_columns(),
        keyed.as_secs_f64(),
        (total - keyed).as_secs_f64(),
        a.out.display(),
        proof.proof.len()
    );
    Ok(())
}

/// Arguments of `zkaudit verify-step`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit verify-step runs/digits/step0.proof")]
pub struct VerifyStepArgs {
    /// Step-proof file.
    pub proof: PathBuf,
    /// SRS and key cache.
    #[command(flatten)]
    pub files: ProvingFiles,
}

/// Runs `zkaudit verify-step`.
pub fn verify(a: VerifyStepArgs) -> anyhow::Result<()> {
    let p = StepProof::read(&a.proof)?;
    // No key is derived from parameters that have not been validated.
    p.shape
        .check_public(&p.public, Some(1))
        .with_context(|| format!("{} is NOT valid", a.proof.display()))?;
    let params = a.files.load_srs(p.shape.k)?;
    let vk = step_vk(&a.files.keys, &p.shape, &params, None)?;
    let start = Instant::now();
    verify_step(&p, &params, &vk).with_context(|| format!("{} is NOT valid", a.proof.display()))?;
    println!(
        "VALID ({:.0} ms): {}",
        start.elapsed().as_secs_f64() * 1e3,
        p.describe()
    );
    Ok(())
}
