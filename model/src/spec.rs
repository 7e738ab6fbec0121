//! Model import: the native spec (TOML or JSON) and dispatch to ONNX.
//!
//! A native spec names the input width and the dense layers; initial weights
//! then come from the public seed ([`crate::Weights::seeded`]):
//!
//! ```toml
//! name = "digits-mlp"
//! inputs = 64
//! [[layers]]
//! outputs = 16
//! activation = "relu"
//! [[layers]]
//! outputs = 10            # logits; softmax cross-entropy is the loss
//! ```
//!
//! A convolutional model gives its input shape (channels, height, width)
//! and its stages before the dense layers; each stage's input shape follows
//! from the previous one:
//!
//! ```toml
//! name = "digits-cnn"
//! input_shape = [1, 8, 8]
//! [[stages]]
//! kind = "conv"
//! out_channels = 8
//! kernel = 3
//! padding = 1              # stride 1 by default
//! activation = "relu"
//! [[stages]]
//! kind = "avgpool"
//! kernel = 2
//! [[layers]]
//! outputs = 10
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::arch::{Activation, Architecture, DenseSpec};
use crate::error::{ModelError, Result};
use crate::stage::{ConvSpec, PoolSpec, Stage};

/// Largest accepted model file.
pub const MAX_MODEL_BYTES: u64 = 256 << 20;

/// One layer of a native spec.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Output width.
    pub outputs: usize,
    /// `relu` or `none` (default `none`).
    #[serde(default = "default_activation")]
    pub activation: Activation,
}

fn default_activation() -> Activation {
    Activation::None
}

/// One convolution or pooling stage of a native spec.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StageSpec {
    /// A convolution.
    Conv {
        /// Output channels.
        out_channels: usize,
        /// Kernel size (square).
        kernel: usize,
        /// Stride (default 1).
        #[serde(default = "one")]
        stride: usize,
        /// Zero padding (default 0).
        #[serde(default)]
        padding: usize,
        /// Activation (default `none`).
        #[serde(default = "default_activation")]
        activation: Activation,
    },
    /// An average pooling over `kernel x kernel` windows.
    Avgpool {
        /// Window size and stride.
        kernel: usize,
    },
    /// A max pooling over `kernel x kernel` windows.
    Maxpool {
        /// Window size and stride.
        kernel: usize,
    },
}

fn one() -> usize {
    1
}

/// A native model spec file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Number of input features (a dense model's; implied by `input_shape`).
    #[serde(default)]
    pub inputs: Option<usize>,
    /// Input shape `[channels, height, width]` of a model with stages.
    #[serde(default)]
    pub input_shape: Option<[usize; 3]>,
    /// Convolution and pooling stages before the dense layers.
    #[serde(default)]
    pub stages: Vec<StageSpec>,
    /// The dense layers, input first.
    pub layers: Vec<LayerSpec>,
}

/// A model read from a file: its shape and, for ONNX, real initial weights.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedModel {
    /// The file it came from.
    pub path: PathBuf,
    /// Display name.
    pub name: String,
    /// The shape.
    pub arch: Architecture,
    /// Initial weights per layer (`[inputs][outputs]` row-major, bias), if the file has them.
    pub initial: Option<Vec<(Vec<f64>, Vec<f64>)>>,
}

/// Loads a model from `.toml`, `.json`, `.onnx` or `.tflite`.
pub fn load_model(path: &Path) -> Result<ImportedModel> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    if meta.len() > MAX_MODEL_BYTES {
        return Err(ModelError::Spec {
            path: path.to_path_buf(),
            message: format!("model file is larger than {MAX_MODEL_BYTES} bytes"),
        });
    }
    match ext.as_str() {
        "onnx" => crate::onnx::import(path),
        "tflite" => crate::tflite::import(path),
        "toml" | "json" => {
            let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
            let spec: ModelSpec = if ext == "toml" {
                toml::from_str(&text).map_err(|e| ModelError::Spec {
                    path: path.to_path_buf(),
                    message: e.to_string().trim().replace('\n', " "),
                })?
            } else {
                serde_json::from_str(&text).map_err(|e| ModelError::Spec {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
            };
            from_spec(path, spec)
        }
        _ => Err(ModelError::Spec {
            path: path.to_path_buf(),
            message: "unknown model format (expected .toml, .json, .onnx or .tflite)".into(),
        }),
    }
}

/// The stages of a spec, each taking the previous one's output shape.
fn stages_of(spec: &ModelSpec) -> std::result::Result<(Vec<Stage>, usize), String> {
    let Some([mut c, mut h, mut w]) = spec.input_shape else {
        if !spec.stages.is_empty() {
            return Err("a model with stages needs input_shape = [channels, height, width]".into());
        }
        return spec
            .inputs
            .map(|n| (Vec::new(), n))
            .ok_or_else(|| "the spec needs `inputs` (or `input_shape` with stages)".into());
    };
    let mut stages = Vec::with_capacity(spec.stages.len());
    for (i, st) in spec.stages.iter().enumerate() {
        let stage = match *st {
            StageSpec::Conv {
                out_channels,
                kernel,
                stride,
                padding,
                activation,
            } => Stage::Conv(ConvSpec {
                in_channels: c,
                height: h,
                width: w,
                out_channels,
                kernel,
                stride,
                padding,
                activation,
            }),
            StageSpec::Avgpool { kernel } => Stage::AvgPool(PoolSpec {
                channels: c,
                height: h,
                width: w,
                kernel,
            }),
            StageSpec::Maxpool { kernel } => Stage::MaxPool(PoolSpec {
                channels: c,
                height: h,
                width: w,
                kernel,
            }),
        };
        stage.validate(i).map_err(|e| e.to_string())?;
        (c, h, w) = stage.output_shape();
        stages.push(stage);
    }
    let n = c * h * w;
    match spec.inputs {
        Some(i) if i != n => Err(format!(
            "inputs = {i} but input_shape and stages give {c}x{h}x{w} = {n} values to the first layer"
        )),
        _ => Ok((stages, n)),
    }
}

fn from_spec(path: &Path, spec: ModelSpec) -> Result<ImportedModel> {
    let spec_err = |message: String| ModelError::Spec {
        path: path.to_path_buf(),
        message,
    };
    let (stages, mut width) = stages_of(&spec).map_err(spec_err)?;
    let mut layers = Vec::with_capacity(spec.layers.len());
    for l in &spec.layers {
        layers.push(DenseSpec {
            inputs: width,
            outputs: l.outputs,
            activation: l.activation,
        });
        width = l.outputs;
    }
    let arch = Architecture::with_stages(stages, layers).map_err(|e| spec_err(e.to_string()))?;
    let name = spec.name.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    Ok(ImportedModel {
        path: path.to_path_buf(),
        name,
        arch,
        initial: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn bundled_specs_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models");
        let m = load_model(&root.join("digits_mlp.toml")).unwrap();
        assert_eq!(m.arch.describe(), "64-16(relu)-10");
        let c = load_model(&root.join("cancer_logreg.toml")).unwrap();
        assert_eq!(c.arch.describe(), "30-2");
    }

    /// The bundled CNN spec: stages chained from the input shape, and an
    /// architecture that survives bincode (the transcript's encoding).
    #[test]
    fn cnn_spec_and_its_encoding() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/digits_cnn.toml");
        let m = load_model(&p).unwrap();
        assert_eq!(m.arch.describe(), "1x8x8-conv3x3/8p1(relu)-avgpool2-128-10");
        assert_eq!(m.arch.input_dim(), 64);
        assert_eq!(m.arch.num_params(), 8 * 9 + 8 + 128 * 10 + 10);
        let bytes = bincode::serialize(&m.arch).unwrap();
        let back: Architecture = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, m.arch);
        let d = tempfile::tempdir().unwrap();
        let p = write(
            &d,
            "bad.toml",
            "input_shape = [1, 8, 8]\n[[stages]]\nkind = \"conv\"\nout_channels = 2\nkernel = 3\n[[layers]]\noutputs = 10\ninputs = 5\n",
        );
        let e = load_model(&p).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
        let p = write(
            &d,
            "big.toml",
            "input_shape = [1, 4, 4]\n[[stages]]\nkind = \"conv\"\nout_channels = 2\nkernel = 5\n[[layers]]\noutputs = 10\n",
        );
        let e = load_model(&p).unwrap_err().to_string();
        assert!(
            e.contains("stage 0") && e.contains("larger than the padded input"),
            "{e}"
        );
        // A huge padded kernel over a tiny input would materialise 200^4 patch entries.
        let p = write(
            &d,
            "patches.toml",
            "input_shape = [1, 1, 1]\n[[stages]]\nkind = \"conv\"\nout_channels = 1\nkernel = 200\npadding = 199\n[[layers]]\noutputs = 2\n",
        );
        let e = load_model(&p).unwrap_err().to_string();
        assert!(
            e.contains("patch matrix") && e.contains("patches.toml"),
            "{e}"
        );
    }

    #[test]
    fn json_spec() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            &d,
            "m.json",
            r#"{"inputs": 4, "layers": [{"outputs": 3, "activation": "relu"}, {"outputs": 3}]}"#,
        );
        assert_eq!(load_model(&p).unwrap().arch.describe(), "4-3(relu)-3");
        let p = write(
            &d,
            "s.json",
            r#"{"inputs": 4, "layers": [{"outputs": 3, "activation": "tanh"}, {"outputs": 1, "activation": "sigmoid"}]}"#,
        );
        let m = load_model(&p).unwrap();
        assert_eq!(m.arch.describe(), "4-3(tanh)-1(sigmoid)");
        assert_eq!(m.arch.loss(), crate::arch::Loss::SigmoidBinaryCrossEntropy);
        assert_eq!(m.arch.num_classes(), 2);
    }

    #[test]
    fn spec_errors_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            &d,
            "bad.toml",
            "inputs = 4\n[[layers]]\noutputs = 3\nactivation = \"gelu\"\n",
        );
        let e = load_model(&p).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("gelu"), "{e}");
        let p = write(
            &d,
            "relu_last.toml",
            "inputs = 4\n[[layers]]\noutputs = 3\nactivation = \"relu\"\n",
        );
        let e = load_model(&p).unwrap_err().to_string();
        assert!(
            e.contains("activation relu") && e.contains("names the loss"),
            "{e}"
        );
        let p = write(
            &d,
            "wide_sigmoid.toml",
            "inputs = 4\n[[layers]]\noutputs = 3\nactivation = \"sigmoid\"\n",
        );
        let e = load_model(&p).unwrap_err().to_string();
        assert!(e.contains("exactly 1 output"), "{e}");
        let p = write(&d, "typo.toml", "inputs = 4\nlayer = []\n");
        assert!(load_model(&p)
            .unwrap_err()
            .to_string()
            .contains("typo.toml"));
        let p = write(&d, "m.yaml", "x");
        assert!(load_model(&p)
            .unwrap_err()
            .to_string()
            .contains("unknown model format"));
    }
}
