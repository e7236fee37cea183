"""Frame sources: real OpenCV on a real clip and image folder; picamera2 against a stand-in camera."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edge import sources
from edge.config import SourceConfig
from edge.errors import CameraNotFound, SourceError
from edge.sources import ImageFolderSource, Picamera2Source, VideoFileSource, open_source

from .conftest import CLIP, FOLDER


class FakePicamera2:
    """Stand-in with the methods Picamera2Source calls; records them. Class-level knobs set per test."""

    cameras = [{"Model": "imx708", "Num": 0}]
    fail_on: str = ""
    stride = 384  # lores rows are padded to the stride, as on the real ISP
    instances: list["FakePicamera2"] = []

    @classmethod
    def global_camera_info(cls):
        return list(cls.cameras)

    def __init__(self):
        self.calls: list[tuple] = []
        self.n = 0
        FakePicamera2.instances.append(self)

    def _maybe_fail(self, name):
        self.calls.append((name,))
        if self.fail_on == name:
            raise RuntimeError(f"{name} failed")

    def create_video_configuration(self, **kw):
        self.calls.append(("create_video_configuration", kw))
        return {"cfg": kw}

    def configure(self, config):
        self.configured = config
        self._maybe_fail("configure")

    def start(self):
        self._maybe_fail("start")

    def capture_arrays(self, names):
        self._maybe_fail("capture_arrays")
        lw, lh = self.configured["cfg"]["lores"]["size"]
        arr = np.full((lh * 3 // 2, self.stride), 7, np.uint8)  # U/V rows and stride padding = 7
        arr[:lh, :lw] = self.n  # Y plane
        self.n += 1
        return [arr], {"SensorTimestamp": 5_000_000_000 + self.n * 66_666_667}

    def stop(self):
        self._maybe_fail("stop")

    def close(self):
        self._maybe_fail("close")


@pytest.fixture
def fake_cam():
    FakePicamera2.cameras = [{"Model": "imx708", "Num": 0}]
    FakePicamera2.fail_on = ""
    FakePicamera2.instances = []
    yield FakePicamera2
    FakePicamera2.fail_on = ""


def test_picamera2_configures_lores_yuv_and_framerate(fake_cam):
    cfg = SourceConfig(source="picamera2", width=1280, height=720, lores_width=320, lores_height=240, fps=12)
    with open_source(cfg, camera_factory=fake_cam) as src:
        assert isinstance(src, Picamera2Source)
        cam = fake_cam.instances[0]
        kw = cam.calls[0][1]
        assert kw == {"main": {"size": (1280, 720)}, "lores": {"size": (320, 240), "format": "YUV420"}, "controls": {"FrameRate": 12.0}}
        assert [c[0] for c in cam.calls] == ["create_video_configuration", "configure", "start"]
        f0, f1 = src.read(), src.read()
    assert f0.image.shape == (240, 320) and f0.image.dtype == np.uint8
    assert (f0.image == 0).all() and (f1.image == 1).all()  # Y plane only: no U/V rows, no padding
    assert np.shares_memory(f0.image, f0.image.base)  # a slice, no colour conversion or copy
    assert (f0.index, f1.index) == (0, 1)
    assert f1.timestamp - f0.timestamp == pytest.approx(0.0667, abs=1e-3)
    assert [c[0] for c in cam.calls][-2:] == ["stop", "close"]


def test_picamera2_close_twice_is_safe(fake_cam):
    src = Picamera2Source(SourceConfig(), camera_factory=fake_cam)
    src.close()
    src.close()
    names = [c[0] for c in fake_cam.instances[0].calls]
    assert names.count("stop") == 1 and names.count("close") == 1
    with pytest.raises(SourceError, match="after close"):
        src.read()


@pytest.mark.parametrize("step", ["configure", "start"])
def test_picamera2_closed_when_start_fails(fake_cam, step):
    fake_cam.fail_on = step
    with pytest.raises(SourceError, match=f"picamera2: cannot start the camera .*{step} failed"):
        Picamera2Source(SourceConfig(), camera_factory=fake_cam)
    names = [c[0] for c in fake_cam.instances[0].calls]
    assert names[-2:] == ["stop", "close"]


def test_picamera2_close_still_closes_when_stop_fails(fake_cam):
    src = Picamera2Source(SourceConfig(), camera_factory=fake_cam)
    fake_cam.fail_on = "stop"
    src.close()
    assert [c[0] for c in fake_cam.instances[0].calls][-1] == "close"


def test_picamera2_capture_failure_is_source_error(fake_cam):
    with Picamera2Source(SourceConfig(), camera_factory=fake_cam) as src:
        fake_cam.fail_on = "capture_arrays"
        with pytest.raises(SourceError, match="picamera2: capture failed"):
            src.read()
    assert [c[0] for c in fake_cam.instances[0].calls][-2:] == ["stop", "close"]


def test_no_pi_camera_is_one_clear_error(fake_cam):
    fake_cam.cameras = []
    with pytest.raises(CameraNotFound, match="^no camera found: "):
        open_source(SourceConfig(source="picamera2"), camera_factory=fake_cam)
    assert fake_cam.instances == []  # never constructed, so no IndexError inside picamera2


def test_auto_prefers_pi_camera_else_sample(fake_cam, monkeypatch, tmp_path):
    with open_source(SourceConfig(source="auto"), camera_factory=fake_cam) as src:
        assert isinstance(src, Picamera2Source)
    fake_cam.cameras = []
    monkeypatch.setattr(sources, "SAMPLE_CLIP", CLIP)
    with open_source(SourceConfig(source="auto"), camera_factory=fake_cam) as src:
        assert isinstance(src, VideoFileSource) and src.path == CLIP
    monkeypatch.setattr(sources, "SAMPLE_CLIP", tmp_path / "sample.mp4")
    with pytest.raises(SourceError, match="sample.mp4: the bundled sample clip is missing"):
        open_source(SourceConfig(source="sample"))


def test_video_file_frames_and_clip_time():
    with open_source(SourceConfig(source=str(CLIP), fps=99)) as src:
        assert isinstance(src, VideoFileSource)
        assert src.fps == pytest.approx(10.0)  # from the clip, not cfg.fps
        frames = list(src)
        assert src.read() is None
    assert len(frames) == 30
    assert all(f.image.dtype == np.uint8 and f.image.shape == (240, 320) for f in frames)
    assert [f.index for f in frames] == list(range(30))
    assert frames[15].timestamp == pytest.approx(1.5)


def test_video_file_realtime_sleeps_to_clip_pace():
    slept: list[float] = []
    src = VideoFileSource(CLIP, SourceConfig(realtime=True), sleep=slept.append)
    for _ in range(5):
        src.read()
    src.close()
    src.close()
    # the stand-in sleep returns at once, so each wait is the full clip time since frame 0
    assert slept == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.02)


def test_video_file_realtime_real_clock():
    src = VideoFileSource(CLIP, SourceConfig(realtime=True))
    t0 = time.monotonic()
    for _ in range(4):
        src.read()
    assert time.monotonic() - t0 >= 0.29
    src.close()


def test_fast_replay_does_not_sleep():
    slept: list[float] = []
    src = VideoFileSource(CLIP, SourceConfig(realtime=False), sleep=slept.append)
    assert len(list(src)) == 30 and slept == []


def test_unreadable_clip_names_the_path(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(SourceError, match="broken.mp4"):
        open_source(SourceConfig(source=str(bad)))


def test_missing_path_is_clear(tmp_path):
    with pytest.raises(SourceError, match="nothere.mp4: no such file or folder"):
        open_source(SourceConfig(source=str(tmp_path / "nothere.mp4")))


def test_missing_video_device_is_camera_not_found():
    with pytest.raises(CameraNotFound, match="/dev/video97 does not exist"):
        open_source(SourceConfig(source="/dev/video97"))


def test_camera_index_that_cannot_open():
    with pytest.raises(CameraNotFound, match="cannot open 97"):
        open_source(SourceConfig(source="97"))


def test_image_folder_sorted_skips_unreadable(caplog):
    with open_source(SourceConfig(source=str(FOLDER), fps=4)) as src:
        assert isinstance(src, ImageFolderSource)
        frames = list(src)
        assert src.skipped == 1
    assert len(frames) == 3
    assert [f.timestamp for f in frames] == [0.0, 0.25, 0.5]
    assert all(f.image.ndim == 2 and f.image.dtype == np.uint8 for f in frames)
    want = cv2.imread(str(FOLDER / "img02.jpg"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(frames[2].image, want)
    assert "img01b_broken.png: unreadable image skipped" in caplog.text


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(SourceError, match="folder has no images"):
        open_source(SourceConfig(source=str(tmp_path)))


def test_folder_of_only_broken_images_ends_cleanly(tmp_path):
    (tmp_path / "a.png").write_bytes(b"nope")
    with ImageFolderSource(tmp_path, SourceConfig()) as src:
        assert src.read() is None and src.skipped == 1
