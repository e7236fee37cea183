"""`emotion-export choose`: the default-model rule of model_export/runs/README.md, on numbers made to sit
either side of each threshold, and end to end on real models, faces and photos against the commands that
measure each number alone."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model_export.choose import PEOPLE_WAYS, Reading, Rule, decide, versus
from model_export.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
BUNDLED = ROOT / "edge" / "models" / "emotion.tflite"
TINY = FIX / "models" / "tiny_int8.tflite"
N = 3589  # faces per FER2013 test split
PHOTOS = 96


def right(n_right: int, n: int = N, extra: int = 0) -> np.ndarray:
    """The first n_right faces right; `extra` more right further on (faces only this model gets)."""
    r = np.zeros(n, bool)
    r[:n_right] = True
    r[n - extra:] = True
    return r


def reading(name: str, ms: float, private: float = 0.71, public: float = 0.70, damaged: np.ndarray | None = None,
            people: dict[str, np.ndarray] | None = None) -> Reading:
    dmg = right(1944) if damaged is None else damaged
    ppl = people or {w: np.full(PHOTOS, 0.7) for w in PEOPLE_WAYS}
    rights = {"private": right(round(private * N)), "public": right(round(public * N)), "damaged": dmg}
    return Reading(name, ms, rights, ppl)


def shares(calibrated_up: int = 0, down: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Per-photo shares: 0.7 everywhere, `calibrated_up` photos read right every time calibrated, and
    down[w] photos of reading w read wrong every time."""
    out = {w: np.full(PHOTOS, 0.7) for w in PEOPLE_WAYS}
    out["calibrated"][:calibrated_up] = 1.0
    for w, k in (down or {}).items():
        out[w][PHOTOS - k:] = 0.0
    return out


RULE = Rule()


def test_the_cheapest_model_at_the_floor_holds_when_the_dearer_wins_nowhere():
    cheap, dear = reading("cheap", 1.0), reading("dear", 3.0, private=0.72, public=0.71)  # +1 point: noise
    chosen, notes = decide([dear, cheap], RULE)
    assert chosen is cheap and "dear (3.00x cheap's price) wins nowhere beyond the noise" in notes[0]


def test_a_model_below_the_floor_is_out_however_cheap():
    below, at = reading("below", 0.5, private=0.6998), reading("at", 3.0, private=0.7001)  # 2,512 and 2,513 faces
    assert below.accuracy["private"] < 0.70 <= at.accuracy["private"]
    chosen, notes = decide([below, at], RULE)
    assert chosen is at and notes == ["below: PrivateTest 69.99% is below the floor 70%"]
    chosen, notes = decide([below, at], Rule(floor=at.accuracy["private"]))  # exactly at the floor is enough
    assert chosen is at and len(notes) == 1 and notes[0].startswith("below:")
    chosen, notes = decide([below], RULE)
    assert chosen is None and "no model reaches the floor" in notes[-1]


def test_publictest_wins_beyond_two_standard_errors_only():
    # two standard errors at 70 % on 3,589 faces: 1.53 points (the README's 1.5)
    cheap = reading("cheap", 1.0, public=0.70)
    assert not versus(reading("dear", 3.0, public=0.714), cheap, RULE).wins
    assert versus(reading("dear", 3.0, public=0.716), cheap, RULE).wins == ["PublicTest +1.6 points"]
    assert versus(reading("dear", 3.0, public=0.80), cheap, RULE).wins == ["PublicTest +10.0 points"]


def test_damaged_faces_count_by_the_exact_mcnemar_test_either_way():
    base = right(1900, extra=0)
    cheap = reading("cheap", 1.0, damaged=base)
    ahead = reading("dear", 3.0, damaged=right(1900, extra=15))  # 15 vs 0 faces: p = 6e-5
    close = reading("dear", 3.0, damaged=right(1900, extra=5))  # 5 vs 0: p = 0.06
    assert versus(ahead, cheap, RULE).wins == ["damaged faces 15 vs 0 (p = 6.1e-05)"]
    assert not versus(close, cheap, RULE).wins and not versus(close, cheap, RULE).worse
    assert versus(cheap, ahead, RULE).worse == ["damaged faces 0 vs 15 (p = 6.1e-05)"]


def test_a_dearer_model_that_wins_on_calibrated_people_holds_unless_it_is_worse_anywhere():
    cheap = reading("cheap", 1.0)
    dear = reading("dear", 3.0, people=shares(calibrated_up=10))  # +3.1 points on 10 of 96 photos: p < 0.001
    chosen, notes = decide([cheap, dear], RULE)
    assert chosen is dear and "people calibrated +3.1 points" in notes[0] and "it holds" in notes[0]
    mixed = reading("mixed", 3.0, people=shares(calibrated_up=10, down={"uncalibrated": 10}))
    chosen, notes = decide([cheap, mixed], RULE)
    assert chosen is cheap and "but is worse (people uncalibrated -7.3 points" in notes[0]


def test_an_uncalibrated_lead_alone_is_no_win():
    cheap = reading("cheap", 1.0, people=shares(down={"uncalibrated": 10}))
    v = versus(reading("dear", 3.0), cheap, RULE)
    assert v.wins == [] and v.worse == []
    assert versus(cheap, reading("dear", 3.0), RULE).worse[0].startswith("people uncalibrated -7.3 points")


def test_at_a_level_price_the_better_calibrated_reading_holds():
    first = reading("first", 2.0)
    level = reading("level", 2.38, people=shares(calibrated_up=1))  # ahead, within the noise
    assert decide([first, level], RULE)[0] is level
    for ms in (2.4, 2.42):  # a fifth dearer or more: the cheaper holds
        assert decide([first, reading("dearer", ms, people=shares(calibrated_up=1))], RULE)[0] is first
    worse = reading("worse", 2.2, people=shares(down={"calibrated": 1}))
    assert decide([first, worse], RULE)[0] is first
    assert decide([first, reading("tied", 2.2)], RULE)[0] is first  # a tie leaves the holder
    # ahead calibrated within the noise, but worse beyond it uncalibrated: the holder stays
    mixed = reading("mixed", 2.2, people=shares(calibrated_up=1, down={"uncalibrated": 10}))
    chosen, notes = decide([first, mixed], RULE)
    assert chosen is first and "wins nowhere beyond the noise: not chosen (worse: people uncalibrated" in notes[0]


def test_without_people_a_level_price_goes_to_privatetest():
    def plain(name: str, ms: float, private: float) -> Reading:
        r = reading(name, ms, private=private)
        r.people_photo = None
        return r

    first = plain("first", 2.0, 0.71)
    assert decide([first, plain("ahead", 2.2, 0.712)], RULE)[0].model == "ahead"
    assert decide([first, plain("tied", 2.2, 0.71)], RULE)[0] is first


@pytest.fixture
def fer_halves(tmp_path) -> Path:
    """The 140 committed FER2013 faces, alternately PublicTest and PrivateTest."""
    z = np.load(FIX / "fer_sample.npz")
    usage = np.where(np.arange(len(z["labels"])) % 2 == 0, 1, 2)
    path = tmp_path / "fer.npz"
    np.savez(path, images=z["images"], labels=z["labels"], usage=usage)
    return path


def _json(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_choose_measures_what_evaluate_and_calibration_report_measure(fer_halves, people, capsys):
    got = _json(capsys, "choose", str(BUNDLED), str(TINY), "--data", str(fer_halves), "--people", str(people),
                "--jitter", "2", "--cost-runs", "20", "--cost-rounds", "1", "--floor", "0.3", "--json")
    by = {m["model"]: m for m in got["models"]}
    for model in (BUNDLED, TINY):
        m = by[str(model)]
        for split, degrade, key in (("PrivateTest", [], "private"), ("PublicTest", [], "public"),
                                    ("PrivateTest", ["--degrade"], "damaged")):
            ev = _json(capsys, "evaluate", "--model", str(model), "--data", str(fer_halves), "--split", split,
                       "--no-report", "--json", *degrade)
            assert m[key] == ev["accuracy"], (model, key)
        cr = _json(capsys, "calibration-report", "--data", str(people), "--model", str(model), "--jitter", "2", "--json")
        for w in PEOPLE_WAYS:
            assert m["people"][w] == pytest.approx(cr["jittered"][w]["mean"]), (model, w)
        assert m["ms_per_face"] > 0
    assert by[str(BUNDLED)]["private"] > 0.5 > 0.3 > by[str(TINY)]["private"]  # a real model, a tiny one
    assert got["default"] == str(BUNDLED)
    assert got["notes"] == [f"{TINY}: PrivateTest {by[str(TINY)]['private']:.2%} is below the floor 30%"]


def test_choose_prints_a_table_cheapest_first_and_the_verdict(fer_halves, capsys):
    assert main(["choose", str(BUNDLED), str(TINY), "--data", str(fer_halves), "--cost-runs", "20", "--cost-rounds", "1",
                 "--floor", "0.3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| model | ms/face | PrivateTest") and out[1] == "|---|---|---|---|---|---|"
    assert out[2].startswith(f"| {TINY} |") and out[3].startswith(f"| **{BUNDLED}** |")  # tiny is cheaper
    assert out[4].startswith("ms/face: one LiteRT thread of ") and out[4].endswith(" 1 alternating round(s) of 20 runs")
    assert out[-2] == "- no --people: the rule's real-faces counts were left out"
    assert out[-1] == f"default by the rule: {BUNDLED}"


@pytest.mark.parametrize("argv, message", [
    (["model.keras"], "model.keras: choose compares int8 .tflite models (export a Keras model first)"),
    (["missing.tflite"], "missing.tflite: not found"),
    ([str(TINY), str(TINY)], "a model is named twice"),
    ([str(TINY), "--people", str(FIX / "nobody")],
     f"{FIX / 'nobody' / 'labels.csv'}: not found (the folder needs labels.csv with file,label,subject)"),
])
def test_choose_refuses_what_it_cannot_compare_in_one_line(fer_halves, capsys, argv, message):
    assert main(["choose", *argv, "--data", str(fer_halves)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"emotion-export: error: {message}"]


def test_choose_refuses_models_of_different_labels(fer_halves, tmp_path, capsys):
    other = tmp_path / "reordered.tflite"  # the tiny model with its labels in another order
    other.write_bytes(TINY.read_bytes())
    meta = json.loads(TINY.with_suffix(".json").read_text())
    meta["labels"] = meta["labels"][::-1]
    other.with_suffix(".json").write_text(json.dumps(meta))
    assert main(["choose", str(TINY), str(other), "--data", str(fer_halves)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    labels = meta["labels"]
    assert err == [f"emotion-export: error: {other}: its labels {labels} differ from {TINY}'s {labels[::-1]}; "
                   "choose compares models of one label set"]


def test_choose_defaults_are_the_rules_own():
    from model_export.cli import build_parser

    args = build_parser().parse_args(["choose", "m.tflite", "--data", "fer.npz"])
    assert (args.jitter, args.floor, args.cost_runs, args.cost_rounds) == (30, 0.70, 1000, 2)
