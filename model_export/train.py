"""`emotion-export train`: train the edge CNN on Training, choose on PublicTest, resume from checkpoints.

Everything needed to continue lives in the run folder: last.keras (model + optimizer state),
best.keras (best PublicTest accuracy), state.json (epoch, best, patience), log.csv and curves.png.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from edge.argtypes import float_in, int_in
from edge.errors import ConfigError, ModelError
from model_export.data import FER_LABELS, load_dataset

STATE = "state.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="FER2013 .npz, fer2013.csv or image folder")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, log, curves)")
    p.add_argument("--epochs", type=int_in(1, 100_000), default=30)
    p.add_argument("--batch-size", type=int_in(1, 65_536), default=128)
    p.add_argument("--input-size", type=int_in(16, 512), default=48)
    p.add_argument("--width", type=float_in(0, 8, above=True), default=0.75, help="channel multiplier")
    p.add_argument("--lr", type=float_in(0, 10, above=True), default=3e-3)
    p.add_argument("--weight-decay", type=float_in(0, 1), default=5e-4)
    p.add_argument("--label-smoothing", type=float_in(0, 0.99), default=0.1)
    p.add_argument("--ferplus-weight", type=float_in(0, 1), default=0.0,
                   help="mix this share of the FER+ vote distribution into each face's target (0 = FER2013 labels only); "
                        "faces without emotion votes keep their FER2013 label")
    p.add_argument("--class-weight-power", type=float_in(0, 5), default=0.3,
                   help="class weight = (mean count / count) ** power; 0 turns balancing off")
    p.add_argument("--patience", type=int_in(1), default=10, help="early stop after this many epochs without a better PublicTest accuracy")
    p.add_argument("--limit", type=int_in(0), default=0, help="use only the first N training images (smoke tests)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--bn-images", type=int_in(0), default=4096,
                   help="clean training faces used to re-estimate BatchNorm statistics each epoch (0 = off)")
    p.add_argument("--no-resume", action="store_true", help="start fresh even if the run folder has a checkpoint")
    p.add_argument("--init-from", type=Path, help="start a new run from this checkpoint's weights (a warm restart "
                   "with a fresh schedule); ignored when the run folder already has its own checkpoint")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras progress bar style")


def class_weights(labels: np.ndarray, n: int, power: float) -> dict[int, float]:
    """Mild inverse-frequency weights: helps disgust/fear without wrecking overall accuracy."""
    counts = np.bincount(labels, minlength=n).astype(np.float64)
    w = (counts.mean() / np.maximum(counts, 1)) ** power
    w = w / (w * counts).sum() * counts.sum()  # keep the mean sample weight at 1
    return {i: float(w[i]) for i in range(n)}


def augmenter(seed: int):
    """Flip, shift, rotate, zoom, brightness/contrast: the variation a shelf camera sees."""
    import keras
    from keras import layers

    return keras.Sequential([
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(0.04, fill_mode="reflect", seed=seed + 1),
        layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 2),
        layers.RandomZoom((-0.15, 0.15), fill_mode="reflect", seed=seed + 3),
        layers.RandomBrightness(0.2, value_range=(0.0, 1.0), seed=seed + 4),
        layers.RandomContrast(0.3, seed=seed + 5),
    ], name="augment")


def recalibrate_bn(model, x: np.ndarray, batch: int = 128) -> None:
    """Re-estimate BatchNorm moving statistics on clean (unaugmented) training faces.

    Measured here: with strong augmentation and a high learning rate the moving averages lag far
    behind the weights (epoch 4: PublicTest 34 % in inference mode vs 54 % after this pass).
    """
    import keras

    bns = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.9
    try:
        for i in range(0, len(x), batch):
            model(x[i:i + batch], training=True)
    finally:
        for layer, m in zip(bns, saved):
            layer.momentum = m


def soft_targets(labels: np.ndarray, votes: np.ndarray | None, n_cls: int, weight: float) -> np.ndarray:
    """One-hot FER2013 labels blended with the FER+ annotators' vote shares.

    FER2013's single labels are noisy (FER+ majority agrees with them 63 % of the time); the ten
    votes per face say how ambiguous it is, which a one-hot target cannot.
    """
    onehot = np.eye(n_cls, dtype=np.float32)[labels]
    if weight <= 0 or votes is None:
        return onehot
    from model_export.data import _FER_FROM_FERPLUS

    emo = votes[:, _FER_FROM_FERPLUS].astype(np.float32)
    total = emo.sum(axis=1, keepdims=True)
    has = total[:, 0] > 0
    out = onehot.copy()
    out[has] = (1.0 - weight) * onehot[has] + weight * emo[has] / total[has]
    return out


def _prepare(images: np.ndarray, size: int) -> np.ndarray:
    from edge.preprocess import resize_face, to_float

    if images.shape[1] != size:
        images = np.stack([resize_face(im, size, size) for im in images])
    return to_float(images, (0.0, 1.0))[..., None]


def _plot(log_csv: Path, png: Path) -> None:
    """Loss and accuracy curves from the CSV log (matplotlib is optional)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = [line.split(",") for line in log_csv.read_text().splitlines()]
    if len(rows) < 2:
        return
    head, data = rows[0], rows[1:]
    col = {k: [float(r[i]) for r in data] for i, k in enumerate(head)}
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for k in ("loss", "val_loss"):
        if k in col:
            a.plot(col["epoch"], col[k], label=k)
    for k in ("accuracy", "val_accuracy"):
        if k in col:
            b.plot(col["epoch"], col[k], label=k)
    a.set_xlabel("epoch"), b.set_xlabel("epoch"), a.legend(), b.legend()
    b.set_title("accuracy (val = PublicTest)")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)


def _init_model(path: Path, input_size: int, n_cls: int):
    """--init-from: a readable Keras model with this run's input size and class count, else ModelError."""
    from model_export.predictors import load_keras

    model = load_keras(path)  # names the file: missing, not Keras, unreadable
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape != (None, input_size, input_size, 1) or tuple(model.output_shape) != (None, n_cls):
        raise ModelError(f"--init-from {path}: input {shape} / output {model.output_shape} do not match this run "
                         f"(input (None, {input_size}, {input_size}, 1), {n_cls} classes); pass the same --input-size")
    return model


def train(args: argparse.Namespace) -> Path:
    """Run (or resume) training; returns the path of the best checkpoint."""
    init = getattr(args, "init_from", None)  # checked before TensorFlow loads: fail in a second, not a minute
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder (train writes a run folder)")
    if init and not Path(init).is_file():
        raise ModelError(f"--init-from {init}: no such file")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.width < 0.5:
        # Measured: TF 2.21's oneDNN kernels corrupt the heap ("corrupted size vs. prev_size",
        # abort) on our 8-channel separable convs; the plain kernels are fine. Only effective
        # when TensorFlow is not imported yet, as with `emotion-export train`.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import keras

    from model_export.arch import build_model

    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create the run folder ({e.strerror or e})") from None
    keras.utils.set_random_seed(args.seed)

    ds = load_dataset(args.data)
    x_tr, y_tr = ds.split("Training")
    x_va, y_va = ds.split("PublicTest")
    v_tr = ds.subset("Training").votes
    if args.limit:
        x_tr, y_tr = x_tr[:args.limit], y_tr[:args.limit]
        v_tr = None if v_tr is None else v_tr[:args.limit]
        x_va, y_va = x_va[:max(64, args.limit // 4)], y_va[:max(64, args.limit // 4)]
    n_cls = len(FER_LABELS)
    x_tr, x_va = _prepare(x_tr, args.input_size), _prepare(x_va, args.input_size)
    fp_w = getattr(args, "ferplus_weight", 0.0)
    if fp_w > 0 and v_tr is None:
        print(f"{args.data}: no FER+ votes, so --ferplus-weight is ignored", flush=True)
    oh_tr = soft_targets(y_tr, v_tr, n_cls, fp_w)
    oh_va = keras.utils.to_categorical(y_va, n_cls)

    state_path, last, best = out / STATE, out / "last.keras", out / "best.keras"
    state = {"epoch": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "wait": 0, "args": {}}
    if last.exists() and state_path.exists() and not args.no_resume:
        state = json.loads(state_path.read_text())
        model = keras.models.load_model(last)
        print(f"resuming {last} after epoch {state['epoch']} (best PublicTest {state['best_val_accuracy']:.4f})", flush=True)
    else:
        if init:
            model = _init_model(init, args.input_size, n_cls)
            print(f"new run from the weights of {init}", flush=True)
        else:
            model = build_model(args.input_size, args.width, n_cls)
        steps = int(np.ceil(len(x_tr) / args.batch_size)) * args.epochs
        warm = min(steps // 10, int(np.ceil(len(x_tr) / args.batch_size)) * 2)
        sched = keras.optimizers.schedules.CosineDecay(
            args.lr * 0.1, decay_steps=max(1, steps - warm), alpha=0.01,
            warmup_target=args.lr, warmup_steps=warm)
        model.compile(
            optimizer=keras.optimizers.AdamW(sched, weight_decay=args.weight_decay),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing),
            metrics=["accuracy"])
        state["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
        state_path.write_text(json.dumps(state, indent=2))
        (out / "log.csv").unlink(missing_ok=True)
    if state["epoch"] >= args.epochs or state["wait"] >= args.patience:
        print(f"nothing to do: run finished at epoch {state['epoch']}", flush=True)
        return best

    import tensorflow as tf

    aug = augmenter(args.seed)
    train_ds = (tf.data.Dataset.from_tensor_slices((x_tr, oh_tr))
                .shuffle(len(x_tr), seed=args.seed + state["epoch"], reshuffle_each_iteration=True)
                .batch(args.batch_size)
                .map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(2))
    cw = class_weights(y_tr, n_cls, args.class_weight_power) if args.class_weight_power > 0 else None

    class Checkpoint(keras.callbacks.Callback):
        """Save last + best every epoch, and stop early; state survives a kill between epochs."""

        def on_epoch_end(self, epoch, logs=None):
            if bn_x is not None:
                recalibrate_bn(self.model, bn_x)
            val = self.model.evaluate(x_va, oh_va, batch_size=256, verbose=0, return_dict=True)
            logs["val_loss"], logs["val_accuracy"] = float(val["loss"]), float(val["accuracy"])
            print(f"epoch {epoch + 1}: PublicTest accuracy {logs['val_accuracy']:.4f} (BN re-estimated on clean faces)", flush=True)
            acc = float(logs["val_accuracy"])
            if acc > state["best_val_accuracy"]:
                state.update(best_val_accuracy=acc, best_epoch=epoch + 1, wait=0)
                self.model.save(best.with_suffix(".tmp.keras"))
                os.replace(best.with_suffix(".tmp.keras"), best)
            else:
                state["wait"] += 1
            self.model.save(last.with_suffix(".tmp.keras"))
            os.replace(last.with_suffix(".tmp.keras"), last)
            state["epoch"] = epoch + 1
            state["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            state_path.write_text(json.dumps(state, indent=2))
            _plot(out / "log.csv", out / "curves.png")
            if state["wait"] >= args.patience:
                print(f"early stop: no better PublicTest accuracy for {args.patience} epochs", flush=True)
                self.model.stop_training = True

    bn_n = getattr(args, "bn_images", 4096)
    bn_x = x_tr[np.random.default_rng(args.seed).permutation(len(x_tr))[:bn_n]] if bn_n else None
    # Checkpoint runs first: it re-estimates BN, evaluates PublicTest and fills val_* for the CSV log.
    model.fit(train_ds, batch_size=args.batch_size, epochs=args.epochs,
              initial_epoch=state["epoch"], class_weight=cw, verbose=args.verbose,
              callbacks=[Checkpoint(), keras.callbacks.CSVLogger(str(out / "log.csv"), append=True)])
    print(f"best PublicTest accuracy {state['best_val_accuracy']:.4f} at epoch {state['best_epoch']}: {best}", flush=True)
    return best


def run(args: argparse.Namespace) -> int:
    train(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emotion-export train", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
