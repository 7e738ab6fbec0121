#!/usr/bin/env python3
"""Evaluates an ONNX model with onnxruntime on the features of a JSON file.

usage: onnx_predict.py MODEL.onnx INPUT.json OUTPUT.json
INPUT.json: {"features": [[...], ...]}; OUTPUT.json: {"predictions": [...]}.
Used by the export test to check that standard runtimes load zkaudit's ONNX
export and agree with the fixed-point model.
"""
import json
import sys

import numpy as np
import onnxruntime as ort

model, inp, out = sys.argv[1:4]
x = np.asarray(json.load(open(inp))["features"], dtype=np.float32)
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
shape = sess.get_inputs()[0].shape
if len(shape) == 4:
    # A convolutional model reads NCHW feature maps: the records are flattened NCHW.
    x = x.reshape((x.shape[0], shape[1], shape[2], shape[3]))
logits = sess.run(["logits"], {"input": x})[0]
if logits.shape[1] == 1:
    # A sigmoid output (binary cross-entropy): class 1 when its logit is positive.
    preds = (logits[:, 0] > 0).astype(int)
else:
    preds = np.argmax(logits, axis=1)
json.dump({"predictions": [int(i) for i in preds]}, open(out, "w"))
