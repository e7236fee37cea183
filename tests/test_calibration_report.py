"""`emotion-export calibration-report --compare`: two models on the same photos, and whether the gap could be chance."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

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
