"""`emotion-export train`: train the edge CNN on Training, choose on PublicTest, resume from checkpoints.

Everything needed to continue lives in the run folder: last.keras (model + optimizer state),
best.keras (best PublicTest accuracy), state.json (epoch, best, patience, labels, input range),
log.csv and curves.png (epochs counted from 1, as on the console).
The model has one output per class the Training split has, in FER order (a folder's classes of its own,
train/smile, train/frown, after FER's, alphabetically); state.json's `labels`
and `input_range` let `export` and `evaluate` use best.keras without --labels/--input-range.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from edge.argtypes import float_in, int_in, random_seed
from edge.errors import ConfigError, DataError, ModelError
from model_export.arch import STEMS
from model_export.data import FER_LABELS, TRAINING, Dataset, load_dataset
from model_export.inputs import TRAIN_RANGE, train_inputs

STATE = "state.json"


@dataclass
class TrainOptions:
    """What one `train` call is asked to do (the command line's options, defaults here), checked once by
    `check` before anything loads; the run folder's state.json records them (`recorded`)."""

    data: str
    out: Path
    epochs: int = 30
    batch_size: int = 128
    input_size: int = 48
    width: float = 0.75
    stem: str = "double"
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    ferplus_weight: float = 0.0
    teacher: Path | None = None
    teacher_weight: float = 0.7
    feature_weight: float = 0.0
    mixup: float = 0.0
    erase: float = 0.0
    class_weight_power: float = 0.3
    patience: int = 10
    limit: int = 0
    seed: int = 1234
    bn_images: int = 4096
    no_resume: bool = False
    init_from: Path | None = None
    verbose: int | None = None  # None: 1 on a terminal, else 0 (decided by check)
    tensorboard: Path | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace | TrainOptions) -> TrainOptions:
        """From parsed arguments (options a caller's Namespace lacks take their defaults)."""
        if isinstance(args, cls):
            return args
        given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        opts = cls(**given)
        opts.out = Path(opts.out)
        return opts

    def check(self, stdout=None) -> None:
        """The refusals that need no data and no TensorFlow: a second, not a minute, into the run."""
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out}: exists and is not a folder (train writes a run folder)")
        if self.feature_weight > 0 and self.teacher is None:
            raise ConfigError("--feature-weight needs --teacher: a teacher file with features "
                              "(emotion-export teacher --features)")
        if self.init_from and not Path(self.init_from).is_file():
            raise ModelError(f"--init-from {self.init_from}: no such file")
        if self.tensorboard:
            import importlib.util

            if importlib.util.find_spec("tensorboard") is None:  # Keras' callback fails only at the first epoch's end
                raise ConfigError("--tensorboard needs the tensorboard package (not part of tensorflow-cpu): "
                                  "pip install tensorboard")
        if self.verbose is None:
            self.verbose = keras_verbosity(stdout or sys.stdout)

    def recorded(self) -> dict:
        """The options as state.json keeps them (paths as text)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self).items()}


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainOptions  # the defaults live in the dataclass
    p.add_argument("--data", required=True, help="FER2013 .npz, fer2013.csv or image folder")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, log, curves)")
    p.add_argument("--epochs", type=int_in(1, 100_000), default=d.epochs)
    p.add_argument("--batch-size", type=int_in(1, 65_536), default=d.batch_size)
    p.add_argument("--input-size", type=int_in(16, 512), default=d.input_size)
    p.add_argument("--width", type=float_in(0, 8, above=True), default=d.width, help="channel multiplier")
    p.add_argument("--stem", choices=STEMS, default=d.stem,
                   help="the full-resolution stem: two 3x3 convs, the second one separable, or one conv")
    p.add_argument("--lr", type=float_in(0, 10, above=True), default=d.lr)
    p.add_argument("--weight-decay", type=float_in(0, 1), default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float_in(0, 0.99), default=d.label_smoothing)
    p.add_argument("--ferplus-weight", type=float_in(0, 1), default=d.ferplus_weight,
                   help="mix this share of the FER+ vote distribution into each face's target (0 = FER2013 labels only); "
                        "faces without emotion votes keep their FER2013 label")
    p.add_argument("--teacher", type=Path, help="distil: TEACHER.npz from `emotion-export teacher` (an ensemble's "
                   "probabilities for each Training face), mixed into the targets by --teacher-weight")
    p.add_argument("--teacher-weight", type=float_in(0, 1), default=d.teacher_weight,
                   help="share of the teacher's probabilities in each target (with --teacher)")
    p.add_argument("--feature-weight", type=float_in(0, 100), default=d.feature_weight,
                   help="distil features too: also learn to reproduce the teacher file's features of each face "
                        "(`emotion-export teacher --features`), this weight x their mean squared error (standardised) "
                        "beside the cross-entropy; 0 = off")
    p.add_argument("--mixup", type=float_in(0, 10), default=d.mixup, metavar="ALPHA",
                   help="mixup: train on blends of two faces (and of their targets), share ~ Beta(ALPHA, ALPHA) per "
                        "face; 0 = off, 0.2 is usual")
    p.add_argument("--erase", type=float_in(0, 1), default=d.erase, metavar="P",
                   help="random erasing: with probability P, one rectangle of each face (2-25 %% of it) becomes noise, "
                        "so the net must read more of the face than one region; 0 = off")
    p.add_argument("--class-weight-power", type=float_in(0, 5), default=d.class_weight_power,
                   help="class weight = (mean count / count) ** power; 0 turns balancing off")
    p.add_argument("--patience", type=int_in(1), default=d.patience, help="early stop after this many epochs without a better PublicTest accuracy")
    p.add_argument("--limit", type=int_in(0), default=d.limit, help="use only the first N training images (smoke tests)")
    p.add_argument("--seed", type=random_seed, default=d.seed)
    p.add_argument("--bn-images", type=int_in(0), default=d.bn_images,
                   help="clean training faces used to re-estimate BatchNorm statistics each epoch (0 = off)")
    p.add_argument("--no-resume", action="store_true", help="start fresh even if the run folder has a checkpoint")
    p.add_argument("--init-from", type=Path, help="start a new run from this checkpoint's weights (a warm restart "
                   "with a fresh schedule); ignored when the run folder already has its own checkpoint")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2),
                   help="Keras progress bar style (default: 1 on a terminal, 0 when the output goes to a file or pipe, "
                        "whose log would fill with bar redraws; each epoch's own line is printed either way)")
    p.add_argument("--tensorboard", type=Path, metavar="DIR", help="also write TensorBoard logs to DIR")


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


def class_targets(labels: np.ndarray, votes: np.ndarray | None, classes: np.ndarray, weight: float,
                  n_names: int = len(FER_LABELS)) -> np.ndarray:
    """soft_targets restricted to the classes the model has (data label indices, in order), rows renormalised:
    FER+ votes for a class the data lacks are spread over the others rather than lost from the sum.
    n_names: how many classes the data's labels index (FER's 7; votes exist only for FER data)."""
    t = soft_targets(labels, votes, n_names, weight)[:, classes]
    return t / np.maximum(t.sum(axis=1, keepdims=True), 1e-12)


LOG_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def _plot(log_csv: Path, png: Path) -> None:
    """Loss and accuracy curves from the CSV log, every epoch written so far (matplotlib is optional)."""
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
    col = {k: [float(r[i]) if i < len(r) and r[i] else float("nan") for r in data] for i, k in enumerate(head)}
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for k in ("loss", "val_loss"):
        if k in col:
            a.plot(col["epoch"], col[k], marker=".", label=k)
    for k in ("accuracy", "val_accuracy"):
        if k in col:
            b.plot(col["epoch"], col[k], marker=".", label=k)
    from matplotlib.ticker import MaxNLocator

    for ax in (a, b):
        ax.set_xlabel("epoch (first = 1)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.5 tick
        ax.legend()
    b.set_title("accuracy (val = PublicTest)")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    _last_figure[:] = [fig]
    plt.close(fig)


_last_figure: list = []  # the figure _plot last drew (closed), for tests of its axes


def _append_log(log_csv: Path, epoch: int, logs: dict) -> None:
    """One row per finished epoch, numbered from 1 like the console (written before the plot reads it)."""
    new = not log_csv.exists()
    with open(log_csv, "a", encoding="utf-8") as f:
        if new:
            f.write(",".join(LOG_FIELDS) + "\n")
        vals = [str(epoch)] + [repr(float(logs[k])) if k in logs else "" for k in LOG_FIELDS[1:]]
        f.write(",".join(vals) + "\n")


def _renumber_old_log(log_csv: Path, done: int) -> None:
    """Runs made before epochs were counted from 1 wrote Keras' 0-based CSV: renumber it once on resume."""
    try:
        lines = log_csv.read_text().splitlines()
    except OSError:
        return
    if len(lines) < 2 or not lines[0].startswith("epoch,"):
        return
    try:
        last = int(float(lines[-1].split(",")[0]))
    except ValueError:
        return
    if last != done - 1:
        return
    head = lines[0].split(",")
    rows = [dict(zip(head, line.split(","))) for line in lines[1:]]
    out = [",".join(LOG_FIELDS)]
    for r in rows:
        out.append(",".join([str(int(float(r["epoch"])) + 1)] + [r.get(k, "") for k in LOG_FIELDS[1:]]))
    log_csv.write_text("\n".join(out) + "\n")


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _classes(y_train: np.ndarray, where: str) -> np.ndarray:
    """The classes the Training split has, in the data's order (FER's for FER data): the model's outputs and labels."""
    classes = np.unique(y_train)  # the data's label indices: FER order for FER data
    if len(classes) < 2:
        raise DataError(f"{where}: Training has {len(classes)} class(es); a classifier needs at least 2")
    return classes


def _restart_hint(args: TrainOptions, out: Path) -> str:
    return (f"emotion-export train --data {args.data} --out {out}-more --init-from {out / 'best.keras'} --epochs N")


def _next_command(args: TrainOptions, best: Path, n_training: int) -> str:
    """The export to run next; with fewer Training faces than the int8 representative set needs, it names
    another face set instead of a command that would fail after loading the model."""
    from model_export.representative import MIN_REPRESENTATIVE
    from model_export.progress import replaces

    if n_training < MIN_REPRESENTATIVE:
        return (f"next: emotion-export export {best} --representative-data OTHER_FACES --out models/emotion.tflite"
                f"   ({args.data} has {n_training} Training faces and the int8 conversion needs at least "
                f"{MIN_REPRESENTATIVE} representative ones: use another face set, e.g. FER2013's fer2013.npz; only the "
                f"int8 value ranges come from it"
                f"{replaces('models/emotion.tflite')})")
    return (f"next: emotion-export export {best} --representative-data {args.data} --out models/emotion.tflite"
            f"   (input range and labels are read from the run folder{replaces('models/emotion.tflite')})")


def _init_model(path: Path, input_size: int, n_cls: int):
    """--init-from: a readable Keras model with this run's input size and class count, else ModelError."""
    from model_export.predictors import load_keras

    model = load_keras(path)  # names the file: missing, not Keras, unreadable
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape != (None, input_size, input_size, 1) or tuple(model.output_shape) != (None, n_cls):
        raise ModelError(f"--init-from {path}: input {shape} / output {model.output_shape} do not match this run "
                         f"(input (None, {input_size}, {input_size}, 1), {n_cls} classes); pass the same --input-size")
    return model


def _remove_unfinished_run(out: Path) -> None:
    """Undo a run folder this call created, file by file (never anything the user put there)."""
    import shutil

    for name in (STATE, "log.csv", "curves.png", "best.keras", "tensorboard"):
        p = out / name
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    try:
        out.rmdir()  # only if now empty
    except OSError:
        pass


def train(args: argparse.Namespace | TrainOptions) -> Path:
    """Run (or resume) training; returns the path of the best checkpoint.

    A run folder this call created is removed again when the run fails before its first checkpoint,
    so a typo in --data leaves nothing behind.
    """
    args = TrainOptions.from_args(args)
    args.check()  # before TensorFlow loads: fail in a second, not a minute
    out: Path = args.out
    if (out / STATE).is_file() and (out / "last.keras").exists() and not args.no_resume:
        _refuse_changed_options(args, out)
    if (out / STATE).is_file() and not (out / "last.keras").exists() and not args.no_resume:
        if (best := _finished_best(out, args)) is not None:
            return best
        # a fresh run here would overwrite best.keras with its first epoch
        raise ConfigError(f"--out {out}: has {STATE} but no last.keras to resume from (a finished run that kept only "
                          f"best.keras, or one stopped before its first epoch ended); continue from its weights in a new "
                          f"folder: {_restart_hint(args, out)}, or start this one over with --no-resume")
    created = not out.exists()
    try:
        return _train(args, out)
    except KeyboardInterrupt:
        print(_interrupted(args, out, created), flush=True)
        if created and out.is_dir() and not (out / "last.keras").exists():
            _remove_unfinished_run(out)
        raise
    except BaseException:
        if created and out.is_dir() and not (out / "last.keras").exists():
            _remove_unfinished_run(out)
        raise


def keras_verbosity(stream) -> int:
    """Keras' progress bar on a terminal; none into a file or pipe (its redraws would fill the log)."""
    try:
        return 1 if stream.isatty() else 0
    except (AttributeError, ValueError):
        return 0


def _interrupted(args: TrainOptions, out: Path, created: bool) -> str:
    """What a Ctrl-C kept and how to go on: the same command resumes after the last finished epoch."""
    try:
        done = int(json.loads((out / STATE).read_text()).get("epoch", 0)) if (out / "last.keras").exists() else 0
    except (OSError, ValueError, AttributeError):
        done = 0
    again = train_command(args)
    if done:
        return f"interrupted: {out} keeps epoch {done} (last.keras, best.keras); resume with the same command: {again}"
    return (f"interrupted before the first epoch ended: nothing kept{' (run folder removed)' if created else ''}; "
            f"start again with: {again}")


def train_command(args: TrainOptions) -> str:
    """The `emotion-export train` command with this run's options (those not at their default), to repeat it."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    parts = ["emotion-export", "train"]
    for a in parser._actions:  # noqa: SLF001 - argparse has no public list of a parser's actions
        value = getattr(args, a.dest, None)
        if not a.option_strings or a.dest == "verbose" or value is None or value is False or value == a.default:
            continue
        parts += [a.option_strings[0]] if value is True else [a.option_strings[0], str(value)]
    return shlex.join(parts)


# What every run made before an option existed did, where another value would be another net: a run
# folder without "stem" in its state.json has the double stem (its last.keras says so, not the call).
BEFORE_OPTION = {"stem": "double", "feature_weight": 0.0}
RESUME_FREE = frozenset({"out", "epochs", "no_resume", "init_from", "verbose", "tensorboard", "patience", "command", "module", "func"})
"""Options a resumed run may change: where it is, how it reports, when it stops (--epochs is checked with its
schedule in _load_state); every other one shapes the model, its data or its schedule."""


def _same_option(key: str, old, new) -> bool:
    """Equal as the run would use them: paths compared resolved, numbers as numbers."""
    if old is None or new is None:
        return old is None and new is None
    if key in ("data", "teacher"):
        return Path(str(old)).resolve() == Path(str(new)).resolve()
    if isinstance(new, (int, float)) and not isinstance(new, bool) and isinstance(old, (int, float)):
        return float(old) == float(new)
    return str(old) == str(new)


def changed_options(args: TrainOptions, recorded: dict) -> list[tuple[str, object, object]]:
    """(option, recorded value, asked value) for each option that differs from the run folder's state.json
    (options the run predates are not compared, but those in BEFORE_OPTION: what it did before they existed)."""
    asked = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    recorded = {**BEFORE_OPTION, **recorded}
    return [(k, recorded[k], v) for k, v in asked.items()
            if k not in RESUME_FREE and k in recorded and not _same_option(k, recorded[k], v)]


def _flag(key: str, value) -> str:
    return f"--{key.replace('_', '-')} {value}" if value is not None else f"no --{key.replace('_', '-')}"


def _refuse_changed_options(args: TrainOptions, out: Path) -> None:
    """Resuming with other options would mix two runs in one (a model of one width trained on one data size,
    its best epoch picked across scores on different faces) while state.json still named the first: refused,
    before anything loads."""
    try:
        recorded = json.loads((out / STATE).read_text()).get("args", {})
    except (OSError, ValueError, AttributeError):
        return  # _load_state names an unreadable state.json
    if not isinstance(recorded, dict):
        return
    changed = changed_options(args, recorded)
    if changed:
        raise ConfigError(
            f"{out} was trained with {', '.join(_flag(k, old) for k, old, _ in changed)}; this call asks for "
            f"{', '.join(_flag(k, new) for k, _, new in changed)}: resume with the run's own options, train into a "
            f"new --out, or start this one over with --no-resume")


def _finished_best(out: Path, args: TrainOptions) -> Path | None:
    """best.keras of a run that finished this very schedule and kept no last.keras (as resuming a finished
    run would: nothing left to train), else None."""
    try:
        state = json.loads((out / STATE).read_text())
        planned, epoch = int(state["args"]["epochs"]), int(state["epoch"])
        stopped = int(state.get("wait", 0)) >= int(state["args"].get("patience", args.patience))
        best_acc, best_epoch = float(state["best_val_accuracy"]), int(state["best_epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if planned != args.epochs or not (epoch >= planned or stopped) or not (out / "best.keras").is_file():
        return None
    print(f"{out}: finished after epoch {epoch} of {planned} (best PublicTest {best_acc:.4f} at epoch {best_epoch}); "
          f"nothing to train, best.keras kept. To train on: {_restart_hint(args, out)}", flush=True)
    return out / "best.keras"


def _tf_environment(args: TrainOptions) -> None:
    """Environment TensorFlow reads at start-up."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.width < 0.5:
        # Measured: TF 2.21's oneDNN kernels corrupt the heap ("corrupted size vs. prev_size",
        # abort) on our 8-channel separable convs; the plain kernels are fine. Only effective
        # when TensorFlow is not imported yet, as with `emotion-export train`.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@dataclass
class _Data:
    """Training and selection faces, labels as the model's output indices."""

    ds: Dataset
    x_tr: np.ndarray
    y_tr: np.ndarray  # data label indices until _train maps them through lut
    v_tr: np.ndarray | None  # FER+ votes of the Training rows
    x_va: np.ndarray
    y_va: np.ndarray
    classes: np.ndarray  # data label indices (FER's, or into ds.names) of the model's outputs, in order
    labels: tuple[str, ...]
    lut: np.ndarray  # data label index -> output index (-1: not a class of the model)
    va_left_out: int  # PublicTest faces of classes Training lacks
    teacher: np.ndarray | None = None  # distillation targets, one row per Training face (model's classes)
    teacher_features: np.ndarray | None = None  # with --feature-weight: the teacher's features of each Training face


def _training_data(args: TrainOptions) -> _Data:
    """Training and PublicTest faces (data first: a bad --data fails in a second, before TensorFlow starts)."""
    ds = load_dataset(args.data)
    x_tr, y_tr = ds.split("Training")
    x_va, y_va = ds.split("PublicTest")
    if not len(x_tr) or not len(x_va):
        raise DataError(f"{ds.source}: training needs Training and PublicTest faces "
                        f"(found {len(x_tr)} and {len(x_va)})")
    classes = _classes(y_tr, ds.source)
    names = tuple(ds.names)  # FER_LABELS, or a folder's classes of its own (train/smile, train/frown)
    lut = np.full(len(names), -1, np.int64)
    lut[classes] = np.arange(len(classes))
    v_tr = None if ds.votes is None else ds.votes[ds.usage == TRAINING]
    va_keep = lut[y_va] >= 0
    teacher, features = _teacher_rows(args, x_tr, tuple(names[i] for i in classes))
    x_va, y_va = x_va[va_keep], y_va[va_keep]
    if args.limit:
        x_tr, y_tr = x_tr[:args.limit], y_tr[:args.limit]
        v_tr = None if v_tr is None else v_tr[:args.limit]
        teacher = None if teacher is None else teacher[:args.limit]
        features = None if features is None else features[:args.limit]
        x_va, y_va = x_va[:max(64, args.limit // 4)], y_va[:max(64, args.limit // 4)]
    return _Data(ds, x_tr, y_tr, v_tr, x_va, y_va, classes, tuple(names[i] for i in classes), lut,
                 int((~va_keep).sum()), teacher, features)


def _teacher_rows(args: TrainOptions, x_tr: np.ndarray, labels: tuple[str, ...]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The --teacher file's probabilities (and features, with --feature-weight), checked against these
    Training faces and classes."""
    path = args.teacher
    if path is None:
        return None, None
    from model_export import teacher

    t = teacher.load(path)
    teacher.check_fits(t, path, labels, len(x_tr), teacher.fingerprint(x_tr))
    if args.feature_weight > 0 and t.features is None:
        raise DataError(f"{path}: holds no features for --feature-weight; make it with `emotion-export teacher --features`")
    return t.probs, (t.features if args.feature_weight > 0 else None)


def _load_state(args: TrainOptions, out: Path, data: _Data) -> tuple[dict, bool]:
    """The run's state.json when resuming (refusing other classes or a changed schedule), else a fresh one."""
    state_path, last = out / STATE, out / "last.keras"
    resuming = last.exists() and state_path.exists() and not args.no_resume
    if not resuming:
        return {"epoch": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "wait": 0, "args": {}}, False
    state = json.loads(state_path.read_text())
    planned = int(state.get("args", {}).get("epochs", args.epochs))
    old_labels = tuple(state.get("labels") or FER_LABELS)
    if old_labels != data.labels:
        raise ConfigError(f"{out} was trained on the classes {','.join(old_labels)} but {data.ds.source} has "
                          f"{','.join(data.labels)}; use the same data or a new --out")
    if args.epochs != planned and not (state["epoch"] >= planned and args.epochs < planned):
        # the saved optimizer's cosine schedule ends at `planned` epochs: past it, the learning rate
        # stays at the floor (training looks like it runs but barely learns)
        finished = state["epoch"] >= planned or state["wait"] >= args.patience
        where = "finished" if finished else f"stopped after epoch {state['epoch']}"
        raise ConfigError(
            f"{out} was planned for {planned} epochs ({where}) "
            f"and its learning-rate schedule ends there, so --epochs {args.epochs} would "
            f"{'train at the floor learning rate' if args.epochs > planned else 'stop before the schedule ends'}; "
            f"resume with --epochs {planned}, or continue from its weights with a fresh schedule: {_restart_hint(args, out)}")
    return state, True


def _print_data_summary(args: TrainOptions, data: _Data) -> None:
    """What was found, before the slow part starts."""
    counts = data.ds.counts()
    n_cls = len(data.classes)
    tr_counts = np.bincount(data.lut[data.y_tr], minlength=n_cls)
    print(f"data {data.ds.source}: Training {counts['Training']}, PublicTest {counts['PublicTest']}, "
          f"PrivateTest {counts['PrivateTest']} (PrivateTest is not used by train)"
          + (f"; --limit: {len(data.x_tr)} Training, {len(data.x_va)} PublicTest" if args.limit else ""), flush=True)
    print(f"selection split (best.keras is chosen on it): PublicTest = {data.ds.public_from}"
          + (f"; {data.va_left_out} of its faces have classes Training lacks and are left out"
             if data.va_left_out else ""), flush=True)
    print(f"classes ({n_cls}, in this order = the model's outputs and labels): "
          + ", ".join(f"{lab} {int(c)}" for lab, c in zip(data.labels, tr_counts)), flush=True)
    missing = [lab for lab in data.ds.names if lab not in data.labels]
    if missing:
        print(f"not in the data, so not in the model: {', '.join(missing)}", flush=True)
    from model_export.representative import MIN_REPRESENTATIVE

    if counts["Training"] < MIN_REPRESENTATIVE:
        print(f"note: {counts['Training']} Training faces are fewer than the {MIN_REPRESENTATIVE} representative faces "
              f"the int8 conversion needs: export this model with --representative-data on another face set "
              f"(e.g. FER2013)", flush=True)


def _new_model(args: TrainOptions, n_cls: int, steps_per_epoch: int, n_features: int = 0,
               class_weights: list[float] | None = None):
    """A fresh (or --init-from) model, compiled with AdamW on a warm-up + cosine schedule over all epochs;
    with n_features, the training model of feature distillation (class weights then live in its loss)."""
    import keras

    from model_export.arch import build_model

    init = args.init_from
    if init:
        model = _init_model(init, args.input_size, n_cls)
        print(f"new run from the weights of {init}", flush=True)
    else:
        model = build_model(args.input_size, args.width, n_cls, stem=args.stem)
    steps = steps_per_epoch * args.epochs
    warm = min(steps // 10, steps_per_epoch * 2)
    sched = keras.optimizers.schedules.CosineDecay(
        args.lr * 0.1, decay_steps=max(1, steps - warm), alpha=0.01,
        warmup_target=args.lr, warmup_steps=warm)
    optimizer = keras.optimizers.AdamW(sched, weight_decay=args.weight_decay)
    if n_features:
        from model_export import feature_kd

        model = feature_kd.training_model(model, n_features)
        feature_kd.compile_for_features(model, n_cls, args.feature_weight, optimizer, args.label_smoothing, class_weights)
        return model
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing),
        metrics=["accuracy"])
    return model


def _start_run_folder(args: TrainOptions, out: Path, state: dict, labels: tuple[str, ...]) -> None:
    """Create the run folder with a state.json that export/evaluate read (labels, input range)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create the run folder ({e.strerror or e})") from None
    state["args"] = args.recorded()
    state["labels"] = list(labels)
    state["input_range"] = list(TRAIN_RANGE)  # what train_inputs feeds; export reads this
    (out / STATE).write_text(json.dumps(state, indent=2))
    (out / "log.csv").unlink(missing_ok=True)


def _open_model(args: TrainOptions, out: Path, state: dict, resuming: bool, labels: tuple[str, ...],
                steps_per_epoch: int, n_features: int = 0, class_weights: list[float] | None = None):
    """The model to fit: last.keras when resuming, else a new one in a new run folder."""
    from model_export import feature_kd  # noqa: F401 - registers its loss and metric, which last.keras may name
    from model_export.predictors import load_keras

    if resuming:
        try:
            model = load_keras(out / "last.keras", compile=True)
        except ModelError as e:
            raise ModelError(f"{e}; cannot resume: start over with --no-resume, or from its weights: "
                             f"{_restart_hint(args, out)}") from None
        print(f"resuming {out / 'last.keras'} after epoch {state['epoch']} "
              f"(best PublicTest {state['best_val_accuracy']:.4f})", flush=True)
        _renumber_old_log(out / "log.csv", state["epoch"])
        return model
    model = _new_model(args, len(labels), steps_per_epoch, n_features, class_weights)
    _start_run_folder(args, out, state, labels)
    return model


def mixup(x: np.ndarray, y: np.ndarray, alpha: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Blend each face of a batch with another face of the same batch, and their targets alike (Zhang et al.
    2018: a net trained on blends behaves more linearly between faces). Share ~ Beta(alpha, alpha)."""
    if alpha <= 0 or len(x) < 2:
        return x, y
    lam = rng.beta(alpha, alpha, size=len(x)).astype(np.float32)
    perm = rng.permutation(len(x))
    lx = lam.reshape((-1,) + (1,) * (x.ndim - 1))
    return (lx * x + (1 - lx) * x[perm]).astype(np.float32), (lam[:, None] * y + (1 - lam[:, None]) * y[perm]).astype(np.float32)


ERASE_AREA = (0.02, 0.25)
"""Share of the face one erased rectangle covers (Zhong et al. 2020 use 0.02-0.4 on whole objects; a
face with 40 % gone often has no expression left to read)."""
ERASE_ASPECT = (0.3, 3.3)


def erase(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Random erasing (Zhong et al. 2020): with probability p, one rectangle of each face (ERASE_AREA of it,
    aspect ERASE_ASPECT) becomes uniform noise in [0, 1]. A net that cannot count on the mouth alone must
    also read the brows and eyes, where subtle real expressions show. x: (n, h, w, c) in [0, 1], copied."""
    if p <= 0:
        return x
    x = np.array(x, np.float32, copy=True)
    n, h, w = x.shape[:3]
    for i in np.flatnonzero(rng.random(n) < p):
        area = rng.uniform(*ERASE_AREA) * h * w
        aspect = np.exp(rng.uniform(*np.log(ERASE_ASPECT)))
        eh = int(min(h, max(1, round(np.sqrt(area * aspect)))))
        ew = int(min(w, max(1, round(np.sqrt(area / aspect)))))
        y0, x0 = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
        x[i, y0:y0 + eh, x0:x0 + ew] = rng.random((eh, ew) + x.shape[3:], dtype=np.float32)
    return x


def _batch_extras(x: np.ndarray, y: np.ndarray, args: TrainOptions, rng: np.random.Generator):
    """What is done to an augmented batch on the host: random erasing, then mixup (both off by default)."""
    return mixup(erase(x, args.erase, rng), y, args.mixup, rng)


def _mixup_rng(args: TrainOptions, epoch: int) -> np.random.Generator:
    """The blends' generator for a run resumed at `epoch`: the same in both pipelines."""
    return np.random.default_rng(args.seed + 7919 * (epoch + 1))


def _train_pipeline(x: np.ndarray, targets: np.ndarray, args: TrainOptions, epoch: int):
    """Shuffled, augmented batches (augmentation runs in the tf.data workers)."""
    import tensorflow as tf

    aug = augmenter(args.seed)
    ds = (tf.data.Dataset.from_tensor_slices((x, targets))
          .shuffle(len(x), seed=args.seed + epoch, reshuffle_each_iteration=True)
          .batch(args.batch_size)
          .map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE))
    if args.mixup > 0 or args.erase > 0:
        rng = _mixup_rng(args, epoch)
        shape_x, shape_y = [None, *x.shape[1:]], [None, targets.shape[1]]

        def blend(xb, yb):
            bx, by = tf.py_function(lambda a, b: _batch_extras(a.numpy(), b.numpy(), args, rng), [xb, yb],
                                    [tf.float32, tf.float32])
            return tf.ensure_shape(bx, shape_x), tf.ensure_shape(by, shape_y)

        ds = ds.map(blend)  # one call at a time: the generator is not thread-safe
    return ds.prefetch(2)


def _array_batches(x: np.ndarray, targets: np.ndarray, weights: np.ndarray | None, args: TrainOptions, epoch: int):
    """The same shuffled, augmented batches for backends without tf.data (JAX, PyTorch on a GPU machine):
    a Keras PyDataset that runs the augmenter on each batch; class weights come as sample weights."""
    import keras

    aug = augmenter(args.seed)

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = epoch
            self.order = np.random.default_rng(args.seed + epoch).permutation(len(x))
            self.rng = _mixup_rng(args, epoch)

        def __len__(self) -> int:
            return int(np.ceil(len(x) / args.batch_size))

        def __getitem__(self, i: int):
            idx = np.sort(self.order[i * args.batch_size:(i + 1) * args.batch_size])
            xb = keras.ops.convert_to_numpy(aug(x[idx], training=True))
            xb, yb = _batch_extras(xb, targets[idx], args, self.rng)
            return (xb, yb) if weights is None else (xb, yb, weights[idx])

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = np.random.default_rng(args.seed + self.epoch).permutation(len(x))

    return Batches()


@dataclass
class _Epochs:
    """What the per-epoch checkpoint needs: the run folder, its state, the selection faces."""

    args: TrainOptions
    out: Path
    state: dict
    x_va: np.ndarray
    oh_va: np.ndarray
    bn_x: np.ndarray | None
    t_start: float
    first_epoch: int
    classifier: object  # what best.keras holds and PublicTest scores: the fitted model, less any feature map


def _save_checkpoints(model, run: _Epochs, epoch: int, acc: float) -> None:
    """best.keras (the classifier) if PublicTest improved, last.keras (the fitted model) always, then
    state.json (renames: a kill keeps the old)."""
    state, best, last = run.state, run.out / "best.keras", run.out / "last.keras"
    if acc > state["best_val_accuracy"]:
        state.update(best_val_accuracy=acc, best_epoch=epoch + 1, wait=0)
        run.classifier.save(best.with_suffix(".tmp.keras"))
        os.replace(best.with_suffix(".tmp.keras"), best)
    else:
        state["wait"] += 1
    model.save(last.with_suffix(".tmp.keras"))
    os.replace(last.with_suffix(".tmp.keras"), last)
    state["epoch"] = epoch + 1
    state["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    (run.out / STATE).write_text(json.dumps(state, indent=2))


def _end_of_epoch(model, run: _Epochs, epoch: int, logs: dict) -> bool:
    """Re-estimate BN, evaluate PublicTest, save, log, print and plot; True when training should stop early."""
    if run.bn_x is not None:
        recalibrate_bn(run.classifier, run.bn_x)
    val = run.classifier.evaluate(run.x_va, run.oh_va, batch_size=256, verbose=0, return_dict=True)
    logs["val_loss"], logs["val_accuracy"] = float(val["loss"]), float(val["accuracy"])
    if "learning_rate" not in logs:  # Keras 3 leaves it out with a schedule: log.csv's column was empty
        logs["learning_rate"] = _current_lr(model)
    acc = float(logs["val_accuracy"])
    _save_checkpoints(model, run, epoch, acc)
    _append_log(run.out / "log.csv", epoch + 1, logs)
    state, epochs = run.state, run.args.epochs
    elapsed = time.monotonic() - run.t_start
    per = elapsed / (epoch + 1 - run.first_epoch)
    print(f"epoch {epoch + 1}/{epochs}: loss {logs.get('loss', float('nan')):.4f}, accuracy "
          f"{logs.get('accuracy', float('nan')):.4f} | PublicTest accuracy {acc:.4f} (best "
          f"{state['best_val_accuracy']:.4f} at epoch {state['best_epoch']}) | elapsed {_hms(elapsed)}, "
          f"ETA {_hms(per * (epochs - epoch - 1))}", flush=True)
    _plot(run.out / "log.csv", run.out / "curves.png")  # after the row is written: the curve ends at this epoch
    if state["wait"] >= run.args.patience:
        print(f"early stop: no better PublicTest accuracy for {run.args.patience} epochs", flush=True)
        return True
    return False


def _current_lr(model) -> float:
    """The learning rate the schedule gives at the optimizer's current step."""
    import keras

    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def _callbacks(run: _Epochs) -> list:
    """The progress bar first (it ends its line before anything else prints), then the checkpoint:
    it re-estimates BN, evaluates PublicTest and fills val_* for the log and TensorBoard."""
    import keras

    class Checkpoint(keras.callbacks.Callback):
        """Save last + best every epoch, log and plot it, and stop early; state survives a kill between epochs."""

        def on_epoch_end(self, epoch, logs=None):
            if _end_of_epoch(self.model, run, epoch, logs):
                self.model.stop_training = True

    callbacks = ([keras.callbacks.ProgbarLogger()] if run.args.verbose else []) + [Checkpoint()]
    tb = run.args.tensorboard
    if tb:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tb)))
    return callbacks


def _train(args: TrainOptions, out: Path) -> Path:
    _tf_environment(args)
    data = _training_data(args)
    state, resuming = _load_state(args, out, data)
    best = out / "best.keras"
    if state["epoch"] >= args.epochs or state["wait"] >= args.patience:
        print(f"nothing to do: run finished at epoch {state['epoch']} "
              f"(best PublicTest accuracy {state['best_val_accuracy']:.4f} at epoch {state['best_epoch']})", flush=True)
        print(_next_command(args, best, data.ds.counts()["Training"]), flush=True)
        return best
    _print_data_summary(args, data)

    from model_export.quiet import import_keras, keras_backend

    keras = import_keras()
    backend = keras_backend()

    keras.utils.set_random_seed(args.seed)
    n_cls = len(data.classes)
    x_tr, x_va = train_inputs(data.x_tr, args.input_size), train_inputs(data.x_va, args.input_size)
    fp_w = args.ferplus_weight
    if fp_w > 0 and data.v_tr is None:
        print(f"{args.data}: no FER+ votes, so --ferplus-weight is ignored", flush=True)
    oh_tr = class_targets(data.y_tr, data.v_tr, data.classes, fp_w, len(data.ds.names))
    if data.teacher is not None:
        w = args.teacher_weight
        oh_tr = (1.0 - w) * oh_tr + w * data.teacher
        print(f"distilling from {args.teacher}: target = {1 - w:g} x label + {w:g} x teacher", flush=True)
    n_feat = 0 if data.teacher_features is None else data.teacher_features.shape[1]
    y_tr, y_va = data.lut[data.y_tr], data.lut[data.y_va]
    oh_va = keras.utils.to_categorical(y_va, n_cls)
    steps_per_epoch = int(np.ceil(len(x_tr) / args.batch_size))

    cw = class_weights(y_tr, n_cls, args.class_weight_power) if args.class_weight_power > 0 else None
    model = _open_model(args, out, state, resuming, data.labels, steps_per_epoch, n_feat,
                        None if cw is None else [cw[i] for i in range(n_cls)])
    classifier = model
    if n_feat:
        from model_export import feature_kd

        oh_tr = np.concatenate([oh_tr, feature_kd.standardise(data.teacher_features)], axis=1)
        cw = None  # in the loss (FeatureDistillLoss): Keras' class_weight would read the feature columns too
        classifier = feature_kd.classifier_of(model)
        classifier.compile(loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing),
                           metrics=["accuracy"])
        print(f"distilling {n_feat} features too: loss = cross-entropy + {args.feature_weight:g} x their mean squared "
              f"error (standardised), through a map that best.keras leaves out", flush=True)
    n_params = classifier.count_params()
    print(f"model {classifier.name}: {args.input_size}x{args.input_size} input, {n_cls} outputs, {n_params:,} parameters "
          f"(~{n_params / 1024:.0f} KiB as int8); epochs {state['epoch'] + 1}..{args.epochs}, batch size "
          f"{args.batch_size}, {steps_per_epoch} steps per epoch, early stop after {args.patience} epochs without "
          f"a better PublicTest accuracy", flush=True)

    bn_n = args.bn_images
    bn_x = x_tr[np.random.default_rng(args.seed).permutation(len(x_tr))[:bn_n]] if bn_n else None
    run = _Epochs(args, out, state, x_va, oh_va, bn_x, time.monotonic(), state["epoch"], classifier)
    if backend == "tensorflow":
        model.fit(_train_pipeline(x_tr, oh_tr, args, state["epoch"]), epochs=args.epochs, initial_epoch=state["epoch"],
                  class_weight=cw, verbose=args.verbose, shuffle=False, callbacks=_callbacks(run))  # tf.data shuffles
    else:
        sw = None if cw is None else np.array([cw[i] for i in range(n_cls)], np.float32)[oh_tr.argmax(axis=1)]
        model.fit(_array_batches(x_tr, oh_tr, sw, args, state["epoch"]), epochs=args.epochs, initial_epoch=state["epoch"],
                  verbose=args.verbose, callbacks=_callbacks(run))
    print(f"done in {_hms(time.monotonic() - run.t_start)}: best PublicTest accuracy {state['best_val_accuracy']:.4f} "
          f"at epoch {state['best_epoch']}: {best}", flush=True)
    print(_next_command(args, best, data.ds.counts()["Training"]), flush=True)
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
