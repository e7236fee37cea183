"""The resting face learned while watching: the maths, its file, the loop and the service that use it."""
from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from edge.calibration import learned as adapt
from edge.calibration.learned import BaselineFileError, LearnedBaseline, Learner, load
from edge.calibration import PROB_FLOOR, log_probs, make_calibration, save
from edge.config import CalibrateConfig
from edge.types import Prediction

from .conftest import BUNDLED_MODEL

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SHA = "cd" * 32
REPO = Path(__file__).resolve().parents[1]
JAFFE = REPO.parent / "shared" / "data" / "jaffe-tune"


def probs(top: str, p: float = 0.6) -> np.ndarray:
    v = np.full(7, (1 - p) / 6, np.float32)
    v[LABELS.index(top)] = p
    return v


def feed(b: LearnedBaseline, p: np.ndarray, seconds: float, t0: float = 0.0, hz: float = 5.0) -> float:
    t = t0
    for _ in range(int(round(seconds * hz))):
        t += 1 / hz
        b.observe(t, p)
    return t


# -- the maths -----------------------------------------------------------------------------------
def test_the_baseline_is_the_mean_log_probability_and_ready_after_min_seconds():
    b = LearnedBaseline(SHA, LABELS, half_life=600, min_seconds=30)
    feed(b, probs("sad"), 20)
    assert not b.ready and 19.5 < b.face_seconds < 21.5
    feed(b, probs("sad"), 20, t0=20)
    assert b.ready
    np.testing.assert_allclose(b.baseline(), log_probs(probs("sad")), atol=1e-6)
    cal = b.calibration()
    assert cal.source == adapt.SOURCE and cal.model_sha256 == SHA and cal.frames == int(b.face_seconds)


def test_what_was_learned_counts_half_after_one_half_life():
    b = LearnedBaseline(SHA, LABELS, half_life=60, min_seconds=5)
    t = feed(b, probs("sad"), 2000)            # steady state: the old face only
    feed(b, probs("happy"), 60, t0=t)          # one half-life of another face
    expect = 0.5 * log_probs(probs("sad")) + 0.5 * log_probs(probs("happy"))
    np.testing.assert_allclose(b.baseline(), expect, atol=0.01)


def test_a_pause_counts_at_most_max_gap_of_face_time():
    b = LearnedBaseline(SHA, LABELS, half_life=600, min_seconds=5)
    b.observe(10.0, probs("sad"))
    b.observe(3610.0, probs("sad"))            # the face came back an hour later
    b.observe(3609.0, probs("sad"))            # and a clock that went back counts nothing
    assert b.face_seconds == pytest.approx(2 * adapt.MAX_GAP)


def test_zero_probabilities_of_an_int8_model_are_floored():
    b = LearnedBaseline(SHA, LABELS, half_life=600, min_seconds=5)
    p = np.zeros(7, np.float32)
    p[3] = 1.0
    feed(b, p, 10)
    assert np.all(np.isfinite(b.baseline())) and b.baseline().min() == pytest.approx(math.log(PROB_FLOOR))


def test_observe_allocates_nothing_per_call():
    import tracemalloc

    b = LearnedBaseline(SHA, LABELS, half_life=600, min_seconds=5)
    p = probs("happy")
    feed(b, p, 2)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    feed(b, p, 100, t0=2)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename") if s.size_diff > 0)
    tracemalloc.stop()
    assert grown < 2000, f"{grown} bytes kept after 500 calls"


# -- the file ------------------------------------------------------------------------------------
def learner(path, apply=None, half_life=600.0, min_seconds=5.0, sha=SHA) -> Learner:
    return Learner(sha, LABELS, half_life=half_life, min_seconds=min_seconds,
                           apply=apply or (lambda cal: None), path=path)


def test_the_learned_face_is_handed_over_once_ready_then_every_10_s():
    """The first hand-over does not wait for the next 10 s tick: each second before it is read uncalibrated."""
    handed, t = [], 0.0
    a = learner(None, apply=lambda cal: handed.append(t), min_seconds=5.0)
    for _ in range(150):
        t += 0.2
        a.feed(t, Prediction(probs("sad"), LABELS))
    assert 4.0 <= handed[0] <= 5.0, handed        # 5 s of face time (the first reading counts 1 s)
    assert np.allclose(np.diff(handed), 10.0, atol=0.21), handed   # the first reading at or after each tick


def test_saved_at_close_and_read_back_by_the_next_start(tmp_path):
    path = tmp_path / "learned-baseline.json"
    a = learner(path)
    t = 0.0
    for _ in range(100):
        t += 0.2
        a.feed(t, Prediction(probs("sad"), LABELS))
    a.close()
    data = json.loads(path.read_text())
    assert data["model_sha256"] == SHA and data["face_seconds"] == pytest.approx(20.0, abs=1.5)
    b = learner(path)
    assert b.state.face_seconds == pytest.approx(a.state.face_seconds, abs=1e-3)
    np.testing.assert_allclose(b.state.baseline(), a.state.baseline(), atol=1e-5)


def test_a_file_of_another_model_is_not_used_and_learning_starts_afresh(tmp_path, caplog):
    path = tmp_path / "learned-baseline.json"
    a = learner(path)
    a.feed(1.0, Prediction(probs("sad"), LABELS))
    a.close()
    b = learner(path, sha="ef" * 32)
    assert b.state.face_seconds == 0 and "learned with another model" in caplog.text


def _good_file() -> dict:
    b = LearnedBaseline(SHA, LABELS, 600, 5)
    feed(b, probs("sad"), 10)
    return b.to_json()


BAD = {
    "not json": b"{nope",
    "a list": b"[]",
    "other kind": json.dumps({**_good_file(), "kind": "x"}).encode(),
    "short sum": json.dumps({**_good_file(), "sum": [0.0] * 3}).encode(),
    "text weight": json.dumps({**_good_file(), "weight": "1"}).encode(),
    "zero weight": json.dumps({**_good_file(), "weight": 0}).encode(),
    "nan sum": json.dumps({**_good_file(), "sum": [float("nan")] * 7}).replace("NaN", "NaN").encode(),
    "positive log-probabilities": json.dumps({**_good_file(), "sum": [5.0] * 7}).encode(),
    "slightly positive mean": json.dumps({**_good_file(), "sum": [0.001] * 7, "weight": 1.0}).encode(),
    "mean below the floor": json.dumps({**_good_file(), "sum": [math.log(PROB_FLOOR) - 0.01] * 7, "weight": 1.0}).encode(),
    "negative face time": json.dumps({**_good_file(), "face_seconds": -1}).encode(),
    "started not a number": json.dumps({**_good_file(), "started_unix": "today"}).encode(),
    "binary": b"\xff\xfe\x00",
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_damaged_file_is_one_warning_and_learning_starts_afresh(tmp_path, caplog, name):
    path = tmp_path / "learned-baseline.json"
    path.write_bytes(BAD[name])
    with pytest.raises(BaselineFileError):
        load(path, SHA, LABELS, 600, 5)
    b = learner(path)
    assert b.state.face_seconds == 0
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage() and "\n" not in warnings[0].getMessage()


def test_a_fifo_or_directory_is_refused_without_reading(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(BaselineFileError, match="not a regular file"):
        load(fifo, SHA, LABELS, 600, 5)
    with pytest.raises(BaselineFileError):
        load(tmp_path, SHA, LABELS, 600, 5)


def test_a_file_that_cannot_be_written_is_a_warning_and_the_loop_goes_on(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")  # a file where the folder should be: no one may write under it, root neither
    a = learner(blocker / "learned-baseline.json")
    a.feed(1.0, Prediction(probs("sad"), LABELS))
    a.close()
    assert "cannot save the learned resting face" in caplog.text and a._dirty, "kept, to be saved at the next try"


def test_learner_hands_over_every_refresh_once_ready_and_forget_removes_the_file(tmp_path):
    path = tmp_path / "learned-baseline.json"
    got = []
    a = learner(path, apply=got.append, min_seconds=5)
    t = 0.0
    for _ in range(150):  # 30 s at 5 Hz
        t += 0.2
        a.feed(t, Prediction(probs("sad"), LABELS))
    assert 2 <= len(got) <= 3 and all(c.source == "learned" for c in got)  # ready at 5 s, then every 10 s
    a.save()
    assert path.exists()
    a.forget()
    assert not path.exists() and a.state.face_seconds == 0 and not a.state.ready


def test_it_learns_from_the_raw_answer_of_a_calibrated_classifier():
    from edge.calibration import CalibrationStage

    stage = CalibrationStage(SHA, LABELS, explicit=make_calibration([probs("neutral")], SHA, LABELS, "photos"))
    stage.add_learner(None)
    a = stage.learner
    raw = probs("sad", 0.9)
    stage.update(1.0, 1, [((0, 0, 9, 9), Prediction(raw, LABELS))])
    np.testing.assert_allclose(a.state.baseline(), log_probs(raw), atol=1e-6)


# -- the loop and the service ----------------------------------------------------------------------
def _cfg(tmp_path, **calibrate):
    from edge.config import load_config

    return load_config(None, {"source": {"source": "sample"}, "led": {"backend": "none"},
                              "log": {"db": str(tmp_path / "log.db")},
                              "calibrate": {"learn_min_seconds": 5.0, **calibrate}})


def _run(cfg, state_dir=None):
    from edge.loop import Control, run_loop
    from edge.pipeline import Pipeline

    parts = Pipeline.build(cfg, state_dir=state_dir)
    try:
        run_loop(parts, cfg, Control())
        return parts.calibration.applier, parts.calibration.learner.describe() if parts.calibration.learner else None
    finally:
        parts.close()


def test_a_run_learns_and_applies_it_without_a_calibration_and_keeps_no_file(tmp_path):
    applier, learned = _run(_cfg(tmp_path))
    assert applier is not None and applier.calibration.source == "learned"
    assert learned["ready"] and learned["face_seconds"] > 10 and learned["file"] == ""
    assert applier.neutral_margin == CalibrateConfig().learn_neutral_margin == 0.5 and applier.strength == 1.0
    assert not (tmp_path / "learned-baseline.json").exists(), "`run` on a clip learns for this run only"


def test_an_explicit_calibration_wins_over_the_learned_face(tmp_path):
    from edge.classify import EmotionClassifier

    with EmotionClassifier(BUNDLED_MODEL) as clf:
        sha, labels = clf.info.sha256, clf.labels
    save(make_calibration([np.full(7, 1 / 7, np.float32)], sha, labels, "photos", created=1.7e9), tmp_path / "calibration.json")
    applier, learned = _run(_cfg(tmp_path))
    assert applier.calibration.source == "photos" and learned["ready"]


@pytest.mark.parametrize("settings", [{"learn": False}, {"strength": 0.0}])
def test_learning_is_off_with_learn_false_or_no_calibration(tmp_path, settings):
    applier, learned = _run(_cfg(tmp_path, **settings))
    assert applier is None and learned is None


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_the_service_keeps_what_it_learned_across_restarts_and_status_shows_it(tmp_path, monkeypatch):
    from edge.service import service
    from edge.commands.status import summarize

    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    cfg = tmp_path / "config.toml"
    cfg.write_text('[calibrate]\nlearn_min_seconds = 5\n[led]\nbackend = "none"\n')
    status = tmp_path / "status.json"
    argv = ["--config", str(cfg), "--source", "sample", "--db", str(tmp_path / "log.db"), "--status-file", str(status)]
    seconds = []
    for _ in range(2):
        assert service.run_service(service.build_parser().parse_args(argv)) == 0
        data = json.loads((tmp_path / "learned-baseline.json").read_text())
        seconds.append(data["face_seconds"])
    assert seconds[0] > 10 and seconds[1] == pytest.approx(2 * seconds[0], rel=0.05), seconds
    st = json.loads(status.read_text())
    assert st["calibration"]["source"] == "learned" and st["calibration"]["learned"]["ready"]
    _, lines, _ = summarize(None, status, st)
    assert any(ln.startswith("calibration: learned while watching, from") for ln in lines), lines


def test_calibrate_reset_forgets_the_learned_face_too(tmp_path):
    from .test_calibration import cli

    state = tmp_path / "emotion-edge"
    state.mkdir()
    (state / "learned-baseline.json").write_text(json.dumps(_good_file()))
    r = cli("calibrate", "--reset", "--no-service", env={"XDG_STATE_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "learned resting face removed" in r.stdout and not (state / "learned-baseline.json").exists()


def test_learn_config_keys_are_validated():
    from edge.config import load_config
    from edge.errors import ConfigError

    for bad in ({"learn_half_life": 1}, {"learn_min_seconds": 0}, {"learn": "yes"}):
        with pytest.raises(ConfigError, match="learn"):
            load_config(None, {"calibrate": bad})


# -- real people (jaffe-tune: never copied here) ---------------------------------------------------
@pytest.mark.data
def test_the_learned_face_lifts_accuracy_on_real_people_even_when_every_expression_is_seen():
    if not (JAFFE / "labels.csv").is_file():
        pytest.skip(f"jaffe-tune not found at {JAFFE} (real photos of 5 people; not redistributable)")
    from model_export.calibration_report import measure, read_labels

    m = measure(read_labels(JAFFE), str(BUNDLED_MODEL), calib=2)
    n = sum(r.n for r in m.subjects)
    u, g = sum(r.uncalibrated for r in m.subjects) / n, sum(r.learned for r in m.subjects) / n
    assert g >= u + 0.08, (u, g)
    assert sum(r.learned >= r.uncalibrated for r in m.subjects) >= 4, "at most one person is made worse"


def test_a_reset_asked_of_the_service_forgets_the_learned_face(tmp_path):
    from edge.loop import Control, run_loop
    from edge.pipeline import Pipeline

    cfg = _cfg(tmp_path)
    parts = Pipeline.build(cfg, state_dir=tmp_path)
    try:
        run_loop(parts, cfg, Control())
        parts.calibration.learner.save()
        assert (tmp_path / "learned-baseline.json").exists() and parts.calibration.applier is not None
        parts.calibration.capture.reset("r1")  # what a `calibrate --reset` request file makes the service do
        assert not (tmp_path / "learned-baseline.json").exists() and parts.calibration.learner.state.face_seconds == 0
        assert parts.calibration.applier is None, "nothing learned yet: the model's own answer again"
    finally:
        parts.close()


def test_a_reload_reads_back_what_was_learned_and_uses_it_at_once_and_explicit_still_wins(tmp_path):
    from edge.classify import EmotionClassifier
    from edge.loop import Control, run_loop
    from edge.pipeline import Pipeline

    cfg = _cfg(tmp_path)
    parts = Pipeline.build(cfg, state_dir=tmp_path)
    try:
        run_loop(parts, cfg, Control())
        seconds = parts.calibration.learner.state.face_seconds
        parts.reload(_cfg(tmp_path))  # what SIGHUP does
        assert parts.calibration.learner.state.face_seconds == pytest.approx(seconds, abs=1e-3)
        assert parts.calibration.applier is not None and parts.calibration.applier.calibration.source == "learned"
        with EmotionClassifier(BUNDLED_MODEL) as clf:
            sha, labels = clf.info.sha256, clf.labels
        save(make_calibration([np.full(7, 1 / 7, np.float32)], sha, labels, "photos", created=1.7e9), tmp_path / "calibration.json")
        parts.reload(_cfg(tmp_path))
        assert parts.calibration.applier.calibration.source == "photos" and parts.calibration.learner.state.ready
    finally:
        parts.close()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_a_damaged_file_at_service_start_is_one_warning_and_the_service_runs_and_replaces_it(tmp_path, monkeypatch, capfd):
    from edge.service import service

    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    cfg = tmp_path / "config.toml"
    cfg.write_text('[calibrate]\nlearn_min_seconds = 5\n[led]\nbackend = "none"\n')
    learned = tmp_path / "learned-baseline.json"
    learned.write_bytes(b'{"kind": "emotion-edge learned baseline", "version": 1, "sum": "\n\x00')
    argv = ["--config", str(cfg), "--source", "sample", "--db", str(tmp_path / "log.db"),
            "--status-file", str(tmp_path / "status.json")]
    assert service.run_service(service.build_parser().parse_args(argv)) == 0
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if "learned-baseline.json" in ln]
    assert len(lines) == 1 and "not valid JSON" in lines[0], err[-2000:]
    data = json.loads(learned.read_text())
    assert data["face_seconds"] > 10, "learned afresh and saved over the damaged file"
    import sqlite3
    with sqlite3.connect(tmp_path / "log.db") as db:
        assert db.execute("select count(*) from events").fetchone()[0] > 0, "the mood log was kept as always"


def test_the_state_file_is_written_every_five_minutes_not_every_frame(tmp_path):
    """An SD card wears out: the service saves what it learned every SAVE_SECONDS and at close, and a
    save with nothing new writes nothing."""
    path = tmp_path / "learned-baseline.json"
    now = [1000.0]
    a = Learner(SHA, LABELS, half_life=600, min_seconds=5, apply=lambda cal: None, path=path, clock=lambda: now[0])
    t = 0.0
    for _ in range(250):  # 50 s of frames within the first five minutes
        t += 0.2
        now[0] += 0.2
        a.feed(t, Prediction(probs("sad"), LABELS))
    assert not path.exists()
    now[0] = 1000.0 + adapt.SAVE_SECONDS
    a.feed(t + 0.2, Prediction(probs("sad"), LABELS))
    assert path.exists()
    first = path.stat().st_ino, path.read_text()
    now[0] += 1.0
    a.feed(t + 0.4, Prediction(probs("sad"), LABELS))
    assert (path.stat().st_ino, path.read_text()) == first, "saved again a second later"
    a.save()
    second = path.stat().st_ino, path.read_text()
    a.save()  # nothing new since: no write (write_atomic would give the file a new inode)
    assert (path.stat().st_ino, path.read_text()) == second


def test_ready_exactly_at_min_seconds_of_face_time():
    b = LearnedBaseline(SHA, LABELS, half_life=600, min_seconds=2.0)
    b.observe(0.0, probs("sad"))  # the first sighting counts MAX_GAP
    assert b.face_seconds == adapt.MAX_GAP and not b.ready
    b.observe(1.0, probs("sad"))
    assert b.face_seconds == 2.0 and b.ready


@pytest.mark.parametrize("seconds,text", [(0, "0 s"), (40, "40 s"), (119.4, "119 s"), (120, "2 min"), (725, "12 min"),
                                          (7199, "120 min"), (7200, "2.0 h"), (12600, "3.5 h")])
def test_face_time_reads_in_seconds_minutes_or_hours(seconds, text):
    assert adapt.face_time(seconds) == text


def test_the_learned_resting_face_itself_reads_neutral_not_indifferent():
    """With no head start a face at rest read flat (every class equal) and the mood stayed whatever it was
    (a talking person read fear, uncalibrated, and the learned face did not change it)."""
    from edge.calibration import CalibrationStage
    from edge.config import CalibrateConfig
    from edge.types import Prediction

    labels = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    rest = np.array([0.05, 0.02, 0.45, 0.03, 0.2, 0.05, 0.2], np.float32)  # a resting face the model reads as fear
    stage = CalibrationStage("ab" * 32, labels, settings=CalibrateConfig())
    stage._use_learned(make_calibration([rest], "ab" * 32, labels, "learned"))
    p = stage.apply(Prediction(rest.copy(), labels)).probs
    assert labels[int(np.argmax(p))] == "neutral" and p[6] - np.sort(p)[-2] > 0.05
