//! `zkaudit train`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use zkaudit_model::data::{HeaderMode, LoadOptions, ScalingKind};
use zkaudit_model::train::{self, InitChoice, Progress, TrainOptions};
use zkaudit_model::FixedParams;

/// Header handling of CSV files.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Header {
    /// Detect: a header when a field of the first line is not a number.
    Auto,
    /// The first line is a header.
    Yes,
    /// No header.
    No,
}

/// Where the initial weights come from.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Init {
    /// From the model file when it has weights (ONNX; private), else from the seed (public).
    Auto,
    /// Always from the public seed.
    Seeded,
}

/// Feature scaling.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Scale {
    /// Each column to [0, 1] over the training split.
    MinMax,
    /// Each column to mean 0, variance 1 over the training split.
    Standard,
    /// Raw values.
    None,
}

/// Arguments of `zkaudit train`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zkaudit train --model examples/models/digits_mlp.toml --data examples/data/digits.csv.gz \\
      --epochs 2 --batch-size 8 --lr 0.1 --seed 42 --out runs/digits
  zkaudit train --model examples/models/cancer_logreg.toml --data examples/data/breast_cancer.csv \\
      --epochs 5 --batch-size 16 --lr 0.5 --out runs/cancer
  zkaudit train --model examples/models/digits_mlp.onnx --data examples/data/digits.csv.gz \\
      --epochs 1 --batch-size 8 --lr 0.1 --out runs/digits-onnx   # private initial weights
  zkaudit train --model examples/models/diabetes_logreg.toml --data examples/data/diabetes_data_raw.csv.gz \\
      --labels examples/data/diabetes_target.csv.gz --label-threshold 140.5 --scaling standard \\
      --epochs 2 --batch-size 16 --lr 0.1 --seed 7 --out runs/diabetes")]
pub struct TrainArgs {
    /// Model file: native spec (.toml/.json), ONNX (.onnx) or TFLite (.tflite, float32).
    #[arg(long, env = "ZKAUDIT_MODEL")]
    pub model: PathBuf,
    /// Data file: CSV (optionally .gz) or NPY.
    #[arg(long, env = "ZKAUDIT_DATA")]
    pub data: PathBuf,
    /// Label column (0-based; negative counts from the end).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub label_col: i64,
    /// Separate one-column label file (then every data column is a feature).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Binarise a numeric target: label 1 above this value, 0 otherwise
    /// (e.g. diabetes progression above its median, 140.5).
    #[arg(long)]
    pub label_threshold: Option<f64>,
    /// CSV header handling.
    #[arg(long, value_enum, default_value = "auto")]
    pub header: Header,
    /// CSV delimiter (default: `,`, or whitespace when the first line has no comma).
    #[arg(long)]
    pub delimiter: Option<char>,
    /// Number of epochs.
    #[arg(long, default_value_t = 2)]
    pub epochs: u32,
    /// Batch size (every step uses exactly this many records).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Learning rate (rounded to the fixed-point grid).
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    /// Fractional bits of the fixed-point format.
    #[arg(long, default_value_t = zkaudit_model::fixed::DEFAULT_FRAC_BITS)]
    pub frac_bits: u32,
    /// Signed width of every stored fixed-point value.
    #[arg(long, default_value_t = zkaudit_model::fixed::DEFAULT_VALUE_BITS)]
    pub value_bits: u32,
    /// Public seed of the batch schedule, the test split and seeded initial weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of records held out for testing.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Feature scaling, fitted on the training split.
    #[arg(long, value_enum, default_value = "min-max")]
    pub scaling: Scale,
    /// Initial weights.
    #[arg(long, value_enum, default_value = "auto")]
    pub init: Init,
    /// Run directory to write transcript.bin and summary.json into.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `zkaudit train`.
pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let opts = TrainOptions {
        model: a.model,
        data: a.data,
        load: LoadOptions {
            header: match a.header {
                Header::Auto => HeaderMode::Auto,
                Header::Yes => HeaderMode::Present,
                Header::No => HeaderMode::Absent,
            },
            label_col: a.label_col,
            delimiter: a.delimiter,
            labels: a.labels,
            label_threshold: a.label_threshold,
        },
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        fx: FixedParams::new(a.frac_bits, a.value_bits)?,
        seed: a.seed,
        test_fraction: a.test_fraction,
        scaling: match a.scaling {
            Scale::MinMax => ScalingKind::MinMax,
            Scale::Standard => ScalingKind::Standard,
            Scale::None => ScalingKind::None,
        },
        init: match a.init {
            Init::Auto => InitChoice::Auto,
            Init::Seeded => InitChoice::Seeded,
        },
    };
    let mut bar: Option<indicatif::ProgressBar> = None;
    let (transcript, mut summary) = train::train(&opts, &mut |p| match p {
        Progress::Started { total_steps } => {
            bar = Some(super::progress_bar(total_steps as u64, "training"))
        }
        Progress::Step { done, batch_loss } => {
            if let Some(b) = &bar {
                b.set_position(done as u64);
                if done % 16 == 0 {
                    b.set_message(format!("batch loss {batch_loss:.3}"));
                }
            }
        }
        Progress::Evaluating => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
        }
    })?;
    train::write_run(&a.out, &transcript, &mut summary)
        .with_context(|| format!("writing the run to {}", a.out.display()))?;
    let s = &summary;
    println!(
        "trained {} ({} parameters, init {}) for {} steps ({} epochs x {} steps, batch {}, lr {} = {}/2^{})",
        s.architecture,
        s.parameters,
        s.init,
        s.steps,
        s.config.epochs,
        s.steps_per_epoch,
        s.config.batch_size,
        s.config.lr,
        s.config.lr_fx,
        s.config.fx.frac_bits
    );
    println!(
        "data: {} ({} records: {} train, {} test)",
        s.data.path, s.data.records, s.data.train_records, s.data.test_records
    );
    let runs = [
        ("fixed point (proven)", &s.fixed),
        ("f64 reference", &s.float),
    ];
    if s.fixed.test_rmse.is_some() {
        // A regression: RMSE in the target's units and R^2 on the held-out split.
        println!(
            "{:<22} {:>11} {:>11} {:>9} {:>10}",
            "run", "train RMSE", "test RMSE", "test R2", "loss"
        );
        for (name, m) in runs {
            println!(
                "{:<22} {:>11.4} {:>11.4} {:>9.4} {:>10.4}",
                name,
                m.train_rmse.unwrap_or(f64::NAN),
                m.test_rmse.unwrap_or(f64::NAN),
                m.test_accuracy,
                m.final_loss
            );
        }
    } else {
        println!(
            "{:<22} {:>10} {:>10} {:>10}",
            "run", "train acc", "test acc", "loss"
        );
        for (name, m) in runs {
            println!(
                "{:<22} {:>9.2}% {:>9.2}% {:>10.4}",
                name,
                100.0 * m.train_accuracy,
                100.0 * m.test_accuracy,
                m.final_loss
            );
        }
    }
    println!("wrote {}/transcript.bin and summary.json", a.out.display());
    Ok(())
}
