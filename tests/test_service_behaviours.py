"""Service behaviours the process-level tests leave out, exercised in-process with the real parts:
an error mid-run, what a reload rebuilds or reuses, the restart-needed warning, a reload that fails
after building its classifier, a status file that cannot be written, and face_ratio."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edge.service import service
from edge.errors import SourceError
from edge.loop import Stats
from edge.service.notify import Notifier
from edge.types import Frame, Mood

from .conftest import CLIP, MODELS_DIR

TINY = MODELS_DIR / "tiny_int8.tflite"


pytestmark = pytest.mark.usefixtures("restore_logging")


def _args(tmp_path: Path, *extra: str, config: Path | None = None):
    argv = ["--model", str(TINY), "--led", "none", "--db", str(tmp_path / "log.db"),
            "--status-file", str(tmp_path / "status.json"), *extra]
    if config is not None:
        argv = ["--config", str(config), *argv]
    return service.build_parser().parse_args(argv)


class BreaksAfter:
    """A frame source (not a camera, so not wrapped for reopening) whose device fails for good."""

    def __init__(self, n: int) -> None:
        import cv2

        self.img = cv2.imread(str(MODELS_DIR.parent / "faces" / "fer32305_happy_320x240.png"), cv2.IMREAD_GRAYSCALE)
        self.n, self.i, self.closed = n, 0, False
        self.name = "breaking source"

    def read(self):
        if self.i >= self.n:
            raise SourceError("breaking source: device gone (I/O error)")
        self.i += 1
        return Frame(self.img, self.i / 10, self.i)

    def close(self) -> None:
        self.closed = True


def test_an_error_mid_run_exits_1_with_state_failed_and_reason_error(tmp_path, monkeypatch):
    import edge.sources

    src = BreaksAfter(5)
    monkeypatch.setattr(edge.sources, "open_source", lambda cfg, camera_factory=None, **kw: src)
    rc = service.run_service(_args(tmp_path, "--source", "x"), notifier=Notifier(None))
    assert rc == service.EXIT_RUNTIME == 1
    st = json.loads((tmp_path / "status.json").read_text())
    assert st["state"] == "failed" and st["stop_reason"] == "error"
    assert "device gone" in st["last_error"]["message"] and st["frames"] == 5
    assert src.closed


def _running_service(tmp_path: Path, config: Path) -> service.Service:
    """A Service with its parts built as at start, without running the loop."""
    from edge.pipeline import Pipeline
    from edge.commands.common import config_from_args

    svc = service.Service(_args(tmp_path, "--source", str(CLIP), config=config), Notifier(None))
    svc.cfg = config_from_args(svc.args)
    svc.status_file = tmp_path / "status.json"
    svc.pipeline = Pipeline.build(svc.cfg, state_dir=tmp_path)
    return svc


def test_reload_rebuilds_the_detector_only_when_detect_changed_and_warns_about_restart_keys(tmp_path, caplog):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[detect]\nmin_neighbors = 5\n")
    svc = _running_service(tmp_path, cfg)
    try:
        det, clf = svc.pipeline.detector, svc.pipeline.classifier
        svc.reload()  # nothing changed: same detector, a fresh classifier (the model file may have)
        assert svc.pipeline.detector is det and svc.pipeline.classifier is not clf
        cfg.write_text("[detect]\nmin_neighbors = 3\n")
        svc.reload()
        assert svc.pipeline.detector is not det and svc.pipeline.detector.detector.cfg.min_neighbors == 3
        assert not [r for r in caplog.records if "take effect after" in r.getMessage()]
        cfg.write_text("[detect]\nmin_neighbors = 3\n[led]\nbrightness = 0.2\n[log]\nkeep_days = 7\n")
        with caplog.at_level(logging.WARNING, logger="emotion-edge"):
            svc.reload()
        warn = [r.getMessage() for r in caplog.records if "take effect after" in r.getMessage()]
        assert warn == ["changes to [led], [log] take effect after `sudo systemctl restart emotion-edge`"]
    finally:
        svc.pipeline.close()


def test_a_reload_failing_after_the_classifier_was_built_closes_it_and_keeps_the_old_parts(tmp_path, monkeypatch):
    import edge.pipeline
    from edge.errors import DetectorError

    cfg = tmp_path / "config.toml"
    cfg.write_text("[detect]\nmin_neighbors = 5\n")
    svc = _running_service(tmp_path, cfg)
    built = []
    real = edge.pipeline.build_classifier

    def recording(*a, **k):
        clf = real(*a, **k)
        built.append(clf)
        return clf

    def broken_detector(cfg):
        raise DetectorError("cascade: cannot load")

    monkeypatch.setattr(edge.pipeline, "build_classifier", recording)
    monkeypatch.setattr(edge.pipeline, "build_detector", broken_detector)
    try:
        old_clf, old_det = svc.pipeline.classifier, svc.pipeline.detector
        cfg.write_text("[detect]\nmin_neighbors = 4\n")
        svc.reload()
        assert len(built) == 1 and built[0]._interp is None, "the new classifier must be closed"
        assert svc.pipeline.classifier is old_clf and old_clf._interp is not None
        assert svc.pipeline.detector is old_det and svc.cfg.detect.min_neighbors == 5
        assert "reload failed" in svc.last_error["message"]
    finally:
        svc.pipeline.close()


def test_a_status_file_that_cannot_be_written_is_warned_about_once(tmp_path, caplog):
    svc = service.Service(_args(tmp_path), Notifier(None))
    svc.status_file = tmp_path / "status.json"
    svc.status_file.mkdir()  # a folder in the way: every write fails
    with caplog.at_level(logging.WARNING, logger="emotion-edge"):
        for _ in range(5):
            svc._write_status({"state": "running"})
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1


def test_face_ratio_is_the_share_of_frames_with_a_face_since_the_last_update(tmp_path):
    svc = service.Service(_args(tmp_path), Notifier(None))
    svc.status_file = tmp_path / "status.json"
    stats, mood = Stats(), Mood("happy", 0.9, None, ("happy",), 0.0)
    stats.frames, stats.faces_seen = 40, 30
    svc._publish(stats, mood)
    assert json.loads(svc.status_file.read_text())["face_ratio"] == 0.75
    stats.frames, stats.faces_seen = 60, 35  # 5 of the 20 new frames had a face
    svc._publish(stats, mood)
    assert json.loads(svc.status_file.read_text())["face_ratio"] == 0.25
