//! `zkaudit prove` (the local pipeline) and `zkaudit verify`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use zkaudit_circuits::certificate::{verify_certificate, Certificate};
use zkaudit_circuits::keys::{step_key, step_vk};
use zkaudit_circuits::pipeline::{auto_shape, prove_run, RunProgress};
use zkaudit_circuits::shape::StepShape;
use zkaudit_model::transcript::Transcript;

use super::prove_step::ProvingFiles;

/// Certificate mode.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// All step proofs, verified with one accumulated pairing.
    Batched,
}

/// Arguments of `zkaudit prove`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit srs --k 18
  zkaudit prove --run runs/digits --steps 4 --out runs/digits/run.cert
  zkaudit verify runs/digits/run.cert")]
pub struct ProveArgs {
    /// Run directory written by `zkaudit train`.
    #[arg(long, env = "ZKAUDIT_RUN")]
    pub run: PathBuf,
    /// Prove only the first N steps (default: all).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Certificate mode.
    #[arg(long, value_enum, default_value = "batched")]
    pub mode: ModeArg,
    /// Circuit size 2^k (default: chosen from the model and batch).
    #[arg(long)]
    pub k: Option<u32>,
    /// Output certificate file.
    #[arg(long)]
    pub out: PathBuf,
    /// SRS and key cache.
    #[command(flatten)]
    pub files: ProvingFiles,
}

/// Runs `zkaudit prove`.
pub fn prove(a: ProveArgs) -> anyhow::Result<()> {
    let t = Transcript::read_run(&a.run)?;
    let shape = match a.k {
        Some(k) => {
            StepShape::check_k(k)?;
            StepShape::for_run(&t, k)
        }
        None => auto_shape(&t)?,
    };
    let params = a.files.load_srs(shape.k)?;
    let start = Instant::now();
    let key = step_key(&a.files.keys, &shape, &params)
        .context("loading or generating the proving key")?;
    let keyed = start.elapsed();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let ModeArg::Batched = a.mode;
    let cert = prove_run(&t, a.steps, &shape, &params, &key, &mut |p| match p {
        RunProgress::Started(n) => bar = Some(super::progress_bar(n as u64, "proving steps")),
        RunProgress::StepDone(d) => {
            if let Some(b) = &bar {
                b.set_position(d as u64);
            }
        }
    })?;
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }
    cert.write(&a.out)?;
    let n = cert.steps.len();
    let total = start.elapsed();
    println!(
        "proved {n} steps (k = {}) in {:.1}s (keys {:.1}s, {:.1}s per step); wrote {} ({} bytes)",
        shape.k,
        total.as_secs_f64(),
        keyed.as_secs_f64(),
        (total - keyed).as_secs_f64() / n as f64,
        a.out.display(),
        std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0)
    );
    Ok(())
}

/// Arguments of `zkaudit verify`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit verify runs/digits/run.cert")]
pub struct VerifyArgs {
    /// Training certificate.
    pub cert: PathBuf,
    /// SRS and key cache.
    #[command(flatten)]
    pub files: ProvingFiles,
}

/// Runs `zkaudit verify`.
pub fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let cert = Certificate::read(&a.cert)?;
    let params = a.files.load_srs(cert.shape.k)?;
    let vk = step_vk(&a.files.keys, &cert.shape, &params)?;
    let start = Instant::now();
    if let Err(e) = verify_certificate(&cert, &params, &vk) {
        bail!("{} is NOT valid: {e}", a.cert.display());
    }
    println!(
        "VALID ({:?} mode, {} proofs, {:.0} ms)",
        cert.mode,
        cert.steps.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    println!("{}", cert.describe());
    if cert.initial_salt.is_some() {
        println!(
            "the initial weights are the public seeded ones (c_0 recomputed from seed {})",
            cert.public.seed
        );
    }
    Ok(())
}
