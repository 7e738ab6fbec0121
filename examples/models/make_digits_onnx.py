#!/usr/bin/env python3
"""Produces digits_mlp.onnx with a real exporter (scikit-learn + skl2onnx).

A 64-16-10 ReLU MLP (the architecture of digits_mlp.toml) is fitted briefly on
the vendored digits data (pixels divided by 16, the same [0, 1] range that
zkaudit's min-max scaling gives) and exported with skl2onnx; zkaudit imports
its initializers as private initial weights and fine-tunes from there.

    pip install scikit-learn skl2onnx onnx
    python3 examples/models/make_digits_onnx.py
"""
import gzip
import os
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from skl2onnx import to_onnx

here = os.path.dirname(os.path.abspath(__file__))
with gzip.open(os.path.join(here, "..", "data", "digits.csv.gz"), "rt") as f:
    data = np.loadtxt(f, delimiter=",")
x = (data[:, :64] / 16.0).astype(np.float32)
y = data[:, 64].astype(np.int64)

clf = MLPClassifier(hidden_layer_sizes=(16,), activation="relu", max_iter=5, random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    clf.fit(x, y)
onx = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset=13)
out = os.path.join(here, "digits_mlp.onnx")
with open(out, "wb") as f:
    f.write(onx.SerializeToString())
print(f"wrote {out}: train accuracy after {clf.n_iter_} epochs = {clf.score(x, y):.3f}")
