"""Haar face detection on real face images; frame skipping counted on real detector calls."""
from __future__ import annotations

import numpy as np
import pytest

from edge.config import DetectConfig
from edge.detect import FaceDetector, SkippingDetector, StillDetector, find_cascade
from edge.errors import DetectorError, FrameError
from edge.types import Frame

from .conftest import iou


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(DetectConfig())


def test_find_cascade_default_exists():
    p = find_cascade()
    assert p.name == "haarcascade_frontalface_default.xml" and p.is_file()


def test_find_cascade_missing_path_is_clear(tmp_path):
    with pytest.raises(DetectorError, match="nope.xml: Haar cascade file not found"):
        find_cascade(str(tmp_path / "nope.xml"))


def test_find_cascade_searches_system_dirs(monkeypatch, tmp_path):
    import edge.detect as d

    monkeypatch.setattr(d.cv2, "data", None, raising=False)
    monkeypatch.setattr(d, "SYSTEM_DIRS", (str(tmp_path / "a"), str(tmp_path / "b")))
    with pytest.raises(DetectorError, match="opencv-data"):
        find_cascade()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / d.CASCADE_NAME).write_text("x")
    assert find_cascade() == tmp_path / "b" / d.CASCADE_NAME


def test_corrupt_cascade_is_refused(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<opencv_storage>nonsense</opencv_storage>")
    with pytest.raises(DetectorError, match="bad.xml: cannot load Haar cascade"):
        FaceDetector(DetectConfig(cascade=str(bad)))


def test_finds_the_face_in_each_real_image(detector, face_images):
    assert len(face_images) >= 4
    for label, img in face_images:
        boxes = detector.detect(img)
        assert len(boxes) == 1, label
        # the face was pasted at (80, 40) with side 160 by make_fixtures.py
        assert iou(boxes[0], (80, 40, 160, 160)) > 0.5, (label, boxes)


def test_no_face_in_background(detector, noface_image):
    assert detector.detect(noface_image) == []


def test_downscaled_two_faces_largest_first_in_frame_pixels(detector, two_faces_image):
    assert two_faces_image.shape == (480, 640)
    boxes = detector.detect(two_faces_image)
    assert len(boxes) == 2
    assert boxes[0][2] * boxes[0][3] > boxes[1][2] * boxes[1][3]
    # pasted at (40, 120) side 220 and (420, 60) side 140 in the 640x480 frame
    assert iou(boxes[0], (40, 120, 220, 220)) > 0.5
    assert iou(boxes[1], (420, 60, 140, 140)) > 0.5


def test_max_faces_caps_and_keeps_largest(two_faces_image):
    det = FaceDetector(DetectConfig(max_faces=1))
    (box,) = det.detect(two_faces_image)
    assert iou(box, (40, 120, 220, 220)) > 0.5


def test_min_size_filters_small_faces(two_faces_image):
    assert len(FaceDetector(DetectConfig(min_size=100)).detect(two_faces_image)) == 2
    boxes = FaceDetector(DetectConfig(min_size=200)).detect(two_faces_image)
    assert len(boxes) == 1 and boxes[0][2] >= 200


def test_bgr_frame_is_accepted(detector, face_images):
    import cv2

    _, img = face_images[0]
    assert len(detector.detect(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))) == 1


@pytest.mark.parametrize(
    "frame, match",
    [
        (None, "None"),
        (np.zeros((0, 10), np.uint8), "empty"),
        (np.zeros((10, 0, 3), np.uint8), "empty"),
        (np.zeros((240, 320), np.float32), "dtype float32"),
        (np.zeros((240, 320), np.uint16), "dtype uint16"),
        (np.zeros((240, 320, 2), np.uint8), "shape"),
        (np.zeros((2, 240, 320, 3), np.uint8), "shape"),
        (np.zeros(5, np.uint8), "shape"),
        ([[1, 2], [3, 4]], "not a numpy array"),
        (np.zeros((9000, 2), np.uint8), "too large"),
    ],
)
def test_bad_frames_raise_frame_error(detector, frame, match):
    with pytest.raises(FrameError, match=match):
        detector.detect(frame)


def test_uniform_frames_give_no_faces(detector):
    for v in (0, 255):
        assert detector.detect(np.full((240, 320), v, np.uint8)) == []


def test_skipping_detector_really_skips(detector, face_images):
    _, img = face_images[0]
    skip = SkippingDetector(detector, every=3)
    before = detector.calls
    ran = []
    for i in range(10):
        boxes, r = skip.boxes(Frame(img, i / 10, i))
        ran.append(r)
        assert len(boxes) == 1  # reused boxes in between
    assert ran == [True, False, False, True, False, False, True, False, False, True]
    assert detector.calls - before == 4


def test_skipping_detector_every_1_runs_always(detector, noface_image):
    skip = SkippingDetector(detector, every=1)
    before = detector.calls
    for i in range(5):
        assert skip.boxes(Frame(noface_image, i, i)) == ([], True)
    assert detector.calls - before == 5


def test_bad_frame_makes_next_frame_detect(detector, face_images):
    _, img = face_images[0]
    skip = SkippingDetector(detector, every=5)
    skip.boxes(Frame(img, 0, 0))
    skip.boxes(Frame(img, 0.1, 1))
    with pytest.raises(FrameError):
        skip.boxes(Frame(np.zeros((0, 0), np.uint8), 0.2, 2))
    boxes, ran = skip.boxes(Frame(img, 0.3, 3))
    assert ran and len(boxes) == 1


def test_faces_follow_the_clip(detector):
    """Real clip through the real source: faces in frames 0-9 and 20-29, none in 10-19."""
    from edge.config import SourceConfig
    from edge.sources import open_source

    from .conftest import CLIP

    with open_source(SourceConfig(source=str(CLIP))) as src:
        found = [len(detector.detect(f.image)) for f in src]
    assert found == [1] * 10 + [0] * 10 + [1] * 10


@pytest.mark.data
def test_haar_finds_most_upscaled_fer_faces(fer_npz, detector):
    """Sanity on the data itself: most PrivateTest faces, upscaled like the fixtures, are found."""
    import cv2

    idx = np.flatnonzero(fer_npz["usage"] == 2)[:60]
    images = fer_npz["images"]
    canvas = np.full((240, 320), 128, np.uint8)
    hits = 0
    for i in idx:
        img = canvas.copy()
        img[40:200, 80:240] = cv2.resize(images[i], (160, 160), interpolation=cv2.INTER_CUBIC)
        hits += len(detector.detect(img)) >= 1
    assert hits >= 0.6 * len(idx), f"{hits}/{len(idx)}"


def test_still_detector_takes_a_second_look_only_where_the_loops_finds_nothing(detector, distant_face_image, face_images,
                                                                               noface_image):
    still = StillDetector(DetectConfig())
    assert detector.detect(distant_face_image) == []
    boxes = still.detect(distant_face_image)
    assert len(boxes) == 1 and iou(boxes[0], (719, 509, 40, 40)) > 0.5 and still.second_looks == 1
    for _, gray in face_images:  # found the first time: the loop's boxes exactly, no second look
        assert still.detect(gray) == detector.detect(gray)
    assert still.second_looks == 1
    assert still.detect(noface_image) == []
    assert still.second_looks == 2


def test_still_detectors_second_look_is_never_stricter_than_the_config():
    loose = DetectConfig(scale_factor=1.02, min_neighbors=1, min_size=10, detect_width=2000)
    assert StillDetector(loose).second.cfg == loose
    strict = StillDetector(DetectConfig(min_neighbors=9, min_size=200)).second.cfg
    assert (strict.scale_factor, strict.min_neighbors, strict.min_size, strict.detect_width) == (1.05, 3, 24, 1280)
