//! The training run: deterministic fixed-point SGD, the f64 reference on the
//! same initial weights, data and schedule, and the run summary.
//!
//! The f64 reference trains on the *dequantized* fixed-point features, so both
//! runs see identical data and differ only in arithmetic. Metrics: accuracy on
//! the training split and on the seeded test split, and the mean cross-entropy
//! over the training split with the final weights (`final_loss`).

use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::arch::{Architecture, Weights};
use crate::data::{self, FixedDataset, LoadOptions, Scaling, ScalingKind};
use crate::engine::Engine;
use crate::error::{ModelError, Result};
use crate::fixed::FixedParams;
use crate::float_ref::FloatModel;
use crate::schedule::Schedule;
use crate::spec;
use crate::transcript::{DataSource, InitSource, TrainConfig, Transcript};

/// Largest number of steps one run may have (bounds the transcript size).
pub const MAX_STEPS: usize = 1 << 20;

/// Largest batch size.
pub const MAX_BATCH: usize = 1 << 12;

/// Most training records of a run (the dataset tree has at most `2^24` leaves).
pub const MAX_RECORDS: usize = 1 << 24;

/// The public parameters of a run, checked by [`check_run_params`].
#[derive(Clone, Copy, Debug)]
pub struct RunParams<'a> {
    /// Architecture.
    pub arch: &'a Architecture,
    /// Fixed-point format.
    pub fx: &'a FixedParams,
    /// Learning rate at scale `2^f`.
    pub lr_fx: i64,
    /// Batch size.
    pub batch: usize,
    /// Training records.
    pub num_records: usize,
    /// Total SGD steps.
    pub num_steps: usize,
}

/// Validates a run's public parameters: the one check `train` applies to
/// what it is given, the coordinator to an uploaded transcript, and every
/// verifier to a deserialised certificate or proof before deriving keys from
/// it (the circuits' no-overflow argument rests on these bounds). Errors
/// name the field and value.
pub fn check_run_params(p: &RunParams) -> Result<()> {
    p.fx.validate()?;
    p.arch.validate()?;
    let bad = |m: String| Err(ModelError::Config(m));
    if p.lr_fx <= 0 || p.lr_fx > p.fx.max_value() {
        return bad(format!(
            "lr_fx {} is not a positive learning rate at {} fractional bits (1..={})",
            p.lr_fx,
            p.fx.frac_bits,
            p.fx.max_value()
        ));
    }
    if p.num_records == 0 || p.num_records > MAX_RECORDS {
        return bad(format!(
            "num_records {} is outside 1..={MAX_RECORDS}",
            p.num_records
        ));
    }
    if p.batch == 0 || p.batch > MAX_BATCH || p.batch > p.num_records {
        return bad(format!(
            "batch_size {} is outside 1..={} (at most {MAX_BATCH} and the {} training records)",
            p.batch,
            MAX_BATCH.min(p.num_records),
            p.num_records
        ));
    }
    if p.num_steps == 0 || p.num_steps > MAX_STEPS {
        return bad(format!(
            "num_steps {} is outside 1..={MAX_STEPS}",
            p.num_steps
        ));
    }
    p.arch.check_bounds(p.fx, p.batch, p.lr_fx)
}

/// How to choose the initial weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InitChoice {
    /// Imported when the model file has weights (ONNX), else seeded.
    #[default]
    Auto,
    /// Always derived from the public seed.
    Seeded,
}

/// Everything `zkaudit train` needs.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Model file (`.toml`, `.json`, `.onnx`).
    pub model: PathBuf,
    /// Data file (CSV, gzipped CSV or NPY).
    pub data: PathBuf,
    /// Data loader options.
    pub load: LoadOptions,
    /// Number of epochs.
    pub epochs: u32,
    /// Batch size.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// Fixed-point format.
    pub fx: FixedParams,
    /// Public seed.
    pub seed: u64,
    /// Fraction held out for testing.
    pub test_fraction: f64,
    /// Feature scaling.
    pub scaling: ScalingKind,
    /// Initial weights.
    pub init: InitChoice,
}

/// Progress reported while training.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    /// Training begins with this many steps.
    Started {
        /// Total steps.
        total_steps: usize,
    },
    /// A fixed-point step finished.
    Step {
        /// Steps done.
        done: usize,
        /// Mean loss of the batch.
        batch_loss: f64,
    },
    /// Evaluation of both runs begins.
    Evaluating,
}

/// Accuracy and loss of one run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Accuracy on the training split (a regression's `R^2`).
    pub train_accuracy: f64,
    /// Accuracy on the held-out split (a regression's `R^2`).
    pub test_accuracy: f64,
    /// Mean loss on the training split with the final weights.
    pub final_loss: f64,
    /// A regression's root mean squared error on the training split, in
    /// the target's units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_rmse: Option<f64>,
    /// A regression's root mean squared error on the held-out split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_rmse: Option<f64>,
}

/// The figures of a model on one split: accuracy (a regression's `R^2`),
/// mean loss, and a regression's RMSE, from `(prediction, label, loss)`
/// per record (a classifier's prediction and label are class indices).
fn score(regression: bool, rows: impl Iterator<Item = (f64, f64, f64)>) -> (f64, f64, Option<f64>) {
    let rows: Vec<_> = rows.collect();
    if rows.is_empty() {
        return (f64::NAN, f64::NAN, None);
    }
    let n = rows.len() as f64;
    let loss = rows.iter().map(|r| r.2).sum::<f64>() / n;
    if !regression {
        let correct = rows.iter().filter(|r| r.0 == r.1).count() as f64;
        return (correct / n, loss, None);
    }
    let sse: f64 = rows.iter().map(|r| (r.0 - r.1).powi(2)).sum();
    let mean = rows.iter().map(|r| r.1).sum::<f64>() / n;
    let sst: f64 = rows.iter().map(|r| (r.1 - mean).powi(2)).sum();
    (
        1.0 - sse / sst.max(f64::MIN_POSITIVE),
        loss,
        Some((sse / n).sqrt()),
    )
}

/// The machine-readable `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Model name.
    pub model: String,
    /// Architecture, e.g. `64-16(relu)-10`.
    pub architecture: String,
    /// Number of parameters.
    pub parameters: usize,
    /// The public configuration.
    pub config: TrainConfig,
    /// `seeded` or `imported`.
    pub init: String,
    /// Data file, hash and record counts.
    pub data: DataSummary,
    /// Number of SGD steps.
    pub steps: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// The fixed-point run.
    pub fixed: Metrics,
    /// The f64 reference run.
    pub float: Metrics,
    /// SHA-256 of the transcript file.
    pub transcript_sha256: String,
}

/// Data details in the summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// The data file.
    pub path: String,
    /// Its SHA-256.
    pub sha256: String,
    /// Records in the file.
    pub records: usize,
    /// Training records (the committed dataset).
    pub train_records: usize,
    /// Held-out records.
    pub test_records: usize,
}

fn fresh_salt() -> u128 {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    u128::from_le_bytes(b)
}

/// Accuracy (a regression's `R^2`), mean loss and a regression's RMSE of
/// fixed-point weights on a dataset.
pub fn evaluate_fixed(
    engine: &Engine,
    w: &Weights,
    ds: &FixedDataset,
) -> Result<(f64, f64, Option<f64>)> {
    let fx = engine.fx;
    let reg = engine.arch.is_regression();
    let rows = ds
        .features
        .iter()
        .zip(&ds.labels)
        .map(|(x, &y)| {
            let s = engine.forward(w, x)?;
            let loss = engine.loss(&s, y);
            Ok(if reg {
                (fx.dequantize(s.output()), fx.dequantize(y), loss)
            } else {
                (s.prediction() as f64, y as f64, loss)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(score(reg, rows.into_iter()))
}

fn evaluate_float(m: &FloatModel, xs: &[Vec<f64>], ys: &[f64]) -> (f64, f64, Option<f64>) {
    let reg = m.arch.is_regression();
    score(
        reg,
        xs.iter().zip(ys).map(|(x, &y)| {
            let p = if reg {
                m.output(x)
            } else {
                m.predict(x) as f64
            };
            (p, y, m.loss(x, y))
        }),
    )
}

/// Labels as the f64 reference reads them: class indices, or (for a
/// regression, whose labels are fixed-point targets) real targets.
fn label_values(ys: &[i64], fx: &FixedParams, regression: bool) -> Vec<f64> {
    ys.iter()
        .map(|&y| {
            if regression {
                fx.dequantize(y)
            } else {
                y as f64
            }
        })
        .collect()
}

fn dequantize_rows(fx: &FixedParams, rows: &[Vec<i64>]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|r| r.iter().map(|&v| fx.dequantize(v)).collect())
        .collect()
}

fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// Runs training and returns the transcript and the summary (without the
/// transcript hash, which [`write_run`] fills in).
pub fn train(
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Transcript, Summary)> {
    let fx = opts.fx;
    if opts.epochs == 0 {
        return Err(ModelError::Config("--epochs must be at least 1".into()));
    }
    if !(opts.lr.is_finite() && opts.lr > 0.0) {
        return Err(ModelError::Config(format!(
            "--lr must be a positive number, got {}",
            opts.lr
        )));
    }
    let lr_fx = fx
        .quantize(opts.lr)
        .filter(|&v| v > 0)
        .ok_or_else(|| ModelError::Config(format!(
            "--lr {} is not representable with {} fractional bits (it must be at least 2^-{} and in range)",
            opts.lr, fx.frac_bits, fx.frac_bits + 1
        )))?;
    let model = spec::load_model(&opts.model)?;
    let arch: Architecture = model.arch.clone();
    let raw = data::load(&opts.data, &opts.load)?;
    if raw.num_features() != arch.input_dim() {
        return Err(ModelError::Shape(format!(
            "{} has {} feature columns but model {} ({}) takes {} inputs",
            opts.data.display(),
            raw.num_features(),
            opts.model.display(),
            arch.describe(),
            arch.input_dim()
        )));
    }
    let regression = arch.is_regression();
    raw.check_labels((!regression).then(|| arch.num_classes()))?;
    arch.check_bounds(&fx, opts.batch_size, lr_fx)?;

    let (train_idx, test_idx) = data::split(raw.len(), opts.test_fraction, opts.seed)?;
    let train_rows: Vec<&Vec<f64>> = train_idx.iter().map(|&i| &raw.features[i]).collect();
    let scaling = Scaling::fit(opts.scaling, &train_rows, raw.num_features());
    let train = data::quantize(&raw, &train_idx, &scaling, &fx, regression)?;
    let test = data::quantize(&raw, &test_idx, &scaling, &fx, regression)?;

    let schedule = Schedule::new(opts.seed, train.len(), opts.batch_size)?;
    let total = schedule.steps_per_epoch() * opts.epochs as usize;
    check_run_params(&RunParams {
        arch: &arch,
        fx: &fx,
        lr_fx,
        batch: opts.batch_size,
        num_records: train.len(),
        num_steps: total,
    })?;

    let (w0, init) = match (&model.initial, opts.init) {
        (Some(real), InitChoice::Auto) => (
            Weights::quantize(&arch, &fx, real)?,
            InitSource::Imported {
                path: opts.model.display().to_string(),
                sha256: file_sha256(&opts.model)?,
            },
        ),
        _ => (Weights::seeded(&arch, &fx, opts.seed), InitSource::Seeded),
    };

    let engine = Engine::new(arch.clone(), fx);
    let mut fm = FloatModel::from_fixed(&arch, &fx, &w0);
    let train_f = dequantize_rows(&fx, &train.features);
    let test_f = dequantize_rows(&fx, &test.features);

    progress(Progress::Started { total_steps: total });
    let mut weights = Vec::with_capacity(total + 1);
    weights.push(w0);
    let spe = schedule.steps_per_epoch();
    for epoch in 0..opts.epochs as u64 {
        let order = schedule.epoch_order(epoch);
        for s in 0..spe {
            let idx = &order[s * opts.batch_size..(s + 1) * opts.batch_size];
            let xs: Vec<Vec<i64>> = idx
                .iter()
                .map(|&i| train.features[i as usize].clone())
                .collect();
            let ys: Vec<i64> = idx.iter().map(|&i| train.labels[i as usize]).collect();
            let cur = weights
                .last()
                .ok_or_else(|| ModelError::Config("no weights".into()))?;
            let trace = engine
                .step(cur, &xs, &ys, lr_fx)
                .map_err(|e| ModelError::Config(format!("step {}: {e}", weights.len() - 1)))?;
            let batch_loss = trace
                .samples
                .iter()
                .zip(&ys)
                .map(|(s, &y)| engine.loss(s, y))
                .sum::<f64>()
                / ys.len() as f64;
            weights.push(trace.new_weights);
            let fxs: Vec<Vec<f64>> = idx.iter().map(|&i| train_f[i as usize].clone()).collect();
            fm.step(&fxs, &label_values(&ys, &fx, regression), opts.lr);
            progress(Progress::Step {
                done: weights.len() - 1,
                batch_loss,
            });
        }
    }
    progress(Progress::Evaluating);
    let last = weights
        .last()
        .ok_or_else(|| ModelError::Config("no weights".into()))?;
    let (train_acc, train_loss, train_rmse) = evaluate_fixed(&engine, last, &train)?;
    let (test_acc, _, test_rmse) = evaluate_fixed(&engine, last, &test)?;
    let (ftrain_acc, ftrain_loss, ftrain_rmse) =
        evaluate_float(&fm, &train_f, &label_values(&train.labels, &fx, regression));
    let (ftest_acc, _, ftest_rmse) =
        evaluate_float(&fm, &test_f, &label_values(&test.labels, &fx, regression));

    let config = TrainConfig {
        model_name: model.name.clone(),
        arch: arch.clone(),
        fx,
        epochs: opts.epochs,
        batch_size: opts.batch_size,
        lr: opts.lr,
        lr_fx,
        seed: opts.seed,
        test_fraction: opts.test_fraction,
        scaling: opts.scaling,
    };
    let weight_salts = (0..weights.len()).map(|_| fresh_salt()).collect();
    let leaf_salts = (0..train.len()).map(|_| fresh_salt()).collect();
    let summary = Summary {
        model: model.name,
        architecture: arch.describe(),
        parameters: arch.num_params(),
        config: config.clone(),
        init: match init {
            InitSource::Seeded => "seeded".into(),
            InitSource::Imported { .. } => "imported".into(),
        },
        data: DataSummary {
            path: opts.data.display().to_string(),
            sha256: raw.sha256.clone(),
            records: raw.len(),
            train_records: train.len(),
            test_records: test.len(),
        },
        steps: total,
        steps_per_epoch: spe,
        fixed: Metrics {
            train_accuracy: train_acc,
            test_accuracy: test_acc,
            final_loss: train_loss,
            train_rmse,
            test_rmse,
        },
        float: Metrics {
            train_accuracy: ftrain_acc,
            test_accuracy: ftest_acc,
            final_loss: ftrain_loss,
            train_rmse: ftrain_rmse,
            test_rmse: ftest_rmse,
        },
        transcript_sha256: String::new(),
    };
    let transcript = Transcript {
        config,
        init,
        data_source: DataSource {
            path: opts.data.display().to_string(),
            records: raw.len(),
            sha256: raw.sha256,
            features: arch.input_dim(),
        },
        scaling,
        train,
        test,
        weights,
        weight_salts,
        leaf_salts,
    };
    Ok((transcript, summary))
}

/// Writes `DIR/transcript.bin` and `DIR/summary.json` (both atomically).
pub fn write_run(dir: &Path, transcript: &Transcript, summary: &mut Summary) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let bytes = transcript.to_bytes()?;
    summary.transcript_sha256 = hex::encode(Sha256::digest(&bytes));
    crate::transcript::write_atomic(&dir.join(crate::transcript::TRANSCRIPT_FILE), &bytes)?;
    let json = serde_json::to_vec_pretty(summary).map_err(|e| ModelError::Config(e.to_string()))?;
    crate::transcript::write_atomic(&dir.join(crate::transcript::SUMMARY_FILE), &json)
}

#[cfg(test)]
mod tests;
