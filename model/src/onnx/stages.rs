//! ONNX import and export of the convolution and pooling stages: `Conv`,
//! `AveragePool`, `MaxPool`, `GlobalAveragePool` on NCHW inputs, each attribute the
//! engine does not implement refused by name.

use super::{attr, pb, Ctx, Init};
use crate::arch::Activation;
use crate::error::Result;
use crate::float_ref::RealLayer;
use crate::stage::{ConvSpec, PoolSpec, Stage};

/// The integer list attribute `name` of a node, or `default`.
fn ints(n: &pb::NodeProto, name: &str, default: Vec<i64>) -> Vec<i64> {
    attr(n, name).map(|a| a.ints.clone()).unwrap_or(default)
}

/// `v` when every entry equals the first, else an error naming `what`.
fn uniform(ctx: &Ctx, n: &pb::NodeProto, what: &str, v: &[i64]) -> Result<usize> {
    match v.first() {
        Some(&x) if x >= 0 && v.iter().all(|&y| y == x) => Ok(x as usize),
        _ => Err(ctx.node_err(
            n,
            format!("attribute {what} = {v:?} is not supported (equal values on both axes only)"),
        )),
    }
}

/// Refuses the attributes a stage node may carry but the engine does not
/// implement (auto_pad, dilations, groups, ceil_mode).
fn refuse_unsupported(ctx: &Ctx, n: &pb::NodeProto) -> Result<()> {
    if let Some(a) = attr(n, "auto_pad") {
        let v = String::from_utf8_lossy(a.s()).into_owned();
        if v != "NOTSET" && !v.is_empty() {
            return Err(ctx.node_err(
                n,
                format!("attribute auto_pad = {v} is not supported (give pads)"),
            ));
        }
    }
    if ints(n, "dilations", vec![1]).iter().any(|&d| d != 1) {
        return Err(ctx.node_err(n, "attribute dilations is not supported (only 1)"));
    }
    if attr(n, "group").is_some_and(|a| a.i() != 1) {
        return Err(ctx.node_err(n, "attribute group is not supported (only 1)"));
    }
    if attr(n, "ceil_mode").is_some_and(|a| a.i() != 0) {
        return Err(ctx.node_err(n, "attribute ceil_mode is not supported (only 0, floor)"));
    }
    Ok(())
}

/// A `Conv` node on a `(C, H, W)` input: the stage and its kernel as the
/// `[C k k][OC]` matrix with its biases.
pub(super) fn conv(
    ctx: &Ctx,
    n: &pb::NodeProto,
    (c, h, w): (usize, usize, usize),
    weight: Init,
    bias: Option<Init>,
) -> Result<(Stage, RealLayer)> {
    refuse_unsupported(ctx, n)?;
    let d = &weight.dims;
    if d.len() != 4 || d[1] as usize != c || d[2] != d[3] || d[0] <= 0 {
        return Err(ctx.node_err(
            n,
            format!("kernel dims {d:?} do not fit a square kernel over {c} input channels ([OC, {c}, k, k])"),
        ));
    }
    let (oc, k) = (d[0] as usize, d[2] as usize);
    if ints(n, "kernel_shape", vec![k as i64, k as i64]) != [k as i64, k as i64] {
        return Err(ctx.node_err(n, "kernel_shape disagrees with the kernel's dims"));
    }
    let stride = uniform(ctx, n, "strides", &ints(n, "strides", vec![1, 1]))?;
    let padding = uniform(ctx, n, "pads", &ints(n, "pads", vec![0; 4]))?;
    let spec = ConvSpec::new((c, h, w), oc, k, (stride, padding), Activation::None);
    let b = match bias {
        Some(b) if b.data.len() == oc => b.data,
        Some(b) => {
            return Err(ctx.node_err(
                n,
                format!("bias has {} values for {oc} output channels", b.data.len()),
            ))
        }
        None => vec![0.0; oc],
    };
    // K[(c, i, j)][oc] = W[oc][c][i][j]
    let e = c * k * k;
    let mut kmat = vec![0.0; e * oc];
    for o in 0..oc {
        for r in 0..e {
            kmat[r * oc + o] = weight.data[o * e + r];
        }
    }
    Ok((Stage::Conv(spec), (kmat, b)))
}

/// An `AveragePool` or `MaxPool` (square window, stride equal to the
/// window, no padding) or `GlobalAveragePool` (square input) node on a
/// `(C, H, W)` input.
pub(super) fn pool(
    ctx: &Ctx,
    n: &pb::NodeProto,
    (c, h, w): (usize, usize, usize),
) -> Result<Stage> {
    if n.op_type() == "MaxPool" && n.output.len() > 1 {
        return Err(ctx.node_err(n, "the Indices output of MaxPool is not supported"));
    }
    let kernel = if n.op_type() == "GlobalAveragePool" {
        if h != w {
            return Err(ctx.node_err(
                n,
                format!("a global pooling over a non-square {h}x{w} map is not supported"),
            ));
        }
        h
    } else {
        refuse_unsupported(ctx, n)?;
        let k = uniform(ctx, n, "kernel_shape", &ints(n, "kernel_shape", vec![]))?;
        if uniform(
            ctx,
            n,
            "strides",
            &ints(n, "strides", vec![k as i64, k as i64]),
        )? != k
        {
            return Err(ctx.node_err(n, "only strides equal to the window are supported"));
        }
        if uniform(ctx, n, "pads", &ints(n, "pads", vec![0; 4]))? != 0 {
            return Err(ctx.node_err(n, "attribute pads is not supported for pooling (only 0)"));
        }
        k
    };
    let spec = PoolSpec {
        channels: c,
        height: h,
        width: w,
        kernel,
    };
    Ok(match n.op_type() {
        "MaxPool" => Stage::MaxPool(spec),
        _ => Stage::AvgPool(spec),
    })
}

/// The export of the stages: nodes and initializers from `cur`, followed by
/// a Flatten; returns the flattened tensor's name.
pub(super) fn export(
    stages: &[Stage],
    weights: &[(Vec<f32>, Vec<f32>)],
    mut cur: String,
    nodes: &mut Vec<pb::NodeProto>,
    inits: &mut Vec<pb::TensorProto>,
) -> String {
    let ints_attr = |name: &str, v: Vec<i64>| pb::AttributeProto {
        name: Some(name.into()),
        r#type: Some(pb::attribute_proto::AttributeType::Ints as i32),
        ints: v,
        ..Default::default()
    };
    let mut conv = weights.iter();
    for (i, st) in stages.iter().enumerate() {
        let out = format!("stage{i}");
        match st {
            Stage::Conv(c) => {
                let Some((kmat, b)) = conv.next() else { break };
                let (oc, e, k) = (c.out_channels, c.patch_len(), c.kernel as i64);
                let mut w = vec![0f32; e * oc];
                for o in 0..oc {
                    for r in 0..e {
                        w[o * e + r] = kmat[r * oc + o];
                    }
                }
                let (wn, bn) = (format!("stage{i}.weight"), format!("stage{i}.bias"));
                inits.push(super::tensor(
                    &wn,
                    vec![oc as i64, c.in_channels as i64, k, k],
                    w,
                ));
                inits.push(super::tensor(&bn, vec![oc as i64], b.clone()));
                let p = c.padding as i64;
                let s = c.stride as i64;
                let attrs = vec![
                    ints_attr("kernel_shape", vec![k, k]),
                    ints_attr("strides", vec![s, s]),
                    ints_attr("pads", vec![p, p, p, p]),
                ];
                nodes.push(super::node("Conv", &out, &[&cur, &wn, &bn], &[&out], attrs));
                cur = out;
                let op = match c.activation {
                    Activation::Relu => "Relu",
                    Activation::Sigmoid => "Sigmoid",
                    Activation::Tanh => "Tanh",
                    Activation::None => continue,
                };
                let a = format!("stage{i}.{}", c.activation.name());
                nodes.push(super::node(op, &a, &[&cur], &[&a], vec![]));
                cur = a;
            }
            Stage::AvgPool(p) | Stage::MaxPool(p) => {
                let k = p.kernel as i64;
                let attrs = vec![
                    ints_attr("kernel_shape", vec![k, k]),
                    ints_attr("strides", vec![k, k]),
                ];
                let op = match st {
                    Stage::MaxPool(_) => "MaxPool",
                    _ => "AveragePool",
                };
                nodes.push(super::node(op, &out, &[&cur], &[&out], attrs));
                cur = out;
            }
        }
    }
    let flat = "flatten".to_string();
    let axis = pb::AttributeProto {
        name: Some("axis".into()),
        r#type: Some(pb::attribute_proto::AttributeType::Int as i32),
        i: Some(1),
        ..Default::default()
    };
    nodes.push(super::node("Flatten", &flat, &[&cur], &[&flat], vec![axis]));
    flat
}
