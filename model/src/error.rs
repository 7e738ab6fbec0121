//! The error type of the model crate: every variant names what the user must fix.

use std::path::PathBuf;

/// Everything that can go wrong in the engine, the importers and the transcript.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A fixed-point value left its declared range; names the layer and tensor.
    #[error(
        "fixed-point overflow in {layer}, tensor `{tensor}` at index {index}: value {value} \
         is outside [-2^{bits_minus_one}, 2^{bits_minus_one}) (raise --value-bits or lower --lr/--frac-bits)",
        bits_minus_one = value_bits - 1
    )]
    Overflow {
        /// Human-readable layer name, e.g. `layer 1 (dense 16->10)`.
        layer: String,
        /// Tensor name, e.g. `z`, `weight`, `input_grad`.
        tensor: &'static str,
        /// Flat index of the offending element.
        index: usize,
        /// The value that overflowed (as a wide integer).
        value: i128,
        /// The configured signed width of stored values.
        value_bits: u32,
    },
    /// A static bound on an accumulator exceeds what the circuit field can hold.
    #[error("{0}")]
    Bound(String),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Tensor or model shapes do not agree.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A data file has a malformed value; names file, line and column (1-based).
    #[error("{}:{line}:{column}: {message}", path.display())]
    Data {
        /// The data file.
        path: PathBuf,
        /// 1-based line (CSV) or row (NPY: data row, 1-based).
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A data file is malformed as a whole (bad header, empty file, bad dtype).
    #[error("{}: {message}", path.display())]
    DataFile {
        /// The data file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A model specification (TOML/JSON) is invalid.
    #[error("{}: {message}", path.display())]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An ONNX model uses something zkaudit does not support; names node and op.
    #[error("{}: node `{node}` (op {op}): {message}", path.display())]
    OnnxNode {
        /// The ONNX file.
        path: PathBuf,
        /// Node name (or output name when the node is unnamed).
        node: String,
        /// Operator type.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// An ONNX model is malformed as a whole.
    #[error("{}: {message}", path.display())]
    Onnx {
        /// The ONNX file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A TFLite model uses something zkaudit does not support, or is
    /// malformed; names the operator and its index where one is at fault.
    #[error("{}: {message}", path.display())]
    Tflite {
        /// The TFLite file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A transcript file cannot be used.
    #[error("{}: {message}", path.display())]
    Transcript {
        /// The transcript file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Result alias of the model crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}
