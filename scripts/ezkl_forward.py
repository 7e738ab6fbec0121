#!/usr/bin/env python3
"""ezkl's side of the step-versus-forward-pass comparison (issue 17).

  ezkl_forward.py setup MODEL.onnx DATA.csv.gz BATCH DIR   # settings, SRS, keys
  ezkl_forward.py prove DIR                                # one proof, timed

`setup` writes, under DIR: the ezkl settings for MODEL with its batch
dimension fixed to BATCH (weights private, input private, output public:
the owner's secrets stay hidden, as in a zkaudit step), calibrated for
resources on the first BATCH records of DATA (the CSV's last column is the
label and is dropped; features are scaled like `zkaudit train` reads them,
by the file's maximum), the compiled circuit, a locally generated SRS of
the settings' size (ezkl.gen_srs: this machine has no network), the witness
and the proving and verifying keys. `prove` proves once from those files,
verifies the proof and prints `ezkl prove: S s (logrows L)`.
"""
import gzip
import json
import os
import sys
import time

import ezkl
import onnx


def load_rows(path, n):
    opener = gzip.open if path.endswith(".gz") else open
    rows = []
    with opener(path, "rt") as f:
        for line in f:
            parts = line.strip().split(",")
            try:
                rows.append([float(x) for x in parts[:-1]])
            except ValueError:
                continue  # header
            if len(rows) == n:
                break
    if len(rows) < n:
        sys.exit(f"{path}: only {len(rows)} records, {n} needed")
    top = max(max(abs(x) for x in r) for r in rows) or 1.0
    return [[x / top for x in r] for r in rows]


def setup(model, data, batch, d):
    os.makedirs(d, exist_ok=True)
    p = lambda name: os.path.join(d, name)
    rows = load_rows(data, batch)
    with open(p("input.json"), "w") as f:
        json.dump({"input_data": [[x for r in rows for x in r]]}, f)
    # ezkl needs static shapes: fix the (unnamed) batch dimension.
    m = onnx.load(model)
    for t in list(m.graph.input) + list(m.graph.output):
        dim = t.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = batch
    onnx.save(m, p("model.onnx"))
    model = p("model.onnx")
    args = ezkl.PyRunArgs()
    args.input_visibility = "private"
    args.output_visibility = "public"
    args.param_visibility = "private"
    if not ezkl.gen_settings(model, p("settings.json"), py_run_args=args):
        sys.exit("ezkl gen_settings failed")
    ezkl.calibrate_settings(p("input.json"), model, p("settings.json"), "resources")
    if not ezkl.compile_circuit(model, p("model.compiled"), p("settings.json")):
        sys.exit("ezkl compile_circuit failed")
    logrows = json.load(open(p("settings.json")))["run_args"]["logrows"]
    ezkl.gen_srs(p("kzg.srs"), logrows)
    ezkl.gen_witness(p("input.json"), p("model.compiled"), p("witness.json"))
    if not ezkl.setup(p("model.compiled"), p("vk.key"), p("pk.key"), p("kzg.srs")):
        sys.exit("ezkl setup failed")
    print(f"ezkl setup: logrows {logrows}")


def prove(d):
    p = lambda name: os.path.join(d, name)
    logrows = json.load(open(p("settings.json")))["run_args"]["logrows"]
    t0 = time.monotonic()
    ezkl.prove(p("witness.json"), p("model.compiled"), p("pk.key"), p("proof.json"), p("kzg.srs"))
    took = time.monotonic() - t0
    if not ezkl.verify(p("proof.json"), p("settings.json"), p("vk.key"), p("kzg.srs")):
        sys.exit("ezkl proof did not verify")
    print(f"ezkl prove: {took:.2f} s (logrows {logrows})")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "setup":
        setup(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) == 3 and sys.argv[1] == "prove":
        prove(sys.argv[2])
    else:
        sys.exit(__doc__)
