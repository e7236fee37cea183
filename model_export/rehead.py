"""`emotion-export rehead`: one or more trained nets' features, a new softmax head fitted on FER2013.

Each backbone (a `train` checkpoint less its head) sees the face and its mirror image (the face alone
with `--no-mirror`, at the net's own price); their features are averaged per backbone and concatenated,
and a multinomial logistic regression with a strong L2 penalty (`--l2`, on standardised features)
is fitted on every Training face. Why: `headroom` showed that two nets' features together hold more
about real people than either (docs/CALIBRATION.md), and the heads that `train` learns along with the
net fit FER2013's web faces more tightly than real ones need. The new head of `_w1_mix` + `_ft` reads
FER2013 as well or better and calibrated real people better (model_export/runs/README.md,
`rehead_w1mix_ft`). PrivateTest stays untouched: PublicTest is printed for each `--l2` given, and the
model is written with the first.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge.argtypes import float_in
from edge.errors import DataError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", type=Path, help="train's .keras checkpoints (same input and labels)")
    p.add_argument("--data", required=True, help="FER2013 .npz, fer2013.csv or image folder: Training fits, PublicTest scores")
    p.add_argument("--out", required=True, type=Path, help="OUT.keras")
    p.add_argument("--l2", type=float_in(0, 100, above=True), nargs="+", default=[0.3],
                   help="penalty of the head's weights (standardised features); several: PublicTest for each, "
                        "the model is written with the first")
    p.add_argument("--no-mirror", action="store_true",
                   help="the face alone, not also its mirror image: one pass of each net per face, half the cost")


def run(args: argparse.Namespace) -> int:
    from model_export.data import load_dataset
    from model_export.heads import backbone, fit_softmax, same_io, with_new_head
    from model_export.inputs import prepare_float
    from model_export.predictors import check_keras_out, load_keras, run_info, same_run_inputs, write_run_info

    check_keras_out(args.out, args.checkpoints, "new model")
    mirror = not args.no_mirror
    known = [(c, i) for c in args.checkpoints if (i := run_info(c)) is not None]
    same_run_inputs(known)
    nets = [load_keras(c) for c in args.checkpoints]
    shape, n_out = same_io(nets, args.checkpoints, "they must match")
    model, features, head = with_new_head([backbone(m, c) for c, m in zip(args.checkpoints, nets)], shape, n_out,
                                           mirror)
    data = load_dataset(args.data)
    x_tr, y_tr = data.split("Training")
    x_pu, y_pu = data.split("PublicTest")
    if len(x_tr) == 0 or len(x_pu) == 0:
        raise DataError(f"{args.data}: needs Training faces to fit on and PublicTest faces to score on")
    if int(y_tr.max()) >= n_out:
        raise DataError(f"{args.data}: has classes the checkpoints have no output for")
    rng = known[0][1].input_range if known else (0.0, 1.0)
    views = " (each also mirrored)" if mirror else ""
    print(f"features of {len(x_tr)} Training and {len(x_pu)} PublicTest faces{views} ...", flush=True)
    f_tr = features.predict(prepare_float(x_tr, shape[1], shape[0], rng), batch_size=256, verbose=0)
    f_pu = features.predict(prepare_float(x_pu, shape[1], shape[0], rng), batch_size=256, verbose=0)
    for i, l2 in enumerate(args.l2):
        w, b = fit_softmax(f_tr, y_tr, n_out, l2, steps=600)
        acc = float(((f_pu @ w + b).argmax(1) == y_pu).mean())
        print(f"l2 {l2:g}: PublicTest {acc:.4f}", flush=True)
        if i == 0:  # the model is written with the first --l2
            head.set_weights([w.astype(np.float32), b.astype(np.float32)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    if known:
        write_run_info(args.out, known[0][1], {"command": "rehead", "checkpoints": [str(c) for c in args.checkpoints],
                                               "l2": args.l2[0], "mirror": mirror})
    print(f"wrote {args.out} ({len(nets)} backbone{'s' if len(nets) > 1 else ''}{', mirror averaged' if mirror else ''}, "
          f"head l2 {args.l2[0]:g}); "
          f"export it with: emotion-export export {args.out} --input-range {rng[0]:g},{rng[1]:g} --representative-data DATA "
          "--out NAME.tflite")
    return 0
