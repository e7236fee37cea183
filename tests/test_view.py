"""`emotion-edge view`: the picture in the terminal (edge/view.py), the framing advice (edge/aim.py) and
the command, on real face photos with the loop's real detector and the bundled classifier."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge import aim
from edge.config import DetectConfig
from edge.detect import FaceDetector
from edge.view import FaceMark, Screen, color_mode, render

from .conftest import FACES_DIR, as_nobody

ROOT = Path(__file__).resolve().parents[1]
HAPPY = FACES_DIR / "fer32305_happy_320x240.png"
ESC = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def view(*args: str, env: dict | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    e = {**os.environ, **(env or {})}
    e.pop("COLUMNS", None)
    e.pop("LINES", None)
    return subprocess.run([sys.executable, "-m", "edge.cli", "view", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=e)


def small_face_frame(side: int = 36) -> np.ndarray:
    """The happy fixture's face (160 px at (80, 40)) shrunk to `side` px in a 640x480 frame."""
    src = cv2.imread(str(HAPPY), cv2.IMREAD_GRAYSCALE)
    bg = cv2.resize(cv2.imread(str(FACES_DIR / "noface_320x240.png"), cv2.IMREAD_GRAYSCALE), (640, 480),
                    interpolation=cv2.INTER_CUBIC)
    bg[200:200 + side, 300:300 + side] = cv2.resize(src[40:200, 80:240], (side, side), interpolation=cv2.INTER_AREA)
    return bg


# -- the command on photos -----------------------------------------------------------------------
def test_once_plain_on_a_photo_draws_the_picture_the_mood_and_advice():
    from edge.classify import DEFAULT_MODEL, EmotionClassifier

    r = view("--once", "--plain", "--source", str(HAPPY))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) <= 60  # not a terminal: 60 lines at most
    assert "\x1b" not in r.stdout
    face_line = next(i for i, ln in enumerate(lines) if ln.startswith("face 1:"))
    picture = lines[:face_line - 1]  # the title line is between
    assert len(picture) >= 10
    assert sum(ln.count("|") for ln in picture) >= 20  # the face's box
    assert len({c for ln in picture for c in ln}) >= 8  # grey levels, not a flat field
    img = cv2.imread(str(HAPPY), cv2.IMREAD_GRAYSCALE)
    (box,) = FaceDetector(DetectConfig()).detect(img)
    clf = EmotionClassifier(DEFAULT_MODEL)
    try:
        mood = clf.classify(img, box).top
    finally:
        clf.close()
    assert lines[face_line].startswith(f"face 1: {mood} (")
    assert lines[-1].startswith("advice: framing good")


def test_a_face_36_px_wide_in_a_640x480_frame_is_told_to_move_closer(tmp_path):
    img = small_face_frame(36)
    assert FaceDetector(DetectConfig()).detect(img) == []  # the loop's detector misses it
    path = tmp_path / "far.png"
    cv2.imwrite(str(path), img)
    r = view("--once", "--plain", "--source", str(path))
    assert r.returncode == 0, r.stderr
    advice = r.stdout[r.stdout.index("advice:"):]
    assert "closer" in advice and "36 px wide" in advice
    assert len(r.stdout.splitlines()) <= 60


def test_once_with_no_face_says_so(tmp_path):
    r = view("--once", "--plain", "--source", str(FACES_DIR / "noface_320x240.png"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "advice: no face found: is anyone in view, facing the camera?"


def test_once_on_a_clip_and_a_folder():
    for src in (ROOT / "tests" / "fixtures" / "clip.mp4", ROOT / "tests" / "fixtures" / "folder"):
        r = view("--once", "--plain", "--source", str(src))
        assert r.returncode == 0, r.stderr
        assert "advice:" in r.stdout


@pytest.mark.parametrize("args, needle", [
    (["--source", "/no/such/photo.png"], "/no/such/photo.png"),
    (["--once", "--source", "/no/such/photo.png"], "/no/such/photo.png"),
    (["--once", "--source", str(HAPPY), "--model", "/no/such/model.tflite"], "/no/such/model.tflite"),
])
def test_bad_arguments_are_one_line(args, needle, tmp_path):
    r = view(*args)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    if "--once" in args:
        assert needle in r.stderr
    else:  # live without a terminal is refused first
        assert "terminal" in r.stderr


# -- drawing ------------------------------------------------------------------------------------
def screen() -> Screen:
    img = cv2.imread(str(HAPPY), cv2.IMREAD_GRAYSCALE)
    return Screen(img, [FaceMark((80, 40, 160, 160), "happy", 0.9, "160 px wide")], "test", "framing good", 12.5)


@pytest.mark.parametrize("columns, lines", [(80, 24), (40, 20), (200, 60), (30, 60)])
@pytest.mark.parametrize("mode", ["plain", "truecolor", "256", "grey"])
def test_the_drawing_fits_the_terminal(columns, lines, mode):
    out = render(screen(), columns, lines, mode)
    assert len(out) <= lines
    assert max(len(ESC.sub("", ln)) for ln in out) <= columns
    text = " ".join(ESC.sub("", ln).strip() for ln in out)  # narrow terminals wrap the text lines
    assert "12.5 frames/s" in text and "face 1: happy (0.90)" in text and "advice: framing good" in text


def test_colour_modes_use_their_own_escapes():
    s = screen()
    assert "\x1b" not in "".join(render(s, 80, 24, "plain"))
    assert "38;2;" in "".join(render(s, 80, 24, "truecolor"))
    assert "38;5;2" in "".join(render(s, 80, 24, "256"))  # the 232-255 grey ramp
    grey = "".join(render(s, 80, 24, "grey"))
    assert "38;" not in grey and re.search(r"\x1b\[(3|9)[07];(4|10)[07]m", grey)
    pic = render(s, 80, 24, "truecolor")[:-3]
    assert all(ESC.sub("", ln) == "\u2580" * len(ESC.sub("", ln)) for ln in pic)  # half blocks only


class Tty:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty, plain, env, mode", [
    (True, False, {"COLORTERM": "truecolor", "TERM": "xterm"}, "truecolor"),
    (True, False, {"TERM": "xterm-256color"}, "256"),
    (True, False, {"TERM": "xterm"}, "grey"),
    (True, False, {"TERM": "linux"}, "grey"),
    (True, True, {"COLORTERM": "truecolor"}, "plain"),
    (False, False, {"COLORTERM": "truecolor"}, "plain"),
    (True, False, {"COLORTERM": "truecolor", "NO_COLOR": "1"}, "plain"),
])
def test_colour_mode_from_the_terminal(tty, plain, env, mode):
    assert color_mode(Tty(tty), plain, env) == mode


# -- advice -------------------------------------------------------------------------------------
CFG = DetectConfig()


def look_at(img: np.ndarray, box) -> aim.FaceLook:
    return aim.look(img, box, CFG)


def test_need_px_follows_the_detectors_downscale():
    assert aim.need_px(640, CFG) == max(2 * aim.DETECT_NEED_PX, aim.READ_BEST_PX, CFG.min_size)
    assert aim.need_px(320, CFG) == max(aim.DETECT_NEED_PX, aim.READ_BEST_PX, CFG.min_size)


def test_advice_for_a_good_face_then_each_problem():
    img = cv2.imread(str(HAPPY), cv2.IMREAD_GRAYSCALE)
    box = (80, 40, 160, 160)
    assert aim.advise_face(look_at(img, box), (320, 240), CFG).startswith("framing good")
    # cut off: the same face slid to the left edge
    left = np.roll(img, -80, axis=1)
    assert "left edge" in aim.advise_face(look_at(left, (0, 40, 160, 160)), (320, 240), CFG)
    # backlight: a bright window around a dark face
    back = img.copy()
    back[:] = 235
    back[40:200, 80:240] = (img[40:200, 80:240] * 0.35).astype(np.uint8)
    assert "light behind the face" in aim.advise_face(look_at(back, box), (320, 240), CFG)
    # low contrast: the face's grey levels squeezed together
    flat = img.copy()
    f = img[40:200, 80:240].astype(np.float32)
    flat[40:200, 80:240] = (f.mean() + (f - f.mean()) * 0.15).astype(np.uint8)
    assert "low contrast" in aim.advise_face(look_at(flat, box), (320, 240), CFG)
    # blur
    blurred = cv2.GaussianBlur(img, (0, 0), 8)
    assert "blurred" in aim.advise_face(look_at(blurred, box), (320, 240), CFG)
    # too small
    small = small_face_frame(40)
    adv = aim.advise_face(look_at(small, (300, 200, 40, 40)), (640, 480), CFG)
    assert "40 px wide (20 px to the detector)" in adv and "closer" in adv
    # too large
    assert "further away" in aim.advise_face(look_at(img, (60, 10, 200, 200)), (320, 240), CFG)


def test_no_face_for_ten_seconds_and_a_face_too_small_to_detect():
    empty = cv2.imread(str(FACES_DIR / "noface_320x240.png"), cv2.IMREAD_GRAYSCALE)
    a = aim.Aimer(CFG)
    assert a.advise(0.0, empty, []) == "looking for a face"
    assert a.advise(9.0, empty, []) == "looking for a face"
    assert a.advise(10.5, empty, []) == "no face for 10 s: is anyone in view?"
    img = cv2.imread(str(HAPPY), cv2.IMREAD_GRAYSCALE)
    assert a.advise(11.0, img, [look_at(img, (80, 40, 160, 160))]).startswith("framing good")
    assert a.advise(20.0, empty, []) == "looking for a face"  # counted from the last face
    far = small_face_frame(36)
    adv = aim.Aimer(CFG).advise(0.0, far, [])
    assert "closer" in adv and "too small to be found" in adv


def test_a_small_face_in_the_services_downscaled_copy_is_reported_in_camera_pixels():
    far = small_face_frame(36)
    adv = aim.Aimer(CFG).advise(0.0, far, [], frame_wh=(1280, 960))  # as if far were a half-size copy
    assert "72 px wide (18 px to the detector)" in adv


# -- live, in a real terminal ----------------------------------------------------------------------
def tmux(*args: str, sock: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, timeout=20)


def wait_for(fn, timeout: float = 30.0, every: float = 0.2):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(every)
    return fn()


@pytest.mark.slow
@pytest.mark.parametrize("key", ["q", "C-c"])
def test_live_in_tmux_draws_refreshes_and_q_restores_the_terminal(tmp_path, key):
    import shutil

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt install tmux; .ci/run installs it)")
    sock = f"emotion-edge-test-{os.getpid()}"
    cmd = (f"cd {ROOT} && stty -g > {tmp_path / 'before'}; {sys.executable} -m edge.cli view --source "
           f"{ROOT / 'edge' / 'samples' / 'sample.mp4'}; echo EXITED $?; stty -g > {tmp_path / 'after'}; sleep 60")
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    r = subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-s", "v", "-x", "100", "-y", "40", cmd],
                       env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    try:
        def pane() -> str:
            return tmux("capture-pane", "-p", "-t", "v", sock=sock).stdout

        def shows(text: str) -> str:
            p = pane()
            return p if text in p else ""

        first = wait_for(lambda: shows("frames/s"))
        assert "frames/s" in first and "advice:" in first, pane()
        assert tmux("display", "-p", "-t", "v", "#{alternate_on}", sock=sock).stdout.strip() == "1"
        assert tmux("display", "-p", "-t", "v", "#{cursor_flag}", sock=sock).stdout.strip() == "0"
        lines = first.rstrip("\n").splitlines()
        assert len(lines) <= 40 and sum("\u2580" in ln for ln in lines) >= 10
        # refreshed: the frames/s line changes as the clip plays
        title = next(ln for ln in lines if "frames/s" in ln)
        assert wait_for(lambda: any("frames/s" in ln and ln != title for ln in pane().splitlines()), 10)
        tmux("send-keys", "-t", "v", key, sock=sock)
        done = wait_for(lambda: shows("EXITED"), 10)
        assert "EXITED 0" in done, done
        assert tmux("display", "-p", "-t", "v", "#{alternate_on}", sock=sock).stdout.strip() == "0"
        assert tmux("display", "-p", "-t", "v", "#{cursor_flag}", sock=sock).stdout.strip() == "1"
        assert wait_for(lambda: (tmp_path / "after").is_file() and (tmp_path / "after").read_text(), 5)
        assert (tmp_path / "after").read_text() == (tmp_path / "before").read_text()  # termios settings restored
    finally:
        tmux("kill-server", sock=sock)


def test_check_gives_the_same_advice_from_a_few_frames():
    import json

    r = subprocess.run([sys.executable, "-m", "edge.cli", "check", "--json", "--led", "none", "--source",
                        str(ROOT / "tests" / "fixtures" / "clip.mp4")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = json.loads(r.stdout)
    assert out["framing"]["ok"] and out["framing"]["detail"].startswith("framing good: face ")
    assert r.returncode == 0, r.stdout


def test_many_faces_in_a_short_terminal_keep_the_picture_and_the_advice():
    s = screen()
    s.faces = [FaceMark((10 * i, 10, 20, 20), "happy", 0.5) for i in range(8)]
    s.advice = "a long piece of advice " * 4
    out = render(s, 40, 16, "plain")
    assert len(out) <= 16 and len(out) - sum(ln.startswith(("advice:", "  ", "test")) for ln in out) >= 10
    assert any(ln.startswith("advice: a long") for ln in out)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root (CI runs as root)")
def test_a_user_outside_the_services_group_is_told_how_to_join(tmp_path):
    import io

    from edge.calibration.requests import ensure_requests_dir
    from edge.commands import view as view_cmd
    from edge.config import load_config
    from edge.errors import EdgeError

    ensure_requests_dir(tmp_path)  # 2770, as the service makes it; this test's group is root's
    os.chmod(tmp_path, 0o755)
    cfg = load_config(None, {})

    def ask() -> str:
        try:
            view_cmd._through_service(cfg, tmp_path, True, True, io.StringIO())
            return "no error"
        except EdgeError as e:
            return str(e)
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            return f"{type(e).__name__}: {e}"

    msg = as_nobody(ask)
    assert "not allowed to see the service's camera" in msg and "usermod -aG emotion-edge" in msg, msg
    assert len(msg.splitlines()) == 1


def test_the_terminal_is_restored_when_the_live_view_fails():
    import io
    import signal as sig

    from edge.commands.view import _Terminal

    before = sig.getsignal(sig.SIGTERM), sig.getsignal(sig.SIGHUP)
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with _Terminal(out, io.StringIO()):
            assert out.getvalue().startswith("\x1b[?1049h\x1b[?25l")
            assert sig.getsignal(sig.SIGTERM) != before[0]  # SIGTERM / SIGHUP end the view through the same exit
            raise RuntimeError("camera gone")
    assert out.getvalue().endswith("\x1b[0m\x1b[?25h\x1b[?1049l")  # colours reset, cursor shown, main screen back
    assert (sig.getsignal(sig.SIGTERM), sig.getsignal(sig.SIGHUP)) == before


def lk(box, w=None) -> aim.FaceLook:
    """A well-lit, sharp face at `box` (what look() measures is tested above)."""
    return aim.FaceLook(box, box[2], box[2], 120.0, 50.0, 1000.0, 120.0)


@pytest.mark.parametrize("box, edge", [
    ((2, 100, 80, 80), "left"), ((3, 100, 80, 80), None),
    ((238, 100, 80, 80), "right"), ((237, 100, 80, 80), None),
    ((100, 2, 80, 80), "top"), ((100, 3, 80, 80), None),
    ((100, 158, 80, 80), "bottom"), ((100, 157, 80, 80), None),
])
def test_a_face_touching_an_edge_is_cut_off_and_one_3_px_away_is_not(box, edge):
    adv = aim.advise_face(lk(box), (320, 240), CFG)
    if edge is None:
        assert adv.startswith("framing good"), adv
    else:
        assert adv.startswith(f"face cut off at the {edge} edge: "), adv
        assert {"left": "further left", "right": "further right", "top": "tilt the camera up",
                "bottom": "tilt the camera down"}[edge] in adv


def test_look_measures_the_face_where_it_is():
    img = np.full((480, 640), 200, np.uint8)
    face = cv2.imread(str(HAPPY), cv2.IMREAD_GRAYSCALE)[40:200, 80:240]
    img[100:260, 380:540] = face
    got = aim.look(img, (380, 100, 160, 160), CFG)
    assert got.width == 160 and got.detector_width == 80 and got.box == (380, 100, 160, 160)
    assert abs(got.mean - float(face.mean())) < 0.01 and abs(got.std - float(face.std())) < 0.01
    assert abs(got.frame_mean - float(img.mean())) < 0.01
    assert got.sharpness == aim.sharpness(face, (0, 0, 160, 160)) > aim.BLUR_VAR
    assert aim.sharpness(img, (0, 0, 0, 0)) == 0.0


def test_advice_boundaries():
    need = aim.need_px(320, CFG)
    assert need == 56
    assert aim.advise_face(lk((100, 100, need, need)), (320, 240), CFG).startswith("framing good")
    assert aim.advise_face(lk((100, 100, need - 1, need - 1)), (320, 240), CFG) == \
        f"face {need - 1} px wide: move the camera closer ({need} px or more reads best)"
    assert aim.advise_face(lk((60, 20, 200, 200)), (320, 240), CFG) == \
        "face fills 83 % of the picture: move the camera a little further away"
    assert aim.advise_face(lk((60, 30, 168, 168)), (320, 240), CFG).startswith("framing good")  # 70 %: not yet
    dark_room = aim.FaceLook((100, 100, 80, 80), 80, 80, 20.0, 30.0, 1000.0, 80.0)  # dim frame, dimmer face
    assert aim.advise_face(dark_room, (320, 240), CFG) == "face too dark (grey 20 of 255): more light on the face"
    window = aim.FaceLook((100, 100, 80, 80), 80, 80, 60.0, 30.0, 1000.0, 160.0)
    assert aim.advise_face(window, (320, 240), CFG).startswith("strong light behind the face")


def test_the_finer_search_runs_at_most_once_a_second_and_not_while_a_face_is_seen():
    empty = cv2.imread(str(FACES_DIR / "noface_320x240.png"), cv2.IMREAD_GRAYSCALE)
    a = aim.Aimer(CFG)
    for t in (0.0, 0.3, 0.6, 0.9, 1.0, 1.5):
        a.advise(t, empty, [])
    assert a._finer.calls == 2  # at 0.0 and 1.0
    img = cv2.imread(str(HAPPY), cv2.IMREAD_GRAYSCALE)
    a.advise(2.5, img, [look_at(img, (80, 40, 160, 160))])
    assert a._finer.calls == 2
    bottom = np.vstack([img[80:], img[:80]])  # the face slid down to the bottom edge of the same 320x240 frame
    assert "bottom edge" in a.advise(3.0, bottom, [look_at(bottom, (80, 80, 160, 160))])
