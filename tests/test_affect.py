"""Valence/arousal: the circumplex placement, the schema-3 upgrade in place, and the readers."""
from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest

from edge.affect import ANGLES, COORDS, affect_of, affect_of_dict
from edge.config import LogConfig
from edge.contract import FER_LABELS
from edge.eventlog import EventLog, read_rows
from edge.eventlog.schema import APPLICATION_ID
from edge.types import Mood

V2_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, time REAL NOT NULL, kind TEXT NOT NULL, mood TEXT NOT NULL,
    confidence REAL NOT NULL, probs TEXT, faces REAL NOT NULL,
    box_x INTEGER, box_y INTEGER, box_w INTEGER, box_h INTEGER, faces_detail TEXT);
CREATE INDEX events_time ON events(time);
INSERT INTO meta VALUES ('schema_version', '2');
"""


def onehot(label: str) -> np.ndarray:
    p = np.zeros(7, dtype=np.float32)
    p[FER_LABELS.index(label)] = 1.0
    return p


def test_every_fer_label_has_a_place_and_neutral_is_the_origin():
    assert set(ANGLES) == set(FER_LABELS)
    assert COORDS["neutral"] == (0.0, 0.0)
    for lab in FER_LABELS:
        v, a = COORDS[lab]
        assert -1.0 <= v <= 1.0 and -1.0 <= a <= 1.0


@pytest.mark.parametrize("label,valence,arousal", [
    ("happy", "+", "+"), ("surprise", "+", "+"), ("angry", "-", "+"), ("fear", "-", "+"),
    ("disgust", "-", "+"), ("sad", "-", "-")])
def test_quadrants_follow_the_circumplex(label, valence, arousal):
    va = affect_of(FER_LABELS, onehot(label))
    assert (va.valence > 0) == (valence == "+") and (va.arousal > 0) == (arousal == "+")
    assert math.hypot(va.valence, va.arousal) == pytest.approx(1.0, abs=1e-3)


def test_probability_weighted_mean():
    p = 0.5 * onehot("happy") + 0.5 * onehot("sad")
    va = affect_of(FER_LABELS, p)
    assert va.valence == pytest.approx((COORDS["happy"][0] + COORDS["sad"][0]) / 2, abs=1e-4)
    assert va.arousal == pytest.approx((COORDS["happy"][1] + COORDS["sad"][1]) / 2, abs=1e-4)
    assert affect_of(FER_LABELS, onehot("neutral")).valence == 0.0


def test_unknown_labels_are_left_out_and_nothing_known_gives_none():
    assert affect_of(("happy", "bored"), [0.5, 0.5]).valence == pytest.approx(COORDS["happy"][0], abs=1e-4)
    assert affect_of(("bored", "sleepy"), [0.5, 0.5]) is None
    assert affect_of(FER_LABELS, None) is None
    assert affect_of(FER_LABELS, [1.0, 0.0]) is None  # wrong length: no value, no exception
    assert affect_of_dict({"happy": 1.0}).valence > 0.9


def _mood(label: str) -> Mood:
    return Mood(label, 1.0, onehot(label), FER_LABELS, 0.0)


def test_rows_carry_valence_and_arousal(tmp_path):
    db = tmp_path / "ev.db"
    with EventLog(db, LogConfig()) as log:
        log.record(_mood("happy"), 1, None, 0.0)
        log.record(_mood("sad"), 1, None, 0.1)
        log.record(Mood("none", 0.0, None, FER_LABELS, 0.0), 0, None, 0.2)
    rows = [r for r in read_rows(db) if r.kind == "change"]
    assert [r.mood for r in rows] == ["happy", "sad", "none"]
    assert rows[0].valence == pytest.approx(COORDS["happy"][0], abs=1e-3) and rows[0].arousal > 0
    assert rows[1].valence < 0 and rows[1].arousal < 0
    assert rows[2].valence is None and rows[2].as_dict()["arousal"] is None
    summary = [r for r in read_rows(db) if r.kind == "summary"][0]
    assert summary.valence is not None  # the mean probabilities over the interval


def _v2_file(db) -> None:
    conn = sqlite3.connect(db)
    conn.executescript(V2_SCHEMA)
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute("INSERT INTO events (time, kind, mood, confidence, probs, faces) VALUES (?,?,?,?,?,?)",
                 (1_700_000_000.0, "change", "sad", 1.0, json.dumps({lab: float(lab == "sad") for lab in FER_LABELS}), 1))
    conn.execute("INSERT INTO events (time, kind, mood, confidence, probs, faces) VALUES (?,?,?,?,?,?)",
                 (1_700_000_001.0, "change", "none", 0.0, None, 0))
    conn.commit()
    conn.close()


def test_a_version_2_log_is_read_before_and_upgraded_in_place(tmp_path):
    db = tmp_path / "ev.db"
    _v2_file(db)
    before = read_rows(db)  # a reader never upgrades: the values come from the probabilities
    assert [r.mood for r in before] == ["sad", "none"] and before[0].valence == pytest.approx(COORDS["sad"][0], abs=1e-3)
    assert before[1].valence is None
    with EventLog(db, LogConfig(), clock=lambda: 1_700_000_002.0) as log:
        log.record(_mood("happy"), 1, None, 0.0)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "3"
    assert conn.execute("SELECT count(*) FROM events WHERE valence IS NOT NULL").fetchone()[0] >= 1  # the new row
    conn.close()
    rows = read_rows(db)
    assert [r.mood for r in rows if r.kind == "change"] == ["sad", "none", "happy"]
    assert rows[0].valence == pytest.approx(COORDS["sad"][0], abs=1e-3)  # derived from the old row's probs
    assert rows[0].arousal == pytest.approx(COORDS["sad"][1], abs=1e-3)
    assert rows[1].valence is None
    assert rows[2].valence == pytest.approx(COORDS["happy"][0], abs=1e-3)


def test_led_valence_mode_hue_from_valence_brightness_from_arousal():
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from edge.config import LedConfig
    from edge.led import GpioLed

    f = MockFactory(pin_class=MockPWMPin)
    try:
        def shown(label: str) -> tuple[float, float, float]:
            led.show(_mood(label), 0.0)
            return (f.pin(17).state, f.pin(27).state, f.pin(22).state)

        with GpioLed(LedConfig(brightness=1.0, fade=0.0, mode="valence"), pin_factory=f) as led:
            r, g, b = shown("happy")  # pleasant: yellow
            assert r > 0.5 and g > 0.5 and b == pytest.approx(0.0, abs=1e-6)
            r, g, b = shown("sad")  # unpleasant and calm: blue, dimmer
            assert b > 0.2 and r < 0.05 and b < 0.5
            assert max(shown("surprise")) > max(shown("sad"))  # more aroused, brighter
            led.show(Mood("none", 0.0, None, FER_LABELS, 0.0), 0.0)
            assert (f.pin(17).state, f.pin(27).state, f.pin(22).state) == (0, 0, 0)  # idle colour
        with GpioLed(LedConfig(brightness=1.0, fade=0.0), pin_factory=f) as led:  # blend stays the default
            assert shown("sad") == pytest.approx((0.0, 0.2, 1.0), abs=1e-3)
    finally:
        f.reset()


def test_led_mode_is_checked_by_name(tmp_path):
    from edge.config import load_config
    from edge.errors import ConfigError

    p = tmp_path / "c.toml"
    p.write_text('[led]\nmode = "rainbow"\n')
    with pytest.raises(ConfigError, match="led.mode: must be one of blend, valence"):
        load_config(p)


def test_status_and_log_text_show_valence_and_arousal(tmp_path, capsys):
    from pathlib import Path

    from edge.commands.log import write_text
    from edge.commands.status import summarize as status_summary

    data = {"state": "running", "updated": 1000.0, "mood": "happy", "confidence": 0.8, "valence": 0.71, "arousal": 0.12}
    _, lines, _ = status_summary(None, Path("s.json"), data, now=1001.0)
    assert "mood:    happy (0.80), valence +0.71 arousal +0.12" in lines
    db = tmp_path / "ev.db"
    with EventLog(db, LogConfig()) as log:
        log.record(_mood("sad"), 1, None, 0.0)
    import io
    out = io.StringIO()
    write_text(read_rows(db), out)
    head, first = out.getvalue().splitlines()[:2]
    assert head.split()[-3:] == ["val", "aro", "box"]
    assert first.split()[5:7] == [f"{COORDS['sad'][0]:+.2f}", f"{COORDS['sad'][1]:+.2f}"]


def test_service_status_file_carries_valence_and_arousal(tmp_path):
    from edge.service import service
    from edge.service.notify import Notifier

    args = service.build_parser().parse_args(["--status-file", str(tmp_path / "s.json")])
    with Notifier(None) as n:
        svc = service.Service(args, n)
        d = svc._status_dict(None, _mood("sad"))
        assert d["valence"] == pytest.approx(COORDS["sad"][0], abs=1e-3) and d["arousal"] < 0
        assert "valence" not in svc._status_dict(None, Mood("none", 0.0, None, FER_LABELS, 0.0))


@pytest.mark.parametrize("arousal,level", [(-1.0, 0.25), (0.0, 0.625), (1.0, 1.0), (-3.0, 0.25), (2.5, 1.0)])
@pytest.mark.parametrize("valence,hue", [(-1.0, (0.0, 0.0, 1.0)), (1.0, (1.0, 1.0, 0.0)), (-7.0, (0.0, 0.0, 1.0)), (4.0, (1.0, 1.0, 0.0))])
def test_valence_colour_ends_and_brightness_scale(valence, hue, arousal, level):
    """Blue at valence -1, yellow at +1; brightness 0.25 (calmest) .. 1 (most aroused), linear; beyond +-1 clamps."""
    from edge.affect import Affect, valence_rgb

    assert valence_rgb(Affect(valence, arousal)) == pytest.approx(tuple(level * c for c in hue), abs=1e-9)
