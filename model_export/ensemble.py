"""`emotion-export ensemble`: one Keras model that averages the probabilities of several trained
models, optionally each also shown the mirror image, so it exports to one int8 `.tflite`.

Two small nets that err differently, and a face's mirror image, read FER2013 better than either net
alone (runs/README.md); built into one graph, the edge runs it like any model and `evaluate` measures
what the device does. The mirror is a fixed anti-identity Dense over the width axis (standard layers
only, so the file loads without custom code and quantizes exactly: its weights are 0 and 1).
Each member and the ensemble are scored on PublicTest; PrivateTest stays untouched.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge.errors import ConfigError, ModelError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", type=Path, help=".keras models with the same input and labels")
    p.add_argument("--out", required=True, type=Path, help="OUT.keras for the ensemble")
    p.add_argument("--mirror", action="store_true", help="also show each member the mirror image (twice the work per face)")
    p.add_argument("--data", help="FER2013 .npz, fer2013.csv or image folder: score members and ensemble on PublicTest")


def check_request(args: argparse.Namespace) -> None:
    """Refuse what cannot work before anything heavy loads."""
    if len(args.checkpoints) < 2 and not args.mirror:
        raise ConfigError("ensemble needs at least two checkpoints (or one with --mirror)")
    from model_export.predictors import check_keras_out

    check_keras_out(args.out, args.checkpoints, "ensemble")


def build(members: list, paths: list[Path], mirror: bool):
    """The ensemble model: input -> [members x views] -> mean of the probabilities."""
    import keras
    from keras import layers

    from model_export.heads import mirror_view, same_io, set_mirror

    shape, _ = same_io(members, paths, "an ensemble needs the same input and outputs")
    if len(shape) != 3:
        raise ModelError(f"{paths[0]}: expected an image input (height, width, channels), got {shape}")
    for i, m in enumerate(members):
        m.name = f"member{i}_{m.name}"  # two runs of one architecture would otherwise share a name
    inp = keras.Input(shape, name="face")
    views = [inp]
    flip = None
    if mirror:
        mirrored, flip = mirror_view(inp, shape[1])
        views.append(mirrored)
    outs = [m(v) for m in members for v in views]
    out = layers.Average(name="probs")(outs) if len(outs) > 1 else outs[0]
    model = keras.Model(inp, out, name=f"ensemble{len(members)}{'_mirror' if mirror else ''}")
    if flip is not None:
        set_mirror(flip, shape[1])
    return model


def run(args: argparse.Namespace) -> int:
    from model_export.predictors import load_keras, run_info, same_run_inputs, write_run_info

    check_request(args)
    known = [(c, i) for c in args.checkpoints if (i := run_info(c)) is not None]
    same_run_inputs(known)
    members = [load_keras(c) for c in args.checkpoints]
    model = build(members, list(args.checkpoints), args.mirror)
    if args.data:
        _score(args, members, model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    if known:  # a run folder for the ensemble, so export/evaluate find the labels and input range
        write_run_info(args.out, known[0][1], {"command": "ensemble"})
    rng = f"{known[0][1].input_range[0]:g},{known[0][1].input_range[1]:g}" if known else "LO,HI"
    print(f"wrote {args.out} ({len(members)} member{'s' if len(members) > 1 else ''}{', mirror averaged' if args.mirror else ''}); "
          f"export it with: emotion-export export {args.out} --input-range {rng} --representative-data DATA --out NAME.tflite")
    return 0


def _score(args: argparse.Namespace, members: list, model) -> None:
    from model_export.data import load_dataset
    from model_export.inputs import train_inputs

    x, y = load_dataset(args.data).split("PublicTest")
    if len(x) == 0:
        raise ConfigError(f"{args.data}: has no PublicTest faces to score on")
    x = train_inputs(x, model.input_shape[1])
    for c, m in zip(args.checkpoints, members):
        print(f"{c}: PublicTest {_accuracy(m, x, y):.4f}", flush=True)
    print(f"ensemble: PublicTest {_accuracy(model, x, y):.4f}", flush=True)


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict(x, batch_size=256, verbose=0).argmax(1) == y).mean())

