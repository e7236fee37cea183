"""`emotion-export choose`: the default-model rule of model_export/runs/README.md, applied in one sitting.

Every number the rule weighs is measured here on the same faces for every model (PrivateTest for the
floor, PublicTest, PrivateTest through a camera's damage, photos of known people with jittered boxes,
and ms per face in alternating rounds on this CPU), so a choice is one command that anyone can rerun,
not a table copied by hand from five.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.argtypes import float_in, int_in
from edge.errors import ConfigError, ModelError
from model_export.paired import mcnemar_p, only_right, paired_shares

FER_COUNTS = ("private", "public", "damaged")
PEOPLE_WAYS = ("uncalibrated", "calibrated", "learned")


@dataclass(frozen=True)
class Rule:
    """The thresholds of the rule (model_export/runs/README.md, "Choosing the default model")."""

    floor: float = 0.70  # PrivateTest accuracy a default must reach
    public_errors: float = 2.0  # a PublicTest lead beyond this many standard errors (1.5 points on 3,589 faces)
    alpha: float = 0.05  # paired tests: below this a difference is beyond the noise
    level_cost: float = 1.2  # a price ratio under this is level (timing noise)


@dataclass
class Reading:
    """One model's per-face and per-photo outcomes (what the paired tests need); its accuracies follow."""

    model: str
    ms_per_face: float
    right: dict[str, np.ndarray] = field(repr=False)  # FER_COUNTS -> right/wrong per face
    people_photo: dict[str, np.ndarray] | None = field(default=None, repr=False)  # per photo: share of repeats right

    @property
    def accuracy(self) -> dict[str, float]:
        """FER_COUNTS -> share of faces right."""
        return {c: float(np.mean(r)) for c, r in self.right.items()}

    @property
    def people(self) -> dict[str, float] | None:
        """PEOPLE_WAYS -> share right over photos and jittered repeats (every repeat reads every photo)."""
        return None if self.people_photo is None else {w: float(np.mean(a)) for w, a in self.people_photo.items()}


@dataclass
class Versus:
    """Where a challenger beats a holder beyond the noise, and where it is worse beyond it."""

    wins: list[str]
    worse: list[str]


def versus(x: Reading, d: Reading, rule: Rule) -> Versus:
    """X against D on the counts the rule names: PublicTest by a margin, damaged faces (exact McNemar),
    people calibrated and learned (paired sign flip) for a win, any people reading or damaged for worse."""
    wins: list[str] = []
    worse: list[str] = []
    gap = x.accuracy["public"] - d.accuracy["public"]
    acc, n = d.accuracy["public"], len(d.right["public"])
    if gap > rule.public_errors * np.sqrt(acc * (1 - acc) / n):
        wins.append(f"PublicTest {gap * 100:+.1f} points")
    a, b = only_right(x.right["damaged"], d.right["damaged"])
    p = mcnemar_p(a, b)
    if p < rule.alpha:
        (wins if a > b else worse).append(f"damaged faces {a} vs {b} (p = {p:.2g})")
    if x.people_photo is not None and d.people_photo is not None:
        for w in PEOPLE_WAYS:
            gap, p = paired_shares(d.people_photo[w], x.people_photo[w])
            if p >= rule.alpha:
                continue
            text = f"people {w} {gap * 100:+.1f} points (p = {p:.2g})"
            if gap < 0:
                worse.append(text)
            elif w != "uncalibrated":  # a device reads its owner calibrated or with the learned resting face
                wins.append(text)
    return Versus(wins, worse)


def decide(readings: list[Reading], rule: Rule) -> tuple[Reading | None, list[str]]:
    """The rule: of the models at the floor, the cheapest, unless a dearer one wins beyond the noise and
    is worse beyond it nowhere. Models are taken in order of price, each against the one holding so far;
    at a level price the one that wins beyond the noise holds, and if neither does, the one ahead on
    calibrated people (PrivateTest when no people were read) unless it is worse beyond the noise."""
    notes: list[str] = []
    for r in readings:
        if r.accuracy["private"] < rule.floor:
            notes.append(f"{r.model}: PrivateTest {r.accuracy['private']:.2%} is below the floor {rule.floor:.0%}")
    ranked = sorted((r for r in readings if r.accuracy["private"] >= rule.floor), key=lambda r: r.ms_per_face)
    if not ranked:
        notes.append("no model reaches the floor: none of these can be the default")
        return None, notes
    holder = ranked[0]
    for x in ranked[1:]:
        ratio = x.ms_per_face / holder.ms_per_face
        vx, vh = versus(x, holder, rule), versus(holder, x, rule)
        said = f"{x.model} ({ratio:.2f}x {holder.model}'s price)"
        if vx.wins and not vx.worse:
            notes.append(f"{said} wins beyond the noise ({'; '.join(vx.wins)}) and is worse nowhere: it holds")
            holder = x
        elif ratio < rule.level_cost and not vx.worse and not vh.wins and _ahead(x, holder):
            notes.append(f"{said}: the price is level, neither wins beyond the noise, and it reads better: it holds")
            holder = x
        elif vx.wins:
            notes.append(f"{said} wins ({'; '.join(vx.wins)}) but is worse ({'; '.join(vx.worse)}): not chosen")
        else:
            notes.append(f"{said} wins nowhere beyond the noise: not chosen"
                         + (f" (worse: {'; '.join(vx.worse)})" if vx.worse else ""))
    return holder, notes


def _ahead(x: Reading, d: Reading) -> bool:
    if x.people is not None and d.people is not None:
        return x.people["calibrated"] > d.people["calibrated"]
    return x.accuracy["private"] > d.accuracy["private"]


def read_fer(models: list[str], data: str | Path, degrade_seed: int = 0, log=lambda m: None) -> dict[str, dict]:
    """Per model: accuracy and right/wrong per face on PrivateTest, PublicTest and damaged PrivateTest."""
    from model_export.degrade import degrade
    from model_export.evaluate import check_some_kept, load_faces, map_labels
    from model_export.predictors import open_predictor
    from model_export.quiet import quiet_stderr

    preds = []
    for m in models:  # every model opened and its labels checked before any face is read
        with quiet_stderr():
            preds.append(open_predictor(m))
        if tuple(preds[-1].labels) != tuple(preds[0].labels):
            raise ModelError(f"{m}: its labels {list(preds[-1].labels)} differ from {models[0]}'s "
                             f"{list(preds[0].labels)}; choose compares models of one label set")
    labels = tuple(preds[0].labels)
    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # FER_COUNTS -> (faces, truth), the faces the labels cover
    for count, split in (("private", "PrivateTest"), ("public", "PublicTest")):
        images, y_fer, source, names = load_faces(data, split)
        y, keep = map_labels(y_fer, labels, names)
        check_some_kept(y_fer, keep, labels, source, names)
        sets[count] = (images[keep], y[keep])
        if count == "private":  # damaged before leaving any face out: each face keeps evaluate --degrade's draw
            log(f"damaging the {len(images)} PrivateTest faces as a camera would (seed {degrade_seed})")
            sets["damaged"] = (degrade(images, degrade_seed)[keep], y[keep])
    out: dict[str, dict] = {}
    for m, pred in zip(models, preds):
        log(f"reading PrivateTest, PublicTest and damaged faces with {m}")
        out[m] = {count: pred.predict(faces).argmax(axis=1) == truth for count, (faces, truth) in sets.items()}
    return out


def read_people(models: list[str], rows: list[tuple[Path, str, str]], repeats: int,
                log=lambda m: None) -> dict[str, dict[str, np.ndarray]]:
    """Per model: each photo's share of `repeats` jittered repeats read right, per reading, the same boxes
    for every model, as `calibration-report --jitter` measures them (rows: its read_labels)."""
    from edge.config import CalibrateConfig
    from model_export.calibration_report import jittered

    d = CalibrateConfig()
    found: dict = {}  # Haar boxes per photo, the same for every model and repeat
    out = {}
    for m in models:
        log(f"reading the people's photos with {m} ({repeats} jittered repeats)")
        j = jittered(rows, m, repeats, strength=d.strength, neutral_margin=d.neutral_margin, found=found)
        out[m] = {w: j.per_photo[w] for w in PEOPLE_WAYS}
    return out


def price(models: list[str], runs: int, rounds: int, log=lambda m: None) -> dict[str, float]:
    """ms per face of each model on one LiteRT thread: alternating rounds, the lowest of each model's
    rounds (another job on the machine slows a stretch of runs, never speeds one)."""
    from model_export.cost import measure

    best = {m: float("inf") for m in models}
    for i in range(rounds):
        log(f"timing round {i + 1} of {rounds}, {runs} runs per model")
        for m in models:
            best[m] = min(best[m], measure(m, runs).ms_per_face)
    return best


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", metavar="MODEL", help="int8 .tflite models to choose among (the bundled one too, "
                                                                 "to see whether it stays)")
    p.add_argument("--data", required=True, help="FER2013 (.npz, .csv or folder) with its PublicTest and PrivateTest")
    p.add_argument("--people", type=Path, default=None, metavar="DIR",
                   help="photos of known people (labels.csv: file,label,subject), read as calibration-report --jitter "
                        "does; without it the rule's real-faces counts are left out, and said so")
    p.add_argument("--jitter", type=int_in(1, 1000), default=30, metavar="N", help="jittered repeats of the people's photos")
    p.add_argument("--floor", type=float_in(0.0, 1.0), default=Rule.floor, help="PrivateTest accuracy a default must reach")
    p.add_argument("--cost-runs", type=int_in(5), default=1000, metavar="N", help="timed runs per model in each round")
    p.add_argument("--cost-rounds", type=int_in(1, 20), default=2, metavar="N", help="alternating timing rounds")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    from edge.text import printable
    from model_export.calibration_report import read_labels
    from model_export.cost import cpu_name

    models = [str(m) for m in args.models]
    for m in models:
        if Path(m).suffix.lower() != ".tflite":
            raise ConfigError(f"{m}: choose compares int8 .tflite models (export a Keras model first)")
        if not Path(m).is_file():
            raise ModelError(f"{m}: not found")
    if len(set(models)) != len(models):
        raise ConfigError("a model is named twice")
    log = lambda msg: print(printable(msg), file=sys.stderr, flush=True)  # noqa: E731
    rows = read_labels(args.people) if args.people else None  # a bad folder is told before minutes of FER2013 work
    rights = read_fer(models, args.data, log=log)
    people = read_people(models, rows, args.jitter, log) if rows else {}
    ms = price(models, args.cost_runs, args.cost_rounds, log)
    readings = [Reading(m, ms[m], rights[m], people.get(m)) for m in models]
    rule = Rule(floor=args.floor)
    chosen, notes = decide(readings, rule)
    if not args.people:
        notes.append("no --people: the rule's real-faces counts were left out")
    timing = f"one LiteRT thread of {cpu_name()}, the lowest of {args.cost_rounds} alternating round(s) of {args.cost_runs} runs"
    if args.json:
        print(json.dumps({"rule": rule.__dict__, "default": chosen.model if chosen else None, "notes": notes, "cost": timing,
                          "models": [{"model": r.model, "ms_per_face": r.ms_per_face, **r.accuracy,
                                      "people": r.people} for r in readings]}, indent=1))
        return 0
    for line in table(readings, chosen):
        print(printable(line))
    print(printable(f"ms/face: {timing}"))
    for n in notes:
        print(printable(f"- {n}"))
    print(printable(f"default by the rule: {chosen.model}" if chosen else "default by the rule: none of these"))
    return 0


def table(readings: list[Reading], chosen: Reading | None) -> list[str]:
    """A markdown table's lines, cheapest first, the chosen model in bold."""
    head = "| model | ms/face | PrivateTest | PublicTest | damaged PrivateTest | people uncal. / calibrated / learned |"
    lines = [head, "|" + "---|" * 6]
    for r in sorted(readings, key=lambda r: r.ms_per_face):
        name = f"**{r.model}**" if r is chosen else r.model
        ppl = " / ".join(f"{r.people[w]:.1%}" for w in PEOPLE_WAYS) if r.people else "-"
        a = r.accuracy
        lines.append(f"| {name} | {r.ms_per_face:.2f} | {a['private']:.2%} | {a['public']:.2%} | {a['damaged']:.2%} | {ppl} |")
    return lines
