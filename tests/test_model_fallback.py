"""Issue 29 B: a half-written deployed model (a power cut after `emotion-export deploy`) must not stop
the light for good: the bundled model runs instead, with one warning and a note for `status`."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from edge.service import notices
from edge.classify import DEFAULT_MODEL, EmotionClassifier, resolve_model


@pytest.fixture
def deployed(tmp_path) -> Path:
    """A whole deployed model: the bundled pair copied where deploy puts it."""
    d = tmp_path / "models"
    d.mkdir()
    for ext in (".tflite", ".json"):
        (d / f"emotion{ext}").write_bytes(DEFAULT_MODEL.with_suffix(ext).read_bytes())
    notices.reset()
    yield d / "emotion.tflite"
    notices.reset()


def _empty(m: Path) -> None:
    m.write_bytes(b"")


def _truncated(m: Path) -> None:
    os.truncate(m, m.stat().st_size // 3)


def _json_cut_off(m: Path) -> None:
    j = m.with_suffix(".json")
    j.write_bytes(j.read_bytes()[:200])


def _json_missing(m: Path) -> None:
    m.with_suffix(".json").unlink()


DAMAGE = {"empty .tflite": _empty, "truncated .tflite": _truncated, "cut-off .json": _json_cut_off,
          "no .json": _json_missing}


def test_a_whole_deployed_model_is_used(deployed, caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_model("", deployed=deployed) == deployed
    assert not caplog.records and "model" not in notices.current()


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_deployed_model_falls_back_to_the_bundled_one(deployed, damage, caplog, face_images):
    DAMAGE[damage](deployed)
    with caplog.at_level(logging.WARNING, logger="edge.classify"):
        path = resolve_model("", deployed=deployed)
    assert path == DEFAULT_MODEL
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "deployed model damaged" in lines[0] and "bundled model" in lines[0]
    assert str(deployed.parent) in lines[0] and "\n" not in lines[0]
    assert notices.current()["model"]["message"] == lines[0]  # `status` shows it
    clf = EmotionClassifier(path)  # and the light runs on the bundled model
    try:
        assert clf.classify_face(face_images[0][1]).probs.sum() == pytest.approx(1.0, abs=1e-3)
    finally:
        clf.close()


def test_a_model_the_user_named_is_never_swapped(deployed, tmp_path):
    """classify.model names a file: a damaged one is the user's to fix (exit 2), not silently replaced."""
    _empty(deployed)
    assert resolve_model(str(deployed), deployed=deployed) == deployed


def test_the_note_goes_once_the_deployed_model_is_whole_or_gone(deployed):
    _truncated(deployed)
    resolve_model("", deployed=deployed)
    assert "model" in notices.current()
    for ext in (".tflite", ".json"):  # deployed again, whole
        deployed.with_suffix(ext).write_bytes(DEFAULT_MODEL.with_suffix(ext).read_bytes())
    assert resolve_model("", deployed=deployed) == deployed and "model" not in notices.current()
    _empty(deployed)
    resolve_model("", deployed=deployed)
    deployed.unlink()  # removed: the bundled model, nothing to say
    assert resolve_model("", deployed=deployed) == DEFAULT_MODEL and "model" not in notices.current()
