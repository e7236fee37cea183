"""Issue 29: `status` shows the service's notes (a damaged log moved aside, a damaged deployed model not
used, rows dropped) and counts calibration photos in plain words."""
from __future__ import annotations

from pathlib import Path

import pytest

from edge.commands.status import summarize

BASE = {"state": "running", "updated": 1000.0, "mood": "happy", "confidence": 0.8, "fps": 12.0, "frames": 50,
        "model": {"path": "/x/emotion.tflite", "sha256": "ab" * 32}, "last_error": None}


def _lines(**extra) -> list[str]:
    return summarize(None, Path("s.json"), {**BASE, **extra}, now=1001.0)[1]


def test_notes_of_the_service_are_shown_one_line_each():
    notes = {"log_moved": {"time": 990.0, "message": "event log /s/emotion-edge.db: its header is damaged; moved aside"},
             "model": {"time": 995.0, "message": "deployed model damaged; running the bundled model"}}
    lines = _lines(notices=notes)
    shown = [ln for ln in lines if ln.startswith("notice:")]
    assert shown == ["notice:  event log /s/emotion-edge.db: its header is damaged; moved aside (11 s ago)",
                     "notice:  deployed model damaged; running the bundled model (6 s ago)"]
    assert "error:   none" in lines  # a note is not an error


@pytest.mark.parametrize("notes", [None, [], "x", {"a": "x"}, {"a": {"message": 3}}, {"a": {"message": "m", "time": 10 ** 400}},
                                   {"a": {"message": "m", "time": float("nan")}}])
def test_odd_notes_in_another_process_file_do_not_break_status(notes):
    lines = _lines(notices=notes)
    assert all("notice" not in ln or ln.endswith("(?)") for ln in lines)


@pytest.mark.parametrize("frames, source, text", [(1, "photos", "1 photo"), (12, "photos", "12 photos"),
                                                  (1, "camera", "1 camera frame"), (42, "camera", "42 camera frames")])
def test_calibration_counts_photos_once(frames, source, text):
    cal = {"created": 900.0, "frames": frames, "source": source}
    line = next(ln for ln in _lines(calibration=cal) if ln.startswith("calibration:"))
    assert line.endswith(f"(2 min ago), {text}") and "photos photos" not in line
