#!/usr/bin/env python3
"""Exports PyTorch models with torch.onnx.export for the import tests.

usage: python3 scripts/make_torch_models.py [OUTDIR]
(needs: pip install torch onnx; tested with torch 2.15, its TorchScript exporter)

- digits_cnn.onnx: 1x8x8 -> Conv2d(1, 8, 3, padding=1) -> ReLU -> AvgPool2d(2)
  -> Flatten -> Linear(128, 10), the bundled digits CNN as PyTorch builds it;
- cancer_mlp.onnx: 30 -> Linear(30, 8) -> Tanh -> Linear(8, 1) -> Sigmoid;
- unsupported.onnx: 1x8x8 -> Conv2d(1, 2, 3, dilation=2) -> Flatten -> Linear
  (a dilated convolution, which the importer refuses by name).
Weights are PyTorch's seeded default initialisation; `zkaudit train` imports
them as the run's initial weights.
"""
import os
import sys

import torch
from torch import nn

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "examples", "models", "torch")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(7)

MODELS = {
    "digits_cnn": (nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                                 nn.Flatten(), nn.Linear(128, 10)), (1, 1, 8, 8)),
    "cancer_mlp": (nn.Sequential(nn.Linear(30, 8), nn.Tanh(), nn.Linear(8, 1), nn.Sigmoid()),
                   (1, 30)),
    "unsupported": (nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2), nn.Flatten(),
                                  nn.Linear(32, 10)), (1, 1, 8, 8)),
}

for name, (model, shape) in MODELS.items():
    path = os.path.join(OUT, f"{name}.onnx")
    torch.onnx.export(model.eval(), torch.zeros(shape), path, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}},
                      opset_version=13, dynamo=False)
    print(f"wrote {path}")
