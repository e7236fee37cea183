"""`emotion-export evaluate`: a Keras or TFLite model on one split, with numpy-only metrics.

Writes NAME.report.SPLIT.md and NAME.confusion.SPLIT.png (next to the model unless --report-dir) and can
compare two models (float vs int8: accuracy gap, share of faces where they agree) and time them.
Macro-F1 averages the classes that occur in the truth or the predictions (as scikit-learn does).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.argtypes import int_in, label_list
from edge.contract import FER_LABELS
from edge.errors import ConfigError, DataError
from edge.text import printable
from model_export.cost import cost_line
from model_export.data import LABEL_SOURCES, SPLITS, load_dataset, name_index
from model_export.paired import mcnemar_p, only_right
from model_export.progress import Clock, replaces
from model_export.quiet import quiet_stderr

LOG_EPS = 1e-7


def map_labels(y_fer: np.ndarray, model_labels: tuple[str, ...],
               names: tuple[str, ...] = FER_LABELS) -> tuple[np.ndarray, np.ndarray]:
    """The data's label indices (into `names`, FER's by default) -> the model's label indices by name or
    synonym (a model saying `anger`, `happiness`, `sadness` names FER's angry, happy, sad; `smile` names a
    smile/ folder); mask of rows the model can name."""
    lut = np.full(len(names), -1, np.int64)
    for j, name in enumerate(model_labels):
        i = name_index(tuple(names), name)
        if i is not None and lut[i] < 0:
            lut[i] = j
    y = lut[np.asarray(y_fer, np.int64)]
    return y, y >= 0


def dropped_note(y_fer: np.ndarray, keep: np.ndarray, names: tuple[str, ...] = FER_LABELS) -> str:
    """'left out 60 of 140 faces: the model has no label for disgust (55), fear (5)' (empty if none)."""
    lost = np.bincount(np.asarray(y_fer, np.int64)[~keep], minlength=len(names))
    if not lost.sum():
        return ""
    what = ", ".join(f"{names[i]} ({int(c)})" for i, c in enumerate(lost) if c)
    return f"left out {int(lost.sum())} of {len(keep)} faces: the model has no label for {what}"


def check_some_kept(y_fer: np.ndarray, keep: np.ndarray, model_labels: tuple[str, ...], source: str,
                    names: tuple[str, ...] = FER_LABELS, no_evaluate: str = "") -> None:
    """Refuse an evaluation with no faces, saying why (no model label names a class of the data) and, where
    the caller has one (`no_evaluate`, e.g. export's --no-evaluate), the way to do without."""
    if len(keep) and keep.any():
        return
    if not len(keep):
        raise DataError(f"{source}: no faces to evaluate")
    present = [names[i] for i in np.unique(y_fer)]
    raise DataError(f"no faces to evaluate: none of the model's labels ({','.join(model_labels)}) names a class of "
                    f"{Path(source).name} ({','.join(present)}); pass --labels with the model's output order in "
                    f"these names (synonyms such as anger, happiness, sadness are understood), or data with a "
                    f"class folder per label (train/smile, test/smile, ...){no_evaluate}")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


@dataclass
class Metrics:
    """One model's numbers on one set of faces (field order is the --json key order)."""

    n: int
    accuracy: float
    macro_f1: float
    log_loss: float
    top2_accuracy: float
    per_class: dict[str, dict[str, float]]  # label -> precision, recall, f1, support
    confusion: dict[str, list]  # {"labels": [...], "matrix": rows true, columns predicted}


@dataclass
class Comparison:
    """A second model on the same faces: its numbers and how far it is from the first."""

    model: str
    kind: str
    accuracy: float
    macro_f1: float
    log_loss: float
    accuracy_gap: float  # first minus this one
    agreement: float  # share of faces where both pick the same class
    only_first: int  # faces only the first model reads right
    only_second: int  # faces only this one reads right
    mcnemar_p: float  # exact two-sided: how likely a split this uneven is between equally good models


@dataclass
class Latency:
    """Per-face times and the threads the model really ran on."""

    p50_ms: float
    p95_ms: float
    mean_ms: float
    n: int
    threads: int


@dataclass
class Evaluation:
    """What `evaluate` found; `as_json` gives the --json object (same keys as before the dataclass)."""

    model: str
    kind: str
    data: str
    split: str
    dropped: int
    dropped_note: str
    metrics: Metrics
    warning: str = ""
    degrade_seed: int | None = None  # the faces went through model_export.degrade with this seed
    compare: Comparison | None = None
    latency: dict[str, Latency] | None = None  # "kind:file name" -> times
    confusion_png: str | None = None
    report: str | None = None  # set when the report files were written

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "kind": self.kind, "data": self.data, "split": self.split,
                               "dropped": self.dropped, "dropped_note": self.dropped_note, **asdict(self.metrics)}
        if self.degrade_seed is not None:
            out["degrade_seed"] = self.degrade_seed
        if self.warning:
            out["warning"] = self.warning
        if self.compare is not None:
            out["compare"] = asdict(self.compare)
        if self.latency is not None:
            out["latency"] = {k: asdict(v) for k, v in self.latency.items()}
        if self.report is not None:
            out["confusion_png"] = self.confusion_png
            out["report"] = self.report
        return out


def metrics(y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...]) -> Metrics:
    """accuracy, macro-F1, per-class precision/recall/F1/support, log-loss, top-2, confusion."""
    k = len(labels)
    y_true = np.asarray(y_true, np.int64)
    n = len(y_true)
    if n == 0:
        raise DataError("no faces to evaluate")
    pred = probs.argmax(axis=1)
    cm = confusion(y_true, pred, k)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    present = (support > 0) | (predicted > 0)
    p = probs / probs.sum(axis=1, keepdims=True)
    log_loss = float(-np.mean(np.log(np.clip(p[np.arange(n), y_true], LOG_EPS, 1.0))))
    top2 = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    return Metrics(
        n=int(n),
        accuracy=float(tp.sum() / n),
        macro_f1=float(f1[present].mean()),
        log_loss=log_loss,
        top2_accuracy=float((top2 == y_true[:, None]).any(axis=1).mean()),
        per_class={lab: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                         "support": int(support[i])} for i, lab in enumerate(labels)},
        confusion={"labels": list(labels), "matrix": cm.tolist()},
    )


def one_class_warning(probs: np.ndarray, labels: tuple[str, ...], share: float = 0.9) -> str:
    """A model that answers one class for almost every face is usually fed the wrong input range."""
    if len(probs) < 10:
        return ""
    counts = np.bincount(probs.argmax(axis=1), minlength=len(labels))
    top = int(counts.argmax())
    if counts[top] < share * len(probs):
        return ""
    return (f"the model predicts {labels[top]} for {counts[top] / len(probs):.0%} of faces; check --input-range "
            f"(the range it was trained on) and --labels (its output order)")


def agreement(probs_a: np.ndarray, probs_b: np.ndarray) -> float:
    """Share of faces where both models pick the same class."""
    return float((probs_a.argmax(axis=1) == probs_b.argmax(axis=1)).mean())


def load_split(data: str | Path, split: str, labels_from: str = "fer2013", limit: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, FER label indices, source) of one split; see load_faces for data with classes of its own."""
    images, labels, source, _ = load_faces(data, split, labels_from, limit)
    return images, labels, source


def load_faces(data: str | Path, split: str, labels_from: str = "fer2013",
               limit: int = 0) -> tuple[np.ndarray, np.ndarray, str, tuple[str, ...]]:
    """(images, label indices, source, class names the indices stand for) of one split."""
    ds = load_dataset(data, labels_from)
    images, labels = ds.split(split)
    if len(images) == 0:
        raise DataError(f"{ds.source}: the {split} split is empty")
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels, ds.source, ds.names


def latency(predictor, images: np.ndarray) -> Latency:
    """Per-face times, with the threads they really ran on: Keras honours one thread only when
    set before TensorFlow started, and a report must not claim one thread when it was all of them."""
    t = predictor.latency_ms(images)
    return Latency(p50_ms=float(np.percentile(t, 50)), p95_ms=float(np.percentile(t, 95)),
                   mean_ms=float(t.mean()), n=int(len(t)), threads=_threads_of(predictor))


def _threads_of(predictor) -> int:
    if getattr(predictor, "kind", "") != "keras":
        return int(getattr(predictor, "num_threads", 1))
    import tensorflow as tf

    n = tf.config.threading.get_intra_op_parallelism_threads()
    return int(n) if n > 0 else len(os.sched_getaffinity(0))


def plot_confusion(cm: np.ndarray, labels: tuple[str, ...] | list[str], title: str, png: Path) -> Path | None:
    """Row-normalised confusion matrix with counts, written like the other report files (_write_file);
    skipped if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    _write_file(png, buf.getvalue())
    return png


def _write_file(path: Path, data: bytes) -> None:
    """A report file written beside a temporary name and renamed over PATH: a reader never sees half of it,
    and a symbolic link (or anything not a file of ours) planted at PATH is refused, never written through."""
    from edge.safeio import write_output

    try:
        write_output(path, data)
    except OSError as e:
        raise ConfigError(f"{path}: cannot write the report ({getattr(e, 'strerror', None) or e})") from None


def markdown(result: Evaluation) -> str:
    m = result.metrics
    lines = [f"# Evaluation of `{Path(result.model).name}`", "",
             f"- data: `{result.data}`, split **{result.split}**, n = {m.n}"
             + (f" ({result.dropped_note})" if result.dropped_note else "")
             + (f", each face through a camera's damage (`--degrade`, seed {result.degrade_seed})"
                if result.degrade_seed is not None else ""),
             f"- accuracy **{m.accuracy:.4f}**, macro-F1 **{m.macro_f1:.4f}**, "
             f"top-2 accuracy {m.top2_accuracy:.4f}, log-loss {m.log_loss:.4f}", ""]
    if result.warning:
        lines[-1:-1] = [f"- **warning**: {result.warning}"]
    if result.compare is not None:
        c = result.compare
        other = Path(c.model).name if Path(c.model).name != Path(result.model).name else c.model  # two emotion.tflite
        lines += [f"Compared with `{other}`: its accuracy {c.accuracy:.4f} "
                  f"(gap {c.accuracy_gap:+.4f}, this minus that), macro-F1 {c.macro_f1:.4f}; "
                  f"the two agree on {c.agreement:.2%} of faces; only this one is right on {c.only_first}, "
                  f"only that one on {c.only_second} (McNemar p = {c.mcnemar_p:.3g}).", ""]
    if result.latency is not None:
        lines += ["| model | threads | p50 ms/face | p95 ms/face |", "|---|---|---|---|"]
        for k, v in result.latency.items():
            lines.append(f"| {k} | {v.threads} | {v.p50_ms:.2f} | {v.p95_ms:.2f} |")
        lines.append("")
    lines += ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for lab, v in m.per_class.items():
        lines.append(f"| {lab} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    labels = m.confusion["labels"]
    lines += ["", "Confusion matrix (rows true, columns predicted):", "",
              "| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for lab, row in zip(labels, m.confusion["matrix"]):
        lines.append(f"| **{lab}** | " + " | ".join(str(v) for v in row) + " |")
    if result.confusion_png:
        lines += ["", f"![confusion]({Path(result.confusion_png).name})"]
    return "\n".join(lines) + "\n"


def summary_lines(result: Evaluation) -> list[str]:
    """The console summary (stdout without --json)."""
    m = result.metrics
    where = result.split + (f" through --degrade {result.degrade_seed}" if result.degrade_seed is not None else "")
    lines = [f"{result.model} on {where} (n={m.n}): accuracy {m.accuracy:.4f}, "
             f"macro-F1 {m.macro_f1:.4f}, top-2 {m.top2_accuracy:.4f}, log-loss {m.log_loss:.4f}"]
    if result.compare is not None:
        c = result.compare
        lines.append(f"vs {c.model}: accuracy {c.accuracy:.4f} (gap {c.accuracy_gap:+.4f}), agreement {c.agreement:.2%}, "
                     f"right only here / only there {c.only_first} / {c.only_second} (McNemar p = {c.mcnemar_p:.3g})")
    for k, v in (result.latency or {}).items():
        lines.append(f"latency {k}: p50 {v.p50_ms:.2f} ms, p95 {v.p95_ms:.2f} ms per face on {v.threads} thread(s)")
    return lines + [x for x in [cost_line(result.model)] if x]


def _open_compare(compare: str | Path, compare_range, model: str | Path, input_range, labels, pred, log):
    """The --compare predictor: its range from the option, its run folder, or --model's (said so)."""
    from model_export.predictors import open_predictor, run_info

    crange = compare_range
    if crange is None and Path(compare).suffix.lower() != ".tflite":  # its run folder, else --model's range
        info = run_info(compare)
        crange = info.input_range if info else (input_range or getattr(pred, "range", None))
        if info is None and crange is not None:
            log(f"{compare}: no --compare-input-range, so {model}'s range {list(crange)} is used; "
                f"pass --compare-input-range if it was trained on another")
    with quiet_stderr():
        other = open_predictor(compare, crange, labels or pred.labels, flag="--compare-input-range")
    if tuple(other.labels) != tuple(pred.labels):
        raise DataError(f"{compare}: labels {list(other.labels)} differ from {model}'s {list(pred.labels)}")
    return other


def _comparison(other, name: str, y: np.ndarray, faces: np.ndarray, probs: np.ndarray, first: Metrics) -> Comparison:
    """The second model's numbers on the faces the first was scored on, and the gap between them."""
    probs_o = other.predict(faces)
    m_o = metrics(y, probs_o, other.labels)
    only_first, only_second = only_right(probs.argmax(axis=1) == y, probs_o.argmax(axis=1) == y)
    return Comparison(model=name, kind=other.kind, accuracy=m_o.accuracy, macro_f1=m_o.macro_f1,
                      log_loss=m_o.log_loss, accuracy_gap=first.accuracy - m_o.accuracy,
                      agreement=agreement(probs, probs_o), only_first=only_first, only_second=only_second,
                      mcnemar_p=mcnemar_p(only_first, only_second))


def _write_report(result: Evaluation, labels, source: str, report_dir: str | Path | None) -> None:
    """NAME.report.SPLIT.md, NAME.confusion.SPLIT.png/.json (one set per split: PublicTest keeps PrivateTest's;
    SPLIT.degraded for damaged faces, which keep the clean ones')."""
    model, m = Path(result.model), result.metrics
    split = result.split + (".degraded" if result.degrade_seed is not None else "")
    out_dir = Path(report_dir) if report_dir else model.parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--report-dir {out_dir}: cannot create it ({e.strerror or e})") from None
    stem = f"{model.stem}.{{}}.{split}"
    png = plot_confusion(np.array(m.confusion["matrix"]), labels,
                         f"{model.name} on {Path(source).name} {split}, n={m.n} "
                         f"(accuracy {m.accuracy:.3f})", out_dir / f"{stem.format('confusion')}.png")
    result.confusion_png = str(png) if png else None
    _write_file(out_dir / f"{stem.format('confusion')}.json", (json.dumps(m.confusion) + "\n").encode())
    report = out_dir / f"{stem.format('report')}.md"
    _write_file(report, markdown(result).encode("utf-8"))
    result.report = str(report)


@dataclass
class EvaluateRequest:
    """One `evaluate`: a model (and optionally a second to compare) on one split; `check` refuses what
    needs no loading."""

    model: str | Path
    data: str | Path
    split: str = "PrivateTest"
    input_range: tuple[float, float] | None = None  # Keras models: None = from the run folder
    labels: tuple[str, ...] | None = None
    compare: str | Path | None = None
    compare_range: tuple[float, float] | None = None
    with_latency: bool = False
    latency_n: int = 200
    labels_from: str = "fer2013"
    limit: int = 0
    report_dir: str | Path | None = None
    write_report: bool = True
    degrade_seed: int | None = None  # None: the faces as they are

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvaluateRequest:
        from model_export.predictors import parse_range

        labels = tuple(s.strip() for s in args.labels.split(",")) if args.labels else None
        return cls(args.model, args.data, args.split, parse_range(args.input_range), labels, args.compare,
                   parse_range(args.compare_input_range), args.latency, args.latency_n, args.labels_from, args.limit,
                   args.report_dir, not args.no_report, args.degrade)

    def check(self) -> None:
        rd = Path(self.report_dir) if self.report_dir else None
        if self.write_report and rd is not None and rd.exists() and not rd.is_dir():
            raise ConfigError(f"--report-dir {self.report_dir}: exists and is not a folder")


def evaluate(model: str | Path, data: str | Path, split: str = "PrivateTest", *, log=lambda m: None,
             **options) -> Evaluation:
    """Evaluate MODEL (and optionally COMPARE) on SPLIT of DATA; `options` are EvaluateRequest's fields."""
    return run_evaluation(EvaluateRequest(model, data, split, **options), log)


def run_evaluation(req: EvaluateRequest, log=lambda m: None) -> Evaluation:
    """Run an evaluation request (checked here, once)."""
    from model_export.predictors import open_predictor, run_folder_model

    req.check()
    model, data, split, input_range, labels = req.model, req.data, req.split, req.input_range, req.labels
    compare, compare_range, with_latency, latency_n = req.compare, req.compare_range, req.with_latency, req.latency_n
    labels_from, limit, report_dir, write_report = req.labels_from, req.limit, req.report_dir, req.write_report
    say = Clock(log)  # each step with the elapsed time, like export: a 70 s evaluation is not silent
    model = run_folder_model(model, say)
    say(f"loading the {split} faces of {data}")
    images, y_fer, source, names = load_faces(data, split, labels_from, limit)
    if req.degrade_seed is not None:
        from model_export.degrade import degrade

        say(f"damaging the {len(images)} faces as a camera would (seed {req.degrade_seed})")
        images = degrade(images, req.degrade_seed)
    say(f"loading {model}")
    with quiet_stderr():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line
        pred = open_predictor(model, input_range, labels)
    y, keep = map_labels(y_fer, pred.labels, names)
    check_some_kept(y_fer, keep, tuple(pred.labels), source, names)
    note = dropped_note(y_fer, keep, names)
    if note:
        log(note)
    say(f"predicting {int(keep.sum())} {split} faces with {Path(model).name} ({pred.kind})")
    probs = pred.predict(images[keep])
    result = Evaluation(model=str(model), kind=pred.kind, data=source, split=split, dropped=int((~keep).sum()),
                        dropped_note=note, metrics=metrics(y[keep], probs, pred.labels),
                        warning=one_class_warning(probs, tuple(pred.labels)), degrade_seed=req.degrade_seed)
    if result.warning:
        log(f"warning: {result.warning}")
    other = None
    if compare:
        other = _open_compare(compare, compare_range, model, input_range, labels, pred, log)
        say(f"predicting the same faces with {Path(compare).name} ({other.kind})")
        result.compare = _comparison(other, str(compare), y[keep], images[keep], probs, result.metrics)
    if with_latency:
        sample = images[:latency_n]
        say(f"timing {len(sample)} faces one at a time")
        result.latency = {f"{p.kind}:{Path(p.name).name}": latency(p, sample) for p in (pred, other) if p is not None}
    if write_report:
        _write_report(result, pred.labels, source, report_dir)
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="MODEL.keras, MODEL.h5 or MODEL.tflite (with MODEL.json)")
    p.add_argument("--data", required=True, help="FER2013 .npz, fer2013.csv or image folder")
    p.add_argument("--split", default="PrivateTest", choices=SPLITS)
    p.add_argument("--input-range", help="Keras models only: 0,1  -1,1  or 0,255 (a .tflite's metadata says it)")
    p.add_argument("--labels", type=label_list, help="Keras models only: comma-separated label order (default FER2013)")
    p.add_argument("--labels-from", default="fer2013", choices=LABEL_SOURCES)
    p.add_argument("--compare", help="a second model on the same faces (e.g. the float Keras model vs the int8 .tflite)")
    p.add_argument("--compare-input-range", help="input range of --compare if it is a Keras model and differs")
    p.add_argument("--latency", action="store_true", help="time per face, one thread: LiteRT invoke vs Keras predict")
    p.add_argument("--latency-n", type=int_in(1, 100_000), default=200)
    p.add_argument("--limit", type=int_in(0), default=0, help="only the first N faces of the split")
    p.add_argument("--degrade", type=int_in(0), nargs="?", const=0, metavar="SEED",
                   help="first push each face through a small camera's damage (off-centre box, dim or side light, "
                        "blur, few pixels, noise, JPEG; model_export/degrade.py), drawn from SEED (default 0)")
    p.add_argument("--report-dir", help="where NAME.report.SPLIT.md / NAME.confusion.SPLIT.png go (default: next to the model)")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")


def run(args: argparse.Namespace) -> int:
    from model_export.predictors import KERAS_SUFFIXES

    if args.latency and any(str(m).lower().endswith(KERAS_SUFFIXES) for m in (args.model, args.compare or "")):
        _one_thread()
    result = run_evaluation(EvaluateRequest.from_args(args), log=lambda m: print(printable(m), file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        print("\n".join(printable(line) for line in summary_lines(result)))
        if result.report:
            print(f"report: {printable(result.report)}", file=sys.stderr)
    print(printable(next_command(result.model, args.data)), file=sys.stderr, flush=True)
    return 0


def next_command(model: str, data: str) -> str:
    """What to do with the evaluated model: export a Keras one, deploy (a dry run first) a .tflite."""
    if Path(model).suffix.lower() == ".tflite":
        return f"next: emotion-export deploy {model} pi@HOST --dry-run   (then without --dry-run to copy it to the Pi)"
    out = "models/emotion.tflite"
    return f"next: emotion-export export {model} --representative-data {data} --out {out}{replaces(out)}"


def _one_thread() -> None:
    """Keras latency on one thread, like LiteRT with num_threads=1 (must run before TF starts)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from model_export.quiet import import_tensorflow

        tf = import_tensorflow()
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except (ImportError, RuntimeError):
        pass
