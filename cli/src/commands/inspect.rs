//! `zkaudit inspect`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use zkaudit_model::transcript::{InitSource, Transcript};

/// Arguments of `zkaudit inspect`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit inspect --run runs/digits
  zkaudit inspect --run runs/digits --replay   # recompute every step and compare")]
pub struct InspectArgs {
    /// Run directory written by `zkaudit train`.
    #[arg(long, env = "ZKAUDIT_RUN")]
    pub run: PathBuf,
    /// Recompute every step from the transcript and check it matches the recorded weights.
    #[arg(long)]
    pub replay: bool,
}

/// Runs `zkaudit inspect`.
pub fn run(a: InspectArgs) -> anyhow::Result<()> {
    let t = Transcript::read_run(&a.run)?;
    let c = &t.config;
    println!(
        "model:        {} {} ({} parameters)",
        c.model_name,
        c.arch.describe(),
        c.arch.num_params()
    );
    println!(
        "fixed point:  {} fractional bits, {}-bit values",
        c.fx.frac_bits, c.fx.value_bits
    );
    println!(
        "training:     {} steps, {} epochs, batch {}, lr {} ({}/2^{}), seed {}",
        t.num_steps(),
        c.epochs,
        c.batch_size,
        c.lr,
        c.lr_fx,
        c.fx.frac_bits,
        c.seed
    );
    println!(
        "data:         {} (sha256 {}), {} train / {} test records, scaling {:?}",
        t.data_source.path,
        t.data_source.sha256,
        t.train.len(),
        t.test.len(),
        c.scaling
    );
    match &t.init {
        InitSource::Seeded => println!("init:         seeded (public, recomputable from the seed)"),
        InitSource::Imported { path, sha256 } => {
            println!("init:         imported from {path} (sha256 {sha256}; private)")
        }
    }
    if a.replay {
        let bar = super::progress_bar(t.num_steps() as u64, "replaying");
        for s in 0..t.num_steps() {
            t.replay_step(s)
                .with_context(|| format!("replaying step {s}"))?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        println!(
            "replay:       all {} steps reproduce the recorded weights",
            t.num_steps()
        );
    }
    Ok(())
}
