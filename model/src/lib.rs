//! zkaudit's model crate: the exact fixed-point arithmetic the circuits prove,
//! model and data importers, the deterministic training run with its f64
//! reference, and the training transcript.
//!
//! Module map:
//! - [`fixed`]: representation, ranges and the rounding rule;
//! - [`exp`]: the softmax exponential tables;
//! - [`arch`]: architecture and fixed-point weights;
//! - [`engine`]: one SGD step with every intermediate (the circuit's witness);
//! - [`float_ref`]: the f64 reference model;
//! - [`seed`]: deterministic public randomness;
//! - [`data`]: CSV/NPY import, scaling and the train/test split;
//! - [`spec`] and [`onnx`]: model import (native TOML/JSON spec, ONNX) and ONNX export;
//! - [`schedule`]: which records each step uses;
//! - [`train`]: the training run and its summary;
//! - [`transcript`]: the versioned file the prover consumes.

pub mod arch;
pub mod data;
pub mod engine;
pub mod error;
pub mod exp;
pub mod fixed;
pub mod float_ref;
pub mod onnx;
pub mod schedule;
pub mod seed;
pub mod spec;
pub mod stage;
pub mod tflite;
pub mod train;
pub mod transcript;

pub use arch::{Activation, Architecture, DenseSpec, LayerWeights, Weights};
pub use engine::{Engine, StepTrace};
pub use error::{ModelError, Result};
pub use fixed::FixedParams;
pub use stage::{ConvSpec, PoolSpec, Stage};
