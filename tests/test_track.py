"""The tracking detector on real clips with real Haar: boxes agree with full-frame scans, newcomers are found, and it is cheaper."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge.pipeline import build_detector
from edge.config import DetectConfig, SourceConfig, load_config
from edge.detect import FaceDetector, SkippingDetector
from edge.errors import ConfigError, FrameError
from edge.sources import open_source
from edge.track import TrackingDetector
from edge.types import Frame

from .conftest import FIXTURES, iou, replay_labels

MOVING = FIXTURES / "moving.mp4"       # made by model_export/make_moving.py
META = json.loads(MOVING.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def moving_frames() -> list[Frame]:
    with open_source(SourceConfig(source=str(MOVING))) as src:
        return list(src)


@pytest.fixture(scope="module")
def full_boxes(moving_frames) -> list[list]:
    """The reference: a full-frame scan on every frame."""
    det = FaceDetector(DetectConfig(detect_hz=0))
    return [det.detect(f.image) for f in moving_frames]


def _track(frames: list[Frame], **kw) -> tuple[TrackingDetector, list[list]]:
    kw.setdefault("detect_hz", 0)   # every frame: these tests follow the tracker frame by frame
    cfg = DetectConfig(**kw)
    trk = TrackingDetector(FaceDetector(cfg), cfg)
    return trk, [trk.boxes(f)[0] for f in frames]


def test_moving_clip_fixture_is_what_the_tests_expect(moving_frames):
    assert len(moving_frames) == len(META["frames"]) == 120
    assert moving_frames[0].image.shape == (480, 640)
    with_b = [k for k, fr in enumerate(META["frames"]) if "b" in fr]
    assert with_b and 0 < with_b[0] and with_b[-1] < len(moving_frames) - 1  # B enters and leaves


def test_tracked_boxes_match_full_frame_boxes(moving_frames, full_boxes):
    trk, got = _track(moving_frames)
    ious, missed, extra = [], 0, 0
    for ref, mine in zip(full_boxes, got):
        for b in ref:
            best = max((iou(b, m) for m in mine), default=0.0)
            ious.append(best)
            missed += best < 0.5
        extra += sum(max((iou(m, b) for b in ref), default=0.0) < 0.5 for m in mine)
    n = sum(map(len, full_boxes))
    assert n > 150
    # Only the frames between a newcomer's first full-frame sighting and the next periodic scan may miss.
    assert missed <= 0.1 * n, (missed, n)
    assert extra <= 3, extra
    found = [v for v in ious if v >= 0.5]
    assert np.mean(found) >= 0.85 and np.percentile(found, 5) >= 0.7, (np.mean(found), np.percentile(found, 5))
    # ... and it really tracked: region searches on most frames, few full scans
    assert trk.region_searches > 100
    assert trk.full_scans <= 0.15 * len(moving_frames), trk.full_scans


def _first(frames_boxes: list[list], truth_key: str, start: int) -> int:
    """Index of the first frame from `start` whose boxes include face `truth_key` of the script."""
    for k in range(start, len(frames_boxes)):
        tb = META["frames"][k].get(truth_key)
        if tb and any(iou(b, tb) > 0.4 for b in frames_boxes[k]):
            return k
    raise AssertionError(f"face {truth_key} never found")


@pytest.mark.parametrize("period", [1.0, 0.5])
def test_newcomer_is_found_within_the_scan_period(moving_frames, full_boxes, period):
    fps = META["fps"]
    enter = int(META["b_in"] * fps)
    seen_full = _first(full_boxes, "b", enter)       # full-frame scans see B from here
    trk, got = _track(moving_frames, scan_period=period)
    seen_track = _first(got, "b", enter)
    assert seen_track - seen_full <= period * fps + 1, (seen_full, seen_track)
    # once found, B stays tracked while it is fully in view
    leave = int(META["b_out"] * fps)
    assert all(any(iou(b, META["frames"][k]["b"]) > 0.4 for b in got[k]) for k in range(seen_track, leave))


def test_a_face_that_leaves_is_dropped(moving_frames):
    _, got = _track(moving_frames)
    gone = 1 + max(k for k, fr in enumerate(META["frames"]) if "b" in fr)
    assert all(len(b) == 1 for b in got[gone:]), [len(b) for b in got[gone:]]


def test_region_search_is_cheaper_than_full_scans(moving_frames):
    """Process CPU time, one call at a time, medians: the gap (~8x here) is far wider than the noise."""
    import time

    cfg = DetectConfig(detect_hz=0)
    trk = TrackingDetector(FaceDetector(cfg), cfg)
    for f in moving_frames[:30]:
        trk.boxes(f)
    # one face, tracked: a region search per frame, a full scan once a second
    full_t, region_t = [], []
    det = trk.detector
    for f in moving_frames[30:40]:
        t0 = time.process_time()
        det.detect(f.image)
        full_t.append(time.process_time() - t0)
        n = trk.full_scans
        t0 = time.process_time()
        trk.boxes(f)
        if trk.full_scans == n:
            region_t.append(time.process_time() - t0)
    assert region_t, "no region search ran"
    assert np.median(region_t) < 0.5 * np.median(full_t), (np.median(region_t), np.median(full_t))


def test_newcomer_scan_paints_out_tracked_faces(moving_frames):
    """The periodic scan hands Haar the frame with each tracked face painted flat (a face costs the
    cascade ~6x more than background; tests/benchmarks measures that), and keeps the track (no duplicate)."""
    cfg = DetectConfig(detect_hz=0)
    trk = TrackingDetector(FaceDetector(cfg), cfg)
    trk.boxes(moving_frames[0])
    seen = []
    real = trk.detector.detect
    trk.detector.detect = lambda img: (seen.append(img.copy()), real(img))[1]
    for k, f in enumerate(moving_frames[1:11], 1):
        trk.boxes(f)                       # region search
        (tr,) = trk.tracks
        seen.clear()
        trk._newcomers(f.image, f.timestamp)
        (img,) = seen
        x0, y0, x1, y1 = int(tr.x), int(tr.y), int(np.ceil(tr.x + tr.w)), int(np.ceil(tr.y + tr.h))
        assert img[y0:y1, x0:x1].min() == img[y0:y1, x0:x1].max(), k  # the face: one grey
        outside = np.ones(img.shape, bool)
        outside[y0:y1, x0:x1] = False
        np.testing.assert_array_equal(img[outside], f.image[outside])  # the rest: untouched
        assert len(trk.tracks) == 1, k


def test_a_false_track_is_dropped_on_the_next_frame(noface_image):
    from edge.track import _Track

    cfg = DetectConfig(detect_hz=0)
    trk = TrackingDetector(FaceDetector(cfg), cfg)
    assert trk.boxes(Frame(noface_image, 0.0, 0))[0] == []
    trk.tracks = [_Track(100.0, 60.0, 80.0, 80.0)]     # as if a scan had fired on the background
    boxes, ran = trk.boxes(Frame(noface_image, 0.05, 1))
    assert ran and boxes == [] and trk.lost == 1 and trk.full_scans == 2


def test_a_face_that_jumps_is_found_again_on_the_same_frame(two_faces_image):
    """Further than the region reaches in one frame: the region search fails, the full scan finds it."""
    cfg = DetectConfig(max_faces=1, detect_hz=0)
    trk = TrackingDetector(FaceDetector(cfg), cfg)
    (box,) = trk.boxes(Frame(two_faces_image, 0.0, 0))[0]
    jumped = np.roll(two_faces_image, 300, axis=1)        # the large face moves 300 px right
    (moved,), ran = trk.boxes(Frame(jumped, 0.05, 1))
    assert ran and trk.lost == 1 and trk.full_scans == 2
    assert iou(moved, (box[0] + 300, box[1], box[2], box[3])) > 0.7


def test_idle_room_scans_every_idle_period(noface_image):
    cfg = DetectConfig(idle_period=0.5, detect_hz=0)
    trk = TrackingDetector(FaceDetector(cfg), cfg)
    ran = [trk.boxes(Frame(noface_image, k / 10, k))[1] for k in range(20)]
    assert ran == [k % 5 == 0 for k in range(20)]
    assert trk.full_scans == trk.detector.calls == 4 and trk.region_searches == 0


def test_clock_going_back_rescans(noface_image):
    trk = TrackingDetector(FaceDetector(DetectConfig(idle_period=5.0, detect_hz=0)), DetectConfig(idle_period=5.0, detect_hz=0))
    assert trk.boxes(Frame(noface_image, 100.0, 0))[1]
    assert not trk.boxes(Frame(noface_image, 100.1, 1))[1]
    assert trk.boxes(Frame(noface_image, 0.0, 0))[1]     # a new source starts its clock at 0


def test_bad_frame_forgets_the_tracks_and_rescans(face_images):
    _, img = face_images[0]
    cfg = DetectConfig(detect_hz=0)
    trk = TrackingDetector(FaceDetector(cfg), cfg)
    assert len(trk.boxes(Frame(img, 0.0, 0))[0]) == 1
    trk.boxes(Frame(img, 0.1, 1))
    assert trk.full_scans == 1 and trk.region_searches == 1
    with pytest.raises(FrameError):
        trk.boxes(Frame(np.zeros((0, 0), np.uint8), 0.2, 2))
    assert trk.last == []
    boxes, ran = trk.boxes(Frame(img, 0.3, 3))
    assert ran and len(boxes) == 1 and trk.full_scans == 2


def test_two_faces_largest_first_and_max_faces(two_faces_image):
    cfg = DetectConfig(detect_hz=0)
    trk = TrackingDetector(FaceDetector(cfg), cfg)
    for k in range(4):
        boxes, _ = trk.boxes(Frame(two_faces_image, k / 15, k))
        assert len(boxes) == 2
        assert iou(boxes[0], (40, 120, 220, 220)) > 0.5 and iou(boxes[1], (420, 60, 140, 140)) > 0.5
    assert trk.full_scans == 1 and trk.region_searches == 6
    one = DetectConfig(max_faces=1, detect_hz=0)
    trk = TrackingDetector(FaceDetector(one), one)
    assert len(trk.boxes(Frame(two_faces_image, 0, 0))[0]) == 1


def test_smoothing_damps_a_jump():
    from edge.track import _Track

    tr = _Track(0.0, 0.0, 100.0, 100.0)
    tr.follow((10.0, 0.0, 100.0, 100.0), 0.3)
    assert tr.x == pytest.approx(7.0)
    tr.follow((10.0, 0.0, 100.0, 100.0), 0.0)
    assert tr.x == 10.0


def test_config_selects_the_detector_stage():
    assert isinstance(build_detector(load_config(None, {})), TrackingDetector)     # the default
    assert isinstance(build_detector(load_config(None, {"detect": {"mode": "skip"}})), SkippingDetector)
    with pytest.raises(ConfigError, match="detect.mode: must be one of track, skip"):
        load_config(None, {"detect": {"mode": "fast"}})
    with pytest.raises(ConfigError, match="detect.scan_period"):
        load_config(None, {"detect": {"scan_period": -1.0}})


def _moods(mode: str, **det) -> list[tuple[float, str]]:
    """The mood changes (time, label) over the bundled sample."""
    cfg = load_config(None, {"source": {"source": "sample"}, "led": {"backend": "none"}, "detect": {"mode": mode, **det}})
    seen = replay_labels(cfg)
    return [(t, lab) for k, (t, lab) in enumerate(seen) if k == 0 or seen[k - 1][1] != lab]


def test_sample_mood_timeline_is_unchanged_by_tracking():
    """Same moods in the same order as full scans every third frame, each change within half a second."""
    before = _moods("skip", detect_every=3)
    after = _moods("track")
    assert [lab for _, lab in after] == [lab for _, lab in before], (before, after)
    assert max(abs(a[0] - b[0]) for a, b in zip(after, before)) <= 0.5, (before, after)


@pytest.mark.parametrize("a,b,want", [
    ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
    ((0, 0, 10, 10), (5, 0, 10, 10), 50 / 150),    # half over in x
    ((0, 0, 10, 10), (0, 5, 10, 10), 50 / 150),    # half over in y
    ((0, 0, 10, 10), (5, 5, 10, 10), 25 / 175),
    ((0, 0, 10, 20), (0, 0, 10, 10), 100 / 200),   # one inside the other, not square
    ((0, 0, 10, 10), (20, 0, 10, 10), 0.0),        # apart
    ((0, 0, 10, 10), (10, 0, 10, 10), 0.0),        # touching edges
    ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),             # no area
])
def test_overlap_that_decides_whether_a_box_continues_a_track(a, b, want):
    """Intersection over union, in either order (MATCH_IOU compares against it)."""
    from edge.track import _iou

    assert _iou(a, b) == pytest.approx(want) and _iou(b, a) == pytest.approx(want)


def test_detect_hz_caps_haar_runs_and_the_frames_between_keep_the_boxes(moving_frames):
    """moving.mp4 at 15 fps with detect_hz 5: Haar (full scans and region searches) on every third
    frame at most; in between the last boxes come back with ran False. Without a cap it runs on every frame."""
    trk, _ = _track(moving_frames[:1], detect_hz=5.0)
    trk.reset()
    runs, out = [], []
    for f in moving_frames:
        before = trk.full_scans + trk.region_searches
        boxes, ran = trk.boxes(f)
        assert ran == (trk.full_scans + trk.region_searches > before)
        if ran:
            runs.append(f.timestamp)
        elif runs:
            assert boxes == out[-1]          # the last boxes stand
        out.append(boxes)
    assert np.diff(runs).min() >= 0.2 - 0.006 and len(runs) == 40
    free, _ = _track(moving_frames)
    assert free.full_scans + free.region_searches >= len(moving_frames)
