"""edge/gate.py: when the loop reads the faces (real face images from tests/fixtures, no mocks)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.config import ClassifyConfig
from edge.gate import SIDE, ClassifyGate, look

BOX = (80, 40, 160, 160)   # where tests/fixtures/faces/*_320x240.png have their face
SETTLE = 1.8


def _gate(**kw) -> ClassifyGate:
    kw.setdefault("classify_hz", 10.0)
    kw.setdefault("steady_hz", 1.0)
    return ClassifyGate(ClassifyConfig(**kw), settle=SETTLE)


def _due_times(gate: ClassifyGate, image, t_end: float, fps: float = 15.0, top: str = "happy", mood: str = "happy") -> list[float]:
    out = []
    for k in range(int(round(t_end * fps))):
        t = k / fps
        if gate.due(t, image, [BOX]):
            out.append(t)
            gate.read(t, top, mood)
    return out


def test_the_look_is_small_and_ignores_exposure(face_images):
    face = dict(face_images)["happy"]
    a = look(face, BOX)
    assert a.shape == (SIDE, SIDE) and a.dtype == np.float32 and abs(float(a.mean())) < 1e-3
    brighter = np.clip(face.astype(np.int16) + 20, 0, 255).astype(np.uint8)
    assert float(np.mean(np.abs(look(brighter, BOX) - a))) < 1.0
    other = dict(face_images)["angry"]
    assert float(np.mean(np.abs(look(other, BOX) - a))) > 12.0
    assert look(face, (400, 400, 10, 10)).shape == (SIDE, SIDE)   # a box off the frame: a flat look
    x, y, w, h = 20, 10, 100, 90                                   # exactly the box's pixels
    want = cv2.resize(face[y:y + h, x:x + w], (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    assert np.allclose(look(face, (x, y, w, h)), want - want.mean(), atol=1e-4)


def test_off_when_the_steady_rate_is_no_lower(face_images):
    face = dict(face_images)["happy"]
    times = _due_times(_gate(steady_hz=10.0), face, 4.0)
    assert len(times) == 30 and np.diff(times).min() >= 0.1 - 1e-9   # every other frame: classify_hz alone


def test_a_settled_still_face_is_read_at_steady_hz_after_the_settle_time(face_images):
    face = dict(face_images)["happy"]
    times = _due_times(_gate(), face, 6.0)
    early = [t for t in times if t < SETTLE]
    late = [t for t in times if t >= SETTLE]
    assert len(early) == 14 and np.diff(early).max() < 0.14   # a new face: classify_hz while the mood forms
    assert np.diff(late).min() >= 1.0 - 1e-9 and len(late) == 4   # then once a second
    slow = _gate(steady_hz=0.5)
    late = [t for t in _due_times(slow, face, 6.0) if t >= SETTLE]
    assert late == pytest.approx([1.0 / 15 * 26 + 2.0, 1.0 / 15 * 26 + 4.0])    # every 2 s after the last early read
    assert slow.held == 90 - 16 - 16   # every frame past 1/classify_hz but not read (not the 16 reads, nor the frame after each)


def test_a_reading_that_disagrees_with_the_mood_keeps_the_full_rate(face_images):
    face = dict(face_images)["happy"]
    times = _due_times(_gate(), face, 6.0, top="angry", mood="happy")
    assert len(times) == 45                                     # every other frame throughout


def test_more_or_fewer_faces_is_a_change(face_images):
    face = dict(face_images)["happy"]
    gate = _gate()
    _due_times(gate, face, 4.0)
    assert not gate.due(4.0, face, [BOX])
    assert gate.due(4.2, face, [BOX, (0, 0, 60, 60)])
    gate.last = -1e9
    gate.busy_until = -1e9
    gate.forget()                      # no face on a frame: whoever comes next is new
    assert gate.due(4.4, face, [BOX]) and gate.changes == 3


def test_a_changed_look_is_read_at_once_only_with_change_set(face_images):
    faces = dict(face_images)
    for change, expect in ((0.0, False), (12.0, True)):
        gate = _gate(change=change)
        _due_times(gate, faces["happy"], 4.0)
        assert gate.due(4.0, faces["angry"], [BOX]) is expect
        assert gate.due(4.2, faces["angry"], [BOX]) is expect   # and keeps reading while it settles
    gate = _gate(change=12.0)
    _due_times(gate, faces["happy"], 4.0)
    assert not gate.due(4.0, faces["happy"], [BOX]) and gate.held >= 1   # the same face: no change


def test_force_reads_a_settled_face_and_a_restarted_clock_starts_over(face_images):
    face = dict(face_images)["happy"]
    gate = _gate()
    _due_times(gate, face, 4.0)
    assert not gate.due(4.0, face, [BOX])
    assert gate.due(4.0, face, [BOX], force=True)
    assert not gate.due(4.0, face, [BOX], force=True)          # the same frame time again: no second reading
    assert not gate.due(4.05, face, [BOX], force=True)         # classify_hz still caps it
    two = _gate(classify_hz=2.0, steady_hz=0.5)
    assert two.due(10.0, face, [BOX], force=True) and two.due(10.5, face, [BOX], force=True)   # exactly 1/classify_hz later
    assert gate.due(0.0, face, [BOX])                          # a new source's clock: a new face


@pytest.mark.parametrize("hz", [2.0, 5.0])
def test_classify_hz_caps_every_reading(face_images, hz):
    face = dict(face_images)["happy"]
    times = _due_times(_gate(classify_hz=hz, steady_hz=0.5), face, 5.0, top="angry")
    assert np.diff(times).min() >= 1.0 / hz - 1e-9
