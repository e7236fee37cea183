"""`emotion-export calibration-report --compare`: two models on the same photos, and whether the gap could be chance."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from model_export.calibration_report import mcnemar_p
from model_export.cli import main

FIX = Path(__file__).resolve().parent / "fixtures"
BUNDLED = Path(__file__).resolve().parents[1] / "edge" / "models" / "emotion.tflite"
TINY = FIX / "models" / "tiny_int8.tflite"


def test_exact_mcnemar_p_values():
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(5, 5) == 1.0
    assert mcnemar_p(0, 6) == pytest.approx(2 / 64)  # 6 photos, all won by one side
    assert mcnemar_p(9, 3) == mcnemar_p(3, 9) == pytest.approx(2 * (1 + 12 + 66 + 220) / 4096)
    assert mcnemar_p(10, 0) < 0.01 < mcnemar_p(7, 2) < 1.0


@pytest.fixture
def people(tmp_path) -> Path:
    """Two 'people' from the committed FER faces on frames: one neutral photo each to calibrate from."""
    rows = ["file,label,subject"]
    for subject in ("A", "B"):
        for src in sorted((FIX / "faces").glob("fer*_320x240.png")):
            if "_two_" in src.name:
                continue
            name = f"{subject}_{src.name}"
            shutil.copy(src, tmp_path / name)
            rows.append(f"{name},{src.name.split('_')[1]},{subject}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_compare_counts_the_photos_only_one_model_gets_right(people, capsys):
    assert main(["calibration-report", "--data", str(people), "--calib", "1", "--model", str(BUNDLED),
                 "--compare", str(TINY), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == r["compare"]["n"] == 8
    for which in ("uncalibrated", "calibrated"):
        pr = r["compare"]["paired"][which]
        # only-first minus only-second is exactly the difference in photos right
        assert pr["only_first"] - pr["only_second"] == round((r[which] - r["compare"][which]) * 8)
        assert pr["p"] == mcnemar_p(pr["only_first"], pr["only_second"])
    assert r["compare"]["paired"]["uncalibrated"]["only_first"] >= 2 > r["compare"]["uncalibrated"]  # the real model wins
    assert main(["calibration-report", "--data", str(people), "--calib", "1", "--model", str(BUNDLED),
                 "--compare", str(BUNDLED)]) == 0
    out = capsys.readouterr().out
    assert "--compare " in out and out.count("only the first right 0, only the second right 0, exact McNemar p = 1.00 (could be chance)") == 3


def test_jitter_box_stays_in_bounds_and_in_the_frame():
    import numpy as np

    from model_export.calibration_report import JITTER_SHIFT, JITTER_SIZE, jitter_box

    rng = np.random.default_rng(0)
    seen_w = set()
    for _ in range(500):
        x, y, w, h = jitter_box((100, 60, 80, 80), rng, 320, 240)
        seen_w.add(w)
        assert 80 * (1 - JITTER_SIZE) - 1 <= w <= 80 * (1 + JITTER_SIZE) + 1 and w == h
        assert abs(x + w / 2 - 140) <= 80 * JITTER_SHIFT + 1 and abs(y + h / 2 - 100) <= 80 * JITTER_SHIFT + 1
    assert len(seen_w) > 10  # it really moves
    for _ in range(200):  # a box at the corner is pushed back inside
        x, y, w, h = jitter_box((0, 0, 100, 100), rng, 104, 104)
        assert x >= 0 and y >= 0 and x + w <= 104 and y + h <= 104
    assert len({jitter_box((5, 5, 50, 50), np.random.default_rng(s), 200, 200) for s in (7, 7, 8, 8)}) == 2  # the seed alone decides


def test_sign_flip_p():
    import numpy as np

    from model_export.calibration_report import sign_flip_p

    assert sign_flip_p(np.zeros(10)) == 1.0
    assert sign_flip_p(np.ones(12)) < 0.001          # every photo better: 2 / 4096 by chance
    assert sign_flip_p(np.array([1.0, -1.0] * 10)) > 0.9
    assert 0.01 < sign_flip_p(np.array([1.0] * 7 + [-1.0] * 2)) < 0.3  # like McNemar(7, 2) = 0.18


def test_mean_recall_weighs_every_class_equally():
    from model_export.calibration_report import Photo, mean_recall

    # 8 photos of class 0 all right, 2 of class 6 (neutral) all wrong: accuracy 80 %, mean recall 50 %
    photos = [Photo(Path(f"{i}.png"), "A", 0, 0, 0) for i in range(8)] + [Photo(Path(f"n{i}.png"), "A", 6, 0, 6) for i in range(2)]
    assert mean_recall(photos, "uncalibrated") == 0.5
    assert mean_recall(photos, "calibrated") == 1.0


def test_jittered_repeats_are_paired_and_reproducible(people, capsys):
    args = ["calibration-report", "--data", str(people), "--calib", "1", "--model", str(BUNDLED), "--jitter", "3", "--json"]
    assert main(args + ["--compare", str(BUNDLED)]) == 0
    r = json.loads(capsys.readouterr().out)
    j = r["jittered"]
    assert j["repeats"] == 3 and set(j) == {"repeats", "uncalibrated", "calibrated", "learned"}
    assert all(0.0 <= j[w]["mean_recall"] <= 1.0 for w in ("uncalibrated", "calibrated", "learned"))
    assert r["compare"]["jittered"] == j  # the same seeds: the very same boxes for both models
    assert all(v == {"second_minus_first": 0.0, "p": 1.0} for v in r["compare"]["paired_jittered"].values())
    assert main(args + ["--compare", str(TINY)]) == 0
    r2 = json.loads(capsys.readouterr().out)
    assert r2["jittered"] == j  # reproducible run to run
    assert r2["compare"]["paired_jittered"]["uncalibrated"]["second_minus_first"] < 0  # the tiny model is worse
    for bad, msg in ((["--jitter", "-1"], "argument --jitter: must be between 0 and 1000 (got -1)"),
                     (["--calib", "0"], "argument --calib: must be at least 1 (got 0)"),
                     (["--strength", "nan"], "argument --strength: must be a finite number at least 0 and at most 2"),
                     (["--neutral-margin", "-1"], "argument --neutral-margin: must be a finite number at least 0 and at most 5")):
        with pytest.raises(SystemExit) as e:
            main(["calibration-report", "--data", str(people), *bad])
        assert e.value.code == 2 and msg in capsys.readouterr().err, bad


def test_crop_margin_and_single_crop_change_what_the_model_sees(people, capsys):
    """--crop-margin M reads every face as a model whose JSON said M would; --single-crop as the loop does."""
    from model_export.calibration_report import measure, read_labels

    rows = read_labels(people)
    copy = people / "m"
    copy.mkdir()
    shutil.copy(BUNDLED, copy / "e.tflite")
    meta = json.loads(BUNDLED.with_suffix(".json").read_text())
    meta["input"]["crop_margin"] = 0.2
    (copy / "e.json").write_text(json.dumps(meta))
    outcomes = lambda m: [(p.uncalibrated, p.calibrated, p.learned) for p in m.photos]  # noqa: E731
    assert outcomes(measure(rows, str(BUNDLED), calib=1, crop_margin=0.2)) == outcomes(measure(rows, str(copy / "e.tflite"), calib=1))
    args = ["calibration-report", "--data", str(people), "--calib", "1", "--model", str(BUNDLED), "--json"]
    outs = []
    for extra in ([], ["--single-crop"], ["--crop-margin", "0.3"], ["--crop-margin", "0.3", "--single-crop"]):
        assert main(args + extra) == 0
        outs.append(json.loads(capsys.readouterr().out))
    from edge.classify import MULTI_CROP_OFFSETS

    own = json.loads(BUNDLED.with_suffix(".json").read_text())["input"]["crop_margin"]
    four = lambda m: [round(max(-0.1, m + d), 6) for d in MULTI_CROP_OFFSETS]  # noqa: E731
    assert [o["crop_margins"] for o in outs] == [four(own), [own], four(0.3), [0.3]]
    assert outs[1]["confusion_uncalibrated"] != outs[0]["confusion_uncalibrated"], "--single-crop moved no face"
    with pytest.raises(SystemExit) as e:
        main(args + ["--crop-margin", "1.5"])
    assert e.value.code == 2 and "argument --crop-margin: must be a finite number at least -0.1 and at most 1" in capsys.readouterr().err


def test_a_calibration_photo_with_faces_of_similar_size_is_not_used(people, capsys):
    """As `calibrate --photos` decides (edge.photo.own_face): with no clear face of the person's own, the
    report calibrates nothing for them rather than calibrating on whichever face is largest."""
    def report() -> dict:
        assert main(["calibration-report", "--data", str(people), "--calib", "1", "--model", str(BUNDLED), "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    calibrated = report()
    assert calibrated["confusion_calibrated"] != calibrated["confusion_uncalibrated"]
    # two resting faces side by side (no smile, which would be refused anyway)
    two = np.hstack([cv2.imread(str(FIX / "faces" / f"fer323{n}_320x240.png"), cv2.IMREAD_GRAYSCALE) for n in ("13_neutral", "01_sad")])
    from edge.config import DetectConfig
    from edge.detect import FaceDetector
    assert len(FaceDetector(DetectConfig()).detect(two)) == 2
    for name in ("A_0two.png", "B_0two.png"):
        cv2.imwrite(str(people / name), two)
    rows = (people / "labels.csv").read_text().splitlines()
    (people / "labels.csv").write_text("\n".join([rows[0], "A_0two.png,neutral,A", "B_0two.png,neutral,B", *rows[1:]]) + "\n")
    r = report()
    assert [s["calibration_photos"] for s in r["subjects"]] == [["A_0two.png"], ["B_0two.png"]]
    assert r["n"] == calibrated["n"] + 2  # each person's neutral fixture is now a test photo
    assert r["confusion_calibrated"] == r["confusion_uncalibrated"]
