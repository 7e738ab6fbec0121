#!/usr/bin/env python3
"""Builds the TFLite import fixtures under examples/models/tflite/.

usage: python3 scripts/make_tflite_fixtures.py [OUTDIR]
(needs: pip install tensorflow-cpu onnx; tested with TensorFlow 2.21, onnx 1.23)

Each model is a small Keras model with seeded weights, converted to a
float32 .tflite file by the TensorFlow Lite converter, and written a second
time as an ONNX graph built by hand from the same Keras weights (NCHW, the
dense weights after a flatten reordered from Keras's NHWC order), so the
Rust tests can check that both imports give the same model and predictions:

- cnn_avg: 8x8x1 -> Conv2D(4, 3, same, relu) -> AveragePooling2D(2) -> Flatten -> Dense(10) -> softmax
- cnn_max: the same with MaxPooling2D(2) and a separate ReLU layer
- mlp_sigmoid: 30 -> Dense(8, tanh) -> Dense(1, sigmoid)
- unsupported: 8x8x1 -> Conv2D(2, 3) -> LeakyReLU -> Flatten -> Dense(10) (LEAKY_RELU is refused)
"""
import os
import sys

import numpy as np
import onnx
import tensorflow as tf
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "examples", "models", "tflite")
os.makedirs(OUT, exist_ok=True)
tf.keras.utils.set_random_seed(7)
L = tf.keras.layers


def cnn(pool, separate_relu):
    conv = L.Conv2D(4, 3, padding="same", activation=None if separate_relu else "relu")
    layers = [L.Input((8, 8, 1)), conv]
    if separate_relu:
        layers.append(L.ReLU())
    layers += [pool(2), L.Flatten(), L.Dense(10, activation="softmax")]
    return tf.keras.Sequential(layers)


MODELS = {
    "cnn_avg": cnn(L.AveragePooling2D, False),
    "cnn_max": cnn(L.MaxPooling2D, True),
    "mlp_sigmoid": tf.keras.Sequential(
        [L.Input((30,)), L.Dense(8, activation="tanh"), L.Dense(1, activation="sigmoid")]),
    "unsupported": tf.keras.Sequential(
        [L.Input((8, 8, 1)), L.Conv2D(2, 3), L.LeakyReLU(), L.Flatten(), L.Dense(10)]),
}


def to_onnx(name, model):
    """The same model as an ONNX graph (NCHW), from the Keras weights."""
    nodes, inits = [], []
    cur = "input"
    shape = None  # (C, H, W) while in the feature maps
    first = model.layers[0]
    if isinstance(first, L.Conv2D):
        h, w, c = model.input_shape[1:]
        shape = (c, h, w)
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, c, h, w])
    else:
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, model.input_shape[1]])
    out_name = None
    for i, layer in enumerate(model.layers):
        o = f"t{i}"
        if isinstance(layer, L.Conv2D):
            k, b = layer.get_weights()  # k: [kh, kw, C, OC]
            inits += [numpy_helper.from_array(k.transpose(3, 2, 0, 1).copy(), f"w{i}"),
                      numpy_helper.from_array(b, f"b{i}")]
            kh = k.shape[0]
            pad = (kh - 1) // 2 if layer.padding == "same" else 0
            nodes.append(helper.make_node("Conv", [cur, f"w{i}", f"b{i}"], [o], name=f"conv{i}",
                                          kernel_shape=[kh, kh], pads=[pad] * 4, strides=[1, 1]))
            cur = o
            c, h, w = shape
            shape = (k.shape[3], h + 2 * pad - kh + 1, w + 2 * pad - kh + 1)
            if layer.activation.__name__ == "relu":
                nodes.append(helper.make_node("Relu", [cur], [o + "r"]))
                cur = o + "r"
        elif isinstance(layer, (L.ReLU,)):
            nodes.append(helper.make_node("Relu", [cur], [o]))
            cur = o
        elif isinstance(layer, (L.AveragePooling2D, L.MaxPooling2D)):
            op = "AveragePool" if isinstance(layer, L.AveragePooling2D) else "MaxPool"
            nodes.append(helper.make_node(op, [cur], [o], kernel_shape=[2, 2], strides=[2, 2]))
            cur = o
            c, h, w = shape
            shape = (c, h // 2, w // 2)
        elif isinstance(layer, L.Flatten):
            nodes.append(helper.make_node("Flatten", [cur], [o], axis=1))
            cur = o
        elif isinstance(layer, L.Dense):
            wk, b = layer.get_weights()  # [in, out]
            if shape is not None:
                # Keras flattens (h, w, c); ONNX's Flatten of NCHW is (c, h, w).
                c, h, w = shape
                wk = wk.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
                shape = None
            inits += [numpy_helper.from_array(wk.T.copy(), f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
            nodes.append(helper.make_node("Gemm", [cur, f"w{i}", f"b{i}"], [o], transB=1))
            cur = o
            act = layer.activation.__name__
            if act in ("relu", "tanh", "sigmoid", "softmax"):
                op = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softmax": "Softmax"}[act]
                nodes.append(helper.make_node(op, [cur], [o + "a"]))
                cur = o + "a"
        else:
            return None
        out_name = cur
    outp = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [None, model.output_shape[1]])
    graph = helper.make_graph(nodes, name, [inp], [outp], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


for name, model in MODELS.items():
    tfl = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    with open(os.path.join(OUT, f"{name}.tflite"), "wb") as f:
        f.write(tfl)
    m = to_onnx(name, model)
    if m is not None:
        onnx.checker.check_model(m)
        onnx.save(m, os.path.join(OUT, f"{name}.onnx"))
        # The ONNX graph computes what the Keras model computes.
        import onnxruntime as ort
        x = np.random.default_rng(1).uniform(0, 1, (5,) + model.input_shape[1:]).astype(np.float32)
        xo = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x
        got = ort.InferenceSession(m.SerializeToString()).run(None, {"input": xo})[0]
        assert np.allclose(got, model(x).numpy(), atol=1e-5), name
    print(f"wrote {name}.tflite ({len(tfl)} bytes)" + (" and .onnx" if m is not None else ""))
