//! Feature-extraction stages before the dense layers: 2-D convolution,
//! average and max pooling over NCHW feature maps, and their geometry.
//!
//! A model is `x -> stage_0 -> ... -> stage_{S-1} -> flatten -> dense...`.
//! Every feature map of one record is stored flattened in NCHW order (channel,
//! row, column), so the flatten before the first dense layer is the identity,
//! as in ONNX's and PyTorch's `Flatten`.
//!
//! A convolution is a matrix product after im2col: the patch matrix `P` of
//! a record has one row per output position `(oh, ow)` and one column per
//! kernel entry `(c, i, j)`, `P[pos][(c, i, j)] = x[c][oh s + i - p][ow s + j - p]`
//! (zero outside the input), and the output is `P.K` with the kernel stored
//! as the `[C k k][OC]` matrix `K[(c, i, j)][oc]`. [`ConvSpec::im2col`] is the
//! one source of that arrangement for the engine and the circuit.

use serde::{Deserialize, Serialize};

use crate::arch::{Activation, MAX_LAYER_WIDTH};
use crate::error::{ModelError, Result};

/// Most entries of one record's patch matrix (output positions times
/// kernel entries) a convolution may have: the matrix is materialised.
pub const MAX_PATCH_ENTRIES: usize = 1 << 22;

/// A 2-D convolution (square kernel, equal stride and zero padding on both
/// axes, with bias), followed by an activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvSpec {
    /// Input channels `C`.
    pub in_channels: usize,
    /// Input height `H`.
    pub height: usize,
    /// Input width `W`.
    pub width: usize,
    /// Output channels `OC`.
    pub out_channels: usize,
    /// Kernel size `k` (`k x k`).
    pub kernel: usize,
    /// Stride `s`.
    #[serde(default = "one")]
    pub stride: usize,
    /// Zero padding `p` on every side.
    #[serde(default)]
    pub padding: usize,
    /// Activation applied to the output.
    #[serde(default = "no_activation")]
    pub activation: Activation,
}

fn one() -> usize {
    1
}

fn no_activation() -> Activation {
    Activation::None
}

/// Average or max pooling over non-overlapping `k x k` windows (stride `k`, floor
/// mode: rows and columns beyond the last full window are dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PoolSpec {
    /// Channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Window size `k` (and stride).
    pub kernel: usize,
}

/// One feature-extraction stage (externally tagged: transcripts are
/// bincode, which cannot read internally tagged enums).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// A convolution.
    Conv(ConvSpec),
    /// An average pooling.
    AvgPool(PoolSpec),
    /// A max pooling (the first maximal entry of each window).
    MaxPool(PoolSpec),
}

impl ConvSpec {
    /// A convolution of `out_channels` filters of `kernel x kernel` over a
    /// `(C, H, W)` input.
    pub fn new(
        (in_channels, height, width): (usize, usize, usize),
        out_channels: usize,
        kernel: usize,
        (stride, padding): (usize, usize),
        activation: Activation,
    ) -> Self {
        ConvSpec {
            in_channels,
            height,
            width,
            out_channels,
            kernel,
            stride,
            padding,
            activation,
        }
    }

    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        let o =
            |n: usize| (n + 2 * self.padding).saturating_sub(self.kernel) / self.stride.max(1) + 1;
        (o(self.height), o(self.width))
    }

    /// Output positions `OH OW` (rows of a record's patch matrix).
    pub fn positions(&self) -> usize {
        let (h, w) = self.out_hw();
        h * w
    }

    /// Kernel entries `C k k` (columns of the patch matrix, rows of `K`).
    pub fn patch_len(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    /// Trainable parameters: the kernel and one bias per output channel.
    pub fn num_params(&self) -> usize {
        self.patch_len() * self.out_channels + self.out_channels
    }

    /// The patch matrix's arrangement: for every output position (row-major)
    /// and kernel entry `(c, i, j)`, the index of the input value in the
    /// NCHW-flattened record, or `None` in the zero padding.
    pub fn im2col(&self) -> Vec<Vec<Option<usize>>> {
        let (oh, ow) = self.out_hw();
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let mut rows = Vec::with_capacity(oh * ow);
        for y in 0..oh {
            for x in 0..ow {
                let mut row = Vec::with_capacity(self.patch_len());
                for c in 0..self.in_channels {
                    for i in 0..k {
                        for j in 0..k {
                            let (r, q) = ((y * s + i).checked_sub(p), (x * s + j).checked_sub(p));
                            row.push(match (r, q) {
                                (Some(r), Some(q)) if r < self.height && q < self.width => {
                                    Some((c * self.height + r) * self.width + q)
                                }
                                _ => None,
                            });
                        }
                    }
                }
                rows.push(row);
            }
        }
        rows
    }
}

impl PoolSpec {
    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        let k = self.kernel.max(1);
        (self.height / k, self.width / k)
    }

    /// For every output value (NCHW order), the input indices it averages.
    pub fn windows(&self) -> Vec<Vec<usize>> {
        let (oh, ow) = self.out_hw();
        let k = self.kernel;
        let mut out = Vec::with_capacity(self.channels * oh * ow);
        for c in 0..self.channels {
            for y in 0..oh {
                for x in 0..ow {
                    let mut w = Vec::with_capacity(k * k);
                    for i in 0..k {
                        for j in 0..k {
                            w.push((c * self.height + y * k + i) * self.width + x * k + j);
                        }
                    }
                    out.push(w);
                }
            }
        }
        out
    }
}

impl Stage {
    /// Input shape `(C, H, W)`.
    pub fn input_shape(&self) -> (usize, usize, usize) {
        match self {
            Stage::Conv(c) => (c.in_channels, c.height, c.width),
            Stage::AvgPool(p) | Stage::MaxPool(p) => (p.channels, p.height, p.width),
        }
    }

    /// Output shape `(C, H, W)`.
    pub fn output_shape(&self) -> (usize, usize, usize) {
        match self {
            Stage::Conv(c) => {
                let (h, w) = c.out_hw();
                (c.out_channels, h, w)
            }
            Stage::AvgPool(p) | Stage::MaxPool(p) => {
                let (h, w) = p.out_hw();
                (p.channels, h, w)
            }
        }
    }

    /// Values of one record's input and output feature maps.
    pub fn sizes(&self) -> (usize, usize) {
        let (a, b, c) = self.input_shape();
        let (d, e, f) = self.output_shape();
        (a * b * c, d * e * f)
    }

    /// Short description, e.g. `conv3x3/8(relu)` or `avgpool2`.
    pub fn describe(&self) -> String {
        match self {
            Stage::Conv(c) => {
                let mut s = format!("conv{}x{}/{}", c.kernel, c.kernel, c.out_channels);
                if c.stride != 1 {
                    s.push_str(&format!("s{}", c.stride));
                }
                if c.padding != 0 {
                    s.push_str(&format!("p{}", c.padding));
                }
                if c.activation != Activation::None {
                    s.push_str(&format!("({})", c.activation.name()));
                }
                s
            }
            Stage::AvgPool(p) => format!("avgpool{}", p.kernel),
            Stage::MaxPool(p) => format!("maxpool{}", p.kernel),
        }
    }

    /// Checks one stage's geometry; `i` names it in errors.
    pub fn validate(&self, i: usize) -> Result<()> {
        let err = |m: String| {
            Err(ModelError::Shape(format!(
                "stage {i} ({}): {m}",
                self.describe()
            )))
        };
        let (c, h, w) = self.input_shape();
        if [c, h, w].iter().any(|&n| n == 0 || n > MAX_LAYER_WIDTH) || c * h * w > MAX_LAYER_WIDTH {
            return err(format!(
                "input {c}x{h}x{w} must have every dimension and {c}*{h}*{w} in 1..={MAX_LAYER_WIDTH}"
            ));
        }
        match self {
            Stage::Conv(s) => {
                if s.kernel == 0
                    || s.stride == 0
                    || s.out_channels == 0
                    || s.out_channels > MAX_LAYER_WIDTH
                {
                    return err("kernel, stride and output channels must be positive".into());
                }
                if s.padding >= s.kernel {
                    return err(format!(
                        "padding {} must be below the kernel size {}",
                        s.padding, s.kernel
                    ));
                }
                if s.kernel > h + 2 * s.padding || s.kernel > w + 2 * s.padding {
                    return err(format!(
                        "kernel {} is larger than the padded input {h}x{w}",
                        s.kernel
                    ));
                }
                let (_, out) = self.sizes();
                if out > MAX_LAYER_WIDTH {
                    return err(format!("output of {out} values is above {MAX_LAYER_WIDTH}"));
                }
                // The patch matrix of one record is laid out in memory and in the circuit.
                let patches = s.positions().saturating_mul(s.patch_len());
                if patches > MAX_PATCH_ENTRIES {
                    return err(format!(
                        "its patch matrix has {} positions x {} entries = {patches}, above {MAX_PATCH_ENTRIES} per record",
                        s.positions(),
                        s.patch_len()
                    ));
                }
            }
            Stage::AvgPool(p) | Stage::MaxPool(p) => {
                if p.kernel < 2 || p.kernel > h || p.kernel > w {
                    return err(format!("window {} must be in 2..=min({h}, {w})", p.kernel));
                }
            }
        }
        Ok(())
    }
}
