//! The training transcript: everything the prover needs, in one versioned file.
//!
//! # File format
//! ```text
//! magic    8 bytes  "ZKAUDTR\0"
//! version  u32 LE   TRANSCRIPT_VERSION
//! length   u64 LE   payload length in bytes
//! checksum 32 bytes SHA-256 of the payload
//! payload           bincode (v1, little-endian, fixed-int) of `Transcript`
//! ```
//! A file with another magic, another version, a short payload or a wrong
//! checksum is rejected with a message saying which. Writes go to a temporary
//! file in the same directory, are synced, and renamed over the target, so a
//! crash leaves either the old file or the new one.
//!
//! The transcript is private: it holds the training data, every step's weights
//! and the commitment salts. Only commitments derived from it are published.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::arch::{Architecture, Weights};
use crate::data::{FixedDataset, Scaling, ScalingKind};
use crate::engine::{Engine, StepTrace};
use crate::error::{ModelError, Result};
use crate::fixed::FixedParams;
use crate::schedule::Schedule;

/// File magic.
pub const MAGIC: [u8; 8] = *b"ZKAUDTR\0";
/// Current format version.
pub const TRANSCRIPT_VERSION: u32 = 2;
/// Largest transcript accepted when reading.
pub const MAX_TRANSCRIPT_BYTES: u64 = 4 << 30;
const HEADER_LEN: usize = 8 + 4 + 8 + 32;

/// The public training configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Model display name.
    pub model_name: String,
    /// Architecture.
    pub arch: Architecture,
    /// Fixed-point format.
    pub fx: FixedParams,
    /// Number of epochs.
    pub epochs: u32,
    /// Batch size.
    pub batch_size: usize,
    /// Learning rate as given.
    pub lr: f64,
    /// Learning rate at scale `2^f`, `round(lr * 2^f)`: what is actually used.
    pub lr_fx: i64,
    /// Public seed of the schedule, split and seeded init.
    pub seed: u64,
    /// Fraction of records held out for testing.
    pub test_fraction: f64,
    /// Feature scaling.
    pub scaling: ScalingKind,
}

/// Where the initial weights came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitSource {
    /// Derived from the public seed; a verifier can recompute them.
    Seeded,
    /// Imported from a model file; private, committed at step 0.
    Imported {
        /// The model file.
        path: String,
        /// SHA-256 of the model file.
        sha256: String,
    },
}

/// Where the data came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSource {
    /// The features file.
    pub path: String,
    /// SHA-256 of the file(s).
    pub sha256: String,
    /// Records in the file.
    pub records: usize,
    /// Features per record.
    pub features: usize,
}

/// The records of one step's batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Indices into the training split, in schedule order.
    pub indices: Vec<u32>,
    /// Their features.
    pub features: Vec<Vec<i64>>,
    /// Their labels.
    pub labels: Vec<i64>,
}

/// Everything a prover needs to prove the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// Public configuration.
    pub config: TrainConfig,
    /// Origin of the initial weights.
    pub init: InitSource,
    /// Origin of the data.
    pub data_source: DataSource,
    /// Fitted feature scaling (applied before quantization).
    pub scaling: Scaling,
    /// The training split in fixed point: the committed dataset.
    pub train: FixedDataset,
    /// The held-out test split in fixed point.
    pub test: FixedDataset,
    /// `weights[t]` are the weights before step `t`; `T + 1` entries.
    pub weights: Vec<Weights>,
    /// Salt of the commitment to `weights[t]`; `T + 1` entries.
    pub weight_salts: Vec<u128>,
    /// Salt of each training record's Merkle leaf.
    pub leaf_salts: Vec<u128>,
}

impl Transcript {
    /// Number of SGD steps `T`.
    pub fn num_steps(&self) -> usize {
        self.weights.len().saturating_sub(1)
    }

    /// The public batch schedule.
    pub fn schedule(&self) -> Result<Schedule> {
        Schedule::new(self.config.seed, self.train.len(), self.config.batch_size)
    }

    /// The engine for this run's architecture and format.
    pub fn engine(&self) -> Engine {
        Engine::new(self.config.arch.clone(), self.config.fx)
    }

    /// Record indices, features and labels of step `t`'s batch.
    pub fn batch(&self, t: usize) -> Result<Batch> {
        if t >= self.num_steps() {
            return Err(ModelError::Config(format!(
                "step {t} does not exist; the run has {} steps",
                self.num_steps()
            )));
        }
        let idx = self.schedule()?.batch(t as u64);
        let xs = idx
            .iter()
            .map(|&i| self.train.features[i as usize].clone())
            .collect();
        let ys = idx.iter().map(|&i| self.train.labels[i as usize]).collect();
        Ok(Batch {
            indices: idx,
            features: xs,
            labels: ys,
        })
    }

    /// Recomputes step `t` and checks that it yields `weights[t + 1]`.
    pub fn replay_step(&self, t: usize) -> Result<StepTrace> {
        let b = self.batch(t)?;
        let trace =
            self.engine()
                .step(&self.weights[t], &b.features, &b.labels, self.config.lr_fx)?;
        if trace.new_weights != self.weights[t + 1] {
            return Err(ModelError::Config(format!(
                "transcript is inconsistent: replaying step {t} does not give the recorded weights of step {}",
                t + 1
            )));
        }
        Ok(trace)
    }

    /// Structural validation after decoding (shapes and counts agree).
    pub fn validate(&self) -> Result<()> {
        let arch = &self.config.arch;
        crate::train::check_run_params(&crate::train::RunParams {
            arch,
            fx: &self.config.fx,
            lr_fx: self.config.lr_fx,
            batch: self.config.batch_size,
            num_records: self.train.len(),
            num_steps: self.num_steps(),
        })?;
        for w in &self.weights {
            w.check_shape(arch)?;
        }
        if self.weights.is_empty() || self.weight_salts.len() != self.weights.len() {
            return Err(ModelError::Config(
                "weights and weight salts disagree in count".into(),
            ));
        }
        if self.train.features.len() != self.train.len()
            || self.test.features.len() != self.test.len()
        {
            return Err(ModelError::Config(
                "records and labels disagree in count".into(),
            ));
        }
        if self.leaf_salts.len() != self.train.len() {
            return Err(ModelError::Config(
                "leaf salts and training records disagree in count".into(),
            ));
        }
        if self
            .train
            .features
            .iter()
            .chain(&self.test.features)
            .any(|r| r.len() != arch.input_dim())
        {
            return Err(ModelError::Shape(format!(
                "a record does not have {} features",
                arch.input_dim()
            )));
        }
        Ok(())
    }

    /// Serializes with the header described in the module docs.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let payload = bincode::serialize(self)
            .map_err(|e| ModelError::Config(format!("cannot encode transcript: {e}")))?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&TRANSCRIPT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&Sha256::digest(&payload));
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Parses bytes produced by [`Transcript::to_bytes`]; `path` is for messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |m: String| ModelError::Transcript {
            path: path.to_path_buf(),
            message: m,
        };
        if bytes.len() < 8 || bytes[..8] != MAGIC {
            return Err(bad(
                "not a zkaudit transcript (bad magic); expected a file written by `zkaudit train`"
                    .into(),
            ));
        }
        if bytes.len() < HEADER_LEN {
            return Err(bad("truncated header".into()));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != TRANSCRIPT_VERSION {
            return Err(bad(format!(
                "transcript format version {version} is not supported by this zkaudit (which reads version {TRANSCRIPT_VERSION}); re-run `zkaudit train`"
            )));
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&bytes[12..20]);
        let len = u64::from_le_bytes(len8);
        let payload = &bytes[HEADER_LEN..];
        if payload.len() as u64 != len {
            return Err(bad(format!(
                "payload is {} bytes, header says {len}: file truncated or corrupt",
                payload.len()
            )));
        }
        if Sha256::digest(payload).as_slice() != &bytes[20..52] {
            return Err(bad("checksum mismatch: the file is corrupt".into()));
        }
        let t: Transcript = bincode::deserialize(payload)
            .map_err(|e| bad(format!("cannot decode payload: {e}")))?;
        t.validate().map_err(|e| bad(e.to_string()))?;
        Ok(t)
    }

    /// Writes the transcript atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    /// Reads and validates a transcript file.
    pub fn read(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
        if meta.len() > MAX_TRANSCRIPT_BYTES {
            return Err(ModelError::Transcript {
                path: path.to_path_buf(),
                message: format!("larger than the supported {MAX_TRANSCRIPT_BYTES} bytes"),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Reads `DIR/transcript.bin` of a run directory.
    pub fn read_run(dir: &Path) -> Result<Self> {
        Self::read(&dir.join(TRANSCRIPT_FILE))
    }

    /// The public fixed-point format and architecture, for convenience.
    pub fn shape(&self) -> (&Architecture, &FixedParams) {
        (&self.config.arch, &self.config.fx)
    }
}

/// File name of the transcript inside a run directory.
pub const TRANSCRIPT_FILE: &str = "transcript.bin";
/// File name of the summary inside a run directory.
pub const SUMMARY_FILE: &str = "summary.json";

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| ModelError::io(path, e))
}
