//! ONNX import/export tests on generated graphs and the exporter-made fixture.

use super::*;
use crate::arch::LayerWeights;

fn write_model(dir: &tempfile::TempDir, name: &str, m: &pb::ModelProto) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

fn graph(
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: &[&str],
) -> pb::ModelProto {
    pb::ModelProto {
        ir_version: Some(8),
        graph: Some(pb::GraphProto {
            node: nodes,
            name: Some("g".into()),
            initializer: inits,
            input: inputs,
            output: outputs
                .iter()
                .map(|o| value_info(o, &[None, None]))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: Some(name.into()),
        r#type: Some(2),
        i: Some(v),
        ..Default::default()
    }
}

#[test]
fn imports_exporter_made_digits_mlp() {
    let m = crate::spec::load_model(&bundled_example()).unwrap();
    assert_eq!(m.arch.describe(), "64-16(relu)-10");
    let init = m.initial.unwrap();
    assert_eq!(init[0].0.len(), 64 * 16);
    assert_eq!(init[1].1.len(), 10);
    assert!(init
        .iter()
        .all(|(w, b)| w.iter().chain(b).all(|v| v.is_finite())));
    assert!(init[0].0.iter().any(|&v| v != 0.0));
}

#[test]
fn export_import_round_trip() {
    use Activation::*;
    // Every hidden activation, and both losses (softmax and sigmoid outputs).
    for (hidden, out_act, outputs) in [
        (Relu, None, 2),
        (Sigmoid, None, 3),
        (Tanh, Sigmoid, 1),
        (Relu, Sigmoid, 1),
    ] {
        let arch = Architecture::new(vec![
            DenseSpec {
                inputs: 3,
                outputs: 4,
                activation: hidden,
            },
            DenseSpec {
                inputs: 4,
                outputs,
                activation: out_act,
            },
        ])
        .unwrap();
        let fx = FixedParams::default();
        let w = Weights::seeded(&arch, &fx, 11);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.onnx");
        export(&p, &arch, &fx, &w, "rt").unwrap();
        let m = crate::spec::load_model(&p).unwrap();
        assert_eq!(m.arch, arch, "{}", arch.describe());
        let back = Weights::quantize(&arch, &fx, &m.initial.unwrap()).unwrap();
        assert_eq!(back, w);
    }
}

#[test]
fn gemm_trans_b_matmul_without_add_and_flatten() {
    let d = tempfile::tempdir().unwrap();
    // Flatten -> Gemm(transB=1, W is [out=2, in=3]) -> Relu -> MatMul (no bias) -> logits
    let nodes = vec![
        node("Flatten", "flat", &["x"], &["f"], vec![int_attr("axis", 1)]),
        node(
            "Gemm",
            "g0",
            &["f", "W0", "B0"],
            &["z0"],
            vec![int_attr("transB", 1)],
        ),
        node("Relu", "r0", &["z0"], &["a0"], vec![]),
        node("MatMul", "m1", &["a0", "W1"], &["logits"], vec![]),
    ];
    let inits = vec![
        tensor("W0", vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        tensor("B0", vec![2], vec![0.5, -0.5]),
        tensor("W1", vec![2, 2], vec![1.0, 0.0, 0.0, 1.0]),
    ];
    let p = write_model(
        &d,
        "t.onnx",
        &graph(
            nodes,
            inits,
            vec![value_info("x", &[None, Some(3)])],
            &["logits"],
        ),
    );
    let m = crate::spec::load_model(&p).unwrap();
    assert_eq!(m.arch.describe(), "3-2(relu)-2");
    let init = m.initial.unwrap();
    // transposed to [in][out]: w[i][o] = W0[o][i]
    assert_eq!(init[0].0, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert_eq!(init[0].1, vec![0.5, -0.5]);
    assert_eq!(init[1].1, vec![0.0, 0.0]);
}

#[test]
fn unsupported_op_names_node_and_op() {
    let d = tempfile::tempdir().unwrap();
    let nodes = vec![
        node("Gemm", "g0", &["x", "W0"], &["z0"], vec![]),
        node("Elu", "act", &["z0"], &["a0"], vec![]),
        node("Gemm", "g1", &["a0", "W1"], &["y"], vec![]),
    ];
    let inits = vec![
        tensor("W0", vec![2, 2], vec![0.0; 4]),
        tensor("W1", vec![2, 2], vec![0.0; 4]),
    ];
    let p = write_model(
        &d,
        "s.onnx",
        &graph(
            nodes,
            inits,
            vec![value_info("x", &[None, Some(2)])],
            &["y"],
        ),
    );
    let e = crate::spec::load_model(&p).unwrap_err().to_string();
    assert!(
        e.contains("node `act`") && e.contains("op Elu") && e.contains("not supported"),
        "{e}"
    );
}

#[test]
fn integer_weights_are_rejected_with_dtype() {
    let d = tempfile::tempdir().unwrap();
    let w = pb::TensorProto {
        dims: vec![2, 2],
        data_type: Some(DataType::Int64 as i32),
        int64_data: vec![1, 2, 3, 4],
        name: Some("W0".into()),
        ..Default::default()
    };
    let nodes = vec![node("MatMul", "m0", &["x", "W0"], &["y"], vec![])];
    let p = write_model(
        &d,
        "i.onnx",
        &graph(
            nodes,
            vec![w],
            vec![value_info("x", &[None, Some(2)])],
            &["y"],
        ),
    );
    let e = crate::spec::load_model(&p).unwrap_err().to_string();
    assert!(e.contains("`W0`") && e.contains("INT64"), "{e}");
}

#[test]
fn structural_errors() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("garbage.onnx");
    std::fs::write(&p, b"\xff\xff\xff not protobuf").unwrap();
    assert!(crate::spec::load_model(&p)
        .unwrap_err()
        .to_string()
        .contains("not a valid ONNX model"));

    // Softmax over the batch axis.
    let nodes = vec![
        node("Gemm", "g0", &["x", "W0"], &["z"], vec![]),
        node("Softmax", "sm", &["z"], &["p"], vec![int_attr("axis", 0)]),
    ];
    let inits = vec![tensor("W0", vec![2, 2], vec![0.0; 4])];
    let p = write_model(
        &d,
        "ax.onnx",
        &graph(
            nodes,
            inits,
            vec![value_info("x", &[None, Some(2)])],
            &["p"],
        ),
    );
    assert!(crate::spec::load_model(&p)
        .unwrap_err()
        .to_string()
        .contains("axis 0"));

    // A weight that is a second data input rather than an initializer.
    let nodes = vec![node("MatMul", "m0", &["x", "W"], &["y"], vec![])];
    let p = write_model(
        &d,
        "two.onnx",
        &graph(
            nodes,
            vec![],
            vec![
                value_info("x", &[None, Some(2)]),
                value_info("W", &[Some(2), Some(2)]),
            ],
            &["y"],
        ),
    );
    assert!(crate::spec::load_model(&p)
        .unwrap_err()
        .to_string()
        .contains("exactly one data input"));

    // Add that is not a bias.
    let nodes = vec![
        node("Gemm", "g0", &["x", "W0"], &["z"], vec![]),
        node("Add", "skip", &["z", "z"], &["y"], vec![]),
    ];
    let inits = vec![tensor("W0", vec![2, 2], vec![0.0; 4])];
    let p = write_model(
        &d,
        "add.onnx",
        &graph(
            nodes,
            inits,
            vec![value_info("x", &[None, Some(2)])],
            &["y"],
        ),
    );
    let e = crate::spec::load_model(&p).unwrap_err().to_string();
    assert!(e.contains("node `skip`") && e.contains("op Add"), "{e}");
}

#[test]
fn exported_model_has_expected_nodes() {
    let arch = Architecture::new(vec![DenseSpec {
        inputs: 2,
        outputs: 2,
        activation: Activation::None,
    }])
    .unwrap();
    let w = Weights {
        stages: vec![],
        layers: vec![LayerWeights {
            w: vec![65536, 0, 0, 65536],
            b: vec![0, 0],
        }],
    };
    let m = to_onnx(&arch, &FixedParams::default(), &w, "x");
    let ops: Vec<&str> = m
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type())
        .collect();
    assert_eq!(ops, vec!["Gemm", "Softmax"]);
}

/// The digits CNN (conv, ReLU, average pooling, flatten, dense) exported
/// and imported back: same architecture, same weights.
#[test]
fn cnn_export_import_round_trip() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/digits_cnn.toml");
    let arch = crate::spec::load_model(&spec).unwrap().arch;
    let fx = FixedParams::default();
    let w = Weights::seeded(&arch, &fx, 5);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("cnn.onnx");
    export(&p, &arch, &fx, &w, "cnn").unwrap();
    let m = crate::spec::load_model(&p).unwrap();
    assert_eq!(m.arch, arch);
    let back = Weights::quantize(&arch, &fx, &m.initial.unwrap()).unwrap();
    assert_eq!(back, w);
    let ops: Vec<String> = to_onnx(&arch, &fx, &w, "cnn")
        .graph
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type().to_string())
        .collect();
    assert_eq!(
        ops,
        ["Conv", "Relu", "AveragePool", "Flatten", "Gemm", "Softmax"]
    );
    // A max pooling and a tanh convolution survive the round trip too.
    let mut arch = arch;
    if let (Stage::Conv(c), Stage::AvgPool(pool)) = (arch.stages[0], arch.stages[1]) {
        arch.stages[0] = Stage::Conv(crate::stage::ConvSpec {
            activation: Activation::Tanh,
            ..c
        });
        arch.stages[1] = Stage::MaxPool(pool);
    }
    let w = Weights::seeded(&arch, &fx, 6);
    export(&p, &arch, &fx, &w, "cnn").unwrap();
    let m = crate::spec::load_model(&p).unwrap();
    assert_eq!(m.arch, arch);
    assert_eq!(
        Weights::quantize(&arch, &fx, &m.initial.unwrap()).unwrap(),
        w
    );
}

/// Convolution attributes the engine does not implement are refused by
/// node and attribute name.
#[test]
fn unsupported_conv_attributes_are_named() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/digits_cnn.toml");
    let arch = crate::spec::load_model(&spec).unwrap().arch;
    let fx = FixedParams::default();
    let good = to_onnx(&arch, &fx, &Weights::seeded(&arch, &fx, 5), "cnn");
    let d = tempfile::tempdir().unwrap();
    for (name, op, value) in [
        ("dilations", "Conv", vec![2, 2]),
        ("group", "Conv", vec![]),
        ("ceil_mode", "AveragePool", vec![]),
        ("strides", "Conv", vec![1, 2]),
    ] {
        let mut m = good.clone();
        let g = m.graph.as_mut().unwrap();
        let node = g.node.iter_mut().find(|n| n.op_type() == op).unwrap();
        node.attribute.retain(|a| a.name() != name);
        node.attribute.push(if value.is_empty() {
            int_attr(name, 2)
        } else {
            pb::AttributeProto {
                name: Some(name.into()),
                r#type: Some(pb::attribute_proto::AttributeType::Ints as i32),
                ints: value,
                ..Default::default()
            }
        });
        let p = write_model(&d, &format!("{name}.onnx"), &m);
        let e = crate::spec::load_model(&p).unwrap_err().to_string();
        assert!(
            e.contains(name) && e.contains(&format!("op {op}")),
            "{name}: {e}"
        );
    }
}

/// Models exported by PyTorch's `torch.onnx.export`
/// (`scripts/make_torch_models.py`): the CNN is the bundled digits CNN's
/// architecture, the MLP a tanh layer with a sigmoid output, and a dilated
/// convolution is refused by node and attribute.
#[test]
fn pytorch_exports_import() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/torch");
    let cnn = crate::spec::load_model(&dir.join("digits_cnn.onnx")).unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/digits_cnn.toml");
    assert_eq!(cnn.arch, crate::spec::load_model(&spec).unwrap().arch);
    assert_eq!(cnn.initial.as_ref().map(Vec::len), Some(2));
    let mlp = crate::spec::load_model(&dir.join("cancer_mlp.onnx")).unwrap();
    assert_eq!(mlp.arch.describe(), "30-8(tanh)-1(sigmoid)");
    let e = crate::spec::load_model(&dir.join("unsupported.onnx"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("op Conv") && e.contains("dilations"), "{e}");
}

/// A GlobalAveragePool over a square map is a pooling with the map's size
/// as its window; over a non-square map it is refused by node.
#[test]
fn global_average_pool_imports() {
    let d = tempfile::tempdir().unwrap();
    let model = |h: i64, w: i64| {
        let nodes = vec![
            node("Conv", "conv", &["x", "K"], &["c"], vec![]),
            node("Relu", "relu", &["c"], &["r"], vec![]),
            node("GlobalAveragePool", "gap", &["r"], &["g"], vec![]),
            node("Flatten", "flat", &["g"], &["f"], vec![int_attr("axis", 1)]),
            node("Gemm", "fc", &["f", "W"], &["y"], vec![]),
        ];
        let inits = vec![
            tensor("K", vec![2, 1, 1, 1], vec![1.0, -1.0]),
            tensor("W", vec![2, 3], vec![0.5; 6]),
        ];
        graph(
            nodes,
            inits,
            vec![value_info("x", &[None, Some(1), Some(h), Some(w)])],
            &["y"],
        )
    };
    let p = write_model(&d, "gap.onnx", &model(4, 4));
    let m = crate::spec::load_model(&p).unwrap();
    assert_eq!(m.arch.describe(), "1x4x4-conv1x1/2(relu)-avgpool4-2-3");
    let p = write_model(&d, "gap_rect.onnx", &model(4, 6));
    let e = crate::spec::load_model(&p).unwrap_err().to_string();
    assert!(e.contains("node `gap`") && e.contains("non-square"), "{e}");
}
