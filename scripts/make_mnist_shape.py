#!/usr/bin/env python3
"""Writes synthetic data of MNIST shape (784 pixel features in 0..255, label
last) as a 2-D float32 NPY file, for benchmarks of the 784-32-10 MLP.

usage: make_mnist_shape.py OUT.npy [ROWS]
Each class gets its own random prototype image plus noise, so the data is
learnable and the training run is meaningful.
"""
import sys

import numpy as np

out = sys.argv[1]
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 640
rng = np.random.default_rng(0)
protos = rng.integers(0, 256, size=(10, 784))
labels = rng.integers(0, 10, size=rows)
pixels = np.clip(protos[labels] + rng.normal(0, 40, size=(rows, 784)), 0, 255)
np.save(out, np.hstack([pixels, labels[:, None]]).astype(np.float32))
