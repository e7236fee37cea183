"""emotion-export train (the lead's model_export/train.py) through the CLI: a tiny run saves and resumes."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from model_export.cli import main  # noqa: E402
from model_export.data import load_dataset  # noqa: E402

FIX = Path(__file__).resolve().parent / "fixtures" / "export"


def _tiny_npz(path: Path) -> Path:
    """300 Training + 80 PublicTest faces: the committed real faces with small random shifts."""
    base = load_dataset(FIX / "folder")
    faces, labels = base.images, base.labels
    rng = np.random.default_rng(0)
    n = 380
    pick = rng.integers(0, len(faces), n)
    images = np.empty((n, 48, 48), np.uint8)
    for i, k in enumerate(pick):
        dy, dx = rng.integers(-3, 4, 2)
        images[i] = np.roll(faces[k], (dy, dx), axis=(0, 1))
    usage = np.r_[np.zeros(300), np.ones(80)].astype(np.int8)
    np.savez(path, images=images, labels=labels[pick].astype(np.int8), usage=usage)
    return path


def test_tiny_run_saves_and_resumes(tmp_path, capsys):
    data = _tiny_npz(tmp_path / "tiny.npz")
    run = tmp_path / "run"
    common = ["train", "--data", str(data), "--out", str(run), "--limit", "300", "--batch-size", "64",
              "--width", "0.5", "--verbose", "0"]
    assert main(common + ["--epochs", "1"]) == 0
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 1 and (run / "last.keras").is_file() and (run / "best.keras").is_file()
    first = keras.models.load_model(run / "last.keras")
    assert first.optimizer.iterations.numpy() == 5  # ceil(300 / 64) steps

    assert main(common + ["--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "after epoch 1" in out
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2
    with open(run / "log.csv") as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert epochs == [0, 1]  # one row per epoch, the second appended by the resumed run
    resumed = keras.models.load_model(run / "last.keras")
    assert resumed.optimizer.iterations.numpy() == 10  # optimizer state carried over
    assert resumed.input_shape == (None, 48, 48, 1) and resumed.output_shape == (None, 7)

    assert main(common + ["--epochs", "2"]) == 0  # finished: nothing to do
    assert "nothing to do" in capsys.readouterr().out

    # a warm restart: a new run folder starts from that run's weights with a fresh optimizer
    warm = tmp_path / "warm"
    assert main(["train", "--data", str(data), "--out", str(warm), "--limit", "300", "--batch-size", "64",
                 "--epochs", "1", "--lr", "1e-9", "--bn-images", "0", "--verbose", "0",
                 "--init-from", str(run / "last.keras")]) == 0
    assert "new run from the weights of" in capsys.readouterr().out
    restarted = keras.models.load_model(warm / "last.keras")
    assert restarted.optimizer.iterations.numpy() == 5  # fresh schedule, not the old run's 10 steps
    conv = next(w for w in resumed.weights if "stem_conv" in w.path)
    conv2 = next(w for w in restarted.weights if w.path == conv.path)
    assert np.allclose(conv.numpy(), conv2.numpy(), atol=1e-4)  # lr ~0: the weights came over
