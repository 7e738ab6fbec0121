//! `zkaudit export`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use zkaudit_model::transcript::Transcript;

/// Arguments of `zkaudit export`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit export --run runs/digits --out digits_final.onnx
  zkaudit export --run runs/digits --step 0 --out digits_init.onnx")]
pub struct ExportArgs {
    /// Run directory written by `zkaudit train`.
    #[arg(long, env = "ZKAUDIT_RUN")]
    pub run: PathBuf,
    /// Weights before step T (0 = initial; default: the final weights).
    #[arg(long)]
    pub step: Option<usize>,
    /// ONNX file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `zkaudit export`.
pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let t = Transcript::read_run(&a.run)?;
    let step = a.step.unwrap_or(t.num_steps());
    if step > t.num_steps() {
        bail!(
            "--step {step} does not exist: the run has weights for steps 0..={}",
            t.num_steps()
        );
    }
    let (arch, fx) = t.shape();
    zkaudit_model::onnx::export(&a.out, arch, fx, &t.weights[step], &t.config.model_name)
        .with_context(|| format!("exporting step {step}"))?;
    println!(
        "wrote {} ({} at step {step} of {})",
        a.out.display(),
        arch.describe(),
        t.num_steps()
    );
    Ok(())
}
