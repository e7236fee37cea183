"""Frame sources: real OpenCV on a real clip and image folder; picamera2 against the shipped stand-in camera."""
from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import pytest

from edge import sources
from edge.config import SourceConfig
from edge.errors import CameraNotFound, SourceError
from edge.mockcamera import PI_CAMERA, USB_CAMERA, MockPicamera2
from edge.sources import ImageFolderSource, Picamera2Source, VideoFileSource, open_source

from .conftest import CLIP, FOLDER


@pytest.fixture
def fake_cam():
    """A fresh MockPicamera2 class per test (its own camera list, knobs and recorded instances)."""
    return MockPicamera2.make(realtime=False)


def test_picamera2_configures_lores_yuv_and_framerate(fake_cam):
    cfg = SourceConfig(source="picamera2", width=1280, height=720, lores_width=320, lores_height=240, fps=12)
    with open_source(cfg, camera_factory=fake_cam) as src:
        assert isinstance(src, Picamera2Source)
        cam = fake_cam.instances[0]
        kw = cam.calls[1][1]
        assert kw == {"main": {"size": (1280, 720)}, "lores": {"size": (320, 240), "format": "YUV420"}, "controls": {"FrameRate": 12.0}}
        assert cam.names() == ["init", "create_video_configuration", "configure", "stream_configuration", "start"]
        f0, f1 = src.read(), src.read()
    assert f0.image.shape == (240, 320) and f0.image.dtype == np.uint8
    assert (f0.image == 0).all() and (f1.image == 1).all()  # Y plane only: no U/V rows, no padding
    assert np.shares_memory(f0.image, f0.image.base)  # a slice, no colour conversion or copy
    assert (f0.index, f1.index) == (0, 1)
    assert f1.timestamp - f0.timestamp == pytest.approx(1 / 12, abs=1e-6)  # SensorTimestamp, not the wall clock
    assert cam.names()[-2:] == ["stop", "close"]


def test_picamera2_close_twice_is_safe(fake_cam):
    src = Picamera2Source(SourceConfig(), camera_factory=fake_cam)
    src.close()
    src.close()
    names = fake_cam.instances[0].names()
    assert names.count("stop") == 1 and names.count("close") == 1
    with pytest.raises(SourceError, match="after close"):
        src.read()


@pytest.mark.parametrize("step", ["configure", "start"])
def test_picamera2_closed_when_start_fails(fake_cam, step):
    fake_cam.fail_on = step
    with pytest.raises(SourceError, match=f"picamera2: cannot start the camera .*{step} failed"):
        Picamera2Source(SourceConfig(), camera_factory=fake_cam)
    assert fake_cam.instances[0].names()[-2:] == ["stop", "close"]


def test_picamera2_close_still_closes_when_stop_fails(fake_cam):
    src = Picamera2Source(SourceConfig(), camera_factory=fake_cam)
    fake_cam.fail_on = "stop"
    src.close()
    assert fake_cam.instances[0].names()[-1] == "close"


def test_picamera2_capture_failure_is_source_error(fake_cam):
    with Picamera2Source(SourceConfig(), camera_factory=fake_cam) as src:
        fake_cam.fail_on = "capture"
        with pytest.raises(SourceError, match="picamera2: capture failed .*capture failed"):
            src.read()
    assert fake_cam.instances[0].names()[-2:] == ["stop", "close"]


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


# ------------------------------------------------------------------ what a Pi owner hits first (issue 14)
USB_CAM = {**USB_CAMERA, "Num": 0}
PI_CAM = {**PI_CAMERA, "Num": 1}


def fake_v4l_sysfs(root, nodes):
    """A /sys/class/video4linux stand-in: {name: (device path under root, index)}."""
    cls = root / "class"
    cls.mkdir(parents=True)
    for name, (dev, index) in nodes.items():
        d = root / "devices" / dev
        d.mkdir(parents=True, exist_ok=True)
        (cls / name).mkdir()
        (cls / name / "device").symlink_to(d)
        (cls / name / "index").write_text(f"{index}\n")
    return cls


def test_auto_with_only_a_usb_camera_uses_opencv_not_picamera2(fake_cam, monkeypatch, tmp_path):
    """picamera2 lists UVC webcams too; picamera2's lores stream and FrameRate do not exist for them."""
    fake_cam.cameras = [USB_CAM]
    monkeypatch.setattr(sources, "V4L_SYSFS", fake_v4l_sysfs(tmp_path, {
        "video19": ("platform/soc/codec", 0),                       # the Pi's own codec node: not a camera
        "video57": ("platform/axi/usb1/1-1/1-1:1.0", 0),            # the webcam's capture node
        "video58": ("platform/axi/usb1/1-1/1-1:1.0", 1),            # its metadata node
    }))
    assert sources.usb_video_device() == "/dev/video57"
    with pytest.raises(CameraNotFound, match="/dev/video57 does not exist"):  # no such node here: OpenCV was asked
        open_source(SourceConfig(source="auto"), camera_factory=fake_cam, sample_fallback=False)
    assert fake_cam.instances == []  # picamera2 was never opened on the webcam
    with pytest.raises(CameraNotFound, match="only USB cameras"):
        open_source(SourceConfig(source="picamera2"), camera_factory=fake_cam)


def test_auto_with_a_pi_and_a_usb_camera_opens_the_pi_camera(fake_cam):
    fake_cam.cameras = [PI_CAM, USB_CAM]
    with open_source(SourceConfig(source="auto"), camera_factory=fake_cam) as src:
        assert isinstance(src, Picamera2Source)
    assert fake_cam.instances[0].camera_num == 1  # libcamera's number of the Pi camera, not list position 0


def test_usb_device_lookup_without_sysfs(tmp_path):
    assert sources.usb_video_device(tmp_path / "missing") is None


def test_auto_without_camera_never_falls_back_to_the_sample_when_told(fake_cam, monkeypatch, caplog):
    fake_cam.cameras = []
    with pytest.raises(CameraNotFound, match="^no camera found: .*never falls back to the sample"):
        open_source(SourceConfig(source="auto"), camera_factory=fake_cam, sample_fallback=False)
    monkeypatch.setattr(sources, "SAMPLE_CLIP", CLIP)
    with caplog.at_level("WARNING"), open_source(SourceConfig(source="auto"), camera_factory=fake_cam) as src:
        assert isinstance(src, VideoFileSource)
    assert "replaying the bundled sample clip" in caplog.text and "service" in caplog.text


def test_lores_y_plane_is_sliced_with_the_configured_size():
    """libcamera may adjust the requested lores size; picamera2 writes the real one into the config."""
    cam = MockPicamera2.make(lores_size=(336, 240), realtime=False)
    cfg = SourceConfig(source="picamera2", lores_width=320, lores_height=240)
    with Picamera2Source(cfg, camera_factory=cam) as src:
        frame = src.read()
    assert frame.image.shape == (240, 336)
    assert (frame.image == 0).all()  # Y only: no stride padding in the frame


def test_busy_camera_names_the_cause_and_who_holds_it():
    # what picamera2.Picamera2.__init__ raises when acquire() fails: the cause is only in the chain
    err = RuntimeError("Camera __init__ sequence did not complete.")
    err.__context__ = RuntimeError("Failed to acquire camera: Device or resource busy")
    busy = MockPicamera2.make(fail_on="init", error=err)
    with pytest.raises(SourceError) as e:
        Picamera2Source(SourceConfig(), camera_factory=busy)
    msg = str(e.value)
    assert "did not complete" in msg and "cause: Failed to acquire camera: Device or resource busy" in msg
    assert "rpicam-" in msg and "\n" not in msg


# ------------------------------------------------------------------ issue 29: hostile input, round 2
@pytest.mark.parametrize("spec", ["4294967296", "2147483648", "1024", "9" * 5000])
def test_a_camera_index_out_of_range_is_one_line(spec):
    """4294967296 raised cv2.error (a traceback; the service restarted on it for ever): now bad input (exit 2)."""
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"camera index \d+.* is out of range \(0\.\.1023") as e:
        open_source(SourceConfig(source=spec))
    assert "\n" not in str(e.value) and len(str(e.value)) < 200


def test_an_index_opencv_refuses_is_camera_not_found():
    from edge.sources import OpenCvDeviceSource

    with pytest.raises(CameraNotFound, match="OpenCV cannot open 4294967296") as e:
        OpenCvDeviceSource(4294967296, SourceConfig())
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec", ["²", "١"])  # str.isdigit() is True, int() refuses or OpenCV cannot
def test_other_digits_are_a_path_not_an_index(spec):
    with pytest.raises(SourceError, match="no such file or folder"):
        open_source(SourceConfig(source=spec))


def test_a_folder_of_many_unreadable_files_logs_a_few_lines_and_a_count(tmp_path, caplog):
    for i in range(3000):
        (tmp_path / f"{i:05d}.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="edge.sources"):
        with ImageFolderSource(tmp_path, SourceConfig()) as src:
            assert src.read() is None and src.skipped == 3000
            assert src.read() is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6, lines
    assert "further ones are counted, not listed" in lines[4]
    assert lines[-1] == f"{tmp_path}: 3000 unreadable images skipped in all"
