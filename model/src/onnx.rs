//! ONNX import and export.
//!
//! # Import
//! The graph must be a chain from its one data input to one output through
//! `Gemm` (alpha = beta = 1, transA = 0, either transB), `MatMul` with a 2-D
//! initializer optionally followed by `Add` of a bias initializer, `Relu`,
//! `Flatten`/`Reshape` to 2-D, `Identity`, `Cast` to float, and an optional
//! trailing `Softmax` over the last axis (the loss's softmax). When the graph
//! has several outputs (converters add a `label` branch) the one produced by
//! the `Softmax` is used and nodes it does not depend on are ignored. Weights
//! come from FLOAT or DOUBLE initializers (`float_data`, `double_data` or
//! `raw_data`). Anything else is an error naming the node and its op.
//!
//! # Export
//! [`export`] writes `input -> Gemm -> Relu -> ... -> Gemm -> logits -> Softmax
//! -> probabilities` (opset 13) with the dequantized weights, which onnxruntime
//! evaluates to the same predictions as the fixed-point model up to rounding.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;

use crate::arch::{Activation, Architecture, DenseSpec, Loss, Weights};
use crate::error::{ModelError, Result};
use crate::fixed::FixedParams;
use crate::spec::ImportedModel;
use crate::stage::Stage;

/// Generated prost types for the ONNX subset (see `proto/onnx_subset.proto`).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

use pb::tensor_proto::DataType;

struct Ctx<'a> {
    path: &'a Path,
}

impl Ctx<'_> {
    fn node_err(&self, n: &pb::NodeProto, msg: impl Into<String>) -> ModelError {
        let name = match n.name() {
            "" => n.output.first().cloned().unwrap_or_default(),
            s => s.to_string(),
        };
        ModelError::OnnxNode {
            path: self.path.to_path_buf(),
            node: name,
            op: n.op_type().to_string(),
            message: msg.into(),
        }
    }

    fn err(&self, msg: impl Into<String>) -> ModelError {
        ModelError::Onnx {
            path: self.path.to_path_buf(),
            message: msg.into(),
        }
    }
}

/// A real-valued initializer.
struct Init {
    dims: Vec<i64>,
    data: Vec<f64>,
}

fn read_initializer(ctx: &Ctx, t: &pb::TensorProto) -> Result<Init> {
    if t.data_location == Some(pb::tensor_proto::DataLocation::External as i32)
        || !t.external_data.is_empty()
    {
        return Err(ctx.err(format!(
            "initializer `{}` uses external data, which is not supported",
            t.name()
        )));
    }
    let n: i64 = t.dims.iter().product();
    let data: Vec<f64> = match DataType::try_from(t.data_type()) {
        Ok(DataType::Float) => {
            if let Some(raw) = t.raw_data.as_ref().filter(|r| !r.is_empty()) {
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                    .collect()
            } else {
                t.float_data.iter().map(|&v| v as f64).collect()
            }
        }
        Ok(DataType::Double) => {
            if let Some(raw) = t.raw_data.as_ref().filter(|r| !r.is_empty()) {
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect()
            } else {
                t.double_data.clone()
            }
        }
        other => {
            let name = other
                .map(|d| d.as_str_name().to_string())
                .unwrap_or_else(|_| t.data_type().to_string());
            return Err(ctx.err(format!(
                "initializer `{}` has dtype {name}; weights must be FLOAT or DOUBLE",
                t.name()
            )));
        }
    };
    if data.len() as i64 != n {
        return Err(ctx.err(format!(
            "initializer `{}` has {} values for dims {:?}",
            t.name(),
            data.len(),
            t.dims
        )));
    }
    if let Some(k) = data.iter().position(|v| !v.is_finite()) {
        return Err(ctx.err(format!(
            "initializer `{}` has a non-finite value at index {k}",
            t.name()
        )));
    }
    Ok(Init {
        dims: t.dims.clone(),
        data,
    })
}

/// The node producing `name`, looking through Identity nodes.
fn through_identity<'a>(
    producer: &HashMap<&str, &'a pb::NodeProto>,
    mut name: &'a str,
) -> Option<&'a pb::NodeProto> {
    loop {
        let n = *producer.get(name)?;
        if n.op_type() == "Identity" {
            name = n.input.first()?;
        } else {
            return Some(n);
        }
    }
}

fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name() == name)
}

/// Imports an ONNX model: its architecture and initial weights.
pub fn import(path: &Path) -> Result<ImportedModel> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let ctx = Ctx { path };
    let model = pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| ctx.err(format!("not a valid ONNX model ({e})")))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ctx.err("model has no graph"))?;
    let mut inits = HashMap::new();
    for t in &graph.initializer {
        inits.insert(t.name().to_string(), t);
    }
    let data_inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !inits.contains_key(i.name()))
        .collect();
    let [input] = data_inputs.as_slice() else {
        return Err(ctx.err(format!(
            "expected exactly one data input, found {}: {:?}",
            data_inputs.len(),
            data_inputs.iter().map(|i| i.name()).collect::<Vec<_>>()
        )));
    };
    // A 4-D input with concrete C, H, W is a feature map for the stages.
    let mut fmap: Option<(usize, usize, usize)> = None;
    if let Some(pb::type_proto::Value::TensorType(tt)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    {
        let dims: Vec<Option<i64>> = tt
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => {
                            Some(v)
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let [_, Some(c), Some(h), Some(w)] = dims.as_slice() {
            fmap = Some((*c as usize, *h as usize, *w as usize));
        }
        let et = tt.elem_type();
        if et != DataType::Float as i32 && et != DataType::Double as i32 {
            return Err(ctx.err(format!(
                "input `{}` must be float or double, has elem type {et}",
                input.name()
            )));
        }
    }
    // Which output: the one a Softmax or Sigmoid produces (through Identity),
    // else the only one.
    let producer: HashMap<&str, &pb::NodeProto> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let output = if graph.output.len() == 1 {
        graph.output[0].name().to_string()
    } else {
        let soft: Vec<&str> = graph
            .output
            .iter()
            .map(|o| o.name())
            .filter(|o| {
                through_identity(&producer, o)
                    .is_some_and(|n| matches!(n.op_type(), "Softmax" | "Sigmoid"))
            })
            .collect();
        match soft.as_slice() {
            [one] => one.to_string(),
            _ => {
                return Err(ctx.err(format!(
                    "cannot choose among outputs {:?}: expected one output, or exactly one produced by Softmax or Sigmoid",
                    graph.output.iter().map(|o| o.name()).collect::<Vec<_>>()
                )))
            }
        }
    };
    // Nodes the chosen output depends on.
    let mut needed = HashSet::new();
    let mut stack = vec![output.clone()];
    while let Some(t) = stack.pop() {
        if let Some(n) = producer.get(t.as_str()) {
            if needed.insert(*n as *const pb::NodeProto) {
                stack.extend(n.input.iter().cloned());
            }
        }
    }

    let mut cur = input.name().to_string();
    let mut stages: Vec<Stage> = Vec::new();
    let mut stage_weights: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    let mut layers: Vec<DenseSpec> = Vec::new();
    let mut weights: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    let mut pending_matmul = false; // last layer came from MatMul and may take an Add
    let mut finished = false; // a Softmax was seen
    let mut in_width: Option<usize> = None;
    let get_init = |n: &pb::NodeProto, name: &str| -> Result<Init> {
        let t = inits.get(name).ok_or_else(|| {
            ctx.node_err(
                n,
                format!("operand `{name}` must be an initializer (a constant weight)"),
            )
        })?;
        read_initializer(&ctx, t)
    };
    for n in graph
        .node
        .iter()
        .filter(|n| needed.contains(&(*n as *const pb::NodeProto)))
    {
        let op = n.op_type();
        if !n.domain().is_empty() && n.domain() != "ai.onnx" {
            return Err(ctx.node_err(
                n,
                format!("operator domain `{}` is not supported", n.domain()),
            ));
        }
        let flow: Vec<&String> = n.input.iter().filter(|i| **i == cur).collect();
        if flow.is_empty() {
            return Err(ctx.node_err(n, format!("does not consume the running activation `{cur}`; only chain graphs are supported")));
        }
        if finished && op != "Identity" {
            return Err(ctx.node_err(n, "only Identity may follow the trailing Softmax"));
        }
        let out = n
            .output
            .first()
            .cloned()
            .ok_or_else(|| ctx.node_err(n, "has no output"))?;
        match op {
            "Identity" => {}
            "Cast" => {
                let to = attr(n, "to").map(|a| a.i()).unwrap_or(0);
                if to != DataType::Float as i64 && to != DataType::Double as i64 {
                    return Err(ctx.node_err(n, format!("Cast to dtype {to} is not supported (only to float)")));
                }
            }
            "Conv" | "AveragePool" | "MaxPool" | "GlobalAveragePool" => {
                let Some(shape) = fmap.filter(|_| layers.is_empty()) else {
                    return Err(ctx.node_err(n, format!("{op} needs an NCHW feature map with concrete channels, height and width (the graph input, before any Flatten or dense layer)")));
                };
                let stage = if op == "Conv" {
                    let w = get_init(n, n.input.get(1).map(String::as_str).unwrap_or(""))?;
                    let b = match n.input.get(2).filter(|s| !s.is_empty()) {
                        Some(b) => Some(get_init(n, b)?),
                        None => None,
                    };
                    let (stage, wb) = stages::conv(&ctx, n, shape, w, b)?;
                    stage_weights.push(wb);
                    stage
                } else {
                    stages::pool(&ctx, n, shape)?
                };
                stage.validate(stages.len()).map_err(|e| ctx.node_err(n, e.to_string()))?;
                fmap = Some(stage.output_shape());
                stages.push(stage);
            }
            "Flatten" | "Reshape" => {
                if let (Some((c, h, w)), "Flatten") = (fmap.take(), op) {
                    in_width = Some(c * h * w);
                }
                if !layers.is_empty() {
                    return Err(ctx.node_err(n, "reshaping between dense layers is not supported"));
                }
                if op == "Flatten" && attr(n, "axis").map(|a| a.i()).unwrap_or(1) != 1 {
                    return Err(ctx.node_err(n, "only Flatten with axis = 1 is supported"));
                }
                if op == "Reshape" {
                    let shape = n.input.get(1).ok_or_else(|| ctx.node_err(n, "missing shape operand"))?;
                    let t = inits.get(shape.as_str()).ok_or_else(|| ctx.node_err(n, "shape must be an initializer"))?;
                    let dims: Vec<i64> = if t.int64_data.is_empty() {
                        t.raw_data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
                    } else {
                        t.int64_data.clone()
                    };
                    if dims.len() != 2 {
                        return Err(ctx.node_err(n, format!("only a reshape to 2-D (batch, features) is supported, got {dims:?}")));
                    }
                    if dims[1] > 0 {
                        in_width = Some(dims[1] as usize);
                    }
                }
            }
            "Gemm" => {
                let alpha = attr(n, "alpha").map(|a| a.f()).unwrap_or(1.0);
                let beta = attr(n, "beta").map(|a| a.f()).unwrap_or(1.0);
                let trans_a = attr(n, "transA").map(|a| a.i()).unwrap_or(0);
                let trans_b = attr(n, "transB").map(|a| a.i()).unwrap_or(0);
                if alpha != 1.0 || beta != 1.0 || trans_a != 0 {
                    return Err(ctx.node_err(n, "only Gemm with alpha = beta = 1 and transA = 0 is supported"));
                }
                if n.input[0] != cur {
                    return Err(ctx.node_err(n, "the activation must be Gemm's first operand"));
                }
                let b = get_init(n, n.input.get(1).map(String::as_str).unwrap_or(""))?;
                if b.dims.len() != 2 {
                    return Err(ctx.node_err(n, format!("weight must be 2-D, got dims {:?}", b.dims)));
                }
                let (rows, cols) = (b.dims[0] as usize, b.dims[1] as usize);
                let (inputs, outputs, w) = if trans_b == 1 {
                    let mut w = vec![0.0; rows * cols];
                    for o in 0..rows {
                        for i in 0..cols {
                            w[i * rows + o] = b.data[o * cols + i];
                        }
                    }
                    (cols, rows, w)
                } else {
                    (rows, cols, b.data)
                };
                let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
                    Some(c) => {
                        let c = get_init(n, c)?;
                        if c.data.len() != outputs {
                            return Err(ctx.node_err(n, format!("bias has {} values for {outputs} outputs", c.data.len())));
                        }
                        c.data
                    }
                    None => vec![0.0; outputs],
                };
                layers.push(DenseSpec { inputs, outputs, activation: Activation::None });
                weights.push((w, bias));
                pending_matmul = false;
            }
            "MatMul" => {
                if n.input[0] != cur {
                    return Err(ctx.node_err(n, "the activation must be MatMul's first operand"));
                }
                let b = get_init(n, n.input.get(1).map(String::as_str).unwrap_or(""))?;
                if b.dims.len() != 2 {
                    return Err(ctx.node_err(n, format!("weight must be 2-D, got dims {:?}", b.dims)));
                }
                let (inputs, outputs) = (b.dims[0] as usize, b.dims[1] as usize);
                layers.push(DenseSpec { inputs, outputs, activation: Activation::None });
                weights.push((b.data, vec![0.0; outputs]));
                pending_matmul = true;
            }
            "Add" => {
                if !pending_matmul {
                    return Err(ctx.node_err(n, "Add is only supported as the bias of a preceding MatMul"));
                }
                let other = n.input.iter().find(|i| **i != cur).ok_or_else(|| ctx.node_err(n, "adds the activation to itself"))?;
                let c = get_init(n, other)?;
                let outputs = layers[layers.len() - 1].outputs;
                if c.data.len() != outputs {
                    return Err(ctx.node_err(n, format!("bias has {} values for {outputs} outputs", c.data.len())));
                }
                let last = weights.len() - 1;
                weights[last].1 = c.data;
                pending_matmul = false;
            }
            op @ ("Relu" | "Sigmoid" | "Tanh") => {
                let act = match op {
                    "Relu" => Activation::Relu,
                    "Sigmoid" => Activation::Sigmoid,
                    _ => Activation::Tanh,
                };
                let slot = match (layers.last_mut(), stages.last_mut()) {
                    (Some(last), _) => &mut last.activation,
                    (None, Some(Stage::Conv(c))) => &mut c.activation,
                    _ => return Err(ctx.node_err(n, format!("{op} is supported after a dense layer or a convolution only"))),
                };
                if *slot != Activation::None {
                    return Err(ctx.node_err(n, "two activations in a row"));
                }
                *slot = act;
                pending_matmul = false;
            }
            "Softmax" => {
                let axis = attr(n, "axis").map(|a| a.i()).unwrap_or(-1);
                if axis != -1 && axis != 1 {
                    return Err(ctx.node_err(n, format!("Softmax over axis {axis} is not supported (only the class axis)")));
                }
                finished = true;
                pending_matmul = false;
            }
            other => {
                return Err(ctx.node_err(
                    n,
                    format!("operator {other} is not supported (supported: Conv, AveragePool, MaxPool, GlobalAveragePool, Gemm, MatMul+Add, Relu, Sigmoid, Tanh, Flatten, Reshape, Identity, Cast, trailing Softmax)"),
                ))
            }
        }
        cur = out;
    }
    if cur != output {
        return Err(ctx.err(format!(
            "output `{output}` is not reached by the chain from the input"
        )));
    }
    if let (Some(w), Some(first)) = (in_width, layers.first()) {
        if w != first.inputs {
            return Err(ctx.err(format!(
                "reshape to {w} features but the first layer takes {}",
                first.inputs
            )));
        }
    }
    let arch = Architecture::with_stages(stages, layers).map_err(|e| ctx.err(e.to_string()))?;
    stage_weights.extend(weights);
    let weights = stage_weights;
    let name = match model.graph.as_ref().map(|g| g.name()).unwrap_or("") {
        "" => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        s => s.to_string(),
    };
    Ok(ImportedModel {
        path: path.to_path_buf(),
        name,
        arch,
        initial: Some(weights),
    })
}

fn tensor(name: &str, dims: Vec<i64>, data: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        dims,
        data_type: Some(DataType::Float as i32),
        float_data: data,
        name: Some(name.to_string()),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| pb::tensor_shape_proto::Dimension {
            value: Some(match d {
                Some(v) => pb::tensor_shape_proto::dimension::Value::DimValue(*v),
                None => pb::tensor_shape_proto::dimension::Value::DimParam("batch".into()),
            }),
            denotation: None,
        })
        .collect();
    pb::ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(name.to_string()),
        op_type: Some(op.to_string()),
        attribute,
        ..Default::default()
    }
}

/// Builds the ONNX model of fixed-point weights (dequantized to float32).
pub fn to_onnx(
    arch: &Architecture,
    fx: &FixedParams,
    w: &Weights,
    graph_name: &str,
) -> pb::ModelProto {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut cur = "input".to_string();
    if !arch.stages.is_empty() {
        let real: Vec<(Vec<f32>, Vec<f32>)> = w
            .stages
            .iter()
            .map(|l| {
                let f = |v: &[i64]| v.iter().map(|&x| fx.dequantize(x) as f32).collect();
                (f(&l.w), f(&l.b))
            })
            .collect();
        cur = stages::export(&arch.stages, &real, cur, &mut nodes, &mut inits);
    }
    let input_dims: Vec<Option<i64>> = match arch.stages.first() {
        Some(st) => {
            let (c, h, w) = st.input_shape();
            vec![None, Some(c as i64), Some(h as i64), Some(w as i64)]
        }
        None => vec![None, Some(arch.input_dim() as i64)],
    };
    let nl = arch.layers.len();
    for (l, (spec, lw)) in arch.layers.iter().zip(&w.layers).enumerate() {
        let wn = format!("dense{l}.weight");
        let bn = format!("dense{l}.bias");
        inits.push(tensor(
            &wn,
            vec![spec.inputs as i64, spec.outputs as i64],
            lw.w.iter().map(|&v| fx.dequantize(v) as f32).collect(),
        ));
        inits.push(tensor(
            &bn,
            vec![spec.outputs as i64],
            lw.b.iter().map(|&v| fx.dequantize(v) as f32).collect(),
        ));
        let z = if l + 1 == nl {
            "logits".to_string()
        } else {
            format!("dense{l}.z")
        };
        nodes.push(node(
            "Gemm",
            &format!("dense{l}"),
            &[&cur, &wn, &bn],
            &[&z],
            vec![],
        ));
        cur = z;
        let op = match spec.activation {
            Activation::Relu => "Relu",
            Activation::Sigmoid => "Sigmoid",
            Activation::Tanh => "Tanh",
            Activation::None => continue,
        };
        if l + 1 == nl {
            // A sigmoid output: its probability is the model's output.
            break;
        }
        let name = spec.activation.name();
        let a = format!("dense{l}.{name}");
        nodes.push(node(op, &format!("{name}{l}"), &[&cur], &[&a], vec![]));
        cur = a;
    }
    match arch.loss() {
        // A regression's output is its single linear logit.
        Loss::MeanSquaredError => {}
        Loss::SoftmaxCrossEntropy => {
            let axis = pb::AttributeProto {
                name: Some("axis".into()),
                r#type: Some(pb::attribute_proto::AttributeType::Int as i32),
                i: Some(-1),
                ..Default::default()
            };
            nodes.push(node(
                "Softmax",
                "softmax",
                &[&cur],
                &["probabilities"],
                vec![axis],
            ));
        }
        Loss::SigmoidBinaryCrossEntropy => {
            nodes.push(node(
                "Sigmoid",
                "sigmoid",
                &[&cur],
                &["probabilities"],
                vec![],
            ));
        }
    }
    let width = arch.layers[nl - 1].outputs as i64;
    pb::ModelProto {
        ir_version: Some(8),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        producer_name: Some("zkaudit".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(pb::GraphProto {
            node: nodes,
            name: Some(graph_name.to_string()),
            initializer: inits,
            input: vec![value_info("input", &input_dims)],
            output: if arch.is_regression() {
                vec![value_info("logits", &[None, Some(width)])]
            } else {
                vec![
                    value_info("logits", &[None, Some(width)]),
                    value_info("probabilities", &[None, Some(width)]),
                ]
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Writes fixed-point weights as an ONNX file (atomically).
pub fn export(
    path: &Path,
    arch: &Architecture,
    fx: &FixedParams,
    w: &Weights,
    graph_name: &str,
) -> Result<()> {
    let bytes = to_onnx(arch, fx, w, graph_name).encode_to_vec();
    crate::transcript::write_atomic(path, &bytes)
}

/// The bundled example ONNX model (tests only).
#[cfg(test)]
fn bundled_example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/digits_mlp.onnx")
}

mod stages;

#[cfg(test)]
mod tests;
