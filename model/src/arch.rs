//! Model architecture (a chain of dense layers) and fixed-point weights.
//!
//! The model is `x -> dense_0 -> act_0 -> ... -> dense_{L-1} -> logits`. Hidden
//! layers use ReLU, sigmoid, tanh or no activation. The last layer's
//! activation names the loss: none (at least 2 outputs) is softmax
//! cross-entropy on the logits; sigmoid (exactly 1 output) is binary
//! cross-entropy on `sigmoid(z)`, labels 0 and 1; a single output without
//! activation is a regression trained on mean squared error ([`Loss`]).
//! Weights are stored row-major as `[inputs][outputs]`, so a forward pass is
//! `z_j = sum_i x_i * w[i][j] + b_j`.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::fixed::FixedParams;
use crate::seed::SeedRng;
use crate::stage::{ConvSpec, Stage};

/// Largest accumulator magnitude (in bits) any operation may produce. The
/// native engine computes in `i128`; the circuit field (BN254, 254 bits) has
/// far more room, so this is the binding limit.
pub const MAX_ACCUMULATOR_BITS: u32 = 120;

/// Largest supported layer width (inputs or outputs).
pub const MAX_LAYER_WIDTH: usize = 1 << 16;

/// Most layers a model may have.
pub const MAX_LAYERS: usize = 64;

/// Most trainable parameters a model may have.
pub const MAX_PARAMS: usize = 1 << 24;

/// Activation after a dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `max(0, z)`, with the mask `z >= 0` kept for the backward pass.
    Relu,
    /// Identity.
    None,
    /// `1 / (1 + e^-z)`, evaluated as the probability of `z` in a softmax of
    /// `[0, z]` (see [`crate::engine::Engine::sigmoid`]).
    Sigmoid,
    /// `(e^z - e^-z) / (e^z + e^-z)`, evaluated as `2 p - 1` with `p` the
    /// probability of `z` in a softmax of `[-z, z]`.
    Tanh,
}

impl Activation {
    /// The name used in specs, descriptions and messages.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::None => "none",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }
}

/// The training loss, named by the last layer's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Loss {
    /// Softmax cross-entropy on the logits (last layer without activation,
    /// at least 2 outputs, labels `0..outputs`).
    SoftmaxCrossEntropy,
    /// Binary cross-entropy on `sigmoid(z)` of the single output (labels 0
    /// and 1). It is softmax cross-entropy on the two logits `[0, z]`, which
    /// is how the engine and the circuit compute it.
    SigmoidBinaryCrossEntropy,
    /// Mean squared error `(z - y)^2 / 2` of a single linear output against
    /// a real target `y` (a regression; labels are fixed-point targets).
    MeanSquaredError,
}

/// One dense layer's shape and activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DenseSpec {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// Activation applied to the output.
    pub activation: Activation,
}

/// Feature-extraction stages ([`Stage`]) then a chain of dense layers
/// ending in logits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Architecture {
    /// Convolutions and poolings before the dense layers, input first (none
    /// for a multi-layer perceptron).
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// The dense layers, input first.
    pub layers: Vec<DenseSpec>,
}

impl Architecture {
    /// Validates a chain of dense layers.
    pub fn new(layers: Vec<DenseSpec>) -> Result<Self> {
        Architecture::with_stages(Vec::new(), layers)
    }

    /// Validates feature-extraction stages followed by dense layers: each
    /// stage takes the previous one's output shape, and the first dense
    /// layer the last stage's output flattened.
    pub fn with_stages(stages: Vec<Stage>, layers: Vec<DenseSpec>) -> Result<Self> {
        if stages.len() > MAX_LAYERS {
            return Err(ModelError::Shape(format!(
                "a model has at most {MAX_LAYERS} convolution and pooling stages, got {}",
                stages.len()
            )));
        }
        for (i, st) in stages.iter().enumerate() {
            st.validate(i)?;
            if i > 0 && stages[i - 1].output_shape() != st.input_shape() {
                let (a, b, c) = stages[i - 1].output_shape();
                let (d, e, f) = st.input_shape();
                return Err(ModelError::Shape(format!(
                    "stage {i} ({}) takes {d}x{e}x{f} but stage {} produces {a}x{b}x{c}",
                    st.describe(),
                    i - 1
                )));
            }
        }
        if let (Some(st), Some(first)) = (stages.last(), layers.first()) {
            let (_, out) = st.sizes();
            if out != first.inputs {
                let (a, b, c) = st.output_shape();
                return Err(ModelError::Shape(format!(
                    "layer 0 takes {} inputs but the last stage ({}) produces {a}x{b}x{c} = {out} values",
                    first.inputs,
                    st.describe()
                )));
            }
        }
        if layers.is_empty() || layers.len() > MAX_LAYERS {
            return Err(ModelError::Shape(format!(
                "a model needs 1..={MAX_LAYERS} dense layers, got {}",
                layers.len()
            )));
        }
        for (i, l) in layers.iter().enumerate() {
            if l.inputs == 0
                || l.outputs == 0
                || l.inputs > MAX_LAYER_WIDTH
                || l.outputs > MAX_LAYER_WIDTH
            {
                return Err(ModelError::Shape(format!(
                    "layer {i}: widths must be in 1..={MAX_LAYER_WIDTH}, got {}->{}",
                    l.inputs, l.outputs
                )));
            }
            if i > 0 && layers[i - 1].outputs != l.inputs {
                return Err(ModelError::Shape(format!(
                    "layer {i} takes {} inputs but layer {} produces {}",
                    l.inputs,
                    i - 1,
                    layers[i - 1].outputs
                )));
            }
        }
        let (n, last) = (layers.len() - 1, layers[layers.len() - 1]);
        match (last.activation, last.outputs) {
            (Activation::None, _) | (Activation::Sigmoid, 1) => {}
            (Activation::Sigmoid, o) => {
                return Err(ModelError::Shape(format!(
                    "layer {n} (the last) has a sigmoid and {o} outputs: binary cross-entropy takes exactly 1 output; for {o} classes leave the last layer without activation (softmax cross-entropy)"
                )))
            }
            (a, _) => {
                return Err(ModelError::Shape(format!(
                    "layer {n} (the last) has activation {}: the last layer's activation names the loss, none (softmax cross-entropy, or mean squared error for a single output) or sigmoid (binary cross-entropy)",
                    a.name()
                )))
            }
        }
        let arch = Architecture { stages, layers };
        // Widths are at most 2^16 and layers at most 64: no overflow below.
        if arch.num_params() > MAX_PARAMS {
            return Err(ModelError::Shape(format!(
                "model {} has {} parameters, above the supported {MAX_PARAMS}",
                arch.describe(),
                arch.num_params()
            )));
        }
        Ok(arch)
    }

    /// Re-checks a deserialised architecture with the constructor's rules.
    pub fn validate(&self) -> Result<()> {
        Architecture::with_stages(self.stages.clone(), self.layers.clone()).map(|_| ())
    }

    /// Number of input features (`C H W` of the first stage's input).
    pub fn input_dim(&self) -> usize {
        match self.stages.first() {
            Some(st) => st.sizes().0,
            None => self.layers[0].inputs,
        }
    }

    /// The convolutions among the stages, in order: they own the
    /// [`Weights::stages`] entries.
    pub fn convs(&self) -> impl Iterator<Item = &ConvSpec> {
        self.stages.iter().filter_map(|s| match s {
            Stage::Conv(c) => Some(c),
            Stage::AvgPool(_) | Stage::MaxPool(_) => None,
        })
    }

    /// The training loss, named by the last layer's activation.
    pub fn loss(&self) -> Loss {
        let last = self.layers[self.layers.len() - 1];
        match (last.activation, last.outputs) {
            (Activation::Sigmoid, _) => Loss::SigmoidBinaryCrossEntropy,
            (_, 1) => Loss::MeanSquaredError,
            _ => Loss::SoftmaxCrossEntropy,
        }
    }

    /// Whether the model is a regression (labels are real targets).
    pub fn is_regression(&self) -> bool {
        self.loss() == Loss::MeanSquaredError
    }

    /// Number of classes: the width of the logits, 2 for a sigmoid output,
    /// 1 for a regression (its single output).
    pub fn num_classes(&self) -> usize {
        match self.loss() {
            Loss::SigmoidBinaryCrossEntropy => 2,
            _ => self.layers[self.layers.len() - 1].outputs,
        }
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        self.convs().map(ConvSpec::num_params).sum::<usize>()
            + self
                .layers
                .iter()
                .map(|l| l.inputs * l.outputs + l.outputs)
                .sum::<usize>()
    }

    /// Compact description such as `64-16(relu)-10` or
    /// `1x8x8-conv3x3/8p1(relu)-avgpool2-128-10`.
    pub fn describe(&self) -> String {
        let mut s = match self.stages.first() {
            Some(st) => {
                let (c, h, w) = st.input_shape();
                let mut s = format!("{c}x{h}x{w}");
                for st in &self.stages {
                    s.push('-');
                    s.push_str(&st.describe());
                }
                s.push('-');
                s.push_str(&self.layers[0].inputs.to_string());
                s
            }
            None => self.input_dim().to_string(),
        };
        for l in &self.layers {
            s.push('-');
            s.push_str(&l.outputs.to_string());
            if l.activation != Activation::None {
                s.push_str(&format!("({})", l.activation.name()));
            }
        }
        s
    }

    /// Human-readable name of layer `i`, used in error messages.
    pub fn layer_name(&self, i: usize) -> String {
        let l = self.layers[i];
        format!("layer {i} (dense {}->{})", l.inputs, l.outputs)
    }

    /// Checks statically that no accumulator of a training step can exceed
    /// [`MAX_ACCUMULATOR_BITS`] for this shape, batch size and learning rate.
    pub fn check_bounds(&self, fx: &FixedParams, batch: usize, lr_fx: i64) -> Result<()> {
        let vb = fx.value_bits as f64 - 1.0; // |stored value| < 2^vb
        let f = fx.frac_bits as f64;
        let width = self
            .layers
            .iter()
            .map(|l| l.inputs.max(l.outputs))
            .chain(self.convs().map(|c| c.patch_len().max(c.out_channels)))
            // a convolution's input gradient sums over every patch covering a value
            .chain(self.convs().map(|c| c.out_channels * c.kernel * c.kernel))
            .max()
            .unwrap_or(1) as f64;
        // a convolution's weight gradient sums over every position of every record
        let positions = self.convs().map(ConvSpec::positions).max().unwrap_or(1);
        let b = (batch.max(1) * positions) as f64;
        // forward/backward dot products: width * 2^vb * 2^vb + 2^(vb+f)
        let dot = width.log2() + 2.0 * vb + 1.0;
        // weight-gradient accumulator times learning rate: lr * batch * 2^(2 vb)
        let upd = (lr_fx.max(1) as f64).log2() + b.log2() + 2.0 * vb + 1.0;
        let softmax = 2.0 * f + 1.0 + (self.num_classes() as f64).log2();
        // sigmoid/tanh derivative: da * a (1 - a) or da * (1 - a^2), 2^vb * 2^(2f)
        let derivative = vb + 2.0 * f + 1.0;
        let worst = dot.max(upd).max(softmax).max(derivative);
        if worst >= MAX_ACCUMULATOR_BITS as f64 {
            return Err(ModelError::Bound(format!(
                "model {} with batch {batch}, value-bits {} and lr {} needs {worst:.0}-bit accumulators, above the supported {MAX_ACCUMULATOR_BITS}; lower --value-bits or the batch size",
                self.describe(),
                fx.value_bits,
                lr_fx
            )));
        }
        Ok(())
    }
}

/// One dense layer's fixed-point parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerWeights {
    /// Row-major `[inputs][outputs]`.
    pub w: Vec<i64>,
    /// `[outputs]`.
    pub b: Vec<i64>,
}

/// All parameters of a model in fixed point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    /// One entry per convolution stage: its kernel as the `[C k k][OC]`
    /// matrix (see [`crate::stage`]) and its biases.
    #[serde(default)]
    pub stages: Vec<LayerWeights>,
    /// One entry per dense layer.
    pub layers: Vec<LayerWeights>,
}

/// `(rows, columns)` of every parameter matrix of a model, convolutions
/// first: the order of [`Weights::flatten`].
fn matrices(arch: &Architecture) -> impl Iterator<Item = (usize, usize)> + '_ {
    arch.convs()
        .map(|c| (c.patch_len(), c.out_channels))
        .chain(arch.layers.iter().map(|l| (l.inputs, l.outputs)))
}

impl Weights {
    /// Weights from one list of parameter matrices in [`Weights::flatten`]'s
    /// order (convolutions first).
    fn split(arch: &Architecture, mut all: Vec<LayerWeights>) -> Self {
        let layers = all.split_off(arch.convs().count().min(all.len()));
        Weights {
            stages: all,
            layers,
        }
    }

    /// The parameter matrices in order, convolutions first.
    pub fn all(&self) -> impl Iterator<Item = &LayerWeights> {
        self.stages.iter().chain(&self.layers)
    }

    /// All-zero weights of the given architecture.
    pub fn zeros(arch: &Architecture) -> Self {
        let all = matrices(arch)
            .map(|(i, o)| LayerWeights {
                w: vec![0; i * o],
                b: vec![0; o],
            })
            .collect();
        Weights::split(arch, all)
    }

    /// Deterministic initial weights from a public seed: Glorot-uniform
    /// integers `w ~ U{-A..=A}` with `A = round(sqrt(6 / (in + out)) * 2^f)`
    /// drawn by [`SeedRng`], biases zero. A verifier recomputes them exactly.
    /// Convolutions draw theirs first, with fans `C k k` and `OC k k`.
    pub fn seeded(arch: &Architecture, fx: &FixedParams, seed: u64) -> Self {
        let mut rng = SeedRng::new(b"zkaudit/init/v1", seed, 0);
        let fans = arch
            .convs()
            .map(|c| (c.patch_len(), c.out_channels * c.kernel * c.kernel))
            .chain(arch.layers.iter().map(|l| (l.inputs, l.outputs)));
        let all = matrices(arch)
            .zip(fans)
            .map(|((rows, cols), (fan_in, fan_out))| {
                let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
                let a = (limit * fx.one() as f64 + 0.5).floor() as u64;
                let w = (0..rows * cols)
                    .map(|_| rng.below(2 * a + 1) as i64 - a as i64)
                    .collect();
                LayerWeights {
                    w,
                    b: vec![0; cols],
                }
            })
            .collect();
        Weights::split(arch, all)
    }

    /// Quantizes real-valued weights (e.g. ONNX initializers) matrix by
    /// matrix, convolutions first.
    pub fn quantize(
        arch: &Architecture,
        fx: &FixedParams,
        real: &[(Vec<f64>, Vec<f64>)],
    ) -> Result<Self> {
        let shapes: Vec<(usize, usize)> = matrices(arch).collect();
        if real.len() != shapes.len() {
            return Err(ModelError::Shape(format!(
                "{} weight sets for {} parameterised layers",
                real.len(),
                shapes.len()
            )));
        }
        let convs = arch.convs().count();
        let mut layers = Vec::with_capacity(real.len());
        for (i, ((w, b), &(rows, cols))) in real.iter().zip(&shapes).enumerate() {
            let name = match i.checked_sub(convs) {
                Some(l) => arch.layer_name(l),
                None => format!("convolution {i}"),
            };
            if w.len() != rows * cols || b.len() != cols {
                return Err(ModelError::Shape(format!(
                    "{name}: weight or bias has the wrong size"
                )));
            }
            let q = |v: &[f64], tensor: &'static str| -> Result<Vec<i64>> {
                v.iter()
                    .enumerate()
                    .map(|(k, &x)| {
                        fx.quantize(x).ok_or_else(|| ModelError::Overflow {
                            layer: name.clone(),
                            tensor,
                            index: k,
                            value: if x.is_finite() {
                                x.round() as i128
                            } else {
                                i128::MAX
                            },
                            value_bits: fx.value_bits,
                        })
                    })
                    .collect()
            };
            layers.push(LayerWeights {
                w: q(w, "weight")?,
                b: q(b, "bias")?,
            });
        }
        Ok(Weights::split(arch, layers))
    }

    /// All parameters in canonical order: per layer, `w` row-major then `b`.
    /// This is the order the weight commitment packs and hashes.
    pub fn flatten(&self) -> Vec<i64> {
        let mut out = Vec::new();
        for l in self.all() {
            out.extend_from_slice(&l.w);
            out.extend_from_slice(&l.b);
        }
        out
    }

    /// Checks that the weights have the architecture's shapes.
    pub fn check_shape(&self, arch: &Architecture) -> Result<()> {
        if self.layers.len() != arch.layers.len() || self.stages.len() != arch.convs().count() {
            return Err(ModelError::Shape(format!(
                "weights have {} dense layers and {} convolutions, architecture {} and {}",
                self.layers.len(),
                self.stages.len(),
                arch.layers.len(),
                arch.convs().count()
            )));
        }
        for (i, (l, c)) in self.stages.iter().zip(arch.convs()).enumerate() {
            if l.w.len() != c.patch_len() * c.out_channels || l.b.len() != c.out_channels {
                return Err(ModelError::Shape(format!(
                    "convolution {i}: kernel has {} entries and bias {}, expected {} and {}",
                    l.w.len(),
                    l.b.len(),
                    c.patch_len() * c.out_channels,
                    c.out_channels
                )));
            }
        }
        for (i, (l, s)) in self.layers.iter().zip(&arch.layers).enumerate() {
            if l.w.len() != s.inputs * s.outputs || l.b.len() != s.outputs {
                return Err(ModelError::Shape(format!(
                    "{}: weight has {} entries and bias {}, expected {} and {}",
                    arch.layer_name(i),
                    l.w.len(),
                    l.b.len(),
                    s.inputs * s.outputs,
                    s.outputs
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mlp() -> Architecture {
        Architecture::new(vec![
            DenseSpec {
                inputs: 64,
                outputs: 16,
                activation: Activation::Relu,
            },
            DenseSpec {
                inputs: 16,
                outputs: 10,
                activation: Activation::None,
            },
        ])
        .unwrap()
    }

    #[test]
    fn describe_and_count() {
        let a = mlp();
        assert_eq!(a.describe(), "64-16(relu)-10");
        assert_eq!(a.num_params(), 64 * 16 + 16 + 16 * 10 + 10);
    }

    #[test]
    fn rejects_bad_chains() {
        let bad = Architecture::new(vec![
            DenseSpec {
                inputs: 4,
                outputs: 3,
                activation: Activation::Relu,
            },
            DenseSpec {
                inputs: 5,
                outputs: 2,
                activation: Activation::None,
            },
        ]);
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("layer 1 takes 5 inputs"));
        let relu_last = Architecture::new(vec![DenseSpec {
            inputs: 4,
            outputs: 3,
            activation: Activation::Relu,
        }]);
        assert!(relu_last.is_err());
        assert!(Architecture::new(vec![]).is_err());
    }

    #[test]
    fn seeded_init_is_deterministic_and_bounded() {
        let a = mlp();
        let fx = FixedParams::default();
        let w1 = Weights::seeded(&a, &fx, 7);
        let w2 = Weights::seeded(&a, &fx, 7);
        let w3 = Weights::seeded(&a, &fx, 8);
        assert_eq!(w1, w2);
        assert_ne!(w1, w3);
        let lim = ((6.0f64 / 80.0).sqrt() * 65536.0).round() as i64;
        assert!(w1.layers[0].w.iter().all(|&v| v.abs() <= lim));
        assert_eq!(w1.flatten().len(), a.num_params());
    }

    #[test]
    fn bounds_check_rejects_huge_values() {
        let a = mlp();
        assert!(a.check_bounds(&FixedParams::default(), 8, 6554).is_ok());
        let wide = FixedParams::new(16, 48).unwrap();
        assert!(a.check_bounds(&wide, 1 << 20, 1 << 30).is_err());
    }
}
