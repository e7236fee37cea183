"""Frame sources: Pi camera, OpenCV device, video file, image folder -> grayscale `Frame`s.

One small interface (`read`/`close`, context manager) so the loop never knows where frames come
from. Cameras stamp frames with capture time; files use clip time, so a replay behaves the same
fast or `realtime`.
"""
from __future__ import annotations

import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from edge.config import SourceConfig
from edge.errors import CameraNotFound, ConfigError, SourceError
from edge.frames import MAX_SIDE
from edge.imagecheck import ImageRefused, load_checked
from edge.types import Frame

log = logging.getLogger(__name__)

SAMPLE_CLIP = Path(__file__).resolve().parent / "samples" / "sample.mp4"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp"})
_DEV_RE = re.compile(r"/dev/video[0-9]+")  # fullmatch: "$" would also take a trailing newline
_INDEX_RE = re.compile(r"[0-9]+")
V4L_SYSFS = Path("/sys/class/video4linux")  # where `auto` looks up the device node of a USB camera
BUSY_HINT = ("the camera is probably busy (Device or resource busy): another program holds it, such as "
             "rpicam-hello/rpicam-vid/rpicam-still, libcamera-*, or a second emotion-edge; stop it and try again")


class FrameSource:
    """Base: `read()` gives the next Frame (None at the end of a file/folder); `close()` is idempotent."""

    name: str = "source"
    skipped: int = 0  # unreadable inputs passed over (image folders)

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device/file; safe to call twice."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self):
        while (frame := self.read()) is not None:
            yield frame


def _to_gray(img: np.ndarray) -> np.ndarray:
    """OpenCV delivers BGR (or BGRA, or already gray); downstream wants uint8 HxW."""
    if img.ndim == 2:
        return img
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    if img.shape[2] == 1:
        return img[:, :, 0]
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


class _Pacer:
    """Sleeps so clip time tracks wall time (realtime replay); a no-op when disabled."""

    def __init__(self, enabled: bool, sleep: Callable[[float], None] = time.sleep) -> None:
        self.enabled = enabled
        self._sleep = sleep
        self._t0: float | None = None

    def wait(self, clip_t: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now - clip_t
        delay = self._t0 + clip_t - now
        if delay > 0:
            self._sleep(delay)


# ------------------------------------------------------------------ picamera2
def _import_picamera2() -> Any:
    try:
        from picamera2 import Picamera2  # lazy: only on a Pi
    except ImportError as e:
        raise CameraNotFound(f"no camera found: picamera2 is not installed ({e}); on a Pi: sudo apt install python3-picamera2") from None
    return Picamera2


class Picamera2Source(FrameSource):
    """The Pi camera: a main stream plus a small YUV420 `lores` stream whose Y plane is the gray frame.

    `camera_factory` is the `picamera2.Picamera2` class (imported lazily when None); tests and
    machines without a Pi pass `edge.mockcamera.MockPicamera2`, which has the same surface:
    `global_camera_info()`, construction by camera number, `create_video_configuration`,
    `configure`, `stream_configuration`, `start`, `capture_arrays`, `stop`, `close`.
    """

    name = "picamera2"

    def __init__(self, cfg: SourceConfig, camera_factory: Any = None) -> None:
        factory = camera_factory if camera_factory is not None else _import_picamera2()
        try:
            cameras = factory.global_camera_info()
        except Exception as e:  # libcamera not running, etc.
            raise CameraNotFound(f"no camera found: cannot list cameras ({e})") from None
        if not cameras:
            raise CameraNotFound("no camera found: Picamera2.global_camera_info() lists none; check the ribbon cable and `rpicam-hello --list-cameras`")
        # libcamera also lists USB (UVC) cameras, which have no lores stream or FrameRate control.
        pi_cams = [c for c in cameras if not _is_usb_camera(c)]
        if not pi_cams:
            raise CameraNotFound(f"no Pi camera found: only USB cameras ({_camera_names(cameras)}); use source = \"auto\" or /dev/videoN for those")
        num = pi_cams[0].get("Num", 0) if isinstance(pi_cams[0], dict) else 0
        # YUV420 needs even sizes; the Y plane is the first lores_height rows of the array.
        self._lw, self._lh = cfg.lores_width & ~1, cfg.lores_height & ~1
        self._cam: Any = None
        self._closed = False
        self._index = 0
        try:
            self._cam = factory(num) if num else factory()
            config = self._cam.create_video_configuration(
                main={"size": (cfg.width, cfg.height)},
                lores={"size": (self._lw, self._lh), "format": "YUV420"},
                controls={"FrameRate": float(cfg.fps)},
            )
            self._cam.configure(config)
            self._lw, self._lh = self._configured_lores_size()
            self._cam.start()
        except Exception as e:
            self.close()
            if isinstance(e, SourceError):
                raise
            raise SourceError(f"picamera2: cannot start the camera ({_describe_camera_error(e)})") from e

    def _configured_lores_size(self) -> tuple[int, int]:
        """The lores size libcamera actually set (it may adjust the request); the Y plane is sliced with it."""
        w, h = (int(v) for v in self._cam.stream_configuration("lores")["size"])
        return (w, h) if w > 0 and h > 0 else (self._lw, self._lh)

    def read(self) -> Frame:
        if self._closed:
            raise SourceError("picamera2: read after close")
        try:
            arrays, meta = self._cam.capture_arrays(["lores"])
        except Exception as e:
            raise SourceError(f"picamera2: capture failed ({type(e).__name__}: {e})") from e
        arr = arrays[0]
        ts_ns = meta.get("SensorTimestamp")
        # SensorTimestamp is nanoseconds since boot (same clock as monotonic on a Pi that never suspends).
        ts = ts_ns / 1e9 if isinstance(ts_ns, (int, float)) and ts_ns > 0 else time.monotonic()
        if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[0] < self._lh or arr.shape[1] < self._lw:
            raise SourceError(f"picamera2: lores array has shape {getattr(arr, 'shape', None)}, expected YUV420 at least {self._lh * 3 // 2}x{self._lw}")
        gray = arr[: self._lh, : self._lw]  # Y plane; rows may be padded to the stride
        frame = Frame(gray, float(ts), self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        cam, self._cam = self._cam, None
        if cam is None:
            return
        try:
            cam.stop()
        except Exception as e:  # stopping a camera that never started must not hide the real error
            log.debug("picamera2 stop: %s", e)
        finally:
            try:
                cam.close()
            except Exception as e:
                log.warning("picamera2 close failed: %s", e)


def _is_usb_camera(info: Any) -> bool:
    """picamera2 lists UVC webcams too; their libcamera id holds the USB path (".../usb@...")."""
    return isinstance(info, dict) and "/usb" in str(info.get("Id", ""))


def _camera_names(cameras: list[Any]) -> str:
    return ", ".join(str(c.get("Model") or c.get("Id") or "?") if isinstance(c, dict) else str(c) for c in cameras)


def _describe_camera_error(e: BaseException) -> str:
    """One line for a failed camera start; picamera2 hides the cause of `__init__ sequence did not complete`."""
    text = f"{type(e).__name__}: {e}"
    if "did not complete" not in str(e):
        return text
    cause = e.__cause__ or e.__context__
    while cause is not None and "did not complete" in str(cause):
        cause = cause.__cause__ or cause.__context__
    if cause is not None and str(cause):
        text += f"; cause: {cause}"
    return f"{text}; {BUSY_HINT}"


def usb_video_device(sysfs: Path | None = None) -> str | None:
    """The capture node (/dev/videoN) of the first USB camera, from sysfs; None when there is none.

    UVC makes two nodes per camera: the capture node has `index` 0, the metadata node 1.
    """
    root = V4L_SYSFS if sysfs is None else sysfs
    try:
        entries = [p for p in root.iterdir() if re.fullmatch(r"video\d+", p.name)]
    except OSError:
        return None
    for entry in sorted(entries, key=lambda p: int(p.name[5:])):
        try:
            if "/usb" not in str((entry / "device").resolve()):
                continue
            if (entry / "index").read_text().strip() not in ("", "0"):
                continue
        except OSError:
            continue
        return f"/dev/{entry.name}"
    return None


# ------------------------------------------------------------------ OpenCV
class SourceSpecError(CameraNotFound, ConfigError):
    """`source` names a camera that can never exist: bad input (the service exits 2, not restarted for ever)."""


MAX_CAMERA_INDEX = 1023  # OpenCV takes an int32 index (4294967296 raised cv2.error); no Pi has this many cameras


def _cv_reason(e: BaseException) -> str:
    """cv2.error's text is several lines (overloads tried, C++ locations): its first line is enough."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


class _CvCapture(FrameSource):
    def __init__(self) -> None:
        self._cap: cv2.VideoCapture | None = None
        self._index = 0

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


class OpenCvDeviceSource(_CvCapture):
    """A USB webcam through OpenCV (V4L2); frames are converted BGR -> gray."""

    def __init__(self, device: str | int, cfg: SourceConfig) -> None:
        super().__init__()
        self.device = device
        self.name = f"device {device}"
        if isinstance(device, str) and not os.path.exists(device):
            raise CameraNotFound(f"no camera found: {device} does not exist")
        try:
            cap = cv2.VideoCapture(device)
        except cv2.error as e:  # an index OpenCV cannot take: the service must not restart on a traceback
            raise CameraNotFound(f"no camera found: OpenCV cannot open {device} ({_cv_reason(e)})") from None
        if not cap.isOpened():
            cap.release()
            raise CameraNotFound(f"no camera found: OpenCV cannot open {device}")
        self._cap = cap
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
        cap.set(cv2.CAP_PROP_FPS, cfg.fps)

    def read(self) -> Frame:
        if self._cap is None:
            raise SourceError(f"{self.name}: read after close")
        ok, img = self._cap.read()
        if not ok or img is None or img.size == 0:
            raise SourceError(f"{self.name}: camera stopped delivering frames (unplugged?)")
        frame = Frame(_to_gray(img), time.monotonic(), self._index)
        self._index += 1
        return frame


class VideoFileSource(_CvCapture):
    """A video file replayed as fast as possible (or at its own pace with `realtime`)."""

    def __init__(self, path: str | Path, cfg: SourceConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self.path = Path(path)
        self.name = str(self.path)
        try:
            cap = cv2.VideoCapture(str(self.path))
        except cv2.error as e:
            raise SourceError(f"{self.path}: cannot open video ({_cv_reason(e)})") from None
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.path}: cannot open video (unreadable or unsupported format)")
        self._cap = cap
        # Refuse oversized frames before the first decode allocates them (a small file can claim any size).
        w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        if not (math.isfinite(w) and math.isfinite(h)) or w > MAX_SIDE or h > MAX_SIDE:
            self.close()
            raise SourceError(f"{self.path}: video frames are {w:.0f}x{h:.0f}, at most {MAX_SIDE} px a side")
        ok, img = cap.read()
        if not ok or img is None or img.size == 0:
            self.close()
            raise SourceError(f"{self.path}: video has no readable frames")
        self._pending: np.ndarray | None = img
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if math.isfinite(fps) and 0.5 <= fps <= 1000 else float(cfg.fps)
        self._pacer = _Pacer(cfg.realtime, sleep)

    def read(self) -> Frame | None:
        if self._cap is None:
            return None
        if self._pending is not None:
            img, self._pending = self._pending, None
        else:
            ok, img = self._cap.read()
            if not ok or img is None:
                return None
        t = self._index / self.fps
        self._pacer.wait(t)
        frame = Frame(_to_gray(img), t, self._index)
        self._index += 1
        return frame


LIST_SKIPPED = 5  # unreadable images named one line each; beyond, counted (100,000 empty files logged 100,000 lines)


class ImageFolderSource(FrameSource):
    """Every image in a folder, in sorted name order, at `cfg.fps` clip time; unreadable files are skipped and counted."""

    def __init__(self, folder: str | Path, cfg: SourceConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self.folder = Path(folder)
        self.name = str(self.folder)
        try:
            files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        except OSError as e:
            raise SourceError(f"{self.folder}: cannot list folder ({e})") from None
        if not files:
            raise SourceError(f"{self.folder}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self._files = files
        self._next = 0
        self._index = 0
        self.skipped = 0
        self.fps = float(cfg.fps)
        self._pacer = _Pacer(cfg.realtime, sleep)
        self._closed = False
        self._summarized = False

    def read(self) -> Frame | None:
        while not self._closed and self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            try:  # header checked first: a decompression bomb is skipped, not decoded
                img, why = load_checked(path, cv2.IMREAD_GRAYSCALE), "OpenCV cannot decode it"
            except (OSError, ImageRefused) as e:
                img, why = None, str(e)
            if img is None:
                self.skipped += 1
                if self.skipped <= LIST_SKIPPED:
                    log.warning("%s: unreadable image skipped (%s; %d so far%s)", path, why, self.skipped,
                                "; further ones are counted, not listed" if self.skipped == LIST_SKIPPED else "")
                continue
            t = self._index / self.fps
            self._pacer.wait(t)
            frame = Frame(img, t, self._index)
            self._index += 1
            return frame
        if not self._summarized and self.skipped > LIST_SKIPPED:
            self._summarized = True
            log.warning("%s: %d unreadable images skipped in all", self.folder, self.skipped)
        return None

    def close(self) -> None:
        self._closed = True


# ------------------------------------------------------------------ choosing
def _list_cameras(camera_factory: Any) -> list[Any]:
    try:
        factory = camera_factory if camera_factory is not None else _import_picamera2()
        return list(factory.global_camera_info())
    except Exception:
        return []


def open_source(cfg: SourceConfig, *, camera_factory: Any = None, sample_fallback: bool = True) -> FrameSource:
    """Parse `cfg.source` and open it: auto | picamera2 | sample | /dev/videoN | index | file | folder.

    `auto`: a Pi camera through picamera2; a USB camera (listed by libcamera too) through OpenCV;
    no camera at all: the bundled sample clip when `sample_fallback` (interactive `run`), else
    CameraNotFound (the service must never show or log the sample's moods as the user's).
    """
    spec = (cfg.source or "auto").strip()
    if spec == "auto":
        cameras = _list_cameras(camera_factory)
        if any(not _is_usb_camera(c) for c in cameras):
            return Picamera2Source(cfg, camera_factory)
        if cameras:  # USB cameras only: picamera2 has no lores stream or FrameRate control for them
            device = usb_video_device()
            if device is None:
                raise CameraNotFound(f"no camera found: libcamera lists USB cameras ({_camera_names(cameras)}) but {V4L_SYSFS} has no USB capture device")
            log.info("USB camera found (%s); using %s through OpenCV", _camera_names(cameras), device)
            return OpenCvDeviceSource(device, cfg)
        if not sample_fallback:
            raise CameraNotFound("no camera found: source = \"auto\" found no Pi or USB camera (loose ribbon cable? "
                                 "check `rpicam-hello --list-cameras`); the service never falls back to the sample clip")
        log.warning("no camera found; replaying the bundled sample clip instead (interactive run only: the service stops with an error)")
        spec = "sample"
    if spec == "picamera2":
        return Picamera2Source(cfg, camera_factory)
    if spec == "sample":
        if not SAMPLE_CLIP.is_file():
            raise SourceError(f"{SAMPLE_CLIP}: the bundled sample clip is missing; pass a video file or image folder with --source")
        return VideoFileSource(SAMPLE_CLIP, cfg)
    if _INDEX_RE.fullmatch(spec):  # str.isdigit() also takes "²" and other digits int() refuses
        index = int(spec) if len(spec) <= 6 else MAX_CAMERA_INDEX + 1  # int() refuses over 4300 digits
        if index > MAX_CAMERA_INDEX:
            raise SourceSpecError(f"no camera found: camera index {spec if len(spec) <= 20 else spec[:20] + '…'} "
                                 f"is out of range (0..{MAX_CAMERA_INDEX}; /dev/videoN names a device)")
        return OpenCvDeviceSource(index, cfg)
    if _DEV_RE.fullmatch(spec):
        return OpenCvDeviceSource(spec, cfg)
    path = Path(spec).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, cfg)
    if path.is_file():
        return VideoFileSource(path, cfg)
    raise SourceError(f"{spec}: no such file or folder (source must be auto, picamera2, sample, /dev/videoN, a camera index, a video file or an image folder)")
