"""The shipped picamera2 stand-in keeps picamera2's contract, so tests that use it test something real:
call order, the YUV420 lores layout, SensorTimestamp at the FrameRate, failures, hangs, the camera list."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge.mockcamera import CHROMA, PADDING, PI_CAMERA, USB_CAMERA, MockPicamera2


def started(cam_cls: type[MockPicamera2], fps: float = 30.0, lores=(320, 240)) -> MockPicamera2:
    cam = cam_cls()
    cam.configure(cam.create_video_configuration(main={"size": (640, 480)}, lores={"size": lores, "format": "YUV420"},
                                                 controls={"FrameRate": fps}))
    cam.start()
    return cam


def test_lores_is_yuv420_with_the_y_plane_on_top_and_padded_rows():
    face = np.arange(240 * 320, dtype=np.uint32).reshape(240, 320).astype(np.uint8)
    cam = started(MockPicamera2.make(frames=[face], stride=384, realtime=False))
    (arr,), meta = cam.capture_arrays(["lores"])
    assert arr.shape == (360, 384) and arr.dtype == np.uint8
    np.testing.assert_array_equal(arr[:240, :320], face)
    assert (arr[240:, :320] == CHROMA).all() and (arr[:, 320:] == PADDING).all()
    assert isinstance(meta["SensorTimestamp"], int)


def test_frames_are_served_in_turn_and_the_default_frame_n_is_n():
    a, b = np.full((240, 320), 10, np.uint8), np.full((240, 320), 20, np.uint8)
    cam = started(MockPicamera2.make(frames=[a, b], realtime=False))
    assert [int(cam.capture_arrays(["lores"])[0][0][0, 0]) for _ in range(3)] == [10, 20, 10]
    plain = started(MockPicamera2.make(realtime=False))
    assert [int(plain.capture_arrays(["lores"])[0][0][5, 5]) for _ in range(3)] == [0, 1, 2]
    wrong = started(MockPicamera2.make(frames=[np.zeros((10, 10), np.uint8)], realtime=False))
    with pytest.raises(ValueError, match="240x320"):
        wrong.capture_arrays(["lores"])


def test_sensor_timestamps_follow_the_frame_rate_and_captures_are_paced():
    cam = started(MockPicamera2.make(), fps=20)
    t0 = time.monotonic()
    stamps = [cam.capture_arrays(["lores"])[1]["SensorTimestamp"] for _ in range(5)]
    assert time.monotonic() - t0 >= 4 / 20 - 0.01  # a camera delivers at its frame rate, not faster
    assert np.diff(stamps).tolist() == [50_000_000] * 4
    assert abs(stamps[0] / 1e9 - t0) < 1.0  # on the monotonic clock, like SensorTimestamp on a Pi


def test_call_order_is_enforced_and_recorded():
    cls = MockPicamera2.make(realtime=False)
    cam = cls()
    with pytest.raises(RuntimeError, match="not been configured"):
        cam.start()
    with pytest.raises(RuntimeError, match="not running"):
        cam.capture_arrays(["lores"])
    cam = started(cls)
    cam.stop()
    cam.close()
    with pytest.raises(RuntimeError, match="not running"):
        cam.capture_arrays(["lores"])
    assert cam.names() == ["init", "create_video_configuration", "configure", "start", "stop", "close", "capture_arrays"]
    assert cls.instances[-1] is cam and cam.closed


@pytest.mark.parametrize("step", ["init", "configure", "start", "stop", "close"])
def test_a_step_told_to_fail_raises(step):
    cls = MockPicamera2.make(fail_on=step, realtime=False)
    with pytest.raises(RuntimeError, match=f"{step} failed"):
        cam = started(cls)
        cam.stop()
        cam.close()


def test_capture_fails_after_n_good_frames_with_the_given_error():
    cam = started(MockPicamera2.make(fail_on="capture", fail_after=2, error=OSError(5, "I/O error"), realtime=False))
    cam.capture_arrays(["lores"])
    cam.capture_arrays(["lores"])
    with pytest.raises(OSError, match="I/O error"):
        cam.capture_arrays(["lores"])


@pytest.mark.parametrize("wake", [True, False])
def test_a_hung_capture_returns_only_when_closed_or_never(wake):
    cam = started(MockPicamera2.make(hang_after=1, wake_on_close=wake, realtime=False))
    cam.capture_arrays(["lores"])
    out: list[BaseException] = []

    def capture() -> None:
        try:
            cam.capture_arrays(["lores"])
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            out.append(e)

    th = threading.Thread(target=capture, daemon=True)
    th.start()
    assert cam.hung.wait(5)
    th.join(0.2)
    assert th.is_alive(), "the capture returned although the camera hangs"
    cam.close()
    th.join(5 if wake else 0.3)
    assert th.is_alive() is not wake
    if wake:
        assert out and "timed out" in str(out[0])


def test_camera_list_usb_camera_and_missing_number():
    cls = MockPicamera2.make(cameras=[PI_CAMERA, USB_CAMERA])
    info = cls.global_camera_info()
    assert info == [PI_CAMERA, USB_CAMERA] and info[0] is not PI_CAMERA  # a copy, as picamera2 builds one
    assert "/usb" in info[1]["Id"] and "/usb" not in info[0]["Id"]
    assert cls(1).camera_num == 1
    with pytest.raises(IndexError):
        cls(2)
    with pytest.raises(IndexError):
        MockPicamera2.make(cameras=[])()


def test_lores_size_adjustment_shows_in_stream_configuration():
    cam = started(MockPicamera2.make(lores_size=(336, 252), realtime=False))
    assert cam.stream_configuration("lores")["size"] == (336, 252)
    assert cam.capture_arrays(["lores"])[0][0].shape == (378, 400)


def test_each_made_class_has_its_own_knobs_and_instances():
    a, b = MockPicamera2.make(), MockPicamera2.make()
    a.fail_on = "start"
    a(), b()
    assert len(a.instances) == len(b.instances) == 1 and MockPicamera2.instances == []
    assert b.fail_on == "" and MockPicamera2.fail_on == ""
    with pytest.raises(TypeError, match="unknown knobs"):
        MockPicamera2.make(fial_on="start")
    with pytest.raises(ValueError, match="fail_on"):
        MockPicamera2.make(fail_on="capture_array")
