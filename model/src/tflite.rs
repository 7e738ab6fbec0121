//! TFLite import: float32 `.tflite` models (the TensorFlow Lite converter's
//! output, the original ZkAudit tool's input format) read with the
//! bounds-checked FlatBuffers reader of [`fb`], following the tables and
//! field ids of the TFLite schema listed in `tflite/schema.fbs`.
//!
//! Supported operators: CONV_2D, AVERAGE_POOL_2D, MAX_POOL_2D,
//! FULLY_CONNECTED, RELU, LOGISTIC, TANH, RESHAPE (a flatten), a trailing
//! SOFTMAX, and the SHAPE / STRIDED_SLICE / PACK bookkeeping the converter
//! emits to compute a flatten's target shape. Anything else is an error
//! naming the operator and its index. TFLite lays feature maps out NHWC;
//! the engine's are NCHW, so kernels are reordered from `[OC][kh][kw][C]`
//! and the first dense layer after a flatten has its rows permuted from
//! NHWC to NCHW order (exact: the same model). Inputs are single-channel
//! images (where both orders agree) or feature vectors.

use std::path::Path;

use crate::arch::{Activation, Architecture, DenseSpec};
use crate::error::{ModelError, Result};
use crate::float_ref::RealLayer;
use crate::spec::ImportedModel;
use crate::stage::{ConvSpec, PoolSpec, Stage};

pub mod fb;

use fb::{FbError, Table};

const AVERAGE_POOL_2D: i32 = 1;
const CONV_2D: i32 = 3;
const FULLY_CONNECTED: i32 = 9;
const LOGISTIC: i32 = 14;
const MAX_POOL_2D: i32 = 17;
const RELU: i32 = 19;
const RESHAPE: i32 = 22;
const SOFTMAX: i32 = 25;
const TANH: i32 = 28;
const STRIDED_SLICE: i32 = 45;
const SHAPE: i32 = 77;
const PACK: i32 = 83;

/// The schema's name of a builtin operator code (the common ones).
fn op_name(code: i32) -> String {
    let known = [
        (0, "ADD"),
        (AVERAGE_POOL_2D, "AVERAGE_POOL_2D"),
        (2, "CONCATENATION"),
        (CONV_2D, "CONV_2D"),
        (4, "DEPTHWISE_CONV_2D"),
        (6, "DEQUANTIZE"),
        (FULLY_CONNECTED, "FULLY_CONNECTED"),
        (LOGISTIC, "LOGISTIC"),
        (MAX_POOL_2D, "MAX_POOL_2D"),
        (18, "MUL"),
        (RELU, "RELU"),
        (21, "RELU6"),
        (RESHAPE, "RESHAPE"),
        (SOFTMAX, "SOFTMAX"),
        (TANH, "TANH"),
        (32, "CUSTOM"),
        (34, "PAD"),
        (40, "MEAN"),
        (STRIDED_SLICE, "STRIDED_SLICE"),
        (SHAPE, "SHAPE"),
        (PACK, "PACK"),
        (98, "LEAKY_RELU"),
        (111, "ELU"),
        (114, "QUANTIZE"),
        (117, "HARD_SWISH"),
        (150, "GELU"),
    ];
    known.iter().find(|(c, _)| *c == code).map_or_else(
        || format!("builtin operator #{code}"),
        |(_, n)| n.to_string(),
    )
}

/// One tensor of the subgraph.
struct Tensor {
    shape: Vec<i32>,
    ty: u8,
    buffer: usize,
    quantized: bool,
}

/// The model's graph, read.
struct Graph<'a> {
    tensors: Vec<Tensor>,
    buffers: Vec<Table<'a>>,
    codes: Vec<i32>,
}

impl Graph<'_> {
    /// The float32 values of constant tensor `t` (a weight), with its shape.
    fn constant(&self, t: i32, what: &str) -> std::result::Result<(Vec<i32>, Vec<f64>), String> {
        let tensor = usize::try_from(t)
            .ok()
            .and_then(|i| self.tensors.get(i))
            .ok_or_else(|| format!("{what} tensor {t} does not exist"))?;
        if tensor.ty != 0 || tensor.quantized {
            return Err(format!(
                "{what} tensor {t} is not float32 (type {}{}); quantized models are not supported",
                tensor.ty,
                if tensor.quantized { ", quantized" } else { "" }
            ));
        }
        let data = self
            .buffers
            .get(tensor.buffer)
            .map(|b| b.bytes_field(0))
            .transpose()
            .map_err(|e| e.0)?
            .unwrap_or(&[]);
        let n = tensor
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?));
        if n.and_then(|n| n.checked_mul(4)) != Some(data.len()) {
            return Err(format!(
                "{what} tensor {t} has {} bytes of data for shape {:?}",
                data.len(),
                tensor.shape
            ));
        }
        let vals = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect::<Vec<_>>();
        if let Some(k) = vals.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "{what} tensor {t} has a non-finite value at index {k}"
            ));
        }
        Ok((tensor.shape.clone(), vals))
    }
}

/// The activation of a fused-activation field.
fn fused(code: u8) -> std::result::Result<Activation, String> {
    match code {
        0 => Ok(Activation::None),
        1 => Ok(Activation::Relu),
        4 => Ok(Activation::Tanh),
        c => Err(format!(
            "fused activation {} is not supported (only NONE, RELU, TANH)",
            ["NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT"]
                .get(c as usize)
                .copied()
                .unwrap_or("unknown")
        )),
    }
}

/// Imports a `.tflite` model: its architecture and initial weights.
pub fn import(path: &Path) -> Result<ImportedModel> {
    let err = |message: String| ModelError::Tflite {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let (arch, initial) = read(&bytes).map_err(err)?;
    let arch = arch.map_err(|e| err(e.to_string()))?;
    Ok(ImportedModel {
        path: path.to_path_buf(),
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        arch,
        initial: Some(initial),
    })
}

/// The architecture (as validated by [`Architecture::with_stages`]) and
/// initial weights of a TFLite buffer, or what is wrong with it.
type Read = (Result<Architecture>, Vec<RealLayer>);

fn read(buf: &[u8]) -> std::result::Result<Read, String> {
    let fbe = |e: FbError| format!("not a valid TFLite flatbuffer: {}", e.0);
    let model = Table::root(buf, Some(b"TFL3")).map_err(fbe)?;
    let version = model.u32(0, 0).map_err(fbe)?;
    if version != 3 {
        return Err(format!("schema version {version} is not supported (3)"));
    }
    let codes = model
        .tables(1)
        .map_err(fbe)?
        .iter()
        .map(|c| Ok(c.i32(3, 0)?.max(c.u8(0, 0)? as i8 as i32)))
        .collect::<std::result::Result<Vec<_>, FbError>>()
        .map_err(fbe)?;
    let subgraphs = model.tables(2).map_err(fbe)?;
    let [sg] = subgraphs.as_slice() else {
        return Err(format!(
            "{} subgraphs; only single-subgraph models are supported",
            subgraphs.len()
        ));
    };
    let tensors = sg
        .tables(0)
        .map_err(fbe)?
        .iter()
        .map(|t| {
            let quantized = match t.table(4)? {
                Some(q) => !q.bytes_field(2)?.is_empty(),
                None => false,
            };
            Ok(Tensor {
                shape: t.i32s(0)?,
                ty: t.u8(1, 0)?,
                buffer: t.u32(2, 0)? as usize,
                quantized,
            })
        })
        .collect::<std::result::Result<Vec<_>, FbError>>()
        .map_err(fbe)?;
    let g = Graph {
        tensors,
        buffers: model.tables(4).map_err(fbe)?,
        codes,
    };
    let inputs = sg.i32s(1).map_err(fbe)?;
    let outputs = sg.i32s(2).map_err(fbe)?;
    let ([input], [output]) = (inputs.as_slice(), outputs.as_slice()) else {
        return Err(format!(
            "expected one input and one output, found {} and {}",
            inputs.len(),
            outputs.len()
        ));
    };
    let in_shape = g
        .tensors
        .get(*input as usize)
        .map(|t| t.shape.clone())
        .unwrap_or_default();
    let mut fmap = match in_shape.as_slice() {
        [_, h, w, 1] => Some((1usize, *h as usize, *w as usize)),
        [_, _, _, c] => {
            return Err(format!(
            "input has {c} channels; only single-channel (NHWC with C = 1) images are supported"
        ))
        }
        [_, _] => None,
        s => {
            return Err(format!(
                "input shape {s:?} is not supported ([N, H, W, 1] or [N, features])"
            ))
        }
    };
    let mut chain = Chain::default();
    let mut cur = *input;
    for (i, op) in sg.tables(3).map_err(fbe)?.iter().enumerate() {
        let code = g
            .codes
            .get(op.u32(0, 0).map_err(fbe)? as usize)
            .copied()
            .ok_or_else(|| format!("operator {i} has no operator code"))?;
        let ins = op.i32s(1).map_err(fbe)?;
        let outs = op.i32s(2).map_err(fbe)?;
        let opts = op.table(4).map_err(fbe)?;
        let name = op_name(code);
        let at = |m: String| format!("operator {i} ({name}): {m}");
        let consumes = ins.first() == Some(&cur);
        match code {
            SHAPE | STRIDED_SLICE | PACK if code == SHAPE || !consumes => continue,
            _ if !consumes => {
                return Err(at(format!("operator {name} (index {i}) does not take the running activation; only chain graphs are supported")))
            }
            _ if chain.finished => return Err(at("only the output may follow the trailing SOFTMAX".into())),
            _ => {}
        }
        let opt = |f: &dyn Fn(&Table) -> fb::FbResult<i32>| -> std::result::Result<i32, String> {
            match &opts {
                Some(t) => f(t).map_err(|e| at(e.0)),
                None => Err(at("missing options".into())),
            }
        };
        match code {
            CONV_2D => {
                let shape = fmap.ok_or_else(|| at("a convolution needs an image input before any flatten".into()))?;
                let (dims, w) = g.constant(*ins.get(1).unwrap_or(&-1), "kernel").map_err(at)?;
                let bias = match ins.get(2).filter(|&&b| b >= 0) {
                    Some(&b) => Some(g.constant(b, "bias").map_err(at)?.1),
                    None => None,
                };
                let (sw, sh) = (opt(&|t| t.i32(1, 0))?, opt(&|t| t.i32(2, 0))?);
                let (dw, dh) = (opt(&|t| t.i32(4, 1))?, opt(&|t| t.i32(5, 1))?);
                if dw != 1 || dh != 1 {
                    return Err(at(format!("dilation {dh}x{dw} is not supported (only 1)")));
                }
                let act = fused(opt(&|t| t.u8(3, 0).map(i32::from))? as u8).map_err(at)?;
                let same = opt(&|t| t.u8(0, 0).map(i32::from))? == 0;
                let (stage, layer) = conv(shape, &dims, w, bias, (sw, sh), same, act).map_err(at)?;
                fmap = Some(stage.output_shape());
                chain.push_stage(stage, Some(layer)).map_err(at)?;
            }
            AVERAGE_POOL_2D | MAX_POOL_2D => {
                let (c, h, w) = fmap.ok_or_else(|| at("a pooling needs an image input before any flatten".into()))?;
                let vals = [1, 2, 3, 4].map(|f| opt(&|t| t.i32(f, 0)));
                let [sw, sh, fw, fh] = [vals[0].clone()?, vals[1].clone()?, vals[2].clone()?, vals[3].clone()?];
                if !(sw == sh && fw == fh && sw == fw && fw >= 1) {
                    return Err(at(format!("window {fh}x{fw} with strides {sh}x{sw}: only square windows with strides equal to the window are supported")));
                }
                let k = fw as usize;
                if opt(&|t| t.u8(0, 0).map(i32::from))? == 0 && (h % k != 0 || w % k != 0) {
                    return Err(at("SAME padding that pads is not supported".into()));
                }
                fused(opt(&|t| t.u8(5, 0).map(i32::from))? as u8)
                    .ok()
                    .filter(|a| *a == Activation::None)
                    .ok_or_else(|| at("a fused activation on a pooling is not supported".into()))?;
                let spec = PoolSpec { channels: c, height: h, width: w, kernel: k };
                let stage = if code == MAX_POOL_2D { Stage::MaxPool(spec) } else { Stage::AvgPool(spec) };
                fmap = Some(stage.output_shape());
                chain.push_stage(stage, None).map_err(at)?;
            }
            RESHAPE => {
                if let Some(shape) = fmap.take() {
                    chain.flattened = Some(shape);
                }
            }
            FULLY_CONNECTED => {
                if fmap.is_some() {
                    return Err(at("a dense layer needs a flattened input (RESHAPE first)".into()));
                }
                if opt(&|t| t.u8(1, 0).map(i32::from)).unwrap_or(0) != 0 {
                    return Err(at("shuffled weights formats are not supported".into()));
                }
                let (dims, w) = g.constant(*ins.get(1).unwrap_or(&-1), "weight").map_err(at)?;
                let bias = match ins.get(2).filter(|&&b| b >= 0) {
                    Some(&b) => Some(g.constant(b, "bias").map_err(at)?.1),
                    None => None,
                };
                let act = fused(opt(&|t| t.u8(0, 0).map(i32::from))? as u8).map_err(at)?;
                chain.push_dense(&dims, w, bias, act).map_err(at)?;
            }
            RELU | LOGISTIC | TANH => {
                let act = match code {
                    RELU => Activation::Relu,
                    LOGISTIC => Activation::Sigmoid,
                    _ => Activation::Tanh,
                };
                chain.activate(act).map_err(at)?;
            }
            SOFTMAX => {
                let beta = opts.map(|t| t.scalar::<4>(0)).transpose().map_err(fbe)?.flatten();
                if beta.is_some_and(|b| f32::from_le_bytes(b) != 1.0) {
                    return Err(at("a softmax with beta != 1 is not supported".into()));
                }
                chain.finished = true;
            }
            _ => {
                return Err(format!(
                    "operator {name} (index {i}) is not supported (supported: CONV_2D, AVERAGE_POOL_2D, MAX_POOL_2D, FULLY_CONNECTED, RELU, LOGISTIC, TANH, RESHAPE, SOFTMAX)"
                ))
            }
        }
        cur = *outs.first().ok_or_else(|| at("has no output".into()))?;
    }
    if cur != *output {
        return Err(format!(
            "the output tensor {output} is not reached by the chain from the input"
        ));
    }
    let mut weights = chain.stage_weights;
    weights.extend(chain.dense_weights);
    Ok((
        Architecture::with_stages(chain.stages, chain.layers),
        weights,
    ))
}

/// The chain of stages and dense layers read so far.
#[derive(Default)]
struct Chain {
    stages: Vec<Stage>,
    stage_weights: Vec<RealLayer>,
    layers: Vec<DenseSpec>,
    dense_weights: Vec<RealLayer>,
    /// The NHWC feature map the next dense layer reads flattened.
    flattened: Option<(usize, usize, usize)>,
    finished: bool,
}

impl Chain {
    fn push_stage(
        &mut self,
        stage: Stage,
        w: Option<RealLayer>,
    ) -> std::result::Result<(), String> {
        if !self.layers.is_empty() {
            return Err("convolutions and poolings must come before the dense layers".into());
        }
        stage
            .validate(self.stages.len())
            .map_err(|e| e.to_string())?;
        self.stages.push(stage);
        self.stage_weights.extend(w);
        Ok(())
    }

    /// A dense layer from TFLite's `[out][in]` weights, its inputs reordered
    /// from NHWC to NCHW when it reads a flattened feature map.
    fn push_dense(
        &mut self,
        dims: &[i32],
        w: Vec<f64>,
        bias: Option<Vec<f64>>,
        act: Activation,
    ) -> std::result::Result<(), String> {
        let [outs, ins] = dims else {
            return Err(format!("weight shape {dims:?} is not [outputs, inputs]"));
        };
        let (outs, ins) = (*outs as usize, *ins as usize);
        let row_of = |i: usize| -> usize {
            match self.flattened {
                // NCHW index i = (ch h + y) w + x reads NHWC index (y w + x) c + ch
                Some((c, h, wd)) if c * h * wd == ins => {
                    let (ch, rest) = (i / (h * wd), i % (h * wd));
                    rest * c + ch
                }
                _ => i,
            }
        };
        let mut m = vec![0.0; ins * outs];
        for i in 0..ins {
            let src = row_of(i);
            for o in 0..outs {
                m[i * outs + o] = w[o * ins + src];
            }
        }
        self.flattened = None;
        let b = bias.unwrap_or_else(|| vec![0.0; outs]);
        if b.len() != outs {
            return Err(format!("bias has {} values for {outs} outputs", b.len()));
        }
        self.layers.push(DenseSpec {
            inputs: ins,
            outputs: outs,
            activation: act,
        });
        self.dense_weights.push((m, b));
        Ok(())
    }

    fn activate(&mut self, act: Activation) -> std::result::Result<(), String> {
        let slot = match (self.layers.last_mut(), self.stages.last_mut()) {
            (Some(l), _) => &mut l.activation,
            (None, Some(Stage::Conv(c))) => &mut c.activation,
            _ => {
                return Err(
                    "an activation is supported after a dense layer or a convolution only".into(),
                )
            }
        };
        if *slot != Activation::None {
            return Err("two activations in a row".into());
        }
        *slot = act;
        Ok(())
    }
}

/// A CONV_2D on a `(C, H, W)` map: TFLite's `[OC][kh][kw][C]` kernel as the
/// engine's `[C k k][OC]` matrix, SAME padding as symmetric zero padding.
fn conv(
    (c, h, w): (usize, usize, usize),
    dims: &[i32],
    kernel: Vec<f64>,
    bias: Option<Vec<f64>>,
    (sw, sh): (i32, i32),
    same: bool,
    act: Activation,
) -> std::result::Result<(Stage, RealLayer), String> {
    let [oc, kh, kw, ci] = dims else {
        return Err(format!("kernel shape {dims:?} is not [OC, kh, kw, C]"));
    };
    let (oc, k) = (*oc as usize, *kh as usize);
    if kh != kw || *ci as usize != c || sw != sh || sw < 1 {
        return Err(format!("kernel {kh}x{kw} over {ci} channels with strides {sh}x{sw}: only square kernels over the input's {c} channels with equal strides are supported"));
    }
    let stride = sw as usize;
    let padding = match (same, stride, k % 2) {
        (false, _, _) => 0,
        (true, 1, 1) => (k - 1) / 2,
        _ => return Err("SAME padding is supported for odd kernels at stride 1 only".into()),
    };
    let e = c * k * k;
    let mut m = vec![0.0; e * oc];
    for o in 0..oc {
        for ch in 0..c {
            for i in 0..k {
                for j in 0..k {
                    m[((ch * k + i) * k + j) * oc + o] = kernel[((o * k + i) * k + j) * c + ch];
                }
            }
        }
    }
    let b = bias.unwrap_or_else(|| vec![0.0; oc]);
    if b.len() != oc {
        return Err(format!(
            "bias has {} values for {oc} output channels",
            b.len()
        ));
    }
    let spec = ConvSpec::new((c, h, w), oc, k, (stride, padding), act);
    Ok((Stage::Conv(spec), (m, b)))
}

#[cfg(test)]
mod tests;
