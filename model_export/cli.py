"""`emotion-export` console script: train, export, evaluate, deploy.

Each subcommand lives in its own module with `add_arguments(parser)` and `run(args) -> int`;
modules are imported only when their subcommand runs, so `--help` and `deploy` need no TensorFlow.
Project errors print as one line, `emotion-export: error: ...`, exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from model_export import __version__

COMMANDS = {
    "train": ("model_export.train", "train the edge CNN (Training -> choose on PublicTest), resumable"),
    "export": ("model_export.export", "Keras model -> full-integer int8 .tflite + .json metadata"),
    "cost": ("model_export.cost", "ms per face of an int8 .tflite on one LiteRT thread of this CPU (--write: into its NAME.json)"),
    "evaluate": ("model_export.evaluate", "accuracy, macro-F1, per-class, confusion, float vs int8, latency"),
    "choose": ("model_export.choose", "the default-model rule (model_export/runs/README.md) applied to int8 models in one sitting"),
    "deploy": ("model_export.deploy", "copy a model to a Pi over ssh, swap it in atomically, reload the service"),
    "average": ("model_export.average", "average checkpoints of one architecture (model soup), BatchNorm re-estimated, scored on PublicTest"),
    "ensemble": ("model_export.ensemble", "one model averaging several (and, with --mirror, each face's mirror image), to export as one .tflite"),
    "rehead": ("model_export.rehead", "new softmax head on one or more nets' mirror-averaged features, fitted on FER2013"),
    "teacher": ("model_export.teacher", "an ensemble's probabilities for every Training face, to distil with `train --teacher`"),
    "framing": ("model_export.framing", "FER2013 faces through the device's Haar box and crop: the price of a crop margin"),
    "calibration-report": ("model_export.calibration_report",
                           "per-person calibration on photos of known people: accuracy without and with it"),
    "headroom": ("model_export.headroom",
                 "how well could any head on a net's features read people it never saw (leave one person out)"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emotion-export", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"emotion-export {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        _add_arguments(module, sp)
        _show_defaults(sp)
        sp.set_defaults(module=module)
    return p


def _add_arguments(module: str, sp: argparse.ArgumentParser) -> None:
    if module == "model_export.train":
        try:
            mod = importlib.import_module(module)
        except ImportError:  # train.py needs nothing heavy at import, but stay usable if that changes
            sp.add_argument("rest", nargs=argparse.REMAINDER)
            return
    else:
        mod = importlib.import_module(module)
    mod.add_arguments(sp)


def _show_defaults(sp: argparse.ArgumentParser) -> None:
    """`--help` names every option's default (argparse's own formatter skips options without help)."""
    for a in sp._actions:  # noqa: SLF001 - argparse has no public list of a parser's actions
        if not a.option_strings or a.default is None or a.default is False or a.default == argparse.SUPPRESS \
                or a.help == argparse.SUPPRESS or a.default == []:
            continue
        if "default" not in (a.help or "").lower():
            a.help = f"{a.help} (default: %(default)s)" if a.help else "(default: %(default)s)"


RANGE_FLAGS = ("--input-range", "--compare-input-range")


def _join_negative_ranges(argv: list[str]) -> list[str]:
    """`--input-range -1,1` -> `--input-range=-1,1` (argparse would take -1,1 for an option)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in RANGE_FLAGS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    from edge.errors import EdgeError
    from edge.text import printable

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = _join_negative_ranges(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    try:
        mod = importlib.import_module(args.module)
        return int(mod.run(args) or 0)
    except EdgeError as e:
        print(f"emotion-export: error: {printable(e)}", file=sys.stderr)  # paths and data may hold escape sequences
        return 2
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("tensorflow", "keras", "matplotlib"):
            print(f"emotion-export: error: {e.name} is not installed: pip install 'emotion-edge[export]'", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("emotion-export: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
