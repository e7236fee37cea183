"""Mood smoother: time-based EMA, hysteresis, 'none' timeout, frame-rate independence."""
from __future__ import annotations

import numpy as np
import pytest

from edge.config import MoodConfig
from edge.contract import FER_LABELS
from edge.mood import MoodSmoother
from edge.types import NO_MOOD, Prediction


def pred(label: str, p: float = 0.8) -> Prediction:
    probs = np.full(len(FER_LABELS), (1 - p) / (len(FER_LABELS) - 1), np.float32)
    probs[FER_LABELS.index(label)] = p
    return Prediction(probs, FER_LABELS)


def mix(a: str, b: str, pa: float) -> Prediction:
    probs = np.zeros(len(FER_LABELS), np.float32)
    probs[FER_LABELS.index(a)] = pa
    probs[FER_LABELS.index(b)] = 1 - pa
    return Prediction(probs, FER_LABELS)


def run(script, fps: float, cfg: MoodConfig, end: float):
    """script(t) -> Prediction | None (None = no face). Returns [(t, label)] at each mood change."""
    sm = MoodSmoother(cfg, FER_LABELS)
    changes, last = [], NO_MOOD
    for k in range(int(end * fps) + 1):
        t = 100.0 + k / fps
        p = script(t - 100.0)
        m = sm.update(t, p, p is not None)
        if m.label != last:
            changes.append((t - 100.0, m.label))
            last = m.label
    return changes


def test_none_before_any_face_and_first_mood_at_once():
    sm = MoodSmoother(MoodConfig(), FER_LABELS)
    assert sm.mood.label == NO_MOOD
    assert sm.update(0.0, None, False).label == NO_MOOD
    assert sm.update(0.1, None, True).label == NO_MOOD  # face seen, not classified yet
    m = sm.update(0.2, pred("happy"), True)
    assert m.label == "happy" and m.confidence == pytest.approx(0.8)
    assert m.probs.sum() == pytest.approx(1.0) and m.labels == FER_LABELS and m.time == 0.2
    assert sm.mood is m


def test_sustained_new_emotion_changes_promptly():
    cfg = MoodConfig(half_life=0.8, margin=0.08, hold=1.0)
    changes = run(lambda t: pred("happy" if t < 3 else "sad"), 30, cfg, 8)
    assert [c[1] for c in changes] == ["happy", "sad"]
    # EMA needs ~0.93 s to put sad 0.08 ahead, then the 1 s hold: no freeze, no jump
    assert 3 + 1.7 < changes[1][0] < 3 + 2.3


def test_alternating_inputs_do_not_flicker():
    cfg = MoodConfig()
    changes = run(lambda t: pred("happy" if int(t * 30) % 2 else "sad"), 30, cfg, 20)
    assert len(changes) == 1
    rng = np.random.default_rng(0)
    noisy = lambda t: mix("happy", "neutral", float(rng.uniform(0.3, 0.75)))  # happy leads on average, noisily
    changes = run(noisy, 30, cfg, 20)
    assert len(changes) <= 2 and changes[-1][1] == "happy"


def test_hold_needs_a_continuous_lead():
    cfg = MoodConfig(half_life=0.0, margin=0.1, hold=1.0)  # no EMA: the hold alone is tested
    sm = MoodSmoother(cfg, FER_LABELS)
    n = 0  # ticks of 0.1 s, kept integral so the hold boundary is exact

    def step(pa: float) -> str:
        nonlocal n
        n += 1
        return sm.update(n / 10, mix("happy", "sad", pa), True).label

    assert step(0.9) == "happy"
    for _ in range(5):  # sad leads 0.8 s, then drops back; repeated: never 1 s in a row
        assert all(step(0.2) == "happy" for _ in range(8))
        assert step(0.6) == "happy"
    assert all(step(0.48) == "happy" for _ in range(20))  # a lead below the margin never wins
    labels = [step(0.2) for _ in range(12)]
    assert labels == ["happy"] * 10 + ["sad"] * 2  # exactly `hold` after the lead began


def flat_after(t: float, first: str = "angry", until: float = 3.0) -> Prediction:
    """`first` clearly, then flat readings whose small leader alternates each second (surprise, happy):
    what a calibration that took the person's look out gives for a face talking."""
    if t < until:
        return pred(first, 0.9)
    probs = np.full(len(FER_LABELS), 0.135, np.float32)
    probs[FER_LABELS.index("surprise" if int(t) % 2 else "happy")] = 0.19
    return Prediction(probs / probs.sum(), FER_LABELS)


def test_an_emotion_the_readings_stopped_favouring_fades_to_neutral_after_stale_seconds():
    """Flat readings never lead the old mood by the margin; after `stale` s of not leading it fades to
    neutral, not to the emotion that leads by a little. With stale = 0 it stays (the margin alone)."""
    changes = run(flat_after, 15, MoodConfig(), 20)
    assert changes[0] == (0.0, "angry") and len(changes) == 2, changes
    # the smoothed angry (0.9) takes about 3.5 s to sink below the leader, then `stale` (3 s) more
    assert 3.0 + 3.0 <= changes[1][0] <= 3.0 + 3.5 + 3.0 + 1.0 and changes[1][1] == "neutral"
    assert run(flat_after, 15, MoodConfig(stale=0.0), 20) == [(0.0, "angry")]


def test_without_a_neutral_label_a_stale_mood_gives_way_to_the_leader():
    labels = ("calm", "busy")
    sm = MoodSmoother(MoodConfig(half_life=0.0, margin=0.1, hold=1.0, stale=3.0), labels)
    seen = [sm.update(k / 10, Prediction(np.float32([0.9, 0.1] if k == 0 else [0.47, 0.53]), labels), True).label
            for k in range(32)]
    assert seen == ["calm"] * 31 + ["busy"]


def test_the_stale_clock_restarts_whenever_the_mood_leads_again():
    cfg = MoodConfig(half_life=0.0, margin=0.1, hold=1.0, stale=3.0)
    sm = MoodSmoother(cfg, FER_LABELS)
    n = 0

    def step(pa: float) -> str:
        nonlocal n
        n += 1
        return sm.update(n / 10, mix("happy", "neutral", pa), True).label

    assert step(0.9) == "happy"
    for _ in range(5):  # neutral leads by less than the margin for 2.5 s, then happy leads once
        assert all(step(0.47) == "happy" for _ in range(25))
        assert step(0.6) == "happy"
    labels = [step(0.47) for _ in range(32)]
    assert labels == ["happy"] * 30 + ["neutral"] * 2  # exactly `stale` after happy stopped leading


def test_no_face_timeout_gives_none_then_new_face_adopts_at_once():
    cfg = MoodConfig(no_face_timeout=5.0)
    sm = MoodSmoother(cfg, FER_LABELS)
    sm.update(0.0, pred("angry"), True)
    assert sm.update(2.0, None, True).label == "angry"  # face still there, no new reading
    assert sm.update(6.9, None, False).label == "angry"  # 4.9 s without a face
    m = sm.update(7.0, None, False)
    assert m.label == NO_MOOD and m.probs is None and m.confidence == 0.0
    assert sm.update(30.0, pred("surprise"), True).label == "surprise"  # history was dropped


def test_pred_none_with_face_keeps_mood_alive():
    sm = MoodSmoother(MoodConfig(no_face_timeout=1.0), FER_LABELS)
    sm.update(0.0, pred("fear"), True)
    for k in range(1, 50):
        assert sm.update(k * 0.1, None, True).label == "fear"


@pytest.mark.parametrize("slow_fps, fast_fps", [(10, 60), (5, 30)])
def test_frame_rate_independent(slow_fps, fast_fps):
    def script(t):
        if t < 3:
            return pred("happy")
        if t < 7:
            return pred("sad", 0.7)
        if t < 7.5:
            return pred("angry")  # too short to win
        if t < 12:
            return mix("neutral", "happy", 0.65)
        if t < 13:
            return None
        if t < 20:
            return pred("surprise")
        return None

    cfg = MoodConfig(half_life=0.8, margin=0.08, hold=1.0, no_face_timeout=3.0)
    slow = run(script, slow_fps, cfg, 30)
    fast = run(script, fast_fps, cfg, 30)
    assert [c[1] for c in slow] == [c[1] for c in fast] == ["happy", "sad", "neutral", "surprise", NO_MOOD]
    for (ts, _), (tf, _) in zip(slow, fast):
        assert abs(ts - tf) <= 1.0 / slow_fps + 1e-6


def test_ema_half_life_is_in_seconds():
    sm = MoodSmoother(MoodConfig(half_life=1.0, hold=100), FER_LABELS)
    sm.update(0.0, mix("happy", "sad", 1.0), True)
    m = sm.update(1.0, mix("happy", "sad", 0.0), True)  # one half-life later
    assert m.probs[FER_LABELS.index("happy")] == pytest.approx(0.5, abs=1e-6)
    m = sm.update(3.0, mix("happy", "sad", 0.0), True)  # two more
    assert m.probs[FER_LABELS.index("happy")] == pytest.approx(0.125, abs=1e-6)


def test_wrong_labels_rejected():
    sm = MoodSmoother(MoodConfig(), FER_LABELS)
    with pytest.raises(ValueError, match="labels"):
        sm.update(0.0, Prediction(np.array([0.5, 0.5], np.float32), ("a", "b")), True)


def test_half_life_zero_follows_each_reading_exactly():
    sm = MoodSmoother(MoodConfig(half_life=0.0, hold=0.0), FER_LABELS)
    sm.update(0.0, pred("happy"), True)
    m = sm.update(0.1, mix("sad", "neutral", 0.6), True)
    np.testing.assert_array_equal(m.probs, mix("sad", "neutral", 0.6).probs)
    assert m.label == "sad" and m.confidence == pytest.approx(0.6)


def test_the_first_label_is_held_like_any_other():
    """angry is index 0: the 'no mood yet' test must not mistake it for none (a brief challenger keeps it)."""
    cfg = MoodConfig(half_life=0.0, margin=0.1, hold=1.0)
    changes = run(lambda t: pred("happy") if 2.0 <= t < 2.5 else pred("angry"), 30, cfg, 5)
    assert [c[1] for c in changes] == ["angry"]


def test_no_mood_has_no_confidence_or_probabilities():
    sm = MoodSmoother(MoodConfig(no_face_timeout=1.0), FER_LABELS)
    for m in (sm.mood, sm.update(0.0, None, True)):
        assert (m.label, m.confidence, m.probs) == (NO_MOOD, 0.0, None)
    sm.update(0.5, pred("happy"), True)
    m = sm.update(2.0, None, False)
    assert (m.label, m.confidence, m.probs, m.time) == (NO_MOOD, 0.0, None, 2.0)
