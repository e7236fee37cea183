"""`emotion-edge view`: what the camera sees, drawn in the terminal, with framing advice (aim it over ssh).

With the service running it shows the service's frames (the service holds the camera), asked for
through a request file renewed every second (edge/viewshare.py); otherwise it opens the source
itself. `q` or Ctrl-C quits; `--once` draws one frame and exits.
Exit status: 0 done, 1 no frame came, 2 bad arguments, source, config or model.
"""
from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edge.commands.common import add_service_flags, config_from_args
from edge.errors import ConfigError, EdgeError, SourceError

REFRESH_HZ = 4.0
SERVICE_FIRST_FRAME_SECONDS = 3.0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "view", help="the camera's picture in the terminal, with faces, moods and framing advice (aim the camera over ssh)",
        description="Draws what the camera sees in the terminal (half blocks; colour where the terminal has it), "
                    "each face's box and mood, the frames/s and one line of advice on how to aim the camera. "
                    "With the service running, its frames are shown (it holds the camera). q or Ctrl-C quits.",
        epilog="Exit status: 0 done, 1 no frame came, 2 bad arguments, source, config or model.")
    p.add_argument("--source", help="auto | picamera2 | sample | /dev/videoN | N | video file | image folder | photo file "
                                    "(given: shown here, not through the service)")
    p.add_argument("--model", help="NAME.tflite (with NAME.json beside it)")
    p.add_argument("--once", action="store_true", help="draw one frame and exit (scripts, logs)")
    p.add_argument("--plain", action="store_true", help="characters only, no colours or escape codes")
    add_service_flags(p)


# -- frames from a source here -----------------------------------------------------------------
class _PhotoSource:
    """One photo file as a source: the same frame again, `interval` seconds apart (live mode)."""

    name = "photo"

    def __init__(self, path: Path, interval: float) -> None:
        import cv2

        from edge.imagecheck import ImageRefused, load_checked

        try:
            img = load_checked(path, cv2.IMREAD_GRAYSCALE)
        except (OSError, ImageRefused) as e:
            raise SourceError(f"{path}: cannot read the photo ({e})") from None
        if img is None:
            raise SourceError(f"{path}: OpenCV cannot decode it")
        self.name = str(path)
        self._img, self._interval, self._i = img, interval, 0
        self._t0 = time.monotonic()

    def read(self):
        from edge.types import Frame

        if self._i:
            time.sleep(self._interval)
        f = Frame(self._img, time.monotonic() - self._t0, self._i)
        self._i += 1
        return f

    def close(self) -> None:
        pass


def _open_here(cfg: Any, once: bool):
    from edge.sources import IMAGE_SUFFIXES, open_source

    spec = (cfg.source.source or "auto").strip()
    path = Path(spec).expanduser()
    if spec not in ("auto", "sample", "picamera2") and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
        return _PhotoSource(path, 1.0 / REFRESH_HZ)
    if not once:
        cfg.source.realtime = True  # a clip plays at its own pace, as a camera would
    return open_source(cfg.source)


class _Local:
    """Detector, classifier and advice on frames read here (the loop's detector, as the service runs it)."""

    def __init__(self, cfg: Any) -> None:
        from edge.aim import Aimer
        from edge.classify import EmotionClassifier, resolve_model
        from edge.detect import FaceDetector

        self.cfg = cfg
        self.detector = FaceDetector(cfg.detect)
        self.classifier = EmotionClassifier(resolve_model(cfg.classify.model), num_threads=cfg.classify.num_threads)
        self.aimer = Aimer(cfg.detect)

    def screen(self, gray: np.ndarray, t: float, title: str, fps: float | None, once: bool):
        from edge.aim import look
        from edge.view import FaceMark, Screen

        boxes = self.detector.detect(gray)
        looks = [look(gray, b, self.cfg.detect) for b in boxes]
        faces = []
        for b, lk in zip(boxes, looks):
            p = self.classifier.classify(gray, b)
            faces.append(FaceMark(b, p.top, p.confidence, f"{lk.width} px wide"))
        advice = self.aimer.advise(t, gray, looks, once=once)
        return Screen(gray, faces, title, advice, fps)

    def close(self) -> None:
        self.classifier.close()


# -- frames from the service -----------------------------------------------------------------------
def _shared_screen(cfg: Any, aimer: Any, f: Any, t: float, once: bool):
    from edge.aim import FaceLook, detector_scale
    from edge.view import FaceMark, Screen

    sw, sh = f.src_size
    h, w = f.image.shape
    k = w / sw
    scale = detector_scale(sw, cfg.detect)
    looks = [FaceLook(fc.box, fc.box[2], int(round(fc.box[2] * scale)), fc.mean, fc.std, fc.sharpness, f.frame_mean)
             for fc in f.faces]
    faces = [FaceMark(tuple(int(round(v * k)) for v in fc.box), fc.label, fc.confidence, f"{fc.box[2]} px wide")
             for fc in f.faces]
    advice = aimer.advise(t, f.image, looks, once=once, frame_wh=(sw, sh))
    mood = f" mood {f.mood[0]} ({f.mood[1]:.2f})" if f.mood and f.mood[0] != "none" else ""
    return Screen(f.image, faces, f"the service's camera, {sw}x{sh}{mood}", advice, f.fps)


# -- the terminal -----------------------------------------------------------------------------------
class _Terminal:
    """Raw keys, the alternate screen and a hidden cursor while live; all restored on the way out,
    whatever ends it (q, Ctrl-C, SIGTERM, SIGHUP, an exception)."""

    def __init__(self, out: TextIO, inp: TextIO) -> None:
        self.out, self.inp = out, inp
        self._saved = None
        self._handlers: dict = {}

    def __enter__(self) -> "_Terminal":
        import termios
        import tty

        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        for s in (signal.SIGTERM, signal.SIGHUP):
            self._handlers[s] = signal.signal(s, stop)
        try:
            if self.inp.isatty():
                self._saved = termios.tcgetattr(self.inp.fileno())
                tty.setraw(self.inp.fileno(), termios.TCSANOW)
            self.out.write("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J")
            self.out.flush()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        try:
            self.out.write("\x1b[0m\x1b[?25h\x1b[?1049l")
            self.out.flush()
        except (OSError, ValueError):
            pass
        if self._saved is not None:
            try:
                termios.tcsetattr(self.inp.fileno(), termios.TCSADRAIN, self._saved)
            except (OSError, termios.error):
                pass
            self._saved = None
        for s, h in self._handlers.items():
            signal.signal(s, h)
        self._handlers = {}

    def key(self, timeout: float) -> str:
        """A key pressed within `timeout` seconds ('' if none)."""
        if not self.inp.isatty():
            time.sleep(max(0.0, timeout))
            return ""
        r, _, _ = select.select([self.inp], [], [], max(0.0, timeout))
        if not r:
            return ""
        return os.read(self.inp.fileno(), 32).decode("utf-8", "replace")

    def show(self, lines: list[str]) -> None:
        # raw mode: no newline translation, so each line ends in \r\n; \x1b[K clears what a longer line left
        self.out.write("\x1b[H" + "\x1b[K\r\n".join(lines) + "\x1b[K\x1b[J")
        self.out.flush()


def _quit(keys: str) -> bool:
    return any(c in keys for c in ("q", "Q", "\x03", "\x04"))


# -- main ----------------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)  # --source and --model, the only pipeline flags view has
    out = sys.stdout
    if not args.once and not out.isatty():
        raise ConfigError("view: the live picture needs a terminal; use --once to draw one frame to a file or pipe")
    state = None
    if args.source is None and not args.no_service:
        from edge.commands.calibrate import _running_service

        state = _running_service(cfg, args.status_file)
    if state is not None:
        return _through_service(cfg, state, args.once, args.plain, out)
    return _here(cfg, args.once, args.plain, out)


def _print_once(lines: list[str], out: TextIO) -> None:
    out.write("\n".join(lines) + "\n")
    out.flush()


def _here(cfg: Any, once: bool, plain: bool, out: TextIO) -> int:
    from edge.view import draw

    local = _Local(cfg)  # model and cascade first: a bad one is refused before the camera opens
    try:
        src = _open_here(cfg, once)
    except BaseException:
        local.close()
        raise
    name = getattr(src, "name", cfg.source.source)
    try:
        if once:
            frame = src.read()
            if frame is None:
                raise SourceError(f"{name}: no usable frame")
            h, w = frame.image.shape
            _print_once(draw(local.screen(frame.image, time.monotonic(), f"{name} {w}x{h}", None, True), out, plain=plain), out)
            return 0
        with _Terminal(out, sys.stdin) as term:
            fps, n, t_fps = None, 0, time.monotonic()
            next_draw = 0.0
            while True:
                frame = src.read()
                if frame is None:  # a clip or folder ended: keep the last picture until q
                    while not _quit(term.key(1.0)):
                        pass
                    return 0
                n += 1
                now = time.monotonic()
                if now - t_fps >= 1.0:
                    fps, n, t_fps = n / (now - t_fps), 0, now
                if now >= next_draw:
                    next_draw = now + 1.0 / REFRESH_HZ
                    h, w = frame.image.shape
                    term.show(draw(local.screen(frame.image, now, f"{name} {w}x{h}  (q quits)", fps, False), out, plain=plain))
                if _quit(term.key(0.0)):
                    return 0
    except KeyboardInterrupt:
        return 0
    finally:
        src.close()
        local.close()


def _through_service(cfg: Any, state: Path, once: bool, plain: bool, out: TextIO) -> int:
    from edge.aim import Aimer
    from edge.view import draw, terminal_size
    from edge.viewshare import MAX_WIDTH, FrameReader

    cols, _ = terminal_size(out)
    reader = FrameReader(state, width=min(MAX_WIDTH, max(160, cols)))
    aimer = Aimer(cfg.detect)
    try:
        try:
            reader.renew(force=True)
        except PermissionError:
            raise EdgeError(f"{reader.dir}: not allowed to see the service's camera; join its group: "
                            "sudo usermod -aG emotion-edge $USER (then log in again), or run `sudo emotion-edge view`") from None
        except OSError as e:
            raise EdgeError(f"cannot ask the service for frames: {e}") from None
        if once:
            end = time.monotonic() + SERVICE_FIRST_FRAME_SECONDS
            while time.monotonic() < end:
                f = reader.read()
                if f is not None:
                    _print_once(draw(_shared_screen(cfg, aimer, f, time.monotonic(), True), out, plain=plain), out)
                    return 0
                time.sleep(0.05)
            print(f"emotion-edge: view: the service sent no frame within {SERVICE_FIRST_FRAME_SECONDS:g} s "
                  "(is it seeing frames? see `emotion-edge status`)", file=sys.stderr)
            return 1
        with _Terminal(out, sys.stdin) as term:
            waited = time.monotonic()
            term.show(["waiting for the service's first frame …  (q quits)"])
            while True:
                reader.renew()
                f = reader.read()
                now = time.monotonic()
                if f is not None:
                    waited = now
                    term.show(draw(_shared_screen(cfg, aimer, f, now, False), out, plain=plain))
                elif now - waited > 5.0:
                    term.show(["no frame from the service for 5 s (stopped? no camera?): see `emotion-edge status`  (q quits)"])
                if _quit(term.key(0.1)):
                    return 0
    except KeyboardInterrupt:
        return 0
    finally:
        reader.close()
